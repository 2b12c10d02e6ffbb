//! `namespace message` and `namespace outbox`: cross-namespace messages from the CLI, as the
//! spec writes the command.

use std::process::ExitCode;

use super::{client, print_json, print_list};
use crate::cli::{MessageArgs, MessageCommand, NamespaceCommand};

/// Runs a `namespace` subcommand.
pub fn run(command: NamespaceCommand) -> anyhow::Result<ExitCode> {
    match command {
        NamespaceCommand::Message(args) => match args.command {
            Some(MessageCommand::Status { id, node }) => {
                let entry = client(&node)?
                    .get(&format!("/api/v1/messages?id={}", super::http::percent_encode(&id)))?;
                if node.json {
                    print_json(&entry);
                } else {
                    println!("{}", line(&entry));
                }
            }
            None => send(args)?,
        },
        NamespaceCommand::Inbox { namespace, node } => {
            let query = format!("box=inbox&namespace={}", super::http::percent_encode(&namespace));
            print_list(
                &node,
                &format!("/api/v1/messages?{query}"),
                &format!("{namespace} has received no message"),
                line,
            )?;
        }
        NamespaceCommand::Outbox { namespace, node } => {
            let query = format!("namespace={}", super::http::percent_encode(&namespace));
            print_list(
                &node,
                &format!("/api/v1/messages?{query}"),
                &format!("{namespace} has sent no message from this node"),
                line,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn send(args: MessageArgs) -> anyhow::Result<()> {
    let missing: Vec<&str> = [
        ("--from", args.from.is_none()),
        ("--to", args.to.is_none()),
        ("--action", args.action.is_none()),
        ("--operation", args.operation.is_none()),
    ]
    .into_iter()
    .filter_map(|(flag, absent)| absent.then_some(flag))
    .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "a message needs {}: remembrancer namespace message --from NS --to NS --action notify --operation OP --payload '{{...}}'",
            missing.join(", ")
        );
    }
    let parameters: serde_json::Value = serde_json::from_str(&args.payload).map_err(|e| {
        anyhow::anyhow!("--payload is not JSON ({e}): give an object, like '{{\"status\":\"completed\"}}'")
    })?;
    if !parameters.is_object() {
        anyhow::bail!("--payload must be a JSON object, like '{{\"status\":\"completed\"}}'");
    }
    let body = serde_json::json!({
        "source": args.from,
        "target": args.to,
        "action": args.action,
        "operation": args.operation,
        "parameters": parameters,
        "deadline_in": args.deadline,
        "reply_to": args.reply_to,
    });
    let client = client(&args.node)?;
    let entry = client.post("/api/v1/messages", &body)?;
    if let Some(seconds) = args.wait {
        // Each status as it changes, until the outcome or the time is up.
        let id = entry["id"].as_str().unwrap_or_default().to_string();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let mut last = String::new();
        loop {
            let now = client.get(&format!("/api/v1/messages?id={}", super::http::percent_encode(&id)))?;
            let status = now["status"].as_str().unwrap_or("?").to_string();
            if status != last {
                if args.node.json {
                    println!("{}", serde_json::to_string(&now)?);
                } else {
                    println!("{}", line(&now));
                }
                last = status.clone();
            }
            if status == "acked" || status == "expired" {
                return Ok(());
            }
            if std::time::Instant::now() >= until {
                anyhow::bail!("message {id} is still {status} after {seconds} s: `remembrancer namespace message status {id}` follows it");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    if args.node.json {
        print_json(&entry);
    } else {
        println!("{}", entry["id"].as_str().unwrap_or("?"));
        eprintln!(
            "sent: {} → {} #{} {} {} (record {} of {}); follow it with `remembrancer namespace message status ID`",
            entry["source"].as_str().unwrap_or("?"),
            entry["target"].as_str().unwrap_or("?"),
            entry["sequence"],
            entry["action"].as_str().unwrap_or("?"),
            entry["operation"].as_str().unwrap_or("?"),
            entry["index"],
            entry["source"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

/// One message on one line (with its outcome once acknowledged).
fn line(entry: &serde_json::Value) -> String {
    let text = |field: &str| entry[field].as_str().unwrap_or("?").to_string();
    let outcome = &entry["outcome"];
    let outcome = if let Some(code) = outcome["error"]["code"].as_str() {
        format!("  error {code}")
    } else if outcome["ok"].is_object() {
        let result = outcome["ok"]["result"].as_str().unwrap_or_default();
        match outcome["ok"]["evaluated_at"].as_u64() {
            Some(size) => format!("  ok {result} (at size {size})"),
            None if result.is_empty() => "  ok".to_string(),
            None => format!("  ok {result}"),
        }
    } else {
        String::new()
    };
    format!(
        "{}  {:<9}  {} → {} #{} {} {}  deadline {}{outcome}",
        text("id"),
        text("status"),
        text("source"),
        text("target"),
        entry["sequence"],
        text("action"),
        text("operation"),
        entry["deadline"].as_u64().map_or_else(|| "-".to_string(), crate::times::iso8601)
    )
}
