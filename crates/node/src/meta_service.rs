//! The `Meta` gRPC service: proposals through Raft and reads.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use cairn_state::{ChunkState, Cmd, CmdError, Reply, TopoKind};
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tonic::{Request, Response, Status};

use crate::store::sm::SmHandle;
use crate::types::{self, pb, NodeId, Raft};

/// Metadata key carrying the leader's address on a "not the leader" status.
pub const LEADER_KEY: &str = "cairn-leader";
/// Most commands one proposal may carry.
pub const MAX_CMDS_PER_PROPOSAL: usize = 4096;

pub struct MetaService {
    raft: Raft,
    cluster_id: u64,
    sm: SmHandle,
    batcher: mpsc::Sender<Pending>,
}

/// Most commands the batcher packs into one log entry.
pub const MAX_CMDS_PER_ENTRY: usize = 4096;
/// Proposals waiting for the batcher; beyond this a client gets UNAVAILABLE.
const MAX_QUEUED_PROPOSALS: usize = 16_384;
/// Log entries proposed and not yet applied at once: while they replicate,
/// the next batch forms.
const MAX_ENTRIES_IN_FLIGHT: usize = 4;

type Proposed = Result<(Vec<Result<cairn_state::Reply, cairn_state::CmdError>>, u64), Status>;

struct Pending {
    cmds: Vec<Cmd>,
    reply: oneshot::Sender<Proposed>,
}

impl MetaService {
    /// Must be called inside a tokio runtime: it starts the batcher task.
    pub fn new(raft: Raft, sm: SmHandle, cluster_id: u64) -> MetaService {
        let batcher = spawn_batcher(raft.clone());
        MetaService {
            raft,
            cluster_id,
            sm,
            batcher,
        }
    }

