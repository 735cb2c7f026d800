//! Property tests for the `cairn-state` state machine.
//!
//! The generator produces abstract [`Op`]s made of small selectors (`u8`,
//! `u16`) and resolves each one against the *current* state right before it
//! is applied ([`resolve`]): "the (sel % n)-th chunk with a live session",
//! "the extent's current generation, except sometimes", and so on. That keeps
//! most commands valid (so the properties exercise the success paths, not just
//! the rejections) while still mixing in a steady share of wrong inputs, and it
//! shrinks well: dropping an op leaves the others meaningful.
//!
//! Properties (256 cases each):
//! 1. no panic, and every invariant holds after every step;
//! 2. extent generations only grow, grow exactly when loc / alive_loc /
//!    lease_owner change, and a rejected command changes nothing;
//! 3. snapshot -> restore keeps the digest and the behaviour;
//! 4. the same log applied to two fresh states gives the same states;
//! 5. corrupted snapshot bytes are refused with an error, never a panic.
//!
//! `generator_is_not_vacuous` checks, with a fixed seed, that every `Cmd`
//! variant succeeds a fair number of times.
//!
//! Run: `cargo test --release -p cairn-state --test props -- --nocapture`.

use std::collections::BTreeMap;

use cairn_state::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestRng, TestRunner};

// ---------------------------------------------------------------------------
// Abstract operations and their strategies
// ---------------------------------------------------------------------------

/// One abstract command. Every field is a selector interpreted by [`resolve`]
/// against the state at apply time; none is a concrete id.
#[derive(Clone, Debug)]
#[rustfmt::skip]
enum Op {
    AddTopo { kind: u8, parent: u8, name: u8 },
    MoveTopo { node: u8, parent: u8 },
    RenameTopo { node: u8, name: u8 },
    RemoveTopo { node: u8 },
    RegisterChunk { brick: Option<u8>, host: u8, caps: u8 },
    MoveChunk { chunk: u8, brick: Option<u8> },
    RenameChunk { chunk: u8, name: u8 },
    SetChunkState { chunk: u8, to: u8 },
    SetFailslow { chunk: u8, on: bool },
    ReportSpace { chunk: u8, total_gib: u16, pct: u8, bad: bool },
    OpenSession { chunk: u8, lease: u8 },
    /// CloseSession (`expire == false`) or ExpireSession.
    EndSession { expire: bool, chunk: u8, session: u8 },
    CreateVolume { name: u8, extents: u8, shape: u8, seed: u16, prefer: u8, zone: u8 },
    DeleteVolume { volume: u8 },
    UpdateExtent { extent: u16, generation: u8, loc: u8, alive: u8, owner: u8, arg: u8 },
    SetConfig { which: u8 },
    ActivateFeature { name: u8 },
    Checkpoint { chunk: u8, session: u8, silent: u16 },
    /// A copy of an extent: src / dst / replace picked mostly sensibly.
    IssueCopy { extent: u16, src: u8, dst: u8, replace: u8, stale: u8 },
    AdoptCopies { stale: bool },
    /// Finish a running copy: succeeded (a fitting or unfitting result),
    /// failed, or with a wrong term / id.
    FinishCopy { which: u8, how: u8 },
    /// A member's version and capabilities (sometimes invalid).
    AdvertiseMember { node: u8, version: u8, caps: u8 },
    HoldUpgrade { hold: bool },
    AdvertiseChunk { chunk: u8, version: u8 },
}

/// How the log entry carrying an op is stamped.
#[derive(Clone, Debug)]
struct Clock {
    /// 0-1: replay the last applied (index, term): must be refused as stale.
    /// 2: a fresh index with a term older than the last applied one (stale).
    /// 3-12: fresh index in a new term. Otherwise: fresh index, same term.
    /// A fresh index skips `kind % 3` positions (the state machine does not
    /// require contiguous indexes, only increasing ones).
    kind: u8,
    /// Leader-stamped time: arbitrary, so it goes backwards now and then.
    time_ms: u64,
}

#[derive(Clone, Debug)]
struct Step {
    op: Op,
    clock: Clock,
}

fn clock() -> impl Strategy<Value = Clock> {
    (0u8..100, 0u64..10_000_000).prop_map(|(kind, time_ms)| Clock { kind, time_ms })
}

fn step(op: impl Strategy<Value = Op>) -> impl Strategy<Value = Step> {
    (op, clock()).prop_map(|(op, clock)| Step { op, clock })
}

fn add_topo_op() -> impl Strategy<Value = Op> {
    (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(kind, parent, name)| Op::AddTopo {
        kind,
        parent,
        name,
    })
}

fn register_chunk_op() -> impl Strategy<Value = Op> {
    (
        prop::option::weighted(0.6, any::<u8>()),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(brick, host, caps)| Op::RegisterChunk { brick, host, caps })
}

fn open_session_op() -> impl Strategy<Value = Op> {
    (any::<u8>(), any::<u8>()).prop_map(|(chunk, lease)| Op::OpenSession { chunk, lease })
}

fn create_volume_op() -> impl Strategy<Value = Op> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(
            |(name, extents, shape, seed, prefer, zone)| Op::CreateVolume {
                name,
                extents,
                shape,
                seed,
                prefer,
                zone,
            },
        )
}

/// Any op, weighted towards the ones with the most interesting state changes.
fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => add_topo_op(),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(node, parent)| Op::MoveTopo { node, parent }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(node, name)| Op::RenameTopo { node, name }),
        2 => any::<u8>().prop_map(|node| Op::RemoveTopo { node }),
        3 => register_chunk_op(),
        2 => (any::<u8>(), prop::option::weighted(0.7, any::<u8>())).prop_map(|(chunk, brick)| Op::MoveChunk { chunk, brick }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(chunk, name)| Op::RenameChunk { chunk, name }),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(chunk, to)| Op::SetChunkState { chunk, to }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(chunk, on)| Op::SetFailslow { chunk, on }),
        2 => (any::<u8>(), 1u16..4096, 0u8..=100, prop::bool::weighted(0.1))
            .prop_map(|(chunk, total_gib, pct, bad)| Op::ReportSpace { chunk, total_gib, pct, bad }),
        4 => open_session_op(),
        4 => (any::<bool>(), any::<u8>(), any::<u8>())
            .prop_map(|(expire, chunk, session)| Op::EndSession { expire, chunk, session }),
        4 => create_volume_op(),
        1 => any::<u8>().prop_map(|volume| Op::DeleteVolume { volume }),
        12 => (any::<u16>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(extent, generation, loc, alive, owner, arg)| Op::UpdateExtent { extent, generation, loc, alive, owner, arg }),
        1 => any::<u8>().prop_map(|which| Op::SetConfig { which }),
        1 => any::<u8>().prop_map(|name| Op::ActivateFeature { name }),
        2 => (any::<u8>(), any::<u8>(), any::<u16>())
            .prop_map(|(chunk, session, silent)| Op::Checkpoint { chunk, session, silent }),
        10 => (any::<u16>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(extent, src, dst, replace, stale)| Op::IssueCopy { extent, src, dst, replace, stale }),
        1 => any::<bool>().prop_map(|stale| Op::AdoptCopies { stale }),
        6 => (any::<u8>(), any::<u8>()).prop_map(|(which, how)| Op::FinishCopy { which, how }),
        1 => (any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(node, version, caps)| Op::AdvertiseMember { node, version, caps }),
        1 => any::<bool>().prop_map(|hold| Op::HoldUpgrade { hold }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(chunk, version)| Op::AdvertiseChunk { chunk, version }),
    ]
}

