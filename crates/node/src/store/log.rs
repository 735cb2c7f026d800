//! The Raft log on RocksDB: entries, vote, committed and purge pointers, and
//! the identity of the data dir.
//!
//! Layout, one RocksDB per node:
//! - column family `logs`: key = log index as 8-byte big-endian (so that
//!   RocksDB's bytewise order is index order), value = the openraft `Entry`
//!   encoded with [`crate::types::encode`];
//! - column family `meta`: `vote`, `committed`, `last_purged` and `identity`,
//!   each bincode-encoded.
//!
//! Durability: every write (append, vote, committed, truncate, purge) goes
//! through ONE writer thread, in submission order. The thread takes whatever
//! is queued, puts all of it into one `WriteBatch`, writes it with
//! `sync = true` (the WAL is fsync'd before the write returns), and only then
//! completes each job in order: `LogFlushed::log_io_completed(Ok(()))` for
//! appends, a oneshot reply for the others. Several appends queued during one
//! fsync therefore share the next fsync (group commit), and a later write can
//! never become durable before an earlier one, which is the ordering rule of
//! `RaftLogStorage`. The committed index is the one exception to the sync:
//! it is a restart hint (`save_committed`), so a batch of nothing but hints
//! is written without an fsync, and its saver does not wait. After a failed
//! write the thread refuses every later job: writing past a failed batch
//! could leave a hole in the log.
//!
//! `append` returns as soon as its job is queued, but openraft requires its
//! entries to be readable from then on. Readers therefore wait, before each
//! read, until the writer has finished every job submitted before the read
//! started (the `submitted` counter versus the `flushed` watch channel). In
//! practice they never wait: openraft 0.9 awaits each append's callback.

// `StorageError<u64>` is large, but it is the error type openraft's traits
// impose; the helpers return it as is rather than boxing and unboxing it.
#![allow(clippy::result_large_err)]

use std::fmt::{Debug, Display};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBRecoveryMode, Direction, IteratorMode, Options,
    ReadOptions, WriteBatch, WriteOptions, DB,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::types::{decode, encode, Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
/// Every column family of a Cairn log store; RocksDB always has `default`.
const COLUMN_FAMILIES: [&str; 3] = ["default", CF_LOGS, CF_META];

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_IDENTITY: &[u8] = b"identity";

/// Which node and cluster a data dir belongs to. The server refuses to start
/// on a data dir whose identity is not its own.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub node_id: u64,
    pub cluster_id: u64,
}

#[derive(thiserror::Error, Debug)]
pub enum OpenError {
    #[error("log store {path:?}: cannot inspect or create the directory: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("log store {path:?}: not empty and not a readable RocksDB (left untouched): {source}")]
    NotADb {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error(
        "log store {path:?}: column families {found:?}, not {COLUMN_FAMILIES:?} (left untouched)"
    )]
    ColumnFamilies { path: PathBuf, found: Vec<String> },
    #[error("log store {path:?}: cannot open RocksDB: {source}{detail}")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
        /// Which file is damaged, when RocksDB's error does not say (a bad
        /// WAL record): from its info LOG, or the WAL files listed.
        detail: String,
    },
    #[error("log store {path:?}: cannot read the identity of the data dir: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("log store {path:?}: cannot read the log: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("log store {path:?} is damaged: {reason}; refusing to start (restore the data dir from a backup, or wipe it and add this member back: the other members hold the log)")]
    Damaged { path: PathBuf, reason: String },
    #[error("log store {path:?}: cannot start the writer thread: {source}")]
    Writer { path: PathBuf, source: io::Error },
}

