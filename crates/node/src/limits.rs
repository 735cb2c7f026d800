//! What one peer may take of a member: every resource a client can make a
//! member spend is bounded, and every bound is a `cairn server` flag
//! (docs/security.md, "Limits").
//!
//! The aim is that a client or a chunk that floods slows only itself: its
//! own connection's streams queue (HTTP/2 `max_concurrent_streams`), its
//! own keepalives wait for their rate (a token bucket per connection), and
//! the member's heartbeats, elections and other clients keep their timing
//! (tests/security.rs floods a cluster and checks).

use std::time::{Duration, Instant};

/// The bounds of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request a member decodes on the `Meta` and `Chunk`
    /// services (Raft has its own, for snapshots: MAX_RAFT_MESSAGE_BYTES).
    pub max_message_bytes: usize,
    /// Most entries the leader sends in one AppendEntries.
    pub max_append_entries: u64,
    /// Proposals waiting for the leader's batcher; beyond, UNAVAILABLE.
    pub max_queued_proposals: usize,
    /// HTTP/2 streams one connection may have open at once; more wait on
    /// the client's side.
    pub max_streams_per_conn: u32,
    /// Connections a member holds at once; beyond, a new one is closed at
    /// accept (the ones open keep being served).
    pub max_connections: usize,
    /// Keepalives one connection (the session wire, or one gRPC stream)
    /// may send per second; beyond, its next ones wait.
    pub max_keepalives_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // A Propose of 4,096 commands is well under 4 MiB; 16 leaves
            // room without letting 256 streams pin gigabytes.
            max_message_bytes: 16 << 20,
            // openraft's default.
            max_append_entries: 300,
            max_queued_proposals: 16_384,
            max_streams_per_conn: 256,
            max_connections: 4_096,
            // A host agent with 2,000 chunks keeping alive once a second,
            // ten times over.
            max_keepalives_per_sec: 20_000,
        }
    }
}

impl Limits {
    /// Every bound must be at least 1.
    pub fn check(&self) -> Result<(), String> {
        let zero = [
            ("--max-message-bytes", self.max_message_bytes == 0),
            ("--max-append-entries", self.max_append_entries == 0),
            ("--max-queued-proposals", self.max_queued_proposals == 0),
            ("--max-streams-per-conn", self.max_streams_per_conn == 0),
            ("--max-connections", self.max_connections == 0),
            ("--max-keepalives-per-sec", self.max_keepalives_per_sec == 0),
        ];
        match zero.iter().find(|(_, z)| *z) {
            Some((flag, _)) => Err(format!("{flag} must be at least 1")),
            None => Ok(()),
        }
    }
}

/// A token bucket: `rate` tokens a second, bursts of one second's worth.
/// Owned by one connection's task, so no lock.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: u32) -> Bucket {
        Bucket {
            rate: f64::from(rate.max(1)),
            tokens: f64::from(rate.max(1)),
            at: Instant::now(),
        }
    }

    /// Takes `n` tokens as of `now`; returns how long the caller must wait
    /// before going on (zero when it is within its rate).
    pub fn take_at(&mut self, n: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Takes `n` tokens, sleeping first if the connection is over its rate.
    pub async fn take(&mut self, n: usize) {
        let wait = self.take_at(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_a_second_s_worth_through_then_paces_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100);
        assert_eq!(b.take_at(100, t0), Duration::ZERO, "one second's burst");
        // 50 more at once: half a second behind.
        let wait = b.take_at(50, t0);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // After that half second (and another), 100 tokens have come back,
        // and the 50 owed are paid: 50 left.
        assert_eq!(b.take_at(50, t0 + Duration::from_secs(1)), Duration::ZERO);
        // Idle for long: never more than a second's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.take_at(100, later), Duration::ZERO);
        assert!(b.take_at(1, later) > Duration::ZERO);
    }

    #[test]
    fn every_bound_must_be_at_least_one() {
        assert!(Limits::default().check().is_ok());
        let l = Limits {
            max_connections: 0,
            ..Limits::default()
        };
        assert_eq!(
            l.check().unwrap_err(),
            "--max-connections must be at least 1"
        );
    }
}
