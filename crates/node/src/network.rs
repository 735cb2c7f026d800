//! Client side of the Raft transport: one lazily connected tonic channel per
//! peer address, shared by every connection openraft makes to that peer, and
//! a deadline on every RPC from openraft's `RPCOption`, so a dead or paused
//! peer costs only its own RPCs, never another peer's.

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use tonic::Code;

use crate::raft_service::{CLUSTER_KEY, MAX_RAFT_MESSAGE_BYTES};
use crate::transport::Transport;
use crate::types::{self, pb, NodeId, TypeConfig};

#[derive(Clone)]
pub struct Network {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Sent with every RPC: a member of another cluster refuses it.
    cluster_id: u64,
    /// Peers reached at another address than their membership one (a
    /// fault-injecting proxy in front of them: `cairn server --routes`).
    routes: Arc<BTreeMap<NodeId, String>>,
    /// Plain or mutual TLS as this member.
    transport: Transport,
}

impl Network {
    pub fn new(cluster_id: u64, transport: Transport) -> Network {
        Network {
            channels: Arc::default(),
            cluster_id,
            routes: Arc::default(),
            transport,
        }
    }

    /// Dial `routes[id]` instead of peer `id`'s membership address.
    pub fn with_routes(mut self, routes: BTreeMap<NodeId, String>) -> Network {
        self.routes = Arc::new(routes);
        self
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = self.transport.channel(addr, |e| {
            e.connect_timeout(Duration::from_millis(300))
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
        })?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = NetworkConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> NetworkConnection {
        NetworkConnection {
            target,
            channel: self.channel(self.routes.get(&target).unwrap_or(&node.addr)),
            cluster_id: self.cluster_id,
        }
    }
}

pub struct NetworkConnection {
    target: NodeId,
    channel: Result<Channel, String>,
    cluster_id: u64,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl NetworkConnection {
    async fn call<Req, Resp, E>(&mut self, rpc: Rpc, req: &Req, ttl: Duration) -> RpcResult<Resp, E>
    where
        Req: serde::Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let channel = self
            .channel
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&AnyError::error(e))))?;
        let data = types::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = pb::raft_client::RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
        let mut request = tonic::Request::new(pb::RaftPayload { data });
        request.set_timeout(ttl);
        request
            .metadata_mut()
            .insert(CLUSTER_KEY, self.cluster_id.into());
        let call = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => {
                let e =
                    AnyError::error(format!("no reply from node {} within {ttl:?}", self.target));
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
            Ok(Err(status)) => {
                let e = AnyError::error(format!("node {}: {status}", self.target));
                return Err(match status.code() {
                    // Connection refused or reset: back off before retrying.
                    Code::Unavailable => RPCError::Unreachable(Unreachable::new(&e)),
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            types::decode(&reply.data).map_err(|e| {
                let e =
                    AnyError::error(format!("undecodable reply from node {}: {e}", self.target));
                RPCError::Network(NetworkError::new(&e))
            })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for NetworkConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_closed_port_is_unreachable_quickly() {
        // A port that was just free on loopback: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut net = Network::new(0, Transport::Insecure);
        let node = BasicNode {
            addr: format!("127.0.0.1:{port}"),
        };
        let mut conn = net.new_client(9, &node).await;
        let start = Instant::now();
        let req = VoteRequest::new(openraft::Vote::new(1, 1), None);
        let r = conn.vote(req, RPCOption::new(Duration::from_secs(5))).await;
        assert!(matches!(r, Err(RPCError::Unreachable(_))), "{r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
    }
}
