//! Anchor targets and anchor propagation (spec: Anchor Propagation). `independent`: every
//! owner anchors each of its final receipts; `collaborative`: one node per epoch, chosen by a
//! deterministic election, anchors one root over the epoch's receipts and the others verify;
//! `hybrid`: the elected primary anchors on schedule and the next in the election order
//! anchors only when the primary has missed its deadline.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::hash::{Digest, HashAlgorithm};
use crate::merkle::{InclusionProofJson, MemoryNodeStore, MemoryTree};
use crate::registry::{PeerStatus, Registry};

/// Where a root was anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorReference {
    /// Target name (`local`, `eip155:1`, ...).
    pub target: String,
    /// Transaction carrying the root, for chains.
    pub tx_hash: Option<String>,
    /// Block of that transaction, for chains.
    pub block: Option<u64>,
    /// When the anchor was made (Unix seconds).
    pub timestamp: u64,
    /// Hash of that block (`0x…`), for chains: what the inclusion is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    /// Index of the transaction in its block, for chains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_index: Option<u64>,
    /// Confirmations the anchorer saw when it called the anchor final, for chains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
    /// What the anchor cost its payer, wei (gas used × effective price), for chains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_wei: Option<u64>,
    /// The RFC 3161 time-stamp token (DER, hex), for `rfc3161`: carried with the reference so
    /// that every member, not only the one that asked the TSA, can give an auditor the proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Why a target refused an anchor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("anchor target {target} failed: {reason}")]
pub struct AnchorError {
    /// The target.
    pub target: String,
    /// What went wrong.
    pub reason: String,
}

/// An anchor target. The engine asks its host to anchor (`Output::AnchorRequest`); the host
/// calls the target and answers with `Input::Anchored`.
pub trait AnchorTarget {
    /// The target's name, as receipts write it.
    fn name(&self) -> &str;
    /// Anchors `root`; `now_ms` is the host's clock.
    fn anchor(&mut self, root: &Digest, now_ms: u64) -> Result<AnchorReference, AnchorError>;
}

/// The `local` target: the federation's own signed statements are the anchor; nothing is
/// sent anywhere, and there is no transaction or block.
#[derive(Debug, Default, Clone)]
pub struct LocalTarget {
    anchored: u64,
}

impl LocalTarget {
    /// Roots anchored so far.
    pub fn anchored(&self) -> u64 {
        self.anchored
    }
}

impl AnchorTarget for LocalTarget {
    fn name(&self) -> &str {
        "local"
    }

    fn anchor(&mut self, _root: &Digest, now_ms: u64) -> Result<AnchorReference, AnchorError> {
        self.anchored += 1;
        Ok(AnchorReference {
            target: "local".to_string(),
            tx_hash: None,
            block: None,
            timestamp: now_ms / 1000,
            block_hash: None,
            tx_index: None,
            confirmations: None,
            cost_wei: None,
            token: None,
        })
    }
}

/// One final receipt covered by an epoch anchor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochEntry {
    /// Namespace.
    pub namespace: String,
    /// Final size.
    pub size: u64,
    /// Final root.
    pub root: serde_bytes::ByteBuf,
}

/// The leaf an epoch entry is in its epoch's tree: `namespace \n size \n hex(root)`.
pub fn epoch_leaf(entry: &EpochEntry) -> String {
    format!("{}\n{}\n{}", entry.namespace, entry.size, hex::encode(&entry.root))
}

/// The tree over an epoch's entries, in sorted order, and the entries in that order.
fn epoch_tree(entries: &[EpochEntry]) -> (MemoryTree<MemoryNodeStore>, Vec<&EpochEntry>) {
    let mut sorted: Vec<&EpochEntry> = entries.iter().collect();
    sorted.sort();
    let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
    for entry in &sorted {
        // The in-memory store cannot fail on in-order appends.
        let _ = tree.append(epoch_leaf(entry).as_bytes());
    }
    (tree, sorted)
}

/// The root over an epoch's entries (the `batch_root` its anchor carries): an RFC 9162 tree
/// whose leaves are [`epoch_leaf`]s, in sorted order.
pub fn epoch_root(entries: &[EpochEntry]) -> Digest {
    epoch_tree(entries).0.root()
}

/// The entry of `namespace` in an epoch and its inclusion proof up to the epoch's root: the
/// path from a namespace's root to the `batch_root` an external anchor carries.
pub fn epoch_inclusion(entries: &[EpochEntry], namespace: &str) -> Option<(EpochEntry, InclusionProofJson)> {
    let (tree, sorted) = epoch_tree(entries);
    let index = sorted.iter().position(|entry| entry.namespace == namespace)?;
    let size = tree.size();
    let path = tree.inclusion_proof(index as u64, size).ok()?;
    let leaf = tree.leaf_hash(index as u64).ok()?;
    let proof = InclusionProofJson::new(HashAlgorithm::Sha256, index as u64, size, leaf, &path, tree.root());
    Some((sorted[index].clone(), proof))
}

