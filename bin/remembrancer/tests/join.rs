//! `federation join`: a sixth node, outside the registry, joins five running members (open
//! admission) knowing one bootstrap address; a quorum signs its admission, every node moves
//! to the new registry version, and the newcomer's own namespace then finalizes with the
//! others as witnesses.

mod common;

use std::time::Duration;

use common::{did, namespace, Cluster};

#[test]
fn a_sixth_node_joins_by_quorum_and_its_namespace_finalizes() {
    let mut cluster = Cluster::setup_with_joiners(5, 1);
    cluster.start_members(5);
    cluster.wait_connected(5);
    cluster.start(6);
    let before = cluster.status(6);
    assert_eq!(before["member"], false, "node 6 starts outside the registry: {before}");
    // It cannot append before it is a member.
    let (ok, text) = cluster.cli(6, &["record", "append", "--namespace", &namespace(6), "too early"]);
    assert!(!ok, "a non-member must not anchor: {text}");

    let bootstrap = cluster.bootstrap_address(1);
    let (ok, text) = cluster.cli(
        6,
        &[
            "federation",
            "join",
            "--federation",
            "devnet",
            "--node",
            &did(6),
            "--bootstrap",
            &bootstrap,
            "--namespace",
            &namespace(6),
            "--wait",
            "60",
        ],
    );
    assert!(ok, "join: {text}\n{}", cluster.logs());
    assert!(text.contains("admitted"), "{text}");

    cluster.wait("every node holds registry version 2 with six members", Duration::from_secs(30), |c| {
        (1..=6).all(|i| {
            c.try_status(i).is_some_and(|s| {
                s["registry_version"] == 2 && s["peers"].as_array().is_some_and(|p| p.len() == 6)
            })
        })
    });
    let status = cluster.status(3);
    assert_eq!(status["quorum"], 4, "six active members need a quorum of 4: {status}");

    let size = cluster.append(6, "the newcomer's first record");
    cluster.wait("node 6's namespace final on all six nodes", Duration::from_secs(60), |c| {
        (1..=6).all(|i| c.final_size(i, &namespace(6)) >= size)
    });
    // And the members keep finalizing under the new quorum.
    let size = cluster.append(2, "after the join");
    cluster.wait("node 2's namespace final on all six nodes", Duration::from_secs(60), |c| {
        (1..=6).all(|i| c.final_size(i, &namespace(2)) >= size)
    });
}
