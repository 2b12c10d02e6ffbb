//! 50 real libp2p nodes in one process (memory transport, noise, yamux, Kademlia, gossipsub),
//! each driven by its own federation engine: they find each other from one bootstrap address,
//! and checkpoints from five owners become final receipts on every node. Nothing is persisted
//! (an in-process test; the node binary's tests cover RocksDB).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use remembrancer_core::anchoring::{AnchorTarget as _, LocalTarget};
use remembrancer_core::engine::{Engine, EngineConfig, Event, Fanout, Input, Output};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::MemoryNodeStore;
use remembrancer_core::message::PeerMessage;
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument,
};
use remembrancer_net::libp2p::{Multiaddr, PeerId};
use remembrancer_net::{peer_id_of, Net, NetConfig, NetEvent, Verdict};
use tokio::sync::mpsc;

const NODES: usize = 50;
const OWNERS: usize = 5;
const FEDERATION: &str = "mesh50";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn namespace(owner: usize) -> String {
    format!("mesh:node{owner}")
}

/// What a node reports to the test.
#[derive(Debug)]
enum Report {
    Connected { node: usize, peers: usize },
    Final { node: usize, namespace: String, size: u64 },
}

struct Driver {
    index: usize,
    net: Net,
    engine: Engine<MemoryNodeStore>,
    peer_of: HashMap<String, PeerId>,
    timers: BTreeMap<(u64, u64), remembrancer_core::engine::Timer>,
    sequence: u64,
    target: LocalTarget,
    reports: mpsc::UnboundedSender<Report>,
}

impl Driver {
    fn input(&mut self, input: Input) -> Vec<Event> {
        let mut queue = vec![input];
        let mut events = Vec::new();
        while let Some(input) = queue.pop() {
            let Ok(outputs) = self.engine.handle(input, now_ms()) else { continue };
            for output in outputs {
                match output {
                    Output::Persist(_) => {}
                    Output::Publish(message) => {
                        let _ = self.net.publish(message.encode());
                    }
                    Output::Send { to, message } => {
                        if let Some(peer) = self.peer_of.get(&to) {
                            self.net.send(*peer, message.encode());
                        }
                    }
                    Output::SetTimer { timer, at_ms } => {
                        self.sequence += 1;
                        self.timers.insert((at_ms, self.sequence), timer);
                    }
                    Output::AnchorRequest { request, root } => {
                        if let Ok(reference) = self.target.anchor(&root, now_ms()) {
                            queue.push(Input::Anchored { request, reference });
                        }
                    }
                    Output::Event(event) => {
                        if let Event::Finalized { namespace, size, .. } = &event {
                            let _ = self.reports.send(Report::Final {
                                node: self.index,
                                namespace: namespace.clone(),
                                size: *size,
                            });
                        }
                        events.push(event);
                    }
                }
            }
        }
        events
    }

    fn message(&mut self, data: &[u8]) -> Verdict {
        let Ok(message) = PeerMessage::decode(data) else { return Verdict::Reject };
        let events = self.input(Input::Message(message));
        if events.iter().any(|e| matches!(e, Event::Rejected { .. })) {
            Verdict::Ignore
        } else {
            Verdict::Accept
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Input>) {
        self.input(Input::Start);
        let mut discovery = tokio::time::interval(Duration::from_secs(2));
        loop {
            let next = self.timers.keys().next().map(|(at, _)| *at);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = self.net.next() => match event {
                    NetEvent::Gossip { source, id, data } => {
                        let verdict = self.message(&data);
                        self.net.report(&id, &source, verdict);
                    }
                    NetEvent::Direct { data, .. } => {
                        self.message(&data);
                    }
                    NetEvent::Connected(_) | NetEvent::Disconnected(_) => {
                        let _ = self.reports.send(Report::Connected {
                            node: self.index,
                            peers: self.net.connected().len(),
                        });
                    }
                    NetEvent::Listening(_) => {}
                },
                Some(input) = commands.recv() => {
                    self.input(input);
                }
                () = sleep => {
                    let now = now_ms();
                    while let Some(entry) = self.timers.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        let timer = entry.remove();
                        self.input(Input::Timer(timer));
                    }
                }
                _ = discovery.tick() => self.net.discover(),
            }
        }
    }
}

