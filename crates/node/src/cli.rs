//! Operator commands over the Meta API: tables by default, `--json` on request.

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::types::pb;
use cairn_state::{TopoKind, ROOT_ID};
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand)]
pub enum TopoCmd {
    /// List zones, racks and bricks.
    List,
    /// Add a zone (under the cluster), a rack (under a zone) or a brick (under a rack).
    ///
    ///   cairn topo add zone z1
    ///   cairn topo add rack r1 --parent 2
    Add {
        #[arg(value_parser = parse_kind)]
        kind: TopoKind,
        name: String,
        /// Parent id (default: the cluster, for zones).
        #[arg(long, default_value_t = ROOT_ID)]
        parent: u64,
    },
    /// Give a rack or brick a new parent (its name does not change).
    Move {
        id: u64,
        parent: u64,
    },
    Rename {
        id: u64,
        name: String,
    },
    /// Remove an empty node.
    Remove {
        id: u64,
    },
}

#[derive(Subcommand)]
pub enum ChunkCmd {
    /// Every chunk with its load ratio and load mode; the cluster load on top.
    List,
    /// One chunk in full, space figures included.
    Show { cid: u32 },
    /// Register a new chunk server and print its cid, before it first
    /// runs: under TLS its certificate names that cid (docs/security.md).
    ///
    ///   cairn chunk add --hostname cs-17 --data-addr 10.0.3.17:7600 --brick 7
    ///   cairn cert issue --ca CA --role chunk:<cid> --out /etc/cairn/chunk
    #[command(verbatim_doc_comment)]
    Add {
        #[arg(long)]
        hostname: String,
        /// Where the chunk serves data (host:port).
        #[arg(long)]
        data_addr: String,
        /// The brick it goes into (default: unracked).
        #[arg(long)]
        brick: Option<u64>,
        /// The version it will run (default: this binary's).
        #[arg(long, default_value = cairn_capability::CURRENT_VERSION)]
        version: String,
    },
    /// Put a chunk into a brick, or take it out of the topology (no --brick).
    ///
    ///   cairn chunk move 4 --brick 7
    Move {
        cid: u32,
        #[arg(long)]
        brick: Option<u64>,
    },
    /// Give a chunk a new name (its cid never changes).
    Rename { cid: u32, name: String },
    /// Start draining a chunk (state removing: it takes no new replicas);
    /// --cancel puts it back in service.
    Drain {
        cid: u32,
        #[arg(long)]
        cancel: bool,
    },
    /// Retire a drained chunk for good (it must hold no replica and no session).
    Remove { cid: u32 },
    /// Mark a chunk's disk as fail-slow (replicas move off it first); --off clears it.
    Failslow {
        cid: u32,
        #[arg(long)]
        off: bool,
    },
}

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume; the leader places every extent.
    ///
    ///   cairn volume create vm-disk-1 --size 100GiB --replicas 3 --prefer-cid 4
    Create {
        name: String,
        /// Size: bytes, or with a unit: 512MiB, 100GiB, 2TiB.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value_t = 3)]
        replicas: u32,
        /// Thick provisioning (default thin).
        #[arg(long)]
        thick: bool,
        /// The chunk where the consumer runs (gets replica 1).
        #[arg(long, default_value_t = 0)]
        prefer_cid: u32,
        /// Spread the volume's extents evenly over chunks.
        #[arg(long)]
        even: bool,
        #[arg(long, default_value_t = 0)]
        preferred_zone: u64,
    },
    List,
    /// A volume and the replica locations of its extents.
    Show {
        id: u64,
    },
    /// Delete a volume and forget its extents.
    Delete {
        id: u64,
    },
}

