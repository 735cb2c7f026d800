//! Everything a campaign drives: the members' processes, the network
//! between them, the simulated chunk fleet, and the cluster membership as
//! the campaign changed it. Faults are applied and healed here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::fleet::Fleet;

use super::links::Links;
use super::nemesis::{majority_minority, Cut, Fault, Target};
use super::procs::{Members, Start};
use crate::rng::Rng;

pub struct World {
    pub members: Members,
    pub links: Box<dyn Links>,
    /// The voters as the campaign last set them.
    pub voters: BTreeSet<u64>,
    /// Planned member ids not in the cluster now (their data dirs empty).
    pub spares: BTreeSet<u64>,
    /// The initial number of voters: the membership nemesis never goes below.
    pub initial: usize,
    /// Members the campaign killed and has to restart.
    pub down: BTreeSet<u64>,
    pub fleet: Arc<Fleet>,
    pub stopped_chunks: BTreeSet<u32>,
    /// Chunks the chunk nemesis may stop.
    pub faulty_cids: Vec<u32>,
    pub admin: MetaClient,
    pub rng: Rng,
}

/// What must be done to heal a fault.
#[derive(Clone, Debug)]
pub enum Undo {
    Restart(Vec<u64>),
    Resume(Vec<u64>),
    HealNet,
    /// Restart the member without its clock skew.
    Unskew(u64),
    StartChunk(u32),
    Nothing,
}

impl World {
    pub fn addr(&self, id: u64) -> String {
        self.members
            .specs
            .get(&id)
            .map(|s| s.addr.clone())
            .unwrap_or_default()
    }

    /// Members that can answer now (running, not paused).
    pub fn live(&self) -> Vec<u64> {
        self.members
            .running_ids()
            .into_iter()
            .filter(|id| !self.members.is_paused(*id))
            .collect()
    }

    /// The leader most live members name (None while they do not agree on
    /// one that is live).
    pub async fn leader(&self) -> Option<u64> {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for id in self.live() {
            let addr = self.addr(id);
            let s = tokio::time::timeout(
                Duration::from_millis(500),
                self.admin.status_of(&addr, true),
            )
            .await;
            if let Ok(Ok(s)) = s {
                if s.leader_id != 0 {
                    *votes.entry(s.leader_id).or_default() += 1;
                }
            }
        }
        let live = self.live();
        votes
            .into_iter()
            .filter(|(l, _)| live.contains(l))
            .max_by_key(|(_, n)| *n)
            .map(|(l, _)| l)
    }

    /// Waits (up to `within`) for a live leader.
    pub async fn wait_leader(&self, within: Duration) -> Option<u64> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// A running voter, or any running member.
    fn some_voter(&mut self, except: Option<u64>) -> Option<u64> {
        let ids: Vec<u64> = self
            .members
            .running_ids()
            .into_iter()
            .filter(|id| self.voters.contains(id) && Some(*id) != except)
            .collect();
        self.rng.pick(&ids).copied()
    }

