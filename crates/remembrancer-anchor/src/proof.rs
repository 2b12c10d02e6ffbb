//! The offline anchor proof (`remembrancer.anchor-proof/v1`): one record, from its bytes up to
//! a block hash the auditor trusts. Each step is checked on its own line:
//!
//! 1. the proof bundle: the record's inclusion under a cosigned checkpoint, the checkpoint's
//!    signatures and quorum (as `verify proof`);
//! 2. the checkpoint is the epoch entry (namespace, size, root);
//! 3. the entry's path up to the epoch's `batch_root` (RFC 9162) (for a receipt anchored alone,
//!    in independent mode, 2 and 3 are one: its checkpoint root is the batch root);
//! 4. eip155: the transaction: its hash, chain, calldata `"RMB1" || batch_root`, sent to its
//!    own sender; rfc3161: the time-stamp token over `"RMB1" || batch_root` (`tsp.rs`: CMS
//!    signature, chain to the TSA root the auditor trusts at genTime, critical timeStamping
//!    EKU, ESS binding, imprint);
//! 5. eip155: the transaction is in the block: the block's transactions root recomputed from
//!    all of its transactions, and the header hashes to the trusted block hash.

use alloy::consensus::transaction::SignerRecoverable as _;
use alloy::consensus::{Header, Transaction as _, TxEnvelope};
use alloy::eips::eip2718::Decodable2718 as _;
use alloy::primitives::{keccak256, B256};
use alloy::rlp::Decodable as _;
use remembrancer_core::anchoring::{epoch_leaf, EpochEntry};
use remembrancer_core::bundle::{check_bundle, ProofBundle, BUNDLE_BYTES_MAX};
use remembrancer_core::checkpoint::Checkpoint;
use remembrancer_core::hash::HashAlgorithm;
use remembrancer_core::merkle::InclusionProofJson;
use remembrancer_core::receipt::VerificationReport;
use remembrancer_core::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::eip155::calldata;

/// The `proof_type` of an anchor proof.
pub const ANCHOR_PROOF_TYPE: &str = "remembrancer.anchor-proof/v1";
/// Largest anchor proof read, bytes (a block's transactions are inside).
pub const ANCHOR_PROOF_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The epoch part: which entry, and its path to the epoch's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochPath {
    /// The namespace's entry.
    pub namespace: String,
    /// Its size.
    pub size: u64,
    /// Its root, hex.
    pub root: String,
    /// Its inclusion proof; `root` is the epoch's `batch_root`.
    pub path: InclusionProofJson,
}

/// Where the batch root was anchored: the spec's `anchor` object, with what a verifier needs
/// after a reorg. A chain anchor names its transaction and block; a time-stamp, its genTime
/// and its TSA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorObject {
    /// The root anchored (`sha256:…`).
    pub batch_root: String,
    /// `eip155:<chain id>` or `rfc3161`.
    pub target: String,
    /// eip155: the chain id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// eip155: the transaction (`0x…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// eip155: its block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// eip155: that block's hash (`0x…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    /// eip155: the transaction's index in the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_index: Option<u64>,
    /// rfc3161: the token's genTime as it writes it (`20261207185938.941Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gen_time: Option<String>,
    /// rfc3161: the TSA that signed it (its certificate's subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa: Option<String>,
    /// When: the block's time, or genTime (Unix seconds).
    pub timestamp: u64,
    /// `final`.
    pub status: String,
}

/// What the nodes saw and an offline check cannot: shown, not verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    /// The epoch whose receipts the batch root covers (none for a receipt anchored alone).
    pub epoch: Option<u64>,
    /// The member elected to anchor it (its anchor message named it).
    pub anchorer: String,
    /// Confirmations the anchoring node saw when it called the anchor final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
}

/// The chain's own bytes: the block header and every transaction of the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEvidence {
    /// The header, RLP, hex.
    pub header: String,
    /// The block's transactions, EIP-2718 encoded, hex, in block order.
    pub transactions: Vec<String>,
}

