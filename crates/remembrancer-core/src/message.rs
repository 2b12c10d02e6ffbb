//! The spec's `PeerMessage` envelope (`anchor | countersign | receipt | heartbeat`, plus our
//! `request` for catch-up and `evidence` for equivocation) as CBOR, signed over canonical
//! bytes with a domain-separation tag; decoding is bounded.
//!
//! Wire form (see `proto/peer-message.cddl`): a map `{type, sender, content, signature,
//! timestamp}` where `content` is a byte string holding the CBOR of the typed content. The
//! signature covers `PEER_MESSAGE_DOMAIN || CBOR([type, sender, content, timestamp])`, so the
//! exact content bytes are signed and re-encoding never changes what is verified.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use sha2::{Digest as _, Sha256};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::identity::NodeIdentity;
use crate::receipt::FederationReceipt;

/// Largest encoded message, in bytes (checked before any decoding).
pub const PEER_MESSAGE_BYTES_MAX: usize = 256 * 1024;
/// Most peer messages one gossip frame carries.
pub const FRAME_MESSAGES_MAX: usize = 256;
/// Deepest CBOR nesting accepted.
pub const CBOR_DEPTH_MAX: usize = 16;
/// Most hashes in a carried consistency proof (two per level of a 2^64 tree).
pub const CONSISTENCY_PROOF_HASHES_MAX: usize = 128;
/// Most entries one epoch anchor may cover.
pub const EPOCH_ENTRIES_MAX: usize = 4096;
/// Most namespaces one heartbeat may report.
pub const HEARTBEAT_NAMESPACES_MAX: usize = 1024;
/// Domain-separation tag of peer-message signatures. The NUL byte means no C2SP note text
/// (which is NUL-free) can ever collide with it.
pub const PEER_MESSAGE_DOMAIN: &[u8] = b"remembrancer/peer-message/v1\0";

/// Why a message was refused. Every variant is counted by the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Larger than [`PEER_MESSAGE_BYTES_MAX`].
    #[error("message is {0} bytes, more than the 262144 allowed")]
    TooLarge(usize),
    /// Not CBOR, too deep, or not the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The signature is not 64 bytes or does not verify.
    #[error("message signature from {0} does not verify")]
    SignatureInvalid(String),
    /// A content field breaks a bound.
    #[error("message content exceeds a bound: {0}")]
    OverBound(&'static str),
}

/// Message kinds (the spec's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// A signed checkpoint from its namespace owner.
    Anchor,
    /// A witness cosignature.
    Countersign,
    /// A final federation receipt.
    Receipt,
    /// Liveness and the sender's finalized sizes.
    Heartbeat,
    /// A catch-up request to one peer (a consistency proof or a final receipt).
    Request,
    /// Two conflicting checkpoints signed by one namespace owner.
    Evidence,
    /// A registry update proposal with the member signatures gathered so far.
    Registry,
    /// One node's anchor of an epoch's final receipts (collaborative and hybrid modes).
    EpochAnchor,
}

impl MessageType {
    /// Every message type.
    pub const ALL: [MessageType; 8] = [
        MessageType::Anchor,
        MessageType::Countersign,
        MessageType::Receipt,
        MessageType::Heartbeat,
        MessageType::Request,
        MessageType::Evidence,
        MessageType::Registry,
        MessageType::EpochAnchor,
    ];
}

/// An anchor: the checkpoint note signed by its owner, with a consistency proof from the
/// last finalized size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorContent {
    /// The checkpoint as a C2SP signed note carrying the anchor's signature.
    pub checkpoint: String,
    /// Size the consistency proof starts from (the last finalized size; 0 for the first).
    pub consistency_from: u64,
    /// The consistency proof hashes, each a CBOR byte string of 32 bytes.
    #[serde(with = "digest_list")]
    pub consistency_proof: Vec<crate::hash::Digest>,
}

/// A list of 32-byte hashes as CBOR byte strings (a consistency proof), held without a buffer
/// per hash: a witness decodes a proof of about log2(size) hashes with every anchor.
mod digest_list {
    use serde::de::Error as _;
    use serde::{Deserialize as _, Deserializer, Serializer};

    use crate::hash::Digest;

    pub fn serialize<S: Serializer>(hashes: &[Digest], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(hashes.iter().map(|hash| serde_bytes::Bytes::new(hash)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Digest>, D::Error> {
        let hashes = Vec::<serde_bytes::ByteBuf>::deserialize(deserializer)?;
        hashes
            .iter()
            .map(|hash| Digest::try_from(hash.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|_| D::Error::custom("a consistency proof hash is not 32 bytes"))
    }
}

/// A countersignature: the witness's `cosignature/v1` over a checkpoint body, sent with the
/// owner's signed note so that every member receiving it holds the owner's signature on the
/// root (split views become evidence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountersignContent {
    /// The owner's signed checkpoint note whose body was cosigned.
    pub checkpoint: String,
    /// The cosignature time.
    pub timestamp: u64,
    /// The 64-byte Ed25519 signature.
    pub signature: serde_bytes::ByteBuf,
}

/// A final receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptContent {
    /// The receipt, shared: a node that stores it, persists it and passes it on keeps one copy.
    pub receipt: Arc<FederationReceipt>,
}

/// A heartbeat: the sender's registry version and latest finalized size per namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatContent {
    /// The sender's registry version.
    pub registry_version: u64,
    /// Namespace to finalized size.
    pub finalized: BTreeMap<String, u64>,
}

/// What a catch-up request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// The anchor of `namespace` at `size`, with a consistency proof from `from_size` (the
    /// size the requester last countersigned): the C2SP witness protocol's 409 answer.
    Consistency,
    /// The latest final receipt of `namespace` (answered with a `receipt` message).
    Receipt,
    /// The applied registry updates from version `from_size` on (answered with `registry`
    /// messages).
    Registry,
}

/// A catch-up request, sent to one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestContent {
    /// What is asked.
    pub kind: RequestKind,
    /// Namespace.
    pub namespace: String,
    /// For `consistency`: the size the proof must start from.
    pub from_size: u64,
    /// For `consistency`: the checkpoint size asked about.
    pub size: u64,
}

/// Equivocation evidence: two checkpoints of one namespace and size with different roots,
/// each a C2SP note carrying its owner's anchor signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceContent {
    /// The first signed checkpoint note.
    pub first: String,
    /// The second signed checkpoint note.
    pub second: String,
}

/// A registry update proposal and the signatures gathered so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryContent {
    /// The proposal.
    pub proposal: crate::governance::RegistryProposal,
    /// Member signatures.
    pub signatures: Vec<crate::governance::ProposalSignature>,
}

/// An epoch anchor: the root over the final receipts an anchoring node knew at the end of
/// `epoch`, and where it anchored that root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochAnchorContent {
    /// The epoch.
    pub epoch: u64,
    /// The final receipts covered.
    pub entries: Vec<crate::anchoring::EpochEntry>,
    /// [`crate::anchoring::epoch_root`] of the entries.
    pub root: serde_bytes::ByteBuf,
    /// Where the root was anchored.
    pub reference: crate::anchoring::AnchorReference,
}

/// Typed message content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// See [`AnchorContent`].
    Anchor(AnchorContent),
    /// See [`CountersignContent`].
    Countersign(CountersignContent),
    /// See [`ReceiptContent`].
    Receipt(Box<ReceiptContent>),
    /// See [`HeartbeatContent`].
    Heartbeat(HeartbeatContent),
    /// See [`RequestContent`].
    Request(RequestContent),
    /// See [`EvidenceContent`].
    Evidence(EvidenceContent),
    /// See [`RegistryContent`].
    Registry(Box<RegistryContent>),
    /// See [`EpochAnchorContent`].
    EpochAnchor(EpochAnchorContent),
}

