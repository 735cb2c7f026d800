//! Tunables of the recover and migrate planners (DOMAIN.md §5: "where a rule
//! says default, the value must be a tunable setting").
//!
//! Replicated knobs (slot limits, timeout, pause flags, load thresholds) come
//! from [`ClusterConfig`]; the rest are leader-local planner settings.

use cairn_state::ClusterConfig;
use thiserror::Error;

use crate::slots::{SlotError, SlotLimits, SlotPolicy};

/// Default command timeout (DOMAIN.md §5.2: 18 minutes).
pub const DEFAULT_TIMEOUT_MS: u64 = 18 * 60 * 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedConfig {
    /// A running recover command older than this is dropped and re-planned.
    pub recover_timeout_ms: u64,
    /// Same for migrate commands.
    pub migrate_timeout_ms: u64,
    pub recover_paused: bool,
    pub migrate_paused: bool,
    pub slots: SlotLimits,
    pub slot_policy: SlotPolicy,
    /// Upper bound of migrations issued in one round, whatever the load gap.
    pub max_moves_per_round: u32,
    /// Capacity rebalance starts when a chunk's load exceeds the cluster's by this (basis points).
    pub balance_gap_bp: u32,
    /// Extents the migrate scan looks at per round (it resumes where it stopped).
    pub migrate_scan_budget: u64,
    /// A queue walk stops after this many entries in a row could not be
    /// issued (their chunks' slots are busy): bounds a round's cost when
    /// free slots sit on chunks no queued extent can use.
    pub walk_patience: u64,
    /// Most entries one queue holds (a bound on memory; full = refuse, never grow).
    pub queue_capacity: usize,
    /// How long a manual migrate or a gather keeps the replica it placed from
    /// being moved by the automatic planner.
    pub pin_ms: u64,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            recover_timeout_ms: DEFAULT_TIMEOUT_MS,
            migrate_timeout_ms: DEFAULT_TIMEOUT_MS,
            recover_paused: false,
            migrate_paused: false,
            slots: SlotLimits::default(),
            slot_policy: SlotPolicy::Static,
            max_moves_per_round: 64,
            balance_gap_bp: 1_000,
            migrate_scan_budget: 1 << 20,
            walk_patience: 4_096,
            queue_capacity: 4 << 20,
            pin_ms: 24 * 3_600_000,
        }
    }
}

#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum SchedConfigError {
    #[error(transparent)]
    Slots(#[from] SlotError),
    #[error("{name} must be at least 1, got {value}")]
    Zero { name: &'static str, value: u64 },
}

impl SchedConfig {
    /// The planner settings that follow the replicated cluster config.
    pub fn from_cluster(c: &ClusterConfig) -> Result<SchedConfig, SchedConfigError> {
        let cfg = SchedConfig {
            recover_timeout_ms: c.recover_timeout_ms,
            migrate_timeout_ms: c.recover_timeout_ms,
            recover_paused: c.recover_paused,
            migrate_paused: c.migrate_paused,
            slots: SlotLimits {
                recover_src: c.recover_src_slots,
                recover_dst: c.recover_dst_slots,
                migrate_src: c.migrate_src_slots,
                migrate_dst: c.migrate_dst_slots,
                ceiling: c.slot_ceiling,
            },
            ..SchedConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), SchedConfigError> {
        self.slots.validate()?;
        self.slot_policy.validate(&self.slots)?;
        for (name, value) in [
            ("recover_timeout_ms", self.recover_timeout_ms),
            ("migrate_timeout_ms", self.migrate_timeout_ms),
            ("max_moves_per_round", u64::from(self.max_moves_per_round)),
            ("migrate_scan_budget", self.migrate_scan_budget),
            ("queue_capacity", self.queue_capacity as u64),
            ("walk_patience", self.walk_patience),
        ] {
            if value == 0 {
                return Err(SchedConfigError::Zero { name, value });
            }
        }
        Ok(())
    }
}
