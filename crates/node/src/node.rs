//! Starting a member: open its stores, check the data dir is its own, start
//! openraft and serve gRPC.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::chunk_service::ChunkService;
use crate::client::MetaClient;
use crate::console::Console;
use crate::copies::SchedHandle;
use crate::limits::{Bucket, Limits};
use crate::meta_service::MetaService;
use crate::network::Network;
use crate::propose::Proposer;
use crate::raft_service::RaftService;
use crate::session_wire;
use crate::sessions::Sessions;
use crate::store::log::{Identity, LogStore};
use crate::store::sm::{SmHandle, StateMachineStore};
use crate::tls::{Role, TlsIdentity};
use crate::transport::{Accepted, Listening, ServerIo, Transport};
use crate::types::{NodeId, Raft};

/// The leader's heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// A follower's election timeout is drawn from this range once per process.
/// openraft 0.9 adds a leader lease of the range's maximum on top, so a
/// follower campaigns 900-1200 ms after the last heartbeat it heard: 9 to 12
/// heartbeats missed (etcd's defaults: 1000-2000 ms, 10 to 20 heartbeats).
/// `cairn bench failover` measures what this gives (README).
pub const DEFAULT_ELECTION_MS: (u64, u64) = (300, 600);

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Initial members (id -> address) for a brand-new cluster. Every initial
    /// member is given the same list; it also names the cluster (see
    /// [`cluster_id_of`]), so a restart with another list is refused.
    pub init: Option<BTreeMap<NodeId, String>>,
    /// Join a running cluster through this member (host:port): learn its
    /// cluster id, start, and ask the leader to add this member as a learner.
    pub join: Option<String>,
    /// Snapshot after this many applied entries, then purge the log behind it.
    pub snapshot_every: u64,
    /// A chunk's space report becomes a Raft write at most this often
    /// (sooner on a change of more than 5 % of its capacity).
    pub space_every_ms: u64,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// The version and capabilities this member advertises (and behaves
    /// as): this binary's own, or an older one's (`--emulate-version`).
    pub advert: cairn_capability::Advert,
    /// Peers to dial at another address than their membership one (fault
    /// injection: `cairn-chaos` puts a proxy in front of each link).
    pub routes: BTreeMap<NodeId, String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (None: don't).
    pub metrics_addr: Option<SocketAddr>,
    /// This member's identity (`cairn cert issue member:<id>`): mutual TLS
    /// on its port and towards its peers. None: plain TCP (`--insecure`).
    pub tls: Option<TlsIdentity>,
    /// What one peer may take of this member.
    pub limits: Limits,
}

impl NodeConfig {
    pub fn new(id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            id,
            listen,
            data_dir,
            init: None,
            join: None,
            advert: cairn_capability::Advert::current(),
            routes: BTreeMap::new(),
            metrics_addr: None,
            tls: None,
            limits: Limits::default(),
            snapshot_every: 10_000,
            space_every_ms: 5_000,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            election_min_ms: DEFAULT_ELECTION_MS.0,
            election_max_ms: DEFAULT_ELECTION_MS.1,
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum NodeError {
    #[error("node id must be at least 1")]
    BadId,
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] crate::store::log::OpenError),
    #[error(transparent)]
    Sm(#[from] crate::store::sm::SmOpenError),
    #[error("data directory {path} belongs to node {found}, not node {wanted}: refusing to start")]
    WrongNode {
        path: PathBuf,
        found: NodeId,
        wanted: NodeId,
    },
    #[error("data directory {path} belongs to cluster {found:016x}, but {source_of} is cluster {wanted:016x}: refusing to start")]
    WrongCluster {
        path: PathBuf,
        found: u64,
        wanted: u64,
        source_of: String,
    },
    #[error("data directory {path} holds no cluster: give --init (the same member list on every initial member) to create one, or --join ADDR to join one; if this member had data, its data dir is missing or wrong")]
    NoCluster { path: PathBuf },
    #[error("cannot join through {via}: {reason}")]
    Join { via: String, reason: String },
    #[error("cannot write the identity of data directory {path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS identity {dir}: {reason}")]
    Tls { dir: PathBuf, reason: String },
    #[error("snapshot file {path} is missing or behind the log: the log was purged up to index {purged} after a snapshot that covered it, but the state machine starts at {applied}; this member cannot rebuild its state and refuses to start (restore the file, or wipe the data dir and add the member back)")]
    MissingSnapshot {
        path: PathBuf,
        purged: u64,
        applied: String,
    },
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("cluster initialization failed: {0}")]
    Init(String),
}

