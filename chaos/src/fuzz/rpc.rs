//! The fuzz target of every RPC handler: a live member in this process (a
//! one-member cluster on 127.0.0.1, plain TCP: the roles have their own
//! tests in tests/security.rs, here every handler must be reached) takes,
//! on every method of `Meta`, `Chunk`, `Raft` and `Health`, arbitrary bytes
//! as the request and arbitrary well-typed requests (a valid request's
//! encoding mutated, then decoded as its type and encoded again).
//!
//! Property: every call ends within its deadline with a response or a
//! status, and the member keeps serving: every 500 cases and at the end it
//! answers a linearizable read and accepts a write. Panics are counted by
//! the runner (`super`).
//!
//! `AddLearner` and `ChangeMembership` get only requests that do not decode:
//! a well-formed one may legitimately remove the only member, or wait for a
//! learner that never answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Buf, BufMut};
use cairn_node::client::MetaClient;
use cairn_node::node::{Node, NodeConfig};
use cairn_node::transport::Transport;
use cairn_node::types::pb;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

use super::decoders::{decoders, Decoder as ByteDecoder};
use super::mutate;
use crate::rng::Rng;

/// How long one call may take before it counts as a hang.
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// Bytes in, bytes out: the request's encoding is the fuzzer's.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// One method: its path, a valid request, and how to make a well-typed
/// request of its type out of any bytes (None: they do not decode).
struct Method {
    path: &'static str,
    sample: Vec<u8>,
    retype: fn(&[u8]) -> Option<Vec<u8>>,
    streaming: bool,
    /// Send only undecodable bytes (see the module's comment).
    garbage_only: bool,
    raft: bool,
}

fn retype<M: Message + Default>(b: &[u8]) -> Option<Vec<u8>> {
    M::decode(b).ok().map(|m| m.encode_to_vec())
}

macro_rules! method {
    ($path:literal, $ty:ty, $sample:expr) => {
        Method {
            path: $path,
            sample: Message::encode_to_vec(&$sample),
            retype: retype::<$ty>,
            streaming: false,
            garbage_only: false,
            raft: false,
        }
    };
}

