//! The libp2p side of a Remembrancer node: one swarm with TCP and QUIC (noise, yamux),
//! identify, ping, Kademlia under our own protocol name (members find each other through
//! provider records under the federation's key), gossipsub with application validation on
//! one topic per federation, one long-lived stream per peer for messages to one peer
//! (countersignatures, heartbeats, catch-up answers), a request-response protocol for catch-up
//! requests, connection limits and a block list. Messages are opaque bytes here: the node decodes them
//! and answers every gossip message with the engine's verdict.

pub mod inprocess;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::time::Duration;

/// The frames [`Net::send`] takes: one buffer shared by every peer it goes to.
pub use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, ValidationMode,
};
use libp2p::kad::{self, store::MemoryStore, Mode, QueryResult, RecordKey};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{allow_block_list, connection_limits, identify, mdns, noise, ping, tcp, yamux};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use remembrancer_core::message::{Content, MessageType, PeerMessage};
use sha2::{Digest as _, Sha256};

pub use libp2p;

/// Kademlia protocol name: our own, so the node never joins the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/remembrancer/kad/1.0.0");
/// The request-response protocol of catch-up requests.
pub const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/remembrancer/direct/1.0.0");
/// The message stream protocol: one long-lived stream per peer and direction carrying
/// length-prefixed messages, so a message costs one frame, not a substream and a negotiation.
pub const STREAM_PROTOCOL: StreamProtocol = StreamProtocol::new("/remembrancer/messages/1.0.0");
/// Messages queued for one peer's stream, at most; beyond it a send is dropped and counted
/// (the engine's retries, heartbeats and catch-up cover a lost message).
pub const STREAM_QUEUE_MAX: usize = 512;
/// Bytes written to a stream at once, at most: queued messages go out together up to this.
const STREAM_WRITE_BYTES: usize = 64 * 1024;
/// Messages read from all streams and not yet taken by the node, at most (the readers wait).
const INBOUND_QUEUE_MAX: usize = 1024;
/// The byte a node writes on a message stream it accepted, before reading from it: the
/// opener writes only once it has seen it. libp2p-stream hands inbound streams over through a
/// one-place queue and drops those that find it full (a burst of peers opening streams at
/// once); without this byte their first messages would be lost unseen.
const STREAM_READY: u8 = 0x52;
/// Attempts to open a stream to a peer and see it accepted, before the queued messages are
/// dropped; the waits between attempts double from `STREAM_RETRY_BASE`, with jitter.
const STREAM_OPEN_ATTEMPTS: u32 = 7;
const STREAM_RETRY_BASE: Duration = Duration::from_millis(20);
/// How long an opener waits for [`STREAM_READY`].
const STREAM_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Identify's protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/remembrancer/id/1.0.0";
/// How often each connection is pinged on average (libp2p's default is 15 s): each node draws
/// its own interval with [`jittered`]. Nothing here reads the round trips; a ping only shows a
/// connection alive. In the 100-node swarm of `scripts/bench mesh` (9 900 connections opened
/// within seconds of each other) the idle swarm, with no checkpoint, kept 0.35-0.47 cores busy
/// with 15 s pings (its raw baseline 0.23-0.34) and 0.21 with 60 s pings (raw 0.07), in two
/// runs whose p99 was 180 and 301 ms. With the same 60 s at every node, all of a connection's
/// pings after the first came in step: sampled each second, the idle raw swarm went from
/// 0.05-0.15 cores to 0.3-0.9 for about 12 s every 60 s (about 4 CPU-seconds a round). The
/// draw alone did not lower the mesh's tail in two runs (p99 668 and 330 ms); keeping freed
/// pages did (`remembrancer-bench`'s `PURGE_DELAY`).
pub const PING_INTERVAL: Duration = Duration::from_secs(60);
/// How often identify asks each connection again on average (libp2p's default), drawn per
/// node like [`PING_INTERVAL`]: a 100-node swarm started together would otherwise exchange
/// 9 900 identify records in step every five minutes.
pub const IDENTIFY_INTERVAL: Duration = Duration::from_secs(300);
/// Largest message on either protocol (the peer-message cap of the core).
pub const MESSAGE_BYTES_MAX: usize = remembrancer_core::message::PEER_MESSAGE_BYTES_MAX;