/// The bootstrap a real cluster goes through, so that the ops after it find
/// zones, bricks, chunks, sessions and extents to work on: up to 5 topology
/// nodes (parents first), 2-6 chunks, up to 5 session opens and 1-3
/// volumes. Each of these ops can still fail like any other.
fn bootstrap() -> impl Strategy<Value = Vec<Step>> {
    (
        prop::collection::vec(step(add_topo_op()), 0..6),
        prop::collection::vec(step(register_chunk_op()), 2..7),
        prop::collection::vec(step(open_session_op()), 0..6),
        prop::collection::vec(step(create_volume_op()), 1..4),
    )
        .prop_map(|(mut topo, chunks, sessions, volumes)| {
            // resolve() maps `kind % 16` to kinds in tree order: sorting on it
            // adds zones before racks before bricks.
            topo.sort_by_key(|s| match s.op {
                Op::AddTopo { kind, .. } => kind % 16,
                _ => 0,
            });
            [topo, chunks, sessions, volumes].concat()
        })
}

/// 4-60 steps: a bootstrap of 3-19 ops, then 1-41 ops of any kind.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    (bootstrap(), prop::collection::vec(step(any_op()), 1..42))
        .prop_map(|(boot, rest)| [boot, rest].concat())
}

// ---------------------------------------------------------------------------
// Resolving ops into commands
// ---------------------------------------------------------------------------

/// Ids that never exist in a generated state (sequences are far too short).
const NO_TOPO: TopoId = 9_999;
const NO_CID: Cid = 999;
const NO_VOLUME: VolumeId = 9_999;
const NO_PID: Pid = 999_999;

/// The `sel`-th item, cycling; `None` when there are no items.
fn pick<T: Copy>(items: &[T], sel: impl Into<usize>) -> Option<T> {
    (!items.is_empty()).then(|| items[sel.into() % items.len()])
}

/// A name from a small pool per prefix (so collisions happen), or, for one
/// selector in sixteen, a name `apply` must refuse.
fn name_from(prefix: &str, sel: u8) -> String {
    match sel % 64 {
        0 => String::new(),
        1 => format!(" {prefix}"),
        2 => format!("{prefix}\u{7}"),
        3 => "n".repeat(MAX_NAME_BYTES + 1),
        n => format!("{prefix}{}", n % 12),
    }
}

fn topo_prefix(kind: TopoKind) -> &'static str {
    match kind {
        TopoKind::Cluster => "cluster",
        TopoKind::Zone => "zone",
        TopoKind::Rack => "rack",
        TopoKind::Brick => "brick",
    }
}

/// What the state offers to pick from, read through the public API.
struct View<'a> {
    state: &'a State,
    nodes: Vec<(TopoId, TopoKind)>,
    chunks: Vec<(Cid, ChunkState)>,
    volumes: Vec<VolumeId>,
    pids: Vec<Pid>,
}

