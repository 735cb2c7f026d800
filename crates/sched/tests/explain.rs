//! `cairn sched explain <pid>` (DOMAIN.md §5: "every decision must be
//! visible"): the explanation is what a round would do, with every candidate.

mod common;

use cairn_sched::explain::{DstLine, ReplaceScore};
use cairn_sched::migrate::{plan_migrate_extent, Balance, MigrateCtx, ReplaceReject};
use cairn_sched::recover::plan_recover_extent;
use cairn_sched::rules::Ctx;
use cairn_sched::{
    Band, DstReject, ExplainError, Explanation, Filter, Kind, NoPlan, OwnerSource, Round,
    RuleOutcome, SchedCmd, SchedConfig, Scheduler, Score, SlotLimits, Status, Why,
};
use cairn_state::{Cid, LoadMode, Pid, EXTENT_SIZE_BYTES};
use common::{Fixture, GIB};

fn sched() -> Scheduler {
    Scheduler::new(SchedConfig::default()).unwrap()
}

fn explain(s: &Scheduler, f: &Fixture, pid: Pid, now_ms: u64) -> Explanation {
    s.explain(&f.state, pid, now_ms).unwrap()
}

/// The command the round issued for `pid`, numbered 0 like a plan.
fn issued_for(r: &Round, pid: Pid) -> Option<SchedCmd> {
    r.issued
        .iter()
        .find(|c| c.pid == pid)
        .map(|c| SchedCmd { id: 0, ..*c })
}

fn verdict(x: &Explanation, cid: Cid) -> Result<Score, DstReject> {
    x.dst_verdict(cid)
        .unwrap_or_else(|| panic!("chunk {cid} missing from the candidates:\n{x}"))
}

fn kept(x: &Explanation) -> Vec<(Cid, Score)> {
    x.dst_candidates()
        .iter()
        .filter_map(|l| l.verdict.ok().map(|s| (l.cid, s)))
        .collect()
}

/// Every chunk of the cluster appears once, in cid order.
fn assert_every_chunk_listed(f: &Fixture, lines: &[DstLine]) {
    let listed: Vec<Cid> = lines.iter().map(|l| l.cid).collect();
    let all: Vec<Cid> = f.state.chunks().map(|c| c.cid).collect();
    assert_eq!(listed, all);
}

#[test]
fn recover_explanation_is_the_command_the_round_issues() {
    // Given {1,2,3} with 1 lost, chunk 2 the lease owner, and spare chunks
    // 4 (busy) and 5 (idle) in racks of their own
    let mut f = Fixture::new();
    let c = f.racks(5, 10);
    f.space(c[3], 400);
    let pid = f.volume("v", vec![vec![c[0], c[1], c[2]]], 0);
    f.set_owner(pid, c[2]);
    f.stop(c[0]);
    let mut s = sched();
    // When explained before the round
    let x = explain(&s, &f, pid, 0);
    // Then it would get a recover to the idle chunk, copied from the owner
    assert_eq!(x.kind, Some(Kind::Recover));
    assert_eq!(x.status, Status::Unqueued);
    let planned = *x.chosen().unwrap_or_else(|| panic!("{x}"));
    assert_eq!(
        (planned.src, planned.dst, planned.owner, planned.owner_from),
        (c[2], c[4], c[2], OwnerSource::Existing)
    );
    // The src rank picked 2 (loc order), the owner rule moved it to 3
    let owner = x.owner.unwrap();
    assert_eq!((owner.src, owner.final_src), (c[1], c[2]));
    assert_eq!(x.src.len(), 2, "the alive replicas");
    // And the round issues exactly that command
    let r = s.plan_recover(&f.state, 0);
    assert_eq!(issued_for(&r, pid), Some(planned));
}

