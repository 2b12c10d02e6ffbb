//! Anchoring a federation's roots outside it.
//!
//! The engine decides who anchors what and when (`Output::AnchorRequest`); a host hands each
//! request to an [`Anchorer`], which drives one [`AnchorState`] per root through
//! `Pending → Submitted → Included → Final`, back from `Included` when a reorg takes the
//! transaction away, to `Failed` only for what retrying cannot mend. Every change of state is
//! handed to the host's [`Journal`] before anything is sent, so a node killed at any point
//! resumes the same transaction and never pays twice for one root.
//!
//! Targets: [`eip155::Eip155`] (an EIP-1559 transaction to the anchoring account's own
//! address, calldata `"RMB1" || root`) and [`rfc3161::Rfc3161`] (a time-stamp token over the
//! same bytes from one of several TSAs, verified by [`tsp`]).

pub mod anchorer;
pub mod budget;
pub mod der;
pub mod devtsa;
pub mod eip155;
pub mod proof;
pub mod rfc3161;
pub mod state;
pub mod transport;
pub mod tsp;

pub use anchorer::{Anchorer, Journal};
pub use state::{AnchorState, Cost, Stamp, Status};

/// Whether retrying may mend a target's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The RPC is down, slow, or answered something unusable: try again later (with backoff).
    Retryable,
    /// Retrying the same thing cannot work (a wrong chain, a key without funds, a fee cap
    /// below what the chain asks): an operator must act.
    Fatal,
    /// Held by a limit the federation can lift (the treasury's caps): looked at again on every
    /// tick, without backoff, so a raise takes effect at once.
    Held,
}

/// Why a target could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{target}: {message}")]
pub struct TargetError {
    /// The target (`eip155:31337`).
    pub target: String,
    /// Retryable or fatal.
    pub kind: ErrorKind,
    /// What happened and, where a person must act, what to do.
    pub message: String,
}

impl TargetError {
    /// A failure worth retrying.
    pub fn retryable(target: &str, message: impl Into<String>) -> Self {
        TargetError { target: target.to_string(), kind: ErrorKind::Retryable, message: message.into() }
    }

    /// A limit holds the anchor back.
    pub fn held(target: &str, message: impl Into<String>) -> Self {
        TargetError { target: target.to_string(), kind: ErrorKind::Held, message: message.into() }
    }

    /// A failure retrying cannot mend.
    pub fn fatal(target: &str, message: impl Into<String>) -> Self {
        TargetError { target: target.to_string(), kind: ErrorKind::Fatal, message: message.into() }
    }
}

/// An anchor target: moves one anchor one step on (see [`Status`]). Steps are idempotent per
/// root: a step on a state that already says what happened only looks.
pub trait Target: Send + Sync {
    /// The target's name as receipts write it (`eip155:31337`).
    fn name(&self) -> &str;

    /// One step of `state`: send what is pending, look for what was sent, count confirmations,
    /// notice a reorg or a dropped or stuck transaction. `persist` is called with every new
    /// state before anything is sent on its strength. Returns the state after the step.
    fn step(
        &self,
        state: AnchorState,
        now_ms: u64,
        persist: &(dyn Fn(&AnchorState) -> Result<(), String> + Send + Sync),
    ) -> impl std::future::Future<Output = Result<AnchorState, TargetError>> + Send;
}
