//! The leader's scheduler: queues, running commands, slots, pins and the
//! dirty set, and the two planning rounds over them.
//!
//! Pure like the rest of the crate: the runner feeds it the applied Raft
//! commands ([`Scheduler::observe`]), completions and the time, and sends
//! the commands a round returns. A round never reads a clock.
//!
//! Incremental recover planning: a full scan of every extent happens only
//! when something that changes many extents at once is applied (a session
//! opens or ends, volumes come or go, a chunk changes state or place);
//! an extent update only marks its pid dirty, and a round then looks at the
//! dirty pids and walks the queue only until the slots run out.

use std::collections::{BTreeMap, BTreeSet};

use cairn_state::{Cid, Cmd, Extent, Pid, State, Volume, VolumeId};
use thiserror::Error;

use crate::cmd::{Kind, NoPlan, SchedCmd};
use crate::config::{SchedConfig, SchedConfigError};
use crate::manual::{
    gather_command, validate_gather_chunk, validate_manual, GatherReport, GatherTarget,
    ManualAccepted, ManualError, ManualRequest, Pins,
};
use crate::migrate::{plan_migrate_extent, volume_replica_counts, Balance, MigrateCtx};
use crate::queue::{Band, CmdQueue, QueueError};
use crate::recover::{needs_recover, plan_recover_extent, recover_band};
use crate::rules::{allocate_owner, can_serve, src_follows_owner, Ctx};
use crate::slots::{SlotKind, Slots};

/// A command sent to its chunks and not finished yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    pub cmd: SchedCmd,
    pub issued_ms: u64,
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// New commands to send, in issue order.
    pub issued: Vec<SchedCmd>,
    /// Commands dropped for running past the timeout (to cancel on the chunks).
    pub timed_out: Vec<SchedCmd>,
    /// Queue entries dropped this round, with why.
    pub dropped: Vec<(Pid, NoPlan)>,
    /// Extents the round planned or re-checked: the cost figure.
    pub examined: u64,
    /// Queue entries passed over cheaply (every source chunk busy).
    pub walked: u64,
}

#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum SchedError {
    #[error("no running command #{id} for extent {pid}")]
    NotRunning { pid: Pid, id: u64 },
    #[error(transparent)]
    Config(#[from] SchedConfigError),
}

/// What an applied command may have changed, for the scheduler: small
/// enough for the state machine to queue for the leader's runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    Nothing,
    /// One extent's replicas changed.
    Extent(Pid),
    /// Space or failslow changed: parked extents may be plannable again.
    Unpark,
    /// Many extents at once (sessions, volumes, chunks, topology, config).
    All,
}

