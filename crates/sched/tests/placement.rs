//! Placement rules (DOMAIN.md §5.1, §5.4), one test per rule.

use cairn_sched::{place, place_volume, Filter, PlaceError, PlaceRequest, Reason, View};
use cairn_state::{
    ChunkSpaceInfo, ChunkState, Cid, Cmd, CreateVolume, Distance, EntryMeta, Provisioning, Reply,
    State, TopoId, TopoKind, EXTENT_SIZE_BYTES, ROOT_ID,
};

const GIB: u64 = 1 << 30;

/// A state built through `apply`, as a Raft member would build it.
struct Fixture {
    state: State,
    index: u64,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            state: State::new(),
            index: 0,
        }
    }

    fn apply(&mut self, cmd: Cmd) -> Reply {
        self.index += 1;
        let meta = EntryMeta {
            index: self.index,
            term: 1,
            leader_time_ms: 1_000 * self.index,
        };
        self.state
            .apply(meta, &cmd)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    fn topo(&mut self, kind: TopoKind, parent: TopoId, name: &str) -> TopoId {
        match self.apply(Cmd::AddTopo {
            kind,
            parent,
            name: name.into(),
        }) {
            Reply::TopoId(id) => id,
            r => panic!("{r:?}"),
        }
    }

    /// Zone `z`, rack `z/r`, brick `z/r/b`, created as needed.
    fn brick(&mut self, zone: &str, rack: &str, brick: &str) -> TopoId {
        let find = |s: &State, kind, name: &str| {
            s.topo_nodes()
                .find(|n| n.kind == kind && n.name == name)
                .map(|n| n.id)
        };
        let z = find(&self.state, TopoKind::Zone, zone)
            .unwrap_or_else(|| self.topo(TopoKind::Zone, ROOT_ID, zone));
        let rn = format!("{zone}/{rack}");
        let r = find(&self.state, TopoKind::Rack, &rn)
            .unwrap_or_else(|| self.topo(TopoKind::Rack, z, &rn));
        let bn = format!("{rn}/{brick}");
        find(&self.state, TopoKind::Brick, &bn)
            .unwrap_or_else(|| self.topo(TopoKind::Brick, r, &bn))
    }

    /// A live chunk with a session and `used_gib` provisioned of 1000 GiB valid.
    fn chunk(&mut self, brick: Option<TopoId>, used_gib: u64) -> Cid {
        let cid = match self.apply(Cmd::RegisterChunk {
            hostname: format!("host-{}", self.index),
            data_addr: "127.0.0.1:0".into(),
            brick,
            version: "0.1.0".into(),
            capabilities: vec![],
        }) {
            Reply::Cid(c) => c,
            r => panic!("{r:?}"),
        };
        self.space(cid, used_gib);
        self.apply(Cmd::OpenSession {
            cid,
            lease_ms: 14_000,
        });
        cid
    }

    fn space(&mut self, cid: Cid, used_gib: u64) {
        self.apply(Cmd::ReportSpace {
            cid,
            space: ChunkSpaceInfo {
                valid_data_space: 1000 * GIB,
                total_data_capacity: 1000 * GIB,
                provisioned_data_space: used_gib * GIB,
                allocated_data_space: used_gib * GIB,
                ..Default::default()
            },
        });
    }

    fn place(&self, req: &PlaceRequest) -> Result<cairn_sched::Placement, PlaceError> {
        place(&View::new(&self.state), req)
    }
}

fn req(replicas: u8) -> PlaceRequest {
    PlaceRequest::new(replicas)
}

fn rejected_by(p: &cairn_sched::Placement, cid: Cid) -> Option<Filter> {
    p.rejected.iter().find(|r| r.cid == cid).map(|r| r.filter)
}

#[test]
fn prefer_local_chunk_gets_replica_one() {
    let mut f = Fixture::new();
    let b1 = f.brick("z", "r1", "b");
    let b2 = f.brick("z", "r2", "b");
    let _c1 = f.chunk(Some(b1), 10);
    let c2 = f.chunk(Some(b2), 900); // heavily loaded, still the consumer's chunk
    let _c3 = f.chunk(Some(b1), 10);
    let p = f
        .place(&PlaceRequest {
            prefer_cid: c2,
            ..req(2)
        })
        .unwrap();
    assert_eq!(p.chosen[0].cid, c2);
    assert_eq!(p.chosen[0].reason, Reason::PreferLocal);
}

