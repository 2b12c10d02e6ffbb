//! The one place every Ed25519 signature is made and verified, and the one verification rule
//! of the federation, with the [`Verifier`] that remembers verdicts and counts operations.
//!
//! **The rule** is RFC 8032's own group equation, `[8][s]B = [8]R + [8][k]A` (§5.1.7), with
//! canonical encodings (`s < ℓ`, `R` and `A` with `y < p`) and no small-order `R` or `A`. The
//! cofactor is what lets one batch verification reach the same verdict as checking each
//! signature alone: a cofactorless batch (ed25519-dalek's) accepts with probability up to 1/2 a
//! signature whose `R` carries a small-torsion component, which the cofactorless single check
//! (`verify_strict`) refuses. So a node may verify a group of statements in one batch and
//! remember each signature's verdict, and every member, batch or not, agrees on every
//! signature. Every signature an honest signer makes passes both equations; only a signer that
//! adds torsion to its own `R` on purpose can make one that a cofactorless verifier (Go's
//! `crypto/ed25519`) refuses and this rule accepts.
//!
//! **Verifiers.** Each engine owns a [`Verifier`] (its host chooses how many verdicts it
//! keeps) and lends it to the thread for each call: a receipt then costs the node only the
//! signatures it has not yet checked or made itself, and engines that share a thread (the
//! in-process nodes of one process) never recall each other's verdicts. The simulator's nodes
//! all verify the same bytes and reach the same verdicts: it lends one verifier around all of
//! them, on purpose. The functions here reach the lent verifier through the thread (they are
//! called deep inside message, note and receipt checks); outside a lend (the offline verifier,
//! say) they remember and count nothing.

use std::cell::RefCell;
use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity as _, VartimeMultiscalarMul as _};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256, Sha512};

/// Verdicts the simulator's shared memo keeps before it starts over.
pub const VERIFICATION_CACHE_ENTRIES_MAX: usize = 1 << 20;

/// A memo of verdicts, keyed by the hash of what was judged; it starts over when full.
#[derive(Debug)]
struct Memo {
    verdicts: HashMap<[u8; 32], bool>,
    entries_max: usize,
}

/// Keys of large order a verifier remembers, at most (a small federation's members).
const LARGE_ORDER_KEYS_KEPT: usize = 8;

/// Public keys a verifier found not of small order, most recent last, replaced in turn. A
/// federation's signatures come from a few keys: remembering them saves a cofactor
/// multiplication and an identity check per signature (about 0.9% of a node's CPU in a
/// profile under `scripts/bench sustained`), and a key's order depends on its bytes alone.
#[derive(Debug, Clone)]
struct LargeOrderKeys {
    keys: [[u8; 32]; LARGE_ORDER_KEYS_KEPT],
    next: usize,
    held: usize,
}

/// What one verifier (a node's engine, or the simulator's nodes together) keeps between
/// signatures: its memo of verdicts (optional), the keys it found of large order, and the
/// Ed25519 operations it computed. It is a value its owner holds; the signature functions of
/// this module reach it only while the owner lends it to the thread ([`Verifier::lend`]), so
/// two engines on one thread never share a verdict unless they were given one verifier on
/// purpose (the simulator's, lent around all its nodes). With none lent, nothing is
/// remembered and nothing counted.
#[derive(Debug)]
pub struct Verifier {
    memo: Option<Memo>,
    keys: LargeOrderKeys,
    operations: Operations,
}

impl Verifier {
    /// A verifier that remembers at most `entries_max` verdicts (it starts over when full).
    pub fn new(entries_max: usize) -> Self {
        Verifier {
            memo: Some(Memo { verdicts: HashMap::new(), entries_max: entries_max.max(1) }),
            ..Verifier::without_memo()
        }
    }

    /// A verifier that remembers no verdict: it counts operations and keeps its keys only.
    pub fn without_memo() -> Self {
        Verifier {
            memo: None,
            keys: LargeOrderKeys { keys: [[0; 32]; LARGE_ORDER_KEYS_KEPT], next: 0, held: 0 },
            operations: Operations::default(),
        }
    }