impl Touch {
    pub fn of(cmd: &Cmd) -> Touch {
        match cmd {
            Cmd::UpdateExtent(u) => Touch::Extent(u.pid),
            Cmd::FinishCopy(f) => f
                .update
                .as_ref()
                .map_or(Touch::Nothing, |u| Touch::Extent(u.pid)),
            Cmd::OpenSession { .. }
            | Cmd::CloseSession { .. }
            | Cmd::ExpireSession { .. }
            | Cmd::CreateVolume(_)
            | Cmd::DeleteVolume { .. }
            | Cmd::SetChunkState { .. }
            | Cmd::MoveChunk { .. }
            | Cmd::MoveTopo { .. }
            | Cmd::RegisterChunk { .. }
            | Cmd::SetConfig { .. } => Touch::All,
            Cmd::ReportSpace { .. } | Cmd::SetFailslow { .. } => Touch::Unpark,
            _ => Touch::Nothing,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Dirty {
    all: bool,
    pids: BTreeSet<Pid>,
    /// Space or failslow changed: parked extents may be plannable again.
    unpark: bool,
}

pub struct Scheduler {
    cfg: SchedConfig,
    recover: CmdQueue,
    migrate: CmdQueue,
    running: BTreeMap<Pid, Running>,
    slots: Slots,
    dirty: Dirty,
    /// Recover entries no destination or owner could be found for; they wait
    /// for the world to change instead of being retried every round.
    parked: BTreeSet<Pid>,
    pins: Pins,
    migrate_cursor: Pid,
    next_id: u64,
}

impl Scheduler {
    /// A fresh scheduler (a new leader): it starts with a full scan.
    pub fn new(cfg: SchedConfig) -> Result<Scheduler, SchedError> {
        cfg.validate()?;
        let slots = Slots::new(cfg.slots, cfg.slot_policy).map_err(SchedConfigError::from)?;
        Ok(Scheduler {
            recover: CmdQueue::new(Kind::Recover, cfg.queue_capacity),
            migrate: CmdQueue::new(Kind::Migrate, cfg.queue_capacity),
            running: BTreeMap::new(),
            slots,
            dirty: Dirty {
                all: true,
                ..Dirty::default()
            },
            parked: BTreeSet::new(),
            pins: Pins::default(),
            migrate_cursor: 0,
            next_id: 1,
            cfg,
        })
    }

    pub fn config(&self) -> &SchedConfig {
        &self.cfg
    }

    /// New settings; slot limits apply to new commands (running ones keep theirs).
    pub fn set_config(&mut self, cfg: SchedConfig) -> Result<(), SchedError> {
        cfg.validate()?;
        if cfg.slots != self.cfg.slots || cfg.slot_policy != self.cfg.slot_policy {
            let mut slots =
                Slots::new(cfg.slots, cfg.slot_policy).map_err(SchedConfigError::from)?;
            for r in self.running.values() {
                // Re-count what runs; a lowered limit only blocks new commands.
                let _ = slots.take(r.cmd.src, SlotKind::src(r.cmd.kind));
                let _ = slots.take(r.cmd.dst, SlotKind::dst(r.cmd.kind));
            }
            self.slots = slots;
        }
        self.cfg = cfg;
        Ok(())
    }

    pub fn queue(&self, kind: Kind) -> &CmdQueue {
        match kind {
            Kind::Recover => &self.recover,
            Kind::Migrate => &self.migrate,
        }
    }

    fn queue_mut(&mut self, kind: Kind) -> &mut CmdQueue {
        match kind {
            Kind::Recover => &mut self.recover,
            Kind::Migrate => &mut self.migrate,
        }
    }

    pub fn running(&self) -> impl Iterator<Item = &Running> {
        self.running.values()
    }

    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    pub fn parked(&self) -> impl Iterator<Item = Pid> + '_ {
        self.parked.iter().copied()
    }

    // ---- inputs ------------------------------------------------------------

    /// Feeds an applied Raft command: marks what it may have changed.
    pub fn observe(&mut self, cmd: &Cmd) {
        self.touch(Touch::of(cmd));
    }

    /// Feeds what an applied command changed (see [`Touch::of`]).
    pub fn touch(&mut self, t: Touch) {
        match t {
            Touch::Nothing => {}
            Touch::Extent(pid) => self.mark_dirty(pid),
            Touch::Unpark => self.dirty.unpark = true,
            Touch::All => self.mark_all_dirty(),
        }
    }

    /// The running command of an extent, if any.
    pub fn running_of(&self, pid: Pid) -> Option<&Running> {
        self.running.get(&pid)
    }

    /// Takes over a command that already runs (recorded in the replicated
    /// state by an earlier leader, or by this one before a restart of its
    /// runner), before any round: it is not planned again, its slots count,
    /// and its timeout runs from `issued_ms`. Returns the id it runs under
    /// here. A command already running for the extent is replaced.
    pub fn adopt(&mut self, mut cmd: SchedCmd, issued_ms: u64) -> u64 {
        if let Some(old) = self.running.remove(&cmd.pid) {
            self.release(&old.cmd);
        }
        self.recover.remove(cmd.pid);
        self.migrate.remove(cmd.pid);
        self.slots.take_adopted(cmd.src, SlotKind::src(cmd.kind));
        self.slots.take_adopted(cmd.dst, SlotKind::dst(cmd.kind));
        cmd.id = self.next_id;
        self.next_id += 1;
        self.running.insert(cmd.pid, Running { cmd, issued_ms });
        cmd.id
    }

    pub fn mark_dirty(&mut self, pid: Pid) {
        if !self.dirty.all {
            self.dirty.pids.insert(pid);
        }
    }

    pub fn mark_all_dirty(&mut self) {
        self.dirty.all = true;
        self.dirty.pids.clear();
    }

    /// The copy finished and its result was recorded (or rejected): frees
    /// the slots, feeds the elastic limits, re-examines the extent.
    pub fn complete(&mut self, pid: Pid, id: u64, now_ms: u64) -> Result<SchedCmd, SchedError> {
        let r = self.finish(pid, id)?;
        let took = now_ms.saturating_sub(r.issued_ms);
        self.slots
            .adapt_limit_to_completion(r.cmd.src, SlotKind::src(r.cmd.kind), took);
        self.slots
            .adapt_limit_to_completion(r.cmd.dst, SlotKind::dst(r.cmd.kind), took);
        Ok(r.cmd)
    }

    /// The copy failed: frees the slots and re-examines the extent.
    pub fn fail(&mut self, pid: Pid, id: u64) -> Result<SchedCmd, SchedError> {
        Ok(self.finish(pid, id)?.cmd)
    }

    fn finish(&mut self, pid: Pid, id: u64) -> Result<Running, SchedError> {
        match self.running.get(&pid) {
            Some(r) if r.cmd.id == id => {}
            _ => return Err(SchedError::NotRunning { pid, id }),
        }
        let r = self
            .running
            .remove(&pid)
            .ok_or(SchedError::NotRunning { pid, id })?;
        self.release(&r.cmd);
        self.mark_dirty(pid);
        Ok(r)
    }

    fn release(&mut self, cmd: &SchedCmd) {
        self.slots.release(cmd.src, SlotKind::src(cmd.kind));
        self.slots.release(cmd.dst, SlotKind::dst(cmd.kind));
    }

    // ---- rounds ------------------------------------------------------------

    /// Rule §5.2 timeout: commands of `kind` running for `timeout_ms` or
    /// more, oldest first by pid.
    pub fn timed_out(&self, kind: Kind, now_ms: u64, timeout_ms: u64) -> Vec<Pid> {
        self.running
            .values()
            .filter(|r| r.cmd.kind == kind && now_ms.saturating_sub(r.issued_ms) >= timeout_ms)
            .map(|r| r.cmd.pid)
            .collect()
    }

    /// Drops timed-out commands: their slots free up, their chunks' elastic
    /// limits drop (a timeout is the slowest completion), and the extent is
    /// re-planned from the Retry band (operator commands keep their place).
    fn expire_running(&mut self, kind: Kind, now_ms: u64, round: &mut Round) {
        let timeout = match kind {
            Kind::Recover => self.cfg.recover_timeout_ms,
            Kind::Migrate => self.cfg.migrate_timeout_ms,
        };
        for pid in self.timed_out(kind, now_ms, timeout) {
            let Some(r) = self.running.remove(&pid) else {
                continue;
            };
            self.release(&r.cmd);
            self.slots
                .adapt_limit_to_completion(r.cmd.src, SlotKind::src(kind), u64::MAX);
            self.slots
                .adapt_limit_to_completion(r.cmd.dst, SlotKind::dst(kind), u64::MAX);
            let requeued = if r.cmd.mode == crate::cmd::Mode::Auto {
                match kind {
                    Kind::Recover => self.recover.push_back(pid, Band::Retry).map(|_| ()),
                    Kind::Migrate => Ok(()), // the scan finds it again
                }
            } else {
                self.queue_mut(kind).push_front(r.cmd)
            };
            if requeued.is_err() {
                round.dropped.push((pid, NoPlan::Budget));
            }
            round.timed_out.push(r.cmd);
        }
    }

    /// Loads of this round, counting copies in flight.
    pub(crate) fn ctx<'a>(&self, state: &'a State) -> Ctx<'a> {
        let mut ctx = Ctx::new(state);
        for r in self.running.values() {
            ctx.loads.add(r.cmd.dst, r.cmd.bytes);
        }
        ctx
    }