#[derive(Subcommand)]
pub enum ExtentCmd {
    /// One extent: loc, alive_loc, lease owner, generation.
    Show { pid: u64 },
    /// The extents of a volume.
    List {
        #[arg(long)]
        volume: u64,
    },
    /// An operator's recover: copy the extent from `src` (an alive replica)
    /// to `dst` (a chunk holding none), ahead of everything queued.
    /// Prints pid, current loc, alive loc, dst, owner and mode, or why the
    /// command was refused.
    ///
    ///   cairn extent recover --pid 42 --src 3 --dst 7
    Recover {
        #[arg(long)]
        pid: u64,
        #[arg(long)]
        src: u32,
        #[arg(long)]
        dst: u32,
    },
    /// An operator's migrate: copy `src -> dst`, then drop the replica on
    /// `replace`. Locality and topology preferences are not enforced; the
    /// new replica is pinned so the scheduler does not move it back.
    ///
    ///   cairn extent migrate --pid 42 --src 3 --dst 7 --replace 3
    Migrate {
        #[arg(long)]
        pid: u64,
        #[arg(long)]
        src: u32,
        #[arg(long)]
        dst: u32,
        #[arg(long)]
        replace: u32,
    },
    /// Bring one replica of every extent of a volume (or of one extent) onto
    /// chunk `cid`, without taking it to ultra-high load; pinned there.
    ///
    ///   cairn extent gather --volume 1 --cid 4
    ///   cairn extent gather --pid 42 --cid 4
    Gather {
        #[arg(long, conflicts_with = "pid", required_unless_present = "pid")]
        volume: Option<u64>,
        #[arg(long)]
        pid: Option<u64>,
        #[arg(long)]
        cid: u32,
    },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Show one key, or every key.
    Get { key: Option<String> },
    /// Set a key (validated by every member: unknown keys and out-of-range values are refused).
    ///
    ///   cairn config set load_high_pct 90
    Set { key: String, value: String },
}

fn parse_kind(s: &str) -> Result<TopoKind, String> {
    match s {
        "zone" => Ok(TopoKind::Zone),
        "rack" => Ok(TopoKind::Rack),
        "brick" => Ok(TopoKind::Brick),
        _ => Err(format!("{s:?}: expected zone, rack or brick")),
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 100GiB"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(format!("{s:?}: unit must be B, KiB, MiB, GiB or TiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows of `keys` from an array of objects as an aligned table.
pub fn table(rows: &[Value], keys: &[&str]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| keys.iter().map(|k| s(&r[*k])).collect())
        .collect();
    let widths: Vec<usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            cells
                .iter()
                .map(|c| c[i].len())
                .max()
                .unwrap_or(0)
                .max(k.len())
        })
        .collect();
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(keys.iter().map(|k| k.to_uppercase()).collect());
    for c in cells {
        line(c);
    }
}

pub async fn topo(client: &MetaClient, cmd: TopoCmd, json: bool, stale: bool) -> Result<()> {
    let reply = match cmd {
        TopoCmd::List => {
            let v = client.read("topology", stale).await?;
            return if json {
                print_json(&v)
            } else {
                table(
                    v.as_array().map_or(&[][..], |a| a),
                    &["id", "kind", "parent", "name"],
                );
                Ok(())
            };
        }
        TopoCmd::Add { kind, name, parent } => {
            client
                .add_topo(pb::AddTopoRequest {
                    kind: pb_kind(kind) as i32,
                    parent,
                    name,
                })
                .await?
        }
        TopoCmd::Move { id, parent } => {
            client.move_topo(pb::MoveTopoRequest { id, parent }).await?
        }
        TopoCmd::Rename { id, name } => {
            client
                .rename_topo(pb::RenameTopoRequest { id, name })
                .await?
        }
        TopoCmd::Remove { id } => client.remove_topo(pb::RemoveTopoRequest { id }).await?,
    };
    written(&reply, json, || {
        if reply.topo_id != 0 {
            format!("created topology node {}", reply.topo_id)
        } else {
            "done".to_string()
        }
    })
}

/// Reports a successful write: a line, or the response as JSON.
fn written(r: &pb::WriteResponse, json: bool, line: impl FnOnce() -> String) -> Result<()> {
    if json {
        print_json(&serde_json::json!({
            "log_index": r.log_index,
            "topo_id": r.topo_id,
            "cid": r.cid,
            "generation": r.generation,
        }))
    } else {
        println!("{}", line());
        Ok(())
    }
}

