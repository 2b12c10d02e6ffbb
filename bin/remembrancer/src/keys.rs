//! `remembrancer keys generate|show`.

use std::process::ExitCode;

use remembrancer_core::identity::{NodeIdentity, KEY_FILE_BYTES_MAX};

use crate::cli::KeysCommand;
use crate::files::{read_bounded, write_private};

/// Public facts about a key, as `keys` prints them.
fn describe(identity: &NodeIdentity) -> serde_json::Value {
    serde_json::json!({
        "did": identity.did(),
        "pubkey": identity.public_key_multibase(),
        "did_key": identity.did_key(),
        "peer_id": identity.peer_id(),
    })
}

fn print(identity: &NodeIdentity, json: bool) {
    if json {
        println!("{}", describe(identity));
    } else {
        println!("did      {}", identity.did());
        println!("pubkey   {}", identity.public_key_multibase());
        println!("did:key  {}", identity.did_key());
        println!("peer id  {}", identity.peer_id());
    }
}

/// Runs a `keys` subcommand.
pub fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Generate { did, out, force, json } => {
            let identity = NodeIdentity::generate(&did)?;
            write_private(&out, identity.to_key_file().as_bytes(), force)?;
            tracing::info!(did = identity.did(), path = %out.display(), "generated node key");
            print(&identity, json);
            if !json {
                println!("wrote    {} (mode 0600); list the did and pubkey in your registry", out.display());
            }
        }
        KeysCommand::Show { key, json } => {
            let bytes = read_bounded(&key, KEY_FILE_BYTES_MAX)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{} is not a key file (not UTF-8)", key.display()))?;
            let identity =
                NodeIdentity::from_key_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            print(&identity, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}
