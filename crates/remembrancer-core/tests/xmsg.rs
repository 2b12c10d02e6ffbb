//! Cross-namespace messages as a target checks them: a message appended to its source's tree
//! and proven under a cosigned checkpoint is accepted; every forgery the verifier must refuse
//! is refused by the check that names it (the proof's hashes, index, size, positions and
//! siblings; the zero root and the empty tree; an unknown origin key; cosignatures short of
//! the target's quorum; a duplicated cosigner); a forked checkpoint and two messages at one
//! sequence are evidence; replays, a wrong target, oversized and non-canonical payloads and
//! reserved operations are refused before any proof work.

use base64::Engine as _;
use remembrancer_core::bundle::ProofBundle;
use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::{InclusionProofJson, MemoryNodeStore, MemoryTree, Position};
use remembrancer_core::receipt::{countersign, sign_anchor, FederationReceipt};
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument,
};
use remembrancer_core::xmsg::{
    canonical_json, check_delivery, Action, Allow, Conflict, Context, Envelope, Lane, Refusal, TargetPolicy,
    Verdict, XRecord, PAYLOAD_BYTES_MAX,
};
use remembrancer_core::HashAlgorithm;

const SOURCE: &str = "dao:vaultmesh";
const TARGET: &str = "fin:clearing";
const NOW: u64 = 1_796_600_000;

struct Federation {
    nodes: Vec<NodeIdentity>,
    registry: Registry,
}

/// Five members, quorum 3; node 0 owns the source, node 1 the target.
fn federation() -> Federation {
    let nodes: Vec<NodeIdentity> = (0..5)
        .map(|i| NodeIdentity::from_seed(&format!("did:vm:node:n{i}"), [i as u8 + 1; 32]).expect("identity"))
        .collect();
    let peers = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| PeerEntry {
            did: node.did().to_string(),
            endpoint: None,
            pubkey: node.public_key_multibase(),
            status: None,
            namespaces: match i {
                0 => vec![SOURCE.to_string()],
                1 => vec![TARGET.to_string()],
                _ => Vec::new(),
            },
        })
        .collect();
    let document = RegistryDocument {
        federation: FederationSection {
            name: "vaultmesh-primary".to_string(),
            version: 1,
            quorum: 3,
            peers,
            anchor_propagation: AnchorPropagation::default(),
        },
    };
    Federation { nodes, registry: Registry::from_document(&document).expect("registry") }
}

fn envelope(sequence: u64, operation: &str, parameters: serde_json::Value) -> Envelope {
    Envelope {
        federation: "vaultmesh-primary".to_string(),
        source: SOURCE.to_string(),
        target: TARGET.to_string(),
        sequence,
        deadline: NOW + 600,
        action: Action::Notify,
        operation: operation.to_string(),
        parameters: canonical_json(&parameters),
        reply_to: None,
    }
}

fn policy() -> TargetPolicy {
    TargetPolicy {
        namespace: TARGET.to_string(),
        allow: vec![Allow {
            source: SOURCE.to_string(),
            operations: vec!["status.*".to_string(), "tree.size".to_string()],
        }],
        quorum: 0,
    }
}

/// The source's tree with `records` and the message's record at index 3; its proof bundle
/// under a checkpoint signed by node 0 and cosigned by `witnesses`.
fn delivery(federation: &Federation, message: &[u8], witnesses: &[usize]) -> ProofBundle {
    let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
    for i in 0..3u32 {
        tree.append(format!("record {i}").as_bytes()).expect("append");
    }
    tree.append(message).expect("append");
    for i in 4..7u32 {
        tree.append(format!("record {i}").as_bytes()).expect("append");
    }
    let checkpoint = Checkpoint {
        federation_id: federation.registry.name.clone(),
        namespace: SOURCE.to_string(),
        size: tree.size(),
        root: tree.root(),
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, NOW - 60),
    };
    let mut signatures = vec![sign_anchor(&federation.nodes[0], &checkpoint)];
    for &w in witnesses {
        signatures.push(countersign(&federation.nodes[w], &checkpoint, NOW - 59));
    }
    let receipt = FederationReceipt::assemble(&checkpoint, signatures, &federation.registry);
    let note = receipt.to_note(&federation.registry).expect("note").to_text();
    let proof = InclusionProofJson::new(
        HashAlgorithm::Sha256,
        3,
        tree.size(),
        tree.leaf_hash(3).expect("leaf"),
        &tree.inclusion_proof(3, tree.size()).expect("proof"),
        tree.root(),
    );
    ProofBundle::new(message, proof, note)
}

