//! Federation receipts in the spec's JSON shape, their construction from signed statements,
//! and the offline verifier an auditor runs with nothing but the registry.
//!
//! Every `sig` in a receipt is one of the C2SP statements over the checkpoint body
//! ([`crate::checkpoint::Checkpoint::body`]): the anchor's plain Ed25519 note signature, or a
//! witness's `cosignature/v1`. The body carries every field a verifier relies on (origin =
//! federation and namespace, size, root, hash algorithm, anchor target, transaction, block and
//! times); `quorum_met` and `finalized_at` are derived, and the verifier recomputes them.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::checkpoint::{
    validate_namespace, AnchorClaim, AnchorRef, Checkpoint, CheckpointRef, TlogCheckpoint,
    ANCHOR_EXTENSION_TAG,
};
use crate::hash::TaggedHash;
use crate::identity::{multibase_signature, parse_multibase_signature, NodeIdentity};
use crate::note::{
    cosignature_message, Note, NoteSignature, SIGNATURE_TYPE_COSIGNATURE, SIGNATURE_TYPE_ED25519,
};
use crate::registry::{PeerStatus, Registry};

/// Longest receipt file we parse, in bytes.
pub const RECEIPT_BYTES_MAX: usize = 256 * 1024;
/// Most signatures one receipt may carry.
pub const RECEIPT_SIGNATURES_MAX: usize = 1000;
/// The `receipt_type` of a federation receipt.
pub const RECEIPT_TYPE: &str = "anchor_federation";

/// The role a signer claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The namespace owner, who signed the checkpoint.
    Anchor,
    /// A peer that countersigned it.
    Witness,
}

/// The `anchor` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorJson {
    /// Root of the batch's tree (`sha256:...`).
    pub batch_root: TaggedHash,
    /// Anchor target (`local`, `eip155:1`, ...).
    pub target: String,
    /// Transaction hash, when the target is a chain; null for `local`.
    pub tx_hash: Option<String>,
    /// Block number, when the target is a chain; null for `local`.
    pub block: Option<u64>,
    /// When the batch was anchored (Unix seconds).
    pub timestamp: u64,
}

/// One entry of `signatures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureJson {
    /// Signer DID as the registry lists it.
    pub node: String,
    /// The Ed25519 signature, multibase base58btc.
    pub sig: String,
    /// The role the signer claims.
    pub role: Role,
    /// Signing time (Unix seconds); covered by the signature.
    pub timestamp: u64,
}

/// A federation receipt (spec: Federation Receipt Example), plus `tree_size`, which the
/// checkpoint needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationReceipt {
    /// Federation id.
    pub federation_id: String,
    /// Always `anchor_federation`.
    pub receipt_type: String,
    /// Namespace of the tree.
    pub namespace: String,
    /// Number of records the root covers.
    pub tree_size: u64,
    /// Version of the registry under which the quorum is counted (signed in the checkpoint).
    pub registry_version: u64,
    /// The anchored root and where it was anchored.
    pub anchor: AnchorJson,
    /// Anchor signature first, then witness cosignatures.
    pub signatures: Vec<SignatureJson>,
    /// True when distinct active signers reach the registry's quorum.
    pub quorum_met: bool,
    /// When the quorum was reached (the time of the signature that completed it); null before.
    pub finalized_at: Option<u64>,
}

/// Errors building or reading receipts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Larger than [`RECEIPT_BYTES_MAX`].
    #[error("receipt is {0} bytes, more than the 262144 allowed")]
    TooLarge(usize),
    /// Not a receipt.
    #[error("not a federation receipt: {0}")]
    Malformed(String),
    /// The receipt does not have exactly one anchor signature, so its checkpoint cannot be
    /// rebuilt.
    #[error("the receipt has {0} anchor signatures; exactly one, the namespace owner's, is required")]
    AnchorCount(usize),
    /// A signer the note conversion needs is not in the registry.
    #[error("signer {0} is not in the registry")]
    UnknownSigner(String),
}

/// Signs a checkpoint as its anchor (namespace owner): a C2SP note signature over the body.
pub fn sign_anchor(identity: &NodeIdentity, checkpoint: &Checkpoint) -> SignatureJson {
    sign_anchor_raw(identity, checkpoint).0
}

