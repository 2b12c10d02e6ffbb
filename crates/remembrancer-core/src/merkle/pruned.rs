//! A node store whose memory does not grow with the records: the upper levels of the tree in
//! memory, the lowest levels only for the most recent records, and the rest recomputed from
//! the records themselves when a proof reaches them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::store::{MemoryNodeStore, NodeStore, StoreError};
use crate::hash::{Digest, HashAlgorithm};

/// Levels recomputed from the records instead of kept: 0 (the leaves) to `LOW_LEVELS - 1`.
pub const LOW_LEVELS: u8 = 8;
/// Records under one block of low levels (2^LOW_LEVELS).
pub const BLOCK_LEAVES: u64 = 1 << LOW_LEVELS;
/// Hashes of one block's low levels: 256 + 128 + ... + 2 (its root is an upper-level node).
const BLOCK_HASHES: usize = 2 * BLOCK_LEAVES as usize - 2;
/// Offset of each low level's hashes inside a block.
const LOW_OFFSET: [usize; LOW_LEVELS as usize] = [0, 256, 384, 448, 480, 496, 504, 508];
/// Complete blocks kept whole behind the tree's edge (16 384 records, 1 MiB of hashes): the
/// consistency proofs of new anchors start at a recent size and read only these.
pub const RECENT_BLOCKS: usize = 64;

/// Reads back the leaf hashes of `count` records from index `first` (in order), hashed with
/// the tree's algorithm. A node store hands the same source every read; the source bounds
/// each read to one block.
pub type LeafSource = Arc<dyn Fn(u64, usize) -> Result<Vec<Digest>, StoreError> + Send + Sync>;

/// Node hashes of one tree in about 0.25 bytes per record instead of 64: every node at level
/// [`LOW_LEVELS`] and above, plus the low levels of the last [`RECENT_BLOCKS`] complete blocks
/// and of the block at the edge. A read below that recomputes the block's 256 leaves from the
/// [`LeafSource`] (the records on disk) and checks their root against the stored node above,
/// so a damaged record is reported, never proven.
///
/// Low levels are dropped only below the size the owner declared readable
/// ([`NodeStore::records_readable`]): records the tree holds before they are written stay in
/// memory until they can be read back.
pub struct PrunedNodeStore {
    algorithm: HashAlgorithm,
    /// Levels `LOW_LEVELS..`, stored at `level - LOW_LEVELS`.
    upper: MemoryNodeStore,
    /// Low levels of blocks `first_recent..`, in order; the last may be incomplete.
    recent: VecDeque<Box<[Digest]>>,
    first_recent: u64,
    /// Leaves written.
    leaves: u64,
    /// Records below this index can be read back from `source`.
    readable: u64,
    source: LeafSource,
    /// The last block recomputed (an inclusion proof reads up to eight of its nodes).
    recomputed: Mutex<Option<(u64, Arc<[Digest]>)>>,
}

impl std::fmt::Debug for PrunedNodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrunedNodeStore")
            .field("leaves", &self.leaves)
            .field("readable", &self.readable)
            .field("first_recent", &self.first_recent)
            .field("recent_blocks", &self.recent.len())
            .finish_non_exhaustive()
    }
}

impl PrunedNodeStore {
    /// An empty store for a tree hashed with `algorithm`, whose records `source` reads back.
    pub fn new(algorithm: HashAlgorithm, source: LeafSource) -> Self {
        PrunedNodeStore {
            algorithm,
            upper: MemoryNodeStore::new(),
            recent: VecDeque::new(),
            first_recent: 0,
            leaves: 0,
            readable: 0,
            source,
            recomputed: Mutex::new(None),
        }
    }

    /// Bytes of hashes held: the upper levels, the recent blocks and the last recomputed one.
    pub fn memory_bytes(&self) -> usize {
        let cached = self.recomputed.lock().map_or(0, |c| c.as_ref().map_or(0, |(_, b)| b.len()));
        self.upper.memory_bytes()
            + (self.recent.len() * BLOCK_HASHES + cached) * std::mem::size_of::<Digest>()
    }

    /// Blocks whose low levels are in memory (the edge's included).
    pub fn recent_blocks(&self) -> usize {
        self.recent.len()
    }

    #[inline]
    fn slot(level: u8, index: u64) -> (u64, usize) {
        let block = index >> (LOW_LEVELS - level);
        let within = index & ((BLOCK_LEAVES >> level) - 1);
        (block, LOW_OFFSET[level as usize] + within as usize)
    }

    /// Whether all the leaves under the low-level node `(level, index)` are written.
    #[inline]
    fn covered(&self, level: u8, index: u64) -> bool {
        (index + 1) << level <= self.leaves
    }