/// Hybrid mode: secondaries (by election rank) that stand by for each epoch.
pub const HYBRID_SECONDARIES: usize = 3;

/// The election order of epoch `epoch`: the registry's active members sorted by
/// SHA-256(tag || federation || epoch || DID). It depends on the registry and the epoch alone,
/// so anyone holding the registry (a member, an auditor) computes the same order for any
/// epoch, and a claim from a member it does not name is provably out of turn. Predictable by
/// design: anchoring an epoch is a duty, not a prize worth grinding for.
pub fn election_order(registry: &Registry, epoch: u64) -> Vec<String> {
    let mut ranked: Vec<([u8; 32], String)> = registry
        .members
        .values()
        .filter(|m| m.status == PeerStatus::Active)
        .map(|m| {
            let mut hasher = Sha256::new();
            hasher.update(b"remembrancer/election/v1\0");
            hasher.update(registry.name.as_bytes());
            hasher.update(epoch.to_be_bytes());
            hasher.update(m.did.as_bytes());
            (hasher.finalize().into(), m.did.clone())
        })
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, did)| did).collect()
}

/// Whether a member at `rank` of an epoch's election order (None: not in it) may claim the
/// epoch's anchor in `mode`: in collaborative mode the first only; in hybrid mode the first
/// and its [`HYBRID_SECONDARIES`] (a secondary's turn comes after a deadline no third party
/// can time, so any of them may); in independent mode nobody (each owner anchors its own
/// receipts, not epochs).
pub fn may_claim_epoch(mode: crate::registry::AnchorMode, rank: Option<usize>) -> bool {
    use crate::registry::AnchorMode;
    match mode {
        AnchorMode::Independent => false,
        AnchorMode::Collaborative => rank == Some(0),
        AnchorMode::Hybrid => rank.is_some_and(|r| r <= HYBRID_SECONDARIES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeIdentity;
    use crate::registry::{AnchorPropagation, FederationSection, PeerEntry, RegistryDocument};

    fn registry(n: usize) -> Registry {
        let document = RegistryDocument {
            federation: FederationSection {
                name: "elect".to_string(),
                version: 1,
                quorum: (n / 2 + 1) as u32,
                peers: (0..n)
                    .map(|i| {
                        let id = NodeIdentity::from_seed(&format!("did:vm:node:e{i}"), [i as u8 + 1; 32])
                            .expect("id");
                        PeerEntry::for_identity(&id, Vec::new())
                    })
                    .collect(),
                anchor_propagation: AnchorPropagation::default(),
            },
        };
        Registry::from_document(&document).expect("registry")
    }

    #[test]
    fn the_election_is_deterministic_rotates_and_skips_inactive_members() {
        let registry = registry(5);
        assert_eq!(election_order(&registry, 3), election_order(&registry, 3));
        let primaries: std::collections::BTreeSet<String> =
            (0..50).map(|e| election_order(&registry, e)[0].clone()).collect();
        assert!(primaries.len() >= 4, "the primary rotates over epochs: {primaries:?}");
        let mut renamed = registry.clone();
        renamed.name = "another".to_string();
        assert_ne!(election_order(&registry, 3), election_order(&renamed, 3), "per federation");
        let mut demoted = registry.clone();
        let first = election_order(&registry, 3)[0].clone();
        demoted.members.get_mut(&first).expect("member").status = PeerStatus::Probation;
        assert!(!election_order(&demoted, 3).contains(&first));
    }

    #[test]
    fn the_epoch_root_ignores_order_and_binds_every_entry() {
        let entry = |ns: &str, size: u64, byte: u8| EpochEntry {
            namespace: ns.to_string(),
            size,
            root: serde_bytes::ByteBuf::from(vec![byte; 32]),
        };
        let a = vec![entry("ns:a", 1, 1), entry("ns:b", 4, 2)];
        let b = vec![entry("ns:b", 4, 2), entry("ns:a", 1, 1)];
        assert_eq!(epoch_root(&a), epoch_root(&b));
        assert_ne!(epoch_root(&a), epoch_root(&[entry("ns:a", 1, 1), entry("ns:b", 4, 3)]));
        let mut target = LocalTarget::default();
        let reference = target.anchor(&epoch_root(&a), 1_800_000_000_000).expect("local anchors");
        assert_eq!((reference.target.as_str(), reference.tx_hash, reference.block), ("local", None, None));
        assert_eq!(target.anchored(), 1);
    }
}
