//! The workload's client: honest about what it does not know.
//!
//! `cairn_node::client::MetaClient` retries a write on another member after
//! any error, which is right for an operator's CLI but would hide exactly
//! what a history must record: a write whose connection broke may still
//! commit. Here a write is retried only after a *definite* refusal (the
//! member said it is not the leader, which openraft says before appending,
//! or the connection was never made); any other error ends the operation as
//! unknown (`info`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_node::meta_service::LEADER_KEY;
use cairn_node::types::{self, pb};
use cairn_state::{Cmd, CmdError, Reply, UpdateExtent};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::history::ExtentValue;

/// How an operation ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    Ok(T),
    /// Certainly did not take effect; for a CAS refused because the
    /// generation moved, the generation the state machine saw.
    Fail {
        why: String,
        generation: Option<u64>,
    },
    /// May or may not have taken effect.
    Info(String),
}

/// Like a Jepsen client, each client is bound to one member: every
/// operation starts there and follows the leader hint only for that
/// operation. So every member serves (or redirects) requests all the time,
/// and a member that answers what only the leader may answer is caught.
pub struct Client {
    endpoints: Vec<String>,
    channels: BTreeMap<String, Channel>,
    leader: Option<String>,
    next: usize,
    home: usize,
}

/// Whether a failed call certainly did not reach the state machine.
fn definite(s: &Status) -> bool {
    let m = s.message();
    // Refused before proposing, or a proposal openraft dropped from its log
    // (ForwardToLeader: the entry was truncated and can never commit).
    s.code() == Code::Unavailable
        && (m.starts_with("not the leader")
            || m.starts_with("linearizable read failed")
            // The connection was never made: nothing was sent.
            || m.contains("tcp connect error")
            || m.contains("error trying to connect")
            || m.contains("Connection refused"))
}

impl Client {
    /// A client bound to `endpoints[home % len]`.
    pub fn new(endpoints: Vec<String>, home: usize) -> Client {
        let home = home % endpoints.len().max(1);
        Client {
            endpoints,
            channels: BTreeMap::new(),
            leader: None,
            next: home,
            home,
        }
    }

    fn channel(&mut self, addr: &str) -> Result<Channel, String> {
        if let Some(c) = self.channels.get(addr) {
            return Ok(c.clone());
        }
        let c = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad address {addr}: {e}"))?
            .connect_timeout(Duration::from_millis(300))
            .tcp_nodelay(true)
            .connect_lazy();
        self.channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn target(&mut self) -> String {
        if let Some(l) = &self.leader {
            return l.clone();
        }
        self.next = (self.next + 1) % self.endpoints.len().max(1);
        self.endpoints
            .get(self.next)
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:1".into())
    }

    /// After a definite refusal: follow the leader hint, or try the next member.
    fn follow(&mut self, s: &Status) {
        self.leader = s
            .metadata()
            .get(LEADER_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }

    /// Calls until a reply, a final refusal, or `deadline`. `write` decides
    /// what an indefinite error means: unknown for a write, a plain failure
    /// for a read.
    async fn call<T, F, Fut>(
        &mut self,
        deadline: Instant,
        write: bool,
        f: F,
    ) -> Result<T, Outcome<T>>
    where
        F: Fn(pb::meta_client::MetaClient<Channel>, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut last = String::from("no attempt");
        // Each operation starts at the client's own member.
        self.leader = self.endpoints.get(self.home).cloned();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Every attempt so far was definitely refused.
                return Err(Outcome::Fail {
                    why: format!("timed out after definite refusals: {last}"),
                    generation: None,
                });
            }
            let addr = self.target();
            let ch = match self.channel(&addr) {
                Ok(c) => c,
                Err(e) => {
                    return Err(Outcome::Fail {
                        why: e,
                        generation: None,
                    })
                }
            };
            let client = pb::meta_client::MetaClient::new(ch);
            let r = tokio::time::timeout(left, f(client, left)).await;
            let status = match r {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(s)) => s,
                Err(_) => Status::deadline_exceeded("client deadline passed"),
            };
            if definite(&status) {
                last = format!("{addr}: {}", status.message());
                self.follow(&status);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            self.leader = None;
            let why = format!("{addr}: {:?}: {}", status.code(), status.message());
            return Err(if write && !refused(status.code()) {
                Outcome::Info(why)
            } else {
                Outcome::Fail {
                    why,
                    generation: None,
                }
            });
        }
    }

