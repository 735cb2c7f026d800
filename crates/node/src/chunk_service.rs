//! The chunk-facing `Chunk` gRPC service: register and keep alive.
//!
//! Only the leader serves sessions. Register is a Raft write (it opens a
//! session); KeepAlive is answered from the leader's tracker in memory.

use cairn_sched::{keepalive_interval_ms, KeepAliveError};
use cairn_state::{ChunkSpaceInfo, ChunkState, Cmd, Reply};
use openraft::error::ForwardToLeader;
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Mutex;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::limits::{Bucket, Limits};
use crate::meta_service::cmd_status;
use crate::propose::{not_leader, Proposer};
use crate::sessions::Sessions;
use crate::store::sm::SmHandle;
use crate::tls::Role;
use crate::types::{pb, Raft};

pub struct ChunkService {
    raft: Raft,
    sm: SmHandle,
    proposer: Proposer,
    sessions: Sessions,
    /// (hostname, data_addr) of new chunks whose registration is being
    /// proposed: a retry meanwhile waits instead of creating a second chunk.
    registering: Mutex<HashSet<(String, String)>>,
    limits: Limits,
}

/// Removes a registration from `registering` when it ends, however it ends.
struct Registering<'a> {
    set: &'a Mutex<HashSet<(String, String)>>,
    key: (String, String),
}

impl Drop for Registering<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl ChunkService {
    pub fn new(
        raft: Raft,
        sm: SmHandle,
        proposer: Proposer,
        sessions: Sessions,
        limits: Limits,
    ) -> ChunkService {
        ChunkService {
            raft,
            sm,
            proposer,
            sessions,
            registering: Mutex::default(),
            limits,
        }
    }

    pub fn into_server(self) -> pb::chunk_server::ChunkServer<ChunkService> {
        let max = self.limits.max_message_bytes;
        pb::chunk_server::ChunkServer::new(self).max_decoding_message_size(max)
    }

    fn not_serving(&self) -> Status {
        not_serving(&self.raft)
    }
}

pub fn space_from_pb(s: &pb::SpaceInfo) -> ChunkSpaceInfo {
    ChunkSpaceInfo {
        valid_data_space: s.valid_data_space,
        used_data_space: s.used_data_space,
        provisioned_data_space: s.provisioned_data_space,
        allocated_data_space: s.allocated_data_space,
        total_data_capacity: s.total_data_capacity,
        failure_data_space: s.failure_data_space,
        valid_cache_space: s.valid_cache_space,
        used_cache_space: s.used_cache_space,
        dirty_cache_space: s.dirty_cache_space,
        failure_cache_space: s.failure_cache_space,
        total_cache_capacity: s.total_cache_capacity,
        temporary_replica_space: s.temporary_replica_space,
        num_rx_pids: s.num_rx_pids,
        num_tx_pids: s.num_tx_pids,
        num_reserved_pids: s.num_reserved_pids,
    }
}

pub fn space_to_pb(s: &ChunkSpaceInfo) -> pb::SpaceInfo {
    pb::SpaceInfo {
        valid_data_space: s.valid_data_space,
        used_data_space: s.used_data_space,
        provisioned_data_space: s.provisioned_data_space,
        allocated_data_space: s.allocated_data_space,
        total_data_capacity: s.total_data_capacity,
        failure_data_space: s.failure_data_space,
        valid_cache_space: s.valid_cache_space,
        used_cache_space: s.used_cache_space,
        dirty_cache_space: s.dirty_cache_space,
        failure_cache_space: s.failure_cache_space,
        total_cache_capacity: s.total_cache_capacity,
        temporary_replica_space: s.temporary_replica_space,
        num_rx_pids: s.num_rx_pids,
        num_tx_pids: s.num_tx_pids,
        num_reserved_pids: s.num_reserved_pids,
    }
}

fn checked_space(s: Option<&pb::SpaceInfo>) -> Result<Option<ChunkSpaceInfo>, Status> {
    let Some(s) = s else { return Ok(None) };
    let space = space_from_pb(s);
    space
        .validate()
        .map_err(|e| Status::invalid_argument(format!("invalid space report: {e}")))?;
    Ok(Some(space))
}

