//! The CLI end to end, as an operator and an auditor use it: the demo, `keys`, and `verify`
//! accepting a valid receipt and rejecting each kind of bad one with exit code 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn remembrancer(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_remembrancer"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run remembrancer")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the demo in a fresh folder and returns it.
fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = remembrancer(&["demo", "--records", "300"], dir.path());
    assert!(
        output.status.success(),
        "demo failed: {}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    let out = dir.path().join("demo-out");
    (dir, out)
}

fn verify(kind: &str, file: &Path, registry: &Path) -> Output {
    remembrancer(
        &["verify", kind, file.to_str().expect("path"), "--registry", registry.to_str().expect("path")],
        Path::new("."),
    )
}

/// Writes an altered copy of the demo receipt and checks that `verify` rejects it, naming
/// `check` in a FAIL line.
fn assert_rejected(out: &Path, name: &str, alter: impl FnOnce(&mut Value), check: &str) {
    let mut receipt: Value =
        serde_json::from_slice(&std::fs::read(out.join("receipt.json")).expect("read")).expect("json");
    alter(&mut receipt);
    let path = out.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&receipt).expect("json")).expect("write");
    let output = verify("receipt", &path, &out.join("registry.yaml"));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{name} must be rejected: {text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL") && l.contains(check)),
        "{name}: expected FAIL {check}: {text}"
    );
}

#[test]
fn demo_writes_private_keys_and_files_that_verify() {
    let (_dir, out) = demo();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for key in ["east1", "west1", "central1"] {
            let mode = std::fs::metadata(out.join("keys").join(format!("{key}.key")))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}.key must be private");
        }
    }
    let registry = out.join("registry.yaml");
    for (kind, file) in
        [("receipt", "receipt.json"), ("checkpoint", "checkpoint.note"), ("proof", "proof-bundle.json")]
    {
        let output = verify(kind, &out.join(file), &registry);
        assert!(output.status.success(), "{kind}: {}", stdout(&output));
        assert!(stdout(&output).contains("holds: all"), "{}", stdout(&output));
    }
    let json =
        remembrancer(&["verify", "receipt", "receipt.json", "--registry", "registry.yaml", "--json"], &out);
    let value: Value = serde_json::from_slice(&json.stdout).expect("--json prints JSON");
    assert_eq!(value["ok"], Value::Bool(true));
    assert!(value["checks"].as_array().is_some_and(|c| c.len() >= 6));
    let tampered = verify("receipt", &out.join("tampered-receipt.json"), &registry);
    assert_eq!(tampered.status.code(), Some(1));
}

#[test]
fn verify_rejects_each_kind_of_bad_receipt() {
    let (_dir, out) = demo();
    assert_rejected(
        &out,
        "flipped-signature",
        |r| {
            let sig = r["signatures"][1]["sig"].as_str().expect("sig").to_string();
            // Change one base58 digit: a different 64-byte signature.
            let mut chars: Vec<char> = sig.chars().collect();
            chars[10] = if chars[10] == '2' { '3' } else { '2' };
            r["signatures"][1]["sig"] = Value::String(chars.into_iter().collect());
        },
        "signature did:vm:node:",
    );
    assert_rejected(
        &out,
        "unregistered-signer",
        |r| r["signatures"][2]["node"] = Value::String("did:vm:node:ghost".to_string()),
        "signature did:vm:node:ghost",
    );
    assert_rejected(
        &out,
        "duplicated-signer",
        |r| {
            let copy = r["signatures"][1].clone();
            r["signatures"].as_array_mut().expect("array").push(copy);
        },
        "distinct signers",
    );
    assert_rejected(
        &out,
        "quorum-short-by-one",
        |r| r["signatures"].as_array_mut().expect("array").truncate(1),
        "quorum",
    );
    assert_rejected(
        &out,
        "wrong-root",
        |r| {
            let root = r["anchor"]["batch_root"].as_str().expect("root").to_string();
            let flipped = if root.ends_with('0') {
                format!("{}1", &root[..root.len() - 1])
            } else {
                format!("{}0", &root[..root.len() - 1])
            };
            r["anchor"]["batch_root"] = Value::String(flipped);
        },
        "signature did:vm:node:east1 (anchor)",
    );

    let registry = out.join("registry.yaml");
    let bytes = std::fs::read(out.join("receipt.json")).expect("read");
    std::fs::write(out.join("truncated.json"), &bytes[..bytes.len() / 2]).expect("write");
    std::fs::write(out.join("garbage.json"), b"\x00\x9f\xffnot a receipt at all").expect("write");
    for name in ["truncated.json", "garbage.json"] {
        let output = verify("receipt", &out.join(name), &registry);
        assert_eq!(output.status.code(), Some(1), "{name}: {}", stdout(&output));
        assert!(stdout(&output).starts_with("FAIL format"), "{name}: {}", stdout(&output));
    }
    let note = std::fs::read_to_string(out.join("checkpoint.note")).expect("read");
    std::fs::write(out.join("altered.note"), note.replacen("\n300\n", "\n301\n", 1)).expect("write");
    assert_eq!(verify("checkpoint", &out.join("altered.note"), &registry).status.code(), Some(1));
}

