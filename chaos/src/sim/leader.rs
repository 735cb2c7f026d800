//! The leader's session tracker and copy runner, as the real node runs them
//! (`cairn_node::sessions` and `cairn_node::copies`), on the simulator's
//! tasks and virtual clock, around the same pure code: `cairn_sched`'s
//! `SessionTracker`, `Scheduler` and `SchedCmd::adopted`,
//! `cairn_node::copies::{plan_round, Batch}`, `RunningCopy::executor` (a
//! round's decisions are the node's own
//! function), `cairn_node::upgrade::effective_lease_ms`.
//!
//! Differences from the node, all for determinism or because the sim has
//! no such thing:
//! - waiting to lead polls the metrics (every [`LEADER_POLL`]) instead of
//!   `metrics.changed()` (see `runtime::Signal` on tokio's watch);
//! - `ensure_linearizable()` is `get_read_log_id()` plus polling the applied
//!   index (as `client.rs` reads: `Raft::wait` selects unbiased);
//! - the copy runner's wake-up is a [`Signal`] (a `Notify` permit is the
//!   signal's version moving while a round runs);
//! - proposals go straight to `client_write` (no batcher), with a timeout
//!   (a deposed leader that does not know it may never answer);
//! - the runners stop while their node is paused (SIGSTOP), so the pause
//!   detection of `sessions.rs` runs;
//! - "now" is virtual: the tracker's monotonic ms are the run's elapsed
//!   virtual time, the scheduler's wall ms are `leader_time_ms()`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_node::copies::{kind_pb, plan_round, Batch, What};
use cairn_node::types::pb;
use cairn_node::upgrade::effective_lease_ms;
use cairn_sched::{
    keepalive_interval_ms, KeepAliveError, SchedConfig, Scheduler, SessionTracker, TrackerConfig,
};
use cairn_state::{
    ChunkSpaceInfo, Cid, Cmd, CmdError, FinishCopy, Reply, State, EXTENT_SIZE_BYTES,
};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;

use super::client::read_target;
use super::runtime::Signal;
use super::runtime::{elapsed_ns, lock, sleep, sleep_until, spawn, timeout, SimInstant};
use super::sm::SmHandle;
use super::types::{Request, SimRaft};
use super::world::{leader_time_ms, Incarnation, World};

/// `cairn_node::sessions::TICK`.
pub const TICK: Duration = cairn_node::sessions::TICK;
/// `sessions.rs` PAUSE_MS.
const PAUSE_MS: u64 = 1_000;
/// `sessions.rs` QUORUM_FRESH_MS.
const QUORUM_FRESH_MS: u64 = 500;
/// `cairn_node::copies::ROUND`.
pub const ROUND: Duration = cairn_node::copies::ROUND;
/// `copies.rs` MIN_GAP.
const MIN_GAP: Duration = Duration::from_millis(20);
/// `copies.rs` MAX_RESULTS.
const MAX_RESULTS: usize = 1 << 16;
/// The node's default space-report rate (`--space-every-ms`).
const SPACE_EVERY_MS: u64 = 5_000;
/// How long a proposal may take before it counts as failed.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long confirming leadership may take.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a runner that does not lead looks again.
pub const LEADER_POLL: Duration = Duration::from_millis(50);

/// The tracker's clock: monotonic virtual milliseconds.
pub fn now_ms() -> u64 {
    elapsed_ns() / 1_000_000
}

// ---- per-incarnation state -------------------------------------------------

struct Tracking {
    term: u64,
    since_ms: u64,
    tracker: SessionTracker,
}

/// `copies.rs` Board.
#[derive(Default)]
struct Board {
    term: u64,
    commands: BTreeMap<Cid, Vec<pb::ChunkCommand>>,
    results: Vec<(Cid, pb::CommandResult)>,
}

/// `copies.rs` Leading.
struct Leading {
    term: u64,
    scheduler: Scheduler,
    finished: u64,
    failed: u64,
}

/// What one incarnation runs while it leads: `Sessions` (tracker),
/// `CopyBoard` and `SchedHandle` of the node.
#[derive(Default)]
pub struct NodeSvc {
    tracking: Mutex<Option<Tracking>>,
    board: Mutex<Board>,
    wake: Signal,
    sched: Mutex<Option<Leading>>,
}