    /// Waits until this member may serve a linearizable read (it is the
    /// leader, confirmed by a quorum, and has applied the read index).
    async fn linearizable(&self) -> Result<(), Status> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(&f)),
            Err(e) => Err(Status::unavailable(format!(
                "linearizable read failed: {e}"
            ))),
        }
    }

    /// Queues commands for the batcher and waits for their results.
    async fn submit(&self, cmds: Vec<Cmd>) -> Proposed {
        let (reply, rx) = oneshot::channel();
        self.batcher
            .try_send(Pending { cmds, reply })
            .map_err(|_| Status::unavailable("too many proposals queued on this member; retry"))?;
        rx.await
            .map_err(|_| Status::unavailable("the proposal was dropped (member shutting down?)"))?
    }

    /// Proposes one client command and turns its result into a response.
    async fn write(&self, cmd: Cmd) -> Result<Response<pb::WriteResponse>, Status> {
        let (mut results, log_index) = self.submit(vec![cmd]).await?;
        let mut resp = pb::WriteResponse {
            log_index,
            ..Default::default()
        };
        match results.pop() {
            Some(Ok(Reply::TopoId(id))) => resp.topo_id = id,
            Some(Ok(Reply::Cid(cid))) => resp.cid = cid,
            Some(Ok(Reply::Generation(g))) => resp.generation = g,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(cmd_status(&e)),
            None => return Err(Status::internal("the state machine returned no result")),
        }
        Ok(Response::new(resp))
    }

    pub fn into_server(self) -> pb::meta_server::MetaServer<MetaService> {
        pb::meta_server::MetaServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

/// Group commit at the Raft level: openraft 0.9 waits for each entry's
/// fsync before taking the next, so proposals that arrive together are
/// packed into one entry (one fsync per member for all of them).
/// `apply_batch` validates each command against the state the previous ones
/// left, so this is the same as proposing them one after another.
fn spawn_batcher(raft: Raft) -> mpsc::Sender<Pending> {
    let (tx, mut rx) = mpsc::channel::<Pending>(MAX_QUEUED_PROPOSALS);
    tokio::spawn(async move {
        let in_flight = Arc::new(Semaphore::new(MAX_ENTRIES_IN_FLIGHT));
        while let Some(first) = rx.recv().await {
            let mut n = first.cmds.len();
            let mut batch = vec![first];
            while n < MAX_CMDS_PER_ENTRY {
                match rx.try_recv() {
                    Ok(p) => {
                        n += p.cmds.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return; // the semaphore is never closed
            };
            let raft = raft.clone();
            tokio::spawn(async move {
                let _permit = permit;
                propose_batch(&raft, batch).await;
            });
        }
    });
    tx
}

async fn propose_batch(raft: &Raft, batch: Vec<Pending>) {
    let counts: Vec<usize> = batch.iter().map(|p| p.cmds.len()).collect();
    let mut replies = Vec::with_capacity(batch.len());
    let mut cmds = Vec::with_capacity(counts.iter().sum());
    for p in batch {
        cmds.extend(p.cmds);
        replies.push(p.reply);
    }
    let req = types::Request {
        leader_time_ms: now_ms(),
        cmds,
    };
    match raft.client_write(req).await {
        Ok(resp) => {
            let index = resp.log_id.index;
            let mut results = resp.data.results.into_iter();
            for (reply, n) in replies.into_iter().zip(counts) {
                let mine: Vec<_> = results.by_ref().take(n).collect();
                let _ = reply.send(Ok((mine, index)));
            }
        }
        Err(e) => {
            let status = |e: &RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
                e => Status::unavailable(format!("proposal failed: {e}")),
            };
            if !matches!(e, RaftError::APIError(ClientWriteError::ForwardToLeader(_))) {
                tracing::warn!(error = %e, "proposal failed");
            }
            for reply in replies {
                let _ = reply.send(Err(status(&e)));
            }
        }
    }
}

/// The gRPC status for a command the state machine rejected; the message is
/// the state machine's reason.
pub fn cmd_status(e: &CmdError) -> Status {
    let msg = e.to_string();
    match e {
        CmdError::TopoNotFound(_)
        | CmdError::ChunkNotFound(_)
        | CmdError::VolumeNotFound(_)
        | CmdError::ExtentNotFound(_) => Status::not_found(msg),
        CmdError::GenerationMismatch { .. } => Status::aborted(msg),
        CmdError::NameTaken { .. } => Status::already_exists(msg),
        CmdError::InvalidName { .. }
        | CmdError::WrongParentKind { .. }
        | CmdError::InvalidSpace { .. }
        | CmdError::InvalidLease(_)
        | CmdError::InvalidVolume(_)
        | CmdError::InvalidLoc { .. }
        | CmdError::Config(_)
        | CmdError::InvalidFeatureName(_) => Status::invalid_argument(msg),
        _ => Status::failed_precondition(msg),
    }
}

fn topo_kind(k: i32) -> Result<TopoKind, Status> {
    match pb::TopoKind::try_from(k) {
        Ok(pb::TopoKind::Zone) => Ok(TopoKind::Zone),
        Ok(pb::TopoKind::Rack) => Ok(TopoKind::Rack),
        Ok(pb::TopoKind::Brick) => Ok(TopoKind::Brick),
        _ => Err(Status::invalid_argument(format!(
            "topology kind {k} is not zone (1), rack (2) or brick (3)"
        ))),
    }
}

fn chunk_state(k: i32) -> Result<ChunkState, Status> {
    match pb::ChunkState::try_from(k) {
        Ok(pb::ChunkState::Registered) => Ok(ChunkState::Registered),
        Ok(pb::ChunkState::Removing) => Ok(ChunkState::Removing),
        Ok(pb::ChunkState::Removed) => Ok(ChunkState::Removed),
        _ => Err(Status::invalid_argument(format!(
            "chunk state {k} is not registered (1), removing (2) or removed (3)"
        ))),
    }
}

/// UNAVAILABLE with the leader's address (if known) for the client to follow.
fn not_leader(f: &ForwardToLeader<NodeId, BasicNode>) -> Status {
    let mut status = Status::unavailable(match (&f.leader_id, &f.leader_node) {
        (Some(id), Some(n)) => format!("not the leader; the leader is node {id} at {}", n.addr),
        _ => "not the leader, and no leader is known yet (election in progress?)".to_string(),
    });
    if let Some(addr) = f.leader_node.as_ref().and_then(|n| n.addr.parse().ok()) {
        status.metadata_mut().insert(LEADER_KEY, addr);
    }
    status
}

/// Wall-clock milliseconds, stamped by the leader into each entry.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tonic::async_trait]
impl pb::meta_server::Meta for MetaService {
    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeResponse>, Status> {
        let cmds: Vec<Cmd> = types::decode(&request.get_ref().cmds)
            .map_err(|e| Status::invalid_argument(format!("cannot decode commands: {e}")))?;
        if cmds.is_empty() || cmds.len() > MAX_CMDS_PER_PROPOSAL {
            return Err(Status::invalid_argument(format!(
                "a proposal carries 1..={MAX_CMDS_PER_PROPOSAL} commands, not {}",
                cmds.len()
            )));
        }
        let (results, log_index) = self.submit(cmds).await?;
        let results = types::encode(&results)
            .map_err(|e| Status::internal(format!("cannot encode results: {e}")))?;
        Ok(Response::new(pb::ProposeResponse { results, log_index }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        if !request.get_ref().stale {
            match self.raft.ensure_linearizable().await {
                Ok(_) => {}
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    return Err(not_leader(&f))
                }
                Err(e) => {
                    return Err(Status::unavailable(format!(
                        "linearizable read failed: {e}"
                    )))
                }
            }
        }
        let m = self.raft.metrics().borrow().clone();
        let leader_addr = m
            .current_leader
            .and_then(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
            })
            .unwrap_or_default();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = m.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let known = matched.get(id).cloned().flatten();
                pb::Member {
                    node_id: *id,
                    addr: node.addr.clone(),
                    voter: voters.contains(id),
                    matched_index: known.map(|l| l.index).unwrap_or(0),
                    matched_known: known.is_some() || m.current_leader == Some(*id),
                }
            })
            .collect();
        let d = self.sm.read();
        Ok(Response::new(pb::StatusResponse {
            members,
            cluster_id: self.cluster_id,
            node_id: m.id,
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            leader_addr,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: d.last_applied.map(|l| l.index).unwrap_or(0),
            state_digest: d.state.digest(),
            state_last_index: d.state.last_applied().0,
            chunks: d.state.chunks().len() as u64,
            volumes: d.state.volumes().count() as u64,
            extents: d.state.extent_count(),
        }))
    }

    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::CreateVolumeResponse>, Status> {
        let r = request.into_inner();
        let replicas = u8::try_from(r.replicas)
            .ok()
            .filter(|n| (2..=3).contains(n))
            .ok_or_else(|| {
                Status::invalid_argument(format!("replicas must be 2 or 3, not {}", r.replicas))
            })?;
        if r.size_bytes == 0 || r.size_bytes > cairn_state::MAX_VOLUME_BYTES {
            return Err(Status::invalid_argument(format!(
                "size must be between 1 byte and {} bytes",
                cairn_state::MAX_VOLUME_BYTES
            )));
        }
        // Place on the leader's up-to-date state; apply validates the result again.
        self.linearizable().await?;
        let extents = r.size_bytes.div_ceil(cairn_state::EXTENT_SIZE_BYTES);
        let req = cairn_sched::PlaceRequest {
            prefer_cid: r.prefer_cid,
            preferred_zone: r.preferred_zone,
            even: r.even,
            ..cairn_sched::PlaceRequest::new(replicas)
        };
        let placements = {
            let d = self.sm.read();
            cairn_sched::place_volume(&d.state, &req, extents)
                .map_err(|e| Status::failed_precondition(format!("cannot place the volume: {e}")))?
        };
        let cmd = Cmd::CreateVolume(cairn_state::CreateVolume {
            name: r.name,
            size_bytes: r.size_bytes,
            provisioning: if r.thick {
                cairn_state::Provisioning::Thick
            } else {
                cairn_state::Provisioning::Thin
            },
            replicas,
            prefer_cid: r.prefer_cid,
            even: r.even,
            preferred_zone: r.preferred_zone,
            locs: placements.iter().map(|p| p.loc()).collect(),
        });
        let (mut results, log_index) = self.submit(vec![cmd]).await?;
        match results.pop() {
            Some(Ok(cairn_state::Reply::Volume {
                volume_id,
                first_pid,
                extents,
            })) => Ok(Response::new(pb::CreateVolumeResponse {
                volume_id,
                first_pid,
                extents,
                log_index,
            })),
            Some(Err(e)) => Err(cmd_status(&e)),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let r = request.into_inner();
        if !r.stale {
            self.linearizable().await?;
        }
        let value = {
            let d = self.sm.read();
            crate::views::read(&d.state, &r.what).map_err(Status::invalid_argument)?
        };
        Ok(Response::new(pb::ReadResponse {
            json: value.to_string(),
        }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let r = request.into_inner();
        if r.node_id == 0 || r.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "add-learner needs a node id >= 1 and a host:port address, got {} {:?}",
                r.node_id, r.addr
            )));
        }
        // Blocking: returns once the learner has caught up with the leader.
        match self
            .raft
            .add_learner(r.node_id, BasicNode { addr: r.addr }, true)
            .await
        {
            Ok(resp) => Ok(Response::new(pb::AdminResponse {
                log_index: resp.log_id.index,
            })),
            Err(e) => Err(admin_error(e)),
        }
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let voters: BTreeSet<NodeId> = request.into_inner().voters.into_iter().collect();
        if voters.is_empty() || voters.contains(&0) {
            return Err(Status::invalid_argument(
                "the new voter set must be non-empty node ids >= 1",
            ));
        }
        // retain = false: members left out of the voter set leave the cluster.
        match self
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
        {
            Ok(resp) => Ok(Response::new(pb::AdminResponse {
                log_index: resp.log_id.index,
            })),
            Err(e) => Err(admin_error(e)),
        }
    }

    async fn add_topo(
        &self,
        request: Request<pb::AddTopoRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write(Cmd::AddTopo {
            kind: topo_kind(r.kind)?,
            parent: r.parent,
            name: r.name,
        })
        .await
    }

    async fn move_topo(
        &self,
        request: Request<pb::MoveTopoRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write(Cmd::MoveTopo {
            id: r.id,
            parent: r.parent,
        })
        .await
    }

    async fn rename_topo(
        &self,
        request: Request<pb::RenameTopoRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write(Cmd::RenameTopo {
            id: r.id,
            name: r.name,
        })
        .await
    }

    async fn remove_topo(
        &self,
        request: Request<pb::RemoveTopoRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.write(Cmd::RemoveTopo {
            id: request.into_inner().id,
        })
        .await
    }

    async fn register_chunk(
        &self,
        request: Request<pb::RegisterChunkRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        if r.data_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "data_addr {:?} is not host:port",
                r.data_addr
            )));
        }
        self.write(Cmd::RegisterChunk {
            hostname: r.hostname,
            data_addr: r.data_addr,
            brick: r.brick,
            version: r.version,
            capabilities: r.capabilities,
        })
        .await
    }

    async fn move_chunk(
        &self,
        request: Request<pb::MoveChunkRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write(Cmd::MoveChunk {
            cid: r.cid,
            brick: r.brick,
        })
        .await
    }

    async fn rename_chunk(
        &self,
        request: Request<pb::RenameChunkRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write(Cmd::RenameChunk {
            cid: r.cid,
            name: r.name,
        })
        .await
    }

    async fn set_chunk_state(
        &self,
        request: Request<pb::SetChunkStateRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write(Cmd::SetChunkState {
            cid: r.cid,
            state: chunk_state(r.state)?,
        })
        .await
    }

    async fn set_failslow(
        &self,
        request: Request<pb::SetFailslowRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write(Cmd::SetFailslow {
            cid: r.cid,
            failslow: r.failslow,
        })
        .await
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.write(Cmd::DeleteVolume {
            volume_id: request.into_inner().volume_id,
        })
        .await
    }

    async fn update_extent(
        &self,
        request: Request<pb::UpdateExtentRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write(Cmd::UpdateExtent(cairn_state::UpdateExtent {
            pid: r.pid,
            expected_generation: r.expected_generation,
            loc: r.loc.map(|l| l.cids),
            alive_loc: r.alive_loc.map(|l| l.cids),
            lease_owner: r.lease_owner,
        }))
        .await
    }

    async fn set_config(
        &self,
        request: Request<pb::SetConfigRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        self.write(Cmd::SetConfig {
            key: r.key,
            value: r.value,
        })
        .await
    }
}

fn admin_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Status::failed_precondition(format!("membership change refused: {c}"))
        }
        e => {
            tracing::warn!(error = %e, "admin request failed");
            Status::unavailable(format!("admin request failed: {e}"))
        }
    }
}
