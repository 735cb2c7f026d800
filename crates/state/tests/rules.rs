//! The rules of `cairn-state`, one test per rule, written as a specification.
//!
//! Each test reads given / when / then. Every rejected command is checked to
//! leave the state exactly as it was (same digest, same last applied entry),
//! and every applied command is followed by `check_invariants`.

use cairn_state::{
    Chunk, ChunkSpaceInfo, ChunkState, Cid, ClusterConfig, Cmd, CmdError, ConfigError,
    CreateVolume, Distance, EntryMeta, LoadMode, LoadRatio, LocError, Pid, Provisioning, Reply,
    SessionId, SilentSession, SnapshotError, State, TopoId, TopoKind, UpdateExtent, VolumeId,
    EXTENT_SIZE_BYTES, ROOT_ID, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};

// ---- fixture -----------------------------------------------------------------

/// A `State` fed by an ever-advancing log: each command gets the next index,
/// the current term and the current leader time.
struct Cluster {
    state: State,
    index: u64,
    term: u64,
    time_ms: u64,
}

/// One extent as the rules talk about it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ext {
    loc: Vec<Cid>,
    alive: Vec<Cid>,
    owner: Cid,
    generation: u64,
}

const LEASE_MS: u64 = 7_000;

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            state: State::new(),
            index: 0,
            term: 1,
            time_ms: 1_000_000,
        }
    }

    fn next_meta(&mut self) -> EntryMeta {
        self.index += 1;
        EntryMeta {
            index: self.index,
            term: self.term,
            leader_time_ms: self.time_ms,
        }
    }

    fn apply_meta(&mut self, meta: EntryMeta, cmd: &Cmd) -> Result<Reply, CmdError> {
        let r = self.state.apply(meta, cmd);
        if let Err(v) = self.state.check_invariants() {
            panic!("after {cmd:?} -> {r:?}: {v}");
        }
        r
    }

    fn apply(&mut self, cmd: Cmd) -> Result<Reply, CmdError> {
        let meta = self.next_meta();
        self.apply_meta(meta, &cmd)
    }

    #[track_caller]
    fn ok(&mut self, cmd: Cmd) -> Reply {
        match self.apply(cmd.clone()) {
            Ok(r) => r,
            Err(e) => panic!("{cmd:?} was rejected: {e:?}"),
        }
    }

    /// Applies a command that must be rejected, and checks that nothing changed.
    #[track_caller]
    fn rejected(&mut self, cmd: Cmd) -> CmdError {
        let digest = self.state.digest();
        let applied = self.state.last_applied();
        let now = self.state.now_ms();
        let err = match self.apply(cmd.clone()) {
            Ok(r) => panic!("{cmd:?} should have been rejected, got {r:?}"),
            Err(e) => e,
        };
        assert_eq!(
            self.state.digest(),
            digest,
            "rejected {cmd:?} ({err:?}) changed the state"
        );
        assert_eq!(
            self.state.last_applied(),
            applied,
            "a rejected entry must not count as applied"
        );
        assert_eq!(
            self.state.now_ms(),
            now,
            "a rejected entry must not move state time"
        );
        err
    }

    #[track_caller]
    fn topo(&mut self, kind: TopoKind, parent: TopoId, name: &str) -> TopoId {
        match self.ok(Cmd::AddTopo {
            kind,
            parent,
            name: name.into(),
        }) {
            Reply::TopoId(id) => id,
            r => panic!("AddTopo replied {r:?}"),
        }
    }
    #[track_caller]
    fn zone(&mut self, name: &str) -> TopoId {
        self.topo(TopoKind::Zone, ROOT_ID, name)
    }
    #[track_caller]
    fn rack(&mut self, zone: TopoId, name: &str) -> TopoId {
        self.topo(TopoKind::Rack, zone, name)
    }
    #[track_caller]
    fn brick(&mut self, rack: TopoId, name: &str) -> TopoId {
        self.topo(TopoKind::Brick, rack, name)
    }

    #[track_caller]
    fn chunk(&mut self, hostname: &str, brick: Option<TopoId>) -> Cid {
        match self.ok(register(hostname, brick)) {
            Reply::Cid(cid) => cid,
            r => panic!("RegisterChunk replied {r:?}"),
        }
    }

    /// Registers `n` unracked chunks host1..hostN.
    #[track_caller]
    fn chunks(&mut self, n: usize) -> Vec<Cid> {
        (1..=n)
            .map(|i| self.chunk(&format!("host{i}"), None))
            .collect()
    }

    #[track_caller]
    fn open(&mut self, cid: Cid) -> SessionId {
        match self.ok(Cmd::OpenSession {
            cid,
            lease_ms: LEASE_MS,
        }) {
            Reply::Session { session_id, .. } => session_id,
            r => panic!("OpenSession replied {r:?}"),
        }
    }

    #[track_caller]
    fn session_of(&self, cid: Cid) -> SessionId {
        self.state
            .session(cid)
            .expect("chunk has a session")
            .session_id
    }

    #[track_caller]
    fn report(&mut self, cid: Cid, valid: u64, provisioned: u64, allocated: u64) {
        self.ok(Cmd::ReportSpace {
            cid,
            space: space(valid, provisioned, allocated),
        });
    }

    /// Removing -> Removed, for a chunk with neither session nor replicas.
    #[track_caller]
    fn remove_chunk(&mut self, cid: Cid) {
        self.ok(set_state(cid, ChunkState::Removing));
        self.ok(set_state(cid, ChunkState::Removed));
    }

    #[track_caller]
    fn volume(&mut self, name: &str, locs: &[&[Cid]]) -> (VolumeId, Pid) {
        match self.ok(Cmd::CreateVolume(volume(name, locs))) {
            Reply::Volume {
                volume_id,
                first_pid,
                ..
            } => (volume_id, first_pid),
            r => panic!("CreateVolume replied {r:?}"),
        }
    }

    #[track_caller]
    fn ext(&self, pid: Pid) -> Ext {
        let e = self
            .state
            .extent(pid)
            .unwrap_or_else(|| panic!("extent {pid} exists"));
        Ext {
            loc: e.loc().to_vec(),
            alive: e.alive_loc(),
            owner: e.lease_owner(),
            generation: e.generation(),
        }
    }

    #[track_caller]
    fn generation(&self, pid: Pid) -> u64 {
        self.ext(pid).generation
    }

    #[track_caller]
    fn name_of(&self, cid: Cid) -> String {
        self.state.chunk(cid).expect("chunk exists").name.clone()
    }

    #[track_caller]
    fn dist(&self, a: Cid, b: Cid) -> Distance {
        let d = self.state.distance(a, b).expect("both chunks exist");
        assert_eq!(
            self.state.distance(b, a),
            Some(d),
            "distance must be symmetric"
        );
        d
    }
}

fn register(hostname: &str, brick: Option<TopoId>) -> Cmd {
    Cmd::RegisterChunk {
        hostname: hostname.into(),
        data_addr: format!("{hostname}:10201"),
        brick,
        version: "5.6.0".into(),
        capabilities: vec![],
    }
}

fn set_state(cid: Cid, state: ChunkState) -> Cmd {
    Cmd::SetChunkState { cid, state }
}

fn space(valid: u64, provisioned: u64, allocated: u64) -> ChunkSpaceInfo {
    ChunkSpaceInfo {
        valid_data_space: valid,
        total_data_capacity: valid,
        provisioned_data_space: provisioned,
        allocated_data_space: allocated,
        ..ChunkSpaceInfo::default()
    }
}

/// A volume of `locs.len()` full extents with `locs[0].len()` replicas.
fn volume(name: &str, locs: &[&[Cid]]) -> CreateVolume {
    CreateVolume {
        name: name.into(),
        size_bytes: locs.len() as u64 * EXTENT_SIZE_BYTES,
        provisioning: Provisioning::Thin,
        replicas: locs.first().map_or(2, |l| l.len() as u8),
        prefer_cid: 0,
        even: false,
        preferred_zone: 0,
        locs: locs.iter().map(|l| l.to_vec()).collect(),
    }
}

fn update(
    pid: Pid,
    expected_generation: u64,
    loc: Option<&[Cid]>,
    alive: Option<&[Cid]>,
    owner: Option<Cid>,
) -> Cmd {
    Cmd::UpdateExtent(UpdateExtent {
        pid,
        expected_generation,
        loc: loc.map(<[Cid]>::to_vec),
        alive_loc: alive.map(<[Cid]>::to_vec),
        lease_owner: owner,
    })
}

fn ratio(num: u64, den: u64) -> LoadRatio {
    LoadRatio::new(num, den).unwrap()
}

/// Exact (num, den) of a ratio, so that 1/2 and 2/4 are told apart.
fn parts(r: Option<LoadRatio>) -> Option<(u64, u64)> {
    r.map(|r| (r.num, r.den))
}

// ---- topology ----------------------------------------------------------------

#[test]
fn a_zone_hangs_off_the_cluster_a_rack_off_a_zone_and_a_brick_off_a_rack() {
    // given an empty cluster
    let mut c = Cluster::new();
    // when a zone, a rack and a brick are added down the tree
    let z = c.zone("z1");
    let r = c.rack(z, "r1");
    let b = c.brick(r, "b1");
    // then each hangs off its parent with its kind and name, ids follow the root
    assert_eq!((z, r, b), (ROOT_ID + 1, ROOT_ID + 2, ROOT_ID + 3));
    let node = |id| c.state.topo_node(id).unwrap().clone();
    assert_eq!(
        (node(z).kind, node(z).parent, node(z).name.as_str()),
        (TopoKind::Zone, ROOT_ID, "z1")
    );
    assert_eq!(
        (node(r).kind, node(r).parent, node(r).name.as_str()),
        (TopoKind::Rack, z, "r1")
    );
    assert_eq!(
        (node(b).kind, node(b).parent, node(b).name.as_str()),
        (TopoKind::Brick, r, "b1")
    );
    assert_eq!(c.state.topo_nodes().count(), 4);
}

#[test]
fn a_topology_node_under_the_wrong_kind_of_parent_is_refused() {
    // given zone > rack > brick
    let mut c = Cluster::new();
    let z = c.zone("z1");
    let r = c.rack(z, "r1");
    let b = c.brick(r, "b1");
    let add = |kind, parent| Cmd::AddTopo {
        kind,
        parent,
        name: "x".into(),
    };
    let wrong = |kind, expected, parent, actual| CmdError::WrongParentKind {
        kind,
        expected,
        parent,
        actual,
    };
    // then every level must hang off exactly the level above it
    assert_eq!(
        c.rejected(add(TopoKind::Rack, ROOT_ID)),
        wrong(TopoKind::Rack, TopoKind::Zone, ROOT_ID, TopoKind::Cluster)
    );
    assert_eq!(
        c.rejected(add(TopoKind::Brick, z)),
        wrong(TopoKind::Brick, TopoKind::Rack, z, TopoKind::Zone)
    );
    assert_eq!(
        c.rejected(add(TopoKind::Zone, r)),
        wrong(TopoKind::Zone, TopoKind::Cluster, r, TopoKind::Rack)
    );
    assert_eq!(
        c.rejected(add(TopoKind::Rack, b)),
        wrong(TopoKind::Rack, TopoKind::Zone, b, TopoKind::Brick)
    );
    assert_eq!(
        c.rejected(add(TopoKind::Brick, 99)),
        CmdError::TopoNotFound(99)
    );
    // and moves obey the same rule
    assert_eq!(
        c.rejected(Cmd::MoveTopo { id: b, parent: z }),
        wrong(TopoKind::Brick, TopoKind::Rack, z, TopoKind::Zone)
    );
    assert_eq!(
        c.rejected(Cmd::MoveTopo {
            id: r,
            parent: ROOT_ID
        }),
        wrong(TopoKind::Rack, TopoKind::Zone, ROOT_ID, TopoKind::Cluster)
    );
    // and a chunk can only sit in a brick
    assert_eq!(
        c.rejected(register("h1", Some(r))),
        wrong(TopoKind::Brick, TopoKind::Brick, r, TopoKind::Rack)
    );
    assert_eq!(
        c.rejected(register("h1", Some(99))),
        CmdError::TopoNotFound(99)
    );
    assert_eq!(c.state.topo_nodes().count(), 4);
}

