//! `cairn bench compare-etcd` and `cairn bench failover`: Cairn and a
//! 3-member etcd side by side on this machine, each started by the bench
//! (3 local processes on free 127.0.0.1 ports, data dirs under one
//! directory on the same disk), driven by one Rust load generator through
//! each system's own gRPC API, one system at a time.
//!
//! - `procs`: the local clusters (spawn, kill -9, restart, cleanup).
//! - `load`: the load generator, leader routing and the one retry policy.
//! - `profile`: fsync and batching figures from each system's /metrics.
//! - `report`: tables and `--json`.

mod load;
mod procs;
mod profile;
mod report;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::fleet::{Fleet, FleetConfig, SessionEvent, SessionEventKind};
use cairn_state::{Cmd, CreateVolume, Provisioning, Reply, EXTENT_SIZE_BYTES};

use load::{Background, CairnWrites, EtcdWrites, Measured, Router, System};
use procs::{BenchDir, EtcdFlags, LocalCluster};

/// The subset of etcd's v3 API the benches use (proto/etcd.proto).
#[allow(dead_code, clippy::all)]
mod etcdpb {
    tonic::include_proto!("etcdserverpb");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum SystemName {
    Cairn,
    Etcd,
}

impl SystemName {
    fn as_str(self) -> &'static str {
        match self {
            SystemName::Cairn => "cairn",
            SystemName::Etcd => "etcd",
        }
    }
}

/// etcd's own default --election-timeout, ms.
const ETCD_DEFAULT_ELECTION_MS: u64 = 1000;

/// What both benches share: which systems, where, and how etcd runs.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// Systems to run, in this order (one at a time).
    #[arg(long, value_delimiter = ',', default_value = "cairn,etcd")]
    pub systems: Vec<SystemName>,
    /// The etcd binary (Debian package etcd-server; scripts/setup.sh
    /// installs it).
    #[arg(long, default_value = "etcd")]
    pub etcd_bin: String,
    /// etcd's --heartbeat-interval, ms (etcd's default).
    #[arg(long, default_value_t = 100)]
    pub etcd_heartbeat_ms: u64,
    /// etcd's --election-timeout, ms (etcd's default): with E, an etcd
    /// follower campaigns a random [E, 2E) ms after the last heartbeat.
    /// Cairn's followers campaign 900-1200 ms after it (election timeout
    /// 300-600 ms drawn once per process, plus openraft's leader lease of
    /// 600 ms). 300 gives etcd the same election-timeout range, 600 the
    /// same latest campaign (1200 ms), 900 the same earliest (900 ms).
    #[arg(long, default_value_t = ETCD_DEFAULT_ELECTION_MS)]
    pub etcd_election_ms: u64,
    /// Directory to create the bench's data dir in (default: the system's
    /// temporary directory). Every member of both systems gets its own
    /// data dir under it: the same disk for all.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the data dirs and member logs (default: removed at the end,
    /// also on error and Ctrl-C).
    #[arg(long)]
    pub keep: bool,
}

