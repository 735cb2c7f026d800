//! The simulator's own checks, simple and exact (the full linearizability
//! check of the history is the checker's job):
//!
//! - **votes never go back**: each node's (term, leader) only moves
//!   forward (two leaders in one term are legal in openraft's default
//!   leader-id mode: see [`terms_with_several_leaders`]);
//! - **final state**: after healing, every node at the same applied index
//!   with the same digest;
//! - **lost writes**: per extent, the final (sequential, linearizable) read
//!   shows the last acknowledged CAS — the Ok CAS with the highest
//!   generation G and its owner — unless `Info` CAS operations on that extent
//!   explain a newer value: final generation F < G is a lost write; F == G
//!   needs the acknowledged owner; F > G is either the environment's (a
//!   session expiry or opening, a finished copy: then the final value is
//!   exactly what that command left) or a client's, and then needs enough
//!   `Info` CAS on the extent (with the environment's bumps since G) and an
//!   owner one of them wrote;
//! - **stale reads**: a read invoked after a CAS (or read) completed Ok with
//!   generation G must return at least G (generations only grow);
//! - an acknowledged volume exists at the end, with every extent;
//! - **kept sessions never expire**: a session is expired only if its
//!   chunk was stopped by the nemesis, or cut by a partition from a majority
//!   of the members, while the session was live;
//! - **replicas restored**: after healing, every extent has its volume's
//!   replica count, all alive;
//! - **no stale term takes effect**: no IssueCopy / AdoptCopies /
//!   FinishCopy stamped with a deposed leader's term was applied
//!   (`check::invariants::stale_term_violations` on the committed log).

use std::collections::BTreeMap;

use cairn_state::Cmd;

use crate::history::{Event, ExtentValue, FinalExtent, FinalMember, Observation, Op, Type};

use super::sm::{AppliedLog, EnvChange};
use super::workload::FINAL_PROCESS;

/// A session expired although its chunk knew it (had its registration or a
/// keepalive of it acknowledged) and was never stopped (nor cut off)
/// while it was live, or although the chunk had a keepalive of it
/// acknowledged less than half a lease before (the campaign's rule for
/// chunks a nemesis may stop). `stops`: each chunk's (from, until) in
/// virtual ns when it could not keep alive (stopped by the nemesis, or cut
/// from a majority of the members); `last_ack`: (cid, session) -> when the
/// chunk last got an acknowledgement for it.
pub fn kept_sessions_never_expired(
    applied: &AppliedLog,
    stops: &BTreeMap<u32, Vec<(u64, Option<u64>)>>,
    last_ack: &BTreeMap<(u32, u64), u64>,
    lease_ms: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    for e in applied.entries.values() {
        for c in e.cmds.iter().filter(|c| c.result.is_ok()) {
            let Cmd::ExpireSession { cid, session_id } = c.cmd else {
                continue;
            };
            let at = applied.at_ns.get(&e.index).copied().unwrap_or(0);
            let opened = applied.opened.get(&(cid, session_id)).copied().unwrap_or(0);
            let chunk_stops = stops.get(&cid).map(Vec::as_slice).unwrap_or(&[]);
            let stopped = chunk_stops
                .iter()
                .any(|&(from, until)| from <= at && until.is_none_or(|u| u >= opened));
            // A session its chunk never learned of (the reply to its
            // registration was lost: the chunk waits out its 10 s
            // registration timeout, longer than the lease, then registers
            // again) cannot be kept alive: its expiry is due, not a fault.
            let known = last_ack.contains_key(&(cid, session_id));
            if !stopped && known {
                out.push(format!(
                    "entry {} (term {}) at {at} ns expired session {session_id} of chunk {cid} (opened at {opened} ns), which kept alive (its stops: {chunk_stops:?})",
                    e.index, e.term
                ));
            } else if let Some(&acked) = last_ack.get(&(cid, session_id)) {
                let since_ms = at.saturating_sub(acked) / 1_000_000;
                if acked <= at && since_ms < lease_ms / 2 {
                    out.push(format!(
                        "entry {} (term {}) at {at} ns expired session {session_id} of chunk {cid} only {since_ms} ms after a keepalive of it was acknowledged (lease {lease_ms} ms)",
                        e.index, e.term
                    ));
                }
            }
        }
    }
    out
}