/// A pause drawn uniformly between half and one and a half times `interval`. Members that
/// connected together would otherwise repeat their provider lookups in step, a hundred at once
/// in the 100-node swarm of `scripts/bench mesh` (each a few dozen Kademlia requests on new
/// substreams): its three slowest receipts fell within two seconds of one run (587-670 ms,
/// p99 587 ms); with drawn pauses the next run's p99 was 185 ms, its raw baseline's 120 ms.
pub(crate) fn jittered(interval: Duration) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    // A randomly keyed hasher: std's per-process random keys, and a fresh one per call.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(0.5 + fraction)
}

/// The broadcasts a member sends on each other member's stream while every other member is
/// connected to it: the kinds every commit makes. Join requests, registry updates, evidence
/// and epoch anchors always go by gossip, which reaches nodes outside the registry too (a
/// joiner learns it was admitted from the registry update).
pub fn streams_carry(message: &PeerMessage) -> bool {
    matches!(
        message.content,
        Content::Anchor(_) | Content::Countersign(_) | Content::Receipt(_) | Content::Heartbeat(_)
    )
}

/// Network settings of one node.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The node's Ed25519 secret seed: the same key as its registry DID, so its PeerId is
    /// derived from its registry key.
    pub secret_seed: [u8; 32],
    /// Federation name (topic and DHT key).
    pub federation: String,
    /// Addresses to listen on (TCP and/or QUIC multiaddrs).
    pub listen: Vec<Multiaddr>,
    /// Addresses of any members to start from (with or without `/p2p/<id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS too.
    pub mdns: bool,
    /// Most established connections.
    pub max_connections: u32,
    /// Gossipsub mesh degree (target peers per topic); low and high bounds derive from it.
    /// Publishes flood to every connected member anyway; the mesh relays to the rest.
    pub mesh_n: usize,
    /// How often [`Net::discover`] re-bootstraps Kademlia and looks up the federation's
    /// providers once `discovery_peers` are connected (below that, see
    /// [`LOOKUP_PAUSE_MIN`]): a large federation's lookups answering each other cost more than
    /// the rest of the swarm. Each pause is drawn anew between half and one and a half times
    /// this, so members that connected together do not all look up at once.
    pub discovery_interval: Duration,
    /// Connected peers under which [`Net::discover`] searches at the short pauses.
    pub discovery_peers: usize,
}

impl NetConfig {
    /// Defaults for a federation of 3 to 100 members.
    pub fn new(secret_seed: [u8; 32], federation: &str) -> Self {
        NetConfig {
            secret_seed,
            federation: federation.to_string(),
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 256,
            mesh_n: 3,
            discovery_interval: Duration::from_secs(60),
            discovery_peers: 24,
        }
    }
}

/// What can go wrong setting up the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The key seed is not a valid Ed25519 secret.
    #[error("the node key is not a valid Ed25519 key: {0}")]
    Key(String),
    /// A transport could not be set up.
    #[error("transport: {0}")]
    Transport(String),
    /// Gossipsub refused its configuration.
    #[error("gossipsub: {0}")]
    Gossipsub(String),
    /// A listen address was refused.
    #[error("cannot listen on {address}: {reason} (is the port in use?)")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A message could not be published.
    #[error("publish: {0}")]
    Publish(String),
}

/// The gossip topic of a federation.
pub fn federation_topic(federation: &str) -> IdentTopic {
    IdentTopic::new(format!("remembrancer/{federation}/v1"))
}

/// The DHT key under which the members of a federation provide.
pub fn federation_key(federation: &str) -> RecordKey {
    RecordKey::new(&Sha256::digest(format!("remembrancer/federation/{federation}").as_bytes()).to_vec())
}

/// The libp2p PeerId of an Ed25519 public key (the registry key of a member).
pub fn peer_id_of(public_key: &[u8; 32]) -> Option<PeerId> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(public_key).ok()?;
    Some(PeerId::from_public_key(&libp2p::identity::PublicKey::from(key)))
}

/// Length-prefixed (u32, big-endian) opaque bytes, bounded by [`MESSAGE_BYTES_MAX`]; the
/// response is an empty acknowledgement.
#[derive(Debug, Clone, Default)]
pub struct BytesCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    io.read_exact(&mut length).await?;
    let length = u32::from_be_bytes(length) as usize;
    if length > MESSAGE_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes is over the cap"),
        ));
    }
    let mut data = vec![0u8; length];
    io.read_exact(&mut data).await?;
    Ok(data)
}