impl Content {
    /// The message type of this content.
    pub fn message_type(&self) -> MessageType {
        match self {
            Content::Anchor(_) => MessageType::Anchor,
            Content::Countersign(_) => MessageType::Countersign,
            Content::Receipt(_) => MessageType::Receipt,
            Content::Heartbeat(_) => MessageType::Heartbeat,
            Content::Request(_) => MessageType::Request,
            Content::Evidence(_) => MessageType::Evidence,
            Content::Registry(_) => MessageType::Registry,
            Content::EpochAnchor(_) => MessageType::EpochAnchor,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let result = match self {
            Content::Anchor(c) => ciborium::into_writer(c, &mut out),
            Content::Countersign(c) => ciborium::into_writer(c, &mut out),
            Content::Receipt(c) => {
                wire::write_receipt_content(&mut out, c);
                Ok(())
            }
            Content::Heartbeat(c) => ciborium::into_writer(c, &mut out),
            Content::Request(c) => ciborium::into_writer(c, &mut out),
            Content::Evidence(c) => ciborium::into_writer(c, &mut out),
            Content::Registry(c) => ciborium::into_writer(c, &mut out),
            Content::EpochAnchor(c) => ciborium::into_writer(c, &mut out),
        };
        debug_assert!(result.is_ok(), "writing CBOR to a Vec cannot fail");
        out
    }

    fn decode(message_type: MessageType, bytes: &[u8]) -> Result<Self, MessageError> {
        let content = match message_type {
            MessageType::Anchor => {
                Content::Anchor(wire::anchor(bytes).map_or_else(|| decode_bounded(bytes), Ok)?)
            }
            MessageType::Countersign => {
                Content::Countersign(wire::countersign(bytes).map_or_else(|| decode_bounded(bytes), Ok)?)
            }
            MessageType::Receipt => {
                Content::Receipt(Box::new(wire::receipt(bytes).map_or_else(|| decode_bounded(bytes), Ok)?))
            }
            MessageType::Heartbeat => Content::Heartbeat(decode_bounded(bytes)?),
            MessageType::Request => Content::Request(decode_bounded(bytes)?),
            MessageType::Evidence => Content::Evidence(decode_bounded(bytes)?),
            MessageType::Registry => Content::Registry(Box::new(decode_bounded(bytes)?)),
            MessageType::EpochAnchor => Content::EpochAnchor(decode_bounded(bytes)?),
        };
        content.check_bounds()?;
        Ok(content)
    }

    fn check_bounds(&self) -> Result<(), MessageError> {
        match self {
            Content::Anchor(c) => {
                if c.consistency_proof.len() > CONSISTENCY_PROOF_HASHES_MAX {
                    return Err(MessageError::OverBound("consistency proof longer than 128 hashes"));
                }
            }
            Content::Countersign(c) => {
                if c.signature.len() != 64 {
                    return Err(MessageError::OverBound("cosignature is not 64 bytes"));
                }
            }
            Content::Receipt(c) => {
                if c.receipt.signatures.len() > crate::receipt::RECEIPT_SIGNATURES_MAX {
                    return Err(MessageError::OverBound("receipt carries more than 1000 signatures"));
                }
            }
            Content::Heartbeat(c) => {
                if c.finalized.len() > HEARTBEAT_NAMESPACES_MAX {
                    return Err(MessageError::OverBound("heartbeat lists more than 1024 namespaces"));
                }
            }
            Content::Request(c) => {
                if c.namespace.len() > crate::checkpoint::NAMESPACE_BYTES_MAX {
                    return Err(MessageError::OverBound("namespace longer than 128 bytes"));
                }
            }
            Content::Evidence(c) => {
                if c.first.len() > crate::note::NOTE_BYTES_MAX || c.second.len() > crate::note::NOTE_BYTES_MAX
                {
                    return Err(MessageError::OverBound("evidence note larger than 64 KiB"));
                }
            }
            Content::Registry(c) => {
                if c.signatures.len() > crate::registry::REGISTRY_PEERS_MAX
                    || c.proposal.update.registry.peers.len() > crate::registry::REGISTRY_PEERS_MAX
                {
                    return Err(MessageError::OverBound(
                        "registry update lists more than 1000 peers or signatures",
                    ));
                }
            }
            Content::EpochAnchor(c) => {
                if c.entries.len() > EPOCH_ENTRIES_MAX
                    || c.root.len() != 32
                    || c.entries.iter().any(|e| e.root.len() != 32)
                {
                    return Err(MessageError::OverBound(
                        "epoch anchor over 4096 entries or with a hash not 32 bytes",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A CBOR head (of an array or a byte string) is at most this many bytes.
const HEAD: usize = 9;

/// Packs the encoded peer messages one node sends together into gossip frames of at most
/// [`PEER_MESSAGE_BYTES_MAX`] bytes and [`FRAME_MESSAGES_MAX`] messages. A frame is one
/// message's encoding as it is, or a CBOR array of several encodings (byte strings); each
/// message keeps its own signature. One gossip message instead of several saves what gossip
/// costs per message (a frame to every peer, queue timers, duplicate tracking).
pub fn encode_frames(messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut size = HEAD;
    for message in messages {
        let cost = message.len() + HEAD;
        if !current.is_empty()
            && (size + cost > PEER_MESSAGE_BYTES_MAX || current.len() == FRAME_MESSAGES_MAX)
        {
            frames.push(frame_of(std::mem::take(&mut current)));
            size = HEAD;
        }
        size += cost;
        current.push(message);
    }
    if !current.is_empty() {
        frames.push(frame_of(current));
    }
    frames
}

/// One message as it is, several as a CBOR array of byte strings: written in one buffer of
/// the right size, byte for byte what ciborium writes for a `Vec<ByteBuf>` (shortest heads).
fn frame_of(mut messages: Vec<Vec<u8>>) -> Vec<u8> {
    if messages.len() == 1 {
        return messages.pop().unwrap_or_default();
    }
    let mut out = Vec::with_capacity(HEAD + messages.iter().map(|m| HEAD + m.len()).sum::<usize>());
    wire::write_frame_head(&mut out, messages.len());
    for message in &messages {
        wire::write_bytes(&mut out, message);
    }
    out
}

/// The peer messages of a gossip frame ([`encode_frames`]), each decoded on its own: a bad
/// message among good ones is an error in its place. A frame that does not parse, or that
/// carries fewer than 2 or more than [`FRAME_MESSAGES_MAX`] messages as an array, is one error.
pub fn decode_frame(bytes: &[u8]) -> Vec<Result<PeerMessage, MessageError>> {
    if bytes.len() > PEER_MESSAGE_BYTES_MAX {
        return vec![Err(MessageError::TooLarge(bytes.len()))];
    }
    // A peer message is a CBOR map; an array (major type 4) is a frame of several.
    if !matches!(bytes.first(), Some(0x80..=0x9f)) {
        return vec![PeerMessage::decode(bytes)];
    }
    if let Some(parts) = wire::frame_parts(bytes) {
        if (2..=FRAME_MESSAGES_MAX).contains(&parts.len()) {
            return parts.into_iter().map(PeerMessage::decode).collect();
        }
    }
    match decode_bounded::<Vec<serde_bytes::ByteBuf>>(bytes) {
        Ok(parts) if (2..=FRAME_MESSAGES_MAX).contains(&parts.len()) => {
            parts.iter().map(|part| PeerMessage::decode(part)).collect()
        }
        Ok(_) => vec![Err(MessageError::OverBound("a frame of messages carries 2 to 256 of them"))],
        Err(error) => vec![Err(error)],
    }
}

fn decode_bounded<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MessageError> {
    ciborium::de::from_reader_with_recursion_limit(bytes, CBOR_DEPTH_MAX)
        .map_err(|e| MessageError::Malformed(e.to_string()))
}

/// Reads in place the definite-length CBOR that this module's encoders write: the envelope
/// and the frame (borrowing their parts) and the three contents every receipt needs (anchor,
/// countersign, receipt), which ciborium decoded through serde at about 5% of a node's CPU
/// under sustained load. Each reader accepts only what ciborium decodes to the same value,
/// and answers None for anything else (indefinite lengths, tags, unknown or repeated fields,
/// other types, trailing bytes), which then goes to ciborium: what is refused, and why,
/// stays ciborium's word. Writes the envelope, byte for byte as ciborium would.
mod wire {
    use super::{
        AnchorContent, CountersignContent, MessageType, ReceiptContent, CONSISTENCY_PROOF_HASHES_MAX,
    };
    use crate::hash::TaggedHash;
    use crate::receipt::{role_name, AnchorJson, FederationReceipt, Role, SignatureJson};

    /// The envelope's fields, borrowed from the wire bytes.
    pub(super) struct Envelope<'a> {
        pub(super) message_type: MessageType,
        pub(super) sender: &'a str,
        pub(super) content: &'a [u8],
        pub(super) signature: &'a [u8],
        pub(super) timestamp: u64,
    }

    /// A cursor over CBOR data items with definite lengths.
    pub(super) struct Reader<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(bytes: &'a [u8]) -> Self {
            Reader { bytes, at: 0 }
        }

        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let end = self.at.checked_add(n)?;
            let taken = self.bytes.get(self.at..end)?;
            self.at = end;
            Some(taken)
        }

        /// A data item's head: major type and argument (no indefinite lengths).
        fn head(&mut self) -> Option<(u8, u64)> {
            let first = *self.take(1)?.first()?;
            let argument = match first & 0x1f {
                info @ 0..=23 => u64::from(info),
                24 => u64::from(self.take(1)?[0]),
                25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
                26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
                27 => u64::from_be_bytes(self.take(8)?.try_into().ok()?),
                _ => return None,
            };
            Some((first >> 5, argument))
        }

        fn with_major(&mut self, major: u8) -> Option<u64> {
            let (found, argument) = self.head()?;
            (found == major).then_some(argument)
        }

        fn uint(&mut self) -> Option<u64> {
            self.with_major(0)
        }

        fn bytes(&mut self) -> Option<&'a [u8]> {
            let length = usize::try_from(self.with_major(2)?).ok()?;
            self.take(length)
        }

        fn text(&mut self) -> Option<&'a str> {
            let length = usize::try_from(self.with_major(3)?).ok()?;
            std::str::from_utf8(self.take(length)?).ok()
        }

        fn array(&mut self) -> Option<u64> {
            self.with_major(4)
        }

        fn map(&mut self) -> Option<u64> {
            self.with_major(5)
        }

        fn finished(&self) -> bool {
            self.at == self.bytes.len()
        }

        /// Takes one byte if it is `byte`.
        fn simple(&mut self, byte: u8) -> bool {
            let found = self.bytes.get(self.at) == Some(&byte);
            if found {
                self.at += 1;
            }
            found
        }

        /// CBOR null (how ciborium writes `None`), or what `read` takes.
        fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
            if self.simple(0xf6) {
                return Some(None);
            }
            read(self).map(Some)
        }

        fn bool(&mut self) -> Option<bool> {
            if self.simple(0xf5) {
                Some(true)
            } else if self.simple(0xf4) {
                Some(false)
            } else {
                None
            }
        }

        /// The count of an array, at most one element per byte left.
        fn count(&mut self) -> Option<usize> {
            let count = usize::try_from(self.array()?).ok()?;
            (count <= self.bytes.len().saturating_sub(self.at)).then_some(count)
        }
    }

    /// Sets a field once; a second value for it is for ciborium to refuse.
    fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        *slot = Some(value);
        Some(())
    }

    /// A map of exactly `n` entries with text keys, each value read by `field` under its key
    /// (None for a key it does not know or a value it does not take).
    fn fields<'a>(
        reader: &mut Reader<'a>,
        n: u64,
        mut field: impl FnMut(&'a str, &mut Reader<'a>) -> Option<()>,
    ) -> Option<()> {
        if reader.map()? != n {
            return None;
        }
        for _ in 0..n {
            let key = reader.text()?;
            field(key, reader)?;
        }
        Some(())
    }

