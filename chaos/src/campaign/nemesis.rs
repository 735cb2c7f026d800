//! The nemeses: what faults a campaign injects, when, and how each is
//! healed. The schedule (which fault, when, for how long) is drawn from the
//! seed before the run; the targets that depend on the cluster (who leads
//! now) are found when the fault fires, as in Jepsen.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::rng::Rng;

/// A kind of fault, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Nemesis {
    /// kill -9 one member, the leader, or a majority; restart them.
    Kill,
    /// SIGSTOP the leader (mostly) or one member; SIGCONT.
    Pause,
    /// Cut the network: majority / minority, isolate the leader, a bridge,
    /// a one-way cut, slow links.
    Partition,
    /// Kill the leader, wait for the next one, restart the old one.
    LeaderChurn,
    /// Restart one member with its wall clock skewed by minutes.
    Clock,
    /// Add a member, or remove one (never below the initial size).
    Member,
    /// Stop a chunk until its session expires (recovery runs), restart it.
    Chunk,
}

impl Nemesis {
    pub const ALL: [Nemesis; 7] = [
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::Partition,
        Nemesis::LeaderChurn,
        Nemesis::Clock,
        Nemesis::Member,
        Nemesis::Chunk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::LeaderChurn => "leader-churn",
            Nemesis::Clock => "clock",
            Nemesis::Member => "member",
            Nemesis::Chunk => "chunk",
        }
    }
}

impl std::str::FromStr for Nemesis {
    type Err = String;
    fn from_str(s: &str) -> Result<Nemesis, String> {
        Nemesis::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Nemesis::ALL.iter().map(|n| n.name()).collect();
                format!("unknown nemesis {s:?}: one of {}", names.join(", "))
            })
    }
}

/// Which member(s) a kill or pause hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    One,
    Leader,
    Majority,
}

/// The shape of a network fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// A random majority and minority, both ways.
    MajorityMinority,
    /// The leader alone on one side.
    IsolateLeader,
    /// Two halves that both see one member (Jepsen's bridge).
    Bridge,
    /// The leader's packets to the others are dropped, theirs to it pass.
    OneWayFromLeader,
    /// The others' packets to the leader are dropped, its own pass.
    OneWayToLeader,
    /// Every link of the leader slowed by `ms` (proxy mode).
    SlowLeader { ms: u64 },
}

/// One planned fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill(Target),
    Pause(Target),
    Partition(Cut),
    LeaderChurn,
    /// Skew in seconds (may be negative).
    Clock {
        skew_s: i64,
    },
    Member,
    Chunk,
}

