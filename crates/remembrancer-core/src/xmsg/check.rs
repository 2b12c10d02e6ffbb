//! What a target checks before it takes a message, cheapest first, with no I/O: the record's
//! size and canonical form; the federation and the target; the target's own policy (which
//! sources may run which operations; reserved operations never); the deadline's horizon; the
//! lane (a replay below its floor, the same message again, another message at a taken
//! sequence, a frozen lane); then the proof: the record under a checkpoint its source's owner
//! signed and enough active members cosigned for the target's policy, consistent with what the
//! target knows of the source at that size, with strict RFC 9162 inclusion (the positions are
//! recomputed from the index and the size, never taken from the sender).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::envelope::{message_id, Envelope, RecordError, XRecord, DEADLINE_AHEAD_MAX_S, RECORD_BYTES_MAX};
use crate::bundle::{check_under, ProofBundle, BUNDLE_TYPE};
use crate::checkpoint::Checkpoint;
use crate::hash::{Digest, TaggedHash};
use crate::registry::Registry;

/// Messages a lane remembers by id, at most (older ones fall below its floor).
pub const LANE_IDS_MAX: usize = 4096;
/// Checkpoints a [`CheckpointMemo`] remembers, at most (the oldest is forgotten first).
pub const CHECKPOINT_MEMO_MAX: usize = 1024;

/// Source checkpoints whose notes verified (signatures, quorum), by registry version and the
/// note's SHA-256: the deliveries proven under one checkpoint cost their records and paths
/// only. A node keeps one; a checkpoint is remembered only when every check held.
#[derive(Debug, Default)]
pub struct CheckpointMemo {
    verified: BTreeMap<(u64, [u8; 32]), (Checkpoint, usize)>,
    order: VecDeque<(u64, [u8; 32])>,
}

impl CheckpointMemo {
    fn get(&self, key: &(u64, [u8; 32])) -> Option<(Checkpoint, usize)> {
        self.verified.get(key).cloned()
    }

    fn insert(&mut self, key: (u64, [u8; 32]), checkpoint: Checkpoint, signers: usize) {
        if self.verified.insert(key, (checkpoint, signers)).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CHECKPOINT_MEMO_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.verified.remove(&oldest);
            }
        }
    }
}

/// Which sources may run which operations on one target namespace: its own policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPolicy {
    /// The namespace the policy is for.
    pub namespace: String,
    /// Allowed (source, operation) pairs: a source is a namespace or `*`; an operation is a
    /// name, a prefix ending in `.*`, or `*`. Nothing is allowed that no entry allows.
    pub allow: Vec<Allow>,
    /// Distinct active cosigners (the owner's signature included) a source checkpoint must
    /// carry; 0: the registry's quorum. Never less than the registry's quorum.
    #[serde(default)]
    pub quorum: u32,
}

/// One entry of a [`TargetPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// A source namespace, or `*`.
    pub source: String,
    /// Operations: names, `prefix.*`, or `*`.
    pub operations: Vec<String>,
}

impl TargetPolicy {
    /// Whether `source` may run `operation` (reserved operations are refused before this).
    pub fn allows(&self, source: &str, operation: &str) -> bool {
        self.allow.iter().any(|entry| {
            (entry.source == "*" || entry.source == source)
                && entry.operations.iter().any(|allowed| {
                    allowed == "*"
                        || allowed == operation
                        || allowed
                            .strip_suffix('*')
                            .is_some_and(|prefix| prefix.ends_with('.') && operation.starts_with(prefix))
                })
        })
    }
}

/// What a target holds of one lane (source → target).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lane {
    /// Sequences below this are refused as replays (every one before it was recorded).
    pub floor: u64,
    /// Recorded messages by sequence: their ids (at most [`LANE_IDS_MAX`]).
    pub recorded: BTreeMap<u64, String>,
    /// Frozen by evidence: nothing more is taken on this lane.
    pub frozen: Option<String>,
}

impl Lane {
    /// Notes a message recorded (RECEIPT or TIMEOUT) at `sequence`; the floor rises past
    /// every sequence recorded without a gap, and the oldest ids are forgotten past the bound
    /// (the floor rises above them).
    pub fn record(&mut self, sequence: u64, id: String) {
        self.recorded.insert(sequence, id);
        while self.recorded.contains_key(&self.floor.max(1)) {
            self.floor = self.floor.max(1) + 1;
        }
        while self.recorded.len() > LANE_IDS_MAX {
            if let Some((oldest, _)) = self.recorded.pop_first() {
                self.floor = self.floor.max(oldest + 1);
            }
        }
    }
}

