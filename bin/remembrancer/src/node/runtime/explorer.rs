//! The node's side of the public explorer: its listener started, and the snapshot the loop
//! publishes (built from the engine, the registry and the node's counters), from which the
//! metrics' gauges are set too: within [`SNAPSHOT_INTERVAL`] of any engine event, and every
//! [`SNAPSHOT_AGE_MAX`] anyway (ages move on while nothing happens).

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::watch;

use super::*;
use crate::node::config::{AnchorTargetKind, ExplorerSection};
use crate::node::explorer::snapshot::{
    AuditView, CheckpointView, EvidenceView, MemberView, NamespaceView, NodeView, Overview, Snapshot,
    StateChange, WitnessRow, WitnessesView, AUDIT_SHOWN, CHECKPOINTS_SHOWN, EVIDENCE_SHOWN,
};
use crate::node::explorer::{self as public, Explorer, Metrics, ProofCall};

/// How often the node looks whether a snapshot is due: the longest an event waits for the
/// explorer (a snapshot costs about a millisecond; ten a second at most).
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(100);
/// A snapshot is published at least this often.
pub const SNAPSHOT_AGE_MAX: Duration = Duration::from_secs(1);

/// Where the node's snapshots and metrics go.
pub struct Feed {
    sender: watch::Sender<Arc<Snapshot>>,
    /// An engine event came since the last snapshot.
    pub dirty: bool,
    /// When the last snapshot was published.
    last: Option<std::time::Instant>,
    /// The recent final receipts, newest last (at most `CHECKPOINTS_SHOWN`).
    recent: VecDeque<Arc<remembrancer_core::receipt::FederationReceipt>>,
    /// Snapshots published so far.
    published: u64,
    /// When each piece of evidence came, since start (at most `EVIDENCE_TIMED`).
    evidence_at: VecDeque<u64>,
    /// Commit-to-final times of this node's own receipts, per namespace (the last
    /// `LATENCIES_PER_NAMESPACE` of at most `NAMESPACES_TIMED` namespaces).
    latencies: BTreeMap<String, VecDeque<f64>>,
    /// The metrics `/metrics` shows.
    pub metrics: Arc<Metrics>,
}

/// Starts the explorer when `[explorer] public_listen` names an address (with libp2p's metrics
/// recorded by `net` from now on): its feed and the address it listens on.
pub async fn start(
    config: &ExplorerSection,
    net: &mut Net,
    proofs: mpsc::Sender<ProofCall>,
) -> anyhow::Result<Option<(Feed, std::net::SocketAddr)>> {
    if config.public_listen.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(&config.public_listen).await.with_context(|| {
        format!(
            "cannot listen on {} for the explorer (is the port in use? [explorer] public_listen, or REMEMBRANCER_PUBLIC_LISTEN, sets it; empty turns it off)",
            config.public_listen
        )
    })?;
    let address = listener.local_addr()?;
    let (sender, snapshot) = watch::channel(Arc::new(Snapshot::default()));
    let mut registry = prometheus_client::registry::Registry::default();
    net.enable_metrics(&mut registry);
    let metrics = Arc::new(Metrics::new(registry));
    let explorer = Arc::new(Explorer::new(snapshot, Arc::clone(&metrics), config.private, proofs));
    tokio::spawn(public::serve(listener, explorer));
    tracing::info!(%address, private = config.private, "explorer listening");
    Ok(Some((
        Feed {
            sender,
            dirty: true,
            last: None,
            recent: VecDeque::new(),
            published: 0,
            latencies: BTreeMap::new(),
            evidence_at: VecDeque::new(),
            metrics,
        },
        address,
    )))
}

/// Times of evidence kept (the evidence itself is bounded by the engine).
const EVIDENCE_TIMED: usize = 4096;
/// A day, in ms.
const DAY_MS: u64 = 24 * 3600 * 1000;

/// Own receipts' times kept per namespace, and namespaces timed, at most.
const LATENCIES_PER_NAMESPACE: usize = 256;
const NAMESPACES_TIMED: usize = 64;

impl Feed {
    /// One of this node's own receipts of `namespace` took `millis` from commit to final.
    pub fn timed(&mut self, namespace: &str, millis: f64) {
        if self.latencies.len() >= NAMESPACES_TIMED && !self.latencies.contains_key(namespace) {
            return;
        }
        let kept = self.latencies.entry(namespace.to_string()).or_default();
        if kept.len() >= LATENCIES_PER_NAMESPACE {
            kept.pop_front();
        }
        kept.push_back(millis);
    }

    /// A piece of evidence came now.
    pub fn evidence_came(&mut self) {
        if self.evidence_at.len() >= EVIDENCE_TIMED {
            self.evidence_at.pop_front();
        }
        self.evidence_at.push_back(remembrancer_host::now_ms());
    }

