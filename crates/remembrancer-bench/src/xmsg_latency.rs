//! `scripts/bench xmsg-latency`: cross-namespace messages between five node processes on TCP
//! loopback (quorum 3, the devnet's 20 ms checkpoint interval), one at a time, each source
//! sending to each other namespace in turn: from `POST /api/v1/messages` to the target's
//! RECEIPT, as the source learns it (the target owner's signed notice, one stream hop after
//! the RECEIPT is recorded), and to the target's ACK proven at the source; beside the
//! commit-to-final latency the same nodes measure in the same run. The goals: RECEIPT p99 at
//! most 2 checkpoint intervals + 3 × the final p99; the ACK at most twice that.

use std::time::{Duration, Instant};

use crate::finality::{node_binary_and_dir, percentile, start_devnet, NODES};
use crate::sustained::Api;

/// Messages measured (after one warm-up message per node).
const SAMPLES: usize = 200;
/// The checkpoint interval (`batch_interval_ms`), the devnet's.
const INTERVAL_MS: u64 = 20;
/// Pause between two messages.
const GAP: Duration = Duration::from_millis(20);

fn namespace(node: usize) -> String {
    format!("dev:node{}", node + 1)
}

/// Sends one message from `from` to `to` and waits for its ACK; (send → RECEIPT, send → ACK)
/// in milliseconds, by the source's clock.
fn one_message(api: &Api, from: usize, to: usize, sample: usize) -> (f64, f64) {
    let body = serde_json::json!({
        "source": namespace(from),
        "target": namespace(to),
        "action": "notify",
        "operation": "status.update",
        "parameters": { "sample": sample },
    });
    let (code, sent) = api.call("POST", "/api/v1/messages", body.to_string().as_bytes()).expect("send");
    assert_eq!(code, 200, "message refused: {sent}");
    let id = sent["id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let (_, entry) = api.call("GET", &format!("/api/v1/messages?id={id}"), b"").expect("status");
        if entry["status"] == "acked" {
            let at = |field: &str| entry[field].as_u64().expect(field) as f64;
            let sent = at("sent_at_ms");
            return (at("delivered_at_ms") - sent, at("answered_at_ms") - sent);
        }
        assert!(Instant::now() < deadline, "message {id} not acked after 10 s: {entry}");
    }
}

/// Runs the benchmark and prints its figures.
pub fn run(json: bool) {
    let (exe, dir) = node_binary_and_dir();
    eprintln!("starting {NODES} node processes (quorum 3, checkpoint interval {INTERVAL_MS} ms) ...");
    let (_nodes, data) =
        start_devnet(&exe, &dir.path().join("devnet"), INTERVAL_MS, &[crate::finality::NO_EXPLORER]);
    let apis: Vec<Api> = data.iter().map(|d| Api::open(d)).collect();
    eprintln!("sending {SAMPLES} messages, one at a time ...");
    let (mut receipts, mut acks) = (Vec::new(), Vec::new());
    for sample in 0..SAMPLES + NODES {
        let from = sample % NODES;
        let to = (from + 1 + (sample / NODES) % (NODES - 1)) % NODES;
        let (receipt, ack) = one_message(&apis[from], from, to, sample);
        if sample >= NODES {
            receipts.push(receipt);
            acks.push(ack);
        }
        std::thread::sleep(GAP);
    }
    // Each node's commit-to-final latencies over the same run (its first, cold, dropped).
    let mut finals = Vec::new();
    for api in &apis {
        let (_, status) = api.call("GET", "/api/v1/status", b"").expect("status");
        let latencies = status["finality_latencies_ms"].as_array().cloned().unwrap_or_default();
        finals.extend(latencies.iter().skip(1).filter_map(|v| v.as_f64()));
    }
    for list in [&mut receipts, &mut acks, &mut finals] {
        list.sort_by(f64::total_cmp);
    }
    let (r50, r99) = (percentile(&receipts, 50), percentile(&receipts, 99));
    let (a50, a99) = (percentile(&acks, 50), percentile(&acks, 99));
    let (f50, f99) = (percentile(&finals, 50), percentile(&finals, 99));
    let receipt_goal = 2.0 * INTERVAL_MS as f64 + 3.0 * f99;
    let ack_goal = 2.0 * receipt_goal;
    if json {
        let value = serde_json::json!({
            "nodes": NODES, "quorum": 3, "checkpoint_interval_ms": INTERVAL_MS,
            "messages": receipts.len(),
            "send_to_receipt_ms": {"p50": r50, "p99": r99},
            "send_to_ack_ms": {"p50": a50, "p99": a99},
            "commit_to_final_ms": {"p50": f50, "p99": f99, "samples": finals.len()},
            "receipt_goal_ms": receipt_goal, "ack_goal_ms": ack_goal,
            "receipt_p99_to_goal": r99 / receipt_goal, "ack_p99_to_goal": a99 / ack_goal,
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    println!(
        "{NODES} nodes on TCP loopback, quorum 3, checkpoint interval {INTERVAL_MS} ms, {} messages:",
        receipts.len()
    );
    println!("  baseline: commit to final (same nodes, same run)  p50 {f50:>7.2} ms  p99 {f99:>7.2} ms  ({} receipts)", finals.len());
    println!("  ours: send to RECEIPT at the target              p50 {r50:>7.2} ms  p99 {r99:>7.2} ms  ({:.2}x the goal {receipt_goal:.1} ms = 2 intervals + 3x final p99)", r99 / receipt_goal);
    println!("  ours: send to ACK proven at the source           p50 {a50:>7.2} ms  p99 {a99:>7.2} ms  ({:.2}x the goal {ack_goal:.1} ms = twice that)", a99 / ack_goal);
    let verdict = |ok: bool| if ok { "meets" } else { "BELOW" };
    println!("target RECEIPT p99 <= 2 intervals + 3x final p99: {}", verdict(r99 <= receipt_goal));
    println!("target ACK p99 <= twice that: {}", verdict(a99 <= ack_goal));
}
