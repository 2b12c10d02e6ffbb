//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures and `cosignature/v1`
//! timestamped witness cosignatures (c2sp.org/tlog-cosignature), byte for byte.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest as _, Sha256};

use crate::identity::NodeIdentity;

/// Longest note we parse, in bytes.
pub const NOTE_BYTES_MAX: usize = 64 * 1024;
/// Most signature lines we accept on one note (C2SP lets verifiers bound this).
pub const NOTE_SIGNATURES_MAX: usize = 100;
/// Signature type byte of a plain Ed25519 note signature.
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;
/// Signature type byte of a `cosignature/v1` witness cosignature.
pub const SIGNATURE_TYPE_COSIGNATURE: u8 = 0x04;
/// The signature line prefix: U+2014 EM DASH and a space.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Why a note, a verifier key or a signature does not parse or verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note is larger than [`NOTE_BYTES_MAX`].
    #[error("note is {0} bytes, more than the 65536 allowed")]
    TooLarge(usize),
    /// The note text is malformed.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A signature line is malformed.
    #[error("malformed signature line {line}: {reason}")]
    BadSignatureLine {
        /// 1-based number among the signature lines.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A verifier key string is malformed.
    #[error("malformed verifier key {0:?}: expected name+hexkeyid+base64key")]
    BadVerifierKey(String),
    /// A signature does not verify.
    #[error("signature by {0} does not verify")]
    SignatureInvalid(String),
    /// A key name that cannot appear in a note (empty, spaces, '+').
    #[error("key name {0:?} cannot be used in a note: no spaces or '+'")]
    BadKeyName(String),
}

/// The 4-byte key ID: SHA-256(name || 0x0A || type || public key)[:4].
pub fn key_id(name: &str, signature_type: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0x0a, signature_type]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The message a `cosignature/v1` signs: `cosignature/v1\ntime <t>\n` then the checkpoint body.
pub fn cosignature_message(timestamp: u64, body: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(32 + body.len());
    message.extend_from_slice(b"cosignature/v1\ntime ");
    // Decimal digits without a String of their own.
    let _ = std::io::Write::write_fmt(&mut message, format_args!("{timestamp}"));
    message.push(b'\n');
    message.extend_from_slice(body.as_bytes());
    message
}

/// Bytes of a signature line's payload decoded without a buffer of its own: a key ID, a
/// timestamp and a signature (a cosignature's 76), with room to spare.
const SHORT_PAYLOAD_BYTES: usize = 96;

/// One signature line: the key name and the decoded base64 payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signer's key name (for us, the DID the registry lists).
    pub name: String,
    /// The first four bytes of the payload.
    pub key_id: [u8; 4],
    /// The payload after the key ID (signature, or timestamp and signature).
    pub payload: Vec<u8>,
}

impl NoteSignature {
    /// The line as it appears in the note, without its newline.
    pub fn to_line(&self) -> String {
        let mut bytes = Vec::with_capacity(4 + self.payload.len());
        bytes.extend_from_slice(&self.key_id);
        bytes.extend_from_slice(&self.payload);
        format!("{SIGNATURE_LINE_PREFIX}{} {}", self.name, BASE64.encode(bytes))
    }

    /// A plain Ed25519 signature over the note text.
    pub fn sign_ed25519(identity: &NodeIdentity, text: &str) -> Self {
        let key = identity.verifying_key();
        NoteSignature {
            name: identity.did().to_string(),
            key_id: key_id(identity.did(), SIGNATURE_TYPE_ED25519, &key),
            payload: identity.sign(text.as_bytes()).to_vec(),
        }
    }

    /// A plain Ed25519 signature over the note text that `identity` already made (Ed25519 is
    /// deterministic: an anchor signature over a checkpoint body is this note's signature).
    pub fn ed25519_made(identity: &NodeIdentity, signature: &[u8; 64]) -> Self {
        let key = identity.verifying_key();
        NoteSignature {
            name: identity.did().to_string(),
            key_id: key_id(identity.did(), SIGNATURE_TYPE_ED25519, &key),
            payload: signature.to_vec(),
        }
    }

    /// A `cosignature/v1` over a checkpoint body at `timestamp`.
    pub fn cosign(identity: &NodeIdentity, body: &str, timestamp: u64) -> Self {
        let key = identity.verifying_key();
        let signature = identity.sign(&cosignature_message(timestamp, body));
        let mut payload = Vec::with_capacity(72);
        payload.extend_from_slice(&timestamp.to_be_bytes());
        payload.extend_from_slice(&signature);
        NoteSignature {
            name: identity.did().to_string(),
            key_id: key_id(identity.did(), SIGNATURE_TYPE_COSIGNATURE, &key),
            payload,
        }
    }

