//! Replays a dumped Raft log through `cairn_state`, exactly as a member's
//! state machine does (`crates/node/src/store/sm.rs`): a `normal` entry's
//! commands go through `State::apply_batch`; `blank` and `membership`
//! entries change nothing in the state.

use cairn_state::{Cmd, EntryMeta, State};

use crate::history::LogRecord;

/// One command of an applied entry, with whether apply accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedCmd {
    pub cmd: Cmd,
    /// `Err` holds apply's refusal, as text.
    pub result: Result<(), String>,
}

/// One entry of the log as replayed (blank and membership entries have no
/// commands, but their terms count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    pub index: u64,
    pub term: u64,
    /// The node id of the entry's leader (0 if the dump did not say).
    pub leader: u64,
    pub cmds: Vec<AppliedCmd>,
}

pub struct Replay {
    pub entries: Vec<AppliedEntry>,
    /// The last index replayed.
    pub last_index: u64,
    /// (index, digest) of the state right after `digest_at`, if asked for
    /// and reached.
    pub digest: Option<(u64, u64)>,
    pub state: State,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    #[error("the log is empty")]
    Empty,
    #[error("the log was purged: it starts at index {0}, so the state cannot be rebuilt from it")]
    Purged(u64),
    #[error("the log has a gap: index {after} is followed by {next}")]
    Gap { after: u64, next: u64 },
    #[error("two records for index {index} disagree (terms {a} and {b}, or different commands)")]
    Conflict { index: u64, a: u64, b: u64 },
}

/// Replays `log` (any order; duplicate records of one index, say from two
/// members' dumps, must agree) from an empty state. `first_index` is what
/// `Final::log_first_index` says (None: taken from the log itself).
/// `digest_at`: the index after which to take the state's digest.
pub fn replay(
    log: &[LogRecord],
    first_index: Option<u64>,
    digest_at: Option<u64>,
) -> Result<Replay, ReplayError> {
    let mut recs: Vec<&LogRecord> = log.iter().collect();
    recs.sort_by_key(|r| r.index);
    let first = recs.first().ok_or(ReplayError::Empty)?.index;
    let first_index = first_index.unwrap_or(first);
    // openraft's log may start at 0 (the initial membership) or 1.
    if first_index > 1 || first > 1 {
        return Err(ReplayError::Purged(first_index.max(first)));
    }
    let mut dedup: Vec<&LogRecord> = Vec::with_capacity(recs.len());
    for r in recs {
        match dedup.last() {
            Some(p) if p.index == r.index => {
                if p.term != r.term || p.cmds != r.cmds || p.payload != r.payload {
                    return Err(ReplayError::Conflict {
                        index: r.index,
                        a: p.term,
                        b: r.term,
                    });
                }
            }
            Some(p) if r.index != p.index + 1 => {
                return Err(ReplayError::Gap {
                    after: p.index,
                    next: r.index,
                })
            }
            _ => dedup.push(r),
        }
    }
    let mut state = State::default();
    let mut entries = Vec::with_capacity(dedup.len());
    let mut digest = None;
    let mut last_index = 0;
    if digest_at == Some(0) {
        digest = Some((0, state.digest()));
    }
    for r in dedup {
        let cmds = if r.payload == "normal" {
            let meta = EntryMeta {
                index: r.index,
                term: r.term,
                leader_time_ms: r.leader_time_ms,
            };
            let results = state.apply_batch(meta, &r.cmds);
            r.cmds
                .iter()
                .zip(results)
                .map(|(cmd, res)| AppliedCmd {
                    cmd: cmd.clone(),
                    result: res.map(|_| ()).map_err(|e| e.to_string()),
                })
                .collect()
        } else {
            Vec::new()
        };
        entries.push(AppliedEntry {
            index: r.index,
            term: r.term,
            leader: r.leader,
            cmds,
        });
        last_index = r.index;
        if digest_at == Some(r.index) {
            digest = Some((r.index, state.digest()));
        }
    }
    Ok(Replay {
        entries,
        last_index,
        digest,
        state,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cairn_state::{
        CopyKind, CreateVolume, FinishCopy, IssueCopy, Provisioning, EXTENT_SIZE_BYTES,
    };

    pub(crate) fn rec(index: u64, term: u64, cmds: Vec<Cmd>) -> LogRecord {
        LogRecord {
            index,
            term,
            leader: 1,
            payload: if cmds.is_empty() { "blank" } else { "normal" }.into(),
            leader_time_ms: 1_000_000 + index,
            cmds,
        }
    }

    pub(crate) fn register(host: &str) -> Cmd {
        Cmd::RegisterChunk {
            hostname: host.into(),
            data_addr: format!("{host}:10201"),
            brick: None,
            version: "5.6.0".into(),
            capabilities: vec![],
        }
    }

    pub(crate) fn open(cid: u32) -> Cmd {
        Cmd::OpenSession {
            cid,
            lease_ms: 7_000,
        }
    }

    pub(crate) fn issue(term: u64) -> Cmd {
        Cmd::IssueCopy(IssueCopy {
            term,
            kind: CopyKind::Recover,
            pid: 1,
            generation: 1,
            src: 1,
            dst: 3,
            replace: 0,
            owner: 0,
            manual: false,
        })
    }

    pub(crate) fn finish(term: u64) -> Cmd {
        Cmd::FinishCopy(FinishCopy {
            term,
            copy_id: 1,
            update: None,
        })
    }

    /// Three chunks with sessions, a volume of one extent on chunks 1 and
    /// 2, and a recover copy of it to chunk 3 issued in term 1.
    pub(crate) fn small_log() -> Vec<LogRecord> {
        vec![
            rec(1, 1, vec![]),
            rec(2, 1, vec![register("a"), register("b"), register("c")]),
            rec(3, 1, vec![open(1), open(2), open(3)]),
            rec(
                4,
                1,
                vec![Cmd::CreateVolume(CreateVolume {
                    name: "v".into(),
                    size_bytes: EXTENT_SIZE_BYTES,
                    provisioning: Provisioning::Thin,
                    replicas: 2,
                    prefer_cid: 0,
                    even: false,
                    preferred_zone: 0,
                    locs: vec![vec![1, 2]],
                })],
            ),
            rec(5, 1, vec![issue(1)]),
        ]
    }

    #[test]
    fn the_small_log_applies_cleanly() {
        let r = replay(&small_log(), Some(1), Some(5)).unwrap();
        for e in &r.entries {
            for c in &e.cmds {
                assert!(c.result.is_ok(), "{e:?}");
            }
        }
        assert_eq!(r.state.last_applied(), (5, 1));
        assert_eq!(r.digest, Some((5, r.state.digest())));
        // and finishing the copy in the same term is accepted
        let mut log = small_log();
        log.push(rec(6, 1, vec![finish(1)]));
        let r = replay(&log, None, None).unwrap();
        assert_eq!(r.entries[5].cmds[0].result, Ok(()));
    }

    #[test]
    fn a_purged_or_gapped_log_cannot_be_replayed() {
        let log = small_log();
        assert_eq!(
            replay(&log, Some(3), None).err(),
            Some(ReplayError::Purged(3))
        );
        assert_eq!(
            replay(&log[2..], None, None).err(),
            Some(ReplayError::Purged(3))
        );
        let mut gap = log.clone();
        gap.remove(2);
        assert_eq!(
            replay(&gap, Some(1), None).err(),
            Some(ReplayError::Gap { after: 2, next: 4 })
        );
        // while two identical dumps of one index are fine
        let mut twice = log.clone();
        twice.extend(log.clone());
        assert!(replay(&twice, Some(1), None).is_ok());
    }
}
