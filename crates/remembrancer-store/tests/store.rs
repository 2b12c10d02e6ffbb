//! The store against a real engine on a real RocksDB directory: one batch per input (synced,
//! or not when it promises nothing), restart with the same roots, and damage detected with
//! an error that says what is wrong.

use std::sync::Arc;

use remembrancer_core::engine::{split_persist, Engine, EngineConfig, Input, Persist};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::{pruned, MemoryNodeStore, MemoryTree, NodeStore, PrunedNodeStore};
use remembrancer_core::receipt::FederationReceipt;
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument,
};
use remembrancer_core::HashAlgorithm;
use remembrancer_store::{cf, Store, StoreError};

const NAMESPACE: &str = "dao:alpha";
const NOW: u64 = 1_800_000_000_000;

fn identity() -> NodeIdentity {
    NodeIdentity::from_seed("did:vm:node:solo", [7; 32]).expect("identity")
}

fn registry() -> Registry {
    registry_owning(vec![NAMESPACE.to_string()])
}

/// A registry of this node alone (quorum 1: every commit is final at once), owning `namespaces`.
fn registry_owning(namespaces: Vec<String>) -> Registry {
    let document = RegistryDocument {
        federation: FederationSection {
            name: "store-test".to_string(),
            version: 1,
            quorum: 1,
            peers: vec![PeerEntry::for_identity(&identity(), namespaces)],
            anchor_propagation: AnchorPropagation::default(),
        },
    };
    Registry::from_document(&document).expect("registry")
}

fn engine() -> Engine<MemoryNodeStore> {
    Engine::new(identity(), registry(), EngineConfig::default(), MemoryNodeStore::new)
}

/// An engine whose trees read their older records back from `store`, as a node's do.
fn pruned_engine(store: &Arc<Store>) -> Engine<PrunedNodeStore> {
    let store = Arc::clone(store);
    Engine::with_store_factory(
        identity(),
        registry(),
        EngineConfig::default(),
        move |namespace, algorithm| PrunedNodeStore::new(algorithm, store.leaf_source(namespace, algorithm)),
    )
}

/// Commits `count` records and persists what the engine asks, as a node does (which then
/// tells the tree its records can be read back).
fn commit<S: NodeStore>(engine: &mut Engine<S>, store: &Store, count: usize, at: u64) {
    let records = (0..count).map(|i| format!("record {at} {i}").into_bytes()).collect();
    let outputs =
        engine.handle(Input::Commit { namespace: NAMESPACE.to_string(), records }, at).expect("commit");
    let (persist, _) = split_persist(outputs);
    store.persist(&persist).expect("persist");
    let size = engine.tree(NAMESPACE).expect("tree").size();
    engine.handle(Input::Stored { namespace: NAMESPACE.to_string(), size }, at).expect("stored");
}

#[test]
fn a_restarted_node_has_the_same_trees_receipts_and_witness_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, receipt) = {
        let store = Store::open(dir.path(), "store-test").expect("open");
        store.add_owned(NAMESPACE, HashAlgorithm::Sha256).expect("owned");
        let mut engine = engine();
        commit(&mut engine, &store, 100, NOW);
        commit(&mut engine, &store, 50, NOW + 10);
        let receipt = engine.finals().get(NAMESPACE).cloned().expect("quorum 1 finalizes at once");
        (engine.tree(NAMESPACE).expect("tree").root(), receipt)
    };
    let store = Store::open(dir.path(), "store-test").expect("reopen");
    let mut restarted = engine();
    let restored = store.restore(&mut restarted).expect("restore");
    assert_eq!(restored.namespaces, vec![(NAMESPACE.to_string(), 150, 150)]);
    assert_eq!(restarted.tree(NAMESPACE).expect("tree").root(), root);
    assert_eq!(restarted.finals().get(NAMESPACE), Some(&receipt));
    assert_eq!(store.receipts(NAMESPACE, 100).expect("receipts").len(), 2);
    assert_eq!(store.record(NAMESPACE, 149).expect("record"), Some(b"record 1800000000010 49".to_vec()));
    // The restored node continues the same tree.
    commit(&mut restarted, &store, 1, NOW + 20);
    assert_eq!(restarted.finals().get(NAMESPACE).map(|r| r.tree_size), Some(151));
    let _ = Arc::strong_count(&receipt);
}

