//! A simulated node's disk and its Raft log store.
//!
//! The [`Disk`] outlives the node's incarnations: it is what a crash leaves.
//! It holds a *durable* log image and a *volatile* queue of writes not yet
//! fsync'd; the log store's reads see the durable image with the queue
//! applied (the `view`), as the page cache would. Writes become durable in
//! submission order (a later write never before an earlier one, as with the
//! real store's single writer thread), when the simulator says so: each
//! write schedules an "fsync" after a seeded delay, and `fsync_through`
//! makes that write and every earlier one durable, then completes them
//! (`LogFlushed` for appends, a waiter for vote / truncate / purge; the
//! committed index is a hint nobody waits for, and it gets no fsync of its
//! own). A crash drops the queue: the view falls back to the durable image.
//!
//! Every store handle carries the disk epoch it was opened at; a crash bumps
//! the epoch, so the dead incarnation's late writes are refused instead of
//! landing on the restarted node's disk.
//!
//! With [`SimBug::AckBeforeFsync`](super::SimBug) every write is reported done
//! as soon as it is queued, and the fsync comes much later: a crash in
//! between loses writes the node acknowledged.

// openraft's traits impose `StorageError<u64>` (large) as the error type.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError};
use tokio::sync::oneshot;

use super::runtime::{lock, sleep, spawn};
use super::types::{Entry, LogId, SimTypes, SnapshotMeta, StorageError, Vote};
use crate::rng::Rng;

/// The log as one image: what is on the platter, or what reads see.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogImage {
    pub entries: BTreeMap<u64, Entry>,
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
}

#[derive(Debug)]
enum Write {
    Append(Vec<Entry>),
    Vote(Vote),
    Committed(Option<LogId>),
    /// Delete every entry with index >= this.
    Truncate(u64),
    /// Delete every entry up to this one, remember it as last purged.
    Purge(LogId),
}

impl LogImage {
    fn apply(&mut self, w: &Write) {
        match w {
            Write::Append(entries) => {
                for e in entries {
                    self.entries.insert(e.log_id.index, e.clone());
                }
            }
            Write::Vote(v) => self.vote = Some(*v),
            Write::Committed(c) => self.committed = *c,
            Write::Truncate(index) => {
                self.entries.split_off(index);
            }
            Write::Purge(log_id) => {
                self.entries = self.entries.split_off(&(log_id.index + 1));
                self.last_purged = Some(*log_id);
            }
        }
    }

    /// Last log id: the last entry, else the last purged one.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(self.last_purged)
    }
}

/// Who waits for a write to be durable.
enum Done {
    Flushed(LogFlushed<SimTypes>),
    Waiter(oneshot::Sender<()>),
    Nobody,
}

impl Done {
    fn fire(self) {
        match self {
            Done::Flushed(cb) => cb.log_io_completed(Ok(())),
            Done::Waiter(tx) => {
                // The writer may have been cancelled: nothing to tell then.
                let _ = tx.send(());
            }
            Done::Nobody => {}
        }
    }
}

struct Pending {
    seq: u64,
    write: Write,
    done: Done,
}

/// How the disk acknowledges writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskModel {
    /// Report a write done when it is queued, not when it is durable.
    pub ack_before_fsync: bool,
    /// Delay from a write to its fsync, uniform in this range (ms).
    pub fsync_ms: (u64, u64),
}

impl DiskModel {
    pub fn honest() -> DiskModel {
        DiskModel {
            ack_before_fsync: false,
            fsync_ms: (0, 2),
        }
    }

    /// Acks at once; the data reaches the platter 30–150 ms later.
    pub fn ack_before_fsync() -> DiskModel {
        DiskModel {
            ack_before_fsync: true,
            fsync_ms: (30, 150),
        }
    }
}

/// One node's disk: the Raft log (durable + volatile) and the latest
/// snapshot (written durably at once, as the real store fsyncs it before
/// publishing it).
pub struct Disk {
    epoch: u64,
    durable: LogImage,
    view: LogImage,
    pending: VecDeque<Pending>,
    next_seq: u64,
    model: DiskModel,
    rng: Rng,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// Writes made durable so far (for stats and tests).
    pub fsyncs: u64,
}

pub type SharedDisk = Arc<Mutex<Disk>>;

