//! Group commit: each input's outputs carried out in order, the records of a group of inputs
//! written as one batch, and only then the messages and answers that waited for the write.

use std::collections::VecDeque;

use remembrancer_core::engine::{EngineError, Event, Input, Output, Persist};
use remembrancer_core::merkle::NodeStore;
use remembrancer_core::message::encode_frames;

use crate::{now_ms, Embedder, Host, Members};

impl<S: NodeStore> Host<S> {
    /// Feeds one input to the engine. Its records join the next write; timers, anchor
    /// requests and events are handled now; messages wait for the write ([`Host::flush`]). An
    /// input the engine refuses is logged and gives no events.
    pub fn input<A: Embedder<S>>(&mut self, app: &mut A, input: Input) -> anyhow::Result<Vec<Event>> {
        Ok(self.input_or_refusal(app, input)?.unwrap_or_default())
    }

    /// [`Host::input`], giving back the engine's refusal of `input` itself (a commit or an
    /// anchor of a halted namespace, say), for an answer to the client that asked.
    pub fn input_or_refusal<A: Embedder<S>>(
        &mut self,
        app: &mut A,
        input: Input,
    ) -> anyhow::Result<Result<Vec<Event>, EngineError>> {
        // Inputs that outputs of this one call for (an anchor's reference), in order.
        let mut queue = VecDeque::new();
        let mut events = Vec::new();
        let mut outputs = std::mem::take(&mut self.outputs);
        let mut next = Some(input);
        let mut first = true;
        let mut refusal = None;
        while let Some(input) = next.take().or_else(|| queue.pop_front()) {
            outputs.clear();
            if let Err(error) = self.engine.handle_into(input, now_ms(), &mut outputs) {
                tracing::error!(%error, "engine refused an input");
                if std::mem::take(&mut first) {
                    refusal = Some(error);
                }
                continue;
            }
            first = false;
            // What it persists joins the next write before anything it releases.
            for output in outputs.drain(..) {
                match output {
                    Output::Persist(persist) => self.unsynced.push(persist),
                    Output::Publish(_) | Output::Send { .. } => self.held.push(output),
                    Output::SetTimer { timer, at_ms } => {
                        self.timer_seq += 1;
                        self.timers.insert((at_ms, self.timer_seq), timer);
                    }
                    Output::AnchorRequest { request, root } => {
                        if let Some(reference) = app.anchor(&request, &root) {
                            queue.push_back(Input::Anchored { request, reference });
                        }
                    }
                    Output::Event(event) => {
                        if let Event::RegistryChanged { .. } = event {
                            self.members = Members::of(self.engine.registry());
                        }
                        app.on_event(&self.engine, &event);
                        events.push(event);
                    }
                }
            }
        }
        outputs.clear();
        self.outputs = outputs;
        Ok(refusal.map_or(Ok(events), Err))
    }

    /// Writes what the inputs since the last write persisted, as one batch, and only then
    /// sends their messages and the embedder's answers: nothing is announced or acknowledged
    /// before it is stored. The batch is synced when something waits for it; a batch that
    /// releases nothing (others' countersignatures and receipts, say) is written unsynced: it
    /// survives the process at once and the machine with the next synced write, which syncs
    /// every write before it. So a member's synced writes are the ones it promises something
    /// with.
    pub fn flush<A: Embedder<S>>(&mut self, app: &mut A) -> anyhow::Result<()> {
        if !self.unsynced.is_empty() {
            // Taken and given back empty: its room serves the next write.
            let mut unsynced = std::mem::take(&mut self.unsynced);
            let promised = !self.held.is_empty() || app.awaits_write();
            let started = std::time::Instant::now();
            app.persist(&unsynced, promised)?;
            // The trees may now drop what they can read back.
            for persist in &unsynced {
                if let Persist::Records { namespace, first_index, records } = persist {
                    let size = first_index + records.len() as u64;
                    let stored = Input::Stored { namespace: namespace.clone(), size };
                    self.engine.handle_into(stored, now_ms(), &mut self.outputs)?;
                }
            }
            if promised {
                // Milliseconds to the microsecond, as finality latencies.
                let millis = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
                self.counters.synced_write(&self.held, millis);
            } else {
                self.counters.writes_unsynced += 1;
            }
            tracing::trace!(
                records = unsynced.len(),
                micros = started.elapsed().as_micros() as u64,
                out = self.held.len(),
                synced = promised,
                "written"
            );
            unsynced.clear();
            self.unsynced = unsynced;
        }
        self.release();
        app.released();
        Ok(())
    }

