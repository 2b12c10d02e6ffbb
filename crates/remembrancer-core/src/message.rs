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
    /// An epoch anchor claim a member signed out of turn.
    ClaimEvidence,
    /// A cross-namespace message and its proof, to the target's owner.
    XDelivery,
    /// What became of a cross-namespace message (the target's record and its proof), to the
    /// source's owner.
    XAck,
    /// Two cross-namespace messages of one lane and sequence, each proven in its source's tree:
    /// the lane is frozen on every node.
    XEvidence,
}

impl MessageType {
    /// Every message type.
    pub const ALL: [MessageType; 12] = [
        MessageType::Anchor,
        MessageType::Countersign,
        MessageType::Receipt,
        MessageType::Heartbeat,
        MessageType::Request,
        MessageType::Evidence,
        MessageType::Registry,
        MessageType::EpochAnchor,
        MessageType::ClaimEvidence,
        MessageType::XDelivery,
        MessageType::XAck,
        MessageType::XEvidence,
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
    /// The registry version the claimant's election was computed under: the claim is judged
    /// under it (0 in anchors stored before it was carried: judged under none).
    #[serde(default)]
    pub registry_version: u64,
    /// The final receipts covered.
    pub entries: Vec<crate::anchoring::EpochEntry>,
    /// [`crate::anchoring::epoch_root`] of the entries.
    pub root: serde_bytes::ByteBuf,
    /// Where the root was anchored.
    pub reference: crate::anchoring::AnchorReference,
}

/// An epoch anchor claim a member signed out of turn, as it was signed: the whole peer
/// message (`PeerMessage::encode`), so that its signature can be checked by anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimEvidenceContent {
    /// The claim's peer message.
    pub message: serde_bytes::ByteBuf,
}

/// A cross-namespace message on its way to its target's owner: the message's record (from its
/// source's tree) and its proof bundle (`remembrancer.proof-bundle/v1` JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XDeliveryContent {
    /// The message's record.
    pub record: serde_bytes::ByteBuf,
    /// Its proof bundle, JSON.
    pub bundle: String,
}

/// What became of a cross-namespace message, on its way back: the target's ACK or TIMEOUT
/// record and its proof bundle; or, as soon as the target recorded it, its RECEIPT record with
/// no bundle and the record's index (the target owner's signed word, proven later by the ACK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XAckContent {
    /// The target's record.
    pub record: serde_bytes::ByteBuf,
    /// Its proof bundle, JSON (empty for a RECEIPT notice).
    pub bundle: String,
    /// A RECEIPT notice's index in the target's tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_index: Option<u64>,
}

/// Two messages of one lane and sequence, each with its proof (see [`MessageType::XEvidence`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XEvidenceContent {
    /// The message recorded first, and its proof.
    pub first: XDeliveryContent,
    /// The other, and its proof.
    pub second: XDeliveryContent,
}

/// Largest proof bundle a messaging delivery or acknowledgement carries, bytes (a record of at
/// most 36 KiB, base64, a path of at most 64 hashes and a cosigned note).
pub const XBUNDLE_BYTES_MAX: usize = 128 * 1024;

/// Largest claim a claim evidence message carries, bytes: the claim and the evidence message
/// around it fit one peer message (a claim larger than this is kept as evidence, not sent).
pub const CLAIM_MESSAGE_BYTES_MAX: usize = PEER_MESSAGE_BYTES_MAX - 1024;

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
    /// See [`ClaimEvidenceContent`].
    ClaimEvidence(ClaimEvidenceContent),
    /// See [`XDeliveryContent`].
    XDelivery(XDeliveryContent),
    /// See [`XAckContent`].
    XAck(XAckContent),
    /// See [`XEvidenceContent`].
    XEvidence(XEvidenceContent),
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
            Content::ClaimEvidence(_) => MessageType::ClaimEvidence,
            Content::XDelivery(_) => MessageType::XDelivery,
            Content::XAck(_) => MessageType::XAck,
            Content::XEvidence(_) => MessageType::XEvidence,
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
            Content::ClaimEvidence(c) => ciborium::into_writer(c, &mut out),
            Content::XDelivery(c) => ciborium::into_writer(c, &mut out),
            Content::XAck(c) => ciborium::into_writer(c, &mut out),
            Content::XEvidence(c) => ciborium::into_writer(c, &mut out),
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
            MessageType::ClaimEvidence => Content::ClaimEvidence(decode_bounded(bytes)?),
            MessageType::XDelivery => Content::XDelivery(decode_bounded(bytes)?),
            MessageType::XAck => Content::XAck(decode_bounded(bytes)?),
            MessageType::XEvidence => Content::XEvidence(decode_bounded(bytes)?),
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
            Content::ClaimEvidence(c) => {
                if c.message.len() > CLAIM_MESSAGE_BYTES_MAX {
                    return Err(MessageError::OverBound("claim evidence carries a claim over its bound"));
                }
            }
            Content::XDelivery(XDeliveryContent { record, bundle })
            | Content::XAck(XAckContent { record, bundle, .. }) => {
                if record.len() > crate::xmsg::RECORD_BYTES_MAX || bundle.len() > XBUNDLE_BYTES_MAX {
                    return Err(MessageError::OverBound("a messaging record or its proof over its bound"));
                }
            }
            Content::XEvidence(XEvidenceContent { first, second }) => {
                for part in [first, second] {
                    if part.record.len() > crate::xmsg::RECORD_BYTES_MAX
                        || part.bundle.len() > XBUNDLE_BYTES_MAX
                    {
                        return Err(MessageError::OverBound(
                            "a messaging record or its proof over its bound",
                        ));
                    }
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

pub(crate) fn decode_bounded<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MessageError> {
    ciborium::de::from_reader_with_recursion_limit(bytes, CBOR_DEPTH_MAX)
        .map_err(|e| MessageError::Malformed(e.to_string()))
}

mod wire;

/// For the differential fuzz target (`fuzz/`): whether the in-place envelope reader and the
/// general decoder agree on `bytes`. Wherever the in-place reader takes them, the general
/// decoder must read the same envelope from them.
#[cfg(feature = "fuzzing")]
pub fn envelope_readers_agree(bytes: &[u8]) -> bool {
    let Some(fast) = wire::envelope(bytes) else { return true };
    match decode_bounded::<Envelope>(bytes) {
        Ok(general) => {
            general.message_type == fast.message_type
                && general.sender == fast.sender
                && general.content.as_slice() == fast.content
                && general.signature.as_slice() == fast.signature
                && general.timestamp == fast.timestamp
        }
        Err(_) => false,
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
mod tests;