    /// `bytes` whole as one map of `n` entries read by `field` (see [`fields`]), nothing after it.
    fn whole_map<'a>(
        bytes: &'a [u8],
        n: u64,
        field: impl FnMut(&'a str, &mut Reader<'a>) -> Option<()>,
    ) -> Option<()> {
        let mut reader = Reader::new(bytes);
        fields(&mut reader, n, field)?;
        reader.finished().then_some(())
    }

    /// Where the writers put CBOR: a buffer, or a hasher that takes it as it comes (a
    /// receipt's encoding is hashed to key its verdict, and needs no buffer for that).
    pub(super) trait Sink {
        fn push(&mut self, byte: u8);
        fn extend_from_slice(&mut self, bytes: &[u8]);
    }

    impl Sink for Vec<u8> {
        fn push(&mut self, byte: u8) {
            Vec::push(self, byte);
        }

        fn extend_from_slice(&mut self, bytes: &[u8]) {
            Vec::extend_from_slice(self, bytes);
        }
    }

    impl Sink for sha2::Sha256 {
        fn push(&mut self, byte: u8) {
            sha2::Digest::update(self, [byte]);
        }

        fn extend_from_slice(&mut self, bytes: &[u8]) {
            sha2::Digest::update(self, bytes);
        }
    }

    /// Appends a data item's head in its shortest form, as ciborium writes it.
    fn write_head(out: &mut impl Sink, major: u8, argument: u64) {
        let major = major << 5;
        match argument {
            0..=23 => out.push(major | argument as u8),
            24..=0xff => out.extend_from_slice(&[major | 24, argument as u8]),
            0x100..=0xffff => {
                out.push(major | 25);
                out.extend_from_slice(&(argument as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(major | 26);
                out.extend_from_slice(&(argument as u32).to_be_bytes());
            }
            _ => {
                out.push(major | 27);
                out.extend_from_slice(&argument.to_be_bytes());
            }
        }
    }

    fn write_text(out: &mut impl Sink, text: &str) {
        write_head(out, 3, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }

    /// The head of a frame's array of `count` messages.
    pub(super) fn write_frame_head(out: &mut Vec<u8>, count: usize) {
        write_head(out, 4, count as u64);
    }

    pub(super) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        write_head(out, 2, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn write_optional<O: Sink, T>(out: &mut O, value: Option<T>, write: impl FnOnce(&mut O, T)) {
        match value {
            Some(value) => write(out, value),
            None => out.push(0xf6),
        }
    }

    /// A receipt content's encoding, byte for byte what ciborium writes for it.
    pub(super) fn write_receipt_content(out: &mut Vec<u8>, content: &ReceiptContent) {
        out.reserve(16 + receipt_size_hint(&content.receipt));
        write_head(out, 5, 1);
        write_text(out, "receipt");
        write_federation_receipt(out, &content.receipt);
    }

    /// A federation receipt's encoding, byte for byte what ciborium writes for it (serde's
    /// structs as maps of their fields in declaration order, `None` as null), without serde's
    /// machinery: every node writes each receipt it stores, and hashes it once.
    pub(super) fn write_federation_receipt<O: Sink>(out: &mut O, receipt: &FederationReceipt) {
        let text_field = |out: &mut O, key: &str, value: &str| {
            write_text(out, key);
            write_text(out, value);
        };
        let uint_field = |out: &mut O, key: &str, value: u64| {
            write_text(out, key);
            write_head(out, 0, value);
        };
        write_head(out, 5, 9);
        text_field(out, "federation_id", &receipt.federation_id);
        text_field(out, "receipt_type", &receipt.receipt_type);
        text_field(out, "namespace", &receipt.namespace);
        uint_field(out, "tree_size", receipt.tree_size);
        uint_field(out, "registry_version", receipt.registry_version);
        write_text(out, "anchor");
        let anchor = &receipt.anchor;
        write_head(out, 5, 5);
        text_field(out, "batch_root", anchor.batch_root.text_in(&mut [0; crate::hash::TAGGED_HASH_TEXT_MAX]));
        text_field(out, "target", &anchor.target);
        write_text(out, "tx_hash");
        write_optional(out, anchor.tx_hash.as_deref(), |out, tx| write_text(out, tx));
        write_text(out, "block");
        write_optional(out, anchor.block, |out, block| write_head(out, 0, block));
        uint_field(out, "timestamp", anchor.timestamp);
        write_text(out, "signatures");
        write_head(out, 4, receipt.signatures.len() as u64);
        for entry in &receipt.signatures {
            write_head(out, 5, 4);
            text_field(out, "node", &entry.node);
            text_field(out, "sig", &entry.sig);
            text_field(out, "role", role_name(entry.role));
            uint_field(out, "timestamp", entry.timestamp);
        }
        write_text(out, "quorum_met");
        out.push(if receipt.quorum_met { 0xf5 } else { 0xf4 });
        write_text(out, "finalized_at");
        write_optional(out, receipt.finalized_at, |out, at| write_head(out, 0, at));
    }

    /// About the bytes a receipt's encoding takes: its fixed fields about 320, each signature
    /// entry about 150.
    pub(super) fn receipt_size_hint(receipt: &FederationReceipt) -> usize {
        336 + 160 * receipt.signatures.len()
    }

    /// A federation receipt from its whole encoding.
    pub(super) fn whole_receipt(bytes: &[u8]) -> Option<FederationReceipt> {
        let mut reader = Reader::new(bytes);
        let receipt = federation_receipt(&mut reader)?;
        reader.finished().then_some(receipt)
    }

    /// The envelope's encoding, byte for byte what ciborium writes for [`super::Envelope`]
    /// (its fields in declaration order), without copying the content into a buffer first.
    pub(super) fn write_envelope(
        message_type: MessageType,
        sender: &str,
        content: &[u8],
        signature: &[u8],
        timestamp: u64,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + sender.len() + content.len() + signature.len());
        write_head(&mut out, 5, 5);
        write_text(&mut out, "type");
        write_text(&mut out, message_type_name(message_type));
        write_text(&mut out, "sender");
        write_text(&mut out, sender);
        write_text(&mut out, "content");
        write_bytes(&mut out, content);
        write_text(&mut out, "signature");
        write_bytes(&mut out, signature);
        write_text(&mut out, "timestamp");
        write_head(&mut out, 0, timestamp);
        out
    }

    /// A message type's wire name (serde's snake_case of the variant).
    fn message_type_name(message_type: MessageType) -> &'static str {
        match message_type {
            MessageType::Anchor => "anchor",
            MessageType::Countersign => "countersign",
            MessageType::Receipt => "receipt",
            MessageType::Heartbeat => "heartbeat",
            MessageType::Request => "request",
            MessageType::Evidence => "evidence",
            MessageType::Registry => "registry",
            MessageType::EpochAnchor => "epoch_anchor",
        }
    }

    /// The message type by its wire name (serde's snake_case of the variant).
    pub(super) fn message_type(name: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|kind| message_type_name(*kind) == name)
    }

    pub(super) fn envelope(bytes: &[u8]) -> Option<Envelope<'_>> {
        let (mut kind, mut sender, mut content, mut signature, mut timestamp) =
            (None, None, None, None, None);
        whole_map(bytes, 5, |key, reader| match key {
            "type" => once(&mut kind, message_type(reader.text()?)?),
            "sender" => once(&mut sender, reader.text()?),
            "content" => once(&mut content, reader.bytes()?),
            "signature" => once(&mut signature, reader.bytes()?),
            "timestamp" => once(&mut timestamp, reader.uint()?),
            _ => None,
        })?;
        Some(Envelope {
            message_type: kind?,
            sender: sender?,
            content: content?,
            signature: signature?,
            timestamp: timestamp?,
        })
    }

    /// The encoded messages of a frame of several (an array of byte strings).
    pub(super) fn frame_parts(bytes: &[u8]) -> Option<Vec<&[u8]>> {
        let mut reader = Reader::new(bytes);
        let count = reader.count()?;
        let parts = (0..count).map(|_| reader.bytes()).collect::<Option<Vec<_>>>()?;
        reader.finished().then_some(parts)
    }

    pub(super) fn anchor(bytes: &[u8]) -> Option<AnchorContent> {
        let (mut checkpoint, mut from, mut proof) = (None, None, None);
        whole_map(bytes, 3, |key, reader| match key {
            "checkpoint" => once(&mut checkpoint, reader.text()?),
            "consistency_from" => once(&mut from, reader.uint()?),
            "consistency_proof" => {
                let count = reader.count()?;
                // Longer proofs are refused after decoding; ciborium says so.
                if count > CONSISTENCY_PROOF_HASHES_MAX {
                    return None;
                }
                // A hash of another length is refused by ciborium's decoding too.
                let hashes = (0..count)
                    .map(|_| reader.bytes().and_then(|h| crate::hash::Digest::try_from(h).ok()))
                    .collect::<Option<Vec<_>>>()?;
                once(&mut proof, hashes)
            }
            _ => None,
        })?;
        Some(AnchorContent {
            checkpoint: checkpoint?.to_string(),
            consistency_from: from?,
            consistency_proof: proof?,
        })
    }

    pub(super) fn countersign(bytes: &[u8]) -> Option<CountersignContent> {
        let (mut checkpoint, mut timestamp, mut signature) = (None, None, None);
        whole_map(bytes, 3, |key, reader| match key {
            "checkpoint" => once(&mut checkpoint, reader.text()?),
            "timestamp" => once(&mut timestamp, reader.uint()?),
            "signature" => once(&mut signature, reader.bytes()?),
            _ => None,
        })?;
        Some(CountersignContent {
            checkpoint: checkpoint?.to_string(),
            timestamp: timestamp?,
            signature: serde_bytes::ByteBuf::from(signature?.to_vec()),
        })
    }

    pub(super) fn receipt(bytes: &[u8]) -> Option<ReceiptContent> {
        let mut receipt = None;
        whole_map(bytes, 1, |key, reader| match key {
            "receipt" => once(&mut receipt, federation_receipt(reader)?),
            _ => None,
        })?;
        Some(ReceiptContent { receipt: receipt?.into() })
    }

    fn federation_receipt(reader: &mut Reader<'_>) -> Option<FederationReceipt> {
        let (mut federation_id, mut receipt_type, mut namespace, mut tree_size, mut registry_version) =
            (None, None, None, None, None);
        let (mut anchor, mut signatures, mut quorum_met, mut finalized_at) = (None, None, None, None);
        fields(reader, 9, |key, reader| match key {
            "federation_id" => once(&mut federation_id, reader.text()?),
            "receipt_type" => once(&mut receipt_type, reader.text()?),
            "namespace" => once(&mut namespace, reader.text()?),
            "tree_size" => once(&mut tree_size, reader.uint()?),
            "registry_version" => once(&mut registry_version, reader.uint()?),
            "anchor" => once(&mut anchor, anchor_json(reader)?),
            "signatures" => {
                let count = reader.count()?;
                let entries = (0..count).map(|_| signature_json(reader)).collect::<Option<Vec<_>>>()?;
                once(&mut signatures, entries)
            }
            "quorum_met" => once(&mut quorum_met, reader.bool()?),
            "finalized_at" => once(&mut finalized_at, reader.optional(Reader::uint)?),
            _ => None,
        })?;
        Some(FederationReceipt {
            federation_id: federation_id?.to_string(),
            receipt_type: receipt_type?.to_string(),
            namespace: namespace?.to_string(),
            tree_size: tree_size?,
            registry_version: registry_version?,
            anchor: anchor?,
            signatures: signatures?,
            quorum_met: quorum_met?,
            finalized_at: finalized_at?,
        })
    }

    fn anchor_json(reader: &mut Reader<'_>) -> Option<AnchorJson> {
        let (mut batch_root, mut target, mut tx_hash, mut block, mut timestamp) =
            (None, None, None, None, None);
        fields(reader, 5, |key, reader| match key {
            "batch_root" => once(&mut batch_root, reader.text()?.parse::<TaggedHash>().ok()?),
            "target" => once(&mut target, reader.text()?),
            "tx_hash" => once(&mut tx_hash, reader.optional(|r| r.text().map(str::to_string))?),
            "block" => once(&mut block, reader.optional(Reader::uint)?),
            "timestamp" => once(&mut timestamp, reader.uint()?),
            _ => None,
        })?;
        Some(AnchorJson {
            batch_root: batch_root?,
            target: target?.to_string(),
            tx_hash: tx_hash?,
            block: block?,
            timestamp: timestamp?,
        })
    }

    pub(super) fn signature_json(reader: &mut Reader<'_>) -> Option<SignatureJson> {
        let (mut node, mut sig, mut role, mut timestamp) = (None, None, None, None);
        fields(reader, 4, |key, reader| match key {
            "node" => once(&mut node, reader.text()?),
            "sig" => once(&mut sig, reader.text()?),
            "role" => {
                let name = reader.text()?;
                once(&mut role, [Role::Anchor, Role::Witness].into_iter().find(|r| role_name(*r) == name)?)
            }
            "timestamp" => once(&mut timestamp, reader.uint()?),
            _ => None,
        })?;
        Some(SignatureJson {
            node: node?.to_string(),
            sig: sig?.to_string(),
            role: role?,
            timestamp: timestamp?,
        })
    }
}

