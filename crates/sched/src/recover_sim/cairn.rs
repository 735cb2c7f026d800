//! Cairn: the real [`Scheduler`] driven the way the leader's copy runner
//! (`crates/node/src/copies.rs`) and the chunks (`copy_exec.rs`,
//! `fleet.rs`) drive it, on a real [`State`] that every decision is applied
//! to as a Raft entry.
//!
//! - **Detection.** The failed chunks stop keeping alive at t = 0; at the
//!   lease (7 s) the leader's session tracker proposes `ExpireSession`, the
//!   same command the node applies. The scheduler observes it (a full scan).
//! - **The runner.** It waits for a report or `ROUND` (250 ms), then
//!   `MIN_GAP` (20 ms) so reports arriving together share a round, then
//!   plans: what the last batch finished is settled (`Scheduler::complete`,
//!   as `copies::reconcile` does when a copy left the state), reported
//!   copies become `FinishCopy` with `SchedCmd::completion` as the
//!   compare-and-set, copies of chunks without a session are dropped, and
//!   `plan_recover` then `plan_migrate` run; their commands become
//!   `IssueCopy`. The batch is one Raft entry (`State::apply_batch`), applied
//!   one commit later; then the running copies are published.
//! - **The chunks.** A chunk learns its commands (it runs the copies it is
//!   the lease owner of, else the destination's) from the reply to its next
//!   keepalive: every lease/7 (1 s at 7 s), 1 ms after one of its copies
//!   finishes (it reports at once), and every 200 ms while a result it sent
//!   is not recorded yet. A reported result wakes the runner.
//! - **Space.** Chunks report their provisioned space; the tracker turns it
//!   into a `ReportSpace` entry at most every 5 s.
//!
//! The node's constants are mirrored in [`CairnTiming`], not imported:
//! cairn-sched cannot depend on cairn-node.

use std::collections::{BTreeMap, BTreeSet};

use cairn_state::{
    Cid, Cmd, CmdError, CopyId, EntryMeta, FinishCopy, Pid, Reply, SessionId, State,
};

use cairn_state::{Distance, LoadMode, MAX_LOC};

use crate::cmd::{Kind, SchedCmd};
use crate::config::SchedConfig;
use crate::rules::{cluster_load_mode, topology_safety, Ctx};
use crate::scheduler::{Scheduler, Touch};
use crate::sessions::keepalive_interval_ms;

use super::cluster::{space, Cluster};
use super::config::{CairnTiming, SimConfig};
use super::engine::{CopyKind as SimKind, Done, Policy, Start};
use super::rng::Rng;
use super::SimError;

/// The only term of the simulated leader.
const TERM: u64 = 1;

/// A command as a keepalive reply carries it.
#[derive(Clone, Copy, Debug)]
struct Published {
    copy_id: CopyId,
    pid: Pid,
    src: Cid,
    dst: Cid,
    replace: Cid,
}

#[derive(Clone, Debug, Default)]
struct ChunkSide {
    live: bool,
    next_ka_us: u64,
    /// Copies running here.
    jobs: BTreeSet<CopyId>,
    /// Finished copies whose result meta has not recorded yet (re-sent in
    /// every keepalive until the reply no longer lists the command).
    done: BTreeSet<CopyId>,
}

enum What {
    Issue(SchedCmd),
    Finish(CopyId),
    End(CopyId),
}

#[derive(Default)]
struct Batch {
    cmds: Vec<Cmd>,
    what: Vec<What>,
}

impl Batch {
    fn push(&mut self, cmd: Cmd, what: What) {
        self.cmds.push(cmd);
        self.what.push(what);
    }
}

enum Runner {
    /// Waiting for a report, or until `until_us`.
    Idle { until_us: u64 },
    /// Woken; plans at `at_us` (after `MIN_GAP`).
    Gap { at_us: u64 },
    /// The round's batch commits at `at_us`.
    Proposing { at_us: u64, batch: Batch },
}

/// Figures of one run, for the report and the diagnosis of a miss.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    rounds: u64,
    recover_issued: u64,
    migrate_issued: u64,
    issue_refused: u64,
    finish_refused: u64,
    duplicates: u64,
    cancelled: u64,
    /// Sum over copies of commit of IssueCopy -> start on the chunk.
    dispatch_wait_us: u64,
    dispatched: u64,
    /// Sum over copies of data done -> FinishCopy applied.
    record_wait_us: u64,
    recorded: u64,
    /// Rounds whose recover planning stopped with queued work left.
    rounds_with_queue: u64,
}