/// Appends one frame (length prefix and bytes) to `buffer`.
fn push_frame(buffer: &mut Vec<u8>, data: &[u8]) {
    buffer.extend_from_slice(&(data.len() as u32).to_be_bytes());
    buffer.extend_from_slice(data);
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8]) -> io::Result<()> {
    if data.len() > MESSAGE_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame over the cap"));
    }
    let mut frame = Vec::with_capacity(4 + data.len());
    push_frame(&mut frame, data);
    io.write_all(&frame).await?;
    io.close().await
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<()> {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &request).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        (): (),
    ) -> io::Result<()> {
        io.write_all(&[1]).await?;
        io.close().await
    }
}

pub use behaviour::{Behaviour, BehaviourEvent};

mod behaviour {
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
const IHAVE_IDS_MAX: usize = 400;
/// Bytes a receiver accepts in the control part of one gossipsub RPC (gossipsub's default).
const CONTROL_BYTES_MAX: usize = 16 * 1024;

/// Gossipsub sized for a federation of 3 to 100: content-hash message ids (our messages carry
/// their own signatures, so gossipsub's are off), validation by the application.
fn gossipsub_behaviour(config: &NetConfig) -> Result<gossipsub::Behaviour, NetError> {
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
fn behaviour(key: &libp2p::identity::Keypair, config: &NetConfig) -> Result<Behaviour, NetError> {
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

/// The application-level events of the network.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message to validate: answer with [`Net::report`].
    Gossip {
        /// The peer that forwarded it.
        source: PeerId,
        /// Its content-hash id.
        id: MessageId,
        /// The message bytes.
        data: Vec<u8>,
    },
    /// A message sent to this node alone (on its stream, or a request already acknowledged).
    Direct {
        /// Sender.
        peer: PeerId,
        /// The message bytes.
        data: Vec<u8>,
    },
    /// A connection to a peer opened (first one).
    Connected(PeerId),
    /// The last connection to a peer closed.
    Disconnected(PeerId),
    /// Listening on a new address.
    Listening(Multiaddr),
}

/// The gossip verdict of the application on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Invalid: drop it and penalise the peer that sent it.
    Reject,
    /// Not invalid but not worth forwarding (a duplicate, a replay, outdated).
    Ignore,
}

impl Verdict {
    /// The gossip verdict on a message from the engine's events for it, with the refusal
    /// that decided it: none is `Accept`, a replay or a stale clock `Ignore` (no fault of the
    /// relaying peer), any other refusal `Reject`.
    pub fn of(
        events: &[remembrancer_core::engine::Event],
    ) -> (Verdict, Option<remembrancer_core::engine::Rejection>) {
        use remembrancer_core::engine::{Event, Rejection};
        let refusal = events.iter().find_map(|e| match e {
            Event::Rejected { reason, .. } => Some(*reason),
            _ => None,
        });
        let verdict = match refusal {
            None => Verdict::Accept,
            Some(Rejection::Replay) | Some(Rejection::Stale) => Verdict::Ignore,
            Some(_) => Verdict::Reject,
        };
        (verdict, refusal)
    }

    /// The verdict on a gossip frame of several messages from theirs: one refused message
    /// refuses the frame; otherwise it is forwarded if any message in it was worth it.
    pub fn combine(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Reject, _) | (_, Verdict::Reject) => Verdict::Reject,
            (Verdict::Accept, _) | (_, Verdict::Accept) => Verdict::Accept,
            _ => Verdict::Ignore,
        }
    }
}

