//! `scripts/bench mesh`: 100 real libp2p nodes in one process (memory transport, noise,
//! yamux, Kademlia, gossipsub, request-response), quorum 67, a checkpoint every 250 ms from
//! rotating owners; the time from commit to final receipt at the owner, side by side with its
//! baseline measured in the same run on a swarm of the same size: the raw round trip of the
//! protocol's messages with no validation work (one node publishes on gossipsub, every other
//! node answers it directly at once; the time until 66 answers are back, what quorum 67 needs).
//! Each swarm is measured once it has settled (connecting leaves Kademlia lookups queued), and
//! the cores its idle swarm keeps busy are printed beside the figures.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use remembrancer_core::engine::{Engine, EngineConfig, Input};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::MemoryNodeStore;
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument,
};
use remembrancer_core::signature::Operations;
use remembrancer_host::inprocess::{self, engine_operations, member_peer_ids, InProcessNode, Report};
use remembrancer_net::libp2p::{Multiaddr, PeerId};
use remembrancer_net::{Net, NetConfig, NetEvent, Verdict};
use tokio::sync::mpsc;

use crate::ed25519::Rates;

/// Nodes in the swarm.
const NODES: usize = 100;
/// Quorum: more than two thirds.
const QUORUM: usize = 67;
/// One checkpoint (or one raw ping) per this interval, from the next node in turn.
/// (`MESH_INTERVAL_MS` sets another, to find the rate two cores sustain.)
fn interval() -> Duration {
    Duration::from_millis(crate::knob("MESH_INTERVAL_MS", 250u64).max(1))
}
/// Measured checkpoints (and raw pings), after the warm-up: 100 s of them. The p99 of n
/// samples is the ceil(n/100)+1-th slowest: with 120 it was the third slowest, so one burst
/// that slowed three receipts in a row decided it; with 400, more than 1% must be slow.
/// (`MESH_SAMPLES` sets another count.)
fn sample_count() -> usize {
    crate::knob("MESH_SAMPLES", 400)
}
/// The target: p99 time to finality at most this, milliseconds.
const TARGET_P99_MS: f64 = 250.0;
/// How long each node lets bookkeeping (others' receipts, heartbeats) wait on average (each
/// wait drawn between half and one and a half of it) so that receipts arriving meanwhile are
/// verified in one batch (`InProcessNode::hold_bookkeeping`). (`MESH_HOLD_MS` sets another;
/// 0: none.)
fn hold() -> Duration {
    Duration::from_millis(crate::knob("MESH_HOLD_MS", 1000u64))
}
/// Checkpoints (and pings) not counted at the start: connections still opening.
const WARMUP: usize = 10;
/// How often nodes call `Net::discover`: it searches at every call below 32 connected peers,
/// then once a minute (100 nodes searching every few seconds keep two cores busy answering
/// each other's lookups).
const DISCOVERY: Duration = Duration::from_secs(2);
/// How long a sample may take before it counts as lost.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(30);
/// One window of the idle swarm's measurement before the first checkpoint.
const IDLE: Duration = Duration::from_secs(5);
/// The longest wait for the idle swarm to settle.
const SETTLE_MAX: Duration = Duration::from_secs(180);
/// Busy cores under which the idle swarm counts as settled. A settled swarm kept 0.13 to 0.34
/// cores busy; with "under one core" a run once started its checkpoints on a window of 0.98,
/// still draining the connection backlog, and its latencies measured that backlog too.
const SETTLED_CORES: f64 = 0.5;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted.get(sorted.len().saturating_sub(1) * p / 100).copied().unwrap_or(f64::NAN)
}

/// CPU time this process has used (user + system), in seconds.
fn cpu_seconds() -> f64 {
    crate::cpu_seconds(None)
}

