//! Hash algorithms of the memory tree (RFC 9162 §2.1.1 domain-separated leaf and node hashes).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Length in bytes of every hash this crate handles (SHA-256 and BLAKE3 both give 32).
pub const HASH_BYTES: usize = 32;

/// A 32-byte hash value; which algorithm produced it is carried beside it where it matters.
pub type Digest = [u8; HASH_BYTES];

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
/// Longest leaf record hashed by the one-block fast path: 0x00, the record, 0x80 and the
/// 8-byte length must fit in 64 bytes.
const ONE_BLOCK_RECORD_BYTES_MAX: usize = 64 - 1 - 1 - 8;

type Block = [u8; 64];

fn sha256_state_bytes(state: [u32; 8]) -> Digest {
    let mut out = [0u8; HASH_BYTES];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// SHA-256 of a message whose padded blocks are given, straight through the compression
/// function: the tree's inputs have fixed shapes, so the padding is written once here instead
/// of by the streaming hasher on every call (the node hash is about a quarter faster).
#[inline]
fn sha256_blocks(blocks: &[Block]) -> Digest {
    let mut state = SHA256_IV;
    sha2::block_api::compress256(&mut state, blocks);
    sha256_state_bytes(state)
}

/// SHA-256(0x01 || left || right): 65 bytes, two blocks, written in place.
#[inline]
fn sha256_node(left: &Digest, right: &Digest) -> Digest {
    let mut blocks: [Block; 2] = [[0; 64]; 2];
    blocks[0][0] = 1;
    blocks[0][1..33].copy_from_slice(left);
    blocks[0][33..64].copy_from_slice(&right[..31]);
    blocks[1][0] = right[31];
    blocks[1][1] = 0x80;
    blocks[1][56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    sha256_blocks(&blocks)
}

/// SHA-256(0x00 || record) for records of at most [`ONE_BLOCK_RECORD_BYTES_MAX`] bytes.
#[inline]
fn sha256_short_leaf(record: &[u8]) -> Digest {
    let mut block: [Block; 1] = [[0; 64]];
    block[0][1..1 + record.len()].copy_from_slice(record);
    block[0][1 + record.len()] = 0x80;
    block[0][56..].copy_from_slice(&((record.len() as u64 + 1) * 8).to_be_bytes());
    sha256_blocks(&block)
}

/// The hash function of one namespace's tree. SHA-256 is the default (RFC 9162, C2SP);
/// BLAKE3 is a per-namespace option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgorithm {
    /// SHA-256, as RFC 9162 and every C2SP tool expect.
    #[default]
    Sha256,
    /// BLAKE3 with 32-byte output.
    Blake3,
}

/// Errors parsing a displayed hash such as `sha256:d5c6...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashParseError {
    /// The algorithm prefix is missing or unknown.
    #[error("unknown hash algorithm in {0:?}: expected a prefix of sha256: or blake3:")]
    UnknownAlgorithm(String),
    /// The hex part is not 64 hex digits.
    #[error("hash {0:?} must be 64 hex digits after the algorithm prefix")]
    BadHex(String),
}

impl HashAlgorithm {
    /// The name used in displayed hashes and files (`sha256`, `blake3`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Blake3 => "blake3",
        }
    }

    /// Hash of the empty tree: H("") (RFC 9162 §2.1.1).
    pub fn empty_root(self) -> Digest {
        match self {
            HashAlgorithm::Sha256 => sha2::Sha256::digest([]).into(),
            HashAlgorithm::Blake3 => *blake3::hash(&[]).as_bytes(),
        }
    }

    /// Leaf hash: H(0x00 || data).
    #[inline]
    pub fn leaf_hash(self, data: &[u8]) -> Digest {
        match self {
            HashAlgorithm::Sha256 if data.len() <= ONE_BLOCK_RECORD_BYTES_MAX => sha256_short_leaf(data),
            HashAlgorithm::Sha256 => {
                let mut hasher = sha2::Sha256::new();
                hasher.update([0u8]);
                hasher.update(data);
                hasher.finalize().into()
            }
            HashAlgorithm::Blake3 => {
                let mut hasher = blake3::Hasher::new();
                hasher.update(&[0u8]);
                hasher.update(data);
                *hasher.finalize().as_bytes()
            }
        }
    }

    /// Interior node hash: H(0x01 || left || right).
    #[inline]
    pub fn node_hash(self, left: &Digest, right: &Digest) -> Digest {
        match self {
            HashAlgorithm::Sha256 => sha256_node(left, right),
            HashAlgorithm::Blake3 => {
                let mut input = [0u8; 1 + 2 * HASH_BYTES];
                input[0] = 1;
                input[1..33].copy_from_slice(left);
                input[33..].copy_from_slice(right);
                *blake3::hash(&input).as_bytes()
            }
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(HashAlgorithm::Sha256),
            "blake3" => Ok(HashAlgorithm::Blake3),
            other => Err(HashParseError::UnknownAlgorithm(other.to_string())),
        }
    }
}

