//! The simulator's own tests: determinism, fault tolerance without bugs,
//! and that it finds the bugs it is given.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader};

use super::nemesis::Fault;
use super::runtime::{block_on, lock, sleep, spawn};
use super::store::{Disk, DiskModel, LogStore};
use super::types::{Entry, Vote};
use super::*;
use crate::history::{Op, Type};
use crate::rng::Rng;

fn cfg(seed: u64, nodes: u64, steps: u64) -> SimConfig {
    SimConfig {
        seed,
        steps,
        nodes,
        ..SimConfig::new(seed)
    }
}

/// The first line where two kept traces differ (for failure messages).
fn first_difference(a: &[String], b: &[String]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("line {i}:\n  {}\n  {}", a[i], b[i]),
        None => format!("same prefix, lengths {} and {}", a.len(), b.len()),
    }
}

fn summary(o: &SimOutcome) -> String {
    format!(
        "seed {} nodes {} bug {:?}: {:?} hash {:#x} violations {:?}",
        o.seed, o.nodes, o.bug, o.stats, o.trace_hash, o.violations
    )
}

#[test]
fn sim_same_seed_gives_the_same_trace_history_and_verdict() {
    for nodes in [3, 5] {
        for seed in [1, 7, 42, 1234] {
            let c = SimConfig {
                keep_trace: true,
                ..cfg(seed, nodes, 200)
            };
            let a = run(&c);
            let b = run(&c);
            assert_eq!(
                a.trace_hash,
                b.trace_hash,
                "seed {seed} nodes {nodes}: {}",
                first_difference(&a.trace, &b.trace)
            );
            assert_eq!(a.history, b.history);
            assert_eq!(a.observations, b.observations);
            assert_eq!(a.finals, b.finals);
            assert_eq!(a.violations, b.violations);
            assert_eq!(
                SimStats {
                    real_ms: 0,
                    ..a.stats.clone()
                },
                SimStats {
                    real_ms: 0,
                    ..b.stats.clone()
                }
            );
        }
    }
}

#[test]
fn sim_different_seeds_give_different_runs() {
    let hashes: std::collections::BTreeSet<u64> = (1..9)
        .map(|seed| run(&cfg(seed, 3, 100)).trace_hash)
        .collect();
    assert_eq!(hashes.len(), 8, "{hashes:x?}");
}

#[test]
fn sim_twenty_seeds_with_every_fault_and_no_bug_find_nothing() {
    for nodes in [3, 5] {
        let outs = run_many(1..11, &cfg(0, nodes, 300));
        for o in &outs {
            eprintln!("{}", summary(o));
            assert!(o.violations.is_empty(), "{}", summary(o));
            assert!(o.stats.ops >= 200, "{}", summary(o));
            assert!(o.stats.ok > 0 && o.stats.faults > 0, "{}", summary(o));
            // Every node reached the same state.
            assert_eq!(o.finals.len() as u64, nodes);
            assert!(o
                .finals
                .iter()
                .all(|f| f.digest == o.finals[0].digest && f.applied_index > 0));
        }
    }
}

#[test]
fn sim_crash_restart_keeps_acknowledged_writes() {
    let faults = vec![
        Fault::Crash,
        Fault::CrashLeader,
        Fault::CrashMajorityAfterAck,
    ];
    let mut whole_cluster_crashes_after_acks = 0;
    for seed in 1..11 {
        let o = run(&SimConfig {
            faults: faults.clone(),
            ..cfg(seed, 3, 300)
        });
        assert!(o.violations.is_empty(), "{}", summary(&o));
        whole_cluster_crashes_after_acks += o
            .history
            .iter()
            .filter(|e| {
                e.kind == Type::Invoke
                    && matches!(&e.op, Op::Nemesis { action, targets, detail }
                        if action == "crash-majority-after-ack"
                            && targets.len() == 3
                            && detail.contains("true"))
            })
            .count();
        // The final reads saw the acknowledged writes (checked by the
        // verdict); there were some.
        let acked = o
            .history
            .iter()
            .filter(|e| e.kind == Type::Ok && matches!(e.op, Op::Cas { .. }))
            .count();
        assert!(acked > 10, "{}", summary(&o));
    }
    assert!(
        whole_cluster_crashes_after_acks >= 5,
        "{whole_cluster_crashes_after_acks}"
    );
}

