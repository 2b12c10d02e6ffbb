//! Restoring an engine from what its host stored, at start and before `Input::Start`: the
//! registry updates, each owned namespace's records and last signed checkpoint, the latest
//! receipts, what it last countersigned, evidence and scores.

use super::*;

impl<S: NodeStore> Engine<S> {
    /// Restores an owned namespace's tree from its stored records, in index order (at start,
    /// before `Input::Start`; in chunks, one call each). Returns the tree's size. The records
    /// came from the host's store, so the tree may drop what it can read back (as after
    /// [`Input::Stored`]).
    pub fn restore_records<'a>(
        &mut self,
        namespace: &str,
        algorithm: HashAlgorithm,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<u64, TreeError> {
        let owned = self.owned_entry(namespace, algorithm);
        owned.tree.append_batch(records)?;
        let size = owned.tree.size();
        owned.tree.store_mut().records_readable(size);
        Ok(size)
    }

    /// Restores the last checkpoint this node signed for a namespace it owns, from its store
    /// (at start, after the namespace's records): from then on nothing is signed for the
    /// namespace at a smaller size or with another root at that size, and its next commit
    /// first checks the tree's root there. A namespace whose records were not restored gets
    /// an empty tree, which that check refuses.
    pub fn restore_signed(&mut self, namespace: &str, algorithm: HashAlgorithm, size: u64, root: Digest) {
        let owned = self.owned_entry(namespace, algorithm);
        owned.guard.restore_signed(size, root);
    }

    /// Restores a stored final receipt (the latest per namespace wins). A receipt of an owned
    /// namespace that this node anchored and its tree lacks or contradicts halts the
    /// namespace (see [`SignRefusal::FederationDisagrees`]).
    pub fn restore_final(&mut self, receipt: Arc<FederationReceipt>) {
        let namespace = receipt.namespace.clone();
        if self.finals.get(&namespace).is_some_and(|r| r.tree_size >= receipt.tree_size) {
            return;
        }
        let mut ignored = Vec::new();
        self.check_own_receipt(&receipt, &mut ignored);
        if let Some(owned) = self.owned.get_mut(&namespace) {
            owned.finalized = Some((receipt.tree_size, receipt.anchor.batch_root.value));
        }
        self.finals.insert(namespace, receipt);
    }

    /// Restores what this node last countersigned for a namespace (the owner's signed note),
    /// so that a restarted witness never countersigns a second root for a size.
    pub fn restore_witnessed(&mut self, note_text: &str) -> Result<(), String> {
        let note = Note::parse(note_text.as_bytes()).map_err(|e| e.to_string())?;
        let checkpoint = Checkpoint::parse_body(&note.text).map_err(|e| e.to_string())?;
        let newer = self.witnessed.get(&checkpoint.namespace).is_none_or(|w| w.size <= checkpoint.size);
        if newer {
            self.witnessed.insert(
                checkpoint.namespace.clone(),
                Witnessed {
                    size: checkpoint.size,
                    root: checkpoint.root,
                    note: note_text.to_string(),
                    verified_under: None,
                },
            );
        }
        Ok(())
    }

    /// Re-applies a stored registry update that had reached quorum (in version order).
    pub fn restore_registry(&mut self, content: RegistryContent) -> Result<(), String> {
        if content.proposal.base_version < self.registry.version {
            return Ok(());
        }
        let next = content.proposal.apply(&self.registry).map_err(|e| e.to_string())?;
        self.install_registry(next, content);
        Ok(())
    }

    /// Restores a peer's score.
    pub fn restore_score(&mut self, did: &str, score: PeerScore) {
        self.scores.insert(did.to_string(), score);
    }

    /// Restores a claim evidence record.
    pub fn restore_claim_evidence(&mut self, evidence: ClaimEvidence) {
        let key = crate::claims::claim_key(&evidence.message);
        if self.evidence_seen.insert(key) && self.claim_evidence.len() < EVIDENCE_MAX {
            self.claim_evidence.push(evidence);
        }
    }

    /// Restores an evidence record.
    pub fn restore_evidence(&mut self, evidence: Evidence) {
        let key = evidence_key(&evidence.first, &evidence.second);
        if self.evidence_seen.insert(key) && self.evidence.len() < EVIDENCE_MAX {
            self.evidence.push(evidence);
        }
    }
}
