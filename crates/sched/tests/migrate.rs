//! Migrate rules (DOMAIN.md §5.3), stretched clusters (§5.4) and manual
//! commands (§5.6), one test per rule, and the worked example of §5.3.

mod common;

use cairn_sched::manual::Pins;
use cairn_sched::migrate::{
    capacity_move, choose_replace, expected_distribution, locality_move, moves_from_load_gap,
    stretched_gather_move, topology_safety_move, Balance, MigrateCtx, Move,
};
use cairn_sched::rules::{Ctx, Loads};
use cairn_sched::stretched::{access_zone, zone_short_of_replicas};
use cairn_sched::{
    GatherTarget, Kind, ManualError, ManualRequest, Mode, NoPlan, OwnerSource, SchedConfig,
    Scheduler, Why,
};
use cairn_state::{Cmd, LoadMode, Provisioning, EXTENT_SIZE_BYTES};
use common::{Fixture, GIB};

fn sched() -> Scheduler {
    Scheduler::new(SchedConfig::default()).unwrap()
}

/// Runs `f` with a migrate context over the fixture's state.
fn with_m<R>(
    f: &Fixture,
    pins: &Pins,
    now_ms: u64,
    run: impl FnOnce(&MigrateCtx<'_, '_>) -> R,
) -> R {
    let ctx = Ctx::new(&f.state);
    let slots =
        cairn_sched::Slots::new(Default::default(), cairn_sched::SlotPolicy::Static).unwrap();
    let balance = Balance::new(&ctx, 1_000, 64);
    let m = MigrateCtx {
        ctx: &ctx,
        slots: &slots,
        pins,
        now_ms,
        balance: &balance,
    };
    run(&m)
}

#[test]
fn worked_example_two_replicas_prefer_local_chunk_two() {
    // Given chunks 1-4 in four racks; chunk 1 is busy (so recovery avoids it)
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    assert_eq!(c, vec![1, 2, 3, 4]);
    f.space(1, 800);
    // pid1 and pid2 with replicas {2,3}, prefer local = 2
    let pid1 = f.volume("v", vec![vec![2, 3], vec![2, 3]], 2);
    let pid2 = pid1 + 1;
    let mut s = sched();
    assert!(s.plan_recover(&f.state, 0).issued.is_empty());
    assert!(
        s.plan_migrate(&f.state, 0).issued.is_empty(),
        "already as expected"
    );

    // Chunk 2 stops: both extents recover 3 -> 4
    let stop = {
        let session_id = f.state.session(2).unwrap().session_id;
        Cmd::ExpireSession { cid: 2, session_id }
    };
    f.apply(stop.clone());
    s.observe(&stop);
    let r = s.plan_recover(&f.state, 1);
    let got: Vec<_> = r
        .issued
        .iter()
        .map(|c| (c.pid, c.src, c.dst, c.owner))
        .collect();
    assert_eq!(got, vec![(pid1, 3, 4, 3), (pid2, 3, 4, 3)]);
    for cmd in &r.issued {
        let applied = f.finish(cmd);
        s.observe(&applied);
        s.complete(cmd.pid, cmd.id, 2).unwrap();
    }
    assert_eq!((f.loc(pid1), f.loc(pid2)), (vec![3, 4], vec![3, 4]));

    // Writes make chunk 3 owner of pid1 and chunk 4 owner of pid2
    f.set_owner(pid1, 3);
    f.set_owner(pid2, 4);

    // Chunk 2 returns
    let back = Cmd::OpenSession {
        cid: 2,
        lease_ms: 14_000,
    };
    f.apply(back.clone());
    s.observe(&back);
    assert!(s.plan_recover(&f.state, 3).issued.is_empty());

    // pid1: expected {2,3}; 4 is not the owner: migrate 4 -> 2 (copy from owner 3)
    // pid2: dst 2, but 4 owns the lease and 3 fits: replace = none, nothing moves
    let pins = Pins::default();
    with_m(&f, &pins, 3, |m| {
        let e1 = f.state.extent(pid1).unwrap();
        assert_eq!(
            expected_distribution(m.ctx, e1.volume, e1.extent, true, &[]),
            vec![2, 3]
        );
        let e2 = f.state.extent(pid2).unwrap();
        assert_eq!(
            expected_distribution(m.ctx, e2.volume, e2.extent, true, &[]),
            vec![2, 3]
        );
        assert_eq!(
            locality_move(m, pid2, e2.volume, e2.extent),
            Err(NoPlan::NoReplace)
        );
    });
    let r = s.plan_migrate(&f.state, 3);
    assert_eq!(r.issued.len(), 1, "{:?}", r.issued);
    let m1 = r.issued[0];
    assert_eq!(
        (m1.pid, m1.src, m1.dst, m1.replace, m1.owner, m1.why),
        (pid1, 3, 2, Some(4), 3, Why::Locality)
    );
    let applied = f.finish(&m1);
    s.observe(&applied);
    s.complete(pid1, m1.id, 4).unwrap();
    assert_eq!(f.alive(pid1), vec![3, 2]);
    assert!(
        s.plan_migrate(&f.state, 4).issued.is_empty(),
        "pid2 still waits"
    );

    // pid2's lease expires (owner = 0): now 4 -> 2
    f.set_owner(pid2, 0);
    let r = s.plan_migrate(&f.state, 5);
    assert_eq!(r.issued.len(), 1);
    let m2 = r.issued[0];
    assert_eq!(
        (m2.pid, m2.src, m2.dst, m2.replace, m2.owner, m2.owner_from),
        (pid2, 4, 2, Some(4), 4, OwnerSource::Src)
    );
    f.finish(&m2);
    s.complete(pid2, m2.id, 6).unwrap();
    assert_eq!(f.alive(pid2), vec![3, 2]);
    assert!(s.plan_migrate(&f.state, 7).issued.is_empty(), "stable");
}