impl Fault {
    pub fn nemesis(&self) -> Nemesis {
        match self {
            Fault::Kill(_) => Nemesis::Kill,
            Fault::Pause(_) => Nemesis::Pause,
            Fault::Partition(_) => Nemesis::Partition,
            Fault::LeaderChurn => Nemesis::LeaderChurn,
            Fault::Clock { .. } => Nemesis::Clock,
            Fault::Member => Nemesis::Member,
            Fault::Chunk => Nemesis::Chunk,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// When to inject, from the start of the workload.
    pub at: Duration,
    pub fault: Fault,
    /// How long it stays before it is healed.
    pub hold: Duration,
}

/// Draws the schedule of a run from its seed: faults one after another (one
/// at a time, so each healing is checked), each held for a few seconds, with
/// quiet gaps between them, until `duration` (the last one healed before it).
/// `lease` sizes the chunk nemesis's hold: it must outlast the lease.
pub fn schedule(
    seed: u64,
    nemeses: &BTreeSet<Nemesis>,
    duration: Duration,
    lease: Duration,
    proxy: bool,
) -> Vec<Planned> {
    let mut rng = Rng::new(seed ^ 0x6e65_6d65_7369_7321);
    let kinds: Vec<Nemesis> = nemeses.iter().copied().collect();
    let mut out = vec![];
    let end = duration.as_millis() as u64;
    let mut t = 2_000u64.min(end / 4);
    while let Some(&n) = rng.pick(&kinds) {
        let fault = match n {
            Nemesis::Kill => Fault::Kill(match rng.below(3) {
                0 => Target::One,
                1 => Target::Leader,
                _ => Target::Majority,
            }),
            Nemesis::Pause => Fault::Pause(if rng.chance(0.7) {
                Target::Leader
            } else {
                Target::One
            }),
            Nemesis::Partition => {
                let cuts = if proxy { 6 } else { 5 };
                Fault::Partition(match rng.below(cuts) {
                    0 => Cut::MajorityMinority,
                    1 => Cut::IsolateLeader,
                    2 => Cut::Bridge,
                    3 => Cut::OneWayFromLeader,
                    4 => Cut::OneWayToLeader,
                    _ => Cut::SlowLeader {
                        ms: rng.range(50, 300),
                    },
                })
            }
            Nemesis::LeaderChurn => Fault::LeaderChurn,
            Nemesis::Clock => {
                let s = rng.range(30, 600) as i64;
                Fault::Clock {
                    skew_s: if rng.chance(0.5) { s } else { -s },
                }
            }
            Nemesis::Member => Fault::Member,
            Nemesis::Chunk => Fault::Chunk,
        };
        let hold_ms = match n {
            // Long enough for the session to expire and recovery to start.
            Nemesis::Chunk => lease.as_millis() as u64 + rng.range(1_000, 4_000),
            // The fault is the kill itself; the hold is the next leader's reign.
            Nemesis::LeaderChurn => rng.range(1_000, 3_000),
            _ => rng.range(1_500, 5_000),
        };
        let gap = rng.range(1_000, 3_000);
        if t + hold_ms + 1_000 > end {
            break;
        }
        out.push(Planned {
            at: Duration::from_millis(t),
            fault,
            hold: Duration::from_millis(hold_ms),
        });
        t += hold_ms + gap;
    }
    out
}

/// The directed links a cut blocks, given the members, the leader (if any)
/// and a random source for the split. `bridge` is the member both halves see.
pub fn majority_minority(members: &[u64], rng: &mut Rng) -> (Vec<u64>, Vec<u64>) {
    let mut shuffled = members.to_vec();
    // Fisher-Yates with the campaign's generator.
    for i in (1..shuffled.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        shuffled.swap(i, j);
    }
    // Strictly fewer than half: with 4 or 6 members an even split would
    // leave no majority at all.
    let minority = (shuffled.len().saturating_sub(1)) / 2;
    let (a, b) = shuffled.split_at(minority);
    (b.to_vec(), a.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> BTreeSet<Nemesis> {
        Nemesis::ALL.into_iter().collect()
    }

    #[test]
    fn a_seed_always_gives_the_same_schedule() {
        let d = Duration::from_secs(60);
        let l = Duration::from_secs(7);
        let a = schedule(5, &all(), d, l, true);
        assert_eq!(a, schedule(5, &all(), d, l, true));
        assert_ne!(a, schedule(6, &all(), d, l, true));
    }

    #[test]
    fn faults_do_not_overlap_and_end_before_the_run() {
        for seed in 0..200 {
            let d = Duration::from_secs(30);
            let s = schedule(seed, &all(), d, Duration::from_secs(7), false);
            let mut free = Duration::ZERO;
            for p in &s {
                assert!(
                    p.at >= free,
                    "seed {seed}: {p:?} starts before the last heal"
                );
                free = p.at + p.hold;
                assert!(
                    free + Duration::from_secs(1) <= d,
                    "seed {seed}: {p:?} ends too late"
                );
                assert!(!matches!(p.fault, Fault::Partition(Cut::SlowLeader { .. })));
            }
        }
    }

    #[test]
    fn only_the_chosen_nemeses_are_drawn_and_chunk_faults_outlast_the_lease() {
        let only: BTreeSet<Nemesis> = [Nemesis::Chunk, Nemesis::Pause].into_iter().collect();
        let s = schedule(
            1,
            &only,
            Duration::from_secs(120),
            Duration::from_secs(7),
            true,
        );
        assert!(s.len() >= 5, "{s:?}");
        for p in &s {
            assert!(only.contains(&p.fault.nemesis()));
            if p.fault == Fault::Chunk {
                assert!(p.hold > Duration::from_secs(7));
            }
        }
    }

    #[test]
    fn a_split_has_a_strict_majority() {
        let mut rng = Rng::new(3);
        for n in [3u64, 4, 5, 6] {
            let members: Vec<u64> = (1..=n).collect();
            let (maj, min) = majority_minority(&members, &mut rng);
            assert_eq!(maj.len() + min.len(), n as usize);
            assert!(maj.len() > min.len());
            let mut all: Vec<u64> = maj.iter().chain(&min).copied().collect();
            all.sort();
            assert_eq!(all, members);
        }
    }
}
