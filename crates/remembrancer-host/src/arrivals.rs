//! What arrives from the network: frames decoded, bookkeeping held back a little, the
//! signatures of a group verified in one batch, each message judged by the engine and each
//! gossip frame's verdict given to gossipsub after the group's write.

use remembrancer_core::engine::{Input, Rejection};
use remembrancer_core::merkle::NodeStore;
use remembrancer_core::message::{decode_frame, Content, MessageError, PeerMessage};
use remembrancer_net::libp2p::gossipsub::MessageId;
use remembrancer_net::libp2p::PeerId;
use remembrancer_net::{NetEvent, Verdict};

use crate::{Embedder, Host, DEFERRED_MAX};

/// One message as the host handles it (one of a frame's, decoded), or another network event.
pub(crate) enum Arrival {
    /// A message that came by gossip: its frame's id and the peer that relayed the frame.
    Gossip { id: MessageId, source: PeerId, message: Result<PeerMessage, MessageError> },
    /// A member's message on a connection from that member itself (a stream or request).
    Direct { peer: PeerId, message: Result<PeerMessage, MessageError> },
    /// Any other event: bytes from a peer outside the registry, connections, listen addresses.
    Other(NetEvent),
}

impl<S: NodeStore> Host<S> {
    /// Gives gossipsub the verdicts of the frames handled since the last call: accepted ones
    /// are forwarded, refused ones cost the peer that sent them.
    pub(crate) fn give_verdicts(&mut self) {
        for (id, source, verdict) in std::mem::take(&mut self.verdicts) {
            self.net.report(&id, &source, verdict);
        }
    }