#[test]
fn migrate_explanation_is_the_command_the_round_issues() {
    // Given {2,3} whose consumer runs on chunk 1, low load
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    let pid = f.volume("v", vec![vec![c[1], c[2]]], c[0]);
    let mut s = sched();
    let x = explain(&s, &f, pid, 0);
    // Then a locality move to chunk 1 replacing the replica outside the
    // expected distribution
    assert_eq!(x.load_mode, LoadMode::Low);
    assert_eq!(x.kind, Some(Kind::Migrate));
    let planned = *x.chosen().unwrap_or_else(|| panic!("{x}"));
    assert_eq!((planned.dst, planned.why), (c[0], Why::Locality));
    let rule = x.rules.iter().find(|r| r.why == Why::Locality).unwrap();
    assert_eq!(
        rule.outcome,
        Some(RuleOutcome::Chosen {
            dst: c[0],
            replace: planned.replace
        })
    );
    let expected = rule.expected.clone().unwrap();
    assert_eq!(expected.first(), Some(&c[0]));
    for l in x.replace_candidates() {
        if expected.contains(&l.cid) {
            assert_eq!(l.verdict, Err(ReplaceReject::FitsExpected));
        } else {
            assert_eq!(Some(l.cid), planned.replace);
            assert!(matches!(l.verdict, Ok(ReplaceScore::Locality(_))));
        }
    }
    // The earlier rules said why they did not apply
    assert!(matches!(
        x.rules[0].outcome,
        Some(RuleOutcome::NotApplicable(_))
    ));
    assert_eq!(verdict(&x, c[3]), Err(DstReject::NotPreferLocal));
    assert_eq!(verdict(&x, c[1]), Err(DstReject::HoldsReplica));
    // And the round issues exactly that command
    let r = s.plan_migrate(&f.state, 0);
    assert_eq!(issued_for(&r, pid), Some(planned));
}

#[test]
fn topology_safety_explanation_is_the_command_the_round_issues() {
    // Given {1,2} in the same brick and two chunks in other racks, the
    // busier one with the lower cid
    let mut f = Fixture::new();
    let b0 = f.brick("z", "r0", "b");
    let b1 = f.brick("z", "r1", "b");
    let b2 = f.brick("z", "r2", "b");
    let c1 = f.chunk(Some(b0), 10);
    let c2 = f.chunk(Some(b0), 10);
    let c3 = f.chunk(Some(b1), 300);
    let c4 = f.chunk(Some(b2), 100);
    let pid = f.volume("v", vec![vec![c1, c2]], 0);
    f.set_owner(pid, c1);
    let mut s = sched();
    let x = explain(&s, &f, pid, 0);
    // Then the non-owner replica moves to the least loaded other rack
    let planned = *x.chosen().unwrap_or_else(|| panic!("{x}"));
    assert_eq!(
        (planned.dst, planned.replace, planned.why),
        (c4, Some(c2), Why::TopologySafety)
    );
    let (rule, search) = x.deciding().unwrap();
    assert_eq!(rule.why, Why::TopologySafety);
    assert_eq!(search.replace, Some(c2));
    assert_every_chunk_listed(&f, &search.candidates);
    // The owner is spared; the replicas' chunks hold a replica
    assert!(x
        .replace_candidates()
        .iter()
        .any(|l| l.cid == c1 && l.verdict == Err(ReplaceReject::LeaseOwner)));
    assert_eq!(verdict(&x, c1), Err(DstReject::HoldsReplica));
    assert_eq!(verdict(&x, c2), Err(DstReject::HoldsReplica));
    assert!(verdict(&x, c3).is_ok());
    // And the round issues exactly that command
    let r = s.plan_migrate(&f.state, 0);
    assert_eq!(issued_for(&r, pid), Some(planned));
}

#[test]
fn capacity_explanation_names_the_hot_replica_and_the_cold_destination() {
    // Given a hot chunk 1, warm 2-4 and a cold 5; medium load
    let mut f = Fixture::new();
    let c = f.racks(5, 700);
    f.space(c[0], 900);
    f.space(c[4], 300);
    let pid = f.volume("v", vec![vec![c[0], c[1], c[2]]], 0);
    let mut s = sched();
    let x = explain(&s, &f, pid, 0);
    assert_eq!(x.load_mode, LoadMode::Medium);
    let planned = *x.chosen().unwrap_or_else(|| panic!("{x}"));
    assert_eq!(
        (planned.dst, planned.replace, planned.why),
        (c[4], Some(c[0]), Why::Capacity)
    );
    // Chunk 4 is warmer than the cluster: not a destination
    assert_eq!(verdict(&x, c[3]), Err(DstReject::NotBelowClusterLoad));
    for l in x.replace_candidates() {
        if l.cid == c[0] {
            assert!(matches!(l.verdict, Ok(ReplaceScore::Capacity(_))));
        } else {
            assert_eq!(l.verdict, Err(ReplaceReject::NoLoadGap));
        }
    }
    let r = s.plan_migrate(&f.state, 0);
    assert_eq!(issued_for(&r, pid), Some(planned));
}

