//! Where a tree's node hashes live: a small trait shared by the in-memory and RocksDB stores.

use crate::hash::Digest;

/// Errors a node store can report. The in-memory store only reports `Missing`; disk-backed
/// stores add their own failures as `Backend`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A node that the tree's size says must exist is not in the store: the data is damaged.
    #[error("node hash at level {level}, index {index} is missing from the store: the tree data is damaged; restore it from a backup or a peer")]
    Missing {
        /// Height of the node above the leaves (0 = leaf).
        level: u8,
        /// Index of the node among the nodes of its level.
        index: u64,
    },
    /// The backing store failed.
    #[error("node store failed: {0}")]
    Backend(String),
}

/// Storage of the hashes of complete (perfect) subtrees of one tree, addressed by
/// `(level, index)`: the node at level `l` and index `i` covers leaves `[i << l, (i + 1) << l)`.
///
/// Architecture invariant: a node is written once, after all its leaves exist, and never
/// changes; readers may therefore cache freely.
pub trait NodeStore {
    /// Reads one complete-subtree hash.
    fn node(&self, level: u8, index: u64) -> Result<Digest, StoreError>;
    /// Records one complete-subtree hash. Disk stores buffer these until the batch commits.
    fn put_node(&mut self, level: u8, index: u64, hash: Digest) -> Result<(), StoreError>;
}

/// Node hashes in memory, one vector per level: for tests, the simulator and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct MemoryNodeStore {
    levels: Vec<Vec<Digest>>,
}

impl MemoryNodeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored hashes, over all levels.
    pub fn len(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NodeStore for MemoryNodeStore {
    #[inline]
    fn node(&self, level: u8, index: u64) -> Result<Digest, StoreError> {
        self.levels
            .get(level as usize)
            .and_then(|nodes| nodes.get(index as usize))
            .copied()
            .ok_or(StoreError::Missing { level, index })
    }

    #[inline]
    fn put_node(&mut self, level: u8, index: u64, hash: Digest) -> Result<(), StoreError> {
        let level_index = level as usize;
        if self.levels.len() <= level_index {
            self.levels.resize_with(level_index + 1, Vec::new);
        }
        let nodes = &mut self.levels[level_index];
        // Nodes arrive strictly in order (append-only), so a push is a write at `index`.
        if nodes.len() as u64 != index {
            return Err(StoreError::Backend(format!(
                "out-of-order node write at level {level}: index {index}, expected {}",
                nodes.len()
            )));
        }
        nodes.push(hash);
        Ok(())
    }
}
