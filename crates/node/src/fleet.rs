//! A fleet of simulated chunks in one process: each has its own session
//! loop (register, keep alive, follow the leader across failovers), space
//! figures, disk bandwidth and failslow flag. Used by `cairn fleet`,
//! `cairn dev`, the benchmarks and the end-to-end tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_state::{ChunkSpaceInfo, TopoKind};
use tokio::sync::{watch, Notify};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::chunk_service::space_to_pb;
use crate::client::{ClientError, MetaClient};
use crate::copy_exec::{ChunkCopies, FleetDisks, ACK_POLL_MS};
use crate::meta_service::LEADER_KEY;
use crate::session_wire::WireClient;
use crate::tls::{Auth, Ca, Role, TlsIdentity};
use crate::transport::Transport;
use crate::types::pb;

#[derive(Clone, Debug)]
pub struct FleetConfig {
    pub endpoints: Vec<String>,
    pub chunks: usize,
    /// Zones to spread the chunks over (0: leave them unracked).
    pub zones: usize,
    /// Racks per zone, one brick each.
    pub racks: usize,
    pub version: String,
    pub capabilities: Vec<String>,
    /// Data capacity of each chunk.
    pub capacity_bytes: u64,
    /// Simulated disk bandwidth of each chunk (for the schedulers' commands).
    pub bandwidth_mb_s: u64,
    /// Where the fleet remembers the cids it was given, so a restarted fleet
    /// comes back as the same chunks (None: new chunks every time).
    pub state_file: Option<PathBuf>,
    /// Prefix of the simulated hostnames.
    pub host_prefix: String,
    /// How the chunks send keepalives (switchable while running).
    pub keepalive_via: KeepAliveVia,
    /// Chunks sharing one session connection per member (0: the whole
    /// fleet shares one, as a host agent would for its chunks).
    pub chunks_per_conn: usize,
    /// Chunk-side limit of copies one chunk runs at once, per kind, as
    /// source and as destination (meta's slots should keep below it).
    pub chunk_slots: u32,
    /// Where to report every session opened, lost, stopped and started
    /// (the chaos checker's record of what the chunks saw).
    pub events: Option<tokio::sync::mpsc::UnboundedSender<SessionEvent>>,
    /// Mutual TLS (None: plain TCP, `--insecure`).
    pub tls: Option<Arc<FleetTls>>,
}

/// Mutual TLS for a simulated fleet, which plays the operator who deploys
/// the chunks as well as the chunks: a chunk's certificate names its cid
/// (docs/security.md), so a new chunk is first registered by the operator,
/// then issued its certificate, then opens its session with it.
pub struct FleetTls {
    /// The operator's identity (an admin certificate): the topology, and
    /// each new chunk's registration.
    pub admin: Transport,
    /// Issues each chunk the certificate of its cid.
    pub ca: Ca,
    /// The chunks' identities: `DIR/chunk-<cid>`, kept across restarts.
    pub dir: PathBuf,
}

impl std::fmt::Debug for FleetTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetTls")
            .field("admin", &self.admin)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FleetTls {
    /// Chunk `cid`'s transport, its identity issued first if it has none.
    /// A stored identity is reused only if it is still good: this CA's,
    /// for this cid, valid now; otherwise it is issued anew (into a
    /// temporary directory first: an interrupted issue leaves nothing).
    fn chunk(&self, cid: u32) -> Result<Transport, String> {
        let dir = self.dir.join(format!("chunk-{cid}"));
        let good = TlsIdentity::load(&dir).ok().filter(|id| {
            id.ca_pem == self.ca.cert_pem() && id.self_check() == Auth::Verified(Role::Chunk(cid))
        });
        if good.is_none() {
            let tmp = self.dir.join(format!(".chunk-{cid}.new"));
            let _ = std::fs::remove_dir_all(&tmp);
            let (from, until) = crate::tls::certs::validity(365);
            self.ca
                .issue_into(&Role::Chunk(cid), from, until, &tmp)
                .map_err(|e| e.to_string())?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir)
                .map_err(|e| format!("{} -> {}: {e}", tmp.display(), dir.display()))?;
        }
        Transport::load(&dir).map_err(|e| e.to_string())
    }
}

