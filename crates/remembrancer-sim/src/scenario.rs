//! Scenario files (TOML): nodes and quorum, load, link latency and loss, partitions, crashes,
//! byzantine nodes, duration and seeds. Every error names the field and what is expected.

use serde::{Deserialize, Serialize};

/// Largest scenario file, in bytes.
pub const SCENARIO_BYTES_MAX: usize = 256 * 1024;
/// Most nodes one scenario may simulate.
pub const NODES_MAX: usize = 5000;
/// Longest virtual duration, in milliseconds (one day).
pub const DURATION_MS_MAX: u64 = 86_400_000;

/// Why a scenario is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The file does not parse.
    #[error("scenario does not parse: {0}")]
    Syntax(String),
    /// A field has a value that cannot be simulated.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is expected.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid { field: field.into(), message: message.into() }
}

/// Link latency distribution, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase", deny_unknown_fields)]
pub enum Latency {
    /// Always `ms`.
    Fixed {
        /// Delay.
        ms: u64,
    },
    /// Uniform in [min, max].
    Uniform {
        /// Lowest delay.
        min: u64,
        /// Highest delay.
        max: u64,
    },
    /// `min` plus an exponential tail of mean `mean_extra`.
    Exponential {
        /// Lowest delay.
        min: u64,
        /// Mean of the tail.
        mean_extra: u64,
    },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Uniform { min: 5, max: 30 }
    }
}

/// The simulated network.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Delay of each delivery.
    #[serde(default)]
    pub latency: Latency,
    /// Probability that a delivery is lost.
    #[serde(default)]
    pub loss: f64,
}

/// Record load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Nodes that own a namespace (`ns:n<i>`) and commit batches to it. Default: node 0.
    #[serde(default = "default_owners")]
    pub owners: Vec<usize>,
    /// Virtual time between one owner's batches, in milliseconds.
    pub batch_interval_ms: u64,
    /// Records per batch.
    #[serde(default = "default_records")]
    pub records_per_batch: usize,
    /// Batches per owner; absent means until the end of the run.
    #[serde(default)]
    pub batches: Option<u64>,
}

fn default_owners() -> Vec<usize> {
    vec![0]
}

fn default_records() -> usize {
    10
}

/// Cross-namespace message load: each owner sends a message to another owner (chosen at
/// random) every `interval_ms`, with a deadline `deadline_ms` after it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Messages {
    /// Virtual time between one owner's messages, in milliseconds.
    pub interval_ms: u64,
    /// How long after it is sent a message's deadline is, in milliseconds (at most a day).
    pub deadline_ms: u64,
    /// Stop sending this long before the end, in milliseconds, so that what was sent settles
    /// (its answer or its TIMEOUT) within the run. Default: the deadline plus 15 s.
    #[serde(default)]
    pub quiet_ms: Option<u64>,
}

impl Messages {
    /// The quiet time before the end.
    pub fn quiet(&self) -> u64 {
        self.quiet_ms.unwrap_or(self.deadline_ms + 15_000)
    }
}

/// A partition: nodes in different groups cannot reach each other from `from_ms` to
/// `until_ms`. Nodes in no group stay connected to everyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// The groups.
    pub groups: Vec<Vec<usize>>,
    /// Start.
    pub from_ms: u64,
    /// End (heal).
    pub until_ms: u64,
}

/// A crash, and optionally a restart with the node's persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// The node.
    pub node: usize,
    /// When it stops.
    pub at_ms: u64,
    /// When it comes back, if it does.
    #[serde(default)]
    pub restart_ms: Option<u64>,
}

/// What a byzantine node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// As owner, signs a second root for each checkpoint and shows it to half of the nodes,
    /// collecting cosignatures for both and broadcasting any receipt it can assemble.
    Equivocate,
    /// Sends anchors for a namespace it does not own, and messages under others' names.
    Forge,
    /// Re-sends messages it received earlier.
    Replay,
    /// Sends nothing.
    Silent,
}