    /// The Ed25519 operations computed while this verifier was lent (memo hits are not
    /// computations).
    pub fn operations(&self) -> Operations {
        self.operations
    }

    /// Verdicts remembered now.
    pub fn remembered(&self) -> usize {
        self.memo.as_ref().map_or(0, |memo| memo.verdicts.len())
    }

    /// Runs `work` with this verifier lent to the thread: every signature made or checked in
    /// it uses and feeds this verifier. What was lent before is put back afterwards (also
    /// when `work` panics).
    pub fn lend<T>(&mut self, work: impl FnOnce() -> T) -> T {
        struct GiveBack<'a> {
            owner: &'a mut Verifier,
            before: Option<Verifier>,
        }
        impl Drop for GiveBack<'_> {
            fn drop(&mut self) {
                let lent = LENT.with(|lent| std::mem::replace(&mut *lent.borrow_mut(), self.before.take()));
                if let Some(lent) = lent {
                    *self.owner = lent;
                }
            }
        }
        let lent = std::mem::replace(self, Verifier::without_memo());
        let before = LENT.with(|slot| slot.borrow_mut().replace(lent));
        let _give_back = GiveBack { owner: self, before };
        work()
    }
}

thread_local! {
    /// The verifier lent to this thread now ([`Verifier::lend`]), if any.
    static LENT: RefCell<Option<Verifier>> = const { RefCell::new(None) };
}

/// True when the point `a`, encoded as `bytes`, is of small order; the lent verifier
/// remembers keys that are not.
fn key_of_small_order(bytes: &[u8; 32], a: &EdwardsPoint) -> bool {
    LENT.with(|lent| {
        let mut lent = lent.borrow_mut();
        let Some(verifier) = lent.as_mut() else { return a.is_small_order() };
        let kept = &mut verifier.keys;
        if kept.keys[..kept.held].iter().any(|key| key == bytes) {
            return false;
        }
        if a.is_small_order() {
            return true;
        }
        let at = kept.next;
        kept.keys[at] = *bytes;
        kept.next = (at + 1) % LARGE_ORDER_KEYS_KEPT;
        kept.held = (kept.held + 1).min(LARGE_ORDER_KEYS_KEPT);
        false
    })
}

/// Ed25519 operations a verifier computed (memo hits are not computations): the simulator's
/// crypto floor is these counts times the machine's measured costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Operations {
    /// Signatures made.
    pub signatures: u64,
    /// Signatures verified.
    pub verifications: u64,
    /// Of the verifications, those done in batches of two or more (cheaper per signature).
    pub batched: u64,
    /// Batches those were done in: `batched / batches` is the mean batch size.
    pub batches: u64,
}

impl Operations {
    /// The operations from `earlier` to `self`.
    pub fn since(self, earlier: Operations) -> Operations {
        Operations {
            signatures: self.signatures - earlier.signatures,
            verifications: self.verifications - earlier.verifications,
            batched: self.batched - earlier.batched,
            batches: self.batches - earlier.batches,
        }
    }

    /// The sum of two counts.
    pub fn plus(self, other: Operations) -> Operations {
        Operations {
            signatures: self.signatures + other.signatures,
            verifications: self.verifications + other.verifications,
            batched: self.batched + other.batched,
            batches: self.batches + other.batches,
        }
    }
}

/// The operations the verifier lent to this thread now has counted (none lent: zero).
pub fn operations() -> Operations {
    LENT.with(|lent| lent.borrow().as_ref().map(|verifier| verifier.operations).unwrap_or_default())
}

fn count(signatures: u64, verifications: u64, batched: u64) {
    let batches = u64::from(batched > 0);
    LENT.with(|lent| {
        if let Some(verifier) = lent.borrow_mut().as_mut() {
            verifier.operations =
                verifier.operations.plus(Operations { signatures, verifications, batched, batches });
        }
    });
}

/// Signs `message` (every signature of the node goes through here).
pub fn sign(key: &ed25519_dalek::SigningKey, message: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer as _;
    count(1, 0, 0);
    key.sign(message).to_bytes()
}

