//! Cross-namespace messages on a node. The outbox: `namespace message` appends the envelope to
//! the source namespace (which this node owns) at the lane's next sequence; once a federation
//! receipt covers it, it goes to the target's owner with its proof, again with a growing wait
//! until an answer is proven. The inbox (`inbox.rs`): deliveries checked, recorded, run and
//! answered. Everything is stored synced before it is acted on, so a restart never reuses a
//! sequence nor runs a message twice.

mod inbox;
mod relay;

use std::collections::BTreeSet;

use remembrancer_core::message::{Content, XAckContent};
use remembrancer_core::xmsg::{canonical_json, Action, Envelope, Outcome, XRecord, DEADLINE_AHEAD_MAX_S};
use serde::{Deserialize, Serialize};

use super::*;

/// Deliveries and acknowledgements waiting for the next messaging tick, at most (more are
/// dropped and counted; their senders send them again).
const INBOUND_MAX: usize = 1024;
/// Longest wait between two deliveries of one message.
const RETRY_MAX_MS: u64 = 60_000;
/// How long after its deadline a message is still delivered (for the target's TIMEOUT).
const AFTER_DEADLINE_S: u64 = 24 * 3600;
/// Inbox messages whose relayers are remembered, to be answered too.
const ANSWER_ALSO_MAX: usize = 1024;

/// What the node's messaging holds in memory; the rest is in the store.
#[derive(Default)]
pub struct Messaging {
    inbound: VecDeque<(String, Content)>,
    /// Inbound items dropped because the queue was full.
    pub dropped: u64,
    /// Deliveries refused.
    pub refused: u64,
    /// Outbox ids with no proven answer yet, and their next delivery: (attempts, at ms).
    open: BTreeMap<String, (u32, u64)>,
    /// Inbox ids whose answer is to be sent (again).
    to_answer: BTreeSet<String>,
    /// Members that relayed an inbox message, to be answered too (besides the owner of its
    /// reply-to namespace): at most [`ANSWER_ALSO_MAX`] messages, two members each.
    answer_also: BTreeMap<String, BTreeSet<String>>,
    /// Messages held in custody for their source, and their next relay: (attempts, at ms).
    custody: BTreeMap<String, (u32, u64)>,
    /// Source checkpoints already verified, for the deliveries under them.
    checkpoints: std::cell::RefCell<remembrancer_core::xmsg::CheckpointMemo>,
}

impl Messaging {
    /// The open outbox entries and unanswered inbox entries of `store`.
    pub fn load(store: &Store) -> anyhow::Result<Messaging> {
        let mut messaging = Messaging::default();
        for (_, value) in store.messages(b"o/")? {
            if let Ok(entry) = ciborium::from_reader::<OutboxEntry, _>(value.as_slice()) {
                if entry.state == OutState::Committed {
                    messaging.open.insert(entry.id, (0, 0));
                }
            }
        }
        for (_, value) in store.messages(b"i/")? {
            if let Ok(entry) = ciborium::from_reader::<inbox::InboxEntry, _>(value.as_slice()) {
                messaging.to_answer.insert(entry.id);
            }
        }
        messaging.load_custody(store)?;
        Ok(messaging)
    }

    /// Takes a delivery or an acknowledgement for the next tick.
    pub fn push(&mut self, sender: &str, content: &Content) {
        if self.inbound.len() >= INBOUND_MAX {
            self.dropped += 1;
            return;
        }
        self.inbound.push_back((sender.to_string(), content.clone()));
    }

    /// Whether messages or answers wait for a receipt (or a delivery waits to be taken).
    pub fn wants_turn(&self) -> bool {
        !self.inbound.is_empty() || !self.open.is_empty() || !self.to_answer.is_empty()
    }

    /// Remembers that `member` relayed inbox message `id`: its answer goes to it too.
    fn answer_also(&mut self, id: &str, member: &str) {
        if self.answer_also.len() >= ANSWER_ALSO_MAX && !self.answer_also.contains_key(id) {
            return;
        }
        let members = self.answer_also.entry(id.to_string()).or_default();
        if members.len() < relay::CUSTODIANS {
            members.insert(member.to_string());
        }
    }
}

/// Deadline of a message that names none, seconds after it is sent.
pub const DEFAULT_DEADLINE_S: u64 = 3600;

/// What became of a message this node sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutState {
    /// In the source's tree; delivered once a receipt covers it.
    Committed,
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
    /// When it was sent (Unix milliseconds).
    #[serde(default)]
    pub sent_at_ms: u64,
    /// The target's owner signed that it recorded the message's RECEIPT (not yet proven
    /// under a cosigned checkpoint: the ACK's proof is).
    #[serde(default)]
    pub delivered: Option<Delivered>,
    /// What became of it.
    pub state: OutState,
}