fn methods(raft_seeds: &[ByteDecoder]) -> Vec<Method> {
    let space = pb::SpaceInfo {
        valid_data_space: 1 << 40,
        total_data_capacity: 1 << 40,
        ..Default::default()
    };
    let caps: Vec<String> = cairn_capability::Advert::current()
        .capabilities
        .into_iter()
        .collect();
    let propose = pb::ProposeRequest {
        cmds: cairn_node::types::encode(&vec![cairn_state::Cmd::SetConfig {
            key: "recover_paused".into(),
            value: "true".into(),
        }])
        .unwrap_or_default(),
    };
    let keepalive = pb::KeepAliveRequest {
        cid: 1,
        session_id: 1,
        space: Some(space),
        results: vec![],
        progress: vec![],
    };
    let mut m = vec![
        method!("/cairn.v1.Meta/Propose", pb::ProposeRequest, propose),
        method!(
            "/cairn.v1.Meta/Status",
            pb::StatusRequest,
            pb::StatusRequest { stale: false }
        ),
        method!(
            "/cairn.v1.Meta/CreateVolume",
            pb::CreateVolumeRequest,
            pb::CreateVolumeRequest {
                name: "fz".into(),
                size_bytes: 1 << 30,
                replicas: 3,
                ..Default::default()
            }
        ),
        method!(
            "/cairn.v1.Meta/Read",
            pb::ReadRequest,
            pb::ReadRequest {
                stale: false,
                what: "volume 1".into()
            }
        ),
        method!(
            "/cairn.v1.Meta/AddTopo",
            pb::AddTopoRequest,
            pb::AddTopoRequest {
                kind: pb::TopoKind::Zone as i32,
                parent: 1,
                name: "z".into()
            }
        ),
        method!(
            "/cairn.v1.Meta/MoveTopo",
            pb::MoveTopoRequest,
            pb::MoveTopoRequest { id: 2, parent: 1 }
        ),
        method!(
            "/cairn.v1.Meta/RenameTopo",
            pb::RenameTopoRequest,
            pb::RenameTopoRequest {
                id: 2,
                name: "r".into()
            }
        ),
        method!(
            "/cairn.v1.Meta/RemoveTopo",
            pb::RemoveTopoRequest,
            pb::RemoveTopoRequest { id: 2 }
        ),
        method!(
            "/cairn.v1.Meta/RegisterChunk",
            pb::RegisterChunkRequest,
            pb::RegisterChunkRequest {
                hostname: "cs".into(),
                data_addr: "127.0.0.1:7600".into(),
                brick: None,
                version: cairn_capability::CURRENT_VERSION.into(),
                capabilities: caps.clone()
            }
        ),
        method!(
            "/cairn.v1.Meta/MoveChunk",
            pb::MoveChunkRequest,
            pb::MoveChunkRequest {
                cid: 1,
                brick: None
            }
        ),
        method!(
            "/cairn.v1.Meta/RenameChunk",
            pb::RenameChunkRequest,
            pb::RenameChunkRequest {
                cid: 1,
                name: "c".into()
            }
        ),
        method!(
            "/cairn.v1.Meta/SetChunkState",
            pb::SetChunkStateRequest,
            pb::SetChunkStateRequest { cid: 1, state: 1 }
        ),
        method!(
            "/cairn.v1.Meta/SetFailslow",
            pb::SetFailslowRequest,
            pb::SetFailslowRequest {
                cid: 1,
                failslow: true
            }
        ),
        method!(
            "/cairn.v1.Meta/DeleteVolume",
            pb::DeleteVolumeRequest,
            pb::DeleteVolumeRequest { volume_id: 1 }
        ),
        method!(
            "/cairn.v1.Meta/UpdateExtent",
            pb::UpdateExtentRequest,
            pb::UpdateExtentRequest {
                pid: 1,
                expected_generation: 0,
                ..Default::default()
            }
        ),
        method!(
            "/cairn.v1.Meta/SetConfig",
            pb::SetConfigRequest,
            pb::SetConfigRequest {
                key: "migrate_paused".into(),
                value: "true".into()
            }
        ),
        method!(
            "/cairn.v1.Meta/ListSessions",
            pb::ListSessionsRequest,
            pb::ListSessionsRequest {}
        ),
        method!(
            "/cairn.v1.Meta/SchedStatus",
            pb::SchedStatusRequest,
            pb::SchedStatusRequest {}
        ),
        method!(
            "/cairn.v1.Meta/SchedExplain",
            pb::SchedExplainRequest,
            pb::SchedExplainRequest { pid: 1 }
        ),
        method!(
            "/cairn.v1.Meta/ManualCopy",
            pb::ManualCopyRequest,
            pb::ManualCopyRequest {
                pid: 1,
                src: 1,
                dst: 2,
                ..Default::default()
            }
        ),
        method!(
            "/cairn.v1.Meta/Gather",
            pb::GatherRequest,
            pb::GatherRequest {
                volume_id: 1,
                cid: 1,
                ..Default::default()
            }
        ),
        method!(
            "/cairn.v1.Meta/UpgradeStatus",
            pb::UpgradeStatusRequest,
            pb::UpgradeStatusRequest {}
        ),
        method!(
            "/cairn.v1.Chunk/Register",
            pb::RegisterRequest,
            pb::RegisterRequest {
                cid: 0,
                hostname: "cs-f".into(),
                data_addr: "127.0.0.1:7601".into(),
                version: cairn_capability::CURRENT_VERSION.into(),
                capabilities: caps,
                space: Some(space),
                brick: None
            }
        ),
        method!(
            "/cairn.v1.Chunk/KeepAlive",
            pb::KeepAliveRequest,
            keepalive.clone()
        ),
        method!(
            "/grpc.health.v1.Health/Check",
            tonic_health::pb::HealthCheckRequest,
            tonic_health::pb::HealthCheckRequest {
                service: "cairn.v1.Meta".into()
            }
        ),
    ];
    let mut stream = method!(
        "/cairn.v1.Chunk/KeepAliveStream",
        pb::KeepAliveRequest,
        keepalive
    );
    stream.streaming = true;
    m.push(stream);
    for (path, ty) in [
        ("/cairn.v1.Meta/AddLearner", 0),
        ("/cairn.v1.Meta/ChangeMembership", 1),
    ] {
        let sample = match ty {
            0 => pb::AddLearnerRequest::default().encode_to_vec(),
            _ => pb::ChangeMembershipRequest::default().encode_to_vec(),
        };
        m.push(Method {
            path,
            sample,
            retype: |_| None,
            streaming: false,
            garbage_only: true,
            raft: false,
        });
    }
    // Raft: the payload's bytes are the decoders' inputs, in a well-formed
    // RaftPayload.
    for (path, decoder) in [
        ("/cairn.v1.Raft/AppendEntries", "raft-append-entries"),
        ("/cairn.v1.Raft/Vote", "raft-vote"),
        ("/cairn.v1.Raft/InstallSnapshot", "raft-install-snapshot"),
    ] {
        let seed = raft_seeds
            .iter()
            .find(|d| d.name == decoder)
            .and_then(|d| d.seeds.first().cloned())
            .unwrap_or_default();
        m.push(Method {
            path,
            sample: pb::RaftPayload { data: seed }.encode_to_vec(),
            retype: retype::<pb::RaftPayload>,
            streaming: false,
            garbage_only: false,
            raft: true,
        });
    }
    m
}

