//! The libp2p side of a Remembrancer node: one swarm with TCP and QUIC (noise, yamux),
//! identify, ping, Kademlia under our own protocol name (members find each other through
//! provider records under the federation's key), gossipsub with application validation on
//! one topic per federation, one long-lived stream per peer for messages to one peer
//! (countersignatures, heartbeats, catch-up answers), a request-response protocol for catch-up
//! requests, connection limits and a block list. Messages are opaque bytes here: the node decodes them
//! and answers every gossip message with the engine's verdict.

mod behaviour;
mod codec;

mod events;
mod streams;

use behaviour::behaviour;
pub use behaviour::{Behaviour, BehaviourEvent};
pub use codec::BytesCodec;
use codec::{push_frame, read_frame};
use streams::spawn_writer;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::Arc;
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
/// A connected peer whose gossipsub score falls under this is disconnected: gossipsub's
/// graylist threshold (its default), under which it already drops the peer's gossip unread.
/// An honest peer does not get there: it takes three refused messages in a few seconds.
pub const SCORE_DISCONNECT_BELOW: f64 = -80.0;

/// Largest message on either protocol (the peer-message cap of the core).
pub const MESSAGE_BYTES_MAX: usize = remembrancer_core::message::PEER_MESSAGE_BYTES_MAX;

