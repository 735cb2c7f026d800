//! The capabilities this binary knows.

/// Name of the 7 s session lease capability. A name, not an enum variant,
/// because names travel between binaries of different versions: a newer
/// version may activate names this one has never heard of.
pub const LEASE_7S: &str = "lease_7s";

/// Name of the capability that lets the scheduler write copy commands to the
/// Raft log.
pub const COPY_COMMANDS: &str = "copy_commands";

/// One negotiable behaviour change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Stable wire name (what adverts and the active set contain).
    pub name: &'static str,
    /// One line for operators: what switching it on means.
    pub description: &'static str,
    /// First product version that supports it.
    pub since: &'static str,
    /// What changes once it is active (operator text).
    pub changes: &'static str,
    /// Whether chunk servers must support it too. Chunks only matter for
    /// behaviour they take part in (the lease they renew); a change internal
    /// to meta (log entry formats) waits for meta members alone.
    pub needs_chunks: bool,
}

/// Every capability this binary knows, in the fixed order used for every
/// decision, report and error (so output is deterministic and the first
/// missing capability is always the same one).
pub static REGISTRY: &[Capability] = &[
    Capability {
        name: LEASE_7S,
        description: "7 s session lease",
        since: "2.0",
        changes: "the session lease shrinks from 14 s to 7 s (faster failure detection); \
                  chunks renew every 1 s instead of 2 s",
        needs_chunks: true,
    },
    Capability {
        name: COPY_COMMANDS,
        description: "replicated recover / migrate commands",
        since: "2.0",
        changes: "the leader's recover / migrate scheduler writes IssueCopy / AdoptCopies / \
                  FinishCopy entries to the log; a member without it could not decode them",
        needs_chunks: false,
    },
];

/// Looks a capability up by wire name; `None` for a name this binary does not
/// know (for example one activated by a newer version).
pub fn capability(name: &str) -> Option<&'static Capability> {
    REGISTRY.iter().find(|c| c.name == name)
}
