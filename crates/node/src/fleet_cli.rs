//! `cairn fleet` (run or control simulated chunks) and `cairn session list`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::fleet::{Fleet, FleetConfig, FleetTls, KeepAliveVia};
use cairn_node::types::pb;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct FleetRun {
    /// How many simulated chunks.
    #[arg(long, default_value_t = 8)]
    chunks: usize,
    /// Zones to spread them over (0: leave them unracked).
    #[arg(long, default_value_t = 1)]
    zones: usize,
    /// Racks per zone (one brick each).
    #[arg(long, default_value_t = 2)]
    racks: usize,
    /// The version the chunks advertise and behave as (1.0: the first
    /// release, no capabilities, to rehearse a rolling upgrade).
    #[arg(long, default_value = cairn_capability::CURRENT_VERSION)]
    version: String,
    /// Capabilities the chunks advertise, comma-separated (default: those
    /// of --version).
    #[arg(long, value_delimiter = ',')]
    capabilities: Option<Vec<String>>,
    /// Simulated disk bandwidth per chunk, MB/s.
    #[arg(long, default_value_t = 200)]
    bandwidth: u64,
    /// File remembering the fleet's cids, so a restarted fleet comes back
    /// as the same chunks.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Control address (127.0.0.1 only) for `cairn fleet stop|start|list`.
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// How chunks keep alive: `wire` (the session wire: length-prefixed
    /// frames on the members' port) or `grpc` (one gRPC stream per chunk).
    #[arg(long, default_value = "wire")]
    transport: KeepAliveVia,
    /// Chunks sharing one session connection per member (0: all of them,
    /// like one host agent; 1: a connection per chunk).
    #[arg(long, default_value_t = 0)]
    chunks_per_conn: usize,
}

#[derive(Subcommand)]
pub enum FleetCmd {
    /// The fleet's chunks: cid, running, session, registrations, keepalives.
    List {
        /// Control address (default: the one the running fleet recorded).
        #[arg(long)]
        control: Option<SocketAddr>,
    },
    /// Stop a chunk: it goes silent, as if it crashed; its session expires.
    Stop {
        cid: u32,
        #[arg(long)]
        control: Option<SocketAddr>,
    },
    /// Start a stopped chunk: it registers again with its cid.
    Start {
        cid: u32,
        #[arg(long)]
        control: Option<SocketAddr>,
    },
}

#[derive(Subcommand)]
pub enum SessionCmd {
    /// Every live session: cid, session id, lease, age, and how long since
    /// the leader last heard from it.
    List,
}

/// Where a running fleet records its control address.
pub fn control_file() -> PathBuf {
    crate::dev::home().join("fleet-control")
}

pub fn record_control(addr: SocketAddr) -> Result<()> {
    let file = control_file();
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&file, addr.to_string()).with_context(|| format!("writing {}", file.display()))
}

/// Runs the fleet; `tls`: its chunks' certificates (None: plain TCP).
pub async fn run(endpoints: Vec<String>, tls: Option<Arc<FleetTls>>, a: FleetRun) -> Result<()> {
    if a.chunks == 0 || a.chunks > cairn_node::fleet::MAX_CHUNKS {
        bail!("--chunks must be in 1..={}", cairn_node::fleet::MAX_CHUNKS);
    }
    let mut cfg = FleetConfig::new(endpoints, a.chunks);
    cfg.zones = a.zones;
    cfg.racks = a.racks.max(1);
    cfg.capabilities = match a.capabilities {
        Some(c) => c,
        None => cairn_capability::capabilities_of(&a.version)
            .with_context(|| format!("--version {}", a.version))?
            .into_iter()
            .collect(),
    };
    cfg.version = a.version;
    cfg.bandwidth_mb_s = a.bandwidth;
    cfg.state_file = a.state;
    cfg.keepalive_via = a.transport;
    cfg.chunks_per_conn = a.chunks_per_conn;
    cfg.tls = tls;
    let mut fleet = Fleet::start(cfg).await?;
    let control = fleet.serve_control(a.control).await?;
    record_control(control)?;
    let registered = fleet.wait_registered(Duration::from_secs(60)).await;
    println!(
        "fleet: {} chunks{}, control on {control} (recorded in {})",
        a.chunks,
        if registered {
            " registered"
        } else {
            " (not all registered yet)"
        },
        control_file().display()
    );
    println!("Ctrl-C stops the fleet (its sessions then expire).");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    drop(fleet);
    let _ = std::fs::remove_file(control_file());
    Ok(())
}

pub async fn control(cmd: FleetCmd, json: bool) -> Result<()> {
    let (FleetCmd::List { control }
    | FleetCmd::Stop { control, .. }
    | FleetCmd::Start { control, .. }) = &cmd;
    let addr = match control {
        Some(a) => *a,
        None => {
            let file = control_file();
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "no running fleet recorded in {} (start `cairn dev` or `cairn fleet`, or give --control)",
                    file.display()
                )
            })?;
            text.trim()
                .parse()
                .with_context(|| format!("{} does not hold an address", file.display()))?
        }
    };
    let mut client = pb::fleet_client::FleetClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("cannot reach the fleet control at {addr}"))?;
    let rows = match cmd {
        FleetCmd::List { .. } => client.list(pb::FleetListRequest {}).await,
        FleetCmd::Stop { cid, .. } => client.stop(pb::FleetChunkRequest { cid }).await.map(|r| {
            r.map(|r| pb::FleetListResponse {
                chunks: r.chunk.into_iter().collect(),
                ..Default::default()
            })
        }),
        FleetCmd::Start { cid, .. } => client.start(pb::FleetChunkRequest { cid }).await.map(|r| {
            r.map(|r| pb::FleetListResponse {
                chunks: r.chunk.into_iter().collect(),
                ..Default::default()
            })
        }),
    }
    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
    .into_inner()
    .chunks;
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|c| {
            serde_json::json!({
                "cid": c.cid, "hostname": c.hostname, "brick": c.brick,
                "running": c.running, "session": c.session_id,
                "registrations": c.registrations, "keepalives": c.keepalives,
                "copies": c.copies_running,
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        crate::cli::table(
            &rows,
            &[
                "cid",
                "hostname",
                "brick",
                "running",
                "session",
                "registrations",
                "keepalives",
                "copies",
            ],
        );
    }
    Ok(())
}

pub async fn session(client: &MetaClient, cmd: SessionCmd, json: bool) -> Result<()> {
    let SessionCmd::List = cmd;
    let r = client.list_sessions().await?;
    let rows: Vec<serde_json::Value> = r
        .sessions
        .iter()
        .map(|s| {
            serde_json::json!({
                "cid": s.cid, "session_id": s.session_id, "lease_ms": s.lease_ms,
                "age_s": s.age_ms / 1000, "last_keepalive_ms_ago": s.silent_ms,
                "expiring": s.expiring,
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "leader": r.leader_id, "tracking_ms": r.tracking_ms, "sessions": rows,
            }))?
        );
    } else {
        println!(
            "leader {} (tracking sessions for {:.1} s)",
            r.leader_id,
            r.tracking_ms as f64 / 1000.0
        );
        crate::cli::table(
            &rows,
            &[
                "cid",
                "session_id",
                "lease_ms",
                "age_s",
                "last_keepalive_ms_ago",
                "expiring",
            ],
        );
    }
    Ok(())
}
