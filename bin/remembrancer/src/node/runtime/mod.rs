//! The running node: the engine driven by the network, timers, the API and the store.
//! One task owns the engine; everything reaches it as an input, and its outputs are carried
//! out in order: the persist records of one input as one synced RocksDB batch first, then
//! messages to gossip or to one peer, timers, anchor requests and operator events.

mod arrivals;
mod calls;
mod commits;
mod status;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures::FutureExt as _;
use remembrancer_core::anchoring::{AnchorTarget as _, LocalTarget};
use remembrancer_core::bundle::ProofBundle;
use remembrancer_core::engine::{
    Engine, EngineConfig, EngineError, Event, Fanout, Input, Output, Persist, Rejection, Timer,
};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::{InclusionProofJson, PrunedNodeStore};
use remembrancer_core::message::{decode_frame, encode_frames, Content, MessageError, PeerMessage};
use remembrancer_core::registry::{PeerStatus, Registry};
use remembrancer_core::signature::Verifier;
use remembrancer_core::HashAlgorithm;
use remembrancer_net::libp2p::gossipsub::MessageId;
use remembrancer_net::libp2p::{Multiaddr, PeerId};
use remembrancer_net::{Net, NetConfig, NetEvent, Verdict};
use remembrancer_store::Store;
use tokio::sync::{mpsc, oneshot};

use super::api::{self, ApiCall};
use super::config::{Admission, NodeConfig};
use super::http::{ApiInfo, Request, Response};

/// API calls waiting for the engine task, at most.
const API_QUEUE_MAX: usize = 256;
/// Records waiting for a commit, at most (appends beyond wait for room).
const APPEND_QUEUE_RECORDS_MAX: usize = 1_000_000;
/// Finality latencies kept for `status`.
const LATENCIES_KEPT: usize = 1024;
/// Longest appends wait for a free anchor slot before they are committed without one
/// (`Node::commit_anchorable`): under load a receipt frees a slot within milliseconds; a node
/// that cannot finalize (cut off from its quorum) still acknowledges appends this much later.
const SLOT_WAIT_MAX: Duration = Duration::from_millis(100);
/// How often the event loop offers `Net::discover` a turn (it paces its lookups itself).
const DISCOVERY_TICK: Duration = Duration::from_millis(250);
/// Interval between repeats of a join proposal until it is applied.
const JOIN_REPEAT: Duration = Duration::from_secs(3);
/// Least time between two re-anchors triggered by reconnecting members.
const REANCHOR_SPACING: Duration = Duration::from_secs(2);
/// Peers counted one by one in the garbage and refusal counters, at most.
const PEERS_COUNTED_MAX: usize = 4096;
/// Peers the block list holds, at most.
const BLOCKED_MAX: usize = 4096;
/// Commits awaiting their receipt whose time is kept, at most.
const COMMIT_TIMES_MAX: usize = 4096;
/// Signature verdicts the engine's verifier remembers (about 1 MiB): a receipt then costs only
/// the signatures not yet checked here or made here.
const VERDICTS_KEPT: usize = 16 * 1024;
/// Inputs handled between two synced writes, at most (group commit).
const GROUP_INPUTS_MAX: usize = 256;
/// How long bookkeeping messages may wait while those on a receipt's path go first. The
/// longer the wait, the larger the batch their signatures are verified in (per signature here:
/// 23 µs in batches of 8, 18 in batches of 16, 14 in batches of 64): at 5 ms,
/// `scripts/bench sustained` (30 s warm-up, alternated) did 763 and 785 receipts/s at 2.06 and
/// 2.00 ms of CPU per receipt (batches of 8.2 on average), at 20 ms 796 and 845 at 1.97 and
/// 1.85 (batches of 10.1, and a third of the unsynced writes). A member's receipts of others'
/// namespaces are final up to this much later; the owner's are not delayed.
const DEFER: Duration = Duration::from_millis(20);
/// Bookkeeping waiting is handled as soon as the node has been this long without a network
/// event or an API call, before `DEFER` is up: at a low rate the node has the time then, and
/// the next commit's messages do not find it busy. With only the 20 ms wait, `scripts/bench
/// finality` (a commit every 20 ms) slowed: a receipt's bookkeeping, arriving about 3 ms after
/// its commit, came due about 3 ms after the next one, while that anchor was in flight. Its p50
/// was 3.47 and 3.73 ms against 2.80 and 3.25 with 5 ms (with this rule 3.39 and 2.66). Under
/// `scripts/bench sustained` it comes first now and then: batches of 9.3 signatures on
/// average, against 10.1 without it.
const QUIET: Duration = Duration::from_millis(2);
/// Bookkeeping messages waiting, at most (then they are handled at once, as one batch).
const DEFERRED_MAX: usize = 256;
/// Largest record accepted.
pub const RECORD_BYTES_MAX: usize = 1 << 20;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Appends waiting for the next commit of a namespace.
struct PendingAppend {
    records: Vec<Vec<u8>>,
    reply: oneshot::Sender<Response>,
}