/// The memo key of a verdict on `signature` by `key` over `message`.
fn verdict_digest(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> [u8; 32] {
    Sha256::new().chain_update(key.as_bytes()).chain_update(signature).chain_update(message).finalize().into()
}

/// Stores a verdict in the lent verifier's memo (none: nothing), starting over when it is full.
fn remember(digest: [u8; 32], verdict: bool) {
    LENT.with(|lent| {
        if let Some(memo) = lent.borrow_mut().as_mut().and_then(|verifier| verifier.memo.as_mut()) {
            if memo.verdicts.len() >= memo.entries_max {
                memo.verdicts.clear();
            }
            memo.verdicts.insert(digest, verdict);
        }
    });
}

/// The verdict the lent verifier's memo holds under `digest`, if any.
fn recalled_digest(digest: &[u8; 32]) -> Option<bool> {
    LENT.with(|lent| lent.borrow().as_ref()?.memo.as_ref()?.verdicts.get(digest).copied())
}

/// Records a signature made here as valid in the lent verifier's memo (none: nothing): a
/// receipt that carries it back does not cost its verification. An honest Ed25519 signature
/// passes the rule, so this is the verdict `verify` would reach.
pub fn remember_signed(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) {
    if memo_installed() {
        remember(verdict_digest(key, message, signature), true);
    }
}

/// True when `bytes` encodes a field element below p = 2^255 - 19 (the sign bit aside): the
/// only encoding the rule accepts for `R` and `A`.
fn canonical_point_encoding(bytes: &[u8; 32]) -> bool {
    // y >= p exactly when bytes 1..31 are all ones, the top byte is 0x7f (sign bit masked) and
    // the lowest byte is at least p's lowest, 0xed.
    !(bytes[0] >= 0xed && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[31] & 0x7f == 0x7f)
}

/// A signature taken apart for the group equation, once its encodings passed the rule.
struct Parts {
    r: EdwardsPoint,
    s: Scalar,
    /// k = SHA-512(R || A || M) mod ℓ.
    k: Scalar,
    a: EdwardsPoint,
    a_bytes: [u8; 32],
    /// The signature as encoded (R || s), for the batch's transcript.
    signature: [u8; 64],
}

/// The parts of `signature` by `key` over `message`; none when an encoding breaks the rule
/// (`s` not below ℓ, `R` or `A` not canonical or of small order, `R` not on the curve).
fn parts(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> Option<Parts> {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    if !canonical_point_encoding(&r_bytes) || !canonical_point_encoding(key.as_bytes()) {
        return None;
    }
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    let a = key.to_edwards();
    if r.is_small_order() || key_of_small_order(key.as_bytes(), &a) {
        return None;
    }
    let hram: [u8; 64] = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(key.as_bytes())
        .chain_update(message)
        .finalize()
        .into();
    Some(Parts {
        r,
        s,
        k: Scalar::from_bytes_mod_order_wide(&hram),
        a,
        a_bytes: key.to_bytes(),
        signature: *signature,
    })
}

/// The rule for one signature: `[8]([s]B - [k]A - R)` is the identity.
fn rule_holds(parts: &Parts) -> bool {
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&parts.k, &-parts.a, &parts.s);
    (sb_minus_ka - parts.r).mul_by_cofactor().is_identity()
}

/// The rule for many signatures at once: `[8](Σ zᵢ([sᵢ]B - [kᵢ]Aᵢ - Rᵢ))` is the identity, with
/// 128-bit coefficients `zᵢ` drawn from a hash of the whole batch (a signer cannot choose its
/// signatures after seeing them). Multiplying by the cofactor removes every small-torsion
/// term, so this holds exactly when each signature passes [`rule_holds`], except with
/// probability about 2^-128. Signatures under one key share its point in the sum.
fn rule_holds_for_all(parts: &[Parts]) -> bool {
    let mut transcript = Sha512::new().chain_update(b"remembrancer/ed25519-batch/v1\0");
    for part in parts {
        transcript.update(part.signature);
        transcript.update(part.k.as_bytes());
        transcript.update(part.a_bytes);
    }
    let seed: [u8; 64] = transcript.finalize().into();
    let mut base = Scalar::ZERO;
    let mut scalars: Vec<Scalar> = Vec::with_capacity(parts.len() * 2 + 1);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(parts.len() * 2 + 1);
    let mut keys: Vec<(&[u8; 32], EdwardsPoint, Scalar)> = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let draw: [u8; 64] =
            Sha512::new().chain_update(seed).chain_update((index as u64).to_le_bytes()).finalize().into();
        let mut z_bytes = [0u8; 16];
        z_bytes.copy_from_slice(&draw[..16]);
        let z = Scalar::from(u128::from_le_bytes(z_bytes));
        base += z * part.s;
        scalars.push(z);
        points.push(part.r);
        match keys.iter_mut().find(|(a, _, _)| **a == part.a_bytes) {
            Some((_, _, coefficient)) => *coefficient += z * part.k,
            None => keys.push((&part.a_bytes, part.a, z * part.k)),
        }
    }
    scalars.push(-base);
    points.push(ED25519_BASEPOINT_POINT);
    for (_, a, coefficient) in keys {
        scalars.push(coefficient);
        points.push(a);
    }
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points).mul_by_cofactor().is_identity()
}

