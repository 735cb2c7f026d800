//! The run's event trace: every message send / delivery / drop, fault,
//! client operation and completion, stamped with virtual time, folded into
//! one xxh3 hash. Two runs of one seed must give the same hash; when they do
//! not, keeping the lines ([`Trace::keep`]) shows the first divergence.

use xxhash_rust::xxh3::Xxh3;

use super::runtime::elapsed_ns;

pub struct Trace {
    hasher: Xxh3,
    events: u64,
    lines: Option<Vec<String>>,
}

impl Trace {
    pub fn new(keep: bool) -> Trace {
        Trace {
            hasher: Xxh3::new(),
            events: 0,
            lines: keep.then(Vec::new),
        }
    }

    /// Records one event at the current virtual time.
    pub fn event(&mut self, what: std::fmt::Arguments<'_>) {
        let line = format!("{} {}", elapsed_ns(), what);
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.events += 1;
        if let Some(lines) = &mut self.lines {
            lines.push(line);
        }
    }

    pub fn hash(&self) -> u64 {
        self.hasher.digest()
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn take_lines(&mut self) -> Vec<String> {
        self.lines.take().unwrap_or_default()
    }
}
