//! Command-line definitions (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Remembrancer: a sovereign memory node of an anchor federation.
#[derive(Parser, Debug)]
#[command(name = "remembrancer", version, about, long_about = None)]
pub struct Cli {
    /// Log debug detail to stderr (or set RUST_LOG).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate or show node keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify a receipt, a proof bundle or a cosigned checkpoint offline against a registry.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Offline demo: build a tree, sign, countersign with three local keys, verify the receipt.
    Demo(DemoArgs),
    /// Simulate a federation scenario (TOML) deterministically: partitions, delays, crashes,
    /// lying peers; writes a JSON summary, a CSV time series and an SVG chart.
    Sim(SimArgs),
}

/// `sim` arguments.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// The scenario file (see configs/scenarios/).
    pub scenario: PathBuf,
    /// Folder for summary.json, series.csv and finality.svg (one set per seed).
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Run this seed instead of the scenario's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the summaries as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate a node key (written with mode 0600) for an alias DID.
    Generate {
        /// The alias DID the registry will list, e.g. did:vm:node:east1.
        #[arg(long)]
        did: String,
        /// Where to write the key file.
        #[arg(long, default_value = "node.key")]
        out: PathBuf,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the public identity of a key file (never the secret).
    Show {
        /// The key file.
        #[arg(long, default_value = "node.key")]
        key: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments every `verify` subcommand takes.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The file to verify.
    pub file: PathBuf,
    /// The federation registry: YAML (`federation:`) or a registry update JSON.
    #[arg(long)]
    pub registry: PathBuf,
    /// The chain of applied registry updates after that registry (JSON list, as nodes keep
    /// it): verifies statements counted under a later registry version.
    #[arg(long)]
    pub updates: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `verify` subcommands.
#[derive(Subcommand, Debug)]
pub enum VerifyCommand {
    /// A federation receipt (JSON).
    Receipt(VerifyArgs),
    /// A proof bundle: record, inclusion proof and cosigned checkpoint (JSON).
    Proof(VerifyArgs),
    /// A cosigned checkpoint as a C2SP signed note.
    Checkpoint(VerifyArgs),
}

/// `demo` arguments.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's keys, registry, receipt, checkpoint and bundle (replaced).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Records to append.
    #[arg(long, default_value_t = 1000)]
    pub records: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