    /// Handles network events that arrived together. Their messages are decoded first (a
    /// gossip frame may carry several). Where bookkeeping may wait ([`HostConfig::defer`](crate::HostConfig)),
    /// it waits, and the rest is handled now, in order: the anchors and countersignatures that
    /// decide a receipt then do not wait behind bookkeeping (on a machine several members
    /// share, the others' bookkeeping does not take the cores from them either), and what
    /// waited is verified in larger batches.
    pub(crate) fn on_net_group<A: Embedder<S>>(
        &mut self,
        app: &mut A,
        group: Vec<NetEvent>,
    ) -> anyhow::Result<()> {
        let defer = self.defers();
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
                        self.hold_or_take(app, arrival, defer, &mut now)?;
                    }
                }
                NetEvent::Direct { peer, data } if self.members.did_of.contains_key(&peer) => {
                    for message in decode_frame(&data) {
                        self.hold_or_take(app, Arrival::Direct { peer, message }, defer, &mut now)?;
                    }
                }
                event => now.push(Arrival::Other(event)),
            }
        }
        self.on_arrivals(app, now)
    }

    /// Holds a bookkeeping message back (`defer`) until the messages that decide receipts are
    /// handled; anything else joins `now`.
    fn hold_or_take<A: Embedder<S>>(
        &mut self,
        app: &mut A,
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
        if self.deferred_since.is_none() {
            let started = tokio::time::Instant::now();
            let wait = if self.config.defer_drawn {
                remembrancer_net::jittered(self.config.defer)
            } else {
                self.config.defer
            };
            self.deferred_since = Some(started);
            self.deferred_until = Some(started + wait);
        }
        self.deferred.push(arrival);
        if self.deferred.len() >= DEFERRED_MAX {
            self.handle_deferred(app)?;
        }
        Ok(())
    }

    /// When the bookkeeping waiting is due: its wait is up, or the host has been quiet
    /// ([`HostConfig::quiet`](crate::HostConfig)) since the last network event or call.
    pub(crate) fn deferred_due(&self) -> Option<tokio::time::Instant> {
        let (since, until) = (self.deferred_since?, self.deferred_until?);
        Some(match self.config.quiet {
            Some(quiet) => until.min(self.last_busy.max(since) + quiet),
            None => until,
        })
    }

    /// Handles the bookkeeping held back, as one group.
    pub(crate) fn handle_deferred<A: Embedder<S>>(&mut self, app: &mut A) -> anyhow::Result<()> {
        self.deferred_since = None;
        self.deferred_until = None;
        let deferred = std::mem::take(&mut self.deferred);
        self.counters.deferred += deferred.len() as u64;
        self.on_arrivals(app, deferred)
    }

    /// Handles arrivals in order; the signatures their handling would check one by one
    /// (members' message signatures where the connection does not vouch for the sender, and
    /// those inside anchors and countersigns) are verified first, in one batch
    /// ([`Engine::preverify`](remembrancer_core::engine::Engine::preverify)).
    fn on_arrivals<A: Embedder<S>>(&mut self, app: &mut A, group: Vec<Arrival>) -> anyhow::Result<()> {
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
            self.on_arrival(app, arrival)?;
        }
        Ok(())
    }

    fn on_arrival<A: Embedder<S>>(&mut self, app: &mut A, arrival: Arrival) -> anyhow::Result<()> {
        match arrival {
            Arrival::Gossip { id, source, message } => {
                let verdict = self.on_message(app, &source, message, false)?;
                self.frame_verdict(id, source, verdict);
            }
            Arrival::Direct { peer, message } => self.on_message(app, &peer, message, true).map(drop)?,
            Arrival::Other(NetEvent::Direct { peer, .. }) => {
                // Only members speak to a node directly; anyone else may relay gossip.
                self.counters.outsiders += 1;
                self.counters.refused(&peer.to_string());
                tracing::info!(%peer, "direct message from a peer outside the registry dropped");
            }
            Arrival::Other(NetEvent::Connected(peer)) => {
                let member = self.members.did_of.get(&peer).cloned();
                tracing::info!(%peer, member = member.as_deref(), "connected");
                app.on_connection(self, peer, member.as_deref(), true)?;
            }
            Arrival::Other(NetEvent::Disconnected(peer)) => {
                tracing::info!(%peer, "disconnected");
                let member = self.members.did_of.get(&peer).cloned();
                app.on_connection(self, peer, member.as_deref(), false)?;
            }
            Arrival::Other(NetEvent::Listening(address)) => tracing::info!(%address, "listening"),
            // Gossip always becomes `Arrival::Gossip`.
            Arrival::Other(NetEvent::Gossip { .. }) => {}
        }
        Ok(())
    }

    /// Counts one message's verdict towards its frame's; once every message of the frame is
    /// handled (at once for a frame of one), the frame's verdict waits for gossipsub
    /// (`give_verdicts`).
    fn frame_verdict(&mut self, id: MessageId, source: PeerId, verdict: Verdict) {
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
    fn on_message<A: Embedder<S>>(
        &mut self,
        app: &mut A,
        from: &PeerId,
        message: Result<PeerMessage, MessageError>,
        direct: bool,
    ) -> anyhow::Result<Verdict> {
        let verdict = match message {
            Ok(message) => self.judge(app, from, message, direct)?,
            Err(error) => {
                self.counters.garbage(&from.to_string());
                tracing::info!(peer = %from, %error, "undecodable message");
                Verdict::Reject
            }
        };
        if verdict == Verdict::Reject {
            self.counters.refused(&from.to_string());
        }
        Ok(verdict)
    }

    /// A message on a connection from `peer` itself whose key is the registry key of the
    /// message's sender: noise proved the connection's key, and a member's PeerId is its
    /// registry key, so the transport vouches for these bytes (the engine skips the message
    /// signature; relayed gossip is always checked).
    fn sent_by_sender(&self, peer: &PeerId, message: &PeerMessage) -> bool {
        self.members.did_of.get(peer).is_some_and(|did| *did == message.sender)
    }

    /// The engine's verdict on a decoded message.
    fn judge<A: Embedder<S>>(
        &mut self,
        app: &mut A,
        from: &PeerId,
        message: PeerMessage,
        direct: bool,
    ) -> anyhow::Result<Verdict> {
        let (kind, started) = (message.message_type(), std::time::Instant::now());
        let from_sender = direct && self.sent_by_sender(from, &message);
        if let (Content::Anchor(_), Some(owner)) =
            (&message.content, self.members.peer_of.get(&message.sender))
        {
            if !self.answer_first.contains(owner) {
                self.answer_first.push(*owner);
            }
        }
        // A cross-namespace delivery or answer that came on gossip is taken but not forwarded:
        // payloads go to the members they are for, they never flood the mesh.
        let payload = matches!(message.content, Content::XDelivery(_) | Content::XAck(_));
        let input = if from_sender { Input::FromSender(message) } else { Input::Message(message) };
        let events = self.input(app, input)?;
        tracing::trace!(?kind, peer = %from, micros = started.elapsed().as_micros() as u64, "message handled");
        let (verdict, refusal) = Verdict::of(&events);
        let verdict = if payload && verdict == Verdict::Accept { Verdict::Ignore } else { verdict };
        let judged = match verdict {
            Verdict::Accept => 0,
            Verdict::Ignore => 1,
            Verdict::Reject => 2,
        };
        self.counters.validated(kind, judged);
        if refusal == Some(Rejection::UnknownSender) {
            self.counters.outsiders += 1;
        }
        Ok(verdict)
    }
}