    /// Queues (or unqueues) one extent for recovery.
    fn rescan_recover(&mut self, pid: Pid, ext: Option<&Extent>, round: &mut Round) {
        round.examined += 1;
        let queued_fixed = self.recover.get(pid).is_some_and(|e| e.fixed.is_some());
        match ext {
            Some(e) if needs_recover(e) && !self.running.contains_key(&pid) => {
                if !self.parked.contains(&pid)
                    && self.recover.push_back(pid, recover_band(e)).is_err()
                {
                    round.dropped.push((pid, NoPlan::Budget));
                }
            }
            _ if queued_fixed => {} // an operator's command is dropped only when it is stale
            _ => {
                self.recover.remove(pid);
                self.parked.remove(&pid);
            }
        }
    }

    /// The recover round (§5.2): expire, rescan what changed, then walk the
    /// queue from the front issuing commands while slots remain.
    pub fn plan_recover(&mut self, state: &State, now_ms: u64) -> Round {
        let mut round = Round::default();
        self.expire_running(Kind::Recover, now_ms, &mut round);
        let dirty = std::mem::take(&mut self.dirty);
        if dirty.all {
            self.parked.clear();
            for e in state.extents() {
                self.rescan_recover(e.pid, Some(e.extent), &mut round);
            }
            // Queue entries whose extent is gone.
            let gone: Vec<Pid> = self
                .recover
                .iter()
                .filter(|q| q.fixed.is_none() && state.extent(q.pid).is_none())
                .map(|q| q.pid)
                .collect();
            for pid in gone {
                self.recover.remove(pid);
            }
        } else {
            for pid in dirty.pids.iter().copied() {
                self.parked.remove(&pid);
                self.rescan_recover(pid, state.extent(pid).map(|e| e.extent), &mut round);
            }
        }
        if dirty.unpark && !dirty.all {
            // Parked extents got a new chance: space or failslow changed.
            let parked = std::mem::take(&mut self.parked);
            for pid in parked {
                self.rescan_recover(pid, state.extent(pid).map(|e| e.extent), &mut round);
            }
        }
        if self.cfg.recover_paused {
            return round;
        }
        let mut ctx = self.ctx(state);
        self.walk_queue(Kind::Recover, &mut ctx, now_ms, u32::MAX, &mut round);
        round
    }

