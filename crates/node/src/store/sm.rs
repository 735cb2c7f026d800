//! The Raft state machine: `cairn-state` in memory, snapshots on disk.
//!
//! Restart = the latest persisted snapshot + replay of the committed log
//! after it (openraft replays from `applied_state()` up to the committed
//! index the log store kept). The state is shared with the gRPC services
//! through [`SmHandle`] for reads; only openraft's apply path mutates it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use cairn_sched::Touch;
use cairn_state::{EntryMeta, State};
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::types::{
    decode, encode, LogId, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

const FILE_MAGIC: &[u8; 8] = b"CAIRNRSN";
const FILE_VERSION: u32 = 1;
const SNAPSHOT_FILE: &str = "snapshot";

/// What is shared between openraft's state-machine worker and the readers.
#[derive(Debug)]
pub struct SmData {
    pub state: State,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    /// What applied commands changed, for the leader's scheduler (empty and
    /// free while no runner listens).
    pub touched: Mutex<Touched>,
    /// Woken when something the upgrade gate decides on was applied: a
    /// member's or chunk's advertisement, a session opening or ending, a
    /// chunk registering, the hold, an activation, a membership change.
    /// (A counter: each waiter has its own receiver, so none steals
    /// another's wake-up.)
    pub upgrade_inputs: tokio::sync::watch::Sender<u64>,
}

/// Does an applied command change what the upgrade gate decides on?
fn moves_upgrade_inputs(cmd: &cairn_state::Cmd) -> bool {
    use cairn_state::Cmd::*;
    matches!(
        cmd,
        AdvertiseMember { .. }
            | AdvertiseChunk { .. }
            | OpenSession { .. }
            | CloseSession { .. }
            | ExpireSession { .. }
            | RegisterChunk { .. }
            | SetChunkState { .. }
            | HoldUpgrade { .. }
            | ActivateFeature { .. }
    )
}

/// Most extents remembered one by one before the feed falls back to "all".
const TOUCHED_MAX: usize = 1 << 16;

/// The applied-command feed of the copy runner: the extents applied
/// commands changed since it last looked, or "everything" when too many did,
/// when a snapshot replaced the state, or when nobody listened.
#[derive(Debug, Default)]
pub struct Touched {
    pub listening: bool,
    pub all: bool,
    pub unpark: bool,
    pub pids: Vec<cairn_state::Pid>,
}

impl Touched {
    /// Records what one applied command changed (only while listening).
    pub fn add(&mut self, t: Touch) {
        if !self.listening {
            return;
        }
        match t {
            Touch::Nothing => {}
            Touch::Unpark => self.unpark = true,
            Touch::All => self.set_all(),
            Touch::Extent(pid) if !self.all => {
                if self.pids.len() >= TOUCHED_MAX {
                    self.set_all();
                } else {
                    self.pids.push(pid);
                }
            }
            Touch::Extent(_) => {}
        }
    }

    fn set_all(&mut self) {
        self.all = true;
        self.pids = Vec::new();
    }

    /// Everything touched since the last call; starts listening.
    pub fn take(&mut self) -> Touched {
        let was = std::mem::take(self);
        self.listening = true;
        Touched {
            all: was.all || !was.listening,
            ..was
        }
    }

    /// Stops listening (no runner any more).
    pub fn stop(&mut self) {
        *self = Touched::default();
    }
}

/// A cheap, cloneable read handle on the state machine.
#[derive(Clone, Debug)]
pub struct SmHandle(Arc<RwLock<SmData>>);

impl SmHandle {
    /// Read access. A poisoned lock (a panic while writing) still yields the
    /// data: apply never panics by design, and a reader must not crash.
    pub fn read(&self) -> RwLockReadGuard<'_, SmData> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SmData> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The snapshot as transferred to followers and kept on disk.
#[derive(Serialize, Deserialize, Debug)]
struct SnapshotBody {
    meta: SnapshotMeta,
    /// `cairn_state::State::snapshot()` bytes (checksummed on their own).
    state: Vec<u8>,
}

#[derive(thiserror::Error, Debug)]
pub enum SmOpenError {
    #[error("cannot create state-machine directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read snapshot file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The latest snapshot: its meta and the bytes of its [`SnapshotBody`].
type Current = Arc<RwLock<Option<(SnapshotMeta, Arc<Vec<u8>>)>>>;

/// What the snapshot file on disk covers: the index of its last entry (None:
/// no snapshot yet), or why writing one failed. The log store purges no
/// entry beyond it ([`crate::store::log::LogStore::gate_purges`]).
pub type Persisted = Result<Option<u64>, String>;

pub struct StateMachineStore {
    data: SmHandle,
    file: SnapshotFile,
    current: Current,
    snapshot_seq: u64,
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, loading the latest snapshot if there
    /// is one. A snapshot file that cannot be read or verified is an error
    /// naming the file: the node must not start from an empty state instead.
    pub fn open(dir: &Path) -> Result<StateMachineStore, SmOpenError> {
        std::fs::create_dir_all(dir).map_err(|source| SmOpenError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(SNAPSHOT_FILE);
        let mut data = SmData {
            state: State::new(),
            last_applied: None,
            last_membership: StoredMembership::default(),
            touched: Mutex::default(),
            upgrade_inputs: tokio::sync::watch::Sender::new(0),
        };
        let mut current = None;
        match std::fs::read(&path) {
            Ok(bytes) => {
                let corrupt = |reason: String| SmOpenError::Corrupt {
                    path: path.clone(),
                    reason,
                };
                let body_bytes = unseal(&bytes).map_err(corrupt)?;
                let (meta, state) = decode_body(body_bytes).map_err(corrupt)?;
                data = SmData {
                    state,
                    last_applied: meta.last_log_id,
                    last_membership: meta.last_membership.clone(),
                    touched: Mutex::default(),
                    upgrade_inputs: tokio::sync::watch::Sender::new(0),
                };
                current = Some((meta, Arc::new(body_bytes.to_vec())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SmOpenError::Read { path, source }),
        }
        let covered = current
            .as_ref()
            .and_then(|(meta, _)| meta.last_log_id.map(|l| l.index));
        Ok(StateMachineStore {
            data: SmHandle(Arc::new(RwLock::new(data))),
            file: SnapshotFile {
                dir: dir.to_path_buf(),
                lock: Arc::default(),
                persisted: Arc::new(tokio::sync::watch::Sender::new(Ok(covered))),
            },
            current: Arc::new(RwLock::new(current)),
            snapshot_seq: 0,
        })
    }

    pub fn handle(&self) -> SmHandle {
        self.data.clone()
    }

    /// Follows what the snapshot file on disk covers.
    pub fn persisted(&self) -> tokio::sync::watch::Receiver<Persisted> {
        self.file.persisted.subscribe()
    }
}

/// The snapshot file of a state machine. openraft 0.9 builds a snapshot in
/// a task of its own, beside the worker that may install one received from
/// the leader meanwhile: writes are serialized, and an older snapshot never
/// replaces a newer one on disk (the log is purged behind the newer one).
#[derive(Clone)]
struct SnapshotFile {
    dir: PathBuf,
    lock: Arc<Mutex<()>>,
    persisted: Arc<tokio::sync::watch::Sender<Persisted>>,
}

impl SnapshotFile {
    /// Writes `body`, the snapshot up to `index`, unless the file already
    /// covers more (then false). Blocking.
    fn write(&self, body: &[u8], index: Option<u64>) -> std::io::Result<bool> {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(&*self.persisted.borrow(), Ok(covered) if *covered > index) {
            return Ok(false);
        }
        match persist(&self.dir, body) {
            Ok(()) => {
                self.persisted.send_modify(|p| *p = Ok(index));
                Ok(true)
            }
            Err(e) => {
                self.persisted.send_modify(|p| *p = Err(e.to_string()));
                Err(e)
            }
        }
    }

    async fn write_async(&self, body: Arc<Vec<u8>>, index: Option<u64>) -> std::io::Result<bool> {
        let file = self.clone();
        tokio::task::spawn_blocking(move || file.write(&body, index))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
    }
}

/// Where the state machine in `dir` keeps its snapshot.
pub fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}

/// Writes the snapshot file atomically: temp file, fsync, rename, fsync dir.
/// An error names the file it failed on; a failed temp file is removed
/// (on a full disk it would only hold space).
fn persist(dir: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let on = |what: &str, path: &Path| {
        let what = what.to_string();
        let path = path.display().to_string();
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what} {path}: {e}"))
    };
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&seal(body))?;
            f.sync_all()
        })
        .map_err(on("writing snapshot file", &tmp));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let file = dir.join(SNAPSHOT_FILE);
    std::fs::rename(&tmp, &file).map_err(on("renaming to", &file))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(on("syncing directory", dir))
}

fn publish(current: &Current, meta: SnapshotMeta, body: Arc<Vec<u8>>) {
    *current.write().unwrap_or_else(|p| p.into_inner()) = Some((meta, body));
}

/// `magic | version u32 LE | len u64 LE | xxh3 u64 LE | body`
fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 + body.len());
    out.extend_from_slice(FILE_MAGIC);
    out.extend_from_slice(&FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxh3_64(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn unseal(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < 28 {
        return Err(format!(
            "{} bytes, shorter than the 28-byte header",
            bytes.len()
        ));
    }
    let (header, body) = bytes.split_at(28);
    if &header[..8] != FILE_MAGIC {
        return Err("bad magic: not a Cairn snapshot file".into());
    }
    let word = |from: usize, len: usize| {
        let mut b = [0u8; 8];
        b[..len].copy_from_slice(&header[from..from + len]);
        u64::from_le_bytes(b)
    };
    if word(8, 4) != u64::from(FILE_VERSION) {
        return Err(format!("unknown file version {}", word(8, 4)));
    }
    if word(12, 8) != body.len() as u64 {
        return Err(format!(
            "header says {} bytes, body has {} (torn write?)",
            word(12, 8),
            body.len()
        ));
    }
    if word(20, 8) != xxh3_64(body) {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

/// A snapshot file's bytes as written to disk and sent by InstallSnapshot
/// (the fuzz targets of `cairn-chaos fuzz` build their seeds with it).
pub fn encode_snapshot_file(meta: &SnapshotMeta, state: &State) -> Result<Vec<u8>, String> {
    let body = SnapshotBody {
        meta: meta.clone(),
        state: state.snapshot().map_err(|e| e.to_string())?,
    };
    Ok(seal(
        &crate::types::encode(&body).map_err(|e| e.to_string())?,
    ))
}

/// Reads a snapshot file's bytes: header, checksum, body, state.
pub fn decode_snapshot_file(bytes: &[u8]) -> Result<(SnapshotMeta, State), String> {
    decode_body(unseal(bytes)?)
}

/// Reads a snapshot as InstallSnapshot carries it (the file's body):
/// the member checks a received snapshot with it before openraft installs
/// it (crate::raft_service).
pub fn decode_snapshot_body(bytes: &[u8]) -> Result<(SnapshotMeta, State), String> {
    decode_body(bytes)
}

/// Seals `body` as a snapshot file (header and checksum of a body that
/// may be anything: the fuzz targets reach the decoder behind the checksum).
pub fn seal_snapshot_body(body: &[u8]) -> Vec<u8> {
    seal(body)
}

fn decode_body(bytes: &[u8]) -> Result<(SnapshotMeta, State), String> {
    let body: SnapshotBody = decode(bytes)?;
    let state = State::restore(&body.state).map_err(|e| e.to_string())?;
    Ok((body.meta, state))
}

fn io_err(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e)
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let d = self.data.read();
        Ok((d.last_applied, d.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = crate::types::Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut d = self.data.write();
        for entry in entries {
            let log_id = entry.log_id;
            let response = match entry.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(req) => {
                    let meta = EntryMeta {
                        index: log_id.index,
                        term: log_id.leader_id.term,
                        leader_time_ms: req.leader_time_ms,
                    };
                    let results = d.state.apply_batch(meta, &req.cmds);
                    let expired = req
                        .cmds
                        .iter()
                        .zip(&results)
                        .filter(|(c, r)| {
                            r.is_ok() && matches!(c, cairn_state::Cmd::ExpireSession { .. })
                        })
                        .count();
                    crate::metrics::sessions_expired(log_id.index, expired as u64);
                    if req
                        .cmds
                        .iter()
                        .zip(&results)
                        .any(|(c, r)| r.is_ok() && moves_upgrade_inputs(c))
                    {
                        d.upgrade_inputs.send_modify(|n| *n += 1);
                    }
                    let touched = d.touched.get_mut().unwrap_or_else(|p| p.into_inner());
                    if touched.listening {
                        for (cmd, r) in req.cmds.iter().zip(&results) {
                            if r.is_ok() {
                                touched.add(Touch::of(cmd));
                            }
                        }
                    }
                    Response { results }
                }
                EntryPayload::Membership(m) => {
                    d.last_membership = StoredMembership::new(Some(log_id), m);
                    d.upgrade_inputs.send_modify(|n| *n += 1);
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
        // Encode under the read lock, so the snapshot is exactly the state
        // at last_applied; persisting happens in build_snapshot.
        let d = self.data.read();
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
            file: self.file.clone(),
            current: self.current.clone(),
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
        let err = |e: String| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                io_err(e),
            ))
        };
        let (body_meta, state) = decode_body(&bytes).map_err(err)?;
        if body_meta.last_log_id != meta.last_log_id {
            return Err(err(format!(
                "snapshot body is at {:?}, its meta says {:?}",
                body_meta.last_log_id, meta.last_log_id
            )));
        }
        let bytes = Arc::new(bytes);
        self.file
            .write_async(bytes.clone(), meta.last_log_id.map(|l| l.index))
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
            })?;
        {
            let mut d = self.data.write();
            d.state = state;
            d.last_applied = meta.last_log_id;
            d.last_membership = meta.last_membership.clone();
            d.touched
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .add(Touch::All);
            d.upgrade_inputs.send_modify(|n| *n += 1);
        }
        publish(&self.current, meta.clone(), bytes);
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        Ok(current.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.as_ref().clone())),
        }))
    }
}