/// A hash together with its algorithm, displayed as the spec writes it: `sha256:d5c6...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaggedHash {
    /// Which function produced the value.
    pub algorithm: HashAlgorithm,
    /// The 32 bytes.
    pub value: Digest,
}

/// Bytes of the longest text form of a [`TaggedHash`]: a name, a colon and 64 hex digits.
pub const TAGGED_HASH_TEXT_MAX: usize = 8 + 1 + 2 * HASH_BYTES;

impl TaggedHash {
    /// Pairs a value with its algorithm.
    pub fn new(algorithm: HashAlgorithm, value: Digest) -> Self {
        TaggedHash { algorithm, value }
    }

    /// The text form (`sha256:d5c6...`, as `Display` writes it) in `buffer`, without
    /// allocating: receipts write it into every encoding.
    pub fn text_in<'a>(&self, buffer: &'a mut [u8; TAGGED_HASH_TEXT_MAX]) -> &'a str {
        let name = self.algorithm.name().as_bytes();
        buffer[..name.len()].copy_from_slice(name);
        buffer[name.len()] = b':';
        let end = name.len() + 1 + 2 * HASH_BYTES;
        // Two hex digits a byte always fit the rest of the buffer.
        let _ = hex::encode_to_slice(self.value, &mut buffer[name.len() + 1..end]);
        std::str::from_utf8(&buffer[..end]).unwrap_or_default()
    }
}

impl fmt::Display for TaggedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text_in(&mut [0; TAGGED_HASH_TEXT_MAX]))
    }
}

impl FromStr for TaggedHash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, hex_part) =
            s.split_once(':').ok_or_else(|| HashParseError::UnknownAlgorithm(s.to_string()))?;
        let algorithm =
            HashAlgorithm::from_str(name).map_err(|_| HashParseError::UnknownAlgorithm(s.to_string()))?;
        let mut value = [0u8; HASH_BYTES];
        if hex_part.len() != 2 * HASH_BYTES {
            return Err(HashParseError::BadHex(s.to_string()));
        }
        hex::decode_to_slice(hex_part, &mut value).map_err(|_| HashParseError::BadHex(s.to_string()))?;
        Ok(TaggedHash { algorithm, value })
    }
}

impl Serialize for TaggedHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TaggedHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        TaggedHash::from_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_hash_reads_as_its_name_a_colon_and_lowercase_hex_and_parses_back() {
        for algorithm in [HashAlgorithm::Sha256, HashAlgorithm::Blake3] {
            let value: Digest = std::array::from_fn(|i| (i * 37 + 5) as u8);
            let hash = TaggedHash::new(algorithm, value);
            let text = hash.to_string();
            assert_eq!(text, format!("{}:{}", algorithm.name(), hex::encode(value)));
            assert_eq!(hash.text_in(&mut [0; TAGGED_HASH_TEXT_MAX]), text);
            assert_eq!(text.parse::<TaggedHash>(), Ok(hash));
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(HashAlgorithm::Sha256.empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_block_level_fast_paths_equal_the_streaming_hasher() {
        let streaming = |parts: &[&[u8]]| -> Digest {
            let mut hasher = sha2::Sha256::new();
            for part in parts {
                hasher.update(part);
            }
            hasher.finalize().into()
        };
        let data: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37)).collect();
        for length in 0..data.len() {
            let record = &data[..length];
            assert_eq!(
                HashAlgorithm::Sha256.leaf_hash(record),
                streaming(&[&[0], record]),
                "length {length}"
            );
        }
        let left: Digest = std::array::from_fn(|i| i as u8);
        let right: Digest = std::array::from_fn(|i| 255 - i as u8);
        assert_eq!(HashAlgorithm::Sha256.node_hash(&left, &right), streaming(&[&[1], &left, &right]));
    }

    #[test]
    fn tagged_hash_round_trips_and_rejects_garbage() {
        let hash = TaggedHash::new(HashAlgorithm::Blake3, [7u8; 32]);
        let text = hash.to_string();
        assert!(text.starts_with("blake3:0707"));
        assert_eq!(text.parse::<TaggedHash>(), Ok(hash));
        assert!("md5:00".parse::<TaggedHash>().is_err());
        assert!("sha256:zz".parse::<TaggedHash>().is_err());
        assert!("sha256".parse::<TaggedHash>().is_err());
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        for algorithm in [HashAlgorithm::Sha256, HashAlgorithm::Blake3] {
            let left = [1u8; 32];
            let right = [2u8; 32];
            let mut concatenated = left.to_vec();
            concatenated.extend_from_slice(&right);
            assert_ne!(algorithm.leaf_hash(&concatenated), algorithm.node_hash(&left, &right));
        }
    }
}