    /// Walks a queue from the front, issuing what can run now. Stops when
    /// no chunk has a free slot of the kind left or `max` were issued.
    fn walk_queue(
        &mut self,
        kind: Kind,
        ctx: &mut Ctx<'_>,
        now_ms: u64,
        max: u32,
        round: &mut Round,
    ) -> u32 {
        let state = ctx.state;
        let live: Vec<Cid> = state
            .chunks()
            .filter(|c| state.has_session(c.cid))
            .map(|c| c.cid)
            .collect();
        let mut free_src = self
            .slots
            .free_total(live.iter().copied(), SlotKind::src(kind));
        let mut free_dst = self
            .slots
            .free_total(live.iter().copied(), SlotKind::dst(kind));
        let mut issued = 0u32;
        let mut misses = 0u64;
        let mut key = None;
        while free_src > 0 && free_dst > 0 && issued < max && misses < self.cfg.walk_patience {
            let Some((k, entry)) = self.queue(kind).next_after(key) else {
                break;
            };
            key = Some(k);
            if self.running.contains_key(&entry.pid) {
                continue;
            }
            let Some(e) = state.extent(entry.pid) else {
                self.queue_mut(kind).remove(entry.pid);
                round.dropped.push((entry.pid, NoPlan::NoExtent));
                continue;
            };
            // Cheap skip before any planning: no alive replica has a free
            // source slot (the owner rule only picks among alive replicas).
            if entry.fixed.is_none()
                && !e
                    .extent
                    .loc
                    .alive_loc()
                    .any(|c| self.slots.has_free_slot(c, SlotKind::src(kind)))
            {
                round.walked += 1;
                misses += 1;
                continue;
            }
            round.examined += 1;
            let planned = match entry.fixed {
                Some(cmd) => revalidate_fixed(ctx, &self.slots, cmd, e.extent),
                None => match kind {
                    Kind::Recover => {
                        plan_recover_extent(ctx, &self.slots, entry.pid, e.volume, e.extent)
                    }
                    Kind::Migrate => {
                        let balance = Balance::default();
                        let m = MigrateCtx {
                            ctx,
                            slots: &self.slots,
                            pins: &self.pins,
                            now_ms,
                            balance: &balance,
                        };
                        plan_migrate_extent(&m, None, entry.pid, e.volume, e.extent)
                    }
                },
            };
            match planned {
                Ok(cmd) => {
                    self.queue_mut(kind).remove(entry.pid);
                    self.issue(ctx, cmd, now_ms, round);
                    issued += 1;
                    misses = 0;
                    free_src -= 1;
                    free_dst -= 1;
                }
                Err(why) if why.is_transient() => misses += 1,
                Err(why) => {
                    self.queue_mut(kind).remove(entry.pid);
                    if kind == Kind::Recover && matches!(why, NoPlan::NoDst(_) | NoPlan::NoOwner) {
                        self.parked.insert(entry.pid);
                    }
                    round.dropped.push((entry.pid, why));
                }
            }
        }
        issued
    }

