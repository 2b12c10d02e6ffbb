//! The owner's promise: an honest node never signs two roots for one size of a namespace it
//! owns, nor a size smaller than one it signed, whatever happened to it in between (a kill -9,
//! a registry edited between runs, a data directory restored from an old copy). The engine
//! checks every checkpoint it is about to sign against the last one it signed, which the host
//! restores from its store at start; a namespace that fails the check is halted: nothing more
//! is signed for it and its commits are refused, with the reason, until an operator acts.
//! Refusing to sign is always safer than equivocating.

use crate::hash::Digest;
use crate::merkle::{MemoryTree, NodeStore, TreeError};

/// Why this node will not sign a checkpoint of a namespace it owns, nor take more records for
/// it. Each says what the operator can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignRefusal {
    /// The tree is smaller than a checkpoint this node signed: records it acknowledged are
    /// missing, and new ones would take their indices.
    #[error(
        "{namespace}: this node signed a checkpoint at size {signed}, but its tree holds {size} records; \
         it will not sign a smaller size nor reuse those indices. Appends to {namespace} are stopped: \
         restart the node on the data directory that signed size {signed}"
    )]
    BehindSigned {
        /// The namespace.
        namespace: String,
        /// The tree's size.
        size: u64,
        /// The size of the last checkpoint this node signed.
        signed: u64,
    },
    /// The tree's root at a size this node signed is not the root it signed there: signing
    /// now would equivocate.
    #[error(
        "{namespace}: this node signed another root at size {signed}; its tree (size {size}) has a \
         different one there, and signing it would equivocate. Appends to {namespace} are stopped: \
         restart the node on the data directory that signed size {signed}"
    )]
    OtherRoot {
        /// The namespace.
        namespace: String,
        /// The tree's size.
        size: u64,
        /// The size of the last checkpoint this node signed.
        signed: u64,
    },
    /// The federation holds a final receipt of this node's own namespace, anchored by this
    /// node, that its store lacks or contradicts: the data directory lost what it signed.
    #[error(
        "{namespace}: the federation holds a receipt at size {final_size} that this node anchored, \
         which its store {what} (tree size {size}). Appends to {namespace} are stopped: restore the \
         data directory that signed size {final_size}; do not sign over it"
    )]
    FederationDisagrees {
        /// The namespace.
        namespace: String,
        /// The tree's size.
        size: u64,
        /// The size of the federation's final receipt.
        final_size: u64,
        /// "lacks" or "contradicts".
        what: &'static str,
    },
}

impl SignRefusal {
    /// The namespace it is about.
    pub fn namespace(&self) -> &str {
        match self {
            SignRefusal::BehindSigned { namespace, .. }
            | SignRefusal::OtherRoot { namespace, .. }
            | SignRefusal::FederationDisagrees { namespace, .. } => namespace,
        }
    }
}

/// The last checkpoint this node signed for one of its namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signed {
    /// Its size.
    pub size: u64,
    /// Its root.
    pub root: Digest,
    /// Whether the tree's root at `size` was found equal to `root`. A tree only grows, so
    /// once true it stays true: the check reads an older root once per restore, not per
    /// signature.
    pub checked: bool,
}

/// What may stop an owner from signing its tree at its current size: its last signed
/// checkpoint, and the reason it halted, if it did.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    /// The last checkpoint signed, as the store had it at start or as signed since.
    pub signed: Option<Signed>,
    /// Set once a check failed: nothing is signed or committed for the namespace after.
    pub halted: Option<SignRefusal>,
}

impl Guard {
    /// Why `tree` (of `namespace`) must not be signed now, or grow: halted, smaller than the
    /// last signed size, or a different root at that size. Marks the signed root checked
    /// when it matches.
    pub fn refusal<S: NodeStore>(
        &mut self,
        namespace: &str,
        tree: &MemoryTree<S>,
    ) -> Result<Option<SignRefusal>, TreeError> {
        if let Some(halted) = &self.halted {
            return Ok(Some(halted.clone()));
        }
        let Some(signed) = self.signed.as_mut() else { return Ok(None) };
        let size = tree.size();
        if size < signed.size {
            return Ok(Some(SignRefusal::BehindSigned {
                namespace: namespace.to_string(),
                size,
                signed: signed.size,
            }));
        }
        if !signed.checked {
            if tree.root_at(signed.size)? != signed.root {
                return Ok(Some(SignRefusal::OtherRoot {
                    namespace: namespace.to_string(),
                    size,
                    signed: signed.size,
                }));
            }
            signed.checked = true;
        }
        Ok(None)
    }

    /// Records a checkpoint signed now from the tree itself (its root is the tree's).
    pub fn signed_now(&mut self, size: u64, root: Digest) {
        self.signed = Some(Signed { size, root, checked: true });
    }

    /// Restores the last checkpoint signed, as the host read it from its store (the larger
    /// size wins); its root is checked against the tree before anything is signed.
    pub fn restore_signed(&mut self, size: u64, root: Digest) {
        if self.signed.is_none_or(|signed| signed.size < size || (signed.size == size && signed.root != root))
        {
            self.signed = Some(Signed { size, root, checked: false });
        }
    }

    /// Halts the namespace; true when it was not halted before (the host is told once).
    pub fn halt(&mut self, refusal: SignRefusal) -> bool {
        let first = self.halted.is_none();
        if first {
            self.halted = Some(refusal);
        }
        first
    }
}