impl<'a> View<'a> {
    fn of(state: &'a State) -> View<'a> {
        View {
            state,
            nodes: state.topo_nodes().map(|n| (n.id, n.kind)).collect(),
            chunks: state.chunks().map(|c| (c.cid, c.state)).collect(),
            volumes: state.volumes().map(|v| v.id).collect(),
            pids: state.extents().map(|e| e.pid).collect(),
        }
    }

    fn topo_ids(&self, pred: impl Fn(TopoId, TopoKind) -> bool) -> Vec<TopoId> {
        self.nodes
            .iter()
            .filter(|(id, k)| pred(*id, *k))
            .map(|(id, _)| *id)
            .collect()
    }

    fn of_kind(&self, kind: TopoKind) -> Vec<TopoId> {
        self.topo_ids(|_, k| k == kind)
    }

    fn kind_of(&self, id: TopoId) -> Option<TopoKind> {
        self.nodes.iter().find(|(i, _)| *i == id).map(|(_, k)| *k)
    }

    fn cids(&self, pred: impl Fn(Cid, ChunkState) -> bool) -> Vec<Cid> {
        self.chunks
            .iter()
            .filter(|(c, s)| pred(*c, *s))
            .map(|(c, _)| *c)
            .collect()
    }

    fn all_cids(&self) -> Vec<Cid> {
        self.cids(|_, _| true)
    }

    fn live_cids(&self) -> Vec<Cid> {
        self.cids(|_, s| s != ChunkState::Removed)
    }

    fn registered_cids(&self) -> Vec<Cid> {
        self.cids(|_, s| s == ChunkState::Registered)
    }

    fn session_cids(&self) -> Vec<Cid> {
        self.state.sessions().map(|s| s.cid).collect()
    }

    /// A brick for a chunk: `None` (unracked), a brick, or, for one selector
    /// in sixteen, a rack (which `apply` must refuse).
    fn brick_for(&self, sel: Option<u8>) -> Option<TopoId> {
        let sel = sel?;
        if sel % 16 == 15 {
            return Some(pick(&self.of_kind(TopoKind::Rack), sel).unwrap_or(NO_TOPO));
        }
        pick(&self.of_kind(TopoKind::Brick), sel)
    }

    /// A parent for a node of `kind`: mostly one of the right kind, for one
    /// selector in eight any node at all.
    fn parent_for(&self, kind: Option<TopoKind>, sel: u8) -> TopoId {
        match kind.and_then(TopoKind::parent_kind) {
            Some(pk) if sel % 8 != 7 => pick(&self.of_kind(pk), sel).unwrap_or(NO_TOPO),
            _ => pick(&self.topo_ids(|_, _| true), sel).unwrap_or(ROOT_ID),
        }
    }

    /// Mostly the `sel`-th chunk of `preferred`; for one selector in eight
    /// (or when `preferred` is empty) any chunk, or an unknown cid.
    fn chunk_from(&self, preferred: &[Cid], sel: u8) -> Cid {
        if sel % 8 != 7 {
            if let Some(c) = pick(preferred, sel) {
                return c;
            }
        }
        if sel % 16 == 15 {
            return NO_CID;
        }
        pick(&self.all_cids(), sel).unwrap_or(NO_CID)
    }
}

/// Config changes: the first 13 are valid from the default config, the rest never.
const CONFIG_CHANGES: &[(&str, &str)] = &[
    ("lease_ms", "7000"),
    ("lease_ms", "14000"),
    ("provisioning", "thick"),
    ("provisioning", "thin"),
    ("load_low_pct", "55.5"),
    ("load_medium_pct", "80"),
    ("load_high_pct", "97"),
    ("recover_src_slots", "4"),
    ("migrate_dst_slots", "2"),
    ("slot_ceiling", "128"),
    ("recover_timeout_ms", "600000"),
    ("recover_paused", "true"),
    ("migrate_paused", "false"),
    ("lease_ms", "999"),
    ("lease", "7000"),
    ("load_low_pct", "90"),
    ("provisioning", "thicc"),
    ("slot_ceiling", "0"),
    ("recover_paused", "yes"),
];

/// A copy command's term, to be replaced by its entry's term in `prepare`.
const ENTRY_TERM: u64 = u64::MAX;

/// A leader writes its own term into the copies it decides.
fn fill_term(cmd: &mut Cmd, entry_term: u64) {
    match cmd {
        Cmd::IssueCopy(c) if c.term == ENTRY_TERM => c.term = entry_term,
        Cmd::AdoptCopies { term } if *term == ENTRY_TERM => *term = entry_term,
        _ => {}
    }
}

/// Turns an abstract op into a concrete command against the current state.
fn resolve(state: &State, op: &Op) -> Cmd {
    let v = View::of(state);
    match *op {
        Op::AddTopo { kind, parent, name } => {
            let mut kind = match kind % 16 {
                0 => TopoKind::Cluster,
                1..=5 => TopoKind::Zone,
                6..=10 => TopoKind::Rack,
                _ => TopoKind::Brick,
            };
            // A rack with no zone to hang off becomes a zone, a brick with
            // no rack a rack (or a zone): the tree grows top-down.
            while let Some(pk) = kind.parent_kind().filter(|pk| v.of_kind(*pk).is_empty()) {
                kind = pk;
            }
            Cmd::AddTopo {
                kind,
                parent: v.parent_for(Some(kind), parent),
                name: name_from(topo_prefix(kind), name),
            }
        }
        Op::MoveTopo { node, parent } => {
            let id = match node % 16 {
                0 => ROOT_ID,
                15 => NO_TOPO,
                _ => pick(&v.topo_ids(|id, _| id != ROOT_ID), node).unwrap_or(NO_TOPO),
            };
            Cmd::MoveTopo {
                id,
                parent: v.parent_for(v.kind_of(id), parent),
            }
        }
        Op::RenameTopo { node, name } => {
            let id = if node % 16 == 15 {
                NO_TOPO
            } else {
                pick(&v.topo_ids(|_, _| true), node).unwrap_or(NO_TOPO)
            };
            let prefix = v.kind_of(id).map_or("zone", topo_prefix);
            Cmd::RenameTopo {
                id,
                name: name_from(prefix, name),
            }
        }
        Op::RemoveTopo { node } => Cmd::RemoveTopo {
            id: match node % 16 {
                0 => ROOT_ID,
                15 => NO_TOPO,
                _ => pick(&v.topo_ids(|id, _| id != ROOT_ID), node).unwrap_or(NO_TOPO),
            },
        },
        Op::RegisterChunk { brick, host, caps } => Cmd::RegisterChunk {
            hostname: match host % 32 {
                0 => String::new(),
                1 => "bad\nhost".into(),
                n => format!("host-{}", n % 8),
            },
            data_addr: format!("10.0.0.{host}:7000"),
            brick: v.brick_for(brick),
            version: "1.2.0".into(),
            capabilities: match caps % 16 {
                0 => vec![],
                1 => vec!["lease_7s".into(), "fast_expiry".into(), "lease_7s".into()],
                2 => vec!["Bad-Cap".into()],
                _ => vec!["lease_7s".into()],
            },
        },
        Op::MoveChunk { chunk, brick } => Cmd::MoveChunk {
            cid: v.chunk_from(&v.live_cids(), chunk),
            brick: v.brick_for(brick),
        },
        Op::RenameChunk { chunk, name } => {
            let cid = v.chunk_from(&v.live_cids(), chunk);
            Cmd::RenameChunk {
                cid,
                name: match name % 8 {
                    0 => format!("chunk{cid}"),
                    1 => format!("chunk{}", cid + 1), // reserved for another chunk
                    2 => String::new(),
                    n => format!("node{}", (n + name / 8) % 12),
                },
            }
        }
        Op::SetChunkState { chunk, to } => {
            let to = match to % 3 {
                0 => ChunkState::Registered,
                1 => ChunkState::Removing,
                _ => ChunkState::Removed,
            };
            // Aim at chunks for which the transition is legal: drain a
            // registered chunk; cancel or finish draining a removing one.
            let from = if to == ChunkState::Removing {
                ChunkState::Registered
            } else {
                ChunkState::Removing
            };
            Cmd::SetChunkState {
                cid: v.chunk_from(&v.cids(|_, s| s == from), chunk),
                state: to,
            }
        }
        Op::SetFailslow { chunk, on } => Cmd::SetFailslow {
            cid: v.chunk_from(&v.live_cids(), chunk),
            failslow: on,
        },
        Op::ReportSpace {
            chunk,
            total_gib,
            pct,
            bad,
        } => {
            let total = u64::from(total_gib) << 30;
            let valid = total / 100 * u64::from(pct);
            let cache = total / 10;
            Cmd::ReportSpace {
                cid: v.chunk_from(&v.live_cids(), chunk),
                space: ChunkSpaceInfo {
                    valid_data_space: if bad { total + 1 } else { valid },
                    used_data_space: valid / 2,
                    provisioned_data_space: valid / 100 * u64::from(pct),
                    allocated_data_space: valid / 3,
                    total_data_capacity: total,
                    failure_data_space: total - valid,
                    valid_cache_space: cache,
                    used_cache_space: cache / 2,
                    dirty_cache_space: cache / 4,
                    total_cache_capacity: cache,
                    num_rx_pids: u64::from(pct % 7),
                    ..ChunkSpaceInfo::default()
                },
            }
        }
        Op::OpenSession { chunk, lease } => Cmd::OpenSession {
            cid: v.chunk_from(&v.live_cids(), chunk),
            lease_ms: match lease % 32 {
                0 => 999,
                1 => 120_001,
                n if n % 2 == 0 => 7_000,
                _ => 14_000,
            },
        },
        Op::EndSession {
            expire,
            chunk,
            session,
        } => {
            let cid = v.chunk_from(&v.session_cids(), chunk);
            let live = state.session(cid).map(|s| s.session_id);
            let session_id = match (live, session % 16) {
                (Some(id), 0) => id - 1, // an older session of this cid, or none at all
                (Some(id), 1) => id + 1,
                (Some(id), _) => id,
                (None, _) => u64::from(session % 4),
            };
            if expire {
                Cmd::ExpireSession { cid, session_id }
            } else {
                Cmd::CloseSession { cid, session_id }
            }
        }
        Op::CreateVolume {
            name,
            extents,
            shape,
            seed,
            prefer,
            zone,
        } => resolve_create_volume(&v, name, extents, shape, seed, prefer, zone),
        Op::DeleteVolume { volume } => Cmd::DeleteVolume {
            volume_id: if volume % 8 == 7 {
                NO_VOLUME
            } else {
                pick(&v.volumes, volume).unwrap_or(NO_VOLUME)
            },
        },
        Op::UpdateExtent {
            extent,
            generation,
            loc,
            alive,
            owner,
            arg,
        } => resolve_update_extent(&v, extent, generation, loc, alive, owner, arg),
        Op::SetConfig { which } => {
            let (key, value) = CONFIG_CHANGES[usize::from(which) % CONFIG_CHANGES.len()];
            Cmd::SetConfig {
                key: key.into(),
                value: value.into(),
            }
        }
        Op::ActivateFeature { name } => Cmd::ActivateFeature {
            name: match name % 16 {
                0 => String::new(),
                1 => "Bad-Name".into(),
                2 => "f".repeat(65),
                n => format!("feature_{}", n % 6), // repeats: already active
            },
        },
        Op::Checkpoint {
            chunk,
            session,
            silent,
        } => {
            // Up to two sessions: live ones, older ids, an occasional
            // duplicate cid, and silences that reach past the limit.
            let cids = v.session_cids();
            let mut list = vec![];
            for k in 0..(chunk % 3) {
                let cid = v.chunk_from(&cids, chunk.wrapping_add(k * (1 + session % 2)));
                let live = state.session(cid).map_or(0, |s| s.session_id);
                list.push(cairn_state::SilentSession {
                    cid,
                    session_id: if session % 5 == 0 {
                        live.saturating_sub(1)
                    } else {
                        live
                    },
                    silent_ms: if silent == u16::MAX {
                        cairn_state::MAX_SILENT_MS + 1
                    } else {
                        u64::from(silent) * 10
                    },
                });
            }
            Cmd::SessionCheckpoint { silent: list }
        }
        Op::IssueCopy {
            extent,
            src,
            dst,
            replace,
            stale,
        } => {
            // Mostly the entry's own term (`prepare` fills in ENTRY_TERM),
            // sometimes an earlier one, which apply must refuse.
            let term = if stale % 16 == 15 {
                state.last_applied().1.saturating_sub(1)
            } else {
                ENTRY_TERM
            };
            let pid = pick(&v.pids, (extent % 256) as u8).unwrap_or(1);
            let e = state.extent(pid);
            let alive: Vec<Cid> = e.as_ref().map(|e| e.alive_loc()).unwrap_or_default();
            let loc: Vec<Cid> = e.as_ref().map(|e| e.loc().to_vec()).unwrap_or_default();
            let others: Vec<Cid> = v
                .session_cids()
                .into_iter()
                .filter(|c| !loc.contains(c))
                .collect();
            let generation = e.as_ref().map_or(0, |e| e.generation()) + u64::from(stale % 8 == 7);
            Cmd::IssueCopy(cairn_state::IssueCopy {
                term,
                kind: if replace % 2 == 0 {
                    cairn_state::CopyKind::Recover
                } else {
                    cairn_state::CopyKind::Migrate
                },
                pid,
                generation,
                src: v.chunk_from(&alive, src),
                dst: v.chunk_from(&others, dst),
                replace: if replace % 2 == 0 {
                    0
                } else {
                    v.chunk_from(&loc, replace)
                },
                owner: if replace % 4 == 3 {
                    0
                } else {
                    v.chunk_from(&alive, src)
                },
                manual: replace % 8 == 7,
            })
        }
        Op::AdvertiseMember {
            node,
            version,
            caps,
        } => Cmd::AdvertiseMember {
            node_id: u64::from(node % 6), // 0 is refused
            version: match version % 8 {
                0 => String::new(),
                1 => "v\n1".into(),
                n => format!("{}.0", n % 3),
            },
            capabilities: match caps % 8 {
                0 => vec!["Bad-Cap".into()],
                1 => vec!["lease_7s".into(), "copy_commands".into()],
                2 => vec!["lease_7s".into()],
                _ => vec![],
            },
        },
        Op::HoldUpgrade { hold } => Cmd::HoldUpgrade { hold },
        Op::AdvertiseChunk { chunk, version } => Cmd::AdvertiseChunk {
            cid: v.chunk_from(&v.live_cids(), chunk),
            version: if version % 8 == 0 {
                "bad\u{7}".into()
            } else {
                format!("{}.0", version % 3)
            },
            capabilities: vec!["lease_7s".into()],
        },
        Op::AdoptCopies { stale } => Cmd::AdoptCopies {
            term: if stale {
                state.last_applied().1.saturating_sub(1)
            } else {
                ENTRY_TERM
            },
        },
        Op::FinishCopy { which, how } => {
            let running: Vec<&cairn_state::RunningCopy> = state.copies().collect();
            let Some(c) = running
                .get(usize::from(which) % running.len().max(1))
                .copied()
            else {
                return Cmd::FinishCopy(cairn_state::FinishCopy {
                    term: 1,
                    copy_id: u64::from(which),
                    update: None,
                });
            };
            let e = state.extent(c.pid);
            let generation = e.as_ref().map_or(0, |e| e.generation()) + u64::from(how % 8 == 7);
            // The fitting result: loc without `replace` and dead replicas, plus dst.
            let mut loc: Vec<Cid> = e.as_ref().map(|e| e.alive_loc()).unwrap_or_default();
            loc.retain(|x| *x != c.replace);
            if how % 8 != 6 {
                loc.push(c.dst);
            }
            Cmd::FinishCopy(cairn_state::FinishCopy {
                term: if how % 16 == 15 {
                    c.term.saturating_sub(1)
                } else {
                    c.term
                },
                copy_id: c.copy_id,
                update: (how % 4 != 0).then_some(cairn_state::UpdateExtent {
                    pid: c.pid,
                    expected_generation: generation,
                    loc: Some(loc),
                    alive_loc: None,
                    lease_owner: None,
                }),
            })
        }
    }
}

/// A volume of 1-4 extents whose locs are taken, in rotation, from the
/// registered chunks. `shape` picks replicas (3 if there are 3 chunks to
/// hold them, else 2), a partial last extent,
/// thick provisioning, `even`, and for a few values a malformed request
/// (4 replicas, size 0, a duplicate cid, one loc too many or too few).
fn resolve_create_volume(
    v: &View,
    name: u8,
    extents: u8,
    shape: u8,
    seed: u16,
    prefer: u8,
    zone: u8,
) -> Cmd {
    let usable = v.registered_cids();
    // shape % 32 in 28..=31: a malformed request (about one in eight).
    let malformed = shape % 32;
    let replicas: u8 = match malformed {
        30 => 4,
        _ if usable.len() >= 3 && shape % 2 == 1 => 3,
        _ => 2,
    };
    let n = u64::from(1 + extents % 4);
    let mut locs: Vec<Vec<Cid>> = if usable.is_empty() {
        Vec::new()
    } else {
        (0..n as usize)
            .map(|i| {
                let start = usize::from(seed) + i * usize::from(1 + seed % 3);
                (0..usize::from(replicas))
                    .map(|r| usable[(start + r) % usable.len()])
                    .collect()
            })
            .collect()
    };
    let mut size_bytes = n * EXTENT_SIZE_BYTES
        - if shape & 0x10 != 0 {
            EXTENT_SIZE_BYTES / 2
        } else {
            0
        };
    match malformed {
        31 if shape & 0x80 != 0 => locs.push(locs.first().cloned().unwrap_or_default()),
        31 => {
            locs.pop();
        }
        29 => {
            if let Some(l) = locs.first_mut().filter(|l| l.len() >= 2) {
                l[1] = l[0];
            }
        }
        28 => size_bytes = 0,
        _ => {}
    }
    let prefer_cid = match prefer % 16 {
        1 => NO_CID,
        n if n % 4 >= 2 => locs.first().and_then(|l| l.first().copied()).unwrap_or(0),
        _ => 0,
    };
    let preferred_zone = match zone % 16 {
        8..=13 => pick(&v.of_kind(TopoKind::Zone), zone).unwrap_or(0),
        15 => pick(&v.topo_ids(|_, _| true), zone).unwrap_or(0), // mostly not a zone: refused
        _ => 0,
    };
    Cmd::CreateVolume(CreateVolume {
        name: name_from("vol", name),
        size_bytes,
        provisioning: if shape & 0x20 != 0 {
            Provisioning::Thick
        } else {
            Provisioning::Thin
        },
        replicas,
        prefer_cid,
        even: shape & 0x40 != 0,
        preferred_zone,
        locs,
    })
}

/// An extent update as the scheduler would send it: mostly with the current
/// generation, changing some of loc (add / replace / drop / reorder a
/// replica), alive_loc (the replicas with a session / none / all) and the
/// lease owner (clear / a chunk with a session), plus a few wrong requests
/// (stale generation, unknown or duplicate cid, sessionless alive or owner).
fn resolve_update_extent(
    v: &View,
    extent: u16,
    generation: u8,
    loc: u8,
    alive: u8,
    owner: u8,
    arg: u8,
) -> Cmd {
    let arg = usize::from(arg);
    let Some(e) = pick(&v.pids, extent).and_then(|pid| v.state.extent(pid)) else {
        return Cmd::UpdateExtent(UpdateExtent {
            pid: NO_PID,
            expected_generation: 1,
            loc: None,
            alive_loc: None,
            lease_owner: None,
        });
    };
    let cur = e.loc().to_vec();
    let spare: Vec<Cid> = v
        .registered_cids()
        .into_iter()
        .filter(|c| !cur.contains(c))
        .collect();
    let new_loc: Option<Vec<Cid>> = match loc % 16 {
        8 | 9 => pick(&spare, arg).map(|c| [cur.clone(), vec![c]].concat()),
        10 | 11 => pick(&spare, arg).map(|c| {
            let mut l = cur.clone();
            l[arg % cur.len()] = c;
            l
        }),
        12 | 13 if cur.len() > 1 => {
            let mut l = cur.clone();
            l.remove(arg % cur.len());
            Some(l)
        }
        14 => {
            let mut l = cur.clone();
            l.rotate_left(1);
            Some(l)
        }
        15 => Some(
            [
                cur.clone(),
                vec![if arg % 2 == 0 { NO_CID } else { cur[0] }],
            ]
            .concat(),
        ),
        _ => None,
    };
    let target = new_loc.clone().unwrap_or_else(|| cur.clone());
    let with_session: Vec<Cid> = target
        .iter()
        .copied()
        .filter(|c| v.state.has_session(*c))
        .collect();
    let alive_loc = match alive % 16 {
        9..=12 => Some(with_session.clone()),
        13 => Some(Vec::new()),
        14 => Some(with_session.iter().copied().skip(1).collect()),
        15 => Some(target.clone()),
        _ => None,
    };
    let lease_owner = match owner % 16 {
        9 | 10 => Some(0),
        11..=14 => Some(pick(&with_session, arg).unwrap_or(0)),
        15 => Some(pick(&v.all_cids(), arg).unwrap_or(NO_CID)),
        _ => None,
    };
    let expected_generation = match generation % 16 {
        0 => e.generation() + 1,
        1 => e.generation() - 1,
        _ => e.generation(),
    };
    Cmd::UpdateExtent(UpdateExtent {
        pid: e.pid,
        expected_generation,
        loc: new_loc,
        alive_loc,
        lease_owner,
    })
}

// ---------------------------------------------------------------------------
// Driving a state
// ---------------------------------------------------------------------------

/// The leader's view of the log: the last index handed out and the term.
struct Log {
    index: u64,
    term: u64,
}

impl Log {
    fn new() -> Log {
        Log { index: 0, term: 1 }
    }

