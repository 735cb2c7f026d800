//! What a run reports: the bound, each policy's makespan and figures, the
//! goals of issue 9, and the table `cairn sim recover` prints.

use std::fmt::Write as _;

use cairn_state::Cid;

use super::bound::Bound;
use super::config::{SimConfig, MIB};
use super::engine::{CopyKind, Outcome};

/// The policies compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyName {
    Cairn,
    Pd,
    Hdfs,
    Ceph,
}

impl PolicyName {
    pub const ALL: [PolicyName; 4] = [
        PolicyName::Cairn,
        PolicyName::Pd,
        PolicyName::Hdfs,
        PolicyName::Ceph,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PolicyName::Cairn => "Cairn",
            PolicyName::Pd => "TiKV PD",
            PolicyName::Hdfs => "HDFS",
            PolicyName::Ceph => "Ceph",
        }
    }

    /// The defaults the emulation runs with, for the table's footnote.
    pub fn settings(self) -> &'static str {
        match self {
            PolicyName::Cairn => {
                "real Scheduler, static slots 8/8 recover src/dst per chunk, runner 250 ms / 20 ms"
            }
            PolicyName::Pd => "store limit 15 add-peer/min/store, replica-schedule-limit 64",
            PolicyName::Hdfs => "monitor 3 s x 2 x live DNs, max-streams 2 (hard 4), heartbeat 3 s",
            PolicyName::Ceph => "osd_max_backfills 1 (local + remote), CRUSH-fixed targets",
        }
    }
}

/// One chunk's links over a policy's run.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkLinks {
    pub cid: Cid,
    pub slow: bool,
    pub copies_in: u64,
    pub bytes_in: f64,
    pub bytes_out: f64,
    /// Bytes in (out) over what the link could carry from detection to the
    /// makespan.
    pub util_in: f64,
    pub util_out: f64,
    pub peak_in: u32,
    pub peak_out: u32,
    /// When its last incoming copy completed, µs.
    pub last_in_us: u64,
}

/// One policy's run.
#[derive(Clone, Debug)]
pub struct PolicyResult {
    pub policy: PolicyName,
    /// Recovery is over: every extent at full count, spread as the rack
    /// rule allows. None: some extent was still less spread an hour after
    /// the last replica was restored.
    pub makespan_us: Option<u64>,
    /// The last missing replica restored, wherever it went.
    pub restored_us: u64,
    /// Extents left less spread than the rule allows.
    pub left_unsafe: u64,
    pub copies_started: u64,
    pub migrations: u64,
    pub peak_concurrent: usize,
    /// Copies into a destination the rack rule would not allow.
    pub unsafe_copies: u64,
    pub copies_into_slow: u64,
    /// The first and the last copy started (the ramp-up after detection,
    /// and the tail after the last one).
    pub first_start_us: u64,
    pub last_start_us: u64,
    /// Copies in flight on average from the first start to the makespan.
    pub mean_in_flight: f64,
    /// Of the chunks that sent anything: the mean share of that span
    /// their outbound link carried at least one copy.
    pub send_busy: f64,
    pub links: Vec<ChunkLinks>,
    pub counters: Vec<(&'static str, u64)>,
    /// Every copy, for the tests and the diagnosis.
    pub outcome: Outcome,
}

impl PolicyResult {
    pub fn from_outcome(
        policy: PolicyName,
        o: Outcome,
        in_bps: &[f64],
        out_bps: &[f64],
        slow: &[Cid],
        detection_us: u64,
    ) -> PolicyResult {
        let end = o.safe_us.unwrap_or(o.restored_us);
        let span = end.saturating_sub(detection_us).max(1) as f64 / 1e6;
        let mut last_in = vec![0u64; in_bps.len()];
        for c in &o.copies {
            if let Some(e) = c.end_us {
                let i = c.dst as usize - 1;
                last_in[i] = last_in[i].max(e);
            }
        }
        let first = o.copies.iter().map(|c| c.start_us).min().unwrap_or(0);
        let active = end.saturating_sub(first).max(1);
        let in_flight: u64 = o
            .copies
            .iter()
            .map(|c| c.end_us.unwrap_or(end).min(end).saturating_sub(c.start_us))
            .sum();
        let senders: Vec<u64> = o
            .links
            .busy_out_us
            .iter()
            .copied()
            .filter(|&b| b > 0)
            .collect();
        let send_busy = senders
            .iter()
            .map(|&b| b as f64 / active as f64)
            .sum::<f64>()
            / senders.len().max(1) as f64;
        let links = (0..in_bps.len())
            .map(|i| {
                let cid = i as Cid + 1;
                ChunkLinks {
                    cid,
                    slow: slow.contains(&cid),
                    copies_in: o.copies_in[i],
                    bytes_in: o.links.bytes_in[i],
                    bytes_out: o.links.bytes_out[i],
                    util_in: o.links.bytes_in[i] / (in_bps[i] * span),
                    util_out: o.links.bytes_out[i] / (out_bps[i] * span),
                    peak_in: o.links.peak_in[i],
                    peak_out: o.links.peak_out[i],
                    last_in_us: last_in[i],
                }
            })
            .collect();
        PolicyResult {
            policy,
            makespan_us: o.safe_us,
            restored_us: o.restored_us,
            left_unsafe: o.left_unsafe,
            copies_started: o.started(),
            migrations: o
                .copies
                .iter()
                .filter(|c| matches!(c.kind, CopyKind::Migrate { .. }))
                .count() as u64,
            peak_concurrent: o.links.peak_flows,
            unsafe_copies: o.unsafe_copies(),
            copies_into_slow: slow
                .iter()
                .map(|&c| o.copies_in.get(c as usize - 1).copied().unwrap_or(0))
                .sum(),
            first_start_us: first,
            mean_in_flight: in_flight as f64 / active as f64,
            send_busy,
            last_start_us: o.copies.iter().map(|c| c.start_us).max().unwrap_or(0),
            links,
            counters: o.counters.clone(),
            outcome: o,
        }
    }
}

/// Issue 9's goal for Cairn in this run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Goal {
    /// Cairn's makespan over T_LB.
    pub ratio: f64,
    /// 1.15 without a slow disk, 1.3 with one.
    pub limit: f64,
    pub within_limit: bool,
    /// Cairn's makespan is below every emulated peer's.
    pub beats_peers: bool,
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct Report {
    pub cfg: SimConfig,
    pub racks: usize,
    pub failed: Vec<Cid>,
    pub slow: Vec<Cid>,
    pub lost_extents: u64,
    pub missing_replicas: u64,
    pub unrecoverable: u64,
    pub bound: Bound,
    pub results: Vec<PolicyResult>,
}

fn secs(us: u64) -> String {
    format!("{:.2} s", us as f64 / 1e6)
}

impl Report {
    pub fn result(&self, p: PolicyName) -> Option<&PolicyResult> {
        self.results.iter().find(|r| r.policy == p)
    }

