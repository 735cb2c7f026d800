//! Manual commands and gather (DOMAIN.md §5.6).
//!
//! An operator's recover or migrate is validated (extent and chunks exist,
//! `src` holds an alive replica, `dst` holds none), conflict-checked by the
//! scheduler against running commands, and goes to the front of its queue.
//! Locality and topology preferences are not enforced; the lease-owner
//! rules are (they are about correctness, not preference).
//!
//! A gather brings one replica of every extent of a volume (or of one
//! extent) onto a chosen chunk, stopping before that chunk would reach
//! ultra-high load, and pins what it placed so the automatic planner does
//! not move it straight back.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use cairn_state::{ChunkState, Cid, Extent, Pid, VolumeId, EXTENT_SIZE_BYTES};
use thiserror::Error;

use crate::cmd::{Kind, Mode, SchedCmd, Why};
use crate::queue::QueueError;
use crate::rules::{allocate_owner, is_failslow, src_follows_owner, topology_safety, Ctx};

/// An operator's command: `replace` only (and always) for migrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManualRequest {
    pub kind: Kind,
    pub pid: Pid,
    pub src: Cid,
    pub dst: Cid,
    pub replace: Option<Cid>,
}

/// What the CLI prints for an accepted manual command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualAccepted {
    pub pid: Pid,
    pub loc: Vec<Cid>,
    pub alive_loc: Vec<Cid>,
    pub dst: Cid,
    pub owner: Cid,
    pub mode: Mode,
    /// The queued command (its `src` may be the owner, by the owner rule).
    pub cmd: SchedCmd,
}