/// A chunk's session as the chunk saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEvent {
    /// Wall-clock ms (the fleet's clock).
    pub wall_ms: u64,
    pub cid: u32,
    pub kind: SessionEventKind,
    pub session_id: u64,
    /// Wall-clock ms of the session's last acknowledged keepalive (or of its
    /// registration), on `Lost`.
    pub last_ack_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEventKind {
    Opened,
    /// Meta answered that the session is over.
    Lost,
    Stopped,
    Started,
}

impl SessionEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEventKind::Opened => "opened",
            SessionEventKind::Lost => "lost",
            SessionEventKind::Stopped => "stopped",
            SessionEventKind::Started => "started",
        }
    }
}

fn wall_ms() -> u64 {
    crate::propose::now_ms()
}

/// How a simulated chunk sends its keepalives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAliveVia {
    /// The session wire (length-prefixed frames; crate::session_wire).
    Wire,
    /// One gRPC `KeepAliveStream` per chunk (the baseline).
    GrpcStream,
}

impl std::str::FromStr for KeepAliveVia {
    type Err = String;
    fn from_str(s: &str) -> Result<KeepAliveVia, String> {
        match s {
            "wire" => Ok(KeepAliveVia::Wire),
            "grpc" => Ok(KeepAliveVia::GrpcStream),
            _ => Err(format!("unknown transport {s:?}: expected wire or grpc")),
        }
    }
}

impl FleetConfig {
    pub fn new(endpoints: Vec<String>, chunks: usize) -> FleetConfig {
        FleetConfig {
            endpoints,
            chunks,
            zones: 1,
            racks: 2,
            version: cairn_capability::CURRENT_VERSION.to_string(),
            capabilities: cairn_capability::Advert::current()
                .capabilities
                .into_iter()
                .collect(),
            capacity_bytes: 4 << 40,
            bandwidth_mb_s: 200,
            state_file: None,
            host_prefix: "sim".into(),
            keepalive_via: KeepAliveVia::Wire,
            chunks_per_conn: 0,
            chunk_slots: 16,
            events: None,
            tls: None,
        }
    }
}

/// Most chunks one fleet simulates.
pub const MAX_CHUNKS: usize = 40_000;

#[derive(thiserror::Error, Debug)]
pub enum FleetError {
    #[error("{0} chunks: one fleet simulates at most {MAX_CHUNKS}")]
    TooMany(usize),
    #[error("cannot set up the topology: {0}")]
    Topology(String),
    #[error("fleet state file {path}: {reason}")]
    StateFile { path: PathBuf, reason: String },
    #[error("cannot serve the fleet control on {addr}: {reason}")]
    Control { addr: SocketAddr, reason: String },
}

/// One simulated chunk.
pub struct SimChunk {
    pub index: usize,
    pub hostname: String,
    pub data_addr: String,
    pub brick: Option<u64>,
    pub bandwidth_mb_s: u64,
    pub failslow: AtomicBool,
    cid: AtomicU32,
    session_id: AtomicU64,
    running: watch::Sender<bool>,
    registrations: AtomicU64,
    keepalives: AtomicU64,
    space: Mutex<ChunkSpaceInfo>,
    copies: Mutex<ChunkCopies>,
    /// The version and capabilities it registers with (an upgrade changes them).
    advert: Mutex<(String, Vec<String>)>,
}

impl SimChunk {
    pub fn cid(&self) -> u32 {
        self.cid.load(Ordering::Relaxed)
    }
    pub fn session_id(&self) -> u64 {
        self.session_id.load(Ordering::Relaxed)
    }
    pub fn keepalives(&self) -> u64 {
        self.keepalives.load(Ordering::Relaxed)
    }
    pub fn registrations(&self) -> u64 {
        self.registrations.load(Ordering::Relaxed)
    }
    pub fn running(&self) -> bool {
        *self.running.borrow()
    }
    /// Copies this chunk runs now.
    pub fn copies_running(&self) -> usize {
        self.copies().running()
    }
    fn copies(&self) -> std::sync::MutexGuard<'_, ChunkCopies> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Goes silent, as if crashed or hung.
    fn stop(&self) {
        self.running.send_replace(false);
    }