/// An anchor proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorProof {
    /// Always [`ANCHOR_PROOF_TYPE`].
    pub proof_type: String,
    /// The record under its cosigned checkpoint.
    pub bundle: ProofBundle,
    /// The checkpoint's entry in its epoch and the path to the batch root; none for a receipt
    /// anchored alone (independent mode), whose checkpoint root is the batch root.
    pub epoch: Option<EpochPath>,
    /// Where the batch root was anchored.
    pub anchor: AnchorObject,
    /// eip155: the block's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainEvidence>,
    /// rfc3161: the TimeStampToken (DER, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// What the nodes saw.
    pub observed: Observed,
}

fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    hex::decode(text.trim_start_matches("0x")).map_err(|_| format!("{text:.20}… is not hex"))
}

/// What the auditor trusts beyond the registry: the block hash (eip155), the TSAs' root
/// certificates (rfc3161).
#[derive(Default)]
pub struct Trust<'a> {
    /// The hash of the anchor's block, as the auditor's own node or an explorer shows it.
    pub block_hash: Option<&'a str>,
    /// The root certificates of the TSAs the auditor trusts.
    pub tsa_roots: Option<&'a [openssl::x509::X509]>,
}

/// Verifies an anchor proof file against a registry and what the auditor trusts.
pub fn verify_anchor_proof(bytes: &[u8], registry: &Registry, trust: &Trust<'_>) -> VerificationReport {
    let mut report = VerificationReport::default();
    if bytes.len() > ANCHOR_PROOF_BYTES_MAX {
        report.push("format", false, format!("{} bytes, more than the 16 MiB allowed", bytes.len()));
        return report;
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let proof: AnchorProof = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(proof) => proof,
        Err(error) => {
            report.push("format", false, format!("not an anchor proof: {}: {}", error.path(), error.inner()));
            return report;
        }
    };
    if proof.proof_type != ANCHOR_PROOF_TYPE {
        report.push(
            "format",
            false,
            format!("proof_type is {:?}, expected {ANCHOR_PROOF_TYPE:?}", proof.proof_type),
        );
        return report;
    }
    // 1. The record under its cosigned checkpoint (held to a bundle file's bound).
    let carried = proof.bundle.record.len() + proof.bundle.checkpoint.len();
    if carried > BUNDLE_BYTES_MAX {
        report.push(
            "format",
            false,
            format!("the bundle carries {carried} bytes, more than the 1 MiB allowed"),
        );
        return report;
    }
    let (bundle_report, checkpoint) = check_bundle(&proof.bundle, registry);
    report.checks.extend(bundle_report.checks);
    let Some(checkpoint) = checkpoint else {
        report.push("epoch entry", false, "the bundle's checkpoint cannot be read");
        return report;
    };
    // 2 and 3. The checkpoint is the epoch's entry and its path leads to the batch root; or,
    // for a receipt anchored alone (independent mode), the checkpoint's root is the batch root.
    let batch_root = match &proof.epoch {
        Some(epoch) => epoch_steps(&mut report, epoch, &checkpoint, &proof.anchor.batch_root),
        None => {
            let root = checkpoint.tagged_root();
            let ok = proof.anchor.batch_root == root.to_string();
            report.push(
                "anchored root",
                ok,
                if ok {
                    format!("the receipt was anchored alone: the batch root is the checkpoint's root {root}")
                } else {
                    format!(
                        "no epoch path, and the anchor names {}, not the checkpoint's root {root}",
                        proof.anchor.batch_root
                    )
                },
            );
            ok.then_some(root.value)
        }
    };
    let Some(batch_root) = batch_root else { return report };
    let observed = |report: &mut VerificationReport, seen: String| {
        report.push(
            "observed",
            true,
            format!(
                "not checkable offline: {} anchored by {}{seen}",
                proof.observed.epoch.map_or_else(|| "the receipt".to_string(), |e| format!("epoch {e}")),
                proof.observed.anchorer,
            ),
        )
    };
    if proof.anchor.target == crate::rfc3161::NAME {
        stamp_steps(&mut report, &proof, &batch_root, trust.tsa_roots);
        observed(&mut report, String::new());
    } else {
        chain_steps(&mut report, &proof, &batch_root, trust.block_hash);
        let seen =
            proof.observed.confirmations.map(|n| format!(", {n} confirmations seen")).unwrap_or_default();
        observed(&mut report, seen);
    }
    report
}