    /// The entry meta for `clock`, and whether the entry is stale (and so
    /// must be refused). Only fresh entries advance the log.
    fn stamp(&mut self, state: &State, clock: &Clock) -> (EntryMeta, bool) {
        let (last_index, last_term) = state.last_applied();
        let at = |index, term| EntryMeta {
            index,
            term,
            leader_time_ms: clock.time_ms,
        };
        match clock.kind {
            0 | 1 => (at(last_index, last_term), true),
            2 if last_term > 0 => (at(self.index + 1, last_term - 1), true),
            k => {
                self.index += 1 + u64::from(k % 3);
                if (3..13).contains(&k) {
                    self.term += 1;
                }
                (at(self.index, self.term), false)
            }
        }
    }
}

/// One log entry, ready to apply.
struct Entry {
    meta: EntryMeta,
    cmd: Cmd,
    stale: bool,
}

/// Resolves `step` against `state` and stamps it: the entry a leader would append.
fn prepare(state: &State, log: &mut Log, step: &Step) -> Entry {
    let mut cmd = resolve(state, &step.op);
    let (meta, stale) = log.stamp(state, &step.clock);
    fill_term(&mut cmd, meta.term);
    Entry { meta, cmd, stale }
}

/// Builds a state by applying `steps`, ignoring the results.
fn build(steps: &[Step]) -> State {
    let mut state = State::new();
    let mut log = Log::new();
    for step in steps {
        let e = prepare(&state, &mut log, step);
        let _ = state.apply(e.meta, &e.cmd);
    }
    state
}

/// The variant name of a command. Exhaustive on purpose: a new `Cmd`
/// variant does not compile here until it is added to the generator.
fn variant(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::AddTopo { .. } => "AddTopo",
        Cmd::MoveTopo { .. } => "MoveTopo",
        Cmd::RenameTopo { .. } => "RenameTopo",
        Cmd::RemoveTopo { .. } => "RemoveTopo",
        Cmd::RegisterChunk { .. } => "RegisterChunk",
        Cmd::MoveChunk { .. } => "MoveChunk",
        Cmd::RenameChunk { .. } => "RenameChunk",
        Cmd::SetChunkState { .. } => "SetChunkState",
        Cmd::SetFailslow { .. } => "SetFailslow",
        Cmd::ReportSpace { .. } => "ReportSpace",
        Cmd::OpenSession { .. } => "OpenSession",
        Cmd::CloseSession { .. } => "CloseSession",
        Cmd::ExpireSession { .. } => "ExpireSession",
        Cmd::CreateVolume(_) => "CreateVolume",
        Cmd::DeleteVolume { .. } => "DeleteVolume",
        Cmd::UpdateExtent(_) => "UpdateExtent",
        Cmd::SetConfig { .. } => "SetConfig",
        Cmd::ActivateFeature { .. } => "ActivateFeature",
        Cmd::SessionCheckpoint { .. } => "SessionCheckpoint",
        Cmd::IssueCopy(_) => "IssueCopy",
        Cmd::AdoptCopies { .. } => "AdoptCopies",
        Cmd::FinishCopy(_) => "FinishCopy",
        Cmd::AdvertiseMember { .. } => "AdvertiseMember",
        Cmd::HoldUpgrade { .. } => "HoldUpgrade",
        Cmd::AdvertiseChunk { .. } => "AdvertiseChunk",
    }
}

