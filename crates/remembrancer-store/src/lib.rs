//! RocksDB storage for a Remembrancer node. Every column family and its key and value types
//! are declared here, in one place, with the format version in their names. The engine's
//! `Persist` outputs of one input are written as one atomic, synced write batch, so a kill -9
//! at any moment leaves either all of a commit (records and signed checkpoint) or none of it;
//! at open, the tree of every namespace the node owns or ever stored records or checkpoints of
//! is rebuilt from its records and its root checked against the last checkpoint it signed,
//! and no checkpoint is written that contradicts the last one stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use remembrancer_core::checkpoint::Checkpoint;
use remembrancer_core::engine::{AuditEntry, ClaimEvidence, Engine, Evidence, PeerScore, Persist};
use remembrancer_core::merkle::{pruned, LeafSource, MemoryTree, NodeStore, StoreError as NodeStoreError};
use remembrancer_core::message::{receipt_cbor, receipt_from_cbor, RegistryContent};
use remembrancer_core::note::Note;
use remembrancer_core::receipt::{FederationReceipt, SignatureJson};
use remembrancer_core::HashAlgorithm;
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

mod anchors;
mod messages;
mod restore;
mod upgrade;
mod write;

/// The storage format this code reads and writes.
pub const FORMAT: &str = "remembrancer-store/v2";
/// The earlier format `Store::open` upgrades in place: its receipts and countersignatures
/// were keyed by namespace and size (see [`cf::legacy`]).
pub const FORMAT_V1: &str = "remembrancer-store/v1";

/// Column families, each with its key and value (`ns` = u16 length-prefixed namespace):
pub mod cf {
    /// `meta`: UTF-8 name -> UTF-8 value (`format`, `federation`).
    pub const META: &str = "meta.v1";
    /// `ns || index u64` -> record bytes (owned namespaces).
    pub const RECORDS: &str = "records.v1";
    /// `ns` -> hash algorithm name (`sha256`, `blake3`): the namespaces this node owns.
    pub const OWNED: &str = "owned.v1";
    /// `ns || size u64` -> the checkpoint note this node signed as owner.
    pub const CHECKPOINTS: &str = "checkpoints.v1";
    /// `ns` -> the owner-signed note this node last countersigned (what it must stay
    /// consistent with).
    pub const WITNESSED: &str = "witnessed.v1";
    /// `seq u64` -> CBOR `{namespace, size, signature}`: a cosignature entry this node gave,
    /// in the order given. Keyed by sequence, like the receipts, so that what is written
    /// always lands at the end of the family's key space (see `RECEIPTS`).
    pub const COUNTERSIGNATURES: &str = "countersignatures.v2";
    /// `seq u64` -> federation receipt, CBOR (`message::receipt_cbor`: the spec's JSON
    /// fields, as a `receipt` message carries it), in the order this node stored them; found
    /// through `RECEIPT_INDEX`. A node stores every member's receipts, and
    /// keyed by namespace and size (v1) each flushed file spanned every namespace, so every
    /// compaction rewrote the whole family: under `scripts/bench sustained` 112 MB per node
    /// each minute after 6 minutes, growing with the log, with every node stalling for 4 s.
    /// Keyed by sequence, flushed files follow each other and move down unrewritten.
    pub const RECEIPTS: &str = "receipts.v2";
    /// `ns || size u64` -> `seq u64`, the receipt's key in `RECEIPTS` (about 40 bytes an entry
    /// against a receipt's 760 with three signatures: what compaction still rewrites).
    pub const RECEIPT_INDEX: &str = "receipt-index.v1";
    /// `seq u64` -> CBOR evidence record.
    pub const EVIDENCE: &str = "evidence.v1";
    /// `seq u64` -> CBOR audit entry.
    pub const AUDIT: &str = "audit.v1";
    /// `base version u64` -> CBOR registry update that reached quorum, with its signatures.
    pub const REGISTRY: &str = "registry.v1";
    /// `did` -> CBOR peer score.
    pub const SCORES: &str = "scores.v1";
    /// `target || 0 || root` -> an anchor's state (CBOR, `remembrancer-anchor`'s `AnchorState`):
    /// every external anchor this node asked for, open or done.
    pub const ANCHORS: &str = "anchors.v1";
    /// `epoch u64` -> CBOR (epoch anchor, anchorer DID): the winning external anchor of each
    /// epoch, whoever made it: what an anchor proof is built from.
    pub const EPOCH_ANCHORS: &str = "epoch-anchors.v1";
    /// SHA-256 of the claim -> CBOR evidence of an epoch anchor claimed out of turn.
    pub const CLAIM_EVIDENCE: &str = "claim-evidence.v1";
    /// Cross-namespace messaging: `o/<id>` outbox entries, `i/<id>` inbox entries, lane
    /// counters (the node's CBOR; `messages.rs`).
    pub const MESSAGES: &str = "messages.v1";
    /// Every column family.
    pub const ALL: [&str; 16] = [
        META,
        RECORDS,
        OWNED,
        CHECKPOINTS,
        WITNESSED,
        COUNTERSIGNATURES,
        RECEIPTS,
        RECEIPT_INDEX,
        EVIDENCE,
        AUDIT,
        REGISTRY,
        SCORES,
        ANCHORS,
        EPOCH_ANCHORS,
        CLAIM_EVIDENCE,
        MESSAGES,
    ];