#[test]
fn topology_names_are_unique_per_kind_but_a_rack_and_a_brick_may_share_one() {
    // given two zones, a rack "r1" in the first
    let mut c = Cluster::new();
    let z1 = c.zone("z1");
    let z2 = c.zone("z2");
    let r1 = c.rack(z1, "r1");
    // when another rack "r1" is added, even in another zone, it is refused
    let err = c.rejected(Cmd::AddTopo {
        kind: TopoKind::Rack,
        parent: z2,
        name: "r1".into(),
    });
    assert_eq!(
        err,
        CmdError::NameTaken {
            kind: "rack".into(),
            name: "r1".into()
        }
    );
    // but a brick (or a zone) may be called "r1"
    let b = c.brick(r1, "r1");
    let z3 = c.zone("r1");
    assert_eq!(c.state.topo_node(b).unwrap().name, "r1");
    assert_eq!(c.state.topo_node(z3).unwrap().name, "r1");
    // and a rename onto a name of the same kind is refused, onto its own name accepted
    let r2 = c.rack(z2, "r2");
    assert_eq!(
        c.rejected(Cmd::RenameTopo {
            id: r2,
            name: "r1".into()
        }),
        CmdError::NameTaken {
            kind: "rack".into(),
            name: "r1".into()
        }
    );
    c.ok(Cmd::RenameTopo {
        id: r2,
        name: "r2".into(),
    });
    c.ok(Cmd::RenameTopo {
        id: r2,
        name: "r9".into(),
    });
    assert_eq!(c.state.topo_node(r2).unwrap().name, "r9");
}

#[test]
fn the_root_cluster_cannot_be_added_moved_or_removed() {
    // given a cluster with a zone
    let mut c = Cluster::new();
    let z = c.zone("z1");
    // then the root stays fixed
    assert_eq!(
        c.rejected(Cmd::RemoveTopo { id: ROOT_ID }),
        CmdError::RootIsFixed
    );
    assert_eq!(
        c.rejected(Cmd::MoveTopo {
            id: ROOT_ID,
            parent: z
        }),
        CmdError::RootIsFixed
    );
    assert_eq!(
        c.rejected(Cmd::AddTopo {
            kind: TopoKind::Cluster,
            parent: ROOT_ID,
            name: "second".into()
        }),
        CmdError::RootIsFixed
    );
    let root = c.state.topo_node(ROOT_ID).unwrap();
    assert_eq!((root.kind, root.parent), (TopoKind::Cluster, 0));
}

#[test]
fn removing_a_node_with_children_is_refused_and_changes_nothing() {
    // given zone > rack > brick
    let mut c = Cluster::new();
    let z = c.zone("z1");
    let r = c.rack(z, "r1");
    let b = c.brick(r, "b1");
    c.brick(r, "b2");
    // when the zone or the rack is removed, then it is refused with its child count
    assert_eq!(
        c.rejected(Cmd::RemoveTopo { id: z }),
        CmdError::NotEmpty { id: z, children: 1 }
    );
    assert_eq!(
        c.rejected(Cmd::RemoveTopo { id: r }),
        CmdError::NotEmpty { id: r, children: 2 }
    );
    // and an empty leaf can be removed
    c.ok(Cmd::RemoveTopo { id: b });
    assert!(c.state.topo_node(b).is_none());
    assert_eq!(
        c.rejected(Cmd::RemoveTopo { id: b }),
        CmdError::TopoNotFound(b)
    );
}

#[test]
fn removing_a_brick_that_holds_chunks_is_refused_and_changes_nothing() {
    // given a brick with two chunks
    let mut c = Cluster::new();
    let z = c.zone("z1");
    let r = c.rack(z, "r1");
    let b = c.brick(r, "b1");
    let c1 = c.chunk("h1", Some(b));
    let c2 = c.chunk("h2", Some(b));
    // when it is removed, then it is refused, counting the chunks
    assert_eq!(
        c.rejected(Cmd::RemoveTopo { id: b }),
        CmdError::NotEmpty { id: b, children: 2 }
    );
    // a draining (Removing) chunk still counts
    c.ok(Cmd::MoveChunk {
        cid: c1,
        brick: None,
    });
    c.ok(set_state(c2, ChunkState::Removing));
    assert_eq!(
        c.rejected(Cmd::RemoveTopo { id: b }),
        CmdError::NotEmpty { id: b, children: 1 }
    );
    // a removed chunk leaves its brick, which then can be removed
    c.ok(set_state(c2, ChunkState::Removed));
    assert_eq!(c.state.chunk(c2).unwrap().brick, None);
    c.ok(Cmd::RemoveTopo { id: b });
    assert!(c.state.topo_node(b).is_none());
}

#[test]
fn moving_a_rack_or_a_brick_never_renames_it() {
    // given two zones with a rack each, a brick in the first rack
    let mut c = Cluster::new();
    let z1 = c.zone("z1");
    let z2 = c.zone("z2");
    let r1 = c.rack(z1, "rack-a");
    let r2 = c.rack(z2, "rack-b");
    let b = c.brick(r1, "brick-a");
    // when the rack moves to the other zone and the brick to the other rack
    c.ok(Cmd::MoveTopo { id: r1, parent: z2 });
    c.ok(Cmd::MoveTopo { id: b, parent: r2 });
    // then only their parents changed
    let rack = c.state.topo_node(r1).unwrap();
    assert_eq!(
        (rack.name.as_str(), rack.parent, rack.kind),
        ("rack-a", z2, TopoKind::Rack)
    );
    let brick = c.state.topo_node(b).unwrap();
    assert_eq!(
        (brick.name.as_str(), brick.parent, brick.kind),
        ("brick-a", r2, TopoKind::Brick)
    );
}

// ---- chunks ------------------------------------------------------------------

