//! The one host of the federation engine. [`Host`] owns an [`Engine`] and a [`Net`] and runs
//! the loop that feeds the engine network events, due timers and its embedder's calls, and
//! carries out what the engine answers, in order:
//!
//! - **group commit** (`group.rs`): the records the inputs of one turn of the loop persist
//!   are written as one batch ([`Embedder::persist`]), and only then do the messages and
//!   answers they released go out; a write that releases nothing is not synced;
//! - **arrivals** (`arrivals.rs`): frames decoded, the signatures of a group verified in one
//!   batch ([`Engine::preverify`]), bookkeeping held back a little while the messages that
//!   decide receipts go first, each gossip frame's verdict given to gossipsub after the write;
//! - **timers** and the **loop** itself (`run.rs`).
//!
//! Two embedders use it: the node process (RocksDB, the HTTP API, appends and their commits;
//! `bin/remembrancer/src/node/runtime/`) and the in-process nodes that the 50-node mesh test
//! and the 100-node benchmark run by the dozen in one process, with nothing stored
//! ([`inprocess`]).

mod arrivals;
mod counters;
mod group;
pub mod inprocess;
mod run;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use remembrancer_core::anchoring::{AnchorReference, AnchorTarget as _, LocalTarget};
use remembrancer_core::engine::AnchorRequestId;
use remembrancer_core::engine::{Engine, Event, Output, Persist, Timer};
use remembrancer_core::hash::Digest;
use remembrancer_core::merkle::NodeStore;
use remembrancer_core::registry::Registry;
use remembrancer_net::libp2p::gossipsub::MessageId;
use remembrancer_net::libp2p::PeerId;
use remembrancer_net::{Net, Verdict};

pub use counters::HostCounters;

use arrivals::Arrival;

/// Network events and calls handled as one group between two writes, at most.
const GROUP_INPUTS_MAX: usize = 256;
/// Bookkeeping messages waiting, at most (then they are handled at once, as one batch).
const DEFERRED_MAX: usize = 256;
/// Peers counted one by one in the garbage and refusal counters, at most (the rest under
/// "others").
const PEERS_COUNTED_MAX: usize = 4096;

/// The host's wall clock, in milliseconds since the Unix epoch (the engine's time).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How a host lets bookkeeping wait and paces discovery.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// How long bookkeeping messages (others' receipts, heartbeats, countersignatures that
    /// decide no receipt of this node: [`Engine::is_on_receipt_path`]) may wait while those
    /// on a receipt's path go first, to be verified in one larger batch. Zero: never.
    pub defer: Duration,
    /// Draw each wait between half and one and a half `defer` (in-process nodes that share a
    /// machine: equal waits would end together and their batches take the cores at once).
    pub defer_drawn: bool,
    /// Handle the waiting bookkeeping as soon as the host has been this long without a network
    /// event or a call, before `defer` is up (at a low rate the node has the time then).
    pub quiet: Option<Duration>,
    /// Bookkeeping waits only in a federation of at most this many members, where every
    /// member connects to every other and gossip's forwarding (which waits for our verdict)
    /// only repairs; in a larger one members reach each other through relays, and each
    /// relay's wait would add up.
    pub defer_members_max: usize,
    /// How often the loop offers [`Net::discover`] a turn (it paces its lookups itself).
    pub discovery_tick: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            defer: Duration::ZERO,
            defer_drawn: false,
            quiet: None,
            defer_members_max: usize::MAX,
            discovery_tick: Duration::from_millis(250),
        }
    }
}

/// Whether the loop goes on after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep running.
    Continue,
    /// Stop: what waits is handled and written, then [`Host::run`] returns.
    Stop,
}

/// What a host's embedder adds: where the engine's records go, its own calls (API requests,
/// commands, its own timers), and what it does with the engine's events. Every method but
/// [`Embedder::persist`] and [`Embedder::next_call`] has a default that does nothing.
pub trait Embedder<S: NodeStore> {
    /// The embedder's own calls.
    type Call;

    /// The next call; none when there will be no more (the host then stops). The loop drops
    /// this future when something else comes first: it must lose nothing then (channel
    /// receives, interval ticks and signal streams are such).
    fn next_call(&mut self) -> impl Future<Output = Option<Self::Call>> + Send;

    /// Handles one call (through [`Host::input`] for what it asks of the engine).
    fn on_call(&mut self, host: &mut Host<S>, call: Self::Call) -> anyhow::Result<Control>;

    /// Writes the records of one group of inputs as one batch; `synced` when messages or
    /// answers wait for it (then it must be durable when this returns). An error stops the
    /// host: nothing that waited for the write goes out.
    fn persist(&mut self, batch: &[Persist], synced: bool) -> anyhow::Result<()>;

    /// Whether answers of the embedder's wait for the next write (the write is then synced).
    fn awaits_write(&self) -> bool {
        false
    }

    /// The group's write is done and its messages are out: the embedder's answers may go.
    fn released(&mut self) {}

    /// An event of the engine (the host has updated its member list for a registry change).
    fn on_event(&mut self, _engine: &Engine<S>, _event: &Event) {}

