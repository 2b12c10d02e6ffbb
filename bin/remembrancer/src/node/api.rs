//! The node's operator API on loopback, served by axum on hyper: the routes under `/api/v1/`
//! (`ROUTES`, listed with examples in `docs/api.md`), the write token, the `Host` check, body
//! and time limits, and JSON errors `{"error": {"code", "message"}}`. Each call but `health`
//! goes to the node's event loop as an `ApiCall` and waits for its answer there.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot};

use super::http::{Request, Response, BODY_BYTES_MAX, REQUEST_TIMEOUT};

/// Every route: method and path (the POST ones change the node and need the write token).
pub const ROUTES: [(&str, &str); 23] = [
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/ready"),
    ("GET", "/api/v1/status"),
    ("POST", "/api/v1/records"),
    ("POST", "/api/v1/anchor"),
    ("GET", "/api/v1/receipts"),
    ("GET", "/api/v1/receipt"),
    ("GET", "/api/v1/checkpoint"),
    ("GET", "/api/v1/proof"),
    ("POST", "/api/v1/join"),
    ("POST", "/api/v1/approve"),
    ("GET", "/api/v1/proposals"),
    ("POST", "/api/v1/proposals"),
    ("POST", "/api/v1/block"),
    ("POST", "/api/v1/unblock"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/registry"),
    ("GET", "/api/v1/registry/chain"),
    ("GET", "/api/v1/evidence"),
    ("GET", "/api/v1/anchors"),
    ("GET", "/api/v1/treasury"),
    ("POST", "/api/v1/messages"),
    ("GET", "/api/v1/messages"),
];

/// Connections served at once. Idle ones close after `IDLE_TIMEOUT`, so a client that holds
/// many open only delays the next ones by that much once it holds this many.
pub const CONNECTIONS_MAX: usize = 4096;

/// A call for the node's event loop, with where its answer goes.
pub struct ApiCall {
    /// The request, its path as the event loop knows it (`/v1/...`).
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Response>,
}

struct ApiState {
    token: String,
    address: SocketAddr,
    calls: mpsc::Sender<ApiCall>,
}

fn error(status: u16, message: impl Into<String>) -> axum::response::Response {
    answer(Response::error(status, message))
}

fn answer(response: Response) -> axum::response::Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&response.body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The router: `ROUTES`, JSON answers for unknown paths (404) and wrong methods (405).
fn router(state: Arc<ApiState>) -> Router {
    let mut router = Router::new();
    for (method, path) in ROUTES {
        router = match (method, path) {
            (_, "/api/v1/health") => router.route(path, get(health)),
            ("GET", _) => router.route(path, get(forward)),
            _ => router.route(path, post(forward)),
        };
    }
    router
        .fallback(|uri: Uri| async move {
            error(404, format!("no API at {}: the routes are listed in docs/api.md", uri.path()))
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            error(405, format!("{method} is not allowed on {}", uri.path()))
        })
        .with_state(state)
}

/// Whether `host` (a `Host` header) names this API: a loopback name with its port. Anything
/// else is refused, so a web page cannot reach the API through a name that resolves here.
fn host_allowed(host: &str, address: SocketAddr) -> bool {
    let port = address.port();
    host == address.to_string()
        || [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]
            .iter()
            .any(|allowed| allowed == host)
}

async fn health() -> axum::response::Response {
    answer(Response::ok(serde_json::json!({ "status": "alive" })))
}

/// Checks the `Host`, the token for writes and the body's size and time, then hands the call
/// to the event loop and waits for its answer.
async fn forward(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> axum::response::Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if !host_allowed(host, state.address) {
        return error(400, format!("the Host header must name this API ({}), not {host:?}", state.address));
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given, &state.token));
    if method == Method::POST && !authorized {
        return error(
            401,
            "writes need the token in the node's data directory (api.token); the CLI reads it with --data-dir",
        );
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|h| h.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_BYTES_MAX as u64) {
        return error(
            413,
            format!("the body is over {BODY_BYTES_MAX} bytes: send fewer records per request"),
        );
    }
    let body = match tokio::time::timeout(REQUEST_TIMEOUT, axum::body::to_bytes(body, BODY_BYTES_MAX)).await {
        Ok(Ok(body)) => body.to_vec(),
        Ok(Err(_)) => {
            return error(
                413,
                format!("the body is over {BODY_BYTES_MAX} bytes: send fewer records per request"),
            )
        }
        Err(_) => return error(408, "the body did not arrive in time"),
    };
    let path = uri.path().strip_prefix("/api").unwrap_or(uri.path()).to_string();
    let request = Request { method: method.to_string(), path, query, body };
    let (reply, response) = oneshot::channel();
    if state.calls.try_send(ApiCall { request, reply }).is_err() {
        return error(503, "the node is busy; retry shortly");
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, response).await {
        Ok(Ok(response)) => answer(response),
        _ => error(503, "the node did not answer in time"),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the API on `listener` until the process ends ([`super::http::serve_router`]: a task
/// per connection, idle ones closed after `IDLE_TIMEOUT`, at most `CONNECTIONS_MAX`).
pub async fn serve(listener: tokio::net::TcpListener, token: String, calls: mpsc::Sender<ApiCall>) {
    let Ok(address) = listener.local_addr() else { return };
    let router = router(Arc::new(ApiState { token, address, calls }));
    super::http::serve_router(listener, router, CONNECTIONS_MAX, "API").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_of_this_port_are_accepted_as_host() {
        let address: SocketAddr = "127.0.0.1:8080".parse().expect("address");
        for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
            assert!(host_allowed(host, address), "{host}");
        }
        for host in ["", "evil.example:8080", "127.0.0.1:9090", "localhost", "127.0.0.1"] {
            assert!(!host_allowed(host, address), "{host}");
        }
    }
}
