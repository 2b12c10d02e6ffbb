//! The rfc3161 target against a real TSA: the system's `openssl ts -reply` behind the dev TSA's
//! HTTP server. Tokens at clock precision 0 and 3 verify; a wrong digest, a wrong CA, a nonce
//! or policy mismatch, a signer whose timeStamping EKU is not critical, a signer that is a CA
//! and a token without the ESS signing-certificate binding are refused; one TSA down fails
//! over to the next; a token with any one byte changed does not verify.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use remembrancer_anchor::devtsa::{DevTsa, POLICY};
use remembrancer_anchor::rfc3161::{Rfc3161, Rfc3161Config};
use remembrancer_anchor::tsp::{self, Expected, TspError};
use remembrancer_anchor::{AnchorState, ErrorKind, Status, Target};

const ROOT: [u8; 32] = [0x42; 32];

fn roots(tsa: &DevTsa) -> Vec<openssl::x509::X509> {
    tsp::trusted_roots(&std::fs::read(&tsa.ca).expect("succeeds")).expect("succeeds")
}

fn expected(nonce: u64) -> Expected {
    Expected { imprint: tsp::imprint(&ROOT), nonce: Some(nonce), policy: Some(POLICY.to_string()) }
}

/// A token straight from `openssl ts -reply`.
fn token(tsa: &DevTsa, nonce: u64) -> Vec<u8> {
    let reply = tsa.reply(&tsp::request(&tsp::imprint(&ROOT), nonce)).expect("succeeds");
    tsp::response_token(&reply).expect("succeeds")
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("succeeds");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A certificate named `name` with `extensions`, issued by the dev TSA's CA now, and its key.
fn signer(tsa: &DevTsa, dir: &Path, name: &str, extensions: &str) -> (String, String) {
    std::fs::write(dir.join(format!("{name}.cnf")), format!("[x]\n{extensions}\n")).expect("succeeds");
    let (ca, ca_key) = (tsa.ca.display().to_string(), tsa.ca.with_file_name("ca.key").display().to_string());
    let (key, csr, cert, cnf) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.cnf"));
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "30",
            "-extfile",
            &cnf,
            "-extensions",
            "x",
        ],
    );
    (cert, key)
}

/// `token`'s TSTInfo signed again by `signer`, with the ESS signing-certificate attribute when
/// `cades`.
fn resigned(dir: &Path, token: &[u8], signer: &(String, String), cades: bool) -> Vec<u8> {
    std::fs::write(dir.join("token.der"), token).expect("succeeds");
    openssl(
        dir,
        &["cms", "-verify", "-inform", "DER", "-in", "token.der", "-noverify", "-binary", "-out", "tst.der"],
    );
    let mut args = vec![
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-econtent_type",
        "1.2.840.113549.1.9.16.1.4",
        "-signer",
        &signer.0,
        "-inkey",
        &signer.1,
        "-md",
        "sha256",
        "-outform",
        "DER",
        "-nosmimecap",
        "-in",
        "tst.der",
        "-out",
        "other.der",
    ];
    if cades {
        args.push("-cades");
    }
    openssl(dir, &args);
    std::fs::read(dir.join("other.der")).expect("succeeds")
}

const GOOD_TSA: &str = "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = critical, timeStamping";

#[test]
fn tokens_at_clock_precision_0_and_3_verify() {
    let dir = tempfile::tempdir().expect("succeeds");
    for precision in [0u8, 3] {
        let tsa = DevTsa::create(&dir.path().join(format!("p{precision}")), "Dev TSA", precision)
            .expect("succeeds");
        // A genTime whose milliseconds end in 0 drops its trailing zeros, and one of .000 has no
        // fraction at all (DER): take the first of a few that shows one, at precision 3.
        let mut fractional = false;
        for nonce in 1..=5u64 {
            let info =
                tsp::verify_token(&token(&tsa, nonce), &roots(&tsa), &expected(nonce)).expect("succeeds");
            assert_eq!(info.policy, POLICY);
            assert_eq!(info.signer, "CN=Dev TSA");
            assert_eq!(info.accuracy.as_deref(), Some("1 s"));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("succeeds")
                .as_secs();
            assert!(info.unix.abs_diff(now) <= 5, "genTime {} is now", info.gen_time);
            if precision == 0 {
                assert!(!info.gen_time.contains('.'), "{}", info.gen_time);
                assert_eq!(info.millis, 0);
            } else if let Some((_, fraction)) = info.gen_time.trim_end_matches('Z').split_once('.') {
                assert!(fraction.len() <= 3);
                assert_eq!(info.millis, format!("{fraction:0<3}").parse::<u32>().expect("succeeds"));
                fractional = true;
                break;
            }
        }
        assert!(precision == 0 || fractional, "no genTime with a fraction in five tokens at precision 3");
    }
}

