//! The leader's copy runner: glue around `cairn_sched::Scheduler`.
//!
//! While this member leads (and only then) it:
//! 1. proposes `AdoptCopies{term}` (when copies run), which re-stamps every
//!    copy still running in the replicated state with this term, then rebuilds its scheduler
//!    from the state: the running copies are adopted (their slots count,
//!    nothing is issued twice, nothing is forgotten);
//! 2. every round, feeds the scheduler what applied commands changed, turns
//!    the chunks' reports into `FinishCopy` (a compare-and-set on the
//!    extent's generation), drops copies whose chunks lost their session,
//!    runs the recover and migrate rounds and proposes `IssueCopy` for what
//!    they return, all in one Raft entry;
//! 3. publishes the running copies on the [`CopyBoard`], from which every
//!    keepalive reply carries the commands of the chunk that runs them.
//!
//! The state is the authority: a copy the state no longer holds is over for
//! the scheduler too (finished if the extent shows its result, failed
//! otherwise), and a copy the scheduler does not know is adopted. On losing
//! leadership everything here is dropped; what a deposed leader proposed is
//! fenced by Raft, by the term every copy carries and by the generation
//! every extent update compares (docs/scheduling.md, "Fencing").

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_sched::{SchedCmd, SchedConfig, Scheduler};
use cairn_state::{
    Cid, Cmd, CmdError, CopyId, CopyKind, Extent, FinishCopy, Pid, Reply, RunningCopy, State,
    EXTENT_SIZE_BYTES,
};
use openraft::ServerState;
use tokio::sync::{watch, Notify};

use crate::propose::{now_ms, Proposer};
use crate::sessions::leads;
use crate::store::sm::{SmHandle, Touched};
use crate::types::{pb, Raft};

/// How often the runner plans when nothing wakes it earlier.
pub const ROUND: Duration = Duration::from_millis(250);
/// Least time between two rounds: reports arriving together share one.
const MIN_GAP: Duration = Duration::from_millis(20);
/// Most reports kept between two rounds (a chunk reports again anyway).
const MAX_RESULTS: usize = 1 << 16;

pub fn kind_pb(k: CopyKind) -> pb::CopyKind {
    match k {
        CopyKind::Recover => pb::CopyKind::Recover,
        CopyKind::Migrate => pb::CopyKind::Migrate,
    }
}

/// What the keepalive path and the runner share: the commands each chunk
/// runs, and the reports chunks sent back since the last round.
#[derive(Clone, Default)]
pub struct CopyBoard(Arc<Mutex<Board>>);

#[derive(Default)]
struct Board {
    /// The term of the runner that published; 0 = none.
    term: u64,
    commands: HashMap<Cid, Vec<pb::ChunkCommand>>,
    results: Vec<(Cid, pb::CommandResult)>,
    progress: HashMap<CopyId, pb::CommandProgress>,
    wake: Arc<Notify>,
}

impl CopyBoard {
    fn lock(&self) -> MutexGuard<'_, Board> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One renewed keepalive of `cid`: takes its reports, returns the term
    /// and the commands it runs.
    pub fn exchange(
        &self,
        cid: Cid,
        results: Vec<pb::CommandResult>,
        progress: Vec<pb::CommandProgress>,
    ) -> (u64, Vec<pb::ChunkCommand>) {
        let mut b = self.lock();
        if b.term == 0 {
            return (0, vec![]);
        }
        if !results.is_empty() {
            let room = MAX_RESULTS.saturating_sub(b.results.len());
            b.results
                .extend(results.into_iter().take(room).map(|r| (cid, r)));
            b.wake.notify_one();
        }
        let commands = b.commands.get(&cid).cloned().unwrap_or_default();
        // Progress only of the copies this chunk runs.
        for p in progress {
            if commands.iter().any(|c| c.command_id == p.command_id) {
                b.progress.insert(p.command_id, p);
            }
        }
        (b.term, commands)
    }

    /// The last progress report of a copy.
    pub fn progress(&self, copy_id: CopyId) -> Option<pb::CommandProgress> {
        self.lock().progress.get(&copy_id).copied()
    }

    fn wake(&self) -> Arc<Notify> {
        self.lock().wake.clone()
    }

    /// Publishes the running copies of `state` under `term`.
    fn publish(&self, term: u64, state: &State) {
        let mut commands: HashMap<Cid, Vec<pb::ChunkCommand>> = HashMap::new();
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
        let mut b = self.lock();
        b.term = term;
        b.commands = commands;
        b.progress.retain(|id, _| state.copy(*id).is_some());
    }

