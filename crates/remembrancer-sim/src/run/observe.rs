//! What the simulation watches: every node's persisted records and events against the safety
//! invariants, convergence, demotions, and the time series.

use super::*;

impl<'a> Simulation<'a> {
    pub(crate) fn observe_persist(&mut self, node: usize, record: Persist) {
        match record {
            Persist::Anchored { namespace, size, .. } => {
                self.anchored += 1;
                self.anchors.entry(namespace).or_default().push((self.now_ms, size));
            }
            Persist::FinalReceipt(receipt) => {
                let key = (receipt.namespace.clone(), receipt.tree_size);
                let root = receipt.anchor.batch_root.value;
                let honest = self.behavior(node).is_none();
                match self.final_roots.get(&key) {
                    Some((other, first)) if *other != root && honest => {
                        let detail = format!(
                            "{} at size {}: node {first} and node {node} hold final receipts with different roots",
                            key.0, key.1
                        );
                        self.violations.push(Violation {
                            invariant: "safety".to_string(),
                            at_ms: self.now_ms,
                            detail,
                        });
                    }
                    Some(_) => {}
                    None if honest => {
                        self.final_roots.insert(key, (root, node));
                    }
                    None => {}
                }
            }
            Persist::Evidence(evidence) => {
                self.evidence += 1;
                *self.detected.entry(evidence.signer).or_default() += 1;
                if self.first_evidence_ms.is_none() {
                    self.first_evidence_ms = Some(self.now_ms);
                }
            }
            // Honest members claim an epoch only when their election allows it: a claim out of
            // turn held against one is a defect.
            Persist::ClaimEvidence(evidence) => {
                let accused = (0..self.engines.len()).find(|&n| did_of(n) == evidence.signer);
                if accused.is_some_and(|n| self.behavior(n).is_none()) {
                    self.violations.push(Violation {
                        invariant: "no evidence against an honest node".to_string(),
                        at_ms: self.now_ms,
                        detail: format!(
                            "node {node} holds a claim of epoch {} out of turn by honest {}",
                            evidence.epoch, evidence.signer
                        ),
                    });
                }
                self.evidence += 1;
                *self.detected.entry(evidence.signer).or_default() += 1;
            }
            Persist::Records { .. }
            | Persist::Countersigned { .. }
            | Persist::Audit(_)
            | Persist::RegistryApplied(_) => {}
        }
    }

    pub(crate) fn observe_event(&mut self, node: usize, event: Event) {
        match event {
            Event::Finalized { namespace, size, latency_ms: Some(latency) } => {
                if namespace == namespace_of(node) {
                    self.receipts += 1;
                    self.latencies.push(latency);
                    self.finalized_log.entry(namespace).or_default().push((self.now_ms, size));
                }
            }
            Event::Rejected { reason, .. } => {
                *self.rejections.entry(format!("{reason:?}")).or_default() += 1;
            }
            Event::Anchored { request: AnchorRequestId::Epoch(epoch), anchorer, rank } => {
                // Counted once, from the anchorer's own engine.
                if anchorer == did_of(node) {
                    self.epochs_anchored.entry(epoch).or_insert(rank);
                }
            }
            Event::ProposalRefused { reason, .. } => {
                *self.rejections.entry(format!("ProposalRefused: {reason}")).or_default() += 1;
            }
            // An honest owner's tree is only ever what it signed: halting is a defect. A
            // byzantine one may see receipts of the roots it forked outside its engine.
            Event::Halted(refusal) => {
                if self.behavior(node).is_none() {
                    self.violations.push(Violation {
                        invariant: "honest owner halted".to_string(),
                        at_ms: self.now_ms,
                        detail: format!("node {node}: {refusal}"),
                    });
                }
            }
            // The host's: taken in order, after the input that raised it.
            Event::Messaging { content, .. } => {
                self.schedule(self.now_ms, SimEvent::Mail { node, content: Box::new(content) })
            }
            Event::Finalized { .. }
            | Event::Committed { .. }
            | Event::Equivocation { .. }
            | Event::UnelectedClaim { .. }
            | Event::RegistryChanged { .. }
            | Event::Anchored { request: AnchorRequestId::Receipt { .. }, .. } => {}
        }
    }

    /// Whether all up, honest nodes that can reach each other agree on every final size.
    pub(crate) fn converged(&self) -> bool {
        let honest: Vec<usize> =
            (0..self.engines.len()).filter(|&n| self.up[n] && self.behavior(n).is_none()).collect();
        let Some(&first) = honest.first() else { return true };
        let view = |n: usize| -> BTreeMap<&String, u64> {
            self.engines[n].finals().iter().map(|(ns, r)| (ns, r.tree_size)).collect()
        };
        let reference = view(first);
        honest.iter().all(|&n| view(n) == reference)
    }

    pub(crate) fn demoted_everywhere(&self) -> Vec<String> {
        let honest: Vec<usize> =
            (0..self.engines.len()).filter(|&n| self.up[n] && self.behavior(n).is_none()).collect();
        (0..self.engines.len())
            .map(did_of)
            .filter(|did| {
                !honest.is_empty()
                    && honest.iter().all(|&n| {
                        self.engines[n].registry().member(did).is_some_and(|m| m.status != PeerStatus::Active)
                    })
            })
            .collect()
    }

    pub(crate) fn record_series(&mut self, until_ms: u64) {
        while (self.series.len() as u64 + 1) * SERIES_STEP_MS <= until_ms {
            let time_ms = (self.series.len() as u64 + 1) * SERIES_STEP_MS;
            self.series.push(SeriesRow {
                time_s: time_ms / 1000,
                receipts_finalized: self.receipts,
                messages: self.messages,
                bytes: self.bytes,
                evidence: self.evidence,
                nodes_up: self.up.iter().filter(|u| **u).count() as u64,
                partitioned: self.partition_active(time_ms.saturating_sub(1)),
            });
        }
    }
}
