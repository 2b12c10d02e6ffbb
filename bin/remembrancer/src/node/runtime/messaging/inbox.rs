//! The target's side: a delivery checked (`xmsg::check_delivery`, under the namespace's own
//! policy), its RECEIPT appended before the handler runs, then the ACK (or, past the deadline,
//! a TIMEOUT instead); the lane and the inbox entry stored; the acknowledgement sent back with
//! its proof once a receipt covers it, and again whenever the same message comes again.

use remembrancer_core::message::{XDeliveryContent, XEvidenceContent};
use remembrancer_core::xmsg::{
    canonical_json, check_delivery, Accepted, AckError, Allow, Context, Lane, Outcome, Refusal, TargetPolicy,
    Verdict, XRecord, PAYLOAD_BYTES_MAX,
};
use serde::{Deserialize, Serialize};

use super::*;

/// A message this node's namespace received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The message.
    pub envelope: remembrancer_core::xmsg::Envelope,
    /// Its id.
    pub id: String,
    /// The RECEIPT record's index in the target's tree (none for a TIMEOUT, or before it is
    /// appended).
    pub receipt_index: Option<u64>,
    /// The ACK or TIMEOUT record's index; none while the message is being run (an entry found
    /// so after a restart is answered `interrupted`).
    pub answer_index: Option<u64>,
    /// That record.
    #[serde(with = "serde_bytes")]
    pub answer: Vec<u8>,
    /// The namespace the answer goes to.
    pub reply_to: String,
    /// When it was received (Unix seconds).
    pub received_at: u64,
    /// Its proof bundle as delivered (JSON): one half of the evidence, should another message
    /// come at its sequence.
    #[serde(default)]
    pub bundle: String,
}

pub(super) fn inbox_key(id: &str) -> Vec<u8> {
    format!("i/{id}").into_bytes()
}

fn lane_in_key(source: &str, target: &str) -> Vec<u8> {
    format!("li/{source}\0{target}").into_bytes()
}

/// A lane frozen by evidence, on every node that checked it.
pub(super) fn frozen_key(source: &str, target: &str) -> Vec<u8> {
    format!("lf/{source}\0{target}").into_bytes()
}

impl Node {
    /// A delivery from `sender`.
    pub(super) fn take_delivery(
        &mut self,
        host: &mut NodeHost,
        sender: &str,
        delivery: XDeliveryContent,
    ) -> anyhow::Result<()> {
        // Refusals are counted (`messages_refused` in status) and logged at info: a peer
        // sending garbage cannot flood the log at warn.
        let Ok(bundle) = serde_json::from_str::<ProofBundle>(&delivery.bundle) else {
            self.messaging.refused += 1;
            tracing::info!(%sender, "a delivery whose proof is not a proof bundle: refused");
            return Ok(());
        };
        let record = delivery.record.into_vec();
        let target = match XRecord::decode(&record) {
            Ok(XRecord::Message(envelope)) => envelope.target,
            Ok(_) | Err(_) => {
                self.messaging.refused += 1;
                tracing::info!(%sender, "a delivery that is not a canonical message: refused");
                return Ok(());
            }
        };
        if host.engine().tree(&target).is_none() {
            // Not this node's: a message its source hands over for custody (`relay.rs`).
            return self.take_custody(host, sender, record, delivery.bundle, &bundle);
        }
        let policy = self.config.messaging.policy(&target);
        let verdict = self.check(host, &record, &bundle, &policy)?;
        let verdict = match verdict {
            // Refused by the policy: once proven, it is recorded and answered NotAllowed.
            Verdict::Refused(Refusal::NotAllowed { .. }) => {
                let open = TargetPolicy {
                    allow: vec![Allow { source: "*".to_string(), operations: vec!["*".to_string()] }],
                    ..policy.clone()
                };
                match self.check(host, &record, &bundle, &open)? {
                    Verdict::Accept(accepted) => {
                        self.note_relayer(host, sender, &accepted.id.to_string(), &accepted.envelope);
                        return self.record_message(host, *accepted, false, delivery.bundle);
                    }
                    other => other,
                }
            }
            other => other,
        };
        match verdict {
            Verdict::Accept(accepted) => {
                self.note_relayer(host, sender, &accepted.id.to_string(), &accepted.envelope);
                self.record_message(host, *accepted, true, delivery.bundle)?
            }
            Verdict::Recorded { id } => {
                tracing::info!(%sender, %id, "a message recorded before: answered again from its record, not run");
                if let Ok(XRecord::Message(envelope)) = XRecord::decode(&record) {
                    self.note_relayer(host, sender, &id, &envelope);
                }
                self.messaging.to_answer.insert(id);
            }
            Verdict::Conflict(conflict) => {
                self.on_conflict(host, sender, conflict, &record, delivery.bundle, &bundle)?
            }
            Verdict::Refused(refusal) => {
                self.messaging.refused += 1;
                tracing::info!(%sender, %refusal, "a delivery refused");
            }
        }
        Ok(())
    }

