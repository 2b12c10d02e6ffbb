//! The public explorer: a read-only listener of its own (`[explorer] public_listen`, off by
//! default), apart from the loopback operator API. It serves only public data, read from the
//! snapshot the node's loop publishes (`snapshot.rs`), so page views never wait on the engine:
//! HTML pages drawn on the server (`pages.rs`), each with its JSON twin under `/api/v1/`, live
//! events (`events.rs`) and `/metrics` (`metrics.rs`). A record's proof is the one thing the
//! snapshot cannot hold: it is asked of the node's loop through a queue of
//! [`PROOF_CALLS_MAX`] (a full queue is a 503 that says to try again). It faces the internet:
//! at most [`CONNECTIONS_MAX`] connections, one that sends no request head within
//! [`super::http::IDLE_TIMEOUT`] is closed, pages are gzipped, and what a private federation
//! keeps to itself (`private = true`: `/metrics` and member detail) is not served.

pub mod events;
pub mod metrics;
pub mod pages;
pub mod snapshot;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use remembrancer_core::bundle::ProofBundle;
use tokio::sync::watch;

pub use metrics::Metrics;
pub use snapshot::Snapshot;

/// Connections served at once; more wait to be accepted.
pub const CONNECTIONS_MAX: usize = 4096;

/// Proof lookups waiting for the node's loop, at most.
pub const PROOF_CALLS_MAX: usize = 16;

/// A record's proof bundle, asked of the node's loop.
pub struct ProofCall {
    /// The namespace (one this node owns).
    pub namespace: String,
    /// The record's index.
    pub index: u64,
    /// The final size to prove it at (a receipt this node holds); none: the newest.
    pub size: Option<u64>,
    /// The bundle under the newest final receipt, or a status and why not.
    pub reply: tokio::sync::oneshot::Sender<Result<ProofBundle, (u16, String)>>,
}

/// What the explorer's handlers share.
pub struct Explorer {
    /// The node's newest snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// `/metrics` and member detail are not served.
    pub private: bool,
    /// Proof lookups for the node's loop.
    pub proofs: tokio::sync::mpsc::Sender<ProofCall>,
    /// Slots of live event streams.
    streams: Arc<tokio::sync::Semaphore>,
}

impl Explorer {
    /// The explorer of a node: its snapshots, its metrics, whether it is private, and where
    /// proofs are asked.
    pub fn new(
        snapshot: watch::Receiver<Arc<Snapshot>>,
        metrics: Arc<Metrics>,
        private: bool,
        proofs: tokio::sync::mpsc::Sender<ProofCall>,
    ) -> Explorer {
        let streams = Arc::new(tokio::sync::Semaphore::new(events::EVENT_STREAMS_MAX));
        Explorer { snapshot, metrics, private, proofs, streams }
    }
}

type Shared = State<Arc<Explorer>>;

/// The headers every answer carries: no script or style from anywhere but here, no sniffing,
/// no referrer.
fn secured(mut response: Response, content_type: &'static str, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    response
}

fn html(status: StatusCode, body: String) -> Response {
    secured((status, body).into_response(), "text/html; charset=utf-8", "no-cache")
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string());
    secured((status, body).into_response(), "application/json", "no-cache")
}

fn json_missing(what: &str) -> Response {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": { "code": "not_found", "message": format!("{what} is not known to this node") } }),
    )
}

impl Explorer {
    /// Answers with `answer` over the newest snapshot, counted under `route`.
    fn answer(&self, route: &str, answer: impl FnOnce(&Snapshot) -> Response) -> Response {
        let started = Instant::now();
        let snapshot = Arc::clone(&self.snapshot.borrow());
        let response = answer(&snapshot);
        self.metrics.observe_request(route, started.elapsed().as_secs_f64());
        response
    }
}

async fn overview(State(e): Shared) -> Response {
    e.answer("/", |s| html(StatusCode::OK, pages::overview(s)))
}