/// [`sign_anchor`], with the raw signature (it is also the checkpoint note's signature).
pub fn sign_anchor_raw(identity: &NodeIdentity, checkpoint: &Checkpoint) -> (SignatureJson, [u8; 64]) {
    let body = checkpoint.body();
    let signature = identity.sign(body.as_bytes());
    crate::signature::remember_signed(&identity.verifying_key(), body.as_bytes(), &signature);
    let json = SignatureJson {
        node: identity.did().to_string(),
        sig: multibase_signature(&signature),
        role: Role::Anchor,
        timestamp: checkpoint.anchor.signed_at,
    };
    (json, signature)
}

/// Countersigns a checkpoint as a witness: a `cosignature/v1` at `timestamp`.
pub fn countersign(identity: &NodeIdentity, checkpoint: &Checkpoint, timestamp: u64) -> SignatureJson {
    countersign_body(identity, &checkpoint.body(), timestamp).0
}

/// [`countersign`] over a checkpoint's body as signed, with the raw cosignature (what a
/// countersignature message carries, so it need not be decoded back from the multibase text).
pub fn countersign_body(identity: &NodeIdentity, body: &str, timestamp: u64) -> (SignatureJson, [u8; 64]) {
    let message = cosignature_message(timestamp, body);
    let signature = identity.sign(&message);
    crate::signature::remember_signed(&identity.verifying_key(), &message, &signature);
    let json = SignatureJson {
        node: identity.did().to_string(),
        sig: multibase_signature(&signature),
        role: Role::Witness,
        timestamp,
    };
    (json, signature)
}

impl FederationReceipt {
    /// Assembles a receipt from a checkpoint and its signatures, computing `quorum_met` and
    /// `finalized_at` under `registry` (signatures are not checked here: see [`verify_receipt`]).
    pub fn assemble(
        checkpoint: &Checkpoint,
        mut signatures: Vec<SignatureJson>,
        registry: &Registry,
    ) -> Self {
        signatures.sort_by_key(|s| (s.role, s.timestamp, s.node.clone()));
        let finalized_at = quorum_completion_time(&signatures, registry);
        FederationReceipt {
            federation_id: checkpoint.federation_id.clone(),
            receipt_type: RECEIPT_TYPE.to_string(),
            namespace: checkpoint.namespace.clone(),
            tree_size: checkpoint.size,
            registry_version: checkpoint.anchor.registry_version,
            anchor: AnchorJson {
                batch_root: checkpoint.tagged_root(),
                target: checkpoint.anchor.target.clone(),
                tx_hash: checkpoint.anchor.tx_hash.clone(),
                block: checkpoint.anchor.block,
                timestamp: checkpoint.anchor.anchored_at,
            },
            signatures,
            quorum_met: finalized_at.is_some(),
            finalized_at,
        }
    }

