//! Registry governance from the command line: `federation propose` (a whole
//! `federation.registry.set@1.0.0` document, checked against the spec's schema, or the common
//! changes as options) and `federation proposals`.

use anyhow::Context as _;
use remembrancer_core::governance::{self, Change};
use remembrancer_core::registry::{
    AnchorMode, Member, Registry, RegistryUpdate, REGISTRY_BYTES_MAX, REGISTRY_UPDATE_SCHEMA,
};

use super::{client, print_json};
use crate::cli::{NodeRef, ProposeArgs};

/// The spec's schema of a registry update, as `proto/` keeps it.
const UPDATE_SCHEMA: &str = include_str!("../../../../proto/federation.registry.set@1.0.0.json");

/// Where a schema error is, as a field path (`registry.peers[1].endpoint`) from the JSON
/// pointer the validator gives (`/registry/peers/1/endpoint`).
fn field_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    if path.is_empty() {
        "document".to_string()
    } else {
        path
    }
}

/// Reads a registry update document and checks it against the spec's schema: every violation
/// is listed with its field; then our own checks (keys, DIDs, namespaces) name theirs.
pub fn read_update(path: &std::path::Path) -> anyhow::Result<RegistryUpdate> {
    let bytes = crate::files::read_bounded(path, REGISTRY_BYTES_MAX)?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(text).with_context(|| {
        format!("{} is not JSON: a {REGISTRY_UPDATE_SCHEMA} document is a JSON object", path.display())
    })?;
    let schema: serde_json::Value =
        serde_json::from_str(UPDATE_SCHEMA).context("the built-in schema is JSON")?;
    let validator = jsonschema::validator_for(&schema).context("the built-in schema compiles")?;
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|error| format!("{}: {error}", field_path(&error.instance_path().to_string())))
        .collect();
    if !errors.is_empty() {
        anyhow::bail!(
            "{} is not a valid {REGISTRY_UPDATE_SCHEMA} document (proto/{REGISTRY_UPDATE_SCHEMA}.json):\n  {}",
            path.display(),
            errors.join("\n  ")
        );
    }
    RegistryUpdate::from_json(text).with_context(|| format!("{} is not a registry update", path.display()))
}

/// The changes the options name, in the order they apply: members added, owners set,
/// statuses set, members removed, then the quorum and the anchor strategy.
fn changes(args: &ProposeArgs) -> anyhow::Result<Vec<Change>> {
    let mut changes = Vec::new();
    if let (Some(did), Some(pubkey)) = (&args.add_member, &args.pubkey) {
        remembrancer_core::identity::validate_did(did).with_context(|| format!("--add-member {did}"))?;
        let key = remembrancer_core::identity::parse_public_key(pubkey)
            .with_context(|| format!("--pubkey {pubkey}: expected the z6Mk... key `keys show` prints"))?;
        changes.push(Change::AddMember(Box::new(Member {
            did: did.clone(),
            key,
            status: remembrancer_core::registry::PeerStatus::Active,
            endpoint: args.endpoint.clone(),
            namespaces: args.namespaces.clone(),
        })));
    }
    for (namespace, owner) in &args.set_owner {
        changes.push(Change::SetOwner { namespace: namespace.clone(), owner: owner.clone() });
    }
    for (did, status) in &args.set_status {
        changes.push(Change::SetStatus(did.clone(), *status));
    }
    for did in &args.remove_member {
        changes.push(Change::RemoveMember(did.clone()));
    }
    if let Some(quorum) = args.quorum {
        changes.push(Change::SetQuorum(quorum));
    }
    if let Some(strategy) = &args.anchor_strategy {
        let mode = match strategy.as_str() {
            "collaborative" => AnchorMode::Collaborative,
            "hybrid" => AnchorMode::Hybrid,
            _ => AnchorMode::Independent,
        };
        changes.push(Change::SetAnchorStrategy(mode));
    }
    if let Some(cap) = args.cap_per_epoch {
        changes.push(Change::SetEpochCap(cap.0));
    }
    if let Some(cap) = args.cap_per_anchor {
        changes.push(Change::SetAnchorCap(cap.0));
    }
    if changes.is_empty() {
        anyhow::bail!(
            "nothing to propose: give --file UPDATE.json or a change (--add-member, --remove-member, \
             --set-status, --quorum, --anchor-strategy, --set-owner, --cap-per-epoch, --cap-per-anchor); see `remembrancer federation propose --help`"
        );
    }
    Ok(changes)
}

