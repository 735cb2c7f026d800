//! The scheduler's RPCs of the `Meta` service (status, explain, manual
//! commands, gather): glue between gRPC and the leader's `Scheduler`.
//! Each runs on the leader only; the caller has checked leadership.

use cairn_sched::{GatherTarget, Kind, ManualError, ManualRequest, Mode, SlotKind, Slots};
use cairn_state::{Cid, State};
use tonic::Status;

use crate::copies::{CopyBoard, EndedCopy, SchedHandle};
use crate::propose::now_ms;
use crate::types::pb;

/// Why the leader has no scheduler to answer with.
fn not_ready(state: &State) -> Status {
    if state.feature_active(cairn_capability::COPY_COMMANDS) {
        Status::unavailable("the leader is starting its scheduler; retry")
    } else {
        Status::failed_precondition(format!(
            "the scheduler is off until capability {} is active (a member runs an older version): see `cairn upgrade status`",
            cairn_capability::COPY_COMMANDS
        ))
    }
}

pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Auto => "auto",
        Mode::Manual => "manual",
        Mode::Gather => "gather",
    }
}

fn manual_status(e: &ManualError) -> Status {
    match e {
        ManualError::ExtentNotFound(_)
        | ManualError::VolumeNotFound(_)
        | ManualError::ChunkNotFound(_) => Status::not_found(e.to_string()),
        ManualError::ReplaceMissing | ManualError::ReplaceOnRecover(_) => {
            Status::invalid_argument(e.to_string())
        }
        ManualError::Queue(_) => Status::resource_exhausted(e.to_string()),
        _ => Status::failed_precondition(e.to_string()),
    }
}

const SLOT_KINDS: [SlotKind; 4] = [
    SlotKind::RecoverSrc,
    SlotKind::RecoverDst,
    SlotKind::MigrateSrc,
    SlotKind::MigrateDst,
];

fn slot_row(slots: &Slots, cid: Cid) -> pb::SlotUse {
    pb::SlotUse {
        cid,
        used: SLOT_KINDS.iter().map(|k| slots.used(cid, *k)).collect(),
        limit: SLOT_KINDS.iter().map(|k| slots.limit(cid, *k)).collect(),
    }
}

/// Queues, running copies (with progress and ETA from the chunks' reports),
/// slot use of every chunk with a session, and the replica health figures.
pub fn status(
    state: &State,
    sched: &SchedHandle,
    board: &CopyBoard,
    leader_id: u64,
) -> Result<pb::SchedStatusResponse, Status> {
    let wall = now_ms();
    let (mut degraded, mut lost, mut extents) = (0, 0, 0);
    for e in state.extents() {
        extents += 1;
        let alive = e.extent.loc.alive_count();
        if alive == 0 {
            lost += 1;
        } else if alive < usize::from(e.extent.expected_replicas) {
            degraded += 1;
        }
    }
    let running = state
        .copies()
        .map(|c| {
            let elapsed_ms = wall.saturating_sub(c.issued_ms);
            let p = board.progress(c.copy_id).unwrap_or_default();
            let eta_ms = match (p.done_bytes, p.total_bytes) {
                (d, t) if d > 0 && t >= d => {
                    (elapsed_ms as u128 * u128::from(t - d) / u128::from(d)) as u64
                }
                _ => 0,
            };
            pb::RunningCopy {
                command_id: c.copy_id,
                kind: match c.kind {
                    cairn_state::CopyKind::Recover => pb::CopyKind::Recover,
                    cairn_state::CopyKind::Migrate => pb::CopyKind::Migrate,
                } as i32,
                pid: c.pid,
                src: c.src,
                dst: c.dst,
                replace: c.replace,
                owner: c.owner,
                mode: if c.manual { "manual" } else { "auto" }.into(),
                term: c.term,
                elapsed_ms,
                done_bytes: p.done_bytes,
                total_bytes: p.total_bytes,
                eta_ms,
            }
        })
        .collect();
    let r = sched.with(|l| {
        let s = &l.scheduler;
        // Paused as committed, not as the scheduler last took it in (at
        // its next round): a `sched pause` that returned shows at once.
        let cfg = state.config();
        pb::SchedStatusResponse {
            leader_id,
            term: l.term,
            recover_paused: cfg.recover_paused,
            migrate_paused: cfg.migrate_paused,
            recover_queued: s.queue(Kind::Recover).len() as u64,
            migrate_queued: s.queue(Kind::Migrate).len() as u64,
            parked: s.parked().count() as u64,
            running: vec![],
            slots: state
                .chunks()
                .filter(|c| state.has_session(c.cid))
                .map(|c| slot_row(s.slots(), c.cid))
                .collect(),
            degraded,
            lost,
            finished: l.finished,
            failed: l.failed,
            extents,
            recent: l.recent.iter().map(ended_row).collect(),
        }
    });
    let mut r = r.ok_or_else(|| not_ready(state))?;
    r.running = running;
    Ok(r)
}

