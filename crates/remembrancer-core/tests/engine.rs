//! The federation engine driven directly: a tiny deterministic network delivers its outputs,
//! and each rule of the flow is exercised, the failures as much as the successes.

use std::collections::{BTreeSet, VecDeque};

use remembrancer_core::anchoring::{AnchorTarget, LocalTarget};
use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
use remembrancer_core::engine::{
    CommitRefusal, Engine, EngineConfig, EngineError, Event, Input, Output, Persist, Rejection, SignRefusal,
    Timer,
};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::MemoryNodeStore;
use remembrancer_core::message::{
    AnchorContent, Content, CountersignContent, HeartbeatContent, MessageType, PeerMessage, ReceiptContent,
};
use remembrancer_core::note::{Note, NoteSignature};
use remembrancer_core::receipt::verify_receipt;
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument,
};
use remembrancer_core::signature::{Verifier, VERIFICATION_CACHE_ENTRIES_MAX};
use remembrancer_core::HashAlgorithm;

const NAMESPACE: &str = "dao:alpha";
const START_MS: u64 = 1_800_000_000_000;

fn identity(i: usize) -> NodeIdentity {
    NodeIdentity::from_seed(&format!("did:vm:node:n{i}"), [i as u8 + 1; 32]).expect("identity")
}

fn registry(n: usize, quorum: u32) -> Registry {
    registry_with_mode(n, quorum, remembrancer_core::registry::AnchorMode::Independent)
}

fn registry_with_mode(n: usize, quorum: u32, mode: remembrancer_core::registry::AnchorMode) -> Registry {
    let document = RegistryDocument {
        federation: FederationSection {
            name: "test-federation".to_string(),
            version: 1,
            quorum,
            peers: (0..n)
                .map(|i| {
                    PeerEntry::for_identity(
                        &identity(i),
                        if i == 0 { vec![NAMESPACE.to_string()] } else { Vec::new() },
                    )
                })
                .collect(),
            anchor_propagation: AnchorPropagation { mode, ..AnchorPropagation::default() },
        },
    };
    Registry::from_document(&document).expect("registry")
}

/// Engines connected by an in-order queue; `cut` nodes neither send nor receive.
struct Net {
    engines: Vec<Engine<MemoryNodeStore>>,
    queue: VecDeque<(usize, PeerMessage)>,
    now_ms: u64,
    cut: BTreeSet<usize>,
    persisted: Vec<Vec<Persist>>,
    events: Vec<Vec<Event>>,
    published: Vec<Vec<PeerMessage>>,
    targets: Vec<LocalTarget>,
}

impl Net {
    fn new(n: usize, quorum: u32) -> Self {
        Net::with_config(n, quorum, EngineConfig::default())
    }

    fn with_config(n: usize, quorum: u32, config: EngineConfig) -> Self {
        Net::with_registry(registry(n, quorum), config)
    }

    fn with_registry(registry: Registry, config: EngineConfig) -> Self {
        let n = registry.members.len();
        Net {
            engines: (0..n)
                .map(|i| Engine::new(identity(i), registry.clone(), config.clone(), MemoryNodeStore::new))
                .collect(),
            queue: VecDeque::new(),
            now_ms: START_MS,
            cut: BTreeSet::new(),
            persisted: vec![Vec::new(); n],
            events: vec![Vec::new(); n],
            published: vec![Vec::new(); n],
            targets: vec![LocalTarget::default(); n],
        }
    }

    fn index_of(&self, did: &str) -> Option<usize> {
        self.engines.iter().position(|e| e.did() == did)
    }

    /// The engine's own outputs to one input, with anchor requests answered by the local
    /// target as a host answers them (the outputs of those answers follow); nothing delivered.
    fn outputs(&mut self, node: usize, input: Input) -> Vec<Output> {
        let mut inputs = VecDeque::from([input]);
        let mut outputs = Vec::new();
        while let Some(input) = inputs.pop_front() {
            for output in self.engines[node].handle(input, self.now_ms).expect("handle") {
                if let Output::AnchorRequest { request, root } = &output {
                    let reference =
                        self.targets[node].anchor(root, self.now_ms).expect("the local target anchors");
                    inputs.push_back(Input::Anchored { request: request.clone(), reference });
                }
                outputs.push(output);
            }
        }
        outputs
    }

    fn input(&mut self, node: usize, input: Input) {
        for output in self.outputs(node, input) {
            match output {
                Output::Publish(mut message) => {
                    // Delivered as gossip (`Input::Message`): sealed as a host seals gossip.
                    self.engines[node].seal(&mut message);
                    self.published[node].push(message.clone());
                    if !self.cut.contains(&node) {
                        for other in 0..self.engines.len() {
                            if other != node && !self.cut.contains(&other) {
                                self.queue.push_back((other, message.clone()));
                            }
                        }
                    }
                }
                Output::Send { to, message } => {
                    if let Some(other) = self.index_of(&to) {
                        if !self.cut.contains(&node) && !self.cut.contains(&other) {
                            self.queue.push_back((other, message));
                        }
                    }
                }
                Output::Persist(record) => self.persisted[node].push(record),
                Output::Event(event) => self.events[node].push(event),
                // Answered in `outputs`.
                Output::SetTimer { .. } | Output::AnchorRequest { .. } => {}
            }
        }
    }

    fn run(&mut self) {
        let mut deliveries = 0;
        while let Some((to, message)) = self.queue.pop_front() {
            self.now_ms += 1;
            self.input(to, Input::Message(message));
            deliveries += 1;
            assert!(deliveries < 100_000, "the network does not quiesce");
        }
    }

    fn commit(&mut self, records: usize) {
        let records = (0..records).map(|i| format!("record {} {i}", self.now_ms).into_bytes()).collect();
        self.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records });
        self.run();
    }

    /// The `consistency_from` of every anchor `node` published, in order.
    fn anchors_from(&self, node: usize) -> Vec<u64> {
        self.published[node]
            .iter()
            .filter_map(|m| match &m.content {
                Content::Anchor(anchor) => Some(anchor.consistency_from),
                _ => None,
            })
            .collect()
    }

    fn final_size(&self, node: usize) -> Option<u64> {
        self.engines[node].finals().get(NAMESPACE).map(|r| r.tree_size)
    }

    fn rejections(&self, node: usize) -> Vec<Rejection> {
        self.events[node]
            .iter()
            .filter_map(|e| match e {
                Event::Rejected { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

/// Runs `work` with a verifier of a large memo lent to the thread: the engines of a test that
/// have none of their own share it, as the simulator's nodes do.
fn with_verification_cache<T>(work: impl FnOnce() -> T) -> T {
    Verifier::new(VERIFICATION_CACHE_ENTRIES_MAX).lend(work)
}

/// Runs `work` with a verifier without a memo lent to the thread: what the engines without a
/// verifier of their own compute is counted ([`remembrancer_core::signature::operations`]).
fn counting<T>(work: impl FnOnce() -> T) -> T {
    Verifier::without_memo().lend(work)
}

#[test]
fn a_commit_becomes_the_same_final_receipt_on_every_node() {
    let mut net = Net::new(4, 3);
    net.commit(10);
    let receipt = net.engines[0].finals().get(NAMESPACE).expect("final at the owner").clone();
    assert_eq!(receipt.tree_size, 10);
    assert!(verify_receipt(&receipt, &registry(4, 3)).all_ok());
    for node in 1..4 {
        assert_eq!(net.engines[node].finals().get(NAMESPACE), Some(&receipt), "node {node} converges");
    }
    assert!(net.events[0]
        .iter()
        .any(|e| matches!(e, Event::Finalized { size: 10, latency_ms: Some(_), .. })));
    assert!(net.persisted[0].iter().any(|p| matches!(p, Persist::Records { first_index: 0, .. })));
    // A second batch extends the first; witnesses check it against what they countersigned.
    net.commit(5);
    for node in 0..4 {
        assert_eq!(net.final_size(node), Some(15));
    }
    assert!((0..4).all(|n| net.rejections(n).is_empty()), "honest runs reject nothing");
    // The owner scores its witnesses' reliability: every countersignature came on time.
    for witness in 1..4 {
        let score = net.engines[0].scores().get(&format!("did:vm:node:n{witness}")).expect("score");
        assert!(score.countersigns_on_time >= 1, "n{witness}: {score:?}");
        assert_eq!(score.countersigns_late, 0);
    }
}

#[test]
fn a_minority_cannot_finalize() {
    let mut net = Net::new(5, 3);
    net.cut.extend([2, 3, 4]);
    net.commit(3);
    assert_eq!(net.final_size(0), None, "owner plus one witness is short of the quorum of 3");
    assert_eq!(net.final_size(1), None);
}

#[test]
fn messages_from_outsiders_forgers_stale_clocks_and_replays_are_refused() {
    let mut net = Net::new(3, 2);
    let heartbeat = || Content::Heartbeat(HeartbeatContent::default());

    let outsider = NodeIdentity::from_seed("did:vm:node:outsider", [99; 32]).expect("identity");
    net.input(1, Input::Message(PeerMessage::sign(&outsider, heartbeat(), net.now_ms)));
    let forger = NodeIdentity::from_seed("did:vm:node:n2", [98; 32]).expect("identity");
    net.input(1, Input::Message(PeerMessage::sign(&forger, heartbeat(), net.now_ms)));
    let stale = PeerMessage::sign(&identity(2), heartbeat(), net.now_ms - 3_600_000);
    net.input(1, Input::Message(stale));
    let once = PeerMessage::sign(&identity(2), heartbeat(), net.now_ms);
    net.input(1, Input::Message(once.clone()));
    net.input(1, Input::Message(once));
    assert_eq!(
        net.rejections(1),
        vec![Rejection::UnknownSender, Rejection::BadSignature, Rejection::Stale, Rejection::Replay]
    );
    let score = net.engines[1].scores().get("did:vm:node:n2").expect("score");
    assert_eq!(score.accepted, 1);
    assert_eq!(score.rejected.values().sum::<u64>(), 3);
    assert_eq!(net.engines[1].audit().count(), 4, "every refusal lands in the audit trail");
}

#[test]
fn the_signatures_inside_anchors_and_countersigns_that_arrive_together_are_verified_in_one_batch() {
    with_verification_cache(|| {
        let mut net = Net::new(4, 4);
        let records = vec![b"one".to_vec(), b"two".to_vec()];
        net.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records });
        // Relayed anchors: the message signature and the owner's note signature in one batch;
        // handling the anchor then verifies nothing more.
        let anchors: Vec<(usize, PeerMessage)> = net.queue.drain(..).collect();
        assert_eq!(anchors.len(), 3);
        for (to, anchor) in anchors {
            // Each node's engine has a memo of its own (this test's engines share one thread).
            net.engines[to].set_verifier(Verifier::new(1024));
            let before = net.engines[to].operations();
            assert_eq!(net.engines[to].preverify([(&anchor, false)]), 2);
            net.input(to, Input::Message(anchor));
            let used = net.engines[to].operations().since(before);
            assert_eq!((used.verifications, used.batched), (2, 2), "witness n{to}");
        }
        // The three countersignatures reach the owner together on their senders' connections:
        // their cosignatures go in one batch, and a forged one fails it and is named alone.
        let countersigns: Vec<PeerMessage> =
            net.queue.drain(..).filter(|(to, _)| *to == 0).map(|(_, m)| m).collect();
        assert_eq!(countersigns.len(), 3);
        let Content::Countersign(content) = &countersigns[2].content else { panic!("a countersign") };
        let mut signature = content.signature.to_vec();
        signature[9] ^= 1;
        let forged = PeerMessage::sign(
            &identity(3),
            Content::Countersign(CountersignContent {
                signature: serde_bytes::ByteBuf::from(signature),
                ..content.clone()
            }),
            countersigns[2].timestamp + 1,
        );
        let group = [&countersigns[0], &countersigns[1], &forged];
        net.engines[0].set_verifier(Verifier::new(1024));
        assert_eq!(net.engines[0].preverify(group.iter().map(|m| (*m, true))), 0);
        let before = net.engines[0].operations();
        for message in group {
            net.input(0, Input::FromSender(message.clone()));
        }
        let used = net.engines[0].operations().since(before);
        assert_eq!(used.verifications, 3, "each verified alone after the failed batch");
        assert_eq!(net.rejections(0), vec![Rejection::BadStatement]);
        assert_eq!(net.final_size(0), None, "two of the three witnesses are short of the quorum of 4");
        // The honest third arrives alone: no batch, one verification; the receipt is final.
        assert_eq!(net.engines[0].preverify([(&countersigns[2], true)]), 0);
        net.input(0, Input::FromSender(countersigns[2].clone()));
        assert_eq!(net.final_size(0), Some(2));
    });
    // The same group on the next commit, all honest: one batch of three, nothing alone.
    with_verification_cache(|| {
        let mut net = Net::new(4, 4);
        net.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records: vec![b"x".to_vec()] });
        let anchors: Vec<(usize, PeerMessage)> = net.queue.drain(..).collect();
        for (to, anchor) in anchors {
            net.input(to, Input::FromSender(anchor));
        }
        let countersigns: Vec<PeerMessage> =
            net.queue.drain(..).filter(|(to, _)| *to == 0).map(|(_, m)| m).collect();
        net.engines[0].set_verifier(Verifier::new(1024));
        let before = net.engines[0].operations();
        assert_eq!(net.engines[0].preverify(countersigns.iter().map(|m| (m, true))), 3);
        for message in countersigns {
            net.input(0, Input::FromSender(message));
        }
        let used = net.engines[0].operations().since(before);
        assert_eq!((used.verifications, used.batched), (3, 3));
        assert_eq!(net.final_size(0), Some(1));
    });
    // A witness that missed the anchor gets two relayed countersigns carrying the same owner's
    // note: two message signatures and one copy of the note's signature.
    with_verification_cache(|| {
        let mut net = Net::new(4, 4);
        net.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records: vec![b"y".to_vec()] });
        let anchors: Vec<(usize, PeerMessage)> = net.queue.drain(..).filter(|(to, _)| *to != 3).collect();
        for (to, anchor) in anchors {
            net.input(to, Input::FromSender(anchor));
        }
        let relayed: Vec<PeerMessage> =
            net.queue.drain(..).filter(|(to, _)| *to == 3).map(|(_, m)| m).collect();
        assert_eq!(relayed.len(), 2);
        net.engines[3].set_verifier(Verifier::new(1024));
        assert_eq!(net.engines[3].preverify(relayed.iter().map(|m| (m, false))), 3);
        let before = net.engines[3].operations();
        for message in relayed {
            net.input(3, Input::Message(message));
        }
        let used = net.engines[3].operations().since(before);
        assert_eq!(used.verifications, 0, "all proven in the batch");
        assert!(net.rejections(3).is_empty());
    });
}