#[test]
fn worked_example_pid2_explains_why_nothing_moves_until_the_lease_expires() {
    // §5.3: pid2 on {3,4}, prefer local 2 back in service, 4 owns the lease
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    assert_eq!(c, vec![1, 2, 3, 4]);
    let pid = f.volume("v", vec![vec![3, 4]], 2);
    f.set_owner(pid, 4);
    let mut s = sched();
    let x = explain(&s, &f, pid, 0);
    // Then: dst 2 is fine, but 3 fits the expected set and 4 is the owner
    assert_eq!(x.kind, None);
    assert_eq!(x.plan, Err(NoPlan::NoReplace));
    assert!(matches!(verdict(&x, 2), Ok(Score::PreferLocal { .. })));
    let replace: Vec<_> = x
        .replace_candidates()
        .iter()
        .map(|l| (l.cid, l.verdict))
        .collect();
    assert_eq!(
        replace,
        vec![
            (3, Err(ReplaceReject::FitsExpected)),
            (4, Err(ReplaceReject::LeaseOwner))
        ]
    );
    assert!(s.plan_migrate(&f.state, 0).issued.is_empty());
    // Once the lease expires: 4 -> 2
    f.set_owner(pid, 0);
    let x = explain(&s, &f, pid, 1);
    let planned = *x.chosen().unwrap_or_else(|| panic!("{x}"));
    assert_eq!((planned.src, planned.dst, planned.replace), (4, 2, Some(4)));
    assert_eq!(issued_for(&s.plan_migrate(&f.state, 1), pid), Some(planned));
}

#[test]
fn chunks_holding_a_replica_are_reported_as_holds_replica() {
    // Given {1,2,3}, 1 dead: its chunk still holds a (dead) replica
    let mut f = Fixture::new();
    let c = f.racks(5, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1], c[2]]], 0);
    f.stop(c[0]);
    let x = explain(&sched(), &f, pid, 0);
    assert_every_chunk_listed(&f, x.dst_candidates());
    for cid in [c[0], c[1], c[2]] {
        assert_eq!(verdict(&x, cid), Err(DstReject::HoldsReplica), "{x}");
    }
    for cid in [c[3], c[4]] {
        assert!(verdict(&x, cid).is_ok(), "{x}");
    }
    // The dead replica is no source: it has no session
    assert_eq!(
        x.src.iter().map(|l| l.cid).collect::<Vec<_>>(),
        vec![c[1], c[2]]
    );
}

#[test]
fn failslow_sessionless_and_full_chunks_report_their_filter() {
    let mut f = Fixture::new();
    let c = f.racks(7, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1], c[6]]], 0);
    f.stop(c[0]);
    f.failslow(c[2]);
    f.stop(c[3]);
    f.space_bytes(c[4], 950 * GIB - EXTENT_SIZE_BYTES / 2);
    f.failslow(c[6]); // an alive replica on a failslow chunk: a worse source
    let mut s = sched();
    let x = explain(&s, &f, pid, 0);
    assert_eq!(verdict(&x, c[2]), Err(DstReject::Filter(Filter::Failslow)));
    assert_eq!(verdict(&x, c[3]), Err(DstReject::Filter(Filter::NoSession)));
    assert_eq!(
        verdict(&x, c[4]),
        Err(DstReject::Filter(Filter::WouldBeUltraHigh))
    );
    // Only chunk 6 is left, and it is the destination
    assert_eq!(kept(&x).iter().map(|k| k.0).collect::<Vec<_>>(), vec![c[5]]);
    let planned = *x.chosen().unwrap_or_else(|| panic!("{x}"));
    assert_eq!((planned.src, planned.dst), (c[1], c[5]));
    // The source ranking saw the failslow replica
    let slow = x.src.iter().find(|l| l.cid == c[6]).unwrap();
    assert!(slow.verdict.is_ok_and(|k| k.failslow));
    assert_eq!(issued_for(&s.plan_recover(&f.state, 0), pid), Some(planned));
}