/// One verification under the rule, computed (not memoized).
fn verify_computed(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
    count(0, 1, 0);
    parts(key, message, signature).is_some_and(|parts| rule_holds(&parts))
}

/// One batch verification of many Ed25519 signatures under the rule (true when all of them
/// verify, false for an empty batch), counted as one verification each. It reaches the verdict
/// checking each alone would; callers check them one by one only to name a failure.
pub fn verify_batch(messages: &[&[u8]], signatures: &[Signature], keys: &[VerifyingKey]) -> bool {
    if messages.is_empty() || messages.len() != signatures.len() || messages.len() != keys.len() {
        return false;
    }
    // A batch of one is a single verification.
    let n = messages.len() as u64;
    count(0, n, if n > 1 { n } else { 0 });
    let mut all = Vec::with_capacity(messages.len());
    for ((key, message), signature) in keys.iter().zip(messages).zip(signatures) {
        match parts(key, message, &signature.to_bytes()) {
            Some(parts) => all.push(parts),
            None => return false,
        }
    }
    if all.len() == 1 {
        return rule_holds(&all[0]);
    }
    rule_holds_for_all(&all)
}

/// [`verify_batch`] for signatures the lent verifier may have checked or made already (a
/// receipt's, a group of messages'): those its memo holds as valid are left out of the batch
/// (all of them: true), and a passing batch leaves each of its signatures remembered as valid.
pub fn verify_batch_known(messages: &[&[u8]], signatures: &[Signature], keys: &[VerifyingKey]) -> bool {
    if messages.is_empty() || messages.len() != signatures.len() || messages.len() != keys.len() {
        return false;
    }
    if !memo_installed() {
        return verify_batch(messages, signatures, keys);
    }
    let unknown: Vec<(usize, [u8; 32])> = (0..messages.len())
        .filter_map(|i| {
            let digest = verdict_digest(&keys[i], messages[i], &signatures[i].to_bytes());
            (recalled_digest(&digest) != Some(true)).then_some((i, digest))
        })
        .collect();
    if unknown.is_empty() {
        return true;
    }
    let valid = if unknown.len() == messages.len() {
        verify_batch(messages, signatures, keys)
    } else {
        let messages: Vec<&[u8]> = unknown.iter().map(|&(i, _)| messages[i]).collect();
        let signatures: Vec<Signature> = unknown.iter().map(|&(i, _)| signatures[i]).collect();
        let keys: Vec<VerifyingKey> = unknown.iter().map(|&(i, _)| keys[i]).collect();
        verify_batch(&messages, &signatures, &keys)
    };
    if valid {
        for (_, digest) in unknown {
            remember(digest, true);
        }
    }
    valid
}

/// Ed25519 verification under the rule (module documentation), memoized when the lent
/// verifier keeps a memo.
pub fn verify(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
    let compute = || verify_computed(key, message, signature);
    if !memo_installed() {
        return compute();
    }
    let digest = verdict_digest(key, message, signature);
    if let Some(verdict) = recalled_digest(&digest) {
        return verdict;
    }
    let verdict = compute();
    remember(digest, verdict);
    verdict
}

