//! TiKV PD, emulated with its defaults: the replica checker repairs each
//! region (extent) that lost a peer with a `replace-down-replica` operator
//! (add a learner on the target, promote it, remove the down peer), within:
//!
//! - **store limit** (pd-ctl `store limit`, formerly `store-balance-rate`):
//!   a token bucket per store and direction, default **15 add-peer
//!   operators per minute**; an operator whose target has no token is not
//!   created. A bucket holds one operator's worth when the rate is below
//!   one per second (PD `storelimit.NewStoreLimit`). Only the target's
//!   add-peer bucket is charged here (PD also charges remove-peer on the
//!   store that loses a peer): generous to PD.
//! - **`replica-schedule-limit`** = 64: replica operators running at once,
//!   cluster-wide.
//! - **target**: among the stores that pass the filters (a token left,
//!   label isolation = the shared rack rule), the lowest region score
//!   (regions held plus those being added).
//! - **source**: the region's Raft leader sends the snapshot; leaders are
//!   spread pseudo-randomly over a region's replicas and move to a survivor
//!   when their store fails.
//!
//! Operators are created as soon as a token allows (PD's patrol and
//! dispatch delays are not modelled: generous to PD) and the snapshot is
//! the whole extent. TiKV's own snapshot limits (`snap-io-max-bytes-per-sec`
//! 100 MB/s, 32 concurrent sends) do not bind under this store limit
//! (15 × 256 MiB per minute is 64 MiB/s per store).

use std::collections::{BTreeMap, BTreeSet};

use cairn_state::{Cid, Pid};

use super::cluster::Cluster;
use super::engine::{CopyKind, Done, Policy, Start};
use super::rng::hash2;
use super::SimError;

/// PD's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdParams {
    /// `store limit` add-peer rate, operators per minute per store.
    pub store_limit_per_min: u64,
    /// `replica-schedule-limit`.
    pub replica_schedule_limit: usize,
}

impl Default for PdParams {
    fn default() -> Self {
        PdParams {
            store_limit_per_min: 15,
            replica_schedule_limit: 64,
        }
    }
}

/// Token units per operator: a bucket gains `store_limit_per_min` units a
/// microsecond, so integer arithmetic is exact.
const UNITS_PER_OP: u64 = 60_000_000;

pub struct PdPolicy<'a> {
    cluster: &'a Cluster,
    p: PdParams,
    detection_us: u64,
    started: bool,
    /// Regions missing a peer with no operator running.
    pending: BTreeSet<Pid>,
    missing: BTreeMap<Pid, u8>,
    holders: BTreeMap<Pid, Vec<Cid>>,
    ops: usize,
    tokens: Vec<u64>,
    capacity: u64,
    refilled_us: u64,
    /// Region count per store, counting peers being added (the score).
    score: Vec<u64>,
    running: BTreeMap<u64, Pid>,
    next_tag: u64,
    created: u64,
    /// Times an operator could not be created for want of a token.
    token_waits: u64,
    peak_ops: usize,
}

