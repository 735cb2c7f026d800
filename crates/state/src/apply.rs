//! `apply`: validate a command against the state and record it.
//!
//! Every handler validates completely before it mutates anything, so a
//! rejected command leaves the state exactly as it was. No handler chooses
//! anything (placement, schedules, lease lengths): those are decided by the
//! leader and arrive inside the command.

use crate::chunk::{Chunk, ChunkSpaceInfo, ChunkState, Session, MAX_SILENT_MS};
use crate::cmd::{Cmd, CreateVolume, EntryMeta, Reply, SilentSession, UpdateExtent};
use crate::config::{ConfigError, MAX_LEASE_MS, MIN_LEASE_MS};
use crate::copy::{FinishCopy, IssueCopy, RunningCopy};
use crate::error::{CmdError, LocError};
use crate::state::State;
use crate::topology::{TopoKind, TopoNode};
use crate::volume::{Extent, Loc, Volume};
use crate::{
    Cid, SessionId, TopoId, VolumeId, EXTENT_SIZE_BYTES, MAX_NAME_BYTES, MAX_VOLUME_BYTES,
};

/// Longest hostname, data address or version string accepted.
const MAX_FIELD_BYTES: usize = 255;
/// Most capabilities one chunk may advertise.
const MAX_CAPABILITIES: usize = 256;

impl State {
    /// Applies one committed command. Never panics; on `Err` nothing changed.
    pub fn apply(&mut self, meta: EntryMeta, cmd: &Cmd) -> Result<Reply, CmdError> {
        self.check_position(meta)?;
        let now_ms = self.now_ms.max(meta.leader_time_ms);
        let reply = self.apply_cmd(cmd, now_ms, meta.term)?;
        self.advance(meta, now_ms);
        Ok(reply)
    }

    /// Applies the commands of one log entry in order, each validated on its
    /// own against the state the previous ones left (the leader batches
    /// client writes into one entry). A stale entry rejects them all. The
    /// position advances if at least one command was applied.
    pub fn apply_batch(&mut self, meta: EntryMeta, cmds: &[Cmd]) -> Vec<Result<Reply, CmdError>> {
        if let Err(e) = self.check_position(meta) {
            return cmds.iter().map(|_| Err(e.clone())).collect();
        }
        let now_ms = self.now_ms.max(meta.leader_time_ms);
        let results: Vec<_> = cmds
            .iter()
            .map(|cmd| self.apply_cmd(cmd, now_ms, meta.term))
            .collect();
        if results.iter().any(Result::is_ok) {
            self.advance(meta, now_ms);
        }
        results
    }

    fn check_position(&self, meta: EntryMeta) -> Result<(), CmdError> {
        if meta.index <= self.last_index || meta.term < self.last_term {
            return Err(CmdError::StaleEntry {
                index: meta.index,
                term: meta.term,
                last_index: self.last_index,
                last_term: self.last_term,
            });
        }
        Ok(())
    }

    fn advance(&mut self, meta: EntryMeta, now_ms: u64) {
        self.last_index = meta.index;
        self.last_term = meta.term;
        self.now_ms = now_ms;
    }

