//! What the explorer shows, as the node publishes it: one `Snapshot`, rebuilt by the node's
//! loop within 100 ms of an engine event (and every second anyway) and read by the explorer's
//! server, so that page views never wait on the engine. Each view's JSON twin is the same struct its HTML page is drawn from.

use std::collections::BTreeMap;

use serde::Serialize;

/// Evidence shown, newest first, at most.
pub const EVIDENCE_SHOWN: usize = 256;
/// Final receipts in the witnesses' grid, at most.
pub const CHECKPOINTS_SHOWN: usize = 24;
/// Audit entries shown, newest first, at most.
pub const AUDIT_SHOWN: usize = 200;

/// Everything public the node knows of its federation, at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Its place in the node's sequence of snapshots (from 1; 0 before the first).
    pub sequence: u64,
    /// When it was built (Unix milliseconds).
    pub generated_at_ms: u64,
    /// The overview.
    pub overview: Overview,
    /// Every registry member, suspended ones included.
    pub members: Vec<MemberView>,
    /// Every namespace the node knows a final receipt of or owns, by name.
    pub namespaces: Vec<NamespaceView>,
    /// Evidence held: equivocations and claims out of turn.
    pub evidence: Vec<EvidenceView>,
    /// Who signed the recent final receipts.
    pub witnesses: WitnessesView,
    /// The refusals this node recorded, newest first.
    pub audit: Vec<AuditView>,
}

/// The recent final receipts this node saw, newest first, and who signed each.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WitnessesView {
    /// The receipts (the grid's columns).
    pub checkpoints: Vec<CheckpointView>,
    /// One row per member: its part in each receipt, in the columns' order.
    pub rows: Vec<WitnessRow>,
    /// This node's own commit-to-final times: (upper bound in ms, receipts) per bucket.
    pub finality_histogram: Vec<(u64, u64)>,
}

/// One final receipt of the grid.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckpointView {
    /// Its namespace.
    pub namespace: String,
    /// Its tree size.
    pub size: u64,
    /// When the quorum was reached (Unix seconds).
    pub finalized_at: Option<u64>,
}

/// A member's part in the recent receipts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WitnessRow {
    /// The member.
    pub did: String,
    /// Its state.
    pub status: String,
    /// Per receipt: `owner` (it anchored it), `cosigned`, `late` (its cosignature is timed
    /// after the quorum was reached) or `absent` (not among the receipt's signers: a receipt
    /// carries the signatures that made its quorum, so a cosignature that came after is not
    /// in it).
    pub cells: Vec<String>,
    /// Receipts of others it is a signer of.
    pub hits: u64,
    /// Receipts of others it is not a signer of.
    pub absent: u64,
}

/// One refusal of the audit trail.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditView {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The peer it came from.
    pub peer: String,
    /// Why it was refused.
    pub what: String,
    /// What was seen.
    pub detail: String,
}

/// The federation at a glance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    /// The federation's name.
    pub federation: String,
    /// The registry version in force here.
    pub registry_version: u64,
    /// Signers a receipt needs.
    pub quorum: u32,
    /// Members listed.
    pub members: usize,
    /// Members per state (`active`, `probation`, `suspended`).
    pub members_by_state: BTreeMap<String, u64>,
    /// Namespaces known.
    pub namespaces: usize,
    /// Of them, with records not yet under a final receipt (owned by this node).
    pub namespaces_pending: usize,
    /// Time since the newest final receipt was finalized, ms.
    pub newest_final_age_ms: Option<u64>,
    /// Equivocation evidence held.
    pub evidence_equivocations: usize,
    /// Evidence of epoch anchors claimed out of turn held.
    pub evidence_claims: usize,
    /// Of the evidence held, the pieces this node raised or received in the last 24 h (since
    /// it started, at most: evidence read back from the store at start has no time).
    pub evidence_last_day: usize,
    /// Where anchors go (`local`, `eip155:…`, `rfc3161`).
    pub anchoring: String,
    /// The node serving this page.
    pub node: NodeView,
}

