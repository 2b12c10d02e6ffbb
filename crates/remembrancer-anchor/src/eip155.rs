//! The `eip155` target: a root is anchored by an EIP-1559 transaction from the anchoring
//! account to its own address, value zero, calldata `"RMB1" || root` (36 bytes).
//!
//! The node owns its nonce: one writer hands them out in order, and takes the chain's count
//! again after any nonce error or a transaction that vanished. A transaction is signed and
//! persisted before it is sent, so one killed between the two sends the same bytes again (the
//! same hash: ECDSA signatures here are deterministic) rather than paying a second time. It
//! waits for `confirmations` blocks on its own clock, re-reads the block hash at the inclusion
//! height until then (a different hash, or no receipt, is a reorg: the same transaction is sent
//! again, or the root anchored anew), and replaces a transaction stuck for `stuck_after_ms`
//! with both fee fields raised by at least 12.5 %.

use std::time::Duration;

use alloy::consensus::{SignableTransaction as _, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718 as _;
use alloy::network::TxSignerSync as _;
use alloy::primitives::{Address, Bytes, TxKind, B256, U128, U256, U64};
use alloy::rpc::client::{ClientBuilder, RpcClient};
use alloy::signers::local::PrivateKeySigner;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::state::{AnchorState, Inclusion, SentTransaction, Status, TRANSACTIONS_MAX};
use crate::{Target, TargetError};

/// The calldata's tag: what an anchor transaction says before the root.
pub const CALLDATA_TAG: &[u8; 4] = b"RMB1";

/// Gas limit of an anchor transaction: 21 000 plus 36 bytes of calldata under any fork's
/// pricing (EIP-7623's floor included), with room to spare; only the gas used is paid.
pub const GAS_LIMIT: u64 = 30_000;

/// The calldata that anchors `root`.
pub fn calldata(root: &[u8; 32]) -> Vec<u8> {
    let mut data = CALLDATA_TAG.to_vec();
    data.extend_from_slice(root);
    data
}

/// How the target reaches its chain and pays.
#[derive(Debug, Clone)]
pub struct Eip155Config {
    /// The JSON-RPC endpoint (`http://127.0.0.1:8545`), or several separated by commas: the
    /// next is used when one does not answer (each is checked to be on `chain_id` first).
    pub rpc_url: String,
    /// The chain the operator means: the endpoint's `eth_chainId` must say the same.
    pub chain_id: u64,
    /// Blocks on top of (and including) the anchor's before it is final.
    pub confirmations: u64,
    /// A transaction not in a block after this long is replaced with higher fees.
    pub stuck_after_ms: u64,
    /// The most `maxFeePerGas` this node pays, wei: a chain asking more is a fatal error
    /// (the operator raises it, or waits).
    pub max_fee_per_gas: u128,
    /// Longest wait for one RPC answer.
    pub rpc_timeout: Duration,
}

/// The `eip155:<chain id>` target.
pub struct Eip155 {
    name: String,
    config: Eip155Config,
    /// The endpoints: URL, client, and whether it was seen on `chain_id` (0 not yet, 1 yes,
    /// 2 on another chain: never used).
    endpoints: Vec<(String, RpcClient, std::sync::atomic::AtomicU8)>,
    /// The endpoint in use.
    active: std::sync::atomic::AtomicUsize,
    signer: PrivateKeySigner,
    /// The next nonce to hand out; `None`: ask the chain first.
    nonce: Mutex<Option<u64>>,
    /// The treasury's caps and this node's spending (none: no caps).
    budget: Option<std::sync::Arc<crate::budget::Budget>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    block_number: Option<U64>,
    block_hash: Option<B256>,
    transaction_index: Option<U64>,
    gas_used: U64,
    effective_gas_price: Option<U128>,
    status: Option<U64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    number: U64,
    hash: B256,
    timestamp: U64,
    base_fee_per_gas: Option<U128>,
}

impl Eip155 {
    /// A target over `config`, paying from `key` (32 secret bytes). Checks that the endpoint
    /// answers and is on `config.chain_id`.
    pub async fn connect(config: Eip155Config, key: &[u8; 32]) -> Result<Eip155, TargetError> {
        let name = format!("eip155:{}", config.chain_id);
        let mut endpoints = Vec::new();
        for text in config.rpc_url.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let url = text
                .parse()
                .map_err(|e| TargetError::fatal(&name, format!("rpc_url {text:?} is not a URL: {e}")))?;
            endpoints.push((text.to_string(), client(url), std::sync::atomic::AtomicU8::new(0)));
        }
        if endpoints.is_empty() {
            return Err(TargetError::fatal(&name, "rpc_url names no endpoint"));
        }
        let signer = PrivateKeySigner::from_bytes(&B256::from(*key)).map_err(|e| {
            TargetError::fatal(&name, format!("the anchoring key is not a secp256k1 key: {e}"))
        })?;
        let target = Eip155 {
            name,
            config,
            endpoints,
            active: std::sync::atomic::AtomicUsize::new(0),
            signer,
            nonce: Mutex::new(None),
            budget: None,
        };
        // One endpoint that answers, on the right chain.
        let _: U64 = target.call("eth_chainId", ()).await?;
        Ok(target)
    }

    /// Whether endpoint `index` is on the configured chain (asked once, then remembered). An
    /// endpoint on another chain is a fatal error when it is the only one.
    async fn on_chain(&self, index: usize) -> Result<bool, TargetError> {
        use std::sync::atomic::Ordering;
        let (url, client, seen) = &self.endpoints[index];
        match seen.load(Ordering::Relaxed) {
            1 => return Ok(true),
            2 => return Ok(false),
            _ => {}
        }
        let answer =
            tokio::time::timeout(self.config.rpc_timeout, client.request::<_, U64>("eth_chainId", ())).await;
        let chain = match answer {
            Ok(Ok(chain)) => chain.to::<u64>(),
            Ok(Err(error)) => {
                return Err(TargetError::retryable(&self.name, format!("eth_chainId at {url}: {error}")))
            }
            Err(_) => {
                return Err(TargetError::retryable(&self.name, format!("eth_chainId: no answer from {url}")))
            }
        };
        let right = chain == self.config.chain_id;
        seen.store(if right { 1 } else { 2 }, Ordering::Relaxed);
        if !right {
            let message = format!(
                "{url} is chain {chain}, not {}: point rpc_url at chain {} or set chain_id to {chain}",
                self.config.chain_id, self.config.chain_id
            );
            if self.endpoints.len() == 1 {
                return Err(TargetError::fatal(&self.name, message));
            }
            tracing::error!(%message, "an anchoring endpoint is on another chain; it is not used");
        }
        Ok(right)
    }

    /// Applies the treasury's caps in `budget` to every transaction from now on.
    pub fn with_budget(mut self, budget: std::sync::Arc<crate::budget::Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Refuses, as held, a transaction whose worst cost the budget does not allow.
    fn check_budget(&self, now_ms: u64, max_fee: u128) -> Result<(), TargetError> {
        let Some(budget) = &self.budget else { return Ok(()) };
        let worst = max_fee.saturating_mul(u128::from(GAS_LIMIT));
        budget.allow(now_ms, worst).map_err(|why| TargetError::held(&self.name, why))
    }

    /// The anchoring account.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    async fn call<P, R>(&self, method: &'static str, params: P) -> Result<R, TargetError>
    where
        P: alloy::rpc::json_rpc::RpcSend,
        R: alloy::rpc::json_rpc::RpcRecv,
    {
        use std::sync::atomic::Ordering;
        // The endpoint in use, else the next ones in turn: an endpoint that does not answer
        // (or not on the chain) hands over to the next; one that answers with an error does not.
        let count = self.endpoints.len();
        let first = self.active.load(Ordering::Relaxed) % count;
        let mut failures = Vec::new();
        for offset in 0..count {
            let index = (first + offset) % count;
            match self.on_chain(index).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) if error.kind == crate::ErrorKind::Fatal => return Err(error),
                Err(error) => {
                    failures.push(error.message);
                    continue;
                }
            }
            let (url, client, _) = &self.endpoints[index];
            match tokio::time::timeout(self.config.rpc_timeout, client.request(method, params.clone())).await
            {
                Err(_) => {
                    failures.push(format!("{method}: no answer from {url} in {:?}", self.config.rpc_timeout))
                }
                Ok(Err(error)) if error.as_error_resp().is_none() => {
                    failures.push(format!("{method} at {url}: {error}"))
                }
                Ok(Err(error)) => return Err(self.classify(method, &error.to_string())),
                Ok(Ok(value)) => {
                    if index != first {
                        tracing::warn!(from = %self.endpoints[first].0, to = %url, "anchoring RPC failed over");
                        self.active.store(index, Ordering::Relaxed);
                    }
                    return Ok(value);
                }
            }
        }
        Err(TargetError::retryable(&self.name, failures.join("; ")))
    }

    /// A node's error, classed: what retrying cannot mend is fatal.
    fn classify(&self, method: &str, message: &str) -> TargetError {
        let lower = message.to_ascii_lowercase();
        if lower.contains("insufficient funds") {
            TargetError::fatal(
                &self.name,
                format!("{method}: the anchoring account {} cannot pay: {message}; fund it", self.address()),
            )
        } else {
            TargetError::retryable(&self.name, format!("{method}: {message}"))
        }
    }

    async fn head(&self) -> Result<Header, TargetError> {
        let header: Option<Header> = self.call("eth_getBlockByNumber", ("latest", false)).await?;
        header.ok_or_else(|| TargetError::retryable(&self.name, "eth_getBlockByNumber: no latest block"))
    }

    async fn header_at(&self, number: u64) -> Result<Option<Header>, TargetError> {
        self.call("eth_getBlockByNumber", (U64::from(number), false)).await
    }

    async fn receipt(&self, hash: &str) -> Result<Option<Receipt>, TargetError> {
        let hash = parse_hash(&self.name, hash)?;
        self.call("eth_getTransactionReceipt", (hash,)).await
    }

    async fn known(&self, hash: &str) -> Result<bool, TargetError> {
        let hash = parse_hash(&self.name, hash)?;
        let found: Option<serde_json::Value> = self.call("eth_getTransactionByHash", (hash,)).await?;
        Ok(found.is_some())
    }

    /// Fees for a transaction now: the node's suggested tip, and a max fee of twice the
    /// latest base fee plus the tip.
    async fn fees(&self) -> Result<(u128, u128), TargetError> {
        let head = self.head().await?;
        let base = head.base_fee_per_gas.map(|b| b.to::<u128>()).unwrap_or(0);
        let tip = match self.call::<_, U128>("eth_maxPriorityFeePerGas", ()).await {
            Ok(tip) => tip.to::<u128>(),
            Err(_) => 1_000_000_000,
        };
        Ok((base.saturating_mul(2).saturating_add(tip), tip))
    }

    async fn next_nonce(&self) -> Result<u64, TargetError> {
        let mut nonce = self.nonce.lock().await;
        let next = match *nonce {
            Some(next) => next,
            None => {
                let counted: U64 = self.call("eth_getTransactionCount", (self.address(), "pending")).await?;
                counted.to::<u64>()
            }
        };
        *nonce = Some(next + 1);
        Ok(next)
    }

    /// Forgets the nonce: the next one is the chain's count again.
    async fn resync_nonce(&self) {
        *self.nonce.lock().await = None;
    }

    fn sign(
        &self,
        root: &[u8; 32],
        nonce: u64,
        max_fee: u128,
        tip: u128,
        now_ms: u64,
    ) -> Result<SentTransaction, TargetError> {
        let mut tx = TxEip1559 {
            chain_id: self.config.chain_id,
            nonce,
            gas_limit: GAS_LIMIT,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: TxKind::Call(self.address()),
            value: U256::ZERO,
            access_list: Default::default(),
            input: Bytes::from(calldata(root)),
        };
        let signature = self
            .signer
            .sign_transaction_sync(&mut tx)
            .map_err(|e| TargetError::fatal(&self.name, format!("signing failed: {e}")))?;
        let envelope: TxEnvelope = tx.into_signed(signature).into();
        Ok(SentTransaction {
            hash: format!("{:#x}", envelope.tx_hash()),
            raw: envelope.encoded_2718(),
            nonce,
            max_fee,
            tip,
            sent_ms: now_ms,
        })
    }

    /// Sends signed bytes. `Ok(true)`: the node has it (sent now, or known already);
    /// `Ok(false)`: its nonce is used (by a transaction of ours mined already, or by another).
    async fn send(&self, sent: &SentTransaction) -> Result<bool, TargetError> {
        let raw = Bytes::from(sent.raw.clone());
        match self.call::<_, B256>("eth_sendRawTransaction", (raw,)).await {
            Ok(_) => Ok(true),
            Err(error) => {
                let lower = error.message.to_ascii_lowercase();
                if lower.contains("already known") || lower.contains("already imported") {
                    Ok(true)
                } else if lower.contains("nonce too low") || lower.contains("nonce has already been used") {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Signs a new transaction for `state` (a fresh nonce), persists, sends.
    async fn submit(
        &self,
        mut state: AnchorState,
        now_ms: u64,
        persist: &(dyn Fn(&AnchorState) -> Result<(), String> + Send + Sync),
    ) -> Result<AnchorState, TargetError> {
        let (max_fee, tip) = self.fees().await?;
        self.check_cap(max_fee)?;
        self.check_budget(now_ms, max_fee)?;
        let nonce = self.next_nonce().await?;
        let sent = self.sign(&state.root, nonce, max_fee, tip, now_ms)?;
        state.transactions = vec![sent.clone()];
        state.cost.transactions += 1;
        state.status = Status::Submitted;
        state.inclusion = None;
        state.updated_ms = now_ms;
        persist(&state)
            .map_err(|e| TargetError::retryable(&self.name, format!("not persisted, not sent: {e}")))?;
        if !self.send(&sent).await? {
            // Its nonce is taken: count again and sign anew next step.
            self.resync_nonce().await;
            state.status = Status::Pending;
            state.transactions.clear();
            persist(&state).map_err(|e| TargetError::retryable(&self.name, e))?;
        }
        Ok(state)
    }

    fn check_cap(&self, max_fee: u128) -> Result<(), TargetError> {
        if max_fee > self.config.max_fee_per_gas {
            return Err(TargetError::fatal(
                &self.name,
                format!(
                    "the chain asks a max fee of {max_fee} wei per gas, above this node's cap of {}: raise max_fee_per_gas or wait",
                    self.config.max_fee_per_gas
                ),
            ));
        }
        Ok(())
    }

    /// A submitted anchor: in a block yet? dropped? stuck?
    async fn look(
        &self,
        mut state: AnchorState,
        now_ms: u64,
        persist: &(dyn Fn(&AnchorState) -> Result<(), String> + Send + Sync),
    ) -> Result<AnchorState, TargetError> {
        // Any of its transactions (a replacement's predecessor may be the one mined).
        for sent in state.transactions.clone() {
            if let Some(receipt) = self.receipt(&sent.hash).await? {
                if let (Some(block), Some(block_hash)) = (receipt.block_number, receipt.block_hash) {
                    if receipt.status.is_some_and(|s| s.to::<u64>() == 0) {
                        // Reverted (a transfer to oneself cannot, but a hostile RPC could say so).
                        state.error = Some(format!("{} reverted", sent.hash));
                    }
                    let price = receipt.effective_gas_price.map(|p| p.to::<u128>()).unwrap_or(sent.max_fee);
                    state.cost.gas_used = receipt.gas_used.to::<u64>();
                    let before = state.cost.wei;
                    state.cost.wei = price.saturating_mul(u128::from(state.cost.gas_used));
                    if let Some(budget) = &self.budget {
                        // Spent when sent; a reorg and a second inclusion do not pay twice.
                        budget.record(sent.sent_ms, state.cost.wei.saturating_sub(before));
                    }
                    let header = self.header_at(block.to::<u64>()).await?;
                    state.inclusion = Some(Inclusion {
                        tx_hash: sent.hash.clone(),
                        block: block.to::<u64>(),
                        block_hash: format!("{block_hash:#x}"),
                        tx_index: receipt.transaction_index.map(|i| i.to::<u64>()).unwrap_or(0),
                        confirmations: 0,
                        timestamp: header.map(|h| h.timestamp.to::<u64>()).unwrap_or(0),
                    });
                    state.status = Status::Included;
                    state.updated_ms = now_ms;
                    return self.confirm(state, now_ms).await;
                }
            }
        }
        let Some(latest) = state.transactions.first().cloned() else {
            state.status = Status::Pending;
            return Ok(state);
        };
        let stuck = now_ms.saturating_sub(latest.sent_ms) >= self.config.stuck_after_ms;
        if !stuck {
            if !self.known(&latest.hash).await? {
                // Dropped (or never sent: a node killed between persisting and sending). The
                // same bytes again; a used nonce means someone else's transaction took it.
                if !self.send(&latest).await? {
                    self.resync_nonce().await;
                    state.status = Status::Pending;
                    state.transactions.clear();
                    state.updated_ms = now_ms;
                    persist(&state).map_err(|e| TargetError::retryable(&self.name, e))?;
                }
            }
            return Ok(state);
        }
        // Stuck, whether still in the pool or dropped from it (a base fee above what it offers
        // gets it evicted): the same nonce, both fees raised by at least 12.5 % (and to what the
        // chain asks now, if more).
        let (fresh_max, fresh_tip) = self.fees().await?;
        let raise = |fee: u128| fee.saturating_add(fee.div_ceil(8)).max(fee + 1);
        let tip = raise(latest.tip).max(fresh_tip);
        let max_fee = raise(latest.max_fee).max(fresh_max).max(tip);
        self.check_cap(max_fee)?;
        self.check_budget(now_ms, max_fee)?;
        let replacement = self.sign(&state.root, latest.nonce, max_fee, tip, now_ms)?;
        state.transactions.insert(0, replacement.clone());
        state.transactions.truncate(TRANSACTIONS_MAX);
        state.cost.transactions += 1;
        state.updated_ms = now_ms;
        persist(&state).map_err(|e| TargetError::retryable(&self.name, e))?;
        tracing::info!(tx = %replacement.hash, nonce = latest.nonce, max_fee, tip, "anchor transaction replaced with higher fees");
        if !self.send(&replacement).await? {
            // The nonce went meanwhile: to one of ours (the next look finds its receipt) or to
            // another transaction (then the root is anchored anew).
            let ours = self.any_mined(&state).await?;
            if !ours {
                self.resync_nonce().await;
                state.status = Status::Pending;
                state.transactions.clear();
                persist(&state).map_err(|e| TargetError::retryable(&self.name, e))?;
            }
        }
        Ok(state)
    }

    /// Whether one of `state`'s transactions is in a block.
    async fn any_mined(&self, state: &AnchorState) -> Result<bool, TargetError> {
        for sent in &state.transactions {
            if self.receipt(&sent.hash).await?.is_some_and(|r| r.block_number.is_some()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// An included anchor: still in the block it was seen in? deep enough?
    async fn confirm(&self, mut state: AnchorState, now_ms: u64) -> Result<AnchorState, TargetError> {
        let Some(mut inclusion) = state.inclusion.clone() else {
            state.status = Status::Submitted;
            return Ok(state);
        };
        let at_height = self.header_at(inclusion.block).await?;
        let still = at_height.as_ref().is_some_and(|h| format!("{:#x}", h.hash) == inclusion.block_hash);
        if !still {
            // Reorged: the block at that height is another (or gone). The transaction may be
            // in a new block, back in the pool, or dropped; `look` finds out.
            state.reorgs += 1;
            state.inclusion = None;
            state.status = Status::Submitted;
            state.updated_ms = now_ms;
            tracing::warn!(target = %self.name, block = inclusion.block, "anchor reorged out of its block");
            return Ok(state);
        }
        let head = self.head().await?;
        inclusion.confirmations = head.number.to::<u64>().saturating_sub(inclusion.block) + 1;
        if inclusion.confirmations >= self.config.confirmations {
            state.status = Status::Final;
        }
        state.inclusion = Some(inclusion);
        state.updated_ms = now_ms;
        Ok(state)
    }
}

/// A JSON-RPC client of `url` over the bounded transport.
fn client(url: reqwest::Url) -> RpcClient {
    let local =
        url.host_str().is_some_and(|host| host == "127.0.0.1" || host == "localhost" || host == "::1");
    ClientBuilder::default().transport(crate::transport::BoundedHttp::new(url), local)
}

fn parse_hash(target: &str, hash: &str) -> Result<B256, TargetError> {
    hash.parse().map_err(|_| TargetError::fatal(target, format!("{hash:?} is not a transaction hash")))
}

impl Target for Eip155 {
    fn name(&self) -> &str {
        &self.name
    }

    async fn step(
        &self,
        state: AnchorState,
        now_ms: u64,
        persist: &(dyn Fn(&AnchorState) -> Result<(), String> + Send + Sync),
    ) -> Result<AnchorState, TargetError> {
        match state.status {
            Status::Pending => self.submit(state, now_ms, persist).await,
            Status::Submitted => self.look(state, now_ms, persist).await,
            Status::Included => self.confirm(state, now_ms).await,
            Status::Final | Status::Failed => Ok(state),
        }
    }
}

/// The bytes of block `number` an anchor proof carries: its header (RLP) and all its
/// transactions (EIP-2718), read from `rpc_url`. The header must hash to `expected_hash` (the
/// block the anchor was final in): a different block at that height is a reorg since.
pub async fn block_evidence(
    rpc_url: &str,
    number: u64,
    expected_hash: &str,
    timeout: Duration,
) -> Result<crate::proof::ChainEvidence, TargetError> {
    let name = "eip155";
    let url =
        rpc_url.parse().map_err(|e| TargetError::fatal(name, format!("{rpc_url:?} is not a URL: {e}")))?;
    let client = client(url);
    let call = |method: &'static str, params: serde_json::Value| {
        let client = client.clone();
        async move {
            match tokio::time::timeout(timeout, client.request::<_, serde_json::Value>(method, params)).await
            {
                Err(_) => Err(TargetError::retryable(name, format!("{method}: no answer from {rpc_url}"))),
                Ok(Err(error)) => Err(TargetError::retryable(name, format!("{method}: {error}"))),
                Ok(Ok(value)) => Ok(value),
            }
        }
    };
    let block = call("eth_getBlockByNumber", serde_json::json!([U64::from(number), false])).await?;
    if block.is_null() {
        return Err(TargetError::retryable(name, format!("{rpc_url} has no block {number}")));
    }
    let header: alloy::rpc::types::Header = serde_json::from_value(block.clone())
        .map_err(|e| TargetError::retryable(name, format!("block {number} is not a block header: {e}")))?;
    let rlp = alloy::rlp::encode(&header.inner);
    let hash = format!("{:#x}", alloy::primitives::keccak256(&rlp));
    if hash != expected_hash.to_lowercase() || header.hash != header.inner.hash_slow() {
        return Err(TargetError::fatal(
            name,
            format!("block {number} is {hash} at {rpc_url}, the anchor was final in {expected_hash}: a reorg since, or another chain"),
        ));
    }
    let hashes = block["transactions"].as_array().cloned().unwrap_or_default();
    let mut transactions = Vec::with_capacity(hashes.len());
    for hash in hashes {
        let raw = call("eth_getRawTransactionByHash", serde_json::json!([hash])).await?;
        let raw =
            raw.as_str().ok_or_else(|| TargetError::retryable(name, format!("no raw transaction {hash}")))?;
        transactions.push(raw.trim_start_matches("0x").to_string());
    }
    Ok(crate::proof::ChainEvidence { header: hex::encode(rlp), transactions })
}
