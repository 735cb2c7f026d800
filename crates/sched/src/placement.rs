//! Initial allocation of an extent's replicas (DOMAIN.md §5.1 and the initial
//! rule of §5.4), built as **named filters first, then sorting by preference**.
//!
//! Filters run in the order of how wide their effect is: the cluster shape
//! (stretched or not) first, then per-chunk service state, then capacity.
//! A chunk is rejected by the first filter it fails, and that filter is
//! reported, so `cairn sched explain` can say why every chunk was or was not
//! chosen. Among the survivors each replica is chosen by a fixed preference
//! order that ends with the cid, so ties always break the same way.

use std::cmp::Reverse;
use std::fmt;

use cairn_state::{Chunk, ChunkState, Cid, Distance, LoadRatio, State, TopoId, EXTENT_SIZE_BYTES};
use thiserror::Error;

/// What to place: one extent of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceRequest {
    /// 2 or 3.
    pub replicas: u8,
    /// The chunk where the consumer runs; 0 = unknown.
    pub prefer_cid: Cid,
    /// Stretched clusters: the zone the volume prefers; 0 = the zone of
    /// `prefer_cid`, else the cluster's default (the lowest zone id).
    pub preferred_zone: TopoId,
    /// Spread the volume's extents evenly over chunks.
    pub even: bool,
    /// Bytes one replica adds to its chunk's load.
    pub extent_bytes: u64,
}

impl PlaceRequest {
    pub fn new(replicas: u8) -> PlaceRequest {
        PlaceRequest {
            replicas,
            prefer_cid: 0,
            preferred_zone: 0,
            even: false,
            extent_bytes: EXTENT_SIZE_BYTES,
        }
    }
}

/// The filters, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filter {
    /// Stretched cluster: the chunk is in no zone (unracked).
    NoZone,
    /// The chunk is removing or removed.
    NotRegistered,
    /// The chunk has no live session.
    NoSession,
    /// The chunk is flagged failslow.
    Failslow,
    /// The chunk has not reported any valid space yet.
    NoSpaceReported,
    /// One more replica would bring the chunk to ultra-high load.
    WouldBeUltraHigh,
    /// Per replica: the chunk already holds a replica of this extent.
    AlreadyChosen,
    /// Per replica, stretched cluster: the chunk is not in the zone this replica goes to.
    WrongZone,
    /// Per replica: the chunk is unracked and racked chunks qualify.
    Unracked,
}

impl Filter {
    pub fn describe(self) -> &'static str {
        match self {
            Filter::NoZone => "unracked chunk in a stretched cluster (no zone)",
            Filter::NotRegistered => "chunk is removing or removed",
            Filter::NoSession => "chunk has no live session",
            Filter::Failslow => "chunk is failslow",
            Filter::NoSpaceReported => "chunk has reported no valid space",
            Filter::WouldBeUltraHigh => "one more replica would reach ultra-high load",
            Filter::AlreadyChosen => "chunk already holds a replica of this extent",
            Filter::WrongZone => "replica must go to the other zone of the stretched cluster",
            Filter::Unracked => "unracked chunk, and racked chunks qualify",
        }
    }
}

/// Why a chunk was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Replica 1 on the consumer's chunk.
    PreferLocal,
    /// Replica 1 without a usable prefer-local chunk: lowest load ratio.
    LowestLoad { load_bp: u64 },
    /// Later replicas: farthest from those already chosen, then lowest load.
    Spread { distance: Distance, load_bp: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub cid: Cid,
    pub reason: Reason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub cid: Cid,
    pub filter: Filter,
}

/// The chosen `loc`, in replica order, with the reason for every decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub chosen: Vec<Chosen>,
    /// Chunks that were never candidates, with the filter that rejected them.
    pub rejected: Vec<Rejection>,
    pub stretched: bool,
}

impl Placement {
    pub fn loc(&self) -> Vec<Cid> {
        self.chosen.iter().map(|c| c.cid).collect()
    }
}

#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum PlaceError {
    #[error("invalid placement request: {0}")]
    InvalidRequest(String),
    #[error("no chunk is registered")]
    NoChunks,
    #[error(
        "no chunk qualifies for replica {replica} (chosen so far {chosen:?}): the last candidates were eliminated by filter {filter:?} ({})",
        filter.describe()
    )]
    NoCandidate {
        /// 1-based replica number that could not be placed.
        replica: u8,
        filter: Filter,
        chosen: Vec<Cid>,
        rejected: Vec<Rejection>,
    },
}

/// The state plus the space and extent counts of placements made but not
/// yet applied (so a volume's extents do not all land on the same chunk).
pub struct View<'a> {
    pub state: &'a State,
    /// Indexed by `cid - 1`.
    pending_bytes: Vec<u64>,
    /// Indexed by `cid - 1`: replicas of the current volume placed so far.
    volume_count: Vec<u32>,
}

