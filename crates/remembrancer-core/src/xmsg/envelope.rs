//! The records of cross-namespace messaging, as they are appended to namespace trees: the
//! envelope a source appends (the message), and the RECEIPT, ACK and TIMEOUT records its target
//! appends. Each is `RECORD_TAG || CBOR`, in one canonical encoding: a record is read only if
//! writing what was read gives the same bytes, and parameters and results are JSON objects in
//! canonical form (keys sorted, no whitespace), so one message has one id.

use serde::{Deserialize, Serialize};

use crate::hash::{HashAlgorithm, TaggedHash};

/// The first bytes of every messaging record (a NUL-terminated version tag: no record an
/// application appends by accident starts with it).
pub const RECORD_TAG: &[u8] = b"remembrancer/xmsg/v1\0";
/// Largest parameters or result, bytes of canonical JSON.
pub const PAYLOAD_BYTES_MAX: usize = 32 * 1024;
/// Largest messaging record, bytes (a payload and what surrounds it).
pub const RECORD_BYTES_MAX: usize = PAYLOAD_BYTES_MAX + 4096;
/// Latest deadline a message may carry, seconds after its target checks it.
pub const DEADLINE_AHEAD_MAX_S: u64 = 24 * 3600;
/// Longest operation name, bytes.
pub const OPERATION_BYTES_MAX: usize = 128;
/// Operation prefixes no remote message may invoke.
pub const RESERVED_PREFIXES: [&str; 3] = ["sys.", "federation.", "policy."];

/// What a message asks of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Change the target's state (its handler may append records).
    Invoke,
    /// Read the target's state; the result names the tree size it was read at.
    Query,
    /// Tell the target something; nothing comes back but the acknowledgement.
    Notify,
}

impl Action {
    /// The action as the spec writes it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Invoke => "invoke",
            Action::Query => "query",
            Action::Notify => "notify",
        }
    }
}

/// A message from one namespace to another: the record its source appends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The federation both namespaces are in (a message does not cross federations).
    pub federation: String,
    /// The sending namespace.
    pub source: String,
    /// The receiving namespace.
    pub target: String,
    /// The message's place in its lane (source → target), from 1, without gaps.
    pub sequence: u64,
    /// After this (Unix seconds) the target records a TIMEOUT instead of running it.
    pub deadline: u64,
    /// invoke, query or notify.
    pub action: Action,
    /// The operation (`status.update`).
    pub operation: String,
    /// Its parameters: a JSON object in canonical form.
    pub parameters: String,
    /// The namespace the acknowledgement goes to, if not the source.
    pub reply_to: Option<String>,
}

/// Why an acknowledgement reports an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckError {
    /// No handler for the operation.
    UnknownOperation,
    /// The parameters are not what the handler takes.
    BadParameters,
    /// The target's policy does not let this source run this operation.
    NotAllowed,
    /// The handler ran and failed.
    HandlerFailed,
    /// The handler's result is over [`PAYLOAD_BYTES_MAX`].
    ResultTooLarge,
    /// The target stopped between recording the message and recording what its handler did:
    /// the handler may have run once (its effects, if any, are in the target's tree); it is
    /// never run again.
    Interrupted,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// Done; for a query, the result and the target's tree size it was read at.
    Ok {
        /// The result, a JSON object in canonical form (empty for none).
        result: String,
        /// The target tree's size the result was evaluated at (queries).
        evaluated_at: Option<u64>,
    },
    /// Refused or failed, with why.
    Error {
        /// Why.
        code: AckError,
    },
}

/// A messaging record: what a tree holds about a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum XRecord {
    /// The message, in its source's tree.
    Message(Envelope),
    /// In the target's tree: the message was checked and accepted, before its handler ran.
    Receipt {
        /// The message's id.
        message: String,
        /// Its source.
        source: String,
        /// Its sequence in the lane.
        sequence: u64,
    },
    /// In the target's tree: what the handler did.
    Ack {
        /// The message's id.
        message: String,
        /// Its source.
        source: String,
        /// Its sequence in the lane.
        sequence: u64,
        /// The outcome.
        outcome: Outcome,
    },
    /// In the target's tree: the message came after its deadline and was not run.
    Timeout {
        /// The message's id.
        message: String,
        /// Its source.
        source: String,
        /// Its sequence in the lane.
        sequence: u64,
        /// The deadline it missed.
        deadline: u64,
    },
}

/// Why bytes are not a messaging record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Over [`RECORD_BYTES_MAX`] or a payload over [`PAYLOAD_BYTES_MAX`].
    #[error("too large: {0}")]
    TooLarge(String),
    /// Not tagged, not CBOR of a record, or not in the one canonical encoding.
    #[error("not a canonical messaging record: {0}")]
    NotCanonical(String),
    /// A field out of its form (a namespace, an operation, a sequence of 0).
    #[error("malformed: {0}")]
    Malformed(String),
}

/// `value` as canonical JSON: object keys sorted at every level, no whitespace.
pub fn canonical_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", serde_json::Value::String(k.clone()), canonical_json(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => {
            format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}