    fn take_results(&self) -> Vec<(Cid, pb::CommandResult)> {
        std::mem::take(&mut self.lock().results)
    }

    fn clear(&self) {
        let mut b = self.lock();
        b.term = 0;
        b.commands.clear();
        b.results.clear();
        b.progress.clear();
    }
}

/// The scheduler of this member while it leads, for the Meta service's
/// status, explain and manual commands.
#[derive(Clone, Default)]
pub struct SchedHandle(Arc<Mutex<Option<Leading>>>);

pub struct Leading {
    pub term: u64,
    pub scheduler: Scheduler,
    /// Copies recorded as finished / failed since this leader took office.
    pub finished: u64,
    pub failed: u64,
    /// The last copies that ended, newest last (at most [`RECENT_KEPT`]).
    pub recent: VecDeque<EndedCopy>,
    wake: Arc<Notify>,
}

/// Ended copies a leader keeps for `sched status` and the console.
pub const RECENT_KEPT: usize = 20;

/// A copy the state showed over: finished (its result recorded) or failed.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedCopy {
    pub cmd: SchedCmd,
    pub ok: bool,
    pub issued_ms: u64,
    pub ended_ms: u64,
}

impl Leading {
    /// Asks the runner for a round now (an operator's command waits for none).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

impl SchedHandle {
    /// Runs `f` on the scheduler if this member runs one.
    pub fn with<R>(&self, f: impl FnOnce(&mut Leading) -> R) -> Option<R> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.as_mut().map(f)
    }

    fn set(&self, l: Option<Leading>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = l;
    }
}

fn same_copy(r: &SchedCmd, c: &RunningCopy) -> bool {
    r.pid == c.pid && r.src == c.src && r.dst == c.dst && r.replace.unwrap_or(0) == c.replace
}

/// Did the extent take the copy's result (dst alive, `replace` gone)?
fn took_result(cmd: &SchedCmd, ext: Option<&Extent>) -> bool {
    ext.is_some_and(|e| e.loc.is_alive(cmd.dst) && cmd.replace.is_none_or(|r| !e.loc.contains(r)))
}

/// Starts the runner; it stops when `stop` turns true.
pub fn spawn_runner(
    raft: Raft,
    sm: SmHandle,
    proposer: Proposer,
    board: CopyBoard,
    handle: SchedHandle,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let r = Runner {
            raft,
            sm,
            proposer,
            board,
            handle,
        };
        tokio::select! {
            _ = r.run() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        r.forget();
    })
}

struct Runner {
    raft: Raft,
    sm: SmHandle,
    proposer: Proposer,
    board: CopyBoard,
    handle: SchedHandle,
}

/// Why a copy is dropped without a result.
enum Ending {
    Failed(String),
    TimedOut,
    LostSession(Cid),
}

impl Runner {
    /// Stops serving commands. The scheduler is kept (its operator commands,
    /// pins and counters) in case this member takes office again in the
    /// same term, as after a stall that made it unsure it still leads; a
    /// new term rebuilds from the state.
    fn step_down(&self) {
        self.board.clear();
        self.sm
            .read()
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop();
    }

    fn forget(&self) {
        self.step_down();
        self.handle.set(None);
    }

    async fn run(&self) {
        let mut metrics = self.raft.metrics();
        loop {
            let term = loop {
                let (leader, term) = {
                    let m = metrics.borrow_and_update();
                    (m.state == ServerState::Leader, m.current_term)
                };
                if leader {
                    break term;
                }
                if metrics.changed().await.is_err() {
                    return; // Raft shut down
                }
            };
            match self.take_office(term).await {
                Ok(()) => {
                    self.lead(term).await;
                }
                Err(why) => {
                    tracing::debug!(term, %why, "copy runner: not taking office (yet)");
                    tokio::time::sleep(ROUND).await;
                }
            }
            self.step_down();
        }
    }

