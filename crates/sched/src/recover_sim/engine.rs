//! The discrete-event loop shared by every policy. Time is in whole
//! microseconds. The next event is the earliest of: a copy completing (from
//! the network's current rates) and the policy's own next wake-up (a
//! planner round, a heartbeat, a token refill). At each event the network
//! advances, the policy hears which copies completed, and the copies it
//! starts join the network.
//!
//! The engine keeps its own record of where every extent's replicas are and
//! checks each copy a policy starts against it: the source must hold an
//! alive replica, the destination must be live and hold none (nor receive
//! one already). A policy that breaks this is a bug and the run fails. A
//! copy into a destination the shared safety rule would not allow
//! ([`Cluster::is_eligible`]) is counted, not refused: Cairn's real planner
//! is measured as it is.

use std::collections::BTreeMap;

use cairn_state::{Cid, Pid};

use super::cluster::Cluster;
use super::config::REPLICAS;
use super::network::{Flow, LinkStats, Network};
use super::SimError;

/// What a copy does when it completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyKind {
    /// A new replica (recover).
    Recover,
    /// A moved replica: `replace` leaves once the copy is done.
    Migrate { replace: Cid },
}

/// A copy a policy starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    pub pid: Pid,
    pub src: Cid,
    pub dst: Cid,
    pub kind: CopyKind,
    /// The policy's name for the copy, unique within a run.
    pub tag: u64,
}

/// A copy whose bytes have all arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    pub tag: u64,
    pub pid: Pid,
    pub src: Cid,
    pub dst: Cid,
}

/// A recovery policy driven by the engine.
pub trait Policy {
    /// The simulation is at `now_us`; `done` holds the copies that
    /// completed at this instant (ordered by tag). Copies to start now go
    /// to `start`, copies to abandon (by tag) to `cancel`.
    fn step(
        &mut self,
        now_us: u64,
        done: &[Done],
        start: &mut Vec<Start>,
        cancel: &mut Vec<u64>,
    ) -> Result<(), SimError>;

    /// The next time the policy acts on its own (None: only on completions).
    fn next_wake_us(&self) -> Option<u64>;

    /// Policy-specific figures for the report (name, value).
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// One copy as it happened (the trace tests check limits against).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyRecord {
    pub tag: u64,
    pub pid: Pid,
    pub src: Cid,
    pub dst: Cid,
    pub kind: CopyKind,
    pub start_us: u64,
    /// None: still running at the end, or cancelled.
    pub end_us: Option<u64>,
    pub cancelled: bool,
    /// The destination broke the shared safety rule when the copy started.
    pub unsafe_dst: bool,
}

/// What one policy's run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// When every extent was back at its full replica count with its
    /// replicas as spread as the rack rule allows: recovery is over. None:
    /// not within [`SAFE_GRACE_US`] of `restored_us`.
    pub safe_us: Option<u64>,
    /// When the last missing replica was restored (all its bytes arrived),
    /// wherever it went.
    pub restored_us: u64,
    /// Extents still less spread than the rule allows at the end.
    pub left_unsafe: u64,
    pub copies: Vec<CopyRecord>,
    pub links: LinkStats,
    /// Replicas of every extent touched, after the run (alive ones).
    pub holders: BTreeMap<Pid, Vec<Cid>>,
    /// Completed copies by destination cid (index cid - 1).
    pub copies_in: Vec<u64>,
    pub counters: Vec<(&'static str, u64)>,
}

impl Outcome {
    pub fn started(&self) -> u64 {
        self.copies.len() as u64
    }

    pub fn unsafe_copies(&self) -> u64 {
        self.copies.iter().filter(|c| c.unsafe_dst).count() as u64
    }
}

/// How long the run continues after the last replica is restored while
/// some extent is still less spread than the rule allows (a policy that
/// put a replica in a rack holding another must move it).
pub const SAFE_GRACE_US: u64 = 3_600 * 1_000_000;

