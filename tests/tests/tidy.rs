//! Project hygiene checked through cargo: formatting, a `//!` line opening every Rust file,
//! no stubs, and the example configuration parses.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn code_is_formatted() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(workspace())
        .args(["fmt", "--all", "--", "--check"])
        .output()
        .expect("run cargo fmt");
    assert!(
        output.status.success(),
        "run `cargo fmt --all`:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_rust_file_opens_with_a_doc_line_and_has_no_stubs() {
    let mut files = Vec::new();
    for dir in ["crates", "bin", "tests"] {
        rust_files(&workspace().join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} Rust files", files.len());
    let stub_markers = [concat!("todo", "!("), concat!("unimplemented", "!("), concat!("FIX", "ME")];
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.starts_with("//!"), "{file:?} must open with a //! line saying what it is");
        for marker in stub_markers {
            assert!(!text.contains(marker), "{file:?} contains {marker}");
        }
    }
}

#[test]
fn the_example_registry_is_valid() {
    let text = std::fs::read_to_string(workspace().join("configs/registry.example.yaml")).expect("read");
    let registry =
        remembrancer_core::registry::Registry::from_yaml(&text).expect("example registry validates");
    assert_eq!(registry.name, "vaultmesh-primary");
    assert_eq!(registry.active_count(), 3);
}
