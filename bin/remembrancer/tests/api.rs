//! The operator API of a real node process, as clients use it and misuse it: every route that
//! `docs/api.md` lists answers, errors are JSON with the right status, a thousand idle
//! connections keep no client waiting and are closed after the idle timeout, a slow client is
//! closed too, and a program keeps one connection for many requests.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{namespace, Cluster};

/// One node of a three-member federation, started alone, and its API's address.
fn one_node_api() -> (Cluster, SocketAddr) {
    let mut cluster = Cluster::setup(3);
    cluster.start(1);
    let address = cluster.api_info(1)["address"].as_str().and_then(|a| a.parse().ok()).expect("API address");
    (cluster, address)
}

fn token(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.data_dir(1).join("api.token")).expect("token").trim().to_string()
}

/// Reads one HTTP response (head, then Content-Length bytes) off `stream`.
fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, Vec<u8>) {
    read_answer(stream, pending, false)
}

/// [`read_response`], for a HEAD request when `head_only`.
fn read_answer(stream: &mut TcpStream, pending: &mut Vec<u8>, head_only: bool) -> (String, Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let split = loop {
        if let Some(split) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break split;
        }
        let read = stream.read(&mut chunk).expect("read an answer");
        assert!(read > 0, "connection closed before an answer");
        pending.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&pending[..split]).to_string();
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The answer to a HEAD request names its body's length but carries none.
    let length = if head_only { 0 } else { length };
    while pending.len() < split + 4 + length {
        let read = stream.read(&mut chunk).expect("read a body");
        assert!(read > 0, "connection closed inside a body");
        pending.extend_from_slice(&chunk[..read]);
    }
    let rest = pending.split_off(split + 4 + length);
    let body = pending.split_off(split + 4);
    *pending = rest;
    (head, body)
}

/// One request on a new connection: (status, head, JSON body or Null).
fn request(address: SocketAddr, text: &str) -> (u16, String, serde_json::Value) {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    stream.write_all(text.as_bytes()).expect("request");
    let (head, body) = read_answer(&mut stream, &mut Vec::new(), text.starts_with("HEAD "));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, head, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

/// Whether the node closed `stream` (EOF or reset) within `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let mut byte = [0u8; 64];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            }
        }
    }
}

#[test]
fn every_route_in_the_api_document_exists_and_errors_are_json_with_their_status() {
    let (cluster, address) = one_node_api();
    let token = token(&cluster);
    let document = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md"))
        .expect("docs/api.md");
    let routes: Vec<(String, String)> = document
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .filter_map(|line| {
            let (method, path) = line.trim_matches('`').split_once(' ')?;
            Some((method.to_string(), path.to_string()))
        })
        .collect();
    assert!(routes.len() >= 14, "docs/api.md lists {} routes", routes.len());
    for (method, path) in &routes {
        let body = "{}";
        let (status, head, answer) = request(
            address,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        assert!(status != 404 && status != 405, "{method} {path} in docs/api.md: {head}\n{answer}");
        assert!(
            head.to_ascii_lowercase().contains("content-type: application/json"),
            "{method} {path}: {head}"
        );
        if status != 200 {
            assert!(
                answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
                "{answer}"
            );
        }
    }
    let get = |path: &str, host: &str| {
        request(address, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
    };
    let host = address.to_string();
    let (status, _, answer) = get("/api/v1/health", &host);
    assert_eq!((status, answer["status"].as_str()), (200, Some("alive")));
    // Alone, the node is alive but not ready: no other member is connected.
    let (status, _, answer) = get("/api/v1/ready", &host);
    assert_eq!((status, answer["error"]["code"].as_str()), (503, Some("unavailable")), "{answer}");
    let (status, _, answer) = get("/api/v1/nowhere", &host);
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");
    let (status, _, answer) = request(
        address,
        &format!("DELETE /api/v1/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!((status, answer["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{answer}");
    // Another name for this address (DNS rebinding from a web page) is refused.
    let (status, _, answer) = get("/api/v1/status", &format!("evil.example:{}", address.port()));
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("Host")), "{answer}");
    // A write without the token, and a body over the limit.
    let (status, _, answer) = request(
        address,
        &format!("POST /api/v1/anchor HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"),
    );
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthorized")), "{answer}");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let oversized = 17 << 20;
    write!(
        stream,
        "POST /api/v1/records HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Length: {oversized}\r\nConnection: close\r\n\r\n"
    )
    .expect("head");
    let _ = stream.write_all(&vec![b' '; 1 << 20]);
    let (head, body) = read_response(&mut stream, &mut Vec::new());
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    // HEAD of a GET route: its head, no body.
    let (status, head, _) = request(
        address,
        &format!("HEAD /api/v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{head}");
}

/// A local client holding a thousand connections open (a flood, or a stuck script) keeps no
/// other client waiting; the node closes each idle or slow one after its idle timeout.
#[test]
fn a_thousand_idle_api_connections_keep_no_client_waiting_and_are_closed() {
    let (cluster, address) = one_node_api();
    let connect = || TcpStream::connect_timeout(&address, Duration::from_secs(5)).expect("connect");
    let mut flood: Vec<TcpStream> = (0..1000).map(|_| connect()).collect();
    // One of them a slow client: half a request head, then nothing.
    flood[0]
        .write_all(format!("GET /api/v1/status HTTP/1.1\r\nHost: {address}\r\n").as_bytes())
        .expect("half");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (ok, text) = cluster.cli(1, &["federation", "status", "--json"]);
    assert!(ok && text.contains("\"connected_peers\""), "{text}");
    // Not waiting for the idle connections to time out (the old server answered the 65th
    // client only then).
    assert!(started.elapsed() < Duration::from_secs(10), "answered after {:?}", started.elapsed());
    for stream in [0, 1, 999] {
        assert!(
            closed_within(&mut flood[stream], Duration::from_secs(25)),
            "connection {stream} is still open"
        );
    }
}

/// A program driving the API keeps one connection for many requests, may send the next
/// before the answer to the last, and ends with `Connection: close`.
#[test]
fn the_api_keeps_a_connection_for_several_requests_in_order() {
    let (cluster, address) = one_node_api();
    let token = token(&cluster);
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
    let mut pending = Vec::new();
    let append = |n: usize| {
        let body = format!(r#"{{"namespace":"{}","records":["cmVjb3Jk"]}}"#, namespace(1));
        format!(
            "POST /api/v1/records?n={n} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    stream.write_all(append(1).as_bytes()).expect("first request");
    let (head, body) = read_response(&mut stream, &mut pending);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let first: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    // Two requests in one write: both answered, in order, on the same connection.
    stream.write_all(format!("{}{}", append(2), append(3)).as_bytes()).expect("two requests");
    let sizes: Vec<u64> = (0..2)
        .map(|_| {
            let (head, body) = read_response(&mut stream, &mut pending);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            serde_json::from_slice::<serde_json::Value>(&body).expect("JSON")["size"].as_u64().expect("size")
        })
        .collect();
    let size = first["size"].as_u64().expect("size");
    assert_eq!(sizes, vec![size + 1, size + 2], "answers in the order of the requests");
    stream
        .write_all(
            format!("GET /api/v1/status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("last");
    let (head, _) = read_response(&mut stream, &mut pending);
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("the node closes the connection");
    assert!(rest.is_empty() && pending.is_empty(), "nothing after the last answer");
}