    /// Parses receipt JSON, bounded by [`RECEIPT_BYTES_MAX`], naming the bad field on error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() > RECEIPT_BYTES_MAX {
            return Err(ReceiptError::TooLarge(bytes.len()));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let receipt: FederationReceipt = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| ReceiptError::Malformed(format!("{}: {}", e.path(), e.inner())))?;
        deserializer.end().map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        if receipt.signatures.len() > RECEIPT_SIGNATURES_MAX {
            return Err(ReceiptError::Malformed("more than 1000 signatures".to_string()));
        }
        Ok(receipt)
    }

    /// The receipt as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The anchor signature entry, when there is exactly one.
    fn anchor_signature(&self) -> Option<&SignatureJson> {
        let mut anchors = self.signatures.iter().filter(|s| s.role == Role::Anchor);
        match (anchors.next(), anchors.next()) {
            (Some(anchor), None) => Some(anchor),
            _ => None,
        }
    }

    /// Rebuilds the checkpoint the signatures cover.
    pub fn checkpoint(&self) -> Result<Checkpoint, ReceiptError> {
        self.checkpoint_ref().map(|checkpoint| checkpoint.to_checkpoint())
    }

    /// [`FederationReceipt::checkpoint`], borrowing the receipt's fields.
    pub fn checkpoint_ref(&self) -> Result<CheckpointRef<'_>, ReceiptError> {
        let anchor = self.anchor_signature().ok_or_else(|| {
            ReceiptError::AnchorCount(self.signatures.iter().filter(|s| s.role == Role::Anchor).count())
        })?;
        let checkpoint = CheckpointRef {
            federation_id: &self.federation_id,
            namespace: &self.namespace,
            size: self.tree_size,
            root: &self.anchor.batch_root.value,
            anchor: AnchorRef {
                algorithm: self.anchor.batch_root.algorithm,
                target: &self.anchor.target,
                tx_hash: self.anchor.tx_hash.as_deref(),
                block: self.anchor.block,
                anchored_at: self.anchor.timestamp,
                signed_at: anchor.timestamp,
                registry_version: self.registry_version,
            },
        };
        checkpoint.validate().map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        Ok(checkpoint)
    }

    /// The cosigned checkpoint as a C2SP signed note: the anchor's line, then one
    /// `cosignature/v1` line per witness. Key IDs come from the registry's keys.
    pub fn to_note(&self, registry: &Registry) -> Result<Note, ReceiptError> {
        let checkpoint = self.checkpoint()?;
        let mut signatures = Vec::with_capacity(self.signatures.len());
        for entry in &self.signatures {
            let member = registry
                .member(&entry.node)
                .ok_or_else(|| ReceiptError::UnknownSigner(entry.node.clone()))?;
            let raw =
                parse_multibase_signature(&entry.sig).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
            let (signature_type, payload) = match entry.role {
                Role::Anchor => (SIGNATURE_TYPE_ED25519, raw.to_vec()),
                Role::Witness => {
                    let mut payload = entry.timestamp.to_be_bytes().to_vec();
                    payload.extend_from_slice(&raw);
                    (SIGNATURE_TYPE_COSIGNATURE, payload)
                }
            };
            signatures.push(NoteSignature {
                name: entry.node.clone(),
                key_id: crate::note::key_id(&entry.node, signature_type, &member.key),
                payload,
            });
        }
        Ok(Note { text: checkpoint.body(), signatures })
    }
}

/// The time at which distinct active signers first reached the quorum, if they do.
///
/// The quorum is reached at the quorum-th smallest of the active signers' earliest signature
/// times. Worked out in place: on the stack for up to [`FEW_SIGNATURES`] signatures (every
/// receipt a node checks under load), in one buffer beyond.
fn quorum_completion_time(signatures: &[SignatureJson], registry: &Registry) -> Option<u64> {
    let quorum = registry.quorum as usize;
    let mut few = [(0u64, ""); FEW_SIGNATURES];
    let mut many = Vec::new();
    let signed: &mut [(u64, &str)] = if signatures.len() <= FEW_SIGNATURES {
        &mut few
    } else {
        many.resize(signatures.len(), (0, ""));
        &mut many
    };
    let mut count = 0;
    for entry in signatures {
        if registry.member(&entry.node).is_some_and(|m| m.status == PeerStatus::Active) {
            signed[count] = (entry.timestamp, entry.node.as_str());
            count += 1;
        }
    }
    // Each signer once, at its earliest time.
    let signed = &mut signed[..count];
    signed.sort_unstable_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));
    let mut distinct = 0;
    for index in 0..signed.len() {
        if distinct == 0 || signed[distinct - 1].1 != signed[index].1 {
            signed[distinct] = signed[index];
            distinct += 1;
        }
    }
    let earliest = &mut signed[..distinct];
    earliest.sort_unstable_by_key(|(time, _)| *time);
    (quorum >= 1 && distinct >= quorum).then(|| earliest[quorum - 1].0)
}

/// Signatures a receipt is checked with no buffer for (the registries of this size of
/// federation and their quorums).
const FEW_SIGNATURES: usize = 16;

/// One line of a verification report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub check: String,
    /// Whether it holds.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The outcome of verifying a receipt, a note or a bundle: one check per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct VerificationReport {
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The distinct active members whose signatures verified, which the quorum counted (for a
    /// check that demands more than the registry's quorum, like a namespace's own policy).
    #[serde(skip)]
    pub signers: Vec<String>,
}

impl VerificationReport {
    /// Adds a check.
    pub fn push(&mut self, check: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check { check: check.to_string(), ok, detail: detail.into() });
    }

    /// True when every check holds (and there is at least one).
    pub fn all_ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// Lines for a person: `ok   check: detail` / `FAIL check: detail`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let mark = if check.ok { "ok  " } else { "FAIL" };
            out.push_str(&format!("{mark} {}: {}\n", check.check, check.detail));
        }
        out
    }
}