/// One incarnation of a node, as its runners and handlers see it.
#[derive(Clone)]
pub struct Node {
    pub world: Arc<World>,
    pub id: u64,
    pub number: u64,
    pub raft: SimRaft,
    pub sm: SmHandle,
    pub svc: Arc<NodeSvc>,
}

impl Node {
    pub fn new(world: Arc<World>, id: u64, inc: &Incarnation) -> Node {
        Node {
            world,
            id,
            number: inc.number,
            raft: inc.raft.clone(),
            sm: inc.sm.clone(),
            svc: inc.svc.clone(),
        }
    }

    fn alive(&self) -> bool {
        self.world.is_current(self.id, self.number)
    }

    /// `sessions.rs` leads(): leader of `term` with a fresh quorum ack.
    fn leads(&self, term: u64) -> bool {
        if !self.alive() {
            return false;
        }
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader
            && m.current_term == term
            && m.millis_since_quorum_ack
                .is_some_and(|ms| ms < QUORUM_FRESH_MS)
    }

    /// `Sessions::with_tracker`.
    fn with_tracker<R>(&self, f: impl FnOnce(&mut SessionTracker, u64) -> R) -> Option<R> {
        let mut inner = lock(&self.svc.tracking);
        let t = inner.as_mut()?;
        if !self.leads(t.term) {
            return None;
        }
        Some(f(&mut t.tracker, now_ms()))
    }

    fn tracking_since(&self) -> Option<u64> {
        lock(&self.svc.tracking).as_ref().map(|t| t.since_ms)
    }

    fn tracking_term(&self) -> Option<u64> {
        lock(&self.svc.tracking).as_ref().map(|t| t.term)
    }

    fn set_tracking(&self, t: Option<Tracking>) {
        *lock(&self.svc.tracking) = t;
    }

    fn trace(&self, what: std::fmt::Arguments<'_>) {
        self.world.trace(format_args!("n{} {what}", self.id));
    }

    /// Waits until this incarnation is leader; None once it is gone.
    async fn wait_leader(&self) -> Option<u64> {
        loop {
            if !self.alive() {
                return None;
            }
            self.world.wait_unpaused(self.id).await;
            let (leader, term) = {
                let m = self.raft.metrics();
                let m = m.borrow();
                (m.state == ServerState::Leader, m.current_term)
            };
            if leader {
                return Some(term);
            }
            sleep(LEADER_POLL).await;
        }
    }

    /// cairn-node's `linearizable::barrier`: the leader's log is applied.
    async fn confirm_leadership(&self) -> Result<(), String> {
        let read = match timeout(CONFIRM_TIMEOUT, self.raft.get_read_log_id()).await {
            Ok(Ok((read, _))) => read_target(&self.raft, read, self.world.reads),
            Ok(Err(_)) => return Err("not leader".into()),
            Err(_) => return Err("leadership not confirmed in time".into()),
        };
        loop {
            if !self.alive() {
                return Err("crashed".into());
            }
            let applied = lock(&self.sm).last_applied.map_or(0, |l| l.index);
            if applied >= read {
                return Ok(());
            }
            sleep(Duration::from_millis(1)).await;
        }
    }

    /// Proposes `cmds` in one entry (`Proposer::submit`).
    async fn propose(&self, cmds: Vec<Cmd>) -> Result<Vec<Result<Reply, CmdError>>, String> {
        let what = describe(&cmds);
        self.trace(format_args!("propose {what}"));
        let req = Request {
            leader_time_ms: leader_time_ms(),
            cmds,
        };
        let r = match timeout(PROPOSE_TIMEOUT, self.raft.client_write(req)).await {
            Ok(Ok(resp)) => Ok(resp.data.results),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err("not leader".to_string())
            }
            Ok(Err(RaftError::APIError(_))) => Err("api error".to_string()),
            Ok(Err(RaftError::Fatal(_))) => Err("stopped".to_string()),
            Err(_) => Err("timeout".to_string()),
        };
        match &r {
            Ok(results) => {
                let errs: Vec<String> = results
                    .iter()
                    .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
                    .collect();
                self.trace(format_args!("proposed {what}: errors {errs:?}"));
            }
            Err(e) => self.trace(format_args!("not proposed {what}: {e}")),
        }
        r
    }
}

