//! What arrives from the network: frames decoded, their signatures verified in one batch,
//! bookkeeping held back a little, each message judged by the engine and its verdict given to
//! gossipsub once the group is written.

use super::*;

impl Node {
    /// Gives gossipsub the verdicts of the messages handled since the last call: accepted
    /// ones are forwarded, refused ones cost the peer that sent them.
    pub(super) fn give_verdicts(&mut self) {
        for (id, source, verdict) in std::mem::take(&mut self.verdicts) {
            self.net.report(&id, &source, verdict);
        }
    }

    /// Handles network events that arrived together. Their messages are decoded first (a
    /// gossip frame may carry several). In a small federation, gossip that is bookkeeping
    /// ([`Engine::is_on_receipt_path`]) waits (`DEFER`, at most `DEFERRED_MAX` messages) and
    /// the rest is handled now, in order: the anchors and countersignatures that decide a
    /// receipt then do not wait behind bookkeeping (on a machine several members share, the
    /// others' bookkeeping does not take the cores from them either), and what waited is
    /// verified in larger batches.
    pub(super) fn on_net_group(&mut self, group: Vec<NetEvent>) -> anyhow::Result<()> {
        let defer = all_members_connect(self.engine.registry(), self.discovery_peers);
        let mut now = Vec::with_capacity(group.len());
        for event in group {
            match event {
                NetEvent::Gossip { source, id, data } => {
                    let parts = decode_frame(&data);
                    if parts.len() > 1 {
                        self.frames.insert(id.clone(), (parts.len(), Verdict::Ignore));
                    }
                    for message in parts {
                        let arrival = Arrival::Gossip { id: id.clone(), source, message };
                        self.hold_or_take(arrival, defer, &mut now)?;
                    }
                }
                NetEvent::Direct { peer, data } if self.did_of.contains_key(&peer) => {
                    for message in decode_frame(&data) {
                        self.hold_or_take(Arrival::Direct { peer, message }, defer, &mut now)?;
                    }
                }
                event => now.push(Arrival::Other(event)),
            }
        }
        self.on_arrivals(now)
    }

    /// The members a broadcast of the kinds every commit makes goes to directly, each on its
    /// message stream ([`remembrancer_net::streams_carry`], [`Net::stream_broadcast_peers`]):
    /// all the others while every other member is connected, whatever the federation's size.
    ///
    /// A stream costs less than gossipsub per message (no per-message send timer, no relayed
    /// duplicates or IDONTWANTs), and the receiver skips the message signature the connection
    /// vouches for: `scripts/bench sustained` 396-475 -> 732-765 receipts/s. Nothing is lost
    /// to the shortcut: members relay only anchors, which reach every member directly here.
    pub(super) fn broadcast_direct(&self) -> Vec<PeerId> {
        self.net.stream_broadcast_peers(self.did_of.keys().copied())
    }

    /// Holds a bookkeeping message back (`defer`: every member connects to every other) until
    /// the messages that decide receipts are handled; anything else joins `now`.
    pub(super) fn hold_or_take(
        &mut self,
        arrival: Arrival,
        defer: bool,
        now: &mut Vec<Arrival>,
    ) -> anyhow::Result<()> {
        let message = match &arrival {
            Arrival::Gossip { message, .. } | Arrival::Direct { message, .. } => Some(message),
            Arrival::Other(_) => None,
        };
        let held =
            defer && message.is_some_and(|m| m.as_ref().is_ok_and(|m| !self.engine.is_on_receipt_path(m)));
        if !held {
            now.push(arrival);
            return Ok(());
        }
        self.deferred_since.get_or_insert_with(tokio::time::Instant::now);
        self.deferred.push(arrival);
        if self.deferred.len() >= DEFERRED_MAX {
            self.handle_deferred()?;
        }
        Ok(())
    }

    /// Handles the bookkeeping held back, as one group.
    pub(super) fn handle_deferred(&mut self) -> anyhow::Result<()> {
        self.deferred_since = None;
        let deferred = std::mem::take(&mut self.deferred);
        self.counters.deferred += deferred.len() as u64;
        self.on_arrivals(deferred)
    }

    /// Handles arrivals in order; the signatures their handling would check one by one
    /// (members' message signatures where the connection does not vouch for the sender, and
    /// those inside anchors and countersigns) are verified first, in one batch
    /// ([`Engine::preverify`]).
    pub(super) fn on_arrivals(&mut self, group: Vec<Arrival>) -> anyhow::Result<()> {
        let messages: Vec<(&PeerMessage, bool)> = group
            .iter()
            .filter_map(|arrival| match arrival {
                Arrival::Direct { peer, message: Ok(message) } => {
                    Some((message, self.sent_by_sender(peer, message)))
                }
                Arrival::Gossip { message: Ok(message), .. } => Some((message, false)),
                _ => None,
            })
            .collect();
        let proven = self.engine.preverify(messages);
        self.counters.batch_verified += proven as u64;
        for arrival in group {
            self.on_arrival(arrival)?;
        }
        Ok(())
    }

