//! The history recorder: every client and nemesis event, numbered and
//! timestamped on one monotonic clock, appended to `history.jsonl` as it
//! happens (a campaign killed midway leaves a checkable prefix).

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use crate::history::{Event, FileError, JsonlWriter, Observation, Op, Type};

pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    next: u64,
    out: JsonlWriter,
    /// The first write error; later events are dropped and the run fails.
    failed: Option<String>,
}

impl Recorder {
    pub fn create(path: &Path, start: Instant) -> Result<Recorder, FileError> {
        Ok(Recorder {
            start,
            inner: Mutex::new(Inner {
                next: 0,
                out: JsonlWriter::create(path)?,
                failed: None,
            }),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn record(&self, process: u64, kind: Type, op: Op, error: Option<String>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Timestamp under the lock: indexes and times then agree on order.
        let e = Event {
            index: g.next,
            time_ns: self.now_ns(),
            process,
            kind,
            op,
            error,
        };
        g.next += 1;
        if g.failed.is_none() {
            if let Err(err) = g.out.write(&e) {
                g.failed = Some(err.to_string());
            }
        }
    }

    /// The first write error, if any: the history on disk is incomplete.
    pub fn failed(&self) -> Option<String> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed
            .clone()
    }

    pub fn events(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).next
    }
}

/// Leader observations (`monitor.jsonl`).
pub struct ObservationLog {
    inner: Mutex<(JsonlWriter, Option<String>)>,
}

impl ObservationLog {
    pub fn create(path: &Path) -> Result<ObservationLog, FileError> {
        Ok(ObservationLog {
            inner: Mutex::new((JsonlWriter::create(path)?, None)),
        })
    }

    pub fn record(&self, o: &Observation) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.1.is_none() {
            if let Err(e) = g.0.write(o) {
                g.1 = Some(e.to_string());
            }
        }
    }

    pub fn failed(&self) -> Option<String> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }
}
