//! Why a command was rejected. A rejected command leaves the state unchanged.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::chunk::ChunkState;
use crate::config::ConfigError;
use crate::topology::TopoKind;
use crate::{Cid, Pid, SessionId, TopoId, VolumeId};

#[derive(Error, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdError {
    #[error("entry {index} (term {term}) is not after the last applied entry {last_index} (term {last_term})")]
    StaleEntry {
        index: u64,
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    #[error("topology node {0} not found")]
    TopoNotFound(TopoId),
    #[error("a {kind:?} must hang off a {expected:?}, but {parent} is a {actual:?}")]
    WrongParentKind {
        kind: TopoKind,
        expected: TopoKind,
        parent: TopoId,
        actual: TopoKind,
    },
    #[error("there is only one cluster node; it cannot be added, moved or removed")]
    RootIsFixed,
    #[error("a {kind:?} named {name:?} already exists")]
    NameTaken { kind: String, name: String },
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("topology node {id} is not empty ({children} children); move or remove them first")]
    NotEmpty { id: TopoId, children: usize },
    #[error("zone {id} is the preferred zone of {volumes} volumes")]
    ZoneInUse { id: TopoId, volumes: usize },
    #[error("zone {0} is the cluster's default_zone; set another first")]
    DefaultZone(TopoId),
    #[error("chunk {0} not found")]
    ChunkNotFound(Cid),
    #[error("chunk {cid} is {state:?}, this needs it {needed}")]
    ChunkState {
        cid: Cid,
        state: ChunkState,
        needed: String,
    },
    #[error("chunk {cid} cannot go from {from:?} to {to:?}")]
    BadTransition {
        cid: Cid,
        from: ChunkState,
        to: ChunkState,
    },
    #[error("chunk {cid} still holds replicas of {extents} extents")]
    ChunkInUse { cid: Cid, extents: u64 },
    #[error("chunk {cid} still has live session {session_id}")]
    ChunkHasSession { cid: Cid, session_id: SessionId },
    #[error("no {kind} id left to assign")]
    IdsExhausted { kind: String },
    #[error("invalid space report for chunk {cid}: {reason}")]
    InvalidSpace { cid: Cid, reason: String },
    #[error("lease_ms {0} out of range 1000..=120000")]
    InvalidLease(u64),
    #[error("session {session_id} of chunk {cid} is not its live session (live: {live:?})")]
    StaleSession {
        cid: Cid,
        session_id: SessionId,
        live: Option<SessionId>,
    },
    #[error("volume {0} not found")]
    VolumeNotFound(VolumeId),
    #[error("invalid volume: {0}")]
    InvalidVolume(String),
    #[error("extent {0} not found")]
    ExtentNotFound(Pid),
    #[error("extent {pid}: {reason}")]
    InvalidLoc { pid: Pid, reason: LocError },
    #[error("extent {pid}: expected generation {expected}, current is {actual}")]
    GenerationMismatch {
        pid: Pid,
        expected: u64,
        actual: u64,
    },
    #[error("extent {0}: generation cannot grow any further")]
    GenerationExhausted(Pid),
    #[error("copies of term {term} are refused: term {current} already issued or adopted copies")]
    StaleTerm { term: u64, current: u64 },
    #[error("copy {0} is not running")]
    CopyNotFound(u64),
    #[error("copy {copy_id} carries term {current}, not {term}: a deposed leader's result")]
    CopyTermMismatch {
        copy_id: u64,
        term: u64,
        current: u64,
    },
    #[error("extent {pid} already has copy {copy_id} running")]
    ExtentBusy { pid: Pid, copy_id: u64 },
    #[error("invalid copy of extent {pid}: {reason}")]
    InvalidCopy { pid: Pid, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid feature name {0:?}: use 1-64 of [a-z0-9_]")]
    InvalidFeatureName(String),
    #[error("feature {0} is already active")]
    FeatureAlreadyActive(String),
    #[error("invalid session checkpoint: {0}")]
    InvalidCheckpoint(String),
}

/// What is wrong with a proposed `loc` / `alive_loc` / `lease_owner`.
#[derive(Error, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocError {
    #[error("loc is empty")]
    Empty,
    #[error("loc has {len} cids, at most {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("loc has {len} cids, the volume needs exactly {expected}")]
    WrongCount { len: usize, expected: usize },
    #[error("cid {0} appears twice")]
    Duplicate(Cid),
    #[error("cid {0} is not a known chunk")]
    UnknownChunk(Cid),
    #[error("chunk {cid} is {state:?} and cannot take a new replica")]
    ChunkNotUsable { cid: Cid, state: ChunkState },
    #[error("alive cid {0} is not in loc")]
    AliveNotInLoc(Cid),
    #[error("chunk {0} has no live session, so its replica cannot be alive or own the lease")]
    NoSession(Cid),
}