/// The cores busy between `from` and `to` (seconds into the run), from CPU samples taken at
/// each commit: over the samples' span that covers the interval (at least one interval).
fn cores_between(samples: &[(f64, f64)], from: f64, to: f64) -> f64 {
    let first =
        samples.iter().rposition(|(at, _)| *at <= from).unwrap_or(0).min(samples.len().saturating_sub(2));
    let last = samples
        .iter()
        .position(|(at, _)| *at >= to)
        .unwrap_or(samples.len().saturating_sub(1))
        .max(first + 1);
    match (samples.get(first), samples.get(last)) {
        (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => (c1 - c0) / (t1 - t0),
        _ => f64::NAN,
    }
}

fn namespace(node: usize) -> String {
    format!("bench:node{node}")
}

/// The swarm's identities and a registry where every node owns one namespace.
fn federation(name: &str) -> (Vec<NodeIdentity>, Registry) {
    let identities: Vec<NodeIdentity> = (0..NODES)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            seed[8] = 0xb1;
            NodeIdentity::from_seed(&format!("did:vm:node:b{i}"), seed).expect("key")
        })
        .collect();
    let document = RegistryDocument {
        federation: FederationSection {
            name: name.to_string(),
            version: 1,
            quorum: QUORUM as u32,
            peers: identities
                .iter()
                .enumerate()
                .map(|(i, id)| PeerEntry::for_identity(id, vec![namespace(i)]))
                .collect(),
            anchor_propagation: AnchorPropagation::default(),
        },
    };
    (identities, Registry::from_document(&document).expect("registry"))
}

/// Starts one swarm per identity on the memory transport, each knowing the first's address.
fn start_nets(identities: &[NodeIdentity], registry: &Registry) -> Vec<Net> {
    let federation = registry.name.as_str();
    // Memory ports unique to this run.
    let base = now_ms() % 1_000_000_000 * 1000;
    let first_peer = member_peer_ids(registry)[identities[0].did()];
    let first: Multiaddr = format!("/memory/{base}/p2p/{first_peer}").parse().expect("multiaddr");
    identities
        .iter()
        .enumerate()
        .map(|(i, identity)| {
            let mut config = NetConfig::new(identity.secret_seed(), federation);
            config.listen = vec![format!("/memory/{}", base + i as u64).parse().expect("multiaddr")];
            if i > 0 {
                config.bootstrap = vec![first.clone()];
            }
            config.discovery_peers = 32;
            Net::start_memory(&config).expect("memory net")
        })
        .collect()
}

/// Waits until every node has a quarter of the swarm connected; the connections per node.
async fn await_connections(reports: &mut mpsc::Receiver<Report>) -> Vec<usize> {
    let started = Instant::now();
    match inprocess::await_connections(reports, NODES, NODES / 4, Duration::from_secs(120)).await {
        Ok(connected) => {
            eprintln!("  connected in {:.1} s", started.elapsed().as_secs_f64());
            connected
        }
        Err(connected) => panic!("discovery incomplete after 120 s: connections per node {connected:?}"),
    }
}

/// Waits for the idle swarm to settle: connecting leaves Kademlia work behind (lookups queued
/// while 100 nodes met), and measuring starts once a window of it keeps fewer than
/// `SETTLED_CORES` busy. The cores that last window kept busy (what connections, discovery and
/// heartbeats cost with no checkpoint) and the seconds it took; `connected` follows the
/// reports meanwhile.
async fn settle(reports: &mut mpsc::Receiver<Report>, connected: &mut [usize]) -> (f64, f64) {
    let started = Instant::now();
    loop {
        let (cpu_at, window) = (cpu_seconds(), Instant::now());
        while let Some(left) = IDLE.checked_sub(window.elapsed()) {
            if let Ok(Some(Report::Connected { node, peers })) =
                tokio::time::timeout(left, reports.recv()).await
            {
                connected[node] = peers;
            }
        }
        let cores = (cpu_seconds() - cpu_at) / window.elapsed().as_secs_f64();
        eprintln!("  idle swarm: {cores:.2} cores busy");
        if cores < SETTLED_CORES || started.elapsed() > SETTLE_MAX {
            return (cores, started.elapsed().as_secs_f64());
        }
    }
}