/// Options of `cairn bench compare-etcd` (the command's own help text is
/// the `BenchCmd::CompareEtcd` doc comment in main.rs), e.g.
/// `cairn bench compare-etcd --clients 64 --duration 20s --json`.
#[derive(clap::Args, Clone, Debug)]
pub struct CompareArgs {
    /// Client counts to measure, comma-separated (each client: one write
    /// at a time).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub clients: Vec<usize>,
    /// Measured time per client count, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Unmeasured load before each measurement.
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// HTTP/2 connections per member (the same for both systems), shared
    /// by all clients: client i uses connection i mod N.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `cairn bench failover` (help text: the `BenchCmd::Failover`
/// doc comment in main.rs), e.g. `cairn bench failover --kills 5`.
#[derive(clap::Args, Clone, Debug)]
pub struct FailoverArgs {
    /// Leader kills per system.
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// Concurrent writing clients (the constant load).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Simulated chunks keeping Cairn sessions alive during the run.
    #[arg(long, default_value_t = 8)]
    pub chunks: usize,
    /// Load before the first kill.
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// Pause after the restarted member has caught up, before the next kill.
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    pub settle: Duration,
    /// Give up on a kill (count it as "no ack") after this long.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    pub max_failover: Duration,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs `f`; on Ctrl-C or SIGTERM drops it (which kills every member and
/// removes the data) and fails.
async fn with_signals(f: impl Future<Output = Result<()>>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = f => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: every member killed, data removed"),
        _ = term.recv() => bail!("terminated: every member killed, data removed"),
    }
}

/// Everything a system's run needs besides its own options.
struct Env {
    dir: BenchDir,
    exe: PathBuf,
    etcd: Option<(PathBuf, String)>,
    etcd_flags: EtcdFlags,
    json: bool,
}

impl Env {
    fn new(common: &CommonArgs, what: &str, json: bool) -> Result<Env> {
        if common.systems.is_empty() {
            bail!("--systems: give cairn, etcd or both");
        }
        let etcd = if common.systems.contains(&SystemName::Etcd) {
            let bin = procs::find_program(&common.etcd_bin).with_context(|| {
                format!(
                    "etcd not found ({:?} is not on PATH or not a file): run scripts/setup.sh (it installs the etcd-server package), or pass --etcd-bin, or --systems cairn",
                    common.etcd_bin
                )
            })?;
            let version = procs::version_of(&bin);
            Some((bin, version))
        } else {
            None
        };
        if common.etcd_heartbeat_ms == 0 || common.etcd_election_ms < 5 * common.etcd_heartbeat_ms {
            bail!(
                "--etcd-election-ms must be at least 5 x --etcd-heartbeat-ms (etcd refuses less)"
            );
        }
        let exe = std::env::current_exe().context("locating the cairn binary")?;
        Ok(Env {
            dir: BenchDir::create(common.dir.as_deref(), what, common.keep)?,
            exe,
            etcd,
            etcd_flags: EtcdFlags {
                heartbeat_ms: common.etcd_heartbeat_ms,
                election_ms: common.etcd_election_ms,
                snapshot_count: 100_000,
                quota_backend_bytes: 8 << 30,
            },
            json,
        })
    }

    fn progress(&self, line: impl AsRef<str>) {
        eprintln!("bench: {}", line.as_ref());
    }

    /// When each system's followers campaign, stated next to the failover
    /// goal: its headline compares the two systems' defaults unless
    /// --etcd-election-ms says otherwise. None without etcd.
    fn election_line(&self) -> Option<String> {
        self.etcd.as_ref()?;
        let e = self.etcd_flags.election_ms;
        let cfg = cairn_config();
        let (earliest, latest) = cairn_campaign_ms();
        Some(format!(
            "(election timing: etcd runs with {}, so an etcd follower campaigns [{e}, {}) ms after the last heartbeat, while Cairn's followers campaign [{earliest}, {latest}) ms after it{}. --etcd-election-ms {} gives etcd Cairn's election-timeout range, {} its latest campaign ({latest} ms), {earliest} its earliest ({earliest} ms))",
            if e == ETCD_DEFAULT_ELECTION_MS {
                format!("its default --election-timeout {e} ms")
            } else {
                format!("--election-timeout {e} ms (its default is {ETCD_DEFAULT_ELECTION_MS})")
            },
            2 * e,
            if e == ETCD_DEFAULT_ELECTION_MS {
                ": the goal compares both systems' defaults"
            } else {
                ""
            },
            cfg.election_min_ms,
            latest / 2,
        ))
    }

    fn etcd_bin(&self) -> Result<&PathBuf> {
        self.etcd
            .as_ref()
            .map(|(b, _)| b)
            .context("etcd not found: run scripts/setup.sh")
    }