#[test]
fn unreadable_inputs_exit_2_with_a_hint() {
    let (_dir, out) = demo();
    let missing = verify("receipt", &out.join("nope.json"), &out.join("registry.yaml"));
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot open"));
    let registry = std::fs::read_to_string(out.join("registry.yaml")).expect("read");
    std::fs::write(out.join("bad-registry.yaml"), registry.replacen("quorum: 2", "quorum: 7", 1))
        .expect("write");
    let bad = verify("receipt", &out.join("receipt.json"), &out.join("bad-registry.yaml"));
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert!(stderr.contains("federation.quorum") && stderr.contains("bad-registry.yaml"), "{stderr}");
}

#[test]
fn errors_under_json_are_json_on_standard_output() {
    let (dir, out) = demo();
    let missing =
        remembrancer(&["verify", "receipt", "nope.json", "--registry", "registry.yaml", "--json"], &out);
    assert_eq!(missing.status.code(), Some(2));
    let error: Value = serde_json::from_slice(&missing.stdout).expect("a JSON error on stdout");
    assert_eq!(error["error"]["code"], "cli");
    assert!(error["error"]["message"].as_str().expect("message").contains("cannot open"), "{error}");
    assert!(missing.stderr.is_empty(), "nothing else: {}", String::from_utf8_lossy(&missing.stderr));
    let nowhere = dir.path().join("no-node");
    let status = remembrancer(
        &["federation", "status", "--json", "--data-dir", nowhere.to_str().expect("path")],
        &out,
    );
    assert_eq!(status.status.code(), Some(2));
    let error: Value = serde_json::from_slice(&status.stdout).expect("a JSON error on stdout");
    assert!(
        error["error"]["message"].as_str().expect("message").contains("REMEMBRANCER_DATA_DIR"),
        "{error}"
    );
    // Without --json the same error is text on standard error.
    let status = remembrancer(&["federation", "status", "--data-dir", nowhere.to_str().expect("path")], &out);
    assert!(
        status.stdout.is_empty()
            && String::from_utf8_lossy(&status.stderr).starts_with("error: no running node")
    );
}

#[test]
fn keys_generate_and_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = remembrancer(
        &["keys", "generate", "--did", "did:vm:node:east1", "--out", "east1.key", "--json"],
        dir.path(),
    );
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let identity: Value = serde_json::from_slice(&generated.stdout).expect("json");
    assert!(identity["pubkey"].as_str().is_some_and(|k| k.starts_with("z6Mk")));
    assert!(identity["peer_id"].as_str().is_some_and(|k| k.starts_with("12D3KooW")));
    for field in ["c2sp_verifier_key", "c2sp_cosignature_verifier_key"] {
        let vkey = identity[field].as_str().expect("verifier key");
        let parsed = remembrancer_core::note::VerifierKey::parse(vkey).expect("a valid C2SP verifier key");
        assert_eq!(parsed.name, "did:vm:node:east1");
    }
    let again =
        remembrancer(&["keys", "generate", "--did", "did:vm:node:east1", "--out", "east1.key"], dir.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let shown = remembrancer(&["keys", "show", "--key", "east1.key", "--json"], dir.path());
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(shown, identity);
    let secret: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("east1.key")).expect("key")).expect("json");
    let secret = secret["secret_key"].as_str().expect("secret").to_string();
    let text = remembrancer(&["keys", "show", "--key", "east1.key"], dir.path());
    assert!(!stdout(&text).contains(&secret), "the secret is never printed");
    let bad_did = remembrancer(&["keys", "generate", "--did", "east1", "--out", "x.key"], dir.path());
    assert_eq!(bad_did.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_did.stderr).contains("did:"));
}