/// A raw node: answers every ping directly to the node that published it, and times its own
/// pings until `QUORUM - 1` answers are back.
async fn raw_node(
    index: usize,
    mut net: Net,
    mut pings: mpsc::Receiver<u64>,
    reports: mpsc::Sender<Report>,
    rtts: mpsc::Sender<(u64, Duration)>,
) {
    let me = net.peer_id().to_bytes();
    let mut current: Option<(u64, Instant, BTreeSet<PeerId>)> = None;
    let mut discovery = tokio::time::interval(DISCOVERY);
    loop {
        tokio::select! {
            event = net.next() => match event {
                NetEvent::Gossip { source, id, data } => {
                    net.report(&id, &source, Verdict::Accept);
                    if data.len() > 12 && data.starts_with(b"ping") {
                        if let Ok(origin) = PeerId::from_bytes(&data[12..]) {
                            let mut pong = b"pong".to_vec();
                            pong.extend_from_slice(&data[4..12]);
                            net.send(origin, pong);
                        }
                    }
                }
                NetEvent::Direct { peer, data } => {
                    if let Some((sequence, started, answers)) = &mut current {
                        if data.len() == 12 && data.starts_with(b"pong") && data[4..12] == sequence.to_be_bytes() {
                            answers.insert(peer);
                            if answers.len() == QUORUM - 1 {
                                let _ = rtts.try_send((*sequence, started.elapsed()));
                                current = None;
                            }
                        }
                    }
                }
                NetEvent::Connected(_) | NetEvent::Disconnected(_) => {
                    let _ = reports.try_send(Report::Connected { node: index, peers: net.connected().len() });
                }
                NetEvent::Listening(_) => {}
            },
            ping = pings.recv() => match ping {
                Some(sequence) => {
                    let mut data = b"ping".to_vec();
                    data.extend_from_slice(&sequence.to_be_bytes());
                    data.extend_from_slice(&me);
                    current = Some((sequence, Instant::now(), BTreeSet::new()));
                    let _ = net.publish(data);
                }
                None => break,
            },
            _ = discovery.tick() => net.discover(),
        }
    }
}

/// Raw round trips to 66 answers, milliseconds, sorted; and how many pings were lost.
async fn raw_round_trips() -> Raw {
    let (identities, registry) = federation("bench-mesh-raw");
    let nets = start_nets(&identities, &registry);
    let (reports_tx, mut reports) = mpsc::channel(NODES * 64);
    let (rtt_tx, mut rtts) = mpsc::channel(64);
    let mut pings = Vec::new();
    for (i, net) in nets.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(4);
        pings.push(tx);
        tokio::spawn(raw_node(i, net, rx, reports_tx.clone(), rtt_tx.clone()));
    }
    let mut connected = await_connections(&mut reports).await;
    let (idle_cores, settle_s) = settle(&mut reports, &mut connected).await;
    let mut samples = Vec::new();
    let mut lost = 0;
    for sequence in 0..(WARMUP + sample_count()) as u64 {
        let node = sequence as usize % NODES;
        pings[node].send(sequence).await.expect("raw node");
        let deadline = tokio::time::Instant::now() + SAMPLE_TIMEOUT;
        let answer = loop {
            match tokio::time::timeout_at(deadline, rtts.recv()).await {
                Ok(Some((s, rtt))) if s == sequence => break Some(rtt),
                Ok(Some(_)) => {}
                _ => break None,
            }
        };
        if sequence % 20 == 19 {
            eprintln!("  {} pings, {} lost", sequence + 1, lost);
        }
        match answer {
            Some(rtt) if sequence as usize >= WARMUP => samples.push(rtt.as_secs_f64() * 1e3),
            Some(_) => {}
            None => lost += usize::from(sequence as usize >= WARMUP),
        }
        // Keep the schedule: the next ping 250 ms after this one started.
        if let Some(rest) = interval().checked_sub(answer.unwrap_or(interval())) {
            tokio::time::sleep(rest).await;
        }
    }
    drop(pings);
    samples.sort_by(f64::total_cmp);
    Raw { samples, lost, idle_cores, settle_s }
}

/// What the raw run measured.
struct Raw {
    /// Round trips to 66 answers, milliseconds, sorted.
    samples: Vec<f64>,
    /// Pings without 66 answers within the sample timeout.
    lost: usize,
    /// Cores the settled idle swarm kept busy, and the seconds it took to settle.
    idle_cores: f64,
    settle_s: f64,
}

