//! Self-contained proof bundles (record → inclusion proof → cosigned checkpoint), in the spirit
//! of C2SP tlog-proof: an auditor verifies one offline with nothing but the registry.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::merkle::InclusionProofJson;
use crate::receipt::{verify_note, VerificationReport};
use crate::registry::Registry;

/// The `bundle_type` of a proof bundle.
pub const BUNDLE_TYPE: &str = "remembrancer.proof-bundle/v1";
/// Largest bundle file we parse, in bytes.
pub const BUNDLE_BYTES_MAX: usize = 1024 * 1024;

/// A proof bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// Always [`BUNDLE_TYPE`].
    pub bundle_type: String,
    /// The record, base64.
    pub record: String,
    /// Its inclusion proof, in the spec's JSON shape.
    pub proof: InclusionProofJson,
    /// The cosigned checkpoint as a C2SP signed note.
    pub checkpoint: String,
}

impl ProofBundle {
    /// Builds a bundle.
    pub fn new(record: &[u8], proof: InclusionProofJson, checkpoint_note: String) -> Self {
        ProofBundle {
            bundle_type: BUNDLE_TYPE.to_string(),
            record: BASE64.encode(record),
            proof,
            checkpoint: checkpoint_note,
        }
    }

    /// The bundle as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Verifies a bundle file: the checkpoint's signatures and quorum, then that the record's leaf
/// hash is included under the checkpoint's root at its size.
pub fn verify_bundle(bytes: &[u8], registry: &Registry) -> VerificationReport {
    let mut report = VerificationReport::default();
    if bytes.len() > BUNDLE_BYTES_MAX {
        report.push("format", false, format!("{} bytes, more than the 1 MiB allowed", bytes.len()));
        return report;
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let bundle: ProofBundle = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(bundle) => bundle,
        Err(error) => {
            report.push("format", false, format!("not a proof bundle: {}: {}", error.path(), error.inner()));
            return report;
        }
    };
    check_bundle(&bundle, registry).0
}

/// The checks of [`verify_bundle`] on a bundle already read, and its checkpoint when the
/// checkpoint is in our nodes' form (whatever the other checks say): what a larger proof that
/// carries a bundle goes on from.
pub fn check_bundle(bundle: &ProofBundle, registry: &Registry) -> (VerificationReport, Option<Checkpoint>) {
    let mut report = VerificationReport::default();
    if bundle.bundle_type != BUNDLE_TYPE {
        report.push(
            "format",
            false,
            format!("bundle_type is {:?}, expected {BUNDLE_TYPE:?}", bundle.bundle_type),
        );
        return (report, None);
    }
    let (note_report, checkpoint) = verify_note(bundle.checkpoint.as_bytes(), registry);
    report.checks.extend(note_report.checks);
    report.signers = note_report.signers;
    let Some(checkpoint) = checkpoint else {
        // A checkpoint that is not in our nodes' exact form names no hash algorithm for the
        // proof: say so rather than pass a bundle whose record was never checked.
        if report.all_ok() {
            report.push(
                "proof",
                false,
                "the bundle's checkpoint is not a remembrancer checkpoint (origin, size, root and one remembrancer/anchor/v1 line): the proof cannot be checked against it",
            );
        }
        return (report, None);
    };
    let under = check_under(bundle, &checkpoint);
    report.checks.extend(under.checks);
    (report, Some(checkpoint))
}

/// The record checks of a bundle under a checkpoint already verified (its note's signatures
/// and quorum): the record hashes to the proof's leaf, the proof is against the checkpoint,
/// and the leaf is included (positions recomputed from the index and the size).
pub fn check_under(bundle: &ProofBundle, checkpoint: &Checkpoint) -> VerificationReport {
    let mut report = VerificationReport::default();
    let record = match BASE64.decode(&bundle.record) {
        Ok(record) => record,
        Err(_) => {
            report.push("record", false, "record is not base64");
            return report;
        }
    };
    let leaf = checkpoint.anchor.algorithm.leaf_hash(&record);
    let leaf_ok =
        bundle.proof.leaf.value == leaf && bundle.proof.leaf.algorithm == checkpoint.anchor.algorithm;
    report.push(
        "record",
        leaf_ok,
        if leaf_ok {
            format!("{} bytes hash to leaf {}", record.len(), bundle.proof.leaf)
        } else {
            "the record does not hash to the proof's leaf".to_string()
        },
    );
    let against_ok =
        bundle.proof.root == checkpoint.tagged_root() && bundle.proof.tree_size == checkpoint.size;
    report.push(
        "proof target",
        against_ok,
        if against_ok {
            format!("proof is against the checkpoint (size {})", checkpoint.size)
        } else {
            format!(
                "proof is against size {} root {}, the checkpoint is size {} root {}",
                bundle.proof.tree_size,
                bundle.proof.root,
                checkpoint.size,
                checkpoint.tagged_root()
            )
        },
    );
    match bundle.proof.verify() {
        Ok(()) => report.push("inclusion", true, format!("leaf {} is in the tree", bundle.proof.leaf_index)),
        Err(error) => report.push("inclusion", false, error.to_string()),
    }
    report
}
