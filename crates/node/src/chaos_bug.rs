//! Deliberate bugs, for proving that the chaos harness finds bugs
//! (`cairn-chaos`'s own tests). Compiled in only with the `chaos-bugs`
//! feature, and even then inert unless `CAIRN_CHAOS_BUG` names one.
//!
//! | name | what breaks |
//! |---|---|
//! | `stale-read` | linearizable reads skip the read barrier (`linearizable.rs`): any member answers from its local state |
//! | `handler-panic` | `Meta/Read` with an empty `what` panics (the fuzzer must see it: `cairn-chaos fuzz`) |

/// Whether bug `name` is switched on in this process.
pub fn active(name: &str) -> bool {
    #[cfg(feature = "chaos-bugs")]
    {
        static BUG: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        BUG.get_or_init(|| std::env::var("CAIRN_CHAOS_BUG").ok())
            .as_deref()
            == Some(name)
    }
    #[cfg(not(feature = "chaos-bugs"))]
    {
        let _ = name;
        false
    }
}

/// The bug switched on, for a loud line at start.
pub fn announce() -> Option<String> {
    if cfg!(feature = "chaos-bugs") {
        std::env::var("CAIRN_CHAOS_BUG").ok()
    } else {
        None
    }
}