const ALL_VARIANTS: &[&str] = &[
    "AddTopo",
    "MoveTopo",
    "RenameTopo",
    "RemoveTopo",
    "RegisterChunk",
    "MoveChunk",
    "RenameChunk",
    "SetChunkState",
    "SetFailslow",
    "ReportSpace",
    "OpenSession",
    "CloseSession",
    "ExpireSession",
    "CreateVolume",
    "DeleteVolume",
    "UpdateExtent",
    "SetConfig",
    "ActivateFeature",
    "SessionCheckpoint",
    "IssueCopy",
    "AdoptCopies",
    "FinishCopy",
    "AdvertiseMember",
    "HoldUpgrade",
    "AdvertiseChunk",
];

/// An extent's replication state, as the generation rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ExtentState {
    generation: u64,
    loc: Vec<Cid>,
    alive_loc: Vec<Cid>,
    lease_owner: Cid,
}

impl ExtentState {
    fn of(e: ExtentRef<'_>) -> ExtentState {
        ExtentState {
            generation: e.generation(),
            loc: e.loc().to_vec(),
            alive_loc: e.alive_loc(),
            lease_owner: e.lease_owner(),
        }
    }
}

fn extent_states(state: &State) -> BTreeMap<Pid, ExtentState> {
    state
        .extents()
        .map(|e| (e.pid, ExtentState::of(e)))
        .collect()
}