/// What the engine run measured.
struct Finality {
    /// Commit to final at the owner, milliseconds, sorted.
    latencies: Vec<f64>,
    /// The slowest receipts: milliseconds, the owner, the seconds into the measured run its
    /// commit was made, the cores this process kept busy meanwhile (two: the machine was
    /// saturated; fewer: the receipt waited on something else) and the cores the hypervisor
    /// took from the machine meanwhile (steal) (slowest first, at most three).
    slowest: Vec<(f64, usize, f64, f64, f64)>,
    /// Commits whose receipt was not final at the owner within the sample timeout.
    lost: usize,
    /// Receipts final on every node by the end (of the measured ones).
    final_everywhere: usize,
    /// Process CPU seconds per checkpoint over the run (all 100 nodes), and the share of the
    /// machine's two cores the run kept busy.
    cpu_per_checkpoint: f64,
    cpu_busy: f64,
    /// The cores the hypervisor took from this virtual machine over the run (steal).
    stolen: f64,
    /// The engines' Ed25519 operations over the run, and the checkpoints it issued.
    operations: Operations,
    checkpoints: u64,
    /// Cores the swarm kept busy before the first checkpoint (connections, discovery, heartbeats).
    idle_cores: f64,
    /// Seconds from connected to settled (the idle swarm under one busy core).
    settle_s: f64,
    /// Connected peers per node at the end.
    connected: Vec<usize>,
    /// Messages the engines refused, by reason (none expected: every node is honest).
    refused: std::collections::BTreeMap<String, u64>,
}

