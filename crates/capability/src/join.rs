//! Refusing members and chunks that lack an active capability.

use std::collections::BTreeSet;

use crate::decide::{Advert, Party};
use crate::registry::REGISTRY;

/// Why a member or chunk may not join: once a capability is active, a node
/// without it would silently run the old behaviour (a 14 s lease, or a log it
/// cannot decode), so it is turned away with a message naming the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capability {capability} is active; {who} (version {version}) lacks it; upgrade it before it joins")]
pub struct JoinRefused {
    /// The first missing active capability, in registry order.
    pub capability: &'static str,
    /// Who was refused.
    pub who: Party,
    /// Its advertised version.
    pub version: String,
}

/// Checks that `who` supports every active capability that concerns it:
/// all of them for a member, only those with `needs_chunks` for a chunk.
/// Active names this binary does not know are skipped (they never block).
pub fn check_join(
    active: &BTreeSet<String>,
    who: Party,
    advert: &Advert,
) -> Result<(), JoinRefused> {
    let concerns = |needs_chunks: bool| match who {
        Party::Member(_) => true,
        Party::Chunk(_) => needs_chunks,
    };
    match REGISTRY
        .iter()
        .find(|c| active.contains(c.name) && concerns(c.needs_chunks) && !advert.has(c.name))
    {
        Some(cap) => Err(JoinRefused {
            capability: cap.name,
            who,
            version: advert.version.clone(),
        }),
        None => Ok(()),
    }
}
