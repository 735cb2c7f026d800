//! Chunks (storage servers), their space reports and their sessions.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{Cid, SessionId, TopoId};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkState {
    /// In service: may receive new replicas.
    Registered,
    /// Being drained: keeps its replicas and its session, receives no new replicas.
    Removing,
    /// Gone for good. The cid stays reserved forever.
    Removed,
}

/// A chunk's space report: every field of the original `ChunkSpaceInfo`
/// (DOMAIN.md §3). Bytes unless named `num_*`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChunkSpaceInfo {
    pub valid_data_space: u64,
    pub used_data_space: u64,
    pub provisioned_data_space: u64,
    pub allocated_data_space: u64,
    pub total_data_capacity: u64,
    pub failure_data_space: u64,
    pub valid_cache_space: u64,
    pub used_cache_space: u64,
    pub dirty_cache_space: u64,
    pub failure_cache_space: u64,
    pub total_cache_capacity: u64,
    pub temporary_replica_space: u64,
    pub num_rx_pids: u64,
    pub num_tx_pids: u64,
    pub num_reserved_pids: u64,
}

impl ChunkSpaceInfo {
    /// Sanity rules a report must pass; anything else is a buggy chunk.
    pub fn validate(&self) -> Result<(), String> {
        if self.valid_data_space > self.total_data_capacity {
            return Err(format!(
                "valid_data_space {} exceeds total_data_capacity {}",
                self.valid_data_space, self.total_data_capacity
            ));
        }
        if self.valid_cache_space > self.total_cache_capacity {
            return Err(format!(
                "valid_cache_space {} exceeds total_cache_capacity {}",
                self.valid_cache_space, self.total_cache_capacity
            ));
        }
        if self.dirty_cache_space > self.used_cache_space {
            return Err(format!(
                "dirty_cache_space {} exceeds used_cache_space {}",
                self.dirty_cache_space, self.used_cache_space
            ));
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    pub cid: Cid,
    /// `chunk<cid>` unless renamed; never changed by a move.
    pub name: String,
    /// Separate from the name (the hostname-as-name bug of DOMAIN.md §2).
    pub hostname: String,
    pub data_addr: String,
    /// None = unracked.
    pub brick: Option<TopoId>,
    pub failslow: bool,
    pub state: ChunkState,
    pub version: String,
    pub capabilities: BTreeSet<String>,
    pub space: ChunkSpaceInfo,
}

impl Chunk {
    pub fn default_name(cid: Cid) -> String {
        format!("chunk{cid}")
    }
}

/// Longest silence a freshness checkpoint may record (a day): a session is
/// expired long before, by any leader that stays in office for a lease.
pub const MAX_SILENT_MS: u64 = 24 * 3_600_000;

/// A chunk's liveness lease. At most one per cid.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Session {
    pub session_id: SessionId,
    pub cid: Cid,
    /// Leader-stamped time of the entry that opened it.
    pub opened_at_ms: u64,
    pub lease_ms: u64,
    /// How long the leader had not heard from this session as of the last
    /// freshness checkpoint (0: fresh, or never listed).
    pub silent_ms: u64,
}