/// Two commits finalize at the owner with every witness's cosignature (quorum 4); n3 gets
/// everything but the two receipts, returned here.
fn two_receipts_held_for_n3() -> (Net, Vec<PeerMessage>) {
    let mut net = Net::new(4, 4);
    let mut held = Vec::new();
    for round in 0..2 {
        let records = vec![format!("record {round}").into_bytes()];
        net.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records });
        while let Some((to, message)) = net.queue.pop_front() {
            net.now_ms += 1;
            if to == 3 && matches!(message.content, Content::Receipt(_)) {
                held.push(message);
            } else {
                net.input(to, Input::Message(message));
            }
        }
    }
    assert_eq!(held.len(), 2);
    assert_eq!(net.final_size(3), None);
    (net, held)
}

#[test]
fn a_receipt_carrying_a_signature_of_another_receipt_in_the_batch_is_not_proven_by_it() {
    use remembrancer_core::message::ReceiptContent;
    // The second receipt carries n1's signature from the first: the same bytes, over another
    // checkpoint. A batch that took it for the first's statement would prove the second
    // receipt, and `on_receipt` would find that verdict remembered.
    with_verification_cache(|| {
        let (mut net, mut held) = two_receipts_held_for_n3();
        let n1_signature = |message: &PeerMessage| {
            let Content::Receipt(content) = &message.content else { panic!("a receipt") };
            content.receipt.signatures.iter().find(|s| s.node == "did:vm:node:n1").expect("n1").sig.clone()
        };
        let borrowed = n1_signature(&held[0]);
        let Content::Receipt(content) = &held[1].content else { panic!("a receipt") };
        let mut forged = content.receipt.as_ref().clone();
        forged.signatures.iter_mut().find(|s| s.node == "did:vm:node:n1").expect("n1").sig = borrowed;
        let content = Content::Receipt(Box::new(ReceiptContent { receipt: std::sync::Arc::new(forged) }));
        held[1] = PeerMessage::sign(&identity(0), content, held[1].timestamp + 1);
        net.engines[3].set_verifier(Verifier::new(1024));
        assert_eq!(net.engines[3].preverify(held.iter().map(|m| (m, true))), 0, "the batch fails");
        for message in held {
            net.input(3, Input::FromSender(message));
        }
        assert_eq!(net.rejections(3), vec![Rejection::BadReceipt]);
        assert_eq!(net.final_size(3), Some(1));
    });
}

#[test]
fn the_cosignatures_of_receipts_that_arrive_together_are_verified_in_one_batch() {
    use remembrancer_core::identity::{multibase_signature, parse_multibase_signature};
    use remembrancer_core::message::ReceiptContent;
    // The two receipts of `two_receipts_held_for_n3` reach n3 together.
    let receipts_for_n3 = |tamper: bool| {
        let (net, mut held) = two_receipts_held_for_n3();
        if tamper {
            // The owner signs the message, but n1's cosignature in the first receipt is forged.
            let Content::Receipt(content) = &held[0].content else { panic!("a receipt") };
            let mut receipt = content.receipt.as_ref().clone();
            let entry =
                receipt.signatures.iter_mut().find(|s| s.node == "did:vm:node:n1").expect("n1 cosigned");
            let mut signature = parse_multibase_signature(&entry.sig).expect("a signature");
            signature[9] ^= 1;
            entry.sig = multibase_signature(&signature);
            let content =
                Content::Receipt(Box::new(ReceiptContent { receipt: std::sync::Arc::new(receipt) }));
            held[0] = PeerMessage::sign(&identity(0), content, held[0].timestamp + 1);
        }
        (net, held)
    };
    with_verification_cache(|| {
        let (mut net, held) = receipts_for_n3(false);
        // The engines share the memo lent to this thread, which knows every signature by now:
        // n3 gets a memo of its own, so each receipt brings the owner's and three cosignatures.
        net.engines[3].set_verifier(Verifier::new(1024));
        let before = net.engines[3].operations();
        assert_eq!(net.engines[3].preverify(held.iter().map(|m| (m, true))), 8);
        let used = net.engines[3].operations().since(before);
        assert_eq!((used.verifications, used.batched, used.batches), (8, 8, 1), "one batch");
        let before = net.engines[3].operations();
        for message in held {
            net.input(3, Input::FromSender(message));
        }
        let used = net.engines[3].operations().since(before);
        assert_eq!(used.verifications, 0, "all proven in the batch");
        assert_eq!(net.final_size(3), Some(2));
        assert!(net.rejections(3).is_empty());
    });
    // A forged cosignature fails the batch: each receipt is then verified on its own, the
    // forged one is refused and named, the honest one is final.
    with_verification_cache(|| {
        let (mut net, held) = receipts_for_n3(true);
        net.engines[3].set_verifier(Verifier::new(1024));
        assert_eq!(net.engines[3].preverify(held.iter().map(|m| (m, true))), 0);
        for message in held {
            net.input(3, Input::FromSender(message));
        }
        assert_eq!(net.rejections(3), vec![Rejection::BadReceipt]);
        assert_eq!(net.final_size(3), Some(2));
    });
}

#[test]
fn a_note_is_verified_once_and_a_forged_twin_of_it_is_still_refused() {
    // Counted by a verifier without a memo, lent to this thread for the test.
    counting(|| {
        let operations = remembrancer_core::signature::operations;
        let mut net = Net::new(4, 4);
        net.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records: vec![b"one".to_vec()] });
        let anchor = net.queue.drain(..).map(|(_, m)| m).next().expect("the anchor");
        let Content::Anchor(anchor_content) = &anchor.content else { panic!("an anchor") };
        let note = anchor_content.checkpoint.clone();
        // n2 countersigns; n1 takes the anchor from its owner's connection and checks the owner's
        // signature on the note once.
        net.input(2, Input::FromSender(anchor.clone()));
        let countersign = net.queue.drain(..).map(|(_, m)| m).next().expect("n2's countersign");
        let Content::Countersign(genuine) = &countersign.content else { panic!("a countersign") };
        assert_eq!(genuine.checkpoint, note, "a countersign carries the owner's note");
        let before = operations();
        net.input(1, Input::FromSender(anchor));
        assert_eq!(operations().since(before).verifications, 1, "the owner's note signature");
        net.queue.clear();
        // The same note again, in n2's countersign: accepted without checking it again.
        let before = operations();
        net.input(1, Input::FromSender(countersign.clone()));
        assert_eq!(operations().since(before).verifications, 0, "a note checked once is known");
        assert!(net.rejections(1).is_empty(), "{:?}", net.rejections(1));
        // The same body under a signature that is not the owner's: a new note, checked and refused.
        // A base64 character of the signature itself, past the 4-byte key ID the line starts with.
        let at = note.trim_end().len() - 12;
        let flipped = if note.as_bytes()[at] == b'A' { "B" } else { "A" };
        let forged_note = format!("{}{flipped}{}", &note[..at], &note[at + 1..]);
        assert_ne!(forged_note, note);
        let forged = PeerMessage::sign(
            &identity(2),
            Content::Countersign(CountersignContent { checkpoint: forged_note, ..genuine.clone() }),
            net.now_ms + 1,
        );
        let before = operations();
        net.input(1, Input::FromSender(forged));
        assert_eq!(operations().since(before).verifications, 1, "the forged note is checked");
        assert_eq!(net.rejections(1), vec![Rejection::BadStatement]);
    });
}

#[test]
fn engines_on_one_thread_with_verifiers_of_their_own_never_share_a_verdict() {
    let mut net = Net::new(3, 2);
    net.engines[0].set_verifier(Verifier::new(1024));
    net.engines[1].set_verifier(Verifier::new(1024));
    let heartbeat =
        PeerMessage::sign(&identity(2), Content::Heartbeat(HeartbeatContent::default()), net.now_ms);
    for engine in [0, 1] {
        net.input(engine, Input::Message(heartbeat.clone()));
        let used = net.engines[engine].operations();
        assert_eq!(used.verifications, 1, "n{engine} checked the signature itself");
    }
    // What one engine computes is counted in its own verifier only: none is lent outside
    // the engines' calls, so the thread itself remembers and counts nothing.
    assert_eq!(remembrancer_core::signature::operations(), Default::default());
    assert!(!remembrancer_core::signature::memo_installed());
}