#[test]
fn chunk_ids_are_assigned_1_2_3_and_never_reused_even_after_removal() {
    // given three registered chunks
    let mut c = Cluster::new();
    assert_eq!(c.chunks(3), vec![1, 2, 3]);
    // when chunk 3 (the last) and chunk 2 are removed for good
    c.remove_chunk(3);
    c.remove_chunk(2);
    // then the next chunk gets 4, and the removed ones keep their cid as Removed
    assert_eq!(c.chunk("h4", None), 4);
    assert_eq!(c.state.chunk(2).unwrap().state, ChunkState::Removed);
    assert_eq!(c.state.chunk(3).unwrap().state, ChunkState::Removed);
    assert_eq!(
        c.state.chunks().map(|ch| ch.cid).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(c.state.chunk(0).is_none());
    assert!(c.state.chunk(5).is_none());
}

#[test]
fn a_chunk_is_named_chunk_cid_and_its_hostname_is_kept_separately() {
    // given a cluster with a brick
    let mut c = Cluster::new();
    let z = c.zone("z1");
    let r = c.rack(z, "r1");
    let b = c.brick(r, "b1");
    // when chunks register with hostnames
    let c1 = c.chunk("node-a.example.com", Some(b));
    let c2 = c.chunk("node-b.example.com", None);
    // then each is named chunk<cid>, the hostname is a separate attribute
    let ch = c.state.chunk(c1).unwrap();
    assert_eq!(ch.name, "chunk1");
    assert_eq!(ch.name, Chunk::default_name(c1));
    assert_eq!(ch.hostname, "node-a.example.com");
    assert_eq!(ch.data_addr, "node-a.example.com:10201");
    assert_eq!(
        (ch.brick, ch.state, ch.failslow),
        (Some(b), ChunkState::Registered, false)
    );
    let ch = c.state.chunk(c2).unwrap();
    assert_eq!(
        (ch.name.as_str(), ch.hostname.as_str(), ch.brick),
        ("chunk2", "node-b.example.com", None)
    );
}

#[test]
fn moving_a_chunk_keeps_its_name() {
    // given a chunk with the default name and one renamed by the operator,
    // both with hostnames that differ from their names (DOMAIN.md §2 bug)
    let mut c = Cluster::new();
    let z = c.zone("z1");
    let r = c.rack(z, "r1");
    let b1 = c.brick(r, "b1");
    let b2 = c.brick(r, "b2");
    let c1 = c.chunk("host-one", Some(b1));
    let c2 = c.chunk("host-two", Some(b1));
    c.ok(Cmd::RenameChunk {
        cid: c2,
        name: "fast-ssd".into(),
    });
    // when both move to another brick, then out of every rack, then back
    for brick in [Some(b2), None, Some(b1)] {
        c.ok(Cmd::MoveChunk { cid: c1, brick });
        c.ok(Cmd::MoveChunk { cid: c2, brick });
        // then only the brick changed: names and hostnames are as before
        let (a, b) = (c.state.chunk(c1).unwrap(), c.state.chunk(c2).unwrap());
        assert_eq!(
            (a.name.as_str(), a.hostname.as_str(), a.brick),
            ("chunk1", "host-one", brick)
        );
        assert_eq!(
            (b.name.as_str(), b.hostname.as_str(), b.brick),
            ("fast-ssd", "host-two", brick)
        );
    }
}

#[test]
fn renaming_a_chunk_to_another_chunks_reserved_name_is_refused() {
    // given two chunks
    let mut c = Cluster::new();
    c.chunks(2);
    // when chunk 1 takes chunk 2's default name, or that of a chunk not yet registered
    for name in ["chunk2", "chunk3", "chunk02"] {
        // then it is refused: chunk<N> is reserved for chunk N
        match c.rejected(Cmd::RenameChunk {
            cid: 1,
            name: name.into(),
        }) {
            CmdError::InvalidName { name: n, .. } => assert_eq!(n, name),
            e => panic!("renaming to {name}: expected InvalidName, got {e:?}"),
        }
    }
    // and a custom name held by another chunk is taken
    c.ok(Cmd::RenameChunk {
        cid: 2,
        name: "fast".into(),
    });
    assert_eq!(
        c.rejected(Cmd::RenameChunk {
            cid: 1,
            name: "fast".into()
        }),
        CmdError::NameTaken {
            kind: "chunk".into(),
            name: "fast".into()
        }
    );
    // but a chunk may take back its own default name, and a chunk registered
    // later still gets its default name
    c.ok(Cmd::RenameChunk {
        cid: 2,
        name: "chunk2".into(),
    });
    assert_eq!(c.name_of(2), "chunk2");
    assert_eq!(c.chunk("h3", None), 3);
    assert_eq!(c.name_of(3), "chunk3");
    assert_eq!(
        c.rejected(Cmd::RenameChunk {
            cid: 9,
            name: "x".into()
        }),
        CmdError::ChunkNotFound(9)
    );
}

#[test]
fn a_chunk_goes_registered_then_removing_then_removed() {
    // given a registered chunk
    let mut c = Cluster::new();
    c.chunks(1);
    // when it is drained, the drain cancelled, drained again, then removed
    c.ok(set_state(1, ChunkState::Removing));
    assert_eq!(c.state.chunk(1).unwrap().state, ChunkState::Removing);
    c.ok(set_state(1, ChunkState::Registered));
    assert_eq!(c.state.chunk(1).unwrap().state, ChunkState::Registered);
    c.ok(set_state(1, ChunkState::Removing));
    c.ok(set_state(1, ChunkState::Removed));
    // then it is Removed for good
    assert_eq!(c.state.chunk(1).unwrap().state, ChunkState::Removed);
    let bad = |from, to| CmdError::BadTransition { cid: 1, from, to };
    assert_eq!(
        c.rejected(set_state(1, ChunkState::Registered)),
        bad(ChunkState::Removed, ChunkState::Registered)
    );
    assert_eq!(
        c.rejected(set_state(1, ChunkState::Removing)),
        bad(ChunkState::Removed, ChunkState::Removing)
    );
    assert_eq!(
        c.rejected(set_state(1, ChunkState::Removed)),
        bad(ChunkState::Removed, ChunkState::Removed)
    );
    // and a removed chunk cannot open a session or be moved
    assert!(matches!(
        c.rejected(Cmd::OpenSession {
            cid: 1,
            lease_ms: LEASE_MS
        }),
        CmdError::ChunkState {
            cid: 1,
            state: ChunkState::Removed,
            ..
        }
    ));
    assert!(matches!(
        c.rejected(Cmd::MoveChunk {
            cid: 1,
            brick: None
        }),
        CmdError::ChunkState {
            cid: 1,
            state: ChunkState::Removed,
            ..
        }
    ));
}

#[test]
fn a_registered_chunk_cannot_be_removed_without_draining_first() {
    // given a registered chunk
    let mut c = Cluster::new();
    c.chunks(1);
    // when it is set straight to Removed, then it is refused
    assert_eq!(
        c.rejected(set_state(1, ChunkState::Removed)),
        CmdError::BadTransition {
            cid: 1,
            from: ChunkState::Registered,
            to: ChunkState::Removed
        }
    );
    assert_eq!(c.state.chunk(1).unwrap().state, ChunkState::Registered);
    assert_eq!(
        c.rejected(set_state(7, ChunkState::Removing)),
        CmdError::ChunkNotFound(7)
    );
}

#[test]
fn a_chunk_with_a_live_session_cannot_be_removed() {
    // given a draining chunk that still has a session
    let mut c = Cluster::new();
    c.chunks(1);
    let s = c.open(1);
    c.ok(set_state(1, ChunkState::Removing));
    // when it is removed, then it is refused naming the session
    assert_eq!(
        c.rejected(set_state(1, ChunkState::Removed)),
        CmdError::ChunkHasSession {
            cid: 1,
            session_id: s
        }
    );
    // and once the session is closed it can be removed
    c.ok(Cmd::CloseSession {
        cid: 1,
        session_id: s,
    });
    c.ok(set_state(1, ChunkState::Removed));
    assert_eq!(c.state.chunk(1).unwrap().state, ChunkState::Removed);
}

#[test]
fn a_chunk_holding_replicas_cannot_be_removed() {
    // given chunk 1 holding replicas of two extents (no sessions anywhere)
    let mut c = Cluster::new();
    c.chunks(3);
    let (vid, _) = c.volume("v1", &[&[1, 2], &[3, 1]]);
    c.volume("v2", &[&[2, 3]]);
    c.ok(set_state(1, ChunkState::Removing));
    // when it is removed, then it is refused counting those extents
    assert_eq!(
        c.rejected(set_state(1, ChunkState::Removed)),
        CmdError::ChunkInUse { cid: 1, extents: 2 }
    );
    // and once the replicas are gone it can be removed
    c.ok(Cmd::DeleteVolume { volume_id: vid });
    c.ok(set_state(1, ChunkState::Removed));
}

#[test]
fn a_removed_chunk_gets_its_default_name_back() {
    // given a renamed chunk
    let mut c = Cluster::new();
    c.chunks(2);
    c.ok(Cmd::RenameChunk {
        cid: 1,
        name: "fast".into(),
    });
    // when it is removed
    c.remove_chunk(1);
    // then it is chunk1 again and its old name is free for another chunk
    assert_eq!(c.name_of(1), "chunk1");
    c.ok(Cmd::RenameChunk {
        cid: 2,
        name: "fast".into(),
    });
    assert_eq!(c.name_of(2), "fast");
}

// ---- topology distance -------------------------------------------------------

/// z1: r1 { b1 {1, 2}, b2 {3} }, r2 { b3 {4} }; z2: r3 { b4 {5} }.
struct Tree {
    z2: TopoId,
    r2: TopoId,
    b2: TopoId,
}

fn tree(c: &mut Cluster) -> Tree {
    let z1 = c.zone("z1");
    let z2 = c.zone("z2");
    let r1 = c.rack(z1, "r1");
    let r2 = c.rack(z1, "r2");
    let r3 = c.rack(z2, "r3");
    let b1 = c.brick(r1, "b1");
    let b2 = c.brick(r1, "b2");
    let b3 = c.brick(r2, "b3");
    let b4 = c.brick(r3, "b4");
    for (host, brick) in [("h1", b1), ("h2", b1), ("h3", b2), ("h4", b3), ("h5", b4)] {
        c.chunk(host, Some(brick));
    }
    Tree { z2, r2, b2 }
}

#[test]
fn topology_distance_grows_same_chunk_brick_rack_zone_other_zone() {
    // given chunks spread over bricks, racks and two zones
    let mut c = Cluster::new();
    tree(&mut c);
    // then distance is exactly the level at which two chunks part
    assert_eq!(c.dist(1, 1), Distance::SameChunk);
    assert_eq!(c.dist(1, 2), Distance::SameBrick);
    assert_eq!(c.dist(1, 3), Distance::SameRack);
    assert_eq!(c.dist(1, 4), Distance::SameZone);
    assert_eq!(c.dist(1, 5), Distance::OtherZone);
    assert_eq!(c.dist(3, 4), Distance::SameZone);
    assert_eq!(c.dist(4, 5), Distance::OtherZone);
    // and the levels are ordered and numbered 0..4
    assert_eq!(
        [
            Distance::SameChunk as u8,
            Distance::SameBrick as u8,
            Distance::SameRack as u8,
            Distance::SameZone as u8,
            Distance::OtherZone as u8
        ],
        [0, 1, 2, 3, 4]
    );
    assert!(
        Distance::SameChunk < Distance::SameBrick
            && Distance::SameBrick < Distance::SameRack
            && Distance::SameRack < Distance::SameZone
            && Distance::SameZone < Distance::OtherZone
    );
    // and an unknown chunk has no distance
    assert_eq!(c.state.distance(1, 6), None);
    assert_eq!(c.state.distance(0, 1), None);
}

#[test]
fn distance_follows_a_rack_moved_to_another_zone() {
    // given chunk 4 in rack r2 of zone z1, chunk 5 in zone z2
    let mut c = Cluster::new();
    let t = tree(&mut c);
    assert_eq!(
        (c.dist(1, 4), c.dist(4, 5)),
        (Distance::SameZone, Distance::OtherZone)
    );
    // when rack r2 moves to zone z2
    c.ok(Cmd::MoveTopo {
        id: t.r2,
        parent: t.z2,
    });
    // then chunk 4 is in the other zone from chunk 1 and in the same zone as chunk 5
    assert_eq!(c.dist(1, 4), Distance::OtherZone);
    assert_eq!(c.dist(4, 5), Distance::SameZone);
    assert_eq!(c.state.zone_of(4), Some(t.z2));
    assert_eq!(c.state.rack_of(4), Some(t.r2));
}

#[test]
fn distance_follows_a_moved_chunk() {
    // given chunk 1 in brick b1, chunk 3 in brick b2 of the same rack
    let mut c = Cluster::new();
    let t = tree(&mut c);
    assert_eq!(c.dist(1, 3), Distance::SameRack);
    // when chunk 1 moves into b2
    c.ok(Cmd::MoveChunk {
        cid: 1,
        brick: Some(t.b2),
    });
    // then it shares a brick with chunk 3 and no longer with chunk 2
    assert_eq!(c.dist(1, 3), Distance::SameBrick);
    assert_eq!(c.dist(1, 2), Distance::SameRack);
    // when it is moved out of every rack, then it is unracked
    c.ok(Cmd::MoveChunk {
        cid: 1,
        brick: None,
    });
    assert_eq!((c.state.zone_of(1), c.state.rack_of(1)), (None, None));
    assert_eq!(c.dist(1, 3), Distance::SameZone);
}

#[test]
fn unracked_chunks_are_one_brick_of_one_extra_rack() {
    // given two unracked chunks and one racked chunk
    let mut c = Cluster::new();
    let z = c.zone("z1");
    let r = c.rack(z, "r1");
    let b = c.brick(r, "b1");
    let u1 = c.chunk("u1", None);
    let u2 = c.chunk("u2", None);
    let racked = c.chunk("r1", Some(b));
    // then the two unracked chunks share one brick
    assert_eq!(c.dist(u1, u2), Distance::SameBrick);
    assert_eq!(c.dist(u1, u1), Distance::SameChunk);
    // and the extra rack is another rack than any real one; it belongs to no
    // zone and is never counted as zone-diverse (topology.rs's documented choice)
    assert_eq!(c.dist(u1, racked), Distance::SameZone);
    assert_eq!((c.state.zone_of(u1), c.state.rack_of(u1)), (None, None));
    assert_eq!(
        (c.state.zone_of(racked), c.state.rack_of(racked)),
        (Some(z), Some(r))
    );
}

// ---- load --------------------------------------------------------------------

#[test]
fn thin_load_is_provisioned_space_over_valid_space() {
    // given a thin cluster (the default) and a chunk that reported space
    let mut c = Cluster::new();
    c.chunks(1);
    assert_eq!(c.state.config().provisioning, Provisioning::Thin);
    c.report(1, 1000, 700, 200);
    // then its load counts what meta promised
    let ch = c.state.chunk(1).unwrap();
    assert_eq!(c.state.used_space(ch), 700);
    assert_eq!(parts(c.state.chunk_load(ch)), Some((700, 1000)));
    assert_eq!(c.state.chunk_load(ch).unwrap().basis_points(), 7000);
    assert_eq!(
        c.state.load_mode(c.state.chunk_load(ch).unwrap()),
        LoadMode::Medium
    );
}

#[test]
fn thick_load_is_allocated_space_over_valid_space() {
    // given a chunk with provisioned 700 and allocated 200 of 1000
    let mut c = Cluster::new();
    c.chunks(1);
    c.report(1, 1000, 700, 200);
    // when the cluster switches to thick
    c.ok(Cmd::SetConfig {
        key: "provisioning".into(),
        value: "thick".into(),
    });
    // then its load counts what is physically reserved
    assert_eq!(c.state.config().provisioning, Provisioning::Thick);
    let ch = c.state.chunk(1).unwrap();
    assert_eq!(c.state.used_space(ch), 200);
    assert_eq!(parts(c.state.chunk_load(ch)), Some((200, 1000)));
    assert_eq!(
        c.state.load_mode(c.state.chunk_load(ch).unwrap()),
        LoadMode::Low
    );
    // and back to thin
    c.ok(Cmd::SetConfig {
        key: "provisioning".into(),
        value: "thin".into(),
    });
    assert_eq!(
        parts(c.state.chunk_load(c.state.chunk(1).unwrap())),
        Some((700, 1000))
    );
}

#[test]
fn a_chunk_without_valid_space_has_no_load_ratio() {
    // given a chunk that never reported, and a cluster of only such chunks
    let mut c = Cluster::new();
    c.chunks(1);
    // then neither has a ratio (no division by zero)
    assert!(c.state.chunk_load(c.state.chunk(1).unwrap()).is_none());
    assert!(c.state.cluster_load().is_none());
}

#[test]
fn cluster_load_is_the_sum_of_used_over_the_sum_of_valid_space_of_chunks_not_removed() {
    // given three chunks with different sizes
    let mut c = Cluster::new();
    c.chunks(3);
    c.report(1, 1000, 900, 100);
    c.report(2, 3000, 300, 1500);
    c.report(3, 6000, 6000, 6000);
    // then the cluster load is sum over sum, not a mean of ratios
    assert_eq!(parts(c.state.cluster_load()), Some((7200, 10_000)));
    // when chunk 3 is removed, then it no longer counts
    c.remove_chunk(3);
    assert_eq!(parts(c.state.cluster_load()), Some((1200, 4000)));
    // and a draining chunk still counts
    c.ok(set_state(2, ChunkState::Removing));
    assert_eq!(parts(c.state.cluster_load()), Some((1200, 4000)));
    // and thick counts allocated space
    c.ok(Cmd::SetConfig {
        key: "provisioning".into(),
        value: "thick".into(),
    });
    assert_eq!(parts(c.state.cluster_load()), Some((1600, 4000)));
}

#[test]
fn load_modes_switch_at_60_85_and_95_percent() {
    // given the default thresholds
    let mut c = Cluster::new();
    let cfg = ClusterConfig::default();
    assert_eq!(
        (cfg.load_low_bp, cfg.load_medium_bp, cfg.load_high_bp),
        (6000, 8500, 9500)
    );
    // then each boundary belongs to the higher mode
    let mode = |c: &Cluster, num, den| c.state.load_mode(ratio(num, den));
    assert_eq!(mode(&c, 0, 1000), LoadMode::Low);
    assert_eq!(mode(&c, 599, 1000), LoadMode::Low); // 59.9 %
    assert_eq!(mode(&c, 5_999_999, 10_000_000), LoadMode::Low); // just under 60 %
    assert_eq!(mode(&c, 600, 1000), LoadMode::Medium); // 60 %
    assert_eq!(mode(&c, 849, 1000), LoadMode::Medium);
    assert_eq!(mode(&c, 850, 1000), LoadMode::High); // 85 %
    assert_eq!(mode(&c, 949, 1000), LoadMode::High);
    assert_eq!(mode(&c, 950, 1000), LoadMode::UltraHigh); // 95 %
    assert_eq!(mode(&c, 1500, 1000), LoadMode::UltraHigh); // over-provisioned
                                                           // and a chunk's reported space lands in the same modes
    c.chunks(1);
    for (provisioned, expected) in [
        (599, LoadMode::Low),
        (600, LoadMode::Medium),
        (850, LoadMode::High),
        (950, LoadMode::UltraHigh),
    ] {
        c.report(1, 1000, provisioned, 0);
        let r = c.state.chunk_load(c.state.chunk(1).unwrap()).unwrap();
        assert_eq!(c.state.load_mode(r), expected, "{provisioned}/1000");
    }
    // when the low threshold is set to 59.9 %, then 59.9 % is medium
    c.ok(Cmd::SetConfig {
        key: "load_low_pct".into(),
        value: "59.9".into(),
    });
    assert_eq!(c.state.config().load_low_bp, 5990);
    assert_eq!(mode(&c, 599, 1000), LoadMode::Medium);
    assert_eq!(mode(&c, 598, 1000), LoadMode::Low);
}

// ---- sessions ----------------------------------------------------------------

#[test]
fn session_ids_strictly_increase() {
    // given three chunks
    let mut c = Cluster::new();
    c.chunks(3);
    // when sessions are opened, replaced, closed and reopened
    let mut ids = vec![c.open(1), c.open(2), c.open(1)];
    let s = ids[2];
    c.ok(Cmd::CloseSession {
        cid: 1,
        session_id: s,
    });
    ids.push(c.open(3));
    ids.push(c.open(1));
    // then every session gets the next id, never an old one
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_second_session_for_a_chunk_replaces_the_first_in_the_same_apply() {
    // given chunk 1 with a session
    let mut c = Cluster::new();
    c.chunks(2);
    let old = c.open(1);
    c.open(2);
    // when it opens another (it restarted)
    c.time_ms += 5_000;
    let reply = c.ok(Cmd::OpenSession {
        cid: 1,
        lease_ms: 14_000,
    });
    // then the reply names the session it replaced, and only the new one is listed
    let new = old + 2;
    assert_eq!(
        reply,
        Reply::Session {
            session_id: new,
            replaced: Some(old)
        }
    );
    let mine: Vec<_> = c.state.sessions().filter(|s| s.cid == 1).copied().collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].session_id, mine[0].lease_ms, mine[0].opened_at_ms),
        (new, 14_000, c.time_ms)
    );
    assert_eq!(c.state.sessions().count(), 2);
    // and a first session replaces nothing
    c.chunks(1);
    assert_eq!(
        c.ok(Cmd::OpenSession {
            cid: 3,
            lease_ms: LEASE_MS
        }),
        Reply::Session {
            session_id: new + 1,
            replaced: None
        }
    );
}

