//! Recover planning for one extent (DOMAIN.md §5.2): choose `src`, `dst`
//! and the lease owner, then apply the owner rule to `src`. The round that
//! walks the queue lives in [`crate::scheduler`].

use std::cmp::Reverse;

use cairn_state::{Cid, Distance, Extent, LoadRatio, Pid, Volume, EXTENT_SIZE_BYTES};

use crate::cmd::{DstReject, Kind, Mode, NoPlan, SchedCmd, Why};
use crate::explain::{NoObserve, Observe, RuleOutcome, Score};
use crate::queue::Band;
use crate::rules::{
    allocate_owner, can_serve, dst_chunk_filter, is_failslow, min_distance_to, src_follows_owner,
    Ctx,
};
use crate::slots::{SlotKind, Slots};
use crate::stretched::zone_short_of_replicas;

/// An extent needs recovery when it has fewer alive replicas than expected
/// and at least one to copy from (with none, only its chunks coming back helps).
pub fn needs_recover(ext: &Extent) -> bool {
    let alive = ext.loc.alive_count();
    alive > 0 && alive < usize::from(ext.expected_replicas)
}

/// Extents down to their last alive replica go first.
pub fn recover_band(ext: &Extent) -> Band {
    if ext.loc.alive_count() <= 1 {
        Band::Urgent
    } else {
        Band::Normal
    }
}

/// Rule §5.2 `src` ranking, smallest first: not failslow, then a free
/// recover-source slot, then the least busy, then `loc` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecoverSrcKey {
    pub failslow: bool,
    pub no_free_slot: bool,
    pub used_slots: u32,
    /// Position among the alive replicas that can serve, in `loc` order.
    pub order: usize,
}

/// Why an alive replica cannot be the copy source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SrcReject {
    /// Its chunk is unknown, removed or has no live session.
    CannotServe,
}

impl SrcReject {
    pub fn describe(self) -> &'static str {
        match self {
            SrcReject::CannotServe => "chunk is unknown, removed or has no live session",
        }
    }
}

/// Rule §5.2 `src`: an alive replica that can serve, preferring one that is
/// not failslow, then one with a free recover-source slot, then the least
/// busy, then `loc` order.
pub fn choose_recover_src(ctx: &Ctx<'_>, slots: &Slots, ext: &Extent) -> Result<Cid, NoPlan> {
    choose_recover_src_observed(ctx, slots, ext, &mut NoObserve)
}

/// [`choose_recover_src`], reporting every alive replica to `o`.
pub fn choose_recover_src_observed<O: Observe>(
    ctx: &Ctx<'_>,
    slots: &Slots,
    ext: &Extent,
    o: &mut O,
) -> Result<Cid, NoPlan> {
    let mut best: Option<(RecoverSrcKey, Cid)> = None;
    let mut order = 0;
    for c in ext.loc.alive_loc() {
        if !can_serve(ctx.state, c) {
            o.src(c, Err(SrcReject::CannotServe));
            continue;
        }
        let key = RecoverSrcKey {
            failslow: is_failslow(ctx.state, c),
            no_free_slot: !slots.has_free_slot(c, SlotKind::RecoverSrc),
            used_slots: slots.used(c, SlotKind::RecoverSrc),
            order,
        };
        order += 1;
        o.src(c, Ok(key));
        if best.is_none_or(|(k, _)| key < k) {
            best = Some((key, c));
        }
    }
    best.map(|(_, c)| c).ok_or(NoPlan::NoAliveReplica)
}

/// Rule §5.2 `dst` ranking, smallest first (the field order is the
/// preference order; the cid ends every tie).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecoverDstKey {
    /// Stretched cluster: outside the zone short of replicas. Such chunks
    /// are taken only when none in that zone qualifies (redundancy first).
    pub outside_zone: bool,
    /// False on the prefer-local chunk, which sorts first.
    pub not_prefer_local: bool,
    /// Racked chunks first (unracked ones are a last resort).
    pub unracked: bool,
    /// Distance to the nearest alive replica, farther first (topology safety).
    pub distance: Reverse<Distance>,
    /// Load ratio counting the copies in flight, lower first.
    pub load: Option<LoadRatio>,
    pub cid: Cid,
}

