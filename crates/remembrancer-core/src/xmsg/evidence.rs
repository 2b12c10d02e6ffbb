//! Lane evidence: two messages of one lane (source → target) at one sequence, each proven in
//! the source's tree under a cosigned checkpoint. The source's owner signed both into its tree,
//! so the lane cannot be trusted to mean one thing: every node that checks this freezes it.

use super::envelope::{Envelope, XRecord};
use crate::bundle::{check_bundle, ProofBundle};
use crate::registry::Registry;

/// One message of the evidence: its record and its proof bundle.
pub fn proven_message(record: &[u8], bundle: &ProofBundle, registry: &Registry) -> Result<Envelope, String> {
    let XRecord::Message(envelope) = XRecord::decode(record).map_err(|e| e.to_string())? else {
        return Err("a record that is not a message".to_string());
    };
    let bundled =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bundle.record.as_bytes());
    if bundled.as_deref() != Ok(record) {
        return Err("the proof is for another record".to_string());
    }
    let (report, checkpoint) = check_bundle(bundle, registry);
    if !report.all_ok() {
        return Err("the proof does not hold".to_string());
    }
    if envelope.federation != registry.name || checkpoint.is_none_or(|c| c.namespace != envelope.source) {
        return Err("not a message of its source's tree in this federation".to_string());
    }
    Ok(envelope)
}

/// Checks lane evidence; the lane (source, target) and the sequence it proves two messages at.
pub fn check_lane_evidence(
    first: (&[u8], &ProofBundle),
    second: (&[u8], &ProofBundle),
    registry: &Registry,
) -> Result<(String, String, u64), String> {
    let a = proven_message(first.0, first.1, registry).map_err(|e| format!("first: {e}"))?;
    let b = proven_message(second.0, second.1, registry).map_err(|e| format!("second: {e}"))?;
    if (&a.source, &a.target, a.sequence) != (&b.source, &b.target, b.sequence) {
        return Err("the two messages are not of one lane and sequence".to_string());
    }
    if first.0 == second.0 {
        return Err("the two messages are one".to_string());
    }
    Ok((a.source, a.target, a.sequence))
}
