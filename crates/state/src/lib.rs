//! Cairn's replicated state machine.
//!
//! Every Raft member applies the same [`Cmd`]s in the same order to a
//! [`State`] and must end with the same state (same [`State::digest`]). This
//! crate is deliberately pure: no tokio, no I/O, no clock reads. Time enters
//! only as the leader-stamped [`EntryMeta::leader_time_ms`] of each entry.
//!
//! The rule that keeps replay and rolling upgrades safe: **the leader decides,
//! the log records the decision, `apply` only validates and records.** `apply`
//! never chooses a placement or a schedule; see `docs/state-machine.md`.

#![forbid(unsafe_code)]

mod apply;
pub use apply::validate_capabilities;
mod chunk;
mod cmd;
mod config;
mod copy;
mod error;
mod load;
mod snapshot;
mod state;
mod topology;
mod volume;

pub use chunk::{Chunk, ChunkSpaceInfo, ChunkState, Session, MAX_SILENT_MS};
pub use cmd::{Cmd, CreateVolume, EntryMeta, Reply, SilentSession, UpdateExtent};
pub use config::{ClusterConfig, ConfigError, Provisioning, BP_PER_UNIT};
pub use copy::{CopyId, CopyKind, FinishCopy, IssueCopy, RunningCopy};
pub use error::{CmdError, LocError};
pub use load::{LoadMode, LoadRatio};
pub use snapshot::{SnapshotError, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
pub use state::{InvariantViolation, MemberInfo, State, StateExt};
pub use topology::{Distance, TopoKind, TopoNode, ROOT_ID};
pub use volume::{Extent, ExtentRef, Loc, Volume};

/// Chunk id. Assigned by the state machine, starts at 1, never reused; 0 means "none".
pub type Cid = u32;
/// Physical extent id. Assigned by the state machine in one contiguous range per volume.
pub type Pid = u64;
/// Volume id, assigned by the state machine.
pub type VolumeId = u64;
/// Id of a topology node (cluster, zone, rack, brick). Chunks are addressed by [`Cid`].
pub type TopoId = u64;
/// Session id, assigned by the state machine, strictly increasing.
pub type SessionId = u64;

/// Size of one physical extent.
pub const EXTENT_SIZE_BYTES: u64 = 256 << 20;
/// Most cids one extent's `loc` may hold (expected replicas + in-flight copies).
pub const MAX_LOC: usize = 6;
/// Largest volume accepted (64 TiB = 262,144 extents): bounds the size of the
/// `CreateVolume` log entry, which carries every extent's loc (~2.6 MB here).
pub const MAX_VOLUME_BYTES: u64 = 1 << 46;
/// Longest name accepted for any named object.
pub const MAX_NAME_BYTES: usize = 128;
