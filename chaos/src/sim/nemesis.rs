//! The nemesis: one fault at a time, drawn from the seed, held for a drawn
//! while, then undone. Each is recorded as a `Nemesis` history operation
//! (`Invoke` when it starts, `Info` when it is undone).
//!
//! Chunks take part: a partition puts each chunk on one side (cut from the
//! leader when it lands on the other), crashes and pauses of the leader
//! move the chunks to a new one, and `StopChunk` silences one chunk for
//! longer than the lease.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::runtime::{elapsed_ns, lock, sleep, timeout, Signal};
use super::world::{chunk_addr, World};
use crate::history::{Op, Type, NEMESIS_PROCESS};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Crash a random node, restart it later.
    Crash,
    /// Crash the leader, restart it later.
    CrashLeader,
    /// Split into a majority and a minority.
    Partition,
    /// Cut the leader off from everyone.
    IsolateLeader,
    /// Pause a random node, resume it later.
    Pause,
    /// Right after the next acknowledged write, crash a majority (half the
    /// time every node) at once: what a disk that acks before fsync fails.
    CrashMajorityAfterAck,
    /// Stop a chunk for longer than its lease (its session expires, its
    /// replicas stop being alive), then start it again. Only a chunk whose
    /// every alive replica has another alive one beside it, on a chunk not
    /// itself stopped or cut lately: the nemesis never takes an extent's
    /// last alive replica (see [`spares_last_replicas`]).
    StopChunk,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::CrashLeader => "crash-leader",
            Fault::Partition => "partition",
            Fault::IsolateLeader => "isolate-leader",
            Fault::Pause => "pause",
            Fault::CrashMajorityAfterAck => "crash-majority-after-ack",
            Fault::StopChunk => "stop-chunk",
        }
    }
}

/// Every fault, with its weight in the draw.
pub const ALL: [(Fault, u64); 7] = [
    (Fault::Crash, 2),
    (Fault::CrashLeader, 2),
    (Fault::Partition, 2),
    (Fault::IsolateLeader, 2),
    (Fault::Pause, 2),
    (Fault::CrashMajorityAfterAck, 2),
    (Fault::StopChunk, 1),
];

/// One fault among `allowed` (all when empty), by weight.
fn draw(rng: &mut Rng, allowed: &[Fault]) -> Fault {
    let mix: Vec<(Fault, u64)> = ALL
        .into_iter()
        .filter(|(f, _)| allowed.is_empty() || allowed.contains(f))
        .collect();
    let total: u64 = mix.iter().map(|(_, w)| w).sum();
    let mut x = rng.below(total);
    for (f, w) in mix {
        if x < w {
            return f;
        }
        x -= w;
    }
    Fault::Crash
}

/// Injects up to `quota` faults drawn from `allowed` (all when empty), until
/// `stop` is notified; counts them in `done`.
pub async fn run(
    world: Arc<World>,
    mut rng: Rng,
    allowed: Vec<Fault>,
    quota: u64,
    stop: Signal,
    done: Arc<AtomicU64>,
) {
    while done.load(Ordering::SeqCst) < quota && stop.version() == 0 {
        let gap = Duration::from_millis(rng.range(50, 400));
        // Wake early when the workload ends.
        if timeout(gap, stop.changed_since(0)).await.is_ok() {
            break;
        }
        let fault = draw(&mut rng, &allowed);
        inject(&world, &mut rng, fault).await;
        done.fetch_add(1, Ordering::SeqCst);
    }
}

fn record(world: &World, kind: Type, fault: Fault, targets: &[u64], detail: String) {
    let op = Op::Nemesis {
        action: fault.name().into(),
        targets: targets.to_vec(),
        detail,
    };
    world.record(NEMESIS_PROCESS, kind, op, None);
}

/// Some of `ids`, `k` of them, drawn without replacement (in id order).
fn choose(rng: &mut Rng, ids: &[u64], k: usize) -> Vec<u64> {
    let mut pool = ids.to_vec();
    let mut out = Vec::new();
    while out.len() < k && !pool.is_empty() {
        let i = rng.below(pool.len() as u64) as usize;
        out.push(pool.remove(i));
    }
    out.sort_unstable();
    out
}

