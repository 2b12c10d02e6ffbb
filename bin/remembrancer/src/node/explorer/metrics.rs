//! `GET /metrics`: the node's metrics in the OpenMetrics text format (prometheus-client):
//! libp2p's own under `libp2p_` (swarm, gossipsub, Kademlia, identify, ping: `libp2p-metrics`,
//! registered by the network) and ours under `remembrancer_`. Cardinality is bounded: labels are states, kinds, routes and at
//! most [`NAMESPACES_SHOWN`] namespaces, never PeerIds, hashes or error text. The node's loop
//! sets the gauges from each snapshot and observes finality as receipts come; the explorer's
//! server counts its own requests.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::snapshot::Snapshot;

/// Namespaces with series of their own, at most (the first by name; the rest are counted in
/// `remembrancer_namespaces_not_shown`).
pub const NAMESPACES_SHOWN: usize = 64;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SizeLabels {
    namespace: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ValidatedLabels {
    kind: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnchorLabels {
    target: String,
    state: String,
}

/// What the node counts besides its snapshot, for the metrics.
pub struct Figures<'a> {
    /// Receipts seen final since start.
    pub finalized: u64,
    /// Cross-namespace deliveries and answers refused since start.
    pub refused: u64,
    /// Messages judged by kind (the order of `MessageType::ALL`) and verdict.
    pub validated: &'a [[u64; 3]; 12],
    /// The last synced writes' p50 and p99, ms.
    pub synced_write_ms: (Option<f64>, Option<f64>),
    /// The anchoring target's kind (`eip155`, `rfc3161`) and its anchors by state.
    pub anchors: Option<(&'a str, [(&'static str, u64); 5])>,
    /// Members' messages refused, by reason (`bad_statement`, `replay`, ...), summed over the
    /// members.
    pub refusals: BTreeMap<String, u64>,
    /// Message streams closed on a frame over the cap.
    pub frames_refused: u64,
    /// Connections closed because gossipsub's score of the peer fell under the graylist.
    pub score_disconnects: u64,
}

/// A route of the explorer, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route's template (`/namespaces/{namespace}`), never the path asked for.
    pub route: String,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    namespace_size: Family<SizeLabels, Gauge>,
    namespaces_not_shown: Gauge,
    members: Family<StateLabels, Gauge>,
    evidence: Family<KindLabels, Gauge>,
    connected_members: Gauge,
    state_changes: Gauge,
    registry_version: Gauge,
    newest_final_age_seconds: Gauge<f64, AtomicU64>,
    receipts_finalized: Counter,
    messages_refused: Counter,
    finality: Histogram,
    requests: Family<RouteLabels, Counter>,
    validated: Family<ValidatedLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    frames_refused: Counter,
    score_disconnects: Counter,
    anchors: Family<AnchorLabels, Gauge>,
    witness_cells: Family<KindLabels, Gauge>,
    synced_write_p50: Gauge<f64, AtomicU64>,
    synced_write_p99: Gauge<f64, AtomicU64>,
    event_streams: Gauge,
    request_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Registry::default())
    }
}