/// Ed25519 verification of the bytes `message` builds, memoized under `memo` when the
/// lent verifier keeps a memo. `memo` must determine the message bytes (for example a hash of their
/// parts); the bytes are only built when the verdict is not known yet.
pub fn verify_with_memo(
    key: &VerifyingKey,
    signature: &[u8; 64],
    memo: impl FnOnce() -> [u8; 32],
    message: impl FnOnce() -> Vec<u8>,
) -> bool {
    if !memo_installed() {
        return verify_computed(key, &message(), signature);
    }
    let digest: [u8; 32] = Sha256::new()
        .chain_update(b"remembrancer/verify-memo/v1\0")
        .chain_update(key.as_bytes())
        .chain_update(signature)
        .chain_update(memo())
        .finalize()
        .into();
    memoized(digest, || verify_computed(key, &message(), signature))
}

/// A verdict about a whole statement (for example a receipt under one registry version),
/// memoized under `key` when the lent verifier keeps a memo; computed every time otherwise.
pub fn memoized(key: [u8; 32], compute: impl FnOnce() -> bool) -> bool {
    let cached =
        LENT.with(|lent| lent.borrow().as_ref()?.memo.as_ref().map(|memo| memo.verdicts.get(&key).copied()));
    match cached {
        None => compute(),
        Some(Some(verdict)) => verdict,
        Some(None) => {
            let verdict = compute();
            remember(key, verdict);
            verdict
        }
    }
}

