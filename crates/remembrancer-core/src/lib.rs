//! Remembrancer's pure core: the memory tree, identities, C2SP signed statements, federation
//! receipts, proof bundles, the registry and the peer-message wire format. No I/O: no tokio,
//! libp2p or RocksDB in this crate's dependency tree (a test in `tests/` proves it).

pub mod anchoring;
pub mod base58;
pub mod bundle;
pub mod checkpoint;
pub mod claims;
pub mod engine;
pub mod evidence;
pub mod governance;
pub mod hash;
pub mod identity;
pub mod merkle;
pub mod message;
pub mod note;
pub mod receipt;
pub mod registry;
pub mod signature;
pub mod times;
pub mod xmsg;

pub use hash::{Digest, HashAlgorithm, TaggedHash};