/// Step 4 for a time-stamp: the token stamps the batch root, under a TSA the auditor trusts.
fn stamp_steps(
    report: &mut VerificationReport,
    proof: &AnchorProof,
    batch_root: &remembrancer_core::hash::Digest,
    roots: Option<&[openssl::x509::X509]>,
) {
    let token = match proof.token.as_deref().map(hex_bytes) {
        Some(Ok(token)) => token,
        Some(Err(error)) => return report.push("time-stamp", false, error),
        None => return report.push("time-stamp", false, "an rfc3161 anchor without its token"),
    };
    let Some(roots) = roots else {
        return report.push(
            "trusted TSA",
            false,
            format!(
                "give --tsa-cert: the root certificate (PEM) of the TSA that signed it ({})",
                proof.anchor.tsa.as_deref().unwrap_or("unnamed")
            ),
        );
    };
    let expected =
        crate::tsp::Expected { imprint: crate::tsp::imprint(batch_root), nonce: None, policy: None };
    match crate::tsp::verify_token(&token, roots, &expected) {
        Err(error) => report.push("time-stamp", false, error.to_string()),
        Ok(info) => {
            let named = proof.anchor.gen_time.as_deref() == Some(info.gen_time.as_str())
                && proof.anchor.timestamp == info.unix
                && proof.anchor.tsa.as_deref() == Some(info.signer.as_str())
                && proof.anchor.status == "final";
            report.push(
                "time-stamp",
                named,
                if named {
                    format!(
                        "{} stamped RMB1 and the batch root at {} (serial {}, policy {}), chained to a trusted root",
                        info.signer, info.gen_time, info.serial, info.policy
                    )
                } else {
                    format!(
                        "the token says {} at {} ({}), the anchor names {:?} at {:?} ({}) status {:?}",
                        info.signer,
                        info.gen_time,
                        info.unix,
                        proof.anchor.tsa,
                        proof.anchor.gen_time,
                        proof.anchor.timestamp,
                        proof.anchor.status
                    )
                },
            );
        }
    }
}

/// Steps 4 and 5 for a chain: the transaction carries the batch root, it is in the block, and
/// the block is the one the auditor trusts.
fn chain_steps(
    report: &mut VerificationReport,
    proof: &AnchorProof,
    batch_root: &remembrancer_core::hash::Digest,
    trusted_block_hash: Option<&str>,
) {
    let anchor = &proof.anchor;
    let (Some(chain), Some(chain_id), Some(tx_hash), Some(block), Some(block_hash), Some(tx_index)) =
        (&proof.chain, anchor.chain_id, &anchor.tx_hash, anchor.block, &anchor.block_hash, anchor.tx_index)
    else {
        return report.push(
            "transaction",
            false,
            "a chain anchor needs chain_id, tx_hash, block, block_hash, tx_index and the block's bytes",
        );
    };
    // 4. The transaction.
    let transactions: Result<Vec<Vec<u8>>, String> =
        chain.transactions.iter().map(|t| hex_bytes(t)).collect();
    let transactions = match transactions {
        Ok(transactions) => transactions,
        Err(error) => return report.push("transaction", false, error),
    };
    let decoded: Result<Vec<TxEnvelope>, String> = transactions
        .iter()
        .map(|raw| {
            TxEnvelope::decode_2718(&mut raw.as_slice())
                .map_err(|e| format!("a transaction does not decode: {e}"))
        })
        .collect();
    let decoded = match decoded {
        Ok(decoded) => decoded,
        Err(error) => return report.push("transaction", false, error),
    };
    let index = tx_index as usize;
    let tx_check = match (transactions.get(index), decoded.get(index)) {
        (Some(raw), Some(tx)) => {
            let hash = format!("{:#x}", keccak256(raw));
            let sender = tx.recover_signer().ok();
            if hash != tx_hash.to_lowercase() {
                Err(format!("transaction {index} of the block is {hash}, the anchor names {tx_hash}"))
            } else if tx.chain_id() != Some(chain_id) || anchor.target != format!("eip155:{chain_id}") {
                Err(format!(
                    "the transaction is for chain {:?}, the anchor names {}",
                    tx.chain_id(),
                    anchor.target
                ))
            } else if tx.input().as_ref() != calldata(batch_root).as_slice() {
                Err("the transaction's calldata is not \"RMB1\" and the batch root".to_string())
            } else if sender.is_none() || tx.to() != sender {
                Err("the transaction is not sent to its own sender".to_string())
            } else {
                Ok(format!(
                    "{hash} carries RMB1 and the batch root, from and to {:#x}",
                    sender.unwrap_or_default()
                ))
            }
        }
        _ => Err(format!("the block has no transaction {index}")),
    };
    report.push("transaction", tx_check.is_ok(), tx_check.unwrap_or_else(|e| e));
    // 5. The block.
    let header_rlp = match hex_bytes(&chain.header) {
        Ok(rlp) => rlp,
        Err(error) => return report.push("block", false, error),
    };
    let header = match Header::decode(&mut header_rlp.as_slice()) {
        Ok(header) => header,
        Err(error) => return report.push("block", false, format!("the header does not decode: {error}")),
    };
    let header_hash = format!("{:#x}", keccak256(&header_rlp));
    let root = alloy::consensus::proofs::calculate_transaction_root(&decoded);
    let block_ok = header.number == block
        && header_hash == block_hash.to_lowercase()
        && header.timestamp == anchor.timestamp
        && anchor.status == "final"
        && root == header.transactions_root;
    report.push(
        "block",
        block_ok,
        if block_ok {
            format!("block {} ({header_hash}): its {} transactions hash to its transactions root", header.number, decoded.len())
        } else if root != header.transactions_root {
            format!("the transactions hash to {root:#x}, the header's transactions root is {:#x}", header.transactions_root)
        } else if anchor.status != "final" {
            format!("the anchor's status is {:?}: a proof is of a final anchor", anchor.status)
        } else {
            format!(
                "the header is block {} hash {header_hash} time {}, the anchor names block {block} hash {block_hash} time {}",
                header.number, header.timestamp, anchor.timestamp
            )
        },
    );
    match trusted_block_hash {
        None => report.push(
            "trusted block",
            false,
            format!(
                "give --block-hash: the hash of block {block} as your own node or a block explorer of chain {chain_id} shows it"
            ),
        ),
        Some(trusted) => {
            let trusted_ok = trusted.parse::<B256>().is_ok_and(|t| format!("{t:#x}") == header_hash);
            report.push(
                "trusted block",
                trusted_ok,
                if trusted_ok {
                    format!("the header hashes to the trusted {header_hash}")
                } else {
                    format!("the header hashes to {header_hash}, not the trusted {trusted}")
                },
            );
        }
    }
}

