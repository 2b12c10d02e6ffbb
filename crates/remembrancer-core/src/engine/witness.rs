//! The witness's flow: an anchor from the namespace's owner is checked (registered active
//! owner, valid note signature, consistent with what this node countersigned last, else a
//! proof is asked for) and countersigned with a `cosignature/v1`.

use super::*;

impl<S: NodeStore> Engine<S> {
    /// Parses an owner-signed checkpoint note and checks its anchor signature.
    /// Returns the checkpoint, its signer, and its body as signed (parsing checks that the body
    /// is canonical, so it equals `checkpoint.body()` without formatting it again).
    pub(super) fn signed_checkpoint(
        &self,
        note_text: &str,
    ) -> Result<(Checkpoint, String, String), (Rejection, String)> {
        let note =
            NoteView::parse(note_text.as_bytes()).map_err(|e| (Rejection::Malformed, e.to_string()))?;
        let checkpoint =
            Checkpoint::parse_body(note.text).map_err(|e| (Rejection::Malformed, e.to_string()))?;
        if checkpoint.federation_id != self.registry.name {
            return Err((
                Rejection::NotOwner,
                format!("checkpoint of federation {}", checkpoint.federation_id),
            ));
        }
        let (signer, key_id, signature) = note.first_signature();
        if !self.registry.may_anchor(signer, &checkpoint.namespace) {
            return Err((Rejection::NotOwner, format!("{signer} does not own {}", checkpoint.namespace)));
        }
        let Some(member) = self.registry.member(signer) else {
            return Err((Rejection::NotOwner, signer.to_string()));
        };
        let digest = note_digest(self.registry.version, note_text);
        let known = self.verified_notes.lock().is_ok_and(|v| v.0.contains(&digest));
        if !known {
            let verified = is_note_key(signer, &member.key, key_id)
                && signature.is_some_and(|signature| {
                    crate::signature::verify(&member.key, note.text.as_bytes(), &signature)
                });
            if !verified {
                return Err((
                    Rejection::BadStatement,
                    NoteError::SignatureInvalid(signer.to_string()).to_string(),
                ));
            }
            remember_verified_note(&self.verified_notes, digest);
        }
        Ok((checkpoint, signer.to_string(), note.text.to_string()))
    }

    pub(super) fn on_anchor(
        &mut self,
        sender: &str,
        content: AnchorContent,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), TreeError> {
        let (checkpoint, signer, body) = match self.signed_checkpoint(&content.checkpoint) {
            Ok(parsed) => parsed,
            Err((reason, detail)) => {
                self.reject(sender, reason, detail, now_ms, out);
                return Ok(());
            }
        };
        if signer != sender {
            self.reject(
                sender,
                Rejection::NotOwner,
                format!("relayed an anchor signed by {signer}"),
                now_ms,
                out,
            );
            return Ok(());
        }
        if signer == self.identity.did() {
            return Ok(());
        }
        if checkpoint.anchor.registry_version != self.registry.version {
            // Countersign only under the registry we hold: catch up when behind; an owner
            // behind us re-anchors once it applies the update.
            if checkpoint.anchor.registry_version > self.registry.version {
                self.request_registry(sender, now_ms, out);
            }
            return Ok(());
        }
        let namespace = checkpoint.namespace.clone();
        // The same checkpoint again (the owner's retry): the peers picked the first time hold
        // our countersignature already; only the owner may have missed it.
        let last = self.witnessed.get(&namespace).map(|last| (last.size, last.root));
        let again = last == Some((checkpoint.size, checkpoint.root));
        if let Some((last_size, last_root)) = last {
            // Older than the last checkpoint countersigned here, or another root for its size:
            // not countersigned, and a second root for a size this node countersigned (the
            // last or one it keeps from before) is evidence.
            if checkpoint.size < last_size || (checkpoint.size == last_size && checkpoint.root != last_root) {
                self.check_witnessed(&signer, &checkpoint, content.checkpoint, now_ms, out);
                return Ok(());
            }
            // The same root again (the owner's retry, or its note signed again after a
            // restart): countersign again, so that an owner that lost our countersignature
            // (a partition, a crash) still reaches its quorum. Nothing conflicts.
            if checkpoint.size > last_size && content.consistency_from != last_size {
                // We missed a round: ask for a proof from the size we last countersigned.
                let request = Content::Request(RequestContent {
                    kind: RequestKind::Consistency,
                    namespace,
                    from_size: last_size,
                    size: checkpoint.size,
                });
                out.push(Output::Send {
                    to: sender.to_string(),
                    message: PeerMessage::sign(&self.identity, request, now_ms),
                });
                return Ok(());
            }
            let consistent = checkpoint.size == last_size
                || verify_consistency(
                    checkpoint.anchor.algorithm,
                    last_size,
                    checkpoint.size,
                    &last_root,
                    &checkpoint.root,
                    &content.consistency_proof,
                )
                .is_ok();
            if !consistent {
                let detail =
                    format!("no valid consistency proof from size {} to {}", last_size, checkpoint.size);
                self.reject(sender, Rejection::Inconsistent, detail, now_ms, out);
                return Ok(());
            }
        }
        let (signature, raw) = countersign_body(&self.identity, &body, now_secs(now_ms));
        let owner_note = content.checkpoint.clone();
        let previous = self.witnessed.insert(
            namespace.clone(),
            Witnessed {
                size: checkpoint.size,
                root: checkpoint.root,
                note: content.checkpoint,
                verified_under: Some(self.registry.version),
            },
        );
        if let Some(previous) = previous.filter(|previous| previous.size < checkpoint.size) {
            let earlier = self.witnessed_earlier.entry(namespace.clone()).or_default();
            earlier.push_back(previous);
            if earlier.len() > PENDING_ANCHORS_MAX {
                earlier.pop_front();
            }
        }
        let timestamp = signature.timestamp;
        out.push(Output::Persist(Persist::Countersigned {
            namespace,
            size: checkpoint.size,
            note: owner_note.clone(),
            signature,
        }));
        let content = Content::Countersign(CountersignContent {
            checkpoint: owner_note,
            timestamp,
            signature: serde_bytes::ByteBuf::from(raw.to_vec()),
        });
        let mut message = PeerMessage::unsealed(self.identity.did(), content, now_ms);
        if again {
            message.seal(&self.identity);
            out.push(Output::Send { to: signer, message });
            return Ok(());
        }
        match self.gossip_peers(&signer, &body) {
            // The owner needs every cosignature; a few hashed peers spread the owner's signed
            // note so that split views still meet (evidence), at N log N deliveries instead of N^2.
            Some(peers) => {
                message.seal(&self.identity);
                out.push(Output::Send { to: signer.clone(), message: message.clone() });
                for peer in peers {
                    out.push(Output::Send { to: peer, message: message.clone() });
                }
            }
            None => out.push(Output::Publish(message)),
        }
        Ok(())
    }