    /// Families of format v1 that `Store::open` moves into their successors, then drops.
    pub mod legacy {
        /// `ns || size u64` -> CBOR cosignature entry: moved to `COUNTERSIGNATURES`.
        pub const COUNTERSIGNATURES: &str = "countersignatures.v1";
        /// `ns || size u64` -> federation receipt JSON: moved to `RECEIPTS` and
        /// `RECEIPT_INDEX`.
        pub const RECEIPTS: &str = "receipts.v1";
    }
}

/// Most receipts one listing returns.
pub const RECEIPTS_LISTED_MAX: usize = 10_000;
/// Most audit entries one listing returns.
pub const AUDIT_LISTED_MAX: usize = 10_000;
/// Records held in memory at once while a tree is rebuilt.
pub const RECORDS_PER_CHUNK: usize = 65_536;
/// Entries moved per write batch when a v1 store is upgraded.
const UPGRADE_CHUNK: usize = 4096;
/// Largest stored value read back (a record, a receipt, a note).
pub const VALUE_BYTES_MAX: usize = 4 << 20;
/// Memtable budget of a node's RocksDB. Under `scripts/bench sustained` five nodes held
/// 505-510 MiB with 64 MB and 318-334 MiB with 16 MB, at the same receipts per second (A/B,
/// 794-820 against 803-826).
const MEMTABLE_BYTES: usize = 16 << 20;
/// The block cache all column families share, index and filter blocks included.
pub const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// What can go wrong with the node's data directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB refused to open the directory.
    #[error("cannot open the store at {path}: {source} (is another node running on this data directory?)")]
    Open {
        /// The directory.
        path: PathBuf,
        /// RocksDB's reason.
        source: rocksdb::Error,
    },
    /// The directory holds another format.
    #[error("{path} holds store format {found:?}, this node reads {FORMAT:?}: use a new data directory")]
    Format {
        /// The directory.
        path: PathBuf,
        /// The format found.
        found: String,
    },
    /// The directory belongs to another federation.
    #[error("{path} holds data of federation {found:?}, not {expected:?}: use a new data directory")]
    Federation {
        /// The directory.
        path: PathBuf,
        /// The federation found.
        found: String,
        /// The federation configured.
        expected: String,
    },
    /// Stored data contradicts itself (a root that does not match its signed checkpoint,
    /// a gap in the records, an undecodable value).
    #[error(
        "the store at {path} is damaged: {detail}; restore the data directory from a backup or start afresh"
    )]
    Damaged {
        /// The directory.
        path: PathBuf,
        /// What does not hold.
        detail: String,
    },
    /// A checkpoint this node is about to write contradicts the last one it signed for the
    /// namespace, as the store holds it: a smaller size, or another root at the same size.
    /// Nothing of the write is stored, and the node must not send what it signed.
    #[error(
        "refusing to store a checkpoint of {namespace} at size {size}: this node signed {signed} \
         before (in {path}); storing and sending it would equivocate. The node's memory disagrees \
         with its store: restart it, which reloads what it signed from the store"
    )]
    WouldEquivocate {
        /// The directory.
        path: PathBuf,
        /// The namespace.
        namespace: String,
        /// The size of the checkpoint refused.
        size: u64,
        /// What was signed before, in words.
        signed: String,
    },
    /// A read or write failed.
    #[error("store I/O: {0}")]
    Io(#[from] rocksdb::Error),
}

/// A node's RocksDB store.
pub struct Store {
    db: DB,
    path: PathBuf,
    next_evidence: AtomicU64,
    next_audit: AtomicU64,
    next_receipt: AtomicU64,
    next_countersignature: AtomicU64,
}