    /// For a cosignature payload: its timestamp and signature.
    pub fn cosignature_parts(&self) -> Option<(u64, [u8; 64])> {
        if self.payload.len() != 72 {
            return None;
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&self.payload[..8]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&self.payload[8..]);
        Some((u64::from_be_bytes(time), signature))
    }

    /// For a plain Ed25519 payload: the signature.
    pub fn ed25519_signature(&self) -> Option<[u8; 64]> {
        self.payload.as_slice().try_into().ok()
    }
}

/// A signed note: text ending in a newline, a blank line, then signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a note, bounded by [`NOTE_BYTES_MAX`] and [`NOTE_SIGNATURES_MAX`].
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        let (text, lines) = split_note(bytes)?;
        let mut signatures = Vec::new();
        for (index, line) in lines.split('\n').enumerate() {
            let signature = read_line(line, index + 1, |name, key_id, payload| NoteSignature {
                name: name.to_string(),
                key_id,
                payload: payload.to_vec(),
            })?;
            signatures.push(signature);
        }
        Ok(Note { text: text.to_string(), signatures })
    }

    /// The note's exact text form.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for signature in &self.signatures {
            out.push_str(&signature.to_line());
            out.push('\n');
        }
        out
    }
}

/// A note read in place: [`Note::parse`]'s checks, with the text and the first signature
/// line's name borrowed from the input. A witness reads each anchor's note twice (to batch its
/// signature, then to handle it); the owned form took four buffers each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteView<'a> {
    /// The signed text, including its final newline.
    pub text: &'a str,
    /// The first signature line: key name, key ID, and its payload as an Ed25519 signature
    /// (none when the payload is not 64 bytes, as [`NoteSignature::ed25519_signature`]).
    first: (&'a str, [u8; 4], Option<[u8; 64]>),
}

impl<'a> NoteView<'a> {
    /// Reads a note, with the checks and errors of [`Note::parse`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, NoteError> {
        let (text, lines) = split_note(bytes)?;
        let mut first = None;
        for (index, line) in lines.split('\n').enumerate() {
            let read =
                read_line(line, index + 1, |name, key_id, payload| (name, key_id, payload.try_into().ok()))?;
            first.get_or_insert(read);
        }
        // `split_note` leaves at least one line, and each line read is a signature.
        let first = first.ok_or(NoteError::Malformed("no signature lines"))?;
        Ok(NoteView { text, first })
    }

    /// The first signature line's key name, key ID and Ed25519 signature (see [`NoteView`]).
    pub fn first_signature(&self) -> (&'a str, [u8; 4], Option<[u8; 64]>) {
        self.first
    }
}

/// A note's text (with its final newline) and its signature lines (without the last
/// newline), after the checks every line shares: size, UTF-8, control characters, the blank
/// line, the final newline, the number of lines.
fn split_note(bytes: &[u8]) -> Result<(&str, &str), NoteError> {
    if bytes.len() > NOTE_BYTES_MAX {
        return Err(NoteError::TooLarge(bytes.len()));
    }
    let all = std::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
    if all.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("contains control characters other than newline"));
    }
    let split = all.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let text = &all[..split + 1];
    let lines = all[split + 2..]
        .strip_suffix('\n')
        .ok_or(NoteError::Malformed("the last signature line has no newline"))?;
    if lines.split('\n').nth(NOTE_SIGNATURES_MAX).is_some() {
        return Err(NoteError::BadSignatureLine {
            line: NOTE_SIGNATURES_MAX + 1,
            reason: "too many signatures",
        });
    }
    Ok((text, lines))
}

/// Reads signature line `line_number` and hands `each` its key name, key ID and payload
/// (decoded on the stack; only payloads over [`SHORT_PAYLOAD_BYTES`] take a buffer).
fn read_line<'a, T>(
    line: &'a str,
    line_number: usize,
    each: impl FnOnce(&'a str, [u8; 4], &[u8]) -> T,
) -> Result<T, NoteError> {
    let bad = |reason| NoteError::BadSignatureLine { line: line_number, reason };
    let rest =
        line.strip_prefix(SIGNATURE_LINE_PREFIX).ok_or_else(|| bad("does not start with an em dash"))?;
    let (name, encoded) = rest.split_once(' ').ok_or_else(|| bad("no space between name and signature"))?;
    if name.is_empty() || name.contains('+') {
        return Err(bad("the key name is empty or contains '+'"));
    }
    let mut short = [0u8; SHORT_PAYLOAD_BYTES];
    let long;
    let decoded: &[u8] = match BASE64.decode_slice(encoded, &mut short) {
        Ok(length) => &short[..length],
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            long = BASE64.decode(encoded).map_err(|_| bad("the signature is not base64"))?;
            &long
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => return Err(bad("the signature is not base64")),
    };
    if decoded.len() < 5 {
        return Err(bad("the signature is shorter than a key ID"));
    }
    Ok(each(name, [decoded[0], decoded[1], decoded[2], decoded[3]], &decoded[4..]))
}