/// A payload (parameters or result) checked: a JSON object, canonical, within its bound.
pub fn check_payload(text: &str, what: &str) -> Result<(), RecordError> {
    if text.len() > PAYLOAD_BYTES_MAX {
        return Err(RecordError::TooLarge(format!(
            "{what} of {} bytes, over {PAYLOAD_BYTES_MAX}",
            text.len()
        )));
    }
    if text.is_empty() && what == "result" {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| RecordError::NotCanonical(format!("{what} is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(RecordError::Malformed(format!("{what} is not a JSON object")));
    }
    if canonical_json(&value) != text {
        return Err(RecordError::NotCanonical(format!(
            "{what} is not canonical JSON (sorted keys, no spaces)"
        )));
    }
    Ok(())
}

/// Whether `namespace` has the spec's form `<a-z0-9>+:<a-z0-9>+`.
pub fn is_spec_namespace(namespace: &str) -> bool {
    let ok =
        |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    namespace.len() <= crate::checkpoint::NAMESPACE_BYTES_MAX
        && namespace.split_once(':').is_some_and(|(a, b)| ok(a) && ok(b))
}

impl XRecord {
    /// The record's bytes: the tag, then CBOR.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = RECORD_TAG.to_vec();
        let result = ciborium::into_writer(self, &mut out);
        debug_assert!(result.is_ok(), "writing CBOR to a Vec cannot fail");
        out
    }

    /// Reads a record: bounded first, then decoded, then held to its canonical encoding and
    /// its fields' forms.
    pub fn decode(bytes: &[u8]) -> Result<XRecord, RecordError> {
        if bytes.len() > RECORD_BYTES_MAX {
            return Err(RecordError::TooLarge(format!(
                "a record of {} bytes, over {RECORD_BYTES_MAX}",
                bytes.len()
            )));
        }
        let body = bytes
            .strip_prefix(RECORD_TAG)
            .ok_or_else(|| RecordError::NotCanonical("no remembrancer/xmsg/v1 tag".to_string()))?;
        let record: XRecord = crate::message::decode_bounded(body)
            .map_err(|e| RecordError::NotCanonical(format!("not a messaging record: {e}")))?;
        if record.encode() != bytes {
            return Err(RecordError::NotCanonical("not in its canonical encoding".to_string()));
        }
        record.check()?;
        Ok(record)
    }

    /// The fields' forms.
    fn check(&self) -> Result<(), RecordError> {
        match self {
            XRecord::Message(envelope) => envelope.check(),
            XRecord::Ack { outcome: Outcome::Ok { result, .. }, sequence, .. } => {
                check_payload(result, "result")?;
                positive(*sequence)
            }
            XRecord::Receipt { sequence, .. }
            | XRecord::Ack { sequence, .. }
            | XRecord::Timeout { sequence, .. } => positive(*sequence),
        }
    }
}

fn positive(sequence: u64) -> Result<(), RecordError> {
    if sequence == 0 {
        return Err(RecordError::Malformed("sequence 0: lanes count from 1".to_string()));
    }
    Ok(())
}

impl Envelope {
    /// The record the source appends.
    pub fn record(&self) -> Vec<u8> {
        XRecord::Message(self.clone()).encode()
    }

    /// The message's id: the leaf hash of its record in the source's tree.
    pub fn id(&self, algorithm: HashAlgorithm) -> TaggedHash {
        message_id(&self.record(), algorithm)
    }

    /// The lane: source → target.
    pub fn lane(&self) -> (String, String) {
        (self.source.clone(), self.target.clone())
    }

    /// The fields' forms (not the deadline, which depends on when it is checked).
    pub fn check(&self) -> Result<(), RecordError> {
        for (what, namespace) in [("source", &self.source), ("target", &self.target)]
            .into_iter()
            .chain(self.reply_to.iter().map(|r| ("reply_to", r)))
        {
            if !is_spec_namespace(namespace) {
                return Err(RecordError::Malformed(format!(
                    "{what} {namespace:?} is not a namespace like dao:vaultmesh"
                )));
            }
        }
        if self.source == self.target {
            return Err(RecordError::Malformed("a message to its own namespace".to_string()));
        }
        let operation_ok = !self.operation.is_empty()
            && self.operation.len() <= OPERATION_BYTES_MAX
            && self
                .operation
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !operation_ok {
            return Err(RecordError::Malformed(format!(
                "operation {:?}: 1 to {OPERATION_BYTES_MAX} of a-z, 0-9, '.', '_', '-'",
                self.operation
            )));
        }
        check_payload(&self.parameters, "parameters")?;
        positive(self.sequence)
    }

    /// Whether the operation is one no remote message may invoke.
    pub fn is_reserved(&self) -> bool {
        RESERVED_PREFIXES.iter().any(|prefix| self.operation.starts_with(prefix))
    }

    /// The spec's `namespace.message@1.0.0` JSON of this message, with `proof` the inclusion
    /// proof of its record (`root`, `leaf`, and `path` of `position` and `hash`; a verifier
    /// recomputes the positions from the index and size and ignores these).
    pub fn to_spec_json(&self, proof: &crate::merkle::InclusionProofJson) -> serde_json::Value {
        let parameters: serde_json::Value =
            serde_json::from_str(&self.parameters).unwrap_or_else(|_| serde_json::json!({}));
        let path: Vec<serde_json::Value> = proof
            .path
            .iter()
            .map(|step| {
                let position = match step.position {
                    crate::merkle::Position::Left => "left",
                    crate::merkle::Position::Right => "right",
                };
                serde_json::json!({ "position": position, "hash": step.hash.to_string() })
            })
            .collect();
        serde_json::json!({
            "source": self.source,
            "target": self.target,
            "action": self.action.name(),
            "payload": {
                "operation": self.operation,
                "parameters": parameters,
                "proof": { "root": proof.root.to_string(), "path": path, "leaf": proof.leaf.to_string() },
            },
        })
    }
}

/// A message's id from its record: the record's leaf hash under the source tree's algorithm.
pub fn message_id(record: &[u8], algorithm: HashAlgorithm) -> TaggedHash {
    TaggedHash::new(algorithm, algorithm.leaf_hash(record))
}
