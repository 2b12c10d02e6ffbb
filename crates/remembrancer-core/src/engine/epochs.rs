//! Epoch anchors: the final receipts of an epoch rolled into one root, anchored by the node the
//! election names (collaborative), by secondaries when the primary fails (hybrid), or by every
//! node (independent).

use super::*;

impl<S: NodeStore> Engine<S> {
    /// Notes a final receipt in the epoch of `now_ms`: its namespace's entry grows to it. A
    /// later root of an append-only tree commits to every earlier one (the receipts carry the
    /// consistency), so an epoch anchor names each namespace once, at its largest final size.
    pub(super) fn record_final(&mut self, namespace: &str, size: u64, root: Digest, now_ms: u64) {
        let epoch = now_ms / self.config.epoch_ms.max(1);
        let finals = self.epoch_finals.entry(epoch).or_default();
        match finals.get_mut(namespace) {
            Some(entry) if entry.0 >= size => {}
            Some(entry) => *entry = (size, root),
            None => {
                finals.insert(namespace.to_string(), (size, root));
            }
        }
        while self.epoch_finals.len() > EPOCHS_KEPT {
            self.epoch_finals.pop_first();
        }
    }

    pub(super) fn on_epoch_end(&mut self, epoch: u64, now_ms: u64, out: &mut Vec<Output>) {
        let epoch_ms = self.config.epoch_ms.max(1);
        out.push(Output::SetTimer {
            timer: Timer::EpochEnd { epoch: epoch + 1 },
            at_ms: (epoch + 2) * epoch_ms,
        });
        let order = election_order(&self.registry, epoch);
        let Some(rank) = order.iter().position(|did| did == self.identity.did()) else { return };
        match self.registry.anchor_propagation.mode {
            AnchorMode::Independent => {}
            AnchorMode::Collaborative => {
                if rank == 0 {
                    self.request_epoch_anchor(epoch, out);
                }
            }
            AnchorMode::Hybrid => {
                if rank == 0 {
                    self.request_epoch_anchor(epoch, out);
                } else if rank <= HYBRID_SECONDARIES {
                    out.push(Output::SetTimer {
                        timer: Timer::EpochDeadline { epoch },
                        at_ms: now_ms + rank as u64 * self.config.anchor_deadline_ms,
                    });
                }
            }
        }
    }