impl Metrics {
    /// Ours, registered under `remembrancer_` in `root` (which may hold libp2p's already).
    pub fn new(mut root: Registry) -> Metrics {
        let registry = root.sub_registry_with_prefix("remembrancer");
        let metrics = Metrics {
            namespace_size: Family::default(),
            namespaces_not_shown: Gauge::default(),
            members: Family::default(),
            evidence: Family::default(),
            connected_members: Gauge::default(),
            state_changes: Gauge::default(),
            registry_version: Gauge::default(),
            newest_final_age_seconds: Gauge::default(),
            receipts_finalized: Counter::default(),
            messages_refused: Counter::default(),
            // 1 ms to about 33 s.
            finality: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            requests: Family::default(),
            validated: Family::default(),
            refusals: Family::default(),
            frames_refused: Counter::default(),
            score_disconnects: Counter::default(),
            anchors: Family::default(),
            witness_cells: Family::default(),
            synced_write_p50: Gauge::default(),
            synced_write_p99: Gauge::default(),
            event_streams: Gauge::default(),
            // 0.1 ms to about 3 s.
            request_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            registry: Registry::default(),
        };
        registry.register(
            "namespace_size",
            "Records in a namespace's tree: kind latest (this node's own trees) or final (under its newest final receipt)",
            metrics.namespace_size.clone(),
        );
        registry.register(
            "namespaces_not_shown",
            "Namespaces beyond the ones with series of their own",
            metrics.namespaces_not_shown.clone(),
        );
        registry.register(
            "members",
            "Registry members by state (active, probation, suspended)",
            metrics.members.clone(),
        );
        registry.register(
            "evidence",
            "Evidence held, by kind (equivocation, claim)",
            metrics.evidence.clone(),
        );
        registry.register(
            "member_state_changes",
            "Members' changes of state along the registry's update chain this node holds",
            metrics.state_changes.clone(),
        );
        registry.register(
            "connected_members",
            "Other registry members connected to this node",
            metrics.connected_members.clone(),
        );
        registry.register(
            "registry_version",
            "The registry version this node runs under",
            metrics.registry_version.clone(),
        );
        registry.register(
            "newest_final_age_seconds",
            "Time since the newest final receipt this node holds was finalized",
            metrics.newest_final_age_seconds.clone(),
        );
        registry.register(
            "receipts_finalized",
            "Receipts this node saw become final (any namespace)",
            metrics.receipts_finalized.clone(),
        );
        registry.register(
            "messages_refused",
            "Cross-namespace deliveries and answers refused",
            metrics.messages_refused.clone(),
        );
        registry.register(
            "finality_seconds",
            "Commit to final receipt for this node's own namespaces",
            metrics.finality.clone(),
        );
        registry.register(
            "explorer_requests",
            "Requests the public explorer answered, by route",
            metrics.requests.clone(),
        );
        registry.register(
            "messages_validated",
            "Peer messages judged, by kind and verdict (accepted, ignored, refused)",
            metrics.validated.clone(),
        );
        registry.register(
            "peer_refusals",
            "Members' messages refused, by reason (federation audit lists each one)",
            metrics.refusals.clone(),
        );
        registry.register(
            "frames_refused",
            "Message streams closed because a peer sent a frame over the cap",
            metrics.frames_refused.clone(),
        );
        registry.register(
            "score_disconnects",
            "Connections closed because gossipsub's score of the peer fell under the graylist threshold",
            metrics.score_disconnects.clone(),
        );
        registry.register(
            "anchors",
            "External anchors by target (eip155, rfc3161) and state (pending, submitted, included, final, failed)",
            metrics.anchors.clone(),
        );
        registry.register(
            "witness_cells",
            "Over the recent final receipts and every member: owner, cosigned, late or absent",
            metrics.witness_cells.clone(),
        );
        registry.register(
            "synced_write_p50_seconds",
            "Median of the last 1024 synced writes (what every anchor and countersignature waits for)",
            metrics.synced_write_p50.clone(),
        );
        registry.register(
            "synced_write_p99_seconds",
            "99th percentile of the last 1024 synced writes",
            metrics.synced_write_p99.clone(),
        );
        registry.register(
            "explorer_event_streams",
            "Live event streams open on the explorer (one per browser, shared by its tabs)",
            metrics.event_streams.clone(),
        );
        registry.register(
            "explorer_request_seconds",
            "Time the public explorer took to answer a request",
            metrics.request_seconds.clone(),
        );
        Metrics { registry: root, ..metrics }
    }

