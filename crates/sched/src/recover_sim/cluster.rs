//! The simulated cluster: topology, chunks with their links, extents placed
//! rack-safe by a seeded spread, built as a `cairn_state::State` through the
//! same commands a Raft log would carry (as `benches/sched.rs` does), and
//! the failure: which extents lost replicas.
//!
//! One rule is shared by every policy, the lower bound and the checks:
//! [`Cluster::eligible`], the destinations that keep an extent's replicas
//! as spread as possible (a rack holding none of its alive replicas). Cairn's
//! planner prefers exactly those (farthest from the alive replicas, §5.2);
//! the emulated peers are held to the same rule, so they compete on
//! scheduling, not on a looser placement, and the bound stays a bound.

use cairn_state::{
    ChunkSpaceInfo, Cid, Cmd, CreateVolume, EntryMeta, Pid, Provisioning, Reply, SessionId, State,
    TopoKind, EXTENT_SIZE_BYTES, ROOT_ID,
};

use super::config::{SimConfig, REPLICAS};
use super::rng::Rng;
use super::SimError;

/// Extents per `CreateVolume` (a volume holds at most 262,144).
const PER_VOLUME: u64 = 65_536;

/// One chunk of the simulated cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkSpec {
    pub cid: Cid,
    /// Rack index, 0-based (chunk i sits in rack i mod racks).
    pub rack: usize,
    /// Silent from t = 0.
    pub failed: bool,
    /// Slow disk: its links run at bandwidth / slow_factor.
    pub slow: bool,
    /// Bytes per second in and out.
    pub in_bps: f64,
    pub out_bps: f64,
}

/// An extent that lost replicas with the failed chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    pub pid: Pid,
    /// Its replicas on live chunks, in `loc` order.
    pub alive: Vec<Cid>,
    /// Replicas to re-create.
    pub missing: u8,
}

/// The cluster at t = 0, the instant the failed chunks go silent.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub chunks: Vec<ChunkSpec>,
    pub racks: usize,
    /// Chunk cids per rack.
    pub rack_members: Vec<Vec<Cid>>,
    /// `loc` of every extent, indexed by `pid - 1`.
    pub locs: Vec<[Cid; REPLICAS]>,
    pub extent_bytes: u64,
    /// Every chunk registered, reporting space and holding a session; every
    /// extent created. Nothing has noticed the failure yet.
    pub state: State,
    /// Session of each chunk, indexed by `cid - 1`.
    pub sessions: Vec<SessionId>,
    /// Each chunk's reported capacity (all equal).
    pub capacity_bytes: u64,
    /// Extents with missing replicas and at least one alive, by pid.
    pub lost: Vec<Lost>,
    /// Extents whose every replica was on a failed chunk: nothing can
    /// restore them.
    pub unrecoverable: u64,
    /// Raft entries applied to build `state`.
    pub last_index: u64,
}

impl Cluster {
    pub fn chunk(&self, cid: Cid) -> Option<&ChunkSpec> {
        (cid as usize)
            .checked_sub(1)
            .and_then(|i| self.chunks.get(i))
    }

    pub fn live(&self, cid: Cid) -> bool {
        self.chunk(cid).is_some_and(|c| !c.failed)
    }

    pub fn rack_of(&self, cid: Cid) -> Option<usize> {
        self.chunk(cid).map(|c| c.rack)
    }

