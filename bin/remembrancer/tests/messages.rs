//! Cross-namespace messages between real node processes, as a user sends them with
//! `remembrancer namespace message`: a notify, a query and an invoke are acknowledged with
//! proven ACK records (the query names the tree size it read); an operation the target's
//! policy does not allow is acknowledged as `not_allowed`; a message whose target is down
//! past its deadline comes back `expired` from a proven TIMEOUT; and ten replays of a
//! delivery, relayed by an outsider, neither run the handler again nor append anything.

mod common;

use std::time::{Duration, Instant};

use common::{namespace, Cluster};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::message::{Content, PeerMessage, XDeliveryContent};
use remembrancer_net::{Net, NetConfig, NetEvent, Verdict};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// Sends a message from node `from`'s namespace; its id.
fn send(
    cluster: &Cluster,
    from: usize,
    to: usize,
    action: &str,
    operation: &str,
    payload: &str,
    deadline: u64,
) -> String {
    let (ok, out) = cluster.cli(
        from,
        &[
            "namespace",
            "message",
            "--from",
            &namespace(from),
            "--to",
            &namespace(to),
            "--action",
            action,
            "--operation",
            operation,
            "--payload",
            payload,
            "--deadline",
            &deadline.to_string(),
        ],
    );
    assert!(ok, "{out}");
    let id = out.lines().find(|l| l.starts_with("sha256:")).expect("the id on its own line").to_string();
    assert_eq!(id.len(), "sha256:".len() + 64, "{out}");
    id
}

fn node_identity(cluster: &Cluster, i: usize) -> NodeIdentity {
    let key = std::fs::read_to_string(cluster.node_dir(i).join("node.key")).expect("key");
    NodeIdentity::from_key_file(&key).expect("identity")
}