/// A node's network: the swarm plus discovery housekeeping.
pub struct Net {
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    key: RecordKey,
    connected: BTreeSet<PeerId>,
    /// Addresses learnt per peer (identify, bootstrap), for dialing providers.
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    providing: bool,
    /// When discovery last searched, and the settings of `discover`.
    last_discovery: Option<std::time::Instant>,
    /// When `discover` last bootstrapped Kademlia.
    last_bootstrap: Option<std::time::Instant>,
    /// The provider lookup in flight, if any.
    lookup: Option<kad::QueryId>,
    /// Lookups in a row after which no more peers were connected than after the one before.
    lookups_fruitless: u32,
    /// Peers connected when the last lookup ended.
    connected_after_lookup: usize,
    discovery_interval: Duration,
    /// The pause before the next lookup of a well-connected node ([`jittered`]).
    discovery_pause: Duration,
    discovery_peers: usize,
    /// Opens message streams.
    control: libp2p_stream::Control,
    /// Message streams opened by peers.
    incoming: libp2p_stream::IncomingStreams,
    /// One writer task per peer, fed through a bounded queue.
    writers: HashMap<PeerId, tokio::sync::mpsc::Sender<Bytes>>,
    /// The reader task of each peer's stream (a peer's newer stream replaces its older one).
    readers: HashMap<PeerId, tokio::task::AbortHandle>,
    /// Messages the reader tasks took off the streams.
    inbound: tokio::sync::mpsc::Receiver<(PeerId, Vec<u8>)>,
    inbound_sender: tokio::sync::mpsc::Sender<(PeerId, Vec<u8>)>,
    /// Messages not sent: the peer's queue was full or the message over the cap.
    sends_dropped: u64,
    /// Publishes sent on the peers' streams because gossipsub had no peer for them.
    published_direct: u64,
    /// Gossip messages (publishes, forwards, control) gossipsub could not queue for a peer
    /// because the peer's send queue was full, as its heartbeats report them.
    gossip_sends_failed: u64,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("peer_id", self.swarm.local_peer_id()).finish()
    }
}

/// While fewer than `discovery_peers` are connected, provider lookups follow each other after
/// a pause that starts here and doubles, up to [`LOOKUP_PAUSE_MAX`], after each lookup that
/// ends with no more peers connected than the one before; one that ends with more starts over.
/// A node started with one bootstrap address thus finds the members that announced themselves
/// a moment after it asked within a second, not at the next 10 s tick (the devnet's first
/// receipts were final only after 10 s); a settled small federation looks up every 10 s, and a
/// provider that cannot be reached (a member down or blocked: its record outlives it) does not
/// keep the lookups at the short pause.
pub const LOOKUP_PAUSE_MIN: Duration = Duration::from_millis(250);
/// The longest pause between provider lookups while fewer than `discovery_peers` are connected.
pub const LOOKUP_PAUSE_MAX: Duration = Duration::from_secs(10);

/// Peers and addresses learnt per peer are capped (a hostile DHT cannot grow them forever).
const ADDRESSES_PER_PEER_MAX: usize = 8;
const PEERS_REMEMBERED_MAX: usize = 4096;

/// The libp2p keypair of the node's registry key.
fn keypair(config: &NetConfig) -> Result<libp2p::identity::Keypair, NetError> {
    let mut seed = config.secret_seed;
    let secret = libp2p::identity::ed25519::SecretKey::try_from_bytes(&mut seed)
        .map_err(|e| NetError::Key(e.to_string()))?;
    Ok(libp2p::identity::Keypair::from(libp2p::identity::ed25519::Keypair::from(secret)))
}