impl<'a> PdPolicy<'a> {
    pub fn new(cluster: &'a Cluster, detection_us: u64, p: PdParams) -> PdPolicy<'a> {
        let n = cluster.chunks.len();
        let mut score = vec![0u64; n];
        for loc in &cluster.locs {
            for &c in loc {
                score[c as usize - 1] += 1;
            }
        }
        // One operator's worth, or a second's worth when faster (PD).
        let capacity = UNITS_PER_OP.max(p.store_limit_per_min * 1_000_000);
        PdPolicy {
            cluster,
            p,
            detection_us,
            started: false,
            pending: cluster.lost.iter().map(|l| l.pid).collect(),
            missing: cluster.lost.iter().map(|l| (l.pid, l.missing)).collect(),
            holders: cluster
                .lost
                .iter()
                .map(|l| (l.pid, l.alive.clone()))
                .collect(),
            ops: 0,
            tokens: vec![capacity; n],
            capacity,
            refilled_us: 0,
            score,
            running: BTreeMap::new(),
            next_tag: 1,
            created: 0,
            token_waits: 0,
            peak_ops: 0,
        }
    }

    fn refill(&mut self, now_us: u64) {
        let add = now_us
            .saturating_sub(self.refilled_us)
            .saturating_mul(self.p.store_limit_per_min);
        for t in &mut self.tokens {
            *t = t.saturating_add(add).min(self.capacity);
        }
        self.refilled_us = now_us;
    }

    /// The region's Raft leader: a pseudo-random replica, re-elected among
    /// the survivors when its store failed.
    fn leader(&self, pid: Pid, alive: &[Cid]) -> Cid {
        let h = hash2(pid, 0x7D);
        let loc = self.cluster.locs[pid as usize - 1];
        let l = loc[(h % loc.len() as u64) as usize];
        if alive.contains(&l) {
            l
        } else {
            alive[(h % alive.len() as u64) as usize]
        }
    }

    fn schedule(&mut self, start: &mut Vec<Start>) {
        while self.ops < self.p.replica_schedule_limit && !self.pending.is_empty() {
            let mut with_token: Vec<Cid> = self
                .cluster
                .live_cids()
                .filter(|&c| self.tokens[c as usize - 1] >= UNITS_PER_OP)
                .collect();
            if with_token.is_empty() {
                self.token_waits += 1;
                return;
            }
            with_token.sort_by_key(|&c| (self.score[c as usize - 1], c));
            let found = self.pending.iter().find_map(|&pid| {
                let h = &self.holders[&pid];
                with_token
                    .iter()
                    .find(|&&c| self.cluster.is_eligible(c, h, h))
                    .map(|&c| (pid, c))
            });
            let Some((pid, dst)) = found else {
                self.token_waits += 1;
                return;
            };
            let src = self.leader(pid, &self.holders[&pid]);
            self.pending.remove(&pid);
            self.tokens[dst as usize - 1] -= UNITS_PER_OP;
            self.score[dst as usize - 1] += 1;
            self.ops += 1;
            self.peak_ops = self.peak_ops.max(self.ops);
            self.created += 1;
            let tag = self.next_tag;
            self.next_tag += 1;
            self.running.insert(tag, pid);
            start.push(Start {
                pid,
                src,
                dst,
                kind: CopyKind::Recover,
                tag,
            });
        }
    }
}

impl Policy for PdPolicy<'_> {
    fn step(
        &mut self,
        now_us: u64,
        done: &[Done],
        start: &mut Vec<Start>,
        _cancel: &mut Vec<u64>,
    ) -> Result<(), SimError> {
        self.refill(now_us);
        for d in done {
            let Some(pid) = self.running.remove(&d.tag) else {
                continue;
            };
            self.ops -= 1;
            self.holders.entry(pid).or_default().push(d.dst);
            if let Some(m) = self.missing.get_mut(&pid) {
                *m = m.saturating_sub(1);
                if *m > 0 {
                    self.pending.insert(pid);
                }
            }
        }
        if now_us >= self.detection_us {
            self.started = true;
        }
        if self.started {
            self.schedule(start);
        }
        Ok(())
    }

    fn next_wake_us(&self) -> Option<u64> {
        if !self.started {
            return Some(self.detection_us);
        }
        if self.pending.is_empty() || self.ops >= self.p.replica_schedule_limit {
            return None; // a completion wakes it
        }
        // The next token to reach one operator's worth.
        self.cluster
            .live_cids()
            .map(|c| self.tokens[c as usize - 1])
            .filter(|&t| t < UNITS_PER_OP)
            .map(|t| {
                self.refilled_us + (UNITS_PER_OP - t).div_ceil(self.p.store_limit_per_min.max(1))
            })
            .min()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("operators created", self.created),
            ("checks stopped for want of a token", self.token_waits),
            ("most operators running", self.peak_ops as u64),
        ]
    }
}