/// The node serving the explorer: who it is and how in step it is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeView {
    /// Its DID.
    pub did: String,
    /// Its PeerId.
    pub peer_id: String,
    /// Other members connected.
    pub connected_members: usize,
    /// Commit-to-final of its own receipts, p50 and p99, ms.
    pub finality_ms_p50: Option<f64>,
    /// p99.
    pub finality_ms_p99: Option<f64>,
}

/// One member.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemberView {
    /// Its DID.
    pub did: String,
    /// Its PeerId (from its registry key).
    pub peer_id: Option<String>,
    /// Its registry key: the Ed25519 public key, base64 (what the browser's verifier checks
    /// signatures with).
    pub key: String,
    /// `active`, `probation` or `suspended`.
    pub status: String,
    /// Namespaces it owns.
    pub namespaces: Vec<String>,
    /// Connected to the node serving this page.
    pub connected: bool,
    /// This node itself.
    pub is_self: bool,
    /// Messages of it this node accepted.
    pub accepted: u64,
    /// Messages of it refused for dishonesty (bad signatures, forks).
    pub honesty_refusals: u64,
    /// Its share of answered requests, when any were made.
    pub reliability: Option<f64>,
    /// When this node last heard from it (Unix ms).
    pub last_seen_ms: Option<u64>,
    /// Its changes of state in the registry's update chain, oldest first.
    pub history: Vec<StateChange>,
}

/// A member's change of state, as a registry update made it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateChange {
    /// The registry version the update made.
    pub version: u64,
    /// Its state before (none: it was not a member).
    pub from: Option<String>,
    /// Its state after (none: it was removed).
    pub to: Option<String>,
    /// Why, as the update's proposal says (`join`, `equivocation`, `misbehavior`, …).
    pub reason: String,
}

/// One namespace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NamespaceView {
    /// Its name.
    pub namespace: String,
    /// The member that owns it, if the registry lists one.
    pub owner: Option<String>,
    /// Records in its tree (known for the namespaces this node owns).
    pub latest_size: Option<u64>,
    /// Records under its newest final receipt.
    pub final_size: u64,
    /// That receipt's root (`sha256:…`).
    pub final_root: Option<String>,
    /// When that receipt was finalized (Unix seconds).
    pub finalized_at: Option<u64>,
    /// Who signed it: the owner first, then the witnesses.
    pub signers: Vec<String>,
    /// The registry version it was counted under.
    pub registry_version: Option<u64>,
    /// Records not yet final (owned namespaces).
    pub pending: Option<bool>,
    /// That receipt as the C2SP signed note its signatures cover.
    pub note: Option<String>,
    /// Where that receipt's root was anchored: the target (`local`, `eip155:…`, `rfc3161`),
    /// and the transaction and block when on a chain.
    pub anchor: Option<String>,
    /// Commit to final of this node's own recent receipts of it, p50 and p95 (ms).
    pub finality_ms_p50: Option<f64>,
    /// p95.
    pub finality_ms_p95: Option<f64>,
}

/// One piece of evidence.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvidenceView {
    /// Its id (`federation evidence list` shows the same).
    pub id: String,
    /// `equivocation` (two checkpoints of one size) or `claim` (an epoch anchor claimed out
    /// of turn).
    pub kind: String,
    /// The member it holds against.
    pub signer: String,
    /// The namespace (equivocation).
    pub namespace: Option<String>,
    /// The tree size both checkpoints name (equivocation).
    pub size: Option<u64>,
    /// The epoch (claim).
    pub epoch: Option<u64>,
    /// The two signed checkpoints, verbatim (equivocation).
    pub statements: Vec<String>,
    /// The evidence file `remembrancer verify evidence` checks (and the browser, for an
    /// equivocation).
    #[serde(skip)]
    pub file: serde_json::Value,
}
