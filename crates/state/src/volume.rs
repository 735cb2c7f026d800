//! Volumes and their physical extents.
//!
//! Memory matters here (millions of extents): a volume owns one contiguous
//! pid range and keeps its extents in a `Vec` indexed by `pid - first_pid`,
//! and `loc` is an inline array with `alive_loc` as a bit mask over it, so an
//! extent is one fixed-size record with no heap allocation of its own, and
//! `alive_loc ⊆ loc` holds by construction.

use serde::{Deserialize, Serialize};

use crate::config::Provisioning;
use crate::error::LocError;
use crate::{Cid, Pid, TopoId, VolumeId, MAX_LOC};

/// Ordered replica locations plus which of them are alive.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    cids: [Cid; MAX_LOC],
    len: u8,
    /// Bit i set = `cids[i]` is in `alive_loc`.
    alive: u8,
}

impl Loc {
    /// Structural checks only (length, duplicates, alive ⊆ loc). Whether the
    /// chunks exist and may hold replicas is checked by the caller.
    pub fn new(loc: &[Cid], alive_loc: &[Cid]) -> Result<Loc, LocError> {
        if loc.is_empty() {
            return Err(LocError::Empty);
        }
        if loc.len() > MAX_LOC {
            return Err(LocError::TooLong {
                len: loc.len(),
                max: MAX_LOC,
            });
        }
        let mut cids = [0; MAX_LOC];
        for (i, &cid) in loc.iter().enumerate() {
            if cid == 0 {
                return Err(LocError::UnknownChunk(0));
            }
            if loc[..i].contains(&cid) {
                return Err(LocError::Duplicate(cid));
            }
            cids[i] = cid;
        }
        let mut alive = 0u8;
        for &cid in alive_loc {
            let i = loc
                .iter()
                .position(|&c| c == cid)
                .ok_or(LocError::AliveNotInLoc(cid))?;
            if alive & (1 << i) != 0 {
                return Err(LocError::Duplicate(cid));
            }
            alive |= 1 << i;
        }
        Ok(Loc {
            cids,
            len: loc.len() as u8,
            alive,
        })
    }

    pub fn cids(&self) -> &[Cid] {
        &self.cids[..usize::from(self.len).min(MAX_LOC)]
    }

    /// `alive_loc`, in `loc` order.
    pub fn alive_loc(&self) -> impl Iterator<Item = Cid> + '_ {
        self.cids()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.alive & (1 << i) != 0)
            .map(|(_, &c)| c)
    }

    pub fn alive_count(&self) -> usize {
        self.alive.count_ones() as usize
    }

    pub fn contains(&self, cid: Cid) -> bool {
        self.cids().contains(&cid)
    }

    pub fn is_alive(&self, cid: Cid) -> bool {
        self.cids()
            .iter()
            .position(|&c| c == cid)
            .is_some_and(|i| self.alive & (1 << i) != 0)
    }

    /// Removes `cid` from `alive_loc`; true if it was there.
    pub(crate) fn mark_dead(&mut self, cid: Cid) -> bool {
        match self.cids().iter().position(|&c| c == cid) {
            Some(i) if self.alive & (1 << i) != 0 => {
                self.alive &= !(1 << i);
                true
            }
            _ => false,
        }
    }

    /// Invariant check for restored snapshots (a decoded Loc bypasses `new`).
    pub(crate) fn well_formed(&self) -> bool {
        let len = usize::from(self.len);
        (1..=MAX_LOC).contains(&len)
            && u32::from(self.alive) >> len == 0
            && self.cids[len..].iter().all(|&c| c == 0)
            && self.cids[..len]
                .iter()
                .enumerate()
                .all(|(i, c)| *c != 0 && !self.cids[..i].contains(c))
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Extent {
    /// Bumped by every change to loc, alive_loc or lease_owner.
    pub generation: u64,
    pub loc: Loc,
    /// 0 = none.
    pub lease_owner: Cid,
    /// 0 = none.
    pub prefer_cid: Cid,
    pub expected_replicas: u8,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Volume {
    pub id: VolumeId,
    pub name: String,
    pub size_bytes: u64,
    pub provisioning: Provisioning,
    pub replicas: u8,
    /// 0 = none.
    pub prefer_cid: Cid,
    pub even: bool,
    /// 0 = none (use the cluster's default).
    pub preferred_zone: TopoId,
    /// Pids of this volume are `first_pid .. first_pid + extents.len()`.
    pub first_pid: Pid,
    pub extents: Vec<Extent>,
}

impl Volume {
    /// Saturates instead of overflowing; `check_invariants` refuses a
    /// volume whose range would overflow, so in a valid state it is exact.
    pub fn pids(&self) -> std::ops::Range<Pid> {
        self.first_pid..self.first_pid.saturating_add(self.extents.len() as u64)
    }

    pub fn extent(&self, pid: Pid) -> Option<&Extent> {
        let i = pid.checked_sub(self.first_pid)?;
        self.extents.get(usize::try_from(i).ok()?)
    }

    pub(crate) fn extent_mut(&mut self, pid: Pid) -> Option<&mut Extent> {
        let i = pid.checked_sub(self.first_pid)?;
        self.extents.get_mut(usize::try_from(i).ok()?)
    }
}

/// A read-only view of one extent with its pid and volume.
#[derive(Clone, Copy, Debug)]
pub struct ExtentRef<'a> {
    pub pid: Pid,
    pub volume: &'a Volume,
    pub extent: &'a Extent,
}

impl ExtentRef<'_> {
    pub fn loc(&self) -> &[Cid] {
        self.extent.loc.cids()
    }
    pub fn alive_loc(&self) -> Vec<Cid> {
        self.extent.loc.alive_loc().collect()
    }
    pub fn generation(&self) -> u64 {
        self.extent.generation
    }
    pub fn lease_owner(&self) -> Cid {
        self.extent.lease_owner
    }
    pub fn prefer_cid(&self) -> Cid {
        self.extent.prefer_cid
    }
    pub fn expected_replicas(&self) -> u8 {
        self.extent.expected_replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_keeps_order_and_alive_subset() {
        let l = Loc::new(&[3, 1, 2], &[2, 3]).unwrap();
        assert_eq!(l.cids(), &[3, 1, 2]);
        assert_eq!(l.alive_loc().collect::<Vec<_>>(), vec![3, 2]);
        assert!(l.is_alive(2) && !l.is_alive(1) && !l.is_alive(9));
        assert!(l.well_formed());
    }

    #[test]
    fn loc_rejects_bad_shapes() {
        assert_eq!(Loc::new(&[], &[]), Err(LocError::Empty));
        assert_eq!(Loc::new(&[1, 1], &[]), Err(LocError::Duplicate(1)));
        assert_eq!(Loc::new(&[1, 2], &[3]), Err(LocError::AliveNotInLoc(3)));
        assert_eq!(Loc::new(&[1, 2], &[2, 2]), Err(LocError::Duplicate(2)));
        assert_eq!(Loc::new(&[0], &[]), Err(LocError::UnknownChunk(0)));
        assert!(matches!(
            Loc::new(&[1, 2, 3, 4, 5, 6, 7], &[]),
            Err(LocError::TooLong { .. })
        ));
    }

    #[test]
    fn extent_record_is_small() {
        // The per-extent memory budget is 100 B; the record itself must stay well under it.
        assert!(
            std::mem::size_of::<Extent>() <= 48,
            "{}",
            std::mem::size_of::<Extent>()
        );
    }
}
