//! The example scenarios in `configs/scenarios/` do what the spec promises, runs are
//! reproducible byte for byte, and the safety invariant holds over many random schedules.

use remembrancer_sim::scenario::{Behavior, Byzantine, Latency, Load, Network, Partition, Scenario};
use remembrancer_sim::{run, to_csv, to_svg, RunReport};

fn scenario(name: &str) -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/scenarios/").to_string() + name;
    Scenario::from_toml(&std::fs::read_to_string(&path).expect("read scenario")).expect("valid scenario")
}

fn run_quiet(scenario: &Scenario, seed: u64) -> RunReport {
    run(scenario, seed, |_| {})
}

fn final_size_series(report: &RunReport) -> Vec<u64> {
    report.series.iter().map(|r| r.receipts_finalized).collect()
}

#[test]
fn healthy_federation_finalizes_every_checkpoint() {
    let scenario = scenario("healthy.toml");
    let report = run_quiet(&scenario, scenario.seed);
    let s = &report.summary;
    eprintln!("{}", serde_json::to_string_pretty(s).expect("json"));
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(s.receipts_finalized >= s.checkpoints_anchored - 3, "nearly every anchor is final by the end");
    assert!(s.stalled_namespaces.is_empty());
    assert!(s.finality_ms_p99.is_some_and(|p| p < 200), "{:?}", s.finality_ms_p99);
    assert!(s.rejections.is_empty(), "{:?}", s.rejections);
}

#[test]
fn split_majority_finalizes_minority_stalls_and_all_converge_after_heal() {
    let scenario = scenario("split-heal.toml");
    let report = run_quiet(&scenario, scenario.seed);
    let s = &report.summary;
    eprintln!("{}", serde_json::to_string_pretty(s).expect("json"));
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    // During the split (10 s to 30 s) receipts keep coming: the majority owner's.
    let during = final_size_series(&report);
    assert!(during[29] > during[12], "the majority side finalizes during the split");
    assert_eq!(s.time_to_converge_after_heal_ms.len(), 1, "converged after the heal");
    assert!(s.stalled_namespaces.is_empty(), "the minority owner finalizes again after the heal");
}

#[test]
fn an_equivocator_is_caught_and_no_fork_is_final() {
    let scenario = scenario("equivocator.toml");
    let report = run_quiet(&scenario, scenario.seed);
    let s = &report.summary;
    eprintln!("{}", serde_json::to_string_pretty(s).expect("json"));
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(
        s.equivocators_detected.get("did:vm:node:n0").is_some_and(|n| *n >= 6),
        "{:?}",
        s.equivocators_detected
    );
    assert!(s.time_to_detect_equivocator_ms.is_some());
    assert_eq!(
        s.demoted_everywhere,
        vec!["did:vm:node:n0".to_string()],
        "on probation in every honest registry"
    );
    assert!(s.registry_versions.iter().all(|v| *v == 2), "{:?}", s.registry_versions);
    assert_eq!(
        s.stalled_namespaces,
        vec!["ns:n0".to_string()],
        "the equivocator's namespace never finalizes again"
    );
    assert!(s.rejections.get("NotOwner").is_some_and(|n| *n > 0), "the forger's anchors are refused");
    assert!(
        s.rejections.get("BadSignature").is_some_and(|n| *n > 0),
        "the forger's impostor messages are refused"
    );
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let scenario = scenario("split-heal.toml");
    let a = run_quiet(&scenario, 11);
    let b = run_quiet(&scenario, 11);
    assert_eq!(serde_json::to_string(&a).expect("json"), serde_json::to_string(&b).expect("json"));
    assert_eq!(to_csv(&a), to_csv(&b));
    assert_eq!(to_svg(&a), to_svg(&b));
    let c = run_quiet(&scenario, 12);
    assert_ne!(
        serde_json::to_string(&a.summary).expect("json"),
        serde_json::to_string(&c.summary).expect("json")
    );
}

/// Safety over random schedules: with N nodes, one equivocating owner (f = 1) and
/// q > (N + f) / 2, no two final receipts of one namespace and size carry different roots,
/// whatever the partitions, latencies and losses.
#[test]
fn safety_holds_over_random_schedules() {
    let mut violations = Vec::new();
    for seed in 0..40u64 {
        let mut rng = remembrancer_sim::rng::Rng::new(seed * 7919 + 1);
        let nodes = 4 + rng.range(0, 5) as usize;
        // q > (N + f) / 2 with f = 1.
        let quorum = (nodes.div_ceil(2) + 1) as u32;
        let mut partitions = Vec::new();
        for _ in 0..rng.range(0, 3) {
            let from_ms = rng.range(0, 15_000);
            let cut = rng.range(1, nodes as u64 - 1) as usize;
            partitions.push(Partition {
                groups: vec![(0..cut).collect(), (cut..nodes).collect()],
                from_ms,
                until_ms: from_ms + rng.range(500, 8_000),
            });
        }
        let scenario = Scenario {
            name: format!("random schedule {seed}"),
            nodes,
            quorum,
            duration_ms: 20_000,
            seed,
            seeds: Vec::new(),
            anchor_mode: "independent".to_string(),
            heartbeat_interval_ms: 500,
            load: Load { owners: vec![0, 1], batch_interval_ms: 700, records_per_batch: 3, batches: None },
            network: Network {
                latency: Latency::Exponential { min: 2, mean_extra: rng.range(5, 200) },
                loss: rng.unit() * 0.1,
            },
            partitions,
            crashes: Vec::new(),
            byzantine: vec![Byzantine {
                node: 0,
                behavior: Behavior::Equivocate,
                from_ms: rng.range(0, 5_000),
            }],
        };
        scenario.validate().expect("valid random scenario");
        let report = run_quiet(&scenario, seed);
        violations.extend(
            report
                .summary
                .violations
                .iter()
                .filter(|v| v.invariant == "safety")
                .map(|v| format!("seed {seed}: {v:?}")),
        );
    }
    assert!(violations.is_empty(), "{violations:#?}");
}