impl<'a> View<'a> {
    pub fn new(state: &'a State) -> View<'a> {
        let n = state.chunks().len();
        View {
            state,
            pending_bytes: vec![0; n],
            volume_count: vec![0; n],
        }
    }

    /// Counts a placement as if it had been applied.
    pub fn reserve(&mut self, placement: &Placement, extent_bytes: u64) {
        for c in &placement.chosen {
            if let Some(i) = (c.cid as usize).checked_sub(1) {
                if let Some(b) = self.pending_bytes.get_mut(i) {
                    *b = b.saturating_add(extent_bytes);
                }
                if let Some(n) = self.volume_count.get_mut(i) {
                    *n += 1;
                }
            }
        }
    }

    fn pending(&self, cid: Cid) -> (u64, u32) {
        let i = (cid as usize).saturating_sub(1);
        (
            self.pending_bytes.get(i).copied().unwrap_or(0),
            self.volume_count.get(i).copied().unwrap_or(0),
        )
    }
}

/// A chunk that passed every static filter.
struct Candidate {
    cid: Cid,
    zone: Option<TopoId>,
    load: LoadRatio,
    volume_count: u32,
}

/// Places one extent. See the module docs for the rules.
pub fn place(view: &View<'_>, req: &PlaceRequest) -> Result<Placement, PlaceError> {
    if !(2..=3).contains(&req.replicas) {
        return Err(PlaceError::InvalidRequest(format!(
            "replicas must be 2 or 3, not {}",
            req.replicas
        )));
    }
    let state = view.state;
    let zone_targets = stretched_zone_targets(state, req);
    let stretched = zone_targets.is_some();

    // Static filters, widest first.
    let mut rejected = Vec::new();
    let mut candidates = Vec::with_capacity(state.chunks().len());
    // Removed chunks are gone for good: not even worth a rejection line.
    for chunk in state.chunks().filter(|c| c.state != ChunkState::Removed) {
        match static_filters(view, chunk, req, stretched) {
            Ok(c) => candidates.push(c),
            Err(filter) => rejected.push(Rejection {
                cid: chunk.cid,
                filter,
            }),
        }
    }

    // The filter that removed the last candidates, for the error message:
    // the latest filter in order that rejected anything.
    let Some(static_deepest) = rejected
        .iter()
        .map(|r| r.filter)
        .max()
        .or(candidates.first().map(|_| Filter::AlreadyChosen))
    else {
        return Err(PlaceError::NoChunks);
    };
    let mut chosen: Vec<Chosen> = Vec::with_capacity(usize::from(req.replicas));
    for replica in 0..usize::from(req.replicas) {
        let target_zone = zone_targets.as_ref().map(|t| t[replica]);
        let mut deepest = static_deepest;
        // One pass: the best racked and the best unracked candidate; an
        // unracked chunk is taken only when no racked one qualifies.
        let mut best_racked: Option<(PrefKey, Chosen)> = None;
        let mut best_unracked: Option<(PrefKey, Chosen)> = None;
        for c in &candidates {
            if is_chosen(&chosen, c.cid) {
                deepest = deepest.max(Filter::AlreadyChosen);
                continue;
            }
            if target_zone.is_some_and(|z| c.zone != Some(z)) {
                deepest = deepest.max(Filter::WrongZone);
                continue;
            }
            let (key, reason) = preference(state, req, &chosen, c, replica);
            let best = if c.zone.is_some() {
                &mut best_racked
            } else {
                &mut best_unracked
            };
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                *best = Some((key, Chosen { cid: c.cid, reason }));
            }
        }
        match best_racked.or(best_unracked) {
            Some((_, pick)) => chosen.push(pick),
            None => {
                return Err(PlaceError::NoCandidate {
                    replica: replica as u8 + 1,
                    filter: deepest,
                    chosen: chosen.iter().map(|c| c.cid).collect(),
                    rejected,
                })
            }
        }
    }
    // Unracked survivors left out because racked chunks qualified.
    for c in &candidates {
        if c.zone.is_none()
            && !is_chosen(&chosen, c.cid)
            && chosen.iter().any(|x| state.zone_of(x.cid).is_some())
        {
            rejected.push(Rejection {
                cid: c.cid,
                filter: Filter::Unracked,
            });
        }
    }
    Ok(Placement {
        chosen,
        rejected,
        stretched,
    })
}

/// Places every extent of a volume, each placement counting the ones before.
pub fn place_volume(
    state: &State,
    req: &PlaceRequest,
    extents: u64,
) -> Result<Vec<Placement>, PlaceError> {
    let mut view = View::new(state);
    let mut out = Vec::new();
    for _ in 0..extents {
        let p = place(&view, req)?;
        view.reserve(&p, req.extent_bytes);
        out.push(p);
    }
    Ok(out)
}

