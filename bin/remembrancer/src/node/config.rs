//! The node's TOML configuration. Every error names the file, the field and what is expected.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Largest configuration file read.
pub const CONFIG_BYTES_MAX: usize = 1 << 20;

/// Every field `f` of every section can be set by the variable `REMEMBRANCER_<F>` (the
/// field's name in capitals: `REMEMBRANCER_DATA_DIR`, `REMEMBRANCER_BOOTSTRAP`, ...). Lists
/// are comma-separated. Field names are unique across sections, so the section is not named.
pub const ENV_PREFIX: &str = "REMEMBRANCER_";

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
    /// Namespaces this node owns when the registry lists none for it (where the registry lists
    /// some, those are the node's and this list is not used). A namespace in neither is
    /// started only on purpose (`--create`).
    #[serde(default)]
    pub namespaces: Vec<String>,
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
    /// Length of an anchoring epoch, milliseconds: collaborative and hybrid modes anchor the
    /// receipts final in one epoch together, once.
    #[serde(default = "default_epoch_ms")]
    pub epoch_ms: u64,
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
fn default_epoch_ms() -> u64 {
    10_000
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            heartbeat_interval_ms: default_heartbeat(),
            batch_records: default_batch_records(),
            batch_interval_ms: default_batch_ms(),
            anchors_in_flight: default_anchors_in_flight(),
            epoch_ms: default_epoch_ms(),
        }
    }
}

/// `[messaging]`: which sources may run which operations on the namespaces this node owns
/// (each namespace's own policy), and the cosigners a source checkpoint must carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingSection {
    /// `[[messaging.allow]]` entries: `target` (an owned namespace), `source` (a namespace or
    /// `*`), `operations` (names, `prefix.*` or `*`). Nothing is allowed that no entry allows;
    /// `sys.*`, `federation.*` and `policy.*` never.
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    /// Distinct active signers a source checkpoint must carry (0: the registry's quorum).
    #[serde(default)]
    pub source_quorum: u32,
}

/// `[explorer]`: the public, read-only explorer and `/metrics`, on a listener of its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplorerSection {
    /// Address the explorer listens on (`0.0.0.0:8080` to face the internet); empty: no
    /// explorer.
    #[serde(default)]
    pub public_listen: String,
    /// A private federation: `/metrics` and member detail are not served.
    #[serde(default)]
    pub private: bool,
}

/// One `[[messaging.allow]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    /// The namespace of this node it is for.
    pub target: String,
    /// The sending namespace, or `*`.
    pub source: String,
    /// The operations.
    pub operations: Vec<String>,
}

impl MessagingSection {
    /// The policy of `target`.
    pub fn policy(&self, target: &str) -> remembrancer_core::xmsg::TargetPolicy {
        remembrancer_core::xmsg::TargetPolicy {
            namespace: target.to_string(),
            allow: self
                .allow
                .iter()
                .filter(|entry| entry.target == target)
                .map(|entry| remembrancer_core::xmsg::Allow {
                    source: entry.source.clone(),
                    operations: entry.operations.clone(),
                })
                .collect(),
            quorum: self.source_quorum,
        }
    }
}

/// Where a node anchors the roots it is asked to (`[anchor]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorTargetKind {
    /// The federation's own signatures are the anchor: nothing is sent anywhere.
    #[default]
    Local,
    /// An EIP-1559 transaction on an Ethereum chain (`rpc_url`, `chain_id`).
    Eip155,
    /// An RFC 3161 time-stamp token from one of several TSAs (`tsa_urls`, `tsa_ca_file`).
    Rfc3161,
}

