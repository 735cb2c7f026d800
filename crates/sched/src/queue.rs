//! One queue structure for recover and migrate (DOMAIN.md §5.7).
//!
//! Ordered by band, then by arrival: manual commands go to the front band
//! (newest first), re-plans of timed-out commands next, then urgent work,
//! then the rest. At most one entry per pid. Entries of automatic work hold
//! only the pid: the command is computed when a slot is free, against the
//! state of that moment (exact state), not the state at enqueue time.
//! Manual entries hold the operator's fixed command.

use std::collections::BTreeMap;

use cairn_state::Pid;
use thiserror::Error;

use crate::cmd::{Kind, SchedCmd};

/// Queue bands, front first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Band {
    /// Operator commands (§5.6: the front of the queue).
    Manual,
    /// Timed-out commands being re-planned.
    Retry,
    /// Extents down to their last alive replica.
    Urgent,
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub pid: Pid,
    pub kind: Kind,
    pub band: Band,
    /// Some for manual and gather commands: planned by the operator, not by rules.
    pub fixed: Option<SchedCmd>,
}

/// Queue position: band, then sequence number (negative for front inserts).
pub type Key = (Band, i64);

#[derive(Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    #[error("queue full ({capacity} entries)")]
    Full { capacity: usize },
}

/// Memory: an automatic entry costs a key and a pid in two B-trees (no
/// command is stored for it); operator commands sit in a side map.
#[derive(Clone, Debug)]
pub struct CmdQueue {
    kind: Kind,
    entries: BTreeMap<Key, Pid>,
    by_pid: BTreeMap<Pid, Key>,
    fixed: BTreeMap<Pid, SchedCmd>,
    front_seq: i64,
    back_seq: i64,
    capacity: usize,
}

impl CmdQueue {
    pub fn new(kind: Kind, capacity: usize) -> CmdQueue {
        CmdQueue {
            kind,
            entries: BTreeMap::new(),
            by_pid: BTreeMap::new(),
            fixed: BTreeMap::new(),
            front_seq: 0,
            back_seq: 0,
            capacity,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, pid: Pid) -> bool {
        self.by_pid.contains_key(&pid)
    }

    fn entry(&self, key: Key, pid: Pid) -> Entry {
        Entry {
            pid,
            kind: self.kind,
            band: key.0,
            fixed: self.fixed.get(&pid).copied(),
        }
    }

    pub fn get(&self, pid: Pid) -> Option<Entry> {
        let key = *self.by_pid.get(&pid)?;
        Some(self.entry(key, pid))
    }

    /// Appends at the back of `band`. An entry already queued for the pid
    /// stays where it is (false returned), unless the new band is nearer the front.
    pub fn push_back(&mut self, pid: Pid, band: Band) -> Result<bool, QueueError> {
        if let Some(&key) = self.by_pid.get(&pid) {
            if key.0 <= band {
                return Ok(false);
            }
            self.remove(pid);
        }
        self.check_room()?;
        self.back_seq += 1;
        self.insert((band, self.back_seq), pid);
        Ok(true)
    }

    /// Puts an operator command at the very front, replacing any entry of the pid.
    pub fn push_front(&mut self, cmd: SchedCmd) -> Result<(), QueueError> {
        if self.remove(cmd.pid).is_none() {
            self.check_room()?;
        }
        self.front_seq -= 1;
        self.insert((Band::Manual, self.front_seq), cmd.pid);
        self.fixed.insert(cmd.pid, cmd);
        Ok(())
    }

    pub fn remove(&mut self, pid: Pid) -> Option<Entry> {
        let key = self.by_pid.remove(&pid)?;
        self.entries.remove(&key);
        let e = Entry {
            pid,
            kind: self.kind,
            band: key.0,
            fixed: self.fixed.remove(&pid),
        };
        Some(e)
    }

    /// The first entry strictly after `after` (from the front when None):
    /// lets a round walk the queue while it removes what it dispatches.
    pub fn next_after(&self, after: Option<Key>) -> Option<(Key, Entry)> {
        let mut it = match after {
            None => self.entries.range(..),
            Some(k) => self
                .entries
                .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded)),
        };
        it.next().map(|(k, &pid)| (*k, self.entry(*k, pid)))
    }

    /// Entries front to back.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.entries.iter().map(|(k, &pid)| self.entry(*k, pid))
    }

    fn insert(&mut self, key: Key, pid: Pid) {
        self.by_pid.insert(pid, key);
        self.entries.insert(key, pid);
    }

    fn check_room(&self) -> Result<(), QueueError> {
        if self.entries.len() >= self.capacity {
            return Err(QueueError::Full {
                capacity: self.capacity,
            });
        }
        Ok(())
    }
}
