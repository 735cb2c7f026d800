//! The lower bound on the makespan: T_LB = detection + T*, where T* is the
//! issue's formula — max over chunks of (bytes to receive / inbound
//! bandwidth, bytes to send / outbound bandwidth) — minimised over every way
//! to split the lost bytes among sources and destinations. Any schedule
//! sends each byte from a chunk holding the extent to a chunk allowed to
//! receive it, so within its transfer time T a chunk receives at most
//! T × inbound and sends at most T × outbound: no schedule beats T*.
//!
//! T* is found exactly: for a candidate T, a flow network routes every
//! extent's bytes from its possible sources (capacity T × outbound) through
//! the extent to the racks it may go to and their chunks (capacity T ×
//! inbound); T is feasible iff the maximum flow carries every byte. A
//! bisection on whole microseconds ends on the largest infeasible T (whole
//! µs), which is strictly below T*: the bound is rounded down. Extents with
//! the same alive replicas are one node.
//!
//! The relaxations keep it a bound for any schedule the engine accepts,
//! including one that copies into a destination the rack rule does not
//! allow (the engine counts such a copy, it does not refuse it). An
//! extent's bytes may split over many sources and destinations. Its first
//! copy comes from an alive replica (the only holders before any copy
//! completes); its 2nd and later missing replica may come from any live
//! chunk (a copy may chain from a new replica, even one in a rack the rule
//! forbids). Its new replicas go to racks holding none of its alive
//! replicas: a safe end state (3 replicas in 3 racks) holds at least one
//! replica per missing one in such racks, each of which arrived by a copy.
//! Two new replicas of one extent may share a rack.
//! Nothing can start before detection, the same for every policy.

use std::collections::BTreeMap;

use cairn_state::Cid;

use super::cluster::Cluster;
use super::maxflow::{MaxFlow, INF};

/// The bound and what binds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    pub detection_us: u64,
    /// Largest transfer time no schedule can reach (T*, from below).
    pub transfer_us: u64,
    /// `detection_us + transfer_us`.
    pub t_lb_us: u64,
    pub lost_bytes: u64,
    /// Lost bytes over the summed inbound bandwidth of the live chunks: the
    /// bound without placement or sources (T* is at least this).
    pub spread_us: u64,
    /// One copy alone on the fastest pair of links it could use: the
    /// outbound of a chunk holding an alive replica of a lost extent and
    /// the inbound of another live chunk (every schedule makes at least
    /// one such copy, the first of an extent).
    pub one_copy_us: u64,
    /// Chunks whose inbound / outbound link is full in a minimum cut just
    /// below T*: the links that decide the bound.
    pub tight_in: Vec<Cid>,
    pub tight_out: Vec<Cid>,
}

/// Extents that need the same kind of copy: who may send, where it may go.
struct Group {
    bytes: u64,
    sources: Vec<Cid>,
    /// Racks it may go to; empty: `chunks` instead.
    racks: Vec<usize>,
    chunks: Vec<Cid>,
}

fn groups(cluster: &Cluster) -> Vec<Group> {
    // (alive replicas, a later copy of the same extent) -> copies
    let mut by_key: BTreeMap<(Vec<Cid>, bool), u64> = BTreeMap::new();
    for l in &cluster.lost {
        let mut alive = l.alive.clone();
        alive.sort_unstable();
        *by_key.entry((alive.clone(), false)).or_default() += 1;
        if l.missing > 1 {
            *by_key.entry((alive, true)).or_default() += u64::from(l.missing - 1);
        }
    }
    by_key
        .into_iter()
        .map(|((alive, later), copies)| {
            let racks = cluster.free_racks(&alive, &alive);
            let chunks = if racks.is_empty() {
                cluster.eligible(&alive, &alive)
            } else {
                Vec::new()
            };
            // A later copy may chain from any replica made meanwhile,
            // wherever the engine let it go: every live chunk may send it.
            let sources = if later {
                cluster.live_cids().collect()
            } else {
                alive.clone()
            };
            Group {
                bytes: copies.saturating_mul(cluster.extent_bytes),
                sources,
                racks,
                chunks,
            }
        })
        .collect()
}

/// Bytes a link moves in `t_us` (rounded up: a generous link keeps the
/// bound a bound).
fn link_bytes(bps: f64, t_us: u64) -> u64 {
    let b = (bps * t_us as f64 / 1e6).ceil();
    if b >= INF as f64 {
        INF
    } else {
        b as u64
    }
}

struct Net {
    flow: MaxFlow,
    total: u64,
}