/// A short, deterministic description of a proposal for the trace.
fn describe(cmds: &[Cmd]) -> String {
    let parts: Vec<String> = cmds
        .iter()
        .map(|c| match c {
            Cmd::ExpireSession { cid, session_id } => format!("expire({cid},{session_id})"),
            Cmd::OpenSession { cid, lease_ms } => format!("open({cid},{lease_ms})"),
            Cmd::SessionCheckpoint { silent } => format!("checkpoint({})", silent.len()),
            Cmd::ReportSpace { cid, .. } => format!("space({cid})"),
            Cmd::AdoptCopies { term } => format!("adopt({term})"),
            Cmd::IssueCopy(i) => format!(
                "issue(t{} pid {} {}->{} r{} o{})",
                i.term, i.pid, i.src, i.dst, i.replace, i.owner
            ),
            Cmd::FinishCopy(f) => format!(
                "finish(t{} copy {} {})",
                f.term,
                f.copy_id,
                if f.update.is_some() {
                    "done"
                } else {
                    "dropped"
                }
            ),
            other => format!("{other:?}"),
        })
        .collect();
    parts.join(" ")
}

// ---- the session tracker (crates/node/src/sessions.rs) ---------------------

/// `sessions.rs` tracker_config().
fn tracker_config(lease_ms: u64) -> TrackerConfig {
    TrackerConfig {
        space_every_ms: SPACE_EVERY_MS,
        ..TrackerConfig::for_lease(lease_ms)
    }
}

/// `sessions.rs` run(): tracks sessions while this incarnation leads.
pub async fn run_sessions(node: Node) {
    while let Some(term) = node.wait_leader().await {
        // `sessions.rs`: an earlier tracker's proposals are behind us first.
        let drained = match node.propose(Vec::new()).await {
            Ok(_) => node.confirm_leadership().await,
            Err(why) => Err(why),
        };
        if let Err(why) = drained {
            node.trace(format_args!("sessions: not leader after all: {why}"));
            sleep(TICK).await;
            continue;
        }
        let started = SimInstant::now();
        lead_sessions(&node, term).await;
        node.set_tracking(None);
        if SimInstant::now() == started {
            // Not surely leader at once (no quorum ack yet): the node's loop
            // would spin on real time passing; here time must pass.
            sleep(TICK).await;
        }
    }
    node.set_tracking(None);
}

