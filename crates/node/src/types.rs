//! openraft type configuration and the replicated payload.

use std::io::Cursor;

use cairn_state::{Cmd, CmdError, Reply};
use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// One log entry's payload: commands the leader batched, and the wall time
/// it stamped when proposing them (the only time `apply` ever sees).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub leader_time_ms: u64,
    pub cmds: Vec<Cmd>,
}

/// One result per command of the entry, in order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub results: Vec<Result<Reply, CmdError>>,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;

/// The one bincode configuration used on disk and on the wire.
pub fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes with [`bincode_config`].
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(v, bincode_config())
}

/// Decodes with [`bincode_config`], with a decode limit, and refuses trailing bytes.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let cfg = bincode::config::standard().with_limit::<{ 256 << 20 }>();
    let (v, used) = bincode::serde::decode_from_slice(bytes, cfg).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(v)
}

pub mod pb {
    tonic::include_proto!("cairn.v1");
}
