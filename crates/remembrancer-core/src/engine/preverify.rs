//! Pre-verification: the signatures of messages that arrive together (message signatures,
//! the notes inside anchors, cosignatures) checked in one Ed25519 batch before they are
//! handled, so handling them verifies nothing again.

use super::*;

impl<S: NodeStore> Engine<S> {
    /// The signatures inside `message` this node is about to verify one by one when it
    /// handles it, with their keys and signed bytes: an anchor's (or another owner's
    /// countersign's) owner signature on a note not verified yet, and the cosignature of a
    /// countersign of this node's own checkpoint. None for what does not parse (the handler
    /// names that) and for other kinds.
    pub(super) fn statement_signature(
        &self,
        message: &PeerMessage,
    ) -> Option<(VerifyingKey, Vec<u8>, [u8; 64])> {
        let (note_text, cosignature) = match &message.content {
            Content::Anchor(content) => (content.checkpoint.as_str(), None),
            Content::Countersign(content) => (content.checkpoint.as_str(), Some(content)),
            _ => return None,
        };
        // A note this node countersigned, verified then: its signature is known.
        if self.countersigned_here(note_text) {
            return None;
        }
        // The note of a pending anchor of this node's own: its body is kept with it.
        if let (Some(content), Some(pending)) = (cosignature, self.own_pending_note(note_text)) {
            let key = self.registry.member(&message.sender)?.key;
            let signature = <[u8; 64]>::try_from(content.signature.as_slice()).ok()?;
            return Some((key, cosignature_message(content.timestamp, &pending.body), signature));
        }
        let note = NoteView::parse(note_text.as_bytes()).ok()?;
        match cosignature {
            Some(content) if self.owns_checkpoint(note_text) => {
                let key = self.registry.member(&message.sender)?.key;
                let signature = <[u8; 64]>::try_from(content.signature.as_slice()).ok()?;
                Some((key, cosignature_message(content.timestamp, note.text), signature))
            }
            _ => {
                let digest = note_digest(self.registry.version, note_text);
                if self.verified_notes.lock().is_ok_and(|v| v.0.contains(&digest)) {
                    return None;
                }
                let (name, key_id, signature) = note.first_signature();
                let key = self.registry.member(name)?.key;
                if !is_note_key(name, &key, key_id) {
                    return None;
                }
                Some((key, note.text.as_bytes().to_vec(), signature?))
            }
        }
    }

    /// Verifies, in one batch, the signatures that handling `group` (the messages the host is
    /// about to pass, each with whether it is an [`Input::FromSender`]) would otherwise verify
    /// one by one: the message signatures of members' messages not seen before that did not
    /// come from their sender, the signatures inside anchors and countersigns
    /// ([`Engine::statement_signature`]), and those of receipts that are news here (in a
    /// small federation receipts wait a few milliseconds to be handled together, so their
    /// cosignatures make most of a batch). The rule gives a batch the verdict of its signatures
    /// one by one (`crate::signature`), so when it passes, each message skips its signature
    /// check (at most `PREVERIFY_MAX`, each once, and only against the key checked here) and
    /// each statement signature is remembered as valid in the engine's verifier (without a memo, only
    /// message signatures take part), and so is each receipt's verdict, which `on_receipt`
    /// then finds instead of preparing the receipt's statements again. A statement counts as
    /// in the batch only with the same key, bytes and signature (a signature copied from
    /// another receipt is another statement). When the batch fails, nothing is marked and each
    /// is verified on its own, which names the bad one. Replaces what an earlier call marked.
    /// Returns how many signatures were proven.
    pub fn preverify<'a>(&mut self, group: impl IntoIterator<Item = (&'a PeerMessage, bool)>) -> usize {
        self.lending(|engine| engine.preverify_lent(group))
    }

    fn preverify_lent<'a>(&mut self, group: impl IntoIterator<Item = (&'a PeerMessage, bool)>) -> usize {
        self.preverified.clear();
        let mut keys: Vec<VerifyingKey> = Vec::new();
        let mut bytes: Vec<Vec<u8>> = Vec::new();
        let mut signatures: Vec<ed25519_dalek::Signature> = Vec::new();
        let mut statements: BTreeMap<[u8; 64], usize> = BTreeMap::new();
        // Verdict keys of the receipts whose every signature is in the batch (or known).
        let mut receipts_proven: Vec<[u8; 32]> = Vec::new();
        // A statement signature proven here is recalled only through the verifier's memo.
        let with_statements = crate::signature::memo_installed();
        for (message, from_sender) in group {
            if keys.len() + 2 > PREVERIFY_MAX {
                break;
            }
            let Some(member) = self.registry.member(&message.sender) else { continue };
            if member.status == PeerStatus::Suspended || self.seen.contains(&seen_key(message)) {
                continue;
            }
            // An unsealed message from another connection is refused in `receive`.
            if let (false, Some(signature)) = (from_sender, message.signature()) {
                if self.preverified.insert(message.signed_digest(), member.key).is_none() {
                    keys.push(member.key);
                    bytes.push(message.signing_bytes());
                    signatures.push(ed25519_dalek::Signature::from_bytes(signature));
                }
            }
            if !with_statements {
                continue;
            }
            // Countersigns carry the note of the anchor they answer: one copy per group.
            if let Some((key, signed, signature)) = self.statement_signature(message) {
                if !in_batch(&statements, &keys, &bytes, (&key, &signed, &signature)) {
                    statements.entry(signature).or_insert(keys.len());
                    keys.push(key);
                    bytes.push(signed);
                    signatures.push(ed25519_dalek::Signature::from_bytes(&signature));
                }
            }
            // A receipt's signatures, unless it changes nothing here (`on_receipt` skips it)
            // or does not fit; those this thread knows already leave the batch by the memo.
            if let Content::Receipt(content) = &message.content {
                let receipt = content.receipt.as_ref();
                let Some(registry) = self.registries.get(&receipt.registry_version) else { continue };
                if !self.receipt_is_news(receipt) {
                    continue;
                }
                let Some(triples) = prepare_receipt(receipt, registry) else { continue };
                let fresh: Vec<_> = triples
                    .into_iter()
                    .filter(|(signed, signature, key)| {
                        !in_batch(&statements, &keys, &bytes, (key, signed, &signature.to_bytes()))
                    })
                    .collect();
                if keys.len() + fresh.len() > PREVERIFY_MAX {
                    continue;
                }
                for (signed, signature, key) in fresh {
                    statements.entry(signature.to_bytes()).or_insert(keys.len());
                    keys.push(key);
                    bytes.push(signed);
                    signatures.push(signature);
                }
                // A passing batch proves the receipt as `verify_receipts_batch` would (its
                // checks are `prepare_receipt`'s, and each of its signatures is in the batch or
                // known): `on_receipt` then finds the verdict instead of preparing it again.
                receipts_proven.push(receipt_verdict_key(by_receipt_encoding(receipt), registry));
            }
        }
        // One signature gains nothing from a batch.
        let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
        if refs.len() < 2 || !crate::signature::verify_batch_known(&refs, &signatures, &keys) {
            self.preverified.clear();
            return 0;
        }
        for key in receipts_proven {
            crate::signature::memoized(key, || true);
        }
        refs.len()
    }
}
