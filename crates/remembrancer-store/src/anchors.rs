//! External anchors' states, kept for the anchoring crate as bytes (the store knows their key,
//! not their shape): written synced before a transaction goes out, read back at start.

use remembrancer_core::message::EpochAnchorContent;
use rocksdb::WriteBatch;

use crate::{cf, Store, StoreError};

/// Most epoch anchors read back at once (newest first): a day of 10-second epochs, and more.
pub const EPOCH_ANCHORS_LISTED_MAX: usize = 10_000;

/// Most anchor states read back at once.
pub const ANCHORS_LISTED_MAX: usize = 100_000;

impl Store {
    /// Stores an anchor's state under `key`, synced: it is on disk when this returns.
    pub fn put_anchor(&self, key: &[u8], state: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.family(cf::ANCHORS)?, key, state);
        self.write_synced(batch)
    }

    /// Every anchor state stored (at most [`ANCHORS_LISTED_MAX`]), by key.
    pub fn anchors(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .scan(cf::ANCHORS, &[], ANCHORS_LISTED_MAX)?
            .into_iter()
            .map(|(_, value)| value.into_vec())
            .collect())
    }
}

impl Store {
    /// Stores the winning anchor of its epoch and who made it (a later winner replaces it).
    pub fn put_epoch_anchor(&self, content: &EpochAnchorContent, anchorer: &str) -> Result<(), StoreError> {
        let mut value = Vec::new();
        ciborium::into_writer(&(content, anchorer), &mut value)
            .map_err(|e| self.damaged(format!("an epoch anchor could not be encoded: {e}")))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.family(cf::EPOCH_ANCHORS)?, content.epoch.to_be_bytes(), value);
        self.write(batch, false)
    }

    /// The epoch anchors stored, newest epoch first (at most [`EPOCH_ANCHORS_LISTED_MAX`]).
    pub fn epoch_anchors(&self) -> Result<Vec<(EpochAnchorContent, String)>, StoreError> {
        let mut entries = Vec::new();
        let iter = self.db.iterator_cf(self.family(cf::EPOCH_ANCHORS)?, rocksdb::IteratorMode::End);
        for item in iter.take(EPOCH_ANCHORS_LISTED_MAX) {
            let (_, value) = item?;
            entries.push(self.decode::<(EpochAnchorContent, String)>(cf::EPOCH_ANCHORS, &value)?);
        }
        Ok(entries)
    }
}
