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

use crate::copies::CopyBoard;
use crate::propose::Proposer;
use crate::store::sm::SmHandle;
use crate::types::Raft;

/// How often the tracker looks for silent sessions.
pub const TICK: Duration = Duration::from_millis(100);
/// A gap between two ticks longer than this (or than half the minimum
/// grace, for short leases) means the process was paused (SIGSTOP, a VM
/// freeze, a swap storm): the leader re-confirms that it is still leader
/// and rebuilds its tracker before it expires anything.
const PAUSE_MS: u64 = 1_000;

struct Tracking {
    term: u64,
    /// When this leader started tracking (ms on `Sessions::now`).
    since_ms: u64,
    tracker: SessionTracker,
}

/// A leader whose last quorum acknowledgement is older than this may soon
/// be replaced: it neither answers keepalives nor expires anything. Sound
/// only while followers campaign later than this: `Node::start` refuses
/// election timeouts with less than [`FRESH_MARGIN_MS`] to spare (followers
/// campaign MIN+MAX ms after the last heartbeat at the earliest: 900 ms by
/// default), and heartbeats too sparse to refresh it.
pub const QUORUM_FRESH_MS: u64 = 500;
/// How much earlier than any follower's campaign a leader stops renewing.
pub const FRESH_MARGIN_MS: u64 = 300;

/// Does this member lead `term`, with a quorum heard from recently? A leader
/// cut off from its followers keeps its state (openraft 0.9 does not step
/// down by itself), so the state alone is not enough: chunks it renewed
/// would be expired by the majority's leader meanwhile.
pub fn leads(raft: &Raft, term: u64) -> bool {
    let m = raft.metrics();
    let m = m.borrow();
    m.state == ServerState::Leader
        && m.current_term == term
        && m.millis_since_quorum_ack
            .is_some_and(|ms| ms < QUORUM_FRESH_MS)
}

/// The tracker of this member while it is leader; `None` otherwise.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Mutex<Option<Tracking>>>,
    start: Instant,
    raft: Raft,
    /// The copies chunks run, handed out with keepalive replies.
    board: CopyBoard,
}

impl Sessions {
    pub fn new(raft: Raft) -> Sessions {
        Sessions {
            inner: Arc::default(),
            start: Instant::now(),
            raft,
            board: CopyBoard::default(),
        }
    }

    /// The copy runner's board: commands out, reports in, with keepalives.
    pub fn board(&self) -> &CopyBoard {
        &self.board
    }

    /// Monotonic milliseconds: the only clock the tracker sees.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Runs `f` on the tracker with the current time, if this member leads
    /// (with a fresh quorum acknowledgement) the term its tracker is for.
    pub fn with_tracker<R>(&self, f: impl FnOnce(&mut SessionTracker, u64) -> R) -> Option<R> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let t = inner.as_mut().filter(|t| leads(&self.raft, t.term))?;
        Some(f(&mut t.tracker, self.now()))
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
        // What an earlier tracker of this member may have left in the
        // batcher's queue (its submitter is aborted, not its proposals)
        // must not commit after this tracker acknowledges a keepalive: an
        // empty proposal goes through the FIFO batcher behind it.
        if let Err(e) = proposer.submit(Vec::new()).await {
            tracing::debug!(error = %e.message(), "not leader after all; waiting");
            tokio::time::sleep(TICK).await;
            continue;
        }
        // Everything committed before this term must be applied before the
        // tracker reads the sessions and their last checkpoint.
        if let Err(e) = crate::linearizable::barrier(&raft).await {
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
        let lease_ms = crate::upgrade::effective_lease_ms(&d.state);
        let cfg = tracker_config(lease_ms, space_every_ms);
        let mut tracker = SessionTracker::new(cfg, now, d.state.sessions());
        // Sessions opened before lease_7s was activated carry 14 s in the
        // state: they get 7 s now, with their old promise honoured.
        tracker.shorten_leases(now, lease_ms);
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
    // The tracker's commands go through one task, in order, one proposal at
    // a time: a later checkpoint never overtakes an earlier one, and a
    // proposal that fails is reported back so the tracker says it again.
    // With each batch: the number of the checkpoint in it, reported back
    // once applied (keepalives of the sessions it did not list may then be
    // acknowledged again).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<Cmd>, Option<u64>)>(64);
    let submitter = {
        let (raft, proposer, sessions) = (raft.clone(), proposer.clone(), sessions.clone());
        tokio::spawn(async move {
            while let Some((cmds, checkpoint)) = rx.recv().await {
                if !leads(&raft, term) {
                    continue; // decided in a term this member no longer leads
                }
                if !propose(&proposer, term, &cmds).await {
                    sessions.with_tracker(|t, _| t.proposal_failed(&cmds));
                } else if let Some(seq) = checkpoint {
                    sessions.with_tracker(|t, _| t.checkpoint_applied(seq));
                }
            }
        })
    };
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick_ms = sessions.now();
    loop {
        ticker.tick().await;
        if !leads(raft, term) || sessions.term() != Some(term) {
            tracing::info!(
                term,
                "not (or no longer surely) leader: stopped tracking sessions"
            );
            break;
        }
        // The gap is measured on the tracker's own clock, right before it
        // acts: a stall anywhere before this point counts.
        let ticked = {
            let d = sm.read();
            sessions.with_tracker(|t, now| {
                let gap = now.saturating_sub(last_tick_ms);
                if gap > PAUSE_MS.min(t.config().min_grace_ms / 2) {
                    return Err(gap);
                }
                last_tick_ms = now;
                if d.last_applied != applied {
                    t.sync(now, d.state.sessions());
                    let lease_ms = crate::upgrade::effective_lease_ms(&d.state);
                    let cfg = tracker_config(lease_ms, space_every_ms);
                    if cfg != t.config() {
                        t.set_config(cfg);
                        t.shorten_leases(now, lease_ms);
                    }
                    applied = d.last_applied;
                }
                let cmds = t.tick(now);
                let checkpoint = cmds
                    .iter()
                    .any(|c| matches!(c, Cmd::SessionCheckpoint { .. }))
                    .then(|| t.checkpoints_proposed());
                Ok((cmds, checkpoint))
            })
        };
        match ticked {
            None => break,
            Some(Err(gap_ms)) => {
                tracing::warn!(
                    term,
                    gap_ms,
                    "the session runner was paused; re-confirming leadership before expiring anything"
                );
                break;
            }
            Some(Ok((cmds, _))) if cmds.is_empty() => {}
            Some(Ok(batch)) => {
                if let Err(e) = tx.try_send(batch) {
                    let (cmds, _) = match e {
                        tokio::sync::mpsc::error::TrySendError::Full(c)
                        | tokio::sync::mpsc::error::TrySendError::Closed(c) => c,
                    };
                    sessions.with_tracker(|t, _| t.proposal_failed(&cmds));
                }
            }
        }
    }
    drop(tx);
    submitter.abort();
}

/// Proposes the tracker's commands; false if they were not committed.
async fn propose(proposer: &Proposer, term: u64, cmds: &[Cmd]) -> bool {
    match proposer.submit(cmds.to_vec()).await {
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
            true
        }
        Err(status) => {
            tracing::info!(term, error = %status.message(), "session commands not proposed");
            false
        }
    }
}
