//! Evidence of an epoch anchor claimed out of turn: the claim as its sender signed it (a peer
//! message), which anyone holding the registry version it names checks alone. The election
//! depends on the registry and the epoch only ([`crate::anchoring::election_order`]), so a
//! sealed claim from a member the election did not allow ([`crate::anchoring::may_claim_epoch`])
//! proves the member claimed what was not its to claim. A node exports it in this file format
//! (`federation evidence export`); `remembrancer verify evidence FILE --registry R` checks it.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::anchoring::{election_order, may_claim_epoch};
use crate::engine::ClaimEvidence;
use crate::message::{Content, PeerMessage, CLAIM_MESSAGE_BYTES_MAX};
use crate::receipt::VerificationReport;
use crate::registry::Registry;

/// The format name a claim evidence file carries.
pub const CLAIM_EVIDENCE_FORMAT: &str = "remembrancer-claim-evidence/v1";

/// A claim evidence file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimEvidenceFile {
    /// [`CLAIM_EVIDENCE_FORMAT`].
    pub format: String,
    /// The claimant (its registry DID).
    pub signer: String,
    /// The epoch it claimed.
    pub epoch: u64,
    /// The registry version the claim names: the registry to check it with.
    pub registry_version: u64,
    /// The claimant's rank in the epoch's election order (none: not in it).
    pub rank: Option<u64>,
    /// The signed claim, the peer message as it travelled, base64.
    pub message: String,
}

impl From<&ClaimEvidence> for ClaimEvidenceFile {
    fn from(evidence: &ClaimEvidence) -> Self {
        ClaimEvidenceFile {
            format: CLAIM_EVIDENCE_FORMAT.to_string(),
            signer: evidence.signer.clone(),
            epoch: evidence.epoch,
            registry_version: evidence.registry_version,
            rank: evidence.rank,
            message: base64::engine::general_purpose::STANDARD.encode(&evidence.message),
        }
    }
}

/// A claim evidence record's identifier: the first 16 hex digits of SHA-256 of the claim.
pub fn claim_evidence_id(message: &[u8]) -> String {
    hex::encode(&claim_key(message)[..8])
}

/// The digest that identifies a claim (the engine deduplicates evidence by it).
pub fn claim_key(message: &[u8]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(message).into()
}

/// Checks that `message` is an epoch anchor claim signed by its sender and out of turn under
/// the registry version it names, which `registry_of` gives; returns what it proves, or why it
/// proves nothing.
pub fn check_claim<'r>(
    message: &[u8],
    registry_of: impl Fn(u64) -> Option<&'r Registry>,
) -> Result<ClaimEvidence, String> {
    if message.len() > CLAIM_MESSAGE_BYTES_MAX {
        return Err(format!("a claim of {} bytes, more than {CLAIM_MESSAGE_BYTES_MAX}", message.len()));
    }
    let claim = PeerMessage::decode(message).map_err(|e| format!("not a peer message: {e}"))?;
    let Content::EpochAnchor(content) = &claim.content else {
        return Err(format!("a {:?} message, not an epoch anchor claim", claim.message_type()));
    };
    let version = content.registry_version;
    let registry = registry_of(version)
        .ok_or_else(|| format!("the claim names registry version {version}: check it with that version"))?;
    let member = registry
        .member(&claim.sender)
        .ok_or_else(|| format!("{} is not a member of {} version {version}", claim.sender, registry.name))?;
    claim
        .verify_signature(&member.key)
        .map_err(|_| format!("the claim's signature does not verify under {}'s key", claim.sender))?;
    let mode = registry.anchor_propagation.mode;
    let rank = election_order(registry, content.epoch).iter().position(|did| *did == claim.sender);
    if may_claim_epoch(mode, rank) {
        return Err(format!(
            "the election allowed {} to claim epoch {} (rank {}, {} mode): no evidence",
            claim.sender,
            content.epoch,
            rank.map_or_else(|| "none".to_string(), |r| r.to_string()),
            mode.name()
        ));
    }
    Ok(ClaimEvidence {
        signer: claim.sender.clone(),
        epoch: content.epoch,
        registry_version: version,
        rank: rank.map(|r| r as u64),
        message: message.to_vec(),
    })
}

/// Checks a claim evidence file against `registry` (the version the claim names), one line
/// per check.
pub fn verify_claim_evidence(bytes: &[u8], registry: &Registry) -> VerificationReport {
    let mut report = VerificationReport::default();
    let file = match serde_json::from_slice::<ClaimEvidenceFile>(bytes) {
        Ok(file) if file.format == CLAIM_EVIDENCE_FORMAT => file,
        Ok(file) => {
            report.push(
                "format",
                false,
                format!("format {:?}, expected {CLAIM_EVIDENCE_FORMAT:?}", file.format),
            );
            return report;
        }
        Err(error) => {
            report.push("format", false, format!("not a claim evidence file: {error}"));
            return report;
        }
    };
    report.push(
        "format",
        true,
        format!(
            "a claim of epoch {} by {} under registry version {}",
            file.epoch, file.signer, file.registry_version
        ),
    );
    let version_ok = registry.version == file.registry_version;
    report.push(
        "registry version",
        version_ok,
        if version_ok {
            format!("{} version {}", registry.name, registry.version)
        } else {
            format!(
                "the registry given is version {}: give version {} (the claim is judged under it)",
                registry.version, file.registry_version
            )
        },
    );
    if !version_ok {
        return report;
    }
    let Ok(message) = base64::engine::general_purpose::STANDARD.decode(file.message.as_bytes()) else {
        report.push("claim", false, "the message is not base64");
        return report;
    };
    match check_claim(&message, |v| (v == registry.version).then_some(registry)) {
        Ok(found) => {
            let named = found.signer == file.signer && found.epoch == file.epoch && found.rank == file.rank;
            report.push(
                "claim",
                named,
                if named {
                    format!(
                        "signed by {} under its registry key: an anchor of epoch {}",
                        found.signer, found.epoch
                    )
                } else {
                    format!(
                        "the claim is by {} for epoch {} at rank {:?}; the file says {} for {} at {:?}",
                        found.signer, found.epoch, found.rank, file.signer, file.epoch, file.rank
                    )
                },
            );
            report.push(
                "out of turn",
                named,
                format!(
                    "the election of epoch {} ({} mode) ranks {} {}: not allowed to claim it",
                    found.epoch,
                    registry.anchor_propagation.mode.name(),
                    found.signer,
                    found.rank.map_or_else(|| "nowhere".to_string(), |r| format!("at {r}"))
                ),
            );
        }
        Err(error) => report.push("claim", false, error),
    }
    report
}