    /// A member that delivers a message on behalf of its source (a custodian) gets the answer
    /// too: the source may be offline.
    fn note_relayer(
        &mut self,
        host: &NodeHost,
        sender: &str,
        id: &str,
        envelope: &remembrancer_core::xmsg::Envelope,
    ) {
        let reply_to = envelope.reply_to.as_deref().unwrap_or(&envelope.source);
        let registry = host.engine().registry();
        if registry.member(sender).is_some() && owner_of(registry, reply_to).as_deref() != Some(sender) {
            self.messaging.answer_also(id, sender);
        }
    }

    /// A conflict found checking a delivery: the lane frozen here, and the evidence published
    /// so that every node freezes it (two messages at one sequence), or handed to the engine as
    /// an equivocation of the source's owner (a checkpoint against a receipt held here).
    fn on_conflict(
        &mut self,
        host: &mut NodeHost,
        sender: &str,
        conflict: remembrancer_core::xmsg::Conflict,
        record: &[u8],
        bundle_json: String,
        bundle: &ProofBundle,
    ) -> anyhow::Result<()> {
        use remembrancer_core::xmsg::Conflict;
        let reason = serde_json::to_string(&conflict).unwrap_or_default();
        tracing::warn!(%sender, %reason, "messaging evidence: the lane is frozen");
        match &conflict {
            Conflict::Sequence { first, .. } => {
                let first = self
                    .store
                    .message(&inbox_key(first))?
                    .and_then(|bytes| ciborium::from_reader::<InboxEntry, _>(bytes.as_slice()).ok());
                if let Some(first) = first.filter(|entry| !entry.bundle.is_empty()) {
                    let content = Content::XEvidence(XEvidenceContent {
                        first: XDeliveryContent {
                            record: first.envelope.record().into(),
                            bundle: first.bundle,
                        },
                        second: XDeliveryContent { record: record.to_vec().into(), bundle: bundle_json },
                    });
                    host.input(self, Input::Broadcast { content })?;
                }
            }
            Conflict::Fork { source, size, .. } => {
                let receipt = self.store.receipt(source, *size)?;
                let known =
                    receipt.and_then(|r| r.to_note(host.engine().registry()).ok()).map(|n| n.to_text());
                if let Some(known) = known {
                    let content = Content::Evidence(remembrancer_core::message::EvidenceContent {
                        first: known,
                        second: bundle.checkpoint.clone(),
                    });
                    host.input(self, Input::Broadcast { content })?;
                }
            }
        }
        let (source, target) = match XRecord::decode(record) {
            Ok(XRecord::Message(envelope)) => (envelope.source, envelope.target),
            _ => return Ok(()),
        };
        self.freeze(&source, &target, reason)
    }

    /// Freezes the lane `source → target` on this node: nothing more is taken on it (as the
    /// target) and it is listed as frozen (every node).
    pub(super) fn freeze(&mut self, source: &str, target: &str, reason: String) -> anyhow::Result<()> {
        let key = lane_in_key(source, target);
        let mut lane = self.lane(&key)?;
        if lane.frozen.is_none() {
            lane.frozen = Some(reason.clone());
            self.store.put_message(&key, &cbor(&lane))?;
        }
        self.store.put_message(&frozen_key(source, target), reason.as_bytes())?;
        Ok(())
    }

