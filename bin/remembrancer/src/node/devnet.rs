//! `remembrancer devnet`: a local federation of N real node processes on 127.0.0.1, each with
//! its own key, config and RocksDB directory under one folder. Node 1 is the only address the
//! others know (they find each other through the DHT). Every round appends records to each
//! node's namespace and shows, per namespace, the final size every node holds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::registry::{
    AnchorMode, AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument,
};

use super::config::{
    Admission, AllowEntry, AnchorSection, AnchorTargetKind, EngineSection, ExplorerSection, MessagingSection,
    NetworkSection, NodeConfig, NodeSection,
};
use super::devchain::DevChain;
use super::http::Client;
use crate::cli::DevnetArgs;

/// Most nodes a devnet starts.
pub const DEVNET_NODES_MAX: usize = 20;
/// One round: append to every namespace, wait this long, read every node's final sizes.
const ROUND: Duration = Duration::from_millis(1500);

/// The folder layout of one devnet node.
struct DevNode {
    dir: PathBuf,
    namespace: String,
    child: Option<Child>,
}

impl DevNode {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// Lowest port [`free_ports`] hands out: above the registered services most machines run.
const LISTEN_PORT_MIN: u16 = 10_000;
/// Where Linux keeps the range it takes ephemeral ports from (`bind` to port 0, and the source
/// port of every outgoing connection).
const EPHEMERAL_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// `count` distinct free ports on 127.0.0.1 for the nodes' listen addresses.
///
/// They are drawn at random from below the kernel's ephemeral range. A port from inside it can
/// be taken between this choice and the node's start by anything that binds port 0 or dials
/// out: in the tests node 1's API (port 0) once took the port chosen for node 5, which then
/// could not start. Every probe stays bound until all are chosen, so no two nodes get one port.
/// Where the ephemeral range leaves too little room below it, the kernel chooses (port 0).
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let ephemeral_start = std::fs::read_to_string(EPHEMERAL_RANGE)
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|first| first.parse::<u16>().ok()));
    let mut probes = Vec::with_capacity(count);
    if let Some(end) = ephemeral_start.filter(|&end| end > LISTEN_PORT_MIN + 1_000) {
        let span = u32::from(end - LISTEN_PORT_MIN);
        let mut attempts = 0;
        while probes.len() < count && attempts < 64 * count.max(1) {
            attempts += 1;
            let mut draw = [0u8; 4];
            super::runtime::getrandom_bytes(&mut draw)?;
            let port = LISTEN_PORT_MIN + (u32::from_le_bytes(draw) % span) as u16;
            if let Ok(probe) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                probes.push(probe);
            }
        }
    }
    while probes.len() < count {
        probes.push(
            std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port on 127.0.0.1")?,
        );
    }
    probes.iter().map(|probe| Ok(probe.local_addr()?.port())).collect()
}