    /// Comes back as a restarted chunk: its old session is gone from its
    /// memory, so it registers again with its cid.
    fn start(&self) {
        self.session_id.store(0, Ordering::Relaxed);
        self.running.send_replace(true);
    }

    fn row(&self) -> pb::FleetChunk {
        pb::FleetChunk {
            cid: self.cid(),
            hostname: self.hostname.clone(),
            running: self.running(),
            session_id: self.session_id(),
            registrations: self.registrations.load(Ordering::Relaxed),
            keepalives: self.keepalives.load(Ordering::Relaxed),
            brick: self.brick.unwrap_or(0),
            copies_running: self.copies_running() as u64,
            peak_slots: vec![],
        }
    }
}

/// A running fleet. Dropping it stops every chunk loop.
pub struct Fleet {
    chunks: Vec<Arc<SimChunk>>,
    disks: Arc<FleetDisks>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    control: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    stop: Arc<Notify>,
    grpc_streams: Arc<AtomicBool>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.notify_waiters();
        for t in &self.tasks {
            t.abort();
        }
        if let Some((_, t)) = &self.control {
            t.abort();
        }
    }
}

impl Fleet {
    /// Builds the topology (zones > racks > one brick per rack, found or
    /// created by name), then starts every chunk's session loop.
    pub async fn start(cfg: FleetConfig) -> Result<Fleet, FleetError> {
        // Simulated data addresses are 127.0.0.1:20000+i.
        if cfg.chunks > MAX_CHUNKS {
            return Err(FleetError::TooMany(cfg.chunks));
        }
        let admin = cfg
            .tls
            .as_ref()
            .map_or(Transport::Insecure, |t| t.admin.clone());
        let client = Arc::new(
            MetaClient::new(cfg.endpoints.clone(), admin)
                .map_err(|e| FleetError::Topology(e.to_string()))?,
        );
        let bricks = if cfg.zones == 0 {
            vec![]
        } else {
            topology(&client, cfg.zones, cfg.racks.max(1)).await?
        };
        let known = load_state(&cfg)?;
        let chunks: Vec<Arc<SimChunk>> = (0..cfg.chunks)
            .map(|i| {
                let (running, _) = watch::channel(true);
                Arc::new(SimChunk {
                    index: i,
                    hostname: format!("{}-{i}", cfg.host_prefix),
                    data_addr: format!("127.0.0.1:{}", 20_000 + i),
                    brick: (!bricks.is_empty()).then(|| bricks[i % bricks.len()]),
                    bandwidth_mb_s: cfg.bandwidth_mb_s,
                    failslow: AtomicBool::new(false),
                    cid: AtomicU32::new(known.get(i).copied().unwrap_or(0)),
                    session_id: AtomicU64::new(0),
                    running,
                    registrations: AtomicU64::new(0),
                    keepalives: AtomicU64::new(0),
                    space: Mutex::new(ChunkSpaceInfo {
                        valid_data_space: cfg.capacity_bytes,
                        total_data_capacity: cfg.capacity_bytes,
                        ..Default::default()
                    }),
                    copies: Mutex::default(),
                    advert: Mutex::new((cfg.version.clone(), cfg.capabilities.clone())),
                })
            })
            .collect();
        let stop = Arc::new(Notify::new());
        let state = Arc::new(StateWriter {
            cfg: cfg.clone(),
            chunks: chunks.clone(),
            lock: Mutex::new(()),
        });
        let channels = Channels::default();
        let disks = Arc::new(FleetDisks::new(cfg.chunk_slots));
        let epoch = Instant::now();
        let grpc_streams = Arc::new(AtomicBool::new(
            cfg.keepalive_via == KeepAliveVia::GrpcStream,
        ));
        // A chunk certificate speaks for one cid: with TLS, every chunk has
        // its connections to itself.
        let per_conn = if cfg.tls.is_some() {
            1
        } else if cfg.chunks_per_conn == 0 {
            cfg.chunks.max(1)
        } else {
            cfg.chunks_per_conn
        };
        let wires: Vec<Arc<WireClient>> = (0..cfg.chunks.div_ceil(per_conn))
            .map(|_| Arc::new(WireClient::new(Transport::Insecure)))
            .collect();
        let tasks = chunks
            .iter()
            .map(|c| {
                let conn = Conn {
                    endpoints: cfg.endpoints.clone(),
                    next: 0,
                    leader: None,
                    transport: Transport::Insecure,
                    identity: 0,
                    channels: channels.clone(),
                    wire: wires[c.index / per_conn].clone(),
                    grpc_streams: grpc_streams.clone(),
                };
                let exec = Exec {
                    disks: disks.clone(),
                    epoch,
                    events: cfg.events.clone(),
                    tls: cfg.tls.clone(),
                    admin: client.clone(),
                };
                let (c, state) = (c.clone(), state.clone());
                tokio::spawn(async move { chunk_loop(c, conn, exec, state).await })
            })
            .collect();
        Ok(Fleet {
            chunks,
            disks,
            tasks,
            control: None,
            stop,
            grpc_streams,
        })
    }