fn verdict(federation: &Federation, record: &[u8], bundle: &ProofBundle, lane: &Lane) -> Verdict {
    let policy = policy();
    let context = Context {
        registry: &federation.registry,
        policy: &policy,
        lane,
        known_root: &|_| None,
        now: NOW,
        checkpoints: None,
    };
    check_delivery(record, bundle, &context)
}

fn accepted(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Accept(a) if !a.expired)
}

#[test]
fn a_proven_message_is_accepted_and_its_spec_json_validates() {
    let federation = federation();
    let message = envelope(1, "status.update", serde_json::json!({"status": "completed"}));
    let record = message.record();
    let bundle = delivery(&federation, &record, &[2, 3]);
    let verdict = verdict(&federation, &record, &bundle, &Lane::default());
    let Verdict::Accept(accepted) = &verdict else { panic!("{verdict:?}") };
    assert_eq!(accepted.envelope, message);
    assert_eq!(accepted.id, message.id(HashAlgorithm::Sha256));
    assert_eq!(accepted.id, bundle.proof.leaf, "the id is the record's leaf hash");
    assert_eq!(XRecord::decode(&record), Ok(XRecord::Message(message.clone())));
    // The spec's JSON shape validates against the schema in proto/.
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../proto/namespace.message@1.0.0.json")).expect("schema");
    let json = message.to_spec_json(&bundle.proof);
    let validator = jsonschema::validator_for(&schema).expect("a schema");
    assert!(validator.is_valid(&json), "{json}");
    assert_eq!(json["payload"]["parameters"]["status"], "completed");
}

#[test]
fn every_forged_proof_is_refused() {
    let federation = federation();
    let record = envelope(1, "status.update", serde_json::json!({"status": "completed"})).record();
    let good = delivery(&federation, &record, &[2, 3]);
    let lane = Lane::default();
    assert!(accepted(&verdict(&federation, &record, &good, &lane)));
    let refused = |bundle: &ProofBundle| match verdict(&federation, &record, bundle, &lane) {
        Verdict::Refused(refusal) => refusal,
        other => panic!("accepted a forgery: {other:?}"),
    };
    // A flipped bit in any proof hash.
    for step in 0..good.proof.path.len() {
        let mut forged = good.clone();
        forged.proof.path[step].hash.value[7] ^= 1;
        assert!(matches!(refused(&forged), Refusal::Proof(_)), "path hash {step}");
    }
    let mut forged = good.clone();
    forged.proof.root.value[0] ^= 1;
    assert!(matches!(refused(&forged), Refusal::Proof(_)), "root");
    // Wrong index, wrong size.
    for (index, size) in [(2, good.proof.tree_size), (4, good.proof.tree_size), (3, 6), (3, 8)] {
        let mut forged = good.clone();
        forged.proof.leaf_index = index;
        forged.proof.tree_size = size;
        assert!(matches!(refused(&forged), Refusal::Proof(_)), "index {index} size {size}");
    }
    // Extra, missing, reordered hashes.
    let mut forged = good.clone();
    forged.proof.path.push(forged.proof.path[0].clone());
    assert!(matches!(refused(&forged), Refusal::Proof(_)), "an extra hash");
    let mut forged = good.clone();
    forged.proof.path.pop();
    assert!(matches!(refused(&forged), Refusal::Proof(_)), "a missing hash");
    let mut forged = good.clone();
    forged.proof.path.swap(0, 1);
    assert!(matches!(refused(&forged), Refusal::Proof(_)), "reordered hashes");
    // Flipped positions (the sender's; the verifier computes its own).
    for step in 0..good.proof.path.len() {
        let mut forged = good.clone();
        let position = &mut forged.proof.path[step].position;
        *position = if *position == Position::Left { Position::Right } else { Position::Left };
        assert!(matches!(refused(&forged), Refusal::Proof(_)), "position {step}");
    }
    // A proof for a sibling: the neighbour's leaf and path.
    let sibling = delivery(&federation, b"record 2", &[2, 3]);
    let mut forged = good.clone();
    forged.proof = sibling.proof.clone();
    assert!(matches!(refused(&forged), Refusal::Proof(_)), "a sibling's proof");
    // The zero root, the empty tree.
    let mut forged = good.clone();
    forged.proof.root.value = [0; 32];
    forged.proof.path.clear();
    assert!(matches!(refused(&forged), Refusal::Proof(_)), "the zero root");
    let mut forged = good.clone();
    forged.proof.tree_size = 0;
    forged.proof.leaf_index = 0;
    forged.proof.path.clear();
    assert!(matches!(refused(&forged), Refusal::Proof(_)), "the empty tree");
    // Another record in the bundle than the one delivered.
    let mut forged = good.clone();
    forged.record = base64::engine::general_purpose::STANDARD.encode(b"record 4");
    assert_eq!(refused(&forged), Refusal::OtherRecord);
    // An unknown origin key: the checkpoint signed by a key outside the registry.
    let stranger = NodeIdentity::from_seed("did:vm:node:n0", [99; 32]).expect("identity");
    let mut impostor = Federation { nodes: federation.nodes.clone(), registry: federation.registry.clone() };
    impostor.nodes[0] = stranger;
    let forged = delivery(&impostor, &record, &[2, 3]);
    assert!(matches!(refused(&forged), Refusal::Proof(_)), "an unknown origin key");
    // Cosignatures short of the registry's quorum; a duplicated cosigner.
    assert!(matches!(refused(&delivery(&federation, &record, &[2])), Refusal::Proof(_)), "short of quorum");
    assert!(
        matches!(refused(&delivery(&federation, &record, &[2, 2])), Refusal::Proof(_)),
        "a duplicated cosigner"
    );
    // Short of the TARGET's quorum (4 of 5), though the registry's 3 is met.
    let mut strict = policy();
    strict.quorum = 4;
    let context = Context {
        registry: &federation.registry,
        policy: &strict,
        lane: &lane,
        known_root: &|_| None,
        now: NOW,
        checkpoints: None,
    };
    let verdict = check_delivery(&record, &good, &context);
    assert!(
        matches!(verdict, Verdict::Refused(Refusal::Quorum { found: 3, required: 4, .. })),
        "{verdict:?}"
    );
    let four = delivery(&federation, &record, &[2, 3, 4]);
    assert!(matches!(check_delivery(&record, &four, &context), Verdict::Accept(_)));
}