#[test]
fn replace_is_never_the_prefer_local_replica_even_when_failslow() {
    // Given {1,2,3} with prefer local 1 (failslow) and a third replica that
    // does not fit; expected without locality is the spread set
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1], c[2]]], c[0]);
    f.failslow(c[0]);
    let pins = Pins::default();
    with_m(&f, &pins, 0, |m| {
        let e = f.state.extent(pid).unwrap();
        // Everything outside an empty expected set is a candidate except prefer-local.
        let r = choose_replace(m, pid, e.volume, e.extent, &[], false);
        assert_ne!(r, Some(c[0]));
        assert!(r.is_some());
    });
}

#[test]
fn replace_takes_a_failslow_replica_first_and_never_the_owner() {
    let mut f = Fixture::new();
    let c = f.racks(5, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1], c[2]]], 0);
    f.failslow(c[1]);
    f.set_owner(pid, c[2]);
    let pins = Pins::default();
    with_m(&f, &pins, 0, |m| {
        let e = f.state.extent(pid).unwrap();
        assert_eq!(
            choose_replace(m, pid, e.volume, e.extent, &[], false),
            Some(c[1])
        );
        // With the failslow one expected, the owner is still spared.
        assert_eq!(
            choose_replace(m, pid, e.volume, e.extent, &[c[1]], false),
            Some(c[0])
        );
        assert_eq!(
            choose_replace(m, pid, e.volume, e.extent, &[c[0], c[1]], false),
            None
        );
    });
}

#[test]
fn low_load_moves_toward_locality_and_medium_load_does_not() {
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    f.volume("v", vec![vec![c[1], c[2]]], c[0]);
    let mut s = sched();
    let r = s.plan_migrate(&f.state, 0);
    assert_eq!(r.issued.len(), 1);
    assert_eq!((r.issued[0].dst, r.issued[0].why), (c[0], Why::Locality));
    // Medium load: locality moves stop
    let mut f2 = Fixture::new();
    let c2 = f2.racks(4, 700);
    f2.volume("v", vec![vec![c2[1], c2[2]]], c2[0]);
    assert_eq!(Ctx::new(&f2.state).mode, LoadMode::Medium);
    assert!(sched().plan_migrate(&f2.state, 0).issued.is_empty());
}

