//! `remembrancer keys generate|show`.

use std::process::ExitCode;

use remembrancer_core::identity::{NodeIdentity, KEY_FILE_BYTES_MAX};
use remembrancer_core::note::{VerifierKey, SIGNATURE_TYPE_COSIGNATURE, SIGNATURE_TYPE_ED25519};

use crate::cli::KeysCommand;
use crate::files::{read_bounded, write_private};

/// The node's two C2SP verifier keys (`name+keyid+base64`): for its checkpoint signatures and
/// for its witness cosignatures, as C2SP tools take them.
fn verifier_keys(identity: &NodeIdentity) -> anyhow::Result<(String, String)> {
    let note = VerifierKey::new(identity.did(), SIGNATURE_TYPE_ED25519, identity.verifying_key())?;
    let cosignature = VerifierKey::new(identity.did(), SIGNATURE_TYPE_COSIGNATURE, identity.verifying_key())?;
    Ok((note.to_text(), cosignature.to_text()))
}

/// Public facts about a key, as `keys` prints them.
fn describe(identity: &NodeIdentity) -> anyhow::Result<serde_json::Value> {
    let (note, cosignature) = verifier_keys(identity)?;
    Ok(serde_json::json!({
        "did": identity.did(),
        "pubkey": identity.public_key_multibase(),
        "did_key": identity.did_key(),
        "peer_id": identity.peer_id(),
        "c2sp_verifier_key": note,
        "c2sp_cosignature_verifier_key": cosignature,
    }))
}

fn print(identity: &NodeIdentity, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", describe(identity)?);
    } else {
        let (note, cosignature) = verifier_keys(identity)?;
        println!("did         {}", identity.did());
        println!("pubkey      {}", identity.public_key_multibase());
        println!("did:key     {}", identity.did_key());
        println!("peer id     {}", identity.peer_id());
        println!("c2sp vkey   {note}");
        println!("c2sp cosig  {cosignature}");
    }
    Ok(())
}

/// Runs a `keys` subcommand.
pub fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Generate { did, out, force, json } => {
            let identity = NodeIdentity::generate(&did)?;
            write_private(&out, identity.to_key_file().as_bytes(), force)?;
            tracing::info!(did = identity.did(), path = %out.display(), "generated node key");
            print(&identity, json)?;
            if !json {
                println!(
                    "wrote       {} (mode 0600); list the did and pubkey in your registry",
                    out.display()
                );
            }
        }
        KeysCommand::Show { key, json } => {
            let bytes = read_bounded(&key, KEY_FILE_BYTES_MAX)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{} is not a key file (not UTF-8)", key.display()))?;
            let identity =
                NodeIdentity::from_key_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            print(&identity, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
