//! Cairn's pure placement and scheduling planners.
//!
//! Everything here is deterministic Rust over a read-only view of
//! [`cairn_state::State`]: no I/O, no tokio, no clock reads. The leader runs
//! these functions and proposes their result; `apply` only records it.
//!
//! Scheduling (DOMAIN.md §5.2-5.7, docs/scheduling.md): [`Scheduler`] holds
//! the queues, running commands, slots and pins; its rounds
//! [`Scheduler::plan_recover`] and [`Scheduler::plan_migrate`] return the
//! commands to send. Each rule is one function in [`recover`], [`migrate`],
//! [`stretched`], [`slots`], [`manual`] or [`rules`].

#![forbid(unsafe_code)]

pub mod cmd;
pub mod config;
pub mod explain;
pub mod manual;
pub mod migrate;
pub mod placement;
pub mod queue;
pub mod recover;
pub mod recover_sim;
pub mod rules;
pub mod scheduler;
pub mod sessions;
pub mod slots;
pub mod stretched;

pub use cmd::{CompletionError, DstReject, Kind, Mode, NoPlan, OwnerSource, SchedCmd, Why};
pub use config::{SchedConfig, SchedConfigError, DEFAULT_TIMEOUT_MS};
pub use explain::{ExplainError, Explanation, NoObserve, Observe, RuleOutcome, Score, Status};
pub use manual::{GatherReport, GatherTarget, ManualAccepted, ManualError, ManualRequest, Pins};
pub use placement::{
    place, place_volume, Chosen, Filter, PlaceError, PlaceRequest, Placement, Reason, Rejection,
    View,
};
pub use queue::{Band, CmdQueue, QueueError};
pub use scheduler::{Round, Running, SchedError, Scheduler, Touch};
pub use sessions::{
    keepalive_interval_ms, KeepAliveError, SessionTracker, SessionView, TrackerConfig,
};
pub use slots::{ElasticPolicy, SlotError, SlotKind, SlotLimits, SlotPolicy, Slots};
