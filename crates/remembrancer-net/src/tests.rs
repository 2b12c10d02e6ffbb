//! Unit tests of the network crate: gossipsub's limits, stream retries, error chains.

use super::*;
use crate::behaviour::{CONTROL_BYTES_MAX, IHAVE_IDS_MAX};
use crate::codec::write_frame;

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
