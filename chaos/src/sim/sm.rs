//! A simulated node's state machine: `cairn_state::State` applied exactly as
//! `cairn_node::store::sm` applies it (`apply_batch` with the entry's index,
//! term and leader-stamped time), snapshots as the same bytes (a bincode
//! `{meta, State::snapshot()}` body), kept on the node's [`Disk`].
//!
//! A new incarnation starts from the disk's snapshot (or empty) and openraft
//! replays the committed log after it.

#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use cairn_sched::Touch;
use cairn_state::{Cmd, CmdError, EntryMeta, Pid, Reply, State};
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::runtime::{elapsed_ns, lock};
use super::store::SharedDisk;
use super::types::{
    Entry, LogId, Response, SimTypes, Snapshot, SnapshotMeta, StorageError, StoredMembership,
};
use crate::check::replay::{AppliedCmd, AppliedEntry};
use cairn_node::types::{decode, encode};

/// What applied commands changed, for the leader's copy runner: as
/// The copy runner's feed of what applied commands changed: the node's own
/// (fed only while a runner listens).
pub use cairn_node::store::sm::Touched;

/// One change an environment command (a session opening, ending or
/// expiring, a copy finishing) made to an extent: not a client's write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvChange {
    pub index: u64,
    pub generation_before: u64,
    pub generation_after: u64,
    pub owner_after: u32,
}

/// What the simulator records of the committed log, from the first node
/// that applies each index (committed entries are the same on every node):
/// the term-stamped and session commands with their results, and what
/// environment commands did to extents. Read by `verify`.
#[derive(Debug, Default)]
pub struct AppliedLog {
    /// Every applied index, with only its copy and session commands.
    pub entries: BTreeMap<u64, AppliedEntry>,
    /// Virtual time (ns) each index was first applied.
    pub at_ns: BTreeMap<u64, u64>,
    /// Per extent, in log order.
    pub env: BTreeMap<Pid, Vec<EnvChange>>,
    /// (cid, session id) -> virtual time (ns) it was opened.
    pub opened: BTreeMap<(u32, u64), u64>,
}

pub type SharedApplied = Arc<Mutex<AppliedLog>>;

/// Commands that change extents without being a client's write.
fn is_env(cmd: &Cmd) -> bool {
    matches!(
        cmd,
        Cmd::OpenSession { .. }
            | Cmd::CloseSession { .. }
            | Cmd::ExpireSession { .. }
            | Cmd::FinishCopy(_)
    )
}

/// Commands kept in [`AppliedLog::entries`].
fn is_kept(cmd: &Cmd) -> bool {
    is_env(cmd) || matches!(cmd, Cmd::IssueCopy(_) | Cmd::AdoptCopies { .. })
}

fn extent_values(state: &State) -> BTreeMap<Pid, (u64, u32)> {
    state
        .extents()
        .map(|e| (e.pid, (e.generation(), e.lease_owner())))
        .collect()
}

/// Every extent's (generation, lease owner).
type ExtentValues = BTreeMap<Pid, (u64, u32)>;

impl AppliedLog {
    fn record(
        &mut self,
        log_id: LogId,
        cmds: &[Cmd],
        results: &[Result<Reply, CmdError>],
        before_after: Option<(ExtentValues, ExtentValues)>,
    ) {
        let index = log_id.index;
        let now = elapsed_ns();
        let kept = cmds
            .iter()
            .zip(results)
            .filter(|(c, _)| is_kept(c))
            .map(|(c, r)| AppliedCmd {
                cmd: c.clone(),
                result: r.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            })
            .collect();
        for (c, r) in cmds.iter().zip(results) {
            if let (Cmd::OpenSession { cid, .. }, Ok(Reply::Session { session_id, .. })) = (c, r) {
                self.opened.insert((*cid, *session_id), now);
            }
        }
        if let Some((before, after)) = before_after {
            for (pid, &(g1, o1)) in &after {
                let g0 = before.get(pid).map_or(0, |v| v.0);
                if g1 != g0 {
                    self.env.entry(*pid).or_default().push(EnvChange {
                        index,
                        generation_before: g0,
                        generation_after: g1,
                        owner_after: o1,
                    });
                }
            }
        }
        self.at_ns.insert(index, now);
        self.entries.insert(
            index,
            AppliedEntry {
                index,
                term: log_id.leader_id.term,
                leader: log_id.leader_id.node_id,
                cmds: kept,
            },
        );
    }
}

/// What the state machine holds; shared with the simulator's readers.
#[derive(Debug)]
pub struct SmData {
    pub state: State,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    /// For the copy runner of this node, while it leads.
    pub touched: Touched,
}

pub type SmHandle = Arc<Mutex<SmData>>;

/// The snapshot body, as `cairn_node::store::sm` writes it.
#[derive(Serialize, Deserialize, Debug)]
struct SnapshotBody {
    meta: SnapshotMeta,
    state: Vec<u8>,
}

fn decode_body(bytes: &[u8]) -> Result<(SnapshotMeta, State), String> {
    let body: SnapshotBody = decode(bytes)?;
    let state = State::restore(&body.state).map_err(|e| e.to_string())?;
    Ok((body.meta, state))
}

