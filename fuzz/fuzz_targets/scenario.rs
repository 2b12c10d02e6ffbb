//! Simulator scenario files (TOML): parsing and validating never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = remembrancer_sim::Scenario::from_toml(text);
});
