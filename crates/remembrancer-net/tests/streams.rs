//! Messages to one peer travel on one long-lived stream per peer (memory transport, noise,
//! yamux): they arrive in order, the queue to a peer is bounded and what it cannot take is
//! counted, and after the connection is lost and made again a new stream carries them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use remembrancer_net::libp2p::{Multiaddr, PeerId};
use remembrancer_net::{Net, NetConfig, NetEvent, MESSAGE_BYTES_MAX, STREAM_QUEUE_MAX};

fn message(sequence: usize) -> Vec<u8> {
    let mut data = format!("message {sequence:06} ").into_bytes();
    data.resize(100, b'.');
    data
}

/// Drives both nets until `to` holds `want` direct messages from `from` (or 20 s pass).
async fn deliver(from: &mut Net, to: &mut Net, want: usize) -> Vec<Vec<u8>> {
    let sender = from.peer_id();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while got.len() < want {
            tokio::select! {
                _ = from.next() => {}
                event = to.next() => {
                    if let NetEvent::Direct { peer, data } = event {
                        assert_eq!(peer, sender, "a direct message names its sender");
                        got.push(data);
                    }
                }
            }
        }
    })
    .await;
    got
}

/// Drives both nets until each has `other` connected (or 20 s pass).
async fn connect(a: &mut Net, b: &mut Net) {
    let (pa, pb) = (a.peer_id(), b.peer_id());
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while !(a.connected().contains(&pb) && b.connected().contains(&pa)) {
            tokio::select! {
                _ = a.next() => {}
                _ = b.next() => {}
            }
        }
    })
    .await;
    assert!(a.connected().contains(&pb) && b.connected().contains(&pa), "the two nets connected");
}

/// A net of `federation` listening on a memory port of its own (the clock picks it, plus
/// `offset` so that tests running at once do not meet); its address to dial.
fn listening(seed: u8, federation: &str, offset: u64) -> (Net, Multiaddr) {
    let port = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos() as u64 % 1_000_000_000
        + offset;
    let mut config = NetConfig::new([seed; 32], federation);
    config.listen = vec![format!("/memory/{port}").parse().expect("multiaddr")];
    let net = Net::start_memory(&config).expect("listening net");
    let address = format!("/memory/{port}/p2p/{}", net.peer_id()).parse().expect("multiaddr");
    (net, address)
}

/// A net of `federation` that dials `bootstrap`.
fn dialing(seed: u8, federation: &str, bootstrap: &Multiaddr) -> Net {
    let mut config = NetConfig::new([seed; 32], federation);
    config.bootstrap = vec![bootstrap.clone()];
    Net::start_memory(&config).expect("dialing net")
}

/// Net a (of federation `federations.0`) listening, net b dialing it, connected; a's address.
async fn connected_pair(seeds: (u8, u8), federations: (&str, &str), offset: u64) -> (Net, Net, Multiaddr) {
    let (mut a, address) = listening(seeds.0, federations.0, offset);
    let mut b = dialing(seeds.1, federations.1, &address);
    connect(&mut a, &mut b).await;
    (a, b, address)
}

#[test]
fn messages_to_a_peer_arrive_in_order_the_queue_is_bounded_and_a_lost_connection_is_repaired() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (mut a, mut b, address) = connected_pair((11, 12), ("streams", "streams"), 0).await;
        let pb: PeerId = b.peer_id();

        // More than the queue holds, sent before the writer ran (one thread): the first
        // STREAM_QUEUE_MAX wait for the stream, the rest are dropped and counted, as is a
        // message over the cap.
        let burst = STREAM_QUEUE_MAX + 300;
        for sequence in 0..burst {
            a.send(pb, message(sequence));
        }
        a.send(pb, vec![0; MESSAGE_BYTES_MAX + 1]);
        assert_eq!(a.sends_dropped(), 300 + 1, "overflow and oversized sends are counted");
        let got = deliver(&mut a, &mut b, STREAM_QUEUE_MAX).await;
        assert_eq!(got.len(), STREAM_QUEUE_MAX, "everything queued arrived");
        assert!(got.iter().enumerate().all(|(i, data)| *data == message(i)), "in the order sent");

        // The stream stays open: later messages arrive one by one, in order.
        for sequence in 0..50 {
            a.send(pb, message(1000 + sequence));
            let got = deliver(&mut a, &mut b, 1).await;
            assert_eq!(got, vec![message(1000 + sequence)]);
        }
        // A catch-up request goes by request-response and arrives the same way.
        a.request(pb, b"catch-up".to_vec());
        assert_eq!(deliver(&mut a, &mut b, 1).await, vec![b"catch-up".to_vec()]);

        // The connection is lost (a blocks b) and made again: the next messages open a new
        // stream and arrive.
        a.block(pb);
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            while a.connected().contains(&pb) || b.connected().contains(&a.peer_id()) {
                tokio::select! {
                    _ = a.next() => {}
                    _ = b.next() => {}
                }
            }
        })
        .await;
        assert!(!a.connected().contains(&pb), "blocked");
        a.unblock(pb);
        b.dial(address.clone());
        connect(&mut a, &mut b).await;
        for sequence in 0..10 {
            a.send(pb, message(2000 + sequence));
        }
        let got = deliver(&mut a, &mut b, 10).await;
        assert_eq!(got, (0..10).map(|s| message(2000 + s)).collect::<Vec<_>>(), "a new stream carries them");
        assert_eq!(a.sends_dropped(), 301, "nothing more was dropped");
    });
}

#[test]
fn thirty_peers_opening_streams_to_one_node_at_once_all_get_their_messages_through() {
    const SPOKES: usize = 30;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (mut hub, address) = listening(40, "streams-burst", 7);
        let hub_id = hub.peer_id();
        let (go, _) = tokio::sync::watch::channel(false);
        let mut spokes = Vec::new();
        for i in 0..SPOKES {
            let mut net = dialing(41 + i as u8, "streams-burst", &address);
            let mut go = go.subscribe();
            spokes.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = net.next() => {}
                        changed = go.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            net.send(hub_id, message(i));
                        }
                    }
                }
            }));
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while hub.connected().len() < SPOKES {
                hub.next().await;
            }
        })
        .await;
        assert_eq!(hub.connected().len(), SPOKES, "every spoke connected");
        // All at once: libp2p-stream drops inbound streams that arrive while its one-place
        // queue is full; the ready byte and the opener's retries get every message through.
        go.send_replace(true);
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while got.len() < SPOKES {
                if let NetEvent::Direct { data, .. } = hub.next().await {
                    got.push(data);
                }
            }
        })
        .await;
        got.sort();
        assert_eq!(got, (0..SPOKES).map(message).collect::<Vec<_>>(), "one message from every spoke");
        drop(go);
        for spoke in spokes {
            spoke.abort();
        }
    });
}

#[test]
fn a_publish_that_gossipsub_has_no_peer_for_goes_to_the_connected_peers_streams() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        // Two federations: connected, but neither subscribes to the other's topic, so
        // gossipsub finds no peer for a's publish (as when every peer's gossip score fell
        // under the publish threshold).
        let (mut a, mut b, _) = connected_pair((21, 22), ("fallback-a", "fallback-b"), 13).await;
        a.publish(message(7)).expect("a publish with no gossip peer is not an error");
        assert_eq!(a.published_direct(), 1, "the fallback is counted");
        let got = deliver(&mut a, &mut b, 1).await;
        assert_eq!(got, vec![message(7)], "the connected peer got the message on a's stream");
    });
}
