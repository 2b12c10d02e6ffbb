//! What an auditor takes out of three real node processes and checks offline: an
//! equivocation provoked by a test (two roots signed with node 3's key for one size, reported
//! by node 1 over gossip) shows up in `federation evidence list` on every node; its export
//! passes `verify evidence` and a one-byte change of it does not; the probation the evidence
//! triggers is a registry update whose chain (`federation registry chain`) lets `verify
//! receipt --updates` check a receipt counted under the new registry version; the public
//! explorer gives the same evidence file and shows the member's state history with its reason.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{exe, namespace, Cluster};
use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::message::{Content, EvidenceContent, PeerMessage};
use remembrancer_core::note::{Note, NoteSignature};
use remembrancer_core::HashAlgorithm;
use remembrancer_net::{Net, NetConfig, NetEvent, Verdict};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// A checkpoint note of `dev:node3` at size 1 with `root`, signed by node 3's key.
fn note_of_node3(node3: &NodeIdentity, root: [u8; 32]) -> String {
    let checkpoint = Checkpoint {
        federation_id: "devnet".to_string(),
        namespace: namespace(3),
        size: 1,
        root,
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, now_ms() / 1000),
    };
    let body = checkpoint.body();
    Note { signatures: vec![NoteSignature::sign_ed25519(node3, &body)], text: body }.to_text()
}

/// The CLI against node `i` (`--data-dir` appended), its output parsed as JSON.
fn json(cluster: &Cluster, i: usize, args: &[&str]) -> serde_json::Value {
    let (ok, text) = cluster.cli(i, args);
    assert!(ok, "{args:?} on node{i}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// `remembrancer verify ...` offline: exit code and output.
fn verify(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(exe()).arg("verify").args(args).output().expect("run verify");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

/// Publishes `report` (an encoded peer message) on gossip from a peer outside the registry
/// (anyone may relay gossip), again each round, until every node lists `count` evidence records.
fn relay_until_every_node_lists_evidence(cluster: &Cluster, report: &[u8], count: usize) {
    let bootstrap = cluster.bootstrap_address(1);
    let relay = NodeIdentity::generate("did:vm:node:relay").expect("key");
    let mut config = NetConfig::new(relay.secret_seed(), "devnet");
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
    config.bootstrap = vec![bootstrap.parse().expect("bootstrap")];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut net = runtime.block_on(async { Net::start(&config).expect("relay net") });
    let started = Instant::now();
    let everywhere = |c: &Cluster| {
        (1..=3).all(|i| {
            json(c, i, &["federation", "evidence", "list", "--json"])
                .as_array()
                .is_some_and(|l| l.len() >= count)
        })
    };
    while !everywhere(cluster) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the evidence did not reach every node:\n{}",
            cluster.logs()
        );
        runtime.block_on(async {
            // Published again each round until a member has it (a repeat is a duplicate).
            let _ = net.publish(report.to_vec());
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    if let NetEvent::Gossip { source, id, .. } = net.next().await {
                        net.report(&id, &source, Verdict::Ignore);
                    }
                }
            })
            .await;
        });
    }
}