fn ended_row(e: &EndedCopy) -> pb::EndedCopy {
    pb::EndedCopy {
        command_id: e.cmd.id,
        kind: match e.cmd.kind {
            Kind::Recover => pb::CopyKind::Recover,
            Kind::Migrate => pb::CopyKind::Migrate,
        } as i32,
        pid: e.cmd.pid,
        src: e.cmd.src,
        dst: e.cmd.dst,
        replace: e.cmd.replace.unwrap_or(0),
        mode: mode_name(e.cmd.mode).into(),
        ok: e.ok,
        issued_ms: e.issued_ms,
        ended_ms: e.ended_ms,
    }
}

pub fn explain(state: &State, sched: &SchedHandle, pid: u64) -> Result<String, Status> {
    let now = now_ms();
    sched
        .with(|l| {
            l.scheduler
                .explain(state, pid, now)
                .map(|e| e.to_string())
                .map_err(|e| Status::not_found(e.to_string()))
        })
        .ok_or_else(|| not_ready(state))?
}

fn kind_of(k: i32) -> Result<Kind, Status> {
    match pb::CopyKind::try_from(k) {
        Ok(pb::CopyKind::Recover) => Ok(Kind::Recover),
        Ok(pb::CopyKind::Migrate) => Ok(Kind::Migrate),
        _ => Err(Status::invalid_argument("kind must be RECOVER or MIGRATE")),
    }
}

pub fn manual(
    state: &State,
    sched: &SchedHandle,
    r: &pb::ManualCopyRequest,
) -> Result<pb::ManualCopyResponse, Status> {
    let req = ManualRequest {
        kind: kind_of(r.kind)?,
        pid: r.pid,
        src: r.src,
        dst: r.dst,
        replace: (r.replace != 0).then_some(r.replace),
    };
    let now = now_ms();
    let accepted = sched
        .with(|l| {
            let a = l.scheduler.add_manual(state, &req, now);
            l.wake();
            a
        })
        .ok_or_else(|| not_ready(state))?
        .map_err(|e| manual_status(&e))?;
    tracing::info!(cmd = %accepted.cmd, "operator command queued at the front");
    Ok(pb::ManualCopyResponse {
        pid: accepted.pid,
        loc: accepted.loc,
        alive_loc: accepted.alive_loc,
        dst: accepted.dst,
        owner: accepted.owner,
        mode: mode_name(accepted.mode).into(),
        src: accepted.cmd.src,
        replace: accepted.cmd.replace.unwrap_or(0),
    })
}

pub fn gather(
    state: &State,
    sched: &SchedHandle,
    r: &pb::GatherRequest,
) -> Result<pb::GatherResponse, Status> {
    let target = match (r.volume_id, r.pid) {
        (0, 0) | (1.., 1..) => {
            return Err(Status::invalid_argument(
                "name exactly one of volume_id and pid",
            ))
        }
        (v, 0) => GatherTarget::Volume(v),
        (0, p) => GatherTarget::Extent(p),
    };
    let now = now_ms();
    let report = sched
        .with(|l| {
            let rep = l.scheduler.gather(state, target, r.cid, now);
            l.wake();
            rep
        })
        .ok_or_else(|| not_ready(state))?
        .map_err(|e| manual_status(&e))?;
    tracing::info!(cid = r.cid, queued = report.queued.len(), "gather queued");
    Ok(pb::GatherResponse {
        queued: report.queued.len() as u64,
        already_there: report.already_there,
        busy: report.busy.len() as u64,
        impossible: report.impossible.len() as u64,
        left_for_capacity: report.left_for_capacity,
    })
}
