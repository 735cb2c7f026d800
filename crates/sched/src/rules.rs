//! Rules shared by the recover, migrate and manual planners: load
//! accounting, destination filters, topology safety and lease ownership.

use cairn_state::{Chunk, ChunkState, Cid, Distance, Extent, LoadMode, LoadRatio, State, MAX_LOC};

use crate::cmd::{DstReject, OwnerSource};
use crate::placement::Filter;
use crate::stretched::{stretched_zones, Zones};

/// Approximate per-chunk load for one round: the reported figures plus the
/// bytes of commands planned but not finished (so one round does not pile
/// every copy onto the emptiest chunk). Indexed by `cid - 1`.
#[derive(Clone, Debug)]
pub struct Loads {
    used: Vec<u64>,
    valid: Vec<u64>,
    high_bp: u32,
}

impl Loads {
    pub fn new(state: &State) -> Loads {
        let (used, valid) = state
            .chunks()
            .map(|c| (state.used_space(c), c.space.valid_data_space))
            .unzip();
        Loads {
            used,
            valid,
            high_bp: state.config().load_high_bp,
        }
    }

    fn idx(cid: Cid) -> Option<usize> {
        (cid as usize).checked_sub(1)
    }

    pub fn used(&self, cid: Cid) -> u64 {
        Self::idx(cid)
            .and_then(|i| self.used.get(i))
            .copied()
            .unwrap_or(0)
    }

    pub fn valid(&self, cid: Cid) -> u64 {
        Self::idx(cid)
            .and_then(|i| self.valid.get(i))
            .copied()
            .unwrap_or(0)
    }

    pub fn ratio(&self, cid: Cid) -> Option<LoadRatio> {
        LoadRatio::new(self.used(cid), self.valid(cid))
    }

    /// Counts a planned copy onto `cid`.
    pub fn add(&mut self, cid: Cid, bytes: u64) {
        if let Some(u) = Self::idx(cid).and_then(|i| self.used.get_mut(i)) {
            *u = u.saturating_add(bytes);
        }
    }

    /// Counts a planned drop of a replica from `cid`.
    pub fn sub(&mut self, cid: Cid, bytes: u64) {
        if let Some(u) = Self::idx(cid).and_then(|i| self.used.get_mut(i)) {
            *u = u.saturating_sub(bytes);
        }
    }

    /// Rule §5.3: a copy must never bring its destination to ultra-high load
    /// (>= `load_high_pct`, 95 % by default). Unreported space counts as full.
    pub fn would_reach_ultra_high(&self, cid: Cid, bytes: u64) -> bool {
        match LoadRatio::new(self.used(cid).saturating_add(bytes), self.valid(cid)) {
            Some(after) => after.at_least_bp(self.high_bp),
            None => true,
        }
    }
}

/// What one planning round reads: the exact state, the approximate loads,
/// the cluster's load mode and shape.
pub struct Ctx<'a> {
    pub state: &'a State,
    pub loads: Loads,
    pub mode: LoadMode,
    pub zones: Option<Zones>,
    /// `best_min[n]`: see [`Ctx::best_min_distance`].
    best_min: [Distance; MAX_LOC + 1],
}