/// The network for transfer time `t_us`; node ids: 0 source, 1 sink,
/// 2.. outbound links, then inbound links, racks, groups (in, out).
fn network(cluster: &Cluster, groups: &[Group], t_us: u64) -> Net {
    let n = cluster.chunks.len();
    let out_node = |c: Cid| 2 + (c as usize - 1);
    let in_node = |c: Cid| 2 + n + (c as usize - 1);
    let rack_node = |r: usize| 2 + 2 * n + r;
    let g_base = 2 + 2 * n + cluster.racks;
    let mut f = MaxFlow::new(g_base + 2 * groups.len());
    for c in cluster.chunks.iter().filter(|c| !c.failed) {
        f.add_edge(0, out_node(c.cid), link_bytes(c.out_bps, t_us));
        f.add_edge(in_node(c.cid), 1, link_bytes(c.in_bps, t_us));
        f.add_edge(rack_node(c.rack), in_node(c.cid), INF);
    }
    let mut total = 0u64;
    for (i, g) in groups.iter().enumerate() {
        let (gi, go) = (g_base + 2 * i, g_base + 2 * i + 1);
        for &s in &g.sources {
            f.add_edge(out_node(s), gi, INF);
        }
        f.add_edge(gi, go, g.bytes);
        for &r in &g.racks {
            f.add_edge(go, rack_node(r), INF);
        }
        for &c in &g.chunks {
            f.add_edge(go, in_node(c), INF);
        }
        total = total.saturating_add(g.bytes);
    }
    Net { flow: f, total }
}

fn feasible(cluster: &Cluster, groups: &[Group], t_us: u64) -> bool {
    let mut net = network(cluster, groups, t_us);
    net.flow.run(0, 1) >= net.total
}

/// The fastest a single first copy of a lost extent can run, bytes per
/// second: min(the best outbound among chunks holding an alive replica of
/// a lost extent, the best inbound among the other live chunks), source
/// and destination distinct. Not `min(in, out)` of one chunk: that is a
/// floor only while every chunk's two links are equal.
fn fastest_first_copy(cluster: &Cluster) -> f64 {
    let mut holds = vec![false; cluster.chunks.len()];
    for l in &cluster.lost {
        for &c in &l.alive {
            if let Some(h) = (c as usize).checked_sub(1).and_then(|i| holds.get_mut(i)) {
                *h = true;
            }
        }
    }
    // The two best inbound links of live chunks, so a source is never its
    // own destination.
    let mut best_in: [(f64, Cid); 2] = [(0.0, 0); 2];
    for c in cluster.chunks.iter().filter(|c| !c.failed) {
        if c.in_bps > best_in[0].0 {
            best_in = [(c.in_bps, c.cid), best_in[0]];
        } else if c.in_bps > best_in[1].0 {
            best_in[1] = (c.in_bps, c.cid);
        }
    }
    cluster
        .chunks
        .iter()
        .filter(|c| !c.failed && holds[c.cid as usize - 1])
        .map(|c| {
            let dst_in = if best_in[0].1 == c.cid {
                best_in[1].0
            } else {
                best_in[0].0
            };
            c.out_bps.min(dst_in)
        })
        .fold(0.0, f64::max)
}

/// T_LB for `cluster` with failures detected after `detection_us`.
pub fn lower_bound(cluster: &Cluster, detection_us: u64) -> Bound {
    let groups = groups(cluster);
    let lost_bytes: u64 = groups.iter().map(|g| g.bytes).sum();
    let live_in: f64 = cluster
        .chunks
        .iter()
        .filter(|c| !c.failed)
        .map(|c| c.in_bps)
        .sum();
    let fastest = fastest_first_copy(cluster);
    let spread_us = if live_in > 0.0 {
        (lost_bytes as f64 / live_in * 1e6).floor() as u64
    } else {
        0
    };
    let one_copy_us = if lost_bytes > 0 && fastest > 0.0 {
        (cluster.extent_bytes as f64 / fastest * 1e6).floor() as u64
    } else {
        0
    };
    let (mut lo, mut hi) = (0u64, spread_us.max(1));
    if lost_bytes > 0 {
        // Double until feasible (every lost extent has a destination, so
        // some T is), then bisect to the microsecond: `lo` stays infeasible,
        // so the bound is rounded down.
        let mut rounds = 0;
        while !feasible(cluster, &groups, hi) && rounds < 64 {
            lo = hi;
            hi = hi.saturating_mul(2);
            rounds += 1;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if feasible(cluster, &groups, mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
    }
    // The binding links: a minimum cut at the largest infeasible time.
    let (mut tight_in, mut tight_out) = (Vec::new(), Vec::new());
    if lost_bytes > 0 && lo > 0 {
        let mut net = network(cluster, &groups, lo);
        net.flow.run(0, 1);
        let side = net.flow.source_side(0);
        let n = cluster.chunks.len();
        for c in cluster.chunks.iter().filter(|c| !c.failed) {
            let i = c.cid as usize - 1;
            if side[2 + n + i] {
                tight_in.push(c.cid);
            }
            if !side[2 + i] {
                tight_out.push(c.cid);
            }
        }
    }
    let transfer_us = lo.max(one_copy_us);
    Bound {
        detection_us,
        transfer_us,
        // Nothing lost, nothing to wait for.
        t_lb_us: if lost_bytes == 0 {
            0
        } else {
            detection_us + transfer_us
        },
        lost_bytes,
        spread_us,
        one_copy_us,
        tight_in,
        tight_out,
    }
}
