//! Receipts in CBOR (a `receipt` message, the store): what decodes is written back by the
//! hand-written writer to bytes ciborium reads as the same receipt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remembrancer_core::message::{receipt_cbor, receipt_from_cbor};

fuzz_target!(|data: &[u8]| {
    if let Some(receipt) = receipt_from_cbor(data) {
        let written = receipt_cbor(&receipt);
        let again: remembrancer_core::receipt::FederationReceipt =
            ciborium::from_reader(written.as_slice()).expect("ciborium reads what the writer wrote");
        assert_eq!(again, receipt, "the same receipt after a round trip");
    }
});
