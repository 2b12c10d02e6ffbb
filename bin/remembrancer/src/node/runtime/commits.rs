//! Appends waiting for a commit: the commit tick, the commit of what waited for a free anchor
//! slot, the answer to each append from the engine's `Committed` or refusal; the repeated
//! join and the re-anchoring of what is not final.

use super::*;

impl Node {
    /// The batch interval's commit (`freed` false), and the commit of what waited for an
    /// anchor slot as soon as a group frees one (`freed` true). Appends to a namespace whose
    /// anchor window is full wait until a receipt frees a slot (their commit then joins the
    /// write of the group that freed it, with its anchor), `batch_records` wait, or
    /// `SLOT_WAIT_MAX` passes (a node cut off from its quorum still acknowledges appends),
    /// instead of a synced write of records whose checkpoint cannot be anchored yet.
    pub(super) fn commit_anchorable(&mut self, host: &mut NodeHost, freed: bool) -> anyhow::Result<()> {
        if freed && self.held_for_window.is_empty() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let mut held = BTreeMap::new();
        for namespace in self.appends.keys().cloned().collect::<Vec<_>>() {
            let since = self.held_for_window.get(&namespace);
            let full = host.engine().anchor_window_full(&namespace);
            let hold = if freed {
                since.is_none() || full
            } else {
                full && since.is_none_or(|since| now.duration_since(*since) < SLOT_WAIT_MAX)
            };
            if hold {
                if let Some(appends) = self.appends.remove(&namespace) {
                    held.insert(namespace, appends);
                }
            }
        }
        self.held_for_window = held
            .keys()
            .filter(|namespace| host.engine().anchor_window_full(namespace))
            .map(|namespace| (namespace.clone(), self.held_for_window.get(namespace).copied().unwrap_or(now)))
            .collect();
        let result = self.commit_waiting(host);
        self.queued_records =
            held.values().flatten().map(|append: &PendingAppend| append.records.len()).sum();
        self.appends.extend(held);
        result
    }

    /// Commits the appends waiting per namespace: one engine commit (one synced batch) per
    /// namespace, then every waiting caller hears where its records landed.
    pub(super) fn commit_waiting(&mut self, host: &mut NodeHost) -> anyhow::Result<()> {
        let waiting = std::mem::take(&mut self.appends);
        self.queued_records = 0;
        for (namespace, appends) in waiting {
            let mut replies = Vec::with_capacity(appends.len());
            let mut records = Vec::new();
            for append in appends {
                replies.push((append.records.len() as u64, append.reply));
                records.extend(append.records);
            }
            let count = records.len() as u64;
            let started = std::time::Instant::now();
            let result = host.input_or_refusal(self, Input::Commit { namespace: namespace.clone(), records });
            tracing::trace!(%namespace, records = count, micros = started.elapsed().as_micros() as u64, "committed");
            // The engine answers a commit: `Committed` with where its records went, or why not.
            let answer = match &result {
                Ok(Ok(events)) => events
                    .iter()
                    .find_map(|event| match event {
                        Event::Committed { namespace: ns, first_index, size, .. } if *ns == namespace => {
                            Some(Ok((*first_index, *size)))
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| {
                        Err((503, format!("{namespace}: the commit was not answered; see the node's log")))
                    }),
                Ok(Err(EngineError::Refused(refusal))) => Err((409, format!("not stored: {refusal}"))),
                Ok(Err(EngineError::Commit(refusal))) => Err((409, format!("not stored: {refusal}"))),
                Ok(Err(EngineError::Proposal(error))) => Err((409, format!("not stored: {error}"))),
                Ok(Err(EngineError::Tree(error))) => {
                    Err((503, format!("{namespace}: the commit failed ({error}); see the node's log")))
                }
                Err(error) => {
                    Err((503, format!("{namespace}: the commit failed ({error}); see the node's log")))
                }
            };
            if let Ok((_, size)) = answer {
                self.commit_times.insert((namespace.clone(), size), started);
                while self.commit_times.len() > COMMIT_TIMES_MAX {
                    self.commit_times.pop_first();
                }
            }
            let mut first = answer.as_ref().map_or(0, |(first, _)| *first);
            for (n, reply) in replies {
                let response = match &answer {
                    Ok((_, size)) => Response::ok(serde_json::json!({
                        "namespace": namespace, "first_index": first, "count": n, "size": size,
                    })),
                    Err((status, message)) => Response::error(*status, message.clone()),
                };
                first += n;
                self.replies.push((reply, response));
            }
            // A refusal was answered above; the host's own failures stop the node.
            let _ = result?;
        }
        Ok(())
    }

    pub(super) fn repeat_join(&mut self, host: &mut NodeHost) -> anyhow::Result<()> {
        let Some((namespaces, endpoint)) = self.joining.clone() else { return Ok(()) };
        if host.engine().registry().member(self.identity.did()).is_some() {
            self.joining = None;
            return Ok(());
        }
        host.input(self, Input::RequestJoin { namespaces, endpoint })?;
        Ok(())
    }

    /// Signs and broadcasts again the current size of every owned namespace that is not
    /// final (after the retries of its anchor ran out, or when a member reconnects).
    pub(super) fn reanchor_unfinal(&mut self, host: &mut NodeHost) -> anyhow::Result<()> {
        self.last_reanchor = Some(std::time::Instant::now());
        let owned: Vec<String> = host
            .engine()
            .registry()
            .member(self.identity.did())
            .map(|m| m.namespaces.clone())
            .unwrap_or_default();
        for namespace in owned {
            host.input(self, Input::AnchorNow { namespace })?;
        }
        Ok(())
    }
}