/// Counters the operator sees in `status`.
#[derive(Default)]
struct Counters {
    /// Gossip messages that failed to decode, per peer.
    garbage: BTreeMap<String, u64>,
    /// Messages from keys outside the registry.
    outsiders: u64,
    /// Refused messages per connection they arrived on (the peer that sent or relayed them;
    /// at most 4096 peers, the rest under "others").
    refused_from: BTreeMap<String, u64>,
    /// Receipts final at this node (its own and other owners').
    finalized: u64,
    /// Receipts of this node's own namespaces that reached quorum here.
    finalized_own: u64,
    /// Gossip publishes that failed (no peer, or every peer's send queue full).
    publish_failed: u64,
    /// Signatures (of messages, and inside anchors and countersigns) verified in a batch with
    /// others that arrived together.
    batch_verified: u64,
    /// Bookkeeping messages (receipts, heartbeats, other owners' countersignatures) handled
    /// after a wait, so that those on a receipt's path went first.
    deferred: u64,
    /// Batches written synced (they released messages or API answers), and unsynced (they
    /// released nothing; the next synced write makes them durable).
    writes_synced: u64,
    writes_unsynced: u64,
    /// Synced writes by what they released ([`release_kind`]).
    writes_synced_by_release: BTreeMap<&'static str, u64>,
    /// Messages broadcast, and the frames that carried them (the messages one synced write
    /// released share frames).
    messages_published: u64,
    frames_published: u64,
    /// Of them, sent on each member's message stream rather than by gossip.
    frames_streamed: u64,
    /// Commit to final of this node's own receipts, milliseconds (microsecond precision).
    latencies: VecDeque<f64>,
    /// How long the last synced writes took, milliseconds: what every anchor and
    /// countersignature waits for before it goes out (a slow disk shows here first).
    synced_write_ms: VecDeque<f64>,
}

/// What a synced write released, for `status`'s `writes_synced_by_release`: the first of an
/// anchor, a countersignature, a receipt or another message it held back, or `acknowledgements`
/// when it released only answers to appends.
fn release_kind(held: &[Output]) -> &'static str {
    let kind = |output: &Output| match output {
        Output::Publish(message) | Output::Send { message, .. } => match message.content {
            Content::Anchor(_) => 0,
            Content::Countersign(_) => 1,
            Content::Receipt(_) => 2,
            _ => 3,
        },
        _ => 3,
    };
    match held.iter().map(kind).min() {
        Some(0) => "anchor",
        Some(1) => "countersign",
        Some(2) => "receipt",
        Some(_) => "other",
        None => "acknowledgements",
    }
}

/// Adds `value` to `kept`, the last `LATENCIES_KEPT` of a measure, dropping the oldest.
fn keep_last(kept: &mut VecDeque<f64>, value: f64) {
    kept.push_back(value);
    if kept.len() > LATENCIES_KEPT {
        kept.pop_front();
    }
}

/// One message as the node handles it (one of a frame's, decoded), or another network event.
enum Arrival {
    /// A message that came by gossip: its frame's id and the peer that relayed the frame.
    Gossip { id: MessageId, source: PeerId, message: Result<PeerMessage, MessageError> },
    /// A member's message on a connection from that member itself (a stream or request).
    Direct { peer: PeerId, message: Result<PeerMessage, MessageError> },
    /// Any other event: bytes from a peer outside the registry, connections, listen addresses.
    Other(NetEvent),
}