#[test]
fn wrong_digest_ca_nonce_and_policy_are_refused() {
    let dir = tempfile::tempdir().expect("succeeds");
    let tsa = DevTsa::create(&dir.path().join("tsa"), "Dev TSA", 3).expect("succeeds");
    let other = DevTsa::create(&dir.path().join("other"), "Other TSA", 3).expect("succeeds");
    let token = token(&tsa, 7);
    assert!(tsp::verify_token(&token, &roots(&tsa), &expected(7)).is_ok());
    let mut wrong = expected(7);
    wrong.imprint = tsp::imprint(&[0x43; 32]);
    assert!(matches!(tsp::verify_token(&token, &roots(&tsa), &wrong), Err(TspError::Imprint(_))));
    let refused = tsp::verify_token(&token, &roots(&other), &expected(7));
    assert!(
        matches!(&refused, Err(TspError::Signature(reason)) if reason.contains("unable to get local issuer")),
        "{refused:?}"
    );
    assert_eq!(
        tsp::verify_token(&token, &roots(&tsa), &expected(8)),
        Err(TspError::Nonce { sent: 8, found: Some(7) })
    );
    let mut policy = expected(7);
    policy.policy = Some("1.2.3.4".into());
    assert!(matches!(tsp::verify_token(&token, &roots(&tsa), &policy), Err(TspError::Policy { .. })));
    // An auditor has no nonce: the token verifies without one.
    let mut audit = expected(7);
    audit.nonce = None;
    assert!(tsp::verify_token(&token, &roots(&tsa), &audit).is_ok());
}

#[test]
fn a_signer_not_fit_to_time_stamp_is_refused() {
    let dir = tempfile::tempdir().expect("succeeds");
    let d = dir.path();
    let tsa = DevTsa::create(&d.join("tsa"), "Dev TSA", 3).expect("succeeds");
    let ku = "keyUsage = critical, digitalSignature";
    let good = signer(&tsa, d, "Good", GOOD_TSA);
    let noncritical = signer(
        &tsa,
        d,
        "NonCritical",
        &format!("basicConstraints = critical, CA:FALSE\n{ku}\nextendedKeyUsage = timeStamping"),
    );
    let mixed = signer(&tsa, d, "Mixed", &format!("basicConstraints = critical, CA:FALSE\n{ku}\nextendedKeyUsage = critical, timeStamping, codeSigning"));
    let ca = signer(
        &tsa,
        d,
        "Ca",
        &format!("basicConstraints = critical, CA:TRUE\n{ku}\nextendedKeyUsage = critical, timeStamping"),
    );
    // The token comes after the signers' certificates: each was valid at its genTime.
    std::thread::sleep(Duration::from_millis(1100));
    let original = token(&tsa, 7);
    let verify = |token: &[u8]| tsp::verify_token(token, &roots(&tsa), &expected(7));
    // The same TSTInfo signed by a certificate fit to time-stamp: accepted (what the cases
    // below change is the certificate, not the re-signing).
    assert_eq!(verify(&resigned(d, &original, &good, true)).expect("succeeds").signer, "CN=Good");
    // timeStamping, not critical.
    let refused = verify(&resigned(d, &original, &noncritical, true));
    assert!(
        matches!(&refused, Err(TspError::Signature(reason)) if reason.contains("purpose")),
        "{refused:?}"
    );
    // timeStamping and another usage.
    let refused = verify(&resigned(d, &original, &mixed, true));
    assert!(
        matches!(&refused, Err(TspError::Signature(reason)) if reason.contains("purpose")),
        "{refused:?}"
    );
    // A CA certificate as the signer.
    let refused = verify(&resigned(d, &original, &ca, true));
    assert!(matches!(&refused, Err(TspError::Signer(reason)) if reason.contains("CA")), "{refused:?}");
    // No ESS signing-certificate attribute.
    let refused = verify(&resigned(d, &original, &good, false));
    assert!(matches!(&refused, Err(TspError::Signer(reason)) if reason.contains("ESS")), "{refused:?}");
    // A certificate made after the genTime: the chain is checked at genTime, not now.
    std::thread::sleep(Duration::from_millis(1100));
    let late = signer(&tsa, d, "Late", GOOD_TSA);
    let refused = verify(&resigned(d, &original, &late, true));
    assert!(
        matches!(&refused, Err(TspError::Signature(reason)) if reason.contains("not yet valid")),
        "{refused:?}"
    );
}

