//! A local time-stamp authority for the devnet and the tests: the system's `openssl ts -reply`
//! behind a small HTTP server on 127.0.0.1. Its PKI is made at start in a folder of the
//! caller's: a root CA (`ca.pem`, what verifiers trust) and a TSA certificate it issued, with a
//! critical extended key usage of timeStamping only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The policy the dev TSA stamps under.
pub const POLICY: &str = "1.3.6.1.4.1.57264.3161.1";

/// Largest query the dev TSA reads, bytes.
const QUERY_BYTES_MAX: usize = 16 * 1024;

/// A TSA made by `openssl`, answering from its folder.
pub struct DevTsa {
    dir: PathBuf,
    /// The root CA its certificate chains to (PEM).
    pub ca: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// Its certificate (PEM).
    pub cert: PathBuf,
    config: PathBuf,
    /// `openssl ts -reply` keeps its serial in a file: one answer at a time.
    lock: Mutex<()>,
    count: AtomicU64,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl ({e}): install it (Debian: apt-get install openssl)"))?;
    if !output.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

const EXTENSIONS: &str = "\
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[tsa]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl DevTsa {
    /// Makes a CA and a TSA in `dir` (created), stamping genTime with `precision` fractional
    /// digits (0 to 6), and an accuracy of 1 s.
    pub fn create(dir: &Path, name: &str, precision: u8) -> Result<DevTsa, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let write = |file: &str, text: &str| {
            std::fs::write(dir.join(file), text).map_err(|e| format!("cannot write {file}: {e}"))
        };
        write("extensions.cnf", EXTENSIONS)?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let ca_subject = format!("/CN={name} Root CA");
        openssl(
            dir,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "3650",
                    "-subj",
                    &ca_subject,
                    "-config",
                    "extensions.cnf",
                    "-extensions",
                    "ca",
                ],
            ]
            .concat(),
        )?;
        let tsa_subject = format!("/CN={name}");
        openssl(
            dir,
            &[
                &["req", "-new"][..],
                &ec,
                &[
                    "-keyout",
                    "tsa.key",
                    "-out",
                    "tsa.csr",
                    "-subj",
                    &tsa_subject,
                    "-config",
                    "extensions.cnf",
                ],
            ]
            .concat(),
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "tsa.pem",
                "-days",
                "3650",
                "-extfile",
                "extensions.cnf",
                "-extensions",
                "tsa",
            ],
        )?;
        write("serial", "01\n")?;
        write(
            "tsa.cnf",
            &format!(
                "[tsa]\ndefault_tsa = dev\n[dev]\nserial = ./serial\ncrypto_device = builtin\nsigner_digest = sha256\n\
                 default_policy = {POLICY}\ndigests = sha256\naccuracy = secs:1\nclock_precision_digits = {precision}\n\
                 ordering = no\ntsa_name = yes\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n"
            ),
        )?;
        Ok(DevTsa {
            ca: dir.join("ca.pem"),
            key: dir.join("tsa.key"),
            cert: dir.join("tsa.pem"),
            config: dir.join("tsa.cnf"),
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
            count: AtomicU64::new(0),
        })
    }

    /// Answers a TimeStampReq with a TimeStampResp (`openssl ts -reply`).
    pub fn reply(&self, query: &[u8]) -> Result<Vec<u8>, String> {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let (query_file, reply_file) = (format!("query-{n}.tsq"), format!("reply-{n}.tsr"));
        std::fs::write(self.dir.join(&query_file), query)
            .map_err(|e| format!("cannot write the query: {e}"))?;
        let result = {
            let _one = self.lock.lock().map_err(|_| "the TSA's lock is poisoned".to_string())?;
            let config = self.config.display().to_string();
            let (key, cert) = (self.key.display().to_string(), self.cert.display().to_string());
            openssl(
                &self.dir,
                &[
                    "ts",
                    "-reply",
                    "-config",
                    &config,
                    "-queryfile",
                    &query_file,
                    "-inkey",
                    &key,
                    "-signer",
                    &cert,
                    "-out",
                    &reply_file,
                ],
            )
            .and_then(|_| std::fs::read(self.dir.join(&reply_file)).map_err(|e| format!("no reply: {e}")))
        };
        let _ = std::fs::remove_file(self.dir.join(&query_file));
        let _ = std::fs::remove_file(self.dir.join(&reply_file));
        result
    }

    /// Serves `POST /` (any path) on 127.0.0.1 at a free port; returns the URL.
    pub async fn serve(self: Arc<Self>) -> Result<String, String> {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot listen: {e}"))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let tsa = Arc::clone(&self);
        let answer = move |body: axum::body::Bytes| {
            let tsa = Arc::clone(&tsa);
            async move {
                use axum::http::{header, StatusCode};
                if body.len() > QUERY_BYTES_MAX {
                    return (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        [(header::CONTENT_TYPE, "text/plain")],
                        b"query too large".to_vec(),
                    );
                }
                match tokio::task::spawn_blocking(move || tsa.reply(&body)).await {
                    Ok(Ok(reply)) => {
                        (StatusCode::OK, [(header::CONTENT_TYPE, "application/timestamp-reply")], reply)
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "dev TSA: no reply");
                        (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain")], error.into_bytes())
                    }
                    Err(error) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(header::CONTENT_TYPE, "text/plain")],
                        error.to_string().into_bytes(),
                    ),
                }
            }
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(answer))
            .layer(axum::extract::DefaultBodyLimit::max(QUERY_BYTES_MAX));
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "dev TSA stopped");
            }
        });
        Ok(format!("http://{address}/"))
    }
}