/// A pause drawn uniformly between half and one and a half times `interval`. Members that
/// connected together would otherwise repeat their provider lookups in step, a hundred at once
/// in the 100-node swarm of `scripts/bench mesh` (each a few dozen Kademlia requests on new
/// substreams): its three slowest receipts fell within two seconds of one run (587-670 ms,
/// p99 587 ms); with drawn pauses the next run's p99 was 185 ms, its raw baseline's 120 ms.
pub fn jittered(interval: Duration) -> Duration {
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
    /// Peers looked up in the DHT by id (a message for them, no address known), and when:
    /// at most one lookup per peer per [`LOCATE_PAUSE`], [`LOCATING_MAX`] at once.
    located: HashMap<PeerId, std::time::Instant>,
    /// The lookups in flight, and whom each looks for.
    locating: HashMap<kad::QueryId, PeerId>,
    /// libp2p's own metrics (swarm, gossipsub, Kademlia, identify, ping), once
    /// [`Net::enable_metrics`] registered them.
    metrics: Option<libp2p::metrics::Metrics>,
    /// Messages not sent: the peer's queue was full or the message over the cap.
    sends_dropped: u64,
    /// Publishes sent on the peers' streams because gossipsub had no peer for them.
    published_direct: u64,
    /// Gossip messages (publishes, forwards, control) gossipsub could not queue for a peer
    /// because the peer's send queue was full, as its heartbeats report them.
    gossip_sends_failed: u64,
    /// Message streams closed because a peer sent a frame over the cap (counted by the reader
    /// tasks).
    frames_refused: Arc<std::sync::atomic::AtomicU64>,
    /// Connections closed because gossipsub's score of the peer was under the graylist
    /// threshold ([`SCORE_DISCONNECT_BELOW`]).
    score_disconnects: u64,
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

/// Least time between two DHT lookups of one peer's addresses.
pub const LOCATE_PAUSE: Duration = Duration::from_secs(10);
/// DHT lookups of peers' addresses in flight at most.
const LOCATING_MAX: usize = 16;

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
            located: HashMap::new(),
            metrics: None,
            locating: HashMap::new(),
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
            frames_refused: Arc::default(),
            score_disconnects: 0,
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
        if !self.connected.contains(&peer) && !self.addresses.contains_key(&peer) {
            self.locate(peer);
        }
        if self.writers.len() >= PEERS_REMEMBERED_MAX {
            // Writers to peers that never connected (their dial failed) end on their own.
            self.writers.retain(|_, writer| !writer.is_closed());
        }
        let writer = spawn_writer(self.control.clone(), peer);
        let _ = writer.try_send(data);
        self.writers.insert(peer, writer);
    }

    /// Registers libp2p's own metrics (under `libp2p_`) in `registry` and records the swarm's
    /// events in them from now on.
    pub fn enable_metrics(&mut self, registry: &mut libp2p::metrics::Registry) {
        self.metrics = Some(libp2p::metrics::Metrics::new(registry));
    }

    /// Looks `peer` up in the DHT (its closest peers, which name it with its addresses when
    /// they know it): a member the registry names but this node never met nor learnt an
    /// address of. What is found is remembered and dialed; the message that asked waits in its
    /// stream's queue meanwhile (the stream opens with a few retries).
    pub fn locate(&mut self, peer: PeerId) {
        if peer == self.peer_id() || self.locating.len() >= LOCATING_MAX {
            return;
        }
        if self.located.get(&peer).is_some_and(|at| at.elapsed() < LOCATE_PAUSE) {
            return;
        }
        if self.located.len() >= PEERS_REMEMBERED_MAX {
            self.located.retain(|_, at| at.elapsed() < LOCATE_PAUSE);
            if self.located.len() >= PEERS_REMEMBERED_MAX {
                return;
            }
        }
        self.located.insert(peer, std::time::Instant::now());
        let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
        self.locating.insert(query, peer);
        tracing::debug!(%peer, "looking a peer up in the DHT");
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

    /// Message streams a peer sent a frame over the cap on (each closed at once), since start.
    pub fn frames_refused(&self) -> u64 {
        self.frames_refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections closed since start because gossipsub's score of the peer fell under
    /// [`SCORE_DISCONNECT_BELOW`].
    pub fn score_disconnects(&self) -> u64 {
        self.score_disconnects
    }

    /// Closes the connections of every connected peer whose gossipsub score is under
    /// [`SCORE_DISCONNECT_BELOW`]: gossipsub drops their gossip unread already (the graylist),
    /// and this ends their streams and requests too. Gossipsub keeps a disconnected peer's
    /// score for an hour, so a peer that comes back at once is closed again; its penalty
    /// decays (x0.9 a second), so a peer that stops sending what is refused is let back in.
    pub(crate) fn drop_graylisted(&mut self) {
        let graylisted: Vec<(PeerId, f64)> = self
            .connected
            .iter()
            .filter_map(|peer| self.gossip_score(peer).map(|score| (*peer, score)))
            .filter(|(_, score)| *score < SCORE_DISCONNECT_BELOW)
            .collect();
        for (peer, score) in graylisted {
            if self.swarm.disconnect_peer_id(peer).is_ok() {
                self.score_disconnects += 1;
                tracing::warn!(%peer, score, "disconnected a peer whose gossip score is under the graylist threshold");
            }
        }
    }

    /// Opens a message stream of one's own to `peer`, ready once the peer took it: for a
    /// program that writes its own frames (the hostile-member tests write frames over the cap
    /// with it). The future borrows nothing, and completes only while [`Net::next`] is polled
    /// beside it. The node itself sends through [`Net::send`].
    pub fn open_stream(
        &self,
        peer: PeerId,
    ) -> impl std::future::Future<Output = io::Result<libp2p::Stream>> + Send + 'static {
        let mut control = self.control.clone();
        async move { streams::open_stream(&mut control, peer).await }
    }

    /// Reads the frames of a peer's new message stream into the inbound queue, in a task of
    /// its own; it replaces that peer's earlier stream (a writer opens a new one only after
    /// its old one failed), so a peer has one reader at most.
    fn read_stream(&mut self, peer: PeerId, mut stream: libp2p::Stream) {
        let sender = self.inbound_sender.clone();
        let refused = Arc::clone(&self.frames_refused);
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
                        if error.kind() == io::ErrorKind::InvalidData {
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::info!(%peer, %error, "message stream closed: a frame over the cap");
                        } else if error.kind() != io::ErrorKind::UnexpectedEof {
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
mod tests;
