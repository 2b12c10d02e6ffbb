//! The running node: the engine on its host (`remembrancer-host`: the loop, group commit,
//! arrival batching, timers) with what a node process adds: RocksDB under every write, the
//! operator API and its appends, the join it asked for, and the counters `status` shows.

mod anchoring;
mod calls;
mod commits;
mod explorer;
mod governance;
mod messaging;
mod status;
mod treasury;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use remembrancer_anchor::budget::{Budget, Caps};
use remembrancer_core::anchoring::{AnchorReference, AnchorTarget as _};
use remembrancer_core::bundle::ProofBundle;
use remembrancer_core::engine::{
    AnchorRequestId, Engine, EngineConfig, EngineError, Event, Fanout, Input, Persist,
};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::{InclusionProofJson, PrunedNodeStore};
use remembrancer_core::registry::{PeerStatus, Registry};
use remembrancer_core::signature::Verifier;
use remembrancer_core::HashAlgorithm;
use remembrancer_host::{Control, Embedder, Host, HostConfig};
use remembrancer_net::libp2p::{Multiaddr, PeerId};
use remembrancer_net::{Net, NetConfig};
use remembrancer_store::Store;
use tokio::sync::{mpsc, oneshot};

use super::api::{self, ApiCall};
use super::config::{Admission, NodeConfig};
use super::http::{ApiInfo, Request, Response};

/// The node's engine on its host.
type NodeHost = Host<PrunedNodeStore>;

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
/// How often cross-namespace messaging looks at what is due; what arrives, and a final
/// receipt while messages or answers wait, give it a turn at once.
const MESSAGING_TICK: Duration = Duration::from_millis(200);
/// Peers the block list holds, at most.
const BLOCKED_MAX: usize = 4096;
/// Commits awaiting their receipt whose time is kept, at most.
const COMMIT_TIMES_MAX: usize = 4096;
/// Signature verdicts the engine's verifier remembers (about 1 MiB): a receipt then costs only
/// the signatures not yet checked here or made here.
const VERDICTS_KEPT: usize = 16 * 1024;
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
/// Largest record accepted.
pub const RECORD_BYTES_MAX: usize = 1 << 20;

/// Appends waiting for the next commit of a namespace.
struct PendingAppend {
    records: Vec<Vec<u8>>,
    reply: oneshot::Sender<Response>,
}

/// What the node counts beside its host's counters, for `status`.
#[derive(Default)]
struct Counters {
    /// Receipts final at this node (its own and other owners').
    finalized: u64,
    /// Receipts of this node's own namespaces that reached quorum here.
    finalized_own: u64,
    /// Commit to final of this node's own receipts, milliseconds (microsecond precision).
    latencies: VecDeque<f64>,
}

/// Adds `value` to `kept`, the last `LATENCIES_KEPT` of a measure, dropping the oldest.
fn keep_last(kept: &mut VecDeque<f64>, value: f64) {
    kept.push_back(value);
    if kept.len() > LATENCIES_KEPT {
        kept.pop_front();
    }
}

/// What the node's loop waits for besides the network and the engine's timers.
enum NodeCall {
    /// An operator API call.
    Api(ApiCall),
    /// The batch interval: commit what waits.
    CommitTick,
    /// Propose this node's join again.
    JoinTick,
    /// Save the peer scores and re-anchor what is not final.
    ScoresTick,
    /// Cross-namespace messaging: take what arrived, deliver and answer what is due.
    MessagingTick,
    /// Publish a new snapshot for the explorer.
    ExplorerTick,
    /// The explorer asks for a record's proof.
    Proof(crate::node::explorer::ProofCall),
    /// An external anchor is final: hand it to the engine.
    Anchored(AnchorRequestId, AnchorReference),
    /// Ctrl-C or SIGTERM.
    Stop,
}

/// Where the node's calls come from.
struct Calls {
    api: mpsc::Receiver<ApiCall>,
    commit: tokio::time::Interval,
    join: tokio::time::Interval,
    scores: tokio::time::Interval,
    messaging: tokio::time::Interval,
    explorer: tokio::time::Interval,
    proofs: mpsc::Receiver<crate::node::explorer::ProofCall>,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    anchored: mpsc::Receiver<(AnchorRequestId, AnchorReference)>,
}