#[test]
fn a_message_from_its_sender_on_an_authenticated_connection_skips_only_the_message_signature() {
    // Counted by a verifier without a memo, lent to this thread for the test.
    counting(|| {
        let mut net = Net::new(3, 2);
        let heartbeat = || Content::Heartbeat(HeartbeatContent::default());
        let operations = remembrancer_core::signature::operations;

        // The host vouches that the connection's key is n2's registry key: no verification.
        let before = operations().verifications;
        net.input(1, Input::FromSender(PeerMessage::sign(&identity(2), heartbeat(), net.now_ms)));
        assert_eq!(operations().verifications - before, 0, "the transport vouched for the sender");
        // The same kind of message relayed (gossip) is verified.
        let before = operations().verifications;
        net.input(1, Input::Message(PeerMessage::sign(&identity(2), heartbeat(), net.now_ms + 1)));
        assert_eq!(operations().verifications - before, 1, "relayed messages are verified");
        // The transport's word admits no outsider, and clocks and replays are checked as always.
        let outsider = NodeIdentity::from_seed("did:vm:node:outsider", [99; 32]).expect("identity");
        net.input(1, Input::FromSender(PeerMessage::sign(&outsider, heartbeat(), net.now_ms)));
        let stale = PeerMessage::sign(&identity(2), heartbeat(), net.now_ms - 3_600_000);
        net.input(1, Input::FromSender(stale));
        let once = PeerMessage::sign(&identity(2), heartbeat(), net.now_ms + 2);
        net.input(1, Input::FromSender(once.clone()));
        net.input(1, Input::FromSender(once));
        assert_eq!(net.rejections(1), vec![Rejection::UnknownSender, Rejection::Stale, Rejection::Replay]);
        let score = net.engines[1].scores().get("did:vm:node:n2").expect("score");
        assert_eq!(score.accepted, 3);
    });
}

#[test]
fn messages_that_arrive_together_are_verified_in_one_batch_and_a_forgery_among_them_is_named() {
    // Counted by a verifier without a memo, lent to this thread for the test.
    counting(|| {
        let mut net = Net::new(3, 2);
        let heartbeat = || Content::Heartbeat(HeartbeatContent::default());
        let operations = remembrancer_core::signature::operations;
        let now = net.now_ms;

        // Three members' messages that arrived together: one batch, no check one at a time.
        let group: Vec<PeerMessage> = (0..3)
            .map(|i| PeerMessage::sign(&identity(if i == 1 { 0 } else { 2 }), heartbeat(), now + i))
            .collect();
        let before = operations();
        assert_eq!(net.engines[1].preverify(group.iter().map(|m| (m, false))), 3);
        for message in group {
            net.input(1, Input::Message(message));
        }
        let used = operations().since(before);
        assert_eq!((used.verifications, used.batched), (3, 3), "three signatures, all in the batch");
        assert!(net.rejections(1).is_empty());

        // A forgery in the group fails the batch; each message is then verified on its own, the
        // honest one is accepted and the forgery named.
        let forger = NodeIdentity::from_seed("did:vm:node:n2", [98; 32]).expect("identity");
        let honest = PeerMessage::sign(&identity(2), heartbeat(), now + 10);
        let forged = PeerMessage::sign(&forger, heartbeat(), now + 11);
        assert_eq!(net.engines[1].preverify([(&honest, false), (&forged, false)]), 0);
        net.input(1, Input::Message(honest));
        net.input(1, Input::Message(forged));
        assert_eq!(net.rejections(1), vec![Rejection::BadSignature]);

        // The proof holds for those exact bytes: another content under a proven signature is
        // verified, and fails.
        let (first, second) = (
            PeerMessage::sign(&identity(2), heartbeat(), now + 20),
            PeerMessage::sign(&identity(2), heartbeat(), now + 21),
        );
        assert_eq!(net.engines[1].preverify([(&first, false), (&second, false)]), 2);
        let mut bytes = second.encode();
        let (first_signature, second_signature) =
            (first.signature().expect("sealed"), second.signature().expect("sealed"));
        let at = bytes
            .windows(64)
            .position(|w| w == second_signature)
            .expect("the signature is in the wire bytes");
        bytes[at..at + 64].copy_from_slice(first_signature);
        net.input(1, Input::Message(PeerMessage::decode(&bytes).expect("decodes")));
        assert_eq!(net.rejections(1), vec![Rejection::BadSignature, Rejection::BadSignature]);

        // Seen messages and outsiders take no part; a lone message is not worth a batch.
        net.input(1, Input::Message(first.clone()));
        let outsider = NodeIdentity::from_seed("did:vm:node:outsider", [99; 32]).expect("identity");
        let stranger = PeerMessage::sign(&outsider, heartbeat(), now + 30);
        assert_eq!(net.engines[1].preverify([(&first, false), (&stranger, false)]), 0);
        assert_eq!(net.engines[1].preverify([(&second, false), (&first, false)]), 0, "one unseen message");
        // A message from its sender needs no message signature.
        let third = PeerMessage::sign(&identity(2), heartbeat(), now + 40);
        assert_eq!(net.engines[1].preverify([(&second, false), (&third, true)]), 0);
        let score = net.engines[1].scores().get("did:vm:node:n2").expect("score");
        assert_eq!(score.accepted, 4);
    });
}

#[test]
fn anchors_and_countersignatures_awaited_by_own_anchors_are_on_the_receipt_path_and_bookkeeping_is_not() {
    use remembrancer_core::message::MessageType::{Anchor, Countersign, Heartbeat, Receipt};
    let mut net = Net::new(3, 2);
    net.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records: vec![b"r".to_vec()] });
    // The anchor reaches both witnesses; their countersignatures wait in the queue.
    let anchors: Vec<(usize, PeerMessage)> = net.queue.drain(..).collect();
    let anchor = anchors[0].1.clone();
    assert_eq!(anchor.message_type(), Anchor);
    for (to, anchor) in anchors {
        net.input(to, Input::Message(anchor));
    }
    let countersign_of = |net: &Net, node: usize| -> PeerMessage {
        net.published[node].iter().find(|m| m.message_type() == Countersign).cloned().expect("countersigned")
    };
    let (first, second) = (countersign_of(&net, 1), countersign_of(&net, 2));
    // The owner (n0): a countersignature its pending anchor waits for decides its receipt.
    assert!(net.engines[0].is_on_receipt_path(&first));
    assert!(net.engines[0].is_on_receipt_path(&second));
    net.input(0, Input::Message(first.clone()));
    assert_eq!(net.final_size(0), Some(1), "the owner and n1 are the quorum of 2");
    // Once final, the other witness's countersignature only counts for its score.
    assert!(!net.engines[0].is_on_receipt_path(&second));
    net.queue.clear();
    net.commit(1);
    let receipt =
        net.published[0].iter().rev().find(|m| m.message_type() == Receipt).cloned().expect("a receipt");
    let heartbeat =
        PeerMessage::sign(&identity(2), Content::Heartbeat(HeartbeatContent::default()), net.now_ms);
    assert_eq!(heartbeat.message_type(), Heartbeat);
    assert!(!net.engines[0].is_on_receipt_path(&receipt));
    assert!(!net.engines[0].is_on_receipt_path(&heartbeat));
    // A witness (n2): the anchor waits for its countersignature; another witness's
    // countersignature of n0's anchor, the receipt and heartbeats are bookkeeping.
    assert!(net.engines[2].is_on_receipt_path(&anchor));
    assert!(!net.engines[2].is_on_receipt_path(&first));
    assert!(!net.engines[2].is_on_receipt_path(&receipt));
    assert!(!net.engines[2].is_on_receipt_path(&heartbeat));
}

#[test]
fn the_owner_checks_a_countersignature_without_verifying_its_own_note_again() {
    // Counted by a verifier without a memo, lent to this thread for the test.
    counting(|| {
        let mut net = Net::new(3, 3);
        net.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records: vec![b"r".to_vec()] });
        let (to, anchor) = net.queue.pop_front().expect("the anchor went out");
        assert_eq!(to, 1);
        net.queue.clear();
        net.input(1, Input::Message(anchor));
        let countersign = net.published[1]
            .iter()
            .find(|m| matches!(m.content, Content::Countersign(_)))
            .cloned()
            .expect("n1 countersigned");
        let operations = remembrancer_core::signature::operations;
        let before = operations();
        net.input(0, Input::Message(countersign));
        let used = operations().since(before);
        // The message signature and the cosignature; the owner's note inside is its own.
        assert_eq!(used.verifications, 2, "{used:?}");
        assert!(net.rejections(0).is_empty());
    });
}

fn anchor_message(
    signer: &NodeIdentity,
    checkpoint: &Checkpoint,
    from: u64,
    proof: Vec<[u8; 32]>,
    now_ms: u64,
) -> PeerMessage {
    let note = Note {
        text: checkpoint.body(),
        signatures: vec![NoteSignature::sign_ed25519(signer, &checkpoint.body())],
    };
    PeerMessage::sign(
        signer,
        Content::Anchor(AnchorContent {
            checkpoint: note.to_text(),
            consistency_from: from,
            consistency_proof: proof,
        }),
        now_ms,
    )
}

fn checkpoint(size: u64, root: [u8; 32], now_ms: u64) -> Checkpoint {
    Checkpoint {
        federation_id: "test-federation".to_string(),
        namespace: NAMESPACE.to_string(),
        size,
        root,
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, now_ms / 1000),
    }
}

#[test]
fn a_node_restored_from_what_it_persisted_continues_and_never_countersigns_a_second_root() {
    let mut net = Net::new(3, 2);
    net.commit(5);
    let now = net.now_ms;
    // The owner, restarted from its persisted records and final receipt.
    let mut owner = Engine::new(identity(0), registry(3, 2), EngineConfig::default(), MemoryNodeStore::new);
    for record in &net.persisted[0] {
        match record {
            Persist::Records { namespace, records, .. } => {
                owner
                    .restore_records(namespace, HashAlgorithm::Sha256, records.iter().map(Vec::as_slice))
                    .expect("records");
            }
            Persist::FinalReceipt(receipt) => owner.restore_final(receipt.clone()),
            _ => {}
        }
    }
    assert_eq!(owner.tree(NAMESPACE).map(|t| t.root()), net.engines[0].tree(NAMESPACE).map(|t| t.root()));
    assert_eq!(owner.finals().get(NAMESPACE), net.engines[0].finals().get(NAMESPACE));
    // Nothing to anchor at a final size; a commit continues the same tree.
    let outputs =
        owner.handle(Input::AnchorNow { namespace: NAMESPACE.to_string() }, now).expect("anchor now");
    assert!(outputs.is_empty(), "size 5 is already final: {outputs:?}");
    let outputs = owner
        .handle(Input::Commit { namespace: NAMESPACE.to_string(), records: vec![b"sixth".to_vec()] }, now)
        .expect("commit");
    assert!(outputs
        .iter()
        .any(|o| matches!(o, Output::Publish(m) if matches!(m.content, Content::Anchor(_)))));
    assert_eq!(owner.tree(NAMESPACE).map(|t| t.size()), Some(6));

    // A witness, restarted from what it countersigned, meets a second root for size 5.
    let mut witness = Engine::new(identity(2), registry(3, 2), EngineConfig::default(), MemoryNodeStore::new);
    for record in &net.persisted[2] {
        if let Persist::Countersigned { note, .. } = record {
            witness.restore_witnessed(note).expect("countersigned note");
        }
    }
    let fork = anchor_message(&identity(0), &checkpoint(5, [9; 32], now), 0, Vec::new(), now);
    let outputs = witness.handle(Input::Message(fork), now).expect("fork");
    let countersigned = outputs.iter().any(|o| match o {
        Output::Publish(m) | Output::Send { message: m, .. } => matches!(m.content, Content::Countersign(_)),
        _ => false,
    });
    assert!(!countersigned, "a restarted witness must not countersign a second root for one size");
    assert!(outputs.iter().any(|o| matches!(o, Output::Persist(Persist::Evidence(_)))), "{outputs:?}");
}

