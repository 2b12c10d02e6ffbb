//! `scripts/bench explorer`: the public explorer of a five-node devnet on TCP loopback (quorum
//! 3), in one run: each view's size gzipped; its time to first byte, p50 and p99, beside the
//! same server answering its static stylesheet (the baseline: goal ≤ 3x); how long an append
//! takes to show on a live page (an event stream's update carrying the new final size),
//! beside the commit-to-final time the node measured for the same appends; and the node's
//! commit-to-final p99 without and with 64 event streams connected, alternated twice.
//! First contentful paint needs a browser: the browser suite (`scripts/browser-test`) does not
//! time pages, so it is not reported here.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::finality::{node_binary_and_dir, percentile, start_devnet};
use crate::sustained::{base64, Api};

/// The views measured (node 1's explorer; its own namespace where one is named).
const VIEWS: [&str; 11] = [
    "/",
    "/members",
    "/members/did:vm:node:dev2",
    "/namespaces",
    "/namespaces/dev:node1",
    "/namespaces/dev:node1/tree",
    "/namespaces/dev:node1/records/100",
    "/witnesses",
    "/evidence",
    "/audit",
    "/verify",
];
/// The baseline: a static file the same server answers.
const STATIC: &str = "/assets/style.css";
/// Requests per view for the time to first byte.
const REQUESTS: usize = 200;
/// Appends timed to the live page, and per phase of the finality comparison.
const APPENDS: usize = 60;
/// Event streams held open in the loaded phases.
const STREAMS: usize = 64;

/// One GET on a fresh connection (made before the clock starts): time to the first byte of
/// the answer, in ms, and the whole answer.
fn fetch(address: &str, path: &str, gzip: bool) -> (f64, Vec<u8>) {
    let mut stream = TcpStream::connect(address).expect("connect to the explorer");
    stream.set_nodelay(true).expect("nodelay");
    let encoding = if gzip { "Accept-Encoding: gzip\r\n" } else { "" };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n{encoding}Connection: close\r\n\r\n");
    let started = Instant::now();
    stream.write_all(request.as_bytes()).expect("ask");
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).expect("an answer");
    let ttfb = started.elapsed().as_secs_f64() * 1000.0;
    let mut answer = first.to_vec();
    stream.read_to_end(&mut answer).expect("the answer");
    (ttfb, answer)
}

/// The body length of an HTTP/1.1 answer (chunked or not).
fn body_bytes(answer: &[u8]) -> usize {
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else { return 0 };
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let mut body = &answer[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return body.len();
    }
    let mut total = 0;
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        total += size;
        body = &body[(end + 2 + size + 2).min(body.len())..];
    }
    total
}

/// An event stream read on a thread of its own: the newest final size of dev:node1 it saw.
fn stream(address: String, stop: Arc<AtomicBool>, seen: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut stream) = TcpStream::connect(&address) else { return };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = write!(stream, "GET /api/v1/events HTTP/1.1\r\nHost: {address}\r\n\r\n");
        let mut pending = String::new();
        let mut buffer = [0u8; 8192];
        while !stop.load(Ordering::Relaxed) {
            let Ok(read) = stream.read(&mut buffer) else { continue };
            if read == 0 {
                return;
            }
            pending.push_str(&String::from_utf8_lossy(&buffer[..read]));
            while let Some(at) = pending.find("\ndata: ") {
                let rest = &pending[at + 7..];
                let Some(end) = rest.find('\n') else { break };
                if let Ok(live) = serde_json::from_str::<serde_json::Value>(&rest[..end]) {
                    if let Some(size) = live["namespaces"]["dev:node1"]["final_size"].as_u64() {
                        seen.fetch_max(size, Ordering::Relaxed);
                    }
                }
                pending = rest[end..].to_string();
            }
            if pending.len() > 1 << 20 {
                pending.clear();
            }
        }
    })
}

/// Appends one record to dev:node1; the size after it.
fn append(api: &Api, sample: usize) -> u64 {
    let body = format!(
        r#"{{"namespace":"dev:node1","records":["{}"]}}"#,
        base64(format!("explorer {sample}").as_bytes())
    );
    let (code, answer) = api.call("POST", "/api/v1/records", body.as_bytes()).expect("append");
    assert_eq!(code, 200, "append refused: {answer}");
    answer["size"].as_u64().expect("size")
}

