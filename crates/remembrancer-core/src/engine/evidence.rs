//! Evidence: two roots a namespace's owner signed for one size, or an epoch anchor claimed out
//! of turn; kept, broadcast and turned into a probation proposal. Evidence from peers is
//! checked before it is believed.

use super::*;

impl<S: NodeStore> Engine<S> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn raise_evidence(
        &mut self,
        signer: &str,
        namespace: &str,
        size: u64,
        first: String,
        second: String,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if !self.evidence_seen.insert(evidence_key(&first, &second)) {
            return;
        }
        let [first, second] = if first <= second { [first, second] } else { [second, first] };
        let evidence = Evidence {
            signer: signer.to_string(),
            namespace: namespace.to_string(),
            size,
            first: first.clone(),
            second: second.clone(),
        };
        if self.evidence.len() < EVIDENCE_MAX {
            self.evidence.push(evidence.clone());
        }
        out.push(Output::Persist(Persist::Evidence(evidence)));
        let detail = format!("signed two roots for {namespace} at size {size}");
        self.record_violation(signer, Rejection::BadStatement, detail, now_ms, out);
        out.push(Output::Event(Event::Equivocation {
            signer: signer.to_string(),
            namespace: namespace.to_string(),
            size,
        }));
        let content = Content::Evidence(EvidenceContent { first: first.clone(), second: second.clone() });
        out.push(Output::Publish(PeerMessage::sign(&self.identity, content, now_ms)));
        // Evidence is objective: propose probation; every member that checks it signs.
        if self.registry.member(signer).is_some_and(|m| m.status == PeerStatus::Active) {
            let reason = ProposalReason::Equivocation { first, second };
            match status_change(&self.registry, signer, PeerStatus::Probation, reason) {
                Ok(proposal) => self.endorse(proposal, Vec::new(), now_ms, out),
                Err(error) => out.push(Output::Event(Event::ProposalRefused {
                    peer: signer.to_string(),
                    reason: error.to_string(),
                })),
            }
        }
    }

    pub(super) fn on_evidence(
        &mut self,
        sender: &str,
        content: EvidenceContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let first = self.signed_checkpoint(&content.first);
        let second = self.signed_checkpoint(&content.second);
        match (first, second) {
            (Ok((a, signer_a, _)), Ok((b, signer_b, _)))
                if signer_a == signer_b
                    && a.namespace == b.namespace
                    && a.size == b.size
                    && a.root != b.root =>
            {
                self.raise_evidence(
                    &signer_a,
                    &a.namespace,
                    a.size,
                    content.first,
                    content.second,
                    now_ms,
                    out,
                );
            }
            _ => self.reject(
                sender,
                Rejection::BadEvidence,
                "evidence proves no equivocation".to_string(),
                now_ms,
                out,
            ),
        }
    }

    /// A claim out of turn, checked (by this node's election, or [`crate::claims::check_claim`]
    /// for a peer's evidence): kept, persisted, broadcast, counted against the claimant, and
    /// a probation proposal endorsed.
    pub(super) fn raise_claim_evidence(
        &mut self,
        evidence: ClaimEvidence,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if !self.evidence_seen.insert(crate::claims::claim_key(&evidence.message)) {
            return;
        }
        if self.claim_evidence.len() < EVIDENCE_MAX {
            self.claim_evidence.push(evidence.clone());
        }
        out.push(Output::Persist(Persist::ClaimEvidence(evidence.clone())));
        let signer = evidence.signer.clone();
        let detail = format!(
            "claimed epoch {} out of turn (rank {} under registry version {})",
            evidence.epoch,
            evidence.rank.map_or_else(|| "none".to_string(), |r| r.to_string()),
            evidence.registry_version
        );
        self.record_violation(&signer, Rejection::UnelectedClaim, detail, now_ms, out);
        out.push(Output::Event(Event::UnelectedClaim { signer: signer.clone(), epoch: evidence.epoch }));
        let message = serde_bytes::ByteBuf::from(evidence.message);
        if message.len() <= crate::message::CLAIM_MESSAGE_BYTES_MAX {
            let content = Content::ClaimEvidence(ClaimEvidenceContent { message: message.clone() });
            out.push(Output::Publish(PeerMessage::sign(&self.identity, content, now_ms)));
        }
        if self.registry.member(&signer).is_some_and(|m| m.status == PeerStatus::Active) {
            let reason = ProposalReason::UnelectedClaim { message };
            match status_change(&self.registry, &signer, PeerStatus::Probation, reason) {
                Ok(proposal) => self.endorse(proposal, Vec::new(), now_ms, out),
                Err(error) => out
                    .push(Output::Event(Event::ProposalRefused { peer: signer, reason: error.to_string() })),
            }
        }
    }

    pub(super) fn on_claim_evidence(
        &mut self,
        sender: &str,
        content: ClaimEvidenceContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let checked =
            crate::claims::check_claim(&content.message, |v| self.registries.get(&v).map(|r| r.as_ref()));
        match checked {
            Ok(evidence) => self.raise_claim_evidence(evidence, now_ms, out),
            Err(reason) => {
                self.reject(sender, Rejection::BadEvidence, format!("claim evidence: {reason}"), now_ms, out)
            }
        }
    }
}
