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

use cairn_state::{Cid, Extent, LoadMode, Pid, State, Volume, EXTENT_SIZE_BYTES};

use crate::cmd::{DstReject, Kind, Mode, NoPlan, SchedCmd, Why};
use crate::manual::Pins;
use crate::rules::{
    allocate_owner, can_serve, dst_chunk_filter, is_failslow, keeps_topology_safety,
    min_distance_to, src_follows_owner, topology_safety, Ctx,
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
    cid != ext.prefer_cid
        && (allow_owner || cid != ext.lease_owner)
        && !m.pins.is_pinned(pid, volume.id, cid, m.now_ms)
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
    let state = m.state();
    ext.loc
        .alive_loc()
        .filter(|c| !expected.contains(c))
        .filter(|&c| may_replace(m, pid, volume, ext, c, allow_owner))
        .min_by_key(|&c| {
            (
                !is_failslow(state, c),
                state
                    .chunk(c)
                    .is_some_and(|k| k.state == cairn_state::ChunkState::Registered),
                Reverse(m.ctx.loads.ratio(c).map(|r| r.basis_points())),
                Reverse(c),
            )
        })
}

/// Both shared filters of every automatic move.
fn move_keeps_shape(m: &MigrateCtx<'_, '_>, volume: &Volume, ext: &Extent, mv: Move) -> bool {
    let before: Vec<Cid> = ext.loc.alive_loc().collect();
    let mut after: Vec<Cid> = before
        .iter()
        .copied()
        .filter(|&c| c != mv.replace)
        .collect();
    after.push(mv.dst);
    keeps_topology_safety(m.state(), &before, &after)
        && keeps_stretched_ratio(m.state(), m.ctx.zones, volume, ext, &before, &after)
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
    let p = ext.prefer_cid;
    if p == 0 || ext.loc.is_alive(p) {
        return Err(NoPlan::NotNeeded);
    }
    let keep: Vec<Cid> = ext
        .loc
        .alive_loc()
        .filter(|&c| m.pins.is_pinned(pid, volume.id, c, m.now_ms))
        .collect();
    let expected = expected_distribution(m.ctx, volume, ext, true, &keep);
    let dst = choose_migrate_dst(ext, &expected).ok_or(NoPlan::NotNeeded)?;
    if dst != p {
        return Err(NoPlan::NotNeeded); // a short extent is recover's business
    }
    if !m.slots.has_free_slot(dst, SlotKind::MigrateDst) {
        return Err(NoPlan::SlotsBusy);
    }
    let replace = choose_replace(m, pid, volume, ext, &expected, false).ok_or(NoPlan::NoReplace)?;
    let mv = Move {
        dst,
        replace,
        why: Why::Locality,
    };
    if !move_keeps_shape(m, volume, ext, mv) {
        return Err(NoPlan::NoDst(DstReject::LowersSafety));
    }
    Ok(mv)
}