/// One signature to check: who, as what, when, and the raw bytes.
struct SignedStatement<'a> {
    node: &'a str,
    role: Role,
    timestamp: u64,
    signature: Result<[u8; 64], String>,
}

/// What the statements of [`check_statements`] are about: the exact body signed, its
/// namespace, and the anchor time the body claims (none for a checkpoint without a
/// `remembrancer/anchor/v1` line: then the owner's note signature is the anchor signature).
struct Signed<'a> {
    body: &'a str,
    namespace: &'a str,
    signed_at: Option<u64>,
}

/// Checks signer membership, roles, signatures, distinctness and quorum over one checkpoint;
/// shared by receipt and note verification. Returns the time the quorum completed.
fn check_statements(
    report: &mut VerificationReport,
    registry: &Registry,
    signed: &Signed<'_>,
    statements: &[SignedStatement<'_>],
) -> Option<u64> {
    let body = signed.body;
    let anchors = statements.iter().filter(|s| s.role == Role::Anchor).count();
    report.push(
        "anchor",
        anchors == 1,
        match anchors {
            1 => "exactly one anchor signature".to_string(),
            0 => "no anchor signature: the namespace owner must sign the checkpoint".to_string(),
            n => format!("{n} signatures claim the anchor role; only the namespace owner may"),
        },
    );
    let mut valid_active: Vec<(u64, &str)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut duplicates = Vec::new();
    for statement in statements {
        let label = format!("signature {} ({})", statement.node, role_name(statement.role));
        if !seen.insert(statement.node) {
            duplicates.push(statement.node.to_string());
        }
        let Some(member) = registry.member(statement.node) else {
            report.push(&label, false, "signer is not in the registry");
            continue;
        };
        if member.status == PeerStatus::Suspended {
            report.push(&label, false, "signer is suspended: its statements are ignored");
            continue;
        }
        if statement.role == Role::Anchor && !registry.may_anchor(statement.node, signed.namespace) {
            report.push(&label, false, format!("signer does not own namespace {}", signed.namespace));
            continue;
        }
        if statement.role == Role::Anchor && signed.signed_at.is_some_and(|at| statement.timestamp != at) {
            report.push(&label, false, "anchor timestamp differs from the signed one");
            continue;
        }
        let raw = match &statement.signature {
            Ok(raw) => raw,
            Err(reason) => {
                report.push(&label, false, reason.clone());
                continue;
            }
        };
        let message = match statement.role {
            Role::Anchor => body.as_bytes().to_vec(),
            Role::Witness => cosignature_message(statement.timestamp, body),
        };
        if !crate::signature::verify(&member.key, &message, raw) {
            report.push(
                &label,
                false,
                "signature does not verify: the receipt was altered or signed by another key",
            );
            continue;
        }
        if member.status == PeerStatus::Active {
            report.push(&label, true, "valid");
            valid_active.push((statement.timestamp, statement.node));
        } else {
            report.push(&label, true, format!("valid, not counted: signer is on {}", member.status.name()));
        }
    }
    report.push(
        "distinct signers",
        duplicates.is_empty(),
        if duplicates.is_empty() {
            format!("{} signers, each once", seen.len())
        } else {
            format!("signed more than once: {}", duplicates.join(", "))
        },
    );
    valid_active.sort();
    valid_active.dedup_by_key(|(_, node)| *node);
    let counted: BTreeSet<&str> = valid_active.iter().map(|(_, node)| *node).collect();
    report.signers = counted.iter().map(|node| node.to_string()).collect();
    let quorum = registry.quorum as usize;
    let met = counted.len() >= quorum && duplicates.is_empty();
    report.push(
        "quorum",
        met,
        format!("{} distinct active signers, registry {} requires {}", counted.len(), registry.name, quorum),
    );
    if !met {
        return None;
    }
    let mut times: Vec<(u64, &str)> = valid_active.into_iter().filter(|(_, n)| counted.contains(n)).collect();
    times.sort();
    times.get(quorum - 1).map(|(time, _)| *time)
}

/// A role's wire name (serde's lowercase of the variant).
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Anchor => "anchor",
        Role::Witness => "witness",
    }
}

