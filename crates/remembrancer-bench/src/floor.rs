//! The protocol floor of `scripts/bench sustained`: final receipts per second that five
//! processes on this machine sustain when they do only the work the protocol cannot skip, on
//! the same transport as the nodes (each member's message stream over TCP loopback once all
//! are connected, gossipsub before; one thread each) and with the same cadence (a checkpoint
//! every `SUSTAINED_INTERVAL_MS` per owner, at most `WINDOW` in flight). Per receipt: the owner
//! signs the checkpoint body and writes it; each of the four witnesses verifies the owner's
//! signature on the body, cosigns and writes the cosignature; the owner checks each
//! cosignature; at quorum (itself and two witnesses) it sends the receipt, which the other
//! four check (the cosignatures they did not make) and keep. A
//! message carries a signature of its own only when it goes by gossip, and it is checked only
//! when it did not arrive on its sender's connection, which vouches for it (as for a node,
//! whose messages on its streams are unsealed). Like a node, each process handles what arrived
//! together as one group: one batch verification, one RocksDB write (synced when it releases
//! messages), one frame to each member. No records, no API, no CBOR, no state beyond the
//! anchors in flight: a bound from above on what a node here can do.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use futures::FutureExt as _;
use remembrancer_core::note::cosignature_message;
use remembrancer_core::signature::{sign, verify_batch};
use remembrancer_net::libp2p::PeerId;
use remembrancer_net::{peer_id_of, Net, NetConfig, NetEvent, Verdict};
use sha2::{Digest as _, Sha256};

use crate::finality::{Nodes, NODES};

/// Anchors in flight per owner (the devnet's `anchors_in_flight`).
const WINDOW: usize = 4;
/// Seconds of load before counting, then seconds counted.
const SETTLE: Duration = Duration::from_secs(5);
const COUNTED: Duration = Duration::from_secs(20);
/// Network events handled as one group, at most (the node's `GROUP_INPUTS_MAX`).
const GROUP_MAX: usize = 64;
/// Largest frame a floor process accepts.
const FRAME_BYTES_MAX: usize = 1 << 20;