impl Net {
    /// Builds the swarm with TCP and QUIC (and DNS names), listens, and dials the bootstrap
    /// addresses.
    pub fn start(config: &NetConfig) -> Result<Net, NetError> {
        let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair(config)?)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|e| NetError::Transport(e.to_string()))?
            .with_quic()
            // `/dns4/...` and `/dns6/...` addresses (bootstrap lists name hosts), resolved with
            // the system's resolver configuration.
            .with_dns()
            .map_err(|e| NetError::Transport(format!("DNS resolver from the system configuration: {e}")))?
            .with_behaviour(|key| behaviour(key, config).map_err(Box::from))
            .map_err(|e| NetError::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        Net::with_swarm(swarm, config)
    }

    /// Builds the swarm on libp2p's in-process memory transport (`/memory/<n>` addresses),
    /// with the same noise, yamux and behaviours as [`Net::start`]: many real nodes in one
    /// process, for tests and benchmarks.
    pub fn start_memory(config: &NetConfig) -> Result<Net, NetError> {
        use libp2p::core::transport::{MemoryTransport, Transport as _};
        use libp2p::core::upgrade::Version;
        let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair(config)?)
            .with_tokio()
            .with_other_transport(|key| {
                let noise = noise::Config::new(key)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    MemoryTransport::default()
                        .upgrade(Version::V1)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default())
                        .boxed(),
                )
            })
            .map_err(|e| NetError::Transport(e.to_string()))?
            .with_behaviour(|key| behaviour(key, config).map_err(Box::from))
            .map_err(|e| NetError::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        Net::with_swarm(swarm, config)
    }

    /// Wraps a swarm built elsewhere (tests use the memory transport).
    pub fn with_swarm(mut swarm: Swarm<Behaviour>, config: &NetConfig) -> Result<Net, NetError> {
        for address in &config.listen {
            swarm
                .listen_on(address.clone())
                .map_err(|e| NetError::Listen { address: address.clone(), reason: error_chain(&e) })?;
        }
        let mut control = swarm.behaviour().streams.new_control();
        let incoming = control
            .accept(STREAM_PROTOCOL)
            .map_err(|e| NetError::Transport(format!("message streams: {e}")))?;
        let (inbound_sender, inbound) = tokio::sync::mpsc::channel(INBOUND_QUEUE_MAX);
        let mut net = Net {
            swarm,
            topic: federation_topic(&config.federation),
            key: federation_key(&config.federation),
            connected: BTreeSet::new(),
            addresses: HashMap::new(),
            providing: false,
            last_discovery: None,
            last_bootstrap: None,
            lookup: None,
            lookups_fruitless: 0,
            connected_after_lookup: 0,
            discovery_interval: config.discovery_interval,
            discovery_pause: jittered(config.discovery_interval),
            discovery_peers: config.discovery_peers,
            control,
            incoming,
            writers: HashMap::new(),
            readers: HashMap::new(),
            inbound,
            inbound_sender,
            sends_dropped: 0,
            published_direct: 0,
            gossip_sends_failed: 0,
        };
        for address in &config.bootstrap {
            net.dial(address.clone());
        }
        Ok(net)
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// The addresses the swarm listens on.
    pub fn listeners(&self) -> Vec<Multiaddr> {
        self.swarm.listeners().cloned().collect()
    }

    /// Peers with an open connection.
    pub fn connected(&self) -> &BTreeSet<PeerId> {
        &self.connected
    }

    /// The peers a broadcast goes to on their message streams, given the federation's
    /// `members`: all the others, when this node is one of them and every other member is
    /// connected now, whatever the federation's size. Empty otherwise: gossipsub then carries
    /// the broadcast, and members relay it to those this node cannot reach.
    pub fn stream_broadcast_peers(&self, members: impl IntoIterator<Item = PeerId>) -> Vec<PeerId> {
        let me = self.peer_id();
        let (mut member, mut others) = (false, Vec::new());
        for peer in members {
            if peer == me {
                member = true;
            } else if self.connected.contains(&peer) {
                others.push(peer);
            } else {
                return Vec::new();
            }
        }
        if member {
            others
        } else {
            Vec::new()
        }
    }

    /// Dials an address; with a `/p2p/<id>` suffix the peer also goes into the DHT table.
    pub fn dial(&mut self, address: Multiaddr) {
        if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = address.iter().last() {
            self.swarm.behaviour_mut().kad.add_address(&peer, address.clone());
        }
        if let Err(error) = self.swarm.dial(address.clone()) {
            tracing::debug!(%address, %error, "dial failed");
        }
    }

    /// Dials a peer by id, at the addresses the DHT and identify gave for it.
    pub fn dial_peer(&mut self, peer: PeerId) {
        if peer == self.peer_id() || self.connected.contains(&peer) {
            return;
        }
        let known = self.addresses.get(&peer).cloned().unwrap_or_default();
        let options = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(known)
            .extend_addresses_through_behaviour()
            .build();
        if let Err(error) = self.swarm.dial(options) {
            tracing::debug!(%peer, %error, "dial failed");
        }
    }

    /// Publishes a message to the federation's topic. Having no peer yet is not an error:
    /// the engine's retries and heartbeats cover it. When gossipsub finds no peer to publish
    /// to although peers are connected (none has told us it subscribed, or gossipsub's score
    /// of every one is under the publish threshold), the message goes to each connected peer
    /// on its message stream instead, and is counted ([`Net::published_direct`]): a federation
    /// whose gossip state went wrong keeps finalizing, and `status` shows it.
    pub fn publish(&mut self, data: Vec<u8>) -> Result<(), NetError> {
        // Kept for the fallback only when it may be needed (a publish moves the bytes).
        let fallback = (!self.connected.is_empty()).then(|| data.clone());
        match self.swarm.behaviour_mut().gossipsub.publish(self.topic.clone(), data) {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => Ok(()),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                if let Some(data) = fallback {
                    self.published_direct += 1;
                    if self.published_direct.is_power_of_two() {
                        tracing::warn!(
                            connected = self.connected.len(),
                            times = self.published_direct,
                            "gossipsub has no peer to publish to although peers are connected; sent on each peer's stream instead"
                        );
                    }
                    let peers: Vec<PeerId> = self.connected.iter().copied().collect();
                    for peer in peers {
                        self.send(peer, data.clone());
                    }
                }
                Ok(())
            }
            Err(error) => Err(NetError::Publish(error.to_string())),
        }
    }

    /// Publishes gossipsub had no peer for while peers were connected, sent on each
    /// connected peer's stream instead, since start.
    pub fn published_direct(&self) -> u64 {
        self.published_direct
    }

    /// Gossip messages dropped since start because a peer's send queue was full (the peer,
    /// or this node, is not keeping up).
    pub fn gossip_sends_failed(&self) -> u64 {
        self.gossip_sends_failed
    }

    /// Sends one frame to each of `peers` ([`Net::send`]): one buffer, a reference count per
    /// peer, not a copy per peer.
    pub fn send_each(&mut self, peers: impl IntoIterator<Item = PeerId>, data: impl Into<Bytes>) {
        let data: Bytes = data.into();
        for peer in peers {
            self.send(peer, data.clone());
        }
    }

    /// Sends a message to one peer on this node's stream to it (opened, and the peer dialed,
    /// on first use; opened again after a failure). Messages to one peer arrive in order. A
    /// message over the cap, or beyond [`STREAM_QUEUE_MAX`] waiting for the peer, is dropped
    /// and counted ([`Net::sends_dropped`]). A frame for several peers goes through
    /// [`Net::send_each`].
    pub fn send(&mut self, peer: PeerId, data: impl Into<Bytes>) {
        let data: Bytes = data.into();
        if data.len() > MESSAGE_BYTES_MAX {
            self.sends_dropped += 1;
            tracing::debug!(%peer, bytes = data.len(), "message over the cap not sent");
            return;
        }
        use tokio::sync::mpsc::error::TrySendError;
        let result = match self.writers.get(&peer) {
            Some(writer) => writer.try_send(data),
            None => Err(TrySendError::Closed(data)),
        };
        let data = match result {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => {
                self.sends_dropped += 1;
                if self.sends_dropped.is_power_of_two() {
                    tracing::debug!(%peer, dropped = self.sends_dropped, "the peer's message queue is full");
                }
                return;
            }
            // No writer yet, or it ended (stream or connection failed): open a new stream.
            Err(TrySendError::Closed(data)) => data,
        };
        if self.writers.len() >= PEERS_REMEMBERED_MAX {
            // Writers to peers that never connected (their dial failed) end on their own.
            self.writers.retain(|_, writer| !writer.is_closed());
        }
        let writer = spawn_writer(self.control.clone(), peer);
        let _ = writer.try_send(data);
        self.writers.insert(peer, writer);
    }

    /// Sends an engine message to one peer: a catch-up request by request-response, every
    /// other message on the peer's message stream ([`Net::send`]).
    pub fn send_message(&mut self, peer: PeerId, message: &PeerMessage) {
        let data = message.encode();
        if message.message_type() == MessageType::Request {
            self.request(peer, data);
        } else {
            self.send(peer, data);
        }
    }

    /// Sends a catch-up request to one peer (request-response; the answer to the protocol is
    /// an acknowledgement, the engine's answer comes back as a message).
    pub fn request(&mut self, peer: PeerId, data: Vec<u8>) {
        self.swarm.behaviour_mut().direct.send_request(&peer, data);
    }

    /// Messages [`Net::send`] dropped since start (queue full or over the cap).
    pub fn sends_dropped(&self) -> u64 {
        self.sends_dropped
    }

    /// Reads the frames of a peer's new message stream into the inbound queue, in a task of
    /// its own; it replaces that peer's earlier stream (a writer opens a new one only after
    /// its old one failed), so a peer has one reader at most.
    fn read_stream(&mut self, peer: PeerId, mut stream: libp2p::Stream) {
        let sender = self.inbound_sender.clone();
        let task = tokio::spawn(async move {
            let ready = async {
                stream.write_all(&[STREAM_READY]).await?;
                stream.flush().await
            };
            if let Err(error) = ready.await {
                tracing::debug!(%peer, %error, "message stream closed before it was ready");
                return;
            }
            loop {
                match read_frame(&mut stream).await {
                    Ok(data) => {
                        if sender.send((peer, data)).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        if error.kind() != io::ErrorKind::UnexpectedEof {
                            tracing::debug!(%peer, %error, "message stream closed");
                        }
                        return;
                    }
                }
            }
        });
        if let Some(older) = self.readers.insert(peer, task.abort_handle()) {
            older.abort();
        }
    }

    /// Answers a gossip message with the application's verdict.
    pub fn report(&mut self, id: &MessageId, source: &PeerId, verdict: Verdict) {
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(id, source, acceptance);
    }

    /// Gossipsub's score of a peer (negative once it delivered rejected messages).
    pub fn gossip_score(&self, peer: &PeerId) -> Option<f64> {
        self.swarm.behaviour().gossipsub.peer_score(peer)
    }

    /// Blocks a peer: its connections close and new ones are refused.
    pub fn block(&mut self, peer: PeerId) {
        self.swarm.behaviour_mut().blocks.block_peer(peer);
    }

    /// Lifts a block.
    pub fn unblock(&mut self, peer: PeerId) {
        self.swarm.behaviour_mut().blocks.unblock_peer(peer);
        // Who is reachable changed: the next discovery call looks up again without a pause.
        self.lookups_fruitless = 0;
        self.last_discovery = None;
    }

    /// Discovery housekeeping, called on a timer (every second or less; a call that is not
    /// due returns at once): announce this node as a provider of the federation and look up
    /// the other providers, one lookup at a time; while fewer than `discovery_peers` are
    /// connected after the pauses of [`LOOKUP_PAUSE_MIN`], about every `discovery_interval`
    /// after that. Kademlia bootstraps (a refresh of every bucket of the routing table) happen
    /// at most once per `discovery_interval`, and only while the node has few connections.
    pub fn discover(&mut self) {
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

    fn remember(&mut self, peer: PeerId, address: Multiaddr) {
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

    fn handle(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<NetEvent> {
        if let SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            step,
            ..
        })) = &event
        {
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

/// The writer task of one peer: opens a message stream (dialing the peer if need be) and
/// writes what the queue holds, several messages per write when they wait. It ends, dropping
/// what is queued, when the stream fails; [`Net::send`] then starts another.
fn spawn_writer(mut control: libp2p_stream::Control, peer: PeerId) -> tokio::sync::mpsc::Sender<Bytes> {
    let (sender, mut queue) = tokio::sync::mpsc::channel::<Bytes>(STREAM_QUEUE_MAX);
    tokio::spawn(async move {
        let mut attempt = 0;
        let mut stream = loop {
            match open_stream(&mut control, peer).await {
                Ok(stream) => break stream,
                Err(error) => {
                    attempt += 1;
                    if attempt >= STREAM_OPEN_ATTEMPTS {
                        tracing::debug!(%peer, %error, attempt, "cannot open a message stream");
                        return;
                    }
                    tokio::time::sleep(retry_wait(&peer, attempt)).await;
                }
            }
        };
        let mut buffer = Vec::with_capacity(STREAM_WRITE_BYTES);
        while let Some(first) = queue.recv().await {
            buffer.clear();
            push_frame(&mut buffer, &first);
            while buffer.len() < STREAM_WRITE_BYTES {
                match queue.try_recv() {
                    Ok(next) => push_frame(&mut buffer, &next),
                    Err(_) => break,
                }
            }
            let written = async {
                stream.write_all(&buffer).await?;
                stream.flush().await
            };
            if let Err(error) = written.await {
                tracing::debug!(%peer, %error, "message stream failed");
                return;
            }
        }
        let _ = stream.close().await;
    });
    sender
}

/// Opens a message stream to `peer` and waits until the peer has taken it ([`STREAM_READY`]).
async fn open_stream(control: &mut libp2p_stream::Control, peer: PeerId) -> io::Result<libp2p::Stream> {
    let mut stream = control
        .open_stream(peer, STREAM_PROTOCOL)
        .await
        .map_err(|error| io::Error::new(io::ErrorKind::NotConnected, error.to_string()))?;
    let mut ready = [0u8; 1];
    tokio::time::timeout(STREAM_READY_TIMEOUT, stream.read_exact(&mut ready))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the peer did not take the stream"))??;
    if ready[0] != STREAM_READY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer answered a stream with another byte",
        ));
    }
    Ok(stream)
}

