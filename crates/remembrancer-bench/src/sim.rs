//! Simulator throughput (issue 7): message deliveries per wall-clock second, and the
//! 1000-node split-and-heal run, each held against the crypto floor measured in the same run:
//! the Ed25519 signatures and verifications the run really computed (memo hits excluded),
//! times this machine's cost of one. No simulation of the real engine can beat that floor.

use std::hint::black_box;
use std::time::Instant;

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use remembrancer_core::signature::operations;
use remembrancer_sim::Scenario;

/// Sign and strict-verify rates (per second) on this machine, best of a few rounds.
fn crypto_rates() -> (f64, f64) {
    let key = SigningKey::from_bytes(&[5u8; 32]);
    let public = key.verifying_key();
    let message = [9u8; 300];
    let signature: Signature = key.sign(&message);
    let (mut sign, mut verify) = (0f64, 0f64);
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..5_000 {
            black_box(key.sign(black_box(&message)));
        }
        sign = sign.max(5_000.0 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        for _ in 0..3_000 {
            black_box(public.verify_strict(black_box(&message), &signature).is_ok());
        }
        verify = verify.max(3_000.0 / start.elapsed().as_secs_f64());
    }
    (sign, verify)
}

/// One measured simulation.
struct SimFigure {
    name: String,
    wall_s: f64,
    deliveries: u64,
    receipts: u64,
    signatures: u64,
    verifications: u64,
    floor_s: f64,
    violations: usize,
}

fn scenario(nodes: usize, fanout: &str, split: bool) -> Scenario {
    let quorum = 2 * nodes / 3 + 1;
    let owners: Vec<usize> = (0..10).map(|i| i * nodes / 10).collect();
    let mut text = format!(
        "name = \"{nodes} nodes, fanout {fanout}{}\"\nnodes = {nodes}\nquorum = {quorum}\n\
         duration_ms = {}\nseed = 1\nheartbeat_interval_ms = {}\nfanout = \"{fanout}\"\n\
         [load]\nowners = {owners:?}\nbatch_interval_ms = 2500\nbatches = 10\n\
         [network]\nlatency = {{ distribution = \"uniform\", min = 5, max = 30 }}\n",
        if split { ", 70/30 split" } else { "" },
        if split { 40_000 } else { 30_000 },
        if nodes >= 1000 { 4_000 } else { 2_000 },
    );
    if split {
        let cut = nodes * 7 / 10;
        let majority: Vec<usize> = (0..cut).collect();
        let minority: Vec<usize> = (cut..nodes).collect();
        text.push_str(&format!(
            "[[partition]]\ngroups = [{majority:?}, {minority:?}]\nfrom_ms = 8000\nuntil_ms = 16000\n"
        ));
    }
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("benchmark scenario: {e}"))
}

fn measure(scenario: &Scenario) -> SimFigure {
    let before = operations();
    let start = Instant::now();
    let report = remembrancer_sim::run(scenario, 1, |_| {});
    let wall_s = start.elapsed().as_secs_f64();
    let after = operations();
    SimFigure {
        name: scenario.name.clone(),
        wall_s,
        deliveries: report.summary.messages,
        receipts: report.summary.receipts_finalized,
        signatures: after.signatures - before.signatures,
        verifications: after.verifications - before.verifications,
        floor_s: 0.0,
        violations: report.summary.violations.len(),
    }
}

/// Runs the simulator benchmark and prints it (`--json` for programs).
pub fn run(json: bool) {
    eprintln!("measuring Ed25519 sign and strict verify ...");
    let (sign_before, verify_before) = crypto_rates();
    let runs = [scenario(100, "all", false), scenario(100, "log", false), scenario(1000, "log", true)];
    let mut figures = Vec::new();
    for scenario in &runs {
        eprintln!("simulating {} ...", scenario.name);
        figures.push(measure(scenario));
    }
    let (sign_after, verify_after) = crypto_rates();
    // The faster of the measurements before and after: the lower floor, the stricter limit.
    let (sign_rate, verify_rate) = (sign_before.max(sign_after), verify_before.max(verify_after));
    for figure in &mut figures {
        figure.floor_s = figure.signatures as f64 / sign_rate + figure.verifications as f64 / verify_rate;
    }
    if json {
        let rows: Vec<_> = figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "scenario": f.name, "wall_s": f.wall_s, "deliveries": f.deliveries,
                    "receipts": f.receipts, "signatures": f.signatures,
                    "verifications": f.verifications, "crypto_floor_s": f.floor_s,
                    "deliveries_per_s": f.deliveries as f64 / f.wall_s,
                    "deliveries_per_s_limit": f.deliveries as f64 / f.floor_s,
                    "violations": f.violations,
                })
            })
            .collect();
        let value = serde_json::json!({ "sign_per_s": sign_rate, "verify_per_s": verify_rate, "runs": rows });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    println!(
        "limits on this machine (one core): ed25519 sign {:.1} k/s, strict verify {:.1} k/s",
        sign_rate / 1e3,
        verify_rate / 1e3
    );
    println!(
        "{:<34} {:>8} {:>11} {:>9} {:>12} {:>9} {:>12} {:>9}",
        "scenario", "wall s", "deliveries", "receipts", "deliveries/s", "floor s", "limit/s", "of limit"
    );
    for f in &figures {
        println!(
            "{:<34} {:>8.1} {:>11} {:>9} {:>12.0} {:>9.1} {:>12.0} {:>8.0}%{}",
            f.name,
            f.wall_s,
            f.deliveries,
            f.receipts,
            f.deliveries as f64 / f.wall_s,
            f.floor_s,
            f.deliveries as f64 / f.floor_s,
            100.0 * f.floor_s / f.wall_s,
            if f.violations > 0 { "  INVARIANT VIOLATED" } else { "" },
        );
    }
    let big = &figures[2];
    println!(
        "1000 nodes, 100 checkpoints, 700/300 split: {:.1} s wall (target 60 s) {}",
        big.wall_s,
        if big.wall_s <= 60.0 { "meets" } else { "BELOW" }
    );
    let all = &figures[0];
    println!(
        "100 nodes: {:.0} deliveries/s (target 2 M/s; this machine's crypto floor allows {:.0}/s) {}",
        all.deliveries as f64 / all.wall_s,
        all.deliveries as f64 / all.floor_s,
        if all.deliveries as f64 / all.wall_s >= 2e6 { "meets" } else { "BELOW" }
    );
}
