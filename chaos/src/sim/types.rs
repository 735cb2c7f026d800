//! The simulator's openraft type configuration: Cairn's payload and
//! response, on the simulated runtime.

use std::io::Cursor;

pub use cairn_node::types::{Request, Response};

openraft::declare_raft_types!(
    /// Like `cairn_node::types::TypeConfig`, with [`SimRuntime`] as runtime.
    ///
    /// [`SimRuntime`]: super::runtime::SimRuntime
    pub SimTypes:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<SimTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = super::runtime::SimRuntime,
);

pub type NodeId = u64;
pub type SimRaft = openraft::Raft<SimTypes>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<SimTypes>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<SimTypes>;
