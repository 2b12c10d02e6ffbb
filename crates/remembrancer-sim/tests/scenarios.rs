//! The example scenarios in `configs/scenarios/` do what the spec promises, runs are
//! reproducible byte for byte, and the safety invariant holds over many random schedules.

use remembrancer_sim::scenario::{
    Behavior, Byzantine, Latency, Load, Messages, Network, Partition, Scenario,
};
use remembrancer_sim::{run, to_csv, to_svg, RunReport};

fn scenario(name: &str) -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/scenarios/").to_string() + name;
    Scenario::from_toml(&std::fs::read_to_string(&path).expect("read scenario")).expect("valid scenario")
}

fn run_quiet(scenario: &Scenario, seed: u64) -> RunReport {
    run(scenario, seed, |_| {})
}

/// A random schedule's partitions: `count` cuts of the nodes in two, each starting at a time
/// drawn from `from` and lasting a time drawn from `length` (ms).
fn random_partitions(
    rng: &mut remembrancer_sim::rng::Rng,
    nodes: usize,
    count: u64,
    from: (u64, u64),
    length: (u64, u64),
) -> Vec<Partition> {
    (0..count)
        .map(|_| {
            let from_ms = rng.range(from.0, from.1);
            let cut = rng.range(1, nodes as u64 - 1) as usize;
            Partition {
                groups: vec![(0..cut).collect(), (cut..nodes).collect()],
                from_ms,
                until_ms: from_ms + rng.range(length.0, length.1),
            }
        })
        .collect()
}

