//! Federation receipts as JSON (`remembrancer verify receipt`): parsing and checking never
//! panic.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use remembrancer_core::receipt::{verify_receipt, FederationReceipt};

fuzz_target!(|data: &[u8]| {
    if let Ok(receipt) = FederationReceipt::from_json(data) {
        let _ = verify_receipt(&receipt, common::registry());
    }
});
