//! The deterministic simulator (in the style of TigerBeetle's VOPR): a whole
//! Cairn cluster — openraft 0.9 with Cairn's state machine, the leader's
//! session tracker and recover / migrate copy runner — plus chunks (keeping
//! alive, running copies), clients and a nemesis, on one thread in virtual
//! time. Every failure replays from
//! its seed: `run(&SimConfig { seed, .. })` twice gives the same
//! `trace_hash`, history and verdict.
//!
//! | file | concept |
//! |---|---|
//! | `runtime.rs` | the executor, virtual clock and seeded RNG openraft runs on |
//! | `types.rs` | the sim's openraft type configuration |
//! | `store.rs` | a node's disk: durable + volatile log, snapshot; the log store |
//! | `sm.rs` | the state-machine store (`cairn_state` as the real node applies it) |
//! | `world.rs` | nodes, incarnations, crash / restart / pause, partitions, records |
//! | `network.rs` | openraft's RPCs through the simulated network |
//! | `client.rs` | a client: leader following, certain vs unknown outcomes |
//! | `leader.rs` | the leader's session tracker and copy runner (as `cairn_node`'s) |
//! | `chunk.rs` | a chunk: keepalives, re-registration, running copies |
//! | `workload.rs` | setup, the client loop, the final reads |
//! | `nemesis.rs` | the faults |
//! | `verify.rs` | the simulator's own checks |
//! | `driver.rs` | one run start to finish |
//!
//! Determinism comes from: one thread and our own executor (FIFO run queue,
//! timers ordered by deadline then registration); a virtual clock (no wall
//! clock anywhere; `leader_time_ms` = fixed epoch + virtual time); every
//! random choice from one seed split into streams (openraft's election
//! timeouts through `AsyncRuntime::thread_rng`); BTreeMap everywhere; no
//! openraft path with an unbiased `tokio::select!` (see `network.rs` and
//! `client.rs`); trace and history text built only from our own strings and
//! openraft's plain ids (never openraft's Display of instants, which reads
//! the wall clock).

pub mod chunk;
pub mod client;
pub mod driver;
pub mod leader;
pub mod nemesis;
pub mod network;
pub mod runtime;
pub mod sm;
pub mod store;
pub mod trace;
pub mod types;
pub mod verify;
pub mod workload;
pub mod world;

#[cfg(test)]
mod tests;

use std::ops::Range;

use crate::history::{Event, FinalMember, Observation};

/// A deliberately broken build, for the harness's own tests: the simulator
/// must find these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimBug {
    /// The log store reports writes done before they are durable: a crash
    /// then loses acknowledged entries (and votes).
    AckBeforeFsync,
    /// Reads served from any node's local state, with no leadership check.
    StaleRead,
    /// Linearizable reads (and the leader's take-office barrier) wait only
    /// for openraft's read log id, max(committed, first entry of the term),
    /// trusting the committed index, which is saved as an unsynced hint: a
    /// leader that loses it in a power loss and restarts still leader can
    /// answer reads that miss its acknowledged writes.
    ReadIndexFromHint,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    /// Client operations plus faults: a tenth (at least one) are faults.
    pub steps: u64,
    /// Meta members (3 or 5).
    pub nodes: u64,
    pub bug: Option<SimBug>,
    /// The faults the nemesis draws from (empty: all of them).
    pub faults: Vec<nemesis::Fault>,
    /// Keep the trace's lines in the outcome (to find where two runs part).
    pub keep_trace: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            steps: 300,
            nodes: 3,
            bug: None,
            faults: vec![],
            keep_trace: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Client operations completed (ok + fail + info).
    pub ops: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub faults: u64,
    /// Terms with two leaders (legal in openraft's default leader-id mode;
    /// see `verify::terms_with_several_leaders`).
    pub terms_with_several_leaders: u64,
    pub trace_events: u64,
    /// Keepalives acknowledged to chunks.
    pub keepalives: u64,
    /// Sessions chunks opened themselves (after a stop or a lost session).
    pub registrations: u64,
    /// Times a chunk was told its session was over.
    pub sessions_lost: u64,
    /// Chunk stops by the nemesis.
    pub chunk_stops: u64,
    /// Times a partition cut a chunk from a majority of the members.
    pub chunk_cuts: u64,
    /// ExpireSession applied.
    pub sessions_expired: u64,
    /// IssueCopy applied.
    pub copies_issued: u64,
    /// FinishCopy with a result applied.
    pub copies_finished: u64,
    /// AdoptCopies applied (a new leader took running copies over).
    pub copies_adopted: u64,
    /// IssueCopy / AdoptCopies / FinishCopy refused for a stale term.
    pub stale_term_fenced: u64,
    pub virtual_ms: u64,
    /// Real time the run took: the one field that differs between replays.
    pub real_ms: u64,
}

#[derive(Clone, Debug)]
pub struct SimOutcome {
    pub seed: u64,
    pub nodes: u64,
    pub bug: Option<SimBug>,
    /// xxh3 of the whole event trace: equal for two runs of one config.
    pub trace_hash: u64,
    /// The trace's lines, when `keep_trace` was set.
    pub trace: Vec<String>,
    /// The clients' and the nemesis's operations (time_ns = virtual time).
    pub history: Vec<Event>,
    /// Every (term, leader) change each node reported.
    pub observations: Vec<Observation>,
    /// Every node after healing: id, term, applied index, state digest.
    pub finals: Vec<FinalMember>,
    /// Volumes and extents after healing, as the first node has them.
    pub final_volumes: Vec<(u64, String)>,
    pub final_extents: Vec<crate::history::FinalExtent>,
    /// What the simulator's own checks found (empty: none).
    pub violations: Vec<String>,
    pub stats: SimStats,
}

impl SimOutcome {
    fn empty(cfg: &SimConfig, violations: Vec<String>) -> SimOutcome {
        SimOutcome {
            seed: cfg.seed,
            nodes: cfg.nodes,
            bug: cfg.bug,
            trace_hash: 0,
            trace: vec![],
            history: vec![],
            observations: vec![],
            finals: vec![],
            final_volumes: vec![],
            final_extents: vec![],
            violations,
            stats: SimStats::default(),
        }
    }
}

/// Runs one simulation. Never panics on what it finds: findings are
/// `violations`.
pub fn run(cfg: &SimConfig) -> SimOutcome {
    driver::run(cfg)
}

/// Runs `base` once per seed of `seeds`, in order.
pub fn run_many(seeds: Range<u64>, base: &SimConfig) -> Vec<SimOutcome> {
    seeds
        .map(|seed| {
            run(&SimConfig {
                seed,
                ..base.clone()
            })
        })
        .collect()
}