fn is_chosen(chosen: &[Chosen], cid: Cid) -> bool {
    chosen.iter().any(|c| c.cid == cid)
}

/// Per-chunk filters, in order; the first that fails rejects the chunk.
fn static_filters(
    view: &View<'_>,
    chunk: &Chunk,
    req: &PlaceRequest,
    stretched: bool,
) -> Result<Candidate, Filter> {
    let state = view.state;
    let zone = state.zone_of(chunk.cid);
    if stretched && zone.is_none() {
        return Err(Filter::NoZone);
    }
    if chunk.state != ChunkState::Registered {
        return Err(Filter::NotRegistered);
    }
    if !state.has_session(chunk.cid) {
        return Err(Filter::NoSession);
    }
    if chunk.failslow {
        return Err(Filter::Failslow);
    }
    let (pending_bytes, volume_count) = view.pending(chunk.cid);
    let used = state.used_space(chunk).saturating_add(pending_bytes);
    let load = LoadRatio::new(used, chunk.space.valid_data_space).ok_or(Filter::NoSpaceReported)?;
    let after = LoadRatio::new(
        used.saturating_add(req.extent_bytes),
        chunk.space.valid_data_space,
    )
    .ok_or(Filter::NoSpaceReported)?;
    if after.at_least_bp(state.config().load_high_bp) {
        return Err(Filter::WouldBeUltraHigh);
    }
    Ok(Candidate {
        cid: chunk.cid,
        zone,
        load,
        volume_count,
    })
}

/// Smaller is better. Fields compared in order; the cid ends every tie.
type PrefKey = (u8, Reverse<Distance>, u32, LoadRatio, Cid);

fn preference(
    state: &State,
    req: &PlaceRequest,
    chosen: &[Chosen],
    c: &Candidate,
    replica: usize,
) -> (PrefKey, Reason) {
    let load_bp = c.load.basis_points();
    if replica == 0 {
        let local = req.prefer_cid != 0 && c.cid == req.prefer_cid;
        let volume_count = if req.even { c.volume_count } else { 0 };
        let key = (
            u8::from(!local),
            Reverse(Distance::SameChunk),
            volume_count,
            c.load,
            c.cid,
        );
        let reason = if local {
            Reason::PreferLocal
        } else {
            Reason::LowestLoad { load_bp }
        };
        return (key, reason);
    }
    // Spread: the distance to the nearest replica already chosen, larger is better.
    let distance = chosen
        .iter()
        .filter_map(|x| state.distance(x.cid, c.cid))
        .min()
        .unwrap_or(Distance::OtherZone);
    let volume_count = if req.even { c.volume_count } else { 0 };
    (
        (0, Reverse(distance), volume_count, c.load, c.cid),
        Reason::Spread { distance, load_bp },
    )
}

/// In a stretched cluster (exactly two zones with chunks in service), the
/// zone each replica goes to: 2 in the preferred zone and 1 in the other
/// (1 + 1 for 2 replicas). The preferred zone is, first that applies: the
/// zone of the consumer's chunk, the volume's `preferred_zone`, the cluster's
/// `default_zone`, the lowest zone id. Zones without a registered chunk do
/// not count, so an empty third zone does not turn the rule off.
fn stretched_zone_targets(state: &State, req: &PlaceRequest) -> Option<Vec<TopoId>> {
    let crate::stretched::Zones { a, b } = crate::stretched::stretched_zones(state)?;
    let preferred = [
        state.zone_of(req.prefer_cid).unwrap_or(0),
        req.preferred_zone,
        state.config().default_zone,
    ]
    .into_iter()
    .find(|z| *z == a || *z == b)
    .unwrap_or(a);
    let other = if preferred == a { b } else { a };
    Some(match req.replicas {
        3 => vec![preferred, preferred, other],
        _ => vec![preferred, other],
    })
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "loc {:?}{}",
            self.loc(),
            if self.stretched {
                " (stretched cluster)"
            } else {
                ""
            }
        )?;
        for (i, c) in self.chosen.iter().enumerate() {
            let why = match c.reason {
                Reason::PreferLocal => "prefer-local chunk".to_string(),
                Reason::LowestLoad { load_bp } => format!("lowest load ratio ({})", pct(load_bp)),
                Reason::Spread { distance, load_bp } => {
                    format!(
                        "spread: {distance:?} from the nearest replica, load {}",
                        pct(load_bp)
                    )
                }
            };
            writeln!(f, "  replica {}: chunk {} — {why}", i + 1, c.cid)?;
        }
        for r in &self.rejected {
            writeln!(
                f,
                "  rejected chunk {}: {:?} — {}",
                r.cid,
                r.filter,
                r.filter.describe()
            )?;
        }
        Ok(())
    }
}

fn pct(bp: u64) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}