#[test]
fn every_one_byte_change_of_a_token_is_refused() {
    let dir = tempfile::tempdir().expect("succeeds");
    let tsa = DevTsa::create(&dir.path().join("tsa"), "Dev TSA", 3).expect("succeeds");
    let token = token(&tsa, 7);
    let roots = roots(&tsa);
    let good = tsp::verify_token(&token, &roots, &expected(7)).expect("succeeds");
    let mut accepted = Vec::new();
    for i in 0..token.len() {
        let mut changed = token.clone();
        changed[i] ^= 0x01;
        if let Ok(info) = tsp::verify_token(&changed, &roots, &expected(7)) {
            accepted.push((i, info == good));
        }
    }
    assert!(
        accepted.is_empty(),
        "{} of {} one-byte changes verify: {accepted:?}",
        accepted.len(),
        token.len()
    );
}

fn state() -> AnchorState {
    AnchorState::new("rfc3161", ROOT, b"request".to_vec(), 1)
}

fn persist(_: &AnchorState) -> Result<(), String> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_stamps_and_fails_over_to_the_next_tsa() {
    let dir = tempfile::tempdir().expect("succeeds");
    let tsa = Arc::new(DevTsa::create(&dir.path().join("tsa"), "Dev TSA", 3).expect("succeeds"));
    let url = Arc::clone(&tsa).serve().await.expect("succeeds");
    // A port nothing listens on, first.
    let closed =
        std::net::TcpListener::bind("127.0.0.1:0").expect("succeeds").local_addr().expect("succeeds");
    let config = Rfc3161Config {
        urls: vec![format!("http://{closed}/"), url.clone()],
        roots: roots(&tsa),
        policy: Some(POLICY.to_string()),
        timeout: Duration::from_secs(10),
    };
    let target = Rfc3161::new(config.clone()).expect("succeeds");
    let stamped = target.step(state(), 2, &persist).await.expect("succeeds");
    assert_eq!(stamped.status, Status::Final);
    let stamp = stamped.stamp.as_ref().expect("succeeds");
    assert_eq!(stamp.tsa, url);
    assert_eq!(stamped.cost.transactions, 2, "two TSAs asked");
    // The stored token verifies offline, without the nonce.
    let audit = Expected { imprint: tsp::imprint(&ROOT), nonce: None, policy: None };
    assert_eq!(tsp::verify_token(&stamp.token, &config.roots, &audit).expect("succeeds"), stamp.info);
    // A final anchor is not stamped again.
    assert_eq!(target.step(stamped.clone(), 3, &persist).await.expect("succeeds"), stamped);

    // Only the closed port: retryable.
    let down = Rfc3161::new(Rfc3161Config { urls: vec![format!("http://{closed}/")], ..config.clone() })
        .expect("succeeds");
    let error = down.step(state(), 2, &persist).await.expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    // Tokens that never verify (another CA trusted): fatal, and it says what to check.
    let other = DevTsa::create(&dir.path().join("other"), "Other TSA", 3).expect("succeeds");
    let mistrusted =
        Rfc3161::new(Rfc3161Config { urls: vec![url.clone()], roots: roots(&other), ..config.clone() })
            .expect("succeeds");
    let error = mistrusted.step(state(), 2, &persist).await.expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
    assert!(error.message.contains("tsa_ca_file"), "{error}");
    // An answer that is not a TimeStampResp (the URL is not a TSA's): refused, not a crash.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("succeeds");
    let garbage_url = format!("http://{}/", listener.local_addr().expect("succeeds"));
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let body = [0x30u8, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01];
            let head =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
            let _ = socket.write_all(&[head.as_bytes(), &body].concat()).await;
        }
    });
    let garbage = Rfc3161::new(Rfc3161Config { urls: vec![garbage_url], ..config }).expect("succeeds");
    let error = garbage.step(state(), 2, &persist).await.expect_err("refused");
    assert!(error.message.contains("not a time-stamp token"), "{error}");
}
