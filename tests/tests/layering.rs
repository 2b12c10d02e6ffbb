//! Architecture invariant: the core crate does no I/O. No tokio, libp2p, RocksDB or other
//! runtime or network crate may enter its dependency tree.

use std::process::Command;

const FORBIDDEN: [&str; 8] =
    ["tokio", "libp2p", "rocksdb", "librocksdb-sys", "mio", "async-std", "futures", "socket2"];

#[test]
fn core_has_no_io_crates_in_its_dependency_tree() {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "tree",
            "--locked",
            "-p",
            "remembrancer-core",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let crates: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    // The tree must really be the core's: it starts with the crate and holds its hash crates.
    assert_eq!(crates.first(), Some(&"remembrancer-core"));
    assert!(crates.contains(&"sha2") && crates.contains(&"ed25519-dalek"), "unexpected tree: {tree}");
    let found: Vec<&&str> = crates.iter().filter(|name| FORBIDDEN.contains(name)).collect();
    assert!(found.is_empty(), "I/O crates in remembrancer-core's dependency tree: {found:?}");
}
