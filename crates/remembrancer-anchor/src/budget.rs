//! The anchoring treasury's caps as one node applies them: the most one anchor may cost and
//! the most this node spends in one epoch. The caps come from the registry (changed only by
//! quorum-signed updates); what was spent, from the anchors' recorded costs.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Epochs of spending kept (older ones no longer limit anything).
const EPOCHS_KEPT: usize = 64;

/// The caps, wei (None: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Most this node spends on anchors in one epoch.
    pub per_epoch_wei: Option<u128>,
    /// Most one anchor may cost.
    pub per_anchor_wei: Option<u128>,
}

impl Caps {
    /// Caps given in gwei, as the registry writes them.
    pub fn from_gwei(per_epoch: Option<u64>, per_anchor: Option<u64>) -> Caps {
        let wei = |gwei: u64| u128::from(gwei) * 1_000_000_000;
        Caps { per_epoch_wei: per_epoch.map(wei), per_anchor_wei: per_anchor.map(wei) }
    }
}

/// A node's budget: its caps and what it spent per epoch.
#[derive(Debug)]
pub struct Budget {
    epoch_ms: u64,
    caps: Mutex<Caps>,
    spent: Mutex<BTreeMap<u64, u128>>,
}

impl Budget {
    /// A budget over epochs of `epoch_ms`, with `caps`.
    pub fn new(epoch_ms: u64, caps: Caps) -> Budget {
        Budget { epoch_ms: epoch_ms.max(1), caps: Mutex::new(caps), spent: Mutex::new(BTreeMap::new()) }
    }

    /// New caps (a registry update took effect).
    pub fn set_caps(&self, caps: Caps) {
        if let Ok(mut current) = self.caps.lock() {
            *current = caps;
        }
    }

    /// The caps now.
    pub fn caps(&self) -> Caps {
        self.caps.lock().map(|c| *c).unwrap_or_default()
    }

    /// Spent in the epoch of `at_ms`, wei.
    pub fn spent(&self, at_ms: u64) -> u128 {
        let epoch = at_ms / self.epoch_ms;
        self.spent.lock().ok().and_then(|s| s.get(&epoch).copied()).unwrap_or(0)
    }

    /// Records `wei` paid at `at_ms`.
    pub fn record(&self, at_ms: u64, wei: u128) {
        let Ok(mut spent) = self.spent.lock() else { return };
        let entry = spent.entry(at_ms / self.epoch_ms).or_insert(0);
        *entry = entry.saturating_add(wei);
        while spent.len() > EPOCHS_KEPT {
            spent.pop_first();
        }
    }

    /// Whether a transaction that may cost up to `worst_wei` may go out at `now_ms`; if not,
    /// why, and what lifts it.
    pub fn allow(&self, now_ms: u64, worst_wei: u128) -> Result<(), String> {
        let caps = self.caps();
        if let Some(cap) = caps.per_anchor_wei {
            if worst_wei > cap {
                return Err(format!(
                    "treasury cap per anchor reached: this anchor may cost up to {worst_wei} wei, the cap is {cap} wei; \
                     anchoring waits until a quorum raises it (federation propose --cap-per-anchor GWEI)"
                ));
            }
        }
        if let Some(cap) = caps.per_epoch_wei {
            let spent = self.spent(now_ms);
            if spent.saturating_add(worst_wei) > cap {
                return Err(format!(
                    "treasury cap per epoch reached: {spent} wei spent this epoch, this anchor may cost up to {worst_wei} more, \
                     the cap is {cap} wei; anchoring waits for the next epoch or a quorum raising it \
                     (federation propose --cap-per-epoch GWEI)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_an_anchor_until_raised_and_epochs_start_afresh() {
        let budget = Budget::new(1000, Caps::from_gwei(Some(10), Some(4)));
        assert!(budget.allow(0, 3_000_000_000).is_ok());
        assert!(budget.allow(0, 5_000_000_000).expect_err("over per anchor").contains("cap per anchor"));
        budget.record(100, 8_000_000_000);
        assert!(budget.allow(200, 3_000_000_000).expect_err("over per epoch").contains("cap per epoch"));
        assert!(budget.allow(1200, 3_000_000_000).is_ok(), "a new epoch");
        budget.set_caps(Caps::from_gwei(Some(20), None));
        assert!(budget.allow(200, 9_000_000_000).is_ok(), "raised");
    }
}
