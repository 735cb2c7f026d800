//! The one load generator both systems run under: closed-loop clients,
//! each doing one durable write at a time through [`Router::write`], which
//! is the same code for Cairn and etcd (leader routing, retry, timeouts);
//! only the single RPC underneath differs ([`System`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cairn_node::types::{self, pb};
use cairn_state::{Cmd, CmdError, Reply, UpdateExtent};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::etcdpb;

/// Both clients' retry policy (stated in the benches' output).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(250);
pub const DISCOVERY_POLL: Duration = Duration::from_millis(10);
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn retry_policy() -> String {
    format!(
        "both systems: writes go to the member that reports itself leader; on a transport error, a retryable status (e.g. UNAVAILABLE from a follower or a dead member, etcd's leader changed / no leader) or after {} ms without an answer, the client forgets that member, asks every member's status in parallel ({} ms timeout each: Cairn Meta.Status(stale), etcd Maintenance.Status) every {} ms until one reports itself leader, and resends there (no other backoff); a write the system refuses (a definite answer no resend would change, e.g. INVALID_ARGUMENT or FAILED_PRECONDITION, or a Cairn CAS refused with GenerationMismatch because an earlier attempt of it had already committed and its reply was lost) is not retried and counts as an error, and so does a write still unacknowledged after {} s",
        ATTEMPT_TIMEOUT.as_millis(),
        STATUS_TIMEOUT.as_millis(),
        DISCOVERY_POLL.as_millis(),
        OP_TIMEOUT.as_secs()
    )
}

/// What one member says about itself.
#[derive(Clone, Copy, Debug)]
pub struct MemberStatus {
    /// Cairn node id / etcd member id.
    pub id: u64,
    pub is_leader: bool,
    pub term: u64,
    /// Last log index (Cairn) / commit index (etcd).
    pub log_index: u64,
    pub applied_index: u64,
}

/// A write's outcome at the RPC level.
enum WriteErr {
    /// Try again (on whoever leads then).
    Retry(String),
    /// The system answered and refused this write (e.g. Cairn's CAS saw
    /// another generation); the client moves on to its next write.
    Refused(String),
}

/// An acknowledged write.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    /// When the client first sent it (latency is measured from here).
    pub issued: Instant,
    /// When the attempt that succeeded was sent.
    pub sent: Instant,
    pub acked: Instant,
    /// The member (index) that acknowledged it.
    pub member: usize,
    /// The term the responding member applied it in, when the system says
    /// (etcd's response header; Cairn's Propose answer has none).
    pub term: Option<u64>,
}

/// The system-specific part: one durable write and one status RPC.
pub enum System {
    Cairn(CairnWrites),
    Etcd(EtcdWrites),
}

/// Cairn: extent-location CAS updates, one extent per client, through the
/// Meta service's Propose (the same bincode `Vec<Cmd>` as
/// `MetaClient::propose`, without its own retry loop, so both systems
/// retry by [`Router`]'s one policy and the acknowledging member is known).
pub struct CairnWrites {
    pub first_pid: u64,
    /// The three chunks holding every bench extent.
    pub cids: Vec<u32>,
    /// Each client's extent generation as last seen.
    pub generations: Vec<AtomicU64>,
}

/// etcd: a Put of `value` (as many bytes as Cairn's command) on one key per
/// client.
pub struct EtcdWrites {
    pub keys: Vec<Vec<u8>>,
    pub value: Vec<u8>,
    /// Member ids, in member order (from each member's own Status).
    pub member_ids: Vec<u64>,
}

impl CairnWrites {
    /// The command client `i` sends at `generation`: drop the third
    /// replica from alive_loc on odd generations, restore it on even ones.
    pub fn command(&self, i: usize, generation: u64) -> Cmd {
        let alive = if generation % 2 == 1 {
            self.cids[..2].to_vec()
        } else {
            self.cids.clone()
        };
        Cmd::UpdateExtent(UpdateExtent {
            pid: self.first_pid + i as u64,
            expected_generation: generation,
            loc: None,
            alive_loc: Some(alive),
            lease_owner: None,
        })
    }

