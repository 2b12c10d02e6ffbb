//! `remembrancer sim SCENARIO.toml`: runs the deterministic simulator for each seed, writes
//! the reports, and exits 1 when an invariant is violated, printing the schedule that broke it.

use std::io::IsTerminal as _;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use remembrancer_sim::scenario::SCENARIO_BYTES_MAX;
use remembrancer_sim::{sweep_summary, to_csv, to_svg, RunReport, Scenario};

use crate::cli::SimArgs;
use crate::files::{read_bounded, write_public};

fn print_summary(report: &RunReport) {
    let s = &report.summary;
    let ms = |v: Option<u64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".to_string());
    println!(
        "{} (seed {}): {} nodes, quorum {}, {} s virtual",
        s.scenario,
        s.seed,
        s.nodes,
        s.quorum,
        s.duration_ms / 1000
    );
    println!(
        "  receipts final {} of {} anchored; finality p50 {} p90 {} p99 {}",
        s.receipts_finalized,
        s.checkpoints_anchored,
        ms(s.finality_ms_p50),
        ms(s.finality_ms_p90),
        ms(s.finality_ms_p99)
    );
    println!(
        "  {} deliveries, {} bytes ({} per receipt); stalled namespaces: {}",
        s.messages,
        s.bytes,
        s.messages_per_receipt.map(|m| format!("{m:.0} deliveries")).unwrap_or_else(|| "-".to_string()),
        if s.stalled_namespaces.is_empty() { "none".to_string() } else { s.stalled_namespaces.join(", ") }
    );
    if s.anchor_mode == "independent" {
        println!("  anchors issued to the target: {} (independent: one per final receipt)", s.anchors_issued);
    } else {
        println!(
            "  anchors issued to the target: {} ({}: {} epochs anchored, {} by a secondary)",
            s.anchors_issued, s.anchor_mode, s.epochs_anchored, s.epochs_anchored_by_secondary
        );
    }
    if s.xmsg_sent > 0 {
        println!(
            "  cross-namespace messages: {} sent, {} acked, {} expired (proven TIMEOUT), {} refused",
            s.xmsg_sent, s.xmsg_acked, s.xmsg_expired, s.xmsg_refused
        );
    }
    if !s.demoted_everywhere.is_empty() {
        println!("  on probation in every honest registry: {}", s.demoted_everywhere.join(", "));
    }
    if s.evidence_raised > 0 {
        let who: Vec<String> =
            s.equivocators_detected.iter().map(|(did, n)| format!("{did} by {n} nodes")).collect();
        println!(
            "  equivocation evidence: {} ({}), first {} after the first fork",
            s.evidence_raised,
            who.join(", "),
            ms(s.time_to_detect_equivocator_ms)
        );
    }
    if !s.time_to_converge_after_heal_ms.is_empty() {
        let times: Vec<String> = s.time_to_converge_after_heal_ms.iter().map(|t| format!("{t} ms")).collect();
        println!("  converged after heal/restart in {}", times.join(", "));
    }
    if !s.rejections.is_empty() {
        let counts: Vec<String> = s.rejections.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!("  refused messages: {}", counts.join(", "));
    }
    for violation in &s.violations {
        println!("  VIOLATION {} at {} ms: {}", violation.invariant, violation.at_ms, violation.detail);
    }
}

/// Runs the `sim` subcommand.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_bounded(&args.scenario, SCENARIO_BYTES_MAX)?;
    let text =
        String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", args.scenario.display()))?;
    let scenario =
        Scenario::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.scenario.display()))?;
    let seeds = match args.seed {
        Some(seed) => vec![seed],
        None => scenario.seeds_to_run(),
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let show_progress = std::io::stderr().is_terminal();
    let mut reports = Vec::new();
    for seed in &seeds {
        let report = remembrancer_sim::run(&scenario, *seed, |done| {
            if show_progress {
                let filled = (done * 30.0) as usize;
                eprint!(
                    "\r  seed {seed} [{}{}] {:>3.0}%",
                    "#".repeat(filled),
                    " ".repeat(30 - filled.min(30)),
                    done * 100.0
                );
                let _ = std::io::stderr().flush();
            }
        });
        if show_progress {
            eprintln!();
        }
        let suffix = if seeds.len() > 1 { format!("-seed{seed}") } else { String::new() };
        write_public(
            &args.out.join(format!("summary{suffix}.json")),
            serde_json::to_string_pretty(&report.summary)?.as_bytes(),
        )?;
        write_public(&args.out.join(format!("series{suffix}.csv")), to_csv(&report).as_bytes())?;
        write_public(&args.out.join(format!("finality{suffix}.svg")), to_svg(&report).as_bytes())?;
        tracing::info!(seed, events = report.summary.events, "simulated");
        reports.push(report);
    }
    let sweep = (reports.len() > 1).then(|| sweep_summary(&reports));
    if let Some(sweep) = &sweep {
        write_public(&args.out.join("sweep.json"), serde_json::to_string_pretty(sweep)?.as_bytes())?;
    }
    if args.json {
        let summaries: Vec<_> = reports.iter().map(|r| &r.summary).collect();
        println!("{}", serde_json::json!({ "runs": summaries, "sweep": sweep }));
    } else {
        for report in &reports {
            print_summary(report);
        }
        if let Some(sweep) = &sweep {
            println!("sweep over {} seeds: {}", sweep.seeds.len(), serde_json::to_string(sweep)?);
        }
        println!("reports in {}", args.out.display());
    }
    let violated: Vec<&RunReport> = reports.iter().filter(|r| !r.summary.violations.is_empty()).collect();
    if violated.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for report in violated {
        eprintln!(
            "invariant violated: replay with `remembrancer sim {} --seed {}` (the scenario and seed fix the whole schedule)",
            args.scenario.display(),
            report.summary.seed
        );
    }
    Ok(ExitCode::from(1))
}