    /// Re-stamps the running copies with `term` and rebuilds the scheduler
    /// from the state they are in.
    async fn take_office(&self, term: u64) -> Result<(), String> {
        crate::linearizable::barrier(&self.raft)
            .await
            .map_err(|e| e.to_string())?;
        // Copies are new kinds of log entries: written only once every
        // member decodes them (docs/upgrades.md).
        if !self
            .sm
            .read()
            .state
            .feature_active(cairn_capability::COPY_COMMANDS)
        {
            let mut inputs = self.sm.read().upgrade_inputs.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(5), inputs.changed()).await;
            return Err(format!(
                "capability {} is not active yet",
                cairn_capability::COPY_COMMANDS
            ));
        }
        // Nothing to adopt, nothing to write: a leader change alone leaves
        // the state as it was (the first IssueCopy raises copy_term anyway).
        // Everything of earlier terms is applied by now (linearizable above),
        // so no older copy can appear after this check.
        let to_adopt = self.sm.read().state.copies().any(|c| c.term != term);
        if to_adopt {
            let (mut results, _) = self
                .proposer
                .submit(vec![Cmd::AdoptCopies { term }])
                .await
                .map_err(|s| s.message().to_string())?;
            match results.pop() {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("no result for AdoptCopies".into()),
            }
        }
        let d = self.sm.read();
        // Listening starts now; what happened before is in the full scan a
        // new (or resumed) scheduler starts with.
        let _ = d.touched.lock().unwrap_or_else(|p| p.into_inner()).take();
        let resumed = self.handle.with(|l| {
            if l.term != term {
                return false;
            }
            // Same term again: keep the queues, operator commands and pins;
            // the next round reconciles the running copies with the state.
            l.scheduler.mark_all_dirty();
            true
        });
        if resumed == Some(true) {
            self.board.publish(term, &d.state);
            tracing::info!(term, "leader again in the same term: scheduling resumed");
            return Ok(());
        }
        let cfg = SchedConfig::from_cluster(d.state.config()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "scheduler settings invalid; using defaults");
            SchedConfig::default()
        });
        let mut scheduler = Scheduler::new(cfg).map_err(|e| e.to_string())?;
        let mut adopted = 0;
        for c in d.state.copies() {
            let generation = d.state.extent(c.pid).map_or(0, |e| e.extent.generation);
            scheduler.adopt(SchedCmd::adopted(c, generation), c.issued_ms);
            adopted += 1;
        }
        self.board.publish(term, &d.state);
        tracing::info!(
            term,
            adopted,
            "leader: scheduling recover and migrate (running copies adopted)"
        );
        self.handle.set(Some(Leading {
            term,
            scheduler,
            finished: 0,
            failed: 0,
            recent: VecDeque::new(),
            wake: self.board.wake(),
        }));
        Ok(())
    }

    async fn lead(&self, term: u64) {
        let wake = self.board.wake();
        loop {
            let _ = tokio::time::timeout(ROUND, wake.notified()).await;
            // Reports that arrive together are handled in one round.
            tokio::time::sleep(MIN_GAP).await;
            if !leads(&self.raft, term) {
                tracing::info!(term, "not (or no longer surely) leader: stopped scheduling");
                return;
            }
            // A full scan takes ~100 ms at 1M extents: off the async workers
            // that serve Raft and keepalives.
            let (sm, board, handle) = (self.sm.clone(), self.board.clone(), self.handle.clone());
            let planned =
                tokio::task::spawn_blocking(move || round(&sm, &board, &handle, term)).await;
            let Ok(Some(batch)) = planned else {
                return;
            };
            if !batch.cmds.is_empty() {
                self.propose(term, batch).await;
            }
            self.board.publish(term, &self.sm.read().state);
        }
    }
}

/// One round under the state's read lock: returns what to propose.
fn round(sm: &SmHandle, board: &CopyBoard, handle: &SchedHandle, term: u64) -> Option<Batch> {
    let d = sm.read();
    let touched = d.touched.lock().unwrap_or_else(|p| p.into_inner()).take();
    let results = board.take_results();
    let now = now_ms();
    handle.with(|l| {
        let (batch, ended) = plan_round(&mut l.scheduler, &d.state, touched, results, now, term);
        l.finished += ended.finished();
        l.failed += ended.failed();
        for e in ended.copies {
            crate::metrics::copy_ended(e.cmd.kind, e.ok);
            l.recent.push_back(e);
            if l.recent.len() > RECENT_KEPT {
                l.recent.pop_front();
            }
        }
        batch
    })
}

/// Copies the state showed over since the last round, finished or failed.
#[derive(Debug, Default)]
pub struct Ended {
    pub copies: Vec<EndedCopy>,
}

impl Ended {
    pub fn finished(&self) -> u64 {
        self.copies.iter().filter(|e| e.ok).count() as u64
    }

    pub fn failed(&self) -> u64 {
        self.copies.iter().filter(|e| !e.ok).count() as u64
    }
}

