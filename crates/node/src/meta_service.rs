//! The `Meta` gRPC service: proposals through Raft and reads.

use std::collections::BTreeSet;

use cairn_state::{ChunkState, Cmd, CmdError, Reply, TopoKind};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tonic::{Request, Response, Status};

use crate::store::sm::SmHandle;
use crate::tls::Role;
use crate::types::{self, pb, NodeId, Raft};

use crate::copies::SchedHandle;
use crate::linearizable::BarrierError;
use crate::propose::{not_leader, Proposed, Proposer};
pub use crate::propose::{now_ms, LEADER_KEY};
use crate::sched_service;
use crate::sessions::Sessions;
/// Most commands one proposal may carry.
pub const MAX_CMDS_PER_PROPOSAL: usize = 4096;

pub struct MetaService {
    raft: Raft,
    cluster_id: u64,
    sm: SmHandle,
    proposer: Proposer,
    sessions: Sessions,
    sched: SchedHandle,
}

impl MetaService {
    pub fn new(
        raft: Raft,
        sm: SmHandle,
        cluster_id: u64,
        proposer: Proposer,
        sessions: Sessions,
        sched: SchedHandle,
    ) -> MetaService {
        MetaService {
            raft,
            cluster_id,
            sm,
            proposer,
            sessions,
            sched,
        }
    }

    /// Waits until this member may serve a linearizable read (it is the
    /// leader, confirmed by a quorum, and has applied the read index).
    async fn linearizable(&self) -> Result<(), Status> {
        if crate::chaos_bug::active("stale-read") {
            return Ok(());
        }
        match crate::linearizable::barrier(&self.raft).await {
            Ok(_) => Ok(()),
            Err(BarrierError::NotLeader(f)) => Err(not_leader(&f)),
            Err(e) => Err(Status::unavailable(format!(
                "linearizable read failed: {e}"
            ))),
        }
    }

