//! `cairn`: the server and the operator CLI.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::fleet::FleetTls;
use cairn_node::limits::Limits;
use cairn_node::node::{Node, NodeConfig};
use cairn_node::tls::{Ca, TlsIdentity};
use cairn_node::transport::Transport;
use clap::{Parser, Subcommand};

// glibc's malloc consolidates its fast bins on every large request: after
// a burst of small frees (10,000 chunk streams, say) each 8 KiB gRPC buffer
// walked them, a third of an idle leader's CPU. mimalloc has no such pass
// (docs/sessions.md, "The session wire", has the figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_etcd;
mod cert_cli;
mod cli;
mod dev;
mod fleet_cli;
mod sched_cli;
mod sim_cli;
mod upgrade_cli;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a Raft-replicated metadata service for block storage"
)]
struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Read from the member's local state instead of a linearizable read on the leader.
    #[arg(long, global = true)]
    stale: bool,
    /// Members to talk to, comma-separated host:port (default: the ones a
    /// running `cairn dev` recorded).
    #[arg(long, global = true, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Mutual TLS as the identity in DIR (ca.pem, cert.pem, key.pem, from
    /// `cairn cert issue`): a member's own for `cairn server`, an admin's or
    /// reader's for the CLI. Default: the one a running `cairn dev`
    /// recorded, when talking to its endpoints.
    #[arg(long, global = true, env = "CAIRN_TLS", value_name = "DIR")]
    tls: Option<PathBuf>,
    /// Plain TCP, no TLS: nobody is authenticated and anyone who reaches
    /// the port may do anything. Only for a throwaway local cluster.
    #[arg(long, global = true, conflicts_with = "tls")]
    insecure: bool,
    /// The CA directory (ca.pem, ca.key): only simulated fleets (`cairn
    /// fleet`, `cairn bench`) need it, to issue each new chunk the
    /// certificate of its cid. Default: the one `cairn dev` recorded.
    #[arg(long, global = true, value_name = "DIR")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a member.
    ///
    /// First start of a new 3-node cluster: the same --init list on every
    /// initial member (it also names the cluster):
    ///   cairn server --id 1 --listen 10.0.0.1:7400 --data-dir /var/lib/cairn \
    ///       --init 1=10.0.0.1:7400,2=10.0.0.2:7400,3=10.0.0.3:7400
    ///   (and the same on members 2 and 3 with their --id and --listen)
    /// Restart: only --id, --listen and --data-dir. A data dir of another node
    /// or cluster, or none at all, is refused: the member never starts empty.
    /// A new member of a running cluster:
    ///   cairn server --id 4 --listen 10.0.0.4:7400 --data-dir /var/lib/cairn --join 10.0.0.1:7400
    Server {
        /// This member's id (>= 1); the data dir remembers it and refuses another.
        #[arg(long)]
        id: u64,
        /// Address to serve Raft and the Meta API on.
        #[arg(long)]
        listen: SocketAddr,
        /// Where the Raft log (RocksDB) and snapshots live.
        #[arg(long)]
        data_dir: PathBuf,
        /// Initial members of a new cluster: id=host:port,... Give every initial
        /// member the same list. It names the cluster: a data dir of another
        /// cluster is refused.
        #[arg(long, value_parser = parse_members, conflicts_with = "join")]
        init: Option<BTreeMap<u64, String>>,
        /// Join a running cluster through any of its members (host:port): this
        /// member asks to be added as a learner and catches up; promote it
        /// with `cairn cluster promote ID`. --listen must be the address the
        /// other members reach it on.
        #[arg(long)]
        join: Option<SocketAddr>,
        /// Snapshot after this many applied entries and purge the log behind it.
        #[arg(long, default_value_t = 10_000)]
        snapshot_every: u64,
        /// A chunk's space report becomes a Raft write at most this often
        /// while this member leads (sooner when a figure moves by more than
        /// 5 % of the chunk's capacity), e.g. 5s.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        space_report_every: std::time::Duration,
        /// Advertise and behave as an older release (e.g. 1.0: no
        /// capabilities, 14 s lease), to rehearse a rolling upgrade with one
        /// binary. Default: this binary's version.
        #[arg(long)]
        emulate_version: Option<String>,
        /// Fault injection (cairn-chaos): dial these peers at these
        /// addresses (id=host:port,...) instead of their membership ones.
        #[arg(long, value_parser = parse_members, hide = true)]
        routes: Option<BTreeMap<u64, String>>,
        /// Serve Prometheus metrics (OpenMetrics text) at
        /// http://ADDR/metrics, e.g. 127.0.0.1:9400: Raft term and indexes,
        /// append latency, sessions, scheduler queues and copies,
        /// capability states (docs/node.md lists every series).
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// The leader's heartbeat period, in milliseconds (10 to 166; also
        /// openraft's timeout for one AppendEntries call).
        #[arg(long, default_value_t = cairn_node::node::DEFAULT_HEARTBEAT_MS)]
        heartbeat_ms: u64,
        /// A follower's election timeout range in milliseconds, MIN-MAX (one
        /// value is drawn per process). openraft adds a leader lease of MAX,
        /// so a follower campaigns MAX+MIN to 2*MAX ms after the last
        /// heartbeat. Shorter fails over faster; too short for the machine's
        /// scheduling delays elects needlessly. MIN+MAX must be at least
        /// 800 ms (a leader stops renewing chunk sessions 500 ms after it
        /// last heard a quorum). Give every member the same.
        #[arg(long, default_value = "300-600", value_parser = parse_range)]
        election_timeout_ms: (u64, u64),
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Start a local quorum of real `cairn server` processes on free
    /// 127.0.0.1 ports, record their endpoints for the CLI, and stop them all
    /// on Ctrl-C.
    ///
    ///   cairn dev            # 3 members in a temporary directory
    ///   cairn dev --nodes 5 --dir /tmp/cairn
    Dev {
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Data and log directory (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Simulated chunks to run against the quorum (0: none).
        #[arg(long, default_value_t = 8)]
        chunks: usize,
        /// Racks (one brick each) the chunks are spread over, in one zone.
        #[arg(long, default_value_t = 2)]
        racks: usize,
        /// Show a recovery: create a volume, stop the chunk holding most of
        /// its replicas, and draw the recovery's progress until every extent
        /// has its replicas back (the cluster keeps running afterwards).
        #[arg(long)]
        demo: bool,
    },
    /// Run a fleet of simulated chunks against a cluster, or control a
    /// running one (stop / start a chunk by cid, list).
    ///
    ///   cairn fleet --chunks 16 --zones 2 --racks 2
    ///   cairn fleet list
    ///   cairn fleet stop 3      # chunk 3 goes silent: its session expires
    ///   cairn fleet start 3     # it comes back and registers again
    #[command(args_conflicts_with_subcommands = true)]
    Fleet {
        #[command(subcommand)]
        cmd: Option<fleet_cli::FleetCmd>,
        #[command(flatten)]
        run: fleet_cli::FleetRun,
    },
    /// Chunk sessions as the leader sees them.
    Session {
        #[command(subcommand)]
        cmd: fleet_cli::SessionCmd,
    },
    /// Topology: zones, racks, bricks.
    Topo {
        #[command(subcommand)]
        cmd: cli::TopoCmd,
    },
    /// Chunks (storage servers) with load ratios and load modes.
    Chunk {
        #[command(subcommand)]
        cmd: cli::ChunkCmd,
    },
    /// Volumes and where their extents live.
    Volume {
        #[command(subcommand)]
        cmd: cli::VolumeCmd,
    },
    /// Physical extents.
    Extent {
        #[command(subcommand)]
        cmd: cli::ExtentCmd,
    },
    /// The leader's recover and migrate schedulers: status, a live
    /// progress bar, pause / resume, and why an extent gets the command it
    /// gets. Operator commands are under `cairn extent`.
    ///
    ///   cairn sched status
    ///   cairn sched watch
    ///   cairn sched pause migrate
    ///   cairn sched explain 42
    Sched {
        #[command(subcommand)]
        cmd: sched_cli::SchedCmd,
    },
    /// Rolling upgrades: who runs which version, which capabilities are
    /// active, and who blocks the pending ones; hold / release activation
    /// (docs/upgrades.md).
    ///
    ///   cairn upgrade status
    ///   cairn upgrade hold
    ///   cairn upgrade release
    Upgrade {
        #[command(subcommand)]
        cmd: upgrade_cli::UpgradeCmd,
    },
    /// Replicated cluster configuration.
    Config {
        #[command(subcommand)]
        cmd: cli::ConfigCmd,
    },
    /// Benchmarks against a running cluster.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
    /// Certificates for mutual TLS: the cluster's CA, and one identity
    /// (member, chunk, admin or reader) per directory (docs/security.md).
    ///
    ///   cairn cert init --dir ca
    ///   cairn cert issue --ca ca --role member:1 --out member-1
    ///   cairn cert show member-1
    #[command(verbatim_doc_comment)]
    Cert {
        #[command(subcommand)]
        cmd: cert_cli::CertCmd,
    },
    /// Pure simulations that run the real planners (no cluster needed).
    Sim {
        #[command(subcommand)]
        cmd: sim_cli::SimCmd,
    },
    /// Post-mortem tools for a stopped member's data dir.
    Debug {
        #[command(subcommand)]
        cmd: DebugCmd,
    },
    /// Cluster membership and health.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Durable writes (extent-location CAS updates, one extent per client)
    /// from concurrent clients; prints writes/s and p50/p99/p999 latency.
    ///
    ///   cairn bench write --clients 64 --duration 20s
    Write {
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// How long to write, e.g. 20s or 500ms.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: std::time::Duration,
    },
    /// Simulated chunks keeping alive once a second (the bench sets the
    /// lease to 7 s while they register, then restores it); prints the
    /// leader's CPU share and the Raft writes per second the sessions cause,
    /// first with one gRPC stream per chunk (the baseline), then on the
    /// session wire.
    /// The leader must run on this machine (its CPU is read from /proc).
    ///
    ///   cairn bench sessions --sessions 10000 --duration 30s
    Sessions {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Chunks sharing one session connection to the leader (0: all of
        /// them; 1: a connection per chunk, as separate hosts would).
        #[arg(long, default_value_t = 0)]
        chunks_per_conn: usize,
    },
    /// Cairn against a 3-member etcd on this machine: the same durable-write
    /// workload through each one's gRPC API, writes/s and p50/p99/p999 at
    /// 1, 16, 64 and 256 clients, and the Cairn/etcd ratios.
    ///
    /// Starts 3 `cairn server` members (this binary), then 3 etcd members
    /// (etcd-server: scripts/setup.sh installs it), on free 127.0.0.1 ports
    /// with every data dir under one directory (one disk), and drives each in
    /// turn with the same closed-loop Rust load generator: Cairn does
    /// extent-location CAS updates (Meta.Propose), etcd a KV.Put of the same
    /// bytes; both acknowledge a write only once a majority has fsynced it.
    /// Every process is killed and the directory removed at the end, on
    /// error and on Ctrl-C.
    ///
    /// Examples: `cairn bench compare-etcd`;
    /// `cairn bench compare-etcd --clients 64 --duration 20s --json`;
    /// `cairn bench compare-etcd --systems etcd --clients 1,16`.
    CompareEtcd(bench_etcd::CompareArgs),
    /// kill -9 the leader 20 times under write load, Cairn and etcd: time
    /// from the kill to the first write the new leader acknowledges, and
    /// Cairn's chunk session expiries (must be 0).
    ///
    /// Starts each system's 3 members as `compare-etcd` does and keeps a
    /// constant write load on it; each kill hits the member reporting itself
    /// leader, times the first write sent after the kill and acknowledged by
    /// another member, then restarts the killed member from its data dir and
    /// waits until it has caught up. Cairn runs simulated chunks keeping
    /// their sessions alive throughout. Prints median, p99, min and max per
    /// system, the election timeouts and both clients' retry policy.
    ///
    /// Examples: `cairn bench failover`;
    /// `cairn bench failover --kills 5 --clients 4`;
    /// `cairn bench failover --etcd-election-ms 300` (etcd's election
    /// timeout range then equals Cairn's 300-600 ms; Cairn's followers also
    /// wait openraft's leader lease on top).
    Failover(bench_etcd::FailoverArgs),
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{s:?}: expected MIN-MAX in milliseconds, e.g. 300-600");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a >= b {
        return Err(format!("{s:?}: MIN must be at least 1 and below MAX"));
    }
    Ok((a, b))
}

pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 20s or 500ms"))?;
    match unit {
        "s" | "" => Ok(std::time::Duration::from_secs(n)),
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unit must be ms, s or m")),
    }
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Each member's own view: id, address, role, term, last log and applied
    /// index, lag behind the leader, and the digest of its state (equal
    /// digests at equal applied indexes mean the members agree).
    ///
    ///   cairn cluster status
    ///   cairn cluster status --endpoints 10.0.0.1:7400,10.0.0.2:7400 --json
    Status,
    /// Add a member as a non-voting learner; returns once it has caught up
    /// (by log replication or snapshot install). Start its `cairn server`
    /// first, without --init.
    ///
    ///   cairn cluster add-learner 4 10.0.0.4:7400
    AddLearner { id: u64, addr: SocketAddr },
    /// Make a learner a voter.
    ///
    ///   cairn cluster promote 4
    Promote { id: u64 },
    /// Remove a member (voter or learner) from the cluster.
    ///
    ///   cairn cluster remove 4
    Remove { id: u64 },
}

