//! `verify message`: a messaging record in a proof bundle, checked offline with the registry
//! alone: the bundle (record, strict inclusion, cosigned checkpoint, quorum), then the record
//! (canonical, in its own namespace's tree: a message in its source's, an answer in its
//! target's), and what it says.

use super::envelope::XRecord;
use crate::bundle::{check_bundle, ProofBundle, BUNDLE_BYTES_MAX};
use crate::receipt::VerificationReport;
use crate::registry::Registry;

/// Checks a proof bundle whose record is a messaging record.
pub fn verify_message(bytes: &[u8], registry: &Registry) -> VerificationReport {
    let mut report = VerificationReport::default();
    if bytes.len() > BUNDLE_BYTES_MAX {
        report.push("format", false, format!("{} bytes, more than the 1 MiB allowed", bytes.len()));
        return report;
    }
    let bundle: ProofBundle = match serde_json::from_slice(bytes) {
        Ok(bundle) => bundle,
        Err(error) => {
            report.push("format", false, format!("not a proof bundle: {error}"));
            return report;
        }
    };
    let (bundle_report, checkpoint) = check_bundle(&bundle, registry);
    report.checks.extend(bundle_report.checks);
    report.signers = bundle_report.signers;
    let Some(checkpoint) = checkpoint else { return report };
    let record =
        match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bundle.record.as_bytes()) {
            Ok(record) => record,
            Err(_) => {
                report.push("message", false, "the record is not base64");
                return report;
            }
        };
    let tree = checkpoint.namespace.as_str();
    let (ok, detail) = match XRecord::decode(&record) {
        Err(error) => (false, error.to_string()),
        Ok(XRecord::Message(envelope)) => (
            envelope.source == tree && envelope.federation == registry.name,
            format!(
                "{} → {} #{} {} {} {} (deadline {}), id {}, in {tree}'s tree",
                envelope.source,
                envelope.target,
                envelope.sequence,
                envelope.action.name(),
                envelope.operation,
                envelope.parameters,
                crate::times::iso8601(envelope.deadline),
                bundle.proof.leaf
            ),
        ),
        Ok(XRecord::Receipt { message, source, sequence }) => {
            (true, format!("{tree} recorded {message} ({source} #{sequence}) before running it"))
        }
        Ok(XRecord::Ack { message, source, sequence, outcome }) => (
            true,
            format!(
                "{tree} acknowledged {message} ({source} #{sequence}): {}",
                serde_json::to_string(&outcome).unwrap_or_default()
            ),
        ),
        Ok(XRecord::Timeout { message, source, sequence, deadline }) => (
            true,
            format!(
                "{tree} recorded {message} ({source} #{sequence}) as expired: its deadline {} had passed",
                crate::times::iso8601(deadline)
            ),
        ),
    };
    let detail = if ok {
        detail
    } else {
        format!("{detail}: not a message of {tree} in federation {}", registry.name)
    };
    report.push("message", ok, detail);
    report
}