#[test]
fn medium_load_rebalances_capacity_but_never_moves_prefer_local_replicas() {
    // Given a hot chunk 1 (90 %) and cold chunks, cluster in medium load
    let mut f = Fixture::new();
    let c = f.racks(4, 600);
    f.space(c[0], 900);
    f.space(c[3], 400);
    let local = f.volume("local", vec![vec![c[0], c[1]]; 3], c[0]);
    let plain = f.volume("plain", vec![vec![c[0], c[2]]; 3], 0);
    assert_eq!(Ctx::new(&f.state).mode, LoadMode::Medium);
    let r = sched().plan_migrate(&f.state, 0);
    // Then replicas move off chunk 1 to the coldest chunk, only for the plain volume
    assert!(!r.issued.is_empty());
    for cmd in &r.issued {
        assert!(cmd.pid >= plain && cmd.pid < plain + 3, "{cmd}");
        assert_eq!(
            (cmd.replace, cmd.dst, cmd.why),
            (Some(c[0]), c[3], Why::Capacity)
        );
    }
    let pins = Pins::default();
    with_m(&f, &pins, 0, |m| {
        let e = f.state.extent(local).unwrap();
        assert_eq!(capacity_move(m, local, e.volume, e.extent), None);
    });
}

#[test]
fn rebalance_moves_per_round_are_bounded_by_the_load_gap() {
    let ext = EXTENT_SIZE_BYTES;
    // 1000 GiB valid, cluster at 50 %, gap 10 %: 55 % is within the gap
    assert_eq!(
        moves_from_load_gap(550 * GIB, 1000 * GIB, 5_000, 1_000, ext, 64),
        0
    );
    // 61 % is 110 GiB over: 440 extents, capped at 64
    assert_eq!(
        moves_from_load_gap(610 * GIB, 1000 * GIB, 5_000, 1_000, ext, 64),
        64
    );
    assert_eq!(
        moves_from_load_gap(610 * GIB, 1000 * GIB, 5_000, 1_000, ext, 1_000),
        440
    );
    assert_eq!(moves_from_load_gap(1, 0, 5_000, 1_000, ext, 64), 0);
    // In a round: chunk 1 sheds replicas, at most `max_moves_per_round`
    let mut f = Fixture::new();
    let c = f.racks(4, 600);
    f.space(c[0], 800);
    f.volume("v", vec![vec![c[0], c[1]]; 20], 0);
    let mut s = Scheduler::new(SchedConfig {
        balance_gap_bp: 500,
        max_moves_per_round: 3,
        ..SchedConfig::default()
    })
    .unwrap();
    let r = s.plan_migrate(&f.state, 0);
    assert_eq!(r.issued.len(), 3, "{:?}", r.issued);
    assert!(r
        .issued
        .iter()
        .all(|c| c.replace == Some(1) && c.why == Why::Capacity));
    // Within the gap (chunk 1 at 66 %, cluster at 61.5 %): nothing moves
    f.space(c[0], 660);
    assert!(sched().plan_migrate(&f.state, 0).issued.is_empty());
}

#[test]
fn topology_safety_in_medium_load_may_replace_the_owner_when_nothing_else_fits() {
    // Given {1,2} in the same brick, owned by 1; prefer local 2; a chunk in another rack
    let mut f = Fixture::new();
    let b = f.brick("z", "r0", "b");
    let b1 = f.brick("z", "r1", "b");
    let c1 = f.chunk(Some(b), 700);
    let c2 = f.chunk(Some(b), 700);
    let c3 = f.chunk(Some(b1), 700);
    let pid = f.volume("v", vec![vec![c1, c2]], c2);
    f.set_owner(pid, c1);
    assert_eq!(Ctx::new(&f.state).mode, LoadMode::Medium);
    let pins = Pins::default();
    with_m(&f, &pins, 0, |m| {
        let e = f.state.extent(pid).unwrap();
        // Then the owner is the only replaceable one and it moves to the other rack
        assert_eq!(
            topology_safety_move(m, pid, e.volume, e.extent),
            Some(Move {
                dst: c3,
                replace: c1,
                why: Why::TopologySafety
            })
        );
    });
    // In low load the owner is spared
    for cid in [c1, c2, c3] {
        f.space(cid, 100);
    }
    with_m(&f, &pins, 0, |m| {
        assert_eq!(m.ctx.mode, LoadMode::Low);
        let e = f.state.extent(pid).unwrap();
        assert_eq!(topology_safety_move(m, pid, e.volume, e.extent), None);
    });
}

