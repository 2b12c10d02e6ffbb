//! A lying member on real processes: four honest nodes and a fifth member of the registry
//! whose node is this test, speaking with member 5's own key and PeerId. It signs two roots
//! for one size of its namespace (the second sent to node 1 alone), forges countersignatures
//! of an honest owner's checkpoint and a message in another member's name, replays members'
//! messages, and floods frames over the cap. The federation keeps finalizing; every node
//! holds the evidence (nodes 2-4 by gossip), keeps it across a kill -9, and puts the liar on
//! probation by a quorum-signed registry update; every refusal is counted by its reason; and
//! gossipsub's score of the liar falls until the nodes disconnect it. (A peer outside the
//! registry: `hostile.rs`.)

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{did, namespace, Cluster};
use futures::AsyncWriteExt as _;
use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::message::{decode_frame, AnchorContent, Content, CountersignContent, PeerMessage};
use remembrancer_core::note::{Note, NoteSignature};
use remembrancer_core::HashAlgorithm;
use remembrancer_net::libp2p::PeerId;
use remembrancer_net::{Net, NetConfig, NetEvent, Verdict, MESSAGE_BYTES_MAX};

const LIAR: usize = 5;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// The liar's checkpoint of its own namespace at `size` with `root`, as a signed note.
fn liar_note(liar: &NodeIdentity, size: u64, root: [u8; 32]) -> String {
    let checkpoint = Checkpoint {
        federation_id: "devnet".to_string(),
        namespace: namespace(LIAR),
        size,
        root,
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, now_ms() / 1000),
    };
    let body = checkpoint.body();
    Note { signatures: vec![NoteSignature::sign_ed25519(liar, &body)], text: body }.to_text()
}

/// The lying member's network side: what it hears is kept (frames of members' messages to
/// replay, honest owners' anchors to forge countersignatures of); gossip gets no verdict of
/// its own (Ignore: it forwards nothing).
struct Liar {
    net: Net,
    identity: NodeIdentity,
    /// Frames members sent it on their streams, as they came.
    heard: Vec<Vec<u8>>,
    /// Honest owners' anchors it was sent, by namespace.
    anchors: BTreeMap<String, AnchorContent>,
}

impl Liar {
    async fn pump(&mut self, time: Duration) {
        let until = tokio::time::Instant::now() + time;
        let mut discovery = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                _ = discovery.tick() => self.net.discover(),
                event = self.net.next() => match event {
                    NetEvent::Gossip { source, id, data } => {
                        self.keep(&data);
                        self.net.report(&id, &source, Verdict::Ignore);
                    }
                    NetEvent::Direct { data, .. } => {
                        self.keep(&data);
                        if self.heard.len() < 64 {
                            self.heard.push(data);
                        }
                    }
                    _ => {}
                },
            }
        }
    }

    fn keep(&mut self, frame: &[u8]) {
        for message in decode_frame(frame).into_iter().flatten() {
            if let Content::Anchor(anchor) = &message.content {
                if message.sender != self.identity.did() {
                    // The origin line is `<federation>/<namespace>`.
                    let origin = anchor.checkpoint.lines().next().unwrap_or_default();
                    let namespace = origin.split_once('/').map_or(origin, |(_, n)| n).to_string();
                    self.anchors.insert(namespace, anchor.clone());
                }
            }
        }
    }

    /// A message stream to `peer`, its network driven meanwhile (at most 10 s).
    async fn open_stream(&mut self, peer: PeerId) -> std::io::Result<remembrancer_net::libp2p::Stream> {
        let opening = self.net.open_stream(peer);
        tokio::pin!(opening);
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            tokio::select! {
                stream = &mut opening => return stream,
                _ = tokio::time::sleep_until(until) => return Err(std::io::ErrorKind::TimedOut.into()),
                event = self.net.next() => if let NetEvent::Gossip { source, id, .. } = event {
                    self.net.report(&id, &source, Verdict::Ignore);
                },
            }
        }
    }

    fn signed(&self, content: Content) -> Vec<u8> {
        PeerMessage::sign(&self.identity, content, now_ms()).encode()
    }
}

