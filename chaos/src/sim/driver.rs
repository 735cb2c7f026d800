//! One simulated run, start to finish: boot the cluster, set up the volume,
//! start the chunks, run clients and nemesis concurrently, heal (members,
//! network, chunks), wait for every extent's replicas to be back and for
//! convergence, read every extent, check.
//!
//! The seed is split once into independent streams (openraft's election
//! timeouts, the network, each disk, the nemesis, each client), so a change
//! in how much one part draws does not reshuffle the others.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{Config, SnapshotPolicy};

use super::chunk;
use super::client::{Client, Reads};
use super::runtime::{self, lock, sleep, spawn, RunError, Signal, SimInstant};
use super::store::DiskModel;
use super::world::World;
use super::{nemesis, verify, workload, SimBug, SimConfig, SimOutcome, SimStats};
use crate::history::FinalMember;
use crate::rng::Rng;

/// The most virtual time one run may take (a run normally needs well under
/// a minute; past this it is reported as a violation).
const VIRTUAL_LIMIT: Duration = Duration::from_secs(600);
/// Concurrent clients.
const CLIENTS: u64 = 4;

fn raft_config() -> Result<Config, String> {
    Config {
        cluster_name: "cairn-sim".into(),
        heartbeat_interval: 100,
        election_timeout_min: 600,
        election_timeout_max: 1200,
        // Small, so that snapshots, purges and snapshot installs happen.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(50),
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    }
    .validate()
    .map_err(|e| e.to_string())
}

/// What the async part hands back.
struct Finished {
    finals: Vec<FinalMember>,
    final_volumes: Vec<(u64, String)>,
    final_extents: Vec<crate::history::FinalExtent>,
    faults: u64,
    ops: u64,
    ok: u64,
    fail: u64,
    info: u64,
}

pub fn run(cfg: &SimConfig) -> SimOutcome {
    let started = Instant::now();
    let mut rng = Rng::new(cfg.seed);
    runtime::seed_thread_rng(rng.fork());
    let mut violations = Vec::new();
    let config = match raft_config() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            violations.push(format!("invalid raft config: {e}"));
            return SimOutcome::empty(cfg, violations);
        }
    };
    let disk = match cfg.bug {
        Some(SimBug::AckBeforeFsync) => DiskModel::ack_before_fsync(),
        _ => DiskModel::honest(),
    };
    let reads = match cfg.bug {
        Some(SimBug::StaleRead) => Reads::Stale,
        Some(SimBug::ReadIndexFromHint) => Reads::FromCommittedHint,
        _ => Reads::Linearizable,
    };
    let world = World::new(
        cfg.nodes.max(1),
        config,
        disk,
        &mut rng,
        cfg.keep_trace,
        reads,
    );
    let main = {
        let (world, cfg) = (world.clone(), cfg.clone());
        async move { simulate(world, cfg, rng).await }
    };
    let report = runtime::block_on(VIRTUAL_LIMIT, main);
    let finished = match report.result {
        Ok(f) => Some(f),
        Err(e) => {
            let what = match e {
                RunError::Deadlock { at_ns } => format!("simulation deadlocked at {at_ns} ns"),
                RunError::TimeLimit { at_ns } => format!("virtual time limit passed at {at_ns} ns"),
                RunError::Panicked(m) => format!("the driver panicked: {m}"),
            };
            world.violation(what);
            None
        }
    };
    for p in report.panics {
        world.violation(format!("a task panicked: {p}"));
    }
    // Break the World <-> Raft cycle so the run's memory is freed.
    for slot in lock(&world.slots).values_mut() {
        slot.up = None;
    }
    let history = std::mem::take(&mut *lock(&world.history));
    let observations = std::mem::take(&mut *lock(&world.observations));
    violations.extend(std::mem::take(&mut *lock(&world.violations)));
    violations.extend(verify::votes_never_go_back(&observations));
    let shared_terms = verify::terms_with_several_leaders(&observations).len() as u64;
    let (chunk_stats, stops, acks) = {
        let chunks = lock(&world.chunks);
        let stats = chunks
            .values()
            .fold((0, 0, 0, 0, 0), |(k, r, l, s, c), ch| {
                (
                    k + ch.keepalives,
                    r + ch.registrations,
                    l + ch.lost,
                    s + ch.stops.len() as u64,
                    c + ch.cuts.len() as u64,
                )
            });
        // Stopped or cut off: the chunk could not keep alive.
        let stops: std::collections::BTreeMap<u32, Vec<(u64, Option<u64>)>> = chunks
            .iter()
            .map(|(&cid, c)| (cid, c.stops.iter().chain(&c.cuts).copied().collect()))
            .collect();
        let acks: std::collections::BTreeMap<(u32, u64), u64> = chunks
            .iter()
            .flat_map(|(&cid, c)| c.last_ack.iter().map(move |(&s, &t)| ((cid, s), t)))
            .collect();
        (stats, stops, acks)
    };
    let applied = std::mem::take(&mut *lock(&world.applied));
    violations.extend(verify::lost_writes_and_stale_reads(&history, &applied.env));
    violations.extend(verify::kept_sessions_never_expired(
        &applied,
        &stops,
        &acks,
        workload::LEASE_MS,
    ));
    violations.extend(verify::no_stale_term_effects(&applied));
    let copies_started_twice = world.disks.counters().duplicates;
    if copies_started_twice > 0 {
        violations.push(format!(
            "{copies_started_twice} copies were started a second time on a chunk"
        ));
    }
    let counts = verify::counts(&applied);
    let finished = finished.unwrap_or(Finished {
        finals: vec![],
        final_volumes: vec![],
        final_extents: vec![],
        faults: 0,
        ops: 0,
        ok: 0,
        fail: 0,
        info: 0,
    });
    let mut trace = lock(&world.trace);
    SimOutcome {
        seed: cfg.seed,
        nodes: cfg.nodes,
        bug: cfg.bug,
        trace_hash: trace.hash(),
        trace: trace.take_lines(),
        history,
        observations,
        finals: finished.finals,
        final_volumes: finished.final_volumes,
        final_extents: finished.final_extents,
        violations,
        stats: SimStats {
            ops: finished.ops,
            ok: finished.ok,
            fail: finished.fail,
            info: finished.info,
            faults: finished.faults,
            terms_with_several_leaders: shared_terms,
            trace_events: trace.events(),
            keepalives: chunk_stats.0,
            registrations: chunk_stats.1,
            sessions_lost: chunk_stats.2,
            chunk_stops: chunk_stats.3,
            chunk_cuts: chunk_stats.4,
            sessions_expired: counts.expired,
            copies_issued: counts.issued,
            copies_finished: counts.finished,
            copies_adopted: counts.adopted,
            stale_term_fenced: counts.fenced,
            virtual_ms: report.elapsed_ns / 1_000_000,
            real_ms: started.elapsed().as_millis() as u64,
        },
    }
}

