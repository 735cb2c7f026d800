//! What the planners emit: one recover or migrate command per extent, and
//! the reasons an extent got none.

use std::fmt;

use cairn_state::{Cid, CopyKind, Extent, IssueCopy, Pid, RunningCopy, UpdateExtent};
use thiserror::Error;

use crate::placement::Filter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Re-create a missing replica: copy `src -> dst`.
    Recover,
    /// Move a healthy replica: copy `src -> dst`, then drop `replace`.
    Migrate,
}

/// Who asked for the command (printed as `mode` by the CLI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Auto,
    /// An operator's recover or migrate (§5.6).
    Manual,
    /// An operator's gather of a volume or extent onto one chunk (§5.6).
    Gather,
}

/// The rule that produced the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Why {
    MissingReplica,
    Locality,
    Capacity,
    TopologySafety,
    EvenVolume,
    StretchedGather,
    Operator,
    /// Decided by an earlier leader and taken over from the replicated
    /// state (the log records the command, not the rule behind it).
    Adopted,
}

/// Where the command's lease owner came from (§5.2 priority order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnerSource {
    Existing,
    Src,
    Dst,
    /// Some other non-failslow chunk, by owner priority.
    Fallback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchedCmd {
    /// Assigned by the scheduler, increasing; the runner pairs it with its term.
    pub id: u64,
    pub kind: Kind,
    pub pid: Pid,
    /// The extent generation the command was planned against.
    pub generation: u64,
    pub src: Cid,
    pub dst: Cid,
    /// Migrate only: the replica dropped once `dst` holds a copy.
    pub replace: Option<Cid>,
    pub owner: Cid,
    pub owner_from: OwnerSource,
    pub mode: Mode,
    pub why: Why,
    /// Bytes the copy adds to `dst`.
    pub bytes: u64,
}

impl fmt::Display for SchedCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {:?} pid {} {} -> {}",
            self.id, self.kind, self.pid, self.src, self.dst
        )?;
        if let Some(r) = self.replace {
            write!(f, " replace {r}")?;
        }
        write!(
            f,
            " owner {} ({:?}) {:?}/{:?}",
            self.owner, self.owner_from, self.mode, self.why
        )
    }
}

/// Why an extent got no command this round.
#[derive(Error, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoPlan {
    #[error("extent not found")]
    NoExtent,
    #[error("nothing to do: the extent already matches its expected distribution")]
    NotNeeded,
    #[error("no alive replica to copy from")]
    NoAliveReplica,
    #[error("a command for this extent is already running")]
    Running,
    #[error("no chunk qualifies as destination (last filter: {0:?})")]
    NoDst(DstReject),
    #[error("no alive replica may be replaced")]
    NoReplace,
    #[error("no chunk can own the lease of the command")]
    NoOwner,
    #[error("the chunks that qualify have no free command slot")]
    SlotsBusy,
    #[error("the command no longer matches the extent ({0})")]
    Stale(&'static str),
    #[error("the round's move budget is spent")]
    Budget,
}

impl NoPlan {
    /// Waiting helps (slots free up, budgets refill); anything else needs the
    /// world to change first.
    pub fn is_transient(self) -> bool {
        matches!(self, NoPlan::SlotsBusy | NoPlan::Budget | NoPlan::Running)
    }
}

/// Why a chunk cannot be a destination (in the order the checks run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DstReject {
    /// One of the placement filters (not registered, no session, failslow, space).
    Filter(Filter),
    /// The chunk already holds a replica (alive or not) of this extent.
    HoldsReplica,
    /// Stretched cluster: the chunk is not in the zone that lacks a replica.
    WrongZone,
    /// The move would make the extent's replicas less spread.
    LowersSafety,
    /// The move would leave the stretched 2:1 ratio further off.
    BreaksZoneRatio,
    /// No free slot of the needed kind.
    NoFreeSlot,
    /// Recover: the best chunk with a free slot is dropped because this
    /// busy chunk ranks before it and is safer (it shares no rack with an
    /// alive replica, and is farther from them); the extent waits for its slot.
    SaferChunkBusy(Cid),
    /// Locality move: only the prefer-local chunk is a destination.
    NotPreferLocal,
    /// Capacity move: the chunk is not below the cluster load.
    NotBelowClusterLoad,
    /// Even volume: the chunk holds too many of the volume's replicas already.
    NotEmptier,
    /// Topology-safety move: the best destination would not make the
    /// replicas strictly more spread.
    NotSafer,
}

