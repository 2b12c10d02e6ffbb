//! The public explorer of a real three-node devnet, as a visitor and a Prometheus server see
//! it: every view answers with its headings and shows what its JSON twin says; unknown things
//! are a 404 in the same form; pages are gzipped on request; `/metrics` parses as OpenMetrics,
//! with bounded, prefixed names (ours and libp2p's), and agrees with the JSON.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{namespace, Cluster};

/// GET `url`: status, content type, content encoding and body.
fn get(url: &str, gzip: bool) -> (u16, String, String, Vec<u8>) {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut request = agent.get(url);
    if gzip {
        request = request.header("Accept-Encoding", "gzip");
    }
    let mut response = request.call().expect("the explorer answers");
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    let (status, kind, encoding) =
        (response.status().as_u16(), header("content-type"), header("content-encoding"));
    let body = response.body_mut().with_config().limit(1 << 22).read_to_vec().expect("body");
    (status, kind, encoding, body)
}

fn page(url: &str) -> String {
    let (status, kind, _, body) = get(url, false);
    assert_eq!(status, 200, "{url}");
    assert_eq!(kind, "text/html; charset=utf-8", "{url}");
    String::from_utf8(body).expect("utf-8")
}

fn twin(url: &str) -> serde_json::Value {
    let (status, kind, _, body) = get(url, false);
    assert_eq!((status, kind.as_str()), (200, "application/json"), "{url}");
    serde_json::from_slice(&body).expect("json")
}

