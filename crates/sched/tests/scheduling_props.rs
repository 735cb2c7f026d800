//! Scheduling properties over random clusters: whatever the cluster, no
//! plan exceeds a slot limit, targets a chunk that already holds the
//! replica, puts two replicas of an extent on one chunk, or lowers topology
//! safety; and the same input gives the same plan.

mod common;

use cairn_sched::rules::keeps_topology_safety;
use cairn_sched::{Kind, Mode, Round, SchedCmd, SchedConfig, Scheduler, SlotKind, SlotLimits};
use cairn_state::{Cid, Cmd, Provisioning, State};
use common::Fixture;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[derive(Debug, Clone)]
struct Spec {
    zones: u8,
    racks: u8,
    chunks: Vec<(u8, u16, bool)>,    // (rack index, used GiB, failslow)
    extents: Vec<(u8, [u8; 3], u8)>, // (replicas, loc picks, prefer pick)
    stop: Vec<u8>,
    owners: Vec<(u8, u8)>,
    slots: u32,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        1u8..=3,
        1u8..=3,
        prop::collection::vec(
            (
                any::<u8>(),
                prop_oneof![0u16..800, 900u16..960],
                prop::bool::weighted(0.15),
            ),
            4..14,
        ),
        prop::collection::vec((2u8..=3, any::<[u8; 3]>(), any::<u8>()), 1..40),
        prop::collection::vec(any::<u8>(), 0..3),
        prop::collection::vec((any::<u8>(), any::<u8>()), 0..10),
        1u32..4,
    )
        .prop_map(
            |(zones, racks, chunks, extents, stop, owners, slots)| Spec {
                zones,
                racks,
                chunks,
                extents,
                stop,
                owners,
                slots,
            },
        )
}

/// Builds the cluster; extents whose random loc is not valid are skipped.
fn build(s: &Spec) -> Fixture {
    let mut f = Fixture::new();
    let n = s.chunks.len() as u32;
    for (i, &(rack, used, slow)) in s.chunks.iter().enumerate() {
        let r = usize::from(rack) % (usize::from(s.zones) * usize::from(s.racks));
        let zone = r / usize::from(s.racks);
        let b = f.brick(
            &format!("z{zone}"),
            &format!("r{r}"),
            &format!("b{}", i % 2),
        );
        let cid = f.chunk(Some(b), u64::from(used));
        if slow {
            f.failslow(cid);
        }
    }
    for (k, &(replicas, picks, prefer)) in s.extents.iter().enumerate() {
        let mut loc: Vec<Cid> = vec![];
        for p in picks.iter().take(usize::from(replicas)) {
            let mut c = u32::from(*p) % n + 1;
            while loc.contains(&c) {
                c = c % n + 1;
            }
            loc.push(c);
        }
        let prefer = if prefer % 3 == 0 {
            u32::from(prefer) % n + 1
        } else {
            0
        };
        f.volume_with(
            &format!("v{k}"),
            vec![loc],
            prefer,
            k % 5 == 0,
            Provisioning::Thin,
        );
    }
    for &(pid, owner) in &s.owners {
        let pid = u64::from(pid) % s.extents.len() as u64 + 1;
        let owner = u32::from(owner) % n + 1;
        f.set_owner(pid, owner);
    }
    for &c in &s.stop {
        let cid = u32::from(c) % n + 1;
        if f.state.has_session(cid) {
            f.stop(cid);
        }
    }
    f
}

/// Checks one round against the state it was planned on.
fn check_round(state: &State, sched: &Scheduler, round: &Round) -> Result<(), TestCaseError> {
    for cmd in &round.issued {
        let e = state.extent(cmd.pid).expect("planned extent exists");
        let loc = e.extent.loc;
        prop_assert!(
            !loc.contains(cmd.dst),
            "dst already holds a replica: {}",
            cmd
        );
        prop_assert!(loc.is_alive(cmd.src), "src not alive: {}", cmd);
        prop_assert_ne!(cmd.src, cmd.dst);
        prop_assert!(cmd.owner != 0 && state.has_session(cmd.owner), "{}", cmd);
        let update = cmd.completion(e.extent);
        prop_assert!(update.is_ok(), "{}: {:?}", cmd, update);
        let after = update.unwrap().loc.unwrap();
        let mut dedup = after.clone();
        dedup.sort_unstable();
        dedup.dedup();
        prop_assert_eq!(
            dedup.len(),
            after.len(),
            "two replicas on one chunk: {}",
            cmd
        );
        if cmd.kind == Kind::Migrate && cmd.mode == Mode::Auto {
            let replace = cmd.replace.expect("migrate replaces");
            prop_assert!(loc.is_alive(replace));
            prop_assert_ne!(
                replace,
                e.extent.prefer_cid,
                "prefer-local replaced: {}",
                cmd
            );
            let before: Vec<Cid> = loc.alive_loc().collect();
            prop_assert!(
                keeps_topology_safety(state, &before, &after),
                "safety lowered: {}",
                cmd
            );
        }
    }
    // No slot limit exceeded, counted from the running commands themselves.
    for c in state.chunks() {
        for kind in SlotKind::ALL {
            let used = sched
                .running()
                .filter(|r| {
                    (SlotKind::src(r.cmd.kind) == kind && r.cmd.src == c.cid)
                        || (SlotKind::dst(r.cmd.kind) == kind && r.cmd.dst == c.cid)
                })
                .count() as u32;
            prop_assert!(
                used <= sched.slots().limit(c.cid, kind),
                "chunk {} {:?}: {} running",
                c.cid,
                kind,
                used
            );
        }
    }
    Ok(())
}

/// Runs rounds, completing every command between them; returns all rounds.
fn run(f: &mut Fixture, slots: u32) -> Result<Vec<Round>, TestCaseError> {
    let limits = SlotLimits {
        recover_src: slots,
        recover_dst: slots,
        migrate_src: slots,
        migrate_dst: slots,
        ceiling: 8,
    };
    let mut s = Scheduler::new(SchedConfig {
        slots: limits,
        ..SchedConfig::default()
    })
    .unwrap();
    let mut rounds = vec![];
    for t in 0..4u64 {
        let r = s.plan_recover(&f.state, t);
        check_round(&f.state, &s, &r)?;
        let m = s.plan_migrate(&f.state, t);
        check_round(&f.state, &s, &m)?;
        for cmd in r.issued.iter().chain(&m.issued) {
            finish(f, &mut s, cmd, t)?;
        }
        rounds.push(r);
        rounds.push(m);
    }
    Ok(rounds)
}

fn finish(f: &mut Fixture, s: &mut Scheduler, cmd: &SchedCmd, t: u64) -> Result<(), TestCaseError> {
    let ext = *f.state.extent(cmd.pid).unwrap().extent;
    // An earlier completion this round may have changed the extent: the
    // CAS is built against the extent as it is now, or skipped.
    if let Ok(u) = cmd.completion(&ext) {
        let c = Cmd::UpdateExtent(u);
        let applied = f.try_apply(&c);
        prop_assert!(applied.is_ok(), "{}: {:?}", cmd, applied);
        s.observe(&c);
    }
    s.complete(cmd.pid, cmd.id, t).unwrap();
    prop_assert!(f.state.check_invariants().is_ok());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::with_cases(256)
    })]

    #[test]
    fn plans_respect_slots_replicas_and_safety_and_are_deterministic(spec in spec()) {
        let mut a = build(&spec);
        let mut b = build(&spec);
        let ra = run(&mut a, spec.slots)?;
        let rb = run(&mut b, spec.slots)?;
        prop_assert_eq!(ra, rb, "same input, same plan");
    }
}
