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
    /// The tree's records below `size` are stored and can be read back: a store that keeps
    /// only part of the tree may now drop what it can recompute from them. Stores that keep
    /// every node ignore it.
    fn records_readable(&mut self, _size: u64) {}
}

/// Levels per tier of the blocked layout of [`MemoryNodeStore`].
const TIER_LEVELS: u8 = 4;
/// Leaves under one block of a tier (2^TIER_LEVELS).
const BLOCK_WIDTH: u64 = 1 << TIER_LEVELS;
/// Hashes stored per block: 16 + 8 + 4 + 2 (the block's root belongs to the next tier).
const BLOCK_HASHES: usize = 30;
/// Offset of each level's hashes inside a block.
const LEVEL_OFFSET: [usize; TIER_LEVELS as usize] = [0, 16, 24, 28];

/// Node hashes in memory: for tests, the simulator and benchmarks.
///
/// Layout: levels are grouped in tiers of four; within a tier, the nodes of one 16-wide
/// subtree (16 + 8 + 4 + 2 hashes, under 1 KiB) sit together, so the first four siblings of
/// an inclusion proof share a page and a few cache lines instead of touching four arrays.
#[derive(Debug, Default, Clone)]
pub struct MemoryNodeStore {
    tiers: Vec<Vec<Digest>>,
    /// Number of nodes written per level (writes are append-only per level).
    counts: Vec<u64>,
}

impl MemoryNodeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored hashes, over all levels.
    pub fn len(&self) -> usize {
        self.counts.iter().sum::<u64>() as usize
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of hashes held (whole blocks, as allocated and written): about 64 per leaf.
    pub fn memory_bytes(&self) -> usize {
        self.tiers.iter().map(|hashes| hashes.len() * std::mem::size_of::<Digest>()).sum()
    }

    #[inline]
    fn slot(level: u8, index: u64) -> (usize, usize) {
        let tier = (level / TIER_LEVELS) as usize;
        let within = level % TIER_LEVELS;
        let block = index >> (TIER_LEVELS - within);
        let offset = LEVEL_OFFSET[within as usize] + (index & ((BLOCK_WIDTH >> within) - 1)) as usize;
        (tier, block as usize * BLOCK_HASHES + offset)
    }
}

impl NodeStore for MemoryNodeStore {
    #[inline]
    fn node(&self, level: u8, index: u64) -> Result<Digest, StoreError> {
        if self.counts.get(level as usize).is_none_or(|count| index >= *count) {
            return Err(StoreError::Missing { level, index });
        }
        let (tier, position) = Self::slot(level, index);
        self.tiers
            .get(tier)
            .and_then(|hashes| hashes.get(position))
            .copied()
            .ok_or(StoreError::Missing { level, index })
    }

    #[inline]
    fn put_node(&mut self, level: u8, index: u64, hash: Digest) -> Result<(), StoreError> {
        let level_index = level as usize;
        if self.counts.len() <= level_index {
            self.counts.resize(level_index + 1, 0);
        }
        // Nodes arrive strictly in order per level (append-only).
        if self.counts[level_index] != index {
            return Err(StoreError::Backend(format!(
                "out-of-order node write at level {level}: index {index}, expected {}",
                self.counts[level_index]
            )));
        }
        let (tier, position) = Self::slot(level, index);
        if self.tiers.len() <= tier {
            self.tiers.resize_with(tier + 1, Vec::new);
        }
        let hashes = &mut self.tiers[tier];
        if hashes.len() <= position {
            let blocks = position / BLOCK_HASHES + 1;
            hashes.resize(blocks * BLOCK_HASHES, [0u8; 32]);
        }
        hashes[position] = hash;
        self.counts[level_index] += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_lands_in_its_own_slot_and_reads_back() {
        let mut store = MemoryNodeStore::new();
        let mut expected = Vec::new();
        for level in 0..10u8 {
            for index in 0..(300u64 >> level) {
                let mut hash = [0u8; 32];
                hash[0] = level;
                hash[1..9].copy_from_slice(&index.to_le_bytes());
                store.put_node(level, index, hash).expect("put");
                expected.push((level, index, hash));
            }
        }
        for (level, index, hash) in expected {
            assert_eq!(store.node(level, index).expect("node"), hash);
        }
        assert!(matches!(store.node(0, 300), Err(StoreError::Missing { .. })));
        assert!(matches!(store.node(12, 0), Err(StoreError::Missing { .. })));
        assert!(store.put_node(0, 5, [0u8; 32]).is_err(), "out-of-order writes are refused");
    }

    #[test]
    fn memory_counts_whole_blocks_of_hashes() {
        let mut store = MemoryNodeStore::new();
        assert_eq!(store.memory_bytes(), 0);
        // A 16-leaf block holds its 16 + 8 + 4 + 2 hashes; the 17th leaf opens a second block.
        for (level, count) in [(0u8, 16u64), (1, 8), (2, 4), (3, 2)] {
            for index in 0..count {
                store.put_node(level, index, [level; 32]).expect("put");
            }
        }
        assert_eq!(store.memory_bytes(), BLOCK_HASHES * 32);
        store.put_node(0, 16, [9; 32]).expect("put");
        assert_eq!(store.memory_bytes(), 2 * BLOCK_HASHES * 32);
    }
}
