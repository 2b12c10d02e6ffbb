//! A federation engine driven over a [`Net`] with nothing persisted: the in-process node that
//! the 50-node mesh test and the 100-node finality benchmark run by the dozen in one process
//! (real libp2p, usually on the memory transport). The node binary's runtime is the same loop
//! plus RocksDB (one synced batch before any output leaves), the HTTP API and the counters.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt as _;
use remembrancer_core::anchoring::{AnchorTarget as _, LocalTarget};
use remembrancer_core::engine::{Engine, Event, Input, Output, Rejection, Timer};
use remembrancer_core::merkle::MemoryNodeStore;
use remembrancer_core::message::{decode_frame, MessageError, PeerMessage};
use remembrancer_core::registry::Registry;
use remembrancer_core::signature::{Operations, Verifier};
use tokio::sync::mpsc;

use crate::{peer_id_of, streams_carry, Net, NetEvent, Verdict};
use libp2p::PeerId;

/// Commands a node's queue holds, at most (a full queue refuses the command).
pub const COMMANDS_MAX: usize = 1024;
/// Network events handled as one group, at most: their signatures are verified in one batch.
const GROUP_EVENTS_MAX: usize = 256;
/// Bookkeeping frames a node holds back, at most (then they are handled at once).
const HELD_MAX: usize = 256;
/// Verdicts each node remembers (its own memo: nodes that share a thread do not share
/// verdicts). A node checks about 80 signatures per checkpoint of a 100-node federation.
const VERDICTS_KEPT: usize = 4096;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Ed25519 work of every in-process node's engine in this process (signatures, verifications,
/// of which batched, and the batches): what a benchmark's crypto floor is made of.
static OPERATIONS: [AtomicU64; 4] =
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn count_operations(operations: Operations) {
    OPERATIONS[0].fetch_add(operations.signatures, Ordering::Relaxed);
    OPERATIONS[1].fetch_add(operations.verifications, Ordering::Relaxed);
    OPERATIONS[2].fetch_add(operations.batched, Ordering::Relaxed);
    OPERATIONS[3].fetch_add(operations.batches, Ordering::Relaxed);
}

/// The Ed25519 operations the engines of all in-process nodes of this process computed so far.
pub fn engine_operations() -> Operations {
    Operations {
        signatures: OPERATIONS[0].load(Ordering::Relaxed),
        verifications: OPERATIONS[1].load(Ordering::Relaxed),
        batched: OPERATIONS[2].load(Ordering::Relaxed),
        batches: OPERATIONS[3].load(Ordering::Relaxed),
    }
}

/// What an in-process node tells its harness.
#[derive(Debug, Clone)]
pub enum Report {
    /// The node's connected-peer count changed.
    Connected {
        /// The node's index in the harness.
        node: usize,
        /// Peers connected now.
        peers: usize,
    },
    /// A receipt became final at this node.
    Final {
        /// The node's index in the harness.
        node: usize,
        /// Namespace of the receipt.
        namespace: String,
        /// Tree size it covers.
        size: u64,
        /// Commit to final, in milliseconds, when this node is the owner.
        latency_ms: Option<u64>,
    },
    /// The engine refused a message.
    Refused {
        /// The node's index in the harness.
        node: usize,
        /// Why.
        reason: Rejection,
    },
}

/// Waits until each of `nodes` nodes reports at least `min_peers` connected peers, reading
/// (and dropping) the harness's reports; the connections per node then, or on timeout.
pub async fn await_connections(
    reports: &mut mpsc::Receiver<Report>,
    nodes: usize,
    min_peers: usize,
    within: Duration,
) -> Result<Vec<usize>, Vec<usize>> {
    let mut connected = vec![0usize; nodes];
    let deadline = tokio::time::Instant::now() + within;
    while connected.iter().any(|&c| c < min_peers) {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(Report::Connected { node, peers })) if node < nodes => connected[node] = peers,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(connected),
        }
    }
    Ok(connected)
}

/// The DID -> PeerId map of a registry's members.
pub fn member_peer_ids(registry: &Registry) -> HashMap<String, PeerId> {
    registry
        .members
        .values()
        .filter_map(|m| peer_id_of(m.key.as_bytes()).map(|p| (m.did.clone(), p)))
        .collect()
}

/// Where a frame came from: gossip (its message id and the peer that relayed it), or a
/// member directly (a stream or request from that peer).
type Origin = Result<(libp2p::gossipsub::MessageId, PeerId), PeerId>;
/// A frame's origin and its messages, decoded.
type Frame = (Origin, Vec<Result<PeerMessage, MessageError>>);

/// One engine, one swarm, a timer wheel and a local anchor target.
pub struct InProcessNode {
    index: usize,
    net: Net,
    engine: Engine<MemoryNodeStore>,
    peer_of: HashMap<String, PeerId>,
    members: HashSet<PeerId>,
    timers: BTreeMap<(u64, u64), Timer>,
    sequence: u64,
    target: LocalTarget,
    reports: mpsc::Sender<Report>,
    /// Reports the harness was too slow to take.
    dropped_reports: u64,
    /// How long bookkeeping frames may wait ([`InProcessNode::hold_bookkeeping`]); zero:
    /// not at all.
    wait: Duration,
    /// Bookkeeping frames held back, and when they are due (drawn when the first of them
    /// arrived).
    held: Vec<Frame>,
    held_until: Option<tokio::time::Instant>,
}

