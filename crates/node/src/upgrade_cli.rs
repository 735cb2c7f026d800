//! `cairn upgrade ...`: where a rolling upgrade stands, and the hold.

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::types::pb;
use cairn_state::Cmd;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::table;

#[derive(Subcommand)]
pub enum UpgradeCmd {
    /// Every member's and live chunk's version and capabilities; per
    /// capability: active, or pending with exactly who blocks it.
    ///
    ///   cairn upgrade status
    Status,
    /// Keep the old behaviour: no capability activates until `release`,
    /// so every node can still be rolled back to the old binary.
    /// Replicated: it holds across leader changes.
    Hold,
    /// Let capabilities activate again (at once, if nothing blocks them).
    Release,
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

pub async fn upgrade(client: &MetaClient, cmd: UpgradeCmd, json_out: bool) -> Result<()> {
    match cmd {
        UpgradeCmd::Status => {
            let r = client.upgrade_status(pb::UpgradeStatusRequest {}).await?;
            let v: Value = serde_json::from_str(&r.json).context("decoding the status")?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "this binary: {}; lease {} ms; hold {}",
                v["version"].as_str().unwrap_or("?"),
                v["lease_ms"],
                if v["hold"].as_bool() == Some(true) {
                    "ON (nothing activates until `cairn upgrade release`)"
                } else {
                    "off"
                }
            );
            println!();
            println!("capabilities:");
            for line in v["text"].as_str().unwrap_or("").lines() {
                println!("  {line}");
            }
            println!();
            let members: Vec<Value> = v["members"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| {
                            json!({
                                "member": m["id"],
                                "version": m["version"].as_str().unwrap_or("(not advertised)"),
                                "capabilities": list(&m["capabilities"]),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            table(&members, &["member", "version", "capabilities"]);
            println!();
            let chunks: Vec<Value> = v["chunks"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            json!({
                                "chunk": c["cid"],
                                "version": c["version"],
                                "capabilities": list(&c["capabilities"]),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            if chunks.is_empty() {
                println!("no chunk has a live session");
            } else {
                table(&chunks, &["chunk", "version", "capabilities"]);
            }
            Ok(())
        }
        UpgradeCmd::Hold | UpgradeCmd::Release => {
            let hold = matches!(cmd, UpgradeCmd::Hold);
            let (mut r, index) = client.propose(&[Cmd::HoldUpgrade { hold }]).await?;
            if let Some(Err(e)) = r.pop() {
                bail!("refused: {e}");
            }
            if hold {
                println!("upgrade held (log index {index}): no capability activates until `cairn upgrade release`");
            } else {
                println!("upgrade released (log index {index}): capabilities activate as soon as every member and live chunk supports them");
            }
            Ok(())
        }
    }
}
