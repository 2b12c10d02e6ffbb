//! External anchoring beside the event loop: the engine's anchor requests go to a task that
//! drives them at the configured target (`remembrancer-anchor`), keeps every state in RocksDB
//! before anything is sent, and gives each final anchor back to the loop, which hands it to
//! the engine (`Input::Anchored`). A node restarted mid-anchor resumes the states it stored.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use remembrancer_anchor::budget::Budget;
use remembrancer_anchor::eip155::{Eip155, Eip155Config};
use remembrancer_anchor::rfc3161::{Rfc3161, Rfc3161Config};
use remembrancer_anchor::{AnchorState, Anchorer, ErrorKind, Journal, Status, Target};
use remembrancer_core::anchoring::AnchorReference;
use remembrancer_core::engine::AnchorRequestId;
use remembrancer_core::hash::Digest;
use remembrancer_store::Store;
use tokio::sync::mpsc;

use crate::node::config::{AnchorSection, AnchorTargetKind};

/// Anchor requests waiting for the anchoring task, at most (the engine asks again for the next
/// final receipt or epoch; a request beyond is dropped with a warning).
pub const REQUESTS_MAX: usize = 1024;

/// The variable that may hold the anchoring account's key (hex) instead of a key file.
pub const KEY_VARIABLE: &str = "REMEMBRANCER_ANCHOR_KEY";

/// Where anchoring stands, for `status` and the API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// The target (`eip155:31337`), once connected.
    pub target: String,
    /// Who pays: the anchoring account (`0x…`), or the TSAs asked.
    pub account: String,
    /// Anchors by status.
    pub pending: u64,
    /// Sent, not in a block.
    pub submitted: u64,
    /// In a block, not deep enough.
    pub included: u64,
    /// Final.
    pub r#final: u64,
    /// Failed for good.
    pub failed: u64,
    /// Reorgs that took anchors out of their blocks.
    pub reorgs: u64,
    /// Wei paid, all anchors (as a decimal string: it outgrows JSON's safe integers).
    pub spent_wei: String,
    /// Transactions signed, replacements included.
    pub transactions: u64,
    /// The last error, if the last step failed.
    pub last_error: Option<String>,
}

/// The loop's handle on the anchoring task.
pub struct Anchoring {
    requests: mpsc::Sender<(AnchorRequestId, Digest)>,
    summary: Arc<Mutex<Summary>>,
}

impl Anchoring {
    /// Hands a request to the task, or says why it cannot take it.
    pub fn request(&self, request: AnchorRequestId, root: Digest) -> Result<(), &'static str> {
        self.requests.try_send((request, root)).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => "the anchoring queue is full: this root is not anchored",
            mpsc::error::TrySendError::Closed(_) => {
                "anchoring has stopped (federation status says why): this root is not anchored"
            }
        })
    }

    /// Where anchoring stands.
    pub fn summary(&self) -> Summary {
        self.summary.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// RocksDB as the anchorer's journal.
struct StoreJournal(Arc<Store>);

impl Journal for StoreJournal {
    fn save(&self, state: &AnchorState) -> Result<(), String> {
        self.0.put_anchor(&state.key(), &state.to_cbor()).map_err(|e| e.to_string())
    }
}

/// The anchoring account's key: the file the config names (mode 0600), else the variable.
pub fn anchoring_key(section: &AnchorSection) -> anyhow::Result<[u8; 32]> {
    let text = if !section.anchor_key_file.as_os_str().is_empty() {
        let path: &Path = &section.anchor_key_file;
        super::refuse_open_key_file(path)?;
        let bytes = crate::files::read_bounded(path, 1024)?;
        String::from_utf8(bytes).with_context(|| format!("{} is not text", path.display()))?
    } else {
        std::env::var(KEY_VARIABLE).map_err(|_| {
            anyhow::anyhow!(
                "anchor_target \"eip155\" needs the anchoring account's key: set `anchor_key_file` in [anchor] \
                 (a file of mode 0600 holding the secret as hex) or the variable {KEY_VARIABLE}"
            )
        })?
    };
    let hex_text = text.trim().trim_start_matches("0x");
    let bytes = hex::decode(hex_text).context("the anchoring key is not hex")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("the anchoring key is not 32 bytes (64 hex digits)"))
}

