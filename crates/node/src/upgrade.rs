//! Rolling upgrades: glue around the pure gate `cairn_capability`.
//!
//! - Every member says its version and capabilities (`AdvertiseMember`)
//!   when it starts, and refuses to run when the log activated a
//!   capability it lacks (an older binary on a newer cluster).
//! - The leader's gate re-evaluates `cairn_capability::decide` when
//!   something it decides on is applied (advertisements, sessions, chunk
//!   registrations, the hold, activations, membership changes) or when it
//!   takes office, never on a timer, and proposes one `ActivateFeature`
//!   entry per capability that became possible.
//! - `lease_7s` shortens the lease once active (docs/upgrades.md).

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_capability::{check_join, decide, Advert, Decision, Inputs, Party, LEASE_7S};
use cairn_state::{Cmd, CmdError, State};
use openraft::ServerState;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::client::MetaClient;
use crate::propose::Proposer;
use crate::sessions::leads;
use crate::store::sm::SmHandle;
use crate::transport::Transport;
use crate::types::{NodeId, Raft};

/// The lease once `lease_7s` is active (the configured lease if shorter).
pub const SHORT_LEASE_MS: u64 = 7_000;

/// The lease new sessions get and the leader renews with: the configured
/// one (14 s by default), capped at 7 s once `lease_7s` is active. A mixed
/// cluster, where it cannot be active, keeps the configured lease.
pub fn effective_lease_ms(state: &State) -> u64 {
    let configured = state.config().lease_ms;
    if state.feature_active(LEASE_7S) {
        configured.min(SHORT_LEASE_MS)
    } else {
        configured
    }
}

fn advert(version: &str, capabilities: &BTreeSet<String>) -> Advert {
    Advert {
        version: version.to_string(),
        capabilities: capabilities.clone(),
    }
}

/// Everything the gate decides on, from the replicated state and the
/// current Raft membership (removed members do not count; a member that has
/// not advertised blocks; only chunks with a live session count).
pub struct GateView {
    pub members: Vec<(u64, Option<Advert>)>,
    pub chunks: Vec<(u32, Advert)>,
    pub active: BTreeSet<String>,
    pub hold: bool,
}

impl GateView {
    pub fn of(state: &State, membership: impl IntoIterator<Item = NodeId>) -> GateView {
        GateView {
            members: membership
                .into_iter()
                .map(|id| {
                    let a = state
                        .members()
                        .get(&id)
                        .map(|m| advert(&m.version, &m.capabilities));
                    (id, a)
                })
                .collect(),
            chunks: state
                .chunks()
                .filter(|c| state.has_session(c.cid))
                .map(|c| (c.cid, advert(&c.version, &c.capabilities)))
                .collect(),
            active: state.active_features().clone(),
            hold: state.upgrade_hold(),
        }
    }

    pub fn decide(&self) -> Decision {
        let members: Vec<(u64, Option<&Advert>)> = self
            .members
            .iter()
            .map(|(id, a)| (*id, a.as_ref()))
            .collect();
        let chunks: Vec<(u32, &Advert)> = self.chunks.iter().map(|(c, a)| (*c, a)).collect();
        decide(&Inputs {
            members: &members,
            chunks: &chunks,
            active: &self.active,
            hold: self.hold,
        })
    }
}

fn membership_ids(raft: &Raft) -> Vec<NodeId> {
    let m = raft.metrics();
    let m = m.borrow();
    m.membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect()
}

fn membership_addrs(raft: &Raft) -> Vec<String> {
    let m = raft.metrics();
    let m = m.borrow();
    m.membership_config
        .membership()
        .nodes()
        .map(|(_, n)| n.addr.clone())
        .collect()
}

