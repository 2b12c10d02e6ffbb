//! Membership: registry proposals (joins, status changes), their endorsement by a quorum of
//! members, the scores that put misbehaving members on probation and reinstate them, and the
//! registry updates that take effect.

use super::*;

impl<S: NodeStore> Engine<S> {
    /// Makes `next` the current registry (kept among the known versions) and records the
    /// update that produced it in the chain.
    pub(super) fn install_registry(&mut self, next: Registry, content: RegistryContent) {
        let next = Arc::new(next);
        self.peers = gossip_candidates(&next, self.identity.did());
        self.registry = Arc::clone(&next);
        self.registries.insert(next.version, next);
        while self.registries.len() > REGISTRY_VERSIONS_MAX {
            self.registries.pop_first();
        }
        self.chain.push(content);
        if self.chain.len() > REGISTRY_VERSIONS_MAX {
            self.chain.remove(0);
        }
    }

    /// Whether this node signs `proposal` on its own: evidence-backed proposals whose evidence
    /// checks out against the peer whose status they change; manual ones only when configured.
    pub(super) fn agrees(&self, proposal: &RegistryProposal, now_ms: u64) -> bool {
        if self.approved.contains(&proposal.digest()) {
            return true;
        }
        match &proposal.reason {
            ProposalReason::Manual { .. } => self.config.approve_manual,
            ProposalReason::Join { did } => self.config.approve_joins && self.is_admission(proposal, did),
            ProposalReason::Equivocation { first, second } => {
                let (Ok((a, signer_a, _)), Ok((b, signer_b, _))) =
                    (self.signed_checkpoint(first), self.signed_checkpoint(second))
                else {
                    return false;
                };
                let proven = signer_a == signer_b
                    && a.namespace == b.namespace
                    && a.size == b.size
                    && a.root != b.root;
                proven && self.changes_only(proposal, &signer_a, PeerStatus::Probation)
            }
            ProposalReason::UnelectedClaim { message } => {
                match crate::claims::check_claim(message, |v| self.registries.get(&v).map(|r| r.as_ref())) {
                    Ok(claim) => self.changes_only(proposal, &claim.signer, PeerStatus::Probation),
                    Err(_) => false,
                }
            }
            ProposalReason::Misbehavior { peer } => {
                self.scores
                    .get(peer)
                    .is_some_and(|s| s.honesty_rejections() >= self.config.probation_rejections)
                    && self.changes_only(proposal, peer, PeerStatus::Probation)
            }
            ProposalReason::Reinstatement { peer, .. } => {
                self.registry.member(peer).is_some_and(|m| m.status == PeerStatus::Probation)
                    && self.well_behaved_since(peer, now_ms)
                    && self.changes_only(proposal, peer, PeerStatus::Active)
            }
        }
    }

    /// True when `proposal` is exactly the admission of `did` (see
    /// [`crate::governance::admission`]): the member added, the quorum raised, nothing else.
    pub(super) fn is_admission(&self, proposal: &RegistryProposal, did: &str) -> bool {
        let Ok(next) = proposal.apply(&self.registry) else { return false };
        next.member(did).is_some_and(|member| admission(&self.registry, member).as_ref() == Ok(proposal))
    }

    /// The member a join proposal from a sender outside the registry would add: the sender
    /// itself, under the current registry version. None for any other message.
    pub(super) fn joining_member(&self, message: &PeerMessage) -> Option<Member> {
        let Content::Registry(content) = &message.content else { return None };
        let ProposalReason::Join { did } = &content.proposal.reason else { return None };
        if did != &message.sender || self.registry.member(did).is_some() {
            return None;
        }
        if content.proposal.base_version != self.registry.version {
            return None;
        }
        let next = content.proposal.apply(&self.registry).ok()?;
        let member = next.member(did)?;
        (admission(&self.registry, member).as_ref() == Ok(&content.proposal)).then(|| member.clone())
    }