    /// Numbers a planned command, takes its slots, counts its bytes.
    fn issue(&mut self, ctx: &mut Ctx<'_>, mut cmd: SchedCmd, now_ms: u64, round: &mut Round) {
        // Callers checked both slots; a refusal here would be a planner bug,
        // and the command is then simply not issued.
        if self.slots.take(cmd.src, SlotKind::src(cmd.kind)).is_err() {
            return;
        }
        if self.slots.take(cmd.dst, SlotKind::dst(cmd.kind)).is_err() {
            self.slots.release(cmd.src, SlotKind::src(cmd.kind));
            return;
        }
        cmd.id = self.next_id;
        self.next_id += 1;
        ctx.loads.add(cmd.dst, cmd.bytes);
        if let Some(r) = cmd.replace {
            ctx.loads.sub(r, cmd.bytes);
        }
        self.running.insert(
            cmd.pid,
            Running {
                cmd,
                issued_ms: now_ms,
            },
        );
        round.issued.push(cmd);
    }

    /// The migrate round (§5.3, §5.4): expire, operator commands first, then
    /// a scan from where the last round stopped, bounded by the scan budget,
    /// the move budget and the free slots.
    pub fn plan_migrate(&mut self, state: &State, now_ms: u64) -> Round {
        let mut round = Round::default();
        self.expire_running(Kind::Migrate, now_ms, &mut round);
        self.pins.expire(now_ms);
        if self.cfg.migrate_paused {
            return round;
        }
        let mut ctx = self.ctx(state);
        let max = self.cfg.max_moves_per_round;
        let mut issued = self.walk_queue(Kind::Migrate, &mut ctx, now_ms, max, &mut round);
        let mut balance = Balance::new(&ctx, self.cfg.balance_gap_bp, max);
        let mut even: BTreeMap<VolumeId, Vec<u32>> = BTreeMap::new();
        let live: Vec<Cid> = state
            .chunks()
            .filter(|c| can_serve(state, c.cid))
            .map(|c| c.cid)
            .collect();
        let mut free_dst = self
            .slots
            .free_total(live.iter().copied(), SlotKind::MigrateDst);
        let order = scan_order(state, self.migrate_cursor);
        let mut scanned = 0u64;
        for (volume, i) in order {
            if scanned >= self.cfg.migrate_scan_budget || issued >= max || free_dst == 0 {
                break;
            }
            let Some(ext) = volume.extents.get(i) else {
                continue;
            };
            let pid = volume.first_pid.saturating_add(i as u64);
            self.migrate_cursor = pid.saturating_add(1);
            scanned += 1;
            if self.running.contains_key(&pid) || self.migrate.contains(pid) {
                continue;
            }
            if volume.even && !even.contains_key(&volume.id) {
                even.insert(volume.id, volume_replica_counts(state, volume));
            }
            let planned = {
                let m = MigrateCtx {
                    ctx: &ctx,
                    slots: &self.slots,
                    pins: &self.pins,
                    now_ms,
                    balance: &balance,
                };
                plan_migrate_extent(
                    &m,
                    even.get(&volume.id).map(Vec::as_slice),
                    pid,
                    volume,
                    ext,
                )
            };
            if let Ok(cmd) = planned {
                if let Some(r) = cmd.replace {
                    balance.spend(r);
                    if let Some(counts) = even.get_mut(&volume.id) {
                        bump(counts, r, false);
                        bump(counts, cmd.dst, true);
                    }
                }
                self.issue(&mut ctx, cmd, now_ms, &mut round);
                issued += 1;
                free_dst -= 1;
            }
        }
        round.examined += scanned;
        round
    }

