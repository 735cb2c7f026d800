//! Shared by the benches: a heap counter (memory figures are measured, not
//! estimated) and a state builder that feeds commands as a log would.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use cairn_state::{Cmd, EntryMeta, Reply, State};

/// Counts live heap bytes.
pub struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Live heap bytes now.
pub fn live_bytes() -> usize {
    LIVE.load(Relaxed)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Relaxed);
        LIVE.fetch_sub(l.size(), Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

/// A state fed entry by entry (term 1, leader time = index).
pub struct Builder {
    pub state: State,
    pub index: u64,
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            state: State::new(),
            index: 0,
        }
    }

    /// Applies `cmd` as the next entry; the setup is wrong if it is refused.
    pub fn apply(&mut self, cmd: &Cmd) -> Reply {
        self.index += 1;
        let meta = EntryMeta {
            index: self.index,
            term: 1,
            leader_time_ms: self.index,
        };
        match self.state.apply(meta, cmd) {
            Ok(r) => r,
            Err(e) => panic!("bench setup: {cmd:?}: {e}"),
        }
    }

    /// Applies an `AddTopo` and returns the new node's id.
    pub fn id(&mut self, cmd: Cmd) -> u64 {
        match self.apply(&cmd) {
            Reply::TopoId(id) => id,
            r => panic!("{r:?}"),
        }
    }
}