impl DstReject {
    /// One line for an operator (`cairn sched explain`).
    pub fn describe(self) -> &'static str {
        match self {
            DstReject::Filter(f) => f.describe(),
            DstReject::HoldsReplica => "chunk already holds a replica of this extent",
            DstReject::WrongZone => "chunk is not in the zone the replica must go to",
            DstReject::LowersSafety => "the move would leave the replicas less spread",
            DstReject::BreaksZoneRatio => "the move would take the zones further from 2:1",
            DstReject::NoFreeSlot => "chunk has no free destination slot",
            DstReject::SaferChunkBusy(_) => {
                "a safer chunk (no alive replica in its rack) ranks first but has no free slot: \
                 the extent waits for it rather than lower topology safety"
            }
            DstReject::NotPreferLocal => "a locality move only goes to the prefer-local chunk",
            DstReject::NotBelowClusterLoad => "chunk is not below the cluster load",
            DstReject::NotEmptier => "chunk would not leave the volume more even",
            DstReject::NotSafer => "not strictly more spread than the current replicas",
        }
    }
}

/// Why a finished command can no longer be recorded.
#[derive(Error, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionError {
    #[error("destination {0} already in loc")]
    DstInLoc(Cid),
    #[error("replica {0} to replace is not in loc")]
    ReplaceGone(Cid),
    #[error("the result would leave no alive replica")]
    NothingAlive,
    #[error("the result would exceed the loc capacity")]
    TooLong,
}

impl SchedCmd {
    /// The scheduler's view of a copy the state records (a leader taking
    /// office adopts the copies its predecessors issued), planned against
    /// `generation`.
    pub fn adopted(c: &RunningCopy, generation: u64) -> SchedCmd {
        SchedCmd {
            id: 0,
            kind: match c.kind {
                CopyKind::Recover => Kind::Recover,
                CopyKind::Migrate => Kind::Migrate,
            },
            pid: c.pid,
            generation,
            src: c.src,
            dst: c.dst,
            replace: (c.replace != 0).then_some(c.replace),
            owner: c.owner,
            owner_from: OwnerSource::Existing,
            mode: if c.manual { Mode::Manual } else { Mode::Auto },
            why: Why::Adopted,
            bytes: cairn_state::EXTENT_SIZE_BYTES,
        }
    }

    /// The log entry that issues this copy, fenced by the deciding `term`
    /// (the inverse of [`SchedCmd::adopted`]).
    pub fn issue_copy(&self, term: u64) -> IssueCopy {
        IssueCopy {
            term,
            kind: match self.kind {
                Kind::Recover => CopyKind::Recover,
                Kind::Migrate => CopyKind::Migrate,
            },
            pid: self.pid,
            generation: self.generation,
            src: self.src,
            dst: self.dst,
            replace: self.replace.unwrap_or(0),
            owner: self.owner,
            manual: self.mode != Mode::Auto,
        }
    }

    /// The compare-and-set that records a finished copy against the extent as
    /// it is *now* (`expected_generation` = its current generation): dead
    /// replicas leave `loc`, `dst` joins it alive, a migrate drops `replace`.
    /// An owner that is dropped loses the lease (the next writer re-acquires).
    pub fn completion(&self, current: &Extent) -> Result<UpdateExtent, CompletionError> {
        let loc = &current.loc;
        if loc.contains(self.dst) {
            return Err(CompletionError::DstInLoc(self.dst));
        }
        let mut alive: Vec<Cid> = loc.alive_loc().collect();
        if let Some(r) = self.replace {
            if !loc.contains(r) {
                return Err(CompletionError::ReplaceGone(r));
            }
            alive.retain(|&c| c != r);
        }
        if alive.is_empty() {
            return Err(CompletionError::NothingAlive);
        }
        alive.push(self.dst);
        if alive.len() > cairn_state::MAX_LOC {
            return Err(CompletionError::TooLong);
        }
        let owner_dropped = current.lease_owner != 0 && !alive.contains(&current.lease_owner);
        Ok(UpdateExtent {
            pid: self.pid,
            expected_generation: current.generation,
            loc: Some(alive.clone()),
            alive_loc: Some(alive),
            lease_owner: owner_dropped.then_some(0),
        })
    }
}