/// Best destination for a move away from `replace`: qualifying chunk with a
/// free slot holding no replica, passing `accept`, best by `key` (smallest).
fn best_dst<K: Ord>(
    m: &MigrateCtx<'_, '_>,
    ext: &Extent,
    mut accept: impl FnMut(Cid) -> bool,
    mut key: impl FnMut(Cid) -> K,
) -> Option<Cid> {
    m.state()
        .chunks()
        .filter(|c| !ext.loc.contains(c.cid))
        .filter(|c| dst_chunk_filter(m.ctx, c, EXTENT_SIZE_BYTES).is_ok())
        .filter(|c| m.slots.has_free_slot(c.cid, SlotKind::MigrateDst))
        .map(|c| c.cid)
        .filter(|&c| accept(c))
        .min_by_key(|&c| key(c))
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
    let state = m.state();
    let alive: Vec<Cid> = ext.loc.alive_loc().collect();
    if alive.len() < 2 {
        return None;
    }
    let current = topology_safety(state, &alive);
    // Cheap exit for the common case: already as spread as the cluster allows.
    if current.closest() >= m.ctx.best_min_distance(alive.len()) {
        return None;
    }
    let owner_allowed = matches!(m.ctx.mode, LoadMode::Medium | LoadMode::High);
    for allow_owner in [false, true] {
        if allow_owner && !owner_allowed {
            break;
        }
        let mut best: Option<(Reverse<crate::rules::Safety>, Option<u64>, Cid, Cid)> = None;
        for &r in &alive {
            if !may_replace(m, pid, volume, ext, r, allow_owner) {
                continue;
            }
            let rest: Vec<Cid> = alive.iter().copied().filter(|&c| c != r).collect();
            let zone = state.zone_of(r);
            let mut after = rest.clone();
            after.push(0);
            let last = after.len() - 1;
            let d = best_dst(
                m,
                ext,
                |d| m.ctx.zones.is_none() || state.zone_of(d) == zone,
                |d| {
                    after[last] = d;
                    (
                        Reverse(topology_safety(state, &after)),
                        m.ctx.loads.ratio(d).map(|x| x.basis_points()),
                        d,
                    )
                },
            );
            if let Some(d) = d {
                after[last] = d;
                let s = topology_safety(state, &after);
                if s > current {
                    let key = (
                        Reverse(s),
                        m.ctx.loads.ratio(d).map(|x| x.basis_points()),
                        d,
                        r,
                    );
                    if best.as_ref().is_none_or(|b| key < *b) {
                        best = Some(key);
                    }
                }
            }
        }
        if let Some((_, _, dst, replace)) = best {
            return Some(Move {
                dst,
                replace,
                why: Why::TopologySafety,
            });
        }
    }
    None
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
    let zones = m.ctx.zones?;
    let state = m.state();
    let targets = zone_targets(
        zones,
        access_zone(state, zones, volume, ext),
        ext.expected_replicas,
    );
    let alive: Vec<Cid> = ext.loc.alive_loc().collect();
    if alive.len() < usize::from(ext.expected_replicas) {
        return None; // recover first
    }
    let have = zone_counts(state, &targets, &alive);
    let over = targets.iter().zip(have).position(|(t, h)| h > t.1)?;
    let under = targets.iter().zip(have).position(|(t, h)| h < t.1)?;
    let (over_zone, under_zone) = (targets[over].0, targets[under].0);
    let replace = alive
        .iter()
        .copied()
        .filter(|&c| state.zone_of(c) == Some(over_zone))
        .filter(|&c| may_replace(m, pid, volume, ext, c, false))
        .min_by_key(|&r| {
            let rest: Vec<Cid> = alive.iter().copied().filter(|&c| c != r).collect();
            (
                !is_failslow(state, r),
                Reverse(topology_safety(state, &rest)),
                r,
            )
        })?;
    let rest: Vec<Cid> = alive.iter().copied().filter(|&c| c != replace).collect();
    let dst = best_dst(
        m,
        ext,
        |d| {
            state.zone_of(d) == Some(under_zone)
                && move_keeps_shape(
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
        |d| {
            (
                Reverse(min_distance_to(state, d, &rest)),
                m.ctx.loads.ratio(d).map(|x| x.basis_points()),
                d,
            )
        },
    )?;
    Some(Move {
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

/// Rule §5.3 medium/high load: move a replica off a chunk whose load gap
/// allows it (hottest first) to the least loaded qualifying chunk below the
/// cluster load. Never the prefer-local replica, never the owner.
pub fn capacity_move(
    m: &MigrateCtx<'_, '_>,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
) -> Option<Move> {
    let mut sources: Vec<Cid> = ext
        .loc
        .alive_loc()
        .filter(|&c| m.balance.budget(c) > 0)
        .filter(|&c| may_replace(m, pid, volume, ext, c, false))
        .collect();
    sources.sort_by_key(|&c| (Reverse(m.ctx.loads.ratio(c).map(|r| r.basis_points())), c));
    for replace in sources {
        let dst = best_dst(
            m,
            ext,
            |d| {
                m.ctx
                    .loads
                    .ratio(d)
                    .is_some_and(|r| r.basis_points() < m.balance.avg_bp)
                    && move_keeps_shape(
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
            |d| (m.ctx.loads.ratio(d).map(|r| r.basis_points()), d),
        );
        if let Some(dst) = dst {
            return Some(Move {
                dst,
                replace,
                why: Why::Capacity,
            });
        }
    }
    None
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
    if !volume.even {
        return None;
    }
    let count = |c: Cid| {
        (c as usize)
            .checked_sub(1)
            .and_then(|i| counts.get(i))
            .copied()
            .unwrap_or(0)
    };
    let replace = ext
        .loc
        .alive_loc()
        .filter(|&c| may_replace(m, pid, volume, ext, c, false))
        .max_by_key(|&c| (count(c), Reverse(c)))?;
    let dst = best_dst(
        m,
        ext,
        |d| {
            count(d).saturating_add(1) < count(replace)
                && move_keeps_shape(
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
        |d| (count(d), m.ctx.loads.ratio(d).map(|r| r.basis_points()), d),
    )?;
    Some(Move {
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
    let src = choose_migrate_src(m.state(), ext, mv.replace).ok_or(NoPlan::NoAliveReplica)?;
    let (owner, owner_from) = allocate_owner(m.ctx, ext, src, mv.dst).ok_or(NoPlan::NoOwner)?;
    let src = src_follows_owner(ext, src, mv.dst, owner);
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
    if ext.loc.alive_count() < usize::from(ext.expected_replicas) {
        return Err(NoPlan::NotNeeded); // recover's business
    }
    let mut last = NoPlan::NotNeeded;
    let mut found = topology_safety_move(m, pid, volume, ext)
        .or_else(|| stretched_gather_move(m, pid, volume, ext));
    if found.is_none() {
        if m.ctx.mode == LoadMode::Low {
            match locality_move(m, pid, volume, ext) {
                Ok(mv) => found = Some(mv),
                Err(e) => last = e,
            }
        } else {
            found = capacity_move(m, pid, volume, ext);
        }
    }
    if found.is_none() {
        if let Some(counts) = even_counts {
            found = even_volume_move(m, counts, pid, volume, ext);
        }
    }
    match found {
        Some(mv) => migrate_command(m, pid, ext, mv, Mode::Auto),
        None => Err(last),
    }
}