impl<'a> Ctx<'a> {
    pub fn new(state: &'a State) -> Ctx<'a> {
        Ctx {
            state,
            loads: Loads::new(state),
            mode: cluster_load_mode(state),
            zones: stretched_zones(state),
            best_min: best_min_distances(state),
        }
    }

    /// The largest closest-pair distance `n` replicas can have on the
    /// chunks in service (enough distinct zones / racks / bricks / chunks).
    pub fn best_min_distance(&self, n: usize) -> Distance {
        self.best_min.get(n).copied().unwrap_or(Distance::SameChunk)
    }
}

fn best_min_distances(state: &State) -> [Distance; MAX_LOC + 1] {
    use std::collections::BTreeSet;
    let (mut zones, mut racks, mut bricks) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut chunks = 0usize;
    for c in state
        .chunks()
        .filter(|c| c.state == ChunkState::Registered && state.has_session(c.cid))
    {
        if let Some(z) = state.zone_of(c.cid) {
            zones.insert(z);
        }
        racks.insert(state.rack_of(c.cid));
        bricks.insert(c.brick);
        chunks += 1;
    }
    let mut out = [Distance::SameChunk; MAX_LOC + 1];
    for (n, d) in out.iter_mut().enumerate() {
        *d = if zones.len() >= n {
            Distance::OtherZone
        } else if racks.len() >= n {
            Distance::SameZone
        } else if bricks.len() >= n {
            Distance::SameRack
        } else if chunks >= n {
            Distance::SameBrick
        } else {
            Distance::SameChunk
        };
    }
    out
}

/// The cluster's load mode: sum of used over sum of valid space (§3);
/// a cluster that reported no space is treated as ultra-high (nothing moves).
pub fn cluster_load_mode(state: &State) -> LoadMode {
    state
        .cluster_load()
        .map_or(LoadMode::UltraHigh, |r| state.load_mode(r))
}

/// Placement's per-chunk filters, for a chunk receiving a copy.
pub fn dst_chunk_filter(ctx: &Ctx<'_>, chunk: &Chunk, bytes: u64) -> Result<(), DstReject> {
    let f = |f| Err(DstReject::Filter(f));
    if chunk.state != ChunkState::Registered {
        return f(Filter::NotRegistered);
    }
    if !ctx.state.has_session(chunk.cid) {
        return f(Filter::NoSession);
    }
    if chunk.failslow {
        return f(Filter::Failslow);
    }
    if chunk.space.valid_data_space == 0 {
        return f(Filter::NoSpaceReported);
    }
    if ctx.loads.would_reach_ultra_high(chunk.cid, bytes) {
        return f(Filter::WouldBeUltraHigh);
    }
    Ok(())
}

/// A chunk may hold the lease or serve as a copy source.
pub fn can_serve(state: &State, cid: Cid) -> bool {
    state
        .chunk(cid)
        .is_some_and(|c| c.state != ChunkState::Removed && state.has_session(cid))
}

pub fn is_failslow(state: &State, cid: Cid) -> bool {
    state.chunk(cid).is_some_and(|c| c.failslow)
}

/// Distance; unknown chunks count as the same chunk (the worst case).
pub fn distance(state: &State, a: Cid, b: Cid) -> Distance {
    state.distance(a, b).unwrap_or(Distance::SameChunk)
}

/// Distance from `cid` to the nearest of `others` (OtherZone when none).
pub fn min_distance_to(state: &State, cid: Cid, others: &[Cid]) -> Distance {
    others
        .iter()
        .filter(|&&o| o != cid)
        .map(|&o| distance(state, cid, o))
        .min()
        .unwrap_or(Distance::OtherZone)
}

/// How spread a replica set is: its pairwise distances, smallest first.
/// Compared lexicographically, so a larger value is safer (a set whose
/// closest pair is farther apart wins; ties go to the next closest pair).
/// Only sets of the same size are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Safety {
    pairs: [Distance; MAX_LOC * (MAX_LOC - 1) / 2],
    len: u8,
}

pub fn topology_safety(state: &State, cids: &[Cid]) -> Safety {
    let mut pairs = [Distance::OtherZone; MAX_LOC * (MAX_LOC - 1) / 2];
    let mut n = 0;
    let cids = &cids[..cids.len().min(MAX_LOC)];
    for (i, &a) in cids.iter().enumerate() {
        for &b in &cids[i + 1..] {
            pairs[n] = distance(state, a, b);
            n += 1;
        }
    }
    pairs[..n].sort_unstable();
    Safety {
        pairs,
        len: n as u8,
    }
}

impl Safety {
    /// The pairwise distances, closest first.
    pub fn pairs(&self) -> &[Distance] {
        &self.pairs[..usize::from(self.len).min(self.pairs.len())]
    }

    /// The closest pair (OtherZone for fewer than two replicas).
    pub fn closest(&self) -> Distance {
        if self.len == 0 {
            Distance::OtherZone
        } else {
            self.pairs[0]
        }
    }
}

/// Rule §5.2/§5.3 "respects topology safety": a move may not leave the
/// alive replicas less spread than before.
pub fn keeps_topology_safety(state: &State, before: &[Cid], after: &[Cid]) -> bool {
    before.len() != after.len() || topology_safety(state, after) >= topology_safety(state, before)
}

/// Rule §5.2 lease owner, in priority: the extent's existing owner; `src`;
/// `dst`; else a non-failslow chunk by owner priority (holding an alive
/// replica first, then lowest load, then lowest cid). `src` and `dst` are
/// taken only when they are not failslow. `None`: no owner can be
/// allocated, and then no command may be issued.
pub fn allocate_owner(
    ctx: &Ctx<'_>,
    ext: &Extent,
    src: Cid,
    dst: Cid,
) -> Option<(Cid, OwnerSource)> {
    let state = ctx.state;
    if ext.lease_owner != 0 && can_serve(state, ext.lease_owner) {
        return Some((ext.lease_owner, OwnerSource::Existing));
    }
    let usable = |c: Cid| c != 0 && can_serve(state, c) && !is_failslow(state, c);
    if usable(src) {
        return Some((src, OwnerSource::Src));
    }
    if usable(dst) {
        return Some((dst, OwnerSource::Dst));
    }
    state
        .chunks()
        .filter(|c| usable(c.cid))
        .min_by_key(|c| {
            (
                !ext.loc.is_alive(c.cid),
                ctx.loads.ratio(c.cid).map(|r| r.basis_points()),
                c.cid,
            )
        })
        .map(|c| (c.cid, OwnerSource::Fallback))
}

/// Rule §5.2: when the lease owner is neither `src` nor `dst` but holds an
/// alive replica, the copy is made from the owner (it has the latest writes
/// and serves them). Returns the source to use.
pub fn src_follows_owner(ext: &Extent, src: Cid, dst: Cid, owner: Cid) -> Cid {
    if owner != 0 && owner != src && owner != dst && ext.loc.is_alive(owner) {
        owner
    } else {
        src
    }
}
