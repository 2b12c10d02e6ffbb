//! The owner's flow: a commit joins the namespace's tree, the checkpoint is signed (unless the
//! guard refuses) and broadcast with a consistency proof, retried with geometric backoff, and
//! the countersignatures are gathered until the quorum makes the federation receipt.

use super::*;

impl<S: NodeStore> Engine<S> {
    /// The state of an owned namespace, made with an empty tree the first time.
    pub(super) fn owned_entry(&mut self, namespace: &str, algorithm: HashAlgorithm) -> &mut Owned<S> {
        let new_store = &self.new_store;
        self.owned.entry(namespace.to_string()).or_insert_with(|| Owned {
            tree: MemoryTree::new(algorithm, (new_store.0)(namespace, algorithm)),
            finalized: None,
            pending: BTreeMap::new(),
            guard: Guard::default(),
        })
    }

    /// Halts an owned namespace when `receipt`, anchored by this node, holds a size its tree
    /// lacks or a root its tree contradicts: the store lost what this node signed, and
    /// signing over it would equivocate.
    pub(super) fn check_own_receipt(&mut self, receipt: &FederationReceipt, out: &mut Vec<Output>) {
        let Some(owned) = self.owned.get(&receipt.namespace) else { return };
        let anchored_here =
            receipt.signatures.iter().any(|s| s.role == Role::Anchor && s.node == self.identity.did());
        if !anchored_here {
            return;
        }
        let size = owned.tree.size();
        let what = if receipt.tree_size > size {
            "lacks"
        } else {
            match owned.tree.root_at(receipt.tree_size) {
                Ok(root) if root != receipt.anchor.batch_root.value => "contradicts",
                // Equal, or unreadable now (a store failure is not a disagreement).
                _ => return,
            }
        };
        let refusal = SignRefusal::FederationDisagrees {
            namespace: receipt.namespace.clone(),
            size,
            final_size: receipt.tree_size,
            what,
        };
        self.halt(refusal, out);
    }

    pub(super) fn commit(
        &mut self,
        namespace: &str,
        records: Vec<Vec<u8>>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), EngineError> {
        if records.is_empty() {
            return Err(CommitRefusal::Empty.into());
        }
        if records.len() > COMMIT_RECORDS_MAX {
            return Err(CommitRefusal::TooMany { count: records.len(), max: COMMIT_RECORDS_MAX }.into());
        }
        if crate::checkpoint::validate_namespace(namespace).is_err() {
            return Err(CommitRefusal::BadNamespace { namespace: namespace.to_string() }.into());
        }
        if !self.registry.may_anchor(self.identity.did(), namespace) {
            let version = self.registry.version;
            return Err(CommitRefusal::NotOwner { namespace: namespace.to_string(), version }.into());
        }
        // Checked before the records join the tree: a tree behind what this node signed would
        // give them the indices of records it acknowledged, a tree off what it signed would
        // make its next checkpoint equivocate. Once this holds, the appended tree extends the
        // signed one and `anchor_current` signs it. (A namespace new here has nothing signed.)
        if let Some(refusal) = self.refusal(namespace)? {
            return Err(refusal.into());
        }
        let owned = self.owned_entry(namespace, self.config.algorithm);
        let first_index = owned.tree.append_batch(records.iter().map(Vec::as_slice))?;
        let size = owned.tree.size();
        let window_full = owned.pending.len() >= self.anchor_window();
        out.push(Output::Persist(Persist::Records {
            namespace: namespace.to_string(),
            first_index,
            records,
        }));
        // Flow control: with the window full the records are stored now and anchored with the
        // next checkpoint once one finalizes.
        if !window_full {
            self.anchor_current(namespace, now_ms, out)?;
        }
        out.push(Output::Event(Event::Committed {
            namespace: namespace.to_string(),
            first_index,
            size,
            anchored: !window_full,
        }));
        Ok(())
    }

    /// Why `namespace`'s tree must not be signed at its current size (see [`SignRefusal`]);
    /// the namespace is halted when there is a reason.
    pub(super) fn refusal(&mut self, namespace: &str) -> Result<Option<SignRefusal>, TreeError> {
        let Some(owned) = self.owned.get_mut(namespace) else { return Ok(None) };
        let refusal = owned.guard.refusal(namespace, &owned.tree)?;
        if let Some(refusal) = &refusal {
            owned.guard.halt(refusal.clone());
        }
        Ok(refusal)
    }