/// `[anchor]`: where this node anchors what the engine asks it to (independent mode: its own
/// final receipts; collaborative and hybrid: the epochs it is elected for). The anchoring
/// account's key is never in this file: `anchor_key_file` (mode 0600, the secret as hex) or
/// the variable `REMEMBRANCER_ANCHOR_KEY`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorSection {
    /// `local`, `eip155` or `rfc3161`.
    #[serde(default)]
    pub anchor_target: AnchorTargetKind,
    /// eip155: the chain's JSON-RPC endpoint, or several separated by commas (the next is
    /// used when one does not answer).
    #[serde(default)]
    pub rpc_url: String,
    /// eip155: the chain the endpoint must be on.
    #[serde(default = "default_chain_id")]
    pub chain_id: u64,
    /// eip155: blocks (the anchor's included) before an anchor is final.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// eip155: a transaction not in a block after this long is replaced with fees raised by
    /// at least 12.5 %.
    #[serde(default = "default_stuck_after_ms")]
    pub stuck_after_ms: u64,
    /// eip155: the most this node pays per gas (`maxFeePerGas`), wei.
    #[serde(default = "default_max_fee_per_gas")]
    pub max_fee_per_gas: u64,
    /// How often open anchors are looked at, milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// eip155: the anchoring account's key file (a secp256k1 secret as hex, mode 0600).
    #[serde(default)]
    pub anchor_key_file: PathBuf,
    /// rfc3161: the TSAs' URLs, tried in order (the next when one does not answer).
    #[serde(default)]
    pub tsa_urls: Vec<String>,
    /// rfc3161: the root certificates (PEM) the TSAs' tokens must chain to.
    #[serde(default)]
    pub tsa_ca_file: PathBuf,
    /// rfc3161: the policy (dotted) tokens must carry; empty: any.
    #[serde(default)]
    pub tsa_policy: String,
}

fn default_chain_id() -> u64 {
    31337
}
fn default_confirmations() -> u64 {
    3
}
fn default_stuck_after_ms() -> u64 {
    30_000
}
fn default_max_fee_per_gas() -> u64 {
    200_000_000_000
}
fn default_poll_interval_ms() -> u64 {
    1000
}

