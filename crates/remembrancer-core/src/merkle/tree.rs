//! The incremental append-only memory tree (RFC 9162 §2.1): only the right edge in memory.

use std::sync::OnceLock;

use super::store::{NodeStore, StoreError};
use crate::hash::{Digest, HashAlgorithm};

/// Errors from tree reads: a size or index out of range, or a failing store.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The requested size is beyond the tree's current size.
    #[error("tree size {requested} is beyond the current size {size}")]
    SizeBeyondTree {
        /// The size asked for.
        requested: u64,
        /// The tree's size.
        size: u64,
    },
    /// The leaf index is not below the tree size it is proven against.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The size it was asked against.
        size: u64,
    },
    /// A consistency proof was asked from a larger size to a smaller one.
    #[error("cannot prove consistency from size {old_size} to the smaller size {new_size}")]
    SizesReversed {
        /// The older size.
        old_size: u64,
        /// The newer size.
        new_size: u64,
    },
    /// The node store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Largest power of two strictly below `n` (RFC 9162's split point), for `n >= 2`.
#[inline]
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// An append-only Merkle tree over one namespace's records.
///
/// Appending keeps only the right edge ("frontier": one complete-subtree root per set bit of
/// the size) in memory and writes each completed node once to the [`NodeStore`]; roots at
/// earlier sizes and proofs read O(log n) stored nodes.
#[derive(Debug)]
pub struct MemoryTree<S> {
    algorithm: HashAlgorithm,
    size: u64,
    /// Roots of the complete subtrees on the right edge, largest (leftmost) first.
    frontier: Vec<Digest>,
    /// Hashes of the right-edge subtrees `[start_j, size)` for each frontier entry `j`, built
    /// lazily once per size so that proofs at the current size do no hashing.
    right_edge: OnceLock<Vec<Digest>>,
    store: S,
}

impl<S: NodeStore> MemoryTree<S> {
    /// An empty tree over an empty store.
    pub fn new(algorithm: HashAlgorithm, store: S) -> Self {
        MemoryTree { algorithm, size: 0, frontier: Vec::new(), right_edge: OnceLock::new(), store }
    }

