//! The one place every Ed25519 verification goes through, with an optional memo of strict
//! verdicts for the thread (keyed by the hash of key, message and signature). Simulated nodes
//! all verify the same bytes and reach the same verdict, so the simulator installs a shared
//! one for its thread. A node installs a small one on the thread its engine runs on: a
//! receipt then costs it only the signatures it has not yet checked strictly or made itself
//! (the owner's, checked with the anchor; its own cosignature). A batch verification never
//! fills the memo: its verdict is not the strict one.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// Verdicts the simulator's cache keeps before it starts over.
pub const VERIFICATION_CACHE_ENTRIES_MAX: usize = 1 << 20;

thread_local! {
    static CACHE: RefCell<Option<HashMap<[u8; 32], bool>>> = const { RefCell::new(None) };
    static CACHE_ENTRIES_MAX: Cell<usize> = const { Cell::new(VERIFICATION_CACHE_ENTRIES_MAX) };
    static OPERATIONS: Cell<Operations> =
        const { Cell::new(Operations { signatures: 0, verifications: 0, batched: 0 }) };
}

/// Ed25519 operations computed on this thread (memo hits are not computations): the
/// simulator's crypto floor is these counts times the machine's measured costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Operations {
    /// Signatures made.
    pub signatures: u64,
    /// Signatures verified.
    pub verifications: u64,
    /// Of the verifications, those done in batches (cheaper per signature).
    pub batched: u64,
}

impl Operations {
    /// The operations from `earlier` to `self`.
    pub fn since(self, earlier: Operations) -> Operations {
        Operations {
            signatures: self.signatures - earlier.signatures,
            verifications: self.verifications - earlier.verifications,
            batched: self.batched - earlier.batched,
        }
    }

    /// The sum of two counts.
    pub fn plus(self, other: Operations) -> Operations {
        Operations {
            signatures: self.signatures + other.signatures,
            verifications: self.verifications + other.verifications,
            batched: self.batched + other.batched,
        }
    }
}

/// The operations counted on this thread so far.
pub fn operations() -> Operations {
    OPERATIONS.with(Cell::get)
}

fn count(signatures: u64, verifications: u64, batched: u64) {
    OPERATIONS.with(|ops| ops.set(ops.get().plus(Operations { signatures, verifications, batched })));
}

/// Signs `message` (every signature of the node goes through here).
pub fn sign(key: &ed25519_dalek::SigningKey, message: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer as _;
    count(1, 0, 0);
    key.sign(message).to_bytes()
}