fn seed(index: usize) -> [u8; 32] {
    let mut seed = [0x5a; 32];
    seed[0] = index as u8;
    seed
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the floor measured over its counted window.
pub struct Floor {
    /// Final receipts per second, all processes together.
    pub rate: f64,
    /// Cores the five processes kept busy.
    pub cores: f64,
    /// Cores the machine sat idle, waited on the disk and lost to the hypervisor meanwhile.
    pub machine: crate::MachineTime,
    /// Synced RocksDB writes per final receipt, all processes together.
    pub synced_per_receipt: f64,
}

impl Floor {
    /// CPU milliseconds the processes spent per final receipt.
    pub fn cpu_ms_per_receipt(&self) -> f64 {
        self.cores / self.rate * 1e3
    }
}

/// Runs the floor: five `floor-peer` processes, each bootstrapping from those started before
/// it; the final receipts per second they counted together, and the CPU it took.
pub fn run(exe: &Path, dir: &Path, batch_interval_ms: u64) -> Floor {
    let start_at = now_unix_ms() + 10_000;
    let mut addresses: Vec<String> = Vec::new();
    let mut nodes = Nodes { children: Vec::new() };
    let mut outputs = Vec::new();
    for index in 0..NODES {
        let mut child = Command::new(exe)
            .arg("floor-peer")
            .arg(index.to_string())
            .arg(dir.join(format!("peer{index}")))
            .arg(batch_interval_ms.to_string())
            .arg(start_at.to_string())
            .args(&addresses)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a floor-peer process");
        let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
        let address = lines.next().and_then(Result::ok).expect("a floor peer's listen address");
        addresses.push(address);
        nodes.children.push(child);
        outputs.push(lines);
    }
    // The processes' CPU over the counted window (it starts `SETTLE` after the start time).
    let pids: Vec<u32> = nodes.children.iter().map(std::process::Child::id).collect();
    let cpu = || pids.iter().map(|pid| crate::cpu_seconds(Some(*pid))).sum::<f64>();
    std::thread::sleep(Duration::from_millis(
        (start_at + SETTLE.as_millis() as u64).saturating_sub(now_unix_ms()),
    ));
    let (cpu_start, machine_start, window) = (cpu(), crate::machine_seconds(), Instant::now());
    std::thread::sleep(COUNTED);
    let seconds = window.elapsed().as_secs_f64();
    let (cores, machine) =
        ((cpu() - cpu_start) / seconds, crate::machine_seconds().cores_since(&machine_start, seconds));
    let (mut finals, mut synced) = (0u64, 0u64);
    for lines in &mut outputs {
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let counts: Vec<u64> = line
            .strip_prefix("finals ")
            .map(|rest| rest.split(" synced ").filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_default();
        let [own, writes] = counts[..] else { panic!("a floor peer's counts, not {line:?}") };
        finals += own;
        synced += writes;
    }
    Floor {
        rate: finals as f64 / COUNTED.as_secs_f64(),
        cores,
        machine,
        synced_per_receipt: synced as f64 / finals.max(1) as f64,
    }
}

/// `remembrancer-bench floor-peer INDEX DIR INTERVAL_MS START_UNIX_MS [BOOTSTRAP ...]`: one
/// process of the floor. Prints its listen address, runs from the start time for `SETTLE`
/// plus `COUNTED`, prints `finals N synced M` (its own receipts final in the counted window,
/// and its synced writes in that window), exits.
pub fn floor_peer(args: &[String]) {
    let index: usize = args.first().and_then(|a| a.parse().ok()).expect("index");
    let dir = args.get(1).expect("directory");
    let interval: u64 = args.get(2).and_then(|a| a.parse().ok()).expect("interval");
    let start_at: u64 = args.get(3).and_then(|a| a.parse().ok()).expect("start time");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    let db = rocksdb::DB::open(&options, dir).expect("the floor's RocksDB");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let mut config = NetConfig::new(seed(index), "bench-floor");
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
        config.bootstrap = args[4..].iter().map(|a| a.parse().expect("bootstrap multiaddr")).collect();
        let mut net = Net::start(&config).expect("net");
        let mut peer = Peer::new(index, db);
        let index_of: HashMap<PeerId, u8> = (0..NODES)
            .filter_map(|i| {
                Some((peer_id_of(&SigningKey::from_bytes(&seed(i)).verifying_key().to_bytes())?, i as u8))
            })
            .collect();
        loop {
            if let NetEvent::Listening(address) = net.next().await {
                println!("{address}/p2p/{}", net.peer_id());
                let _ = std::io::stdout().flush();
                break;
            }
        }
        // Until the start time, only connections and a mesh form.
        let until = Duration::from_millis(start_at.saturating_sub(now_unix_ms()));
        let _ = tokio::time::timeout(until, async {
            loop {
                if let NetEvent::Gossip { source, id, .. } = net.next().await {
                    net.report(&id, &source, Verdict::Ignore);
                }
            }
        })
        .await;
        if net.connected().len() < NODES - 1 {
            eprintln!(
                "floor peer {index}: {} of {} peers connected at the start",
                net.connected().len(),
                NODES - 1
            );
        }
        let started = Instant::now();
        let (count_from, end) = (started + SETTLE, started + SETTLE + COUNTED);
        let mut tick = tokio::time::interval(Duration::from_millis(interval.max(1)));
        while Instant::now() < end {
            let mut group = Vec::new();
            let mut due = false;
            tokio::select! {
                event = net.next() => group.push(event),
                _ = tick.tick() => due = true,
            }
            while group.len() < GROUP_MAX {
                match net.next().now_or_never() {
                    Some(event) => group.push(event),
                    None => break,
                }
            }
            let mut verdicts = Vec::new();
            let frames: Vec<(Option<u8>, Vec<u8>)> = group
                .into_iter()
                .filter_map(|event| match event {
                    NetEvent::Gossip { source, id, data } => {
                        verdicts.push((id, source));
                        Some((None, data))
                    }
                    NetEvent::Direct { peer, data } => Some((index_of.get(&peer).copied(), data)),
                    _ => None,
                })
                .collect();
            peer.counting = Instant::now() >= count_from;
            // What this group sends goes on the message streams (unsealed) when every other
            // process is connected, by gossip (sealed) before.
            peer.direct = net.connected().len() >= NODES - 1;
            let verdict = if peer.handle(&frames) { Verdict::Accept } else { Verdict::Reject };
            if due {
                peer.anchor();
            }
            if let Some(frame) = peer.flush() {
                if peer.direct {
                    let others: Vec<PeerId> = net.connected().iter().copied().collect();
                    net.send_each(others, frame);
                } else {
                    let _ = net.publish(frame);
                }
            }
            for (id, source) in verdicts {
                net.report(&id, &source, verdict);
            }
        }
        println!("finals {} synced {}", peer.finals, peer.synced);
        let _ = std::io::stdout().flush();
    });
}

