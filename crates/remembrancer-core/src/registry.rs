//! The federation registry (the spec's YAML) and registry updates
//! (`federation.registry.set@1.0.0` JSON), validated with errors that name the bad field.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{validate_federation_id, validate_namespace};
use crate::identity::{parse_public_key, validate_did};
use crate::note::{VerifierKey, SIGNATURE_TYPE_COSIGNATURE, SIGNATURE_TYPE_ED25519};

/// Longest registry file we read, in bytes.
pub const REGISTRY_BYTES_MAX: usize = 1024 * 1024;
/// Most peers one registry may list.
pub const REGISTRY_PEERS_MAX: usize = 1000;
/// Longest endpoint hint, in bytes.
pub const ENDPOINT_BYTES_MAX: usize = 512;
/// Schema id of a registry update.
pub const REGISTRY_UPDATE_SCHEMA: &str = "federation.registry.set@1.0.0";

/// Why a registry or registry update is refused. `field` is a path such as
/// `federation.peers[1].pubkey`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The file is larger than [`REGISTRY_BYTES_MAX`].
    #[error("registry is {0} bytes, more than the 1 MiB allowed")]
    TooLarge(usize),
    /// The document does not parse or has the wrong shape.
    #[error("{field}: {message}")]
    Syntax {
        /// Where (a path into the document, or a line and column).
        field: String,
        /// What the parser expected.
        message: String,
    },
    /// A field parses but its value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// Path to the field.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> RegistryError {
    RegistryError::Invalid { field: field.into(), message: message.into() }
}

/// A member's standing. Only `active` members count toward a quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStatus {
    /// A full member (the default when absent).
    #[default]
    Active,
    /// Signs, but its signatures do not count toward quorum.
    Probation,
    /// Its messages are ignored.
    Suspended,
}

impl PeerStatus {
    /// The status as the registry writes it.
    pub fn name(self) -> &'static str {
        match self {
            PeerStatus::Active => "active",
            PeerStatus::Probation => "probation",
            PeerStatus::Suspended => "suspended",
        }
    }
}

/// How anchors are propagated (spec: Anchor Propagation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorMode {
    /// Every node anchors its own batches.
    #[default]
    Independent,
    /// One anchoring node per epoch; the others verify.
    Collaborative,
    /// The primary anchors on schedule; secondaries only when it misses its deadline.
    Hybrid,
}

impl AnchorMode {
    /// The mode as the registry writes it.
    pub fn name(self) -> &'static str {
        match self {
            AnchorMode::Independent => "independent",
            AnchorMode::Collaborative => "collaborative",
            AnchorMode::Hybrid => "hybrid",
        }
    }
}

/// Retry strategy for anchoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryStrategy {
    /// Delays grow geometrically, with a bounded number of retries.
    #[default]
    GeometricBackoff,
}

/// The `anchor_propagation` block.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorPropagation {
    /// Propagation mode.
    #[serde(default)]
    pub mode: AnchorMode,
    /// Retry strategy.
    #[serde(default)]
    pub retry_strategy: RetryStrategy,
    /// The anchoring treasury: the most one member spends on external anchors in one epoch,
    /// gwei (absent: no cap). Changed only by a quorum-signed registry update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_per_epoch_gwei: Option<u64>,
    /// The most one anchor may cost, gwei (absent: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_per_anchor_gwei: Option<u64>,
}

/// One member as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// The DID signatures name the member by (`did:vm:node:east1`).
    pub did: String,
    /// Where the member may be reached: a hint only; a peer is its DID and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Ed25519 public key, multibase (`z6Mk...`).
    pub pubkey: String,
    /// Standing; absent means active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PeerStatus>,
    /// Namespaces this member owns: only members listing a namespace may anchor it; a
    /// namespace no member lists may be anchored by any member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

impl PeerEntry {
    /// An active member with this identity's DID and key, no endpoint hint, owning
    /// `namespaces`.
    pub fn for_identity(identity: &crate::identity::NodeIdentity, namespaces: Vec<String>) -> Self {
        PeerEntry {
            did: identity.did().to_string(),
            endpoint: None,
            pubkey: identity.public_key_multibase(),
            status: None,
            namespaces,
        }
    }
}