    /// Bytes of one write as Cairn's Propose carries it (`cmds`).
    pub fn encoded(&self, i: usize, generation: u64) -> Result<Vec<u8>> {
        Ok(types::encode(&vec![self.command(i, generation)])?)
    }

    async fn write(&self, ch: Channel, i: usize) -> Result<Option<u64>, WriteErr> {
        let Some(slot) = self.generations.get(i) else {
            return Err(WriteErr::Refused(format!("no extent for client {i}")));
        };
        let generation = slot.load(Ordering::Relaxed);
        let cmds = self
            .encoded(i, generation)
            .map_err(|e| WriteErr::Refused(e.to_string()))?;
        let mut c = pb::meta_client::MetaClient::new(ch);
        let resp = c
            .propose(pb::ProposeRequest { cmds })
            .await
            .map_err(status_err)?
            .into_inner();
        let results: Vec<Result<Reply, CmdError>> =
            types::decode(&resp.results).map_err(WriteErr::Refused)?;
        match results.into_iter().next() {
            Some(Ok(Reply::Generation(g))) if g > generation => {
                slot.store(g, Ordering::Relaxed);
                Ok(None)
            }
            Some(Ok(r)) => {
                // A no-op (loc unchanged): should not happen; resync.
                if let Reply::Generation(g) = r {
                    slot.store(g + 1, Ordering::Relaxed);
                }
                Err(WriteErr::Refused(format!("unexpected reply {r:?}")))
            }
            Some(Err(CmdError::GenerationMismatch { actual, .. })) => {
                // An earlier attempt of this write did commit (its answer
                // was lost): carry on from the generation it left.
                slot.store(actual, Ordering::Relaxed);
                Err(WriteErr::Refused("generation moved on".into()))
            }
            Some(Err(e)) => Err(WriteErr::Refused(e.to_string())),
            None => Err(WriteErr::Refused("empty reply".into())),
        }
    }

    async fn status(&self, ch: Channel) -> Result<MemberStatus, String> {
        let s = pb::meta_client::MetaClient::new(ch)
            .status(pb::StatusRequest { stale: true })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        Ok(MemberStatus {
            id: s.node_id,
            is_leader: s.node_id != 0 && s.leader_id == s.node_id,
            term: s.term,
            log_index: s.last_log_index,
            applied_index: s.applied_index,
        })
    }
}

impl EtcdWrites {
    async fn write(&self, ch: Channel, i: usize) -> Result<(u64, u64), WriteErr> {
        let Some(key) = self.keys.get(i) else {
            return Err(WriteErr::Refused(format!("no key for client {i}")));
        };
        let resp = etcdpb::kv_client::KvClient::new(ch)
            .put(etcdpb::PutRequest {
                key: key.clone(),
                value: self.value.clone(),
                ..Default::default()
            })
            .await
            .map_err(status_err)?
            .into_inner();
        let h = resp.header.unwrap_or_default();
        Ok((h.member_id, h.raft_term))
    }

    async fn status(&self, ch: Channel) -> Result<MemberStatus, String> {
        let s = etcdpb::maintenance_client::MaintenanceClient::new(ch)
            .status(etcdpb::StatusRequest {})
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let id = s.header.map(|h| h.member_id).unwrap_or(0);
        Ok(MemberStatus {
            id,
            is_leader: id != 0 && s.leader == id,
            term: s.raft_term,
            log_index: s.raft_index,
            applied_index: s.raft_applied_index,
        })
    }
}