    /// A peer connected (`true`) or its last connection closed; `member` is its DID when the
    /// registry lists it.
    fn on_connection(
        &mut self,
        _host: &mut Host<S>,
        _peer: PeerId,
        _member: Option<&str>,
        _connected: bool,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    /// The end of each turn of the loop, before the group's write (the node commits the
    /// appends that waited for an anchor slot a receipt of this group freed).
    fn before_write(&mut self, _host: &mut Host<S>) -> anyhow::Result<()> {
        Ok(())
    }

    /// The engine asks for `root` to be anchored outside the federation. Answer at once
    /// (`Some`: the host gives it back to the engine as `Input::Anchored`), or later, once
    /// the anchor is final, through [`Host::input`] with `Input::Anchored` (`None`). The
    /// default anchors at the `local` target at once: the federation's own signatures are
    /// the anchor.
    fn anchor(&mut self, _request: &AnchorRequestId, root: &Digest) -> Option<AnchorReference> {
        LocalTarget::default().anchor(root, now_ms()).ok()
    }

    /// The loop ended: the last chance to give the engine inputs before the final write.
    fn on_stop(&mut self, _host: &mut Host<S>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The registry's members as the network knows them: DID <-> PeerId.
#[derive(Debug, Default)]
struct Members {
    peer_of: HashMap<String, PeerId>,
    did_of: HashMap<PeerId, String>,
}

impl Members {
    fn of(registry: &Registry) -> Self {
        let mut members = Members::default();
        for member in registry.members.values() {
            if let Some(peer) = remembrancer_net::peer_id_of(member.key.as_bytes()) {
                members.peer_of.insert(member.did.clone(), peer);
                members.did_of.insert(peer, member.did.clone());
            }
        }
        members
    }
}

/// An engine, its network and the state of the loop that drives them.
pub struct Host<S: NodeStore> {
    engine: Engine<S>,
    net: Net,
    config: HostConfig,
    members: Members,
    /// Engine timers by due time (and a sequence number: timers due together keep their order).
    timers: BTreeMap<(u64, u64), Timer>,
    timer_seq: u64,
    counters: HostCounters,
    /// Group commit: what the inputs since the last write persist, and the messages waiting
    /// for that write.
    unsynced: Vec<Persist>,
    held: Vec<Output>,
    /// The engine's outputs for the input at hand, one buffer kept between inputs.
    outputs: Vec<Output>,
    /// Members whose anchors arrived since the last write, in order: a broadcast on streams
    /// reaches them first, since the countersignatures it carries decide their receipts and
    /// are bookkeeping to everyone else (at most one entry per member).
    answer_first: Vec<PeerId>,
    /// The engine's verdicts on gossip frames, given to gossipsub after the group's write.
    verdicts: Vec<(MessageId, PeerId, Verdict)>,
    /// Gossip frames of several messages with some not yet handled: how many, and the verdict
    /// so far (at most the frames of a group and of the bookkeeping waiting).
    frames: HashMap<MessageId, (usize, Verdict)>,
    /// Bookkeeping held back, and when its wait ends.
    deferred: Vec<Arrival>,
    deferred_until: Option<tokio::time::Instant>,
    /// When the first of the waiting bookkeeping arrived (for `quiet`).
    deferred_since: Option<tokio::time::Instant>,
    /// When a network event or a call last arrived.
    last_busy: tokio::time::Instant,
}

impl<S: NodeStore> Host<S> {
    /// A host for `engine` on `net`.
    pub fn new(engine: Engine<S>, net: Net, config: HostConfig) -> Self {
        let members = Members::of(engine.registry());
        Host {
            engine,
            net,
            config,
            members,
            timers: BTreeMap::new(),
            timer_seq: 0,
            counters: HostCounters::default(),
            unsynced: Vec::new(),
            held: Vec::new(),
            outputs: Vec::new(),
            answer_first: Vec::new(),
            verdicts: Vec::new(),
            frames: HashMap::new(),
            deferred: Vec::new(),
            deferred_until: None,
            deferred_since: None,
            last_busy: tokio::time::Instant::now(),
        }
    }

    /// The engine, for queries ([`Engine`]'s `queries.rs`); inputs go through [`Host::input`].
    pub fn engine(&self) -> &Engine<S> {
        &self.engine
    }

    /// The network.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The network, to dial, block or look up peers.
    pub fn net_mut(&mut self) -> &mut Net {
        &mut self.net
    }

    /// What the host counted.
    pub fn counters(&self) -> &HostCounters {
        &self.counters
    }

    /// The PeerId of a registry member.
    pub fn peer_of(&self, did: &str) -> Option<PeerId> {
        self.members.peer_of.get(did).copied()
    }

    /// The DID of the member a PeerId belongs to.
    pub fn did_of(&self, peer: &PeerId) -> Option<&str> {
        self.members.did_of.get(peer).map(String::as_str)
    }

    /// Marks the host busy now, as a network event does: bookkeeping that waits with
    /// [`HostConfig::quiet`] stays waiting until the host has been quiet that long (the node
    /// marks its API calls; its own timers do not count).
    pub fn mark_busy(&mut self) {
        self.last_busy = tokio::time::Instant::now();
    }

    /// Whether bookkeeping may wait in this federation ([`HostConfig::defer_members_max`]).
    fn defers(&self) -> bool {
        !self.config.defer.is_zero() && self.engine.registry().members.len() <= self.config.defer_members_max
    }
}