/// Why a target refused a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The record is not a canonical message within its bounds.
    #[error("{0}")]
    Record(#[from] RecordError),
    /// The record is another kind of messaging record.
    #[error("the record is a {0}, not a message")]
    NotAMessage(&'static str),
    /// For another federation.
    #[error("the message is for federation {found:?}, this is {expected:?}")]
    WrongFederation {
        /// This federation.
        expected: String,
        /// The message's.
        found: String,
    },
    /// For another namespace.
    #[error("the message is for {found}, not {expected}")]
    WrongTarget {
        /// This target.
        expected: String,
        /// The message's.
        found: String,
    },
    /// A `sys.*`, `federation.*` or `policy.*` operation.
    #[error("operation {0} is reserved: no remote message may invoke it")]
    Reserved(String),
    /// The target's policy does not allow this source this operation.
    #[error("{target}'s policy does not let {origin} run {operation}")]
    NotAllowed {
        /// The target.
        target: String,
        /// The message's source namespace.
        origin: String,
        /// The operation.
        operation: String,
    },
    /// A deadline more than 24 hours ahead.
    #[error("deadline {deadline} is more than 24 h after {now}")]
    DeadlineTooFar {
        /// The message's deadline.
        deadline: u64,
        /// Now, Unix seconds.
        now: u64,
    },
    /// Below the lane's floor and not a message it remembers: a replay.
    #[error("sequence {sequence} is below the lane's floor {floor}: a replay")]
    Replay {
        /// The message's sequence.
        sequence: u64,
        /// The lane's floor.
        floor: u64,
    },
    /// The lane is frozen by evidence.
    #[error("the lane is frozen: {0}")]
    Frozen(String),
    /// The proof bundle does not hold (the failing checks, one per line).
    #[error("the proof does not hold: {0}")]
    Proof(String),
    /// The bundle carries another record than the one delivered.
    #[error("the proof bundle is for another record")]
    OtherRecord,
    /// The checkpoint is of another namespace than the message's source.
    #[error("the checkpoint is of {found}, the message's source is {expected}")]
    WrongSource {
        /// The message's source.
        expected: String,
        /// The checkpoint's namespace.
        found: String,
    },
    /// Fewer active cosigners than the target's policy demands.
    #[error("{found} distinct active signers, {target}'s policy requires {required}")]
    Quorum {
        /// The target.
        target: String,
        /// Signers found.
        found: usize,
        /// Signers required.
        required: usize,
    },
}

/// Two signed statements that cannot both be honest, found while checking a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conflict {
    /// Two messages at one lane and sequence.
    Sequence {
        /// The lane's source.
        source: String,
        /// The sequence.
        sequence: u64,
        /// The id recorded first.
        first: String,
        /// The id delivered now.
        second: String,
    },
    /// A source checkpoint whose root differs from the one the target knows at that size.
    Fork {
        /// The source.
        source: String,
        /// The size.
        size: u64,
        /// The root the target knows, hex.
        known: String,
        /// The root delivered, hex.
        delivered: String,
    },
}

/// A delivery that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The message.
    pub envelope: Envelope,
    /// Its id.
    pub id: TaggedHash,
    /// The source checkpoint it is proven under.
    pub checkpoint: Checkpoint,
    /// Past its deadline: the target records a TIMEOUT, not a RECEIPT.
    pub expired: bool,
}

/// What a target does with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Record it (RECEIPT then run it, or TIMEOUT).
    Accept(Box<Accepted>),
    /// Already recorded: answer with the acknowledgement already given, run nothing.
    Recorded {
        /// The message's id.
        id: String,
    },
    /// Evidence: freeze the lane, keep and gossip it.
    Conflict(Conflict),
    /// Refused, with why.
    Refused(Refusal),
}

/// What the target knows when it checks a delivery.
pub struct Context<'a> {
    /// The registry the proof is checked under.
    pub registry: &'a Registry,
    /// The target namespace's policy.
    pub policy: &'a TargetPolicy,
    /// The lane's state.
    pub lane: &'a Lane,
    /// The root the target knows for the source at the delivered checkpoint's size (a final
    /// receipt it holds), if any.
    pub known_root: &'a dyn Fn(u64) -> Option<Digest>,
    /// Now, Unix seconds.
    pub now: u64,
    /// Checkpoints already verified, when the caller keeps a memo.
    pub checkpoints: Option<&'a RefCell<CheckpointMemo>>,
}

/// Checks a delivery: `record` (the message's record) and `bundle` (its proof bundle).
pub fn check_delivery(record: &[u8], bundle: &ProofBundle, context: &Context<'_>) -> Verdict {
    match check(record, bundle, context) {
        Ok(verdict) => verdict,
        Err(refusal) => Verdict::Refused(refusal),
    }
}

/// The failing checks of a report, one after another.
fn failed(report: &crate::receipt::VerificationReport) -> String {
    let failed: Vec<String> =
        report.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.check, c.detail)).collect();
    failed.join("; ")
}

