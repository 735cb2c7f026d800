//! Load ratios and load modes (DOMAIN.md §3). Derived, never stored.
//!
//! A ratio is kept as an exact fraction so that comparisons and mode
//! boundaries are the same on every member (no float rounding).

use std::cmp::Ordering;

use serde::Serialize;

use crate::config::{ClusterConfig, BP_PER_UNIT};

/// `num / den` with `den > 0`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LoadRatio {
    pub num: u64,
    pub den: u64,
}

impl LoadRatio {
    /// `None` when there is no valid space to divide by.
    pub fn new(num: u64, den: u64) -> Option<LoadRatio> {
        (den > 0).then_some(LoadRatio { num, den })
    }

    /// The ratio in basis points, rounded down (for display and thresholds).
    /// Saturates at u64::MAX for absurdly over-provisioned chunks.
    pub fn basis_points(self) -> u64 {
        let bp = (u128::from(self.num) * u128::from(BP_PER_UNIT)) / u128::from(self.den);
        u64::try_from(bp).unwrap_or(u64::MAX)
    }

    /// For display only; decisions use [`LoadRatio::cmp`] and [`LoadRatio::mode`].
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// `self >= bp / 10_000`, exactly.
    pub fn at_least_bp(self, bp: u32) -> bool {
        u128::from(self.num) * u128::from(BP_PER_UNIT) >= u128::from(bp) * u128::from(self.den)
    }

    pub fn mode(self, cfg: &ClusterConfig) -> LoadMode {
        if !self.at_least_bp(cfg.load_low_bp) {
            LoadMode::Low
        } else if !self.at_least_bp(cfg.load_medium_bp) {
            LoadMode::Medium
        } else if !self.at_least_bp(cfg.load_high_bp) {
            LoadMode::High
        } else {
            LoadMode::UltraHigh
        }
    }
}

impl PartialEq for LoadRatio {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for LoadRatio {}
impl PartialOrd for LoadRatio {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for LoadRatio {
    fn cmp(&self, other: &Self) -> Ordering {
        (u128::from(self.num) * u128::from(other.den))
            .cmp(&(u128::from(other.num) * u128::from(self.den)))
    }
}

/// Load modes with the default thresholds low < 60 %, medium < 85 %,
/// high < 95 %, ultra-high >= 95 %.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum LoadMode {
    Low,
    Medium,
    High,
    UltraHigh,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_at(num: u64, den: u64) -> LoadMode {
        LoadRatio::new(num, den)
            .unwrap()
            .mode(&ClusterConfig::default())
    }

    #[test]
    fn load_mode_boundaries() {
        assert_eq!(mode_at(599, 1000), LoadMode::Low); // 59.9 %
        assert_eq!(mode_at(600, 1000), LoadMode::Medium); // 60 %
        assert_eq!(mode_at(8499, 10000), LoadMode::Medium); // 84.99 %
        assert_eq!(mode_at(850, 1000), LoadMode::High); // 85 %
        assert_eq!(mode_at(9499, 10000), LoadMode::High);
        assert_eq!(mode_at(950, 1000), LoadMode::UltraHigh); // 95 %
        assert_eq!(mode_at(2000, 1000), LoadMode::UltraHigh); // over-provisioned
    }

    #[test]
    fn load_mode_boundaries_follow_config() {
        let cfg = ClusterConfig::default().with("load_low_pct", "50").unwrap();
        assert_eq!(
            LoadRatio::new(55, 100).unwrap().mode(&cfg),
            LoadMode::Medium
        );
    }

    #[test]
    fn ratios_compare_exactly() {
        let a = LoadRatio::new(1, 3).unwrap();
        let b = LoadRatio::new(2, 6).unwrap();
        let c = LoadRatio::new(334, 1000).unwrap();
        assert_eq!(a, b);
        assert!(a < c);
        assert_eq!(LoadRatio::new(1, 0), None);
        assert_eq!(
            LoadRatio::new(u64::MAX, u64::MAX).unwrap().basis_points(),
            10_000
        );
        assert_eq!(
            LoadRatio::new(u64::MAX, 1).unwrap().basis_points(),
            u64::MAX
        );
    }
}
