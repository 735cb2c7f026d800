//! Migrate planning for one extent (DOMAIN.md §5.3, §5.4): which replica
//! moves (`replace`) and where to (`dst`), by rule, in this order:
//! topology safety, stretched 2:1 gathering, then by load mode locality
//! (low) or capacity (medium and above), then even volumes.
//!
//! Every automatic move must keep topology safety and the stretched ratio,
//! never lands on a chunk it would push to ultra-high load, never replaces
//! the prefer-local replica or a pinned (gathered) one, and replaces the
//! lease owner only for topology safety in medium/high load.

use std::cmp::Reverse;

use cairn_state::{Cid, Distance, Extent, LoadMode, Pid, State, Volume, EXTENT_SIZE_BYTES};

use crate::cmd::{DstReject, Kind, Mode, NoPlan, SchedCmd, Why};
use crate::explain::{NoObserve, Observe, ReplaceScore, RuleOutcome, Score};
use crate::manual::Pins;
use crate::rules::{
    allocate_owner, can_serve, dst_chunk_filter, is_failslow, keeps_topology_safety,
    min_distance_to, src_follows_owner, topology_safety, Ctx, Safety,
};
use crate::slots::{SlotKind, Slots};
use crate::stretched::{access_zone, keeps_stretched_ratio, zone_counts, zone_targets};

/// A chosen move: copy to `dst`, then drop `replace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub dst: Cid,
    pub replace: Cid,
    pub why: Why,
}

/// Everything a migrate decision reads besides the extent.
pub struct MigrateCtx<'a, 'b> {
    pub ctx: &'b Ctx<'a>,
    pub slots: &'b Slots,
    pub pins: &'b Pins,
    pub now_ms: u64,
    /// Capacity rebalance: per-chunk moves still allowed this round (empty below medium load).
    pub balance: &'b Balance,
}

impl MigrateCtx<'_, '_> {
    fn state(&self) -> &State {
        self.ctx.state
    }
}

/// Why an alive replica is not the one a migration drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplaceReject {
    /// The prefer-local replica is never replaced (even failslow).
    PreferLocal,
    /// The lease owner is spared (except for topology safety in medium/high load).
    LeaseOwner,
    /// Placed by an operator (manual migrate or gather) and pinned.
    Pinned,
    /// Locality: the replica is part of the expected distribution.
    FitsExpected,
    /// Stretched cluster: the replica is not in the zone over its target.
    NotInOverZone,
    /// Capacity: its chunk is not over its load gap (or its moves this round are spent).
    NoLoadGap,
}

impl ReplaceReject {
    pub fn describe(self) -> &'static str {
        match self {
            ReplaceReject::PreferLocal => "prefer-local replica: never replaced",
            ReplaceReject::LeaseOwner => "lease owner: spared",
            ReplaceReject::Pinned => "pinned by an operator",
            ReplaceReject::FitsExpected => "fits the expected distribution",
            ReplaceReject::NotInOverZone => "not in the zone over its 2:1 target",
            ReplaceReject::NoLoadGap => "chunk not over its load gap (or its moves are spent)",
        }
    }
}

/// Rule §5.3 `replace` eligibility: never the prefer-local replica (even
/// failslow: it still serves local reads), never a replica pinned by a
/// gather or manual migrate, and not the lease owner unless `allow_owner`.
pub fn may_replace(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    cid: Cid,
    allow_owner: bool,
) -> bool {
    replace_check(m, pid, volume, ext, cid, allow_owner).is_ok()
}

/// [`may_replace`] with the reason, checked in the order listed there.
pub fn replace_check(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    cid: Cid,
    allow_owner: bool,
) -> Result<(), ReplaceReject> {
    if cid == ext.prefer_cid {
        Err(ReplaceReject::PreferLocal)
    } else if !allow_owner && cid == ext.lease_owner {
        Err(ReplaceReject::LeaseOwner)
    } else if m.pins.is_pinned(pid, volume.id, cid, m.now_ms) {
        Err(ReplaceReject::Pinned)
    } else {
        Ok(())
    }
}

