//! The operator API's calls, as the event loop answers them (`api.rs` serves them).

use super::anchoring;
use super::governance::proposals;

/// Anchors `GET /api/v1/anchors` lists at most (the most recently changed).
const ANCHORS_LISTED: usize = 1000;
use super::*;

impl Node {
    pub(super) fn on_api(&mut self, host: &mut NodeHost, call: ApiCall) -> anyhow::Result<()> {
        let ApiCall { request, reply } = call;
        let response = match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/v1/status") => Response::ok(self.status(host)),
            ("GET", "/v1/ready") => self.ready(host),
            ("POST", "/v1/records") => match self.append(host, &request) {
                Ok(records) => {
                    let namespace = records.0;
                    self.queued_records += records.1.len();
                    let full = self.queued_records >= self.config.engine.batch_records;
                    self.appends
                        .entry(namespace)
                        .or_default()
                        .push(PendingAppend { records: records.1, reply });
                    if full {
                        self.commit_waiting(host)?;
                    }
                    return Ok(());
                }
                Err(response) => response,
            },
            ("POST", "/v1/anchor") => self.anchor_now(host, &request)?,
            ("GET", "/v1/receipts") => self.receipts(host, &request),
            ("GET", "/v1/receipt") => self.receipt(host, &request),
            ("GET", "/v1/checkpoint") => self.checkpoint(host, &request),
            ("GET", "/v1/proof") => self.proof(host, &request),
            ("POST", "/v1/join") => self.join(host, &request)?,
            ("POST", "/v1/approve") => self.approve(host, &request)?,
            ("POST", "/v1/proposals") => self.propose(host, &request)?,
            ("GET", "/v1/proposals") => proposals(host),
            ("POST", "/v1/block") => self.block(host, &request, true),
            ("POST", "/v1/unblock") => self.block(host, &request, false),
            ("GET", "/v1/audit") => self.audit(&request),
            ("GET", "/v1/registry") => {
                let registry = host.engine().registry();
                Response::ok(serde_json::json!({
                    "federation": registry.name, "version": registry.version, "yaml": registry.to_yaml(),
                }))
            }
            ("GET", "/v1/registry/chain") => {
                Response::ok(serde_json::to_value(host.engine().registry_chain()).unwrap_or_default())
            }
            ("GET", "/v1/evidence") => evidence(host, &request),
            ("POST", "/v1/messages") => self.send_message(host, &request)?,
            ("GET", "/v1/messages") => self.messages(host, &request),
            ("GET", "/v1/treasury") => super::treasury::treasury(self, host),
            ("GET", "/v1/anchors") => match anchoring::listed(&self.store, ANCHORS_LISTED) {
                Ok(list) => Response::ok(serde_json::Value::Array(list)),
                Err(error) => Response::error(500, format!("the anchors could not be read: {error}")),
            },
            (method, path) => Response::error(404, format!("no API at {method} {path}")),
        };
        self.replies.push((reply, response));
        Ok(())
    }

    /// The audit trail, oldest first; `since` (Unix seconds) keeps the entries from then on.
    pub(super) fn audit(&self, request: &Request) -> Response {
        let since_ms = match request.param("since").map(str::parse::<u64>) {
            None => 0,
            Some(Ok(seconds)) => seconds.saturating_mul(1000),
            Some(Err(_)) => return Response::error(400, "since must be Unix seconds"),
        };
        match self.store.audit() {
            Ok(entries) => {
                let kept: Vec<_> = entries.into_iter().filter(|entry| entry.at_ms >= since_ms).collect();
                Response::ok(serde_json::to_value(kept).unwrap_or_default())
            }
            Err(error) => Response::error(500, format!("the audit trail could not be read: {error}")),
        }
    }

    /// Blocks or unblocks peers, named by PeerId or by registry DID: a block closes their
    /// connections and refuses new ones (a partition, for researchers and for operators
    /// cutting off a hostile peer); an unblock looks the federation up again.
    pub(super) fn block(&mut self, host: &mut NodeHost, request: &Request, block: bool) -> Response {
        let body: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(error) => return Response::error(400, format!("body is not JSON: {error}")),
        };
        let Some(names) = body.get("peers").and_then(|p| p.as_array()) else {
            return Response::error(400, "body needs \"peers\": [PeerId or DID, ...]");
        };
        let mut peers = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_str().unwrap_or_default();
            let peer = host.peer_of(name).or_else(|| name.parse::<PeerId>().ok());
            match peer {
                Some(peer) if peer == host.net().peer_id() => {
                    return Response::error(400, format!("{name} is this node"))
                }
                Some(peer) => peers.push(peer),
                None => {
                    return Response::error(
                        400,
                        format!("{name:?} is neither a PeerId nor a DID in the registry"),
                    )
                }
            }
        }
        for peer in &peers {
            if block {
                host.net_mut().block(*peer);
                if self.blocked.len() < BLOCKED_MAX {
                    self.blocked.insert(*peer);
                }
            } else {
                host.net_mut().unblock(*peer);
                self.blocked.remove(peer);
                host.net_mut().dial_peer(*peer);
            }
            tracing::info!(%peer, block, "block list changed");
        }
        if !block {
            host.net_mut().discover();
        }
        Response::ok(serde_json::json!({
            "blocked": self.blocked.iter().map(PeerId::to_string).collect::<Vec<_>>(),
        }))
    }

    pub(super) fn owned_namespace(&self, host: &NodeHost, request: &Request) -> Result<String, Response> {
        let body = match request.param("namespace") {
            Some(_) => None,
            None => serde_json::from_slice::<serde_json::Value>(&request.body).ok(),
        };
        self.owned_namespace_in(host, request, body.as_ref())
    }

    /// The namespace the query names, else the JSON `body`'s, if this node owns it under the
    /// current registry.
    pub(super) fn owned_namespace_in(
        &self,
        host: &NodeHost,
        request: &Request,
        body: Option<&serde_json::Value>,
    ) -> Result<String, Response> {
        let namespace = request
            .param("namespace")
            .or_else(|| body?.get("namespace")?.as_str())
            .map(str::to_string)
            .ok_or_else(|| Response::error(400, "name the namespace (--namespace NS)"))?;
        let registry = host.engine().registry();
        if !registry.may_anchor(self.identity.did(), &namespace) {
            return Err(Response::error(
                409,
                format!(
                    "{namespace} is not a namespace this node owns in the registry (version {})",
                    registry.version
                ),
            ));
        }
        // A namespace no member lists may be started by any member, but only on purpose: a
        // name that is not this node's (by the registry, or where the registry lists none for
        // it, by its configuration) and that it holds no tree of needs `create` (a typo starts
        // nothing).
        let own = self.own_namespaces(host);
        let held = host.engine().tree(&namespace).is_some();
        let create = body.and_then(|b| b.get("create")).and_then(serde_json::Value::as_bool).unwrap_or(false);
        if !own.contains(&namespace) && !held && !create {
            let mut known = own;
            for (name, _, _) in host.engine().owned_namespaces() {
                if !known.iter().any(|k| k == name) {
                    known.push(name.to_string());
                }
            }
            let known = if known.is_empty() { "none yet".to_string() } else { known.join(", ") };
            return Err(Response::error(
                404,
                format!(
                    "{namespace} is not a namespace of this node (its namespaces: {known}); to start a \
                     new namespace that no member lists, pass --create"
                ),
            ));
        }
        Ok(namespace)
    }

    /// The namespaces this node owns: the registry's list for it, or where the registry lists
    /// none for it, its configuration's `namespaces` that no other member owns.
    pub(super) fn own_namespaces(&self, host: &NodeHost) -> Vec<String> {
        let registry = host.engine().registry();
        match registry.member(self.identity.did()) {
            Some(member) if !member.namespaces.is_empty() => member.namespaces.clone(),
            _ => self
                .config
                .node
                .namespaces
                .iter()
                .filter(|namespace| {
                    !registry
                        .members
                        .values()
                        .any(|m| m.did != self.identity.did() && m.namespaces.contains(namespace))
                })
                .cloned()
                .collect(),
        }
    }

    pub(super) fn append(
        &mut self,
        host: &NodeHost,
        request: &Request,
    ) -> Result<(String, Vec<Vec<u8>>), Response> {
        // The body is parsed once: it holds the records and, unless the query names it, the
        // namespace.
        let body: serde_json::Value = serde_json::from_slice(&request.body)
            .map_err(|e| Response::error(400, format!("body is not JSON: {e}")))?;
        let namespace = self.owned_namespace_in(host, request, Some(&body))?;
        let encoded = body
            .get("records")
            .and_then(|r| r.as_array())
            .ok_or_else(|| Response::error(400, "body needs \"records\": [base64, ...]"))?;
        if encoded.is_empty() {
            return Err(Response::error(400, "no records to append"));
        }
        let mut records = Vec::with_capacity(encoded.len());
        for (i, value) in encoded.iter().enumerate() {
            let record = value
                .as_str()
                .and_then(|text| BASE64.decode(text).ok())
                .ok_or_else(|| Response::error(400, format!("records[{i}] is not base64")))?;
            if record.len() > RECORD_BYTES_MAX {
                return Err(Response::error(400, format!("records[{i}] is over {RECORD_BYTES_MAX} bytes")));
            }
            records.push(record);
        }
        if self.queued_records + records.len() > APPEND_QUEUE_RECORDS_MAX {
            return Err(Response::error(503, "too many records waiting for a commit; retry shortly"));
        }
        Ok((namespace, records))
    }

    pub(super) fn anchor_now(&mut self, host: &mut NodeHost, request: &Request) -> anyhow::Result<Response> {
        let namespace = match self.owned_namespace(host, request) {
            Ok(namespace) => namespace,
            Err(response) => return Ok(response),
        };
        self.commit_waiting(host)?;
        if let Err(EngineError::Refused(refusal)) =
            host.input_or_refusal(self, Input::AnchorNow { namespace: namespace.clone() })?
        {
            return Ok(Response::error(409, format!("not signed: {refusal}")));
        }
        let size = host.engine().tree(&namespace).map_or(0, |t| t.size());
        Ok(Response::ok(serde_json::json!({ "namespace": namespace, "size": size })))
    }

    pub(super) fn receipts(&self, host: &NodeHost, request: &Request) -> Response {
        let anchors = self.external_anchors();
        let listed = |r: &remembrancer_core::receipt::FederationReceipt| {
            serde_json::json!({"namespace": r.namespace, "size": r.tree_size,
                "root": r.anchor.batch_root.to_string(), "signatures": r.signatures.len(),
                "finalized_at": r.finalized_at,
                "external_anchor": covering(&anchors, &r.namespace, r.tree_size)})
        };
        let Some(namespace) = request.param("namespace") else {
            let latest: Vec<_> = host.engine().finals().values().map(|r| listed(r)).collect();
            return Response::ok(serde_json::json!(latest));
        };
        match self.store.receipts(namespace, remembrancer_store::RECEIPTS_LISTED_MAX) {
            Ok(receipts) => Response::ok(serde_json::json!(receipts.iter().map(listed).collect::<Vec<_>>())),
            Err(error) => Response::error(500, error.to_string()),
        }
    }

    pub(super) fn receipt(&self, host: &NodeHost, request: &Request) -> Response {
        let Some(namespace) = request.param("namespace") else {
            return Response::error(400, "name the namespace (--namespace NS)");
        };
        let receipt = match request.param("size").map(str::parse::<u64>) {
            Some(Ok(size)) => self.store.receipt(namespace, size).ok().flatten().map(Arc::new),
            Some(Err(_)) => return Response::error(400, "size must be a number"),
            None => host.engine().finals().get(namespace).cloned(),
        };
        // The receipt file as `verify receipt` reads it: the spec's JSON and nothing else (its
        // external anchor is in `receipts`, its proof from `proof --anchor`).
        match receipt {
            Some(receipt) => Response::ok(serde_json::to_value(receipt.as_ref()).unwrap_or_default()),
            None => Response::error(404, format!("no final receipt for {namespace} at that size yet")),
        }
    }

    /// The final external anchors this node holds, by namespace: (size anchored, the anchor
    /// object), smallest size first. An epoch anchor covers each namespace it lists at that
    /// size; a receipt anchored alone (independent mode), its own.
    fn external_anchors(&self) -> BTreeMap<String, Vec<(u64, serde_json::Value)>> {
        let mut by_namespace: BTreeMap<String, Vec<(u64, serde_json::Value)>> = BTreeMap::new();
        for (content, anchorer) in self.store.epoch_anchors().unwrap_or_default() {
            for entry in &content.entries {
                let object = anchor_object(&content.reference, Some(content.epoch), &anchorer, entry.size);
                by_namespace.entry(entry.namespace.clone()).or_default().push((entry.size, object));
            }
        }
        for state in anchoring::stored(&self.store).unwrap_or_default() {
            if state.status != remembrancer_anchor::Status::Final {
                continue;
            }
            if let (Some(AnchorRequestId::Receipt { namespace, size }), Some(reference)) =
                (anchoring::request_of(&state), anchoring::reference(&state))
            {
                let object = anchor_object(&reference, None, self.identity.did(), size);
                by_namespace.entry(namespace).or_default().push((size, object));
            }
        }
        for anchors in by_namespace.values_mut() {
            anchors.sort_by_key(|(size, _)| *size);
        }
        by_namespace
    }
    pub(super) fn checkpoint(&self, host: &NodeHost, request: &Request) -> Response {
        let Some(namespace) = request.param("namespace") else {
            return Response::error(400, "name the namespace (--namespace NS)");
        };
        let Some(receipt) = host.engine().finals().get(namespace) else {
            return Response::error(404, format!("no final receipt for {namespace} yet"));
        };
        let registry = host.engine().registry();
        match receipt.to_note(registry) {
            Ok(note) => Response::ok(
                serde_json::json!({ "namespace": namespace, "size": receipt.tree_size, "note": note.to_text() }),
            ),
            Err(error) => Response::error(500, error.to_string()),
        }
    }

    pub(super) fn proof(&self, host: &NodeHost, request: &Request) -> Response {
        let Some(namespace) = request.param("namespace") else {
            return Response::error(400, "name the namespace (--namespace NS)");
        };
        let Some(index) = request.param("index").and_then(|i| i.parse::<u64>().ok()) else {
            return Response::error(400, "give the record index (--index I)");
        };
        if request.param("anchor") == Some("true") {
            return self.anchored_proof(host, namespace, index);
        }
        let Some(receipt) = host.engine().finals().get(namespace) else {
            return Response::error(404, format!("no final receipt for {namespace} yet"));
        };
        match self.bundle_at(host, namespace, index, receipt) {
            Ok(bundle) => Response::ok(serde_json::to_value(bundle).unwrap_or_default()),
            Err(response) => response,
        }
    }

    /// The proof bundle of record `index` under the final checkpoint of `receipt`.
    pub(super) fn bundle_at(
        &self,
        host: &NodeHost,
        namespace: &str,
        index: u64,
        receipt: &remembrancer_core::receipt::FederationReceipt,
    ) -> Result<ProofBundle, Response> {
        let size = receipt.tree_size;
        if index >= size {
            return Err(Response::error(
                404,
                format!("record {index} is not under the final checkpoint (size {size}) yet"),
            ));
        }
        let Some(tree) = host.engine().tree(namespace) else {
            return Err(Response::error(
                409,
                format!("{namespace} is not owned by this node: ask its owner for proofs"),
            ));
        };
        let record = match self.store.record(namespace, index) {
            Ok(Some(record)) => record,
            _ => {
                return Err(Response::error(
                    500,
                    format!("record {index} of {namespace} is missing from the store"),
                ))
            }
        };
        // Older records' hashes are read back from the store and checked against the tree:
        // a damaged record is an error that says so, never a proof.
        let built = tree.inclusion_proof(index, size).and_then(|path| {
            Ok(InclusionProofJson::new(
                tree.algorithm(),
                index,
                size,
                tree.leaf_hash(index)?,
                &path,
                tree.root_at(size)?,
            ))
        });
        let proof = match built {
            Ok(proof) => proof,
            Err(error) => {
                tracing::error!(%namespace, index, %error, "an inclusion proof could not be built");
                return Err(Response::error(500, format!("the proof could not be built: {error}")));
            }
        };
        let registry =
            host.engine().registry_at(receipt.registry_version).unwrap_or(host.engine().registry());
        let note = receipt.to_note(registry).map_err(|error| Response::error(500, error.to_string()))?;
        Ok(ProofBundle::new(&record, proof, note.to_text()))
    }

    /// The parts of an anchor proof this node holds: the record's bundle under the checkpoint
    /// the first epoch anchor covering it lists, the path from that checkpoint to the epoch's
    /// batch root, and where the batch root was anchored. The CLI adds the block's bytes.
    fn anchored_proof(&self, host: &NodeHost, namespace: &str, index: u64) -> Response {
        let anchors = match self.store.epoch_anchors() {
            Ok(anchors) => anchors,
            Err(error) => {
                return Response::error(500, format!("the epoch anchors could not be read: {error}"))
            }
        };
        // The oldest epoch anchor whose entry of the namespace covers the record.
        let found = anchors.iter().rev().find_map(|(content, anchorer)| {
            let entry = content.entries.iter().find(|e| e.namespace == namespace && e.size > index)?;
            Some((content, anchorer, entry.size))
        });
        let Some((content, anchorer, size)) = found else {
            return self.receipt_anchor_proof(host, namespace, index);
        };
        let (_, bundle) = match self.stored_bundle(host, namespace, index, size) {
            Ok(found) => found,
            Err(response) => return response,
        };
        let Some((entry, path)) = remembrancer_core::anchoring::epoch_inclusion(&content.entries, namespace)
        else {
            return Response::error(500, "the epoch anchor does not list the namespace");
        };
        Response::ok(serde_json::json!({
            "bundle": bundle,
            "batch_root": path.root.to_string(),
            "observed": { "epoch": content.epoch, "anchorer": anchorer },
            "epoch": {
                "namespace": entry.namespace,
                "size": entry.size,
                "root": hex::encode(&entry.root),
                "path": path,
            },
            "reference": content.reference,
            "rpc_url": self.config.anchor.rpc_url,
        }))
    }

    /// The stored final receipt of `namespace` at `size`, and the bundle of record `index` under
    /// it.
    fn stored_bundle(
        &self,
        host: &NodeHost,
        namespace: &str,
        index: u64,
        size: u64,
    ) -> Result<(remembrancer_core::receipt::FederationReceipt, ProofBundle), Response> {
        let receipt = match self.store.receipt(namespace, size) {
            Ok(Some(receipt)) => receipt,
            _ => {
                return Err(Response::error(
                    404,
                    format!("no final receipt of {namespace} at size {size} here"),
                ))
            }
        };
        let bundle = self.bundle_at(host, namespace, index, &receipt)?;
        Ok((receipt, bundle))
    }

    /// An anchor proof's parts for a receipt this node anchored alone (independent mode): the
    /// smallest final one covering the record.
    fn receipt_anchor_proof(&self, host: &NodeHost, namespace: &str, index: u64) -> Response {
        let found = anchoring::stored(&self.store)
            .unwrap_or_default()
            .into_iter()
            .filter(|state| state.status == remembrancer_anchor::Status::Final)
            .filter_map(|state| match anchoring::request_of(&state) {
                Some(AnchorRequestId::Receipt { namespace: ns, size }) if ns == namespace && size > index => {
                    Some((size, state))
                }
                _ => None,
            })
            .min_by_key(|(size, _)| *size);
        let Some((size, state)) = found else {
            return Response::error(
                404,
                format!(
                    "record {index} of {namespace} is in no external anchor this node holds yet: an epoch is \
                     anchored once it ends and its anchor is final, a receipt anchored alone once its anchor \
                     is final (see `federation anchors`)"
                ),
            );
        };
        let (receipt, bundle) = match self.stored_bundle(host, namespace, index, size) {
            Ok(found) => found,
            Err(response) => return response,
        };
        Response::ok(serde_json::json!({
            "bundle": bundle,
            "batch_root": receipt.anchor.batch_root.to_string(),
            "observed": { "epoch": null, "anchorer": self.identity.did() },
            "epoch": null,
            "reference": anchoring::reference(&state),
            "rpc_url": self.config.anchor.rpc_url,
        }))
    }
}

