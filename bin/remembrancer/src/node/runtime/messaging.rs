//! Cross-namespace messages on a node: the outbox. `namespace message` sends: the envelope is
//! appended to the source namespace (which this node owns) as a record, at the lane's next
//! sequence, and kept in the outbox; its status follows from what the node holds (committed
//! until a federation receipt covers its index, final after). The lane counters and entries are
//! stored synced before the answer, so a restart never reuses a sequence.

use remembrancer_core::xmsg::{canonical_json, Action, Envelope, Outcome, DEADLINE_AHEAD_MAX_S};
use serde::{Deserialize, Serialize};

use super::*;

/// Deadline of a message that names none, seconds after it is sent.
pub const DEFAULT_DEADLINE_S: u64 = 3600;

/// What became of a message this node sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutState {
    /// In the source's tree; delivered once a receipt covers it.
    Committed,
    /// The target recorded it (its RECEIPT record is proven).
    Delivered {
        /// When this node learnt it (host milliseconds).
        at_ms: u64,
    },
    /// The target acknowledged it (its ACK record is proven).
    Acked {
        /// What the target's handler did.
        outcome: Outcome,
        /// When this node learnt it.
        at_ms: u64,
    },
    /// The target recorded a TIMEOUT (proven): it came after its deadline and was not run.
    Expired {
        /// When this node learnt it.
        at_ms: u64,
    },
}

/// One message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The message.
    pub envelope: Envelope,
    /// Its id.
    pub id: String,
    /// Its record's index in the source's tree.
    pub index: u64,
    /// When it was sent (Unix seconds).
    pub sent_at: u64,
    /// What became of it.
    pub state: OutState,
}

fn outbox_key(id: &str) -> Vec<u8> {
    format!("o/{id}").into_bytes()
}

fn lane_key(source: &str, target: &str) -> Vec<u8> {
    format!("lo/{source}\0{target}").into_bytes()
}

fn now_s() -> u64 {
    remembrancer_host::now_ms() / 1000
}

/// The body `POST /api/v1/messages` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    source: String,
    target: String,
    action: Action,
    operation: String,
    #[serde(default)]
    parameters: Option<serde_json::Value>,
    /// Seconds from now (at most 24 h).
    #[serde(default)]
    deadline_in: Option<u64>,
    #[serde(default)]
    reply_to: Option<String>,
}

