//! Governance calls: a join this node asks for, registry changes its operator proposes, the
//! proposals it holds and the operator's approval of them.

use remembrancer_core::governance::{self, ProposalReason, RegistryProposal};
use remembrancer_core::registry::RegistryUpdate;

use super::*;

impl Node {
    /// `federation join`: proposes this node's admission (again every `JOIN_REPEAT` until it
    /// is a member: the first broadcast may find no mesh yet).
    pub(super) fn join(&mut self, host: &mut NodeHost, request: &Request) -> anyhow::Result<Response> {
        let body: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(error) => return Ok(Response::error(400, format!("body is not JSON: {error}"))),
        };
        let registry = host.engine().registry();
        if let Some(federation) = body.get("federation").and_then(|f| f.as_str()) {
            if federation != registry.name {
                return Ok(Response::error(
                    400,
                    format!("this node's registry is federation {:?}, not {federation:?}", registry.name),
                ));
            }
        }
        if let Some(did) = body.get("node").and_then(|f| f.as_str()) {
            if did != self.identity.did() {
                return Ok(Response::error(
                    400,
                    format!(
                        "this node is {}, not {did}: point --data-dir at {did}'s node",
                        self.identity.did()
                    ),
                ));
            }
        }
        if registry.member(self.identity.did()).is_some() {
            return Ok(Response::error(
                409,
                format!(
                    "{} is already a member of {} (registry v{})",
                    self.identity.did(),
                    registry.name,
                    registry.version
                ),
            ));
        }
        let namespaces: Vec<String> = body
            .get("namespaces")
            .and_then(|n| n.as_array())
            .map(|list| list.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for namespace in &namespaces {
            if let Err(error) = remembrancer_core::checkpoint::validate_namespace(namespace) {
                return Ok(Response::error(400, format!("namespace {namespace:?}: {error}")));
            }
        }
        if let Some(address) = body.get("bootstrap").and_then(|b| b.as_str()) {
            match address.parse::<Multiaddr>() {
                Ok(address) => host.net_mut().dial(address),
                Err(error) => {
                    return Ok(Response::error(
                        400,
                        format!("--bootstrap {address:?} is not a multiaddr: {error}"),
                    ))
                }
            }
        }
        // The registry's endpoint is a URI hint (the spec's schema); peers find each other
        // through the DHT, so a join carries none unless the operator gives one.
        let endpoint = body.get("endpoint").and_then(|e| e.as_str()).map(str::to_string);
        self.joining = Some((namespaces.clone(), endpoint.clone()));
        let events = host.input(self, Input::RequestJoin { namespaces, endpoint })?;
        if let Some(reason) = events.iter().find_map(|e| match e {
            Event::ProposalRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        }) {
            self.joining = None;
            return Ok(Response::error(409, format!("the join cannot be proposed: {reason}")));
        }
        let mine = host.engine().proposals().find_map(|(digest, proposal, _)| {
            matches!(&proposal.reason, remembrancer_core::governance::ProposalReason::Join { did } if did == self.identity.did())
                .then(|| hex::encode(digest))
        });
        Ok(Response::ok(serde_json::json!({
            "did": self.identity.did(),
            "federation": host.engine().registry().name,
            "proposal": mine,
            "quorum": remembrancer_core::governance::admission_quorum(host.engine().registry()),
            "signers_needed": host.engine().registry().quorum,
        })))
    }

    /// `federation approve PROPOSAL`: signs a proposal this node holds.
    pub(super) fn approve(&mut self, host: &mut NodeHost, request: &Request) -> anyhow::Result<Response> {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let Some(text) = body.get("proposal").and_then(|p| p.as_str()) else {
            return Ok(Response::error(
                400,
                "name the proposal (its digest, as `federation status` lists it)",
            ));
        };
        let matches: Vec<[u8; 32]> = host
            .engine()
            .proposals()
            .map(|(digest, _, _)| digest)
            .filter(|digest| hex::encode(digest).starts_with(&text.to_ascii_lowercase()))
            .collect();
        let digest = match matches.as_slice() {
            [digest] if text.len() >= 8 => *digest,
            [] => {
                return Ok(Response::error(
                    404,
                    format!("no pending proposal {text}; `federation status` lists the pending ones"),
                ))
            }
            _ => {
                return Ok(Response::error(
                    400,
                    format!("{text} is ambiguous or too short: give at least 8 hex digits"),
                ))
            }
        };
        let version = host.engine().registry().version;
        host.input(self, Input::Approve { digest })?;
        let applied = host.engine().registry().version > version;
        Ok(Response::ok(serde_json::json!({
            "proposal": hex::encode(digest),
            "signed": true,
            "applied": applied,
            "registry_version": host.engine().registry().version,
        })))
    }