/// The evidence this node holds: a list (id, signer, namespace, size), or with `id` (a prefix of
/// at least 4 hex digits) that record as an evidence file.
fn evidence(host: &NodeHost, request: &Request) -> Response {
    use remembrancer_core::claims::{claim_evidence_id, ClaimEvidenceFile};
    use remembrancer_core::evidence::{evidence_id, EvidenceFile};
    // Both kinds, each with its id and, for an export, its file.
    let equivocations = host.engine().evidence().iter().map(|e| {
        let summary = serde_json::json!({
            "id": evidence_id(e), "kind": "equivocation", "signer": e.signer,
            "namespace": e.namespace, "size": e.size,
        });
        (summary, serde_json::to_value(EvidenceFile::from(e)).unwrap_or_default())
    });
    let claims = host.engine().claim_evidence().iter().map(|e| {
        let summary = serde_json::json!({
            "id": claim_evidence_id(&e.message), "kind": "unelected_claim", "signer": e.signer,
            "epoch": e.epoch, "registry_version": e.registry_version, "rank": e.rank,
        });
        (summary, serde_json::to_value(ClaimEvidenceFile::from(e)).unwrap_or_default())
    });
    let held: Vec<(serde_json::Value, serde_json::Value)> = equivocations.chain(claims).collect();
    let Some(wanted) = request.param("id") else {
        return Response::ok(serde_json::json!(held
            .into_iter()
            .map(|(summary, _)| summary)
            .collect::<Vec<_>>()));
    };
    let wanted = wanted.to_ascii_lowercase();
    let matching: Vec<_> = held
        .into_iter()
        .filter(|(summary, _)| summary["id"].as_str().is_some_and(|id| id.starts_with(&wanted)))
        .collect();
    match matching.as_slice() {
        [(_, file)] if wanted.len() >= 4 => Response::ok(file.clone()),
        [] => Response::error(
            404,
            format!("no evidence {wanted}; `federation evidence list` lists what this node holds"),
        ),
        _ => Response::error(
            400,
            format!("{wanted} is ambiguous or too short: give at least 4 hex digits of the id"),
        ),
    }
}

/// The spec's `anchor` object for an external anchor of `namespace` at `size`.
fn anchor_object(
    reference: &remembrancer_core::anchoring::AnchorReference,
    epoch: Option<u64>,
    anchorer: &str,
    size: u64,
) -> serde_json::Value {
    serde_json::json!({
        "target": reference.target,
        "tx_hash": reference.tx_hash,
        "block": reference.block,
        "block_hash": reference.block_hash,
        "tx_index": reference.tx_index,
        "timestamp": reference.timestamp,
        "time_stamped": reference.token.is_some(),
        "epoch": epoch,
        "anchorer": anchorer,
        "size": size,
        "status": "final",
    })
}

/// The first external anchor of `namespace` at `size` or later (it commits to the tree at
/// `size` too), or null.
fn covering(
    anchors: &BTreeMap<String, Vec<(u64, serde_json::Value)>>,
    namespace: &str,
    size: u64,
) -> serde_json::Value {
    anchors
        .get(namespace)
        .and_then(|list| list.iter().find(|(anchored, _)| *anchored >= size))
        .map_or(serde_json::Value::Null, |(_, object)| object.clone())
}