    /// Sets the gauges from a snapshot and the node's figures (the counters follow its
    /// running totals).
    pub fn update(&self, snapshot: &Snapshot, figures: &Figures) {
        let (finalized, refused) = (figures.finalized, figures.refused);
        for (at, kind) in remembrancer_core::message::MessageType::ALL.iter().enumerate() {
            let kind = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            for (verdict, name) in ["accepted", "ignored", "refused"].iter().enumerate() {
                let labels = ValidatedLabels { kind: kind.clone(), verdict: name.to_string() };
                catch_up(&self.validated.get_or_create(&labels), figures.validated[at][verdict]);
            }
        }
        for (reason, total) in &figures.refusals {
            catch_up(&self.refusals.get_or_create(&ReasonLabels { reason: reason.clone() }), *total);
        }
        catch_up(&self.frames_refused, figures.frames_refused);
        catch_up(&self.score_disconnects, figures.score_disconnects);
        if let Some((target, states)) = &figures.anchors {
            for (state, count) in states {
                let labels = AnchorLabels { target: target.to_string(), state: state.to_string() };
                self.anchors.get_or_create(&labels).set(*count as i64);
            }
        }
        let (p50, p99) = figures.synced_write_ms;
        self.synced_write_p50.set(p50.unwrap_or(0.0) / 1000.0);
        self.synced_write_p99.set(p99.unwrap_or(0.0) / 1000.0);
        let mut cells: BTreeMap<&str, i64> =
            ["owner", "cosigned", "late", "absent"].iter().map(|k| (*k, 0)).collect();
        for row in &snapshot.witnesses.rows {
            for cell in &row.cells {
                if let Some(count) = cells.get_mut(cell.as_str()) {
                    *count += 1;
                }
            }
        }
        for (kind, count) in cells {
            self.witness_cells.get_or_create(&KindLabels { kind: kind.to_string() }).set(count);
        }
        let overview = &snapshot.overview;
        for (state, count) in &overview.members_by_state {
            self.members.get_or_create(&StateLabels { state: state.clone() }).set(*count as i64);
        }
        for (kind, count) in
            [("equivocation", overview.evidence_equivocations), ("claim", overview.evidence_claims)]
        {
            self.evidence.get_or_create(&KindLabels { kind: kind.to_string() }).set(count as i64);
        }
        self.connected_members.set(overview.node.connected_members as i64);
        self.state_changes.set(snapshot.members.iter().map(|m| m.history.len() as i64).sum());
        self.registry_version.set(overview.registry_version as i64);
        if let Some(age) = overview.newest_final_age_ms {
            self.newest_final_age_seconds.set(age as f64 / 1000.0);
        }
        for namespace in snapshot.namespaces.iter().take(NAMESPACES_SHOWN) {
            let size =
                |kind: &str| SizeLabels { namespace: namespace.namespace.clone(), kind: kind.to_string() };
            self.namespace_size.get_or_create(&size("final")).set(namespace.final_size as i64);
            if let Some(latest) = namespace.latest_size {
                self.namespace_size.get_or_create(&size("latest")).set(latest as i64);
            }
        }
        self.namespaces_not_shown.set(snapshot.namespaces.len().saturating_sub(NAMESPACES_SHOWN) as i64);
        catch_up(&self.receipts_finalized, finalized);
        catch_up(&self.messages_refused, refused);
    }

    /// One own receipt's commit-to-final time.
    pub fn observe_finality(&self, seconds: f64) {
        self.finality.observe(seconds);
    }

    /// One request the explorer answered.
    pub fn observe_request(&self, route: &str, seconds: f64) {
        self.requests.get_or_create(&RouteLabels { route: route.to_string() }).inc();
        self.request_seconds.observe(seconds);
    }

    /// A live event stream opened.
    pub fn event_stream_opened(&self) {
        self.event_streams.inc();
    }

    /// A live event stream closed.
    pub fn event_stream_closed(&self) {
        self.event_streams.dec();
    }

    /// The metrics as `/metrics` serves them.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "metrics could not be encoded");
        }
        text
    }
}

/// Raises `counter` to `total` (a running total kept elsewhere).
fn catch_up(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}