/// Rule §5.3 expected distribution: the prefer-local chunk first (when
/// `locality` and it can take or holds a replica), then the replicas an
/// operator pinned (`keep`), then the alive replicas on in-service chunks,
/// farthest from those chosen first (stretched: zones below their 2:1
/// target first), then in `loc` order (load is not used here: in-flight
/// copies change it, and the expected set must not flip with them); if
/// still short, other qualifying chunks, farthest then least loaded.
pub fn expected_distribution(
    ctx: &Ctx<'_>,
    volume: &Volume,
    ext: &Extent,
    locality: bool,
    keep: &[Cid],
) -> Vec<Cid> {
    let state = ctx.state;
    let n = usize::from(ext.expected_replicas);
    let mut chosen: Vec<Cid> = Vec::with_capacity(n);
    let p = ext.prefer_cid;
    if locality
        && p != 0
        && (ext.loc.is_alive(p)
            || state
                .chunk(p)
                .is_some_and(|c| dst_chunk_filter(ctx, c, EXTENT_SIZE_BYTES).is_ok()))
    {
        chosen.push(p);
    }
    for &k in keep {
        if chosen.len() < n && ext.loc.is_alive(k) && !chosen.contains(&k) {
            chosen.push(k);
        }
    }
    let targets = ctx
        .zones
        .map(|z| zone_targets(z, access_zone(state, z, volume, ext), ext.expected_replicas));
    let pick = |chosen: &[Cid], pool: &mut dyn Iterator<Item = Cid>, by_load: bool| {
        pool.filter(|c| !chosen.contains(c))
            .enumerate()
            .min_by_key(|&(i, c)| {
                let zone_full = targets.as_ref().is_some_and(|t| {
                    let have = zone_counts(state, t, chosen);
                    t.iter()
                        .zip(have)
                        .any(|(t, h)| state.zone_of(c) == Some(t.0) && h >= t.1)
                });
                (
                    zone_full,
                    Reverse(min_distance_to(state, c, chosen)),
                    if by_load {
                        ctx.loads.ratio(c).map(|r| r.basis_points())
                    } else {
                        Some(i as u64)
                    },
                    c,
                )
            })
            .map(|(_, c)| c)
    };
    let in_service = |c: Cid| {
        state
            .chunk(c)
            .is_some_and(|k| k.state == cairn_state::ChunkState::Registered)
    };
    while chosen.len() < n {
        let mut pool = ext.loc.alive_loc().filter(|&c| in_service(c));
        match pick(&chosen, &mut pool, false) {
            Some(c) => chosen.push(c),
            None => break,
        }
    }
    while chosen.len() < n {
        let mut pool = state
            .chunks()
            .filter(|c| !ext.loc.contains(c.cid))
            .filter(|c| dst_chunk_filter(ctx, c, EXTENT_SIZE_BYTES).is_ok())
            .map(|c| c.cid);
        match pick(&chosen, &mut pool, true) {
            Some(c) => chosen.push(c),
            None => break,
        }
    }
    chosen
}

/// Rule §5.3 `dst`: the prefer-local chunk if it holds no replica and is
/// not failslow (the expected distribution only lists it then); otherwise
/// the next chunk of the expected distribution that holds no replica.
pub fn choose_migrate_dst(ext: &Extent, expected: &[Cid]) -> Option<Cid> {
    expected.iter().copied().find(|&c| !ext.loc.contains(c))
}

/// Rule §5.3 `replace` ranking for a locality move, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalityReplaceKey {
    /// Failslow replicas first.
    pub not_failslow: bool,
    /// Then replicas on chunks being drained (not in service).
    pub in_service: bool,
    /// Then the most loaded.
    pub load_bp: Reverse<Option<u64>>,
    /// Then the highest cid.
    pub cid: Reverse<Cid>,
}

/// Rule §5.3 `replace`: an alive replica outside the expected distribution
/// that may be replaced (see [`may_replace`]); failslow ones first, then
/// replicas on chunks being drained, then the most loaded, then highest cid.
pub fn choose_replace(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    expected: &[Cid],
    allow_owner: bool,
) -> Option<Cid> {
    choose_replace_observed(m, pid, volume, ext, expected, allow_owner, &mut NoObserve)
}

