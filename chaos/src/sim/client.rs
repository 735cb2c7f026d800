//! A simulated client: reaches a node over the client network (latency,
//! refused by a crashed node, held by a paused one; not subject to the
//! nodes' partitions), follows leader changes, and classifies every outcome
//! as certain (the command was applied, or certainly was not) or unknown.
//!
//! A write goes to a node only if that node's own metrics say it leads (the
//! "server side" check, as the real meta service does before proposing):
//! otherwise the node answers "not leader" with its hint, which is a certain
//! rejection and the client retries elsewhere. Once `client_write` was
//! called, every error is *unknown*: openraft also answers ForwardToLeader
//! when the entry was appended and later truncated, and an entry truncated on
//! one node may survive on another.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cairn_state::{Cmd, CmdError, Reply};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;

use super::runtime::{lock, sleep, timeout_at, SimInstant};
use super::types::{LogId, Request, SimRaft};
use super::world::{leader_time_ms, Incarnation, World};
use crate::history::ExtentValue;
use crate::rng::Rng;

pub enum WriteOutcome {
    /// Applied: one result per command.
    Applied(Vec<Result<Reply, CmdError>>),
    /// Certainly not applied (every attempt was refused before proposing).
    NotApplied(String),
    /// May or may not be applied, now or later.
    Unknown(String),
}

pub enum ReadOutcome {
    /// The extent as read (None: no such extent).
    Value(Option<ExtentValue>),
    /// No value: a read has no effect, so this is a plain failure.
    Failed(String),
}

/// What one attempt on one node gave.
enum Attempt<T> {
    Done(T),
    /// Certainly did nothing: try another node.
    Refused(Option<u64>),
    /// Stop: the outcome is unknown.
    Unknown(String),
}

pub struct Client {
    world: Arc<World>,
    rng: Rng,
    hint: Option<u64>,
    pub name: String,
}

impl Client {
    pub fn new(world: Arc<World>, rng: Rng, name: String) -> Client {
        Client {
            world,
            rng,
            hint: None,
            name,
        }
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn next_target(&mut self) -> u64 {
        match self.hint.take() {
            Some(id) => id,
            None => *self.rng.pick(&self.world.ids).unwrap_or(&1),
        }
    }

    /// One round trip to node `to`: `f` runs at the node. None: refused
    /// (the node is down).
    async fn on_node<T, F, Fut>(&self, to: u64, f: F) -> Option<T>
    where
        F: FnOnce(Incarnation) -> Fut,
        Fut: Future<Output = T>,
    {
        let world = &self.world;
        let (id, latency) = world.draw_message();
        world.trace(format_args!("client {} m{id} -> n{to}", self.name));
        sleep(latency).await;
        world.wait_unpaused(to).await;
        let Some(inc) = world.incarnation(to) else {
            world.trace(format_args!("refused m{id}"));
            return None;
        };
        let out = f(inc).await;
        sleep(world.draw_latency()).await;
        // The reply leaves a paused node only when it resumes.
        world.wait_unpaused(to).await;
        world.trace(format_args!("client {} reply m{id}", self.name));
        Some(out)
    }

    /// Proposes `cmds` through the leader, until `deadline`.
    pub async fn write(&mut self, cmds: Vec<Cmd>, deadline: SimInstant) -> WriteOutcome {
        let mut last_refusal = String::from("no attempt");
        while SimInstant::now() < deadline {
            let to = self.next_target();
            let cmds = cmds.clone();
            let attempt = timeout_at(
                deadline,
                self.on_node(to, |inc| async move {
                    let (state, leader) = {
                        let m = inc.raft.metrics();
                        let m = m.borrow();
                        (m.state, m.current_leader)
                    };
                    if state != ServerState::Leader {
                        return Attempt::Refused(leader.filter(|&l| l != to));
                    }
                    let req = Request {
                        leader_time_ms: leader_time_ms(),
                        cmds,
                    };
                    match inc.raft.client_write(req).await {
                        Ok(resp) => Attempt::Done(resp.data.results),
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                            Attempt::Unknown("forward-to-leader after proposing".into())
                        }
                        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(_))) => {
                            Attempt::Unknown("membership error".into())
                        }
                        Err(RaftError::Fatal(_)) => Attempt::Unknown("leader stopped".into()),
                    }
                }),
            )
            .await;
            match attempt {
                Err(_) => return WriteOutcome::Unknown("timeout".into()),
                Ok(None) => {
                    last_refusal = format!("n{to} refused the connection");
                    sleep(Duration::from_millis(10)).await;
                }
                Ok(Some(Attempt::Refused(hint))) => {
                    last_refusal = format!("n{to} is not the leader");
                    self.hint = hint;
                    if hint.is_none() {
                        sleep(Duration::from_millis(20)).await;
                    }
                }
                Ok(Some(Attempt::Unknown(why))) => {
                    self.hint = None;
                    return WriteOutcome::Unknown(why);
                }
                Ok(Some(Attempt::Done(results))) => {
                    self.hint = Some(to);
                    return WriteOutcome::Applied(results);
                }
            }
        }
        WriteOutcome::NotApplied(last_refusal)
    }

    /// Reads extent `pid`. Linearizable: through the leader, after
    /// `get_read_log_id` confirmed leadership with a quorum and the state
    /// machine applied the leader's log (`read_target`). With the bugs
    /// (`World::reads`):
    /// `Reads::Stale` from any node's local state, no check at all;
    /// `Reads::FromCommittedHint` up to openraft's read log id only.
    pub async fn read(&mut self, pid: u64, deadline: SimInstant) -> ReadOutcome {
        self.read_with(pid, deadline, self.world.reads).await
    }

    /// [`Client::read`] served as `reads` says, whatever the world's bug.
    pub async fn read_with(&mut self, pid: u64, deadline: SimInstant, reads: Reads) -> ReadOutcome {
        let stale = reads == Reads::Stale;
        let mut why = String::from("no attempt");
        while SimInstant::now() < deadline {
            let to = if stale {
                *self.rng.pick(&self.world.ids).unwrap_or(&1)
            } else {
                self.next_target()
            };
            let attempt = timeout_at(
                deadline,
                self.on_node(to, |inc| async move {
                    if stale {
                        return Attempt::Done(read_local(&inc, pid));
                    }
                    linearizable_read(&inc, to, pid, reads).await
                }),
            )
            .await;
            match attempt {
                Err(_) => return ReadOutcome::Failed("timeout".into()),
                Ok(None) => {
                    why = format!("n{to} refused the connection");
                    sleep(Duration::from_millis(10)).await;
                }
                Ok(Some(Attempt::Refused(hint))) => {
                    why = format!("n{to} is not the leader");
                    self.hint = hint;
                    if hint.is_none() {
                        sleep(Duration::from_millis(20)).await;
                    }
                }
                Ok(Some(Attempt::Unknown(e))) => {
                    self.hint = None;
                    return ReadOutcome::Failed(e);
                }
                Ok(Some(Attempt::Done(v))) => {
                    if !stale {
                        self.hint = Some(to);
                    }
                    return ReadOutcome::Value(v);
                }
            }
        }
        ReadOutcome::Failed(why)
    }
}