#[test]
fn sim_finds_ack_before_fsync() {
    let base = SimConfig {
        bug: Some(SimBug::AckBeforeFsync),
        ..cfg(0, 3, 300)
    };
    let outs = run_many(1..21, &base);
    let found: Vec<&SimOutcome> = outs.iter().filter(|o| !o.violations.is_empty()).collect();
    for o in &found {
        eprintln!("{}", summary(o));
    }
    assert!(
        !found.is_empty(),
        "AckBeforeFsync went unnoticed in seeds 1..21"
    );
}

#[test]
fn sim_finds_stale_reads() {
    let base = SimConfig {
        bug: Some(SimBug::StaleRead),
        faults: vec![Fault::Partition, Fault::IsolateLeader, Fault::Pause],
        ..cfg(0, 3, 300)
    };
    let outs = run_many(1..21, &base);
    let stale: Vec<&SimOutcome> = outs
        .iter()
        .filter(|o| o.violations.iter().any(|v| v.contains("stale read")))
        .collect();
    for o in &stale {
        eprintln!("{}", summary(o));
    }
    assert!(!stale.is_empty(), "StaleRead went unnoticed in seeds 1..21");
}

#[test]
fn sim_finds_reads_that_trust_the_committed_hint() {
    let base = SimConfig {
        bug: Some(SimBug::ReadIndexFromHint),
        faults: vec![Fault::CrashMajorityAfterAck, Fault::CrashLeader],
        ..cfg(0, 3, 300)
    };
    // A leader crashed right after acknowledging writes restarts still
    // leader (its vote was committed) with its committed hint lost.
    let outs = run_many(1..21, &base);
    let stale: Vec<&SimOutcome> = outs
        .iter()
        .filter(|o| o.violations.iter().any(|v| v.contains("stale read")))
        .collect();
    for o in &stale {
        eprintln!("{}", summary(o));
    }
    assert!(
        !stale.is_empty(),
        "ReadIndexFromHint went unnoticed in seeds 1..21"
    );
}

#[test]
fn sim_a_stopped_chunk_expires_and_its_extents_are_recovered() {
    let (mut expired, mut finished) = (0, 0);
    for nodes in [3, 5] {
        for seed in 1..4 {
            let o = run(&SimConfig {
                faults: vec![Fault::StopChunk],
                ..cfg(seed, nodes, 300)
            });
            eprintln!("{}", summary(&o));
            assert!(o.violations.is_empty(), "{}", summary(&o));
            assert!(o.stats.chunk_stops > 0, "{}", summary(&o));
            // Every stop outlasts the lease: the session of the stopped
            // chunk expires (a leader change may give it more time, but
            // not every time) and the chunk registers again.
            assert!(o.stats.sessions_expired > 0, "{}", summary(&o));
            assert!(o.stats.registrations > 0, "{}", summary(&o));
            // Its replicas were recovered elsewhere: full replication.
            assert!(o.stats.copies_finished > 0, "{}", summary(&o));
            assert_eq!(o.final_extents.len() as u64, workload::EXTENTS);
            for e in &o.final_extents {
                assert_eq!(e.alive_loc.len(), e.replicas as usize, "{e:?}");
                assert_eq!(e.loc.len(), e.replicas as usize, "{e:?}");
            }
            expired += o.stats.sessions_expired;
            finished += o.stats.copies_finished;
        }
    }
    eprintln!("{expired} sessions expired, {finished} copies finished");
}

#[test]
fn sim_chunks_keeping_alive_through_leader_crashes_are_not_expired() {
    let mut crashes = 0;
    for nodes in [3, 5] {
        for seed in 1..6 {
            let o = run(&SimConfig {
                faults: vec![Fault::CrashLeader, Fault::Pause, Fault::IsolateLeader],
                ..cfg(seed, nodes, 300)
            });
            assert!(o.violations.is_empty(), "{}", summary(&o));
            // No chunk stopped, so none lost its session, yet they kept
            // alive (through new leaders) the whole run.
            assert_eq!(o.stats.sessions_expired, 0, "{}", summary(&o));
            assert_eq!(o.stats.sessions_lost, 0, "{}", summary(&o));
            assert!(
                o.stats.keepalives > 6 * o.stats.virtual_ms / 3_000,
                "{}",
                summary(&o)
            );
            crashes += o
                .history
                .iter()
                .filter(|e| {
                    e.kind == Type::Invoke
                        && matches!(&e.op, Op::Nemesis { action, .. } if action == "crash-leader")
                })
                .count();
        }
    }
    assert!(crashes >= 10, "{crashes} leader crashes");
}