/// What a job completes with: the writer calls it after the job's batch was
/// synced (or failed).
type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// One write, already encoded by the caller (encoding errors stay on the
/// caller's side, where they can name the entry).
enum Op {
    /// `(index, encoded entry)`, in index order.
    Append(Vec<(u64, Vec<u8>)>),
    PutMeta(&'static [u8], Vec<u8>),
    /// A `meta` key that is only a hint (the committed index): written in
    /// order with the rest, but a batch holding only hints is not fsync'd.
    PutHint(&'static [u8], Vec<u8>),
    /// Delete every entry with index >= this.
    Truncate(u64),
    /// Delete every entry with index <= `index` and record `log_id` (encoded)
    /// as last purged, in the same batch.
    Purge {
        index: u64,
        log_id: Vec<u8>,
    },
}

struct Job {
    seq: u64,
    op: Op,
    done: Done,
}

/// What [`LogStore::dump`] read.
pub struct LogDump {
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
    pub entries: Vec<Entry>,
}

/// The read side, shared with openraft's replication tasks: cheap to clone.
#[derive(Clone)]
pub struct LogReader {
    db: Arc<DB>,
    /// Sequence number of the last job handed to the writer.
    submitted: Arc<AtomicU64>,
    /// Sequence number of the last job the writer completed.
    flushed: watch::Receiver<u64>,
}

/// The Raft log store. Dropping it stops the writer thread (after it has
/// finished what is queued); the DB closes when the last [`LogReader`] is gone.
pub struct LogStore {
    reader: LogReader,
    tx: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    syncs: Arc<AtomicU64>,
    /// What the state machine's snapshot file covers: no purge goes beyond
    /// it ([`LogStore::gate_purges`]). None: purges are not gated.
    purge_gate: Option<watch::Receiver<crate::store::sm::Persisted>>,
}

/// The RocksDB options of every open of a log store, read-only or not.
///
/// WAL recovery mode: `TolerateCorruptedTailRecords` (docs/security.md,
/// "Disk faults", compares the four). Every write that acknowledged
/// anything was fsync'd, so the only damage a process crash can leave is
/// an incomplete last record, which is dropped; a record that fails its
/// checksum anywhere else is damage to synced data and stops the open.
/// (RocksDB's default, `PointInTime`, would open with the prefix before the
/// damage and silently drop synced entries and votes after it.)
fn db_options() -> Options {
    let mut opts = Options::default();
    opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    opts.set_paranoid_checks(true);
    // A closed WAL that goes missing (or is shorter than recorded) stops the open
    // instead of quietly losing what it held.
    opts.set_track_and_verify_wals_in_manifest(true);
    opts
}

impl LogStore {
    /// The identity recorded in the log store at `dir`, read without writing
    /// anything (a read-only RocksDB open), so a member can refuse a data dir
    /// that is not its own and leave it exactly as it was. None: no store yet.
    pub fn peek_identity(dir: &Path) -> Result<Option<Identity>, OpenError> {
        let path = dir.to_path_buf();
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_none() {
                    return Ok(None);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(OpenError::Dir { path, source }),
        }
        let opts = db_options();
        check_column_families(&opts, dir)?;
        let db =
            DB::open_cf_for_read_only(&opts, dir, [CF_LOGS, CF_META], false).map_err(|source| {
                OpenError::Open {
                    path: path.clone(),
                    detail: damage_detail(dir, &source, false),
                    source,
                }
            })?;
        read_meta(&db, KEY_IDENTITY, StorageIOError::read).map_err(|e| OpenError::Identity {
            path,
            reason: e.to_string(),
        })
    }

    /// The committed log id, the last purged one and every entry still in
    /// the store at `dir`, read without writing anything (a read-only
    /// RocksDB open): for post-mortems of a stopped member
    /// (`cairn debug dump-log`, the chaos checker's log replay).
    pub fn dump(dir: &Path) -> Result<LogDump, OpenError> {
        let path = dir.to_path_buf();
        let opts = db_options();
        check_column_families(&opts, dir)?;
        let db =
            DB::open_cf_for_read_only(&opts, dir, [CF_LOGS, CF_META], false).map_err(|source| {
                OpenError::Open {
                    path: path.clone(),
                    detail: damage_detail(dir, &source, false),
                    source,
                }
            })?;
        let bad = |e: StorageError| OpenError::Read {
            path: path.clone(),
            reason: e.to_string(),
        };
        let committed: Option<Option<LogId>> =
            read_meta(&db, KEY_COMMITTED, StorageIOError::read).map_err(bad)?;
        let reader = LogReader {
            db: Arc::new(db),
            submitted: Arc::new(AtomicU64::new(0)),
            flushed: watch::channel(0).1,
        };
        let state = reader.log_state().map_err(bad)?;
        let entries = reader.read_range(..).map_err(bad)?;
        Ok(LogDump {
            committed: committed.flatten(),
            last_purged: state.last_purged_log_id,
            entries,
        })
    }

    /// Opens (or creates) the log store at `dir`.
    ///
    /// The DB is created only if `dir` is absent or an empty directory. A
    /// non-empty directory must already hold a RocksDB with exactly Cairn's
    /// column families, checked by reading its MANIFEST before opening; a
    /// directory left by an interrupted first start, another program or a
    /// damaged DB is reported, never repaired or overwritten: the operator
    /// decides whether to wipe it.
    pub fn open(dir: &Path) -> Result<LogStore, OpenError> {
        let path = dir.to_path_buf();
        let dir_err = |source| OpenError::Dir {
            path: path.clone(),
            source,
        };
        let fresh = match std::fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(dir_err)?;
                true
            }
            Err(e) => return Err(dir_err(e)),
        };

        let mut opts = db_options();
        opts.create_if_missing(fresh);
        opts.create_missing_column_families(fresh);
        // `meta` is written often but stays tiny, so it would rarely be
        // flushed and would pin old WAL files; this bound forces its flush.
        opts.set_max_total_wal_size(256 << 20);
        if !fresh {
            check_column_families(&opts, dir)?;
            // Every block of the log is read once, its checksum verified and
            // every entry decoded, so damage is found now, naming the file,
            // rather than when a lagging follower needs an old entry; and
            // through a read-only open, so that a refusal leaves the store
            // exactly as it was (a writable open replays and flushes the WAL
            // and writes a new MANIFEST first).
            let db = DB::open_cf_for_read_only(&opts, dir, [CF_LOGS, CF_META], false).map_err(
                |source| OpenError::Open {
                    path: path.clone(),
                    detail: damage_detail(dir, &source, false),
                    source,
                },
            )?;
            check_log(&db).map_err(|reason| OpenError::Damaged {
                path: path.clone(),
                reason,
            })?;
        }
        let cfs =
            [CF_LOGS, CF_META].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|source| OpenError::Open {
            path: path.clone(),
            detail: damage_detail(dir, &source, true),
            source,
        })?;
        let db = Arc::new(db);