#[test]
fn every_view_answers_with_what_its_json_twin_says_and_metrics_parse() {
    let cluster = Cluster::connected(3);
    for i in 1..=3 {
        cluster.append(i, &format!("explorer {i}"));
    }
    let base = cluster.explorer_url(1);
    // A snapshot with every namespace final.
    cluster.wait("the explorer shows three final namespaces", Duration::from_secs(30), |_| {
        twin(&format!("{base}/api/v1/namespaces"))
            .as_array()
            .is_some_and(|l| l.len() == 3 && l.iter().all(|n| n["final_size"].as_u64() >= Some(1)))
    });

    // Overview.
    let html = page(&format!("{base}/"));
    let overview = twin(&format!("{base}/api/v1/overview"));
    assert!(
        html.contains("<h1>Overview</h1>") && html.contains("<h2 id=\"federation\">Federation</h2>"),
        "{html}"
    );
    assert_eq!(overview["quorum"], 2);
    assert!(html.contains(&format!("{} of {} members", overview["quorum"], overview["members"])), "{html}");
    assert!(html.contains("href=\"/api/v1/overview\""), "the page links its twin");
    assert_eq!(overview["node"]["did"], "did:vm:node:dev1");
    assert_eq!(overview["evidence_last_day"], 0);
    assert!(html.contains("came in the last 24 h"), "{html}");

    // Members: every DID, its state as a word.
    let html = page(&format!("{base}/members"));
    let members = twin(&format!("{base}/api/v1/members"));
    assert_eq!(members.as_array().map(Vec::len), Some(3));
    for member in members.as_array().expect("list") {
        let did = member["did"].as_str().expect("did");
        assert!(html.contains(&format!("<code>{did}</code>")), "{did} listed");
        let detail = page(&format!("{base}/members/{did}"));
        assert!(
            detail.contains(&format!("<h1>{did}</h1>")) && detail.contains("> active</span>"),
            "{detail}"
        );
        assert!(
            detail.contains("<h2>State history</h2>") && detail.contains("Recent receipts of others"),
            "{detail}"
        );
        assert_eq!(twin(&format!("{base}/api/v1/members/{did}"))["did"], did);
    }

    // Namespaces and one namespace: sizes and signers as the JSON has them.
    let html = page(&format!("{base}/namespaces"));
    for i in 1..=3 {
        assert!(html.contains(&format!("<code>{}</code>", namespace(i))), "{html}");
    }
    let one = twin(&format!("{base}/api/v1/namespaces/{}", namespace(2)));
    let detail = page(&format!("{base}/namespaces/{}", namespace(2)));
    assert!(detail.contains(&format!("<dt>Final size</dt><dd>{}</dd>", one["final_size"])), "{detail}");
    assert!(detail.contains(one["final_root"].as_str().expect("root")), "{detail}");
    let note = one["note"].as_str().expect("the signed note");
    assert!(
        note.starts_with(&format!("devnet/{}\n", namespace(2)))
            && note.contains("\n\n\u{2014} did:vm:node:dev2 "),
        "{note}"
    );
    assert!(detail.contains(&format!("devnet/{}", namespace(2))), "the note, verbatim: {detail}");
    assert_eq!(one["anchor"], "local", "{one}");
    let own = twin(&format!("{base}/api/v1/namespaces/{}", namespace(1)));
    assert!(
        own["finality_ms_p50"].as_f64().is_some_and(|ms| ms > 0.0),
        "this node's own receipts are timed: {own}"
    );
    assert!(one["finality_ms_p50"].is_null(), "another node's are not: {one}");
    let tree = page(&format!("{base}/namespaces/{}/tree", namespace(1)));
    assert!(
        tree.contains(&format!("<h1>{} tree</h1>", namespace(1))) && tree.contains("<li>leaves 0 to "),
        "{tree}"
    );
    assert_eq!(one["owner"], "did:vm:node:dev2");
    assert!(one["signers"].as_array().is_some_and(|s| s.len() >= 2), "{one}");

    // A record of this node's namespace: the lookup form leads to its page, the bundle
    // downloads and verifies offline; another node's namespace and a record not yet final
    // say why there is no proof.
    let html = page(&format!("{base}/namespaces/{}/records?index=0", namespace(1)));
    assert!(html.contains(&format!("<h1>{} record 0</h1>", namespace(1))), "{html}");
    assert!(html.contains("<q>explorer</q>") || html.contains("Inclusion path"), "{html}");
    let (status, kind, _, bundle) =
        get(&format!("{base}/api/v1/namespaces/{}/records/0?download", namespace(1)), false);
    assert_eq!((status, kind.as_str()), (200, "application/json"));
    let file = cluster.dir.path().join("explorer-proof.json");
    std::fs::write(&file, &bundle).expect("write the bundle");
    let registry = cluster.dir.path().join("registry.yaml");
    let verified = std::process::Command::new(common::exe())
        .args(["verify", "proof"])
        .arg(&file)
        .arg("--registry")
        .arg(&registry)
        .output()
        .expect("verify proof");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    // At a named final size, the proof never changes: caches may keep it for good.
    let bundle: serde_json::Value = serde_json::from_slice(&bundle).expect("json");
    let size = bundle["proof"]["tree_size"].as_u64().expect("size");
    let pinned = ureq::get(&format!("{base}/api/v1/namespaces/{}/records/0?size={size}", namespace(1)))
        .call()
        .expect("pinned");
    let cache =
        pinned.headers().get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(cache, "public, max-age=31536000, immutable");
    let (status, _, _, _) =
        get(&format!("{base}/api/v1/namespaces/{}/records/0?size={}", namespace(1), size + 1000), false);
    assert_eq!(status, 404, "no receipt at a size never final");
    let (status, _, _, body) = get(&format!("{base}/namespaces/{}/records/0", namespace(2)), false);
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("not owned by this node"));
    let (status, _, _, _) = get(&format!("{base}/namespaces/{}/records/999999999", namespace(1)), false);
    assert_eq!(status, 404);

    // Live events: the first is the full state (`update`); a client that says it saw an old
    // snapshot (`Last-Event-ID`) is told to resync, with the same full state.
    let (kind, id, data) = first_event(&base, None);
    assert_eq!(kind, "update");
    let live: serde_json::Value = serde_json::from_str(&data).expect("json");
    assert_eq!(live["sequence"].to_string(), id);
    assert!(live["namespaces"][namespace(1)]["final_size"].as_u64() >= Some(1), "{live}");
    // A snapshot later (one comes every second at least), a client that saw only the one
    // before `id`.
    std::thread::sleep(Duration::from_millis(1200));
    let seen: u64 = id.parse().expect("an id is the snapshot's sequence");
    let (kind, _, _) = first_event(&base, Some(seen - 1));
    assert_eq!(kind, "resync");
    let (kind, _, _) = first_event(&base, Some(seen + 1_000));
    assert_eq!(kind, "resync", "an id of the node's previous run is behind too");

    // The verifier's page and its scripts (the browser suite runs them).
    assert!(page(&format!("{base}/verify")).contains("<h1>Verify a proof</h1>"));
    for script in
        ["/assets/verifier.mjs", "/assets/verify-page.mjs", "/assets/live.js", "/assets/live-worker.js"]
    {
        let (status, kind, _, _) = get(&format!("{base}{script}"), false);
        assert_eq!((status, kind.as_str()), (200, "text/javascript; charset=utf-8"), "{script}");
    }

    // Witnesses: every member a row; in each receipt's column one owner, and its signers
    // cosigned (or late); the chart is an SVG with a title.
    let witnesses = twin(&format!("{base}/api/v1/witnesses"));
    let rows = witnesses["rows"].as_array().expect("rows");
    let columns = witnesses["checkpoints"].as_array().expect("checkpoints").len();
    assert!(rows.len() == 3 && columns >= 3, "{witnesses}");
    for column in 0..columns {
        let cells: Vec<&str> = rows.iter().map(|r| r["cells"][column].as_str().unwrap_or("")).collect();
        assert_eq!(cells.iter().filter(|c| **c == "owner").count(), 1, "{cells:?}");
        assert!(cells.iter().filter(|c| **c == "cosigned" || **c == "late").count() >= 1, "{cells:?}");
    }
    let html = page(&format!("{base}/witnesses"));
    assert!(
        html.contains("<svg class=\"chart\" role=\"img\"") && html.contains("<title id=\"chart-title\">"),
        "{html}"
    );
    assert!(html.contains(&format!("<caption>3 members × {columns} receipts</caption>")), "{html}");
    assert!(page(&format!("{base}/audit")).contains("<h1>Audit trail</h1>"));

    // Search: one match leads to its page; several are listed; none says what to search by.
    assert!(page(&format!("{base}/search?q=did:vm:node:dev2")).contains("<h1>did:vm:node:dev2</h1>"));
    let now = twin(&format!("{base}/api/v1/namespaces/{}", namespace(2)));
    let root = now["final_root"].as_str().expect("root").trim_start_matches("sha256:")[..12].to_string();
    let found = page(&format!("{base}/search?q={root}"));
    assert!(found.contains(&format!("<h1>{}</h1>", namespace(2))), "{root}: {found}");
    assert!(page(&format!("{base}/search?q=dev")).contains("matches for <q>dev</q>"));
    assert!(page(&format!("{base}/search?q=nothing-such")).contains("Nothing here matches"));

    // Evidence: none in an honest devnet, said in words.
    assert!(page(&format!("{base}/evidence")).contains("No evidence"));
    assert_eq!(twin(&format!("{base}/api/v1/evidence")), serde_json::json!([]));

    // What is not there: a 404 page, and a JSON error under /api/.
    let (status, kind, _, body) = get(&format!("{base}/namespaces/%3Cscript%3E"), false);
    let body = String::from_utf8(body).expect("utf-8");
    assert_eq!((status, kind.as_str()), (404, "text/html; charset=utf-8"));
    assert!(body.contains("&lt;script&gt;") && !body.contains("<script>"), "escaped: {body}");
    let (status, _, _, body) = get(&format!("{base}/api/v1/namespaces/none"), false);
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json")["error"]["code"],
        "not_found"
    );

    // gzip on request.
    let (status, _, encoding, _) = get(&format!("{base}/members"), true);
    assert_eq!((status, encoding.as_str()), (200, "gzip"));

    // /metrics: OpenMetrics text, every sample of a declared family, prefixed, bounded.
    let (status, kind, _, body) = get(&format!("{base}/metrics"), false);
    assert_eq!((status, kind.as_str()), (200, "application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let text = String::from_utf8(body).expect("utf-8");
    let metrics = parse_openmetrics(&text);
    assert!(metrics.len() < 500, "{} series: the cardinality is bounded", metrics.len());
    assert_eq!(metrics.get("remembrancer_members{state=\"active\"}"), Some(&3.0), "{text}");
    let final_size =
        metrics.get(&format!("remembrancer_namespace_size{{namespace=\"{}\",kind=\"final\"}}", namespace(2)));
    assert!(final_size.is_some_and(|s| *s >= 1.0), "{text}");
    assert!(metrics.get("remembrancer_finality_seconds_count").is_some_and(|n| *n >= 1.0), "{text}");
    assert!(metrics
        .get("remembrancer_explorer_requests_total{route=\"/members/{did}\"}")
        .is_some_and(|n| *n >= 3.0));
    let validated = |kind: &str, verdict: &str| {
        metrics
            .get(&format!("remembrancer_messages_validated_total{{kind=\"{kind}\",verdict=\"{verdict}\"}}"))
            .copied()
    };
    assert!(validated("countersign", "accepted").is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(validated("anchor", "refused"), Some(0.0), "{text}");
    assert!(metrics.get("remembrancer_witness_cells{kind=\"owner\"}").is_some_and(|n| *n >= 3.0), "{text}");
    assert!(metrics.get("remembrancer_synced_write_p99_seconds").is_some_and(|s| *s > 0.0), "{text}");
    assert_eq!(metrics.get("remembrancer_member_state_changes"), Some(&0.0), "{text}");
    // libp2p's own, from the same node's swarm.
    let established: f64 = metrics
        .iter()
        .filter(|(series, _)| series.starts_with("libp2p_swarm_connections_established_total"))
        .map(|(_, n)| n)
        .sum();
    assert!(established >= 2.0, "{text}");
    assert!(metrics.contains_key("libp2p_gossipsub_messages_total"), "{text}");

    // Every series the devnet's Grafana dashboard asks for is there.
    let dashboard = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/monitoring/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard).expect("dashboard")).expect("json");
    let names: BTreeSet<&str> =
        metrics.keys().map(|series| series.split('{').next().unwrap_or(series)).collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    for expr in panels.iter().flat_map(|p| p["targets"].as_array().into_iter().flatten()).map(|t| &t["expr"])
    {
        let expr = expr.as_str().expect("expr");
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("remembrancer_") || word.starts_with("libp2p_") {
                assert!(names.contains(word), "the dashboard's {word} is in /metrics ({expr})");
            }
        }
    }
}

