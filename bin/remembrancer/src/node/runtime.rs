//! The running node: the engine driven by the network, timers, the API and the store.
//! One task owns the engine; everything reaches it as an input, and its outputs are carried
//! out in order: the persist records of one input as one synced RocksDB batch first, then
//! messages to gossip or to one peer, timers, anchor requests and operator events.

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
/// Strict signature verdicts the engine's thread remembers (about 1 MiB): a receipt then costs
/// only the signatures not yet checked here or made here (`signature::install_verification_cache`).
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
    // The node's event loop, hence its engine, runs on this thread (`block_on`).
    remembrancer_core::signature::install_verification_cache(VERDICTS_KEPT);
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
        });
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

    /// Gives gossipsub the verdicts of the messages handled since the last call: accepted
    /// ones are forwarded, refused ones cost the peer that sent them.
    fn give_verdicts(&mut self) {
        for (id, source, verdict) in std::mem::take(&mut self.verdicts) {
            self.net.report(&id, &source, verdict);
        }
    }

    /// Handles network events that arrived together. Their messages are decoded first (a
    /// gossip frame may carry several). In a small federation, gossip that is bookkeeping
    /// ([`Engine::is_on_receipt_path`]) waits (`DEFER`, at most `DEFERRED_MAX` messages) and
    /// the rest is handled now, in order: the anchors and countersignatures that decide a
    /// receipt then do not wait behind bookkeeping (on a machine several members share, the
    /// others' bookkeeping does not take the cores from them either), and what waited is
    /// verified in larger batches.
    fn on_net_group(&mut self, group: Vec<NetEvent>) -> anyhow::Result<()> {
        let defer = all_members_connect(self.engine.registry(), self.discovery_peers);
        let mut now = Vec::with_capacity(group.len());
        for event in group {
            match event {
                NetEvent::Gossip { source, id, data } => {
                    let parts = decode_frame(&data);
                    if parts.len() > 1 {
                        self.frames.insert(id.clone(), (parts.len(), Verdict::Ignore));
                    }
                    for message in parts {
                        let arrival = Arrival::Gossip { id: id.clone(), source, message };
                        self.hold_or_take(arrival, defer, &mut now)?;
                    }
                }
                NetEvent::Direct { peer, data } if self.did_of.contains_key(&peer) => {
                    for message in decode_frame(&data) {
                        self.hold_or_take(Arrival::Direct { peer, message }, defer, &mut now)?;
                    }
                }
                event => now.push(Arrival::Other(event)),
            }
        }
        self.on_arrivals(now)
    }

    /// The members a broadcast of the kinds every commit makes goes to directly, each on its
    /// message stream ([`remembrancer_net::streams_carry`], [`Net::stream_broadcast_peers`]):
    /// all the others while every other member is connected, whatever the federation's size.
    ///
    /// A stream costs less than gossipsub per message (no per-message send timer, no relayed
    /// duplicates or IDONTWANTs), and the receiver skips the message signature the connection
    /// vouches for: `scripts/bench sustained` 396-475 -> 732-765 receipts/s. Nothing is lost
    /// to the shortcut: members relay only anchors, which reach every member directly here.
    fn broadcast_direct(&self) -> Vec<PeerId> {
        self.net.stream_broadcast_peers(self.did_of.keys().copied())
    }

    /// Holds a bookkeeping message back (`defer`: every member connects to every other) until
    /// the messages that decide receipts are handled; anything else joins `now`.
    fn hold_or_take(&mut self, arrival: Arrival, defer: bool, now: &mut Vec<Arrival>) -> anyhow::Result<()> {
        let message = match &arrival {
            Arrival::Gossip { message, .. } | Arrival::Direct { message, .. } => Some(message),
            Arrival::Other(_) => None,
        };
        let held =
            defer && message.is_some_and(|m| m.as_ref().is_ok_and(|m| !self.engine.is_on_receipt_path(m)));
        if !held {
            now.push(arrival);
            return Ok(());
        }
        self.deferred_since.get_or_insert_with(tokio::time::Instant::now);
        self.deferred.push(arrival);
        if self.deferred.len() >= DEFERRED_MAX {
            self.handle_deferred()?;
        }
        Ok(())
    }

    /// Handles the bookkeeping held back, as one group.
    fn handle_deferred(&mut self) -> anyhow::Result<()> {
        self.deferred_since = None;
        let deferred = std::mem::take(&mut self.deferred);
        self.counters.deferred += deferred.len() as u64;
        self.on_arrivals(deferred)
    }

    /// Handles arrivals in order; the signatures their handling would check one by one
    /// (members' message signatures where the connection does not vouch for the sender, and
    /// those inside anchors and countersigns) are verified first, in one batch
    /// ([`Engine::preverify`]).
    fn on_arrivals(&mut self, group: Vec<Arrival>) -> anyhow::Result<()> {
        let messages: Vec<(&PeerMessage, bool)> = group
            .iter()
            .filter_map(|arrival| match arrival {
                Arrival::Direct { peer, message: Ok(message) } => {
                    Some((message, self.sent_by_sender(peer, message)))
                }
                Arrival::Gossip { message: Ok(message), .. } => Some((message, false)),
                _ => None,
            })
            .collect();
        let proven = self.engine.preverify(messages);
        self.counters.batch_verified += proven as u64;
        for arrival in group {
            self.on_arrival(arrival)?;
        }
        Ok(())
    }

    fn on_arrival(&mut self, arrival: Arrival) -> anyhow::Result<()> {
        match arrival {
            Arrival::Gossip { id, source, message } => {
                let verdict = self.on_message(&source, message, false)?;
                self.frame_verdict(id, source, verdict);
            }
            Arrival::Direct { peer, message } => self.on_message(&peer, message, true).map(drop)?,
            Arrival::Other(NetEvent::Direct { peer, .. }) => {
                // Only members speak to a node directly; anyone else may relay gossip.
                self.counters.outsiders += 1;
                self.count_refused(&peer);
                tracing::info!(%peer, "direct message from a peer outside the registry dropped");
            }
            Arrival::Other(NetEvent::Connected(peer)) => {
                let member = self.did_of.get(&peer).cloned();
                tracing::info!(%peer, member = member.as_deref(), "connected");
                // A member (re)connecting may end a partition: anchors it missed go out again
                // (the retries of an anchor stop after about a minute).
                if member.is_some() && self.last_reanchor.is_none_or(|at| at.elapsed() >= REANCHOR_SPACING) {
                    self.reanchor_unfinal()?;
                }
            }
            Arrival::Other(NetEvent::Disconnected(peer)) => tracing::info!(%peer, "disconnected"),
            Arrival::Other(NetEvent::Listening(address)) => tracing::info!(%address, "listening"),
            // Gossip always becomes `Arrival::Gossip`.
            Arrival::Other(NetEvent::Gossip { .. }) => {}
        }
        Ok(())
    }

    /// Counts one message's verdict towards its frame's; once every message of the frame is
    /// handled (at once for a frame of one), the frame's verdict waits for gossipsub
    /// (`give_verdicts`).
    fn frame_verdict(&mut self, id: MessageId, source: PeerId, verdict: Verdict) {
        let done = match self.frames.get_mut(&id) {
            Some((pending, combined)) => {
                *combined = combined.combine(verdict);
                *pending = pending.saturating_sub(1);
                (*pending == 0).then_some(*combined)
            }
            None => Some(verdict),
        };
        if let Some(verdict) = done {
            self.frames.remove(&id);
            self.verdicts.push((id, source, verdict));
        }
    }

    /// Hands a decoded message to the engine (an undecodable one is counted as garbage); the
    /// verdict steers gossipsub's scoring and is counted against the connection it came from.
    /// `direct`: it came on a connection from `from` itself (a stream or request), not gossip.
    fn on_message(
        &mut self,
        from: &PeerId,
        message: Result<PeerMessage, MessageError>,
        direct: bool,
    ) -> anyhow::Result<Verdict> {
        let verdict = match message {
            Ok(message) => self.judge(from, message, direct)?,
            Err(error) => {
                // Counted per peer, for at most 4096 peers (the rest in one line).
                let key = if self.counters.garbage.len() < PEERS_COUNTED_MAX {
                    from.to_string()
                } else {
                    "others".to_string()
                };
                *self.counters.garbage.entry(key).or_default() += 1;
                tracing::info!(peer = %from, %error, "undecodable message");
                Verdict::Reject
            }
        };
        if verdict == Verdict::Reject {
            self.count_refused(from);
        }
        Ok(verdict)
    }

    fn count_refused(&mut self, from: &PeerId) {
        let refused = &mut self.counters.refused_from;
        let key = from.to_string();
        let key = if refused.len() < PEERS_COUNTED_MAX || refused.contains_key(&key) {
            key
        } else {
            "others".to_string()
        };
        *refused.entry(key).or_default() += 1;
    }

    /// A message on a connection from `peer` itself whose key is the registry key of the
    /// message's sender: noise proved the connection's key, and a member's PeerId is its
    /// registry key, so the transport vouches for these bytes (the engine skips the message
    /// signature; relayed gossip is always checked).
    fn sent_by_sender(&self, peer: &PeerId, message: &PeerMessage) -> bool {
        self.did_of.get(peer).is_some_and(|did| *did == message.sender)
    }

    /// The engine's verdict on a decoded message.
    fn judge(&mut self, from: &PeerId, message: PeerMessage, direct: bool) -> anyhow::Result<Verdict> {
        let (kind, started) = (message.message_type(), std::time::Instant::now());
        let from_sender = direct && self.sent_by_sender(from, &message);
        if let (Content::Anchor(_), Some(owner)) = (&message.content, self.peer_of.get(&message.sender)) {
            if !self.answer_first.contains(owner) {
                self.answer_first.push(*owner);
            }
        }
        let input = if from_sender { Input::FromSender(message) } else { Input::Message(message) };
        let events = self.input(input)?;
        tracing::trace!(?kind, peer = %from, micros = started.elapsed().as_micros() as u64, "message handled");
        let (verdict, refusal) = Verdict::of(&events);
        if refusal == Some(Rejection::UnknownSender) {
            self.counters.outsiders += 1;
        }
        Ok(verdict)
    }

    fn fire_timers(&mut self) -> anyhow::Result<()> {
        let now = now_ms();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.input(Input::Timer(timer))?;
        }
        Ok(())
    }

    /// The batch interval's commit (`freed` false), and the commit of what waited for an
    /// anchor slot as soon as a group frees one (`freed` true). Appends to a namespace whose
    /// anchor window is full wait until a receipt frees a slot (their commit then joins the
    /// write of the group that freed it, with its anchor), `batch_records` wait, or
    /// `SLOT_WAIT_MAX` passes (a node cut off from its quorum still acknowledges appends),
    /// instead of a synced write of records whose checkpoint cannot be anchored yet.
    fn commit_anchorable(&mut self, freed: bool) -> anyhow::Result<()> {
        if freed && self.held_for_window.is_empty() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let mut held = BTreeMap::new();
        for namespace in self.appends.keys().cloned().collect::<Vec<_>>() {
            let since = self.held_for_window.get(&namespace);
            let full = self.engine.anchor_window_full(&namespace);
            let hold = if freed {
                since.is_none() || full
            } else {
                full && since.is_none_or(|since| now.duration_since(*since) < SLOT_WAIT_MAX)
            };
            if hold {
                if let Some(appends) = self.appends.remove(&namespace) {
                    held.insert(namespace, appends);
                }
            }
        }
        self.held_for_window = held
            .keys()
            .filter(|namespace| self.engine.anchor_window_full(namespace))
            .map(|namespace| (namespace.clone(), self.held_for_window.get(namespace).copied().unwrap_or(now)))
            .collect();
        let result = self.commit_waiting();
        self.queued_records =
            held.values().flatten().map(|append: &PendingAppend| append.records.len()).sum();
        self.appends.extend(held);
        result
    }

    /// Commits the appends waiting per namespace: one engine commit (one synced batch) per
    /// namespace, then every waiting caller hears where its records landed.
    fn commit_waiting(&mut self) -> anyhow::Result<()> {
        let waiting = std::mem::take(&mut self.appends);
        self.queued_records = 0;
        for (namespace, appends) in waiting {
            let mut replies = Vec::with_capacity(appends.len());
            let mut records = Vec::new();
            for append in appends {
                replies.push((append.records.len() as u64, append.reply));
                records.extend(append.records);
            }
            let count = records.len() as u64;
            let started = std::time::Instant::now();
            let result = self.input_or_refusal(Input::Commit { namespace: namespace.clone(), records });
            tracing::trace!(%namespace, records = count, micros = started.elapsed().as_micros() as u64, "committed");
            // The engine answers a commit: `Committed` with where its records went, or why not.
            let answer = match &result {
                Ok(Ok(events)) => events
                    .iter()
                    .find_map(|event| match event {
                        Event::Committed { namespace: ns, first_index, size, .. } if *ns == namespace => {
                            Some(Ok((*first_index, *size)))
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| {
                        Err((503, format!("{namespace}: the commit was not answered; see the node's log")))
                    }),
                Ok(Err(EngineError::Refused(refusal))) => Err((409, format!("not stored: {refusal}"))),
                Ok(Err(EngineError::Commit(refusal))) => Err((409, format!("not stored: {refusal}"))),
                Ok(Err(EngineError::Tree(error))) => {
                    Err((503, format!("{namespace}: the commit failed ({error}); see the node's log")))
                }
                Err(error) => {
                    Err((503, format!("{namespace}: the commit failed ({error}); see the node's log")))
                }
            };
            if let Ok((_, size)) = answer {
                self.commit_times.insert((namespace.clone(), size), started);
                while self.commit_times.len() > COMMIT_TIMES_MAX {
                    self.commit_times.pop_first();
                }
            }
            let mut first = answer.as_ref().map_or(0, |(first, _)| *first);
            for (n, reply) in replies {
                let response = match &answer {
                    Ok((_, size)) => Response::ok(serde_json::json!({
                        "namespace": namespace, "first_index": first, "count": n, "size": size,
                    })),
                    Err((status, message)) => Response::error(*status, message.clone()),
                };
                first += n;
                self.replies.push((reply, response));
            }
            // A refusal was answered above; the host's own failures stop the node.
            let _ = result?;
        }
        Ok(())
    }

    fn on_api(&mut self, call: ApiCall) -> anyhow::Result<()> {
        let ApiCall { request, reply } = call;
        let response = match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/v1/status") => Response::ok(self.status()),
            ("GET", "/v1/ready") => self.ready(),
            ("POST", "/v1/records") => match self.append(&request) {
                Ok(records) => {
                    let namespace = records.0;
                    self.queued_records += records.1.len();
                    let full = self.queued_records >= self.config.engine.batch_records;
                    self.appends
                        .entry(namespace)
                        .or_default()
                        .push(PendingAppend { records: records.1, reply });
                    if full {
                        self.commit_waiting()?;
                    }
                    return Ok(());
                }
                Err(response) => response,
            },
            ("POST", "/v1/anchor") => self.anchor_now(&request)?,
            ("GET", "/v1/receipts") => self.receipts(&request),
            ("GET", "/v1/receipt") => self.receipt(&request),
            ("GET", "/v1/checkpoint") => self.checkpoint(&request),
            ("GET", "/v1/proof") => self.proof(&request),
            ("POST", "/v1/join") => self.join(&request)?,
            ("POST", "/v1/approve") => self.approve(&request)?,
            ("POST", "/v1/block") => self.block(&request, true),
            ("POST", "/v1/unblock") => self.block(&request, false),
            ("GET", "/v1/audit") => match self.store.audit() {
                Ok(entries) => Response::ok(serde_json::to_value(entries).unwrap_or_default()),
                Err(error) => Response::error(500, error.to_string()),
            },
            (method, path) => Response::error(404, format!("no API at {method} {path}")),
        };
        self.replies.push((reply, response));
        Ok(())
    }

    /// `federation join`: proposes this node's admission (again every `JOIN_REPEAT` until it
    /// is a member: the first broadcast may find no mesh yet).
    fn join(&mut self, request: &Request) -> anyhow::Result<Response> {
        let body: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(error) => return Ok(Response::error(400, format!("body is not JSON: {error}"))),
        };
        let registry = self.engine.registry();
        if let Some(federation) = body.get("federation").and_then(|f| f.as_str()) {
            if federation != registry.name {
                return Ok(Response::error(
                    400,
                    format!("this node's registry is federation {:?}, not {federation:?}", registry.name),
                ));
            }
        }
        if let Some(did) = body.get("node").and_then(|f| f.as_str()) {
            if did != self.identity.did() {
                return Ok(Response::error(
                    400,
                    format!(
                        "this node is {}, not {did}: point --data-dir at {did}'s node",
                        self.identity.did()
                    ),
                ));
            }
        }
        if registry.member(self.identity.did()).is_some() {
            return Ok(Response::error(
                409,
                format!(
                    "{} is already a member of {} (registry v{})",
                    self.identity.did(),
                    registry.name,
                    registry.version
                ),
            ));
        }
        let namespaces: Vec<String> = body
            .get("namespaces")
            .and_then(|n| n.as_array())
            .map(|list| list.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for namespace in &namespaces {
            if let Err(error) = remembrancer_core::checkpoint::validate_namespace(namespace) {
                return Ok(Response::error(400, format!("namespace {namespace:?}: {error}")));
            }
        }
        if let Some(address) = body.get("bootstrap").and_then(|b| b.as_str()) {
            match address.parse::<Multiaddr>() {
                Ok(address) => self.net.dial(address),
                Err(error) => {
                    return Ok(Response::error(
                        400,
                        format!("--bootstrap {address:?} is not a multiaddr: {error}"),
                    ))
                }
            }
        }
        // The registry's endpoint is a URI hint (the spec's schema); peers find each other
        // through the DHT, so a join carries none unless the operator gives one.
        let endpoint = body.get("endpoint").and_then(|e| e.as_str()).map(str::to_string);
        self.joining = Some((namespaces.clone(), endpoint.clone()));
        let events = self.input(Input::RequestJoin { namespaces, endpoint })?;
        if let Some(reason) = events.iter().find_map(|e| match e {
            Event::ProposalRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        }) {
            self.joining = None;
            return Ok(Response::error(409, format!("the join cannot be proposed: {reason}")));
        }
        let mine = self.engine.proposals().find_map(|(digest, proposal, _)| {
            matches!(&proposal.reason, remembrancer_core::governance::ProposalReason::Join { did } if did == self.identity.did())
                .then(|| hex::encode(digest))
        });
        Ok(Response::ok(serde_json::json!({
            "did": self.identity.did(),
            "federation": self.engine.registry().name,
            "proposal": mine,
            "quorum": remembrancer_core::governance::admission_quorum(self.engine.registry()),
            "signers_needed": self.engine.registry().quorum,
        })))
    }

    /// `federation approve PROPOSAL`: signs a proposal this node holds.
    fn approve(&mut self, request: &Request) -> anyhow::Result<Response> {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let Some(text) = body.get("proposal").and_then(|p| p.as_str()) else {
            return Ok(Response::error(
                400,
                "name the proposal (its digest, as `federation status` lists it)",
            ));
        };
        let matches: Vec<[u8; 32]> = self
            .engine
            .proposals()
            .map(|(digest, _, _)| digest)
            .filter(|digest| hex::encode(digest).starts_with(&text.to_ascii_lowercase()))
            .collect();
        let digest = match matches.as_slice() {
            [digest] if text.len() >= 8 => *digest,
            [] => {
                return Ok(Response::error(
                    404,
                    format!("no pending proposal {text}; `federation status` lists the pending ones"),
                ))
            }
            _ => {
                return Ok(Response::error(
                    400,
                    format!("{text} is ambiguous or too short: give at least 8 hex digits"),
                ))
            }
        };
        let version = self.engine.registry().version;
        self.input(Input::Approve { digest })?;
        let applied = self.engine.registry().version > version;
        Ok(Response::ok(serde_json::json!({
            "proposal": hex::encode(digest),
            "signed": true,
            "applied": applied,
            "registry_version": self.engine.registry().version,
        })))
    }

    fn repeat_join(&mut self) -> anyhow::Result<()> {
        let Some((namespaces, endpoint)) = self.joining.clone() else { return Ok(()) };
        if self.engine.registry().member(self.identity.did()).is_some() {
            self.joining = None;
            return Ok(());
        }
        self.input(Input::RequestJoin { namespaces, endpoint })?;
        Ok(())
    }

    /// Signs and broadcasts again the current size of every owned namespace that is not
    /// final (after the retries of its anchor ran out, or when a member reconnects).
    fn reanchor_unfinal(&mut self) -> anyhow::Result<()> {
        self.last_reanchor = Some(std::time::Instant::now());
        let owned: Vec<String> = self
            .engine
            .registry()
            .member(self.identity.did())
            .map(|m| m.namespaces.clone())
            .unwrap_or_default();
        for namespace in owned {
            self.input(Input::AnchorNow { namespace })?;
        }
        Ok(())
    }

    /// Blocks or unblocks peers, named by PeerId or by registry DID: a block closes their
    /// connections and refuses new ones (a partition, for researchers and for operators
    /// cutting off a hostile peer); an unblock looks the federation up again.
    fn block(&mut self, request: &Request, block: bool) -> Response {
        let body: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(error) => return Response::error(400, format!("body is not JSON: {error}")),
        };
        let Some(names) = body.get("peers").and_then(|p| p.as_array()) else {
            return Response::error(400, "body needs \"peers\": [PeerId or DID, ...]");
        };
        let mut peers = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_str().unwrap_or_default();
            let peer = self.peer_of.get(name).copied().or_else(|| name.parse::<PeerId>().ok());
            match peer {
                Some(peer) if peer == self.net.peer_id() => {
                    return Response::error(400, format!("{name} is this node"))
                }
                Some(peer) => peers.push(peer),
                None => {
                    return Response::error(
                        400,
                        format!("{name:?} is neither a PeerId nor a DID in the registry"),
                    )
                }
            }
        }
        for peer in &peers {
            if block {
                self.net.block(*peer);
                if self.blocked.len() < BLOCKED_MAX {
                    self.blocked.insert(*peer);
                }
            } else {
                self.net.unblock(*peer);
                self.blocked.remove(peer);
                self.net.dial_peer(*peer);
            }
            tracing::info!(%peer, block, "block list changed");
        }
        if !block {
            self.net.discover();
        }
        Response::ok(serde_json::json!({
            "blocked": self.blocked.iter().map(PeerId::to_string).collect::<Vec<_>>(),
        }))
    }

    fn owned_namespace(&self, request: &Request) -> Result<String, Response> {
        let body = match request.param("namespace") {
            Some(_) => None,
            None => serde_json::from_slice::<serde_json::Value>(&request.body).ok(),
        };
        self.owned_namespace_in(request, body.as_ref())
    }

    /// The namespace the query names, else the JSON `body`'s, if this node owns it under the
    /// current registry.
    fn owned_namespace_in(
        &self,
        request: &Request,
        body: Option<&serde_json::Value>,
    ) -> Result<String, Response> {
        let namespace = request
            .param("namespace")
            .or_else(|| body?.get("namespace")?.as_str())
            .map(str::to_string)
            .ok_or_else(|| Response::error(400, "name the namespace (--namespace NS)"))?;
        if !self.engine.registry().may_anchor(self.identity.did(), &namespace) {
            return Err(Response::error(
                409,
                format!(
                    "{namespace} is not a namespace this node owns in the registry (version {})",
                    self.engine.registry().version
                ),
            ));
        }
        Ok(namespace)
    }

    fn append(&mut self, request: &Request) -> Result<(String, Vec<Vec<u8>>), Response> {
        // The body is parsed once: it holds the records and, unless the query names it, the
        // namespace.
        let body: serde_json::Value = serde_json::from_slice(&request.body)
            .map_err(|e| Response::error(400, format!("body is not JSON: {e}")))?;
        let namespace = self.owned_namespace_in(request, Some(&body))?;
        let encoded = body
            .get("records")
            .and_then(|r| r.as_array())
            .ok_or_else(|| Response::error(400, "body needs \"records\": [base64, ...]"))?;
        if encoded.is_empty() {
            return Err(Response::error(400, "no records to append"));
        }
        let mut records = Vec::with_capacity(encoded.len());
        for (i, value) in encoded.iter().enumerate() {
            let record = value
                .as_str()
                .and_then(|text| BASE64.decode(text).ok())
                .ok_or_else(|| Response::error(400, format!("records[{i}] is not base64")))?;
            if record.len() > RECORD_BYTES_MAX {
                return Err(Response::error(400, format!("records[{i}] is over {RECORD_BYTES_MAX} bytes")));
            }
            records.push(record);
        }
        if self.queued_records + records.len() > APPEND_QUEUE_RECORDS_MAX {
            return Err(Response::error(503, "too many records waiting for a commit; retry shortly"));
        }
        Ok((namespace, records))
    }

    fn anchor_now(&mut self, request: &Request) -> anyhow::Result<Response> {
        let namespace = match self.owned_namespace(request) {
            Ok(namespace) => namespace,
            Err(response) => return Ok(response),
        };
        self.commit_waiting()?;
        if let Err(EngineError::Refused(refusal)) =
            self.input_or_refusal(Input::AnchorNow { namespace: namespace.clone() })?
        {
            return Ok(Response::error(409, format!("not signed: {refusal}")));
        }
        let size = self.engine.tree(&namespace).map_or(0, |t| t.size());
        Ok(Response::ok(serde_json::json!({ "namespace": namespace, "size": size })))
    }

    /// Ready when the store is open and the registry loaded (both hold once the loop runs)
    /// and at least one other member is connected.
    fn ready(&self) -> Response {
        let members = self.net.connected().iter().filter(|peer| self.did_of.contains_key(peer)).count();
        if members == 0 {
            return Response::error(
                503,
                "not ready: no other member is connected yet (see `federation status`)",
            );
        }
        Response::ok(serde_json::json!({
            "ready": true,
            "store": "open",
            "registry_version": self.engine.registry().version,
            "connected_members": members,
        }))
    }

    fn status(&self) -> serde_json::Value {
        let registry = self.engine.registry();
        let connected = self.net.connected();
        let peers: Vec<_> = registry
            .members
            .values()
            .map(|member| {
                let peer = self.peer_of.get(&member.did);
                let score = self.engine.scores().get(&member.did);
                serde_json::json!({
                    "did": member.did,
                    "peer_id": peer.map(|p| p.to_string()),
                    "status": member.status.name(),
                    "self": member.did == self.identity.did(),
                    "connected": peer.is_some_and(|p| connected.contains(p)),
                    // Gossipsub's own score of the connection (under -80 its gossip is dropped
                    // unread: the graylist), beside the engine's counts.
                    "gossip_score": peer.and_then(|p| self.net.gossip_score(p)),
                    "accepted": score.map_or(0, |s| s.accepted),
                    "honesty_refusals": score.map_or(0, |s| s.honesty_rejections()),
                    "reliability": score.and_then(|s| s.reliability()),
                    "last_seen_ms": score.and_then(|s| s.last_seen_ms),
                })
            })
            .collect();
        let mut namespaces: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for (namespace, receipt) in self.engine.finals() {
            namespaces.insert(
                namespace.clone(),
                serde_json::json!({ "namespace": namespace, "owned": false, "final_size": receipt.tree_size,
                    "final_root": receipt.anchor.batch_root.to_string() }),
            );
        }
        // The owned trees' hashes held in memory: upper levels and the recent records' (about
        // 1 MiB a tree, and a quarter byte a record).
        let mut tree_memory_bytes = 0;
        // Owned: the registry's namespaces of this node, and every one it holds a tree of
        // (restored from its store, or committed to while no member listed it).
        let listed = registry.member(self.identity.did()).map(|m| m.namespaces.clone()).unwrap_or_default();
        let trees: BTreeMap<&str, _> = self
            .engine
            .owned_namespaces()
            .map(|(namespace, tree, halted)| (namespace, (tree, halted)))
            .collect();
        let owned: std::collections::BTreeSet<&str> =
            listed.iter().map(String::as_str).chain(trees.keys().copied()).collect();
        for namespace in owned {
            let (tree, halted) = trees.get(namespace).map_or((None, None), |(t, h)| (Some(*t), *h));
            tree_memory_bytes += tree.map_or(0, |t| t.store().memory_bytes());
            let size = tree.map_or(0, |t| t.size());
            let entry = namespaces
                .entry(namespace.to_string())
                .or_insert_with(|| serde_json::json!({ "namespace": namespace, "final_size": 0 }));
            entry["owned"] = serde_json::json!(true);
            entry["size"] = serde_json::json!(size);
            let final_size = entry["final_size"].as_u64().unwrap_or(0);
            entry["pending"] = serde_json::json!(size > final_size);
            entry["halted"] = serde_json::json!(halted.map(ToString::to_string));
        }
        let percentiles = |kept: &VecDeque<f64>| {
            let mut sorted: Vec<f64> = kept.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let at = |p: usize| sorted.get((sorted.len().saturating_sub(1)) * p / 100).copied();
            (at(50), at(99))
        };
        let (finality50, finality99) = percentiles(&self.counters.latencies);
        let (write50, write99) = percentiles(&self.counters.synced_write_ms);
        // Every signature and verification of this node: the engine runs on this thread.
        let ops = remembrancer_core::signature::operations();
        serde_json::json!({
            "did": self.identity.did(),
            "peer_id": self.net.peer_id().to_string(),
            "federation": registry.name,
            "registry_version": registry.version,
            "quorum": registry.quorum,
            "listen": self.net.listeners().iter().map(Multiaddr::to_string).collect::<Vec<_>>(),
            "connected_peers": connected.len(),
            "peers": peers,
            "namespaces": namespaces.into_values().collect::<Vec<_>>(),
            "evidence": self.engine.evidence().len(),
            "finalized": self.counters.finalized,
            "finalized_own": self.counters.finalized_own,
            "publish_failed": self.counters.publish_failed,
            "published_direct": self.net.published_direct(),
            "sends_dropped": self.net.sends_dropped(),
            "batch_verified": self.counters.batch_verified,
            "anchors_rebroadcast": self.engine.anchors_rebroadcast(),
            "ed25519_operations": {
                "signatures": ops.signatures, "verifications": ops.verifications, "batched": ops.batched,
                "batches": ops.batches,
            },
            "deferred": self.counters.deferred,
            "writes_synced": self.counters.writes_synced,
            "writes_synced_by_release": self.counters.writes_synced_by_release,
            "writes_unsynced": self.counters.writes_unsynced,
            "messages_published": self.counters.messages_published,
            "frames_published": self.counters.frames_published,
            "frames_streamed": self.counters.frames_streamed,
            "gossip_sends_failed": self.net.gossip_sends_failed(),
            "store_memory_bytes": self.store.memory(),
            "tree_memory_bytes": tree_memory_bytes,
            "finality_ms_p50": finality50,
            "finality_ms_p99": finality99,
            // Of the last 1024 synced writes.
            "synced_write_ms_p50": write50,
            "synced_write_ms_p99": write99,
            // Commit to final at this node for its own receipts, oldest first (at most 1024).
            "finality_latencies_ms": self.counters.latencies,
            "garbage_messages": self.counters.garbage.values().sum::<u64>(),
            "outsider_messages": self.counters.outsiders,
            "blocked": self.blocked.iter().map(PeerId::to_string).collect::<Vec<_>>(),
            "member": registry.member(self.identity.did()).is_some(),
            "joining": self.joining.is_some(),
            "proposals": self.engine.proposals().map(|(digest, proposal, signers)| {
                let valid = signers
                    .iter()
                    .filter(|s| registry.member(s).is_some_and(|m| m.status == PeerStatus::Active))
                    .count();
                serde_json::json!({
                    "proposal": hex::encode(digest),
                    "base_version": proposal.base_version,
                    "reason": serde_json::to_value(&proposal.reason).unwrap_or_default(),
                    "signers": signers,
                    "valid_signatures": valid,
                    "quorum": registry.quorum,
                    "signed_here": signers.contains(&self.identity.did()),
                })
            }).collect::<Vec<_>>(),
            "refused_from": self.counters.refused_from.iter().map(|(peer, refused)| {
                let id = peer.parse::<PeerId>().ok();
                serde_json::json!({
                    "peer_id": peer,
                    "member": id.and_then(|p| self.did_of.get(&p)),
                    "refused": refused,
                    "gossip_score": id.and_then(|p| self.net.gossip_score(&p)),
                })
            }).collect::<Vec<_>>(),
        })
    }

    fn receipts(&self, request: &Request) -> Response {
        let Some(namespace) = request.param("namespace") else {
            let latest: Vec<_> = self
                .engine
                .finals()
                .values()
                .map(|r| {
                    serde_json::json!({"namespace": r.namespace, "size": r.tree_size,
                    "root": r.anchor.batch_root.to_string(), "signatures": r.signatures.len()})
                })
                .collect();
            return Response::ok(serde_json::json!(latest));
        };
        match self.store.receipts(namespace, remembrancer_store::RECEIPTS_LISTED_MAX) {
            Ok(receipts) => Response::ok(serde_json::json!(receipts
                .iter()
                .map(|r| serde_json::json!({"namespace": r.namespace, "size": r.tree_size,
                    "root": r.anchor.batch_root.to_string(), "signatures": r.signatures.len(),
                    "finalized_at": r.finalized_at}))
                .collect::<Vec<_>>())),
            Err(error) => Response::error(500, error.to_string()),
        }
    }

    fn receipt(&self, request: &Request) -> Response {
        let Some(namespace) = request.param("namespace") else {
            return Response::error(400, "name the namespace (--namespace NS)");
        };
        let receipt = match request.param("size").map(str::parse::<u64>) {
            Some(Ok(size)) => self.store.receipt(namespace, size).ok().flatten().map(Arc::new),
            Some(Err(_)) => return Response::error(400, "size must be a number"),
            None => self.engine.finals().get(namespace).cloned(),
        };
        match receipt {
            Some(receipt) => Response::ok(serde_json::to_value(receipt.as_ref()).unwrap_or_default()),
            None => Response::error(404, format!("no final receipt for {namespace} at that size yet")),
        }
    }

    fn checkpoint(&self, request: &Request) -> Response {
        let Some(namespace) = request.param("namespace") else {
            return Response::error(400, "name the namespace (--namespace NS)");
        };
        let Some(receipt) = self.engine.finals().get(namespace) else {
            return Response::error(404, format!("no final receipt for {namespace} yet"));
        };
        let registry = self.engine.registry();
        match receipt.to_note(registry) {
            Ok(note) => Response::ok(
                serde_json::json!({ "namespace": namespace, "size": receipt.tree_size, "note": note.to_text() }),
            ),
            Err(error) => Response::error(500, error.to_string()),
        }
    }

    fn proof(&self, request: &Request) -> Response {
        let Some(namespace) = request.param("namespace") else {
            return Response::error(400, "name the namespace (--namespace NS)");
        };
        let Some(index) = request.param("index").and_then(|i| i.parse::<u64>().ok()) else {
            return Response::error(400, "give the record index (--index I)");
        };
        let Some(receipt) = self.engine.finals().get(namespace) else {
            return Response::error(404, format!("no final receipt for {namespace} yet"));
        };
        let size = receipt.tree_size;
        if index >= size {
            return Response::error(
                404,
                format!("record {index} is not under the final checkpoint (size {size}) yet"),
            );
        }
        let Some(tree) = self.engine.tree(namespace) else {
            return Response::error(
                409,
                format!("{namespace} is not owned by this node: ask its owner for proofs"),
            );
        };
        let record = match self.store.record(namespace, index) {
            Ok(Some(record)) => record,
            _ => {
                return Response::error(
                    500,
                    format!("record {index} of {namespace} is missing from the store"),
                )
            }
        };
        // Older records' hashes are read back from the store and checked against the tree:
        // a damaged record is an error that says so, never a proof.
        let built = tree.inclusion_proof(index, size).and_then(|path| {
            Ok(InclusionProofJson::new(
                tree.algorithm(),
                index,
                size,
                tree.leaf_hash(index)?,
                &path,
                tree.root_at(size)?,
            ))
        });
        let proof = match built {
            Ok(proof) => proof,
            Err(error) => {
                tracing::error!(%namespace, index, %error, "an inclusion proof could not be built");
                return Response::error(500, format!("the proof could not be built: {error}"));
            }
        };
        let note = match receipt.to_note(self.engine.registry()) {
            Ok(note) => note.to_text(),
            Err(error) => return Response::error(500, error.to_string()),
        };
        Response::ok(serde_json::to_value(ProofBundle::new(&record, proof, note)).unwrap_or_default())
    }
}
