//! The barrier before a linearizable read, and before a leader takes office:
//! leadership confirmed by a quorum, then the state machine caught up with
//! every write acknowledged before.
//!
//! openraft 0.9's `ensure_linearizable` waits for the state machine to reach
//! max(committed index, first entry of this leader's term). That is not
//! enough here: the committed index is saved as a hint, without its own
//! fsync (`store/log.rs`), and a member whose vote was committed restarts
//! still leader, without an election and without a new first entry. After a
//! power loss such a leader may hold acknowledged entries of its own term
//! past both its first entry and its stale committed index. Every
//! acknowledged write is in the leader's log (leader completeness), so the
//! barrier waits until the state machine has applied the leader's whole log
//! as it was once leadership was confirmed.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ForwardToLeader, RaftError};
use openraft::metrics::WaitError;

use openraft::BasicNode;

use crate::types::{NodeId, Raft};

/// How long the barrier waits for the state machine: entries past the
/// committed index of a deposed leader may never commit, and a read or a
/// leader loop must not hang on them.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(thiserror::Error, Debug)]
pub enum BarrierError {
    #[error("not the leader")]
    NotLeader(ForwardToLeader<NodeId, BasicNode>),
    #[error("leadership not confirmed: {0}")]
    Unconfirmed(String),
    #[error(
        "the state machine did not reach index {target} within {timeout:?} (applied {applied})"
    )]
    Timeout {
        target: u64,
        applied: u64,
        timeout: Duration,
    },
    #[error("raft is shutting down")]
    ShuttingDown,
}

/// Index the state machine must reach: the read log id openraft gives, or
/// the leader's last log index at confirmation, whichever is higher.
pub fn read_target(read_log_index: Option<u64>, last_log_index: Option<u64>) -> u64 {
    read_log_index.max(last_log_index).unwrap_or(0)
}

/// Confirms leadership with a quorum, then waits until every entry in this
/// leader's log is applied. Returns the index the state machine reached.
pub async fn barrier(raft: &Raft) -> Result<u64, BarrierError> {
    let (read_log_id, _) = raft.get_read_log_id().await.map_err(|e| match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => BarrierError::NotLeader(f),
        e => BarrierError::Unconfirmed(e.to_string()),
    })?;
    let last_log_index = raft.metrics().borrow().last_log_index;
    let target = read_target(read_log_id.map(|l| l.index), last_log_index);
    match raft
        .wait(Some(APPLY_TIMEOUT))
        .applied_index_at_least(Some(target), "linearizable barrier")
        .await
    {
        Ok(_) => Ok(target),
        Err(WaitError::Timeout(..)) => Err(BarrierError::Timeout {
            target,
            applied: raft.metrics().borrow().last_applied.map_or(0, |l| l.index),
            timeout: APPLY_TIMEOUT,
        }),
        Err(WaitError::ShuttingDown) => Err(BarrierError::ShuttingDown),
    }
}

#[cfg(test)]
mod tests {
    use super::read_target;

    #[test]
    fn the_target_covers_the_whole_log_of_a_restarted_leader() {
        // Restarted still leader: first entry of its term at 4, committed
        // hint lost back to 3, acknowledged entries up to 6 in its log.
        assert_eq!(read_target(Some(4), Some(6)), 6);
        // Fresh leader: its first entry is its last.
        assert_eq!(read_target(Some(9), Some(9)), 9);
        assert_eq!(read_target(None, None), 0);
        assert_eq!(read_target(Some(2), None), 2);
    }
}
