//! The `rfc3161` target: a time-stamp token over `"RMB1" || root` from one of several TSAs
//! (RFC 3161 over HTTP, `application/timestamp-query`), verified (`tsp.rs`) before the anchor
//! is called final. A token is final when it is verified: there is no depth to wait for.
//!
//! A TSA that does not answer, or answers with an error, is passed over for the next; a root
//! no TSA stamps is tried again with backoff. When every TSA answered and none gave a token
//! that verifies against the configured roots, the anchor fails: the operator's trust roots or
//! policy do not match the TSAs configured.

use std::time::Duration;

use openssl::x509::X509;

use crate::state::{AnchorState, Stamp, Status};
use crate::tsp::{self, Expected, TspError, TOKEN_BYTES_MAX};
use crate::{Target, TargetError};

/// The target's name, as receipts write it.
pub const NAME: &str = "rfc3161";

/// The TSAs, and what their tokens must verify against.
#[derive(Clone)]
pub struct Rfc3161Config {
    /// The TSAs' URLs, tried in order.
    pub urls: Vec<String>,
    /// The trust roots their tokens must chain to.
    pub roots: Vec<X509>,
    /// The policy tokens must carry (dotted), if one is required.
    pub policy: Option<String>,
    /// Longest wait for one TSA's answer.
    pub timeout: Duration,
}

/// The rfc3161 target.
pub struct Rfc3161 {
    config: Rfc3161Config,
    client: reqwest::Client,
}

/// How one TSA's answer went wrong.
enum Failure {
    /// No answer, an HTTP error, an answer too large, or a refusal: another try may work.
    Unreachable(String),
    /// A token that does not verify.
    Refused(TspError),
}

impl Rfc3161 {
    /// The target over `config`'s TSAs.
    pub fn new(config: Rfc3161Config) -> Result<Self, TargetError> {
        if config.urls.is_empty() {
            return Err(TargetError::fatal(NAME, "no TSA is configured: set tsa_urls in [anchor]"));
        }
        for url in &config.urls {
            reqwest::Url::parse(url)
                .map_err(|e| TargetError::fatal(NAME, format!("{url:?} is not a URL: {e}")))?;
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| TargetError::fatal(NAME, format!("no HTTP client: {e}")))?;
        Ok(Rfc3161 { config, client })
    }

    /// Asks `url` for a token over `imprint` with `nonce`; verifies what comes back.
    async fn ask(&self, url: &str, expected: &Expected) -> Result<(Vec<u8>, tsp::TokenInfo), Failure> {
        let nonce = expected.nonce.unwrap_or_default();
        let request = tsp::request(&expected.imprint, nonce);
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/timestamp-query")
            .body(request)
            .send()
            .await;
        let mut response = sent.map_err(|e| Failure::Unreachable(format!("{url}: {e}")))?;
        let status = response.status();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > TOKEN_BYTES_MAX {
                        return Err(Failure::Unreachable(format!(
                            "{url}: an answer larger than {TOKEN_BYTES_MAX} bytes, not read"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(Failure::Unreachable(format!("{url}: {e}"))),
            }
        }
        if !status.is_success() {
            return Err(Failure::Unreachable(format!("{url}: HTTP {status}")));
        }
        let token = match tsp::response_token(&body) {
            Ok(token) => token,
            Err(error @ TspError::NotGranted { .. }) => {
                return Err(Failure::Unreachable(format!("{url}: {error}")))
            }
            Err(error) => return Err(Failure::Refused(error)),
        };
        let info = tsp::verify_token(&token, &self.config.roots, expected).map_err(Failure::Refused)?;
        Ok((token, info))
    }
}

impl Target for Rfc3161 {
    fn name(&self) -> &str {
        NAME
    }

    async fn step(
        &self,
        mut state: AnchorState,
        now_ms: u64,
        _persist: &(dyn Fn(&AnchorState) -> Result<(), String> + Send + Sync),
    ) -> Result<AnchorState, TargetError> {
        if !state.is_open() {
            return Ok(state);
        }
        let mut nonce = [0u8; 8];
        openssl::rand::rand_bytes(&mut nonce)
            .map_err(|e| TargetError::retryable(NAME, format!("no randomness for a nonce: {e}")))?;
        let expected = Expected {
            imprint: tsp::imprint(&state.root),
            nonce: Some(u64::from_be_bytes(nonce)),
            policy: self.config.policy.clone(),
        };
        let mut unreachable = Vec::new();
        let mut refused = Vec::new();
        for url in &self.config.urls {
            state.cost.transactions = state.cost.transactions.saturating_add(1);
            match self.ask(url, &expected).await {
                Ok((token, info)) => {
                    tracing::info!(tsa = %url, gen_time = %info.gen_time, serial = %info.serial, "time-stamped");
                    state.stamp = Some(Stamp { tsa: url.clone(), token, info });
                    state.status = Status::Final;
                    state.updated_ms = now_ms;
                    return Ok(state);
                }
                Err(Failure::Unreachable(reason)) => {
                    tracing::warn!(%reason, "a TSA gave no token; trying the next");
                    unreachable.push(reason);
                }
                Err(Failure::Refused(error)) => {
                    tracing::warn!(tsa = %url, %error, "a TSA's token is refused; trying the next");
                    refused.push(format!("{url}: {error}"));
                }
            }
        }
        if unreachable.is_empty() {
            return Err(TargetError::fatal(
                NAME,
                format!(
                    "no TSA's token verifies ({}): check tsa_ca_file and tsa_policy in [anchor]",
                    refused.join("; ")
                ),
            ));
        }
        unreachable.extend(refused);
        Err(TargetError::retryable(NAME, format!("no token: {}", unreachable.join("; "))))
    }
}