#[test]
fn failslow_prefer_local_chunk_is_not_used_and_says_why() {
    let mut f = Fixture::new();
    let b = f.brick("z", "r1", "b");
    let c1 = f.chunk(Some(b), 10);
    let c2 = f.chunk(Some(b), 20);
    let c3 = f.chunk(Some(b), 30);
    f.apply(Cmd::SetFailslow {
        cid: c1,
        failslow: true,
    });
    let p = f
        .place(&PlaceRequest {
            prefer_cid: c1,
            ..req(2)
        })
        .unwrap();
    assert_eq!(p.loc(), vec![c2, c3]);
    assert!(matches!(p.chosen[0].reason, Reason::LowestLoad { .. }));
    assert_eq!(rejected_by(&p, c1), Some(Filter::Failslow));
}

#[test]
fn unknown_consumer_puts_replica_one_on_the_lowest_load_chunk() {
    let mut f = Fixture::new();
    let b1 = f.brick("z", "r1", "b");
    let b2 = f.brick("z", "r2", "b");
    let _c1 = f.chunk(Some(b1), 500);
    let c2 = f.chunk(Some(b2), 100);
    let _c3 = f.chunk(Some(b1), 300);
    let p = f.place(&req(2)).unwrap();
    assert_eq!(p.chosen[0].cid, c2);
    assert_eq!(p.chosen[0].reason, Reason::LowestLoad { load_bp: 1000 });
}

#[test]
fn three_replicas_land_on_three_racks_when_three_racks_exist() {
    let mut f = Fixture::new();
    // Rack 1 has the emptiest chunks, so a load-only choice would stack it.
    let r1a = f.brick("z", "r1", "a");
    let r1b = f.brick("z", "r1", "b");
    let r2 = f.brick("z", "r2", "a");
    let r3 = f.brick("z", "r3", "a");
    for _ in 0..3 {
        f.chunk(Some(r1a), 1);
        f.chunk(Some(r1b), 1);
    }
    f.chunk(Some(r2), 400);
    f.chunk(Some(r3), 500);
    let p = f.place(&req(3)).unwrap();
    let racks: std::collections::BTreeSet<_> = p
        .loc()
        .iter()
        .map(|&c| f.state.rack_of(c).unwrap())
        .collect();
    assert_eq!(racks.len(), 3, "{p}");
    for c in &p.chosen[1..] {
        assert!(
            matches!(
                c.reason,
                Reason::Spread {
                    distance: Distance::SameZone,
                    ..
                }
            ),
            "{p}"
        );
    }
}

#[test]
fn spread_prefers_other_brick_over_same_brick() {
    let mut f = Fixture::new();
    let a = f.brick("z", "r", "a");
    let b = f.brick("z", "r", "b");
    let c1 = f.chunk(Some(a), 1);
    let _c2 = f.chunk(Some(a), 2);
    let c3 = f.chunk(Some(b), 300);
    let p = f.place(&req(2)).unwrap();
    assert_eq!(p.loc(), vec![c1, c3]);
}

#[test]
fn unracked_chunks_are_chosen_only_when_no_racked_chunk_qualifies() {
    let mut f = Fixture::new();
    let b1 = f.brick("z", "r1", "b");
    let b2 = f.brick("z", "r2", "b");
    let u1 = f.chunk(None, 0); // emptiest, but unracked
    let u2 = f.chunk(None, 0);
    let c1 = f.chunk(Some(b1), 200);
    let c2 = f.chunk(Some(b2), 300);

    // Given racked chunks that qualify, the unracked ones are passed over.
    let p = f.place(&req(2)).unwrap();
    assert_eq!(p.loc(), vec![c1, c2]);
    assert_eq!(rejected_by(&p, u1), Some(Filter::Unracked));
    assert_eq!(rejected_by(&p, u2), Some(Filter::Unracked));

    // Given only one racked chunk qualifies, replica 2 falls back to unracked.
    f.apply(Cmd::SetFailslow {
        cid: c2,
        failslow: true,
    });
    let p = f.place(&req(2)).unwrap();
    assert_eq!(p.loc(), vec![c1, u1]);

    // Given no racked chunk qualifies, both replicas are unracked.
    f.apply(Cmd::SetFailslow {
        cid: c1,
        failslow: true,
    });
    let p = f.place(&req(2)).unwrap();
    assert_eq!(p.loc(), vec![u1, u2]);
}

