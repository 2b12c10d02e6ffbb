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
/// All simulated nodes share one signature-verification cache: they verify the same bytes and
/// reach the same verdicts (a real node keeps a small memo of its own).
pub fn run(scenario: &Scenario, seed: u64, progress: impl FnMut(f64)) -> RunReport {
    remembrancer_core::signature::with_verification_cache(|| Simulation::new(scenario, seed).run(progress))
}