async fn simulate(world: Arc<World>, cfg: SimConfig, mut rng: Rng) -> Finished {
    let faults_quota = (cfg.steps / 10).max(1);
    let ops_quota = cfg.steps.saturating_sub(faults_quota);
    let mut finished = Finished {
        finals: vec![],
        final_volumes: vec![],
        final_extents: vec![],
        faults: 0,
        ops: 0,
        ok: 0,
        fail: 0,
        info: 0,
    };

    // Boot: every node starts, node 1 initializes the membership.
    for id in world.ids.clone() {
        if let Err(e) = world.start(id).await {
            world.violation(e);
            return finished;
        }
    }
    if let Some(inc) = world.incarnation(1) {
        if let Err(e) = inc.raft.initialize(world.members()).await {
            world.violation(format!("initialize: {e}"));
            return finished;
        }
    }

    let mut setup_client = Client::new(world.clone(), rng.fork(), "setup".into());
    let (volume, sessions) = match workload::setup(
        &world,
        &mut setup_client,
        SimInstant::now() + Duration::from_secs(30),
    )
    .await
    {
        Ok(v) => v,
        Err(e) => {
            world.violation(format!("setup failed without faults: {e}"));
            return finished;
        }
    };
    // The chunks, with the sessions the setup opened for them.
    for (cid, session_id) in sessions {
        lock(&world.chunks).entry(cid).or_default();
        drop(spawn(chunk::run(
            world.clone(),
            cid,
            session_id,
            workload::LEASE_MS,
        )));
    }

    // The run: clients and nemesis concurrently.
    let budget = Arc::new(workload::Budget::default());
    budget.remaining.store(ops_quota, Ordering::SeqCst);
    let stop = Signal::default();
    let faults_done = Arc::new(AtomicU64::new(0));
    let nemesis = spawn(nemesis::run(
        world.clone(),
        rng.fork(),
        cfg.faults.clone(),
        faults_quota,
        stop.clone(),
        faults_done.clone(),
    ));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let client = Client::new(world.clone(), rng.fork(), format!("c{i}"));
        clients.push(spawn(workload::client_loop(
            world.clone(),
            client,
            i,
            CLIENTS,
            volume,
            budget.clone(),
        )));
    }
    for c in clients {
        if let Err(e) = c.await {
            world.violation(format!("client task: {e}"));
        }
    }
    stop.notify();
    if let Err(e) = nemesis.await {
        world.violation(format!("nemesis task: {e}"));
    }
    finished.faults = faults_done.load(Ordering::SeqCst);
    finished.ok = budget.ok.load(Ordering::SeqCst);
    finished.fail = budget.fail.load(Ordering::SeqCst);
    finished.info = budget.info.load(Ordering::SeqCst);
    finished.ops = finished.ok + finished.fail + finished.info;

    // Heal everything, wait for convergence.
    world.trace(format_args!("heal all"));
    world.heal_network();
    for id in world.ids.clone() {
        world.set_paused(id, false);
        if !world.is_up(id) {
            if let Err(e) = world.start(id).await {
                world.violation(e);
            }
        }
    }
    let stopped: Vec<u32> = lock(&world.chunks)
        .iter()
        .filter(|(_, c)| c.stopped)
        .map(|(&cid, _)| cid)
        .collect();
    for cid in stopped {
        world.set_chunk_stopped(cid, false);
    }
    let healed_ns = runtime::elapsed_ns();
    if !replicated(&world, REPLICATION_WITHIN, healed_ns).await {
        world.trace(format_args!("not fully replicated after healing"));
    }
    let converged = converge(&world, Duration::from_secs(30)).await;
    finished.finals = world
        .ids
        .iter()
        .map(|&id| {
            let (term, applied_index, digest) = match world.incarnation(id) {
                Some(inc) => {
                    let term = inc.raft.metrics().borrow().current_term;
                    let d = lock(&inc.sm);
                    (
                        term,
                        d.last_applied.map_or(0, |l| l.index),
                        d.state.digest(),
                    )
                }
                None => (0, 0, 0),
            };
            FinalMember {
                node_id: id,
                term,
                applied_index,
                digest,
            }
        })
        .collect();
    if let Some(inc) = world.ids.iter().find_map(|&id| world.incarnation(id)) {
        let d = lock(&inc.sm);
        (finished.final_volumes, finished.final_extents) = crate::simcheck::final_volumes(&d.state);
    }
    for v in verify::final_state(&finished.finals, converged) {
        world.violation(v);
    }
    for v in verify::replicas_restored(&finished.final_extents) {
        world.violation(v);
    }
    let mut final_client = Client::new(world.clone(), rng.fork(), "final".into());
    workload::final_reads(&world, &mut final_client, volume, Duration::from_secs(10)).await;
    world.trace(format_args!("end"));
    finished
}