pub struct CairnPolicy {
    state: State,
    sched: Scheduler,
    timing: CairnTiming,
    index: u64,
    extents: u64,
    detection_us: u64,
    failed: Vec<(Cid, SessionId)>,
    expired: bool,
    chunks: Vec<ChunkSide>,
    keepalive_us: u64,
    runner: Runner,
    /// A report arrived while the runner was not waiting (a stored permit
    /// of its `Notify`).
    wake_pending: bool,
    results: Vec<(Cid, CopyId)>,
    board: BTreeMap<Cid, Vec<Published>>,
    /// Copy id -> (pid, the scheduler's id).
    issued: BTreeMap<CopyId, (Pid, u64)>,
    issued_at_us: BTreeMap<CopyId, u64>,
    done_at_us: BTreeMap<CopyId, u64>,
    /// Copies the last batch ended: settled at the next round.
    settled: Vec<(Pid, u64, bool)>,
    /// The next round rescans every extent (its CPU cost is higher).
    full_scan: bool,
    space_next_us: u64,
    replicas: Vec<u64>,
    reported: Vec<u64>,
    capacity: u64,
    started: BTreeSet<CopyId>,
    executors: BTreeMap<CopyId, Cid>,
    /// Running migrates: the replica each one drops.
    replaces: BTreeMap<CopyId, Cid>,
    /// Full extents whose alive replicas are less spread than the cluster
    /// allows: the only work `plan_migrate` can find in this cluster.
    needs_move: BTreeSet<Pid>,
    best_min: [Distance; MAX_LOC + 1],
    /// The cluster has a shape where the above is the only migrate work
    /// (one zone, no prefer-local chunk, no even volume).
    plain: bool,
    migrate_every_round: bool,
    migrate_calls: u64,
    round_cpu_us: u64,
    c: Counters,
}

impl CairnPolicy {
    pub fn new(cluster: &Cluster, cfg: &SimConfig) -> Result<CairnPolicy, SimError> {
        let state = cluster.state.clone();
        // As `copies::Runner::take_office`: the replicated settings, Static slots.
        let sched_cfg = SchedConfig::from_cluster(state.config())
            .map_err(|e| SimError::Setup(format!("scheduler settings: {e}")))?;
        let sched =
            Scheduler::new(sched_cfg).map_err(|e| SimError::Setup(format!("scheduler: {e}")))?;
        let mut rng = Rng::stream(cfg.seed, 2);
        let keepalive_us = keepalive_interval_ms(cfg.lease_ms) * 1000;
        let chunks = cluster
            .chunks
            .iter()
            .map(|c| ChunkSide {
                live: !c.failed,
                next_ka_us: if c.failed {
                    u64::MAX
                } else {
                    rng.below(keepalive_us)
                },
                ..ChunkSide::default()
            })
            .collect();
        let t = cfg.cairn;
        let first_round = rng.below((t.round_ms + t.min_gap_ms) * 1000);
        let mut replicas = vec![0u64; cluster.chunks.len()];
        for loc in &cluster.locs {
            for &c in loc {
                replicas[c as usize - 1] += 1;
            }
        }
        let plain =
            state.zones().count() <= 1 && state.volumes().all(|v| v.prefer_cid == 0 && !v.even);
        let best_min = best_min_distances(&state);
        Ok(CairnPolicy {
            needs_move: BTreeSet::new(),
            best_min,
            plain,
            migrate_every_round: cfg.migrate_every_round,
            migrate_calls: 0,
            round_cpu_us: 0,
            sched,
            timing: t,
            index: cluster.last_index,
            extents: cluster.locs.len() as u64,
            detection_us: cfg.lease_ms * 1000,
            failed: cluster
                .failed_cids()
                .into_iter()
                .map(|c| (c, cluster.sessions[c as usize - 1]))
                .collect(),
            expired: false,
            chunks,
            keepalive_us,
            runner: Runner::Idle {
                until_us: first_round,
            },
            wake_pending: false,
            results: Vec::new(),
            board: BTreeMap::new(),
            issued: BTreeMap::new(),
            issued_at_us: BTreeMap::new(),
            done_at_us: BTreeMap::new(),
            settled: Vec::new(),
            full_scan: true,
            space_next_us: t.space_every_ms * 1000,
            reported: replicas.clone(),
            replicas,
            capacity: cluster.capacity_bytes,
            started: BTreeSet::new(),
            executors: BTreeMap::new(),
            replaces: BTreeMap::new(),
            c: Counters::default(),
            state,
        })
    }