async fn overview_json(State(e): Shared) -> Response {
    e.answer("/api/v1/overview", |s| json(StatusCode::OK, &s.overview))
}

async fn members(State(e): Shared) -> Response {
    e.answer("/members", |s| html(StatusCode::OK, pages::members(s)))
}

async fn members_json(State(e): Shared) -> Response {
    e.answer("/api/v1/members", |s| json(StatusCode::OK, &s.members))
}

async fn member(State(e): Shared, Path(did): Path<String>) -> Response {
    let private = e.private;
    e.answer("/members/{did}", |s| match s.members.iter().find(|m| m.did == did).filter(|_| !private) {
        Some(member) => html(StatusCode::OK, pages::member(s, member)),
        None => html(StatusCode::NOT_FOUND, pages::not_found(s, &format!("Member {did}"))),
    })
}

async fn member_json(State(e): Shared, Path(did): Path<String>) -> Response {
    let private = e.private;
    e.answer("/api/v1/members/{did}", |s| {
        match s.members.iter().find(|m| m.did == did).filter(|_| !private) {
            Some(member) => json(StatusCode::OK, member),
            None => json_missing(&format!("member {did}")),
        }
    })
}

async fn namespaces(State(e): Shared) -> Response {
    e.answer("/namespaces", |s| html(StatusCode::OK, pages::namespaces(s)))
}

async fn namespaces_json(State(e): Shared) -> Response {
    e.answer("/api/v1/namespaces", |s| json(StatusCode::OK, &s.namespaces))
}

async fn namespace(State(e): Shared, Path(name): Path<String>) -> Response {
    e.answer("/namespaces/{namespace}", |s| match s.namespaces.iter().find(|n| n.namespace == name) {
        Some(namespace) => html(StatusCode::OK, pages::namespace(s, namespace)),
        None => html(StatusCode::NOT_FOUND, pages::not_found(s, &format!("Namespace {name}"))),
    })
}

async fn namespace_json(State(e): Shared, Path(name): Path<String>) -> Response {
    e.answer("/api/v1/namespaces/{namespace}", |s| match s.namespaces.iter().find(|n| n.namespace == name) {
        Some(namespace) => json(StatusCode::OK, namespace),
        None => json_missing(&format!("namespace {name}")),
    })
}

/// The bundle of record `index` of `namespace`, from the node's loop.
async fn bundle(
    e: &Explorer,
    namespace: &str,
    index: u64,
    size: Option<u64>,
) -> Result<ProofBundle, (StatusCode, String)> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let call = ProofCall { namespace: namespace.to_string(), index, size, reply };
    if e.proofs.try_send(call).is_err() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is busy with other proofs: try again in a moment".to_string(),
        ));
    }
    match tokio::time::timeout(Duration::from_secs(10), answer).await {
        Ok(Ok(Ok(bundle))) => Ok(bundle),
        Ok(Ok(Err((status, why)))) => {
            Err((StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND), why))
        }
        _ => Err((StatusCode::SERVICE_UNAVAILABLE, "the node did not answer in time: try again".to_string())),
    }
}

async fn record(State(e): Shared, Path((name, index)): Path<(String, u64)>) -> Response {
    let started = Instant::now();
    let answer = bundle(&e, &name, index, None).await;
    let snapshot = Arc::clone(&e.snapshot.borrow());
    let response = match answer {
        Ok(bundle) => html(StatusCode::OK, pages::record(&snapshot, &name, &bundle)),
        Err((status, why)) => html(status, pages::no_proof(&snapshot, &name, index, &why)),
    };
    e.metrics.observe_request("/namespaces/{namespace}/records/{index}", started.elapsed().as_secs_f64());
    response
}

