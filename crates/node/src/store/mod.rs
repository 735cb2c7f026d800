//! Persistent storage: the Raft log in RocksDB, the state machine in memory
//! with snapshots on disk.

pub mod log;
pub mod sm;