/// The node task's state.
struct Node {
    identity: NodeIdentity,
    engine: Engine<PrunedNodeStore>,
    store: Arc<Store>,
    net: Net,
    target: LocalTarget,
    /// DID <-> PeerId of registry members, rebuilt when the registry changes.
    peer_of: HashMap<String, PeerId>,
    did_of: HashMap<PeerId, String>,
    timers: BTreeMap<(u64, u64), Timer>,
    timer_seq: u64,
    appends: BTreeMap<String, Vec<PendingAppend>>,
    /// Namespaces whose appends wait for a free anchor slot (`commit_anchorable`), and since
    /// when.
    held_for_window: BTreeMap<String, std::time::Instant>,
    queued_records: usize,
    counters: Counters,
    /// Peers blocked through the API (at most `BLOCKED_MAX`).
    blocked: std::collections::BTreeSet<PeerId>,
    /// When unfinal anchors were last sent again.
    last_reanchor: Option<std::time::Instant>,
    /// A join this node asked for and is not yet through: namespaces and endpoint.
    joining: Option<(Vec<String>, Option<String>)>,
    /// When each own commit not yet final was made, for precise finality latencies.
    commit_times: BTreeMap<(String, u64), std::time::Instant>,
    /// Members whose anchors arrived since the last flush, in order: a broadcast on streams
    /// reaches them first, since the countersignatures it carries decide their receipts and
    /// are bookkeeping to everyone else (at most one entry per member).
    answer_first: Vec<PeerId>,
    /// Group commit: what the inputs handled since the last flush want written (one synced
    /// batch at the flush), and the messages and API answers that wait for that write.
    unsynced: Vec<Persist>,
    held: Vec<Output>,
    /// The engine's outputs for the input at hand, one buffer kept between inputs.
    outputs: Vec<Output>,
    replies: Vec<(oneshot::Sender<Response>, Response)>,
    /// The engine's verdicts on gossip messages, given to gossipsub after the group's write
    /// (see the event loop).
    verdicts: Vec<(MessageId, PeerId, Verdict)>,
    /// Gossip frames of several messages with some not yet handled: how many, and the verdict
    /// so far. A frame's verdict goes to gossipsub once all its messages are handled (now or
    /// after the wait for bookkeeping), so at most the frames of a group and of the bookkeeping
    /// waiting are here. A frame of one message is judged at once.
    frames: HashMap<MessageId, (usize, Verdict)>,
    /// Bookkeeping gossip held back ([`Engine::is_on_receipt_path`]), and when the first of it
    /// arrived: handled together `DEFER` later, `QUIET` after the last network event or API
    /// call if that comes first, or at `DEFERRED_MAX`.
    deferred: Vec<Arrival>,
    deferred_since: Option<tokio::time::Instant>,
    /// When a network event or an API call last arrived (bookkeeping waits for `QUIET` after it).
    last_busy: tokio::time::Instant,
    /// `NetConfig::discovery_peers`: bookkeeping is held back only while every member connects
    /// to every other ([`all_members_connect`]), so that our forwarding of it, which waits for
    /// our verdict, only repairs. In a larger federation members reach each other through
    /// relays, and each relay's wait would add up.
    discovery_peers: usize,
    config: NodeConfig,
}

/// Whether every member of `registry` connects to every other: a federation of at most
/// `discovery_peers` members, all of whom discovery dials. A publish then reaches every member
/// directly, and gossip's forwarding only repairs.
fn all_members_connect(registry: &Registry, discovery_peers: usize) -> bool {
    registry.members.len() <= discovery_peers
}

fn member_peers(registry: &Registry) -> (HashMap<String, PeerId>, HashMap<PeerId, String>) {
    let mut peer_of = HashMap::new();
    let mut did_of = HashMap::new();
    for member in registry.members.values() {
        if let Some(peer) = remembrancer_net::peer_id_of(member.key.as_bytes()) {
            peer_of.insert(member.did.clone(), peer);
            did_of.insert(peer, member.did.clone());
        }
    }
    (peer_of, did_of)
}

