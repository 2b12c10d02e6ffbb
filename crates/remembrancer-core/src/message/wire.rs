//! Reads in place the definite-length CBOR that `message.rs`'s encoders write: the envelope
//! and the frame (borrowing their parts) and the three contents every receipt needs (anchor,
//! countersign, receipt), which ciborium decoded through serde at about 5% of a node's CPU
//! under sustained load. Each reader accepts only what ciborium decodes to the same value,
//! and answers None for anything else (indefinite lengths, tags, unknown or repeated fields,
//! other types, trailing bytes), which then goes to ciborium: what is refused, and why,
//! stays ciborium's word. Writes the envelope, byte for byte as ciborium would.

use super::{AnchorContent, CountersignContent, MessageType, ReceiptContent, CONSISTENCY_PROOF_HASHES_MAX};
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
        MessageType::ClaimEvidence => "claim_evidence",
        MessageType::XDelivery => "x_delivery",
        MessageType::XAck => "x_ack",
        MessageType::XEvidence => "x_evidence",
    }
}

/// The message type by its wire name (serde's snake_case of the variant).
pub(super) fn message_type(name: &str) -> Option<MessageType> {
    MessageType::ALL.into_iter().find(|kind| message_type_name(*kind) == name)
}

pub(super) fn envelope(bytes: &[u8]) -> Option<Envelope<'_>> {
    let (mut kind, mut sender, mut content, mut signature, mut timestamp) = (None, None, None, None, None);
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
    let (mut batch_root, mut target, mut tx_hash, mut block, mut timestamp) = (None, None, None, None, None);
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
    Some(SignatureJson { node: node?.to_string(), sig: sig?.to_string(), role: role?, timestamp: timestamp? })
}
