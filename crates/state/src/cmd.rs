//! The replicated commands.
//!
//! Log-format rules (bincode is not self-describing):
//! - variants of [`Cmd`] are only ever appended, never reordered or removed;
//! - a struct carried in the log never changes shape in place: a new shape is
//!   a new struct and a new variant;
//! - a new variant (or a new config key) is written only after the capability
//!   that introduces it is active, so an older member never receives an entry
//!   it cannot decode or would apply differently.

use serde::{Deserialize, Serialize};

use crate::chunk::{ChunkSpaceInfo, ChunkState};
use crate::config::Provisioning;
use crate::copy::{CopyId, FinishCopy, IssueCopy};
use crate::topology::TopoKind;
use crate::{Cid, Pid, SessionId, TopoId, VolumeId};

/// Position and leader-stamped time of the log entry being applied.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryMeta {
    pub index: u64,
    pub term: u64,
    /// Wall time stamped by the leader when it proposed the entry: the only
    /// way time enters `apply`, so every member applies time-dependent rules
    /// identically.
    pub leader_time_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Add a zone (under the cluster), rack (under a zone) or brick (under a rack).
    AddTopo {
        kind: TopoKind,
        parent: TopoId,
        name: String,
    },
    /// Give a rack or brick a new parent. Never changes its name.
    MoveTopo {
        id: TopoId,
        parent: TopoId,
    },
    RenameTopo {
        id: TopoId,
        name: String,
    },
    /// Refused while the node has children or chunks.
    RemoveTopo {
        id: TopoId,
    },
    /// Returns the new cid. The name defaults to `chunk<cid>`.
    RegisterChunk {
        hostname: String,
        data_addr: String,
        brick: Option<TopoId>,
        version: String,
        capabilities: Vec<String>,
    },
    /// Put a chunk into a brick (None = unracked). Never changes its name.
    MoveChunk {
        cid: Cid,
        brick: Option<TopoId>,
    },
    RenameChunk {
        cid: Cid,
        name: String,
    },
    /// Registered -> Removing -> Removed (or Removing -> Registered to cancel).
    SetChunkState {
        cid: Cid,
        state: ChunkState,
    },
    SetFailslow {
        cid: Cid,
        failslow: bool,
    },
    ReportSpace {
        cid: Cid,
        space: ChunkSpaceInfo,
    },
    /// Opens a session; a live one for the same cid is closed in the same apply.
    OpenSession {
        cid: Cid,
        lease_ms: u64,
    },
    /// The chunk leaves: its replicas stop being alive.
    CloseSession {
        cid: Cid,
        session_id: SessionId,
    },
    /// The leader saw the lease run out: its replicas stop being alive.
    /// Names the session, so an expiry of an older session is rejected.
    ExpireSession {
        cid: Cid,
        session_id: SessionId,
    },
    CreateVolume(CreateVolume),
    DeleteVolume {
        volume_id: VolumeId,
    },
    /// Compare-and-set on the extent's generation.
    UpdateExtent(UpdateExtent),
    SetConfig {
        key: String,
        value: String,
    },
    /// Once active, a feature stays active.
    ActivateFeature {
        name: String,
    },
    /// The leader's freshness checkpoint: the live sessions it has not heard
    /// from for a while, with how long. Every live session not listed is
    /// fresh. A new leader gives full grace only to fresh sessions, so a dead
    /// chunk still expires while the leader keeps changing (docs/sessions.md).
    SessionCheckpoint {
        silent: Vec<SilentSession>,
    },
    /// A recover or migrate copy the leader decided (crate::copy). Returns
    /// its id.
    IssueCopy(IssueCopy),
    /// A new leader takes over every running copy: they carry its term.
    AdoptCopies {
        term: u64,
    },
    /// A copy ended: done (with the extent's new location, compare-and-set
    /// on generation) or dropped.
    FinishCopy(FinishCopy),
    /// A meta member's version and capabilities, said by the member when it
    /// starts (and so again after an upgrade restart). Part of the first
    /// release's upgrade protocol: every version decodes it.
    AdvertiseMember {
        node_id: u64,
        version: String,
        capabilities: Vec<String>,
    },
    /// `cairn upgrade hold|release`: while held, the leader activates no
    /// capability (the operator can still roll back).
    HoldUpgrade {
        hold: bool,
    },
    /// A known chunk says its (new) version and capabilities: a chunk
    /// restarted after an upgrade, in the entry that opens its session.
    AdvertiseChunk {
        cid: Cid,
        version: String,
        capabilities: Vec<String>,
    },
}

/// A session the leader has not heard from for `silent_ms`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SilentSession {
    pub cid: Cid,
    pub session_id: SessionId,
    pub silent_ms: u64,
}

/// A volume with every extent's location already chosen by the leader.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreateVolume {
    pub name: String,
    pub size_bytes: u64,
    pub provisioning: Provisioning,
    pub replicas: u8,
    /// 0 = none.
    pub prefer_cid: Cid,
    pub even: bool,
    /// 0 = none.
    pub preferred_zone: TopoId,
    /// One `loc` per extent, `ceil(size_bytes / EXTENT_SIZE_BYTES)` of them.
    pub locs: Vec<Vec<Cid>>,
}

/// Change an extent's loc / alive_loc / lease_owner if its generation is
/// still `expected_generation`. `None` keeps a field as it is (with a new
/// `loc` and no `alive_loc`, alive_loc becomes old alive_loc ∩ new loc).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UpdateExtent {
    pub pid: Pid,
    pub expected_generation: u64,
    pub loc: Option<Vec<Cid>>,
    pub alive_loc: Option<Vec<Cid>>,
    /// Some(0) clears the owner.
    pub lease_owner: Option<Cid>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Done,
    TopoId(TopoId),
    Cid(Cid),
    Session {
        session_id: SessionId,
        /// The session this one replaced, if the cid had one.
        replaced: Option<SessionId>,
    },
    Volume {
        volume_id: VolumeId,
        first_pid: Pid,
        extents: u64,
    },
    /// The extent's generation after the update.
    Generation(u64),
    Copy(CopyId),
}
