//! Prometheus `/metrics` on every member (`cairn server --metrics-addr`).
//!
//! Two kinds of figures:
//! - **read at scrape time** from what the member already holds (openraft's
//!   metrics, the applied state, the leader's scheduler): term, indexes,
//!   leadership, live sessions, queues, running copies, capability states.
//!   Nothing to keep in sync, and a follower reports the same replicated
//!   figures as the leader.
//! - **event counters and histograms** fed where the event happens (the log
//!   writer, `apply`, the copy runner). They are process-wide: a server runs
//!   one member per process. They count since this process started, as
//!   Prometheus counters do; `rate()` and `increase()` handle restarts.
//!
//! The exposition format is OpenMetrics text (Prometheus reads it), encoded
//! by the `prometheus-client` crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use cairn_sched::Kind;
use openraft::ServerState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::copies::SchedHandle;
use crate::store::sm::SmHandle;
use crate::types::Raft;

type Labels = Vec<(&'static str, String)>;

/// Process-wide event counters (see the module doc).
pub struct Events {
    /// Time from a log append's submission to its fsync (group commit
    /// included): the disk's share of a write's latency.
    pub append_seconds: Histogram,
    /// Entries per synced batch of the log writer (group commit at the disk).
    pub entries_per_sync: Histogram,
    /// Synced batches the log writer wrote.
    pub log_syncs: Counter,
    /// Commands per Raft entry the leader's batcher proposed (group commit
    /// at the Raft level).
    pub cmds_per_entry: Histogram,
    /// `ExpireSession` commands this member applied.
    pub sessions_expired: Counter,
    /// Copies the leader's runner saw finish / fail, by kind.
    pub copies_completed: Family<Labels, Counter>,
    pub copies_failed: Family<Labels, Counter>,
    /// The last committed index openraft asked the log store to save
    /// (seeded at start with the one found on disk).
    pub commit_index: AtomicU64,
    /// Entries up to this index were committed before this process started:
    /// openraft re-applies them from the log at start, and counting their
    /// session expiries again would show expiries that did not happen.
    pub replay_until: AtomicU64,
}

pub static EVENTS: LazyLock<Events> = LazyLock::new(|| Events {
    // 50 µs .. ~1.6 s.
    append_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
    entries_per_sync: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
    log_syncs: Counter::default(),
    cmds_per_entry: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
    sessions_expired: Counter::default(),
    copies_completed: Family::default(),
    copies_failed: Family::default(),
    commit_index: AtomicU64::new(0),
    replay_until: AtomicU64::new(0),
});

/// Called once at start with the committed index found on disk.
pub fn starting_at(committed: u64) {
    EVENTS.commit_index.fetch_max(committed, Ordering::Relaxed);
    EVENTS.replay_until.store(committed, Ordering::Relaxed);
}

/// Counts the session expiries of an applied entry (not of a replay).
pub fn sessions_expired(index: u64, n: u64) {
    if n > 0 && index > EVENTS.replay_until.load(Ordering::Relaxed) {
        EVENTS.sessions_expired.inc_by(n);
    }
}

/// The label value of a scheduler kind, as the CLI prints it.
pub fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Recover => "recover",
        Kind::Migrate => "migrate",
    }
}

/// Records one finished (`ok`) or failed copy of `kind`.
pub fn copy_ended(kind: Kind, ok: bool) {
    let labels = vec![("kind", kind_label(kind).to_string())];
    let family = if ok {
        &EVENTS.copies_completed
    } else {
        &EVENTS.copies_failed
    };
    family.get_or_create(&labels).inc();
}

/// What a scrape reads from.
#[derive(Clone)]
pub struct Sources {
    pub raft: Raft,
    pub sm: SmHandle,
    pub sched: SchedHandle,
}

