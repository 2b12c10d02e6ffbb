//! A local federation of real `remembrancer node run` processes for the tests: set up with
//! `remembrancer devnet --setup` (keys, registry, one config per node, node 1 the only
//! bootstrap address), driven with the CLI exactly as an operator drives it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The remembrancer binary under test.
pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_remembrancer")
}

/// Appends `data` to `namespace` through the CLI, against the node of `data_dir` (usable from
/// a writer thread); returns the node's answer (`first_index`, `size`) once it acknowledged
/// the record, else what the CLI printed. `create`: `--create` (a namespace no member lists).
pub fn append_at(
    data_dir: &std::path::Path,
    namespace: &str,
    data: &str,
    create: bool,
) -> Result<serde_json::Value, String> {
    let output = Command::new(exe())
        .args(["record", "append", "--namespace", namespace, data, "--json", "--data-dir"])
        .arg(data_dir)
        .args(create.then_some("--create"))
        .output()
        .expect("run the CLI");
    if !output.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("append answer: {e}"))
}

/// Nodes `1..=n`: `did:vm:node:dev<i>`, owner of namespace `dev:node<i>`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub n: usize,
    children: Vec<Option<Child>>,
}

/// A small deterministic generator (xorshift64*): a test's random timings repeat with its seed.
pub struct Seeded(pub u64);

impl Seeded {
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

pub fn did(i: usize) -> String {
    format!("did:vm:node:dev{i}")
}

pub fn namespace(i: usize) -> String {
    format!("dev:node{i}")
}

impl Cluster {
    /// Writes keys, the registry (quorum n/2+1) and configs for `n` nodes.
    pub fn setup(n: usize) -> Cluster {
        Cluster::setup_with_joiners(n, 0)
    }

    /// Members `1..=n` plus nodes `n+1..=n+joiners` that have keys and configs (bootstrap:
    /// node 1) but are outside the registry.
    pub fn setup_with_joiners(n: usize, joiners: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = Command::new(exe())
            .args([
                "devnet",
                "--setup",
                "--nodes",
                &n.to_string(),
                "--joiners",
                &joiners.to_string(),
                "--dir",
            ])
            .arg(dir.path())
            .output()
            .expect("run devnet --setup");
        assert!(output.status.success(), "devnet --setup: {}", String::from_utf8_lossy(&output.stderr));
        Cluster { dir, n: n + joiners, children: (0..=n + joiners).map(|_| None).collect() }
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("data")
    }

