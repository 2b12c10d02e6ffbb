//! Property tests: for random sizes and indices, the incremental tree's proofs verify against
//! its roots, and a proof for one leaf, size or root never verifies for another.

use proptest::prelude::*;
use remembrancer_core::merkle::{verify_consistency, verify_inclusion, MemoryNodeStore, MemoryTree};
use remembrancer_core::HashAlgorithm;

fn tree_of(n: u64, algorithm: HashAlgorithm) -> MemoryTree<MemoryNodeStore> {
    let mut tree = MemoryTree::new(algorithm, MemoryNodeStore::new());
    for i in 0..n {
        tree.append(&i.to_le_bytes()).expect("append");
    }
    tree
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inclusion_proofs_verify_and_bind_the_index(size in 1u64..600, index_seed in any::<u64>(), blake in any::<bool>()) {
        let algorithm = if blake { HashAlgorithm::Blake3 } else { HashAlgorithm::Sha256 };
        let tree = tree_of(size + 20, algorithm);
        let index = index_seed % size;
        let root = tree.root_at(size).expect("root");
        let proof = tree.inclusion_proof(index, size).expect("proof");
        let leaf = algorithm.leaf_hash(&index.to_le_bytes());
        prop_assert!(verify_inclusion(algorithm, index, size, &leaf, &proof, &root).is_ok());
        if size > 1 {
            let other = (index + 1) % size;
            prop_assert!(verify_inclusion(algorithm, other, size, &leaf, &proof, &root).is_err());
        }
        let other_leaf = algorithm.leaf_hash(b"not in the tree");
        prop_assert!(verify_inclusion(algorithm, index, size, &other_leaf, &proof, &root).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_bind_both_roots(new_size in 1u64..600, old_seed in any::<u64>()) {
        let algorithm = HashAlgorithm::Sha256;
        let tree = tree_of(new_size, algorithm);
        let old_size = old_seed % (new_size + 1);
        let proof = tree.consistency_proof(old_size, new_size).expect("proof");
        let old_root = tree.root_at(old_size).expect("root");
        let new_root = tree.root_at(new_size).expect("root");
        prop_assert!(verify_consistency(algorithm, old_size, new_size, &old_root, &new_root, &proof).is_ok());
        if old_size > 0 && old_size < new_size {
            let mut forged = new_root;
            forged[0] ^= 1;
            prop_assert!(verify_consistency(algorithm, old_size, new_size, &old_root, &forged, &proof).is_err());
            let mut forged_old = old_root;
            forged_old[31] ^= 1;
            prop_assert!(verify_consistency(algorithm, old_size, new_size, &forged_old, &new_root, &proof).is_err());
        }
    }
}
