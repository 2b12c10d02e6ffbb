//! The engine fed arbitrary sequences of inputs: three honest engines (members 0-2, each the
//! owner of one namespace, quorum 3 of 4) on a network whose delivery order, losses,
//! duplicates and clock the fuzzer chooses, and member 3, whose key the fuzzer holds: it
//! anchors any root at any size (equivocating at will), countersigns truly or falsely,
//! replays, alters and invents messages, and sends bytes that may decode as anything.
//! Whatever it does: no input makes an engine fail or panic, no honest owner signs two roots
//! for one size, no honest member is accused, and no two honest engines hold different final
//! roots for one namespace and size.
#![no_main]

use std::collections::{BTreeMap, VecDeque};

use libfuzzer_sys::arbitrary::{Result as Drawn, Unstructured};
use libfuzzer_sys::fuzz_target;
use remembrancer_core::checkpoint::{AnchorClaim, Checkpoint};
use remembrancer_core::engine::{Engine, EngineConfig, Input, Output, Timer};
use remembrancer_core::identity::NodeIdentity;
use remembrancer_core::merkle::MemoryNodeStore;
use remembrancer_core::message::{AnchorContent, Content, CountersignContent, HeartbeatContent, PeerMessage};
use remembrancer_core::note::{Note, NoteSignature};
use remembrancer_core::receipt::countersign_body;
use remembrancer_core::registry::{FederationSection, PeerEntry, Registry, RegistryDocument};
use remembrancer_core::HashAlgorithm;

const HONEST: usize = 3;
const LIAR: usize = 3;
const START_MS: u64 = 1_800_000_000_000;
/// Steps of one input, and messages waiting, at most: a bound on one run's time.
const STEPS_MAX: usize = 256;
const QUEUE_MAX: usize = 512;

fn identity(i: usize) -> NodeIdentity {
    NodeIdentity::from_seed(&format!("did:vm:node:f{i}"), [i as u8 + 11; 32]).expect("identity")
}

fn namespace(i: usize) -> String {
    format!("fuzz:ns{i}")
}

fn registry() -> Registry {
    let document = RegistryDocument {
        federation: FederationSection {
            name: "fuzz".to_string(),
            version: 1,
            quorum: 3,
            peers: (0..=LIAR).map(|i| PeerEntry::for_identity(&identity(i), vec![namespace(i)])).collect(),
            anchor_propagation: Default::default(),
        },
    };
    Registry::from_document(&document).expect("registry")
}

struct World {
    engines: Vec<Engine<MemoryNodeStore>>,
    dids: Vec<String>,
    liar: NodeIdentity,
    /// (recipient, message, came on the sender's own connection)
    queue: VecDeque<(usize, PeerMessage, bool)>,
    /// Everything sent so far, for replays (bounded).
    history: Vec<PeerMessage>,
    timers: Vec<(usize, u64, Timer)>,
    now_ms: u64,
    /// Each honest owner's signed roots by size.
    signed: Vec<BTreeMap<u64, String>>,
}

impl World {
    fn new() -> World {
        let registry = registry();
        let engines = (0..HONEST)
            .map(|i| {
                Engine::new(identity(i), registry.clone(), EngineConfig::default(), MemoryNodeStore::new)
            })
            .collect();
        World {
            engines,
            dids: (0..=LIAR).map(|i| identity(i).did().to_string()).collect(),
            liar: identity(LIAR),
            queue: VecDeque::new(),
            history: Vec::new(),
            timers: Vec::new(),
            now_ms: START_MS,
            signed: vec![BTreeMap::new(); HONEST],
        }
    }

    fn push(&mut self, to: usize, message: PeerMessage, direct: bool) {
        if self.queue.len() < QUEUE_MAX {
            self.queue.push_back((to, message.clone(), direct));
        }
        if self.history.len() < QUEUE_MAX {
            self.history.push(message);
        }
    }

