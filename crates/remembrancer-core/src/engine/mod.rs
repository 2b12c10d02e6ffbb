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
//!
//! Rooms: `interface.rs` is what a host reads (inputs, outputs, settings, errors) and
//! `queries.rs` what it may ask between inputs; `restore.rs` rebuilds an engine from a store;
//! this file holds the engine's state and dispatches each input. The flows: `owner.rs`
//! (commit, sign, retry, gather countersignatures, finalize) with `guard.rs` (never two roots
//! for one size), `receive.rs` (every peer message's checks and dispatch), `preverify.rs`
//! (batched signature checks), `witness.rs` (check and countersign), `catchup.rs` (receipts,
//! heartbeats, requests), `evidence.rs`, `membership.rs` (proposals, scores, registry
//! updates) and `epochs.rs` (epoch anchors).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::anchoring::{election_order, epoch_root, may_claim_epoch, AnchorReference, EpochEntry};
use crate::checkpoint::{AnchorClaim, Checkpoint};
use crate::evidence::evidence_key;
use crate::governance::{admission, status_change, ProposalReason, ProposalSignature, RegistryProposal};
use crate::hash::{Digest, HashAlgorithm};
use crate::identity::NodeIdentity;
use crate::merkle::{verify_consistency, MemoryTree, NodeStore, TreeError};
use crate::message::{
    AnchorContent, ClaimEvidenceContent, Content, CountersignContent, EpochAnchorContent, EvidenceContent,
    HeartbeatContent, PeerMessage, ReceiptContent, RegistryContent, RequestContent, RequestKind,
};
use crate::note::{cosignature_message, Note, NoteError, NoteSignature, NoteView, SIGNATURE_TYPE_ED25519};
use crate::receipt::{
    countersign_body, prepare_receipt, sign_anchor_raw, verify_receipts_batch, FederationReceipt, Role,
    SignatureJson,
};
use crate::registry::{AnchorMode, Member, PeerStatus, Registry};
use crate::signature::{Operations, Verifier};

mod catchup;
mod epochs;
mod evidence;
mod guard;
mod interface;
mod membership;
mod owner;
mod preverify;
mod queries;
mod receive;
mod restore;
mod witness;

use guard::Guard;
pub use guard::SignRefusal;
pub use interface::*;

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
pub use crate::anchoring::HYBRID_SECONDARIES;
/// Most records one commit may carry.
pub const COMMIT_RECORDS_MAX: usize = 1_000_000;

/// Catch-up requests awaiting an answer, per namespace.
pub const CATCH_UP_PENDING_MAX: usize = 1024;
/// Signatures one [`Engine::preverify`] checks in its batch, at most (those of the messages
/// that do not fit are verified when the messages are handled): room for the cosignatures of
/// several receipts of a 100-member federation (67 each at quorum 67), which verify faster
/// together since their witnesses' keys count once.
pub const PREVERIFY_MAX: usize = 1024;

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
    /// Claims out of turn held as evidence (at most `EVIDENCE_MAX`; keyed in `evidence_seen`
    /// by the claim message's digest).
    claim_evidence: Vec<ClaimEvidence>,
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
    epoch_requests: BTreeMap<u64, (u64, Vec<EpochEntry>)>,
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
    /// This engine's verdict memo, key cache and operation counts, lent to the thread for
    /// each call ([`Engine::set_verifier`]); none: the engine uses what its caller lent.
    verifier: Option<Verifier>,
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
            claim_evidence: Vec::new(),
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
            verifier: None,
            registry,
        }
    }

    /// Gives the engine a verifier of its own ([`crate::signature::Verifier`]): from now on
    /// it remembers its verdicts and counts its operations there, and never recalls another
    /// engine's. Without one (the default), the engine uses whatever verifier its caller has
    /// lent to the thread (the simulator lends one to all its nodes), and else none.
    pub fn set_verifier(&mut self, verifier: Verifier) {
        self.verifier = Some(verifier);
    }

    /// [`Engine::set_verifier`], for a builder chain.
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.set_verifier(verifier);
        self
    }

    /// Runs `work` with this engine's verifier lent to the thread (none of its own: whatever
    /// the caller lent stays).
    fn lending<T>(&mut self, work: impl FnOnce(&mut Self) -> T) -> T {
        match self.verifier.take() {
            None => work(self),
            Some(mut verifier) => {
                let done = verifier.lend(|| work(self));
                self.verifier = Some(verifier);
                done
            }
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
        self.lending(|engine| engine.dispatch(input, now_ms, out))
    }

    fn dispatch(&mut self, input: Input, now_ms: u64, out: &mut Vec<Output>) -> Result<(), EngineError> {
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
                // Still a secondary under the registry now in force (it may have changed
                // since the epoch ended): a claim is judged under the version it names.
                let order = election_order(&self.registry, epoch);
                let rank = order.iter().position(|did| did == self.identity.did());
                if !self.epoch_anchors.contains_key(&epoch)
                    && may_claim_epoch(self.registry.anchor_propagation.mode, rank)
                {
                    self.request_epoch_anchor(epoch, out);
                }
            }
            Input::Anchored { request, reference } => self.on_anchored(request, reference, now_ms, out),
            Input::Stored { namespace, size } => {
                if let Some(owned) = self.owned.get_mut(&namespace) {
                    owned.tree.store_mut().records_readable(size);
                }
            }
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
            Input::Propose { proposal } => self.propose(proposal, now_ms, out)?,
            Input::Broadcast { content } => match content {
                Content::XEvidence(_) => {
                    out.push(Output::Publish(PeerMessage::sign(&self.identity, content, now_ms)))
                }
                // Checked as if a peer had sent it: raised (kept, published, probation) only
                // when it proves an equivocation.
                Content::Evidence(evidence) => {
                    let sender = self.identity.did().to_string();
                    self.on_evidence(&sender, evidence, now_ms, out)
                }
                _ => {}
            },
            Input::SendDirect { to, content } => {
                if matches!(content, Content::XDelivery(_) | Content::XAck(_)) {
                    out.push(Output::Send {
                        to,
                        message: PeerMessage::sign(&self.identity, content, now_ms),
                    });
                }
            }
            Input::Approve { digest } => {
                if let Some((proposal, _)) = self.proposals.get(&digest).cloned() {
                    self.approve(digest);
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
}