/// A target's signed word that it recorded a message's RECEIPT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The RECEIPT record's index in the target's tree.
    pub receipt_index: u64,
    /// When this node learnt it (Unix milliseconds).
    pub at_ms: u64,
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
        let entry = OutboxEntry {
            envelope,
            id: id.clone(),
            index,
            sent_at: now_s(),
            sent_at_ms: remembrancer_host::now_ms(),
            delivered: None,
            state: OutState::Committed,
        };
        self.store.put_message(&outbox_key(&id), &cbor(&entry))?;
        self.messaging.open.insert(id.clone(), (0, 0));
        tracing::info!(%id, index, source = %entry.envelope.source, target = %entry.envelope.target, "message sent");
        Ok(Response::ok(view(host, &entry)))
    }

    /// Handles what arrived, delivers what is due, answers what is final.
    pub(super) fn messaging_tick(&mut self, host: &mut NodeHost) -> anyhow::Result<()> {
        let inbound: Vec<(String, Content)> = self.messaging.inbound.drain(..).collect();
        for (sender, content) in inbound {
            match content {
                Content::XDelivery(delivery) => self.take_delivery(host, &sender, delivery)?,
                Content::XAck(ack) => self.take_answer(host, &sender, ack)?,
                Content::XEvidence(evidence) => self.take_lane_evidence(host, &sender, evidence)?,
                _ => {}
            }
        }
        self.release_outbox(host)?;
        self.relay_custody(host)?;
        self.release_answers(host)
    }

    /// Appends one record to an owned namespace now; its index, or None (logged) when the
    /// engine refused it.
    pub(super) fn append_record(
        &mut self,
        host: &mut NodeHost,
        namespace: &str,
        record: Vec<u8>,
    ) -> anyhow::Result<Option<u64>> {
        self.commit_waiting(host)?;
        let committed = host.input_or_refusal(
            self,
            Input::Commit { namespace: namespace.to_string(), records: vec![record] },
        )?;
        match committed {
            Ok(events) => Ok(events.iter().find_map(|event| match event {
                Event::Committed { namespace: ns, first_index, .. } if ns == namespace => Some(*first_index),
                _ => None,
            })),
            Err(error) => {
                tracing::warn!(%namespace, %error, "a messaging record was not appended");
                Ok(None)
            }
        }
    }

    /// Delivers each open message whose record a receipt covers, when its wait is over.
    fn release_outbox(&mut self, host: &mut NodeHost) -> anyhow::Result<()> {
        let now_ms = remembrancer_host::now_ms();
        let due = due(&self.messaging.open, now_ms);
        for id in due {
            let Some(entry) = self.outbox_entry(&id)? else {
                self.messaging.open.remove(&id);
                continue;
            };
            if now_s() > entry.envelope.deadline + AFTER_DEADLINE_S {
                tracing::warn!(%id, "no answer a day after the deadline: no longer delivered");
                self.messaging.open.remove(&id);
                continue;
            }
            let Some(receipt) = host.engine().finals().get(&entry.envelope.source).cloned() else { continue };
            if receipt.tree_size <= entry.index {
                continue;
            }
            // The next attempt's time is set before this one: what fails now is tried again
            // later, not on every tick.
            attempt(&mut self.messaging.open, &id, now_ms);
            let bundle = match self.bundle_at(host, &entry.envelope.source, entry.index, &receipt) {
                Ok(bundle) => bundle,
                Err(_) => {
                    tracing::warn!(%id, "the message's proof could not be built; tried again later");
                    continue;
                }
            };
            let Some(owner) = owner_of(host.engine().registry(), &entry.envelope.target) else {
                tracing::warn!(%id, target = %entry.envelope.target, "no member lists the target namespace: not delivered, tried again later");
                continue;
            };
            let content = Content::XDelivery(remembrancer_core::message::XDeliveryContent {
                record: entry.envelope.record().into(),
                bundle: serde_json::to_string(&bundle)?,
            });
            host.input(self, Input::SendDirect { to: owner.clone(), content: content.clone() })?;
            self.hand_to_custodians(host, &id, &owner, content)?;
        }
        Ok(())
    }

    fn outbox_entry(&self, id: &str) -> anyhow::Result<Option<OutboxEntry>> {
        Ok(self
            .store
            .message(&outbox_key(id))?
            .and_then(|bytes| ciborium::from_reader(bytes.as_slice()).ok()))
    }

    /// An answer from a target's owner: the ACK or TIMEOUT record, proven under the target's
    /// cosigned checkpoint, for a message of this node's outbox.
    fn take_answer(&mut self, host: &mut NodeHost, sender: &str, ack: XAckContent) -> anyhow::Result<()> {
        if let (true, Some(index)) = (ack.bundle.is_empty(), ack.receipt_index) {
            return self.take_receipt_notice(host, sender, &ack.record, index);
        }
        let Ok(bundle) = serde_json::from_str::<ProofBundle>(&ack.bundle) else {
            self.messaging.refused += 1;
            tracing::info!(%sender, "an answer whose proof is not a proof bundle: refused");
            return Ok(());
        };
        let record = ack.record.into_vec();
        let (id, answer) = match XRecord::decode(&record) {
            Ok(XRecord::Ack { message, outcome, .. }) => {
                (message, OutState::Acked { outcome, at_ms: remembrancer_host::now_ms() })
            }
            Ok(XRecord::Timeout { message, .. }) => {
                (message, OutState::Expired { at_ms: remembrancer_host::now_ms() })
            }
            _ => {
                self.messaging.refused += 1;
                tracing::info!(%sender, "an answer that is not an ACK or TIMEOUT record: refused");
                return Ok(());
            }
        };
        let Some(mut entry) = self.outbox_entry(&id)? else {
            return self.end_custody(host, sender, &id, &record, &bundle);
        };
        if entry.state != OutState::Committed {
            return Ok(());
        }
        if !relay::proven_in(&bundle, &record, host.engine().registry(), &entry.envelope.target) {
            self.messaging.refused += 1;
            tracing::info!(%sender, %id, "an answer whose proof does not hold: refused");
            return Ok(());
        }
        entry.state = answer;
        self.store.put_message(&outbox_key(&id), &cbor(&entry))?;
        self.messaging.open.remove(&id);
        // The custodians hold the message until they see this answer.
        if let Some(owner) = owner_of(host.engine().registry(), &entry.envelope.target) {
            self.hand_to_custodians(host, &id, &owner, relay::answer_content(record, ack.bundle))?;
        }
        tracing::info!(%id, status = status(host, &entry), "message answered");
        Ok(())
    }

    /// A target owner's signed word that it recorded the RECEIPT of a message of this node's
    /// outbox: the message is `delivered`.
    fn take_receipt_notice(
        &mut self,
        host: &NodeHost,
        sender: &str,
        record: &[u8],
        receipt_index: u64,
    ) -> anyhow::Result<()> {
        let Ok(XRecord::Receipt { message, .. }) = XRecord::decode(record) else {
            self.messaging.refused += 1;
            tracing::info!(%sender, "an unproven answer that is not a RECEIPT notice: refused");
            return Ok(());
        };
        let Some(mut entry) = self.outbox_entry(&message)? else { return Ok(()) };
        if entry.state != OutState::Committed || entry.delivered.is_some() {
            return Ok(());
        }
        if owner_of(host.engine().registry(), &entry.envelope.target).as_deref() != Some(sender) {
            self.messaging.refused += 1;
            tracing::info!(%sender, id = %message, "a RECEIPT notice from a member that does not own the target: refused");
            return Ok(());
        }
        entry.delivered = Some(Delivered { receipt_index, at_ms: remembrancer_host::now_ms() });
        self.store.put_message(&outbox_key(&message), &cbor(&entry))?;
        tracing::info!(id = %message, receipt_index, "message delivered: the target recorded its RECEIPT");
        Ok(())
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
        if request.param("box") == Some("inbox") {
            return self.inbox(host, namespace);
        }
        // Oldest first: in the order the source's tree holds them.
        let mut sent: Vec<OutboxEntry> =
            entries.filter(|e| namespace.is_none_or(|ns| e.envelope.source == ns)).collect();
        sent.sort_by_key(|e| (e.envelope.source.clone(), e.index));
        Response::ok(serde_json::Value::Array(sent.iter().map(|e| view(host, e)).collect()))
    }
}