/// Rule §5.2 `dst`: a chunk holding no replica that passes the placement
/// filters (in service, session, not failslow, space, not ultra-high after
/// the copy) and, in a stretched cluster, sits in the zone short of
/// replicas (any zone if that one has no candidate: redundancy first).
/// Preference: the prefer-local chunk, then racked chunks, then the
/// farthest from the alive replicas (topology safety), then lowest load,
/// then lowest cid. Among those, the best one with a free slot, unless a
/// busy chunk ranked before it shares no rack with an alive replica and is
/// farther from them: then the extent waits ([`NoPlan::SlotsBusy`], it
/// stays queued) for that chunk's slot instead of lowering topology safety.
/// With no such chunk at all (fewer racks than replicas), the best free one.
pub fn choose_recover_dst(
    ctx: &Ctx<'_>,
    slots: &Slots,
    volume: &Volume,
    ext: &Extent,
) -> Result<Cid, NoPlan> {
    choose_recover_dst_observed(ctx, slots, volume, ext, &mut NoObserve)
}

/// A destination is *safe* when it shares no rack with an alive replica
/// (another rack of the zone, or another zone); returns the index of
/// `busy_safe` that tracks its distance. Waiting for such a chunk's slot saves the
/// topology-safety migration that a replica put next to another one would
/// need later (DOMAIN.md §5.2 "respects topology safety").
fn safe_class(d: Distance) -> Option<usize> {
    match d {
        Distance::SameZone => Some(0),
        Distance::OtherZone => Some(1),
        Distance::SameChunk | Distance::SameBrick | Distance::SameRack => None,
    }
}

/// The busy chunk the extent waits for, if any: the best-ranked busy safe
/// candidate that ranks before `pick` (the best free one) and is farther
/// from the alive replicas than `pick`. Taking `pick` would put the replica
/// nearer to another one than the ranking wants, and a migration would
/// then move it again. A safer chunk ranked *after* `pick` lost on an
/// earlier preference (zone, prefer-local, racked), which slots do not
/// change; with no safe candidate at all (fewer racks than replicas)
/// nothing waits and the best free chunk is taken, as before.
fn waits_for_safer(
    pick: &RecoverDstKey,
    busy_safe: &[Option<RecoverDstKey>],
) -> Option<RecoverDstKey> {
    busy_safe
        .iter()
        .flatten()
        .filter(|b| *b < pick && b.distance.0 > pick.distance.0)
        .min()
        .copied()
}