#[test]
fn a_forked_checkpoint_and_two_messages_at_one_sequence_are_evidence() {
    let federation = federation();
    let record = envelope(1, "status.update", serde_json::json!({"status": "completed"})).record();
    let bundle = delivery(&federation, &record, &[2, 3]);
    let policy = policy();
    let lane = Lane::default();
    let other_root = |_: u64| Some([5u8; 32]);
    let context = Context {
        registry: &federation.registry,
        policy: &policy,
        lane: &lane,
        known_root: &other_root,
        now: NOW,
        checkpoints: None,
    };
    assert!(matches!(
        check_delivery(&record, &bundle, &context),
        Verdict::Conflict(Conflict::Fork { size: 7, .. })
    ));
    // Recorded at sequence 1: the same message again is answered from what was recorded, with
    // no proof work (a broken bundle does not matter); another message at 1 is evidence once
    // proven, and nothing while unproven.
    let mut lane = Lane::default();
    let id =
        envelope(1, "status.update", serde_json::json!({"status": "completed"})).id(HashAlgorithm::Sha256);
    lane.record(1, id.to_string());
    let mut broken = bundle.clone();
    broken.checkpoint.clear();
    assert_eq!(verdict(&federation, &record, &broken, &lane), Verdict::Recorded { id: id.to_string() });
    let second = envelope(1, "status.update", serde_json::json!({"status": "failed"})).record();
    let proven = delivery(&federation, &second, &[2, 3]);
    assert!(matches!(
        verdict(&federation, &second, &proven, &lane),
        Verdict::Conflict(Conflict::Sequence { sequence: 1, .. })
    ));
    let mut unproven = proven.clone();
    unproven.proof.path[0].hash.value[0] ^= 1;
    assert!(matches!(verdict(&federation, &second, &unproven, &lane), Verdict::Refused(Refusal::Proof(_))));
    // A frozen lane takes nothing.
    lane.frozen = Some("two messages at sequence 1".to_string());
    let third = envelope(2, "status.update", serde_json::json!({})).record();
    assert!(matches!(
        verdict(&federation, &third, &delivery(&federation, &third, &[2, 3]), &lane),
        Verdict::Refused(Refusal::Frozen(_))
    ));
}

