//! This machine's Ed25519 speed on one thread, measured in the run of each benchmark whose
//! limit it sets: signing, strict verification (what the engine does for one signature) and
//! batch verification (what it does for a receipt's signatures), per second.

use std::hint::black_box;
use std::time::Instant;

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use remembrancer_core::signature::Operations;

/// Operations per second on one core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    /// Signatures made.
    pub sign: f64,
    /// Signatures verified one at a time (strict).
    pub verify: f64,
    /// Signatures verified in batches of `batch`.
    pub batch_verify: f64,
    /// The batch size `batch_verify` was measured with.
    pub batch: usize,
}

impl Rates {
    /// Measures, best of three rounds, with batches of `batch` signatures by distinct keys.
    pub(crate) fn measure(batch: usize) -> Rates {
        let keys: Vec<SigningKey> =
            (0..batch.max(1)).map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32])).collect();
        let message = [9u8; 300];
        let signatures: Vec<Signature> = keys.iter().map(|k| k.sign(&message)).collect();
        let publics: Vec<_> = keys.iter().map(SigningKey::verifying_key).collect();
        let messages: Vec<&[u8]> = vec![&message[..]; keys.len()];
        let mut rates = Rates { sign: 0.0, verify: 0.0, batch_verify: 0.0, batch: keys.len() };
        for _ in 0..3 {
            let start = Instant::now();
            for _ in 0..3_000 {
                black_box(keys[0].sign(black_box(&message)));
            }
            rates.sign = rates.sign.max(3_000.0 / start.elapsed().as_secs_f64());
            let start = Instant::now();
            for _ in 0..2_000 {
                assert!(black_box(publics[0].verify_strict(black_box(&message), &signatures[0]).is_ok()));
            }
            rates.verify = rates.verify.max(2_000.0 / start.elapsed().as_secs_f64());
            let rounds = (4_000 / keys.len()).max(1);
            let start = Instant::now();
            for _ in 0..rounds {
                assert!(ed25519_dalek::verify_batch(black_box(&messages), &signatures, &publics).is_ok());
            }
            rates.batch_verify =
                rates.batch_verify.max((rounds * keys.len()) as f64 / start.elapsed().as_secs_f64());
        }
        rates
    }

    /// The faster of two measurements of each operation (the lower floor, the stricter limit).
    pub(crate) fn best(self, other: Rates) -> Rates {
        Rates {
            sign: self.sign.max(other.sign),
            verify: self.verify.max(other.verify),
            batch_verify: self.batch_verify.max(other.batch_verify),
            batch: self.batch,
        }
    }

    /// CPU seconds the operations take on one core: signatures, verifications one at a time,
    /// and those verified in batches at the batch rate.
    pub(crate) fn seconds(&self, operations: Operations) -> f64 {
        let single = operations.verifications.saturating_sub(operations.batched);
        operations.signatures as f64 / self.sign
            + single as f64 / self.verify
            + operations.batched as f64 / self.batch_verify
    }
}
