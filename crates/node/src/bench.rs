//! `cairn bench write`: durable extent-location updates against a running
//! cluster, from N concurrent clients, with throughput and latency figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::fleet::{Fleet, FleetConfig, FleetTls, KeepAliveVia};
use cairn_node::transport::Transport;
use cairn_node::types::pb;
use cairn_state::{Cmd, CreateVolume, Provisioning, Reply, UpdateExtent, EXTENT_SIZE_BYTES};

async fn one(client: &MetaClient, cmd: Cmd) -> Result<Reply> {
    let (mut results, _) = client.propose(&[cmd]).await?;
    match results.pop() {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => bail!("setup command rejected: {e}"),
        None => bail!("empty reply"),
    }
}

pub async fn write(
    endpoints: Vec<String>,
    transport: Transport,
    tls: Option<Arc<FleetTls>>,
    clients: usize,
    duration: Duration,
) -> Result<()> {
    if clients == 0 || clients > 4096 {
        bail!("--clients must be in 1..=4096");
    }
    let client = Arc::new(MetaClient::new(endpoints.clone(), transport)?);
    // Setup: three simulated chunks keeping their sessions alive for the
    // whole run, and a volume with one extent per client on them.
    let mut cfg = FleetConfig::new(endpoints, 3);
    cfg.zones = 0;
    cfg.host_prefix = format!("bench-{}", std::process::id());
    cfg.tls = tls;
    let fleet = Fleet::start(cfg).await?;
    if !fleet.wait_registered(Duration::from_secs(30)).await {
        bail!("the bench's simulated chunks did not register within 30 s");
    }
    let cids: Vec<u32> = fleet.chunks().iter().map(|c| c.cid()).collect();
    let name = format!(
        "bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let r = one(
        &client,
        Cmd::CreateVolume(CreateVolume {
            name,
            size_bytes: clients as u64 * EXTENT_SIZE_BYTES,
            provisioning: Provisioning::Thin,
            replicas: 3,
            prefer_cid: 0,
            even: false,
            preferred_zone: 0,
            locs: vec![cids.clone(); clients],
        }),
    )
    .await?;
    let Reply::Volume { first_pid, .. } = r else {
        bail!("unexpected reply {r:?}")
    };

    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = vec![];
    for i in 0..clients {
        let (client, cids) = (client.clone(), cids.clone());
        tasks.push(tokio::spawn(async move {
            let pid = first_pid + i as u64;
            let mut generation = 1;
            let mut lat_us: Vec<u32> = vec![];
            let mut errors = 0u64;
            while Instant::now() < deadline {
                // Alternately drop and restore the third replica from alive_loc.
                let alive = if generation % 2 == 1 {
                    cids[..2].to_vec()
                } else {
                    cids.clone()
                };
                let cmd = Cmd::UpdateExtent(UpdateExtent {
                    pid,
                    expected_generation: generation,
                    loc: None,
                    alive_loc: Some(alive),
                    lease_owner: None,
                });
                let t = Instant::now();
                match client.propose(&[cmd]).await {
                    Ok((results, _)) => match results.first() {
                        Some(Ok(Reply::Generation(g))) => {
                            generation = *g;
                            lat_us.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        }
                        _ => errors += 1,
                    },
                    Err(_) => errors += 1,
                }
            }
            (lat_us, errors)
        }));
    }
    let mut lat = vec![];
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.context("bench client task")?;
        lat.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(fleet);
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        f64::from(lat[i]) / 1000.0
    };
    println!(
        "clients {clients:>4}  writes {:>8}  writes/s {:>9.0}  p50 {:>7.2} ms  p99 {:>7.2} ms  p999 {:>7.2} ms  errors {errors}",
        lat.len(),
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        pct(0.999),
    );
    Ok(())
}