    // ---- operator commands -------------------------------------------------

    fn conflict(&self, pid: Pid) -> Result<(), ManualError> {
        if let Some(r) = self.running.get(&pid) {
            return Err(ManualError::ConflictRunning {
                pid,
                id: r.cmd.id,
                kind: r.cmd.kind,
            });
        }
        if [&self.recover, &self.migrate]
            .iter()
            .any(|q| q.get(pid).is_some_and(|e| e.fixed.is_some()))
        {
            return Err(ManualError::ConflictQueued { pid });
        }
        Ok(())
    }

    /// Rule §5.6: validates, conflict-checks and queues an operator's
    /// command at the front of its queue; the replica it places is pinned.
    pub fn add_manual(
        &mut self,
        state: &State,
        req: &ManualRequest,
        now_ms: u64,
    ) -> Result<ManualAccepted, ManualError> {
        let ctx = Ctx::new(state);
        let cmd = validate_manual(&ctx, req)?;
        self.conflict(req.pid)?;
        self.queue_mut(req.kind).push_front(cmd)?;
        self.parked.remove(&req.pid);
        self.pins
            .pin_extent(req.pid, req.dst, now_ms.saturating_add(self.cfg.pin_ms));
        let e = state
            .extent(req.pid)
            .ok_or(ManualError::ExtentNotFound(req.pid))?;
        Ok(ManualAccepted {
            pid: req.pid,
            loc: e.loc().to_vec(),
            alive_loc: e.alive_loc(),
            dst: cmd.dst,
            owner: cmd.owner,
            mode: cmd.mode,
            cmd,
        })
    }

    /// Rule §5.6 gather: one replica of every extent of the target onto
    /// `cid`, as operator commands at the front of the queues, stopping
    /// before `cid` would reach ultra-high load; the placement is pinned.
    pub fn gather(
        &mut self,
        state: &State,
        target: GatherTarget,
        cid: Cid,
        now_ms: u64,
    ) -> Result<GatherReport, ManualError> {
        let mut ctx = self.ctx(state);
        validate_gather_chunk(&ctx, cid)?;
        let pids = match target {
            GatherTarget::Volume(v) => state
                .volume(v)
                .ok_or(ManualError::VolumeNotFound(v))?
                .pids(),
            GatherTarget::Extent(p) => {
                state.extent(p).ok_or(ManualError::ExtentNotFound(p))?;
                p..p.saturating_add(1)
            }
        };
        let mut report = GatherReport {
            cid,
            ..GatherReport::default()
        };
        for pid in pids {
            let Some(e) = state.extent(pid) else {
                continue;
            };
            let ext = e.extent;
            if ext.loc.is_alive(cid) {
                report.already_there += 1;
            } else if ext.loc.contains(cid) {
                report.impossible.push(pid); // a dead replica sits there; recovery handles it
            } else if self.conflict(pid).is_err() {
                report.busy.push(pid);
            } else if ctx
                .loads
                .would_reach_ultra_high(cid, cairn_state::EXTENT_SIZE_BYTES)
            {
                report.left_for_capacity += 1;
            } else {
                match gather_command(&ctx, pid, ext, cid) {
                    Some(cmd) => {
                        ctx.loads.add(cid, cmd.bytes);
                        report.queued.push(cmd);
                    }
                    None => report.impossible.push(pid),
                }
            }
        }
        if report.queued.is_empty() && report.left_for_capacity > 0 {
            return Err(ManualError::WouldBeUltraHigh { cid });
        }
        // All or nothing: check room first so a full queue leaves no half gather.
        for kind in [Kind::Recover, Kind::Migrate] {
            let need = report.queued.iter().filter(|c| c.kind == kind).count();
            let q = self.queue(kind);
            if q.len().saturating_add(need) > self.cfg.queue_capacity {
                return Err(QueueError::Full {
                    capacity: self.cfg.queue_capacity,
                }
                .into());
            }
        }
        // Reverse, so the gather runs in pid order from the front.
        for cmd in report.queued.iter().rev() {
            self.queue_mut(cmd.kind).push_front(*cmd)?;
        }
        let until = now_ms.saturating_add(self.cfg.pin_ms);
        match target {
            GatherTarget::Volume(v) => self.pins.pin_volume(v, cid, until),
            GatherTarget::Extent(p) => self.pins.pin_extent(p, cid, until),
        }
        Ok(report)
    }
}

