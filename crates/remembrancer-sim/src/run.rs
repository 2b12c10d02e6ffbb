//! One simulation run: N real engines (real signatures) over a simulated network in virtual
//! time, driven by one seeded random source and one ordered event queue, so the same scenario
//! and seed always give the same bytes out.

use std::collections::{BTreeMap, BTreeSet};

use remembrancer_core::anchoring::{AnchorTarget, LocalTarget};
use remembrancer_core::checkpoint::Checkpoint;
use remembrancer_core::engine::{
    AnchorRequestId, Engine, EngineConfig, Event, Fanout, Input, Output, Persist, Timer,
};
use remembrancer_core::identity::{multibase_signature, NodeIdentity};
use remembrancer_core::merkle::{MemoryNodeStore, MemoryTree};
use remembrancer_core::message::{AnchorContent, Content, HeartbeatContent, PeerMessage, ReceiptContent};
use remembrancer_core::note::{Note, NoteSignature};
use remembrancer_core::receipt::{sign_anchor, FederationReceipt, Role, SignatureJson};
use remembrancer_core::registry::{
    AnchorMode, AnchorPropagation, FederationSection, PeerEntry, PeerStatus, Registry, RegistryDocument,
};
use remembrancer_core::{Digest, HashAlgorithm};
use serde::Serialize;

use crate::rng::Rng;
use crate::scenario::{Behavior, Latency, Scenario};

mod byzantine;
mod mail;
mod observe;

/// Host time of virtual time 0, in milliseconds (engines sign real-looking timestamps).
pub const EPOCH_MS: u64 = 1_800_000_000_000;
/// Width of one row of the time series, in milliseconds.
pub const SERIES_STEP_MS: u64 = 1000;
/// Most events one run may process before it is stopped as runaway.
pub const EVENTS_MAX: u64 = 200_000_000;
/// Virtual time after the last disruption by which every connected honest node must agree.
pub const CONVERGENCE_GRACE_MS: u64 = 15_000;
/// Receipts final at their owner this long before the end must have reached every honest node.
pub const CONVERGENCE_LAG_MS: u64 = 3_000;
/// A namespace whose newest checkpoint is not final this long before the end is stalled.
pub const STALL_MS: u64 = 5_000;

/// What happens next in the simulated world.
#[derive(Debug, Clone)]
enum SimEvent {
    Deliver {
        to: usize,
        message: Box<PeerMessage>,
    },
    Timer {
        node: usize,
        timer: Timer,
    },
    Commit {
        node: usize,
        batch: u64,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Replay {
        node: usize,
        message: Box<PeerMessage>,
    },
    Forge {
        node: usize,
    },
    Check,
    /// An owner sends a cross-namespace message.
    MailSend {
        node: usize,
    },
    /// An owner's messaging round (releases and answers).
    MailTick {
        node: usize,
    },
    /// A delivery or an answer reached a node's host.
    Mail {
        node: usize,
        content: Box<Content>,
    },
}

/// A fork kept by an equivocating owner: its own tree with the last record of every batch
/// changed, and the cosignatures it gathered.
struct Fork {
    tree: MemoryTree<MemoryNodeStore>,
    pending: BTreeMap<u64, (Checkpoint, BTreeMap<String, SignatureJson>)>,
}

/// A violated invariant, with what is needed to replay it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: String,
    /// Virtual time.
    pub at_ms: u64,
    /// What was seen.
    pub detail: String,
}

/// One row of the time series.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesRow {
    /// Virtual time at the end of the row, in seconds.
    pub time_s: u64,
    /// Receipts finalized at their owners so far.
    pub receipts_finalized: u64,
    /// Message deliveries so far.
    pub messages: u64,
    /// Bytes delivered so far.
    pub bytes: u64,
    /// Evidence records raised so far (over all nodes).
    pub evidence: u64,
    /// Nodes up.
    pub nodes_up: u64,
    /// Whether a partition was active.
    pub partitioned: bool,
}