/// The last checkpoint `node` signed, as its store holds it.
fn last_signed(net: &Net, node: usize) -> Checkpoint {
    let note = net.persisted[node]
        .iter()
        .filter_map(|p| match p {
            Persist::Anchored { note, .. } => Some(note.clone()),
            _ => None,
        })
        .next_back()
        .expect("an anchored checkpoint");
    Checkpoint::parse_body(&Note::parse(note.as_bytes()).expect("note").text).expect("checkpoint")
}

fn records_of(text: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{text} {i}").into_bytes()).collect()
}

#[test]
fn an_owner_never_signs_a_second_root_for_a_size_it_signed_nor_a_smaller_size() {
    let mut net = Net::new(3, 2);
    net.commit(3);
    let now = net.now_ms;
    let signed = last_signed(&net, 0);
    assert_eq!(signed.size, 3);
    let fresh = || Engine::new(identity(0), registry(3, 2), EngineConfig::default(), MemoryNodeStore::new);
    let commit = |records| Input::Commit { namespace: NAMESPACE.to_string(), records };

    // Restarted knowing what it signed but without the records (as a namespace the store did
    // not list was restored): new records would take indices 0-2 and a second root for size 3.
    let mut empty = fresh();
    empty.restore_signed(NAMESPACE, HashAlgorithm::Sha256, signed.size, signed.root);
    let refused =
        empty.handle(commit(records_of("other", 3)), now).expect_err("a commit under the signed size");
    assert!(
        matches!(&refused, EngineError::Refused(SignRefusal::BehindSigned { size: 0, signed: 3, .. })),
        "{refused}"
    );
    assert!(refused.to_string().contains("Appends to dao:alpha are stopped"), "{refused}");
    assert_eq!(empty.tree(NAMESPACE).map(|t| t.size()), Some(0), "nothing was appended");

    // Restarted with other records of the same count: their root at size 3 is not the one
    // signed. Neither an anchor nor a commit is signed, and the namespace stays halted.
    let mut forked = fresh();
    let other = records_of("forged", 3);
    forked
        .restore_records(NAMESPACE, HashAlgorithm::Sha256, other.iter().map(Vec::as_slice))
        .expect("records");
    forked.restore_signed(NAMESPACE, HashAlgorithm::Sha256, signed.size, signed.root);
    let anchor = Input::AnchorNow { namespace: NAMESPACE.to_string() };
    let refused = forked.handle(anchor, now).expect_err("a second root at size 3");
    assert!(matches!(&refused, EngineError::Refused(SignRefusal::OtherRoot { signed: 3, .. })), "{refused}");
    let refused = forked.handle(commit(records_of("more", 1)), now).expect_err("halted");
    assert!(matches!(&refused, EngineError::Refused(SignRefusal::OtherRoot { .. })), "{refused}");
    let halted: Vec<_> =
        forked.owned_namespaces().filter_map(|(ns, _, halted)| halted.map(|h| (ns, h))).collect();
    assert_eq!(halted.len(), 1, "the operator sees the halt: {halted:?}");

    // Restored with its own records, it signs size 4, extending size 3.
    let mut restored = fresh();
    for record in &net.persisted[0] {
        if let Persist::Records { namespace, records, .. } = record {
            restored
                .restore_records(namespace, HashAlgorithm::Sha256, records.iter().map(Vec::as_slice))
                .expect("records");
        }
    }
    restored.restore_signed(NAMESPACE, HashAlgorithm::Sha256, signed.size, signed.root);
    let outputs = restored.handle(commit(records_of("fourth", 1)), now).expect("a commit extending size 3");
    assert!(
        outputs.iter().any(|o| matches!(o, Output::Persist(Persist::Anchored { size: 4, .. }))),
        "{outputs:?}"
    );
}

#[test]
fn an_owner_whose_store_lacks_a_receipt_it_anchored_stops_appending_to_that_namespace() {
    let mut net = Net::new(3, 2);
    net.commit(3);
    let at_three: Vec<Persist> = net.persisted[0].clone();
    let signed = last_signed(&net, 0);
    net.commit(2);
    assert_eq!(net.final_size(1), Some(5));
    let now = net.now_ms;

    // The owner's data directory restored from a copy taken at size 3.
    let mut owner = Engine::new(identity(0), registry(3, 2), EngineConfig::default(), MemoryNodeStore::new);
    for record in &at_three {
        if let Persist::Records { namespace, records, .. } = record {
            owner
                .restore_records(namespace, HashAlgorithm::Sha256, records.iter().map(Vec::as_slice))
                .expect("records");
        }
    }
    owner.restore_signed(NAMESPACE, HashAlgorithm::Sha256, signed.size, signed.root);
    // A witness's receipt at size 5, which this owner anchored and its store lacks.
    let receipt = net.engines[1].finals().get(NAMESPACE).expect("final at the witness").clone();
    let message =
        PeerMessage::sign(&identity(1), Content::Receipt(Box::new(ReceiptContent { receipt })), now);
    let outputs = owner.handle(Input::Message(message), now).expect("receipt");
    let halted = outputs.iter().find_map(|o| match o {
        Output::Event(Event::Halted(refusal)) => Some(refusal.clone()),
        _ => None,
    });
    assert!(
        matches!(
            &halted,
            Some(SignRefusal::FederationDisagrees { final_size: 5, size: 3, what: "lacks", .. })
        ),
        "{outputs:?}"
    );
    let refused = owner
        .handle(Input::Commit { namespace: NAMESPACE.to_string(), records: records_of("new", 2) }, now)
        .expect_err("no appends over what the federation holds");
    assert!(matches!(refused, EngineError::Refused(SignRefusal::FederationDisagrees { .. })), "{refused}");
    assert_eq!(owner.tree(NAMESPACE).map(|t| t.size()), Some(3));
}

#[test]
fn only_the_owner_may_anchor_and_only_consistently() {
    let mut net = Net::new(3, 2);
    // n1 signs an anchor for n0's namespace.
    let usurped =
        anchor_message(&identity(1), &checkpoint(3, [1; 32], net.now_ms), 0, Vec::new(), net.now_ms);
    net.input(2, Input::Message(usurped));
    assert_eq!(net.rejections(2), vec![Rejection::NotOwner]);

    net.commit(4);
    assert_eq!(net.final_size(2), Some(4));
    // The owner's next checkpoint with a proof that does not join the last one.
    let bogus =
        anchor_message(&identity(0), &checkpoint(8, [2; 32], net.now_ms), 4, vec![[3; 32]; 3], net.now_ms);
    net.input(2, Input::Message(bogus));
    assert_eq!(net.rejections(2), vec![Rejection::NotOwner, Rejection::Inconsistent]);
    assert!(
        !net.published[2]
            .iter()
            .any(|m| matches!(&m.content, Content::Countersign(c) if c.checkpoint.contains("\n8\n"))),
        "no cosignature for an inconsistent checkpoint"
    );
}

#[test]
fn an_equivocating_owner_is_caught_and_every_member_keeps_the_evidence() {
    let mut net = Net::new(3, 2);
    net.commit(4);
    let honest_root = net.engines[0].tree(NAMESPACE).expect("tree").root();
    // The owner signs a second, different root for the same size and shows it to n1.
    let mut forked_root = honest_root;
    forked_root[0] ^= 0xff;
    let fork =
        anchor_message(&identity(0), &checkpoint(4, forked_root, net.now_ms), 0, Vec::new(), net.now_ms);
    net.input(1, Input::Message(fork));
    net.run();
    for node in 1..3 {
        let evidence = net.engines[node].evidence();
        assert_eq!(evidence.len(), 1, "node {node} holds the evidence");
        assert_eq!(evidence[0].signer, "did:vm:node:n0");
        assert_eq!(evidence[0].size, 4);
        assert!(net.events[node]
            .iter()
            .any(|e| matches!(e, Event::Equivocation { signer, .. } if signer == "did:vm:node:n0")));
    }
    // Evidence that proves nothing is refused.
    let same =
        anchor_message(&identity(0), &checkpoint(4, honest_root, net.now_ms), 0, Vec::new(), net.now_ms);
    let Content::Anchor(anchor) = same.content else { unreachable!("built as an anchor") };
    let bogus = Content::Evidence(remembrancer_core::message::EvidenceContent {
        first: anchor.checkpoint.clone(),
        second: anchor.checkpoint,
    });
    net.input(2, Input::Message(PeerMessage::sign(&identity(1), bogus, net.now_ms)));
    assert!(net.rejections(2).contains(&Rejection::BadEvidence));
}

#[test]
fn a_split_view_surfaces_through_the_witnesses_countersignatures() {
    let mut net = Net::new(4, 3);
    // The owner shows one root at size 4 to n1 and n3, another to n2; no member sees both
    // anchors, only the countersignatures the others broadcast.
    let (one, other) = ([1u8; 32], [2u8; 32]);
    let seen_by = |root: [u8; 32], now_ms: u64| {
        anchor_message(&identity(0), &checkpoint(4, root, now_ms), 0, Vec::new(), now_ms)
    };
    let now = net.now_ms;
    for (to, root) in [(1, one), (3, one), (2, other)] {
        net.input(to, Input::Message(seen_by(root, now)));
    }
    // Countersignatures carrying the note a member countersigned itself change nothing there.
    let countersigns: Vec<(usize, PeerMessage)> = net.queue.drain(..).collect();
    for (to, message) in countersigns {
        net.input(to, Input::Message(message));
    }
    for node in 1..4 {
        let evidence = net.engines[node].evidence();
        assert_eq!(evidence.len(), 1, "n{node} holds the evidence");
        assert_eq!((evidence[0].signer.as_str(), evidence[0].size), ("did:vm:node:n0", 4));
        assert!(net.rejections(node).is_empty(), "n{node}: {:?}", net.rejections(node));
    }
}

#[test]
fn a_node_that_missed_a_receipt_catches_up_from_heartbeats() {
    let mut net = Net::new(3, 2);
    net.cut.insert(2);
    net.commit(6);
    assert_eq!(net.final_size(0), Some(6));
    assert_eq!(net.final_size(2), None);
    net.cut.clear();
    net.input(0, Input::Timer(Timer::Heartbeat));
    net.run();
    assert_eq!(net.final_size(2), Some(6));
    assert_eq!(net.engines[2].finals().get(NAMESPACE), net.engines[0].finals().get(NAMESPACE));
}