/// Verifies a receipt against a registry, one check per line.
pub fn verify_receipt(receipt: &FederationReceipt, registry: &Registry) -> VerificationReport {
    let mut report = VerificationReport::default();
    let format_ok = receipt.receipt_type == RECEIPT_TYPE && validate_namespace(&receipt.namespace).is_ok();
    report.push(
        "format",
        format_ok,
        if format_ok {
            format!(
                "federation receipt for {} at size {}, root {}",
                receipt.namespace, receipt.tree_size, receipt.anchor.batch_root
            )
        } else {
            format!("receipt_type must be {RECEIPT_TYPE:?} and namespace <kind>:<name>")
        },
    );
    let federation_ok = receipt.federation_id == registry.name;
    report.push(
        "federation",
        federation_ok,
        if federation_ok {
            format!("{} matches the registry", registry.name)
        } else {
            format!("receipt is for {:?}, the registry is {:?}", receipt.federation_id, registry.name)
        },
    );
    let version_ok = receipt.registry_version == registry.version;
    report.push(
        "registry version",
        version_ok,
        if version_ok {
            format!("quorum counted under registry version {}", registry.version)
        } else {
            format!(
                "the receipt's quorum is counted under registry version {}, this registry is version {}: verify with the registry at that version (nodes keep the chain of updates)",
                receipt.registry_version, registry.version
            )
        },
    );
    let checkpoint = match receipt.checkpoint() {
        Ok(checkpoint) => checkpoint,
        Err(error) => {
            let check = if matches!(error, ReceiptError::AnchorCount(_)) { "anchor" } else { "checkpoint" };
            report.push(check, false, error.to_string());
            return report;
        }
    };
    let statements: Vec<SignedStatement<'_>> = receipt
        .signatures
        .iter()
        .map(|s| SignedStatement {
            node: &s.node,
            role: s.role,
            timestamp: s.timestamp,
            signature: parse_multibase_signature(&s.sig).map_err(|e| e.to_string()),
        })
        .collect();
    let body = checkpoint.body();
    let signed = Signed {
        body: &body,
        namespace: &checkpoint.namespace,
        signed_at: Some(checkpoint.anchor.signed_at),
    };
    let completed = check_statements(&mut report, registry, &signed, &statements);
    report.push(
        "quorum_met",
        receipt.quorum_met == completed.is_some(),
        format!("field says {}, signatures give {}", receipt.quorum_met, completed.is_some()),
    );
    if let Some(completed) = completed {
        let ok = receipt.finalized_at.is_some_and(|f| f >= completed);
        report.push(
            "finalized_at",
            ok,
            match receipt.finalized_at {
                Some(f) if ok => format!("{f}, at or after the quorum completed at {completed}"),
                Some(f) => format!("{f} is before the quorum completed at {completed}"),
                None => "missing although the quorum is met".to_string(),
            },
        );
    }
    report
}

