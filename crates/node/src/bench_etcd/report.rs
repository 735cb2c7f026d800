//! The benches' tables and `--json` output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::load::{percentile, Measured};
use super::profile::Profile;
use super::SystemName;

/// Client count the write-throughput goal is judged at.
pub const GOAL_CLIENTS: usize = 64;
/// Cairn's writes/s must be at least this many times etcd's there.
pub const GOAL_RATIO: f64 = 2.0;

pub struct Compare {
    pub setup: Vec<String>,
    pub payload_bytes: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub retry: String,
    pub order: Vec<SystemName>,
    pub runs: BTreeMap<SystemName, Vec<Measured>>,
}

fn ms(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Cairn/etcd at one client count: (writes/s ratio, p99 ratio).
struct Ratio {
    clients: usize,
    throughput: f64,
    p99: f64,
    cairn_p99_ms: f64,
    etcd_p99_ms: f64,
}

impl Compare {
    fn ratios(&self) -> Vec<Ratio> {
        let (Some(c), Some(e)) = (
            self.runs.get(&SystemName::Cairn),
            self.runs.get(&SystemName::Etcd),
        ) else {
            return vec![];
        };
        c.iter()
            .zip(e)
            .filter(|(a, b)| a.clients == b.clients)
            .map(|(a, b)| Ratio {
                clients: a.clients,
                throughput: if b.writes_per_s() > 0.0 {
                    a.writes_per_s() / b.writes_per_s()
                } else {
                    f64::INFINITY
                },
                p99: if b.pct_ms(0.99) > 0.0 {
                    a.pct_ms(0.99) / b.pct_ms(0.99)
                } else {
                    f64::INFINITY
                },
                cairn_p99_ms: a.pct_ms(0.99),
                etcd_p99_ms: b.pct_ms(0.99),
            })
            .collect()
    }

    /// (met, sentence) for the goal, if both systems ran at 64 clients.
    fn goal(&self) -> Option<(bool, String, f64)> {
        let r = self
            .ratios()
            .into_iter()
            .find(|r| r.clients == GOAL_CLIENTS)?;
        let met = r.throughput >= GOAL_RATIO && r.cairn_p99_ms <= r.etcd_p99_ms;
        let what = format!(
            "goal at {GOAL_CLIENTS} clients: Cairn >= {GOAL_RATIO}x etcd's durable writes/s with p99 no worse: {} (writes/s {:.2}x; p99 {:.2} ms vs {:.2} ms, {:.2}x)",
            if met { "MET" } else { "MISSED" },
            r.throughput,
            r.cairn_p99_ms,
            r.etcd_p99_ms,
            r.p99
        );
        Some((met, what, r.throughput))
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "cairn bench compare-etcd");
        for l in &self.setup {
            let _ = writeln!(o, "  {l}");
        }
        let _ = writeln!(
            o,
            "  write: {} bytes per write: Cairn an UpdateExtent CAS (Meta.Propose, one extent per client, on 3 simulated chunks keeping their sessions; recover and migrate paused); etcd a KV.Put of those same bytes (one key per client)",
            self.payload_bytes
        );
        let _ = writeln!(
            o,
            "  load:  one Rust load generator for both, closed loop (each client one write at a time), {} HTTP/2 connection(s) per member per system shared by all clients; {} warm-up, {} measured per point",
            self.connections,
            ms(self.warmup),
            ms(self.duration)
        );
        let _ = writeln!(o, "  retry: {}", self.retry);
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<6} {:>7} {:>10} {:>9} {:>9} {:>9} {:>7} {:>11} {:>11}",
            "SYSTEM",
            "CLIENTS",
            "WRITES/S",
            "P50 MS",
            "P99 MS",
            "P999 MS",
            "ERRORS",
            "SERVER CPU",
            "CLIENT CPU"
        );
        for s in &self.order {
            for m in self.runs.get(s).into_iter().flatten() {
                let _ = writeln!(
                    o,
                    "{:<6} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>10.0}% {:>10.0}%",
                    s.as_str(),
                    m.clients,
                    m.writes_per_s(),
                    m.pct_ms(0.50),
                    m.pct_ms(0.99),
                    m.pct_ms(0.999),
                    m.errors,
                    m.server_cpu_cores * 100.0,
                    m.client_cpu_cores * 100.0
                );
            }
        }
        let profiled: Vec<(SystemName, &Measured, &Profile)> = self
            .order
            .iter()
            .flat_map(|s| {
                self.runs
                    .get(s)
                    .into_iter()
                    .flatten()
                    .filter_map(move |m| m.profile.as_ref().map(|p| (*s, m, p)))
            })
            .collect();
        if !profiled.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "where the time goes (each system's /metrics over the measured window; leader = the member leading then):"
            );
            let _ = writeln!(
                o,
                "{:<6} {:>7} {:>13} {:>9} {:>11} {:>10} {:>13} {:>9} {:>14} {:>9}",
                "SYSTEM",
                "CLIENTS",
                "LEADER SYNC/S",
                "MS/SYNC",
                "SYNC BUSY",
                "ENTRIES/S",
                "WRITES/ENTRY",
                "WRITES/SYNC",
                "FOLLOWER SYNC/S",
                "MS/SYNC"
            );
            for (s, m, p) in &profiled {
                let per = |d: f64| if d > 0.0 { m.writes_per_s() / d } else { 0.0 };
                let _ = writeln!(
                    o,
                    "{:<6} {:>7} {:>13.0} {:>9.2} {:>10.0}% {:>10.0} {:>13.1} {:>9.1} {:>14.0} {:>9.2}",
                    s.as_str(),
                    m.clients,
                    p.leader_syncs_per_s,
                    p.leader_sync_ms,
                    p.leader_sync_busy * 100.0,
                    p.entries_per_s,
                    p.cmds_per_entry.unwrap_or_else(|| per(p.entries_per_s)),
                    per(p.leader_syncs_per_s),
                    p.follower_syncs_per_s,
                    p.follower_sync_ms
                );
            }
            let _ = writeln!(
                o,
                "(SYNC: Cairn's log append, submission to fsync (cairn_raft_append_seconds); etcd's WAL fsync (etcd_disk_wal_fsync_duration_seconds). SYNC BUSY: the leader's time in them. Cairn's WRITES/ENTRY: commands its leader packed per entry (cairn_raft_cmds_per_entry); etcd: one Put per entry)"
            );
        }
        let ratios = self.ratios();
        if !ratios.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "{:>7} {:>20} {:>15}",
                "CLIENTS", "CAIRN/ETCD WRITES/S", "CAIRN/ETCD P99"
            );
            for r in &ratios {
                let _ = writeln!(
                    o,
                    "{:>7} {:>19.2}x {:>14.2}x",
                    r.clients, r.throughput, r.p99
                );
            }
        }
        let _ = writeln!(o);
        match self.goal() {
            Some((_, what, _)) => {
                let _ = writeln!(o, "{what}");
            }
            None => {
                let _ = writeln!(
                    o,
                    "goal at {GOAL_CLIENTS} clients: not judged (needs both systems and {GOAL_CLIENTS} in --clients)"
                );
            }
        }
        let _ = writeln!(
            o,
            "(SERVER CPU: the 3 members' user+system CPU during the measured window, CLIENT CPU the bench process's, 100% = one core. Cairn's simulated chunks (keeping their sessions alive) run inside the bench process: Cairn's CLIENT CPU includes them besides the load generator, and its SERVER CPU includes the members' handling of that session traffic; etcd has neither. Latencies from the first send to the acknowledgement, retries included)"
        );
        o
    }

    pub fn json(&self) -> Value {
        let mut systems = serde_json::Map::new();
        for s in &self.order {
            let points: Vec<Value> = self
                .runs
                .get(s)
                .into_iter()
                .flatten()
                .map(|m| {
                    json!({
                        "clients": m.clients,
                        "writes": m.writes,
                        "writes_per_s": round(m.writes_per_s(), 1),
                        "p50_ms": round(m.pct_ms(0.50), 3),
                        "p99_ms": round(m.pct_ms(0.99), 3),
                        "p999_ms": round(m.pct_ms(0.999), 3),
                        "errors": m.errors,
                        "error_reasons": m.error_reasons,
                        "server_cpu_cores": round(m.server_cpu_cores, 3),
                        "client_cpu_cores": round(m.client_cpu_cores, 3),
                        "profile": m.profile.as_ref().map(|p| json!({
                            "leader_syncs_per_s": round(p.leader_syncs_per_s, 1),
                            "leader_sync_ms": round(p.leader_sync_ms, 3),
                            "leader_sync_busy": round(p.leader_sync_busy, 3),
                            "entries_per_s": round(p.entries_per_s, 1),
                            "cmds_per_entry": p.cmds_per_entry.map(|v| round(v, 2)),
                            "follower_syncs_per_s": round(p.follower_syncs_per_s, 1),
                            "follower_sync_ms": round(p.follower_sync_ms, 3),
                            "backend_commits_per_s": p.backend_commits_per_s.map(|v| round(v, 1)),
                            "backend_commit_ms": p.backend_commit_ms.map(|v| round(v, 3)),
                        })),
                    })
                })
                .collect();
            systems.insert(s.as_str().to_string(), json!({ "points": points }));
        }
        let ratios: Vec<Value> = self
            .ratios()
            .iter()
            .map(|r| {
                json!({
                    "clients": r.clients,
                    "writes_per_s": round(r.throughput, 3),
                    "p99": round(r.p99, 3),
                })
            })
            .collect();
        json!({
            "bench": "compare-etcd",
            "setup": self.setup,
            "payload_bytes": self.payload_bytes,
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.duration.as_secs_f64(),
            "connections_per_member": self.connections,
            "retry": self.retry,
            "systems": systems,
            "ratios": ratios,
            "goal": self.goal().map(|(met, what, ratio)| json!({
                "clients": GOAL_CLIENTS, "met": met, "writes_per_s_ratio": round(ratio, 3), "text": what,
            })),
        })
    }
}