/// `cairn upgrade status`: members, chunks, capabilities with their blockers.
pub fn status(state: &State, raft: &Raft) -> Value {
    let ids = membership_ids(raft);
    let view = GateView::of(state, ids.iter().copied());
    let d = view.decide();
    let pending: Vec<Value> = d
        .pending
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "held": p.held,
                "blockers": p.blockers.iter().map(|b| json!({
                    "who": b.who.to_string(),
                    "version": b.version,
                    "lacks": b.lacks,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "version": cairn_capability::CURRENT_VERSION,
        "hold": view.hold,
        "lease_ms": effective_lease_ms(state),
        "active": d.active,
        "activating": d.activate,
        "pending": pending,
        "members": view.members.iter().map(|(id, a)| json!({
            "id": id,
            "version": a.as_ref().map(|a| a.version.clone()),
            "capabilities": a.as_ref().map(|a| a.capabilities.iter().cloned().collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
        "chunks": view.chunks.iter().map(|(cid, a)| json!({
            "cid": cid,
            "version": a.version,
            "capabilities": a.capabilities.iter().cloned().collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "text": d.to_string(),
    })
}

/// Starts the leader's gate; it stops when `stop` turns true.
pub fn spawn_gate(
    raft: Raft,
    sm: SmHandle,
    proposer: Proposer,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = gate(raft, sm, proposer) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    })
}

async fn gate(raft: Raft, sm: SmHandle, proposer: Proposer) {
    // Server metrics change only on a vote, role, leader or membership
    // change (raft.metrics() changes on every heartbeat and apply).
    let mut metrics = raft.server_metrics();
    let mut inputs = sm.read().upgrade_inputs.subscribe();
    loop {
        let term = loop {
            let (leader, term) = {
                let m = metrics.borrow_and_update();
                (
                    m.state == ServerState::Leader,
                    m.vote.leader_id().get_term(),
                )
            };
            if leader {
                break term;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        };
        // Everything committed before this term is applied first.
        if crate::linearizable::barrier(&raft).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        loop {
            if !leads(&raft, term) {
                break;
            }
            let (decision, lacking) = {
                let d = sm.read();
                let decision = GateView::of(&d.state, membership_ids(&raft)).decide();
                (decision, chunks_lacking(&d.state))
            };
            // A chunk whose registration raced an activation holds a session
            // it may not have: end it (it registers again and is refused).
            if !lacking.is_empty() {
                let cmds: Vec<Cmd> = lacking
                    .iter()
                    .map(|&(cid, session_id)| Cmd::CloseSession { cid, session_id })
                    .collect();
                tracing::warn!(
                    ?lacking,
                    "closing the sessions of chunks that lack an active capability"
                );
                if proposer.submit(cmds).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                continue;
            }
            if !decision.activate.is_empty() {
                let cmds: Vec<Cmd> = decision
                    .activate
                    .iter()
                    .map(|name| Cmd::ActivateFeature {
                        name: name.to_string(),
                    })
                    .collect();
                match proposer.submit(cmds).await {
                    Ok((results, index)) => {
                        for (name, r) in decision.activate.iter().zip(results) {
                            match r {
                                Ok(_) => tracing::warn!(
                                    feature = name,
                                    index,
                                    term,
                                    "activating feature: every member and live chunk supports it"
                                ),
                                Err(CmdError::FeatureAlreadyActive(_)) => {}
                                Err(e) => {
                                    tracing::warn!(feature = name, error = %e, "activation refused");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                        }
                    }
                    Err(s) => {
                        tracing::info!(error = %s.message(), "activation not proposed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                continue; // look again at what is applied now
            }
            // Wait for something the decision depends on: an applied input
            // (a stored permit if it came meanwhile), or a leadership /
            // membership change.
            tokio::select! {
                r = inputs.changed() => if r.is_err() { return },
                r = metrics.changed() => if r.is_err() { return },
            }
        }
    }
}

/// Live chunks (cid, session) lacking an active capability that needs
/// chunks.
fn chunks_lacking(state: &State) -> Vec<(u32, u64)> {
    let active = state.active_features();
    if active.is_empty() {
        return vec![];
    }
    state
        .sessions()
        .filter_map(|s| {
            let c = state.chunk(s.cid)?;
            let a = advert(&c.version, &c.capabilities);
            check_join(active, Party::Chunk(s.cid), &a)
                .is_err()
                .then_some((s.cid, s.session_id))
        })
        .collect()
}

/// Says this member's version and capabilities once it can (a leader is
/// known), until the replicated state shows them. If the log activated a
/// capability this member lacks, it reports that on `fatal` instead: an
/// older binary must not run on a cluster that moved on.
pub fn spawn_advertiser(
    raft: Raft,
    transport: Transport,
    sm: SmHandle,
    id: NodeId,
    me: Advert,
    fatal: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = advertise(raft, transport, sm, id, me, fatal) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    })
}

async fn advertise(
    raft: Raft,
    transport: Transport,
    sm: SmHandle,
    id: NodeId,
    me: Advert,
    fatal: watch::Sender<Option<String>>,
) {
    let mut metrics = raft.metrics();
    let mut inputs = sm.read().upgrade_inputs.subscribe();
    let mut client: Option<MetaClient> = None;
    loop {
        let recorded = {
            let d = sm.read();
            // Every active capability, known to this binary or not (a newer
            // one activated it): a member must decode and follow them all.
            // Known ones first, in registry order, so the message is the one
            // `cairn server --join` would get.
            let active = d.state.active_features();
            let refused = match check_join(active, Party::Member(id), &me) {
                Err(refused) => Some(refused.to_string()),
                Ok(()) => active
                    .iter()
                    .find(|f| !me.capabilities.contains(*f))
                    .map(|f| {
                        format!(
                            "capability {f} is active; member {id} (version {}) lacks it; upgrade it before it joins",
                            me.version
                        )
                    }),
            };
            if let Some(refused) = refused {
                tracing::error!(%refused, "this member cannot run on this cluster");
                fatal.send_replace(Some(refused));
                return;
            }
            d.state
                .members()
                .get(&id)
                .is_some_and(|m| m.version == me.version && m.capabilities == me.capabilities)
        };
        if recorded {
            tracing::debug!(version = %me.version, "member advertised");
            // Keep watching: a capability activated later that this member
            // lacks (it cannot be, by the gate; a log from a newer binary
            // could) still stops it.
            if inputs.changed().await.is_err() {
                return;
            }
            continue;
        }
        let leader_known = metrics.borrow_and_update().current_leader.is_some();
        if !leader_known {
            if metrics.changed().await.is_err() {
                return;
            }
            continue;
        }
        let c = match &client {
            Some(c) => c,
            None => match MetaClient::new(membership_addrs(&raft), transport.clone()) {
                Ok(c) => client.insert(c),
                Err(e) => {
                    tracing::debug!(error = %e, "no members to advertise to yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let cmd = Cmd::AdvertiseMember {
            node_id: id,
            version: me.version.clone(),
            capabilities: me.capabilities.iter().cloned().collect(),
        };
        match c.propose(&[cmd]).await {
            Ok((mut r, _)) => match r.pop() {
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "advertisement refused");
                    return;
                }
                _ => {
                    // Applied on the leader; wait until this member applied it.
                    let _ = tokio::time::timeout(Duration::from_secs(1), inputs.changed()).await;
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "advertising; retrying");
                client = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