/// Refusals that no retry will change; everything else (UNAVAILABLE from a
/// follower or a dead member, etcd's "leader changed" / "no leader" /
/// "too many requests", timeouts) is retried on whoever leads.
fn status_err(s: tonic::Status) -> WriteErr {
    match s.code() {
        Code::InvalidArgument
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::Unimplemented => WriteErr::Refused(format!("{:?}: {}", s.code(), s.message())),
        _ => WriteErr::Retry(format!("{:?}: {}", s.code(), s.message())),
    }
}

impl System {
    pub fn name(&self) -> &'static str {
        match self {
            System::Cairn(_) => "cairn",
            System::Etcd(_) => "etcd",
        }
    }
}

struct Member {
    channels: Vec<Channel>,
}

/// The client side of one system: a few HTTP/2 connections per member
/// (shared by every client task), the leader as last seen, and the one
/// retry policy.
pub struct Router {
    pub system: System,
    members: Vec<Member>,
    leader: Mutex<Option<usize>>,
    discovering: tokio::sync::Mutex<()>,
}

impl Router {
    /// `connections` HTTP/2 connections per member; client `i` uses
    /// connection `i % connections`.
    pub fn new(system: System, endpoints: &[String], connections: usize) -> Result<Router> {
        let members = endpoints
            .iter()
            .map(|addr| {
                let channels = (0..connections.max(1))
                    .map(|_| {
                        Ok(Endpoint::from_shared(format!("http://{addr}"))
                            .with_context(|| format!("bad endpoint {addr}"))?
                            .connect_timeout(Duration::from_millis(500))
                            .tcp_nodelay(true)
                            .connect_lazy())
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Member { channels })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Router {
            system,
            members,
            leader: Mutex::new(None),
            discovering: tokio::sync::Mutex::new(()),
        })
    }

    fn channel(&self, member: usize, client: usize) -> Channel {
        let ch = &self.members[member].channels;
        ch[client % ch.len()].clone()
    }

    /// One member's own view, within the status timeout.
    pub async fn status(&self, member: usize) -> Result<MemberStatus, String> {
        let ch = self.channel(member, 0);
        let fut = async {
            match &self.system {
                System::Cairn(c) => c.status(ch).await,
                System::Etcd(e) => e.status(ch).await,
            }
        };
        tokio::time::timeout(STATUS_TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| Err("status timed out".into()))
    }

    /// Every member's view, asked in parallel.
    pub async fn statuses(&self) -> Vec<Result<MemberStatus, String>> {
        futures::future::join_all((0..self.members.len()).map(|m| self.status(m))).await
    }

    /// The member that reports itself leader (highest term if several).
    async fn discover_once(&self) -> Option<(usize, MemberStatus)> {
        self.statuses()
            .await
            .into_iter()
            .enumerate()
            .filter_map(|(m, s)| s.ok().filter(|s| s.is_leader).map(|s| (m, s)))
            .max_by_key(|(_, s)| s.term)
    }

    /// The leader, asking the members (one client at a time; the others
    /// wait for its answer) until one says it leads or `until` passes.
    pub async fn leader(&self, until: Instant) -> Option<usize> {
        loop {
            if let Some(l) = *self.leader.lock().unwrap_or_else(|p| p.into_inner()) {
                return Some(l);
            }
            if Instant::now() >= until {
                return None;
            }
            let _turn = self.discovering.lock().await;
            if let Some(l) = *self.leader.lock().unwrap_or_else(|p| p.into_inner()) {
                return Some(l);
            }
            if let Some((m, _)) = self.discover_once().await {
                *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
                return Some(m);
            }
            tokio::time::sleep(DISCOVERY_POLL).await;
        }
    }

    /// The leader and its status, asked afresh (for the failover bench).
    pub async fn current_leader(&self, within: Duration) -> Option<(usize, MemberStatus)> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(found) = self.discover_once().await {
                return Some(found);
            }
            tokio::time::sleep(DISCOVERY_POLL).await;
        }
        None
    }

    fn forget(&self, member: usize) {
        let mut l = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if *l == Some(member) {
            *l = None;
        }
    }

