//! Cairn's replicated node: `cairn-state` under openraft, on RocksDB, over
//! tonic. Glue only: every decision lives in the pure crates.

pub mod admin_port;
pub mod authz;
pub mod chaos_bug;
pub mod chunk_service;
pub mod client;
pub mod console;
pub mod copies;
pub mod copy_exec;
pub mod fleet;
pub mod limits;
pub mod linearizable;
pub mod meta_service;
pub mod metrics;
pub mod network;
pub mod node;
pub mod propose;
pub mod raft_service;
pub mod sched_service;
pub mod session_wire;
pub mod sessions;
pub mod store;
pub mod tls;
pub mod transport;
pub mod types;
pub mod upgrade;
pub mod views;
