//! Every peer message enters here: replay and sender checks, its signature (or the connection
//! that vouched for it), then the handler of its kind; every refusal is counted and audited.

use super::*;

impl<S: NodeStore> Engine<S> {
    pub(super) fn reject(
        &mut self,
        sender: &str,
        reason: Rejection,
        detail: String,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        self.record_violation(sender, reason, detail, now_ms, out);
        out.push(Output::Event(Event::Rejected { sender: sender.to_string(), reason }));
    }

    /// Counts a violation against `peer` and writes it to the audit trail.
    pub(super) fn record_violation(
        &mut self,
        peer: &str,
        reason: Rejection,
        detail: String,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        // Scores are kept for registry members only: a flood of made-up senders cannot grow
        // this map (their refusals still reach the bounded audit trail and the events).
        if self.registry.member(peer).is_some() {
            let score = self.scores.entry(peer.to_string()).or_default();
            *score.rejected.entry(reason).or_default() += 1;
            if reason.speaks_to_honesty() {
                score.last_rejected_ms = Some(now_ms);
            }
        }
        let entry = AuditEntry { at_ms: now_ms, peer: peer.to_string(), what: reason, detail };
        self.audit.push_back(entry.clone());
        while self.audit.len() > AUDIT_MAX {
            self.audit.pop_front();
        }
        out.push(Output::Persist(Persist::Audit(entry)));
    }

