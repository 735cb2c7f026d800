//! HDFS, emulated with its defaults (`hdfs-default.xml`, Hadoop 3.x):
//!
//! - **ReplicationMonitor** (`RedundancyMonitor`) runs every
//!   `dfs.namenode.redundancy.interval.seconds` = **3 s**. Each run takes
//!   the next `live datanodes × dfs.namenode.replication.work.multiplier.
//!   per.iteration` (= **2**) blocks from the low-redundancy queues,
//!   highest priority first, resuming at a bookmark per queue (all
//!   bookmarks reset once every queue was walked to its end). A block it
//!   cannot schedule now still counts towards that number.
//! - **Priority queues** (`LowRedundancyBlocks`): one live replica left =
//!   `QUEUE_HIGHEST_PRIORITY`; live × 3 < expected = very low; else low.
//! - **Sources** (`chooseSourceDatanodes`): live replicas whose queue of
//!   work not yet sent is below `dfs.namenode.replication.max-streams` =
//!   **2**, or below `…max-streams-hard-limit` = **4** for highest-priority
//!   blocks; one of them at random.
//! - **Targets**: random among the nodes the rack rule allows (the shared
//!   rule of every policy; HDFS's own default would also accept a second
//!   replica in the source's rack).
//! - **Dispatch**: work rides the reply to each datanode's heartbeat, every
//!   `dfs.heartbeat.interval` = **3 s**; a datanode gets at most
//!   `max-streams − transfers in progress` (`DatanodeManager.
//!   handleHeartbeat`), so it never runs more than 2 as a source.
//! - The target reports the block at once (incremental block report).
//!
//! A block missing two replicas gets one copy per missing replica from the
//! same source (HDFS pipelines them; the difference only matters with two
//! failures).

use std::collections::{BTreeMap, VecDeque};

use cairn_state::{Cid, Pid};

use super::cluster::Cluster;
use super::config::REPLICAS;
use super::engine::{CopyKind, Done, Policy, Start};
use super::rng::Rng;
use super::SimError;

/// HDFS's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HdfsParams {
    pub redundancy_interval_ms: u64,
    pub work_multiplier: u64,
    pub max_streams: usize,
    pub max_streams_hard_limit: usize,
    pub heartbeat_ms: u64,
}

impl Default for HdfsParams {
    fn default() -> Self {
        HdfsParams {
            redundancy_interval_ms: 3_000,
            work_multiplier: 2,
            max_streams: 2,
            max_streams_hard_limit: 4,
            heartbeat_ms: 3_000,
        }
    }
}

/// `LowRedundancyBlocks` levels used here (corrupt blocks aside).
const LEVELS: usize = 3;
const HIGHEST: usize = 0;

fn level(live: usize) -> usize {
    if live <= 1 {
        HIGHEST
    } else if live * 3 < REPLICAS {
        1
    } else {
        2
    }
}

struct Transfer {
    tag: u64,
    pid: Pid,
    dst: Cid,
}

pub struct HdfsPolicy<'a> {
    cluster: &'a Cluster,
    p: HdfsParams,
    rng: Rng,
    detection_us: u64,
    next_monitor_us: u64,
    /// Insertion-ordered queues with a bookmark each; `queued` says which
    /// entries are still in (a removed block stays in the Vec until reset).
    queues: [Vec<Pid>; LEVELS],
    bookmark: [usize; LEVELS],
    queued: BTreeMap<Pid, usize>,
    holders: BTreeMap<Pid, Vec<Cid>>,
    /// Targets scheduled and not yet reported (`pendingReconstruction`).
    pending: BTreeMap<Pid, Vec<Cid>>,
    /// Per datanode: work scheduled, not yet sent (`replicateBlocks`).
    to_send: Vec<VecDeque<Transfer>>,
    /// Per datanode: transfers it runs as the source (`xmitsInProgress`).
    xmits: Vec<usize>,
    hb_phase_us: Vec<u64>,
    running: BTreeMap<u64, (Pid, Cid)>,
    next_tag: u64,
    scheduled: u64,
    no_source: u64,
    peak_to_send: usize,
    missing_total: u64,
    now_us: u64,
    detected: bool,
}