fn pb_kind(k: TopoKind) -> pb::TopoKind {
    match k {
        TopoKind::Zone => pb::TopoKind::Zone,
        TopoKind::Rack => pb::TopoKind::Rack,
        TopoKind::Brick => pb::TopoKind::Brick,
        TopoKind::Cluster => pb::TopoKind::Unspecified,
    }
}

pub async fn chunk(client: &MetaClient, cmd: ChunkCmd, json: bool, stale: bool) -> Result<()> {
    let (reply, line) = match cmd {
        ChunkCmd::Add {
            hostname,
            data_addr,
            brick,
            version,
        } => {
            let capabilities = cairn_capability::capabilities_of(&version)
                .with_context(|| format!("--version {version}"))?
                .into_iter()
                .collect();
            let r = client
                .register_chunk(pb::RegisterChunkRequest {
                    hostname: hostname.clone(),
                    data_addr,
                    brick,
                    version,
                    capabilities,
                })
                .await?;
            let line = format!(
                "chunk {hostname} registered as cid {}; under TLS, issue it `--role chunk:{}`",
                r.cid, r.cid
            );
            (r, line)
        }
        ChunkCmd::Move { cid, brick } => (
            client
                .move_chunk(pb::MoveChunkRequest { cid, brick })
                .await?,
            match brick {
                Some(b) => format!("chunk {cid} is in brick {b}"),
                None => format!("chunk {cid} is unracked"),
            },
        ),
        ChunkCmd::Rename { cid, name } => (
            client
                .rename_chunk(pb::RenameChunkRequest {
                    cid,
                    name: name.clone(),
                })
                .await?,
            format!("chunk {cid} is now {name:?}"),
        ),
        ChunkCmd::Drain { cid, cancel } => {
            let state = if cancel {
                pb::ChunkState::Registered
            } else {
                pb::ChunkState::Removing
            };
            (
                client
                    .set_chunk_state(pb::SetChunkStateRequest {
                        cid,
                        state: state as i32,
                    })
                    .await?,
                format!("chunk {cid} is {}", state.as_str_name().to_lowercase()),
            )
        }
        ChunkCmd::Remove { cid } => (
            client
                .set_chunk_state(pb::SetChunkStateRequest {
                    cid,
                    state: pb::ChunkState::Removed as i32,
                })
                .await?,
            format!("chunk {cid} is removed; its cid is never reused"),
        ),
        ChunkCmd::Failslow { cid, off } => (
            client
                .set_failslow(pb::SetFailslowRequest {
                    cid,
                    failslow: !off,
                })
                .await?,
            format!("chunk {cid} failslow = {}", !off),
        ),
        ChunkCmd::List | ChunkCmd::Show { .. } => {
            return chunk_read(client, cmd, json, stale).await
        }
    };
    written(&reply, json, || line)
}

async fn chunk_read(client: &MetaClient, cmd: ChunkCmd, json: bool, stale: bool) -> Result<()> {
    let v = client.read("chunks", stale).await?;
    let chunks = v["chunks"].as_array().cloned().unwrap_or_default();
    match cmd {
        ChunkCmd::List if json => print_json(&v),
        ChunkCmd::List => {
            println!(
                "cluster load {}% ({})",
                s(&v["cluster_load_pct"]),
                s(&v["cluster_load_mode"])
            );
            table(
                &chunks,
                &[
                    "cid",
                    "name",
                    "hostname",
                    "state",
                    "alive",
                    "session",
                    "failslow",
                    "load_pct",
                    "load_mode",
                    "zone",
                ],
            );
            Ok(())
        }
        ChunkCmd::Show { cid } => {
            let c = chunks
                .iter()
                .find(|c| c["cid"] == cid)
                .with_context(|| format!("chunk {cid} not found"))?;
            print_json(c)
        }
        _ => bail!("not a read command"),
    }
}

