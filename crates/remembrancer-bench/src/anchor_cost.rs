//! `scripts/bench anchor-cost`: gas per final receipt of the same devnet load (3 nodes, the
//! same rounds and records) anchored in independent mode and in collaborative mode, one run
//! after the other on a fresh local chain each. The figure: collaborative at most 1/N of
//! independent for N namespaces per epoch, plus the per-transaction overhead.

use std::process::Command;

/// Seconds each devnet runs.
const SECONDS: u64 = 40;
/// Nodes (namespaces) of each devnet.
const NODES: u64 = 3;

/// (anchors, gas, final receipts) of one devnet run in `mode`.
fn devnet(mode: &str) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().expect("dir");
    let exe = std::env::current_exe().expect("exe").with_file_name("remembrancer");
    let output = Command::new(&exe)
        .args(["devnet", "--anchor", "eip155", "--anchor-mode", mode, "--nodes", &NODES.to_string()])
        .args(["--seconds", &SECONDS.to_string(), "--records", "20", "--dir"])
        .arg(dir.path().join("net"))
        .output()
        .unwrap_or_else(|e| panic!("{} devnet: {e}", exe.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("anchoring cost:"))
        .unwrap_or_else(|| panic!("the {mode} devnet printed no cost line:\n{text}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("anchors"), field("gas"), field("final_receipts"))
}

/// Runs both devnets and prints the comparison.
pub fn run(json: bool) {
    eprintln!("anchoring the same devnet load independently, then collaboratively ({SECONDS} s each) ...");
    let (ind_anchors, ind_gas, ind_receipts) = devnet("independent");
    let (col_anchors, col_gas, col_receipts) = devnet("collaborative");
    let per = |gas: u64, receipts: u64| if receipts > 0 { gas as f64 / receipts as f64 } else { f64::NAN };
    let (independent, collaborative) = (per(ind_gas, ind_receipts), per(col_gas, col_receipts));
    let ratio = collaborative / independent;
    if json {
        let value = serde_json::json!({
            "namespaces": NODES,
            "independent": {"anchors": ind_anchors, "gas": ind_gas, "final_receipts": ind_receipts, "gas_per_receipt": independent},
            "collaborative": {"anchors": col_anchors, "gas": col_gas, "final_receipts": col_receipts, "gas_per_receipt": collaborative},
            "ratio": ratio,
            "target_ratio_at_most": 1.0 / NODES as f64,
        });
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return;
    }
    println!("gas per final receipt, {NODES} namespaces, the same load:");
    println!("  independent    {independent:>10.1} ({ind_anchors} anchors, {ind_gas} gas, {ind_receipts} receipts)");
    println!("  collaborative  {collaborative:>10.1} ({col_anchors} anchors, {col_gas} gas, {col_receipts} receipts)");
    println!(
        "  collaborative / independent = {ratio:.4} (target at most 1/{NODES} = {:.4}){}",
        1.0 / NODES as f64,
        if ratio <= 1.0 / NODES as f64 { "  meets target" } else { "  ABOVE target" }
    );
}
