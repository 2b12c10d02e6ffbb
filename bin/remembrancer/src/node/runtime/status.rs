//! `status` and `ready`: what the node reports of itself.

use super::*;

impl Node {
    /// Ready when the store is open and the registry loaded (both hold once the loop runs)
    /// and at least one other member is connected.
    pub(super) fn ready(&self, host: &NodeHost) -> Response {
        let members = host.net().connected().iter().filter(|peer| host.did_of(peer).is_some()).count();
        if members == 0 {
            return Response::error(
                503,
                "not ready: no other member is connected yet (see `federation status`)",
            );
        }
        Response::ok(serde_json::json!({
            "ready": true,
            "store": "open",
            "registry_version": host.engine().registry().version,
            "connected_members": members,
        }))
    }

    pub(super) fn status(&self, host: &NodeHost) -> serde_json::Value {
        let registry = host.engine().registry();
        let connected = host.net().connected();
        let peers: Vec<_> = registry
            .members
            .values()
            .map(|member| {
                let peer = host.peer_of(&member.did);
                let score = host.engine().scores().get(&member.did);
                serde_json::json!({
                    "did": member.did,
                    "peer_id": peer.map(|p| p.to_string()),
                    "status": member.status.name(),
                    "self": member.did == self.identity.did(),
                    "connected": peer.is_some_and(|p| connected.contains(&p)),
                    // Gossipsub's own score of the connection (under -80 its gossip is dropped
                    // unread: the graylist), beside the engine's counts.
                    "gossip_score": peer.and_then(|p| host.net().gossip_score(&p)),
                    "accepted": score.map_or(0, |s| s.accepted),
                    "honesty_refusals": score.map_or(0, |s| s.honesty_rejections()),
                    // Its messages refused, by reason (`federation audit` has each one).
                    "refused": score.map(|s| s.rejected.clone()).unwrap_or_default(),
                    "reliability": score.and_then(|s| s.reliability()),
                    "last_seen_ms": score.and_then(|s| s.last_seen_ms),
                })
            })
            .collect();
        let mut namespaces: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for (namespace, receipt) in host.engine().finals() {
            namespaces.insert(
                namespace.clone(),
                serde_json::json!({ "namespace": namespace, "owned": false, "final_size": receipt.tree_size,
                    "final_root": receipt.anchor.batch_root.to_string() }),
            );
        }
        // The owned trees' hashes held in memory: upper levels and the recent records' (about
        // 1 MiB a tree, and a quarter byte a record).
        let mut tree_memory_bytes = 0;
        // Owned: the registry's namespaces of this node, and every one it holds a tree of
        // (restored from its store, or committed to while no member listed it).
        let listed = registry.member(self.identity.did()).map(|m| m.namespaces.clone()).unwrap_or_default();
        let trees: BTreeMap<&str, _> = host
            .engine()
            .owned_namespaces()
            .map(|(namespace, tree, halted)| (namespace, (tree, halted)))
            .collect();
        let owned: std::collections::BTreeSet<&str> =
            listed.iter().map(String::as_str).chain(trees.keys().copied()).collect();
        for namespace in owned {
            let (tree, halted) = trees.get(namespace).map_or((None, None), |(t, h)| (Some(*t), *h));
            tree_memory_bytes += tree.map_or(0, |t| t.store().memory_bytes());
            let size = tree.map_or(0, |t| t.size());
            let entry = namespaces
                .entry(namespace.to_string())
                .or_insert_with(|| serde_json::json!({ "namespace": namespace, "final_size": 0 }));
            entry["owned"] = serde_json::json!(true);
            entry["size"] = serde_json::json!(size);
            let final_size = entry["final_size"].as_u64().unwrap_or(0);
            entry["pending"] = serde_json::json!(size > final_size);
            entry["halted"] = serde_json::json!(halted.map(ToString::to_string));
        }
        let percentiles = |kept: &VecDeque<f64>| {
            let mut sorted: Vec<f64> = kept.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let at = |p: usize| sorted.get((sorted.len().saturating_sub(1)) * p / 100).copied();
            (at(50), at(99))
        };
        let (finality50, finality99) = percentiles(&self.counters.latencies);
        let (write50, write99) = percentiles(&host.counters().synced_write_ms);
        // Every signature and verification of this node's engine.
        let ops = host.engine().operations();
        serde_json::json!({
            "did": self.identity.did(),
            "peer_id": host.net().peer_id().to_string(),
            "federation": registry.name,
            "registry_version": registry.version,
            "quorum": registry.quorum,
            "listen": host.net().listeners().iter().map(Multiaddr::to_string).collect::<Vec<_>>(),
            "connected_peers": connected.len(),
            "peers": peers,
            "namespaces": namespaces.into_values().collect::<Vec<_>>(),
            "evidence": host.engine().evidence().len() + host.engine().claim_evidence().len(),
            // Cross-namespace deliveries and answers refused (their proof or form), and those
            // dropped because the queue was full.
            "messages_refused": self.messaging.refused,
            "messages_dropped": self.messaging.dropped,
            "messages_in_custody": self.messaging.custody_held(),
            "lanes_frozen": self.store.messages(b"lf/").map_or(0, |l| l.len()),
            "finalized": self.counters.finalized,
            "finalized_own": self.counters.finalized_own,
            "publish_failed": host.counters().publish_failed,
            "published_direct": host.net().published_direct(),
            "sends_dropped": host.net().sends_dropped(),
            // Message streams closed on a frame over the cap, and connections closed because
            // gossipsub's score of the peer fell under the graylist threshold.
            "frames_refused": host.net().frames_refused(),
            "score_disconnects": host.net().score_disconnects(),
            "batch_verified": host.counters().batch_verified,
            "anchors_rebroadcast": host.engine().anchors_rebroadcast(),
            "ed25519_operations": {
                "signatures": ops.signatures, "verifications": ops.verifications, "batched": ops.batched,
                "batches": ops.batches,
            },
            "deferred": host.counters().deferred,
            "writes_synced": host.counters().writes_synced,
            "writes_synced_by_release": host.counters().writes_synced_by_release,
            "writes_unsynced": host.counters().writes_unsynced,
            "messages_published": host.counters().messages_published,
            "frames_published": host.counters().frames_published,
            "frames_streamed": host.counters().frames_streamed,
            "gossip_sends_failed": host.net().gossip_sends_failed(),
            "store_memory_bytes": self.store.memory(),
            "tree_memory_bytes": tree_memory_bytes,
            "finality_ms_p50": finality50,
            "finality_ms_p99": finality99,
            // Of the last 1024 synced writes.
            "synced_write_ms_p50": write50,
            "synced_write_ms_p99": write99,
            // Commit to final at this node for its own receipts, oldest first (at most 1024).
            "finality_latencies_ms": self.counters.latencies,
            "garbage_messages": host.counters().garbage.values().sum::<u64>(),
            "outsider_messages": host.counters().outsiders,
            "blocked": self.blocked.iter().map(PeerId::to_string).collect::<Vec<_>>(),
            "anchoring": self.anchoring.as_ref().map(|a| serde_json::to_value(a.summary()).unwrap_or_default()),
            "member": registry.member(self.identity.did()).is_some(),
            "joining": self.joining.is_some(),
            "proposals": host.engine().proposals().map(|(digest, proposal, signers)| {
                let valid = signers
                    .iter()
                    .filter(|s| registry.member(s).is_some_and(|m| m.status == PeerStatus::Active))
                    .count();
                serde_json::json!({
                    "proposal": hex::encode(digest),
                    "base_version": proposal.base_version,
                    "reason": serde_json::to_value(&proposal.reason).unwrap_or_default(),
                    "signers": signers,
                    "valid_signatures": valid,
                    "quorum": registry.quorum,
                    "signed_here": signers.contains(&self.identity.did()),
                })
            }).collect::<Vec<_>>(),
            "refused_from": host.counters().refused_from.iter().map(|(peer, refused)| {
                let id = peer.parse::<PeerId>().ok();
                serde_json::json!({
                    "peer_id": peer,
                    "member": id.and_then(|p| host.did_of(&p)),
                    "refused": refused,
                    "gossip_score": id.and_then(|p| host.net().gossip_score(&p)),
                })
            }).collect::<Vec<_>>(),
        })
    }
}