    /// Sends the messages the last write released. Broadcasts of the kinds every commit makes
    /// go on each member's message stream while every other member is connected
    /// ([`Host::broadcast_direct`]); the rest, and all of them otherwise, by gossip. What one
    /// write released goes out in as few frames as fit.
    fn release(&mut self) {
        if self.held.is_empty() {
            self.answer_first.clear();
            return;
        }
        let publishes = self.held.iter().any(|output| matches!(output, Output::Publish(_)));
        let mut direct = if publishes { self.broadcast_direct() } else { Vec::new() };
        for owner in std::mem::take(&mut self.answer_first).into_iter().rev() {
            if let Some(at) = direct.iter().position(|peer| *peer == owner) {
                direct[..=at].rotate_right(1);
            }
        }
        let (mut streamed, mut gossiped) = (Vec::new(), Vec::new());
        let mut held = std::mem::take(&mut self.held);
        for output in held.drain(..) {
            match output {
                Output::Publish(message)
                    if !direct.is_empty() && remembrancer_net::streams_carry(&message) =>
                {
                    streamed.push(message.encode())
                }
                Output::Publish(mut message) => {
                    // Gossip may be relayed: the message must prove its sender itself.
                    self.engine.seal(&mut message);
                    gossiped.push(message.encode())
                }
                Output::Send { to, message } => match self.members.peer_of.get(&to) {
                    Some(peer) => self.net.send_message(*peer, &message),
                    None => tracing::debug!(%to, "no PeerId for a message's recipient"),
                },
                _ => {}
            }
        }
        self.held = held;
        self.counters.messages_published += (streamed.len() + gossiped.len()) as u64;
        for frame in encode_frames(streamed) {
            self.counters.frames_published += 1;
            self.counters.frames_streamed += 1;
            self.net.send_each(direct.iter().copied(), frame);
        }
        for frame in encode_frames(gossiped) {
            self.counters.frames_published += 1;
            if let Err(error) = self.net.publish(frame) {
                // Counted always, logged at the 1st, 2nd, 4th, 8th, ... failure: an
                // overloaded mesh fails every publish and the log would drown.
                self.counters.publish_failed += 1;
                if self.counters.publish_failed.is_power_of_two() {
                    tracing::warn!(%error, failures = self.counters.publish_failed, "gossip publish failed; anchors are retried, receipts reach laggards through catch-up");
                }
            }
        }
    }

    /// The members a broadcast of the kinds every commit makes goes to directly, each on its
    /// message stream ([`remembrancer_net::streams_carry`], [`remembrancer_net::Net::stream_broadcast_peers`]):
    /// all the others while every other member is connected, whatever the federation's size.
    ///
    /// A stream costs less than gossipsub per message (no per-message send timer, no relayed
    /// duplicates or IDONTWANTs), and the receiver skips the message signature the connection
    /// vouches for: `scripts/bench sustained` 396-475 -> 732-765 receipts/s. Nothing is lost
    /// to the shortcut: members relay only anchors, which reach every member directly here.
    fn broadcast_direct(&self) -> Vec<remembrancer_net::libp2p::PeerId> {
        self.net.stream_broadcast_peers(self.members.did_of.keys().copied())
    }
}
