//! Cairn's capability negotiation for rolling upgrades (DOMAIN.md §6).
//!
//! A cluster can sit half-upgraded for a long time, so a new behaviour (such
//! as the 7 s lease) may only switch on once EVERY meta member and every live
//! chunk session supports it, and the switch must be one replicated decision
//! rather than a per-node guess. This crate is the pure part of that:
//!
//! - [`REGISTRY`]: the capabilities this binary knows, and what each changes;
//! - [`capabilities_of`] / [`version_cmp`]: what a product version supports;
//! - [`decide`]: given the current membership, the live chunk sessions and
//!   what is already active, which capabilities to activate now and, for the
//!   others, who blocks them. The leader calls it whenever a member or session
//!   joins, leaves or upgrades (never on a timer) and proposes the result;
//! - [`check_join`]: once a capability is active, a member or chunk lacking
//!   it is refused with a clear error instead of silently running the old
//!   behaviour.
//!
//! Deterministic, no I/O, no clock, no async: the same inputs always give the
//! same [`Decision`], in the same order.

#![forbid(unsafe_code)]

mod decide;
mod join;
mod registry;
mod version;

pub use decide::{decide, Advert, Blocker, Decision, Inputs, Party, Pending};
pub use join::{check_join, JoinRefused};
pub use registry::{capability, Capability, COPY_COMMANDS, LEASE_7S, REGISTRY};
pub use version::{capabilities_of, version_cmp, UnknownVersion, CURRENT_VERSION, KNOWN_VERSIONS};