/// Verifies a cosigned checkpoint note (from us or any C2SP-conformant signer) against a
/// registry. Signature lines whose name is not a registry DID are ignored, as C2SP verifiers
/// ignore unknown keys; a line under a registry DID whose key ID matches neither of the
/// member's keys fails.
pub fn verify_note(bytes: &[u8], registry: &Registry) -> (VerificationReport, Option<Checkpoint>) {
    let mut report = VerificationReport::default();
    let note = match Note::parse(bytes) {
        Ok(note) => note,
        Err(error) => {
            report.push("format", false, error.to_string());
            return (report, None);
        }
    };
    // Any c2sp.org/tlog-checkpoint body: zero or more extension lines.
    let plain = match TlogCheckpoint::parse(&note.text) {
        Ok(plain) => plain,
        Err(error) => {
            report.push("format", false, error.to_string());
            return (report, None);
        }
    };
    report.push(
        "format",
        true,
        format!(
            "C2SP checkpoint {} at size {}, root {}",
            plain.origin,
            plain.size,
            BASE64.encode(plain.root)
        ),
    );
    let (federation, namespace) = match plain.federation_namespace() {
        Ok(names) => names,
        Err(error) => {
            report.push(
                "federation",
                false,
                format!("{error}: a federation checkpoint's origin is <federation>/<namespace>"),
            );
            return (report, None);
        }
    };
    let federation_ok = federation == registry.name;
    report.push(
        "federation",
        federation_ok,
        if federation_ok {
            format!("origin belongs to {}", registry.name)
        } else {
            format!("origin {:?} is not in federation {:?}", plain.origin, registry.name)
        },
    );
    // The anchor line, when there is one, is checked; other extension lines are signed like
    // the rest of the body and not interpreted.
    let anchors: Vec<&str> = plain.anchor_lines().collect();
    let others = plain.extensions.len() - anchors.len();
    let others = match others {
        0 => String::new(),
        1 => "; 1 other extension line, signed, not interpreted".to_string(),
        n => format!("; {n} other extension lines, signed, not interpreted"),
    };
    let (checkpoint, signed_at) = match anchors.as_slice() {
        [] => {
            report.push(
                "extension",
                true,
                format!(
                    "no {ANCHOR_EXTENSION_TAG} line: checked as a plain C2SP checkpoint (origin, size, root, signatures){others}"
                ),
            );
            (None, None)
        }
        [line] => match AnchorClaim::parse_line(line) {
            Ok(claim) => {
                report.push(
                    "extension",
                    true,
                    format!(
                        "{ANCHOR_EXTENSION_TAG} line checked: hash {}, target {}, signed at {}, registry version {}{others}",
                        claim.algorithm,
                        claim.target,
                        crate::times::iso8601(claim.signed_at),
                        claim.registry_version
                    ),
                );
                // The checkpoint itself for those that go on (a proof bundle), when the body
                // is exactly the form our nodes sign.
                (Checkpoint::parse_body(&note.text).ok(), Some(claim.signed_at))
            }
            Err(error) => {
                report.push("extension", false, error.to_string());
                return (report, None);
            }
        },
        _ => {
            report.push(
                "extension",
                false,
                format!("{} {ANCHOR_EXTENSION_TAG} lines; a checkpoint has at most one", anchors.len()),
            );
            return (report, None);
        }
    };
    let mut statements = Vec::new();
    let mut ignored = 0usize;
    for line in &note.signatures {
        let Some((note_key, cosign_key)) = registry.verifier_keys(&line.name) else {
            ignored += 1;
            continue;
        };
        if note_key.matches(line) {
            statements.push(SignedStatement {
                node: &line.name,
                role: Role::Anchor,
                timestamp: signed_at.unwrap_or(0),
                signature: line.ed25519_signature().ok_or_else(|| "not a 64-byte signature".to_string()),
            });
        } else if cosign_key.matches(line) {
            let parts = line.cosignature_parts();
            statements.push(SignedStatement {
                node: &line.name,
                role: Role::Witness,
                timestamp: parts.map(|(t, _)| t).unwrap_or(0),
                signature: parts.map(|(_, s)| s).ok_or_else(|| "not a cosignature/v1 payload".to_string()),
            });
        } else {
            report.push(
                &format!("signature {}", line.name),
                false,
                "key ID matches neither of this member's registry keys",
            );
        }
    }
    if ignored > 0 {
        report.push("other signatures", true, format!("{ignored} from keys outside the registry, ignored"));
    }
    let signed = Signed { body: &note.text, namespace, signed_at };
    check_statements(&mut report, registry, &signed, &statements);
    (report, checkpoint)
}

/// Verifies many receipts at once with Ed25519 batch verification: the fast path for nodes
/// and auditors checking receipts in bulk. Returns one verdict per receipt, the same verdict
/// [`verify_receipt`] gives; when the batch fails, receipts are re-checked one by one to find
/// the bad ones.
pub fn verify_receipts_batch(receipts: &[FederationReceipt], registry: &Registry) -> Vec<bool> {
    let mut verdicts = vec![false; receipts.len()];
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut signatures: Vec<Signature> = Vec::new();
    let mut keys: Vec<VerifyingKey> = Vec::new();
    let mut in_batch = Vec::new();
    for (index, receipt) in receipts.iter().enumerate() {
        if let Some(prepared) = prepare_receipt(receipt, registry) {
            for (message, signature, key) in prepared {
                messages.push(message);
                signatures.push(signature);
                keys.push(key);
            }
            in_batch.push(index);
        }
    }
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    if crate::signature::verify_batch_known(&message_refs, &signatures, &keys) {
        for index in in_batch {
            verdicts[index] = true;
        }
    } else {
        for index in in_batch {
            verdicts[index] = verify_receipt(&receipts[index], registry).all_ok();
        }
    }
    verdicts
}

