//! The `remembrancer` binary: parse the command line, set up logging, run one subcommand.

mod cli;
mod demo;
mod files;
mod keys;
mod node;
mod sim;
mod verify;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if cli.verbose { "debug" } else { "warn" }));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        cli::Command::Keys(command) => keys::run(command),
        cli::Command::Verify(command) => verify::run(command),
        cli::Command::Demo(args) => demo::run(args),
        cli::Command::Sim(args) => sim::run(args),
        cli::Command::Node(command) => node::run_node(command),
        cli::Command::Federation(command) => node::federation(command),
        cli::Command::Record(command) => node::record(command),
        cli::Command::Proof(args) => node::proof(args),
        cli::Command::Receipts(command) => node::receipts(command),
        cli::Command::Checkpoint(command) => node::checkpoint(command),
        cli::Command::Devnet(args) => node::devnet::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
