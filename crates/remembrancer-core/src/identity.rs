//! Node identities: one Ed25519 key gives the libp2p PeerId, the `did:key` and the signatures
//! made under the operator's alias DID (`did:vm:node:east1`).

use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::base58;

/// Multicodec prefix of an Ed25519 public key (`ed25519-pub`, 0xed as unsigned varint).
const ED25519_PUB_MULTICODEC: [u8; 2] = [0xed, 0x01];
/// Longest DID we accept, in bytes.
pub const DID_BYTES_MAX: usize = 256;
/// Format tag of key files.
pub const KEY_FILE_FORMAT: &str = "remembrancer-key/v1";
/// Longest key file we read, in bytes.
pub const KEY_FILE_BYTES_MAX: usize = 4096;

/// Errors about keys, DIDs and key files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A public key string is not multibase base58btc (`z...`) of a multicodec Ed25519 key.
    #[error("public key {0:?} is not a multibase ed25519 key: expected z6Mk... (as in did:key)")]
    BadPublicKey(String),
    /// The key decodes to a point that is not a usable Ed25519 key (or a small-order one).
    #[error("public key {0:?} is not a valid ed25519 point (or is a weak key)")]
    WeakOrInvalidKey(String),
    /// A DID has the wrong shape.
    #[error("DID {did:?} is not valid: {reason}")]
    BadDid {
        /// The DID as given.
        did: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A key file is malformed.
    #[error("key file is not a remembrancer key: {0}; generate one with `remembrancer keys generate`")]
    BadKeyFile(String),
    /// A multibase signature is malformed.
    #[error("signature {0:?} is not multibase base58btc of 64 bytes")]
    BadSignature(String),
    /// The operating system gave no randomness for a new key.
    #[error("the operating system's random source failed ({0}); no key was made: try again, or check /dev/urandom")]
    NoRandomness(String),
}

/// Renders an Ed25519 public key as the registry writes it: multibase base58btc of the
/// multicodec key (`z6Mk...`).
pub fn multibase_public_key(key: &VerifyingKey) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&ED25519_PUB_MULTICODEC);
    bytes.extend_from_slice(key.as_bytes());
    format!("z{}", base58::encode(&bytes))
}

/// The `did:key` of an Ed25519 public key.
pub fn did_key(key: &VerifyingKey) -> String {
    format!("did:key:{}", multibase_public_key(key))
}

/// Parses `z6Mk...` or `did:key:z6Mk...` into an Ed25519 key, refusing weak keys.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, IdentityError> {
    let multibase = text.strip_prefix("did:key:").unwrap_or(text);
    let encoded = multibase.strip_prefix('z').ok_or_else(|| IdentityError::BadPublicKey(text.to_string()))?;
    if encoded.len() > 64 {
        return Err(IdentityError::BadPublicKey(text.to_string()));
    }
    let bytes = base58::decode(encoded).map_err(|_| IdentityError::BadPublicKey(text.to_string()))?;
    if bytes.len() != 34 || bytes[..2] != ED25519_PUB_MULTICODEC {
        return Err(IdentityError::BadPublicKey(text.to_string()));
    }
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&bytes[2..]);
    let key =
        VerifyingKey::from_bytes(&raw).map_err(|_| IdentityError::WeakOrInvalidKey(text.to_string()))?;
    if key.is_weak() {
        return Err(IdentityError::WeakOrInvalidKey(text.to_string()));
    }
    Ok(key)
}

/// The libp2p PeerId (base58 of the identity multihash of the protobuf-encoded public key),
/// computed here so that the core needs no libp2p.
pub fn peer_id(key: &VerifyingKey) -> String {
    // identity multihash (0x00, length 36) of protobuf PublicKey { Type: Ed25519 = 1, Data }.
    let mut bytes = Vec::with_capacity(38);
    bytes.extend_from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
    bytes.extend_from_slice(key.as_bytes());
    base58::encode(&bytes)
}

