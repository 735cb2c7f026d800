//! Cairn's replicated node: `cairn-state` under openraft, on RocksDB, over
//! tonic. Glue only: every decision lives in the pure crates.

pub mod client;
pub mod meta_service;
pub mod network;
pub mod node;
pub mod raft_service;
pub mod store;
pub mod types;
pub mod views;