fn bump(counts: &mut [u32], cid: Cid, up: bool) {
    if let Some(x) = (cid as usize)
        .checked_sub(1)
        .and_then(|i| counts.get_mut(i))
    {
        *x = if up {
            x.saturating_add(1)
        } else {
            x.saturating_sub(1)
        };
    }
}

/// Every (volume, extent index) in pid order, starting at `cursor` and wrapping.
fn scan_order(state: &State, cursor: Pid) -> impl Iterator<Item = (&Volume, usize)> {
    let from = move |v: &Volume| -> usize {
        usize::try_from(cursor.saturating_sub(v.first_pid)).unwrap_or(usize::MAX)
    };
    let tail = state
        .volumes()
        .filter(move |v| v.pids().end > cursor)
        .flat_map(move |v| (from(v).min(v.extents.len())..v.extents.len()).map(move |i| (v, i)));
    let head = state
        .volumes()
        .filter(move |v| v.first_pid < cursor)
        .flat_map(move |v| (0..from(v).min(v.extents.len())).map(move |i| (v, i)));
    tail.chain(head)
}

/// An operator's command at dispatch time: still consistent with the
/// extent (src alive, dst holds none, replace present)? The owner is taken
/// again from the extent as it is now, with the owner rule.
pub(crate) fn revalidate_fixed(
    ctx: &Ctx<'_>,
    slots: &Slots,
    mut cmd: SchedCmd,
    ext: &Extent,
) -> Result<SchedCmd, NoPlan> {
    if ext.loc.contains(cmd.dst) {
        return Err(NoPlan::Stale("dst already holds a replica"));
    }
    if cmd.replace.is_some_and(|r| !ext.loc.contains(r)) {
        return Err(NoPlan::Stale("the replica to replace is gone"));
    }
    if !ext.loc.is_alive(cmd.src) || !can_serve(ctx.state, cmd.src) {
        cmd.src = ext
            .loc
            .alive_loc()
            .find(|&c| can_serve(ctx.state, c))
            .ok_or(NoPlan::NoAliveReplica)?;
    }
    if !can_serve(ctx.state, cmd.dst) {
        return Err(NoPlan::Stale("dst has no live session"));
    }
    let (owner, owner_from) = allocate_owner(ctx, ext, cmd.src, cmd.dst).ok_or(NoPlan::NoOwner)?;
    cmd.src = src_follows_owner(ext, cmd.src, cmd.dst, owner);
    cmd.owner = owner;
    cmd.owner_from = owner_from;
    cmd.generation = ext.generation;
    if !slots.has_free_slot(cmd.src, SlotKind::src(cmd.kind))
        || !slots.has_free_slot(cmd.dst, SlotKind::dst(cmd.kind))
    {
        return Err(NoPlan::SlotsBusy);
    }
    Ok(cmd)
}
