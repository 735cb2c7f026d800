//! Replicated cluster configuration.
//!
//! Values are set through `Cmd::SetConfig { key, value }` with string keys so
//! the CLI and the log share one vocabulary. Unknown keys and out-of-range
//! values are rejected; a rejected change leaves the config untouched.
//!
//! Percentages are stored as basis points (1/100 of a percent) so that load
//! maths is exact integer arithmetic: every member computes the same load mode.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Basis points in one whole (100 %).
pub const BP_PER_UNIT: u32 = 10_000;

/// Which space figure counts as "used" in load ratios (DOMAIN.md §3).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provisioning {
    /// Load uses `provisioned_data_space` (what meta promised).
    Thin,
    /// Load uses `allocated_data_space` (what is physically reserved).
    Thick,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClusterConfig {
    /// Below this load ratio a chunk is in low-load mode (default 60 %).
    pub load_low_bp: u32,
    /// Below this: medium (default 85 %).
    pub load_medium_bp: u32,
    /// Below this: high; at or above it: ultra-high (default 95 %).
    pub load_high_bp: u32,
    pub provisioning: Provisioning,
    /// Session lease (default 14 s).
    pub lease_ms: u64,
    pub recover_src_slots: u32,
    pub recover_dst_slots: u32,
    pub migrate_src_slots: u32,
    pub migrate_dst_slots: u32,
    /// Hard ceiling every slot limit is checked against.
    pub slot_ceiling: u32,
    /// A recover command older than this is re-planned (default 18 min).
    pub recover_timeout_ms: u64,
    pub recover_paused: bool,
    pub migrate_paused: bool,
    /// Stretched clusters: the zone that gets 2 of 3 replicas when neither the
    /// consumer's chunk nor the volume names one (DOMAIN.md §5.4); 0 = the
    /// lowest zone id. `apply` checks that it names a zone.
    pub default_zone: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            load_low_bp: 6_000,
            load_medium_bp: 8_500,
            load_high_bp: 9_500,
            provisioning: Provisioning::Thin,
            lease_ms: 14_000,
            recover_src_slots: 8,
            recover_dst_slots: 8,
            migrate_src_slots: 4,
            migrate_dst_slots: 4,
            slot_ceiling: 64,
            recover_timeout_ms: 18 * 60 * 1000,
            recover_paused: false,
            migrate_paused: false,
            default_zone: 0,
        }
    }
}

#[derive(Error, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigError {
    #[error("unknown config key {key:?} (known keys: {known})", known = ClusterConfig::KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
}

pub const MIN_LEASE_MS: u64 = 1_000;
pub const MAX_LEASE_MS: u64 = 120_000;
pub const MAX_SLOT_CEILING: u32 = 1_024;
pub const MIN_RECOVER_TIMEOUT_MS: u64 = 60_000;
pub const MAX_RECOVER_TIMEOUT_MS: u64 = 24 * 3_600_000;

