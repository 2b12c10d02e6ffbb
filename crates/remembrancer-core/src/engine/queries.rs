//! What a host may ask the engine between inputs: every method here reads and changes nothing
//! (`seal` signs a message the host is about to gossip, and leaves the engine as it was). The
//! one other call besides `handle` is the hint `Engine::preverify` (`preverify.rs`).

use super::*;

impl<S: NodeStore> Engine<S> {
    /// The current registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The claims out of turn this node holds as evidence.
    pub fn claim_evidence(&self) -> &[ClaimEvidence] {
        &self.claim_evidence
    }

    /// The winning anchor of each recent epoch, with its anchorer.
    pub fn epoch_anchors(&self) -> impl Iterator<Item = (u64, &str)> {
        self.epoch_anchors.iter().map(|(epoch, (_, anchorer, _))| (*epoch, anchorer.as_str()))
    }

    /// The election order of `epoch` under the registry in force: first the primary, then the
    /// secondaries.
    pub fn election(&self, epoch: u64) -> Vec<String> {
        election_order(&self.registry, epoch)
    }

    /// Registry version `version`, when this node still keeps it.
    pub fn registry_at(&self, version: u64) -> Option<&Registry> {
        self.registries.get(&version).map(|registry| registry.as_ref())
    }

    /// The applied registry updates, oldest first.
    pub fn registry_chain(&self) -> &[RegistryContent] {
        &self.chain
    }

    /// This node's DID.
    pub fn did(&self) -> &str {
        self.identity.did()
    }

    /// Signs a message this node publishes unsealed ([`Output::Publish`]), for a host about to
    /// send it anywhere but its own message streams to members (gossip, say).
    pub fn seal(&self, message: &mut PeerMessage) {
        message.seal(&self.identity);
    }

    /// The latest final receipt of each namespace known here.
    pub fn finals(&self) -> &BTreeMap<String, Arc<FederationReceipt>> {
        &self.finals
    }

    /// Own anchors broadcast again since start: each means a retry interval passed without a
    /// new countersignature (a lost message, a deaf federation, or a stalled machine).
    pub fn anchors_rebroadcast(&self) -> u64 {
        self.anchors_rebroadcast
    }

    /// Evidence held.
    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }

    /// Registry proposals gathering signatures: digest, proposal, the members that signed.
    pub fn proposals(&self) -> impl Iterator<Item = ([u8; 32], &RegistryProposal, Vec<&str>)> {
        self.proposals.iter().map(|(digest, (proposal, signatures))| {
            (*digest, proposal, signatures.keys().map(String::as_str).collect())
        })
    }

    /// The winning anchor of `epoch` this node holds, and the member that made it.
    pub fn epoch_anchor(&self, epoch: u64) -> Option<(&EpochAnchorContent, &str)> {
        self.epoch_anchors.get(&epoch).map(|(content, anchorer, _)| (content, anchorer.as_str()))
    }

    /// Recent audit entries.
    pub fn audit(&self) -> impl Iterator<Item = &AuditEntry> {
        self.audit.iter()
    }

    /// Per-peer scores.
    pub fn scores(&self) -> &BTreeMap<String, PeerScore> {
        &self.scores
    }

    /// True when an owned namespace has as many own anchors pending as the window allows: a
    /// commit now would store its records without anchoring them.
    pub fn anchor_window_full(&self, namespace: &str) -> bool {
        self.owned.get(namespace).is_some_and(|owned| owned.pending.len() >= self.anchor_window())
    }

    /// The tree of an owned namespace.
    pub fn tree(&self, namespace: &str) -> Option<&MemoryTree<S>> {
        self.owned.get(namespace).map(|o| &o.tree)
    }

    /// The Ed25519 operations of this engine's own verifier so far ([`Engine::set_verifier`];
    /// none: zero).
    pub fn operations(&self) -> Operations {
        self.verifier.as_ref().map(Verifier::operations).unwrap_or_default()
    }

    /// The hash algorithm of the trees this engine starts for namespaces it commits to.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.config.algorithm
    }

    /// Every namespace this node holds a tree of as owner (restored or committed to, whether
    /// or not the current registry lists it), with its tree and, if it halted, why.
    pub fn owned_namespaces(&self) -> impl Iterator<Item = (&str, &MemoryTree<S>, Option<&SignRefusal>)> {
        self.owned
            .iter()
            .map(|(namespace, owned)| (namespace.as_str(), &owned.tree, owned.guard.halted.as_ref()))
    }

    /// Whether `message` lies on the way to one of this node's receipts or to another
    /// owner's: an anchor (this node countersigns it), a countersignature of an anchor of
    /// this node's own that still waits for its quorum, and the rare kinds (catch-up
    /// requests, evidence, registry updates, epoch anchors). Receipts, heartbeats and the
    /// other countersignatures (of other owners' anchors, and those of this node's own that
    /// come after the quorum: they count only for their witness's score) are bookkeeping: a
    /// host may hold them back a few milliseconds while the messages that decide receipts go
    /// first, and then handle them in one batch.
    pub fn is_on_receipt_path(&self, message: &PeerMessage) -> bool {
        match &message.content {
            Content::Receipt(_) | Content::Heartbeat(_) => false,
            Content::Countersign(content) => self.awaits_countersign(&content.checkpoint),
            _ => true,
        }
    }
}
