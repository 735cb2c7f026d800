//! What this member saw over time, for the console's Cluster page: the
//! leaders it followed (when, which term, why where it can tell) and its
//! commit index once a second (the Raft commit rate).
//!
//! In memory only, since this process started: the console shows the
//! recent past, Prometheus keeps the long one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::propose::now_ms;
use crate::types::{NodeId, Raft};

/// Leader changes kept.
pub const LEADERS_KEPT: usize = 20;
/// Commit index samples kept (one a second: two minutes).
pub const SAMPLES_KEPT: usize = 120;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeaderChange {
    pub at_ms: u64,
    pub term: u64,
    /// `None`: no leader known (an election is running).
    pub leader: Option<NodeId>,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub at_ms: u64,
    pub commit_index: u64,
}

#[derive(Default)]
struct Inner {
    leaders: VecDeque<LeaderChange>,
    samples: VecDeque<Sample>,
}

/// Shared between the watcher task and the console's handlers.
#[derive(Clone, Default)]
pub struct Timeline(Arc<Mutex<Inner>>);

impl Timeline {
    pub fn leaders(&self) -> Vec<LeaderChange> {
        self.lock().leaders.iter().cloned().collect()
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.lock().samples.iter().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what this member now knows, if the leader or term changed.
    /// `me`: this member, to tell its own wins apart.
    pub fn observe(&self, me: NodeId, term: u64, leader: Option<NodeId>, at_ms: u64) {
        let mut g = self.lock();
        let last = g.leaders.back().cloned();
        if let Some(l) = &last {
            if l.term == term && l.leader == leader {
                return;
            }
        }
        let reason = reason(me, last.as_ref(), term, leader);
        g.leaders.push_back(LeaderChange {
            at_ms,
            term,
            leader,
            reason,
        });
        while g.leaders.len() > LEADERS_KEPT {
            g.leaders.pop_front();
        }
    }

    pub fn sample(&self, commit_index: u64, at_ms: u64) {
        let mut g = self.lock();
        g.samples.push_back(Sample {
            at_ms,
            commit_index,
        });
        while g.samples.len() > SAMPLES_KEPT {
            g.samples.pop_front();
        }
    }
}

/// Why the leader changed, as far as this member can tell: Raft does not
/// say why an election started, only what this member saw before it.
fn reason(me: NodeId, last: Option<&LeaderChange>, term: u64, leader: Option<NodeId>) -> String {
    match (last, leader) {
        (None, Some(l)) => format!("leader {l} when this member started"),
        (None, None) => "no leader yet when this member started".into(),
        (Some(prev), None) => match prev.leader {
            Some(p) => format!("election in term {term}: leader {p} no longer heard"),
            None => format!("election in term {term}: the previous one found no leader"),
        },
        (Some(prev), Some(l)) if prev.leader == Some(l) => {
            format!("leader {l} re-elected in term {term}")
        }
        (Some(prev), Some(l)) => {
            let who = if l == me {
                "this member".to_string()
            } else {
                format!("member {l}")
            };
            match prev.leader {
                Some(p) => format!("{who} elected after leader {p} was no longer heard"),
                None => format!("{who} elected"),
            }
        }
    }
}

/// Watches `raft` until `stop`: leader changes as they happen, the commit
/// index once a second.
pub fn spawn(
    raft: Raft,
    timeline: Timeline,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            {
                let m = metrics.borrow_and_update();
                timeline.observe(m.id, m.current_term, m.current_leader, now_ms());
            }
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return },
                _ = tick.tick() => timeline.sample(
                    crate::metrics::EVENTS.commit_index.load(std::sync::atomic::Ordering::Relaxed),
                    now_ms(),
                ),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_changes_only_with_what_this_member_saw() {
        let t = Timeline::default();
        t.observe(1, 1, None, 10);
        t.observe(1, 1, None, 20); // no change
        t.observe(1, 1, Some(2), 30);
        t.observe(1, 1, Some(2), 40); // no change
        t.observe(1, 2, None, 50);
        t.observe(1, 2, Some(1), 60);
        t.observe(1, 3, Some(1), 70);
        let l = t.leaders();
        let got: Vec<(u64, u64, Option<u64>)> =
            l.iter().map(|c| (c.at_ms, c.term, c.leader)).collect();
        assert_eq!(
            got,
            vec![
                (10, 1, None),
                (30, 1, Some(2)),
                (50, 2, None),
                (60, 2, Some(1)),
                (70, 3, Some(1))
            ]
        );
        assert_eq!(l[0].reason, "no leader yet when this member started");
        assert_eq!(l[1].reason, "member 2 elected");
        assert_eq!(l[2].reason, "election in term 2: leader 2 no longer heard");
        assert_eq!(l[3].reason, "this member elected");
        assert_eq!(l[4].reason, "leader 1 re-elected in term 3");
    }

    #[test]
    fn keeps_only_the_most_recent() {
        let t = Timeline::default();
        for term in 0..(LEADERS_KEPT as u64 + 5) {
            t.observe(1, term, Some(term % 3), term);
        }
        for i in 0..(SAMPLES_KEPT as u64 + 7) {
            t.sample(i * 10, i);
        }
        let l = t.leaders();
        assert_eq!(l.len(), LEADERS_KEPT);
        assert_eq!(l[0].term, 5);
        let s = t.samples();
        assert_eq!(s.len(), SAMPLES_KEPT);
        assert_eq!(s[0].commit_index, 70);
        assert_eq!(s.last().map(|s| s.at_ms), Some(SAMPLES_KEPT as u64 + 6));
    }
}