impl ClusterConfig {
    /// Every key `set` accepts, in the order `cairn config show` prints them.
    pub const KEYS: &'static [&'static str] = &[
        "load_low_pct",
        "load_medium_pct",
        "load_high_pct",
        "provisioning",
        "lease_ms",
        "recover_src_slots",
        "recover_dst_slots",
        "migrate_src_slots",
        "migrate_dst_slots",
        "slot_ceiling",
        "recover_timeout_ms",
        "recover_paused",
        "migrate_paused",
        "default_zone",
    ];

    /// The value of `key` as `set` would accept it back.
    pub fn get(&self, key: &str) -> Result<String, ConfigError> {
        Ok(match key {
            "load_low_pct" => fmt_pct(self.load_low_bp),
            "load_medium_pct" => fmt_pct(self.load_medium_bp),
            "load_high_pct" => fmt_pct(self.load_high_bp),
            "provisioning" => match self.provisioning {
                Provisioning::Thin => "thin".into(),
                Provisioning::Thick => "thick".into(),
            },
            "lease_ms" => self.lease_ms.to_string(),
            "recover_src_slots" => self.recover_src_slots.to_string(),
            "recover_dst_slots" => self.recover_dst_slots.to_string(),
            "migrate_src_slots" => self.migrate_src_slots.to_string(),
            "migrate_dst_slots" => self.migrate_dst_slots.to_string(),
            "slot_ceiling" => self.slot_ceiling.to_string(),
            "recover_timeout_ms" => self.recover_timeout_ms.to_string(),
            "recover_paused" => self.recover_paused.to_string(),
            "migrate_paused" => self.migrate_paused.to_string(),
            "default_zone" => self.default_zone.to_string(),
            _ => return Err(unknown(key)),
        })
    }

    /// Returns the config with `key` set to `value`, or why it cannot be.
    /// `self` is never modified: the caller swaps the result in on success.
    pub fn with(&self, key: &str, value: &str) -> Result<ClusterConfig, ConfigError> {
        let mut next = self.clone();
        let bad = |reason: &str| invalid(key, value, reason);
        match key {
            "load_low_pct" => next.load_low_bp = parse_pct(value).ok_or_else(|| bad(PCT))?,
            "load_medium_pct" => next.load_medium_bp = parse_pct(value).ok_or_else(|| bad(PCT))?,
            "load_high_pct" => next.load_high_bp = parse_pct(value).ok_or_else(|| bad(PCT))?,
            "provisioning" => {
                next.provisioning = match value {
                    "thin" => Provisioning::Thin,
                    "thick" => Provisioning::Thick,
                    _ => return Err(bad("expected thin or thick")),
                }
            }
            "lease_ms" => next.lease_ms = parse_u64(value).ok_or_else(|| bad(INT))?,
            "recover_src_slots" => {
                next.recover_src_slots = parse_u32(value).ok_or_else(|| bad(INT))?
            }
            "recover_dst_slots" => {
                next.recover_dst_slots = parse_u32(value).ok_or_else(|| bad(INT))?
            }
            "migrate_src_slots" => {
                next.migrate_src_slots = parse_u32(value).ok_or_else(|| bad(INT))?
            }
            "migrate_dst_slots" => {
                next.migrate_dst_slots = parse_u32(value).ok_or_else(|| bad(INT))?
            }
            "slot_ceiling" => next.slot_ceiling = parse_u32(value).ok_or_else(|| bad(INT))?,
            "recover_timeout_ms" => {
                next.recover_timeout_ms = parse_u64(value).ok_or_else(|| bad(INT))?
            }
            "recover_paused" => next.recover_paused = parse_bool(value).ok_or_else(|| bad(BOOL))?,
            "migrate_paused" => next.migrate_paused = parse_bool(value).ok_or_else(|| bad(BOOL))?,
            "default_zone" => next.default_zone = parse_u64(value).ok_or_else(|| bad(INT))?,
            _ => return Err(unknown(key)),
        }
        next.validate().map_err(|reason| bad(&reason))?;
        Ok(next)
    }

    /// Cross-field validation: every config the state machine holds passes it.
    pub fn validate(&self) -> Result<(), String> {
        if !(0 < self.load_low_bp
            && self.load_low_bp < self.load_medium_bp
            && self.load_medium_bp < self.load_high_bp
            && self.load_high_bp <= BP_PER_UNIT)
        {
            return Err(format!(
                "load thresholds must satisfy 0 < low < medium < high <= 100 (low {}, medium {}, high {})",
                fmt_pct(self.load_low_bp),
                fmt_pct(self.load_medium_bp),
                fmt_pct(self.load_high_bp)
            ));
        }
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&self.lease_ms) {
            return Err(format!(
                "lease_ms must be in {MIN_LEASE_MS}..={MAX_LEASE_MS}"
            ));
        }
        if !(1..=MAX_SLOT_CEILING).contains(&self.slot_ceiling) {
            return Err(format!("slot_ceiling must be in 1..={MAX_SLOT_CEILING}"));
        }
        for (name, v) in [
            ("recover_src_slots", self.recover_src_slots),
            ("recover_dst_slots", self.recover_dst_slots),
            ("migrate_src_slots", self.migrate_src_slots),
            ("migrate_dst_slots", self.migrate_dst_slots),
        ] {
            if !(1..=self.slot_ceiling).contains(&v) {
                return Err(format!(
                    "{name} must be in 1..=slot_ceiling ({})",
                    self.slot_ceiling
                ));
            }
        }
        if !(MIN_RECOVER_TIMEOUT_MS..=MAX_RECOVER_TIMEOUT_MS).contains(&self.recover_timeout_ms) {
            return Err(format!(
                "recover_timeout_ms must be in {MIN_RECOVER_TIMEOUT_MS}..={MAX_RECOVER_TIMEOUT_MS}"
            ));
        }
        Ok(())
    }
}