#[test]
fn evidence_and_the_registry_chain_leave_the_nodes_and_verify_offline() {
    let cluster = Cluster::connected(3);
    let folder = cluster.node_dir(1).parent().expect("cluster folder").to_path_buf();
    let registry = folder.join("registry.yaml");

    // Node 3's key signs two roots for one size; node 1's key reports them, sealed, on gossip
    // from a peer outside the registry.
    let node3 = cluster.identity(3);
    let content =
        EvidenceContent { first: note_of_node3(&node3, [1; 32]), second: note_of_node3(&node3, [2; 32]) };
    let report = PeerMessage::sign(&cluster.identity(1), Content::Evidence(content), now_ms()).encode();
    relay_until_every_node_lists_evidence(&cluster, &report, 1);

    // The same record, under the same id, on every node.
    let lists: Vec<serde_json::Value> =
        (1..=3).map(|i| json(&cluster, i, &["federation", "evidence", "list", "--json"])).collect();
    let id = lists[0][0]["id"].as_str().expect("id").to_string();
    for (i, list) in lists.iter().enumerate() {
        assert_eq!(list.as_array().map(Vec::len), Some(1), "node{}: {list}", i + 1);
        assert_eq!(list[0]["id"], id.as_str(), "node{}", i + 1);
        assert_eq!(list[0]["signer"], "did:vm:node:dev3");
        assert_eq!(list[0]["namespace"], "dev:node3");
        assert_eq!(list[0]["size"], 1);
    }
    let (ok, shown) = cluster.cli(2, &["federation", "evidence", "show", &id[..6]]);
    assert!(ok && shown.contains("did:vm:node:dev3 signed two roots for dev:node3 at size 1"), "{shown}");

    // Exported from node 2, it verifies offline; a one-byte change does not.
    let file = folder.join("evidence.json");
    let (ok, text) =
        cluster.cli(2, &["federation", "evidence", "export", &id, "--out", file.to_str().expect("path")]);
    assert!(ok, "{text}");
    let (code, text) =
        verify(&["evidence", file.to_str().expect("path"), "--registry", registry.to_str().expect("path")]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok   equivocation: two roots for one size"), "{text}");
    let mut bytes = std::fs::read(&file).expect("export");
    // A character of the first note's signature by node 3.
    let first_note = bytes.windows(7).position(|w| w == b"\"first\"").expect("the first note");
    let signer = b"did:vm:node:dev3 ";
    let line = first_note
        + bytes[first_note..].windows(signer.len()).position(|w| w == signer).expect("its signature line");
    bytes[line + signer.len() + 10] ^= 0x01;
    let mutated = folder.join("mutated.json");
    std::fs::write(&mutated, &bytes).expect("write");
    let (code, text) = verify(&[
        "evidence",
        mutated.to_str().expect("path"),
        "--registry",
        registry.to_str().expect("path"),
    ]);
    assert_eq!(code, Some(1), "a changed byte must fail: {text}");

    // The evidence puts node 3 on probation: a quorum-signed registry update on every node.
    cluster.wait("registry version 2 on every node", Duration::from_secs(30), |c| {
        (1..=3).all(|i| c.try_status(i).is_some_and(|s| s["registry_version"] == 2))
    });
    let (ok, yaml) = cluster.cli(1, &["federation", "registry", "export"]);
    assert!(ok, "{yaml}");
    let exported = remembrancer_core::registry::Registry::from_yaml(&yaml).expect("the export is a registry");
    assert_eq!(exported.version, 2);
    assert_eq!(exported.member("did:vm:node:dev3").map(|m| m.status.name()), Some("probation"));
    let chain = json(&cluster, 1, &["federation", "registry", "chain"]);
    assert_eq!(chain.as_array().map(Vec::len), Some(1), "{chain}");
    let chain_file = folder.join("chain.json");
    std::fs::write(&chain_file, chain.to_string()).expect("write chain");

    // The public explorer shows the same: the evidence (the file it gives is the export), its
    // arrival today, and node 3's state history with the reason.
    let base = cluster.explorer_url(2);
    let get = |path: &str| {
        ureq::get(&format!("{base}{path}")).call().expect(path).body_mut().read_to_string().expect(path)
    };
    cluster.wait("the explorer's snapshot has the probation", Duration::from_secs(10), |_| {
        get("/api/v1/members/did:vm:node:dev3").contains("\"probation\"")
    });
    let listed: serde_json::Value = serde_json::from_str(&get("/api/v1/evidence")).expect("json");
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    let file: serde_json::Value =
        serde_json::from_str(&get(&format!("/api/v1/evidence/{id}"))).expect("json");
    let exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("evidence.json")).expect("export")).expect("json");
    assert_eq!(file, exported, "the explorer gives the file `evidence export` writes");
    let overview: serde_json::Value = serde_json::from_str(&get("/api/v1/overview")).expect("json");
    assert_eq!(overview["evidence_last_day"], 1, "{overview}");
    let member: serde_json::Value =
        serde_json::from_str(&get("/api/v1/members/did:vm:node:dev3")).expect("json");
    let history = &member["history"][0];
    assert_eq!(
        (history["version"].as_u64(), history["from"].as_str(), history["to"].as_str()),
        (Some(2), Some("active"), Some("probation")),
        "{member}"
    );
    assert!(history["reason"].as_str().is_some_and(|r| r.starts_with("equivocation")), "{member}");
    assert!(get("/members/did:vm:node:dev3").contains("version 2: "), "the history on the page");
    assert!(get("/metrics").contains("remembrancer_member_state_changes 1"));

    // A receipt counted under version 2 verifies with the founding registry and the chain.
    let size = cluster.append(1, "after the probation");
    cluster
        .wait("node 1's record final", Duration::from_secs(30), |c| c.final_size(1, &namespace(1)) >= size);
    let receipt = json(&cluster, 1, &["receipts", "show", "--namespace", &namespace(1), "--json"]);
    let receipt_file = folder.join("receipt.json");
    std::fs::write(&receipt_file, receipt.to_string()).expect("write receipt");
    let (code, text) = verify(&[
        "receipt",
        receipt_file.to_str().expect("path"),
        "--registry",
        registry.to_str().expect("path"),
        "--updates",
        chain_file.to_str().expect("path"),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("registry version 2"), "{text}");
}

