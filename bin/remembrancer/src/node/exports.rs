//! What an auditor takes out of a running node: the registry as the spec's YAML, the chain of
//! quorum-signed updates `verify --updates` replays, the audit trail, and equivocation
//! evidence as files `verify evidence` checks offline.

use anyhow::Context as _;

use super::{client, http, print_json, print_list};
use crate::cli::{EvidenceCommand, NodeRef, RegistryCommand};

/// `federation registry export | chain`.
pub fn registry(command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Export(node) => {
            let answer = client(&node)?.get("/api/v1/registry")?;
            if node.json {
                print_json(&answer);
            } else {
                print!("{}", answer["yaml"].as_str().unwrap_or_default());
            }
        }
        // JSON either way: the file `verify --updates` reads.
        RegistryCommand::Chain(node) => print_json(&client(&node)?.get("/api/v1/registry/chain")?),
    }
    Ok(())
}

/// `federation audit [--since TIME]`.
pub fn audit(since: Option<u64>, node: &NodeRef) -> anyhow::Result<()> {
    let path = match since {
        Some(seconds) => format!("/api/v1/audit?since={seconds}"),
        None => "/api/v1/audit".to_string(),
    };
    let entries = client(node)?.get(&path)?;
    if node.json {
        print_json(&entries);
        return Ok(());
    }
    let entries = entries.as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        println!(
            "no audit entries{}",
            since.map(|s| format!(" since {}", crate::times::iso8601(s))).unwrap_or_default()
        );
    }
    for entry in entries {
        let seconds = entry["at_ms"].as_u64().unwrap_or(0) / 1000;
        println!(
            "{}  {}  {}  {}",
            crate::times::iso8601(seconds),
            entry["peer"].as_str().unwrap_or("?"),
            entry["what"].as_str().map_or_else(|| entry["what"].to_string(), str::to_string),
            entry["detail"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// `federation evidence list | show ID | export ID`.
pub fn evidence(command: EvidenceCommand) -> anyhow::Result<()> {
    match command {
        EvidenceCommand::List(node) => print_list(
            &node,
            "/api/v1/evidence",
            "no evidence: no member was seen signing two roots for one size or claiming an epoch out of turn",
            |entry| {
                let id = entry["id"].as_str().unwrap_or("?");
                let signer = entry["signer"].as_str().unwrap_or("?");
                if entry["kind"] == "unelected_claim" {
                    format!(
                        "{id}  {signer} claimed the anchor of epoch {} out of turn (rank {} under registry version {})",
                        entry["epoch"], entry["rank"], entry["registry_version"]
                    )
                } else {
                    format!(
                        "{id}  {signer} signed two roots for {} at size {}",
                        entry["namespace"].as_str().unwrap_or("?"),
                        entry["size"]
                    )
                }
            },
        )?,
        EvidenceCommand::Show { id, node } => {
            let file = fetch(&id, &node)?;
            if node.json {
                print_json(&file);
            } else if file["format"] == remembrancer_core::claims::CLAIM_EVIDENCE_FORMAT {
                println!(
                    "{} claimed the anchor of epoch {} out of turn (rank {} under registry version {}); the signed claim, base64:\n\n{}",
                    file["signer"].as_str().unwrap_or("?"),
                    file["epoch"],
                    file["rank"],
                    file["registry_version"],
                    file["message"].as_str().unwrap_or_default()
                );
            } else {
                println!(
                    "{} signed two roots for {} at size {}:\n\n{}\n{}",
                    file["signer"].as_str().unwrap_or("?"),
                    file["namespace"].as_str().unwrap_or("?"),
                    file["size"],
                    file["first"].as_str().unwrap_or_default(),
                    file["second"].as_str().unwrap_or_default()
                );
            }
        }
        EvidenceCommand::Export { id, out, node } => {
            let file = fetch(&id, &node)?;
            let text = serde_json::to_string_pretty(&file)? + "\n";
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("evidence {id} written to {}; check it with `remembrancer verify evidence {} --registry REGISTRY`", path.display(), path.display());
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

/// The evidence file of record `id` (a prefix of its id).
fn fetch(id: &str, node: &NodeRef) -> anyhow::Result<serde_json::Value> {
    client(node)?.get(&format!("/api/v1/evidence?id={}", http::percent_encode(id)))
}

/// `federation anchors`.
pub fn anchors(node: &NodeRef) -> anyhow::Result<()> {
    let empty = "no external anchors: this node anchors at the local target, or was not asked to anchor yet";
    print_list(node, "/api/v1/anchors", empty, |anchor| {
        let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        format!(
            "{}  {}  {:<9} for {}  tx {}  block {}  confirmations {}  reorgs {}  cost {} wei  {}",
            crate::times::iso8601(anchor["updated_at"].as_u64().unwrap_or(0)),
            text(&anchor["target"]),
            text(&anchor["status"]),
            anchor["for"],
            text(&anchor["tx_hash"]),
            text(&anchor["block"]),
            text(&anchor["confirmations"]),
            anchor["reorgs"],
            text(&anchor["cost_wei"]),
            anchor["error"].as_str().unwrap_or_default()
        )
    })
}

/// `federation treasury`.
pub fn treasury(node: &NodeRef) -> anyhow::Result<()> {
    let view = client(node)?.get("/api/v1/treasury")?;
    if node.json {
        print_json(&view);
        return Ok(());
    }
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| "none".to_string(), str::to_string);
    let cap =
        |v: &serde_json::Value| v.as_str().map_or_else(|| "none".to_string(), |gwei| format!("{gwei} gwei"));
    println!(
        "caps: per member and epoch {}, per anchor {}; this node spent {} wei this epoch",
        cap(&view["caps"]["per_epoch_gwei"]),
        cap(&view["caps"]["per_anchor_gwei"]),
        text(&view["this_node"]["spent_this_epoch_wei"])
    );
    println!("spend per member:");
    for member in view["members"].as_array().into_iter().flatten() {
        println!(
            "  {:<40} {:>4} anchors  {:>22} wei",
            text(&member["did"]),
            member["anchors"],
            text(&member["spent_wei"])
        );
    }
    println!("latest epochs:");
    for epoch in view["epochs"].as_array().into_iter().flatten() {
        println!(
            "  epoch {}  {}  {} namespaces  {} wei  tx {}",
            epoch["epoch"],
            text(&epoch["anchorer"]),
            epoch["namespaces"],
            text(&epoch["cost_wei"]),
            text(&epoch["tx_hash"])
        );
    }
    let c = &view["collaborative"];
    println!(
        "collaborative mode: {} anchors for {} namespace roots cost {} wei; independent mode: at least {} wei (saved at least {} wei)",
        c["anchors"],
        c["namespace_roots_covered"],
        text(&c["spent_wei"]),
        text(&c["independent_at_least_wei"]),
        text(&c["saved_at_least_wei"])
    );
    Ok(())
}