/// The node process's side of its host.
struct Node {
    identity: NodeIdentity,
    store: Arc<Store>,
    calls: Calls,
    /// The anchoring task, for a target outside the federation (none for `local`).
    anchoring: Option<anchoring::Anchoring>,
    /// The treasury's caps as the registry sets them, and this node's spending.
    budget: Arc<Budget>,
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
    /// API answers waiting for the next write.
    replies: Vec<(oneshot::Sender<Response>, Response)>,
    /// Cross-namespace messaging's queue and retries.
    messaging: messaging::Messaging,
    /// Where the public explorer's snapshots and metrics go, when it runs.
    explorer: Option<explorer::Feed>,
    config: NodeConfig,
}

/// Whether every member of `registry` connects to every other: a federation of at most
/// `discovery_peers` members, all of whom discovery dials. A publish then reaches every member
/// directly, and gossip's forwarding only repairs.
fn all_members_connect(registry: &Registry, discovery_peers: usize) -> bool {
    registry.members.len() <= discovery_peers
}

/// Runs a node until Ctrl-C or SIGTERM.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    refuse_open_key_file(&config.node.key_file)?;
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
        epoch_ms: config.engine.epoch_ms,
        // Gossipsub spreads every message to all members efficiently: publish, do not pick.
        fanout: Fanout::All,
        // Operator proposals are signed by `federation approve` only; joins by the policy.
        approve_joins: config.node.admission == Admission::Open,
        ..EngineConfig::default()
    };
    let listed: Vec<String> =
        registry.member(identity.did()).map(|m| m.namespaces.clone()).unwrap_or_default();
    if !listed.is_empty() && !config.node.namespaces.is_empty() {
        tracing::info!(registry = %listed.join(", "), "the registry lists this node's namespaces: the configuration's `namespaces` is not used");
    }
    for namespace in &config.node.namespaces {
        if registry.members.values().any(|m| m.did != identity.did() && m.namespaces.contains(namespace)) {
            tracing::warn!(%namespace, "the configuration names a namespace another member owns in the registry: it stays theirs");
        }
    }
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
    let mut net = Net::start(&net_config)?;

    let api = tokio::net::TcpListener::bind(&config.node.api)
        .await
        .with_context(|| format!("cannot listen on {} for the API (is the port in use?)", config.node.api))?;
    let token = write_token(&config.node.data_dir)?;
    let (proofs_tx, proofs_rx) = mpsc::channel(crate::node::explorer::PROOF_CALLS_MAX);
    let explorer = explorer::start(&config.explorer, &mut net, proofs_tx).await?;
    let info = ApiInfo {
        address: api.local_addr()?,
        did: identity.did().to_string(),
        peer_id: net.peer_id().to_string(),
        pid: std::process::id(),
        explorer: explorer.as_ref().map(|(_, address)| *address),
    };
    crate::files::write_public(&config.node.data_dir.join("api.json"), &serde_json::to_vec_pretty(&info)?)?;
    tracing::info!(did = identity.did(), peer_id = %net.peer_id(), api = %info.address, "node started");

    let (api_tx, api_rx) = mpsc::channel::<ApiCall>(API_QUEUE_MAX);
    tokio::spawn(api::serve(api, token, api_tx));
    let host_config = HostConfig {
        defer: DEFER,
        defer_drawn: false,
        quiet: Some(QUIET),
        defer_members_max: net_config.discovery_peers,
        discovery_tick: DISCOVERY_TICK,
    };
    let mut host = Host::new(engine, net, host_config);
    let (anchored_tx, anchored_rx) = mpsc::channel(anchoring::REQUESTS_MAX);
    let budget = Arc::new(Budget::new(config.engine.epoch_ms, caps_of(host.engine().registry())));
    let anchoring = anchoring::start(&config.anchor, Arc::clone(&store), Arc::clone(&budget), anchored_tx)?;
    let calls = Calls {
        api: api_rx,
        commit: tokio::time::interval(Duration::from_millis(config.engine.batch_interval_ms.max(1))),
        join: tokio::time::interval(JOIN_REPEAT),
        scores: tokio::time::interval(Duration::from_secs(30)),
        messaging: tokio::time::interval(MESSAGING_TICK),
        explorer: tokio::time::interval(explorer::SNAPSHOT_INTERVAL),
        proofs: proofs_rx,
        terminate: signal_terminate()?,
        interrupt: signal_interrupt()?,
        anchored: anchored_rx,
    };
    let store_for_messaging = Arc::clone(&store);
    let mut node = Node {
        identity,
        store,
        calls,
        anchoring,
        budget,
        appends: BTreeMap::new(),
        held_for_window: BTreeMap::new(),
        queued_records: 0,
        counters: Counters::default(),
        blocked: Default::default(),
        last_reanchor: None,
        joining: None,
        commit_times: BTreeMap::new(),
        replies: Vec::new(),
        messaging: messaging::Messaging::load(&store_for_messaging)?,
        explorer: explorer.map(|(feed, _)| feed),
        config,
    };
    host.input(&mut node, Input::Start)?;
    // Every restored namespace whose last commit is not final yet is anchored again.
    let owned: Vec<String> =
        host.engine().owned_namespaces().map(|(namespace, _, _)| namespace.to_string()).collect();
    for namespace in owned {
        host.input(&mut node, Input::AnchorNow { namespace })?;
    }
    host.flush(&mut node)?;
    host.run(&mut node).await?;
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
/// The anchoring treasury's caps `registry` sets.
fn caps_of(registry: &Registry) -> Caps {
    Caps::from_gwei(
        registry.anchor_propagation.cap_per_epoch_gwei,
        registry.anchor_propagation.cap_per_anchor_gwei,
    )
}