/// The ids of `schedule` (id → attempts so far, when the next is due) whose next attempt is
/// due at `now_ms`.
fn due(schedule: &BTreeMap<String, (u32, u64)>, now_ms: u64) -> Vec<String> {
    schedule.iter().filter(|(_, (_, at))| *at <= now_ms).map(|(id, _)| id.clone()).collect()
}

/// Counts an attempt of `id` in `schedule` and sets its next one after a wait that doubles
/// (2 s, 4 s, ... up to [`RETRY_MAX_MS`]); the attempts so far, or none when `id` is not
/// scheduled.
fn attempt(schedule: &mut BTreeMap<String, (u32, u64)>, id: &str, now_ms: u64) -> Option<u32> {
    let (attempts, at) = schedule.get_mut(id)?;
    *attempts += 1;
    *at = now_ms + (1000u64 << (*attempts).min(6)).min(RETRY_MAX_MS);
    Some(*attempts)
}

/// The member that lists `namespace` in the registry.
fn owner_of(registry: &Registry, namespace: &str) -> Option<String> {
    registry.members.values().find(|m| m.namespaces.iter().any(|n| n == namespace)).map(|m| m.did.clone())
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
            if entry.delivered.is_some() {
                "delivered"
            } else if final_size > entry.index {
                "final"
            } else {
                "committed"
            }
        }
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
        "sent_at_ms": entry.sent_at_ms,
        "receipt_index": entry.delivered.as_ref().map(|d| d.receipt_index),
        "delivered_at_ms": entry.delivered.as_ref().map(|d| d.at_ms),
        "answered_at_ms": match &entry.state {
            OutState::Acked { at_ms, .. } | OutState::Expired { at_ms } => Some(*at_ms),
            OutState::Committed => None,
        },
        "outcome": outcome,
    })
}
