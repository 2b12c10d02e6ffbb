//! Equivocation evidence as an auditor checks it offline: two checkpoint notes of one
//! namespace and size, with different roots, each carrying a valid Ed25519 note signature of
//! the same member. (The other kind, an epoch anchor claimed out of turn, is `claims.rs`;
//! [`verify_evidence`] reads both.) A node exports the evidence it holds in this file format
//! (`federation evidence export`); `remembrancer verify evidence FILE --registry R` checks it
//! with nothing but the registry.

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::engine::Evidence;
use crate::note::{key_id, Note, SIGNATURE_TYPE_ED25519};
use crate::receipt::VerificationReport;
use crate::registry::Registry;

/// The format name an evidence file carries.
pub const EVIDENCE_FORMAT: &str = "remembrancer-evidence/v1";
/// Largest evidence file read: two notes of at most a few kilobytes each, or a claim out of
/// turn (a peer message of at most 256 KiB, base64).
pub const EVIDENCE_FILE_BYTES_MAX: usize = 512 * 1024;

/// An evidence file: the two signed notes, with who signed them and what they are about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceFile {
    /// [`EVIDENCE_FORMAT`].
    pub format: String,
    /// The member that signed both notes (its registry DID).
    pub signer: String,
    /// The namespace of both checkpoints.
    pub namespace: String,
    /// The tree size of both checkpoints.
    pub size: u64,
    /// The first signed note, as text.
    pub first: String,
    /// The second signed note, as text.
    pub second: String,
}

impl From<&Evidence> for EvidenceFile {
    fn from(evidence: &Evidence) -> Self {
        EvidenceFile {
            format: EVIDENCE_FORMAT.to_string(),
            signer: evidence.signer.clone(),
            namespace: evidence.namespace.clone(),
            size: evidence.size,
            first: evidence.first.clone(),
            second: evidence.second.clone(),
        }
    }
}

/// The digest that identifies an evidence record: its two signed notes, in either order. The
/// engine deduplicates evidence by it.
pub fn evidence_key(first: &str, second: &str) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let (a, b) = if first <= second { (first, second) } else { (second, first) };
    Sha256::digest(format!("{a}\n{b}")).into()
}

/// An evidence record's identifier: the first 16 hex digits of [`evidence_key`] (the same
/// evidence has the same id on every node).
pub fn evidence_id(evidence: &Evidence) -> String {
    hex::encode(&evidence_key(&evidence.first, &evidence.second)[..8])
}

/// Checks an evidence file against `registry`, one line per check: the format, the federation,
/// the signer, each note's signature, that both are of one namespace and size, and that their
/// roots differ. Every check must hold for the evidence to prove an equivocation.
pub fn verify_evidence(bytes: &[u8], registry: &Registry) -> VerificationReport {
    let mut report = VerificationReport::default();
    if bytes.len() > EVIDENCE_FILE_BYTES_MAX {
        report.push(
            "format",
            false,
            format!("{} bytes; an evidence file has at most {EVIDENCE_FILE_BYTES_MAX}", bytes.len()),
        );
        return report;
    }
    // A claim out of turn has its own format.
    let format = serde_json::from_slice::<serde_json::Value>(bytes).ok().map(|v| v["format"].clone());
    if format.is_some_and(|f| f == crate::claims::CLAIM_EVIDENCE_FORMAT) {
        return crate::claims::verify_claim_evidence(bytes, registry);
    }
    let file: EvidenceFile = match serde_json::from_slice(bytes) {
        Ok(file) => file,
        Err(error) => {
            report.push("format", false, format!("not an evidence file: {error}"));
            return report;
        }
    };
    if file.format != EVIDENCE_FORMAT {
        report.push("format", false, format!("format {:?}, expected {EVIDENCE_FORMAT:?}", file.format));
        return report;
    }
    report.push(
        "format",
        true,
        format!("evidence against {} for {} at size {}", file.signer, file.namespace, file.size),
    );
    let Some(member) = registry.member(&file.signer) else {
        report.push("signer", false, format!("{} is not a member of {}", file.signer, registry.name));
        return report;
    };
    report.push(
        "signer",
        true,
        format!("{} is a member of {} ({})", file.signer, registry.name, member.status.name()),
    );
    let mut checkpoints = Vec::with_capacity(2);
    for (which, text) in [("first note", &file.first), ("second note", &file.second)] {
        match signed_checkpoint(text, &file.signer, member, registry) {
            Ok(checkpoint) => {
                report.push(
                    which,
                    true,
                    format!(
                        "signed by {}: {} root {}",
                        file.signer,
                        checkpoint.namespace,
                        root_text(&checkpoint)
                    ),
                );
                checkpoints.push(checkpoint);
            }
            Err(detail) => report.push(which, false, detail),
        }
    }
    let [first, second] = checkpoints.as_slice() else { return report };
    let same = first.namespace == file.namespace
        && second.namespace == file.namespace
        && first.size == file.size
        && second.size == file.size;
    report.push(
        "same checkpoint",
        same,
        if same {
            format!("both notes are of {} at size {}", file.namespace, file.size)
        } else {
            format!(
                "the notes are of {} at {} and {} at {}, the file says {} at {}",
                first.namespace, first.size, second.namespace, second.size, file.namespace, file.size
            )
        },
    );
    let differ = first.root != second.root;
    report.push(
        "equivocation",
        differ,
        if differ {
            format!("two roots for one size: {} and {}", root_text(first), root_text(second))
        } else {
            "both notes have the same root: no equivocation".to_string()
        },
    );
    report
}

/// A checkpoint's root as `sha256:<hex>`.
fn root_text(checkpoint: &Checkpoint) -> String {
    crate::hash::TaggedHash::new(checkpoint.anchor.algorithm, checkpoint.root).to_string()
}

/// The checkpoint of a note whose Ed25519 note signature by `signer` (under its registry key)
/// is valid, else why not.
fn signed_checkpoint(
    text: &str,
    signer: &str,
    member: &crate::registry::Member,
    registry: &Registry,
) -> Result<Checkpoint, String> {
    let note = Note::parse(text.as_bytes()).map_err(|e| format!("not a signed note: {e}"))?;
    let checkpoint = Checkpoint::parse_body(&note.text).map_err(|e| format!("not a checkpoint: {e}"))?;
    if checkpoint.federation_id != registry.name {
        return Err(format!(
            "a checkpoint of federation {}, not {}",
            checkpoint.federation_id, registry.name
        ));
    }
    let expected = key_id(signer, SIGNATURE_TYPE_ED25519, &member.key);
    let line = note
        .signatures
        .iter()
        .find(|s| s.name == signer && s.key_id == expected)
        .ok_or_else(|| format!("no note signature by {signer} under its registry key"))?;
    let signature: [u8; 64] =
        line.payload.as_slice().try_into().map_err(|_| format!("{signer}'s signature is not 64 bytes"))?;
    if !crate::signature::verify(&member.key, note.text.as_bytes(), &signature) {
        return Err(format!("{signer}'s signature does not verify"));
    }
    Ok(checkpoint)
}