    /// True when `note_text` is, byte for byte, an owner's note this node countersigned for
    /// its namespace (the last one, or one of the [`PENDING_ANCHORS_MAX`] before it), verified
    /// under the current registry (read from its origin line, without parsing the note).
    /// Another witness's countersign carrying it then changes nothing here: its note is valid,
    /// and its root is one this node witnessed, at a size no other note of this node's
    /// conflicts with. In a federation where every witness countersigns every anchor, that is
    /// most countersigns; with several anchors of an owner in flight, many carry an earlier
    /// one than the last this node countersigned.
    pub(super) fn countersigned_here(&self, note_text: &str) -> bool {
        let Some(namespace) = note_namespace(note_text) else { return false };
        let version = self.registry.version;
        self.witnessed_all(namespace).any(|w| w.verified_under == Some(version) && w.note == note_text)
    }

    /// The checkpoints this node countersigned for `namespace`: its last, then those before
    /// it that it keeps, newest first (each one's size below the one before it).
    pub(super) fn witnessed_all(&self, namespace: &str) -> impl Iterator<Item = &Witnessed> {
        let earlier =
            self.witnessed_earlier.get(namespace).into_iter().flat_map(|earlier| earlier.iter().rev());
        self.witnessed.get(namespace).into_iter().chain(earlier)
    }

    /// The note of a checkpoint this node countersigned (its last for the namespace, or one
    /// of those before it it keeps) at `size` with a root other than `root`: the owner signed
    /// both, and the two notes are the evidence.
    pub(super) fn witnessed_conflict(&self, namespace: &str, size: u64, root: &Digest) -> Option<String> {
        let witnessed = self.witnessed_all(namespace).find(|w| w.size == size)?;
        (witnessed.root != *root).then(|| witnessed.note.clone())
    }

    /// Raises evidence if `note` signs another root for a size this node countersigned;
    /// returns whether it did.
    pub(super) fn check_witnessed(
        &mut self,
        owner: &str,
        checkpoint: &Checkpoint,
        note: String,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) -> bool {
        let namespace = &checkpoint.namespace;
        let Some(witnessed) = self.witnessed_conflict(namespace, checkpoint.size, &checkpoint.root) else {
            return false;
        };
        self.raise_evidence(owner, namespace, checkpoint.size, witnessed, note, now_ms, out);
        true
    }
}