#[test]
fn a_session_lease_must_be_between_1_and_120_seconds() {
    let mut c = Cluster::new();
    c.chunks(1);
    assert_eq!(
        c.rejected(Cmd::OpenSession {
            cid: 1,
            lease_ms: 999
        }),
        CmdError::InvalidLease(999)
    );
    assert_eq!(
        c.rejected(Cmd::OpenSession {
            cid: 1,
            lease_ms: 120_001
        }),
        CmdError::InvalidLease(120_001)
    );
    assert_eq!(
        c.rejected(Cmd::OpenSession {
            cid: 2,
            lease_ms: LEASE_MS
        }),
        CmdError::ChunkNotFound(2)
    );
    c.ok(Cmd::OpenSession {
        cid: 1,
        lease_ms: 1_000,
    });
    c.ok(Cmd::OpenSession {
        cid: 1,
        lease_ms: 120_000,
    });
}

#[test]
fn a_stale_expiry_naming_an_old_session_is_rejected_and_changes_nothing() {
    // given chunk 1 alive in an extent, whose session was replaced
    let mut c = Cluster::new();
    c.chunks(2);
    let old = c.open(1);
    c.open(2);
    let (_, pid) = c.volume("v", &[&[1, 2]]);
    c.ok(update(pid, 1, None, None, Some(1)));
    let new = c.open(1);
    let before = c.ext(pid);
    assert_eq!(before.alive, vec![1, 2]);
    // when a deposed leader's expiry (or a late close) names the old session
    for cmd in [
        Cmd::ExpireSession {
            cid: 1,
            session_id: old,
        },
        Cmd::CloseSession {
            cid: 1,
            session_id: old,
        },
    ] {
        // then it is refused, naming the live session, and nothing changed
        assert_eq!(
            c.rejected(cmd),
            CmdError::StaleSession {
                cid: 1,
                session_id: old,
                live: Some(new)
            }
        );
    }
    assert_eq!(c.ext(pid), before);
    assert_eq!(c.session_of(1), new);
    // and a session id of another chunk is not this chunk's session
    let s2 = c.session_of(2);
    assert_eq!(
        c.rejected(Cmd::ExpireSession {
            cid: 1,
            session_id: s2
        }),
        CmdError::StaleSession {
            cid: 1,
            session_id: s2,
            live: Some(new)
        }
    );
    // and once expired, a second expiry of the same session is stale too
    c.ok(Cmd::ExpireSession {
        cid: 1,
        session_id: new,
    });
    assert_eq!(
        c.rejected(Cmd::ExpireSession {
            cid: 1,
            session_id: new
        }),
        CmdError::StaleSession {
            cid: 1,
            session_id: new,
            live: None
        }
    );
    assert_eq!(
        c.rejected(Cmd::ExpireSession {
            cid: 9,
            session_id: new
        }),
        CmdError::ChunkNotFound(9)
    );
}

#[test]
fn session_expiry_marks_the_chunk_dead_in_every_extent_in_the_same_apply() {
    // given chunks 1..4 with sessions, and extents over two volumes:
    //   pid a: [1,2] owner 1      pid b: [2,1] owner 2
    //   pid c: [3,1] owner 3      pid d: [2,3] owner 2  (chunk 1 absent)
    //   pid e: [1,4] with 1 marked not alive (in loc only)
    //   pid f: [1,2] alive [2] owner 1   pid g: [2,3] owner 1  (owner only)
    let mut c = Cluster::new();
    c.chunks(4);
    for cid in 1..=3 {
        c.open(cid);
    }
    let (_, p1) = c.volume("v1", &[&[1, 2], &[2, 1]]);
    let (_, p2) = c.volume("v2", &[&[3, 1], &[2, 3], &[1, 4]]);
    let (_, p3) = c.volume("v3", &[&[1, 2], &[2, 3]]);
    let (a, b, cc, d, e, f, g) = (p1, p1 + 1, p2, p2 + 1, p2 + 2, p3, p3 + 1);
    c.ok(update(a, 1, None, None, Some(1)));
    c.ok(update(b, 1, None, None, Some(2)));
    c.ok(update(cc, 1, None, None, Some(3)));
    c.ok(update(d, 1, None, None, Some(2)));
    c.ok(update(e, 1, None, Some(&[]), None));
    c.ok(update(f, 1, None, Some(&[2]), Some(1)));
    c.ok(update(g, 1, None, None, Some(1)));
    let gens: Vec<u64> = [a, b, cc, d, e, f, g]
        .iter()
        .map(|&p| c.generation(p))
        .collect();
    assert_eq!(gens, vec![2, 2, 2, 2, 2, 2, 2]);
    assert_eq!(c.ext(a).alive, vec![1, 2]);
    assert_eq!(c.ext(e).alive, Vec::<Cid>::new());
    // when chunk 1's session expires
    let s1 = c.session_of(1);
    assert_eq!(
        c.ok(Cmd::ExpireSession {
            cid: 1,
            session_id: s1
        }),
        Reply::Done
    );
    // then in that one apply chunk 1 left every alive_loc, lost its lease,
    // and exactly the extents that changed got generation + 1
    assert!(!c.state.has_session(1));
    let ext = |loc: &[Cid], alive: &[Cid], owner, generation| Ext {
        loc: loc.to_vec(),
        alive: alive.to_vec(),
        owner,
        generation,
    };
    assert_eq!(c.ext(a), ext(&[1, 2], &[2], 0, 3));
    assert_eq!(c.ext(b), ext(&[2, 1], &[2], 2, 3));
    assert_eq!(c.ext(cc), ext(&[3, 1], &[3], 3, 3));
    assert_eq!(c.ext(d), ext(&[2, 3], &[2, 3], 2, 2));
    assert_eq!(c.ext(e), ext(&[1, 4], &[], 0, 2));
    assert_eq!(c.ext(f), ext(&[1, 2], &[2], 0, 3));
    assert_eq!(c.ext(g), ext(&[2, 3], &[2, 3], 0, 3));
    // and replicas stay in loc (recovery, not loss, follows)
    assert_eq!(
        c.state.extents().filter(|x| x.loc().contains(&1)).count(),
        5
    );
}

