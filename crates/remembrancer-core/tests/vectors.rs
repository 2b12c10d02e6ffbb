//! Public test vectors from `../shared/vectors/`: RFC 9162 proofs (transparency-dev/merkle),
//! the C2SP signed-note example, and a real Sigsum checkpoint with eight witness cosignatures.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use remembrancer_core::merkle::{verify_consistency, verify_consistency_bytes, verify_inclusion, ProofError};
use remembrancer_core::note::{
    key_id, Note, NoteSignature, VerifierKey, SIGNATURE_TYPE_COSIGNATURE, SIGNATURE_TYPE_ED25519,
};
use remembrancer_core::{Digest, HashAlgorithm};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn vectors_dir() -> PathBuf {
    let from_env = std::env::var_os("REMEMBRANCER_VECTORS").map(PathBuf::from);
    from_env.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"))
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap_or_else(|e| panic!("read {current:?}: {e}")) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn digest(value: &Value) -> Option<Digest> {
    BASE64.decode(value.as_str()?).ok()?.try_into().ok()
}

fn digests(value: &Value) -> Option<Vec<Digest>> {
    // transparency-dev writes an empty proof as null.
    match value {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(digest).collect(),
        _ => None,
    }
}

#[test]
fn rfc9162_inclusion_vectors() {
    let files = json_files(&vectors_dir().join("merkle/inclusion"));
    assert!(files.len() > 50, "expected the inclusion vectors, found {}", files.len());
    for file in files {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
        let want_error = case["wantErr"].as_bool().expect("wantErr");
        let result = (|| -> Result<(), String> {
            let root = digest(&case["root"]).ok_or("root is not 32 bytes")?;
            let leaf = digest(&case["leafHash"]).ok_or("leaf is not 32 bytes")?;
            let proof = digests(&case["proof"]).ok_or("proof hash is not 32 bytes")?;
            let index = case["leafIdx"].as_u64().ok_or("index")?;
            let size = case["treeSize"].as_u64().ok_or("size")?;
            verify_inclusion(HashAlgorithm::Sha256, index, size, &leaf, &proof, &root)
                .map_err(|e| e.to_string())
        })();
        assert_eq!(result.is_err(), want_error, "{file:?}: {result:?}");
    }
}

#[test]
fn rfc9162_consistency_vectors() {
    let files = json_files(&vectors_dir().join("merkle/consistency"));
    assert!(files.len() > 50, "expected the consistency vectors, found {}", files.len());
    for file in files {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
        let want_error = case["wantErr"].as_bool().expect("wantErr");
        let result = (|| -> Result<(), String> {
            let bytes = |v: &Value| BASE64.decode(v.as_str().unwrap_or_default()).map_err(|e| e.to_string());
            let root1 = bytes(&case["root1"])?;
            let root2 = bytes(&case["root2"])?;
            let proof: Vec<Vec<u8>> = match &case["proof"] {
                Value::Array(items) => items.iter().map(bytes).collect::<Result<_, _>>()?,
                _ => Vec::new(),
            };
            let proof: Vec<&[u8]> = proof.iter().map(Vec::as_slice).collect();
            let size1 = case["size1"].as_u64().ok_or("size1")?;
            let size2 = case["size2"].as_u64().ok_or("size2")?;
            verify_consistency_bytes(HashAlgorithm::Sha256, size1, size2, &root1, &root2, &proof)
                .map_err(|e| e.to_string())
        })();
        assert_eq!(result.is_err(), want_error, "{file:?}: {result:?}");
    }
}

/// Our documented rule (the C2SP witness protocol's): from size 0, an empty proof starting
/// at the empty tree's root is accepted, whatever the new root. transparency-dev rejects every
/// proof from size 0; its vectors for that case all carry a malformed root or a non-empty
/// proof, which we reject too, so the divergence shows only here.
#[test]
fn size_zero_rule_accepts_only_the_empty_tree() {
    let empty = HashAlgorithm::Sha256.empty_root();
    assert_eq!(verify_consistency(HashAlgorithm::Sha256, 0, 5, &empty, &[2u8; 32], &[]), Ok(()));
    assert!(verify_consistency(HashAlgorithm::Sha256, 0, 5, &empty, &[2u8; 32], &[[3u8; 32]]).is_err());
    let not_empty = [1u8; 32];
    assert_eq!(
        verify_consistency(HashAlgorithm::Sha256, 0, 5, &not_empty, &[2u8; 32], &[]),
        Err(ProofError::FromEmptyMismatch)
    );
}

#[test]
fn c2sp_signed_note_example() {
    let dir = vectors_dir().join("c2sp");
    let vkey = std::fs::read_to_string(dir.join("signed-note-example.vkey")).expect("vkey");
    let text = std::fs::read(dir.join("signed-note-example.txt")).expect("note");
    let verifier = VerifierKey::parse(vkey.trim()).expect("verifier key parses");
    assert_eq!(verifier.signature_type, SIGNATURE_TYPE_ED25519);
    assert_eq!(verifier.to_text(), vkey.trim(), "verifier key re-encodes byte for byte");
    let note = Note::parse(&text).expect("note parses");
    assert_eq!(note.to_text().as_bytes(), &text[..], "note re-encodes byte for byte");
    assert_eq!(note.signatures.len(), 1);
    verifier.verify(&note.text, &note.signatures[0]).expect("example signature verifies");
    let mut altered = note.clone();
    altered.signatures[0].payload[10] ^= 1;
    assert!(verifier.verify(&altered.text, &altered.signatures[0]).is_err());
    assert!(verifier.verify("This is another message.\n", &note.signatures[0]).is_err());
}

struct SigsumProof {
    log_key_hash: String,
    size: u64,
    root: Digest,
    log_signature: Vec<u8>,
    cosignatures: Vec<(String, u64, Vec<u8>)>,
}

fn read_sigsum_proof(text: &str) -> SigsumProof {
    let mut proof = SigsumProof {
        log_key_hash: String::new(),
        size: 0,
        root: [0; 32],
        log_signature: Vec::new(),
        cosignatures: Vec::new(),
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        match key {
            "log" => proof.log_key_hash = value.to_string(),
            "size" => proof.size = value.parse().expect("size"),
            "root_hash" => proof.root = hex::decode(value).expect("hex").try_into().expect("32"),
            "signature" => proof.log_signature = hex::decode(value).expect("hex"),
            "cosignature" => {
                let parts: Vec<&str> = value.split(' ').collect();
                proof.cosignatures.push((
                    parts[0].to_string(),
                    parts[1].parse().expect("time"),
                    hex::decode(parts[2]).expect("hex"),
                ));
            }
            _ => {}
        }
    }
    proof
}

/// (kind, name, key) from the policy: `log <hex> <url>` and `witness <name> <hex>`.
fn read_sigsum_policy(text: &str) -> Vec<(String, String, VerifyingKey)> {
    let mut keys = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (kind, name, key_hex) = match words.as_slice() {
            ["log", key, url, ..] => ("log", *url, *key),
            ["witness", name, key, ..] => ("witness", *name, *key),
            _ => continue,
        };
        let bytes: [u8; 32] = hex::decode(key_hex).expect("hex").try_into().expect("32");
        keys.push((kind.to_string(), name.to_string(), VerifyingKey::from_bytes(&bytes).expect("key")));
    }
    keys
}