fn gauge(registry: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    registry.register(name, help, g);
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str, rows: &[(Labels, i64)]) {
    let f: Family<Labels, Gauge> = Family::default();
    for (labels, v) in rows {
        f.get_or_create(labels).set(*v);
    }
    registry.register(name, help, f);
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The whole exposition, as of now.
pub fn render(src: &Sources) -> String {
    let mut r = Registry::default();
    let (term, leader, last_log, applied, leading, voters, learners) = {
        let m = src.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().count();
        let all = membership.nodes().count();
        (
            m.current_term,
            m.current_leader.unwrap_or(0),
            m.last_log_index.unwrap_or(0),
            m.last_applied.map_or(0, |l| l.index),
            m.state == ServerState::Leader,
            voters,
            all.saturating_sub(voters),
        )
    };
    gauge(&mut r, "cairn_raft_term", "Current Raft term.", int(term));
    gauge(
        &mut r,
        "cairn_raft_is_leader",
        "1 if this member leads.",
        i64::from(leading),
    );
    gauge(
        &mut r,
        "cairn_raft_leader_id",
        "The leader this member knows (0: none).",
        int(leader),
    );
    gauge(
        &mut r,
        "cairn_raft_last_log_index",
        "Index of the last entry in this member's log.",
        int(last_log),
    );
    gauge(
        &mut r,
        "cairn_raft_commit_index",
        "Last committed index this member saved.",
        int(EVENTS.commit_index.load(Ordering::Relaxed)),
    );
    gauge(
        &mut r,
        "cairn_raft_applied_index",
        "Last index applied to this member's state machine.",
        int(applied),
    );
    gauge_family(
        &mut r,
        "cairn_raft_members",
        "Members of the current membership, by role.",
        &[
            (vec![("role", "voter".into())], voters as i64),
            (vec![("role", "learner".into())], learners as i64),
        ],
    );
    r.register(
        "cairn_raft_append_seconds",
        "Log append latency, from submission to fsync.",
        EVENTS.append_seconds.clone(),
    );
    r.register(
        "cairn_raft_entries_per_sync",
        "Log entries written per fsync (group commit).",
        EVENTS.entries_per_sync.clone(),
    );
    r.register(
        "cairn_raft_log_syncs",
        "Synced batches written by the log writer.",
        EVENTS.log_syncs.clone(),
    );
    r.register(
        "cairn_raft_cmds_per_entry",
        "Commands per Raft entry proposed by this member as leader.",
        EVENTS.cmds_per_entry.clone(),
    );

    let (sessions, chunks, running, capabilities) = {
        let d = src.sm.read();
        let state = &d.state;
        let sessions = state.sessions().count();
        let chunks = state.chunks().count();
        let mut running = [0i64; 2];
        for c in state.copies() {
            match c.kind {
                cairn_state::CopyKind::Recover => running[0] += 1,
                cairn_state::CopyKind::Migrate => running[1] += 1,
            }
        }
        let ids: Vec<u64> = {
            let m = src.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect()
        };
        let decision = crate::upgrade::GateView::of(state, ids).decide();
        let mut caps: Vec<(String, &'static str, usize)> = decision
            .active
            .iter()
            .map(|name| (name.clone(), "active", 0))
            .collect();
        for p in &decision.pending {
            let st = if p.blockers.is_empty() {
                "held"
            } else {
                "blocked"
            };
            caps.push((p.name.to_string(), st, p.blockers.len()));
        }
        (sessions, chunks, running, caps)
    };
    gauge(
        &mut r,
        "cairn_sessions_live",
        "Chunks holding a live session.",
        sessions as i64,
    );
    gauge(
        &mut r,
        "cairn_chunks_without_session",
        "Registered chunks without a live session (expired, closed or never opened).",
        chunks.saturating_sub(sessions) as i64,
    );
    r.register(
        "cairn_sessions_expired",
        "Sessions this member applied an expiry for.",
        EVENTS.sessions_expired.clone(),
    );

    let queued = src.sched.with(|l| {
        [
            l.scheduler.queue(Kind::Recover).len() as i64,
            l.scheduler.queue(Kind::Migrate).len() as i64,
        ]
    });
    gauge(
        &mut r,
        "cairn_sched_leading",
        "1 while this member runs the scheduler (it leads).",
        i64::from(queued.is_some()),
    );
    let queued = queued.unwrap_or([0, 0]);
    let kinds = [Kind::Recover, Kind::Migrate];
    let per_kind = |v: [i64; 2]| -> Vec<(Labels, i64)> {
        kinds
            .iter()
            .zip(v)
            .map(|(k, n)| (vec![("kind", kind_label(*k).to_string())], n))
            .collect()
    };
    gauge_family(
        &mut r,
        "cairn_sched_queued",
        "Extents queued for a copy, by kind (the leader's queues; 0 elsewhere).",
        &per_kind(queued),
    );
    gauge_family(
        &mut r,
        "cairn_sched_running",
        "Copies running, by kind (replicated: the same on every member).",
        &per_kind(running),
    );
    // Make both kinds appear from the first scrape on.
    for k in kinds {
        let labels = vec![("kind", kind_label(k).to_string())];
        let _ = EVENTS.copies_completed.get_or_create(&labels);
        let _ = EVENTS.copies_failed.get_or_create(&labels);
    }
    r.register(
        "cairn_sched_completed",
        "Copies the leader's runner saw finish while this member led, by kind.",
        EVENTS.copies_completed.clone(),
    );
    r.register(
        "cairn_sched_failed",
        "Copies the leader's runner saw fail or time out while this member led, by kind.",
        EVENTS.copies_failed.clone(),
    );

    let cap_state: Family<Labels, Gauge> = Family::default();
    let cap_blockers: Family<Labels, Gauge> = Family::default();
    for (name, st, blockers) in &capabilities {
        for s in ["active", "blocked", "held"] {
            let labels = vec![("capability", name.clone()), ("state", s.to_string())];
            cap_state.get_or_create(&labels).set(i64::from(s == *st));
        }
        cap_blockers
            .get_or_create(&vec![("capability", name.clone())])
            .set(*blockers as i64);
    }
    r.register(
        "cairn_capability_state",
        "1 for each capability's current state: active, blocked (someone lacks it) or held (operator hold).",
        cap_state,
    );
    r.register(
        "cairn_capability_blockers",
        "Members and chunks that lack each capability not yet active.",
        cap_blockers,
    );

    let mut out = String::new();
    if let Err(e) = encode(&mut out, &r) {
        tracing::error!(error = %e, "encoding metrics");
    }
    out
}

/// Content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics`, and the console's routes beside it, on `listener`
/// (bound by the caller before anything else starts, so a taken port fails
/// the start cleanly) until `stop` turns true.
pub fn serve(
    listener: TcpListener,
    src: Sources,
    console: Option<axum::Router>,
    tls: Option<crate::admin_port::AdminTls>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let bound = listener.local_addr().ok();
    let https = tls.is_some();
    // One scrape at a time: each reads the state under its lock.
    let one = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (src, one) = (src.clone(), one.clone());
            async move {
                let _turn = one.acquire_owned().await;
                // Reading the state takes its lock: not on the runtime's
                // worker (a scrape of a large state must not stall Raft).
                let body = tokio::task::spawn_blocking(move || render(&src))
                    .await
                    .unwrap_or_else(|e| format!("# metrics failed: {e}\n"));
                ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body)
            }
        }),
    );
    let app = match console {
        Some(console) => app.merge(console),
        None => app,
    };
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let listener = match crate::admin_port::AdminListener::new(listener, tls) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin port: cannot serve");
                return;
            }
        };
        let app = app.into_make_service_with_connect_info::<crate::admin_port::AdminPeer>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    if let Some(bound) = bound {
        tracing::info!(%bound, https, "serving Prometheus metrics at /metrics and the console at /");
    }
    task
}
