//! Receipts, cosigned notes and proof bundles as an auditor checks them: everything valid
//! verifies, and each kind of tampering fails the check that names it.

use remembrancer_core::bundle::{verify_bundle, ProofBundle};
use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
use remembrancer_core::identity::{multibase_signature, parse_multibase_signature, NodeIdentity};
use remembrancer_core::merkle::{InclusionProofJson, MemoryNodeStore, MemoryTree};
use remembrancer_core::receipt::{
    countersign, sign_anchor, verify_note, verify_receipt, verify_receipts_batch, FederationReceipt, Role,
    VerificationReport,
};
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, PeerStatus, Registry, RegistryDocument,
};
use remembrancer_core::HashAlgorithm;

const NAMESPACE: &str = "dao:vaultmesh";

struct Federation {
    nodes: Vec<NodeIdentity>,
    registry: Registry,
}

fn federation(statuses: &[PeerStatus], quorum: u32) -> Federation {
    let nodes: Vec<NodeIdentity> = (0..statuses.len())
        .map(|i| NodeIdentity::from_seed(&format!("did:vm:node:n{i}"), [i as u8 + 1; 32]).expect("identity"))
        .collect();
    let peers = nodes
        .iter()
        .zip(statuses)
        .enumerate()
        .map(|(i, (node, status))| PeerEntry {
            did: node.did().to_string(),
            endpoint: Some(format!("https://n{i}.example.org")),
            pubkey: node.public_key_multibase(),
            status: Some(*status),
            namespaces: if i == 0 { vec![NAMESPACE.to_string()] } else { Vec::new() },
        })
        .collect();
    let document = RegistryDocument {
        federation: FederationSection {
            name: "vaultmesh-primary".to_string(),
            version: 1,
            quorum,
            peers,
            anchor_propagation: AnchorPropagation::default(),
        },
    };
    Federation { nodes, registry: Registry::from_document(&document).expect("registry") }
}

struct Signed {
    tree: MemoryTree<MemoryNodeStore>,
    checkpoint: Checkpoint,
    receipt: FederationReceipt,
}

/// Node 0 owns the namespace and anchors; `witnesses` countersign.
fn signed_receipt(federation: &Federation, witnesses: &[usize]) -> Signed {
    let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
    for i in 0..10u32 {
        tree.append(format!("record {i}").as_bytes()).expect("append");
    }
    let checkpoint = Checkpoint {
        federation_id: federation.registry.name.clone(),
        namespace: NAMESPACE.to_string(),
        size: tree.size(),
        root: tree.root(),
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, 1_698_042_601),
    };
    let mut signatures = vec![sign_anchor(&federation.nodes[0], &checkpoint)];
    for (offset, &w) in witnesses.iter().enumerate() {
        signatures.push(countersign(&federation.nodes[w], &checkpoint, 1_698_042_610 + offset as u64));
    }
    let receipt = FederationReceipt::assemble(&checkpoint, signatures, &federation.registry);
    Signed { tree, checkpoint, receipt }
}

fn failed_checks(report: &VerificationReport) -> Vec<String> {
    report.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.check, c.detail)).collect()
}

fn assert_fails(receipt: &FederationReceipt, registry: &Registry, check: &str) {
    let report = verify_receipt(receipt, registry);
    let failed = failed_checks(&report);
    assert!(!report.all_ok(), "expected a failure of {check}");
    assert!(failed.iter().any(|f| f.starts_with(check)), "expected {check} to fail, failed: {failed:?}");
    assert_eq!(
        verify_receipts_batch(std::slice::from_ref(receipt), registry),
        vec![false],
        "batch verdict for {check}"
    );
}

#[test]
fn a_valid_receipt_verifies_alone_in_a_batch_and_through_json() {
    let federation = federation(&[PeerStatus::Active; 5], 3);
    let signed = signed_receipt(&federation, &[1, 2]);
    assert!(signed.receipt.quorum_met);
    assert_eq!(signed.receipt.finalized_at, Some(1_698_042_611));
    let report = verify_receipt(&signed.receipt, &federation.registry);
    assert!(report.all_ok(), "{}", report.to_text());
    let parsed = FederationReceipt::from_json(signed.receipt.to_json().as_bytes()).expect("parse");
    assert_eq!(parsed, signed.receipt);
    assert_eq!(verify_receipts_batch(&[parsed.clone(), parsed], &federation.registry), vec![true, true]);
}