/// A byzantine node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Byzantine {
    /// The node.
    pub node: usize,
    /// Its behavior.
    pub behavior: Behavior,
    /// From when (default: the start).
    #[serde(default)]
    pub from_ms: u64,
}

/// A scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports.
    pub name: String,
    /// Number of nodes.
    pub nodes: usize,
    /// Registry quorum.
    pub quorum: u32,
    /// Virtual duration, in milliseconds.
    pub duration_ms: u64,
    /// Random seed; `seeds` runs a sweep instead.
    #[serde(default)]
    pub seed: u64,
    /// Seeds of a sweep (mean/min/max are reported).
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// Anchor propagation mode (the registry's `anchor_propagation.mode`).
    #[serde(default = "default_mode")]
    pub anchor_mode: String,
    /// Interval between heartbeats, in milliseconds.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_ms: u64,
    /// Anchoring epoch (collaborative and hybrid modes), in milliseconds.
    #[serde(default = "default_epoch")]
    pub epoch_ms: u64,
    /// Hybrid mode: deadline per secondary rank after an epoch's end, in milliseconds.
    #[serde(default = "default_deadline")]
    pub anchor_deadline_ms: u64,
    /// Whom countersignatures and heartbeats go to: "all" (broadcast, N^2 per checkpoint),
    /// "log" (the owner plus floor(log2 N) + 2 hashed peers), or a number of peers.
    #[serde(default = "default_fanout")]
    pub fanout: String,
    /// Record load.
    pub load: Load,
    /// Cross-namespace message load between the owners (none when absent).
    #[serde(default)]
    pub messages: Option<Messages>,
    /// Network.
    #[serde(default)]
    pub network: Network,
    /// Partitions.
    #[serde(default, rename = "partition")]
    pub partitions: Vec<Partition>,
    /// Crashes.
    #[serde(default, rename = "crash")]
    pub crashes: Vec<Crash>,
    /// Byzantine nodes.
    #[serde(default, rename = "byzantine")]
    pub byzantine: Vec<Byzantine>,
}

fn default_mode() -> String {
    "independent".to_string()
}

fn default_heartbeat() -> u64 {
    1000
}

fn default_fanout() -> String {
    "log".to_string()
}

fn default_epoch() -> u64 {
    5000
}

fn default_deadline() -> u64 {
    2000
}

