//! The `remembrancer` binary: parse the command line, set up logging, run one subcommand.

// `status` is one `serde_json::json!` object, deeper than the macro's default recursion allows.
#![recursion_limit = "256"]

mod cli;
mod demo;
mod files;
mod keys;
mod node;
mod sim;
mod times;
mod verify;

use std::process::ExitCode;

/// `man`: the manual page on standard output, or every command's page in a folder.
fn manual(out: Option<std::path::PathBuf>) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use clap::CommandFactory as _;
    let command = cli::Cli::command();
    match out {
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout())?,
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write into {}", dir.display()))?;
            eprintln!("manual pages written to {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the command line asked for `--json` (on the command or any subcommand).
fn wants_json(matches: &clap::ArgMatches) -> bool {
    matches.try_get_one::<bool>("json").ok().flatten().copied().unwrap_or(false)
        || matches.subcommand().is_some_and(|(_, sub)| wants_json(sub))
}

/// An error as `--json` prints it on standard output: `{"error":{"code","message"}}`, the
/// node's own code when the node refused, else `cli`.
fn json_error(error: &anyhow::Error) -> serde_json::Value {
    match error.downcast_ref::<node::http::Refused>() {
        Some(refused) => serde_json::json!({ "error": {
            "code": refused.code, "message": refused.message, "http_status": refused.status,
        }}),
        None => serde_json::json!({ "error": { "code": "cli", "message": format!("{error:#}") } }),
    }
}

fn main() -> ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = cli::Cli::command().get_matches();
    let json = wants_json(&matches);
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| if cli.verbose { "debug" } else { "warn" }.to_string());
    // Gossipsub logs every message a full send queue drops, at warn and with the message:
    // thousands of lines a second when a node falls behind, which slows it further. The
    // node counts them (`gossip_sends_failed` in `status`) and warns at powers of two
    // instead; RUST_LOG naming `libp2p_gossipsub` still gets them.
    let quiet =
        if directives.contains("libp2p_gossipsub") { "" } else { ",libp2p_gossipsub::behaviour=error" };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{directives}{quiet}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn{quiet}")));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        cli::LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        cli::Command::Keys(command) => keys::run(command),
        cli::Command::Verify(command) => verify::run(command),
        cli::Command::Demo(args) => demo::run(args),
        cli::Command::Sim(args) => sim::run(args),
        cli::Command::Node(command) => node::run_node(command),
        cli::Command::Federation(command) => node::federation(command),
        cli::Command::Record(command) => node::record(command),
        cli::Command::Proof(args) => node::proof(args),
        cli::Command::Namespace(command) => node::messages::run(command),
        cli::Command::Receipts(command) => node::receipts(command),
        cli::Command::Checkpoint(command) => node::checkpoint(command),
        cli::Command::Devnet(args) => node::devnet::run(args),
        cli::Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut cli::Cli::command(), "remembrancer", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Man { out } => manual(out),
    };
    match result {
        Ok(code) => code,
        Err(error) if json => {
            println!("{}", json_error(&error));
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
