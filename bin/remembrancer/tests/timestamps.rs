//! RFC 3161 anchors on real node processes: a collaborative federation anchoring each epoch at
//! a real time-stamp authority (the system's `openssl ts -reply` behind the dev TSA's HTTP
//! server), an anchor proof from a member that did not ask the TSA itself (the token travels
//! with the epoch anchor), verified offline from the TSA's root certificate, refused without it
//! or under another root, and broken by any one-byte change of what it claims; and the
//! devnet's `--anchor rfc3161`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{exe, Cluster};
use remembrancer_anchor::devtsa::{DevTsa, POLICY};
use remembrancer_core::registry::{AnchorMode, Registry};

/// A dev TSA served from this test's runtime (kept alive by the caller).
fn tsa(dir: &std::path::Path, name: &str) -> (tokio::runtime::Runtime, String, std::path::PathBuf) {
    let tsa = DevTsa::create(dir, name, 3).expect("a dev TSA");
    let ca = tsa.ca.clone();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let url = runtime.block_on(Arc::new(tsa).serve()).expect("served");
    (runtime, url, ca)
}

#[test]
fn an_rfc3161_anchor_proof_verifies_offline_from_the_tsa_root_and_no_one_byte_change_of_its_claims_does() {
    let keep = tempfile::tempdir().expect("dir");
    let (_runtime, url, ca) = tsa(&keep.path().join("tsa"), "Test TSA");
    let mut cluster = Cluster::setup(3);
    let path = cluster.dir.path().join("registry.yaml");
    let mut registry =
        Registry::from_yaml(&std::fs::read_to_string(&path).expect("registry")).expect("parses");
    registry.anchor_propagation.mode = AnchorMode::Collaborative;
    std::fs::write(&path, registry.to_yaml()).expect("write registry");
    for i in 1..=3 {
        let file = cluster.node_dir(i).join("node.toml");
        let mut config: toml::Table =
            toml::from_str(&std::fs::read_to_string(&file).expect("config")).expect("toml");
        let anchor = config.get_mut("anchor").and_then(|a| a.as_table_mut()).expect("[anchor]");
        anchor.insert("anchor_target".into(), "rfc3161".into());
        anchor.insert("tsa_urls".into(), toml::Value::Array(vec![url.clone().into()]));
        anchor.insert("tsa_ca_file".into(), ca.display().to_string().into());
        anchor.insert("tsa_policy".into(), POLICY.into());
        anchor.insert("poll_interval_ms".into(), 200.into());
        let engine = config.get_mut("engine").and_then(|a| a.as_table_mut()).expect("[engine]");
        engine.insert("epoch_ms".into(), 2000.into());
        std::fs::write(&file, toml::to_string(&config).expect("toml")).expect("write config");
    }
    cluster.start_all();
    cluster.wait_connected(3);
    for i in 1..=3 {
        cluster.append(i, "a record worth a time-stamp");
    }
    // Each member's proof of its own record 0: the same epoch covers all three, one member
    // asked the TSA, and the other two give the proof from the token gossiped to them.
    let mut proofs = Vec::new();
    for i in 1..=3 {
        let out = cluster.dir.path().join(format!("proof-{i}.json")).to_str().expect("path").to_string();
        let namespace = common::namespace(i);
        cluster.wait("an rfc3161 anchor proof", Duration::from_secs(60), |c| {
            c.cli(i, &["proof", "--namespace", &namespace, "--index", "0", "--anchor", "--out", &out]).0
        });
        let proof: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).expect("proof")).expect("json");
        assert_eq!(proof["anchor"]["target"], "rfc3161");
        assert_eq!(proof["anchor"]["tsa"], "CN=Test TSA");
        assert!(proof["chain"].is_null() && proof["token"].is_string(), "{proof}");
        proofs.push((i, out, proof));
    }
    let anchorers: Vec<&str> =
        proofs.iter().filter_map(|(_, _, p)| p["observed"]["anchorer"].as_str()).collect();
    let gossiped =
        proofs.iter().filter(|(i, _, p)| p["observed"]["anchorer"] != common::did(*i).as_str()).count();
    assert!(gossiped >= 1, "a proof from a member that did not anchor: {anchorers:?}");
    // Each receipt, as its node lists it, names its time-stamp.
    for (i, _, proof) in &proofs {
        let (ok, listed) =
            cluster.cli(*i, &["receipts", "list", "--namespace", &common::namespace(*i), "--json"]);
        let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
        let anchor = &listed[0]["external_anchor"];
        assert!(ok && anchor["target"] == "rfc3161" && anchor["time_stamped"] == true, "{listed}");
        assert_eq!(anchor["timestamp"], proof["anchor"]["timestamp"]);
    }
    let (ok, status) = cluster.cli(1, &["federation", "status"]);
    assert!(ok && status.contains(&format!("anchoring at rfc3161 via {url}")), "{status}");

    let (_, file, _) = &proofs[0];
    let verify = |extra: &[&str]| {
        let output = Command::new(exe())
            .args(["verify", "anchor", file, "--registry"])
            .arg(&path)
            .args(extra)
            .output()
            .expect("verify");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, out) = verify(&["--tsa-cert", ca.to_str().expect("path")]);
    assert_eq!(code, Some(0), "{out}");
    for line in
        ["ok   quorum", "ok   epoch entry", "ok   epoch path", "ok   time-stamp: CN=Test TSA stamped RMB1"]
    {
        assert!(out.contains(line), "{line}: {out}");
    }
    let (code, out) = verify(&[]);
    assert!(code == Some(1) && out.contains("FAIL trusted TSA: give --tsa-cert"), "{out}");
    let other = tempfile::tempdir().expect("dir");
    let stranger = DevTsa::create(other.path(), "Test TSA", 3).expect("another TSA");
    let (code, out) = verify(&["--tsa-cert", stranger.ca.to_str().expect("path")]);
    assert!(
        code == Some(1) && out.contains("FAIL time-stamp: the token's signature does not verify"),
        "{out}"
    );

    // Every other byte, changed alone, breaks the proof.
    let text = std::fs::read_to_string(file).expect("proof");
    let registry = Registry::from_yaml(&std::fs::read_to_string(&path).expect("registry")).expect("parses");
    let roots = remembrancer_anchor::tsp::trusted_roots(&std::fs::read(&ca).expect("ca")).expect("roots");
    let trust = remembrancer_anchor::proof::Trust { block_hash: None, tsa_roots: Some(&roots) };
    common::assert_every_byte_matters(&text, 2000, |bytes| {
        remembrancer_anchor::proof::verify_anchor_proof(bytes, &registry, &trust).all_ok()
    });
}

#[test]
fn the_devnet_time_stamps_each_epoch_at_a_local_tsa() {
    let dir = tempfile::tempdir().expect("dir");
    let output = Command::new(exe())
        .args(["devnet", "--anchor", "rfc3161", "--nodes", "3", "--seconds", "16", "--records", "5", "--dir"])
        .arg(dir.path().join("net"))
        .output()
        .expect("devnet");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("local time-stamp authority (openssl ts) at http://127.0.0.1:"), "{text}");
    let finals: Vec<&str> = text.lines().filter(|l| l.contains(": rfc3161 final for {\"epoch\"")).collect();
    assert!(!finals.is_empty(), "{text}");
    for line in &finals {
        assert!(line.contains("by CN=Devnet TSA at 20"), "{line}");
    }
    assert!(text.contains(&format!("{} anchors final at the TSA", finals.len())), "{text}");
}
