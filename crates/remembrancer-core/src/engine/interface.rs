//! The engine's interface to its host: what goes in (`Input`, `Timer`), what comes out
//! (`Output`, `Persist`, `Event`), its settings (`EngineConfig`), why an input is refused
//! (`EngineError`) and what it keeps per peer (`Rejection`, `PeerScore`, `Evidence`,
//! `AuditEntry`).
//!
//! **The contract.** A host (`crates/remembrancer-host`) restores the engine from its store
//! (`restore.rs`, before `Input::Start`), then feeds it inputs through `Engine::handle` (or
//! `handle_into`) and carries out each input's outputs in order: what it persists first,
//! then the messages. Every input gets its answer there: a commit `Event::Committed` or
//! `EngineError::Commit`/`Refused`, a message its events (`Event::Rejected` when refused),
//! a write `Input::Stored`'s nothing. Between inputs the host may ask the side-effect-free
//! queries of `queries.rs`, and may call one hint, `Engine::preverify`: it verifies the
//! signatures of a group of messages about to be handled in one batch and changes no answer
//! (an engine never given the hint answers the same, only slower).

use super::*;

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
    /// A commit that cannot be taken as it is (see [`CommitRefusal`]); nothing of it is
    /// stored or signed.
    #[error("commit refused: {0}")]
    Commit(#[from] CommitRefusal),
    /// A registry change the operator proposed ([`Input::Propose`]) is not valid: the field
    /// and the reason (for example, fewer active members than the quorum). Nothing was signed.
    #[error("proposal refused: {0}")]
    Proposal(#[from] crate::registry::RegistryError),
}

/// Why a commit was refused as it came: it says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitRefusal {
    /// No records.
    #[error("no records to commit")]
    Empty,
    /// More records than one commit takes.
    #[error("{count} records in one commit; at most {max}: split them")]
    TooMany {
        /// Records sent.
        count: usize,
        /// [`COMMIT_RECORDS_MAX`].
        max: usize,
    },
    /// Not a namespace name (`<kind>:<name>`, lowercase letters and digits).
    #[error("{namespace:?} is not a namespace name (`kind:name`, lowercase letters and digits)")]
    BadNamespace {
        /// The name sent.
        namespace: String,
    },
    /// A namespace another member owns under the current registry.
    #[error("{namespace} belongs to another member under registry version {version}")]
    NotOwner {
        /// The namespace.
        namespace: String,
        /// The registry version.
        version: u64,
    },
}

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
    /// The operator proposes a registry change (`federation propose`): the node checks that
    /// it applies to the current registry and that this node is an active member (else
    /// [`EngineError::Proposal`]), signs it, and broadcasts it. Other members sign it only
    /// when their operators approve it; it takes effect at the current registry's quorum.
    Propose {
        /// The proposal (reason `Manual`).
        proposal: RegistryProposal,
    },
    /// The operator approves a proposal this node holds (`federation approve`): the node
    /// signs it whatever its reason (admission policy `manual`).
    Approve {
        /// The proposal's digest.
        digest: [u8; 32],
    },
    /// The host sends a cross-namespace delivery or acknowledgement to a member on its
    /// stream, signed by this node (a [`Content::XDelivery`] or [`Content::XAck`]; anything else
    /// is ignored).
    SendDirect {
        /// The member's DID.
        to: String,
        /// What to send.
        content: Content,
    },
    /// The host publishes evidence it found on gossip, signed by this node: a
    /// [`Content::XEvidence`] (two messages at one lane and sequence) or a [`Content::Evidence`]
    /// (a source's checkpoint that contradicts a receipt: two notes of one size). Evidence this
    /// node publishes reaches its own engine too. Anything else is ignored.
    Broadcast {
        /// What to publish.
        content: Content,
    },
    /// The host anchored what `Output::AnchorRequest` asked for.
    Anchored {
        /// Which request.
        request: AnchorRequestId,
        /// Where the root was anchored.
        reference: AnchorReference,
    },
    /// The host wrote the records of an owned namespace below `size` ([`Persist::Records`])
    /// and can read them back: the tree's node store may drop what it can recompute from
    /// them. Nothing comes out.
    Stored {
        /// Namespace.
        namespace: String,
        /// Records below this index are stored.
        size: u64,
    },
}

/// What an anchor request is for (a host that answers later keeps it with the anchor: it
/// serializes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// Evidence of an epoch anchor claimed out of turn.
    ClaimEvidence(ClaimEvidence),
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
    /// A commit was taken: its records are in the tree (persisted with this input's
    /// outputs) at `first_index..size`; `anchored` says whether a checkpoint of them was
    /// signed now, or they wait for a free slot in the anchor window.
    Committed {
        /// The namespace.
        namespace: String,
        /// The first record's index.
        first_index: u64,
        /// The tree's size after the commit.
        size: u64,
        /// Whether a checkpoint was signed with it.
        anchored: bool,
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
    /// A cross-namespace message or acknowledgement arrived from a member (its message
    /// signature checked): the host checks and records it (`crate::xmsg`).
    Messaging {
        /// The member that sent it.
        sender: String,
        /// A delivery or an acknowledgement.
        content: Content,
    },
    /// A member signed an epoch anchor claim the election (under the registry version the
    /// claim names) did not allow it.
    UnelectedClaim {
        /// The claimant.
        signer: String,
        /// The epoch.
        epoch: u64,
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
    /// An epoch anchor this node cannot judge: it names a registry version this node does not
    /// hold, or it came unsealed (its sender's connection vouched for it, so it proves nothing
    /// to others). Not counted against the sender's honesty.
    NotElected,
    /// A sealed epoch anchor claim the election, under the registry version it names, did not
    /// allow its sender (see [`crate::anchoring::may_claim_epoch`]): kept as evidence.
    UnelectedClaim,
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
                | Rejection::UnelectedClaim
        )
    }
}

/// An epoch anchor claim out of turn: the claim as its sender signed it (a peer message), and
/// what it shows. Anyone holding the registry version it names can check it
/// ([`crate::evidence::check_claim`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimEvidence {
    /// The claimant.
    pub signer: String,
    /// The epoch claimed.
    pub epoch: u64,
    /// The registry version the claim names.
    pub registry_version: u64,
    /// The claimant's rank in the epoch's election order (none: not in it).
    pub rank: Option<u64>,
    /// The signed claim (`PeerMessage::encode`).
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
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
