//! 50 real libp2p nodes in one process (memory transport, noise, yamux, Kademlia, gossipsub),
//! each driven by its own federation engine: they find each other from one bootstrap address,
//! and checkpoints from five owners become final receipts on every node (also on those that
//! hold bookkeeping back to verify receipts in batches). Nothing is persisted
//! (an in-process test; the node binary's tests cover RocksDB).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use remembrancer_core::engine::{Engine, EngineConfig, Fanout, Input};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::MemoryNodeStore;
use remembrancer_core::registry::{
    AnchorPropagation, FederationSection, PeerEntry, Registry, RegistryDocument,
};
use remembrancer_host::inprocess::{await_connections, member_peer_ids, InProcessNode, Report};
use remembrancer_net::libp2p::Multiaddr;
use remembrancer_net::{Net, NetConfig};
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
        let peer_of = member_peer_ids(&registry);
        // Memory ports unique to this run.
        let base = now_ms() % 1_000_000_000 * 100;
        let first: Multiaddr =
            format!("/memory/{base}/p2p/{}", peer_of[identities[0].did()]).parse().expect("multiaddr");
        let (reports_tx, mut reports) = mpsc::channel(NODES * OWNERS * 4);
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
            let engine = Engine::new(identity.clone(), registry.clone(), engine_config, MemoryNodeStore::new);
            // Every other node lets bookkeeping (others' receipts, heartbeats) wait half a
            // second and verifies what waited together: those still end with every receipt.
            let hold = Duration::from_millis(if i % 2 == 1 { 500 } else { 0 });
            let node = InProcessNode::new(i, net, engine, reports_tx.clone()).hold_bookkeeping(hold);
            let (tx, rx) = mpsc::channel(16);
            commands.push(tx);
            tokio::spawn(node.run(rx, Duration::from_secs(2)));
        }

        // Discovery: every node connects to a good part of the federation through the DHT.
        if let Err(connected) =
            await_connections(&mut reports, NODES, NODES / 4, Duration::from_secs(60)).await
        {
            panic!("discovery incomplete after 60 s: connections per node {connected:?}");
        }
        // Let gossipsub form its mesh.
        tokio::time::sleep(Duration::from_secs(2)).await;

        for (owner, command) in commands.iter().enumerate().take(OWNERS) {
            let records = (0..10).map(|r| format!("owner {owner} record {r}").into_bytes()).collect();
            command.send(Input::Commit { namespace: namespace(owner), records }).await.expect("command");
        }
        let mut finals: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while finals.values().map(BTreeSet::len).sum::<usize>() < NODES * OWNERS {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(Report::Final { node, namespace, size, .. })) => {
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