/// One round's decisions on the state as applied, pure (the simulator runs
/// it too): settle the scheduler with what the state recorded, turn the
/// chunks' reports into ends, drop copies whose chunks are gone, plan
/// recover then migrate. Returns the batch to propose and the copies the
/// state showed finished / failed since the last round.
pub fn plan_round(
    s: &mut Scheduler,
    state: &State,
    touched: Touched,
    results: Vec<(Cid, pb::CommandResult)>,
    now: u64,
    term: u64,
) -> (Batch, Ended) {
    if touched.all {
        s.mark_all_dirty();
        if let Ok(cfg) = SchedConfig::from_cluster(state.config()) {
            let cfg = SchedConfig {
                slot_policy: s.config().slot_policy,
                ..cfg
            };
            if &cfg != s.config() {
                if let Err(e) = s.set_config(cfg) {
                    tracing::warn!(error = %e, "scheduler settings not applied");
                }
            }
        }
    } else {
        for pid in &touched.pids {
            s.mark_dirty(*pid);
        }
    }
    if touched.unpark {
        s.touch(cairn_sched::Touch::Unpark);
    }
    // The running copies by extent, once per round (State::copy_of scans).
    let by_pid: HashMap<Pid, &RunningCopy> = state.copies().map(|c| (c.pid, c)).collect();
    let ended = reconcile(s, state, &by_pid, now);
    let mut batch = Batch::default();
    let mut ending: BTreeSet<CopyId> = BTreeSet::new();
    // Reports of the chunks that ran copies.
    for (cid, r) in results {
        let Some(c) = state.copy(r.command_id) else {
            continue; // recorded already
        };
        if c.executor() != cid || r.term != c.term || !ending.insert(c.copy_id) {
            continue; // not its copy, or before it saw the adoption
        }
        if r.ok {
            batch.finish(c, state.extent(c.pid).map(|e| e.extent));
        } else {
            batch.drop(c, Ending::Failed(r.error));
        }
    }
    // Copies whose chunks are gone: no report will come.
    for c in state.copies() {
        if ending.contains(&c.copy_id) {
            continue;
        }
        let gone = [c.src, c.dst, c.executor()]
            .into_iter()
            .find(|&cid| !state.has_session(cid));
        if let Some(cid) = gone {
            ending.insert(c.copy_id);
            batch.drop(c, Ending::LostSession(cid));
        }
    }
    let mut rounds = [s.plan_recover(state, now), s.plan_migrate(state, now)];
    for round in &mut rounds {
        for cmd in &round.timed_out {
            if let Some(c) = by_pid.get(&cmd.pid) {
                if same_copy(cmd, c) && ending.insert(c.copy_id) {
                    batch.drop(c, Ending::TimedOut);
                }
            }
        }
        for cmd in &round.issued {
            batch.issue(term, cmd);
        }
    }
    (batch, ended)
}

impl Runner {
    /// Proposes a round's commands in one entry and settles the scheduler
    /// with their results.
    async fn propose(&self, term: u64, batch: Batch) {
        let proposed = self.proposer.submit(batch.cmds.clone()).await;
        let results = match proposed {
            Ok((results, _)) => results,
            Err(status) => {
                tracing::info!(term, error = %status.message(), "scheduler commands not proposed");
                // The issued ones are not running: free their slots.
                self.handle.with(|l| {
                    for cmd in &batch.issued {
                        let _ = l.scheduler.fail(cmd.pid, cmd.id);
                    }
                });
                return;
            }
        };
        let mut give_up = Vec::new();
        self.handle.with(|l| {
            for ((cmd, r), what) in batch.cmds.iter().zip(&results).zip(&batch.what) {
                match (what, r) {
                    (What::Issue(sc), Ok(Reply::Copy(id))) => {
                        tracing::info!(copy_id = id, cmd = %sc, "copy issued");
                    }
                    (What::Issue(sc), r) => {
                        tracing::info!(cmd = %sc, result = ?r, "copy not issued");
                        let _ = l.scheduler.fail(sc.pid, sc.id);
                    }
                    (What::Finish(..) | What::End(_), Ok(_)) => {}
                    // Another write moved the extent on: the chunk reports
                    // again and the result is recomputed on the new view.
                    (What::Finish(..), Err(CmdError::GenerationMismatch { .. })) => {}
                    // Over already (ended with a chunk's session, abandoned).
                    (_, Err(CmdError::CopyNotFound(_))) => {}
                    // The state refuses this result for good (the dst left
                    // service, ...): reporting it again would loop; drop the
                    // copy so the extent is planned anew.
                    (What::Finish(id, t), Err(e)) => {
                        tracing::warn!(?cmd, error = %e, "copy result refused; dropping the copy");
                        give_up.push(Cmd::FinishCopy(FinishCopy {
                            term: *t,
                            copy_id: *id,
                            update: None,
                        }));
                    }
                    (What::End(why), Err(e)) => {
                        tracing::warn!(?cmd, why = %why, error = %e, "copy end rejected");
                    }
                }
            }
        });
        if !give_up.is_empty() {
            if let Err(status) = self.proposer.submit(give_up).await {
                tracing::info!(term, error = %status.message(), "dropping refused copies failed; the next report retries");
            }
        }
    }
}