/// `federation propose`.
pub fn propose(args: ProposeArgs) -> anyhow::Result<()> {
    let client = client(&args.node)?;
    let body = match &args.file {
        Some(path) => serde_json::json!({ "update": read_update(path)? }),
        None => {
            let changes = changes(&args)?;
            let answer = client.get("/api/v1/registry")?;
            let registry = Registry::from_yaml(answer["yaml"].as_str().unwrap_or_default())
                .context("the node's registry does not parse")?;
            let proposal = governance::manual(&registry, &changes, &args.memo)
                .map_err(|error| anyhow::anyhow!("refused: {error}"))?;
            serde_json::json!({ "update": proposal.update, "base_version": registry.version })
        }
    };
    let answer = client.post("/api/v1/proposals", &body)?;
    if args.node.json {
        print_json(&answer);
        return Ok(());
    }
    let digest = answer["proposal"].as_str().unwrap_or("-");
    println!(
        "proposed {digest} (registry version {} -> {}):",
        answer["base_version"],
        answer["base_version"].as_u64().unwrap_or(0) + 1
    );
    for change in answer["changes"].as_array().into_iter().flatten() {
        println!("  {}", change.as_str().unwrap_or_default());
    }
    if answer["applied"].as_bool() == Some(true) {
        println!("quorum reached: registry version {} is in effect", answer["registry_version"]);
    } else {
        println!(
            "signed by this node, 1 of the {} signatures needed; other members sign with \
             `remembrancer federation approve {}`",
            answer["signers_needed"],
            &digest[..digest.len().min(16)]
        );
    }
    Ok(())
}

/// `federation proposals`.
pub fn proposals(node: &NodeRef) -> anyhow::Result<()> {
    let list = client(node)?.get("/api/v1/proposals")?;
    if node.json {
        print_json(&list);
        return Ok(());
    }
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no pending proposals");
    }
    for entry in list {
        let signers: Vec<&str> =
            entry["signers"].as_array().into_iter().flatten().filter_map(|s| s.as_str()).collect();
        let detail = entry["detail"].as_str().unwrap_or_default();
        println!(
            "{}  on version {}  {}{}  signed {} of {}: {}",
            entry["proposal"].as_str().unwrap_or("?"),
            entry["base_version"],
            entry["reason"].as_str().unwrap_or("?"),
            if detail.is_empty() { String::new() } else { format!(" ({detail})") },
            signers.len(),
            entry["signers_needed"],
            if signers.is_empty() { "nobody yet".to_string() } else { signers.join(", ") }
        );
        for change in entry["changes"].as_array().into_iter().flatten() {
            println!("    {}", change.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_errors_name_the_field() {
        assert_eq!(field_path("/registry/peers/1/endpoint"), "registry.peers[1].endpoint");
        assert_eq!(field_path(""), "document");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("update.json");
        let write = |text: &str| std::fs::write(&file, text).expect("write");
        write(
            r#"{"federation_id":"f","registry":{"quorum":0,"peers":[{"did":"did:vm:node:a","pubkey":"z6Mk"}],"anchor_strategy":"sometimes"}}"#,
        );
        let error = format!("{:#}", read_update(&file).expect_err("three violations"));
        for field in [
            "registry.quorum",
            "registry.peers[0]: \"endpoint\" is a required property",
            "registry.anchor_strategy",
        ] {
            assert!(error.contains(field), "{error} should name {field}");
        }
        write(r#"{"registry":{"quorum":1}}"#);
        let error = format!("{:#}", read_update(&file).expect_err("no federation_id"));
        assert!(error.contains("document: \"federation_id\" is a required property"), "{error}");
        write("not json");
        assert!(format!("{:#}", read_update(&file).expect_err("text")).contains("is not JSON"));
    }
}