#[test]
fn closing_a_session_marks_the_chunk_dead_like_an_expiry() {
    // given chunk 1 alive and lease owner of an extent
    let mut c = Cluster::new();
    c.chunks(2);
    let s1 = c.open(1);
    c.open(2);
    let (_, pid) = c.volume("v", &[&[1, 2]]);
    c.ok(update(pid, 1, None, None, Some(1)));
    // when it closes its session
    c.ok(Cmd::CloseSession {
        cid: 1,
        session_id: s1,
    });
    // then its replica is no longer alive and it no longer owns the lease
    assert_eq!(
        c.ext(pid),
        Ext {
            loc: vec![1, 2],
            alive: vec![2],
            owner: 0,
            generation: 3
        }
    );
    assert!(c.state.session(1).is_none());
}

#[test]
fn a_chunk_that_re_registers_keeps_its_replicas_alive_but_loses_its_leases() {
    // given chunk 1 alive and lease owner of one of two extents
    let mut c = Cluster::new();
    c.chunks(2);
    c.open(1);
    c.open(2);
    let (_, pid) = c.volume("v", &[&[1, 2], &[2, 1]]);
    c.ok(update(pid, 1, None, None, Some(1)));
    let (owned, other) = (c.ext(pid), c.ext(pid + 1));
    // when it opens a new session, replacing the old one (it restarted)
    c.open(1);
    // then its replicas stay alive (its data is on disk) ...
    assert_eq!(c.ext(pid).alive, vec![1, 2]);
    assert_eq!(
        c.ext(pid + 1),
        other,
        "an extent it does not own is untouched"
    );
    // ... but the restarted chunk lost its in-memory I/O leases
    assert_eq!(c.ext(pid).owner, 0);
    assert_eq!(c.ext(pid).generation, owned.generation + 1);
}

// ---- volumes -----------------------------------------------------------------

#[test]
fn a_volume_has_one_loc_per_started_extent() {
    // given three chunks
    let mut c = Cluster::new();
    c.chunks(3);
    let mut cv = volume("v", &[&[1, 2], &[2, 3]]);
    // when the size is one byte over one extent, then two locs are needed
    cv.size_bytes = EXTENT_SIZE_BYTES + 1;
    cv.locs.truncate(1);
    assert!(matches!(
        c.rejected(Cmd::CreateVolume(cv.clone())),
        CmdError::InvalidVolume(_)
    ));
    cv.locs = vec![vec![1, 2], vec![2, 3], vec![3, 1]];
    assert!(matches!(
        c.rejected(Cmd::CreateVolume(cv.clone())),
        CmdError::InvalidVolume(_)
    ));
    cv.locs.truncate(2);
    assert_eq!(
        c.ok(Cmd::CreateVolume(cv.clone())),
        Reply::Volume {
            volume_id: 1,
            first_pid: 1,
            extents: 2
        }
    );
    // and exactly one extent's worth needs one loc; pids continue after the last volume
    let mut one = volume("w", &[&[3, 1]]);
    one.size_bytes = EXTENT_SIZE_BYTES;
    assert_eq!(
        c.ok(Cmd::CreateVolume(one)),
        Reply::Volume {
            volume_id: 2,
            first_pid: 3,
            extents: 1
        }
    );
    assert_eq!(c.state.extent_count(), 3);
    // and an empty volume is refused
    let mut empty = volume("e", &[]);
    empty.size_bytes = 0;
    assert!(matches!(
        c.rejected(Cmd::CreateVolume(empty)),
        CmdError::InvalidVolume(_)
    ));
}

#[test]
fn a_volume_loc_holds_exactly_replicas_distinct_chunks_in_service() {
    // given chunks 1..3 registered, 4 draining, 5 removed
    let mut c = Cluster::new();
    c.chunks(5);
    c.ok(set_state(4, ChunkState::Removing));
    c.remove_chunk(5);
    let bad = |pid, reason| CmdError::InvalidLoc { pid, reason };
    // then each bad loc is refused, naming the pid it would have had
    let cases: Vec<(&[&[Cid]], CmdError)> = vec![
        (
            &[&[1, 2], &[3]],
            bad(
                2,
                LocError::WrongCount {
                    len: 1,
                    expected: 2,
                },
            ),
        ),
        (
            &[&[1, 2, 3]],
            bad(
                1,
                LocError::WrongCount {
                    len: 3,
                    expected: 2,
                },
            ),
        ),
        (&[&[1, 1]], bad(1, LocError::Duplicate(1))),
        (&[&[1, 9]], bad(1, LocError::UnknownChunk(9))),
        (&[&[0, 1]], bad(1, LocError::UnknownChunk(0))),
        (
            &[&[1, 4]],
            bad(
                1,
                LocError::ChunkNotUsable {
                    cid: 4,
                    state: ChunkState::Removing,
                },
            ),
        ),
        (
            &[&[5, 1]],
            bad(
                1,
                LocError::ChunkNotUsable {
                    cid: 5,
                    state: ChunkState::Removed,
                },
            ),
        ),
    ];
    for (locs, expected) in cases {
        let mut cv = volume("v", locs);
        cv.replicas = 2;
        assert_eq!(c.rejected(Cmd::CreateVolume(cv)), expected, "locs {locs:?}");
    }
    // and the replication factor is 2 or 3
    for replicas in [1, 4] {
        let mut cv = volume("v", &[&[1, 2]]);
        cv.replicas = replicas;
        assert!(matches!(
            c.rejected(Cmd::CreateVolume(cv)),
            CmdError::InvalidVolume(_)
        ));
    }
    assert!(c.state.volumes().next().is_none());
    // and three distinct registered chunks make a valid 3-replica loc
    c.volume("v", &[&[3, 1, 2]]);
    assert_eq!(c.ext(1).loc, vec![3, 1, 2]);
    assert_eq!(c.state.extent(1).unwrap().expected_replicas(), 3);
}

#[test]
fn new_replicas_are_alive_only_on_chunks_with_a_session() {
    // given chunks 1 and 3 with sessions, 2 without
    let mut c = Cluster::new();
    c.chunks(3);
    c.open(1);
    c.open(3);
    // when a volume is created over them
    let (_, pid) = c.volume("v", &[&[1, 2, 3], &[2, 3, 1]]);
    // then only the replicas on chunks with a session are alive, at generation 1, without owner
    assert_eq!(
        c.ext(pid),
        Ext {
            loc: vec![1, 2, 3],
            alive: vec![1, 3],
            owner: 0,
            generation: 1
        }
    );
    assert_eq!(c.ext(pid + 1).alive, vec![3, 1]);
}

#[test]
fn volume_names_are_unique() {
    // given a volume "v"
    let mut c = Cluster::new();
    c.chunks(2);
    let (vid, _) = c.volume("v", &[&[1, 2]]);
    // when another "v" is created, then it is refused
    assert_eq!(
        c.rejected(Cmd::CreateVolume(volume("v", &[&[2, 1]]))),
        CmdError::NameTaken {
            kind: "volume".into(),
            name: "v".into()
        }
    );
    // and after the first is deleted the name is free again
    c.ok(Cmd::DeleteVolume { volume_id: vid });
    c.volume("v", &[&[2, 1]]);
    assert_eq!(c.state.volume_by_name("v").unwrap().id, vid + 1);
}

#[test]
fn deleting_a_volume_removes_its_extents() {
    // given two volumes
    let mut c = Cluster::new();
    c.chunks(2);
    let (v1, p1) = c.volume("v1", &[&[1, 2], &[2, 1]]);
    let (_, p2) = c.volume("v2", &[&[1, 2]]);
    assert_eq!((p1, p2), (1, 3));
    // when the first is deleted
    assert_eq!(c.ok(Cmd::DeleteVolume { volume_id: v1 }), Reply::Done);
    // then its extents are gone, the other volume's are untouched, and pids are not reused
    assert!(c.state.volume(v1).is_none());
    assert!(c.state.extent(p1).is_none());
    assert!(c.state.extent(p1 + 1).is_none());
    assert_eq!(c.state.extent_count(), 1);
    assert_eq!(
        c.state.extents().map(|e| e.pid).collect::<Vec<_>>(),
        vec![p2]
    );
    assert_eq!(c.ext(p2).loc, vec![1, 2]);
    let (_, p3) = c.volume("v3", &[&[2, 1]]);
    assert_eq!(p3, 4);
    assert!(c.state.extent(p1).is_none());
    assert_eq!(
        c.rejected(Cmd::DeleteVolume { volume_id: v1 }),
        CmdError::VolumeNotFound(v1)
    );
}

// ---- UpdateExtent ------------------------------------------------------------

/// Chunks 1..4 with sessions, one extent [1,2] alive [1,2] at generation 1.
fn one_extent() -> (Cluster, Pid) {
    let mut c = Cluster::new();
    c.chunks(4);
    for cid in 1..=4 {
        c.open(cid);
    }
    let (_, pid) = c.volume("v", &[&[1, 2]]);
    (c, pid)
}

#[test]
fn an_extent_update_with_a_wrong_generation_is_rejected_and_changes_nothing() {
    // given an extent at generation 2
    let (mut c, pid) = one_extent();
    c.ok(update(pid, 1, Some(&[1, 2, 3]), None, None));
    assert_eq!(c.generation(pid), 2);
    // when an update expects generation 1 (or 3)
    for expected in [1, 3] {
        // then it is refused and nothing changed
        assert_eq!(
            c.rejected(update(pid, expected, Some(&[3, 4]), Some(&[3]), Some(3))),
            CmdError::GenerationMismatch {
                pid,
                expected,
                actual: 2
            }
        );
    }
    assert_eq!(c.ext(pid).loc, vec![1, 2, 3]);
    assert_eq!(
        c.rejected(update(99, 1, None, None, Some(1))),
        CmdError::ExtentNotFound(99)
    );
}

#[test]
fn an_extent_update_with_the_right_generation_bumps_it_by_exactly_one() {
    // given an extent [1,2] at generation 1
    let (mut c, pid) = one_extent();
    // when its loc, alive_loc and owner change
    assert_eq!(
        c.ok(update(pid, 1, Some(&[2, 3]), Some(&[3]), Some(3))),
        Reply::Generation(2)
    );
    // then all three are recorded at generation 2
    assert_eq!(
        c.ext(pid),
        Ext {
            loc: vec![2, 3],
            alive: vec![3],
            owner: 3,
            generation: 2
        }
    );
    // and each further change adds exactly one
    assert_eq!(
        c.ok(update(pid, 2, None, Some(&[2, 3]), None)),
        Reply::Generation(3)
    );
    assert_eq!(
        c.ok(update(pid, 3, None, None, Some(0))),
        Reply::Generation(4)
    );
    assert_eq!(c.ext(pid).owner, 0);
    assert_eq!(c.generation(pid), 4);
}