async fn finality() -> Finality {
    let (identities, registry) = federation("bench-mesh");
    assert_eq!(member_peer_ids(&registry).len(), NODES);
    let nets = start_nets(&identities, &registry);
    let (reports_tx, mut reports) = mpsc::channel(NODES * 256);
    let mut commands = Vec::new();
    for (i, (net, identity)) in nets.into_iter().zip(&identities).enumerate() {
        // The engine's default fanout: countersignatures to the owner and log2(N) + 1 others.
        let engine =
            Engine::new(identity.clone(), registry.clone(), EngineConfig::default(), MemoryNodeStore::new);
        let node = InProcessNode::new(i, net, engine, reports_tx.clone()).hold_bookkeeping(hold());
        let (tx, rx) = mpsc::channel(16);
        commands.push(tx);
        tokio::spawn(node.run(rx, DISCOVERY));
    }
    let mut connected = await_connections(&mut reports).await;
    let (idle_cores, settle_s) = settle(&mut reports, &mut connected).await;
    let mut latencies = Vec::new();
    let mut timeline: Vec<(f64, usize, f64)> = Vec::new();
    // The process's CPU seconds at each commit: (seconds into the run, CPU seconds).
    let mut cpu_at: Vec<(f64, f64)> = Vec::new();
    // The machine's stolen CPU seconds at each commit (a neighbour on the host, not this run).
    let mut steal_at: Vec<(f64, f64)> = Vec::new();
    let mut lost = 0;
    let (cpu_start, steal_start, wall_start) = (cpu_seconds(), crate::stolen_seconds(), Instant::now());
    let operations_start = engine_operations();
    let mut finals_per_checkpoint = std::collections::HashMap::<(String, u64), usize>::new();
    let mut measured = BTreeSet::new();
    let mut refused = std::collections::BTreeMap::<String, u64>::new();
    let mut owner_final = BTreeSet::new();
    let mut pending: Vec<(usize, u64, tokio::time::Instant, bool)> = Vec::new();
    let mut commits = vec![0u64; NODES];
    let mut next_commit = tokio::time::Instant::now();
    let mut sequence = 0usize;
    let total = WARMUP + sample_count();
    loop {
        if sequence < total && tokio::time::Instant::now() >= next_commit {
            let node = sequence % NODES;
            commits[node] += 1;
            let at = wall_start.elapsed().as_secs_f64();
            cpu_at.push((at, cpu_seconds()));
            steal_at.push((at, crate::stolen_seconds()));
            let record = format!("checkpoint {sequence}").into_bytes();
            commands[node]
                .send(Input::Commit { namespace: namespace(node), records: vec![record] })
                .await
                .expect("node");
            let counted = sequence >= WARMUP;
            if counted {
                measured.insert((namespace(node), commits[node]));
            }
            pending.push((node, commits[node], tokio::time::Instant::now() + SAMPLE_TIMEOUT, counted));
            sequence += 1;
            next_commit += interval();
            if sequence.is_multiple_of(20) {
                eprintln!("  {sequence} checkpoints, {} final at the owner, {lost} lost", latencies.len());
            }
        }
        // Expired commits count as lost.
        let now = tokio::time::Instant::now();
        pending.retain(|(node, size, deadline, counted)| {
            if owner_final.contains(&(*node, *size)) {
                return false;
            }
            if *deadline <= now {
                lost += usize::from(*counted);
                return false;
            }
            true
        });
        if sequence >= total && pending.is_empty() {
            break;
        }
        let wake = if sequence < total { next_commit } else { now + Duration::from_millis(50) };
        match tokio::time::timeout_at(wake, reports.recv()).await {
            Ok(Some(Report::Final { node, namespace: ns, size, latency_ms })) => {
                *finals_per_checkpoint.entry((ns.clone(), size)).or_default() += 1;
                if ns == namespace(node) {
                    owner_final.insert((node, size));
                    let counted = pending.iter().any(|(n, s, _, c)| *n == node && *s == size && *c);
                    if let (true, Some(ms)) = (counted, latency_ms) {
                        latencies.push(ms as f64);
                        let at = wall_start.elapsed().as_secs_f64() - ms as f64 / 1e3;
                        timeline.push((ms as f64, node, at));
                    }
                }
            }
            Ok(Some(Report::Refused { reason, .. })) => {
                *refused.entry(format!("{reason:?}")).or_default() += 1
            }
            Ok(Some(Report::Connected { node, peers })) => connected[node] = peers,
            Err(_) => {}
            Ok(None) => break,
        }
    }
    let cpu = cpu_seconds() - cpu_start;
    let stolen = crate::stolen_seconds() - steal_start;
    let wall = wall_start.elapsed().as_secs_f64();
    let operations = engine_operations().since(operations_start);
    // Give the last receipts a moment to reach every node.
    let settle = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(report)) = tokio::time::timeout_at(settle, reports.recv()).await {
        if let Report::Final { namespace: ns, size, .. } = report {
            *finals_per_checkpoint.entry((ns, size)).or_default() += 1;
        }
    }
    let final_everywhere =
        measured.iter().filter(|key| finals_per_checkpoint.get(*key).copied() == Some(NODES)).count();
    drop(commands);
    tokio::time::sleep(Duration::from_secs(1)).await;
    latencies.sort_by(f64::total_cmp);
    if let Ok(path) = std::env::var("MESH_TIMELINE") {
        write_timeline(&path, &timeline, &cpu_at, &steal_at);
    }
    timeline.sort_by(|a, b| b.0.total_cmp(&a.0));
    timeline.truncate(3);
    let end = wall_start.elapsed().as_secs_f64();
    cpu_at.push((end, cpu_seconds()));
    steal_at.push((end, crate::stolen_seconds()));
    let slowest = timeline
        .into_iter()
        .map(|(ms, node, at)| {
            let to = at + ms / 1e3;
            (ms, node, at, cores_between(&cpu_at, at, to), cores_between(&steal_at, at, to))
        })
        .collect();
    Finality {
        latencies,
        slowest,
        lost,
        final_everywhere,
        refused,
        cpu_per_checkpoint: cpu / sequence as f64,
        cpu_busy: cpu / wall,
        stolen: stolen / wall,
        operations,
        checkpoints: sequence as u64,
        idle_cores,
        settle_s,
        connected,
    }
}