    /// Lane evidence from a peer: checked, then the lane frozen here too.
    pub(super) fn take_lane_evidence(
        &mut self,
        host: &NodeHost,
        sender: &str,
        evidence: XEvidenceContent,
    ) -> anyhow::Result<()> {
        let parse = |json: &str| serde_json::from_str::<ProofBundle>(json).ok();
        let (Some(first), Some(second)) = (parse(&evidence.first.bundle), parse(&evidence.second.bundle))
        else {
            self.messaging.refused += 1;
            tracing::info!(%sender, "lane evidence whose proofs are not proof bundles: refused");
            return Ok(());
        };
        let checked = remembrancer_core::xmsg::check_lane_evidence(
            (&evidence.first.record, &first),
            (&evidence.second.record, &second),
            host.engine().registry(),
        );
        match checked {
            Ok((source, target, sequence)) => {
                let reason = format!("{sender} showed two messages at sequence {sequence}");
                tracing::warn!(%source, %target, sequence, "lane evidence checked: the lane is frozen");
                self.freeze(&source, &target, reason)
            }
            Err(error) => {
                self.messaging.refused += 1;
                tracing::info!(%sender, %error, "lane evidence refused");
                Ok(())
            }
        }
    }

    fn lane(&self, key: &[u8]) -> anyhow::Result<Lane> {
        Ok(match self.store.message(key)? {
            Some(bytes) => ciborium::from_reader(bytes.as_slice()).unwrap_or_default(),
            None => Lane::default(),
        })
    }

    fn check(
        &self,
        host: &NodeHost,
        record: &[u8],
        bundle: &ProofBundle,
        policy: &TargetPolicy,
    ) -> anyhow::Result<Verdict> {
        let source = match XRecord::decode(record) {
            Ok(XRecord::Message(envelope)) => envelope.source,
            _ => String::new(),
        };
        let lane = self.lane(&lane_in_key(&source, &policy.namespace))?;
        let store = &self.store;
        let known_root = |size: u64| {
            store.receipt(&source, size).ok().flatten().map(|receipt| receipt.anchor.batch_root.value)
        };
        let context = Context {
            registry: host.engine().registry(),
            policy,
            lane: &lane,
            known_root: &known_root,
            now: now_s(),
            checkpoints: Some(&self.messaging.checkpoints),
        };
        Ok(check_delivery(record, bundle, &context))
    }

    /// Records an accepted message: the lane and a pending inbox entry first (stored synced,
    /// so that nothing runs it twice, whatever happens next), then RECEIPT, the handler (when
    /// `allowed`), ACK; or, past the deadline, TIMEOUT.
    fn record_message(
        &mut self,
        host: &mut NodeHost,
        accepted: Accepted,
        allowed: bool,
        bundle: String,
    ) -> anyhow::Result<()> {
        let Accepted { envelope, id, expired, .. } = accepted;
        let id = id.to_string();
        let target = envelope.target.clone();
        let (message, source, sequence) = (id.clone(), envelope.source.clone(), envelope.sequence);
        self.take_into_lane(&envelope, &id)?;
        let mut entry = InboxEntry {
            reply_to: envelope.reply_to.clone().unwrap_or_else(|| envelope.source.clone()),
            envelope: envelope.clone(),
            id: id.clone(),
            receipt_index: None,
            answer_index: None,
            answer: Vec::new(),
            received_at: now_s(),
            bundle,
        };
        self.store.put_message(&inbox_key(&id), &cbor(&entry))?;
        let answer = if expired {
            XRecord::Timeout { message, source, sequence, deadline: envelope.deadline }
        } else {
            let receipt = XRecord::Receipt { message: message.clone(), source: source.clone(), sequence };
            entry.receipt_index = self.append_record(host, &target, receipt.encode())?;
            self.store.put_message(&inbox_key(&id), &cbor(&entry))?;
            if let (Some(index), Some(owner)) =
                (entry.receipt_index, owner_of(host.engine().registry(), &entry.reply_to))
            {
                let notice = Content::XAck(remembrancer_core::message::XAckContent {
                    record: receipt.encode().into(),
                    bundle: String::new(),
                    receipt_index: Some(index),
                });
                host.input(self, Input::SendDirect { to: owner, content: notice })?;
            }
            let outcome = match (entry.receipt_index, allowed) {
                (None, _) => Outcome::Error { code: AckError::Interrupted },
                (Some(_), true) => self.run_handler(host, &envelope)?,
                (Some(_), false) => Outcome::Error { code: AckError::NotAllowed },
            };
            XRecord::Ack { message, source, sequence, outcome }
        };
        self.answer(host, entry, answer)?;
        tracing::info!(%id, expired, "message recorded");
        Ok(())
    }