const PCT: &str = "expected a percentage such as 60 or 59.5 (at most two decimals)";
const INT: &str = "expected a non-negative integer";
const BOOL: &str = "expected true or false";

fn unknown(key: &str) -> ConfigError {
    ConfigError::UnknownKey {
        key: key.to_string(),
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_u64(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_u32(v: &str) -> Option<u32> {
    parse_u64(v).and_then(|n| u32::try_from(n).ok())
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// "59.9" -> 5990 basis points, without floats (so every member parses alike).
fn parse_pct(v: &str) -> Option<u32> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 2 || (!frac.is_empty() && !frac.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let int = parse_u32(int)?;
    let mut frac_bp = 0u32;
    for (i, b) in frac.bytes().enumerate() {
        frac_bp += u32::from(b - b'0') * if i == 0 { 10 } else { 1 };
    }
    int.checked_mul(100)?
        .checked_add(frac_bp)
        .filter(|bp| *bp <= BP_PER_UNIT)
}

pub(crate) fn fmt_pct(bp: u32) -> String {
    if bp % 100 == 0 {
        format!("{}", bp / 100)
    } else {
        format!("{}.{:02}", bp / 100, bp % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_domain() {
        let c = ClusterConfig::default();
        assert_eq!(
            (c.load_low_bp, c.load_medium_bp, c.load_high_bp),
            (6000, 8500, 9500)
        );
        assert_eq!(c.lease_ms, 14_000);
        assert_eq!(c.recover_timeout_ms, 18 * 60 * 1000);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_key_is_rejected() {
        let c = ClusterConfig::default();
        assert!(matches!(
            c.with("lease", "7000"),
            Err(ConfigError::UnknownKey { .. })
        ));
        assert!(matches!(c.get("nope"), Err(ConfigError::UnknownKey { .. })));
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let c = ClusterConfig::default();
        for (k, v) in [
            ("lease_ms", "999"),
            ("lease_ms", "-5"),
            ("lease_ms", "7s"),
            ("load_low_pct", "90"), // above medium
            ("load_high_pct", "100.01"),
            ("load_high_pct", "59.999"),
            ("recover_src_slots", "0"),
            ("recover_src_slots", "65"), // above the ceiling
            ("slot_ceiling", "2"),       // below current slot limits
            ("recover_timeout_ms", "1000"),
            ("provisioning", "thicc"),
            ("migrate_paused", "yes"),
        ] {
            assert!(
                matches!(c.with(k, v), Err(ConfigError::InvalidValue { .. })),
                "{k}={v} should be rejected"
            );
        }
    }

    #[test]
    fn percentages_parse_exactly() {
        assert_eq!(parse_pct("59.9"), Some(5990));
        assert_eq!(parse_pct("60"), Some(6000));
        assert_eq!(parse_pct("0.05"), Some(5));
        assert_eq!(parse_pct("100"), Some(10_000));
        assert_eq!(parse_pct("1e2"), None);
        assert_eq!(parse_pct(".5"), None);
    }

    #[test]
    fn every_key_round_trips_through_get_and_with() {
        let c = ClusterConfig::default();
        for key in ClusterConfig::KEYS {
            let v = c.get(key).unwrap();
            assert_eq!(c.with(key, &v).unwrap(), c, "{key}");
        }
        let c2 = c.with("load_low_pct", "55.5").unwrap();
        assert_eq!(c2.load_low_bp, 5550);
        assert_eq!(c2.get("load_low_pct").unwrap(), "55.50");
    }
}