fn check(record: &[u8], bundle: &ProofBundle, context: &Context<'_>) -> Result<Verdict, Refusal> {
    // 1. Size and canonical form, before anything else is read.
    if record.len() > RECORD_BYTES_MAX {
        return Err(RecordError::TooLarge(format!("a record of {} bytes", record.len())).into());
    }
    let envelope = match XRecord::decode(record)? {
        XRecord::Message(envelope) => envelope,
        XRecord::Receipt { .. } => return Err(Refusal::NotAMessage("receipt")),
        XRecord::Ack { .. } => return Err(Refusal::NotAMessage("ack")),
        XRecord::Timeout { .. } => return Err(Refusal::NotAMessage("timeout")),
    };
    // 2. Federation and target.
    if envelope.federation != context.registry.name {
        return Err(Refusal::WrongFederation {
            expected: context.registry.name.clone(),
            found: envelope.federation,
        });
    }
    if envelope.target != context.policy.namespace {
        return Err(Refusal::WrongTarget {
            expected: context.policy.namespace.clone(),
            found: envelope.target,
        });
    }
    // 3. The target's policy.
    if envelope.is_reserved() {
        return Err(Refusal::Reserved(envelope.operation));
    }
    if !context.policy.allows(&envelope.source, &envelope.operation) {
        return Err(Refusal::NotAllowed {
            target: envelope.target,
            origin: envelope.source,
            operation: envelope.operation,
        });
    }
    if envelope.deadline > context.now.saturating_add(DEADLINE_AHEAD_MAX_S) {
        return Err(Refusal::DeadlineTooFar { deadline: envelope.deadline, now: context.now });
    }
    // 4. The lane. The id is computed under the algorithm the proof names; the proof below
    //    holds it to the checkpoint's.
    let id = message_id(record, bundle.proof.leaf.algorithm);
    let lane = context.lane;
    if let Some(reason) = &lane.frozen {
        return Err(Refusal::Frozen(reason.clone()));
    }
    // The same message again is answered without proof work (its acknowledgement is
    // public); another message at a taken sequence is evidence only once it is proven too.
    let taken = match lane.recorded.get(&envelope.sequence) {
        Some(recorded) if *recorded == id.to_string() => {
            return Ok(Verdict::Recorded { id: recorded.clone() })
        }
        Some(recorded) => Some(recorded.clone()),
        None if envelope.sequence < lane.floor => {
            return Err(Refusal::Replay { sequence: envelope.sequence, floor: lane.floor })
        }
        None => None,
    };
    // 5. The proof: the record under a checkpoint of the source, signed by its owner and
    //    cosigned to quorum, with strict inclusion.
    let bundled =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bundle.record.as_bytes());
    if bundled.as_deref() != Ok(record) {
        return Err(Refusal::OtherRecord);
    }
    if bundle.bundle_type != BUNDLE_TYPE {
        return Err(Refusal::Proof(format!("bundle_type {:?}", bundle.bundle_type)));
    }
    let key = (context.registry.version, {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(bundle.checkpoint.as_bytes()).into();
        digest
    });
    let remembered = context.checkpoints.and_then(|memo| memo.borrow().get(&key));
    let (checkpoint, signers) = match remembered {
        Some(known) => known,
        None => {
            let (report, checkpoint) =
                crate::receipt::verify_note(bundle.checkpoint.as_bytes(), context.registry);
            if !report.all_ok() {
                return Err(Refusal::Proof(failed(&report)));
            }
            let Some(checkpoint) = checkpoint else {
                return Err(Refusal::Proof("the checkpoint is not a remembrancer checkpoint".to_string()));
            };
            let signers = report.signers.len();
            if let Some(memo) = context.checkpoints {
                memo.borrow_mut().insert(key, checkpoint.clone(), signers);
            }
            (checkpoint, signers)
        }
    };
    let report = check_under(bundle, &checkpoint);
    if !report.all_ok() {
        return Err(Refusal::Proof(failed(&report)));
    }
    if checkpoint.namespace != envelope.source {
        return Err(Refusal::WrongSource { expected: envelope.source, found: checkpoint.namespace });
    }
    let required = (context.policy.quorum.max(context.registry.quorum)) as usize;
    if signers < required {
        return Err(Refusal::Quorum { target: envelope.target, found: signers, required });
    }
    if let Some(first) = taken {
        return Ok(Verdict::Conflict(Conflict::Sequence {
            source: envelope.source,
            sequence: envelope.sequence,
            first,
            second: id.to_string(),
        }));
    }
    // 6. What the target knows of the source at that size.
    if let Some(known) = (context.known_root)(checkpoint.size) {
        if known != checkpoint.root {
            return Ok(Verdict::Conflict(Conflict::Fork {
                source: envelope.source,
                size: checkpoint.size,
                known: hex::encode(known),
                delivered: hex::encode(checkpoint.root),
            }));
        }
    }
    let expired = context.now > envelope.deadline;
    Ok(Verdict::Accept(Box::new(Accepted { envelope, id, checkpoint, expired })))
}
