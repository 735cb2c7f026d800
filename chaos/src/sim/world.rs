//! The simulated world: every node's disk and current incarnation, the
//! network's partitions, pauses, and what the run records (trace, history,
//! observations, violations). Shared by every task of a run as `Arc<World>`;
//! its locks are never held across an `.await`.
//!
//! Node lifecycle:
//! - **crash**: the disk loses its volatile writes and fences the old
//!   incarnation's handles; the old Raft is shut down in the background; the
//!   network refuses messages to the node.
//! - **restart**: a new Raft on the same disk (durable log + last snapshot).
//! - **pause** (SIGSTOP, approximately): every message to or from the node
//!   and every client call to it is held until it resumes. Difference from a
//!   real SIGSTOP: the paused node's Raft keeps running on the virtual clock,
//!   so its election timer fires during the pause, it may bump its term and
//!   persist a vote for itself, and its held vote requests go out on resume.
//!   A stopped process would do all that only after it resumes (and then at
//!   once, since its timers all expired), so the effect on the cluster is
//!   similar, the node's disk writes during the pause are not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{BasicNode, Config};

use cairn_node::copy_exec::FleetDisks;

use super::client::Reads;
use super::leader::{self, Node, NodeSvc};
use super::network::SimNetwork;
use super::runtime::{elapsed_ns, lock, sleep, spawn, Signal};
use super::sm::{SharedApplied, SmHandle, SmStore};
use super::store::{Disk, DiskModel, LogStore, SharedDisk};
use super::types::SimRaft;
use crate::history::{Event, Observation, Op, Type};
use crate::rng::Rng;

/// One running incarnation of a node.
#[derive(Clone)]
pub struct Incarnation {
    pub number: u64,
    pub raft: SimRaft,
    pub sm: SmHandle,
    /// The leader-only services of this incarnation (session tracker,
    /// copy runner), empty while it does not lead.
    pub svc: Arc<NodeSvc>,
}

/// One simulated chunk, as the nemesis and the checks see it.
#[derive(Default)]
pub struct ChunkCtl {
    pub stopped: bool,
    /// Notified when the chunk is stopped or started.
    pub changed: Signal,
    /// Every stop: (from, until) in virtual ns; until None while stopped.
    pub stops: Vec<(u64, Option<u64>)>,
    /// Every time a partition left it unable to reach a majority of the
    /// members: (from, until) in virtual ns; until None while it lasts.
    pub cuts: Vec<(u64, Option<u64>)>,
    /// Per session, when the chunk last got an acknowledgement (its
    /// registration or a keepalive), virtual ns.
    pub last_ack: BTreeMap<u64, u64>,
    /// Keepalives acknowledged to it.
    pub keepalives: u64,
    /// Sessions it opened itself (registrations).
    pub registrations: u64,
    /// Times it was told its session is over.
    pub lost: u64,
}

pub struct Slot {
    pub disk: SharedDisk,
    /// None while crashed.
    pub up: Option<Incarnation>,
    /// Starts so far (the incarnation number of the next start).
    pub starts: u64,
    pub paused: bool,
    /// Notified when the node resumes.
    pub resumed: Signal,
}

pub struct Net {
    /// Directed pairs (from, to) whose messages are dropped.
    pub blocked: BTreeSet<(u64, u64)>,
    pub rng: Rng,
    /// Probability that a message is lost outside any partition.
    pub loss: f64,
    /// One-way latency, uniform in this range (ms).
    pub latency_ms: (u64, u64),
    pub next_msg: u64,
}

pub struct World {
    pub ids: Vec<u64>,
    pub config: Arc<Config>,
    pub slots: Mutex<BTreeMap<u64, Slot>>,
    pub net: Mutex<Net>,
    pub trace: Mutex<super::trace::Trace>,
    pub history: Mutex<Vec<Event>>,
    pub observations: Mutex<Vec<Observation>>,
    pub violations: Mutex<Vec<String>>,
    /// Notified on every acknowledged CAS: the nemesis can strike right after one.
    pub acks: Signal,
    /// The committed log as first applied (see [`super::sm::AppliedLog`]).
    pub applied: SharedApplied,
    /// The simulated chunks, by cid.
    pub chunks: Mutex<BTreeMap<u32, ChunkCtl>>,
    /// The chunks' disks: copy times, chunk-side slots, copies started twice.
    pub disks: FleetDisks,
    /// How reads and the leaders' take-office barrier wait (a bug or not).
    pub reads: Reads,
}