#[test]
fn fifty_in_process_nodes_discover_each_other_and_finalize_every_owners_checkpoints() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let identities: Vec<NodeIdentity> = (0..NODES)
            .map(|i| NodeIdentity::from_seed(&format!("did:vm:node:m{i}"), [i as u8 + 1; 32]).expect("key"))
            .collect();
        let document = RegistryDocument {
            federation: FederationSection {
                name: FEDERATION.to_string(),
                version: 1,
                quorum: (NODES / 2 + 1) as u32,
                peers: identities
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        PeerEntry::for_identity(id, if i < OWNERS { vec![namespace(i)] } else { Vec::new() })
                    })
                    .collect(),
                anchor_propagation: AnchorPropagation::default(),
            },
        };
        let registry = Registry::from_document(&document).expect("registry");
        let peer_of: HashMap<String, PeerId> = registry
            .members
            .values()
            .filter_map(|m| peer_id_of(m.key.as_bytes()).map(|p| (m.did.clone(), p)))
            .collect();
        // Memory ports unique to this run.
        let base = now_ms() % 1_000_000_000 * 100;
        let first: Multiaddr =
            format!("/memory/{base}/p2p/{}", peer_of[identities[0].did()]).parse().expect("multiaddr");
        let (reports_tx, mut reports) = mpsc::unbounded_channel();
        let mut commands = Vec::new();
        for (i, identity) in identities.iter().enumerate() {
            let mut config = NetConfig::new(identity.secret_seed(), FEDERATION);
            config.listen = vec![format!("/memory/{}", base + i as u64).parse().expect("multiaddr")];
            if i > 0 {
                config.bootstrap = vec![first.clone()];
            }
            let net = Net::start_memory(&config).expect("memory net");
            assert_eq!(net.peer_id(), peer_of[identity.did()], "the PeerId is the registry key");
            let engine_config = EngineConfig { fanout: Fanout::All, ..EngineConfig::default() };
            let driver = Driver {
                index: i,
                net,
                engine: Engine::new(identity.clone(), registry.clone(), engine_config, MemoryNodeStore::new),
                peer_of: peer_of.clone(),
                timers: BTreeMap::new(),
                sequence: 0,
                target: LocalTarget::default(),
                reports: reports_tx.clone(),
            };
            let (tx, rx) = mpsc::unbounded_channel();
            commands.push(tx);
            tokio::spawn(driver.run(rx));
        }

        // Discovery: every node connects to a good part of the federation through the DHT.
        let mut connected = vec![0usize; NODES];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while connected.iter().any(|&c| c < NODES / 4) {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(Report::Connected { node, peers })) => connected[node] = peers,
                Ok(_) => {}
                Err(_) => panic!("discovery incomplete after 60 s: connections per node {connected:?}"),
            }
        }
        // Let gossipsub form its mesh.
        tokio::time::sleep(Duration::from_secs(2)).await;

        for (owner, command) in commands.iter().enumerate().take(OWNERS) {
            let records = (0..10).map(|r| format!("owner {owner} record {r}").into_bytes()).collect();
            command.send(Input::Commit { namespace: namespace(owner), records }).expect("command");
        }
        let mut finals: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while finals.values().map(BTreeSet::len).sum::<usize>() < NODES * OWNERS {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(Report::Final { node, namespace, size })) => {
                    assert_eq!(size, 10, "node {node}: {namespace} final at the committed size");
                    finals.entry(node).or_default().insert(namespace);
                }
                Ok(_) => {}
                Err(_) => {
                    let missing: Vec<usize> =
                        (0..NODES).filter(|n| finals.get(n).map_or(0, BTreeSet::len) < OWNERS).collect();
                    panic!("after 60 s these nodes lack some final receipts: {missing:?}");
                }
            }
        }
    });
}