    /// Halts an owned namespace and tells the host, once.
    pub(super) fn halt(&mut self, refusal: SignRefusal, out: &mut Vec<Output>) {
        let Some(owned) = self.owned.get_mut(refusal.namespace()) else { return };
        if owned.guard.halt(refusal.clone()) {
            out.push(Output::Event(Event::Halted(refusal)));
        }
    }

    /// Signs and broadcasts a checkpoint of an owned namespace at its current size, under the
    /// current registry version, unless that would contradict the last checkpoint this node
    /// signed (the namespace halts instead: see [`SignRefusal`]).
    pub(super) fn anchor_current(
        &mut self,
        namespace: &str,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let Some(owned) = self.owned.get_mut(namespace) else { return Ok(()) };
        if let Some(refusal) = owned.guard.refusal(namespace, &owned.tree)? {
            self.halt(refusal, out);
            return Ok(());
        }
        let checkpoint = Checkpoint {
            federation_id: self.registry.name.clone(),
            namespace: namespace.to_string(),
            size: owned.tree.size(),
            root: owned.tree.root(),
            anchor: AnchorClaim::local(owned.tree.algorithm(), now_secs(now_ms))
                .with_registry_version(self.registry.version),
        };
        // One signature over the body is both the anchor signature and the note's.
        let (anchor_signature, raw) = sign_anchor_raw(&self.identity, &checkpoint);
        let body = checkpoint.body();
        let note =
            Note { text: body.clone(), signatures: vec![NoteSignature::ed25519_made(&self.identity, &raw)] }
                .to_text();
        // Its countersignatures carry this note back: signed here, it needs no verification.
        remember_verified_note(&self.verified_notes, note_digest(self.registry.version, &note));
        let mut signatures = BTreeMap::new();
        signatures.insert(self.identity.did().to_string(), anchor_signature);
        let active = usize::from(
            self.registry.member(self.identity.did()).is_some_and(|m| m.status == PeerStatus::Active),
        );
        let size = checkpoint.size;
        owned.guard.signed_now(size, checkpoint.root);
        out.push(Output::Persist(Persist::Anchored {
            namespace: namespace.to_string(),
            size,
            note: note.clone(),
        }));
        self.recent_anchors.insert((namespace.to_string(), size), (now_ms, checkpoint.root, BTreeSet::new()));
        while self.recent_anchors.len() > RECENT_ANCHORS_MAX {
            self.recent_anchors.pop_first();
        }
        owned.pending.insert(
            size,
            Pending {
                checkpoint,
                body,
                note,
                heard_at_retry: signatures.len(),
                signatures,
                active,
                anchored_at_ms: now_ms,
            },
        );
        while owned.pending.len() > PENDING_ANCHORS_MAX {
            owned.pending.pop_first();
        }
        self.publish_anchor(namespace, size, None, now_ms, out)?;
        out.push(Output::SetTimer {
            timer: Timer::AnchorRetry { namespace: namespace.to_string(), size, attempt: 1 },
            at_ms: now_ms + self.config.anchor_retry_base_ms,
        });
        self.try_finalize(namespace, size, now_ms, out);
        Ok(())
    }

    /// Sends the anchor at `size` with a consistency proof from the last final size, or from
    /// `from_size` to one peer that asked.
    pub(super) fn publish_anchor(
        &mut self,
        namespace: &str,
        size: u64,
        to: Option<(&str, u64)>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let Some(owned) = self.owned.get(namespace) else { return Ok(()) };
        let Some(pending) = owned.pending.get(&size).map(|p| p.note.clone()).or_else(|| {
            self.finals.get(namespace).filter(|r| r.tree_size == size).and_then(|r| {
                r.to_note(&self.registry).ok().map(|n| {
                    Note { text: n.text, signatures: n.signatures.iter().take(1).cloned().collect() }
                        .to_text()
                })
            })
        }) else {
            return Ok(());
        };
        // To everyone: from the previous anchor still pending (what the witnesses countersigned
        // last when anchors follow each other faster than they finalize), else the final size.
        let from = match to {
            Some((_, from_size)) => from_size.min(size),
            None => owned
                .pending
                .range(..size)
                .next_back()
                .map(|(s, _)| *s)
                .or(owned.finalized.map(|(s, _)| s))
                .unwrap_or(0),
        };
        let proof = owned.tree.consistency_proof(from, size)?;
        let content = Content::Anchor(AnchorContent {
            checkpoint: pending,
            consistency_from: from,
            consistency_proof: proof,
        });
        match to {
            Some((peer, _)) => out.push(Output::Send {
                to: peer.to_string(),
                message: PeerMessage::sign(&self.identity, content, now_ms),
            }),
            None => out.push(Output::Publish(PeerMessage::unsealed(self.identity.did(), content, now_ms))),
        }
        Ok(())
    }