/// A cosignature line assembled by hand from the C2SP specs (key ID = SHA-256(name || 0x0A ||
/// 0x04 || key)[:4], payload = key ID || big-endian time || Ed25519 over
/// `cosignature/v1\ntime <t>\n<body>`), not by our note code: what any conformant witness
/// would produce for our checkpoint body, and `verify checkpoint` must accept it.
#[test]
fn verify_checkpoint_accepts_a_cosignature_built_from_the_c2sp_spec() {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    use sha2::Digest as _;

    let (_dir, out) = demo();
    let note = std::fs::read_to_string(out.join("checkpoint.note")).expect("note");
    let (body, signatures) = note.split_once("\n\n").expect("signed note");
    let body = format!("{body}\n");
    // Keep only the anchor's line; west1's cosignature will come from the hand-built line.
    let anchor_line = signatures.lines().find(|l| l.contains("did:vm:node:east1")).expect("anchor line");

    let key_file: Value =
        serde_json::from_slice(&std::fs::read(out.join("keys/west1.key")).expect("key")).expect("json");
    let mut seed = [0u8; 32];
    hex::decode_to_slice(key_file["secret_key"].as_str().expect("secret"), &mut seed).expect("hex");
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let name = "did:vm:node:west1";
    let mut id_input = name.as_bytes().to_vec();
    id_input.extend_from_slice(&[0x0a, 0x04]);
    id_input.extend_from_slice(key.verifying_key().as_bytes());
    let key_id = &sha2::Sha256::digest(&id_input)[..4];
    let time: u64 = 1_800_000_000;
    let message = format!("cosignature/v1\ntime {time}\n{body}");
    let signature = key.sign(message.as_bytes());
    let mut payload = key_id.to_vec();
    payload.extend_from_slice(&time.to_be_bytes());
    payload.extend_from_slice(&signature.to_bytes());
    let line = format!("\u{2014} {name} {}", base64::engine::general_purpose::STANDARD.encode(payload));

    let path = out.join("hand-cosigned.note");
    std::fs::write(&path, format!("{body}\n{anchor_line}\n{line}\n")).expect("write");
    let output = verify("checkpoint", &path, &out.join("registry.yaml"));
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("signature did:vm:node:west1 (witness): valid"), "{}", stdout(&output));

    // The same signature claimed at another time does not verify.
    let mut shifted = key_id.to_vec();
    shifted.extend_from_slice(&(time + 1).to_be_bytes());
    shifted.extend_from_slice(&signature.to_bytes());
    let forged = format!("\u{2014} {name} {}", base64::engine::general_purpose::STANDARD.encode(shifted));
    std::fs::write(&path, format!("{body}\n{anchor_line}\n{forged}\n")).expect("write");
    let rejected = verify("checkpoint", &path, &out.join("registry.yaml"));
    assert_eq!(rejected.status.code(), Some(1), "{}", stdout(&rejected));
}

#[test]
fn sim_runs_a_scenario_and_writes_its_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/scenarios/split-heal.toml");
    let output = remembrancer(&["sim", scenario, "--out", "reports", "--json"], dir.path());
    assert!(output.status.success(), "{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
    let value: Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let run = &value["runs"][0];
    assert_eq!(run["scenario"], "majority/minority split and heal");
    assert!(run["receipts_finalized"].as_u64().is_some_and(|n| n > 50));
    assert_eq!(run["violations"].as_array().map(Vec::len), Some(0));
    for file in ["summary.json", "series.csv", "finality.svg"] {
        assert!(dir.path().join("reports").join(file).is_file(), "{file} written");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = 'x'\nnodes = 4\nquorum = 2\nduration_ms = 10\n[load]\nbatch_interval_ms = 5\n",
    )
    .expect("write");
    let refused = remembrancer(&["sim", bad.to_str().expect("path")], dir.path());
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("quorum"), "the error names the field");
}