    /// Injects `fault`; returns what it did (for the history) and its undo.
    pub async fn inject(&mut self, fault: &Fault) -> Result<(Vec<u64>, String, Undo)> {
        match *fault {
            Fault::Kill(target) => {
                let ids = self.targets(target).await?;
                for id in &ids {
                    self.members.kill(*id)?;
                    self.down.insert(*id);
                }
                Ok((
                    ids.clone(),
                    format!("kill -9 {target:?}"),
                    Undo::Restart(ids),
                ))
            }
            Fault::Pause(target) => {
                let ids = self.targets(target).await?;
                for id in &ids {
                    self.members.pause(*id)?;
                }
                Ok((
                    ids.clone(),
                    format!("SIGSTOP {target:?}"),
                    Undo::Resume(ids),
                ))
            }
            Fault::Partition(cut) => {
                let members: Vec<u64> = self.voters.iter().copied().collect();
                let leader = self.leader().await;
                let detail = self.cut(cut, &members, leader)?;
                // What the network layer has in place, link by link.
                let detail = format!("{detail} [{}]", self.links.describe());
                Ok((members, detail, Undo::HealNet))
            }
            Fault::LeaderChurn => {
                let l = self.leader().await.context("no leader to churn")?;
                self.members.kill(l)?;
                self.down.insert(l);
                // The next leader must emerge without the old one.
                let next = self.wait_leader(Duration::from_secs(15)).await;
                let detail = match next {
                    Some(n) => format!("killed leader {l}; node {n} took over"),
                    None => format!("killed leader {l}; no new leader within 15 s"),
                };
                Ok((vec![l], detail, Undo::Restart(vec![l])))
            }
            Fault::Clock { skew_s } => {
                let id = self.some_voter(None).context("no running member")?;
                let skew = format!("{skew_s:+}s");
                self.members.kill(id)?;
                // Down until started: if the skewed start fails, healing
                // still restarts it.
                self.down.insert(id);
                self.members.start(id, &Start::Restart, Some(&skew))?;
                self.down.remove(&id);
                Ok((vec![id], format!("wall clock {skew}"), Undo::Unskew(id)))
            }
            Fault::Member => self.change_membership().await,
            Fault::Chunk => {
                let cid = *self
                    .rng
                    .pick(&self.faulty_cids)
                    .context("no faulty chunk")?;
                if !self.fleet.stop_chunk(cid) {
                    bail!("the fleet has no chunk {cid}");
                }
                self.stopped_chunks.insert(cid);
                Ok((
                    vec![u64::from(cid)],
                    format!("chunk {cid} stopped"),
                    Undo::StartChunk(cid),
                ))
            }
        }
    }

    async fn targets(&mut self, target: Target) -> Result<Vec<u64>> {
        Ok(match target {
            Target::One => vec![self.some_voter(None).context("no running member")?],
            Target::Leader => vec![self.leader().await.context("no leader")?],
            Target::Majority => {
                let running: Vec<u64> = self
                    .members
                    .running_ids()
                    .into_iter()
                    .filter(|id| self.voters.contains(id))
                    .collect();
                let (maj, _) = majority_minority(&running, &mut self.rng);
                maj
            }
        })
    }

    fn cut(&mut self, cut: Cut, members: &[u64], leader: Option<u64>) -> Result<String> {
        let lead = || leader.context("no leader to cut off");
        match cut {
            Cut::MajorityMinority => {
                let (a, b) = majority_minority(members, &mut self.rng);
                self.links.partition(&[a.clone(), b.clone()])?;
                Ok(format!("partition {a:?} | {b:?}"))
            }
            Cut::IsolateLeader => {
                let l = lead()?;
                let rest: Vec<u64> = members.iter().copied().filter(|m| *m != l).collect();
                self.links.partition(&[vec![l], rest])?;
                Ok(format!("isolate leader {l}"))
            }
            Cut::Bridge => {
                // Two halves; the bridge member sees both.
                let (a, b) = majority_minority(members, &mut self.rng);
                let Some((&bridge, left)) = a.split_first() else {
                    bail!("no members to bridge");
                };
                let left = left.to_vec();
                for x in &left {
                    for y in &b {
                        self.links.block(*x, *y)?;
                        self.links.block(*y, *x)?;
                    }
                }
                Ok(format!("bridge {left:?} <{bridge}> {b:?}"))
            }
            Cut::OneWayFromLeader | Cut::OneWayToLeader => {
                let l = lead()?;
                for m in members.iter().filter(|m| **m != l) {
                    if cut == Cut::OneWayFromLeader {
                        self.links.block(l, *m)?;
                    } else {
                        self.links.block(*m, l)?;
                    }
                }
                Ok(format!("{cut:?} {l}"))
            }
            Cut::SlowLeader { ms } => {
                let l = lead()?;
                for m in members.iter().filter(|m| **m != l) {
                    self.links.delay(l, *m, Duration::from_millis(ms))?;
                    self.links.delay(*m, l, Duration::from_millis(ms))?;
                }
                Ok(format!("links of leader {l} slowed by {ms} ms"))
            }
        }
    }