#[test]
fn a_batch_written_without_a_sync_is_kept_when_the_process_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = {
        let store = Store::open(dir.path(), "store-test").expect("open");
        store.add_owned(NAMESPACE, HashAlgorithm::Sha256).expect("owned");
        let mut engine = engine();
        commit(&mut engine, &store, 10, NOW);
        let records = vec![b"unsynced".to_vec()];
        let outputs = engine
            .handle(Input::Commit { namespace: NAMESPACE.to_string(), records }, NOW + 10)
            .expect("commit");
        let (persist, _) = split_persist(outputs);
        store.persist_with(&persist, false).expect("unsynced persist");
        engine.tree(NAMESPACE).expect("tree").root()
    };
    // RocksDB's log has the batch as soon as `persist_with` returns: a process that ends
    // (here: drops the store) loses nothing; only the machine failing before a later synced
    // write could.
    let store = Store::open(dir.path(), "store-test").expect("reopen");
    let mut restarted = engine();
    let restored = store.restore(&mut restarted).expect("restore");
    assert_eq!(restored.namespaces, vec![(NAMESPACE.to_string(), 11, 11)]);
    assert_eq!(restarted.tree(NAMESPACE).expect("tree").root(), root);
    assert_eq!(store.record(NAMESPACE, 10).expect("record"), Some(b"unsynced".to_vec()));
}

#[test]
fn a_missing_record_or_a_changed_record_is_reported_as_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), "store-test").expect("open");
        store.add_owned(NAMESPACE, HashAlgorithm::Sha256).expect("owned");
        commit(&mut engine(), &store, 10, NOW);
    }
    let mut key = (NAMESPACE.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(NAMESPACE.as_bytes());
    key.extend_from_slice(&3u64.to_be_bytes());
    let reopen_raw = || {
        let names = cf::ALL;
        rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), names).expect("raw open")
    };
    {
        let db = reopen_raw();
        let records = db.cf_handle(cf::RECORDS).expect("family");
        db.put_cf(records, &key, b"tampered").expect("tamper");
    }
    let error = Store::open(dir.path(), "store-test")
        .expect("open")
        .restore(&mut engine())
        .expect_err("changed record");
    assert!(
        matches!(&error, StoreError::Damaged { detail, .. } if detail.contains("differs from the signed checkpoint")),
        "{error}"
    );
    {
        let db = reopen_raw();
        let records = db.cf_handle(cf::RECORDS).expect("family");
        db.delete_cf(records, &key).expect("delete");
    }
    let error = Store::open(dir.path(), "store-test").expect("open").restore(&mut engine()).expect_err("gap");
    assert!(
        matches!(&error, StoreError::Damaged { detail, .. } if detail.contains("record 3 is missing")),
        "{error}"
    );
    assert!(error.to_string().contains("restore the data directory"), "the error says what to do: {error}");
}

#[test]
fn another_federation_or_a_file_in_the_way_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Store::open(dir.path(), "store-test").expect("open"));
    let error = Store::open(dir.path(), "other").expect_err("other federation");
    assert!(matches!(error, StoreError::Federation { .. }), "{error}");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"garbage").expect("write");
    let error = Store::open(&file, "store-test").expect_err("a file");
    assert!(matches!(error, StoreError::Open { .. }), "{error}");
}

#[test]
fn the_memtables_report_what_was_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "store-test").expect("open");
    store.add_owned(NAMESPACE, HashAlgorithm::Sha256).expect("owned");
    let before = store.memory().memtables;
    commit(&mut engine(), &store, 1000, NOW);
    let after = store.memory().memtables;
    // 1000 records of a few bytes each, plus their keys: well over 16 KiB more.
    assert!(after >= before + 16 * 1024, "memtables {before} -> {after} bytes");
}

