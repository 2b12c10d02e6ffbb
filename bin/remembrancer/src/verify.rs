//! `remembrancer verify receipt|proof|checkpoint FILE --registry FILE`: one line per check,
//! exit code 0 only when every check holds (1 when one fails, 2 when a file cannot be read).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use remembrancer_core::bundle::{verify_bundle, BUNDLE_BYTES_MAX};
use remembrancer_core::note::NOTE_BYTES_MAX;
use remembrancer_core::receipt::{
    verify_note, verify_receipt, FederationReceipt, VerificationReport, RECEIPT_BYTES_MAX,
};
use remembrancer_core::registry::{Registry, REGISTRY_BYTES_MAX};

use crate::cli::{VerifyArgs, VerifyCommand};
use crate::files::read_bounded;

/// Loads and validates a registry file; errors name the file and the field.
pub fn load_registry(path: &Path) -> anyhow::Result<Registry> {
    let bytes = read_bounded(path, REGISTRY_BYTES_MAX)?;
    let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    Registry::from_any(&text).map_err(|e| anyhow::anyhow!("registry {}: {e}", path.display()))
}

/// Verifies `bytes` as `kind`.
pub fn verify_bytes(kind: &str, bytes: &[u8], registry: &Registry) -> VerificationReport {
    match kind {
        "receipt" => match FederationReceipt::from_json(bytes) {
            Ok(receipt) => verify_receipt(&receipt, registry),
            Err(error) => {
                let mut report = VerificationReport::default();
                report.push("format", false, error.to_string());
                report
            }
        },
        "proof" => verify_bundle(bytes, registry),
        _ => verify_note(bytes, registry).0,
    }
}

/// Prints a report and turns it into an exit code.
pub fn finish(kind: &str, file: &Path, report: &VerificationReport, json: bool) -> ExitCode {
    let ok = report.all_ok();
    if json {
        let value = serde_json::json!({
            "kind": kind,
            "file": file.display().to_string(),
            "ok": ok,
            "checks": report.checks,
        });
        println!("{value}");
    } else {
        print!("{}", report.to_text());
        let failed = report.checks.iter().filter(|c| !c.ok).count();
        if ok {
            println!("{kind} {} holds: all {} checks pass", file.display(), report.checks.len());
        } else {
            println!(
                "{kind} {} does NOT hold: {failed} of {} checks fail",
                file.display(),
                report.checks.len()
            );
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs a `verify` subcommand.
pub fn run(command: VerifyCommand) -> anyhow::Result<ExitCode> {
    let (kind, args, limit): (&str, VerifyArgs, usize) = match command {
        VerifyCommand::Receipt(args) => ("receipt", args, RECEIPT_BYTES_MAX),
        VerifyCommand::Proof(args) => ("proof", args, BUNDLE_BYTES_MAX),
        VerifyCommand::Checkpoint(args) => ("checkpoint", args, NOTE_BYTES_MAX),
    };
    let registry = load_registry(&args.registry)?;
    let bytes = read_bounded(&args.file, limit)?;
    let report = verify_bytes(kind, &bytes, &registry);
    tracing::debug!(kind, file = %args.file.display(), ok = report.all_ok(), "verified");
    Ok(finish(kind, &args.file, &report, args.json))
}