    fn apply_cmd(&mut self, cmd: &Cmd, now_ms: u64, term: u64) -> Result<Reply, CmdError> {
        match cmd {
            Cmd::AddTopo { kind, parent, name } => self.add_topo(*kind, *parent, name),
            Cmd::MoveTopo { id, parent } => self.move_topo(*id, *parent),
            Cmd::RenameTopo { id, name } => self.rename_topo(*id, name),
            Cmd::RemoveTopo { id } => self.remove_topo(*id),
            Cmd::RegisterChunk {
                hostname,
                data_addr,
                brick,
                version,
                capabilities,
            } => self.register_chunk(hostname, data_addr, *brick, version, capabilities),
            Cmd::MoveChunk { cid, brick } => self.move_chunk(*cid, *brick),
            Cmd::RenameChunk { cid, name } => self.rename_chunk(*cid, name),
            Cmd::SetChunkState { cid, state } => self.set_chunk_state(*cid, *state),
            Cmd::SetFailslow { cid, failslow } => self.set_failslow(*cid, *failslow),
            Cmd::ReportSpace { cid, space } => self.report_space(*cid, space),
            Cmd::OpenSession { cid, lease_ms } => self.open_session(*cid, *lease_ms, now_ms),
            Cmd::CloseSession { cid, session_id } | Cmd::ExpireSession { cid, session_id } => {
                self.end_session(*cid, *session_id)
            }
            Cmd::CreateVolume(cv) => self.create_volume(cv),
            Cmd::DeleteVolume { volume_id } => self.delete_volume(*volume_id),
            Cmd::UpdateExtent(u) => self.update_extent(u),
            Cmd::SetConfig { key, value } => self.set_config(key, value),
            Cmd::ActivateFeature { name } => self.activate_feature(name),
            Cmd::SessionCheckpoint { silent } => self.session_checkpoint(silent),
            Cmd::IssueCopy(c) => self.issue_copy(c, term, now_ms),
            Cmd::AdoptCopies { term: t } => self.adopt_copies(*t, term),
            Cmd::FinishCopy(f) => self.finish_copy(f),
            Cmd::AdvertiseMember {
                node_id,
                version,
                capabilities,
            } => self.advertise_member(*node_id, version, capabilities, now_ms),
            Cmd::AdvertiseChunk {
                cid,
                version,
                capabilities,
            } => {
                validate_capabilities(version, capabilities)?;
                let c = self.chunk_mut(*cid)?;
                c.version = version.clone();
                c.capabilities = capabilities.iter().cloned().collect();
                Ok(Reply::Done)
            }
            Cmd::HoldUpgrade { hold } => {
                self.ext.upgrade_hold = *hold;
                Ok(Reply::Done)
            }
        }
    }

    // ---- topology ----------------------------------------------------------

    fn add_topo(&mut self, kind: TopoKind, parent: TopoId, name: &str) -> Result<Reply, CmdError> {
        if kind == TopoKind::Cluster {
            return Err(CmdError::RootIsFixed);
        }
        validate_name(name)?;
        self.check_parent(kind, parent)?;
        if self.topology.name_taken(kind, name, 0) {
            return Err(name_taken(kind, name));
        }
        let id = self.topology.next_id;
        let next_id = next(id, "topology")?;
        self.topology.nodes.insert(
            id,
            TopoNode {
                id,
                kind,
                parent,
                name: name.to_string(),
            },
        );
        self.topology.next_id = next_id;
        Ok(Reply::TopoId(id))
    }

    fn move_topo(&mut self, id: TopoId, parent: TopoId) -> Result<Reply, CmdError> {
        let kind = self.topo_kind(id)?;
        if kind == TopoKind::Cluster {
            return Err(CmdError::RootIsFixed);
        }
        self.check_parent(kind, parent)?;
        if let Some(n) = self.topology.nodes.get_mut(&id) {
            n.parent = parent; // only the parent changes: moving never renames
        }
        self.rebuild_distance();
        Ok(Reply::Done)
    }

    fn rename_topo(&mut self, id: TopoId, name: &str) -> Result<Reply, CmdError> {
        let kind = self.topo_kind(id)?;
        validate_name(name)?;
        if self.topology.name_taken(kind, name, id) {
            return Err(name_taken(kind, name));
        }
        if let Some(n) = self.topology.nodes.get_mut(&id) {
            n.name = name.to_string();
        }
        Ok(Reply::Done)
    }

    fn remove_topo(&mut self, id: TopoId) -> Result<Reply, CmdError> {
        if self.topo_kind(id)? == TopoKind::Cluster {
            return Err(CmdError::RootIsFixed);
        }
        let children = self.topology.has_children(id)
            + self.chunks.iter().filter(|c| c.brick == Some(id)).count();
        if children > 0 {
            return Err(CmdError::NotEmpty { id, children });
        }
        let volumes = self
            .volumes
            .values()
            .filter(|v| v.preferred_zone == id)
            .count();
        if volumes > 0 {
            return Err(CmdError::ZoneInUse { id, volumes });
        }
        if self.config.default_zone == id {
            return Err(CmdError::DefaultZone(id));
        }
        self.topology.nodes.remove(&id);
        Ok(Reply::Done)
    }

    fn topo_kind(&self, id: TopoId) -> Result<TopoKind, CmdError> {
        self.topology
            .nodes
            .get(&id)
            .map(|n| n.kind)
            .ok_or(CmdError::TopoNotFound(id))
    }

    fn check_parent(&self, kind: TopoKind, parent: TopoId) -> Result<(), CmdError> {
        let actual = self.topo_kind(parent)?;
        match kind.parent_kind() {
            Some(expected) if expected == actual => Ok(()),
            Some(expected) => Err(CmdError::WrongParentKind {
                kind,
                expected,
                parent,
                actual,
            }),
            None => Err(CmdError::RootIsFixed),
        }
    }