/// A chunk's address on the simulated network (partitions name it).
pub fn chunk_addr(cid: u32) -> u64 {
    1_000 + u64::from(cid)
}

/// Virtual wall clock the leader stamps entries with: a fixed epoch plus
/// virtual time, never the real clock.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

pub fn leader_time_ms() -> u64 {
    EPOCH_MS + elapsed_ns() / 1_000_000
}

impl World {
    pub fn new(
        nodes: u64,
        config: Arc<Config>,
        disk: DiskModel,
        rng: &mut Rng,
        keep_trace: bool,
        reads: Reads,
    ) -> Arc<World> {
        let ids: Vec<u64> = (1..=nodes).collect();
        let slots = ids
            .iter()
            .map(|&id| {
                let slot = Slot {
                    disk: Arc::new(Mutex::new(Disk::new(disk, rng.fork()))),
                    up: None,
                    starts: 0,
                    paused: false,
                    resumed: Signal::default(),
                };
                (id, slot)
            })
            .collect();
        Arc::new(World {
            ids,
            config,
            slots: Mutex::new(slots),
            net: Mutex::new(Net {
                blocked: BTreeSet::new(),
                rng: rng.fork(),
                loss: 0.002,
                latency_ms: (1, 20),
                next_msg: 0,
            }),
            trace: Mutex::new(super::trace::Trace::new(keep_trace)),
            history: Mutex::default(),
            observations: Mutex::default(),
            violations: Mutex::default(),
            acks: Signal::default(),
            applied: SharedApplied::default(),
            chunks: Mutex::default(),
            disks: FleetDisks::new(super::chunk::CHUNK_SLOTS),
            reads,
        })
    }

    pub fn trace(&self, what: std::fmt::Arguments<'_>) {
        lock(&self.trace).event(what);
    }

    pub fn violation(&self, what: String) {
        self.trace(format_args!("VIOLATION {what}"));
        lock(&self.violations).push(what);
    }

    /// Appends a history event (index and virtual time assigned here).
    pub fn record(&self, process: u64, kind: Type, op: Op, error: Option<String>) {
        self.trace(format_args!("history p{process} {kind:?} {op:?} {error:?}"));
        let mut h = lock(&self.history);
        let index = h.len() as u64;
        h.push(Event {
            index,
            time_ns: elapsed_ns(),
            process,
            kind,
            op,
            error,
        });
    }

    pub fn incarnation(&self, id: u64) -> Option<Incarnation> {
        lock(&self.slots).get(&id).and_then(|s| s.up.clone())
    }

    /// Is `number` the running incarnation of `id`?
    pub fn is_current(&self, id: u64, number: u64) -> bool {
        lock(&self.slots)
            .get(&id)
            .and_then(|s| s.up.as_ref())
            .is_some_and(|i| i.number == number)
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.incarnation(id).is_some()
    }

    pub fn is_paused(&self, id: u64) -> bool {
        lock(&self.slots).get(&id).is_some_and(|s| s.paused)
    }

    /// Returns at once unless `id` is paused; then when it resumes.
    pub async fn wait_unpaused(&self, id: u64) {
        loop {
            let (signal, seen) = {
                let slots = lock(&self.slots);
                match slots.get(&id) {
                    Some(s) if s.paused => (s.resumed.clone(), s.resumed.version()),
                    _ => return,
                }
            };
            signal.changed_since(seen).await;
        }
    }

    pub fn disk(&self, id: u64) -> Option<SharedDisk> {
        lock(&self.slots).get(&id).map(|s| s.disk.clone())
    }

