//! `cairn_sched::recover_sim`: the recovery simulator (issue 9, item 3).
//!
//! Small clusters keep every test fast; each asserts a property that breaks
//! when the model, a policy's limits or the bound is wrong.

use std::collections::BTreeMap;

use cairn_sched::recover_sim::ceph::crush_targets;
use cairn_sched::recover_sim::engine::{self, CopyKind, CopyRecord, Done, Policy, Start};
use cairn_sched::recover_sim::network::max_min_fair;
use cairn_sched::recover_sim::rng::Rng;
use cairn_sched::recover_sim::{
    build, lower_bound, run_on, run_policy, svg, sweep_points, Cluster, PolicyName, Report,
    SimConfig, SimError,
};
use cairn_state::{Cid, Pid, EXTENT_SIZE_BYTES};

fn small(chunks: u32, extents: u64) -> SimConfig {
    SimConfig {
        chunks,
        extents,
        ..SimConfig::default()
    }
}

fn run_all(cfg: &SimConfig) -> (Cluster, Report) {
    let cluster = build(cfg).expect("cluster");
    let report = run_on(&cluster, cfg, &PolicyName::ALL).expect("run");
    (cluster, report)
}

/// Most copies at once per chunk (as source and as destination) among
/// `copies` that pass `keep`; a copy ending at an instant frees its place
/// before one starting at that instant (the engine's order).
fn peaks(
    copies: &[CopyRecord],
    chunks: usize,
    keep: impl Fn(&CopyRecord) -> bool,
) -> (Vec<u32>, Vec<u32>) {
    let mut ev: Vec<(u64, i32, usize, bool)> = Vec::new();
    for c in copies.iter().filter(|c| keep(c)) {
        let end = c.end_us.unwrap_or(u64::MAX);
        for (cid, is_src) in [(c.src, true), (c.dst, false)] {
            ev.push((c.start_us, 1, cid as usize - 1, is_src));
            ev.push((end, -1, cid as usize - 1, is_src));
        }
    }
    ev.sort();
    let (mut cur_src, mut cur_dst) = (vec![0i32; chunks], vec![0i32; chunks]);
    let (mut peak_src, mut peak_dst) = (vec![0u32; chunks], vec![0u32; chunks]);
    for (_, d, i, is_src) in ev {
        let (cur, peak) = if is_src {
            (&mut cur_src, &mut peak_src)
        } else {
            (&mut cur_dst, &mut peak_dst)
        };
        cur[i] += d;
        peak[i] = peak[i].max(cur[i].max(0) as u32);
    }
    (peak_src, peak_dst)
}

// ---- the network model ------------------------------------------------------

#[test]
fn two_flows_sharing_one_source_get_half_each() {
    let rates = max_min_fair(
        &[100.0, 100.0, 100.0],
        &[100.0, 100.0, 100.0],
        &[(0, 1), (0, 2)],
    );
    assert_eq!(rates, vec![50.0, 50.0]);
}

#[test]
fn a_flow_limited_by_its_destination_leaves_the_rest_to_the_other() {
    // Chunk 1 receives at 30 only: its flow gets 30, the other flow from
    // the same source takes the 70 left, not half.
    let rates = max_min_fair(
        &[100.0, 100.0, 100.0],
        &[100.0, 30.0, 100.0],
        &[(0, 1), (0, 2)],
    );
    assert_eq!(rates, vec![30.0, 70.0]);
    // A destination shared by two sources: 50 each, and the first source's
    // other flow gets what the shared destination leaves it.
    let rates = max_min_fair(
        &[100.0, 100.0, 100.0, 100.0],
        &[100.0, 100.0, 100.0, 100.0],
        &[(0, 2), (1, 2), (0, 3)],
    );
    assert_eq!(rates, vec![50.0, 50.0, 50.0]);
    // Out-of-range indexes get nothing and take nothing.
    assert_eq!(
        max_min_fair(&[10.0], &[10.0], &[(0, 5), (0, 0)]),
        vec![0.0, 10.0]
    );
}