    fn check_brick(&self, brick: Option<TopoId>) -> Result<(), CmdError> {
        match brick {
            None => Ok(()),
            Some(b) => match self.topo_kind(b)? {
                TopoKind::Brick => Ok(()),
                actual => Err(CmdError::WrongParentKind {
                    kind: TopoKind::Brick, // a chunk hangs off a brick
                    expected: TopoKind::Brick,
                    parent: b,
                    actual,
                }),
            },
        }
    }

    // ---- chunks ------------------------------------------------------------

    fn register_chunk(
        &mut self,
        hostname: &str,
        data_addr: &str,
        brick: Option<TopoId>,
        version: &str,
        capabilities: &[String],
    ) -> Result<Reply, CmdError> {
        validate_field("hostname", hostname, false)?;
        validate_field("data_addr", data_addr, true)?;
        validate_capabilities(version, capabilities)?;
        self.check_brick(brick)?;
        let cid = u32::try_from(self.chunks.len() + 1)
            .ok()
            .filter(|&c| c != u32::MAX)
            .ok_or_else(|| CmdError::IdsExhausted {
                kind: "chunk".into(),
            })?;
        self.chunks.push(Chunk {
            cid,
            name: Chunk::default_name(cid),
            hostname: hostname.to_string(),
            data_addr: data_addr.to_string(),
            brick,
            failslow: false,
            state: ChunkState::Registered,
            version: version.to_string(),
            capabilities: capabilities.iter().cloned().collect(),
            space: ChunkSpaceInfo::default(),
        });
        self.sessions.push(None);
        self.rebuild_distance();
        Ok(Reply::Cid(cid))
    }

    /// The chunk, if it exists and is not removed.
    fn live_chunk(&self, cid: Cid) -> Result<&Chunk, CmdError> {
        let c = self.chunk(cid).ok_or(CmdError::ChunkNotFound(cid))?;
        if c.state == ChunkState::Removed {
            return Err(CmdError::ChunkState {
                cid,
                state: c.state,
                needed: "not removed".into(),
            });
        }
        Ok(c)
    }

    fn chunk_mut(&mut self, cid: Cid) -> Result<&mut Chunk, CmdError> {
        self.live_chunk(cid)?;
        let i = (cid as usize)
            .checked_sub(1)
            .ok_or(CmdError::ChunkNotFound(cid))?;
        self.chunks.get_mut(i).ok_or(CmdError::ChunkNotFound(cid))
    }

    fn move_chunk(&mut self, cid: Cid, brick: Option<TopoId>) -> Result<Reply, CmdError> {
        self.live_chunk(cid)?;
        self.check_brick(brick)?;
        self.chunk_mut(cid)?.brick = brick; // only the brick changes: moving never renames
        self.rebuild_distance();
        Ok(Reply::Done)
    }

    fn rename_chunk(&mut self, cid: Cid, name: &str) -> Result<Reply, CmdError> {
        self.live_chunk(cid)?;
        validate_name(name)?;
        // `chunk<N>` is the default name of chunk N: reserving it means a
        // newly registered chunk can always take its default name.
        if let Some(n) = name.strip_prefix("chunk") {
            if !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && name != Chunk::default_name(cid)
            {
                return Err(CmdError::InvalidName {
                    name: name.to_string(),
                    reason: "names chunk<N> are reserved for chunk N".into(),
                });
            }
        }
        if self.chunks.iter().any(|c| c.name == name && c.cid != cid) {
            return Err(CmdError::NameTaken {
                kind: "chunk".into(),
                name: name.to_string(),
            });
        }
        self.chunk_mut(cid)?.name = name.to_string();
        Ok(Reply::Done)
    }