/// The id of the cluster created with this initial member list: every
/// initial member computes the same one without talking to the others.
/// (Two clusters created with the very same ids and addresses share it.)
pub fn cluster_id_of(members: &BTreeMap<NodeId, String>) -> u64 {
    // FNV-1a 64: stable across versions and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, addr) in members {
        for b in format!("{id}={addr},").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h.max(1)
}

pub struct Node {
    pub id: NodeId,
    pub cluster_id: u64,
    pub raft: Raft,
    pub sm: SmHandle,
    pub addr: SocketAddr,
    /// Where `/metrics` is served, if it is.
    pub metrics_addr: Option<SocketAddr>,
    /// The session tracker, live while this member is leader.
    pub sessions: Sessions,
    /// The recover / migrate scheduler, live while this member is leader.
    pub sched: SchedHandle,
    /// Set when this member must not run on this cluster (the log
    /// activated a capability it lacks); the server exits with it.
    pub fatal: watch::Receiver<Option<String>>,
    shutdown: watch::Sender<bool>,
    runner: tokio::task::JoinHandle<()>,
    copy_runner: tokio::task::JoinHandle<()>,
    gate: tokio::task::JoinHandle<()>,
    advertiser: tokio::task::JoinHandle<()>,
    metrics: Option<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Node {
    /// Opens the data dir, starts Raft and the gRPC server.
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        if cfg.id == 0 {
            return Err(NodeError::BadId);
        }
        check_timing(&cfg)?;
        cfg.limits.check().map_err(NodeError::Config)?;
        let (listening, transport) = security(&cfg)?;
        let log_dir = cfg.data_dir.join("raft");
        // The cluster this member is asked to be part of, if it is told.
        let found = LogStore::peek_identity(&log_dir)?;
        let wanted = match (&cfg.init, &cfg.join) {
            (Some(members), _) => {
                Some((cluster_id_of(members), "the --init member list".to_string()))
            }
            // A member that already holds an identity restarts without
            // asking anyone (the member it joined through may be down).
            (None, Some(_)) if found.is_some() => None,
            (None, Some(via)) => Some((
                join_cluster_id(via, &transport).await?,
                format!("the cluster at {via}"),
            )),
            (None, None) => None,
        };
        // Decide from a read-only look, so that a refusal leaves the data
        // dir exactly as it was, and a restart that finds no data never
        // quietly starts an empty member.
        let cluster_id = match (found, &wanted) {
            (Some(found), _) if found.node_id != cfg.id => {
                return Err(NodeError::WrongNode {
                    path: cfg.data_dir.clone(),
                    found: found.node_id,
                    wanted: cfg.id,
                })
            }
            (Some(found), Some((wanted, source_of))) if found.cluster_id != *wanted => {
                return Err(NodeError::WrongCluster {
                    path: cfg.data_dir.clone(),
                    found: found.cluster_id,
                    wanted: *wanted,
                    source_of: source_of.clone(),
                })
            }
            (Some(found), _) => found.cluster_id,
            (None, None) => {
                return Err(NodeError::NoCluster {
                    path: cfg.data_dir.clone(),
                })
            }
            (None, Some((wanted, _))) => *wanted,
        };
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| NodeError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
        let mut log = LogStore::open(&log_dir)?;
        if found.is_none() {
            log.write_identity(&Identity {
                node_id: cfg.id,
                cluster_id,
            })
            .map_err(|e| NodeError::Identity {
                path: log_dir.clone(),
                reason: e.to_string(),
            })?;
        }
        let sm = StateMachineStore::open(&cfg.data_dir.join("sm"))?;
        let sm_handle = sm.handle();
        check_snapshot_covers_purged(&mut log, &sm_handle, &cfg.data_dir).await?;
        log.gate_purges(sm.persisted());

        let config = Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_min_ms,
            election_timeout_max: cfg.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            max_payload_entries: cfg.limits.max_append_entries,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))?;

        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| NodeError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Listen {
            addr: cfg.listen,
            source,
        })?;

        let metrics_listener = match cfg.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| NodeError::Metrics { addr, source })?,
            ),
            None => None,
        };
        // What openraft will re-apply at start, for the metrics not to count
        // it as new.
        if let Ok(Some(c)) = openraft::storage::RaftLogStorage::read_committed(&mut log).await {
            crate::metrics::starting_at(c.index);
        }
        let raft = Raft::new(
            cfg.id,
            Arc::new(config),
            Network::new(cluster_id, transport.clone()).with_routes(cfg.routes.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<crate::types::pb::meta_server::MetaServer<MetaService>>()
            .await;
        let (shutdown, mut stop) = watch::channel(false);
        let proposer = Proposer::new(raft.clone(), cfg.limits.max_queued_proposals);
        let sessions = Sessions::new(raft.clone());
        let runner = crate::sessions::spawn_runner(
            raft.clone(),
            sm_handle.clone(),
            proposer.clone(),
            sessions.clone(),
            cfg.space_every_ms,
            shutdown.subscribe(),
        );
        let gate = crate::upgrade::spawn_gate(
            raft.clone(),
            sm_handle.clone(),
            proposer.clone(),
            shutdown.subscribe(),
        );
        let (fatal_tx, fatal) = watch::channel(None);
        spawn_fatal_watch(raft.clone(), fatal_tx.clone(), shutdown.subscribe());
        let advertiser = crate::upgrade::spawn_advertiser(
            raft.clone(),
            transport.clone(),
            sm_handle.clone(),
            cfg.id,
            cfg.advert.clone(),
            fatal_tx,
            shutdown.subscribe(),
        );
        let sched = SchedHandle::default();
        let copy_runner = crate::copies::spawn_runner(
            raft.clone(),
            sm_handle.clone(),
            proposer.clone(),
            sessions.board().clone(),
            sched.clone(),
            shutdown.subscribe(),
        );
        let router = tonic::transport::Server::builder()
            .max_concurrent_streams(cfg.limits.max_streams_per_conn)
            .layer(crate::authz::AuthzLayer)
            .add_service(health_service)
            .add_service(RaftService::new(raft.clone(), cluster_id).into_server())
            .add_service(
                MetaService::new(
                    raft.clone(),
                    sm_handle.clone(),
                    cluster_id,
                    proposer.clone(),
                    sessions.clone(),
                    sched.clone(),
                )
                .into_server(cfg.limits.max_message_bytes),
            )
            .add_service(
                ChunkService::new(
                    raft.clone(),
                    sm_handle.clone(),
                    proposer.clone(),
                    sessions.clone(),
                    cfg.limits.clone(),
                )
                .into_server(),
            );
        let (metrics_addr, metrics) = match metrics_listener {
            Some(listener) => {
                let src = crate::metrics::Sources {
                    raft: raft.clone(),
                    sm: sm_handle.clone(),
                    sched: sched.clone(),
                };
                let bound = listener.local_addr().ok();
                let console = match bound {
                    Some(admin) => Some(console(
                        &cfg,
                        &raft,
                        addr,
                        &transport,
                        proposer.clone(),
                        admin,
                        shutdown.subscribe(),
                    )?),
                    None => None,
                };
                // HTTPS beside plain HTTP on a TLS member: the console
                // then knows who asks (admin_port.rs).
                let tls = match &cfg.tls {
                    Some(id) => Some(crate::admin_port::AdminTls {
                        config: id
                            .admin_server_config()
                            .map_err(|e| NodeError::Raft(format!("admin port TLS: {e}")))?,
                        authenticator: id
                            .authenticator()
                            .map_err(|e| NodeError::Raft(format!("admin port TLS: {e}")))?,
                    }),
                    None => None,
                };
                let task = crate::metrics::serve(listener, src, console, tls, shutdown.subscribe());
                (bound, Some(task))
            }
            None => (None, None),
        };
        let incoming = split_listener(
            listener,
            listening,
            cfg.limits.clone(),
            raft.clone(),
            sessions.clone(),
            stop.clone(),
        );
        let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));

        if let Some(members) = &cfg.init {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| NodeError::Init(e.to_string()))?;
            if !initialized {
                let members: BTreeMap<NodeId, BasicNode> = members
                    .iter()
                    .map(|(id, a)| (*id, BasicNode { addr: a.clone() }))
                    .collect();
                match raft.initialize(members).await {
                    Ok(()) => {
                        tracing::info!(id = cfg.id, cluster = %format!("{cluster_id:016x}"), "cluster initialized")
                    }
                    // Another initial member got there first and already
                    // reached this one: the cluster exists, nothing to do.
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(NodeError::Init(e.to_string())),
                }
            }
        }
        if let Some(via) = &cfg.join {
            let member = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&cfg.id)
                .is_some();
            if member {
                tracing::info!(id = cfg.id, "already a member; --join has nothing to do");
            } else {
                // Returns once this member has caught up (by log or snapshot).
                let client =
                    MetaClient::new(vec![via.clone()], transport.clone()).map_err(|e| {
                        NodeError::Join {
                            via: via.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                let index = client
                    .add_learner(cfg.id, &addr.to_string(), Some(&cfg.advert))
                    .await
                    .map_err(|e| NodeError::Join {
                        via: via.clone(),
                        reason: e.to_string(),
                    })?;
                tracing::info!(id = cfg.id, %via, index, "joined as a learner; promote it with `cairn cluster promote {}`", cfg.id);
            }
        }
        tracing::info!(id = cfg.id, %addr, data_dir = %cfg.data_dir.display(), "member started");
        Ok(Node {
            id: cfg.id,
            cluster_id,
            raft,
            sm: sm_handle,
            addr,
            metrics_addr,
            sessions,
            sched,
            fatal,
            shutdown,
            server,
            runner,
            copy_runner,
            gate,
            advertiser,
            metrics,
        })
    }

    /// Stops serving and shuts Raft down.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Graceful shutdown waits for open streams; a hung chunk holding its
        // keepalive stream open must not hold the member up for ever.
        if tokio::time::timeout(std::time::Duration::from_secs(5), self.server)
            .await
            .is_err()
        {
            tracing::warn!("open streams did not end within 5 s; stopping anyway");
        }
        let _ = self.runner.await;
        let _ = self.copy_runner.await;
        let _ = self.gate.await;
        let _ = self.advertiser.await;
        if let Some(m) = self.metrics {
            let _ = m.await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Accepts connections on the member's one port: the TLS handshake (or a
/// look at the first byte) sorts them between the session wire and gRPC
/// (crate::transport::Listening::accept).
fn split_listener(
    listener: TcpListener,
    listening: Listening,
    limits: Limits,
    raft: Raft,
    sessions: Sessions,
    mut stop: watch::Receiver<bool>,
) -> impl futures::Stream<Item = std::io::Result<ServerIo>> {
    let (grpc, rx) = tokio::sync::mpsc::channel::<ServerIo>(64);
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut refused_at: Option<std::time::Instant> = None;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the
                    // connections already open, try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // A permit per open connection, held until it closes.
            let Ok(permit) = open.clone().try_acquire_owned() else {
                // Logged at most once a second: a flood must not flood the log.
                if refused_at.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                    refused_at = Some(std::time::Instant::now());
                    tracing::warn!(
                        max = limits.max_connections,
                        "refusing connections: --max-connections open"
                    );
                }
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let keepalives_per_sec = limits.max_keepalives_per_sec;
            let (grpc, listening, raft, sessions, stop) = (
                grpc.clone(),
                listening.clone(),
                raft.clone(),
                sessions.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                match listening.accept(stream).await {
                    Some(Accepted::Wire(io, peer)) => {
                        let limit = Bucket::new(keepalives_per_sec);
                        session_wire::serve(io, peer, limit, raft, sessions, stop).await;
                        drop(permit);
                    }
                    Some(Accepted::Grpc(io)) => {
                        let _ = grpc.send(io.holding(permit)).await;
                    }
                    None => {}
                }
            });
        }
    });
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|s| (Ok(s), rx)) },
    )
}