#[test]
fn each_kind_of_tampering_fails_its_check() {
    let federation = federation(&[PeerStatus::Active; 5], 3);
    let valid = signed_receipt(&federation, &[1, 2, 3]).receipt;

    let mut flipped = valid.clone();
    let mut raw = parse_multibase_signature(&flipped.signatures[1].sig).expect("sig");
    raw[7] ^= 0x01;
    flipped.signatures[1].sig = multibase_signature(&raw);
    assert_fails(&flipped, &federation.registry, "signature did:vm:node:n");

    let outsider = NodeIdentity::from_seed("did:vm:node:outsider", [99u8; 32]).expect("identity");
    let checkpoint = valid.checkpoint().expect("checkpoint");
    let mut foreign = valid.clone();
    foreign.signatures.push(countersign(&outsider, &checkpoint, 1_698_042_700));
    assert_fails(&foreign, &federation.registry, "signature did:vm:node:outsider (witness)");

    let mut duplicated = valid.clone();
    duplicated.signatures.push(duplicated.signatures[1].clone());
    assert_fails(&duplicated, &federation.registry, "distinct signers");
    // Past 16 signatures the check takes another path (a set instead of comparisons).
    let mut many = valid.clone();
    while many.signatures.len() <= 16 {
        many.signatures.push(valid.signatures[1].clone());
    }
    assert_fails(&many, &federation.registry, "distinct signers");

    let short = signed_receipt(&federation, &[1]).receipt;
    assert!(!short.quorum_met, "2 signers of a quorum of 3 are not final");
    assert_fails(&short, &federation.registry, "quorum");
    let mut short_claiming = short.clone();
    short_claiming.quorum_met = true;
    short_claiming.finalized_at = Some(1_698_042_700);
    assert_fails(&short_claiming, &federation.registry, "quorum");

    let mut wrong_root = valid.clone();
    wrong_root.anchor.batch_root.value[0] ^= 0x01;
    assert_fails(&wrong_root, &federation.registry, "signature did:vm:node:n0 (anchor)");

    let mut wrong_size = valid.clone();
    wrong_size.tree_size += 1;
    assert_fails(&wrong_size, &federation.registry, "signature did:vm:node:n0 (anchor)");

    let mut retargeted = valid.clone();
    retargeted.anchor.target = "eip155:1".to_string();
    assert_fails(&retargeted, &federation.registry, "signature did:vm:node:n0 (anchor)");

    let mut retimed = valid.clone();
    retimed.signatures[2].timestamp += 1;
    assert_fails(&retimed, &federation.registry, "signature did:vm:node:n");

    let mut usurped = valid.clone();
    usurped.signatures[1].role = Role::Anchor;
    assert_fails(&usurped, &federation.registry, "anchor");

    let mut early = valid.clone();
    early.finalized_at = Some(1);
    assert_fails(&early, &federation.registry, "finalized_at");

    let mut other_federation = valid;
    other_federation.federation_id = "other".to_string();
    assert_fails(&other_federation, &federation.registry, "federation");
}

#[test]
fn truncated_and_garbage_files_are_typed_errors() {
    let federation = federation(&[PeerStatus::Active; 3], 2);
    let json = signed_receipt(&federation, &[1]).receipt.to_json();
    assert!(FederationReceipt::from_json(&json.as_bytes()[..json.len() / 2]).is_err());
    assert!(FederationReceipt::from_json(b"\x00\x01garbage").is_err());
    assert!(FederationReceipt::from_json(b"{}").is_err());
    let error =
        FederationReceipt::from_json(json.replace("\"tree_size\": 10", "\"tree_size\": -1").as_bytes())
            .expect_err("negative size");
    assert!(error.to_string().contains("tree_size"), "{error}");
}