/// A value of `cf::COUNTERSIGNATURES`.
#[derive(Serialize, serde::Deserialize)]
struct Given<N, S> {
    namespace: N,
    size: u64,
    signature: S,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// `ns` key: u16 big-endian length, then the namespace bytes.
fn ns_key(namespace: &str) -> Vec<u8> {
    let bytes = namespace.as_bytes();
    let mut key = Vec::with_capacity(2 + bytes.len() + 8);
    key.extend_from_slice(&(bytes.len().min(u16::MAX as usize) as u16).to_be_bytes());
    key.extend_from_slice(&bytes[..bytes.len().min(u16::MAX as usize)]);
    key
}

/// `ns || n` key.
fn ns_u64_key(namespace: &str, n: u64) -> Vec<u8> {
    let mut key = ns_key(namespace);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// The namespace and number of an `ns || n` key.
fn split_ns_u64_key(key: &[u8]) -> Option<(String, u64)> {
    let prefix = ns_prefix(key)?;
    if key.len() != prefix.len() + 8 {
        return None;
    }
    let namespace = std::str::from_utf8(&prefix[2..]).ok()?.to_string();
    Some((namespace, key_u64_suffix(key)?))
}

/// The `ns` part (`ns_key`) that a key begins with.
fn ns_prefix(key: &[u8]) -> Option<&[u8]> {
    let length = u16::from_be_bytes(key.get(..2)?.try_into().ok()?) as usize;
    key.get(..2 + length)
}

fn key_u64_suffix(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The index in a record key of the namespace whose key is `prefix` (`ns_key`); `None` for
/// another namespace's key.
fn record_index(key: &[u8], prefix: &[u8]) -> Option<u64> {
    if key.len() != prefix.len() + 8 || !key.starts_with(prefix) {
        return None;
    }
    key_u64_suffix(key)
}

fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let result = ciborium::into_writer(value, &mut out);
    debug_assert!(result.is_ok(), "writing CBOR to a Vec cannot fail");
    out
}

/// A key and its value, as RocksDB returns them.
type Entry = (Box<[u8]>, Box<[u8]>);

/// What `Store::restore` found and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Owned namespaces with their tree size and the size of the last signed checkpoint.
    pub namespaces: Vec<(String, u64, u64)>,
    /// Final receipts restored (the latest per namespace).
    pub receipts: usize,
    /// Registry updates re-applied.
    pub registry_updates: usize,
}

/// What [`Store::memory`] reports, in bytes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StoreMemory {
    /// Memtables of all column families.
    pub memtables: u64,
    /// The shared block cache in use (data, index and filter blocks).
    pub block_cache: u64,
    /// Table readers' memory outside the block cache.
    pub table_readers: u64,
}