/// How long, after healing, the extents may take to get their replicas back.
const REPLICATION_WITHIN: Duration = Duration::from_secs(60);

/// Waits until the leader's state has every extent at its volume's replica
/// count, all alive, and no copy running, twice in a row (250 ms apart),
/// with every chunk heard since `healed_ns` on the session the state has
/// for it: until then an expiry may still be due (silence before the heal
/// counts against a lease) and take replicas away after the check.
async fn replicated(world: &Arc<World>, within: Duration, healed_ns: u64) -> bool {
    let deadline = SimInstant::now() + within;
    let mut stable = 0;
    while SimInstant::now() < deadline {
        sleep(Duration::from_millis(250)).await;
        let last_acks: Vec<(u32, BTreeMap<u64, u64>)> = lock(&world.chunks)
            .iter()
            .map(|(&cid, c)| (cid, c.last_ack.clone()))
            .collect();
        let full = world.leader().is_some_and(|(_, inc)| {
            let d = lock(&inc.sm);
            let heard = last_acks.iter().all(|(cid, acks)| {
                d.state
                    .session(*cid)
                    .is_some_and(|s| acks.get(&s.session_id).is_some_and(|&at| at >= healed_ns))
            });
            heard
                && d.state.copies().next().is_none()
                && d.state.extents().all(|e| {
                    let n = usize::from(e.volume.replicas);
                    e.loc().len() == n && e.alive_loc().len() == n
                })
        });
        stable = if full { stable + 1 } else { 0 };
        if stable >= 2 {
            world.trace(format_args!("fully replicated"));
            return true;
        }
    }
    false
}

/// Waits until every node is up and all applied the same index as the
/// leader's last log index, three checks in a row (100 ms apart).
async fn converge(world: &Arc<World>, within: Duration) -> bool {
    let deadline = SimInstant::now() + within;
    let mut stable = 0;
    while SimInstant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
        let target = world
            .leader()
            .and_then(|(_, inc)| inc.raft.metrics().borrow().last_log_index);
        let applied: Vec<Option<u64>> = world
            .ids
            .iter()
            .map(|&id| {
                world
                    .incarnation(id)
                    .and_then(|inc| lock(&inc.sm).last_applied.map(|l| l.index))
            })
            .collect();
        let all_there = target.is_some() && applied.iter().all(|a| *a == target);
        stable = if all_there { stable + 1 } else { 0 };
        if stable >= 3 {
            world.trace(format_args!("converged at {target:?}"));
            return true;
        }
    }
    false
}
