//! Proof verifiers (RFC 9162 §2.1.3.2 and §2.1.4.2) and the spec's JSON proof shape.

use serde::{Deserialize, Serialize};

use crate::hash::{Digest, HashAlgorithm, TaggedHash};

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// Claimed index.
        index: u64,
        /// Claimed size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {actual} hashes; these sizes need {expected}")]
    WrongLength {
        /// Hashes the sizes require.
        expected: usize,
        /// Hashes the proof carries.
        actual: usize,
    },
    /// The recomputed root differs from the claimed one.
    #[error("the proof leads to root {computed}, not the claimed {claimed}")]
    RootMismatch {
        /// Root the proof leads to (hex).
        computed: String,
        /// Root that was claimed (hex).
        claimed: String,
    },
    /// The old size is larger than the new size.
    #[error("old size {old_size} is larger than new size {new_size}")]
    SizesReversed {
        /// Older size.
        old_size: u64,
        /// Newer size.
        new_size: u64,
    },
    /// Equal sizes need equal roots and an empty proof.
    #[error("equal sizes need an empty proof and equal roots")]
    EqualSizesMismatch,
    /// From size 0 only the empty tree's root and an empty proof are accepted.
    #[error("a proof from size 0 must be empty and start from the empty tree's root")]
    FromEmptyMismatch,
    /// A hash is not 32 bytes.
    #[error("a hash is {0} bytes, expected 32")]
    BadHashLength(usize),
    /// Hashes in a JSON proof use different algorithms, or a different one than expected.
    #[error("proof mixes hash algorithms: {0}")]
    AlgorithmMismatch(String),
    /// A JSON proof step claims a position the index and size do not give.
    #[error("path step {step} claims position {claimed:?}, the index and size give {expected:?}")]
    PositionMismatch {
        /// Step number from the leaf (0-based).
        step: usize,
        /// Position in the proof.
        claimed: Position,
        /// Position the index and size give.
        expected: Position,
    },
}

