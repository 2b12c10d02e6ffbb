//! The federation engine: the anchor replication flow as a pure state machine,
//! `Engine::handle(input, now_ms) -> outputs`. No I/O, no clock, no randomness: the same
//! engine runs under the real node, under the simulator and in unit tests.
//!
//! Flow (spec: Anchor Replication Flow): the owner commits a batch and signs the checkpoint
//! (anchor), broadcasts it with a consistency proof from its last final size; each witness
//! checks it (registered active sender that owns the namespace, valid signature, consistent
//! with the last checkpoint it countersigned, fresh timestamp, not a replay) and broadcasts its
//! `cosignature/v1`; at quorum the owner assembles the federation receipt and broadcasts it;
//! every node verifies and keeps it. Heartbeats carry finalized sizes so a node that missed
//! messages asks for what it lacks. Two owner-signed checkpoints of one size with different
//! roots are equivocation evidence: kept, broadcast, and written to the audit trail.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::anchoring::{election_order, epoch_root, AnchorReference, EpochEntry};
use crate::checkpoint::{AnchorClaim, Checkpoint};
use crate::governance::{admission, status_change, ProposalReason, ProposalSignature, RegistryProposal};
use crate::hash::{Digest, HashAlgorithm};
use crate::identity::NodeIdentity;
use crate::merkle::{verify_consistency, MemoryTree, NodeStore, TreeError};
use crate::message::{
    AnchorContent, Content, CountersignContent, EpochAnchorContent, EvidenceContent, HeartbeatContent,
    PeerMessage, ReceiptContent, RegistryContent, RequestContent, RequestKind,
};
use crate::note::{cosignature_message, Note, NoteError, NoteSignature, NoteView, SIGNATURE_TYPE_ED25519};
use crate::receipt::{
    countersign_body, prepare_receipt, sign_anchor_raw, verify_receipts_batch, FederationReceipt, Role,
    SignatureJson,
};
use crate::registry::{AnchorMode, Member, PeerStatus, Registry};

mod guard;
use guard::Guard;
pub use guard::SignRefusal;

/// Why the engine did not act on an input. After one, nothing the input produced is to be
/// acted on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A tree's node store failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// Signing, or committing records to, an owned namespace would break the owner's promise
    /// (see [`SignRefusal`]): the namespace is halted.
    #[error("refused: {0}")]
    Refused(#[from] SignRefusal),
}

/// Anchors awaiting their quorum, per namespace; older ones are dropped first.
pub const PENDING_ANCHORS_MAX: usize = 16;
/// Message digests remembered against replay.
pub const SEEN_MESSAGES_MAX: usize = 65_536;
/// Evidence records kept in memory (all are also persisted).
pub const EVIDENCE_MAX: usize = 1024;
/// Audit entries kept in memory (all are also persisted).
pub const AUDIT_MAX: usize = 4096;
/// Registry proposals gathering signatures at once.
pub const PROPOSALS_MAX: usize = 64;
/// Registry versions (and applied updates) kept in memory (all are also persisted).
pub const REGISTRY_VERSIONS_MAX: usize = 1024;
/// Own recent checkpoints whose countersignatures are scored for reliability.
pub const RECENT_ANCHORS_MAX: usize = 256;
/// Signed notes remembered as verified, at most.
pub const VERIFIED_NOTES_MAX: usize = 4096;

/// Digests of verified notes, as a set and in insertion order.
type VerifiedNotes = (BTreeSet<[u8; 32]>, VecDeque<[u8; 32]>);
/// Epochs whose receipts and anchors are kept in memory.
pub const EPOCHS_KEPT: usize = 64;
/// An epoch anchor entry's encoded bytes besides its namespace, at most (CBOR map keys and
/// headers, size, 32-byte root).
const EPOCH_ENTRY_BYTES: usize = 72;
/// Room an epoch anchor message keeps for what is not its entries (sender, signature, root,
/// anchor reference).
const EPOCH_ANCHOR_OTHER_BYTES: usize = 8192;
/// Hybrid mode: secondaries (by election rank) that stand by for each epoch.
pub const HYBRID_SECONDARIES: usize = 3;
/// Most records one commit may carry.
pub const COMMIT_RECORDS_MAX: usize = 1_000_000;

/// Catch-up requests awaiting an answer, per namespace.
pub const CATCH_UP_PENDING_MAX: usize = 1024;
/// Signatures one [`Engine::preverify`] checks in its batch, at most (those of the messages
/// that do not fit are verified when the messages are handled): room for the cosignatures of
/// several receipts of a 100-member federation (67 each at quorum 67), which verify faster
/// together since their witnesses' keys count once.
pub const PREVERIFY_MAX: usize = 1024;

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// How far a message's timestamp may be from our clock, in milliseconds.
    pub skew_window_ms: u64,
    /// Interval between heartbeats, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// First delay before an unanswered anchor is broadcast again, in milliseconds; it
    /// doubles on every retry (geometric backoff).
    pub anchor_retry_base_ms: u64,
    /// Most re-broadcasts of one anchor.
    pub anchor_retries_max: u32,
    /// Own anchors awaiting their quorum per namespace, at most (flow control, at most
    /// [`PENDING_ANCHORS_MAX`]): a commit beyond it is stored and joins the next anchor, signed
    /// when an earlier one finalizes. A federation slower than the commits then gets fewer,
    /// larger checkpoints instead of a growing backlog of anchors and retries.
    pub anchors_in_flight_max: usize,
    /// Hash algorithm of the namespaces this node creates.
    pub algorithm: HashAlgorithm,
    /// Sign operator (manual) registry proposals automatically.
    pub approve_manual: bool,
    /// Sign every well-formed join proposal automatically (admission policy `open`); when
    /// false, joins wait for an operator's [`Input::Approve`] (policy `manual`).
    pub approve_joins: bool,
    /// Length of an anchoring epoch (collaborative and hybrid modes), in milliseconds.
    pub epoch_ms: u64,
    /// Hybrid mode: how long after an epoch's end each secondary waits, per rank, for the
    /// primary's anchor before anchoring itself, in milliseconds.
    pub anchor_deadline_ms: u64,
    /// Whom countersignatures and heartbeats go to.
    pub fanout: Fanout,
    /// A countersignature arriving later than this after the anchor counts as late in the
    /// witness's reliability score, in milliseconds.
    pub countersign_deadline_ms: u64,
    /// Honesty refusals of a peer after which this node proposes its probation.
    pub probation_rejections: u64,
    /// Time without honesty refusals after which a peer on probation is proposed for
    /// reinstatement, in milliseconds.
    pub reinstate_after_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            skew_window_ms: 300_000,
            heartbeat_interval_ms: 1_000,
            anchor_retry_base_ms: 500,
            anchor_retries_max: 6,
            anchors_in_flight_max: 4,
            algorithm: HashAlgorithm::Sha256,
            approve_manual: false,
            approve_joins: false,
            epoch_ms: 10_000,
            anchor_deadline_ms: 3_000,
            fanout: Fanout::Logarithmic,
            countersign_deadline_ms: 1_000,
            probation_rejections: 20,
            reinstate_after_ms: 600_000,
        }
    }
}

/// Whom a witness sends its countersignature (besides the owner) and a node its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// Everyone: the spec's broadcast; N^2 deliveries per checkpoint.
    All,
    /// floor(log2 N) + 2 peers chosen by hash per message: N log N deliveries per checkpoint.
    Logarithmic,
    /// This many peers chosen by hash per message.
    Fixed(usize),
}

/// Timers the engine asks its host to set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Send a heartbeat.
    Heartbeat,
    /// The end of an anchoring epoch: the elected node anchors it.
    EpochEnd {
        /// The epoch that ended.
        epoch: u64,
    },
    /// Hybrid mode: a secondary's deadline for the primary's anchor of `epoch`.
    EpochDeadline {
        /// The epoch.
        epoch: u64,
    },
    /// Re-broadcast the anchor of `namespace` at `size` if it is not final yet.
    AnchorRetry {
        /// Namespace.
        namespace: String,
        /// Checkpoint size.
        size: u64,
        /// Retry number (1-based).
        attempt: u32,
    },
}

/// What the engine reacts to.
#[derive(Debug, Clone)]
pub enum Input {
    /// Start: the engine asks for its first heartbeat timer.
    Start,
    /// The local application commits records to a namespace this node owns.
    Commit {
        /// Namespace.
        namespace: String,
        /// The records.
        records: Vec<Vec<u8>>,
    },
    /// A message arrived (decoded but not yet verified).
    Message(PeerMessage),
    /// A message that arrived from its sender itself, on a connection the transport
    /// authenticated as the sender's registry key (libp2p's noise handshake proves the
    /// remote's key, and a member's PeerId is its registry key): the transport vouches for
    /// who sent these exact bytes, so the message signature is not verified again. The
    /// statements inside (notes, cosignatures, receipts, proposals) are verified as always.
    /// A host passes this only when the connection's key is the registry key of
    /// `message.sender`; anything relayed or of doubtful origin is an [`Input::Message`].
    FromSender(PeerMessage),
    /// A timer fired.
    Timer(Timer),
    /// The operator asks for a checkpoint of an owned namespace now (`propagate-anchor`):
    /// its current size is signed and broadcast unless that size is already final.
    AnchorNow {
        /// Namespace.
        namespace: String,
    },
    /// This node, outside the registry, asks to join (`federation join`): it proposes its
    /// own admission ([`crate::governance::admission`]) and broadcasts the proposal, signed
    /// with its key. Nothing happens when it is already a member.
    RequestJoin {
        /// Namespaces it will own.
        namespaces: Vec<String>,
        /// Endpoint hint.
        endpoint: Option<String>,
    },
    /// The operator approves a proposal this node holds (`federation approve`): the node
    /// signs it whatever its reason (admission policy `manual`).
    Approve {
        /// The proposal's digest.
        digest: [u8; 32],
    },
    /// The host anchored what `Output::AnchorRequest` asked for.
    Anchored {
        /// Which request.
        request: AnchorRequestId,
        /// Where the root was anchored.
        reference: AnchorReference,
    },
}

/// What an anchor request is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnchorRequestId {
    /// Independent mode: one final receipt of an owned namespace.
    Receipt {
        /// Namespace.
        namespace: String,
        /// Size.
        size: u64,
    },
    /// Collaborative and hybrid modes: the final receipts of one epoch (each namespace's
    /// largest).
    Epoch(u64),
}

/// What the engine asks its host to persist. Hosts persist before publishing what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// Records appended to an owned namespace, starting at `first_index`.
    Records {
        /// Namespace.
        namespace: String,
        /// Index of the first record.
        first_index: u64,
        /// The records.
        records: Vec<Vec<u8>>,
    },
    /// A checkpoint this node signed as anchor (the signed note).
    Anchored {
        /// Namespace.
        namespace: String,
        /// The checkpoint's tree size.
        size: u64,
        /// The note text.
        note: String,
    },
    /// A checkpoint this node countersigned.
    Countersigned {
        /// Namespace.
        namespace: String,
        /// The checkpoint's tree size.
        size: u64,
        /// The owner-signed note (restored at start: what this witness last countersigned).
        note: String,
        /// The cosignature entry.
        signature: SignatureJson,
    },
    /// A final receipt.
    FinalReceipt(Arc<FederationReceipt>),
    /// Equivocation evidence.
    Evidence(Evidence),
    /// An audit-trail entry.
    Audit(AuditEntry),
    /// A registry update that reached quorum, with its signatures.
    RegistryApplied(Box<RegistryContent>),
}

/// Splits an input's outputs into what to persist (first, as one batch) and the rest, in order.
pub fn split_persist(outputs: Vec<Output>) -> (Vec<Persist>, Vec<Output>) {
    let mut persist = Vec::new();
    let mut rest = Vec::with_capacity(outputs.len());
    for output in outputs {
        match output {
            Output::Persist(p) => persist.push(p),
            other => rest.push(other),
        }
    }
    (persist, rest)
}

/// Events for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A receipt became final here.
    Finalized {
        /// Namespace.
        namespace: String,
        /// Size.
        size: u64,
        /// Milliseconds from the anchor to finality, when this node anchored.
        latency_ms: Option<u64>,
    },
    /// A message was refused.
    Rejected {
        /// Sender as claimed.
        sender: String,
        /// Why.
        reason: Rejection,
    },
    /// A root was anchored: by this node (independent, or as an epoch's anchorer), or by
    /// the peer whose epoch anchor this node accepted.
    Anchored {
        /// What was anchored.
        request: AnchorRequestId,
        /// Who anchored it.
        anchorer: String,
        /// The anchorer's place in this node's election order for the epoch (0 = primary);
        /// None in independent mode.
        rank: Option<usize>,
    },
    /// A registry update took effect.
    RegistryChanged {
        /// The new version.
        version: u64,
    },
    /// A registry change this node wanted to propose is not valid.
    ProposalRefused {
        /// Who it was about.
        peer: String,
        /// Why (for example: it would leave fewer active members than the quorum).
        reason: String,
    },
    /// This node stopped signing and committing for one of its namespaces (see
    /// [`SignRefusal`]); reported once per namespace.
    Halted(SignRefusal),
    /// A namespace owner signed two different roots for one size.
    Equivocation {
        /// The owner.
        signer: String,
        /// Namespace.
        namespace: String,
        /// Size.
        size: u64,
    },
}