    /// One durable write for client `i`, retried by the policy until it is
    /// acknowledged, refused, or `OP_TIMEOUT` passes.
    pub async fn write(&self, i: usize) -> Result<Ack, String> {
        let issued = Instant::now();
        let until = issued + OP_TIMEOUT;
        let mut last = String::from("no leader found");
        loop {
            let Some(m) = self.leader(until).await else {
                return Err(format!("gave up after {} s: {last}", OP_TIMEOUT.as_secs()));
            };
            let ch = self.channel(m, i);
            let sent = Instant::now();
            let attempt = async {
                match &self.system {
                    System::Cairn(c) => c.write(ch, i).await.map(|t| (m, t)),
                    System::Etcd(e) => e.write(ch, i).await.map(|(id, term)| {
                        // The header names the member that answered.
                        let by = e.member_ids.iter().position(|x| *x == id).unwrap_or(m);
                        (by, Some(term))
                    }),
                }
            };
            match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                Ok(Ok((member, term))) => {
                    return Ok(Ack {
                        issued,
                        sent,
                        acked: Instant::now(),
                        member,
                        term,
                    })
                }
                Ok(Err(WriteErr::Refused(e))) => return Err(e),
                Ok(Err(WriteErr::Retry(e))) => last = e,
                Err(_) => last = format!("no answer within {} ms", ATTEMPT_TIMEOUT.as_millis()),
            }
            self.forget(m);
        }
    }
}

/// Latencies and counts of one measured run.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub clients: usize,
    /// Acknowledged writes that completed inside the window.
    pub writes: u64,
    pub errors: u64,
    /// Errors by reason (digits masked), for the record.
    pub error_reasons: BTreeMap<String, u64>,
    pub secs: f64,
    /// Latencies in microseconds, sorted.
    pub lat_us: Vec<u32>,
    /// CPU the members used during the window, in cores (1.0 = one core).
    pub server_cpu_cores: f64,
    /// CPU this process used, in cores: the load generator and, for Cairn,
    /// the simulated chunks keeping their sessions alive (they run in it).
    pub client_cpu_cores: f64,
    /// Fsync and batching figures from the system's own metrics.
    pub profile: Option<super::profile::Profile>,
}

impl Measured {
    pub fn writes_per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.writes as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile, in ms.
    pub fn pct_ms(&self, p: f64) -> f64 {
        percentile(&self.lat_us, p) as f64 / 1000.0
    }
}

/// An error message with its numbers masked, so alike errors count together.
fn reason(e: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in e.chars().take(160) {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// Nearest-rank percentile of sorted values.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Runs `clients` closed-loop clients for `warmup + duration`; measures the
/// writes acknowledged during `duration`. `cpu` samples the members' CPU
/// seconds and `metrics` (each member's /metrics address) are
/// scraped at the window's edges.
pub async fn measure(
    router: &Arc<Router>,
    clients: usize,
    warmup: Duration,
    duration: Duration,
    cpu: impl Fn() -> f64,
    metrics: &[String],
) -> Result<Measured> {
    let start = Instant::now();
    let from = start + warmup;
    let end = from + duration;
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat_us: Vec<u32> = Vec::with_capacity(4096);
            let mut writes = 0u64;
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            while Instant::now() < end {
                let r = router.write(i).await;
                let now = Instant::now();
                if now < from || now > end {
                    continue;
                }
                match r {
                    Ok(ack) => {
                        writes += 1;
                        let us = ack.acked.duration_since(ack.issued).as_micros();
                        lat_us.push(us.min(u128::from(u32::MAX)) as u32);
                    }
                    Err(e) => *errors.entry(reason(&e)).or_default() += 1,
                }
            }
            (lat_us, writes, errors)
        }));
    }
    tokio::time::sleep_until(from.into()).await;
    let (cpu0, own0) = (cpu(), super::procs::own_cpu_seconds());
    let before = super::profile::snapshot(metrics).await;
    tokio::time::sleep_until(end.into()).await;
    let (cpu1, own1) = (cpu(), super::procs::own_cpu_seconds());
    let after = super::profile::snapshot(metrics).await;
    let mut m = Measured {
        clients,
        secs: duration.as_secs_f64(),
        server_cpu_cores: (cpu1 - cpu0) / duration.as_secs_f64().max(1e-9),
        client_cpu_cores: (own1 - own0) / duration.as_secs_f64().max(1e-9),
        profile: super::profile::compute(
            router.system.name(),
            &before,
            &after,
            duration.as_secs_f64().max(1e-9),
        ),
        ..Default::default()
    };
    for t in tasks {
        let (lat, w, e) = t.await.context("a load client task failed")?;
        m.lat_us.extend(lat);
        m.writes += w;
        for (r, n) in e {
            m.errors += n;
            *m.error_reasons.entry(r).or_default() += n;
        }
    }
    m.lat_us.sort_unstable();
    Ok(m)
}