#[test]
fn sim_chunks_and_leader_runners_replay_identically() {
    for nodes in [3, 5] {
        for seed in [3, 11] {
            let c = SimConfig {
                keep_trace: true,
                faults: vec![Fault::StopChunk, Fault::CrashLeader, Fault::Pause],
                ..cfg(seed, nodes, 200)
            };
            let a = run(&c);
            let b = run(&c);
            assert_eq!(
                a.trace_hash,
                b.trace_hash,
                "seed {seed} nodes {nodes}: {}",
                first_difference(&a.trace, &b.trace)
            );
            assert_eq!(a.history, b.history);
            assert_eq!(a.final_extents, b.final_extents);
            assert_eq!(
                SimStats {
                    real_ms: 0,
                    ..a.stats.clone()
                },
                SimStats {
                    real_ms: 0,
                    ..b.stats.clone()
                }
            );
            assert!(
                a.stats.keepalives > 0 && a.stats.chunk_stops > 0,
                "{}",
                summary(&a)
            );
        }
    }
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Blank,
    }
}

#[test]
fn sim_log_store_keeps_only_fsynced_writes_across_a_crash() {
    let model = DiskModel {
        ack_before_fsync: false,
        fsync_ms: (5, 5),
    };
    let disk = Arc::new(Mutex::new(Disk::new(model, Rng::new(1))));
    let d = disk.clone();
    let report = block_on(Duration::from_secs(10), async move {
        let mut log = LogStore::open(d.clone());
        // An append completes only when its fsync does.
        let mut l = log.clone();
        let first = spawn(async move { l.blocking_append(vec![entry(1, 1), entry(1, 2)]).await });
        sleep(Duration::from_millis(1)).await;
        {
            let disk = lock(&d);
            assert_eq!(disk.view().entries.len(), 2, "readable at once");
            assert!(
                disk.durable().entries.is_empty(),
                "not durable before the fsync"
            );
            assert_eq!(disk.volatile_writes(), 1);
        }
        assert!(first.await.unwrap().is_ok());
        assert_eq!(lock(&d).durable().entries.len(), 2);
        log.save_vote(&Vote::new(1, 1)).await.unwrap();

        // A second append, crashed before its fsync: gone, and so is its
        // acknowledgement (the dead incarnation's wait fails).
        let mut l = log.clone();
        let lost = spawn(async move { l.blocking_append(vec![entry(1, 3)]).await });
        sleep(Duration::from_millis(1)).await;
        lock(&d).crash();
        assert!(lost.await.unwrap().is_err());
        assert!(
            log.blocking_append(vec![entry(1, 3)]).await.is_err(),
            "fenced"
        );

        let mut reopened = LogStore::open(d.clone());
        let entries = reopened.try_get_log_entries(..).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(reopened.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
        let state = reopened.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(2));

        // Truncate and purge are durable writes too.
        reopened
            .truncate(LogId::new(CommittedLeaderId::new(1, 1), 2))
            .await
            .unwrap();
        reopened
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 1))
            .await
            .unwrap();
        lock(&d).crash();
        let mut again = LogStore::open(d.clone());
        let state = again.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(1));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(1));
        assert!(again.try_get_log_entries(..).await.unwrap().is_empty());
    });
    assert!(report.panics.is_empty(), "{:?}", report.panics);
    assert!(report.result.is_ok(), "{:?}", report.result.err());
}

