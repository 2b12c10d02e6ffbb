//! Registry governance: a registry update (`federation.registry.set@1.0.0`) takes effect only
//! when a quorum of the current registry's active members has signed it. Proposals name the
//! version they apply to and why; evidence-backed ones can be checked by every member.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::identity::NodeIdentity;
use crate::registry::{Member, PeerStatus, Registry, RegistryError, RegistryUpdate};

/// Domain-separation tag of registry-update signatures.
pub const REGISTRY_PROPOSAL_DOMAIN: &[u8] = b"remembrancer/registry-update/v1\0";

/// Why a registry update is proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProposalReason {
    /// An operator's change (joins, removals, quorum): members sign it by their admission
    /// policy, never automatically.
    Manual {
        /// Why.
        memo: String,
    },
    /// The peer whose status changes signed two checkpoints that conflict: two C2SP notes
    /// of one namespace and size with different roots. Objective: every member can check it.
    Equivocation {
        /// First signed checkpoint note.
        first: String,
        /// Second signed checkpoint note.
        second: String,
    },
    /// The peer whose status changes signed an epoch anchor claim its election did not allow
    /// it (the claim's peer message). Objective: every member holding the registry version
    /// the claim names can check it ([`crate::claims::check_claim`]).
    UnelectedClaim {
        /// The signed claim.
        message: serde_bytes::ByteBuf,
    },
    /// The proposer's score of `peer` crossed the probation threshold; members sign when
    /// their own score of it agrees.
    Misbehavior {
        /// The peer.
        peer: String,
    },
    /// A node outside the registry asks to join (`federation join`): the proposal adds it,
    /// and nothing else but the quorum, raised to stay above half of the active members
    /// ([`admission`]). Members sign it by their admission policy: `open` signs every
    /// well-formed join, `manual` waits for an operator's `federation approve`.
    Join {
        /// The joining node's DID.
        did: String,
    },
    /// `peer` has behaved for the configured time; members sign when their own view agrees.
    Reinstatement {
        /// The peer.
        peer: String,
        /// When the proposer judged it (host milliseconds); makes each attempt distinct.
        at_ms: u64,
    },
}

/// A proposed registry update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryProposal {
    /// The registry version it applies to; applying it makes `base_version + 1`.
    pub base_version: u64,
    /// The whole new registry, in the spec's update shape.
    pub update: RegistryUpdate,
    /// Why.
    pub reason: ProposalReason,
}

/// One member's signature on a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalSignature {
    /// The member's DID.
    pub node: String,
    /// Ed25519 over [`RegistryProposal::signing_bytes`].
    pub signature: serde_bytes::ByteBuf,
}

impl RegistryProposal {
    /// The bytes members sign: the domain tag, then the proposal's CBOR.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = REGISTRY_PROPOSAL_DOMAIN.to_vec();
        let result = ciborium::into_writer(self, &mut out);
        debug_assert!(result.is_ok(), "writing CBOR to a Vec cannot fail");
        out
    }

    /// A digest identifying the proposal.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.signing_bytes()).into()
    }

    /// Signs the proposal.
    pub fn sign(&self, identity: &NodeIdentity) -> ProposalSignature {
        ProposalSignature {
            node: identity.did().to_string(),
            signature: serde_bytes::ByteBuf::from(identity.sign(&self.signing_bytes()).to_vec()),
        }
    }

    /// The registry this proposal makes from `current`, validated: the federation matches,
    /// the base version is current, and the result is a valid registry (a quorum above half
    /// of the active members and at most all of them).
    pub fn apply(&self, current: &Registry) -> Result<Registry, RegistryError> {
        if self.update.federation_id != current.name {
            return Err(RegistryError::Invalid {
                field: "federation_id".to_string(),
                message: format!(
                    "the update is for {:?}, the registry is {:?}",
                    self.update.federation_id, current.name
                ),
            });
        }
        if self.base_version != current.version {
            return Err(RegistryError::Invalid {
                field: "base_version".to_string(),
                message: format!(
                    "the update applies to version {}, the registry is at {}",
                    self.base_version, current.version
                ),
            });
        }
        self.update.to_registry(Some(current))
    }

    /// Distinct active members of `current` whose signatures in `signatures` verify.
    pub fn valid_signers<'a>(
        &self,
        current: &Registry,
        signatures: impl IntoIterator<Item = &'a ProposalSignature>,
    ) -> Vec<String> {
        let bytes = self.signing_bytes();
        let mut signers: Vec<String> = signatures
            .into_iter()
            .filter(|s| {
                current.member(&s.node).is_some_and(|m| {
                    m.status == PeerStatus::Active
                        && <[u8; 64]>::try_from(s.signature.as_slice())
                            .is_ok_and(|raw| crate::signature::verify(&m.key, &bytes, &raw))
                })
            })
            .map(|s| s.node.clone())
            .collect();
        signers.sort();
        signers.dedup();
        signers
    }
}