#[test]
fn allocations_are_max_min_fair_on_random_cases() {
    // Max-min fair <=> feasible, and every flow crosses a saturated link on
    // which no other flow gets more than it (its bottleneck).
    let mut rng = Rng::new(7);
    for case in 0..300 {
        let n = 2 + rng.below(6) as usize;
        let cap = |rng: &mut Rng| (1 + rng.below(100)) as f64;
        let out: Vec<f64> = (0..n).map(|_| cap(&mut rng)).collect();
        let inb: Vec<f64> = (0..n).map(|_| cap(&mut rng)).collect();
        let flows: Vec<(usize, usize)> = (0..1 + rng.below(12))
            .map(|_| (rng.below(n as u64) as usize, rng.below(n as u64) as usize))
            .collect();
        let rates = max_min_fair(&out, &inb, &flows);
        let eps = 1e-9;
        let load = |link: &dyn Fn(usize) -> bool| -> f64 {
            flows
                .iter()
                .zip(&rates)
                .enumerate()
                .filter(|(i, _)| link(*i))
                .map(|(_, (_, r))| *r)
                .sum()
        };
        for c in 0..n {
            assert!(
                load(&|i| flows[i].0 == c) <= out[c] + eps,
                "case {case}: out {c} over"
            );
            assert!(
                load(&|i| flows[i].1 == c) <= inb[c] + eps,
                "case {case}: in {c} over"
            );
        }
        for (i, &(s, d)) in flows.iter().enumerate() {
            let max_on = |same: &dyn Fn(usize) -> bool| {
                flows
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| same(*j))
                    .map(|(j, _)| rates[j])
                    .fold(0.0, f64::max)
            };
            let out_full = load(&|j| flows[j].0 == s) >= out[s] - 1e-6;
            let in_full = load(&|j| flows[j].1 == d) >= inb[d] - 1e-6;
            let out_bottleneck = out_full && max_on(&|j| flows[j].0 == s) <= rates[i] + 1e-6;
            let in_bottleneck = in_full && max_on(&|j| flows[j].1 == d) <= rates[i] + 1e-6;
            assert!(
                out_bottleneck || in_bottleneck,
                "case {case}: flow {i} {s}->{d} at {} has no bottleneck",
                rates[i]
            );
        }
    }
}

// ---- the bound --------------------------------------------------------------

#[test]
fn the_bound_is_exact_when_one_chunk_is_the_only_safe_destination() {
    // 5 chunks in 3 racks: rack 0 = {1, 4}, rack 1 = {2, 5}, rack 2 = {3}.
    // Chunk 1 fails; every extent it held has its other replicas in racks
    // 1 and 2, so chunk 4 must receive every lost byte.
    let cfg = SimConfig {
        chunks: 5,
        extents: 300,
        ..SimConfig::default()
    };
    let cluster = build(&cfg).unwrap();
    let b = lower_bound(&cluster, 7_000_000);
    let lost = cluster.lost.len() as u64 * EXTENT_SIZE_BYTES;
    let exact_us = lost as f64 / cfg.link_bps(false) * 1e6;
    assert!(b.transfer_us as f64 <= exact_us, "{b:?} above {exact_us}");
    assert!(
        b.transfer_us as f64 > exact_us - 1_000.0,
        "{b:?} more than 1 ms below {exact_us}"
    );
    assert_eq!(b.tight_in, vec![4]);
    assert_eq!(b.t_lb_us, 7_000_000 + b.transfer_us);
    assert!(b.spread_us <= b.transfer_us);
}

#[test]
fn every_policy_restores_every_replica_safely_and_no_faster_than_the_bound() {
    for cfg in [
        small(16, 3_000),
        SimConfig {
            fail: 2,
            slow_disks: 1,
            ..small(16, 3_000)
        },
        SimConfig {
            bandwidth_mib_s: 200,
            seed: 9,
            ..small(24, 2_000)
        },
    ] {
        let (cluster, r) = run_all(&cfg);
        assert!(cluster.missing_replicas() > 0);
        let t_lb = r.bound.t_lb_us;
        for p in &r.results {
            let name = p.policy.label();
            let makespan = p.makespan_us.unwrap_or_else(|| panic!("{name} never safe"));
            assert!(
                makespan >= t_lb,
                "{name}: {makespan} below T_LB {t_lb} ({cfg:?})"
            );
            assert!(
                p.first_start_us >= r.bound.detection_us,
                "{name} copied before detection"
            );
            assert_eq!(p.left_unsafe, 0, "{name}");
            if p.policy != PolicyName::Cairn {
                // The peers place every replica safely: restored = over.
                assert_eq!(p.unsafe_copies, 0, "{name}");
                assert_eq!(p.restored_us, makespan, "{name}");
            }
            // Every lost extent ends with 3 replicas on 3 live chunks in 3 racks.
            for l in &cluster.lost {
                let h = &p.outcome.holders[&l.pid];
                assert_eq!(h.len(), 3, "{name}: extent {} holds {h:?}", l.pid);
                assert!(h.iter().all(|&c| cluster.live(c)), "{name}: {h:?}");
                assert!(cluster.spread_ok(h), "{name}: extent {} on {h:?}", l.pid);
                let mut d = h.clone();
                d.sort_unstable();
                d.dedup();
                assert_eq!(d.len(), 3, "{name}: a chunk holds extent {} twice", l.pid);
            }
            // A copy's destination never already held (or received) the extent.
            for c in &p.outcome.copies {
                assert_ne!(c.src, c.dst, "{name}");
            }
        }
    }
}

