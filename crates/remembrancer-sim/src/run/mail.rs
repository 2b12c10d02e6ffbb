//! Cross-namespace messages in the simulator (the scenario's `[messages]`): each owner sends
//! another owner a message now and then; once a final receipt covers it, the source delivers
//! it with its proof bundle over the simulated network (partitions and losses apply), again
//! with a growing wait until an answer is proven. The target checks it with the core's
//! `xmsg::check_delivery`, records RECEIPT, runs it and records ACK (or, past its deadline,
//! TIMEOUT), and answers with that record's proof once a receipt covers it, again whenever the
//! message comes again. The source takes an answer only on its proof.
//!
//! The node does the same over RocksDB and its streams (`bin/remembrancer`,
//! `runtime/messaging`); here the host's part is modelled in memory around the same engine and
//! the same core checks, and the invariants are watched: no message is run twice, and none is
//! left without an answer unless its TIMEOUT is proven.

use remembrancer_core::bundle::{check_bundle, ProofBundle};
use remembrancer_core::merkle::InclusionProofJson;
use remembrancer_core::message::{XAckContent, XDeliveryContent};
use remembrancer_core::xmsg::{
    canonical_json, check_delivery, Action, Allow, Context, Envelope, Lane, Outcome, TargetPolicy, Verdict,
    XRecord,
};

use super::*;

/// Between two messaging rounds of one node (releases and answers), ms.
pub(crate) const TICK_MS: u64 = 250;
/// Longest wait between two deliveries of one message, ms (the node's is 60 s; the
/// simulator's runs are minutes long).
const RETRY_MAX_MS: u64 = 8_000;
/// How long after its deadline a message is still delivered (for its TIMEOUT), ms.
const AFTER_DEADLINE_MS: u64 = 120_000;
/// Once the network is whole and both ends are up, how long a message whose deadline is over
/// may stay unanswered before it counts as lost, ms.
pub(crate) const SETTLE_MS: u64 = 20_000;

/// The federation's messages, as the owners' hosts hold them.
#[derive(Default)]
pub(crate) struct Mail {
    /// Last sequence per lane (source node, target node).
    sequences: BTreeMap<(usize, usize), u64>,
    /// Messages sent, by id.
    outbox: BTreeMap<String, Outgoing>,
    /// Ids with no proven answer yet.
    open: BTreeSet<String>,
    /// What each target recorded, by (target node, id).
    inbox: BTreeMap<(usize, String), Incoming>,
    /// Each target's lanes, by (target node, source namespace).
    lanes: BTreeMap<(usize, String), Lane>,
    /// The records of messages and answers, by (namespace, index): what proofs are built of.
    records: BTreeMap<(String, u64), Vec<u8>>,
    /// How many times each message was run by its target.
    runs: BTreeMap<String, u32>,
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) expired: u64,
    pub(crate) refused: u64,
}

struct Outgoing {
    source: usize,
    target: usize,
    index: u64,
    /// The deadline, in virtual ms.
    deadline_ms: u64,
    state: OutState,
    attempts: u32,
    next_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    Committed,
    Acked,
    Expired,
}

struct Incoming {
    source: usize,
    answer: Vec<u8>,
    answer_index: u64,
    /// The answer is to be sent (again) once final.
    due: bool,
}

fn unix_s(now_ms: u64) -> u64 {
    (EPOCH_MS + now_ms) / 1000
}

impl<'a> Simulation<'a> {
    /// Appends one record to `node`'s namespace now; its index, or None when the engine did
    /// not take it.
    fn append(&mut self, node: usize, record: Vec<u8>) -> Option<u64> {
        let namespace = namespace_of(node);
        let before = self.engines[node].tree(&namespace).map(|t| t.size())?;
        self.input(node, Input::Commit { namespace: namespace.clone(), records: vec![record.clone()] });
        let after = self.engines[node].tree(&namespace).map_or(before, |t| t.size());
        (after == before + 1).then(|| {
            self.mail.records.insert((namespace, before), record);
            before
        })
    }

    /// `node` sends a message to another owner, chosen at random.
    pub(crate) fn mail_send(&mut self, node: usize, deadline_after_ms: u64) {
        let others: Vec<usize> = self.scenario.load.owners.iter().copied().filter(|&o| o != node).collect();
        if others.is_empty() {
            return;
        }
        let target = others[self.rng.range(0, others.len() as u64 - 1) as usize];
        let sequence = self.mail.sequences.get(&(node, target)).copied().unwrap_or(0) + 1;
        let deadline_ms = self.now_ms + deadline_after_ms;
        let envelope = Envelope {
            federation: self.registry.name.clone(),
            source: namespace_of(node),
            target: namespace_of(target),
            sequence,
            deadline: unix_s(deadline_ms).max(unix_s(self.now_ms) + 1),
            action: Action::Notify,
            operation: "status.update".to_string(),
            parameters: canonical_json(&serde_json::json!({ "sequence": sequence })),
            reply_to: None,
        };
        let Some(index) = self.append(node, envelope.record()) else { return };
        self.mail.sequences.insert((node, target), sequence);
        let id = envelope.id(HashAlgorithm::Sha256).to_string();
        self.mail.sent += 1;
        self.mail.open.insert(id.clone());
        self.mail.outbox.insert(
            id,
            Outgoing {
                source: node,
                target,
                index,
                deadline_ms,
                state: OutState::Committed,
                attempts: 0,
                next_ms: 0,
            },
        );
    }

