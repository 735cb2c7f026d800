//! The network and disk model: every chunk has an outbound and an inbound
//! link (bytes per second; a slow disk slows both). Copies in flight share
//! them max-min fairly: progressive filling over every flow's two links,
//! recomputed whenever a flow starts or ends. A flow is limited by the
//! tighter of its two links, and capacity a flow cannot use (its other end
//! is the bottleneck) goes to the flows that can.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// An `f64` ordered by `total_cmp` (shares are finite and non-negative).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Share(f64);

impl Eq for Share {}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Max-min fair rates of `flows` (source index, destination index) over
/// per-chunk outbound and inbound capacities (indexes into `out_cap` and
/// `in_cap`, which have the same length). Progressive filling: the link
/// with the smallest fair share (capacity left / flows not yet fixed) fixes
/// all its flows at that share; their other links lose that capacity and
/// those flows; repeat. A share only grows as flows are fixed elsewhere, so
/// a lazy heap of shares finds the next link in O(log links).
///
/// A flow naming an index out of range gets rate 0.
pub fn max_min_fair(out_cap: &[f64], in_cap: &[f64], flows: &[(usize, usize)]) -> Vec<f64> {
    let n = out_cap.len().min(in_cap.len());
    let links = 2 * n;
    let mut cap: Vec<f64> = out_cap[..n].iter().chain(&in_cap[..n]).copied().collect();
    let mut left = vec![0u32; links];
    let mut rate = vec![0.0; flows.len()];
    let mut fixed = vec![true; flows.len()];
    // Members of each link, as one flat array (counting sort by link).
    let mut start = vec![0usize; links + 1];
    for (i, &(s, d)) in flows.iter().enumerate() {
        if s < n && d < n {
            fixed[i] = false;
            left[s] += 1;
            left[n + d] += 1;
        }
    }
    for l in 0..links {
        start[l + 1] = start[l] + left[l] as usize;
    }
    let mut fill = start.clone();
    let mut members = vec![0usize; start[links]];
    for (i, &(s, d)) in flows.iter().enumerate() {
        if !fixed[i] {
            members[fill[s]] = i;
            fill[s] += 1;
            members[fill[n + d]] = i;
            fill[n + d] += 1;
        }
    }
    let share = |cap: f64, left: u32| cap.max(0.0) / f64::from(left);
    let mut heap: BinaryHeap<Reverse<(Share, usize)>> = (0..links)
        .filter(|&l| left[l] > 0)
        .map(|l| Reverse((Share(share(cap[l], left[l])), l)))
        .collect();
    while let Some(Reverse((Share(s), l))) = heap.pop() {
        if left[l] == 0 || share(cap[l], left[l]).to_bits() != s.to_bits() {
            continue; // stale: the link's share grew since this entry
        }
        for &f in &members[start[l]..start[l + 1]] {
            if fixed[f] {
                continue;
            }
            fixed[f] = true;
            rate[f] = s;
            let (src, dst) = flows[f];
            let other = if l < n { n + dst } else { src };
            cap[other] -= s;
            left[other] -= 1;
            if left[other] > 0 {
                heap.push(Reverse((Share(share(cap[other], left[other])), other)));
            }
        }
        left[l] = 0;
    }
    rate
}

/// A copy's bytes in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// Index (cid - 1) of the sending and the receiving chunk.
    pub src: usize,
    pub dst: usize,
    pub bytes: u64,
    pub remaining: f64,
    /// Bytes per second, from the last allocation.
    pub rate: f64,
    /// The policy's name for the copy.
    pub tag: u64,
    pub started_us: u64,
}

/// What the links did over a run, per chunk (index cid - 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkStats {
    pub bytes_in: Vec<f64>,
    pub bytes_out: Vec<f64>,
    /// Time with at least one flow in / out.
    pub busy_in_us: Vec<u64>,
    pub busy_out_us: Vec<u64>,
    pub cur_in: Vec<u32>,
    pub cur_out: Vec<u32>,
    /// Most flows at once into / out of the chunk.
    pub peak_in: Vec<u32>,
    pub peak_out: Vec<u32>,
    /// Most flows at once in the whole cluster.
    pub peak_flows: usize,
}