/// Summary figures of one run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Quorum.
    pub quorum: u32,
    /// Anchor mode.
    pub anchor_mode: String,
    /// Virtual duration, ms.
    pub duration_ms: u64,
    /// Checkpoints anchored (signed by owners).
    pub checkpoints_anchored: u64,
    /// Receipts finalized at their owners.
    pub receipts_finalized: u64,
    /// Anchors issued to the target: the cost collaborative and hybrid modes save.
    pub anchors_issued: u64,
    /// Epochs anchored (collaborative and hybrid modes).
    pub epochs_anchored: u64,
    /// Epochs anchored by a node other than the elected primary (hybrid takeovers).
    pub epochs_anchored_by_secondary: u64,
    /// Time from anchor to finality at the owner: p50, p90, p99 (ms of virtual time).
    pub finality_ms_p50: Option<u64>,
    /// p90.
    pub finality_ms_p90: Option<u64>,
    /// p99.
    pub finality_ms_p99: Option<u64>,
    /// Namespaces whose newest checkpoint was not final 5 s before the end.
    pub stalled_namespaces: Vec<String>,
    /// Message deliveries.
    pub messages: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Deliveries per final receipt.
    pub messages_per_receipt: Option<f64>,
    /// Bytes per final receipt.
    pub bytes_per_receipt: Option<f64>,
    /// Evidence records raised (over all nodes).
    pub evidence_raised: u64,
    /// Nodes that raised evidence against each equivocator.
    pub equivocators_detected: BTreeMap<String, u64>,
    /// Virtual time from an equivocator's first fork to the first evidence, ms.
    pub time_to_detect_equivocator_ms: Option<u64>,
    /// Virtual time from each heal or restart to agreement of all connected honest nodes, ms.
    pub time_to_converge_after_heal_ms: Vec<u64>,
    /// Messages refused, by reason.
    pub rejections: BTreeMap<String, u64>,
    /// Members on probation or suspended in the registry of every honest node that is up.
    pub demoted_everywhere: Vec<String>,
    /// Registry version per node at the end.
    pub registry_versions: Vec<u64>,
    /// Cross-namespace messages sent (`[messages]`).
    pub xmsg_sent: u64,
    /// Of them, acknowledged with a proven ACK.
    pub xmsg_acked: u64,
    /// Of them, answered with a proven TIMEOUT.
    pub xmsg_expired: u64,
    /// Deliveries and answers refused.
    pub xmsg_refused: u64,
    /// Invariant violations (empty when the run is sound).
    pub violations: Vec<Violation>,
    /// Events processed.
    pub events: u64,
}

/// A finished run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunReport {
    /// Summary.
    pub summary: Summary,
    /// Time series, one row per second of virtual time.
    pub series: Vec<SeriesRow>,
    /// Partitions as (from_ms, until_ms), for charts.
    pub partitions: Vec<(u64, u64)>,
}

/// The simulated world.
pub struct Simulation<'a> {
    scenario: &'a Scenario,
    seed: u64,
    rng: Rng,
    identities: Vec<NodeIdentity>,
    registry: Registry,
    engines: Vec<Engine<MemoryNodeStore>>,
    up: Vec<bool>,
    queue: BTreeMap<(u64, u64), SimEvent>,
    sequence: u64,
    now_ms: u64,
    forks: BTreeMap<usize, Fork>,
    targets: Vec<LocalTarget>,
    /// Node index by DID, for point-to-point sends.
    node_index: BTreeMap<String, usize>,
    // Metrics.
    epochs_anchored: BTreeMap<u64, Option<usize>>,
    anchored: u64,
    anchors: BTreeMap<String, Vec<(u64, u64)>>,
    finalized_log: BTreeMap<String, Vec<(u64, u64)>>,
    latencies: Vec<u64>,
    receipts: u64,
    messages: u64,
    bytes: u64,
    evidence: u64,
    detected: BTreeMap<String, u64>,
    first_fork_ms: Option<u64>,
    first_evidence_ms: Option<u64>,
    rejections: BTreeMap<String, u64>,
    final_roots: BTreeMap<(String, u64), (Digest, usize)>,
    violations: Vec<Violation>,
    series: Vec<SeriesRow>,
    converge_since: Vec<u64>,
    converged_after: Vec<u64>,
    events: u64,
    mail: mail::Mail,
}

