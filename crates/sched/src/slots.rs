//! Command slots per chunk (DOMAIN.md §5.5): separate limits for recover and
//! migrate, as source and as destination.
//!
//! Static policy: every chunk gets the configured limit, checked against the
//! ceiling. Elastic policy: each chunk's limit follows how fast its commands
//! finish: a quick finish raises it by one, a slow one (or a timeout) halves
//! it, so a slow disk lowers only its own chunk's limit and its commands stop
//! reaching the timeout, while fast chunks climb to the ceiling (recovery is
//! incremental today, so full-copy-era limits are too low).

use cairn_state::Cid;
use thiserror::Error;

use crate::cmd::Kind;

/// Largest ceiling accepted (the cluster config has the same bound).
pub const HARD_SLOT_CEILING: u32 = 1_024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlotKind {
    RecoverSrc,
    RecoverDst,
    MigrateSrc,
    MigrateDst,
}

impl SlotKind {
    pub const ALL: [SlotKind; 4] = [
        SlotKind::RecoverSrc,
        SlotKind::RecoverDst,
        SlotKind::MigrateSrc,
        SlotKind::MigrateDst,
    ];

    pub fn src(kind: Kind) -> SlotKind {
        match kind {
            Kind::Recover => SlotKind::RecoverSrc,
            Kind::Migrate => SlotKind::MigrateSrc,
        }
    }