/// A federation receipt's CBOR encoding: what ciborium writes for it, written directly (it is
/// the receipt's form in a `receipt` message, in a node's store and in its verdict memo).
pub fn receipt_cbor(receipt: &FederationReceipt) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire::receipt_size_hint(receipt));
    wire::write_federation_receipt(&mut out, receipt);
    out
}

/// Feeds the bytes of [`receipt_cbor`] to `hasher` as they are written, without a buffer.
pub(crate) fn hash_receipt_cbor(hasher: &mut Sha256, receipt: &FederationReceipt) {
    wire::write_federation_receipt(hasher, receipt);
}

/// A federation receipt from its CBOR encoding ([`receipt_cbor`]); none unless the bytes are
/// exactly one receipt with every field once.
pub fn receipt_from_cbor(bytes: &[u8]) -> Option<FederationReceipt> {
    wire::whole_receipt(bytes)
}

/// The envelope as it travels.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[serde(rename = "type")]
    message_type: MessageType,
    sender: String,
    content: serde_bytes::ByteBuf,
    signature: serde_bytes::ByteBuf,
    timestamp: u64,
}

/// A signed peer message.
#[derive(Debug, Clone)]
pub struct PeerMessage {
    /// Sender DID.
    pub sender: String,
    /// Typed content.
    pub content: Content,
    /// Sending time (Unix milliseconds).
    pub timestamp: u64,
    /// The exact content bytes that were signed, shared by clones.
    content_bytes: Arc<[u8]>,
    /// SHA-256 of `content_bytes`, computed once when a verification memo needs it and
    /// shared by clones (the simulator delivers clones of one message to many nodes).
    content_digest: Arc<OnceLock<[u8; 32]>>,
    /// Ed25519 signature over the signing bytes; none while the message is unsealed
    /// ([`PeerMessage::unsealed`]).
    signature: Option<[u8; 64]>,
}

