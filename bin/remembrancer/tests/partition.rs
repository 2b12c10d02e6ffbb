//! A 3/2 partition of five real node processes with quorum 3, made with the nodes' block
//! lists: the three finalize, the two cannot; after healing the two catch up and every node
//! holds the same receipts.

mod common;

use std::time::Duration;

use common::{did, namespace, Cluster};

#[test]
fn the_majority_of_a_partition_finalizes_the_minority_waits_and_catches_up_after_healing() {
    let cluster = Cluster::connected(5);
    let before_1 = cluster.append(1, "before the partition, node 1");
    let before_4 = cluster.append(4, "before the partition, node 4");
    cluster.wait("both namespaces final on every node", Duration::from_secs(60), |c| {
        (1..=5)
            .all(|i| c.final_size(i, &namespace(1)) >= before_1 && c.final_size(i, &namespace(4)) >= before_4)
    });
    // Nodes 2, 3 and 5 own neither namespace: the receipts, the other witnesses'
    // countersignatures and the heartbeats were bookkeeping to them, held back while anchors
    // went first, and handled after (the receipts are final there).
    for i in [2, 3, 5] {
        let deferred = cluster.status(i)["deferred"].as_u64().unwrap_or(0);
        assert!(deferred > 0, "node{i} held no bookkeeping back: {}", cluster.status(i));
    }

    // Partition {1,2,3} | {4,5}: each side blocks the other.
    let minority: Vec<String> = (4..=5).map(did).collect();
    let majority: Vec<String> = (1..=3).map(did).collect();
    for i in 1..=3 {
        let args: Vec<&str> =
            ["federation", "block"].into_iter().chain(minority.iter().map(String::as_str)).collect();
        let (ok, text) = cluster.cli(i, &args);
        assert!(ok && text.contains("2 peers blocked"), "block on node{i}: {text}");
    }
    for i in 4..=5 {
        let args: Vec<&str> =
            ["federation", "block"].into_iter().chain(majority.iter().map(String::as_str)).collect();
        let (ok, text) = cluster.cli(i, &args);
        assert!(ok && text.contains("3 peers blocked"), "block on node{i}: {text}");
    }
    cluster.wait("the two sides disconnected", Duration::from_secs(30), |c| {
        (1..=3).all(|i| c.connected_peers(i) == 2) && (4..=5).all(|i| c.connected_peers(i) == 1)
    });

    let during_1 = cluster.append(1, "during the partition, node 1");
    // The minority cannot finalize, so its anchor window (4) fills; appends are still
    // acknowledged (they wait at most `SLOT_WAIT_MAX` for a slot that will not free).
    let mut during_4 = before_4;
    for k in 0..6 {
        let size = cluster.append(4, &format!("during the partition, node 4, record {k}"));
        assert!(size > during_4, "node 4 acknowledged record {k} at size {size}");
        during_4 = size;
    }
    assert!(during_1 > before_1 && during_4 > before_4);
    cluster.wait("the majority finalizes node 1's batch", Duration::from_secs(30), |c| {
        (1..=3).all(|i| c.final_size(i, &namespace(1)) >= during_1)
    });
    // Two signatures (node 4's and node 5's) cannot make quorum 3; give them time to try.
    std::thread::sleep(Duration::from_secs(4));
    for i in 1..=5 {
        assert_eq!(
            cluster.final_size(i, &namespace(4)),
            before_4,
            "node{i}: the minority's batch must not be final during the partition"
        );
    }
    for i in 4..=5 {
        assert_eq!(cluster.final_size(i, &namespace(1)), before_1, "node{i} cannot have heard the majority");
    }
    let status = cluster.status(4);
    let owned = status["namespaces"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["namespace"] == namespace(4).as_str()).cloned())
        .expect("node 4 reports its namespace");
    assert_eq!(owned["pending"], true, "node 4 shows its batch pending: {owned}");

    // Heal.
    for i in 1..=3 {
        let args: Vec<&str> =
            ["federation", "unblock"].into_iter().chain(minority.iter().map(String::as_str)).collect();
        assert!(cluster.cli(i, &args).0);
    }
    for i in 4..=5 {
        let args: Vec<&str> =
            ["federation", "unblock"].into_iter().chain(majority.iter().map(String::as_str)).collect();
        assert!(cluster.cli(i, &args).0);
    }
    cluster.wait("every node holds both batches final after healing", Duration::from_secs(90), |c| {
        (1..=5)
            .all(|i| c.final_size(i, &namespace(1)) >= during_1 && c.final_size(i, &namespace(4)) >= during_4)
    });
    let first = cluster.receipts(1);
    for i in 2..=5 {
        let receipts = cluster.receipts(i);
        for ns in [namespace(1), namespace(4)] {
            let theirs = receipts.iter().find(|r| r.0 == ns);
            let ours = first.iter().find(|r| r.0 == ns);
            assert_eq!(theirs, ours, "node{i} holds the same latest receipt of {ns} as node 1");
        }
    }
}