    /// A client may write an entry of a capability only once it is active,
    /// and advertise only a current member (a member says it of itself).
    fn check_gated(&self, cmds: &[Cmd]) -> Result<(), Status> {
        let copies_on = self
            .sm
            .read()
            .state
            .feature_active(cairn_capability::COPY_COMMANDS);
        for c in cmds {
            match c {
                Cmd::FinishCopy(_) if !copies_on => {
                    return Err(Status::failed_precondition(format!(
                        "FinishCopy is written only once capability {} is active (see `cairn upgrade status`)",
                        cairn_capability::COPY_COMMANDS
                    )))
                }
                Cmd::AdvertiseMember { node_id, .. } => {
                    let member = self
                        .raft
                        .metrics()
                        .borrow()
                        .membership_config
                        .membership()
                        .get_node(node_id)
                        .is_some();
                    if !member {
                        return Err(Status::failed_precondition(format!(
                            "member {node_id} is not in the cluster's membership"
                        )));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn submit(&self, cmds: Vec<Cmd>) -> Proposed {
        self.proposer.submit(cmds).await
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

    /// `max_request_bytes`: the largest request decoded (replies, such as
    /// a large read, may be bigger).
    pub fn into_server(self, max_request_bytes: usize) -> pb::meta_server::MetaServer<MetaService> {
        pb::meta_server::MetaServer::new(self)
            .max_decoding_message_size(max_request_bytes)
            .max_encoding_message_size(64 << 20)
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

/// Commands only the leader's own runners (or the Chunk service) may
/// propose: a client that could would end a healthy chunk's session,
/// switch on a behaviour some member lacks, or start a copy the scheduler
/// does not count (operators use `ManualCopy`). `FinishCopy` stays open:
/// `FinishCopy{update: None}` is how an operator abandons a copy.
fn leader_only(c: &Cmd) -> bool {
    matches!(
        c,
        Cmd::ExpireSession { .. }
            | Cmd::CloseSession { .. }
            | Cmd::SessionCheckpoint { .. }
            | Cmd::ActivateFeature { .. }
            | Cmd::IssueCopy(_)
            | Cmd::AdoptCopies { .. }
            | Cmd::AdvertiseChunk { .. }
    )
}

/// A member proposes only its own advertisement, and only a member
/// advertises a member: its version is its own word (docs/security.md).
fn check_proposer(role: Option<&Role>, cmds: &[Cmd]) -> Result<(), Status> {
    for c in cmds {
        match (role, c) {
            (None, _) => {}
            (Some(role), Cmd::AdvertiseMember { node_id, .. }) => {
                if !matches!(role, Role::Member(_)) {
                    tracing::warn!(%role, node_id, "refused: advertising a member");
                    return Err(Status::permission_denied(format!(
                        "{role} may not advertise member {node_id}: a member advertises itself"
                    )));
                }
                crate::authz::check_member_self(Some(role), *node_id, "advertise")?;
            }
            (Some(Role::Member(id)), other) => {
                tracing::warn!(member = id, cmd = ?other, "refused: member proposing");
                return Err(Status::permission_denied(format!(
                    "member:{id} may propose only its own advertisement, not {}",
                    cmd_name(other)
                )));
            }
            (Some(_), _) => {}
        }
    }
    Ok(())
}

/// A command's variant name, for messages (not its content).
fn cmd_name(c: &Cmd) -> String {
    let debug = format!("{c:?}");
    debug
        .split(|ch: char| !ch.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
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

#[tonic::async_trait]
impl pb::meta_server::Meta for MetaService {
    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeResponse>, Status> {
        let role = crate::authz::role_of(&request)?;
        let cmds: Vec<Cmd> = types::decode(&request.get_ref().cmds)
            .map_err(|e| Status::invalid_argument(format!("cannot decode commands: {e}")))?;
        check_proposer(role.as_ref(), &cmds)?;
        if let Some(c) = cmds.iter().find(|c| leader_only(c)) {
            return Err(Status::permission_denied(format!(
                "{c:?} is decided by the leader alone (session tracker, upgrade gate, scheduler) and cannot be proposed by a client"
            )));
        }
        if cmds.is_empty() || cmds.len() > MAX_CMDS_PER_PROPOSAL {
            return Err(Status::invalid_argument(format!(
                "a proposal carries 1..={MAX_CMDS_PER_PROPOSAL} commands, not {}",
                cmds.len()
            )));
        }
        self.check_gated(&cmds)?;
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
            self.linearizable().await?;
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
            pid: std::process::id(),
            quorum_ack_age_ms: m.millis_since_quorum_ack,
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
        if crate::chaos_bug::active("handler-panic") && r.what.is_empty() {
            panic!("deliberate handler panic (CAIRN_CHAOS_BUG=handler-panic)");
        }
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
        let role = crate::authz::role_of(&request)?;
        let r = request.into_inner();
        crate::authz::check_member_self(role.as_ref(), r.node_id, "add a learner")?;
        if matches!(role, Some(Role::Member(_))) && !r.advertised {
            // A joining member's version is checked against the active
            // capabilities: it may not skip that by not advertising.
            return Err(Status::permission_denied(
                "a member joins with its advertisement (version and capabilities)",
            ));
        }
        if r.node_id == 0 || r.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "add-learner needs a node id >= 1 and a host:port address, got {} {:?}",
                r.node_id, r.addr
            )));
        }
        if r.advertised {
            let advert = cairn_capability::Advert {
                version: r.version.clone(),
                capabilities: r.capabilities.iter().cloned().collect(),
            };
            let active = self.sm.read().state.active_features().clone();
            if let Err(refused) = cairn_capability::check_join(
                &active,
                cairn_capability::Party::Member(r.node_id),
                &advert,
            ) {
                tracing::warn!(%refused, "member refused");
                return Err(Status::failed_precondition(refused.to_string()));
            }
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

    async fn list_sessions(
        &self,
        _request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        // Only the leader knows when it last heard from each chunk.
        self.linearizable().await?;
        let wall = now_ms();
        let d = self.sm.read();
        let rows = self.sessions.with_tracker(|t, now| {
            t.view(now)
                .into_iter()
                .map(|v| pb::SessionRow {
                    cid: v.cid,
                    session_id: v.session_id,
                    lease_ms: v.lease_ms,
                    age_ms: d
                        .state
                        .session(v.cid)
                        .filter(|s| s.session_id == v.session_id)
                        .map_or(0, |s| wall.saturating_sub(s.opened_at_ms)),
                    silent_ms: v.silent_ms,
                    expiring: v.expiring,
                })
                .collect::<Vec<_>>()
        });
        let (Some(sessions), Some(since)) = (rows, self.sessions.tracking_since()) else {
            return Err(Status::unavailable(
                "the leader is starting its session tracker; retry",
            ));
        };
        Ok(Response::new(pb::ListSessionsResponse {
            leader_id: self.raft.metrics().borrow().id,
            tracking_ms: self.sessions.now().saturating_sub(since),
            sessions,
        }))
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

    async fn upgrade_status(
        &self,
        _request: Request<pb::UpgradeStatusRequest>,
    ) -> Result<Response<pb::UpgradeStatusResponse>, Status> {
        self.linearizable().await?;
        let json = {
            let d = self.sm.read();
            crate::upgrade::status(&d.state, &self.raft).to_string()
        };
        Ok(Response::new(pb::UpgradeStatusResponse { json }))
    }

    async fn sched_status(
        &self,
        _request: Request<pb::SchedStatusRequest>,
    ) -> Result<Response<pb::SchedStatusResponse>, Status> {
        self.linearizable().await?;
        let leader_id = self.raft.metrics().borrow().id;
        let d = self.sm.read();
        sched_service::status(&d.state, &self.sched, self.sessions.board(), leader_id)
            .map(Response::new)
    }

    async fn sched_explain(
        &self,
        request: Request<pb::SchedExplainRequest>,
    ) -> Result<Response<pb::SchedExplainResponse>, Status> {
        self.linearizable().await?;
        let d = self.sm.read();
        let text = sched_service::explain(&d.state, &self.sched, request.get_ref().pid)?;
        Ok(Response::new(pb::SchedExplainResponse { text }))
    }

    async fn manual_copy(
        &self,
        request: Request<pb::ManualCopyRequest>,
    ) -> Result<Response<pb::ManualCopyResponse>, Status> {
        self.linearizable().await?;
        let d = self.sm.read();
        sched_service::manual(&d.state, &self.sched, request.get_ref()).map(Response::new)
    }

    async fn gather(
        &self,
        request: Request<pb::GatherRequest>,
    ) -> Result<Response<pb::GatherResponse>, Status> {
        self.linearizable().await?;
        let d = self.sm.read();
        sched_service::gather(&d.state, &self.sched, request.get_ref()).map(Response::new)
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