/// What the engine asks of its host.
#[derive(Debug, Clone)]
pub enum Output {
    /// Broadcast to the federation. Anchors, countersignatures and receipts come unsealed
    /// ([`PeerMessage::unsealed`]): on a member's own message stream the connection proves
    /// the sender, and the receiver takes it as [`Input::FromSender`]; a host that gossips
    /// the message instead seals it first ([`PeerMessage::seal`]), or every member refuses
    /// it. The rest come sealed.
    Publish(PeerMessage),
    /// Send to one peer.
    Send {
        /// The peer's DID.
        to: String,
        /// The message.
        message: PeerMessage,
    },
    /// Persist.
    Persist(Persist),
    /// Fire `timer` at `at_ms`.
    SetTimer {
        /// Which timer.
        timer: Timer,
        /// When, in host milliseconds.
        at_ms: u64,
    },
    /// Tell the operator.
    Event(Event),
    /// Anchor `root` at the anchor target, then answer with `Input::Anchored`.
    AnchorRequest {
        /// What the root stands for.
        request: AnchorRequestId,
        /// The root.
        root: Digest,
    },
}

/// Why a message was refused; each is counted per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// The sender is not in the registry.
    UnknownSender,
    /// The sender is suspended.
    Suspended,
    /// The message signature does not verify.
    BadSignature,
    /// The timestamp is outside the skew window.
    Stale,
    /// The same message was seen before.
    Replay,
    /// The content is malformed (note, checkpoint, origin).
    Malformed,
    /// An anchor from a member that does not own the namespace, or for another federation.
    NotOwner,
    /// An anchor signature or cosignature does not verify.
    BadStatement,
    /// A checkpoint inconsistent with the last one countersigned (bad or missing proof).
    Inconsistent,
    /// A receipt that does not verify under the registry.
    BadReceipt,
    /// Evidence that does not prove anything.
    BadEvidence,
}

impl Rejection {
    /// Whether the peer provably made the refused statement (its message signature held).
    pub fn speaks_to_honesty(self) -> bool {
        matches!(
            self,
            Rejection::BadStatement
                | Rejection::Inconsistent
                | Rejection::NotOwner
                | Rejection::BadReceipt
                | Rejection::BadEvidence
        )
    }
}

/// Two signed checkpoints of one namespace and size with different roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The equivocating owner.
    pub signer: String,
    /// Namespace.
    pub namespace: String,
    /// Size.
    pub size: u64,
    /// First signed note.
    pub first: String,
    /// Second signed note.
    pub second: String,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (host milliseconds).
    pub at_ms: u64,
    /// Who the entry is about.
    pub peer: String,
    /// What happened.
    pub what: Rejection,
    /// Detail for the analyst.
    pub detail: String,
}

/// Per-peer counters: what steers whom a node trusts, never what counts toward a quorum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerScore {
    /// Messages accepted.
    pub accepted: u64,
    /// Messages refused, by reason.
    pub rejected: BTreeMap<Rejection, u64>,
    /// Last time a valid message arrived (host milliseconds).
    pub last_seen_ms: Option<u64>,
    /// Last time a message was refused for a reason that speaks to honesty.
    pub last_rejected_ms: Option<u64>,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Countersignatures of this node's checkpoints that arrived within
    /// `countersign_deadline_ms` of the anchor.
    pub countersigns_on_time: u64,
    /// Countersignatures of this node's checkpoints that arrived later.
    pub countersigns_late: u64,
}

impl PeerScore {
    /// Reliability as this node sees it: the share of the peer's countersignatures of our
    /// checkpoints that came on time (None before any). Local only: it steers whom a node
    /// talks to and transport scoring, never what counts toward a quorum.
    pub fn reliability(&self) -> Option<f64> {
        let total = self.countersigns_on_time + self.countersigns_late;
        (total > 0).then(|| self.countersigns_on_time as f64 / total as f64)
    }

    /// Refusals that speak to the peer's honesty: statements it provably made (the message
    /// signature verified) that are forged, inconsistent or unverifiable. A bad message
    /// signature or a replay is not counted here: anyone can send those under another's name.
    pub fn honesty_rejections(&self) -> u64 {
        self.rejected.iter().filter(|(reason, _)| reason.speaks_to_honesty()).map(|(_, count)| count).sum()
    }
}

/// A namespace this node owns.
#[derive(Debug)]
struct Owned<S> {
    tree: MemoryTree<S>,
    /// Last final (size, root).
    finalized: Option<(u64, Digest)>,
    /// Anchors awaiting quorum, by size.
    pending: BTreeMap<u64, Pending>,
    /// The last checkpoint signed, and the halt if a check failed.
    guard: Guard,
}

#[derive(Debug)]
struct Pending {
    checkpoint: Checkpoint,
    /// The checkpoint's body, as countersigned.
    body: String,
    note: String,
    signatures: BTreeMap<String, SignatureJson>,
    /// How many of `signatures` come from active members (the registry cannot change under
    /// a pending anchor: a registry change re-anchors).
    active: usize,
    anchored_at_ms: u64,
    /// How many signatures the anchor had at its last (re)broadcast or retry check: a retry
    /// broadcasts again only when none came since (see `retry_anchor`).
    heard_at_retry: usize,
}

/// The last checkpoint this node countersigned for a namespace it witnesses.
#[derive(Debug, Clone)]
struct Witnessed {
    size: u64,
    root: Digest,
    /// The owner-signed note, kept as evidence material.
    note: String,
    /// The registry version this node verified the note under, when it countersigned it
    /// (none when restored at start).
    verified_under: Option<u64>,
}

/// The federation engine of one node.
#[derive(Debug)]
pub struct Engine<S> {
    identity: NodeIdentity,
    registry: Arc<Registry>,
    /// The members other than this node that are not suspended, in registry order: the
    /// candidates of every gossip-peer choice, rebuilt when the registry changes.
    peers: Vec<String>,
    config: EngineConfig,
    new_store: StoreFactory<S>,
    owned: BTreeMap<String, Owned<S>>,
    witnessed: BTreeMap<String, Witnessed>,
    /// Per witnessed namespace, the checkpoints this node countersigned before its last one
    /// (at most [`PENDING_ANCHORS_MAX`], oldest first): other witnesses' countersigns of an
    /// owner's earlier anchors still in flight carry their notes
    /// ([`Engine::countersigned_here`]), and a second root signed for one of their sizes is
    /// evidence ([`Engine::witnessed_conflict`]).
    witnessed_earlier: BTreeMap<String, VecDeque<Witnessed>>,
    finals: BTreeMap<String, Arc<FederationReceipt>>,
    seen: DigestSet,
    seen_order: VecDeque<u64>,
    evidence: Vec<Evidence>,
    evidence_seen: BTreeSet<[u8; 32]>,
    audit: VecDeque<AuditEntry>,
    scores: BTreeMap<String, PeerScore>,
    /// Every registry version known, to verify receipts counted under older ones.
    registries: BTreeMap<u64, Arc<Registry>>,
    /// The applied registry updates, in order, with their signatures.
    chain: Vec<RegistryContent>,
    /// Proposals gathering signatures, by digest.
    proposals: BTreeMap<[u8; 32], (RegistryProposal, BTreeMap<String, ProposalSignature>)>,
    /// Proposals the operator approved, by digest (at most `PROPOSALS_MAX`).
    approved: BTreeSet<[u8; 32]>,
    /// By the epoch in which they were stored here, each namespace's largest final receipt
    /// (size and root): one entry per namespace however many receipts an epoch had.
    epoch_finals: BTreeMap<u64, BTreeMap<String, (u64, Digest)>>,
    /// When each member's status last changed here (host milliseconds).
    status_changed_ms: BTreeMap<String, u64>,
    /// This node's recent checkpoints: anchor time, root, witnesses already scored.
    recent_anchors: BTreeMap<(String, u64), (u64, Digest, BTreeSet<String>)>,
    /// The winning anchor of each epoch: content, anchorer, digest.
    epoch_anchors: BTreeMap<u64, (EpochAnchorContent, String, [u8; 32])>,
    /// Epochs this node asked its host to anchor, with the entries.
    epoch_requests: BTreeMap<u64, Vec<EpochEntry>>,
    /// Catch-up requests sent and not yet answered: per namespace, the size asked for and
    /// when. Every heartbeat that shows a newer final would otherwise trigger one request
    /// (and one full receipt in reply) per peer; one heartbeat interval passes before the
    /// same size is asked of another peer.
    catch_up: BTreeMap<String, (u64, u64)>,
    /// The registry version last asked for, and when.
    registry_asked: Option<(u64, u64)>,
    /// Digests of signed notes whose owner signature this engine checked (first in, first
    /// out, at most `VERIFIED_NOTES_MAX`): one note arrives in the anchor and again in every
    /// countersignature of it, and is verified once.
    verified_notes: std::sync::Mutex<VerifiedNotes>,
    /// Messages whose signatures the last [`Engine::preverify`] proved, by
    /// [`PeerMessage::signed_digest`], with the key they were checked against (at most
    /// `PREVERIFY_MAX`; each is used once).
    preverified: BTreeMap<[u8; 32], VerifyingKey>,
    /// Own anchors broadcast again because a retry interval passed without a countersignature.
    anchors_rebroadcast: u64,
}

/// Makes the node store of a namespace this node comes to own, from its name and algorithm.
struct StoreFactory<S>(Box<MakeStore<S>>);

type MakeStore<S> = dyn Fn(&str, HashAlgorithm) -> S + Send + Sync;

impl<S> std::fmt::Debug for StoreFactory<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreFactory")
    }
}

/// A set of seen messages' keys ([`seen_key`]: the first eight bytes of a SHA-256 digest),
/// hashed as they are: nobody chooses a digest, so they are uniform already, and with no
/// random state a run stays reproducible. Lookups in the 65 536 seen messages cost a B-tree
/// walk of 32-byte comparisons per message before; with whole digests the set and its order
/// took 6 MiB, and its lookups and evictions (a cache miss or two each) 1.5% of a node's time.
type DigestSet = std::collections::HashSet<u64, std::hash::BuildHasherDefault<DigestHasher>>;

/// See [`DigestSet`].
#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(8) ^ u64::from_le_bytes(first);
    }
}

/// The namespace of a checkpoint note, read from its origin line (`<federation>/<namespace>`)
/// without parsing or checking the rest.
fn note_namespace(note_text: &str) -> Option<&str> {
    let (origin, _) = note_text.split_once('\n')?;
    Some(origin.split_once('/')?.1)
}

/// The namespace and size of a checkpoint note, read from its first two lines (origin, then
/// the size) without parsing or checking the rest.
fn namespace_and_size(note_text: &str) -> Option<(&str, u64)> {
    let size = note_text.split('\n').nth(1)?.parse().ok()?;
    Some((note_namespace(note_text)?, size))
}

/// Whether `key_id` on a note signature by `name` is that of `key` as `name`'s Ed25519 note
/// key: what the member's key from [`Registry::verifier_keys`] would match, without building
/// the verifier keys (two names a call, twice per anchor a node handles).
fn is_note_key(name: &str, key: &VerifyingKey, key_id: [u8; 4]) -> bool {
    key_id == crate::note::key_id(name, SIGNATURE_TYPE_ED25519, key)
}

/// The key under which a message is remembered as seen: the first 64 bits of a digest of
/// sender and signature (Ed25519 is deterministic, so one signed message has one signature).
/// Sixty-four bits suffice: a new honest message matches one of the 65 536 kept with
/// probability 2^-48, and to have an honest message refused as a replay, a sender would have
/// to find a message of its own whose key is that of a message not sent yet (2^64 tries); a
/// key it matches on purpose only refuses its own message.
fn seen_key(message: &PeerMessage) -> u64 {
    let digest: [u8; 32] = match message.signature() {
        Some(signature) => {
            Sha256::new().chain_update(message.sender.as_bytes()).chain_update(signature).finalize().into()
        }
        // Unsealed (only its sender's own connection brings one): what a signature would
        // cover fixes it.
        None => message.signed_digest(),
    };
    u64::from_le_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ])
}

/// The key under which a receipt's verdict under `registry` is memoized, from a hasher fed
/// with what fixes the receipt: its encoding ([`by_receipt_encoding`]), or the sender and
/// signature of a verified message that carried it.
fn receipt_verdict_key(fixed_by: Sha256, registry: &Registry) -> [u8; 32] {
    fixed_by
        .chain_update(b"remembrancer/receipt-verdict/v1\0")
        .chain_update(registry.name.as_bytes())
        .chain_update(registry.version.to_be_bytes())
        .finalize()
        .into()
}

/// A hasher fed with a receipt's encoding, for [`receipt_verdict_key`].
fn by_receipt_encoding(receipt: &FederationReceipt) -> Sha256 {
    let mut hasher = Sha256::new().chain_update([1]);
    // The bytes `receipt_cbor` returns, hashed as they are written.
    crate::message::hash_receipt_cbor(&mut hasher, receipt);
    hasher
}

/// Whether the statement (`key`, `signed`, `signature`) is in a batch being gathered already:
/// `statements` maps each signature in it to its index in `keys` and `bytes`. The same
/// signature bytes over other bytes or under another key are another statement.
fn in_batch(
    statements: &BTreeMap<[u8; 64], usize>,
    keys: &[VerifyingKey],
    bytes: &[Vec<u8>],
    (key, signed, signature): (&VerifyingKey, &[u8], &[u8; 64]),
) -> bool {
    statements.get(signature).is_some_and(|&i| keys[i] == *key && bytes[i] == signed)
}

/// The key under which a signed note is remembered as verified: the same bytes under the same
/// registry version verify the same way.
fn note_digest(registry_version: u64, note_text: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"remembrancer/verified-note/v1\0")
        .chain_update(registry_version.to_be_bytes())
        .chain_update(note_text.as_bytes())
        .finalize()
        .into()
}

