//! The operator API's shared types and limits (`Request`, `Response`, `ApiInfo`) and the
//! CLI's client of it (`federation status`, `record append`, ...). The server is `api.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Largest request body (a batch of records).
pub const BODY_BYTES_MAX: usize = 16 << 20;
/// Largest response the client reads.
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may take to send a request's head, its first or its next one (an
/// idle kept-alive connection is closed after it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a running node's API is, written to `<data_dir>/api.json` at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiInfo {
    /// The API's address.
    pub address: SocketAddr,
    /// The node's DID.
    pub did: String,
    /// The node's PeerId.
    pub peer_id: String,
    /// The node's process id.
    pub pid: u32,
    /// The public explorer's address, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explorer: Option<SocketAddr>,
}

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    /// GET or POST.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// An API answer: status code and JSON body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: serde_json::Value,
}

impl Response {
    /// 200 with a body.
    pub fn ok(body: serde_json::Value) -> Self {
        Response { status: 200, body }
    }

    /// An error, `{"error": {"code", "message"}}`, with a message that says what to do.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        let code = match status {
            400 => "bad_request",
            401 => "unauthorized",
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "request_timeout",
            409 => "conflict",
            413 => "payload_too_large",
            503 => "unavailable",
            _ => "internal",
        };
        Response { status, body: serde_json::json!({ "error": { "code": code, "message": message.into() } }) }
    }
}

/// Encodes a query value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~:".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The CLI's side: a node's API found through its data directory.
#[derive(Debug, Clone)]
pub struct Client {
    info: ApiInfo,
    token: String,
}

impl Client {
    /// Reads `api.json` and `api.token` from a running node's data directory.
    pub fn from_data_dir(data_dir: &Path) -> anyhow::Result<Client> {
        let info_path = data_dir.join("api.json");
        let bytes = crate::files::read_bounded(&info_path, 64 * 1024)
            .with_context(|| format!("{} holds no api.json", data_dir.display()))?;
        let info: ApiInfo = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an API description", info_path.display()))?;
        let token = crate::files::read_bounded(&data_dir.join("api.token"), 1024)
            .map(|t| String::from_utf8_lossy(&t).trim().to_string())
            .unwrap_or_default();
        Ok(Client { info, token })
    }

    /// The node's public explorer, when it runs.
    pub fn explorer(&self) -> Option<SocketAddr> {
        self.info.explorer
    }

    /// GET `path_and_query`.
    pub fn get(&self, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        self.call("GET", path_and_query, None)
    }

    /// POST a JSON body (with the token).
    pub fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        self.call("POST", path, Some(serde_json::to_vec(body)?))
    }

    fn call(&self, method: &str, target: &str, body: Option<Vec<u8>>) -> anyhow::Result<serde_json::Value> {
        let address = self.info.address;
        let url = format!("http://{address}{target}");
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(REQUEST_TIMEOUT))
            // The node's error answers carry what to do: read them rather than fail on them.
            .http_status_as_error(false)
            .build();
        let agent = ureq::Agent::new_with_config(config);
        let bearer = format!("Bearer {}", self.token);
        let sent = match method {
            "POST" => agent
                .post(&url)
                .header("Authorization", &bearer)
                .content_type("application/json")
                .send(body.unwrap_or_default().as_slice()),
            _ => agent.get(&url).header("Authorization", &bearer).call(),
        };
        let mut response = sent.map_err(|error| match error {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) => anyhow::anyhow!(
                "the node's API at {address} does not answer: is the node (pid {}) still running? ({error})",
                self.info.pid
            ),
            other => anyhow::anyhow!("the node's API at {address}: {other}"),
        })?;
        let status = response.status().as_u16();
        let bytes =
            response.body_mut().with_config().limit(RESPONSE_BYTES_MAX as u64).read_to_vec().with_context(
                || format!("the node's answer could not be read (at most {RESPONSE_BYTES_MAX} bytes)"),
            )?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).context("the node's answer is not JSON")?;
        if status != 200 {
            let text =
                |field: &str, default: &str| value["error"][field].as_str().unwrap_or(default).to_string();
            return Err(Refused {
                status,
                code: text("code", "error"),
                message: text("message", "an answer without a message"),
            }
            .into());
        }
        Ok(value)
    }
}

/// The node answered with an error (`{"error":{"code","message"}}`): kept whole so `--json`
/// can pass it on as the node said it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the node refused: {message} (HTTP {status})")]
pub struct Refused {
    /// The HTTP status.
    pub status: u16,
    /// The error's code (`not_found`, `conflict`, ...).
    pub code: String,
    /// What the node said.
    pub message: String,
}

/// Serves `router` on `listener` until the process ends (the operator API, the explorer): each
/// connection is its own task, so idle or slow clients never keep another waiting; a connection
/// that sends no complete request head within [`IDLE_TIMEOUT`] (a first request, or the next on
/// a kept connection) is closed; at most `connections` are served at once, the next wait to be
/// accepted. `what` names the server in the log.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    connections: usize,
    what: &'static str,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let service = hyper_util::service::TowerToHyperService::new(router);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(connections));
    loop {
        let Ok(slot) = std::sync::Arc::clone(&slots).acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait instead of spinning on the error.
                tracing::warn!(%error, "{what}: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "{what} connection ended");
            }
        });
    }
}