/// A countersignature: witness, its time, its cosignature.
type Cosignature = (u8, u64, [u8; 64]);
/// An own anchor in flight: its body, the owner's signature on it, the cosignatures so far.
type InFlight = (Vec<u8>, [u8; 64], Vec<Cosignature>);

/// One floor process's state: the anchors in flight and what waits for the next write.
struct Peer {
    index: u8,
    key: SigningKey,
    keys: Vec<VerifyingKey>,
    db: rocksdb::DB,
    sequence: u64,
    /// Own anchors not final yet, by sequence number.
    pending: BTreeMap<u64, InFlight>,
    writes: rocksdb::WriteBatch,
    out: Vec<Vec<u8>>,
    /// Own receipts final, and synced writes, while counting.
    finals: u64,
    synced: u64,
    counting: bool,
    /// Whether this group's messages go on the message streams (then unsealed).
    direct: bool,
}

/// `message || its signature`: how both floors sign a message.
pub(crate) fn signed(key: &SigningKey, mut message: Vec<u8>) -> Vec<u8> {
    let signature = sign(key, &message);
    message.extend_from_slice(&signature);
    message
}

/// `tag || ... || message signature`: the signed part and the signature.
fn split_signed(message: &[u8]) -> Option<(&[u8], Signature)> {
    let at = message.len().checked_sub(64)?;
    let signature: [u8; 64] = message[at..].try_into().ok()?;
    Some((&message[..at], Signature::from_bytes(&signature)))
}

/// Reads `n` bytes at `*at`.
fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let part = bytes.get(*at..*at + n)?;
    *at += n;
    Some(part)
}

fn u64_at(bytes: &[u8], at: &mut usize) -> Option<u64> {
    Some(u64::from_be_bytes(take(bytes, at, 8)?.try_into().ok()?))
}

fn signature_at(bytes: &[u8], at: &mut usize) -> Option<[u8; 64]> {
    take(bytes, at, 64)?.try_into().ok()
}

fn body_at<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let length = u16::from_be_bytes(take(bytes, at, 2)?.try_into().ok()?) as usize;
    std::str::from_utf8(take(bytes, at, length)?).ok()
}