impl Default for AnchorSection {
    fn default() -> Self {
        AnchorSection {
            anchor_target: AnchorTargetKind::Local,
            rpc_url: String::new(),
            chain_id: default_chain_id(),
            confirmations: default_confirmations(),
            stuck_after_ms: default_stuck_after_ms(),
            max_fee_per_gas: default_max_fee_per_gas(),
            poll_interval_ms: default_poll_interval_ms(),
            anchor_key_file: PathBuf::new(),
            tsa_urls: Vec::new(),
            tsa_ca_file: PathBuf::new(),
            tsa_policy: String::new(),
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
    /// `[anchor]`.
    #[serde(default)]
    pub anchor: AnchorSection,
    /// `[messaging]`.
    #[serde(default)]
    pub messaging: MessagingSection,
    /// `[explorer]`.
    #[serde(default)]
    pub explorer: ExplorerSection,
}

impl NodeConfig {
    /// Reads and checks a configuration file; relative paths are relative to the file; then
    /// the `REMEMBRANCER_<FIELD>` variables of the environment override fields (see
    /// [`ENV_PREFIX`]; relative paths in them are relative to the working directory).
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        NodeConfig::load_with(path, |name| std::env::var(name).ok())
    }

    /// [`NodeConfig::load`] with the environment given as a lookup.
    pub fn load_with(
        path: &Path,
        environment: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<NodeConfig> {
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
        for file in [&mut config.anchor.anchor_key_file, &mut config.anchor.tsa_ca_file] {
            if !file.as_os_str().is_empty() && file.is_relative() {
                *file = base.join(&*file);
            }
        }
        let (mut config, overridden) =
            override_from(config, &environment).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        if !overridden.is_empty() {
            tracing::info!(variables = %overridden.join(", "), "configuration fields set from the environment");
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
        for (i, namespace) in config.node.namespaces.iter_mut().enumerate() {
            *namespace = crate::cli::parse_namespace(namespace)
                .map_err(|e| anyhow::anyhow!("{}: field `node.namespaces[{i}]`: {e}", path.display()))?;
        }
        if config.anchor.anchor_target == AnchorTargetKind::Eip155 {
            if config.anchor.rpc_url.is_empty() {
                anyhow::bail!(
                    "{}: field `anchor.rpc_url`: anchor_target \"eip155\" needs the chain's JSON-RPC endpoint, like http://127.0.0.1:8545",
                    path.display()
                );
            }
            if config.anchor.confirmations == 0 {
                anyhow::bail!("{}: field `anchor.confirmations`: expected 1 or more", path.display());
            }
        }
        if config.anchor.anchor_target == AnchorTargetKind::Rfc3161 {
            if config.anchor.tsa_urls.is_empty() {
                anyhow::bail!(
                    "{}: field `anchor.tsa_urls`: anchor_target \"rfc3161\" needs at least one TSA, like [\"http://timestamp.example/\"]",
                    path.display()
                );
            }
            if config.anchor.tsa_ca_file.as_os_str().is_empty() {
                anyhow::bail!(
                    "{}: field `anchor.tsa_ca_file`: anchor_target \"rfc3161\" needs the TSAs' root certificates (PEM) its tokens must chain to",
                    path.display()
                );
            }
        }
        if config.engine.epoch_ms < 1000 {
            anyhow::bail!("{}: field `engine.epoch_ms`: expected 1000 or more", path.display());
        }
        let window = remembrancer_core::engine::PENDING_ANCHORS_MAX;
        if config.engine.anchors_in_flight == 0 || config.engine.anchors_in_flight > window {
            anyhow::bail!("{}: field `engine.anchors_in_flight`: expected 1 to {window}", path.display());
        }
        Ok(config)
    }

    /// The variable that overrides each field: (`section.field`, `REMEMBRANCER_FIELD`).
    pub fn variables() -> Vec<(String, String)> {
        let example = NodeConfig {
            node: NodeSection {
                data_dir: PathBuf::new(),
                key_file: PathBuf::new(),
                registry: PathBuf::new(),
                api: default_api(),
                admission: Admission::default(),
                threads: default_threads(),
                namespaces: Vec::new(),
            },
            network: NetworkSection::default(),
            engine: EngineSection::default(),
            anchor: AnchorSection::default(),
            messaging: MessagingSection::default(),
            explorer: ExplorerSection::default(),
        };
        let value =
            toml::Value::try_from(&example).unwrap_or_else(|_| toml::Value::Table(Default::default()));
        let mut variables = Vec::new();
        for (section, fields) in value.as_table().into_iter().flatten() {
            for field in fields.as_table().into_iter().flatten().map(|(field, _)| field) {
                variables.push((
                    format!("{section}.{field}"),
                    format!("{ENV_PREFIX}{}", field.to_ascii_uppercase()),
                ));
            }
        }
        variables
    }

    /// The TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// `config` with every field whose `REMEMBRANCER_<FIELD>` variable `environment` holds set
/// from it, parsed as the field's type; and the variables used. An unparsable value is an
/// error naming the variable and the field.
fn override_from(
    config: NodeConfig,
    environment: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(NodeConfig, Vec<String>)> {
    use toml::Value;
    let mut value = Value::try_from(&config)?;
    let mut used = Vec::new();
    for (section, fields) in value.as_table_mut().into_iter().flatten() {
        for (field, current) in fields.as_table_mut().into_iter().flatten() {
            let variable = format!("{ENV_PREFIX}{}", field.to_ascii_uppercase());
            let Some(text) = environment(&variable).filter(|text| !text.is_empty()) else { continue };
            let wrong = |expected: &str| {
                anyhow::anyhow!(
                    "${variable} (field `{section}.{field}`): expected {expected}, found {text:?}"
                )
            };
            *current = match current {
                Value::String(_) => Value::String(text.clone()),
                Value::Integer(_) => {
                    Value::Integer(text.trim().parse().map_err(|_| wrong("a whole number"))?)
                }
                Value::Boolean(_) => Value::Boolean(match text.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(wrong("true or false")),
                }),
                Value::Array(_) => Value::Array(
                    text.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(|item| Value::String(item.to_string()))
                        .collect(),
                ),
                _ => return Err(wrong("a value this field cannot take from the environment")),
            };
            used.push(variable);
        }
    }
    let config = value.try_into().map_err(|e: toml::de::Error| {
        anyhow::anyhow!("{} (set by {})", e.to_string().trim(), used.join(", "))
    })?;
    Ok((config, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_a_variable_of_its_own_and_the_environment_overrides_the_file() {
        let variables = NodeConfig::variables();
        let mut names: Vec<&String> = variables.iter().map(|(_, name)| name).collect();
        assert!(variables
            .iter()
            .any(|(field, name)| field == "node.data_dir" && name == "REMEMBRANCER_DATA_DIR"));
        assert!(variables.iter().any(|(field, _)| field == "engine.anchors_in_flight"));
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "two fields would share one variable: {variables:?}");
        assert!(count >= 15, "{variables:?}");

        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "[node]\ndata_dir = \"data\"\nkey_file = \"node.key\"\nregistry = \"registry.yaml\"\n[network]\nmdns = false\n",
        )
        .expect("write");
        let environment = |name: &str| {
            match name {
                "REMEMBRANCER_DATA_DIR" => Some("/srv/remembrancer"),
                "REMEMBRANCER_API" => Some("127.0.0.1:7409"),
                "REMEMBRANCER_ADMISSION" => Some("open"),
                "REMEMBRANCER_THREADS" => Some("1"),
                "REMEMBRANCER_BOOTSTRAP" => Some("/ip4/10.0.0.1/tcp/7400, /ip4/10.0.0.2/tcp/7400"),
                "REMEMBRANCER_MDNS" => Some("true"),
                "REMEMBRANCER_NAMESPACES" => Some("namespace:dao:vaultmesh,fin:ledger"),
                "REMEMBRANCER_BATCH_INTERVAL_MS" => Some("20"),
                _ => None,
            }
            .map(str::to_string)
        };
        let config = NodeConfig::load_with(&file, environment).expect("loads");
        assert_eq!(config.node.data_dir, PathBuf::from("/srv/remembrancer"));
        assert_eq!(
            config.node.key_file,
            dir.path().join("node.key"),
            "the file's relative path, from the file"
        );
        assert_eq!(config.node.api, "127.0.0.1:7409");
        assert_eq!(config.node.admission, Admission::Open);
        assert_eq!(config.node.threads, 1);
        assert_eq!(config.network.bootstrap.len(), 2);
        assert!(config.network.mdns);
        assert_eq!(config.node.namespaces, vec!["dao:vaultmesh".to_string(), "fin:ledger".to_string()]);
        assert_eq!(config.engine.batch_interval_ms, 20);
        assert_eq!(
            config.engine.batch_records, 10_000,
            "fields without a variable keep the file's or the default"
        );

        let example = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/node.example.toml"));
        let example = NodeConfig::load_with(example, |_| None).expect("configs/node.example.toml loads");
        assert_eq!(example.node.namespaces, vec!["dao:vaultmesh".to_string()]);

        for (name, value, says) in [
            (
                "REMEMBRANCER_THREADS",
                "two",
                "$REMEMBRANCER_THREADS (field `node.threads`): expected a whole number",
            ),
            (
                "REMEMBRANCER_MDNS",
                "maybe",
                "$REMEMBRANCER_MDNS (field `network.mdns`): expected true or false",
            ),
            ("REMEMBRANCER_ADMISSION", "sometimes", "REMEMBRANCER_ADMISSION"),
            ("REMEMBRANCER_API", "0.0.0.0:7401", "field `node.api`: the API listens on loopback only"),
            ("REMEMBRANCER_THREADS", "0", "field `node.threads`"),
        ] {
            let error =
                NodeConfig::load_with(&file, |n| (n == name).then(|| value.to_string())).expect_err(name);
            assert!(format!("{error:#}").contains(says), "{name}={value}: {error:#}");
        }
    }
}
