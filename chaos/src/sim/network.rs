//! The simulated network: openraft's RPCs handed to the [`World`], which
//! delivers each after a seeded latency, or drops it, per the partitions,
//! random loss, and the crash / pause state of both ends.
//!
//! One RPC, in virtual time:
//! 1. held while the sender is paused; refused if the sender's incarnation
//!    is dead;
//! 2. one-way latency, then at arrival: dropped if `from -> to` is blocked or
//!    the message is lost (the caller then sees a timeout at the RPC's TTL,
//!    as over TCP); refused if the target is down ("connection refused",
//!    after the latency); held while the target is paused;
//! 3. handled by the target's current Raft;
//! 4. the reply travels back the same way (`to -> from`).
//!
//! Failures are reported as `RPCError::Network`, never `Unreachable`:
//! openraft answers `Unreachable` with a backoff whose `tokio::select!` is
//! unbiased (openraft-0.9.25 src/replication/mod.rs:610, in
//! `backoff_drain_events`), i.e. it picks a branch with tokio's thread-local
//! RNG, which cannot be seeded without `tokio_unstable`. When the backoff
//! sleep and a replication event are ready at the same virtual instant, the
//! run would depend on that RNG.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, RPCTypes};

use super::runtime::{sleep, sleep_until, timeout_at, SimInstant};
use super::types::{NodeId, SimRaft, SimTypes};
use super::world::World;

/// The factory one incarnation of a node hands to openraft.
#[derive(Clone)]
pub struct SimNetwork {
    world: Arc<World>,
    from: NodeId,
    incarnation: u64,
}

impl SimNetwork {
    pub fn new(world: Arc<World>, from: NodeId, incarnation: u64) -> SimNetwork {
        SimNetwork {
            world,
            from,
            incarnation,
        }
    }
}

impl RaftNetworkFactory<SimTypes> for SimNetwork {
    type Network = SimConnection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> SimConnection {
        SimConnection {
            net: self.clone(),
            to: target,
        }
    }
}

pub struct SimConnection {
    net: SimNetwork,
    to: NodeId,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// Why an RPC got no answer.
enum Lost {
    /// Dropped on the way: the caller waits out the TTL.
    Dropped,
    /// Refused at once (a dead end).
    Refused(&'static str),
}

fn network_err<E: std::error::Error>(
    to: NodeId,
    why: &str,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    let e = AnyError::error(format!("n{to}: {why}"));
    RPCError::Network(NetworkError::new(&e))
}

impl SimConnection {
    /// Carries one RPC through the world (see the module docs).
    async fn call<Resp, E, F, Fut>(
        &self,
        kind: RPCTypes,
        desc: String,
        ttl: Duration,
        handle: F,
    ) -> RpcResult<Resp, E>
    where
        E: std::error::Error,
        F: FnOnce(SimRaft) -> Fut,
        Fut: Future<Output = Result<Resp, RaftError<NodeId, E>>>,
    {
        let world = &self.net.world;
        let (from, to) = (self.net.from, self.to);
        let deadline = SimInstant::now() + ttl;
        let trip = async {
            world.wait_unpaused(from).await;
            if !world.is_current(from, self.net.incarnation) {
                return Err(Lost::Refused("the sender crashed"));
            }
            let (id, latency) = world.draw_message();
            world.trace(format_args!("send m{id} n{from}->n{to} {desc}"));
            sleep(latency).await;
            if !world.passes(from, to) {
                world.trace(format_args!("drop m{id}"));
                return Err(Lost::Dropped);
            }
            if !world.is_up(to) {
                world.trace(format_args!("refused m{id}"));
                return Err(Lost::Refused("connection refused"));
            }
            world.wait_unpaused(to).await;
            let Some(target) = world.incarnation(to) else {
                world.trace(format_args!("refused m{id}"));
                return Err(Lost::Refused("connection refused"));
            };
            world.trace(format_args!("deliver m{id}"));
            let reply = handle(target.raft).await;
            sleep(world.draw_latency()).await;
            if !world.passes(to, from) {
                world.trace(format_args!("drop reply m{id}"));
                return Err(Lost::Dropped);
            }
            world.wait_unpaused(from).await;
            if !world.is_current(from, self.net.incarnation) {
                return Err(Lost::Refused("the sender crashed"));
            }
            world.trace(format_args!("reply m{id} ok={}", reply.is_ok()));
            Ok(reply)
        };
        let lost = match timeout_at(deadline, trip).await {
            Ok(Ok(reply)) => {
                return reply.map_err(|e| match e {
                    // The target's Raft stopped under the call: it crashed.
                    RaftError::Fatal(_) => network_err(to, "stopped while handling the RPC"),
                    api => RPCError::RemoteError(RemoteError::new(to, api)),
                });
            }
            Ok(Err(lost)) => lost,
            Err(_elapsed) => Lost::Dropped,
        };
        match lost {
            Lost::Refused(why) => Err(network_err(to, why)),
            Lost::Dropped => {
                sleep_until(deadline).await;
                Err(RPCError::Timeout(Timeout {
                    action: kind,
                    id: from,
                    target: to,
                    timeout: ttl,
                }))
            }
        }
    }
}

impl RaftNetwork<SimTypes> for SimConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<SimTypes>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let desc = format!(
            "append vote={} prev={:?} n={} commit={:?}",
            rpc.vote,
            rpc.prev_log_id,
            rpc.entries.len(),
            rpc.leader_commit
        );
        self.call(
            RPCTypes::AppendEntries,
            desc,
            option.hard_ttl(),
            |raft| async move { raft.append_entries(rpc).await },
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<SimTypes>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let desc = format!(
            "snapshot vote={} id={} offset={} len={} done={}",
            rpc.vote,
            rpc.meta.snapshot_id,
            rpc.offset,
            rpc.data.len(),
            rpc.done
        );
        self.call(
            RPCTypes::InstallSnapshot,
            desc,
            option.hard_ttl(),
            |raft| async move { raft.install_snapshot(rpc).await },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let desc = format!("vote vote={} last={:?}", rpc.vote, rpc.last_log_id);
        self.call(RPCTypes::Vote, desc, option.hard_ttl(), |raft| async move {
            raft.vote(rpc).await
        })
        .await
    }
}