#[test]
fn a_tree_reads_its_older_records_back_from_rocksdb_and_keeps_its_memory_flat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), "store-test").expect("open"));
    store.add_owned(NAMESPACE, HashAlgorithm::Sha256).expect("owned");
    let mut engine = pruned_engine(&store);
    let mut reference = MemoryTree::new(HashAlgorithm::Sha256, MemoryNodeStore::new());
    let mut memory = Vec::new();
    for batch in 0..40u64 {
        commit(&mut engine, &store, 1000, NOW + batch);
        for i in 0..1000 {
            reference.append(format!("record {} {i}", NOW + batch).as_bytes()).expect("append");
        }
        memory.push(engine.tree(NAMESPACE).expect("tree").store().memory_bytes());
    }
    let tree = engine.tree(NAMESPACE).expect("tree");
    assert_eq!(tree.root(), reference.root());
    // 40 000 records: the full tree holds 2.5 MB of hashes; this one the recent 16 384
    // records' and the upper levels, the same after 20 000 records as after 40 000.
    assert!(memory[39] <= memory[19] + 16 * 1024, "memory {} -> {} bytes", memory[19], memory[39]);
    assert!(memory[39] * 2 < reference.store().memory_bytes());
    // Proofs over records long dropped from memory are read back from RocksDB.
    for (index, size) in [(0, 40_000), (3, 1000), (12_345, 30_001), (39_999, 40_000)] {
        assert_eq!(
            tree.inclusion_proof(index, size).expect("proof"),
            reference.inclusion_proof(index, size).expect("proof")
        );
        assert_eq!(
            tree.consistency_proof(size / 2 + 1, size).expect("proof"),
            reference.consistency_proof(size / 2 + 1, size).expect("proof")
        );
    }
    drop(engine);

    // A restart rebuilds the same tree into the same bounded memory.
    let mut restarted = pruned_engine(&store);
    let restored = store.restore(&mut restarted).expect("restore");
    assert_eq!(restored.namespaces, vec![(NAMESPACE.to_string(), 40_000, 40_000)]);
    let tree = restarted.tree(NAMESPACE).expect("tree");
    assert_eq!(tree.root(), reference.root());
    assert!(tree.store().recent_blocks() <= pruned::RECENT_BLOCKS + 1);
    assert_eq!(
        tree.inclusion_proof(7, 40_000).expect("proof"),
        reference.inclusion_proof(7, 40_000).expect("proof")
    );
}

const OTHERS: [&str; 2] = ["dao:beta", "dao:gamma"];

/// An engine owning `NAMESPACE` and `OTHERS` (quorum 1: every commit is final at once).
fn engine_of_three() -> Engine<MemoryNodeStore> {
    let namespaces = std::iter::once(NAMESPACE).chain(OTHERS).map(str::to_string).collect();
    Engine::new(identity(), registry_owning(namespaces), EngineConfig::default(), MemoryNodeStore::new)
}

/// Commits to each of the three namespaces in turn, `rounds` times, persisting what the
/// engine asks; every receipt made, in order.
fn interleaved_receipts(store: Option<&Store>, rounds: u64) -> Vec<FederationReceipt> {
    let mut engine = engine_of_three();
    let mut receipts = Vec::new();
    for round in 0..rounds {
        for namespace in std::iter::once(NAMESPACE).chain(OTHERS) {
            let records = vec![format!("{namespace} {round}").into_bytes(); 1 + round as usize];
            let outputs = engine
                .handle(Input::Commit { namespace: namespace.to_string(), records }, NOW + round)
                .expect("commit");
            let (persist, _) = split_persist(outputs);
            if let Some(store) = store {
                store.persist(&persist).expect("persist");
            }
            receipts.push(engine.finals().get(namespace).expect("final").as_ref().clone());
        }
    }
    receipts
}

#[test]
fn receipts_of_interleaved_namespaces_are_listed_found_and_restored_per_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = {
        let store = Store::open(dir.path(), "store-test").expect("open");
        interleaved_receipts(Some(&store), 4)
    };
    let store = Store::open(dir.path(), "store-test").expect("reopen");
    for namespace in std::iter::once(NAMESPACE).chain(OTHERS) {
        let expected: Vec<&FederationReceipt> = made.iter().filter(|r| r.namespace == namespace).collect();
        let listed = store.receipts(namespace, 100).expect("receipts");
        assert_eq!(listed.iter().collect::<Vec<_>>(), expected, "{namespace}: oldest first, its own only");
        for receipt in &expected {
            assert_eq!(
                store.receipt(namespace, receipt.tree_size).expect("receipt").as_ref(),
                Some(*receipt)
            );
        }
        assert_eq!(store.receipt(namespace, 999).expect("receipt"), None);
        let latest_two = store.receipts(namespace, 2).expect("receipts");
        assert_eq!(
            latest_two.iter().collect::<Vec<_>>(),
            expected[2..],
            "{namespace}: the latest, oldest first"
        );
    }
    // At start, the latest of each namespace and nothing else.
    let latest = store.latest_receipts().expect("latest");
    let mut sizes: Vec<(&str, u64)> = latest.iter().map(|r| (r.namespace.as_str(), r.tree_size)).collect();
    sizes.sort();
    assert_eq!(sizes, vec![(NAMESPACE, 10), ("dao:beta", 10), ("dao:gamma", 10)]);
    let mut restarted = engine_of_three();
    assert_eq!(store.restore(&mut restarted).expect("restore").receipts, 3);
}

