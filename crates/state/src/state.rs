//! The state every member holds, its read API and its invariants.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::chunk::{Chunk, ChunkState, Session};
use crate::config::{ClusterConfig, Provisioning};
use crate::copy::{CopyId, RunningCopy};
use crate::load::{LoadMode, LoadRatio};
use crate::topology::{Distance, DistanceTable, TopoKind, TopoNode, Topology, ROOT_ID};
use crate::volume::{ExtentRef, Volume};
use crate::{Cid, Pid, SessionId, TopoId, VolumeId, EXTENT_SIZE_BYTES, MAX_VOLUME_BYTES};

/// The replicated state. Mutated only by [`State::apply`].
///
/// Fields without `#[serde(skip)]` are the logical state: they are what a
/// snapshot holds and what the digest covers. Skipped fields are indexes
/// rebuilt from them.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct State {
    pub(crate) last_index: u64,
    pub(crate) last_term: u64,
    /// Max leader-stamped time seen: leader clocks may disagree, state time never goes back.
    pub(crate) now_ms: u64,
    pub(crate) config: ClusterConfig,
    pub(crate) topology: Topology,
    /// Indexed by `cid - 1`; cids are dense and never reused.
    pub(crate) chunks: Vec<Chunk>,
    /// Indexed by `cid - 1`, like `chunks`: a cid has one slot, so it can
    /// never have two live sessions, and liveness is an O(1) lookup.
    pub(crate) sessions: Vec<Option<Session>>,
    pub(crate) next_session_id: SessionId,
    pub(crate) volumes: BTreeMap<VolumeId, Volume>,
    pub(crate) next_volume_id: VolumeId,
    pub(crate) next_pid: Pid,
    pub(crate) active_features: BTreeSet<String>,
    /// Copies in flight (recover / migrate), by id (crate::copy).
    pub(crate) copies: BTreeMap<CopyId, RunningCopy>,
    pub(crate) next_copy_id: CopyId,
    /// The highest term that issued or adopted copies: an `IssueCopy` or
    /// `AdoptCopies` of a lower term is refused.
    pub(crate) copy_term: u64,
    /// Logical state added after the first release (members' versions,
    /// the upgrade hold). It is encoded after this struct in the snapshot
    /// body (snapshot version 2), so this struct keeps the v1 shape and a v1
    /// snapshot still decodes (crate::snapshot).
    #[serde(skip)]
    pub(crate) ext: StateExt,
    /// Derived: chunk positions for O(1) topology distance.
    #[serde(skip)]
    pub(crate) distance: DistanceTable,
    /// Derived: first pid of each volume -> volume id.
    #[serde(skip)]
    pub(crate) pid_index: BTreeMap<Pid, VolumeId>,
}

/// The logical state that the first release's snapshot shape has no room
/// for; appended to the snapshot body. Only ever gains fields at its end
/// together with a new snapshot version.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct StateExt {
    /// Each meta member's last advertised version and capabilities.
    pub(crate) members: BTreeMap<u64, MemberInfo>,
    /// `cairn upgrade hold`: no capability is activated while set.
    pub(crate) upgrade_hold: bool,
}

/// What a meta member said of itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberInfo {
    pub version: String,
    pub capabilities: BTreeSet<String>,
    /// State time of the advertisement.
    pub since_ms: u64,
}