/// The `federation` block of the registry YAML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSection {
    /// The federation id.
    pub name: String,
    /// Registry version: 1 for the founding registry, one more for each applied update.
    #[serde(default = "first_version")]
    pub version: u64,
    /// Distinct active signers a receipt needs.
    pub quorum: u32,
    /// Members.
    pub peers: Vec<PeerEntry>,
    /// Anchor propagation settings.
    #[serde(default)]
    pub anchor_propagation: AnchorPropagation,
}

fn first_version() -> u64 {
    1
}

/// The registry file: `federation: {...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryDocument {
    /// The one top-level key.
    pub federation: FederationSection,
}

/// A member with its decoded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's DID.
    pub did: String,
    /// Its public key.
    pub key: VerifyingKey,
    /// Its standing.
    pub status: PeerStatus,
    /// Endpoint hint.
    pub endpoint: Option<String>,
    /// Namespaces it owns (see [`Registry::may_anchor`]).
    pub namespaces: Vec<String>,
}

/// A validated registry: the federation's members, keys and quorum rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Federation id.
    pub name: String,
    /// Version (see [`FederationSection::version`]).
    pub version: u64,
    /// Quorum.
    pub quorum: u32,
    /// Members by DID.
    pub members: BTreeMap<String, Member>,
    /// Anchor propagation settings.
    pub anchor_propagation: AnchorPropagation,
}

/// Runs a serde deserializer and keeps the path of the field that failed.
fn with_path<'de, D, T>(deserializer: D) -> Result<T, RegistryError>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
    T: Deserialize<'de>,
{
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        RegistryError::Syntax { field: if path == "." { "document".to_string() } else { path }, message }
    })
}

impl Registry {
    /// Parses and validates the registry YAML.
    pub fn from_yaml(text: &str) -> Result<Self, RegistryError> {
        if text.len() > REGISTRY_BYTES_MAX {
            return Err(RegistryError::TooLarge(text.len()));
        }
        let document: RegistryDocument = with_path(serde_yaml_ng::Deserializer::from_str(text))?;
        Registry::from_document(&document)
    }