    /// A receipt became final: kept for the witnesses' grid.
    pub fn finalized(&mut self, receipt: &remembrancer_core::receipt::FederationReceipt) {
        if self.recent.len() >= CHECKPOINTS_SHOWN {
            self.recent.pop_front();
        }
        self.recent.push_back(Arc::new(receipt.clone()));
    }
}

/// `did`'s changes of state along the registry's update chain (the versions this node keeps).
fn history(engine: &Engine<PrunedNodeStore>, did: &str) -> Vec<StateChange> {
    use remembrancer_core::governance::ProposalReason;
    let mut changes = Vec::new();
    for update in engine.registry_chain() {
        let base = update.proposal.base_version;
        let (Some(before), Some(after)) = (engine.registry_at(base), engine.registry_at(base + 1)) else {
            continue;
        };
        let from = before.member(did).map(|m| m.status.name().to_string());
        let to = after.member(did).map(|m| m.status.name().to_string());
        if from == to {
            continue;
        }
        let reason = match &update.proposal.reason {
            ProposalReason::Manual { memo } if memo.is_empty() => "an operator's change".to_string(),
            ProposalReason::Manual { memo } => {
                format!("an operator's change: {}", memo.chars().take(200).collect::<String>())
            }
            ProposalReason::Equivocation { .. } => "equivocation: two checkpoints of one size".to_string(),
            ProposalReason::UnelectedClaim { .. } => "an epoch anchor claimed out of turn".to_string(),
            ProposalReason::Misbehavior { .. } => {
                "misbehavior: its score crossed the probation threshold".to_string()
            }
            ProposalReason::Join { .. } => "joined".to_string(),
            ProposalReason::Reinstatement { .. } => "reinstated after behaving".to_string(),
        };
        changes.push(StateChange { version: base + 1, from, to, reason });
    }
    changes
}

/// The witnesses' grid of `recent` receipts (newest first) for `registry`'s members.
fn witnesses(
    registry: &Registry,
    recent: &VecDeque<Arc<remembrancer_core::receipt::FederationReceipt>>,
    latencies: &VecDeque<f64>,
) -> WitnessesView {
    let receipts: Vec<_> = recent.iter().rev().collect();
    let checkpoints = receipts
        .iter()
        .map(|r| CheckpointView {
            namespace: r.namespace.clone(),
            size: r.tree_size,
            finalized_at: r.finalized_at,
        })
        .collect();
    let rows = registry
        .members
        .values()
        .map(|member| {
            let mut row = WitnessRow {
                did: member.did.clone(),
                status: member.status.name().to_string(),
                ..Default::default()
            };
            for receipt in &receipts {
                let signed = receipt.signatures.iter().find(|s| s.node == member.did);
                let cell = match signed {
                    Some(s) if s.role == remembrancer_core::receipt::Role::Anchor => "owner",
                    Some(s) if receipt.finalized_at.is_some_and(|at| s.timestamp > at) => "late",
                    Some(_) => "cosigned",
                    None => "absent",
                };
                match cell {
                    "cosigned" | "late" => row.hits += 1,
                    "absent" => row.absent += 1,
                    _ => {}
                }
                row.cells.push(cell.to_string());
            }
            row
        })
        .collect();
    // Buckets of powers of two ms, 1 ms to 8 s, then everything slower.
    let mut finality_histogram: Vec<(u64, u64)> = (0..14).map(|i| (1u64 << i, 0)).collect();
    for latency in latencies {
        let bucket = finality_histogram.iter().position(|(upper, _)| *latency <= *upper as f64);
        let at = bucket.unwrap_or(finality_histogram.len() - 1);
        finality_histogram[at].1 += 1;
    }
    WitnessesView { checkpoints, rows, finality_histogram }
}

impl Node {
    /// A record's proof bundle for the explorer: under the newest final receipt of a namespace
    /// this node owns.
    pub(super) fn answer_proof(&self, host: &NodeHost, call: ProofCall) {
        let pinned = match call.size {
            None => Ok(host.engine().finals().get(&call.namespace).cloned()),
            Some(size) => {
                self.store.receipt(&call.namespace, size).map(|r| r.map(Arc::new)).map_err(|e| e.to_string())
            }
        };
        let answer = match pinned {
            Err(error) => Err((500, format!("the receipts could not be read: {error}"))),
            Ok(None) => Err((
                404,
                match call.size {
                    Some(size) => format!("no final receipt of {} at size {size} here", call.namespace),
                    None => format!("no final receipt of {} here yet", call.namespace),
                },
            )),
            Ok(Some(receipt)) => {
                self.bundle_at(host, &call.namespace, call.index, &receipt).map_err(|response| {
                    let why = response.body["error"]["message"].as_str().unwrap_or("no proof").to_string();
                    (response.status, why)
                })
            }
        };
        let _ = call.reply.send(answer);
    }