#[test]
fn replays_wrong_targets_bad_payloads_and_reserved_operations_are_refused_before_proof_work() {
    let federation = federation();
    // A bundle whose proof would fail: these refusals come before the proof is read.
    let unproven = |record: &[u8]| {
        let mut bundle = delivery(&federation, record, &[2, 3]);
        bundle.checkpoint.clear();
        bundle
    };
    let refusal = |message: &Envelope, lane: &Lane| match verdict(
        &federation,
        &message.record(),
        &unproven(&message.record()),
        lane,
    ) {
        Verdict::Refused(refusal) => refusal,
        other => panic!("{other:?}"),
    };
    // Below the lane's floor: a replay.
    let mut lane = Lane::default();
    for sequence in 1..=5 {
        lane.record(sequence, format!("id {sequence}"));
    }
    assert_eq!(lane.floor, 6, "the floor rises past every sequence recorded without a gap");
    lane.recorded.remove(&2);
    let replay = envelope(2, "status.update", serde_json::json!({}));
    assert_eq!(refusal(&replay, &lane), Refusal::Replay { sequence: 2, floor: 6 });
    let fresh = Lane::default();
    // A wrong target, a wrong federation.
    let mut wrong = envelope(1, "status.update", serde_json::json!({}));
    wrong.target = "fin:other".to_string();
    assert!(matches!(refusal(&wrong, &fresh), Refusal::WrongTarget { .. }));
    let mut wrong = envelope(1, "status.update", serde_json::json!({}));
    wrong.federation = "another".to_string();
    assert!(matches!(refusal(&wrong, &fresh), Refusal::WrongFederation { .. }));
    // Reserved operations, even where the policy would allow everything.
    for operation in ["sys.shutdown", "federation.propose", "policy.set"] {
        assert!(matches!(
            refusal(&envelope(1, operation, serde_json::json!({})), &fresh),
            Refusal::Reserved(_)
        ));
    }
    // An operation the target's policy does not allow.
    assert!(matches!(
        refusal(&envelope(1, "record.append", serde_json::json!({})), &fresh),
        Refusal::NotAllowed { .. }
    ));
    // A deadline more than 24 h ahead.
    let mut far = envelope(1, "status.update", serde_json::json!({}));
    far.deadline = NOW + 25 * 3600;
    assert!(matches!(refusal(&far, &fresh), Refusal::DeadlineTooFar { .. }));
    // Oversized and non-canonical payloads.
    let big = envelope(1, "status.update", serde_json::json!({"blob": "x".repeat(PAYLOAD_BYTES_MAX)}));
    assert!(matches!(refusal(&big, &fresh), Refusal::Record(_)));
    let mut spaced = envelope(1, "status.update", serde_json::json!({}));
    spaced.parameters = "{\"b\": 1, \"a\": 2}".to_string();
    assert!(matches!(refusal(&spaced, &fresh), Refusal::Record(_)));
    let mut unsorted = envelope(1, "status.update", serde_json::json!({}));
    unsorted.parameters = "{\"b\":1,\"a\":2}".to_string();
    assert!(matches!(refusal(&unsorted, &fresh), Refusal::Record(_)));
    // Bytes that are not a canonical record: no tag, trailing bytes, garbage.
    let good = envelope(1, "status.update", serde_json::json!({})).record();
    let context_lane = Lane::default();
    for bad in [good[RECORD_TAG_LEN..].to_vec(), [good.clone(), vec![0]].concat(), b"garbage".to_vec()] {
        assert!(matches!(
            verdict(&federation, &bad, &unproven(&bad), &context_lane),
            Verdict::Refused(Refusal::Record(_))
        ));
    }
    // Past its deadline, a proven message is accepted as expired (the target records a TIMEOUT).
    let mut late = envelope(1, "status.update", serde_json::json!({}));
    late.deadline = NOW - 1;
    let record = late.record();
    let verdict = verdict(&federation, &record, &delivery(&federation, &record, &[2, 3]), &fresh);
    assert!(matches!(verdict, Verdict::Accept(a) if a.expired));
}

const RECORD_TAG_LEN: usize = remembrancer_core::xmsg::RECORD_TAG.len();