#[test]
fn never_migrate_into_a_chunk_that_would_reach_ultra_high_load() {
    let mut f = Fixture::new();
    let c = f.racks(3, 10);
    f.space_bytes(c[0], 950 * GIB - EXTENT_SIZE_BYTES / 2);
    let loads = Loads::new(&f.state);
    assert!(loads.would_reach_ultra_high(c[0], EXTENT_SIZE_BYTES));
    assert!(!loads.would_reach_ultra_high(c[1], EXTENT_SIZE_BYTES));
    // The prefer-local chunk is nearly full: no locality move into it.
    f.volume("v", vec![vec![c[1], c[2]]], c[0]);
    assert!(sched().plan_migrate(&f.state, 0).issued.is_empty());
}

#[test]
fn even_volume_keeps_per_chunk_extent_counts_balanced() {
    // Given an even volume whose 6 extents all sit on chunks 1 and 2 of 4
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    let (_, first) = f.volume_with("v", vec![vec![c[0], c[1]]; 6], 0, true, Provisioning::Thin);
    let mut s = sched();
    let mut moved = 0;
    for round in 0..10 {
        let r = s.plan_migrate(&f.state, round);
        for cmd in &r.issued {
            assert_eq!(cmd.why, Why::EvenVolume);
            f.finish(cmd);
            s.complete(cmd.pid, cmd.id, round).unwrap();
            moved += 1;
        }
    }
    let mut count = [0; 4];
    for pid in first..first + 6 {
        for cid in f.alive(pid) {
            count[(cid - 1) as usize] += 1;
        }
    }
    assert_eq!(count, [3, 3, 3, 3], "12 replicas over 4 chunks");
    assert_eq!(moved, 6);
}

#[test]
fn stretched_written_extents_gather_two_to_one_toward_the_access_zone() {
    // Given zones a and b, 2 racks each; an extent with 2 replicas in a, 1 in b;
    // its consumer (prefer local) runs in zone b
    let mut f = Fixture::new();
    let mut za = vec![];
    let mut zb = vec![];
    for r in ["r1", "r2"] {
        let b = f.brick("a", r, "b");
        za.push(f.chunk(Some(b), 10));
        let b = f.brick("b", r, "b");
        zb.push(f.chunk(Some(b), 10));
    }
    let pid = f.volume("v", vec![vec![za[0], za[1], zb[0]]], zb[0]);
    let pins = Pins::default();
    with_m(&f, &pins, 0, |m| {
        let e = f.state.extent(pid).unwrap();
        let zones = m.ctx.zones.expect("stretched");
        assert_eq!(
            access_zone(&f.state, zones, e.volume, e.extent),
            f.state.zone_of(zb[0]).unwrap()
        );
        let mv = stretched_gather_move(m, pid, e.volume, e.extent).unwrap();
        assert_eq!(mv.dst, zb[1]);
        assert!(za.contains(&mv.replace));
    });
    let r = sched().plan_migrate(&f.state, 0);
    assert_eq!(r.issued.len(), 1);
    assert_eq!(
        (r.issued[0].dst, r.issued[0].why),
        (zb[1], Why::StretchedGather)
    );
}

#[test]
fn stretched_never_written_thick_extents_go_to_the_default_zone() {
    let mut f = Fixture::new();
    let mut za = vec![];
    let mut zb = vec![];
    for r in ["r1", "r2"] {
        let b = f.brick("a", r, "b");
        za.push(f.chunk(Some(b), 10));
        let b = f.brick("b", r, "b");
        zb.push(f.chunk(Some(b), 10));
    }
    let zone_b = f.state.zone_of(zb[0]).unwrap();
    f.apply(Cmd::SetConfig {
        key: "default_zone".into(),
        value: zone_b.to_string(),
    });
    let (_, pid) = f.volume_with(
        "v",
        vec![vec![za[0], za[1], zb[0]]],
        0,
        false,
        Provisioning::Thick,
    );
    let zones = Ctx::new(&f.state).zones.unwrap();
    let e = f.state.extent(pid).unwrap();
    assert_eq!(access_zone(&f.state, zones, e.volume, e.extent), zone_b);
    // Once written from zone a (the owner serves I/O there), zone a is the target.
    f.set_owner(pid, za[0]);
    let e = f.state.extent(pid).unwrap();
    assert_eq!(
        access_zone(&f.state, zones, e.volume, e.extent),
        f.state.zone_of(za[0]).unwrap()
    );
}