impl InProcessNode {
    /// A node numbered `index` in its harness; reports go to `reports` (when it is full,
    /// they are dropped and counted, never awaited: the node does not stall on its harness).
    pub fn new(
        index: usize,
        net: Net,
        engine: Engine<MemoryNodeStore>,
        reports: mpsc::Sender<Report>,
    ) -> Self {
        let engine = engine.with_verifier(Verifier::new(VERDICTS_KEPT));
        let peer_of = member_peer_ids(engine.registry());
        let members = peer_of.values().copied().collect();
        InProcessNode {
            index,
            net,
            engine,
            peer_of,
            members,
            timers: BTreeMap::new(),
            sequence: 0,
            target: LocalTarget::default(),
            reports,
            dropped_reports: 0,
            wait: Duration::ZERO,
            held: Vec::new(),
            held_until: None,
        }
    }

    /// Lets frames that are bookkeeping here ([`Engine::is_on_receipt_path`]: others'
    /// receipts, heartbeats, countersignatures that decide no receipt of this node) wait
    /// (at most `HELD_MAX` of them), then handles them together: the cosignatures of
    /// the receipts that waited together are verified in one batch, where the witnesses'
    /// keys they share count once (one core here verifies 268 cosignatures under 100 keys at
    /// 15-17 µs each, 67 under 67 keys at 27-35 µs). Anchors, and countersignatures of this
    /// node's own anchors still short of their quorum, never wait: receipts become final at
    /// their owners as fast as before, and at the other members up to 1.5 `wait` later.
    ///
    /// Each wait is drawn between half and one and a half `wait` (`wait` on average). A
    /// receipt reaches every member at about the same moment and starts their waits together:
    /// equal waits ended together too, and the members' batches, verified at once, held the
    /// cores from the anchors and countersignatures of the receipts then in progress (in the
    /// 100-node benchmark 11 of 400 receipts took over 250 ms, spread over the run; with
    /// drawn waits 0, 21, 0, 0 and 0 in five runs, the 21 within 3 s of each other).
    pub fn hold_bookkeeping(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    fn report(&mut self, report: Report) {
        if self.reports.try_send(report).is_err() {
            self.dropped_reports += 1;
        }
    }

    /// Feeds one input to the engine and carries out its outputs in order.
    fn input(&mut self, input: Input) -> Vec<Event> {
        let mut queue = VecDeque::from([input]);
        let mut events = Vec::new();
        while let Some(input) = queue.pop_front() {
            let before = self.engine.operations();
            let handled = self.engine.handle(input, now_ms());
            count_operations(self.engine.operations().since(before));
            let Ok(outputs) = handled else { continue };
            for output in outputs {
                match output {
                    Output::Persist(_) => {}
                    Output::Publish(mut message) => {
                        let direct = self.broadcast_direct(&message);
                        if direct.is_empty() {
                            // Gossip may be relayed: the message must prove its sender itself.
                            self.engine.seal(&mut message);
                        }
                        let data = message.encode();
                        if direct.is_empty() {
                            if let Err(error) = self.net.publish(data) {
                                tracing::debug!(%error, "publish failed");
                            }
                        } else {
                            self.net.send_each(direct, data);
                        }
                    }
                    Output::Send { to, message } => {
                        if let Some(peer) = self.peer_of.get(&to) {
                            self.net.send_message(*peer, &message);
                        }
                    }
                    Output::SetTimer { timer, at_ms } => {
                        self.sequence += 1;
                        self.timers.insert((at_ms, self.sequence), timer);
                    }
                    Output::AnchorRequest { request, root } => {
                        if let Ok(reference) = self.target.anchor(&root, now_ms()) {
                            queue.push_back(Input::Anchored { request, reference });
                        }
                    }
                    Output::Event(event) => {
                        match &event {
                            Event::Finalized { namespace, size, latency_ms } => {
                                let report = Report::Final {
                                    node: self.index,
                                    namespace: namespace.clone(),
                                    size: *size,
                                    latency_ms: *latency_ms,
                                };
                                self.report(report);
                            }
                            Event::Rejected { reason, .. } => {
                                let report = Report::Refused { node: self.index, reason: *reason };
                                self.report(report);
                            }
                            Event::RegistryChanged { .. } => {
                                self.peer_of = member_peer_ids(self.engine.registry());
                                self.members = self.peer_of.values().copied().collect();
                            }
                            _ => {}
                        }
                        events.push(event);
                    }
                }
            }
        }
        events
    }

    /// Handles network events that arrived together, as the node binary does: their
    /// messages are decoded, and the frames that are bookkeeping wait when the node holds them
    /// back ([`InProcessNode::hold_bookkeeping`]); the rest are handled now, together.
    fn on_net_group(&mut self, group: Vec<NetEvent>) {
        let mut now = Vec::with_capacity(group.len());
        for event in group {
            let frame: Frame = match event {
                NetEvent::Gossip { source, id, data } => (Ok((id, source)), decode_frame(&data)),
                // Only members speak to a node directly.
                NetEvent::Direct { peer, data } if self.members.contains(&peer) => {
                    (Err(peer), decode_frame(&data))
                }
                NetEvent::Direct { .. } | NetEvent::Listening(_) => continue,
                NetEvent::Connected(_) | NetEvent::Disconnected(_) => {
                    let report = Report::Connected { node: self.index, peers: self.net.connected().len() };
                    self.report(report);
                    continue;
                }
            };
            let bookkeeping = !self.wait.is_zero()
                && frame.1.iter().all(|part| part.as_ref().is_ok_and(|m| !self.engine.is_on_receipt_path(m)));
            if bookkeeping {
                let wait = self.wait;
                self.held_until.get_or_insert_with(|| tokio::time::Instant::now() + crate::jittered(wait));
                self.held.push(frame);
            } else {
                now.push(frame);
            }
        }
        self.on_frames(now);
        if self.held.len() >= HELD_MAX {
            self.release_held();
        }
    }

    /// Handles the bookkeeping frames held back, as one group.
    fn release_held(&mut self) {
        self.held_until = None;
        let held = std::mem::take(&mut self.held);
        self.on_frames(held);
    }

    /// Handles frames in order. The signatures their handling would check one by one are
    /// verified first, in one batch ([`Engine::preverify`]); each gossip frame then gets the
    /// verdict its messages earn.
    fn on_frames(&mut self, frames: Vec<Frame>) {
        if frames.is_empty() {
            return;
        }
        let messages: Vec<(&PeerMessage, bool)> = frames
            .iter()
            .flat_map(|(origin, parts)| {
                let direct = origin.as_ref().err().copied();
                parts.iter().filter_map(move |part| part.as_ref().ok().map(|message| (message, direct)))
            })
            .map(|(message, direct)| (message, self.came_from_sender(message, direct)))
            .collect();
        let before = self.engine.operations();
        self.engine.preverify(messages);
        count_operations(self.engine.operations().since(before));
        for (origin, parts) in frames {
            let direct = origin.as_ref().err().copied();
            let mut verdict = Verdict::Ignore;
            for part in parts {
                let Ok(message) = part else {
                    verdict = Verdict::Reject;
                    continue;
                };
                // From its sender itself (the connection's key is the sender's registry key):
                // the transport vouches for it, and the engine skips the message signature.
                let input = if self.came_from_sender(&message, direct) {
                    Input::FromSender(message)
                } else {
                    Input::Message(message)
                };
                verdict = verdict.combine(Verdict::of(&self.input(input)).0);
            }
            if let Ok((id, source)) = origin {
                self.net.report(&id, &source, verdict);
            }
        }
    }

    /// The members a broadcast goes to directly, each on its message stream, as the node
    /// binary sends it: the kinds every commit makes ([`streams_carry`]) to all the other
    /// members while every one of them is connected ([`Net::stream_broadcast_peers`]). Empty
    /// otherwise: gossipsub carries it.
    fn broadcast_direct(&self, message: &PeerMessage) -> Vec<PeerId> {
        if !streams_carry(message) {
            return Vec::new();
        }
        self.net.stream_broadcast_peers(self.members.iter().copied())
    }

    /// Whether `message` came on a connection from its sender itself (`direct`: the peer of
    /// a stream or request, none for gossip).
    fn came_from_sender(&self, message: &PeerMessage, direct: Option<PeerId>) -> bool {
        direct.is_some_and(|peer| self.peer_of.get(&message.sender).is_some_and(|p| *p == peer))
    }

    /// Runs the node until its command queue closes: network events, due timers, commands
    /// (engine inputs such as commits) and periodic discovery.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Input>, discovery: Duration) {
        self.input(Input::Start);
        let mut discovery = tokio::time::interval(discovery);
        loop {
            let next = self.timers.keys().next().map(|(at, _)| *at);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await,
                    None => std::future::pending().await,
                }
            };
            let held_until = self.held_until;
            let held_due = async move {
                match held_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = held_due => self.release_held(),
                event = self.net.next() => {
                    // Events already waiting join this one's group.
                    let mut group = vec![event];
                    while group.len() < GROUP_EVENTS_MAX {
                        match self.net.next().now_or_never() {
                            Some(event) => group.push(event),
                            None => break,
                        }
                    }
                    self.on_net_group(group);
                }
                command = commands.recv() => match command {
                    Some(input) => {
                        self.input(input);
                    }
                    None => break,
                },
                () = sleep => {
                    let now = now_ms();
                    while let Some(entry) = self.timers.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        let timer = entry.remove();
                        self.input(Input::Timer(timer));
                    }
                }
                _ = discovery.tick() => self.net.discover(),
            }
        }
        // What waited is handled before the node stops: no receipt it holds is left unjudged.
        self.release_held();
        if self.dropped_reports > 0 {
            tracing::warn!(
                node = self.index,
                dropped = self.dropped_reports,
                "reports dropped: the harness fell behind"
            );
        }
    }
}