#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum ManualError {
    #[error("extent {0} not found")]
    ExtentNotFound(Pid),
    #[error("volume {0} not found")]
    VolumeNotFound(VolumeId),
    #[error("chunk {0} not found")]
    ChunkNotFound(Cid),
    #[error("extent {pid}: src {src} holds no alive replica")]
    SrcNotAlive { pid: Pid, src: Cid },
    #[error("extent {pid}: dst {dst} already holds a replica")]
    DstHoldsReplica { pid: Pid, dst: Cid },
    #[error("chunk {cid} cannot take a new replica: {reason}")]
    DstUnusable { cid: Cid, reason: &'static str },
    #[error("a migrate needs the replica to replace")]
    ReplaceMissing,
    #[error("a recover replaces nothing (got replace {0})")]
    ReplaceOnRecover(Cid),
    #[error("extent {pid}: replace {replace} holds no replica")]
    ReplaceNotInLoc { pid: Pid, replace: Cid },
    #[error("extent {pid} is not missing a replica ({alive} alive of {expected})")]
    NothingToRecover {
        pid: Pid,
        alive: usize,
        expected: u8,
    },
    #[error("extent {pid} already has command #{id} ({kind:?}) running")]
    ConflictRunning { pid: Pid, id: u64, kind: Kind },
    #[error("extent {pid} already has an operator command queued")]
    ConflictQueued { pid: Pid },
    #[error("extent {pid}: no chunk can own the lease of the command")]
    NoOwner { pid: Pid },
    #[error("chunk {cid} would reach ultra-high load")]
    WouldBeUltraHigh { cid: Cid },
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Chunk exists and is not removed.
fn known_chunk(ctx: &Ctx<'_>, cid: Cid) -> Result<(), ManualError> {
    match ctx.state.chunk(cid) {
        Some(c) if c.state != ChunkState::Removed => Ok(()),
        _ => Err(ManualError::ChunkNotFound(cid)),
    }
}

/// A new replica needs a chunk in service with a session (what `apply`
/// will demand when the result is recorded); failslow is the operator's call.
fn dst_can_hold(ctx: &Ctx<'_>, cid: Cid) -> Result<(), ManualError> {
    let reason = match ctx.state.chunk(cid) {
        None => return Err(ManualError::ChunkNotFound(cid)),
        Some(c) if c.state != ChunkState::Registered => "it is not in service",
        Some(_) if !ctx.state.has_session(cid) => "it has no live session",
        Some(_) => return Ok(()),
    };
    Err(ManualError::DstUnusable { cid, reason })
}

/// Rule §5.6 validation of an operator's command. Conflicts with running
/// and queued commands are the scheduler's check (it holds them).
pub fn validate_manual(ctx: &Ctx<'_>, req: &ManualRequest) -> Result<SchedCmd, ManualError> {
    let pid = req.pid;
    let e = ctx
        .state
        .extent(pid)
        .ok_or(ManualError::ExtentNotFound(pid))?;
    let ext = e.extent;
    for cid in [req.src, req.dst].into_iter().chain(req.replace) {
        known_chunk(ctx, cid)?;
    }
    if !ext.loc.is_alive(req.src) {
        return Err(ManualError::SrcNotAlive { pid, src: req.src });
    }
    if ext.loc.contains(req.dst) {
        return Err(ManualError::DstHoldsReplica { pid, dst: req.dst });
    }
    dst_can_hold(ctx, req.dst)?;
    match (req.kind, req.replace) {
        (Kind::Recover, Some(r)) => return Err(ManualError::ReplaceOnRecover(r)),
        (Kind::Recover, None) => {
            let alive = ext.loc.alive_count();
            if alive >= usize::from(ext.expected_replicas) {
                return Err(ManualError::NothingToRecover {
                    pid,
                    alive,
                    expected: ext.expected_replicas,
                });
            }
        }
        (Kind::Migrate, None) => return Err(ManualError::ReplaceMissing),
        (Kind::Migrate, Some(r)) => {
            if !ext.loc.contains(r) {
                return Err(ManualError::ReplaceNotInLoc { pid, replace: r });
            }
        }
    }
    let (owner, owner_from) =
        allocate_owner(ctx, ext, req.src, req.dst).ok_or(ManualError::NoOwner { pid })?;
    Ok(SchedCmd {
        id: 0,
        kind: req.kind,
        pid,
        generation: ext.generation,
        src: src_follows_owner(ext, req.src, req.dst, owner),
        dst: req.dst,
        replace: req.replace,
        owner,
        owner_from,
        mode: Mode::Manual,
        why: Why::Operator,
        bytes: EXTENT_SIZE_BYTES,
    })
}

/// A manual placement the automatic planner must leave alone until `until_ms`.
#[derive(Clone, Debug, Default)]
pub struct Pins {
    by_pid: BTreeMap<Pid, (Cid, u64)>,
    by_volume: BTreeMap<VolumeId, (Cid, u64)>,
}

impl Pins {
    pub fn pin_extent(&mut self, pid: Pid, cid: Cid, until_ms: u64) {
        self.by_pid.insert(pid, (cid, until_ms));
    }

    pub fn pin_volume(&mut self, volume: VolumeId, cid: Cid, until_ms: u64) {
        self.by_volume.insert(volume, (cid, until_ms));
    }

    /// Rule §5.6 "not undone by the next round": the replica of `pid` on
    /// `cid` was placed by an operator and is not a migration's `replace`.
    pub fn is_pinned(&self, pid: Pid, volume: VolumeId, cid: Cid, now_ms: u64) -> bool {
        let hit = |p: Option<&(Cid, u64)>| p.is_some_and(|&(c, until)| c == cid && now_ms < until);
        hit(self.by_pid.get(&pid)) || hit(self.by_volume.get(&volume))
    }

    /// Drops expired pins (bounded memory).
    pub fn expire(&mut self, now_ms: u64) {
        self.by_pid.retain(|_, (_, until)| now_ms < *until);
        self.by_volume.retain(|_, (_, until)| now_ms < *until);
    }

    pub fn len(&self) -> usize {
        self.by_pid.len() + self.by_volume.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatherTarget {
    Volume(VolumeId),
    Extent(Pid),
}

/// What a gather did, extent by extent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatherReport {
    pub cid: Cid,
    /// Commands placed at the front of the queues.
    pub queued: Vec<SchedCmd>,
    /// Extents that already had an alive replica on the chunk.
    pub already_there: u64,
    /// Extents with a command running or an operator command queued.
    pub busy: Vec<Pid>,
    /// Extents left out because one more replica would bring the chunk to ultra-high load.
    pub left_for_capacity: u64,
    /// Extents with no alive replica to copy from or no owner.
    pub impossible: Vec<Pid>,
}

/// Rule §5.6 gather for one extent: a migrate onto `cid` (a recover if the
/// extent is short of replicas). The replaced replica: never prefer-local,
/// failslow first, the owner last, then the one whose departure leaves the
/// rest most spread, then highest cid.
pub fn gather_command(ctx: &Ctx<'_>, pid: Pid, ext: &Extent, cid: Cid) -> Option<SchedCmd> {
    let state = ctx.state;
    let short = ext.loc.alive_count() < usize::from(ext.expected_replicas);
    let replace = if short {
        None
    } else {
        let alive: Vec<Cid> = ext.loc.alive_loc().collect();
        Some(
            alive
                .iter()
                .copied()
                .filter(|&r| r != ext.prefer_cid)
                .min_by_key(|&r| {
                    let mut rest: Vec<Cid> = alive.iter().copied().filter(|&c| c != r).collect();
                    rest.push(cid);
                    (
                        !is_failslow(state, r),
                        r == ext.lease_owner,
                        Reverse(topology_safety(state, &rest)),
                        Reverse(r),
                    )
                })?,
        )
    };
    let src = ext
        .loc
        .alive_loc()
        .filter(|&c| crate::rules::can_serve(state, c))
        .min_by_key(|&c| (is_failslow(state, c), Some(c) != replace))?;
    let (owner, owner_from) = allocate_owner(ctx, ext, src, cid)?;
    Some(SchedCmd {
        id: 0,
        kind: if short { Kind::Recover } else { Kind::Migrate },
        pid,
        generation: ext.generation,
        src: src_follows_owner(ext, src, cid, owner),
        dst: cid,
        replace,
        owner,
        owner_from,
        mode: Mode::Gather,
        why: Why::Operator,
        bytes: EXTENT_SIZE_BYTES,
    })
}

/// Checks a gather's target chunk.
pub fn validate_gather_chunk(ctx: &Ctx<'_>, cid: Cid) -> Result<(), ManualError> {
    dst_can_hold(ctx, cid)?;
    if ctx.loads.valid(cid) == 0 {
        return Err(ManualError::DstUnusable {
            cid,
            reason: "it has reported no valid space",
        });
    }
    Ok(())
}
