//! The `remembrancer` binary: parse the command line, set up logging, run one subcommand.

mod cli;
mod demo;
mod files;
mod keys;
mod sim;
mod verify;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if cli.verbose { "debug" } else { "warn" }));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.command {
        cli::Command::Keys(command) => keys::run(command),
        cli::Command::Verify(command) => verify::run(command),
        cli::Command::Demo(args) => demo::run(args),
        cli::Command::Sim(args) => sim::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
