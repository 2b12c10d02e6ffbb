//! The crash loop: three real nodes under steady appends to each one's namespace, and a
//! random node killed with SIGKILL at a random moment, then started again, round after round.
//! At the end no acknowledged record is lost, every owner's tree matched its last signed
//! checkpoint at each start (a node refuses to start otherwise), every node holds the same
//! final receipt of every namespace at its full size, and no node holds evidence.
//!
//! `CRASH_LOOP_ROUNDS` (default 20, the CI run) and `CRASH_LOOP_SEED` choose the rounds;
//! `scripts/crash-loop` runs 100.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{did, namespace, Cluster, Seeded};

const NODES: usize = 3;

/// Node `i`'s size of its own namespace `ns`.
fn size(cluster: &Cluster, i: usize, ns: &str) -> u64 {
    let entry = cluster.namespace_status(i, ns);
    entry["size"].as_u64().unwrap_or_else(|| panic!("node{i} reports no size of {ns}: {entry}"))
}

/// (final size, final root) of `ns` on node `i`.
fn final_receipt(cluster: &Cluster, i: usize, ns: &str) -> (u64, String) {
    let entry = cluster.namespace_status(i, ns);
    (entry["final_size"].as_u64().unwrap_or(0), entry["final_root"].as_str().unwrap_or_default().to_string())
}

#[test]
fn a_federation_under_appends_survives_a_random_node_killed_again_and_again() {
    let rounds: usize = std::env::var("CRASH_LOOP_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("CRASH_LOOP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_0046);
    let mut random = Seeded(seed.max(1));
    let began = Instant::now();
    let cluster = Arc::new(Mutex::new(Cluster::connected(NODES)));

    // One writer per node, appending to its own namespace through the CLI as fast as it
    // answers; each remembers every record acknowledged (on disk), by index.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<BTreeMap<usize, BTreeMap<u64, String>>>> = Arc::default();
    let writers: Vec<_> = (1..=NODES)
        .map(|i| {
            let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
            let data_dir = cluster.lock().expect("cluster").data_dir(i);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let data = format!("node{i} record {n}");
                    match common::append_at(&data_dir, &namespace(i), &data, false) {
                        Ok(answer) => {
                            let index = answer["first_index"].as_u64().expect("first_index");
                            let mut acknowledged = acknowledged.lock().expect("acknowledged");
                            let previous = acknowledged.entry(i).or_default().insert(index, data);
                            assert!(previous.is_none(), "node{i}: index {index} acknowledged twice");
                        }
                        // The node is down: try again shortly.
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();

    let mut kills = [0usize; NODES + 1];
    for round in 1..=rounds {
        std::thread::sleep(Duration::from_millis(100 + random.below(900)));
        let victim = 1 + random.below(NODES as u64) as usize;
        let mut cluster = cluster.lock().expect("cluster");
        let restored_before =
            cluster.log_lines(victim, "restored: the root matches the last signed checkpoint");
        cluster.kill9(victim);
        kills[victim] += 1;
        let acknowledged_at_kill = acknowledged
            .lock()
            .expect("acknowledged")
            .get(&victim)
            .and_then(|r| r.keys().next_back().copied());
        std::thread::sleep(Duration::from_millis(random.below(300)));
        cluster.start(victim);
        // It started, so its tree's root matched its last signed checkpoint: it refuses to
        // start otherwise, and says so in its log.
        let restored = cluster.log_lines(victim, "restored: the root matches the last signed checkpoint");
        assert!(restored > restored_before, "round {round}: node{victim} did not restore its tree");
        // Nothing it acknowledged before the kill is gone. A record stored but killed before
        // its answer is kept without being acknowledged: indices may have gaps, never a loss.
        let held = size(&cluster, victim, &namespace(victim));
        let highest = acknowledged_at_kill.map_or(0, |i| i + 1);
        assert!(
            held >= highest,
            "round {round}: node{victim} restarted with {held} records, {highest} acknowledged"
        );
        eprintln!(
            "crash-loop: round {round}/{rounds}: node{victim} killed and restarted, {held} records held, {highest} acknowledged ({:.0} s)",
            began.elapsed().as_secs_f64()
        );
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("writer");
    }

    let cluster = Arc::try_unwrap(cluster).ok().expect("one owner").into_inner().expect("cluster");
    let acknowledged = acknowledged.lock().expect("acknowledged").clone();
    assert_eq!(acknowledged.len(), NODES, "every node's namespace was written");
    for i in 1..=NODES {
        let ns = namespace(i);
        let records = &acknowledged[&i];
        let held = size(&cluster, i, &ns);
        let last = *records.keys().next_back().expect("records acknowledged");
        assert!(held > last, "node{i} holds {held} records of {ns}, record {last} was acknowledged");
        // Every node catches up: the same final receipt at the owner's full size everywhere.
        let (ok, text) = cluster.cli(i, &["federation", "propagate-anchor", &ns]);
        assert!(ok, "propagate-anchor {ns}: {text}");
        cluster.wait(&format!("{ns} final at size {held} on every node"), Duration::from_secs(90), |c| {
            (1..=c.n).all(|j| final_receipt(c, j, &ns).0 >= held)
        });
        let receipts: Vec<(u64, String)> = (1..=NODES).map(|j| final_receipt(&cluster, j, &ns)).collect();
        assert!(
            receipts.iter().all(|r| r == &receipts[0]),
            "{ns}: the nodes hold different receipts {receipts:?}"
        );
        assert_eq!(receipts[0].0, held, "{ns}: the final size is the owner's size");
        // Acknowledged records are the ones stored: a sample read back as an auditor reads
        // them, through a proof verified offline.
        let sample: Vec<u64> = (0..8).map(|_| random.below(last + 1)).chain([0, last]).collect();
        for index in sample {
            if let Some(data) = records.get(&index) {
                assert_eq!(&cluster.proven_record(i, &ns, index), data, "{ns} record {index}");
            }
        }
    }
    // No node holds evidence against an honest owner, and every member is active everywhere.
    for i in 1..=NODES {
        let status = cluster.status(i);
        assert_eq!(status["evidence"], 0, "node{i} holds evidence:\n{}", cluster.logs());
        for peer in status["peers"].as_array().expect("peers") {
            assert_eq!(peer["status"], "active", "node{i} sees {}: {peer}", peer["did"]);
        }
        assert!(status["peers"].as_array().expect("peers").iter().any(|p| p["did"] == did(i).as_str()));
    }
    let written: usize = acknowledged.values().map(BTreeMap::len).sum();
    eprintln!(
        "crash-loop: {rounds} kills survived (node1 {}, node2 {}, node3 {}), {written} records acknowledged, none lost, no evidence ({:.0} s)",
        kills[1],
        kills[2],
        kills[3],
        began.elapsed().as_secs_f64()
    );
}
