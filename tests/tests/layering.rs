//! Architecture invariants: the core crate does no I/O (no tokio, libp2p, RocksDB or other
//! runtime or network crate in its dependency tree); the network crate does networking only
//! (no engine host, no store); the host stores nothing itself (no RocksDB: its embedder
//! writes).

use std::process::Command;

const FORBIDDEN: [&str; 8] =
    ["tokio", "libp2p", "rocksdb", "librocksdb-sys", "mio", "async-std", "futures", "socket2"];

/// The names of the crates in `package`'s normal and build dependency tree, itself first.
fn dependency_tree(package: &str) -> Vec<String> {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "tree",
            "--locked",
            "-p",
            package,
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
    let crates: Vec<String> =
        tree.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_string).collect();
    // The tree must really be the package's: it starts with the crate.
    assert_eq!(crates.first().map(String::as_str), Some(package), "unexpected tree: {tree}");
    crates
}

#[test]
fn core_has_no_io_crates_in_its_dependency_tree() {
    let crates = dependency_tree("remembrancer-core");
    // It holds the core's hash crates.
    assert!(crates.iter().any(|c| c == "sha2") && crates.iter().any(|c| c == "ed25519-dalek"));
    let found: Vec<&String> = crates.iter().filter(|name| FORBIDDEN.contains(&name.as_str())).collect();
    assert!(found.is_empty(), "I/O crates in remembrancer-core's dependency tree: {found:?}");
}

#[test]
fn the_network_crate_drives_no_engine_and_the_host_stores_nothing() {
    let net = dependency_tree("remembrancer-net");
    assert!(net.iter().any(|c| c == "libp2p"));
    for crate_name in ["remembrancer-host", "remembrancer-store", "rocksdb"] {
        assert!(!net.iter().any(|c| c == crate_name), "remembrancer-net depends on {crate_name}");
    }
    let host = dependency_tree("remembrancer-host");
    assert!(host.iter().any(|c| c == "remembrancer-net"));
    for crate_name in ["remembrancer-store", "rocksdb", "librocksdb-sys"] {
        assert!(!host.iter().any(|c| c == crate_name), "remembrancer-host depends on {crate_name}");
    }
}