    /// The proof bundle of record `index` of `node`'s namespace under its newest final receipt.
    fn mail_bundle(&self, node: usize, index: u64) -> Option<ProofBundle> {
        let namespace = namespace_of(node);
        let engine = &self.engines[node];
        let receipt = engine.finals().get(&namespace)?;
        let size = receipt.tree_size;
        let tree = engine.tree(&namespace)?;
        if index >= size {
            return None;
        }
        let path = tree.inclusion_proof(index, size).ok()?;
        let proof = InclusionProofJson::new(
            tree.algorithm(),
            index,
            size,
            tree.leaf_hash(index).ok()?,
            &path,
            tree.root_at(size).ok()?,
        );
        let note = receipt.to_note(engine.registry()).ok()?;
        let record = self.mail.records.get(&(namespace, index))?;
        Some(ProofBundle::new(record, proof, note.to_text()))
    }

    /// One messaging round of `node`: deliveries due, answers due.
    pub(crate) fn mail_tick(&mut self, node: usize) {
        let due: Vec<String> = self
            .mail
            .open
            .iter()
            .filter(|id| {
                self.mail.outbox.get(*id).is_some_and(|o| o.source == node && o.next_ms <= self.now_ms)
            })
            .cloned()
            .collect();
        for id in due {
            let Some(out) = self.mail.outbox.get(&id) else { continue };
            let (index, target, deadline_ms) = (out.index, out.target, out.deadline_ms);
            if self.now_ms > deadline_ms + AFTER_DEADLINE_MS {
                self.mail.open.remove(&id);
                continue;
            }
            let Some(bundle) = self.mail_bundle(node, index) else { continue };
            if let Some(out) = self.mail.outbox.get_mut(&id) {
                out.attempts += 1;
                out.next_ms = self.now_ms + (1000u64 << out.attempts.min(6)).min(RETRY_MAX_MS);
            }
            let Some(record) = self.mail.records.get(&(namespace_of(node), index)).cloned() else { continue };
            let content =
                Content::XDelivery(XDeliveryContent { record: record.into(), bundle: bundle.to_json() });
            self.input(node, Input::SendDirect { to: did_of(target), content });
        }
        let answers: Vec<(String, usize, u64)> = self
            .mail
            .inbox
            .iter()
            .filter(|((target, _), entry)| *target == node && entry.due)
            .map(|((_, id), entry)| (id.clone(), entry.source, entry.answer_index))
            .collect();
        for (id, source, answer_index) in answers {
            let Some(bundle) = self.mail_bundle(node, answer_index) else { continue };
            let Some(entry) = self.mail.inbox.get_mut(&(node, id)) else { continue };
            entry.due = false;
            let content = Content::XAck(XAckContent {
                record: entry.answer.clone().into(),
                bundle: bundle.to_json(),
                receipt_index: None,
            });
            self.input(node, Input::SendDirect { to: did_of(source), content });
        }
    }

    /// A delivery or an answer that reached `node`.
    pub(crate) fn mail_receive(&mut self, node: usize, content: Content) {
        match content {
            Content::XDelivery(delivery) => self.mail_deliver(node, delivery),
            Content::XAck(answer) => self.mail_answer(node, answer),
            _ => {}
        }
    }

    fn mail_violation(&mut self, invariant: &str, detail: String) {
        self.violations.push(Violation { invariant: invariant.to_string(), at_ms: self.now_ms, detail });
    }