/// Checks a DID: `did:<method>:<id>`, printable ASCII without spaces or `+` (the character
/// that separates fields of a C2SP verifier key), at most [`DID_BYTES_MAX`] bytes.
pub fn validate_did(did: &str) -> Result<(), IdentityError> {
    let bad = |reason| Err(IdentityError::BadDid { did: did.to_string(), reason });
    if did.len() > DID_BYTES_MAX {
        return bad("longer than 256 bytes");
    }
    let Some(rest) = did.strip_prefix("did:") else {
        return bad("must start with did:");
    };
    let Some((method, id)) = rest.split_once(':') else {
        return bad("must be did:<method>:<identifier>");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return bad("the method must be lowercase letters and digits");
    }
    if id.is_empty() {
        return bad("the identifier is empty");
    }
    if !did.bytes().all(|b| b.is_ascii_graphic() && b != b'+') {
        return bad("only printable ASCII without spaces or '+' is allowed");
    }
    Ok(())
}

/// Encodes a 64-byte signature as multibase base58btc (`z...`), as receipts carry it.
pub fn multibase_signature(signature: &[u8; 64]) -> String {
    format!("z{}", base58::encode(signature))
}

/// Decodes a multibase base58btc signature.
pub fn parse_multibase_signature(text: &str) -> Result<[u8; 64], IdentityError> {
    let bad = || IdentityError::BadSignature(text.chars().take(100).collect());
    let encoded = text.strip_prefix('z').ok_or_else(bad)?;
    if encoded.len() > 100 {
        return Err(bad());
    }
    base58::decode_array(encoded).ok_or_else(bad)
}

/// A node's signing identity: its Ed25519 key and the alias DID its registry lists it under.
/// `Debug` never prints the secret.
#[derive(Clone)]
pub struct NodeIdentity {
    key: SigningKey,
    did: String,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("did", &self.did)
            .field("public_key", &multibase_public_key(&self.key.verifying_key()))
            .finish_non_exhaustive()
    }
}

/// The on-disk form of a key file (JSON); the binary writes it with mode 0600.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    did: String,
    public_key: String,
    secret_key: String,
}