async fn record_json(
    State(e): Shared,
    Path((name, index)): Path<(String, u64)>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let started = Instant::now();
    let size = match query.get("size").map(|s| s.parse::<u64>()) {
        Some(Ok(size)) => Some(size),
        Some(Err(_)) => {
            let why = "size is the final tree size to prove the record at, a whole number";
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": { "code": "bad_request", "message": why } }),
            );
        }
        None => None,
    };
    let response = match bundle(&e, &name, index, size).await {
        Ok(bundle) => {
            // A proof at a named final size never changes: caches may keep it.
            let cache = if size.is_some() { "public, max-age=31536000, immutable" } else { "no-cache" };
            let mut response =
                secured((StatusCode::OK, bundle.to_json()).into_response(), "application/json", cache);
            if query.contains_key("download") {
                let file = format!(
                    "attachment; filename=\"proof-{}-{index}.json\"",
                    pages::segment(&name).replace(['%', ':'], "-")
                );
                if let Ok(value) = HeaderValue::from_str(&file) {
                    response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
                }
            }
            response
        }
        Err((status, why)) => {
            let code = match status {
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::CONFLICT => "conflict",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                StatusCode::BAD_REQUEST => "bad_request",
                _ => "internal",
            };
            json(status, &serde_json::json!({ "error": { "code": code, "message": why } }))
        }
    };
    e.metrics
        .observe_request("/api/v1/namespaces/{namespace}/records/{index}", started.elapsed().as_secs_f64());
    response
}

/// The lookup form's target: `?index=N` sends the visitor to that record's page.
async fn record_lookup(
    Path(name): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let index =
        query.as_deref().and_then(|q| q.strip_prefix("index=")).and_then(|i| i.trim().parse::<u64>().ok());
    match index {
        Some(index) => {
            let to = format!("/namespaces/{}/records/{index}", pages::segment(&name));
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&to) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        None => secured(
            (StatusCode::BAD_REQUEST, "give the record's index as a whole number").into_response(),
            "text/plain; charset=utf-8",
            "no-cache",
        ),
    }
}

async fn tree(State(e): Shared, Path(name): Path<String>) -> Response {
    e.answer("/namespaces/{namespace}/tree", |s| match s.namespaces.iter().find(|n| n.namespace == name) {
        Some(namespace) => html(StatusCode::OK, pages::tree(s, namespace)),
        None => html(StatusCode::NOT_FOUND, pages::not_found(s, &format!("Namespace {name}"))),
    })
}

async fn witnesses(State(e): Shared) -> Response {
    e.answer("/witnesses", |s| html(StatusCode::OK, pages::witnesses(s)))
}

async fn witnesses_json(State(e): Shared) -> Response {
    e.answer("/api/v1/witnesses", |s| json(StatusCode::OK, &s.witnesses))
}

async fn audit(State(e): Shared) -> Response {
    e.answer("/audit", |s| html(StatusCode::OK, pages::audit(s)))
}

async fn audit_json(State(e): Shared) -> Response {
    e.answer("/api/v1/audit", |s| json(StatusCode::OK, &s.audit))
}

/// `/search?q=…`: one match leads straight to its page; otherwise the matches are listed.
async fn search(
    State(e): Shared,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let wanted = query.get("q").map(String::as_str).unwrap_or_default().chars().take(256).collect::<String>();
    e.answer("/search", |s| {
        let matches = pages::search_matches(s, &wanted);
        match matches.as_slice() {
            [(to, _)] => {
                let mut response = StatusCode::SEE_OTHER.into_response();
                if let Ok(value) = HeaderValue::from_str(to) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                response
            }
            _ => html(StatusCode::OK, pages::search(s, &wanted, &matches)),
        }
    })
}

async fn evidence(State(e): Shared) -> Response {
    e.answer("/evidence", |s| html(StatusCode::OK, pages::evidence(s)))
}