/// Cairn's chunk sessions during the failover run.
#[derive(Clone, Debug, Default)]
pub struct Sessions {
    pub chunks: usize,
    pub lease_ms: Option<u64>,
    /// Chunks told their session was over.
    pub lost: usize,
    /// Registrations beyond each chunk's first.
    pub reregistered: usize,
    /// "session expired" lines in the members' logs.
    pub logged: usize,
    /// The highest cairn_sessions_expired_total of the members at the end
    /// (every member applies each expiry; a restarted member's counter
    /// starts again: a lower bound), if any member answered the scrape.
    pub metric: Option<f64>,
}

impl Sessions {
    /// The expiries: the most any of the sources saw.
    pub fn expiries(&self) -> usize {
        let metric = self.metric.map_or(0, |m| m.max(0.0) as usize);
        self.lost
            .max(self.reregistered)
            .max(self.logged)
            .max(metric)
    }
}

#[derive(Clone, Debug, Default)]
pub struct FailoverRun {
    /// Kill to first acknowledged write on the new leader, per kill.
    pub failover_ms: Vec<f64>,
    /// Kills with no acknowledged write within --max-failover.
    pub no_ack: usize,
    pub writes: u64,
    pub errors: u64,
    pub error_reasons: BTreeMap<String, u64>,
    pub sessions: Option<Sessions>,
}