/// True when the verifier lent to this thread keeps a memo (verdicts proven now can be
/// recalled later).
pub fn memo_installed() -> bool {
    LENT.with(|lent| lent.borrow().as_ref().is_some_and(|verifier| verifier.memo.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::traits::Identity as _;
    use ed25519_dalek::{Signer as _, SigningKey};

    /// Runs `work` with a verifier of a large memo lent (the simulator's use).
    fn with_verification_cache<T>(work: impl FnOnce() -> T) -> T {
        Verifier::new(VERIFICATION_CACHE_ENTRIES_MAX).lend(work)
    }

    #[test]
    fn a_batch_leaves_out_what_was_made_or_checked_here_and_remembers_what_it_proves() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let public = key.verifying_key();
        let sig = |m: &[u8]| key.sign(m).to_bytes();
        let (made, checked, other) = (sig(b"made here"), sig(b"checked here"), sig(b"new"));
        let batch = |items: &[(&[u8], [u8; 64])]| {
            let messages: Vec<&[u8]> = items.iter().map(|(m, _)| *m).collect();
            let signatures: Vec<Signature> = items.iter().map(|(_, s)| Signature::from_bytes(s)).collect();
            verify_batch_known(&messages, &signatures, &vec![public; items.len()])
        };
        with_verification_cache(|| {
            remember_signed(&public, b"made here", &made);
            assert!(verify(&public, b"checked here", &checked));
            let before = operations().verifications;
            assert!(batch(&[(b"made here", made), (b"checked here", checked)]));
            assert_eq!(operations().verifications - before, 0, "both were known");
            assert!(batch(&[(b"made here", made), (b"new", other)]));
            assert_eq!(operations().verifications - before, 1, "only the new one is computed");
            // The batch's verdict is the rule's: a single check recalls it.
            assert!(verify(&public, b"new", &other));
            assert_eq!(operations().verifications - before, 1);
            // A known signature does not carry a forged one through, and a failed batch
            // leaves nothing remembered.
            let mut forged = sig(b"forged");
            forged[5] ^= 1;
            let fresh = sig(b"fresh");
            assert!(!batch(&[(b"made here", made), (b"forged", forged), (b"fresh", fresh)]));
            let before = operations().verifications;
            assert!(verify(&public, b"fresh", &fresh));
            assert_eq!(operations().verifications - before, 1, "the failed batch proved nothing");
            // The same bytes under another message are not known.
            assert!(!batch(&[(b"made elsewhere", made)]));
        });
        // Without a memo nothing is remembered and everything is computed.
        Verifier::without_memo().lend(|| {
            remember_signed(&public, b"made here", &made);
            let before = operations().verifications;
            assert!(batch(&[(b"made here", made)]));
            assert_eq!(operations().verifications - before, 1);
        });
    }

    #[test]
    fn a_lent_verifier_keeps_its_own_verdicts_and_the_thread_gets_back_what_it_had() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = key.verifying_key();
        let signature = key.sign(b"statement").to_bytes();
        let (mut first, mut second) = (Verifier::new(16), Verifier::new(16));
        let computed = |verifier: &mut Verifier| {
            let before = verifier.operations().verifications;
            verifier.lend(|| assert!(verify(&public, b"statement", &signature)));
            verifier.operations().verifications - before
        };
        assert_eq!(computed(&mut first), 1);
        assert_eq!(first.remembered(), 1, "the verdict went back with the verifier");
        assert_eq!(computed(&mut first), 0, "recalled from its own memo");
        assert_eq!(computed(&mut second), 1, "another node's verifier does not know it");
        assert!(!memo_installed(), "nothing stays lent");
        // Nothing lent: nothing remembered, nothing counted.
        assert!(verify(&public, b"statement", &signature));
        assert_eq!(operations(), Operations::default());
        // Lent inside another: the outer one comes back, untouched.
        with_verification_cache(|| {
            assert_eq!(computed(&mut Verifier::new(16)), 1);
            let before = operations().verifications;
            assert!(verify(&public, b"statement", &signature));
            assert_eq!(operations().verifications - before, 1, "the outer memo learned nothing");
            assert!(memo_installed());
        });
        // A full memo starts over.
        let mut small = Verifier::new(1);
        small.lend(|| {
            assert!(verify(&public, b"statement", &signature));
            assert!(!verify(&public, b"other", &signature));
        });
        assert_eq!(small.remembered(), 1);
    }

    /// A point of order 8 (the torsion part of a point found by hashing).
    fn eight_torsion() -> EdwardsPoint {
        (0u64..)
            .filter_map(|i| {
                let y: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
                CompressedEdwardsY(y).decompress()
            })
            .map(|point| point * -Scalar::ONE + point)
            .find(|torsion| !(torsion * Scalar::from(4u8)).is_identity())
            .expect("a point with a torsion part of order 8")
    }

    /// A signature whose R carries `torsion`: made by the key's holder, it passes the cofactored
    /// equation and fails the cofactorless one.
    fn signature_with_torsion(key: &SigningKey, message: &[u8], torsion: EdwardsPoint) -> [u8; 64] {
        let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(message).into());
        let big_r = (ED25519_BASEPOINT_POINT * r + torsion).compress();
        let hram: [u8; 64] = Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(key.verifying_key().as_bytes())
            .chain_update(message)
            .finalize()
            .into();
        let s = r + Scalar::from_bytes_mod_order_wide(&hram) * key.to_scalar();
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(big_r.as_bytes());
        signature[32..].copy_from_slice(s.as_bytes());
        signature
    }

    fn batch_of(items: &[(&VerifyingKey, &[u8], [u8; 64])]) -> bool {
        let messages: Vec<&[u8]> = items.iter().map(|(_, m, _)| *m).collect();
        let signatures: Vec<Signature> = items.iter().map(|(_, _, s)| Signature::from_bytes(s)).collect();
        let keys: Vec<VerifyingKey> = items.iter().map(|(k, _, _)| **k).collect();
        verify_batch(&messages, &signatures, &keys)
    }

    #[test]
    fn single_and_batch_verification_agree_on_every_signature_even_with_torsion() {
        let keys: Vec<SigningKey> = (1u8..=3).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
        let publics: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
        let honest: Vec<[u8; 64]> = keys.iter().map(|k| k.sign(b"honest").to_bytes()).collect();
        for (public, signature) in publics.iter().zip(&honest) {
            assert!(verify(public, b"honest", signature));
            assert!(public.verify_strict(b"honest", &Signature::from_bytes(signature)).is_ok());
        }
        let eight = eight_torsion();
        for torsion in [eight, eight * Scalar::from(2u8), eight * Scalar::from(4u8)] {
            let tainted = signature_with_torsion(&keys[0], b"tainted", torsion);
            // The cofactorless check refuses it; the rule accepts it, alone and in any batch,
            // so no member can split the federation's verdicts with it.
            assert!(publics[0].verify_strict(b"tainted", &Signature::from_bytes(&tainted)).is_err());
            assert!(verify(&publics[0], b"tainted", &tainted));
            let mut items: Vec<(&VerifyingKey, &[u8], [u8; 64])> =
                publics.iter().zip(&honest).map(|(k, s)| (k, b"honest".as_slice(), *s)).collect();
            items.push((&publics[0], b"tainted", tainted));
            assert!(batch_of(&items));
            // Over other bytes it is as invalid alone as in a batch.
            assert!(!verify(&publics[0], b"other", &tainted));
            items.push((&publics[0], b"other", tainted));
            assert!(!batch_of(&items));
        }
    }

    #[test]
    fn a_key_of_small_order_is_refused_however_many_keys_of_large_order_were_seen_before() {
        // A = the point of order 8: [8](sB - kA - R) is the identity for R = sB whatever k is,
        // so only the small-order check refuses such a signature.
        let weak = VerifyingKey::from_bytes(&eight_torsion().compress().to_bytes()).expect("a point");
        let forged = |message: &[u8]| {
            let s = Scalar::from_bytes_mod_order_wide(&Sha512::digest(message).into());
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice((ED25519_BASEPOINT_POINT * s).compress().as_bytes());
            signature[32..].copy_from_slice(s.as_bytes());
            signature
        };
        let strong: Vec<SigningKey> = (1u8..=20).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
        // The keys are remembered by the lent verifier.
        Verifier::without_memo().lend(|| {
            for round in 0..3 {
                // Keys of large order, more than are remembered, checked before and after it.
                for key in &strong {
                    let message = [round, key.as_bytes()[0]];
                    let signature = key.sign(&message).to_bytes();
                    assert!(verify_computed(&key.verifying_key(), &message, &signature));
                    assert!(batch_of(&[
                        (&key.verifying_key(), message.as_slice(), signature),
                        (&strong[0].verifying_key(), b"first", strong[0].sign(b"first").to_bytes()),
                    ]));
                }
                let message = [b'w', round];
                assert!(!verify_computed(&weak, &message, &forged(&message)), "round {round}");
                assert!(!batch_of(&[
                    (&weak, message.as_slice(), forged(&message)),
                    (&strong[0].verifying_key(), b"first", strong[0].sign(b"first").to_bytes()),
                ]));
            }
        });
    }

    #[test]
    fn errors_that_would_cancel_out_in_a_plain_sum_do_not_pass_a_batch() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = key.verifying_key();
        let bump = |message: &[u8], delta: Scalar| {
            let mut signature = key.sign(message).to_bytes();
            let s = Scalar::from_canonical_bytes(signature[32..].try_into().expect("32 bytes"));
            let s = Option::<Scalar>::from(s).expect("a canonical s") + delta;
            signature[32..].copy_from_slice(s.as_bytes());
            signature
        };
        // Errors of B and -B: one sums to the identity with equal coefficients.
        let up = bump(b"one", Scalar::ONE);
        let down = bump(b"two", -Scalar::ONE);
        assert!(!verify(&public, b"one", &up) && !verify(&public, b"two", &down));
        assert!(!batch_of(&[(&public, b"one", up), (&public, b"two", down)]));
    }

    #[test]
    fn encodings_outside_the_rule_are_refused_alone_and_in_batches() {
        let key = SigningKey::from_bytes(&[8u8; 32]);
        let public = key.verifying_key();
        let good = key.sign(b"message").to_bytes();
        let fine = key.sign(b"fine").to_bytes();
        let refused = |signature: [u8; 64], why: &str| {
            assert!(!verify(&public, b"message", &signature), "{why}");
            assert!(!batch_of(&[(&public, b"fine", fine), (&public, b"message", signature)]), "{why}");
        };
        // s + ℓ: the same point equation, a second encoding.
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(good[32..].try_into().expect("32")))
            .expect("canonical");
        let mut wide = [0u8; 32];
        let mut carry = 0u16;
        let mut order = (-Scalar::ONE).to_bytes(); // ℓ - 1, whose lowest byte is 0xec
        order[0] += 1;
        for i in 0..32 {
            let sum = u16::from(s.as_bytes()[i]) + u16::from(order[i]) + carry;
            wide[i] = sum as u8;
            carry = sum >> 8;
        }
        let mut malleated = good;
        malleated[32..].copy_from_slice(&wide);
        refused(malleated, "s not below the group order");
        // R of small order (the identity), and R encoded with y >= p (y = p + 1, which
        // decodes as y = 1).
        let mut identity_r = good;
        let identity = EdwardsPoint::identity().compress();
        identity_r[..32].copy_from_slice(identity.as_bytes());
        refused(identity_r, "small-order R");
        let mut above_p = good;
        let mut p_plus_one = [0xff; 32];
        p_plus_one[0] = 0xee;
        p_plus_one[31] = 0x7f;
        above_p[..32].copy_from_slice(&p_plus_one);
        refused(above_p, "R encoded above p");
        // p - 1 (y = -1), with the sign bit set, is a canonical encoding (of a small-order
        // point, refused for that).
        let mut p_minus_one = p_plus_one;
        p_minus_one[0] = 0xec;
        p_minus_one[31] = 0xff;
        assert!(canonical_point_encoding(&p_minus_one));
        assert!(!canonical_point_encoding(&p_plus_one));
        // A key of small order signs nothing.
        let weak = VerifyingKey::from_bytes(identity.as_bytes()).expect("decodes");
        let mut any = [0u8; 64];
        any[..32].copy_from_slice(identity.as_bytes());
        assert!(!verify(&weak, b"anything", &any));
        assert!(!batch_of(&[(&weak, b"anything", any), (&public, b"fine", fine)]));
        // An empty batch proves nothing.
        assert!(!batch_of(&[]));
    }

    #[test]
    fn memoized_message_verdicts_are_keyed_by_what_was_signed_and_counted_once() {
        let key = SigningKey::from_bytes(&[5u8; 32]);
        let public = key.verifying_key();
        let good = key.sign(b"one message").to_bytes();
        let digest = |text: &[u8]| -> [u8; 32] { Sha256::digest(text).into() };
        with_verification_cache(|| {
            let before = operations().verifications;
            for _ in 0..3 {
                assert!(verify_with_memo(
                    &public,
                    &good,
                    || digest(b"one message"),
                    || b"one message".to_vec()
                ));
            }
            assert_eq!(operations().verifications - before, 1, "memo hits are not computed again");
            // The same signature over other bytes has another memo key, is computed, and fails.
            assert!(!verify_with_memo(
                &public,
                &good,
                || digest(b"other message"),
                || b"other message".to_vec()
            ));
            assert_eq!(operations().verifications - before, 2);
        });
        // Without a memo every call is computed.
        Verifier::without_memo().lend(|| {
            let before = operations().verifications;
            assert!(verify_with_memo(&public, &good, || digest(b"one message"), || b"one message".to_vec()));
            let mut bad = good;
            bad[0] ^= 1;
            assert!(!verify_with_memo(&public, &bad, || digest(b"one message"), || b"one message".to_vec()));
            assert_eq!(operations().verifications - before, 2);
        });
    }

    #[test]
    fn cached_and_direct_verdicts_agree() {
        let key = SigningKey::from_bytes(&[4u8; 32]);
        let good = key.sign(b"message").to_bytes();
        let mut bad = good;
        bad[3] ^= 1;
        let public = key.verifying_key();
        let direct = (verify(&public, b"message", &good), verify(&public, b"message", &bad));
        let cached = with_verification_cache(|| {
            (0..3)
                .map(|_| (verify(&public, b"message", &good), verify(&public, b"message", &bad)))
                .collect::<Vec<_>>()
        });
        assert_eq!(direct, (true, false));
        assert!(cached.iter().all(|v| *v == direct));
        assert!(!verify(&public, b"other message", &good));
    }
}