async fn restart_all(world: &Arc<World>, ids: &[u64]) -> String {
    let mut failed = Vec::new();
    for &id in ids {
        if let Err(e) = world.start(id).await {
            world.violation(e);
            failed.push(id);
        }
    }
    if failed.is_empty() {
        "restarted".into()
    } else {
        format!("restart failed for {failed:?}")
    }
}

/// Chunks whose session may be lost soon, counted as gone already when the
/// nemesis decides what else it may stop or cut: stopped or cut now, or
/// stopped or cut within the last lease. A cut shorter than the lease still
/// leaves silence that checkpoints carry to the next leader, and it adds up
/// with the next cut: consecutive partitions (with a leader change between)
/// expire a chunk that no single fault held for a lease.
fn shaky_chunks(world: &World) -> BTreeSet<u32> {
    let now = elapsed_ns();
    let recent = super::workload::LEASE_MS * 1_000_000;
    lock(&world.chunks)
        .iter()
        .filter(|(_, c)| {
            c.stopped
                || c.stops
                    .iter()
                    .chain(&c.cuts)
                    .any(|&(_, until)| until.is_none_or(|u| now.saturating_sub(u) < recent))
        })
        .map(|(&cid, _)| cid)
        .collect()
}

/// The state the nemesis judges replicas by: the leader's, else the most
/// applied one among the members up.
fn latest_state(world: &World) -> Option<super::world::Incarnation> {
    if let Some((_, inc)) = world.leader() {
        return Some(inc);
    }
    world
        .ids
        .iter()
        .filter_map(|&id| world.incarnation(id))
        .max_by_key(|inc| lock(&inc.sm).last_applied.map_or(0, |l| l.index))
}

/// Whether every extent keeps an alive replica on a chunk outside `gone`
/// (as `inc`'s state has them): the nemesis never takes an extent's last
/// alive replica, by a stop or by a partition.
fn spares_last_replicas(inc: &super::world::Incarnation, gone: &BTreeSet<u32>) -> bool {
    let d = lock(&inc.sm);
    let spared = d
        .state
        .extents()
        .all(|e| e.alive_loc().iter().any(|c| !gone.contains(c)));
    spared
}

/// The chunks the nemesis may stop now: running, and none holds the last
/// alive replica of an extent outside the shaky chunks.
fn stoppable_chunks(world: &World) -> Vec<u32> {
    let Some(inc) = world.leader().map(|(_, inc)| inc) else {
        return vec![];
    };
    let shaky = shaky_chunks(world);
    (1..=super::workload::CHUNKS)
        .filter(|&cid| !world.chunk_stopped(cid))
        .filter(|&cid| {
            let mut gone = shaky.clone();
            gone.insert(cid);
            spares_last_replicas(&inc, &gone)
        })
        .collect()
}