/// Runs a node until Ctrl-C or SIGTERM.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let key_text = crate::files::read_bounded(&config.node.key_file, 64 * 1024)?;
    let identity = NodeIdentity::from_key_file(&String::from_utf8_lossy(&key_text))
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.node.key_file.display()))?;
    let registry_text = crate::files::read_bounded(&config.node.registry, 4 << 20)?;
    let registry = Registry::from_yaml(&String::from_utf8_lossy(&registry_text))
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.node.registry.display()))?;
    std::fs::create_dir_all(&config.node.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.node.data_dir.display()))?;
    let store = Arc::new(Store::open(&config.node.data_dir.join("db"), &registry.name)?);
    let engine_config = EngineConfig {
        heartbeat_interval_ms: config.engine.heartbeat_interval_ms,
        anchors_in_flight_max: config.engine.anchors_in_flight,
        // Gossipsub spreads every message to all members efficiently: publish, do not pick.
        fanout: Fanout::All,
        // Operator proposals are signed by `federation approve` only; joins by the policy.
        approve_joins: config.node.admission == Admission::Open,
        ..EngineConfig::default()
    };
    let listed: Vec<String> =
        registry.member(identity.did()).map(|m| m.namespaces.clone()).unwrap_or_default();
    // Trees keep their upper levels and recent records' hashes in memory and read older
    // records back from RocksDB for proofs: memory stays flat however much is stored.
    let records = Arc::clone(&store);
    let mut engine =
        Engine::with_store_factory(identity.clone(), registry, engine_config, move |namespace, algorithm| {
            PrunedNodeStore::new(algorithm, records.leaf_source(namespace, algorithm))
        })
        .with_verifier(Verifier::new(VERDICTS_KEPT));
    let known: Vec<String> = store.owned()?.into_iter().map(|(ns, _)| ns).collect();
    for namespace in &listed {
        if !known.contains(namespace) {
            store.add_owned(namespace, HashAlgorithm::Sha256)?;
        }
    }
    let restored = store.restore(&mut engine)?;
    for (namespace, size, signed) in &restored.namespaces {
        tracing::info!(%namespace, size, signed, "restored: the root matches the last signed checkpoint");
    }
    let mut net_config = NetConfig::new(identity.secret_seed(), &engine.registry().name);
    net_config.listen = config.network.listen.iter().filter_map(|a| a.parse().ok()).collect();
    net_config.bootstrap = config.network.bootstrap.iter().filter_map(|a| a.parse().ok()).collect();
    net_config.mdns = config.network.mdns;
    net_config.max_connections = config.network.max_connections;
    // Each mesh peer more is one more forward (mostly a duplicate) of every message.
    if all_members_connect(engine.registry(), net_config.discovery_peers) {
        net_config.mesh_n = 2;
    }
    let net = Net::start(&net_config)?;
    let (peer_of, did_of) = member_peers(engine.registry());

    let api = tokio::net::TcpListener::bind(&config.node.api)
        .await
        .with_context(|| format!("cannot listen on {} for the API (is the port in use?)", config.node.api))?;
    let token = write_token(&config.node.data_dir)?;
    let info = ApiInfo {
        address: api.local_addr()?,
        did: identity.did().to_string(),
        peer_id: net.peer_id().to_string(),
        pid: std::process::id(),
    };
    crate::files::write_public(&config.node.data_dir.join("api.json"), &serde_json::to_vec_pretty(&info)?)?;
    tracing::info!(did = identity.did(), peer_id = %net.peer_id(), api = %info.address, "node started");

    let (api_tx, mut api_rx) = mpsc::channel::<ApiCall>(API_QUEUE_MAX);
    tokio::spawn(api::serve(api, token, api_tx));

    let mut node = Node {
        identity,
        engine,
        store,
        net,
        target: LocalTarget::default(),
        peer_of,
        did_of,
        timers: BTreeMap::new(),
        timer_seq: 0,
        appends: BTreeMap::new(),
        held_for_window: BTreeMap::new(),
        queued_records: 0,
        counters: Counters::default(),
        blocked: Default::default(),
        last_reanchor: None,
        joining: None,
        commit_times: BTreeMap::new(),
        answer_first: Vec::new(),
        unsynced: Vec::new(),
        held: Vec::new(),
        outputs: Vec::new(),
        replies: Vec::new(),
        verdicts: Vec::new(),
        frames: HashMap::new(),
        deferred: Vec::new(),
        deferred_since: None,
        last_busy: tokio::time::Instant::now(),
        discovery_peers: net_config.discovery_peers,
        config,
    };
    node.input(Input::Start)?;
    // Every restored namespace whose last commit is not final yet is anchored again.
    let owned: Vec<String> =
        node.engine.owned_namespaces().map(|(namespace, _, _)| namespace.to_string()).collect();
    for namespace in owned {
        node.input(Input::AnchorNow { namespace })?;
    }
    node.flush()?;

    // `Net::discover` paces its lookups itself (fast while connecting, then every 10 s or
    // `discovery_interval`); a call that is not due costs nothing.
    let mut discovery = tokio::time::interval(DISCOVERY_TICK);
    let mut commit_tick =
        tokio::time::interval(Duration::from_millis(node.config.engine.batch_interval_ms.max(1)));
    let mut scores_tick = tokio::time::interval(Duration::from_secs(30));
    let mut join_tick = tokio::time::interval(JOIN_REPEAT);
    let mut terminate = signal_terminate()?;
    let mut interrupt = signal_interrupt()?;
    let mut carried: Vec<NetEvent> = Vec::new();
    loop {
        let next_timer = node.timers.keys().next().map(|(at, _)| *at);
        let sleep = async {
            match next_timer {
                Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await,
                None => std::future::pending().await,
            }
        };
        // Bookkeeping waits `DEFER` at most, and less once the node is quiet.
        let deferred_at =
            node.deferred_since.map(|since| (since + DEFER).min(node.last_busy.max(since) + QUIET));
        let deferred_due = async {
            match deferred_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut group = std::mem::take(&mut carried);
        let waiting = !group.is_empty();
        tokio::select! {
            () = std::future::ready(()), if waiting => {}
            () = deferred_due => node.handle_deferred()?,
            event = node.net.next() => group.push(event),
            Some(call) = api_rx.recv() => {
                node.last_busy = tokio::time::Instant::now();
                node.on_api(call)?
            }
            () = sleep => node.fire_timers()?,
            _ = discovery.tick() => node.net.discover(),
            _ = commit_tick.tick() => node.commit_anchorable(false)?,
            _ = join_tick.tick() => node.repeat_join()?,
            _ = scores_tick.tick() => {
                node.store.save_scores(node.engine.scores())?;
                node.reanchor_unfinal()?;
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
        // Group commit: network events already waiting join this batch (at most
        // `GROUP_INPUTS_MAX`), then one synced write, then what waited for it goes out.
        while group.len() < GROUP_INPUTS_MAX {
            match node.net.next().now_or_never() {
                Some(event) => group.push(event),
                None => break,
            }
        }
        if !group.is_empty() {
            node.last_busy = tokio::time::Instant::now();
        }
        node.on_net_group(group)?;
        node.commit_anchorable(true)?;
        node.flush()?;
        // Gossipsub forwards a message once it has our verdict. Before giving the verdicts,
        // it reads what arrived during the group and its write (the events it yields wait
        // for the next group), peers' IDONTWANTs among it: it then does not forward a
        // message to the members that said they have it already.
        while carried.len() < GROUP_INPUTS_MAX {
            match node.net.next().now_or_never() {
                Some(event) => carried.push(event),
                None => break,
            }
        }
        node.give_verdicts();
    }
    node.handle_deferred()?;
    node.commit_waiting()?;
    node.flush()?;
    node.store.save_scores(node.engine.scores())?;
    let _ = std::fs::remove_file(node.config.node.data_dir.join("api.json"));
    tracing::info!("node stopped");
    Ok(())
}

#[cfg(unix)]
fn signal_terminate() -> anyhow::Result<tokio::signal::unix::Signal> {
    Ok(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?)
}

/// Ctrl-C, listened to once for the whole run (a `ctrl_c()` future made anew on each turn of
/// the event loop registers with the signal driver each time).
#[cfg(unix)]
fn signal_interrupt() -> anyhow::Result<tokio::signal::unix::Signal> {
    Ok(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?)
}

fn write_token(data_dir: &Path) -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom_bytes(&mut bytes)?;
    let token = hex::encode(bytes);
    crate::files::write_private(&data_dir.join("api.token"), token.as_bytes(), true)?;
    Ok(token)
}

pub(crate) fn getrandom_bytes(out: &mut [u8]) -> anyhow::Result<()> {
    use rand_core::RngCore as _;
    rand_core::OsRng.try_fill_bytes(out).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))
}