    /// Reads either a registry YAML (`federation:` at the top) or a registry update JSON
    /// (`federation_id` at the top): what `--registry FILE` accepts.
    pub fn from_any(text: &str) -> Result<Self, RegistryError> {
        if text.len() > REGISTRY_BYTES_MAX {
            return Err(RegistryError::TooLarge(text.len()));
        }
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') && trimmed.contains("\"federation_id\"") {
            RegistryUpdate::from_json(text)?.to_registry(None)
        } else {
            Registry::from_yaml(text)
        }
    }

    /// Validates a parsed document.
    pub fn from_document(document: &RegistryDocument) -> Result<Self, RegistryError> {
        let section = &document.federation;
        validate_federation_id(&section.name).map_err(|e| invalid("federation.name", e.to_string()))?;
        if section.peers.len() > REGISTRY_PEERS_MAX {
            return Err(invalid("federation.peers", "more than 1000 peers"));
        }
        let mut members = BTreeMap::new();
        let mut keys = BTreeSet::new();
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for (index, peer) in section.peers.iter().enumerate() {
            let at = |field: &str| format!("federation.peers[{index}].{field}");
            validate_did(&peer.did).map_err(|e| invalid(at("did"), e.to_string()))?;
            let key = parse_public_key(&peer.pubkey).map_err(|e| invalid(at("pubkey"), e.to_string()))?;
            if let Some(endpoint) = &peer.endpoint {
                validate_endpoint(endpoint).map_err(|m| invalid(at("endpoint"), m))?;
            }
            for (n, namespace) in peer.namespaces.iter().enumerate() {
                let at = format!("federation.peers[{index}].namespaces[{n}]");
                validate_namespace(namespace).map_err(|e| invalid(&at, e.to_string()))?;
                if let Some(owner) = owners.insert(namespace, &peer.did) {
                    return Err(invalid(
                        at,
                        format!("{namespace} is already owned by {owner}: a namespace has one owner"),
                    ));
                }
            }
            if !keys.insert(key.to_bytes()) {
                return Err(invalid(at("pubkey"), "this key is already listed for another peer"));
            }
            let member = Member {
                did: peer.did.clone(),
                key,
                status: peer.status.unwrap_or_default(),
                endpoint: peer.endpoint.clone(),
                namespaces: peer.namespaces.clone(),
            };
            if members.insert(peer.did.clone(), member).is_some() {
                return Err(invalid(at("did"), format!("{} is listed twice", peer.did)));
            }
        }
        if section.version == 0 {
            return Err(invalid("federation.version", "versions start at 1"));
        }
        let registry = Registry {
            name: section.name.clone(),
            version: section.version,
            quorum: section.quorum,
            members,
            anchor_propagation: section.anchor_propagation.clone(),
        };
        registry.check_quorum("federation.quorum")?;
        Ok(registry)
    }

    /// Refuses a quorum of 0, above the active members, or at or below half of them (two
    /// quorums must share a member: the safety argument needs q > N/2, and q > (N + f)/2 with
    /// f liars).
    fn check_quorum(&self, field: &str) -> Result<(), RegistryError> {
        let active = self.active_count();
        if self.quorum == 0 {
            return Err(invalid(field, "quorum must be at least 1"));
        }
        if self.quorum as usize > active {
            return Err(invalid(
                field,
                format!(
                    "quorum {} is more than the {active} active peers: no receipt could ever be final",
                    self.quorum
                ),
            ));
        }
        if 2 * self.quorum as usize <= active {
            return Err(invalid(
                field,
                format!(
                    "quorum {} is at or below half of the {active} active peers: two disjoint quorums could finalize different roots; use at least {}",
                    self.quorum,
                    active / 2 + 1
                ),
            ));
        }
        Ok(())
    }

    /// True when `did` may sign as the anchor of `namespace`: the members that list the
    /// namespace own it; a namespace no member lists may be anchored by any member.
    pub fn may_anchor(&self, did: &str, namespace: &str) -> bool {
        let listed = |m: &Member| m.namespaces.iter().any(|n| n == namespace);
        match self.members.get(did) {
            None => false,
            Some(member) if listed(member) => true,
            Some(_) => !self.members.values().any(listed),
        }
    }

    /// Number of members whose status is active.
    pub fn active_count(&self) -> usize {
        self.members.values().filter(|m| m.status == PeerStatus::Active).count()
    }

    /// The member with this DID.
    pub fn member(&self, did: &str) -> Option<&Member> {
        self.members.get(did)
    }

    /// The C2SP verifier keys of a member: its note-signature key and its cosignature key.
    pub fn verifier_keys(&self, did: &str) -> Option<(VerifierKey, VerifierKey)> {
        let member = self.members.get(did)?;
        let note = VerifierKey::new(did, SIGNATURE_TYPE_ED25519, member.key).ok()?;
        let cosign = VerifierKey::new(did, SIGNATURE_TYPE_COSIGNATURE, member.key).ok()?;
        Some((note, cosign))
    }

    /// Back to the YAML document.
    pub fn to_document(&self) -> RegistryDocument {
        RegistryDocument {
            federation: FederationSection {
                name: self.name.clone(),
                version: self.version,
                quorum: self.quorum,
                peers: self
                    .members
                    .values()
                    .map(|m| PeerEntry {
                        did: m.did.clone(),
                        endpoint: m.endpoint.clone(),
                        pubkey: crate::identity::multibase_public_key(&m.key),
                        status: Some(m.status),
                        namespaces: m.namespaces.clone(),
                    })
                    .collect(),
                anchor_propagation: self.anchor_propagation.clone(),
            },
        }
    }

    /// The registry YAML text.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.to_document()).unwrap_or_default()
    }
}

fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let scheme_ok = endpoint
        .split_once(':')
        .map(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && !rest.is_empty()
        })
        .unwrap_or(false);
    if endpoint.len() > ENDPOINT_BYTES_MAX || !scheme_ok || endpoint.chars().any(char::is_whitespace) {
        return Err(format!("{endpoint:?} is not a URI such as https://host:port"));
    }
    Ok(())
}

/// A peer in a registry update (the schema requires `endpoint`; we accept its absence, since
/// endpoints are hints, and write it whenever it is known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePeer {
    /// DID.
    pub did: String,
    /// Endpoint hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Multibase public key.
    pub pubkey: String,
    /// Standing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PeerStatus>,
    /// Namespaces it owns (our addition; the spec's schema allows extra properties). Absent:
    /// a member that stays keeps the namespaces it had; `[]`: it owns none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
}

/// The `registry` object of an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRegistry {
    /// New member list.
    #[serde(default)]
    pub peers: Vec<UpdatePeer>,
    /// New quorum.
    pub quorum: u32,
    /// New anchor strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_strategy: Option<AnchorMode>,
    /// The anchoring treasury's caps (our addition; absent: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub treasury: Option<TreasuryCaps>,
}