/// Structural checks of [`verify_receipt`] without the signature arithmetic; returns the
/// (message, signature, key) triples to verify, or None when the receipt already fails.
pub(crate) fn prepare_receipt(
    receipt: &FederationReceipt,
    registry: &Registry,
) -> Option<Vec<(Vec<u8>, Signature, VerifyingKey)>> {
    if receipt.receipt_type != RECEIPT_TYPE
        || receipt.federation_id != registry.name
        || receipt.registry_version != registry.version
        || validate_namespace(&receipt.namespace).is_err()
    {
        return None;
    }
    let checkpoint = receipt.checkpoint_ref().ok()?;
    let body = checkpoint.body();
    let mut triples = Vec::with_capacity(receipt.signatures.len());
    // Each node once: compared with those before it, or through a set for many signatures.
    let mut seen = BTreeSet::new();
    let few = receipt.signatures.len() <= FEW_SIGNATURES;
    for (index, entry) in receipt.signatures.iter().enumerate() {
        let member = registry.member(&entry.node)?;
        let again = if few {
            receipt.signatures[..index].iter().any(|earlier| earlier.node == entry.node)
        } else {
            !seen.insert(entry.node.as_str())
        };
        if again || member.status == PeerStatus::Suspended {
            return None;
        }
        let message = match entry.role {
            Role::Anchor => {
                if !registry.may_anchor(&entry.node, &receipt.namespace)
                    || entry.timestamp != checkpoint.anchor.signed_at
                {
                    return None;
                }
                body.as_bytes().to_vec()
            }
            Role::Witness => cosignature_message(entry.timestamp, &body),
        };
        let raw = parse_multibase_signature(&entry.sig).ok()?;
        triples.push((message, Signature::from_bytes(&raw), member.key));
    }
    // Only a final receipt verifies: quorum reached, `quorum_met` set, `finalized_at` after it.
    let completed = quorum_completion_time(&receipt.signatures, registry)?;
    if !receipt.quorum_met || receipt.finalized_at.is_none_or(|f| f < completed) {
        return None;
    }
    Some(triples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AnchorPropagation, Member};
    use proptest::prelude::*;

    /// Six members, the last two on probation and suspended.
    fn registry(quorum: u32) -> Registry {
        let members = (0..6u8)
            .map(|i| {
                let did = format!("did:vm:node:n{i}");
                let status = match i {
                    4 => PeerStatus::Probation,
                    5 => PeerStatus::Suspended,
                    _ => PeerStatus::Active,
                };
                let key = NodeIdentity::from_seed(&did, [i + 1; 32]).expect("identity").verifying_key();
                (did.clone(), Member { did, key, status, endpoint: None, namespaces: Vec::new() })
            })
            .collect();
        Registry {
            name: "fed".to_string(),
            version: 1,
            quorum,
            members,
            anchor_propagation: AnchorPropagation::default(),
        }
    }

    /// The rule as first written: walk the signatures in time order and take the time of the
    /// quorum-th distinct active signer.
    fn completion_by_walking(signatures: &[SignatureJson], registry: &Registry) -> Option<u64> {
        let mut ordered: Vec<&SignatureJson> = signatures.iter().collect();
        ordered.sort_by_key(|s| s.timestamp);
        let mut seen = BTreeSet::new();
        let mut times = Vec::new();
        for entry in ordered {
            let active = registry.member(&entry.node).is_some_and(|m| m.status == PeerStatus::Active);
            if active && seen.insert(entry.node.as_str()) {
                times.push(entry.timestamp);
            }
        }
        let quorum = registry.quorum as usize;
        (quorum >= 1 && times.len() >= quorum).then(|| times[quorum - 1])
    }

    proptest! {
        #[test]
        fn the_quorum_is_complete_when_walking_the_signatures_in_time_order_says(
            entries in proptest::collection::vec((0u8..8, 0u64..20), 0..40),
            quorum in 0u32..6,
        ) {
            // Nodes 6 and 7 are outside the registry; repeats and ties included.
            let signatures: Vec<SignatureJson> = entries
                .iter()
                .map(|&(node, timestamp)| SignatureJson {
                    node: format!("did:vm:node:n{node}"),
                    sig: String::new(),
                    role: Role::Witness,
                    timestamp,
                })
                .collect();
            let registry = registry(quorum);
            prop_assert_eq!(
                quorum_completion_time(&signatures, &registry),
                completion_by_walking(&signatures, &registry)
            );
        }
    }
}