    /// One input to honest engine `node`, its outputs routed; an engine error is a finding.
    fn input(&mut self, node: usize, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let described = format!("{input:?}").chars().take(300).collect::<String>();
            let outputs = match self.engines[node].handle(input, self.now_ms) {
                Ok(outputs) => outputs,
                Err(error) => panic!("engine {node} failed on {described}: {error}"),
            };
            for output in outputs {
                match output {
                    Output::Publish(mut message) => {
                        self.engines[node].seal(&mut message);
                        if let Content::Anchor(anchor) = &message.content {
                            if message.sender == self.dids[node] {
                                self.own_anchor(node, &anchor.checkpoint);
                            }
                        }
                        for other in (0..HONEST).filter(|o| *o != node) {
                            self.push(other, message.clone(), false);
                        }
                    }
                    Output::Send { to, message } => {
                        if let Some(other) = self.dids.iter().position(|d| *d == to).filter(|o| *o < HONEST) {
                            self.push(other, message, true);
                        }
                    }
                    Output::SetTimer { timer, at_ms } => {
                        if self.timers.len() < QUEUE_MAX {
                            self.timers.push((node, at_ms, timer));
                        }
                    }
                    Output::AnchorRequest { request, root } => {
                        use remembrancer_core::anchoring::AnchorTarget as _;
                        let reference = remembrancer_core::anchoring::LocalTarget::default()
                            .anchor(&root, self.now_ms)
                            .expect("the local target anchors");
                        inputs.push_back(Input::Anchored { request, reference });
                    }
                    Output::Persist(_) | Output::Event(_) => {}
                }
            }
        }
    }

    /// An honest owner's anchor: never a second root for a size it signed.
    fn own_anchor(&mut self, node: usize, note: &str) {
        let note = Note::parse(note.as_bytes()).expect("an engine's own note parses");
        let checkpoint = Checkpoint::parse_body(&note.text).expect("an engine's own checkpoint parses");
        let root = format!("{:?}", checkpoint.root);
        if let Some(earlier) = self.signed[node].insert(checkpoint.size, root.clone()) {
            assert_eq!(earlier, root, "honest owner {node} signed two roots for size {}", checkpoint.size);
        }
    }

    fn liar_note(&self, size: u64, root: [u8; 32]) -> String {
        let checkpoint = Checkpoint {
            federation_id: "fuzz".to_string(),
            namespace: namespace(LIAR),
            size,
            root,
            anchor: AnchorClaim::local(HashAlgorithm::Sha256, self.now_ms / 1000),
        };
        let body = checkpoint.body();
        Note { signatures: vec![NoteSignature::sign_ed25519(&self.liar, &body)], text: body }.to_text()
    }

    fn from_liar(&mut self, to: usize, content: Content, direct: bool) {
        let message = PeerMessage::sign(&self.liar, content, self.now_ms);
        self.push(to, message, direct);
    }

    fn step(&mut self, u: &mut Unstructured) -> Drawn<()> {
        let node = u.int_in_range(0..=HONEST - 1)?;
        match u.int_in_range(0..=11u8)? {
            // An owner commits records.
            0 | 1 => {
                let count = u.int_in_range(1..=4usize)?;
                let records =
                    (0..count).map(|k| format!("record {} {k}", self.now_ms).into_bytes()).collect();
                self.input(node, Input::Commit { namespace: namespace(node), records });
            }
            // A waiting message is delivered (any of them: reordering), or lost, or delivered
            // and kept (a duplicate).
            2..=4 => {
                if !self.queue.is_empty() {
                    let at = u.int_in_range(0..=self.queue.len() - 1)?;
                    let how = u.int_in_range(0..=3u8)?;
                    let (to, message, direct) = if how == 3 {
                        self.queue[at].clone()
                    } else {
                        self.queue.remove(at).expect("in range")
                    };
                    if how != 2 {
                        let input = if direct { Input::FromSender(message) } else { Input::Message(message) };
                        self.input(to, input);
                    }
                }
            }
            // Time passes; due timers fire.
            5 => {
                self.now_ms += u64::from(u.int_in_range(1..=60_000u32)?);
                let now = self.now_ms;
                let due: Vec<(usize, u64, Timer)> =
                    self.timers.iter().filter(|t| t.1 <= now).cloned().collect();
                self.timers.retain(|t| t.1 > now);
                for (node, _, timer) in due {
                    self.input(node, Input::Timer(timer));
                }
            }
            // The liar anchors any root at any size, with any consistency proof.
            6 => {
                let size = u.int_in_range(0..=8u64)?;
                let root: [u8; 32] = [u.arbitrary::<u8>()?; 32];
                let consistency_from = u.int_in_range(0..=8u64)?;
                let proof = (0..u.int_in_range(0..=3usize)?)
                    .map(|_| [u.arbitrary::<u8>().unwrap_or(0); 32])
                    .collect();
                let content = Content::Anchor(AnchorContent {
                    checkpoint: self.liar_note(size, root),
                    consistency_from,
                    consistency_proof: proof,
                });
                let direct = u.arbitrary()?;
                self.from_liar(node, content, direct);
            }
            // The liar countersigns a checkpoint it heard, truly or with altered bytes.
            7 => {
                let heard: Vec<String> = self
                    .history
                    .iter()
                    .filter_map(|m| match &m.content {
                        Content::Anchor(a) => Some(a.checkpoint.clone()),
                        _ => None,
                    })
                    .collect();
                if !heard.is_empty() {
                    let checkpoint = heard[u.int_in_range(0..=heard.len() - 1)?].clone();
                    let Ok(note) = Note::parse(checkpoint.as_bytes()) else { return Ok(()) };
                    let timestamp = self.now_ms / 1000;
                    let (_, mut signature) = countersign_body(&self.liar, &note.text, timestamp);
                    if u.arbitrary()? {
                        let at = u.int_in_range(0..=63usize)?;
                        signature[at] ^= u.int_in_range(1..=255u8)?;
                    }
                    let content = Content::Countersign(CountersignContent {
                        checkpoint,
                        timestamp,
                        signature: serde_bytes::ByteBuf::from(signature.to_vec()),
                    });
                    let direct = u.arbitrary()?;
                    self.from_liar(node, content, direct);
                }
            }
            // A replay of anything sent so far, on gossip or as if on its sender's connection.
            8 => {
                if !self.history.is_empty() {
                    let message = self.history[u.int_in_range(0..=self.history.len() - 1)?].clone();
                    let direct = u.arbitrary()? && message.sender == self.dids[LIAR];
                    self.push(node, message, direct);
                }
            }
            // A message sent so far with its bytes altered, if they still decode.
            9 => {
                if !self.history.is_empty() {
                    let message = &self.history[u.int_in_range(0..=self.history.len() - 1)?];
                    let mut bytes = message.encode();
                    let flips = u.int_in_range(1..=4usize)?;
                    for _ in 0..flips {
                        let at = u.int_in_range(0..=bytes.len() - 1)?;
                        bytes[at] ^= u.int_in_range(1..=255u8)?;
                    }
                    if let Ok(altered) = PeerMessage::decode(&bytes) {
                        self.push(node, altered, false);
                    }
                }
            }
            // Bytes from the fuzzer, if they decode as a message.
            10 => {
                let length = u.int_in_range(0..=512usize)?;
                let bytes = u.bytes(length)?;
                if let Ok(message) = PeerMessage::decode(bytes) {
                    let direct = message.sender == self.dids[LIAR] && u.arbitrary()?;
                    self.push(node, message, direct);
                }
            }
            // A heartbeat claiming any final sizes.
            _ => {
                let mut finalized = BTreeMap::new();
                for i in 0..=LIAR {
                    if u.arbitrary::<bool>()? {
                        finalized.insert(namespace(i), u.int_in_range(0..=16u64)?);
                    }
                }
                let content = Content::Heartbeat(HeartbeatContent { registry_version: 1, finalized });
                self.from_liar(node, content, true);
            }
        }
        Ok(())
    }

    /// What holds after every step.
    fn check(&self) {
        let mut finals: BTreeMap<(String, u64), String> = BTreeMap::new();
        for (node, engine) in self.engines.iter().enumerate() {
            for evidence in engine.evidence() {
                assert_eq!(
                    evidence.signer, self.dids[LIAR],
                    "engine {node} accuses an honest member: {evidence:?}"
                );
            }
            for (namespace, receipt) in engine.finals() {
                let root = receipt.anchor.batch_root.to_string();
                let key = (namespace.clone(), receipt.tree_size);
                if let Some(other) = finals.insert(key, root.clone()) {
                    assert_eq!(other, root, "two final roots of {namespace} at size {}", receipt.tree_size);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut world = World::new();
    for node in 0..HONEST {
        world.input(node, Input::Start);
    }
    for _ in 0..STEPS_MAX {
        if u.is_empty() || world.step(&mut u).is_err() {
            break;
        }
        world.check();
    }
    // Whatever came before, the checks hold once the network delivered what waits.
    let mut deliveries = 0;
    while let Some((to, message, direct)) = world.queue.pop_front() {
        let input = if direct { Input::FromSender(message) } else { Input::Message(message) };
        world.input(to, input);
        deliveries += 1;
        if deliveries > 4 * QUEUE_MAX {
            break;
        }
    }
    world.check();
});
