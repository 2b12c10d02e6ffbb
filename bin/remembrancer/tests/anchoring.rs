//! External anchors on real node processes and a real local chain (anvil, installed by
//! scripts/setup): the devnet's `--anchor eip155` main job, and a collaborative federation
//! whose elected node, killed with SIGKILL after sending its anchor transaction, resumes the
//! same transaction after a restart and pays once.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{exe, Cluster};
use remembrancer_core::registry::{AnchorMode, Registry};

/// anvil for one test, killed when dropped.
struct Chain {
    child: Child,
    url: String,
    keys: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Chain {
    fn start(automine: bool) -> Chain {
        let binary = std::env::var_os("REMEMBRANCER_ANVIL").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/anvil/node_modules/.bin/anvil")
        });
        assert!(binary.exists(), "anvil is not at {}: run scripts/setup", binary.display());
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("anvil.json");
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let mut command = Command::new(binary);
        command
            .args(["--port", &port.to_string(), "--accounts", "3", "--silent", "--config-out"])
            .arg(&config);
        if !automine {
            command.arg("--no-mining");
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("anvil");
        let started = Instant::now();
        let written = loop {
            if let Some(value) = std::fs::read_to_string(&config)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            {
                break value;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "anvil did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        let keys = written["private_keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k.as_str().expect("key").to_string())
            .collect();
        Chain { child, url: format!("http://127.0.0.1:{port}"), keys, _dir: dir }
    }

    fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut response = ureq::post(&self.url)
            .content_type("application/json")
            .send(serde_json::to_vec(&body).expect("json").as_slice())
            .expect("rpc");
        let bytes = response.body_mut().read_to_vec().expect("answer");
        let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        answer["result"].clone()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Node `i`'s config made to anchor at `chain` (account `i - 1`), epochs of `epoch_ms`.
fn anchor_at(cluster: &Cluster, i: usize, chain: &Chain, epoch_ms: u64) {
    let path = cluster.node_dir(i).join("node.toml");
    let mut config: toml::Table =
        toml::from_str(&std::fs::read_to_string(&path).expect("config")).expect("toml");
    let key = cluster.node_dir(i).join("anchor.key");
    std::fs::write(&key, &chain.keys[i - 1]).expect("key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let anchor = config.get_mut("anchor").and_then(|a| a.as_table_mut()).expect("[anchor]");
    anchor.insert("anchor_target".into(), "eip155".into());
    anchor.insert("rpc_url".into(), chain.url.clone().into());
    anchor.insert("confirmations".into(), 2.into());
    anchor.insert("poll_interval_ms".into(), 200.into());
    anchor.insert("anchor_key_file".into(), "anchor.key".into());
    let engine = config.get_mut("engine").and_then(|a| a.as_table_mut()).expect("[engine]");
    engine.insert("epoch_ms".into(), (epoch_ms as i64).into());
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
}

/// Three members anchoring at `chain` in `mode` with 2-second epochs, the registry changed
/// further by `edit` and each node's config by `config` before they start; started and
/// connected.
fn federation(
    chain: &Chain,
    mode: AnchorMode,
    edit: impl FnOnce(&mut Registry),
    config: impl Fn(&Cluster, usize),
) -> Cluster {
    let mut cluster = Cluster::setup(3);
    let path = cluster.dir.path().join("registry.yaml");
    let mut registry =
        Registry::from_yaml(&std::fs::read_to_string(&path).expect("registry")).expect("parses");
    registry.anchor_propagation.mode = mode;
    edit(&mut registry);
    std::fs::write(&path, registry.to_yaml()).expect("write registry");
    for i in 1..=3 {
        anchor_at(&cluster, i, chain, 2000);
        config(&cluster, i);
    }
    cluster.start_all();
    cluster.wait_connected(3);
    cluster
}

/// `proof --anchor` of record 0 of node `i`'s namespace, once there is one (mining a block per
/// try: each transaction is mined at once, the blocks after it come from here): the file, the
/// proof, and the hash of its block as the chain itself gives it (the auditor's trusted hash).
fn anchor_proof(
    cluster: &Cluster,
    chain: &Chain,
    i: usize,
    name: &str,
) -> (String, serde_json::Value, String) {
    let path = cluster.dir.path().join(name).to_str().expect("path").to_string();
    let namespace = common::namespace(i);
    cluster.wait("an anchor proof of record 0", Duration::from_secs(60), |c| {
        chain.rpc("anvil_mine", serde_json::json!(["0x1"]));
        c.cli(i, &["proof", "--namespace", &namespace, "--index", "0", "--anchor", "--out", &path]).0
    });
    let proof: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("proof")).expect("json");
    let block = proof["anchor"]["block"].as_u64().expect("block");
    let trusted = chain.rpc("eth_getBlockByNumber", serde_json::json!([format!("{block:#x}"), false]))
        ["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    (path, proof, trusted)
}

fn anchors(cluster: &Cluster, i: usize) -> Vec<serde_json::Value> {
    let (ok, text) = cluster.cli(i, &["federation", "anchors", "--json"]);
    if !ok {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap_or_default()
}

#[test]
fn the_devnet_anchors_each_epoch_on_a_local_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let output = Command::new(exe())
        .args(["devnet", "--anchor", "eip155", "--nodes", "3", "--seconds", "24", "--records", "5", "--dir"])
        .arg(dir.path().join("net"))
        .output()
        .expect("devnet");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    let finals: Vec<&str> =
        text.lines().filter(|l| l.contains("eip155:31337 final for {\"epoch\"")).collect();
    assert!(!finals.is_empty(), "{text}");
    for line in &finals {
        let tx = line.split(" in tx ").nth(1).and_then(|rest| rest.split(' ').next()).expect("tx");
        assert!(tx.len() == 66 && tx.starts_with("0x"), "a transaction hash: {line}");
    }
    assert!(text.contains(&format!("{} anchors final on the chain", finals.len())), "{text}");
}

#[test]
fn an_anchoring_node_killed_after_sending_resumes_its_transaction_and_pays_once() {
    let chain = Chain::start(false);
    let mut cluster = federation(&chain, AnchorMode::Collaborative, |_| {}, |_, _| {});
    for i in 1..=3 {
        cluster.append(i, "to anchor");
    }
    // Blocks are mined only when the test says: the elected node's transaction waits in the
    // pool, and the node is killed with it there.
    let started = Instant::now();
    let (node, submitted) = loop {
        let found = (1..=3).find_map(|i| {
            anchors(&cluster, i).into_iter().find(|a| a["status"] == "submitted").map(|a| (i, a))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no anchor submitted:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    let tx = submitted["tx_hash"].as_str().expect("tx").to_string();
    cluster.kill9(node);
    let pending = chain.rpc("eth_getTransactionByHash", serde_json::json!([tx]));
    assert!(pending.is_object() && pending["blockNumber"].is_null(), "in the pool: {pending}");
    chain.rpc("anvil_mine", serde_json::json!(["0x3"]));
    cluster.start(node);
    cluster.wait("the resumed anchor final", Duration::from_secs(30), |c| {
        anchors(c, node).iter().any(|a| a["tx_hash"] == tx.as_str() && a["status"] == "final")
    });
    let resumed =
        anchors(&cluster, node).into_iter().find(|a| a["tx_hash"] == tx.as_str()).expect("the anchor");
    assert_eq!(resumed["transactions"], 1, "one transaction for the root: {resumed}");
    assert_eq!(resumed["for"]["epoch"], submitted["for"]["epoch"]);
    // On the chain: a transaction to itself carrying "RMB1" and the anchored root.
    let mined = chain.rpc("eth_getTransactionByHash", serde_json::json!([tx]));
    assert_eq!(mined["to"], mined["from"]);
    let root = resumed["root"].as_str().expect("root");
    assert_eq!(mined["input"].as_str().expect("input"), format!("0x{}{root}", hex::encode("RMB1")));
    // The account paid for exactly the anchors the node made: no second transaction for it.
    let account = mined["from"].as_str().expect("from").to_string();
    let sent = chain.rpc("eth_getTransactionCount", serde_json::json!([account, "latest"]));
    let made = anchors(&cluster, node).iter().filter(|a| a["status"] == "final").count() as u64;
    assert_eq!(
        u64::from_str_radix(sent.as_str().expect("hex").trim_start_matches("0x"), 16).expect("n"),
        made
    );
    let (ok, status) = cluster.cli(node, &["federation", "status"]);
    assert!(ok && status.contains("anchoring at eip155:31337 from 0x"), "{status}");
}

#[test]
fn an_anchor_proof_verifies_offline_from_one_block_hash_and_no_one_byte_change_of_its_claims_does() {
    let chain = Chain::start(true);
    let cluster = federation(&chain, AnchorMode::Collaborative, |_| {}, |_, _| {});
    cluster.append(1, "a record worth anchoring");
    let (path, proof, trusted) = anchor_proof(&cluster, &chain, 1, "anchor-proof.json");
    let text = std::fs::read_to_string(&path).expect("proof");
    // The receipt, as the node lists it, names the same transaction.
    let (ok, listed) = cluster.cli(1, &["receipts", "list", "--namespace", &common::namespace(1), "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let first = &listed[0]["external_anchor"];
    assert!(ok && first["tx_hash"] == proof["anchor"]["tx_hash"], "{listed}");
    assert_eq!(first["block_hash"], proof["anchor"]["block_hash"]);
    let (_, human) = cluster.cli(1, &["receipts", "list", "--namespace", &common::namespace(1)]);
    let tx = proof["anchor"]["tx_hash"].as_str().expect("tx");
    assert!(
        human.lines().next().is_some_and(|l| l.contains(&format!("anchored at eip155:31337 in tx {tx}"))),
        "{human}"
    );
    let registry = cluster.dir.path().join("registry.yaml");
    let verify = |extra: &[&str]| {
        let output = Command::new(exe())
            .args(["verify", "anchor", &path, "--registry"])
            .arg(&registry)
            .args(extra)
            .output()
            .expect("verify");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, out) = verify(&["--block-hash", &trusted]);
    assert_eq!(code, Some(0), "{out}");
    for line in [
        "ok   epoch entry",
        "ok   epoch path",
        "ok   transaction",
        "ok   block",
        "ok   trusted block",
        "ok   quorum",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    let (code, out) = verify(&[]);
    assert!(code == Some(1) && out.contains("FAIL trusted block: give --block-hash"), "{out}");
    let wrong = format!("0x{}", "ab".repeat(32));
    let (code, out) = verify(&["--block-hash", &wrong]);
    assert!(code == Some(1) && out.contains("not the trusted"), "{out}");

    // Every other byte, changed alone, breaks the proof.
    let registry =
        Registry::from_yaml(&std::fs::read_to_string(&registry).expect("registry")).expect("parses");
    let trust = remembrancer_anchor::proof::Trust { block_hash: Some(&trusted), tsa_roots: None };
    common::assert_every_byte_matters(&text, 2000, |bytes| {
        remembrancer_anchor::proof::verify_anchor_proof(bytes, &registry, &trust).all_ok()
    });
}

#[test]
fn a_treasury_cap_holds_anchoring_until_a_quorum_raises_it() {
    let chain = Chain::start(true);
    // Collaborative, with a cap per anchor of 1 gwei: no anchor transaction fits under it.
    let cap = |registry: &mut Registry| registry.anchor_propagation.cap_per_anchor_gwei = Some(1);
    let cluster = federation(&chain, AnchorMode::Collaborative, cap, |_, _| {});
    for i in 1..=3 {
        cluster.append(i, "under a cap");
    }
    // Held: an elected node says why in its status, and nothing reaches the chain.
    let held = |c: &Cluster| {
        (1..=3).find(|&i| {
            c.try_status(i).is_some_and(|s| {
                s["anchoring"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("treasury cap per anchor reached"))
            })
        })
    };
    cluster.wait("an anchor held by the cap", Duration::from_secs(30), |c| held(c).is_some());
    let node = held(&cluster).expect("held");
    let (ok, status) = cluster.cli(node, &["federation", "status"]);
    assert!(ok && status.contains("last error: treasury cap per anchor reached"), "{status}");
    assert!(status.contains("federation propose --cap-per-anchor"), "says what lifts it: {status}");
    assert_eq!(chain.rpc("eth_blockNumber", serde_json::json!([])), "0x0", "no transaction went out");
    let (ok, treasury) = cluster.cli(1, &["federation", "treasury", "--json"]);
    assert!(ok, "{treasury}");
    let treasury: serde_json::Value = serde_json::from_str(&treasury).expect("json");
    assert_eq!(treasury["caps"]["per_anchor_gwei"], "1");

    // A quorum raises the cap: anchoring resumes.
    let (ok, text) = cluster.cli(1, &["federation", "propose", "--cap-per-anchor", "1000000000", "--json"]);
    assert!(ok, "{text}");
    let digest = serde_json::from_str::<serde_json::Value>(&text).expect("json")["proposal"]
        .as_str()
        .expect("d")
        .to_string();
    cluster.wait("the proposal on node 2", Duration::from_secs(30), |c| {
        let (ok, text) = c.cli(2, &["federation", "proposals"]);
        ok && text.contains(&digest)
    });
    let (ok, text) = cluster.cli(2, &["federation", "approve", &digest]);
    assert!(ok && text.contains("quorum reached"), "{text}");
    cluster.wait("an anchor final after the raise", Duration::from_secs(60), |c| {
        chain.rpc("anvil_mine", serde_json::json!(["0x1"]));
        (1..=3).any(|i| anchors(c, i).iter().any(|a| a["status"] == "final"))
    });
    let (ok, treasury) = cluster.cli(1, &["federation", "treasury"]);
    assert!(
        ok && treasury.contains("caps: per member and epoch none, per anchor 1000000000 gwei"),
        "{treasury}"
    );
}

#[test]
fn in_hybrid_mode_a_secondary_anchors_the_epochs_whose_primary_cannot_reach_its_chain() {
    let chain = Chain::start(true);
    // Nodes 1 and 2 point at an RPC nothing answers on; node 3 alone reaches the chain. The
    // election makes node 3 primary for about a third of the epochs: every other epoch is
    // anchored only if a secondary takes over after the deadline.
    let dead_rpc = |cluster: &Cluster, i: usize| {
        if i < 3 {
            let config = cluster.node_dir(i).join("node.toml");
            let text =
                std::fs::read_to_string(&config).expect("config").replace(&chain.url, "http://127.0.0.1:9");
            std::fs::write(&config, text).expect("write config");
        }
    };
    let cluster = federation(&chain, AnchorMode::Hybrid, |_| {}, dead_rpc);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        for i in 1..=3 {
            cluster.append(i, "hybrid");
        }
        chain.rpc("anvil_mine", serde_json::json!(["0x1"]));
        std::thread::sleep(Duration::from_millis(300));
    }
    for _ in 0..20 {
        chain.rpc("anvil_mine", serde_json::json!(["0x1"]));
        std::thread::sleep(Duration::from_millis(300));
    }
    let epochs: std::collections::BTreeSet<u64> = anchors(&cluster, 3)
        .iter()
        .filter(|a| a["status"] == "final")
        .filter_map(|a| a["for"]["epoch"].as_u64())
        .collect();
    // Fifteen epochs passed; node 3, primary in about five, anchored nearly all of them.
    assert!(epochs.len() >= 10, "node 3 anchored {} epochs: {epochs:?}\n{}", epochs.len(), cluster.logs());
    let (ok, status) = cluster.cli(1, &["federation", "status", "--json"]);
    assert!(ok, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    let error = status["anchoring"]["last_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("127.0.0.1:9"), "node 1 says its chain does not answer: {status:#}");
    assert_eq!(status["anchoring"]["final"], 0);
}

#[test]
fn in_independent_mode_a_receipt_anchored_alone_has_an_anchor_proof_too() {
    let chain = Chain::start(true);
    let cluster = federation(&chain, AnchorMode::Independent, |_| {}, |_, _| {});
    cluster.append(2, "anchored alone");
    let (path, proof, trusted) = anchor_proof(&cluster, &chain, 2, "alone.json");
    assert!(proof["epoch"].is_null(), "no epoch path: {proof:#}");
    let registry = cluster.dir.path().join("registry.yaml");
    let output = Command::new(exe())
        .args(["verify", "anchor", &path, "--registry"])
        .arg(&registry)
        .args(["--block-hash", &trusted])
        .output()
        .expect("verify");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("ok   anchored root: the receipt was anchored alone"), "{text}");
    // Another root named as the batch root: refused.
    let mut other = proof.clone();
    other["anchor"]["batch_root"] = serde_json::json!(format!("sha256:{}", "00".repeat(32)));
    let registry =
        Registry::from_yaml(&std::fs::read_to_string(&registry).expect("registry")).expect("parses");
    let bytes = serde_json::to_vec(&other).expect("json");
    let trust = remembrancer_anchor::proof::Trust { block_hash: Some(&trusted), tsa_roots: None };
    let report = remembrancer_anchor::proof::verify_anchor_proof(&bytes, &registry, &trust);
    assert!(!report.all_ok());
}