    /// Appends `answer` (ACK or TIMEOUT) for `entry` and keeps it, to be sent once final.
    fn answer(&mut self, host: &mut NodeHost, mut entry: InboxEntry, answer: XRecord) -> anyhow::Result<()> {
        let answer = answer.encode();
        let Some(index) = self.append_record(host, &entry.envelope.target, answer.clone())? else {
            return Ok(());
        };
        entry.answer_index = Some(index);
        entry.answer = answer;
        self.store.put_message(&inbox_key(&entry.id), &cbor(&entry))?;
        self.messaging.to_answer.insert(entry.id);
        Ok(())
    }

    fn take_into_lane(
        &mut self,
        envelope: &remembrancer_core::xmsg::Envelope,
        id: &str,
    ) -> anyhow::Result<()> {
        let key = lane_in_key(&envelope.source, &envelope.target);
        let mut lane = self.lane(&key)?;
        lane.record(envelope.sequence, id.to_string());
        self.store.put_message(&key, &cbor(&lane))?;
        Ok(())
    }

    /// The shipped handlers: `status.update` (notify), `tree.size` and `record.get` (query),
    /// `record.append` (invoke).
    fn run_handler(
        &mut self,
        host: &mut NodeHost,
        envelope: &remembrancer_core::xmsg::Envelope,
    ) -> anyhow::Result<Outcome> {
        let target = envelope.target.clone();
        let parameters: serde_json::Value = serde_json::from_str(&envelope.parameters).unwrap_or_default();
        let size = host.engine().tree(&target).map_or(0, |t| t.size());
        let ok = |result: serde_json::Value, evaluated_at: Option<u64>| {
            let result = canonical_json(&result);
            if result.len() > PAYLOAD_BYTES_MAX {
                Outcome::Error { code: AckError::ResultTooLarge }
            } else {
                Outcome::Ok { result, evaluated_at }
            }
        };
        let bad = Outcome::Error { code: AckError::BadParameters };
        Ok(match envelope.operation.as_str() {
            "status.update" => {
                tracing::info!(source = %envelope.source, %target, status = %envelope.parameters, "status update");
                Outcome::Ok { result: String::new(), evaluated_at: None }
            }
            "tree.size" => ok(serde_json::json!({ "size": size }), Some(size)),
            "record.get" => match parameters["index"].as_u64() {
                Some(index) if index < size => match self.store.record(&target, index)? {
                    Some(record) => {
                        ok(serde_json::json!({ "index": index, "record": BASE64.encode(record) }), Some(size))
                    }
                    None => Outcome::Error { code: AckError::HandlerFailed },
                },
                _ => bad,
            },
            "record.append" => match parameters["data"].as_str() {
                Some(data) if data.len() <= PAYLOAD_BYTES_MAX => {
                    match self.append_record(host, &target, data.as_bytes().to_vec())? {
                        Some(index) => ok(serde_json::json!({ "index": index }), None),
                        None => Outcome::Error { code: AckError::HandlerFailed },
                    }
                }
                _ => bad,
            },
            _ => Outcome::Error { code: AckError::UnknownOperation },
        })
    }

