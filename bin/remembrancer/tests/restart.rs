//! An honest owner killed with SIGKILL and started again keeps every record it acknowledged
//! and never signs a second root for a size: for a namespace no member lists (which a member
//! may anchor), for a listed one, for one the registry stopped listing between the kill and
//! the restart, and when killed at random moments of appends to two namespaces.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{did, namespace, Cluster, Seeded};

/// A namespace no member of the devnet registry lists.
const LOOSE: &str = "foo:bar";

/// Appends one record to `ns` on node `i` through the CLI; returns (index, size) when the
/// node acknowledged it, or the CLI's answer when it did not.
fn append(cluster: &Cluster, i: usize, ns: &str, data: &str) -> Result<(u64, u64), String> {
    // The namespace no member lists is started on purpose.
    let answer = common::append_at(&cluster.data_dir(i), ns, data, ns == LOOSE)?;
    Ok((answer["first_index"].as_u64().expect("first_index"), answer["size"].as_u64().expect("size")))
}

fn propagate(cluster: &Cluster, i: usize, ns: &str) {
    let (ok, text) = cluster.cli(i, &["federation", "propagate-anchor", ns, "--create"]);
    assert!(ok, "propagate-anchor {ns} on node{i}: {text}");
}

fn final_everywhere(cluster: &Cluster, ns: &str, size: u64) {
    cluster.wait(&format!("{ns} final at size {size} on every node"), Duration::from_secs(60), |c| {
        (1..=c.n).all(|i| c.final_size(i, ns) >= size)
    });
}

/// No node holds evidence, and every node sees node 1 active.
fn no_evidence_and_owner_active(cluster: &Cluster) {
    for i in 1..=cluster.n {
        let status = cluster.status(i);
        assert_eq!(status["evidence"], 0, "node{i} holds evidence:\n{}", cluster.logs());
        let owner = status["peers"]
            .as_array()
            .and_then(|peers| peers.iter().find(|p| p["did"] == did(1).as_str()).cloned())
            .expect("node 1 in the registry");
        assert_eq!(owner["status"], "active", "node{i} sees node 1 as {}", owner["status"]);
    }
}

/// The scenario of the report: records of an unlisted namespace final, kill -9, restart,
/// more appends.
fn records_final_then_killed_and_appended_to(cluster: &mut Cluster, ns: &str) {
    for (k, data) in ["rec-1", "rec-2", "rec-3"].into_iter().enumerate() {
        assert_eq!(append(cluster, 1, ns, data), Ok((k as u64, k as u64 + 1)));
    }
    propagate(cluster, 1, ns);
    final_everywhere(cluster, ns, 3);
    let before = cluster.receipts(3).into_iter().find(|(n, _, _)| n == ns).expect("receipt on node 3");

    cluster.kill9(1);
    cluster.start(1);
    let restored = cluster.namespace_status(1, ns);
    assert_eq!(restored["owned"], true, "node 1 owns {ns} after the restart: {restored}");
    assert_eq!(restored["size"], 3, "{restored}");
    assert!(restored["halted"].is_null(), "{restored}");
    for (index, data) in ["rec-1", "rec-2", "rec-3"].into_iter().enumerate() {
        assert_eq!(cluster.proven_record(1, ns, index as u64), data);
    }
    // The next append is record 3, and the tree grows from the one the federation holds.
    for (k, data) in ["rec-4", "rec-5", "rec-6"].into_iter().enumerate() {
        assert_eq!(append(cluster, 1, ns, data), Ok((3 + k as u64, 4 + k as u64)));
    }
    propagate(cluster, 1, ns);
    final_everywhere(cluster, ns, 6);
    assert_eq!(cluster.proven_record(1, ns, 0), "rec-1");
    assert_eq!(cluster.proven_record(1, ns, 5), "rec-6");
    // Node 3 still holds the receipt at size 3 it had (same root), now under one at size 6.
    let (ok, text) = cluster.cli(3, &["receipts", "list", "--namespace", ns, "--json"]);
    assert!(ok, "{text}");
    assert!(text.contains(&before.2), "the size-3 receipt's root is unchanged: {text}");
    no_evidence_and_owner_active(cluster);
}