/// The node's own commit-to-final latencies, oldest first.
fn latencies(api: &Api) -> Vec<f64> {
    let (_, status) = api.call("GET", "/api/v1/status", b"").expect("status");
    status["finality_latencies_ms"]
        .as_array()
        .map(|l| l.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default()
}

/// `APPENDS` appends one at a time, each waited for (through the node's status); the node's
/// latencies for them, sorted.
fn finality(api: &Api, offset: usize) -> Vec<f64> {
    for sample in 0..APPENDS {
        let size = append(api, offset + sample);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, status) = api.call("GET", "/api/v1/status", b"").expect("status");
            let done = status["namespaces"]
                .as_array()
                .and_then(|l| l.iter().find(|n| n["namespace"] == "dev:node1"))
                .and_then(|n| n["final_size"].as_u64())
                .is_some_and(|f| f >= size);
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "dev:node1 at {size} not final after 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Only these appends made receipts of dev:node1 meanwhile: they are the node's newest.
    let all = latencies(api);
    let mut mine: Vec<f64> = all[all.len().saturating_sub(APPENDS)..].to_vec();
    mine.sort_by(f64::total_cmp);
    mine
}

/// Runs the benchmark and prints its figures.
pub fn run(json: bool) {
    let (exe, dir) = node_binary_and_dir();
    eprintln!("starting 5 node processes (quorum 3) with their explorers ...");
    let (_nodes, data) = start_devnet(&exe, &dir.path().join("devnet"), 20, &[]);
    let api = Api::open(&data[0]);
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data[0].join("api.json")).expect("api.json")).expect("json");
    let address = info["explorer"].as_str().expect("the devnet's explorer").to_string();
    eprintln!("appending 1000 records to dev:node1 ...");
    for batch in 0..10 {
        let records: Vec<String> =
            (0..100).map(|i| format!("\"{}\"", base64(format!("record {batch} {i}").as_bytes()))).collect();
        let body = format!(r#"{{"namespace":"dev:node1","records":[{}]}}"#, records.join(","));
        api.call("POST", "/api/v1/records", body.as_bytes()).expect("append");
    }
    std::thread::sleep(Duration::from_secs(2));

    eprintln!("measuring {REQUESTS} answers per view and of the static baseline ...");
    let mut views = Vec::new();
    let ttfb = |path: &str| {
        let mut times: Vec<f64> = (0..REQUESTS).map(|_| fetch(&address, path, true).0).collect();
        times.sort_by(f64::total_cmp);
        times
    };
    let baseline = ttfb(STATIC);
    let (s50, s99) = (percentile(&baseline, 50), percentile(&baseline, 99));
    for path in VIEWS {
        let (_, answer) = fetch(&address, path, true);
        let status = String::from_utf8_lossy(&answer[..12.min(answer.len())]).to_string();
        assert!(status.ends_with("200"), "{path}: {status}");
        let gzipped = body_bytes(&answer);
        let times = ttfb(path);
        views.push((path, gzipped, percentile(&times, 50), percentile(&times, 99)));
    }

    eprintln!("timing {APPENDS} appends to the live page ...");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let reader = stream(address.clone(), Arc::clone(&stop), Arc::clone(&seen));
    std::thread::sleep(Duration::from_millis(500));
    let mut to_page = Vec::new();
    for sample in 0..APPENDS {
        let started = Instant::now();
        let size = append(&api, 10_000 + sample);
        while seen.load(Ordering::Relaxed) < size {
            assert!(started.elapsed() < Duration::from_secs(10), "the page did not show size {size}");
            std::thread::sleep(Duration::from_micros(200));
        }
        to_page.push(started.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let all = latencies(&api);
    let mut page_finals: Vec<f64> = all[all.len().saturating_sub(APPENDS)..].to_vec();
    page_finals.sort_by(f64::total_cmp);
    to_page.sort_by(f64::total_cmp);

    eprintln!("commit to final without and with {STREAMS} event streams, alternated ...");
    let (mut quiet, mut loaded) = (Vec::new(), Vec::new());
    for round in 0..2 {
        quiet.extend(finality(&api, 20_000 + round * 1000));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..STREAMS)
            .map(|_| stream(address.clone(), Arc::clone(&stop), Arc::new(AtomicU64::new(0))))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        loaded.extend(finality(&api, 30_000 + round * 1000));
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            let _ = reader.join();
        }
    }
    quiet.sort_by(f64::total_cmp);
    loaded.sort_by(f64::total_cmp);

    let (p50, p95) = (percentile(&to_page, 50), percentile(&to_page, 95));
    let (f50, f95) = (percentile(&page_finals, 50), percentile(&page_finals, 95));
    let (q99, l99) = (percentile(&quiet, 99), percentile(&loaded, 99));
    if json {
        let value = serde_json::json!({
            "static_ttfb_ms": {"p50": s50, "p99": s99},
            "views": views.iter().map(|(path, bytes, t50, t99)| serde_json::json!({
                "path": path, "gzipped_bytes": bytes, "ttfb_ms": {"p50": t50, "p99": t99}, "ttfb_p99_to_static": t99 / s99,
            })).collect::<Vec<_>>(),
            "append_to_page_ms": {"p50": p50, "p95": p95}, "commit_to_final_same_appends_ms": {"p50": f50, "p95": f95},
            "commit_to_final_p99_ms": {"without_streams": q99, "with_64_streams": l99},
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    println!(
        "explorer of a 5-node devnet (quorum 3), node 1 with 1000+ records; {REQUESTS} answers per view:"
    );
    println!(
        "  baseline: {STATIC}                      time to first byte p50 {s50:>6.2} ms  p99 {s99:>6.2} ms"
    );
    for (path, bytes, t50, t99) in &views {
        println!(
            "  {path:<36} {:>6} bytes gzipped  p50 {t50:>6.2} ms  p99 {t99:>6.2} ms  ({:.2}x the static p99; goal <= 3x, size <= {} KB)",
            bytes,
            t99 / s99,
            if path.contains("/records/") || *path == "/evidence" || *path == "/verify" { 50 } else { 30 }
        );
    }
    println!("  append to the live page (event stream)     p50 {p50:>6.1} ms  p95 {p95:>6.1} ms  (goal: the event within 250 ms)");
    println!("  commit to final of those appends (node)     p50 {f50:>6.1} ms  p95 {f95:>6.1} ms");
    println!(
        "  commit to final p99: {q99:.1} ms without, {l99:.1} ms with {STREAMS} event streams ({} appends each, alternated twice)",
        APPENDS * 2
    );
}
