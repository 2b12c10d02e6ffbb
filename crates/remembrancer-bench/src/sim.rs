//! Simulator throughput (issue 7): message deliveries per wall-clock second, and the
//! 1000-node split-and-heal run, each held against the crypto floor measured in the same run:
//! the Ed25519 signatures and verifications the run really computed (memo hits excluded),
//! times this machine's cost of one. No simulation of the real engine can beat that floor.

use std::time::Instant;

use remembrancer_core::signature::Operations;
use remembrancer_sim::Scenario;

use crate::ed25519::Rates;

/// Batch size of the batch-verification rate: receipts of a 100-node federation carry 67
/// signatures; larger batches cost about the same per signature.
const BATCH: usize = 67;

/// One measured simulation.
struct SimFigure {
    name: String,
    wall_s: f64,
    deliveries: u64,
    receipts: u64,
    operations: Operations,
    floor_s: f64,
    violations: usize,
}

/// A federation of `nodes` under steady load with the given fanout (the 100-node runs).
fn scenario(nodes: usize, fanout: &str) -> Scenario {
    let quorum = 2 * nodes / 3 + 1;
    let owners: Vec<usize> = (0..10).map(|i| i * nodes / 10).collect();
    let text = format!(
        "name = \"{nodes} nodes, fanout {fanout}\"\nnodes = {nodes}\nquorum = {quorum}\n\
         duration_ms = 30000\nseed = 1\nheartbeat_interval_ms = 2000\nfanout = \"{fanout}\"\n\
         [load]\nowners = {owners:?}\nbatch_interval_ms = 2500\nbatches = 10\n\
         [network]\nlatency = {{ distribution = \"uniform\", min = 5, max = 30 }}\n",
    );
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("benchmark scenario: {e}"))
}

/// The 1000-node split-and-heal run, from `configs/scenarios/` where researchers find it.
fn split_heal_1000() -> Scenario {
    Scenario::from_toml(include_str!("../../../configs/scenarios/split-heal-1000.toml"))
        .unwrap_or_else(|e| panic!("configs/scenarios/split-heal-1000.toml: {e}"))
}

fn measure(scenario: &Scenario) -> SimFigure {
    let start = Instant::now();
    let (report, operations) = remembrancer_sim::run_counted(scenario, 1, |_| {});
    let wall_s = start.elapsed().as_secs_f64();
    SimFigure {
        name: scenario.name.clone(),
        wall_s,
        deliveries: report.summary.messages,
        receipts: report.summary.receipts_finalized,
        operations,
        floor_s: 0.0,
        violations: report.summary.violations.len(),
    }
}

/// Runs the simulator benchmark and prints it (`--json` for programs).
pub fn run(json: bool) {
    eprintln!("measuring Ed25519 sign, strict and batch verify ...");
    let rates_before = Rates::measure(BATCH);
    let runs = [scenario(100, "all"), scenario(100, "log"), split_heal_1000()];
    let mut figures = Vec::new();
    for scenario in &runs {
        eprintln!("simulating {} ...", scenario.name);
        figures.push(measure(scenario));
    }
    // The faster of the measurements before and after: the lower floor, the stricter limit.
    let rates = rates_before.best(Rates::measure(BATCH));
    for figure in &mut figures {
        figure.floor_s = rates.seconds(figure.operations);
    }
    if json {
        let rows: Vec<_> = figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "scenario": f.name, "wall_s": f.wall_s, "deliveries": f.deliveries,
                    "receipts": f.receipts, "signatures": f.operations.signatures,
                    "verifications": f.operations.verifications, "batched": f.operations.batched,
                    "crypto_floor_s": f.floor_s,
                    "deliveries_per_s": f.deliveries as f64 / f.wall_s,
                    "deliveries_per_s_limit": f.deliveries as f64 / f.floor_s,
                    "violations": f.violations,
                })
            })
            .collect();
        let value = serde_json::json!({
            "sign_per_s": rates.sign, "verify_per_s": rates.verify,
            "batch_verify_per_s": rates.batch_verify, "runs": rows,
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    println!(
        "limits on this machine (one core): ed25519 sign {:.1} k/s, strict verify {:.1} k/s, batch verify {:.1} k/s (batches of {BATCH})",
        rates.sign / 1e3,
        rates.verify / 1e3,
        rates.batch_verify / 1e3
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
