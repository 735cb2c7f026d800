//! Cairn's pure placement and scheduling planners.
//!
//! Everything here is deterministic Rust over a read-only view of
//! [`cairn_state::State`]: no I/O, no tokio, no clock reads. The leader runs
//! these functions and proposes their result; `apply` only records it.

#![forbid(unsafe_code)]

pub mod placement;
pub mod sessions;

pub use placement::{
    place, place_volume, Chosen, Filter, PlaceError, PlaceRequest, Placement, Reason, Rejection,
    View,
};
pub use sessions::{
    keepalive_interval_ms, KeepAliveError, SessionTracker, SessionView, TrackerConfig,
};