/// An auditor checks a receipt counted under a later registry version with the founding
/// registry and the chain of signed updates; a chain whose update lacks its quorum is refused.
#[test]
fn verify_replays_the_registry_update_chain_for_later_versions() {
    use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
    use remembrancer_core::governance::{status_change, ProposalReason};
    use remembrancer_core::identity::NodeIdentity;
    use remembrancer_core::message::RegistryContent;
    use remembrancer_core::receipt::{countersign, sign_anchor, FederationReceipt};
    use remembrancer_core::registry::{PeerStatus, Registry};
    use remembrancer_core::HashAlgorithm;

    let (_dir, out) = demo();
    let key = |name: &str| {
        NodeIdentity::from_key_file(
            &std::fs::read_to_string(out.join(format!("keys/{name}.key"))).expect("key"),
        )
        .expect("key file")
    };
    let (east, west) = (key("east1"), key("west1"));
    let founding =
        Registry::from_yaml(&std::fs::read_to_string(out.join("registry.yaml")).expect("registry"))
            .expect("founding registry");
    // Version 2 puts central1 on probation, signed by east1 and west1 (quorum 2).
    let reason = ProposalReason::Manual { memo: "maintenance".to_string() };
    let proposal =
        status_change(&founding, "did:vm:node:central1", PeerStatus::Probation, reason).expect("proposal");
    let chain = vec![RegistryContent {
        proposal: proposal.clone(),
        signatures: vec![proposal.sign(&east), proposal.sign(&west)],
    }];
    std::fs::write(out.join("chain.json"), serde_json::to_vec(&chain).expect("json")).expect("write");
    let version_2 = proposal.apply(&founding).expect("applies");
    // A receipt finalized under version 2 by east1 and west1.
    let checkpoint = Checkpoint {
        federation_id: founding.name.clone(),
        namespace: "dao:demo".to_string(),
        size: 7,
        root: [9u8; 32],
        anchor: AnchorClaim::local(HashAlgorithm::Sha256, 1_800_000_000).with_registry_version(2),
    };
    let receipt = FederationReceipt::assemble(
        &checkpoint,
        vec![sign_anchor(&east, &checkpoint), countersign(&west, &checkpoint, 1_800_000_005)],
        &version_2,
    );
    std::fs::write(out.join("receipt-v2.json"), receipt.to_json()).expect("write");

    let run = |extra: &[&str]| {
        let mut args = vec!["verify", "receipt", "receipt-v2.json", "--registry", "registry.yaml"];
        args.extend_from_slice(extra);
        remembrancer(&args, &out)
    };
    let without_chain = run(&[]);
    assert_eq!(without_chain.status.code(), Some(1), "{}", stdout(&without_chain));
    assert!(stdout(&without_chain).contains("FAIL registry version"), "{}", stdout(&without_chain));
    let with_chain = run(&["--updates", "chain.json"]);
    assert!(
        with_chain.status.success(),
        "{}{}",
        stdout(&with_chain),
        String::from_utf8_lossy(&with_chain.stderr)
    );
    // The older receipt still verifies against version 1 through the same chain.
    let old = remembrancer(
        &["verify", "receipt", "receipt.json", "--registry", "registry.yaml", "--updates", "chain.json"],
        &out,
    );
    assert!(old.status.success(), "{}", stdout(&old));
    // One signature short of the quorum: the update never took effect.
    let short = vec![RegistryContent { proposal: proposal.clone(), signatures: vec![proposal.sign(&east)] }];
    std::fs::write(out.join("short-chain.json"), serde_json::to_vec(&short).expect("json")).expect("write");
    let refused = run(&["--updates", "short-chain.json"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("updates[0].signatures"));
}

#[test]
fn sim_sweeps_the_seeds_a_scenario_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/scenarios/flapping-link.toml");
    let output = remembrancer(&["sim", scenario, "--out", "reports"], dir.path());
    assert!(output.status.success(), "{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
    let sweep: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("reports/sweep.json")).expect("sweep.json"))
            .expect("json");
    assert_eq!(sweep["seeds"], serde_json::json!([3, 4, 5]));
    assert_eq!(sweep["runs_with_violations"], 0);
    let receipts = &sweep["receipts_finalized"];
    assert!(
        receipts["min"].as_f64() <= receipts["mean"].as_f64()
            && receipts["mean"].as_f64() <= receipts["max"].as_f64()
    );
    for seed in [3, 4, 5] {
        assert!(dir.path().join(format!("reports/summary-seed{seed}.json")).is_file());
    }
}