#[tonic::async_trait]
impl pb::chunk_server::Chunk for ChunkService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let role = crate::authz::role_of(&request)?;
        let r = request.into_inner();
        crate::authz::check_chunk(role.as_ref(), r.cid, "register")?;
        if self.sessions.tracking_since().is_none() {
            return Err(self.not_serving());
        }
        if r.data_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "data_addr {:?} is not host:port",
                r.data_addr
            )));
        }
        let space = checked_space(r.space.as_ref())?;
        // The advert as apply will check it, before anything is proposed.
        cairn_state::validate_capabilities(&r.version, &r.capabilities)
            .map_err(|e| cmd_status(&e))?;
        let advert = cairn_capability::Advert {
            version: r.version.clone(),
            capabilities: r.capabilities.iter().cloned().collect(),
        };
        // Once a capability is active, a chunk lacking it may not join:
        // it would not follow the behaviour the cluster switched to.
        let (lease_ms, refused) = {
            let d = self.sm.read();
            let refused = cairn_capability::check_join(
                d.state.active_features(),
                cairn_capability::Party::Chunk(r.cid),
                &advert,
            );
            (crate::upgrade::effective_lease_ms(&d.state), refused)
        };
        if let Err(refused) = refused {
            let msg = if r.cid == 0 {
                refused
                    .to_string()
                    .replacen("chunk 0", &format!("new chunk {}", r.hostname), 1)
            } else {
                refused.to_string()
            };
            tracing::warn!(host = %r.hostname, %msg, "chunk refused");
            return Err(Status::failed_precondition(msg));
        }
        // A new chunk whose first answer was lost (a timeout) registers again
        // with cid 0: the same hostname and data address get the same cid
        // instead of a second chunk.
        let known = (r.cid == 0)
            .then(|| {
                let d = self.sm.read();
                d.state
                    .chunks()
                    .find(|c| {
                        c.state != ChunkState::Removed
                            && c.hostname == r.hostname
                            && c.data_addr == r.data_addr
                    })
                    .map(|c| c.cid)
            })
            .flatten();
        let mut _in_flight = None;
        let cid = if let Some(cid) = known {
            cid
        } else if r.cid == 0 {
            let key = (r.hostname.clone(), r.data_addr.clone());
            if !self
                .registering
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone())
            {
                return Err(Status::unavailable(
                    "this chunk's registration is already in progress; retry",
                ));
            }
            _in_flight = Some(Registering {
                set: &self.registering,
                key,
            });
            let cmd = Cmd::RegisterChunk {
                hostname: r.hostname,
                data_addr: r.data_addr,
                brick: r.brick,
                version: r.version,
                capabilities: r.capabilities,
            };
            let (mut results, _) = self.proposer.submit(vec![cmd]).await?;
            match results.pop() {
                Some(Ok(Reply::Cid(cid))) => cid,
                Some(Err(e)) => return Err(cmd_status(&e)),
                other => return Err(Status::internal(format!("unexpected result {other:?}"))),
            }
        } else {
            match self.sm.read().state.chunk(r.cid).map(|c| c.state) {
                None => {
                    return Err(Status::not_found(format!(
                    "chunk {} is not known to this cluster; register with cid 0 to get a new one",
                    r.cid
                )))
                }
                Some(ChunkState::Removed) => {
                    return Err(Status::failed_precondition(format!(
                        "chunk {} was removed; its cid is never reused: register with cid 0",
                        r.cid
                    )))
                }
                Some(_) => r.cid,
            }
        };
        // Space and session in one entry; a live session of this cid is
        // closed by the same apply. A chunk back with another version (an
        // upgrade restart) says so in the same entry.
        let mut cmds = vec![];
        let changed =
            self.sm.read().state.chunk(cid).is_some_and(|c| {
                c.version != advert.version || c.capabilities != advert.capabilities
            });
        if changed {
            cmds.push(Cmd::AdvertiseChunk {
                cid,
                version: advert.version.clone(),
                capabilities: advert.capabilities.iter().cloned().collect(),
            });
        }
        if let Some(space) = space {
            cmds.push(Cmd::ReportSpace { cid, space });
        }
        cmds.push(Cmd::OpenSession { cid, lease_ms });
        let (mut results, index) = self.proposer.submit(cmds).await?;
        // A refused advert (a version with control characters, a bad
        // capability name) must not leave the old one standing unnoticed.
        if let Some(Err(e)) = results.iter().rev().skip(1).find(|r| r.is_err()) {
            tracing::warn!(cid, error = %e, "chunk advert refused");
            return Err(cmd_status(e));
        }
        let session_id = match results.pop() {
            Some(Ok(Reply::Session {
                session_id,
                replaced,
            })) => {
                tracing::info!(cid, session_id, ?replaced, index, "session opened");
                session_id
            }
            Some(Err(e)) => return Err(cmd_status(&e)),
            other => return Err(Status::internal(format!("unexpected result {other:?}"))),
        };
        // A capability activated while this chunk registered (the gate saw
        // the chunks live before it): it may not stay.
        let late = {
            let d = self.sm.read();
            cairn_capability::check_join(
                d.state.active_features(),
                cairn_capability::Party::Chunk(cid),
                &advert,
            )
        };
        if let Err(refused) = late {
            let _ = self
                .proposer
                .submit(vec![Cmd::CloseSession { cid, session_id }])
                .await;
            tracing::warn!(cid, %refused, "chunk refused (a capability activated while it registered)");
            return Err(Status::failed_precondition(refused.to_string()));
        }
        // The tracker learns of the session now, not at its next tick, so the
        // chunk's first keepalive finds it.
        let opened = self.sm.read().state.session(cid).copied();
        if let Some(s) = opened.filter(|s| s.session_id == session_id) {
            self.sessions.with_tracker(|t, now| t.opened(now, &s));
        }
        Ok(Response::new(pb::RegisterResponse {
            cid,
            session_id,
            lease_ms,
            keepalive_ms: keepalive_interval_ms(lease_ms),
        }))
    }

    async fn keep_alive(
        &self,
        request: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let role = crate::authz::role_of(&request)?;
        renew(
            &self.raft,
            &self.sessions,
            role.as_ref(),
            request.into_inner(),
        )
        .map(Response::new)
    }

    type KeepAliveStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::KeepAliveResponse, Status>> + Send + 'static>>;

    async fn keep_alive_stream(
        &self,
        request: Request<Streaming<pb::KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStreamStream>, Status> {
        if self.sessions.tracking_since().is_none() {
            return Err(self.not_serving());
        }
        let (raft, sessions) = (self.raft.clone(), self.sessions.clone());
        let role = crate::authz::role_of(&request)?;
        // Over its rate, a stream's next reply waits: the chunk that floods
        // slows only itself.
        let mut bucket = Bucket::new(self.limits.max_keepalives_per_sec);
        // Each message is answered as a unary KeepAlive would be; the first
        // error other than ABORTED ends the stream with that status.
        let replies = request
            .into_inner()
            .scan(false, move |failed, msg| {
                let reply = match (*failed, msg) {
                    (true, _) => None,
                    (false, Err(status)) => Some(Err(status)),
                    (false, Ok(req)) => Some(renew(&raft, &sessions, role.as_ref(), req)),
                };
                // ABORTED (renewing) asks for the same keepalive again soon:
                // the stream stays open for it.
                *failed = matches!(&reply, Some(Err(s)) if s.code() != tonic::Code::Aborted);
                let wait = bucket.take_at(1, std::time::Instant::now());
                futures::future::ready(reply.map(|r| (r, wait)))
            })
            .then(|(reply, wait)| async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                reply
            });
        Ok(Response::new(Box::pin(replies)))
    }
}