impl<'a> HdfsPolicy<'a> {
    pub fn new(
        cluster: &'a Cluster,
        detection_us: u64,
        seed: u64,
        p: HdfsParams,
    ) -> HdfsPolicy<'a> {
        let mut rng = Rng::stream(seed, 3);
        let n = cluster.chunks.len();
        let hb = p.heartbeat_ms * 1000;
        let hb_phase_us = (0..n).map(|_| rng.below(hb.max(1))).collect();
        let next_monitor_us = detection_us + rng.below((p.redundancy_interval_ms * 1000).max(1));
        HdfsPolicy {
            cluster,
            p,
            detection_us,
            next_monitor_us,
            queues: Default::default(),
            bookmark: [0; LEVELS],
            queued: BTreeMap::new(),
            holders: cluster
                .lost
                .iter()
                .map(|l| (l.pid, l.alive.clone()))
                .collect(),
            pending: BTreeMap::new(),
            to_send: (0..n).map(|_| VecDeque::new()).collect(),
            xmits: vec![0; n],
            hb_phase_us,
            running: BTreeMap::new(),
            next_tag: 1,
            scheduled: 0,
            no_source: 0,
            peak_to_send: 0,
            missing_total: cluster.missing_replicas(),
            now_us: 0,
            detected: false,
            rng,
        }
    }

    fn enqueue(&mut self, pid: Pid) {
        let live = self.holders.get(&pid).map_or(0, Vec::len);
        let l = level(live);
        if self.queued.get(&pid) == Some(&l) {
            return;
        }
        self.queued.insert(pid, l);
        self.queues[l].push(pid);
    }

    fn dequeue(&mut self, pid: Pid) {
        self.queued.remove(&pid);
    }

    /// The datanode's next heartbeat at or after `t`.
    fn next_heartbeat(&self, i: usize, t: u64) -> u64 {
        let hb = (self.p.heartbeat_ms * 1000).max(1);
        let ph = self.hb_phase_us[i];
        if t <= ph {
            ph
        } else {
            ph + (t - ph).div_ceil(hb) * hb
        }
    }

    /// `chooseLowRedundancyBlocks`: the next blocks, highest priority first.
    fn choose(&mut self, mut budget: u64) -> Vec<(Pid, usize)> {
        let mut out = Vec::new();
        let mut priority = 0;
        while budget > 0 && priority < LEVELS {
            while budget > 0 && self.bookmark[priority] < self.queues[priority].len() {
                let pid = self.queues[priority][self.bookmark[priority]];
                self.bookmark[priority] += 1;
                if self.queued.get(&pid) == Some(&priority) {
                    out.push((pid, priority));
                    budget -= 1;
                }
            }
            priority += 1;
        }
        if priority == LEVELS {
            // Every queue was walked to its end: start over (and drop the
            // entries that left meanwhile).
            for l in 0..LEVELS {
                let queued = &self.queued;
                self.queues[l].retain(|p| queued.get(p) == Some(&l));
                self.bookmark[l] = 0;
            }
        }
        out
    }

    fn monitor(&mut self) {
        let live = self.cluster.live_cids().count() as u64;
        for (pid, prio) in self.choose(live * self.p.work_multiplier) {
            let holders = self.holders.get(&pid).cloned().unwrap_or_default();
            let pending = self.pending.get(&pid).cloned().unwrap_or_default();
            if holders.len() + pending.len() >= REPLICAS {
                self.dequeue(pid);
                continue;
            }
            let limit = if prio == HIGHEST {
                self.p.max_streams_hard_limit
            } else {
                self.p.max_streams
            };
            let sources: Vec<Cid> = holders
                .iter()
                .copied()
                .filter(|&c| self.cluster.live(c) && self.to_send[c as usize - 1].len() < limit)
                .collect();
            if sources.is_empty() {
                self.no_source += 1;
                continue;
            }
            let src = sources[self.rng.below(sources.len() as u64) as usize];
            let mut taken = holders.clone();
            taken.extend(&pending);
            let mut near = holders.clone();
            near.extend(&pending);
            let targets = self.cluster.eligible(&near, &taken);
            if targets.is_empty() {
                continue;
            }
            let dst = targets[self.rng.below(targets.len() as u64) as usize];
            let tag = self.next_tag;
            self.next_tag += 1;
            let q = &mut self.to_send[src as usize - 1];
            q.push_back(Transfer { tag, pid, dst });
            self.peak_to_send = self.peak_to_send.max(q.len());
            self.pending.entry(pid).or_default().push(dst);
            self.scheduled += 1;
            if holders.len() + pending.len() + 1 >= REPLICAS {
                self.dequeue(pid);
            }
        }
    }

    fn heartbeat(&mut self, i: usize, start: &mut Vec<Start>) {
        let room = self.p.max_streams.saturating_sub(self.xmits[i]);
        for _ in 0..room {
            let Some(t) = self.to_send[i].pop_front() else {
                break;
            };
            self.xmits[i] += 1;
            let src = i as Cid + 1;
            self.running.insert(t.tag, (t.pid, src));
            start.push(Start {
                pid: t.pid,
                src,
                dst: t.dst,
                kind: CopyKind::Recover,
                tag: t.tag,
            });
        }
    }
}