/// Steps 2 and 3 for an epoch anchor: the checkpoint is the entry, and the entry's path leads
/// to `batch_root` as the anchor names it. Returns the batch root when both hold.
fn epoch_steps(
    report: &mut VerificationReport,
    epoch: &EpochPath,
    checkpoint: &Checkpoint,
    named: &str,
) -> Option<remembrancer_core::hash::Digest> {
    let entry_ok = epoch.namespace == checkpoint.namespace
        && epoch.size == checkpoint.size
        && epoch.root == hex::encode(checkpoint.root);
    report.push(
        "epoch entry",
        entry_ok,
        if entry_ok {
            format!(
                "the epoch lists {} at size {} with the checkpoint's root",
                checkpoint.namespace, checkpoint.size
            )
        } else {
            format!(
                "the epoch entry is {} at {} root {}, the checkpoint is {} at {} root {}",
                epoch.namespace,
                epoch.size,
                epoch.root,
                checkpoint.namespace,
                checkpoint.size,
                hex::encode(checkpoint.root)
            )
        },
    );
    let entry = EpochEntry {
        namespace: epoch.namespace.clone(),
        size: epoch.size,
        root: serde_bytes::ByteBuf::from(hex_bytes(&epoch.root).unwrap_or_default()),
    };
    let leaf = HashAlgorithm::Sha256.leaf_hash(epoch_leaf(&entry).as_bytes());
    let path = &epoch.path;
    let path_ok = path.leaf.value == leaf && path.verify().is_ok();
    let batch_root = path.root.to_string();
    let batch_ok = path_ok && named == batch_root;
    report.push(
        "epoch path",
        batch_ok,
        if batch_ok {
            format!("entry {} of {} leads to batch root {batch_root}", path.leaf_index, path.tree_size)
        } else if !path_ok {
            "the path does not lead from the entry to its root".to_string()
        } else {
            format!("the path leads to {batch_root}, the anchor names {named}")
        },
    );
    (entry_ok && batch_ok).then_some(path.root.value)
}