#[test]
fn chosen_destination_is_the_best_ranked_kept_candidate() {
    // Given the alive replica in rack r0; candidates: an empty chunk in
    // the same rack, an empty unracked chunk, a busy and a less busy chunk
    // in other racks
    let mut f = Fixture::new();
    let b0 = f.brick("z", "r0", "b");
    let b1 = f.brick("z", "r1", "b");
    let b2 = f.brick("z", "r2", "b");
    let alive = f.chunk(Some(b0), 10);
    let dead = f.chunk(Some(b1), 10);
    let same_rack = f.chunk(Some(b0), 0);
    let unracked = f.chunk(None, 0);
    let busy = f.chunk(Some(b1), 300);
    let less_busy = f.chunk(Some(b2), 200);
    let pid = f.volume("v", vec![vec![alive, dead]], 0);
    f.stop(dead);
    let mut s = sched();
    let x = explain(&s, &f, pid, 0);
    let planned = *x.chosen().unwrap_or_else(|| panic!("{x}"));
    // Then the chosen one ranks first among the kept ones (and is not
    // simply the emptiest, nor the lowest cid)
    let kept = kept(&x);
    assert_eq!(kept.len(), 4, "{x}");
    let best = kept.iter().find(|k| k.0 == planned.dst).unwrap().1;
    for (cid, score) in &kept {
        assert!(best <= *score, "{cid} ranks before the chosen one:\n{x}");
        if *cid != planned.dst {
            assert!(best < *score);
        }
    }
    assert_eq!(planned.dst, less_busy);
    let (_, search) = x.deciding().unwrap();
    assert_eq!(search.chosen(), Some(less_busy));
    let Ok(Score::Recover(k)) = verdict(&x, unracked) else {
        panic!("{x}")
    };
    assert!(k.unracked);
    let Ok(Score::Recover(k)) = verdict(&x, same_rack) else {
        panic!("{x}")
    };
    assert_eq!(k.distance.0, cairn_state::Distance::SameBrick);
    let _ = busy;
    assert_eq!(issued_for(&s.plan_recover(&f.state, 0), pid), Some(planned));
}

#[test]
fn busy_destination_and_queue_position_are_reported() {
    // Given two extents on {1,2} with 1 lost and one spare chunk that
    // takes one recover at a time
    let mut f = Fixture::new();
    let c = f.racks(3, 10);
    let first = f.volume("v", vec![vec![c[0], c[1]]; 2], 0);
    let second = first + 1;
    f.stop(c[0]);
    let mut s = Scheduler::new(SchedConfig {
        slots: SlotLimits {
            recover_dst: 1,
            ..SlotLimits::default()
        },
        ..SchedConfig::default()
    })
    .unwrap();
    let r = s.plan_recover(&f.state, 0);
    assert_eq!(r.issued.len(), 1);
    assert_eq!(r.issued[0].pid, first);
    // Then the second waits at the front of the queue for chunk 3's slot
    let x = explain(&s, &f, second, 0);
    assert_eq!(
        x.status,
        Status::Queued {
            kind: Kind::Recover,
            band: Band::Urgent,
            position: 0,
            len: 1,
            operator: None
        }
    );
    assert_eq!(x.kind, Some(Kind::Recover));
    assert_eq!(x.plan, Err(NoPlan::SlotsBusy));
    assert_eq!(verdict(&x, c[2]), Err(DstReject::NoFreeSlot));
    assert!(x.to_string().contains("position 1 of 1"), "{x}");
}

#[test]
fn waiting_for_a_busy_safe_destination_is_reported() {
    // Given racks r0, r1, r2 and two extents on {a (r0), b (r1), x (r2)}
    // with x lost; the only safe destination `safe` (r2) takes one recover
    // at a time, and `unsafe_dst` (r0, a's rack) is free and emptier
    let mut f = Fixture::new();
    let r0 = f.brick("z", "r0", "b0");
    let r0_other = f.brick("z", "r0", "b1");
    let r1 = f.brick("z", "r1", "b0");
    let r2 = f.brick("z", "r2", "b0");
    let a = f.chunk(Some(r0), 10);
    let b = f.chunk(Some(r1), 10);
    let x = f.chunk(Some(r2), 10);
    let safe = f.chunk(Some(r2), 300);
    let unsafe_dst = f.chunk(Some(r0_other), 0);
    let first = f.volume("v", vec![vec![a, b, x]; 2], 0);
    let second = first + 1;
    f.stop(x);
    let mut s = Scheduler::new(SchedConfig {
        slots: SlotLimits {
            recover_dst: 1,
            ..SlotLimits::default()
        },
        ..SchedConfig::default()
    })
    .unwrap();
    let r = s.plan_recover(&f.state, 0);
    assert_eq!(issued_for(&r, first).map(|c| c.dst), Some(safe));
    assert_eq!(issued_for(&r, second), None);
    // Then the second extent's explanation says it waits for the safe chunk
    let x = explain(&s, &f, second, 0);
    assert!(
        matches!(x.status, Status::Queued { position: 0, .. }),
        "{x}"
    );
    assert_eq!(x.kind, Some(Kind::Recover));
    assert_eq!(x.plan, Err(NoPlan::SlotsBusy), "{x}");
    assert_eq!(verdict(&x, safe), Err(DstReject::NoFreeSlot));
    let (_, search) = x.deciding().unwrap();
    assert_eq!(search.best, Some(unsafe_dst), "{x}");
    assert_eq!(search.dropped, Some(DstReject::SaferChunkBusy(safe)), "{x}");
    assert_eq!(search.chosen(), None);
    let text = x.to_string();
    assert!(
        text.contains(&format!("dropped: SaferChunkBusy({safe})")),
        "{text}"
    );
    assert!(text.contains("waits for it"), "{text}");
    // And it is what the planner returns
    let ctx = Ctx::new(&f.state);
    let e = f.state.extent(second).unwrap();
    assert_eq!(
        plan_recover_extent(&ctx, s.slots(), second, e.volume, e.extent),
        x.plan
    );
}