    /// Proposes this node's admission and broadcasts it (see [`Input::RequestJoin`]).
    pub(super) fn request_join(
        &mut self,
        namespaces: Vec<String>,
        endpoint: Option<String>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if self.registry.member(self.identity.did()).is_some() {
            return;
        }
        let member = Member {
            did: self.identity.did().to_string(),
            key: self.identity.verifying_key(),
            status: PeerStatus::Active,
            endpoint,
            namespaces,
        };
        match admission(&self.registry, &member) {
            Ok(proposal) => {
                let digest = proposal.digest();
                if !self.proposals.contains_key(&digest) && self.proposals.len() >= PROPOSALS_MAX {
                    self.proposals.pop_first();
                }
                self.proposals.entry(digest).or_insert_with(|| (proposal.clone(), BTreeMap::new()));
                let content = RegistryContent { proposal, signatures: Vec::new() };
                out.push(Output::Publish(PeerMessage::sign(
                    &self.identity,
                    Content::Registry(Box::new(content)),
                    now_ms,
                )));
            }
            Err(error) => out.push(Output::Event(Event::ProposalRefused {
                peer: self.identity.did().to_string(),
                reason: error.to_string(),
            })),
        }
    }

    /// Remembers that the operator approved the proposal of `digest` (so it is signed
    /// whatever its reason).
    pub(super) fn approve(&mut self, digest: [u8; 32]) {
        if self.approved.len() >= PROPOSALS_MAX {
            self.approved.pop_first();
        }
        self.approved.insert(digest);
    }

    /// The operator's own proposal (see [`Input::Propose`]): checked, approved, signed and
    /// broadcast (applied at once when this node's signature is a quorum).
    pub(super) fn propose(
        &mut self,
        proposal: RegistryProposal,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), EngineError> {
        let me = self.identity.did();
        if self.registry.member(me).is_none_or(|m| m.status != PeerStatus::Active) {
            return Err(EngineError::Proposal(crate::registry::RegistryError::Invalid {
                field: "node".to_string(),
                message: format!(
                    "{me} is not an active member of registry version {}: its signature would not count",
                    self.registry.version
                ),
            }));
        }
        proposal.apply(&self.registry)?;
        self.approve(proposal.digest());
        self.endorse(proposal, Vec::new(), now_ms, out);
        Ok(())
    }

    /// True when `proposal` changes nothing but `peer`'s status, to `status`.
    pub(super) fn changes_only(&self, proposal: &RegistryProposal, peer: &str, status: PeerStatus) -> bool {
        let Ok(next) = proposal.apply(&self.registry) else { return false };
        next.members.len() == self.registry.members.len()
            && next.quorum == self.registry.quorum
            && self.registry.members.iter().all(|(did, member)| match next.member(did) {
                Some(after) if did == peer => after.status == status && after.key == member.key,
                Some(after) => after == member,
                None => false,
            })
    }

    /// Whether our own view has no honesty failure of `peer` in the reinstatement window
    /// before `now_ms`.
    pub(super) fn well_behaved_since(&self, peer: &str, now_ms: u64) -> bool {
        // Good behaviour is counted from the later of its last honesty failure and the change
        // of its status (a peer demoted for what this node did not see still serves its time).
        let last_rejected = self.scores.get(peer).and_then(|s| s.last_rejected_ms);
        let demoted = self.status_changed_ms.get(peer).copied();
        last_rejected.max(demoted).is_none_or(|since| since + self.config.reinstate_after_ms <= now_ms)
    }

    /// Scores crossing the threshold become probation proposals; probation peers that have
    /// behaved for the configured time become reinstatement proposals. Run on every heartbeat.
    pub(super) fn review_scores(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let mut changes = Vec::new();
        for (did, member) in &self.registry.members {
            if did == self.identity.did() {
                continue;
            }
            let score = self.scores.get(did);
            if member.status == PeerStatus::Active
                && score.is_some_and(|s| s.honesty_rejections() >= self.config.probation_rejections)
            {
                changes.push((
                    did.clone(),
                    PeerStatus::Probation,
                    ProposalReason::Misbehavior { peer: did.clone() },
                ));
            } else if member.status == PeerStatus::Probation && self.well_behaved_since(did, now_ms) {
                let reason = ProposalReason::Reinstatement { peer: did.clone(), at_ms: now_ms };
                changes.push((did.clone(), PeerStatus::Active, reason));
            }
        }
        for (did, status, reason) in changes {
            let already = self.proposals.values().any(|(p, signatures)| {
                p.base_version == self.registry.version
                    && signatures.contains_key(self.identity.did())
                    && match (&p.reason, &reason) {
                        (
                            ProposalReason::Misbehavior { peer: a },
                            ProposalReason::Misbehavior { peer: b },
                        ) => a == b,
                        (
                            ProposalReason::Reinstatement { peer: a, .. },
                            ProposalReason::Reinstatement { peer: b, .. },
                        ) => a == b,
                        _ => false,
                    }
            });
            if already {
                continue;
            }
            match status_change(&self.registry, &did, status, reason) {
                Ok(proposal) => self.endorse(proposal, Vec::new(), now_ms, out),
                Err(error) => {
                    out.push(Output::Event(Event::ProposalRefused { peer: did, reason: error.to_string() }))
                }
            }
        }
    }