/// The links and the flows on them.
pub struct Network {
    out_cap: Vec<f64>,
    in_cap: Vec<f64>,
    flows: Vec<Flow>,
    /// Flows changed since the last allocation.
    dirty: bool,
    pub stats: LinkStats,
}

impl Network {
    pub fn new(out_cap: Vec<f64>, in_cap: Vec<f64>) -> Network {
        let n = out_cap.len();
        Network {
            out_cap,
            in_cap,
            flows: Vec::new(),
            dirty: false,
            stats: LinkStats {
                bytes_in: vec![0.0; n],
                bytes_out: vec![0.0; n],
                busy_in_us: vec![0; n],
                busy_out_us: vec![0; n],
                cur_in: vec![0; n],
                cur_out: vec![0; n],
                peak_in: vec![0; n],
                peak_out: vec![0; n],
                peak_flows: 0,
            },
        }
    }

    pub fn flows(&self) -> &[Flow] {
        &self.flows
    }

    pub fn start(&mut self, src: usize, dst: usize, bytes: u64, tag: u64, now_us: u64) {
        let s = &mut self.stats;
        s.cur_out[src] += 1;
        s.cur_in[dst] += 1;
        s.peak_out[src] = s.peak_out[src].max(s.cur_out[src]);
        s.peak_in[dst] = s.peak_in[dst].max(s.cur_in[dst]);
        self.flows.push(Flow {
            src,
            dst,
            bytes,
            remaining: bytes as f64,
            rate: 0.0,
            tag,
            started_us: now_us,
        });
        s.peak_flows = s.peak_flows.max(self.flows.len());
        self.dirty = true;
    }

    /// Stops a flow without completing it (a copy meta dropped).
    pub fn cancel(&mut self, tag: u64) -> Option<Flow> {
        let i = self.flows.iter().position(|f| f.tag == tag)?;
        let f = self.flows.swap_remove(i);
        self.stats.cur_out[f.src] -= 1;
        self.stats.cur_in[f.dst] -= 1;
        self.dirty = true;
        Some(f)
    }

    fn allocate(&mut self) {
        if !self.dirty {
            return;
        }
        let pairs: Vec<(usize, usize)> = self.flows.iter().map(|f| (f.src, f.dst)).collect();
        let rates = max_min_fair(&self.out_cap, &self.in_cap, &pairs);
        for (f, r) in self.flows.iter_mut().zip(rates) {
            f.rate = r;
        }
        self.dirty = false;
    }

    /// When the next flow completes (whole microseconds, rounded up).
    pub fn next_completion_us(&mut self, now_us: u64) -> Option<u64> {
        self.allocate();
        self.flows
            .iter()
            .filter(|f| f.rate > 0.0)
            .map(|f| now_us + ((f.remaining / f.rate * 1e6).ceil() as u64).max(1))
            .min()
    }

    /// Moves time from `now_us` to `to_us` at the current rates; the flows
    /// that complete are appended to `done`.
    pub fn advance(&mut self, now_us: u64, to_us: u64, done: &mut Vec<Flow>) {
        self.allocate();
        let dt_us = to_us.saturating_sub(now_us);
        if dt_us == 0 {
            return;
        }
        let dt = dt_us as f64 / 1e6;
        let s = &mut self.stats;
        for c in 0..s.cur_in.len() {
            if s.cur_in[c] > 0 {
                s.busy_in_us[c] += dt_us;
            }
            if s.cur_out[c] > 0 {
                s.busy_out_us[c] += dt_us;
            }
        }
        let mut i = 0;
        while i < self.flows.len() {
            let f = &mut self.flows[i];
            let moved = (f.rate * dt).min(f.remaining);
            f.remaining -= moved;
            s.bytes_in[f.dst] += moved;
            s.bytes_out[f.src] += moved;
            // Less than a microsecond of work (or a byte) left: done now;
            // completion times are rounded up to whole microseconds.
            if f.remaining <= f.rate * 1e-6 || f.remaining < 1.0 {
                s.bytes_in[f.dst] += f.remaining;
                s.bytes_out[f.src] += f.remaining;
                let f = self.flows.swap_remove(i);
                s.cur_out[f.src] -= 1;
                s.cur_in[f.dst] -= 1;
                done.push(f);
                self.dirty = true;
            } else {
                i += 1;
            }
        }
    }
}