    pub fn live_cids(&self) -> impl Iterator<Item = Cid> + '_ {
        self.chunks.iter().filter(|c| !c.failed).map(|c| c.cid)
    }

    pub fn failed_cids(&self) -> Vec<Cid> {
        self.chunks
            .iter()
            .filter(|c| c.failed)
            .map(|c| c.cid)
            .collect()
    }

    pub fn slow_cids(&self) -> Vec<Cid> {
        self.chunks
            .iter()
            .filter(|c| c.slow)
            .map(|c| c.cid)
            .collect()
    }

    /// Replicas still to re-create over every recoverable extent.
    pub fn missing_replicas(&self) -> u64 {
        self.lost.iter().map(|l| u64::from(l.missing)).sum()
    }

    /// Racks that hold none of `holders`' replicas and have a live chunk
    /// outside `taken`; empty when every rack holds one (then any live
    /// chunk will do, see [`Cluster::eligible`]).
    pub fn free_racks(&self, holders: &[Cid], taken: &[Cid]) -> Vec<usize> {
        let mut used = vec![false; self.racks];
        for &c in holders {
            if let Some(r) = self.rack_of(c) {
                used[r] = true;
            }
        }
        (0..self.racks)
            .filter(|&r| {
                !used[r]
                    && self.rack_members[r]
                        .iter()
                        .any(|&c| self.live(c) && !taken.contains(&c))
            })
            .collect()
    }

    /// Where a new replica of an extent may go: live chunks not in `taken`
    /// (its alive replicas and copies in flight) in a rack holding none of
    /// `holders`; if no such chunk exists, any live chunk not in `taken`.
    /// In cid order.
    pub fn eligible(&self, holders: &[Cid], taken: &[Cid]) -> Vec<Cid> {
        let racks = self.free_racks(holders, taken);
        if racks.is_empty() {
            return self.live_cids().filter(|c| !taken.contains(c)).collect();
        }
        let mut out: Vec<Cid> = racks
            .iter()
            .flat_map(|&r| self.rack_members[r].iter().copied())
            .filter(|&c| self.live(c) && !taken.contains(&c))
            .collect();
        out.sort_unstable();
        out
    }

    /// Are `holders` as spread as the rule allows: no two in one rack,
    /// unless there are more of them than racks with a live chunk?
    pub fn spread_ok(&self, holders: &[Cid]) -> bool {
        let mut racks: Vec<usize> = holders.iter().filter_map(|&c| self.rack_of(c)).collect();
        racks.sort_unstable();
        racks.dedup();
        let live_racks = (0..self.racks)
            .filter(|&r| self.rack_members[r].iter().any(|&c| self.live(c)))
            .count();
        racks.len() >= holders.len().min(live_racks)
    }

    /// Is `cid` among [`Cluster::eligible`]`(holders, taken)`?
    pub fn is_eligible(&self, cid: Cid, holders: &[Cid], taken: &[Cid]) -> bool {
        if !self.live(cid) || taken.contains(&cid) {
            return false;
        }
        let racks = self.free_racks(holders, taken);
        racks.is_empty() || self.rack_of(cid).is_some_and(|r| racks.contains(&r))
    }
}

/// A state fed entry by entry, as a log would (term 1, leader time 0).
struct Builder {
    state: State,
    index: u64,
}

impl Builder {
    fn apply(&mut self, cmd: &Cmd) -> Result<Reply, SimError> {
        self.index += 1;
        let meta = EntryMeta {
            index: self.index,
            term: 1,
            leader_time_ms: 0,
        };
        self.state
            .apply(meta, cmd)
            .map_err(|e| SimError::Setup(format!("{cmd:?}: {e}")))
    }

    fn topo(&mut self, kind: TopoKind, parent: u64, name: String) -> Result<u64, SimError> {
        match self.apply(&Cmd::AddTopo { kind, parent, name })? {
            Reply::TopoId(id) => Ok(id),
            r => Err(SimError::Setup(format!("AddTopo replied {r:?}"))),
        }
    }
}

/// Rack-safe seeded spread: three distinct racks drawn uniformly, and in
/// each the chunk holding the fewest replicas so far (ties by a random
/// rotation). Replicas end up even per chunk and the extents of any one
/// chunk have partners all over the cluster, as a declustered layout has.
fn place(cfg: &SimConfig, rack_members: &[Vec<Cid>], chunks: usize) -> Vec<[Cid; REPLICAS]> {
    let mut rng = Rng::stream(cfg.seed, 1);
    let racks = rack_members.len() as u64;
    let mut count = vec![0u64; chunks + 1];
    let mut locs = Vec::with_capacity(cfg.extents as usize);
    for _ in 0..cfg.extents {
        let mut chosen = [0usize; REPLICAS];
        let mut n = 0;
        while n < REPLICAS {
            let r = rng.below(racks) as usize;
            if !chosen[..n].contains(&r) {
                chosen[n] = r;
                n += 1;
            }
        }
        let mut loc = [0 as Cid; REPLICAS];
        for (slot, &r) in loc.iter_mut().zip(&chosen) {
            let members = &rack_members[r];
            let start = rng.below(members.len() as u64) as usize;
            let mut best = members[start];
            for k in 1..members.len() {
                let c = members[(start + k) % members.len()];
                if count[c as usize] < count[best as usize] {
                    best = c;
                }
            }
            count[best as usize] += 1;
            *slot = best;
        }
        locs.push(loc);
    }
    locs
}