/// A schedule the engine accepts that no policy here makes: each extent
/// missing two replicas is first copied to a rack-mate of its surviving
/// replica (a destination the rack rule forbids), the next copy chains from
/// that unsafe replica, and a migration then moves it to a safe rack.
struct ChainThroughUnsafe<'a> {
    cluster: &'a Cluster,
    detection_us: u64,
    started: bool,
    holders: BTreeMap<Pid, Vec<Cid>>,
    starts: BTreeMap<u64, Start>,
    next_tag: u64,
}

impl ChainThroughUnsafe<'_> {
    fn copy(&mut self, pid: Pid, src: Cid, dst: Cid, kind: CopyKind, out: &mut Vec<Start>) {
        let s = Start {
            pid,
            src,
            dst,
            kind,
            tag: self.next_tag,
        };
        self.next_tag += 1;
        self.starts.insert(s.tag, s);
        out.push(s);
    }

    /// A safe destination for `pid` beside `keep`, spread by pid.
    fn safe_dst(&self, pid: Pid, keep: &[Cid], taken: &[Cid]) -> Cid {
        let e = self.cluster.eligible(keep, taken);
        e[pid as usize % e.len()]
    }
}

impl Policy for ChainThroughUnsafe<'_> {
    fn step(
        &mut self,
        now_us: u64,
        done: &[Done],
        start: &mut Vec<Start>,
        _cancel: &mut Vec<u64>,
    ) -> Result<(), SimError> {
        if !self.started && now_us >= self.detection_us {
            self.started = true;
            for l in &self.cluster.lost {
                let a = l.alive[0];
                let rack = self.cluster.rack_of(a);
                let mate = self
                    .cluster
                    .live_cids()
                    .find(|&c| c != a && self.cluster.rack_of(c) == rack);
                let dst = match mate {
                    Some(m) if l.missing == 2 => m,
                    _ => self.safe_dst(l.pid, &l.alive, &l.alive),
                };
                self.holders.insert(l.pid, l.alive.clone());
                self.copy(l.pid, a, dst, CopyKind::Recover, start);
            }
        }
        for d in done {
            let s = self.starts[&d.tag];
            let h = self.holders.get_mut(&d.pid).unwrap();
            h.push(d.dst);
            if let CopyKind::Migrate { replace } = s.kind {
                h.retain(|&c| c != replace);
            }
            let h = h.clone();
            if h.len() < 3 {
                // Chain from the replica just made, wherever it is.
                let dst = self.safe_dst(d.pid, &h, &h);
                self.copy(d.pid, d.dst, dst, CopyKind::Recover, start);
            } else if !self.cluster.spread_ok(&h) {
                // Move the unsafe intermediate (it shares the first
                // replica's rack) to a safe rack, sending from itself.
                let bad = h[1];
                let keep: Vec<Cid> = h.iter().copied().filter(|&c| c != bad).collect();
                let dst = self.safe_dst(d.pid, &keep, &h);
                self.copy(d.pid, bad, dst, CopyKind::Migrate { replace: bad }, start);
            }
        }
        Ok(())
    }

    fn next_wake_us(&self) -> Option<u64> {
        (!self.started).then_some(self.detection_us)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

#[test]
fn with_two_failures_no_schedule_beats_the_bound_even_chaining_through_an_unsafe_replica() {
    // The engine accepts copies into a rack the rule forbids, so a later
    // copy may come from such a replica: the bound lets any live chunk
    // send an extent's 2nd copy, and must stay below every schedule.
    for cfg in [
        SimConfig {
            fail: 2,
            ..small(8, 600)
        },
        SimConfig {
            fail: 2,
            seed: 3,
            ..small(12, 1_200)
        },
    ] {
        let (cluster, r) = run_all(&cfg);
        assert!(
            cluster.lost.iter().any(|l| l.missing == 2),
            "some extent lost two replicas ({cfg:?})"
        );
        let t_lb = r.bound.t_lb_us;
        assert!(t_lb > r.bound.detection_us);
        for p in &r.results {
            let name = p.policy.label();
            let makespan = p.makespan_us.unwrap_or_else(|| panic!("{name} never safe"));
            assert!(
                makespan >= t_lb,
                "{name}: {makespan} below T_LB {t_lb} ({cfg:?})"
            );
        }
        let detection_us = cfg.lease_ms * 1000;
        let mut chain = ChainThroughUnsafe {
            cluster: &cluster,
            detection_us,
            started: false,
            holders: BTreeMap::new(),
            starts: BTreeMap::new(),
            next_tag: 0,
        };
        let o = engine::run(&cluster, &mut chain, "chain", u64::MAX / 2).unwrap();
        // It did chain: copies into forbidden racks, sent on from there.
        assert!(o.unsafe_copies() > 0);
        let unsafe_dsts: Vec<(Pid, Cid)> = o
            .copies
            .iter()
            .filter(|c| c.unsafe_dst)
            .map(|c| (c.pid, c.dst))
            .collect();
        assert!(o
            .copies
            .iter()
            .any(|c| c.kind == CopyKind::Recover && unsafe_dsts.contains(&(c.pid, c.src))));
        let safe = o.safe_us.expect("the chain ends safe");
        assert_eq!(o.left_unsafe, 0);
        assert!(safe >= t_lb, "chain: {safe} below T_LB {t_lb} ({cfg:?})");
    }
}

#[test]
fn the_single_copy_floor_pairs_the_best_sender_with_the_best_other_receiver() {
    // Links that differ by direction: odd cids receive fast and send slowly,
    // even cids the opposite. The fastest copy goes from an even chunk to
    // an odd one at the fast rate, although no chunk has min(in, out) above
    // the slow rate.
    let cfg = small(8, 6);
    let mut cluster = build(&cfg).unwrap();
    let (fast, slow) = (cfg.link_bps(false), cfg.link_bps(false) / 8.0);
    for c in &mut cluster.chunks {
        (c.in_bps, c.out_bps) = if c.cid % 2 == 1 {
            (fast, slow)
        } else {
            (slow, fast)
        };
    }
    assert!(cluster
        .lost
        .iter()
        .any(|l| l.alive.iter().any(|&c| c % 2 == 0)));
    let b = lower_bound(&cluster, 7_000_000);
    let one_fast = (EXTENT_SIZE_BYTES as f64 / fast * 1e6).floor() as u64;
    assert_eq!(b.one_copy_us, one_fast, "{b:?}");
    assert!(b.transfer_us >= b.one_copy_us);
    let r = run_on(&cluster, &cfg, &PolicyName::ALL).unwrap();
    for p in &r.results {
        let name = p.policy.label();
        let makespan = p.makespan_us.unwrap_or_else(|| panic!("{name} never safe"));
        assert!(makespan >= b.t_lb_us, "{name}: {makespan} below {b:?}");
    }
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another_placement() {
    let cfg = SimConfig {
        slow_disks: 1,
        ..small(16, 2_000)
    };
    let (_, a) = run_all(&cfg);
    let (_, b) = run_all(&cfg);
    assert_eq!(a.bound, b.bound);
    for (x, y) in a.results.iter().zip(&b.results) {
        assert_eq!(x.makespan_us, y.makespan_us, "{}", x.policy.label());
        assert_eq!(x.outcome.copies, y.outcome.copies, "{}", x.policy.label());
        assert_eq!(x.counters, y.counters, "{}", x.policy.label());
    }
    let other = build(&SimConfig {
        seed: 2,
        ..cfg.clone()
    })
    .unwrap();
    assert_ne!(other.locs, build(&cfg).unwrap().locs);
}

// ---- each policy's limits, from its trace ----------------------------------

#[test]
fn ceph_never_runs_more_than_one_backfill_in_or_out_of_an_osd() {
    let cfg = SimConfig {
        fail: 2,
        ..small(16, 3_000)
    };
    let cluster = build(&cfg).unwrap();
    let r = run_policy(&cluster, &cfg, PolicyName::Ceph).unwrap();
    let (src, dst) = peaks(&r.outcome.copies, 16, |_| true);
    assert!(src.iter().all(|&p| p <= 1), "outgoing {src:?}");
    assert!(dst.iter().all(|&p| p <= 1), "incoming {dst:?}");
    assert!(r.outcome.links.peak_in.iter().all(|&p| p <= 1));
    assert!(r.outcome.links.peak_out.iter().all(|&p| p <= 1));
    // And every lost replica went where CRUSH mapped it up front.
    let fixed = crush_targets(&cluster);
    assert_eq!(r.copies_started, fixed.len() as u64);
    for (pid, _, t) in fixed {
        assert!(r.outcome.copies.iter().any(|c| c.pid == pid && c.dst == t));
    }
}

#[test]
fn hdfs_stays_within_max_streams_and_the_hard_limit() {
    for fail in [1, 2] {
        let cfg = SimConfig {
            fail,
            ..small(16, 3_000)
        };
        let cluster = build(&cfg).unwrap();
        let r = run_policy(&cluster, &cfg, PolicyName::Hdfs).unwrap();
        // A datanode runs at most max-streams (2) transfers as the source.
        let (src, _) = peaks(&r.outcome.copies, 16, |_| true);
        assert!(src.iter().all(|&p| p <= 2), "fail {fail}: {src:?}");
        assert!(src.contains(&2), "fail {fail}: the limit is reached");
        // Work queued on one datanode: max-streams (2), or the hard limit
        // (4) once blocks are down to their last replica.
        let queued = r
            .counters
            .iter()
            .find(|(k, _)| k.starts_with("most transfers queued"))
            .map(|x| x.1)
            .unwrap();
        assert!(
            queued <= if fail == 1 { 2 } else { 4 },
            "fail {fail}: {queued}"
        );
    }
}

#[test]
fn pd_stays_within_the_store_limit_and_the_replica_schedule_limit() {
    let cfg = small(16, 3_000);
    let cluster = build(&cfg).unwrap();
    let r = run_policy(&cluster, &cfg, PolicyName::Pd).unwrap();
    let mut ops: Vec<(u64, i32)> = Vec::new();
    for c in &r.outcome.copies {
        ops.push((c.start_us, 1));
        ops.push((c.end_us.unwrap(), -1));
    }
    ops.sort_by_key(|&(t, d)| (t, d));
    let (mut cur, mut peak) = (0, 0);
    for (_, d) in ops {
        cur += d;
        peak = peak.max(cur);
    }
    assert!(peak <= 64, "{peak} operators at once");
    // 15 add-peer per minute per store, and a bucket of one: at most 16
    // starts into a store in any 60 s window.
    for cid in cluster.live_cids() {
        let mut t: Vec<u64> = r
            .outcome
            .copies
            .iter()
            .filter(|c| c.dst == cid)
            .map(|c| c.start_us)
            .collect();
        t.sort_unstable();
        for (i, &s) in t.iter().enumerate() {
            let in_window = t[i..].iter().take_while(|&&x| x < s + 60_000_000).count();
            assert!(
                in_window <= 16,
                "store {cid}: {in_window} adds within a minute"
            );
        }
    }
}

#[test]
fn cairn_stays_within_its_recover_slots_and_issues_each_copy_once() {
    let cfg = SimConfig {
        fail: 2,
        ..small(16, 3_000)
    };
    let cluster = build(&cfg).unwrap();
    let r = run_policy(&cluster, &cfg, PolicyName::Cairn).unwrap();
    let (src, dst) = peaks(&r.outcome.copies, 16, |c| c.kind == CopyKind::Recover);
    assert!(src.iter().all(|&p| p <= 8), "recover as source {src:?}");
    assert!(
        dst.iter().all(|&p| p <= 8),
        "recover as destination {dst:?}"
    );
    assert!(dst.contains(&8), "the slots are used");
    let (msrc, mdst) = peaks(&r.outcome.copies, 16, |c| c.kind != CopyKind::Recover);
    assert!(msrc.iter().chain(&mdst).all(|&p| p <= 4), "migrate slots");
    let counter = |name: &str| {
        r.counters
            .iter()
            .find(|(k, _)| *k == name)
            .map(|x| x.1)
            .unwrap()
    };
    assert_eq!(counter("copies started twice"), 0);
    assert_eq!(counter("issues refused by apply"), 0);
    assert_eq!(counter("results refused by apply"), 0);
    assert_eq!(
        counter("recover copies issued"),
        r.outcome
            .copies
            .iter()
            .filter(|c| c.kind == CopyKind::Recover)
            .count() as u64
    );
}

#[test]
fn the_slow_disk_gets_fewer_copies_under_cairn_than_under_a_static_assignment() {
    let cfg = SimConfig {
        slow_disks: 1,
        slow_factor: 4,
        ..small(16, 8_000)
    };
    let cluster = build(&cfg).unwrap();
    let slow: Cid = cluster.slow_cids()[0];
    let r = run_policy(&cluster, &cfg, PolicyName::Cairn).unwrap();
    let cairn = r.outcome.copies.iter().filter(|c| c.dst == slow).count();
    let fixed = crush_targets(&cluster)
        .iter()
        .filter(|(_, _, t)| *t == slow)
        .count();
    assert!(fixed > 0);
    assert!(
        cairn * 4 < fixed * 3,
        "slow chunk {slow}: {cairn} copies under Cairn, {fixed} under the static assignment"
    );
}

#[test]
fn skipping_migrate_rounds_that_cannot_act_changes_nothing() {
    // 8 chunks in 3 racks: only the failed chunk's two rack-mates are safe
    // destinations, so most extents wait for their slots. The recover rule
    // never takes a less safe chunk while a safe one exists (and the sim
    // always has one), so no migration is ever owed; calling plan_migrate
    // in every round must find nothing either: the same copies, no move.
    let base = small(8, 600);
    let cluster = build(&base).unwrap();
    let fast = run_policy(&cluster, &base, PolicyName::Cairn).unwrap();
    let every = SimConfig {
        migrate_every_round: true,
        ..base.clone()
    };
    let slow = run_policy(&cluster, &every, PolicyName::Cairn).unwrap();
    let counter = |p: &cairn_sched::recover_sim::PolicyResult, name: &str| {
        p.counters.iter().find(|(k, _)| *k == name).map(|&(_, n)| n)
    };
    let called = "rounds that called plan_migrate";
    assert_eq!(counter(&slow, called), counter(&slow, "rounds"));
    assert!(counter(&slow, called) > Some(100), "{:?}", slow.counters);
    assert_eq!(counter(&fast, called), Some(0), "{:?}", fast.counters);
    assert_eq!((fast.migrations, fast.unsafe_copies), (0, 0));
    assert_eq!(fast.outcome.copies, slow.outcome.copies);
    assert_eq!(fast.makespan_us, slow.makespan_us);
}

// ---- input and output -------------------------------------------------------

#[test]
fn bad_configurations_are_refused_with_their_reason() {
    let d = SimConfig::default();
    let cases = [
        (
            SimConfig {
                chunks: 0,
                ..d.clone()
            },
            SimError::NoChunks,
        ),
        (
            SimConfig {
                fail: 32,
                ..d.clone()
            },
            SimError::FailTooMany {
                fail: 32,
                chunks: 32,
            },
        ),
        (
            SimConfig {
                chunks: 5,
                fail: 2,
                ..d.clone()
            },
            SimError::TooFewLive { live: 3 },
        ),
        (
            SimConfig {
                extents: 0,
                ..d.clone()
            },
            SimError::NoExtents,
        ),
        (
            SimConfig {
                bandwidth_mib_s: 0,
                ..d.clone()
            },
            SimError::NoBandwidth,
        ),
        (
            SimConfig {
                slow_disks: 32,
                ..d.clone()
            },
            SimError::SlowTooMany { slow: 32, live: 31 },
        ),
        (
            SimConfig {
                slow_factor: 0,
                ..d.clone()
            },
            SimError::BadSlowFactor,
        ),
        (
            SimConfig {
                racks: 2,
                ..d.clone()
            },
            SimError::BadRacks {
                racks: 2,
                chunks: 32,
            },
        ),
    ];
    for (cfg, want) in cases {
        assert_eq!(cfg.validate(), Err(want.clone()));
        assert_eq!(cairn_sched::recover_sim::run(&cfg).err(), Some(want));
    }
    assert_eq!(d.validate(), Ok(()));
}

#[test]
fn each_sweep_size_is_checked_before_anything_runs() {
    // --fail 5 fits 32 chunks but leaves 3 live chunks at the sweep's 8.
    let base = SimConfig {
        fail: 5,
        racks: 16,
        ..SimConfig::default()
    };
    assert_eq!(base.validate(), Ok(()));
    let at8 = base.sweep_at(8);
    assert_eq!(at8.validate(), Err(SimError::TooFewLive { live: 3 }));
    // The sweep keeps --fail, scales the extents, and uses the default
    // racks whatever the base says.
    assert_eq!((at8.fail, at8.extents, at8.racks()), (5, 25_000, 3));
    assert_eq!(base.sweep_at(128).racks(), 32);
    // What `sweep` runs is what `sweep_at` checks.
    let small_base = SimConfig {
        racks: 4,
        ..small(16, 160)
    };
    let sizes = [8, 16];
    let reports = cairn_sched::recover_sim::sweep(&small_base, &sizes).unwrap();
    for (r, &n) in reports.iter().zip(&sizes) {
        assert_eq!(r.cfg, small_base.sweep_at(n));
    }
    let table = cairn_sched::recover_sim::sweep_table(&reports);
    assert!(table.lines().next().unwrap().contains("racks"), "{table}");
}

#[test]
fn nothing_lost_means_nothing_to_do() {
    let cfg = SimConfig {
        fail: 0,
        ..small(8, 100)
    };
    let (_, r) = run_all(&cfg);
    assert_eq!(r.missing_replicas, 0);
    assert_eq!(r.bound.t_lb_us, 0);
    assert!(r.goal().is_none());
    assert!(r.results.iter().all(|p| p.copies_started == 0));
}

#[test]
fn the_plot_has_a_series_per_policy_and_the_bound() {
    let reports: Vec<Report> = [8, 16]
        .iter()
        .map(|&n| run_all(&small(n, 200 * u64::from(n))).1)
        .collect();
    let points = sweep_points(&reports);
    assert_eq!(points.len(), 2);
    assert!(points
        .iter()
        .all(|p| p.makespans.len() == 4 && p.t_lb_us > 0));
    let s = svg::plot(&points, "t", "s & <sub>");
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    assert_eq!(s.matches("<polyline").count(), 5);
    assert!(s.contains("s &amp; &lt;sub&gt;"));
}

/// The CPU model charges every Cairn round a migrate scan of every extent
/// (`CairnTiming::migrate_scan_ns_per_extent`) and the first round after a
/// session change a full recover scan (`scan_ns_per_extent`). This checks
/// the first assumption and prints what both cost on this machine:
///   cargo test --release -p cairn-sched --test recover_sim round_cpu -- --nocapture
#[test]
fn round_cpu_every_round_scans_every_extent_for_migrations() {
    use cairn_sched::{SchedConfig, Scheduler};
    let extents = 50_000;
    let cfg = small(32, extents);
    let cluster = build(&cfg).unwrap();
    let sched_cfg = SchedConfig::from_cluster(cluster.state.config()).unwrap();
    let mut s = Scheduler::new(sched_cfg.clone()).unwrap();
    s.plan_recover(&cluster.state, 0);
    let rounds = 10;
    let t = std::time::Instant::now();
    for i in 0..rounds {
        let r = s.plan_migrate(&cluster.state, i);
        assert!(r.issued.is_empty());
        assert_eq!(
            r.examined, extents,
            "a round with nothing to move scans everything"
        );
    }
    let migrate_ns = t.elapsed().as_secs_f64() / (rounds * extents) as f64 * 1e9;
    let mut lost = cluster.state.clone();
    let expire = cairn_state::Cmd::ExpireSession {
        cid: 1,
        session_id: cluster.sessions[0],
    };
    let meta = cairn_state::EntryMeta {
        index: cluster.last_index + 1,
        term: 1,
        leader_time_ms: 1,
    };
    lost.apply(meta, &expire).unwrap();
    let mut fresh = Scheduler::new(sched_cfg).unwrap();
    let t = std::time::Instant::now();
    let r = fresh.plan_recover(&lost, 1);
    let scan_ns = t.elapsed().as_secs_f64() / extents as f64 * 1e9;
    assert!(!r.issued.is_empty());
    println!(
        "migrate scan {migrate_ns:.1} ns per extent per round; full recover scan after a loss {scan_ns:.1} ns per extent"
    );
}
