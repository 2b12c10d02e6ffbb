//! Cross-namespace messages (the spec's Stage 3): a source namespace appends an [`Envelope`]
//! to its own tree; once a federation receipt covers it, the envelope travels to the target's
//! owner with a proof bundle; the target checks it ([`check_delivery`]) and appends a RECEIPT
//! (or a TIMEOUT past the deadline), runs the operation, and appends an ACK, which goes back
//! with its own proof. Everything here is pure: the node moves the bytes.
//!
//! The spec's `namespace.message@1.0.0` JSON is the shape people and programs read
//! ([`Envelope::to_spec_json`]); what is checked is the canonical record and its proof bundle,
//! and the proof's positions are recomputed, never taken from the sender.

mod check;
mod envelope;
mod evidence;
mod offline;

pub use check::{
    check_delivery, Accepted, Allow, CheckpointMemo, Conflict, Context, Lane, Refusal, TargetPolicy, Verdict,
    CHECKPOINT_MEMO_MAX, LANE_IDS_MAX,
};
pub use envelope::{
    canonical_json, check_payload, is_spec_namespace, message_id, AckError, Action, Envelope, Outcome,
    RecordError, XRecord, DEADLINE_AHEAD_MAX_S, OPERATION_BYTES_MAX, PAYLOAD_BYTES_MAX, RECORD_BYTES_MAX,
    RECORD_TAG, RESERVED_PREFIXES,
};
pub use evidence::{check_lane_evidence, proven_message};
pub use offline::verify_message;