    /// Applies one Raft entry; the scheduler observes what applied.
    fn apply(&mut self, now_us: u64, cmds: &[Cmd]) -> Vec<Result<Reply, CmdError>> {
        self.index += 1;
        let meta = EntryMeta {
            index: self.index,
            term: TERM,
            leader_time_ms: now_us / 1000,
        };
        let results = self.state.apply_batch(meta, cmds);
        let mut all = false;
        for (cmd, r) in cmds.iter().zip(&results) {
            if r.is_ok() {
                match Touch::of(cmd) {
                    Touch::All => all = true,
                    Touch::Extent(pid) => self.check_spread(pid),
                    _ => {}
                }
                self.sched.observe(cmd);
            }
        }
        if all {
            self.full_scan = true;
            self.best_min = best_min_distances(&self.state);
            let pids: Vec<Pid> = self.state.extents().map(|e| e.pid).collect();
            self.needs_move.clear();
            for pid in pids {
                self.check_spread(pid);
            }
        }
        results
    }

    /// Tracks whether the extent is a topology-safety candidate: at its
    /// full replica count and less spread than the cluster allows (the
    /// planner's own test, `topology_safety_move`).
    fn check_spread(&mut self, pid: Pid) {
        let needs = self.state.extent(pid).is_some_and(|e| {
            let alive: Vec<Cid> = e.extent.loc.alive_loc().collect();
            alive.len() >= usize::from(e.extent.expected_replicas)
                && alive.len() >= 2
                && topology_safety(&self.state, &alive).closest()
                    < self
                        .best_min
                        .get(alive.len())
                        .copied()
                        .unwrap_or(Distance::SameChunk)
        });
        if needs {
            self.needs_move.insert(pid);
        } else {
            self.needs_move.remove(&pid);
        }
    }

    /// Can `plan_migrate` issue anything this round? In this cluster
    /// (one zone, no prefer-local chunk, no even volume, low load) only a
    /// topology-safety move can exist; with no candidate, no migrate
    /// running (timeouts) and a scan that wraps the whole cluster (its
    /// cursor ends where it started), the call changes nothing and returns
    /// nothing, so it is skipped. Its CPU is charged anyway.
    fn migrate_may_act(&self) -> bool {
        self.migrate_every_round
            || !self.plain
            || !self.needs_move.is_empty()
            || self.extents > self.sched.config().migrate_scan_budget
            || self.sched.running().any(|r| r.cmd.kind == Kind::Migrate)
            || cluster_load_mode(&self.state) != LoadMode::Low
    }

    fn wake(&mut self, now_us: u64) {
        match self.runner {
            Runner::Idle { .. } => {
                self.runner = Runner::Gap {
                    at_us: now_us + self.timing.min_gap_ms * 1000,
                }
            }
            _ => self.wake_pending = true,
        }
    }

    fn expire(&mut self, now_us: u64) {
        let cmds: Vec<Cmd> = self
            .failed
            .iter()
            .map(|&(cid, session_id)| Cmd::ExpireSession { cid, session_id })
            .collect();
        self.apply(now_us, &cmds);
        self.expired = true;
    }

    fn report_space(&mut self, now_us: u64) {
        let cmds: Vec<Cmd> = (0..self.chunks.len())
            .filter(|&i| self.chunks[i].live && self.replicas[i] != self.reported[i])
            .map(|i| Cmd::ReportSpace {
                cid: i as Cid + 1,
                space: space(
                    self.capacity,
                    self.replicas[i].saturating_mul(cairn_state::EXTENT_SIZE_BYTES),
                ),
            })
            .collect();
        if !cmds.is_empty() {
            self.apply(now_us, &cmds);
            for i in 0..self.chunks.len() {
                self.reported[i] = self.replicas[i];
            }
        }
    }