/// `sessions.rs` lead(): one term of tracking.
async fn lead_sessions(node: &Node, term: u64) {
    let now = now_ms();
    let (tracker, mut applied) = {
        let d = lock(&node.sm);
        let lease_ms = effective_lease_ms(&d.state);
        let cfg = tracker_config(lease_ms);
        let mut tracker = SessionTracker::new(cfg, now, d.state.sessions());
        tracker.shorten_leases(now, lease_ms);
        for s in d.state.sessions() {
            if let Some(c) = d.state.chunk(s.cid) {
                tracker.seed_space(now, s.cid, c.space);
            }
        }
        (tracker, d.last_applied)
    };
    node.trace(format_args!(
        "tracks {} sessions in term {term}",
        tracker.len()
    ));
    node.set_tracking(Some(Tracking {
        term,
        since_ms: now,
        tracker,
    }));
    // One proposal at a time, in order (the node's submitter task).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<Cmd>, Option<u64>)>(64);
    let stopped = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (node, stopped) = (node.clone(), stopped.clone());
        spawn(async move {
            while let Some((cmds, checkpoint)) = rx.recv().await {
                if stopped.load(Ordering::SeqCst) {
                    return; // the node aborts its submitter
                }
                if !node.leads(term) {
                    continue;
                }
                if node.propose(cmds.clone()).await.is_err() {
                    node.with_tracker(|t, _| t.proposal_failed(&cmds));
                } else if let Some(seq) = checkpoint {
                    node.with_tracker(|t, _| t.checkpoint_applied(seq));
                }
            }
        })
    };
    // tokio's interval with MissedTickBehavior::Delay: first tick at once.
    let mut next = SimInstant::now();
    let mut last_tick_ms = now_ms();
    loop {
        sleep_until(next).await;
        node.world.wait_unpaused(node.id).await;
        let at = SimInstant::now();
        next = if at > next { at + TICK } else { next + TICK };
        if !node.leads(term) || node.tracking_term() != Some(term) {
            node.trace(format_args!("stops tracking sessions of term {term}"));
            break;
        }
        let ticked = {
            let d = lock(&node.sm);
            node.with_tracker(|t, now| {
                let gap = now.saturating_sub(last_tick_ms);
                if gap > PAUSE_MS.min(t.config().min_grace_ms / 2) {
                    return Err(gap);
                }
                last_tick_ms = now;
                if d.last_applied != applied {
                    t.sync(now, d.state.sessions());
                    let lease_ms = effective_lease_ms(&d.state);
                    let cfg = tracker_config(lease_ms);
                    if cfg != t.config() {
                        t.set_config(cfg);
                        t.shorten_leases(now, lease_ms);
                    }
                    applied = d.last_applied;
                }
                let cmds = t.tick(now);
                let checkpoint = cmds
                    .iter()
                    .any(|c| matches!(c, Cmd::SessionCheckpoint { .. }))
                    .then(|| t.checkpoints_proposed());
                Ok((cmds, checkpoint))
            })
        };
        match ticked {
            None => break,
            Some(Err(gap_ms)) => {
                node.trace(format_args!(
                    "session runner paused {gap_ms} ms: re-confirming leadership"
                ));
                break;
            }
            Some(Ok((cmds, _))) if cmds.is_empty() => {}
            Some(Ok(batch)) => {
                if let Err(e) = tx.try_send(batch) {
                    let (cmds, _) = match e {
                        tokio::sync::mpsc::error::TrySendError::Full(c)
                        | tokio::sync::mpsc::error::TrySendError::Closed(c) => c,
                    };
                    node.with_tracker(|t, _| t.proposal_failed(&cmds));
                }
            }
        }
    }
    stopped.store(true, Ordering::SeqCst);
    drop(tx);
    drop(submitter);
}

// ---- the chunk-facing handlers (chunk_service.rs) --------------------------

/// Why a member did not renew or register (the gRPC status, as the chunk
/// acts on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// `NotFound`: the session is over; register again.
    NotFound(String),
    /// Not the leader; follow the hint (`cairn-leader`), if any.
    NotLeader(Option<u64>),
    /// Leader, but not serving yet (or a proposal failed): retry.
    Unavailable(String),
    /// `Aborted`: renewed, not acknowledged yet; retry the same member.
    Renewing(String),
}

/// A keepalive reply (`KeepAliveResponse`).
#[derive(Clone, Debug)]
pub struct KeepAliveReply {
    pub lease_ms: u64,
    pub keepalive_ms: u64,
    pub term: u64,
    pub commands: Vec<pb::ChunkCommand>,
}

/// `chunk_service.rs` not_serving().
fn not_serving(node: &Node) -> ChunkError {
    let m = node.raft.metrics().borrow().clone();
    if m.current_leader == Some(m.id) {
        return ChunkError::Unavailable("the leader is starting its session tracker".into());
    }
    ChunkError::NotLeader(m.current_leader)
}

/// `chunk_service.rs` renew_all() for one keepalive.
pub fn keepalive(
    node: &Node,
    cid: Cid,
    session_id: u64,
    space: Option<ChunkSpaceInfo>,
    results: Vec<pb::CommandResult>,
) -> Result<KeepAliveReply, ChunkError> {
    let renewed = node.with_tracker(|t, now| {
        let lease_ms = t.keepalive(now, cid, session_id).map_err(|e| match e {
            KeepAliveError::Renewing { .. } => ChunkError::Renewing(e.to_string()),
            _ => ChunkError::NotFound(e.to_string()),
        })?;
        if let Some(space) = space {
            t.report_space(cid, session_id, space);
        }
        let (term, commands) = exchange(&node.svc, cid, results);
        Ok(KeepAliveReply {
            lease_ms,
            keepalive_ms: keepalive_interval_ms(lease_ms),
            term,
            commands,
        })
    });
    renewed.unwrap_or_else(|| Err(not_serving(node)))
}

