//! The in-place upgrade of a format v1 store.

use super::*;

impl Store {
    /// Upgrades a v1 store in place: its receipts and countersignatures move to the
    /// sequence-keyed families (`cf::legacy`). Each chunk is written and deleted from the old
    /// family in one synced batch, so an upgrade cut short resumes where it stopped and loses
    /// nothing; the old families are dropped once empty.
    pub(crate) fn upgrade_v1(&mut self) -> Result<(), StoreError> {
        let (mut receipts, mut countersignatures) = (0u64, 0u64);
        tracing::info!(path = %self.path.display(), "upgrading the store from {FORMAT_V1} to {FORMAT}");
        for legacy in [cf::legacy::RECEIPTS, cf::legacy::COUNTERSIGNATURES] {
            if self.db.cf_handle(legacy).is_none() {
                continue;
            }
            loop {
                let chunk = self.scan(legacy, &[], UPGRADE_CHUNK)?;
                if chunk.is_empty() {
                    break;
                }
                let mut batch = WriteBatch::default();
                for (key, value) in &chunk {
                    let (namespace, size) = split_ns_u64_key(key).ok_or_else(|| {
                        self.damaged(format!("a key in {legacy} is not a namespace and a size"))
                    })?;
                    if legacy == cf::legacy::RECEIPTS {
                        let receipt: FederationReceipt = serde_json::from_slice(value)
                            .map_err(|e| self.damaged(format!("undecodable receipt in {legacy}: {e}")))?;
                        let seq = self.next_receipt.fetch_add(1, Ordering::SeqCst).to_be_bytes();
                        batch.put_cf(self.family(cf::RECEIPTS)?, seq, receipt_cbor(&receipt));
                        batch.put_cf(self.family(cf::RECEIPT_INDEX)?, key, seq);
                        receipts += 1;
                    } else {
                        let signature: ciborium::Value = self.decode(legacy, value)?;
                        let seq = self.next_countersignature.fetch_add(1, Ordering::SeqCst).to_be_bytes();
                        batch.put_cf(
                            self.family(cf::COUNTERSIGNATURES)?,
                            seq,
                            cbor(&Given { namespace, size, signature }),
                        );
                        countersignatures += 1;
                    }
                    batch.delete_cf(self.family(legacy)?, key);
                }
                self.write_synced(batch)?;
                tracing::info!(receipts, countersignatures, "store upgrade: entries moved");
            }
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.family(cf::META)?, b"format", FORMAT.as_bytes());
        self.write_synced(batch)?;
        for legacy in [cf::legacy::RECEIPTS, cf::legacy::COUNTERSIGNATURES] {
            if self.db.cf_handle(legacy).is_some() {
                self.db.drop_cf(legacy)?;
            }
        }
        tracing::info!(receipts, countersignatures, "store upgraded to {FORMAT}");
        Ok(())
    }
}