async fn evidence_file(
    State(e): Shared,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    e.answer("/api/v1/evidence/{id}", |s| match s.evidence.iter().find(|ev| ev.id == id) {
        Some(evidence) => {
            let mut response = json(StatusCode::OK, &evidence.file);
            if query.as_deref() == Some("download") {
                let file = format!("attachment; filename=\"evidence-{}.json\"", evidence.id);
                if let Ok(value) = HeaderValue::from_str(&file) {
                    response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
                }
            }
            response
        }
        None => json_missing(&format!("evidence {id}")),
    })
}

async fn evidence_json(State(e): Shared) -> Response {
    e.answer("/api/v1/evidence", |s| json(StatusCode::OK, &s.evidence))
}

async fn metrics_text(State(e): Shared) -> Response {
    if e.private {
        return e.answer("/metrics", |s| html(StatusCode::NOT_FOUND, pages::not_found(s, "/metrics")));
    }
    let text = e.metrics.encode();
    secured((StatusCode::OK, text).into_response(), metrics::CONTENT_TYPE, "no-store")
}

async fn style() -> Response {
    secured((StatusCode::OK, pages::STYLE).into_response(), "text/css; charset=utf-8", "public, max-age=3600")
}

async fn live_script() -> Response {
    secured(
        (StatusCode::OK, pages::LIVE_JS).into_response(),
        "text/javascript; charset=utf-8",
        "public, max-age=3600",
    )
}

async fn live_worker() -> Response {
    secured(
        (StatusCode::OK, pages::LIVE_WORKER_JS).into_response(),
        "text/javascript; charset=utf-8",
        "public, max-age=3600",
    )
}

async fn verifier_script() -> Response {
    secured(
        (StatusCode::OK, pages::VERIFIER_JS).into_response(),
        "text/javascript; charset=utf-8",
        "public, max-age=3600",
    )
}

async fn verify_page_script() -> Response {
    secured(
        (StatusCode::OK, pages::VERIFY_PAGE_JS).into_response(),
        "text/javascript; charset=utf-8",
        "public, max-age=3600",
    )
}

async fn verify(State(e): Shared) -> Response {
    e.answer("/verify", |s| html(StatusCode::OK, pages::verify(s)))
}

async fn icon() -> Response {
    secured((StatusCode::OK, pages::ICON).into_response(), "image/svg+xml", "public, max-age=86400")
}

async fn missing(State(e): Shared, uri: axum::http::Uri) -> Response {
    let path = uri.path().to_string();
    if path.starts_with("/api/") {
        return json_missing(&path);
    }
    e.answer("(not found)", |s| html(StatusCode::NOT_FOUND, pages::not_found(s, &path)))
}

/// The explorer's routes.
pub fn router(explorer: Arc<Explorer>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/api/v1/overview", get(overview_json))
        .route("/members", get(members))
        .route("/api/v1/members", get(members_json))
        .route("/members/{did}", get(member))
        .route("/api/v1/members/{did}", get(member_json))
        .route("/namespaces", get(namespaces))
        .route("/api/v1/namespaces", get(namespaces_json))
        .route("/namespaces/{namespace}", get(namespace))
        .route("/api/v1/namespaces/{namespace}", get(namespace_json))
        .route("/namespaces/{namespace}/records", get(record_lookup))
        .route("/namespaces/{namespace}/tree", get(tree))
        .route("/namespaces/{namespace}/records/{index}", get(record))
        .route("/api/v1/namespaces/{namespace}/records/{index}", get(record_json))
        .route("/witnesses", get(witnesses))
        .route("/api/v1/witnesses", get(witnesses_json))
        .route("/audit", get(audit))
        .route("/api/v1/audit", get(audit_json))
        .route("/search", get(search))
        .route("/evidence", get(evidence))
        .route("/api/v1/evidence", get(evidence_json))
        .route("/api/v1/evidence/{id}", get(evidence_file))
        .route("/metrics", get(metrics_text))
        .route("/assets/style.css", get(style))
        .route("/assets/icon.svg", get(icon))
        .route("/assets/live.js", get(live_script))
        .route("/assets/verifier.mjs", get(verifier_script))
        .route("/assets/verify-page.mjs", get(verify_page_script))
        .route("/verify", get(verify))
        .route("/assets/live-worker.js", get(live_worker))
        .route("/api/v1/events", get(events::events))
        .route("/favicon.ico", get(icon))
        .fallback(missing)
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(explorer)
}

