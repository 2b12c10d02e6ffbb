//! The real node (`node run`), the CLI commands that talk to a running node through its
//! loopback API, and the local devnet.

pub mod api;
pub mod config;
pub mod devchain;
pub mod devnet;
mod devwatch;
pub mod explorer;
mod exports;
pub mod http;
pub mod messages;
mod proposals;
pub mod runtime;

use std::process::ExitCode;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::cli::{
    CheckpointCommand, FederationCommand, NodeCommand, NodeRef, ProofArgs, ReceiptsCommand, RecordCommand,
};
use http::Client;

/// `node run`.
pub fn run_node(command: NodeCommand) -> anyhow::Result<ExitCode> {
    let NodeCommand::Run { config } = command;
    let config = config::NodeConfig::load(&config)?;
    if config.node.threads == 1 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(runtime::run(config))?;
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.node.threads)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(runtime::run(config))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The variable that names a node's data directory when `--data-dir` is not given.
pub const DATA_DIR_VARIABLE: &str = "REMEMBRANCER_DATA_DIR";

/// The default data directory: `$XDG_DATA_HOME/remembrancer`, else
/// `~/.local/share/remembrancer`, else `remembrancer-data` here.
pub fn default_data_dir() -> std::path::PathBuf {
    let nonempty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(data_home) = nonempty("XDG_DATA_HOME") {
        return std::path::PathBuf::from(data_home).join("remembrancer");
    }
    match nonempty("HOME") {
        Some(home) => std::path::PathBuf::from(home).join(".local/share/remembrancer"),
        None => std::path::PathBuf::from("remembrancer-data"),
    }
}

/// A client of the running node `node` names: its data directory from `--data-dir`, else
/// `$REMEMBRANCER_DATA_DIR`, else the default data directory; the first of them given is the
/// one used. When it holds no running node, the error names all three.
fn client(node: &NodeRef) -> anyhow::Result<Client> {
    let variable = std::env::var_os(DATA_DIR_VARIABLE).filter(|value| !value.is_empty());
    let default = default_data_dir();
    let (chosen, source) = match (&node.data_dir, &variable) {
        (Some(flag), _) => (flag.clone(), "--data-dir"),
        (None, Some(variable)) => (std::path::PathBuf::from(variable), DATA_DIR_VARIABLE),
        (None, None) => (default.clone(), "the default data directory"),
    };
    Client::from_data_dir(&chosen).map_err(|error| {
        let shown = |path: Option<std::path::PathBuf>| {
            path.map_or_else(|| "not given".to_string(), |path| path.display().to_string())
        };
        anyhow::anyhow!(
            "no running node in {} ({source}: {error:#}). Looked for a data directory in this order: \
             --data-dir ({}), ${DATA_DIR_VARIABLE} ({}), the default data directory ({}). Point one \
             of them at a running node's data_dir, or start a node with `remembrancer node run \
             --config FILE`.",
            chosen.display(),
            shown(node.data_dir.clone()),
            shown(variable.map(std::path::PathBuf::from)),
            default.display(),
        )
    })
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// `GET path`, a JSON list: printed as JSON with `--json`, else a line per entry (`line`), or
/// `empty` when there is none.
fn print_list(
    node: &NodeRef,
    path: &str,
    empty: &str,
    line: impl Fn(&serde_json::Value) -> String,
) -> anyhow::Result<()> {
    let list = client(node)?.get(path)?;
    if node.json {
        print_json(&list);
        return Ok(());
    }
    let entries = list.as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        println!("{empty}");
    }
    for entry in &entries {
        println!("{}", line(entry));
    }
    Ok(())
}