/// Everything a caller can read from a state, including what the derived
/// indexes (distance table, pid index) answer: a snapshot does not carry
/// them, so a restore must rebuild them identically.
#[derive(Debug, PartialEq)]
struct Observed {
    last_applied: (u64, u64),
    now_ms: u64,
    config: ClusterConfig,
    topo: Vec<TopoNode>,
    chunks: Vec<Chunk>,
    sessions: Vec<Session>,
    volumes: Vec<Volume>,
    extents: Vec<(Pid, Option<ExtentState>)>,
    distances: Vec<Option<Distance>>,
    zones_racks: Vec<(Option<TopoId>, Option<TopoId>)>,
    loads: Vec<Option<LoadRatio>>,
    cluster_load: Option<LoadRatio>,
    features: Vec<String>,
}

fn observe(s: &State) -> Observed {
    let n = s.chunks().count() as Cid;
    let cids = 0..=n + 1; // unknown cids on both ends too
    let max_pid = s.extents().map(|e| e.pid).max().unwrap_or(0);
    Observed {
        last_applied: s.last_applied(),
        now_ms: s.now_ms(),
        config: s.config().clone(),
        topo: s.topo_nodes().cloned().collect(),
        chunks: s.chunks().cloned().collect(),
        sessions: s.sessions().copied().collect(),
        volumes: s.volumes().cloned().collect(),
        extents: (0..=max_pid + 2)
            .map(|pid| (pid, s.extent(pid).map(ExtentState::of)))
            .collect(),
        distances: cids
            .clone()
            .flat_map(|a| cids.clone().map(move |b| s.distance(a, b)))
            .collect(),
        zones_racks: cids.clone().map(|c| (s.zone_of(c), s.rack_of(c))).collect(),
        loads: s.chunks().map(|c| s.chunk_load(c)).collect(),
        cluster_load: s.cluster_load(),
        features: s.active_features().iter().cloned().collect(),
    }
}

/// Layout of a snapshot header (see `snapshot.rs`):
/// `magic (8) | version u32 LE | body_len u64 LE | xxh3-64(body) u64 LE`.
const HEADER_LEN: usize = 28;
const VERSION_AT: std::ops::Range<usize> = 8..12;
const BODY_LEN_AT: std::ops::Range<usize> = 12..20;

/// A snapshot around `body` with a correct header (length and checksum).
fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    // 256 cases per property. Failing cases are kept in
    // tests/props.regressions and replayed first on the next run (the
    // default location needs a lib.rs next to the test, which tests/ lacks).
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::with_cases(256)
    })]

    /// Property 1: `apply` never panics, every invariant holds after every
    /// step, stale entries are refused, and the applied position and state
    /// time move exactly as the accepted entries say.
    #[test]
    fn given_random_commands_when_applied_then_invariants_hold_after_every_step(steps in steps()) {
        let mut state = State::new();
        let mut log = Log::new();
        for (i, step) in steps.iter().enumerate() {
            let e = prepare(&state, &mut log, step);
            let before = (state.last_applied(), state.now_ms(), state.digest());

            let result = state.apply(e.meta, &e.cmd);

            if let Err(v) = state.check_invariants() {
                prop_assert!(false, "step {}: {:?} -> {:?} broke an invariant: {}", i, e.cmd, result, v);
            }
            match &result {
                Ok(_) => {
                    prop_assert!(!e.stale, "step {}: stale entry {:?} was applied", i, e.meta);
                    prop_assert_eq!(state.last_applied(), (e.meta.index, e.meta.term));
                    prop_assert_eq!(state.now_ms(), before.1.max(e.meta.leader_time_ms), "state time never goes back");
                }
                Err(err) => {
                    if e.stale {
                        prop_assert!(matches!(err, CmdError::StaleEntry { .. }), "step {}: {:?}", i, err);
                    }
                    prop_assert_eq!((state.last_applied(), state.now_ms(), state.digest()), before,
                        "step {}: rejected {:?} ({}) changed the state", i, e.cmd, err);
                }
            }
        }
    }

    /// Property 2: generations never go back; an extent's generation grows
    /// exactly when its loc, alive_loc or lease owner changes; a new extent
    /// starts at 1; a rejected command leaves the digest as it was.
    #[test]
    fn given_random_commands_when_applied_then_generation_tracks_replica_changes(steps in steps()) {
        let mut state = State::new();
        let mut log = Log::new();
        for (i, step) in steps.iter().enumerate() {
            let e = prepare(&state, &mut log, step);
            let before = extent_states(&state);
            let digest_before = state.digest();

            let result = state.apply(e.meta, &e.cmd);

            if result.is_err() {
                prop_assert_eq!(state.digest(), digest_before, "step {}: rejected {:?} changed the digest", i, e.cmd);
            }
            let after = extent_states(&state);
            for (pid, old) in &before {
                let Some(new) = after.get(pid) else { continue }; // its volume was deleted
                let changed = (&old.loc, &old.alive_loc, old.lease_owner) != (&new.loc, &new.alive_loc, new.lease_owner);
                if changed {
                    prop_assert!(new.generation > old.generation,
                        "step {}: extent {} changed {:?} -> {:?} by {:?} without a generation bump", i, pid, old, new, e.cmd);
                } else {
                    prop_assert_eq!(new.generation, old.generation,
                        "step {}: extent {} unchanged but its generation moved, by {:?}", i, pid, e.cmd);
                }
            }
            for (pid, new) in &after {
                if !before.contains_key(pid) {
                    prop_assert_eq!(new.generation, 1, "new extent {} starts at generation 1", pid);
                }
            }
            if let (Cmd::UpdateExtent(u), Ok(reply)) = (&e.cmd, &result) {
                prop_assert_eq!(reply, &Reply::Generation(after[&u.pid].generation));
            }
        }
    }

    /// Property 3: a restored snapshot has the same digest, the same bytes,
    /// the same observable state (derived indexes included) and the same
    /// behaviour. Checked at every step on a fresh restore, and on a copy
    /// restored once at step `restore_at` and then driven along with the
    /// original to the end.
    #[test]
    fn given_any_state_when_snapshot_restored_then_digest_and_behaviour_are_kept(
        steps in steps(),
        restore_at in any::<Index>(),
    ) {
        let mut state = State::new();
        let mut log = Log::new();
        let restore_at = restore_at.index(steps.len());
        let mut shadow: Option<State> = None;
        for (i, step) in steps.iter().enumerate() {
            let bytes = state.snapshot().expect("snapshot");
            let mut restored = State::restore(&bytes).expect("a state's own snapshot restores");
            prop_assert_eq!(restored.digest(), state.digest(), "step {}", i);
            prop_assert!(restored.check_invariants().is_ok());
            prop_assert_eq!(&restored.snapshot().expect("snapshot"), &bytes, "step {}: snapshot bytes are canonical", i);
            prop_assert_eq!(observe(&restored), observe(&state), "step {}", i);
            if i == restore_at {
                shadow = Some(State::restore(&bytes).expect("restore"));
            }

            let e = prepare(&state, &mut log, step);
            let result = state.apply(e.meta, &e.cmd);
            let restored_result = restored.apply(e.meta, &e.cmd);

            prop_assert_eq!(&restored_result, &result, "step {}: {:?}", i, e.cmd);
            prop_assert_eq!(restored.digest(), state.digest(), "step {}: {:?}", i, e.cmd);
            if let Some(shadow) = shadow.as_mut() {
                prop_assert_eq!(&shadow.apply(e.meta, &e.cmd), &result, "step {}: {:?}", i, e.cmd);
                prop_assert_eq!(observe(shadow), observe(&state), "step {}: {:?}", i, e.cmd);
            }
        }
    }

    /// Property 4: the same log applied to two fresh states gives the same
    /// reads, the same results, the same digest after every step and the
    /// same snapshot bytes at the end.
    #[test]
    fn given_the_same_log_when_applied_to_two_fresh_states_then_they_stay_identical(steps in steps()) {
        let (mut a, mut b) = (State::new(), State::new());
        let mut log = Log::new();
        for (i, step) in steps.iter().enumerate() {
            let e = prepare(&a, &mut log, step);
            let mut from_b = resolve(&b, &step.op);
            fill_term(&mut from_b, e.meta.term);
            prop_assert_eq!(&from_b, &e.cmd, "step {}: the two states read differently", i);

            let ra = a.apply(e.meta, &e.cmd);
            let rb = b.apply(e.meta, &e.cmd);

            prop_assert_eq!(&ra, &rb, "step {}: {:?}", i, e.cmd);
            prop_assert_eq!(a.digest(), b.digest(), "step {}: {:?}", i, e.cmd);
        }
        prop_assert_eq!(a.snapshot().expect("snapshot"), b.snapshot().expect("snapshot"));
    }

    /// Property 5: corrupted snapshot bytes give an error, never a panic. A
    /// flipped bit is caught by the check of the header field it lands in,
    /// or by the checksum when it lands in the body. A corrupted body that
    /// is re-sealed with a matching checksum is refused by the decoder or
    /// the invariant check, or restores to a sound state.
    #[test]
    fn given_corrupted_snapshot_bytes_when_restored_then_an_error_is_returned(
        steps in steps(),
        flip_at in any::<Index>(),
        bit in 0u8..8,
        body_flips in prop::collection::vec((any::<Index>(), 0u8..8), 1..4),
        truncate_at in any::<Index>(),
        appended in prop::collection::vec(any::<u8>(), 1..64),
        version in any::<u32>().prop_filter("another version", |v| *v != SNAPSHOT_VERSION),
        garbage in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let good = build(&steps).snapshot().expect("snapshot");
        prop_assert!(good.len() > HEADER_LEN);
        let body_len = good.len() - HEADER_LEN;

        // One flipped bit anywhere.
        let at = flip_at.index(good.len());
        let mut bad = good.clone();
        bad[at] ^= 1 << bit;
        let err = State::restore(&bad).expect_err("a flipped bit must be detected");
        match at {
            0..8 => prop_assert_eq!(err, SnapshotError::BadMagic),
            8..12 => prop_assert!(matches!(err, SnapshotError::UnknownVersion(_)), "{:?}", err),
            12..20 => prop_assert!(matches!(err, SnapshotError::LengthMismatch { .. }), "{:?}", err),
            _ => prop_assert!(matches!(err, SnapshotError::Checksum { .. }), "{:?}", err),
        }

        // Bits flipped in the body only: the checksum catches them.
        let mut body = good[HEADER_LEN..].to_vec();
        for (i, bit) in &body_flips {
            body[i.index(body_len)] ^= 1 << bit;
        }
        let mut bad = good[..HEADER_LEN].to_vec();
        bad.extend_from_slice(&body);
        if bad != good {
            let err = State::restore(&bad).expect_err("body corruption must be detected");
            prop_assert!(matches!(err, SnapshotError::Checksum { .. }), "{:?}", err);
        }

        // The same body re-sealed: no checksum to save the decoder, which
        // must still refuse or produce a sound state, never abort.
        if let Ok(s) = State::restore(&seal(&body)) {
            prop_assert!(s.check_invariants().is_ok());
            let again = State::restore(&s.snapshot().expect("snapshot")).expect("round trip");
            prop_assert_eq!(again.digest(), s.digest());
        }

        // Truncated anywhere.
        let cut = truncate_at.index(good.len());
        let err = State::restore(&good[..cut]).expect_err("truncated");
        if cut < HEADER_LEN {
            prop_assert!(matches!(err, SnapshotError::Truncated { .. }), "{:?}", err);
        } else {
            prop_assert!(matches!(err, SnapshotError::LengthMismatch { .. }), "{:?}", err);
        }

        // Bytes appended.
        let mut bad = good.clone();
        bad.extend_from_slice(&appended);
        let err = State::restore(&bad).expect_err("appended");
        prop_assert!(matches!(err, SnapshotError::LengthMismatch { .. }), "{:?}", err);

        // Another version.
        let mut bad = good.clone();
        bad[VERSION_AT].copy_from_slice(&version.to_le_bytes());
        prop_assert_eq!(State::restore(&bad).expect_err("version"), SnapshotError::UnknownVersion(version));

        // Garbage, raw and behind a valid magic and version.
        prop_assert!(State::restore(&garbage).is_err());
        let mut bad = good[..BODY_LEN_AT.start].to_vec();
        bad.extend_from_slice(&garbage);
        prop_assert!(State::restore(&bad).is_err());
    }
}