    /// Switches how every chunk sends its next keepalives.
    pub fn set_keepalive_via(&self, t: KeepAliveVia) {
        self.grpc_streams
            .store(t == KeepAliveVia::GrpcStream, Ordering::Relaxed);
    }

    pub fn chunks(&self) -> &[Arc<SimChunk>] {
        &self.chunks
    }

    /// The fleet's disks: copy counters and per-chunk slot peaks.
    pub fn disks(&self) -> &FleetDisks {
        &self.disks
    }

    fn by_cid(&self, cid: u32) -> Option<&Arc<SimChunk>> {
        self.chunks.iter().find(|c| c.cid() == cid && cid != 0)
    }

    /// Stops chunk `cid` (it goes silent, as if it crashed). False: unknown.
    pub fn stop_chunk(&self, cid: u32) -> bool {
        self.by_cid(cid).map(|c| c.stop()).is_some()
    }

    /// Starts chunk `cid` again: it registers anew (a restart).
    pub fn start_chunk(&self, cid: u32) -> bool {
        self.by_cid(cid).map(|c| c.start()).is_some()
    }

    /// Restarts chunk `cid` as another version (an upgrade): it registers
    /// again with the same cid, advertising `version` and `capabilities`.
    pub fn restart_as(&self, cid: u32, version: &str, capabilities: &[String]) -> bool {
        self.by_cid(cid)
            .map(|c| {
                *c.advert.lock().unwrap_or_else(|p| p.into_inner()) =
                    (version.to_string(), capabilities.to_vec());
                c.stop();
                c.start();
            })
            .is_some()
    }

    /// Waits until every running chunk has a session.
    pub async fn wait_registered(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self
                .chunks
                .iter()
                .all(|c| !c.running() || c.session_id() != 0)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Serves the control service on `addr` (127.0.0.1 only); returns the
    /// bound address.
    pub async fn serve_control(
        self: &mut Fleet,
        addr: SocketAddr,
    ) -> Result<SocketAddr, FleetError> {
        let err = |reason: String| FleetError::Control { addr, reason };
        if !addr.ip().is_loopback() {
            return Err(err("the fleet control listens on loopback only".into()));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| err(e.to_string()))?;
        let bound = listener.local_addr().map_err(|e| err(e.to_string()))?;
        let svc = Control {
            chunks: self.chunks.clone(),
            disks: self.disks.clone(),
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(pb::fleet_server::FleetServer::new(svc))
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "fleet control stopped");
            }
        });
        self.control = Some((bound, task));
        Ok(bound)
    }
}