    /// Starts node `i` (its log is appended to `node<i>/node.log`) and waits for its API.
    pub fn start(&mut self, i: usize) {
        let _ = std::fs::remove_file(self.data_dir(i).join("api.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_dir(i).join("node.log"))
            .expect("node log");
        let mut command = Command::new(exe());
        // Each node is its config file alone (no `REMEMBRANCER_<FIELD>` of the test's shell).
        for (variable, _) in std::env::vars().filter(|(name, _)| name.starts_with("REMEMBRANCER_")) {
            command.env_remove(variable);
        }
        let child = command
            .args(["node", "run", "--config"])
            .arg(self.node_dir(i).join("node.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start node");
        self.children[i] = Some(child);
        let started = Instant::now();
        while self.try_status(i).is_none() {
            if let Some(Ok(Some(status))) = self.children[i].as_mut().map(Child::try_wait) {
                panic!("node{i} exited at start ({status}):\n{}", self.logs());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "node{i} did not start:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts nodes `1..=n` (the members when there are joiners: start those by hand).
    pub fn start_members(&mut self, n: usize) {
        for i in 1..=n {
            self.start(i);
        }
    }

    pub fn start_all(&mut self) {
        for i in 1..=self.n {
            self.start(i);
        }
    }

    /// Members `1..=n` set up and started, each connected to all the others.
    pub fn connected(n: usize) -> Cluster {
        let mut cluster = Cluster::setup(n);
        cluster.start_all();
        cluster.wait_connected(n);
        cluster
    }

    /// Waits until members `1..=n` are each connected to the `n - 1` others.
    pub fn wait_connected(&self, n: usize) {
        let others = n as u64 - 1;
        self.wait(&format!("every member connected to the {others} others"), Duration::from_secs(60), |c| {
            (1..=n).all(|i| c.connected_peers(i) >= others)
        });
    }

    /// Node `i`'s first listen address with its PeerId (`/ip4/.../p2p/...`): what another node
    /// bootstraps from.
    pub fn bootstrap_address(&self, i: usize) -> String {
        let status = self.status(i);
        format!(
            "{}/p2p/{}",
            status["listen"].as_array().and_then(|l| l.first()).and_then(|a| a.as_str()).expect("listen"),
            status["peer_id"].as_str().expect("peer id")
        )
    }

    /// SIGKILL: no chance to flush or save anything.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().expect("kill -9");
            let _ = child.wait();
        }
    }

    /// Runs the CLI against node `i`; returns (success, stdout + stderr).
    pub fn cli(&self, i: usize, args: &[&str]) -> (bool, String) {
        let output = Command::new(exe())
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .output()
            .expect("run the CLI");
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    /// `federation status --json` of node `i`, or None when it does not answer.
    pub fn try_status(&self, i: usize) -> Option<serde_json::Value> {
        let (ok, text) = self.cli(i, &["federation", "status", "--json"]);
        if !ok {
            return None;
        }
        serde_json::from_str(&text).ok()
    }

    pub fn status(&self, i: usize) -> serde_json::Value {
        self.try_status(i).unwrap_or_else(|| panic!("node{i} does not answer:\n{}", self.logs()))
    }

    /// The final size of `namespace` that node `i` holds (0 when none or unreachable).
    pub fn final_size(&self, i: usize, namespace: &str) -> u64 {
        self.try_status(i)
            .and_then(|s| {
                s["namespaces"].as_array().and_then(|list| {
                    list.iter().find(|n| n["namespace"] == namespace).and_then(|n| n["final_size"].as_u64())
                })
            })
            .unwrap_or(0)
    }

    pub fn connected_peers(&self, i: usize) -> u64 {
        self.try_status(i).and_then(|s| s["connected_peers"].as_u64()).unwrap_or(0)
    }

    /// Appends one record to node `i`'s own namespace; returns the size after it (the
    /// append is acknowledged once the record is on disk).
    pub fn append(&self, i: usize, data: &str) -> u64 {
        let (ok, text) = self.cli(i, &["record", "append", "--namespace", &namespace(i), data, "--json"]);
        assert!(ok, "append to node{i}: {text}");
        let answer: serde_json::Value = serde_json::from_str(&text).expect("append answer");
        answer["size"].as_u64().expect("size")
    }

    /// Appends many records to node `i`'s own namespace in one API request, as a client
    /// program would (the CLI appends one); returns the size after them.
    pub fn append_batch(&self, i: usize, records: &[String]) -> u64 {
        use base64::Engine as _;
        use std::io::{Read as _, Write as _};
        let data_dir = self.data_dir(i);
        let info = self.api_info(i);
        let token = std::fs::read_to_string(data_dir.join("api.token")).expect("api.token");
        let address = info["address"].as_str().expect("address").to_string();
        let encoded: Vec<String> =
            records.iter().map(|r| base64::engine::general_purpose::STANDARD.encode(r)).collect();
        let body = serde_json::to_vec(&serde_json::json!({"namespace": namespace(i), "records": encoded}))
            .expect("body");
        let mut stream = std::net::TcpStream::connect(&address).expect("connect to the API");
        stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        write!(
            stream,
            "POST /api/v1/records HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            token.trim(),
            body.len()
        )
        .expect("request");
        stream.write_all(&body).expect("body");
        let mut response = String::new();
        stream.take(1 << 20).read_to_string(&mut response).expect("response");
        let (head, answer) = response.split_once("\r\n\r\n").expect("HTTP answer");
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "append of {} records to node{i}: {response}",
            records.len()
        );
        let answer: serde_json::Value = serde_json::from_str(answer).expect("JSON answer");
        answer["size"].as_u64().expect("size")
    }

    /// Latest receipt per namespace on node `i`: (namespace, size, root).
    pub fn receipts(&self, i: usize) -> Vec<(String, u64, String)> {
        let (ok, text) = self.cli(i, &["receipts", "list", "--json"]);
        assert!(ok, "receipts list on node{i}: {text}");
        let list: serde_json::Value = serde_json::from_str(&text).expect("receipts json");
        let mut receipts: Vec<(String, u64, String)> = list
            .as_array()
            .expect("array")
            .iter()
            .map(|r| {
                (
                    r["namespace"].as_str().unwrap_or_default().to_string(),
                    r["size"].as_u64().unwrap_or_default(),
                    r["root"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        receipts.sort();
        receipts
    }

    /// Waits until `condition` holds, failing with `what` and the nodes' logs after `limit`.
    pub fn wait(&self, what: &str, limit: Duration, mut condition: impl FnMut(&Cluster) -> bool) {
        let started = Instant::now();
        while !condition(self) {
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?} waiting for: {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What node `i` wrote of itself when it started (`data/api.json`: API address, pid,
    /// explorer address).
    pub fn api_info(&self, i: usize) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.data_dir(i).join("api.json")).expect("api.json"))
            .expect("api.json is JSON")
    }

    /// Node `i`'s public explorer, `http://ADDRESS` (the devnet turns it on).
    pub fn explorer_url(&self, i: usize) -> String {
        format!("http://{}", self.api_info(i)["explorer"].as_str().expect("the devnet turns the explorer on"))
    }

    /// Node `i`'s key, from its key file.
    pub fn identity(&self, i: usize) -> remembrancer_core::identity::NodeIdentity {
        let text = std::fs::read_to_string(self.node_dir(i).join("node.key")).expect("key file");
        remembrancer_core::identity::NodeIdentity::from_key_file(&text).expect("key")
    }

    /// Namespace `ns` as node `i`'s status shows it.
    pub fn namespace_status(&self, i: usize, ns: &str) -> serde_json::Value {
        let status = self.status(i);
        status["namespaces"]
            .as_array()
            .and_then(|list| list.iter().find(|n| n["namespace"] == ns).cloned())
            .unwrap_or_else(|| panic!("node{i} does not list {ns}: {status}"))
    }

    /// Lines of node `i`'s log that contain `text`.
    pub fn log_lines(&self, i: usize, text: &str) -> usize {
        std::fs::read_to_string(self.node_dir(i).join("node.log")).unwrap_or_default().matches(text).count()
    }

    /// Proves record `index` of `ns` on node `i` and verifies the bundle offline, as an
    /// auditor; returns the record the bundle carries.
    pub fn proven_record(&self, i: usize, ns: &str, index: u64) -> String {
        let bundle = self.dir.path().join(format!("proof-{i}-{}-{index}.json", ns.replace(':', "-")));
        let (ok, text) = self.cli(
            i,
            &["proof", "--namespace", ns, "--index", &index.to_string(), "--out", &bundle.to_string_lossy()],
        );
        assert!(ok, "proof of {ns} record {index}: {text}");
        let output = Command::new(exe())
            .args(["verify", "proof"])
            .arg(&bundle)
            .arg("--registry")
            .arg(self.dir.path().join("registry.yaml"))
            .output()
            .expect("run verify");
        let verdict = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && verdict.contains("holds: all"), "{ns} record {index}: {verdict}");
        use base64::Engine as _;
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&bundle).expect("bundle")).expect("bundle JSON");
        let record = base64::engine::general_purpose::STANDARD
            .decode(bundle["record"].as_str().expect("record"))
            .expect("base64 record");
        String::from_utf8(record).expect("UTF-8 record")
    }

    /// The last lines of every node's log.
    pub fn logs(&self) -> String {
        (1..=self.n)
            .map(|i| {
                let log = std::fs::read_to_string(self.node_dir(i).join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                format!("--- node{i}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Byte ranges of `text` a one-byte mutation may leave valid on purpose: the `observed`
/// object (what the nodes saw, shown and not checked), and the signer names of the checkpoint's
/// signature lines (a line from a key outside the registry is ignored, as C2SP verifiers do,
/// and a checkpoint signed by more than its quorum still holds without one).
pub fn unchecked(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let start = text.find("\"observed\": {").expect("observed");
    let end = start + text[start..].find('}').expect("end of observed");
    ranges.push(start..end + 1);
    let mut at = 0;
    while let Some(found) = text[at..].find("\u{2014} ") {
        let name = at + found + "\u{2014} ".len();
        let len = text[name..].find(' ').expect("name ends");
        ranges.push(name..name + len);
        at = name + len;
    }
    ranges
}

/// Asserts that `verifies` holds for `text` and fails for every one-byte change of it (the
/// lowest bit flipped) outside [`unchecked`]; at least `at_least` bytes are tried.
pub fn assert_every_byte_matters(text: &str, at_least: usize, verifies: impl Fn(&[u8]) -> bool) {
    let bytes = text.as_bytes();
    assert!(verifies(bytes), "the untouched text verifies");
    let skip = unchecked(text);
    let mut tried = 0;
    for i in 0..bytes.len() {
        if skip.iter().any(|range| range.contains(&i)) {
            continue;
        }
        let mut mutated = bytes.to_vec();
        mutated[i] ^= 0x01;
        tried += 1;
        assert!(
            !verifies(&mutated),
            "byte {i} changed ({:?}) still verifies: ...{}...",
            bytes[i] as char,
            String::from_utf8_lossy(&bytes[i.saturating_sub(40)..(i + 40).min(bytes.len())])
        );
    }
    assert!(tried > at_least, "{tried} bytes tried");
}