/// One keepalive: renew the session in the leader's tracker and stash the
/// space report.
fn renew(
    raft: &Raft,
    sessions: &Sessions,
    role: Option<&Role>,
    r: pb::KeepAliveRequest,
) -> Result<pb::KeepAliveResponse, Status> {
    renew_all(raft, sessions, role, std::iter::once(Some(r)))
        .pop()
        .unwrap_or_else(|| Err(Status::internal("no keepalive result")))
}

/// Renews a batch of keepalives under one lock of the tracker (the session
/// wire hands over everything that arrived on a connection at once). One
/// result per request, in order; `None` is a frame without a keepalive.
/// `role`: what the connection's certificate proved (None: `--insecure`).
pub fn renew_all(
    raft: &Raft,
    sessions: &Sessions,
    role: Option<&Role>,
    reqs: impl ExactSizeIterator<Item = Option<pb::KeepAliveRequest>>,
) -> Vec<Result<pb::KeepAliveResponse, Status>> {
    if sessions.tracking_since().is_none() {
        // Not serving sessions: a keepalive for another cid still hears
        // that it is refused, not where the leader is.
        let refused = |r: pb::KeepAliveRequest| {
            crate::authz::check_chunk(role, r.cid, "keep alive").and(Err(not_serving(raft)))
        };
        return reqs
            .map(|r| match r {
                Some(r) => refused(r),
                None => Err(Status::invalid_argument("a frame without a keepalive")),
            })
            .collect();
    }
    let n = reqs.len();
    let renewed = sessions.with_tracker(|t, now| {
        reqs.map(|r| {
            let r = r.ok_or_else(|| Status::invalid_argument("a frame without a keepalive"))?;
            crate::authz::check_chunk(role, r.cid, "keep alive")?;
            let space = checked_space(r.space.as_ref())?;
            let lease_ms = t
                .keepalive(now, r.cid, r.session_id)
                .map_err(keepalive_refused)?;
            if let Some(space) = space {
                t.report_space(r.cid, r.session_id, space);
            }
            let (term, commands) = sessions.board().exchange(r.cid, r.results, r.progress);
            Ok(pb::KeepAliveResponse {
                lease_ms,
                keepalive_ms: keepalive_interval_ms(lease_ms),
                commands,
                term,
            })
        })
        .collect()
    });
    renewed.unwrap_or_else(|| vec![Err(not_serving(raft)); n])
}

/// A refused keepalive as the chunk must read it: `NOT_FOUND`, register
/// again; `ABORTED`, renewed but not acknowledged (its lease is not
/// extended): send it again to the same member shortly.
fn keepalive_refused(e: KeepAliveError) -> Status {
    match e {
        KeepAliveError::Renewing { .. } => Status::aborted(e.to_string()),
        KeepAliveError::NoSession { .. } | KeepAliveError::Expired { .. } => {
            Status::not_found(e.to_string())
        }
    }
}

/// Why a member cannot serve sessions right now: the leader's address for
/// the chunk to follow, or "retry" while a new leader gets ready.
fn not_serving(raft: &Raft) -> Status {
    let m = raft.metrics().borrow().clone();
    if m.current_leader == Some(m.id) {
        return Status::unavailable("the leader is starting its session tracker; retry");
    }
    let leader_node = m
        .current_leader
        .and_then(|id| m.membership_config.membership().get_node(&id).cloned());
    not_leader(&ForwardToLeader {
        leader_id: m.current_leader,
        leader_node,
    })
}