pub struct SmStore {
    data: SmHandle,
    disk: SharedDisk,
    applied: SharedApplied,
    epoch: u64,
    snapshot_seq: u64,
}

impl SmStore {
    /// Opens the state machine of a new incarnation: from the disk's
    /// snapshot if there is one. A snapshot that does not decode is an error
    /// (the node must not start empty instead).
    pub fn open(disk: SharedDisk, applied: SharedApplied) -> Result<SmStore, String> {
        let (epoch, snap) = {
            let d = lock(&disk);
            (d.epoch(), d.snapshot().map(|(_, b)| b.clone()))
        };
        let data = match snap {
            None => SmData {
                state: State::new(),
                last_applied: None,
                last_membership: StoredMembership::default(),
                touched: Touched::default(),
            },
            Some(bytes) => {
                let (meta, state) = decode_body(&bytes)?;
                SmData {
                    state,
                    last_applied: meta.last_log_id,
                    last_membership: meta.last_membership,
                    touched: Touched::default(),
                }
            }
        };
        Ok(SmStore {
            data: Arc::new(Mutex::new(data)),
            disk,
            applied,
            epoch,
            snapshot_seq: 0,
        })
    }

    pub fn handle(&self) -> SmHandle {
        self.data.clone()
    }
}

fn snap_err(meta: &SnapshotMeta, e: impl std::fmt::Display, write: bool) -> StorageError {
    let e = AnyError::error(e.to_string());
    let sig = Some(meta.signature());
    if write {
        StorageIOError::write_snapshot(sig, &e).into()
    } else {
        StorageIOError::read_snapshot(sig, &e).into()
    }
}

impl RaftStateMachine<SimTypes> for SmStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let d = lock(&self.data);
        Ok((d.last_applied, d.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut d = lock(&self.data);
        for entry in entries {
            let log_id = entry.log_id;
            let first = !lock(&self.applied).entries.contains_key(&log_id.index);
            let response = match entry.payload {
                EntryPayload::Blank => {
                    if first {
                        lock(&self.applied).record(log_id, &[], &[], None);
                    }
                    Response::default()
                }
                EntryPayload::Normal(req) => {
                    let meta = EntryMeta {
                        index: log_id.index,
                        term: log_id.leader_id.term,
                        leader_time_ms: req.leader_time_ms,
                    };
                    let env = first && req.cmds.iter().any(is_env);
                    let before = env.then(|| extent_values(&d.state));
                    let results = d.state.apply_batch(meta, &req.cmds);
                    if d.touched.listening {
                        for (cmd, r) in req.cmds.iter().zip(&results) {
                            if r.is_ok() {
                                d.touched.add(Touch::of(cmd));
                            }
                        }
                    }
                    if first {
                        let changes = before.map(|b| (b, extent_values(&d.state)));
                        lock(&self.applied).record(log_id, &req.cmds, &results, changes);
                    }
                    Response { results }
                }
                EntryPayload::Membership(m) => {
                    if first {
                        lock(&self.applied).record(log_id, &[], &[], None);
                    }
                    d.last_membership = StoredMembership::new(Some(log_id), m);
                    Response::default()
                }
            };
            d.last_applied = Some(log_id);
            out.push(response);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.snapshot_seq += 1;
        // Encoded now, so the snapshot is exactly the state at last_applied.
        let d = lock(&self.data);
        let snapshot_id = match d.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.snapshot_seq),
            None => format!("0-0-{}", self.snapshot_seq),
        };
        let meta = SnapshotMeta {
            last_log_id: d.last_applied,
            last_membership: d.last_membership.clone(),
            snapshot_id,
        };
        let body = d
            .state
            .snapshot()
            .map_err(|e| e.to_string())
            .and_then(|state| {
                encode(&SnapshotBody {
                    meta: meta.clone(),
                    state,
                })
                .map_err(|e| e.to_string())
            });
        SnapshotBuilder {
            meta,
            body,
            disk: self.disk.clone(),
            epoch: self.epoch,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let (body_meta, state) = decode_body(&bytes).map_err(|e| snap_err(meta, e, false))?;
        if body_meta.last_log_id != meta.last_log_id {
            return Err(snap_err(
                meta,
                format!(
                    "snapshot body is at {:?}, its meta says {:?}",
                    body_meta.last_log_id, meta.last_log_id
                ),
                false,
            ));
        }
        // Durable first, then in memory, as the real store does.
        if !lock(&self.disk).put_snapshot(self.epoch, meta.clone(), bytes) {
            return Err(snap_err(meta, "the node crashed", true));
        }
        let mut d = lock(&self.data);
        d.state = state;
        d.last_applied = meta.last_log_id;
        d.last_membership = meta.last_membership.clone();
        d.touched.add(Touch::All);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let d = lock(&self.disk);
        Ok(d.snapshot().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

/// Persists the body taken when openraft asked for the builder.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    body: Result<Vec<u8>, String>,
    disk: SharedDisk,
    epoch: u64,
}

impl RaftSnapshotBuilder<SimTypes> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let body = self
            .body
            .clone()
            .map_err(|e| snap_err(&self.meta, e, true))?;
        if !lock(&self.disk).put_snapshot(self.epoch, self.meta.clone(), body.clone()) {
            return Err(snap_err(&self.meta, "the node crashed", true));
        }
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(body)),
        })
    }
}
