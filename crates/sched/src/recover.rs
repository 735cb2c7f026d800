//! Recover planning for one extent (DOMAIN.md §5.2): choose `src`, `dst`
//! and the lease owner, then apply the owner rule to `src`. The round that
//! walks the queue lives in [`crate::scheduler`].

use std::cmp::Reverse;

use cairn_state::{Cid, Extent, Pid, Volume, EXTENT_SIZE_BYTES};

use crate::cmd::{DstReject, Kind, Mode, NoPlan, SchedCmd, Why};
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

/// Rule §5.2 `src`: an alive replica that can serve, preferring one that is
/// not failslow, then one with a free recover-source slot, then the least
/// busy, then `loc` order.
pub fn choose_recover_src(ctx: &Ctx<'_>, slots: &Slots, ext: &Extent) -> Result<Cid, NoPlan> {
    ext.loc
        .alive_loc()
        .filter(|&c| can_serve(ctx.state, c))
        .enumerate()
        .min_by_key(|&(i, c)| {
            (
                is_failslow(ctx.state, c),
                !slots.has_free_slot(c, SlotKind::RecoverSrc),
                slots.used(c, SlotKind::RecoverSrc),
                i,
            )
        })
        .map(|(_, c)| c)
        .ok_or(NoPlan::NoAliveReplica)
}

/// Rule §5.2 `dst`: a chunk holding no replica that passes the placement
/// filters (in service, session, not failslow, space, not ultra-high after
/// the copy) and, in a stretched cluster, sits in the zone short of
/// replicas (any zone if that one has no candidate: redundancy first).
/// Preference: the prefer-local chunk, then racked chunks, then the
/// farthest from the alive replicas (topology safety), then lowest load,
/// then lowest cid. Among those, the best one with a free slot.
pub fn choose_recover_dst(
    ctx: &Ctx<'_>,
    slots: &Slots,
    volume: &Volume,
    ext: &Extent,
) -> Result<Cid, NoPlan> {
    let state = ctx.state;
    let alive: Vec<Cid> = ext.loc.alive_loc().collect();
    let zone = ctx
        .zones
        .and_then(|z| zone_short_of_replicas(state, z, volume, ext));
    let mut deepest: Option<DstReject> = None;
    let mut best: [Option<(DstKey, Cid)>; 2] = [None, None]; // [in the right zone, any zone]
    let mut slots_busy = false;
    for chunk in state.chunks() {
        let cid = chunk.cid;
        if ext.loc.contains(cid) {
            continue;
        }
        if let Err(r) = dst_chunk_filter(ctx, chunk, EXTENT_SIZE_BYTES) {
            deepest = deepest.max(Some(r));
            continue;
        }
        if !slots.has_free_slot(cid, SlotKind::RecoverDst) {
            slots_busy = true;
            continue;
        }
        let key: DstKey = (
            ext.prefer_cid != cid,
            state.rack_of(cid).is_none(),
            Reverse(min_distance_to(state, cid, &alive)),
            ctx.loads.ratio(cid),
            cid,
        );
        let in_zone = zone.is_none_or(|z| state.zone_of(cid) == Some(z));
        for (i, b) in best.iter_mut().enumerate() {
            if (i == 1 || in_zone) && b.as_ref().is_none_or(|(k, _)| key < *k) {
                *b = Some((key, cid));
            }
        }
    }
    match best {
        [Some((_, c)), _] | [None, Some((_, c))] => Ok(c),
        [None, None] if slots_busy => Err(NoPlan::SlotsBusy),
        [None, None] => Err(NoPlan::NoDst(deepest.unwrap_or(DstReject::HoldsReplica))),
    }
}

type DstKey = (
    bool,
    bool,
    Reverse<cairn_state::Distance>,
    Option<cairn_state::LoadRatio>,
    Cid,
);

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
    if !needs_recover(ext) {
        return Err(if ext.loc.alive_count() == 0 {
            NoPlan::NoAliveReplica
        } else {
            NoPlan::NotNeeded
        });
    }
    let src = choose_recover_src(ctx, slots, ext)?;
    let dst = choose_recover_dst(ctx, slots, volume, ext)?;
    let (owner, owner_from) = allocate_owner(ctx, ext, src, dst).ok_or(NoPlan::NoOwner)?;
    let src = src_follows_owner(ext, src, dst, owner);
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