/// Publishes `messages` on gossip from a peer outside the registry (anyone may relay gossip),
/// one each half second at most, until `done` holds or they run out.
fn relay(cluster: &Cluster, messages: impl Iterator<Item = Vec<u8>>, done: impl Fn(&Cluster) -> bool) {
    let relay_identity = NodeIdentity::generate("did:vm:node:relay").expect("key");
    let mut config = NetConfig::new(relay_identity.secret_seed(), "devnet");
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
    config.bootstrap = vec![cluster.bootstrap_address(1).parse().expect("bootstrap")];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut net = runtime.block_on(async { Net::start(&config).expect("relay net") });
    for message in messages {
        if done(cluster) {
            return;
        }
        runtime.block_on(async {
            let _ = net.publish(message);
            let _ = tokio::time::timeout(Duration::from_millis(300), async {
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

fn status(cluster: &Cluster, i: usize, id: &str) -> serde_json::Value {
    let (ok, out) = cluster.cli(i, &["namespace", "message", "status", id, "--json"]);
    assert!(ok, "{out}");
    serde_json::from_str(&out).expect("json")
}

fn wait_status(cluster: &Cluster, i: usize, id: &str, wanted: &str) -> serde_json::Value {
    cluster.wait(&format!("message {id} {wanted}"), Duration::from_secs(60), |c| {
        status(c, i, id)["status"] == wanted
    });
    status(cluster, i, id)
}

fn tree_size(cluster: &Cluster, i: usize) -> u64 {
    cluster.status(i)["namespaces"]
        .as_array()
        .and_then(|l| {
            l.iter().find(|n| n["namespace"] == namespace(i).as_str()).and_then(|n| n["size"].as_u64())
        })
        .unwrap_or(0)
}

#[test]
fn messages_between_namespaces_are_acknowledged_expire_and_are_never_run_twice() {
    let mut cluster = Cluster::connected(3);

    // notify, as the spec writes the command, waiting for its outcome.
    let (ok, out) = cluster.cli(
        1,
        &[
            "namespace",
            "message",
            "--from",
            &namespace(1),
            "--to",
            &namespace(2),
            "--action",
            "notify",
            "--operation",
            "status.update",
            "--payload",
            r#"{"status":"completed"}"#,
            "--wait",
            "30",
        ],
    );
    assert!(ok && out.lines().last().is_some_and(|l| l.contains(" acked ") && l.ends_with("  ok")), "{out}");
    let notify = out.lines().last().and_then(|l| l.split_whitespace().next()).expect("id").to_string();
    let acked = wait_status(&cluster, 1, &notify, "acked");
    assert_eq!(acked["outcome"]["ok"]["result"], "", "{acked}");
    assert_eq!(acked["sequence"], 1);
    // query: the result names the size it was read at.
    let query = send(&cluster, 1, 2, "query", "tree.size", "{}", 600);
    let acked = wait_status(&cluster, 1, &query, "acked");
    let evaluated = acked["outcome"]["ok"]["evaluated_at"].as_u64().expect("evaluated_at");
    let result: serde_json::Value =
        serde_json::from_str(acked["outcome"]["ok"]["result"].as_str().expect("result")).expect("json");
    assert_eq!(result["size"].as_u64(), Some(evaluated), "{acked}");
    assert!(evaluated >= 2, "the notify's RECEIPT and ACK are in the target's tree: {acked}");
    assert_eq!(acked["sequence"], 2, "a dense sequence per lane");
    // invoke: record.append appends to the target's namespace.
    let before = tree_size(&cluster, 3);
    let invoke = send(&cluster, 1, 3, "invoke", "record.append", r#"{"data":"from dev:node1"}"#, 600);
    let acked = wait_status(&cluster, 1, &invoke, "acked");
    let result: serde_json::Value =
        serde_json::from_str(acked["outcome"]["ok"]["result"].as_str().expect("result")).expect("json");
    let index = result["index"].as_u64().expect("index");
    assert_eq!(index, before + 1, "after the RECEIPT: {acked}");
    assert_eq!(acked["sequence"], 1, "another lane: {acked}");
    // Not in the target's policy: acknowledged as not allowed, nothing run.
    let refused = send(&cluster, 2, 3, "invoke", "ledger.close", "{}", 600);
    let acked = wait_status(&cluster, 2, &refused, "acked");
    assert_eq!(acked["outcome"]["error"]["code"], "not_allowed", "{acked}");
    let (ok, outbox) = cluster.cli(1, &["namespace", "outbox", &namespace(1)]);
    assert!(ok && outbox.lines().filter(|l| l.contains(" acked ")).count() == 3, "{outbox}");
    let (ok, inbox) = cluster.cli(3, &["namespace", "inbox", &namespace(3), "--json"]);
    let inbox: serde_json::Value = serde_json::from_str(&inbox).expect("json");
    assert!(ok && inbox.as_array().map(Vec::len) == Some(2), "{inbox}");

    // Offline, with the registry alone: the invoke's record under its source's checkpoint, and
    // the target's ACK under the target's.
    let registry = cluster.dir.path().join("registry.yaml");
    let registry = registry.to_str().expect("path");
    let verify_message = |node: usize, index: u64, name: &str| {
        let file = cluster.dir.path().join(name);
        let file = file.to_str().expect("path");
        let (ok, out) = cluster.cli(
            node,
            &["proof", "--namespace", &namespace(node), "--index", &index.to_string(), "--out", file],
        );
        assert!(ok, "{out}");
        let output = std::process::Command::new(common::exe())
            .args(["verify", "message", file, "--registry", registry])
            .output()
            .expect("verify");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let out =
        verify_message(1, status(&cluster, 1, &invoke)["index"].as_u64().expect("index"), "invoke.json");
    assert!(out.contains("ok   message: dev:node1 → dev:node3 #1 invoke record.append"), "{out}");
    let answered = inbox
        .as_array()
        .and_then(|l| l.iter().find(|e| e["operation"] == "record.append"))
        .expect("the invoke");
    let out = verify_message(3, answered["answer_index"].as_u64().expect("answer"), "ack.json");
    assert!(out.contains("ok   message: dev:node3 acknowledged") && out.contains("ok   quorum"), "{out}");

    // ten replays of the invoke, relayed on gossip by a peer outside the registry: the target
    // answers from what it recorded and appends nothing.
    let size = tree_size(&cluster, 3);
    let (ok, bundle) = cluster.cli(
        1,
        &[
            "proof",
            "--namespace",
            &namespace(1),
            "--index",
            &status(&cluster, 1, &invoke)["index"].to_string(),
        ],
    );
    assert!(ok, "{bundle}");
    let bundle_json: serde_json::Value = serde_json::from_str(&bundle).expect("bundle");
    let record = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        bundle_json["record"].as_str().expect("record"),
    )
    .expect("base64");
    let node1 = node_identity(&cluster, 1);
    let started = Instant::now();
    let replays = (0..10u64).map(|replay| {
        let content =
            Content::XDelivery(XDeliveryContent { record: record.clone().into(), bundle: bundle.clone() });
        PeerMessage::sign(&node1, content, now_ms() + replay).encode()
    });
    relay(&cluster, replays, |_| false);
    assert!(started.elapsed() < Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tree_size(&cluster, 3), size, "replays appended nothing:\n{}", cluster.logs());
    let log = std::fs::read_to_string(cluster.node_dir(3).join("node.log")).expect("log");
    assert_eq!(log.matches("message recorded id=").count(), 2, "the invoke and the refused one, once each");
    let answered_again = log.matches("answered again from its record").count();
    assert!(answered_again >= 5, "the replays reached the target: {answered_again} of 10");

    // expiry: the target is down past the deadline; when it is back, the delivery it gets
    // is recorded as a TIMEOUT, and the sender shows `expired`.
    cluster.kill9(3);
    let late = send(&cluster, 2, 3, "notify", "status.update", r#"{"status":"late"}"#, 1);
    wait_status(&cluster, 2, &late, "final");
    std::thread::sleep(Duration::from_secs(3));
    cluster.start(3);
    let expired = wait_status(&cluster, 2, &late, "expired");
    assert!(expired["outcome"].is_null(), "{expired}");
}

/// A source whose tree holds two messages at one lane and sequence (node 1's key appends the
/// second as a plain record and delivers it, relayed by an outsider): the target freezes the
/// lane and publishes the evidence, a third member checks it and freezes the lane too, and a
/// later message on that lane is not taken.
#[test]
fn two_messages_at_one_sequence_freeze_the_lane_on_every_node() {
    use remembrancer_core::xmsg::{canonical_json, Action, Envelope};
    let cluster = Cluster::connected(3);
    let first = send(&cluster, 1, 2, "notify", "status.update", r#"{"status":"completed"}"#, 600);
    let acked = wait_status(&cluster, 1, &first, "acked");
    let deadline = acked["deadline"].as_u64().expect("deadline");
    // The second message at sequence 1, appended to dev:node1 as a plain record.
    let second = Envelope {
        federation: "devnet".to_string(),
        source: namespace(1),
        target: namespace(2),
        sequence: 1,
        deadline,
        action: Action::Notify,
        operation: "status.update".to_string(),
        parameters: canonical_json(&serde_json::json!({"status": "reversed"})),
        reply_to: None,
    }
    .record();
    let file = cluster.dir.path().join("second.bin");
    std::fs::write(&file, &second).expect("write");
    let (ok, out) = cluster.cli(
        1,
        &["record", "append", "--namespace", &namespace(1), "--file", file.to_str().expect("path"), "--json"],
    );
    assert!(ok, "{out}");
    let index =
        serde_json::from_str::<serde_json::Value>(&out).expect("json")["size"].as_u64().expect("size") - 1;
    let mut bundle = String::new();
    cluster.wait("the second message final", Duration::from_secs(30), |c| {
        let (ok, out) = c.cli(1, &["proof", "--namespace", &namespace(1), "--index", &index.to_string()]);
        bundle = out;
        ok
    });
    let node1 = node_identity(&cluster, 1);
    let frozen =
        |c: &Cluster, i: usize| c.try_status(i).and_then(|s| s["lanes_frozen"].as_u64()).unwrap_or(0);
    let deliveries = std::iter::repeat_with(|| {
        let content =
            Content::XDelivery(XDeliveryContent { record: second.clone().into(), bundle: bundle.clone() });
        PeerMessage::sign(&node1, content, now_ms()).encode()
    })
    .take(120);
    relay(&cluster, deliveries, |c| (1..=3).all(|i| frozen(c, i) > 0));
    assert!(
        (1..=3).all(|i| frozen(&cluster, i) > 0),
        "the lane was not frozen everywhere:\n{}",
        cluster.logs()
    );
    // A later message on the frozen lane is not taken.
    let later = send(&cluster, 1, 2, "notify", "status.update", "{}", 600);
    wait_status(&cluster, 1, &later, "final");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status(&cluster, 1, &later)["status"], "final", "not acknowledged on a frozen lane");
    let log = std::fs::read_to_string(cluster.node_dir(2).join("node.log")).expect("log");
    assert!(log.contains("the lane is frozen"), "{log}");
}

fn in_custody(cluster: &Cluster) -> u64 {
    (1..=5).filter_map(|i| cluster.try_status(i)).filter_map(|s| s["messages_in_custody"].as_u64()).sum()
}

/// Five processes, quorum 3: each namespace notifies the next and queries the one after it;
/// every message is delivered, then acknowledged. Then a source goes offline before its
/// target is back: a third member relays the message, the target runs it once, and the
/// source, back, shows it `acked`.
#[test]
fn five_nodes_message_each_other_and_a_third_member_relays() {
    let mut cluster = Cluster::connected(5);
    let mut sent = Vec::new();
    for i in 1..=5 {
        let next = i % 5 + 1;
        let after = (i + 1) % 5 + 1;
        sent.push((i, send(&cluster, i, next, "notify", "status.update", r#"{"status":"ready"}"#, 600)));
        sent.push((i, send(&cluster, i, after, "query", "tree.size", "{}", 600)));
    }
    for (i, id) in &sent {
        let acked = wait_status(&cluster, *i, id, "acked");
        assert!(acked["outcome"]["ok"].is_object(), "{acked}");
        let (sent_at, delivered_at, answered_at) =
            (&acked["sent_at_ms"], &acked["delivered_at_ms"], &acked["answered_at_ms"]);
        assert!(acked["receipt_index"].is_u64(), "the target's RECEIPT notice came: {acked}");
        assert!(
            sent_at.as_u64() <= delivered_at.as_u64() && delivered_at.as_u64() <= answered_at.as_u64(),
            "{acked}"
        );
    }
    // Custody ends when the answer is proven: the custodians were handed it.
    cluster.wait("custody ended for the answered messages", Duration::from_secs(30), |c| in_custody(c) == 0);

    // The target (node 2) is down; node 1 sends, the message is final, two custodians hold it.
    cluster.kill9(2);
    let relayed = send(&cluster, 1, 2, "invoke", "record.append", r#"{"data":"relayed"}"#, 600);
    wait_status(&cluster, 1, &relayed, "final");
    cluster.wait("two custodians hold the message", Duration::from_secs(30), |c| in_custody(c) == 2);
    // The source goes down, the target comes back: a custodian delivers it.
    cluster.kill9(1);
    cluster.start(2);
    let inbox = |c: &Cluster| -> Option<serde_json::Value> {
        let (ok, out) = c.cli(2, &["namespace", "inbox", &namespace(2), "--json"]);
        let list: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
        list.as_array()?.iter().find(|e| e["id"] == relayed.as_str()).cloned()
    };
    cluster.wait("the target ran the relayed message", Duration::from_secs(90), |c| {
        inbox(c).is_some_and(|e| e["answer_final"] == true)
    });
    let entry = inbox(&cluster).expect("the relayed message");
    assert_eq!(entry["status"], "acked", "{entry}");
    cluster.wait("custody ended: the relayer got the proven ACK", Duration::from_secs(60), |c| {
        in_custody(c) == 0
    });
    let log = std::fs::read_to_string(cluster.node_dir(2).join("node.log")).expect("log");
    assert_eq!(log.matches(&format!("message recorded id={relayed}")).count(), 1, "run once");
    let relayers = (3..=5)
        .filter(|i| {
            std::fs::read_to_string(cluster.node_dir(*i).join("node.log"))
                .is_ok_and(|l| l.contains(&format!("relaying the message to its target id={relayed}")))
        })
        .count();
    assert!(relayers >= 1, "a third member relayed it:\n{}", cluster.logs());
    // The source, back, learns the outcome (its own retry is answered as a replay).
    cluster.start(1);
    let acked = wait_status(&cluster, 1, &relayed, "acked");
    assert!(acked["outcome"]["ok"].is_object(), "{acked}");
    let log = std::fs::read_to_string(cluster.node_dir(2).join("node.log")).expect("log");
    assert_eq!(log.matches(&format!("message recorded id={relayed}")).count(), 1, "still run once");
}