    /// Asks the host to anchor the root over the receipts this node stored during `epoch`; the
    /// claim will name the registry version its election was computed under (now).
    pub(super) fn request_epoch_anchor(&mut self, epoch: u64, out: &mut Vec<Output>) {
        if self.epoch_requests.contains_key(&epoch) {
            return;
        }
        let entries: Vec<EpochEntry> = self
            .epoch_finals
            .get(&epoch)
            .map(|finals| {
                // Within a message's bounds: at most EPOCH_ENTRIES_MAX namespaces, in bytes that
                // leave room for the rest of the message. Namespaces past them (thousands of
                // them finalizing in one epoch) are left out of this epoch's anchor.
                let mut budget = crate::message::PEER_MESSAGE_BYTES_MAX - EPOCH_ANCHOR_OTHER_BYTES;
                finals
                    .iter()
                    .take(crate::message::EPOCH_ENTRIES_MAX)
                    .take_while(|(namespace, _)| {
                        budget = budget.saturating_sub(namespace.len() + EPOCH_ENTRY_BYTES);
                        budget > 0
                    })
                    .map(|(namespace, (size, root))| EpochEntry {
                        namespace: namespace.clone(),
                        size: *size,
                        root: serde_bytes::ByteBuf::from(root.to_vec()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if entries.is_empty() {
            return;
        }
        let root = epoch_root(&entries);
        self.epoch_requests.insert(epoch, (self.registry.version, entries));
        while self.epoch_requests.len() > EPOCHS_KEPT {
            self.epoch_requests.pop_first();
        }
        out.push(Output::AnchorRequest { request: AnchorRequestId::Epoch(epoch), root });
    }

    pub(super) fn on_anchored(
        &mut self,
        request: AnchorRequestId,
        reference: AnchorReference,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        match request {
            AnchorRequestId::Receipt { .. } => {
                out.push(Output::Event(Event::Anchored {
                    request,
                    anchorer: self.identity.did().to_string(),
                    rank: None,
                }));
            }
            AnchorRequestId::Epoch(epoch) => {
                let Some((registry_version, entries)) = self.epoch_requests.get(&epoch).cloned() else {
                    return;
                };
                let content = EpochAnchorContent {
                    epoch,
                    registry_version,
                    root: serde_bytes::ByteBuf::from(epoch_root(&entries).to_vec()),
                    entries,
                    reference,
                };
                let me = self.identity.did().to_string();
                self.accept_epoch_anchor(&me, content.clone(), out);
                out.push(Output::Publish(PeerMessage::sign(
                    &self.identity,
                    Content::EpochAnchor(content),
                    now_ms,
                )));
            }
        }
    }

    /// An epoch anchor claim from `sender`; `claim` is its peer message as signed (none when it
    /// came unsealed, vouched for by its sender's connection only).
    pub(super) fn on_epoch_anchor(
        &mut self,
        sender: &str,
        content: EpochAnchorContent,
        claim: Option<Vec<u8>>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if self.registry.member(sender).is_none_or(|m| m.status != PeerStatus::Active) {
            self.reject(
                sender,
                Rejection::NotOwner,
                "epoch anchor from a member that is not active".to_string(),
                now_ms,
                out,
            );
            return;
        }
        // Only the elected member's claim counts for an epoch, judged under the registry
        // version the claim names: the claimant's election and this node's agree on it.
        let version = content.registry_version;
        let Some(registry) = self.registries.get(&version).cloned() else {
            let detail = format!(
                "epoch {} anchor from {sender} names registry version {version}, which this node does not hold",
                content.epoch
            );
            self.reject(sender, Rejection::NotElected, detail, now_ms, out);
            return;
        };
        let order = election_order(&registry, content.epoch);
        let rank = order.iter().position(|did| did == sender);
        if !may_claim_epoch(registry.anchor_propagation.mode, rank) {
            match claim {
                Some(message) => {
                    let evidence = ClaimEvidence {
                        signer: sender.to_string(),
                        epoch: content.epoch,
                        registry_version: version,
                        rank: rank.map(|r| r as u64),
                        message,
                    };
                    // Counted against the claimant once, as evidence; the message is refused.
                    self.raise_claim_evidence(evidence, now_ms, out);
                    out.push(Output::Event(Event::Rejected {
                        sender: sender.to_string(),
                        reason: Rejection::UnelectedClaim,
                    }));
                }
                None => {
                    let detail =
                        format!("epoch {} anchor from {sender} out of turn, unsealed", content.epoch);
                    self.reject(sender, Rejection::NotElected, detail, now_ms, out);
                }
            }
            return;
        }
        if content.root.as_slice() != epoch_root(&content.entries) {
            self.reject(
                sender,
                Rejection::BadStatement,
                format!("epoch {} root does not match its entries", content.epoch),
                now_ms,
                out,
            );
            return;
        }
        // Verify against what we hold: an entry that contradicts a final receipt here is a lie.
        for entry in &content.entries {
            let ours = self
                .epoch_finals
                .values()
                .filter_map(|finals| finals.get(&entry.namespace))
                .find(|(size, _)| *size == entry.size);
            if ours.is_some_and(|(_, root)| root.as_slice() != entry.root.as_slice()) {
                let detail = format!(
                    "epoch {} entry {} at {} contradicts our final receipt",
                    content.epoch, entry.namespace, entry.size
                );
                self.reject(sender, Rejection::BadStatement, detail, now_ms, out);
                return;
            }
        }
        self.accept_epoch_anchor(sender, content, out);
    }

    /// Keeps the winning anchor of an epoch. Conflicting claims (two nodes both anchored the
    /// epoch) are resolved by one rule every node applies identically: the claim with the
    /// smallest digest of (anchorer, content) wins.
    pub(super) fn accept_epoch_anchor(
        &mut self,
        anchorer: &str,
        content: EpochAnchorContent,
        out: &mut Vec<Output>,
    ) {
        let mut bytes = anchorer.as_bytes().to_vec();
        bytes.push(0);
        let _ = ciborium::into_writer(&content, &mut bytes);
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let epoch = content.epoch;
        let replaces = self.epoch_anchors.get(&epoch).is_none_or(|(_, _, current)| digest < *current);
        if !replaces {
            return;
        }
        let registry = self.registries.get(&content.registry_version).unwrap_or(&self.registry);
        let rank = election_order(registry, epoch).iter().position(|did| did == anchorer);
        self.epoch_anchors.insert(epoch, (content, anchorer.to_string(), digest));
        while self.epoch_anchors.len() > EPOCHS_KEPT {
            self.epoch_anchors.pop_first();
        }
        out.push(Output::Event(Event::Anchored {
            request: AnchorRequestId::Epoch(epoch),
            anchorer: anchorer.to_string(),
            rank,
        }));
    }
}