#[derive(Subcommand)]
enum DebugCmd {
    /// Print the Raft log of a stopped member as JSON lines: one
    /// `{"committed": .., "last_purged": ..}` header, then one line per entry
    /// (index, term, payload blank|membership|normal, leader_time_ms, cmds).
    /// `committed` is the member's saved hint: after a power loss it may be
    /// behind what the cluster had committed (docs/node.md, durability rule).
    /// Opens RocksDB read-only: the data dir is left as it was.
    ///
    ///   cairn debug dump-log --data-dir /var/lib/cairn > log.jsonl
    DumpLog {
        /// The member's data dir (the one given to `cairn server`).
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn debug(cmd: DebugCmd) -> Result<()> {
    use std::io::Write;
    match cmd {
        DebugCmd::DumpLog { data_dir } => {
            let dump = cairn_node::store::log::LogStore::dump(&data_dir.join("raft"))?;
            let out = std::io::stdout();
            let mut out = std::io::BufWriter::new(out.lock());
            let header = serde_json::json!({
                "committed": dump.committed.map(|l| l.index),
                "committed_term": dump.committed.map(|l| l.leader_id.term),
                "last_purged": dump.last_purged.map(|l| l.index),
            });
            writeln!(out, "{header}")?;
            for e in dump.entries {
                let (payload, leader_time_ms, cmds) = match e.payload {
                    openraft::EntryPayload::Blank => ("blank", 0, vec![]),
                    openraft::EntryPayload::Membership(_) => ("membership", 0, vec![]),
                    openraft::EntryPayload::Normal(r) => ("normal", r.leader_time_ms, r.cmds),
                };
                let line = serde_json::json!({
                    "index": e.log_id.index, "term": e.log_id.leader_id.term,
                    "leader": e.log_id.leader_id.node_id,
                    "payload": payload, "leader_time_ms": leader_time_ms, "cmds": cmds,
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            Ok(())
        }
    }
}

fn parse_members(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',') {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected id=host:port"))?;
        let id: u64 = id.parse().map_err(|_| format!("{id:?} is not a node id"))?;
        if id == 0 {
            return Err("node ids start at 1".into());
        }
        addr.parse::<SocketAddr>()
            .map_err(|_| format!("{addr:?} is not a host:port address"))?;
        if out.insert(id, addr.to_string()).is_some() {
            return Err(format!("node {id} listed twice"));
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// What one peer may take of a member (docs/security.md, "Limits").
#[derive(clap::Args)]
struct LimitArgs {
    /// Largest Meta or Chunk request a member decodes, in bytes.
    #[arg(long, default_value_t = Limits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Most log entries the leader sends in one AppendEntries.
    #[arg(long, default_value_t = Limits::default().max_append_entries)]
    max_append_entries: u64,
    /// Proposals waiting for the leader's batcher; beyond, UNAVAILABLE.
    #[arg(long, default_value_t = Limits::default().max_queued_proposals)]
    max_queued_proposals: usize,
    /// HTTP/2 streams one connection may have open (more wait on the client).
    #[arg(long, default_value_t = Limits::default().max_streams_per_conn)]
    max_streams_per_conn: u32,
    /// Connections a member holds at once; beyond, new ones are closed.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Keepalives one connection (session wire or gRPC stream) may send
    /// per second; beyond, its next ones wait.
    #[arg(long, default_value_t = Limits::default().max_keepalives_per_sec)]
    max_keepalives_per_sec: u32,
}

impl From<LimitArgs> for Limits {
    fn from(a: LimitArgs) -> Limits {
        Limits {
            max_message_bytes: a.max_message_bytes,
            max_append_entries: a.max_append_entries,
            max_queued_proposals: a.max_queued_proposals,
            max_streams_per_conn: a.max_streams_per_conn,
            max_connections: a.max_connections,
            max_keepalives_per_sec: a.max_keepalives_per_sec,
        }
    }
}

/// The global flags that say where and how to connect.
struct Net {
    endpoints: Vec<String>,
    tls: Option<PathBuf>,
    insecure: bool,
    ca: Option<PathBuf>,
}

/// Which cluster a client command talks to, and how.
struct Target {
    endpoints: Vec<String>,
    transport: Transport,
    /// The CA, for simulated fleets (None: not given, or TLS is off).
    ca: Option<PathBuf>,
}

/// The endpoints and transport of a client command: as given, else what a
/// running `cairn dev` recorded (its endpoints with its admin identity).
fn target(cli: &Net) -> Result<Target> {
    let recorded = if cli.endpoints.is_empty() {
        Some(dev::recorded().with_context(|| {
            format!(
                "no --endpoints given and no running `cairn dev` recorded any in {}",
                dev::state_file().display()
            )
        })?)
    } else {
        None
    };
    let transport = if let Some(dir) = &cli.tls {
        Transport::load(dir)
            .with_context(|| format!("loading the TLS identity in {}", dir.display()))?
    } else if cli.insecure {
        eprintln!("warning: --insecure: plain TCP, nobody authenticated");
        Transport::Insecure
    } else if let Some(r) = &recorded {
        match &r.tls {
            Some(dir) => Transport::load(dir).with_context(|| {
                format!(
                    "loading the TLS identity `cairn dev` recorded in {}",
                    dir.display()
                )
            })?,
            None => Transport::Insecure,
        }
    } else {
        bail!(
            "no TLS identity: give --tls DIR (or set CAIRN_TLS) with an identity from `cairn cert issue`, or --insecure for a cluster started with --insecure"
        );
    };
    let ca = match (&cli.ca, &recorded, transport.is_tls()) {
        (Some(dir), _, _) => Some(dir.clone()),
        (None, Some(r), true) => r.ca.clone(),
        _ => None,
    };
    let endpoints = match recorded {
        Some(r) => r.endpoints,
        None => cli.endpoints.clone(),
    };
    Ok(Target {
        endpoints,
        transport,
        ca,
    })
}

/// A simulated fleet's TLS under `t`: it registers new chunks as the admin
/// and issues their certificates from the CA (None: TLS is off).
fn fleet_tls(t: &Target) -> Result<Option<Arc<FleetTls>>> {
    if !t.transport.is_tls() {
        return Ok(None);
    }
    let Some(dir) = &t.ca else {
        bail!("a simulated fleet under TLS issues its chunks' certificates: give --ca DIR, the CA from `cairn cert init` (or run against `cairn dev`, which records its own)");
    };
    let ca = Ca::load(dir).with_context(|| format!("loading the CA from {}", dir.display()))?;
    Ok(Some(Arc::new(FleetTls {
        admin: t.transport.clone(),
        ca,
        dir: dir.join("chunks"),
    })))
}

fn client(cli: &Net) -> Result<MetaClient> {
    let t = target(cli)?;
    Ok(MetaClient::new(t.endpoints, t.transport)?)
}

async fn run(cli: Cli) -> Result<()> {
    let Cli {
        json,
        stale,
        endpoints,
        tls,
        insecure,
        ca,
        cmd,
    } = cli;
    let net = Net {
        endpoints,
        tls,
        insecure,
        ca,
    };
    match cmd {
        Command::Dev {
            nodes,
            dir,
            chunks,
            racks,
            demo,
        } => dev::run(nodes, dir, chunks, racks, demo, net.insecure).await,
        Command::Fleet { cmd: None, run } => {
            let t = target(&net)?;
            fleet_cli::run(t.endpoints.clone(), fleet_tls(&t)?, run).await
        }
        Command::Fleet { cmd: Some(cmd), .. } => fleet_cli::control(cmd, json).await,
        Command::Session { cmd } => fleet_cli::session(&client(&net)?, cmd, json).await,
        Command::Server {
            id,
            listen,
            data_dir,
            init,
            join,
            snapshot_every,
            space_report_every,
            emulate_version,
            routes,
            metrics_addr,
            heartbeat_ms,
            election_timeout_ms,
            limits,
        } => {
            if let Some(bug) = cairn_node::chaos_bug::announce() {
                tracing::error!("CHAOS BUG ACTIVE: {bug} (a deliberately broken member, for testing cairn-chaos)");
            }
            let mut cfg = NodeConfig::new(id, listen, data_dir);
            cfg.tls = match (&net.tls, net.insecure) {
                (Some(dir), _) => Some(TlsIdentity::load(dir).with_context(|| {
                    format!("loading this member's TLS identity from {}", dir.display())
                })?),
                (None, true) => {
                    tracing::warn!(%listen, "TLS is OFF (--insecure): anyone who reaches this port can read and rewrite the cluster's state, and join it");
                    None
                }
                (None, false) => bail!(
                    "cairn server needs --tls DIR, this member's identity (`cairn cert issue --ca CA --role member:{id} --out DIR`), or --insecure to run without TLS"
                ),
            };
            cfg.routes = routes.unwrap_or_default();
            cfg.metrics_addr = metrics_addr;
            cfg.heartbeat_ms = heartbeat_ms;
            (cfg.election_min_ms, cfg.election_max_ms) = election_timeout_ms;
            cfg.limits = limits.into();
            if let Some(v) = emulate_version {
                let capabilities = cairn_capability::capabilities_of(&v)
                    .with_context(|| format!("--emulate-version {v}"))?;
                cfg.advert = cairn_capability::Advert {
                    version: v,
                    capabilities,
                };
            }
            cfg.init = init;
            cfg.snapshot_every = snapshot_every;
            cfg.space_every_ms = space_report_every.as_millis() as u64;
            cfg.join = join.map(|j| j.to_string());
            let node = Node::start(cfg).await?;
            let mut fatal = node.fatal.clone();
            let refused = tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    r.context("waiting for Ctrl-C")?;
                    None
                }
                r = fatal.wait_for(Option::is_some) => match r {
                    Ok(v) => v.clone(),
                    // The advertiser ended without a verdict: serve on
                    // until Ctrl-C.
                    Err(_) => {
                        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
                        None
                    }
                },
            };
            node.shutdown().await;
            match refused {
                Some(why) => bail!("{why}"),
                None => Ok(()),
            }
        }
        Command::Debug { cmd } => debug(cmd),
        Command::Sim { cmd } => sim_cli::run(cmd, json),
        Command::Cert { cmd } => cert_cli::run(cmd, json),
        Command::Bench {
            cmd: BenchCmd::CompareEtcd(args),
        } => bench_etcd::compare(args, json).await,
        Command::Bench {
            cmd: BenchCmd::Failover(args),
        } => bench_etcd::failover(args, json).await,
        Command::Cluster { cmd } => cluster(cmd, target(&net)?, json).await,
        Command::Topo { cmd } => cli::topo(&client(&net)?, cmd, json, stale).await,
        Command::Chunk { cmd } => cli::chunk(&client(&net)?, cmd, json, stale).await,
        Command::Volume { cmd } => cli::volume(&client(&net)?, cmd, json, stale).await,
        Command::Extent { cmd } => cli::extent(&client(&net)?, cmd, json, stale).await,
        Command::Upgrade { cmd } => upgrade_cli::upgrade(&client(&net)?, cmd, json).await,
        Command::Sched { cmd } => sched_cli::sched(&client(&net)?, cmd, json).await,
        Command::Config { cmd } => cli::config(&client(&net)?, cmd, json, stale).await,
        Command::Bench {
            cmd: BenchCmd::Write { clients, duration },
        } => {
            let t = target(&net)?;
            let tls = fleet_tls(&t)?;
            bench::write(t.endpoints, t.transport, tls, clients, duration).await
        }
        Command::Bench {
            cmd:
                BenchCmd::Sessions {
                    sessions,
                    duration,
                    chunks_per_conn,
                },
        } => {
            let t = target(&net)?;
            let tls = fleet_tls(&t)?;
            bench::sessions(
                t.endpoints,
                t.transport,
                tls,
                sessions,
                duration,
                chunks_per_conn,
            )
            .await
        }
    }
}

async fn cluster(cmd: ClusterCmd, target: Target, json: bool) -> Result<()> {
    let endpoints = target.endpoints.clone();
    let client = MetaClient::new(target.endpoints, target.transport)?;
    match cmd {
        ClusterCmd::Status => status(&client, &endpoints, json).await,
        ClusterCmd::AddLearner { id, addr } => {
            let index = client.add_learner(id, &addr.to_string(), None).await?;
            println!("member {id} ({addr}) added as a learner and caught up (log index {index})");
            Ok(())
        }
        ClusterCmd::Promote { id } | ClusterCmd::Remove { id } => {
            let promote = matches!(cmd, ClusterCmd::Promote { .. });
            let leader = leader_status(&client, &endpoints).await?;
            let mut voters: Vec<u64> = leader
                .members
                .iter()
                .filter(|m| m.voter)
                .map(|m| m.node_id)
                .collect();
            if !leader.members.iter().any(|m| m.node_id == id) {
                bail!("member {id} is not in the cluster (add it with `cairn cluster add-learner` first)");
            }
            if promote {
                if voters.contains(&id) {
                    bail!("member {id} is already a voter");
                }
                voters.push(id);
            } else {
                voters.retain(|v| *v != id);
                if voters.is_empty() {
                    bail!("cannot remove the last voter");
                }
            }
            let index = client.change_membership(&voters).await?;
            let what = if promote {
                "promoted to voter"
            } else {
                "removed"
            };
            println!("member {id} {what}; voters now {voters:?} (log index {index})");
            Ok(())
        }
    }
}

/// A linearizable status from the leader.
async fn leader_status(
    client: &MetaClient,
    endpoints: &[String],
) -> Result<cairn_node::types::pb::StatusResponse> {
    let mut last = None;
    for addr in endpoints {
        match client.status_of(addr, false).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => bail!("no leader answered: {e}"),
        None => bail!("no endpoints"),
    }
}

async fn status(client: &MetaClient, endpoints: &[String], json: bool) -> Result<()> {
    let mut rows = vec![];
    for addr in endpoints {
        // Each member's own view: a local (stale) read by design.
        rows.push((
            addr.clone(),
            client
                .status_of(addr, true)
                .await
                .map_err(|e| e.to_string()),
        ));
    }
    let view = cairn_node::views::cluster_status(&rows);
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        println!(
            "{:<22} {:>3} {:>8} {:>5} {:>9} {:>9} {:>5} {:>16}",
            "ENDPOINT", "ID", "ROLE", "TERM", "LAST_LOG", "APPLIED", "LAG", "DIGEST"
        );
        for ((addr, r), v) in rows.iter().zip(&view) {
            match r {
                Ok(s) => println!(
                    "{:<22} {:>3} {:>8} {:>5} {:>9} {:>9} {:>5} {:>16x}",
                    addr,
                    s.node_id,
                    cairn_node::views::member_role(s),
                    s.term,
                    s.last_log_index,
                    s.applied_index,
                    v["lag"].as_u64().map_or("-".to_string(), |l| l.to_string()),
                    s.state_digest
                ),
                Err(e) => println!("{addr:<22} unreachable: {e}"),
            }
        }
    }
    if rows.iter().all(|(_, r)| r.is_err()) {
        bail!("no member answered");
    }
    Ok(())
}
