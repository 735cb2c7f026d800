//! Placement properties over random clusters: whatever the cluster, a
//! placement is valid for the state machine, respects every filter, spreads
//! as widely as the qualifying chunks allow, and fails only when it must.

use std::collections::BTreeSet;

use cairn_sched::{place, PlaceError, PlaceRequest, View};
use cairn_state::{
    ChunkSpaceInfo, ChunkState, Cid, Cmd, CreateVolume, EntryMeta, Provisioning, Reply, State,
    TopoKind, EXTENT_SIZE_BYTES, ROOT_ID,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const GIB: u64 = 1 << 30;

#[derive(Debug, Clone)]
struct ChunkSpec {
    /// None = unracked; else an index into the bricks.
    brick: Option<u8>,
    session: bool,
    failslow: bool,
    removing: bool,
    used_gib: u16,
}

#[derive(Debug, Clone)]
struct ClusterSpec {
    zones: u8,
    racks_per_zone: u8,
    bricks_per_rack: u8,
    chunks: Vec<ChunkSpec>,
    replicas: u8,
    prefer: Option<u8>,
}

fn chunk_spec() -> impl Strategy<Value = ChunkSpec> {
    (
        prop::option::weighted(0.85, any::<u8>()),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
        prop_oneof![0u16..900, 940u16..1000],
    )
        .prop_map(|(brick, session, failslow, removing, used_gib)| ChunkSpec {
            brick,
            session,
            failslow,
            removing,
            used_gib,
        })
}

fn cluster_spec() -> impl Strategy<Value = ClusterSpec> {
    (
        1u8..=3,
        1u8..=3,
        1u8..=2,
        prop::collection::vec(chunk_spec(), 0..24),
        2u8..=3,
        prop::option::of(any::<u8>()),
    )
        .prop_map(
            |(zones, racks_per_zone, bricks_per_rack, chunks, replicas, prefer)| ClusterSpec {
                zones,
                racks_per_zone,
                bricks_per_rack,
                chunks,
                replicas,
                prefer,
            },
        )
}

struct Built {
    state: State,
    index: u64,
}

impl Built {
    fn apply(&mut self, cmd: Cmd) -> Result<Reply, cairn_state::CmdError> {
        self.index += 1;
        self.state.apply(
            EntryMeta {
                index: self.index,
                term: 1,
                leader_time_ms: self.index,
            },
            &cmd,
        )
    }
}

fn build(spec: &ClusterSpec) -> Built {
    let mut b = Built {
        state: State::new(),
        index: 0,
    };
    let id = |r: Result<Reply, _>| match r {
        Ok(Reply::TopoId(id)) => id,
        other => panic!("{other:?}"),
    };
    let mut bricks = vec![];
    for z in 0..spec.zones {
        let zone = id(b.apply(Cmd::AddTopo {
            kind: TopoKind::Zone,
            parent: ROOT_ID,
            name: format!("z{z}"),
        }));
        for r in 0..spec.racks_per_zone {
            let rack = id(b.apply(Cmd::AddTopo {
                kind: TopoKind::Rack,
                parent: zone,
                name: format!("z{z}r{r}"),
            }));
            for k in 0..spec.bricks_per_rack {
                bricks.push(id(b.apply(Cmd::AddTopo {
                    kind: TopoKind::Brick,
                    parent: rack,
                    name: format!("z{z}r{r}b{k}"),
                })));
            }
        }
    }
    for (i, c) in spec.chunks.iter().enumerate() {
        let cid = match b.apply(Cmd::RegisterChunk {
            hostname: format!("h{i}"),
            data_addr: String::new(),
            brick: c.brick.map(|k| bricks[usize::from(k) % bricks.len()]),
            version: "1".into(),
            capabilities: vec![],
        }) {
            Ok(Reply::Cid(c)) => c,
            other => panic!("{other:?}"),
        };
        let ok = |r: Result<Reply, _>| assert!(r.is_ok(), "{r:?}");
        ok(b.apply(Cmd::ReportSpace {
            cid,
            space: ChunkSpaceInfo {
                valid_data_space: 1000 * GIB,
                total_data_capacity: 1000 * GIB,
                provisioned_data_space: u64::from(c.used_gib) * GIB,
                ..Default::default()
            },
        }));
        if c.session {
            ok(b.apply(Cmd::OpenSession {
                cid,
                lease_ms: 14_000,
            }));
        }
        ok(b.apply(Cmd::SetFailslow {
            cid,
            failslow: c.failslow,
        }));
        if c.removing {
            ok(b.apply(Cmd::SetChunkState {
                cid,
                state: ChunkState::Removing,
            }));
        }
    }
    b
}

/// The static filters, restated independently of the implementation.
fn qualifies(state: &State, cid: Cid, stretched: bool) -> bool {
    let Some(c) = state.chunk(cid) else {
        return false;
    };
    let used = state.used_space(c) + EXTENT_SIZE_BYTES;
    c.state == ChunkState::Registered
        && state.has_session(cid)
        && !c.failslow
        && (!stretched || state.zone_of(cid).is_some())
        && u128::from(used) * 10_000
            < u128::from(state.config().load_high_bp) * u128::from(c.space.valid_data_space)
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::with_cases(512)
    })]

    #[test]
    fn placement_is_valid_filtered_spread_and_fails_only_when_it_must(spec in cluster_spec()) {
        let mut b = build(&spec);
        let n = spec.chunks.len();
        let prefer_cid = match spec.prefer {
            Some(p) if n > 0 => Cid::from(p) % n as Cid + 1,
            _ => 0,
        };
        let req = PlaceRequest { prefer_cid, ..PlaceRequest::new(spec.replicas) };
        // Stretched: exactly two zones hold chunks in service.
        let populated: BTreeSet<_> = b.state.chunks()
            .filter(|c| c.state == ChunkState::Registered)
            .filter_map(|c| b.state.zone_of(c.cid))
            .collect();
        let stretched = populated.len() == 2;
        let all: Vec<Cid> = (1..=n as Cid).collect();
        let good: Vec<Cid> = all.iter().copied().filter(|&c| qualifies(&b.state, c, stretched)).collect();

        let result = place(&View::new(&b.state), &req);
        prop_assert_eq!(&result, &place(&View::new(&b.state), &req), "deterministic");

        match result {
            Ok(p) => {
                let loc = p.loc();
                prop_assert_eq!(loc.len(), usize::from(spec.replicas));
                for &c in &loc {
                    prop_assert!(good.contains(&c), "chunk {} chosen but fails a filter\n{}", c, p);
                }
                // Every chunk is either chosen or has a stated reason.
                for &c in &all {
                    prop_assert!(loc.contains(&c) || p.rejected.iter().any(|r| r.cid == c) || good.contains(&c));
                }
                // Prefer-local is a preference: it applies among chunks that pass
                // the filters, and "unracked only when no racked chunk qualifies" is a filter.
                let any_racked_good = good.iter().any(|&c| b.state.rack_of(c).is_some());
                let prefer_usable = prefer_cid != 0
                    && good.contains(&prefer_cid)
                    && (b.state.rack_of(prefer_cid).is_some() || !any_racked_good);
                if prefer_usable {
                    prop_assert_eq!(loc[0], prefer_cid);
                }
                if !stretched {
                    let racked_good: Vec<Cid> = good.iter().copied().filter(|&c| b.state.rack_of(c).is_some()).collect();
                    let unracked_chosen = loc.iter().filter(|&&c| b.state.rack_of(c).is_none()).count();
                    prop_assert!(unracked_chosen <= usize::from(spec.replicas).saturating_sub(racked_good.len()),
                        "unracked chunk chosen while racked chunks qualify\n{}", p);
                    if unracked_chosen == 0 && !prefer_usable {
                        let racks_available: BTreeSet<_> = racked_good.iter().map(|&c| b.state.rack_of(c)).collect();
                        let racks_used: BTreeSet<_> = loc.iter().map(|&c| b.state.rack_of(c)).collect();
                        prop_assert_eq!(racks_used.len(), racks_available.len().min(usize::from(spec.replicas)),
                            "replicas not spread over racks\n{}", p);
                    }
                } else {
                    let zones: Vec<_> = loc.iter().map(|&c| b.state.zone_of(c)).collect();
                    let distinct: BTreeSet<_> = zones.iter().collect();
                    prop_assert_eq!(distinct.len(), 2, "stretched placement uses both zones\n{}", p);
                }
                // The state machine accepts the decision as is.
                let r = b.apply(Cmd::CreateVolume(CreateVolume {
                    name: "v".into(),
                    size_bytes: EXTENT_SIZE_BYTES,
                    provisioning: Provisioning::Thin,
                    replicas: spec.replicas,
                    prefer_cid,
                    even: false,
                    preferred_zone: 0,
                    locs: vec![loc],
                }));
                prop_assert!(r.is_ok(), "{:?}", r);
            }
            Err(PlaceError::NoChunks) => prop_assert_eq!(n, 0),
            Err(PlaceError::NoCandidate { .. }) => {
                if !stretched {
                    prop_assert!(good.len() < usize::from(spec.replicas),
                        "placement failed although {} chunks qualify", good.len());
                } else {
                    // Some zone lacks the chunks its quota needs.
                    let per_zone = |z| good.iter().filter(|&&c| b.state.zone_of(c) == Some(z)).count();
                    let zs: Vec<_> = populated.iter().copied().collect();
                    let (a, c) = (per_zone(zs[0]), per_zone(zs[1]));
                    let need_local = usize::from(spec.replicas) - 1;
                    prop_assert!(a < need_local || c < need_local || a.min(c) == 0 || a + c < usize::from(spec.replicas),
                        "stretched placement failed with {} + {} qualifying chunks", a, c);
                }
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
