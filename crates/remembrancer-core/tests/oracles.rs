//! The federation's signature rule (`signature::verify`) beside two independent verifiers,
//! ed25519-zebra (ZIP-215) and ed25519-dalek's `verify_strict`, over the edge cases of
//! "Taming the many EdDSAs" (the `ed25519-speccheck` vectors, `tests/data/`): each case's
//! properties are computed here, and the table says which verifier accepts it and why ours
//! differs where it does.

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use remembrancer_core::signature;

struct Case {
    message: Vec<u8>,
    key: [u8; 32],
    signature: [u8; 64],
}

fn cases() -> Vec<Case> {
    let text = include_str!("data/ed25519-speccheck-cases.json");
    let list: Vec<serde_json::Value> = serde_json::from_str(text).expect("cases JSON");
    let bytes =
        |v: &serde_json::Value, field: &str| hex::decode(v[field].as_str().expect(field)).expect("hex");
    list.iter()
        .map(|case| Case {
            message: bytes(case, "message"),
            key: bytes(case, "pub_key").try_into().expect("32-byte key"),
            signature: bytes(case, "signature").try_into().expect("64-byte signature"),
        })
        .collect()
}

/// What a point encoding is: its canonicity (`y < p`) and its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// Decodes, canonical, in the prime-order subgroup.
    Plain,
    /// Decodes, canonical, with a torsion component but not of small order.
    Mixed,
    /// Decodes, canonical, of small order (order dividing 8).
    Small,
    /// Decodes only from a non-canonical encoding (`y >= p`).
    NonCanonical,
    /// Not a point.
    Invalid,
}

fn point(bytes: [u8; 32]) -> Point {
    match CompressedEdwardsY(bytes).decompress() {
        None => Point::Invalid,
        Some(p) if p.compress().to_bytes() != bytes => Point::NonCanonical,
        Some(p) if p.is_small_order() => Point::Small,
        Some(p) if !p.is_torsion_free() => Point::Mixed,
        Some(_) => Point::Plain,
    }
}

fn ours(case: &Case) -> bool {
    VerifyingKey::from_bytes(&case.key)
        .is_ok_and(|key| signature::verify(&key, &case.message, &case.signature))
}

fn zebra(case: &Case) -> bool {
    ed25519_zebra::VerificationKey::try_from(case.key)
        .and_then(|key| key.verify(&ed25519_zebra::Signature::from_bytes(&case.signature), &case.message))
        .is_ok()
}

fn dalek_strict(case: &Case) -> bool {
    VerifyingKey::from_bytes(&case.key)
        .is_ok_and(|key| key.verify_strict(&case.message, &Signature::from_bytes(&case.signature)).is_ok())
}

#[test]
fn our_rule_beside_zip215_and_verify_strict_on_the_speccheck_edge_cases() {
    use Point::*;
    // Per case: A, R, whether S < L; then the verdicts of ours, ZIP-215 (ed25519-zebra) and
    // ed25519-dalek's verify_strict. Ours accepts a subset of what ZIP-215 accepts (the same
    // cofactored equation, without small-order points or non-canonical encodings), and
    // differs from verify_strict only where the cofactorless equation alone fails.
    #[rustfmt::skip]
    let table: [(Point, Point, bool, bool, bool, bool); 15] = [
        // Small-order A and R: the equations hold whatever the message. ZIP-215 accepts;
        // ours refuses any small-order A or R (such a signature binds nothing), as strict does.
        (Small, Small, true, false, true, false),
        (Small, Small, true, false, true, false),
        // Small-order A (a key that verifies everything), R with torsion: ours refuses the key.
        (Small, Mixed, true, false, true, false),
        (Small, Mixed, true, false, true, false),
        // Small-order R: ours refuses it.
        (Mixed, Small, true, false, true, false),
        (Mixed, Small, true, false, true, false),
        // Both equations hold: everyone accepts.
        (Mixed, Mixed, true, true, true, true),
        // Only the cofactored equation holds (torsion in R or A): ours and ZIP-215, both
        // cofactored, accept; strict's cofactorless equation refuses. Ours is cofactored so
        // that a batch gives each signature's own verdict (signature.rs).
        (Mixed, Mixed, true, true, true, false),
        (Mixed, Plain, true, true, true, false),
        // S >= L: refused by all three (malleability).
        (Plain, Plain, false, false, false, false),
        (Plain, Plain, false, false, false, false),
        // R encoded non-canonically (y >= p): ours and strict refuse the encoding; ZIP-215
        // decodes it, and accepts the case where the equation then holds.
        (Mixed, NonCanonical, true, false, false, false),
        (Mixed, NonCanonical, true, false, true, false),
        // A encoded non-canonically: ZIP-215 accepts such a key, ours and strict do not.
        (NonCanonical, Mixed, true, false, true, false),
        (NonCanonical, Mixed, true, false, true, false),
    ];
    let cases = cases();
    assert_eq!(cases.len(), table.len());
    let found: Vec<_> = cases
        .iter()
        .map(|case| {
            let r: [u8; 32] = case.signature[..32].try_into().expect("R");
            let s: [u8; 32] = case.signature[32..].try_into().expect("S");
            let s_canonical = bool::from(Scalar::from_canonical_bytes(s).is_some());
            (point(case.key), point(r), s_canonical, ours(case), zebra(case), dalek_strict(case))
        })
        .collect();
    for (i, (found, expected)) in found.iter().zip(table).enumerate() {
        assert_eq!(*found, expected, "case {i}: {found:?}");
    }
    // Ours never accepts what ZIP-215 refuses: the federation's rule is the stricter one.
    assert!(found.iter().all(|row| !row.3 || row.4), "{found:#?}");
}