    /// `from_sender`: the transport authenticated the connection as the sender's registry key
    /// ([`Input::FromSender`]); the message signature of a member's message is then not checked.
    pub(super) fn receive(
        &mut self,
        mut message: PeerMessage,
        from_sender: bool,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        if message.sender.len() > crate::identity::DID_BYTES_MAX {
            return Ok(());
        }
        let registry = Arc::clone(&self.registry);
        // A node outside the registry may speak once: to propose its own admission, signed
        // with the key that proposal gives it.
        let joining = self.joining_member(&message);
        let sender = message.sender.as_str();
        let member = match (registry.member(sender), joining.as_ref()) {
            (Some(member), _) => member,
            (None, Some(joining)) => joining,
            (None, None) => {
                self.reject(sender, Rejection::UnknownSender, "not in the registry".to_string(), now_ms, out);
                return Ok(());
            }
        };
        if member.status == PeerStatus::Suspended {
            self.reject(sender, Rejection::Suspended, "suspended member".to_string(), now_ms, out);
            return Ok(());
        }
        // Ed25519 signatures are deterministic: one signed message, one signature. The
        // signature (with the sender) therefore identifies the message without re-encoding it,
        // and a replay is refused before its signature is verified again (a copy with other
        // content under a seen signature would not verify either).
        let digest = seen_key(&message);
        if self.seen.contains(&digest) {
            self.reject(sender, Rejection::Replay, "message seen before".to_string(), now_ms, out);
            return Ok(());
        }
        // The transport's word counts for a member only: a joiner's key is proven by its
        // signature. So does a batch verification of this very message against this key.
        let by_transport = joining.is_none() && from_sender;
        let vouched = by_transport
            || (joining.is_none()
                && (!self.preverified.is_empty()
                    && self
                        .preverified
                        .remove(&message.signed_digest())
                        .is_some_and(|key| key == member.key)));
        if !vouched && message.verify_signature(&member.key).is_err() {
            self.reject(sender, Rejection::BadSignature, "message signature".to_string(), now_ms, out);
            return Ok(());
        }
        if message.timestamp.abs_diff(now_ms) > self.config.skew_window_ms {
            let detail = format!(
                "timestamp {} is {} ms from ours",
                message.timestamp,
                message.timestamp.abs_diff(now_ms)
            );
            self.reject(sender, Rejection::Stale, detail, now_ms, out);
            return Ok(());
        }
        self.seen.insert(digest);
        self.seen_order.push_back(digest);
        while self.seen_order.len() > SEEN_MESSAGES_MAX {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if joining.is_some() {
            // Scores are for members only.
            if let Content::Registry(content) = message.content {
                self.endorse(content.proposal, content.signatures, now_ms, out);
            }
            return Ok(());
        }
        // A claim out of turn is kept as signed, as evidence: its encoding, before the sender's
        // name leaves it (epoch anchors are few; other messages are not encoded again).
        let claim = match &message.content {
            Content::EpochAnchor(_) if message.is_sealed() => Some(message.encode()),
            _ => None,
        };
        // The sender's name leaves the message: its content is handled by value below.
        let sender = std::mem::take(&mut message.sender);
        let score = match self.scores.get_mut(&sender) {
            Some(score) => score,
            None => self.scores.entry(sender.clone()).or_default(),
        };
        score.accepted += 1;
        score.last_seen_ms = Some(now_ms);
        let signature = message.signature().copied();
        match message.content {
            Content::Anchor(content) => self.on_anchor(&sender, content, now_ms, out),
            Content::Countersign(content) => {
                self.on_countersign(&sender, content, now_ms, out);
                Ok(())
            }
            Content::Receipt(content) => {
                // A signature the transport vouched for was never checked: it does not fix the
                // message's bytes, so it cannot key a verdict.
                let checked = signature.as_ref().filter(|_| !by_transport);
                self.on_receipt(&sender, content.receipt, checked, now_ms, out);
                Ok(())
            }
            Content::Heartbeat(content) => {
                self.on_heartbeat(&sender, content, now_ms, out);
                Ok(())
            }
            Content::Request(content) => self.on_request(&sender, content, now_ms, out),
            Content::Evidence(content) => {
                self.on_evidence(&sender, content, now_ms, out);
                Ok(())
            }
            Content::Registry(content) => self.on_registry(&sender, *content, now_ms, out),
            Content::EpochAnchor(content) => {
                self.on_epoch_anchor(&sender, content, claim, now_ms, out);
                Ok(())
            }
            Content::ClaimEvidence(content) => {
                self.on_claim_evidence(&sender, content, now_ms, out);
                Ok(())
            }
            // Cross-namespace messaging is the host's: it checks and records what comes.
            content @ (Content::XDelivery(_) | Content::XAck(_) | Content::XEvidence(_)) => {
                out.push(Output::Event(Event::Messaging { sender, content }));
                Ok(())
            }
        }
    }

    /// The peers a message about `topic` goes to under the configured fanout, besides
    /// `except` and this node: None means everyone (a broadcast). One hash of this node and
    /// the topic seeds a partial shuffle of the members, so the choice is deterministic,
    /// differs per topic, and costs one hash per message rather than one per member.
    pub(super) fn gossip_peers(&self, except: &str, topic: &str) -> Option<Vec<String>> {
        let self_active =
            self.registry.member(self.identity.did()).is_some_and(|m| m.status != PeerStatus::Suspended);
        let active = self.peers.len() + usize::from(self_active);
        let count = match self.config.fanout {
            Fanout::All => return None,
            Fanout::Logarithmic => (usize::BITS - active.max(1).leading_zeros()) as usize + 1,
            Fanout::Fixed(count) => count,
        };
        let excluded = self.peers.iter().position(|did| did == except);
        let candidates = self.peers.len() - usize::from(excluded.is_some());
        if count >= candidates {
            return None;
        }
        let seed: [u8; 32] = Sha256::new()
            .chain_update(self.identity.did().as_bytes())
            .chain_update([0])
            .chain_update(topic.as_bytes())
            .finalize()
            .into();
        let mut state = u64::from_le_bytes(seed[..8].try_into().unwrap_or([0; 8]));
        // Floyd's sampling of `count` distinct positions among the candidates (the peers
        // without `except`): `count` draws, whatever the federation's size.
        let mut chosen: Vec<usize> = Vec::with_capacity(count);
        for bound in candidates - count..candidates {
            // SplitMix64 step.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let pick = (z % (bound as u64 + 1)) as usize;
            chosen.push(if chosen.contains(&pick) { bound } else { pick });
        }
        Some(
            chosen
                .into_iter()
                .map(|position| match excluded {
                    Some(skip) if position >= skip => self.peers[position + 1].clone(),
                    _ => self.peers[position].clone(),
                })
                .collect(),
        )
    }
}