impl NodeIdentity {
    /// A fresh identity from the operating system's random source.
    pub fn generate(did: &str) -> Result<Self, IdentityError> {
        validate_did(did)?;
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut seed[..]).map_err(|e| IdentityError::NoRandomness(e.to_string()))?;
        Ok(NodeIdentity { key: SigningKey::from_bytes(&seed), did: did.to_string() })
    }

    /// An identity from a 32-byte secret seed (tests, simulations with seeded keys).
    pub fn from_seed(did: &str, seed: [u8; 32]) -> Result<Self, IdentityError> {
        validate_did(did)?;
        Ok(NodeIdentity { key: SigningKey::from_bytes(&seed), did: did.to_string() })
    }

    /// The alias DID (`did:vm:node:east1`).
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as the registry writes it (`z6Mk...`).
    pub fn public_key_multibase(&self) -> String {
        multibase_public_key(&self.key.verifying_key())
    }

    /// The `did:key` form of the public key.
    pub fn did_key(&self) -> String {
        did_key(&self.key.verifying_key())
    }

    /// The libp2p PeerId.
    pub fn peer_id(&self) -> String {
        peer_id(&self.key.verifying_key())
    }

    /// Signs raw bytes. Callers pass domain-separated messages only.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        crate::signature::sign(&self.key, message)
    }

    /// The secret seed, for the libp2p keypair of the same node. Never log it.
    pub fn secret_seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The key file text (JSON). It holds the secret: write it with mode 0600.
    pub fn to_key_file(&self) -> String {
        let file = KeyFile {
            format: KEY_FILE_FORMAT.to_string(),
            did: self.did.clone(),
            public_key: self.public_key_multibase(),
            secret_key: hex::encode(self.key.to_bytes()),
        };
        let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Parses a key file, checking that its public key matches its secret.
    pub fn from_key_file(text: &str) -> Result<Self, IdentityError> {
        if text.len() > KEY_FILE_BYTES_MAX {
            return Err(IdentityError::BadKeyFile("larger than 4 KiB".to_string()));
        }
        let file: KeyFile = serde_json::from_str(text)
            .map_err(|e| IdentityError::BadKeyFile(format!("not the expected JSON ({e})")))?;
        if file.format != KEY_FILE_FORMAT {
            return Err(IdentityError::BadKeyFile(format!(
                "format is {:?}, expected {KEY_FILE_FORMAT:?}",
                file.format
            )));
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&file.secret_key, &mut seed)
            .map_err(|_| IdentityError::BadKeyFile("secret_key is not 64 hex digits".to_string()))?;
        let identity = NodeIdentity::from_seed(&file.did, seed)?;
        if identity.public_key_multibase() != file.public_key {
            return Err(IdentityError::BadKeyFile("public_key does not match secret_key".to_string()));
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_renderings_have_the_expected_prefixes_and_round_trip() {
        let identity = NodeIdentity::from_seed("did:vm:node:east1", [42u8; 32]).expect("identity");
        let multibase = identity.public_key_multibase();
        assert!(multibase.starts_with("z6Mk"), "{multibase}");
        assert!(identity.did_key().starts_with("did:key:z6Mk"));
        assert!(identity.peer_id().starts_with("12D3KooW"), "{}", identity.peer_id());
        assert_eq!(parse_public_key(&multibase).expect("parse"), identity.verifying_key());
        assert_eq!(parse_public_key(&identity.did_key()).expect("parse"), identity.verifying_key());
        assert!(parse_public_key("z6Mk").is_err());
        assert!(parse_public_key("6MkhaXgBZD").is_err());
        assert!(!format!("{identity:?}").contains(&hex::encode([42u8; 32])));
    }

    #[test]
    fn did_key_of_the_w3c_example_seed_is_stable() {
        // did:key spec test vector: seed of 32 zero bytes.
        let identity = NodeIdentity::from_seed("did:vm:node:zero", [0u8; 32]).expect("identity");
        assert_eq!(identity.did_key(), "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp");
    }

    #[test]
    fn peer_id_matches_the_libp2p_spec_vector() {
        // libp2p peer-ids spec test vector (Ed25519): secret seed, public key, PeerId.
        let mut seed = [0u8; 32];
        hex::decode_to_slice("7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d", &mut seed)
            .expect("hex");
        let identity = NodeIdentity::from_seed("did:vm:node:spec", seed).expect("identity");
        assert_eq!(
            hex::encode(identity.verifying_key().as_bytes()),
            "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
        );
        assert_eq!(identity.peer_id(), "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq");
    }

    #[test]
    fn dids_are_validated() {
        validate_did("did:vm:node:east1").expect("valid");
        for bad in ["vm:node", "did:", "did:VM:x", "did:vm:", "did:vm:a b", "did:vm:a+b"] {
            assert!(validate_did(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_files_round_trip_and_reject_tampering() {
        let identity = NodeIdentity::generate("did:vm:node:west1").expect("identity");
        let text = identity.to_key_file();
        let back = NodeIdentity::from_key_file(&text).expect("parse");
        assert_eq!(back.verifying_key(), identity.verifying_key());
        assert_eq!(back.did(), "did:vm:node:west1");
        let other = NodeIdentity::generate("did:vm:node:west1").expect("identity");
        let tampered = text.replace(&identity.public_key_multibase(), &other.public_key_multibase());
        assert!(NodeIdentity::from_key_file(&tampered).is_err());
        assert!(NodeIdentity::from_key_file("garbage").is_err());
    }

    #[test]
    fn signatures_round_trip_through_multibase() {
        let signature = [9u8; 64];
        let text = multibase_signature(&signature);
        assert_eq!(parse_multibase_signature(&text).expect("parse"), signature);
        assert!(parse_multibase_signature("z1").is_err());
        assert!(parse_multibase_signature("abc").is_err());
    }
}
