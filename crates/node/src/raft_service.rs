//! Server side of the Raft transport: decodes openraft requests, hands them
//! to the local Raft, and returns `Result<response, RaftError>` as data so the
//! caller sees remote Raft errors as such (not as transport failures).

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tonic::{Request, Response, Status};

use crate::types::{self, pb, NodeId, TypeConfig};

pub struct RaftService {
    raft: types::Raft,
    cluster_id: u64,
    /// The snapshot being received, checked whole before its last chunk
    /// reaches openraft (see `install_snapshot`).
    receiving: Mutex<Receiving>,
    /// When a foreign cluster's request was last logged (ms since start):
    /// heartbeats arrive ten times a second, the log gets one line per minute.
    last_foreign_log: AtomicU64,
    started: Instant,
}

/// Metadata key of the sender's cluster id on every Raft RPC.
pub const CLUSTER_KEY: &str = "cairn-cluster";

/// Largest Raft message accepted or sent (AppendEntries batches, snapshot chunks).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 << 20;
/// Largest snapshot a member receives (a million extents take tens of MB).
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

#[derive(Default)]
struct Receiving {
    snapshot_id: String,
    data: Vec<u8>,
}

impl RaftService {
    pub fn new(raft: types::Raft, cluster_id: u64) -> RaftService {
        RaftService {
            raft,
            cluster_id,
            last_foreign_log: AtomicU64::new(0),
            started: Instant::now(),
            receiving: Mutex::default(),
        }
    }

    /// openraft 0.9 stops Raft for good when the state machine cannot
    /// install a snapshot, so a snapshot that does not decode, or does not
    /// end where its meta says, must never reach it: the chunks are kept
    /// here too, and the whole is decoded before the last chunk is handed
    /// on. A refused snapshot is INVALID_ARGUMENT (the sender starts over);
    /// the member keeps serving. Ok(()) for a chunk that is not the last.
    fn check_snapshot(&self, rpc: &InstallSnapshotRequest<TypeConfig>) -> Result<(), Status> {
        let whole = {
            let mut r = self.receiving.lock().unwrap_or_else(|p| p.into_inner());
            if rpc.offset == 0 {
                r.snapshot_id = rpc.meta.snapshot_id.clone();
                r.data = Vec::new();
            }
            if r.snapshot_id != rpc.meta.snapshot_id {
                // A chunk of another snapshot than the one being received:
                // openraft refuses it (SnapshotMismatch), nothing to check.
                return Ok(());
            }
            let end = usize::try_from(rpc.offset)
                .ok()
                .and_then(|o| o.checked_add(rpc.data.len()))
                .filter(|end| *end <= MAX_SNAPSHOT_BYTES);
            let Some(end) = end else {
                r.data = Vec::new();
                return Err(Status::resource_exhausted(format!(
                    "snapshot {} would be over {MAX_SNAPSHOT_BYTES} bytes",
                    rpc.meta.snapshot_id
                )));
            };
            // As openraft's receiver does: write at the chunk's offset (a
            // chunk sent again overwrites itself).
            r.data.resize(end - rpc.data.len(), 0);
            r.data.extend_from_slice(&rpc.data);
            if !rpc.done {
                return Ok(());
            }
            std::mem::take(&mut r.data)
        };
        let refused = match crate::store::sm::decode_snapshot_body(&whole) {
            Ok((meta, _)) if meta.last_log_id == rpc.meta.last_log_id => return Ok(()),
            Ok((meta, _)) => format!(
                "its body is at {:?}, its meta says {:?}",
                meta.last_log_id, rpc.meta.last_log_id
            ),
            Err(e) => e,
        };
        tracing::error!(snapshot = %rpc.meta.snapshot_id, vote = %rpc.vote, "refused a snapshot that does not decode: {refused}");
        Err(Status::invalid_argument(format!(
            "snapshot {} refused: {refused}",
            rpc.meta.snapshot_id
        )))
    }

    /// Refuses a request from a member of another cluster (or from something
    /// that is not a member at all): a data dir restored onto the wrong
    /// machine, or two clusters sharing addresses, must not mix their logs.
    fn check_cluster<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let theirs = req
            .metadata()
            .get(CLUSTER_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if theirs == Some(self.cluster_id) {
            return Ok(());
        }
        let msg = match theirs {
            Some(c) => format!(
                "this member belongs to cluster {:016x}, the sender to cluster {c:016x}",
                self.cluster_id
            ),
            None => format!(
                "raft request without a cluster id; this member belongs to cluster {:016x}",
                self.cluster_id
            ),
        };
        let now = self.started.elapsed().as_millis() as u64 + 60_000;
        let last = self.last_foreign_log.load(Ordering::Relaxed);
        if now >= last + 60_000
            && self
                .last_foreign_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(remote = ?req.remote_addr(), "refused a raft request: {msg}");
        }
        Err(Status::failed_precondition(msg))
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
        self.check_cluster(&req)?;
        let role = crate::authz::role_of(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = request(&req, "append_entries")?;
        let sender = rpc.vote.leader_id().voted_for();
        crate::authz::check_raft_sender(role.as_ref(), sender, "AppendEntries")?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let role = crate::authz::role_of(&req)?;
        let rpc: VoteRequest<NodeId> = request(&req, "vote")?;
        let sender = rpc.vote.leader_id().voted_for();
        crate::authz::check_raft_sender(role.as_ref(), sender, "Vote")?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let role = crate::authz::role_of(&req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = request(&req, "install_snapshot")?;
        let sender = rpc.vote.leader_id().voted_for();
        crate::authz::check_raft_sender(role.as_ref(), sender, "InstallSnapshot")?;
        self.check_snapshot(&rpc)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
