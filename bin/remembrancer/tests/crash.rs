//! kill -9 in the middle of appends: every acknowledged record survives, the restarted node's
//! roots match its signed checkpoints, and its namespace finalizes again on every node.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{namespace, Cluster};

#[test]
fn a_node_killed_during_appends_loses_no_acknowledged_record_and_catches_up() {
    let cluster = Cluster::connected(5);
    let cluster = Arc::new(std::sync::Mutex::new(cluster));

    // A writer appends to node 2 as fast as the CLI allows and remembers the highest size
    // that was acknowledged (acknowledged = on disk).
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let data_dir = cluster.lock().expect("cluster").data_dir(2);
    let writer = {
        let acknowledged = Arc::clone(&acknowledged);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                if let Ok(answer) = common::append_at(&data_dir, &namespace(2), &format!("record {n}"), false)
                {
                    acknowledged.fetch_max(answer["size"].as_u64().expect("size"), Ordering::SeqCst);
                }
            }
        })
    };
    let started = std::time::Instant::now();
    while acknowledged.load(Ordering::SeqCst) < 30 {
        assert!(started.elapsed() < Duration::from_secs(60), "appends are not acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.lock().expect("cluster").kill9(2);
    let lost_at = acknowledged.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    let acknowledged = acknowledged.load(Ordering::SeqCst);
    assert!(acknowledged >= lost_at);

    let mut cluster = Arc::try_unwrap(cluster).ok().expect("one owner").into_inner().expect("cluster");
    cluster.start(2);
    let status = cluster.status(2);
    let size = status["namespaces"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["namespace"] == namespace(2).as_str()))
        .and_then(|n| n["size"].as_u64())
        .expect("node 2 reports its size");
    assert!(size >= acknowledged, "node 2 restarted with {size} records, {acknowledged} were acknowledged");
    assert!(
        std::fs::read_to_string(cluster.node_dir(2).join("node.log"))
            .expect("log")
            .contains("restored: the root matches the last signed checkpoint"),
        "the restart checked the root against the signed checkpoint"
    );
    cluster.wait(
        "node 2's namespace final on every node at the restored size",
        Duration::from_secs(60),
        |c| (1..=5).all(|i| c.final_size(i, &namespace(2)) >= size),
    );
    // The last acknowledged record has an inclusion proof under the final checkpoint.
    let index = (acknowledged - 1).to_string();
    let (ok, text) = cluster.cli(2, &["proof", "--namespace", &namespace(2), "--index", &index]);
    assert!(ok, "proof of record {index}: {text}");
    assert!(text.contains("\"leaf_index\""), "{text}");

    // Past the records whose hashes a tree keeps in memory (the last 16 384 and the edge):
    // the oldest records' proofs are rebuilt from the records read back from RocksDB, and an
    // auditor verifies them offline; the tree's memory stays near its recent records'.
    let mut size = 0;
    for batch in 0..10 {
        let records: Vec<String> = (0..4000).map(|k| format!("bulk {batch} {k}")).collect();
        size = cluster.append_batch(2, &records);
    }
    assert!(size > 40_000, "{size}");
    cluster.wait("the bulk appends final on node 2", Duration::from_secs(60), |c| {
        c.final_size(2, &namespace(2)) >= size
    });
    let registry = cluster.dir.path().join("registry.yaml");
    for index in ["0", "300", index.as_str()] {
        let bundle = cluster.dir.path().join(format!("proof-{index}.json"));
        let (ok, text) = cluster.cli(
            2,
            &["proof", "--namespace", &namespace(2), "--index", index, "--out", &bundle.to_string_lossy()],
        );
        assert!(ok, "proof of record {index} at size {size}: {text}");
        let output = std::process::Command::new(common::exe())
            .args(["verify", "proof"])
            .arg(&bundle)
            .arg("--registry")
            .arg(&registry)
            .output()
            .expect("run verify");
        let verdict = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && verdict.contains("holds: all"), "record {index}: {verdict}");
    }
    let tree_memory = cluster.status(2)["tree_memory_bytes"].as_u64().expect("tree_memory_bytes");
    assert!(tree_memory < 1_200_000, "{tree_memory} bytes of hashes for {size} records");
}