    pub(super) fn on_arrival(&mut self, arrival: Arrival) -> anyhow::Result<()> {
        match arrival {
            Arrival::Gossip { id, source, message } => {
                let verdict = self.on_message(&source, message, false)?;
                self.frame_verdict(id, source, verdict);
            }
            Arrival::Direct { peer, message } => self.on_message(&peer, message, true).map(drop)?,
            Arrival::Other(NetEvent::Direct { peer, .. }) => {
                // Only members speak to a node directly; anyone else may relay gossip.
                self.counters.outsiders += 1;
                self.count_refused(&peer);
                tracing::info!(%peer, "direct message from a peer outside the registry dropped");
            }
            Arrival::Other(NetEvent::Connected(peer)) => {
                let member = self.did_of.get(&peer).cloned();
                tracing::info!(%peer, member = member.as_deref(), "connected");
                // A member (re)connecting may end a partition: anchors it missed go out again
                // (the retries of an anchor stop after about a minute).
                if member.is_some() && self.last_reanchor.is_none_or(|at| at.elapsed() >= REANCHOR_SPACING) {
                    self.reanchor_unfinal()?;
                }
            }
            Arrival::Other(NetEvent::Disconnected(peer)) => tracing::info!(%peer, "disconnected"),
            Arrival::Other(NetEvent::Listening(address)) => tracing::info!(%address, "listening"),
            // Gossip always becomes `Arrival::Gossip`.
            Arrival::Other(NetEvent::Gossip { .. }) => {}
        }
        Ok(())
    }

    /// Counts one message's verdict towards its frame's; once every message of the frame is
    /// handled (at once for a frame of one), the frame's verdict waits for gossipsub
    /// (`give_verdicts`).
    pub(super) fn frame_verdict(&mut self, id: MessageId, source: PeerId, verdict: Verdict) {
        let done = match self.frames.get_mut(&id) {
            Some((pending, combined)) => {
                *combined = combined.combine(verdict);
                *pending = pending.saturating_sub(1);
                (*pending == 0).then_some(*combined)
            }
            None => Some(verdict),
        };
        if let Some(verdict) = done {
            self.frames.remove(&id);
            self.verdicts.push((id, source, verdict));
        }
    }

    /// Hands a decoded message to the engine (an undecodable one is counted as garbage); the
    /// verdict steers gossipsub's scoring and is counted against the connection it came from.
    /// `direct`: it came on a connection from `from` itself (a stream or request), not gossip.
    pub(super) fn on_message(
        &mut self,
        from: &PeerId,
        message: Result<PeerMessage, MessageError>,
        direct: bool,
    ) -> anyhow::Result<Verdict> {
        let verdict = match message {
            Ok(message) => self.judge(from, message, direct)?,
            Err(error) => {
                // Counted per peer, for at most 4096 peers (the rest in one line).
                let key = if self.counters.garbage.len() < PEERS_COUNTED_MAX {
                    from.to_string()
                } else {
                    "others".to_string()
                };
                *self.counters.garbage.entry(key).or_default() += 1;
                tracing::info!(peer = %from, %error, "undecodable message");
                Verdict::Reject
            }
        };
        if verdict == Verdict::Reject {
            self.count_refused(from);
        }
        Ok(verdict)
    }

    pub(super) fn count_refused(&mut self, from: &PeerId) {
        let refused = &mut self.counters.refused_from;
        let key = from.to_string();
        let key = if refused.len() < PEERS_COUNTED_MAX || refused.contains_key(&key) {
            key
        } else {
            "others".to_string()
        };
        *refused.entry(key).or_default() += 1;
    }

    /// A message on a connection from `peer` itself whose key is the registry key of the
    /// message's sender: noise proved the connection's key, and a member's PeerId is its
    /// registry key, so the transport vouches for these bytes (the engine skips the message
    /// signature; relayed gossip is always checked).
    pub(super) fn sent_by_sender(&self, peer: &PeerId, message: &PeerMessage) -> bool {
        self.did_of.get(peer).is_some_and(|did| *did == message.sender)
    }

    /// The engine's verdict on a decoded message.
    pub(super) fn judge(
        &mut self,
        from: &PeerId,
        message: PeerMessage,
        direct: bool,
    ) -> anyhow::Result<Verdict> {
        let (kind, started) = (message.message_type(), std::time::Instant::now());
        let from_sender = direct && self.sent_by_sender(from, &message);
        if let (Content::Anchor(_), Some(owner)) = (&message.content, self.peer_of.get(&message.sender)) {
            if !self.answer_first.contains(owner) {
                self.answer_first.push(*owner);
            }
        }
        let input = if from_sender { Input::FromSender(message) } else { Input::Message(message) };
        let events = self.input(input)?;
        tracing::trace!(?kind, peer = %from, micros = started.elapsed().as_micros() as u64, "message handled");
        let (verdict, refusal) = Verdict::of(&events);
        if refusal == Some(Rejection::UnknownSender) {
            self.counters.outsiders += 1;
        }
        Ok(verdict)
    }
}
