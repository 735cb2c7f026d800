//! Client library for the `Meta` service: follows the leader, retries on
//! another endpoint when one is down, all within a deadline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_state::{Cmd, CmdError, Reply};
use tonic::transport::Channel;
use tonic::Code;

use crate::meta_service::LEADER_KEY;
use crate::transport::Transport;
use crate::types::{self, pb};

#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    #[error("no endpoints given")]
    NoEndpoints,
    #[error("invalid endpoint {0:?}: expected host:port")]
    BadEndpoint(String),
    #[error("gave up after {elapsed_ms} ms: {last}")]
    Timeout { elapsed_ms: u128, last: String },
    /// The server refused the request for good (retrying will not help).
    #[error("{message}")]
    Rejected { code: Code, message: String },
    #[error("cannot decode the server's reply: {0}")]
    Decode(String),
}

pub struct MetaClient {
    endpoints: Vec<String>,
    transport: Transport,
    leader: Mutex<Option<String>>,
    channels: Mutex<HashMap<String, Channel>>,
    /// How long one call may keep retrying.
    pub deadline: Duration,
}

/// Result of one proposal: per-command results and the entry's log index.
pub type Proposed = (Vec<Result<Reply, CmdError>>, u64);

impl MetaClient {
    /// `endpoints` are `host:port` of any members, reached over `transport`.
    pub fn new(endpoints: Vec<String>, transport: Transport) -> Result<MetaClient, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        for e in &endpoints {
            if e.parse::<std::net::SocketAddr>().is_err() && !e.contains(':') {
                return Err(ClientError::BadEndpoint(e.clone()));
            }
        }
        Ok(MetaClient {
            endpoints,
            transport,
            leader: Mutex::new(None),
            channels: Mutex::new(HashMap::new()),
            deadline: Duration::from_secs(10),
        })
    }

    fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = self
            .transport
            .channel(addr, |e| {
                e.connect_timeout(Duration::from_millis(500))
                    .timeout(Duration::from_secs(5))
            })
            .map_err(|_| ClientError::BadEndpoint(addr.to_string()))?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn client(&self, addr: &str) -> Result<pb::meta_client::MetaClient<Channel>, ClientError> {
        Ok(pb::meta_client::MetaClient::new(self.channel(addr)?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    /// Proposes `cmds` as one log entry on the leader, wherever it is.
    pub async fn propose(&self, cmds: &[Cmd]) -> Result<Proposed, ClientError> {
        let bytes = types::encode(&cmds.to_vec()).map_err(|e| ClientError::Rejected {
            code: Code::InvalidArgument,
            message: e.to_string(),
        })?;
        let resp = self
            .on_leader(|mut c| {
                let req = pb::ProposeRequest {
                    cmds: bytes.clone(),
                };
                async move { c.propose(req).await }
            })
            .await?;
        let results = types::decode(&resp.results).map_err(ClientError::Decode)?;
        Ok((results, resp.log_index))
    }

    /// Creates a volume; the leader chooses every extent's replicas.
    pub async fn create_volume(
        &self,
        req: pb::CreateVolumeRequest,
    ) -> Result<pb::CreateVolumeResponse, ClientError> {
        self.on_leader(|mut c| {
            let req = req.clone();
            async move { c.create_volume(req).await }
        })
        .await
    }

    /// A JSON view of the state (see `views::read` for `what`), linearizable
    /// (from the leader) unless `stale`.
    pub async fn read(&self, what: &str, stale: bool) -> Result<serde_json::Value, ClientError> {
        let resp = self
            .on_leader(|mut c| {
                let req = pb::ReadRequest {
                    stale,
                    what: what.to_string(),
                };
                async move { c.read(req).await }
            })
            .await?;
        serde_json::from_str(&resp.json).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Every live session as the leader's tracker sees it.
    pub async fn list_sessions(&self) -> Result<pb::ListSessionsResponse, ClientError> {
        self.on_leader(|mut c| async move { c.list_sessions(pb::ListSessionsRequest {}).await })
            .await
    }

    /// Adds a learner; returns once it has caught up.
    /// `advert`: the joining member's version and capabilities, checked by
    /// the leader against the active ones.
    pub async fn add_learner(
        &self,
        node_id: u64,
        addr: &str,
        advert: Option<&cairn_capability::Advert>,
    ) -> Result<u64, ClientError> {
        let resp = self
            .on_leader(|mut c| {
                let req = pb::AddLearnerRequest {
                    node_id,
                    addr: addr.to_string(),
                    advertised: advert.is_some(),
                    version: advert.map(|a| a.version.clone()).unwrap_or_default(),
                    capabilities: advert
                        .map(|a| a.capabilities.iter().cloned().collect())
                        .unwrap_or_default(),
                };
                async move { c.add_learner(req).await }
            })
            .await?;
        Ok(resp.log_index)
    }

    /// Replaces the voter set; members left out leave the cluster.
    pub async fn change_membership(&self, voters: &[u64]) -> Result<u64, ClientError> {
        let resp = self
            .on_leader(|mut c| {
                let req = pb::ChangeMembershipRequest {
                    voters: voters.to_vec(),
                };
                async move { c.change_membership(req).await }
            })
            .await?;
        Ok(resp.log_index)
    }

    /// Runs `call` on the leader: follows the leader address a follower
    /// returns, tries the next endpoint when one is down, and retries with a
    /// bounded backoff until the deadline (an election takes about a second).
    async fn on_leader<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(pb::meta_client::MetaClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = Instant::now();
        let mut next = 0usize;
        let mut backoff = Duration::from_millis(10);
        let mut last = String::new();
        while start.elapsed() < self.deadline {
            let hint = self
                .leader
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let addr = hint.unwrap_or_else(|| {
                next += 1;
                self.endpoints[next % self.endpoints.len()].clone()
            });
            match call(self.client(&addr)?).await {
                Ok(resp) => {
                    *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
                    return Ok(resp.into_inner());
                }
                Err(status) => {
                    last = format!("{addr}: {}", explain(&status));
                    if matches!(
                        status.code(),
                        Code::InvalidArgument
                            | Code::PermissionDenied
                            | Code::Unauthenticated
                            | Code::FailedPrecondition
                            | Code::NotFound
                            | Code::Aborted
                            | Code::AlreadyExists
                            | Code::OutOfRange
                            | Code::ResourceExhausted
                            | Code::Unimplemented
                    ) {
                        return Err(ClientError::Rejected {
                            code: status.code(),
                            message: status.message().to_string(),
                        });
                    }
                    let follow = status
                        .metadata()
                        .get(LEADER_KEY)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .filter(|l| *l != addr);
                    let found = follow.is_some();
                    *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = follow;
                    if found {
                        continue; // go straight to the leader
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
        Err(ClientError::Timeout {
            elapsed_ms: start.elapsed().as_millis(),
            last,
        })
    }

    /// Status of one member (`stale`: answer locally, no leader round trip).
    pub async fn status_of(
        &self,
        addr: &str,
        stale: bool,
    ) -> Result<pb::StatusResponse, ClientError> {
        self.client(addr)?
            .status(pb::StatusRequest { stale })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| ClientError::Rejected {
                code: s.code(),
                message: format!("{addr}: {}", explain(&s)),
            })
    }
}

/// A status with the causes tonic keeps out of its message (a transport
/// error's "invalid peer certificate: UnknownIssuer", say).
fn explain(status: &tonic::Status) -> String {
    let mut msg = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let e_msg = e.to_string();
        if !msg.contains(&e_msg) {
            msg = format!("{msg}: {e_msg}");
        }
        source = e.source();
    }
    msg
}

impl ClientError {
    /// The gRPC code of a refusal, if the server refused.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One typed method per write RPC of the `Meta` service, each run on the
/// leader like every other call.
macro_rules! write_rpcs {
    ($($name:ident($req:ident);)*) => {
        impl MetaClient {
            $(
                pub async fn $name(&self, req: pb::$req) -> Result<pb::WriteResponse, ClientError> {
                    self.on_leader(|mut c| {
                        let req = req.clone();
                        async move { c.$name(req).await }
                    })
                    .await
                }
            )*
        }
    };
}

write_rpcs! {
    add_topo(AddTopoRequest);
    move_topo(MoveTopoRequest);
    rename_topo(RenameTopoRequest);
    remove_topo(RemoveTopoRequest);
    register_chunk(RegisterChunkRequest);
    move_chunk(MoveChunkRequest);
    rename_chunk(RenameChunkRequest);
    set_chunk_state(SetChunkStateRequest);
    set_failslow(SetFailslowRequest);
    delete_volume(DeleteVolumeRequest);
    update_extent(UpdateExtentRequest);
    set_config(SetConfigRequest);
}

/// The scheduler's RPCs, run on the leader like every other call.
macro_rules! leader_rpcs {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        impl MetaClient {
            $(
                pub async fn $name(&self, req: pb::$req) -> Result<pb::$resp, ClientError> {
                    self.on_leader(|mut c| {
                        let req = req.clone();
                        async move { c.$name(req).await }
                    })
                    .await
                }
            )*
        }
    };
}

leader_rpcs! {
    sched_status(SchedStatusRequest) -> SchedStatusResponse;
    sched_explain(SchedExplainRequest) -> SchedExplainResponse;
    manual_copy(ManualCopyRequest) -> ManualCopyResponse;
    gather(GatherRequest) -> GatherResponse;
    upgrade_status(UpgradeStatusRequest) -> UpgradeStatusResponse;
}