/// The state is the authority on what runs: copies it no longer holds are
/// over for the scheduler too, copies it holds that the scheduler does not
/// know are adopted. Returns the copies that ended.
fn reconcile(
    s: &mut Scheduler,
    state: &State,
    by_pid: &HashMap<Pid, &RunningCopy>,
    now: u64,
) -> Ended {
    let over: Vec<(SchedCmd, u64)> = s
        .running()
        .filter(|r| !by_pid.get(&r.cmd.pid).is_some_and(|c| same_copy(&r.cmd, c)))
        .map(|r| (r.cmd, r.issued_ms))
        .collect();
    let mut ended = Ended::default();
    for (cmd, issued_ms) in over {
        let ok = took_result(&cmd, state.extent(cmd.pid).map(|e| e.extent));
        ended.copies.push(EndedCopy {
            cmd,
            ok,
            issued_ms,
            ended_ms: now,
        });
        if ok {
            let _ = s.complete(cmd.pid, cmd.id, now);
        } else {
            let _ = s.fail(cmd.pid, cmd.id);
        }
    }
    let unknown: Vec<&RunningCopy> = state
        .copies()
        .filter(|c| !s.running_of(c.pid).is_some_and(|r| same_copy(&r.cmd, c)))
        .collect();
    for c in unknown {
        let generation = state.extent(c.pid).map_or(0, |e| e.extent.generation);
        s.adopt(SchedCmd::adopted(c, generation), c.issued_ms);
    }
    ended
}

pub enum What {
    Issue(SchedCmd),
    /// A reported success (copy id, its term).
    Finish(CopyId, u64),
    End(String),
}

/// The commands of one round, in the order they are applied: reported
/// ends, then per round (recover, then migrate) its timeouts before its
/// new copies, so an extent timed out and re-issued frees its slot first.
#[derive(Default)]
pub struct Batch {
    pub cmds: Vec<Cmd>,
    /// What each command of `cmds` is, in the same order.
    pub what: Vec<What>,
    pub issued: Vec<SchedCmd>,
}

impl Batch {
    fn push(&mut self, cmd: Cmd, what: What) {
        self.cmds.push(cmd);
        self.what.push(what);
    }

    /// A chunk reports the copy done: record its result against the extent
    /// as it is now (compare-and-set on this generation).
    fn finish(&mut self, c: &RunningCopy, ext: Option<&Extent>) {
        let update = ext.map(|e| SchedCmd::adopted(c, e.generation).completion(e));
        match update {
            Some(Ok(u)) => self.push(
                Cmd::FinishCopy(FinishCopy {
                    term: c.term,
                    copy_id: c.copy_id,
                    update: Some(u),
                }),
                What::Finish(c.copy_id, c.term),
            ),
            Some(Err(e)) => self.drop(c, Ending::Failed(format!("result no longer fits: {e}"))),
            None => self.drop(c, Ending::Failed("the extent is gone".into())),
        }
    }

    fn drop(&mut self, c: &RunningCopy, why: Ending) {
        let why = match why {
            Ending::Failed(e) => format!("failed: {e}"),
            Ending::TimedOut => "timed out".into(),
            Ending::LostSession(cid) => format!("chunk {cid} lost its session"),
        };
        tracing::info!(copy_id = c.copy_id, pid = c.pid, %why, "copy dropped");
        self.push(
            Cmd::FinishCopy(FinishCopy {
                term: c.term,
                copy_id: c.copy_id,
                update: None,
            }),
            What::End(why),
        );
    }

    fn issue(&mut self, term: u64, cmd: &SchedCmd) {
        self.issued.push(*cmd);
        self.push(Cmd::IssueCopy(cmd.issue_copy(term)), What::Issue(*cmd));
    }
}