impl Policy for HdfsPolicy<'_> {
    fn step(
        &mut self,
        now_us: u64,
        done: &[Done],
        start: &mut Vec<Start>,
        _cancel: &mut Vec<u64>,
    ) -> Result<(), SimError> {
        self.now_us = now_us;
        if !self.detected && now_us >= self.detection_us {
            self.detected = true;
            let lost: Vec<Pid> = self.cluster.lost.iter().map(|l| l.pid).collect();
            // The namenode learns of the loss at detection; queue order is
            // block order (a LinkedHashSet filled by the dead node's blocks).
            for pid in lost {
                self.enqueue(pid);
            }
        }
        for d in done {
            let Some((pid, src)) = self.running.remove(&d.tag) else {
                continue;
            };
            self.xmits[src as usize - 1] -= 1;
            self.missing_total = self.missing_total.saturating_sub(1);
            if let Some(p) = self.pending.get_mut(&pid) {
                p.retain(|&c| c != d.dst);
            }
            self.holders.entry(pid).or_default().push(d.dst);
            let live = self.holders[&pid].len();
            let pend = self.pending.get(&pid).map_or(0, Vec::len);
            if live >= REPLICAS {
                self.dequeue(pid);
            } else if self.queued.contains_key(&pid) || live + pend < REPLICAS {
                self.enqueue(pid); // re-prioritised by its live count
            }
        }
        if now_us >= self.detection_us && now_us >= self.next_monitor_us {
            self.monitor();
            self.next_monitor_us += self.p.redundancy_interval_ms * 1000;
        }
        for i in 0..self.to_send.len() {
            if !self.to_send[i].is_empty() && self.next_heartbeat(i, now_us) == now_us {
                self.heartbeat(i, start);
            }
        }
        Ok(())
    }

    fn next_wake_us(&self) -> Option<u64> {
        if self.missing_total == 0 {
            return None;
        }
        let mut t = self.next_monitor_us;
        for i in 0..self.to_send.len() {
            if !self.to_send[i].is_empty() {
                // Strictly after now: the heartbeat due now was handled.
                t = t.min(self.next_heartbeat(i, self.now_us + 1));
            }
        }
        Some(t)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("transfers scheduled", self.scheduled),
            (
                "blocks passed over (sources at max-streams)",
                self.no_source,
            ),
            (
                "most transfers queued on one datanode",
                self.peak_to_send as u64,
            ),
        ]
    }
}