/// [`choose_replace`], reporting every alive replica to `o`.
pub fn choose_replace_observed<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    expected: &[Cid],
    allow_owner: bool,
    o: &mut O,
) -> Option<Cid> {
    let state = m.state();
    let mut best: Option<(LocalityReplaceKey, Cid)> = None;
    for c in ext.loc.alive_loc() {
        if expected.contains(&c) {
            o.replace(c, Err(ReplaceReject::FitsExpected));
            continue;
        }
        if let Err(r) = replace_check(m, pid, volume, ext, c, allow_owner) {
            o.replace(c, Err(r));
            continue;
        }
        let key = LocalityReplaceKey {
            not_failslow: !is_failslow(state, c),
            in_service: state
                .chunk(c)
                .is_some_and(|k| k.state == cairn_state::ChunkState::Registered),
            load_bp: Reverse(m.ctx.loads.ratio(c).map(|r| r.basis_points())),
            cid: Reverse(c),
        };
        o.replace(c, Ok(ReplaceScore::Locality(key)));
        if best.is_none_or(|(k, _)| key < k) {
            best = Some((key, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Both shared filters of every automatic move, topology safety first.
fn move_shape(
    m: &MigrateCtx<'_, '_>,
    volume: &Volume,
    ext: &Extent,
    mv: Move,
) -> Result<(), DstReject> {
    let before: Vec<Cid> = ext.loc.alive_loc().collect();
    let mut after: Vec<Cid> = before
        .iter()
        .copied()
        .filter(|&c| c != mv.replace)
        .collect();
    after.push(mv.dst);
    if !keeps_topology_safety(m.state(), &before, &after) {
        return Err(DstReject::LowersSafety);
    }
    if !keeps_stretched_ratio(m.state(), m.ctx.zones, volume, ext, &before, &after) {
        return Err(DstReject::BreaksZoneRatio);
    }
    Ok(())
}

/// Reports a rule's result to `o` and returns the move.
fn end_rule<O: Observe>(o: &mut O, r: Result<Move, RuleOutcome>) -> Result<Move, RuleOutcome> {
    o.rule_end(match r {
        Ok(mv) => RuleOutcome::Chosen {
            dst: mv.dst,
            replace: Some(mv.replace),
        },
        Err(why) => why,
    });
    r
}

/// Rule §5.3 low load: move a replica to the prefer-local chunk. `NoReplace`
/// when every replica outside the expected set is protected (the worked
/// example's pid2 while chunk 4 owns its lease).
pub fn locality_move(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
) -> Result<Move, NoPlan> {
    locality_move_observed(m, pid, volume, ext, &mut NoObserve)
}

/// [`locality_move`], reporting its decisions to `o`.
pub fn locality_move_observed<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Result<Move, NoPlan> {
    o.rule(Why::Locality, false);
    let r = locality(m, pid, volume, ext, o);
    end_rule(o, r).map_err(|why| match why {
        RuleOutcome::Failed(e) => e,
        RuleOutcome::NoReplace => NoPlan::NoReplace,
        _ => NoPlan::NotNeeded,
    })
}

fn locality<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Result<Move, RuleOutcome> {
    let p = ext.prefer_cid;
    if p == 0 {
        return Err(RuleOutcome::NotApplicable(
            "the volume has no prefer-local chunk",
        ));
    }
    if ext.loc.is_alive(p) {
        return Err(RuleOutcome::NotApplicable(
            "the prefer-local chunk already holds an alive replica",
        ));
    }
    let Some(chunk) = m.state().chunk(p) else {
        return Err(RuleOutcome::NotApplicable(
            "the prefer-local chunk is unknown",
        ));
    };
    // `dst` is the prefer-local chunk when the expected distribution lists
    // it (it passes the placement filters) and it holds no replica: the
    // first entry of that distribution missing from `loc`.
    let verdict = if ext.loc.contains(p) {
        Err(DstReject::HoldsReplica)
    } else {
        dst_chunk_filter(m.ctx, chunk, EXTENT_SIZE_BYTES)
    };
    let verdict = verdict.and_then(|()| {
        if m.slots.has_free_slot(p, SlotKind::MigrateDst) {
            Ok(())
        } else {
            Err(DstReject::NoFreeSlot)
        }
    });
    o.dst_search(None);
    if O::ENABLED {
        for c in m.state().chunks() {
            o.dst(
                c.cid,
                if c.cid == p {
                    verdict.map(|()| Score::PreferLocal {
                        load_bp: m.ctx.loads.ratio(p).map(|r| r.basis_points()),
                    })
                } else if ext.loc.contains(c.cid) {
                    Err(DstReject::HoldsReplica)
                } else {
                    Err(DstReject::NotPreferLocal)
                },
            );
        }
    }
    o.dst_best(verdict.ok().map(|()| p));
    match verdict {
        Ok(()) => {}
        Err(DstReject::NoFreeSlot) => return Err(RuleOutcome::Failed(NoPlan::SlotsBusy)),
        Err(_) => return Err(RuleOutcome::NoDst),
    }
    let keep: Vec<Cid> = ext
        .loc
        .alive_loc()
        .filter(|&c| m.pins.is_pinned(pid, volume.id, c, m.now_ms))
        .collect();
    let expected = expected_distribution(m.ctx, volume, ext, true, &keep);
    o.expected(&expected);
    let replace = choose_replace_observed(m, pid, volume, ext, &expected, false, o)
        .ok_or(RuleOutcome::NoReplace)?;
    let mv = Move {
        dst: p,
        replace,
        why: Why::Locality,
    };
    if let Err(r) = move_shape(m, volume, ext, mv) {
        o.dst_dropped(r);
        return Err(RuleOutcome::Failed(NoPlan::NoDst(r)));
    }
    Ok(mv)
}

/// Best destination for a move away from `replace`: qualifying chunk with a
/// free slot holding no replica, passing `accept`, best by `key` (smallest).
/// Every chunk's verdict goes to `o`, in the order the checks run.
fn best_dst<K, O>(
    m: &MigrateCtx<'_, '_>,
    ext: &Extent,
    replace: Cid,
    mut accept: impl FnMut(Cid) -> Result<(), DstReject>,
    mut key: impl FnMut(Cid) -> K,
    o: &mut O,
) -> Option<(K, Cid)>
where
    K: Ord + Copy + Into<Score>,
    O: Observe,
{
    o.dst_search(Some(replace));
    let mut best: Option<(K, Cid)> = None;
    for c in m.state().chunks() {
        let cid = c.cid;
        let verdict = if ext.loc.contains(cid) {
            Err(DstReject::HoldsReplica)
        } else if let Err(r) = dst_chunk_filter(m.ctx, c, EXTENT_SIZE_BYTES) {
            Err(r)
        } else if !m.slots.has_free_slot(cid, SlotKind::MigrateDst) {
            Err(DstReject::NoFreeSlot)
        } else {
            accept(cid)
        };
        match verdict {
            Ok(()) => {
                let k = key(cid);
                o.dst(cid, Ok(k.into()));
                if best.as_ref().is_none_or(|(b, _)| k < *b) {
                    best = Some((k, cid));
                }
            }
            Err(r) => o.dst(cid, Err(r)),
        }
    }
    o.dst_best(best.as_ref().map(|(_, c)| *c));
    best
}

/// Rank of a destination for a topology-safety move, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SafetyDstKey {
    /// How spread the replicas would be: more spread first.
    pub safety: Reverse<Safety>,
    pub load_bp: Option<u64>,
    pub cid: Cid,
}

/// Rule §5.3 topology safety: when replacing one replica makes the set
/// strictly more spread, do it (in a stretched cluster, within the same
/// zone, so the 2:1 ratio holds). The owner is spared, except in medium or
/// high load where it may be replaced when nothing else fits.
pub fn topology_safety_move(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
) -> Option<Move> {
    topology_safety_move_observed(m, pid, volume, ext, &mut NoObserve)
}

/// [`topology_safety_move`], reporting its decisions to `o` (one rule per
/// pass: without, then with the owner as a candidate).
pub fn topology_safety_move_observed<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Option<Move> {
    let state = m.state();
    o.rule(Why::TopologySafety, false);
    let alive: Vec<Cid> = ext.loc.alive_loc().collect();
    if alive.len() < 2 {
        let _ = end_rule(
            o,
            Err(RuleOutcome::NotApplicable("fewer than two alive replicas")),
        );
        return None;
    }
    let current = topology_safety(state, &alive);
    // Cheap exit for the common case: already as spread as the cluster allows.
    if current.closest() >= m.ctx.best_min_distance(alive.len()) {
        let _ = end_rule(
            o,
            Err(RuleOutcome::NotApplicable(
                "the replicas are already as spread as the cluster allows",
            )),
        );
        return None;
    }
    let owner_allowed = matches!(m.ctx.mode, LoadMode::Medium | LoadMode::High);
    for allow_owner in [false, true] {
        if allow_owner {
            if !owner_allowed {
                break;
            }
            o.rule(Why::TopologySafety, true);
        }
        let mut best: Option<(SafetyDstKey, Cid)> = None;
        for &r in &alive {
            if let Err(why) = replace_check(m, pid, volume, ext, r, allow_owner) {
                o.replace(r, Err(why));
                continue;
            }
            o.replace(r, Ok(ReplaceScore::Eligible));
            let rest: Vec<Cid> = alive.iter().copied().filter(|&c| c != r).collect();
            let zone = state.zone_of(r);
            let mut after = rest.clone();
            after.push(0);
            let last = after.len() - 1;
            let d = best_dst(
                m,
                ext,
                r,
                |d| {
                    if m.ctx.zones.is_none() || state.zone_of(d) == zone {
                        Ok(())
                    } else {
                        Err(DstReject::WrongZone)
                    }
                },
                |d| {
                    after[last] = d;
                    SafetyDstKey {
                        safety: Reverse(topology_safety(state, &after)),
                        load_bp: m.ctx.loads.ratio(d).map(|x| x.basis_points()),
                        cid: d,
                    }
                },
                o,
            );
            if let Some((key, _)) = d {
                if key.safety.0 > current {
                    if best.as_ref().is_none_or(|b| (key, r) < *b) {
                        best = Some((key, r));
                    }
                } else {
                    o.dst_dropped(DstReject::NotSafer);
                }
            }
        }
        if let Some((key, replace)) = best {
            let mv = Move {
                dst: key.cid,
                replace,
                why: Why::TopologySafety,
            };
            return end_rule(o, Ok(mv)).ok();
        }
        let _ = end_rule(o, Err(RuleOutcome::NoDst));
    }
    None
}

/// Rank of the replica a stretched gather drops, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GatherReplaceKey {
    /// Failslow replicas first.
    pub not_failslow: bool,
    /// Then the one whose departure leaves the rest most spread.
    pub rest_safety: Reverse<Safety>,
    pub cid: Cid,
}

/// Rank of a stretched gather's destination, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GatherDstKey {
    /// Distance to the nearest remaining replica, farther first.
    pub distance: Reverse<Distance>,
    pub load_bp: Option<u64>,
    pub cid: Cid,
}

/// Rule §5.4: in a stretched cluster, bring the replicas to 2:1 toward the
/// access zone: replace one in the zone over its target (failslow first,
/// else the one whose departure keeps the rest most spread) with a chunk
/// in the zone under it, farthest from the rest, then least loaded, that
/// keeps the set at least as spread.
pub fn stretched_gather_move(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
) -> Option<Move> {
    stretched_gather_move_observed(m, pid, volume, ext, &mut NoObserve)
}

/// [`stretched_gather_move`], reporting its decisions to `o`.
pub fn stretched_gather_move_observed<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Option<Move> {
    o.rule(Why::StretchedGather, false);
    let r = stretched_gather(m, pid, volume, ext, o);
    end_rule(o, r).ok()
}

fn stretched_gather<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Result<Move, RuleOutcome> {
    let Some(zones) = m.ctx.zones else {
        return Err(RuleOutcome::NotApplicable("not a stretched cluster"));
    };
    let state = m.state();
    let targets = zone_targets(
        zones,
        access_zone(state, zones, volume, ext),
        ext.expected_replicas,
    );
    let alive: Vec<Cid> = ext.loc.alive_loc().collect();
    if alive.len() < usize::from(ext.expected_replicas) {
        return Err(RuleOutcome::NotApplicable(
            "short of replicas: recover first",
        ));
    }
    let have = zone_counts(state, &targets, &alive);
    let at_ratio = RuleOutcome::NotApplicable("the zones already hold their 2:1 share");
    let over = targets
        .iter()
        .zip(have)
        .position(|(t, h)| h > t.1)
        .ok_or(at_ratio)?;
    let under = targets
        .iter()
        .zip(have)
        .position(|(t, h)| h < t.1)
        .ok_or(at_ratio)?;
    let (over_zone, under_zone) = (targets[over].0, targets[under].0);
    let mut chosen: Option<(GatherReplaceKey, Cid)> = None;
    for &r in &alive {
        if state.zone_of(r) != Some(over_zone) {
            o.replace(r, Err(ReplaceReject::NotInOverZone));
            continue;
        }
        if let Err(why) = replace_check(m, pid, volume, ext, r, false) {
            o.replace(r, Err(why));
            continue;
        }
        let rest: Vec<Cid> = alive.iter().copied().filter(|&c| c != r).collect();
        let key = GatherReplaceKey {
            not_failslow: !is_failslow(state, r),
            rest_safety: Reverse(topology_safety(state, &rest)),
            cid: r,
        };
        o.replace(r, Ok(ReplaceScore::Gather(key)));
        if chosen.is_none_or(|(k, _)| key < k) {
            chosen = Some((key, r));
        }
    }
    let (_, replace) = chosen.ok_or(RuleOutcome::NoReplace)?;
    let rest: Vec<Cid> = alive.iter().copied().filter(|&c| c != replace).collect();
    let (_, dst) = best_dst(
        m,
        ext,
        replace,
        |d| {
            if state.zone_of(d) != Some(under_zone) {
                return Err(DstReject::WrongZone);
            }
            move_shape(
                m,
                volume,
                ext,
                Move {
                    dst: d,
                    replace,
                    why: Why::StretchedGather,
                },
            )
        },
        |d| GatherDstKey {
            distance: Reverse(min_distance_to(state, d, &rest)),
            load_bp: m.ctx.loads.ratio(d).map(|x| x.basis_points()),
            cid: d,
        },
        o,
    )
    .ok_or(RuleOutcome::NoDst)?;
    Ok(Move {
        dst,
        replace,
        why: Why::StretchedGather,
    })
}

/// Capacity rebalance state of one round (medium load and above).
#[derive(Clone, Debug, Default)]
pub struct Balance {
    /// Cluster load in basis points.
    pub avg_bp: u64,
    /// Moves still allowed off each chunk this round, indexed by `cid - 1`.
    budget: Vec<u32>,
}

/// Rule §5.3 bounded rebalance: a chunk above the cluster load by more than
/// `gap_bp` sheds at most the extents that bring it back to the cluster
/// load, and never more than `cap` per round.
pub fn moves_from_load_gap(
    used: u64,
    valid: u64,
    avg_bp: u64,
    gap_bp: u32,
    extent_bytes: u64,
    cap: u32,
) -> u32 {
    if valid == 0 || extent_bytes == 0 {
        return 0;
    }
    let target = u128::from(valid) * u128::from(avg_bp) / 10_000;
    let threshold = u128::from(valid) * (u128::from(avg_bp) + u128::from(gap_bp)) / 10_000;
    let used = u128::from(used);
    if used <= threshold {
        return 0;
    }
    let excess = used - target;
    let n = excess.div_ceil(u128::from(extent_bytes));
    u32::try_from(n).unwrap_or(u32::MAX).min(cap)
}

impl Balance {
    pub fn new(ctx: &Ctx<'_>, gap_bp: u32, cap: u32) -> Balance {
        let state = ctx.state;
        if ctx.mode < LoadMode::Medium {
            return Balance::default();
        }
        let avg_bp = state.cluster_load().map_or(0, |r| r.basis_points());
        let budget = state
            .chunks()
            .map(|c| {
                moves_from_load_gap(
                    ctx.loads.used(c.cid),
                    ctx.loads.valid(c.cid),
                    avg_bp,
                    gap_bp,
                    EXTENT_SIZE_BYTES,
                    cap,
                )
            })
            .collect();
        Balance { avg_bp, budget }
    }

    pub fn budget(&self, cid: Cid) -> u32 {
        (cid as usize)
            .checked_sub(1)
            .and_then(|i| self.budget.get(i))
            .copied()
            .unwrap_or(0)
    }

    pub fn spend(&mut self, cid: Cid) {
        if let Some(b) = (cid as usize)
            .checked_sub(1)
            .and_then(|i| self.budget.get_mut(i))
        {
            *b = b.saturating_sub(1);
        }
    }
}

/// Rank of the replica a capacity move takes off its chunk: hottest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapacityReplaceKey {
    pub load_bp: Reverse<Option<u64>>,
    pub cid: Cid,
}

/// Rank of a capacity move's destination: least loaded first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapacityDstKey {
    pub load_bp: Option<u64>,
    pub cid: Cid,
}