    /// Starts (or restarts) node `id` on its disk. An error is a finding:
    /// a node that cannot come back from its own disk.
    pub async fn start(self: &Arc<Self>, id: u64) -> Result<(), String> {
        let (disk, number) = {
            let mut slots = lock(&self.slots);
            let Some(slot) = slots.get_mut(&id) else {
                return Err(format!("no node {id}"));
            };
            if slot.up.is_some() {
                return Ok(());
            }
            slot.starts += 1;
            (slot.disk.clone(), slot.starts)
        };
        self.trace(format_args!("start n{id} incarnation {number}"));
        let log = LogStore::open(disk.clone());
        let sm = SmStore::open(disk, self.applied.clone())
            .map_err(|e| format!("n{id}: snapshot unreadable: {e}"))?;
        let sm_handle = sm.handle();
        let net = SimNetwork::new(self.clone(), id, number);
        let raft = SimRaft::new(id, self.config.clone(), net, log, sm)
            .await
            .map_err(|e| format!("n{id} cannot restart from its disk: {e}"))?;
        let inc = Incarnation {
            number,
            raft: raft.clone(),
            sm: sm_handle,
            svc: Arc::new(NodeSvc::default()),
        };
        let node = Node::new(self.clone(), id, &inc);
        {
            let mut slots = lock(&self.slots);
            if let Some(slot) = slots.get_mut(&id) {
                slot.up = Some(inc);
            }
        }
        self.spawn_monitor(id, number, &raft);
        // The leader-only runners, as the node starts them (they idle
        // until this incarnation leads, and end with it).
        drop(spawn(leader::run_sessions(node.clone())));
        drop(spawn(leader::run_copies(node)));
        Ok(())
    }

