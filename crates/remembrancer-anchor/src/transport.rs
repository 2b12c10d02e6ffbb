//! The JSON-RPC transport of the eip155 target: HTTP POST with reqwest, like alloy's own, but
//! reading at most [`ANSWER_BYTES_MAX`] of an answer. alloy's reads a whole answer whatever its
//! size; a hostile or broken endpoint must not be able to exhaust a node's memory.

use std::task;

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};

/// Largest answer read from an endpoint, bytes (a block with its transactions' hashes fits
/// many times over).
pub const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// An HTTP JSON-RPC transport with a bound on what it reads.
#[derive(Debug, Clone)]
pub struct BoundedHttp {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl BoundedHttp {
    /// A transport to `url`.
    pub fn new(url: reqwest::Url) -> Self {
        BoundedHttp { client: reqwest::Client::new(), url }
    }

    async fn post(self, request: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let mut response =
            self.client.post(self.url).json(&request).send().await.map_err(TransportErrorKind::custom)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(TransportErrorKind::custom)? {
            if body.len() + chunk.len() > ANSWER_BYTES_MAX {
                return Err(TransportErrorKind::custom_str(&format!(
                    "the answer is larger than {ANSWER_BYTES_MAX} bytes: not read"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(TransportErrorKind::http_error(
                status.as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|error| TransportError::deser_err(error, String::from_utf8_lossy(&body)))
    }
}

impl tower::Service<RequestPacket> for BoundedHttp {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut task::Context<'_>) -> task::Poll<Result<(), Self::Error>> {
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        Box::pin(self.clone().post(request))
    }
}