#[test]
fn stretched_cluster_gets_two_replicas_in_the_preferred_zone_and_one_in_the_other() {
    let mut f = Fixture::new();
    let mut zone_a = vec![];
    let mut zone_b = vec![];
    for r in ["r1", "r2"] {
        let b = f.brick("a", r, "b");
        zone_a.push(f.chunk(Some(b), 1)); // zone a is emptier
        let b = f.brick("b", r, "b");
        zone_b.push(f.chunk(Some(b), 100));
        zone_b.push(f.chunk(Some(b), 100));
    }
    let consumer = zone_b[3];
    let p = f
        .place(&PlaceRequest {
            prefer_cid: consumer,
            ..req(3)
        })
        .unwrap();
    assert!(p.stretched);
    let loc = p.loc();
    assert_eq!(loc[0], consumer);
    assert!(zone_b.contains(&loc[1]), "{p}");
    assert_ne!(
        f.state.rack_of(loc[1]),
        f.state.rack_of(consumer),
        "second local replica spreads over racks"
    );
    assert!(zone_a.contains(&loc[2]), "{p}");

    // Without a consumer, the volume's preferred zone decides.
    let zone_a_id = f.state.zone_of(zone_a[0]).unwrap();
    let p = f
        .place(&PlaceRequest {
            preferred_zone: zone_a_id,
            ..req(3)
        })
        .unwrap();
    let in_a = p.loc().iter().filter(|c| zone_a.contains(c)).count();
    assert_eq!(in_a, 2, "{p}");
}

#[test]
fn stretched_cluster_never_uses_unracked_chunks() {
    let mut f = Fixture::new();
    let a = f.brick("a", "r", "b");
    let b = f.brick("b", "r", "b");
    let u = f.chunk(None, 0);
    f.chunk(Some(a), 10);
    f.chunk(Some(b), 10);
    let p = f.place(&req(2)).unwrap();
    assert!(!p.loc().contains(&u));
    assert_eq!(rejected_by(&p, u), Some(Filter::NoZone));
}

#[test]
fn filters_reject_removing_sessionless_failslow_and_nearly_full_chunks() {
    let mut f = Fixture::new();
    let b = f.brick("z", "r", "b");
    let removing = f.chunk(Some(b), 0);
    f.apply(Cmd::SetChunkState {
        cid: removing,
        state: ChunkState::Removing,
    });
    let sessionless = f.chunk(Some(b), 0);
    let sid = match f.state.session(sessionless) {
        Some(s) => s.session_id,
        None => unreachable!(),
    };
    f.apply(Cmd::ExpireSession {
        cid: sessionless,
        session_id: sid,
    });
    let slow = f.chunk(Some(b), 0);
    f.apply(Cmd::SetFailslow {
        cid: slow,
        failslow: true,
    });
    // 949.9 GiB of 1000 is below 95 %, but one more 256 MiB extent reaches it.
    let full = f.chunk(Some(b), 0);
    f.apply(Cmd::ReportSpace {
        cid: full,
        space: ChunkSpaceInfo {
            valid_data_space: 1000 * GIB,
            total_data_capacity: 1000 * GIB,
            provisioned_data_space: 950 * GIB - EXTENT_SIZE_BYTES / 2,
            ..Default::default()
        },
    });
    let unreported = f.chunk(Some(b), 0);
    f.apply(Cmd::ReportSpace {
        cid: unreported,
        space: ChunkSpaceInfo::default(),
    });
    let ok1 = f.chunk(Some(b), 900);
    let ok2 = f.chunk(Some(b), 900);

    let p = f.place(&req(2)).unwrap();
    assert_eq!(p.loc(), vec![ok1, ok2]);
    assert_eq!(rejected_by(&p, removing), Some(Filter::NotRegistered));
    assert_eq!(rejected_by(&p, sessionless), Some(Filter::NoSession));
    assert_eq!(rejected_by(&p, slow), Some(Filter::Failslow));
    assert_eq!(rejected_by(&p, full), Some(Filter::WouldBeUltraHigh));
    assert_eq!(rejected_by(&p, unreported), Some(Filter::NoSpaceReported));
}

#[test]
fn thick_provisioning_uses_allocated_space_for_capacity() {
    let mut f = Fixture::new();
    let b = f.brick("z", "r", "b");
    let c1 = f.chunk(Some(b), 0);
    let c2 = f.chunk(Some(b), 50);
    let c3 = f.chunk(Some(b), 50);
    // c1: little provisioned but nearly all allocated.
    f.apply(Cmd::ReportSpace {
        cid: c1,
        space: ChunkSpaceInfo {
            valid_data_space: 1000 * GIB,
            total_data_capacity: 1000 * GIB,
            provisioned_data_space: GIB,
            allocated_data_space: 990 * GIB,
            ..Default::default()
        },
    });
    assert_eq!(
        f.place(&req(2)).unwrap().chosen[0].cid,
        c1,
        "thin: c1 is the emptiest"
    );
    f.apply(Cmd::SetConfig {
        key: "provisioning".into(),
        value: "thick".into(),
    });
    let p = f.place(&req(2)).unwrap();
    assert_eq!(p.loc(), vec![c2, c3]);
    assert_eq!(rejected_by(&p, c1), Some(Filter::WouldBeUltraHigh));
}