#[test]
fn a_lagging_node_asks_one_peer_per_heartbeat_interval_for_a_missing_receipt() {
    let mut net = Net::new(4, 3);
    net.cut.insert(3);
    net.commit(5);
    assert_eq!(net.final_size(0), Some(5));
    let heartbeat_at = |from: usize, size: u64, now_ms: u64| {
        let finalized = [(NAMESPACE.to_string(), size)].into_iter().collect();
        let content = Content::Heartbeat(HeartbeatContent { registry_version: 1, finalized });
        Input::Message(PeerMessage::sign(&identity(from), content, now_ms))
    };
    let requests = |outputs: Vec<Output>| {
        outputs
            .into_iter()
            .filter(|o| matches!(o, Output::Send { message, .. } if matches!(message.content, Content::Request(_))))
            .count()
    };
    let interval = EngineConfig::default().heartbeat_interval_ms;
    let lagging = &mut net.engines[3];
    // Three peers announce the same final within one interval: one request, not three.
    let mut asked = 0;
    for (from, at) in [(0, START_MS), (1, START_MS + 10), (2, START_MS + interval - 1)] {
        asked += requests(lagging.handle(heartbeat_at(from, 5, at), at).expect("handle"));
    }
    assert_eq!(asked, 1);
    // Unanswered for a whole interval: the next announcement is asked of its sender.
    let later = START_MS + interval;
    assert_eq!(requests(lagging.handle(heartbeat_at(1, 5, later), later).expect("handle")), 1);
    // A larger final is asked for at once.
    assert_eq!(requests(lagging.handle(heartbeat_at(2, 9, later + 1), later + 1).expect("handle")), 1);
}

#[test]
fn a_witness_that_missed_a_round_asks_for_a_proof_from_its_own_size() {
    let mut net = Net::new(3, 2);
    net.commit(2);
    assert_eq!(net.final_size(1), Some(2));
    // n1 misses the round at size 5; n0 and n2 finalize it.
    net.cut.insert(1);
    net.commit(3);
    assert_eq!(net.final_size(2), Some(5));
    net.cut.clear();
    // The next anchor (size 9) carries a proof from 5; n1 last countersigned 2, asks, and
    // countersigns once the proof from 2 arrives.
    net.commit(4);
    let cosigned_9 = net.published[1]
        .iter()
        .any(|m| matches!(&m.content, Content::Countersign(c) if c.checkpoint.contains("\n9\n")));
    assert!(cosigned_9, "n1 countersigned size 9 after catching up on the proof");
    assert!(net.rejections(1).is_empty(), "{:?}", net.rejections(1));
    assert_eq!(net.final_size(1), Some(9));
}