#[test]
fn stretched_recover_goes_to_the_zone_short_of_replicas() {
    let mut f = Fixture::new();
    let mut za = vec![];
    let mut zb = vec![];
    for r in ["r1", "r2", "r3"] {
        let b = f.brick("a", r, "b");
        za.push(f.chunk(Some(b), 10));
        let b = f.brick("b", r, "b");
        zb.push(f.chunk(Some(b), 100)); // zone b is busier: load alone would not pick it
    }
    let pid = f.volume("v", vec![vec![za[0], za[1], zb[0]]], 0);
    f.stop(zb[0]);
    let ctx = Ctx::new(&f.state);
    let e = f.state.extent(pid).unwrap();
    assert_eq!(
        zone_short_of_replicas(&f.state, ctx.zones.unwrap(), e.volume, e.extent),
        f.state.zone_of(zb[1])
    );
    let r = sched().plan_recover(&f.state, 0);
    assert!(zb.contains(&r.issued[0].dst), "{:?}", r.issued);
}

#[test]
fn manual_commands_are_validated_with_typed_errors() {
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1]]], 0);
    f.stop(c[3]);
    let mut s = sched();
    let mig = |src, dst, replace| ManualRequest {
        kind: Kind::Migrate,
        pid,
        src,
        dst,
        replace,
    };
    let err = |s: &mut Scheduler, r: ManualRequest| s.add_manual(&f.state, &r, 0).unwrap_err();
    assert_eq!(
        err(
            &mut s,
            ManualRequest {
                pid: 999,
                ..mig(c[0], c[2], Some(c[1]))
            }
        ),
        ManualError::ExtentNotFound(999)
    );
    assert_eq!(
        err(&mut s, mig(c[0], 77, Some(c[1]))),
        ManualError::ChunkNotFound(77)
    );
    assert_eq!(
        err(&mut s, mig(c[2], c[3], Some(c[1]))),
        ManualError::SrcNotAlive { pid, src: c[2] }
    );
    assert_eq!(
        err(&mut s, mig(c[0], c[1], Some(c[1]))),
        ManualError::DstHoldsReplica { pid, dst: c[1] }
    );
    assert!(matches!(
        err(&mut s, mig(c[0], c[3], Some(c[1]))),
        ManualError::DstUnusable { .. }
    ));
    assert_eq!(
        err(&mut s, mig(c[0], c[2], None)),
        ManualError::ReplaceMissing
    );
    assert_eq!(
        err(&mut s, mig(c[0], c[2], Some(c[2]))),
        ManualError::ReplaceNotInLoc { pid, replace: c[2] }
    );
    assert!(matches!(
        err(
            &mut s,
            ManualRequest {
                kind: Kind::Recover,
                replace: None,
                ..mig(c[0], c[2], None)
            }
        ),
        ManualError::NothingToRecover { .. }
    ));
    assert_eq!(
        s.queue(Kind::Migrate).len(),
        0,
        "nothing queued by a rejection"
    );
}