impl Node {
    /// Feeds one input to the engine. Its records join the next synced write; timers, anchor
    /// requests and events are handled now; messages wait for the write (`flush`). An input
    /// the engine refuses is logged.
    fn input(&mut self, input: Input) -> anyhow::Result<Vec<Event>> {
        Ok(self.input_or_refusal(input)?.unwrap_or_default())
    }

    /// [`Node::input`], giving back the engine's refusal of `input` itself (a commit or an
    /// anchor of a halted namespace, say), for an answer to the client that asked.
    fn input_or_refusal(&mut self, input: Input) -> anyhow::Result<Result<Vec<Event>, EngineError>> {
        // Inputs that outputs of this one call for (an anchor's reference), in order.
        let mut queue = VecDeque::new();
        let mut events = Vec::new();
        let mut outputs = std::mem::take(&mut self.outputs);
        let mut next = Some(input);
        let mut first = true;
        let mut refusal = None;
        while let Some(input) = next.take().or_else(|| queue.pop_front()) {
            outputs.clear();
            if let Err(error) = self.engine.handle_into(input, now_ms(), &mut outputs) {
                tracing::error!(%error, "engine refused an input");
                if std::mem::take(&mut first) {
                    refusal = Some(error);
                }
                continue;
            }
            first = false;
            // What it persists joins the next write before anything it releases.
            for output in outputs.drain(..) {
                match output {
                    Output::Persist(persist) => self.unsynced.push(persist),
                    Output::Publish(_) | Output::Send { .. } => self.held.push(output),
                    Output::SetTimer { timer, at_ms } => {
                        self.timer_seq += 1;
                        self.timers.insert((at_ms, self.timer_seq), timer);
                    }
                    Output::AnchorRequest { request, root } => match self.target.anchor(&root, now_ms()) {
                        Ok(reference) => queue.push_back(Input::Anchored { request, reference }),
                        Err(error) => tracing::warn!(%error, "anchor target refused"),
                    },
                    Output::Event(event) => {
                        self.on_event(&event);
                        events.push(event);
                    }
                }
            }
        }
        outputs.clear();
        self.outputs = outputs;
        Ok(refusal.map_or(Ok(events), Err))
    }