/// Serves the explorer on `listener` until the process ends ([`super::http::serve_router`]:
/// a task per connection, at most [`CONNECTIONS_MAX`] at once, closed when idle for
/// [`super::http::IDLE_TIMEOUT`]).
pub async fn serve(listener: tokio::net::TcpListener, explorer: Arc<Explorer>) {
    super::http::serve_router(listener, router(explorer), CONNECTIONS_MAX, "explorer").await;
}

#[cfg(test)]
mod tests {
    use super::pages::{esc, segment};
    use super::snapshot::{MemberView, NamespaceView};
    use super::*;
    use tower::ServiceExt as _;

    fn explorer(private: bool) -> Arc<Explorer> {
        let snapshot = Snapshot {
            members: vec![MemberView {
                did: "did:vm:node:a".to_string(),
                status: "suspended".to_string(),
                ..Default::default()
            }],
            namespaces: vec![NamespaceView {
                namespace: "ns:<b>".to_string(),
                final_size: 7,
                ..Default::default()
            }],
            ..Default::default()
        };
        let (_, receiver) = watch::channel(Arc::new(snapshot));
        let (proofs, _) = tokio::sync::mpsc::channel(1);
        Arc::new(Explorer::new(receiver, Arc::new(Metrics::default()), private, proofs))
    }

    async fn status(explorer: &Arc<Explorer>, path: &str) -> (StatusCode, String) {
        let request = axum::http::Request::get(path).body(axum::body::Body::empty()).expect("request");
        let response = router(Arc::clone(explorer)).oneshot(request).await.expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn a_private_explorer_serves_no_metrics_nor_member_detail() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let open = explorer(false);
            assert_eq!(status(&open, "/metrics").await.0, StatusCode::OK);
            let (code, page) = status(&open, "/members/did:vm:node:a").await;
            assert_eq!(code, StatusCode::OK);
            assert!(page.contains("> suspended</span>"), "a suspended member is still shown: {page}");
            let closed = explorer(true);
            assert_eq!(status(&closed, "/metrics").await.0, StatusCode::NOT_FOUND);
            assert_eq!(status(&closed, "/members/did:vm:node:a").await.0, StatusCode::NOT_FOUND);
            assert_eq!(status(&closed, "/api/v1/members/did:vm:node:a").await.0, StatusCode::NOT_FOUND);
            assert_eq!(status(&closed, "/members").await.0, StatusCode::OK);
            // Names are escaped wherever they are shown.
            let (code, page) = status(&closed, "/namespaces").await;
            assert_eq!(code, StatusCode::OK);
            assert!(page.contains("ns:&lt;b&gt;") && !page.contains("ns:<b>"), "{page}");
        });
    }

    #[test]
    fn a_size_splits_into_its_perfect_subtrees_largest_first() {
        use super::pages::perfect_subtrees;
        assert_eq!(perfect_subtrees(0), vec![]);
        assert_eq!(perfect_subtrees(1), vec![(0, 1)]);
        assert_eq!(perfect_subtrees(7), vec![(0, 4), (4, 2), (6, 1)]);
        let parts = perfect_subtrees(1000);
        assert_eq!(parts.iter().map(|(_, n)| n).sum::<u64>(), 1000);
        assert!(parts.windows(2).all(|w| w[0].1 > w[1].1 && w[0].0 + w[0].1 == w[1].0));
        assert!(parts.iter().all(|(_, n)| n.is_power_of_two()));
    }

    #[test]
    fn text_is_escaped_and_segments_are_encoded() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(segment("dev:node1"), "dev:node1");
        assert_eq!(segment("a/b c?"), "a%2Fb%20c%3F");
    }
}
