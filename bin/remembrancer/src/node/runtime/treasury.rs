//! `GET /api/v1/treasury`: the anchoring treasury as this node knows it: the registry's caps,
//! what each member spent on the epoch anchors it made (their costs travel in the anchors),
//! this node's own anchors, per epoch, and what collaborative mode saved against independent
//! mode over the same epochs.

use std::collections::BTreeMap;

use remembrancer_anchor::{AnchorState, Status};
use remembrancer_core::engine::AnchorRequestId;

use super::*;

/// Epochs listed, newest first.
const EPOCHS_LISTED: usize = 50;

/// The treasury's view.
pub(super) fn treasury(node: &Node, host: &NodeHost) -> Response {
    let registry = host.engine().registry();
    let epochs = match node.store.epoch_anchors() {
        Ok(epochs) => epochs,
        Err(error) => return Response::error(500, format!("the epoch anchors could not be read: {error}")),
    };
    let mut members: BTreeMap<String, (u64, u128)> = BTreeMap::new();
    let (mut epoch_anchors, mut epoch_spent, mut covered) = (0u64, 0u128, 0u64);
    let mut listed = Vec::new();
    for (content, anchorer) in &epochs {
        let cost = u128::from(content.reference.cost_wei.unwrap_or(0));
        let entry = members.entry(anchorer.clone()).or_default();
        entry.0 += 1;
        entry.1 += cost;
        if content.reference.cost_wei.is_some() {
            epoch_anchors += 1;
            epoch_spent += cost;
            covered += content.entries.len() as u64;
        }
        if listed.len() < EPOCHS_LISTED {
            listed.push(serde_json::json!({
                "epoch": content.epoch,
                "anchorer": anchorer,
                "target": content.reference.target,
                "tx_hash": content.reference.tx_hash,
                "namespaces": content.entries.len(),
                "cost_wei": cost.to_string(),
            }));
        }
    }
    // This node's own anchors of single receipts (independent mode).
    let own: Vec<AnchorState> = super::anchoring::stored(&node.store)
        .unwrap_or_default()
        .into_iter()
        .filter(|state| matches!(super::anchoring::request_of(state), Some(AnchorRequestId::Receipt { .. })))
        .collect();
    if !own.is_empty() {
        let entry = members.entry(node.identity.did().to_string()).or_default();
        for state in own.iter().filter(|s| s.status == Status::Final) {
            entry.0 += 1;
            entry.1 += state.cost.wei;
        }
    }
    let average = if epoch_anchors > 0 { epoch_spent / u128::from(epoch_anchors) } else { 0 };
    let independent = average * u128::from(covered);
    let gwei = |cap: Option<u64>| cap.map(|c| c.to_string());
    Response::ok(serde_json::json!({
        "caps": {
            "per_epoch_gwei": gwei(registry.anchor_propagation.cap_per_epoch_gwei),
            "per_anchor_gwei": gwei(registry.anchor_propagation.cap_per_anchor_gwei),
        },
        "this_node": {
            "did": node.identity.did(),
            "spent_this_epoch_wei": node.budget.spent(remembrancer_host::now_ms()).to_string(),
        },
        "members": members.iter().map(|(did, (anchors, spent))| serde_json::json!({
            "did": did, "anchors": anchors, "spent_wei": spent.to_string(),
        })).collect::<Vec<_>>(),
        "epochs": listed,
        "collaborative": {
            "anchors": epoch_anchors,
            "spent_wei": epoch_spent.to_string(),
            "namespace_roots_covered": covered,
            // Independent mode anchors every final receipt: at least one transaction per
            // namespace per epoch, at the same price per transaction.
            "independent_at_least_wei": independent.to_string(),
            "saved_at_least_wei": independent.saturating_sub(epoch_spent).to_string(),
        },
    }))
}
