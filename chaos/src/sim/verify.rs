//! The simulator's own checks, simple and exact (the full linearizability
//! check of the history is the checker's job):
//!
//! - **one leader per term**: no two nodes name different leaders for one
//!   term;
//! - **final state**: after healing, every node at the same applied index
//!   with the same digest;
//! - **lost writes**: per extent, the final (sequential, linearizable) read
//!   shows the last acknowledged CAS — the Ok CAS with the highest
//!   generation G and its owner — unless `Info` CAS operations on that extent
//!   explain a newer value: final generation F < G is a lost write; F == G
//!   needs the acknowledged owner; F > G needs at least F − G `Info` CAS on
//!   the extent (nothing else changes generations in the simulator: no
//!   scheduler runs) and an owner one of them wrote;
//! - **stale reads**: a read invoked after a CAS (or read) completed Ok with
//!   generation G must return at least G (generations only grow);
//! - an acknowledged volume exists at the end, with every extent.

use std::collections::BTreeMap;

use crate::history::{Event, ExtentValue, FinalMember, Observation, Op, Type};

use super::workload::FINAL_PROCESS;

pub fn one_leader_per_term(observations: &[Observation]) -> Vec<String> {
    let mut leaders: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut out = Vec::new();
    for o in observations.iter().filter(|o| o.leader_id != 0) {
        match leaders.get(&o.term) {
            None => {
                leaders.insert(o.term, (o.leader_id, o.node_id));
            }
            Some(&(l, by)) if l != o.leader_id => out.push(format!(
                "two leaders in term {}: n{by} says n{l}, n{} says n{}",
                o.term, o.node_id, o.leader_id
            )),
            Some(_) => {}
        }
    }
    out
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

pub fn lost_writes_and_stale_reads(history: &[Event]) -> Vec<String> {
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
        let why = if fin.generation < g {
            Some(format!(
                "lost write: generation {g} (owner {owner}) was acknowledged"
            ))
        } else if fin.generation == g && fin.owner != owner {
            Some(format!(
                "generation {g} was acknowledged with owner {owner}"
            ))
        } else if fin.generation > g
            && (fin.generation - g > info.len() as u64 || !info.contains(&fin.owner))
        {
            Some(format!(
                "generation moved from acknowledged {g} without enough unknown writes ({} info CAS, owners {info:?})",
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
        let v = lost_writes_and_stale_reads(&h);
        assert!(v.iter().any(|s| s.contains("lost write")), "{v:?}");
        // The same final value is fine when it shows the write.
        h[3] = ev(3, FINAL_PROCESS, Type::Ok, read(7, 2, 3));
        assert_eq!(lost_writes_and_stale_reads(&h), Vec::<String>::new());
        // A newer generation needs an unknown write that explains it.
        h[3] = ev(3, FINAL_PROCESS, Type::Ok, read(7, 3, 5));
        assert_eq!(lost_writes_and_stale_reads(&h).len(), 1);
        h.insert(2, ev(2, 2, Type::Invoke, cas(7, 5, None)));
        h.insert(3, ev(3, 2, Type::Info, cas(7, 5, None)));
        for (i, e) in h.iter_mut().enumerate() {
            e.index = i as u64;
        }
        assert_eq!(lost_writes_and_stale_reads(&h), Vec::<String>::new());
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
        let v = lost_writes_and_stale_reads(&h);
        assert!(v.iter().any(|s| s.contains("stale read")), "{v:?}");
    }

    #[test]
    fn two_leaders_in_one_term_are_reported() {
        let o = |node_id, term, leader_id| Observation {
            time_ns: 0,
            node_id,
            term,
            leader_id,
        };
        assert!(one_leader_per_term(&[o(1, 2, 1), o(2, 2, 1), o(3, 3, 3)]).is_empty());
        assert_eq!(one_leader_per_term(&[o(1, 2, 1), o(2, 2, 2)]).len(), 1);
    }
}