// ---------------------------------------------------------------------------
// The generator is not vacuous
// ---------------------------------------------------------------------------

/// The name of an error's variant, e.g. `GenerationMismatch`.
fn error_kind(err: &CmdError) -> String {
    format!("{err:?}")
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect()
}

/// Runs 200 generated sequences from a fixed seed and checks that every
/// `Cmd` variant succeeds several times and is rejected at least once, that
/// most commands succeed overall, and that both ways of bumping a generation
/// (an UpdateExtent, a session ending under an alive replica or lease) occur.
/// This proves the properties above exercise the success paths, not just
/// the rejections. `--nocapture` prints the counts.
#[test]
fn generator_is_not_vacuous() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = steps();
    // variant -> (ok, rejected)
    let mut counts: BTreeMap<&str, (u32, u32)> =
        ALL_VARIANTS.iter().map(|v| (*v, (0, 0))).collect();
    // "Variant ErrorKind" -> count, to see what the generator gets wrong.
    let mut reasons: BTreeMap<String, u32> = BTreeMap::new();
    let (mut stale, mut update_bumps, mut session_end_bumps) = (0u32, 0u32, 0u32);
    for _ in 0..300 {
        let steps = strategy.new_tree(&mut runner).expect("generate").current();
        let mut state = State::new();
        let mut log = Log::new();
        for step in &steps {
            let e = prepare(&state, &mut log, step);
            let before = extent_states(&state);
            let result = state.apply(e.meta, &e.cmd);
            if e.stale {
                stale += 1;
                continue;
            }
            let c = counts.get_mut(variant(&e.cmd)).expect("a listed variant");
            match &result {
                Ok(_) => c.0 += 1,
                Err(err) => {
                    c.1 += 1;
                    *reasons
                        .entry(format!("{} {}", variant(&e.cmd), error_kind(err)))
                        .or_default() += 1;
                }
            }
            let bumped = extent_states(&state)
                .iter()
                .filter(|(pid, s)| before.get(pid).is_some_and(|b| b.generation < s.generation))
                .count() as u32;
            match e.cmd {
                Cmd::UpdateExtent(_) => update_bumps += bumped,
                Cmd::CloseSession { .. } | Cmd::ExpireSession { .. } => session_end_bumps += bumped,
                _ => {}
            }
        }
    }
    let (ok, rejected) = counts
        .values()
        .fold((0, 0), |(o, r), (a, b)| (o + a, r + b));
    println!("{:<16} {:>6} {:>9}", "variant", "ok", "rejected");
    for (v, (o, r)) in &counts {
        println!("{v:<16} {o:>6} {r:>9}");
    }
    println!("total: {ok} ok, {rejected} rejected; {stale} stale entries refused");
    println!(
        "generation bumps: {update_bumps} by UpdateExtent, {session_end_bumps} by a session ending"
    );
    println!("rejections by reason:");
    for (reason, n) in &reasons {
        println!("  {n:>5} {reason}");
    }
    for (v, (o, r)) in &counts {
        assert!(
            *o >= 10,
            "{v} succeeded only {o} times: the generator is too weak for it"
        );
        // HoldUpgrade has no wrong input: both values are valid at any time.
        assert!(
            *r >= 1 || *v == "HoldUpgrade",
            "{v} was never rejected: the generator never tries a wrong input for it"
        );
    }
    assert!(
        ok * 10 >= (ok + rejected) * 6,
        "only {ok} of {} commands succeeded",
        ok + rejected
    );
    assert!(
        update_bumps >= 100 && session_end_bumps >= 20,
        "{update_bumps} / {session_end_bumps}"
    );
    assert!(stale >= 50, "{stale}");
}

