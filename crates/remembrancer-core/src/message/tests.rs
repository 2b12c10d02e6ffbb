//! Unit tests of the peer-message encoders and readers: both decoders held to one value on every altered byte, frames, bounds.

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
    for (count, length) in [(2, 0), (2, 23), (3, 24), (2, 255), (24, 256), (2, 65_535), (2, 65_536), (30, 7)]
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
    assert!(matches!(decode_frame(&frames[0][..frames[0].len() / 2])[..], [Err(MessageError::Malformed(_))]));
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
    let note = "fed/dao:vaultmesh\n7\nq83vEjRWeJCrze8SgaSWq83vEjRWeJCrze8SgaSWqs0=\n\n\u{2014} east1 AAAA\n";
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
                    batch_root: crate::hash::TaggedHash::new(crate::hash::HashAlgorithm::Sha256, [3u8; 32]),
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
            signature: serde_bytes::ByteBuf::from(message.signature().map_or_else(Vec::new, |s| s.to_vec())),
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
                        let slow: CountersignContent = decode_bounded(&altered).expect("ciborium takes it");
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