fn root_mismatch(computed: &Digest, claimed: &Digest) -> ProofError {
    ProofError::RootMismatch { computed: hex::encode(computed), claimed: hex::encode(claimed) }
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` with root `root`.
pub fn verify_inclusion(
    algorithm: HashAlgorithm,
    index: u64,
    size: u64,
    leaf_hash: &Digest,
    proof: &[Digest],
    root: &Digest,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(algorithm, index, size, leaf_hash, proof)?;
    if &computed != root {
        return Err(root_mismatch(&computed, root));
    }
    Ok(())
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2), or why it is malformed.
pub fn root_from_inclusion(
    algorithm: HashAlgorithm,
    index: u64,
    size: u64,
    leaf_hash: &Digest,
    proof: &[Digest],
) -> Result<Digest, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_length(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength { expected, actual: proof.len() });
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        inclusion_step(algorithm, &mut f_n, &mut s_n, &mut r, p);
    }
    debug_assert_eq!(s_n, 0, "length check guarantees the walk ends at the root");
    Ok(r)
}

/// One step of RFC 9162 §2.1.3.2's loop: fold the path hash `p` into the running hash `r`.
#[inline(always)]
fn inclusion_step(algorithm: HashAlgorithm, f_n: &mut u64, s_n: &mut u64, r: &mut Digest, p: &Digest) {
    if *f_n & 1 == 1 || *f_n == *s_n {
        *r = algorithm.node_hash(p, r);
        if *f_n & 1 == 0 {
            while *f_n & 1 == 0 && *f_n != 0 {
                *f_n >>= 1;
                *s_n >>= 1;
            }
        }
    } else {
        *r = algorithm.node_hash(r, p);
    }
    *f_n >>= 1;
    *s_n >>= 1;
}

/// One inclusion claim of a batch: leaf `index` with hash `leaf_hash` and its proof.
#[derive(Debug, Clone, Copy)]
pub struct InclusionClaim<'a> {
    /// Leaf index.
    pub index: u64,
    /// Leaf hash H(0x00 || record).
    pub leaf_hash: Digest,
    /// Sibling hashes from the leaf up.
    pub proof: &'a [Digest],
}

/// Proofs walked side by side by [`verify_inclusions`].
const INCLUSION_LANES: usize = 4;

/// Verifies many inclusion proofs against one tree head, with the same verdicts as
/// [`verify_inclusion`] one by one. Each proof is a chain of dependent hashes, so one proof
/// runs at the hash function's latency; walking four proofs side by side lets the processor
/// overlap their hashes and run closer to its throughput. For auditors and nodes checking
/// many records of one checkpoint.
pub fn verify_inclusions(
    algorithm: HashAlgorithm,
    size: u64,
    root: &Digest,
    claims: &[InclusionClaim<'_>],
) -> Vec<Result<(), ProofError>> {
    let mut verdicts = Vec::with_capacity(claims.len());
    for chunk in claims.chunks(INCLUSION_LANES) {
        let mut f_n = [0u64; INCLUSION_LANES];
        let mut s_n = [0u64; INCLUSION_LANES];
        let mut r = [[0u8; 32]; INCLUSION_LANES];
        let mut lane_verdicts: [Result<(), ProofError>; INCLUSION_LANES] = std::array::from_fn(|_| Ok(()));
        let mut steps = 0usize;
        for (lane, claim) in chunk.iter().enumerate() {
            if claim.index >= size {
                lane_verdicts[lane] = Err(ProofError::IndexOutOfRange { index: claim.index, size });
                continue;
            }
            let expected = inclusion_proof_length(claim.index, size);
            if claim.proof.len() != expected {
                lane_verdicts[lane] = Err(ProofError::WrongLength { expected, actual: claim.proof.len() });
                continue;
            }
            f_n[lane] = claim.index;
            s_n[lane] = size - 1;
            r[lane] = claim.leaf_hash;
            steps = steps.max(expected);
        }
        for step in 0..steps {
            for (lane, claim) in chunk.iter().enumerate() {
                if lane_verdicts[lane].is_ok() && step < claim.proof.len() {
                    inclusion_step(
                        algorithm,
                        &mut f_n[lane],
                        &mut s_n[lane],
                        &mut r[lane],
                        &claim.proof[step],
                    );
                }
            }
        }
        for (lane, verdict) in lane_verdicts.into_iter().enumerate().take(chunk.len()) {
            verdicts.push(verdict.and_then(|()| {
                if &r[lane] == root {
                    Ok(())
                } else {
                    Err(root_mismatch(&r[lane], root))
                }
            }));
        }
    }
    verdicts
}

/// Number of hashes in an inclusion proof: the path length from leaf `index` to the root.
pub fn inclusion_proof_length(index: u64, size: u64) -> usize {
    // The proof has one hash per bit where index and size-1 differ at or below their top
    // differing bit, plus the right-edge levels above it (RFC 9162 §2.1.3.2's loop, counted).
    let inner = 64 - (index ^ (size - 1)).leading_zeros() as usize;
    let border = index.checked_shr(inner as u32).unwrap_or(0).count_ones() as usize;
    inner + border
}

/// Verifies that the tree of `new_size` with `new_root` extends the tree of `old_size` with
/// `old_root` (RFC 9162 §2.1.4.2).
///
/// Rule chosen for size 0 (documented in ARCHITECTURE.md): as the C2SP witness protocol does,
/// a proof from size 0 is accepted when it is empty and `old_root` is the empty tree's root.
/// transparency-dev/merkle rejects every proof from size 0; its one vector that tests this is
/// marked as a known divergence in our vector test.
pub fn verify_consistency(
    algorithm: HashAlgorithm,
    old_size: u64,
    new_size: u64,
    old_root: &Digest,
    new_root: &Digest,
    proof: &[Digest],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesReversed { old_size, new_size });
    }
    if old_size == 0 {
        let empty = algorithm.empty_root();
        if !proof.is_empty() || *old_root != empty || (new_size == 0 && *new_root != empty) {
            return Err(ProofError::FromEmptyMismatch);
        }
        return Ok(());
    }
    if old_size == new_size {
        if !proof.is_empty() || old_root != new_root {
            return Err(ProofError::EqualSizesMismatch);
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength { expected: 1, actual: 0 });
    }
    // When old_size is a power of two the old root is itself the first node of the path.
    let mut f_n = old_size - 1;
    let mut s_n = new_size - 1;
    let shift = f_n.trailing_ones();
    f_n >>= shift;
    s_n >>= shift;
    let (first, rest) = if old_size.is_power_of_two() { (old_root, proof) } else { (&proof[0], &proof[1..]) };
    let expected_rest = consistency_rest_length(f_n, s_n);
    if rest.len() != expected_rest {
        let expected = expected_rest + usize::from(!old_size.is_power_of_two());
        return Err(ProofError::WrongLength { expected, actual: proof.len() });
    }
    let mut f_r = *first;
    let mut s_r = *first;
    for c in rest {
        if f_n & 1 == 1 || f_n == s_n {
            f_r = algorithm.node_hash(c, &f_r);
            s_r = algorithm.node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = algorithm.node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if &f_r != old_root {
        return Err(root_mismatch(&f_r, old_root));
    }
    if &s_r != new_root {
        return Err(root_mismatch(&s_r, new_root));
    }
    Ok(())
}

/// [`verify_consistency`] over untyped byte strings, as proofs arrive from outside: equal
/// sizes compare the roots as given (any length, as transparency-dev does); everything else
/// needs 32-byte hashes.
pub fn verify_consistency_bytes(
    algorithm: HashAlgorithm,
    old_size: u64,
    new_size: u64,
    old_root: &[u8],
    new_root: &[u8],
    proof: &[&[u8]],
) -> Result<(), ProofError> {
    if old_size == new_size && old_size != 0 {
        if !proof.is_empty() || old_root != new_root {
            return Err(ProofError::EqualSizesMismatch);
        }
        return Ok(());
    }
    let to_digest = |bytes: &[u8]| -> Result<Digest, ProofError> {
        bytes.try_into().map_err(|_| ProofError::BadHashLength(bytes.len()))
    };
    let hashes = proof.iter().map(|h| to_digest(h)).collect::<Result<Vec<_>, _>>()?;
    verify_consistency(algorithm, old_size, new_size, &to_digest(old_root)?, &to_digest(new_root)?, &hashes)
}

/// How many hashes the consistency loop consumes from `(f_n, s_n)` until `s_n` reaches 0.
fn consistency_rest_length(mut f_n: u64, mut s_n: u64) -> usize {
    let mut count = 0;
    while s_n != 0 {
        // Same walk as the verification loop: at a left turn on the right edge, skip the
        // levels where the old tree has no node.
        if f_n == s_n && f_n & 1 == 0 {
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        }
        f_n >>= 1;
        s_n >>= 1;
        count += 1;
    }
    count
}

/// Side on which a path hash joins the running hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// The path hash is the left child.
    Left,
    /// The path hash is the right child.
    Right,
}

/// One step of a JSON inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathStep {
    /// Side of the sibling hash.
    pub position: Position,
    /// The sibling hash.
    pub hash: TaggedHash,
}

/// An inclusion proof in the spec's JSON shape (`root`, `path[{position, hash}]`, `leaf`),
/// with the index and size that make it checkable by RFC 9162's algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofJson {
    /// Root of the tree at `tree_size`.
    pub root: TaggedHash,
    /// Sibling hashes from the leaf up.
    pub path: Vec<PathStep>,
    /// Leaf hash H(0x00 || record).
    pub leaf: TaggedHash,
    /// Index of the leaf (0-based).
    pub leaf_index: u64,
    /// Size of the tree the proof is against.
    pub tree_size: u64,
}

/// Positions of the path hashes for leaf `index` in a tree of `size`.
pub fn inclusion_positions(index: u64, size: u64) -> Vec<Position> {
    let mut positions = Vec::new();
    if index >= size {
        return positions;
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    while s_n != 0 {
        if f_n & 1 == 1 || f_n == s_n {
            positions.push(Position::Left);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            positions.push(Position::Right);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    positions
}

impl InclusionProofJson {
    /// Renders a proof in the JSON shape.
    pub fn new(
        algorithm: HashAlgorithm,
        index: u64,
        size: u64,
        leaf_hash: Digest,
        proof: &[Digest],
        root: Digest,
    ) -> Self {
        let positions = inclusion_positions(index, size);
        InclusionProofJson {
            root: TaggedHash::new(algorithm, root),
            path: proof
                .iter()
                .zip(positions)
                .map(|(hash, position)| PathStep { position, hash: TaggedHash::new(algorithm, *hash) })
                .collect(),
            leaf: TaggedHash::new(algorithm, leaf_hash),
            leaf_index: index,
            tree_size: size,
        }
    }

    /// Checks the proof: one algorithm throughout, positions as the index and size give, and
    /// the path leads from `leaf` to `root`.
    pub fn verify(&self) -> Result<(), ProofError> {
        let algorithm = self.root.algorithm;
        if self.leaf.algorithm != algorithm || self.path.iter().any(|step| step.hash.algorithm != algorithm) {
            return Err(ProofError::AlgorithmMismatch(format!("root is {algorithm}")));
        }
        let expected = inclusion_positions(self.leaf_index, self.tree_size);
        for (step, (claimed, expected)) in
            self.path.iter().map(|s| s.position).zip(expected.iter().copied()).enumerate()
        {
            if claimed != expected {
                return Err(ProofError::PositionMismatch { step, claimed, expected });
            }
        }
        let hashes: Vec<Digest> = self.path.iter().map(|step| step.hash.value).collect();
        verify_inclusion(
            algorithm,
            self.leaf_index,
            self.tree_size,
            &self.leaf.value,
            &hashes,
            &self.root.value,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::store::MemoryNodeStore;
    use crate::merkle::tree::MemoryTree;

    #[test]
    fn batched_verdicts_equal_single_verdicts() {
        let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
        for i in 0..77u32 {
            tree.append(&i.to_be_bytes()).expect("append");
        }
        let size = tree.size();
        let root = tree.root();
        let proofs: Vec<Vec<Digest>> =
            (0..size).map(|i| tree.inclusion_proof(i, size).expect("prove")).collect();
        let mut claims: Vec<InclusionClaim<'_>> = (0..size)
            .map(|i| InclusionClaim {
                index: i,
                leaf_hash: tree.leaf_hash(i).expect("leaf"),
                proof: &proofs[i as usize],
            })
            .collect();
        // Spoil some: a wrong leaf, a short proof, an index out of range, a proof for another leaf.
        claims[3].leaf_hash[0] ^= 1;
        claims[10].proof = &proofs[10][1..];
        claims[20].index = size + 5;
        claims[30].proof = &proofs[31];
        let single: Vec<Result<(), ProofError>> = claims
            .iter()
            .map(|c| verify_inclusion(HashAlgorithm::Sha256, c.index, size, &c.leaf_hash, c.proof, &root))
            .collect();
        assert_eq!(verify_inclusions(HashAlgorithm::Sha256, size, &root, &claims), single);
        assert_eq!(single.iter().filter(|v| v.is_err()).count(), 4);
    }

    #[test]
    fn proof_lengths_match_generated_proofs() {
        let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
        for i in 0..80u32 {
            tree.append(&i.to_be_bytes()).expect("append");
        }
        for size in 1..=80u64 {
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).expect("prove");
                assert_eq!(proof.len(), inclusion_proof_length(index, size), "{index}/{size}");
                assert_eq!(inclusion_positions(index, size).len(), proof.len());
            }
        }
    }

    #[test]
    fn json_proof_rejects_a_swapped_position_and_a_foreign_algorithm() {
        let mut tree = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
        for i in 0..11u32 {
            tree.append(&i.to_be_bytes()).expect("append");
        }
        let proof = tree.inclusion_proof(6, 11).expect("prove");
        let json = InclusionProofJson::new(
            HashAlgorithm::Sha256,
            6,
            11,
            tree.leaf_hash(6).expect("leaf"),
            &proof,
            tree.root(),
        );
        json.verify().expect("valid proof verifies");
        let text = serde_json::to_string(&json).expect("json");
        let back: InclusionProofJson = serde_json::from_str(&text).expect("parse");
        back.verify().expect("round trip verifies");

        let mut swapped = json.clone();
        swapped.path[0].position = match swapped.path[0].position {
            Position::Left => Position::Right,
            Position::Right => Position::Left,
        };
        assert!(matches!(swapped.verify(), Err(ProofError::PositionMismatch { .. })));
        let mut foreign = json.clone();
        foreign.leaf.algorithm = HashAlgorithm::Blake3;
        assert!(matches!(foreign.verify(), Err(ProofError::AlgorithmMismatch(_))));
        let mut wrong_leaf = json;
        wrong_leaf.leaf_index = 5;
        assert!(wrong_leaf.verify().is_err());
    }
}