/// Turns Raft stopping on its own (a log or snapshot write or read failed:
/// a full disk, a damaged file) into the member's fatal verdict: the process
/// exits with the error, which names the file, instead of staying up with a
/// state it can no longer keep. A leader thereby steps down; its followers
/// elect another.
fn spawn_fatal_watch(
    raft: Raft,
    fatal: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        loop {
            if let Err(e) = &metrics.borrow_and_update().running_state {
                let on = match e {
                    openraft::error::Fatal::StorageError(_) => "on a storage error",
                    // Only a shutdown stops Raft this way: not a verdict.
                    openraft::error::Fatal::Stopped => return,
                    openraft::error::Fatal::Panicked => "on an internal error",
                };
                let why = format!(
                    "Raft stopped {on}, so this member stops (a leader steps down; the others go on): {e}"
                );
                tracing::error!("{why}");
                fatal.send_replace(Some(why));
                return;
            }
            let gone = tokio::select! {
                changed = metrics.changed() => changed.is_err(),
                _ = stop.wait_for(|s| *s) => return,
            };
            if gone {
                // Raft is gone without a last error in its metrics.
                if !*stop.borrow() {
                    fatal.send_replace(Some("Raft stopped unexpectedly".into()));
                }
                return;
            }
        }
    });
}

