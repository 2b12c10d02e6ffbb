//! A message for a peer this node never met and has no address of (the registry names it by
//! its key, nothing more): the DHT finds it through a peer that knows it. Three nets of three
//! federations, so that no provider record of a federation leads one to another: what finds
//! the peer is Kademlia (the lookup by id `Net::locate` starts, and in a swarm this small the
//! queries each node's discovery runs, which meet every node; a larger swarm is where only the
//! lookup by id reaches a peer outside the routing table).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use remembrancer_net::libp2p::Multiaddr;
use remembrancer_net::{Net, NetConfig, NetEvent};

/// A net listening on a memory port of its own (the clock picks it, plus `offset`), dialing
/// `bootstrap` if given; its address to dial.
fn net(seed: u8, federation: &str, offset: u64, bootstrap: Option<&Multiaddr>) -> (Net, Multiaddr) {
    let port = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos() as u64 % 1_000_000_000
        + offset;
    let mut config = NetConfig::new([seed; 32], federation);
    config.listen = vec![format!("/memory/{port}").parse().expect("multiaddr")];
    config.bootstrap = bootstrap.into_iter().cloned().collect();
    let net = Net::start_memory(&config).expect("net");
    let address = format!("/memory/{port}/p2p/{}", net.peer_id()).parse().expect("multiaddr");
    (net, address)
}

#[test]
fn a_message_for_a_peer_with_no_known_address_finds_it_through_the_dht() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (mut b, address) = net(21, "locate-b", 1_000_000_000, None);
        let (mut a, _) = net(22, "locate-a", 2_000_000_000, Some(&address));
        let (mut c, _) = net(23, "locate-c", 3_000_000_000, Some(&address));
        let (pa, pb, pc) = (a.peer_id(), b.peer_id(), c.peer_id());
        let mut sent = false;
        let mut got = None;
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while got.is_none() {
                // Once a and c are both connected to b (and b has c's address from identify),
                // a sends to c, whom it knows only by id.
                if !sent && a.connected().contains(&pb) && c.connected().contains(&pb) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    assert!(!a.connected().contains(&pc), "a met c some other way: the test proves nothing");
                    a.send(pc, b"found you".to_vec());
                    sent = true;
                }
                tokio::select! {
                    _ = a.next() => {}
                    _ = b.next() => {}
                    event = c.next() => {
                        if let NetEvent::Direct { peer, data } = event {
                            got = Some((peer, data));
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
        .await;
        assert!(sent, "a and c connected to b");
        assert_eq!(got, Some((pa, b"found you".to_vec())), "the message reached c through the DHT");
    });
}