/// Remembers a verified note (at most `VERIFIED_NOTES_MAX`, the oldest forgotten first).
fn remember_verified_note(verified_notes: &std::sync::Mutex<VerifiedNotes>, digest: [u8; 32]) {
    if let Ok(mut verified) = verified_notes.lock() {
        if verified.0.insert(digest) {
            verified.1.push_back(digest);
        }
        while verified.1.len() > VERIFIED_NOTES_MAX {
            if let Some(oldest) = verified.1.pop_front() {
                verified.0.remove(&oldest);
            }
        }
    }
}

/// The digest that deduplicates an evidence record: its two signed notes, in either order.
fn evidence_key(first: &str, second: &str) -> [u8; 32] {
    let (a, b) = if first <= second { (first, second) } else { (second, first) };
    Sha256::digest(format!("{a}\n{b}")).into()
}

/// The members of `registry` other than `own_did` that are not suspended, in registry order.
fn gossip_candidates(registry: &Registry, own_did: &str) -> Vec<String> {
    registry
        .members
        .values()
        .filter(|m| m.status != PeerStatus::Suspended && m.did != own_did)
        .map(|m| m.did.clone())
        .collect()
}

fn now_secs(now_ms: u64) -> u64 {
    now_ms / 1000
}

impl<S: NodeStore> Engine<S> {
    /// An engine for `identity` under `registry`; `new_store` makes the node store of each
    /// namespace this node creates.
    pub fn new(
        identity: NodeIdentity,
        registry: impl Into<Arc<Registry>>,
        config: EngineConfig,
        new_store: fn() -> S,
    ) -> Self
    where
        S: 'static,
    {
        Self::with_store_factory(identity, registry, config, move |_, _| new_store())
    }

    /// An engine whose node stores depend on the namespace and its hash algorithm (a store
    /// that reads the namespace's records back from disk, say).
    pub fn with_store_factory(
        identity: NodeIdentity,
        registry: impl Into<Arc<Registry>>,
        config: EngineConfig,
        new_store: impl Fn(&str, HashAlgorithm) -> S + Send + Sync + 'static,
    ) -> Self {
        let registry = registry.into();
        Engine {
            peers: gossip_candidates(&registry, identity.did()),
            identity,
            config,
            new_store: StoreFactory(Box::new(new_store)),
            owned: BTreeMap::new(),
            witnessed: BTreeMap::new(),
            witnessed_earlier: BTreeMap::new(),
            finals: BTreeMap::new(),
            seen: DigestSet::default(),
            seen_order: VecDeque::new(),
            evidence: Vec::new(),
            evidence_seen: BTreeSet::new(),
            audit: VecDeque::new(),
            scores: BTreeMap::new(),
            registries: BTreeMap::from([(registry.version, Arc::clone(&registry))]),
            chain: Vec::new(),
            proposals: BTreeMap::new(),
            approved: BTreeSet::new(),
            epoch_finals: BTreeMap::new(),
            epoch_anchors: BTreeMap::new(),
            epoch_requests: BTreeMap::new(),
            status_changed_ms: BTreeMap::new(),
            recent_anchors: BTreeMap::new(),
            catch_up: BTreeMap::new(),
            registry_asked: None,
            verified_notes: std::sync::Mutex::new((BTreeSet::new(), VecDeque::new())),
            preverified: BTreeMap::new(),
            anchors_rebroadcast: 0,
            registry,
        }
    }

    /// The current registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The winning anchor of each recent epoch, with its anchorer.
    pub fn epoch_anchors(&self) -> impl Iterator<Item = (u64, &str)> {
        self.epoch_anchors.iter().map(|(epoch, (_, anchorer, _))| (*epoch, anchorer.as_str()))
    }

    /// The applied registry updates, oldest first.
    pub fn registry_chain(&self) -> &[RegistryContent] {
        &self.chain
    }

    /// This node's DID.
    pub fn did(&self) -> &str {
        self.identity.did()
    }

    /// Signs a message this node publishes unsealed ([`Output::Publish`]), for a host about to
    /// send it anywhere but its own message streams to members (gossip, say).
    pub fn seal(&self, message: &mut PeerMessage) {
        message.seal(&self.identity);
    }

    /// The latest final receipt of each namespace known here.
    pub fn finals(&self) -> &BTreeMap<String, Arc<FederationReceipt>> {
        &self.finals
    }

    /// Own anchors broadcast again since start: each means a retry interval passed without a
    /// new countersignature (a lost message, a deaf federation, or a stalled machine).
    pub fn anchors_rebroadcast(&self) -> u64 {
        self.anchors_rebroadcast
    }

