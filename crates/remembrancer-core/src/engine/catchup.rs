//! Catch-up: receipts arriving from peers, heartbeats that show what a node lacks, and the
//! requests that fetch it (a receipt, registry updates, a consistency proof), one peer per
//! namespace per heartbeat interval.

use super::*;

impl<S: NodeStore> Engine<S> {
    /// False for a receipt no newer than this node's final one of its namespace and not
    /// conflicting with it: it changes nothing, and its signatures are not verified.
    pub(super) fn receipt_is_news(&self, receipt: &FederationReceipt) -> bool {
        !self.finals.get(&receipt.namespace).is_some_and(|last| {
            last.tree_size > receipt.tree_size
                || (last.tree_size == receipt.tree_size
                    && last.anchor.batch_root.value == receipt.anchor.batch_root.value)
        })
    }

    /// `message_signature` is the signature of the message that carried the receipt, when it
    /// was verified: it then identifies the exact bytes (with the sender), which keys the
    /// verdict memo. None when only the connection vouched for the message: its signature
    /// bytes prove nothing (a member could send other content under a signature of its own
    /// that once verified), and the receipt's own encoding keys the verdict.
    pub(super) fn on_receipt(
        &mut self,
        sender: &str,
        receipt: Arc<FederationReceipt>,
        message_signature: Option<&[u8; 64]>,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(registry) = self.registries.get(&receipt.registry_version) else {
            // Counted under a registry version we have not applied yet: catch up first.
            if receipt.registry_version > self.registry.version {
                self.request_registry(sender, now_ms, out);
            }
            return;
        };
        // A receipt no newer than our final one, and not conflicting with it, changes nothing:
        // skip its verification (67 signatures in a 100-node federation). Catch-up answers
        // and relays deliver a receipt more than once.
        if !self.receipt_is_news(&receipt) {
            return;
        }
        // Every node of a simulation verifies the same receipt under the same registry version:
        // the simulator memoizes the verdict (a node's small memo serves repeats), first by the
        // message (the sender's verified signature fixes its bytes, hence the receipt), then,
        // for a receipt passed on by another node, by the receipt's own encoding.
        let by_encoding = || {
            // One batch verification of all its signatures (about twice as fast as one by one;
            // a failing batch falls back to the full check, which names what is wrong). A
            // receipt whose signatures `preverify` proved is remembered under this key already.
            crate::signature::memoized(receipt_verdict_key(by_receipt_encoding(&receipt), registry), || {
                verify_receipts_batch(std::slice::from_ref(receipt.as_ref()), registry)[0]
            })
        };
        let verdict = match message_signature {
            Some(signature) => crate::signature::memoized(
                receipt_verdict_key(
                    Sha256::new().chain_update(sender.as_bytes()).chain_update(signature),
                    registry,
                ),
                by_encoding,
            ),
            None => by_encoding(),
        };
        if !verdict {
            self.reject(
                sender,
                Rejection::BadReceipt,
                format!("receipt for {} at {}", receipt.namespace, receipt.tree_size),
                now_ms,
                out,
            );
            return;
        }
        let namespace = receipt.namespace.clone();
        // A final root that differs from the one we countersigned at that size: the owner
        // signed both.
        let size = receipt.tree_size;
        if let Some(witnessed) = self.witnessed_conflict(&namespace, size, &receipt.anchor.batch_root.value) {
            if let (Ok(note), Some(signer)) = (
                receipt.to_note(&self.registry),
                receipt.signatures.iter().find(|s| s.role == Role::Anchor).map(|s| s.node.clone()),
            ) {
                let anchor_only =
                    Note { text: note.text, signatures: note.signatures.iter().take(1).cloned().collect() }
                        .to_text();
                self.raise_evidence(&signer, &namespace, size, witnessed, anchor_only, now_ms, out);
            }
            return;
        }
        self.check_own_receipt(&receipt, out);
        let newer = self.finals.get(&namespace).is_none_or(|r| r.tree_size < receipt.tree_size);
        if newer {
            out.push(Output::Persist(Persist::FinalReceipt(Arc::clone(&receipt))));
            out.push(Output::Event(Event::Finalized {
                namespace: namespace.clone(),
                size: receipt.tree_size,
                latency_ms: None,
            }));
            self.record_final(&namespace, receipt.tree_size, receipt.anchor.batch_root.value, now_ms);
            if self.catch_up.get(&namespace).is_some_and(|&(asked, _)| asked <= receipt.tree_size) {
                self.catch_up.remove(&namespace);
            }
            self.finals.insert(namespace, receipt);
        }
    }

    /// Asks `peer` for the registry updates after our version, unless that was asked less
    /// than a heartbeat interval ago.
    pub(super) fn request_registry(&mut self, peer: &str, now_ms: u64, out: &mut Vec<Output>) {
        if self.registry_asked.is_some_and(|(version, at_ms)| {
            version == self.registry.version && now_ms < at_ms + self.config.heartbeat_interval_ms
        }) {
            return;
        }
        self.registry_asked = Some((self.registry.version, now_ms));
        let request = Content::Request(RequestContent {
            kind: RequestKind::Registry,
            namespace: String::new(),
            from_size: self.registry.version,
            size: 0,
        });
        out.push(Output::Send {
            to: peer.to_string(),
            message: PeerMessage::sign(&self.identity, request, now_ms),
        });
    }

    pub(super) fn on_heartbeat(
        &mut self,
        sender: &str,
        content: HeartbeatContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if let Some(score) = self.scores.get_mut(sender) {
            score.heartbeats += 1;
        }
        if content.registry_version > self.registry.version {
            self.request_registry(sender, now_ms, out);
        }
        for (namespace, size) in content.finalized {
            let ours = self.finals.get(&namespace).map(|r| r.tree_size).unwrap_or(0);
            let asked = self.catch_up.get(&namespace).is_some_and(|&(asked, at_ms)| {
                asked >= size && now_ms < at_ms + self.config.heartbeat_interval_ms
            });
            if size > ours && !asked {
                if self.catch_up.len() >= CATCH_UP_PENDING_MAX && !self.catch_up.contains_key(&namespace) {
                    self.catch_up.pop_first();
                }
                self.catch_up.insert(namespace.clone(), (size, now_ms));
                let request = Content::Request(RequestContent {
                    kind: RequestKind::Receipt,
                    namespace,
                    from_size: ours,
                    size,
                });
                out.push(Output::Send {
                    to: sender.to_string(),
                    message: PeerMessage::sign(&self.identity, request, now_ms),
                });
            }
        }
    }

    pub(super) fn on_request(
        &mut self,
        sender: &str,
        content: RequestContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        match content.kind {
            RequestKind::Receipt => {
                if let Some(receipt) = self.finals.get(&content.namespace) {
                    let reply = Content::Receipt(Box::new(ReceiptContent { receipt: receipt.clone() }));
                    out.push(Output::Send {
                        to: sender.to_string(),
                        message: PeerMessage::sign(&self.identity, reply, now_ms),
                    });
                }
                Ok(())
            }
            RequestKind::Registry => {
                for update in self.chain.iter().filter(|c| c.proposal.base_version >= content.from_size) {
                    let reply = Content::Registry(Box::new(update.clone()));
                    out.push(Output::Send {
                        to: sender.to_string(),
                        message: PeerMessage::sign(&self.identity, reply, now_ms),
                    });
                }
                Ok(())
            }
            RequestKind::Consistency => self.publish_anchor(
                &content.namespace,
                content.size,
                Some((sender, content.from_size)),
                now_ms,
                out,
            ),
        }
    }
}