/// `chunk_service.rs` register() for a chunk meta knows: one entry with its
/// space and a new session (closing a live one). Returns (session, lease).
pub async fn register(
    node: &Node,
    cid: Cid,
    space: ChunkSpaceInfo,
) -> Result<(u64, u64), ChunkError> {
    if node.tracking_since().is_none() {
        return Err(not_serving(node));
    }
    let lease_ms = effective_lease_ms(&lock(&node.sm).state);
    let cmds = vec![
        Cmd::ReportSpace { cid, space },
        Cmd::OpenSession { cid, lease_ms },
    ];
    let mut results = node.propose(cmds).await.map_err(ChunkError::Unavailable)?;
    let session_id = match results.pop() {
        Some(Ok(Reply::Session { session_id, .. })) => session_id,
        other => return Err(ChunkError::Unavailable(format!("{other:?}"))),
    };
    let opened = lock(&node.sm).state.session(cid).copied();
    if let Some(s) = opened.filter(|s| s.session_id == session_id) {
        node.with_tracker(|t, now| t.opened(now, &s));
    }
    Ok((session_id, lease_ms))
}

// ---- the copy runner (crates/node/src/copies.rs) ---------------------------

/// `CopyBoard::exchange`.
fn exchange(
    svc: &NodeSvc,
    cid: Cid,
    results: Vec<pb::CommandResult>,
) -> (u64, Vec<pb::ChunkCommand>) {
    let (out, wake) = {
        let mut b = lock(&svc.board);
        if b.term == 0 {
            return (0, vec![]);
        }
        let wake = !results.is_empty();
        if wake {
            let room = MAX_RESULTS.saturating_sub(b.results.len());
            b.results
                .extend(results.into_iter().take(room).map(|r| (cid, r)));
        }
        let commands = b.commands.get(&cid).cloned().unwrap_or_default();
        ((b.term, commands), wake)
    };
    if wake {
        svc.wake.notify();
    }
    out
}

/// `CopyBoard::publish`.
fn publish(svc: &NodeSvc, term: u64, state: &State) {
    let mut commands: BTreeMap<Cid, Vec<pb::ChunkCommand>> = BTreeMap::new();
    for c in state.copies() {
        commands
            .entry(c.executor())
            .or_default()
            .push(pb::ChunkCommand {
                command_id: c.copy_id,
                term: c.term,
                kind: kind_pb(c.kind) as i32,
                pid: c.pid,
                src: c.src,
                dst: c.dst,
                replace: c.replace,
                owner: c.owner,
                bytes: EXTENT_SIZE_BYTES,
            });
    }
    let mut b = lock(&svc.board);
    b.term = term;
    b.commands = commands;
}

/// `Runner::step_down`.
fn step_down(node: &Node) {
    {
        let mut b = lock(&node.svc.board);
        b.term = 0;
        b.commands.clear();
        b.results.clear();
    }
    lock(&node.sm).touched.stop();
}

/// `copies.rs` Runner::run().
pub async fn run_copies(node: Node) {
    while let Some(term) = node.wait_leader().await {
        match take_office(&node, term).await {
            Ok(()) => lead_copies(&node, term).await,
            Err(why) => {
                node.trace(format_args!(
                    "copies: not taking office in term {term}: {why}"
                ));
                sleep(ROUND).await;
            }
        }
        step_down(&node);
    }
    step_down(&node);
    *lock(&node.svc.sched) = None;
}