#[test]
fn alive_loc_must_be_a_subset_of_loc_on_chunks_with_a_session() {
    // given an extent [1,2]; chunk 3 loses its session, chunk 4 never had one
    let (mut c, pid) = one_extent();
    let s3 = c.session_of(3);
    c.ok(Cmd::ExpireSession {
        cid: 3,
        session_id: s3,
    });
    let s4 = c.session_of(4);
    c.ok(Cmd::CloseSession {
        cid: 4,
        session_id: s4,
    });
    let bad = |reason| CmdError::InvalidLoc { pid, reason };
    // then an alive cid outside loc is refused
    assert_eq!(
        c.rejected(update(pid, 1, None, Some(&[1, 3]), None)),
        bad(LocError::AliveNotInLoc(3))
    );
    assert_eq!(
        c.rejected(update(pid, 1, Some(&[1, 3]), Some(&[2]), None)),
        bad(LocError::AliveNotInLoc(2))
    );
    // and an alive cid without a session is refused
    assert_eq!(
        c.rejected(update(pid, 1, Some(&[1, 3]), Some(&[1, 3]), None)),
        bad(LocError::NoSession(3))
    );
    // and a loc must be well formed
    assert_eq!(
        c.rejected(update(pid, 1, Some(&[]), Some(&[]), None)),
        bad(LocError::Empty)
    );
    assert_eq!(
        c.rejected(update(pid, 1, Some(&[1, 1]), None, None)),
        bad(LocError::Duplicate(1))
    );
    assert_eq!(
        c.rejected(update(pid, 1, Some(&[1, 9]), None, None)),
        bad(LocError::UnknownChunk(9))
    );
    // but a dead replica may be in loc
    assert_eq!(
        c.ok(update(pid, 1, Some(&[1, 2, 3]), Some(&[1, 2]), None)),
        Reply::Generation(2)
    );
    assert_eq!(c.ext(pid).alive, vec![1, 2]);
}

#[test]
fn a_lease_owner_must_have_a_session() {
    // given an extent [1,2]; chunk 3 without session
    let (mut c, pid) = one_extent();
    let s3 = c.session_of(3);
    c.ok(Cmd::CloseSession {
        cid: 3,
        session_id: s3,
    });
    let bad = |reason| CmdError::InvalidLoc { pid, reason };
    // then an owner without a session, or an unknown owner, is refused
    assert_eq!(
        c.rejected(update(pid, 1, None, None, Some(3))),
        bad(LocError::NoSession(3))
    );
    assert_eq!(
        c.rejected(update(pid, 1, None, None, Some(9))),
        bad(LocError::UnknownChunk(9))
    );
    // and an owner with a session is accepted, and Some(0) clears it
    c.ok(update(pid, 1, None, None, Some(2)));
    assert_eq!(c.ext(pid).owner, 2);
    c.ok(update(pid, 2, None, None, Some(0)));
    assert_eq!(c.ext(pid).owner, 0);
}

#[test]
fn an_extent_update_that_changes_nothing_does_not_bump_the_generation() {
    // given an extent [1,2] alive [1,2] owned by 1 at generation 2
    let (mut c, pid) = one_extent();
    c.ok(update(pid, 1, None, None, Some(1)));
    let before = c.ext(pid);
    assert_eq!(before.generation, 2);
    // when updates restate what is already there
    for cmd in [
        update(pid, 2, None, None, None),
        update(pid, 2, Some(&[1, 2]), Some(&[2, 1]), Some(1)),
        update(pid, 2, Some(&[1, 2]), None, None),
    ] {
        // then they succeed at the same generation
        assert_eq!(c.ok(cmd), Reply::Generation(2));
    }
    assert_eq!(c.ext(pid), before);
}

#[test]
fn a_new_loc_without_alive_loc_keeps_the_alive_replicas_that_stay() {
    // given an extent [1,2] alive [1,2]
    let (mut c, pid) = one_extent();
    // when loc becomes [2,3] without naming alive_loc
    c.ok(update(pid, 1, Some(&[2, 3]), None, None));
    // then 2 stays alive, 1 is gone, the new replica 3 is not alive yet
    assert_eq!(c.ext(pid).alive, vec![2]);
    assert_eq!(c.ext(pid).loc, vec![2, 3]);
}

#[test]
fn a_new_replica_cannot_go_to_a_draining_chunk_but_an_existing_one_may_stay() {
    // given an extent [1,2]; chunks 2 and 3 start draining
    let (mut c, pid) = one_extent();
    c.ok(set_state(2, ChunkState::Removing));
    c.ok(set_state(3, ChunkState::Removing));
    // then adding a replica on 3 is refused
    assert_eq!(
        c.rejected(update(pid, 1, Some(&[1, 2, 3]), None, None)),
        CmdError::InvalidLoc {
            pid,
            reason: LocError::ChunkNotUsable {
                cid: 3,
                state: ChunkState::Removing
            }
        }
    );
    // but the replica already on 2 may stay while a new one goes to 4
    assert_eq!(
        c.ok(update(pid, 1, Some(&[1, 2, 4]), None, None)),
        Reply::Generation(2)
    );
}

// ---- log order and time ------------------------------------------------------

#[test]
fn an_entry_index_must_increase() {
    // given entry 5 of term 2 applied
    let mut c = Cluster::new();
    let meta = EntryMeta {
        index: 5,
        term: 2,
        leader_time_ms: 10,
    };
    c.apply_meta(meta, &register("h1", None)).unwrap();
    assert_eq!(c.state.last_applied(), (5, 2));
    let digest = c.state.digest();
    // when entry 5 or 4 is applied again, then it is refused and changes nothing
    for index in [5, 4] {
        let err = c
            .apply_meta(
                EntryMeta {
                    index,
                    term: 2,
                    leader_time_ms: 20,
                },
                &register("h2", None),
            )
            .unwrap_err();
        assert_eq!(
            err,
            CmdError::StaleEntry {
                index,
                term: 2,
                last_index: 5,
                last_term: 2
            }
        );
        assert_eq!(c.state.digest(), digest);
    }
    // and index 0 is never a valid entry
    assert!(matches!(
        State::new().apply(
            EntryMeta {
                index: 0,
                term: 0,
                leader_time_ms: 0
            },
            &register("h", None)
        ),
        Err(CmdError::StaleEntry { .. })
    ));
    // and a later index (with a gap) is accepted
    c.apply_meta(
        EntryMeta {
            index: 9,
            term: 2,
            leader_time_ms: 20,
        },
        &register("h2", None),
    )
    .unwrap();
    assert_eq!(c.state.last_applied(), (9, 2));
}

#[test]
fn an_entry_term_must_not_decrease() {
    // given entry 5 of term 3 applied
    let mut c = Cluster::new();
    let m = |index, term| EntryMeta {
        index,
        term,
        leader_time_ms: 10,
    };
    c.apply_meta(m(5, 3), &register("h1", None)).unwrap();
    let digest = c.state.digest();
    // when entry 6 of term 2 arrives, then it is refused and changes nothing
    assert_eq!(
        c.apply_meta(m(6, 2), &register("h2", None)).unwrap_err(),
        CmdError::StaleEntry {
            index: 6,
            term: 2,
            last_index: 5,
            last_term: 3
        }
    );
    assert_eq!(c.state.digest(), digest);
    // and the same or a newer term is accepted
    c.apply_meta(m(6, 3), &register("h2", None)).unwrap();
    c.apply_meta(m(7, 4), &register("h3", None)).unwrap();
    assert_eq!(c.state.last_applied(), (7, 4));
}

#[test]
fn state_time_never_goes_back_when_a_leader_clock_does() {
    // given state time 50 s
    let mut c = Cluster::new();
    c.time_ms = 50_000;
    c.chunks(2);
    c.open(1);
    assert_eq!(c.state.now_ms(), 50_000);
    assert_eq!(c.state.session(1).unwrap().opened_at_ms, 50_000);
    // when a new leader stamps an earlier time
    c.term += 1;
    c.time_ms = 30_000;
    c.open(2);
    // then state time stays at 50 s and the session opens at state time
    assert_eq!(c.state.now_ms(), 50_000);
    assert_eq!(c.state.session(2).unwrap().opened_at_ms, 50_000);
    // and a later leader time moves it forward
    c.time_ms = 60_000;
    c.open(2);
    assert_eq!(c.state.now_ms(), 60_000);
    assert_eq!(c.state.session(2).unwrap().opened_at_ms, 60_000);
}

// ---- config and features -----------------------------------------------------

#[test]
fn an_unknown_config_key_is_rejected_and_changes_nothing() {
    let mut c = Cluster::new();
    assert_eq!(
        c.rejected(Cmd::SetConfig {
            key: "lease".into(),
            value: "7000".into()
        }),
        CmdError::Config(ConfigError::UnknownKey {
            key: "lease".into()
        })
    );
    assert_eq!(c.state.config(), &ClusterConfig::default());
}

#[test]
fn an_out_of_range_config_value_is_rejected_and_changes_nothing() {
    // given a cluster with lease 7 s
    let mut c = Cluster::new();
    c.ok(Cmd::SetConfig {
        key: "lease_ms".into(),
        value: "7000".into(),
    });
    assert_eq!(c.state.config().lease_ms, 7_000);
    let config = c.state.config().clone();
    // then values out of range, malformed or breaking cross-field rules are refused
    for (key, value) in [
        ("lease_ms", "999"),
        ("lease_ms", "120001"),
        ("lease_ms", "7s"),
        ("load_low_pct", "90"),
        ("load_high_pct", "100.01"),
        ("recover_src_slots", "0"),
        ("slot_ceiling", "2"),
        ("provisioning", "thicc"),
    ] {
        match c.rejected(Cmd::SetConfig {
            key: key.into(),
            value: value.into(),
        }) {
            CmdError::Config(ConfigError::InvalidValue {
                key: k, value: v, ..
            }) => {
                assert_eq!((k.as_str(), v.as_str()), (key, value))
            }
            e => panic!("{key}={value}: expected InvalidValue, got {e:?}"),
        }
    }
    assert_eq!(c.state.config(), &config);
}

#[test]
fn a_feature_cannot_be_activated_twice() {
    // given feature lease_7s active
    let mut c = Cluster::new();
    assert!(!c.state.feature_active("lease_7s"));
    c.ok(Cmd::ActivateFeature {
        name: "lease_7s".into(),
    });
    assert!(c.state.feature_active("lease_7s"));
    // when it is activated again, then it is refused
    assert_eq!(
        c.rejected(Cmd::ActivateFeature {
            name: "lease_7s".into()
        }),
        CmdError::FeatureAlreadyActive("lease_7s".into())
    );
    assert_eq!(
        c.rejected(Cmd::ActivateFeature {
            name: "Lease-7s".into()
        }),
        CmdError::InvalidFeatureName("Lease-7s".into())
    );
    assert_eq!(
        c.state.active_features().iter().collect::<Vec<_>>(),
        vec!["lease_7s"]
    );
}

// ---- snapshots ---------------------------------------------------------------