    /// One round of `copies::plan_round`.
    fn round(&mut self, now_us: u64) {
        let now_ms = now_us / 1000;
        self.c.rounds += 1;
        for (pid, id, ok) in std::mem::take(&mut self.settled) {
            // As `copies::reconcile`: the state no longer holds the copy.
            let _ = if ok {
                self.sched.complete(pid, id, now_ms)
            } else {
                self.sched.fail(pid, id)
            };
        }
        let mut batch = Batch::default();
        let mut ending: BTreeSet<CopyId> = BTreeSet::new();
        for (cid, copy_id) in std::mem::take(&mut self.results) {
            let Some(c) = self.state.copy(copy_id) else {
                continue; // recorded already
            };
            if c.executor() != cid || !ending.insert(copy_id) {
                continue;
            }
            let update = self
                .state
                .extent(c.pid)
                .map(|e| SchedCmd::adopted(c, e.extent.generation).completion(e.extent));
            let finish = |update| {
                Cmd::FinishCopy(FinishCopy {
                    term: c.term,
                    copy_id,
                    update,
                })
            };
            match update {
                Some(Ok(u)) => batch.push(finish(Some(u)), What::Finish(copy_id)),
                _ => batch.push(finish(None), What::End(copy_id)),
            }
        }
        for c in self.state.copies() {
            if ending.contains(&c.copy_id) {
                continue;
            }
            if [c.src, c.dst, c.executor()]
                .into_iter()
                .any(|cid| !self.state.has_session(cid))
            {
                ending.insert(c.copy_id);
                batch.push(
                    Cmd::FinishCopy(FinishCopy {
                        term: c.term,
                        copy_id: c.copy_id,
                        update: None,
                    }),
                    What::End(c.copy_id),
                );
            }
        }
        let recover = self.sched.plan_recover(&self.state, now_ms);
        let migrate = if self.migrate_may_act() {
            self.migrate_calls += 1;
            self.sched.plan_migrate(&self.state, now_ms)
        } else {
            crate::scheduler::Round::default()
        };
        let rounds = [recover, migrate];
        if !self.sched.queue(Kind::Recover).is_empty() {
            self.c.rounds_with_queue += 1;
        }
        for round in &rounds {
            for cmd in &round.timed_out {
                if let Some(c) = self.state.copy_of(cmd.pid) {
                    if c.src == cmd.src && c.dst == cmd.dst && ending.insert(c.copy_id) {
                        batch.push(
                            Cmd::FinishCopy(FinishCopy {
                                term: c.term,
                                copy_id: c.copy_id,
                                update: None,
                            }),
                            What::End(c.copy_id),
                        );
                    }
                }
            }
            for cmd in &round.issued {
                batch.push(Cmd::IssueCopy(cmd.issue_copy(TERM)), What::Issue(*cmd));
            }
        }
        // CPU of the round: the recover walk, the migrate scan (every
        // extent up to the budget, every round), a full recover rescan
        // after a session change.
        let scanned = self.extents.min(self.sched.config().migrate_scan_budget);
        let mut cost =
            self.timing.round_us + scanned * self.timing.migrate_scan_ns_per_extent / 1000;
        if std::mem::take(&mut self.full_scan) {
            cost += self.extents * self.timing.scan_ns_per_extent / 1000;
        }
        self.round_cpu_us += cost;
        if batch.cmds.is_empty() {
            self.publish();
            self.idle(now_us + cost);
        } else {
            self.runner = Runner::Proposing {
                at_us: now_us + cost + self.timing.commit_us,
                batch,
            };
        }
    }

    fn idle(&mut self, now_us: u64) {
        self.runner = if std::mem::take(&mut self.wake_pending) {
            Runner::Gap {
                at_us: now_us + self.timing.min_gap_ms * 1000,
            }
        } else {
            Runner::Idle {
                until_us: now_us + self.timing.round_ms * 1000,
            }
        };
    }

