//! `remembrancer demo`: the offline main job until the node exists. Three local keys form a
//! federation with quorum 2; the owner of `dao:demo` appends records, signs the checkpoint,
//! the two others countersign, and the receipt, cosigned checkpoint and a proof bundle are
//! written and verified exactly as `remembrancer verify` does.

use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use remembrancer_core::bundle::ProofBundle;
use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
use remembrancer_core::identity::{multibase_signature, parse_multibase_signature, NodeIdentity};
use remembrancer_core::merkle::{InclusionProofJson, MemoryNodeStore, MemoryTree};
use remembrancer_core::receipt::{countersign, sign_anchor, FederationReceipt};
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument,
};
use remembrancer_core::HashAlgorithm;

use crate::cli::DemoArgs;
use crate::files::{write_private, write_public};
use crate::verify::verify_bytes;

const FEDERATION: &str = "remembrancer-demo";
const NAMESPACE: &str = "dao:demo";
const NODES: [&str; 3] = ["did:vm:node:east1", "did:vm:node:west1", "did:vm:node:central1"];
/// Most records the demo appends (it keeps its tree in memory).
const DEMO_RECORDS_MAX: u64 = 50_000_000;

fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH).context("the system clock is before 1970")?.as_secs())
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=DEMO_RECORDS_MAX).contains(&args.records),
        "--records must be between 1 and {DEMO_RECORDS_MAX}"
    );
    let out = args.out.as_path();
    std::fs::create_dir_all(out.join("keys")).with_context(|| format!("cannot create {}", out.display()))?;

    // Identities: fresh keys, written 0600.
    let nodes: Vec<NodeIdentity> =
        NODES.iter().map(|did| NodeIdentity::generate(did)).collect::<Result<_, _>>()?;
    for node in &nodes {
        let name = node.did().rsplit(':').next().unwrap_or("node");
        write_private(&out.join("keys").join(format!("{name}.key")), node.to_key_file().as_bytes(), true)?;
    }

    // Registry: the spec's YAML, quorum 2 of 3, east1 owns the namespace.
    let document = RegistryDocument {
        federation: FederationSection {
            name: FEDERATION.to_string(),
            version: 1,
            quorum: 2,
            peers: nodes
                .iter()
                .enumerate()
                .map(|(i, node)| {
                    PeerEntry::for_identity(
                        node,
                        if i == 0 { vec![NAMESPACE.to_string()] } else { Vec::new() },
                    )
                })
                .collect(),
            anchor_propagation: AnchorPropagation::default(),
        },
    };
    let registry = Registry::from_document(&document)?;
    write_public(&out.join("registry.yaml"), registry.to_yaml().as_bytes())?;

    // The memory tree.
    let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
    let record = |i: u64| format!("{{\"event\":\"demo\",\"seq\":{i}}}").into_bytes();
    let progress_step = (args.records / 10).max(1_000_000);
    for i in 0..args.records {
        tree.append(&record(i))?;
        if (i + 1) % progress_step == 0 {
            eprintln!("  appended {} of {} records", i + 1, args.records);
        }
    }

    // Anchor, countersign, assemble.
    let now = unix_now()?;
    let checkpoint = Checkpoint {
        federation_id: FEDERATION.to_string(),
        namespace: NAMESPACE.to_string(),
        size: tree.size(),
        root: tree.root(),
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, now),
    };
    let signatures = vec![
        sign_anchor(&nodes[0], &checkpoint),
        countersign(&nodes[1], &checkpoint, now),
        countersign(&nodes[2], &checkpoint, now),
    ];
    let receipt = FederationReceipt::assemble(&checkpoint, signatures, &registry);
    let note = receipt.to_note(&registry)?.to_text();
    let index = tree.size() / 2;
    let proof = InclusionProofJson::new(
        HashAlgorithm::Sha256,
        index,
        tree.size(),
        tree.leaf_hash(index)?,
        &tree.inclusion_proof(index, tree.size())?,
        tree.root(),
    );
    let bundle = ProofBundle::new(&record(index), proof, note.clone()).to_json();

    let receipt_path = out.join("receipt.json");
    let note_path = out.join("checkpoint.note");
    let bundle_path = out.join("proof-bundle.json");
    write_public(&receipt_path, receipt.to_json().as_bytes())?;
    write_public(&note_path, note.as_bytes())?;
    write_public(&bundle_path, bundle.as_bytes())?;

    // Verify what was written, from the files, as an auditor would.
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let receipt_report = verify_bytes("receipt", &read(&receipt_path)?, &registry);
    let note_report = verify_bytes("checkpoint", &read(&note_path)?, &registry);
    let bundle_report = verify_bytes("proof", &read(&bundle_path)?, &registry);

    // And show that a receipt with one flipped signature bit is refused.
    let mut tampered = receipt.clone();
    let mut raw = parse_multibase_signature(&tampered.signatures[1].sig)?;
    raw[0] ^= 0x01;
    tampered.signatures[1].sig = multibase_signature(&raw);
    let tampered_path = out.join("tampered-receipt.json");
    write_public(&tampered_path, tampered.to_json().as_bytes())?;
    let tampered_report = verify_bytes("receipt", &read(&tampered_path)?, &registry);
    let tampered_rejected = !tampered_report.all_ok();

    let all_ok =
        receipt_report.all_ok() && note_report.all_ok() && bundle_report.all_ok() && tampered_rejected;
    if args.json {
        let value = serde_json::json!({
            "federation_id": FEDERATION,
            "namespace": NAMESPACE,
            "tree_size": tree.size(),
            "root": checkpoint.tagged_root().to_string(),
            "quorum": registry.quorum,
            "signers": NODES,
            "files": {
                "registry": out.join("registry.yaml"),
                "receipt": receipt_path,
                "checkpoint": note_path,
                "proof_bundle": bundle_path,
                "tampered_receipt": tampered_path,
                "keys": out.join("keys"),
            },
            "verified": {
                "receipt": receipt_report.all_ok(),
                "checkpoint": note_report.all_ok(),
                "proof_bundle": bundle_report.all_ok(),
                "tampered_receipt_rejected": tampered_rejected,
            },
            "receipt_checks": receipt_report.checks,
        });
        println!("{value}");
    } else {
        println!(
            "federation {FEDERATION}: 3 nodes with fresh keys, quorum 2, {} owned by {}",
            NAMESPACE, NODES[0]
        );
        println!("appended {} records; root {}", tree.size(), checkpoint.tagged_root());
        println!(
            "{} signed the checkpoint; {} and {} countersigned (cosignature/v1)",
            NODES[0], NODES[1], NODES[2]
        );
        println!(
            "receipt final: quorum_met={}, finalized_at={}",
            receipt.quorum_met,
            receipt.finalized_at.unwrap_or(0)
        );
        println!();
        println!("verifying {} against {}:", receipt_path.display(), out.join("registry.yaml").display());
        print!("{}", receipt_report.to_text());
        println!();
        let verdict = |ok: bool| if ok { "holds" } else { "DOES NOT HOLD" };
        println!("cosigned checkpoint {}: {}", note_path.display(), verdict(note_report.all_ok()));
        println!(
            "proof bundle {} (record {index}): {}",
            bundle_path.display(),
            verdict(bundle_report.all_ok())
        );
        let first_failure = tampered_report.checks.iter().find(|c| !c.ok);
        println!(
            "tampered copy {}: {}",
            tampered_path.display(),
            match first_failure {
                Some(check) => format!("rejected ({}: {})", check.check, check.detail),
                None => "ACCEPTED (this is a bug)".to_string(),
            }
        );
        println!();
        println!("verify them yourself:");
        println!(
            "  remembrancer verify receipt {} --registry {}",
            receipt_path.display(),
            out.join("registry.yaml").display()
        );
        println!(
            "  remembrancer verify checkpoint {} --registry {}",
            note_path.display(),
            out.join("registry.yaml").display()
        );
        println!(
            "  remembrancer verify proof {} --registry {}",
            bundle_path.display(),
            out.join("registry.yaml").display()
        );
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