/// A state that uses every part: topology, chunks, sessions, volumes, config, features.
fn busy_cluster() -> Cluster {
    let mut c = Cluster::new();
    let t = tree(&mut c);
    for cid in 1..=4 {
        c.open(cid);
    }
    c.report(1, 1000, 500, 100);
    c.ok(Cmd::RenameChunk {
        cid: 2,
        name: "fast".into(),
    });
    c.ok(Cmd::SetFailslow {
        cid: 3,
        failslow: true,
    });
    let (_, pid) = c.volume("v1", &[&[1, 3, 5], &[4, 5, 1]]);
    c.ok(update(pid, 1, None, None, Some(1)));
    c.volume("v2", &[&[2, 4]]);
    c.ok(Cmd::SetConfig {
        key: "provisioning".into(),
        value: "thick".into(),
    });
    c.ok(Cmd::ActivateFeature {
        name: "lease_7s".into(),
    });
    c.ok(Cmd::MoveTopo {
        id: t.r2,
        parent: t.z2,
    });
    c
}

fn snapshot(c: &Cluster) -> Vec<u8> {
    c.state.snapshot().expect("snapshot encodes")
}

#[test]
fn restoring_a_snapshot_gives_an_equal_digest_and_an_equal_future() {
    // given a busy cluster and its snapshot
    let mut c = busy_cluster();
    let bytes = snapshot(&c);
    assert_eq!(&bytes[..8], SNAPSHOT_MAGIC);
    // when it is restored
    let restored = State::restore(&bytes).expect("snapshot restores");
    // then the digest is equal, and so is every read that uses a derived index
    assert_eq!(restored.digest(), c.state.digest());
    assert_eq!(restored.last_applied(), c.state.last_applied());
    for a in 1..=5 {
        for b in 1..=5 {
            assert_eq!(restored.distance(a, b), c.state.distance(a, b));
        }
    }
    assert_eq!(
        restored.extent(2).map(|e| e.alive_loc()),
        c.state.extent(2).map(|e| e.alive_loc())
    );
    assert_eq!(
        restored.extent(3).map(|e| e.loc().to_vec()),
        Some(vec![2, 4])
    );
    // and both apply the next commands to the same state
    let mut twin = Cluster {
        state: restored,
        index: c.index,
        term: c.term,
        time_ms: c.time_ms,
    };
    let s1 = c.session_of(1);
    for cmd in [
        Cmd::ExpireSession {
            cid: 1,
            session_id: s1,
        },
        update(3, 1, Some(&[2, 4, 3]), None, Some(2)),
        Cmd::DeleteVolume { volume_id: 1 },
        register("h6", None),
    ] {
        assert_eq!(twin.apply(cmd.clone()), c.apply(cmd));
        assert_eq!(twin.state.digest(), c.state.digest());
    }
    // and the digest does tell different states apart
    assert_ne!(c.state.digest(), State::new().digest());
}

#[test]
fn a_truncated_snapshot_is_refused() {
    let c = busy_cluster();
    let bytes = snapshot(&c);
    // a cut inside the header
    for len in [0, 8, 27] {
        assert_eq!(
            State::restore(&bytes[..len]).unwrap_err(),
            SnapshotError::Truncated { len }
        );
    }
    // a cut inside the body
    let body = (bytes.len() - 28) as u64;
    assert_eq!(
        State::restore(&bytes[..bytes.len() - 1]).unwrap_err(),
        SnapshotError::LengthMismatch {
            expected: body,
            actual: body - 1
        }
    );
}

#[test]
fn a_snapshot_with_a_bad_magic_is_refused() {
    let mut bytes = snapshot(&busy_cluster());
    bytes[0] ^= 0x20;
    assert_eq!(State::restore(&bytes).unwrap_err(), SnapshotError::BadMagic);
}

#[test]
fn a_snapshot_of_an_unknown_version_is_refused() {
    let mut bytes = snapshot(&busy_cluster());
    assert_eq!(&bytes[8..12], &SNAPSHOT_VERSION.to_le_bytes());
    let v = SNAPSHOT_VERSION + 1;
    bytes[8..12].copy_from_slice(&v.to_le_bytes());
    assert_eq!(
        State::restore(&bytes).unwrap_err(),
        SnapshotError::UnknownVersion(v)
    );
}

#[test]
fn a_snapshot_with_a_flipped_body_bit_fails_its_checksum() {
    let bytes = snapshot(&busy_cluster());
    let expected = u64::from_le_bytes(bytes[20..28].try_into().unwrap());
    assert_eq!(expected, xxhash_rust::xxh3::xxh3_64(&bytes[28..]));
    for at in [28, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let actual = xxhash_rust::xxh3::xxh3_64(&bad[28..]);
        assert_eq!(
            State::restore(&bad).unwrap_err(),
            SnapshotError::Checksum { expected, actual },
            "bit flipped at byte {at}"
        );
    }
}

#[test]
fn a_zone_that_a_volume_prefers_cannot_be_removed() {
    // given a volume whose preferred zone is z2
    let mut c = Cluster::new();
    let _z1 = c.zone("z1");
    let z2 = c.zone("z2");
    let cids = c.chunks(2);
    let (vid, _) = c.volume("v", &[&cids[..]]);
    let mut cv = volume("w", &[&cids[..]]);
    cv.preferred_zone = z2;
    c.ok(Cmd::CreateVolume(cv));
    // when z2 is removed, then it is refused and nothing changes
    assert_eq!(
        c.rejected(Cmd::RemoveTopo { id: z2 }),
        CmdError::ZoneInUse { id: z2, volumes: 1 }
    );
    // once no volume prefers it, it can go
    let w = c.state.volume_by_name("w").unwrap().id;
    c.ok(Cmd::DeleteVolume { volume_id: w });
    c.ok(Cmd::RemoveTopo { id: z2 });
    assert!(c.state.volume(vid).is_some());
}

#[test]
fn a_removed_chunk_is_no_longer_anyones_prefer_local_chunk() {
    // given a volume whose consumer runs on chunk 3, which holds no replica
    let mut c = Cluster::new();
    let cids = c.chunks(3);
    let mut cv = volume("v", &[&cids[..2]]);
    cv.prefer_cid = cids[2];
    c.ok(Cmd::CreateVolume(cv));
    let vid = c.state.volume_by_name("v").unwrap().id;
    let pid = c.state.volume(vid).unwrap().first_pid;
    assert_eq!(c.state.extent(pid).unwrap().prefer_cid(), cids[2]);
    // when chunk 3 is removed
    c.remove_chunk(cids[2]);
    // then neither the volume nor its extent prefers it any more
    assert_eq!(c.state.volume(vid).unwrap().prefer_cid, 0);
    assert_eq!(c.state.extent(pid).unwrap().prefer_cid(), 0);
}

#[test]
fn the_default_zone_must_be_a_zone_and_cannot_be_removed() {
    // given a zone and a rack
    let mut c = Cluster::new();
    let z = c.zone("z1");
    let r = c.rack(z, "r1");
    let set = |id: TopoId| Cmd::SetConfig {
        key: "default_zone".into(),
        value: id.to_string(),
    };
    // when the default zone is set to the rack or to nothing that exists, then it is refused
    assert!(matches!(
        c.rejected(set(r)),
        CmdError::Config(ConfigError::InvalidValue { .. })
    ));
    assert!(matches!(
        c.rejected(set(999)),
        CmdError::Config(ConfigError::InvalidValue { .. })
    ));
    // when it names the zone, it is taken, and the zone cannot be removed while it is the default
    c.ok(set(z));
    assert_eq!(c.state.config().default_zone, z);
    c.ok(Cmd::RemoveTopo { id: r });
    assert_eq!(
        c.rejected(Cmd::RemoveTopo { id: z }),
        CmdError::DefaultZone(z)
    );
    c.ok(set(0));
    c.ok(Cmd::RemoveTopo { id: z });
}

#[test]
fn a_batch_applies_each_command_against_the_state_the_previous_ones_left() {
    let mut s = State::new();
    let meta = |index| EntryMeta {
        index,
        term: 1,
        leader_time_ms: 5,
    };
    let register = Cmd::RegisterChunk {
        hostname: "h".into(),
        data_addr: String::new(),
        brick: None,
        version: String::new(),
        capabilities: vec![],
    };
    // given one entry: register chunk 1, rename chunk 2 (does not exist), rename chunk 1
    let rename = |cid| Cmd::RenameChunk {
        cid,
        name: "fast".into(),
    };
    let results = s.apply_batch(meta(1), &[register.clone(), rename(2), rename(1)]);
    // then the first and third apply, the second is rejected alone
    assert_eq!(results[0], Ok(Reply::Cid(1)));
    assert_eq!(results[1], Err(CmdError::ChunkNotFound(2)));
    assert_eq!(results[2], Ok(Reply::Done));
    assert_eq!(s.chunk(1).unwrap().name, "fast");
    assert_eq!(s.last_applied(), (1, 1));
    // a batch that is entirely rejected changes nothing, not even the position
    let before = s.digest();
    let results = s.apply_batch(meta(2), &[rename(7)]);
    assert_eq!(results, vec![Err(CmdError::ChunkNotFound(7))]);
    assert_eq!(s.digest(), before);
    // a stale entry rejects every command of it
    let results = s.apply_batch(meta(1), &[register.clone(), register]);
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(CmdError::StaleEntry { .. }))));
    assert_eq!(s.digest(), before);
}

// ---- freshness checkpoint ------------------------------------------------------

#[test]
fn a_session_checkpoint_records_silence_of_listed_live_sessions_and_clears_the_rest() {
    // given three chunks with sessions, chunk 1 recorded as silent before,
    let mut c = Cluster::new();
    c.chunks(3);
    let (s1, s2, s3) = (c.open(1), c.open(2), c.open(3));
    let silent = |cid, session_id, silent_ms| SilentSession {
        cid,
        session_id,
        silent_ms,
    };
    c.ok(Cmd::SessionCheckpoint {
        silent: vec![silent(1, s1, 4_000)],
    });
    let silence = |c: &Cluster| -> Vec<u64> { c.state.sessions().map(|s| s.silent_ms).collect() };
    assert_eq!(silence(&c), [4_000, 0, 0]);

    // when the next checkpoint lists chunk 2 and an old session of chunk 3,
    c.ok(Cmd::SessionCheckpoint {
        silent: vec![silent(2, s2, 9_000), silent(3, s3 - 1, 9_000)],
    });

    // then chunk 2 has its silence, chunk 1 is fresh again (not listed), and
    // chunk 3's live session is not touched by an entry about another one.
    assert_eq!(silence(&c), [0, 9_000, 0]);

    // and a session that reopens starts fresh.
    c.ok(Cmd::SessionCheckpoint {
        silent: vec![silent(3, s3, 5_000)],
    });
    c.open(3);
    assert_eq!(silence(&c), [0, 0, 0]);
}

#[test]
fn a_malformed_session_checkpoint_is_rejected_and_changes_nothing() {
    let mut c = Cluster::new();
    c.chunks(2);
    let s1 = c.open(1);
    let silent = |cid, silent_ms| SilentSession {
        cid,
        session_id: s1,
        silent_ms,
    };
    assert!(matches!(
        c.rejected(Cmd::SessionCheckpoint {
            silent: vec![silent(1, 10), silent(1, 20)],
        }),
        CmdError::InvalidCheckpoint(m) if m.contains("twice")
    ));
    assert!(matches!(
        c.rejected(Cmd::SessionCheckpoint {
            silent: vec![silent(1, cairn_state::MAX_SILENT_MS + 1)],
        }),
        CmdError::InvalidCheckpoint(_)
    ));
    assert!(matches!(
        c.rejected(Cmd::SessionCheckpoint {
            silent: vec![silent(1, 1), silent(2, 1), silent(3, 1)],
        }),
        CmdError::InvalidCheckpoint(_)
    ));
}