/// The engine's record of the replicas (alive ones) and copies in flight.
struct Truth {
    holders: BTreeMap<Pid, Vec<Cid>>,
    inflight: BTreeMap<Pid, Vec<Cid>>,
    /// Replicas still missing, per extent that lost some.
    missing: BTreeMap<Pid, u8>,
    missing_total: u64,
    /// Extents at full count whose replicas share a rack needlessly.
    unsafe_set: std::collections::BTreeSet<Pid>,
}

impl Truth {
    fn new(cluster: &Cluster) -> Truth {
        let mut missing = BTreeMap::new();
        let mut holders = BTreeMap::new();
        for l in &cluster.lost {
            missing.insert(l.pid, l.missing);
            holders.insert(l.pid, l.alive.clone());
        }
        Truth {
            missing_total: cluster.missing_replicas(),
            holders,
            inflight: BTreeMap::new(),
            missing,
            unsafe_set: Default::default(),
        }
    }

    /// Re-judges an extent's spread after its replicas changed.
    fn check_spread(&mut self, cluster: &Cluster, pid: Pid) {
        let holders = self.holders(cluster, pid).clone();
        let full = self.missing.get(&pid).is_none_or(|&m| m == 0);
        if full && !cluster.spread_ok(&holders) {
            self.unsafe_set.insert(pid);
        } else {
            self.unsafe_set.remove(&pid);
        }
    }

    fn holders(&mut self, cluster: &Cluster, pid: Pid) -> &mut Vec<Cid> {
        self.holders.entry(pid).or_insert_with(|| {
            let loc = (pid as usize)
                .checked_sub(1)
                .and_then(|i| cluster.locs.get(i))
                .copied()
                .unwrap_or([0; REPLICAS]);
            loc.into_iter().filter(|&c| cluster.live(c)).collect()
        })
    }
}

