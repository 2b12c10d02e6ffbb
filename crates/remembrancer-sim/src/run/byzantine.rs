//! The byzantine behaviours the engines do not have: an owner that signs a second root for
//! each checkpoint and shows it to half of the nodes, and a forger of anchors and names.

use super::*;

impl<'a> Simulation<'a> {
    /// The equivocating owner shows its honest anchor to the even nodes and a forked one (the
    /// batch's last record changed) to the odd nodes.
    pub(crate) fn equivocate(&mut self, node: usize, anchor: &AnchorContent, honest: &PeerMessage) {
        let Some(checkpoint) =
            Note::parse(anchor.checkpoint.as_bytes()).ok().and_then(|n| Checkpoint::parse_body(&n.text).ok())
        else {
            return;
        };
        let Some(fork) = self.forks.get_mut(&node) else { return };
        // Bring the fork tree to the checkpoint's size; the differing record is the last one.
        let owner_tree = match self.engines[node].tree(&checkpoint.namespace) {
            Some(tree) => tree,
            None => return,
        };
        while fork.tree.size() < checkpoint.size {
            let index = fork.tree.size();
            let leaf = match owner_tree.leaf_hash(index) {
                Ok(leaf) if index + 1 < checkpoint.size => leaf,
                Ok(leaf) => HashAlgorithm::Sha256.node_hash(&leaf, &leaf),
                Err(_) => return,
            };
            if fork.tree.append_leaf_hash(leaf).is_err() {
                return;
            }
        }
        if fork.tree.size() != checkpoint.size {
            return;
        }
        let Ok(fork_root) = fork.tree.root_at(checkpoint.size) else { return };
        let forked = Checkpoint { root: fork_root, ..checkpoint.clone() };
        let identity = &self.identities[node];
        let note = Note {
            text: forked.body(),
            signatures: vec![NoteSignature::sign_ed25519(identity, &forked.body())],
        };
        let proof = fork
            .tree
            .consistency_proof(anchor.consistency_from.min(checkpoint.size), checkpoint.size)
            .unwrap_or_default();
        let content = Content::Anchor(AnchorContent {
            checkpoint: note.to_text(),
            consistency_from: anchor.consistency_from,
            consistency_proof: proof,
        });
        let forked_message = PeerMessage::sign(identity, content, EPOCH_MS + self.now_ms);
        let mut signatures = BTreeMap::new();
        signatures.insert(identity.did().to_string(), sign_anchor(identity, &forked));
        fork.pending.insert(forked.size, (forked, signatures));
        if self.first_fork_ms.is_none() {
            self.first_fork_ms = Some(self.now_ms);
        }
        let honest_bytes = honest.encode().len() as u64;
        let forked_bytes = forked_message.encode().len() as u64;
        for to in 0..self.engines.len() {
            if to % 2 == 0 {
                self.transmit(node, to, honest, honest_bytes);
            } else {
                self.transmit(node, to, &forked_message, forked_bytes);
            }
        }
    }

    /// An equivocating owner collects cosignatures on its fork and broadcasts any receipt it
    /// can assemble: the strongest attack on safety the simulator mounts.
    pub(crate) fn collect_fork_cosignature(&mut self, node: usize, sender: &str, message: &PeerMessage) {
        let Content::Countersign(content) = &message.content else { return };
        let Some(fork) = self.forks.get_mut(&node) else { return };
        let Some(body) = Note::parse(content.checkpoint.as_bytes()).ok().map(|n| n.text) else { return };
        let Ok(checkpoint) = Checkpoint::parse_body(&body) else { return };
        let Some((forked, signatures)) = fork.pending.get_mut(&checkpoint.size) else { return };
        if forked.body() != body {
            return;
        }
        let Ok(raw) = <[u8; 64]>::try_from(content.signature.as_slice()) else { return };
        signatures.insert(
            sender.to_string(),
            SignatureJson {
                node: sender.to_string(),
                sig: multibase_signature(&raw),
                role: Role::Witness,
                timestamp: content.timestamp,
            },
        );
        if signatures.len() < self.registry.quorum as usize {
            return;
        }
        let receipt =
            FederationReceipt::assemble(forked, signatures.values().cloned().collect(), &self.registry);
        fork.pending.remove(&checkpoint.size);
        let reply = Content::Receipt(Box::new(ReceiptContent { receipt: receipt.into() }));
        let message = PeerMessage::sign(&self.identities[node], reply, EPOCH_MS + self.now_ms);
        self.broadcast(node, &message);
    }

    pub(crate) fn forge(&mut self, node: usize) {
        // An anchor for a namespace it does not own, and a heartbeat under another's name.
        let victim = (node + 1) % self.engines.len();
        let identity = self.identities[node].clone();
        let checkpoint = Checkpoint {
            federation_id: self.registry.name.clone(),
            namespace: namespace_of(victim),
            size: 1,
            root: [0x66; 32],
            anchor: remembrancer_core::checkpoint::AnchorClaim::local(
                HashAlgorithm::Sha256,
                (EPOCH_MS + self.now_ms) / 1000,
            ),
        };
        let note = Note {
            text: checkpoint.body(),
            signatures: vec![NoteSignature::sign_ed25519(&identity, &checkpoint.body())],
        };
        let anchor = Content::Anchor(AnchorContent {
            checkpoint: note.to_text(),
            consistency_from: 0,
            consistency_proof: Vec::new(),
        });
        let message = PeerMessage::sign(&identity, anchor, EPOCH_MS + self.now_ms);
        self.broadcast(node, &message);
        let impostor = NodeIdentity::from_seed(&did_of(victim), identity.secret_seed())
            .unwrap_or_else(|_| unreachable!("did_of is a valid DID"));
        let heartbeat = Content::Heartbeat(HeartbeatContent::default());
        let message = PeerMessage::sign(&impostor, heartbeat, EPOCH_MS + self.now_ms);
        self.broadcast(node, &message);
    }
}