/// A proposal that sets `peer`'s status in `current`, for `reason`. Refused, with the reason,
/// when the result would not be a valid registry (for example fewer active members than the
/// quorum).
pub fn status_change(
    current: &Registry,
    peer: &str,
    status: PeerStatus,
    reason: ProposalReason,
) -> Result<RegistryProposal, RegistryError> {
    let mut next = current.clone();
    let member = next.members.get_mut(peer).ok_or_else(|| RegistryError::Invalid {
        field: "peer".to_string(),
        message: format!("{peer} is not in the registry"),
    })?;
    member.status = status;
    let update = RegistryUpdate::from_registry(&next, None);
    let proposal = RegistryProposal { base_version: current.version, update, reason };
    proposal.apply(current)?;
    Ok(proposal)
}

/// One change an operator proposes (`federation propose`'s shorthand forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add a member (active unless its status says otherwise).
    AddMember(Box<Member>),
    /// Remove a member; the namespaces it owned are owned by nobody after.
    RemoveMember(String),
    /// Set a member's status.
    SetStatus(String, PeerStatus),
    /// Set the quorum.
    SetQuorum(u32),
    /// Set how anchors are propagated.
    SetAnchorStrategy(crate::registry::AnchorMode),
    /// Set the treasury's cap per member and epoch, gwei (None: no cap).
    SetEpochCap(Option<u64>),
    /// Set the treasury's cap per anchor, gwei (None: no cap).
    SetAnchorCap(Option<u64>),
    /// Make `owner` the one owner of `namespace` (taken from whoever listed it before).
    SetOwner {
        /// The namespace.
        namespace: String,
        /// The member that owns it after.
        owner: String,
    },
}

/// The proposal that makes `changes` to `current` (an operator's, reason `Manual`, signed by
/// members only by their operators' `federation approve`). Refused with the field and the
/// reason when the result is not a valid registry: a member unknown or already there, a
/// namespace with two owners, fewer active members than the quorum, a quorum at or below half.
pub fn manual(current: &Registry, changes: &[Change], memo: &str) -> Result<RegistryProposal, RegistryError> {
    let refuse = |field: &str, message: String| RegistryError::Invalid { field: field.to_string(), message };
    let mut next = current.clone();
    for change in changes {
        match change {
            Change::AddMember(member) => {
                if next.members.contains_key(&member.did) {
                    return Err(refuse(
                        "did",
                        format!("{} is already a member of {}", member.did, current.name),
                    ));
                }
                next.members.insert(member.did.clone(), (**member).clone());
            }
            Change::RemoveMember(did) => {
                next.members
                    .remove(did)
                    .ok_or_else(|| refuse("did", format!("{did} is not a member of {}", current.name)))?;
            }
            Change::SetStatus(did, status) => {
                next.members
                    .get_mut(did)
                    .ok_or_else(|| refuse("did", format!("{did} is not a member of {}", current.name)))?
                    .status = *status;
            }
            Change::SetQuorum(quorum) => next.quorum = *quorum,
            Change::SetAnchorStrategy(mode) => next.anchor_propagation.mode = *mode,
            Change::SetEpochCap(cap) => next.anchor_propagation.cap_per_epoch_gwei = *cap,
            Change::SetAnchorCap(cap) => next.anchor_propagation.cap_per_anchor_gwei = *cap,
            Change::SetOwner { namespace, owner } => {
                crate::checkpoint::validate_namespace(namespace)
                    .map_err(|error| refuse("namespace", error.to_string()))?;
                if !next.members.contains_key(owner) {
                    return Err(refuse("owner", format!("{owner} is not a member of {}", current.name)));
                }
                for member in next.members.values_mut() {
                    member.namespaces.retain(|n| n != namespace);
                }
                if let Some(member) = next.members.get_mut(owner) {
                    member.namespaces.push(namespace.clone());
                }
            }
        }
    }
    let update = RegistryUpdate::change(current, &next, Some(memo.to_string()));
    let proposal = RegistryProposal {
        base_version: current.version,
        update,
        reason: ProposalReason::Manual { memo: memo.to_string() },
    };
    proposal.apply(current)?;
    Ok(proposal)
}