/// IssueCopy / AdoptCopies / FinishCopy of a deposed leader's term that
/// took effect (`check::invariants::stale_term_violations`).
pub fn no_stale_term_effects(applied: &AppliedLog) -> Vec<String> {
    let entries: Vec<_> = applied.entries.values().cloned().collect();
    crate::check::invariants::stale_term_violations(&entries)
}

/// After healing, every extent at its volume's replica count, all alive.
pub fn replicas_restored(extents: &[FinalExtent]) -> Vec<String> {
    extents
        .iter()
        .filter(|e| e.loc.len() != e.replicas as usize || e.alive_loc.len() != e.replicas as usize)
        .map(|e| {
            format!(
                "extent {} not restored after healing: loc {:?}, alive {:?}, {} replicas expected",
                e.pid, e.loc, e.alive_loc, e.replicas
            )
        })
        .collect()
}

/// What the leaders' runners did, from the committed log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub expired: u64,
    pub issued: u64,
    pub finished: u64,
    pub adopted: u64,
    /// Term-stamped commands `apply` refused for their term (a deposed
    /// leader's decision, fenced).
    pub fenced: u64,
}

pub fn counts(applied: &AppliedLog) -> Counts {
    let mut n = Counts::default();
    for c in applied.entries.values().flat_map(|e| &e.cmds) {
        if let Err(e) = &c.result {
            let stamped = matches!(
                c.cmd,
                Cmd::IssueCopy(_) | Cmd::AdoptCopies { .. } | Cmd::FinishCopy(_)
            );
            if stamped && (e.contains("deposed") || e.contains("are refused")) {
                n.fenced += 1;
            }
            continue;
        }
        match &c.cmd {
            Cmd::ExpireSession { .. } => n.expired += 1,
            Cmd::IssueCopy(_) => n.issued += 1,
            Cmd::FinishCopy(f) if f.update.is_some() => n.finished += 1,
            Cmd::AdoptCopies { .. } => n.adopted += 1,
            _ => {}
        }
    }
    n
}

/// Each node's (term, leader) may only move forward: a node's leader comes
/// from its committed vote, and a vote never goes back (it is persisted
/// before it is granted). A node naming leader (t, a) after (t, b) with
/// a < b, or an older term after a newer one, lost a vote.
pub fn votes_never_go_back(observations: &[Observation]) -> Vec<String> {
    let mut last: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut out = Vec::new();
    for o in observations.iter().filter(|o| o.leader_id != 0) {
        let now = (o.term, o.leader_id);
        if let Some(&before) = last.get(&o.node_id) {
            if now < before {
                out.push(format!(
                    "n{} went back from leader n{} of term {} to leader n{} of term {} at {} ns",
                    o.node_id, before.1, before.0, now.1, now.0, o.time_ns
                ));
            }
        }
        last.insert(o.node_id, now);
    }
    out
}

/// Terms in which two nodes named different leaders. Not a violation here:
/// openraft 0.9 without its `single-term-leader` feature (Cairn's build)
/// identifies a leader by (term, node id) and orders votes by that pair, so
/// a node that voted for (t, 3) may vote again for (t, 4), and one term may
/// see several leaders (logs stay safe: log ids carry the node id too).
pub fn terms_with_several_leaders(observations: &[Observation]) -> Vec<u64> {
    let mut leaders: BTreeMap<u64, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for o in observations.iter().filter(|o| o.leader_id != 0) {
        leaders.entry(o.term).or_default().insert(o.leader_id);
    }
    leaders
        .into_iter()
        .filter(|(_, l)| l.len() > 1)
        .map(|(t, _)| t)
        .collect()
}

pub fn final_state(finals: &[FinalMember], converged: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !converged {
        out.push(format!("the healed cluster did not converge: {finals:?}"));
        return out;
    }
    if let Some(first) = finals.first() {
        for f in &finals[1..] {
            if (f.applied_index, f.digest) != (first.applied_index, first.digest) {
                out.push(format!(
                    "divergence: n{} at {} digest {:#x}, n{} at {} digest {:#x}",
                    first.node_id,
                    first.applied_index,
                    first.digest,
                    f.node_id,
                    f.applied_index,
                    f.digest
                ));
            }
        }
    }
    out
}

