//! Client library for the `Meta` service: follows the leader, retries on
//! another endpoint when one is down, all within a deadline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_state::{Cmd, CmdError, Reply};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::meta_service::LEADER_KEY;
use crate::types::{self, pb};

#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    #[error("no endpoints given")]
    NoEndpoints,
    #[error("invalid endpoint {0:?}: expected host:port")]
    BadEndpoint(String),
    #[error("gave up after {elapsed_ms} ms: {last}")]
    Timeout { elapsed_ms: u128, last: String },
    #[error("{0}")]
    Rejected(String),
    #[error("cannot decode the server's reply: {0}")]
    Decode(String),
}

pub struct MetaClient {
    endpoints: Vec<String>,
    leader: Mutex<Option<String>>,
    channels: Mutex<HashMap<String, Channel>>,
    /// How long one call may keep retrying.
    pub deadline: Duration,
}

/// Result of one proposal: per-command results and the entry's log index.
pub type Proposed = (Vec<Result<Reply, CmdError>>, u64);

impl MetaClient {
    /// `endpoints` are `host:port` of any members.
    pub fn new(endpoints: Vec<String>) -> Result<MetaClient, ClientError> {
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
        let c = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| ClientError::BadEndpoint(addr.to_string()))?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy();
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
        let bytes =
            types::encode(&cmds.to_vec()).map_err(|e| ClientError::Rejected(e.to_string()))?;
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
            let req = pb::ProposeRequest {
                cmds: bytes.clone(),
            };
            match self.client(&addr)?.propose(req).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    let results = types::decode(&resp.results).map_err(ClientError::Decode)?;
                    return Ok((results, resp.log_index));
                }
                Err(status) => {
                    last = format!("{addr}: {}", status.message());
                    let leader = status
                        .metadata()
                        .get(LEADER_KEY)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match status.code() {
                        Code::InvalidArgument | Code::PermissionDenied => {
                            return Err(ClientError::Rejected(status.message().to_string()))
                        }
                        _ => {
                            let follow = leader.filter(|l| *l != addr);
                            let found = follow.is_some();
                            *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = follow;
                            if found {
                                continue; // go straight to the leader
                            }
                        }
                    }
                }
            }
            // Bounded exponential backoff between rounds (an election takes ~1 s).
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
            .map_err(|s| ClientError::Rejected(format!("{addr}: {}", s.message())))
    }
}