/// Node `i`'s view of member `member`: its entry of `peers` in `federation status`.
fn peer_entry(cluster: &Cluster, i: usize, member: usize) -> serde_json::Value {
    let status = cluster.status(i);
    status["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["did"] == did(member).as_str()).cloned())
        .unwrap_or_else(|| panic!("node{i} lists no {}: {status}", did(member)))
}

fn evidence_against_liar(cluster: &Cluster, i: usize) -> usize {
    let (ok, text) = cluster.cli(i, &["federation", "evidence", "list", "--json"]);
    assert!(ok, "evidence list on node{i}: {text}");
    let list: serde_json::Value = serde_json::from_str(&text).expect("evidence JSON");
    list.as_array().map_or(0, |l| l.iter().filter(|e| e["signer"] == did(LIAR).as_str()).count())
}

/// Node `i`'s `/metrics` value of `series` (0 when absent), from its public explorer.
fn metric(cluster: &Cluster, i: usize, series: &str) -> f64 {
    let body = ureq::get(&format!("{}/metrics", cluster.explorer_url(i)))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("metrics text");
    body.lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_lying_member_is_caught_put_on_probation_counted_and_cut_off_while_the_federation_finalizes() {
    let mut cluster = Cluster::setup(5);
    cluster.start_members(4);
    cluster.wait_connected(4);
    let peer_ids: BTreeMap<usize, PeerId> = (1..=4)
        .map(|i| (i, cluster.status(i)["peer_id"].as_str().expect("peer id").parse().expect("PeerId")))
        .collect();

    let liar_identity = cluster.identity(LIAR);
    let mut config = NetConfig::new(liar_identity.secret_seed(), "devnet");
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
    config.bootstrap = vec![cluster.bootstrap_address(1).parse().expect("bootstrap")];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // `Net::send` spawns a stream's writer task on first use.
    let _inside = runtime.enter();
    let mut liar = runtime.block_on(async {
        Liar {
            net: Net::start(&config).expect("liar's net"),
            identity: liar_identity,
            heard: Vec::new(),
            anchors: BTreeMap::new(),
        }
    });

    // It joins as member 5: every honest node sees it connected.
    let started = Instant::now();
    while !(1..=4).all(|i| peer_entry(&cluster, i, LIAR)["connected"] == true) {
        assert!(started.elapsed() < Duration::from_secs(60), "member 5 did not connect:\n{}", cluster.logs());
        runtime.block_on(liar.pump(Duration::from_millis(300)));
    }

    // An honest first statement: its namespace at size 1, published on gossip; and traffic of
    // node 2 for it to hear (node 2's anchor comes to every member on its stream).
    let first = liar.signed(Content::Anchor(AnchorContent {
        checkpoint: liar_note(&liar.identity, 1, [1; 32]),
        consistency_from: 0,
        consistency_proof: vec![],
    }));
    runtime.block_on(async { liar.net.publish(first.clone()).expect("publish") });
    let started = Instant::now();
    while !liar.anchors.contains_key(&namespace(2)) || liar.heard.len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "member 5 hears no anchor of node 2");
        cluster.append(2, "traffic the liar hears");
        runtime.block_on(liar.pump(Duration::from_millis(300)));
    }

    // Equivocation: another root for the same size, to node 1 alone, on its stream.
    let second = liar.signed(Content::Anchor(AnchorContent {
        checkpoint: liar_note(&liar.identity, 1, [2; 32]),
        consistency_from: 0,
        consistency_proof: vec![],
    }));
    liar.net.send(peer_ids[&1], second);
    let started = Instant::now();
    while !(1..=4).all(|i| evidence_against_liar(&cluster, i) >= 1) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the evidence did not reach every node:\n{}",
            cluster.logs()
        );
        runtime.block_on(liar.pump(Duration::from_millis(300)));
    }
    // Probation by quorum: a registry update the honest members signed.
    let started = Instant::now();
    while !(1..=4).all(|i| peer_entry(&cluster, i, LIAR)["status"] == "probation") {
        assert!(started.elapsed() < Duration::from_secs(60), "no probation of member 5:\n{}", cluster.logs());
        runtime.block_on(liar.pump(Duration::from_millis(300)));
    }
    for i in 1..=4 {
        assert_eq!(cluster.status(i)["registry_version"], 2, "node{i}");
    }

    // Forged countersignatures of node 2's checkpoint (a signature that is not one), on
    // gossip and on node 2's stream; a message in node 1's name; replays of what members sent
    // it and of its own first anchor; frames over the cap on a stream to each node.
    let anchor = liar.anchors[&namespace(2)].clone();
    let mut sent = BTreeMap::<&str, u64>::new();
    runtime.block_on(async {
        let forge = |liar: &Liar, byte: u8| {
            liar.signed(Content::Countersign(CountersignContent {
                checkpoint: anchor.checkpoint.clone(),
                timestamp: now_ms() / 1000,
                signature: serde_bytes::ByteBuf::from(vec![byte; 64]),
            }))
        };
        for round in 0..6u8 {
            // Each a message of its own: one on gossip, another on node 2's stream.
            liar.net.publish(forge(&liar, round + 7)).expect("publish");
            liar.net.send(peer_ids[&2], forge(&liar, round + 107));
            *sent.entry("forged countersignatures").or_default() += 2;
            let mut impersonated = PeerMessage::decode(&first).expect("own anchor");
            impersonated.sender = did(1);
            impersonated.timestamp += u64::from(round) + 1;
            liar.net.send(peer_ids[&3], impersonated.encode());
            *sent.entry("in another's name").or_default() += 1;
            for frame in liar.heard.iter().take(2) {
                for i in [1, 3, 4] {
                    liar.net.send(peer_ids[&i], frame.clone());
                }
            }
            liar.net.send(peer_ids[&4], first.clone());
            *sent.entry("replays").or_default() += 1;
            // Bytes that decode as nothing, on gossip: every node refuses them.
            let garbage: Vec<u8> = (0..512u32).map(|k| (k * 37 + u32::from(round) * 11) as u8).collect();
            liar.net.publish(garbage).expect("publish garbage");
            *sent.entry("garbage on gossip").or_default() += 1;
            liar.pump(Duration::from_millis(200)).await;
        }
        for peer in peer_ids.values() {
            for _ in 0..4 {
                let Ok(mut stream) = liar.open_stream(*peer).await else { continue };
                let mut frame = ((MESSAGE_BYTES_MAX * 64) as u32).to_be_bytes().to_vec();
                frame.extend(std::iter::repeat_n(0xa5, 64 * 1024));
                let _ = stream.write_all(&frame).await;
                let _ = stream.flush().await;
                *sent.entry("oversized frames").or_default() += 1;
            }
        }
        liar.pump(Duration::from_secs(1)).await;
    });
    let started = Instant::now();
    let disconnected = |c: &Cluster| {
        (1..=4).filter(|i| c.status(*i)["score_disconnects"].as_u64().unwrap_or(0) >= 1).count()
    };
    while disconnected(&cluster) < 4 && started.elapsed() < Duration::from_secs(10) {
        runtime.block_on(liar.pump(Duration::from_millis(300)));
    }
    eprintln!("hostile member: sent {sent:?}");

    // Every refusal is counted by its reason.
    let liar_peer = liar.net.peer_id().to_string();
    let mut reasons = BTreeMap::<String, u64>::new();
    for i in 1..=4 {
        for member in 1..=5 {
            let refused = peer_entry(&cluster, i, member)["refused"].clone();
            for (reason, count) in refused.as_object().into_iter().flatten() {
                *reasons.entry(reason.clone()).or_default() += count.as_u64().unwrap_or(0);
            }
        }
    }
    eprintln!("hostile member: refusals on nodes 1-4 by reason {reasons:?}");
    let node2_liar = peer_entry(&cluster, 2, LIAR);
    assert!(
        node2_liar["refused"]["bad_statement"].as_u64().unwrap_or(0) >= 6,
        "node 2 refused every forged countersignature of its checkpoint: {node2_liar}"
    );
    assert!(
        reasons.get("bad_signature").copied().unwrap_or(0) >= 1,
        "the message in node 1's name: {reasons:?}"
    );
    assert!(reasons.get("replay").copied().unwrap_or(0) >= 6, "the replays: {reasons:?}");
    let frames_refused: u64 =
        (1..=4).map(|i| cluster.status(i)["frames_refused"].as_u64().unwrap_or(0)).sum();
    assert!(frames_refused >= 4, "each node closed the streams with frames over the cap ({frames_refused})");
    // The same counts on /metrics.
    assert!(metric(&cluster, 2, "remembrancer_peer_refusals_total{reason=\"bad_statement\"}") >= 6.0);
    assert!(metric(&cluster, 1, "remembrancer_frames_refused_total") >= 1.0);

    // Gossipsub's score of the liar fell under the graylist threshold (the garbage and forged
    // countersignatures on gossip), and every node closed its connections.
    let disconnecting: Vec<usize> =
        (1..=4).filter(|i| cluster.status(*i)["score_disconnects"].as_u64().unwrap_or(0) >= 1).collect();
    assert_eq!(disconnecting, [1, 2, 3, 4], "every node got the garbage on gossip:\n{}", cluster.logs());
    for i in 1..=4 {
        let garbage = cluster.status(i)["garbage_messages"].as_u64().unwrap_or(0);
        // Once its score is under the graylist, a node drops the rest unread.
        assert!(garbage >= 1, "node{i} counts the garbage ({garbage})");
    }
    for i in &disconnecting {
        // Its score still shows the penalty (it decays x0.9 a second once the lies stop).
        let entry = cluster.status(*i)["refused_from"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["peer_id"] == liar_peer.as_str()).cloned())
            .unwrap_or_default();
        assert!(entry["refused"].as_u64().unwrap_or(0) >= 1, "node{i}: {entry}");
        assert!(entry["gossip_score"].as_f64().is_none_or(|score| score < 0.0), "node{i}: {entry}");
    }
    eprintln!("hostile member: disconnected by nodes {disconnecting:?}");

    // The evidence is kept: node 3, killed and started again, still holds it and the registry
    // that put member 5 on probation.
    cluster.kill9(3);
    cluster.start(3);
    assert!(evidence_against_liar(&cluster, 3) >= 1, "node 3 kept the evidence");
    assert_eq!(peer_entry(&cluster, 3, LIAR)["status"], "probation");

    // The federation keeps finalizing, and no honest member is blamed.
    let size = cluster.append(3, "after the liar");
    cluster.wait("node 3's batch final on nodes 1-4", Duration::from_secs(60), |c| {
        (1..=4).all(|i| c.final_size(i, &namespace(3)) >= size)
    });
    for i in 1..=4 {
        for member in 1..=4 {
            let entry = peer_entry(&cluster, i, member);
            assert_eq!(entry["status"], "active", "node{i}: {entry}");
            assert_eq!(entry["honesty_refusals"], 0, "node{i}: {entry}");
        }
        // The only evidence is against member 5.
        let (ok, text) = cluster.cli(i, &["federation", "evidence", "list", "--json"]);
        assert!(ok, "{text}");
        let list: serde_json::Value = serde_json::from_str(&text).expect("evidence JSON");
        for record in list.as_array().expect("list") {
            assert_eq!(record["signer"], did(LIAR).as_str(), "node{i}: {record}");
        }
    }
}
