//! The eip155 target against a real local chain (anvil, installed by scripts/setup into
//! .tools/anvil): the happy path and its confirmations, a reorg, a dropped transaction, a
//! stuck one replaced with higher fees, a node killed after submitting, a fee cap, a wrong
//! chain, an RPC that is down, and nonces without a gap over seeded random reorgs and drops.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use alloy::primitives::{B256, U64};
use alloy::rpc::client::{ClientBuilder, RpcClient};
use remembrancer_anchor::eip155::{calldata, Eip155, Eip155Config};
use remembrancer_anchor::{AnchorState, Anchorer, ErrorKind, Journal, Status};

/// A local chain for one test, killed when dropped.
struct Anvil {
    child: Child,
    url: String,
    keys: Vec<[u8; 32]>,
    rpc: RpcClient,
    _dir: tempfile::TempDir,
}

fn anvil_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REMEMBRANCER_ANVIL") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/anvil/node_modules/.bin/anvil");
    assert!(
        path.exists(),
        "anvil is not installed at {}: run scripts/setup (it installs it with npm)",
        path.display()
    );
    path
}

impl Anvil {
    /// Anvil with automatic mining on (each transaction its own block) or off.
    fn start(automine: bool) -> Anvil {
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("anvil.json");
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            listener.local_addr().expect("addr").port()
        };
        let mut command = Command::new(anvil_binary());
        command
            .args(["--port", &port.to_string(), "--accounts", "3", "--silent", "--config-out"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !automine {
            command.arg("--no-mining");
        }
        let child = command.spawn().expect("start anvil");
        let started = std::time::Instant::now();
        while !config.exists()
            || std::fs::read_to_string(&config).map_or(true, |t| !t.trim_end().ends_with('}'))
        {
            assert!(started.elapsed() < Duration::from_secs(20), "anvil did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config).expect("config")).expect("json");
        let keys = written["private_keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| {
                let bytes = hex::decode(k.as_str().expect("key").trim_start_matches("0x")).expect("hex");
                bytes.try_into().expect("32 bytes")
            })
            .collect();
        let url = format!("http://127.0.0.1:{port}");
        let rpc = ClientBuilder::default().http(url.parse().expect("url"));
        Anvil { child, url, keys, rpc, _dir: dir }
    }

    fn config(&self) -> Eip155Config {
        Eip155Config {
            rpc_url: self.url.clone(),
            chain_id: 31337,
            confirmations: 3,
            stuck_after_ms: 10_000,
            max_fee_per_gas: 1_000_000_000_000,
            rpc_timeout: Duration::from_secs(5),
        }
    }

    async fn mine(&self, blocks: u64) {
        let _: serde_json::Value = self.rpc.request("anvil_mine", (U64::from(blocks),)).await.expect("mine");
    }

    async fn nonce(&self, address: alloy::primitives::Address) -> u64 {
        let n: U64 = self.rpc.request("eth_getTransactionCount", (address, "latest")).await.expect("count");
        n.to::<u64>()
    }

    async fn transaction(&self, hash: &str) -> serde_json::Value {
        let hash: B256 = hash.parse().expect("hash");
        self.rpc.request("eth_getTransactionByHash", (hash,)).await.expect("tx")
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A journal in memory, shared by the anchorers of one test (a node's store across restarts).
#[derive(Default)]
struct Memory(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

impl Journal for &Memory {
    fn save(&self, state: &AnchorState) -> Result<(), String> {
        self.0.lock().expect("lock").insert(state.key(), state.to_cbor());
        Ok(())
    }
}

impl Memory {
    fn states(&self) -> Vec<AnchorState> {
        self.0.lock().expect("lock").values().map(|b| AnchorState::from_cbor(b).expect("state")).collect()
    }
}

fn root(n: u8) -> [u8; 32] {
    [n; 32]
}

/// Ticks until `done` holds of the anchor of `root`, at most `ticks` times, the clock at `now`.
async fn tick_until(
    anchorer: &mut Anchorer<Eip155, &Memory>,
    journal: &Memory,
    root: [u8; 32],
    now: u64,
    ticks: usize,
    done: impl Fn(&AnchorState) -> bool,
) -> AnchorState {
    for _ in 0..ticks {
        anchorer.tick(now).await;
        let state = journal.states().into_iter().find(|s| s.root == root).expect("journaled");
        if done(&state) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not reached: {:?}", journal.states().into_iter().find(|s| s.root == root));
}

#[tokio::test]
async fn a_root_is_anchored_in_a_transaction_to_itself_and_final_after_its_confirmations() {
    let anvil = Anvil::start(true);
    let target = Eip155::connect(anvil.config(), &anvil.keys[0]).await.expect("connect");
    let address = target.address();
    let journal = Memory::default();
    let mut anchorer = Anchorer::new(target, &journal, Vec::new(), 100);
    anchorer.request(root(7), b"epoch 1".to_vec(), 1_000).expect("request").expect("new");
    assert!(
        anchorer.request(root(7), b"epoch 1".to_vec(), 1_000).expect("again").is_none(),
        "one anchor per root"
    );

    let included =
        tick_until(&mut anchorer, &journal, root(7), 1_000, 10, |s| s.status == Status::Included).await;
    let inclusion = included.inclusion.clone().expect("inclusion");
    assert_eq!(inclusion.confirmations, 1);
    let tx = anvil.transaction(&inclusion.tx_hash).await;
    assert_eq!(tx["input"].as_str().expect("input"), format!("0x{}", hex::encode(calldata(&root(7)))));
    assert_eq!(tx["to"], tx["from"], "to the anchoring account itself");
    assert_eq!(tx["from"].as_str().expect("from").to_lowercase(), format!("{address:#x}"));
    assert_eq!(tx["type"], "0x2", "EIP-1559");
    assert!(included.cost.gas_used > 21_000 && included.cost.wei > 0, "{:?}", included.cost);

    anvil.mine(1).await;
    let still = tick_until(&mut anchorer, &journal, root(7), 1_000, 3, |s| {
        s.inclusion.as_ref().is_some_and(|i| i.confirmations == 2)
    })
    .await;
    assert_eq!(still.status, Status::Included, "2 of 3 confirmations");
    anvil.mine(1).await;
    let done = tick_until(&mut anchorer, &journal, root(7), 1_000, 3, |s| s.status == Status::Final).await;
    assert_eq!(done.inclusion.expect("inclusion").block, inclusion.block);
    assert_eq!(done.cost.transactions, 1);
    assert_eq!(anvil.nonce(address).await, 1, "paid once");
    assert_eq!(anchorer.open().count(), 0);
}

#[tokio::test]
async fn a_reorg_takes_the_anchor_out_and_the_same_root_is_anchored_again_once() {
    let anvil = Anvil::start(true);
    let target = Eip155::connect(anvil.config(), &anvil.keys[0]).await.expect("connect");
    let address = target.address();
    let journal = Memory::default();
    let mut anchorer = Anchorer::new(target, &journal, Vec::new(), 100);
    anchorer.request(root(9), Vec::new(), 0).expect("request");
    let first = tick_until(&mut anchorer, &journal, root(9), 0, 10, |s| s.status == Status::Included).await;
    let first_block = first.inclusion.expect("inclusion");
    // The block holding it replaced by an empty one at the same height.
    let _: serde_json::Value =
        anvil.rpc.request("anvil_reorg", (1u64, Vec::<serde_json::Value>::new())).await.expect("reorg");
    let again = tick_until(&mut anchorer, &journal, root(9), 0, 20, |s| {
        s.reorgs == 1 && s.status == Status::Included
    })
    .await;
    let second_block = again.inclusion.clone().expect("inclusion");
    assert_ne!(second_block.block_hash, first_block.block_hash, "in another block");
    anvil.mine(3).await;
    let done = tick_until(&mut anchorer, &journal, root(9), 0, 5, |s| s.status == Status::Final).await;
    assert_eq!(done.reorgs, 1);
    // One anchor of the root on the chain now, and no nonce gap: the account sent one
    // transaction that counts.
    assert_eq!(anvil.nonce(address).await, 1);
    let tx = anvil.transaction(&done.inclusion.expect("inclusion").tx_hash).await;
    assert_eq!(tx["input"].as_str().expect("input"), format!("0x{}", hex::encode(calldata(&root(9)))));
}

#[tokio::test]
async fn a_dropped_transaction_is_sent_again_and_a_stuck_one_replaced_with_higher_fees() {
    let anvil = Anvil::start(false);
    let target = Eip155::connect(anvil.config(), &anvil.keys[1]).await.expect("connect");
    let address = target.address();
    let journal = Memory::default();
    let mut anchorer = Anchorer::new(target, &journal, Vec::new(), 100);
    anchorer.request(root(3), Vec::new(), 0).expect("request");
    let sent = tick_until(&mut anchorer, &journal, root(3), 0, 5, |s| s.status == Status::Submitted).await;
    let first = sent.transactions[0].clone();
    // Dropped from the pool: the same bytes go out again.
    let hash: B256 = first.hash.parse().expect("hash");
    let _: serde_json::Value = anvil.rpc.request("anvil_dropTransaction", (hash,)).await.expect("drop");
    assert!(anvil.transaction(&first.hash).await.is_null());
    anchorer.tick(1_000).await;
    assert!(!anvil.transaction(&first.hash).await.is_null(), "sent again, same hash");
    // Stuck past stuck_after_ms: replaced, same nonce, both fees up at least 12.5 %.
    anchorer.tick(20_000).await;
    let state = journal.states().pop().expect("state");
    assert_eq!(state.transactions.len(), 2, "{state:?}");
    let replacement = &state.transactions[0];
    assert_eq!(replacement.nonce, first.nonce);
    assert!(
        replacement.tip * 8 >= first.tip * 9 && replacement.max_fee * 8 >= first.max_fee * 9,
        "{state:?}"
    );
    anvil.mine(1).await;
    let included =
        tick_until(&mut anchorer, &journal, root(3), 20_000, 5, |s| s.status == Status::Included).await;
    assert_eq!(included.inclusion.expect("inclusion").tx_hash, replacement.hash, "the replacement is mined");
    assert_eq!(included.cost.transactions, 2);
    assert_eq!(anvil.nonce(address).await, 1, "one of the two paid");
}

#[tokio::test]
async fn a_node_killed_after_submitting_resumes_the_same_transaction_and_pays_once() {
    let anvil = Anvil::start(false);
    let journal = Memory::default();
    let address;
    {
        let target = Eip155::connect(anvil.config(), &anvil.keys[2]).await.expect("connect");
        address = target.address();
        let mut anchorer = Anchorer::new(target, &journal, Vec::new(), 100);
        anchorer.request(root(5), Vec::new(), 0).expect("request");
        anchorer.request(root(6), Vec::new(), 0).expect("request");
        anchorer.tick(0).await;
        // Killed here: both submitted, in the pool, nothing mined.
    }
    let restored = journal.states();
    assert!(restored.iter().all(|s| s.status == Status::Submitted), "{restored:?}");
    let hashes: Vec<String> = restored.iter().map(|s| s.transactions[0].hash.clone()).collect();
    let target = Eip155::connect(anvil.config(), &anvil.keys[2]).await.expect("connect");
    let mut anchorer = Anchorer::new(target, &journal, restored, 100);
    anchorer.request(root(8), Vec::new(), 0).expect("a third root after the restart");
    anvil.mine(1).await;
    anchorer.tick(0).await;
    anvil.mine(1).await;
    anchorer.tick(0).await;
    anvil.mine(3).await;
    anchorer.tick(0).await;
    anchorer.tick(0).await;
    let states = journal.states();
    assert!(states.iter().all(|s| s.status == Status::Final), "{states:?}");
    for (state, hash) in states.iter().filter(|s| s.root != root(8)).zip(&hashes) {
        assert_eq!(
            &state.inclusion.as_ref().expect("inclusion").tx_hash,
            hash,
            "the transaction sent before the kill"
        );
        assert_eq!(state.cost.transactions, 1);
    }
    assert_eq!(anvil.nonce(address).await, 3, "three roots, three transactions, no gap");
}

#[tokio::test]
async fn a_fee_cap_below_the_chain_a_wrong_chain_and_a_dead_rpc_say_what_is_wrong() {
    let anvil = Anvil::start(true);
    let mut config = anvil.config();
    config.max_fee_per_gas = 1;
    let target = Eip155::connect(config, &anvil.keys[0]).await.expect("connect");
    let journal = Memory::default();
    let mut anchorer = Anchorer::new(target, &journal, Vec::new(), 100);
    anchorer.request(root(1), Vec::new(), 0).expect("request");
    let failed = tick_until(&mut anchorer, &journal, root(1), 0, 2, |s| s.status == Status::Failed).await;
    assert!(failed.error.expect("why").contains("above this node's cap of 1"));
    assert_eq!(anvil.nonce(anchorer.target().address()).await, 0, "nothing sent");

    let mut wrong = anvil.config();
    wrong.chain_id = 1;
    let error = Eip155::connect(wrong, &anvil.keys[0]).await.err().expect("chain 1 is not anvil");
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert!(error.message.contains("is chain 31337, not 1"), "{error}");

    let mut dead = anvil.config();
    dead.rpc_url = "http://127.0.0.1:9".to_string();
    let error = Eip155::connect(dead, &anvil.keys[0]).await.err().expect("nothing listens on port 9");
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
}

#[tokio::test]
async fn nonces_stay_without_a_gap_over_seeded_random_reorgs_and_drops() {
    // Blocks are mined only when the test says (anvil's automatic mining runs beside its RPC
    // and races a reorg asked for at the same moment: seen here, its account state then
    // disagreed with its own blocks).
    let anvil = Anvil::start(false);
    let target = Eip155::connect(anvil.config(), &anvil.keys[0]).await.expect("connect");
    let address = target.address();
    let journal = Memory::default();
    let mut anchorer = Anchorer::new(target, &journal, Vec::new(), 1);
    // A small deterministic generator (xorshift), seeded: the same events every run.
    let mut seed: u64 = 0x5EED_2026_1207;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut now = 0u64;
    for event in 0..100u8 {
        if event % 2 == 0 {
            anchorer.request(root(100 + event / 2), Vec::new(), now).expect("request");
        }
        now += 100;
        anchorer.tick(now).await;
        match next() % 4 {
            0 => {
                let depth = 1 + next() % 2;
                let _: serde_json::Value = anvil
                    .rpc
                    .request("anvil_reorg", (depth, Vec::<serde_json::Value>::new()))
                    .await
                    .expect("reorg");
            }
            1 => {
                if let Some(sent) = journal.states().iter().find(|s| s.status == Status::Submitted) {
                    let hash: B256 = sent.transactions[0].hash.parse().expect("hash");
                    let _: serde_json::Value =
                        anvil.rpc.request("anvil_dropTransaction", (hash,)).await.expect("drop");
                }
            }
            _ => anvil.mine(1).await,
        }
    }
    for _ in 0..40 {
        anvil.mine(1).await;
        now += 1000;
        anchorer.tick(now).await;
        if journal.states().iter().all(|s| s.status == Status::Final) {
            break;
        }
    }
    let states = journal.states();
    assert!(
        states.iter().all(|s| s.status == Status::Final),
        "{:?}",
        states.iter().map(|s| (&s.status, &s.error)).collect::<Vec<_>>()
    );
    // Every root final once, in a mined transaction of its own; the account's nonce is the
    // count of those transactions: no gap, nothing paid twice.
    let mut nonces: Vec<u64> = Vec::new();
    for state in &states {
        let tx = anvil.transaction(&state.inclusion.as_ref().expect("inclusion").tx_hash).await;
        assert_eq!(tx["input"].as_str().expect("input"), format!("0x{}", hex::encode(calldata(&state.root))));
        nonces.push(
            u64::from_str_radix(tx["nonce"].as_str().expect("nonce").trim_start_matches("0x"), 16)
                .expect("hex"),
        );
    }
    nonces.sort();
    assert_eq!(nonces, (0..states.len() as u64).collect::<Vec<_>>(), "nonces 0..n, one per root");
    // The events did reach the anchors: some were reorged out of their blocks.
    let reorged = states.iter().filter(|s| s.reorgs > 0).count();

    assert!(reorged >= 5, "{reorged} anchors reorged");
    assert_eq!(anvil.nonce(address).await, states.len() as u64);
}

#[tokio::test]
async fn after_a_base_fee_jump_the_stuck_anchor_is_replaced_and_mined_within_the_cap() {
    let anvil = Anvil::start(false);
    let mut config = anvil.config();
    config.stuck_after_ms = 1_000;
    let target = Eip155::connect(config, &anvil.keys[0]).await.expect("connect");
    let journal = Memory::default();
    let mut anchorer = Anchorer::new(target, &journal, Vec::new(), 100);
    anchorer.request(root(4), Vec::new(), 0).expect("request");
    let sent = tick_until(&mut anchorer, &journal, root(4), 0, 5, |s| s.status == Status::Submitted).await;
    let first = sent.transactions[0].clone();
    // The base fee jumps above what the first transaction offers: the next block leaves it out.
    let jumped = first.max_fee * 4;
    let _: serde_json::Value = anvil
        .rpc
        .request("anvil_setNextBlockBaseFeePerGas", (alloy::primitives::U256::from(jumped),))
        .await
        .expect("base fee");
    anvil.mine(1).await;
    anchorer.tick(500).await;
    let state = journal.states().pop().expect("state");
    assert_eq!(state.status, Status::Submitted, "not in the block: {state:?}");
    // Stuck: replaced with fees the chain takes now, the same nonce.
    anchorer.tick(5_000).await;
    let state = journal.states().pop().expect("state");
    let replacement = state.transactions[0].clone();
    assert_eq!(replacement.nonce, first.nonce);
    assert!(
        replacement.max_fee >= jumped,
        "the replacement offers {} against a base fee of {jumped}",
        replacement.max_fee
    );
    anvil.mine(1).await;
    let included =
        tick_until(&mut anchorer, &journal, root(4), 5_000, 5, |s| s.status == Status::Included).await;
    assert_eq!(included.inclusion.expect("inclusion").tx_hash, replacement.hash);
    assert!(
        included.cost.wei <= replacement.max_fee * u128::from(included.cost.gas_used),
        "paid within the offer"
    );
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_hands_over_to_the_next() {
    let anvil = Anvil::start(true);
    let mut config = anvil.config();
    config.rpc_url = format!("http://127.0.0.1:9, {}", anvil.url);
    config.rpc_timeout = Duration::from_secs(2);
    let target = Eip155::connect(config, &anvil.keys[0]).await.expect("the second endpoint answers");
    let journal = Memory::default();
    let mut anchorer = Anchorer::new(target, &journal, Vec::new(), 100);
    anchorer.request(root(12), Vec::new(), 0).expect("request");
    let included =
        tick_until(&mut anchorer, &journal, root(12), 0, 10, |s| s.status == Status::Included).await;
    let tx = anvil.transaction(&included.inclusion.expect("inclusion").tx_hash).await;
    assert_eq!(tx["input"].as_str().expect("input"), format!("0x{}", hex::encode(calldata(&root(12)))));
    // An endpoint on another chain is never used, and alone it is a fatal error.
    let other = Anvil::start(true);
    let mut wrong = anvil.config();
    wrong.rpc_url = other.url.clone();
    wrong.chain_id = 5;
    let error = Eip155::connect(wrong, &anvil.keys[0]).await.err().expect("chain 31337 is not 5");
    assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
}

/// A JSON-RPC endpoint on 127.0.0.1 that answers every request with `answer(method)` as the
/// HTTP body: a hostile or broken node. Serves until the test ends.
fn hostile(answer: fn(&str) -> String) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the head and the body its Content-Length announces.
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&request);
            let method = text
                .split("\"method\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string();
            let body = answer(&method);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[tokio::test]
async fn a_hostile_rpc_gets_typed_retryable_errors_a_bounded_read_and_no_anchor_is_final_on_its_word() {
    let anvil = Anvil::start(true);
    let connect = |url: String| {
        let mut config = anvil.config();
        config.rpc_url = url;
        config.rpc_timeout = Duration::from_secs(2);
        Eip155::connect(config, &anvil.keys[0])
    };
    // Not JSON, the wrong type, a number too large: each a retryable error naming the call.
    for answer in [
        (|_: &str| "this is not json".to_string()) as fn(&str) -> String,
        |_: &str| r#"{"jsonrpc":"2.0","id":0,"result":"banana"}"#.to_string(),
        |_: &str| r#"{"jsonrpc":"2.0","id":0,"result":"0xffffffffffffffffffffffffffffffffff"}"#.to_string(),
    ] {
        let error = connect(hostile(answer)).await.err().expect("refused");
        assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
        assert!(error.message.contains("eth_chainId"), "{error}");
    }
    // An answer of 17 MiB is not read: memory stays bounded.
    let huge = |_: &str| format!(r#"{{"jsonrpc":"2.0","id":0,"result":"{}"}}"#, "a".repeat(17 << 20));
    let error = connect(hostile(huge)).await.err().expect("refused");
    assert!(error.message.contains("larger than 16777216 bytes"), "{error}");
    // A node that says the right chain, then claims every transaction is in a block that does
    // not exist: the anchor is never called final on its word.
    fn liar(method: &str) -> String {
        let result = match method {
            "eth_chainId" => r#""0x7a69""#.to_string(),
            "eth_getBlockByNumber" => r#"{"number":"0x5","hash":"0x1111111111111111111111111111111111111111111111111111111111111111","timestamp":"0x1","baseFeePerGas":"0x1"}"#.to_string(),
            "eth_maxPriorityFeePerGas" => r#""0x1""#.to_string(),
            "eth_getTransactionCount" => r#""0x0""#.to_string(),
            "eth_sendRawTransaction" => r#""0x2222222222222222222222222222222222222222222222222222222222222222""#.to_string(),
            "eth_getTransactionReceipt" => r#"{"blockNumber":"0x9","blockHash":"0x3333333333333333333333333333333333333333333333333333333333333333","transactionIndex":"0x0","gasUsed":"0x5208","effectiveGasPrice":"0x1","status":"0x1"}"#.to_string(),
            _ => "null".to_string(),
        };
        format!(r#"{{"jsonrpc":"2.0","id":0,"result":{result}}}"#)
    }
    let target = connect(hostile(liar)).await.expect("it says the right chain");
    let journal = Memory::default();
    let mut anchorer = Anchorer::new(target, &journal, Vec::new(), 1);
    anchorer.request(root(13), Vec::new(), 0).expect("request");
    for now in 0..20 {
        anchorer.tick(now * 100).await;
    }
    let state = journal.states().pop().expect("state");
    assert_ne!(state.status, Status::Final, "block 9 has another hash at that height: {state:?}");
    assert_ne!(state.status, Status::Failed, "a lying node is retried, not given up on: {state:?}");
    assert!(state.reorgs > 0, "each claimed inclusion is found false: {state:?}");
}