/// A broken invariant, found in a restored snapshot or by a test.
#[derive(Error, Debug, Clone, PartialEq, Eq)]
#[error("state invariant violated: {0}")]
pub struct InvariantViolation(pub String);

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    pub fn new() -> State {
        State {
            last_index: 0,
            last_term: 0,
            now_ms: 0,
            config: ClusterConfig::default(),
            topology: Topology::new(),
            chunks: Vec::new(),
            sessions: Vec::new(),
            next_session_id: 1,
            volumes: BTreeMap::new(),
            next_volume_id: 1,
            next_pid: 1,
            active_features: BTreeSet::new(),
            copies: BTreeMap::new(),
            next_copy_id: 1,
            copy_term: 0,
            ext: StateExt::default(),
            distance: DistanceTable::default(),
            pid_index: BTreeMap::new(),
        }
    }

    /// Rebuilds every derived index from the logical state.
    pub(crate) fn rebuild_derived(&mut self) {
        self.rebuild_distance();
        self.pid_index = self.volumes.values().map(|v| (v.first_pid, v.id)).collect();
    }

    pub(crate) fn rebuild_distance(&mut self) {
        self.distance = DistanceTable::build(&self.topology, self.chunks.iter().map(|c| c.brick));
    }

    // ---- reads -------------------------------------------------------------

    /// Index and term of the last command applied successfully.
    pub fn last_applied(&self) -> (u64, u64) {
        (self.last_index, self.last_term)
    }

    /// State time: the largest leader-stamped time applied so far.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn topo_node(&self, id: TopoId) -> Option<&TopoNode> {
        self.topology.nodes.get(&id)
    }

    /// All topology nodes in id order (the root cluster first).
    pub fn topo_nodes(&self) -> impl Iterator<Item = &TopoNode> {
        self.topology.nodes.values()
    }

    pub fn zones(&self) -> impl Iterator<Item = &TopoNode> {
        self.topology.zones()
    }

    pub fn chunk(&self, cid: Cid) -> Option<&Chunk> {
        (cid as usize)
            .checked_sub(1)
            .and_then(|i| self.chunks.get(i))
    }

    /// All chunks ever registered (removed ones included), in cid order.
    pub fn chunks(&self) -> std::slice::Iter<'_, Chunk> {
        self.chunks.iter()
    }

    pub fn session(&self, cid: Cid) -> Option<&Session> {
        (cid as usize)
            .checked_sub(1)
            .and_then(|i| self.sessions.get(i))
            .and_then(Option::as_ref)
    }

    /// Live sessions in cid order.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().flatten()
    }

    pub fn has_session(&self, cid: Cid) -> bool {
        self.session(cid).is_some()
    }

    pub(crate) fn session_slot(&mut self, cid: Cid) -> Option<&mut Option<Session>> {
        (cid as usize)
            .checked_sub(1)
            .and_then(|i| self.sessions.get_mut(i))
    }

    pub fn volume(&self, id: VolumeId) -> Option<&Volume> {
        self.volumes.get(&id)
    }

    pub fn volumes(&self) -> impl Iterator<Item = &Volume> {
        self.volumes.values()
    }

    pub fn volume_by_name(&self, name: &str) -> Option<&Volume> {
        self.volumes.values().find(|v| v.name == name)
    }

    pub(crate) fn volume_id_of(&self, pid: Pid) -> Option<VolumeId> {
        let (_, &vid) = self.pid_index.range(..=pid).next_back()?;
        Some(vid)
    }

    pub fn extent(&self, pid: Pid) -> Option<ExtentRef<'_>> {
        let volume = self.volumes.get(&self.volume_id_of(pid)?)?;
        let extent = volume.extent(pid)?;
        Some(ExtentRef {
            pid,
            volume,
            extent,
        })
    }

    /// Every extent, in pid order.
    pub fn extents(&self) -> impl Iterator<Item = ExtentRef<'_>> {
        self.volumes.values().flat_map(|volume| {
            volume
                .extents
                .iter()
                .enumerate()
                .map(move |(i, extent)| ExtentRef {
                    pid: volume.first_pid.saturating_add(i as u64),
                    volume,
                    extent,
                })
        })
    }

    pub fn extent_count(&self) -> u64 {
        self.volumes.values().map(|v| v.extents.len() as u64).sum()
    }

    /// Copies in flight, by id.
    pub fn copies(&self) -> impl Iterator<Item = &RunningCopy> {
        self.copies.values()
    }

    pub fn copy(&self, id: CopyId) -> Option<&RunningCopy> {
        self.copies.get(&id)
    }

    /// The running copy of an extent (at most one).
    pub fn copy_of(&self, pid: Pid) -> Option<&RunningCopy> {
        self.copies.values().find(|c| c.pid == pid)
    }

    /// The term that last issued or adopted copies.
    pub fn copy_term(&self) -> u64 {
        self.copy_term
    }

    pub fn active_features(&self) -> &BTreeSet<String> {
        &self.active_features
    }

    /// Every meta member's last advertisement (members that left the Raft
    /// membership keep theirs: the caller filters by the membership).
    pub fn members(&self) -> &BTreeMap<u64, MemberInfo> {
        &self.ext.members
    }

    pub fn upgrade_hold(&self) -> bool {
        self.ext.upgrade_hold
    }

    pub fn feature_active(&self, name: &str) -> bool {
        self.active_features.contains(name)
    }

    /// Topology distance; `None` if either cid is unknown. O(1).
    pub fn distance(&self, a: Cid, b: Cid) -> Option<Distance> {
        self.distance.distance(a, b)
    }

    /// The zone of a racked chunk; `None` for unracked or unknown chunks.
    pub fn zone_of(&self, cid: Cid) -> Option<TopoId> {
        self.distance.pos(cid).map(|p| p.zone).filter(|&z| z != 0)
    }

    /// The rack of a racked chunk; `None` for unracked or unknown chunks.
    pub fn rack_of(&self, cid: Cid) -> Option<TopoId> {
        self.distance.pos(cid).map(|p| p.rack).filter(|&r| r != 0)
    }

    /// The numerator the cluster's provisioning mode counts as used.
    pub fn used_space(&self, chunk: &Chunk) -> u64 {
        match self.config.provisioning {
            Provisioning::Thin => chunk.space.provisioned_data_space,
            Provisioning::Thick => chunk.space.allocated_data_space,
        }
    }

    /// Chunk load ratio; `None` before the chunk reported any valid space.
    pub fn chunk_load(&self, chunk: &Chunk) -> Option<LoadRatio> {
        LoadRatio::new(self.used_space(chunk), chunk.space.valid_data_space)
    }

    /// Sum of used over sum of valid space of all chunks that are not removed.
    pub fn cluster_load(&self) -> Option<LoadRatio> {
        let (num, den) = self
            .chunks
            .iter()
            .filter(|c| c.state != ChunkState::Removed)
            .fold((0u64, 0u64), |(n, d), c| {
                (
                    n.saturating_add(self.used_space(c)),
                    d.saturating_add(c.space.valid_data_space),
                )
            });
        LoadRatio::new(num, den)
    }

    pub fn load_mode(&self, ratio: LoadRatio) -> LoadMode {
        ratio.mode(&self.config)
    }

    // ---- invariants --------------------------------------------------------

    /// Checks every invariant of the state. Used on restored snapshots (which
    /// bypass `apply`) and by the tests after every step.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let fail = |msg: String| Err(InvariantViolation(msg));
        self.config
            .validate()
            .or_else(|e| fail(format!("config: {e}")))?;

        // Topology.
        match self.topology.nodes.get(&ROOT_ID) {
            Some(n) if n.kind == TopoKind::Cluster && n.parent == 0 => {}
            _ => return fail("root cluster node missing".into()),
        }
        let mut names = BTreeSet::new();
        for (&id, n) in &self.topology.nodes {
            if n.id != id || id >= self.topology.next_id {
                return fail(format!("topology node {id} has a bad id"));
            }
            if n.kind == TopoKind::Cluster && id != ROOT_ID {
                return fail(format!("second cluster node {id}"));
            }
            if let Some(pk) = n.kind.parent_kind() {
                if self.topology.nodes.get(&n.parent).map(|p| p.kind) != Some(pk) {
                    return fail(format!("topology node {id} has a bad parent {}", n.parent));
                }
            }
            if !names.insert((n.kind, n.name.as_str())) {
                return fail(format!("duplicate {:?} name {:?}", n.kind, n.name));
            }
        }

        let dz = self.config.default_zone;
        if dz != 0 && self.topo_node(dz).map(|n| n.kind) != Some(TopoKind::Zone) {
            return fail(format!("default_zone {dz} is not a zone"));
        }

        // Chunks.
        let mut chunk_names = BTreeSet::new();
        for (i, c) in self.chunks.iter().enumerate() {
            if c.cid as usize != i + 1 {
                return fail(format!("chunk at slot {i} has cid {}", c.cid));
            }
            if !chunk_names.insert(c.name.as_str()) {
                return fail(format!("duplicate chunk name {:?}", c.name));
            }
            if let Some(b) = c.brick {
                if self.topology.nodes.get(&b).map(|n| n.kind) != Some(TopoKind::Brick) {
                    return fail(format!("chunk {} is in {b}, which is not a brick", c.cid));
                }
            }
            if c.state == ChunkState::Removed && c.brick.is_some() {
                return fail(format!("removed chunk {} still sits in a brick", c.cid));
            }
        }

        // Sessions.
        if self.sessions.len() != self.chunks.len() {
            return fail(format!(
                "{} session slots for {} chunks",
                self.sessions.len(),
                self.chunks.len()
            ));
        }
        for (i, s) in self
            .sessions
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.as_ref()?)))
        {
            let cid = Cid::try_from(i + 1).unwrap_or(0);
            if s.cid != cid || s.session_id == 0 || s.session_id >= self.next_session_id {
                return fail(format!("session of chunk {cid} is malformed"));
            }
            match self.chunk(cid) {
                Some(c) if c.state != ChunkState::Removed => {}
                _ => return fail(format!("session for unknown or removed chunk {cid}")),
            }
        }

        // Volumes and extents.
        let mut vol_names = BTreeSet::new();
        let mut pid_end = 0;
        let mut by_first_pid: Vec<&Volume> = self.volumes.values().collect();
        by_first_pid.sort_by_key(|v| v.first_pid);
        for v in by_first_pid {
            if self.volumes.get(&v.id).map(|x| x.id) != Some(v.id) || v.id >= self.next_volume_id {
                return fail(format!("volume {} has a bad id", v.id));
            }
            if !vol_names.insert(v.name.as_str()) {
                return fail(format!("duplicate volume name {:?}", v.name));
            }
            if v.preferred_zone != 0
                && self.topo_node(v.preferred_zone).map(|n| n.kind) != Some(TopoKind::Zone)
            {
                return fail(format!(
                    "volume {} prefers {}, which is not a zone",
                    v.id, v.preferred_zone
                ));
            }
            let live = |cid: Cid| {
                self.chunk(cid)
                    .is_some_and(|c| c.state != ChunkState::Removed)
            };
            if v.prefer_cid != 0 && !live(v.prefer_cid) {
                return fail(format!(
                    "volume {} prefers unknown or removed chunk {}",
                    v.id, v.prefer_cid
                ));
            }
            if !(2..=3).contains(&v.replicas) {
                return fail(format!("volume {} has {} replicas", v.id, v.replicas));
            }
            if v.size_bytes == 0 || v.size_bytes > MAX_VOLUME_BYTES {
                return fail(format!("volume {} has size {}", v.id, v.size_bytes));
            }
            if v.first_pid.checked_add(v.extents.len() as u64).is_none() {
                return fail(format!("volume {} pid range overflows", v.id));
            }
            if v.extents.len() as u64 != v.size_bytes.div_ceil(EXTENT_SIZE_BYTES) {
                return fail(format!("volume {} has the wrong number of extents", v.id));
            }
            if v.first_pid < pid_end.max(1) || v.pids().end > self.next_pid {
                return fail(format!(
                    "volume {} pid range overlaps or is unassigned",
                    v.id
                ));
            }
            pid_end = v.pids().end;
            if self.pid_index.get(&v.first_pid) != Some(&v.id) {
                return fail(format!("pid index misses volume {}", v.id));
            }
            for (pid, e) in v.pids().zip(&v.extents) {
                if !e.loc.well_formed()
                    || e.generation == 0
                    || !(2..=3).contains(&e.expected_replicas)
                {
                    return fail(format!("extent {pid} is malformed"));
                }
                for &cid in e.loc.cids() {
                    match self.chunk(cid) {
                        Some(c) if c.state != ChunkState::Removed => {}
                        _ => {
                            return fail(format!(
                                "extent {pid} loc holds unknown or removed chunk {cid}"
                            ))
                        }
                    }
                }
                if let Some(cid) = e.loc.alive_loc().find(|c| !self.has_session(*c)) {
                    return fail(format!("extent {pid}: alive cid {cid} has no session"));
                }
                if e.prefer_cid != 0 && !live(e.prefer_cid) {
                    return fail(format!(
                        "extent {pid} prefers unknown or removed chunk {}",
                        e.prefer_cid
                    ));
                }
                if e.lease_owner != 0 && !self.has_session(e.lease_owner) {
                    return fail(format!(
                        "extent {pid}: lease owner {} has no session",
                        e.lease_owner
                    ));
                }
            }
        }
        if self.pid_index.len() != self.volumes.len() {
            return fail("pid index has stale entries".into());
        }
        for f in &self.active_features {
            if !crate::apply::valid_token(f) {
                return fail(format!("bad feature name {f:?}"));
            }
        }
        let mut busy = BTreeSet::new();
        for (&id, c) in &self.copies {
            if id != c.copy_id || id >= self.next_copy_id {
                return fail(format!("copy {id}: bad id {}", c.copy_id));
            }
            if c.term > self.copy_term {
                return fail(format!(
                    "copy {id}: term {} after {}",
                    c.term, self.copy_term
                ));
            }
            if self.extent(c.pid).is_none() {
                return fail(format!("copy {id}: extent {} not found", c.pid));
            }
            if !busy.insert(c.pid) {
                return fail(format!("extent {} has two running copies", c.pid));
            }
        }
        Ok(())
    }
}