#[test]
fn an_anchor_whose_countersignatures_were_lost_finalizes_when_sent_again_after_its_retries() {
    // Quorum 3 of 3: n1 countersigns, but n2 is cut off for longer than the retries last.
    let mut net = Net::new(3, 3);
    net.cut.insert(2);
    net.commit(4);
    assert_eq!(net.final_size(0), None);
    let signed_before: Vec<String> = net.persisted[0]
        .iter()
        .filter_map(|p| match p {
            Persist::Anchored { note, .. } => Some(note.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(signed_before.len(), 1);
    // The partition heals; the host asks for the anchor again (a member reconnected).
    net.cut.clear();
    net.now_ms += 120_000;
    net.input(0, Input::AnchorNow { namespace: NAMESPACE.to_string() });
    let signed_after = net.persisted[0].iter().filter(|p| matches!(p, Persist::Anchored { .. })).count();
    assert_eq!(signed_after, 1, "the pending note is sent again, not signed again");
    net.run();
    for node in 0..3 {
        assert_eq!(net.final_size(node), Some(4), "node {node}: n1's first countersignature still counts");
    }
    assert!((0..3).all(|n| net.rejections(n).is_empty()));

    // An owner that lost its pending anchor (a crash) signs its root again with a new
    // timestamp; witnesses that countersigned the first note countersign the second too.
    let mut net = Net::new(3, 3);
    net.cut.insert(2);
    net.commit(2);
    let owner_note = net.persisted[0]
        .iter()
        .find_map(|p| match p {
            Persist::Anchored { note, .. } => Some(note.clone()),
            _ => None,
        })
        .expect("signed");
    let mut owner = Engine::new(identity(0), registry(3, 3), EngineConfig::default(), MemoryNodeStore::new);
    for record in &net.persisted[0] {
        if let Persist::Records { namespace, records, .. } = record {
            owner
                .restore_records(namespace, HashAlgorithm::Sha256, records.iter().map(Vec::as_slice))
                .expect("records");
        }
    }
    net.engines[0] = owner;
    net.cut.clear();
    net.now_ms += 2_000;
    net.input(0, Input::AnchorNow { namespace: NAMESPACE.to_string() });
    let resigned = net.engines[0].tree(NAMESPACE).map(|t| t.size());
    assert_eq!(resigned, Some(2));
    net.run();
    for node in 0..3 {
        assert_eq!(net.final_size(node), Some(2), "node {node}");
    }
    let receipt = net.engines[1].finals().get(NAMESPACE).expect("final").clone();
    assert!(!owner_note.is_empty() && verify_receipt(&receipt, &registry(3, 3)).all_ok());
    assert!((0..3).all(|n| net.rejections(n).is_empty()), "the same root signed twice is no offence");
}

#[test]
fn unanswered_anchors_are_retried_with_geometric_backoff_and_then_dropped() {
    let mut net = Net::new(3, 2);
    net.cut.extend([1, 2]);
    let outputs = net.engines[0]
        .handle(Input::Commit { namespace: NAMESPACE.to_string(), records: vec![b"x".to_vec()] }, net.now_ms)
        .expect("commit");
    let first = outputs
        .iter()
        .find_map(|o| match o {
            Output::SetTimer { timer: Timer::AnchorRetry { attempt, .. }, at_ms } => Some((*attempt, *at_ms)),
            _ => None,
        })
        .expect("a retry timer");
    assert_eq!(first, (1, net.now_ms + 500));
    // A countersignature that arrives after the deadline counts as late (quorum 3 of 3, so
    // the anchor waits for n1 and is retried).
    let mut late_net = Net::new(3, 3);
    late_net.cut.insert(1);
    late_net.commit(1);
    late_net.cut.clear();
    late_net.now_ms += 5_000;
    // n2's countersignature came after the broadcast: the first retry waits; the second,
    // after a silent interval, broadcasts again and reaches n1.
    for attempt in [1, 2] {
        late_net.input(
            0,
            Input::Timer(Timer::AnchorRetry { namespace: NAMESPACE.to_string(), size: 1, attempt }),
        );
        late_net.run();
    }
    let score = late_net.engines[0].scores().get("did:vm:node:n1").expect("score");
    assert_eq!((score.countersigns_on_time, score.countersigns_late), (0, 1), "{score:?}");
    assert_eq!(score.reliability(), Some(0.0));
    let mut delays = Vec::new();
    let mut attempt = 1;
    loop {
        let outputs = net.engines[0]
            .handle(
                Input::Timer(Timer::AnchorRetry { namespace: NAMESPACE.to_string(), size: 1, attempt }),
                net.now_ms,
            )
            .expect("retry");
        let Some((next, at_ms)) = outputs.iter().find_map(|o| match o {
            Output::SetTimer { timer: Timer::AnchorRetry { attempt, .. }, at_ms } => Some((*attempt, *at_ms)),
            _ => None,
        }) else {
            break;
        };
        assert!(
            outputs.iter().any(|o| matches!(o, Output::Publish(_))),
            "each retry re-broadcasts the anchor"
        );
        delays.push(at_ms - net.now_ms);
        attempt = next;
    }
    assert_eq!(delays, vec![1000, 2000, 4000, 8000, 16000, 32000]);
}

#[test]
fn evidence_puts_the_equivocator_on_probation_everywhere_and_laggards_catch_up() {
    let mut net = Net::new(4, 3);
    net.commit(4);
    // n3 is away while the federation reacts.
    net.cut.insert(3);
    let honest_root = net.engines[0].tree(NAMESPACE).expect("tree").root();
    let mut forked_root = honest_root;
    forked_root[5] ^= 0x01;
    let fork =
        anchor_message(&identity(0), &checkpoint(4, forked_root, net.now_ms), 0, Vec::new(), net.now_ms);
    net.input(1, Input::Message(fork));
    net.run();
    for node in 0..3 {
        let registry = net.engines[node].registry();
        assert_eq!(registry.version, 2, "node {node} applied the update");
        assert_eq!(
            registry.member("did:vm:node:n0").expect("member").status,
            remembrancer_core::registry::PeerStatus::Probation,
            "node {node}"
        );
    }
    let applied = &net.engines[1].registry_chain()[0];
    assert!(applied.signatures.len() >= 3, "a quorum of members signed the update");
    // n3 comes back and learns the new registry from a heartbeat.
    net.cut.clear();
    assert_eq!(net.engines[3].registry().version, 1);
    net.input(1, Input::Timer(Timer::Heartbeat));
    net.run();
    assert_eq!(net.engines[3].registry().version, 2, "the laggard caught up on the registry");
    // With its signature no longer counted, n0 still anchors, but the 3 other members must
    // all countersign: quorum 3 of the 3 active members.
    net.commit(2);
    let receipt = net.engines[0].finals().get(NAMESPACE).expect("final");
    assert_eq!(receipt.registry_version, 2);
    assert_eq!(receipt.tree_size, 6);
    assert!(verify_receipt(receipt, net.engines[2].registry()).all_ok());
}

#[test]
fn a_manual_registry_update_needs_a_quorum_of_member_signatures() {
    use remembrancer_core::governance::{status_change, ProposalReason};
    use remembrancer_core::message::RegistryContent;
    let mut net = Net::new(3, 2);
    let proposal = status_change(
        net.engines[0].registry(),
        "did:vm:node:n2",
        remembrancer_core::registry::PeerStatus::Probation,
        ProposalReason::Manual { memo: "maintenance".to_string() },
    )
    .expect("proposal");
    // One signature (n1's) is short of the quorum of 2, and members do not sign manual
    // updates on their own (admission policy "manual").
    let content =
        RegistryContent { proposal: proposal.clone(), signatures: vec![proposal.sign(&identity(1))] };
    net.input(
        0,
        Input::Message(PeerMessage::sign(&identity(1), Content::Registry(Box::new(content)), net.now_ms)),
    );
    net.run();
    assert!(net.engines.iter().all(|e| e.registry().version == 1));
    // A second member's signature completes it everywhere.
    let content = RegistryContent {
        proposal: proposal.clone(),
        signatures: vec![proposal.sign(&identity(1)), proposal.sign(&identity(2))],
    };
    net.input(
        0,
        Input::Message(PeerMessage::sign(&identity(2), Content::Registry(Box::new(content)), net.now_ms)),
    );
    net.run();
    assert!(net.engines.iter().all(|e| e.registry().version == 2));
    // A proposal for a version already replaced changes nothing, whatever it carries.
    let mut forged = proposal.sign(&identity(0));
    forged.signature = serde_bytes::ByteBuf::from(vec![7u8; 64]);
    let stale = RegistryContent { proposal, signatures: vec![forged] };
    net.input(
        1,
        Input::Message(PeerMessage::sign(&identity(0), Content::Registry(Box::new(stale)), net.now_ms)),
    );
    assert!(net.engines[1].registry().version == 2, "a stale proposal changes nothing");
}

#[test]
fn independent_owners_anchor_each_final_receipt_at_the_target() {
    let mut net = Net::new(3, 2);
    net.commit(3);
    net.commit(2);
    assert_eq!(net.targets[0].anchored(), 2, "one anchor per final receipt of the owner");
    assert_eq!(net.targets[1].anchored() + net.targets[2].anchored(), 0, "witnesses do not anchor");
    assert!(net.events[0].iter().any(|e| matches!(e, Event::Anchored { rank: None, .. })));
}

#[test]
fn a_misbehaving_member_is_put_on_probation_and_reinstated_after_good_behaviour() {
    use remembrancer_core::registry::PeerStatus;
    let config =
        EngineConfig { probation_rejections: 5, reinstate_after_ms: 60_000, ..EngineConfig::default() };
    let mut net = Net::with_config(4, 3, config);
    // n3 keeps anchoring a namespace it does not own.
    for i in 0..6u8 {
        let usurped =
            anchor_message(&identity(3), &checkpoint(1, [i; 32], net.now_ms), 0, Vec::new(), net.now_ms);
        for node in 0..3 {
            net.input(node, Input::Message(usurped.clone()));
        }
        net.now_ms += 10;
    }
    // Each refused anchor was provably n3's statement: it counts toward n3's score.
    let score = net.engines[1].scores().get("did:vm:node:n3").expect("score");
    assert_eq!(score.honesty_rejections(), 6);
    for node in 0..3 {
        net.input(node, Input::Timer(Timer::Heartbeat));
    }
    net.run();
    for node in 0..4 {
        let status = net.engines[node].registry().member("did:vm:node:n3").expect("member").status;
        assert_eq!(status, PeerStatus::Probation, "node {node} applied the probation");
    }
    // A minute of good behaviour later, the members propose and sign its reinstatement.
    net.now_ms += 61_000;
    for node in 0..3 {
        net.input(node, Input::Timer(Timer::Heartbeat));
    }
    net.run();
    for node in 0..4 {
        let registry = net.engines[node].registry();
        assert_eq!(
            registry.member("did:vm:node:n3").expect("member").status,
            PeerStatus::Active,
            "node {node}"
        );
        assert_eq!(registry.version, 3);
    }
}

#[test]
fn messages_forged_under_a_members_name_do_not_count_against_it() {
    let config = EngineConfig { probation_rejections: 2, ..EngineConfig::default() };
    let mut net = Net::with_config(3, 2, config);
    let impostor = NodeIdentity::from_seed("did:vm:node:n2", [77; 32]).expect("identity");
    for _ in 0..5 {
        let forged =
            PeerMessage::sign(&impostor, Content::Heartbeat(HeartbeatContent::default()), net.now_ms);
        net.input(0, Input::Message(forged));
        net.now_ms += 1;
    }
    net.input(0, Input::Timer(Timer::Heartbeat));
    net.run();
    assert_eq!(net.engines[0].registry().version, 1, "no probation for forged messages");
    assert_eq!(net.rejections(0).len(), 5, "but each forgery is refused and counted");
}

fn epoch_net(mode: remembrancer_core::registry::AnchorMode) -> (Net, u64, Vec<usize>) {
    let mut net = Net::with_registry(registry_with_mode(5, 3, mode), EngineConfig::default());
    net.commit(3);
    let epoch = net.now_ms / EngineConfig::default().epoch_ms;
    let order = remembrancer_core::anchoring::election_order(net.engines[0].registry(), epoch);
    let ranks = order.iter().map(|did| net.index_of(did).expect("member")).collect();
    (net, epoch, ranks)
}

#[test]
fn collaborative_mode_anchors_each_epoch_once_by_the_elected_node() {
    let (mut net, epoch, ranks) = epoch_net(remembrancer_core::registry::AnchorMode::Collaborative);
    for node in 0..5 {
        net.input(node, Input::Timer(Timer::EpochEnd { epoch }));
    }
    net.run();
    let anchors: Vec<u64> = net.targets.iter().map(LocalTarget::anchored).collect();
    assert_eq!(anchors.iter().sum::<u64>(), 1, "one anchor for the epoch: {anchors:?}");
    assert_eq!(anchors[ranks[0]], 1, "issued by the elected primary");
    let primary = format!("did:vm:node:n{}", ranks[0]);
    for node in 0..5 {
        let held: Vec<(u64, &str)> = net.engines[node].epoch_anchors().collect();
        assert_eq!(held, vec![(epoch, primary.as_str())], "node {node} verified and kept the epoch anchor");
    }
}

/// However many receipts an epoch finalized, its anchor names each namespace once, at its
/// largest final size (a later root of an append-only tree commits to the earlier ones): at
/// hundreds of receipts a second an entry per receipt outgrew a peer message (4096 entries,
/// 256 KiB) within seconds, and every member refused the anchor. An entry that contradicts a
/// final receipt a member holds is still refused.
#[test]
fn an_epoch_anchor_names_each_namespace_once_at_its_largest_final_size() {
    use remembrancer_core::anchoring::{epoch_root, EpochEntry};
    use remembrancer_core::message::EpochAnchorContent;
    let (mut net, epoch, ranks) = epoch_net(remembrancer_core::registry::AnchorMode::Collaborative);
    for _ in 0..4 {
        net.commit(2);
    }
    assert_eq!(net.final_size(0), Some(11), "five receipts final in the epoch");
    assert_eq!(net.now_ms / EngineConfig::default().epoch_ms, epoch, "all in one epoch");
    for node in 0..5 {
        net.input(node, Input::Timer(Timer::EpochEnd { epoch }));
    }
    net.run();
    let primary = ranks[0];
    let anchors: Vec<&EpochAnchorContent> = net.published[primary]
        .iter()
        .filter_map(|m| match &m.content {
            Content::EpochAnchor(content) => Some(content),
            _ => None,
        })
        .collect();
    assert_eq!(anchors.len(), 1);
    let entries: Vec<(&str, u64)> =
        anchors[0].entries.iter().map(|e| (e.namespace.as_str(), e.size)).collect();
    assert_eq!(entries, vec![(NAMESPACE, 11)]);
    let root = net.engines[0].finals()[NAMESPACE].anchor.batch_root.value;
    assert_eq!(anchors[0].entries[0].root.as_slice(), root.as_slice());
    for node in 0..5 {
        assert_eq!(net.engines[node].epoch_anchors().count(), 1, "node {node} kept the epoch anchor");
    }

    // The next epoch's anchor, from the member its election names, claiming another root at
    // a size the others hold final: refused as a false statement. The same from a member the
    // election did not name: refused before it is read, and kept as evidence.
    let order = net.engines[0].election(epoch + 1);
    let liar = net.index_of(&order[0]).expect("member");
    let entries = vec![EpochEntry {
        namespace: NAMESPACE.to_string(),
        size: 11,
        root: serde_bytes::ByteBuf::from(vec![7u8; 32]),
    }];
    let content = EpochAnchorContent {
        epoch: epoch + 1,
        registry_version: 1,
        root: serde_bytes::ByteBuf::from(epoch_root(&entries).to_vec()),
        entries,
        reference: net.targets[liar].anchor(&[0u8; 32], net.now_ms).expect("anchored"),
    };
    let listener = (0..5).find(|n| *n != liar).expect("another member");
    assert_eq!(net.engines[listener].election(epoch + 1), order, "one election everywhere");
    let lie = PeerMessage::sign(&identity(liar), Content::EpochAnchor(content.clone()), net.now_ms);
    net.input(listener, Input::Message(lie));
    assert_eq!(net.rejections(listener).last(), Some(&Rejection::BadStatement));
    let usurper = net.index_of(&order[1]).expect("member");
    let listener = (0..5).find(|n| *n != usurper).expect("another member");
    let claim = PeerMessage::sign(&identity(usurper), Content::EpochAnchor(content), net.now_ms);
    net.input(listener, Input::Message(claim));
    assert_eq!(net.rejections(listener).last(), Some(&Rejection::UnelectedClaim));
    assert_eq!(net.engines[listener].epoch_anchors().count(), 1, "neither claim is kept");
    assert_eq!(net.engines[listener].claim_evidence().len(), 1, "the claim out of turn is evidence");
}

/// A claim out of turn is objective: the member that receives it keeps it and broadcasts it,
/// every other member checks it alone (the election depends on the registry and the epoch
/// only) and signs the claimant's probation, which a quorum applies; an auditor checks the
/// exported file with the registry version it names. A claim naming a registry version a node
/// does not hold, and evidence of a claim the election allowed, prove nothing.
#[test]
fn a_claim_out_of_turn_is_evidence_every_member_checks_and_leads_to_probation() {
    use remembrancer_core::anchoring::{epoch_root, EpochEntry};
    use remembrancer_core::claims::{ClaimEvidenceFile, CLAIM_EVIDENCE_FORMAT};
    use remembrancer_core::message::{ClaimEvidenceContent, EpochAnchorContent};
    let (mut net, epoch, ranks) = epoch_net(remembrancer_core::registry::AnchorMode::Collaborative);
    let claim_by = |net: &Net, node: usize, registry_version: u64| {
        let entries = vec![EpochEntry {
            namespace: NAMESPACE.to_string(),
            size: 1,
            root: serde_bytes::ByteBuf::from(vec![1u8; 32]),
        }];
        let content = EpochAnchorContent {
            epoch,
            registry_version,
            root: serde_bytes::ByteBuf::from(epoch_root(&entries).to_vec()),
            entries,
            reference: LocalTarget::default().anchor(&[0u8; 32], net.now_ms).expect("anchored"),
        };
        PeerMessage::sign(&identity(node), Content::EpochAnchor(content), net.now_ms)
    };
    let (primary, usurper) = (ranks[0], ranks[2]);
    let listener = ranks[1];
    let usurper_did = format!("did:vm:node:n{usurper}");

    // A claim naming a registry version nobody holds: not judged, not evidence.
    net.input(listener, Input::Message(claim_by(&net, usurper, 99)));
    assert_eq!(net.rejections(listener).last(), Some(&Rejection::NotElected));
    assert!(net.engines[listener].claim_evidence().is_empty());
    // Evidence of a claim the election allowed (the primary's): refused.
    let allowed = claim_by(&net, primary, 1).encode();
    let bogus = Content::ClaimEvidence(ClaimEvidenceContent { message: serde_bytes::ByteBuf::from(allowed) });
    net.input(listener, Input::Message(PeerMessage::sign(&identity(usurper), bogus, net.now_ms)));
    assert_eq!(net.rejections(listener).last(), Some(&Rejection::BadEvidence));

    // The usurper's claim: evidence on the listener, broadcast, checked by every member.
    net.input(listener, Input::Message(claim_by(&net, usurper, 1)));
    assert_eq!(net.rejections(listener).last(), Some(&Rejection::UnelectedClaim));
    assert!(net.published[listener].iter().any(|m| matches!(m.content, Content::ClaimEvidence(_))));
    net.run();
    for node in (0..5).filter(|n| *n != usurper) {
        let held = net.engines[node].claim_evidence();
        assert_eq!(held.len(), 1, "node {node} holds the evidence");
        assert_eq!(
            (held[0].signer.as_str(), held[0].epoch, held[0].rank),
            (usurper_did.as_str(), epoch, Some(2))
        );
        assert!(
            net.persisted[node].iter().any(|p| matches!(p, Persist::ClaimEvidence(_))),
            "node {node} stored it"
        );
        let status = net.engines[node].registry().member(&usurper_did).expect("member").status;
        assert_eq!(
            status,
            remembrancer_core::registry::PeerStatus::Probation,
            "node {node}: probation by quorum"
        );
    }

    // Offline: the file checks with registry version 1, not with another, not changed.
    let evidence = net.engines[listener].claim_evidence()[0].clone();
    let file = ClaimEvidenceFile::from(&evidence);
    assert_eq!(file.format, CLAIM_EVIDENCE_FORMAT);
    let bytes = serde_json::to_vec(&file).expect("json");
    let v1 = registry_with_mode(5, 3, remembrancer_core::registry::AnchorMode::Collaborative);
    let report = remembrancer_core::evidence::verify_evidence(&bytes, &v1);
    assert!(report.all_ok(), "{report:?}");
    let v2 = net.engines[listener].registry().clone();
    assert!(!remembrancer_core::evidence::verify_evidence(&bytes, &v2).all_ok(), "another version");
    let mut changed = evidence.clone();
    let last = changed.message.len() - 1;
    changed.message[last] ^= 1;
    let bytes = serde_json::to_vec(&ClaimEvidenceFile::from(&changed)).expect("json");
    assert!(!remembrancer_core::evidence::verify_evidence(&bytes, &v1).all_ok(), "a changed claim");
}

#[test]
fn hybrid_mode_lets_the_first_secondary_anchor_when_the_primary_is_down() {
    let (mut net, epoch, ranks) = epoch_net(remembrancer_core::registry::AnchorMode::Hybrid);
    net.cut.insert(ranks[0]);
    for node in 0..5 {
        net.input(node, Input::Timer(Timer::EpochEnd { epoch }));
    }
    net.run();
    // The secondaries' deadlines fire in rank order; the first one anchors, the next sees its
    // anchor and stands down.
    for &node in &ranks[1..3] {
        net.input(node, Input::Timer(Timer::EpochDeadline { epoch }));
        net.run();
    }
    assert_eq!(net.targets[ranks[1]].anchored(), 1, "the first secondary anchored");
    assert_eq!(net.targets[ranks[2]].anchored(), 0, "the second saw it and did not");
    let secondary = format!("did:vm:node:n{}", ranks[1]);
    for &node in &ranks[1..] {
        let held: Vec<(u64, &str)> = net.engines[node].epoch_anchors().collect();
        assert_eq!(held, vec![(epoch, secondary.as_str())], "node {node}");
    }
}

impl Net {
    /// Adds a node that is not in the registry (it starts from the same founding registry).
    fn add_outsider(&mut self, identity: NodeIdentity, config: EngineConfig) -> usize {
        let registry = self.engines[0].registry().clone();
        self.engines.push(Engine::new(identity, registry, config, MemoryNodeStore::new));
        self.persisted.push(Vec::new());
        self.events.push(Vec::new());
        self.published.push(Vec::new());
        self.targets.push(LocalTarget::default());
        self.engines.len() - 1
    }

    fn versions(&self) -> Vec<u64> {
        self.engines.iter().map(|e| e.registry().version).collect()
    }
}

#[test]
fn an_outsider_joins_by_quorum_under_open_admission_and_then_anchors_its_namespace() {
    let open = EngineConfig { approve_joins: true, ..EngineConfig::default() };
    let mut net = Net::with_config(4, 3, open.clone());
    let joiner = net.add_outsider(identity(4), open);
    net.input(joiner, Input::RequestJoin { namespaces: vec!["dao:newcomer".to_string()], endpoint: None });
    net.run();
    assert_eq!(net.versions(), vec![2; 5], "every node, the joiner included, applied the admission");
    for engine in &net.engines {
        let registry = engine.registry();
        assert!(registry.member("did:vm:node:n4").is_some_and(|m| m.namespaces == ["dao:newcomer"]));
        assert_eq!(registry.quorum, 3, "five active members: 3 is still above half");
        assert_eq!(registry.members.len(), 5);
    }
    let records = vec![b"first".to_vec(), b"second".to_vec()];
    net.input(joiner, Input::Commit { namespace: "dao:newcomer".to_string(), records });
    net.run();
    for engine in &net.engines {
        assert_eq!(engine.finals().get("dao:newcomer").map(|r| r.tree_size), Some(2));
    }
    // A sixth member raises the quorum: 3 is not above half of 6.
    let open = EngineConfig { approve_joins: true, ..EngineConfig::default() };
    let sixth = net.add_outsider(identity(5), open);
    // It starts from the founding registry: behind, its proposal cannot apply; bring it up to date.
    let chain_head = net.engines[0].registry().clone();
    assert_eq!(chain_head.version, 2);
    net.engines[sixth] = Engine::new(identity(5), chain_head, EngineConfig::default(), MemoryNodeStore::new);
    net.input(sixth, Input::RequestJoin { namespaces: Vec::new(), endpoint: None });
    net.run();
    assert_eq!(net.engines[0].registry().quorum, 4);
    assert_eq!(net.engines[0].registry().version, 3);
    assert!((0..net.engines.len()).all(|n| net.rejections(n).is_empty()), "an honest join refuses nothing");
}

#[test]
fn under_manual_admission_a_join_waits_for_operators_and_forged_joins_count_for_nothing() {
    let mut net = Net::new(4, 3);
    let joiner = net.add_outsider(identity(4), EngineConfig::default());
    net.input(joiner, Input::RequestJoin { namespaces: Vec::new(), endpoint: None });
    net.run();
    assert_eq!(net.versions(), vec![1; 5], "nobody signs a join by itself under manual admission");
    let digest = {
        let pending: Vec<_> =
            net.engines[0].proposals().map(|(digest, _, signers)| (digest, signers.len())).collect();
        assert_eq!(pending.len(), 1, "the member holds the join proposal for its operator");
        assert_eq!(pending[0].1, 0, "unsigned so far");
        pending[0].0
    };
    for member in 0..2 {
        net.input(member, Input::Approve { digest });
        net.run();
    }
    assert_eq!(net.versions(), vec![1; 5], "two approvals are short of the quorum of 3");
    net.input(2, Input::Approve { digest });
    net.run();
    assert_eq!(net.versions(), vec![2; 5], "the third approval applies it everywhere");

    // Forged joins: a proposal naming another key than the one that signs it, and a "join"
    // that also lowers the quorum; both are refused as from an unknown sender.
    let mut net = Net::with_config(4, 3, EngineConfig { approve_joins: true, ..EngineConfig::default() });
    let outsider = identity(7);
    let impostor = identity(8);
    let registry = net.engines[0].registry().clone();
    let member = remembrancer_core::registry::Member {
        did: outsider.did().to_string(),
        key: outsider.verifying_key(),
        status: remembrancer_core::registry::PeerStatus::Active,
        endpoint: None,
        namespaces: Vec::new(),
    };
    let proposal = remembrancer_core::governance::admission(&registry, &member).expect("admission");
    let content = |proposal| {
        Content::Registry(Box::new(remembrancer_core::message::RegistryContent {
            proposal,
            signatures: Vec::new(),
        }))
    };
    let mut forged = PeerMessage::sign(&impostor, content(proposal.clone()), net.now_ms);
    forged.sender = outsider.did().to_string();
    let mut greedy = proposal;
    greedy.update.registry.quorum = 2;
    let greedy = PeerMessage::sign(&outsider, content(greedy), net.now_ms);
    for message in [forged, greedy] {
        net.input(0, Input::Message(message));
        net.run();
    }
    assert_eq!(net.versions(), vec![1; 4]);
    assert!(net.engines[0].proposals().next().is_none(), "nothing forged is kept");
    // The forged one claims the outsider's join but the impostor signed it; the greedy one is
    // not an admission at all, so its sender is simply unknown.
    assert_eq!(net.rejections(0), vec![Rejection::BadSignature, Rejection::UnknownSender]);
}

#[test]
fn anchors_faster_than_finality_prove_from_the_previous_anchor_and_all_finalize() {
    let mut net = Net::new(4, 3);
    // Two commits before any message is delivered: the second anchor sits on the first.
    for record in [b"a", b"b"] {
        net.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records: vec![record.to_vec()] });
    }
    assert_eq!(
        net.anchors_from(0),
        vec![0, 1],
        "the second anchor proves from the first, which witnesses countersign first"
    );
    net.run();
    for node in 0..4 {
        assert_eq!(net.final_size(node), Some(2), "node {node}");
        assert!(net.rejections(node).is_empty(), "node {node}: {:?}", net.rejections(node));
    }
    // No witness had to ask for a proof from its own size: each countersigned both anchors
    // straight from the broadcast.
    for witness in 1..4 {
        let countersigned =
            net.persisted[witness].iter().filter(|p| matches!(p, Persist::Countersigned { .. })).count();
        assert_eq!(countersigned, 2, "witness {witness}");
    }
}

#[test]
fn a_witness_answers_a_retried_anchor_to_its_owner_only() {
    // Quorum 4 with one witness cut off: the anchor stays pending and is retried.
    let mut net = Net::new(4, 4);
    net.cut.insert(3);
    net.commit(2);
    assert_eq!(net.final_size(0), None);
    let broadcasts = net.published[1].len();
    assert!(broadcasts >= 1, "the first countersignature was broadcast");
    let owner_broadcasts = net.published[0].len();
    // The first retry comes after countersignatures arrived: the federation is slow, not
    // deaf, and the owner does not broadcast again.
    net.input(0, Input::Timer(Timer::AnchorRetry { namespace: NAMESPACE.to_string(), size: 2, attempt: 1 }));
    net.run();
    assert_eq!(net.published[0].len(), owner_broadcasts, "no new countersignature was missing yet");
    // The second comes after an interval without one: broadcast again.
    net.input(0, Input::Timer(Timer::AnchorRetry { namespace: NAMESPACE.to_string(), size: 2, attempt: 2 }));
    net.run();
    assert_eq!(net.published[0].len(), owner_broadcasts + 1, "a silent interval broadcasts the anchor again");
    assert_eq!(net.published[1].len(), broadcasts, "the retry is not broadcast again by the witness");
    let countersigned =
        net.persisted[1].iter().filter(|p| matches!(p, Persist::Countersigned { .. })).count();
    assert_eq!(countersigned, 2, "the witness countersigned the same root again");
    net.cut.clear();
    net.input(0, Input::Timer(Timer::AnchorRetry { namespace: NAMESPACE.to_string(), size: 2, attempt: 3 }));
    net.run();
    assert_eq!(net.final_size(0), Some(2), "with the fourth member back, the retry finalizes");
}

#[test]
fn commits_beyond_the_anchor_window_are_stored_and_join_the_next_anchor() {
    let config = EngineConfig { anchors_in_flight_max: 2, ..EngineConfig::default() };
    let mut net = Net::with_config(4, 3, config);
    // Five commits before any message is delivered: two anchors go out, three commits wait.
    for i in 0..5u8 {
        net.input(0, Input::Commit { namespace: NAMESPACE.to_string(), records: vec![vec![i]] });
    }
    assert_eq!(net.anchors_from(0), vec![0, 1], "two anchors in flight, at sizes 1 and 2");
    let stored = net.persisted[0].iter().filter(|p| matches!(p, Persist::Records { .. })).count();
    assert_eq!(stored, 5, "every commit is stored at once");
    assert_eq!(net.engines[0].tree(NAMESPACE).map(|t| t.size()), Some(5));
    net.run();
    // When the first anchors finalize, the held-back commits go out as one anchor at size 5.
    assert_eq!(net.anchors_from(0).len(), 3, "one more anchor covers the three held-back commits");
    for node in 0..4 {
        assert_eq!(net.final_size(node), Some(5), "node {node}");
        assert!(net.rejections(node).is_empty(), "node {node}: {:?}", net.rejections(node));
    }
}

#[test]
fn replays_and_receipts_no_newer_than_the_final_cost_no_signature_verification() {
    // Counted by a verifier without a memo, lent to this thread for the test.
    counting(|| {
        use remembrancer_core::message::ReceiptContent;
        use remembrancer_core::signature::operations;
        let mut net = Net::new(3, 2);
        net.commit(2);
        assert_eq!(net.final_size(1), Some(2));
        let receipt_message = net.published[0]
            .iter()
            .find(|m| matches!(m.content, Content::Receipt(_)))
            .cloned()
            .expect("the owner published its receipt");

        // The same message again: refused as a replay before its signature is checked.
        let before = operations().verifications;
        net.input(1, Input::Message(receipt_message.clone()));
        assert_eq!(net.rejections(1).last(), Some(&Rejection::Replay));
        assert_eq!(operations().verifications, before, "a replay is not verified again");

        // The same receipt passed on by another member: its message is verified (one signature),
        // the receipt's own signatures are not, and nothing changes.
        let Content::Receipt(content) = &receipt_message.content else { unreachable!() };
        let relayed = PeerMessage::sign(
            &identity(2),
            Content::Receipt(Box::new(ReceiptContent { receipt: content.receipt.clone() })),
            net.now_ms,
        );
        let persisted = net.persisted[1].len();
        let before = operations().verifications;
        net.input(1, Input::Message(relayed));
        assert_eq!(operations().verifications - before, 1, "only the relaying message's signature");
        assert_eq!(net.persisted[1].len(), persisted, "nothing new to persist");
        assert_eq!(net.final_size(1), Some(2));

        // A newer receipt is verified in full: one more commit, and node 1 checks all of it.
        let before = operations().verifications;
        net.commit(1);
        assert_eq!(net.final_size(1), Some(3));
        assert!(operations().verifications - before >= 4, "anchor, note and the receipt's signatures");
    });
}

#[test]
fn a_receipt_under_a_signature_only_the_connection_vouched_for_is_verified_by_its_own_bytes() {
    with_verification_cache(|| {
        // A federation finalizes a receipt; its verdict is memoized under the sender and the
        // signature of the message that carried it (the message's signature was verified).
        let mut first = Net::new(3, 2);
        first.commit(2);
        let receipt_message = first.published[0]
            .iter()
            .find(|m| matches!(m.content, Content::Receipt(_)))
            .cloned()
            .expect("the owner published its receipt");
        // The owner sends other content under that same signature on its own connection to a
        // node that never saw the original: two witnesses' signatures swapped.
        let mut forged = receipt_message.clone();
        let Content::Receipt(content) = &mut forged.content else { unreachable!() };
        let mut receipt = (*content.receipt).clone();
        let witnesses: Vec<usize> = receipt
            .signatures
            .iter()
            .enumerate()
            .filter(|(_, s)| s.role == remembrancer_core::receipt::Role::Witness)
            .map(|(i, _)| i)
            .collect();
        assert!(!witnesses.is_empty(), "the receipt has a witness");
        receipt.signatures[witnesses[0]].sig = receipt.signatures[0].sig.clone();
        content.receipt = std::sync::Arc::new(receipt);
        let mut second = Net::new(3, 2);
        second.now_ms = first.now_ms;
        second.input(1, Input::FromSender(forged));
        assert_eq!(second.final_size(1), None, "a forged receipt is not final");
        assert_eq!(second.rejections(1), vec![Rejection::BadReceipt]);
        assert!(!second.events[1].iter().any(|e| matches!(e, Event::Finalized { .. })));
        // The genuine message on the same path is verified by its bytes, and counts.
        let mut third = Net::new(3, 2);
        third.now_ms = first.now_ms;
        third.input(1, Input::FromSender(receipt_message));
        assert_eq!(third.final_size(1), Some(2));
    });
}

/// The message of `kind` among `outputs` that the engine published, if any.
fn published_of(outputs: &[Output], kind: MessageType) -> Option<PeerMessage> {
    outputs.iter().find_map(|o| match o {
        Output::Publish(m) if m.message_type() == kind => Some(m.clone()),
        _ => None,
    })
}

#[test]
fn anchors_countersigns_and_receipts_go_unsealed_and_only_their_senders_own_connection_vouches_for_them() {
    let mut net = Net::new(4, 3);
    let outputs =
        net.outputs(0, Input::Commit { namespace: NAMESPACE.to_string(), records: vec![b"a".to_vec()] });
    let anchor = published_of(&outputs, MessageType::Anchor).expect("the commit publishes its anchor");
    assert!(!anchor.is_sealed(), "an anchor is published without a message signature");
    // On the wire it stays unsealed, and no key verifies it.
    let decoded = PeerMessage::decode(&anchor.encode()).expect("decodes");
    assert!(!decoded.is_sealed());
    assert!(decoded.verify_signature(&identity(0).verifying_key()).is_err());

    // Relayed (gossip, or another member's connection), an unsealed message proves nothing.
    net.input(1, Input::Message(decoded.clone()));
    assert_eq!(net.rejections(1), vec![Rejection::BadSignature]);
    assert!(net.queue.iter().all(|(_, m)| m.sender != identity(1).did()), "n1 does not countersign it");
    // On the owner's own connection the transport proves the sender: countersigned, and the
    // countersign is published unsealed in turn.
    let answer = net.outputs(2, Input::FromSender(decoded.clone()));
    assert!(!answer.iter().any(|o| matches!(o, Output::Event(Event::Rejected { .. }))));
    let countersign = published_of(&answer, MessageType::Countersign).expect("n2 countersigns");
    assert!(!countersign.is_sealed());
    // Sealed by its host, the same anchor proves its sender anywhere.
    let mut sealed = decoded;
    net.engines[0].seal(&mut sealed);
    assert!(sealed.is_sealed());
    sealed.verify_signature(&identity(0).verifying_key()).expect("the owner's signature");
    // Sealing as another node changes nothing.
    let mut foreign = anchor.clone();
    net.engines[3].seal(&mut foreign);
    assert!(!foreign.is_sealed());
    net.input(3, Input::Message(sealed));
    assert!(net.rejections(3).is_empty());
    let relayed: Vec<PeerMessage> = net
        .queue
        .drain(..)
        .filter(|(to, m)| *to == 0 && matches!(m.content, Content::Countersign(_)))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(relayed.len(), 1, "n3 countersigns (sealed by the harness, as gossip)");

    // The owner takes n2's unsealed countersign from n2's connection and n3's by gossip: with
    // its own signature that is the quorum of 3, and the receipt is published unsealed.
    let mut published = net.outputs(0, Input::FromSender(countersign));
    published.extend(net.outputs(0, Input::Message(relayed[0].clone())));
    assert!(!published.iter().any(|o| matches!(o, Output::Event(Event::Rejected { .. }))));
    let receipt = published_of(&published, MessageType::Receipt).expect("a receipt");
    assert!(!receipt.is_sealed());
    assert_eq!(net.final_size(0), Some(1));
}

#[test]
fn a_witness_recognises_its_earlier_countersignatures_and_catches_a_second_root_for_their_sizes() {
    // Counted by a verifier without a memo, lent to this thread for the test.
    counting(|| {
        let mut net = Net::new(3, 2);
        net.commit(2);
        net.commit(2);
        assert_eq!(net.final_size(1), Some(4));
        let countersigned_at = |net: &Net, size: u64| -> CountersignContent {
            net.published[1]
                .iter()
                .find_map(|m| match &m.content {
                    Content::Countersign(c) if c.checkpoint.contains(&format!("\n{size}\n")) => {
                        Some(c.clone())
                    }
                    _ => None,
                })
                .expect("n1 countersigned that size")
        };
        // n2's countersign of the anchor at 2, after n1 countersigned the one at 4: the note is
        // one n1 countersigned itself, so nothing in it needs checking again.
        let mut earlier = countersigned_at(&net, 2);
        earlier.timestamp += 1;
        let now = net.now_ms + 1;
        let carried = PeerMessage::unsealed(identity(2).did(), Content::Countersign(earlier), now);
        let before = remembrancer_core::signature::operations();
        let outputs = net.outputs(1, Input::FromSender(carried));
        assert_eq!(remembrancer_core::signature::operations().since(before).verifications, 0);
        assert!(outputs.is_empty(), "{outputs:?}");

        // The owner signs a second root for size 2, which n1 countersigned before 4. Shown to n1
        // in an anchor it is not countersigned (n1 is past it), and it is evidence.
        let witnessed = Note::parse(countersigned_at(&net, 2).checkpoint.as_bytes()).expect("note");
        let mut forked_root = Checkpoint::parse_body(&witnessed.text).expect("checkpoint").root;
        forked_root[0] ^= 0xff;
        let fork = anchor_message(&identity(0), &checkpoint(2, forked_root, now), 0, Vec::new(), now);
        let Content::Anchor(forked) = fork.content.clone() else { unreachable!("built as an anchor") };
        let outputs = net.outputs(1, Input::Message(fork));
        assert!(published_of(&outputs, MessageType::Countersign).is_none(), "{outputs:?}");
        let evidence = net.engines[1].evidence();
        assert_eq!(evidence.len(), 1);
        assert_eq!((evidence[0].signer.as_str(), evidence[0].size), ("did:vm:node:n0", 2));
        assert!(evidence[0].first == witnessed.to_text() || evidence[0].second == witnessed.to_text());

        // The same fork carried by another witness's countersign reaches n2 as evidence too.
        let relayed = CountersignContent {
            checkpoint: forked.checkpoint,
            timestamp: 1,
            signature: serde_bytes::ByteBuf::from(vec![0u8; 64]),
        };
        let carried = PeerMessage::unsealed(identity(1).did(), Content::Countersign(relayed), now);
        net.outputs(2, Input::FromSender(carried));
        let evidence = net.engines[2].evidence();
        assert_eq!(evidence.len(), 1, "n2 countersigned size 2 before 4 too");
        assert_eq!(evidence[0].size, 2);
    });
}

#[test]
fn a_commit_is_answered_committed_with_its_indices_or_refused_with_a_typed_reason() {
    let mut net = Net::new(3, 2);
    let commit =
        |namespace: &str, records: Vec<Vec<u8>>| Input::Commit { namespace: namespace.to_string(), records };
    let outputs = net.outputs(0, commit(NAMESPACE, vec![b"a".to_vec(), b"b".to_vec()]));
    let committed: Vec<&Event> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(event @ Event::Committed { .. }) => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(
        committed,
        vec![&Event::Committed { namespace: NAMESPACE.to_string(), first_index: 0, size: 2, anchored: true }]
    );
    let now = net.now_ms;
    let refused = |net: &mut Net, input| net.engines[0].handle(input, now).expect_err("refused");
    let empty = refused(&mut net, commit(NAMESPACE, Vec::new()));
    assert!(matches!(empty, EngineError::Commit(CommitRefusal::Empty)), "{empty}");
    let bad = refused(&mut net, commit("Not A Namespace", vec![b"x".to_vec()]));
    assert!(matches!(bad, EngineError::Commit(CommitRefusal::BadNamespace { .. })), "{bad}");
    // n1 owns no namespace; n0 lists dao:alpha, so n1 may not commit to it.
    let other =
        net.engines[1].handle(commit(NAMESPACE, vec![b"x".to_vec()]), now).expect_err("not the owner");
    assert!(
        matches!(&other, EngineError::Commit(CommitRefusal::NotOwner { namespace, version: 1 }) if namespace == NAMESPACE),
        "{other}"
    );
    assert_eq!(net.engines[0].tree(NAMESPACE).map(|t| t.size()), Some(2), "nothing refused was appended");
}
