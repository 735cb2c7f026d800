//! `cairn bench write`: durable extent-location updates against a running
//! cluster, from N concurrent clients, with throughput and latency figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::fleet::{Fleet, FleetConfig};
use cairn_state::{Cmd, CreateVolume, Provisioning, Reply, UpdateExtent, EXTENT_SIZE_BYTES};

async fn one(client: &MetaClient, cmd: Cmd) -> Result<Reply> {
    let (mut results, _) = client.propose(&[cmd]).await?;
    match results.pop() {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => bail!("setup command rejected: {e}"),
        None => bail!("empty reply"),
    }
}

pub async fn write(endpoints: Vec<String>, clients: usize, duration: Duration) -> Result<()> {
    if clients == 0 || clients > 4096 {
        bail!("--clients must be in 1..=4096");
    }
    let client = Arc::new(MetaClient::new(endpoints.clone())?);
    // Setup: three simulated chunks keeping their sessions alive for the
    // whole run, and a volume with one extent per client on them.
    let mut cfg = FleetConfig::new(endpoints, 3);
    cfg.zones = 0;
    cfg.host_prefix = format!("bench-{}", std::process::id());
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