    /// Makespan over T_LB (None: never safe within the grace).
    pub fn ratio_to_bound(&self, r: &PolicyResult) -> Option<f64> {
        r.makespan_us
            .map(|m| m as f64 / self.bound.t_lb_us.max(1) as f64)
    }

    /// None when nothing was lost (or Cairn did not run).
    pub fn goal(&self) -> Option<Goal> {
        if self.missing_replicas == 0 {
            return None;
        }
        let cairn = self.result(PolicyName::Cairn)?;
        let ratio = self.ratio_to_bound(cairn).unwrap_or(f64::INFINITY);
        let limit = if self.cfg.slow_disks > 0 { 1.3 } else { 1.15 };
        Some(Goal {
            ratio,
            limit,
            within_limit: ratio <= limit,
            beats_peers: self
                .results
                .iter()
                .filter(|r| r.policy != PolicyName::Cairn)
                .all(|r| match (cairn.makespan_us, r.makespan_us) {
                    (Some(c), Some(p)) => c < p,
                    (Some(_), None) => true,
                    (None, _) => false,
                }),
        })
    }

    /// The table `cairn sim recover` prints.
    pub fn table(&self) -> String {
        let c = &self.cfg;
        let b = &self.bound;
        let mut s = String::new();
        let slow = if self.slow.is_empty() {
            "none".to_string()
        } else {
            format!(
                "chunk {:?} at 1/{} of the bandwidth",
                self.slow, c.slow_factor
            )
        };
        let _ = writeln!(
            s,
            "{} chunks in {} racks, {} extents x 3 replicas of 256 MiB, failed: chunk {:?}, \
             links {} MiB/s in and out per chunk, slow disk: {slow}, seed {}",
            c.chunks, self.racks, c.extents, self.failed, c.bandwidth_mib_s, c.seed
        );
        let _ = writeln!(
            s,
            "lost: {} replicas of {} extents ({:.1} GiB){}",
            self.missing_replicas,
            self.lost_extents,
            b.lost_bytes as f64 / (1024.0 * MIB as f64),
            if self.unrecoverable > 0 {
                format!(", {} extents lost for good", self.unrecoverable)
            } else {
                String::new()
            }
        );
        if self.missing_replicas == 0 {
            let _ = writeln!(s, "nothing lost: no policy has anything to do");
            return s;
        }
        let _ = writeln!(
            s,
            "detection: {} (the {} ms lease: the leader expires the silent session, then plans; \
             the same for every policy)",
            secs(b.detection_us),
            c.lease_ms
        );
        let _ = writeln!(
            s,
            "lower bound T_LB = {} = {} detection + {} transfer (best split of the lost bytes \
             over sources' outbound and allowed destinations' inbound links)",
            secs(b.t_lb_us),
            secs(b.detection_us),
            secs(b.transfer_us)
        );
        let _ = writeln!(s);
        let cairn = self.result(PolicyName::Cairn).and_then(|r| r.makespan_us);
        let _ = writeln!(
            s,
            "{:<9} {:>11} {:>7} {:>7} {:>11} {:>7} {:>6}  settings",
            "policy", "makespan", "/T_LB", "/Cairn", "restored", "copies", "peak"
        );
        for r in &self.results {
            let vs_cairn = match (r.makespan_us, cairn) {
                (Some(m), Some(c)) => format!("{:.3}", m as f64 / c.max(1) as f64),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "{:<9} {:>11} {:>7} {:>7} {:>11} {:>7} {:>6}  {}",
                r.policy.label(),
                r.makespan_us.map_or_else(|| "not safe".into(), secs),
                self.ratio_to_bound(r)
                    .map_or_else(|| "-".into(), |x| format!("{x:.3}")),
                vs_cairn,
                secs(r.restored_us),
                r.copies_started,
                r.peak_concurrent,
                r.policy.settings()
            );
        }
        let _ = writeln!(
            s,
            "makespan: every extent back at 3 replicas in 3 racks; restored: the last missing replica copied, wherever it went; peak: most copies at once"
        );
        if let Some(g) = self.goal() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "goal: Cairn <= {:.2} x T_LB: {:.3} ({}); better than every peer: {}",
                g.limit,
                g.ratio,
                if g.within_limit { "met" } else { "MISSED" },
                if g.beats_peers { "yes" } else { "NO" }
            );
        }
        if let Some(r) = self.result(PolicyName::Cairn) {
            if r.unsafe_copies > 0 || r.migrations > 0 {
                let _ = writeln!(
                    s,
                    "Cairn: {} recover copies went to a rack already holding a replica (the planner takes the \
                     best destination with a free slot); {} topology-safety migrations moved them{}",
                    r.unsafe_copies,
                    r.migrations,
                    if r.left_unsafe > 0 {
                        format!(", {} extents still less spread an hour later", r.left_unsafe)
                    } else {
                        String::new()
                    }
                );
            }
            if !self.slow.is_empty() {
                let _ = writeln!(
                    s,
                    "copies into the slow disk: {}",
                    self.results
                        .iter()
                        .map(|r| format!("{} {}", r.policy.label(), r.copies_into_slow))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        s
    }

    /// Per-chunk link figures of one policy (the `--links` view): which
    /// link idled, which one finished last.
    pub fn links_table(&self, p: PolicyName) -> String {
        let mut s = String::new();
        let Some(r) = self.result(p) else {
            return s;
        };
        let _ = writeln!(
            s,
            "{}: per chunk, from detection to its makespan {}",
            p.label(),
            r.makespan_us.map_or_else(|| "(not safe)".into(), secs)
        );
        let _ = writeln!(
            s,
            "{:>5} {:>5} {:>8} {:>9} {:>9} {:>8} {:>8} {:>12}",
            "cid", "slow", "copies", "in util", "out util", "peak in", "peak out", "last in at"
        );
        for l in &r.links {
            if self.failed.contains(&l.cid) {
                continue;
            }
            let _ = writeln!(
                s,
                "{:>5} {:>5} {:>8} {:>8.1}% {:>8.1}% {:>8} {:>8} {:>12}",
                l.cid,
                if l.slow { "yes" } else { "" },
                l.copies_in,
                l.util_in * 100.0,
                l.util_out * 100.0,
                l.peak_in,
                l.peak_out,
                secs(l.last_in_us)
            );
        }
        let _ = writeln!(
            s,
            "  first copy started at {}, last at {}; last replica restored at {}",
            secs(r.first_start_us),
            secs(r.last_start_us),
            secs(r.restored_us)
        );
        let _ = writeln!(
            s,
            "  copies in flight: {:.1} on average, {} at most; sending links busy {:.1}% of the time",
            r.mean_in_flight,
            r.peak_concurrent,
            r.send_busy * 100.0
        );
        for (k, v) in &r.counters {
            let _ = writeln!(s, "  {k}: {v}");
        }
        s
    }
}

/// The sweep's table: one row per cluster size.
pub fn sweep_table(reports: &[Report]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{:>6} {:>5} {:>9} {:>10}",
        "chunks", "racks", "extents", "T_LB"
    );
    for p in PolicyName::ALL {
        let _ = write!(s, " {:>20}", p.label());
    }
    let _ = writeln!(s);
    for r in reports {
        let _ = write!(
            s,
            "{:>6} {:>5} {:>9} {:>10}",
            r.cfg.chunks,
            r.racks,
            r.cfg.extents,
            secs(r.bound.t_lb_us)
        );
        for p in PolicyName::ALL {
            let cell = match r.result(p) {
                Some(x) => match (x.makespan_us, r.ratio_to_bound(x)) {
                    (Some(m), Some(q)) => format!("{} ({q:.2}x)", secs(m)),
                    _ => "not safe".into(),
                },
                None => "-".into(),
            };
            let _ = write!(s, " {cell:>20}");
        }
        let _ = writeln!(s);
    }
    s
}
