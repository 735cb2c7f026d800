//! How a simulated chunk runs the copies meta sends it (recover / migrate
//! commands in keepalive replies): the chunk side of the protocol, with the
//! time passed in so it is tested without a clock.
//!
//! - A command is run once per `command_id`, and only if its term is not
//!   lower than the highest term this chunk has seen (a deposed leader's
//!   command is refused).
//! - A copy takes `bytes / bandwidth of the slower end`; a failslow disk is
//!   [`FAILSLOW_FACTOR`] times slower.
//! - The chunk side enforces its own slot limits (per chunk, per kind, as
//!   source and destination): a command beyond them fails at once and meta
//!   plans it again.
//! - A finished copy is reported at once and in every keepalive until a
//!   reply of the current leader no longer lists it (meta recorded it),
//!   keeping alive every [`ACK_POLL_MS`] meanwhile; a running copy meta no
//!   longer lists was dropped (timed out, abandoned) and is cancelled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use cairn_state::Cid;

use crate::types::pb;

/// How often a chunk with unrecorded results keeps alive: meta records a
/// result within a Raft round trip, and the reply that shows it carries the
/// chunk's next commands, so slots do not idle for a whole interval.
pub const ACK_POLL_MS: u64 = 200;

/// How much slower a failslow disk copies.
pub const FAILSLOW_FACTOR: u64 = 10;

/// Slot kinds as the chunk counts them: [recover src, recover dst,
/// migrate src, migrate dst].
fn slot_index(kind: i32, dst: bool) -> usize {
    let migrate = kind == pb::CopyKind::Migrate as i32;
    usize::from(migrate) * 2 + usize::from(dst)
}

/// What the whole fleet shares: every chunk's disk, slot use and peaks, and
/// which copies were ever started (a copy started twice is a bug meta must
/// never cause).
pub struct FleetDisks {
    /// Per chunk and slot kind, the most copies it runs at once.
    pub slot_limit: u32,
    inner: Mutex<Disks>,
}

#[derive(Default)]
struct Disks {
    disks: HashMap<Cid, (u64, bool)>,
    used: HashMap<(Cid, usize), u32>,
    peak: HashMap<(Cid, usize), u32>,
    started: HashSet<u64>,
    duplicates: u64,
    done: u64,
    refused_slots: u64,
    refused_stale: u64,
}

/// The fleet's copy counters (`cairn fleet` control, tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCounters {
    pub done: u64,
    pub duplicates: u64,
    pub refused_slots: u64,
    pub refused_stale: u64,
}

