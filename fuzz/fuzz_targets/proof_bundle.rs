//! Proof bundle files (`remembrancer verify proof`): checking arbitrary bytes never panics.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = remembrancer_core::bundle::verify_bundle(data, common::registry());
});