#[test]
fn manual_command_goes_to_the_front_and_conflicts_with_running_commands() {
    // Given 3 degraded extents and one recover source slot
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1]]; 3], 0);
    f.stop(c[1]);
    let mut s = Scheduler::new(SchedConfig {
        slots: cairn_sched::SlotLimits {
            recover_src: 1,
            ..Default::default()
        },
        ..SchedConfig::default()
    })
    .unwrap();
    let first = s.plan_recover(&f.state, 0).issued;
    assert_eq!(first.iter().map(|c| c.pid).collect::<Vec<_>>(), vec![pid]);
    // A manual recover of the running extent conflicts
    let req = |p| ManualRequest {
        kind: Kind::Recover,
        pid: p,
        src: c[0],
        dst: c[3],
        replace: None,
    };
    assert_eq!(
        s.add_manual(&f.state, &req(pid), 0),
        Err(ManualError::ConflictRunning {
            pid,
            id: first[0].id,
            kind: Kind::Recover
        })
    );
    // A manual recover of the last extent jumps the queue
    let ok = s.add_manual(&f.state, &req(pid + 2), 0).unwrap();
    assert_eq!(
        (
            ok.pid,
            ok.loc.clone(),
            ok.alive_loc.clone(),
            ok.dst,
            ok.owner,
            ok.mode
        ),
        (
            pid + 2,
            vec![c[0], c[1]],
            vec![c[0]],
            c[3],
            c[0],
            Mode::Manual
        )
    );
    assert_eq!(s.queue(Kind::Recover).iter().next().unwrap().pid, pid + 2);
    assert_eq!(
        s.add_manual(&f.state, &req(pid + 2), 0),
        Err(ManualError::ConflictQueued { pid: pid + 2 })
    );
    f.finish(&first[0]);
    s.complete(pid, first[0].id, 1).unwrap();
    let next = s.plan_recover(&f.state, 1).issued;
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].pid, next[0].dst, next[0].mode),
        (pid + 2, c[3], Mode::Manual)
    );
}

#[test]
fn gather_brings_a_volume_onto_one_chunk_without_reaching_ultra_high() {
    // Given a 10-extent volume on {1,2} and chunk 3 with room for 4 more extents
    let mut f = Fixture::new();
    let c = f.racks(3, 10);
    let (vid, first) = f.volume_with(
        "v",
        vec![vec![c[0], c[1]]; 10],
        0,
        false,
        Provisioning::Thin,
    );
    f.space_bytes(c[2], 950 * GIB - 4 * EXTENT_SIZE_BYTES - 1);
    let mut s = sched();
    let report = s
        .gather(&f.state, GatherTarget::Volume(vid), c[2], 0)
        .unwrap();
    assert_eq!(report.queued.len(), 4);
    assert_eq!(report.left_for_capacity, 6);
    let pids: Vec<_> = s.queue(Kind::Migrate).iter().map(|e| e.pid).collect();
    assert_eq!(
        pids,
        (first..first + 4).collect::<Vec<_>>(),
        "front, in pid order"
    );
    assert!(report
        .queued
        .iter()
        .all(|q| q.dst == c[2] && q.mode == Mode::Gather));
    // A full chunk refuses outright
    f.space_bytes(c[2], 950 * GIB);
    assert_eq!(
        sched().gather(&f.state, GatherTarget::Extent(first), c[2], 0),
        Err(ManualError::WouldBeUltraHigh { cid: c[2] })
    );
}

#[test]
fn gather_is_not_undone_by_the_next_migrate_round() {
    // Given an extent with prefer local 1, gathered onto chunk 4 (not expected)
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    let pid = f.volume("v", vec![vec![c[1], c[2]]], c[0]);
    let mut s = sched();
    let report = s
        .gather(&f.state, GatherTarget::Extent(pid), c[3], 0)
        .unwrap();
    let issued = s.plan_migrate(&f.state, 0).issued;
    assert_eq!(issued.len(), 1);
    let q = report.queued[0];
    assert_eq!(
        (
            issued[0].pid,
            issued[0].dst,
            issued[0].replace,
            issued[0].mode
        ),
        (q.pid, c[3], q.replace, Mode::Gather)
    );
    f.finish(&issued[0]);
    s.complete(pid, issued[0].id, 1).unwrap();
    assert!(f.alive(pid).contains(&c[3]));
    // When the next rounds move toward locality, chunk 4's replica stays
    for t in 2..6 {
        for cmd in s.plan_migrate(&f.state, t).issued {
            assert_ne!(cmd.replace, Some(c[3]), "{cmd}");
            f.finish(&cmd);
            s.complete(cmd.pid, cmd.id, t).unwrap();
        }
    }
    assert!(f.alive(pid).contains(&c[3]));
    assert!(
        f.alive(pid).contains(&c[0]),
        "locality still served: {:?}",
        f.alive(pid)
    );
    // After the pin expires, the automatic planner may move it again
    let later = SchedConfig::default().pin_ms + 10;
    let r = s.plan_migrate(&f.state, later);
    assert!(r.issued.iter().all(|c| c.why != Why::Operator));
}
