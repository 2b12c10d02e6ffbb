//! External anchors' states, kept for the anchoring crate as bytes (the store knows their key,
//! not their shape): written synced before a transaction goes out, read back at start.

use rocksdb::WriteBatch;

use crate::{cf, Store, StoreError};

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
