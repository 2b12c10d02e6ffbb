//! `remembrancer verify checkpoint` on checkpoints another implementation wrote: a signer and
//! cosigner written here from the C2SP specs alone (c2sp.org/signed-note,
//! c2sp.org/tlog-checkpoint, c2sp.org/tlog-cosignature), with raw ed25519-dalek and SHA-256,
//! none of Remembrancer's note code. Origin `<federation>/<namespace>`, signers named by their
//! registry DIDs, zero or more extension lines.

mod common;

use std::process::Command;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest as _, Sha256};

/// signed-note: the key ID is the first 4 bytes of SHA-256(name || 0x0A || type || key).
fn key_id(name: &str, signature_type: u8, key: &SigningKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', signature_type]);
    hasher.update(key.verifying_key().as_bytes());
    hasher.finalize()[..4].try_into().expect("4 bytes")
}

/// signed-note: an Ed25519 signature (type 0x01) over the body.
fn note_signature(name: &str, key: &SigningKey, body: &str) -> String {
    let mut payload = key_id(name, 0x01, key).to_vec();
    payload.extend(key.sign(body.as_bytes()).to_bytes());
    format!("\u{2014} {name} {}\n", BASE64.encode(payload))
}

/// tlog-cosignature: type 0x04, over "cosignature/v1\ntime T\n" and the body; the payload is
/// key ID, the time as 8 big-endian bytes, the signature.
fn cosignature(name: &str, key: &SigningKey, body: &str, time: u64) -> String {
    let message = format!("cosignature/v1\ntime {time}\n{body}");
    let mut payload = key_id(name, 0x04, key).to_vec();
    payload.extend(time.to_be_bytes());
    payload.extend(key.sign(message.as_bytes()).to_bytes());
    format!("\u{2014} {name} {}\n", BASE64.encode(payload))
}

struct Federation {
    dir: tempfile::TempDir,
    keys: Vec<(String, SigningKey)>,
}

impl Federation {
    /// Three members, quorum 2; n1 owns dao:vaultmesh.
    fn new() -> Federation {
        let dir = tempfile::tempdir().expect("dir");
        let keys: Vec<(String, SigningKey)> = (1..=3)
            .map(|i| (format!("did:vm:node:n{i}"), SigningKey::from_bytes(&[i as u8 * 11; 32])))
            .collect();
        let peers: String = keys
            .iter()
            .enumerate()
            .map(|(i, (did, key))| {
                let pubkey = remembrancer_core::identity::multibase_public_key(&key.verifying_key());
                let owns = if i == 0 { "\n      namespaces: [\"dao:vaultmesh\"]" } else { "" };
                format!("    - did: \"{did}\"\n      pubkey: \"{pubkey}\"{owns}\n")
            })
            .collect();
        let registry = format!("federation:\n  name: \"vaultmesh-primary\"\n  quorum: 2\n  peers:\n{peers}");
        std::fs::write(dir.path().join("registry.yaml"), registry).expect("registry");
        Federation { dir, keys }
    }

    /// `remembrancer verify checkpoint NOTE --registry registry.yaml`: (passed, output).
    fn verify(&self, note: &str) -> (bool, String) {
        let file = self.dir.path().join("checkpoint.txt");
        std::fs::write(&file, note).expect("note");
        let output = Command::new(common::exe())
            .args(["verify", "checkpoint"])
            .arg(&file)
            .arg("--registry")
            .arg(self.dir.path().join("registry.yaml"))
            .output()
            .expect("run");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

#[test]
fn checkpoints_signed_and_cosigned_from_the_c2sp_specs_verify_with_any_extension_lines() {
    let federation = Federation::new();
    let [(owner, owner_key), (witness, witness_key), (other, other_key)] = &federation.keys[..] else {
        unreachable!()
    };
    let root = BASE64.encode(Sha256::digest(b"some tree"));
    let signed = |body: &str| {
        format!(
            "{body}\n{}{}",
            note_signature(owner, owner_key, body),
            cosignature(witness, witness_key, body, 1_765_000_000)
        )
    };

    // No extension line: checked as a plain C2SP checkpoint, and the output says so.
    let body = format!("vaultmesh-primary/dao:vaultmesh\n5\n{root}\n");
    let (ok, text) = federation.verify(&signed(&body));
    assert!(ok, "{text}");
    assert!(
        text.contains("ok   extension: no remembrancer/anchor/v1 line: checked as a plain C2SP checkpoint"),
        "{text}"
    );
    assert!(text.contains("ok   quorum: 2 distinct active signers"), "{text}");

    // Extension lines of another log's: signed like the rest, not interpreted.
    let body =
        format!("vaultmesh-primary/dao:vaultmesh\n5\n{root}\nexample.org/ext one\nexample.org/ext two\n");
    let (ok, text) = federation.verify(&signed(&body));
    assert!(ok && text.contains("2 other extension lines, signed, not interpreted"), "{text}");

    // An anchor line is checked: named in the output, and a bad one fails.
    let anchor = "remembrancer/anchor/v1 hash=sha256 target=local tx=- block=- anchored=1765000000 signed=1765000000 registry=1";
    let body = format!("vaultmesh-primary/dao:vaultmesh\n5\n{root}\n{anchor}\n");
    let (ok, text) = federation.verify(&signed(&body));
    assert!(
        ok && text.contains("ok   extension: remembrancer/anchor/v1 line checked: hash sha256, target local"),
        "{text}"
    );
    let body = format!(
        "vaultmesh-primary/dao:vaultmesh\n5\n{root}\n{}\n",
        anchor.replace("hash=sha256", "hash=md5")
    );
    let (ok, text) = federation.verify(&signed(&body));
    assert!(!ok && text.contains("FAIL extension"), "{text}");

    // What must still fail: a changed root, one signature short of the quorum, a signer that
    // does not own the namespace, another federation's origin.
    let body = format!("vaultmesh-primary/dao:vaultmesh\n5\n{root}\n");
    let note = signed(&body);
    let tampered = note.replacen("\n5\n", "\n6\n", 1);
    let (ok, text) = federation.verify(&tampered);
    assert!(!ok && text.contains("signature does not verify"), "{text}");
    let (ok, text) = federation.verify(&format!("{body}\n{}", note_signature(owner, owner_key, &body)));
    assert!(!ok && text.contains("FAIL quorum: 1 distinct active signers"), "{text}");
    let usurped = format!(
        "{body}\n{}{}",
        note_signature(other, other_key, &body),
        cosignature(witness, witness_key, &body, 1_765_000_000)
    );
    let (ok, text) = federation.verify(&usurped);
    assert!(!ok && text.contains("does not own namespace dao:vaultmesh"), "{text}");
    let body = format!("elsewhere/dao:vaultmesh\n5\n{root}\n");
    let (ok, text) = federation.verify(&signed(&body));
    assert!(!ok && text.contains("FAIL federation"), "{text}");
}
