//! Cross-namespace message records (a delivery's bytes): decoding never panics, and a record
//! that decodes encodes to the same bytes (one canonical form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use remembrancer_core::xmsg::XRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = XRecord::decode(data) {
        assert_eq!(record.encode(), data, "a record has one encoding");
    }
});