impl Store {
    /// Opens (or creates) the store in `path` for `federation`, checking its format.
    pub fn open(path: &Path, federation: &str) -> Result<Store, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Bounded memory: write buffers of at most MEMTABLE_BYTES each, and MEMTABLE_BYTES
        // across all families (a full budget flushes the largest), so a node's RocksDB memory
        // stays flat.
        options.set_write_buffer_size(MEMTABLE_BYTES);
        options.set_max_write_buffer_number(4);
        options.set_db_write_buffer_size(MEMTABLE_BYTES);
        options.increase_parallelism(2);
        // One block cache for every family, holding the index and filter blocks too: left
        // outside a cache, those grow with every table file written.
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        options.set_block_based_table_factory(&table);
        // Every family the directory holds must be opened, those of an earlier format too.
        let earlier: Vec<String> = DB::list_cf(&options, path)
            .unwrap_or_default()
            .into_iter()
            .filter(|name| name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && !cf::ALL.contains(&name.as_str()))
            .collect();
        let names = cf::ALL.iter().map(|name| name.to_string()).chain(earlier);
        let families = names.map(|name| ColumnFamilyDescriptor::new(name, options.clone()));
        let db = DB::open_cf_descriptors(&options, path, families)
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        let mut store = Store {
            db,
            path: path.to_path_buf(),
            next_evidence: AtomicU64::new(0),
            next_audit: AtomicU64::new(0),
            next_receipt: AtomicU64::new(0),
            next_countersignature: AtomicU64::new(0),
        };
        let format = store.get_cf(cf::META, b"format")?;
        match &format {
            Some(found) if found != FORMAT.as_bytes() && found != FORMAT_V1.as_bytes() => {
                return Err(StoreError::Format {
                    path: path.to_path_buf(),
                    found: String::from_utf8_lossy(found).into_owned(),
                });
            }
            Some(_) => {}
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(store.family(cf::META)?, b"format", FORMAT.as_bytes());
                batch.put_cf(store.family(cf::META)?, b"federation", federation.as_bytes());
                store.write_synced(batch)?;
            }
        }
        if let Some(found) = store.get_cf(cf::META, b"federation")? {
            if found != federation.as_bytes() {
                return Err(StoreError::Federation {
                    path: path.to_path_buf(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                    expected: federation.to_string(),
                });
            }
        }
        for (next, family) in [
            (&store.next_evidence, cf::EVIDENCE),
            (&store.next_audit, cf::AUDIT),
            (&store.next_receipt, cf::RECEIPTS),
            (&store.next_countersignature, cf::COUNTERSIGNATURES),
        ] {
            next.store(store.last_seq(family)?.map_or(0, |s| s + 1), Ordering::SeqCst);
        }
        if format.as_deref() == Some(FORMAT_V1.as_bytes()) {
            store.upgrade_v1()?;
        }
        Ok(store)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// RocksDB's memory in bytes: memtables (active and flushed but unwritten) summed over the
    /// column families, the block cache they share (data, index and filter blocks, at most
    /// [`BLOCK_CACHE_BYTES`]) and table readers' memory outside it.
    pub fn memory(&self) -> StoreMemory {
        let mut memory = StoreMemory::default();
        for name in cf::ALL {
            let Ok(family) = self.family(name) else { continue };
            let value =
                |property: &str| self.db.property_int_value_cf(family, property).ok().flatten().unwrap_or(0);
            memory.memtables += value("rocksdb.cur-size-all-mem-tables");
            // The families share one cache: each reports all of it.
            memory.block_cache = memory.block_cache.max(value("rocksdb.block-cache-usage"));
            memory.table_readers += value("rocksdb.estimate-table-readers-mem");
        }
        memory
    }

    fn family(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(name).ok_or_else(|| self.damaged(format!("column family {name} is missing")))
    }

    fn damaged(&self, detail: String) -> StoreError {
        StoreError::Damaged { path: self.path.clone(), detail }
    }

    fn get_cf(&self, family: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.db.get_cf(self.family(family)?, key)?;
        if value.as_ref().is_some_and(|v| v.len() > VALUE_BYTES_MAX) {
            return Err(self.damaged(format!("a value in {family} is larger than {VALUE_BYTES_MAX} bytes")));
        }
        Ok(value)
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.write(batch, true)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    fn last_seq(&self, family: &str) -> Result<Option<u64>, StoreError> {
        let mut iter = self.db.iterator_cf(self.family(family)?, IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (key, _) = item?;
                Ok(key_u64_suffix(&key))
            }
            None => Ok(None),
        }
    }

    /// Entries of `family` whose key starts with `prefix`, in key order, at most `limit`.
    fn scan(&self, family: &str, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let iter = self.db.iterator_cf(self.family(family)?, IteratorMode::From(prefix, Direction::Forward));
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    fn decode<T: DeserializeOwned>(&self, family: &str, bytes: &[u8]) -> Result<T, StoreError> {
        ciborium::from_reader(bytes).map_err(|e| self.damaged(format!("undecodable value in {family}: {e}")))
    }

    /// The namespaces this node owns, with their algorithms.
    pub fn owned(&self) -> Result<Vec<(String, HashAlgorithm)>, StoreError> {
        let mut out = Vec::new();
        for (key, value) in self.scan(cf::OWNED, &[], usize::MAX)? {
            let namespace = String::from_utf8(key.get(2..).unwrap_or_default().to_vec())
                .map_err(|_| self.damaged("a namespace name is not UTF-8".to_string()))?;
            let algorithm = std::str::from_utf8(&value)
                .ok()
                .and_then(|name| name.parse::<HashAlgorithm>().ok())
                .ok_or_else(|| self.damaged(format!("unknown hash algorithm for {namespace}")))?;
            out.push((namespace, algorithm));
        }
        Ok(out)
    }

    /// Calls `each` with the records of `namespace` in index order, [`RECORDS_PER_CHUNK`] at a
    /// time (memory stays bounded however large the namespace); fails on a gap.
    pub fn for_each_chunk(
        &self,
        namespace: &str,
        mut each: impl FnMut(&[Vec<u8>]) -> Result<(), String>,
    ) -> Result<u64, StoreError> {
        let mut chunk = Vec::with_capacity(RECORDS_PER_CHUNK);
        let mut failure = None;
        let count = self.for_each_record(namespace, |_, record| {
            if failure.is_some() {
                return;
            }
            chunk.push(record.to_vec());
            if chunk.len() == RECORDS_PER_CHUNK {
                failure = each(&chunk).err();
                chunk.clear();
            }
        })?;
        if failure.is_none() && !chunk.is_empty() {
            failure = each(&chunk).err();
        }
        match failure {
            Some(detail) => Err(self.damaged(format!("{namespace}: {detail}"))),
            None => Ok(count),
        }
    }

    /// Calls `each` with every record of `namespace` in index order; fails on a gap.
    pub fn for_each_record(
        &self,
        namespace: &str,
        mut each: impl FnMut(u64, &[u8]),
    ) -> Result<u64, StoreError> {
        let prefix = ns_key(namespace);
        let iter =
            self.db.iterator_cf(self.family(cf::RECORDS)?, IteratorMode::From(&prefix, Direction::Forward));
        let mut expected = 0u64;
        for item in iter {
            let (key, value) = item?;
            let Some(index) = record_index(&key, &prefix) else { break };
            if index != expected {
                return Err(
                    self.damaged(format!("{namespace}: record {expected} is missing (found {index})"))
                );
            }
            each(index, &value);
            expected += 1;
        }
        Ok(expected)
    }

    /// Reads back the leaf hashes of `namespace`'s records, for a
    /// [`PrunedNodeStore`](remembrancer_core::merkle::PrunedNodeStore) (at most
    /// one block of [`pruned::BLOCK_LEAVES`] records a read; a gap ends the read early, which the
    /// tree reports as a missing record).
    pub fn leaf_source(self: &Arc<Self>, namespace: &str, algorithm: HashAlgorithm) -> LeafSource {
        let store = Arc::clone(self);
        let namespace = namespace.to_string();
        let prefix = ns_key(&namespace);
        Arc::new(move |first, count| {
            let count = count.min(pruned::BLOCK_LEAVES as usize);
            let key = ns_u64_key(&namespace, first);
            let family = store.family(cf::RECORDS).map_err(|e| NodeStoreError::Backend(e.to_string()))?;
            let mut leaves = Vec::with_capacity(count);
            for item in store.db.iterator_cf(family, IteratorMode::From(&key, Direction::Forward)).take(count)
            {
                let (key, value) = item.map_err(|e| NodeStoreError::Backend(e.to_string()))?;
                if record_index(&key, &prefix) != Some(first + leaves.len() as u64) {
                    break;
                }
                leaves.push(algorithm.leaf_hash(&value));
            }
            Ok(leaves)
        })
    }

    /// One record of `namespace`.
    pub fn record(&self, namespace: &str, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_cf(cf::RECORDS, &ns_u64_key(namespace, index))
    }

    /// The last checkpoint note this node signed for `namespace`, with its size.
    pub fn last_checkpoint(&self, namespace: &str) -> Result<Option<(u64, String)>, StoreError> {
        let prefix = ns_key(namespace);
        let mut end = prefix.clone();
        end.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut iter =
            self.db.iterator_cf(self.family(cf::CHECKPOINTS)?, IteratorMode::From(&end, Direction::Reverse));
        match iter.next() {
            Some(item) => {
                let (key, value) = item?;
                if !key.starts_with(&prefix) || key.len() != prefix.len() + 8 {
                    return Ok(None);
                }
                let note = String::from_utf8(value.to_vec())
                    .map_err(|_| self.damaged(format!("{namespace}: a checkpoint note is not UTF-8")))?;
                Ok(Some((key_u64_suffix(&key).unwrap_or(0), note)))
            }
            None => Ok(None),
        }
    }

    /// The latest `limit` final receipts of `namespace` (at most [`RECEIPTS_LISTED_MAX`]),
    /// oldest first.
    pub fn receipts(&self, namespace: &str, limit: usize) -> Result<Vec<FederationReceipt>, StoreError> {
        let prefix = ns_key(namespace);
        let mut last = prefix.clone();
        last.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut iter = self.db.raw_iterator_cf(self.family(cf::RECEIPT_INDEX)?);
        iter.seek_for_prev(&last);
        let mut seqs = Vec::new();
        while let (Some(key), Some(seq)) = (iter.key(), iter.value()) {
            if !key.starts_with(&prefix) || seqs.len() >= limit.min(RECEIPTS_LISTED_MAX) {
                break;
            }
            seqs.push(seq.to_vec());
            iter.prev();
        }
        iter.status()?;
        seqs.reverse();
        self.receipts_at(seqs.iter().map(Vec::as_slice))
    }

    /// The final receipt of `namespace` at `size`.
    pub fn receipt(&self, namespace: &str, size: u64) -> Result<Option<FederationReceipt>, StoreError> {
        match self.get_cf(cf::RECEIPT_INDEX, &ns_u64_key(namespace, size))? {
            Some(seq) => Ok(self.receipts_at([&seq[..]])?.pop()),
            None => Ok(None),
        }
    }

    /// The latest final receipt of every namespace: one seek per namespace in the index, so
    /// a node's start does not read the receipts it holds.
    pub fn latest_receipts(&self) -> Result<Vec<FederationReceipt>, StoreError> {
        let mut seqs = Vec::new();
        let mut iter = self.db.raw_iterator_cf(self.family(cf::RECEIPT_INDEX)?);
        iter.seek_to_first();
        while let Some(key) = iter.key() {
            let prefix = ns_prefix(key)
                .ok_or_else(|| self.damaged("a receipt index key has no namespace".to_string()))?;
            let mut last = prefix.to_vec();
            last.extend_from_slice(&u64::MAX.to_be_bytes());
            // The namespace's last entry, then the first entry after it: the next namespace.
            iter.seek_for_prev(&last);
            if let Some(seq) = iter.value() {
                seqs.push(seq.to_vec());
            }
            iter.next();
        }
        iter.status()?;
        self.receipts_at(seqs.iter().map(Vec::as_slice))
    }

    /// The receipts stored under `seqs` (values of the receipt index), in that order.
    fn receipts_at<'a>(
        &self,
        seqs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<FederationReceipt>, StoreError> {
        let family = self.family(cf::RECEIPTS)?;
        let seqs: Vec<&[u8]> = seqs.into_iter().collect();
        self.db
            .batched_multi_get_cf(family, &seqs, false)
            .into_iter()
            .map(|value| {
                let value = value?.ok_or_else(|| {
                    self.damaged("the receipt index names a receipt that is not stored".to_string())
                })?;
                if value.len() > VALUE_BYTES_MAX {
                    return Err(self.damaged(format!("a receipt is larger than {VALUE_BYTES_MAX} bytes")));
                }
                receipt_from_cbor(&value)
                    .ok_or_else(|| self.damaged("a stored receipt is undecodable".to_string()))
            })
            .collect()
    }

    /// The cosignatures this node gave as a witness, oldest first, at most `limit`:
    /// namespace, tree size and the entry.
    pub fn countersignatures(&self, limit: usize) -> Result<Vec<(String, u64, SignatureJson)>, StoreError> {
        self.scan(cf::COUNTERSIGNATURES, &[], limit)?
            .into_iter()
            .map(|(_, value)| {
                let given: Given<String, SignatureJson> = self.decode(cf::COUNTERSIGNATURES, &value)?;
                Ok((given.namespace, given.size, given.signature))
            })
            .collect()
    }

    /// Evidence records, oldest first.
    pub fn evidence(&self) -> Result<Vec<Evidence>, StoreError> {
        self.scan(cf::EVIDENCE, &[], RECEIPTS_LISTED_MAX)?
            .into_iter()
            .map(|(_, value)| self.decode(cf::EVIDENCE, &value))
            .collect()
    }

    /// Claim evidence records, by the claim's digest (at most [`RECEIPTS_LISTED_MAX`]).
    pub fn claim_evidence(&self) -> Result<Vec<ClaimEvidence>, StoreError> {
        self.scan(cf::CLAIM_EVIDENCE, &[], RECEIPTS_LISTED_MAX)?
            .into_iter()
            .map(|(_, value)| self.decode(cf::CLAIM_EVIDENCE, &value))
            .collect()
    }

    /// The audit trail, oldest first, at most [`AUDIT_LISTED_MAX`] entries.
    pub fn audit(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.scan(cf::AUDIT, &[], AUDIT_LISTED_MAX)?
            .into_iter()
            .map(|(_, value)| self.decode(cf::AUDIT, &value))
            .collect()
    }

    /// Registry updates that reached quorum, in version order.
    pub fn registry_chain(&self) -> Result<Vec<RegistryContent>, StoreError> {
        self.scan(cf::REGISTRY, &[], usize::MAX)?
            .into_iter()
            .map(|(_, value)| self.decode(cf::REGISTRY, &value))
            .collect()
    }
}