async fn inject(world: &Arc<World>, rng: &mut Rng, fault: Fault) {
    // Long enough, often, to outlast the followers' election timeout plus the
    // leader lease (1.2–2.4 s): a restarted leader with a committed vote of
    // its own leads again at once, so shorter faults never cause elections.
    let hold = Duration::from_millis(rng.range(300, 4000));
    let ids = world.ids.clone();
    match fault {
        Fault::Crash | Fault::CrashLeader => {
            let target = match (fault, world.leader()) {
                (Fault::CrashLeader, Some((id, _))) => id,
                _ => *rng.pick(&ids).unwrap_or(&1),
            };
            record(world, Type::Invoke, fault, &[target], String::new());
            world.crash(target);
            sleep(hold).await;
            let detail = restart_all(world, &[target]).await;
            record(world, Type::Info, fault, &[target], detail);
        }
        Fault::Partition => {
            let minority = choose(rng, &ids, (ids.len() - 1) / 2);
            let majority: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|i| !minority.contains(i))
                .collect();
            // Each chunk on one side (a third of them with the minority),
            // but never one whose cut could take an extent's last alive
            // replica (it stays with the majority: "spared").
            let (mut small, mut large) = (minority.clone(), majority.clone());
            let (mut cut, mut spared) = (vec![], vec![]);
            let state = latest_state(world);
            let mut gone = shaky_chunks(world);
            for cid in 1..=super::workload::CHUNKS {
                if !rng.chance(1.0 / 3.0) {
                    large.push(chunk_addr(cid));
                    continue;
                }
                let mut with = gone.clone();
                with.insert(cid);
                if state
                    .as_ref()
                    .is_some_and(|inc| spares_last_replicas(inc, &with))
                {
                    gone = with;
                    small.push(chunk_addr(cid));
                    cut.push(cid);
                } else {
                    large.push(chunk_addr(cid));
                    spared.push(cid);
                }
            }
            record(
                world,
                Type::Invoke,
                fault,
                &minority,
                format!(
                    "{minority:?} | {majority:?}, chunks {cut:?} with the minority (spared {spared:?})"
                ),
            );
            world.partition(&small, &large);
            sleep(hold).await;
            world.heal_network();
            record(world, Type::Info, fault, &minority, "healed".into());
        }
        Fault::IsolateLeader => {
            let Some((leader, _)) = world.leader() else {
                record(world, Type::Invoke, fault, &[], String::new());
                record(world, Type::Info, fault, &[], "no leader to isolate".into());
                return;
            };
            let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
            record(world, Type::Invoke, fault, &[leader], String::new());
            world.partition(&[leader], &rest);
            sleep(hold).await;
            world.heal_network();
            record(world, Type::Info, fault, &[leader], "healed".into());
        }
        Fault::Pause => {
            let target = *rng.pick(&ids).unwrap_or(&1);
            record(world, Type::Invoke, fault, &[target], String::new());
            world.set_paused(target, true);
            sleep(hold).await;
            world.set_paused(target, false);
            record(world, Type::Info, fault, &[target], "resumed".into());
        }
        Fault::StopChunk => {
            // Past the lease: long enough to expire, often with a leader
            // change in between.
            let hold = Duration::from_millis(super::workload::LEASE_MS + rng.range(500, 3000));
            let candidates = stoppable_chunks(world);
            let Some(&cid) = rng.pick(&candidates) else {
                record(world, Type::Invoke, fault, &[], String::new());
                record(world, Type::Info, fault, &[], "no chunk may stop".into());
                return;
            };
            let target = [u64::from(cid)];
            record(world, Type::Invoke, fault, &target, format!("chunk {cid}"));
            world.set_chunk_stopped(cid, true);
            sleep(hold).await;
            world.set_chunk_stopped(cid, false);
            record(
                world,
                Type::Info,
                fault,
                &target,
                format!("chunk {cid} started"),
            );
        }
        Fault::CrashMajorityAfterAck => {
            let all = rng.chance(0.5);
            let k = if all { ids.len() } else { ids.len() / 2 + 1 };
            // The next acknowledged write, or give up after a while.
            let seen = world.acks.version();
            let acked = timeout(Duration::from_secs(3), world.acks.changed_since(seen))
                .await
                .is_ok();
            // The leader is among the victims (its fsync'd tail is the one
            // the cluster would recover from otherwise).
            let mut victims = match world.leader() {
                Some((l, _)) => {
                    let others: Vec<u64> = ids.iter().copied().filter(|&i| i != l).collect();
                    let mut v = choose(rng, &others, k.saturating_sub(1));
                    v.push(l);
                    v
                }
                None => choose(rng, &ids, k),
            };
            victims.sort_unstable();
            record(
                world,
                Type::Invoke,
                fault,
                &victims,
                format!("after ack: {acked}"),
            );
            for &v in &victims {
                world.crash(v);
            }
            sleep(hold).await;
            let detail = restart_all(world, &victims).await;
            record(world, Type::Info, fault, &victims, detail);
        }
    }
}
