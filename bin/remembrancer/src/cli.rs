//! Command-line definitions (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use remembrancer_core::registry::PeerStatus;

/// Remembrancer: a sovereign memory node of an anchor federation.
#[derive(Parser, Debug)]
#[command(name = "remembrancer", version, about, long_about = None)]
pub struct Cli {
    /// Log debug detail to stderr (or set RUST_LOG).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// How log lines look: `text` for people, `json` (one object per line) for log collectors.
    #[arg(long, global = true, value_enum, env = "REMEMBRANCER_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The log format (`--log-format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing's JSON layer).
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate or show node keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify a receipt, a proof bundle or a cosigned checkpoint offline against a registry.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Offline demo: build a tree, sign, countersign with three local keys, verify the receipt.
    Demo(DemoArgs),
    /// Simulate a federation scenario (TOML) deterministically: partitions, delays, crashes,
    /// lying peers; writes a JSON summary, a CSV time series and an SVG chart.
    Sim(SimArgs),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Federation state and actions of a running node.
    #[command(subcommand)]
    Federation(FederationCommand),
    /// Append records to a namespace this node owns.
    #[command(subcommand)]
    Record(RecordCommand),
    /// A proof bundle for one record (verify it offline with `verify proof`).
    Proof(ProofArgs),
    /// Cross-namespace messages: send one from a namespace this node owns, follow it, list a
    /// namespace's outbox.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Final receipts a running node holds.
    #[command(subcommand)]
    Receipts(ReceiptsCommand),
    /// Cosigned checkpoints.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// A local federation of N nodes on 127.0.0.1 with RocksDB under one folder: appends
    /// records, shows receipts becoming final, stops cleanly on Ctrl-C.
    Devnet(DevnetArgs),
    /// Shell completions for bash, zsh, fish, elvish or PowerShell, on standard output
    /// (bash: `remembrancer completions bash > /etc/bash_completion.d/remembrancer`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on standard output (`remembrancer man | man -l -`), or with
    /// `--out DIR` one page per command written there.
    Man {
        /// Write `remembrancer.1` and one page per subcommand into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// How the CLI finds a running node: its data directory holds `api.json` and `api.token`.
#[derive(Args, Debug, Clone)]
pub struct NodeRef {
    /// The node's data directory (its config's `data_dir`). Without it: $REMEMBRANCER_DATA_DIR,
    /// else the default data directory ($XDG_DATA_HOME/remembrancer, or
    /// ~/.local/share/remembrancer).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `node` subcommands.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Start a node (the spec's federation-peer) from a configuration file.
    Run {
        /// The node's TOML configuration (see configs/node.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

/// `federation` subcommands.
#[derive(Subcommand, Debug)]
pub enum FederationCommand {
    /// Peers with status, score and connection; per namespace the latest and final size.
    Status(NodeRef),
    /// Commit and anchor a namespace now.
    PropagateAnchor {
        /// The namespace (`kind:name`; the spec's `namespace:kind:name` form is accepted).
        #[arg(value_parser = parse_namespace)]
        namespace: String,
        /// Start the namespace if this node has none of that name (a new namespace no member
        /// lists); without it a name this node does not own is refused, so a typo starts
        /// nothing.
        #[arg(long)]
        create: bool,
        #[command(flatten)]
        node: NodeRef,
    },
    /// Ask to join a federation: the node (outside the registry, started with the
    /// federation's registry file) proposes its own admission; members sign it by their
    /// admission policy, and the node is a member once a quorum has signed.
    Join {
        /// The federation's name (must match the node's registry).
        #[arg(long)]
        federation: String,
        /// The joining node's DID (must be the node at --data-dir).
        #[arg(long)]
        node: String,
        /// A member's multiaddr to connect through (with /p2p/<PeerId>).
        #[arg(long)]
        bootstrap: Option<String>,
        /// A namespace the node will own (repeat for several).
        #[arg(long = "namespace", value_parser = parse_namespace)]
        namespaces: Vec<String>,
        /// An endpoint hint for the registry (a URI such as https://node6.example:7400).
        #[arg(long)]
        endpoint: Option<String>,
        /// Wait up to this many seconds for the admission to take effect (0: do not wait).
        #[arg(long, default_value_t = 0)]
        wait: u64,
        #[command(flatten)]
        node_ref: NodeRef,
    },
    /// Sign a pending registry proposal (admission policy `manual`): its digest or a prefix
    /// of at least 8 hex digits, as `federation status` lists it.
    Approve {
        /// The proposal.
        proposal: String,
        #[command(flatten)]
        node: NodeRef,
    },
    /// Propose a registry change: a whole `federation.registry.set@1.0.0` document (--file,
    /// checked against proto/'s schema), or the common changes as options (several make one
    /// proposal). This node signs it; it takes effect once a quorum of the current registry's
    /// active members has signed (`federation approve` on the others).
    Propose(ProposeArgs),
    /// Pending registry proposals: what each changes, why, who has signed, how many must.
    Proposals(NodeRef),
    /// External anchors this node made (most recently changed first): the root, what it was
    /// for, its transaction, block and confirmations, reorgs survived, and what it cost.
    Anchors(NodeRef),
    /// The anchoring treasury: the registry's caps, spend per member and per epoch, and what
    /// collaborative mode saved against independent mode over the same epochs.
    Treasury(NodeRef),
    /// Block peers (PeerId or registry DID): their connections close, new ones are refused
    /// (cut off a hostile peer, or build a partition).
    Block {
        /// PeerIds or DIDs.
        #[arg(required = true)]
        peers: Vec<String>,
        #[command(flatten)]
        node: NodeRef,
    },
    /// The registry: the current one as the spec's YAML, or the chain of quorum-signed updates
    /// that `verify --updates` replays.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// The audit trail: every refused message, with the peer, the reason and when.
    Audit {
        /// Only entries at or after this time: ISO 8601 UTC (2026-12-07T15:00:00Z) or Unix
        /// seconds.
        #[arg(long, value_parser = parse_time)]
        since: Option<u64>,
        #[command(flatten)]
        node: NodeRef,
    },
    /// Evidence this node holds: two roots a member signed for one size, or an epoch anchor a
    /// member claimed out of turn.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Lift blocks and look the federation up again.
    Unblock {
        /// PeerIds or DIDs.
        #[arg(required = true)]
        peers: Vec<String>,
        #[command(flatten)]
        node: NodeRef,
    },
}

/// `federation propose` arguments.
#[derive(Args, Debug)]
pub struct ProposeArgs {
    /// A `federation.registry.set@1.0.0` document: the whole registry after the change.
    #[arg(long, conflicts_with_all = ["add_member", "remove_member", "set_status", "quorum", "anchor_strategy", "set_owner", "cap_per_epoch", "cap_per_anchor", "memo"])]
    pub file: Option<PathBuf>,
    /// Add a member by its DID (with --pubkey; --endpoint and --namespace optional).
    #[arg(long, requires = "pubkey", value_name = "DID")]
    pub add_member: Option<String>,
    /// The added member's public key (z6Mk..., from `remembrancer keys show`).
    #[arg(long, requires = "add_member")]
    pub pubkey: Option<String>,
    /// The added member's endpoint hint (a URI).
    #[arg(long, requires = "add_member")]
    pub endpoint: Option<String>,
    /// A namespace the added member owns (repeat for several).
    #[arg(long = "namespace", requires = "add_member", value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// Remove a member (repeat for several).
    #[arg(long, value_name = "DID")]
    pub remove_member: Vec<String>,
    /// Set a member's status: DID=active|probation|suspended (repeat for several).
    #[arg(long, value_name = "DID=STATUS", value_parser = parse_status)]
    pub set_status: Vec<(String, PeerStatus)>,
    /// Set the quorum (more than half of the active members, at most all of them).
    #[arg(long)]
    pub quorum: Option<u32>,
    /// Set the anchor strategy.
    #[arg(long, value_parser = ["independent", "collaborative", "hybrid"])]
    pub anchor_strategy: Option<String>,
    /// Make a member the owner of a namespace: NAMESPACE=DID (repeat for several).
    #[arg(long, value_name = "NAMESPACE=DID", value_parser = parse_owner)]
    pub set_owner: Vec<(String, String)>,
    /// Set the treasury's cap per member and epoch, gwei (`none`: no cap).
    #[arg(long, value_name = "GWEI|none", value_parser = parse_cap)]
    pub cap_per_epoch: Option<Cap>,
    /// Set the treasury's cap per anchor, gwei (`none`: no cap).
    #[arg(long, value_name = "GWEI|none", value_parser = parse_cap)]
    pub cap_per_anchor: Option<Cap>,
    /// Why (kept in the proposal; a --file document carries its own `memo`).
    #[arg(long, default_value = "")]
    pub memo: String,
    #[command(flatten)]
    pub node: NodeRef,
}

fn parse_status(text: &str) -> Result<(String, PeerStatus), String> {
    let (did, status) = text.split_once('=').ok_or("expected DID=STATUS, e.g. did:vm:node:n3=suspended")?;
    let status = match status {
        "active" => PeerStatus::Active,
        "probation" => PeerStatus::Probation,
        "suspended" => PeerStatus::Suspended,
        other => return Err(format!("{other:?} is not a status: active, probation or suspended")),
    };
    Ok((did.to_string(), status))
}

/// A treasury cap as `propose` takes it: gwei, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap(pub Option<u64>);

fn parse_cap(text: &str) -> Result<Cap, String> {
    match text {
        "none" => Ok(Cap(None)),
        gwei => gwei
            .parse()
            .map(|g| Cap(Some(g)))
            .map_err(|_| format!("{gwei:?} is neither a number of gwei nor `none`")),
    }
}

fn parse_owner(text: &str) -> Result<(String, String), String> {
    let (namespace, did) =
        text.split_once('=').ok_or("expected NAMESPACE=DID, e.g. dao:vaultmesh=did:vm:node:n1")?;
    Ok((parse_namespace(namespace)?, did.to_string()))
}

/// `record` subcommands.
#[derive(Subcommand, Debug)]
pub enum RecordCommand {
    /// Append one record (DATA or --file), acknowledged once it is on disk.
    Append {
        /// The namespace (`kind:name`; `namespace:kind:name` is accepted).
        #[arg(long, value_parser = parse_namespace)]
        namespace: String,
        /// Start the namespace if this node has none of that name (see `federation
        /// propagate-anchor --create`).
        #[arg(long)]
        create: bool,
        /// The record, as text.
        data: Option<String>,
        /// Read the record from a file instead.
        #[arg(long, conflicts_with = "data")]
        file: Option<PathBuf>,
        #[command(flatten)]
        node: NodeRef,
    },
}

/// `namespace` subcommands.
#[derive(Subcommand, Debug)]
pub enum NamespaceCommand {
    /// Send a message (`--from --to --action --operation --payload`), or with `status ID`
    /// show what became of one: committed, final, delivered, acked or expired.
    Message(MessageArgs),
    /// The messages a namespace of this node received, and what it answered.
    Inbox {
        /// The receiving namespace.
        #[arg(value_parser = parse_namespace)]
        namespace: String,
        #[command(flatten)]
        node: NodeRef,
    },
    /// The messages a namespace of this node sent, oldest first.
    Outbox {
        /// The sending namespace.
        #[arg(value_parser = parse_namespace)]
        namespace: String,
        #[command(flatten)]
        node: NodeRef,
    },
}

/// `namespace message` arguments.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MessageArgs {
    /// `status ID`.
    #[command(subcommand)]
    pub command: Option<MessageCommand>,
    /// The sending namespace (one this node owns).
    #[arg(long, value_parser = parse_namespace)]
    pub from: Option<String>,
    /// The receiving namespace.
    #[arg(long, value_parser = parse_namespace)]
    pub to: Option<String>,
    /// invoke, query or notify.
    #[arg(long, value_parser = ["invoke", "query", "notify"])]
    pub action: Option<String>,
    /// The operation (`status.update`).
    #[arg(long)]
    pub operation: Option<String>,
    /// Its parameters, a JSON object.
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// Seconds until the deadline (at most 86400); past it the target records a TIMEOUT.
    #[arg(long, default_value_t = 3600)]
    pub deadline: u64,
    /// Where the acknowledgement goes, if not the sending namespace.
    #[arg(long, value_parser = parse_namespace)]
    pub reply_to: Option<String>,
    /// Wait up to this many seconds for the outcome (acked or expired), showing each status.
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    #[command(flatten)]
    pub node: NodeRef,
}

/// `namespace message` subcommands.
#[derive(Subcommand, Debug)]
pub enum MessageCommand {
    /// What became of a message this node sent.
    Status {
        /// Its id (`sha256:…`, or at least 8 of its hex digits).
        id: String,
        #[command(flatten)]
        node: NodeRef,
    },
}

/// `proof` arguments.
#[derive(Args, Debug)]
pub struct ProofArgs {
    /// The namespace.
    #[arg(long, value_parser = parse_namespace)]
    pub namespace: String,
    /// The record's index.
    #[arg(long)]
    pub index: u64,
    /// Write the bundle here instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// An anchor proof (`verify anchor` checks it): the bundle under the checkpoint the first
    /// external epoch anchor covering the record lists, the path to the anchored batch root,
    /// and the block holding the anchor transaction, read from the chain.
    #[arg(long)]
    pub anchor: bool,
    /// With --anchor: the chain's JSON-RPC endpoint to read the block from (default: the
    /// node's own `rpc_url`).
    #[arg(long, requires = "anchor")]
    pub rpc: Option<String>,
    #[command(flatten)]
    pub node: NodeRef,
}

/// `receipts` subcommands.
#[derive(Subcommand, Debug)]
pub enum ReceiptsCommand {
    /// The latest final receipt per namespace, or the latest 10 000 of --namespace.
    List {
        /// Only this namespace: its latest 10 000 final receipts, oldest first.
        #[arg(long, value_parser = parse_namespace)]
        namespace: Option<String>,
        #[command(flatten)]
        node: NodeRef,
    },
    /// One final receipt as JSON (the latest unless --size).
    Show {
        /// The namespace.
        #[arg(long, value_parser = parse_namespace)]
        namespace: String,
        /// The tree size of the receipt.
        #[arg(long)]
        size: Option<u64>,
        #[command(flatten)]
        node: NodeRef,
    },
}

/// `checkpoint` subcommands.
#[derive(Subcommand, Debug)]
pub enum CheckpointCommand {
    /// The latest final checkpoint of a namespace as a cosigned C2SP signed note.
    Export {
        /// The namespace.
        #[arg(long, value_parser = parse_namespace)]
        namespace: String,
        #[command(flatten)]
        node: NodeRef,
    },
}

/// `devnet` arguments.
#[derive(Args, Debug)]
pub struct DevnetArgs {
    /// Nodes to start (3 to 20).
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Folder for the nodes' keys, configs and RocksDB data (kept between runs).
    #[arg(long, default_value = "devnet")]
    pub dir: PathBuf,
    /// Stop by itself after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
    /// Records appended per round to each owner's namespace.
    #[arg(long, default_value_t = 100)]
    pub records: usize,
    /// Only write the keys, the registry and one config per node, print how to start each
    /// node, and exit (to run the nodes by hand or from a test harness).
    #[arg(long)]
    pub setup: bool,
    /// With --setup: this many more nodes with keys and configs but outside the registry,
    /// to try `federation join`.
    #[arg(long, default_value_t = 0)]
    pub joiners: usize,
    /// Where the nodes anchor: `local` (the federation's signatures are the anchor);
    /// `eip155`: a local chain (anvil, installed by scripts/setup) is started, each node pays
    /// from one of its funded accounts; `rfc3161`: a local time-stamp authority (`openssl ts
    /// -reply` behind HTTP on 127.0.0.1) is started and each node asks it for tokens. With
    /// either, the registry's anchor mode is collaborative by default (one anchor per epoch
    /// for all namespaces).
    #[arg(long, value_enum, default_value = "local")]
    pub anchor: DevnetAnchor,
    /// With --anchor eip155 or rfc3161: the registry's anchor mode (collaborative: one anchor per epoch
    /// for every namespace; independent: every owner anchors each of its final receipts;
    /// hybrid: the elected primary, and the next after its deadline).
    #[arg(long, value_parser = ["collaborative", "independent", "hybrid"], default_value = "collaborative")]
    pub anchor_mode: String,
}

/// `devnet --anchor`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevnetAnchor {
    /// No chain: the federation's own signatures.
    Local,
    /// A local Ethereum chain (anvil).
    Eip155,
    /// A local RFC 3161 time-stamp authority (openssl).
    Rfc3161,
}

/// `sim` arguments.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// The scenario file (see configs/scenarios/).
    pub scenario: PathBuf,
    /// Folder for summary.json, series.csv and finality.svg (one set per seed).
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Run this seed instead of the scenario's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the summaries as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate a node key (written with mode 0600) for an alias DID.
    Generate {
        /// The alias DID the registry will list, e.g. did:vm:node:east1.
        #[arg(long)]
        did: String,
        /// Where to write the key file.
        #[arg(long, default_value = "node.key")]
        out: PathBuf,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the public identity of a key file (never the secret).
    Show {
        /// The key file.
        #[arg(long, default_value = "node.key")]
        key: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments every `verify` subcommand takes.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The file to verify.
    pub file: PathBuf,
    /// The federation registry: YAML (`federation:`) or a registry update JSON.
    #[arg(long)]
    pub registry: PathBuf,
    /// The chain of applied registry updates after that registry (JSON list, as nodes keep
    /// it): verifies statements counted under a later registry version.
    #[arg(long)]
    pub updates: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `federation registry` subcommands.
#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// The current registry as the spec's YAML (`--json`: its version and the YAML).
    Export(NodeRef),
    /// The quorum-signed registry updates applied since the founding registry, as the JSON
    /// list `verify ... --updates FILE` replays.
    Chain(NodeRef),
}

/// `federation evidence` subcommands.
#[derive(Subcommand, Debug)]
pub enum EvidenceCommand {
    /// Every evidence record: its id, the member, and the namespace and size (equivocation) or
    /// the epoch (a claim out of turn).
    List(NodeRef),
    /// One evidence record with its signed statements.
    Show {
        /// Its id (or a prefix of at least 4 hex digits), as `evidence list` prints it.
        id: String,
        #[command(flatten)]
        node: NodeRef,
    },
    /// One evidence record as a file `verify evidence` checks offline.
    Export {
        /// Its id (or a prefix of at least 4 hex digits).
        id: String,
        /// Write it here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        node: NodeRef,
    },
}

/// A time as the CLI takes it: ISO 8601 UTC (`2026-12-07T15:00:00Z`, or a date alone) or Unix
/// seconds; in Unix seconds.
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    crate::times::parse_iso8601(text).ok_or_else(|| {
        format!("{text:?} is not a time: give ISO 8601 UTC (2026-12-07T15:00:00Z) or Unix seconds")
    })
}

/// `verify` subcommands.
#[derive(Subcommand, Debug)]
pub enum VerifyCommand {
    /// A federation receipt (JSON).
    Receipt(VerifyArgs),
    /// A proof bundle: record, inclusion proof and cosigned checkpoint (JSON).
    Proof(VerifyArgs),
    /// A cosigned checkpoint as a C2SP signed note.
    Checkpoint(VerifyArgs),
    /// Evidence (`federation evidence export`): two notes of one namespace and size with
    /// different roots, both validly signed by the same member; or an epoch anchor claim a
    /// member signed out of turn (give the registry version the claim names).
    Evidence(VerifyArgs),
    /// A cross-namespace message, or its target's RECEIPT, ACK or TIMEOUT record, in a proof
    /// bundle (`proof --namespace NS --index I` of its record): the bundle and the record.
    Message(VerifyArgs),
    /// An anchor proof (`proof --anchor`): the record up to its anchor, checked against one
    /// block hash you trust (eip155) or the root certificate of the TSA (rfc3161).
    Anchor(VerifyAnchorArgs),
}

/// `verify anchor` arguments.
#[derive(Args, Debug)]
pub struct VerifyAnchorArgs {
    #[command(flatten)]
    pub args: VerifyArgs,
    /// eip155: the hash of the anchor's block as your own node or a block explorer shows it.
    #[arg(long)]
    pub block_hash: Option<String>,
    /// rfc3161: the root certificate(s) (PEM) of the TSA you trust.
    #[arg(long, value_name = "CERT")]
    pub tsa_cert: Option<std::path::PathBuf>,
}

/// `demo` arguments.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's keys, registry, receipt, checkpoint and bundle (replaced).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Records to append.
    #[arg(long, default_value_t = 1000)]
    pub records: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A namespace as the CLI takes it: `kind:name`, or the spec's `namespace:kind:name` (the
/// `namespace:` prefix dropped when what follows is a namespace name itself).
pub fn parse_namespace(text: &str) -> Result<String, String> {
    use remembrancer_core::checkpoint::validate_namespace;
    let name = match text.strip_prefix("namespace:") {
        Some(rest) if validate_namespace(rest).is_ok() => rest,
        _ => text,
    };
    validate_namespace(name)
        .map_err(|error| format!("{error} (a namespace is `kind:name`, e.g. dao:vaultmesh)"))?;
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn the_command_line_is_consistent_and_the_propose_options_parse() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "remembrancer",
            "federation",
            "propose",
            "--cap-per-epoch",
            "none",
            "--cap-per-anchor",
            "5000",
            "--set-status",
            "did:vm:node:a=suspended",
            "--set-owner",
            "namespace:dao:x=did:vm:node:a",
        ])
        .expect("parses");
        let Command::Federation(FederationCommand::Propose(args)) = cli.command else { panic!("propose") };
        assert_eq!((args.cap_per_epoch, args.cap_per_anchor), (Some(Cap(None)), Some(Cap(Some(5000)))));
        assert_eq!(args.set_status, vec![("did:vm:node:a".to_string(), PeerStatus::Suspended)]);
        assert_eq!(args.set_owner, vec![("dao:x".to_string(), "did:vm:node:a".to_string())]);
        assert!(Cli::try_parse_from([
            "remembrancer",
            "federation",
            "propose",
            "--file",
            "u.json",
            "--quorum",
            "2"
        ])
        .is_err());
    }
}