    fn set_chunk_state(&mut self, cid: Cid, to: ChunkState) -> Result<Reply, CmdError> {
        let from = self.chunk(cid).ok_or(CmdError::ChunkNotFound(cid))?.state;
        use ChunkState::*;
        match (from, to) {
            (a, b) if a == b && a != Removed => return Ok(Reply::Done),
            (Registered, Removing) | (Removing, Registered) => {}
            (Removing, Removed) => {
                if let Some(s) = self.session(cid) {
                    return Err(CmdError::ChunkHasSession {
                        cid,
                        session_id: s.session_id,
                    });
                }
                let extents = self
                    .extents()
                    .filter(|e| e.extent.loc.contains(cid))
                    .count() as u64;
                if extents > 0 {
                    return Err(CmdError::ChunkInUse { cid, extents });
                }
            }
            _ => return Err(CmdError::BadTransition { cid, from, to }),
        }
        if to == Removing {
            self.end_copies_of(cid, true);
        }
        let c = self.chunk_mut(cid)?;
        c.state = to;
        if to == Removed {
            // Free the brick (so it can be removed) and the name (so it can be reused).
            c.brick = None;
            c.name = Chunk::default_name(cid);
            self.rebuild_distance();
            // A removed chunk is local to no consumer any more.
            for v in self.volumes.values_mut() {
                if v.prefer_cid == cid {
                    v.prefer_cid = 0;
                }
                for e in v.extents.iter_mut().filter(|e| e.prefer_cid == cid) {
                    e.prefer_cid = 0;
                }
            }
        }
        Ok(Reply::Done)
    }

    fn set_failslow(&mut self, cid: Cid, failslow: bool) -> Result<Reply, CmdError> {
        self.chunk_mut(cid)?.failslow = failslow;
        Ok(Reply::Done)
    }

    fn report_space(&mut self, cid: Cid, space: &ChunkSpaceInfo) -> Result<Reply, CmdError> {
        self.live_chunk(cid)?;
        space
            .validate()
            .map_err(|reason| CmdError::InvalidSpace { cid, reason })?;
        self.chunk_mut(cid)?.space = *space;
        Ok(Reply::Done)
    }

    // ---- sessions ----------------------------------------------------------