fn signal_interrupt() -> anyhow::Result<tokio::signal::unix::Signal> {
    Ok(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?)
}

/// Refuses a key file that users other than its owner may read or write: the node's secret
/// key must be the owner's alone (`keys generate` writes it with mode 0600).
fn refuse_open_key_file(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let metadata = std::fs::metadata(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "the key file {} is open to other users (mode {mode:03o}): run `chmod 600 {}` and start again",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

fn write_token(data_dir: &Path) -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom_bytes(&mut bytes)?;
    let token = hex::encode(bytes);
    crate::files::write_private(&data_dir.join("api.token"), token.as_bytes(), true)?;
    Ok(token)
}

pub(crate) fn getrandom_bytes(out: &mut [u8]) -> anyhow::Result<()> {
    getrandom::fill(out).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))
}

impl Embedder<PrunedNodeStore> for Node {
    type Call = NodeCall;

    fn next_call(&mut self) -> impl Future<Output = Option<NodeCall>> + Send {
        let calls = &mut self.calls;
        async move {
            tokio::select! {
                Some(call) = calls.api.recv() => Some(NodeCall::Api(call)),
                _ = calls.commit.tick() => Some(NodeCall::CommitTick),
                _ = calls.join.tick() => Some(NodeCall::JoinTick),
                _ = calls.scores.tick() => Some(NodeCall::ScoresTick),
                _ = calls.messaging.tick() => Some(NodeCall::MessagingTick),
                _ = calls.explorer.tick() => Some(NodeCall::ExplorerTick),
                Some(call) = calls.proofs.recv() => Some(NodeCall::Proof(call)),
                Some((request, reference)) = calls.anchored.recv() => Some(NodeCall::Anchored(request, reference)),
                _ = calls.interrupt.recv() => Some(NodeCall::Stop),
                _ = calls.terminate.recv() => Some(NodeCall::Stop),
            }
        }
    }

    fn on_call(&mut self, host: &mut NodeHost, call: NodeCall) -> anyhow::Result<Control> {
        match call {
            NodeCall::Api(call) => {
                host.mark_busy();
                self.on_api(host, call)?
            }
            NodeCall::CommitTick => self.commit_anchorable(host, false)?,
            NodeCall::JoinTick => self.repeat_join(host)?,
            NodeCall::ScoresTick => {
                self.store.save_scores(host.engine().scores())?;
                self.reanchor_unfinal(host)?;
            }
            NodeCall::MessagingTick => self.messaging_tick(host)?,
            NodeCall::ExplorerTick => self.publish_snapshot(host),
            NodeCall::Proof(call) => self.answer_proof(host, call),
            NodeCall::Anchored(request, reference) => {
                host.input(self, Input::Anchored { request, reference })?;
            }
            NodeCall::Stop => return Ok(Control::Stop),
        }
        Ok(Control::Continue)
    }