        let (tx, rx) = mpsc::channel();
        let (flushed_tx, flushed) = watch::channel(0);
        let syncs = Arc::new(AtomicU64::new(0));
        let writer = {
            let (db, syncs) = (db.clone(), syncs.clone());
            std::thread::Builder::new()
                .name("cairn-log-writer".into())
                .spawn(move || writer_loop(&db, rx, &flushed_tx, &syncs))
                .map_err(|source| OpenError::Writer { path, source })?
        };
        Ok(LogStore {
            reader: LogReader {
                db,
                submitted: Arc::new(AtomicU64::new(0)),
                flushed,
            },
            tx: Some(tx),
            writer: Some(writer),
            syncs,
            purge_gate: None,
        })
    }

    /// From now on a purge waits until the snapshot file on disk covers the
    /// entries it deletes. openraft 0.9 purges the log up to a snapshot
    /// received from the leader as soon as it has queued the snapshot's
    /// installation, so a crash before the snapshot file is written would
    /// leave a log purged past the state it can rebuild: a member that could
    /// never start again. (The wait holds openraft's core for as long as
    /// the snapshot takes to write, only on that path: a snapshot this
    /// member built is on disk before openraft purges behind it.)
    pub fn gate_purges(&mut self, persisted: watch::Receiver<crate::store::sm::Persisted>) {
        self.purge_gate = Some(persisted);
    }

    /// The identity recorded in this data dir, if any.
    pub fn read_identity(&self) -> Result<Option<Identity>, StorageError> {
        read_meta(&self.reader.db, KEY_IDENTITY, StorageIOError::read)
    }

    /// Records the identity of this data dir (a synced write). Blocking: meant
    /// for startup, before Raft runs.
    pub fn write_identity(&self, identity: &Identity) -> Result<(), StorageError> {
        let err = |e: String| sto_err(StorageIOError::write, format!("meta key `identity`: {e}"));
        let bytes = encode(identity).map_err(|e| err(e.to_string()))?;
        let meta = cf(&self.reader.db, CF_META).map_err(|e| err(e.to_string()))?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.reader
            .db
            .put_cf_opt(meta, KEY_IDENTITY, bytes, &wo)
            .map_err(|e| err(e.to_string()))
    }

    /// How many synced batches the writer has written: appends per sync shows
    /// how much group commit happens.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Queues a job for the writer thread. Every caller holds `&mut self` or
    /// owns the store, so sequence numbers are handed out in queue order.
    fn submit(&self, op: Op, done: Done) -> io::Result<()> {
        let Some(tx) = &self.tx else {
            return Err(writer_gone());
        };
        let seq = self.reader.submitted.fetch_add(1, Ordering::AcqRel) + 1;
        tx.send(Job { seq, op, done })
            .map_err(|mpsc::SendError(job)| {
                (job.done)(Err(writer_gone()));
                writer_gone()
            })
    }

    /// Queues a job and waits until it is durable.
    async fn write_and_wait(&self, op: Op) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.submit(
            op,
            Box::new(move |result| {
                // The waiter may have been cancelled; nothing to tell then.
                let _ = tx.send(result);
            }),
        )?;
        rx.await.map_err(|_| writer_gone())?
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop once the queue is drained;
        // joining makes sure the DB is no longer written when drop returns.
        self.tx.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the log writer thread panicked");
            }
        }
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the log writer thread has stopped")
}

fn cf<'a>(db: &'a DB, name: &str) -> io::Result<&'a ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| io::Error::other(format!("column family `{name}` is not open")))
}

fn writer_loop(db: &DB, rx: mpsc::Receiver<Job>, flushed: &watch::Sender<u64>, syncs: &AtomicU64) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        // Group commit: everything queued while the previous batch was being
        // synced goes into this one.
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let result = match &failed {
            Some(reason) => Err(io::Error::other(format!(
                "an earlier log write failed ({reason}); refusing later writes"
            ))),
            None => write_group(db, &jobs, syncs),
        };
        if let (Err(e), None) = (&result, &failed) {
            tracing::error!(error = %e, jobs = jobs.len(), "log write failed");
            failed = Some(e.to_string());
        }
        // Readers waiting for these jobs may go on (after a failure they see
        // what is on disk; the failure itself reaches the writers).
        flushed.send_replace(jobs.last().map_or(0, |j| j.seq));
        for job in jobs {
            let result = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            (job.done)(result);
        }
    }
}

/// Writes all `jobs` as one atomic `WriteBatch` with one WAL fsync.
fn write_group(db: &DB, jobs: &[Job], syncs: &AtomicU64) -> io::Result<()> {
    let (logs, meta) = (cf(db, CF_LOGS)?, cf(db, CF_META)?);
    let mut batch = WriteBatch::default();
    let mut appended = 0usize;
    let mut sync = false;
    for job in jobs {
        sync |= !matches!(job.op, Op::PutHint(..));
        match &job.op {
            Op::Append(entries) => {
                appended += entries.len();
                for (index, bytes) in entries {
                    batch.put_cf(logs, index.to_be_bytes(), bytes);
                }
            }
            Op::PutMeta(key, bytes) | Op::PutHint(key, bytes) => batch.put_cf(meta, key, bytes),
            Op::Truncate(index) => {
                // 9 bytes of 0xff sort after every 8-byte key: deletes up to
                // and including index u64::MAX.
                batch.delete_range_cf(logs, &index.to_be_bytes()[..], &[0xff; 9][..]);
            }
            Op::Purge { index, log_id } => {
                batch.put_cf(meta, KEY_LAST_PURGED, log_id);
                batch.delete_range_cf(logs, 0u64.to_be_bytes(), index.to_be_bytes());
                batch.delete_cf(logs, index.to_be_bytes());
            }
        }
    }
    if batch.is_empty() {
        // Only empty appends: every earlier job is already durable.
        return Ok(());
    }
    let mut wo = WriteOptions::default();
    wo.set_sync(sync);
    db.write_opt(batch, &wo)
        .map_err(|e| io::Error::other(format!("log store {}: {e}", db.path().display())))?;
    if !sync {
        return Ok(());
    }
    syncs.fetch_add(1, Ordering::Relaxed);
    let events = &crate::metrics::EVENTS;
    events.log_syncs.inc();
    if appended > 0 {
        events.entries_per_sync.observe(appended as f64);
    }
    Ok(())
}

/// An openraft error: `mk` picks the subject (logs, vote, ...), `msg` names
/// the key or entry and the cause.
fn sto_err(mk: impl FnOnce(AnyError) -> StorageIOError<NodeId>, msg: String) -> StorageError {
    mk(AnyError::error(msg)).into()
}

fn read_err(msg: impl Display) -> StorageError {
    sto_err(StorageIOError::read_logs, msg.to_string())
}