/// `Runner::take_office`.
async fn take_office(node: &Node, term: u64) -> Result<(), String> {
    node.confirm_leadership().await?;
    if !lock(&node.sm)
        .state
        .feature_active(cairn_capability::COPY_COMMANDS)
    {
        return Err(format!(
            "capability {} is not active yet",
            cairn_capability::COPY_COMMANDS
        ));
    }
    let to_adopt = lock(&node.sm).state.copies().any(|c| c.term != term);
    if to_adopt {
        let mut results = node.propose(vec![Cmd::AdoptCopies { term }]).await?;
        match results.pop() {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("no result for AdoptCopies".into()),
        }
    }
    let mut d = lock(&node.sm);
    let _ = d.touched.take();
    let resumed = {
        let mut sched = lock(&node.svc.sched);
        match sched.as_mut() {
            Some(l) if l.term == term => {
                l.scheduler.mark_all_dirty();
                true
            }
            _ => false,
        }
    };
    if resumed {
        publish(&node.svc, term, &d.state);
        drop(d);
        node.trace(format_args!("schedules again in term {term}"));
        return Ok(());
    }
    let cfg = SchedConfig::from_cluster(d.state.config()).unwrap_or_default();
    let mut scheduler = Scheduler::new(cfg).map_err(|e| e.to_string())?;
    let mut adopted = 0;
    for c in d.state.copies() {
        let generation = d.state.extent(c.pid).map_or(0, |e| e.extent.generation);
        scheduler.adopt(cairn_sched::SchedCmd::adopted(c, generation), c.issued_ms);
        adopted += 1;
    }
    publish(&node.svc, term, &d.state);
    drop(d);
    node.trace(format_args!(
        "schedules in term {term}, {adopted} copies adopted"
    ));
    *lock(&node.svc.sched) = Some(Leading {
        term,
        scheduler,
        finished: 0,
        failed: 0,
    });
    Ok(())
}

/// `Runner::lead`.
async fn lead_copies(node: &Node, term: u64) {
    let wake = node.svc.wake.clone();
    let mut seen = wake.version();
    loop {
        let _ = timeout(ROUND, wake.changed_since(seen)).await;
        sleep(MIN_GAP).await;
        node.world.wait_unpaused(node.id).await;
        // A report from now on wakes the next round (a Notify permit).
        seen = wake.version();
        if !node.leads(term) {
            node.trace(format_args!("stops scheduling in term {term}"));
            return;
        }
        let Some(batch) = round(node, term) else {
            return;
        };
        if !batch.cmds.is_empty() {
            propose_batch(node, term, batch).await;
        }
        let d = lock(&node.sm);
        publish(&node.svc, term, &d.state);
    }
}

/// `copies.rs` round(): what to propose this round (the node's own
/// `plan_round` on the sim's state, results and clock).
fn round(node: &Node, term: u64) -> Option<Batch> {
    let mut d = lock(&node.sm);
    let touched = d.touched.take();
    let results = std::mem::take(&mut lock(&node.svc.board).results);
    let now = leader_time_ms();
    let mut sched = lock(&node.svc.sched);
    let l = sched.as_mut()?;
    let (batch, ended) = plan_round(&mut l.scheduler, &d.state, touched, results, now, term);
    l.finished += ended.finished();
    l.failed += ended.failed();
    Some(batch)
}

/// `Runner::propose`.
async fn propose_batch(node: &Node, term: u64, batch: Batch) {
    let results = match node.propose(batch.cmds.clone()).await {
        Ok(results) => results,
        Err(_) => {
            if let Some(l) = lock(&node.svc.sched).as_mut() {
                for cmd in &batch.issued {
                    let _ = l.scheduler.fail(cmd.pid, cmd.id);
                }
            }
            return;
        }
    };
    let mut give_up = Vec::new();
    if let Some(l) = lock(&node.svc.sched).as_mut() {
        for (r, what) in results.iter().zip(&batch.what) {
            match (what, r) {
                (What::Issue(_), Ok(Reply::Copy(_))) => {}
                (What::Issue(sc), _) => {
                    let _ = l.scheduler.fail(sc.pid, sc.id);
                }
                (What::Finish(..) | What::End(_), Ok(_)) => {}
                (What::Finish(..), Err(CmdError::GenerationMismatch { .. })) => {}
                (_, Err(CmdError::CopyNotFound(_))) => {}
                (What::Finish(id, t), Err(_)) => {
                    give_up.push(Cmd::FinishCopy(FinishCopy {
                        term: *t,
                        copy_id: *id,
                        update: None,
                    }));
                }
                (What::End(_), Err(_)) => {}
            }
        }
    }
    if !give_up.is_empty() {
        let _ = node.propose(give_up).await;
    }
    let _ = term;
}