    pub(super) fn retry_anchor(
        &mut self,
        namespace: &str,
        size: u64,
        attempt: u32,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let Some(pending) = self.owned.get_mut(namespace).and_then(|o| o.pending.get_mut(&size)) else {
            return Ok(());
        };
        if attempt > self.config.anchor_retries_max {
            return Ok(());
        }
        // Countersignatures still arriving mean the anchor reached the witnesses and the
        // federation is slow, not deaf: broadcasting again would make every witness sign and
        // send an answer again, more work for a federation already behind (in the 100-node
        // swarm of `scripts/bench mesh`, signatures per checkpoint went from 657 to 321 with
        // this rule). Only a retry interval without a new countersignature broadcasts again;
        // the interval still doubles.
        let heard = pending.signatures.len();
        let silent = heard <= pending.heard_at_retry;
        pending.heard_at_retry = heard;
        if silent {
            self.anchors_rebroadcast += 1;
            self.publish_anchor(namespace, size, None, now_ms, out)?;
        }
        let delay = self.config.anchor_retry_base_ms.saturating_mul(1u64 << attempt.min(20));
        out.push(Output::SetTimer {
            timer: Timer::AnchorRetry { namespace: namespace.to_string(), size, attempt: attempt + 1 },
            at_ms: now_ms + delay,
        });
        Ok(())
    }

    /// True when `note_text` is a checkpoint of a namespace this node owns whose size is
    /// still pending.
    pub(super) fn awaits_countersign(&self, note_text: &str) -> bool {
        namespace_and_size(note_text).is_some_and(|(namespace, size)| {
            self.owned.get(namespace).is_some_and(|o| o.pending.contains_key(&size))
        })
    }

    /// The pending anchor of this node's own whose note `note_text` is, byte for byte: it
    /// keeps the checkpoint and body [`Engine::signed_checkpoint`] would parse out of it.
    pub(super) fn own_pending_note(&self, note_text: &str) -> Option<&Pending> {
        let (namespace, size) = namespace_and_size(note_text)?;
        self.owned.get(namespace)?.pending.get(&size).filter(|pending| pending.note == note_text)
    }

    /// True when `note_text` is a checkpoint of a namespace this node owns (read from its
    /// origin line, without parsing the note).
    pub(super) fn owns_checkpoint(&self, note_text: &str) -> bool {
        note_namespace(note_text).is_some_and(|namespace| self.owned.contains_key(namespace))
    }

    pub(super) fn on_countersign(
        &mut self,
        sender: &str,
        content: CountersignContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        // Another witness countersigned the very note this node did: nothing to check.
        if self.countersigned_here(&content.checkpoint) {
            return;
        }
        // The countersign carries the owner's signed note, so every member that sees it holds
        // the owner's signature on that root: split views surface as evidence. The note of one
        // of this node's pending anchors is known as it was signed.
        let parsed = match self.own_pending_note(&content.checkpoint) {
            Some(pending) => {
                Ok((pending.checkpoint.clone(), self.identity.did().to_string(), pending.body.clone()))
            }
            None => self.signed_checkpoint(&content.checkpoint),
        };
        let (checkpoint, owner, body) = match parsed {
            Ok(parsed) => parsed,
            Err((reason, detail)) => {
                self.reject(sender, reason, detail, now_ms, out);
                return;
            }
        };
        let registry = Arc::clone(&self.registry);
        let Some(member) = registry.member(sender) else { return };
        let Ok(raw) = <[u8; 64]>::try_from(content.signature.as_slice()) else {
            self.reject(sender, Rejection::Malformed, "cosignature length".to_string(), now_ms, out);
            return;
        };
        let namespace = checkpoint.namespace.clone();
        if !self.owned.contains_key(&namespace) {
            // Another owner's checkpoint: only its signed note matters here (verified above,
            // once per note), checked against what this node countersigned. The cosignature
            // serves the owner alone, and checking it here cost a signature verification per
            // member per countersignature: the largest share of a federation's CPU.
            self.check_witnessed(&owner, &checkpoint, content.checkpoint, now_ms, out);
            return;
        }
        let message = cosignature_message(content.timestamp, &body);
        if !crate::signature::verify(&member.key, &message, &raw) {
            self.reject(
                sender,
                Rejection::BadStatement,
                "cosignature does not verify".to_string(),
                now_ms,
                out,
            );
            return;
        }
        if self.check_witnessed(&owner, &checkpoint, content.checkpoint, now_ms, out) {
            return;
        }
        self.score_countersign(sender, &namespace, &checkpoint, now_ms);
        let Some(pending) = self.owned.get_mut(&namespace).and_then(|o| o.pending.get_mut(&checkpoint.size))
        else {
            return;
        };
        if pending.body != body || sender == self.identity.did() || pending.signatures.contains_key(sender) {
            return;
        }
        pending.signatures.insert(
            sender.to_string(),
            SignatureJson {
                node: sender.to_string(),
                sig: crate::identity::multibase_signature(&raw),
                role: Role::Witness,
                timestamp: content.timestamp,
            },
        );
        if member.status == PeerStatus::Active {
            pending.active += 1;
        }
        self.try_finalize(&namespace, checkpoint.size, now_ms, out);
    }