/// A key of format v1's receipt and countersignature families: namespace, then size.
fn v1_key(namespace: &str, size: u64) -> Vec<u8> {
    let mut key = (namespace.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(namespace.as_bytes());
    key.extend_from_slice(&size.to_be_bytes());
    key
}

#[test]
fn a_v1_store_is_upgraded_in_place_and_keeps_its_receipts_and_countersignatures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = interleaved_receipts(None, 3);
    // A data directory as format v1 wrote it: receipts and countersignatures keyed by
    // namespace and size.
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(
            &options,
            dir.path(),
            [cf::META, cf::RECORDS, cf::legacy::RECEIPTS, cf::legacy::COUNTERSIGNATURES],
        )
        .expect("v1 directory");
        let family = |name| db.cf_handle(name).expect("family");
        db.put_cf(family(cf::META), b"format", b"remembrancer-store/v1").expect("put");
        db.put_cf(family(cf::META), b"federation", b"store-test").expect("put");
        for receipt in &made {
            let key = v1_key(&receipt.namespace, receipt.tree_size);
            let json = serde_json::to_vec(receipt).expect("json");
            db.put_cf(family(cf::legacy::RECEIPTS), &key, json).expect("put");
            let mut signature = Vec::new();
            ciborium::into_writer(&receipt.signatures[0], &mut signature).expect("cbor");
            db.put_cf(family(cf::legacy::COUNTERSIGNATURES), &key, signature).expect("put");
        }
    }
    let store = Store::open(dir.path(), "store-test").expect("upgrade");
    for namespace in std::iter::once(NAMESPACE).chain(OTHERS) {
        let expected: Vec<FederationReceipt> =
            made.iter().filter(|r| r.namespace == namespace).cloned().collect();
        assert_eq!(store.receipts(namespace, 100).expect("receipts"), expected, "{namespace}");
    }
    let given = store.countersignatures(100).expect("countersignatures");
    assert_eq!(given.len(), made.len());
    let mut expected: Vec<(String, u64, _)> =
        made.iter().map(|r| (r.namespace.clone(), r.tree_size, r.signatures[0].clone())).collect();
    expected.sort_by_key(|(namespace, size, _)| v1_key(namespace, *size));
    assert_eq!(given, expected, "in v1's key order, each with its namespace and size");
    // Receipts stored after the upgrade follow the moved ones.
    let later = interleaved_receipts(None, 4).pop().expect("a receipt");
    store.persist(&[Persist::FinalReceipt(Arc::new(later.clone()))]).expect("persist");
    assert_eq!(store.receipts("dao:gamma", 100).expect("receipts").last(), Some(&later));
    drop(store);
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).expect("families");
    assert!(
        !families.iter().any(|name| name.ends_with(".v1") && name.starts_with("receipts")),
        "{families:?}"
    );
    assert!(!families.iter().any(|name| name == cf::legacy::COUNTERSIGNATURES), "{families:?}");
    let store = Store::open(dir.path(), "store-test").expect("reopen after the upgrade");
    assert_eq!(store.latest_receipts().expect("latest").len(), 3);
    assert_eq!(store.receipts(NAMESPACE, 100).expect("receipts").len(), 3);
}

#[test]
fn a_store_of_an_unknown_format_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&options, dir.path(), [cf::META]).expect("directory");
        db.put_cf(db.cf_handle(cf::META).expect("meta"), b"format", b"remembrancer-store/v9").expect("put");
    }
    let error = Store::open(dir.path(), "store-test").expect_err("unknown format");
    assert!(
        matches!(&error, StoreError::Format { found, .. } if found == "remembrancer-store/v9"),
        "{error}"
    );
    assert!(error.to_string().contains("use a new data directory"), "{error}");
}

