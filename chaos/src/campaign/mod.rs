//! Real-process campaigns (`cairn-chaos run`): start a quorum of `cairn
//! server` processes and a simulated chunk fleet, run the workload, inject
//! the nemeses' faults on a schedule drawn from the seed, heal, wait for the
//! cluster to converge, record what it ended with, and leave a directory the
//! checker reads (crate::history lists its files).

pub mod client;
pub mod links;
pub mod nemesis;
pub mod procs;
pub mod record;
pub mod workload;
pub mod world;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::fleet::{Fleet, FleetConfig, SessionEvent};
use cairn_node::transport::Transport;
use tokio::sync::{watch, Mutex};

use crate::history::{self, Campaign, ChunkEvent, Final, FinalExtent, FinalMember, Observation};
use crate::rng::Rng;
use nemesis::{Nemesis, Planned};
use procs::{Members, Spec, Start};
use record::{ObservationLog, Recorder};
use world::World;

/// How members are wired together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// Network namespaces and nftables when root, else the proxy.
    Auto,
    Proxy,
    Netns,
}

impl std::str::FromStr for NetMode {
    type Err = String;
    fn from_str(s: &str) -> Result<NetMode, String> {
        match s {
            "auto" => Ok(NetMode::Auto),
            "proxy" => Ok(NetMode::Proxy),
            "netns" => Ok(NetMode::Netns),
            _ => Err(format!("unknown network mode {s:?}: auto, proxy or netns")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub nodes: u32,
    pub chunks: u32,
    pub nemeses: BTreeSet<Nemesis>,
    pub duration: Duration,
    pub seed: u64,
    pub out: PathBuf,
    /// The `cairn` binary.
    pub bin: PathBuf,
    pub clients: u32,
    /// Extents the clients read and write.
    pub keys: u32,
    pub net: NetMode,
    /// A deliberately broken member build (`CAIRN_CHAOS_BUG`), for the
    /// harness's own tests.
    pub bug: Option<String>,
    pub snapshot_every: u64,
}

/// The session lease of a new cluster (lease_7s activates at once).
pub const LEASE: Duration = Duration::from_secs(7);

/// What a run left, besides its directory.
pub struct RunReport {
    pub faults: usize,
    pub operations: u64,
    pub converged: bool,
    /// Members that exited on their own during the run (a crash is a finding).
    pub crashed: Vec<(u64, String)>,
    /// What kept the run from ending cleanly (no convergence, a final read
    /// or status that never came, a log that could not be dumped).
    pub problems: Vec<String>,
    pub net_mode: String,
}

/// Finds the `cairn` binary: beside this one (cargo builds both into the
/// same directory).
pub fn default_bin() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating cairn-chaos")?;
    let bin = me.with_file_name("cairn");
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p cairn-node` (or give --cairn-bin)",
            bin.display()
        );
    }
    Ok(bin)
}

pub async fn run(cfg: RunConfig) -> Result<RunReport> {
    if !(3..=5).contains(&cfg.nodes) {
        bail!("--nodes must be 3, 4 or 5, not {}", cfg.nodes);
    }
    if cfg.chunks < 6 {
        bail!("--chunks must be at least 6 (3 replicas on 2 racks, plus chunks to fail)");
    }
    if cfg.out.join(history::HISTORY).exists() {
        bail!(
            "{} already holds a campaign; give another --out",
            cfg.out.display()
        );
    }
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let root = cfg.out.join("data");
    // One member beyond the initial ones, for the membership nemesis.
    let planned: Vec<u64> = (1..=u64::from(cfg.nodes) + 1).collect();
    let initial: Vec<u64> = (1..=u64::from(cfg.nodes)).collect();
    let net = links::setup(cfg.net, &planned, cfg.seed).await?;
    let net_mode = net.mode.clone();
    if cfg.nemeses.contains(&Nemesis::Clock) && procs::faketime_lib().is_none() {
        bail!(
            "the clock nemesis needs libfaketime (apt-get install faketime; scripts/setup.sh does)"
        );
    }
    let faulty_count = if cfg.nemeses.contains(&Nemesis::Chunk) {
        2
    } else {
        0
    };

    let extra = vec![
        "--snapshot-every".to_string(),
        cfg.snapshot_every.to_string(),
        // Space reports only on a real change: the cluster goes quiet when
        // the workload stops, so members can be compared at one index.
        "--space-report-every".to_string(),
        "60m".to_string(),
    ];
    let mut members = Members::new(cfg.bin.clone(), cfg.out.join("logs"), extra);
    if let Some(bug) = &cfg.bug {
        members.env.push(("CAIRN_CHAOS_BUG".into(), bug.clone()));
    }
    for id in &planned {
        members.specs.insert(
            *id,
            Spec {
                id: *id,
                addr: net.addrs[id].clone(),
                data_dir: root.join(format!("n{id}")),
                prefix: net.prefixes.get(id).cloned().unwrap_or_default(),
                routes: net.routes.get(id).cloned().unwrap_or_default(),
            },
        );
    }
    let endpoints: Vec<String> = planned.iter().map(|id| net.addrs[id].clone()).collect();
    let init = initial
        .iter()
        .map(|id| format!("{id}={}", net.addrs[id]))
        .collect::<Vec<_>>()
        .join(",");
    let start = Instant::now();
    let mut campaign = Campaign {
        mode: "run".into(),
        seed: cfg.seed,
        nodes: cfg.nodes,
        chunks: cfg.chunks,
        nemeses: cfg.nemeses.iter().map(|n| n.name().to_string()).collect(),
        duration_ms: cfg.duration.as_millis() as u64,
        lease_ms: LEASE.as_millis() as u64,
        faulty_cids: vec![],
        bug: cfg.bug.clone(),
        started_wall_ms: cairn_node::propose::now_ms(),
    };
    for id in &initial {
        members.start(*id, &Start::Init(init.clone()), None)?;
    }
    let admin = MetaClient::new(endpoints.clone(), Transport::Insecure)?;
    wait_ready(&admin, &mut members, &endpoints, Duration::from_secs(60)).await?;

    // The fleet: its session events go to fleet.jsonl as they happen.
    let (ev_tx, ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let fleet_log = tokio::spawn(record_fleet(cfg.out.join(history::FLEET), ev_rx));
    let mut fc = FleetConfig::new(endpoints.clone(), cfg.chunks as usize);
    fc.events = Some(ev_tx);
    let fleet = Fleet::start(fc).await.context("starting the chunk fleet")?;
    if !fleet.wait_registered(Duration::from_secs(60)).await {
        bail!("the fleet's chunks did not all register within 60 s");
    }
    let cids: Vec<u32> = fleet.chunks().iter().map(|c| c.cid()).collect();
    // The last chunks are the ones the chunk nemesis may stop; the clients
    // give extents only to the others as owners.
    let split = cids.len().saturating_sub(faulty_count);
    let (owners, faulty) = (cids[..split].to_vec(), cids[split..].to_vec());
    campaign.faulty_cids = faulty.clone();
    history::write_json(&cfg.out.join(history::CAMPAIGN), &campaign)?;

    // Every member has applied the registrations before the workload's
    // volume is placed (a member with a deliberate stale-read bug would
    // otherwise place it on a state without chunks).
    all_see_chunks(&admin, &endpoints[..initial.len()], u64::from(cfg.chunks)).await?;
    let keys = workload_volume(&admin, cfg.keys).await?;
    let world = Arc::new(Mutex::new(World {
        members,
        links: net.links,
        voters: initial.iter().copied().collect(),
        spares: planned
            .iter()
            .copied()
            .filter(|id| !initial.contains(id))
            .collect(),
        initial: initial.len(),
        down: BTreeSet::new(),
        fleet: Arc::new(fleet),
        stopped_chunks: BTreeSet::new(),
        faulty_cids: faulty,
        admin,
        rng: Rng::new(cfg.seed ^ 0x0077_6f72_6c64),
    }));

    let rec = Arc::new(Recorder::create(&cfg.out.join(history::HISTORY), start)?);
    let obs = Arc::new(ObservationLog::create(&cfg.out.join(history::MONITOR))?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let monitor = tokio::spawn(monitor(
        world.clone(),
        planned
            .iter()
            .map(|id| (*id, net.addrs[id].clone()))
            .collect(),
        obs.clone(),
        rec.clone(),
        stop_rx.clone(),
    ));
    let wl = workload::WorkloadConfig {
        endpoints: endpoints.clone(),
        keys: keys.clone(),
        owners,
        op_timeout: Duration::from_secs(3),
        think: Duration::from_millis(40),
    };
    let mut seeds = Rng::new(cfg.seed ^ 0x636c_6965_6e74);
    let clients: Vec<_> = (0..u64::from(cfg.clients))
        .map(|p| {
            tokio::spawn(workload::client(
                p,
                seeds.fork(),
                wl.clone(),
                rec.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let plan = nemesis::schedule(
        cfg.seed,
        &cfg.nemeses,
        cfg.duration,
        LEASE,
        net_mode == "proxy",
    );
    let faults = plan.len();
    let workload_start = Instant::now();
    let nemesis_task = tokio::spawn(run_nemesis(
        world.clone(),
        rec.clone(),
        plan,
        workload_start,
        stop_rx.clone(),
    ));

    // Run for the duration (Ctrl-C drops this future; see main.rs).
    tokio::time::sleep(cfg.duration).await;
    let _ = stop_tx.send(true);
    let _ = nemesis_task.await;
    for c in clients {
        let _ = c.await;
    }

    // Heal, converge, read the end state.
    {
        let mut w = world.lock().await;
        rec.record(
            history::NEMESIS_PROCESS,
            history::Type::Invoke,
            nemesis_op("heal-all", vec![], String::new()),
            None,
        );
        w.heal_all()?;
        rec.record(
            history::NEMESIS_PROCESS,
            history::Type::Info,
            nemesis_op("heal-all", vec![], "every fault healed".into()),
            None,
        );
    }
    // From here on, what goes wrong is recorded and the run still ends
    // with its files, so the checker can say what happened.
    let mut problems = vec![];
    let converged = converge(&world, Duration::from_secs(120)).await;
    if let Err(e) = &converged {
        problems.push(e.clone());
    }
    let final_process = u64::from(cfg.clients);
    if let Err(e) = workload::final_reads(
        final_process,
        endpoints.clone(),
        &keys,
        &rec,
        Duration::from_secs(30),
    )
    .await
    {
        problems.push(e);
    }
    let mut fin = final_state(&world, converged.is_ok(), &mut problems).await;
    let _ = monitor.await;
    let crashed = {
        let mut w = world.lock().await;
        w.reap_crashed();
        // A clean stop before the log is read (RocksDB read-only open).
        w.members.shutdown_all(Duration::from_secs(10));
        w.members.crashed.clone()
    };
    drop(world);
    let _ = fleet_log.await;
    match dump_log(&cfg.bin, &root, &fin, &cfg.out.join(history::LOG)) {
        Ok(first) => fin.log_first_index = first,
        Err(e) => problems.push(format!("the committed log could not be dumped: {e:#}")),
    }
    history::write_json(&cfg.out.join(history::FINAL), &fin)?;
    if let Some(e) = rec.failed().or_else(|| obs.failed()) {
        bail!("could not record the run: {e}");
    }
    Ok(RunReport {
        faults,
        operations: rec.events(),
        converged: fin.converged,
        crashed,
        problems,
        net_mode,
    })
}

fn nemesis_op(action: &str, targets: Vec<u64>, detail: String) -> history::Op {
    history::Op::Nemesis {
        action: action.to_string(),
        targets,
        detail,
    }
}

/// Waits until a leader answers linearizable reads.
async fn wait_ready(
    admin: &MetaClient,
    members: &mut Members,
    endpoints: &[String],
    within: Duration,
) -> Result<()> {
    let end = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < end {
        if let Some((id, status)) = members.exited().into_iter().next() {
            bail!(
                "member {id} exited at start ({status}): {}",
                members.log_tail(id, 5)
            );
        }
        // A linearizable read answers only once a leader is in office.
        match admin.read("config", false).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the cluster at {endpoints:?} elected no leader within {within:?}: {last}")
}

/// Waits (up to 30 s) until every member's own state holds `chunks` chunks.
async fn all_see_chunks(admin: &MetaClient, members: &[String], chunks: u64) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let mut behind = vec![];
        for addr in members {
            match admin.status_of(addr, true).await {
                Ok(s) if s.chunks >= chunks => {}
                Ok(s) => behind.push(format!("{addr} has {} chunks", s.chunks)),
                Err(e) => behind.push(e.to_string()),
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!(
                "the members did not all apply the chunks' registrations within 30 s: {behind:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the workload's volume; returns its extents' pids.
async fn workload_volume(admin: &MetaClient, keys: u32) -> Result<Vec<u64>> {
    let req = cairn_node::types::pb::CreateVolumeRequest {
        name: "chaos-keys".into(),
        size_bytes: u64::from(keys) * cairn_state::EXTENT_SIZE_BYTES,
        thick: false,
        replicas: 3,
        prefer_cid: 0,
        even: false,
        preferred_zone: 0,
    };
    let v = admin
        .create_volume(req)
        .await
        .context("creating the workload's volume")?;
    Ok((v.first_pid..v.first_pid + v.extents).collect())
}

async fn record_fleet(path: PathBuf, mut rx: tokio::sync::mpsc::UnboundedReceiver<SessionEvent>) {
    let mut out = match history::JsonlWriter::create(&path) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    while let Some(e) = rx.recv().await {
        let line = ChunkEvent {
            wall_ms: e.wall_ms,
            cid: e.cid,
            event: e.kind.as_str().to_string(),
            session_id: e.session_id,
            last_ack_ms: e.last_ack_ms,
        };
        if let Err(e) = out.write(&line) {
            tracing::error!("{e}");
            return;
        }
    }
}

/// Every 100 ms: each live member's term and the leader it knows.
async fn monitor(
    world: Arc<Mutex<World>>,
    members: Vec<(u64, String)>,
    obs: Arc<ObservationLog>,
    rec: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(client) = MetaClient::new(
        members.iter().map(|m| m.1.clone()).collect(),
        Transport::Insecure,
    ) else {
        return;
    };
    let client = Arc::new(client);
    loop {
        // Every planned member at once, without the world's lock (a fault
        // being injected holds it for seconds): down or paused ones simply
        // do not answer in time.
        let mut asks = tokio::task::JoinSet::new();
        for (id, addr) in members.clone() {
            let client = client.clone();
            asks.spawn(async move {
                let r =
                    tokio::time::timeout(Duration::from_millis(300), client.status_of(&addr, true))
                        .await;
                (id, r)
            });
        }
        while let Some(done) = asks.join_next().await {
            if let Ok((id, Ok(Ok(s)))) = done {
                obs.record(&Observation {
                    time_ns: rec.now_ns(),
                    node_id: id,
                    term: s.term,
                    leader_id: s.leader_id,
                });
            }
        }
        // A member that exited on its own is a finding: record it; the
        // next heal restarts it.
        if let Ok(mut w) = world.try_lock() {
            for (id, status) in w.reap_crashed() {
                rec.record(
                    history::NEMESIS_PROCESS,
                    history::Type::Info,
                    nemesis_op(
                        "crash",
                        vec![id],
                        format!("member {id} exited on its own: {status}"),
                    ),
                    Some("a member crashed".into()),
                );
            }
        }
        if stopped(&mut stop, Duration::from_millis(100)).await {
            return;
        }
    }
}

/// Sleeps `d`; true once `stop` is set.
async fn stopped(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    let _ = tokio::time::timeout(d, stop.changed()).await;
    *stop.borrow()
}

async fn run_nemesis(
    world: Arc<Mutex<World>>,
    rec: Arc<Recorder>,
    plan: Vec<Planned>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) {
    for p in plan {
        let wait = (t0 + p.at).saturating_duration_since(Instant::now());
        if stopped(&mut stop, wait).await {
            return;
        }
        let action = p.fault.nemesis().name();
        rec.record(
            history::NEMESIS_PROCESS,
            history::Type::Invoke,
            nemesis_op(action, vec![], format!("{:?}", p.fault)),
            None,
        );
        let injected = world.lock().await.inject(&p.fault).await;
        let undo = match injected {
            Ok((targets, detail, undo)) => {
                rec.record(
                    history::NEMESIS_PROCESS,
                    history::Type::Info,
                    nemesis_op(action, targets, detail),
                    None,
                );
                undo
            }
            Err(e) => {
                rec.record(
                    history::NEMESIS_PROCESS,
                    history::Type::Info,
                    nemesis_op(action, vec![], String::new()),
                    Some(format!("not injected: {e:#}")),
                );
                continue;
            }
        };
        // Hold the fault (the end of the run heals whatever is left).
        if stopped(&mut stop, p.hold).await {
            return;
        }
        let heal = format!("heal-{action}");
        rec.record(
            history::NEMESIS_PROCESS,
            history::Type::Invoke,
            nemesis_op(&heal, vec![], String::new()),
            None,
        );
        let healed = world.lock().await.heal(&undo);
        let (detail, error) = match healed {
            Ok(d) => (d, None),
            Err(e) => (String::new(), Some(format!("{e:#}"))),
        };
        rec.record(
            history::NEMESIS_PROCESS,
            history::Type::Info,
            nemesis_op(&heal, vec![], detail),
            error,
        );
    }
}

/// Waits until every voter runs and reports the same applied index and
/// digest twice in a row, and every extent has its replicas back.
async fn converge(world: &Arc<Mutex<World>>, within: Duration) -> Result<(), String> {
    let end = Instant::now() + within;
    let mut last = String::new();
    let mut agreed_once: Option<(u64, u64)> = None;
    while Instant::now() < end {
        let (voters, admin_addrs) = {
            let w = world.lock().await;
            let v: Vec<(u64, String)> = w.voters.iter().map(|id| (*id, w.addr(*id))).collect();
            (v.clone(), v.into_iter().map(|x| x.1).collect::<Vec<_>>())
        };
        let client =
            MetaClient::new(admin_addrs, Transport::Insecure).map_err(|e| e.to_string())?;
        let mut seen = vec![];
        for (id, addr) in &voters {
            match tokio::time::timeout(Duration::from_millis(500), client.status_of(addr, true))
                .await
            {
                Ok(Ok(s)) => seen.push((s.applied_index, s.state_digest)),
                _ => last = format!("member {id} does not answer"),
            }
        }
        if seen.len() == voters.len() && seen.windows(2).all(|w| w[0] == w[1]) {
            let Some(&now) = seen.first() else { continue };
            match replicas_missing(&client).await {
                Ok(0) if agreed_once == Some(now) => return Ok(()),
                Ok(0) => agreed_once = Some(now),
                Ok(n) => {
                    last = format!("{n} extents lack replicas");
                    agreed_once = None;
                }
                Err(e) => last = e,
            }
        } else if seen.len() == voters.len() {
            last = format!("members differ: {seen:?}");
            agreed_once = None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "the cluster did not converge within {within:?}: {last}"
    ))
}

/// Extents whose alive replicas are fewer than their volume asks for.
async fn replicas_missing(client: &MetaClient) -> Result<usize, String> {
    let mut n = 0;
    for (_, _, extents) in volumes(client).await? {
        n += extents
            .iter()
            .filter(|e| e.alive_loc.len() != e.replicas as usize)
            .count();
    }
    Ok(n)
}

async fn volumes(client: &MetaClient) -> Result<Vec<(u64, String, Vec<FinalExtent>)>, String> {
    let list = client
        .read("volumes", false)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = vec![];
    for v in list.as_array().cloned().unwrap_or_default() {
        let id = v.get("id").and_then(|x| x.as_u64()).unwrap_or(0);
        let name = v
            .get("name")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        let replicas = v.get("replicas").and_then(|x| x.as_u64()).unwrap_or(0) as u32;
        let detail = client
            .read(&format!("volume {id}"), false)
            .await
            .map_err(|e| e.to_string())?;
        let cids = |e: &serde_json::Value, k: &str| -> Vec<u32> {
            e.get(k)
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_u64())
                        .map(|c| c as u32)
                        .collect()
                })
                .unwrap_or_default()
        };
        let extents = detail
            .get("extents")
            .and_then(|x| x.as_array())
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| FinalExtent {
                pid: e.get("pid").and_then(|x| x.as_u64()).unwrap_or(0),
                volume_id: id,
                replicas,
                loc: cids(e, "loc"),
                alive_loc: cids(e, "alive_loc"),
                generation: e.get("generation").and_then(|x| x.as_u64()).unwrap_or(0),
                owner: e.get("lease_owner").and_then(|x| x.as_u64()).unwrap_or(0) as u32,
            })
            .collect();
        out.push((id, name, extents));
    }
    Ok(out)
}

/// The healed cluster as every voter reports it; a voter that does not
/// answer makes the run not converged.
async fn final_state(
    world: &Arc<Mutex<World>>,
    converged: bool,
    problems: &mut Vec<String>,
) -> Final {
    let w = world.lock().await;
    let mut fin = Final {
        converged,
        ..Final::default()
    };
    for id in w.voters.iter() {
        let asked = tokio::time::timeout(
            Duration::from_secs(2),
            w.admin.status_of(&w.addr(*id), true),
        )
        .await;
        let Ok(Ok(s)) = asked else {
            problems.push(format!("member {id} did not answer its final status"));
            fin.converged = false;
            continue;
        };
        fin.members.push(FinalMember {
            node_id: *id,
            term: s.term,
            applied_index: s.applied_index,
            digest: s.state_digest,
        });
    }
    match volumes(&w.admin).await {
        Ok(vs) => {
            for (id, name, extents) in vs {
                fin.volumes.push((id, name));
                fin.extents.extend(extents);
            }
        }
        Err(e) => {
            problems.push(format!("the final volumes could not be read: {e}"));
            fin.converged = false;
        }
    }
    fin
}

/// Dumps the committed log of the member with the highest applied index
/// (the cluster is stopped) into `log.jsonl`; returns its first index.
fn dump_log(bin: &Path, root: &Path, fin: &Final, out: &Path) -> Result<u64> {
    let id = fin
        .members
        .iter()
        .max_by_key(|m| m.applied_index)
        .map(|m| m.node_id)
        .context("no member to dump the log of")?;
    let dir = root.join(format!("n{id}"));
    let o = std::process::Command::new(bin)
        .args(["debug", "dump-log", "--data-dir"])
        .arg(&dir)
        .output()
        .with_context(|| format!("running {} debug dump-log", bin.display()))?;
    if !o.status.success() {
        bail!(
            "dump-log of {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().unwrap_or("{}")).context("dump-log header")?;
    let committed = header
        .get("committed")
        .and_then(|c| c.as_u64())
        .with_context(|| format!("member {id}'s log has no committed index"))?;
    let mut w = history::JsonlWriter::create(out)?;
    let mut first = None;
    for line in lines {
        let r: history::LogRecord = serde_json::from_str(line).context("dump-log entry")?;
        if r.index > committed {
            break;
        }
        first.get_or_insert(r.index);
        w.write(&r)?;
    }
    Ok(first.unwrap_or(committed + 1))
}