#[test]
fn sim_buggy_disk_acks_before_the_data_is_durable() {
    let disk = Arc::new(Mutex::new(Disk::new(
        DiskModel::ack_before_fsync(),
        Rng::new(1),
    )));
    let d = disk.clone();
    let report = block_on(Duration::from_secs(10), async move {
        let mut log = LogStore::open(d.clone());
        log.blocking_append(vec![entry(1, 1)]).await.unwrap();
        log.save_vote(&Vote::new(2, 1)).await.unwrap();
        assert!(lock(&d).durable().entries.is_empty(), "acked, not durable");
        assert_eq!(lock(&d).durable().vote, None);
        lock(&d).crash();
        let mut reopened = LogStore::open(d.clone());
        assert!(reopened.try_get_log_entries(..).await.unwrap().is_empty());
        assert_eq!(reopened.read_vote().await.unwrap(), None);
    });
    assert!(report.result.is_ok(), "{:?}", report.result.err());
}

/// A long sweep for local hunting (ignored by default): every seed of
/// `SIM_SEEDS` (default 1..200) twice, 3 and 5 nodes, reporting hash
/// mismatches (with the first differing trace line) and violations.
/// `SIM_BUG=ack|stale|hint` runs a bug instead.
#[test]
#[ignore]
fn sim_sweep() {
    let range = std::env::var("SIM_SEEDS").unwrap_or_else(|_| "1..200".into());
    let (lo, hi) = range.split_once("..").expect("SIM_SEEDS=lo..hi");
    let (lo, hi): (u64, u64) = (lo.parse().unwrap(), hi.parse().unwrap());
    let bug = match std::env::var("SIM_BUG").as_deref() {
        Ok("ack") => Some(SimBug::AckBeforeFsync),
        Ok("stale") => Some(SimBug::StaleRead),
        Ok("hint") => Some(SimBug::ReadIndexFromHint),
        _ => None,
    };
    let mut mismatches = vec![];
    let mut violating = 0;
    let mut slowest = 0;
    // Folds every run's hash: compare it across processes and machines.
    let mut combined = 0u64;
    for nodes in [3, 5] {
        for seed in lo..hi {
            let c = SimConfig {
                bug,
                keep_trace: true,
                ..cfg(seed, nodes, 300)
            };
            let a = run(&c);
            let b = run(&c);
            slowest = slowest.max(a.stats.real_ms).max(b.stats.real_ms);
            combined = combined.rotate_left(5) ^ a.trace_hash;
            if a.trace_hash != b.trace_hash {
                let d = first_difference(&a.trace, &b.trace);
                eprintln!("MISMATCH seed {seed} nodes {nodes}: {d}");
                mismatches.push((seed, nodes));
            }
            if !a.violations.is_empty() {
                violating += 1;
                eprintln!("{}", summary(&SimOutcome { trace: vec![], ..a }));
            }
        }
    }
    eprintln!(
        "seeds {lo}..{hi}: combined hash {combined:#x}, {} mismatches, {violating} runs with violations, slowest {slowest} ms",
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{mismatches:?}");
    if bug.is_none() {
        assert_eq!(violating, 0);
    }
}

/// Prints the trace of one run for local hunting (ignored by default):
/// `SIM_SEED`, `SIM_NODES` (3), `SIM_FAULTS` (comma-separated fault names,
/// default all), only the lines containing `SIM_GREP` (default all).
#[test]
#[ignore]
fn sim_trace() {
    let var = |k: &str| std::env::var(k).ok();
    let seed = var("SIM_SEED").and_then(|s| s.parse().ok()).unwrap_or(1);
    let nodes = var("SIM_NODES").and_then(|s| s.parse().ok()).unwrap_or(3);
    let faults: Vec<Fault> = var("SIM_FAULTS")
        .map(|f| {
            nemesis::ALL
                .iter()
                .map(|(f, _)| *f)
                .filter(|x| f.split(',').any(|n| n == format!("{x:?}")))
                .collect()
        })
        .unwrap_or_default();
    let grep = var("SIM_GREP").unwrap_or_default();
    let o = run(&SimConfig {
        keep_trace: true,
        faults,
        ..cfg(seed, nodes, 300)
    });
    for l in o.trace.iter().filter(|l| l.contains(&grep)) {
        eprintln!("{l}");
    }
    eprintln!("{}", summary(&SimOutcome { trace: vec![], ..o }));
}