/// Writes every measured receipt to `path` (`MESH_TIMELINE`), in commit order, one per line:
/// seconds into the run at its commit, milliseconds to final at the owner, the owner, and the
/// cores this process kept busy and the hypervisor took over the second before its commit and
/// while it was in flight: to see what a cluster of slow receipts followed.
fn write_timeline(
    path: &str,
    timeline: &[(f64, usize, f64)],
    cpu_at: &[(f64, f64)],
    steal_at: &[(f64, f64)],
) {
    let mut sorted = timeline.to_vec();
    sorted.sort_by(|a, b| a.2.total_cmp(&b.2));
    let mut text = String::from(
        "committed_at_s\tms\towner\tcores_busy_second_before\tcores_busy_meanwhile\tcores_stolen_meanwhile\n",
    );
    for (ms, node, at) in sorted {
        let to = at + ms / 1e3;
        text.push_str(&format!(
            "{at:.3}\t{ms:.0}\t{node}\t{:.2}\t{:.2}\t{:.2}\n",
            cores_between(cpu_at, (at - 1.0).max(0.0), at),
            cores_between(cpu_at, at, to),
            cores_between(steal_at, at, to)
        ));
    }
    match std::fs::write(path, text) {
        Ok(()) => eprintln!("  timeline of {} receipts written to {path}", timeline.len()),
        Err(error) => eprintln!("  cannot write the timeline to {path}: {error}"),
    }
}