/// Builds a snapshot: the bytes are taken when openraft asks for the
/// builder; `build_snapshot` persists them and publishes them as current.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    body: Result<Vec<u8>, String>,
    file: SnapshotFile,
    /// Where to publish the built snapshot (shared with the store).
    current: Current,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let signature = Some(self.meta.signature());
        let body = self.body.clone().map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(signature.clone(), io_err(e)))
        })?;
        let body = Arc::new(body);
        let written = self
            .file
            .write_async(body.clone(), self.meta.last_log_id.map(|l| l.index))
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(signature, &e)))?;
        if written {
            publish(&self.current, self.meta.clone(), body.clone());
            tracing::info!(snapshot = %self.meta.snapshot_id, bytes = body.len(), "snapshot persisted");
        } else {
            tracing::info!(snapshot = %self.meta.snapshot_id, "snapshot not persisted: a newer one is on disk");
        }
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(body.as_ref().clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, Request};
    use cairn_state::{Cmd, Reply};
    use openraft::{CommittedLeaderId, LogId};

    fn entry(index: u64, cmds: Vec<Cmd>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request {
                leader_time_ms: 1_000 + index,
                cmds,
            }),
        }
    }

    fn register(host: &str) -> Cmd {
        Cmd::RegisterChunk {
            hostname: host.into(),
            data_addr: String::new(),
            brick: None,
            version: "1".into(),
            capabilities: vec![],
        }
    }

    #[tokio::test]
    async fn applies_batches_and_restarts_from_its_persisted_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        let out = sm
            .apply(vec![
                entry(1, vec![register("a"), register("b")]),
                entry(2, vec![register("c")]),
            ])
            .await
            .unwrap();
        assert_eq!(out[0].results, vec![Ok(Reply::Cid(1)), Ok(Reply::Cid(2))]);
        assert_eq!(out[1].results, vec![Ok(Reply::Cid(3))]);
        let digest = sm.handle().read().state.digest();

        // Given a snapshot at index 2, when the store reopens, then it is back at index 2.
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));
        drop(sm);
        let mut reopened = StateMachineStore::open(dir.path()).unwrap();
        let (applied, _) = reopened.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
        assert_eq!(reopened.handle().read().state.digest(), digest);
        assert!(reopened.get_current_snapshot().await.unwrap().is_some());

        // And a follower installing that snapshot ends with the same state.
        let other = tempfile::tempdir().unwrap();
        let mut follower = StateMachineStore::open(other.path()).unwrap();
        follower
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(follower.handle().read().state.digest(), digest);
        assert_eq!(
            StateMachineStore::open(other.path())
                .unwrap()
                .handle()
                .read()
                .state
                .digest(),
            digest
        );
    }

    #[tokio::test]
    async fn the_touched_feed_reports_applied_changes_only_while_a_runner_listens() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        let h = sm.handle();
        let take = || h.read().touched.lock().unwrap().take();
        // Nobody listened yet: the first look is "everything".
        sm.apply(vec![entry(1, vec![register("a")])]).await.unwrap();
        let first = take();
        assert!(first.all && first.pids.is_empty());
        // Listening now: a rejected command touches nothing, a config change
        // touches everything, a space report only unparks.
        let bad = Cmd::UpdateExtent(cairn_state::UpdateExtent {
            pid: 9,
            expected_generation: 1,
            loc: None,
            alive_loc: None,
            lease_owner: None,
        });
        sm.apply(vec![entry(2, vec![bad])]).await.unwrap();
        let t = take();
        assert!(!t.all && !t.unpark && t.pids.is_empty(), "{t:?}");
        sm.apply(vec![entry(
            3,
            vec![Cmd::SetConfig {
                key: "lease_ms".into(),
                value: "7000".into(),
            }],
        )])
        .await
        .unwrap();
        assert!(take().all);
        assert!(!take().all, "taken once");
        // After stop(), nothing is collected, and the next look is "everything" again.
        h.read().touched.lock().unwrap().stop();
        sm.apply(vec![entry(4, vec![register("b")])]).await.unwrap();
        assert!(h.read().touched.lock().unwrap().pids.is_empty());
        assert!(take().all);
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile {
            dir: dir.path().to_path_buf(),
            lock: Arc::default(),
            persisted: Arc::new(tokio::sync::watch::Sender::new(Ok(None))),
        };
        let gate = file.persisted.subscribe();
        // One installed from the leader up to 50,
        assert!(file.write(b"fifty", Some(50)).unwrap());
        // then a build begun before it, up to 40, finishes: skipped.
        assert!(!file.write(b"forty", Some(40)).unwrap());
        let on_disk = std::fs::read(snapshot_path(dir.path())).unwrap();
        assert_eq!(unseal(&on_disk).unwrap(), b"fifty");
        assert_eq!(*gate.borrow(), Ok(Some(50)));
        // A newer one replaces it.
        assert!(file.write(b"sixty", Some(60)).unwrap());
        assert_eq!(*gate.borrow(), Ok(Some(60)));
    }

    #[tokio::test]
    async fn a_corrupt_snapshot_file_refuses_to_open_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        sm.apply(vec![entry(1, vec![register("a")])]).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        drop(sm);
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let before = std::fs::read(&path).unwrap();
        match StateMachineStore::open(dir.path()) {
            Err(e @ SmOpenError::Corrupt { .. }) => {
                assert!(e.to_string().contains(&path.display().to_string()), "{e}");
                assert!(e.to_string().contains("checksum"), "{e}");
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("a corrupt snapshot must not open"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), before, "nothing rewritten");
        // A truncated file (torn write) is refused too.
        std::fs::write(&path, &before[..before.len() / 2]).unwrap();
        assert!(matches!(
            StateMachineStore::open(dir.path()),
            Err(SmOpenError::Corrupt { .. })
        ));
    }
}