    /// A linearizable read of one extent (served by the leader).
    pub async fn read(&mut self, pid: u64, deadline: Instant) -> Outcome<ExtentValue> {
        let what = format!("extent {pid}");
        let r = self
            .call(deadline, false, |mut c, left| {
                let mut req = tonic::Request::new(pb::ReadRequest {
                    stale: false,
                    what: what.clone(),
                });
                req.set_timeout(left);
                async move { c.read(req).await }
            })
            .await;
        match r {
            Err(o) => reclass(o),
            Ok(resp) => match parse_extent(&resp.json) {
                Some(v) => Outcome::Ok(v),
                None => Outcome::Fail {
                    why: format!("unexpected reply {}", resp.json),
                    generation: None,
                },
            },
        }
    }

    /// `UpdateExtent` compare-and-set of the extent's lease owner.
    pub async fn cas(
        &mut self,
        pid: u64,
        expected_generation: u64,
        owner: u32,
        deadline: Instant,
    ) -> Outcome<u64> {
        let cmd = Cmd::UpdateExtent(UpdateExtent {
            pid,
            expected_generation,
            loc: None,
            alive_loc: None,
            lease_owner: Some(owner),
        });
        let bytes = match types::encode(&vec![cmd]) {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Fail {
                    why: e.to_string(),
                    generation: None,
                }
            }
        };
        let r = self
            .call(deadline, true, |mut c, left| {
                let mut req = tonic::Request::new(pb::ProposeRequest {
                    cmds: bytes.clone(),
                });
                req.set_timeout(left);
                async move { c.propose(req).await }
            })
            .await;
        let resp = match r {
            Err(o) => return reclass(o),
            Ok(r) => r,
        };
        let results: Vec<Result<Reply, CmdError>> = match types::decode(&resp.results) {
            Ok(r) => r,
            // The entry committed; only its answer is garbled.
            Err(e) => return Outcome::Info(format!("undecodable reply: {e}")),
        };
        match results.into_iter().next() {
            Some(Ok(Reply::Generation(g))) => Outcome::Ok(g),
            Some(Ok(other)) => Outcome::Info(format!("unexpected reply {other:?}")),
            Some(Err(CmdError::GenerationMismatch { actual, .. })) => Outcome::Fail {
                why: "generation moved".into(),
                generation: Some(actual),
            },
            Some(Err(e)) => Outcome::Fail {
                why: e.to_string(),
                generation: None,
            },
            None => Outcome::Info("empty reply".into()),
        }
    }

    /// Creates a volume (the leader places it). Ok: (volume id, first pid).
    pub async fn create_volume(
        &mut self,
        name: &str,
        extents: u64,
        deadline: Instant,
    ) -> Outcome<(u64, u64)> {
        let req0 = pb::CreateVolumeRequest {
            name: name.to_string(),
            size_bytes: extents * cairn_state::EXTENT_SIZE_BYTES,
            thick: false,
            replicas: 3,
            prefer_cid: 0,
            even: false,
            preferred_zone: 0,
        };
        let r = self
            .call(deadline, true, |mut c, left| {
                let mut req = tonic::Request::new(req0.clone());
                req.set_timeout(left);
                async move { c.create_volume(req).await }
            })
            .await;
        match r {
            Err(o) => reclass(o),
            Ok(v) => Outcome::Ok((v.volume_id, v.first_pid)),
        }
    }
}

/// Codes the server uses for a command the state machine (or validation
/// before proposing) refused: the operation certainly did not happen.
fn refused(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::Aborted
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::OutOfRange
    )
}

fn reclass<T, U>(o: Outcome<T>) -> Outcome<U> {
    match o {
        Outcome::Ok(_) => Outcome::Info("internal: ok reclassified".into()),
        Outcome::Fail { why, generation } => Outcome::Fail { why, generation },
        Outcome::Info(why) => Outcome::Info(why),
    }
}

/// `{"generation": g, "lease_owner": o, ...}` from the `extent <pid>` view.
pub fn parse_extent(json: &str) -> Option<ExtentValue> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(ExtentValue {
        generation: v.get("generation")?.as_u64()?,
        owner: u32::try_from(v.get("lease_owner")?.as_u64()?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_before_proposing_are_definite() {
        assert!(definite(&Status::unavailable(
            "not the leader; the leader is node 2 at 127.0.0.1:5"
        )));
        assert!(definite(&Status::unavailable(
            "error trying to connect: tcp connect error: Connection refused (os error 111)"
        )));
        // Proposed, then the leader failed: it may still commit.
        assert!(!definite(&Status::unavailable("proposal failed: fatal")));
        assert!(!definite(&Status::unknown("connection reset")));
        assert!(!definite(&Status::deadline_exceeded("deadline")));
    }

    #[test]
    fn extent_views_parse() {
        let v = parse_extent(r#"{"pid":4,"generation":7,"lease_owner":3,"loc":[1,2,3]}"#);
        assert_eq!(
            v,
            Some(ExtentValue {
                generation: 7,
                owner: 3
            })
        );
        assert_eq!(parse_extent("{}"), None);
    }
}