/// The proposal of a whole `federation.registry.set@1.0.0` document an operator wrote, to
/// apply to `current`. Refused, with the field and the reason, when it does not apply.
pub fn manual_update(current: &Registry, update: RegistryUpdate) -> Result<RegistryProposal, RegistryError> {
    let memo = update.memo.clone().unwrap_or_default();
    let proposal =
        RegistryProposal { base_version: current.version, update, reason: ProposalReason::Manual { memo } };
    proposal.apply(current)?;
    Ok(proposal)
}

/// What `next` changes in `current`, one line each, for people reading a proposal
/// (`federation proposals`): members added and removed, statuses, namespaces, endpoints,
/// keys, the quorum and the anchor strategy.
pub fn describe(current: &Registry, next: &Registry) -> Vec<String> {
    let mut lines = Vec::new();
    for (did, member) in &next.members {
        match current.member(did) {
            None => lines.push(format!(
                "add {did} ({}{})",
                member.status.name(),
                if member.namespaces.is_empty() {
                    String::new()
                } else {
                    format!(", owns {}", member.namespaces.join(", "))
                }
            )),
            Some(before) => {
                if before.status != member.status {
                    lines.push(format!("{did}: {} -> {}", before.status.name(), member.status.name()));
                }
                if before.key != member.key {
                    lines.push(format!(
                        "{did}: new key {}",
                        crate::identity::multibase_public_key(&member.key)
                    ));
                }
                if before.namespaces != member.namespaces {
                    let list = |n: &[String]| if n.is_empty() { "none".to_string() } else { n.join(", ") };
                    lines.push(format!(
                        "{did}: namespaces {} -> {}",
                        list(&before.namespaces),
                        list(&member.namespaces)
                    ));
                }
                if before.endpoint != member.endpoint {
                    lines
                        .push(format!("{did}: endpoint {}", member.endpoint.as_deref().unwrap_or("removed")));
                }
            }
        }
    }
    for did in current.members.keys().filter(|did| next.member(did).is_none()) {
        lines.push(format!("remove {did}"));
    }
    if current.quorum != next.quorum {
        lines.push(format!("quorum {} -> {}", current.quorum, next.quorum));
    }
    if current.anchor_propagation.mode != next.anchor_propagation.mode {
        lines.push(format!(
            "anchor_strategy {} -> {}",
            current.anchor_propagation.mode.name(),
            next.anchor_propagation.mode.name()
        ));
    }
    let cap = |c: Option<u64>| c.map_or_else(|| "none".to_string(), |gwei| format!("{gwei} gwei"));
    let (before, after) = (&current.anchor_propagation, &next.anchor_propagation);
    if before.cap_per_epoch_gwei != after.cap_per_epoch_gwei {
        lines.push(format!(
            "treasury cap per member and epoch {} -> {}",
            cap(before.cap_per_epoch_gwei),
            cap(after.cap_per_epoch_gwei)
        ));
    }
    if before.cap_per_anchor_gwei != after.cap_per_anchor_gwei {
        lines.push(format!(
            "treasury cap per anchor {} -> {}",
            cap(before.cap_per_anchor_gwei),
            cap(after.cap_per_anchor_gwei)
        ));
    }
    if lines.is_empty() {
        lines.push("no change but the version".to_string());
    }
    lines
}

/// The quorum after one more active member joins `current`: unchanged while it stays above
/// half of the active members, else the smallest majority.
pub fn admission_quorum(current: &Registry) -> u32 {
    let active_after = current.active_count() as u32 + 1;
    current.quorum.max(active_after / 2 + 1)
}

/// The one proposal that admits `member` to `current`: the member added as active, the quorum
/// raised by [`admission_quorum`], nothing else changed. Refused (with the reason) when the
/// DID or the key is already in the registry, or a namespace it claims is another member's.
pub fn admission(current: &Registry, member: &Member) -> Result<RegistryProposal, RegistryError> {
    let refuse = |field: &str, message: String| RegistryError::Invalid { field: field.to_string(), message };
    if current.members.contains_key(&member.did) {
        return Err(refuse("did", format!("{} is already a member of {}", member.did, current.name)));
    }
    if let Some(holder) = current.members.values().find(|m| m.key == member.key) {
        return Err(refuse("pubkey", format!("the key is already {}'s", holder.did)));
    }
    for namespace in &member.namespaces {
        if let Some(owner) = current.members.values().find(|m| m.namespaces.contains(namespace)) {
            return Err(refuse("namespaces", format!("{namespace} is owned by {}", owner.did)));
        }
    }
    let mut next = current.clone();
    next.members.insert(member.did.clone(), Member { status: PeerStatus::Active, ..member.clone() });
    next.quorum = admission_quorum(current);
    let update = RegistryUpdate::from_registry(&next, None);
    let reason = ProposalReason::Join { did: member.did.clone() };
    let proposal = RegistryProposal { base_version: current.version, update, reason };
    proposal.apply(current)?;
    Ok(proposal)
}