/// What to add to a failed open's error so that it names the damaged file.
/// RocksDB names a damaged table file or MANIFEST in its error, but a WAL
/// record that fails its checksum only in its info LOG, which a writable
/// open rewrites (`logged`) and a read-only open does not write at all:
/// then the WAL files are listed (there is usually one).
fn damage_detail(dir: &Path, source: &rocksdb::Error, logged: bool) -> String {
    let text = source.to_string();
    if !text.contains("Corruption") {
        return String::new();
    }
    if logged {
        let said = std::fs::read_to_string(dir.join("LOG")).unwrap_or_default();
        let lines: Vec<&str> = said
            .lines()
            .filter(|l| l.contains("dropping") || l.contains("Corruption"))
            // Without the time and thread prefix: `... [file:line] message`.
            .map(|l| l.split_once("] ").map_or(l, |(_, m)| m).trim())
            .collect();
        if !lines.is_empty() {
            let last = &lines[lines.len().saturating_sub(3)..];
            return format!(" (RocksDB's LOG: {})", last.join("; "));
        }
    }
    let names_a_file = [".sst", ".log", "MANIFEST", "CURRENT", "OPTIONS"]
        .iter()
        .any(|f| text.contains(f));
    if names_a_file {
        return String::new();
    }
    let mut wals: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| {
            let len = e.metadata().map_or(0, |m| m.len());
            format!("{} ({len} bytes)", e.path().display())
        })
        .collect();
    wals.sort();
    match wals.as_slice() {
        [] => String::new(),
        [one] => format!(" (found replaying the write-ahead log: the damaged record is in {one})"),
        many => format!(
            " (found replaying the write-ahead log: the damaged record is in one of {})",
            many.join(", ")
        ),
    }
}

/// Reads every entry and `meta` key of an open store: RocksDB verifies each
/// block's checksum as it reads it; each entry must decode as the entry of
/// its key, without a hole before the next.
fn check_log(db: &DB) -> Result<(), String> {
    let meta = |e: StorageError| e.to_string();
    read_meta::<Vote>(db, KEY_VOTE, StorageIOError::read).map_err(meta)?;
    read_meta::<Option<LogId>>(db, KEY_COMMITTED, StorageIOError::read).map_err(meta)?;
    read_meta::<LogId>(db, KEY_LAST_PURGED, StorageIOError::read).map_err(meta)?;
    read_meta::<Identity>(db, KEY_IDENTITY, StorageIOError::read).map_err(meta)?;
    let logs = cf(db, CF_LOGS).map_err(|e| e.to_string())?;
    let mut ro = ReadOptions::default();
    ro.set_verify_checksums(true);
    // A one-off scan: keep the block cache for the reads that matter.
    ro.fill_cache(false);
    let mut prev: Option<u64> = None;
    for item in db.iterator_cf_opt(logs, ro, IteratorMode::Start) {
        let (key, value) = item.map_err(|e| match prev {
            Some(p) => format!("reading the entry after index {p}: {e}"),
            None => format!("reading the first entry: {e}"),
        })?;
        let index = key_index(&key).map_err(|e| e.to_string())?;
        if let Some(p) = prev.filter(|&p| index != p + 1) {
            return Err(format!("hole in the log: index {index} follows {p}"));
        }
        decode_entry(index, &value).map_err(|e| e.to_string())?;
        prev = Some(index);
    }
    Ok(())
}

/// Reads and decodes one `meta` key; `mk` picks the openraft error subject.
/// A non-empty store must hold exactly Cairn's column families (read from
/// the MANIFEST, without opening the DB).
fn check_column_families(opts: &Options, dir: &Path) -> Result<(), OpenError> {
    let path = dir.to_path_buf();
    let mut found = DB::list_cf(opts, dir).map_err(|source| OpenError::NotADb {
        path: path.clone(),
        source,
    })?;
    found.sort();
    let mut expected = COLUMN_FAMILIES.map(String::from).to_vec();
    expected.sort();
    if found != expected {
        return Err(OpenError::ColumnFamilies { path, found });
    }
    Ok(())
}

fn read_meta<T: DeserializeOwned>(
    db: &DB,
    key: &[u8],
    mk: impl Fn(AnyError) -> StorageIOError<NodeId>,
) -> Result<Option<T>, StorageError> {
    let name = String::from_utf8_lossy(key);
    let err = |e: String| sto_err(&mk, format!("meta key `{name}`: {e}"));
    let meta = cf(db, CF_META).map_err(|e| err(e.to_string()))?;
    match db
        .get_pinned_cf(meta, key)
        .map_err(|e| err(e.to_string()))?
    {
        None => Ok(None),
        Some(bytes) => decode(&bytes)
            .map(Some)
            .map_err(|e| err(format!("cannot decode: {e}"))),
    }
}

/// Decodes the entry stored under log key `index` and checks it is the entry
/// of that index. (Public for the fuzz targets of `cairn-chaos fuzz`.)
pub fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    let at_index = |e| StorageIOError::read_log_at_index(index, e);
    let err = |e: String| sto_err(at_index, format!("logs key {index}: {e}"));
    let entry: Entry = decode(bytes).map_err(|e| err(format!("cannot decode entry: {e}")))?;
    if entry.log_id.index != index {
        return Err(err(format!(
            "holds the entry of index {}",
            entry.log_id.index
        )));
    }
    Ok(entry)
}

fn key_index(key: &[u8]) -> Result<u64, StorageError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| read_err(format!("logs key {key:02x?} is not an 8-byte index")))
}

impl LogReader {
    /// Waits until every write submitted before this call is done, so that a
    /// read sees all entries whose `append` has returned.
    async fn caught_up(&mut self) -> Result<(), StorageError> {
        let target = self.submitted.load(Ordering::Acquire);
        match self.flushed.wait_for(|&done| done >= target).await {
            Ok(_) => Ok(()),
            Err(_) => Err(read_err(writer_gone())),
        }
    }