    /// `federation propose`: the body holds a `federation.registry.set@1.0.0` document
    /// (`update`, the CLI checked it against the schema) and optionally the registry version it
    /// was written against (`base_version`: a change in between is refused, not applied to a
    /// registry the operator did not see). The node signs it and broadcasts it.
    pub(super) fn propose(&mut self, host: &mut NodeHost, request: &Request) -> anyhow::Result<Response> {
        let body: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(error) => return Ok(Response::error(400, format!("body is not JSON: {error}"))),
        };
        let Some(update) = body.get("update") else {
            return Ok(Response::error(
                400,
                "body needs \"update\": a federation.registry.set@1.0.0 document",
            ));
        };
        let update = match RegistryUpdate::from_json(&update.to_string()) {
            Ok(update) => update,
            Err(error) => return Ok(Response::error(400, format!("update: {error}"))),
        };
        let registry = host.engine().registry().clone();
        if let Some(base) = body.get("base_version").and_then(serde_json::Value::as_u64) {
            if base != registry.version {
                return Ok(Response::error(
                    409,
                    format!(
                        "the change was written against registry version {base}, the registry is at {} now: \
                         look at `federation registry export` and propose again",
                        registry.version
                    ),
                ));
            }
        }
        let proposal = match governance::manual_update(&registry, update) {
            Ok(proposal) => proposal,
            Err(error) => return Ok(Response::error(409, format!("refused: {error}"))),
        };
        let digest = proposal.digest();
        match host.input_or_refusal(self, Input::Propose { proposal: proposal.clone() })? {
            Ok(_) => {}
            Err(error) => return Ok(Response::error(409, error.to_string())),
        }
        tracing::info!(proposal = %hex::encode(digest), "registry change proposed");
        let applied = host.engine().registry().version > registry.version;
        Ok(Response::ok(serde_json::json!({
            "proposal": hex::encode(digest),
            "base_version": registry.version,
            "changes": governance::describe(&registry, &proposal.apply(&registry)?),
            "signers": [self.identity.did()],
            "signers_needed": registry.quorum,
            "applied": applied,
            "registry_version": host.engine().registry().version,
        })))
    }
}

/// The proposals this node holds: what each changes, why, who has signed, how many must.
pub(super) fn proposals(host: &NodeHost) -> Response {
    let registry = host.engine().registry();
    let list: Vec<serde_json::Value> = host
        .engine()
        .proposals()
        .map(|(digest, proposal, signers)| describe_proposal(registry, digest, proposal, &signers))
        .collect();
    Response::ok(serde_json::Value::Array(list))
}

fn describe_proposal(
    registry: &remembrancer_core::registry::Registry,
    digest: [u8; 32],
    proposal: &RegistryProposal,
    signers: &[&str],
) -> serde_json::Value {
    let (reason, detail) = match &proposal.reason {
        ProposalReason::Manual { memo } => ("manual", memo.clone()),
        ProposalReason::Join { did } => ("join", did.clone()),
        ProposalReason::Equivocation { .. } => ("equivocation", String::new()),
        ProposalReason::UnelectedClaim { message } => {
            ("unelected claim", remembrancer_core::claims::claim_evidence_id(message))
        }
        ProposalReason::Misbehavior { peer } => ("misbehavior", peer.clone()),
        ProposalReason::Reinstatement { peer, .. } => ("reinstatement", peer.clone()),
    };
    let changes = match proposal.apply(registry) {
        Ok(next) => governance::describe(registry, &next),
        Err(error) => vec![format!("no longer applies: {error}")],
    };
    serde_json::json!({
        "proposal": hex::encode(digest),
        "base_version": proposal.base_version,
        "reason": reason,
        "detail": detail,
        "changes": changes,
        "signers": signers,
        "signers_needed": registry.quorum,
    })
}
