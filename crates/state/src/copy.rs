//! Scheduled copies (recover and migrate commands) in the replicated state.
//!
//! The leader's scheduler decides a copy; `IssueCopy` records it, so a new
//! leader rebuilds its running commands and slot use from the state instead
//! of re-learning them from chunks (no command forgotten or duplicated
//! after a failover). `AdoptCopies` re-stamps every running copy with the
//! new leader's term when it takes office; `FinishCopy` must name the term
//! the copy carries now, so a completion stamped by a deposed leader's term
//! is rejected, and its extent update compare-and-sets on `generation`, so
//! a result computed against a stale view is rejected too
//! (docs/scheduling.md, "Fencing").

use serde::{Deserialize, Serialize};

use crate::cmd::UpdateExtent;
use crate::{Cid, Pid};

/// Identifies a copy; assigned by `apply`, strictly increasing.
pub type CopyId = u64;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyKind {
    /// Restore a missing replica.
    Recover,
    /// Move a healthy replica (`replace` leaves once the copy is done).
    Migrate,
}

/// A copy the leader decided. Logged as decided: `apply` checks it against
/// the state, never re-plans it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IssueCopy {
    /// The deciding leader's term; must be the entry's own term.
    pub term: u64,
    pub kind: CopyKind,
    pub pid: Pid,
    /// The extent's generation the plan was made against.
    pub generation: u64,
    pub src: Cid,
    pub dst: Cid,
    /// 0 = none.
    pub replace: Cid,
    /// The lease owner for the copy; 0 = none.
    pub owner: Cid,
    /// An operator's command (§5.6), not the scheduler's.
    pub manual: bool,
}

/// The end of a copy. `update: Some` = the copy succeeded and this is the
/// extent's new location (compare-and-set on its generation); `None` = it
/// failed, timed out or was abandoned: the copy is dropped and re-planned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FinishCopy {
    /// The term the copy carried when the chunk ran it.
    pub term: u64,
    pub copy_id: CopyId,
    pub update: Option<UpdateExtent>,
}

/// A copy in flight, as recorded in the state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunningCopy {
    pub copy_id: CopyId,
    /// The term of the leader that issued or last adopted it.
    pub term: u64,
    pub kind: CopyKind,
    pub pid: Pid,
    pub src: Cid,
    pub dst: Cid,
    pub replace: Cid,
    pub owner: Cid,
    pub manual: bool,
    /// Leader-stamped time of the `IssueCopy` (for timeouts and ETAs).
    pub issued_ms: u64,
}

impl RunningCopy {
    /// The chunk that runs the copy: its lease owner (it serves the
    /// extent's writes while the copy runs), else the destination.
    pub fn executor(&self) -> Cid {
        if self.owner != 0 {
            self.owner
        } else {
            self.dst
        }
    }
}