    /// Adds a spare as a voter when the cluster is at its initial size,
    /// removes a voter otherwise.
    async fn change_membership(&mut self) -> Result<(Vec<u64>, String, Undo)> {
        if self.voters.len() <= self.initial {
            let id = *self.spares.iter().next().context("no spare member")?;
            let via = self
                .some_voter(None)
                .context("no running voter to join through")?;
            let via_addr = self.addr(via);
            self.members.start(id, &Start::Join(via_addr), None)?;
            self.spares.remove(&id);
            // The joiner is a learner once it caught up; then promote it.
            let mut voters: Vec<u64> = self.voters.iter().copied().collect();
            voters.push(id);
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut last = String::new();
            while Instant::now() < deadline {
                match self.admin.change_membership(&voters).await {
                    Ok(_) => {
                        self.voters.insert(id);
                        return Ok((vec![id], format!("added member {id}"), Undo::Nothing));
                    }
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            // Not promoted: stop it and make it a spare again, so the
            // cluster stays at its size and nothing runs unaccounted for.
            let _ = self.members.kill(id);
            self.wipe(id);
            self.spares.insert(id);
            bail!("member {id} joined but could not be promoted: {last}")
        } else {
            let leader = self.leader().await;
            // Mostly a follower; sometimes the leader itself.
            let id = if self.rng.chance(0.3) {
                leader
            } else {
                self.some_voter(leader)
            }
            .context("no member to remove")?;
            let voters: Vec<u64> = self.voters.iter().copied().filter(|v| *v != id).collect();
            self.admin
                .change_membership(&voters)
                .await
                .with_context(|| format!("removing member {id}"))?;
            self.voters.remove(&id);
            if self.members.running(id) {
                self.members.kill(id)?;
            }
            self.down.remove(&id);
            // A removed member may come back later only as a new one.
            self.wipe(id);
            self.spares.insert(id);
            Ok((vec![id], format!("removed member {id}"), Undo::Nothing))
        }
    }

    fn wipe(&self, id: u64) {
        if let Some(spec) = self.members.specs.get(&id) {
            let _ = std::fs::remove_dir_all(&spec.data_dir);
        }
    }

    /// Members that exited on their own since the last look: recorded, and
    /// restarted by the next heal (a voter) so the run can still converge.
    pub fn reap_crashed(&mut self) -> Vec<(u64, String)> {
        let out = self.members.exited();
        for (id, _) in &out {
            if self.voters.contains(id) {
                self.down.insert(*id);
            }
        }
        out
    }

    /// Heals one fault.
    pub fn heal(&mut self, undo: &Undo) -> Result<String> {
        match undo {
            Undo::Restart(ids) => {
                for id in ids {
                    if self.down.remove(id) && self.voters.contains(id) {
                        self.members.start(*id, &Start::Restart, None)?;
                    }
                }
                Ok(format!("restarted {ids:?}"))
            }
            Undo::Resume(ids) => {
                for id in ids {
                    if self.members.is_paused(*id) {
                        self.members.resume(*id)?;
                    }
                }
                Ok(format!("resumed {ids:?}"))
            }
            Undo::HealNet => {
                self.links.heal()?;
                Ok("network healed".into())
            }
            Undo::Unskew(id) => {
                if self.members.running(*id) {
                    self.members.kill(*id)?;
                }
                if self.voters.contains(id) {
                    self.members.start(*id, &Start::Restart, None)?;
                }
                Ok(format!("member {id} restarted with the true clock"))
            }
            Undo::StartChunk(cid) => {
                self.fleet.start_chunk(*cid);
                self.stopped_chunks.remove(cid);
                Ok(format!("chunk {cid} started"))
            }
            Undo::Nothing => Ok("nothing to heal".into()),
        }
    }

    /// Heals everything still broken, whatever the schedule left.
    pub fn heal_all(&mut self) -> Result<()> {
        self.links.heal()?;
        for id in self.members.running_ids() {
            if self.members.is_paused(id) {
                self.members.resume(id)?;
            }
        }
        let skewed: Vec<u64> = self.members.skewed.keys().copied().collect();
        for id in skewed {
            self.heal(&Undo::Unskew(id))?;
        }
        let down: Vec<u64> = self.down.iter().copied().collect();
        self.heal(&Undo::Restart(down))?;
        let stopped: Vec<u32> = self.stopped_chunks.iter().copied().collect();
        for cid in stopped {
            self.heal(&Undo::StartChunk(cid))?;
        }
        Ok(())
    }
}
