//! The wire formats in `proto/` are the contract: the code's output validates against them,
//! and the spec's two JSON Schemas are kept there verbatim.

use std::collections::BTreeMap;
use std::path::PathBuf;

use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::{InclusionProofJson, MemoryNodeStore, MemoryTree};
use remembrancer_core::message::{
    AnchorContent, Content, CountersignContent, EvidenceContent, HeartbeatContent, PeerMessage,
    ReceiptContent, RequestContent, RequestKind,
};
use remembrancer_core::receipt::{countersign, sign_anchor, FederationReceipt};
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument, RegistryUpdate,
};
use remembrancer_core::HashAlgorithm;
use serde_json::{json, Value};

fn proto(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"))
}

fn schema(name: &str) -> jsonschema::Validator {
    let value: Value = serde_json::from_str(&proto(name)).expect("schema is JSON");
    jsonschema::validator_for(&value).expect("schema compiles")
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

struct Fixture {
    nodes: Vec<NodeIdentity>,
    registry: Registry,
    tree: MemoryTree<MemoryNodeStore>,
    checkpoint: Checkpoint,
    receipt: FederationReceipt,
}

fn fixture() -> Fixture {
    let nodes: Vec<NodeIdentity> = ["east1", "west1", "central1"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            NodeIdentity::from_seed(&format!("did:vm:node:{name}"), [i as u8 + 40; 32]).expect("id")
        })
        .collect();
    let document = RegistryDocument {
        federation: FederationSection {
            name: "vaultmesh-primary".to_string(),
            version: 1,
            quorum: 2,
            peers: nodes
                .iter()
                .map(|n| PeerEntry {
                    did: n.did().to_string(),
                    endpoint: Some(format!(
                        "https://remembrancer-{}.vaultmesh.io",
                        n.did().rsplit(':').next().unwrap_or("x")
                    )),
                    pubkey: n.public_key_multibase(),
                    status: None,
                    namespaces: Vec::new(),
                })
                .collect(),
            anchor_propagation: AnchorPropagation::default(),
        },
    };
    let registry = Registry::from_document(&document).expect("registry");
    let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
    for i in 0..25u32 {
        tree.append(&i.to_be_bytes()).expect("append");
    }
    let checkpoint = Checkpoint {
        federation_id: "vaultmesh-primary".to_string(),
        namespace: "dao:vaultmesh".to_string(),
        size: tree.size(),
        root: tree.root(),
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, 1_698_042_601),
    };
    let signatures = vec![
        sign_anchor(&nodes[0], &checkpoint),
        countersign(&nodes[1], &checkpoint, 1_698_042_615),
        countersign(&nodes[2], &checkpoint, 1_698_042_619),
    ];
    let receipt = FederationReceipt::assemble(&checkpoint, signatures, &registry);
    Fixture { nodes, registry, tree, checkpoint, receipt }
}

#[test]
fn the_spec_schemas_are_kept_verbatim() {
    let spec_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/seed/phase-v-anchor-federation.md");
    let Ok(spec) = std::fs::read_to_string(&spec_path) else {
        panic!("the spec is expected at {spec_path:?} (../shared beside the clone)");
    };
    for name in ["federation.registry.set@1.0.0.json", "namespace.message@1.0.0.json"] {
        assert!(spec.contains(&proto(name)), "proto/{name} differs from the spec's schema");
    }
}

#[test]
fn receipts_validate_against_the_receipt_schema() {
    let fixture = fixture();
    let validator = schema("federation.receipt@1.0.0.json");
    let receipt: Value = serde_json::from_str(&fixture.receipt.to_json()).expect("json");
    assert_eq!(errors(&validator, &receipt), Vec::<String>::new());
    let mut pending = fixture.receipt.clone();
    pending.signatures.truncate(1);
    pending.quorum_met = false;
    pending.finalized_at = None;
    let pending: Value = serde_json::to_value(&pending).expect("json");
    assert_eq!(errors(&validator, &pending), Vec::<String>::new());
    // The schema is not vacuous: broken receipts fail it.
    let mut broken = receipt.clone();
    broken["anchor"]["batch_root"] = json!("md5:00");
    assert!(!errors(&validator, &broken).is_empty());
    let mut missing = receipt;
    missing.as_object_mut().expect("object").remove("tree_size");
    assert!(!errors(&validator, &missing).is_empty());
}

#[test]
fn registry_updates_validate_against_the_spec_schema() {
    let fixture = fixture();
    let validator = schema("federation.registry.set@1.0.0.json");
    let update = RegistryUpdate::from_registry(&fixture.registry, Some("add central1".to_string()));
    let value: Value = serde_json::from_str(&update.to_json()).expect("json");
    assert_eq!(errors(&validator, &value), Vec::<String>::new());
    let mut broken = value;
    broken["registry"]["quorum"] = json!(0);
    assert!(!errors(&validator, &broken).is_empty());
}