    /// Drops the low levels of complete blocks that can be recomputed, beyond the recent ones.
    fn evict(&mut self) {
        while self.recent.len() > RECENT_BLOCKS + 1
            && (self.first_recent + 1) * BLOCK_LEAVES <= self.readable.min(self.leaves)
        {
            self.recent.pop_front();
            self.first_recent += 1;
        }
    }

    /// The low levels of a dropped block, rebuilt from its records and checked against the
    /// block's root.
    fn recompute(&self, block: u64) -> Result<Arc<[Digest]>, StoreError> {
        let mut cache =
            self.recomputed.lock().map_err(|_| StoreError::Backend("a reader panicked".into()))?;
        if let Some((cached, hashes)) = cache.as_ref() {
            if *cached == block {
                return Ok(Arc::clone(hashes));
            }
        }
        let first = block * BLOCK_LEAVES;
        // The leaves, then each level above them in turn, in the block layout.
        let mut hashes = (self.source)(first, BLOCK_LEAVES as usize)?;
        if hashes.len() != BLOCK_LEAVES as usize {
            return Err(StoreError::Missing { level: 0, index: first + hashes.len() as u64 });
        }
        hashes.reserve_exact(BLOCK_HASHES - hashes.len());
        let mut level_start = 0usize;
        let mut width = BLOCK_LEAVES as usize;
        while width > 2 {
            for pair in 0..width / 2 {
                let hash = self
                    .algorithm
                    .node_hash(&hashes[level_start + 2 * pair], &hashes[level_start + 2 * pair + 1]);
                hashes.push(hash);
            }
            level_start += width;
            width /= 2;
        }
        let root = self.algorithm.node_hash(&hashes[BLOCK_HASHES - 2], &hashes[BLOCK_HASHES - 1]);
        if root
            != self
                .upper
                .node(0, block)
                .map_err(|_| StoreError::Missing { level: LOW_LEVELS, index: block })?
        {
            return Err(StoreError::Backend(format!(
                "records {first} to {} no longer hash to the tree's stored node: the data is damaged; restore it from a backup or a peer",
                first + BLOCK_LEAVES - 1
            )));
        }
        let hashes: Arc<[Digest]> = hashes.into();
        *cache = Some((block, Arc::clone(&hashes)));
        Ok(hashes)
    }
}

impl NodeStore for PrunedNodeStore {
    fn node(&self, level: u8, index: u64) -> Result<Digest, StoreError> {
        if level >= LOW_LEVELS {
            return self
                .upper
                .node(level - LOW_LEVELS, index)
                .map_err(|_| StoreError::Missing { level, index });
        }
        if !self.covered(level, index) {
            return Err(StoreError::Missing { level, index });
        }
        let (block, slot) = Self::slot(level, index);
        if block >= self.first_recent {
            return self
                .recent
                .get((block - self.first_recent) as usize)
                .map(|hashes| hashes[slot])
                .ok_or(StoreError::Missing { level, index });
        }
        Ok(self.recompute(block)?[slot])
    }

    fn put_node(&mut self, level: u8, index: u64, hash: Digest) -> Result<(), StoreError> {
        if level >= LOW_LEVELS {
            return self.upper.put_node(level - LOW_LEVELS, index, hash);
        }
        let (block, slot) = Self::slot(level, index);
        if level == 0 {
            if index != self.leaves {
                return Err(StoreError::Backend(format!(
                    "out-of-order leaf write: index {index}, expected {}",
                    self.leaves
                )));
            }
            if slot == 0 {
                self.recent.push_back(vec![[0u8; 32]; BLOCK_HASHES].into_boxed_slice());
            }
            self.leaves += 1;
        } else if !self.covered(level, index) {
            return Err(StoreError::Backend(format!(
                "node at level {level}, index {index} written before its leaves"
            )));
        }
        let position = block.checked_sub(self.first_recent).map(|p| p as usize);
        match position.and_then(|p| self.recent.get_mut(p)) {
            Some(hashes) => hashes[slot] = hash,
            None => {
                return Err(StoreError::Backend(format!(
                    "node at level {level}, index {index} written after its block was dropped"
                )))
            }
        }
        if level == 0 && slot == 0 {
            self.evict();
        }
        Ok(())
    }

    fn records_readable(&mut self, size: u64) {
        self.readable = self.readable.max(size);
        self.evict();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, TreeError};

    fn record(i: u64) -> Vec<u8> {
        format!("record {i}").into_bytes()
    }

    /// A leaf source over records in a shared vector (what RocksDB is to the node).
    fn source(records: Records, algorithm: HashAlgorithm) -> LeafSource {
        Arc::new(move |first, count| {
            let records = records.lock().expect("records");
            let end = (first as usize + count).min(records.len());
            Ok(records
                .get(first as usize..end)
                .unwrap_or_default()
                .iter()
                .map(|r| algorithm.leaf_hash(r))
                .collect())
        })
    }

