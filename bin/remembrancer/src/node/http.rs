//! A small HTTP/1.1 JSON API on loopback: keep-alive connections (one request at a time),
//! bounded headers and body, bearer token for writes. The server half runs in the node; the
//! client half is what the CLI's `federation status`, `record append`, ... use.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Largest request head (request line and headers).
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Largest request body (a batch of records).
pub const BODY_BYTES_MAX: usize = 16 << 20;
/// Largest response the client reads.
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a kept-alive connection may wait for its next request.
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
    /// Whether the bearer token matched.
    pub authorized: bool,
    /// Whether the client keeps the connection for another request (HTTP/1.1 without
    /// `Connection: close`).
    pub keep_alive: bool,
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

    /// An error with a message that says what to do.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Response { status, body: serde_json::json!({ "error": message.into() }) }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// Reads the next request from `stream`: `Ok(None)` when the client closed the connection
/// between requests, `Err` when the request is malformed (the caller answers 400 and closes).
/// `pending` holds bytes read past the previous request (a client that sends its next request
/// early); it is left holding the bytes past this one.
pub async fn read_request(
    stream: &mut tokio::net::TcpStream,
    token: &str,
    pending: &mut Vec<u8>,
) -> Result<Option<Request>, String> {
    let mut head = std::mem::take(pending);
    let mut byte = [0u8; 1024];
    let body_start = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > HEAD_BYTES_MAX {
            return Err(format!("request head over {HEAD_BYTES_MAX} bytes"));
        }
        let read = stream.read(&mut byte).await.map_err(|e| e.to_string())?;
        if read == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err("connection closed before the request ended".to_string());
        }
        head.extend_from_slice(&byte[..read]);
    };
    let text =
        std::str::from_utf8(&head[..body_start]).map_err(|_| "request head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let mut keep_alive = parts.next() == Some("HTTP/1.1");
    let (path, query_text) = target.split_once('?').unwrap_or((target, ""));
    let query = query_text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let mut length = 0usize;
    let mut authorized = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| "bad Content-Length".to_string())?;
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("authorization") {
            authorized = value.strip_prefix("Bearer ").is_some_and(|given| constant_time_eq(given, token));
        }
    }
    if length > BODY_BYTES_MAX {
        return Err(format!("body of {length} bytes is over the {BODY_BYTES_MAX}-byte limit"));
    }
    let mut body = head[body_start..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut byte).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("connection closed inside the body".to_string());
        }
        body.extend_from_slice(&byte[..read]);
    }
    *pending = body.split_off(length);
    Ok(Some(Request { method, path: path.to_string(), query, authorized, keep_alive, body }))
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes a response; closes the connection unless `keep_alive`.
pub async fn write_response(stream: &mut tokio::net::TcpStream, response: &Response, keep_alive: bool) {
    let body = serde_json::to_vec(&response.body).unwrap_or_default();
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        response.status,
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    let _ = stream.write_all(&bytes).await;
    if !keep_alive {
        let _ = stream.shutdown().await;
    }
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
        let bytes = crate::files::read_bounded(&info_path, 64 * 1024).with_context(|| {
            format!(
                "no running node found in {} (start one with `remembrancer node run --config FILE`, or pass --data-dir)",
                data_dir.display()
            )
        })?;
        let info: ApiInfo = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an API description", info_path.display()))?;
        let token = crate::files::read_bounded(&data_dir.join("api.token"), 1024)
            .map(|t| String::from_utf8_lossy(&t).trim().to_string())
            .unwrap_or_default();
        Ok(Client { info, token })
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
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).with_context(|| {
            format!(
                "the node's API at {address} does not answer: is the node (pid {}) still running?",
                self.info.pid
            )
        })?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.token,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        let mut response = Vec::new();
        stream.take(RESPONSE_BYTES_MAX as u64 + 1).read_to_end(&mut response)?;
        if response.len() > RESPONSE_BYTES_MAX {
            bail!("the node's answer is over {RESPONSE_BYTES_MAX} bytes");
        }
        let split =
            response.windows(4).position(|w| w == b"\r\n\r\n").context("the node's answer is not HTTP")?;
        let status_line =
            String::from_utf8_lossy(&response[..split]).lines().next().unwrap_or_default().to_string();
        let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let value: serde_json::Value =
            serde_json::from_slice(&response[split + 4..]).context("the node's answer is not JSON")?;
        if status != 200 {
            let message = value.get("error").and_then(|e| e.as_str()).unwrap_or("unknown error");
            bail!("the node refused: {message}");
        }
        Ok(value)
    }
}