/// Rule §5.3 medium/high load: move a replica off a chunk whose load gap
/// allows it (hottest first) to the least loaded qualifying chunk below the
/// cluster load. Never the prefer-local replica, never the owner.
pub fn capacity_move(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
) -> Option<Move> {
    capacity_move_observed(m, pid, volume, ext, &mut NoObserve)
}

/// [`capacity_move`], reporting its decisions to `o`.
pub fn capacity_move_observed<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Option<Move> {
    o.rule(Why::Capacity, false);
    let r = capacity(m, pid, volume, ext, o);
    end_rule(o, r).ok()
}

fn capacity<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Result<Move, RuleOutcome> {
    let mut sources: Vec<(CapacityReplaceKey, Cid)> = Vec::new();
    for c in ext.loc.alive_loc() {
        if m.balance.budget(c) == 0 {
            o.replace(c, Err(ReplaceReject::NoLoadGap));
            continue;
        }
        if let Err(why) = replace_check(m, pid, volume, ext, c, false) {
            o.replace(c, Err(why));
            continue;
        }
        let key = CapacityReplaceKey {
            load_bp: Reverse(m.ctx.loads.ratio(c).map(|r| r.basis_points())),
            cid: c,
        };
        o.replace(c, Ok(ReplaceScore::Capacity(key)));
        sources.push((key, c));
    }
    if sources.is_empty() {
        return Err(RuleOutcome::NoReplace);
    }
    sources.sort_by_key(|&(k, _)| k);
    for (_, replace) in sources {
        let dst = best_dst(
            m,
            ext,
            replace,
            |d| {
                let load = m.ctx.loads.ratio(d);
                let below = load.is_some_and(|r| r.basis_points() < m.balance.avg_bp);
                if !below {
                    return Err(DstReject::NotBelowClusterLoad);
                }
                move_shape(
                    m,
                    volume,
                    ext,
                    Move {
                        dst: d,
                        replace,
                        why: Why::Capacity,
                    },
                )
            },
            |d| CapacityDstKey {
                load_bp: m.ctx.loads.ratio(d).map(|r| r.basis_points()),
                cid: d,
            },
            o,
        );
        if let Some((_, dst)) = dst {
            return Ok(Move {
                dst,
                replace,
                why: Why::Capacity,
            });
        }
    }
    Err(RuleOutcome::NoDst)
}

