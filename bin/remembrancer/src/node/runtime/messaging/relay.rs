//! Custody: a message's source hands a copy of each delivery (its record and proof) to two
//! other members, its custodians, chosen from the registry by the message id. Should no proven
//! answer reach a custodian within a grace period (the source went offline, or the target was
//! down while the source could still deliver), the custodian delivers the message to the
//! target's owner itself, with a growing wait, until the target's proven ACK or TIMEOUT comes
//! back to it. The source forwards the answer it got to the custodians, which ends their
//! custody. Payloads go on direct streams to named members only: nothing floods the mesh.
//!
//! A custodian takes custody only from the source's owner, only of a message proven under a
//! cosigned checkpoint of the source, and holds at most [`CUSTODY_MAX`] messages; custody ends
//! a day after the message's deadline at the latest.

use remembrancer_core::message::{XAckContent, XDeliveryContent};
use remembrancer_core::xmsg::{message_id, XRecord};
use serde::{Deserialize, Serialize};

use super::*;

/// How many members hold each message besides its source.
pub(super) const CUSTODIANS: usize = 2;
/// Messages a node holds in custody at most; more are refused (and counted).
const CUSTODY_MAX: usize = 4096;
/// How long a custodian waits for an answer before it delivers the message itself: the
/// source normally has it answered within a few checkpoint intervals.
const CUSTODY_GRACE_MS: u64 = 15_000;

/// A message held for its source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Custody {
    /// The message's id.
    id: String,
    /// Its source and target namespaces.
    source: String,
    target: String,
    /// Its deadline (Unix seconds).
    deadline: u64,
    /// Its record.
    #[serde(with = "serde_bytes")]
    record: Vec<u8>,
    /// Its proof bundle (JSON), as the source delivered it.
    bundle: String,
}

fn custody_key(id: &str) -> Vec<u8> {
    format!("r/{id}").into_bytes()
}

/// The custodians of message `id`: the active members other than the source's and the
/// target's owners that come first when ordered by the hash of the id and their DID (so each
/// message has its own, spread over the federation, and every node computes the same ones).
pub(super) fn custodians(
    registry: &Registry,
    source_owner: &str,
    target_owner: &str,
    id: &str,
) -> Vec<String> {
    let mut ranked: Vec<(Vec<u8>, &str)> = registry
        .members
        .values()
        .filter(|m| m.status == PeerStatus::Active && m.did != source_owner && m.did != target_owner)
        .map(|m| {
            let rank = HashAlgorithm::Sha256.leaf_hash(format!("{id}\0{}", m.did).as_bytes());
            (rank.to_vec(), m.did.as_str())
        })
        .collect();
    ranked.sort();
    ranked.into_iter().take(CUSTODIANS).map(|(_, did)| did.to_string()).collect()
}

impl Messaging {
    /// The messages this node holds in custody, from `store`.
    pub(super) fn load_custody(&mut self, store: &Store) -> anyhow::Result<()> {
        let now_ms = remembrancer_host::now_ms();
        for (_, value) in store.messages(b"r/")? {
            if let Ok(custody) = ciborium::from_reader::<Custody, _>(value.as_slice()) {
                self.custody.insert(custody.id, (0, now_ms + CUSTODY_GRACE_MS));
            }
        }
        Ok(())
    }

    /// Messages held in custody now.
    pub fn custody_held(&self) -> usize {
        self.custody.len()
    }
}

impl Node {
    /// A delivery for a namespace this node does not own: custody of a message, when its
    /// source's owner hands it over and its proof holds.
    pub(super) fn take_custody(
        &mut self,
        host: &NodeHost,
        sender: &str,
        record: Vec<u8>,
        bundle_json: String,
        bundle: &ProofBundle,
    ) -> anyhow::Result<()> {
        let Ok(XRecord::Message(envelope)) = XRecord::decode(&record) else {
            self.messaging.refused += 1;
            return Ok(());
        };
        let id = message_id(&record, bundle.proof.leaf.algorithm).to_string();
        if self.messaging.custody.contains_key(&id) {
            return Ok(());
        }
        let registry = host.engine().registry();
        if owner_of(registry, &envelope.source).as_deref() != Some(sender) {
            self.messaging.refused += 1;
            tracing::info!(%sender, source = %envelope.source, "custody offered by a member that does not own the source: refused");
            return Ok(());
        }
        if self.messaging.custody.len() >= CUSTODY_MAX {
            self.messaging.refused += 1;
            tracing::info!(%sender, %id, held = CUSTODY_MAX, "custody refused: this node holds as many messages as it may");
            return Ok(());
        }
        if !proven_in(bundle, &record, registry, &envelope.source) {
            self.messaging.refused += 1;
            tracing::info!(%sender, %id, "custody of a message whose proof does not hold: refused");
            return Ok(());
        }
        let custody = Custody {
            id: id.clone(),
            source: envelope.source,
            target: envelope.target,
            deadline: envelope.deadline,
            record,
            bundle: bundle_json,
        };
        self.store.put_message(&custody_key(&id), &cbor(&custody))?;
        self.messaging.custody.insert(id.clone(), (0, remembrancer_host::now_ms() + CUSTODY_GRACE_MS));
        tracing::debug!(%id, source = %custody.source, target = %custody.target, "message taken into custody");
        Ok(())
    }