    /// `GET /api/v1/messages?box=inbox`: the messages this node's namespaces received (of
    /// `namespace`, when given), with what was answered.
    pub(super) fn inbox(&self, host: &NodeHost, namespace: Option<&str>) -> Response {
        let entries = match self.store.messages(b"i/") {
            Ok(entries) => entries,
            Err(error) => return Response::error(500, format!("the inbox could not be read: {error}")),
        };
        let mut received: Vec<InboxEntry> = entries
            .into_iter()
            .filter_map(|(_, value)| ciborium::from_reader::<InboxEntry, _>(value.as_slice()).ok())
            .filter(|e| namespace.is_none_or(|ns| e.envelope.target == ns))
            .collect();
        // Oldest first: in the order the target recorded them.
        received.sort_by_key(|e| (e.received_at, e.receipt_index, e.answer_index));
        let listed: Vec<serde_json::Value> = received
            .into_iter()
            .map(|e| {
                let answer = XRecord::decode(&e.answer).ok();
                let (status, outcome) = match &answer {
                    Some(XRecord::Ack { outcome, .. }) => ("acked", serde_json::to_value(outcome).ok()),
                    Some(XRecord::Timeout { .. }) => ("expired", None),
                    _ => ("recorded", None),
                };
                let final_size = host.engine().finals().get(&e.envelope.target).map_or(0, |r| r.tree_size);
                serde_json::json!({
                    "id": e.id,
                    "status": status,
                    "source": e.envelope.source,
                    "target": e.envelope.target,
                    "sequence": e.envelope.sequence,
                    "action": e.envelope.action.name(),
                    "operation": e.envelope.operation,
                    "deadline": e.envelope.deadline,
                    "receipt_index": e.receipt_index,
                    "answer_index": e.answer_index,
                    "answer_final": e.answer_index.is_some_and(|index| final_size > index),
                    "outcome": outcome,
                    "received_at": e.received_at,
                })
            })
            .collect();
        Response::ok(serde_json::Value::Array(listed))
    }

    /// Sends the answers due: each recorded message's ACK or TIMEOUT, with its proof, once a
    /// receipt covers it.
    pub(super) fn release_answers(&mut self, host: &mut NodeHost) -> anyhow::Result<()> {
        let due: Vec<String> = self.messaging.to_answer.iter().cloned().collect();
        for id in due {
            let Some(bytes) = self.store.message(&inbox_key(&id))? else {
                self.messaging.to_answer.remove(&id);
                continue;
            };
            let Ok(entry) = ciborium::from_reader::<InboxEntry, _>(bytes.as_slice()) else {
                self.messaging.to_answer.remove(&id);
                continue;
            };
            let Some(answer_index) = entry.answer_index else {
                // Stopped while it was being run: answered `interrupted`, never run again.
                let answer = XRecord::Ack {
                    message: entry.id.clone(),
                    source: entry.envelope.source.clone(),
                    sequence: entry.envelope.sequence,
                    outcome: Outcome::Error { code: AckError::Interrupted },
                };
                tracing::warn!(%id, "a message interrupted by a stop: answered interrupted");
                self.messaging.to_answer.remove(&id);
                self.answer(host, entry, answer)?;
                continue;
            };
            let Some(receipt) = host.engine().finals().get(&entry.envelope.target).cloned() else { continue };
            if receipt.tree_size <= answer_index {
                continue;
            }
            let Ok(bundle) = self.bundle_at(host, &entry.envelope.target, answer_index, &receipt) else {
                continue;
            };
            let Some(owner) = owner_of(host.engine().registry(), &entry.reply_to) else {
                tracing::warn!(%id, reply_to = %entry.reply_to, "no member owns the namespace to answer");
                self.messaging.to_answer.remove(&id);
                continue;
            };
            let content = Content::XAck(remembrancer_core::message::XAckContent {
                record: entry.answer.clone().into(),
                bundle: serde_json::to_string(&bundle)?,
                receipt_index: None,
            });
            for relayer in self.messaging.answer_also.remove(&id).unwrap_or_default() {
                host.input(self, Input::SendDirect { to: relayer, content: content.clone() })?;
            }
            host.input(self, Input::SendDirect { to: owner, content })?;
            self.messaging.to_answer.remove(&id);
        }
        Ok(())
    }
}