/// Runs the 100-node benchmark and prints its figures.
pub fn run(json: bool) {
    eprintln!("measuring this machine's Ed25519 speed (one core; batches of {QUORUM}) ...");
    let rates = Rates::measure(QUORUM);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    eprintln!("measuring the raw round trip: {NODES} libp2p nodes in this process, publish and {} direct answers ...", QUORUM - 1);
    let Raw { samples: raw, lost: raw_lost, idle_cores: raw_idle, settle_s: raw_settle } =
        runtime.block_on(raw_round_trips());
    eprintln!(
        "measuring commit-to-final: {NODES} nodes, quorum {QUORUM}, a checkpoint every {} ms ...",
        interval().as_millis()
    );
    let result = runtime.block_on(finality());
    let (r50, r99) = (percentile(&raw, 50), percentile(&raw, 99));
    let (f50, f99) = (percentile(&result.latencies, 50), percentile(&result.latencies, 99));
    // The crypto floor: the Ed25519 work the engines really did per checkpoint, at this
    // machine's speed. No implementation of the protocol does less on these cores.
    let checkpoints = result.checkpoints.max(1);
    let per_checkpoint = |n: u64| n as f64 / checkpoints as f64;
    let floor_s = rates.seconds(result.operations) / checkpoints as f64;
    let mean_batch = result.operations.batched as f64 / result.operations.batches.max(1) as f64;
    let over = |samples: &[f64]| samples.iter().filter(|ms| **ms > TARGET_P99_MS).count();
    if json {
        let value = serde_json::json!({
            "nodes": NODES, "quorum": QUORUM, "interval_ms": interval().as_millis() as u64,
            "hold_ms": hold().as_millis() as u64,
            "raw_round_trip_ms": {"p50": r50, "p99": r99, "samples": raw.len(), "lost": raw_lost},
            "finality_ms": {"p50": f50, "p99": f99, "samples": result.latencies.len(), "lost": result.lost},
            "final_on_every_node": result.final_everywhere,
            "slowest": result.slowest.iter().map(|(ms, node, at, cores, stolen)| serde_json::json!({"ms": ms, "owner": node, "committed_at_s": at, "cores_busy_meanwhile": cores, "cores_stolen_meanwhile": stolen})).collect::<Vec<_>>(),
            "refused": result.refused,
            "cpu_s_per_checkpoint": result.cpu_per_checkpoint,
            "cores_busy": result.cpu_busy,
            "cores_stolen": result.stolen,
            "idle_cores_busy": result.idle_cores,
            "settle_s": result.settle_s,
            "raw_idle_cores_busy": raw_idle,
            "raw_settle_s": raw_settle,
            "connected_peers_per_node": result.connected,
            "checkpoints_per_s_two_cores_allow": 2.0 / result.cpu_per_checkpoint,
            "crypto_per_checkpoint": {
                "signatures": per_checkpoint(result.operations.signatures),
                "verifications": per_checkpoint(result.operations.verifications),
                "batched": per_checkpoint(result.operations.batched),
                "mean_batch": mean_batch,
                "cpu_s": floor_s,
            },
            "ed25519_per_core": {"sign": rates.sign, "verify": rates.verify, "batch_verify": rates.batch_verify},
            "checkpoints_per_s_crypto_allows": 2.0 / floor_s,
            "finality_to_raw_p50": f50 / r50, "finality_to_raw_p99": f99 / r99,
            "over_target": {"ours": over(&result.latencies), "raw": over(&raw)},
            "target": {"p99_ms": TARGET_P99_MS},
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    println!(
        "{NODES} libp2p nodes in one process (memory transport), quorum {QUORUM}, a checkpoint every {} ms; others' receipts wait {} ms on average to be verified together:",
        interval().as_millis(),
        hold().as_millis()
    );
    println!(
        "  baseline: raw publish + {} direct answers     p50 {r50:>7.1} ms  p99 {r99:>7.1} ms  ({} samples, {raw_lost} lost)",
        QUORUM - 1,
        raw.len()
    );
    println!(
        "  ours: commit to final at the owner            p50 {f50:>7.1} ms  p99 {f99:>7.1} ms  ({:.2}x / {:.2}x raw; {} receipts, {} lost, {} final on all {NODES})",
        f50 / r50,
        f99 / r99,
        result.latencies.len(),
        result.lost,
        result.final_everywhere
    );
    println!(
        "  limit: CPU per checkpoint (all {NODES} nodes)      {:>7.3} s: two cores carry {:.1} checkpoints/s (the run kept {:.2} cores busy; the hypervisor took {:.2})",
        result.cpu_per_checkpoint,
        2.0 / result.cpu_per_checkpoint,
        result.cpu_busy,
        result.stolen
    );
    println!(
        "  floor: Ed25519 per checkpoint {:.0} signs, {:.0} verifies ({:.0} in batches of {mean_batch:.0} on average) = {floor_s:.3} s: two cores carry {:.1} checkpoints/s; ours is {:.2}x the floor",
        per_checkpoint(result.operations.signatures),
        per_checkpoint(result.operations.verifications),
        per_checkpoint(result.operations.batched),
        2.0 / floor_s,
        result.cpu_per_checkpoint / floor_s
    );
    let slowest: Vec<String> = result
        .slowest
        .iter()
        .map(|(ms, node, at, cores, stolen)| {
            format!("{ms:.0} ms (node {node}, at {at:.1} s, {cores:.1} cores busy, {stolen:.2} stolen)")
        })
        .collect();
    println!(
        "  slowest receipts: {}; over {TARGET_P99_MS:.0} ms: {} of {} (raw pings: {} of {})",
        slowest.join(", "),
        over(&result.latencies),
        result.latencies.len(),
        over(&raw),
        raw.len()
    );
    let mut connected = result.connected.clone();
    connected.sort_unstable();
    println!(
        "  idle swarm, settled (no checkpoint)            {:>7.2} cores busy (raw's {raw_idle:.2}), after {:.0} s (raw's {raw_settle:.0} s); peers per node min {} median {} max {}",
        result.idle_cores,
        result.settle_s,
        connected.first().copied().unwrap_or(0),
        connected.get(NODES / 2).copied().unwrap_or(0),
        connected.last().copied().unwrap_or(0)
    );
    if !result.refused.is_empty() {
        println!("  refused by the engines: {:?}", result.refused);
    }
    let verdict = if f99 <= TARGET_P99_MS && result.lost == 0 { "meets" } else { "BELOW" };
    println!("target p99 <= {TARGET_P99_MS:.0} ms: {verdict}");
}

#[cfg(test)]
mod tests {
    use super::cores_between;

    #[test]
    fn cores_between_spans_the_samples_around_the_interval() {
        // One core busy for the first quarter second, two for the next.
        let samples = [(0.0, 0.0), (0.25, 0.25), (0.5, 0.75)];
        assert_eq!(cores_between(&samples, 0.0, 0.25), 1.0);
        assert_eq!(cores_between(&samples, 0.3, 0.4), 2.0);
        assert_eq!(cores_between(&samples, 0.1, 0.3), 1.5);
        // An interval past the last sample takes the last span.
        assert_eq!(cores_between(&samples, 0.6, 0.9), 2.0);
    }
}