fn namespace_of(node: usize) -> String {
    format!("ns:n{node}")
}

fn did_of(node: usize) -> String {
    format!("did:vm:node:n{node}")
}

impl<'a> Simulation<'a> {
    /// Builds the federation of `scenario` for `seed`.
    pub fn new(scenario: &'a Scenario, seed: u64) -> Self {
        let mut key_rng = Rng::new(seed ^ 0x6b65_7973);
        let identities: Vec<NodeIdentity> = (0..scenario.nodes)
            .map(|i| {
                let mut secret = [0u8; 32];
                for chunk in secret.chunks_mut(8) {
                    chunk.copy_from_slice(&key_rng.next_u64().to_le_bytes());
                }
                NodeIdentity::from_seed(&did_of(i), secret)
                    .unwrap_or_else(|_| unreachable!("did_of is a valid DID"))
            })
            .collect();
        let mode = match scenario.anchor_mode.as_str() {
            "collaborative" => AnchorMode::Collaborative,
            "hybrid" => AnchorMode::Hybrid,
            _ => AnchorMode::Independent,
        };
        let document = RegistryDocument {
            federation: FederationSection {
                name: "sim".to_string(),
                version: 1,
                quorum: scenario.quorum,
                peers: identities
                    .iter()
                    .enumerate()
                    .map(|(i, identity)| {
                        let owned = if scenario.load.owners.contains(&i) {
                            vec![namespace_of(i)]
                        } else {
                            Vec::new()
                        };
                        PeerEntry::for_identity(identity, owned)
                    })
                    .collect(),
                anchor_propagation: AnchorPropagation { mode, ..AnchorPropagation::default() },
            },
        };
        let registry =
            Registry::from_document(&document).unwrap_or_else(|e| unreachable!("validated scenario: {e}"));
        let config = EngineConfig {
            heartbeat_interval_ms: scenario.heartbeat_interval_ms,
            epoch_ms: scenario.epoch_ms,
            anchor_deadline_ms: scenario.anchor_deadline_ms,
            fanout: match scenario.fanout.as_str() {
                "all" => Fanout::All,
                "log" => Fanout::Logarithmic,
                peers => Fanout::Fixed(peers.parse().unwrap_or(0)),
            },
            ..EngineConfig::default()
        };
        // One registry shared by every engine until one applies an update.
        let shared = std::sync::Arc::new(registry.clone());
        let engines = identities
            .iter()
            .map(|identity| {
                Engine::new(
                    identity.clone(),
                    std::sync::Arc::clone(&shared),
                    config.clone(),
                    MemoryNodeStore::new,
                )
            })
            .collect();
        let forks = scenario
            .byzantine
            .iter()
            .filter(|b| b.behavior == Behavior::Equivocate)
            .map(|b| {
                (
                    b.node,
                    Fork {
                        tree: MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new()),
                        pending: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Simulation {
            scenario,
            seed,
            rng: Rng::new(seed),
            identities,
            registry,
            engines,
            up: vec![true; scenario.nodes],
            queue: BTreeMap::new(),
            sequence: 0,
            now_ms: 0,
            forks,
            targets: vec![LocalTarget::default(); scenario.nodes],
            node_index: (0..scenario.nodes).map(|i| (did_of(i), i)).collect(),
            epochs_anchored: BTreeMap::new(),
            anchored: 0,
            anchors: BTreeMap::new(),
            finalized_log: BTreeMap::new(),
            latencies: Vec::new(),
            receipts: 0,
            messages: 0,
            bytes: 0,
            evidence: 0,
            detected: BTreeMap::new(),
            first_fork_ms: None,
            first_evidence_ms: None,
            rejections: BTreeMap::new(),
            final_roots: BTreeMap::new(),
            violations: Vec::new(),
            series: Vec::new(),
            converge_since: Vec::new(),
            converged_after: Vec::new(),
            events: 0,
            mail: mail::Mail::default(),
        }
    }

    fn schedule(&mut self, at_ms: u64, event: SimEvent) {
        self.sequence += 1;
        self.queue.insert((at_ms, self.sequence), event);
    }

    fn behavior(&self, node: usize) -> Option<Behavior> {
        self.scenario
            .byzantine
            .iter()
            .find(|b| b.node == node && self.now_ms >= b.from_ms)
            .map(|b| b.behavior)
    }

    fn partition_active(&self, at_ms: u64) -> bool {
        self.scenario.partitions.iter().any(|p| (p.from_ms..p.until_ms).contains(&at_ms))
    }

    /// Whether `a` can reach `b` now: not in different groups of an active partition.
    fn reachable(&self, a: usize, b: usize) -> bool {
        !self.scenario.partitions.iter().any(|p| {
            (p.from_ms..p.until_ms).contains(&self.now_ms) && {
                let group_of = |n: usize| p.groups.iter().position(|g| g.contains(&n));
                matches!((group_of(a), group_of(b)), (Some(x), Some(y)) if x != y)
            }
        })
    }

    fn latency(&mut self) -> u64 {
        match self.scenario.network.latency {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min, max } => self.rng.range(min, max),
            Latency::Exponential { min, mean_extra } => {
                let u = self.rng.unit().max(1e-12);
                min + (-(u.ln()) * mean_extra as f64) as u64
            }
        }
    }

    /// Sends `message` from `from` to `to` through the simulated network.
    fn transmit(&mut self, from: usize, to: usize, message: &PeerMessage, bytes: u64) {
        if from == to || !self.reachable(from, to) {
            return;
        }
        if self.scenario.network.loss > 0.0 && self.rng.chance(self.scenario.network.loss) {
            return;
        }
        let at = self.now_ms + self.latency();
        self.messages += 1;
        self.bytes += bytes;
        self.schedule(at, SimEvent::Deliver { to, message: Box::new(message.clone()) });
    }

    fn broadcast(&mut self, from: usize, message: &PeerMessage) {
        let encoded = message.encode();
        self.check_bounds(message, &encoded);
        let bytes = encoded.len() as u64;
        for to in 0..self.engines.len() {
            self.transmit(from, to, message, bytes);
        }
    }

    /// Messages travel here undecoded; one a real peer would refuse as malformed (over a size
    /// or count bound) is a violation.
    fn check_bounds(&mut self, message: &PeerMessage, encoded: &[u8]) {
        if let Err(error) = message.check_bounds(encoded) {
            self.violations.push(Violation {
                invariant: "message bounds".to_string(),
                at_ms: self.now_ms,
                detail: format!("{:?} from {}: {error}", message.message_type(), message.sender),
            });
        }
    }

    fn input(&mut self, node: usize, input: Input) {
        let host_ms = EPOCH_MS + self.now_ms;
        let outputs = match self.engines[node].handle(input, host_ms) {
            Ok(outputs) => outputs,
            Err(error) => {
                self.violations.push(Violation {
                    invariant: "engine".to_string(),
                    at_ms: self.now_ms,
                    detail: format!("node {node}: {error}"),
                });
                return;
            }
        };
        let behavior = self.behavior(node);
        for output in outputs {
            match output {
                Output::Publish(mut message) => {
                    if behavior == Some(Behavior::Silent) {
                        continue;
                    }
                    // The simulated network delivers as gossip does: each message proves its
                    // sender itself.
                    self.engines[node].seal(&mut message);
                    if behavior == Some(Behavior::Equivocate) {
                        if let Content::Anchor(anchor) = &message.content {
                            self.equivocate(node, anchor, &message);
                            continue;
                        }
                    }
                    self.broadcast(node, &message);
                }
                Output::Send { to, message } => {
                    if behavior == Some(Behavior::Silent) {
                        continue;
                    }
                    if let Some(&index) = self.node_index.get(&to) {
                        let encoded = message.encode();
                        self.check_bounds(&message, &encoded);
                        let bytes = encoded.len() as u64;
                        self.transmit(node, index, &message, bytes);
                    }
                }
                Output::SetTimer { timer, at_ms } => {
                    let at = at_ms.saturating_sub(EPOCH_MS);
                    self.schedule(at, SimEvent::Timer { node, timer });
                }
                Output::Persist(record) => self.observe_persist(node, record),
                Output::Event(event) => self.observe_event(node, event),
                Output::AnchorRequest { request, root } => {
                    if behavior == Some(Behavior::Silent) {
                        continue;
                    }
                    match self.targets[node].anchor(&root, host_ms) {
                        Ok(reference) => self.input(node, Input::Anchored { request, reference }),
                        Err(error) => self.violations.push(Violation {
                            invariant: "anchor target".to_string(),
                            at_ms: self.now_ms,
                            detail: error.to_string(),
                        }),
                    }
                }
            }
        }
    }

    /// Runs to the end; `progress` is called with the fraction of virtual time done.
    pub fn run(mut self, mut progress: impl FnMut(f64)) -> RunReport {
        let scenario = self.scenario;
        for node in 0..scenario.nodes {
            self.schedule(0, SimEvent::Restart { node });
        }
        for (k, &owner) in scenario.load.owners.iter().enumerate() {
            let stagger = (k as u64 * 37) % scenario.load.batch_interval_ms.max(1);
            self.schedule(
                scenario.load.batch_interval_ms / 2 + stagger,
                SimEvent::Commit { node: owner, batch: 0 },
            );
        }
        if let Some(messages) = &scenario.messages {
            for (k, &owner) in scenario.load.owners.iter().enumerate() {
                let stagger = (k as u64 * 53) % messages.interval_ms;
                self.schedule(messages.interval_ms + stagger, SimEvent::MailSend { node: owner });
                self.schedule(mail::TICK_MS, SimEvent::MailTick { node: owner });
            }
        }
        for crash in &scenario.crashes {
            self.schedule(crash.at_ms, SimEvent::Crash { node: crash.node });
            if let Some(restart) = crash.restart_ms {
                self.schedule(restart, SimEvent::Restart { node: crash.node });
            }
        }
        // Convergence is checked after every heal and restart.
        let mut disruptions_end: Vec<u64> = scenario.partitions.iter().map(|p| p.until_ms).collect();
        disruptions_end.extend(scenario.crashes.iter().filter_map(|c| c.restart_ms));
        disruptions_end.sort_unstable();
        disruptions_end.dedup();
        for &end in &disruptions_end {
            if end < scenario.duration_ms {
                self.converge_since.push(end);
                self.schedule(end, SimEvent::Check);
            }
        }
        for b in &scenario.byzantine {
            if b.behavior == Behavior::Forge {
                self.schedule(b.from_ms.max(1), SimEvent::Forge { node: b.node });
            }
        }
        let mut next_progress = 0.1;
        while let Some(((at_ms, _), event)) = self.queue.pop_first() {
            if at_ms > scenario.duration_ms || self.events >= EVENTS_MAX {
                break;
            }
            self.record_series(at_ms);
            self.now_ms = at_ms;
            self.events += 1;
            let done = at_ms as f64 / scenario.duration_ms as f64;
            if done >= next_progress {
                progress(done);
                next_progress += 0.1;
            }
            self.step(event);
        }
        self.now_ms = scenario.duration_ms;
        self.record_series(scenario.duration_ms);
        progress(1.0);
        self.finish(disruptions_end)
    }

    fn step(&mut self, event: SimEvent) {
        let scenario = self.scenario;
        match event {
            SimEvent::Deliver { to, message } => {
                if !self.up[to] {
                    return;
                }
                if self.forks.contains_key(&to) {
                    let sender = message.sender.clone();
                    self.collect_fork_cosignature(to, &sender, &message);
                }
                if self.behavior(to) == Some(Behavior::Replay) && self.rng.chance(0.2) {
                    let later = self.now_ms + 2_000;
                    self.schedule(later, SimEvent::Replay { node: to, message: message.clone() });
                }
                self.input(to, Input::Message(*message));
            }
            SimEvent::Replay { node, message } => {
                if self.up[node] {
                    self.broadcast(node, &message);
                }
            }
            SimEvent::Forge { node } => {
                if self.up[node] {
                    self.forge(node);
                }
                self.schedule(self.now_ms + 2 * scenario.heartbeat_interval_ms, SimEvent::Forge { node });
            }
            SimEvent::Timer { node, timer } => {
                if self.up[node] {
                    self.input(node, Input::Timer(timer));
                }
            }
            SimEvent::Commit { node, batch } => {
                if self.up[node] {
                    let records = (0..scenario.load.records_per_batch)
                        .map(|r| {
                            format!("seed {} node {node} batch {batch} record {r}", self.seed).into_bytes()
                        })
                        .collect();
                    self.input(node, Input::Commit { namespace: namespace_of(node), records });
                }
                let next = batch + 1;
                if scenario.load.batches.is_none_or(|b| next < b) {
                    self.schedule(
                        self.now_ms + scenario.load.batch_interval_ms,
                        SimEvent::Commit { node, batch: next },
                    );
                }
            }
            SimEvent::MailSend { node } => {
                if let Some(messages) = &scenario.messages {
                    if self.up[node] {
                        self.mail_send(node, messages.deadline_ms);
                    }
                    let next = self.now_ms + messages.interval_ms;
                    if next + messages.quiet() <= scenario.duration_ms {
                        self.schedule(next, SimEvent::MailSend { node });
                    }
                }
            }
            SimEvent::MailTick { node } => {
                if self.up[node] {
                    self.mail_tick(node);
                }
                self.schedule(self.now_ms + mail::TICK_MS, SimEvent::MailTick { node });
            }
            SimEvent::Mail { node, content } => {
                if self.up[node] {
                    self.mail_receive(node, *content);
                }
            }
            SimEvent::Crash { node } => self.up[node] = false,
            SimEvent::Restart { node } => {
                self.up[node] = true;
                self.input(node, Input::Start);
            }
            SimEvent::Check => {
                if self.converged() {
                    if let Some(since) = self.converge_since.first().copied() {
                        if self.now_ms >= since {
                            self.converged_after.push(self.now_ms - since);
                            self.converge_since.remove(0);
                        }
                    }
                }
                if !self.converge_since.is_empty() {
                    self.schedule(self.now_ms + 100, SimEvent::Check);
                }
            }
        }
    }

    fn finish(mut self, disruptions_end: Vec<u64>) -> RunReport {
        let scenario = self.scenario;
        let last_disruption = disruptions_end.last().copied().unwrap_or(0);
        let no_partition_at_end = !self.partition_active(scenario.duration_ms.saturating_sub(1));
        if no_partition_at_end && scenario.duration_ms >= last_disruption + CONVERGENCE_GRACE_MS {
            // Every receipt final at its owner more than CONVERGENCE_LAG_MS before the end must
            // be held by every honest node that is up (later ones may still be in flight).
            let cutoff = scenario.duration_ms.saturating_sub(CONVERGENCE_LAG_MS);
            for (namespace, log) in &self.finalized_log {
                let Some(target) = log.iter().filter(|(at, _)| *at <= cutoff).map(|(_, size)| *size).max()
                else {
                    continue;
                };
                let behind: Vec<usize> = (0..self.engines.len())
                    .filter(|&n| self.up[n] && self.behavior(n).is_none())
                    .filter(|&n| self.engines[n].finals().get(namespace).is_none_or(|r| r.tree_size < target))
                    .collect();
                if !behind.is_empty() {
                    self.violations.push(Violation {
                        invariant: "convergence".to_string(),
                        at_ms: scenario.duration_ms,
                        detail: format!(
                            "{namespace}: nodes {behind:?} lack the receipt at size {target}, final {} ms before the end and {} ms after the last heal",
                            CONVERGENCE_LAG_MS,
                            scenario.duration_ms - last_disruption
                        ),
                    });
                }
            }
        }
        self.mail_finish(last_disruption);
        let mut latencies = self.latencies.clone();
        latencies.sort_unstable();
        let percentile = |p: f64| -> Option<u64> {
            (!latencies.is_empty()).then(|| latencies[((latencies.len() - 1) as f64 * p).round() as usize])
        };
        // Stalled: the newest checkpoint anchored at least STALL_MS before the end is not final.
        let cutoff = scenario.duration_ms.saturating_sub(STALL_MS);
        let stalled: Vec<String> = self
            .anchors
            .iter()
            .filter(|(ns, anchors)| {
                let newest_old = anchors.iter().filter(|(at, _)| *at <= cutoff).map(|(_, size)| *size).max();
                newest_old.is_some_and(|size| {
                    let finalized =
                        self.finalized_log.get(*ns).and_then(|log| log.iter().map(|(_, s)| *s).max());
                    finalized.is_none_or(|f| f < size)
                })
            })
            .map(|(ns, _)| ns.clone())
            .collect();
        let time_to_detect = match (self.first_fork_ms, self.first_evidence_ms) {
            (Some(fork), Some(evidence)) if evidence >= fork => Some(evidence - fork),
            _ => None,
        };
        let per_receipt = |total: u64| (self.receipts > 0).then(|| total as f64 / self.receipts as f64);
        let summary = Summary {
            scenario: scenario.name.clone(),
            seed: self.seed,
            nodes: scenario.nodes,
            quorum: scenario.quorum,
            anchor_mode: scenario.anchor_mode.clone(),
            duration_ms: scenario.duration_ms,
            checkpoints_anchored: self.anchored,
            receipts_finalized: self.receipts,
            anchors_issued: self.targets.iter().map(LocalTarget::anchored).sum(),
            epochs_anchored: self.epochs_anchored.len() as u64,
            epochs_anchored_by_secondary: self
                .epochs_anchored
                .values()
                .filter(|r| r.is_some_and(|r| r > 0))
                .count() as u64,
            finality_ms_p50: percentile(0.50),
            finality_ms_p90: percentile(0.90),
            finality_ms_p99: percentile(0.99),
            stalled_namespaces: stalled,
            messages: self.messages,
            bytes: self.bytes,
            messages_per_receipt: per_receipt(self.messages),
            bytes_per_receipt: per_receipt(self.bytes),
            evidence_raised: self.evidence,
            equivocators_detected: self.detected.clone(),
            time_to_detect_equivocator_ms: time_to_detect,
            time_to_converge_after_heal_ms: self.converged_after.clone(),
            rejections: self.rejections.clone(),
            demoted_everywhere: self.demoted_everywhere(),
            registry_versions: self.engines.iter().map(|e| e.registry().version).collect(),
            xmsg_sent: self.mail.sent,
            xmsg_acked: self.mail.acked,
            xmsg_expired: self.mail.expired,
            xmsg_refused: self.mail.refused,
            violations: self.violations.clone(),
            events: self.events,
        };
        RunReport {
            summary,
            series: self.series,
            partitions: scenario.partitions.iter().map(|p| (p.from_ms, p.until_ms)).collect(),
        }
    }
}