/// `federation ...`.
pub fn federation(command: FederationCommand) -> anyhow::Result<ExitCode> {
    match command {
        FederationCommand::Status(node) => {
            let status = client(&node)?.get("/api/v1/status")?;
            if node.json {
                print_json(&status);
            } else {
                print_status(&status);
            }
        }
        FederationCommand::PropagateAnchor { namespace, create, node } => {
            let body = serde_json::json!({ "namespace": namespace, "create": create });
            let answer = client(&node)?.post("/api/v1/anchor", &body)?;
            if node.json {
                print_json(&answer);
            } else {
                println!("{namespace}: checkpoint at size {} signed and broadcast", answer["size"]);
            }
        }
        FederationCommand::Join { federation, node, bootstrap, namespaces, endpoint, wait, node_ref } => {
            let client = client(&node_ref)?;
            let answer = client.post(
                "/api/v1/join",
                &serde_json::json!({ "federation": federation, "node": node, "bootstrap": bootstrap,
                    "namespaces": namespaces, "endpoint": endpoint }),
            )?;
            if !node_ref.json {
                println!(
                    "{node} asks to join {federation}: proposal {} needs {} member signatures",
                    answer["proposal"].as_str().unwrap_or("-"),
                    answer["signers_needed"]
                );
            }
            let started = std::time::Instant::now();
            let mut member = false;
            while wait > 0 && started.elapsed() < std::time::Duration::from_secs(wait) {
                let status = client.get("/api/v1/status")?;
                if status["member"].as_bool() == Some(true) {
                    member = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            if node_ref.json {
                let mut answer = answer;
                answer["member"] = serde_json::json!(member);
                print_json(&answer);
            } else if member {
                println!("admitted: {node} is a member of {federation}");
            } else if wait > 0 {
                println!("not admitted after {wait} s: `federation status` shows the signatures so far");
                return Ok(ExitCode::from(1));
            } else {
                println!("`federation status --data-dir ...` shows where it stands");
            }
        }
        FederationCommand::Approve { proposal, node } => {
            let answer =
                client(&node)?.post("/api/v1/approve", &serde_json::json!({ "proposal": proposal }))?;
            if node.json {
                print_json(&answer);
            } else {
                println!(
                    "signed proposal {}{}",
                    answer["proposal"].as_str().unwrap_or("-"),
                    if answer["applied"].as_bool() == Some(true) {
                        format!(": quorum reached, registry v{}", answer["registry_version"])
                    } else {
                        String::new()
                    }
                );
            }
        }
        FederationCommand::Block { peers, node } => {
            let answer = client(&node)?.post("/api/v1/block", &serde_json::json!({ "peers": peers }))?;
            print_blocked(&answer, node.json);
        }
        FederationCommand::Unblock { peers, node } => {
            let answer = client(&node)?.post("/api/v1/unblock", &serde_json::json!({ "peers": peers }))?;
            print_blocked(&answer, node.json);
        }
        FederationCommand::Propose(args) => proposals::propose(args)?,
        FederationCommand::Proposals(node) => proposals::proposals(&node)?,
        FederationCommand::Anchors(node) => exports::anchors(&node)?,
        FederationCommand::Treasury(node) => exports::treasury(&node)?,
        FederationCommand::Registry(command) => exports::registry(command)?,
        FederationCommand::Audit { since, node } => exports::audit(since, &node)?,
        FederationCommand::Evidence(command) => exports::evidence(command)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_blocked(answer: &serde_json::Value, json: bool) {
    if json {
        print_json(answer);
        return;
    }
    let blocked = answer["blocked"].as_array().map_or(0, Vec::len);
    println!("{blocked} peers blocked");
    for peer in answer["blocked"].as_array().into_iter().flatten() {
        println!("  {}", peer.as_str().unwrap_or("-"));
    }
}

fn print_status(status: &serde_json::Value) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "{} ({}) in federation {} · registry v{} · quorum {} · {} peers connected",
        text(&status["did"]),
        text(&status["peer_id"]),
        text(&status["federation"]),
        status["registry_version"],
        status["quorum"],
        status["connected_peers"]
    );
    println!("peers:");
    for peer in status["peers"].as_array().into_iter().flatten() {
        let state = if peer["self"].as_bool() == Some(true) {
            "self"
        } else if peer["connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "not connected"
        };
        println!(
            "  {:<40} {:<10} {:<14} accepted {:>6}  refusals {:>3}",
            text(&peer["did"]),
            text(&peer["status"]),
            state,
            peer["accepted"],
            peer["honesty_refusals"]
        );
    }
    println!("namespaces:");
    for ns in status["namespaces"].as_array().into_iter().flatten() {
        let owned = ns["owned"].as_bool() == Some(true);
        println!(
            "  {:<24} {} final {:>8}{}",
            text(&ns["namespace"]),
            if owned { "owned " } else { "witness" },
            ns["final_size"],
            if owned {
                format!(
                    "  latest {:>8}{}",
                    ns["size"],
                    if ns["pending"].as_bool() == Some(true) { "  (pending)" } else { "" }
                )
            } else {
                String::new()
            },
        );
        if let Some(halted) = ns["halted"].as_str() {
            println!("    HALTED: {halted}");
        }
    }
    // A figure not measured yet (nothing finalized or written) reads as "-".
    let ms =
        |value: &serde_json::Value| if value.is_null() { "-".to_string() } else { format!("{value} ms") };
    println!(
        "finalized here: {} (p50 {}, p99 {}) · synced write p50 {} · evidence {} · garbage messages {} · outsider messages {}",
        status["finalized"],
        ms(&status["finality_ms_p50"]),
        ms(&status["finality_ms_p99"]),
        ms(&status["synced_write_ms_p50"]),
        status["evidence"],
        status["garbage_messages"],
        status["outsider_messages"]
    );
    if status["member"].as_bool() == Some(false) {
        println!(
            "this node is not a member{}",
            if status["joining"].as_bool() == Some(true) { " yet: its join is pending" } else { "" }
        );
    }
    for proposal in status["proposals"].as_array().into_iter().flatten() {
        // The reason's kind: `manual`, `join`, ... (`federation proposals` shows the rest).
        let reason =
            proposal["reason"].as_object().and_then(|r| r.keys().next().cloned()).unwrap_or_default();
        println!(
            "pending proposal {} ({reason}): {} of {} signatures{}",
            proposal["proposal"].as_str().unwrap_or("-"),
            proposal["valid_signatures"],
            proposal["quorum"],
            if proposal["signed_here"].as_bool() == Some(true) {
                ", signed here"
            } else {
                ", not signed here: `federation approve` signs it"
            }
        );
    }
    let anchoring = &status["anchoring"];
    let last_error =
        anchoring["last_error"].as_str().map(|e| format!("\n  last error: {e}")).unwrap_or_default();
    if anchoring["target"] == remembrancer_anchor::rfc3161::NAME {
        println!(
            "anchoring at rfc3161 via {}: final {} · pending {} · failed {} · {} requests to TSAs{last_error}",
            text(&anchoring["account"]),
            anchoring["final"],
            anchoring["pending"],
            anchoring["failed"],
            anchoring["transactions"],
        );
    } else if anchoring.is_object() {
        println!(
            "anchoring at {} from {}: final {} · included {} · submitted {} · pending {} · failed {} · reorgs {} · spent {} wei in {} transactions{}",
            text(&anchoring["target"]),
            text(&anchoring["account"]),
            anchoring["final"],
            anchoring["included"],
            anchoring["submitted"],
            anchoring["pending"],
            anchoring["failed"],
            anchoring["reorgs"],
            text(&anchoring["spent_wei"]),
            anchoring["transactions"],
            last_error
        );
    }
    let blocked = status["blocked"].as_array().map_or(0, Vec::len);
    if blocked > 0 {
        println!("blocked: {blocked} peers (federation unblock lifts it)");
    }
}

/// `record append`.
pub fn record(command: RecordCommand) -> anyhow::Result<ExitCode> {
    let RecordCommand::Append { namespace, create, data, file, node } = command;
    let record = match (data, file) {
        (Some(data), None) => data.into_bytes(),
        (None, Some(file)) => crate::files::read_bounded(&file, runtime::RECORD_BYTES_MAX)?,
        _ => anyhow::bail!("give the record as DATA or --file FILE"),
    };
    let answer = client(&node)?.post(
        "/api/v1/records",
        &serde_json::json!({ "namespace": namespace, "records": [BASE64.encode(record)], "create": create }),
    )?;
    if node.json {
        print_json(&answer);
    } else {
        println!("{namespace}: record {} stored (tree size {})", answer["first_index"], answer["size"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// `proof`.
pub fn proof(args: ProofArgs) -> anyhow::Result<ExitCode> {
    if args.anchor {
        return anchor_proof(args);
    }
    let bundle = client(&args.node)?.get(&format!(
        "/api/v1/proof?namespace={}&index={}",
        http::percent_encode(&args.namespace),
        args.index
    ))?;
    write_or_print(&bundle, args.out.as_deref(), |path| {
        format!(
            "proof bundle written to {path} (verify: remembrancer verify proof {path} --registry REGISTRY)"
        )
    })
}

/// A proof as pretty JSON: into `out` (then `written` says what to do with it), or on
/// standard output.
fn write_or_print(
    proof: &impl serde::Serialize,
    out: Option<&std::path::Path>,
    written: impl FnOnce(&str) -> String,
) -> anyhow::Result<ExitCode> {
    let text = serde_json::to_string_pretty(proof)?;
    match out {
        Some(path) => {
            crate::files::write_public(path, text.as_bytes())?;
            println!("{}", written(&path.display().to_string()));
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `proof --anchor`: the node's parts, and the block's bytes read from the chain.
fn anchor_proof(args: ProofArgs) -> anyhow::Result<ExitCode> {
    use remembrancer_anchor::proof::{AnchorObject, AnchorProof, EpochPath, Observed, ANCHOR_PROOF_TYPE};
    let parts = client(&args.node)?.get(&format!(
        "/api/v1/proof?namespace={}&index={}&anchor=true",
        http::percent_encode(&args.namespace),
        args.index
    ))?;
    let reference: remembrancer_core::anchoring::AnchorReference =
        serde_json::from_value(parts["reference"].clone()).context("the node's anchor reference")?;
    let epoch: Option<EpochPath> =
        serde_json::from_value(parts["epoch"].clone()).context("the node's epoch path")?;
    let batch_root = parts["batch_root"].as_str().context("the node's batch root")?.to_string();
    let bundle = serde_json::from_value(parts["bundle"].clone()).context("the node's proof bundle")?;
    let observed = Observed {
        epoch: parts["observed"]["epoch"].as_u64(),
        anchorer: parts["observed"]["anchorer"].as_str().unwrap_or_default().to_string(),
        confirmations: reference.confirmations,
    };
    let proof = if reference.target == remembrancer_anchor::rfc3161::NAME {
        // The token travels with the reference: nothing more to fetch.
        let token = reference.token.clone().context("the rfc3161 anchor carries no token")?;
        let der = hex::decode(&token).context("the anchor's token is not hex")?;
        let (gen_time, signer) =
            remembrancer_anchor::tsp::token_fields(&der).map_err(|e| anyhow::anyhow!("{e}"))?;
        AnchorProof {
            proof_type: ANCHOR_PROOF_TYPE.to_string(),
            bundle,
            anchor: AnchorObject {
                batch_root,
                target: reference.target.clone(),
                chain_id: None,
                tx_hash: None,
                block: None,
                block_hash: None,
                tx_index: None,
                gen_time: Some(gen_time),
                tsa: Some(signer),
                timestamp: reference.timestamp,
                status: "final".to_string(),
            },
            epoch,
            chain: None,
            token: Some(token),
            observed,
        }
    } else {
        let chain_id =
            reference.target.strip_prefix("eip155:").and_then(|id| id.parse::<u64>().ok()).ok_or_else(
                || {
                    anyhow::anyhow!(
                        "the epoch was anchored at {:?}, neither an eip155 chain nor rfc3161",
                        reference.target
                    )
                },
            )?;
        let (Some(tx_hash), Some(block), Some(block_hash), Some(tx_index)) =
            (reference.tx_hash.clone(), reference.block, reference.block_hash.clone(), reference.tx_index)
        else {
            anyhow::bail!("the epoch's anchor names no transaction, block, block hash and index");
        };
        let rpc = args
            .rpc
            .clone()
            .or_else(|| parts["rpc_url"].as_str().filter(|u| !u.is_empty()).map(str::to_string))
            .ok_or_else(|| anyhow::anyhow!("the node has no chain RPC configured: give --rpc URL"))?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let chain = runtime
            .block_on(remembrancer_anchor::eip155::block_evidence(
                &rpc,
                block,
                &block_hash,
                std::time::Duration::from_secs(10),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        AnchorProof {
            proof_type: ANCHOR_PROOF_TYPE.to_string(),
            bundle,
            anchor: AnchorObject {
                batch_root,
                target: reference.target.clone(),
                chain_id: Some(chain_id),
                tx_hash: Some(tx_hash),
                block: Some(block),
                block_hash: Some(block_hash),
                tx_index: Some(tx_index),
                gen_time: None,
                tsa: None,
                timestamp: reference.timestamp,
                status: "final".to_string(),
            },
            epoch,
            chain: Some(chain),
            token: None,
            observed,
        }
    };
    let trust = match &proof.anchor.block_hash {
        Some(hash) => format!("--block-hash {hash}"),
        None => "--tsa-cert TSA_ROOT.pem".to_string(),
    };
    write_or_print(&proof, args.out.as_deref(), |path| {
        format!("anchor proof written to {path} (verify: remembrancer verify anchor {path} --registry REGISTRY {trust})")
    })
}

/// `receipts ...`.
pub fn receipts(command: ReceiptsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReceiptsCommand::List { namespace, node } => {
            let target = match &namespace {
                Some(ns) => format!("/api/v1/receipts?namespace={}", http::percent_encode(ns)),
                None => "/api/v1/receipts".to_string(),
            };
            let list = client(&node)?.get(&target)?;
            if node.json {
                print_json(&list);
            } else {
                for r in list.as_array().into_iter().flatten() {
                    let anchor = &r["external_anchor"];
                    let anchored = match (anchor["target"].as_str(), anchor["tx_hash"].as_str()) {
                        (None, _) => String::new(),
                        (Some(target), Some(tx)) => {
                            format!("  anchored at {target} in tx {tx} block {}", anchor["block"])
                        }
                        (Some(target), None) => format!(
                            "  anchored at {target} {}",
                            anchor["timestamp"]
                                .as_u64()
                                .map_or_else(|| "-".to_string(), crate::times::iso8601)
                        ),
                    };
                    println!(
                        "{:<24} size {:>8}  {}  {} signatures  final {}{anchored}",
                        r["namespace"].as_str().unwrap_or("-"),
                        r["size"],
                        r["root"].as_str().unwrap_or("-"),
                        r["signatures"],
                        r["finalized_at"].as_u64().map_or_else(|| "-".to_string(), crate::times::iso8601)
                    );
                }
            }
        }
        ReceiptsCommand::Show { namespace, size, node } => {
            let mut target = format!("/api/v1/receipt?namespace={}", http::percent_encode(&namespace));
            if let Some(size) = size {
                target.push_str(&format!("&size={size}"));
            }
            print_json(&client(&node)?.get(&target)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `checkpoint export`.
pub fn checkpoint(command: CheckpointCommand) -> anyhow::Result<ExitCode> {
    let CheckpointCommand::Export { namespace, node } = command;
    let answer =
        client(&node)?.get(&format!("/api/v1/checkpoint?namespace={}", http::percent_encode(&namespace)))?;
    if node.json {
        print_json(&answer);
    } else {
        print!("{}", answer["note"].as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}