impl Disk {
    pub fn new(model: DiskModel, rng: Rng) -> Disk {
        Disk {
            epoch: 0,
            durable: LogImage::default(),
            view: LogImage::default(),
            pending: VecDeque::new(),
            next_seq: 0,
            model,
            rng,
            snapshot: None,
            fsyncs: 0,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn durable(&self) -> &LogImage {
        &self.durable
    }

    pub fn view(&self) -> &LogImage {
        &self.view
    }

    pub fn volatile_writes(&self) -> usize {
        self.pending.len()
    }

    pub fn snapshot(&self) -> Option<&(SnapshotMeta, Vec<u8>)> {
        self.snapshot.as_ref()
    }

    /// Power loss: the volatile writes are gone (their waiters are dropped
    /// unanswered), and handles of the old incarnation stop working.
    pub fn crash(&mut self) {
        self.epoch += 1;
        self.pending.clear();
        self.view = self.durable.clone();
    }

    /// Makes write `seq` and every earlier one durable (if the disk was not
    /// crashed since `epoch`). Returns whom to tell, to be told outside the
    /// lock.
    fn fsync_through(&mut self, seq: u64, epoch: u64) -> Vec<Done> {
        let mut done = Vec::new();
        if epoch != self.epoch {
            return done;
        }
        while self.pending.front().is_some_and(|p| p.seq <= seq) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.durable.apply(&p.write);
            self.fsyncs += 1;
            done.push(p.done);
        }
        done
    }

    /// Makes everything durable now (for tests and for a clean shutdown).
    pub fn fsync_all(&mut self) {
        let last = self.next_seq;
        for d in self.fsync_through(last, self.epoch) {
            d.fire();
        }
    }

    pub(crate) fn put_snapshot(&mut self, epoch: u64, meta: SnapshotMeta, body: Vec<u8>) -> bool {
        if epoch != self.epoch {
            return false;
        }
        self.snapshot = Some((meta, body));
        true
    }
}

/// Queues `write` on the disk and schedules its fsync. Returns `done` back
/// when the disk crashed since `epoch` (the writer is a dead incarnation).
fn submit(disk: &SharedDisk, epoch: u64, write: Write, done: Done) -> Result<(), Done> {
    submit_as(disk, epoch, write, done, true)
}

/// [`submit`]; with `fsync` false the write gets no fsync of its own (the
/// committed hint, written by the real store without one): it becomes
/// durable only with the next write that does, as an unsynced RocksDB
/// write waits in the page cache for the next WAL fsync.
fn submit_as(
    disk: &SharedDisk,
    epoch: u64,
    write: Write,
    done: Done,
    fsync: bool,
) -> Result<(), Done> {
    let (seq, delay, early) = {
        let mut d = lock(disk);
        if d.epoch != epoch {
            return Err(done);
        }
        d.view.apply(&write);
        let seq = d.next_seq;
        d.next_seq += 1;
        let (lo, hi) = d.model.fsync_ms;
        let delay = d.rng.range(lo, hi);
        let (queued, early) = if d.model.ack_before_fsync {
            (Done::Nobody, Some(done))
        } else {
            (done, None)
        };
        d.pending.push_back(Pending {
            seq,
            write,
            done: queued,
        });
        (seq, delay, early)
    };
    if !fsync {
        if let Some(done) = early {
            done.fire();
        }
        return Ok(());
    }
    let disk = disk.clone();
    // Only a timer: dropping its handle detaches it.
    drop(spawn(async move {
        sleep(Duration::from_millis(delay)).await;
        let dones = lock(&disk).fsync_through(seq, epoch);
        for d in dones {
            d.fire();
        }
    }));
    if let Some(done) = early {
        // The bug: reported done before it is durable.
        done.fire();
    }
    Ok(())
}

/// The log store of one incarnation of a node.
#[derive(Clone)]
pub struct LogStore {
    disk: SharedDisk,
    epoch: u64,
}

fn crashed_err() -> io::Error {
    io::Error::other("the node crashed: this incarnation's disk handle is dead")
}

fn sto(
    mk: impl FnOnce(AnyError) -> StorageIOError<u64>,
    e: impl std::fmt::Display,
) -> StorageError {
    mk(AnyError::error(e.to_string())).into()
}

impl LogStore {
    /// Opens the store of a new incarnation on `disk`.
    pub fn open(disk: SharedDisk) -> LogStore {
        let epoch = lock(&disk).epoch;
        LogStore { disk, epoch }
    }

    fn view<R>(&self, f: impl FnOnce(&LogImage) -> R) -> Result<R, StorageError> {
        let d = lock(&self.disk);
        if d.epoch != self.epoch {
            return Err(sto(StorageIOError::read_logs, crashed_err()));
        }
        Ok(f(&d.view))
    }

    /// Submits a write, then waits until it is durable (or acknowledged, for
    /// the buggy disk).
    async fn write_and_wait(&self, write: Write) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        match submit(&self.disk, self.epoch, write, Done::Waiter(tx)) {
            Err(_) => Err(crashed_err()),
            // Dropped unanswered: the disk crashed before the fsync.
            Ok(()) => rx.await.map_err(|_| crashed_err()),
        }
    }
}

impl RaftLogReader<SimTypes> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.view(|v| v.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<SimTypes> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<SimTypes>, StorageError> {
        self.view(|v| LogState {
            last_purged_log_id: v.last_purged,
            last_log_id: v.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_and_wait(Write::Vote(*vote))
            .await
            .map_err(|e| sto(StorageIOError::write_vote, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.view(|v| v.vote)
    }

    /// A hint, as in cairn-node's store: queued in order with the other
    /// writes, not waited for and not fsync'd on its own; a crash before the
    /// next fsync loses it.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        submit_as(
            &self.disk,
            self.epoch,
            Write::Committed(committed),
            Done::Nobody,
            false,
        )
        .map_err(|_| sto(StorageIOError::write, crashed_err()))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.view(|v| v.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<SimTypes>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        match submit(
            &self.disk,
            self.epoch,
            Write::Append(entries),
            Done::Flushed(callback),
        ) {
            // The callback is dropped unanswered: openraft sees the I/O fail.
            Err(_done) => Err(sto(StorageIOError::write_logs, crashed_err())),
            Ok(()) => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_and_wait(Write::Truncate(log_id.index))
            .await
            .map_err(|e| sto(StorageIOError::write_logs, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_and_wait(Write::Purge(log_id))
            .await
            .map_err(|e| sto(StorageIOError::write_logs, e))
    }
}