impl Scenario {
    /// Parses and validates a scenario.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        if text.len() > SCENARIO_BYTES_MAX {
            return Err(ScenarioError::Syntax(format!("{} bytes, more than the 262144 allowed", text.len())));
        }
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.nodes < 1 || self.nodes > NODES_MAX {
            return Err(invalid("nodes", format!("must be 1 to {NODES_MAX}")));
        }
        let quorum = self.quorum as usize;
        if quorum == 0 || quorum > self.nodes || 2 * quorum <= self.nodes {
            return Err(invalid(
                "quorum",
                format!("must be more than half of the {} nodes and at most all of them", self.nodes),
            ));
        }
        if self.duration_ms == 0 || self.duration_ms > DURATION_MS_MAX {
            return Err(invalid("duration_ms", "must be 1 to 86400000 (one day)"));
        }
        if !matches!(self.anchor_mode.as_str(), "independent" | "collaborative" | "hybrid") {
            return Err(invalid("anchor_mode", "must be independent, collaborative or hybrid"));
        }
        if self.fanout != "all" && self.fanout != "log" && self.fanout.parse::<usize>().is_err() {
            return Err(invalid("fanout", "must be \"all\", \"log\" or a number of peers"));
        }
        if self.epoch_ms == 0 {
            return Err(invalid("epoch_ms", "must be at least 1"));
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(invalid("heartbeat_interval_ms", "must be at least 1"));
        }
        if self.load.batch_interval_ms == 0 {
            return Err(invalid("load.batch_interval_ms", "must be at least 1"));
        }
        if self.load.records_per_batch == 0 || self.load.records_per_batch > 100_000 {
            return Err(invalid("load.records_per_batch", "must be 1 to 100000"));
        }
        for (i, owner) in self.load.owners.iter().enumerate() {
            if *owner >= self.nodes {
                return Err(invalid(format!("load.owners[{i}]"), format!("node {owner} does not exist")));
            }
        }
        if let Some(messages) = &self.messages {
            if messages.interval_ms == 0 {
                return Err(invalid("messages.interval_ms", "must be at least 1"));
            }
            if messages.deadline_ms < 1000 || messages.deadline_ms > 86_400_000 {
                return Err(invalid("messages.deadline_ms", "must be 1000 to 86400000 (a day)"));
            }
            if self.load.owners.len() < 2 {
                return Err(invalid("messages", "needs at least two owners in load.owners to message"));
            }
        }
        if !(0.0..=1.0).contains(&self.network.loss) {
            return Err(invalid("network.loss", "must be a probability from 0 to 1"));
        }
        match self.network.latency {
            Latency::Uniform { min, max } if max < min => {
                return Err(invalid("network.latency.max", "must be at least min"));
            }
            _ => {}
        }
        for (i, partition) in self.partitions.iter().enumerate() {
            if partition.until_ms <= partition.from_ms {
                return Err(invalid(format!("partition[{i}].until_ms"), "must be after from_ms"));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (g, group) in partition.groups.iter().enumerate() {
                for node in group {
                    if *node >= self.nodes {
                        return Err(invalid(
                            format!("partition[{i}].groups[{g}]"),
                            format!("node {node} does not exist"),
                        ));
                    }
                    if !seen.insert(*node) {
                        return Err(invalid(
                            format!("partition[{i}].groups[{g}]"),
                            format!("node {node} is in two groups"),
                        ));
                    }
                }
            }
        }
        for (i, crash) in self.crashes.iter().enumerate() {
            if crash.node >= self.nodes {
                return Err(invalid(
                    format!("crash[{i}].node"),
                    format!("node {} does not exist", crash.node),
                ));
            }
            if crash.restart_ms.is_some_and(|r| r <= crash.at_ms) {
                return Err(invalid(format!("crash[{i}].restart_ms"), "must be after at_ms"));
            }
        }
        for (i, byzantine) in self.byzantine.iter().enumerate() {
            if byzantine.node >= self.nodes {
                return Err(invalid(
                    format!("byzantine[{i}].node"),
                    format!("node {} does not exist", byzantine.node),
                ));
            }
        }
        Ok(())
    }

    /// The seeds to run: `seeds` when given, else `seed`.
    pub fn seeds_to_run(&self) -> Vec<u64> {
        if self.seeds.is_empty() {
            vec![self.seed]
        } else {
            self.seeds.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
nodes = 5
quorum = 3
duration_ms = 10000
[load]
batch_interval_ms = 1000
"#;

    #[test]
    fn a_minimal_scenario_parses_with_defaults() {
        let scenario = Scenario::from_toml(BASE).expect("valid");
        assert_eq!(scenario.load.owners, vec![0]);
        assert_eq!(scenario.network.latency, Latency::Uniform { min: 5, max: 30 });
        assert_eq!(scenario.seeds_to_run(), vec![0]);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (BASE.replace("quorum = 3", "quorum = 2"), "quorum"),
            (BASE.replace("nodes = 5", "nodes = 0"), "nodes"),
            (
                format!("{BASE}[[partition]]\ngroups = [[0, 1], [1, 2]]\nfrom_ms = 1\nuntil_ms = 5\n"),
                "partition[0].groups[1]",
            ),
            (format!("{BASE}[[crash]]\nnode = 9\nat_ms = 1\n"), "crash[0].node"),
            (format!("{BASE}[network]\nloss = 2.0\n"), "network.loss"),
        ];
        for (text, field) in cases {
            let error = Scenario::from_toml(&text).expect_err(field);
            assert!(error.to_string().starts_with(field), "{error} should name {field}");
        }
        assert!(matches!(Scenario::from_toml("nodes = 'x'"), Err(ScenarioError::Syntax(_))));
    }
}
