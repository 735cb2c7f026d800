//! Server side of the Raft transport: decodes openraft requests, hands them
//! to the local Raft, and returns `Result<response, RaftError>` as data so the
//! caller sees remote Raft errors as such (not as transport failures).

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::types::{self, pb, NodeId, TypeConfig};

pub struct RaftService {
    raft: types::Raft,
}

/// Largest Raft message accepted or sent (AppendEntries batches, snapshot chunks).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 << 20;

impl RaftService {
    pub fn new(raft: types::Raft) -> RaftService {
        RaftService { raft }
    }

    pub fn into_server(self) -> pb::raft_server::RaftServer<RaftService> {
        pb::raft_server::RaftServer::new(self)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
    }
}

fn request<T: serde::de::DeserializeOwned>(
    req: &Request<pb::RaftPayload>,
    what: &str,
) -> Result<T, Status> {
    types::decode(&req.get_ref().data).map_err(|e| {
        tracing::warn!(rpc = what, error = %e, "undecodable raft request");
        Status::invalid_argument(format!("cannot decode {what} request: {e}"))
    })
}

fn reply<T: Serialize>(v: &T) -> Result<Response<pb::RaftPayload>, Status> {
    types::encode(v)
        .map(|data| Response::new(pb::RaftPayload { data }))
        .map_err(|e| Status::internal(format!("cannot encode raft reply: {e}")))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = request(&req, "append_entries")?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = request(&req, "vote")?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = request(&req, "install_snapshot")?;
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