/// [`choose_recover_dst`], reporting every chunk's verdict to `o`, in the
/// order the checks run: holds a replica, placement filters, free slot;
/// a chunk that passes them all is reported with its [`RecoverDstKey`].
/// When the extent waits for a safer busy chunk, the best free one is
/// reported as the search's best, then dropped with
/// [`DstReject::SaferChunkBusy`].
pub fn choose_recover_dst_observed<O: Observe>(
    ctx: &Ctx<'_>,
    slots: &Slots,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Result<Cid, NoPlan> {
    let state = ctx.state;
    let alive: Vec<Cid> = ext.loc.alive_loc().collect();
    let zone = ctx
        .zones
        .and_then(|z| zone_short_of_replicas(state, z, volume, ext));
    let mut deepest: Option<DstReject> = None;
    let mut best: Option<RecoverDstKey> = None;
    // The best-ranked busy candidate of each safe distance (another rack
    // of the zone, another zone): a slot decides only among chunks that
    // are as safe, so the ranking must see the busy ones too.
    let mut busy_safe: [Option<RecoverDstKey>; 2] = [None, None];
    let mut slots_busy = false;
    o.dst_search(None);
    for chunk in state.chunks() {
        let cid = chunk.cid;
        if ext.loc.contains(cid) {
            o.dst(cid, Err(DstReject::HoldsReplica));
            continue;
        }
        if let Err(r) = dst_chunk_filter(ctx, chunk, EXTENT_SIZE_BYTES) {
            deepest = deepest.max(Some(r));
            o.dst(cid, Err(r));
            continue;
        }
        let key = RecoverDstKey {
            outside_zone: zone.is_some_and(|z| state.zone_of(cid) != Some(z)),
            not_prefer_local: ext.prefer_cid != cid,
            unracked: state.rack_of(cid).is_none(),
            distance: Reverse(min_distance_to(state, cid, &alive)),
            load: ctx.loads.ratio(cid),
            cid,
        };
        if !slots.has_free_slot(cid, SlotKind::RecoverDst) {
            slots_busy = true;
            if let Some(b) = safe_class(key.distance.0).and_then(|i| busy_safe.get_mut(i)) {
                if b.is_none_or(|k| key < k) {
                    *b = Some(key);
                }
            }
            o.dst(cid, Err(DstReject::NoFreeSlot));
            continue;
        }
        o.dst(cid, Ok(Score::Recover(key)));
        if best.is_none_or(|k| key < k) {
            best = Some(key);
        }
    }
    o.dst_best(best.map(|k| k.cid));
    match best {
        Some(k) => match waits_for_safer(&k, &busy_safe) {
            Some(safer) => {
                o.dst_dropped(DstReject::SaferChunkBusy(safer.cid));
                Err(NoPlan::SlotsBusy)
            }
            None => Ok(k.cid),
        },
        None if slots_busy => Err(NoPlan::SlotsBusy),
        None => Err(NoPlan::NoDst(deepest.unwrap_or(DstReject::HoldsReplica))),
    }
}

/// One extent's recover command (id 0: the scheduler numbers it), or why
/// there is none. Order: src, dst, owner (no owner, no command), then the
/// owner rule may move `src` to the owner, whose slot must then be free.
pub fn plan_recover_extent(
    ctx: &Ctx<'_>,
    slots: &Slots,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
) -> Result<SchedCmd, NoPlan> {
    plan_recover_extent_observed(ctx, slots, pid, volume, ext, &mut NoObserve)
}

/// [`plan_recover_extent`], reporting every decision to `o`
/// (`cairn sched explain`); with [`NoObserve`] it is the same code.
pub fn plan_recover_extent_observed<O: Observe>(
    ctx: &Ctx<'_>,
    slots: &Slots,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Result<SchedCmd, NoPlan> {
    if !needs_recover(ext) {
        return Err(if ext.loc.alive_count() == 0 {
            NoPlan::NoAliveReplica
        } else {
            NoPlan::NotNeeded
        });
    }
    o.rule(Why::MissingReplica, false);
    let planned = recover_command(ctx, slots, pid, volume, ext, o);
    o.rule_end(match planned {
        Ok(cmd) => RuleOutcome::Chosen {
            dst: cmd.dst,
            replace: None,
        },
        Err(e) => RuleOutcome::Failed(e),
    });
    planned
}

fn recover_command<O: Observe>(
    ctx: &Ctx<'_>,
    slots: &Slots,
    pid: Pid,
    volume: &Volume,
    ext: &Extent,
    o: &mut O,
) -> Result<SchedCmd, NoPlan> {
    let src = choose_recover_src_observed(ctx, slots, ext, o)?;
    let dst = choose_recover_dst_observed(ctx, slots, volume, ext, o)?;
    let owner = allocate_owner(ctx, ext, src, dst);
    let Some((owner, owner_from)) = owner else {
        o.owner(src, dst, None, src);
        return Err(NoPlan::NoOwner);
    };
    let chosen_src = src;
    let src = src_follows_owner(ext, src, dst, owner);
    o.owner(chosen_src, dst, Some((owner, owner_from)), src);
    if !slots.has_free_slot(src, SlotKind::RecoverSrc) {
        return Err(NoPlan::SlotsBusy);
    }
    Ok(SchedCmd {
        id: 0,
        kind: Kind::Recover,
        pid,
        generation: ext.generation,
        src,
        dst,
        replace: None,
        owner,
        owner_from,
        mode: Mode::Auto,
        why: Why::MissingReplica,
        bytes: EXTENT_SIZE_BYTES,
    })
}