    /// Publishes a new snapshot (and sets the metrics from it), when the explorer runs.
    pub(super) fn publish_snapshot(&mut self, host: &NodeHost) {
        let due = self
            .explorer
            .as_ref()
            .is_some_and(|feed| feed.dirty || feed.last.is_none_or(|at| at.elapsed() >= SNAPSHOT_AGE_MAX));
        if !due {
            return;
        }
        let mut snapshot = self.snapshot(host);
        let Some(feed) = &mut self.explorer else { return };
        feed.dirty = false;
        feed.last = Some(std::time::Instant::now());
        feed.published += 1;
        snapshot.sequence = feed.published;
        let mut writes: Vec<f64> = host.counters().synced_write_ms.iter().copied().collect();
        writes.sort_by(f64::total_cmp);
        let at = |p: usize| writes.get(writes.len().saturating_sub(1) * p / 100).copied();
        let anchors = self.anchoring.as_ref().map(|anchoring| {
            let s = anchoring.summary();
            let target = match self.config.anchor.anchor_target {
                AnchorTargetKind::Eip155 => "eip155",
                AnchorTargetKind::Rfc3161 => "rfc3161",
                AnchorTargetKind::Local => "local",
            };
            let states = [
                ("pending", s.pending),
                ("submitted", s.submitted),
                ("included", s.included),
                ("final", s.r#final),
                ("failed", s.failed),
            ];
            (target, states)
        });
        let mut refusals = BTreeMap::new();
        for score in host.engine().scores().values() {
            for (reason, count) in &score.rejected {
                let reason = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                *refusals.entry(reason).or_default() += count;
            }
        }
        let figures = public::metrics::Figures {
            finalized: self.counters.finalized,
            refused: self.messaging.refused,
            validated: &host.counters().validated,
            synced_write_ms: (at(50), at(99)),
            anchors,
            refusals,
            frames_refused: host.net().frames_refused(),
            score_disconnects: host.net().score_disconnects(),
        };
        feed.metrics.update(&snapshot, &figures);
        feed.sender.send_replace(Arc::new(snapshot));
    }

    fn snapshot(&self, host: &NodeHost) -> Snapshot {
        let engine = host.engine();
        let registry = engine.registry();
        let connected = host.net().connected();
        let now_ms = remembrancer_host::now_ms();
        let members: Vec<MemberView> = registry
            .members
            .values()
            .map(|member| {
                let peer = host.peer_of(&member.did);
                let score = engine.scores().get(&member.did);
                MemberView {
                    did: member.did.clone(),
                    peer_id: peer.map(|p| p.to_string()),
                    key: BASE64.encode(member.key.as_bytes()),
                    status: member.status.name().to_string(),
                    namespaces: member.namespaces.clone(),
                    connected: peer.is_some_and(|p| connected.contains(&p)),
                    is_self: member.did == self.identity.did(),
                    accepted: score.map_or(0, |s| s.accepted),
                    honesty_refusals: score.map_or(0, |s| s.honesty_rejections()),
                    reliability: score.and_then(|s| s.reliability()),
                    last_seen_ms: score.and_then(|s| s.last_seen_ms),
                    history: history(engine, &member.did),
                }
            })
            .collect();
        let owner = |namespace: &str| {
            registry
                .members
                .values()
                .find(|m| m.namespaces.iter().any(|n| n == namespace))
                .map(|m| m.did.clone())
        };
        let owned: BTreeMap<&str, u64> =
            engine.owned_namespaces().map(|(namespace, tree, _)| (namespace, tree.size())).collect();
        let timed = |namespace: &str, p: usize| {
            let kept = self.explorer.as_ref().and_then(|feed| feed.latencies.get(namespace))?;
            let mut sorted: Vec<f64> = kept.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            sorted.get(sorted.len().saturating_sub(1) * p / 100).copied()
        };
        let names: BTreeSet<&str> =
            engine.finals().keys().map(String::as_str).chain(owned.keys().copied()).collect();
        let namespaces: Vec<NamespaceView> = names
            .into_iter()
            .map(|namespace| {
                let receipt = engine.finals().get(namespace);
                let final_size = receipt.map_or(0, |r| r.tree_size);
                let latest_size = owned.get(namespace).copied();
                NamespaceView {
                    namespace: namespace.to_string(),
                    owner: owner(namespace),
                    latest_size,
                    final_size,
                    final_root: receipt.map(|r| r.anchor.batch_root.to_string()),
                    finalized_at: receipt.and_then(|r| r.finalized_at),
                    signers: receipt
                        .map(|r| r.signatures.iter().map(|s| s.node.clone()).collect())
                        .unwrap_or_default(),
                    registry_version: receipt.map(|r| r.registry_version),
                    pending: latest_size.map(|size| size > final_size),
                    anchor: receipt.map(|r| match (&r.anchor.tx_hash, r.anchor.block) {
                        (Some(tx), Some(block)) => {
                            format!("{} (transaction {tx} in block {block})", r.anchor.target)
                        }
                        (Some(tx), None) => format!("{} ({tx})", r.anchor.target),
                        _ => r.anchor.target.clone(),
                    }),
                    finality_ms_p50: timed(namespace, 50),
                    finality_ms_p95: timed(namespace, 95),
                    note: receipt.and_then(|r| {
                        let registry = engine.registry_at(r.registry_version).unwrap_or(registry);
                        r.to_note(registry).ok().map(|note| note.to_text())
                    }),
                }
            })
            .collect();
        let mut evidence: Vec<EvidenceView> = engine
            .evidence()
            .iter()
            .map(|e| EvidenceView {
                id: remembrancer_core::evidence::evidence_id(e),
                file: serde_json::to_value(remembrancer_core::evidence::EvidenceFile::from(e))
                    .unwrap_or_default(),
                kind: "equivocation".to_string(),
                signer: e.signer.clone(),
                namespace: Some(e.namespace.clone()),
                size: Some(e.size),
                epoch: None,
                statements: vec![e.first.clone(), e.second.clone()],
            })
            .chain(engine.claim_evidence().iter().map(|e| {
                EvidenceView {
                    id: remembrancer_core::claims::claim_evidence_id(&e.message),
                    file: serde_json::to_value(remembrancer_core::claims::ClaimEvidenceFile::from(e))
                        .unwrap_or_default(),
                    kind: "claim".to_string(),
                    signer: e.signer.clone(),
                    namespace: None,
                    size: None,
                    epoch: Some(e.epoch),
                    statements: Vec::new(),
                }
            }))
            .collect();
        evidence.reverse();
        evidence.truncate(EVIDENCE_SHOWN);
        let mut members_by_state = BTreeMap::new();
        for member in &members {
            *members_by_state.entry(member.status.clone()).or_insert(0) += 1;
        }
        let newest = engine.finals().values().filter_map(|r| r.finalized_at).max();
        let mut latencies: Vec<f64> = self.counters.latencies.iter().copied().collect();
        latencies.sort_by(f64::total_cmp);
        let at = |p: usize| latencies.get(latencies.len().saturating_sub(1) * p / 100).copied();
        let overview = Overview {
            federation: registry.name.clone(),
            registry_version: registry.version,
            quorum: registry.quorum,
            members: members.len(),
            members_by_state,
            namespaces: namespaces.len(),
            namespaces_pending: namespaces.iter().filter(|n| n.pending == Some(true)).count(),
            newest_final_age_ms: newest.map(|at_s| now_ms.saturating_sub(at_s * 1000)),
            evidence_equivocations: engine.evidence().len(),
            evidence_claims: engine.claim_evidence().len(),
            evidence_last_day: self.explorer.as_ref().map_or(0, |feed| {
                feed.evidence_at.iter().filter(|at| now_ms.saturating_sub(**at) < DAY_MS).count()
            }),
            anchoring: match self.config.anchor.anchor_target {
                AnchorTargetKind::Local => "local".to_string(),
                AnchorTargetKind::Eip155 => format!("eip155:{}", self.config.anchor.chain_id),
                AnchorTargetKind::Rfc3161 => "rfc3161".to_string(),
            },
            node: NodeView {
                did: self.identity.did().to_string(),
                peer_id: host.net().peer_id().to_string(),
                connected_members: connected.iter().filter(|peer| host.did_of(peer).is_some()).count(),
                finality_ms_p50: at(50),
                finality_ms_p99: at(99),
            },
        };
        let witnesses = witnesses(
            registry,
            self.explorer.as_ref().map(|feed| &feed.recent).unwrap_or(&VecDeque::new()),
            &self.counters.latencies,
        );
        let audit = engine
            .audit()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .take(AUDIT_SHOWN)
            .map(|entry| AuditView {
                at_ms: entry.at_ms,
                peer: entry.peer.clone(),
                what: format!("{:?}", entry.what),
                detail: entry.detail.clone(),
            })
            .collect();
        Snapshot {
            sequence: 0,
            generated_at_ms: now_ms,
            overview,
            members,
            namespaces,
            evidence,
            witnesses,
            audit,
        }
    }
}