/// `cairn bench sessions`: `n` simulated chunks keeping alive once a second
/// (lease 7 s) against a running cluster; prints the leader's CPU share and
/// the Raft writes per second the sessions cause, for gRPC streams and the
/// session wire side by side, beside what a design that replicated every
/// keepalive would need.
pub async fn sessions(
    endpoints: Vec<String>,
    transport: Transport,
    tls: Option<Arc<FleetTls>>,
    n: usize,
    duration: Duration,
    chunks_per_conn: usize,
) -> Result<()> {
    if n == 0 || n > cairn_node::fleet::MAX_CHUNKS {
        bail!(
            "--sessions must be in 1..={}",
            cairn_node::fleet::MAX_CHUNKS
        );
    }
    let client = MetaClient::new(endpoints.clone(), transport)?;
    let config = client.read("config", false).await?;
    let old_lease = config["lease_ms"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| "14000".into());
    let set_lease = |v: String| {
        let client = &client;
        async move {
            client
                .set_config(pb::SetConfigRequest {
                    key: "lease_ms".into(),
                    value: v,
                })
                .await
        }
    };
    // One keepalive a second: the keepalive interval is a seventh of the lease.
    set_lease("7000".into()).await?;
    let mut cfg = FleetConfig::new(endpoints.clone(), n);
    cfg.zones = 0;
    cfg.host_prefix = format!("bench-sessions-{}", std::process::id());
    cfg.chunks_per_conn = chunks_per_conn;
    if tls.is_some() {
        println!(
            "TLS is on: every simulated chunk has its own connections (a certificate per cid)"
        );
    }
    cfg.tls = tls;
    let started = Instant::now();
    let fleet = Fleet::start(cfg).await?;
    let registered = fleet.wait_registered(Duration::from_secs(300)).await;
    set_lease(old_lease.clone()).await?;
    if !registered {
        bail!("not every simulated chunk registered within 300 s");
    }
    println!(
        "{n} sessions registered in {:.1} s; settling 5 s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    let leader = leader_of(&client, &endpoints).await?;
    let keepalives = || -> u64 { fleet.chunks().iter().map(|c| c.keepalives()).sum() };
    let registrations = || -> u64 { fleet.chunks().iter().map(|c| c.registrations()).sum() };
    // The same fleet, side by side: the gRPC-stream baseline, then the
    // session wire. Each phase settles first (streams open, connections
    // form) so only steady keepalives are measured.
    let mut cpus = vec![];
    for (name, transport) in [
        ("grpc streams", KeepAliveVia::GrpcStream),
        ("session wire", KeepAliveVia::Wire),
    ] {
        fleet.set_keepalive_via(transport);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (cpu0, log0, ka0, reg0, t0) = (
            cpu_seconds(leader.pid)?,
            status_of_leader(&client, &leader, &endpoints)
                .await?
                .last_log_index,
            keepalives(),
            registrations(),
            Instant::now(),
        );
        tokio::time::sleep(duration).await;
        let after = status_of_leader(&client, &leader, &endpoints).await?;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (cpu_seconds(leader.pid)? - cpu0) / secs;
        let entries = after.last_log_index.saturating_sub(log0) as f64 / secs;
        let ka = (keepalives() - ka0) as f64 / secs;
        let reregistered = registrations() - reg0;
        if after.node_id != leader.node_id || after.leader_id != leader.node_id {
            bail!("the leader changed during the measurement; run again");
        }
        println!(
            "{name:<13} sessions {n}  keepalives/s {ka:>8.0}  leader CPU {:>5.1}% of one core  raft writes/s {entries:>6.2}  re-registrations {reregistered}",
            cpu * 100.0
        );
        if name == "session wire" {
            let ratio = if entries > 0.0 {
                format!("{:.0}x as many", ka / entries)
            } else {
                "vs none here".to_string()
            };
            println!("a design replicating every keepalive: {ka:.0} raft writes/s ({ratio})");
        }
        cpus.push(cpu);
    }
    if let [grpc, wire] = cpus[..] {
        if wire > 0.0 {
            println!(
                "leader CPU: session wire {:.1}% vs grpc streams {:.1}% ({:.1}x less)",
                wire * 100.0,
                grpc * 100.0,
                grpc / wire
            );
        }
    }
    drop(fleet);
    Ok(())
}

async fn status_of_leader(
    client: &MetaClient,
    leader: &pb::StatusResponse,
    endpoints: &[String],
) -> Result<pb::StatusResponse> {
    Ok(client
        .status_of(&leader_addr(leader, endpoints), true)
        .await?)
}

async fn leader_of(client: &MetaClient, endpoints: &[String]) -> Result<pb::StatusResponse> {
    for e in endpoints {
        if let Ok(s) = client.status_of(e, true).await {
            if s.leader_id == s.node_id && s.node_id != 0 {
                return Ok(s);
            }
        }
    }
    bail!("no leader among {}", endpoints.join(", "))
}

fn leader_addr(s: &pb::StatusResponse, endpoints: &[String]) -> String {
    s.members
        .iter()
        .find(|m| m.node_id == s.node_id)
        .map(|m| m.addr.clone())
        .unwrap_or_else(|| endpoints[0].clone())
}

/// CPU time (user + system) a local process has used, from /proc.
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the leader on this machine?)"))?;
    // Fields after the command name, which may contain spaces: ") S ppid ...".
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc stat format")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .context("unexpected /proc stat format")
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ")".
    Ok((ticks(11)? + ticks(12)?) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}
