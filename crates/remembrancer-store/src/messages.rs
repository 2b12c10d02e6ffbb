//! Cross-namespace messaging state, kept for the node as bytes under its keys (the store knows
//! the keys, not the shapes): the outbox and inbox entries and the lanes' counters, written
//! synced, since a message's sequence and what became of it must survive a kill.

use rocksdb::WriteBatch;

use crate::{cf, Store, StoreError};

/// A stored entry: its key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Most entries read back under one prefix at once.
pub const MESSAGES_LISTED_MAX: usize = 10_000;

impl Store {
    /// Stores `value` under `key`, synced: on disk when this returns.
    pub fn put_message(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.family(cf::MESSAGES)?, key, value);
        self.write_synced(batch)
    }

    /// Removes the entry under `key`, synced.
    pub fn delete_message(&self, key: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.family(cf::MESSAGES)?, key);
        self.write_synced(batch)
    }

    /// The value under `key`.
    pub fn message(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.family(cf::MESSAGES)?, key)?)
    }

    /// The entries under `prefix`, by key (at most [`MESSAGES_LISTED_MAX`]).
    pub fn messages(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        Ok(self
            .scan(cf::MESSAGES, prefix, MESSAGES_LISTED_MAX)?
            .into_iter()
            .map(|(key, value)| (key.into_vec(), value.into_vec()))
            .collect())
    }
}