/// The first event of `/api/v1/events` (read off the socket): its type, id and data.
fn first_event(base: &str, last_seen: Option<u64>) -> (String, String, String) {
    use std::io::{Read as _, Write as _};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let last = last_seen.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    write!(
        stream,
        "GET /api/v1/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n{last}\r\n"
    )
    .expect("ask");
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    while !text.contains("\n\n") || !text.contains("data:") {
        let read = stream.read(&mut buffer).expect("read");
        assert!(read > 0, "the stream ended: {text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("content-type: text/event-stream"), "{text}");
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("event"), field("id"), field("data"))
}

/// Parses OpenMetrics text strictly enough to refuse what a scraper would: each sample
/// `name{labels} value` of a family declared by `# TYPE` before it, names under the
/// `remembrancer_` or `libp2p_` prefix, no PeerId in a label, and `# EOF` last. Samples by name and labels.
fn parse_openmetrics(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "ends with # EOF");
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut helped = BTreeSet::new();
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name");
            assert!(helped.insert(name.to_string()), "one HELP per family: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().expect("name"), parts.next().expect("type"));
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            assert!(name.starts_with("remembrancer_") || name.starts_with("libp2p_"), "{line}");
            families.insert(name.to_string(), kind.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (name, unit) = rest.split_once(' ').expect("`# UNIT name unit`");
            assert!(name.ends_with(&format!("_{unit}")), "a family's name ends with its unit: {line}");
            continue;
        }
        assert!(!line.starts_with('#'), "no other comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        let name = series.split('{').next().expect("name");
        let family = families
            .keys()
            .find(|f| {
                name == f.as_str()
                    || ["_total", "_sum", "_count", "_bucket"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(f.as_str()))
            })
            .unwrap_or_else(|| panic!("{name} belongs to a family declared before it"));
        if families[family] == "counter" {
            assert!(name.ends_with("_total"), "a counter's sample ends in _total: {line}");
        }
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "{line}");
        }
        assert!(!series.contains("12D3Koo"), "no PeerId as a label: {line}");
        samples.insert(series.to_string(), value);
    }
    samples
}