    /// The settings both benches state.
    fn setup_lines(&self) -> Vec<String> {
        let cfg = cairn_config();
        let (earliest, latest) = cairn_campaign_ms();
        let mut lines = vec![format!(
            "cairn: 3 x `cairn server` ({}), heartbeat {} ms, election timeout random in [{}, {}] ms drawn once per process (crates/node/src/node.rs) plus openraft 0.9's leader lease of {} ms: a follower campaigns {earliest}-{latest} ms after the last heartbeat; RocksDB log fsynced before each append is acknowledged, --metrics-addr on each member",
            self.exe.display(),
            cfg.heartbeat_ms,
            cfg.election_min_ms,
            cfg.election_max_ms,
            cfg.election_max_ms,
        )];
        if let Some((bin, version)) = &self.etcd {
            lines.push(format!(
                "etcd:  3 x {} ({version}), {} (a follower campaigns a random [{}, {}) ms after the last heartbeat, drawn again each term), fsync on (etcd's default)",
                bin.display(),
                self.etcd_flags.describe(),
                self.etcd_flags.election_ms,
                2 * self.etcd_flags.election_ms
            ));
        }
        lines.push(format!(
            "data:  {} (every member's data dir and log; one disk){}",
            self.dir.path.display(),
            if self.dir.keep {
                ", kept"
            } else {
                ", removed at the end"
            }
        ));
        lines
    }
}

/// Cairn's node settings (as `cairn server` starts with them).
fn cairn_config() -> cairn_node::node::NodeConfig {
    cairn_node::node::NodeConfig::new(
        1,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        PathBuf::new(),
    )
}

/// When a Cairn follower campaigns after the last heartbeat: [earliest,
/// latest) ms. openraft 0.9 draws the election timeout once per process,
/// and a follower that knew a leader also waits out that leader's lease (=
/// the maximum) before campaigning (engine_config.rs, raft_core.rs
/// handle_tick_election).
fn cairn_campaign_ms() -> (u64, u64) {
    let cfg = cairn_config();
    (
        cfg.election_min_ms + cfg.election_max_ms,
        2 * cfg.election_max_ms,
    )
}

/// Waits until every member answers and one reports itself leader; fails
/// early (with the logs) if a member exits.
async fn ready(router: &Router, cluster: &mut LocalCluster, within: Duration) -> Result<()> {
    let until = Instant::now() + within;
    loop {
        cluster.check_alive()?;
        let st = router.statuses().await;
        if st.iter().all(|s| s.is_ok()) && st.iter().flatten().any(|s| s.is_leader) {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!(
                "the {} cluster was not ready (every member answering, one leader) within {} s:\n{}",
                router.system.name(),
                within.as_secs(),
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A status-only router (no writes) to wait on a fresh cluster.
fn status_router(system: SystemName, endpoints: &[String]) -> Result<Router> {
    let sys = match system {
        SystemName::Cairn => System::Cairn(CairnWrites {
            first_pid: 0,
            cids: vec![],
            generations: vec![],
        }),
        SystemName::Etcd => System::Etcd(EtcdWrites {
            keys: vec![],
            value: vec![],
            member_ids: vec![],
        }),
    };
    Router::new(sys, endpoints, 1)
}

/// The bytes of one write: Cairn's encoded command (as Meta.Propose
/// carries it), which etcd puts as its value. Representative of a run: pid
/// 1, generation 1000, 3 alive replicas (bincode varints make it vary by a
/// few bytes with the pid and generation).
fn payload() -> Result<Vec<u8>> {
    CairnWrites {
        first_pid: 1,
        cids: vec![1, 2, 3],
        generations: vec![],
    }
    .encoded(0, 1000)
}

/// A started Cairn cluster with simulated chunks and one extent per client
/// on a volume over the first three chunks.
struct CairnSetup {
    cluster: LocalCluster,
    fleet: Fleet,
    router: Arc<Router>,
    client: MetaClient,
}

async fn start_cairn(
    env: &Env,
    chunks: usize,
    extents: usize,
    connections: usize,
    events: Option<tokio::sync::mpsc::UnboundedSender<SessionEvent>>,
) -> Result<CairnSetup> {
    env.progress("starting 3 cairn members");
    // The members' ports are probed free, then bound by the members: another
    // process may take one in between. Such a start is retried on new ports.
    let mut attempt = 1;
    let cluster = loop {
        let mut cluster = LocalCluster::cairn(&env.dir.path, &env.exe)?;
        let probe = status_router(SystemName::Cairn, &cluster.endpoints)?;
        match ready(&probe, &mut cluster, Duration::from_secs(30)).await {
            Ok(()) => break cluster,
            Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                env.progress("a port was taken meanwhile: starting again on other ports");
                drop(cluster);
                // The members that did start initialized their data dirs
                // for the old addresses.
                for id in 1..=3 {
                    let d = env.dir.path.join(format!("cairn-n{id}"));
                    let _ = std::fs::remove_dir_all(&d);
                }
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let client = MetaClient::new(
        cluster.endpoints.clone(),
        cairn_node::transport::Transport::Insecure,
    )?;
    // The bench's writes flip the third replica's alive bit: with spare
    // chunks, recover would copy a replica to them (and migrate balance
    // them), moving the extents under the writers. The bench measures
    // writes, not copies: both stay paused on the bench's own cluster.
    for key in ["recover_paused", "migrate_paused"] {
        client
            .set_config(cairn_node::types::pb::SetConfigRequest {
                key: key.into(),
                value: "true".into(),
            })
            .await
            .with_context(|| format!("setting {key}"))?;
    }
    let mut cfg = FleetConfig::new(cluster.endpoints.clone(), chunks.max(3));
    cfg.zones = 0;
    cfg.host_prefix = format!("bench-etcd-{}", std::process::id());
    cfg.events = events;
    let fleet = Fleet::start(cfg).await?;
    if !fleet.wait_registered(Duration::from_secs(30)).await {
        bail!(
            "the simulated chunks did not register within 30 s:\n{}",
            cluster.logs()
        );
    }
    let mut cids: Vec<u32> = fleet.chunks().iter().map(|c| c.cid()).collect();
    cids.sort_unstable();
    cids.truncate(3);
    let (mut results, _) = client
        .propose(&[Cmd::CreateVolume(CreateVolume {
            name: format!("bench-etcd-{}", std::process::id()),
            size_bytes: extents as u64 * EXTENT_SIZE_BYTES,
            provisioning: Provisioning::Thin,
            replicas: 3,
            prefer_cid: 0,
            even: false,
            preferred_zone: 0,
            locs: vec![cids.clone(); extents],
        })])
        .await?;
    let first_pid = match results.pop() {
        Some(Ok(Reply::Volume { first_pid, .. })) => first_pid,
        other => bail!("creating the bench volume: unexpected reply {other:?}"),
    };
    let writes = CairnWrites {
        first_pid,
        cids,
        generations: (0..extents).map(|_| AtomicU64::new(1)).collect(),
    };
    let router = Arc::new(Router::new(
        System::Cairn(writes),
        &cluster.endpoints,
        connections,
    )?);
    Ok(CairnSetup {
        cluster,
        fleet,
        router,
        client,
    })
}

/// A started etcd cluster and a router writing `clients` keys.
async fn start_etcd(
    env: &Env,
    clients: usize,
    connections: usize,
    value: &[u8],
) -> Result<(LocalCluster, Arc<Router>)> {
    env.progress("starting 3 etcd members");
    let token = format!("cairn-bench-{}", std::process::id());
    let mut cluster = LocalCluster::etcd(&env.dir.path, env.etcd_bin()?, &env.etcd_flags, &token)?;
    let probe = status_router(SystemName::Etcd, &cluster.endpoints)?;
    ready(&probe, &mut cluster, Duration::from_secs(30)).await?;
    let mut member_ids = vec![];
    for s in probe.statuses().await {
        member_ids.push(s.map_err(anyhow::Error::msg)?.id);
    }
    let writes = EtcdWrites {
        keys: (0..clients)
            .map(|i| format!("/cairn-bench/{i:05}").into_bytes())
            .collect(),
        value: value.to_vec(),
        member_ids,
    };
    let router = Arc::new(Router::new(
        System::Etcd(writes),
        &cluster.endpoints,
        connections,
    )?);
    Ok((cluster, router))
}

/// `json`: the global `--json` flag.
pub async fn compare(args: CompareArgs, json: bool) -> Result<()> {
    with_signals(compare_run(args, json)).await
}

async fn compare_run(args: CompareArgs, json: bool) -> Result<()> {
    if args.clients.is_empty() || args.clients.iter().any(|c| !(1..=4096).contains(c)) {
        bail!("--clients: each count must be in 1..=4096");
    }
    if args.duration.is_zero() {
        bail!("--duration must be more than 0");
    }
    if !(1..=64).contains(&args.connections) {
        bail!("--connections must be in 1..=64");
    }
    let env = Env::new(&args.common, "compare", json)?;
    let value = payload()?;
    let max_clients = args.clients.iter().copied().max().unwrap_or(1);
    let mut runs: BTreeMap<SystemName, Vec<Measured>> = BTreeMap::new();
    let mut order = vec![];
    for &system in &args.common.systems {
        if runs.contains_key(&system) {
            continue;
        }
        order.push(system);
        let points = match system {
            SystemName::Cairn => {
                let s = start_cairn(&env, 3, max_clients, args.connections, None).await?;
                let points = measure_points(&env, &args, &s.router, &s.cluster).await?;
                drop(s);
                points
            }
            SystemName::Etcd => {
                let (cluster, router) =
                    start_etcd(&env, max_clients, args.connections, &value).await?;
                measure_points(&env, &args, &router, &cluster).await?
            }
        };
        runs.insert(system, points);
    }
    let r = report::Compare {
        setup: env.setup_lines(),
        payload_bytes: value.len(),
        duration: args.duration,
        warmup: args.warmup,
        connections: args.connections,
        retry: load::retry_policy(),
        order,
        runs,
    };
    if env.json {
        println!("{}", serde_json::to_string_pretty(&r.json())?);
    } else {
        print!("{}", r.text());
    }
    Ok(())
}

async fn measure_points(
    env: &Env,
    args: &CompareArgs,
    router: &Arc<Router>,
    cluster: &LocalCluster,
) -> Result<Vec<Measured>> {
    let mut points = vec![];
    for &n in &args.clients {
        let m = load::measure(
            router,
            n,
            args.warmup,
            args.duration,
            || cluster.cpu_seconds(),
            &cluster.metrics,
        )
        .await?;
        for (r, k) in &m.error_reasons {
            env.progress(format!("{}: {k} writes failed: {r}", router.system.name()));
        }
        env.progress(format!(
            "{:<5} clients {n:>4}: {:>8.0} writes/s  p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms  errors {}",
            router.system.name(),
            m.writes_per_s(),
            m.pct_ms(0.50),
            m.pct_ms(0.99),
            m.pct_ms(0.999),
            m.errors
        ));
        points.push(m);
    }
    Ok(points)
}

/// `json`: the global `--json` flag.
pub async fn failover(args: FailoverArgs, json: bool) -> Result<()> {
    with_signals(failover_run(args, json)).await
}

async fn failover_run(args: FailoverArgs, json: bool) -> Result<()> {
    if args.kills == 0 || args.kills > 1000 {
        bail!("--kills must be in 1..=1000");
    }
    if !(1..=1024).contains(&args.clients) {
        bail!("--clients must be in 1..=1024");
    }
    if !(3..=1000).contains(&args.chunks) {
        bail!("--chunks must be in 3..=1000");
    }
    let env = Env::new(&args.common, "failover", json)?;
    let value = payload()?;
    let mut runs: BTreeMap<SystemName, report::FailoverRun> = BTreeMap::new();
    let mut order = vec![];
    for &system in &args.common.systems {
        if runs.contains_key(&system) {
            continue;
        }
        order.push(system);
        let run = match system {
            SystemName::Cairn => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let mut s = start_cairn(&env, args.chunks, args.clients, 1, Some(tx)).await?;
                let mut run = kill_loop(&env, &args, &s.router, &mut s.cluster).await?;
                // The lease in force at the end (lease_7s activates shortly
                // after the chunks register in a new cluster).
                let lease_ms = s
                    .client
                    .upgrade_status(cairn_node::types::pb::UpgradeStatusRequest {})
                    .await
                    .ok()
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.json).ok())
                    .and_then(|v| v["lease_ms"].as_u64());
                // Session expiries, three ways: what the chunks were told
                // (Lost, and re-registrations), what the leaders logged,
                // and the metric (where a member answers the scrape).
                let mut lost: usize = 0;
                let mut opened: usize = 0;
                while let Ok(e) = rx.try_recv() {
                    match e.kind {
                        SessionEventKind::Lost => lost += 1,
                        SessionEventKind::Opened => opened += 1,
                        _ => {}
                    }
                }
                let reregistered = opened.saturating_sub(s.fleet.chunks().len());
                let logged = s.cluster.logged_session_expiries();
                // Every member applies each expiry: the most any member
                // counted (a restarted member's counter starts again).
                let mut metric: Option<f64> = None;
                for addr in &s.cluster.metrics {
                    if let Some(text) = procs::scrape_metrics(addr).await {
                        if let Some(v) = procs::metric_sum(&text, "cairn_sessions_expired_total") {
                            metric = Some(metric.map_or(v, |m| m.max(v)));
                        }
                    }
                }
                run.sessions = Some(report::Sessions {
                    chunks: s.fleet.chunks().len(),
                    lease_ms,
                    lost,
                    reregistered,
                    logged,
                    metric,
                });
                drop(s);
                run
            }
            SystemName::Etcd => {
                let (mut cluster, router) = start_etcd(&env, args.clients, 1, &value).await?;
                kill_loop(&env, &args, &router, &mut cluster).await?
            }
        };
        runs.insert(system, run);
    }
    let r = report::Failover {
        setup: env.setup_lines(),
        election: env.election_line(),
        clients: args.clients,
        kills: args.kills,
        payload_bytes: value.len(),
        retry: load::retry_policy(),
        order,
        runs,
    };
    if env.json {
        println!("{}", serde_json::to_string_pretty(&r.json())?);
    } else {
        print!("{}", r.text());
    }
    Ok(())
}

/// The kills of one system under constant load.
async fn kill_loop(
    env: &Env,
    args: &FailoverArgs,
    router: &Arc<Router>,
    cluster: &mut LocalCluster,
) -> Result<report::FailoverRun> {
    let name = router.system.name();
    let mut bg = Background::start(router, args.clients);
    tokio::time::sleep(args.warmup).await;
    if !bg.wait_acks(10, Duration::from_secs(30)).await {
        bail!(
            "{name}: the write load did not get going:\n{}",
            cluster.logs()
        );
    }
    let mut run = report::FailoverRun::default();
    for k in 0..args.kills {
        cluster.check_alive()?;
        let Some((leader, st)) = router.current_leader(Duration::from_secs(30)).await else {
            bail!(
                "{name}: no leader before kill {}:\n{}",
                k + 1,
                cluster.logs()
            );
        };
        let killed_at = bg.watch_kill(leader, st.term);
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let child = cluster.procs[leader].kill9();
        procs::reap(child).await;
        let until = killed_at + args.max_failover;
        let ack = loop {
            if let Some(a) = bg.first_ack() {
                break Some(a);
            }
            if Instant::now() >= until {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        bg.unwatch();
        match ack {
            Some(a) => {
                let ms = a.acked.duration_since(killed_at).as_secs_f64() * 1000.0;
                env.progress(format!(
                    "{name} kill {}/{}: leader member {} (term {}) killed at unix {wall:.3}; first write acknowledged by member {}{} after {ms:.0} ms",
                    k + 1,
                    args.kills,
                    leader + 1,
                    st.term,
                    a.member + 1,
                    a.term.map(|t| format!(" in term {t}")).unwrap_or_default(),
                ));
                run.failover_ms.push(ms);
            }
            None => {
                env.progress(format!(
                    "{name} kill {}/{}: no write acknowledged within {} s",
                    k + 1,
                    args.kills,
                    args.max_failover.as_secs()
                ));
                run.no_ack += 1;
            }
        }
        // Back with the same data dir, caught up, load flowing: next kill.
        cluster.procs[leader].start()?;
        caught_up(router, cluster, leader, Duration::from_secs(60)).await?;
        if !bg.wait_acks(1, Duration::from_secs(30)).await {
            bail!(
                "{name}: no write acknowledged after the restart:\n{}",
                cluster.logs()
            );
        }
        tokio::time::sleep(args.settle).await;
    }
    bg.stop().await;
    run.writes = bg.acks();
    run.errors = bg.errors();
    run.error_reasons = bg.error_reasons();
    for (r, n) in &run.error_reasons {
        env.progress(format!("{name}: {n} writes failed: {r}"));
    }
    Ok(run)
}

/// Waits until restarted member `m` has applied what the leader had
/// logged when `m` first answered.
async fn caught_up(
    router: &Router,
    cluster: &mut LocalCluster,
    m: usize,
    within: Duration,
) -> Result<()> {
    let until = Instant::now() + within;
    let mut target = None;
    loop {
        cluster.check_alive()?;
        if let Ok(s) = router.status(m).await {
            if target.is_none() {
                if let Some((_, l)) = router.current_leader(Duration::from_secs(1)).await {
                    target = Some(l.log_index);
                }
            }
            if target.is_some_and(|t| s.applied_index >= t) {
                return Ok(());
            }
        }
        if Instant::now() >= until {
            bail!(
                "{} member {} did not catch up within {} s:\n{}",
                router.system.name(),
                m + 1,
                within.as_secs(),
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
