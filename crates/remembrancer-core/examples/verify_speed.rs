//! The federation's verification rule (`signature::verify`, `signature::verify_batch`: the
//! cofactored equation) beside ed25519-dalek's `verify_strict` and `verify_batch`, per
//! signature, alone and in batches of 2 to 64 by five keys (a federation's group):
//! `cargo run --release -p remembrancer-core --example verify_speed`.

use std::hint::black_box;
use std::time::Instant;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use remembrancer_core::signature;

/// Microseconds per signature of `work` (which verifies `per_call` signatures), the faster of
/// three runs.
fn per_signature(per_call: usize, work: impl Fn() -> bool) -> f64 {
    let calls = (4_000 / per_call).max(1);
    (0..3)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls {
                assert!(black_box(work()));
            }
            started.elapsed().as_secs_f64() * 1e6 / (calls * per_call) as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let keys: Vec<SigningKey> = (1u8..=5).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
    let messages: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 200]).collect();
    let signers: Vec<VerifyingKey> = (0..64).map(|i| keys[i % 5].verifying_key()).collect();
    let signatures: Vec<Signature> = (0..64).map(|i| keys[i % 5].sign(&messages[i])).collect();
    let raw = signatures[0].to_bytes();
    let strict = per_signature(1, || signers[0].verify_strict(&messages[0], &signatures[0]).is_ok());
    let ours = per_signature(1, || signature::verify(&signers[0], &messages[0], &raw));
    println!(
        "one signature      dalek verify_strict {strict:6.2} µs   ours {ours:6.2} µs   ratio {:.2}",
        ours / strict
    );
    for size in [2usize, 4, 8, 16, 64] {
        let refs: Vec<&[u8]> = messages[..size].iter().map(Vec::as_slice).collect();
        let dalek = per_signature(size, || {
            ed25519_dalek::verify_batch(&refs, &signatures[..size], &signers[..size]).is_ok()
        });
        let ours =
            per_signature(size, || signature::verify_batch(&refs, &signatures[..size], &signers[..size]));
        println!(
            "batch of {size:2}        dalek verify_batch  {dalek:6.2} µs   ours {ours:6.2} µs   ratio {:.2}   ours vs one strict {:.2}",
            ours / dalek,
            ours / strict
        );
    }
}
