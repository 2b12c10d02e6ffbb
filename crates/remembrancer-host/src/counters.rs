//! What the host counts of its network traffic and its writes, for an operator's `status`.

use std::collections::{BTreeMap, VecDeque};

use remembrancer_core::engine::Output;
use remembrancer_core::message::{Content, MessageType};

/// Synced-write times kept.
const WRITE_TIMES_KEPT: usize = 1024;

/// Counters of a host since it started.
#[derive(Debug, Default, Clone)]
pub struct HostCounters {
    /// Gossip messages that failed to decode, per peer (at most 4096 peers, the rest under
    /// "others").
    pub garbage: BTreeMap<String, u64>,
    /// Messages from keys outside the registry, and direct messages from non-members.
    pub outsiders: u64,
    /// Refused messages per connection they arrived on (the peer that sent or relayed them;
    /// at most 4096 peers, the rest under "others").
    pub refused_from: BTreeMap<String, u64>,
    /// Gossip publishes that failed (no peer, or every peer's send queue full).
    pub publish_failed: u64,
    /// Signatures (of messages, and inside anchors and countersigns) verified in a batch with
    /// others that arrived together.
    pub batch_verified: u64,
    /// Bookkeeping messages (receipts, heartbeats, other owners' countersignatures) handled
    /// after a wait, so that those on a receipt's path went first.
    pub deferred: u64,
    /// Batches written synced (they released messages or answers), and unsynced (they
    /// released nothing; the next synced write makes them durable).
    pub writes_synced: u64,
    /// See `writes_synced`.
    pub writes_unsynced: u64,
    /// Synced writes by what they released ([`release_kind`]).
    pub writes_synced_by_release: BTreeMap<&'static str, u64>,
    /// Messages broadcast, and the frames that carried them (the messages one synced write
    /// released share frames).
    pub messages_published: u64,
    /// See `messages_published`.
    pub frames_published: u64,
    /// Of the frames, those sent on each member's message stream rather than by gossip.
    pub frames_streamed: u64,
    /// How long the last synced writes took, milliseconds (microsecond precision): what every
    /// anchor and countersignature waits for before it goes out (a slow disk shows here
    /// first).
    pub synced_write_ms: VecDeque<f64>,
    /// Messages judged, by kind (the order of `MessageType::ALL`) and verdict (accepted,
    /// ignored, refused).
    pub validated: [[u64; 3]; MessageType::ALL.len()],
}

impl HostCounters {
    /// Counts a synced write of `millis` that released `held`.
    pub(crate) fn synced_write(&mut self, held: &[Output], millis: f64) {
        self.writes_synced += 1;
        *self.writes_synced_by_release.entry(release_kind(held)).or_default() += 1;
        self.synced_write_ms.push_back(millis);
        if self.synced_write_ms.len() > WRITE_TIMES_KEPT {
            self.synced_write_ms.pop_front();
        }
    }

    /// Counts one message of `kind` judged `verdict` (0 accepted, 1 ignored, 2 refused).
    pub(crate) fn validated(&mut self, kind: MessageType, verdict: usize) {
        if let Some(at) = MessageType::ALL.iter().position(|k| *k == kind) {
            self.validated[at][verdict.min(2)] += 1;
        }
    }

    /// Counts one more refusal of a message that came on `peer`'s connection.
    pub(crate) fn refused(&mut self, peer: &str) {
        let key =
            if self.refused_from.len() < crate::PEERS_COUNTED_MAX || self.refused_from.contains_key(peer) {
                peer.to_string()
            } else {
                "others".to_string()
            };
        *self.refused_from.entry(key).or_default() += 1;
    }

    /// Counts one more undecodable message from `peer`.
    pub(crate) fn garbage(&mut self, peer: &str) {
        let key = if self.garbage.len() < crate::PEERS_COUNTED_MAX || self.garbage.contains_key(peer) {
            peer.to_string()
        } else {
            "others".to_string()
        };
        *self.garbage.entry(key).or_default() += 1;
    }
}

/// What a synced write released: the first of an anchor, a countersignature, a receipt or
/// another message it held back, or `acknowledgements` when it released only answers.
fn release_kind(held: &[Output]) -> &'static str {
    let kind = |output: &Output| match output {
        Output::Publish(message) | Output::Send { message, .. } => match message.content {
            Content::Anchor(_) => 0,
            Content::Countersign(_) => 1,
            Content::Receipt(_) => 2,
            _ => 3,
        },
        _ => 3,
    };
    match held.iter().map(kind).min() {
        Some(0) => "anchor",
        Some(1) => "countersign",
        Some(2) => "receipt",
        Some(_) => "other",
        None => "acknowledgements",
    }
}
