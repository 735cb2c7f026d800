//! Product versions and what they support.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use crate::registry::REGISTRY;

/// The product version this binary speaks; what it puts in its own advert.
pub const CURRENT_VERSION: &str = "2.0";

/// Every product version this binary knows, oldest first. "1.0" is the first
/// release (no capabilities at all); [`CURRENT_VERSION`] is the newest.
pub const KNOWN_VERSIONS: &[&str] = &["1.0", "2.0"];

/// A version string [`capabilities_of`] cannot answer for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownVersion {
    /// Not dot-separated decimal numbers (empty, letters, signs, spaces,
    /// empty components, or a component too large for u64).
    #[error("version {0:?} is malformed: expected dot-separated numbers such as \"2.0\"")]
    Malformed(String),
    /// Well-formed but not one of [`KNOWN_VERSIONS`]: this binary cannot know
    /// what it supports (a newer release may also have retired capabilities),
    /// so it refuses to guess.
    #[error("version {0} is not known to this binary (it knows 1.0 to {CURRENT_VERSION})")]
    Unknown(String),
}

/// Parses "2.0" into its numeric components. Only ASCII digits are accepted
/// in each component (`u64::from_str` alone would also take "+2").
fn parse(version: &str) -> Option<Vec<u64>> {
    version
        .split('.')
        .map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                part.parse::<u64>().ok()
            }
        })
        .collect()
}

/// Compares two versions numerically, component by component ("10.0" >
/// "2.0", "2.10" > "2.9"); missing trailing components count as 0, so
/// "2.0" == "2.0.0". `None` if either is malformed: string comparison would
/// put "10.0" before "2.0" and silently disable capabilities.
pub fn version_cmp(a: &str, b: &str) -> Option<Ordering> {
    let a = parse(a)?;
    let b = parse(b)?;
    let len = a.len().max(b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        match x.cmp(&y) {
            Ordering::Equal => {}
            other => return Some(other),
        }
    }
    Some(Ordering::Equal)
}

/// Every registry capability a binary of `version` supports: those whose
/// `since` is at or below it. Only [`KNOWN_VERSIONS`] are answered; anything
/// else is a typed error, never an empty set (which would look like "1.0").
pub fn capabilities_of(version: &str) -> Result<BTreeSet<String>, UnknownVersion> {
    if parse(version).is_none() {
        return Err(UnknownVersion::Malformed(version.to_string()));
    }
    let known = KNOWN_VERSIONS
        .iter()
        .any(|k| version_cmp(k, version) == Some(Ordering::Equal));
    if !known {
        return Err(UnknownVersion::Unknown(version.to_string()));
    }
    Ok(REGISTRY
        .iter()
        .filter(|c| {
            matches!(
                version_cmp(c.since, version),
                Some(Ordering::Less | Ordering::Equal)
            )
        })
        .map(|c| c.name.to_string())
        .collect())
}
