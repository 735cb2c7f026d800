//! Names what went wrong in a key's history, for people. WGL
//! ([`super::linear`]) decides validity; these direct checks only say which
//! well-known anomaly a violation looks like. Each is sound for the model of
//! `linear` (it fires on no linearizable history: see each function's
//! argument), so an anomaly on a key the search could not decide is still a
//! proven violation.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::linear::{CasResult, OpKind, Operation};

/// At most this many anomalies of one kind are reported per key.
const MAX_PER_KIND: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    LostWrite,
    StaleRead,
    DuplicateApply,
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnomalyKind::LostWrite => "lost write",
            AnomalyKind::StaleRead => "stale read",
            AnomalyKind::DuplicateApply => "duplicate apply",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub key: u64,
    /// The operations involved, in the order the explanation names them.
    pub ops: Vec<Operation>,
    pub explanation: String,
}

/// Every anomaly found in one key's operations.
pub fn classify(key: u64, ops: &[Operation]) -> Vec<Anomaly> {
    let mut out = stale_reads(key, ops);
    // A stale read also looks like a lost write or a value coming back:
    // name it once, as what it is. A read of owner 0 is the environment's
    // (a finished copy or an ended session dropped the owner; the workload
    // never writes 0), so it says nothing about the clients' writes.
    let rest: Vec<Operation> = ops
        .iter()
        .filter(|o| match read_value(o) {
            Some((g, owner)) => owner != 0 && newest_before(o, ops).is_none_or(|(ga, _)| ga <= g),
            None => true,
        })
        .cloned()
        .collect();
    out.extend(lost_writes(key, &rest));
    out.extend(duplicate_applies(key, &rest));
    out
}

/// The highest generation acknowledged by an op completed before `r` began.
fn newest_before<'a>(r: &Operation, ops: &'a [Operation]) -> Option<(u64, &'a Operation)> {
    ops.iter()
        .filter(|a| a.precedes(r))
        .filter_map(|a| acknowledged_generation(a).map(|ga| (ga, a)))
        .max_by_key(|(ga, a)| (*ga, std::cmp::Reverse(a.call)))
}

fn read_value(o: &Operation) -> Option<(u64, u32)> {
    match o.kind {
        OpKind::Read { generation, owner } => Some((generation, owner)),
        _ => None,
    }
}

/// An acknowledged cas that overwrote (bumped the generation): its owner
/// and generation.
fn overwrite(o: &Operation) -> Option<(u32, u64)> {
    match o.kind {
        OpKind::Cas {
            expected_generation: e,
            owner,
            result: CasResult::Ok { generation },
        } if o.ret.is_some() && e.checked_add(1) == Some(generation) => Some((owner, generation)),
        _ => None,
    }
}

/// A cas that may have written `owner` (acknowledged or unknown).
fn may_write(o: &Operation, owner: u32) -> bool {
    matches!(o.kind, OpKind::Cas { owner: n, result, .. }
        if n == owner && !matches!(result, CasResult::Failed { .. }))
}

/// The generation an acknowledged op (ok read or ok cas) established.
fn acknowledged_generation(o: &Operation) -> Option<u64> {
    o.ret?;
    match o.kind {
        OpKind::Read { generation, .. } => Some(generation),
        OpKind::Cas {
            result: CasResult::Ok { generation },
            ..
        } => Some(generation),
        _ => None,
    }
}

/// A read returns a generation lower than one acknowledged (by an ok cas or
/// ok read) before the read was invoked. Sound: the model's generation
/// never decreases, and an op completed before the read is linearized
/// before it.
pub fn stale_reads(key: u64, ops: &[Operation]) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for r in ops {
        let Some((g, _)) = read_value(r) else {
            continue;
        };
        if let Some((ga, a)) = newest_before(r, ops) {
            if ga > g {
                out.push(Anomaly {
                    kind: AnomalyKind::StaleRead,
                    key,
                    ops: vec![r.clone(), a.clone()],
                    explanation: format!(
                        "extent {key}: {r} returned generation {g}, but {a} had acknowledged generation {ga} before the read began"
                    ),
                });
                if out.len() == MAX_PER_KIND {
                    break;
                }
            }
        }
    }
    out
}