    /// An answer to a message this node did not send: the end of its custody, once proven.
    pub(super) fn end_custody(
        &mut self,
        host: &NodeHost,
        sender: &str,
        id: &str,
        record: &[u8],
        bundle: &ProofBundle,
    ) -> anyhow::Result<()> {
        if !self.messaging.custody.contains_key(id) {
            tracing::debug!(%sender, %id, "an answer to a message this node neither sent nor holds");
            return Ok(());
        }
        let Some(custody) = self.custody(id)? else {
            self.messaging.custody.remove(id);
            return Ok(());
        };
        if !proven_in(bundle, record, host.engine().registry(), &custody.target) {
            self.messaging.refused += 1;
            tracing::info!(%sender, %id, "an answer whose proof does not hold: refused");
            return Ok(());
        }
        self.store.delete_message(&custody_key(id))?;
        self.messaging.custody.remove(id);
        tracing::debug!(%sender, %id, "custody ended: the target's answer is proven");
        Ok(())
    }

    fn custody(&self, id: &str) -> anyhow::Result<Option<Custody>> {
        Ok(self
            .store
            .message(&custody_key(id))?
            .and_then(|bytes| ciborium::from_reader(bytes.as_slice()).ok()))
    }

    /// Delivers each message held in custody whose wait is over to its target's owner.
    pub(super) fn relay_custody(&mut self, host: &mut NodeHost) -> anyhow::Result<()> {
        let now_ms = remembrancer_host::now_ms();
        let due = due(&self.messaging.custody, now_ms);
        for id in due {
            let Some(custody) = self.custody(&id)? else {
                self.messaging.custody.remove(&id);
                continue;
            };
            if now_s() > custody.deadline + AFTER_DEADLINE_S {
                tracing::warn!(%id, "held a day past its deadline without an answer: custody ends");
                self.store.delete_message(&custody_key(&id))?;
                self.messaging.custody.remove(&id);
                continue;
            }
            let Some(attempts) = attempt(&mut self.messaging.custody, &id, now_ms) else { continue };
            let Some(owner) = owner_of(host.engine().registry(), &custody.target) else { continue };
            tracing::info!(%id, target = %custody.target, attempts, "no answer yet: relaying the message to its target");
            let content = Content::XDelivery(XDeliveryContent {
                record: custody.record.into(),
                bundle: custody.bundle,
            });
            host.input(self, Input::SendDirect { to: owner, content })?;
        }
        Ok(())
    }

    /// Hands the custodians of a message (on its first delivery, and again on later ones,
    /// should one have been down) its delivery; or, once answered, the answer.
    pub(super) fn hand_to_custodians(
        &mut self,
        host: &mut NodeHost,
        id: &str,
        target_owner: &str,
        content: Content,
    ) -> anyhow::Result<()> {
        let me = host.engine().did().to_string();
        for custodian in custodians(host.engine().registry(), &me, target_owner, id) {
            host.input(self, Input::SendDirect { to: custodian, content: content.clone() })?;
        }
        Ok(())
    }
}

/// Whether `bundle` proves `record` under a checkpoint of `namespace` that holds under the
/// registry (signatures, quorum, inclusion).
pub(super) fn proven_in(bundle: &ProofBundle, record: &[u8], registry: &Registry, namespace: &str) -> bool {
    let bundled = BASE64.decode(bundle.record.as_bytes()).ok();
    if bundled.as_deref() != Some(record) {
        return false;
    }
    let (report, checkpoint) = remembrancer_core::bundle::check_bundle(bundle, registry);
    report.all_ok() && checkpoint.is_some_and(|c| c.namespace == namespace)
}

/// The answer content to hand to custodians.
pub(super) fn answer_content(record: Vec<u8>, bundle: String) -> Content {
    Content::XAck(XAckContent { record: record.into(), bundle, receipt_index: None })
}