#[test]
fn copies_in_flight_count_in_the_explained_loads() {
    // Given two spare chunks 5 and 6, 6 half an extent fuller than 5
    let mut f = Fixture::new();
    let c = f.racks(6, 500);
    f.space(c[4], 100);
    f.space_bytes(c[5], 100 * GIB + EXTENT_SIZE_BYTES / 2);
    let first = f.volume("v", vec![vec![c[0], c[1]], vec![c[2], c[3]]], 0);
    let second = first + 1;
    let mut s = sched();
    // A first recover copies onto chunk 5
    f.stop(c[0]);
    let r = s.plan_recover(&f.state, 0);
    assert_eq!(issued_for(&r, first).map(|c| c.dst), Some(c[4]));
    // When the second extent loses a replica while that copy runs
    f.stop(c[2]);
    let x = explain(&s, &f, second, 1);
    // Then chunk 5 counts the copy in flight and chunk 6 is now emptier
    let planned = *x.chosen().unwrap_or_else(|| panic!("{x}"));
    assert_eq!(planned.dst, c[5], "{x}");
    s.mark_all_dirty();
    assert_eq!(
        issued_for(&s.plan_recover(&f.state, 1), second),
        Some(planned)
    );
}

#[test]
fn running_extent_reports_its_running_command() {
    let mut f = Fixture::new();
    let c = f.racks(4, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1], c[2]]], 0);
    f.stop(c[0]);
    let mut s = sched();
    let r = s.plan_recover(&f.state, 10);
    let cmd = r.issued[0];
    assert_eq!(cmd.pid, pid);
    let x = explain(&s, &f, pid, 20);
    assert_eq!(
        x.status,
        Status::Running {
            cmd,
            issued_ms: 10,
            timed_out: false
        }
    );
    assert_eq!(
        (x.kind, x.plan),
        (Some(Kind::Recover), Err(NoPlan::Running))
    );
    assert!(x.to_string().contains(&format!("running {cmd}")), "{x}");
    // Past the timeout it says the next round re-plans it
    let late = 10 + s.config().recover_timeout_ms;
    let x = explain(&s, &f, pid, late);
    assert!(matches!(
        x.status,
        Status::Running {
            timed_out: true,
            ..
        }
    ));
}

#[test]
fn parked_extent_reports_why_no_destination_qualifies() {
    // Given {1,2,3} on a three-chunk cluster with 1 lost: nowhere to go
    let mut f = Fixture::new();
    let c = f.racks(3, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1], c[2]]], 0);
    f.stop(c[0]);
    let mut s = sched();
    let r = s.plan_recover(&f.state, 0);
    assert!(r.issued.is_empty());
    let x = explain(&s, &f, pid, 0);
    assert_eq!(x.status, Status::Parked);
    assert_eq!(x.plan, Err(NoPlan::NoDst(DstReject::HoldsReplica)));
    assert!(x
        .dst_candidates()
        .iter()
        .all(|l| l.verdict == Err(DstReject::HoldsReplica)));
    assert_eq!(x.deciding().unwrap().1.best, None);
}

#[test]
fn unknown_pid_is_an_error() {
    let mut f = Fixture::new();
    let c = f.racks(3, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1]]], 0);
    let s = sched();
    assert_eq!(
        s.explain(&f.state, pid + 1, 0),
        Err(ExplainError::ExtentNotFound(pid + 1))
    );
    assert_eq!(
        s.explain(&f.state, 0, 0),
        Err(ExplainError::ExtentNotFound(0))
    );
    assert!(s.explain(&f.state, pid, 0).is_ok());
}