/// A C2SP verifier key: `name+hex(key ID)+base64(type || public key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// Key name.
    pub name: String,
    /// Signature type: [`SIGNATURE_TYPE_ED25519`] or [`SIGNATURE_TYPE_COSIGNATURE`].
    pub signature_type: u8,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl VerifierKey {
    /// A verifier key for `name` and `key`.
    pub fn new(name: &str, signature_type: u8, key: VerifyingKey) -> Result<Self, NoteError> {
        if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
            return Err(NoteError::BadKeyName(name.to_string()));
        }
        Ok(VerifierKey { name: name.to_string(), signature_type, key })
    }

    /// Parses the `name+hexid+base64` form and checks the key ID.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = || NoteError::BadVerifierKey(text.chars().take(200).collect());
        let mut parts = text.trim_end().splitn(3, '+');
        let (name, id_hex, key_b64) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(bad()),
        };
        let mut id = [0u8; 4];
        hex::decode_to_slice(id_hex, &mut id).map_err(|_| bad())?;
        let raw = BASE64.decode(key_b64).map_err(|_| bad())?;
        if raw.len() != 33 {
            return Err(bad());
        }
        let key_bytes: [u8; 32] = raw[1..].try_into().map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad())?;
        let verifier = VerifierKey::new(name, raw[0], key)?;
        if verifier.key_id() != id {
            return Err(bad());
        }
        Ok(verifier)
    }

    /// The key ID.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, self.signature_type, &self.key)
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let mut raw = vec![self.signature_type];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.key_id()), BASE64.encode(raw))
    }

    /// True when this key made `signature` (same name and key ID).
    pub fn matches(&self, signature: &NoteSignature) -> bool {
        signature.name == self.name && signature.key_id == self.key_id()
    }

    /// Verifies one signature line over `text`. For cosignatures, returns the signed time.
    pub fn verify(&self, text: &str, signature: &NoteSignature) -> Result<Option<u64>, NoteError> {
        let invalid = || NoteError::SignatureInvalid(self.name.clone());
        if !self.matches(signature) {
            return Err(invalid());
        }
        match self.signature_type {
            SIGNATURE_TYPE_ED25519 => {
                let bytes = signature.ed25519_signature().ok_or_else(invalid)?;
                if !crate::signature::verify(&self.key, text.as_bytes(), &bytes) {
                    return Err(invalid());
                }
                Ok(None)
            }
            SIGNATURE_TYPE_COSIGNATURE => {
                let (time, bytes) = signature.cosignature_parts().ok_or_else(invalid)?;
                if !crate::signature::verify(&self.key, &cosignature_message(time, text), &bytes) {
                    return Err(invalid());
                }
                Ok(Some(time))
            }
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_and_parsing_round_trip() {
        let identity = NodeIdentity::from_seed("did:vm:node:east1", [1u8; 32]).expect("identity");
        let witness = NodeIdentity::from_seed("did:vm:node:west1", [2u8; 32]).expect("identity");
        let text = "example.org/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let note = Note {
            text: text.to_string(),
            signatures: vec![
                NoteSignature::sign_ed25519(&identity, text),
                NoteSignature::cosign(&witness, text, 1_700_000_000),
            ],
        };
        let parsed = Note::parse(note.to_text().as_bytes()).expect("parse");
        assert_eq!(parsed, note);
        let log_key = VerifierKey::new("did:vm:node:east1", SIGNATURE_TYPE_ED25519, identity.verifying_key())
            .expect("key");
        let witness_key =
            VerifierKey::new("did:vm:node:west1", SIGNATURE_TYPE_COSIGNATURE, witness.verifying_key())
                .expect("key");
        assert_eq!(VerifierKey::parse(&log_key.to_text()).expect("parse"), log_key);
        assert_eq!(log_key.verify(&parsed.text, &parsed.signatures[0]), Ok(None));
        assert_eq!(witness_key.verify(&parsed.text, &parsed.signatures[1]), Ok(Some(1_700_000_000)));
        assert!(log_key.verify(&parsed.text, &parsed.signatures[1]).is_err());
        let altered = parsed.text.replace('5', "6");
        assert!(log_key.verify(&altered, &parsed.signatures[0]).is_err());
    }

    #[test]
    fn garbage_is_rejected_with_a_typed_error() {
        for garbage in [
            &b""[..],
            b"no blank line\n",
            b"text\n\n",
            b"text\n\nnot a signature\n",
            b"text\n\n\xe2\x80\x94 name !!!\n",
            b"\xff\xfe\n\n",
            b"text\x07\n\n\xe2\x80\x94 n AAAAAAAA\n",
        ] {
            assert!(Note::parse(garbage).is_err(), "{garbage:?}");
        }
        assert!(matches!(Note::parse(&vec![b'a'; NOTE_BYTES_MAX + 1]), Err(NoteError::TooLarge(_))));
        assert!(VerifierKey::parse("name+00000000+AQ==").is_err());
    }

    #[test]
    fn a_note_read_in_place_is_taken_and_refused_as_the_owned_parse_takes_and_refuses_it() {
        let identity = NodeIdentity::from_seed("did:vm:node:east1", [1u8; 32]).expect("identity");
        let witness = NodeIdentity::from_seed("did:vm:node:west1", [2u8; 32]).expect("identity");
        let text = "example.org/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let signed = |signatures: Vec<NoteSignature>| {
            Note { text: text.to_string(), signatures }.to_text().into_bytes()
        };
        let anchor = NoteSignature::sign_ed25519(&identity, text);
        let cosignature = NoteSignature::cosign(&witness, text, 1_700_000_000);
        let mut inputs = vec![
            signed(vec![anchor.clone()]),
            signed(vec![anchor.clone(), cosignature.clone()]),
            signed(vec![cosignature.clone(), anchor.clone()]),
            signed(vec![anchor.clone(); NOTE_SIGNATURES_MAX]),
            signed(vec![anchor.clone(); NOTE_SIGNATURES_MAX + 1]),
            b"text\n\n".to_vec(),
            b"text\n\n\n".to_vec(),
            b"text\n\n\xe2\x80\x94 n AAAAAAAA\n".to_vec(),
        ];
        // Every byte of a two-signature note replaced by a character of its grammar.
        let base = signed(vec![anchor.clone(), cosignature]);
        for at in 0..base.len() {
            for byte in [b'\n', b' ', b'+', b'A', b'=', 0xe2] {
                let mut altered = base.clone();
                altered[at] = byte;
                inputs.push(altered);
            }
        }
        let mut refused = 0;
        for input in &inputs {
            match (Note::parse(input), NoteView::parse(input)) {
                (Ok(owned), Ok(view)) => {
                    assert_eq!(view.text, owned.text);
                    let first = &owned.signatures[0];
                    assert_eq!(
                        view.first_signature(),
                        (first.name.as_str(), first.key_id, first.ed25519_signature())
                    );
                }
                (Err(owned), Err(view)) => {
                    assert_eq!(view, owned);
                    refused += 1;
                }
                (owned, view) => panic!("{input:?}: owned {owned:?}, in place {view:?}"),
            }
        }
        assert!(refused > 100 && refused < inputs.len() - 3, "{refused} of {}", inputs.len());
        let view = NoteView::parse(&inputs[0]).expect("a signed note");
        assert_eq!(view.first_signature(), (anchor.name.as_str(), anchor.key_id, anchor.ed25519_signature()));
        assert!(anchor.ed25519_signature().is_some());
    }

    #[test]
    fn signature_lines_of_any_payload_length_parse_and_bad_base64_of_any_length_does_not() {
        for length in [5, 68, 76, SHORT_PAYLOAD_BYTES, SHORT_PAYLOAD_BYTES + 1, 300] {
            let payload: Vec<u8> = (0..length).map(|i| (i * 13 + 7) as u8).collect();
            let line = format!("{SIGNATURE_LINE_PREFIX}other.example {}", BASE64.encode(&payload));
            let note = Note::parse(format!("text\n\n{line}\n").as_bytes()).expect("a well-formed line");
            assert_eq!(note.signatures[0].key_id, payload[..4]);
            assert_eq!(note.signatures[0].payload, payload[4..]);
            assert_eq!(note.signatures[0].to_line(), line);
            let mut broken = line.clone();
            broken.insert(SIGNATURE_LINE_PREFIX.len() + "other.example ".len() + 4, '!');
            assert!(
                matches!(
                    Note::parse(format!("text\n\n{broken}\n").as_bytes()),
                    Err(NoteError::BadSignatureLine { reason: "the signature is not base64", .. })
                ),
                "{length}"
            );
        }
    }
}