#[test]
fn sigsum_checkpoint_with_eight_witness_cosignatures() {
    let dir = vectors_dir().join("sigsum");
    let proof = read_sigsum_proof(&std::fs::read_to_string(dir.join("proof.txt")).expect("proof"));
    let policy =
        read_sigsum_policy(&std::fs::read_to_string(dir.join("sigsum-test-2025-3.policy")).expect("policy"));
    let key_hash = |key: &VerifyingKey| hex::encode(Sha256::digest(key.as_bytes()));
    let body =
        format!("sigsum.org/v1/tree/{}\n{}\n{}\n", proof.log_key_hash, proof.size, BASE64.encode(proof.root));

    // The log's signature, as a C2SP note signature line under our verifier.
    let (_, log_name, log_key) = policy
        .iter()
        .find(|(kind, _, key)| kind == "log" && key_hash(key) == proof.log_key_hash)
        .expect("log key");
    let log_name = log_name.replace("https://", "");
    let log_verifier = VerifierKey::new(&log_name, SIGNATURE_TYPE_ED25519, *log_key).expect("verifier");
    let log_line = NoteSignature {
        name: log_name.clone(),
        key_id: key_id(&log_name, SIGNATURE_TYPE_ED25519, log_key),
        payload: proof.log_signature.clone(),
    };
    log_verifier.verify(&body, &log_line).expect("log signature verifies");

    // Each witness cosignature, as a cosignature/v1 note line: key ID, big-endian time, signature.
    assert_eq!(proof.cosignatures.len(), 8);
    let mut lines = vec![log_line];
    let mut verifiers = vec![log_verifier];
    for (witness_hash, time, signature) in &proof.cosignatures {
        let (_, name, key) = policy
            .iter()
            .find(|(kind, _, key)| kind == "witness" && &key_hash(key) == witness_hash)
            .expect("witness key in policy");
        let verifier = VerifierKey::new(name, SIGNATURE_TYPE_COSIGNATURE, *key).expect("verifier");
        let mut payload = time.to_be_bytes().to_vec();
        payload.extend_from_slice(signature);
        let line = NoteSignature { name: name.clone(), key_id: verifier.key_id(), payload };
        assert_eq!(verifier.verify(&body, &line), Ok(Some(*time)), "witness {name}");
        lines.push(line);
        verifiers.push(verifier);
    }

    // The whole cosigned note survives our text round trip and still verifies.
    let note = Note { text: body.clone(), signatures: lines };
    let parsed = Note::parse(note.to_text().as_bytes()).expect("parse");
    for (verifier, line) in verifiers.iter().zip(&parsed.signatures) {
        verifier.verify(&parsed.text, line).expect("verifies after round trip");
    }

    // One flipped byte anywhere in a signature, its time or the body fails.
    for (verifier, line) in verifiers.iter().zip(&parsed.signatures) {
        for index in [0, line.payload.len() / 2, line.payload.len() - 1] {
            let mut altered = line.clone();
            altered.payload[index] ^= 0x01;
            assert!(verifier.verify(&parsed.text, &altered).is_err(), "{} byte {index}", line.name);
        }
    }
    let altered_body = body.replacen(&proof.size.to_string(), &(proof.size + 1).to_string(), 1);
    assert!(verifiers.iter().zip(&parsed.signatures).all(|(v, l)| v.verify(&altered_body, l).is_err()));
}
