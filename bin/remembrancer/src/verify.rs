//! `remembrancer verify receipt|proof|checkpoint FILE --registry FILE`: one line per check,
//! exit code 0 only when every check holds (1 when one fails, 2 when a file cannot be read).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use remembrancer_core::bundle::{verify_bundle, ProofBundle, BUNDLE_BYTES_MAX};
use remembrancer_core::checkpoint::{AnchorClaim, TlogCheckpoint};
use remembrancer_core::governance::replay_chain;
use remembrancer_core::message::RegistryContent;
use remembrancer_core::note::Note;
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

/// Most bytes of an update chain file.
const UPDATES_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The registry version a statement names: the receipt's field, or the checkpoint's anchor line.
fn named_version(kind: &str, bytes: &[u8]) -> Option<u64> {
    let note_version = |text: &[u8]| {
        // The anchor line's version, wherever the line is; a checkpoint without one names none.
        let note = Note::parse(text).ok()?;
        let plain = TlogCheckpoint::parse(&note.text).ok()?;
        let line = plain.anchor_lines().next()?;
        AnchorClaim::parse_line(line).ok().map(|claim| claim.registry_version)
    };
    match kind {
        "receipt" => FederationReceipt::from_json(bytes).ok().map(|r| r.registry_version),
        "proof" => serde_json::from_slice::<ProofBundle>(bytes)
            .ok()
            .and_then(|b| note_version(b.checkpoint.as_bytes())),
        "anchor" => serde_json::from_slice::<remembrancer_anchor::proof::AnchorProof>(bytes)
            .ok()
            .and_then(|p| note_version(p.bundle.checkpoint.as_bytes())),
        _ => note_version(bytes),
    }
}

/// The registry to verify against: the founding registry, or, with an update chain, the
/// version the statement names (the chain is replayed and each update's quorum checked).
fn registry_for(kind: &str, bytes: &[u8], args: &VerifyArgs) -> anyhow::Result<Registry> {
    let founding = load_registry(&args.registry)?;
    let Some(path) = &args.updates else { return Ok(founding) };
    let chain_bytes = read_bounded(path, UPDATES_BYTES_MAX)?;
    let updates: Vec<RegistryContent> = serde_json::from_slice(&chain_bytes).map_err(|e| {
        anyhow::anyhow!("{}: not a registry update chain (a JSON list of updates): {e}", path.display())
    })?;
    let versions =
        replay_chain(founding, &updates).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let wanted = named_version(kind, bytes);
    let chosen = wanted
        .and_then(|v| versions.iter().find(|r| r.version == v))
        .or_else(|| versions.last())
        .cloned()
        .unwrap_or_else(|| unreachable!("replay returns at least the founding registry"));
    Ok(chosen)
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
        "evidence" => remembrancer_core::evidence::verify_evidence(bytes, registry),
        "message" => remembrancer_core::xmsg::verify_message(bytes, registry),
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
        VerifyCommand::Message(args) => ("message", args, BUNDLE_BYTES_MAX),
        VerifyCommand::Evidence(args) => {
            ("evidence", args, remembrancer_core::evidence::EVIDENCE_FILE_BYTES_MAX)
        }
        VerifyCommand::Anchor(anchor) => {
            let bytes = read_bounded(&anchor.args.file, remembrancer_anchor::proof::ANCHOR_PROOF_BYTES_MAX)?;
            let registry = registry_for("anchor", &bytes, &anchor.args)?;
            let roots = match &anchor.tsa_cert {
                Some(path) => Some(
                    remembrancer_anchor::tsp::trusted_roots(&read_bounded(path, 1024 * 1024)?)
                        .map_err(|e| anyhow::anyhow!("{} (--tsa-cert): {e}", path.display()))?,
                ),
                None => None,
            };
            let trust = remembrancer_anchor::proof::Trust {
                block_hash: anchor.block_hash.as_deref(),
                tsa_roots: roots.as_deref(),
            };
            let report = remembrancer_anchor::proof::verify_anchor_proof(&bytes, &registry, &trust);
            return Ok(finish("anchor", &anchor.args.file, &report, anchor.args.json));
        }
    };
    let bytes = read_bounded(&args.file, limit)?;
    let registry = registry_for(kind, &bytes, &args)?;
    let report = verify_bytes(kind, &bytes, &registry);
    tracing::debug!(kind, file = %args.file.display(), ok = report.all_ok(), "verified");
    Ok(finish(kind, &args.file, &report, args.json))
}