#[test]
fn display_has_one_line_per_candidate_chunk_with_verdict_and_score() {
    let mut f = Fixture::new();
    let c = f.racks(5, 10);
    let pid = f.volume("v", vec![vec![c[0], c[1]]], 0);
    f.stop(c[0]);
    f.failslow(c[3]);
    let x = explain(&sched(), &f, pid, 0);
    let text = x.to_string();
    let dst = x.chosen().unwrap().dst;
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("  dst candidates"))
        .skip(2)
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert_eq!(table.len(), c.len(), "{text}");
    for (line, cid) in table.iter().zip(&c) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], cid.to_string(), "{line}");
        let want = if *cid == dst {
            "chosen"
        } else if *cid == c[3] {
            "Failslow"
        } else if *cid == c[0] || *cid == c[1] {
            "HoldsReplica"
        } else {
            "kept"
        };
        assert_eq!(cols[1], want, "{line}");
    }
    assert!(text.contains("load "), "scores are printed:\n{text}");
    assert!(text.starts_with(&format!("extent {pid} ")), "{text}");
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn explanations_match_the_planners_and_the_first_command_of_each_round() {
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut f = Fixture::new();
        let chunks = 6 + rng.next(4) as usize;
        let mut c = Vec::new();
        for i in 0..chunks {
            let b = f.brick("z", &format!("r{}", i % 4), &format!("b{}", i % 2));
            let used = if seed % 3 == 0 { 500 } else { 10 } + 50 * rng.next(6);
            c.push(f.chunk(Some(b), used));
        }
        let n = chunks as u64;
        let locs: Vec<Vec<Cid>> = (0..8)
            .map(|_| {
                let mut loc = Vec::new();
                while loc.len() < 3 {
                    let x = c[rng.next(n) as usize];
                    if !loc.contains(&x) {
                        loc.push(x);
                    }
                }
                loc
            })
            .collect();
        let prefer = if rng.next(2) == 0 {
            0
        } else {
            c[rng.next(n) as usize]
        };
        let first = f.volume("v", locs, prefer);
        if rng.next(2) == 0 {
            f.failslow(c[rng.next(n) as usize]);
        }
        if seed % 2 == 0 {
            f.stop(c[rng.next(n) as usize]);
        }
        let pids = first..first + 8;
        // Explain runs the planners' own code: same results as a direct call
        let s = sched();
        let ctx = Ctx::new(&f.state);
        let balance = Balance::new(&ctx, 1_000, 64);
        let pins = cairn_sched::Pins::default();
        let m = MigrateCtx {
            ctx: &ctx,
            slots: s.slots(),
            pins: &pins,
            now_ms: 0,
            balance: &balance,
        };
        let mut xs = Vec::new();
        for pid in pids.clone() {
            let x = explain(&s, &f, pid, 0);
            let e = f.state.extent(pid).unwrap();
            let direct = match x.kind {
                Some(Kind::Recover) => {
                    plan_recover_extent(&ctx, s.slots(), pid, e.volume, e.extent)
                }
                _ if e.extent.loc.alive_count() < 3 => {
                    plan_recover_extent(&ctx, s.slots(), pid, e.volume, e.extent)
                }
                _ => plan_migrate_extent(&m, None, pid, e.volume, e.extent),
            };
            assert_eq!(x.plan, direct, "seed {seed} pid {pid}:\n{x}");
            if let Some(cmd) = x.chosen() {
                // The deciding search chose the command's destination
                assert_eq!(x.deciding().unwrap().1.chosen(), Some(cmd.dst), "{x}");
                assert_every_chunk_listed(&f, x.dst_candidates());
            }
            xs.push(x);
        }
        // The first command a round issues is the one explained for its extent
        let mut rs = sched();
        let r = rs.plan_recover(&f.state, 0);
        let r = if r.issued.is_empty() {
            rs.plan_migrate(&f.state, 0)
        } else {
            r
        };
        if let Some(cmd) = r.issued.first() {
            let x = &xs[(cmd.pid - first) as usize];
            assert_eq!(
                x.chosen(),
                Some(&SchedCmd { id: 0, ..*cmd }),
                "seed {seed}:\n{x}"
            );
        }
    }
}
