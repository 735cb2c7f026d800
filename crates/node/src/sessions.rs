//! The leader's session runner: glue around `cairn_sched::SessionTracker`.
//!
//! While this member is leader (and only then) it holds a tracker built from
//! the fully applied state, answers keepalives from it, and every tick
//! proposes what the tracker returns (expiries, freshness checkpoints, space
//! reports). On losing leadership the tracker is dropped at once, so a
//! deposed leader stops expiring; what it proposed before is fenced by Raft
//! (docs/sessions.md).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_sched::{SessionTracker, TrackerConfig};
use cairn_state::{Cmd, CmdError, Reply};
use openraft::ServerState;
use tokio::sync::watch;

use crate::propose::Proposer;
use crate::store::sm::SmHandle;
use crate::types::Raft;

/// How often the tracker looks for silent sessions.
pub const TICK: Duration = Duration::from_millis(100);
/// A gap between two ticks longer than this means the process was paused
/// (SIGSTOP, a VM freeze, a swap storm): the leader re-confirms that it is
/// still leader and rebuilds its tracker before it expires anything.
const PAUSE: Duration = Duration::from_millis(1_000);

struct Tracking {
    term: u64,
    /// When this leader started tracking (ms on `Sessions::now`).
    since_ms: u64,
    tracker: SessionTracker,
}

/// The tracker of this member while it is leader; `None` otherwise.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Mutex<Option<Tracking>>>,
    start: Instant,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            inner: Arc::default(),
            start: Instant::now(),
        }
    }
}

impl Sessions {
    /// Monotonic milliseconds: the only clock the tracker sees.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Runs `f` on the tracker with the current time, if this member is the
    /// leader and its tracker is ready.
    pub fn with_tracker<R>(&self, f: impl FnOnce(&mut SessionTracker, u64) -> R) -> Option<R> {
        let now = self.now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.as_mut().map(|t| f(&mut t.tracker, now))
    }

    /// Since when (ms on `now`) this member tracks sessions as leader.
    pub fn tracking_since(&self) -> Option<u64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.as_ref().map(|t| t.since_ms)
    }

    fn set(&self, t: Option<Tracking>) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    fn term(&self) -> Option<u64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.as_ref().map(|t| t.term)
    }
}

/// Starts the runner; it stops when `stop` turns true.
pub fn spawn_runner(
    raft: Raft,
    sm: SmHandle,
    proposer: Proposer,
    sessions: Sessions,
    space_every_ms: u64,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = run(raft, sm, proposer, sessions.clone(), space_every_ms) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        sessions.set(None);
    })
}

/// The tracker's thresholds for the cluster's lease, with this member's
/// space-report rate.
fn tracker_config(lease_ms: u64, space_every_ms: u64) -> TrackerConfig {
    TrackerConfig {
        space_every_ms,
        ..TrackerConfig::for_lease(lease_ms)
    }
}

async fn run(
    raft: Raft,
    sm: SmHandle,
    proposer: Proposer,
    sessions: Sessions,
    space_every_ms: u64,
) {
    let mut metrics = raft.metrics();
    loop {
        // Wait to be leader.
        let term = loop {
            let (leader, term) = {
                let m = metrics.borrow_and_update();
                (m.state == ServerState::Leader, m.current_term)
            };
            if leader {
                break term;
            }
            if metrics.changed().await.is_err() {
                return; // Raft shut down
            }
        };
        // Everything committed before this term must be applied before the
        // tracker reads the sessions and their last checkpoint.
        if let Err(e) = raft.ensure_linearizable().await {
            tracing::debug!(error = %e, "not leader after all; waiting");
            tokio::time::sleep(TICK).await;
            continue;
        }
        lead(&raft, &sm, &proposer, &sessions, term, space_every_ms).await;
        sessions.set(None);
    }
}

/// Tracks sessions for one term; returns when this member is no longer
/// leader of `term`, or after a pause.
async fn lead(
    raft: &Raft,
    sm: &SmHandle,
    proposer: &Proposer,
    sessions: &Sessions,
    term: u64,
    space_every_ms: u64,
) {
    let now = sessions.now();
    let (tracker, mut applied) = {
        let d = sm.read();
        let cfg = tracker_config(d.state.config().lease_ms, space_every_ms);
        let mut tracker = SessionTracker::new(cfg, now, d.state.sessions());
        for s in d.state.sessions() {
            if let Some(c) = d.state.chunk(s.cid) {
                tracker.seed_space(now, s.cid, c.space);
            }
        }
        (tracker, d.last_applied)
    };
    tracing::info!(
        term,
        sessions = tracker.len(),
        "leader: tracking sessions (every live session gets a full lease from now, less its checkpointed silence)"
    );
    sessions.set(Some(Tracking {
        term,
        since_ms: now,
        tracker,
    }));
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = Instant::now();
    loop {
        ticker.tick().await;
        let still = {
            let m = raft.metrics();
            let m = m.borrow();
            m.state == ServerState::Leader && m.current_term == term
        };
        if !still || sessions.term() != Some(term) {
            tracing::info!(term, "no longer leader: stopped tracking sessions");
            return;
        }
        if last_tick.elapsed() > PAUSE {
            tracing::warn!(
                term,
                gap_ms = last_tick.elapsed().as_millis() as u64,
                "the session runner was paused; re-confirming leadership before expiring anything"
            );
            return;
        }
        last_tick = Instant::now();
        let cmds = {
            let d = sm.read();
            sessions
                .with_tracker(|t, now| {
                    if d.last_applied != applied {
                        t.sync(now, d.state.sessions());
                        let cfg = tracker_config(d.state.config().lease_ms, space_every_ms);
                        if cfg != t.config() {
                            t.set_config(cfg);
                        }
                        applied = d.last_applied;
                    }
                    t.tick(now)
                })
                .unwrap_or_default()
        };
        if !cmds.is_empty() {
            // Not awaited here: the tick keeps its pace while Raft commits.
            let proposer = proposer.clone();
            tokio::spawn(async move { propose(&proposer, term, cmds).await });
        }
    }
}

async fn propose(proposer: &Proposer, term: u64, cmds: Vec<Cmd>) {
    match proposer.submit(cmds.clone()).await {
        Ok((results, index)) => {
            for (cmd, r) in cmds.iter().zip(results) {
                match (cmd, r) {
                    (Cmd::ExpireSession { cid, session_id }, Ok(_)) => {
                        tracing::warn!(cid, session_id, term, index, "session expired")
                    }
                    // Replaced or closed meanwhile: nothing to expire.
                    (_, Err(CmdError::StaleSession { .. })) => {}
                    (_, Err(e)) => tracing::warn!(?cmd, error = %e, "session command rejected"),
                    (_, Ok(Reply::Done)) | (_, Ok(_)) => {}
                }
            }
        }
        Err(status) => {
            tracing::info!(term, error = %status.message(), "session commands not proposed")
        }
    }
}
