//! Registry governance from the CLI on three real node processes: `federation propose` (a
//! `federation.registry.set@1.0.0` file and the shorthand options), `federation proposals`
//! with who has signed, `federation approve` on the others; a change takes effect at the
//! quorum of the registry it applies to, on every node and in `registry export`; a proposal
//! short of its quorum stays pending; a change that would break the registry is refused with
//! the reason.

mod common;

use std::time::Duration;

use common::{did, namespace, Cluster};
use remembrancer_core::registry::Registry;

/// The registry node `i` holds, from `federation registry export` (the spec's YAML).
fn exported(cluster: &Cluster, i: usize) -> Registry {
    let (ok, text) = cluster.cli(i, &["federation", "registry", "export"]);
    assert!(ok, "{text}");
    Registry::from_yaml(&text)
        .unwrap_or_else(|e| panic!("node{i} exports a registry that parses: {e}\n{text}"))
}

/// The pending proposals node `i` lists (`federation proposals --json`).
fn proposals(cluster: &Cluster, i: usize) -> Vec<serde_json::Value> {
    let (ok, text) = cluster.cli(i, &["federation", "proposals", "--json"]);
    assert!(ok, "{text}");
    serde_json::from_str::<Vec<serde_json::Value>>(&text).expect("proposals JSON")
}

fn signers(proposal: &serde_json::Value) -> Vec<String> {
    proposal["signers"]
        .as_array()
        .expect("signers")
        .iter()
        .map(|s| s.as_str().expect("did").to_string())
        .collect()
}