    /// Scores a witness's reliability on the first countersignature of one of our recent
    /// checkpoints, finalized or not: on time within `countersign_deadline_ms` of the anchor.
    pub(super) fn score_countersign(
        &mut self,
        sender: &str,
        namespace: &str,
        checkpoint: &Checkpoint,
        now_ms: u64,
    ) {
        let Some((anchored_ms, root, counted)) =
            self.recent_anchors.get_mut(&(namespace.to_string(), checkpoint.size))
        else {
            return;
        };
        if *root != checkpoint.root || !counted.insert(sender.to_string()) {
            return;
        }
        let on_time = now_ms.saturating_sub(*anchored_ms) <= self.config.countersign_deadline_ms;
        let score = self.scores.entry(sender.to_string()).or_default();
        if on_time {
            score.countersigns_on_time += 1;
        } else {
            score.countersigns_late += 1;
        }
    }

    /// Finalizes the anchor at `size` if distinct active signers reach the quorum.
    pub(super) fn try_finalize(&mut self, namespace: &str, size: u64, now_ms: u64, out: &mut Vec<Output>) {
        let Some(owned) = self.owned.get_mut(namespace) else { return };
        let Some(pending) = owned.pending.get(&size) else { return };
        if pending.checkpoint.anchor.registry_version != self.registry.version {
            return;
        }
        if pending.active < self.registry.quorum as usize {
            return;
        }
        // Final: the pending anchor leaves, and its signatures move into the receipt.
        let Some(pending) = owned.pending.remove(&size) else { return };
        let receipt = Arc::new(FederationReceipt::assemble(
            &pending.checkpoint,
            pending.signatures.into_values().collect(),
            &self.registry,
        ));
        let latency_ms = now_ms.saturating_sub(pending.anchored_at_ms);
        owned.finalized = Some((size, pending.checkpoint.root));
        owned.pending.retain(|s, _| *s > size);
        out.push(Output::Persist(Persist::FinalReceipt(Arc::clone(&receipt))));
        out.push(Output::Event(Event::Finalized {
            namespace: namespace.to_string(),
            size,
            latency_ms: Some(latency_ms),
        }));
        let content = Content::Receipt(Box::new(ReceiptContent { receipt: Arc::clone(&receipt) }));
        out.push(Output::Publish(PeerMessage::unsealed(self.identity.did(), content, now_ms)));
        self.record_final(namespace, size, receipt.anchor.batch_root.value, now_ms);
        if self.registry.anchor_propagation.mode == AnchorMode::Independent {
            // Independent mode: every owner anchors each of its own final receipts.
            let request = AnchorRequestId::Receipt { namespace: namespace.to_string(), size };
            out.push(Output::AnchorRequest { request, root: receipt.anchor.batch_root.value });
        }
        self.finals.insert(namespace.to_string(), receipt);
        self.anchor_deferred(namespace, now_ms, out);
    }

    /// Own anchors a namespace may have pending at once (the configured window, 1 to
    /// [`PENDING_ANCHORS_MAX`]).
    pub(super) fn anchor_window(&self) -> usize {
        self.config.anchors_in_flight_max.clamp(1, PENDING_ANCHORS_MAX)
    }

    /// Anchors the records that flow control held back (committed while the anchor window was
    /// full), once the window has room again.
    pub(super) fn anchor_deferred(&mut self, namespace: &str, now_ms: u64, out: &mut Vec<Output>) {
        let Some(owned) = self.owned.get(namespace) else { return };
        let covered =
            owned.pending.keys().next_back().copied().max(owned.finalized.map(|(size, _)| size)).unwrap_or(0);
        let room = owned.pending.len() < self.anchor_window();
        if room && owned.tree.size() > covered {
            // Its consistency proof runs between sizes the tree holds, so it cannot fail; a
            // failure would leave the records for the next anchor or `AnchorNow`.
            let _ = self.anchor_current(namespace, now_ms, out);
        }
    }
}