/// The completion of each invocation: (invoke event, completion event).
fn operations(history: &[Event]) -> Vec<(&Event, &Event)> {
    let mut open: BTreeMap<u64, &Event> = BTreeMap::new();
    let mut ops = Vec::new();
    for e in history {
        if e.kind == Type::Invoke {
            open.insert(e.process, e);
        } else if let Some(inv) = open.remove(&e.process) {
            ops.push((inv, e));
        }
    }
    ops
}

pub fn lost_writes_and_stale_reads(
    history: &[Event],
    env: &BTreeMap<u64, Vec<EnvChange>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let ops = operations(history);

    // Per key: highest acknowledged generation and its owner; Info CAS.
    let mut acked: BTreeMap<u64, (u64, u32)> = BTreeMap::new();
    let mut infos: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut finals: BTreeMap<u64, ExtentValue> = BTreeMap::new();
    let mut created = None;
    for (inv, done) in &ops {
        match (&done.op, done.kind) {
            (
                Op::Cas {
                    pid,
                    owner,
                    generation: Some(g),
                    ..
                },
                Type::Ok,
            ) => {
                let e = acked.entry(*pid).or_insert((1, 0));
                if *g >= e.0 {
                    *e = (*g, *owner);
                }
            }
            (Op::Cas { pid, owner, .. }, Type::Info) => infos.entry(*pid).or_default().push(*owner),
            (
                Op::Read {
                    pid,
                    value: Some(v),
                },
                Type::Ok,
            ) if inv.process == FINAL_PROCESS => {
                finals.insert(*pid, *v);
            }
            (
                Op::CreateVolume {
                    extents,
                    first_pid: Some(p),
                    ..
                },
                Type::Ok,
            ) => {
                created = Some((*p, *extents));
            }
            _ => {}
        }
    }
    if let Some((first, n)) = created {
        for pid in first..first + n {
            if !finals.contains_key(&pid) {
                out.push(format!(
                    "extent {pid} of the acknowledged volume has no final value"
                ));
            }
        }
    }
    for (pid, fin) in &finals {
        let (g, owner) = acked.get(pid).copied().unwrap_or((1, 0));
        let info = infos.get(pid).map(Vec::as_slice).unwrap_or(&[]);
        let changes = env.get(pid).map(Vec::as_slice).unwrap_or(&[]);
        // The environment's write that produced the final generation, if any.
        let by_env = changes
            .iter()
            .rev()
            .find(|c| c.generation_after == fin.generation);
        // Generations the environment added after G.
        let env_bumps: u64 = changes
            .iter()
            .filter(|c| c.generation_after > g)
            .map(|c| c.generation_after - c.generation_before.max(g))
            .sum();
        let why = if fin.generation < g {
            Some(format!(
                "lost write: generation {g} (owner {owner}) was acknowledged"
            ))
        } else if fin.generation == g && fin.owner != owner {
            Some(format!(
                "generation {g} was acknowledged with owner {owner}"
            ))
        } else if let Some(c) = by_env.filter(|_| fin.generation > g) {
            (fin.owner != c.owner_after).then(|| {
                format!(
                    "entry {} (not a client's) left generation {} with owner {}",
                    c.index, c.generation_after, c.owner_after
                )
            })
        } else if fin.generation > g
            && (fin.generation - g > info.len() as u64 + env_bumps || !info.contains(&fin.owner))
        {
            Some(format!(
                "generation moved from acknowledged {g} without enough unknown writes ({} info CAS, owners {info:?}, {env_bumps} bumps by the environment)",
                info.len()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            out.push(format!("extent {pid}: final read {fin:?}: {why}"));
        }
    }

    // Stale reads: real-time order against earlier Ok completions.
    let mut seen: BTreeMap<u64, (u64, u64)> = BTreeMap::new(); // pid -> (generation, event index)
    let mut by_invoke: Vec<&(&Event, &Event)> = ops.iter().collect();
    by_invoke.sort_by_key(|(inv, _)| inv.index);
    // Walk events in order: completions raise the floor, reads are checked
    // against the floor as of their invocation.
    let mut floor_at_invoke: BTreeMap<u64, Option<(u64, u64)>> = BTreeMap::new();
    let completions: BTreeMap<u64, &Event> = ops.iter().map(|(_, d)| (d.index, *d)).collect();
    for e in history {
        if e.kind == Type::Invoke {
            if let Op::Read { pid, .. } = e.op {
                floor_at_invoke.insert(e.index, seen.get(&pid).copied());
            }
            continue;
        }
        if e.kind != Type::Ok || !completions.contains_key(&e.index) {
            continue;
        }
        let g = match &e.op {
            Op::Cas {
                pid,
                generation: Some(g),
                ..
            } => Some((*pid, *g)),
            Op::Read {
                pid,
                value: Some(v),
            } => Some((*pid, v.generation)),
            _ => None,
        };
        if let Some((pid, g)) = g {
            let s = seen.entry(pid).or_insert((0, 0));
            if g > s.0 {
                *s = (g, e.index);
            }
        }
    }
    for (inv, done) in by_invoke {
        let (
            Op::Read {
                pid,
                value: Some(v),
            },
            Type::Ok,
        ) = (&done.op, done.kind)
        else {
            continue;
        };
        if let Some(Some((g, at))) = floor_at_invoke.get(&inv.index) {
            if v.generation < *g {
                out.push(format!(
                    "stale read of extent {pid}: event {} read generation {} after event {at} completed with generation {g}",
                    done.index, v.generation
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, process: u64, kind: Type, op: Op) -> Event {
        Event {
            index,
            time_ns: index,
            process,
            kind,
            op,
            error: None,
        }
    }

    fn cas(pid: u64, owner: u32, generation: Option<u64>) -> Op {
        Op::Cas {
            pid,
            expected_generation: 1,
            owner,
            generation,
        }
    }

    fn read(pid: u64, g: u64, owner: u32) -> Op {
        Op::Read {
            pid,
            value: Some(ExtentValue {
                generation: g,
                owner,
            }),
        }
    }

    #[test]
    fn a_final_read_missing_the_last_acknowledged_cas_is_a_lost_write() {
        let mut h = vec![
            ev(0, 1, Type::Invoke, cas(7, 3, None)),
            ev(1, 1, Type::Ok, cas(7, 3, Some(2))),
            ev(
                2,
                FINAL_PROCESS,
                Type::Invoke,
                Op::Read {
                    pid: 7,
                    value: None,
                },
            ),
            ev(3, FINAL_PROCESS, Type::Ok, read(7, 1, 0)),
        ];
        let v = lost_writes_and_stale_reads(&h, &BTreeMap::new());
        assert!(v.iter().any(|s| s.contains("lost write")), "{v:?}");
        // The same final value is fine when it shows the write.
        h[3] = ev(3, FINAL_PROCESS, Type::Ok, read(7, 2, 3));
        assert_eq!(
            lost_writes_and_stale_reads(&h, &BTreeMap::new()),
            Vec::<String>::new()
        );
        // A newer generation needs an unknown write that explains it.
        h[3] = ev(3, FINAL_PROCESS, Type::Ok, read(7, 3, 5));
        assert_eq!(lost_writes_and_stale_reads(&h, &BTreeMap::new()).len(), 1);
        h.insert(2, ev(2, 2, Type::Invoke, cas(7, 5, None)));
        h.insert(3, ev(3, 2, Type::Info, cas(7, 5, None)));
        for (i, e) in h.iter_mut().enumerate() {
            e.index = i as u64;
        }
        assert_eq!(
            lost_writes_and_stale_reads(&h, &BTreeMap::new()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_environment_write_explains_a_newer_final_value_exactly() {
        let h = vec![
            ev(0, 1, Type::Invoke, cas(7, 3, None)),
            ev(1, 1, Type::Ok, cas(7, 3, Some(2))),
            ev(
                2,
                FINAL_PROCESS,
                Type::Invoke,
                Op::Read {
                    pid: 7,
                    value: None,
                },
            ),
            ev(3, FINAL_PROCESS, Type::Ok, read(7, 3, 0)),
        ];
        // Nothing explains generation 3.
        assert_eq!(lost_writes_and_stale_reads(&h, &BTreeMap::new()).len(), 1);
        // A session expiry of the owner did (and cleared the owner).
        let change = |owner_after| EnvChange {
            index: 9,
            generation_before: 2,
            generation_after: 3,
            owner_after,
        };
        let env = BTreeMap::from([(7, vec![change(0)])]);
        assert_eq!(lost_writes_and_stale_reads(&h, &env), Vec::<String>::new());
        // It left another owner than the one read: wrong.
        let env = BTreeMap::from([(7, vec![change(3)])]);
        assert_eq!(lost_writes_and_stale_reads(&h, &env).len(), 1);
    }

    #[test]
    fn an_expiry_of_a_chunk_not_stopped_while_its_session_lived_is_a_violation() {
        use crate::check::replay::{AppliedCmd, AppliedEntry};
        let mut log = AppliedLog::default();
        log.opened.insert((2, 7), 100);
        log.at_ns.insert(5, 10_000);
        log.entries.insert(
            5,
            AppliedEntry {
                index: 5,
                term: 2,
                leader: 1,
                cmds: vec![AppliedCmd {
                    cmd: Cmd::ExpireSession {
                        cid: 2,
                        session_id: 7,
                    },
                    result: Ok(()),
                }],
            },
        );
        let mut stops = BTreeMap::new();
        // The chunk got its registration's reply.
        let mut acks = BTreeMap::from([((2, 7), 100)]);
        let check = |log: &AppliedLog, stops: &_, acks: &_| {
            kept_sessions_never_expired(log, stops, acks, 7_000)
        };
        assert_eq!(check(&log, &stops, &acks).len(), 1);
        // Stopped only before the session opened.
        stops.insert(2, vec![(50, Some(90))]);
        assert_eq!(check(&log, &stops, &acks).len(), 1);
        // The reply was lost: the chunk never knew session 7.
        acks.clear();
        assert!(check(&log, &stops, &acks).is_empty());
        // Another session's acknowledgement does not make 7 known.
        acks.insert((2, 6), 80);
        assert!(check(&log, &stops, &acks).is_empty());
        acks.clear();
        stops.insert(2, vec![(50, Some(90)), (2_000, Some(12_000))]);
        assert!(check(&log, &stops, &acks).is_empty());
        // Still stopped when it expired.
        stops.insert(2, vec![(9_000, None)]);
        assert!(check(&log, &stops, &acks).is_empty());
        // Stopped, but a keepalive was acknowledged just before the expiry.
        acks.insert((2, 7), 9_500);
        assert_eq!(check(&log, &stops, &acks).len(), 1);
        acks.insert((2, 7), 0);
        log.at_ns.insert(5, 4_000_000_000);
        assert!(check(&log, &stops, &acks).is_empty());
    }

    #[test]
    fn a_read_older_than_a_completed_write_is_stale() {
        let h = vec![
            ev(0, 1, Type::Invoke, cas(7, 3, None)),
            ev(1, 1, Type::Ok, cas(7, 3, Some(2))),
            ev(
                2,
                2,
                Type::Invoke,
                Op::Read {
                    pid: 7,
                    value: None,
                },
            ),
            ev(3, 2, Type::Ok, read(7, 1, 0)),
        ];
        let v = lost_writes_and_stale_reads(&h, &BTreeMap::new());
        assert!(v.iter().any(|s| s.contains("stale read")), "{v:?}");
    }

    #[test]
    fn a_node_whose_leader_goes_back_lost_a_vote() {
        let o = |node_id, term, leader_id| Observation {
            time_ns: 0,
            node_id,
            term,
            leader_id,
        };
        // Two leaders in term 2, each node moving forward: legal.
        let fine = [o(1, 2, 1), o(2, 2, 1), o(2, 2, 2), o(1, 2, 0), o(1, 3, 3)];
        assert!(votes_never_go_back(&fine).is_empty());
        assert_eq!(terms_with_several_leaders(&fine), vec![2]);
        assert_eq!(votes_never_go_back(&[o(1, 2, 2), o(1, 2, 1)]).len(), 1);
        assert_eq!(votes_never_go_back(&[o(1, 3, 1), o(1, 2, 3)]).len(), 1);
    }
}