fn read_local(inc: &Incarnation, pid: u64) -> Option<ExtentValue> {
    let d = lock(&inc.sm);
    d.state.extent(pid).map(|e| ExtentValue {
        generation: e.generation(),
        owner: e.lease_owner(),
    })
}

async fn linearizable_read(
    inc: &Incarnation,
    me: u64,
    pid: u64,
    reads: Reads,
) -> Attempt<Option<ExtentValue>> {
    let (state, leader) = {
        let m = inc.raft.metrics();
        let m = m.borrow();
        (m.state, m.current_leader)
    };
    if state != ServerState::Leader {
        return Attempt::Refused(leader.filter(|&l| l != me));
    }
    // Not `ensure_linearizable()`: it waits through `Raft::wait`, whose
    // unbiased `tokio::select!` would bring tokio's RNG into the run.
    let read_index = match inc.raft.get_read_log_id().await {
        Ok((read, _applied)) => read_target(&inc.raft, read, reads),
        Err(e) => return Attempt::Unknown(format!("leadership not confirmed: {}", short(&e))),
    };
    // Polled, not awaited on the metrics watch: see `runtime::Signal`.
    loop {
        let applied = lock(&inc.sm).last_applied.map_or(0, |l| l.index);
        if applied >= read_index {
            return Attempt::Done(read_local(inc, pid));
        }
        if inc.raft.metrics().borrow().running_state.is_err() {
            return Attempt::Unknown("node stopped".into());
        }
        sleep(Duration::from_millis(1)).await;
    }
}

/// How reads are served: the real barrier, or one of the bugs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    Linearizable,
    Stale,
    FromCommittedHint,
}

/// The index the state machine must reach before a linearizable read or a
/// leader's first decision: cairn-node's `linearizable::read_target` (the
/// leader's last log index at confirmation), or with the
/// `FromCommittedHint` bug openraft's read log id alone.
pub(crate) fn read_target(raft: &SimRaft, read: Option<LogId>, reads: Reads) -> u64 {
    let read = read.map(|l| l.index);
    if reads == Reads::FromCommittedHint {
        return read.unwrap_or(0);
    }
    cairn_node::linearizable::read_target(read, raft.metrics().borrow().last_log_index)
}

/// A deterministic, short reason (openraft's Display of some errors prints
/// instants through the wall clock).
fn short<E>(e: &RaftError<u64, E>) -> &'static str {
    match e {
        RaftError::APIError(_) => "api error",
        RaftError::Fatal(_) => "fatal",
    }
}