#[test]
fn only_active_members_count_toward_quorum() {
    let statuses = [
        PeerStatus::Active,
        PeerStatus::Active,
        PeerStatus::Probation,
        PeerStatus::Suspended,
        PeerStatus::Active,
    ];
    let federation = federation(&statuses, 2);
    // Anchor (active) + probation witness: one counted signer, not final.
    let with_probation = signed_receipt(&federation, &[2]).receipt;
    assert!(!with_probation.quorum_met);
    assert_fails(&with_probation, &federation.registry, "quorum");
    // Anchor + active witness + probation witness: final; the probation signature is valid
    // but not counted.
    let final_receipt = signed_receipt(&federation, &[1, 2]).receipt;
    let report = verify_receipt(&final_receipt, &federation.registry);
    assert!(report.all_ok(), "{}", report.to_text());
    assert!(report.to_text().contains("not counted: signer is on probation"));
    // A suspended member's statements are ignored and flagged.
    let with_suspended = signed_receipt(&federation, &[1, 3]).receipt;
    assert_fails(&with_suspended, &federation.registry, "signature did:vm:node:n3 (witness)");
}

#[test]
fn only_the_namespace_owner_may_anchor() {
    let federation = federation(&[PeerStatus::Active; 3], 2);
    let signed = signed_receipt(&federation, &[2]);
    let mut checkpoint = signed.checkpoint.clone();
    checkpoint.anchor.signed_at += 5;
    let usurper = sign_anchor(&federation.nodes[1], &checkpoint);
    let witness = countersign(&federation.nodes[2], &checkpoint, 1_698_042_700);
    let receipt = FederationReceipt::assemble(&checkpoint, vec![usurper, witness], &federation.registry);
    assert_fails(&receipt, &federation.registry, "signature did:vm:node:n1 (anchor)");
}

#[test]
fn cosigned_notes_and_bundles_verify_offline() {
    let federation = federation(&[PeerStatus::Active; 5], 3);
    let signed = signed_receipt(&federation, &[1, 2, 4]);
    let note = signed.receipt.to_note(&federation.registry).expect("note").to_text();
    let (report, checkpoint) = verify_note(note.as_bytes(), &federation.registry);
    assert!(report.all_ok(), "{}", report.to_text());
    assert_eq!(checkpoint.expect("checkpoint"), signed.checkpoint);

    // Lines from keys outside the registry are ignored, as C2SP verifiers do.
    let outsider = NodeIdentity::from_seed("did:vm:node:outsider", [77u8; 32]).expect("identity");
    let extra =
        remembrancer_core::note::NoteSignature::cosign(&outsider, &signed.checkpoint.body(), 5).to_line();
    let (report, _) = verify_note(format!("{note}{extra}\n").as_bytes(), &federation.registry);
    assert!(report.all_ok(), "{}", report.to_text());

    // Without two of its four signatures the note misses the quorum of 3.
    let mut lines: Vec<&str> = note.lines().collect();
    lines.truncate(lines.len() - 2);
    let (report, _) = verify_note(format!("{}\n", lines.join("\n")).as_bytes(), &federation.registry);
    assert!(!report.all_ok());

    // Bundle: record → inclusion proof → cosigned checkpoint.
    let index = 6u64;
    let record = b"record 6";
    let proof = InclusionProofJson::new(
        HashAlgorithm::Sha256,
        index,
        signed.tree.size(),
        signed.tree.leaf_hash(index).expect("leaf"),
        &signed.tree.inclusion_proof(index, signed.tree.size()).expect("proof"),
        signed.tree.root(),
    );
    let bundle = ProofBundle::new(record, proof, note.clone()).to_json();
    let report = verify_bundle(bundle.as_bytes(), &federation.registry);
    assert!(report.all_ok(), "{}", report.to_text());
    let other_record = bundle.replace(&base64_of(record), &base64_of(b"record 7"));
    assert!(!verify_bundle(other_record.as_bytes(), &federation.registry).all_ok());
    assert!(!verify_bundle(b"not json", &federation.registry).all_ok());
    assert!(!verify_bundle(&bundle.as_bytes()[..bundle.len() - 10], &federation.registry).all_ok());
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn batch_verdicts_match_single_verdicts() {
    let federation = federation(&[PeerStatus::Active; 5], 3);
    let valid = signed_receipt(&federation, &[1, 2, 3, 4]).receipt;
    let mut bad = valid.clone();
    bad.anchor.batch_root.value[5] ^= 0x10;
    let receipts = vec![valid.clone(), bad, valid.clone(), signed_receipt(&federation, &[1]).receipt, valid];
    let single: Vec<bool> =
        receipts.iter().map(|r| verify_receipt(r, &federation.registry).all_ok()).collect();
    assert_eq!(single, vec![true, false, true, false, true]);
    assert_eq!(verify_receipts_batch(&receipts, &federation.registry), single);
}

/// A checkpoint note of `NAMESPACE` at size 10 with `root`, signed by `signer`.
fn signed_note(federation: &Federation, signer: usize, root: [u8; 32]) -> String {
    use remembrancer_core::note::{Note, NoteSignature};
    let checkpoint = Checkpoint {
        federation_id: federation.registry.name.clone(),
        namespace: NAMESPACE.to_string(),
        size: 10,
        root,
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, 1_698_042_601),
    };
    let body = checkpoint.body();
    let signature = NoteSignature::sign_ed25519(&federation.nodes[signer], &body);
    Note { text: body, signatures: vec![signature] }.to_text()
}