    /// The round's entry is committed and applied; the runner settles the
    /// scheduler with the results (`copies::Runner::propose`).
    fn commit(&mut self, now_us: u64, batch: Batch) {
        let results = self.apply(now_us, &batch.cmds);
        let mut give_up = Vec::new();
        for (what, r) in batch.what.iter().zip(results) {
            match (what, r) {
                (What::Issue(sc), Ok(Reply::Copy(id))) => {
                    self.issued.insert(id, (sc.pid, sc.id));
                    self.issued_at_us.insert(id, now_us);
                    match sc.kind {
                        Kind::Recover => self.c.recover_issued += 1,
                        Kind::Migrate => self.c.migrate_issued += 1,
                    }
                }
                (What::Issue(sc), _) => {
                    self.c.issue_refused += 1;
                    let _ = self.sched.fail(sc.pid, sc.id);
                }
                (What::Finish(id), Ok(_)) => {
                    if let Some((pid, sid)) = self.issued.remove(id) {
                        self.settled.push((pid, sid, true));
                    }
                    // A migrate's replaced replica is deleted once recorded.
                    if let Some(r) = self.replaces.remove(id) {
                        let n = &mut self.replicas[r as usize - 1];
                        *n = n.saturating_sub(1);
                    }
                    if let Some(t) = self.done_at_us.remove(id) {
                        self.c.record_wait_us += now_us.saturating_sub(t);
                        self.c.recorded += 1;
                    }
                }
                (What::End(id), Ok(_)) => {
                    if let Some((pid, sid)) = self.issued.remove(id) {
                        self.settled.push((pid, sid, false));
                    }
                }
                // Another write moved the extent on: the chunk reports again.
                (_, Err(CmdError::GenerationMismatch { .. } | CmdError::CopyNotFound(_))) => {}
                (What::Finish(id), Err(_)) => {
                    self.c.finish_refused += 1;
                    if let Some(c) = self.state.copy(*id) {
                        give_up.push(Cmd::FinishCopy(FinishCopy {
                            term: c.term,
                            copy_id: *id,
                            update: None,
                        }));
                    }
                }
                (What::End(_), Err(_)) => self.c.finish_refused += 1,
            }
        }
        if !give_up.is_empty() {
            let ids: Vec<CopyId> = give_up
                .iter()
                .filter_map(|c| match c {
                    Cmd::FinishCopy(f) => Some(f.copy_id),
                    _ => None,
                })
                .collect();
            let results = self.apply(now_us, &give_up);
            for (id, r) in ids.into_iter().zip(results) {
                if r.is_ok() {
                    if let Some((pid, sid)) = self.issued.remove(&id) {
                        self.settled.push((pid, sid, false));
                    }
                }
            }
        }
        self.publish();
        self.idle(now_us);
    }

    /// The running copies, by the chunk that runs them (`CopyBoard::publish`).
    fn publish(&mut self) {
        self.board.clear();
        for c in self.state.copies() {
            self.board.entry(c.executor()).or_default().push(Published {
                copy_id: c.copy_id,
                pid: c.pid,
                src: c.src,
                dst: c.dst,
                replace: c.replace,
            });
        }
    }

    /// One keepalive of `cid`: its results go to the runner, the reply
    /// brings the commands it runs (`ChunkCopies::on_reply`).
    fn keepalive(&mut self, cid: Cid, now_us: u64, start: &mut Vec<Start>, cancel: &mut Vec<u64>) {
        let i = cid as usize - 1;
        let results: Vec<CopyId> = self.chunks[i].done.iter().copied().collect();
        if !results.is_empty() {
            self.results.extend(results.into_iter().map(|id| (cid, id)));
            self.wake(now_us);
        }
        let listed: Vec<Published> = self.board.get(&cid).cloned().unwrap_or_default();
        let ids: BTreeSet<CopyId> = listed.iter().map(|p| p.copy_id).collect();
        let side = &mut self.chunks[i];
        side.done.retain(|id| ids.contains(id));
        let dropped: Vec<CopyId> = side.jobs.difference(&ids).copied().collect();
        for id in dropped {
            side.jobs.remove(&id);
            cancel.push(id);
            self.c.cancelled += 1;
        }
        for p in listed {
            if side.jobs.contains(&p.copy_id) || side.done.contains(&p.copy_id) {
                continue;
            }
            if !self.started.insert(p.copy_id) {
                self.c.duplicates += 1;
                continue;
            }
            side.jobs.insert(p.copy_id);
            self.executors.insert(p.copy_id, cid);
            if p.replace != 0 {
                self.replaces.insert(p.copy_id, p.replace);
            }
            if let Some(t) = self.issued_at_us.remove(&p.copy_id) {
                self.c.dispatch_wait_us += now_us.saturating_sub(t);
                self.c.dispatched += 1;
            }
            start.push(Start {
                pid: p.pid,
                src: p.src,
                dst: p.dst,
                kind: if p.replace != 0 {
                    SimKind::Migrate { replace: p.replace }
                } else {
                    SimKind::Recover
                },
                tag: p.copy_id,
            });
        }
        side.next_ka_us = now_us + self.keepalive_us;
        if !side.done.is_empty() {
            side.next_ka_us = side.next_ka_us.min(now_us + self.timing.ack_poll_ms * 1000);
        }
    }

