//! The in-process node: an engine on a [`Host`] with nothing persisted, which the 50-node
//! mesh test and the 100-node finality benchmark run by the dozen in one process (real
//! libp2p, usually on the memory transport). It is the node process's loop without RocksDB
//! and the HTTP API: its calls are engine inputs (commits, say), and it reports connections,
//! final receipts and refusals to its harness.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use remembrancer_core::engine::{Engine, Event, Input, Persist, Rejection};
use remembrancer_core::merkle::MemoryNodeStore;
use remembrancer_core::registry::Registry;
use remembrancer_core::signature::{Operations, Verifier};
use remembrancer_net::libp2p::PeerId;
use remembrancer_net::{peer_id_of, Net};
use tokio::sync::mpsc;

use crate::{Control, Embedder, Host, HostConfig};

/// Commands a node's queue holds, at most (a full queue refuses the command).
pub const COMMANDS_MAX: usize = 1024;
/// Verdicts each node's verifier remembers (its own: nodes that share a thread do not share
/// verdicts). A node checks about 80 signatures per checkpoint of a 100-node federation.
const VERDICTS_KEPT: usize = 4096;

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

/// One engine on a host, with nothing stored, reporting to a harness.
pub struct InProcessNode {
    index: usize,
    host: Host<MemoryNodeStore>,
    reports: mpsc::Sender<Report>,
}

/// The in-process node's side of its host: commands in, reports out.
struct Harnessed {
    index: usize,
    commands: mpsc::Receiver<Input>,
    reports: mpsc::Sender<Report>,
    /// Reports the harness was too slow to take.
    dropped_reports: u64,
    /// The engine's operations already added to the process's count.
    counted: Operations,
}

impl Harnessed {
    fn report(&mut self, report: Report) {
        if self.reports.try_send(report).is_err() {
            self.dropped_reports += 1;
        }
    }
}

impl InProcessNode {
    /// A node numbered `index` in its harness; reports go to `reports` (when it is full,
    /// they are dropped and counted, never awaited: the node does not stall on its harness).
    /// Its engine gets a verifier of its own.
    pub fn new(
        index: usize,
        net: Net,
        engine: Engine<MemoryNodeStore>,
        reports: mpsc::Sender<Report>,
    ) -> Self {
        let engine = engine.with_verifier(Verifier::new(VERDICTS_KEPT));
        InProcessNode { index, host: Host::new(engine, net, HostConfig::default()), reports }
    }

    /// Lets bookkeeping ([`Engine::is_on_receipt_path`]: others' receipts, heartbeats,
    /// countersignatures that decide no receipt of this node) wait, then handles it together:
    /// the cosignatures of the receipts that waited together are verified in one batch, where
    /// the witnesses' keys they share count once (one core here verifies 268 cosignatures
    /// under 100 keys at 15-17 µs each, 67 under 67 keys at 27-35 µs). Anchors, and
    /// countersignatures of this node's own anchors still short of their quorum, never wait:
    /// receipts become final at their owners as fast as before, and at the other members up
    /// to 1.5 `wait` later.
    ///
    /// Each wait is drawn between half and one and a half `wait` (`wait` on average). A
    /// receipt reaches every member at about the same moment and starts their waits together:
    /// equal waits ended together too, and the members' batches, verified at once, held the
    /// cores from the anchors and countersignatures of the receipts then in progress (in the
    /// 100-node benchmark 11 of 400 receipts took over 250 ms, spread over the run; with
    /// drawn waits 0, 21, 0, 0 and 0 in five runs, the 21 within 3 s of each other).
    pub fn hold_bookkeeping(mut self, wait: Duration) -> Self {
        self.host.config.defer = wait;
        self.host.config.defer_drawn = true;
        self
    }

    /// Runs the node until its command queue closes: network events, due timers, commands
    /// (engine inputs such as commits) and `discovery`'s turns.
    pub async fn run(mut self, commands: mpsc::Receiver<Input>, discovery: Duration) {
        self.host.config.discovery_tick = discovery;
        let mut harnessed = Harnessed {
            index: self.index,
            commands,
            reports: self.reports,
            dropped_reports: 0,
            counted: Operations::default(),
        };
        let result = match self.host.input(&mut harnessed, Input::Start) {
            Ok(_) => self.host.run(&mut harnessed).await,
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::error!(node = self.index, %error, "in-process node stopped");
        }
        if harnessed.dropped_reports > 0 {
            tracing::warn!(
                node = self.index,
                dropped = harnessed.dropped_reports,
                "reports dropped: the harness fell behind"
            );
        }
    }
}

impl Embedder<MemoryNodeStore> for Harnessed {
    type Call = Input;

    fn next_call(&mut self) -> impl Future<Output = Option<Input>> + Send {
        self.commands.recv()
    }

    fn on_call(&mut self, host: &mut Host<MemoryNodeStore>, call: Input) -> anyhow::Result<Control> {
        host.input(self, call)?;
        Ok(Control::Continue)
    }

    /// Nothing is stored: the trees live in memory, and a restart is not part of a run.
    fn persist(&mut self, _batch: &[Persist], _synced: bool) -> anyhow::Result<()> {
        Ok(())
    }

    fn on_event(&mut self, _engine: &Engine<MemoryNodeStore>, event: &Event) {
        match event {
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
            _ => {}
        }
    }

    fn on_connection(
        &mut self,
        host: &mut Host<MemoryNodeStore>,
        _peer: PeerId,
        _member: Option<&str>,
        _connected: bool,
    ) -> anyhow::Result<()> {
        let report = Report::Connected { node: self.index, peers: host.net().connected().len() };
        self.report(report);
        Ok(())
    }

    /// The engine's work of this turn joins the process's count.
    fn before_write(&mut self, host: &mut Host<MemoryNodeStore>) -> anyhow::Result<()> {
        let now = host.engine().operations();
        count_operations(now.since(self.counted));
        self.counted = now;
        Ok(())
    }

    fn on_stop(&mut self, host: &mut Host<MemoryNodeStore>) -> anyhow::Result<()> {
        self.before_write(host)
    }
}