/// Replays a chain of applied registry updates from the founding registry: each update must
/// apply to the version before it and carry valid signatures of a quorum of that version's
/// active members. Returns every version, founding first: what an auditor needs to check a
/// receipt counted under an older registry.
pub fn replay_chain(
    founding: Registry,
    updates: &[crate::message::RegistryContent],
) -> Result<Vec<Registry>, RegistryError> {
    let mut versions = vec![founding];
    for (index, update) in updates.iter().enumerate() {
        let current = versions.last().unwrap_or_else(|| unreachable!("starts with the founding registry"));
        let next = update.proposal.apply(current).map_err(|error| RegistryError::Invalid {
            field: format!("updates[{index}]"),
            message: error.to_string(),
        })?;
        let signers = update.proposal.valid_signers(current, update.signatures.iter());
        if signers.len() < current.quorum as usize {
            return Err(RegistryError::Invalid {
                field: format!("updates[{index}].signatures"),
                message: format!(
                    "{} valid signatures of active members of version {}, its quorum is {}: this update never took effect",
                    signers.len(),
                    current.version,
                    current.quorum
                ),
            });
        }
        versions.push(next);
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AnchorPropagation, FederationSection, PeerEntry, RegistryDocument};

    fn federation(n: usize, quorum: u32) -> (Vec<NodeIdentity>, Registry) {
        let nodes: Vec<NodeIdentity> = (0..n)
            .map(|i| NodeIdentity::from_seed(&format!("did:vm:node:g{i}"), [i as u8 + 60; 32]).expect("id"))
            .collect();
        let document = RegistryDocument {
            federation: FederationSection {
                name: "gov".to_string(),
                version: 1,
                quorum,
                peers: nodes.iter().map(|n| PeerEntry::for_identity(n, Vec::new())).collect(),
                anchor_propagation: AnchorPropagation::default(),
            },
        };
        (nodes, Registry::from_document(&document).expect("registry"))
    }

    #[test]
    fn a_probation_takes_a_quorum_of_valid_member_signatures() {
        let (nodes, registry) = federation(5, 3);
        let reason = ProposalReason::Manual { memo: "test".to_string() };
        let proposal =
            status_change(&registry, "did:vm:node:g4", PeerStatus::Probation, reason).expect("proposal");
        let next = proposal.apply(&registry).expect("applies");
        assert_eq!(next.version, 2);
        assert_eq!(next.member("did:vm:node:g4").expect("m").status, PeerStatus::Probation);
        let mut signatures: Vec<ProposalSignature> = nodes[..2].iter().map(|n| proposal.sign(n)).collect();
        signatures.push(proposal.sign(&nodes[0]));
        let outsider = NodeIdentity::from_seed("did:vm:node:x", [1; 32]).expect("id");
        signatures.push(proposal.sign(&outsider));
        let mut forged = proposal.sign(&nodes[3]);
        forged.signature = serde_bytes::ByteBuf::from(vec![0u8; 64]);
        signatures.push(forged);
        assert_eq!(
            proposal.valid_signers(&registry, &signatures).len(),
            2,
            "duplicates, outsiders and forgeries do not count"
        );
        signatures.push(proposal.sign(&nodes[2]));
        assert_eq!(proposal.valid_signers(&registry, &signatures).len(), 3);
        // Applied once, the proposal no longer applies (its base version is gone).
        assert!(proposal.apply(&next).is_err());
    }

    #[test]
    fn a_chain_replays_only_with_quorum_signatures() {
        let (nodes, registry) = federation(5, 3);
        let reason = ProposalReason::Manual { memo: "x".to_string() };
        let proposal =
            status_change(&registry, "did:vm:node:g4", PeerStatus::Probation, reason).expect("proposal");
        let signed = crate::message::RegistryContent {
            proposal: proposal.clone(),
            signatures: nodes[..3].iter().map(|n| proposal.sign(n)).collect(),
        };
        let versions = replay_chain(registry.clone(), std::slice::from_ref(&signed)).expect("replays");
        assert_eq!(versions.iter().map(|r| r.version).collect::<Vec<_>>(), vec![1, 2]);
        let mut short = signed;
        short.signatures.pop();
        let error = replay_chain(registry, &[short]).expect_err("two signatures of a quorum of three");
        assert!(error.to_string().starts_with("updates[0].signatures"), "{error}");
    }

    #[test]
    fn an_update_leaving_fewer_active_members_than_the_quorum_is_refused() {
        let (_, registry) = federation(3, 2);
        let reason = || ProposalReason::Manual { memo: "x".to_string() };
        let first = status_change(&registry, "did:vm:node:g2", PeerStatus::Probation, reason())
            .expect("2 active of quorum 2");
        let next = first.apply(&registry).expect("applies");
        let error = status_change(&next, "did:vm:node:g1", PeerStatus::Suspended, reason())
            .expect_err("1 active < quorum 2");
        assert!(error.to_string().contains("quorum"), "{error}");
    }

    #[test]
    fn an_operators_changes_make_one_proposal_or_say_why_not() {
        let (_, mut registry) = federation(3, 2);
        registry.members.get_mut("did:vm:node:g2").expect("g2").namespaces = vec!["dao:ledger".to_string()];
        let memo = "rotate";
        // Remove a member and move its only namespace: the update says the member gives it up.
        let proposal = manual(
            &registry,
            &[
                Change::SetOwner { namespace: "dao:ledger".to_string(), owner: "did:vm:node:g0".to_string() },
                Change::RemoveMember("did:vm:node:g2".to_string()),
            ],
            memo,
        )
        .expect("2 active of quorum 2");
        assert_eq!(proposal.reason, ProposalReason::Manual { memo: memo.to_string() });
        let next = proposal.apply(&registry).expect("applies");
        assert_eq!(next.members.len(), 2);
        assert_eq!(
            describe(&registry, &next),
            vec![
                "did:vm:node:g0: namespaces none -> dao:ledger".to_string(),
                "remove did:vm:node:g2".to_string()
            ]
        );
        assert_eq!(next.member("did:vm:node:g0").expect("g0").namespaces, vec!["dao:ledger".to_string()]);
        // Moving a namespace off a member that stays leaves it with none (an empty list in
        // the update, not "keep what it had").
        let moved = manual(
            &registry,
            &[Change::SetOwner { namespace: "dao:ledger".to_string(), owner: "did:vm:node:g1".to_string() }],
            memo,
        )
        .expect("valid");
        let after = moved.apply(&registry).expect("applies");
        assert!(after.member("did:vm:node:g2").expect("g2").namespaces.is_empty());
        assert_eq!(after.member("did:vm:node:g1").expect("g1").namespaces, vec!["dao:ledger".to_string()]);
        // The quorum cannot outgrow the active members, nor fall to half of them.
        let error = manual(&registry, &[Change::SetQuorum(4)], memo).expect_err("4 of 3");
        assert!(error.to_string().starts_with("registry.quorum"), "{error}");
        assert!(error.to_string().contains("more than the 3 active peers"), "{error}");
        let raised =
            manual(&registry, &[Change::SetQuorum(3)], memo).expect("3 of 3").apply(&registry).expect("ok");
        let error = manual(&raised, &[Change::RemoveMember("did:vm:node:g1".to_string())], memo)
            .expect_err("2 active under quorum 3");
        assert!(error.to_string().contains("quorum 3 is more than the 2 active peers"), "{error}");
        let error = manual(&registry, &[Change::SetQuorum(1)], memo).expect_err("1 of 3");
        assert!(error.to_string().contains("at or below half"), "{error}");
        let error = manual(&registry, &[Change::RemoveMember("did:vm:node:zz".to_string())], memo)
            .expect_err("unknown");
        assert!(error.to_string().starts_with("did: did:vm:node:zz is not a member"), "{error}");
        // The treasury's caps: set, then lifted (the update says so).
        let capped = manual(&registry, &[Change::SetEpochCap(Some(5_000_000))], memo).expect("cap");
        let with_cap = capped.apply(&registry).expect("applies");
        assert_eq!(with_cap.anchor_propagation.cap_per_epoch_gwei, Some(5_000_000));
        assert_eq!(
            describe(&registry, &with_cap),
            vec!["treasury cap per member and epoch none -> 5000000 gwei".to_string()]
        );
        let lifted = manual(&with_cap, &[Change::SetEpochCap(None)], memo)
            .expect("lift")
            .apply(&with_cap)
            .expect("ok");
        assert_eq!(lifted.anchor_propagation.cap_per_epoch_gwei, None);
        // A whole document, as `propose --file` sends it.
        let update = RegistryUpdate::from_registry(&next, Some("from a file".to_string()));
        let whole = manual_update(&registry, update.clone()).expect("applies");
        assert_eq!(whole.apply(&registry).expect("ok").members.len(), 2);
        let mut foreign = update;
        foreign.federation_id = "other".to_string();
        assert!(manual_update(&registry, foreign)
            .expect_err("other federation")
            .to_string()
            .starts_with("federation_id"));
    }
}