/// Builds the cluster of `cfg` (validated by the caller).
pub fn build(cfg: &SimConfig) -> Result<Cluster, SimError> {
    let n = cfg.chunks as usize;
    let racks = cfg.racks() as usize;
    let mut b = Builder {
        state: State::new(),
        index: 0,
    };
    if let Some(n) = cfg.recover_slots {
        // The ceiling first: a limit above it is refused.
        let ceiling = n.max(b.state.config().slot_ceiling);
        for (key, value) in [
            ("slot_ceiling", ceiling),
            ("recover_src_slots", n),
            ("recover_dst_slots", n),
        ] {
            b.apply(&Cmd::SetConfig {
                key: key.into(),
                value: value.to_string(),
            })?;
        }
    }
    let zone = b.topo(TopoKind::Zone, ROOT_ID, "z".into())?;
    let mut rack_ids = Vec::with_capacity(racks);
    for r in 0..racks {
        rack_ids.push(b.topo(TopoKind::Rack, zone, format!("r{r}"))?);
    }
    let failed = |i: usize| i < cfg.fail as usize;
    // The slow disks: the highest cids, never a failed chunk (validated).
    let slow = |i: usize| i >= n - cfg.slow_disks as usize;
    let mut chunks = Vec::with_capacity(n);
    let mut rack_members = vec![Vec::new(); racks];
    for i in 0..n {
        let rack = i % racks;
        let brick = b.topo(TopoKind::Brick, rack_ids[rack], format!("b{i}"))?;
        let cid = match b.apply(&Cmd::RegisterChunk {
            hostname: format!("sim{i}"),
            data_addr: String::new(),
            brick: Some(brick),
            version: "sim".into(),
            capabilities: vec![],
        })? {
            Reply::Cid(c) => c,
            r => return Err(SimError::Setup(format!("RegisterChunk replied {r:?}"))),
        };
        if cid as usize != i + 1 {
            return Err(SimError::Setup(format!("chunk {i} got cid {cid}")));
        }
        let is_slow = slow(i);
        chunks.push(ChunkSpec {
            cid,
            rack,
            failed: failed(i),
            slow: is_slow,
            in_bps: cfg.link_bps(is_slow),
            out_bps: cfg.link_bps(is_slow),
        });
        rack_members[rack].push(cid);
    }
    let locs = place(cfg, &rack_members, n);
    let mut count = vec![0u64; n];
    for loc in &locs {
        for &c in loc {
            count[c as usize - 1] += 1;
        }
    }
    // Equal capacity, the fullest chunk at 50 %: low load mode (< 60 %), so
    // capacity never filters a destination and migrate only fixes safety.
    let max_count = count.iter().copied().max().unwrap_or(0).max(1);
    let capacity_bytes = max_count
        .saturating_mul(EXTENT_SIZE_BYTES)
        .saturating_mul(2);
    let mut sessions = Vec::with_capacity(n);
    for (i, &k) in count.iter().enumerate() {
        let cid = i as Cid + 1;
        b.apply(&Cmd::ReportSpace {
            cid,
            space: space(capacity_bytes, k * EXTENT_SIZE_BYTES),
        })?;
        match b.apply(&Cmd::OpenSession {
            cid,
            lease_ms: cfg.lease_ms,
        })? {
            Reply::Session { session_id, .. } => sessions.push(session_id),
            r => return Err(SimError::Setup(format!("OpenSession replied {r:?}"))),
        }
    }
    let mut pid = 1u64;
    let mut v = 0;
    while pid <= cfg.extents {
        let k = PER_VOLUME.min(cfg.extents - pid + 1);
        let from = (pid - 1) as usize;
        let reply = b.apply(&Cmd::CreateVolume(CreateVolume {
            name: format!("v{v}"),
            size_bytes: k * EXTENT_SIZE_BYTES,
            provisioning: Provisioning::Thin,
            replicas: REPLICAS as u8,
            prefer_cid: 0,
            even: false,
            preferred_zone: 0,
            locs: locs[from..from + k as usize]
                .iter()
                .map(|l| l.to_vec())
                .collect(),
        }))?;
        match reply {
            Reply::Volume { first_pid, .. } if first_pid == pid => {}
            r => return Err(SimError::Setup(format!("volume {v} replied {r:?}"))),
        }
        pid += k;
        v += 1;
    }
    let mut lost = Vec::new();
    let mut unrecoverable = 0;
    for (i, loc) in locs.iter().enumerate() {
        let alive: Vec<Cid> = loc
            .iter()
            .copied()
            .filter(|&c| !failed(c as usize - 1))
            .collect();
        if alive.is_empty() {
            unrecoverable += 1;
        } else if alive.len() < REPLICAS {
            lost.push(Lost {
                pid: i as Pid + 1,
                missing: (REPLICAS - alive.len()) as u8,
                alive,
            });
        }
    }
    Ok(Cluster {
        chunks,
        racks,
        rack_members,
        locs,
        extent_bytes: EXTENT_SIZE_BYTES,
        last_index: b.index,
        state: b.state,
        sessions,
        capacity_bytes,
        lost,
        unrecoverable,
    })
}

/// A chunk's space report: `used` provisioned out of `capacity`.
pub fn space(capacity: u64, used: u64) -> ChunkSpaceInfo {
    ChunkSpaceInfo {
        valid_data_space: capacity,
        total_data_capacity: capacity,
        provisioned_data_space: used,
        allocated_data_space: used,
        used_data_space: used,
        ..ChunkSpaceInfo::default()
    }
}