    fn open_session(&mut self, cid: Cid, lease_ms: u64, now_ms: u64) -> Result<Reply, CmdError> {
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&lease_ms) {
            return Err(CmdError::InvalidLease(lease_ms));
        }
        self.live_chunk(cid)?;
        let session_id = self.next_session_id;
        let next_session_id = next(session_id, "session")?;
        // The old session (if any) is closed in this same apply: a cid never
        // has two live sessions. The restarted chunk lost its in-memory I/O
        // leases, so it owns none any more; its replicas stay alive (the data
        // is on its disks, and it is back).
        let slot = self.session_slot(cid).ok_or(CmdError::ChunkNotFound(cid))?;
        let replaced = slot
            .replace(Session {
                session_id,
                cid,
                opened_at_ms: now_ms,
                lease_ms,
                silent_ms: 0,
            })
            .map(|old| old.session_id);
        self.next_session_id = next_session_id;
        if replaced.is_some() {
            self.detach_chunk(cid, false);
            self.end_copies_of(cid, false);
        }
        Ok(Reply::Session {
            session_id,
            replaced,
        })
    }

    /// Close or expire: the session must be the live one (a stale expiry from
    /// a deposed leader names an older session and is rejected). The chunk's
    /// replicas stop being alive and it loses every lease it owned.
    fn end_session(&mut self, cid: Cid, session_id: SessionId) -> Result<Reply, CmdError> {
        self.chunk(cid).ok_or(CmdError::ChunkNotFound(cid))?;
        let live = self.session(cid).map(|s| s.session_id);
        if live != Some(session_id) {
            return Err(CmdError::StaleSession {
                cid,
                session_id,
                live,
            });
        }
        if let Some(slot) = self.session_slot(cid) {
            *slot = None;
        }
        self.detach_chunk(cid, true);
        self.end_copies_of(cid, false);
        Ok(Reply::Done)
    }

    /// Replaces the recorded silence of every live session: listed ones get
    /// theirs, the others become fresh. An entry naming a session that is no
    /// longer live (closed or replaced after the leader looked) is skipped:
    /// it says nothing about the session that is live now.
    fn session_checkpoint(&mut self, silent: &[SilentSession]) -> Result<Reply, CmdError> {
        if silent.len() > self.chunks.len() {
            return Err(CmdError::InvalidCheckpoint(format!(
                "{} silent sessions for {} chunks",
                silent.len(),
                self.chunks.len()
            )));
        }
        let mut listed = std::collections::BTreeMap::new();
        for s in silent {
            if s.silent_ms > MAX_SILENT_MS {
                return Err(CmdError::InvalidCheckpoint(format!(
                    "chunk {} silent for {} ms, more than {MAX_SILENT_MS}",
                    s.cid, s.silent_ms
                )));
            }
            if listed.insert(s.cid, (s.session_id, s.silent_ms)).is_some() {
                return Err(CmdError::InvalidCheckpoint(format!(
                    "chunk {} listed twice",
                    s.cid
                )));
            }
        }
        for session in self.sessions.iter_mut().flatten() {
            session.silent_ms = match listed.get(&session.cid) {
                Some(&(id, ms)) if id == session.session_id => ms,
                _ => 0,
            };
        }
        Ok(Reply::Done)
    }

    /// Copies that need `cid`'s current session end with it: a chunk that
    /// restarted or went silent lost its part of the copy (a restarted
    /// destination has no partial data, a restarted owner no stream), so a
    /// result reported later must not count. They are dropped, and the
    /// leader's scheduler plans the extent again. With `dst_only`, only the
    /// copies into `cid` (a chunk leaving service takes no new replica).
    fn end_copies_of(&mut self, cid: Cid, dst_only: bool) {
        self.copies.retain(|_, c| {
            if dst_only {
                c.dst != cid
            } else {
                c.src != cid && c.dst != cid && c.owner != cid
            }
        });
    }

    /// The chunk loses every lease it owns and, with `mark_dead`, leaves
    /// every `alive_loc`; each extent that changed gets a new generation.
    fn detach_chunk(&mut self, cid: Cid, mark_dead: bool) {
        for e in self.volumes.values_mut().flat_map(|v| v.extents.iter_mut()) {
            let was_alive = mark_dead && e.loc.mark_dead(cid);
            let was_owner = e.lease_owner == cid;
            if was_owner {
                e.lease_owner = 0;
            }
            if was_alive || was_owner {
                // 2^64 changes to one extent cannot happen; saturate rather
                // than refuse an expiry over it.
                e.generation = e.generation.saturating_add(1);
            }
        }
    }

    // ---- volumes and extents -----------------------------------------------

    fn create_volume(&mut self, cv: &CreateVolume) -> Result<Reply, CmdError> {
        validate_name(&cv.name)?;
        if self.volume_by_name(&cv.name).is_some() {
            return Err(CmdError::NameTaken {
                kind: "volume".into(),
                name: cv.name.clone(),
            });
        }
        let invalid = |m: String| Err(CmdError::InvalidVolume(m));
        if !(2..=3).contains(&cv.replicas) {
            return invalid(format!("replicas must be 2 or 3, not {}", cv.replicas));
        }
        if cv.size_bytes == 0 || cv.size_bytes > MAX_VOLUME_BYTES {
            return invalid(format!("size_bytes must be in 1..={MAX_VOLUME_BYTES}"));
        }
        let n = cv.size_bytes.div_ceil(EXTENT_SIZE_BYTES);
        if cv.locs.len() as u64 != n {
            return invalid(format!(
                "{} locs given, the size needs {n} extents",
                cv.locs.len()
            ));
        }
        if cv.prefer_cid != 0 {
            self.live_chunk(cv.prefer_cid)?;
        }
        if cv.preferred_zone != 0 && self.topo_kind(cv.preferred_zone)? != TopoKind::Zone {
            return invalid(format!(
                "preferred_zone {} is not a zone",
                cv.preferred_zone
            ));
        }
        let volume_id = self.next_volume_id;
        let next_volume_id = next(volume_id, "volume")?;
        let first_pid = self.next_pid;
        let next_pid = first_pid
            .checked_add(n)
            .ok_or_else(|| CmdError::IdsExhausted { kind: "pid".into() })?;
        let mut extents = Vec::new();
        extents
            .try_reserve_exact(cv.locs.len())
            .map_err(|_| CmdError::InvalidVolume("out of memory".into()))?;
        for (i, loc) in cv.locs.iter().enumerate() {
            let pid = first_pid + i as u64;
            let err = |reason| CmdError::InvalidLoc { pid, reason };
            if loc.len() != usize::from(cv.replicas) {
                return Err(err(LocError::WrongCount {
                    len: loc.len(),
                    expected: usize::from(cv.replicas),
                }));
            }
            for &cid in loc {
                self.check_new_replica(cid).map_err(err)?;
            }
            // A new replica is alive exactly when its chunk has a session.
            let alive: Vec<Cid> = loc
                .iter()
                .copied()
                .filter(|c| self.has_session(*c))
                .collect();
            extents.push(Extent {
                generation: 1,
                loc: Loc::new(loc, &alive).map_err(err)?,
                lease_owner: 0,
                prefer_cid: cv.prefer_cid,
                expected_replicas: cv.replicas,
            });
        }
        self.volumes.insert(
            volume_id,
            Volume {
                id: volume_id,
                name: cv.name.clone(),
                size_bytes: cv.size_bytes,
                provisioning: cv.provisioning,
                replicas: cv.replicas,
                prefer_cid: cv.prefer_cid,
                even: cv.even,
                preferred_zone: cv.preferred_zone,
                first_pid,
                extents,
            },
        );
        self.pid_index.insert(first_pid, volume_id);
        self.next_volume_id = next_volume_id;
        self.next_pid = next_pid;
        Ok(Reply::Volume {
            volume_id,
            first_pid,
            extents: n,
        })
    }

    /// A chunk that is to receive a new replica must exist and be in service.
    fn check_new_replica(&self, cid: Cid) -> Result<(), LocError> {
        match self.chunk(cid) {
            None => Err(LocError::UnknownChunk(cid)),
            Some(c) if c.state != ChunkState::Registered => Err(LocError::ChunkNotUsable {
                cid,
                state: c.state,
            }),
            Some(_) => Ok(()),
        }
    }

    fn delete_volume(&mut self, volume_id: VolumeId) -> Result<Reply, CmdError> {
        let v = self
            .volumes
            .remove(&volume_id)
            .ok_or(CmdError::VolumeNotFound(volume_id))?;
        self.pid_index.remove(&v.first_pid);
        // Copies of a deleted volume have nothing left to finish.
        let pids = v.pids();
        self.copies.retain(|_, c| !pids.contains(&c.pid));
        Ok(Reply::Done)
    }

    fn update_extent(&mut self, u: &UpdateExtent) -> Result<Reply, CmdError> {
        let pid = u.pid;
        let cur = *self
            .extent(pid)
            .ok_or(CmdError::ExtentNotFound(pid))?
            .extent;
        if cur.generation != u.expected_generation {
            return Err(CmdError::GenerationMismatch {
                pid,
                expected: u.expected_generation,
                actual: cur.generation,
            });
        }
        let err = |reason| CmdError::InvalidLoc { pid, reason };
        let new_loc: &[Cid] = u.loc.as_deref().unwrap_or(cur.loc.cids());
        for &cid in new_loc {
            // Replicas already in loc may sit on a chunk being drained; new ones may not.
            if !cur.loc.contains(cid) {
                self.check_new_replica(cid).map_err(err)?;
            }
        }
        let kept_alive: Vec<Cid>;
        let alive: &[Cid] = match &u.alive_loc {
            Some(a) => a,
            None => {
                kept_alive = cur
                    .loc
                    .alive_loc()
                    .filter(|c| new_loc.contains(c))
                    .collect();
                &kept_alive
            }
        };
        let loc = Loc::new(new_loc, alive).map_err(err)?;
        if let Some(cid) = loc.alive_loc().find(|c| !self.has_session(*c)) {
            return Err(err(LocError::NoSession(cid)));
        }
        let owner = u.lease_owner.unwrap_or(cur.lease_owner);
        if owner != 0 && owner != cur.lease_owner {
            self.chunk(owner)
                .ok_or(err(LocError::UnknownChunk(owner)))?;
            if !self.has_session(owner) {
                return Err(err(LocError::NoSession(owner)));
            }
        }
        if loc == cur.loc && owner == cur.lease_owner {
            return Ok(Reply::Generation(cur.generation));
        }
        let generation = cur
            .generation
            .checked_add(1)
            .ok_or(CmdError::GenerationExhausted(pid))?;
        let vid = self
            .volume_id_of(pid)
            .ok_or(CmdError::ExtentNotFound(pid))?;
        let e = self
            .volumes
            .get_mut(&vid)
            .and_then(|v| v.extent_mut(pid))
            .ok_or(CmdError::ExtentNotFound(pid))?;
        e.loc = loc;
        e.lease_owner = owner;
        e.generation = generation;
        Ok(Reply::Generation(generation))
    }

    // ---- copies ----------------------------------------------------------

    /// Checks a decided copy against the state and records it: the leader
    /// placed it, `apply` only refuses what the state makes impossible.
    fn issue_copy(
        &mut self,
        c: &IssueCopy,
        entry_term: u64,
        now_ms: u64,
    ) -> Result<Reply, CmdError> {
        let pid = c.pid;
        let invalid = |reason: String| CmdError::InvalidCopy { pid, reason };
        if c.term != entry_term {
            return Err(invalid(format!(
                "decided in term {} but proposed in term {entry_term}",
                c.term
            )));
        }
        if c.term < self.copy_term {
            return Err(CmdError::StaleTerm {
                term: c.term,
                current: self.copy_term,
            });
        }
        let e = *self
            .extent(pid)
            .ok_or(CmdError::ExtentNotFound(pid))?
            .extent;
        if e.generation != c.generation {
            return Err(CmdError::GenerationMismatch {
                pid,
                expected: c.generation,
                actual: e.generation,
            });
        }
        if let Some(running) = self.copy_of(pid) {
            return Err(CmdError::ExtentBusy {
                pid,
                copy_id: running.copy_id,
            });
        }
        if !e.loc.is_alive(c.src) {
            return Err(invalid(format!("src {} holds no alive replica", c.src)));
        }
        if c.dst == 0 || e.loc.contains(c.dst) {
            return Err(invalid(format!("dst {} already holds a replica", c.dst)));
        }
        self.check_new_replica(c.dst)
            .map_err(|e| invalid(format!("dst: {e}")))?;
        if !self.has_session(c.dst) {
            return Err(invalid(format!("dst {} has no session", c.dst)));
        }
        if c.replace != 0 && !e.loc.contains(c.replace) {
            return Err(invalid(format!("replace {} holds no replica", c.replace)));
        }
        if c.owner != 0 && !self.has_session(c.owner) {
            return Err(invalid(format!("owner {} has no session", c.owner)));
        }
        let copy_id = self.next_copy_id;
        let next = copy_id.checked_add(1).ok_or(CmdError::IdsExhausted {
            kind: "copy".into(),
        })?;
        self.copies.insert(
            copy_id,
            RunningCopy {
                copy_id,
                term: c.term,
                kind: c.kind,
                pid,
                src: c.src,
                dst: c.dst,
                replace: c.replace,
                owner: c.owner,
                manual: c.manual,
                issued_ms: now_ms,
            },
        );
        self.next_copy_id = next;
        self.copy_term = c.term;
        Ok(Reply::Copy(copy_id))
    }

    fn adopt_copies(&mut self, term: u64, entry_term: u64) -> Result<Reply, CmdError> {
        if term != entry_term || term < self.copy_term {
            return Err(CmdError::StaleTerm {
                term,
                current: self.copy_term.max(entry_term),
            });
        }
        for c in self.copies.values_mut() {
            c.term = term;
        }
        self.copy_term = term;
        Ok(Reply::Done)
    }

    fn finish_copy(&mut self, f: &FinishCopy) -> Result<Reply, CmdError> {
        let c = self
            .copies
            .get(&f.copy_id)
            .ok_or(CmdError::CopyNotFound(f.copy_id))?
            .clone();
        if c.term != f.term {
            return Err(CmdError::CopyTermMismatch {
                copy_id: c.copy_id,
                term: f.term,
                current: c.term,
            });
        }
        let reply = match &f.update {
            None => Reply::Done,
            Some(u) => {
                let invalid = |reason: String| CmdError::InvalidCopy { pid: c.pid, reason };
                if u.pid != c.pid {
                    return Err(invalid(format!("the result names extent {}", u.pid)));
                }
                // The copy's result: dst holds an alive replica now, and a
                // migrate's `replace` has left.
                let loc = u.loc.as_deref().unwrap_or(&[]);
                let alive = u.alive_loc.as_deref().unwrap_or(loc);
                if !loc.contains(&c.dst) || !alive.contains(&c.dst) {
                    return Err(invalid(format!(
                        "dst {} is not an alive replica in the result",
                        c.dst
                    )));
                }
                if c.replace != 0 && loc.contains(&c.replace) {
                    return Err(invalid(format!(
                        "replace {} is still in the result",
                        c.replace
                    )));
                }
                self.update_extent(u)?
            }
        };
        self.copies.remove(&f.copy_id);
        Ok(reply)
    }

    // ---- config and features -----------------------------------------------

    fn set_config(&mut self, key: &str, value: &str) -> Result<Reply, CmdError> {
        let next = self.config.with(key, value)?;
        // The one key that refers to the topology, which the config cannot see.
        if next.default_zone != 0 && self.topo_kind(next.default_zone).ok() != Some(TopoKind::Zone)
        {
            return Err(ConfigError::InvalidValue {
                key: key.to_string(),
                value: value.to_string(),
                reason: format!("{} is not a zone", next.default_zone),
            }
            .into());
        }
        self.config = next;
        Ok(Reply::Done)
    }

    fn advertise_member(
        &mut self,
        node_id: u64,
        version: &str,
        capabilities: &[String],
        now_ms: u64,
    ) -> Result<Reply, CmdError> {
        if node_id == 0 {
            return Err(CmdError::InvalidName {
                name: "node_id 0".into(),
                reason: "member ids start at 1".into(),
            });
        }
        validate_capabilities(version, capabilities)?;
        if !self.ext.members.contains_key(&node_id) && self.ext.members.len() >= MAX_MEMBER_RECORDS
        {
            return Err(CmdError::IdsExhausted {
                kind: format!("member record (at most {MAX_MEMBER_RECORDS})"),
            });
        }
        let info = crate::state::MemberInfo {
            version: version.to_string(),
            capabilities: capabilities.iter().cloned().collect(),
            since_ms: now_ms,
        };
        let same = self
            .ext
            .members
            .get(&node_id)
            .is_some_and(|m| m.version == info.version && m.capabilities == info.capabilities);
        if !same {
            self.ext.members.insert(node_id, info);
        }
        Ok(Reply::Done)
    }

    fn activate_feature(&mut self, name: &str) -> Result<Reply, CmdError> {
        if !valid_token(name) {
            return Err(CmdError::InvalidFeatureName(name.to_string()));
        }
        if !self.active_features.insert(name.to_string()) {
            return Err(CmdError::FeatureAlreadyActive(name.to_string()));
        }
        Ok(Reply::Done)
    }
}

