//! The swarm's behaviours: Kademlia, gossipsub (sized for a federation of 3 to 100),
//! identify, ping, request-response, message streams, connection limits, optional mDNS.

use super::*;

pub use derived::{Behaviour, BehaviourEvent};

pub(crate) mod derived {
    // The derive generates `BehaviourEvent` without documentation.
    #![allow(missing_docs)]
    use super::*;

    /// Every protocol of the node's swarm.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Refuses blocked peers (operator block list, partition tests).
        pub blocks: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
        /// Caps connections.
        pub limits: connection_limits::Behaviour,
        /// Anchors, countersignatures, receipts, heartbeats.
        pub gossipsub: gossipsub::Behaviour,
        /// Discovery.
        pub kad: kad::Behaviour<MemoryStore>,
        /// Listen addresses and keys of peers.
        pub identify: identify::Behaviour,
        /// Liveness.
        pub ping: ping::Behaviour,
        /// Catch-up requests to one peer.
        pub direct: request_response::Behaviour<BytesCodec>,
        /// Message streams to and from each peer.
        pub streams: libp2p_stream::Behaviour,
        /// LAN discovery (optional).
        pub mdns: Toggle<mdns::tokio::Behaviour>,
    }
}

/// Message ids one IHAVE names, at most. Gossipsub 0.50 sends up to 5000 by default, but a
/// receiver refuses an RPC whose control part exceeds 16 KiB (`max_control_message_size`) and
/// drops the whole stream with it; our ids are SHA-256 (34 bytes each on the wire), so an
/// IHAVE over about 480 ids broke the stream to every member outside the sender's mesh under
/// load, and the send queue to that member then stayed full for good.
pub(crate) const IHAVE_IDS_MAX: usize = 400;
/// Bytes a receiver accepts in the control part of one gossipsub RPC (gossipsub's default).
pub(crate) const CONTROL_BYTES_MAX: usize = 16 * 1024;

/// Gossipsub sized for a federation of 3 to 100: content-hash message ids (our messages carry
/// their own signatures, so gossipsub's are off), validation by the application.
pub(crate) fn gossipsub_behaviour(config: &NetConfig) -> Result<gossipsub::Behaviour, NetError> {
    let mesh_n = config.mesh_n.max(2);
    // A publish goes to every connected member (flood publish), so the mesh only repairs what
    // a direct send missed. Every received message is announced to the mesh with IDONTWANT
    // (gossipsub 1.2), not only large ones: ours are small and many, and each duplicate costs
    // a frame, a decryption and a hash (`scripts/bench sustained` measures the effect).
    let gossip_config = gossipsub::ConfigBuilder::default()
        .flood_publish(true)
        .idontwant_message_size_threshold(0)
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| MessageId::from(Sha256::digest(&message.data).to_vec()))
        .mesh_n(mesh_n)
        .mesh_n_low((mesh_n / 2).max(1))
        .mesh_n_high(mesh_n * 2)
        .mesh_outbound_min((mesh_n / 3).max(1).min(mesh_n / 2))
        .heartbeat_interval(Duration::from_millis(500))
        .max_transmit_size(MESSAGE_BYTES_MAX + 1024)
        .duplicate_cache_time(Duration::from_secs(60))
        .max_control_messages_sent(IHAVE_IDS_MAX)
        .max_control_message_size(CONTROL_BYTES_MAX)
        .build()
        .map_err(|e| NetError::Gossipsub(e.to_string()))?;
    let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)
        .map_err(|e| NetError::Gossipsub(e.to_string()))?;
    // Peer scoring: rejected messages (invalid statements) cost the sender; many nodes on one
    // IP (a local federation) do not.
    let mut params = gossipsub::PeerScoreParams { ip_colocation_factor_weight: 0.0, ..Default::default() };
    let topic = federation_topic(&config.federation);
    // The defaults reward time in the mesh in milliseconds (a peer's first hour is worth
    // +1800, more than any penalty) and punish mesh peers that forward little, which every
    // member of a quiet federation does. Here: time in the mesh counts little, being first
    // with a valid message a little more, and rejected messages weigh quadratically: three
    // push a peer under the graylist threshold (-80: everything it sends is dropped unread);
    // the penalty decays (x0.9 per second), so one bad relay does not cut off an honest peer.
    params.topics.insert(
        topic.hash(),
        gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            time_in_mesh_weight: 0.01,
            time_in_mesh_quantum: Duration::from_secs(1),
            time_in_mesh_cap: 3600.0,
            first_message_deliveries_weight: 1.0,
            first_message_deliveries_decay: 0.5,
            first_message_deliveries_cap: 50.0,
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            invalid_message_deliveries_weight: -10.0,
            invalid_message_deliveries_decay: 0.9,
            ..Default::default()
        },
    );
    // Gossipsub also penalises a peer for each message to it that waited too long in our own
    // send queue ("slow peer", -0.2 each). Under a burst of load that is every member at once,
    // and under -50 a peer gets none of our publishes: a member falling behind would be cut
    // off, and fall further behind. The engine scores members' reliability itself.
    params.slow_peer_weight = 0.0;
    gossipsub
        .with_peer_score(params, gossipsub::PeerScoreThresholds::default())
        .map_err(NetError::Gossipsub)?;
    gossipsub.subscribe(&topic).map_err(|e| NetError::Gossipsub(e.to_string()))?;
    Ok(gossipsub)
}

/// Builds the node's behaviours for `key`.
pub(crate) fn behaviour(key: &libp2p::identity::Keypair, config: &NetConfig) -> Result<Behaviour, NetError> {
    let peer_id = key.public().to_peer_id();
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_query_timeout(Duration::from_secs(30));
    // Bootstraps come from `Net::discover` while a node has few connections (and from
    // Kademlia itself while its routing table is small), not every 5 minutes regardless.
    kad_config.set_periodic_bootstrap_interval(None);
    let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(Mode::Server));
    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| NetError::Transport(format!("mdns: {e}")))?,
        )
    } else {
        None
    };
    Ok(Behaviour {
        blocks: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(config.max_connections))
                .with_max_established_per_peer(Some(2))
                .with_max_pending_incoming(Some(64)),
        ),
        gossipsub: gossipsub_behaviour(config)?,
        kad,
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                .with_push_listen_addr_updates(true)
                .with_interval(jittered(IDENTIFY_INTERVAL)),
        ),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(jittered(PING_INTERVAL))),
        direct: request_response::Behaviour::with_codec(
            BytesCodec,
            [(DIRECT_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(10))
                .with_max_concurrent_streams(256),
        ),
        streams: libp2p_stream::Behaviour::new(),
        mdns: Toggle::from(mdns),
    })
}