/// Finds or creates zones `z1..`, racks `z1-r1..` and one brick per rack
/// `z1-r1-b1`; returns the brick ids.
async fn topology(client: &MetaClient, zones: usize, racks: usize) -> Result<Vec<u64>, FleetError> {
    let terr = |e: ClientError| FleetError::Topology(e.to_string());
    let existing = client.read("topology", false).await.map_err(terr)?;
    let mut by_name: HashMap<(String, String), u64> = HashMap::new();
    for n in existing.as_array().into_iter().flatten() {
        if let (Some(kind), Some(name), Some(id)) =
            (n["kind"].as_str(), n["name"].as_str(), n["id"].as_u64())
        {
            by_name.insert((kind.to_string(), name.to_string()), id);
        }
    }
    let mut ensure = async |kind: TopoKind, name: String, parent: u64| -> Result<u64, FleetError> {
        let key = (format!("{kind:?}").to_lowercase(), name.clone());
        if let Some(id) = by_name.get(&key) {
            return Ok(*id);
        }
        let kind_pb = match kind {
            TopoKind::Zone => pb::TopoKind::Zone,
            TopoKind::Rack => pb::TopoKind::Rack,
            _ => pb::TopoKind::Brick,
        };
        let r = client
            .add_topo(pb::AddTopoRequest {
                kind: kind_pb as i32,
                parent,
                name,
            })
            .await
            .map_err(terr)?;
        by_name.insert(key, r.topo_id);
        Ok(r.topo_id)
    };
    let mut bricks = vec![];
    for z in 1..=zones {
        let zone = ensure(TopoKind::Zone, format!("z{z}"), cairn_state::ROOT_ID).await?;
        for r in 1..=racks {
            let rack = ensure(TopoKind::Rack, format!("z{z}-r{r}"), zone).await?;
            bricks.push(ensure(TopoKind::Brick, format!("z{z}-r{r}-b1"), rack).await?);
        }
    }
    Ok(bricks)
}

