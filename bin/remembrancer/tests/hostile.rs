//! A peer outside the registry joins the gossip mesh of five real node processes and sends
//! garbage, messages signed with its own key, messages forged in a member's name and replays
//! of members' messages: nothing it sends counts, the nodes count and penalise it (gossipsub
//! score) until they disconnect it, no member's score suffers, and the federation keeps finalizing. (Hostile API clients:
//! `api.rs`.)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{namespace, Cluster};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::message::{Content, HeartbeatContent, PeerMessage};
use remembrancer_net::{Net, NetConfig, NetEvent, Verdict};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// Handles the hostile node's network events for `time`; keeps the first member message.
async fn pump(net: &mut Net, time: Duration, captured: &mut Option<Vec<u8>>) {
    let _ = tokio::time::timeout(time, async {
        loop {
            if let NetEvent::Gossip { source, id, data } = net.next().await {
                if captured.is_none() && PeerMessage::decode(&data).is_ok() {
                    *captured = Some(data);
                }
                net.report(&id, &source, Verdict::Ignore);
            }
        }
    })
    .await;
}

#[test]
fn a_hostile_peer_outside_the_registry_counts_for_nothing_and_is_penalised() {
    // Node 5 starts after the attack. While a member is missing, members broadcast by gossip,
    // which the hostile peer hears and can replay; once every member is connected, they send
    // the kinds every commit makes on their streams to one another, which it does not hear.
    let mut cluster = Cluster::setup(5);
    cluster.start_members(4);
    cluster.wait_connected(4);
    let bootstrap = cluster.bootstrap_address(1);

    let hostile = NodeIdentity::generate("did:vm:node:hostile").expect("key");
    let mut config = NetConfig::new(hostile.secret_seed(), "devnet");
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
    config.bootstrap = vec![bootstrap.parse().expect("bootstrap multiaddr")];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let hostile_peer = runtime.block_on(async {
        let mut net = Net::start(&config).expect("hostile net");
        let mut captured = None;
        // Join the mesh and catch a member's message to replay and forge.
        for _ in 0..100 {
            cluster.append(3, "traffic for the hostile peer to see");
            pump(&mut net, Duration::from_millis(300), &mut captured).await;
            if captured.is_some() {
                break;
            }
        }
        let captured = captured.expect("the hostile peer hears the federation's gossip");
        for round in 0..10u64 {
            // Well-formed, signed with its own key: a sender outside the registry.
            let finalized = BTreeMap::from([(namespace(1), 1_000_000 + round)]);
            let content = Content::Heartbeat(HeartbeatContent { registry_version: 1, finalized });
            net.publish(PeerMessage::sign(&hostile, content.clone(), now_ms()).encode()).expect("publish");
            // Garbage that decodes as nothing.
            let garbage: Vec<u8> = (0..1000u64).map(|i| ((i * 31 + round * 7) % 251) as u8).collect();
            net.publish(garbage).expect("publish garbage");
            // Forged in a member's name: its signature cannot verify.
            let mut forged = PeerMessage::sign(&hostile, content, now_ms());
            forged.sender = common::did(1);
            net.publish(forged.encode()).expect("publish forged");
            let mut altered = PeerMessage::decode(&captured).expect("captured");
            altered.timestamp += 1 + round;
            net.publish(altered.encode()).expect("publish altered");
            // A replay, on gossip (dropped as a duplicate) and directly (not a member).
            net.publish(captured.clone()).expect("publish replay");
            // (Once its gossip score is under the graylist the nodes disconnect it.)
            if let Some(peer) = net.connected().iter().next().copied() {
                net.send(peer, captured.clone());
            }
            pump(&mut net, Duration::from_millis(200), &mut None).await;
        }
        pump(&mut net, Duration::from_secs(2), &mut None).await;
        net.peer_id().to_string()
    });

    for i in 1..=4 {
        assert_eq!(cluster.status(i)["frames_streamed"], 0, "node{i}: by gossip while node 5 is away");
    }
    cluster.start(5);
    cluster.wait_connected(5);

    // The federation keeps finalizing.
    let size = cluster.append(2, "after the attack");
    cluster.wait("node 2's batch final on every node", Duration::from_secs(30), |c| {
        (1..=5).all(|i| c.final_size(i, &namespace(2)) >= size)
    });
    let mut refused_total = 0;
    let mut penalised = 0;
    for i in 1..=5 {
        let status = cluster.status(i);
        assert_eq!(status["registry_version"], 1, "node{i}: the registry did not change");
        let peers = status["peers"].as_array().expect("peers");
        assert_eq!(peers.len(), 5, "node{i}: the hostile peer is not a member");
        for peer in peers {
            assert_eq!(peer["honesty_refusals"], 0, "node{i}: no member is blamed for the forgeries: {peer}");
        }
        // Nothing it claimed counts: no node holds a final size it announced.
        assert!(cluster.final_size(i, &namespace(1)) < 1_000_000, "node{i}");
        // No member is penalised for what the hostile peer did.
        for entry in status["refused_from"].as_array().into_iter().flatten() {
            assert!(entry["member"].is_null(), "node{i}: a member's connection was blamed: {entry}");
        }
        if let Some(entry) = status["refused_from"]
            .as_array()
            .and_then(|list| list.iter().find(|e| e["peer_id"] == hostile_peer.as_str()))
        {
            refused_total += entry["refused"].as_u64().unwrap_or(0);
            if let Some(score) = entry["gossip_score"].as_f64() {
                assert!(score < 0.0, "node{i}: gossipsub penalises the hostile peer: {entry}");
                // Each rejection costs -10 x (rejections)^2, decaying x0.9 a second; below -80
                // gossipsub drops everything the peer sends without asking the node.
                penalised += usize::from(score < -10.0);
            }
        }
    }
    let node1 = cluster.status(1);
    assert!(
        cluster.status(2)["frames_streamed"].as_u64().unwrap_or(0) >= 1,
        "with all connected, on streams"
    );
    assert!(refused_total >= 3, "the nodes it reached refused its messages ({refused_total})\n{node1}");
    assert!(penalised >= 1, "at least the bootstrap node penalises the hostile peer\n{node1}");
    let disconnects: u64 =
        (1..=4).map(|i| cluster.status(i)["score_disconnects"].as_u64().unwrap_or(0)).sum();
    assert!(disconnects >= 1, "its score fell under the graylist: a node disconnected it\n{node1}");
    assert!(node1["outsider_messages"].as_u64().unwrap_or(0) >= 1, "outsider counted: {node1}");
    assert!(node1["garbage_messages"].as_u64().unwrap_or(0) >= 1, "garbage counted: {node1}");
}