/// Entries are purged from the log only after a persisted snapshot covers
/// them (`LogStore::gate_purges`), so a state machine that starts before
/// the purge point has lost its snapshot file. Starting anyway would serve a state without those entries
/// (openraft would even build a fresh snapshot of it).
async fn check_snapshot_covers_purged(
    log: &mut LogStore,
    sm: &SmHandle,
    data_dir: &Path,
) -> Result<(), NodeError> {
    use openraft::storage::RaftLogStorage;
    let state = log.get_log_state().await.map_err(|e| {
        NodeError::Log(crate::store::log::OpenError::Read {
            path: data_dir.join("raft"),
            reason: e.to_string(),
        })
    })?;
    let applied = sm.read().last_applied;
    match state.last_purged_log_id {
        Some(purged) if applied.is_none_or(|a| a.index < purged.index) => {
            Err(NodeError::MissingSnapshot {
                path: crate::store::sm::snapshot_path(&data_dir.join("sm")),
                purged: purged.index,
                applied: applied.map_or("the empty state".into(), |a| format!("index {}", a.index)),
            })
        }
        _ => Ok(()),
    }
}

/// The console's routes: its client starts at this member's own gRPC
/// address (loopback when it listens on every address) and follows the
/// leader as the CLI does, under this member's identity. What it may show
/// and do: `console::access`.
fn console(
    cfg: &NodeConfig,
    raft: &Raft,
    addr: SocketAddr,
    transport: &Transport,
    proposer: Proposer,
    admin: SocketAddr,
    stop: watch::Receiver<bool>,
) -> Result<axum::Router, NodeError> {
    let mut own = addr;
    if own.ip().is_unspecified() {
        own.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let client = MetaClient::new(vec![own.to_string()], transport.clone())
        .map_err(|e| NodeError::Raft(format!("console client: {e}")))?;
    let timeline = crate::console::timeline::Timeline::default();
    // Runs until `stop`, like the admin server itself.
    drop(crate::console::timeline::spawn(
        raft.clone(),
        timeline.clone(),
        stop,
    ));
    Ok(crate::console::router(Console::new(
        cfg.id,
        raft.clone(),
        client,
        timeline,
        proposer,
        cfg.tls.is_some(),
        admin,
    )))
}

/// The listener and the client transport of a member: mutual TLS as its
/// identity, which must be a member certificate of its own id, or plain.
fn security(cfg: &NodeConfig) -> Result<(Listening, Transport), NodeError> {
    let Some(identity) = &cfg.tls else {
        return Ok((Listening::Insecure, Transport::Insecure));
    };
    let err = |reason: String| NodeError::Tls {
        dir: identity.dir.clone(),
        reason,
    };
    match identity.role().map_err(|e| err(e.to_string()))? {
        Role::Member(id) if id == cfg.id => {}
        other => {
            return Err(err(format!(
                "its certificate is for {other}, but this is member {}: issue one with `cairn cert issue --ca CA_DIR --role member:{} --out DIR`",
                cfg.id, cfg.id
            )))
        }
    }
    let listening = Listening::tls(identity).map_err(|e| err(e.to_string()))?;
    let transport = Transport::tls(identity).map_err(|e| err(e.to_string()))?;
    Ok((listening, transport))
}

/// Election and heartbeat settings the session leases stay safe with: a
/// leader must stop renewing sessions ([`QUORUM_FRESH_MS`] after it last
/// heard a quorum) well before any follower campaigns (MIN+MAX ms after
/// the last heartbeat, openraft's leader lease included), and a healthy
/// leader must hear its quorum several times within that window.
fn check_timing(cfg: &NodeConfig) -> Result<(), NodeError> {
    use crate::sessions::{FRESH_MARGIN_MS, QUORUM_FRESH_MS};
    let (hb, min, max) = (cfg.heartbeat_ms, cfg.election_min_ms, cfg.election_max_ms);
    if hb < 10 || hb.saturating_mul(3) > QUORUM_FRESH_MS {
        return Err(NodeError::Config(format!(
            "heartbeat {hb} ms: must be 10..={} ms (a leader refuses keepalives once it has not heard a quorum for {QUORUM_FRESH_MS} ms)",
            QUORUM_FRESH_MS / 3
        )));
    }
    if min <= hb || min >= max {
        return Err(NodeError::Config(format!(
            "election timeout {min}-{max} ms: MIN must exceed the heartbeat ({hb} ms) and be below MAX"
        )));
    }
    if min + max < QUORUM_FRESH_MS + FRESH_MARGIN_MS {
        return Err(NodeError::Config(format!(
            "election timeout {min}-{max} ms: followers would campaign {} ms after the last heartbeat, too close to the {QUORUM_FRESH_MS} ms after which a leader stops renewing sessions; MIN+MAX must be at least {} ms",
            min + max,
            QUORUM_FRESH_MS + FRESH_MARGIN_MS
        )));
    }
    Ok(())
}

/// Asks a member of a running cluster for its cluster id.
async fn join_cluster_id(via: &str, transport: &Transport) -> Result<u64, NodeError> {
    let err = |reason: String| NodeError::Join {
        via: via.to_string(),
        reason,
    };
    let client = MetaClient::new(vec![via.to_string()], transport.clone())
        .map_err(|e| err(e.to_string()))?;
    let status = client
        .status_of(via, true)
        .await
        .map_err(|e| err(e.to_string()))?;
    if status.cluster_id == 0 {
        return Err(err("that member reports no cluster id".into()));
    }
    Ok(status.cluster_id)
}