#[test]
fn inclusion_proofs_fit_the_cross_namespace_message_schema() {
    let fixture = fixture();
    let validator = schema("namespace.message@1.0.0.json");
    let proof = InclusionProofJson::new(
        HashAlgorithm::Sha256,
        7,
        fixture.tree.size(),
        fixture.tree.leaf_hash(7).expect("leaf"),
        &fixture.tree.inclusion_proof(7, fixture.tree.size()).expect("proof"),
        fixture.tree.root(),
    );
    let message = json!({
        "source": "dao:vaultmesh",
        "target": "fin:clearing",
        "action": "notify",
        "payload": {"operation": "status.update", "parameters": {"status": "completed"}, "proof": proof},
    });
    assert_eq!(errors(&validator, &message), Vec::<String>::new());
    let mut broken = message;
    broken["payload"]["proof"]["path"][0]["position"] = json!("up");
    assert!(!errors(&validator, &broken).is_empty());
}

fn cddl_rule(rule: &str) -> String {
    // The first rule of a CDDL document is its root: prepend one naming the rule to check.
    format!("root = {rule}\n{}", proto("peer-message.cddl"))
}

fn assert_cddl(rule: &str, bytes: &[u8]) {
    if let Err(error) = cddl::validate_cbor_from_slice(&cddl_rule(rule), bytes, None) {
        panic!("{rule} does not validate: {error}");
    }
}

#[test]
fn every_peer_message_validates_against_the_cddl() {
    let fixture = fixture();
    let body = fixture.checkpoint.body();
    let anchor_note = fixture.receipt.to_note(&fixture.registry).expect("note");
    let cosignature =
        remembrancer_core::identity::parse_multibase_signature(&fixture.receipt.signatures[1].sig)
            .expect("sig");
    let mut finalized = BTreeMap::new();
    finalized.insert("dao:vaultmesh".to_string(), 25u64);
    let entries = vec![remembrancer_core::anchoring::EpochEntry {
        namespace: "dao:vaultmesh".to_string(),
        size: 25,
        root: serde_bytes::ByteBuf::from(fixture.tree.root().to_vec()),
    }];
    let epoch_anchor = remembrancer_core::message::EpochAnchorContent {
        epoch: 179_666_000,
        registry_version: 1,
        root: serde_bytes::ByteBuf::from(remembrancer_core::anchoring::epoch_root(&entries).to_vec()),
        entries,
        reference: remembrancer_core::anchoring::AnchorReference {
            target: "rfc3161".to_string(),
            tx_hash: None,
            block: None,
            timestamp: 1_698_042_615,
            block_hash: None,
            tx_index: None,
            confirmations: None,
            cost_wei: None,
            token: Some("3082".to_string()),
        },
    };
    let message_record = remembrancer_core::xmsg::Envelope {
        federation: "vaultmesh-primary".to_string(),
        source: "dao:vaultmesh".to_string(),
        target: "fin:clearing".to_string(),
        sequence: 1,
        deadline: 1_698_046_215,
        action: remembrancer_core::xmsg::Action::Notify,
        operation: "status.update".to_string(),
        parameters: "{\"status\":\"completed\"}".to_string(),
        reply_to: None,
    }
    .record();
    let contents = [
        (
            "anchor-content",
            Content::Anchor(AnchorContent {
                checkpoint: anchor_note.to_text(),
                consistency_from: 10,
                consistency_proof: fixture.tree.consistency_proof(10, 25).expect("proof"),
            }),
        ),
        (
            "countersign-content",
            Content::Countersign(CountersignContent {
                checkpoint: remembrancer_core::note::Note {
                    text: body,
                    signatures: anchor_note.signatures[..1].to_vec(),
                }
                .to_text(),
                timestamp: 1_698_042_615,
                signature: serde_bytes::ByteBuf::from(cosignature.to_vec()),
            }),
        ),
        (
            "receipt-content",
            Content::Receipt(Box::new(ReceiptContent { receipt: fixture.receipt.clone().into() })),
        ),
        ("heartbeat-content", Content::Heartbeat(HeartbeatContent { registry_version: 1, finalized })),
        (
            "request-content",
            Content::Request(RequestContent {
                kind: RequestKind::Consistency,
                namespace: "dao:vaultmesh".to_string(),
                from_size: 10,
                size: 25,
            }),
        ),
        (
            "evidence-content",
            Content::Evidence(EvidenceContent {
                first: anchor_note.to_text(),
                second: anchor_note.to_text(),
            }),
        ),
        ("epoch-anchor-content", Content::EpochAnchor(epoch_anchor.clone())),
        (
            "claim-evidence-content",
            Content::ClaimEvidence(remembrancer_core::message::ClaimEvidenceContent {
                message: serde_bytes::ByteBuf::from(
                    PeerMessage::sign(
                        &fixture.nodes[2],
                        Content::EpochAnchor(epoch_anchor),
                        1_698_042_615_000,
                    )
                    .encode(),
                ),
            }),
        ),
        (
            "x-delivery-content",
            Content::XDelivery(remembrancer_core::message::XDeliveryContent {
                record: serde_bytes::ByteBuf::from(message_record.clone()),
                bundle: "{}".to_string(),
            }),
        ),
        (
            "x-ack-content",
            Content::XAck(remembrancer_core::message::XAckContent {
                record: serde_bytes::ByteBuf::from(message_record.clone()),
                bundle: "{}".to_string(),
                receipt_index: None,
            }),
        ),
        (
            "x-ack-content",
            Content::XAck(remembrancer_core::message::XAckContent {
                record: serde_bytes::ByteBuf::from(message_record.clone()),
                bundle: String::new(),
                receipt_index: Some(7),
            }),
        ),
        (
            "x-evidence-content",
            Content::XEvidence(remembrancer_core::message::XEvidenceContent {
                first: remembrancer_core::message::XDeliveryContent {
                    record: serde_bytes::ByteBuf::from(message_record.clone()),
                    bundle: "{}".to_string(),
                },
                second: remembrancer_core::message::XDeliveryContent {
                    record: serde_bytes::ByteBuf::from(message_record),
                    bundle: "{}".to_string(),
                },
            }),
        ),
    ];
    let mut encoded = Vec::new();
    for (rule, content) in contents {
        let message = PeerMessage::sign(&fixture.nodes[1], content, 1_698_042_615_000);
        let bytes = message.encode();
        assert_cddl("peer-message", &bytes);
        assert_cddl(rule, message.content_bytes());
        // Unsealed, as on its sender's own stream to a member: an empty signature.
        let unsealed = PeerMessage::unsealed(&message.sender, message.content.clone(), message.timestamp);
        assert_cddl("peer-message", &unsealed.encode());
        encoded.push(bytes);
    }
    // The frames they travel in: one message alone, all of them together.
    let frames = remembrancer_core::message::encode_frames(vec![encoded[0].clone()]);
    assert_cddl("gossip-frame", &frames[0]);
    let frames = remembrancer_core::message::encode_frames(encoded);
    assert_eq!(frames.len(), 1);
    assert_cddl("gossip-frame", &frames[0]);
}

