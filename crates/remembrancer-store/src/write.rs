//! Writes: the engine's `Persist` outputs as one batch (synced or not), after checking every
//! checkpoint against the last one stored; owned namespaces declared; scores saved.

use super::*;

impl Store {
    /// Declares a namespace this node owns, with its hash algorithm.
    pub fn add_owned(&self, namespace: &str, algorithm: HashAlgorithm) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.family(cf::OWNED)?, ns_key(namespace), algorithm.name().as_bytes());
        self.write_synced(batch)
    }

    /// Writes everything the engine asked to persist for one input as one atomic, synced
    /// write batch. Returns once the data is on disk.
    pub fn persist(&self, records: &[Persist]) -> Result<(), StoreError> {
        self.persist_with(records, true)
    }

    /// [`Store::persist`], synced or not. Unsynced, the batch is in RocksDB's log when this
    /// returns, so it survives the process (a kill -9) but not the machine until the next
    /// synced write, which makes it durable with everything written before it (RocksDB
    /// syncs every log with unsynced data). For what nobody has been told about yet.
    ///
    /// A checkpoint is checked against the last one stored for its namespace first, whatever
    /// the engine believes: a smaller size, or another root at a stored size, fails the whole
    /// write with [`StoreError::WouldEquivocate`].
    pub fn persist_with(&self, records: &[Persist], sync: bool) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.check_checkpoints(records)?;
        let mut batch = WriteBatch::default();
        for record in records {
            match record {
                Persist::Records { namespace, first_index, records } => {
                    let family = self.family(cf::RECORDS)?;
                    for (offset, record) in records.iter().enumerate() {
                        batch.put_cf(family, ns_u64_key(namespace, first_index + offset as u64), record);
                    }
                }
                Persist::Anchored { namespace, size, note } => {
                    batch.put_cf(
                        self.family(cf::CHECKPOINTS)?,
                        ns_u64_key(namespace, *size),
                        note.as_bytes(),
                    );
                }
                Persist::Countersigned { namespace, size, note, signature } => {
                    batch.put_cf(self.family(cf::WITNESSED)?, ns_key(namespace), note.as_bytes());
                    let seq = self.next_countersignature.fetch_add(1, Ordering::SeqCst);
                    batch.put_cf(
                        self.family(cf::COUNTERSIGNATURES)?,
                        seq.to_be_bytes(),
                        cbor(&Given { namespace: namespace.as_str(), size: *size, signature }),
                    );
                }
                Persist::FinalReceipt(receipt) => {
                    let seq = self.next_receipt.fetch_add(1, Ordering::SeqCst).to_be_bytes();
                    batch.put_cf(self.family(cf::RECEIPTS)?, seq, receipt_cbor(receipt));
                    batch.put_cf(
                        self.family(cf::RECEIPT_INDEX)?,
                        ns_u64_key(&receipt.namespace, receipt.tree_size),
                        seq,
                    );
                }
                Persist::Evidence(evidence) => {
                    let seq = self.next_evidence.fetch_add(1, Ordering::SeqCst);
                    batch.put_cf(self.family(cf::EVIDENCE)?, seq.to_be_bytes(), cbor(evidence));
                }
                Persist::ClaimEvidence(evidence) => {
                    let key = remembrancer_core::claims::claim_key(&evidence.message);
                    batch.put_cf(self.family(cf::CLAIM_EVIDENCE)?, key, cbor(evidence));
                }
                Persist::Audit(entry) => {
                    let seq = self.next_audit.fetch_add(1, Ordering::SeqCst);
                    batch.put_cf(self.family(cf::AUDIT)?, seq.to_be_bytes(), cbor(entry));
                }
                Persist::RegistryApplied(content) => {
                    batch.put_cf(
                        self.family(cf::REGISTRY)?,
                        content.proposal.base_version.to_be_bytes(),
                        cbor(content.as_ref()),
                    );
                }
            }
        }
        self.write(batch, sync)
    }

    /// Refuses the checkpoints among `records` that contradict the last one signed for their
    /// namespace, in the store or earlier in `records`. One read of the last stored
    /// checkpoint per namespace and write (one seek, in RocksDB's memtable or block cache).
    pub(crate) fn check_checkpoints(&self, records: &[Persist]) -> Result<(), StoreError> {
        let mut last: Vec<(&str, u64, remembrancer_core::Digest)> = Vec::new();
        for record in records {
            let Persist::Anchored { namespace, size, note } = record else { continue };
            let root = self.note_checkpoint(namespace, note)?.root;
            let before = match last.iter().position(|(ns, _, _)| ns == namespace) {
                Some(at) => Some(last.swap_remove(at)),
                None => self
                    .last_checkpoint(namespace)?
                    .map(|(size, note)| {
                        Ok::<_, StoreError>((
                            namespace.as_str(),
                            size,
                            self.note_checkpoint(namespace, &note)?.root,
                        ))
                    })
                    .transpose()?,
            };
            if let Some((_, signed_size, signed_root)) = before {
                let signed = if *size < signed_size {
                    Some(format!("the larger size {signed_size}"))
                } else if *size == signed_size && root != signed_root {
                    Some(format!("another root at size {signed_size}"))
                } else {
                    None
                };
                if let Some(signed) = signed {
                    return Err(StoreError::WouldEquivocate {
                        path: self.path.clone(),
                        namespace: namespace.clone(),
                        size: *size,
                        signed,
                    });
                }
            }
            last.push((namespace, *size, root));
        }
        Ok(())
    }

    /// The checkpoint of a signed note of `namespace`.
    pub(crate) fn note_checkpoint(&self, namespace: &str, note: &str) -> Result<Checkpoint, StoreError> {
        Note::parse(note.as_bytes())
            .ok()
            .and_then(|n| Checkpoint::parse_body(&n.text).ok())
            .ok_or_else(|| self.damaged(format!("{namespace}: unparsable checkpoint")))
    }

    /// Saves peer scores (the node does this now and then; scores are local, advisory).
    pub fn save_scores<'a>(
        &self,
        scores: impl IntoIterator<Item = (&'a String, &'a PeerScore)>,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let family = self.family(cf::SCORES)?;
        for (did, score) in scores {
            batch.put_cf(family, did.as_bytes(), cbor(score));
        }
        self.db.write(batch)?;
        Ok(())
    }
}