#[test]
fn evidence_of_two_roots_verifies_offline_and_any_change_to_it_is_refused() {
    use remembrancer_core::evidence::{verify_evidence, EvidenceFile, EVIDENCE_FORMAT};
    let federation = federation(&[PeerStatus::Active; 3], 2);
    let file = |first: String, second: String, signer: usize| {
        let file = EvidenceFile {
            format: EVIDENCE_FORMAT.to_string(),
            signer: federation.nodes[signer].did().to_string(),
            namespace: NAMESPACE.to_string(),
            size: 10,
            first,
            second,
        };
        serde_json::to_vec(&file).expect("json")
    };
    let honest = file(signed_note(&federation, 0, [1; 32]), signed_note(&federation, 0, [2; 32]), 0);
    let report = verify_evidence(&honest, &federation.registry);
    assert!(report.all_ok(), "{}", report.to_text());
    assert_eq!(report.checks.len(), 6, "{}", report.to_text());

    // Every one-byte change of the file is refused (or stops being JSON).
    for at in 0..honest.len() {
        let mut changed = honest.clone();
        changed[at] ^= 0x01;
        assert!(
            !verify_evidence(&changed, &federation.registry).all_ok(),
            "byte {at} changed and still accepted"
        );
    }
    let failed = |bytes: &[u8]| failed_checks(&verify_evidence(bytes, &federation.registry));
    // One root twice proves nothing.
    let same = file(signed_note(&federation, 0, [1; 32]), signed_note(&federation, 0, [1; 32]), 0);
    assert!(failed(&same).iter().any(|f| f.starts_with("equivocation")), "{:?}", failed(&same));
    // Two members' notes are not one member's equivocation.
    let two = file(signed_note(&federation, 0, [1; 32]), signed_note(&federation, 1, [2; 32]), 0);
    assert!(failed(&two).iter().any(|f| f.starts_with("second note")), "{:?}", failed(&two));
    // Blamed on someone who did not sign.
    let blamed = file(signed_note(&federation, 0, [1; 32]), signed_note(&federation, 0, [2; 32]), 2);
    assert!(failed(&blamed).iter().any(|f| f.starts_with("first note")), "{:?}", failed(&blamed));
    // Another federation's registry does not list the signer.
    let other = self::federation(&[PeerStatus::Active; 1], 1);
    let mut renamed = other.registry.clone();
    renamed.name = "elsewhere".to_string();
    assert!(!verify_evidence(&honest, &renamed).all_ok());
    // Garbage is a typed failure of the format check.
    assert_eq!(
        failed(b"not json"),
        vec!["format: not an evidence file: expected ident at line 1 column 2".to_string()]
    );
}
