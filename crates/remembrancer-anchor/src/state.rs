//! One anchor's state, as a node persists it (CBOR in its store) and shows it.

use serde::{Deserialize, Serialize};

/// Largest stored anchor state read back, in bytes.
pub const STATE_BYTES_MAX: usize = 64 * 1024;

/// Most transactions kept per anchor (the first and its replacements).
pub const TRANSACTIONS_MAX: usize = 16;

/// Where an anchor stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Status {
    /// Decided, nothing sent yet.
    Pending,
    /// A transaction is out (its latest replacement first in [`AnchorState::transactions`]),
    /// not yet in a block.
    Submitted,
    /// In a block, not yet deep enough.
    Included,
    /// Deep enough: the configured confirmations.
    Final,
    /// Refused for good (see [`AnchorState::error`]).
    Failed,
}

impl Status {
    /// The status as people and the API read it.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Submitted => "submitted",
            Status::Included => "included",
            Status::Final => "final",
            Status::Failed => "failed",
        }
    }
}

/// One signed transaction of an anchor: the first, or a replacement with raised fees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentTransaction {
    /// Its hash (`0x…`).
    pub hash: String,
    /// The signed transaction, EIP-2718 encoded, to send again unchanged if it was dropped.
    #[serde(with = "serde_bytes_hex")]
    pub raw: Vec<u8>,
    /// Its nonce.
    pub nonce: u64,
    /// `maxFeePerGas`, wei.
    pub max_fee: u128,
    /// `maxPriorityFeePerGas`, wei.
    pub tip: u128,
    /// When it was sent (host milliseconds).
    pub sent_ms: u64,
}

/// Where the anchor's transaction is, once in a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inclusion {
    /// The transaction.
    pub tx_hash: String,
    /// Block number.
    pub block: u64,
    /// Block hash (`0x…`), re-read at that height until final: a change is a reorg.
    pub block_hash: String,
    /// Index of the transaction in the block.
    pub tx_index: u64,
    /// Confirmations last seen (the block itself counts one).
    pub confirmations: u64,
    /// The block's timestamp (Unix seconds).
    pub timestamp: u64,
}

/// An RFC 3161 anchor: the token a TSA gave, verified when it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    /// The TSA that gave it (its URL).
    pub tsa: String,
    /// The TimeStampToken, DER.
    #[serde(with = "serde_bytes_hex")]
    pub token: Vec<u8>,
    /// What the token says.
    pub info: crate::tsp::TokenInfo,
}

/// What an anchor cost its payer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    /// Gas used by the transaction that was included.
    pub gas_used: u64,
    /// Wei paid: gas used × effective gas price.
    pub wei: u128,
    /// Transactions signed for this root (replacements and re-sends after reorgs included); for
    /// rfc3161, the requests sent to TSAs.
    pub transactions: u32,
}

/// One root's anchor at one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorState {
    /// The target (`eip155:31337`).
    pub target: String,
    /// The root anchored.
    pub root: [u8; 32],
    /// What it is for, as the host names it (the engine's request, encoded by the host).
    pub request: Vec<u8>,
    /// Where it stands.
    pub status: Status,
    /// Transactions sent for the current attempt, the latest first.
    pub transactions: Vec<SentTransaction>,
    /// The block holding it, once included.
    pub inclusion: Option<Inclusion>,
    /// The time-stamp token, for an rfc3161 anchor once final.
    #[serde(default)]
    pub stamp: Option<Stamp>,
    /// Reorgs that took it out of a block after it was included.
    pub reorgs: u32,
    /// What it cost.
    pub cost: Cost,
    /// The last error (retryable ones included), for `status`.
    pub error: Option<String>,
    /// When the request came (host milliseconds).
    pub created_ms: u64,
    /// When the state last changed (host milliseconds).
    pub updated_ms: u64,
}

impl AnchorState {
    /// A new anchor of `root` at `target`, nothing sent.
    pub fn new(target: &str, root: [u8; 32], request: Vec<u8>, now_ms: u64) -> Self {
        AnchorState {
            target: target.to_string(),
            root,
            request,
            status: Status::Pending,
            transactions: Vec::new(),
            inclusion: None,
            stamp: None,
            reorgs: 0,
            cost: Cost::default(),
            error: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        }
    }

    /// The key a host stores it under: the target, then the root (one anchor per root per
    /// target).
    pub fn key(&self) -> Vec<u8> {
        key(&self.target, &self.root)
    }

    /// Whether more steps can change it.
    pub fn is_open(&self) -> bool {
        !matches!(self.status, Status::Final | Status::Failed)
    }

    /// The state as CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let result = ciborium::into_writer(self, &mut out);
        debug_assert!(result.is_ok(), "writing CBOR to a Vec cannot fail");
        out
    }

    /// A state from CBOR (at most [`STATE_BYTES_MAX`] bytes).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > STATE_BYTES_MAX {
            return Err(format!("an anchor state of {} bytes, more than {STATE_BYTES_MAX}", bytes.len()));
        }
        ciborium::from_reader(bytes).map_err(|e| format!("not an anchor state: {e}"))
    }
}

/// The key of `root`'s anchor at `target`.
pub fn key(target: &str, root: &[u8; 32]) -> Vec<u8> {
    let mut key = target.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(root);
    key
}

mod serde_bytes_hex {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}
