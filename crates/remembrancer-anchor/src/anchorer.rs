//! The anchorer: the open anchors of one target, stepped in order on each tick, each state
//! change handed to the journal; retryable failures back off per anchor, fatal ones mark it
//! failed with the reason.

use std::collections::BTreeMap;

use crate::state::{AnchorState, Status};
use crate::{ErrorKind, Target};

/// Open anchors one anchorer holds at most; requests beyond are refused (the engine asks
/// again for the next final receipt or epoch).
pub const OPEN_MAX: usize = 4096;

/// Longest backoff between steps of one anchor after retryable failures, milliseconds.
pub const BACKOFF_MAX_MS: u64 = 60_000;

/// Where an anchorer keeps its states (a node: its RocksDB store).
pub trait Journal: Send + Sync {
    /// Stores `state` under [`AnchorState::key`], replacing what was there; durable when it
    /// returns.
    fn save(&self, state: &AnchorState) -> Result<(), String>;
}

/// The open anchors of one target.
pub struct Anchorer<T, J> {
    target: T,
    journal: J,
    open: BTreeMap<Vec<u8>, AnchorState>,
    /// Per anchor: retryable failures in a row, and the earliest time of its next step.
    backoff: BTreeMap<Vec<u8>, (u32, u64)>,
    base_ms: u64,
}

impl<T: Target, J: Journal> Anchorer<T, J> {
    /// An anchorer over `target`, resuming `restored` (the open states its journal held);
    /// `base_ms` is the first backoff after a retryable failure.
    pub fn new(target: T, journal: J, restored: Vec<AnchorState>, base_ms: u64) -> Self {
        let open = restored.into_iter().filter(AnchorState::is_open).map(|s| (s.key(), s)).collect();
        Anchorer { target, journal, open, backoff: BTreeMap::new(), base_ms: base_ms.max(1) }
    }

    /// The target.
    pub fn target(&self) -> &T {
        &self.target
    }

    /// Asks for `root` to be anchored, for `request` (the host's encoding of what it is for).
    /// Idempotent per root: a root already open is not anchored twice. Returns the new
    /// state, or None when the root is open already or the anchorer is full.
    pub fn request(
        &mut self,
        root: [u8; 32],
        request: Vec<u8>,
        now_ms: u64,
    ) -> Result<Option<AnchorState>, String> {
        let state = AnchorState::new(self.target.name(), root, request, now_ms);
        if self.open.contains_key(&state.key()) {
            return Ok(None);
        }
        if self.open.len() >= OPEN_MAX {
            return Err(format!(
                "{OPEN_MAX} anchors open at {}: this root is not anchored",
                self.target.name()
            ));
        }
        self.journal.save(&state)?;
        self.open.insert(state.key(), state.clone());
        Ok(Some(state))
    }

    /// The open anchors.
    pub fn open(&self) -> impl Iterator<Item = &AnchorState> {
        self.open.values()
    }

    /// One step of every open anchor due (included ones first, then submitted, then pending:
    /// what holds a nonce is settled before a new nonce is handed out). Returns the anchors
    /// whose status changed, with their new state.
    pub async fn tick(&mut self, now_ms: u64) -> Vec<AnchorState> {
        let rank = |s: &AnchorState| match s.status {
            Status::Included => 0,
            Status::Submitted => 1,
            _ => 2,
        };
        let mut due: Vec<(u8, Vec<u8>)> = self
            .open
            .iter()
            .filter(|(key, _)| self.backoff.get(*key).is_none_or(|(_, at)| *at <= now_ms))
            .map(|(key, state)| (rank(state), key.clone()))
            .collect();
        due.sort();
        let mut changed = Vec::new();
        for (_, key) in due {
            let Some(state) = self.open.get(&key).cloned() else { continue };
            let before = state.status.clone();
            let journal = &self.journal;
            let persist = |s: &AnchorState| journal.save(s);
            let after = match self.target.step(state.clone(), now_ms, &persist).await {
                Ok(mut after) => {
                    self.backoff.remove(&key);
                    if after.status != before {
                        after.error = None;
                    }
                    after
                }
                Err(error) => {
                    let mut failed = state;
                    failed.error = Some(error.message.clone());
                    failed.updated_ms = now_ms;
                    match error.kind {
                        ErrorKind::Fatal => {
                            tracing::error!(%error, "anchor failed");
                            failed.status = Status::Failed;
                        }
                        ErrorKind::Held => {
                            self.backoff.remove(&key);
                            tracing::debug!(%error, "anchor held");
                        }
                        ErrorKind::Retryable => {
                            let (failures, _) = self.backoff.get(&key).copied().unwrap_or((0, 0));
                            let delay =
                                self.base_ms.saturating_mul(1 << failures.min(16)).min(BACKOFF_MAX_MS);
                            self.backoff.insert(key.clone(), (failures + 1, now_ms + delay));
                            tracing::warn!(%error, retry_in_ms = delay, "anchor step failed, retrying");
                        }
                    }
                    failed
                }
            };
            if let Err(error) = self.journal.save(&after) {
                tracing::error!(%error, "anchor state not persisted; it is stepped again");
                continue;
            }
            if after.status != before {
                changed.push(after.clone());
            }
            if after.is_open() {
                self.open.insert(key, after);
            } else {
                self.open.remove(&key);
                self.backoff.remove(&key);
            }
        }
        changed
    }
}
