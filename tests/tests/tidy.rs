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

/// Backticked words of `text` that name a path from the workspace root.
fn named_paths(text: &str) -> Vec<String> {
    const ROOTS: [&str; 9] =
        ["crates/", "bin/", "tests/", "configs/", "proto/", "scripts/", "docs/", ".ci/", ".cargo/"];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| ROOTS.iter().any(|root| word.starts_with(root)) && !word.contains(' '))
        .map(str::to_string)
        .collect()
}

fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| c.is_whitespace() || "(),;:".contains(c)).filter(|w| !w.is_empty())
}

/// Whether `line` holds a date (`YYYY-MM-DD`).
fn dated(line: &str) -> bool {
    words(line).any(|w| {
        let b = w.as_bytes();
        b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    })
}

/// Whether `line` holds a measured figure: a decimal, a ratio (`1.9x`), a percentage, or a
/// number of receipts per second, microseconds or cores. Settings (`20 ms`, `256 records`)
/// are whole numbers with other units and pass.
fn has_figure(line: &str) -> bool {
    let list: Vec<&str> = words(line).collect();
    list.iter().enumerate().any(|(i, a)| {
        let bare = a.trim_end_matches(['x', '%']);
        let number = !bare.is_empty()
            && bare.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            && bare.chars().next().is_some_and(|c| c.is_ascii_digit());
        number
            && (bare.contains('.')
                || a.ends_with('x')
                || a.ends_with('%')
                || list.get(i + 1).is_some_and(|b| ["receipts/s", "µs", "cores"].contains(b)))
    })
}

#[test]
fn architecture_is_a_map_without_dates_or_figures_whose_paths_exist() {
    let text = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let lines = text.lines().count();
    assert!(
        lines <= 400,
        "ARCHITECTURE.md has {lines} lines: keep it a map (history goes to docs/benchmarks.md)"
    );
    for heading in [
        "## Bird's-eye view",
        "## Entry points",
        "## Code map",
        "## Architecture invariants",
        "## Cross-cutting concerns",
        "## Glossary",
    ] {
        assert!(text.contains(heading), "ARCHITECTURE.md lacks {heading:?}");
    }
    for (number, line) in text.lines().enumerate() {
        assert!(
            !dated(line),
            "ARCHITECTURE.md line {}: a date belongs in docs/benchmarks.md: {line}",
            number + 1
        );
        assert!(
            !has_figure(line),
            "ARCHITECTURE.md line {}: a measured figure belongs in docs/benchmarks.md: {line}",
            number + 1
        );
    }
    for path in named_paths(&text) {
        assert!(workspace().join(&path).exists(), "ARCHITECTURE.md names {path}, which does not exist");
    }
}

#[test]
fn the_path_date_and_figure_checks_catch_what_they_are_for() {
    assert_eq!(named_paths("see `crates/x/y.rs` and `z.rs`, `bin/a b`"), vec!["crates/x/y.rs".to_string()]);
    assert!(dated("measured on 2026-11-28, in the evening"));
    assert!(!dated("the format `remembrancer-store/v2`"));
    for figure in [
        "p50 1.67-2.13 ms",
        "ours 1.88-2.36x raw",
        "805 receipts/s",
        "18% of the CPU",
        "0.39 µs",
        "1.55 cores busy",
    ] {
        assert!(has_figure(figure), "{figure}");
    }
    for setting in [
        "waits up to 20 ms (2 ms once quiet)",
        "blocks of 256 records",
        "RFC 9162 §2.1.3",
        "floor(log2 N) + 2 peers",
    ] {
        assert!(!has_figure(setting), "{setting}");
    }
}