/// The target's checkpoint memo spares a checkpoint's signatures, not a delivery's record or
/// path, and remembers only a checkpoint whose every check held.
#[test]
fn a_remembered_checkpoint_still_checks_each_record_and_path() {
    use remembrancer_core::xmsg::CheckpointMemo;
    let federation = federation();
    let policy = policy();
    let lane = Lane::default();
    let memo = std::cell::RefCell::new(CheckpointMemo::default());
    let context = Context {
        registry: &federation.registry,
        policy: &policy,
        lane: &lane,
        known_root: &|_| None,
        now: NOW,
        checkpoints: Some(&memo),
    };
    let record = envelope(1, "status.update", serde_json::json!({"status": "completed"})).record();
    // Short of quorum: refused, and not remembered.
    let short = delivery(&federation, &record, &[2]);
    assert!(matches!(check_delivery(&record, &short, &context), Verdict::Refused(Refusal::Proof(_))));
    let good = delivery(&federation, &record, &[2, 3]);
    assert!(matches!(check_delivery(&record, &good, &context), Verdict::Accept(_)));
    assert!(matches!(check_delivery(&record, &good, &context), Verdict::Accept(_)), "remembered");
    let mut forged = good.clone();
    forged.proof.path[0].hash.value[3] ^= 1;
    assert!(matches!(check_delivery(&record, &forged, &context), Verdict::Refused(Refusal::Proof(_))));
    let other = envelope(2, "status.update", serde_json::json!({})).record();
    let mut swapped = good.clone();
    swapped.record = base64::engine::general_purpose::STANDARD.encode(&other);
    assert!(matches!(check_delivery(&other, &swapped, &context), Verdict::Refused(Refusal::Proof(_))));
    assert!(matches!(check_delivery(&record, &short, &context), Verdict::Refused(Refusal::Proof(_))));
}

/// Lane evidence holds only with two different messages of one lane and sequence, each proven
/// in its source's tree.
#[test]
fn lane_evidence_needs_two_proven_messages_at_one_sequence() {
    use remembrancer_core::xmsg::check_lane_evidence;
    let federation = federation();
    let first = envelope(1, "status.update", serde_json::json!({"status": "completed"})).record();
    let second = envelope(1, "status.update", serde_json::json!({"status": "reversed"})).record();
    let third = envelope(2, "status.update", serde_json::json!({"status": "reversed"})).record();
    let (a, b, c) = (
        delivery(&federation, &first, &[2, 3]),
        delivery(&federation, &second, &[2, 3]),
        delivery(&federation, &third, &[2, 3]),
    );
    let proven = check_lane_evidence((&first, &a), (&second, &b), &federation.registry);
    assert_eq!(proven, Ok((SOURCE.to_string(), TARGET.to_string(), 1)));
    assert!(
        check_lane_evidence((&first, &a), (&first, &a), &federation.registry).is_err(),
        "one message twice"
    );
    assert!(check_lane_evidence((&first, &a), (&third, &c), &federation.registry).is_err(), "two sequences");
    let mut unproven = b.clone();
    unproven.proof.path[0].hash.value[0] ^= 1;
    assert!(
        check_lane_evidence((&first, &a), (&second, &unproven), &federation.registry).is_err(),
        "unproven"
    );
    let short = delivery(&federation, &second, &[2]);
    assert!(
        check_lane_evidence((&first, &a), (&second, &short), &federation.registry).is_err(),
        "short of quorum"
    );
    assert!(
        check_lane_evidence((&first, &a), (&second, &a), &federation.registry).is_err(),
        "another record's proof"
    );
}

/// A lane with a gap (a sequence its source took but never recorded: it stopped between the
/// two) does not wedge: later messages are taken; the message at the gap, should it come after
/// its deadline, is taken as expired (the target records a TIMEOUT) and the floor passes both.
#[test]
fn a_lane_with_a_gap_and_an_expiry_advances() {
    let federation = federation();
    let mut lane = Lane::default();
    for sequence in [1, 2] {
        lane.record(sequence, format!("id {sequence}"));
    }
    assert_eq!(lane.floor, 3);
    let fourth = envelope(4, "status.update", serde_json::json!({}));
    let record = fourth.record();
    let Verdict::Accept(accepted) =
        verdict(&federation, &record, &delivery(&federation, &record, &[2, 3]), &lane)
    else {
        panic!("the message after the gap is taken");
    };
    assert!(!accepted.expired);
    lane.record(4, accepted.id.to_string());
    assert_eq!(lane.floor, 3, "the gap holds the floor, not the lane");
    let mut third = envelope(3, "status.update", serde_json::json!({}));
    third.deadline = NOW - 1;
    let record = third.record();
    let Verdict::Accept(late) =
        verdict(&federation, &record, &delivery(&federation, &record, &[2, 3]), &lane)
    else {
        panic!("the message at the gap is taken, late");
    };
    assert!(late.expired, "past its deadline: a TIMEOUT, not run");
    lane.record(3, late.id.to_string());
    assert_eq!(lane.floor, 5, "the floor passes the gap and the message after it");
    // Either again is answered from what was recorded.
    assert!(matches!(
        verdict(&federation, &record, &delivery(&federation, &record, &[2, 3]), &lane),
        Verdict::Recorded { .. }
    ));
}
