//! The memory tree: an append-only RFC 9162 Merkle tree per namespace, its proofs and verifiers.

pub mod pruned;
pub mod store;
pub mod tree;
pub mod verify;

pub use pruned::{LeafSource, PrunedNodeStore};
pub use store::{MemoryNodeStore, NodeStore, StoreError};
pub use tree::{MemoryTree, TreeError};
pub use verify::{
    inclusion_positions, inclusion_proof_length, verify_consistency, verify_consistency_bytes,
    verify_inclusion, verify_inclusions, InclusionClaim, InclusionProofJson, PathStep, Position, ProofError,
};