impl PartialEq for PeerMessage {
    fn eq(&self, other: &Self) -> bool {
        self.sender == other.sender
            && self.content == other.content
            && self.timestamp == other.timestamp
            && self.content_bytes == other.content_bytes
            && self.signature == other.signature
    }
}

impl Eq for PeerMessage {}

fn signing_bytes(message_type: MessageType, sender: &str, content: &[u8], timestamp: u64) -> Vec<u8> {
    let mut out = PEER_MESSAGE_DOMAIN.to_vec();
    let tuple = (message_type, sender, serde_bytes::Bytes::new(content), timestamp);
    let result = ciborium::into_writer(&tuple, &mut out);
    debug_assert!(result.is_ok(), "writing CBOR to a Vec cannot fail");
    out
}

impl PeerMessage {
    /// Signs content as `identity` at `timestamp` (Unix milliseconds).
    pub fn sign(identity: &NodeIdentity, content: Content, timestamp: u64) -> Self {
        let mut message = PeerMessage::unsealed(identity.did(), content, timestamp);
        message.seal(identity);
        message
    }

    /// Content from `sender` at `timestamp`, not signed yet. Such a message may travel only on
    /// its sender's own connection to a member (a message stream), where the noise handshake
    /// has proven the sender's key and the receiver skips the message signature
    /// (`Input::FromSender`); anything else refuses it. Before it goes anywhere else (gossip,
    /// a relay), the host seals it ([`PeerMessage::seal`]). The statements it carries (the
    /// owner's signed note, a cosignature, a receipt's cosignatures) are signed in any case:
    /// the message signature only says who sent the message.
    pub fn unsealed(sender: &str, content: Content, timestamp: u64) -> Self {
        PeerMessage {
            sender: sender.to_string(),
            content_bytes: content.encode().into(),
            content,
            timestamp,
            content_digest: Arc::default(),
            signature: None,
        }
    }

    /// Signs an unsealed message as `identity`, if it is its sender; a sealed one, or one from
    /// another sender, stays as it is.
    pub fn seal(&mut self, identity: &NodeIdentity) {
        if self.signature.is_none() && identity.did() == self.sender {
            self.signature = Some(identity.sign(&self.signing_bytes()));
        }
    }

    /// Whether the message carries its sender's signature.
    pub fn is_sealed(&self) -> bool {
        self.signature.is_some()
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        self.content.message_type()
    }

    /// Whether a receiver would take `encoded` (this message's [`PeerMessage::encode`]) as
    /// well formed: its size and the content's bounds, which [`PeerMessage::decode`] checks.
    /// For hosts that pass messages without decoding them, like the simulator.
    pub fn check_bounds(&self, encoded: &[u8]) -> Result<(), MessageError> {
        if encoded.len() > PEER_MESSAGE_BYTES_MAX {
            return Err(MessageError::TooLarge(encoded.len()));
        }
        self.content.check_bounds()
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        // An unsealed message travels with an empty signature.
        let signature: &[u8] = self.signature.as_ref().map_or(&[], |s| &s[..]);
        wire::write_envelope(
            self.message_type(),
            &self.sender,
            &self.content_bytes,
            signature,
            self.timestamp,
        )
    }