    /// Writes what the inputs since the last flush persisted, as one batch, and only then
    /// sends their messages and API answers: nothing is announced or acknowledged before it
    /// is on disk. The batch is synced when something waits for it; a batch that releases
    /// nothing (others' countersignatures and receipts, say) is written unsynced: it survives
    /// the process at once and the machine with the next synced write, which syncs every
    /// write before it. So a member's synced writes are the ones it promises something with.
    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.unsynced.is_empty() {
            // Taken and given back empty: its room serves the next write.
            let mut unsynced = std::mem::take(&mut self.unsynced);
            let promised = !self.held.is_empty() || !self.replies.is_empty();
            let started = std::time::Instant::now();
            self.store.persist_with(&unsynced, promised)?;
            for persist in &unsynced {
                if let Persist::Records { namespace, first_index, records } = persist {
                    self.engine.records_readable(namespace, first_index + records.len() as u64);
                }
            }
            if promised {
                self.counters.writes_synced += 1;
                *self.counters.writes_synced_by_release.entry(release_kind(&self.held)).or_default() += 1;
                // Milliseconds to the microsecond, as finality latencies.
                keep_last(
                    &mut self.counters.synced_write_ms,
                    (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
                );
            } else {
                self.counters.writes_unsynced += 1;
            }
            tracing::trace!(
                records = unsynced.len(),
                micros = started.elapsed().as_micros() as u64,
                out = self.held.len(),
                synced = promised,
                "written"
            );
            unsynced.clear();
            self.unsynced = unsynced;
        }
        // Broadcasts of the kinds every commit makes go on each member's message stream when
        // every member is connected (`broadcast_direct`); the rest, and all of them otherwise,
        // by gossip.
        let publishes = self.held.iter().any(|output| matches!(output, Output::Publish(_)));
        let mut direct = if publishes { self.broadcast_direct() } else { Vec::new() };
        for owner in std::mem::take(&mut self.answer_first).into_iter().rev() {
            if let Some(at) = direct.iter().position(|peer| *peer == owner) {
                direct[..=at].rotate_right(1);
            }
        }
        let (mut streamed, mut gossiped) = (Vec::new(), Vec::new());
        let mut held = std::mem::take(&mut self.held);
        for output in held.drain(..) {
            match output {
                Output::Publish(message)
                    if !direct.is_empty() && remembrancer_net::streams_carry(&message) =>
                {
                    streamed.push(message.encode())
                }
                Output::Publish(mut message) => {
                    // Gossip may be relayed: the message must prove its sender itself.
                    self.engine.seal(&mut message);
                    gossiped.push(message.encode())
                }
                Output::Send { to, message } => match self.peer_of.get(&to) {
                    Some(peer) => self.net.send_message(*peer, &message),
                    None => tracing::debug!(%to, "no PeerId for a message's recipient"),
                },
                _ => {}
            }
        }
        self.held = held;
        // What one write released goes out in as few frames as fit.
        self.counters.messages_published += (streamed.len() + gossiped.len()) as u64;
        for frame in encode_frames(streamed) {
            self.counters.frames_published += 1;
            self.counters.frames_streamed += 1;
            self.net.send_each(direct.iter().copied(), frame);
        }
        for frame in encode_frames(gossiped) {
            self.counters.frames_published += 1;
            if let Err(error) = self.net.publish(frame) {
                // Counted always, logged at the 1st, 2nd, 4th, 8th, ... failure: an
                // overloaded mesh fails every publish and the log would drown.
                self.counters.publish_failed += 1;
                if self.counters.publish_failed.is_power_of_two() {
                    tracing::warn!(%error, failures = self.counters.publish_failed, "gossip publish failed; anchors are retried, receipts reach laggards through catch-up");
                }
            }
        }
        for (reply, response) in std::mem::take(&mut self.replies) {
            let _ = reply.send(response);
        }
        Ok(())
    }

