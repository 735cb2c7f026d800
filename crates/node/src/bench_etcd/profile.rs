//! Where the time goes: each system's own /metrics scraped at the edges of
//! a measured window (Cairn members with `--metrics-addr`; etcd serves
//! /metrics on its client port), turned into fsync and batching figures for
//! the leader and the followers.

use super::procs::{metric_sum, scrape_metrics};

/// Every member's /metrics text (None: not answering).
pub async fn snapshot(addrs: &[String]) -> Vec<Option<String>> {
    futures::future::join_all(addrs.iter().map(|a| scrape_metrics(a))).await
}

/// The series each system exposes for the same figures.
struct Series {
    is_leader: &'static str,
    /// Histogram of the log fsync (Cairn: append to fsync; etcd: WAL fsync).
    sync: &'static str,
    /// Counter of entries the leader committed (etcd) / proposed (Cairn).
    entries: &'static str,
}

const CAIRN: Series = Series {
    is_leader: "cairn_raft_is_leader",
    sync: "cairn_raft_append_seconds",
    entries: "cairn_raft_cmds_per_entry_count",
};

const ETCD: Series = Series {
    is_leader: "etcd_server_is_leader",
    sync: "etcd_disk_wal_fsync_duration_seconds",
    entries: "etcd_server_proposals_committed_total",
};

#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Log fsyncs per second on the leader.
    pub leader_syncs_per_s: f64,
    /// Mean time of one leader log append/fsync, ms.
    pub leader_sync_ms: f64,
    /// Share of the window the leader spent in log fsyncs (1.0 = always).
    pub leader_sync_busy: f64,
    /// Raft entries per second the leader committed (Cairn: proposed).
    pub entries_per_s: f64,
    /// Followers' log fsyncs per second (mean of the followers).
    pub follower_syncs_per_s: f64,
    pub follower_sync_ms: f64,
    /// Cairn: commands per entry (the leader's batcher).
    pub cmds_per_entry: Option<f64>,
    /// etcd: backend (bbolt) commits per second and mean ms, leader.
    pub backend_commits_per_s: Option<f64>,
    pub backend_commit_ms: Option<f64>,
}

fn delta(before: &str, after: &str, name: &str) -> Option<f64> {
    Some(metric_sum(after, name)? - metric_sum(before, name).unwrap_or(0.0))
}

/// (count/s, mean ms, busy share) of a histogram over the window.
fn hist(before: &str, after: &str, name: &str, secs: f64) -> Option<(f64, f64, f64)> {
    let n = delta(before, after, &format!("{name}_count"))?;
    let s = delta(before, after, &format!("{name}_sum"))?;
    let mean_ms = if n > 0.0 { s / n * 1000.0 } else { 0.0 };
    Some((n / secs, mean_ms, s / secs))
}

/// The figures for `system` ("cairn" or "etcd") over a window of `secs`.
pub fn compute(
    system: &str,
    before: &[Option<String>],
    after: &[Option<String>],
    secs: f64,
) -> Option<Profile> {
    let series = match system {
        "cairn" => &CAIRN,
        "etcd" => &ETCD,
        _ => return None,
    };
    let pairs: Vec<(&str, &str)> = before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| Some((b.as_deref()?, a.as_deref()?)))
        .collect();
    let leader = pairs
        .iter()
        .position(|(_, a)| metric_sum(a, series.is_leader) == Some(1.0))?;
    let (lb, la) = pairs[leader];
    let (syncs, sync_ms, busy) = hist(lb, la, series.sync, secs)?;
    let entries = delta(lb, la, series.entries)? / secs;
    let followers: Vec<(f64, f64, f64)> = pairs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .filter_map(|(_, (b, a))| hist(b, a, series.sync, secs))
        .collect();
    let k = followers.len().max(1) as f64;
    let mut p = Profile {
        leader_syncs_per_s: syncs,
        leader_sync_ms: sync_ms,
        leader_sync_busy: busy,
        entries_per_s: entries,
        follower_syncs_per_s: followers.iter().map(|f| f.0).sum::<f64>() / k,
        follower_sync_ms: followers.iter().map(|f| f.1).sum::<f64>() / k,
        ..Default::default()
    };
    match system {
        "cairn" => {
            let cmds = delta(lb, la, "cairn_raft_cmds_per_entry_sum")?;
            let n = delta(lb, la, "cairn_raft_cmds_per_entry_count")?;
            p.cmds_per_entry = (n > 0.0).then(|| cmds / n);
        }
        _ => {
            if let Some((n, ms, _)) =
                hist(lb, la, "etcd_disk_backend_commit_duration_seconds", secs)
            {
                p.backend_commits_per_s = Some(n);
                p.backend_commit_ms = Some(ms);
            }
        }
    }
    Some(p)
}
