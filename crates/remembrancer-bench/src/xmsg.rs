//! `scripts/bench xmsg`: a target checking cross-namespace deliveries (`xmsg::check_delivery`:
//! the record's form, the policy, the lane, then its proof bundle) one after another, beside
//! the limits measured in the same run. With the checkpoint's verdict remembered (the target's
//! `CheckpointMemo`, as a node keeps one), a delivery costs its record's leaf hash and its path,
//! against the chained SHA-256 limit; without it, the checkpoint's signatures too (owner and
//! cosigners to quorum), against the Ed25519 verification limit.

use std::hint::black_box;

use crate::anchors::best;

use remembrancer_core::bundle::ProofBundle;
use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::{InclusionProofJson, MemoryNodeStore, MemoryTree};
use remembrancer_core::receipt::{countersign, sign_anchor, FederationReceipt};
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument,
};
use remembrancer_core::signature::Verifier;
use remembrancer_core::xmsg::{
    canonical_json, check_delivery, Action, Allow, CheckpointMemo, Context, Envelope, Lane, TargetPolicy,
    Verdict,
};
use remembrancer_core::HashAlgorithm;

/// Messages in the source's tree (each delivered once per round).
const MESSAGES: u64 = 4096;
/// The targets: half the limits or more.
const TARGET: f64 = 0.5;
const NOW: u64 = 1_796_600_000;

/// Five members, quorum 3; the source's owner is member 0.
fn federation() -> (Vec<NodeIdentity>, Registry) {
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
                0 => vec!["dao:vaultmesh".to_string()],
                1 => vec!["fin:clearing".to_string()],
                _ => Vec::new(),
            },
        })
        .collect();
    let document = RegistryDocument {
        federation: FederationSection {
            name: "bench".to_string(),
            version: 1,
            quorum: 3,
            peers,
            anchor_propagation: AnchorPropagation::default(),
        },
    };
    (nodes, Registry::from_document(&document).expect("registry"))
}

/// Runs the benchmark and prints it (JSON with `json`).
pub fn run(json: bool) {
    let (nodes, registry) = federation();
    let records: Vec<Vec<u8>> = (1..=MESSAGES)
        .map(|sequence| {
            Envelope {
                federation: "bench".to_string(),
                source: "dao:vaultmesh".to_string(),
                target: "fin:clearing".to_string(),
                sequence,
                deadline: NOW + 600,
                action: Action::Notify,
                operation: "status.update".to_string(),
                parameters: canonical_json(&serde_json::json!({ "status": "completed", "n": sequence })),
                reply_to: None,
            }
            .record()
        })
        .collect();
    let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
    for record in &records {
        tree.append(record).expect("append");
    }
    let size = tree.size();
    let checkpoint = Checkpoint {
        federation_id: "bench".to_string(),
        namespace: "dao:vaultmesh".to_string(),
        size,
        root: tree.root(),
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, NOW - 60),
    };
    let signatures = vec![
        sign_anchor(&nodes[0], &checkpoint),
        countersign(&nodes[2], &checkpoint, NOW - 59),
        countersign(&nodes[3], &checkpoint, NOW - 59),
    ];
    let note = FederationReceipt::assemble(&checkpoint, signatures, &registry)
        .to_note(&registry)
        .expect("note")
        .to_text();
    let bundles: Vec<ProofBundle> = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let proof = InclusionProofJson::new(
                HashAlgorithm::Sha256,
                index as u64,
                size,
                tree.leaf_hash(index as u64).expect("leaf"),
                &tree.inclusion_proof(index as u64, size).expect("path"),
                tree.root(),
            );
            ProofBundle::new(record, proof, note.clone())
        })
        .collect();
    let depth = bundles.iter().map(|b| b.proof.path.len()).max().unwrap_or(0);
    let record_bytes = records[0].len() + 1;
    let policy = TargetPolicy {
        namespace: "fin:clearing".to_string(),
        allow: vec![Allow { source: "*".to_string(), operations: vec!["status.*".to_string()] }],
        quorum: 0,
    };
    let lane = Lane::default();
    let no_root = |_: u64| None;
    let memo = std::cell::RefCell::new(CheckpointMemo::default());
    let deliver_all = |remember: bool| {
        let context = Context {
            registry: &registry,
            policy: &policy,
            lane: &lane,
            known_root: &no_root,
            now: NOW,
            checkpoints: remember.then_some(&memo),
        };
        for (record, bundle) in records.iter().zip(&bundles) {
            let verdict = check_delivery(record, bundle, &context);
            assert!(matches!(verdict, Verdict::Accept(_)), "{verdict:?}");
        }
        MESSAGES
    };

    // The limits.
    let (leaf_rate, chained_rate, path_limit) = crate::anchors::path_limit(record_bytes, depth);
    let key = nodes[0].verifying_key();
    let body = checkpoint.body();
    let signature: [u8; 64] = nodes[0].sign(body.as_bytes());
    let ed25519_rate = best(|| {
        for _ in 0..2_000u64 {
            assert!(remembrancer_core::signature::verify(&key, black_box(body.as_bytes()), &signature));
        }
        2_000
    });
    let signers = 3.0;
    let signature_limit = ed25519_rate / signers;

    // Ours.
    // The node's way: its checkpoint memo (and the verifier's own, lent as a node lends it).
    let cached = Verifier::new(1 << 16).lend(|| best(|| deliver_all(true)));
    let uncached = Verifier::without_memo().lend(|| best(|| deliver_all(false)));
    let cached_fraction = cached / path_limit;
    let uncached_fraction = uncached / signature_limit;
    if json {
        let value = serde_json::json!({
            "messages": MESSAGES,
            "depth": depth,
            "record_bytes": record_bytes,
            "signatures_per_checkpoint": signers,
            "sha256_record_leaf_per_s": leaf_rate,
            "sha256_65_byte_chained_per_s": chained_rate,
            "path_limit_per_s": path_limit,
            "ed25519_verify_per_s": ed25519_rate,
            "signature_limit_per_s": signature_limit,
            "cached_deliveries_per_s": cached,
            "cached_fraction_of_path_limit": cached_fraction,
            "uncached_deliveries_per_s": uncached,
            "uncached_fraction_of_signature_limit": uncached_fraction,
            "fraction_target": TARGET,
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    println!("a target checking {MESSAGES} deliveries (records of {record_bytes} bytes, paths of {depth}, 3 signers):");
    println!("  sha256 of the record leaf    {:>10.2} M/s", leaf_rate / 1e6);
    println!("  sha256 65-byte, chained      {:>10.2} M/s", chained_rate / 1e6);
    println!("  path limit                   {:>10.1} k/s", path_limit / 1e3);
    println!(
        "  ed25519 verify               {:>10.1} k/s; 3 per checkpoint: {:.1} k/s",
        ed25519_rate / 1e3,
        signature_limit / 1e3
    );
    println!(
        "  ours, checkpoint remembered  {:>10.1} k/s = {:.0} % of the path limit (target {:.0} %)",
        cached / 1e3,
        cached_fraction * 100.0,
        TARGET * 100.0
    );
    println!(
        "  ours, nothing remembered     {:>10.1} k/s = {:.0} % of the signature limit (target {:.0} %)",
        uncached / 1e3,
        uncached_fraction * 100.0,
        TARGET * 100.0
    );
}