// ---------------------------------------------------------------------------
// Regressions: bugs found by these tests, fixed, kept as tests
// ---------------------------------------------------------------------------
//
// Both need a snapshot whose checksum matches a crafted body, which the
// random corruption of the properties above reaches only rarely.

/// Replaces the first occurrence of `from` in `snapshot`'s body by `to` and
/// re-seals it (length and checksum fixed up).
fn patch_body(snapshot: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let body = &snapshot[HEADER_LEN..];
    let at = body
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in the snapshot body");
    seal(&[&body[..at], to, &body[at + from.len()..]].concat())
}

/// bincode varint (standard config) of a u64 that needs all 8 bytes.
fn varint_u64(v: u64) -> Vec<u8> {
    [&[253u8][..], &v.to_le_bytes()].concat()
}

/// A checksum-valid body whose string length prefix claims ~64 GiB once made
/// `State::restore` abort the process ("memory allocation of N bytes failed")
/// instead of returning `SnapshotError::Decode`: bincode allocates a string's
/// whole claimed length before reading it. The decode limit now scales with
/// the body (snapshot.rs).
#[test]
fn given_a_sealed_body_claiming_a_huge_string_when_restored_then_an_error_not_an_abort() {
    let good = State::new().snapshot().expect("snapshot");
    // The root node's name, "cluster": its length byte 7 becomes 2^36 - 4096.
    let bad = patch_body(
        &good,
        b"\x07cluster",
        &[varint_u64((1 << 36) - 4096), b"cluster".to_vec()].concat(),
    );
    assert!(matches!(
        State::restore(&bad),
        Err(SnapshotError::Decode(_))
    ));
}

/// The id counters `next_session_id`, `topology.next_id` and
/// `next_volume_id` were once bumped with a plain `+= 1`: at u64::MAX the next
/// id assignment panicked (debug) or wrapped and broke the invariants
/// (release). Now it is refused with `IdsExhausted` and nothing changes.
#[test]
fn given_id_counters_at_their_maximum_when_an_id_is_assigned_then_refused_and_invariants_hold() {
    let meta = |index| EntryMeta {
        index,
        term: 1,
        leader_time_ms: 0,
    };
    let chunk = || Cmd::RegisterChunk {
        hostname: "h".into(),
        data_addr: String::new(),
        brick: None,
        version: String::new(),
        capabilities: vec![],
    };
    // Bring each counter to 1000 (varint 251, 0xE8, 0x03: unique in the body), then patch it to u64::MAX.
    // The command that follows must not be refused as stale: that would mean the patch hit something else.
    let thousand = [251u8, 0xE8, 0x03];
    let at_max = |setup: &mut dyn FnMut(&mut State, &mut u64)| {
        let mut s = State::new();
        let mut i = 100_000; // log indexes far from 1000
        setup(&mut s, &mut i);
        let bad = patch_body(
            &s.snapshot().expect("snapshot"),
            &thousand,
            &varint_u64(u64::MAX),
        );
        (State::restore(&bad).expect("passes every check"), i)
    };

    // Sessions: chunk 1 opens 999 sessions, so the next session id is 1000.
    let (mut s, i) = at_max(&mut |s, i| {
        *i += 1;
        s.apply(meta(*i), &chunk()).unwrap();
        for _ in 0..999 {
            *i += 1;
            s.apply(
                meta(*i),
                &Cmd::OpenSession {
                    cid: 1,
                    lease_ms: 7_000,
                },
            )
            .unwrap();
        }
    });
    let r = s.apply(
        meta(i + 1),
        &Cmd::OpenSession {
            cid: 1,
            lease_ms: 7_000,
        },
    );
    assert!(!matches!(r, Err(CmdError::StaleEntry { .. })));
    assert_eq!(
        r,
        Err(CmdError::IdsExhausted {
            kind: "session".into()
        })
    );
    assert!(s.check_invariants().is_ok(), "OpenSession -> {r:?}");

    // Topology: 998 zones, so the next topology id is 1000.
    let (mut s, i) = at_max(&mut |s, i| {
        for z in 0..998 {
            *i += 1;
            let name = format!("z{z}");
            s.apply(
                meta(*i),
                &Cmd::AddTopo {
                    kind: TopoKind::Zone,
                    parent: ROOT_ID,
                    name,
                },
            )
            .unwrap();
        }
        for id in 2..1000 {
            *i += 1;
            s.apply(meta(*i), &Cmd::RemoveTopo { id }).unwrap();
        }
    });
    let r = s.apply(
        meta(i + 1),
        &Cmd::AddTopo {
            kind: TopoKind::Zone,
            parent: ROOT_ID,
            name: "z".into(),
        },
    );
    assert!(!matches!(r, Err(CmdError::StaleEntry { .. })));
    assert_eq!(
        r,
        Err(CmdError::IdsExhausted {
            kind: "topology".into()
        })
    );
    assert!(s.check_invariants().is_ok(), "AddTopo -> {r:?}");

    // Volumes: 999 two-extent volumes created and deleted, so the next volume id is 1000 (next pid 1999).
    let (mut s, i) = at_max(&mut |s, i| {
        for _ in 0..2 {
            *i += 1;
            s.apply(meta(*i), &chunk()).unwrap();
        }
        for _ in 0..999 {
            *i += 1;
            let Ok(Reply::Volume { volume_id, .. }) = s.apply(meta(*i), &volume("v")) else {
                panic!()
            };
            *i += 1;
            s.apply(meta(*i), &Cmd::DeleteVolume { volume_id }).unwrap();
        }
    });
    let r = s.apply(meta(i + 1), &volume("w"));
    assert!(!matches!(r, Err(CmdError::StaleEntry { .. })));
    assert_eq!(
        r,
        Err(CmdError::IdsExhausted {
            kind: "volume".into()
        })
    );
    assert!(s.check_invariants().is_ok(), "CreateVolume -> {r:?}");

    fn volume(name: &str) -> Cmd {
        Cmd::CreateVolume(CreateVolume {
            name: name.into(),
            size_bytes: 2 * EXTENT_SIZE_BYTES,
            provisioning: Provisioning::Thin,
            replicas: 2,
            prefer_cid: 0,
            even: false,
            preferred_zone: 0,
            locs: vec![vec![1, 2], vec![2, 1]],
        })
    }
}
