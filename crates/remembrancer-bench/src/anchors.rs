//! `scripts/bench anchors`: the namespace-to-batch paths of one collaborative anchor over
//! 10 000 namespace roots, verified one after another, beside the SHA-256 chained-hash limit
//! measured in the same run (a path is one leaf hash of the entry, then a chain of dependent
//! node hashes: each input holds the previous output).

use std::hint::black_box;
use std::time::{Duration, Instant};

use remembrancer_core::anchoring::{epoch_leaf, epoch_root, EpochEntry};
use remembrancer_core::hash::{Digest, HashAlgorithm};
use remembrancer_core::merkle::{verify_inclusion, MemoryNodeStore, MemoryTree};
use sha2::Digest as _;

/// Namespace roots in the anchor (the figure).
const ROOTS: usize = 10_000;
/// Rounds of each measurement; the best is kept.
const ROUNDS: usize = 5;
/// The target: our paths at half the chained-hash limit or more.
const TARGET: f64 = 0.5;

fn entries() -> Vec<EpochEntry> {
    (0..ROOTS)
        .map(|i| EpochEntry {
            namespace: format!("dao:tenant{i:05}"),
            size: 1_000 + i as u64,
            root: serde_bytes::ByteBuf::from(sha2::Sha256::digest(i.to_le_bytes()).to_vec()),
        })
        .collect()
}

/// The best rate of `work` (operations it reports per second) over [`ROUNDS`] runs.
pub(crate) fn best(mut work: impl FnMut() -> u64) -> f64 {
    let mut rate: f64 = 0.0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let operations = work();
        rate = rate.max(operations as f64 / start.elapsed().max(Duration::from_nanos(1)).as_secs_f64());
    }
    rate
}

/// The SHA-256 limit of verifying an inclusion path, measured here: hashes of a
/// `leaf_bytes`-byte leaf per second, 65-byte chained hashes (each input holds the previous
/// output) per second, and paths of `depth` per second.
pub(crate) fn path_limit(leaf_bytes: usize, depth: usize) -> (f64, f64, f64) {
    let leaf_input = vec![7u8; leaf_bytes];
    let leaf_rate = best(|| {
        for _ in 0..200_000u64 {
            black_box(sha2::Sha256::digest(black_box(&leaf_input)));
        }
        200_000
    });
    let chained_rate = best(|| {
        let mut input = [7u8; 65];
        for _ in 0..500_000u64 {
            let digest = sha2::Sha256::digest(input);
            input[1..33].copy_from_slice(&digest);
        }
        black_box(input);
        500_000
    });
    (leaf_rate, chained_rate, 1.0 / (1.0 / leaf_rate + depth as f64 / chained_rate))
}

/// Runs the benchmark and prints it (JSON with `json`).
pub fn run(json: bool) {
    let mut entries = entries();
    entries.sort();
    let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
    for entry in &entries {
        tree.append(epoch_leaf(entry).as_bytes()).expect("append");
    }
    let root = tree.root();
    assert_eq!(root, epoch_root(&entries), "the bench's tree is the anchor's");
    let size = tree.size();
    let paths: Vec<Vec<Digest>> = (0..size).map(|i| tree.inclusion_proof(i, size).expect("path")).collect();
    let depth = paths.iter().map(Vec::len).max().unwrap_or(0);
    let leaf_bytes = epoch_leaf(&entries[0]).len() + 1;

    // The limit: one leaf hash of an entry's length, then `depth` chained node hashes.
    let (leaf_rate, chained_rate, limit) = path_limit(leaf_bytes, depth);
    // Ours: the entry's leaf (formatted as the anchor writes it) and its path to the root.
    let ours = best(|| {
        for (index, (entry, path)) in entries.iter().zip(&paths).enumerate() {
            let leaf = HashAlgorithm::Sha256.leaf_hash(epoch_leaf(entry).as_bytes());
            verify_inclusion(HashAlgorithm::Sha256, index as u64, size, &leaf, path, &root)
                .expect("a path of the tree");
        }
        ROOTS as u64
    });
    let fraction = ours / limit;
    if json {
        let value = serde_json::json!({
            "roots": ROOTS,
            "depth": depth,
            "leaf_bytes": leaf_bytes,
            "sha256_leaf_per_s": leaf_rate,
            "sha256_65_byte_chained_per_s": chained_rate,
            "path_limit_per_s": limit,
            "paths_verified_per_s": ours,
            "fraction_of_limit": fraction,
            "fraction_target": TARGET,
            "meets_target": fraction >= TARGET,
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    println!("one collaborative anchor over {ROOTS} namespace roots (paths of {depth} hashes):");
    println!("  sha256 of a {leaf_bytes}-byte leaf  {:>10.2} M/s", leaf_rate / 1e6);
    println!("  sha256 65-byte, chained  {:>10.2} M/s", chained_rate / 1e6);
    println!(
        "  path limit               {:>10.1} k/s (one leaf hash and {depth} chained node hashes)",
        limit / 1e3
    );
    println!(
        "  ours: verify a path      {:>10.1} k/s = {:.0} % of the limit (target {:.0} %){}",
        ours / 1e3,
        fraction * 100.0,
        TARGET * 100.0,
        if fraction >= TARGET { "  meets target" } else { "  BELOW target" }
    );
}