/// An acknowledged overwrite W (owner n) whose owner no read that began
/// after W completed ever returns, while such a read R returns an owner o
/// that was in place before W began (W overwrote it), and no cas of o could
/// have taken effect between W and R. Sound: in a linearization W's point
/// is before R's, so some write of o must come between them, and o is
/// never set by the environment; every cas of o that could is excluded.
pub fn lost_writes(key: u64, ops: &[Operation]) -> Vec<Anomaly> {
    // When each owner was first known to be in place (earliest completion
    // of an ok read of it or an ok cas writing it).
    let mut established: BTreeMap<u32, u64> = BTreeMap::new();
    for o in ops {
        let (Some(ret), owner) = (
            o.ret,
            match o.kind {
                OpKind::Read { owner, .. } => owner,
                OpKind::Cas {
                    owner,
                    result: CasResult::Ok { .. },
                    ..
                } => owner,
                _ => continue,
            },
        ) else {
            continue;
        };
        let t = established.entry(owner).or_insert(ret);
        *t = (*t).min(ret);
    }
    let mut out = Vec::new();
    for w in ops {
        let (Some((n, _)), Some(w_ret)) = (overwrite(w), w.ret) else {
            continue;
        };
        let observed_after = ops
            .iter()
            .any(|r| r.call > w_ret && read_value(r).is_some_and(|(_, o)| o == n));
        if observed_after {
            continue;
        }
        let lost = ops.iter().find_map(|r| {
            let (_, o) = read_value(r)?;
            let r_ret = r.ret?;
            let older = o != n && established.get(&o).is_some_and(|&t| t < w.call);
            let rewritten = ops
                .iter()
                .any(|x| may_write(x, o) && x.ret.is_none_or(|xr| xr > w.call) && x.call < r_ret);
            (r.call > w_ret && older && !rewritten).then_some((r, o))
        });
        if let Some((r, o)) = lost {
            out.push(Anomaly {
                kind: AnomalyKind::LostWrite,
                key,
                ops: vec![w.clone(), r.clone()],
                explanation: format!(
                    "extent {key}: {w} was acknowledged, but no later read saw owner {n}; {r} saw the overwritten owner {o}, which nothing wrote again"
                ),
            });
            if out.len() == MAX_PER_KIND {
                break;
            }
        }
    }
    out
}