    /// Evidence held.
    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }

    /// Registry proposals gathering signatures: digest, proposal, the members that signed.
    pub fn proposals(&self) -> impl Iterator<Item = ([u8; 32], &RegistryProposal, Vec<&str>)> {
        self.proposals.iter().map(|(digest, (proposal, signatures))| {
            (*digest, proposal, signatures.keys().map(String::as_str).collect())
        })
    }

    /// Recent audit entries.
    pub fn audit(&self) -> impl Iterator<Item = &AuditEntry> {
        self.audit.iter()
    }

    /// Per-peer scores.
    pub fn scores(&self) -> &BTreeMap<String, PeerScore> {
        &self.scores
    }

    /// True when an owned namespace has as many own anchors pending as the window allows: a
    /// commit now would store its records without anchoring them.
    pub fn anchor_window_full(&self, namespace: &str) -> bool {
        self.owned.get(namespace).is_some_and(|owned| owned.pending.len() >= self.anchor_window())
    }

    /// The tree of an owned namespace.
    pub fn tree(&self, namespace: &str) -> Option<&MemoryTree<S>> {
        self.owned.get(namespace).map(|o| &o.tree)
    }

    /// The hash algorithm of the trees this engine starts for namespaces it commits to.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.config.algorithm
    }

    /// Every namespace this node holds a tree of as owner (restored or committed to, whether
    /// or not the current registry lists it), with its tree and, if it halted, why.
    pub fn owned_namespaces(&self) -> impl Iterator<Item = (&str, &MemoryTree<S>, Option<&SignRefusal>)> {
        self.owned
            .iter()
            .map(|(namespace, owned)| (namespace.as_str(), &owned.tree, owned.guard.halted.as_ref()))
    }

    /// The state of an owned namespace, made with an empty tree the first time.
    fn owned_entry(&mut self, namespace: &str, algorithm: HashAlgorithm) -> &mut Owned<S> {
        let new_store = &self.new_store;
        self.owned.entry(namespace.to_string()).or_insert_with(|| Owned {
            tree: MemoryTree::new(algorithm, (new_store.0)(namespace, algorithm)),
            finalized: None,
            pending: BTreeMap::new(),
            guard: Guard::default(),
        })
    }

    /// Restores an owned namespace's tree from its stored records, in index order (at start,
    /// before `Input::Start`). Returns the tree's size.
    pub fn restore_records<'a>(
        &mut self,
        namespace: &str,
        algorithm: HashAlgorithm,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<u64, TreeError> {
        let owned = self.owned_entry(namespace, algorithm);
        owned.tree.append_batch(records)?;
        Ok(owned.tree.size())
    }

    /// The records of an owned namespace below `size` are stored and can be read back (the
    /// tree's node store may drop what it can recompute from them).
    pub fn records_readable(&mut self, namespace: &str, size: u64) {
        if let Some(owned) = self.owned.get_mut(namespace) {
            owned.tree.store_mut().records_readable(size);
        }
    }

    /// Restores the last checkpoint this node signed for a namespace it owns, from its store
    /// (at start, after the namespace's records): from then on nothing is signed for the
    /// namespace at a smaller size or with another root at that size, and its next commit
    /// first checks the tree's root there. A namespace whose records were not restored gets
    /// an empty tree, which that check refuses.
    pub fn restore_signed(&mut self, namespace: &str, algorithm: HashAlgorithm, size: u64, root: Digest) {
        let owned = self.owned_entry(namespace, algorithm);
        owned.guard.restore_signed(size, root);
    }

    /// Restores a stored final receipt (the latest per namespace wins). A receipt of an owned
    /// namespace that this node anchored and its tree lacks or contradicts halts the
    /// namespace (see [`SignRefusal::FederationDisagrees`]).
    pub fn restore_final(&mut self, receipt: Arc<FederationReceipt>) {
        let namespace = receipt.namespace.clone();
        if self.finals.get(&namespace).is_some_and(|r| r.tree_size >= receipt.tree_size) {
            return;
        }
        let mut ignored = Vec::new();
        self.check_own_receipt(&receipt, &mut ignored);
        if let Some(owned) = self.owned.get_mut(&namespace) {
            owned.finalized = Some((receipt.tree_size, receipt.anchor.batch_root.value));
        }
        self.finals.insert(namespace, receipt);
    }

    /// Halts an owned namespace when `receipt`, anchored by this node, holds a size its tree
    /// lacks or a root its tree contradicts: the store lost what this node signed, and
    /// signing over it would equivocate.
    fn check_own_receipt(&mut self, receipt: &FederationReceipt, out: &mut Vec<Output>) {
        let Some(owned) = self.owned.get(&receipt.namespace) else { return };
        let anchored_here =
            receipt.signatures.iter().any(|s| s.role == Role::Anchor && s.node == self.identity.did());
        if !anchored_here {
            return;
        }
        let size = owned.tree.size();
        let what = if receipt.tree_size > size {
            "lacks"
        } else {
            match owned.tree.root_at(receipt.tree_size) {
                Ok(root) if root != receipt.anchor.batch_root.value => "contradicts",
                // Equal, or unreadable now (a store failure is not a disagreement).
                _ => return,
            }
        };
        let refusal = SignRefusal::FederationDisagrees {
            namespace: receipt.namespace.clone(),
            size,
            final_size: receipt.tree_size,
            what,
        };
        self.halt(refusal, out);
    }

    /// Restores what this node last countersigned for a namespace (the owner's signed note),
    /// so that a restarted witness never countersigns a second root for a size.
    pub fn restore_witnessed(&mut self, note_text: &str) -> Result<(), String> {
        let note = Note::parse(note_text.as_bytes()).map_err(|e| e.to_string())?;
        let checkpoint = Checkpoint::parse_body(&note.text).map_err(|e| e.to_string())?;
        let newer = self.witnessed.get(&checkpoint.namespace).is_none_or(|w| w.size <= checkpoint.size);
        if newer {
            self.witnessed.insert(
                checkpoint.namespace.clone(),
                Witnessed {
                    size: checkpoint.size,
                    root: checkpoint.root,
                    note: note_text.to_string(),
                    verified_under: None,
                },
            );
        }
        Ok(())
    }

    /// Re-applies a stored registry update that had reached quorum (in version order).
    pub fn restore_registry(&mut self, content: RegistryContent) -> Result<(), String> {
        if content.proposal.base_version < self.registry.version {
            return Ok(());
        }
        let next = content.proposal.apply(&self.registry).map_err(|e| e.to_string())?;
        self.install_registry(next, content);
        Ok(())
    }

    /// Makes `next` the current registry (kept among the known versions) and records the
    /// update that produced it in the chain.
    fn install_registry(&mut self, next: Registry, content: RegistryContent) {
        let next = Arc::new(next);
        self.peers = gossip_candidates(&next, self.identity.did());
        self.registry = Arc::clone(&next);
        self.registries.insert(next.version, next);
        while self.registries.len() > REGISTRY_VERSIONS_MAX {
            self.registries.pop_first();
        }
        self.chain.push(content);
        if self.chain.len() > REGISTRY_VERSIONS_MAX {
            self.chain.remove(0);
        }
    }

    /// Restores a peer's score.
    pub fn restore_score(&mut self, did: &str, score: PeerScore) {
        self.scores.insert(did.to_string(), score);
    }

    /// Restores an evidence record.
    pub fn restore_evidence(&mut self, evidence: Evidence) {
        let key = evidence_key(&evidence.first, &evidence.second);
        if self.evidence_seen.insert(key) && self.evidence.len() < EVIDENCE_MAX {
            self.evidence.push(evidence);
        }
    }

    /// Handles one input at host time `now_ms`; returns what the host must do, in order.
    pub fn handle(&mut self, input: Input, now_ms: u64) -> Result<Vec<Output>, EngineError> {
        let mut out = Vec::new();
        self.handle_into(input, now_ms, &mut out)?;
        Ok(out)
    }

    /// [`Engine::handle`], appending what the host must do to `out` (a host handling thousands
    /// of inputs a second keeps one buffer). After an error, what this input appended is not
    /// to be acted on: the host drops it, as it drops nothing `handle` returned.
    pub fn handle_into(
        &mut self,
        input: Input,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), EngineError> {
        match input {
            Input::Start => {
                out.push(Output::SetTimer {
                    timer: Timer::Heartbeat,
                    at_ms: now_ms + self.config.heartbeat_interval_ms,
                });
                if self.registry.anchor_propagation.mode != AnchorMode::Independent {
                    let epoch = now_ms / self.config.epoch_ms.max(1);
                    out.push(Output::SetTimer {
                        timer: Timer::EpochEnd { epoch },
                        at_ms: (epoch + 1) * self.config.epoch_ms.max(1),
                    });
                }
            }
            Input::Timer(Timer::EpochEnd { epoch }) => self.on_epoch_end(epoch, now_ms, out),
            Input::Timer(Timer::EpochDeadline { epoch }) => {
                if !self.epoch_anchors.contains_key(&epoch) {
                    self.request_epoch_anchor(epoch, out);
                }
            }
            Input::Anchored { request, reference } => self.on_anchored(request, reference, now_ms, out),
            Input::Commit { namespace, records } => self.commit(&namespace, records, now_ms, out)?,
            Input::AnchorNow { namespace } => {
                let unfinal = self.owned.get(&namespace).is_some_and(|o| {
                    o.tree.size() > 0 && o.finalized.is_none_or(|(size, _)| size < o.tree.size())
                });
                if unfinal {
                    if let Some(refusal) = self.refusal(&namespace)? {
                        return Err(refusal.into());
                    }
                    let size = self.owned.get(&namespace).map_or(0, |o| o.tree.size());
                    let pending = self.owned.get(&namespace).is_some_and(|o| o.pending.contains_key(&size));
                    if pending {
                        // Already signed at this size: broadcast the same note again (keeping the
                        // countersignatures gathered) and restart its retries.
                        self.publish_anchor(&namespace, size, None, now_ms, out)?;
                        if let Some(pending) =
                            self.owned.get_mut(&namespace).and_then(|o| o.pending.get_mut(&size))
                        {
                            pending.heard_at_retry = pending.signatures.len();
                        }
                        out.push(Output::SetTimer {
                            timer: Timer::AnchorRetry { namespace: namespace.clone(), size, attempt: 1 },
                            at_ms: now_ms + self.config.anchor_retry_base_ms,
                        });
                    } else {
                        self.anchor_current(&namespace, now_ms, out)?;
                    }
                }
            }
            Input::Message(message) => self.receive(message, false, now_ms, out)?,
            Input::FromSender(message) => self.receive(message, true, now_ms, out)?,
            Input::RequestJoin { namespaces, endpoint } => {
                self.request_join(namespaces, endpoint, now_ms, out)
            }
            Input::Approve { digest } => {
                if let Some((proposal, _)) = self.proposals.get(&digest).cloned() {
                    if self.approved.len() >= PROPOSALS_MAX {
                        self.approved.pop_first();
                    }
                    self.approved.insert(digest);
                    self.endorse(proposal, Vec::new(), now_ms, out);
                }
            }
            Input::Timer(Timer::Heartbeat) => {
                let finalized = self.finals.iter().map(|(ns, r)| (ns.clone(), r.tree_size)).collect();
                let content = Content::Heartbeat(HeartbeatContent {
                    registry_version: self.registry.version,
                    finalized,
                });
                let message = PeerMessage::sign(&self.identity, content, now_ms);
                // Heartbeats rotate over a few peers per interval under a limited fanout. A
                // node outside the registry (waiting to join) keeps quiet: members would
                // refuse what it says.
                let member = self.registry.member(self.identity.did()).is_some();
                match self.gossip_peers("", &format!("heartbeat {now_ms}")) {
                    _ if !member => {}
                    Some(peers) => {
                        for peer in peers {
                            out.push(Output::Send { to: peer, message: message.clone() });
                        }
                    }
                    None => out.push(Output::Publish(message)),
                }
                out.push(Output::SetTimer {
                    timer: Timer::Heartbeat,
                    at_ms: now_ms + self.config.heartbeat_interval_ms,
                });
                self.review_scores(now_ms, out);
            }
            Input::Timer(Timer::AnchorRetry { namespace, size, attempt }) => {
                self.retry_anchor(&namespace, size, attempt, now_ms, out)?;
            }
        }
        Ok(())
    }

    fn commit(
        &mut self,
        namespace: &str,
        records: Vec<Vec<u8>>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), EngineError> {
        if records.is_empty() || records.len() > COMMIT_RECORDS_MAX {
            return Ok(());
        }
        if crate::checkpoint::validate_namespace(namespace).is_err()
            || !self.registry.may_anchor(self.identity.did(), namespace)
        {
            return Ok(());
        }
        self.owned_entry(namespace, self.config.algorithm);
        // Checked before the records join the tree: a tree behind what this node signed would
        // give them the indices of records it acknowledged, a tree off what it signed would
        // make its next checkpoint equivocate. Once this holds, the appended tree extends the
        // signed one and `anchor_current` signs it.
        if let Some(refusal) = self.refusal(namespace)? {
            return Err(refusal.into());
        }
        let Some(owned) = self.owned.get_mut(namespace) else { return Ok(()) };
        let first_index = owned.tree.append_batch(records.iter().map(Vec::as_slice))?;
        let window_full = owned.pending.len() >= self.anchor_window();
        out.push(Output::Persist(Persist::Records {
            namespace: namespace.to_string(),
            first_index,
            records,
        }));
        if window_full {
            // Flow control: stored now, anchored with the next checkpoint once one finalizes.
            return Ok(());
        }
        self.anchor_current(namespace, now_ms, out)?;
        Ok(())
    }

    /// Why `namespace`'s tree must not be signed at its current size (see [`SignRefusal`]);
    /// the namespace is halted when there is a reason.
    fn refusal(&mut self, namespace: &str) -> Result<Option<SignRefusal>, TreeError> {
        let Some(owned) = self.owned.get_mut(namespace) else { return Ok(None) };
        let refusal = owned.guard.refusal(namespace, &owned.tree)?;
        if let Some(refusal) = &refusal {
            owned.guard.halt(refusal.clone());
        }
        Ok(refusal)
    }

    /// Halts an owned namespace and tells the host, once.
    fn halt(&mut self, refusal: SignRefusal, out: &mut Vec<Output>) {
        let Some(owned) = self.owned.get_mut(refusal.namespace()) else { return };
        if owned.guard.halt(refusal.clone()) {
            out.push(Output::Event(Event::Halted(refusal)));
        }
    }

    /// Signs and broadcasts a checkpoint of an owned namespace at its current size, under the
    /// current registry version, unless that would contradict the last checkpoint this node
    /// signed (the namespace halts instead: see [`SignRefusal`]).
    fn anchor_current(
        &mut self,
        namespace: &str,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let Some(owned) = self.owned.get_mut(namespace) else { return Ok(()) };
        if let Some(refusal) = owned.guard.refusal(namespace, &owned.tree)? {
            self.halt(refusal, out);
            return Ok(());
        }
        let checkpoint = Checkpoint {
            federation_id: self.registry.name.clone(),
            namespace: namespace.to_string(),
            size: owned.tree.size(),
            root: owned.tree.root(),
            anchor: AnchorClaim::local(owned.tree.algorithm(), now_secs(now_ms))
                .with_registry_version(self.registry.version),
        };
        // One signature over the body is both the anchor signature and the note's.
        let (anchor_signature, raw) = sign_anchor_raw(&self.identity, &checkpoint);
        let body = checkpoint.body();
        let note =
            Note { text: body.clone(), signatures: vec![NoteSignature::ed25519_made(&self.identity, &raw)] }
                .to_text();
        // Its countersignatures carry this note back: signed here, it needs no verification.
        remember_verified_note(&self.verified_notes, note_digest(self.registry.version, &note));
        let mut signatures = BTreeMap::new();
        signatures.insert(self.identity.did().to_string(), anchor_signature);
        let active = usize::from(
            self.registry.member(self.identity.did()).is_some_and(|m| m.status == PeerStatus::Active),
        );
        let size = checkpoint.size;
        owned.guard.signed_now(size, checkpoint.root);
        out.push(Output::Persist(Persist::Anchored {
            namespace: namespace.to_string(),
            size,
            note: note.clone(),
        }));
        self.recent_anchors.insert((namespace.to_string(), size), (now_ms, checkpoint.root, BTreeSet::new()));
        while self.recent_anchors.len() > RECENT_ANCHORS_MAX {
            self.recent_anchors.pop_first();
        }
        owned.pending.insert(
            size,
            Pending {
                checkpoint,
                body,
                note,
                heard_at_retry: signatures.len(),
                signatures,
                active,
                anchored_at_ms: now_ms,
            },
        );
        while owned.pending.len() > PENDING_ANCHORS_MAX {
            owned.pending.pop_first();
        }
        self.publish_anchor(namespace, size, None, now_ms, out)?;
        out.push(Output::SetTimer {
            timer: Timer::AnchorRetry { namespace: namespace.to_string(), size, attempt: 1 },
            at_ms: now_ms + self.config.anchor_retry_base_ms,
        });
        self.try_finalize(namespace, size, now_ms, out);
        Ok(())
    }

    /// Sends the anchor at `size` with a consistency proof from the last final size, or from
    /// `from_size` to one peer that asked.
    fn publish_anchor(
        &mut self,
        namespace: &str,
        size: u64,
        to: Option<(&str, u64)>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let Some(owned) = self.owned.get(namespace) else { return Ok(()) };
        let Some(pending) = owned.pending.get(&size).map(|p| p.note.clone()).or_else(|| {
            self.finals.get(namespace).filter(|r| r.tree_size == size).and_then(|r| {
                r.to_note(&self.registry).ok().map(|n| {
                    Note { text: n.text, signatures: n.signatures.iter().take(1).cloned().collect() }
                        .to_text()
                })
            })
        }) else {
            return Ok(());
        };
        // To everyone: from the previous anchor still pending (what the witnesses countersigned
        // last when anchors follow each other faster than they finalize), else the final size.
        let from = match to {
            Some((_, from_size)) => from_size.min(size),
            None => owned
                .pending
                .range(..size)
                .next_back()
                .map(|(s, _)| *s)
                .or(owned.finalized.map(|(s, _)| s))
                .unwrap_or(0),
        };
        let proof = owned.tree.consistency_proof(from, size)?;
        let content = Content::Anchor(AnchorContent {
            checkpoint: pending,
            consistency_from: from,
            consistency_proof: proof,
        });
        match to {
            Some((peer, _)) => out.push(Output::Send {
                to: peer.to_string(),
                message: PeerMessage::sign(&self.identity, content, now_ms),
            }),
            None => out.push(Output::Publish(PeerMessage::unsealed(self.identity.did(), content, now_ms))),
        }
        Ok(())
    }

    fn retry_anchor(
        &mut self,
        namespace: &str,
        size: u64,
        attempt: u32,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let Some(pending) = self.owned.get_mut(namespace).and_then(|o| o.pending.get_mut(&size)) else {
            return Ok(());
        };
        if attempt > self.config.anchor_retries_max {
            return Ok(());
        }
        // Countersignatures still arriving mean the anchor reached the witnesses and the
        // federation is slow, not deaf: broadcasting again would make every witness sign and
        // send an answer again, more work for a federation already behind (in the 100-node
        // swarm of `scripts/bench mesh`, signatures per checkpoint went from 657 to 321 with
        // this rule). Only a retry interval without a new countersignature broadcasts again;
        // the interval still doubles.
        let heard = pending.signatures.len();
        let silent = heard <= pending.heard_at_retry;
        pending.heard_at_retry = heard;
        if silent {
            self.anchors_rebroadcast += 1;
            self.publish_anchor(namespace, size, None, now_ms, out)?;
        }
        let delay = self.config.anchor_retry_base_ms.saturating_mul(1u64 << attempt.min(20));
        out.push(Output::SetTimer {
            timer: Timer::AnchorRetry { namespace: namespace.to_string(), size, attempt: attempt + 1 },
            at_ms: now_ms + delay,
        });
        Ok(())
    }

    fn reject(
        &mut self,
        sender: &str,
        reason: Rejection,
        detail: String,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        self.record_violation(sender, reason, detail, now_ms, out);
        out.push(Output::Event(Event::Rejected { sender: sender.to_string(), reason }));
    }

    /// Counts a violation against `peer` and writes it to the audit trail.
    fn record_violation(
        &mut self,
        peer: &str,
        reason: Rejection,
        detail: String,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        // Scores are kept for registry members only: a flood of made-up senders cannot grow
        // this map (their refusals still reach the bounded audit trail and the events).
        if self.registry.member(peer).is_some() {
            let score = self.scores.entry(peer.to_string()).or_default();
            *score.rejected.entry(reason).or_default() += 1;
            if reason.speaks_to_honesty() {
                score.last_rejected_ms = Some(now_ms);
            }
        }
        let entry = AuditEntry { at_ms: now_ms, peer: peer.to_string(), what: reason, detail };
        self.audit.push_back(entry.clone());
        while self.audit.len() > AUDIT_MAX {
            self.audit.pop_front();
        }
        out.push(Output::Persist(Persist::Audit(entry)));
    }

    /// Whether `message` lies on the way to one of this node's receipts or to another
    /// owner's: an anchor (this node countersigns it), a countersignature of an anchor of
    /// this node's own that still waits for its quorum, and the rare kinds (catch-up
    /// requests, evidence, registry updates, epoch anchors). Receipts, heartbeats and the
    /// other countersignatures (of other owners' anchors, and those of this node's own that
    /// come after the quorum: they count only for their witness's score) are bookkeeping: a
    /// host may hold them back a few milliseconds while the messages that decide receipts go
    /// first, and then handle them in one batch.
    pub fn is_on_receipt_path(&self, message: &PeerMessage) -> bool {
        match &message.content {
            Content::Receipt(_) | Content::Heartbeat(_) => false,
            Content::Countersign(content) => self.awaits_countersign(&content.checkpoint),
            _ => true,
        }
    }

    /// True when `note_text` is a checkpoint of a namespace this node owns whose size is
    /// still pending.
    fn awaits_countersign(&self, note_text: &str) -> bool {
        namespace_and_size(note_text).is_some_and(|(namespace, size)| {
            self.owned.get(namespace).is_some_and(|o| o.pending.contains_key(&size))
        })
    }

    /// The pending anchor of this node's own whose note `note_text` is, byte for byte: it
    /// keeps the checkpoint and body [`Engine::signed_checkpoint`] would parse out of it.
    fn own_pending_note(&self, note_text: &str) -> Option<&Pending> {
        let (namespace, size) = namespace_and_size(note_text)?;
        self.owned.get(namespace)?.pending.get(&size).filter(|pending| pending.note == note_text)
    }

    /// True when `note_text` is a checkpoint of a namespace this node owns (read from its
    /// origin line, without parsing the note).
    fn owns_checkpoint(&self, note_text: &str) -> bool {
        note_namespace(note_text).is_some_and(|namespace| self.owned.contains_key(namespace))
    }

    /// The signatures inside `message` this node is about to verify one by one when it
    /// handles it, with their keys and signed bytes: an anchor's (or another owner's
    /// countersign's) owner signature on a note not verified yet, and the cosignature of a
    /// countersign of this node's own checkpoint. None for what does not parse (the handler
    /// names that) and for other kinds.
    fn statement_signature(&self, message: &PeerMessage) -> Option<(VerifyingKey, Vec<u8>, [u8; 64])> {
        let (note_text, cosignature) = match &message.content {
            Content::Anchor(content) => (content.checkpoint.as_str(), None),
            Content::Countersign(content) => (content.checkpoint.as_str(), Some(content)),
            _ => return None,
        };
        // A note this node countersigned, verified then: its signature is known.
        if self.countersigned_here(note_text) {
            return None;
        }
        // The note of a pending anchor of this node's own: its body is kept with it.
        if let (Some(content), Some(pending)) = (cosignature, self.own_pending_note(note_text)) {
            let key = self.registry.member(&message.sender)?.key;
            let signature = <[u8; 64]>::try_from(content.signature.as_slice()).ok()?;
            return Some((key, cosignature_message(content.timestamp, &pending.body), signature));
        }
        let note = NoteView::parse(note_text.as_bytes()).ok()?;
        match cosignature {
            Some(content) if self.owns_checkpoint(note_text) => {
                let key = self.registry.member(&message.sender)?.key;
                let signature = <[u8; 64]>::try_from(content.signature.as_slice()).ok()?;
                Some((key, cosignature_message(content.timestamp, note.text), signature))
            }
            _ => {
                let digest = note_digest(self.registry.version, note_text);
                if self.verified_notes.lock().is_ok_and(|v| v.0.contains(&digest)) {
                    return None;
                }
                let (name, key_id, signature) = note.first_signature();
                let key = self.registry.member(name)?.key;
                if !is_note_key(name, &key, key_id) {
                    return None;
                }
                Some((key, note.text.as_bytes().to_vec(), signature?))
            }
        }
    }

    /// Verifies, in one batch, the signatures that handling `group` (the messages the host is
    /// about to pass, each with whether it is an [`Input::FromSender`]) would otherwise verify
    /// one by one: the message signatures of members' messages not seen before that did not
    /// come from their sender, the signatures inside anchors and countersigns
    /// ([`Engine::statement_signature`]), and those of receipts that are news here (in a
    /// small federation receipts wait a few milliseconds to be handled together, so their
    /// cosignatures make most of a batch). The rule gives a batch the verdict of its signatures
    /// one by one (`crate::signature`), so when it passes, each message skips its signature
    /// check (at most `PREVERIFY_MAX`, each once, and only against the key checked here) and
    /// each statement signature is remembered as valid in this thread's memo (without one, only
    /// message signatures take part), and so is each receipt's verdict, which `on_receipt`
    /// then finds instead of preparing the receipt's statements again. A statement counts as
    /// in the batch only with the same key, bytes and signature (a signature copied from
    /// another receipt is another statement). When the batch fails, nothing is marked and each
    /// is verified on its own, which names the bad one. Replaces what an earlier call marked.
    /// Returns how many signatures were proven.
    pub fn preverify<'a>(&mut self, group: impl IntoIterator<Item = (&'a PeerMessage, bool)>) -> usize {
        self.preverified.clear();
        let mut keys: Vec<VerifyingKey> = Vec::new();
        let mut bytes: Vec<Vec<u8>> = Vec::new();
        let mut signatures: Vec<ed25519_dalek::Signature> = Vec::new();
        let mut statements: BTreeMap<[u8; 64], usize> = BTreeMap::new();
        // Verdict keys of the receipts whose every signature is in the batch (or known).
        let mut receipts_proven: Vec<[u8; 32]> = Vec::new();
        // A statement signature proven here is recalled only through the thread's memo.
        let with_statements = crate::signature::memo_installed();
        for (message, from_sender) in group {
            if keys.len() + 2 > PREVERIFY_MAX {
                break;
            }
            let Some(member) = self.registry.member(&message.sender) else { continue };
            if member.status == PeerStatus::Suspended || self.seen.contains(&seen_key(message)) {
                continue;
            }
            // An unsealed message from another connection is refused in `receive`.
            if let (false, Some(signature)) = (from_sender, message.signature()) {
                if self.preverified.insert(message.signed_digest(), member.key).is_none() {
                    keys.push(member.key);
                    bytes.push(message.signing_bytes());
                    signatures.push(ed25519_dalek::Signature::from_bytes(signature));
                }
            }
            if !with_statements {
                continue;
            }
            // Countersigns carry the note of the anchor they answer: one copy per group.
            if let Some((key, signed, signature)) = self.statement_signature(message) {
                if !in_batch(&statements, &keys, &bytes, (&key, &signed, &signature)) {
                    statements.entry(signature).or_insert(keys.len());
                    keys.push(key);
                    bytes.push(signed);
                    signatures.push(ed25519_dalek::Signature::from_bytes(&signature));
                }
            }
            // A receipt's signatures, unless it changes nothing here (`on_receipt` skips it)
            // or does not fit; those this thread knows already leave the batch by the memo.
            if let Content::Receipt(content) = &message.content {
                let receipt = content.receipt.as_ref();
                let Some(registry) = self.registries.get(&receipt.registry_version) else { continue };
                if !self.receipt_is_news(receipt) {
                    continue;
                }
                let Some(triples) = prepare_receipt(receipt, registry) else { continue };
                let fresh: Vec<_> = triples
                    .into_iter()
                    .filter(|(signed, signature, key)| {
                        !in_batch(&statements, &keys, &bytes, (key, signed, &signature.to_bytes()))
                    })
                    .collect();
                if keys.len() + fresh.len() > PREVERIFY_MAX {
                    continue;
                }
                for (signed, signature, key) in fresh {
                    statements.entry(signature.to_bytes()).or_insert(keys.len());
                    keys.push(key);
                    bytes.push(signed);
                    signatures.push(signature);
                }
                // A passing batch proves the receipt as `verify_receipts_batch` would (its
                // checks are `prepare_receipt`'s, and each of its signatures is in the batch or
                // known): `on_receipt` then finds the verdict instead of preparing it again.
                receipts_proven.push(receipt_verdict_key(by_receipt_encoding(receipt), registry));
            }
        }
        // One signature gains nothing from a batch.
        let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
        if refs.len() < 2 || !crate::signature::verify_batch_known(&refs, &signatures, &keys) {
            self.preverified.clear();
            return 0;
        }
        for key in receipts_proven {
            crate::signature::memoized(key, || true);
        }
        refs.len()
    }

    /// `from_sender`: the transport authenticated the connection as the sender's registry key
    /// ([`Input::FromSender`]); the message signature of a member's message is then not checked.
    fn receive(
        &mut self,
        mut message: PeerMessage,
        from_sender: bool,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        if message.sender.len() > crate::identity::DID_BYTES_MAX {
            return Ok(());
        }
        let registry = Arc::clone(&self.registry);
        // A node outside the registry may speak once: to propose its own admission, signed
        // with the key that proposal gives it.
        let joining = self.joining_member(&message);
        let sender = message.sender.as_str();
        let member = match (registry.member(sender), joining.as_ref()) {
            (Some(member), _) => member,
            (None, Some(joining)) => joining,
            (None, None) => {
                self.reject(sender, Rejection::UnknownSender, "not in the registry".to_string(), now_ms, out);
                return Ok(());
            }
        };
        if member.status == PeerStatus::Suspended {
            self.reject(sender, Rejection::Suspended, "suspended member".to_string(), now_ms, out);
            return Ok(());
        }
        // Ed25519 signatures are deterministic: one signed message, one signature. The
        // signature (with the sender) therefore identifies the message without re-encoding it,
        // and a replay is refused before its signature is verified again (a copy with other
        // content under a seen signature would not verify either).
        let digest = seen_key(&message);
        if self.seen.contains(&digest) {
            self.reject(sender, Rejection::Replay, "message seen before".to_string(), now_ms, out);
            return Ok(());
        }
        // The transport's word counts for a member only: a joiner's key is proven by its
        // signature. So does a batch verification of this very message against this key.
        let by_transport = joining.is_none() && from_sender;
        let vouched = by_transport
            || (joining.is_none()
                && (!self.preverified.is_empty()
                    && self
                        .preverified
                        .remove(&message.signed_digest())
                        .is_some_and(|key| key == member.key)));
        if !vouched && message.verify_signature(&member.key).is_err() {
            self.reject(sender, Rejection::BadSignature, "message signature".to_string(), now_ms, out);
            return Ok(());
        }
        if message.timestamp.abs_diff(now_ms) > self.config.skew_window_ms {
            let detail = format!(
                "timestamp {} is {} ms from ours",
                message.timestamp,
                message.timestamp.abs_diff(now_ms)
            );
            self.reject(sender, Rejection::Stale, detail, now_ms, out);
            return Ok(());
        }
        self.seen.insert(digest);
        self.seen_order.push_back(digest);
        while self.seen_order.len() > SEEN_MESSAGES_MAX {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if joining.is_some() {
            // Scores are for members only.
            if let Content::Registry(content) = message.content {
                self.endorse(content.proposal, content.signatures, now_ms, out);
            }
            return Ok(());
        }
        // The sender's name leaves the message: its content is handled by value below.
        let sender = std::mem::take(&mut message.sender);
        let score = match self.scores.get_mut(&sender) {
            Some(score) => score,
            None => self.scores.entry(sender.clone()).or_default(),
        };
        score.accepted += 1;
        score.last_seen_ms = Some(now_ms);
        let signature = message.signature().copied();
        match message.content {
            Content::Anchor(content) => self.on_anchor(&sender, content, now_ms, out),
            Content::Countersign(content) => {
                self.on_countersign(&sender, content, now_ms, out);
                Ok(())
            }
            Content::Receipt(content) => {
                // A signature the transport vouched for was never checked: it does not fix the
                // message's bytes, so it cannot key a verdict.
                let checked = signature.as_ref().filter(|_| !by_transport);
                self.on_receipt(&sender, content.receipt, checked, now_ms, out);
                Ok(())
            }
            Content::Heartbeat(content) => {
                self.on_heartbeat(&sender, content, now_ms, out);
                Ok(())
            }
            Content::Request(content) => self.on_request(&sender, content, now_ms, out),
            Content::Evidence(content) => {
                self.on_evidence(&sender, content, now_ms, out);
                Ok(())
            }
            Content::Registry(content) => self.on_registry(&sender, *content, now_ms, out),
            Content::EpochAnchor(content) => {
                self.on_epoch_anchor(&sender, content, now_ms, out);
                Ok(())
            }
        }
    }

    /// False for a receipt no newer than this node's final one of its namespace and not
    /// conflicting with it: it changes nothing, and its signatures are not verified.
    fn receipt_is_news(&self, receipt: &FederationReceipt) -> bool {
        !self.finals.get(&receipt.namespace).is_some_and(|last| {
            last.tree_size > receipt.tree_size
                || (last.tree_size == receipt.tree_size
                    && last.anchor.batch_root.value == receipt.anchor.batch_root.value)
        })
    }

    /// Parses an owner-signed checkpoint note and checks its anchor signature.
    /// Returns the checkpoint, its signer, and its body as signed (parsing checks that the body
    /// is canonical, so it equals `checkpoint.body()` without formatting it again).
    fn signed_checkpoint(
        &self,
        note_text: &str,
    ) -> Result<(Checkpoint, String, String), (Rejection, String)> {
        let note =
            NoteView::parse(note_text.as_bytes()).map_err(|e| (Rejection::Malformed, e.to_string()))?;
        let checkpoint =
            Checkpoint::parse_body(note.text).map_err(|e| (Rejection::Malformed, e.to_string()))?;
        if checkpoint.federation_id != self.registry.name {
            return Err((
                Rejection::NotOwner,
                format!("checkpoint of federation {}", checkpoint.federation_id),
            ));
        }
        let (signer, key_id, signature) = note.first_signature();
        if !self.registry.may_anchor(signer, &checkpoint.namespace) {
            return Err((Rejection::NotOwner, format!("{signer} does not own {}", checkpoint.namespace)));
        }
        let Some(member) = self.registry.member(signer) else {
            return Err((Rejection::NotOwner, signer.to_string()));
        };
        let digest = note_digest(self.registry.version, note_text);
        let known = self.verified_notes.lock().is_ok_and(|v| v.0.contains(&digest));
        if !known {
            let verified = is_note_key(signer, &member.key, key_id)
                && signature.is_some_and(|signature| {
                    crate::signature::verify(&member.key, note.text.as_bytes(), &signature)
                });
            if !verified {
                return Err((
                    Rejection::BadStatement,
                    NoteError::SignatureInvalid(signer.to_string()).to_string(),
                ));
            }
            remember_verified_note(&self.verified_notes, digest);
        }
        Ok((checkpoint, signer.to_string(), note.text.to_string()))
    }

    fn on_anchor(
        &mut self,
        sender: &str,
        content: AnchorContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let (checkpoint, signer, body) = match self.signed_checkpoint(&content.checkpoint) {
            Ok(parsed) => parsed,
            Err((reason, detail)) => {
                self.reject(sender, reason, detail, now_ms, out);
                return Ok(());
            }
        };
        if signer != sender {
            self.reject(
                sender,
                Rejection::NotOwner,
                format!("relayed an anchor signed by {signer}"),
                now_ms,
                out,
            );
            return Ok(());
        }
        if signer == self.identity.did() {
            return Ok(());
        }
        if checkpoint.anchor.registry_version != self.registry.version {
            // Countersign only under the registry we hold: catch up when behind; an owner
            // behind us re-anchors once it applies the update.
            if checkpoint.anchor.registry_version > self.registry.version {
                self.request_registry(sender, now_ms, out);
            }
            return Ok(());
        }
        let namespace = checkpoint.namespace.clone();
        // The same checkpoint again (the owner's retry): the peers picked the first time hold
        // our countersignature already; only the owner may have missed it.
        let last = self.witnessed.get(&namespace).map(|last| (last.size, last.root));
        let again = last == Some((checkpoint.size, checkpoint.root));
        if let Some((last_size, last_root)) = last {
            // Older than the last checkpoint countersigned here, or another root for its size:
            // not countersigned, and a second root for a size this node countersigned (the
            // last or one it keeps from before) is evidence.
            if checkpoint.size < last_size || (checkpoint.size == last_size && checkpoint.root != last_root) {
                self.check_witnessed(&signer, &checkpoint, content.checkpoint, now_ms, out);
                return Ok(());
            }
            // The same root again (the owner's retry, or its note signed again after a
            // restart): countersign again, so that an owner that lost our countersignature
            // (a partition, a crash) still reaches its quorum. Nothing conflicts.
            if checkpoint.size > last_size && content.consistency_from != last_size {
                // We missed a round: ask for a proof from the size we last countersigned.
                let request = Content::Request(RequestContent {
                    kind: RequestKind::Consistency,
                    namespace,
                    from_size: last_size,
                    size: checkpoint.size,
                });
                out.push(Output::Send {
                    to: sender.to_string(),
                    message: PeerMessage::sign(&self.identity, request, now_ms),
                });
                return Ok(());
            }
            let consistent = checkpoint.size == last_size
                || verify_consistency(
                    checkpoint.anchor.algorithm,
                    last_size,
                    checkpoint.size,
                    &last_root,
                    &checkpoint.root,
                    &content.consistency_proof,
                )
                .is_ok();
            if !consistent {
                let detail =
                    format!("no valid consistency proof from size {} to {}", last_size, checkpoint.size);
                self.reject(sender, Rejection::Inconsistent, detail, now_ms, out);
                return Ok(());
            }
        }
        let (signature, raw) = countersign_body(&self.identity, &body, now_secs(now_ms));
        let owner_note = content.checkpoint.clone();
        let previous = self.witnessed.insert(
            namespace.clone(),
            Witnessed {
                size: checkpoint.size,
                root: checkpoint.root,
                note: content.checkpoint,
                verified_under: Some(self.registry.version),
            },
        );
        if let Some(previous) = previous.filter(|previous| previous.size < checkpoint.size) {
            let earlier = self.witnessed_earlier.entry(namespace.clone()).or_default();
            earlier.push_back(previous);
            if earlier.len() > PENDING_ANCHORS_MAX {
                earlier.pop_front();
            }
        }
        let timestamp = signature.timestamp;
        out.push(Output::Persist(Persist::Countersigned {
            namespace,
            size: checkpoint.size,
            note: owner_note.clone(),
            signature,
        }));
        let content = Content::Countersign(CountersignContent {
            checkpoint: owner_note,
            timestamp,
            signature: serde_bytes::ByteBuf::from(raw.to_vec()),
        });
        let mut message = PeerMessage::unsealed(self.identity.did(), content, now_ms);
        if again {
            message.seal(&self.identity);
            out.push(Output::Send { to: signer, message });
            return Ok(());
        }
        match self.gossip_peers(&signer, &body) {
            // The owner needs every cosignature; a few hashed peers spread the owner's signed
            // note so that split views still meet (evidence), at N log N deliveries instead of N^2.
            Some(peers) => {
                message.seal(&self.identity);
                out.push(Output::Send { to: signer.clone(), message: message.clone() });
                for peer in peers {
                    out.push(Output::Send { to: peer, message: message.clone() });
                }
            }
            None => out.push(Output::Publish(message)),
        }
        Ok(())
    }

    /// The peers a message about `topic` goes to under the configured fanout, besides
    /// `except` and this node: None means everyone (a broadcast). One hash of this node and
    /// the topic seeds a partial shuffle of the members, so the choice is deterministic,
    /// differs per topic, and costs one hash per message rather than one per member.
    fn gossip_peers(&self, except: &str, topic: &str) -> Option<Vec<String>> {
        let self_active =
            self.registry.member(self.identity.did()).is_some_and(|m| m.status != PeerStatus::Suspended);
        let active = self.peers.len() + usize::from(self_active);
        let count = match self.config.fanout {
            Fanout::All => return None,
            Fanout::Logarithmic => (usize::BITS - active.max(1).leading_zeros()) as usize + 1,
            Fanout::Fixed(count) => count,
        };
        let excluded = self.peers.iter().position(|did| did == except);
        let candidates = self.peers.len() - usize::from(excluded.is_some());
        if count >= candidates {
            return None;
        }
        let seed: [u8; 32] = Sha256::new()
            .chain_update(self.identity.did().as_bytes())
            .chain_update([0])
            .chain_update(topic.as_bytes())
            .finalize()
            .into();
        let mut state = u64::from_le_bytes(seed[..8].try_into().unwrap_or([0; 8]));
        // Floyd's sampling of `count` distinct positions among the candidates (the peers
        // without `except`): `count` draws, whatever the federation's size.
        let mut chosen: Vec<usize> = Vec::with_capacity(count);
        for bound in candidates - count..candidates {
            // SplitMix64 step.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let pick = (z % (bound as u64 + 1)) as usize;
            chosen.push(if chosen.contains(&pick) { bound } else { pick });
        }
        Some(
            chosen
                .into_iter()
                .map(|position| match excluded {
                    Some(skip) if position >= skip => self.peers[position + 1].clone(),
                    _ => self.peers[position].clone(),
                })
                .collect(),
        )
    }

    fn on_countersign(
        &mut self,
        sender: &str,
        content: CountersignContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        // Another witness countersigned the very note this node did: nothing to check.
        if self.countersigned_here(&content.checkpoint) {
            return;
        }
        // The countersign carries the owner's signed note, so every member that sees it holds
        // the owner's signature on that root: split views surface as evidence. The note of one
        // of this node's pending anchors is known as it was signed.
        let parsed = match self.own_pending_note(&content.checkpoint) {
            Some(pending) => {
                Ok((pending.checkpoint.clone(), self.identity.did().to_string(), pending.body.clone()))
            }
            None => self.signed_checkpoint(&content.checkpoint),
        };
        let (checkpoint, owner, body) = match parsed {
            Ok(parsed) => parsed,
            Err((reason, detail)) => {
                self.reject(sender, reason, detail, now_ms, out);
                return;
            }
        };
        let registry = Arc::clone(&self.registry);
        let Some(member) = registry.member(sender) else { return };
        let Ok(raw) = <[u8; 64]>::try_from(content.signature.as_slice()) else {
            self.reject(sender, Rejection::Malformed, "cosignature length".to_string(), now_ms, out);
            return;
        };
        let namespace = checkpoint.namespace.clone();
        if !self.owned.contains_key(&namespace) {
            // Another owner's checkpoint: only its signed note matters here (verified above,
            // once per note), checked against what this node countersigned. The cosignature
            // serves the owner alone, and checking it here cost a signature verification per
            // member per countersignature: the largest share of a federation's CPU.
            self.check_witnessed(&owner, &checkpoint, content.checkpoint, now_ms, out);
            return;
        }
        let message = cosignature_message(content.timestamp, &body);
        if !crate::signature::verify(&member.key, &message, &raw) {
            self.reject(
                sender,
                Rejection::BadStatement,
                "cosignature does not verify".to_string(),
                now_ms,
                out,
            );
            return;
        }
        if self.check_witnessed(&owner, &checkpoint, content.checkpoint, now_ms, out) {
            return;
        }
        self.score_countersign(sender, &namespace, &checkpoint, now_ms);
        let Some(pending) = self.owned.get_mut(&namespace).and_then(|o| o.pending.get_mut(&checkpoint.size))
        else {
            return;
        };
        if pending.body != body || sender == self.identity.did() || pending.signatures.contains_key(sender) {
            return;
        }
        pending.signatures.insert(
            sender.to_string(),
            SignatureJson {
                node: sender.to_string(),
                sig: crate::identity::multibase_signature(&raw),
                role: Role::Witness,
                timestamp: content.timestamp,
            },
        );
        if member.status == PeerStatus::Active {
            pending.active += 1;
        }
        self.try_finalize(&namespace, checkpoint.size, now_ms, out);
    }

    /// True when `note_text` is, byte for byte, an owner's note this node countersigned for
    /// its namespace (the last one, or one of the [`PENDING_ANCHORS_MAX`] before it), verified
    /// under the current registry (read from its origin line, without parsing the note).
    /// Another witness's countersign carrying it then changes nothing here: its note is valid,
    /// and its root is one this node witnessed, at a size no other note of this node's
    /// conflicts with. In a federation where every witness countersigns every anchor, that is
    /// most countersigns; with several anchors of an owner in flight, many carry an earlier
    /// one than the last this node countersigned.
    fn countersigned_here(&self, note_text: &str) -> bool {
        let Some(namespace) = note_namespace(note_text) else { return false };
        let version = self.registry.version;
        self.witnessed_all(namespace).any(|w| w.verified_under == Some(version) && w.note == note_text)
    }

    /// The checkpoints this node countersigned for `namespace`: its last, then those before
    /// it that it keeps, newest first (each one's size below the one before it).
    fn witnessed_all(&self, namespace: &str) -> impl Iterator<Item = &Witnessed> {
        let earlier =
            self.witnessed_earlier.get(namespace).into_iter().flat_map(|earlier| earlier.iter().rev());
        self.witnessed.get(namespace).into_iter().chain(earlier)
    }

    /// The note of a checkpoint this node countersigned (its last for the namespace, or one
    /// of those before it it keeps) at `size` with a root other than `root`: the owner signed
    /// both, and the two notes are the evidence.
    fn witnessed_conflict(&self, namespace: &str, size: u64, root: &Digest) -> Option<String> {
        let witnessed = self.witnessed_all(namespace).find(|w| w.size == size)?;
        (witnessed.root != *root).then(|| witnessed.note.clone())
    }

    /// Raises evidence if `note` signs another root for a size this node countersigned;
    /// returns whether it did.
    fn check_witnessed(
        &mut self,
        owner: &str,
        checkpoint: &Checkpoint,
        note: String,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> bool {
        let namespace = &checkpoint.namespace;
        let Some(witnessed) = self.witnessed_conflict(namespace, checkpoint.size, &checkpoint.root) else {
            return false;
        };
        self.raise_evidence(owner, namespace, checkpoint.size, witnessed, note, now_ms, out);
        true
    }

    /// Scores a witness's reliability on the first countersignature of one of our recent
    /// checkpoints, finalized or not: on time within `countersign_deadline_ms` of the anchor.
    fn score_countersign(&mut self, sender: &str, namespace: &str, checkpoint: &Checkpoint, now_ms: u64) {
        let Some((anchored_ms, root, counted)) =
            self.recent_anchors.get_mut(&(namespace.to_string(), checkpoint.size))
        else {
            return;
        };
        if *root != checkpoint.root || !counted.insert(sender.to_string()) {
            return;
        }
        let on_time = now_ms.saturating_sub(*anchored_ms) <= self.config.countersign_deadline_ms;
        let score = self.scores.entry(sender.to_string()).or_default();
        if on_time {
            score.countersigns_on_time += 1;
        } else {
            score.countersigns_late += 1;
        }
    }

    /// Finalizes the anchor at `size` if distinct active signers reach the quorum.
    fn try_finalize(&mut self, namespace: &str, size: u64, now_ms: u64, out: &mut Vec<Output>) {
        let Some(owned) = self.owned.get_mut(namespace) else { return };
        let Some(pending) = owned.pending.get(&size) else { return };
        if pending.checkpoint.anchor.registry_version != self.registry.version {
            return;
        }
        if pending.active < self.registry.quorum as usize {
            return;
        }
        // Final: the pending anchor leaves, and its signatures move into the receipt.
        let Some(pending) = owned.pending.remove(&size) else { return };
        let receipt = Arc::new(FederationReceipt::assemble(
            &pending.checkpoint,
            pending.signatures.into_values().collect(),
            &self.registry,
        ));
        let latency_ms = now_ms.saturating_sub(pending.anchored_at_ms);
        owned.finalized = Some((size, pending.checkpoint.root));
        owned.pending.retain(|s, _| *s > size);
        out.push(Output::Persist(Persist::FinalReceipt(Arc::clone(&receipt))));
        out.push(Output::Event(Event::Finalized {
            namespace: namespace.to_string(),
            size,
            latency_ms: Some(latency_ms),
        }));
        let content = Content::Receipt(Box::new(ReceiptContent { receipt: Arc::clone(&receipt) }));
        out.push(Output::Publish(PeerMessage::unsealed(self.identity.did(), content, now_ms)));
        self.record_final(namespace, size, receipt.anchor.batch_root.value, now_ms);
        if self.registry.anchor_propagation.mode == AnchorMode::Independent {
            // Independent mode: every owner anchors each of its own final receipts.
            let request = AnchorRequestId::Receipt { namespace: namespace.to_string(), size };
            out.push(Output::AnchorRequest { request, root: receipt.anchor.batch_root.value });
        }
        self.finals.insert(namespace.to_string(), receipt);
        self.anchor_deferred(namespace, now_ms, out);
    }

    /// Own anchors a namespace may have pending at once (the configured window, 1 to
    /// [`PENDING_ANCHORS_MAX`]).
    fn anchor_window(&self) -> usize {
        self.config.anchors_in_flight_max.clamp(1, PENDING_ANCHORS_MAX)
    }

    /// Anchors the records that flow control held back (committed while the anchor window was
    /// full), once the window has room again.
    fn anchor_deferred(&mut self, namespace: &str, now_ms: u64, out: &mut Vec<Output>) {
        let Some(owned) = self.owned.get(namespace) else { return };
        let covered =
            owned.pending.keys().next_back().copied().max(owned.finalized.map(|(size, _)| size)).unwrap_or(0);
        let room = owned.pending.len() < self.anchor_window();
        if room && owned.tree.size() > covered {
            // Its consistency proof runs between sizes the tree holds, so it cannot fail; a
            // failure would leave the records for the next anchor or `AnchorNow`.
            let _ = self.anchor_current(namespace, now_ms, out);
        }
    }

    /// `message_signature` is the signature of the message that carried the receipt, when it
    /// was verified: it then identifies the exact bytes (with the sender), which keys the
    /// verdict memo. None when only the connection vouched for the message: its signature
    /// bytes prove nothing (a member could send other content under a signature of its own
    /// that once verified), and the receipt's own encoding keys the verdict.
    fn on_receipt(
        &mut self,
        sender: &str,
        receipt: Arc<FederationReceipt>,
        message_signature: Option<&[u8; 64]>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(registry) = self.registries.get(&receipt.registry_version) else {
            // Counted under a registry version we have not applied yet: catch up first.
            if receipt.registry_version > self.registry.version {
                self.request_registry(sender, now_ms, out);
            }
            return;
        };
        // A receipt no newer than our final one, and not conflicting with it, changes nothing:
        // skip its verification (67 signatures in a 100-node federation). Catch-up answers
        // and relays deliver a receipt more than once.
        if !self.receipt_is_news(&receipt) {
            return;
        }
        // Every node of a simulation verifies the same receipt under the same registry version:
        // the simulator memoizes the verdict (a node's small memo serves repeats), first by the
        // message (the sender's verified signature fixes its bytes, hence the receipt), then,
        // for a receipt passed on by another node, by the receipt's own encoding.
        let by_encoding = || {
            // One batch verification of all its signatures (about twice as fast as one by one;
            // a failing batch falls back to the full check, which names what is wrong). A
            // receipt whose signatures `preverify` proved is remembered under this key already.
            crate::signature::memoized(receipt_verdict_key(by_receipt_encoding(&receipt), registry), || {
                verify_receipts_batch(std::slice::from_ref(receipt.as_ref()), registry)[0]
            })
        };
        let verdict = match message_signature {
            Some(signature) => crate::signature::memoized(
                receipt_verdict_key(
                    Sha256::new().chain_update(sender.as_bytes()).chain_update(signature),
                    registry,
                ),
                by_encoding,
            ),
            None => by_encoding(),
        };
        if !verdict {
            self.reject(
                sender,
                Rejection::BadReceipt,
                format!("receipt for {} at {}", receipt.namespace, receipt.tree_size),
                now_ms,
                out,
            );
            return;
        }
        let namespace = receipt.namespace.clone();
        // A final root that differs from the one we countersigned at that size: the owner
        // signed both.
        let size = receipt.tree_size;
        if let Some(witnessed) = self.witnessed_conflict(&namespace, size, &receipt.anchor.batch_root.value) {
            if let (Ok(note), Some(signer)) = (
                receipt.to_note(&self.registry),
                receipt.signatures.iter().find(|s| s.role == Role::Anchor).map(|s| s.node.clone()),
            ) {
                let anchor_only =
                    Note { text: note.text, signatures: note.signatures.iter().take(1).cloned().collect() }
                        .to_text();
                self.raise_evidence(&signer, &namespace, size, witnessed, anchor_only, now_ms, out);
            }
            return;
        }
        self.check_own_receipt(&receipt, out);
        let newer = self.finals.get(&namespace).is_none_or(|r| r.tree_size < receipt.tree_size);
        if newer {
            out.push(Output::Persist(Persist::FinalReceipt(Arc::clone(&receipt))));
            out.push(Output::Event(Event::Finalized {
                namespace: namespace.clone(),
                size: receipt.tree_size,
                latency_ms: None,
            }));
            self.record_final(&namespace, receipt.tree_size, receipt.anchor.batch_root.value, now_ms);
            if self.catch_up.get(&namespace).is_some_and(|&(asked, _)| asked <= receipt.tree_size) {
                self.catch_up.remove(&namespace);
            }
            self.finals.insert(namespace, receipt);
        }
    }

    /// Asks `peer` for the registry updates after our version, unless that was asked less
    /// than a heartbeat interval ago.
    fn request_registry(&mut self, peer: &str, now_ms: u64, out: &mut Vec<Output>) {
        if self.registry_asked.is_some_and(|(version, at_ms)| {
            version == self.registry.version && now_ms < at_ms + self.config.heartbeat_interval_ms
        }) {
            return;
        }
        self.registry_asked = Some((self.registry.version, now_ms));
        let request = Content::Request(RequestContent {
            kind: RequestKind::Registry,
            namespace: String::new(),
            from_size: self.registry.version,
            size: 0,
        });
        out.push(Output::Send {
            to: peer.to_string(),
            message: PeerMessage::sign(&self.identity, request, now_ms),
        });
    }

    fn on_heartbeat(&mut self, sender: &str, content: HeartbeatContent, now_ms: u64, out: &mut Vec<Output>) {
        if let Some(score) = self.scores.get_mut(sender) {
            score.heartbeats += 1;
        }
        if content.registry_version > self.registry.version {
            self.request_registry(sender, now_ms, out);
        }
        for (namespace, size) in content.finalized {
            let ours = self.finals.get(&namespace).map(|r| r.tree_size).unwrap_or(0);
            let asked = self.catch_up.get(&namespace).is_some_and(|&(asked, at_ms)| {
                asked >= size && now_ms < at_ms + self.config.heartbeat_interval_ms
            });
            if size > ours && !asked {
                if self.catch_up.len() >= CATCH_UP_PENDING_MAX && !self.catch_up.contains_key(&namespace) {
                    self.catch_up.pop_first();
                }
                self.catch_up.insert(namespace.clone(), (size, now_ms));
                let request = Content::Request(RequestContent {
                    kind: RequestKind::Receipt,
                    namespace,
                    from_size: ours,
                    size,
                });
                out.push(Output::Send {
                    to: sender.to_string(),
                    message: PeerMessage::sign(&self.identity, request, now_ms),
                });
            }
        }
    }

    fn on_request(
        &mut self,
        sender: &str,
        content: RequestContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        match content.kind {
            RequestKind::Receipt => {
                if let Some(receipt) = self.finals.get(&content.namespace) {
                    let reply = Content::Receipt(Box::new(ReceiptContent { receipt: receipt.clone() }));
                    out.push(Output::Send {
                        to: sender.to_string(),
                        message: PeerMessage::sign(&self.identity, reply, now_ms),
                    });
                }
                Ok(())
            }
            RequestKind::Registry => {
                for update in self.chain.iter().filter(|c| c.proposal.base_version >= content.from_size) {
                    let reply = Content::Registry(Box::new(update.clone()));
                    out.push(Output::Send {
                        to: sender.to_string(),
                        message: PeerMessage::sign(&self.identity, reply, now_ms),
                    });
                }
                Ok(())
            }
            RequestKind::Consistency => self.publish_anchor(
                &content.namespace,
                content.size,
                Some((sender, content.from_size)),
                now_ms,
                out,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn raise_evidence(
        &mut self,
        signer: &str,
        namespace: &str,
        size: u64,
        first: String,
        second: String,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if !self.evidence_seen.insert(evidence_key(&first, &second)) {
            return;
        }
        let [first, second] = if first <= second { [first, second] } else { [second, first] };
        let evidence = Evidence {
            signer: signer.to_string(),
            namespace: namespace.to_string(),
            size,
            first: first.clone(),
            second: second.clone(),
        };
        if self.evidence.len() < EVIDENCE_MAX {
            self.evidence.push(evidence.clone());
        }
        out.push(Output::Persist(Persist::Evidence(evidence)));
        let detail = format!("signed two roots for {namespace} at size {size}");
        self.record_violation(signer, Rejection::BadStatement, detail, now_ms, out);
        out.push(Output::Event(Event::Equivocation {
            signer: signer.to_string(),
            namespace: namespace.to_string(),
            size,
        }));
        let content = Content::Evidence(EvidenceContent { first: first.clone(), second: second.clone() });
        out.push(Output::Publish(PeerMessage::sign(&self.identity, content, now_ms)));
        // Evidence is objective: propose probation; every member that checks it signs.
        if self.registry.member(signer).is_some_and(|m| m.status == PeerStatus::Active) {
            let reason = ProposalReason::Equivocation { first, second };
            match status_change(&self.registry, signer, PeerStatus::Probation, reason) {
                Ok(proposal) => self.endorse(proposal, Vec::new(), now_ms, out),
                Err(error) => out.push(Output::Event(Event::ProposalRefused {
                    peer: signer.to_string(),
                    reason: error.to_string(),
                })),
            }
        }
    }

    /// Whether this node signs `proposal` on its own: evidence-backed proposals whose evidence
    /// checks out against the peer whose status they change; manual ones only when configured.
    fn agrees(&self, proposal: &RegistryProposal, now_ms: u64) -> bool {
        if self.approved.contains(&proposal.digest()) {
            return true;
        }
        match &proposal.reason {
            ProposalReason::Manual { .. } => self.config.approve_manual,
            ProposalReason::Join { did } => self.config.approve_joins && self.is_admission(proposal, did),
            ProposalReason::Equivocation { first, second } => {
                let (Ok((a, signer_a, _)), Ok((b, signer_b, _))) =
                    (self.signed_checkpoint(first), self.signed_checkpoint(second))
                else {
                    return false;
                };
                let proven = signer_a == signer_b
                    && a.namespace == b.namespace
                    && a.size == b.size
                    && a.root != b.root;
                proven && self.changes_only(proposal, &signer_a, PeerStatus::Probation)
            }
            ProposalReason::Misbehavior { peer } => {
                self.scores
                    .get(peer)
                    .is_some_and(|s| s.honesty_rejections() >= self.config.probation_rejections)
                    && self.changes_only(proposal, peer, PeerStatus::Probation)
            }
            ProposalReason::Reinstatement { peer, .. } => {
                self.registry.member(peer).is_some_and(|m| m.status == PeerStatus::Probation)
                    && self.well_behaved_since(peer, now_ms)
                    && self.changes_only(proposal, peer, PeerStatus::Active)
            }
        }
    }

    /// True when `proposal` is exactly the admission of `did` (see
    /// [`crate::governance::admission`]): the member added, the quorum raised, nothing else.
    fn is_admission(&self, proposal: &RegistryProposal, did: &str) -> bool {
        let Ok(next) = proposal.apply(&self.registry) else { return false };
        next.member(did).is_some_and(|member| admission(&self.registry, member).as_ref() == Ok(proposal))
    }

    /// The member a join proposal from a sender outside the registry would add: the sender
    /// itself, under the current registry version. None for any other message.
    fn joining_member(&self, message: &PeerMessage) -> Option<Member> {
        let Content::Registry(content) = &message.content else { return None };
        let ProposalReason::Join { did } = &content.proposal.reason else { return None };
        if did != &message.sender || self.registry.member(did).is_some() {
            return None;
        }
        if content.proposal.base_version != self.registry.version {
            return None;
        }
        let next = content.proposal.apply(&self.registry).ok()?;
        let member = next.member(did)?;
        (admission(&self.registry, member).as_ref() == Ok(&content.proposal)).then(|| member.clone())
    }

    /// Proposes this node's admission and broadcasts it (see [`Input::RequestJoin`]).
    fn request_join(
        &mut self,
        namespaces: Vec<String>,
        endpoint: Option<String>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if self.registry.member(self.identity.did()).is_some() {
            return;
        }
        let member = Member {
            did: self.identity.did().to_string(),
            key: self.identity.verifying_key(),
            status: PeerStatus::Active,
            endpoint,
            namespaces,
        };
        match admission(&self.registry, &member) {
            Ok(proposal) => {
                let digest = proposal.digest();
                if !self.proposals.contains_key(&digest) && self.proposals.len() >= PROPOSALS_MAX {
                    self.proposals.pop_first();
                }
                self.proposals.entry(digest).or_insert_with(|| (proposal.clone(), BTreeMap::new()));
                let content = RegistryContent { proposal, signatures: Vec::new() };
                out.push(Output::Publish(PeerMessage::sign(
                    &self.identity,
                    Content::Registry(Box::new(content)),
                    now_ms,
                )));
            }
            Err(error) => out.push(Output::Event(Event::ProposalRefused {
                peer: self.identity.did().to_string(),
                reason: error.to_string(),
            })),
        }
    }

    /// True when `proposal` changes nothing but `peer`'s status, to `status`.
    fn changes_only(&self, proposal: &RegistryProposal, peer: &str, status: PeerStatus) -> bool {
        let Ok(next) = proposal.apply(&self.registry) else { return false };
        next.members.len() == self.registry.members.len()
            && next.quorum == self.registry.quorum
            && self.registry.members.iter().all(|(did, member)| match next.member(did) {
                Some(after) if did == peer => after.status == status && after.key == member.key,
                Some(after) => after == member,
                None => false,
            })
    }

    /// Whether our own view has no honesty failure of `peer` in the reinstatement window
    /// before `now_ms`.
    fn well_behaved_since(&self, peer: &str, now_ms: u64) -> bool {
        // Good behaviour is counted from the later of its last honesty failure and the change
        // of its status (a peer demoted for what this node did not see still serves its time).
        let last_rejected = self.scores.get(peer).and_then(|s| s.last_rejected_ms);
        let demoted = self.status_changed_ms.get(peer).copied();
        last_rejected.max(demoted).is_none_or(|since| since + self.config.reinstate_after_ms <= now_ms)
    }

    /// Scores crossing the threshold become probation proposals; probation peers that have
    /// behaved for the configured time become reinstatement proposals. Run on every heartbeat.
    fn review_scores(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let mut changes = Vec::new();
        for (did, member) in &self.registry.members {
            if did == self.identity.did() {
                continue;
            }
            let score = self.scores.get(did);
            if member.status == PeerStatus::Active
                && score.is_some_and(|s| s.honesty_rejections() >= self.config.probation_rejections)
            {
                changes.push((
                    did.clone(),
                    PeerStatus::Probation,
                    ProposalReason::Misbehavior { peer: did.clone() },
                ));
            } else if member.status == PeerStatus::Probation && self.well_behaved_since(did, now_ms) {
                let reason = ProposalReason::Reinstatement { peer: did.clone(), at_ms: now_ms };
                changes.push((did.clone(), PeerStatus::Active, reason));
            }
        }
        for (did, status, reason) in changes {
            let already = self.proposals.values().any(|(p, signatures)| {
                p.base_version == self.registry.version
                    && signatures.contains_key(self.identity.did())
                    && match (&p.reason, &reason) {
                        (
                            ProposalReason::Misbehavior { peer: a },
                            ProposalReason::Misbehavior { peer: b },
                        ) => a == b,
                        (
                            ProposalReason::Reinstatement { peer: a, .. },
                            ProposalReason::Reinstatement { peer: b, .. },
                        ) => a == b,
                        _ => false,
                    }
            });
            if already {
                continue;
            }
            match status_change(&self.registry, &did, status, reason) {
                Ok(proposal) => self.endorse(proposal, Vec::new(), now_ms, out),
                Err(error) => {
                    out.push(Output::Event(Event::ProposalRefused { peer: did, reason: error.to_string() }))
                }
            }
        }
    }

    /// Adds our signature (when we agree) and the given ones to a proposal; broadcasts when
    /// the set grew; applies it at quorum.
    fn endorse(
        &mut self,
        proposal: RegistryProposal,
        signatures: Vec<ProposalSignature>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if proposal.apply(&self.registry).is_err() {
            return;
        }
        let digest = proposal.digest();
        if !self.proposals.contains_key(&digest) && self.proposals.len() >= PROPOSALS_MAX {
            self.proposals.pop_first();
        }
        let agrees = self.agrees(&proposal, now_ms);
        let own = agrees.then(|| proposal.sign(&self.identity));
        let entry = self.proposals.entry(digest).or_insert_with(|| (proposal.clone(), BTreeMap::new()));
        let before = entry.1.len();
        let valid: BTreeSet<String> =
            proposal.valid_signers(&self.registry, signatures.iter()).into_iter().collect();
        for signature in signatures.into_iter().chain(own) {
            if valid.contains(&signature.node) || signature.node == self.identity.did() {
                entry.1.entry(signature.node.clone()).or_insert(signature);
            }
        }
        let gathered: Vec<ProposalSignature> = entry.1.values().cloned().collect();
        let grew = entry.1.len() > before;
        let signers = proposal.valid_signers(&self.registry, gathered.iter());
        let content = RegistryContent { proposal: proposal.clone(), signatures: gathered };
        if signers.len() >= self.registry.quorum as usize {
            self.apply_registry(content, now_ms, out);
        } else if grew {
            out.push(Output::Publish(PeerMessage::sign(
                &self.identity,
                Content::Registry(Box::new(content)),
                now_ms,
            )));
        }
    }

    fn apply_registry(&mut self, content: RegistryContent, now_ms: u64, out: &mut Vec<Output>) {
        let Ok(next) = content.proposal.apply(&self.registry) else { return };
        let version = next.version;
        for (did, member) in &next.members {
            if self.registry.member(did).is_none_or(|before| before.status != member.status) {
                self.status_changed_ms.insert(did.clone(), now_ms);
            }
        }
        self.install_registry(next, content.clone());
        self.proposals.retain(|_, (p, _)| p.base_version >= version);
        out.push(Output::Persist(Persist::RegistryApplied(Box::new(content.clone()))));
        out.push(Output::Event(Event::RegistryChanged { version }));
        // Everyone gets the complete, quorum-signed update.
        out.push(Output::Publish(PeerMessage::sign(
            &self.identity,
            Content::Registry(Box::new(content)),
            now_ms,
        )));
        // Anchors awaiting quorum under the old registry are signed again under the new one.
        let waiting: Vec<String> =
            self.owned.iter().filter(|(_, o)| !o.pending.is_empty()).map(|(ns, _)| ns.clone()).collect();
        for namespace in waiting {
            if let Some(owned) = self.owned.get_mut(&namespace) {
                owned.pending.clear();
            }
            if let Err(error) = self.anchor_current(&namespace, now_ms, out) {
                out.push(Output::Event(Event::ProposalRefused {
                    peer: namespace,
                    reason: error.to_string(),
                }));
            }
        }
    }

    /// Notes a final receipt in the epoch of `now_ms`: its namespace's entry grows to it. A
    /// later root of an append-only tree commits to every earlier one (the receipts carry the
    /// consistency), so an epoch anchor names each namespace once, at its largest final size.
    fn record_final(&mut self, namespace: &str, size: u64, root: Digest, now_ms: u64) {
        let epoch = now_ms / self.config.epoch_ms.max(1);
        let finals = self.epoch_finals.entry(epoch).or_default();
        match finals.get_mut(namespace) {
            Some(entry) if entry.0 >= size => {}
            Some(entry) => *entry = (size, root),
            None => {
                finals.insert(namespace.to_string(), (size, root));
            }
        }
        while self.epoch_finals.len() > EPOCHS_KEPT {
            self.epoch_finals.pop_first();
        }
    }

    /// The seed of an epoch's election: the digest of the latest winning epoch anchor before it.
    fn election_seed(&self, epoch: u64) -> Digest {
        self.epoch_anchors.range(..epoch).next_back().map(|(_, (_, _, digest))| *digest).unwrap_or([0u8; 32])
    }

    fn on_epoch_end(&mut self, epoch: u64, now_ms: u64, out: &mut Vec<Output>) {
        let epoch_ms = self.config.epoch_ms.max(1);
        out.push(Output::SetTimer {
            timer: Timer::EpochEnd { epoch: epoch + 1 },
            at_ms: (epoch + 2) * epoch_ms,
        });
        let order = election_order(&self.registry, epoch, &self.election_seed(epoch));
        let Some(rank) = order.iter().position(|did| did == self.identity.did()) else { return };
        match self.registry.anchor_propagation.mode {
            AnchorMode::Independent => {}
            AnchorMode::Collaborative => {
                if rank == 0 {
                    self.request_epoch_anchor(epoch, out);
                }
            }
            AnchorMode::Hybrid => {
                if rank == 0 {
                    self.request_epoch_anchor(epoch, out);
                } else if rank <= HYBRID_SECONDARIES {
                    out.push(Output::SetTimer {
                        timer: Timer::EpochDeadline { epoch },
                        at_ms: now_ms + rank as u64 * self.config.anchor_deadline_ms,
                    });
                }
            }
        }
    }

    /// Asks the host to anchor the root over the receipts this node stored during `epoch`.
    fn request_epoch_anchor(&mut self, epoch: u64, out: &mut Vec<Output>) {
        if self.epoch_requests.contains_key(&epoch) {
            return;
        }
        let entries: Vec<EpochEntry> = self
            .epoch_finals
            .get(&epoch)
            .map(|finals| {
                // Within a message's bounds: at most EPOCH_ENTRIES_MAX namespaces, in bytes that
                // leave room for the rest of the message. Namespaces past them (thousands of
                // them finalizing in one epoch) are left out of this epoch's anchor.
                let mut budget = crate::message::PEER_MESSAGE_BYTES_MAX - EPOCH_ANCHOR_OTHER_BYTES;
                finals
                    .iter()
                    .take(crate::message::EPOCH_ENTRIES_MAX)
                    .take_while(|(namespace, _)| {
                        budget = budget.saturating_sub(namespace.len() + EPOCH_ENTRY_BYTES);
                        budget > 0
                    })
                    .map(|(namespace, (size, root))| EpochEntry {
                        namespace: namespace.clone(),
                        size: *size,
                        root: serde_bytes::ByteBuf::from(root.to_vec()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if entries.is_empty() {
            return;
        }
        let root = epoch_root(&entries);
        self.epoch_requests.insert(epoch, entries);
        while self.epoch_requests.len() > EPOCHS_KEPT {
            self.epoch_requests.pop_first();
        }
        out.push(Output::AnchorRequest { request: AnchorRequestId::Epoch(epoch), root });
    }

    fn on_anchored(
        &mut self,
        request: AnchorRequestId,
        reference: AnchorReference,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        match request {
            AnchorRequestId::Receipt { .. } => {
                out.push(Output::Event(Event::Anchored {
                    request,
                    anchorer: self.identity.did().to_string(),
                    rank: None,
                }));
            }
            AnchorRequestId::Epoch(epoch) => {
                let Some(entries) = self.epoch_requests.get(&epoch).cloned() else { return };
                let content = EpochAnchorContent {
                    epoch,
                    root: serde_bytes::ByteBuf::from(epoch_root(&entries).to_vec()),
                    entries,
                    reference,
                };
                let me = self.identity.did().to_string();
                self.accept_epoch_anchor(&me, content.clone(), out);
                out.push(Output::Publish(PeerMessage::sign(
                    &self.identity,
                    Content::EpochAnchor(content),
                    now_ms,
                )));
            }
        }
    }

    fn on_epoch_anchor(
        &mut self,
        sender: &str,
        content: EpochAnchorContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if self.registry.member(sender).is_none_or(|m| m.status != PeerStatus::Active) {
            self.reject(
                sender,
                Rejection::NotOwner,
                "epoch anchor from a member that is not active".to_string(),
                now_ms,
                out,
            );
            return;
        }
        if content.root.as_slice() != epoch_root(&content.entries) {
            self.reject(
                sender,
                Rejection::BadStatement,
                format!("epoch {} root does not match its entries", content.epoch),
                now_ms,
                out,
            );
            return;
        }
        // Verify against what we hold: an entry that contradicts a final receipt here is a lie.
        for entry in &content.entries {
            let ours = self
                .epoch_finals
                .values()
                .filter_map(|finals| finals.get(&entry.namespace))
                .find(|(size, _)| *size == entry.size);
            if ours.is_some_and(|(_, root)| root.as_slice() != entry.root.as_slice()) {
                let detail = format!(
                    "epoch {} entry {} at {} contradicts our final receipt",
                    content.epoch, entry.namespace, entry.size
                );
                self.reject(sender, Rejection::BadStatement, detail, now_ms, out);
                return;
            }
        }
        self.accept_epoch_anchor(sender, content, out);
    }

    /// Keeps the winning anchor of an epoch. Conflicting claims (two nodes both anchored the
    /// epoch) are resolved by one rule every node applies identically: the claim with the
    /// smallest digest of (anchorer, content) wins.
    fn accept_epoch_anchor(&mut self, anchorer: &str, content: EpochAnchorContent, out: &mut Vec<Output>) {
        let mut bytes = anchorer.as_bytes().to_vec();
        bytes.push(0);
        let _ = ciborium::into_writer(&content, &mut bytes);
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let epoch = content.epoch;
        let replaces = self.epoch_anchors.get(&epoch).is_none_or(|(_, _, current)| digest < *current);
        if !replaces {
            return;
        }
        let order = election_order(&self.registry, epoch, &self.election_seed(epoch));
        let rank = order.iter().position(|did| did == anchorer);
        self.epoch_anchors.insert(epoch, (content, anchorer.to_string(), digest));
        while self.epoch_anchors.len() > EPOCHS_KEPT {
            self.epoch_anchors.pop_first();
        }
        out.push(Output::Event(Event::Anchored {
            request: AnchorRequestId::Epoch(epoch),
            anchorer: anchorer.to_string(),
            rank,
        }));
    }

    fn on_registry(
        &mut self,
        sender: &str,
        content: RegistryContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let base = content.proposal.base_version;
        if base > self.registry.version {
            self.request_registry(sender, now_ms, out);
            return Ok(());
        }
        if base < self.registry.version {
            return Ok(());
        }
        if let Err(error) = content.proposal.apply(&self.registry) {
            self.reject(sender, Rejection::Malformed, format!("registry update: {error}"), now_ms, out);
            return Ok(());
        }
        let claimed = content.signatures.len();
        let valid = content.proposal.valid_signers(&self.registry, content.signatures.iter()).len();
        if valid < claimed {
            self.reject(
                sender,
                Rejection::BadStatement,
                format!("{} of {claimed} registry signatures invalid", claimed - valid),
                now_ms,
                out,
            );
        }
        self.endorse(content.proposal, content.signatures, now_ms, out);
        Ok(())
    }

    fn on_evidence(&mut self, sender: &str, content: EvidenceContent, now_ms: u64, out: &mut Vec<Output>) {
        let first = self.signed_checkpoint(&content.first);
        let second = self.signed_checkpoint(&content.second);
        match (first, second) {
            (Ok((a, signer_a, _)), Ok((b, signer_b, _)))
                if signer_a == signer_b
                    && a.namespace == b.namespace
                    && a.size == b.size
                    && a.root != b.root =>
            {
                self.raise_evidence(
                    &signer_a,
                    &a.namespace,
                    a.size,
                    content.first,
                    content.second,
                    now_ms,
                    out,
                );
            }
            _ => self.reject(
                sender,
                Rejection::BadEvidence,
                "evidence proves no equivocation".to_string(),
                now_ms,
                out,
            ),
        }
    }
}