#[test]
fn a_node_config_with_a_bad_thread_count_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.toml");
    let text = |threads: &str| {
        format!(
            "[node]\ndata_dir = \"data\"\nkey_file = \"node.key\"\nregistry = \"registry.yaml\"\nthreads = {threads}\n"
        )
    };
    for threads in ["0", "65"] {
        std::fs::write(&config, text(threads)).expect("write");
        let output = remembrancer(&["node", "run", "--config", "node.toml"], dir.path());
        assert!(!output.status.success(), "threads = {threads} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            stderr.contains("node.toml") && stderr.contains("`node.threads`: expected 1 to 64"),
            "{stderr}"
        );
    }
    // A valid count passes the check: the node goes on to its key file, which is missing here.
    std::fs::write(&config, text("1")).expect("write");
    let output = remembrancer(&["node", "run", "--config", "node.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("node.threads") && stderr.contains("node.key"), "{stderr}");
}

#[test]
fn logs_are_json_lines_with_log_format_json() {
    let (_dir, out) = demo();
    let registry = out.join("registry.yaml");
    let output = remembrancer(
        &[
            "--log-format",
            "json",
            "-v",
            "verify",
            "receipt",
            out.join("receipt.json").to_str().expect("path"),
            "--registry",
            registry.to_str().expect("path"),
        ],
        &out,
    );
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "-v logs at least the verdict");
    for line in lines {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(entry["level"].is_string() && entry["fields"].is_object(), "{entry}");
    }
}

#[cfg(unix)]
#[test]
fn a_node_refuses_a_key_file_other_users_can_read_and_says_how_to_fix_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = remembrancer(&["devnet", "--setup", "--nodes", "3", "--dir", "net"], dir.path());
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let key = dir.path().join("net/node1/node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = dir.path().join("net/node1/node.toml");
    let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_remembrancer"))
        .args(["node", "run", "--config", config.to_str().expect("path")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the node");
    let started = std::time::Instant::now();
    while node.try_wait().expect("wait").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = node.kill();
            panic!("the node started with a key file other users can read");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = node.wait_with_output().expect("output");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.contains("open to other users (mode 644)") && stderr.contains("chmod 600"), "{stderr}");
    assert!(!dir.path().join("net/node1/data/api.json").exists(), "the node did not start");
}

#[test]
fn completions_and_the_manual_cover_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bash = remembrancer(&["completions", "bash"], dir.path());
    assert!(bash.status.success());
    let bash = stdout(&bash);
    for word in ["federation", "propagate-anchor", "evidence", "--data-dir"] {
        assert!(bash.contains(word), "bash completions know {word}");
    }
    let page = remembrancer(&["man"], dir.path());
    assert!(page.status.success());
    let page = stdout(&page);
    assert!(
        page.starts_with(".ie") || page.contains(".TH remembrancer"),
        "a roff page: {}",
        &page[..page.len().min(200)]
    );
    let written = remembrancer(&["man", "--out", "man"], dir.path());
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    for page in ["remembrancer.1", "remembrancer-federation.1", "remembrancer-verify.1"] {
        assert!(dir.path().join("man").join(page).exists(), "{page}");
    }
}