impl FailoverRun {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.failover_ms.clone();
        v.sort_by(f64::total_cmp);
        v
    }
    pub fn median(&self) -> f64 {
        percentile(&self.sorted(), 0.5)
    }
    pub fn p99(&self) -> f64 {
        percentile(&self.sorted(), 0.99)
    }
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(0.0)
    }
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(0.0)
    }
}

pub struct Failover {
    pub setup: Vec<String>,
    /// When each system's followers campaign (etcd's --election-timeout
    /// against Cairn's), stated next to the goal; None without etcd.
    pub election: Option<String>,
    pub clients: usize,
    pub kills: usize,
    pub payload_bytes: usize,
    pub retry: String,
    pub order: Vec<SystemName>,
    pub runs: BTreeMap<SystemName, FailoverRun>,
}

impl Failover {
    fn goal(&self) -> Option<(bool, String)> {
        let c = self.runs.get(&SystemName::Cairn)?;
        let e = self.runs.get(&SystemName::Etcd)?;
        let expiries = c.sessions.as_ref().map_or(0, Sessions::expiries);
        let faster = c.no_ack == 0 && !c.failover_ms.is_empty() && c.median() < e.median();
        let met = faster && expiries == 0;
        let ratio = if e.median() > 0.0 {
            c.median() / e.median()
        } else {
            f64::INFINITY
        };
        Some((
            met,
            format!(
                "goal: Cairn's median kill-to-first-ack below etcd's, with 0 session expiries: {} (median {:.0} ms vs {:.0} ms, {ratio:.2}x; session expiries {expiries})",
                if met { "MET" } else { "MISSED" },
                c.median(),
                e.median()
            ),
        ))
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "cairn bench failover");
        for l in &self.setup {
            let _ = writeln!(o, "  {l}");
        }
        let _ = writeln!(
            o,
            "  load:  {} closed-loop clients writing {} bytes per write (Cairn: UpdateExtent CAS; etcd: KV.Put), one HTTP/2 connection per member per system",
            self.clients, self.payload_bytes
        );
        let _ = writeln!(o, "  retry: {}", self.retry);
        let _ = writeln!(
            o,
            "  kill:  {} x kill -9 of the member reporting itself leader; time from the kill to the first write sent after it and acknowledged by another member (etcd: also applied in a later term); the killed member then restarts from its data dir and catches up before the next kill",
            self.kills
        );
        if let Some(s) = self
            .runs
            .get(&SystemName::Cairn)
            .and_then(|r| r.sessions.as_ref())
        {
            let _ = writeln!(
                o,
                "  sessions: {} simulated chunks keeping Cairn sessions alive throughout (lease {}; recover and migrate paused: the writes flip a replica's alive bit); expiries counted from the chunks' view (lost {}, re-registered {}), the members' logs ({}) and cairn_sessions_expired_total ({})",
                s.chunks,
                s.lease_ms.map_or("unknown".into(), |l| format!("{l} ms")),
                s.lost,
                s.reregistered,
                s.logged,
                s.metric.map_or("not scraped".into(), |m| format!("{m:.0}"))
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<6} {:>5} {:>10} {:>8} {:>8} {:>8} {:>6} {:>9} {:>8} {:>7}",
            "SYSTEM",
            "KILLS",
            "MEDIAN MS",
            "P99 MS",
            "MIN MS",
            "MAX MS",
            "NO-ACK",
            "EXPIRIES",
            "WRITES",
            "ERRORS"
        );
        for s in &self.order {
            let Some(r) = self.runs.get(s) else { continue };
            let _ = writeln!(
                o,
                "{:<6} {:>5} {:>10.0} {:>8.0} {:>8.0} {:>8.0} {:>6} {:>9} {:>8} {:>7}",
                s.as_str(),
                r.failover_ms.len() + r.no_ack,
                r.median(),
                r.p99(),
                r.min(),
                r.max(),
                r.no_ack,
                r.sessions
                    .as_ref()
                    .map_or("-".to_string(), |x| x.expiries().to_string()),
                r.writes,
                r.errors
            );
        }
        let _ = writeln!(o);
        match self.goal() {
            Some((_, what)) => {
                let _ = writeln!(o, "{what}");
            }
            None => {
                let _ = writeln!(o, "goal: not judged (needs both systems)");
            }
        }
        if let Some(e) = &self.election {
            let _ = writeln!(o, "{e}");
        }
        let _ = writeln!(
            o,
            "(p99 is nearest-rank: with 20 kills it is the slowest one; ERRORS: writes given up or refused. etcd's Put is idempotent: a Put resent after its reply was lost in a failover just succeeds again; a Cairn CAS resent after its first attempt had committed and the reply was lost is refused (GenerationMismatch), counts as an error, and its client needs one more write for an ack: a small bias against Cairn)"
        );
        o
    }

    pub fn json(&self) -> Value {
        let mut systems = serde_json::Map::new();
        for s in &self.order {
            let Some(r) = self.runs.get(s) else { continue };
            systems.insert(
                s.as_str().to_string(),
                json!({
                    "kills": r.failover_ms.len() + r.no_ack,
                    "failover_ms": r.failover_ms.iter().map(|v| round(*v, 1)).collect::<Vec<_>>(),
                    "median_ms": round(r.median(), 1),
                    "p99_ms": round(r.p99(), 1),
                    "min_ms": round(r.min(), 1),
                    "max_ms": round(r.max(), 1),
                    "no_ack": r.no_ack,
                    "writes": r.writes,
                    "errors": r.errors,
                    "error_reasons": r.error_reasons,
                    "session_expiries": r.sessions.as_ref().map(Sessions::expiries),
                    "sessions": r.sessions.as_ref().map(|x| json!({
                        "chunks": x.chunks, "lease_ms": x.lease_ms, "lost": x.lost,
                        "reregistered": x.reregistered, "logged": x.logged, "metric": x.metric,
                    })),
                }),
            );
        }
        json!({
            "bench": "failover",
            "setup": self.setup,
            "election": self.election,
            "clients": self.clients,
            "payload_bytes": self.payload_bytes,
            "retry": self.retry,
            "systems": systems,
            "goal": self.goal().map(|(met, what)| json!({ "met": met, "text": what })),
        })
    }
}