/// The wait before attempt `attempt + 1`: doubling from [`STREAM_RETRY_BASE`], between half
/// and all of it (jitter from the peer and the clock), so that peers refused in one burst do
/// not come back in one burst.
fn retry_wait(peer: &PeerId, attempt: u32) -> Duration {
    let full = STREAM_RETRY_BASE * 2u32.saturating_pow(attempt.saturating_sub(1));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = Sha256::new().chain_update(peer.to_bytes()).chain_update(nanos.to_le_bytes()).finalize();
    let fraction = f64::from(u16::from_le_bytes([seed[0], seed[1]])) / f64::from(u16::MAX);
    full.mul_f64(0.5 + fraction / 2.0)
}

/// An error and its sources on one line: libp2p's transport errors print nothing themselves and
/// keep the operating system's reason (such as "Address already in use") in their source.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let text = current.to_string();
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        next = current.source();
    }
    if parts.is_empty() {
        "no reason given".to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_pauses_spread_over_half_to_one_and_a_half_intervals() {
        let interval = Duration::from_secs(60);
        let pauses: Vec<Duration> = (0..200).map(|_| jittered(interval)).collect();
        assert!(pauses.iter().all(|p| *p >= interval / 2 && *p < interval * 3 / 2), "{pauses:?}");
        // Spread, not in step: both halves of the range are drawn.
        assert!(pauses.iter().any(|p| *p < interval) && pauses.iter().any(|p| *p > interval));
    }

    #[test]
    fn the_largest_ihave_we_send_fits_the_control_bytes_a_receiver_accepts() {
        // An IHAVE on the wire: per id a field tag, a length byte and the id; around them the
        // topic (tag, length, name), the IHAVE, control and RPC wrappers (tag and length each).
        let id_bytes = 2 + Sha256::output_size();
        let topic = federation_topic("a-federation-name-of-64-bytes-which-is-long-for-a-federation-name");
        let ihave_bytes = IHAVE_IDS_MAX * id_bytes + 2 + topic.hash().as_str().len() + 3 * 4;
        assert!(
            ihave_bytes <= CONTROL_BYTES_MAX,
            "{IHAVE_IDS_MAX} ids make a {ihave_bytes}-byte IHAVE; receivers refuse over {CONTROL_BYTES_MAX}"
        );
    }

    #[test]
    fn a_port_in_use_is_refused_with_the_systems_reason() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
            let port = taken.local_addr().expect("address").port();
            let mut config = NetConfig::new([3; 32], "devnet");
            config.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("multiaddr")];
            let Err(error) = Net::start(&config) else {
                panic!("port {port} is taken, yet the net listened on it")
            };
            let text = error.to_string();
            assert!(matches!(error, NetError::Listen { .. }), "{text}");
            assert!(text.contains(&port.to_string()) && text.contains("already in use"), "{text}");
        });
    }

    #[test]
    fn frames_over_the_cap_are_refused_before_their_bytes_are_read() {
        futures::executor::block_on(async {
            // A peer announcing one byte more than the cap: refused from the length alone.
            let mut announced = ((MESSAGE_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
            announced.extend_from_slice(&[0u8; 16]);
            let error = read_frame(&mut futures::io::Cursor::new(announced)).await.expect_err("over the cap");
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(error.to_string().contains("over the cap"), "{error}");
            // At the cap: read whole.
            let mut exact = (MESSAGE_BYTES_MAX as u32).to_be_bytes().to_vec();
            exact.resize(4 + MESSAGE_BYTES_MAX, 7);
            assert_eq!(
                read_frame(&mut futures::io::Cursor::new(exact)).await.expect("at the cap").len(),
                MESSAGE_BYTES_MAX
            );
            // A frame cut short is an error, not a hang or a short message.
            let mut short = 10u32.to_be_bytes().to_vec();
            short.extend_from_slice(&[1, 2, 3]);
            assert!(read_frame(&mut futures::io::Cursor::new(short)).await.is_err());
            // We never send one.
            let mut sink = futures::io::Cursor::new(Vec::new());
            assert!(write_frame(&mut sink, &vec![0u8; MESSAGE_BYTES_MAX + 1]).await.is_err());
        });
    }
}