fn load_or_create_key(path: &Path, did: &str) -> anyhow::Result<NodeIdentity> {
    if path.exists() {
        let text = crate::files::read_bounded(path, 64 * 1024)?;
        return NodeIdentity::from_key_file(&String::from_utf8_lossy(&text))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let identity = NodeIdentity::generate(did).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::files::write_private(path, identity.to_key_file().as_bytes(), false)?;
    Ok(identity)
}

/// What the devnet anchors to beyond its own signatures.
enum External {
    /// Nothing: the `local` target.
    None,
    /// A local chain: each node pays from one of its funded accounts.
    Chain(DevChain),
    /// A local TSA, served by this process's runtime: its URL and its root certificate.
    Tsa { url: String, ca: PathBuf, _runtime: tokio::runtime::Runtime },
}

impl External {
    /// Starts what `args.anchor` names.
    fn start(args: &DevnetArgs) -> anyhow::Result<External> {
        match args.anchor {
            crate::cli::DevnetAnchor::Local => Ok(External::None),
            crate::cli::DevnetAnchor::Eip155 => {
                let chain = DevChain::start(&args.dir.join("chain"), args.nodes)?;
                println!(
                    "local chain (anvil) at {} (chain {}), one block a second",
                    chain.url,
                    super::devchain::CHAIN_ID
                );
                Ok(External::Chain(chain))
            }
            crate::cli::DevnetAnchor::Rfc3161 => {
                let dir = args.dir.join("tsa");
                // A new PKI each run: the TSA's key never outlives its devnet.
                let _ = std::fs::remove_dir_all(&dir);
                let tsa = remembrancer_anchor::devtsa::DevTsa::create(&dir, "Devnet TSA", 3)
                    .map_err(|e| anyhow::anyhow!("the local TSA: {e}"))?;
                let ca = std::fs::canonicalize(&tsa.ca)?;
                let runtime =
                    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
                let url = runtime
                    .block_on(std::sync::Arc::new(tsa).serve())
                    .map_err(|e| anyhow::anyhow!("the local TSA: {e}"))?;
                println!(
                    "local time-stamp authority (openssl ts) at {url}, root certificate {}",
                    ca.display()
                );
                Ok(External::Tsa { url, ca, _runtime: runtime })
            }
        }
    }
}

/// Writes keys, the registry and node configs (keys are kept between runs; ports are new).
/// With a chain, each node anchors to it from one of its funded accounts (key file `anchor.key`,
/// mode 0600); with a TSA, each node asks it; with either, the registry's anchor mode is
/// `--anchor-mode`.
fn prepare(args: &DevnetArgs, external: &External) -> anyhow::Result<Vec<DevNode>> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut identities = Vec::new();
    let mut nodes = Vec::new();
    // Joiners get a key and a config like the others but stay out of the registry.
    for i in 1..=args.nodes + args.joiners {
        let dir = args.dir.join(format!("node{i}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        identities.push(load_or_create_key(&dir.join("node.key"), &format!("did:vm:node:dev{i}"))?);
        nodes.push(DevNode { dir, namespace: format!("dev:node{i}"), child: None });
    }
    let quorum = (args.nodes / 2 + 1) as u32;
    let document = RegistryDocument {
        federation: FederationSection {
            name: "devnet".to_string(),
            version: 1,
            quorum,
            peers: identities
                .iter()
                .zip(&nodes)
                .take(args.nodes)
                .map(|(identity, node)| PeerEntry::for_identity(identity, vec![node.namespace.clone()]))
                .collect(),
            anchor_propagation: AnchorPropagation {
                mode: match (matches!(external, External::None), args.anchor_mode.as_str()) {
                    (false, "collaborative") => AnchorMode::Collaborative,
                    (false, "hybrid") => AnchorMode::Hybrid,
                    _ => AnchorMode::Independent,
                },
                ..AnchorPropagation::default()
            },
        },
    };
    let registry = Registry::from_document(&document).map_err(|e| anyhow::anyhow!("devnet registry: {e}"))?;
    let registry_path = args.dir.join("registry.yaml");
    crate::files::write_public(&registry_path, registry.to_yaml().as_bytes())?;
    let ports = free_ports(nodes.len())?;
    let first = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", ports[0], identities[0].peer_id());
    for (i, node) in nodes.iter().enumerate() {
        let config = NodeConfig {
            node: NodeSection {
                data_dir: PathBuf::from("data"),
                key_file: PathBuf::from("node.key"),
                registry: PathBuf::from("../registry.yaml"),
                api: "127.0.0.1:0".to_string(),
                admission: Admission::Open,
                // The devnet's nodes share this machine's cores.
                threads: 1,
                // The registry names each node's namespace.
                namespaces: Vec::new(),
            },
            network: NetworkSection {
                listen: vec![format!("/ip4/127.0.0.1/tcp/{}", ports[i])],
                bootstrap: if i == 0 { Vec::new() } else { vec![first.clone()] },
                mdns: false,
                max_connections: 64,
            },
            engine: EngineSection {
                heartbeat_interval_ms: 1000,
                batch_records: 10_000,
                batch_interval_ms: 20,
                ..EngineSection::default()
            },
            anchor: match external {
                External::None => AnchorSection::default(),
                External::Tsa { url, ca, .. } => AnchorSection {
                    anchor_target: AnchorTargetKind::Rfc3161,
                    tsa_urls: vec![url.clone()],
                    tsa_ca_file: ca.clone(),
                    tsa_policy: remembrancer_anchor::devtsa::POLICY.to_string(),
                    poll_interval_ms: 500,
                    ..AnchorSection::default()
                },
                External::Chain(chain) => {
                    let key = node.dir.join("anchor.key");
                    crate::files::write_private(&key, chain.keys[i].as_bytes(), true)?;
                    AnchorSection {
                        anchor_target: AnchorTargetKind::Eip155,
                        rpc_url: chain.url.clone(),
                        chain_id: super::devchain::CHAIN_ID,
                        // One block a second: final two blocks after inclusion.
                        confirmations: 2,
                        stuck_after_ms: 10_000,
                        poll_interval_ms: 500,
                        anchor_key_file: PathBuf::from("anchor.key"),
                        ..AnchorSection::default()
                    }
                }
            },
            // Every member may notify this node's namespace and query it; only members may
            // append to it.
            messaging: MessagingSection {
                allow: vec![AllowEntry {
                    target: node.namespace.clone(),
                    source: "*".to_string(),
                    operations: ["status.*", "tree.size", "record.get", "record.append"]
                        .map(String::from)
                        .to_vec(),
                }],
                source_quorum: 0,
            },
            explorer: ExplorerSection { public_listen: "127.0.0.1:0".to_string(), private: false },
        };
        crate::files::write_public(&node.dir.join("node.toml"), config.to_toml().as_bytes())?;
        // A stale api.json from an earlier run must not be mistaken for this run's node.
        let _ = std::fs::remove_file(node.data_dir().join("api.json"));
    }
    Ok(nodes)
}

fn stop(nodes: &mut [DevNode]) {
    for node in nodes.iter_mut() {
        if let Some(child) = &node.child {
            // SIGTERM: each node commits what waits, saves and exits.
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in nodes.iter_mut() {
        if let Some(mut child) = node.child.take() {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

/// `devnet`.
pub fn run(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    if !(3..=DEVNET_NODES_MAX).contains(&args.nodes) {
        anyhow::bail!("--nodes must be 3 to {DEVNET_NODES_MAX}");
    }
    if args.joiners > 0 && !args.setup {
        anyhow::bail!("--joiners goes with --setup: start the joiners yourself and run `federation join`");
    }
    if args.joiners > DEVNET_NODES_MAX {
        anyhow::bail!("--joiners must be at most {DEVNET_NODES_MAX}");
    }
    if args.anchor != crate::cli::DevnetAnchor::Local && args.setup {
        anyhow::bail!(
            "--anchor eip155 or rfc3161 starts its own chain or TSA and so runs the devnet; with --setup, set [anchor] in each node.toml by hand"
        );
    }
    let external = External::start(&args)?;
    let mut nodes = prepare(&args, &external)?;
    let exe = std::env::current_exe().context("cannot find the remembrancer binary")?;
    if args.setup {
        println!(
            "{} nodes set up under {} (quorum {}); start each one with:",
            args.nodes,
            args.dir.display(),
            args.nodes / 2 + 1
        );
        for (i, node) in nodes.iter().enumerate() {
            let role = if i < args.nodes { "member" } else { "joiner" };
            println!(
                "  {} node run --config {}   # {role}",
                exe.display(),
                node.dir.join("node.toml").display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "starting {} nodes under {} (quorum {}) ...",
        args.nodes,
        args.dir.display(),
        args.nodes / 2 + 1
    );
    for node in &mut nodes {
        let log = std::fs::File::create(node.dir.join("node.log"))
            .with_context(|| format!("cannot create {}", node.dir.join("node.log").display()))?;
        let mut command = Command::new(&exe);
        // Each node is its config file: a `REMEMBRANCER_<FIELD>` variable of this shell (the
        // data directory the devnet suggests exporting, say) would set it for all of them.
        for (_, variable) in NodeConfig::variables() {
            command.env_remove(variable);
        }
        let child = command
            .args(["node", "run", "--config"])
            .arg(node.dir.join("node.toml"))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start a node process")?;
        node.child = Some(child);
    }
    let result = drive(&args, &mut nodes);
    println!("stopping the nodes ...");
    stop(&mut nodes);
    result
}

fn drive(args: &DevnetArgs, nodes: &mut [DevNode]) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut clients = Vec::new();
    for node in nodes.iter_mut() {
        loop {
            if let Ok(client) = Client::from_data_dir(&node.data_dir()) {
                if client.get("/api/v1/status").is_ok() {
                    clients.push(client);
                    break;
                }
            }
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    anyhow::bail!(
                        "node in {} exited ({status}); its log is {}",
                        node.dir.display(),
                        node.dir.join("node.log").display()
                    );
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!(
                    "node in {} did not start within 60 s; see {}",
                    node.dir.display(),
                    node.dir.join("node.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!(
        "all {} nodes up in {:.1} s. In another terminal:",
        nodes.len(),
        started.elapsed().as_secs_f64()
    );
    println!("  remembrancer federation status --data-dir {}", nodes[0].data_dir().display());
    println!("  remembrancer receipts list --data-dir {}", nodes[1].data_dir().display());
    println!(
        "  export REMEMBRANCER_DATA_DIR={}   # then: remembrancer federation status",
        nodes[0].data_dir().display()
    );
    let mut targets = Vec::new();
    for (node, client) in nodes.iter().zip(&clients) {
        if let Some(address) = client.explorer() {
            println!("  explorer of {}: http://{address}/ (metrics: /metrics)", node.namespace);
            targets.push(address.to_string());
        }
    }
    // Prometheus's file-based discovery (configs/monitoring/prometheus.yml reads it).
    let discovery = serde_json::json!([{ "targets": targets, "labels": { "federation": "devnet" } }]);
    crate::files::write_public(&args.dir.join("prometheus-targets.json"), discovery.to_string().as_bytes())?;
    println!("Ctrl-C stops the devnet.");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    let _ = tokio::signal::ctrl_c().await;
                });
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let mut appended = vec![0u64; nodes.len()];
    let mut watch = super::devwatch::AnchorWatch::default();
    let namespaces: Vec<String> = nodes.iter().map(|n| n.namespace.clone()).collect();
    let mut round = 0u64;
    let mut all_final_rounds = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst)
        && (args.seconds == 0 || started.elapsed() < Duration::from_secs(args.seconds))
    {
        round += 1;
        for (i, (node, client)) in nodes.iter().zip(&clients).enumerate() {
            let records: Vec<String> = (0..args.records)
                .map(|r| BASE64.encode(format!("devnet round {round} node {} record {r}", i + 1)))
                .collect();
            match client.post(
                "/api/v1/records",
                &serde_json::json!({ "namespace": node.namespace, "records": records }),
            ) {
                Ok(answer) => appended[i] = answer["size"].as_u64().unwrap_or(appended[i]),
                Err(error) => println!("  {}: append failed: {error:#}", node.namespace),
            }
        }
        let round_end = Instant::now() + ROUND;
        while Instant::now() < round_end && !stop.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            // Ctrl-C reached the nodes too (one process group): they are stopping, and a round
            // read now would show their answers missing, not their state.
            round -= 1;
            break;
        }
        // Final size of each namespace on every node; `?` where a node did not answer.
        let statuses: Vec<Option<serde_json::Value>> =
            clients.iter().map(|c| c.get("/api/v1/status").ok()).collect();
        if args.anchor != crate::cli::DevnetAnchor::Local {
            watch.poll(&namespaces, &clients, &statuses);
        }
        let mut line = format!("round {round:>3} ({:>4.0} s):", started.elapsed().as_secs_f64());
        let mut everywhere = true;
        for (i, node) in nodes.iter().enumerate() {
            let finals: Option<Vec<u64>> = statuses
                .iter()
                .map(|status| {
                    let list = status.as_ref()?["namespaces"].as_array()?;
                    let entry = list.iter().find(|n| n["namespace"] == node.namespace.as_str());
                    Some(entry.and_then(|n| n["final_size"].as_u64()).unwrap_or(0))
                })
                .collect();
            let lowest = finals.as_ref().and_then(|f| f.iter().copied().min());
            everywhere &= lowest.is_some_and(|size| size > 0);
            let shown = lowest.map_or_else(|| "?".to_string(), |size| size.to_string());
            line.push_str(&format!(" {} {}/{}", node.namespace, shown, appended[i]));
        }
        println!("{line}  (final on every node / appended)");
        if everywhere {
            all_final_rounds += 1;
        }
    }
    if all_final_rounds == 0 {
        println!(
            "no round saw a final receipt on every node: see the node.log files under {}",
            args.dir.display()
        );
        return Ok(ExitCode::from(1));
    }
    println!("{all_final_rounds} of {round} rounds had a final receipt for every namespace on every node");
    if args.anchor != crate::cli::DevnetAnchor::Local {
        // The last anchors, if the nodes still answer (after a Ctrl-C they are stopping).
        let statuses: Vec<Option<serde_json::Value>> =
            clients.iter().map(|c| c.get("/api/v1/status").ok()).collect();
        watch.poll(&namespaces, &clients, &statuses);
        watch.summary(&args.anchor_mode);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_ports_are_distinct_free_and_out_of_the_kernels_reach() {
        let ports = free_ports(DEVNET_NODES_MAX).expect("free ports");
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), DEVNET_NODES_MAX, "{ports:?}");
        // Each is free once the probes are gone.
        for port in &ports {
            drop(std::net::TcpListener::bind(("127.0.0.1", *port)).expect("the chosen port is free"));
        }
        let text = std::fs::read_to_string(EPHEMERAL_RANGE).expect("Linux keeps its ephemeral range here");
        let start: u16 = text.split_whitespace().next().and_then(|p| p.parse().ok()).expect("range start");
        if start > LISTEN_PORT_MIN + 1_000 {
            // Nothing that binds port 0 or dials out can take them before the nodes start.
            assert!(ports.iter().all(|&p| (LISTEN_PORT_MIN..start).contains(&p)), "{ports:?} vs {start}");
        }
    }
}