/// Largest TSA root certificate file read, bytes.
const TSA_CA_BYTES_MAX: usize = 1024 * 1024;

/// The rfc3161 target `section` configures: its TSAs, and the roots their tokens must chain to.
pub fn rfc3161_target(section: &AnchorSection) -> anyhow::Result<Rfc3161> {
    let path = &section.tsa_ca_file;
    let pem = crate::files::read_bounded(path, TSA_CA_BYTES_MAX)?;
    let roots = remembrancer_anchor::tsp::trusted_roots(&pem)
        .map_err(|e| anyhow::anyhow!("{} (anchor.tsa_ca_file): {e}", path.display()))?;
    let config = Rfc3161Config {
        urls: section.tsa_urls.clone(),
        roots,
        policy: (!section.tsa_policy.is_empty()).then(|| section.tsa_policy.clone()),
        timeout: Duration::from_secs(10),
    };
    Rfc3161::new(config).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Starts the anchoring task for `section` (None for the `local` target: the host anchors
/// locally at once). Final anchors come back on `results`.
pub fn start(
    section: &AnchorSection,
    store: Arc<Store>,
    budget: Arc<Budget>,
    results: mpsc::Sender<(AnchorRequestId, AnchorReference)>,
) -> anyhow::Result<Option<Anchoring>> {
    // Checked before anything starts: a configuration error stops the node with its reason.
    let target = match section.anchor_target {
        AnchorTargetKind::Local => return Ok(None),
        AnchorTargetKind::Eip155 => {
            let key = anchoring_key(section)?;
            let config = Eip155Config {
                rpc_url: section.rpc_url.clone(),
                chain_id: section.chain_id,
                confirmations: section.confirmations,
                stuck_after_ms: section.stuck_after_ms,
                max_fee_per_gas: u128::from(section.max_fee_per_gas),
                rpc_timeout: Duration::from_secs(10),
            };
            Configured::Eip155(config, key)
        }
        AnchorTargetKind::Rfc3161 => Configured::Rfc3161(rfc3161_target(section)?),
    };
    let mut restored = Vec::new();
    let mut unreadable = 0usize;
    for bytes in store.anchors()? {
        match AnchorState::from_cbor(&bytes) {
            Ok(state) => {
                budget.record(state.updated_ms, state.cost.wei);
                restored.push(state)
            }
            Err(error) => {
                unreadable += 1;
                tracing::error!(%error, "an anchor state in the store cannot be read; it is left as it is");
            }
        }
    }
    let summary = Arc::new(Mutex::new(Summary::default()));
    let mut tally = Tally::default();
    for state in &restored {
        tally.see(state.clone());
    }
    let unreadable = (unreadable > 0).then(|| format!("{unreadable} stored anchor states cannot be read"));
    tally.write(&summary, unreadable);
    let (requests, receiver) = mpsc::channel(REQUESTS_MAX);
    let poll = Duration::from_millis(section.poll_interval_ms.max(10));
    let restored: Vec<AnchorState> = restored.into_iter().filter(AnchorState::is_open).collect();
    let task = Task {
        budget,
        store,
        restored,
        tally,
        requests: receiver,
        results,
        summary: Arc::clone(&summary),
        poll,
    };
    match target {
        Configured::Eip155(config, key) => {
            tokio::spawn(async move {
                if let Some(target) = connect(&config, &key, &task).await {
                    let account = format!("{:#x}", target.address());
                    tracing::info!(%account, rpc = %config.rpc_url, "anchoring to {}", target.name());
                    task.drive(target, account).await;
                }
            });
        }
        Configured::Rfc3161(target) => {
            tracing::info!(tsas = %section.tsa_urls.join(", "), "anchoring to rfc3161 time-stamp authorities");
            tokio::spawn(task.drive(target, section.tsa_urls.join(", ")));
        }
    }
    Ok(Some(Anchoring { requests, summary }))
}

/// A target as configured, before the task starts.
enum Configured {
    Eip155(Eip155Config, [u8; 32]),
    Rfc3161(Rfc3161),
}

/// Connects to the chain, retrying while its RPC does not answer (requests wait in the queue);
/// None when the configuration cannot work (the summary says why).
async fn connect(config: &Eip155Config, key: &[u8; 32], task: &Task) -> Option<Eip155> {
    let mut delay = task.poll;
    loop {
        match Eip155::connect(config.clone(), key).await {
            Ok(target) => return Some(target.with_budget(Arc::clone(&task.budget))),
            Err(error) => {
                if let Ok(mut s) = task.summary.lock() {
                    s.last_error = Some(error.to_string());
                }
                if error.kind == ErrorKind::Fatal {
                    tracing::error!(%error, "anchoring stopped: fix the [anchor] configuration and restart the node");
                    return None;
                }
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "the anchoring chain does not answer");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// The counts behind [`Summary`]: anchors done (final or failed) folded into totals, open ones
/// kept by key (at most the anchorer's `OPEN_MAX`), so memory stays bounded however many
/// anchors a node makes.
#[derive(Default)]
struct Tally {
    done: Summary,
    done_wei: u128,
    open: std::collections::BTreeMap<Vec<u8>, AnchorState>,
}

impl Tally {
    fn add_done(&mut self, state: &AnchorState) {
        match state.status {
            Status::Final => self.done.r#final += 1,
            _ => self.done.failed += 1,
        }
        self.done.reorgs += u64::from(state.reorgs);
        self.done.transactions += u64::from(state.cost.transactions);
        self.done_wei = self.done_wei.saturating_add(state.cost.wei);
    }

    /// Takes in a state (new or changed).
    fn see(&mut self, state: AnchorState) {
        if state.is_open() {
            self.open.insert(state.key(), state);
        } else {
            self.open.remove(&state.key());
            self.add_done(&state);
        }
    }

    fn write(&self, summary: &Mutex<Summary>, error: Option<String>) {
        let Ok(mut s) = summary.lock() else { return };
        let target = std::mem::take(&mut s.target);
        let account = std::mem::take(&mut s.account);
        *s = Summary { target, account, last_error: error, ..self.done.clone() };
        let mut spent = self.done_wei;
        for state in self.open.values() {
            match state.status {
                Status::Pending => s.pending += 1,
                Status::Submitted => s.submitted += 1,
                _ => s.included += 1,
            }
            s.reorgs += u64::from(state.reorgs);
            s.transactions += u64::from(state.cost.transactions);
            spent = spent.saturating_add(state.cost.wei);
        }
        s.spent_wei = spent.to_string();
    }
}

/// The reference the engine gets for a final anchor.
pub fn reference(state: &AnchorState) -> Option<AnchorReference> {
    if let Some(stamp) = &state.stamp {
        return Some(AnchorReference {
            target: state.target.clone(),
            tx_hash: None,
            block: None,
            timestamp: stamp.info.unix,
            block_hash: None,
            tx_index: None,
            confirmations: None,
            cost_wei: None,
            token: Some(hex::encode(&stamp.token)),
        });
    }
    let inclusion = state.inclusion.as_ref()?;
    Some(AnchorReference {
        target: state.target.clone(),
        tx_hash: Some(inclusion.tx_hash.clone()),
        block: Some(inclusion.block),
        timestamp: inclusion.timestamp,
        block_hash: Some(inclusion.block_hash.clone()),
        tx_index: Some(inclusion.tx_index),
        confirmations: Some(inclusion.confirmations),
        cost_wei: Some(u64::try_from(state.cost.wei).unwrap_or(u64::MAX)),
        token: None,
    })
}

/// The anchoring task's parts.
struct Task {
    budget: Arc<Budget>,
    store: Arc<Store>,
    restored: Vec<AnchorState>,
    tally: Tally,
    requests: mpsc::Receiver<(AnchorRequestId, Digest)>,
    results: mpsc::Sender<(AnchorRequestId, AnchorReference)>,
    summary: Arc<Mutex<Summary>>,
    poll: Duration,
}

impl Task {
    /// Drives `target`'s anchors until the node stops: takes requests, steps open anchors on
    /// every tick, gives final ones back to the loop. `account` is who pays (an address, or
    /// the TSAs).
    async fn drive<T: Target + 'static>(self, target: T, account: String) {
        let Task { store, restored, mut tally, mut requests, results, summary, poll, .. } = self;
        if let Ok(mut s) = summary.lock() {
            s.target = target.name().to_string();
            s.account = account;
            s.last_error = None;
        }
        let mut anchorer = Anchorer::new(target, StoreJournal(store), restored, poll.as_millis() as u64);
        let mut interval = tokio::time::interval(poll);
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some((request, root)) = request else { return };
                    let mut encoded = Vec::new();
                    if ciborium::into_writer(&request, &mut encoded).is_err() {
                        continue;
                    }
                    match anchorer.request(root, encoded, remembrancer_host::now_ms()) {
                        Ok(Some(state)) => tally.see(state),
                        Ok(None) => {}
                        Err(error) => tracing::warn!(%error, "anchor request not taken"),
                    }
                }
                _ = interval.tick() => {
                    let changed = anchorer.tick(remembrancer_host::now_ms()).await;
                    let mut error = None;
                    for state in anchorer.open() {
                        if let Some(e) = &state.error {
                            error = Some(e.clone());
                        }
                        tally.open.insert(state.key(), state.clone());
                    }
                    for state in changed {
                        if state.status == Status::Final {
                            if let (Some(request), Some(reference)) = (request_of(&state), reference(&state)) {
                                tracing::info!(tx = ?reference.tx_hash, block = ?reference.block, "anchor final");
                                if results.send((request, reference)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        if state.status == Status::Failed {
                            error = state.error.clone();
                        }
                        tally.see(state);
                    }
                    tally.write(&summary, error);
                }
            }
        }
    }
}

/// The anchor states the store holds that can be read (one that cannot is reported at start).
pub fn stored(store: &Store) -> anyhow::Result<Vec<AnchorState>> {
    Ok(store.anchors()?.iter().filter_map(|bytes| AnchorState::from_cbor(bytes).ok()).collect())
}

/// What an anchor was asked for (the engine's request, as the task encoded it).
pub fn request_of(state: &AnchorState) -> Option<AnchorRequestId> {
    ciborium::from_reader(state.request.as_slice()).ok()
}

/// The anchors the store holds, newest change first, at most `limit`, as the API shows them.
pub fn listed(store: &Store, limit: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut states = stored(store)?;
    states.sort_by_key(|s| std::cmp::Reverse(s.updated_ms));
    states.truncate(limit);
    Ok(states.iter().map(view).collect())
}

/// One anchor as the API shows it.
pub fn view(state: &AnchorState) -> serde_json::Value {
    let request = request_of(state).and_then(|r| serde_json::to_value(r).ok());
    let inclusion = state.inclusion.as_ref();
    let stamp = state.stamp.as_ref();
    serde_json::json!({
        "target": state.target,
        "root": hex::encode(state.root),
        "for": request,
        "status": state.status.name(),
        "tx_hash": inclusion.map(|i| i.tx_hash.clone()).or_else(|| state.transactions.first().map(|t| t.hash.clone())),
        "block": inclusion.map(|i| i.block),
        "block_hash": inclusion.map(|i| i.block_hash.clone()),
        "tx_index": inclusion.map(|i| i.tx_index),
        "confirmations": inclusion.map(|i| i.confirmations),
        "tsa": stamp.map(|s| s.tsa.clone()),
        "signer": stamp.map(|s| s.info.signer.clone()),
        "gen_time": stamp.map(|s| s.info.gen_time.clone()),
        "serial": stamp.map(|s| s.info.serial.clone()),
        "reorgs": state.reorgs,
        "gas_used": state.cost.gas_used,
        "cost_wei": state.cost.wei.to_string(),
        "transactions": state.cost.transactions,
        "error": state.error,
        "updated_at": state.updated_ms / 1000,
    })
}
