//! The node's TOML configuration. Every error names the file, the field and what is expected.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Largest configuration file read.
pub const CONFIG_BYTES_MAX: usize = 1 << 20;

/// Who may join (what this node signs when a join proposal arrives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    /// Sign any well-formed join.
    Open,
    /// Sign only after `remembrancer federation approve`.
    #[default]
    Manual,
}

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// RocksDB data directory (also holds `api.json` and `api.token`).
    pub data_dir: PathBuf,
    /// The node's key file (`remembrancer keys generate`).
    pub key_file: PathBuf,
    /// The federation registry (YAML as the spec writes it).
    pub registry: PathBuf,
    /// Loopback address of the HTTP JSON API.
    #[serde(default = "default_api")]
    pub api: String,
    /// Admission policy for join proposals.
    #[serde(default)]
    pub admission: Admission,
    /// Threads the node runs on. With 1, everything (network, engine, storage) shares one
    /// thread: for several nodes on one machine (a devnet), where fewer threads to wake
    /// means receipts are final sooner. With more, the network's work spreads over them.
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_api() -> String {
    "127.0.0.1:0".to_string()
}

fn default_threads() -> usize {
    2
}

/// Most threads a node runs on.
pub const THREADS_MAX: usize = 64;

/// `[network]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Listen multiaddrs (TCP and/or QUIC).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Multiaddrs of any members to start from.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// LAN discovery.
    #[serde(default)]
    pub mdns: bool,
    /// Most connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    256
}

/// `[engine]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Heartbeat interval, milliseconds.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_ms: u64,
    /// Records per automatic commit: appends are committed together once this many wait.
    #[serde(default = "default_batch_records")]
    pub batch_records: usize,
    /// Longest wait before waiting appends are committed, milliseconds.
    #[serde(default = "default_batch_ms")]
    pub batch_interval_ms: u64,
    /// Own anchors awaiting their quorum per namespace, at most; commits beyond wait for the
    /// next anchor (flow control).
    #[serde(default = "default_anchors_in_flight")]
    pub anchors_in_flight: usize,
}

fn default_heartbeat() -> u64 {
    1000
}
fn default_batch_records() -> usize {
    10_000
}
fn default_batch_ms() -> u64 {
    50
}
fn default_anchors_in_flight() -> usize {
    4
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            heartbeat_interval_ms: default_heartbeat(),
            batch_records: default_batch_records(),
            batch_interval_ms: default_batch_ms(),
            anchors_in_flight: default_anchors_in_flight(),
        }
    }
}

/// A node configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `[node]`.
    pub node: NodeSection,
    /// `[network]`.
    #[serde(default)]
    pub network: NetworkSection,
    /// `[engine]`.
    #[serde(default)]
    pub engine: EngineSection,
}

impl NodeConfig {
    /// Reads and checks a configuration file; relative paths are relative to the file.
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let bytes = crate::files::read_bounded(path, CONFIG_BYTES_MAX)?;
        let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        // toml's errors name the line, the field and what was expected.
        let mut config: NodeConfig = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [&mut config.node.data_dir, &mut config.node.key_file, &mut config.node.registry] {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        let api: std::net::SocketAddr = config.node.api.parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: field `node.api`: expected a loopback address like 127.0.0.1:7401, found {:?}",
                path.display(),
                config.node.api
            )
        })?;
        if !api.ip().is_loopback() {
            anyhow::bail!(
                "{}: field `node.api`: the API listens on loopback only (127.0.0.1 or ::1), found {}",
                path.display(),
                api.ip()
            );
        }
        for (field, list) in
            [("network.listen", &config.network.listen), ("network.bootstrap", &config.network.bootstrap)]
        {
            for (i, address) in list.iter().enumerate() {
                address.parse::<remembrancer_net::libp2p::Multiaddr>().map_err(|e| {
                    anyhow::anyhow!(
                        "{}: field `{field}[{i}]`: expected a multiaddr like /ip4/127.0.0.1/tcp/7400, found {address:?} ({e})",
                        path.display()
                    )
                })?;
            }
        }
        if config.node.threads == 0 || config.node.threads > THREADS_MAX {
            anyhow::bail!(
                "{}: field `node.threads`: expected 1 to {THREADS_MAX} (1 for a node sharing its machine with others, 2 or more for a node of its own)",
                path.display()
            );
        }
        if config.engine.batch_records == 0 || config.engine.batch_records > 100_000 {
            anyhow::bail!("{}: field `engine.batch_records`: expected 1 to 100000", path.display());
        }
        let window = remembrancer_core::engine::PENDING_ANCHORS_MAX;
        if config.engine.anchors_in_flight == 0 || config.engine.anchors_in_flight > window {
            anyhow::bail!("{}: field `engine.anchors_in_flight`: expected 1 to {window}", path.display());
        }
        Ok(config)
    }

    /// The TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}