    /// Decodes wire bytes: size is checked first, nesting is bounded, garbage is an error.
    /// The signature is not checked here (that needs the sender's key): call
    /// [`PeerMessage::verify_signature`].
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > PEER_MESSAGE_BYTES_MAX {
            return Err(MessageError::TooLarge(bytes.len()));
        }
        // The encoding this module writes is read in place; anything else (other widths,
        // order or types, or garbage) goes to the general decoder, which names what is wrong.
        let decoded;
        let envelope = match wire::envelope(bytes) {
            Some(envelope) => envelope,
            None => {
                decoded = decode_bounded::<Envelope>(bytes)?;
                wire::Envelope {
                    message_type: decoded.message_type,
                    sender: &decoded.sender,
                    content: decoded.content.as_slice(),
                    signature: decoded.signature.as_slice(),
                    timestamp: decoded.timestamp,
                }
            }
        };
        if envelope.sender.len() > crate::identity::DID_BYTES_MAX {
            return Err(MessageError::OverBound("sender longer than 256 bytes"));
        }
        // Empty: unsealed, which only its sender's own connection vouches for.
        let signature: Option<[u8; 64]> = match envelope.signature {
            [] => None,
            bytes => Some(
                bytes.try_into().map_err(|_| MessageError::SignatureInvalid(envelope.sender.to_string()))?,
            ),
        };
        let content = Content::decode(envelope.message_type, envelope.content)?;
        Ok(PeerMessage {
            sender: envelope.sender.to_string(),
            content,
            timestamp: envelope.timestamp,
            content_bytes: envelope.content.into(),
            content_digest: Arc::default(),
            signature,
        })
    }

    /// A digest that fixes the signing bytes: type, length-prefixed sender, timestamp and the
    /// content's digest.
    fn signed_fields_digest(&self) -> [u8; 32] {
        let digest = *self.content_digest.get_or_init(|| Sha256::digest(&self.content_bytes).into());
        Sha256::new()
            .chain_update([self.message_type() as u8])
            .chain_update((self.sender.len() as u64).to_be_bytes())
            .chain_update(self.sender.as_bytes())
            .chain_update(self.timestamp.to_be_bytes())
            .chain_update(digest)
            .finalize()
            .into()
    }

    /// A digest of everything the signature covers and of the signature itself (none for an
    /// unsealed message): two messages with the same one are the same message.
    pub fn signed_digest(&self) -> [u8; 32] {
        let signature: &[u8] = self.signature.as_ref().map_or(&[], |s| &s[..]);
        Sha256::new().chain_update(self.signed_fields_digest()).chain_update(signature).finalize().into()
    }

    /// The bytes the sender signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(self.message_type(), &self.sender, &self.content_bytes, self.timestamp)
    }

    /// Checks the signature against the sender's registry key; an unsealed message fails.
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), MessageError> {
        let Some(signature) = &self.signature else {
            return Err(MessageError::SignatureInvalid(self.sender.clone()));
        };
        let memo = || self.signed_fields_digest();
        if crate::signature::verify_with_memo(key, signature, memo, || self.signing_bytes()) {
            Ok(())
        } else {
            Err(MessageError::SignatureInvalid(self.sender.clone()))
        }
    }

    /// The message's signature; none while it is unsealed.
    pub fn signature(&self) -> Option<&[u8; 64]> {
        self.signature.as_ref()
    }

    /// The encoded content bytes (as the CDDL's `content` byte string).
    pub fn content_bytes(&self) -> &[u8] {
        &self.content_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_hash_of_another_length_than_32_bytes_is_refused_by_both_decoders() {
        #[derive(Serialize)]
        struct AnyHashes {
            checkpoint: String,
            consistency_from: u64,
            consistency_proof: Vec<serde_bytes::ByteBuf>,
        }
        for (length, taken) in [(31, false), (32, true), (33, false)] {
            let content = AnyHashes {
                checkpoint: "x\n".to_string(),
                consistency_from: 1,
                consistency_proof: vec![serde_bytes::ByteBuf::from(vec![7u8; length]); 2],
            };
            let mut bytes = Vec::new();
            ciborium::into_writer(&content, &mut bytes).expect("encode");
            assert_eq!(wire::anchor(&bytes).is_some(), taken, "{length}");
            assert_eq!(decode_bounded::<AnchorContent>(&bytes).is_ok(), taken, "{length}");
            let decoded = Content::decode(MessageType::Anchor, &bytes);
            assert_eq!(decoded.is_ok(), taken, "{length}");
            if let Ok(Content::Anchor(anchor)) = decoded {
                assert_eq!(anchor.consistency_proof, vec![[7u8; 32]; 2]);
            }
        }
    }

    /// Receipts with each optional field present and absent, and zero to three signatures.
    fn receipts() -> Vec<FederationReceipt> {
        use crate::receipt::{AnchorJson, Role, SignatureJson};
        let mut out = Vec::new();
        for variant in 0..4u64 {
            let signatures = (0..variant)
                .map(|i| SignatureJson {
                    node: format!("did:vm:node:n{i}"),
                    sig: format!("z{}", "3".repeat(86 + i as usize)),
                    role: if i == 0 { Role::Anchor } else { Role::Witness },
                    timestamp: 1_700_000_000 + i * 70_000,
                })
                .collect();
            out.push(FederationReceipt {
                federation_id: "vaultmesh-primary".to_string(),
                receipt_type: "anchor_federation".to_string(),
                namespace: format!("dao:ns{variant}"),
                tree_size: [0, 23, 24, 1 << 40][variant as usize],
                registry_version: variant + 1,
                anchor: AnchorJson {
                    batch_root: format!("sha256:{}", "ab".repeat(32)).parse().expect("tagged hash"),
                    target: if variant % 2 == 0 { "local" } else { "eip155:1" }.to_string(),
                    tx_hash: (variant % 2 == 1).then(|| format!("0x{}", "cd".repeat(32))),
                    block: (variant % 2 == 1).then_some(19_000_000 + variant),
                    timestamp: 1_700_000_000 + variant,
                },
                signatures,
                quorum_met: variant >= 2,
                finalized_at: (variant >= 2).then_some(1_700_000_100),
            });
        }
        out
    }

    #[test]
    fn receipts_are_written_byte_for_byte_as_ciborium_writes_them_and_read_back() {
        for receipt in receipts() {
            let mut expected = Vec::new();
            ciborium::into_writer(&receipt, &mut expected).expect("ciborium");
            assert_eq!(receipt_cbor(&receipt), expected, "{}", receipt.namespace);
            assert_eq!(receipt_from_cbor(&expected).as_ref(), Some(&receipt));
            let mut hasher = Sha256::new();
            hash_receipt_cbor(&mut hasher, &receipt);
            assert_eq!(hasher.finalize(), Sha256::digest(&expected), "{}", receipt.namespace);
            let content = ReceiptContent { receipt: Arc::new(receipt.clone()) };
            let mut expected = Vec::new();
            ciborium::into_writer(&content, &mut expected).expect("ciborium");
            assert_eq!(Content::Receipt(Box::new(content)).encode(), expected);
            // Trailing bytes or a cut are not a receipt.
            let mut longer = receipt_cbor(&receipt);
            longer.push(0);
            assert_eq!(receipt_from_cbor(&longer), None);
            assert_eq!(receipt_from_cbor(&longer[..longer.len() - 2]), None);
        }
    }

    fn heartbeat(identity: &NodeIdentity) -> PeerMessage {
        let mut finalized = BTreeMap::new();
        finalized.insert("dao:vaultmesh".to_string(), 42);
        PeerMessage::sign(
            identity,
            Content::Heartbeat(HeartbeatContent { registry_version: 1, finalized }),
            1_700_000_000_000,
        )
    }

    #[test]
    fn messages_round_trip_and_verify() {
        let identity = NodeIdentity::from_seed("did:vm:node:east1", [5u8; 32]).expect("identity");
        let message = heartbeat(&identity);
        let decoded = PeerMessage::decode(&message.encode()).expect("decode");
        assert_eq!(decoded, message);
        decoded.verify_signature(&identity.verifying_key()).expect("valid");
        let other = NodeIdentity::from_seed("did:vm:node:west1", [6u8; 32]).expect("identity");
        assert!(decoded.verify_signature(&other.verifying_key()).is_err());
    }

    #[test]
    fn an_unsealed_message_travels_with_an_empty_signature_and_verifies_only_once_sealed() {
        let identity = NodeIdentity::from_seed("did:vm:node:east1", [5u8; 32]).expect("identity");
        let sealed = heartbeat(&identity);
        let mut message = PeerMessage::unsealed(identity.did(), sealed.content.clone(), sealed.timestamp);
        let decoded = PeerMessage::decode(&message.encode()).expect("decode");
        assert_eq!(decoded, message);
        assert!(!decoded.is_sealed());
        assert!(matches!(
            decoded.verify_signature(&identity.verifying_key()),
            Err(MessageError::SignatureInvalid(_))
        ));
        // Sealing gives the very message `sign` makes; another identity cannot seal it.
        let other = NodeIdentity::from_seed("did:vm:node:west1", [6u8; 32]).expect("identity");
        message.seal(&other);
        assert!(!message.is_sealed());
        message.seal(&identity);
        assert_eq!(message, sealed);
        // Unsealed and sealed copies are different messages to a replay check.
        assert_ne!(decoded.signed_digest(), sealed.signed_digest());
        // A signature that is neither empty nor 64 bytes is refused at decoding.
        let envelope = Envelope {
            message_type: MessageType::Heartbeat,
            sender: identity.did().to_string(),
            content: serde_bytes::ByteBuf::from(sealed.content_bytes().to_vec()),
            signature: serde_bytes::ByteBuf::from(vec![7u8; 63]),
            timestamp: sealed.timestamp,
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&envelope, &mut bytes).expect("encode");
        assert!(matches!(PeerMessage::decode(&bytes), Err(MessageError::SignatureInvalid(_))));
    }

    #[test]
    fn tampering_garbage_depth_and_size_are_refused() {
        let identity = NodeIdentity::from_seed("did:vm:node:east1", [5u8; 32]).expect("identity");
        let bytes = heartbeat(&identity).encode();
        // Flip each byte in turn: either decoding fails or the signature does.
        for index in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[index] ^= 0x01;
            if let Ok(message) = PeerMessage::decode(&altered) {
                assert!(message.verify_signature(&identity.verifying_key()).is_err(), "byte {index}");
            }
        }
        assert!(matches!(PeerMessage::decode(b"\xff\x00garbage"), Err(MessageError::Malformed(_))));
        assert!(matches!(PeerMessage::decode(&[]), Err(MessageError::Malformed(_))));
        let deep: Vec<u8> = std::iter::repeat_n(0x81u8, 10_000).chain([0x00]).collect();
        assert!(matches!(PeerMessage::decode(&deep), Err(MessageError::Malformed(_))));
        let huge = vec![0u8; PEER_MESSAGE_BYTES_MAX + 1];
        assert!(matches!(PeerMessage::decode(&huge), Err(MessageError::TooLarge(_))));
    }

    #[test]
    fn a_frame_is_byte_for_byte_what_ciborium_writes_for_its_messages() {
        // Heads of every length: messages of 0 to 65 536 bytes, 2 to 30 of them.
        for (count, length) in
            [(2, 0), (2, 23), (3, 24), (2, 255), (24, 256), (2, 65_535), (2, 65_536), (30, 7)]
        {
            let messages: Vec<Vec<u8>> =
                (0..count).map(|i| (0..length).map(|j| (i * 7 + j) as u8).collect()).collect();
            let list: Vec<serde_bytes::ByteBuf> =
                messages.iter().cloned().map(serde_bytes::ByteBuf::from).collect();
            let mut expected = Vec::new();
            ciborium::into_writer(&list, &mut expected).expect("cbor");
            assert_eq!(frame_of(messages), expected, "{count} messages of {length} bytes");
        }
    }

    #[test]
    fn messages_sent_together_share_a_frame_and_a_bad_one_is_named_in_its_place() {
        let identity = NodeIdentity::from_seed("did:vm:node:east1", [5u8; 32]).expect("identity");
        let message = heartbeat(&identity);
        // One message travels as it is.
        let single = encode_frames(vec![message.encode()]);
        assert_eq!(single, vec![message.encode()]);
        let parts = decode_frame(&single[0]);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].as_ref().ok(), Some(&message));
        // Three share one frame; garbage among them is an error in its place.
        let frames = encode_frames(vec![message.encode(), b"\xa1garbage".to_vec(), message.encode()]);
        assert_eq!(frames.len(), 1);
        let parts = decode_frame(&frames[0]);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].as_ref().ok(), Some(&message));
        assert!(parts[1].is_err());
        assert_eq!(parts[2].as_ref().ok(), Some(&message));
        // Frames stay under the message size cap and the count cap.
        let big = vec![0xa0u8; PEER_MESSAGE_BYTES_MAX / 3];
        let frames = encode_frames(vec![big.clone(), big.clone(), big.clone()]);
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(|f| f.len() <= PEER_MESSAGE_BYTES_MAX));
        let many = encode_frames(vec![message.encode(); FRAME_MESSAGES_MAX + 1]);
        assert_eq!(many.len(), 2);
        // A frame array of one message, or of more than the cap, and a truncated frame are refused.
        let mut one = Vec::new();
        ciborium::into_writer(&vec![serde_bytes::ByteBuf::from(message.encode())], &mut one).expect("cbor");
        assert!(matches!(decode_frame(&one)[..], [Err(MessageError::OverBound(_))]));
        let mut too_many = Vec::new();
        let list = vec![serde_bytes::ByteBuf::from(vec![0xa0u8]); FRAME_MESSAGES_MAX + 1];
        ciborium::into_writer(&list, &mut too_many).expect("cbor");
        assert!(matches!(decode_frame(&too_many)[..], [Err(MessageError::OverBound(_))]));
        assert!(matches!(
            decode_frame(&frames[0][..frames[0].len() / 2])[..],
            [Err(MessageError::Malformed(_))]
        ));
        assert!(matches!(
            decode_frame(&vec![0x82u8; PEER_MESSAGE_BYTES_MAX + 1])[..],
            [Err(MessageError::TooLarge(_))]
        ));
    }

    /// The in-place reader (`wire`) takes what this module writes, and whatever it takes from
    /// altered bytes, ciborium decodes to the same value: it never accepts what ciborium refuses.
    #[test]
    fn the_in_place_reader_reads_what_is_written_and_agrees_with_ciborium_on_every_alteration() {
        let identity = NodeIdentity::from_seed("did:vm:node:east1", [5u8; 32]).expect("identity");
        let note =
            "fed/dao:vaultmesh\n7\nq83vEjRWeJCrze8SgaSWq83vEjRWeJCrze8SgaSWqs0=\n\n\u{2014} east1 AAAA\n";
        let anchor = Content::Anchor(AnchorContent {
            checkpoint: note.to_string(),
            consistency_from: 3,
            consistency_proof: vec![[1u8; 32]; 2],
        });
        let countersign = Content::Countersign(CountersignContent {
            checkpoint: note.to_string(),
            timestamp: 1_700_000_000,
            signature: serde_bytes::ByteBuf::from(vec![9u8; 64]),
        });
        let signature = |node: &str, role, timestamp| crate::receipt::SignatureJson {
            node: node.to_string(),
            sig: "z3nMXbkqZVu9Qj4kGddQeJtLMCd6Rj6V1tFvD6qnzZeAzLjPGwn2rWT8h4P2LbvyAnGLpcRaTHvAcCn8WnAUv4Jp"
                .to_string(),
            role,
            timestamp,
        };
        let receipt = |chain: bool| {
            Content::Receipt(Box::new(ReceiptContent {
                receipt: Arc::new(FederationReceipt {
                    federation_id: "fed".to_string(),
                    receipt_type: "anchor_federation".to_string(),
                    namespace: "dao:vaultmesh".to_string(),
                    tree_size: 7,
                    registry_version: 3,
                    anchor: crate::receipt::AnchorJson {
                        batch_root: crate::hash::TaggedHash::new(
                            crate::hash::HashAlgorithm::Sha256,
                            [3u8; 32],
                        ),
                        target: if chain { "eip155:31337" } else { "local" }.to_string(),
                        tx_hash: chain.then(|| format!("0x{}", "ab".repeat(32))),
                        block: chain.then_some(1_234_567),
                        timestamp: 1_700_000_000,
                    },
                    signatures: vec![
                        signature("did:vm:node:east1", crate::receipt::Role::Anchor, 1_700_000_000),
                        signature("did:vm:node:west1", crate::receipt::Role::Witness, 1_700_000_001),
                        signature("did:vm:node:north1", crate::receipt::Role::Witness, 300),
                    ],
                    quorum_met: !chain,
                    finalized_at: (!chain).then_some(1_700_000_001),
                }),
            }))
        };
        let messages = [
            heartbeat(&identity),
            PeerMessage::unsealed(identity.did(), receipt(false), 1_700_000_000_125),
            PeerMessage::sign(&identity, receipt(true), 1_700_000_000_126),
            PeerMessage::sign(&identity, anchor.clone(), 1_700_000_000_123),
            PeerMessage::unsealed(identity.did(), anchor, 1_700_000_000_124),
            PeerMessage::sign(&identity, countersign.clone(), u64::MAX),
            PeerMessage::unsealed(identity.did(), countersign, 0),
        ];
        let same_envelope = |fast: &wire::Envelope<'_>, slow: &Envelope| {
            fast.message_type == slow.message_type
                && fast.sender == slow.sender
                && fast.content == slow.content.as_slice()
                && fast.signature == slow.signature.as_slice()
                && fast.timestamp == slow.timestamp
        };
        let alterations = |bytes: &[u8]| -> Vec<Vec<u8>> {
            let mut all: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            for index in 0..bytes.len() {
                for flip in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
                    let mut altered = bytes.to_vec();
                    altered[index] ^= flip;
                    all.push(altered);
                }
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            all.push(longer);
            all
        };
        // Messages are written as ciborium writes their envelope, each head in its shortest
        // form whatever its width.
        let by_ciborium = |message: &PeerMessage| {
            let envelope = Envelope {
                message_type: message.message_type(),
                sender: message.sender.clone(),
                content: serde_bytes::ByteBuf::from(message.content_bytes().to_vec()),
                signature: serde_bytes::ByteBuf::from(
                    message.signature().map_or_else(Vec::new, |s| s.to_vec()),
                ),
                timestamp: message.timestamp,
            };
            let mut written = Vec::new();
            ciborium::into_writer(&envelope, &mut written).expect("cbor");
            written
        };
        for timestamp in [23, 24, 255, 256, 65_535, 65_536, 4_294_967_295, 4_294_967_296] {
            let message = PeerMessage::unsealed(&"x".repeat(300), heartbeat(&identity).content, timestamp);
            assert_eq!(message.encode(), by_ciborium(&message), "{timestamp}");
        }
        for message in &messages {
            let bytes = message.encode();
            assert_eq!(bytes, by_ciborium(message), "{:?}", message.message_type());
            assert!(wire::envelope(&bytes).is_some(), "{:?}", message.message_type());
            assert_eq!(&PeerMessage::decode(&bytes).expect("decode"), message);
            for altered in alterations(&bytes) {
                if let Some(fast) = wire::envelope(&altered) {
                    let slow: Envelope = decode_bounded(&altered).expect("ciborium takes what wire takes");
                    assert!(same_envelope(&fast, &slow), "{altered:02x?}");
                }
            }
            let content = message.content_bytes();
            match &message.content {
                Content::Anchor(written) => {
                    assert_eq!(wire::anchor(content).as_ref(), Some(written));
                    for altered in alterations(content) {
                        if let Some(fast) = wire::anchor(&altered) {
                            let slow: AnchorContent = decode_bounded(&altered).expect("ciborium takes it");
                            assert_eq!(fast, slow, "{altered:02x?}");
                        }
                    }
                }
                Content::Receipt(written) => {
                    assert_eq!(wire::receipt(content).as_ref(), Some(written.as_ref()));
                    for altered in alterations(content) {
                        if let Some(fast) = wire::receipt(&altered) {
                            let slow: ReceiptContent = decode_bounded(&altered).expect("ciborium takes it");
                            assert_eq!(fast, slow, "{altered:02x?}");
                        }
                    }
                }
                Content::Countersign(written) => {
                    assert_eq!(wire::countersign(content).as_ref(), Some(written));
                    for altered in alterations(content) {
                        if let Some(fast) = wire::countersign(&altered) {
                            let slow: CountersignContent =
                                decode_bounded(&altered).expect("ciborium takes it");
                            assert_eq!(fast, slow, "{altered:02x?}");
                        }
                    }
                }
                _ => {}
            }
        }
        let encoded: Vec<Vec<u8>> = messages.iter().map(PeerMessage::encode).collect();
        let frame = encode_frames(encoded.clone()).pop().expect("one frame");
        assert_eq!(wire::frame_parts(&frame), Some(encoded.iter().map(Vec::as_slice).collect()));
        let parts = decode_frame(&frame);
        assert_eq!(parts.len(), messages.len());
        assert!(parts.iter().zip(&messages).all(|(part, message)| part.as_ref().ok() == Some(message)));
        for altered in alterations(&frame) {
            if let Some(fast) = wire::frame_parts(&altered) {
                let slow: Vec<serde_bytes::ByteBuf> = decode_bounded(&altered).expect("ciborium takes it");
                assert!(fast.iter().map(|p| p.to_vec()).eq(slow.into_iter().map(|p| p.into_vec())));
            }
        }
        // Every role's and message type's wire name is serde's.
        for role in [crate::receipt::Role::Anchor, crate::receipt::Role::Witness] {
            let mut written = Vec::new();
            ciborium::into_writer(&signature("did:vm:node:east1", role, 1), &mut written).expect("cbor");
            let mut reader = wire::Reader::new(&written);
            assert_eq!(wire::signature_json(&mut reader).map(|s| s.role), Some(role));
        }
        for kind in MessageType::ALL {
            let mut name = Vec::new();
            ciborium::into_writer(&kind, &mut name).expect("cbor");
            let name: String = decode_bounded(&name).expect("a text");
            assert_eq!(wire::message_type(&name), Some(kind));
        }
    }
}