/// Bytes that never decode as a protobuf message: a field of wire type 7.
fn undecodable(rng: &mut Rng) -> Vec<u8> {
    let mut b = vec![0x0f];
    b.extend(mutate::bytes(rng, 32));
    b
}

/// A request body for `m`.
fn request(rng: &mut Rng, m: &Method, other: &[u8]) -> Vec<u8> {
    if m.garbage_only {
        return undecodable(rng);
    }
    match rng.below(3) {
        // Arbitrary bytes, or the sample mutated, as they come.
        0 => mutate::input(rng, std::slice::from_ref(&m.sample), 512),
        // Well-typed: mutated until it decodes as the method's type.
        _ => {
            for _ in 0..4 {
                let b = mutate::mutate(rng, &m.sample, other);
                if let Some(typed) = (m.retype)(&b) {
                    return typed;
                }
            }
            m.sample.clone()
        }
    }
}

/// A live one-member cluster in a directory of its own.
pub struct Target {
    node: Option<Node>,
    dir: PathBuf,
    channel: Channel,
    client: MetaClient,
    methods: Vec<Method>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Target {
    pub async fn start() -> anyhow::Result<Target> {
        let dir = std::env::temp_dir().join(format!(
            "cairn-fuzz-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut cfg = NodeConfig::new(1, addr.parse()?, dir.clone());
        cfg.init = Some(BTreeMap::from([(1, addr.clone())]));
        let node = Node::start(cfg).await?;
        let channel = Transport::Insecure
            .channel(&addr, |e| e.timeout(CALL_DEADLINE))
            .map_err(anyhow::Error::msg)?;
        let client = MetaClient::new(vec![addr], Transport::Insecure)?;
        let t = Target {
            node: Some(node),
            dir,
            channel,
            client,
            methods: methods(&decoders()),
        };
        t.serving().await?;
        Ok(t)
    }

    /// The member answers a linearizable read and accepts a write (within
    /// 15 s: a forged vote may have sent it through an election).
    pub async fn serving(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let read = self.client.status_of(&self.addr(), false).await;
            let write = self
                .client
                .set_config(pb::SetConfigRequest {
                    key: "recover_paused".into(),
                    value: "true".into(),
                })
                .await;
            match (read, write) {
                (Ok(_), Ok(_)) => return Ok(()),
                (r, w) => last = format!("read {:?}, write {:?}", r.err(), w.err()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the member stopped serving: {last}")
    }

    fn addr(&self) -> String {
        self.node
            .as_ref()
            .map(|n| n.addr.to_string())
            .unwrap_or_default()
    }

    /// One case: a method drawn from `rng` and a request for it; what the
    /// member answered. Err: the call outlived its deadline (a hang).
    pub async fn case(&self, rng: &mut Rng) -> Result<(tonic::Code, String), &'static str> {
        let m = &self.methods[rng.below(self.methods.len() as u64) as usize];
        let other = &self.methods[rng.below(self.methods.len() as u64) as usize].sample;
        let body = request(rng, m, other);
        let mut req = tonic::Request::new(body.clone());
        if m.raft && rng.below(4) != 0 {
            let id = self.node.as_ref().map_or(0, |n| n.cluster_id);
            req.metadata_mut().insert("cairn-cluster", id.into());
        }
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let path = PathAndQuery::from_static(m.path);
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            if m.streaming {
                let n = rng.range(1, 4) as usize;
                let msgs: Vec<Vec<u8>> = std::iter::repeat_n(body, n).collect();
                let req = tonic::Request::new(futures::stream::iter(msgs));
                let mut replies = grpc.streaming(req, path, Raw).await?.into_inner();
                while replies.message().await?.is_some() {}
                Ok(())
            } else {
                grpc.unary(req, path, Raw).await.map(|_| ())
            }
        };
        match tokio::time::timeout(CALL_DEADLINE, call).await {
            Ok(Ok(())) => Ok((tonic::Code::Ok, String::new())),
            Ok(Err(status)) => Ok((status.code(), format!("{}: {}", m.path, status.message()))),
            Err(_) => Err(m.path),
        }
    }

    pub async fn stop(mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown().await;
        }
    }
}