/// A thousand idle connections, 64 slow ones (half a request head each) and 64 live event
/// streams held open on the explorer: a visitor's page still loads (well within the 10 s
/// after which idle ones are closed), and the engine keeps finalizing.
#[test]
fn a_thousand_idle_connections_keep_no_visitor_waiting_nor_the_engine() {
    use std::io::Write as _;
    let cluster = Cluster::connected(3);
    let base = cluster.explorer_url(1);
    let address = base.trim_start_matches("http://").to_string();
    let idle: Vec<std::net::TcpStream> =
        (0..1000).map(|_| std::net::TcpStream::connect(&address).expect("an idle connection")).collect();
    let slow: Vec<std::net::TcpStream> = (0..64)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).expect("a slow connection");
            stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n").expect("half a head");
            stream
        })
        .collect();
    // 64 live event streams, each read up to its first event.
    let streams: Vec<std::net::TcpStream> = (0..64)
        .map(|_| {
            use std::io::Read as _;
            let mut stream = std::net::TcpStream::connect(&address).expect("an event stream");
            write!(stream, "GET /api/v1/events HTTP/1.1\r\nHost: {address}\r\n\r\n").expect("ask");
            stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let mut first = [0u8; 512];
            let read = stream.read(&mut first).expect("the stream answers");
            assert!(String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"));
            stream
        })
        .collect();
    let metrics = String::from_utf8(get(&format!("{base}/metrics"), false).3).expect("utf-8");
    assert!(metrics.contains("remembrancer_explorer_event_streams 64"), "{metrics}");
    let started = std::time::Instant::now();
    let config = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build();
    let answer = ureq::Agent::new_with_config(config).get(&format!("{base}/members")).call();
    assert!(answer.is_ok_and(|a| a.status() == 200), "the page loaded beside 1128 held connections");
    eprintln!("a page beside 1128 held connections: {:?}", started.elapsed());
    let size = cluster.append(1, "beside idle connections");
    cluster.wait("the append is final", Duration::from_secs(20), |c| {
        c.status(1)["namespaces"].as_array().is_some_and(|l| {
            l.iter()
                .any(|n| n["namespace"] == namespace(1).as_str() && n["final_size"].as_u64() >= Some(size))
        })
    });
    drop((idle, slow, streams));
}