/// An engine of this node under a registry that lists no namespace: it may anchor any.
fn engine_listing_none() -> Engine<MemoryNodeStore> {
    Engine::new(identity(), registry_owning(Vec::new()), EngineConfig::default(), MemoryNodeStore::new)
}

/// Commits `records` to `namespace`; returns what the engine asked to persist.
fn commit_to<S: NodeStore>(
    engine: &mut Engine<S>,
    namespace: &str,
    records: &[&str],
    at: u64,
) -> Vec<Persist> {
    let records = records.iter().map(|r| r.as_bytes().to_vec()).collect();
    let outputs =
        engine.handle(Input::Commit { namespace: namespace.to_string(), records }, at).expect("commit");
    split_persist(outputs).0
}

#[test]
fn a_namespace_no_member_lists_is_restored_with_its_records_and_its_signed_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = {
        let store = Store::open(dir.path(), "store-test").expect("open");
        let mut engine = engine_listing_none();
        // Never declared owned: the node committed to it because no member lists it.
        store
            .persist(&commit_to(&mut engine, "foo:bar", &["rec-1", "rec-2", "rec-3"], NOW))
            .expect("persist");
        engine.tree("foo:bar").expect("tree").root()
    };
    let store = Store::open(dir.path(), "store-test").expect("reopen");
    let mut restarted = engine_listing_none();
    let restored = store.restore(&mut restarted).expect("restore");
    assert_eq!(restored.namespaces, vec![("foo:bar".to_string(), 3, 3)]);
    assert_eq!(restarted.tree("foo:bar").expect("tree").root(), root);
    assert_eq!(store.owned().expect("owned"), vec![("foo:bar".to_string(), HashAlgorithm::Sha256)]);
    // The next record is record 3, and its checkpoint extends the one signed.
    let persist = commit_to(&mut restarted, "foo:bar", &["rec-4"], NOW + 10);
    assert!(persist.iter().any(|p| matches!(p, Persist::Records { first_index: 3, .. })), "{persist:?}");
    assert!(persist.iter().any(|p| matches!(p, Persist::Anchored { size: 4, .. })), "{persist:?}");
    store.persist(&persist).expect("persist");
    assert_eq!(store.record("foo:bar", 0).expect("record"), Some(b"rec-1".to_vec()));
}

#[test]
fn a_checkpoint_contradicting_the_last_one_stored_is_refused_and_nothing_of_its_write_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "store-test").expect("open");
    let mut engine = engine_listing_none();
    store.persist(&commit_to(&mut engine, "foo:bar", &["rec-1", "rec-2", "rec-3"], NOW)).expect("persist");
    // An engine that forgot what it signed (a fresh one) commits other records: a second root
    // for size 3. The store refuses the write, its records with it.
    let forgetful = commit_to(&mut engine_listing_none(), "foo:bar", &["x", "y", "z"], NOW + 10);
    let refused = store.persist(&forgetful).expect_err("a second root for size 3");
    assert!(
        matches!(&refused, StoreError::WouldEquivocate { size: 3, signed, .. } if signed == "another root at size 3"),
        "{refused}"
    );
    assert!(refused.to_string().contains("would equivocate"), "{refused}");
    assert_eq!(store.record("foo:bar", 0).expect("record"), Some(b"rec-1".to_vec()), "records untouched");
    // A smaller size is refused too; the same root again, or a larger size, is not.
    let smaller = commit_to(&mut engine_listing_none(), "foo:bar", &["rec-1", "rec-2"], NOW + 20);
    assert!(matches!(store.persist(&smaller), Err(StoreError::WouldEquivocate { size: 2, .. })));
    let same = commit_to(&mut engine_listing_none(), "foo:bar", &["rec-1", "rec-2", "rec-3"], NOW + 30);
    store.persist(&same).expect("the same root at size 3 again");
    store.persist(&commit_to(&mut engine, "foo:bar", &["rec-4"], NOW + 40)).expect("size 4");
    assert_eq!(store.last_checkpoint("foo:bar").expect("read").map(|(size, _)| size), Some(4));
}