    /// Anchors at the configured target: `local` at once, others through the anchoring task
    /// (the answer comes back as [`NodeCall::Anchored`] once final).
    fn anchor(
        &mut self,
        request: &AnchorRequestId,
        root: &remembrancer_core::hash::Digest,
    ) -> Option<AnchorReference> {
        match &self.anchoring {
            None => remembrancer_core::anchoring::LocalTarget::default()
                .anchor(root, remembrancer_host::now_ms())
                .ok(),
            Some(anchoring) => {
                if let Err(why) = anchoring.request(request.clone(), *root) {
                    tracing::warn!(?request, "{why}");
                }
                None
            }
        }
    }

    /// One RocksDB batch; synced when messages or answers wait for it.
    fn persist(&mut self, batch: &[Persist], synced: bool) -> anyhow::Result<()> {
        self.store.persist_with(batch, synced)?;
        Ok(())
    }

    fn awaits_write(&self) -> bool {
        !self.replies.is_empty()
    }

    fn released(&mut self) {
        for (reply, response) in self.replies.drain(..) {
            let _ = reply.send(response);
        }
    }

    fn on_event(&mut self, engine: &Engine<PrunedNodeStore>, event: &Event) {
        if let Some(feed) = &mut self.explorer {
            feed.dirty = true;
        }
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
                    if let Some(feed) = &mut self.explorer {
                        feed.metrics.observe_finality(precise / 1000.0);
                        feed.timed(namespace, precise);
                    }
                }
                tracing::info!(%namespace, size, latency_ms, "final receipt");
                if let (Some(feed), Some(receipt)) = (&mut self.explorer, engine.finals().get(namespace)) {
                    if receipt.tree_size == *size {
                        feed.finalized(receipt);
                    }
                }
                // A receipt may release messages or answers: messaging takes its turn next,
                // not at its next tick.
                if self.messaging.wants_turn() {
                    self.calls.messaging.reset_immediately();
                }
            }
            Event::Rejected { sender, reason } => tracing::info!(%sender, ?reason, "message refused"),
            Event::RegistryChanged { version } => {
                self.budget.set_caps(caps_of(engine.registry()));
                let member = engine.registry().member(self.identity.did()).cloned();
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
                if let Some(feed) = &mut self.explorer {
                    feed.evidence_came();
                }
                tracing::warn!(%signer, %namespace, size, "equivocation: evidence kept and broadcast")
            }
            Event::Messaging { sender, content } => {
                self.messaging.push(sender, content);
                self.calls.messaging.reset_immediately();
            }
            Event::UnelectedClaim { signer, epoch } => {
                if let Some(feed) = &mut self.explorer {
                    feed.evidence_came();
                }
                tracing::warn!(%signer, epoch, "an epoch anchor claimed out of turn: evidence kept and broadcast")
            }
            Event::ProposalRefused { peer, reason } => {
                tracing::warn!(%peer, %reason, "registry proposal refused")
            }
            Event::Anchored { request: AnchorRequestId::Epoch(epoch), anchorer, rank } => {
                // Kept, whoever made it: anchor proofs of this node's records are built from it.
                if let Some((content, anchorer)) = engine.epoch_anchor(*epoch) {
                    if let Err(error) = self.store.put_epoch_anchor(content, anchorer) {
                        tracing::error!(epoch, %error, "an epoch anchor could not be stored");
                    }
                }
                tracing::info!(epoch, %anchorer, ?rank, "epoch anchored");
            }
            Event::Anchored { anchorer, .. } => tracing::info!(%anchorer, "anchored"),
            // Answered to the client that appended (`commit_waiting`).
            Event::Committed { .. } => {}
        }
    }

    /// A member (re)connecting may end a partition: anchors it missed go out again (the
    /// retries of an anchor stop after about a minute).
    fn on_connection(
        &mut self,
        host: &mut NodeHost,
        _peer: PeerId,
        member: Option<&str>,
        connected: bool,
    ) -> anyhow::Result<()> {
        if connected
            && member.is_some()
            && self.last_reanchor.is_none_or(|at| at.elapsed() >= REANCHOR_SPACING)
        {
            self.reanchor_unfinal(host)?;
        }
        Ok(())
    }

    /// The appends that waited for an anchor slot this group's receipts freed are committed
    /// with this write.
    fn before_write(&mut self, host: &mut NodeHost) -> anyhow::Result<()> {
        self.commit_anchorable(host, true)
    }

    fn on_stop(&mut self, host: &mut NodeHost) -> anyhow::Result<()> {
        self.commit_waiting(host)?;
        self.store.save_scores(host.engine().scores())?;
        Ok(())
    }
}
