//! The partition simulator for researchers: many real federation engines (real signatures)
//! over a simulated network with virtual time and a seeded random source. Scenarios are TOML
//! (`configs/scenarios/`); a run gives a JSON summary, a CSV time series and an SVG chart,
//! byte-identical for the same scenario and seed, and fails when an invariant breaks.

pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;

pub use report::{sweep_summary, to_csv, to_svg, SweepSummary};
pub use run::{RunReport, Simulation, Summary, Violation};
pub use scenario::{Scenario, ScenarioError};

/// Runs `scenario` with `seed`, calling `progress` with the fraction of virtual time done.
/// All simulated nodes share one verifier, lent around the whole run: they verify the same
/// bytes and reach the same verdicts (a real node's engine keeps a small memo of its own).
pub fn run(scenario: &Scenario, seed: u64, progress: impl FnMut(f64)) -> RunReport {
    run_counted(scenario, seed, progress).0
}

/// [`run`], with the Ed25519 operations the simulated nodes computed (the simulator's crypto
/// floor is these counts times the machine's measured costs).
pub fn run_counted(
    scenario: &Scenario,
    seed: u64,
    progress: impl FnMut(f64),
) -> (RunReport, remembrancer_core::signature::Operations) {
    use remembrancer_core::signature::{Verifier, VERIFICATION_CACHE_ENTRIES_MAX};
    let mut verifier = Verifier::new(VERIFICATION_CACHE_ENTRIES_MAX);
    let report = verifier.lend(|| Simulation::new(scenario, seed).run(progress));
    (report, verifier.operations())
}
