//! The hand-written reader of a peer message's envelope against ciborium's: wherever the
//! in-place reader takes the bytes, the general decoder reads the same envelope from them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(remembrancer_core::message::envelope_readers_agree(data), "the two readers disagree");
});
