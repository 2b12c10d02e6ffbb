//! Evidence files (`remembrancer verify evidence`): checking arbitrary bytes never panics.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = remembrancer_core::evidence::verify_evidence(data, common::registry());
});
