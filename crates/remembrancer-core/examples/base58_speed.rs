//! Our base58 beside the `bs58` crate's, on 64-byte signatures (what receipts carry):
//! `cargo run --release -p remembrancer-core --example base58_speed`.

use std::hint::black_box;
use std::time::Instant;

use remembrancer_core::base58;

/// Nanoseconds per call of `work` over `items`, the faster of three runs.
fn per_call<T>(items: &[T], work: impl Fn(&T) -> usize) -> f64 {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..20 {
                for item in items {
                    black_box(work(black_box(item)));
                }
            }
            started.elapsed().as_nanos() as f64 / (20 * items.len()) as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let signatures: Vec<[u8; 64]> =
        (0..1000usize).map(|i| std::array::from_fn(|j| ((i * 31 + j * 17) as u8) ^ 0x5a)).collect();
    let texts: Vec<String> = signatures.iter().map(|s| bs58::encode(s).into_string()).collect();
    let encode_bs58 = per_call(&signatures, |s| bs58::encode(s).into_string().len());
    let encode_ours = per_call(&signatures, |s| base58::encode(s).len());
    let decode_bs58 = per_call(&texts, |t| bs58::decode(t).into_vec().map_or(0, |v| v.len()));
    let decode_ours = per_call(&texts, |t| base58::decode(t).map_or(0, |v| v.len()));
    println!("base58 of a 64-byte signature, per call:");
    println!(
        "  encode: bs58 {encode_bs58:>6.0} ns, ours {encode_ours:>6.0} ns ({:.1}x faster)",
        encode_bs58 / encode_ours
    );
    println!(
        "  decode: bs58 {decode_bs58:>6.0} ns, ours {decode_ours:>6.0} ns ({:.1}x faster)",
        decode_bs58 / decode_ours
    );
}