pub async fn volume(client: &MetaClient, cmd: VolumeCmd, json: bool, stale: bool) -> Result<()> {
    match cmd {
        VolumeCmd::Create {
            name,
            size,
            replicas,
            thick,
            prefer_cid,
            even,
            preferred_zone,
        } => {
            let r = client
                .create_volume(pb::CreateVolumeRequest {
                    name: name.clone(),
                    size_bytes: size,
                    thick,
                    replicas,
                    prefer_cid,
                    even,
                    preferred_zone,
                })
                .await?;
            if json {
                print_json(&serde_json::json!({
                    "volume_id": r.volume_id, "first_pid": r.first_pid, "extents": r.extents,
                }))
            } else {
                println!(
                    "created volume {} ({name}): {} extents, pids {}..{}",
                    r.volume_id,
                    r.extents,
                    r.first_pid,
                    r.first_pid + r.extents
                );
                Ok(())
            }
        }
        VolumeCmd::Delete { id } => {
            let r = client
                .delete_volume(pb::DeleteVolumeRequest { volume_id: id })
                .await?;
            written(&r, json, || format!("deleted volume {id}"))
        }
        VolumeCmd::List => {
            let v = client.read("volumes", stale).await?;
            if json {
                return print_json(&v);
            }
            table(
                v.as_array().map_or(&[][..], |a| a),
                &[
                    "id",
                    "name",
                    "size_bytes",
                    "replicas",
                    "provisioning",
                    "extents",
                    "first_pid",
                ],
            );
            Ok(())
        }
        VolumeCmd::Show { id } => {
            let v = client.read(&format!("volume {id}"), stale).await?;
            if json {
                return print_json(&v);
            }
            println!(
                "volume {} ({}): {} bytes, {} replicas",
                v["id"],
                s(&v["name"]),
                v["size_bytes"],
                v["replicas"]
            );
            table(
                v["extents"].as_array().map_or(&[][..], |a| a),
                &["pid", "loc", "alive_loc", "lease_owner", "generation"],
            );
            Ok(())
        }
    }
}

pub async fn extent(client: &MetaClient, cmd: ExtentCmd, json: bool, stale: bool) -> Result<()> {
    match cmd {
        ExtentCmd::Show { pid } => {
            let v = client.read(&format!("extent {pid}"), stale).await?;
            if json {
                return print_json(&v);
            }
            table(
                &[v],
                &[
                    "pid",
                    "volume",
                    "loc",
                    "alive_loc",
                    "lease_owner",
                    "prefer_cid",
                    "generation",
                ],
            );
            Ok(())
        }
        ExtentCmd::Recover { pid, src, dst } => {
            crate::sched_cli::manual(client, pb::CopyKind::Recover, pid, src, dst, 0, json).await
        }
        ExtentCmd::Migrate {
            pid,
            src,
            dst,
            replace,
        } => {
            crate::sched_cli::manual(client, pb::CopyKind::Migrate, pid, src, dst, replace, json)
                .await
        }
        ExtentCmd::Gather { volume, pid, cid } => {
            crate::sched_cli::gather(client, volume, pid, cid, json).await
        }
        ExtentCmd::List { volume } => {
            let v = client.read(&format!("volume {volume}"), stale).await?;
            let extents = v["extents"].clone();
            if json {
                return print_json(&extents);
            }
            table(
                extents.as_array().map_or(&[][..], |a| a),
                &["pid", "loc", "alive_loc", "lease_owner", "generation"],
            );
            Ok(())
        }
    }
}

pub async fn config(client: &MetaClient, cmd: ConfigCmd, json: bool, stale: bool) -> Result<()> {
    match cmd {
        ConfigCmd::Get { key } => {
            let v = client.read("config", stale).await?;
            let rows: Vec<Value> = v
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| key.as_deref().is_none_or(|want| want == k.as_str()))
                        .map(|(k, val)| serde_json::json!({ "key": k, "value": val }))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(k) = &key {
                if rows.is_empty() {
                    bail!("unknown config key {k:?}");
                }
            }
            if json {
                return print_json(&Value::Array(rows));
            }
            table(&rows, &["key", "value"]);
            Ok(())
        }
        ConfigCmd::Set { key, value } => {
            let r = client
                .set_config(pb::SetConfigRequest {
                    key: key.clone(),
                    value: value.clone(),
                })
                .await?;
            written(&r, json, || format!("{key} = {value}"))
        }
    }
}