/// Replicas of one volume per chunk, indexed by `cid - 1`.
pub fn volume_replica_counts(state: &State, volume: &Volume) -> Vec<u32> {
    let mut n = vec![0u32; state.chunks().len()];
    for e in &volume.extents {
        for c in e.loc.alive_loc() {
            if let Some(x) = (c as usize).checked_sub(1).and_then(|i| n.get_mut(i)) {
                *x += 1;
            }
        }
    }
    n
}

/// Rank of the replica an even-volume move drops: the chunk holding the
/// most of the volume's replicas first (the largest key wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvenReplaceKey {
    pub count: u32,
    pub cid: Reverse<Cid>,
}

/// Rank of an even-volume move's destination, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvenDstKey {
    /// The volume's replicas on the chunk.
    pub count: u32,
    pub load_bp: Option<u64>,
    pub cid: Cid,
}

/// Rule §5.3 even volumes: when a chunk holds at least two more of the
/// volume's replicas than some qualifying chunk, move one of this extent's
/// replicas from the fullest such chunk to the emptiest one.
pub fn even_volume_move(
    m: &MigrateCtx<'_, '_>,
    counts: &[u32],
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
) -> Option<Move> {
    even_volume_move_observed(m, counts, pid, volume, ext, &mut NoObserve)
}