/// The memo key of a strict verdict on `signature` by `key` over `message`.
fn verdict_digest(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> [u8; 32] {
    Sha256::new().chain_update(key.as_bytes()).chain_update(signature).chain_update(message).finalize().into()
}

/// Stores a verdict in the installed memo (none: nothing), starting over when it is full.
fn remember(digest: [u8; 32], verdict: bool) {
    CACHE.with(|cache| {
        if let Some(map) = cache.borrow_mut().as_mut() {
            if map.len() >= CACHE_ENTRIES_MAX.with(Cell::get) {
                map.clear();
            }
            map.insert(digest, verdict);
        }
    });
}

/// The strict verdict the installed memo holds for this signature, if any.
fn recalled(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> Option<bool> {
    CACHE.with(|cache| {
        let cache = cache.borrow();
        let map = cache.as_ref()?;
        map.get(&verdict_digest(key, message, signature)).copied()
    })
}

/// Records a signature this thread made as valid in the installed memo (none: nothing): a
/// receipt that carries it back does not cost its verification. An honest Ed25519 signature
/// passes the strict check, so this is the verdict `verify` would reach.
pub fn remember_signed(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) {
    if CACHE.with(|cache| cache.borrow().is_some()) {
        remember(verdict_digest(key, message, signature), true);
    }
}

fn verify_strict(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
    count(0, 1, 0);
    key.verify_strict(message, &Signature::from_bytes(signature)).is_ok()
}

/// One batch verification of many Ed25519 signatures (true when all of them verify), counted
/// as one verification each. Not strict: callers fall back to [`verify`] to name a failure.
pub fn verify_batch(messages: &[&[u8]], signatures: &[Signature], keys: &[VerifyingKey]) -> bool {
    count(0, messages.len() as u64, messages.len() as u64);
    !messages.is_empty() && ed25519_dalek::verify_batch(messages, signatures, keys).is_ok()
}

/// [`verify_batch`] for signatures a node may have checked strictly or made itself (a
/// receipt's): those the installed memo holds as valid are left out of the batch (all of
/// them: true). The batch's own verdict is not remembered.
pub fn verify_batch_known(messages: &[&[u8]], signatures: &[Signature], keys: &[VerifyingKey]) -> bool {
    if messages.is_empty() || messages.len() != signatures.len() || messages.len() != keys.len() {
        return false;
    }
    let installed = CACHE.with(|cache| cache.borrow().is_some());
    if installed {
        let unknown: Vec<usize> = (0..messages.len())
            .filter(|&i| recalled(&keys[i], messages[i], &signatures[i].to_bytes()) != Some(true))
            .collect();
        if unknown.len() < messages.len() {
            if unknown.is_empty() {
                return true;
            }
            let messages: Vec<&[u8]> = unknown.iter().map(|&i| messages[i]).collect();
            let signatures: Vec<Signature> = unknown.iter().map(|&i| signatures[i]).collect();
            let keys: Vec<VerifyingKey> = unknown.iter().map(|&i| keys[i]).collect();
            return verify_batch(&messages, &signatures, &keys);
        }
    }
    verify_batch(messages, signatures, keys)
}

/// Strict Ed25519 verification (RFC 8032 with small-order and malleability checks), memoized
/// when a cache is installed on this thread.
pub fn verify(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
    let compute = || verify_strict(key, message, signature);
    if !CACHE.with(|cache| cache.borrow().is_some()) {
        return compute();
    }
    let digest = verdict_digest(key, message, signature);
    if let Some(verdict) =
        CACHE.with(|cache| cache.borrow().as_ref().and_then(|map| map.get(&digest).copied()))
    {
        return verdict;
    }
    let verdict = compute();
    remember(digest, verdict);
    verdict
}

/// Strict Ed25519 verification of the bytes `message` builds, memoized under `memo` when a
/// cache is installed. `memo` must determine the message bytes (for example a hash of their
/// parts); the bytes are only built when the verdict is not known yet.
pub fn verify_with_memo(
    key: &VerifyingKey,
    signature: &[u8; 64],
    memo: impl FnOnce() -> [u8; 32],
    message: impl FnOnce() -> Vec<u8>,
) -> bool {
    let installed = CACHE.with(|cache| cache.borrow().is_some());
    if !installed {
        return verify_strict(key, &message(), signature);
    }
    let digest: [u8; 32] = Sha256::new()
        .chain_update(b"remembrancer/verify-memo/v1\0")
        .chain_update(key.as_bytes())
        .chain_update(signature)
        .chain_update(memo())
        .finalize()
        .into();
    memoized(digest, || verify_strict(key, &message(), signature))
}

/// A verdict about a whole statement (for example a receipt under one registry version),
/// memoized under `key` when the cache is installed; computed every time otherwise.
pub fn memoized(key: [u8; 32], compute: impl FnOnce() -> bool) -> bool {
    let cached = CACHE.with(|cache| cache.borrow().as_ref().map(|map| map.get(&key).copied()));
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

/// Runs `work` with a verification cache installed on this thread (the simulator's use).
pub fn with_verification_cache<T>(work: impl FnOnce() -> T) -> T {
    struct Uninstall;
    impl Drop for Uninstall {
        fn drop(&mut self) {
            CACHE.with(|cache| *cache.borrow_mut() = None);
        }
    }
    install_verification_cache(VERIFICATION_CACHE_ENTRIES_MAX);
    let _uninstall = Uninstall;
    work()
}

/// Installs a memo of at most `entries_max` verdicts on this thread for good (a node's
/// engine thread); it starts over when full.
pub fn install_verification_cache(entries_max: usize) {
    CACHE_ENTRIES_MAX.with(|max| max.set(entries_max.max(1)));
    CACHE.with(|cache| *cache.borrow_mut() = Some(HashMap::new()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    #[test]
    fn a_batch_leaves_out_what_was_made_or_strictly_checked_here_and_remembers_nothing() {
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
            // The batch's verdict is not the strict one: a strict check computes it.
            assert!(verify(&public, b"new", &other));
            assert_eq!(operations().verifications - before, 2);
            // A known signature does not carry a forged one through.
            let mut forged = sig(b"forged");
            forged[5] ^= 1;
            assert!(!batch(&[(b"made here", made), (b"forged", forged)]));
            // The same bytes under another message are not known.
            assert!(!batch(&[(b"made elsewhere", made)]));
        });
        // Without a memo nothing is remembered and everything is computed.
        remember_signed(&public, b"made here", &made);
        let before = operations().verifications;
        assert!(batch(&[(b"made here", made)]));
        assert_eq!(operations().verifications - before, 1);
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
        // Without a cache every call is computed.
        assert!(verify_with_memo(&public, &good, || digest(b"one message"), || b"one message".to_vec()));
        let mut bad = good;
        bad[0] ^= 1;
        assert!(!verify_with_memo(&public, &bad, || digest(b"one message"), || b"one message".to_vec()));
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