    fn runner_due(&self) -> u64 {
        match &self.runner {
            Runner::Idle { until_us } => *until_us,
            Runner::Gap { at_us } | Runner::Proposing { at_us, .. } => *at_us,
        }
    }
}

impl Policy for CairnPolicy {
    fn step(
        &mut self,
        now_us: u64,
        done: &[Done],
        start: &mut Vec<Start>,
        cancel: &mut Vec<u64>,
    ) -> Result<(), SimError> {
        for d in done {
            let Some(&cid) = self.executors.get(&d.tag) else {
                continue;
            };
            let side = &mut self.chunks[cid as usize - 1];
            if side.jobs.remove(&d.tag) {
                side.done.insert(d.tag);
                // The chunk wakes 1 ms after the copy finished and reports.
                side.next_ka_us = side.next_ka_us.min(now_us + 1_000);
                self.done_at_us.insert(d.tag, now_us);
                // Its destination now holds one more replica (space figures).
                self.replicas[d.dst as usize - 1] += 1;
            }
        }
        // Everything due at this instant, in a fixed order; bounded, so a
        // timing of zero everywhere cannot spin forever at one instant.
        for _ in 0..100_000 {
            let mut acted = false;
            if !self.expired && now_us >= self.detection_us {
                self.expire(now_us);
                acted = true;
            }
            if now_us >= self.space_next_us {
                self.report_space(now_us);
                self.space_next_us += self.timing.space_every_ms * 1000;
                acted = true;
            }
            if self.runner_due() <= now_us {
                acted = true;
                match std::mem::replace(&mut self.runner, Runner::Idle { until_us: u64::MAX }) {
                    Runner::Proposing { batch, .. } => self.commit(now_us, batch),
                    Runner::Gap { .. } => self.round(now_us),
                    Runner::Idle { until_us } => {
                        self.runner = Runner::Gap {
                            at_us: until_us + self.timing.min_gap_ms * 1000,
                        }
                    }
                }
            }
            for i in 0..self.chunks.len() {
                if self.chunks[i].live && self.chunks[i].next_ka_us <= now_us {
                    self.keepalive(i as Cid + 1, now_us, start, cancel);
                    acted = true;
                }
            }
            if !acted {
                return Ok(());
            }
        }
        Err(SimError::Invalid {
            policy: "Cairn".into(),
            reason: format!("the runner never settles at {} ms", now_us / 1000),
        })
    }

    fn next_wake_us(&self) -> Option<u64> {
        let mut t = self.runner_due().min(self.space_next_us);
        if !self.expired {
            t = t.min(self.detection_us);
        }
        for c in self.chunks.iter().filter(|c| c.live) {
            t = t.min(c.next_ka_us);
        }
        Some(t)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.c;
        vec![
            ("rounds", c.rounds),
            ("rounds that called plan_migrate", self.migrate_calls),
            (
                "mean round CPU (us)",
                self.round_cpu_us.checked_div(c.rounds).unwrap_or(0),
            ),
            ("recover copies issued", c.recover_issued),
            ("migrate copies issued", c.migrate_issued),
            ("issues refused by apply", c.issue_refused),
            ("results refused by apply", c.finish_refused),
            ("copies started twice", c.duplicates),
            ("copies cancelled", c.cancelled),
            (
                "mean issue-to-start wait (us)",
                c.dispatch_wait_us.checked_div(c.dispatched).unwrap_or(0),
            ),
            (
                "mean done-to-recorded wait (us)",
                c.record_wait_us.checked_div(c.recorded).unwrap_or(0),
            ),
            ("rounds that left recover work queued", c.rounds_with_queue),
        ]
    }
}

/// `Ctx::best_min_distance` for every replica count (the planner's own).
fn best_min_distances(state: &State) -> [Distance; MAX_LOC + 1] {
    let ctx = Ctx::new(state);
    std::array::from_fn(|n| ctx.best_min_distance(n))
}