/// Most member records kept (a Raft group has a handful of members; the
/// bound keeps the snapshot's member tail small whatever clients send).
const MAX_MEMBER_RECORDS: usize = 64;

/// A version string and an advertised capability set (chunks and members),
/// as `apply` checks them: also for the node to refuse a bad advert before
/// proposing anything.
pub fn validate_capabilities(version: &str, capabilities: &[String]) -> Result<(), CmdError> {
    validate_field("version", version, true)?;
    if capabilities.len() > MAX_CAPABILITIES {
        return Err(CmdError::InvalidName {
            name: format!("{} capabilities", capabilities.len()),
            reason: "too many capabilities (at most 256)".into(),
        });
    }
    if let Some(bad) = capabilities.iter().find(|c| !valid_token(c)) {
        return Err(CmdError::InvalidName {
            name: bad.clone(),
            reason: "a capability is 1-64 of [a-z0-9_]".into(),
        });
    }
    Ok(())
}

/// The id after `id`, or an error if the counter is exhausted.
fn next(id: u64, kind: &'static str) -> Result<u64, CmdError> {
    id.checked_add(1)
        .ok_or_else(|| CmdError::IdsExhausted { kind: kind.into() })
}

fn name_taken(kind: TopoKind, name: &str) -> CmdError {
    CmdError::NameTaken {
        kind: match kind {
            TopoKind::Cluster => "cluster",
            TopoKind::Zone => "zone",
            TopoKind::Rack => "rack",
            TopoKind::Brick => "brick",
        }
        .into(),
        name: name.to_string(),
    }
}

fn validate_name(name: &str) -> Result<(), CmdError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_BYTES {
        "longer than 128 bytes"
    } else if name.chars().any(char::is_control) {
        "contains control characters"
    } else if name.trim() != name {
        "has leading or trailing whitespace"
    } else {
        return Ok(());
    };
    Err(CmdError::InvalidName {
        name: name.to_string(),
        reason: reason.into(),
    })
}

fn validate_field(what: &'static str, value: &str, may_be_empty: bool) -> Result<(), CmdError> {
    if (value.is_empty() && !may_be_empty)
        || value.len() > MAX_FIELD_BYTES
        || value.chars().any(char::is_control)
    {
        return Err(CmdError::InvalidName {
            name: value.to_string(),
            reason: match what {
                "hostname" => "a hostname is 1-255 bytes without control characters",
                "data_addr" => "a data address is at most 255 bytes without control characters",
                _ => "a version is at most 255 bytes without control characters",
            }
            .into(),
        });
    }
    Ok(())
}

/// Feature and capability names: 1-64 of `[a-z0-9_]`.
pub(crate) fn valid_token(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