    /// Reopens a tree of `size` leaves whose nodes are already in `store`: reads the right edge
    /// (one node per set bit of `size`).
    pub fn open(algorithm: HashAlgorithm, size: u64, store: S) -> Result<Self, TreeError> {
        let mut frontier = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                frontier.push(store.node(level, start >> level)?);
                start += 1u64 << level;
            }
        }
        Ok(MemoryTree { algorithm, size, frontier, right_edge: OnceLock::new(), store })
    }

    /// The tree's hash algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// Number of records in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The node store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The node store, mutably (disk stores flush their pending batch through this).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Appends one record; returns its index.
    #[inline]
    pub fn append(&mut self, record: &[u8]) -> Result<u64, TreeError> {
        let leaf = self.algorithm.leaf_hash(record);
        self.append_leaf_hash(leaf)
    }

    /// Appends a batch of records; returns the index of the first.
    pub fn append_batch<'a, I>(&mut self, records: I) -> Result<u64, TreeError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let first = self.size;
        for record in records {
            self.append(record)?;
        }
        Ok(first)
    }

    /// Appends a leaf whose hash H(0x00 || record) is already known; returns its index.
    pub fn append_leaf_hash(&mut self, leaf: Digest) -> Result<u64, TreeError> {
        let index = self.size;
        self.store.put_node(0, index, leaf)?;
        let mut hash = leaf;
        let mut level = 0u8;
        let mut node_index = index;
        // Each trailing one bit of the index closes a complete subtree with its left sibling,
        // which is the last frontier entry.
        while node_index & 1 == 1 {
            let left = self
                .frontier
                .pop()
                .ok_or(StoreError::Backend("frontier shorter than the tree size implies".to_string()))?;
            hash = self.algorithm.node_hash(&left, &hash);
            level += 1;
            node_index >>= 1;
            self.store.put_node(level, node_index, hash)?;
        }
        self.frontier.push(hash);
        self.size += 1;
        if self.right_edge.get().is_some() {
            self.right_edge = OnceLock::new();
        }
        Ok(index)
    }

    /// Root at the current size.
    pub fn root(&self) -> Digest {
        match self.frontier.split_last() {
            None => self.algorithm.empty_root(),
            Some((last, rest)) => {
                rest.iter().rev().fold(*last, |acc, left| self.algorithm.node_hash(left, &acc))
            }
        }
    }

    /// Root at an earlier (or the current) size.
    pub fn root_at(&self, size: u64) -> Result<Digest, TreeError> {
        if size > self.size {
            return Err(TreeError::SizeBeyondTree { requested: size, size: self.size });
        }
        if size == self.size {
            return Ok(self.root());
        }
        if size == 0 {
            return Ok(self.algorithm.empty_root());
        }
        self.subtree_hash(0, size)
    }

    /// Leaf hash of record `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Digest, TreeError> {
        if index >= self.size {
            return Err(TreeError::IndexOutOfRange { index, size: self.size });
        }
        Ok(self.store.node(0, index)?)
    }

    /// Hashes of the right-edge subtrees `[start_j, size)`, one per frontier entry.
    fn right_edge(&self) -> &[Digest] {
        self.right_edge.get_or_init(|| {
            let mut folds = self.frontier.clone();
            for j in (0..folds.len().saturating_sub(1)).rev() {
                folds[j] = self.algorithm.node_hash(&self.frontier[j], &folds[j + 1]);
            }
            folds
        })
    }

    /// MTH(D[start:end]) for `0 <= start < end <= size`.
    fn subtree_hash(&self, start: u64, end: u64) -> Result<Digest, TreeError> {
        let width = end - start;
        if width.is_power_of_two() && start.is_multiple_of(width) {
            let level = width.trailing_zeros() as u8;
            return Ok(self.store.node(level, start >> level)?);
        }
        if end == self.size {
            // A right-edge subtree starting at a frontier boundary: read it from the cache.
            let mut boundary = 0u64;
            let mut j = 0usize;
            for level in (0..64u8).rev() {
                if self.size & (1u64 << level) != 0 {
                    if boundary == start {
                        return Ok(self.right_edge()[j]);
                    }
                    boundary += 1u64 << level;
                    j += 1;
                }
            }
        }
        let k = split_point(width);
        let left = self.subtree_hash(start, start + k)?;
        let right = self.subtree_hash(start + k, end)?;
        Ok(self.algorithm.node_hash(&left, &right))
    }

    /// Inclusion proof of leaf `index` in the tree at `size` (RFC 9162 §2.1.3.1), sibling
    /// hashes ordered from the leaf up.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Digest>, TreeError> {
        if size > self.size {
            return Err(TreeError::SizeBeyondTree { requested: size, size: self.size });
        }
        if index >= size {
            return Err(TreeError::IndexOutOfRange { index, size });
        }
        if size == self.size {
            return self.inclusion_proof_at_current_size(index);
        }
        self.inclusion_proof_by_splitting(index, size)
    }

    /// RFC 9162 §2.1.3.1's PATH at any size, splitting the range top-down.
    fn inclusion_proof_by_splitting(&self, index: u64, size: u64) -> Result<Vec<Digest>, TreeError> {
        let mut path = Vec::with_capacity(64 - size.leading_zeros() as usize);
        let (mut low, mut high) = (0u64, size);
        while high - low > 1 {
            let k = split_point(high - low);
            if index < low + k {
                path.push(self.subtree_hash(low + k, high)?);
                high = low + k;
            } else {
                path.push(self.subtree_hash(low, low + k)?);
                low += k;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// Inclusion proof at the current size without any hashing: the leaf lies in frontier
    /// subtree `j`; its path is the stored siblings inside that complete subtree, then the
    /// right-edge hash of everything to its right, then the frontier roots to its left
    /// (RFC 9162 §2.1.3.1's PATH, unrolled).
    fn inclusion_proof_at_current_size(&self, index: u64) -> Result<Vec<Digest>, TreeError> {
        let size = self.size;
        let mut path = Vec::with_capacity(64 - size.leading_zeros() as usize);
        // Find the frontier subtree holding `index`: walk the set bits of size from the top.
        let mut start = 0u64;
        let mut j = 0usize;
        let mut level = 0u32;
        for bit in (0..64u32).rev() {
            let width = 1u64 << bit;
            if size & width != 0 {
                if index < start + width {
                    level = bit;
                    break;
                }
                start += width;
                j += 1;
            }
        }
        for l in 0..level {
            let sibling = (index >> l) ^ 1;
            path.push(self.store.node(l as u8, sibling)?);
        }
        if j + 1 < self.frontier.len() {
            path.push(self.right_edge()[j + 1]);
        }
        for left in self.frontier[..j].iter().rev() {
            path.push(*left);
        }
        Ok(path)
    }

    /// Consistency proof from `old_size` to `new_size` (RFC 9162 §2.1.4.1). From size 0 or to
    /// the same size the proof is empty.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Digest>, TreeError> {
        if new_size > self.size {
            return Err(TreeError::SizeBeyondTree { requested: new_size, size: self.size });
        }
        if old_size > new_size {
            return Err(TreeError::SizesReversed { old_size, new_size });
        }
        if old_size == 0 || old_size == new_size {
            return Ok(Vec::new());
        }
        let mut proof = Vec::with_capacity(2 * (64 - new_size.leading_zeros() as usize));
        let (mut low, mut high) = (0u64, new_size);
        let mut m = old_size;
        let mut from_root = true;
        loop {
            if m == high - low {
                if !from_root {
                    proof.push(self.subtree_hash(low, high)?);
                }
                break;
            }
            let k = split_point(high - low);
            if m <= k {
                proof.push(self.subtree_hash(low + k, high)?);
                high = low + k;
            } else {
                proof.push(self.subtree_hash(low, low + k)?);
                low += k;
                m -= k;
                from_root = false;
            }
        }
        proof.reverse();
        Ok(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::store::MemoryNodeStore;
    use crate::merkle::verify::{verify_consistency, verify_inclusion};

    /// MTH straight from RFC 9162's recursive definition, as the reference.
    fn reference_root(algorithm: HashAlgorithm, leaves: &[Vec<u8>]) -> Digest {
        match leaves.len() {
            0 => algorithm.empty_root(),
            1 => algorithm.leaf_hash(&leaves[0]),
            n => {
                let k = split_point(n as u64) as usize;
                algorithm.node_hash(
                    &reference_root(algorithm, &leaves[..k]),
                    &reference_root(algorithm, &leaves[k..]),
                )
            }
        }
    }

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record {i}").into_bytes()).collect()
    }

    #[test]
    fn roots_match_the_recursive_definition_at_every_size() {
        for algorithm in [HashAlgorithm::Sha256, HashAlgorithm::Blake3] {
            let leaves = records(70);
            let mut tree = MemoryTree::new(algorithm, MemoryNodeStore::new());
            assert_eq!(tree.root(), algorithm.empty_root());
            for (i, leaf) in leaves.iter().enumerate() {
                tree.append(leaf).expect("append");
                assert_eq!(tree.root(), reference_root(algorithm, &leaves[..=i]), "size {}", i + 1);
            }
            for size in 0..=70u64 {
                assert_eq!(
                    tree.root_at(size).expect("root_at"),
                    reference_root(algorithm, &leaves[..size as usize])
                );
            }
            assert!(tree.root_at(71).is_err());
        }
    }

    #[test]
    fn the_unrolled_current_size_path_equals_the_split_path() {
        let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
        for n in 1..=70u64 {
            tree.append(&n.to_be_bytes()).expect("append");
            for index in 0..n {
                assert_eq!(
                    tree.inclusion_proof_at_current_size(index).expect("fast"),
                    tree.inclusion_proof_by_splitting(index, n).expect("split"),
                    "index {index} of {n}"
                );
            }
        }
    }

    #[test]
    fn every_proof_verifies_and_reopening_keeps_the_root() {
        let leaves = records(37);
        let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
        tree.append_batch(leaves.iter().map(Vec::as_slice)).expect("append");
        for size in 1..=37u64 {
            let root = tree.root_at(size).expect("root");
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).expect("prove");
                let leaf = HashAlgorithm::Sha256.leaf_hash(&leaves[index as usize]);
                verify_inclusion(HashAlgorithm::Sha256, index, size, &leaf, &proof, &root)
                    .expect("inclusion verifies");
            }
            for old_size in 1..=size {
                let proof = tree.consistency_proof(old_size, size).expect("prove");
                let old_root = tree.root_at(old_size).expect("root");
                verify_consistency(HashAlgorithm::Sha256, old_size, size, &old_root, &root, &proof)
                    .expect("consistency verifies");
            }
        }
        let root = tree.root();
        let store = tree.store().clone();
        let reopened = MemoryTree::open(HashAlgorithm::Sha256, 37, store).expect("open");
        assert_eq!(reopened.root(), root);
        assert!(tree.inclusion_proof(37, 37).is_err());
        assert!(tree.consistency_proof(5, 3).is_err());
    }
}