#[test]
fn the_cddl_rejects_a_malformed_envelope() {
    let fixture = fixture();
    let message = PeerMessage::sign(&fixture.nodes[0], Content::Heartbeat(HeartbeatContent::default()), 1);
    let mut value: ciborium::Value = ciborium::from_reader(message.encode().as_slice()).expect("cbor");
    if let ciborium::Value::Map(entries) = &mut value {
        for (key, entry) in entries.iter_mut() {
            if key.as_text() == Some("signature") {
                *entry = ciborium::Value::Bytes(vec![0u8; 63]);
            }
        }
    }
    let mut bytes = Vec::new();
    ciborium::into_writer(&value, &mut bytes).expect("encode");
    assert!(cddl::validate_cbor_from_slice(&cddl_rule("peer-message"), &bytes, None).is_err());
    // Only the envelope's signature may be empty: a countersign's cosignature is 64 bytes.
    let mut bytes = Vec::new();
    let empty = CountersignContent {
        checkpoint: "origin\n1\nroot\n".to_string(),
        timestamp: 1,
        signature: serde_bytes::ByteBuf::new(),
    };
    ciborium::into_writer(&empty, &mut bytes).expect("encode");
    assert!(cddl::validate_cbor_from_slice(&cddl_rule("countersign-content"), &bytes, None).is_err());
}

#[test]
fn the_cddl_rejects_a_short_proof_hash_and_a_wrong_type() {
    // AnchorContent holds 32-byte hashes only: the short one is written by hand.
    let text = |t: &str| ciborium::Value::Text(t.to_string());
    let content = ciborium::Value::Map(vec![
        (text("checkpoint"), text("x\n")),
        (text("consistency_from"), ciborium::Value::Integer(1.into())),
        (text("consistency_proof"), ciborium::Value::Array(vec![ciborium::Value::Bytes(vec![0u8; 31])])),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&content, &mut bytes).expect("encode");
    assert!(cddl::validate_cbor_from_slice(&cddl_rule("anchor-content"), &bytes, None).is_err());
    let heartbeat = HeartbeatContent::default();
    let mut bytes = Vec::new();
    ciborium::into_writer(&heartbeat, &mut bytes).expect("encode");
    assert!(cddl::validate_cbor_from_slice(&cddl_rule("anchor-content"), &bytes, None).is_err());
}
