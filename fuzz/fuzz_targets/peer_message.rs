//! Peer messages and frames as a peer's bytes reach a node: decoding never panics, and a
//! message that decodes encodes to bytes that decode to the same signed message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remembrancer_core::message::{decode_frame, PeerMessage};

fn round_trip(message: &PeerMessage) {
    let again = PeerMessage::decode(&message.encode()).expect("a decoded message's encoding decodes");
    assert_eq!(again.signed_digest(), message.signed_digest(), "the same message after a round trip");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = PeerMessage::decode(data) {
        round_trip(&message);
    }
    for message in decode_frame(data).into_iter().flatten() {
        round_trip(&message);
    }
});