    /// Adds our signature (when we agree) and the given ones to a proposal; broadcasts when
    /// the set grew; applies it at quorum.
    pub(super) fn endorse(
        &mut self,
        proposal: RegistryProposal,
        signatures: Vec<ProposalSignature>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if proposal.apply(&self.registry).is_err() {
            return;
        }
        let digest = proposal.digest();
        if !self.proposals.contains_key(&digest) && self.proposals.len() >= PROPOSALS_MAX {
            self.proposals.pop_first();
        }
        let agrees = self.agrees(&proposal, now_ms);
        let own = agrees.then(|| proposal.sign(&self.identity));
        let entry = self.proposals.entry(digest).or_insert_with(|| (proposal.clone(), BTreeMap::new()));
        let before = entry.1.len();
        let valid: BTreeSet<String> =
            proposal.valid_signers(&self.registry, signatures.iter()).into_iter().collect();
        for signature in signatures.into_iter().chain(own) {
            if valid.contains(&signature.node) || signature.node == self.identity.did() {
                entry.1.entry(signature.node.clone()).or_insert(signature);
            }
        }
        let gathered: Vec<ProposalSignature> = entry.1.values().cloned().collect();
        let grew = entry.1.len() > before;
        let signers = proposal.valid_signers(&self.registry, gathered.iter());
        let content = RegistryContent { proposal: proposal.clone(), signatures: gathered };
        if signers.len() >= self.registry.quorum as usize {
            self.apply_registry(content, now_ms, out);
        } else if grew {
            out.push(Output::Publish(PeerMessage::sign(
                &self.identity,
                Content::Registry(Box::new(content)),
                now_ms,
            )));
        }
    }

    pub(super) fn apply_registry(&mut self, content: RegistryContent, now_ms: u64, out: &mut Vec<Output>) {
        let Ok(next) = content.proposal.apply(&self.registry) else { return };
        let version = next.version;
        for (did, member) in &next.members {
            if self.registry.member(did).is_none_or(|before| before.status != member.status) {
                self.status_changed_ms.insert(did.clone(), now_ms);
            }
        }
        self.install_registry(next, content.clone());
        self.proposals.retain(|_, (p, _)| p.base_version >= version);
        out.push(Output::Persist(Persist::RegistryApplied(Box::new(content.clone()))));
        out.push(Output::Event(Event::RegistryChanged { version }));
        // Everyone gets the complete, quorum-signed update.
        out.push(Output::Publish(PeerMessage::sign(
            &self.identity,
            Content::Registry(Box::new(content)),
            now_ms,
        )));
        // Anchors awaiting quorum under the old registry are signed again under the new one.
        let waiting: Vec<String> =
            self.owned.iter().filter(|(_, o)| !o.pending.is_empty()).map(|(ns, _)| ns.clone()).collect();
        for namespace in waiting {
            if let Some(owned) = self.owned.get_mut(&namespace) {
                owned.pending.clear();
            }
            if let Err(error) = self.anchor_current(&namespace, now_ms, out) {
                out.push(Output::Event(Event::ProposalRefused {
                    peer: namespace,
                    reason: error.to_string(),
                }));
            }
        }
    }

    pub(super) fn on_registry(
        &mut self,
        sender: &str,
        content: RegistryContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let base = content.proposal.base_version;
        if base > self.registry.version {
            self.request_registry(sender, now_ms, out);
            return Ok(());
        }
        if base < self.registry.version {
            return Ok(());
        }
        if let Err(error) = content.proposal.apply(&self.registry) {
            self.reject(sender, Rejection::Malformed, format!("registry update: {error}"), now_ms, out);
            return Ok(());
        }
        let claimed = content.signatures.len();
        let valid = content.proposal.valid_signers(&self.registry, content.signatures.iter()).len();
        if valid < claimed {
            self.reject(
                sender,
                Rejection::BadStatement,
                format!("{} of {claimed} registry signatures invalid", claimed - valid),
                now_ms,
                out,
            );
        }
        self.endorse(content.proposal, content.signatures, now_ms, out);
        Ok(())
    }
}
