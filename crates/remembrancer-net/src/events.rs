//! What the swarm reports, turned into `NetEvent`s for the node (gossip to validate, messages,
//! requests, connections), and discovery: Kademlia provider lookups and bootstraps, paced and
//! jittered, and the addresses learned of each peer.

use super::*;

impl Net {
    /// Discovery housekeeping, called on a timer (every second or less; a call that is not
    /// due returns at once): announce this node as a provider of the federation and look up
    /// the other providers, one lookup at a time; while fewer than `discovery_peers` are
    /// connected after the pauses of [`LOOKUP_PAUSE_MIN`], about every `discovery_interval`
    /// after that. Kademlia bootstraps (a refresh of every bucket of the routing table) happen
    /// at most once per `discovery_interval`, and only while the node has few connections.
    pub fn discover(&mut self) {
        self.drop_graylisted();
        let well_connected = self.connected.len() >= self.discovery_peers;
        let pause = if well_connected {
            self.discovery_pause
        } else {
            LOOKUP_PAUSE_MIN.saturating_mul(1 << self.lookups_fruitless.min(16)).min(LOOKUP_PAUSE_MAX)
        };
        if self.lookup.is_some() || self.last_discovery.is_some_and(|at| at.elapsed() < pause) {
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        // In a 100-node swarm one bootstrap is about a thousand lookups answered by the others:
        // repeated every few seconds by every node still connecting, their backlog kept two
        // cores busy for more than 35 s after all had connected (`scripts/bench mesh` prints
        // the idle swarm's cost).
        if !well_connected && self.last_bootstrap.is_none_or(|at| at.elapsed() >= self.discovery_interval) {
            if let Err(error) = kad.bootstrap() {
                tracing::debug!(?error, "kademlia bootstrap: no known peers yet");
                return;
            }
            self.last_bootstrap = Some(std::time::Instant::now());
        }
        self.last_discovery = Some(std::time::Instant::now());
        self.discovery_pause = jittered(self.discovery_interval);
        if !self.providing {
            match kad.start_providing(self.key.clone()) {
                Ok(_) => self.providing = true,
                Err(error) => tracing::warn!(?error, "cannot announce the federation in the DHT"),
            }
        }
        self.lookup = Some(kad.get_providers(self.key.clone()));
    }

    pub(crate) fn remember(&mut self, peer: PeerId, address: Multiaddr) {
        if self.addresses.len() >= PEERS_REMEMBERED_MAX && !self.addresses.contains_key(&peer) {
            return;
        }
        let known = self.addresses.entry(peer).or_default();
        if !known.contains(&address) && known.len() < ADDRESSES_PER_PEER_MAX {
            known.push(address.clone());
            self.swarm.behaviour_mut().kad.add_address(&peer, address);
        }
    }

    /// The next application event; discovery and housekeeping events are handled inside.
    /// Cancel-safe: dropping the future loses no event.
    pub async fn next(&mut self) -> NetEvent {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    if let Some(event) = self.handle(event) {
                        return event;
                    }
                }
                Some((peer, stream)) = self.incoming.next() => self.read_stream(peer, stream),
                Some((peer, data)) = self.inbound.recv() => return NetEvent::Direct { peer, data },
            }
        }
    }

    pub(crate) fn handle(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<NetEvent> {
        if let Some(metrics) = &self.metrics {
            use libp2p::metrics::Recorder as _;
            metrics.record(&event);
            match &event {
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => metrics.record(e),
                _ => {}
            }
        }
        if let SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            step,
            ..
        })) = &event
        {
            if step.last {
                self.locating.remove(id);
            }
            if step.last && self.lookup == Some(*id) {
                self.lookup = None;
                // Dials started by one lookup connect while the next is under way: the growth
                // shows at the end of that one.
                if self.connected.len() > self.connected_after_lookup {
                    self.lookups_fruitless = 0;
                } else {
                    self.lookups_fruitless = self.lookups_fruitless.saturating_add(1);
                }
                self.connected_after_lookup = self.connected.len();
            }
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => return Some(NetEvent::Listening(address)),
            SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, .. } => {
                if endpoint.is_dialer() {
                    self.remember(peer_id, endpoint.get_remote_address().clone());
                }
                if num_established.get() == 1 && self.connected.insert(peer_id) {
                    return Some(NetEvent::Connected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. }
                if self.connected.remove(&peer_id) =>
            {
                // Its streams died with the connection: the tasks end on their own; forget them
                // so that the maps stay bounded by the connected peers.
                self.writers.remove(&peer_id);
                if let Some(reader) = self.readers.remove(&peer_id) {
                    reader.abort();
                }
                return Some(NetEvent::Disconnected(peer_id));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                return Some(NetEvent::Gossip {
                    source: propagation_source,
                    id: message_id,
                    data: message.data,
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            })) => {
                // Gossipsub logs each dropped message at warn, with the message; the node's
                // default filter silences that, and this counts them and warns at the 1st,
                // 2nd, 4th, ... heartbeat report.
                let failed = (failed_messages.priority + failed_messages.non_priority) as u64;
                let before = self.gossip_sends_failed;
                self.gossip_sends_failed += failed;
                if failed > 0 && (before == 0 || before.ilog2() < self.gossip_sends_failed.ilog2()) {
                    tracing::warn!(
                        peer = %peer_id,
                        failed,
                        since_start = self.gossip_sends_failed,
                        "gossip messages dropped: the send queue to this peer is full (it, or this node, is not keeping up)"
                    );
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Direct(request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            })) => {
                let _ = self.swarm.behaviour_mut().direct.send_response(channel, ());
                return Some(NetEvent::Direct { peer, data: request });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Direct(request_response::Event::OutboundFailure {
                peer,
                error,
                ..
            })) => {
                tracing::debug!(%peer, %error, "direct message not delivered");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // Identify is not wired into Kademlia for us: feed the listen addresses in.
                for address in info.listen_addrs.into_iter().take(ADDRESSES_PER_PEER_MAX) {
                    self.remember(peer_id, address);
                }
                if !self.providing {
                    self.discover();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders { providers, .. })),
                ..
            })) => {
                let me = self.peer_id();
                for provider in providers {
                    if provider != me && !self.connected.contains(&provider) {
                        if let Err(error) = self.swarm.dial(provider) {
                            tracing::debug!(%provider, %error, "provider dial failed");
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetClosestPeers(Ok(kad::GetClosestPeersOk { peers, .. })),
                ..
            })) => {
                let wanted = self.locating.get(&id).copied();
                if let Some(found) = peers.into_iter().find(|p| Some(p.peer_id) == wanted) {
                    tracing::debug!(peer = %found.peer_id, addresses = found.addrs.len(), "a peer found in the DHT");
                    for address in found.addrs.into_iter().take(ADDRESSES_PER_PEER_MAX) {
                        self.remember(found.peer_id, address);
                    }
                    self.dial_peer(found.peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, address) in found {
                    self.remember(peer, address.clone());
                    if !self.connected.contains(&peer) {
                        let _ = self.swarm.dial(address);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
            }
            _ => {}
        }
        None
    }
}