#[test]
fn no_candidate_error_names_the_filter_that_removed_the_last_candidates() {
    let mut f = Fixture::new();
    let b = f.brick("z", "r", "b");
    let c1 = f.chunk(Some(b), 0);
    let c2 = f.chunk(Some(b), 0);
    f.apply(Cmd::SetFailslow {
        cid: c2,
        failslow: true,
    });
    // One usable chunk, two replicas: replica 2 finds only c1, already chosen.
    match f.place(&req(2)) {
        Err(PlaceError::NoCandidate {
            replica: 2,
            filter: Filter::AlreadyChosen,
            chosen,
            rejected,
        }) => {
            assert_eq!(chosen, vec![c1]);
            assert_eq!(rejected.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    // Every chunk failslow: the failslow filter removed the last ones.
    f.apply(Cmd::SetFailslow {
        cid: c1,
        failslow: true,
    });
    match f.place(&req(2)) {
        Err(
            e @ PlaceError::NoCandidate {
                replica: 1,
                filter: Filter::Failslow,
                ..
            },
        ) => {
            assert!(e.to_string().contains("failslow"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        place(&View::new(&State::new()), &req(2)),
        Err(PlaceError::NoChunks)
    );
    assert!(matches!(
        f.place(&req(4)),
        Err(PlaceError::InvalidRequest(_))
    ));
}

#[test]
fn ties_break_by_lowest_cid() {
    let mut f = Fixture::new();
    let b = f.brick("z", "r", "b");
    let cids: Vec<Cid> = (0..5).map(|_| f.chunk(Some(b), 100)).collect();
    let p = f.place(&req(3)).unwrap();
    assert_eq!(p.loc(), cids[..3].to_vec());
    assert_eq!(f.place(&req(3)).unwrap(), p, "same input, same placement");
}

#[test]
fn a_volume_spreads_its_extents_by_counting_earlier_placements() {
    let mut f = Fixture::new();
    let mut cids = vec![];
    for r in ["r1", "r2", "r3", "r4"] {
        let b = f.brick("z", r, "b");
        cids.push(f.chunk(Some(b), 100));
    }
    let placements = place_volume(&f.state, &req(2), 40).unwrap();
    let mut count = [0; 4];
    for p in &placements {
        for c in p.loc() {
            count[(c - 1) as usize] += 1;
        }
    }
    assert_eq!(
        count,
        [20, 20, 20, 20],
        "40 extents x 2 replicas over 4 equal chunks"
    );

    // And the placement is accepted by the state machine as is.
    let locs = placements.iter().map(|p| p.loc()).collect();
    let reply = f.apply(Cmd::CreateVolume(CreateVolume {
        name: "vol".into(),
        size_bytes: 40 * EXTENT_SIZE_BYTES,
        provisioning: Provisioning::Thin,
        replicas: 2,
        prefer_cid: 0,
        even: false,
        preferred_zone: 0,
        locs,
    }));
    assert!(matches!(reply, Reply::Volume { extents: 40, .. }));
}

#[test]
fn explain_lists_every_choice_and_rejection() {
    let mut f = Fixture::new();
    let b = f.brick("z", "r", "b");
    let c1 = f.chunk(Some(b), 10);
    let c2 = f.chunk(Some(b), 20);
    f.apply(Cmd::SetFailslow {
        cid: c2,
        failslow: true,
    });
    let c3 = f.chunk(Some(b), 30);
    let text = f
        .place(&PlaceRequest {
            prefer_cid: c1,
            ..req(2)
        })
        .unwrap()
        .to_string();
    assert!(
        text.contains(&format!("replica 1: chunk {c1} — prefer-local chunk")),
        "{text}"
    );
    assert!(
        text.contains(&format!("replica 2: chunk {c3} — spread")),
        "{text}"
    );
    assert!(
        text.contains(&format!("rejected chunk {c2}: Failslow")),
        "{text}"
    );
}

#[test]
fn replica_one_of_a_plain_volume_follows_load_not_replica_counts() {
    let mut f = Fixture::new();
    let mut cids = vec![];
    for r in ["r1", "r2", "r3"] {
        let b = f.brick("z", r, "b");
        cids.push(f.chunk(Some(b), if r == "r1" { 100 } else { 500 }));
    }
    // Two extents of a volume that is not even: chunk 1 (10 %) stays the
    // least loaded after one extent, so it takes replica 1 both times.
    let placements = place_volume(&f.state, &req(2), 2).unwrap();
    assert_eq!(placements[0].chosen[0].cid, cids[0]);
    assert_eq!(placements[1].chosen[0].cid, cids[0], "{}", placements[1]);
    // An even volume spreads replica 1 by its own replica counts first.
    let even = PlaceRequest {
        even: true,
        ..req(2)
    };
    let placements = place_volume(&f.state, &even, 2).unwrap();
    assert_ne!(placements[1].chosen[0].cid, cids[0], "{}", placements[1]);
}

#[test]
fn stretched_preferred_zone_is_the_consumers_then_the_volumes_then_the_clusters_default() {
    let mut f = Fixture::new();
    let mut by_zone = std::collections::BTreeMap::new();
    for z in ["a", "b"] {
        for r in ["r1", "r2"] {
            let b = f.brick(z, r, "b");
            let c = f.chunk(Some(b), 100);
            by_zone.entry(z).or_insert_with(Vec::new).push(c);
        }
    }
    // An empty third zone does not turn the stretched rule off.
    f.topo(TopoKind::Zone, ROOT_ID, "empty");
    let zone = |f: &Fixture, z: &str| f.state.zone_of(by_zone[z][0]).unwrap();
    let (za, zb) = (zone(&f, "a"), zone(&f, "b"));
    // Zone of every chunk, fixed from here on.
    let zone_of: std::collections::BTreeMap<Cid, TopoId> = f
        .state
        .chunks()
        .filter_map(|c| Some((c.cid, f.state.zone_of(c.cid)?)))
        .collect();
    let count_in = |p: &cairn_sched::Placement, z: TopoId| {
        p.loc()
            .iter()
            .filter(|c| zone_of.get(c) == Some(&z))
            .count()
    };

    // No hint at all: the lowest zone id.
    let p = f.place(&req(3)).unwrap();
    assert!(p.stretched);
    assert_eq!(count_in(&p, za), 2, "{p}");

    // The cluster's default zone.
    f.apply(Cmd::SetConfig {
        key: "default_zone".into(),
        value: zb.to_string(),
    });
    assert_eq!(count_in(&f.place(&req(3)).unwrap(), zb), 2);

    // The volume's preferred zone beats the default.
    let p = f
        .place(&PlaceRequest {
            preferred_zone: za,
            ..req(3)
        })
        .unwrap();
    assert_eq!(count_in(&p, za), 2);

    // The consumer's zone beats the volume's.
    let consumer = by_zone["b"][1];
    let p = f
        .place(&PlaceRequest {
            preferred_zone: za,
            prefer_cid: consumer,
            ..req(3)
        })
        .unwrap();
    assert_eq!(p.loc()[0], consumer);
    assert_eq!(count_in(&p, zb), 2, "{p}");
}

#[test]
fn two_zones_with_chunks_in_only_one_are_not_stretched() {
    let mut f = Fixture::new();
    let a = f.brick("a", "r1", "b");
    let a2 = f.brick("a", "r2", "b");
    f.brick("b", "r1", "b");
    f.chunk(Some(a), 10);
    f.chunk(Some(a2), 10);
    let p = f.place(&req(2)).unwrap();
    assert!(!p.stretched, "{p}");
}

#[test]
fn removed_chunks_are_not_even_listed() {
    let mut f = Fixture::new();
    let b = f.brick("z", "r", "b");
    let gone = f.chunk(Some(b), 0);
    let sid = f.state.session(gone).map(|s| s.session_id).unwrap();
    f.apply(Cmd::CloseSession {
        cid: gone,
        session_id: sid,
    });
    f.apply(Cmd::SetChunkState {
        cid: gone,
        state: ChunkState::Removing,
    });
    f.apply(Cmd::SetChunkState {
        cid: gone,
        state: ChunkState::Removed,
    });
    f.chunk(Some(b), 10);
    f.chunk(Some(b), 10);
    let p = f.place(&req(2)).unwrap();
    assert_eq!(rejected_by(&p, gone), None);
    assert!(!p.loc().contains(&gone));
}