/// The caps of the anchoring treasury in a registry update (`null` or absent cap: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreasuryCaps {
    /// Most one member spends on anchors in one epoch, gwei.
    #[serde(default)]
    pub cap_per_epoch_gwei: Option<u64>,
    /// Most one anchor may cost, gwei.
    #[serde(default)]
    pub cap_per_anchor_gwei: Option<u64>,
}

/// A registry update, `federation.registry.set@1.0.0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryUpdate {
    /// Federation the update is for.
    pub federation_id: String,
    /// The new registry.
    pub registry: UpdateRegistry,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

impl RegistryUpdate {
    /// Parses an update, naming the bad field on error.
    pub fn from_json(text: &str) -> Result<Self, RegistryError> {
        if text.len() > REGISTRY_BYTES_MAX {
            return Err(RegistryError::TooLarge(text.len()));
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let update: RegistryUpdate = with_path(&mut deserializer)?;
        deserializer
            .end()
            .map_err(|e| RegistryError::Syntax { field: "document".to_string(), message: e.to_string() })?;
        Ok(update)
    }

    /// The update that makes `next` from `current`: as [`RegistryUpdate::from_registry`], and
    /// a member that gives up all its namespaces says so with an empty list.
    pub fn change(current: &Registry, next: &Registry, memo: Option<String>) -> Self {
        let mut update = RegistryUpdate::from_registry(next, memo);
        for peer in &mut update.registry.peers {
            if peer.namespaces.is_none()
                && current.member(&peer.did).is_some_and(|m| !m.namespaces.is_empty())
            {
                peer.namespaces = Some(Vec::new());
            }
        }
        let caps = |r: &Registry| {
            (r.anchor_propagation.cap_per_epoch_gwei, r.anchor_propagation.cap_per_anchor_gwei)
        };
        if update.registry.treasury.is_none() && caps(current) != (None, None) {
            // Every cap lifted: said, not left to "unchanged".
            update.registry.treasury =
                Some(TreasuryCaps { cap_per_epoch_gwei: None, cap_per_anchor_gwei: None });
        }
        update
    }

    /// The update that sets `registry` as it is.
    pub fn from_registry(registry: &Registry, memo: Option<String>) -> Self {
        RegistryUpdate {
            federation_id: registry.name.clone(),
            registry: UpdateRegistry {
                peers: registry
                    .members
                    .values()
                    .map(|m| UpdatePeer {
                        did: m.did.clone(),
                        endpoint: m.endpoint.clone(),
                        pubkey: crate::identity::multibase_public_key(&m.key),
                        status: Some(m.status),
                        // Written when there are some; an empty list only where it says
                        // something (see `UpdatePeer::namespaces`), so updates keep the bytes
                        // they were signed in.
                        namespaces: (!m.namespaces.is_empty()).then(|| m.namespaces.clone()),
                    })
                    .collect(),
                quorum: registry.quorum,
                anchor_strategy: Some(registry.anchor_propagation.mode),
                // Written when there is a cap, so updates keep the bytes they were signed in.
                treasury: (registry.anchor_propagation.cap_per_epoch_gwei.is_some()
                    || registry.anchor_propagation.cap_per_anchor_gwei.is_some())
                .then_some(TreasuryCaps {
                    cap_per_epoch_gwei: registry.anchor_propagation.cap_per_epoch_gwei,
                    cap_per_anchor_gwei: registry.anchor_propagation.cap_per_anchor_gwei,
                }),
            },
            memo,
        }
    }

    /// The registry this update sets, validated. `current` supplies what an update does not
    /// carry (retry strategy, namespace ownership of members that stay).
    pub fn to_registry(&self, current: Option<&Registry>) -> Result<Registry, RegistryError> {
        let peers = self
            .registry
            .peers
            .iter()
            .map(|p| PeerEntry {
                did: p.did.clone(),
                endpoint: p.endpoint.clone(),
                pubkey: p.pubkey.clone(),
                status: p.status,
                namespaces: match &p.namespaces {
                    Some(namespaces) => namespaces.clone(),
                    None => current
                        .and_then(|c| c.member(&p.did))
                        .map(|m| m.namespaces.clone())
                        .unwrap_or_default(),
                },
            })
            .collect();
        let mut anchor_propagation = current.map(|c| c.anchor_propagation.clone()).unwrap_or_default();
        if let Some(mode) = self.registry.anchor_strategy {
            anchor_propagation.mode = mode;
        }
        if let Some(caps) = &self.registry.treasury {
            anchor_propagation.cap_per_epoch_gwei = caps.cap_per_epoch_gwei;
            anchor_propagation.cap_per_anchor_gwei = caps.cap_per_anchor_gwei;
        }
        let document = RegistryDocument {
            federation: FederationSection {
                name: self.federation_id.clone(),
                version: current.map(|c| c.version + 1).unwrap_or(1),
                quorum: self.registry.quorum,
                peers,
                anchor_propagation,
            },
        };
        Registry::from_document(&document).map_err(|error| match error {
            // Field paths of an update start at `registry`, not `federation`.
            RegistryError::Invalid { field, message } => RegistryError::Invalid {
                field: field.replacen("federation.name", "federation_id", 1).replacen(
                    "federation.",
                    "registry.",
                    1,
                ),
                message,
            },
            other => other,
        })
    }

    /// The update as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeIdentity;

    fn key(seed: u8) -> String {
        NodeIdentity::from_seed("did:vm:node:x", [seed; 32]).expect("id").public_key_multibase()
    }

    fn yaml(quorum: u32) -> String {
        format!(
            r#"federation:
  name: "vaultmesh-primary"
  quorum: {quorum}
  peers:
    - did: "did:vm:node:east1"
      endpoint: "https://remembrancer-east1.vaultmesh.io"
      pubkey: "{}"
    - did: "did:vm:node:west1"
      endpoint: "https://remembrancer-west1.vaultmesh.io"
      pubkey: "{}"
    - did: "did:vm:node:central1"
      pubkey: "{}"
      status: probation
  anchor_propagation:
    mode: "collaborative"
    retry_strategy: "geometric-backoff"
"#,
            key(1),
            key(2),
            key(3)
        )
    }

    #[test]
    fn the_spec_shape_parses_and_round_trips() {
        let registry = Registry::from_yaml(&yaml(2)).expect("valid");
        assert_eq!(registry.name, "vaultmesh-primary");
        assert_eq!(registry.active_count(), 2);
        assert_eq!(registry.anchor_propagation.mode, AnchorMode::Collaborative);
        assert_eq!(registry.member("did:vm:node:central1").expect("m").status, PeerStatus::Probation);
        assert_eq!(Registry::from_yaml(&registry.to_yaml()).expect("round trip"), registry);
        let update = RegistryUpdate::from_registry(&registry, Some("initial".to_string()));
        let parsed = RegistryUpdate::from_json(&update.to_json()).expect("update");
        let next = parsed.to_registry(Some(&registry)).expect("registry");
        assert_eq!(next.version, registry.version + 1, "applying an update makes the next version");
        assert_eq!(Registry { version: registry.version, ..next }, registry);
        assert_eq!(Registry::from_any(&update.to_json()).expect("any").members, registry.members);
    }

    #[test]
    fn errors_name_the_bad_field() {
        let cases = [
            (yaml(2).replace(&key(2), "z6MkNOPE"), "federation.peers[1].pubkey"),
            (yaml(2).replace("did:vm:node:west1", "west1"), "federation.peers[1].did"),
            (yaml(2).replace("https://remembrancer-east1", "not a uri"), "federation.peers[0].endpoint"),
            (yaml(2).replace("collaborative", "sometimes"), "federation.anchor_propagation.mode"),
            (yaml(2).replace("quorum: 2", "quorum: two"), "federation.quorum"),
            (yaml(3), "federation.quorum"),
            (yaml(1), "federation.quorum"),
            (yaml(2).replace(&key(3), &key(1)), "federation.peers[2].pubkey"),
            (yaml(2).replace("did:vm:node:central1", "did:vm:node:east1"), "federation.peers[2].did"),
            (yaml(2).replace("    - did: \"did:vm:node:central1\"", "    - dud: 1"), "federation.peers[2]"),
        ];
        for (text, field) in cases {
            let error = Registry::from_yaml(&text).expect_err(field);
            let shown = error.to_string();
            assert!(shown.starts_with(field), "{shown} should name {field}");
        }
        let error = RegistryUpdate::from_json(r#"{"federation_id": "x", "registry": {"quorum": -1}}"#)
            .expect_err("negative quorum");
        assert!(error.to_string().starts_with("registry.quorum"), "{error}");
        assert!(Registry::from_any("::: not yaml").is_err());
    }
}