/// What a message asks of its receiver once its signatures verify.
enum Step<'a> {
    Countersign { owner: u8, sequence: u64, body: &'a str, note: [u8; 64] },
    Cosigned { sequence: u64, cosignature: Cosignature },
    Keep(&'a [u8]),
}

impl Peer {
    fn new(index: usize, db: rocksdb::DB) -> Peer {
        Peer {
            index: index as u8,
            key: SigningKey::from_bytes(&seed(index)),
            keys: (0..NODES).map(|i| SigningKey::from_bytes(&seed(i)).verifying_key()).collect(),
            db,
            sequence: 0,
            pending: BTreeMap::new(),
            writes: rocksdb::WriteBatch::default(),
            out: Vec::new(),
            finals: 0,
            synced: 0,
            counting: false,
            direct: false,
        }
    }

    fn key_of(&self, index: u8) -> Option<VerifyingKey> {
        self.keys.get(index as usize).copied()
    }

    /// Signs a checkpoint of the owned namespace when fewer than `WINDOW` are in flight.
    fn anchor(&mut self) {
        if self.pending.len() >= WINDOW {
            return;
        }
        self.sequence += 1;
        let root: [u8; 32] = Sha256::digest(self.sequence.to_be_bytes()).into();
        let body = format!(
            "bench-floor/dev:node{}\n{}\n{}\n",
            self.index,
            self.sequence,
            crate::sustained::base64(&root)
        )
        .into_bytes();
        let note = sign(&self.key, &body);
        self.writes.put(
            [&[b'A', self.index][..], &self.sequence.to_be_bytes()].concat(),
            [&note[..], &body].concat(),
        );
        let mut message = vec![b'A', self.index];
        message.extend_from_slice(&self.sequence.to_be_bytes());
        message.extend_from_slice(&note);
        message.extend_from_slice(&(body.len() as u16).to_be_bytes());
        message.extend_from_slice(&body);
        self.send(message);
        self.pending.insert(self.sequence, (body, note, Vec::new()));
    }

    /// Queues a message: `0 || message` on the streams, `1 || message || signature` by gossip.
    fn send(&mut self, message: Vec<u8>) {
        self.out.push(if self.direct {
            [&[0u8][..], &message].concat()
        } else {
            [&[1u8][..], &signed(&self.key, message)].concat()
        });
    }

    /// Handles the frames of one group (each with the member whose own connection brought
    /// it, if one did): every signature they need checked in one batch, then their steps.
    /// False when a frame is malformed or a signature fails.
    fn handle(&mut self, frames: &[(Option<u8>, Vec<u8>)]) -> bool {
        let mut messages: Vec<(Option<u8>, &[u8])> = Vec::new();
        for (connection, frame) in frames {
            if frame.len() > FRAME_BYTES_MAX {
                return false;
            }
            let mut at = 0;
            while at < frame.len() {
                let Some(length) =
                    take(frame, &mut at, 4).map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
                else {
                    return false;
                };
                let Some(message) = take(frame, &mut at, length) else { return false };
                messages.push((*connection, message));
            }
        }
        let mut signed: Vec<Vec<u8>> = Vec::new();
        let mut signatures: Vec<Signature> = Vec::new();
        let mut keys: Vec<VerifyingKey> = Vec::new();
        let mut steps = Vec::new();
        for (connection, message) in messages {
            match self.check(message, connection, &mut signed, &mut signatures, &mut keys) {
                Some(step) => steps.push(step),
                None => return false,
            }
        }
        let refs: Vec<&[u8]> = signed.iter().map(Vec::as_slice).collect();
        if !refs.is_empty() && !verify_batch(&refs, &signatures, &keys) {
            return false;
        }
        for step in steps {
            match step {
                Step::Countersign { owner, sequence, body, note } => {
                    let time = now_unix_ms() / 1000;
                    let cosignature = sign(&self.key, &cosignature_message(time, body));
                    let key = [&[b'C', owner][..], &sequence.to_be_bytes()].concat();
                    self.writes.put(key, [&cosignature[..], body.as_bytes()].concat());
                    let mut message = vec![b'C', self.index, owner];
                    message.extend_from_slice(&sequence.to_be_bytes());
                    message.extend_from_slice(&time.to_be_bytes());
                    message.extend_from_slice(&cosignature);
                    message.extend_from_slice(&note);
                    message.extend_from_slice(&(body.len() as u16).to_be_bytes());
                    message.extend_from_slice(body.as_bytes());
                    self.send(message);
                }
                Step::Cosigned { sequence, cosignature } => {
                    let Some((_, _, cosignatures)) = self.pending.get_mut(&sequence) else { continue };
                    if cosignatures.iter().any(|c| c.0 == cosignature.0) {
                        continue;
                    }
                    cosignatures.push(cosignature);
                    if cosignatures.len() < 2 {
                        continue;
                    }
                    let Some((body, note, cosignatures)) = self.pending.remove(&sequence) else { continue };
                    if self.counting {
                        self.finals += 1;
                    }
                    let mut message = vec![b'R', self.index];
                    message.extend_from_slice(&sequence.to_be_bytes());
                    message.extend_from_slice(&note);
                    message.extend_from_slice(&(body.len() as u16).to_be_bytes());
                    message.extend_from_slice(&body);
                    for (witness, time, signature) in &cosignatures {
                        message.push(*witness);
                        message.extend_from_slice(&time.to_be_bytes());
                        message.extend_from_slice(signature);
                    }
                    self.writes.put([&[b'R', self.index][..], &sequence.to_be_bytes()].concat(), &message);
                    self.send(message);
                }
                Step::Keep(message) => {
                    let key = Sha256::digest(message);
                    self.writes.put(key, message);
                }
            }
        }
        true
    }

    /// Parses one message, adds the signatures it needs checked (its message signature only
    /// when it did not come on its sender's own connection), and says what follows.
    fn check<'a>(
        &self,
        message: &'a [u8],
        connection: Option<u8>,
        signed: &mut Vec<Vec<u8>>,
        signatures: &mut Vec<Signature>,
        keys: &mut Vec<VerifyingKey>,
    ) -> Option<Step<'a>> {
        let (&sealed, rest) = message.split_first()?;
        let (content, message_signature) = match sealed {
            0 => (rest, None),
            1 => split_signed(rest).map(|(content, signature)| (content, Some(signature)))?,
            _ => return None,
        };
        let mut at = 1;
        let tag = *content.first()?;
        let sender = *take(content, &mut at, 1)?.first()?;
        let sender_key = self.key_of(sender)?;
        if connection != Some(sender) {
            // Not from its sender's own connection: only its own signature proves the sender.
            signed.push(content.to_vec());
            signatures.push(message_signature?);
            keys.push(sender_key);
        }
        match tag {
            b'A' => {
                let sequence = u64_at(content, &mut at)?;
                let note = signature_at(content, &mut at)?;
                let body = body_at(content, &mut at)?;
                signed.push(body.as_bytes().to_vec());
                signatures.push(Signature::from_bytes(&note));
                keys.push(sender_key);
                Some(Step::Countersign { owner: sender, sequence, body, note })
            }
            b'C' => {
                let owner = *take(content, &mut at, 1)?.first()?;
                let sequence = u64_at(content, &mut at)?;
                let time = u64_at(content, &mut at)?;
                let cosignature = signature_at(content, &mut at)?;
                let _note = signature_at(content, &mut at)?;
                let body = body_at(content, &mut at)?;
                if owner != self.index {
                    return Some(Step::Keep(message));
                }
                // The owner checks the cosignature; a late one, after its receipt, is not needed.
                if self.pending.contains_key(&sequence) {
                    signed.push(cosignature_message(time, body));
                    signatures.push(Signature::from_bytes(&cosignature));
                    keys.push(sender_key);
                }
                Some(Step::Cosigned { sequence, cosignature: (sender, time, cosignature) })
            }
            b'R' => {
                // The owner's signature was checked with the anchor, and a witness's own
                // cosignature needs no check: the others' cosignatures remain.
                let _sequence = u64_at(content, &mut at)?;
                let _note = signature_at(content, &mut at)?;
                let body = body_at(content, &mut at)?;
                for _ in 0..2 {
                    let witness = *take(content, &mut at, 1)?.first()?;
                    let time = u64_at(content, &mut at)?;
                    let cosignature = signature_at(content, &mut at)?;
                    if witness == self.index {
                        continue;
                    }
                    signed.push(cosignature_message(time, body));
                    signatures.push(Signature::from_bytes(&cosignature));
                    keys.push(self.key_of(witness)?);
                }
                Some(Step::Keep(message))
            }
            _ => None,
        }
    }

    /// Writes what the group produced (synced when it releases messages) and returns the
    /// frame to publish: each message with its 4-byte length.
    fn flush(&mut self) -> Option<Vec<u8>> {
        if !self.writes.is_empty() {
            let mut options = rocksdb::WriteOptions::default();
            options.set_sync(!self.out.is_empty());
            if self.counting && !self.out.is_empty() {
                self.synced += 1;
            }
            self.db.write_opt(std::mem::take(&mut self.writes), &options).expect("floor write");
        }
        if self.out.is_empty() {
            return None;
        }
        let mut frame = Vec::new();
        for message in std::mem::take(&mut self.out) {
            frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
            frame.extend_from_slice(&message);
        }
        Some(frame)
    }
}