    /// Records every (term, leader) change the node reports, polling its
    /// metrics every 5 ms while the incarnation lives. (Polling, not
    /// `changed().await`: see [`Signal`] on waking order of tokio's watch.)
    fn spawn_monitor(self: &Arc<Self>, id: u64, number: u64, raft: &SimRaft) {
        let rx = raft.metrics();
        let world = self.clone();
        drop(spawn(async move {
            let mut last = None;
            while world.is_current(id, number) {
                let cur = {
                    let m = rx.borrow();
                    (m.current_term, m.current_leader.unwrap_or(0))
                };
                if last != Some(cur) {
                    last = Some(cur);
                    world.trace(format_args!(
                        "observe n{id} term {} leader {}",
                        cur.0, cur.1
                    ));
                    lock(&world.observations).push(Observation {
                        time_ns: elapsed_ns(),
                        node_id: id,
                        term: cur.0,
                        leader_id: cur.1,
                    });
                }
                sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    /// Power loss of node `id`. Returns whether it was up.
    pub fn crash(self: &Arc<Self>, id: u64) -> bool {
        let inc = {
            let mut slots = lock(&self.slots);
            let Some(slot) = slots.get_mut(&id) else {
                return false;
            };
            let inc = slot.up.take();
            if inc.is_some() {
                lock(&slot.disk).crash();
            }
            inc
        };
        let Some(inc) = inc else {
            return false;
        };
        self.trace(format_args!("crash n{id} incarnation {}", inc.number));
        // The disk is fenced already; stopping the old Raft only ends its
        // timers and tasks.
        drop(spawn(async move {
            let _ = inc.raft.shutdown().await;
        }));
        true
    }

    pub fn set_paused(&self, id: u64, paused: bool) {
        self.trace(format_args!("paused n{id} {paused}"));
        let resumed = {
            let mut slots = lock(&self.slots);
            let Some(slot) = slots.get_mut(&id) else {
                return;
            };
            let was = std::mem::replace(&mut slot.paused, paused);
            (was && !paused).then(|| slot.resumed.clone())
        };
        if let Some(signal) = resumed {
            signal.notify();
        }
    }

    /// Blocks both directions between every node of `a` and every node of
    /// `b` (members, or chunks by [`chunk_addr`]).
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        self.trace(format_args!("partition {a:?} | {b:?}"));
        {
            let mut net = lock(&self.net);
            for &x in a {
                for &y in b {
                    if x != y {
                        net.blocked.insert((x, y));
                        net.blocked.insert((y, x));
                    }
                }
            }
        }
        self.note_chunk_cuts();
    }

    pub fn heal_network(&self) {
        self.trace(format_args!("heal network"));
        lock(&self.net).blocked.clear();
        self.note_chunk_cuts();
    }

    /// Opens or closes each chunk's cut interval: cut while it cannot reach
    /// a majority of the members.
    fn note_chunk_cuts(&self) {
        let now = elapsed_ns();
        let majority = self.ids.len() / 2 + 1;
        let reach: Vec<(u32, usize)> = {
            let net = lock(&self.net);
            let chunks = lock(&self.chunks);
            chunks
                .keys()
                .map(|&cid| {
                    let a = chunk_addr(cid);
                    let n = self
                        .ids
                        .iter()
                        .filter(|&&id| !net.blocked.contains(&(a, id)))
                        .count();
                    (cid, n)
                })
                .collect()
        };
        let mut chunks = lock(&self.chunks);
        for (cid, n) in reach {
            let Some(c) = chunks.get_mut(&cid) else {
                continue;
            };
            let open = c.cuts.last().is_some_and(|(_, until)| until.is_none());
            if n < majority && !open {
                c.cuts.push((now, None));
            } else if n >= majority && open {
                if let Some(last) = c.cuts.last_mut() {
                    last.1 = Some(now);
                }
            }
        }
    }

    /// A message id and a one-way latency, from the network's own stream.
    pub fn draw_message(&self) -> (u64, Duration) {
        let mut net = lock(&self.net);
        let id = net.next_msg;
        net.next_msg += 1;
        let (lo, hi) = net.latency_ms;
        let ms = net.rng.range(lo, hi);
        (id, Duration::from_millis(ms))
    }

    pub fn draw_latency(&self) -> Duration {
        let mut net = lock(&self.net);
        let (lo, hi) = net.latency_ms;
        Duration::from_millis(net.rng.range(lo, hi))
    }

    /// Does a message from `from` to `to` get through now (partition, loss)?
    pub fn passes(&self, from: u64, to: u64) -> bool {
        let mut net = lock(&self.net);
        if net.blocked.contains(&(from, to)) {
            return false;
        }
        let loss = net.loss;
        !net.rng.chance(loss)
    }

    /// The node every up node agrees leads, with the highest term: a view
    /// the nemesis and the final phase use (clients find leaders themselves).
    pub fn leader(&self) -> Option<(u64, Incarnation)> {
        let slots = lock(&self.slots);
        let mut best: Option<(u64, u64, Incarnation)> = None;
        for (&id, slot) in slots.iter() {
            let Some(inc) = &slot.up else { continue };
            let m = inc.raft.metrics().borrow().clone();
            if m.state == openraft::ServerState::Leader
                && best.as_ref().is_none_or(|(t, _, _)| m.current_term > *t)
            {
                best = Some((m.current_term, id, inc.clone()));
            }
        }
        best.map(|(_, id, inc)| (id, inc))
    }

    pub fn chunk_stopped(&self, cid: u32) -> bool {
        lock(&self.chunks).get(&cid).is_some_and(|c| c.stopped)
    }

    /// The signal a chunk's task waits on, with its version now.
    pub fn chunk_signal(&self, cid: u32) -> (Signal, u64) {
        let mut chunks = lock(&self.chunks);
        let c = chunks.entry(cid).or_default();
        (c.changed.clone(), c.changed.version())
    }

    /// Stops (true) or starts (false) chunk `cid`: a stopped chunk is
    /// silent and loses its copies; started, it registers again.
    pub fn set_chunk_stopped(&self, cid: u32, stopped: bool) {
        self.trace(format_args!("chunk c{cid} stopped {stopped}"));
        let now = elapsed_ns();
        let signal = {
            let mut chunks = lock(&self.chunks);
            let c = chunks.entry(cid).or_default();
            if c.stopped == stopped {
                return;
            }
            c.stopped = stopped;
            if stopped {
                c.stops.push((now, None));
            } else if let Some(last) = c.stops.last_mut() {
                last.1 = Some(now);
            }
            c.changed.clone()
        };
        signal.notify();
    }

    pub fn members(&self) -> BTreeMap<u64, BasicNode> {
        self.ids
            .iter()
            .map(|&id| {
                (
                    id,
                    BasicNode {
                        addr: format!("n{id}"),
                    },
                )
            })
            .collect()
    }
}