impl FleetDisks {
    pub fn new(slot_limit: u32) -> FleetDisks {
        FleetDisks {
            slot_limit,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Disks> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A chunk of this fleet: its bandwidth and whether its disk is slow.
    pub fn set_disk(&self, cid: Cid, bandwidth_mb_s: u64, failslow: bool) {
        self.lock()
            .disks
            .insert(cid, (bandwidth_mb_s.max(1), failslow));
    }

    /// Bytes per second of a chunk; a chunk of another fleet counts as `default`.
    fn rate(&self, d: &Disks, cid: Cid, default: u64) -> u64 {
        let (mb, slow) = d.disks.get(&cid).copied().unwrap_or((default, false));
        let rate = mb.saturating_mul(1 << 20);
        if slow {
            (rate / FAILSLOW_FACTOR).max(1)
        } else {
            rate.max(1)
        }
    }

    /// Most copies a chunk ran at once, per slot kind ([recover src,
    /// recover dst, migrate src, migrate dst]).
    pub fn peak(&self, cid: Cid) -> [u32; 4] {
        let d = self.lock();
        std::array::from_fn(|i| d.peak.get(&(cid, i)).copied().unwrap_or(0))
    }

    pub fn counters(&self) -> CopyCounters {
        let d = self.lock();
        CopyCounters {
            done: d.done,
            duplicates: d.duplicates,
            refused_slots: d.refused_slots,
            refused_stale: d.refused_stale,
        }
    }

    /// Takes a source slot on `src` and a destination slot on `dst`, or neither.
    fn take(&self, d: &mut Disks, kind: i32, src: Cid, dst: Cid) -> bool {
        let (s, t) = (
            (src, slot_index(kind, false)),
            (dst, slot_index(kind, true)),
        );
        let used = |d: &Disks, k| d.used.get(&k).copied().unwrap_or(0);
        if used(d, s) >= self.slot_limit || used(d, t) >= self.slot_limit {
            return false;
        }
        for k in [s, t] {
            let u = d.used.entry(k).or_insert(0);
            *u += 1;
            let now = *u;
            let p = d.peak.entry(k).or_insert(0);
            *p = (*p).max(now);
        }
        true
    }

    fn release(d: &mut Disks, kind: i32, src: Cid, dst: Cid) {
        for k in [
            (src, slot_index(kind, false)),
            (dst, slot_index(kind, true)),
        ] {
            if let Some(u) = d.used.get_mut(&k) {
                *u = u.saturating_sub(1);
            }
        }
    }
}

struct Job {
    cmd: pb::ChunkCommand,
    started_ms: u64,
    finish_ms: u64,
}

/// One chunk's copies.
#[derive(Default)]
pub struct ChunkCopies {
    highest_term: u64,
    jobs: BTreeMap<u64, Job>,
    done: BTreeMap<u64, pb::CommandResult>,
}

impl ChunkCopies {
    /// A keepalive reply: refuses stale commands, starts new ones, re-stamps
    /// adopted ones, cancels dropped ones, forgets recorded results.
    pub fn on_reply(
        &mut self,
        now_ms: u64,
        term: u64,
        cmds: &[pb::ChunkCommand],
        disks: &FleetDisks,
        default_mb_s: u64,
    ) {
        if term == 0 || term < self.highest_term {
            return; // no scheduler behind this reply, or a deposed leader's
        }
        self.highest_term = term;
        let mut d = disks.lock();
        let mut fresh = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            if cmd.term < self.highest_term {
                d.refused_stale += 1;
                tracing::warn!(
                    command_id = cmd.command_id,
                    term = cmd.term,
                    highest = self.highest_term,
                    "refusing a command of an older term"
                );
            } else {
                fresh.push(cmd);
            }
        }
        let listed: HashSet<u64> = fresh.iter().map(|c| c.command_id).collect();
        // First what meta no longer lists: results it recorded, copies it
        // dropped (their slots free up before new copies take any).
        self.done.retain(|id, _| listed.contains(id));
        let dropped: Vec<u64> = self
            .jobs
            .keys()
            .filter(|id| !listed.contains(id))
            .copied()
            .collect();
        for id in dropped {
            if let Some(j) = self.jobs.remove(&id) {
                FleetDisks::release(&mut d, j.cmd.kind, j.cmd.src, j.cmd.dst);
            }
        }
        for cmd in fresh {
            if let Some(j) = self.jobs.get_mut(&cmd.command_id) {
                j.cmd.term = cmd.term;
                continue;
            }
            if let Some(r) = self.done.get_mut(&cmd.command_id) {
                r.term = cmd.term;
                continue;
            }
            if !d.started.insert(cmd.command_id) {
                d.duplicates += 1;
                tracing::error!(command_id = cmd.command_id, "copy started a second time");
            }
            if !disks.take(&mut d, cmd.kind, cmd.src, cmd.dst) {
                d.refused_slots += 1;
                self.done.insert(
                    cmd.command_id,
                    pb::CommandResult {
                        command_id: cmd.command_id,
                        ok: false,
                        error: format!(
                            "chunk-side slot limit ({}) reached on {} or {}",
                            disks.slot_limit, cmd.src, cmd.dst
                        ),
                        term: cmd.term,
                    },
                );
                continue;
            }
            let rate =
                disks
                    .rate(&d, cmd.src, default_mb_s)
                    .min(disks.rate(&d, cmd.dst, default_mb_s));
            let ms = (u128::from(cmd.bytes) * 1000 / u128::from(rate)) as u64;
            self.jobs.insert(
                cmd.command_id,
                Job {
                    cmd: *cmd,
                    started_ms: now_ms,
                    finish_ms: now_ms.saturating_add(ms.max(1)),
                },
            );
        }
    }

    /// Finishes what is due; returns every result to report and the
    /// progress of what still runs.
    pub fn poll(
        &mut self,
        now_ms: u64,
        disks: &FleetDisks,
    ) -> (Vec<pb::CommandResult>, Vec<pb::CommandProgress>) {
        let due: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.finish_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        if !due.is_empty() {
            let mut d = disks.lock();
            for id in due {
                if let Some(j) = self.jobs.remove(&id) {
                    FleetDisks::release(&mut d, j.cmd.kind, j.cmd.src, j.cmd.dst);
                    d.done += 1;
                    self.done.insert(
                        id,
                        pb::CommandResult {
                            command_id: id,
                            ok: true,
                            error: String::new(),
                            term: j.cmd.term,
                        },
                    );
                }
            }
        }
        let progress = self
            .jobs
            .values()
            .map(|j| {
                let span = j.finish_ms.saturating_sub(j.started_ms).max(1);
                let ran = now_ms.saturating_sub(j.started_ms).min(span);
                pb::CommandProgress {
                    command_id: j.cmd.command_id,
                    done_bytes: (u128::from(j.cmd.bytes) * u128::from(ran) / u128::from(span))
                        as u64,
                    total_bytes: j.cmd.bytes,
                }
            })
            .collect();
        (self.done.values().cloned().collect(), progress)
    }

    /// When the next running copy finishes.
    pub fn next_finish_ms(&self) -> Option<u64> {
        self.jobs.values().map(|j| j.finish_ms).min()
    }

    /// Results not yet recorded by meta: the chunk keeps alive sooner until
    /// they are (and its next commands come with that reply).
    pub fn awaiting_ack(&self) -> bool {
        !self.done.is_empty()
    }

    pub fn running(&self) -> usize {
        self.jobs.len()
    }

    /// The chunk crashed: its copies and results are gone with it.
    pub fn crash(&mut self, disks: &FleetDisks) {
        let mut d = disks.lock();
        for j in std::mem::take(&mut self.jobs).into_values() {
            FleetDisks::release(&mut d, j.cmd.kind, j.cmd.src, j.cmd.dst);
        }
        self.done.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn cmd(id: u64, term: u64, src: Cid, dst: Cid) -> pb::ChunkCommand {
        pb::ChunkCommand {
            command_id: id,
            term,
            kind: pb::CopyKind::Recover as i32,
            pid: 100 + id,
            src,
            dst,
            replace: 0,
            owner: src,
            bytes: 256 * MIB,
        }
    }

    fn disks() -> FleetDisks {
        let d = FleetDisks::new(2);
        d.set_disk(1, 100, false);
        d.set_disk(2, 200, false);
        d.set_disk(3, 200, true);
        d
    }

    #[test]
    fn copy_time_follows_the_slower_end_and_failslow_is_slower() {
        let d = disks();
        let mut c = ChunkCopies::default();
        c.on_reply(0, 5, &[cmd(1, 5, 1, 2)], &d, 200);
        // 256 MiB at 100 MiB/s (chunk 1 is the slower end).
        assert_eq!(c.next_finish_ms(), Some(2_560));
        let mut s = ChunkCopies::default();
        s.on_reply(0, 5, &[cmd(2, 5, 2, 3)], &d, 200);
        // Chunk 3 is failslow: 20 MiB/s.
        assert_eq!(s.next_finish_ms(), Some(12_800));
    }

    #[test]
    fn a_finished_copy_is_reported_until_meta_stops_listing_it() {
        let d = disks();
        let mut c = ChunkCopies::default();
        let cmds = [cmd(1, 5, 1, 2)];
        c.on_reply(0, 5, &cmds, &d, 200);
        let (results, progress) = c.poll(1_280, &d);
        assert!(results.is_empty());
        assert_eq!(progress[0].done_bytes, 128 * MIB);
        let (results, _) = c.poll(3_000, &d);
        assert_eq!(results.len(), 1);
        assert!(results[0].ok);
        // Still listed (the FinishCopy is not applied yet): reported again, not re-run.
        c.on_reply(3_000, 5, &cmds, &d, 200);
        assert_eq!(c.running(), 0);
        assert_eq!(c.poll(3_001, &d).0.len(), 1);
        // No longer listed: forgotten.
        c.on_reply(3_100, 5, &[], &d, 200);
        assert!(c.poll(3_200, &d).0.is_empty());
        assert_eq!(d.counters().done, 1);
        assert_eq!(d.counters().duplicates, 0);
    }

    #[test]
    fn a_command_of_an_older_term_is_refused() {
        let d = disks();
        let mut c = ChunkCopies::default();
        c.on_reply(0, 7, &[cmd(1, 7, 1, 2)], &d, 200);
        // A deposed leader (term 6) still answering: ignored entirely.
        c.on_reply(10, 6, &[cmd(2, 6, 1, 2)], &d, 200);
        assert_eq!(c.running(), 1);
        // A reply of term 7 that carries a term-6 command: refused.
        c.on_reply(20, 7, &[cmd(1, 7, 1, 2), cmd(3, 6, 1, 2)], &d, 200);
        assert_eq!(c.running(), 1);
        assert_eq!(d.counters().refused_stale, 1);
    }

    #[test]
    fn an_adopted_copy_keeps_running_and_reports_the_new_term() {
        let d = disks();
        let mut c = ChunkCopies::default();
        c.on_reply(0, 7, &[cmd(1, 7, 1, 2)], &d, 200);
        c.on_reply(100, 8, &[cmd(1, 8, 1, 2)], &d, 200);
        assert_eq!(c.running(), 1);
        let (results, _) = c.poll(10_000, &d);
        assert_eq!(results[0].term, 8);
        assert_eq!(d.counters().duplicates, 0);
    }

    #[test]
    fn chunk_side_slots_hold_and_are_released() {
        let d = disks();
        let mut c = ChunkCopies::default();
        let cmds = [cmd(1, 5, 1, 2), cmd(2, 5, 1, 3), cmd(3, 5, 1, 2)];
        c.on_reply(0, 5, &cmds, &d, 200);
        // Limit 2 per kind: chunk 1 is the source of all three.
        assert_eq!(c.running(), 2);
        let (results, _) = c.poll(1, &d);
        assert_eq!(results.len(), 1);
        assert!(!results[0].ok);
        assert_eq!(d.peak(1)[0], 2);
        // A dropped copy (no longer listed) frees its slots.
        c.on_reply(2, 5, &[cmd(1, 5, 1, 2)], &d, 200);
        assert_eq!(c.running(), 1);
        c.on_reply(3, 5, &[cmd(1, 5, 1, 2), cmd(4, 5, 1, 2)], &d, 200);
        assert_eq!(c.running(), 2);
        assert_eq!(d.peak(1)[0], 2);
    }

    #[test]
    fn a_dropped_copy_frees_its_slot_before_its_replacement_starts() {
        let d = FleetDisks::new(1);
        let mut c = ChunkCopies::default();
        c.on_reply(0, 5, &[cmd(1, 5, 1, 2)], &d, 200);
        // Meta timed copy 1 out and re-issued the extent as copy 2 in the
        // same entry: one reply drops the one and lists the other.
        c.on_reply(10, 5, &[cmd(2, 5, 1, 2)], &d, 200);
        assert_eq!(c.running(), 1);
        assert_eq!(d.counters().refused_slots, 0);
        assert_eq!(d.peak(1)[0], 1);
    }

    #[test]
    fn a_reply_without_a_scheduler_changes_nothing() {
        let d = disks();
        let mut c = ChunkCopies::default();
        c.on_reply(0, 5, &[cmd(1, 5, 1, 2)], &d, 200);
        c.on_reply(10, 0, &[], &d, 200);
        assert_eq!(c.running(), 1);
    }
}