/// Runs `policy` on `cluster` until every missing replica is restored.
pub fn run(
    cluster: &Cluster,
    policy: &mut dyn Policy,
    name: &str,
    max_us: u64,
) -> Result<Outcome, SimError> {
    let n = cluster.chunks.len();
    let out_cap = cluster.chunks.iter().map(|c| c.out_bps).collect();
    let in_cap = cluster.chunks.iter().map(|c| c.in_bps).collect();
    let mut net = Network::new(out_cap, in_cap);
    let mut truth = Truth::new(cluster);
    let mut copies: Vec<CopyRecord> = Vec::new();
    let mut by_tag: BTreeMap<u64, usize> = BTreeMap::new();
    let mut copies_in = vec![0u64; n];
    let mut now = 0u64;
    let mut flows: Vec<Flow> = Vec::new();
    let mut done: Vec<Done> = Vec::new();
    let mut start: Vec<Start> = Vec::new();
    let mut cancel: Vec<u64> = Vec::new();
    let mut restored = 0u64;
    let mut safe = None;
    // A policy must act (or a copy complete) at each step: bound the steps
    // so a policy bug cannot spin forever at one instant.
    let mut same_instant = 0u32;
    // The first step at t = 0 lets the policy set itself up.
    let mut first = true;
    while truth.missing_total > 0 || !truth.unsafe_set.is_empty() || first {
        if truth.missing_total == 0 && now > restored.saturating_add(SAFE_GRACE_US) {
            break; // restored, but some extent stays less spread
        }
        let t = if first {
            0
        } else {
            let t_net = net.next_completion_us(now);
            let t_pol = policy.next_wake_us();
            match (t_net, t_pol) {
                // Restored; what is left less spread will stay so.
                (None, None) if truth.missing_total == 0 => break,
                (None, None) => {
                    return Err(SimError::Stuck {
                        policy: name.to_string(),
                        at_ms: now / 1000,
                        missing: truth.missing_total,
                    })
                }
                (a, b) => a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX)).max(now),
            }
        };
        first = false;
        if t > max_us {
            return Err(SimError::TimeLimit {
                policy: name.to_string(),
                limit_s: max_us / 1_000_000,
                missing: truth.missing_total,
            });
        }
        same_instant = if t == now { same_instant + 1 } else { 0 };
        if same_instant > 1_000_000 {
            return Err(SimError::Invalid {
                policy: name.to_string(),
                reason: format!("no progress at {} ms", now / 1000),
            });
        }
        flows.clear();
        net.advance(now, t, &mut flows);
        now = t;
        done.clear();
        for f in flows.drain(..) {
            let Some(&i) = by_tag.get(&f.tag) else {
                continue;
            };
            let rec = &mut copies[i];
            rec.end_us = Some(now);
            let (pid, dst, kind) = (rec.pid, rec.dst, rec.kind);
            if let Some(v) = truth.inflight.get_mut(&pid) {
                v.retain(|&c| c != dst);
            }
            let h = truth.holders(cluster, pid);
            h.push(dst);
            if let CopyKind::Migrate { replace } = kind {
                h.retain(|&c| c != replace);
            }
            copies_in[dst as usize - 1] += 1;
            if kind == CopyKind::Recover {
                if let Some(m) = truth.missing.get_mut(&pid) {
                    if *m > 0 {
                        *m -= 1;
                        truth.missing_total -= 1;
                        if truth.missing_total == 0 {
                            restored = now;
                        }
                    }
                }
            }
            truth.check_spread(cluster, pid);
            done.push(Done {
                tag: f.tag,
                pid,
                src: rec.src,
                dst,
            });
        }
        done.sort_by_key(|d| d.tag);
        start.clear();
        cancel.clear();
        policy.step(now, &done, &mut start, &mut cancel)?;
        for tag in cancel.drain(..) {
            if let (Some(_), Some(&i)) = (net.cancel(tag), by_tag.get(&tag)) {
                let rec = &mut copies[i];
                rec.cancelled = true;
                if let Some(v) = truth.inflight.get_mut(&rec.pid) {
                    v.retain(|&c| c != rec.dst);
                }
            }
        }
        for s in start.drain(..) {
            let invalid = |reason: String| SimError::Invalid {
                policy: name.to_string(),
                reason: format!(
                    "copy #{} of extent {} {} -> {}: {reason}",
                    s.tag, s.pid, s.src, s.dst
                ),
            };
            if by_tag.contains_key(&s.tag) {
                return Err(invalid("tag used twice".into()));
            }
            let holders = truth.holders(cluster, s.pid).clone();
            let inflight = truth.inflight.get(&s.pid).cloned().unwrap_or_default();
            if !holders.contains(&s.src) || !cluster.live(s.src) {
                return Err(invalid("source holds no alive replica".into()));
            }
            if !cluster.live(s.dst) || holders.contains(&s.dst) || inflight.contains(&s.dst) {
                return Err(invalid(
                    "destination is not live, or holds or receives a replica already".into(),
                ));
            }
            if let CopyKind::Migrate { replace } = s.kind {
                if !holders.contains(&replace) {
                    return Err(invalid(format!("replaced replica {replace} is gone")));
                }
            }
            // Safety is judged against the replicas that stay (a migrate's
            // `replace` leaves) and the copies already on their way.
            let staying: Vec<Cid> = match s.kind {
                CopyKind::Recover => holders.clone(),
                CopyKind::Migrate { replace } => {
                    holders.iter().copied().filter(|&c| c != replace).collect()
                }
            };
            let mut stays_and_comes = staying.clone();
            stays_and_comes.extend(&inflight);
            let mut taken = holders.clone();
            taken.extend(&inflight);
            let unsafe_dst = !cluster.is_eligible(s.dst, &stays_and_comes, &taken);
            truth.inflight.entry(s.pid).or_default().push(s.dst);
            by_tag.insert(s.tag, copies.len());
            copies.push(CopyRecord {
                tag: s.tag,
                pid: s.pid,
                src: s.src,
                dst: s.dst,
                kind: s.kind,
                start_us: now,
                end_us: None,
                cancelled: false,
                unsafe_dst,
            });
            net.start(
                s.src as usize - 1,
                s.dst as usize - 1,
                cluster.extent_bytes,
                s.tag,
                now,
            );
        }
    }
    if truth.missing_total == 0 && truth.unsafe_set.is_empty() {
        safe = Some(now);
    }
    Ok(Outcome {
        safe_us: safe,
        restored_us: restored,
        left_unsafe: truth.unsafe_set.len() as u64,
        copies,
        links: net.stats,
        holders: truth.holders,
        copies_in,
        counters: policy.counters(),
    })
}