// ---- copies (recover / migrate commands) ------------------------------------

fn issue(term: u64, pid: Pid, generation: u64, src: Cid, dst: Cid, replace: Cid) -> Cmd {
    Cmd::IssueCopy(cairn_state::IssueCopy {
        term,
        kind: if replace == 0 {
            cairn_state::CopyKind::Recover
        } else {
            cairn_state::CopyKind::Migrate
        },
        pid,
        generation,
        src,
        dst,
        replace,
        owner: src,
        manual: false,
    })
}

fn finish(term: u64, copy_id: u64, result: Option<(u64, &[Cid])>, pid: Pid) -> Cmd {
    Cmd::FinishCopy(cairn_state::FinishCopy {
        term,
        copy_id,
        update: result.map(|(generation, loc)| UpdateExtent {
            pid,
            expected_generation: generation,
            loc: Some(loc.to_vec()),
            alive_loc: Some(loc.to_vec()),
            lease_owner: None,
        }),
    })
}

/// Four chunks with sessions and one 2-replica extent on chunks 1 and 2.
fn copy_fixture() -> (Cluster, Pid) {
    let mut c = Cluster::new();
    let cids = c.chunks(4);
    for &cid in &cids {
        c.open(cid);
    }
    let (_, pid) = c.volume("v", &[&[1, 2]]);
    (c, pid)
}

#[track_caller]
fn copy_id(r: Reply) -> u64 {
    match r {
        Reply::Copy(id) => id,
        r => panic!("IssueCopy replied {r:?}"),
    }
}

#[test]
fn an_issued_copy_is_recorded_with_its_term_and_a_finished_one_updates_the_extent_by_cas() {
    let (mut c, pid) = copy_fixture();
    let g = c.generation(pid);
    // Given chunk 2 died (its replica is no longer alive),
    c.ok(Cmd::ExpireSession {
        cid: 2,
        session_id: c.session_of(2),
    });
    let g = c.generation(pid).max(g);
    // when the leader issues a recover 1 -> 3,
    let id = copy_id(c.ok(issue(1, pid, g, 1, 3, 0)));
    let running = c.state.copy(id).expect("recorded").clone();
    assert_eq!(
        (running.pid, running.src, running.dst, running.term),
        (pid, 1, 3, 1)
    );
    assert_eq!(c.state.copy_of(pid).map(|r| r.copy_id), Some(id));
    // a second copy of the same extent is refused while it runs,
    assert!(matches!(
        c.rejected(issue(1, pid, g, 1, 4, 0)),
        CmdError::ExtentBusy { copy_id, .. } if copy_id == id
    ));
    // and its result lands by compare-and-set: the dead replica goes, 3 comes.
    c.ok(finish(1, id, Some((g, &[1, 3])), pid));
    assert_eq!(c.ext(pid).loc, vec![1, 3]);
    assert_eq!(c.ext(pid).alive, vec![1, 3]);
    assert_eq!(c.ext(pid).generation, g + 1);
    assert!(c.state.copy(id).is_none(), "a finished copy stops running");
}

#[test]
fn a_copy_planned_on_a_stale_generation_or_impossible_placement_is_refused() {
    let (mut c, pid) = copy_fixture();
    let g = c.generation(pid);
    assert!(matches!(
        c.rejected(issue(1, pid, g + 1, 1, 3, 0)),
        CmdError::GenerationMismatch { .. }
    ));
    // dst already holds a replica; src holds no alive replica; replace holds none.
    assert!(matches!(
        c.rejected(issue(1, pid, g, 1, 2, 0)),
        CmdError::InvalidCopy { .. }
    ));
    assert!(matches!(
        c.rejected(issue(1, pid, g, 3, 4, 0)),
        CmdError::InvalidCopy { .. }
    ));
    assert!(matches!(
        c.rejected(issue(1, pid, g, 1, 3, 4)),
        CmdError::InvalidCopy { .. }
    ));
    // A dst without a session cannot receive a copy.
    c.ok(Cmd::ExpireSession {
        cid: 4,
        session_id: c.session_of(4),
    });
    assert!(matches!(
        c.rejected(issue(1, pid, g, 1, 4, 0)),
        CmdError::InvalidCopy { .. }
    ));
    // The term written in the command must be the entry's.
    assert!(matches!(
        c.rejected(issue(7, pid, g, 1, 3, 0)),
        CmdError::InvalidCopy { .. }
    ));
}

#[test]
fn a_new_leader_adopts_running_copies_and_a_deposed_leaders_completion_is_rejected() {
    let (mut c, pid) = copy_fixture();
    let g = c.generation(pid);
    let id = copy_id(c.ok(issue(1, pid, g, 1, 3, 2)));
    // Leader of term 2 takes over: the copy now carries term 2.
    c.term = 2;
    c.ok(Cmd::AdoptCopies { term: 2 });
    assert_eq!(c.state.copy(id).map(|r| r.term), Some(2));
    assert_eq!(c.state.copy_term(), 2);
    // A completion stamped with the deposed leader's term is rejected...
    assert!(matches!(
        c.rejected(finish(1, id, Some((g, &[1, 3])), pid)),
        CmdError::CopyTermMismatch {
            term: 1,
            current: 2,
            ..
        }
    ));
    // ...and an adoption (or issue) naming another term than its entry's is
    // refused: a proposal built for an earlier term never takes effect later.
    c.term = 3;
    assert!(matches!(
        c.rejected(Cmd::AdoptCopies { term: 2 }),
        CmdError::StaleTerm { .. }
    ));
    // The same result under the current stamp lands: replace (2) has left.
    c.ok(Cmd::AdoptCopies { term: 3 });
    c.ok(finish(3, id, Some((g, &[1, 3])), pid));
    assert_eq!(c.ext(pid).loc, vec![1, 3]);
}

#[test]
fn a_result_that_does_not_match_the_copy_is_rejected_and_a_failed_copy_is_dropped() {
    let (mut c, pid) = copy_fixture();
    let g = c.generation(pid);
    let id = copy_id(c.ok(issue(1, pid, g, 1, 3, 2)));
    // dst missing from the result; replace still in it; a stale generation.
    assert!(matches!(
        c.rejected(finish(1, id, Some((g, &[1, 2])), pid)),
        CmdError::InvalidCopy { .. }
    ));
    assert!(matches!(
        c.rejected(finish(1, id, Some((g, &[1, 2, 3])), pid)),
        CmdError::InvalidCopy { .. }
    ));
    c.ok(update(pid, g, None, None, Some(1)));
    assert!(matches!(
        c.rejected(finish(1, id, Some((g, &[1, 3])), pid)),
        CmdError::GenerationMismatch { .. }
    ));
    // The copy failed: dropped, the extent untouched, a new one may start.
    let before = c.ext(pid);
    c.ok(finish(1, id, None, pid));
    assert!(c.state.copy(id).is_none());
    assert_eq!(c.ext(pid), before);
    assert!(matches!(
        c.rejected(finish(1, id, None, pid)),
        CmdError::CopyNotFound(_)
    ));
    let again = copy_id(c.ok(issue(1, pid, before.generation, 1, 4, 0)));
    assert!(again > id, "copy ids are never reused");
}

#[test]
fn deleting_a_volume_drops_its_running_copies() {
    let (mut c, pid) = copy_fixture();
    let g = c.generation(pid);
    let id = copy_id(c.ok(issue(1, pid, g, 1, 3, 0)));
    let volume_id = c.state.volumes().next().map(|v| v.id).expect("a volume");
    c.ok(Cmd::DeleteVolume { volume_id });
    assert!(c.state.copy(id).is_none());
    assert_eq!(c.state.copies().count(), 0);
}

#[test]
fn a_copy_ends_with_the_session_of_any_chunk_it_needs() {
    // Copies 1->3 (owner 1) on one extent and 2->4 on another.
    let (mut c, pid) = copy_fixture();
    let (_, other) = c.volume("w", &[&[2, 1]]);
    let a = copy_id(c.ok(issue(1, pid, c.generation(pid), 1, 3, 0)));
    let b = copy_id(c.ok(issue(1, other, c.generation(other), 2, 4, 0)));
    // A restart of the destination (a new session replaces the old one):
    // the copy into it is over, the other one runs on.
    c.open(3);
    assert!(c.state.copy(a).is_none(), "a restarted dst ends its copies");
    assert!(c.state.copy(b).is_some());
    // Its late success report cannot count.
    assert!(matches!(
        c.rejected(finish(1, a, Some((c.generation(pid), &[1, 2, 3])), pid)),
        CmdError::CopyNotFound(_)
    ));
    // An expired source ends its copies too.
    let session = c.session_of(2);
    c.ok(Cmd::ExpireSession {
        cid: 2,
        session_id: session,
    });
    assert!(c.state.copy(b).is_none(), "an expired src ends its copies");
    // A chunk leaving service ends the copies into it, not those out of it.
    let into = copy_id(c.ok(issue(1, pid, c.generation(pid), 1, 4, 0)));
    c.ok(Cmd::SetChunkState {
        cid: 1,
        state: cairn_state::ChunkState::Removing,
    });
    assert!(
        c.state.copy(into).is_some(),
        "copies out of a draining chunk go on"
    );
    c.ok(Cmd::SetChunkState {
        cid: 1,
        state: cairn_state::ChunkState::Registered,
    });
    c.ok(Cmd::SetChunkState {
        cid: 4,
        state: cairn_state::ChunkState::Removing,
    });
    assert!(
        c.state.copy(into).is_none(),
        "copies into a draining chunk end"
    );
    c.state.check_invariants().expect("invariants");
}

// ---- members and upgrades ---------------------------------------------------

#[test]
fn a_member_advertises_its_version_and_capabilities_and_the_hold_is_recorded() {
    let mut c = Cluster::new();
    let advert = |node_id, version: &str, caps: &[&str]| Cmd::AdvertiseMember {
        node_id,
        version: version.into(),
        capabilities: caps.iter().map(|s| s.to_string()).collect(),
    };
    c.ok(advert(1, "1.0", &[]));
    c.ok(advert(2, "2.0", &["lease_7s", "copy_commands"]));
    assert_eq!(c.state.members()[&1].version, "1.0");
    assert!(c.state.members()[&2].capabilities.contains("lease_7s"));
    // An upgrade restart says it again: the record follows.
    c.ok(advert(1, "2.0", &["lease_7s"]));
    assert_eq!(c.state.members()[&1].version, "2.0");
    // Bad input is refused, nothing changes.
    assert!(matches!(
        c.rejected(advert(0, "2.0", &[])),
        CmdError::InvalidName { .. }
    ));
    assert!(matches!(
        c.rejected(advert(3, "2.0", &["Not-A-Cap"])),
        CmdError::InvalidName { .. }
    ));
    assert!(!c.state.members().contains_key(&3));
    assert!(!c.state.upgrade_hold());
    c.ok(Cmd::HoldUpgrade { hold: true });
    assert!(c.state.upgrade_hold());
    // Both survive a snapshot (the v2 tail).
    let restored = State::restore(&c.state.snapshot().unwrap()).unwrap();
    assert_eq!(restored.members(), c.state.members());
    assert!(restored.upgrade_hold());
    assert_eq!(restored.digest(), c.state.digest());
    c.ok(Cmd::HoldUpgrade { hold: false });
    assert_ne!(
        c.state.digest(),
        restored.digest(),
        "the digest covers the tail"
    );
}