/// A random schedule's scenario: `nodes` under `quorum` for `duration_ms`, with its load,
/// network and partitions; independent anchoring, fanout `all`, no messages, no crash and
/// no byzantine node (a test sets those it needs over this).
#[allow(clippy::too_many_arguments)]
fn random_scenario(
    name: String,
    nodes: usize,
    quorum: u32,
    duration_ms: u64,
    seed: u64,
    load: Load,
    network: Network,
    partitions: Vec<Partition>,
) -> Scenario {
    Scenario {
        name,
        nodes,
        quorum,
        duration_ms,
        seed,
        seeds: Vec::new(),
        anchor_mode: "independent".to_string(),
        heartbeat_interval_ms: 500,
        epoch_ms: 5000,
        anchor_deadline_ms: 2000,
        fanout: "all".to_string(),
        messages: None,
        load,
        network,
        partitions,
        crashes: Vec::new(),
        byzantine: Vec::new(),
    }
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
        let count = rng.range(0, 3);
        let partitions = random_partitions(&mut rng, nodes, count, (0, 15_000), (500, 8_000));
        let network = Network {
            latency: Latency::Exponential { min: 2, mean_extra: rng.range(5, 200) },
            loss: rng.unit() * 0.1,
        };
        let load = Load { owners: vec![0, 1], batch_interval_ms: 700, records_per_batch: 3, batches: None };
        let scenario = Scenario {
            fanout: if seed % 2 == 0 { "log".to_string() } else { "all".to_string() },
            byzantine: vec![Byzantine {
                node: 0,
                behavior: Behavior::Equivocate,
                from_ms: rng.range(0, 5_000),
            }],
            ..random_scenario(
                format!("random schedule {seed}"),
                nodes,
                quorum,
                20_000,
                seed,
                load,
                network,
                partitions,
            )
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

#[test]
fn a_crashed_hybrid_primary_is_replaced_by_a_secondary_and_modes_trade_anchors() {
    let hybrid = scenario("hybrid-crashed-anchor.toml");
    let report = run_quiet(&hybrid, hybrid.seed);
    let s = &report.summary;
    eprintln!("{}", serde_json::to_string_pretty(s).expect("json"));
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let epochs = hybrid.duration_ms / hybrid.epoch_ms;
    // Every completed epoch (the last ends with the run) is anchored, some by a secondary.
    assert!(s.epochs_anchored >= epochs - 1, "{} of {epochs} epochs anchored", s.epochs_anchored);
    assert!(s.epochs_anchored_by_secondary >= 1, "a secondary took over from the crashed primary");
    assert_eq!(s.anchors_issued, s.epochs_anchored, "one anchor per epoch");

    let mut collaborative = hybrid.clone();
    collaborative.anchor_mode = "collaborative".to_string();
    let c = run_quiet(&collaborative, hybrid.seed).summary;
    assert!(c.epochs_anchored < s.epochs_anchored, "collaborative mode misses the crashed primary's epochs");
    assert_eq!(c.epochs_anchored_by_secondary, 0);

    let mut independent = hybrid.clone();
    independent.anchor_mode = "independent".to_string();
    let i = run_quiet(&independent, hybrid.seed).summary;
    assert_eq!(i.anchors_issued, i.receipts_finalized, "independent: one anchor per final receipt");
    assert!(
        i.anchors_issued > 5 * s.anchors_issued,
        "collaboration saves anchors: {} vs {}",
        i.anchors_issued,
        s.anchors_issued
    );
}

/// Convergence over random schedules: whatever the partitions, latencies and losses, once the
/// network heals every honest node holds every receipt its owner finalized, and no invariant
/// breaks.
#[test]
fn convergence_holds_over_random_schedules() {
    let mut failures = Vec::new();
    for seed in 0..25u64 {
        let mut rng = remembrancer_sim::rng::Rng::new(seed * 104_729 + 3);
        let nodes = 3 + rng.range(0, 5) as usize;
        let quorum = (nodes / 2 + 1) as u32;
        let count = rng.range(0, 3);
        let partitions = random_partitions(&mut rng, nodes, count, (0, 20_000), (500, 5_000));
        let modes = ["independent", "collaborative", "hybrid"];
        let network = Network {
            latency: Latency::Exponential { min: 2, mean_extra: rng.range(5, 100) },
            loss: rng.unit() * 0.05,
        };
        let load =
            Load { owners: vec![0, nodes - 1], batch_interval_ms: 900, records_per_batch: 2, batches: None };
        let scenario = Scenario {
            anchor_mode: modes[(seed % 3) as usize].to_string(),
            fanout: if seed % 2 == 0 { "log".to_string() } else { "all".to_string() },
            ..random_scenario(
                format!("random convergence {seed}"),
                nodes,
                quorum,
                45_000,
                seed,
                load,
                network,
                partitions,
            )
        };
        scenario.validate().expect("valid random scenario");
        let report = run_quiet(&scenario, seed);
        failures.extend(report.summary.violations.iter().map(|v| format!("seed {seed}: {v:?}")));
        if !report.summary.stalled_namespaces.is_empty() {
            failures.push(format!("seed {seed}: stalled {:?}", report.summary.stalled_namespaces));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_scenario_in_configs_is_valid_and_the_benchmarks_1000_node_split_is_among_them() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).expect("configs/scenarios") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read scenario");
        let parsed = Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        names.push((path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string(), parsed));
    }
    let (_, split) =
        names.iter().find(|(name, _)| name == "split-heal-1000.toml").expect("the 1000-node split");
    assert_eq!((split.nodes, split.quorum), (1000, 667));
    assert_eq!(split.partitions[0].groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![700, 300]);
}

/// Cross-namespace messages over random schedules: whatever the partitions, latencies and
/// losses, no message is run twice by its target, and once the network is whole again every
/// message is acknowledged or its TIMEOUT is proven (the run's invariants); some deadlines
/// pass during a split and come back `expired`, the rest `acked`.
#[test]
fn messages_are_run_once_and_never_lost_over_random_schedules() {
    let mut failures = Vec::new();
    let (mut sent, mut acked, mut expired) = (0, 0, 0);
    for seed in 0..12u64 {
        let mut rng = remembrancer_sim::rng::Rng::new(seed * 7_919 + 11);
        let nodes = 4 + rng.range(0, 3) as usize;
        let quorum = (nodes / 2 + 1) as u32;
        let count = rng.range(1, 2);
        let partitions = random_partitions(&mut rng, nodes, count, (2_000, 25_000), (2_000, 10_000));
        let messages = Messages { interval_ms: 700, deadline_ms: rng.range(2_000, 8_000), quiet_ms: None };
        let network = Network {
            latency: Latency::Exponential { min: 2, mean_extra: rng.range(5, 60) },
            loss: rng.unit() * 0.03,
        };
        let load = Load {
            owners: vec![0, 1, nodes - 1],
            batch_interval_ms: 2000,
            records_per_batch: 2,
            batches: None,
        };
        let scenario = Scenario {
            messages: Some(messages),
            ..random_scenario(
                format!("random messages {seed}"),
                nodes,
                quorum,
                60_000,
                seed,
                load,
                network,
                partitions,
            )
        };
        scenario.validate().expect("valid random scenario");
        let s = run_quiet(&scenario, seed).summary;
        failures.extend(s.violations.iter().map(|v| format!("seed {seed}: {v:?}")));
        if s.xmsg_refused > 0 {
            failures.push(format!("seed {seed}: {} deliveries refused: {:?}", s.xmsg_refused, s.rejections));
        }
        sent += s.xmsg_sent;
        acked += s.xmsg_acked;
        expired += s.xmsg_expired;
    }
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!("{sent} messages sent, {acked} acked, {expired} expired");
    assert!(sent >= 12 * 100, "{sent} messages");
    assert!(acked > sent / 2 && expired > 0, "{acked} acked, {expired} expired of {sent}");
}