#[test]
fn an_unlisted_namespace_survives_a_kill_and_its_owner_never_signs_a_second_root() {
    let mut cluster = Cluster::connected(3);
    records_final_then_killed_and_appended_to(&mut cluster, LOOSE);
    assert_eq!(
        cluster.log_lines(1, "declared owned from now on"),
        1,
        "found in the store once, then declared"
    );
}

#[test]
fn a_listed_namespace_survives_a_kill_and_so_does_one_the_registry_stopped_listing() {
    let mut cluster = Cluster::connected(3);
    records_final_then_killed_and_appended_to(&mut cluster, &namespace(1));

    // The registry node 1 reads no longer lists its namespace (the others' still do): node 1
    // still restores it from its store, and continues it without a second root.
    for k in 0..2 {
        append(&cluster, 1, &namespace(1), &format!("before {k}")).expect("append");
    }
    propagate(&cluster, 1, &namespace(1));
    final_everywhere(&cluster, &namespace(1), 8);
    cluster.kill9(1);
    let shared = cluster.dir.path().join("registry.yaml");
    let text = std::fs::read_to_string(&shared).expect("registry");
    let listing = format!("    namespaces:\n    - {}\n", namespace(1));
    assert!(text.contains(&listing), "the registry lists {}: {text}", namespace(1));
    std::fs::write(
        cluster.dir.path().join("registry-node1.yaml"),
        text.replacen(&listing, "    namespaces: []\n", 1),
    )
    .expect("write node 1's registry");
    let config = cluster.node_dir(1).join("node.toml");
    let toml = std::fs::read_to_string(&config).expect("node.toml");
    assert!(toml.contains("../registry.yaml"), "{toml}");
    std::fs::write(&config, toml.replace("../registry.yaml", "../registry-node1.yaml")).expect("node.toml");
    cluster.start(1);
    let restored = cluster.namespace_status(1, &namespace(1));
    assert_eq!((restored["owned"].clone(), restored["size"].clone()), (true.into(), 8.into()), "{restored}");
    for k in 0..2 {
        assert_eq!(append(&cluster, 1, &namespace(1), &format!("after {k}")), Ok((8 + k, 9 + k)));
    }
    propagate(&cluster, 1, &namespace(1));
    final_everywhere(&cluster, &namespace(1), 10);
    assert_eq!(cluster.proven_record(1, &namespace(1), 9), "after 1");
    no_evidence_and_owner_active(&cluster);
}

