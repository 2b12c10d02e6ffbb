//! Checkpoint bodies and their remembrancer/anchor/v1 line: parsing never panics, and a body
//! that parses is written back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remembrancer_core::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(checkpoint) = Checkpoint::parse_body(text) {
        assert_eq!(checkpoint.body(), text, "a parsed body writes back to itself");
    }
});
