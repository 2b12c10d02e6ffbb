//! C2SP signed notes as a file or a peer gives them: parsing never panics, and a parsed note
//! is checked under a registry without panicking either.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use remembrancer_core::note::Note;

fuzz_target!(|data: &[u8]| {
    let _ = Note::parse(data);
    let _ = remembrancer_core::receipt::verify_note(data, common::registry());
});
