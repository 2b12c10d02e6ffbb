//! Registry documents (the spec's YAML, or a registry update's JSON): parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remembrancer_core::registry::Registry;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Registry::from_any(text);
});
