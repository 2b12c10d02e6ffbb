//! Restore at start: every namespace the store owns or holds records or signed checkpoints of,
//! its tree rebuilt and checked against its last signed checkpoint, then receipts, what was
//! countersigned, evidence and scores.

use super::*;

impl Store {
    /// The namespaces with entries in `family`, whose keys are `ns || u64`: one seek per
    /// namespace, past all of its keys (a length-prefixed `ns` keeps each namespace's keys
    /// together).
    pub(crate) fn namespaces_in(&self, family: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut from = Vec::new();
        loop {
            let mut iter =
                self.db.iterator_cf(self.family(family)?, IteratorMode::From(&from, Direction::Forward));
            let Some(item) = iter.next() else { break };
            let (key, _) = item?;
            let (namespace, _) = split_ns_u64_key(&key)
                .ok_or_else(|| self.damaged(format!("a key in {family} is not a namespace and a number")))?;
            from = ns_u64_key(&namespace, u64::MAX);
            from.push(0);
            out.push(namespace);
        }
        Ok(out)
    }

    /// Rebuilds `engine` from the store and checks it. Every namespace this node owns a tree
    /// of is restored: those declared owned, and every one it stored records or signed a
    /// checkpoint for, whatever the registry lists now (a member may anchor a namespace no
    /// member lists, and a registry may change between runs); the ones found only so are
    /// declared owned from then on. Each tree is rebuilt from its records, its root must
    /// equal the root of the last checkpoint this node signed, and the engine is given that
    /// checkpoint, which it never contradicts.
    pub fn restore<S: NodeStore>(&self, engine: &mut Engine<S>) -> Result<Restored, StoreError> {
        let mut restored = Restored::default();
        for content in self.registry_chain()? {
            engine.restore_registry(content).map_err(|e| self.damaged(format!("registry update: {e}")))?;
            restored.registry_updates += 1;
        }
        let mut namespaces: BTreeMap<String, Option<HashAlgorithm>> =
            self.owned()?.into_iter().map(|(namespace, algorithm)| (namespace, Some(algorithm))).collect();
        for family in [cf::CHECKPOINTS, cf::RECORDS] {
            for namespace in self.namespaces_in(family)? {
                namespaces.entry(namespace).or_insert(None);
            }
        }
        for (namespace, declared) in namespaces {
            let last = match self.last_checkpoint(&namespace)? {
                Some((size, note)) => Some((size, self.note_checkpoint(&namespace, &note)?)),
                None => None,
            };
            // Undeclared: the algorithm its checkpoints name, else the engine's (the one its
            // records were hashed with when they were committed).
            let algorithm = declared
                .or(last.as_ref().map(|(_, checkpoint)| checkpoint.anchor.algorithm))
                .unwrap_or(engine.algorithm());
            if declared.is_none() {
                tracing::info!(%namespace, "restoring a namespace no member listed when it was written (its records and checkpoints are stored): declared owned from now on");
                self.add_owned(&namespace, algorithm)?;
            }
            let size = self.for_each_chunk(&namespace, |chunk| {
                engine
                    .restore_records(&namespace, algorithm, chunk.iter().map(Vec::as_slice))
                    .map_err(|e| e.to_string())?;
                Ok(())
            })?;
            if size == 0 {
                engine.restore_records(&namespace, algorithm, []).map_err(|e| self.damaged(e.to_string()))?;
            }
            let signed = match last {
                Some((checkpoint_size, checkpoint)) => {
                    let tree = engine
                        .tree(&namespace)
                        .ok_or_else(|| self.damaged(format!("{namespace}: no tree after restore")))?;
                    let root = tree.root_at(checkpoint_size).map_err(|_| {
                        self.damaged(format!(
                            "{namespace}: {size} records, but this node signed a checkpoint at size {checkpoint_size}"
                        ))
                    })?;
                    if root != checkpoint.root {
                        return Err(self.damaged(format!(
                            "{namespace}: the root of the stored records at size {checkpoint_size} differs from the signed checkpoint"
                        )));
                    }
                    engine.restore_signed(&namespace, algorithm, checkpoint_size, checkpoint.root);
                    checkpoint_size
                }
                None => 0,
            };
            restored.namespaces.push((namespace, size, signed));
        }
        for receipt in self.latest_receipts()? {
            engine.restore_final(Arc::new(receipt));
            restored.receipts += 1;
        }
        for item in self.db.iterator_cf(self.family(cf::WITNESSED)?, IteratorMode::Start) {
            let (_, note) = item?;
            let note = String::from_utf8(note.to_vec())
                .map_err(|_| self.damaged("a countersigned note is not UTF-8".to_string()))?;
            engine.restore_witnessed(&note).map_err(|e| self.damaged(format!("countersigned note: {e}")))?;
        }
        for evidence in self.evidence()? {
            engine.restore_evidence(evidence);
        }
        for evidence in self.claim_evidence()? {
            engine.restore_claim_evidence(evidence);
        }
        for item in self.db.iterator_cf(self.family(cf::SCORES)?, IteratorMode::Start) {
            let (did, score) = item?;
            let did = String::from_utf8_lossy(&did).into_owned();
            engine.restore_score(&did, self.decode(cf::SCORES, &score)?);
        }
        Ok(restored)
    }

    /// A tree of `namespace` rebuilt from the stored records (for proofs at any size).
    pub fn tree<S: NodeStore>(
        &self,
        namespace: &str,
        algorithm: HashAlgorithm,
        store: S,
    ) -> Result<MemoryTree<S>, StoreError> {
        let mut tree = MemoryTree::new(algorithm, store);
        self.for_each_chunk(namespace, |chunk| {
            tree.append_batch(chunk.iter().map(Vec::as_slice)).map(|_| ()).map_err(|e| e.to_string())
        })?;
        Ok(tree)
    }
}