/// An epoch anchor claim signed with node 3's key in a federation of independent mode (where
/// the election allows no one an epoch): every node keeps it as evidence, `evidence show`
/// says what it is, its export verifies offline with the registry version the claim names and
/// not with another, a one-byte change of the claim fails, and a quorum puts node 3 on
/// probation.
#[test]
fn an_epoch_claimed_out_of_turn_is_evidence_on_every_node_and_verifies_offline() {
    use remembrancer_core::anchoring::{epoch_root, EpochEntry, LocalTarget};
    use remembrancer_core::message::EpochAnchorContent;
    let cluster = Cluster::connected(3);
    let folder = cluster.node_dir(1).parent().expect("cluster folder").to_path_buf();
    let registry = folder.join("registry.yaml");
    let entries = vec![EpochEntry { namespace: namespace(3), size: 1, root: vec![3u8; 32].into() }];
    let content = EpochAnchorContent {
        epoch: now_ms() / 10_000,
        registry_version: 1,
        root: epoch_root(&entries).to_vec().into(),
        entries,
        reference: remembrancer_core::anchoring::AnchorTarget::anchor(
            &mut LocalTarget::default(),
            &[0; 32],
            now_ms(),
        )
        .expect("anchored"),
    };
    let claim = PeerMessage::sign(&cluster.identity(3), Content::EpochAnchor(content), now_ms()).encode();
    relay_until_every_node_lists_evidence(&cluster, &claim, 1);
    let list = json(&cluster, 2, &["federation", "evidence", "list", "--json"]);
    assert_eq!(list[0]["kind"], "unelected_claim", "{list}");
    assert_eq!(list[0]["signer"], "did:vm:node:dev3");
    assert!(list[0]["rank"].is_u64(), "{list}");
    let id = list[0]["id"].as_str().expect("id").to_string();
    let (ok, listed) = cluster.cli(1, &["federation", "evidence", "list"]);
    assert!(ok && listed.contains("did:vm:node:dev3 claimed the anchor of epoch"), "{listed}");

    let file = folder.join("claim.json");
    let (ok, text) = cluster
        .cli(2, &["federation", "evidence", "export", &id[..6], "--out", file.to_str().expect("path")]);
    assert!(ok, "{text}");
    let (code, text) =
        verify(&["evidence", file.to_str().expect("path"), "--registry", registry.to_str().expect("path")]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok   out of turn: the election of epoch"), "{text}");
    // Another registry version: refused, naming the one to give.
    cluster.wait("registry version 2 on every node", Duration::from_secs(30), |c| {
        (1..=3).all(|i| c.try_status(i).is_some_and(|s| s["registry_version"] == 2))
    });
    let (ok, yaml) = cluster.cli(1, &["federation", "registry", "export"]);
    assert!(ok, "{yaml}");
    let v2 = folder.join("registry-v2.yaml");
    std::fs::write(&v2, &yaml).expect("write");
    let (code, text) =
        verify(&["evidence", file.to_str().expect("path"), "--registry", v2.to_str().expect("path")]);
    assert!(code == Some(1) && text.contains("give version 1"), "{text}");
    let exported = remembrancer_core::registry::Registry::from_yaml(&yaml).expect("the export is a registry");
    assert_eq!(exported.member("did:vm:node:dev3").map(|m| m.status.name()), Some("probation"));
    // A one-byte change of the claim (its signature's last byte, base64): refused.
    let mut exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("export")).expect("json");
    let message = exported["message"].as_str().expect("message").to_string();
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &message).expect("base64");
    let signature_at = raw.windows(2).rposition(|w| w == [0x58, 0x40]).expect("the signature's head") + 2;
    raw[signature_at] ^= 0x01;
    exported["message"] = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw).into();
    let mutated = folder.join("claim-mutated.json");
    std::fs::write(&mutated, exported.to_string()).expect("write");
    let (code, text) = verify(&[
        "evidence",
        mutated.to_str().expect("path"),
        "--registry",
        registry.to_str().expect("path"),
    ]);
    assert!(code == Some(1) && text.contains("signature does not verify"), "{text}");
}