impl Node {
    /// `POST /api/v1/messages`: appends the message to its source's tree and keeps it.
    pub(super) fn send_message(
        &mut self,
        host: &mut NodeHost,
        request: &Request,
    ) -> anyhow::Result<Response> {
        let send: SendRequest = match serde_json::from_slice(&request.body) {
            Ok(send) => send,
            Err(error) => return Ok(Response::error(400, format!("not a message: {error}"))),
        };
        if host.engine().tree(&send.source).is_none() {
            return Ok(Response::error(
                409,
                format!("{} is not owned by this node: send from a namespace it owns", send.source),
            ));
        }
        let deadline_in = send.deadline_in.unwrap_or(DEFAULT_DEADLINE_S);
        if deadline_in > DEADLINE_AHEAD_MAX_S {
            return Ok(Response::error(400, "the deadline is at most 24 h (86400 s) ahead"));
        }
        let parameters = send.parameters.unwrap_or_else(|| serde_json::json!({}));
        let lane = lane_key(&send.source, &send.target);
        let sequence = match self.store.message(&lane)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().unwrap_or([0; 8])) + 1,
            None => 1,
        };
        let envelope = Envelope {
            federation: host.engine().registry().name.clone(),
            source: send.source.clone(),
            target: send.target,
            sequence,
            deadline: now_s() + deadline_in,
            action: send.action,
            operation: send.operation,
            parameters: canonical_json(&parameters),
            reply_to: send.reply_to,
        };
        if let Err(error) = envelope.check() {
            return Ok(Response::error(400, error.to_string()));
        }
        if envelope.is_reserved() {
            return Ok(Response::error(
                400,
                format!("operation {} is reserved: no message may invoke it", envelope.operation),
            ));
        }
        // The sequence is taken before the record exists: a crash between the two leaves a
        // gap, which the target's lane passes once the message's deadline is over.
        self.store.put_message(&lane, &sequence.to_be_bytes())?;
        self.commit_waiting(host)?;
        let record = envelope.record();
        let committed = host.input_or_refusal(
            self,
            Input::Commit { namespace: envelope.source.clone(), records: vec![record] },
        )?;
        let index = match committed {
            Ok(events) => events.iter().find_map(|event| match event {
                Event::Committed { namespace, first_index, .. } if *namespace == envelope.source => {
                    Some(*first_index)
                }
                _ => None,
            }),
            Err(error) => return Ok(Response::error(409, format!("not sent: {error}"))),
        };
        let Some(index) = index else {
            return Ok(Response::error(503, "the commit was not answered; see the node's log"));
        };
        let algorithm = host.engine().tree(&envelope.source).map_or(HashAlgorithm::Sha256, |t| t.algorithm());
        let id = envelope.id(algorithm).to_string();
        let entry =
            OutboxEntry { envelope, id: id.clone(), index, sent_at: now_s(), state: OutState::Committed };
        self.store.put_message(&outbox_key(&id), &cbor(&entry))?;
        tracing::info!(%id, index, source = %entry.envelope.source, target = %entry.envelope.target, "message sent");
        Ok(Response::ok(view(host, &entry)))
    }

    /// `GET /api/v1/messages`: one message by id (or a prefix of at least 8 characters), or
    /// the outbox of `namespace`.
    pub(super) fn messages(&self, host: &NodeHost, request: &Request) -> Response {
        let entries = match self.store.messages(b"o/") {
            Ok(entries) => entries,
            Err(error) => return Response::error(500, format!("the outbox could not be read: {error}")),
        };
        let entries = entries
            .into_iter()
            .filter_map(|(_, value)| ciborium::from_reader::<OutboxEntry, _>(value.as_slice()).ok());
        if let Some(wanted) = request.param("id") {
            let wanted = wanted.trim_start_matches("sha256:").to_ascii_lowercase();
            let matching: Vec<OutboxEntry> =
                entries.filter(|e| e.id.trim_start_matches("sha256:").starts_with(&wanted)).collect();
            return match matching.as_slice() {
                [entry] if wanted.len() >= 8 => Response::ok(view(host, entry)),
                [] => Response::error(404, format!("no message {wanted} in this node's outbox")),
                _ => Response::error(
                    400,
                    format!("{wanted} is ambiguous or too short: give at least 8 hex digits"),
                ),
            };
        }
        let namespace = request.param("namespace");
        let listed: Vec<serde_json::Value> = entries
            .filter(|e| namespace.is_none_or(|ns| e.envelope.source == ns))
            .map(|e| view(host, &e))
            .collect();
        Response::ok(serde_json::Value::Array(listed))
    }
}

fn cbor(value: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    let result = ciborium::into_writer(value, &mut out);
    debug_assert!(result.is_ok(), "writing CBOR to a Vec cannot fail");
    out
}

/// A message's status word: committed → final → delivered → acked | expired.
fn status(host: &NodeHost, entry: &OutboxEntry) -> &'static str {
    match &entry.state {
        OutState::Committed => {
            let final_size = host.engine().finals().get(&entry.envelope.source).map_or(0, |r| r.tree_size);
            if final_size > entry.index {
                "final"
            } else {
                "committed"
            }
        }
        OutState::Delivered { .. } => "delivered",
        OutState::Acked { .. } => "acked",
        OutState::Expired { .. } => "expired",
    }
}

/// An outbox entry as the API shows it.
fn view(host: &NodeHost, entry: &OutboxEntry) -> serde_json::Value {
    let envelope = &entry.envelope;
    let outcome = match &entry.state {
        OutState::Acked { outcome, .. } => serde_json::to_value(outcome).ok(),
        _ => None,
    };
    serde_json::json!({
        "id": entry.id,
        "status": status(host, entry),
        "source": envelope.source,
        "target": envelope.target,
        "sequence": envelope.sequence,
        "action": envelope.action.name(),
        "operation": envelope.operation,
        "parameters": serde_json::from_str::<serde_json::Value>(&envelope.parameters).unwrap_or_default(),
        "deadline": envelope.deadline,
        "index": entry.index,
        "sent_at": entry.sent_at,
        "outcome": outcome,
    })
}