/// A value reappears: every cas that wrote owner n completed before an
/// acknowledged overwrite W2 (owner m) began, a read that began after W2
/// completed saw m in place, and a still later read R returns n again.
/// Sound: every write of n is linearized before W2, which is before R, so
/// R cannot see n. (When no read saw m in place first, the same history is
/// a lost write of W2 instead: the two never name the same W2.)
pub fn duplicate_applies(key: u64, ops: &[Operation]) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for w2 in ops {
        let (Some((m, _)), Some(w2_ret)) = (overwrite(w2), w2.ret) else {
            continue;
        };
        for r in ops {
            let Some((_, n)) = read_value(r) else {
                continue;
            };
            if n == m || r.call <= w2_ret {
                continue;
            }
            let writers: Vec<&Operation> = ops.iter().filter(|x| may_write(x, n)).collect();
            if writers.is_empty() || !writers.iter().all(|x| x.precedes(w2)) {
                continue;
            }
            let seen_m = ops.iter().find(|x| {
                x.call > w2_ret && x.precedes(r) && read_value(x).is_some_and(|(_, o)| o == m)
            });
            let Some(seen_m) = seen_m else { continue };
            let mut involved: Vec<Operation> = writers.iter().map(|x| (*x).clone()).collect();
            involved.extend([w2.clone(), seen_m.clone(), r.clone()]);
            out.push(Anomaly {
                kind: AnomalyKind::DuplicateApply,
                key,
                ops: involved,
                explanation: format!(
                    "extent {key}: owner {n} reappeared: {r} saw it after {w2} replaced it (and {seen_m} saw {m}), but the only cas of {n} ({}) had completed before that",
                    writers.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
                ),
            });
            break; // one reappearance per overwrite is enough to name it
        }
        if out.len() == MAX_PER_KIND {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::linear::tests::H;
    use super::super::linear::{check_history, KeyOutcome, DEFAULT_MAX_STATES};
    use super::*;
    use crate::history::Type;

    fn run(h: &H) -> (KeyOutcome, Vec<AnomalyKind>) {
        let r = check_history(&h.events, DEFAULT_MAX_STATES);
        let k = &r.keys[0];
        (
            k.result.outcome.clone(),
            k.anomalies.iter().map(|a| a.kind).collect(),
        )
    }

    #[test]
    fn a_lost_write_is_invalid_and_named() {
        // given owner 1 in place, p2 replaces it with 2 and is acknowledged
        let mut h = H::default();
        h.read(1).read_ok(1, 3, 1);
        h.cas(2, 3, 2).cas_ok(2, 3, 2, 4);
        // when later reads only ever see owner 1 (at a newer generation)
        h.read(1).read_ok(1, 4, 1);
        h.read(3).read_ok(3, 5, 1);
        // then the history is not linearizable, and it is a lost write
        let (outcome, kinds) = run(&h);
        assert!(matches!(outcome, KeyOutcome::Invalid(_)));
        assert_eq!(kinds, vec![AnomalyKind::LostWrite]);
    }

    #[test]
    fn overwriting_back_to_the_old_owner_is_not_a_lost_write() {
        let mut h = H::default();
        h.read(1).read_ok(1, 3, 1);
        h.cas(2, 3, 2).cas_ok(2, 3, 2, 4);
        h.cas(3, 4, 1); // a concurrent write of the old owner
        h.read(1).read_ok(1, 5, 1);
        h.cas_done(3, Type::Info, 4, 1, None);
        let (outcome, kinds) = run(&h);
        assert_eq!(outcome, KeyOutcome::Valid);
        assert!(kinds.is_empty(), "{kinds:?}");
    }

    #[test]
    fn a_stale_read_is_invalid_and_named() {
        // given p1 saw generation 8
        let mut h = H::default();
        h.read(1).read_ok(1, 8, 1);
        // when p2, invoked later, reads generation 6 (same owner)
        h.read(2).read_ok(2, 6, 1);
        let (outcome, kinds) = run(&h);
        assert!(matches!(outcome, KeyOutcome::Invalid(_)));
        assert_eq!(kinds, vec![AnomalyKind::StaleRead]);
    }

    #[test]
    fn concurrent_reads_of_different_generations_are_not_stale() {
        let mut h = H::default();
        h.read(1).read(2).read_ok(1, 8, 1).read_ok(2, 6, 1);
        let (outcome, kinds) = run(&h);
        assert_eq!(outcome, KeyOutcome::Valid);
        assert!(kinds.is_empty());
    }

    #[test]
    fn a_duplicate_apply_is_invalid_and_named() {
        // given p1 wrote owner 5, then p2 wrote owner 6 and a read saw 6
        let mut h = H::default();
        h.cas(1, 1, 5).cas_ok(1, 1, 5, 2);
        h.cas(2, 2, 6).cas_ok(2, 2, 6, 3);
        h.read(3).read_ok(3, 3, 6);
        // when owner 5 comes back (p1's write applied a second time)
        h.read(3).read_ok(3, 4, 5);
        // then
        let (outcome, kinds) = run(&h);
        assert!(matches!(outcome, KeyOutcome::Invalid(_)));
        assert_eq!(kinds, vec![AnomalyKind::DuplicateApply]);
    }

    #[test]
    fn a_write_of_the_same_owner_again_is_not_a_duplicate_apply() {
        let mut h = H::default();
        h.cas(1, 1, 5).cas_ok(1, 1, 5, 2);
        h.cas(2, 2, 6).cas_ok(2, 2, 6, 3);
        h.read(3).read_ok(3, 3, 6);
        h.cas(1, 3, 5).cas_ok(1, 3, 5, 4);
        h.read(3).read_ok(3, 4, 5);
        let (outcome, kinds) = run(&h);
        assert_eq!(outcome, KeyOutcome::Valid);
        assert!(kinds.is_empty(), "{kinds:?}");
    }
}