/// A kill being watched: the first write acknowledged by a member other
/// than the killed one, sent after the kill (and, where the system says,
/// applied in a later term than the killed leader's).
struct Watch {
    killed_at: Instant,
    killed: usize,
    killed_term: u64,
    first_ack: Option<Ack>,
}

/// Constant write load for the failover bench, with kill watching.
pub struct Background {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shared: Arc<Shared>,
}

struct Shared {
    watch: Mutex<Option<Watch>>,
    acks: AtomicU64,
    errors: AtomicU64,
    reasons: Mutex<BTreeMap<String, u64>>,
}

impl Background {
    pub fn start(router: &Arc<Router>, clients: usize) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            watch: Mutex::new(None),
            acks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reasons: Mutex::new(BTreeMap::new()),
        });
        let tasks = (0..clients)
            .map(|i| {
                let (router, stop, shared) = (router.clone(), stop.clone(), shared.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match router.write(i).await {
                            Ok(ack) => {
                                shared.acks.fetch_add(1, Ordering::Relaxed);
                                let mut w = shared.watch.lock().unwrap_or_else(|p| p.into_inner());
                                if let Some(w) = w.as_mut() {
                                    let eligible = ack.sent >= w.killed_at
                                        && ack.member != w.killed
                                        && ack.term.is_none_or(|t| t > w.killed_term);
                                    let earlier = w.first_ack.is_none_or(|f| ack.acked < f.acked);
                                    if eligible && earlier {
                                        w.first_ack = Some(ack);
                                    }
                                }
                            }
                            Err(e) => {
                                shared.errors.fetch_add(1, Ordering::Relaxed);
                                *shared
                                    .reasons
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .entry(reason(&e))
                                    .or_default() += 1;
                            }
                        }
                    }
                })
            })
            .collect();
        Background {
            stop,
            tasks,
            shared,
        }
    }

    pub fn acks(&self) -> u64 {
        self.shared.acks.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    pub fn error_reasons(&self) -> BTreeMap<String, u64> {
        self.shared
            .reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts watching for the first post-kill acknowledgement; call right
    /// before the kill.
    pub fn watch_kill(&self, killed: usize, killed_term: u64) -> Instant {
        let killed_at = Instant::now();
        *self.shared.watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(Watch {
            killed_at,
            killed,
            killed_term,
            first_ack: None,
        });
        killed_at
    }

    /// The first eligible acknowledgement so far.
    pub fn first_ack(&self) -> Option<Ack> {
        self.shared
            .watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|w| w.first_ack)
    }

    pub fn unwatch(&self) {
        *self.shared.watch.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Waits until `n` more writes are acknowledged (the load flows).
    pub async fn wait_acks(&self, n: u64, within: Duration) -> bool {
        let target = self.acks() + n;
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.acks() >= target {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Stops the load: clients finish their write in progress (those
    /// still stuck after 3 s are aborted).
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        for t in self.tasks.drain(..) {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(until, t).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}