/// [`even_volume_move`], reporting its decisions to `o`.
pub fn even_volume_move_observed<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    counts: &[u32],
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Option<Move> {
    o.rule(Why::EvenVolume, false);
    let r = even_volume(m, counts, pid, volume, ext, o);
    end_rule(o, r).ok()
}

fn even_volume<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    counts: &[u32],
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Result<Move, RuleOutcome> {
    if !volume.even {
        return Err(RuleOutcome::NotApplicable("not an even volume"));
    }
    let count = |c: Cid| {
        (c as usize)
            .checked_sub(1)
            .and_then(|i| counts.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut chosen: Option<(EvenReplaceKey, Cid)> = None;
    for c in ext.loc.alive_loc() {
        if let Err(why) = replace_check(m, pid, volume, ext, c, false) {
            o.replace(c, Err(why));
            continue;
        }
        let key = EvenReplaceKey {
            count: count(c),
            cid: Reverse(c),
        };
        o.replace(c, Ok(ReplaceScore::Even(key)));
        if chosen.is_none_or(|(k, _)| key >= k) {
            chosen = Some((key, c));
        }
    }
    let (_, replace) = chosen.ok_or(RuleOutcome::NoReplace)?;
    let (_, dst) = best_dst(
        m,
        ext,
        replace,
        |d| {
            if count(d).saturating_add(1) >= count(replace) {
                return Err(DstReject::NotEmptier);
            }
            move_shape(
                m,
                volume,
                ext,
                Move {
                    dst: d,
                    replace,
                    why: Why::EvenVolume,
                },
            )
        },
        |d| EvenDstKey {
            count: count(d),
            load_bp: m.ctx.loads.ratio(d).map(|r| r.basis_points()),
            cid: d,
        },
        o,
    )
    .ok_or(RuleOutcome::NoDst)?;
    Ok(Move {
        dst,
        replace,
        why: Why::EvenVolume,
    })
}

/// Copy source of a migration: the owner when it holds an alive replica
/// (the §5.2 owner rule), else the replica being replaced when it is
/// healthy and fast, else another alive non-failslow replica, else any.
pub fn choose_migrate_src(state: &State, ext: &Extent, replace: Cid) -> Option<Cid> {
    let alive = |c: Cid| ext.loc.is_alive(c) && can_serve(state, c);
    if ext.lease_owner != 0 && alive(ext.lease_owner) {
        return Some(ext.lease_owner);
    }
    if alive(replace) && !is_failslow(state, replace) {
        return Some(replace);
    }
    ext.loc
        .alive_loc()
        .filter(|&c| alive(c))
        .min_by_key(|&c| is_failslow(state, c))
}

/// Turns a move into a command: source, owner (no owner, no command),
/// owner rule, source slot.
pub fn migrate_command(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    ext: &Extent,
    mv: Move,
    mode: Mode,
) -> Result<SchedCmd, NoPlan> {
    migrate_command_observed(m, pid, ext, mv, mode, &mut NoObserve)
}

/// [`migrate_command`], reporting the owner decision to `o`.
pub fn migrate_command_observed<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    ext: &Extent,
    mv: Move,
    mode: Mode,
    o: &mut O,
) -> Result<SchedCmd, NoPlan> {
    let src = choose_migrate_src(m.state(), ext, mv.replace).ok_or(NoPlan::NoAliveReplica)?;
    let Some((owner, owner_from)) = allocate_owner(m.ctx, ext, src, mv.dst) else {
        o.owner(src, mv.dst, None, src);
        return Err(NoPlan::NoOwner);
    };
    let chosen_src = src;
    let src = src_follows_owner(ext, src, mv.dst, owner);
    o.owner(chosen_src, mv.dst, Some((owner, owner_from)), src);
    if !m.slots.has_free_slot(src, SlotKind::MigrateSrc)
        || !m.slots.has_free_slot(mv.dst, SlotKind::MigrateDst)
    {
        return Err(NoPlan::SlotsBusy);
    }
    Ok(SchedCmd {
        id: 0,
        kind: Kind::Migrate,
        pid,
        generation: ext.generation,
        src,
        dst: mv.dst,
        replace: Some(mv.replace),
        owner,
        owner_from,
        mode,
        why: mv.why,
        bytes: EXTENT_SIZE_BYTES,
    })
}

/// One extent's automatic migration, rules in order (see module docs).
pub fn plan_migrate_extent(
    m: &MigrateCtx<'_, '_>,
    even_counts: Option<&[u32]>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
) -> Result<SchedCmd, NoPlan> {
    plan_migrate_extent_observed(m, even_counts, pid, volume, ext, &mut NoObserve)
}

/// [`plan_migrate_extent`], reporting every rule it tries and every
/// candidate each rule weighs to `o` (`cairn sched explain`).
pub fn plan_migrate_extent_observed<O: Observe>(
    m: &MigrateCtx<'_, '_>,
    even_counts: Option<&[u32]>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Result<SchedCmd, NoPlan> {
    if ext.loc.alive_count() < usize::from(ext.expected_replicas) {
        return Err(NoPlan::NotNeeded); // recover's business
    }
    let mut last = NoPlan::NotNeeded;
    let mut found = topology_safety_move_observed(m, pid, volume, ext, o);
    if found.is_none() {
        found = stretched_gather_move_observed(m, pid, volume, ext, o);
    }
    if found.is_none() {
        if m.ctx.mode == LoadMode::Low {
            match locality_move_observed(m, pid, volume, ext, o) {
                Ok(mv) => found = Some(mv),
                Err(e) => last = e,
            }
        } else {
            found = capacity_move_observed(m, pid, volume, ext, o);
        }
    }
    if found.is_none() {
        if let Some(counts) = even_counts {
            found = even_volume_move_observed(m, counts, pid, volume, ext, o);
        }
    }
    match found {
        Some(mv) => migrate_command_observed(m, pid, ext, mv, Mode::Auto, o),
        None => Err(last),
    }
}
