//! `/api/v1/events`: live updates as server-sent events. Each snapshot the node publishes is
//! one event with the values pages show live (`update`), its id the snapshot's sequence; a
//! client that missed snapshots (it was slow, or reconnects with an older `Last-Event-ID`, or
//! one of the node's previous run) gets `resync` instead, with the same full state. A comment line every [`HEARTBEAT`] keeps
//! the connection alive through proxies. Each stream holds only the newest snapshot (a watch
//! receiver): a slow client costs no memory, it skips. At most [`EVENT_STREAMS_MAX`] streams at
//! once; one browser needs one, shared by its tabs (`/assets/live-worker.js`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::watch;

use super::snapshot::Snapshot;
use super::{json, Explorer};

/// Event streams served at once.
pub const EVENT_STREAMS_MAX: usize = 256;
/// Between two heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Namespaces an event carries, at most.
const NAMESPACES_LIVE_MAX: usize = 256;

/// What pages show live.
#[derive(Debug, Serialize)]
pub struct Live {
    /// The snapshot's sequence.
    pub sequence: u64,
    /// When it was built (Unix ms).
    pub generated_at_ms: u64,
    /// The overview's values.
    pub overview: LiveOverview,
    /// Each namespace's sizes.
    pub namespaces: BTreeMap<String, LiveNamespace>,
}

/// The overview's live values.
#[derive(Debug, Serialize)]
pub struct LiveOverview {
    /// Time since the newest final receipt, ms.
    pub newest_final_age_ms: Option<u64>,
    /// Namespaces known.
    pub namespaces: usize,
    /// Of them, with records not yet final.
    pub namespaces_pending: usize,
    /// Members connected to the node.
    pub connected_members: usize,
    /// Equivocation evidence held.
    pub evidence_equivocations: usize,
    /// Claims out of turn held.
    pub evidence_claims: usize,
    /// Evidence that came in the last 24 h.
    pub evidence_last_day: usize,
}

/// A namespace's live values.
#[derive(Debug, Serialize)]
pub struct LiveNamespace {
    /// Records under its newest final receipt.
    pub final_size: u64,
    /// Records in its tree (this node's own).
    pub latest_size: Option<u64>,
}

impl Live {
    /// The live values of `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Live {
        let o = &snapshot.overview;
        Live {
            sequence: snapshot.sequence,
            generated_at_ms: snapshot.generated_at_ms,
            overview: LiveOverview {
                newest_final_age_ms: o.newest_final_age_ms,
                namespaces: o.namespaces,
                namespaces_pending: o.namespaces_pending,
                connected_members: o.node.connected_members,
                evidence_equivocations: o.evidence_equivocations,
                evidence_claims: o.evidence_claims,
                evidence_last_day: o.evidence_last_day,
            },
            namespaces: snapshot
                .namespaces
                .iter()
                .take(NAMESPACES_LIVE_MAX)
                .map(|n| {
                    (
                        n.namespace.clone(),
                        LiveNamespace { final_size: n.final_size, latest_size: n.latest_size },
                    )
                })
                .collect(),
        }
    }
}

/// One client's stream: the snapshots it is to see, the last it saw, its slot.
struct Stream {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    last: Option<u64>,
    first: bool,
    explorer: Arc<Explorer>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.explorer.metrics.event_stream_closed();
    }
}

fn event(snapshot: &Snapshot, last: Option<u64>) -> Event {
    // Behind: it missed a snapshot, or saw one of a node process before this one (sequences
    // start again at 1 when a node restarts).
    let behind =
        last.is_some_and(|seen| seen.saturating_add(1) < snapshot.sequence || seen > snapshot.sequence);
    let data = serde_json::to_string(&Live::of(snapshot)).unwrap_or_else(|_| "{}".to_string());
    Event::default()
        .event(if behind { "resync" } else { "update" })
        .id(snapshot.sequence.to_string())
        .data(data)
}

/// `GET /api/v1/events`.
pub async fn events(State(explorer): State<Arc<Explorer>>, headers: HeaderMap) -> Response {
    let Ok(slot) = Arc::clone(&explorer.streams).try_acquire_owned() else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "error": { "code": "unavailable", "message": "too many live streams: the pages still work, reload them later for live values" } }),
        );
    };
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    explorer.metrics.event_stream_opened();
    let stream = Stream {
        snapshot: explorer.snapshot.clone(),
        last,
        first: true,
        explorer: Arc::clone(&explorer),
        _slot: slot,
    };
    let events = futures::stream::unfold(stream, |mut stream| async move {
        if !stream.first && stream.snapshot.changed().await.is_err() {
            return None;
        }
        stream.first = false;
        let snapshot = Arc::clone(&stream.snapshot.borrow_and_update());
        let event = event(&snapshot, stream.last);
        stream.last = Some(snapshot.sequence);
        Some((Ok::<Event, Infallible>(event), stream))
    });
    let mut response =
        Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    response
}