#[test]
fn a_registry_change_takes_effect_at_quorum_on_every_node_and_a_bad_one_says_why() {
    let cluster = Cluster::connected(3);
    let founding = exported(&cluster, 1);
    assert_eq!((founding.version, founding.quorum, founding.members.len()), (1, 2, 3));

    // Refused changes say why, and nothing is proposed.
    for (args, reason) in [
        (vec!["--quorum", "1"], "at or below half of the 3 active peers"),
        (vec!["--quorum", "4"], "quorum 4 is more than the 3 active peers"),
        (
            vec!["--remove-member", "did:vm:node:dev2", "--remove-member", "did:vm:node:dev3"],
            "quorum 2 is more than the 1 active peers",
        ),
        (
            vec!["--set-status", "did:vm:node:dev2=suspended", "--set-status", "did:vm:node:dev3=probation"],
            "quorum 2 is more than the 1 active peers",
        ),
        (vec!["--remove-member", "did:vm:node:nobody"], "did:vm:node:nobody is not a member"),
    ] {
        let mut command = vec!["federation", "propose"];
        command.extend(&args);
        let (ok, text) = cluster.cli(1, &command);
        assert!(!ok, "{args:?} is refused: {text}");
        assert!(text.contains("refused") && text.contains(reason), "{args:?} says {reason:?}: {text}");
    }
    assert!(proposals(&cluster, 1).is_empty(), "a refused change is not pending");
    // Under --json the node's refusal is JSON, with the node's code.
    let (ok, text) = cluster.cli(2, &["federation", "approve", "00000000", "--json"]);
    assert!(!ok, "{text}");
    let error: serde_json::Value = serde_json::from_str(&text).expect("a JSON error");
    assert_eq!(
        (error["error"]["code"].as_str(), error["error"]["http_status"].as_u64()),
        (Some("not_found"), Some(404))
    );

    // A document in the spec's schema: the schema's errors name the field.
    let file = cluster.dir.path().join("update.json");
    std::fs::write(
        &file,
        r#"{"federation_id":"devnet","registry":{"quorum":3,"peers":[{"did":"did:vm:node:dev1"}]}}"#,
    )
    .expect("write");
    let (ok, text) = cluster.cli(1, &["federation", "propose", "--file", file.to_str().expect("path")]);
    assert!(!ok && text.contains("registry.peers[0]: \"endpoint\" is a required property"), "{text}");
    assert!(text.contains("\"pubkey\" is a required property"), "{text}");

    // The quorum raised to 3 by a whole document: pending with one signature of two needed.
    let peers: Vec<serde_json::Value> = founding
        .members
        .values()
        .map(|m| {
            serde_json::json!({
                "did": m.did,
                "endpoint": format!("https://{}.example", m.did.rsplit(':').next().expect("name")),
                "pubkey": remembrancer_core::identity::multibase_public_key(&m.key),
                "status": "active",
            })
        })
        .collect();
    let update = serde_json::json!({
        "federation_id": founding.name,
        "registry": { "peers": peers, "quorum": 3, "anchor_strategy": "independent" },
        "memo": "every member signs from now on",
    });
    std::fs::write(&file, serde_json::to_vec_pretty(&update).expect("json")).expect("write");
    let (ok, text) =
        cluster.cli(1, &["federation", "propose", "--file", file.to_str().expect("path"), "--json"]);
    assert!(ok, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(answer["applied"], false, "{answer}");
    assert_eq!(answer["signers_needed"], 2);
    assert!(answer["changes"].to_string().contains("quorum 2 -> 3"), "{answer}");
    let digest = answer["proposal"].as_str().expect("digest").to_string();
    cluster.wait("the proposal reaches node 2 and node 3", Duration::from_secs(30), |c| {
        (2..=3).all(|i| proposals(c, i).iter().any(|p| p["proposal"] == digest.as_str()))
    });
    let seen = proposals(&cluster, 2);
    let seen = seen.iter().find(|p| p["proposal"] == digest.as_str()).expect("listed");
    assert_eq!(signers(seen), vec![did(1)], "node 2 shows who signed: {seen}");
    assert_eq!(seen["reason"], "manual");
    assert_eq!(seen["detail"], "every member signs from now on");
    let (ok, listed) = cluster.cli(3, &["federation", "proposals"]);
    assert!(ok && listed.contains(&digest) && listed.contains("signed 1 of 2: did:vm:node:dev1"), "{listed}");
    // Short of its quorum it stays pending: nothing changes anywhere.
    std::thread::sleep(Duration::from_secs(2));
    for i in 1..=3 {
        assert_eq!(exported(&cluster, i).version, 1, "node{i} is still on version 1");
    }

    // A second member approves: the quorum of version 1 is met, version 2 everywhere.
    let (ok, text) = cluster.cli(2, &["federation", "approve", &digest[..12]]);
    assert!(ok, "{text}");
    cluster.wait("version 2 on every node", Duration::from_secs(30), |c| {
        (1..=3).all(|i| c.try_status(i).is_some_and(|s| s["registry_version"] == 2))
    });
    for i in 1..=3 {
        let registry = exported(&cluster, i);
        assert_eq!((registry.version, registry.quorum), (2, 3), "node{i}");
        assert!(registry.members.values().all(|m| m.endpoint.is_some()), "node{i}: the document's endpoints");
    }

    // Removing a member and lowering the quorum in one proposal, by the shorthand options:
    // version 2's quorum is 3, so two signatures leave it pending and the third applies it.
    let (ok, text) = cluster.cli(
        1,
        &[
            "federation",
            "propose",
            "--remove-member",
            &did(3),
            "--quorum",
            "2",
            "--memo",
            "retire dev3",
            "--json",
        ],
    );
    assert!(ok, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let digest = answer["proposal"].as_str().expect("digest").to_string();
    assert_eq!(answer["signers_needed"], 3);
    let (ok, text) = cluster.cli(1, &["federation", "propose", "--remove-member", &did(3)]);
    assert!(!ok && text.contains("quorum 3 is more than the 2 active peers"), "{text}");
    cluster.wait("the removal reaches node 2 and node 3", Duration::from_secs(30), |c| {
        (2..=3).all(|i| proposals(c, i).iter().any(|p| p["proposal"] == digest.as_str()))
    });
    let (ok, text) = cluster.cli(2, &["federation", "approve", &digest]);
    assert!(ok && !text.contains("quorum reached"), "{text}");
    cluster.wait("node 1 sees two signatures", Duration::from_secs(30), |c| {
        proposals(c, 1).iter().any(|p| p["proposal"] == digest.as_str() && signers(p).len() == 2)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(exported(&cluster, 1).version, 2, "two of three signatures: still pending");
    let (ok, text) = cluster.cli(3, &["federation", "approve", &digest]);
    assert!(ok && text.contains("quorum reached, registry v3"), "{text}");
    cluster.wait("version 3 on every node", Duration::from_secs(30), |c| {
        (1..=3).all(|i| c.try_status(i).is_some_and(|s| s["registry_version"] == 3))
    });
    for i in 1..=3 {
        let registry = exported(&cluster, i);
        assert_eq!((registry.quorum, registry.members.len()), (2, 2), "node{i}");
        assert!(registry.member(&did(3)).is_none(), "node{i}: dev3 is gone");
    }
    assert!(proposals(&cluster, 1).is_empty(), "applied proposals are no longer pending");

    // The new registry is the one receipts are counted under: two members, quorum two.
    let size = cluster.append(1, "under version 3");
    cluster.wait("a record final on node 2 under version 3", Duration::from_secs(30), |c| {
        c.final_size(2, &namespace(1)) >= size
    });
    let (ok, text) = cluster.cli(2, &["receipts", "show", "--namespace", &namespace(1), "--json"]);
    assert!(ok, "{text}");
    let receipt: serde_json::Value = serde_json::from_str(&text).expect("receipt");
    assert_eq!(receipt["registry_version"], 3, "{receipt}");
}
