//! What a run simulates, and the checks that refuse a configuration that
//! makes no sense (before anything is built).

use super::SimError;

/// Bytes in the `MB` of `--bandwidth MB/s`: the simulated fleet
/// (`cairn_node::copy_exec`) counts its bandwidth in 2^20 bytes too.
pub const MIB: u64 = 1 << 20;

/// Most chunks a run accepts (the sweep stops at 128; this only keeps a
/// typo from building a state of millions of chunks).
pub const MAX_CHUNKS: u32 = 4_096;
/// Most extents a run accepts (the state of 10M extents is ~0.5 GB).
pub const MAX_EXTENTS: u64 = 10_000_000;
/// Replicas per extent (DOMAIN.md §1: expected replicas 2 or 3; the issue
/// asks for 3).
pub const REPLICAS: usize = 3;

/// How the leader's copy runner and the chunks pace Cairn's recovery
/// (`crates/node/src/copies.rs`, `copy_exec.rs`, `fleet.rs`). Every figure
/// is the node's constant or a measured cost; see docs/recovery-sim.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CairnTiming {
    /// `copies::ROUND`: the runner plans at least this often.
    pub round_ms: u64,
    /// `copies::MIN_GAP`: a report wakes the runner, which waits this long
    /// so reports arriving together share one round.
    pub min_gap_ms: u64,
    /// One Raft commit of the round's batch (fsync on a majority): the p50
    /// of one client in README's `cairn bench write` is 1.46 ms.
    pub commit_us: u64,
    /// CPU of an incremental recover round: `cargo bench --bench sched`
    /// measures a median of 0.49 ms at 1M extents.
    pub round_us: u64,
    /// CPU per extent of the migrate scan every round runs: with nothing
    /// to move, `plan_migrate` walks every extent (up to
    /// `migrate_scan_budget`, 2^20); 48-50 ns measured at 100k-400k
    /// extents (tests/recover_sim.rs, `round_cpu_…`).
    pub migrate_scan_ns_per_extent: u64,
    /// Extra CPU per extent of a round that rescans everything (after a
    /// session expiry, queueing the degraded extents): 70-80 ns measured
    /// here at 100k-400k extents (tests/recover_sim.rs, `round_cpu_…`);
    /// `cargo bench --bench sched` measures 107 ns at 1M.
    pub scan_ns_per_extent: u64,
    /// `copy_exec::ACK_POLL_MS`: a chunk with unrecorded results keeps
    /// alive this often (its next commands ride that reply).
    pub ack_poll_ms: u64,
    /// `SessionTracker` `space_every_ms`: a chunk's space report becomes a
    /// Raft write at most this often.
    pub space_every_ms: u64,
}

impl Default for CairnTiming {
    fn default() -> Self {
        CairnTiming {
            round_ms: 250,
            min_gap_ms: 20,
            commit_us: 1_500,
            round_us: 500,
            migrate_scan_ns_per_extent: 50,
            scan_ns_per_extent: 80,
            ack_poll_ms: 200,
            space_every_ms: 5_000,
        }
    }
}

/// One simulated recovery.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub chunks: u32,
    /// Extents of 3 replicas each.
    pub extents: u64,
    /// Chunks that go silent at t = 0: cids 1..=fail. Chunk i sits in rack
    /// (i - 1) mod racks, so they are in different racks only when
    /// fail <= racks; beyond that some racks lose more than one chunk.
    pub fail: u32,
    /// Live chunks with a slow disk (the highest cids).
    pub slow_disks: u32,
    /// A slow disk's bandwidth is the normal one divided by this.
    pub slow_factor: u32,
    /// Inbound and outbound bandwidth of every chunk, MiB/s.
    pub bandwidth_mib_s: u64,
    pub seed: u64,
    /// Racks; 0 = chunks / 4, at least 3.
    pub racks: u32,
    /// Session lease: a silent chunk is expired (detected) after it.
    pub lease_ms: u64,
    pub cairn: CairnTiming,
    /// Cairn's recover slots per chunk, as source and as destination, set
    /// through the replicated cluster config (`recover_src_slots`,
    /// `recover_dst_slots`) as an operator would; None: the default (8).
    pub recover_slots: Option<u32>,
    /// Call the real `plan_migrate` in every Cairn round, even in rounds
    /// where it provably issues nothing (no extent below the best spread,
    /// low load, no prefer-local chunk, one zone); slow, and the same
    /// result (a test checks it). Its CPU is charged either way.
    pub migrate_every_round: bool,
    /// A policy still copying after this much simulated time is reported
    /// as not finished instead of simulated forever.
    pub max_sim_s: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            chunks: 32,
            extents: 100_000,
            fail: 1,
            slow_disks: 0,
            slow_factor: 4,
            bandwidth_mib_s: 1_000,
            seed: 1,
            racks: 0,
            lease_ms: 7_000,
            cairn: CairnTiming::default(),
            recover_slots: None,
            migrate_every_round: false,
            max_sim_s: 7 * 24 * 3_600,
        }
    }
}