    /// The records a test's leaf source reads.
    type Records = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A pruned tree over an empty record list the test appends to.
    fn pruned_tree() -> (MemoryTree<PrunedNodeStore>, Records) {
        let algorithm = HashAlgorithm::Sha256;
        let records = Arc::new(Mutex::new(Vec::new()));
        let store = PrunedNodeStore::new(algorithm, source(Arc::clone(&records), algorithm));
        (MemoryTree::new(algorithm, store), records)
    }

    #[test]
    fn proofs_and_roots_match_the_full_store_while_memory_stays_bounded() {
        let (mut pruned, records) = pruned_tree();
        let mut full = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
        let total = 300 * BLOCK_LEAVES + 37;
        let mut halfway = (0, 0);
        for i in 0..total {
            let r = record(i);
            pruned.append(&r).expect("append");
            full.append(&r).expect("append");
            records.lock().expect("records").push(r);
            if i % 1000 == 999 {
                pruned.store_mut().records_readable(i + 1);
            }
            if i == total / 2 {
                halfway = (pruned.store().memory_bytes(), full.store().memory_bytes());
            }
        }
        pruned.store_mut().records_readable(total);
        assert_eq!(pruned.store().recent_blocks(), RECENT_BLOCKS + 1, "old blocks dropped, recent ones kept");
        // The full store grows 64 bytes a record; the pruned one only by its upper levels.
        let grown = (pruned.store().memory_bytes() - halfway.0, full.store().memory_bytes() - halfway.1);
        assert!(grown.0 * 100 < grown.1, "grew {} bytes against {}", grown.0, grown.1);
        assert_eq!(pruned.root(), full.root());
        for size in [1, 2, 255, 256, 257, 5000, 9 * BLOCK_LEAVES + 3, 200 * BLOCK_LEAVES, total - 1, total] {
            assert_eq!(pruned.root_at(size).expect("root"), full.root_at(size).expect("root"), "size {size}");
            for index in [0, size / 3, size - 1] {
                assert_eq!(
                    pruned.inclusion_proof(index, size).expect("proof"),
                    full.inclusion_proof(index, size).expect("proof"),
                    "index {index} at size {size}"
                );
                assert_eq!(pruned.leaf_hash(index).expect("leaf"), full.leaf_hash(index).expect("leaf"));
            }
            for old in [1, size / 2, size.saturating_sub(300).max(1)] {
                assert_eq!(
                    pruned.consistency_proof(old, size).expect("proof"),
                    full.consistency_proof(old, size).expect("proof"),
                    "{old} to {size}"
                );
            }
        }
    }

    #[test]
    fn records_not_yet_readable_stay_in_memory() {
        let (mut tree, _records) = pruned_tree();
        let total = (RECENT_BLOCKS as u64 + 10) * BLOCK_LEAVES;
        for i in 0..total {
            tree.append(&record(i)).expect("append");
        }
        // Nothing was declared readable (the source is empty): every block is still held and
        // every proof is served from memory.
        assert_eq!(tree.store().recent_blocks(), RECENT_BLOCKS + 10);
        assert!(tree.inclusion_proof(3, total).is_ok());
        assert!(tree.root_at(1000).is_ok());
    }

    #[test]
    fn a_damaged_record_is_reported_not_proven() {
        let (mut tree, records) = pruned_tree();
        let total = (RECENT_BLOCKS as u64 + 4) * BLOCK_LEAVES;
        for i in 0..total {
            let r = record(i);
            tree.append(&r).expect("append");
            records.lock().expect("records").push(r);
        }
        tree.store_mut().records_readable(total);
        assert!(tree.inclusion_proof(5, total).is_ok());
        records.lock().expect("records")[5] = b"tampered".to_vec();
        // The good block is cached; another block's proof clears it, then block 0 is re-read.
        assert!(tree.inclusion_proof(BLOCK_LEAVES + 1, total).is_ok());
        match tree.inclusion_proof(5, total) {
            Err(TreeError::Store(StoreError::Backend(message))) => {
                assert!(message.contains("damaged"), "{message}")
            }
            other => panic!("expected a damaged-data error, got {other:?}"),
        }
        records.lock().expect("records").truncate(100);
        match tree.leaf_hash(2 * BLOCK_LEAVES) {
            Err(TreeError::Store(StoreError::Missing { level: 0, index })) => {
                assert_eq!(index, 2 * BLOCK_LEAVES)
            }
            other => panic!("expected a missing record, got {other:?}"),
        }
    }
}