#[test]
fn killed_at_random_moments_of_appends_to_two_namespaces_an_owner_loses_nothing_and_never_equivocates() {
    let rounds: usize = std::env::var("RESTART_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("RESTART_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_0040);
    let mut random = Seeded(seed.max(1));
    let cluster = Arc::new(Mutex::new(Cluster::connected(3)));
    let (data_dir, listed) = (cluster.lock().expect("cluster").data_dir(1), namespace(1));

    // One writer per namespace, appending through the CLI as fast as it answers; each
    // remembers every record acknowledged, by index.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<BTreeMap<String, BTreeMap<u64, String>>>> = Arc::default();
    let writers: Vec<_> = [listed.clone(), LOOSE.to_string()]
        .into_iter()
        .map(|ns| {
            let (stop, acknowledged, data_dir) =
                (Arc::clone(&stop), Arc::clone(&acknowledged), data_dir.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let data = format!("{ns} record {n}");
                    if let Ok(answer) = common::append_at(&data_dir, &ns, &data, ns == LOOSE) {
                        let index = answer["first_index"].as_u64().expect("first_index");
                        let mut acknowledged = acknowledged.lock().expect("acknowledged");
                        let previous = acknowledged.entry(ns.clone()).or_default().insert(index, data);
                        assert!(previous.is_none(), "{ns}: index {index} acknowledged twice");
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();

    for round in 1..=rounds {
        std::thread::sleep(Duration::from_millis(150 + random.below(900)));
        let mut cluster = cluster.lock().expect("cluster");
        cluster.kill9(1);
        std::thread::sleep(Duration::from_millis(random.below(300)));
        cluster.start(1);
        // The node started: every tree's root matched its last signed checkpoint (it refuses
        // to start otherwise), for both namespaces.
        let restored = cluster.log_lines(1, "restored: the root matches the last signed checkpoint");
        assert!(
            restored >= 2 * round,
            "round {round}: {restored} namespaces restored in all:\n{}",
            cluster.logs()
        );
        let acknowledged = acknowledged.lock().expect("acknowledged").clone();
        for (ns, records) in &acknowledged {
            // A record stored but killed before its answer is kept without being acknowledged:
            // the acknowledged indices may have gaps, never a loss.
            let size = cluster.namespace_status(1, ns)["size"].as_u64().expect("size");
            let highest = records.keys().next_back().map_or(0, |i| i + 1);
            assert!(
                size >= highest,
                "round {round}: {ns} restarted with {size} records, {highest} acknowledged"
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("writer");
    }

    let cluster = Arc::try_unwrap(cluster).ok().expect("one owner").into_inner().expect("cluster");
    let acknowledged = acknowledged.lock().expect("acknowledged").clone();
    for (ns, records) in &acknowledged {
        let last = *records.keys().next_back().expect("records acknowledged");
        propagate(&cluster, 1, ns);
        final_everywhere(&cluster, ns, last + 1);
        for (index, data) in records.iter().filter(|(i, _)| [0, last / 2, last].contains(i)) {
            assert_eq!(&cluster.proven_record(1, ns, *index), data, "{ns} record {index}");
        }
        // Every acknowledged record is the one stored at its index: a proof is the auditor's
        // way to read one, and the checks above read three; the roots signed before and after
        // each kill agree (no evidence below), which covers the rest.
        assert!(cluster.namespace_status(1, ns)["halted"].is_null());
    }
    assert_eq!(acknowledged.len(), 2, "both namespaces were written");
    no_evidence_and_owner_active(&cluster);
}

#[test]
fn an_owner_restarted_on_an_old_copy_of_its_data_stops_appending_and_says_why() {
    let mut cluster = Cluster::connected(3);
    let ns = namespace(1);
    for k in 0..3 {
        append(&cluster, 1, &ns, &format!("kept {k}")).expect("append");
    }
    propagate(&cluster, 1, &ns);
    final_everywhere(&cluster, &ns, 3);
    // A copy of the data directory at size 3, as a backup taken then.
    cluster.kill9(1);
    let copy = cluster.node_dir(1).join("data-at-3");
    let copied = std::process::Command::new("cp").arg("-a").arg(cluster.data_dir(1)).arg(&copy).status();
    assert!(copied.expect("cp").success());
    cluster.start(1);
    for k in 0..3 {
        append(&cluster, 1, &ns, &format!("lost {k}")).expect("append");
    }
    propagate(&cluster, 1, &ns);
    final_everywhere(&cluster, &ns, 6);

    // The data directory goes back to the copy: node 1 starts (its tree matches what that
    // copy signed), learns from its peers that the federation holds its receipt at size 6,
    // and stops appending to the namespace instead of signing records 3-5 again.
    cluster.kill9(1);
    std::fs::remove_dir_all(cluster.data_dir(1)).expect("remove data");
    std::fs::rename(&copy, cluster.data_dir(1)).expect("restore the copy");
    cluster.start(1);
    cluster.wait("node 1 halts its namespace", Duration::from_secs(60), |c| {
        !c.namespace_status(1, &ns)["halted"].is_null()
    });
    let halted = cluster.namespace_status(1, &ns);
    let reason = halted["halted"].as_str().expect("reason").to_string();
    assert!(
        reason.contains("receipt at size 6") && reason.contains("restore the data directory"),
        "{reason}"
    );
    let refused = append(&cluster, 1, &ns, "over it").expect_err("appends are stopped");
    assert!(
        refused.contains("not stored") && refused.contains("Appends to dev:node1 are stopped"),
        "{refused}"
    );
    let (ok, text) = cluster.cli(1, &["federation", "status"]);
    assert!(ok && text.contains("HALTED"), "{text}");
    assert!(cluster.log_lines(1, "stopped signing and committing") >= 1, "the log says so");
    assert_eq!(halted["size"], 3, "nothing was appended: {halted}");
    // Nothing was signed over the federation's records: no evidence, node 1 still active.
    no_evidence_and_owner_active(&cluster);
}