    fn read_range(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        // Exclusive end; None = to the end of the log.
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        let logs = cf(&self.db, CF_LOGS).map_err(read_err)?;
        let mut out: Vec<Entry> = Vec::new();
        let from = start.to_be_bytes();
        for item in self
            .db
            .iterator_cf(logs, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) =
                item.map_err(|e| read_err(format!("reading logs from index {start}: {e}")))?;
            let index = key_index(&key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            if let Some(prev) = out.last() {
                if index != prev.log_id.index + 1 {
                    return Err(read_err(format!(
                        "hole in the log: index {index} follows {}",
                        prev.log_id.index
                    )));
                }
            }
            out.push(decode_entry(index, &value)?);
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> =
            read_meta(&self.db, KEY_LAST_PURGED, StorageIOError::read_logs)?;
        let logs = cf(&self.db, CF_LOGS).map_err(read_err)?;
        let last = match self.db.iterator_cf(logs, IteratorMode::End).next() {
            None => last_purged,
            Some(item) => {
                let (key, value) =
                    item.map_err(|e| read_err(format!("reading the last log entry: {e}")))?;
                Some(decode_entry(key_index(&key)?, &value)?.log_id)
            }
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.caught_up().await?;
        self.read_range(range)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.reader.caught_up().await?;
        self.reader.log_state()
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let err = |e: String| sto_err(StorageIOError::write_vote, format!("meta key `vote`: {e}"));
        let bytes = encode(vote).map_err(|e| err(e.to_string()))?;
        self.write_and_wait(Op::PutMeta(KEY_VOTE, bytes))
            .await
            .map_err(|e| err(e.to_string()))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.reader.caught_up().await?;
        read_meta(&self.reader.db, KEY_VOTE, StorageIOError::read_vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if let Some(c) = committed {
            crate::metrics::EVENTS
                .commit_index
                .fetch_max(c.index, Ordering::Relaxed);
        }
        let err = |e: String| sto_err(StorageIOError::write, format!("meta key `committed`: {e}"));
        let bytes = encode(&committed).map_err(|e| err(e.to_string()))?;
        // A hint, queued and not awaited: openraft's core waits for this
        // call before it applies, so a synced save would add a whole fsync
        // to every commit round. Losing it in a power loss only makes the
        // restart replay less; reads do not trust it (`linearizable.rs`).
        let done: Done = Box::new(|result| {
            if let Err(e) = result {
                tracing::warn!(error = %e, "saving the committed index (a hint) failed");
            }
        });
        self.submit(Op::PutHint(KEY_COMMITTED, bytes), done)
            .map_err(|e| err(e.to_string()))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.reader.caught_up().await?;
        // The key holds an Option itself (openraft may save `None`).
        let committed: Option<Option<LogId>> =
            read_meta(&self.reader.db, KEY_COMMITTED, StorageIOError::read)?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            match encode(&entry) {
                Ok(bytes) => encoded.push((entry.log_id.index, bytes)),
                Err(e) => {
                    let msg = format!("cannot encode log entry {}: {e}", entry.log_id);
                    tracing::error!("{msg}");
                    callback.log_io_completed(Err(io::Error::other(msg.clone())));
                    let log_id = entry.log_id;
                    return Err(sto_err(|e| StorageIOError::write_log_entry(log_id, e), msg));
                }
            }
        }
        // The callback fires on the writer thread, after the synced write.
        let submitted = std::time::Instant::now();
        self.submit(
            Op::Append(encoded),
            Box::new(move |result| {
                crate::metrics::EVENTS
                    .append_seconds
                    .observe(submitted.elapsed().as_secs_f64());
                callback.log_io_completed(result)
            }),
        )
        .map_err(|e| sto_err(StorageIOError::write_logs, format!("appending: {e}")))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_and_wait(Op::Truncate(log_id.index))
            .await
            .map_err(|e| {
                sto_err(
                    StorageIOError::write_logs,
                    format!("truncating since {log_id}: {e}"),
                )
            })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let err = |e: String| {
            sto_err(
                StorageIOError::write_logs,
                format!("purging up to {log_id}: {e}"),
            )
        };
        if let Some(gate) = &mut self.purge_gate {
            let covered = gate
                .wait_for(|p| match p {
                    Ok(covered) => *covered >= Some(log_id.index),
                    Err(_) => true,
                })
                .await
                .map_err(|_| err("the state machine store is gone".into()))?;
            if let Err(e) = &*covered {
                return Err(err(format!(
                    "the snapshot that covers these entries was not written ({e})"
                )));
            }
        }
        let bytes = encode(&log_id).map_err(|e| err(e.to_string()))?;
        self.write_and_wait(Op::Purge {
            index: log_id.index,
            log_id: bytes,
        })
        .await
        .map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::Cursor;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use cairn_state::Cmd;
    use openraft::storage::{RaftLogStorageExt, RaftStateMachine};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftSnapshotBuilder};
    use tempfile::TempDir;

    use super::*;
    use crate::types::{Request, Response, Snapshot, SnapshotMeta, StoredMembership};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// A normal entry with one command (so the payload is not trivial).
    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Request {
                leader_time_ms: 1_000 + index,
                cmds: vec![Cmd::RenameTopo {
                    id: index,
                    name: format!("rack-{index}"),
                }],
            }),
        }
    }

    fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes.map(|i| entry(term, i)).collect()
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    fn open(dir: &TempDir) -> LogStore {
        match LogStore::open(dir.path()) {
            Ok(store) => store,
            Err(e) => panic!("open: {e}"),
        }
    }

    #[tokio::test]
    async fn append_is_durable_across_reopen() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let mut written = vec![Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        }];
        written.push(Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Membership(Membership::new(
                vec![BTreeSet::from([1, 2, 3])],
                None,
            )),
        });
        written.extend(entries(2, 3..=50));
        {
            let mut store = open(&dir);
            // Through openraft's own LogFlushed: returns once the callback fired.
            store.blocking_append(written[..10].to_vec()).await?;
            store.blocking_append(written[10..].to_vec()).await?;
            assert_eq!(store.try_get_log_entries(..).await?, written);
        }
        let mut store = open(&dir);
        assert_eq!(store.try_get_log_entries(..).await?, written);
        assert_eq!(
            store.try_get_log_entries(5..8).await?,
            written[4..7].to_vec()
        );
        assert_eq!(
            store.try_get_log_entries(49..=60).await?,
            written[48..].to_vec()
        );
        assert_eq!(store.try_get_log_entries(51..).await?, vec![]);
        let state = store.get_log_state().await?;
        assert_eq!(state.last_purged_log_id, None);
        assert_eq!(state.last_log_id, Some(log_id(2, 50)));
        Ok(())
    }

    /// Every file of a directory tree with its bytes, to prove nothing changed.
    fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(tree(&p));
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
        out
    }

    #[tokio::test]
    async fn dump_reads_a_stopped_store_without_changing_a_byte() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let written = entries(3, 1..=20);
        {
            let mut store = open(&dir);
            store.blocking_append(written.clone()).await?;
            store.save_committed(Some(log_id(3, 17))).await?;
        }
        let before = tree(dir.path());
        let dump = match LogStore::dump(dir.path()) {
            Ok(d) => d,
            Err(e) => panic!("dump: {e}"),
        };
        assert_eq!(dump.committed, Some(log_id(3, 17)));
        assert_eq!(dump.last_purged, None);
        assert_eq!(dump.entries, written);
        assert_eq!(
            tree(dir.path()),
            before,
            "a dump must leave the data dir as it was"
        );
        // Not a store: a typed error naming the directory.
        let empty = TempDir::new().unwrap();
        std::fs::write(empty.path().join("junk"), b"x").unwrap();
        match LogStore::dump(empty.path()) {
            Ok(_) => panic!("dumped a directory that holds no store"),
            Err(e) => assert!(
                e.to_string().contains(&empty.path().display().to_string()),
                "{e}"
            ),
        }
        Ok(())
    }

    #[tokio::test]
    async fn vote_and_committed_survive_reopen() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let vote = Vote::new_committed(7, 3);
        {
            let mut store = open(&dir);
            assert_eq!(store.read_vote().await?, None);
            assert_eq!(store.read_committed().await?, None);
            store.save_vote(&Vote::new(6, 2)).await?;
            store.save_vote(&vote).await?;
            store.save_committed(Some(log_id(7, 42))).await?;
        }
        let mut store = open(&dir);
        assert_eq!(store.read_vote().await?, Some(vote));
        assert_eq!(store.read_committed().await?, Some(log_id(7, 42)));
        store.save_committed(None).await?;
        assert_eq!(store.read_committed().await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn the_committed_index_is_a_hint_written_without_its_own_sync() -> Result<(), StorageError>
    {
        let dir = TempDir::new().unwrap();
        let mut store = open(&dir);
        store.blocking_append(entries(1, 1..=3)).await?;
        let syncs = store.sync_count();
        assert!(syncs >= 1, "an append is synced");
        for i in 1..=3 {
            store.save_committed(Some(log_id(1, i))).await?;
        }
        // Readable at once (a read waits for the writer to take it) ...
        assert_eq!(store.read_committed().await?, Some(log_id(1, 3)));
        // ... but no fsync was spent on it.
        assert_eq!(store.sync_count(), syncs);
        // The next synced write carries it along, in order.
        store.save_vote(&Vote::new(2, 1)).await?;
        assert_eq!(store.sync_count(), syncs + 1);
        Ok(())
    }

    #[tokio::test]
    async fn truncate_deletes_from_index_on() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let mut store = open(&dir);
        store.blocking_append(entries(1, 1..=10)).await?;
        store.truncate(log_id(1, 6)).await?;
        assert_eq!(
            indexes(&store.try_get_log_entries(..).await?),
            (1..=5).collect::<Vec<_>>()
        );
        assert_eq!(store.get_log_state().await?.last_log_id, Some(log_id(1, 5)));
        // A new leader's entries replace the truncated ones.
        store.blocking_append(entries(2, 6..=7)).await?;
        assert_eq!(store.get_log_state().await?.last_log_id, Some(log_id(2, 7)));
        store.truncate(log_id(1, 1)).await?;
        assert_eq!(store.try_get_log_entries(..).await?, vec![]);
        let state = store.get_log_state().await?;
        assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));
        drop(store);
        let mut store = open(&dir);
        assert_eq!(store.get_log_state().await?.last_log_id, None);
        Ok(())
    }

    #[tokio::test]
    async fn a_purge_waits_for_the_snapshot_file_that_covers_it() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let mut store = open(&dir);
        let (persisted, gate) = watch::channel(Ok(Some(3)));
        store.gate_purges(gate);
        store.blocking_append(entries(1, 1..=10)).await?;
        // Covered: at once.
        store.purge(log_id(1, 3)).await?;
        // Not covered yet (a received snapshot still being written): the
        // purge waits, and nothing is deleted meanwhile,
        let mut store = {
            let purge =
                tokio::spawn(async move { store.purge(log_id(1, 8)).await.map(|()| store) });
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert!(!purge.is_finished(), "the purge waits for the snapshot");
            // until the snapshot file covers its entries.
            persisted.send_modify(|p| *p = Ok(Some(8)));
            purge.await.unwrap()?
        };
        assert_eq!(indexes(&store.try_get_log_entries(..).await?), vec![9, 10]);
        // A snapshot that could not be written fails the purge, deleting nothing.
        persisted.send_modify(|p| *p = Err("No space left on device".into()));
        let err = store.purge(log_id(1, 9)).await.unwrap_err().to_string();
        assert!(err.contains("No space left"), "{err}");
        assert_eq!(indexes(&store.try_get_log_entries(..).await?), vec![9, 10]);
        Ok(())
    }

    #[tokio::test]
    async fn purge_deletes_up_to_index_and_keeps_last_purged() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let mut store = open(&dir);
        store.blocking_append(entries(1, 1..=10)).await?;
        store.purge(log_id(1, 4)).await?;
        assert_eq!(
            indexes(&store.try_get_log_entries(..).await?),
            (5..=10).collect::<Vec<_>>()
        );
        let state = store.get_log_state().await?;
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 4)));
        assert_eq!(state.last_log_id, Some(log_id(1, 10)));

        // Purging everything: the last log id is the last purged one.
        store.purge(log_id(1, 10)).await?;
        assert_eq!(store.try_get_log_entries(..).await?, vec![]);
        drop(store);
        let mut store = open(&dir);
        let state = store.get_log_state().await?;
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 10)));
        assert_eq!(state.last_log_id, Some(log_id(1, 10)));
        store.blocking_append(entries(1, 11..=11)).await?;
        assert_eq!(
            store.get_log_state().await?.last_log_id,
            Some(log_id(1, 11))
        );
        Ok(())
    }

    /// Appends queued while the writer is busy go out in one synced batch,
    /// their completions fire in submission order, and a read started
    /// before the write finished still sees every submitted entry.
    #[tokio::test]
    async fn queued_appends_share_one_sync_and_complete_in_order() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let store = open(&dir);
        let order = Arc::new(Mutex::new(Vec::new()));
        let record = |i: u64| -> Done {
            let order = order.clone();
            Box::new(move |r: io::Result<()>| {
                assert!(r.is_ok(), "append {i}: {r:?}");
                order.lock().unwrap().push(i);
            })
        };
        let one = |i: u64| Op::Append(vec![(i, encode(&entry(1, i)).unwrap())]);

        // Hold the writer inside the first completion until all the others
        // are queued.
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let first = record(1);
        let db = store.reader.db.clone();
        let held: Done = Box::new(move |r| {
            // Completion comes after the write: the entry is in the DB.
            let logs = cf(&db, CF_LOGS).unwrap();
            assert!(db.get_cf(logs, 1u64.to_be_bytes()).unwrap().is_some());
            first(r);
            let _ = gate_rx.recv();
        });
        let syncs_before = store.sync_count();
        store.submit(one(1), held).unwrap();
        for i in 2..=200 {
            store.submit(one(i), record(i)).unwrap();
        }
        let mut reader = store.reader.clone();
        let read = tokio::spawn(async move { reader.try_get_log_entries(..).await });
        tokio::task::yield_now().await;
        gate_tx.send(()).unwrap();

        let read = read.await.unwrap()?;
        assert_eq!(indexes(&read), (1..=200).collect::<Vec<_>>());
        // Readers are released before completions fire; an empty job
        // completes after every earlier one.
        store.write_and_wait(Op::Append(Vec::new())).await.unwrap();
        assert_eq!(*order.lock().unwrap(), (1..=200).collect::<Vec<_>>());
        let syncs = store.sync_count() - syncs_before;
        assert!(
            (1..=2).contains(&syncs),
            "200 queued appends took {syncs} syncs"
        );
        Ok(())
    }

    #[tokio::test]
    async fn identity_round_trip() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let id = Identity {
            node_id: 3,
            cluster_id: 0xC0FFEE,
        };
        {
            let store = open(&dir);
            assert_eq!(store.read_identity()?, None);
            store.write_identity(&id)?;
            assert_eq!(store.read_identity()?, Some(id));
        }
        assert_eq!(open(&dir).read_identity()?, Some(id));
        Ok(())
    }

    #[tokio::test]
    async fn corrupt_entry_is_an_error_naming_its_key() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let mut store = open(&dir);
        store.blocking_append(entries(1, 1..=5)).await?;
        let db = store.reader.db.clone();
        let logs = cf(&db, CF_LOGS).unwrap();
        db.put_cf(logs, 3u64.to_be_bytes(), b"garbage").unwrap();
        let err = store.try_get_log_entries(..).await.unwrap_err().to_string();
        assert!(err.contains("logs key 3"), "{err}");
        // An entry stored under the wrong key is caught too.
        db.put_cf(logs, 3u64.to_be_bytes(), encode(&entry(1, 4)).unwrap())
            .unwrap();
        let err = store
            .try_get_log_entries(3..4)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("logs key 3") && err.contains("index 4"),
            "{err}"
        );
        // So is a hole.
        db.delete_cf(logs, 3u64.to_be_bytes()).unwrap();
        let err = store.try_get_log_entries(..).await.unwrap_err().to_string();
        assert!(err.contains("hole"), "{err}");
        // And the store does not open again: every entry is read at open.
        drop((store, db));
        let err = match LogStore::open(dir.path()) {
            Ok(_) => panic!("a log with a hole opened"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("damaged") && err.contains("hole"), "{err}");
        Ok(())
    }

    /// A store holding entries 1..=40, each appended (and synced) on its
    /// own, so its WAL holds 40 records; returns the WAL file.
    async fn store_of_40_records(dir: &TempDir) -> Result<PathBuf, StorageError> {
        let mut store = open(dir);
        for e in entries(1, 1..=40) {
            store.blocking_append(vec![e]).await?;
        }
        drop(store);
        let wal = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().len());
        Ok(wal.expect("a WAL file"))
    }

    #[tokio::test]
    async fn a_torn_wal_tail_is_dropped_leaving_a_prefix() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let wal = store_of_40_records(&dir).await?;
        // A crash while writing the last records: the file ends mid-record.
        let len = std::fs::metadata(&wal).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
        f.set_len(len - len / 4 - 5).unwrap();
        drop(f);
        let mut store = open(&dir);
        let left = store.try_get_log_entries(..).await?;
        assert!(
            !left.is_empty() && left.len() < 40,
            "{} entries left",
            left.len()
        );
        assert_eq!(left, entries(1, 1..=left.len() as u64), "a prefix, no hole");
        // It goes on from there.
        let next = left.len() as u64 + 1;
        store.blocking_append(entries(1, next..=next)).await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_flipped_bit_in_synced_wal_records_refuses_to_open() -> Result<(), StorageError> {
        let dir = TempDir::new().unwrap();
        let wal = store_of_40_records(&dir).await?;
        let mut bytes = std::fs::read(&wal).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(&wal, &bytes).unwrap();
        // Not a torn tail: the records after the damage were synced, so the
        // store does not open with the prefix before it (PointInTime would).
        let err = match LogStore::open(dir.path()) {
            Ok(_) => panic!("a damaged WAL opened"),
            Err(e) => e.to_string(),
        };
        let name = wal.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&name), "names the file: {err}");
        assert!(err.contains("Corruption"), "{err}");
        assert_eq!(std::fs::read(&wal).unwrap(), bytes, "left as it was");
        Ok(())
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn open_refuses_a_foreign_dir_and_leaves_it_untouched() {
        // A non-empty directory that is not a RocksDB.
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not a db").unwrap();
        let err = LogStore::open(dir.path()).err().expect("must refuse");
        assert!(matches!(err, OpenError::NotADb { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("{:?}", dir.path())),
            "{err}"
        );
        assert_eq!(listing(dir.path()), ["notes.txt"]);

        // A RocksDB with other column families.
        let other = TempDir::new().unwrap();
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            DB::open_cf(&opts, other.path(), ["logs", "other"]).unwrap();
        }
        let before = listing(other.path());
        let err = LogStore::open(other.path()).err().expect("must refuse");
        assert!(matches!(err, OpenError::ColumnFamilies { .. }), "{err}");
        assert_eq!(listing(other.path()), before);

        // An absent directory is created, nested or not.
        let parent = TempDir::new().unwrap();
        let nested = parent.path().join("a/b");
        drop(LogStore::open(&nested).unwrap());
        LogStore::open(&nested).unwrap();
    }

    /// openraft's storage suite needs a state machine; this one accepts
    /// everything and keeps nothing, so only the log-store cases are run.
    struct NullSm;

    impl RaftSnapshotBuilder<TypeConfig> for NullSm {
        async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
            Err(
                StorageIOError::write_snapshot(None, AnyError::error("NullSm keeps no snapshot"))
                    .into(),
            )
        }
    }

    impl RaftStateMachine<TypeConfig> for NullSm {
        type SnapshotBuilder = NullSm;

        async fn applied_state(
            &mut self,
        ) -> Result<(Option<LogId>, StoredMembership), StorageError> {
            Ok((None, StoredMembership::default()))
        }

        async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
        where
            I: IntoIterator<Item = Entry> + OptionalSend,
            I::IntoIter: OptionalSend,
        {
            Ok(entries.into_iter().map(|_| Response::default()).collect())
        }

        async fn get_snapshot_builder(&mut self) -> NullSm {
            NullSm
        }

        async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
            Ok(Box::default())
        }

        async fn install_snapshot(
            &mut self,
            _: &SnapshotMeta,
            _: Box<Cursor<Vec<u8>>>,
        ) -> Result<(), StorageError> {
            Ok(())
        }

        async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
            Ok(None)
        }
    }

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, NullSm, TempDir> for Builder {
        async fn build(&self) -> Result<(TempDir, LogStore, NullSm), StorageError> {
            let dir = TempDir::new().map_err(|e| StorageIOError::write(&e))?;
            let store = LogStore::open(dir.path())
                .map_err(|e| StorageIOError::write(AnyError::error(e)))?;
            Ok((dir, store, NullSm))
        }
    }

    type S = Suite<TypeConfig, LogStore, NullSm, Builder, TempDir>;

    async fn suite_case<F, Fut>(name: &str, case: F) -> Result<(), String>
    where
        F: FnOnce(LogStore, NullSm) -> Fut,
        Fut: std::future::Future<Output = Result<(), StorageError>>,
    {
        let (_dir, store, sm) = Builder.build().await.map_err(|e| format!("{name}: {e}"))?;
        case(store, sm).await.map_err(|e| format!("{name}: {e}"))
    }

    /// The log-store cases of `openraft::testing::Suite` (the others need a
    /// real state machine). Run concurrently: several sleep one second.
    #[tokio::test]
    async fn openraft_suite_log_cases() {
        let results = tokio::join!(
            suite_case("save_vote", S::save_vote),
            suite_case("get_log_entries", S::get_log_entries),
            suite_case("limited_get_log_entries", S::limited_get_log_entries),
            suite_case("try_get_log_entry", S::try_get_log_entry),
            suite_case("initial_logs", S::initial_logs),
            suite_case("get_log_state", S::get_log_state),
            suite_case("get_log_id", S::get_log_id),
            suite_case("last_id_in_log", S::last_id_in_log),
            suite_case("purge_logs_upto_0", S::purge_logs_upto_0),
            suite_case("purge_logs_upto_5", S::purge_logs_upto_5),
            suite_case("purge_logs_upto_20", S::purge_logs_upto_20),
            suite_case("delete_logs_since_11", S::delete_logs_since_11),
            suite_case("delete_logs_since_0", S::delete_logs_since_0),
            suite_case("append_to_log", S::append_to_log),
        );
        let (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13) = results;
        let failures: Vec<String> = [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13]
            .into_iter()
            .filter_map(Result::err)
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