fn load_state(cfg: &FleetConfig) -> Result<Vec<u32>, FleetError> {
    let Some(path) = &cfg.state_file else {
        return Ok(vec![]);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .split_whitespace()
            .map(|w| {
                w.parse::<u32>().map_err(|_| FleetError::StateFile {
                    path: path.clone(),
                    reason: format!("{w:?} is not a cid"),
                })
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(FleetError::StateFile {
            path: path.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Records the fleet's cids after each new registration.
struct StateWriter {
    cfg: FleetConfig,
    chunks: Vec<Arc<SimChunk>>,
    /// Chunks register concurrently: one writer at a time.
    lock: Mutex<()>,
}

impl StateWriter {
    fn save(&self) {
        let Some(path) = &self.cfg.state_file else {
            return;
        };
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let text: Vec<String> = self.chunks.iter().map(|c| c.cid().to_string()).collect();
        let tmp = path.with_extension("tmp");
        let r = std::fs::write(&tmp, text.join("\n")).and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "cannot record the fleet's cids");
        }
    }
}

/// A chunk's connection to meta: follows the leader, rotates through the
/// endpoints when one is down.
struct Conn {
    endpoints: Vec<String>,
    next: usize,
    leader: Option<String>,
    /// Plain, or TLS as chunk `identity` (0: none yet).
    transport: Transport,
    identity: u32,
    /// Shared by the fleet without TLS: one HTTP/2 connection per member,
    /// multiplexed; with TLS, the chunk's own.
    channels: Channels,
    /// Shared by `chunks_per_conn` chunks: one session wire per member.
    wire: Arc<WireClient>,
    grpc_streams: Arc<AtomicBool>,
}

type Channels = Arc<Mutex<HashMap<String, Channel>>>;

impl Conn {
    fn client(&mut self) -> Option<(String, pb::chunk_client::ChunkClient<Channel>)> {
        let addr = match &self.leader {
            Some(l) => l.clone(),
            None => {
                self.next = (self.next + 1) % self.endpoints.len().max(1);
                self.endpoints.get(self.next)?.clone()
            }
        };
        let ch = {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            match channels.get(&addr) {
                Some(ch) => ch.clone(),
                None => {
                    // A TLS handshake costs another round trip.
                    let connect_ms = if self.transport.is_tls() { 1_000 } else { 300 };
                    let ch = self
                        .transport
                        .channel(&addr, |e| {
                            e.connect_timeout(Duration::from_millis(connect_ms))
                        })
                        .ok()?;
                    channels.insert(addr.clone(), ch.clone());
                    ch
                }
            }
        };
        Some((addr, pb::chunk_client::ChunkClient::new(ch)))
    }

    /// From now on, connect as chunk `cid` (its own connections).
    fn become_chunk(&mut self, cid: u32, transport: Transport) {
        self.wire = Arc::new(WireClient::new(transport.clone()));
        self.transport = transport;
        self.channels = Channels::default();
        self.identity = cid;
    }

    /// After a failed call: follow the leader the member named, or move on.
    fn failed(&mut self, addr: &str, status: &Status) {
        let hint = status
            .metadata()
            .get(LEADER_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .filter(|l| l != addr);
        self.leader = hint;
    }
}

/// What a chunk does with its session, forever: register when it has no
/// session, keep alive every interval, register again when told its session
/// is over, follow the leader, and go silent while stopped.
/// A chunk's copies and the fleet's shared disks and clock.
struct Exec {
    disks: Arc<FleetDisks>,
    epoch: Instant,
    events: Option<tokio::sync::mpsc::UnboundedSender<SessionEvent>>,
    tls: Option<Arc<FleetTls>>,
    /// The fleet's operator client (registers new chunks under TLS).
    admin: Arc<MetaClient>,
}

impl Exec {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn emit(&self, cid: u32, kind: SessionEventKind, session_id: u64, last_ack_ms: u64) {
        if let Some(tx) = &self.events {
            // The receiver gone means nobody records any more: nothing to do.
            let _ = tx.send(SessionEvent {
                wall_ms: wall_ms(),
                cid,
                kind,
                session_id,
                last_ack_ms,
            });
        }
    }
}

async fn chunk_loop(c: Arc<SimChunk>, mut conn: Conn, exec: Exec, state: Arc<StateWriter>) {
    let mut running = c.running.subscribe();
    let mut stream = KeepAliveStream::default();
    // The space figures the leader last acknowledged: a keepalive carries
    // them only when they changed (a delta, as a real chunk sends).
    let mut acked_space: Option<ChunkSpaceInfo> = None;
    let mut interval = Duration::from_millis(1_000);
    let retry = Duration::from_millis(100);
    // Wall time of the last keepalive (or registration) meta acknowledged.
    let mut last_ack_ms = 0;
    loop {
        if !*running.borrow_and_update() {
            // Stopped: silent until started, then back as a restarted chunk
            // (its copies died with it).
            exec.emit(
                c.cid(),
                SessionEventKind::Stopped,
                c.session_id(),
                last_ack_ms,
            );
            c.session_id.store(0, Ordering::Relaxed);
            c.copies().crash(&exec.disks);
            stream.close();
            if running.wait_for(|r| *r).await.is_err() {
                return;
            }
            exec.emit(c.cid(), SessionEventKind::Started, 0, last_ack_ms);
            continue;
        }
        if let Some(tls) = &exec.tls {
            let before = conn.identity;
            if let Err(e) = provision(&c, &mut conn, tls, &exec.admin, &state).await {
                tracing::warn!(host = %c.hostname, error = %e, "cannot set the chunk up; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if conn.identity != before {
                stream.close();
            }
        }
        let Some((addr, mut client)) = conn.client() else {
            tokio::time::sleep(retry).await;
            continue;
        };
        let space = *c.space.lock().unwrap_or_else(|p| p.into_inner());
        let session_id = c.session_id();
        if session_id == 0 {
            let (version, capabilities) =
                c.advert.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut req = Request::new(pb::RegisterRequest {
                cid: c.cid(),
                hostname: c.hostname.clone(),
                data_addr: c.data_addr.clone(),
                version,
                capabilities,
                space: Some(space_to_pb(&space)),
                brick: c.brick,
            });
            req.set_timeout(Duration::from_secs(10));
            match client.register(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let first = c.cid() == 0;
                    c.cid.store(r.cid, Ordering::Relaxed);
                    c.session_id.store(r.session_id, Ordering::Relaxed);
                    exec.disks.set_disk(
                        r.cid,
                        c.bandwidth_mb_s,
                        c.failslow.load(Ordering::Relaxed),
                    );
                    acked_space = Some(space);
                    c.registrations.fetch_add(1, Ordering::Relaxed);
                    interval = Duration::from_millis(r.keepalive_ms.max(50));
                    conn.leader = Some(addr);
                    last_ack_ms = wall_ms();
                    exec.emit(r.cid, SessionEventKind::Opened, r.session_id, last_ack_ms);
                    if first {
                        state.save();
                    }
                    tracing::debug!(cid = r.cid, session = r.session_id, "registered");
                }
                Err(s) => {
                    if s.code() == Code::NotFound || s.code() == Code::FailedPrecondition {
                        // Meta does not know this cid (any more): a new chunk.
                        // (Under TLS, `provision` finds the chunk again by
                        // hostname and data address unless it was removed.)
                        tracing::warn!(host = %c.hostname, error = %s.message(), "registering as a new chunk");
                        c.cid.store(0, Ordering::Relaxed);
                    }
                    conn.failed(&addr, &s);
                    tokio::time::sleep(retry).await;
                    continue;
                }
            }
        } else {
            let (results, progress) = c.copies().poll(exec.now_ms(), &exec.disks);
            let req = pb::KeepAliveRequest {
                cid: c.cid(),
                session_id,
                space: (acked_space != Some(space)).then(|| space_to_pb(&space)),
                results,
                progress,
            };
            // A keepalive that takes longer than an interval is as good as lost.
            let wait = interval.max(Duration::from_millis(500));
            let r = if conn.grpc_streams.load(Ordering::Relaxed) {
                stream.keepalive(&addr, &mut client, req, wait).await
            } else {
                stream.close();
                conn.wire.keepalive(&addr, req, wait).await
            };
            match r {
                Ok(r) => {
                    c.copies().on_reply(
                        exec.now_ms(),
                        r.term,
                        &r.commands,
                        &exec.disks,
                        c.bandwidth_mb_s,
                    );
                    c.keepalives.fetch_add(1, Ordering::Relaxed);
                    last_ack_ms = wall_ms();
                    acked_space = Some(space);
                    interval = Duration::from_millis(r.keepalive_ms.max(50));
                    conn.leader = Some(addr);
                }
                Err(s) if s.code() == Code::Aborted => {
                    // Renewed but not acknowledged yet (meta is replicating
                    // that this silent session is back): the same member,
                    // shortly; the lease is not extended until then.
                    tracing::debug!(cid = c.cid(), error = %s.message(), "keepalive renewing; again shortly");
                    tokio::time::sleep(retry).await;
                    continue;
                }
                Err(s) if s.code() == Code::NotFound => {
                    tracing::debug!(cid = c.cid(), error = %s.message(), "session over; registering again");
                    exec.emit(c.cid(), SessionEventKind::Lost, session_id, last_ack_ms);
                    c.session_id.store(0, Ordering::Relaxed);
                    continue;
                }
                Err(s) => {
                    conn.failed(&addr, &s);
                    tokio::time::sleep(retry).await;
                    continue;
                }
            }
        }
        // Sleep one interval, or less if stopped or restarted meanwhile, or
        // until a copy finishes (its result goes out at once).
        let mut sleep = interval;
        {
            let copies = c.copies();
            if let Some(at) = copies.next_finish_ms() {
                let until = Duration::from_millis(at.saturating_sub(exec.now_ms()) + 1);
                sleep = sleep.min(until);
            }
            if copies.awaiting_ack() {
                sleep = sleep.min(Duration::from_millis(ACK_POLL_MS));
            }
        }
        let _ = tokio::time::timeout(sleep, running.changed()).await;
    }
}

/// Under TLS, what an operator does before a chunk runs: register a new
/// chunk (its cid), then issue it the certificate of that cid.
async fn provision(
    c: &SimChunk,
    conn: &mut Conn,
    tls: &FleetTls,
    admin: &MetaClient,
    state: &StateWriter,
) -> Result<(), String> {
    if c.cid() == 0 {
        // A chunk registered before (an answer lost, a cid the fleet
        // forgot) is found by its hostname and data address, never
        // registered twice.
        if let Some(cid) = registered_as(admin, &c.hostname, &c.data_addr).await? {
            c.cid.store(cid, Ordering::Relaxed);
            state.save();
        }
    }
    if c.cid() == 0 {
        let (version, capabilities) = c.advert.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let r = admin
            .register_chunk(pb::RegisterChunkRequest {
                hostname: c.hostname.clone(),
                data_addr: c.data_addr.clone(),
                brick: c.brick,
                version,
                capabilities,
            })
            .await
            .map_err(|e| format!("registering the chunk: {e}"))?;
        c.cid.store(r.cid, Ordering::Relaxed);
        state.save();
    }
    if conn.identity != c.cid() {
        let transport = tls.chunk(c.cid())?;
        conn.become_chunk(c.cid(), transport);
    }
    Ok(())
}

/// The cid of the chunk registered with this hostname and data address
/// and not removed, if any.
async fn registered_as(
    admin: &MetaClient,
    hostname: &str,
    data_addr: &str,
) -> Result<Option<u32>, String> {
    let v = admin
        .read("chunks", false)
        .await
        .map_err(|e| format!("listing the chunks: {e}"))?;
    Ok(v["chunks"].as_array().into_iter().flatten().find_map(|c| {
        (c["hostname"] == hostname && c["data_addr"] == data_addr && c["state"] != "removed")
            .then(|| c["cid"].as_u64().and_then(|cid| u32::try_from(cid).ok()))
            .flatten()
    }))
}

/// A chunk's long-lived keepalive stream to the leader: opened on first
/// use, dropped on any error (the next keepalive opens a new one, wherever
/// the leader is then).
#[derive(Default)]
struct KeepAliveStream {
    /// The member the stream goes to.
    to: String,
    open: Option<(
        futures::channel::mpsc::Sender<pb::KeepAliveRequest>,
        tonic::Streaming<pb::KeepAliveResponse>,
    )>,
}

impl KeepAliveStream {
    fn close(&mut self) {
        self.open = None;
    }

    async fn keepalive(
        &mut self,
        addr: &str,
        client: &mut pb::chunk_client::ChunkClient<Channel>,
        req: pb::KeepAliveRequest,
        wait: Duration,
    ) -> Result<pb::KeepAliveResponse, Status> {
        if self.to != addr {
            self.close();
            self.to = addr.to_string();
        }
        let r = tokio::time::timeout(wait, self.exchange(client, req)).await;
        let r = r.unwrap_or_else(|_| Err(Status::deadline_exceeded("no keepalive reply in time")));
        if r.is_err() {
            self.close();
        }
        r
    }

    async fn exchange(
        &mut self,
        client: &mut pb::chunk_client::ChunkClient<Channel>,
        req: pb::KeepAliveRequest,
    ) -> Result<pb::KeepAliveResponse, Status> {
        use futures::SinkExt;
        if self.open.is_none() {
            let (tx, rx) = futures::channel::mpsc::channel(1);
            let replies = client.keep_alive_stream(rx).await?.into_inner();
            self.open = Some((tx, replies));
        }
        let Some((tx, replies)) = self.open.as_mut() else {
            return Err(Status::internal("keepalive stream not open"));
        };
        tx.send(req)
            .await
            .map_err(|_| Status::unavailable("keepalive stream closed"))?;
        replies
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("keepalive stream ended"))
    }
}

struct Control {
    chunks: Vec<Arc<SimChunk>>,
    disks: Arc<FleetDisks>,
}

impl Control {
    fn find(&self, cid: u32) -> Result<&Arc<SimChunk>, Status> {
        self.chunks
            .iter()
            .find(|c| c.cid() == cid && cid != 0)
            .ok_or_else(|| Status::not_found(format!("no chunk with cid {cid} in this fleet")))
    }
}

#[tonic::async_trait]
impl pb::fleet_server::Fleet for Control {
    async fn list(
        &self,
        _: Request<pb::FleetListRequest>,
    ) -> Result<Response<pb::FleetListResponse>, Status> {
        let n = self.disks.counters();
        Ok(Response::new(pb::FleetListResponse {
            chunks: self
                .chunks
                .iter()
                .map(|c| pb::FleetChunk {
                    peak_slots: self.disks.peak(c.cid()).to_vec(),
                    ..c.row()
                })
                .collect(),
            copies_done: n.done,
            copies_duplicated: n.duplicates,
            copies_refused_slots: n.refused_slots,
            copies_refused_stale: n.refused_stale,
        }))
    }

    async fn stop(
        &self,
        r: Request<pb::FleetChunkRequest>,
    ) -> Result<Response<pb::FleetChunkResponse>, Status> {
        let c = self.find(r.get_ref().cid)?;
        c.stop();
        Ok(Response::new(pb::FleetChunkResponse {
            chunk: Some(c.row()),
        }))
    }

    async fn start(
        &self,
        r: Request<pb::FleetChunkRequest>,
    ) -> Result<Response<pb::FleetChunkResponse>, Status> {
        let c = self.find(r.get_ref().cid)?;
        c.start();
        Ok(Response::new(pb::FleetChunkResponse {
            chunk: Some(c.row()),
        }))
    }
}
