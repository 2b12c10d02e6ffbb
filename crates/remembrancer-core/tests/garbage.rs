//! Arbitrary bytes into every parser an outsider can reach: each returns a typed error or a
//! value, never panics, whatever the input.

use proptest::prelude::*;
use remembrancer_core::bundle::verify_bundle;
use remembrancer_core::checkpoint::Checkpoint;
use remembrancer_core::identity::{parse_multibase_signature, parse_public_key, NodeIdentity};
use remembrancer_core::message::PeerMessage;
use remembrancer_core::note::{Note, VerifierKey};
use remembrancer_core::receipt::{verify_note, FederationReceipt};
use remembrancer_core::registry::{Registry, RegistryUpdate};

fn registry() -> Registry {
    let yaml = format!(
        "federation:\n  name: g\n  quorum: 1\n  peers:\n    - did: did:vm:node:a\n      pubkey: {}\n",
        NodeIdentity::from_seed("did:vm:node:a", [1; 32]).expect("id").public_key_multibase()
    );
    Registry::from_yaml(&yaml).expect("registry")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn binary_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = PeerMessage::decode(&bytes);
        let _ = Note::parse(&bytes);
        let _ = FederationReceipt::from_json(&bytes);
        let _ = verify_note(&bytes, &registry());
        let _ = verify_bundle(&bytes, &registry());
    }

    #[test]
    fn text_parsers_never_panic(text in "\\PC{0,300}") {
        let _ = Checkpoint::parse_body(&text);
        let _ = VerifierKey::parse(&text);
        let _ = Registry::from_yaml(&text);
        let _ = Registry::from_any(&text);
        let _ = RegistryUpdate::from_json(&text);
        let _ = parse_public_key(&text);
        let _ = parse_multibase_signature(&text);
        let _ = NodeIdentity::from_key_file(&text);
    }

    /// Almost-valid messages: a real message with bytes changed, dropped or appended.
    #[test]
    fn mutated_messages_never_panic(index in any::<usize>(), byte in any::<u8>(), cut in any::<bool>()) {
        let identity = NodeIdentity::from_seed("did:vm:node:a", [1; 32]).expect("id");
        let content = remembrancer_core::message::Content::Heartbeat(Default::default());
        let mut bytes = PeerMessage::sign(&identity, content, 1).encode();
        let at = index % bytes.len();
        if cut { bytes.truncate(at) } else { bytes[at] = byte; bytes.push(byte) }
        if let Ok(message) = PeerMessage::decode(&bytes) {
            let _ = message.verify_signature(&identity.verifying_key());
        }
    }
}