    fn mail_deliver(&mut self, node: usize, delivery: XDeliveryContent) {
        let record = delivery.record.into_vec();
        let (Ok(bundle), Ok(XRecord::Message(envelope))) =
            (serde_json::from_str::<ProofBundle>(&delivery.bundle), XRecord::decode(&record))
        else {
            self.mail.refused += 1;
            return;
        };
        let lane_key = (node, envelope.source.clone());
        let lane = self.mail.lanes.get(&lane_key).cloned().unwrap_or_default();
        let policy = TargetPolicy {
            namespace: namespace_of(node),
            allow: vec![Allow { source: "*".to_string(), operations: vec!["*".to_string()] }],
            quorum: 0,
        };
        let context = Context {
            registry: self.engines[node].registry(),
            policy: &policy,
            lane: &lane,
            known_root: &|_| None,
            now: unix_s(self.now_ms),
            checkpoints: None,
        };
        match check_delivery(&record, &bundle, &context) {
            Verdict::Accept(accepted) => {
                let id = accepted.id.to_string();
                let (source, sequence) = (envelope.source.clone(), envelope.sequence);
                let mut lane = lane;
                lane.record(sequence, id.clone());
                self.mail.lanes.insert(lane_key, lane);
                let answer = if accepted.expired {
                    XRecord::Timeout { message: id.clone(), source, sequence, deadline: envelope.deadline }
                } else {
                    let receipt = XRecord::Receipt { message: id.clone(), source: source.clone(), sequence };
                    if self.append(node, receipt.encode()).is_none() {
                        return self.mail_violation(
                            "message recorded",
                            format!("node {node} could not append the RECEIPT of {id}"),
                        );
                    }
                    let runs = self.mail.runs.entry(id.clone()).or_default();
                    *runs += 1;
                    if *runs > 1 {
                        let detail = format!("node {node} ran {id} {runs} times");
                        self.mail_violation("no message run twice", detail);
                    }
                    XRecord::Ack {
                        message: id.clone(),
                        source,
                        sequence,
                        outcome: Outcome::Ok { result: String::new(), evaluated_at: None },
                    }
                };
                let answer = answer.encode();
                let Some(answer_index) = self.append(node, answer.clone()) else {
                    return self.mail_violation(
                        "message recorded",
                        format!("node {node} could not append the answer to {id}"),
                    );
                };
                let source =
                    self.node_index.get(&did_of_namespace(&envelope.source)).copied().unwrap_or(node);
                self.mail.inbox.insert((node, id), Incoming { source, answer, answer_index, due: true });
            }
            Verdict::Recorded { id } => {
                if let Some(entry) = self.mail.inbox.get_mut(&(node, id)) {
                    entry.due = true;
                }
            }
            Verdict::Conflict(conflict) => {
                self.mail_violation("no conflict between honest nodes", format!("node {node}: {conflict:?}"))
            }
            Verdict::Refused(refusal) => {
                self.mail.refused += 1;
                *self.rejections.entry(format!("message refused: {refusal}")).or_default() += 1;
            }
        }
    }

    fn mail_answer(&mut self, node: usize, answer: XAckContent) {
        let record = answer.record.into_vec();
        let (id, state) = match XRecord::decode(&record) {
            Ok(XRecord::Ack { message, .. }) => (message, OutState::Acked),
            Ok(XRecord::Timeout { message, .. }) => (message, OutState::Expired),
            _ => {
                self.mail.refused += 1;
                return;
            }
        };
        let Some(out) = self.mail.outbox.get(&id) else { return };
        if out.source != node || out.state != OutState::Committed {
            return;
        }
        let target = out.target;
        let proven = serde_json::from_str::<ProofBundle>(&answer.bundle).is_ok_and(|bundle| {
            let bundled =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bundle.record.as_bytes());
            let (report, checkpoint) = check_bundle(&bundle, self.engines[node].registry());
            bundled.as_deref() == Ok(record.as_slice())
                && report.all_ok()
                && checkpoint.is_some_and(|c| c.namespace == namespace_of(target))
        });
        if !proven {
            return self
                .mail_violation("answers proven", format!("node {node} got an unproven answer to {id}"));
        }
        let runs = self.mail.runs.get(&id).copied().unwrap_or(0);
        match state {
            OutState::Acked if runs != 1 => {
                self.mail_violation("acked means run once", format!("{id} acked, run {runs} times"))
            }
            OutState::Expired if runs != 0 => {
                self.mail_violation("expired means never run", format!("{id} expired, run {runs} times"))
            }
            OutState::Acked => self.mail.acked += 1,
            _ => self.mail.expired += 1,
        }
        if let Some(out) = self.mail.outbox.get_mut(&id) {
            out.state = state;
        }
        self.mail.open.remove(&id);
    }

    /// At the end: every message whose deadline is `SETTLE_MS` behind the end (and behind the
    /// last heal or restart), between two nodes that are up, is acknowledged or proven expired.
    pub(crate) fn mail_finish(&mut self, last_disruption_ms: u64) {
        let end = self.scenario.duration_ms;
        if self.partition_active(end.saturating_sub(1)) {
            return;
        }
        let lost: Vec<String> = self
            .mail
            .outbox
            .iter()
            .filter(|(_, o)| o.state == OutState::Committed)
            .filter(|(_, o)| o.deadline_ms.max(last_disruption_ms) + SETTLE_MS <= end)
            .filter(|(_, o)| self.up[o.source] && self.up[o.target])
            .map(|(id, o)| {
                format!("{id} from node {} to node {} (deadline at {} ms)", o.source, o.target, o.deadline_ms)
            })
            .collect();
        for detail in lost {
            self.mail_violation("no message lost without a proven TIMEOUT", detail);
        }
    }
}

/// The DID of the owner of a simulated namespace (`ns:n<i>` is owned by `did:vm:node:n<i>`).
fn did_of_namespace(namespace: &str) -> String {
    format!("did:vm:node:{}", namespace.trim_start_matches("ns:"))
}