impl SimConfig {
    /// Racks actually used: the configured count, or chunks / 4 (at least 3).
    pub fn racks(&self) -> u32 {
        if self.racks == 0 {
            (self.chunks / 4).max(3)
        } else {
            self.racks
        }
    }

    /// The run a sweep (`super::sweep`) makes at `chunks` chunks from this
    /// base run: the extents scaled so every chunk holds the same data
    /// (extents × chunks / base chunks, at least 1) and the racks at their
    /// default, chunks / 4 (at least 3), whatever the base's `racks`: a
    /// rack count fits one cluster size only. Everything else is the
    /// base's, `fail` included.
    pub fn sweep_at(&self, chunks: u32) -> SimConfig {
        SimConfig {
            chunks,
            extents: (self.extents.saturating_mul(u64::from(chunks))
                / u64::from(self.chunks.max(1)))
            .max(1),
            racks: 0,
            ..self.clone()
        }
    }

    /// Refuses what cannot be simulated, with the reason.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.chunks == 0 {
            return Err(SimError::NoChunks);
        }
        if self.chunks > MAX_CHUNKS {
            return Err(SimError::TooLarge {
                what: "chunks",
                value: u64::from(self.chunks),
                max: u64::from(MAX_CHUNKS),
            });
        }
        if self.fail >= self.chunks {
            return Err(SimError::FailTooMany {
                fail: self.fail,
                chunks: self.chunks,
            });
        }
        let live = self.chunks - self.fail;
        if live < 4 {
            return Err(SimError::TooFewLive { live });
        }
        if self.extents == 0 {
            return Err(SimError::NoExtents);
        }
        if self.extents > MAX_EXTENTS {
            return Err(SimError::TooLarge {
                what: "extents",
                value: self.extents,
                max: MAX_EXTENTS,
            });
        }
        if self.bandwidth_mib_s == 0 {
            return Err(SimError::NoBandwidth);
        }
        // 1 TiB/s per chunk keeps every byte count of a run inside u64.
        if self.bandwidth_mib_s > 1 << 20 {
            return Err(SimError::TooLarge {
                what: "bandwidth (MiB/s)",
                value: self.bandwidth_mib_s,
                max: 1 << 20,
            });
        }
        if self.slow_disks > live {
            return Err(SimError::SlowTooMany {
                slow: self.slow_disks,
                live,
            });
        }
        if self.slow_factor == 0 {
            return Err(SimError::BadSlowFactor);
        }
        let racks = self.racks();
        if racks < REPLICAS as u32 || racks > self.chunks {
            return Err(SimError::BadRacks {
                racks,
                chunks: self.chunks,
            });
        }
        if let Some(n) = self.recover_slots {
            if !(1..=crate::slots::HARD_SLOT_CEILING).contains(&n) {
                return Err(SimError::BadSlots { slots: n });
            }
        }
        if self.lease_ms == 0 || self.max_sim_s == 0 {
            return Err(SimError::Zero);
        }
        Ok(())
    }

    /// Bytes per second of a chunk's link (each direction).
    pub fn link_bps(&self, slow: bool) -> f64 {
        let bps = (self.bandwidth_mib_s * MIB) as f64;
        if slow {
            bps / f64::from(self.slow_factor)
        } else {
            bps
        }
    }
}
