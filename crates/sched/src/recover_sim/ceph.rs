//! Ceph, emulated with its defaults:
//!
//! - **Targets fixed up front by CRUSH**: when the OSD is marked out, each
//!   placement group (here: each extent) maps to new OSDs by a pseudo-random
//!   hash of (pg, osd) under the failure-domain rule (straw2 with equal
//!   weights is an argmax of hashed straws; the rule is the shared rack
//!   rule). The mapping does not look at load or bandwidth.
//! - **Source**: the PG's primary, the first surviving OSD of its acting
//!   set, pushes the data (backfill).
//! - **`osd_max_backfills` = 1** (the default, also under the mClock
//!   scheduler unless `osd_mclock_override_recovery_settings` is set): each
//!   OSD grants one local reservation (as primary, outgoing) and one remote
//!   reservation (as target, incoming). The primary takes its local
//!   reservation first, then asks the target's remote reserver and holds the
//!   local one while it waits; reservers grant by priority (more degraded
//!   first), then in arrival order (`AsyncReserver`).
//!
//! mClock's throttling of recovery bandwidth, `osd_recovery_sleep` and
//! per-object recovery ops are not modelled (generous to Ceph): a backfill
//! runs at the fair share of its two links. A PG missing two replicas
//! backfills each target under its own reservation pair.

use std::collections::{BTreeMap, VecDeque};

use cairn_state::{Cid, Pid};

use super::cluster::Cluster;
use super::engine::{CopyKind, Done, Policy, Start};
use super::rng::hash2;
use super::SimError;

/// Ceph's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CephParams {
    pub osd_max_backfills: usize,
}

impl Default for CephParams {
    fn default() -> Self {
        CephParams {
            osd_max_backfills: 1,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Backfill {
    pid: Pid,
    primary: Cid,
    target: Cid,
}

pub struct CephPolicy {
    p: CephParams,
    detection_us: u64,
    started: bool,
    jobs: Vec<Backfill>,
    local_queue: Vec<VecDeque<usize>>,
    local_held: Vec<usize>,
    remote_queue: Vec<VecDeque<usize>>,
    remote_held: Vec<usize>,
    running: BTreeMap<u64, usize>,
    /// Remote reservation requests that found the target's slot taken (the
    /// primary then holds its local reservation idle).
    waits: u64,
}

/// CRUSH-like choice: the allowed OSD with the highest straw for this PG.
fn crush_target(cluster: &Cluster, pid: Pid, near: &[Cid], taken: &[Cid]) -> Option<Cid> {
    cluster
        .eligible(near, taken)
        .into_iter()
        .max_by_key(|&c| (hash2(pid, u64::from(c)), c))
}

/// The fixed targets of every lost replica (what a static assignment
/// gives; the tests compare Cairn's adaptive choice against it).
pub fn crush_targets(cluster: &Cluster) -> Vec<(Pid, Cid, Cid)> {
    let mut out = Vec::new();
    for l in &cluster.lost {
        let mut near = l.alive.clone();
        for _ in 0..l.missing {
            let Some(t) = crush_target(cluster, l.pid, &near, &near) else {
                break;
            };
            near.push(t);
            // The primary: the first surviving OSD of the acting set.
            out.push((l.pid, l.alive[0], t));
        }
    }
    out
}

impl CephPolicy {
    pub fn new(cluster: &Cluster, detection_us: u64, p: CephParams) -> CephPolicy {
        let n = cluster.chunks.len();
        let missing: BTreeMap<Pid, u8> = cluster.lost.iter().map(|l| (l.pid, l.missing)).collect();
        let jobs: Vec<Backfill> = crush_targets(cluster)
            .into_iter()
            .map(|(pid, primary, target)| Backfill {
                pid,
                primary,
                target,
            })
            .collect();
        // Each primary's reserver queue: more degraded PGs first, then PG order.
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&j| {
            (
                std::cmp::Reverse(missing.get(&jobs[j].pid).copied()),
                jobs[j].pid,
                j,
            )
        });
        let mut local_queue = vec![VecDeque::new(); n];
        for j in order {
            local_queue[jobs[j].primary as usize - 1].push_back(j);
        }
        CephPolicy {
            p,
            detection_us,
            started: false,
            jobs,
            local_queue,
            local_held: vec![0; n],
            remote_queue: vec![VecDeque::new(); n],
            remote_held: vec![0; n],
            running: BTreeMap::new(),
            waits: 0,
        }
    }

    fn grant(&mut self, start: &mut Vec<Start>) {
        let max = self.p.osd_max_backfills;
        for o in 0..self.local_queue.len() {
            while self.local_held[o] < max {
                let Some(j) = self.local_queue[o].pop_front() else {
                    break;
                };
                self.local_held[o] += 1;
                let t = self.jobs[j].target as usize - 1;
                if self.remote_held[t] >= max || !self.remote_queue[t].is_empty() {
                    self.waits += 1;
                }
                self.remote_queue[t].push_back(j);
            }
        }
        for o in 0..self.remote_queue.len() {
            while self.remote_held[o] < max {
                let Some(j) = self.remote_queue[o].pop_front() else {
                    break;
                };
                self.remote_held[o] += 1;
                let b = self.jobs[j];
                let tag = j as u64 + 1;
                self.running.insert(tag, j);
                start.push(Start {
                    pid: b.pid,
                    src: b.primary,
                    dst: b.target,
                    kind: CopyKind::Recover,
                    tag,
                });
            }
        }
    }
}

impl Policy for CephPolicy {
    fn step(
        &mut self,
        now_us: u64,
        done: &[Done],
        start: &mut Vec<Start>,
        _cancel: &mut Vec<u64>,
    ) -> Result<(), SimError> {
        for d in done {
            let Some(j) = self.running.remove(&d.tag) else {
                continue;
            };
            let b = self.jobs[j];
            self.local_held[b.primary as usize - 1] -= 1;
            self.remote_held[b.target as usize - 1] -= 1;
        }
        if now_us >= self.detection_us {
            self.started = true;
        }
        if self.started {
            self.grant(start);
        }
        Ok(())
    }

    fn next_wake_us(&self) -> Option<u64> {
        (!self.started).then_some(self.detection_us)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("backfills", self.jobs.len() as u64),
            ("remote reservations that had to wait", self.waits),
        ]
    }
}
