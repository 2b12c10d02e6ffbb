//! What `devnet --anchor eip155|rfc3161` shows of its external anchors: each anchor as it
//! becomes final, printed in the round it is seen (so a Ctrl-C, which stops the nodes too,
//! loses none of them), and at the end what anchoring cost per final receipt.

use std::collections::BTreeSet;

use super::http::Client;

/// The anchors seen final so far in this run, and what they cost.
#[derive(Default)]
pub struct AnchorWatch {
    /// (node, target, root) of every final anchor printed.
    seen: BTreeSet<(usize, String, String)>,
    gas: u64,
    requests: u64,
    stamped: bool,
    /// Receipts of each node's own namespace finalized in this run, as last read.
    receipts: Vec<u64>,
}

impl AnchorWatch {
    /// Reads each node's anchors; prints those newly final. `statuses` are this round's.
    pub fn poll(
        &mut self,
        namespaces: &[String],
        clients: &[Client],
        statuses: &[Option<serde_json::Value>],
    ) {
        self.receipts.resize(clients.len(), 0);
        for (i, status) in statuses.iter().enumerate() {
            if let Some(own) = status.as_ref().and_then(|s| s["finalized_own"].as_u64()) {
                self.receipts[i] = own;
            }
        }
        for (node, (namespace, client)) in namespaces.iter().zip(clients).enumerate() {
            let Ok(list) = client.get("/api/v1/anchors") else { continue };
            for anchor in list.as_array().into_iter().flatten().filter(|a| a["status"] == "final") {
                let text = |field: &str| anchor[field].as_str().unwrap_or("-").to_string();
                if !self.seen.insert((node, text("target"), text("root"))) {
                    continue;
                }
                self.gas += anchor["gas_used"].as_u64().unwrap_or(0);
                self.requests += anchor["transactions"].as_u64().unwrap_or(0);
                if anchor["target"] == remembrancer_anchor::rfc3161::NAME {
                    self.stamped = true;
                    println!(
                        "anchor by {namespace}: rfc3161 final for {} by {} at {} (serial {}, {} requests)",
                        anchor["for"],
                        text("signer"),
                        text("gen_time"),
                        text("serial"),
                        anchor["transactions"]
                    );
                } else {
                    println!(
                        "anchor by {namespace}: {} final for {} in tx {} block {} ({} confirmations, {} wei)",
                        text("target"),
                        anchor["for"],
                        text("tx_hash"),
                        anchor["block"],
                        anchor["confirmations"],
                        text("cost_wei")
                    );
                }
            }
        }
    }

    /// The totals: anchors final, and their cost per final receipt of this run.
    pub fn summary(&self, mode: &str) {
        let finals = self.seen.len();
        let receipts: u64 = self.receipts.iter().sum();
        let per_receipt = |n: u64| if receipts > 0 { n as f64 / receipts as f64 } else { 0.0 };
        if self.stamped {
            println!("{finals} anchors final at the TSA");
            println!(
                "anchoring cost: mode={mode} anchors={finals} tsa_requests={} final_receipts={receipts} requests_per_receipt={:.2}",
                self.requests,
                per_receipt(self.requests)
            );
            return;
        }
        println!("{finals} anchors final on the chain");
        // One line for programs (scripts/bench anchor-cost reads it).
        println!(
            "anchoring cost: mode={mode} anchors={finals} gas={} final_receipts={receipts} gas_per_receipt={:.1}",
            self.gas,
            per_receipt(self.gas)
        );
    }
}