    pub fn dst(kind: Kind) -> SlotKind {
        match kind {
            Kind::Recover => SlotKind::RecoverDst,
            Kind::Migrate => SlotKind::MigrateDst,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The static limits (also the starting point of elastic limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLimits {
    pub recover_src: u32,
    pub recover_dst: u32,
    pub migrate_src: u32,
    pub migrate_dst: u32,
    /// No limit, static or elastic, ever exceeds this.
    pub ceiling: u32,
}

impl Default for SlotLimits {
    fn default() -> Self {
        SlotLimits {
            recover_src: 8,
            recover_dst: 8,
            migrate_src: 4,
            migrate_dst: 4,
            ceiling: 64,
        }
    }
}

#[derive(Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    #[error("slot ceiling {ceiling} out of range 1..={HARD_SLOT_CEILING}")]
    BadCeiling { ceiling: u32 },
    #[error("{kind:?} slot limit {limit} out of range 1..={ceiling}")]
    BadLimit {
        kind: SlotKind,
        limit: u32,
        ceiling: u32,
    },
    #[error("elastic policy: min {min} must be in 1..=ceiling and fast_ms {fast_ms} < slow_ms {slow_ms}")]
    BadElastic {
        min: u32,
        fast_ms: u64,
        slow_ms: u64,
    },
    #[error("chunk {cid} has no free {kind:?} slot")]
    Full { cid: Cid, kind: SlotKind },
}

impl SlotLimits {
    /// Static limit validation: each limit in `1..=ceiling`, the ceiling in
    /// `1..=HARD_SLOT_CEILING`.
    pub fn validate(&self) -> Result<(), SlotError> {
        if !(1..=HARD_SLOT_CEILING).contains(&self.ceiling) {
            return Err(SlotError::BadCeiling {
                ceiling: self.ceiling,
            });
        }
        for kind in SlotKind::ALL {
            let limit = self.get(kind);
            if !(1..=self.ceiling).contains(&limit) {
                return Err(SlotError::BadLimit {
                    kind,
                    limit,
                    ceiling: self.ceiling,
                });
            }
        }
        Ok(())
    }

    pub fn get(&self, kind: SlotKind) -> u32 {
        match kind {
            SlotKind::RecoverSrc => self.recover_src,
            SlotKind::RecoverDst => self.recover_dst,
            SlotKind::MigrateSrc => self.migrate_src,
            SlotKind::MigrateDst => self.migrate_dst,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotPolicy {
    /// Every chunk keeps the configured limit.
    Static,
    Elastic(ElasticPolicy),
}

/// Additive increase on fast completions, halving on slow ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElasticPolicy {
    /// A limit never drops below this.
    pub min: u32,
    /// A command finishing within this raises its chunks' limits by one.
    pub fast_ms: u64,
    /// A command taking this long (or timing out) halves them.
    pub slow_ms: u64,
}

impl ElasticPolicy {
    /// Fast below an eighth of the timeout, slow from half of it: a chunk
    /// whose commands take half the timeout is one hiccup away from timing out.
    pub fn for_timeout(timeout_ms: u64) -> ElasticPolicy {
        ElasticPolicy {
            min: 1,
            fast_ms: timeout_ms / 8,
            slow_ms: timeout_ms / 2,
        }
    }
}

impl SlotPolicy {
    pub fn validate(&self, limits: &SlotLimits) -> Result<(), SlotError> {
        match *self {
            SlotPolicy::Static => Ok(()),
            SlotPolicy::Elastic(e) => {
                if e.min == 0 || e.min > limits.ceiling || e.fast_ms >= e.slow_ms {
                    Err(SlotError::BadElastic {
                        min: e.min,
                        fast_ms: e.fast_ms,
                        slow_ms: e.slow_ms,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ChunkSlots {
    used: [u32; 4],
    /// Elastic limits; `None` until the chunk's first observation.
    limit: Option<[u32; 4]>,
}

/// Slot use and limits of every chunk, indexed by `cid - 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slots {
    limits: SlotLimits,
    policy: SlotPolicy,
    chunks: Vec<ChunkSlots>,
}

impl Slots {
    pub fn new(limits: SlotLimits, policy: SlotPolicy) -> Result<Slots, SlotError> {
        limits.validate()?;
        policy.validate(&limits)?;
        Ok(Slots {
            limits,
            policy,
            chunks: Vec::new(),
        })
    }

    fn get(&self, cid: Cid) -> ChunkSlots {
        (cid as usize)
            .checked_sub(1)
            .and_then(|i| self.chunks.get(i))
            .copied()
            .unwrap_or_default()
    }

    fn get_mut(&mut self, cid: Cid) -> Option<&mut ChunkSlots> {
        let i = (cid as usize).checked_sub(1)?;
        if self.chunks.len() <= i {
            self.chunks.resize(i + 1, ChunkSlots::default());
        }
        self.chunks.get_mut(i)
    }

    /// The chunk's current limit for `kind`.
    pub fn limit(&self, cid: Cid, kind: SlotKind) -> u32 {
        match (self.policy, self.get(cid).limit) {
            (SlotPolicy::Elastic(_), Some(l)) => l[kind.index()],
            _ => self.limits.get(kind),
        }
    }

    pub fn used(&self, cid: Cid, kind: SlotKind) -> u32 {
        self.get(cid).used[kind.index()]
    }

    /// Rule §5.5: a chunk takes a command only while it has a free slot of that kind.
    pub fn has_free_slot(&self, cid: Cid, kind: SlotKind) -> bool {
        cid != 0 && self.used(cid, kind) < self.limit(cid, kind)
    }

    pub fn take(&mut self, cid: Cid, kind: SlotKind) -> Result<(), SlotError> {
        if !self.has_free_slot(cid, kind) {
            return Err(SlotError::Full { cid, kind });
        }
        if let Some(c) = self.get_mut(cid) {
            c.used[kind.index()] += 1;
        }
        Ok(())
    }

    /// Counts a command that already runs (a new leader adopting the
    /// copies in the replicated state), even past a limit lowered meanwhile:
    /// the count must match what runs, and a full chunk only blocks new ones.
    pub fn take_adopted(&mut self, cid: Cid, kind: SlotKind) {
        if let Some(c) = self.get_mut(cid) {
            c.used[kind.index()] = c.used[kind.index()].saturating_add(1);
        }
    }

    pub fn release(&mut self, cid: Cid, kind: SlotKind) {
        if let Some(c) = self.get_mut(cid) {
            let u = &mut c.used[kind.index()];
            *u = u.saturating_sub(1);
        }
    }

    /// Rule §5.5 (elastic): a finished command adjusts its chunk's limit by
    /// how long it took. Static policy ignores observations.
    pub fn adapt_limit_to_completion(&mut self, cid: Cid, kind: SlotKind, duration_ms: u64) {
        let SlotPolicy::Elastic(e) = self.policy else {
            return;
        };
        let start = [
            self.limits.recover_src,
            self.limits.recover_dst,
            self.limits.migrate_src,
            self.limits.migrate_dst,
        ];
        let ceiling = self.limits.ceiling;
        let Some(c) = self.get_mut(cid) else {
            return;
        };
        let limits = c.limit.get_or_insert(start);
        let l = &mut limits[kind.index()];
        if duration_ms >= e.slow_ms {
            *l = (*l / 2).max(e.min);
        } else if duration_ms <= e.fast_ms {
            *l = l.saturating_add(1).min(ceiling);
        }
    }

    /// Free slots of `kind` over the given chunks (an early-exit bound for rounds).
    pub fn free_total(&self, cids: impl Iterator<Item = Cid>, kind: SlotKind) -> u64 {
        cids.map(|c| u64::from(self.limit(c, kind).saturating_sub(self.used(c, kind))))
            .sum()
    }
}