    fn on_event(&mut self, event: &Event) {
        match event {
            Event::Finalized { namespace, size, latency_ms } => {
                self.counters.finalized += 1;
                if let Some(latency) = latency_ms {
                    self.counters.finalized_own += 1;
                    // The engine counts whole milliseconds; the commit's own clock is finer. A
                    // receipt covers every commit up to its size (flow control joins commits
                    // into one anchor): its latency is the oldest one's.
                    let committed = self
                        .commit_times
                        .range((namespace.clone(), 0)..=(namespace.clone(), *size))
                        .next()
                        .map(|(_, at)| *at);
                    self.commit_times.retain(|(ns, s), _| ns != namespace || s > size);
                    let precise = committed
                        .map_or(*latency as f64, |at| (at.elapsed().as_secs_f64() * 1e6).round() / 1e3);
                    keep_last(&mut self.counters.latencies, precise);
                }
                tracing::info!(%namespace, size, latency_ms, "final receipt");
            }
            Event::Rejected { sender, reason } => tracing::info!(%sender, ?reason, "message refused"),
            Event::RegistryChanged { version } => {
                let (peer_of, did_of) = member_peers(self.engine.registry());
                self.peer_of = peer_of;
                self.did_of = did_of;
                let member = self.engine.registry().member(self.identity.did()).cloned();
                if let Some(member) = &member {
                    // Namespaces this node now owns are declared in the store before any record.
                    let known: Vec<String> = self
                        .store
                        .owned()
                        .map(|o| o.into_iter().map(|(ns, _)| ns).collect())
                        .unwrap_or_default();
                    for namespace in member.namespaces.iter().filter(|ns| !known.contains(ns)) {
                        if let Err(error) = self.store.add_owned(namespace, HashAlgorithm::Sha256) {
                            tracing::error!(%namespace, %error, "cannot declare an owned namespace");
                        }
                    }
                    if self.joining.take().is_some() {
                        tracing::info!(version, "joined: this node is a member now");
                    }
                }
                tracing::info!(version, member = member.is_some(), "registry changed");
            }
            Event::Halted(refusal) => {
                tracing::error!(namespace = refusal.namespace(), %refusal, "stopped signing and committing")
            }
            Event::Equivocation { signer, namespace, size } => {
                tracing::warn!(%signer, %namespace, size, "equivocation: evidence kept and broadcast")
            }
            Event::ProposalRefused { peer, reason } => {
                tracing::warn!(%peer, %reason, "registry proposal refused")
            }
            Event::Anchored { anchorer, .. } => tracing::info!(%anchorer, "anchored"),
            // Answered to the client that appended (`commit_waiting`).
            Event::Committed { .. } => {}
        }
    }
}
