//! The domain's invariants, checked on what a campaign left behind. Each
//! check is a function returning a [`CheckResult`]; an input it needs that
//! is absent makes it `Skipped` with the reason, never `Pass`.

use std::collections::{BTreeMap, BTreeSet};

use cairn_state::Cmd;

use super::linear::{KeyOutcome, LinearResult};
use super::replay::{AppliedEntry, Replay, ReplayError};
use super::{CheckResult, Status};
use crate::history::{
    Campaign, ChunkEvent, Event, Final, Observation, Op, Type, FINAL, FLEET, LOG, MONITOR,
};

/// A replayed log, or why there is none (None = `log.jsonl` absent).
pub type ReplayInput<'a> = Option<&'a Result<Replay, ReplayError>>;

fn absent(name: &str, file: &str) -> CheckResult {
    CheckResult::skipped(name, format!("file {file} absent"))
}

/// Every CreateVolume acknowledged Ok exists at the end, with every extent.
pub fn acknowledged_volumes_exist(events: &[Event], fin: Option<&Final>) -> CheckResult {
    const NAME: &str = "acknowledged_volumes_exist";
    let Some(fin) = fin else {
        return absent(NAME, FINAL);
    };
    let volumes: BTreeMap<u64, &str> = fin.volumes.iter().map(|(i, n)| (*i, n.as_str())).collect();
    let extents: BTreeMap<u64, u64> = fin.extents.iter().map(|e| (e.pid, e.volume_id)).collect();
    let mut bad = Vec::new();
    let mut acked = 0;
    for e in events.iter().filter(|e| e.kind == Type::Ok) {
        let Op::CreateVolume {
            name,
            extents: n,
            volume_id: Some(vid),
            first_pid,
        } = &e.op
        else {
            continue;
        };
        acked += 1;
        match volumes.get(vid) {
            None => bad.push(format!(
                "volume {vid} ({name:?}, acknowledged at #{}) is missing",
                e.index
            )),
            Some(got) if got != name => bad.push(format!(
                "volume {vid} is named {got:?}, but {name:?} was acknowledged at #{}",
                e.index
            )),
            Some(_) => {}
        }
        match first_pid {
            Some(fp) => {
                let missing: Vec<u64> = (*fp..fp.saturating_add(*n))
                    .filter(|pid| extents.get(pid) != Some(vid))
                    .collect();
                if !missing.is_empty() {
                    bad.push(format!(
                        "volume {vid} ({name:?}): {} of its {n} extents missing, first {:?}",
                        missing.len(),
                        &missing[..missing.len().min(5)]
                    ));
                }
            }
            None => {
                let have = extents.values().filter(|v| *v == vid).count() as u64;
                if have != *n {
                    bad.push(format!(
                        "volume {vid} ({name:?}): {have} extents at the end, {n} acknowledged"
                    ));
                }
            }
        }
    }
    CheckResult::from_violations(
        NAME,
        bad,
        format!("{acked} acknowledged volumes all exist with every extent"),
    )
}

/// Every member converged to the same applied index and digest, and (when
/// the whole log is there) replaying it from an empty state gives that
/// digest: the members' state is exactly what the committed log says.
pub fn digests_agree(fin: Option<&Final>, replay: ReplayInput<'_>) -> CheckResult {
    const NAME: &str = "digests_agree";
    let Some(fin) = fin else {
        return absent(NAME, FINAL);
    };
    let members: Vec<String> = fin
        .members
        .iter()
        .map(|m| {
            format!(
                "member {}: term {}, applied {}, digest {:016x}",
                m.node_id, m.term, m.applied_index, m.digest
            )
        })
        .collect();
    let Some(first) = fin.members.first() else {
        return CheckResult::fail(NAME, vec!["no member reported its state".into()]);
    };
    if !fin.converged {
        let mut d = vec!["the cluster did not converge before the deadline".to_string()];
        d.extend(members);
        return CheckResult::fail(NAME, d);
    }
    if fin
        .members
        .iter()
        .any(|m| m.applied_index != first.applied_index || m.digest != first.digest)
    {
        let mut d = vec!["members disagree".to_string()];
        d.extend(members);
        return CheckResult::fail(NAME, d);
    }
    let agree = format!(
        "{} members agree: applied {}, digest {:016x}",
        fin.members.len(),
        first.applied_index,
        first.digest
    );
    match replay {
        None => CheckResult::pass(NAME, vec![agree, format!("file {LOG} absent: not replayed")]),
        Some(Err(e)) => CheckResult::skipped(NAME, format!("{agree}; log not replayed: {e}")),
        Some(Ok(r)) => match r.digest {
            Some((_, d)) if d == first.digest => CheckResult::pass(
                NAME,
                vec![
                    agree,
                    "the log replayed from an empty state gives the same digest".into(),
                ],
            ),
            Some((i, d)) => CheckResult::fail(
                NAME,
                vec![
                    agree,
                    format!("the log replayed to index {i} gives digest {d:016x}: the members' state is not what the log says"),
                ],
            ),
            None => CheckResult::skipped(
                NAME,
                format!(
                    "{agree}; the log ends at index {}, before the applied index",
                    r.last_index
                ),
            ),
        },
    }
}

/// Election safety as openraft defines it. Cairn's openraft identifies a
/// leader by (term, node id) (its default "advanced" leader ids; the
/// `single-term-leader` mode would change the log's bytes), so one term may
/// see successive leaders, each with a higher node id than the last. What
/// must hold: no member ever goes back to an older leader id, and the
/// committed log's leader ids never go back either (an entry of an older
/// leader committed after a newer one's is a split brain). Terms with
/// several leaders are counted, not failed.
pub fn leaders_never_go_back(
    obs: Option<&[Observation]>,
    replay: Option<&Result<Replay, ReplayError>>,
) -> CheckResult {
    const NAME: &str = "leaders_never_go_back";
    let Some(obs) = obs else {
        return absent(NAME, MONITOR);
    };
    let mut bad = vec![];
    let mut last: BTreeMap<u64, &Observation> = BTreeMap::new();
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for o in obs.iter().filter(|o| o.leader_id != 0) {
        leaders.entry(o.term).or_default().insert(o.leader_id);
        if let Some(prev) = last.get(&o.node_id) {
            if (o.term, o.leader_id) < (prev.term, prev.leader_id) {
                bad.push(format!(
                    "member {} followed leader {} of term {} at {:.3}s, after leader {} of term {} at {:.3}s",
                    o.node_id,
                    o.leader_id,
                    o.term,
                    o.time_ns as f64 / 1e9,
                    prev.leader_id,
                    prev.term,
                    prev.time_ns as f64 / 1e9
                ));
            }
        }
        last.insert(o.node_id, o);
    }
    let mut log_note = "no log to check";
    if let Some(Ok(r)) = replay {
        log_note = "committed log in leader order";
        let mut prev: Option<(u64, u64, u64)> = None;
        for e in &r.entries {
            let id = (e.term, e.leader);
            if let Some((t, l, index)) = prev {
                if id < (t, l) {
                    bad.push(format!(
                        "log entry {} of leader {} (term {}) was committed after entry {index} of leader {l} (term {t})",
                        e.index, e.leader, e.term
                    ));
                }
            }
            prev = Some((e.term, e.leader, e.index));
        }
    }
    let shared = leaders.values().filter(|l| l.len() > 1).count();
    CheckResult::from_violations(
        NAME,
        bad,
        format!(
            "{} terms with a leader ({shared} with successive leaders) in {} observations; {log_note}",
            leaders.len(),
            obs.len()
        ),
    )
}

/// The rule of `no_stale_term_effects` as a pure function over the applied
/// entries: a term-stamped command (IssueCopy, AdoptCopies, FinishCopy)
/// applied Ok while an entry of a higher term was already applied is a
/// deposed leader's decision taking effect; an IssueCopy or AdoptCopies
/// applied Ok with a term other than its entry's was decided in another
/// term than it was proposed in.
pub fn stale_term_violations(entries: &[AppliedEntry]) -> Vec<String> {
    let mut out = Vec::new();
    let mut highest = 0u64;
    for e in entries {
        for c in e.cmds.iter().filter(|c| c.result.is_ok()) {
            let (what, stamped, must_match) = match &c.cmd {
                Cmd::IssueCopy(i) => (format!("IssueCopy(pid {})", i.pid), i.term, true),
                Cmd::AdoptCopies { term } => ("AdoptCopies".to_string(), *term, true),
                Cmd::FinishCopy(f) => (format!("FinishCopy(copy {})", f.copy_id), f.term, false),
                _ => continue,
            };
            if stamped < highest {
                out.push(format!(
                    "entry {} (term {}): {what} stamped with term {stamped} took effect after an entry of term {highest}: a deposed leader's decision",
                    e.index, e.term
                ));
            } else if must_match && stamped != e.term {
                out.push(format!(
                    "entry {} (term {}): {what} stamped with term {stamped} took effect in another term's entry",
                    e.index, e.term
                ));
            }
        }
        highest = highest.max(e.term);
    }
    out
}

pub fn no_stale_term_effects(replay: ReplayInput<'_>) -> CheckResult {
    const NAME: &str = "no_stale_term_effects";
    match replay {
        None => absent(NAME, LOG),
        Some(Err(e)) => CheckResult::skipped(NAME, e.to_string()),
        Some(Ok(r)) => {
            let stamped = r
                .entries
                .iter()
                .flat_map(|e| &e.cmds)
                .filter(|c| {
                    c.result.is_ok()
                        && matches!(
                            c.cmd,
                            Cmd::IssueCopy(_) | Cmd::AdoptCopies { .. } | Cmd::FinishCopy(_)
                        )
                })
                .count();
            CheckResult::from_violations(
                NAME,
                stale_term_violations(&r.entries),
                format!(
                    "{stamped} term-stamped commands applied in {} entries, none stale",
                    r.entries.len()
                ),
            )
        }
    }
}

/// A chunk the nemeses never stop keeps its session: the fleet never sees
/// it lost and the log never expires it. A chunk they may stop must not
/// lose its session while running with a keepalive acknowledged less than
/// half a lease ago.
pub fn kept_sessions_never_expired(
    campaign: &Campaign,
    chunk_events: Option<&[ChunkEvent]>,
    replay: ReplayInput<'_>,
) -> CheckResult {
    const NAME: &str = "kept_sessions_never_expired";
    if chunk_events.is_none() && replay.is_none() {
        return CheckResult::skipped(NAME, format!("files {FLEET} and {LOG} absent"));
    }
    let faulty: BTreeSet<u32> = campaign.faulty_cids.iter().copied().collect();
    let mut bad = Vec::new();
    let mut notes = Vec::new();
    match chunk_events {
        None => notes.push(format!("file {FLEET} absent: fleet events not checked")),
        Some(evs) => {
            let mut sorted: Vec<&ChunkEvent> = evs.iter().collect();
            sorted.sort_by_key(|e| e.wall_ms);
            let mut stopped: BTreeMap<u32, bool> = BTreeMap::new();
            let mut lost = 0;
            for e in sorted {
                match e.event.as_str() {
                    "stopped" => {
                        stopped.insert(e.cid, true);
                    }
                    "started" | "opened" => {
                        stopped.insert(e.cid, false);
                    }
                    "lost" => {
                        lost += 1;
                        let since_ack = e.wall_ms.saturating_sub(e.last_ack_ms);
                        let was_stopped = stopped.get(&e.cid).copied().unwrap_or(false);
                        if !faulty.contains(&e.cid) {
                            bad.push(format!(
                                "chunk {} (never stopped by a nemesis) lost session {} at wall {} ms, {since_ack} ms after its last acknowledged keepalive",
                                e.cid, e.session_id, e.wall_ms
                            ));
                        } else if !was_stopped
                            && e.last_ack_ms > 0
                            && since_ack < campaign.lease_ms / 2
                        {
                            bad.push(format!(
                                "chunk {} lost session {} at wall {} ms while running, only {since_ack} ms after an acknowledged keepalive (lease {} ms)",
                                e.cid, e.session_id, e.wall_ms, campaign.lease_ms
                            ));
                        }
                    }
                    _ => {}
                }
            }
            notes.push(format!("{} fleet events, {lost} sessions lost", evs.len()));
        }
    }
    match replay {
        None => notes.push(format!(
            "file {LOG} absent: expiries in the log not checked"
        )),
        Some(Err(e)) => notes.push(format!("expiries in the log not checked: {e}")),
        Some(Ok(r)) => {
            let mut expired = 0;
            for e in &r.entries {
                for c in e.cmds.iter().filter(|c| c.result.is_ok()) {
                    if let Cmd::ExpireSession { cid, session_id } = c.cmd {
                        expired += 1;
                        if !faulty.contains(&cid) {
                            bad.push(format!(
                                "entry {} (term {}): ExpireSession of chunk {cid} (session {session_id}), which no nemesis stopped",
                                e.index, e.term
                            ));
                        }
                    }
                }
            }
            notes.push(format!(
                "{expired} sessions expired in the log, all of stopped chunks"
            ));
        }
    }
    if bad.is_empty() {
        CheckResult::pass(NAME, notes)
    } else {
        CheckResult::from_violations(NAME, bad, String::new())
    }
}

/// After healing, every extent is back to its volume's replica count, all alive.
pub fn replicas_restored(fin: Option<&Final>) -> CheckResult {
    const NAME: &str = "replicas_restored";
    let Some(fin) = fin else {
        return absent(NAME, FINAL);
    };
    if fin.extents.is_empty() {
        return CheckResult::skipped(NAME, "final.json lists no extent".into());
    }
    let bad = fin
        .extents
        .iter()
        .filter(|e| e.loc.len() != e.replicas as usize || e.alive_loc.len() != e.replicas as usize)
        .map(|e| {
            format!(
                "extent {} (volume {}): loc {:?}, alive {:?}, {} replicas expected",
                e.pid, e.volume_id, e.loc, e.alive_loc, e.replicas
            )
        })
        .collect();
    CheckResult::from_violations(
        NAME,
        bad,
        format!("{} extents all fully replicated", fin.extents.len()),
    )
}

/// Wraps [`super::linear`]: Fail when a key is not linearizable (or an
/// anomaly proves it), Skipped when some key could not be decided in the
/// search bound and none failed.
pub fn linearizable(r: &LinearResult) -> CheckResult {
    const NAME: &str = "linearizable";
    let ops: usize = r.keys.iter().map(|k| k.result.ops).sum();
    let mut details = Vec::new();
    for k in r.invalid_keys() {
        if let KeyOutcome::Invalid(v) = &k.result.outcome {
            details.push(format!("extent {}: {}", k.key, v.explanation));
            for c in v.concurrent.iter().take(4) {
                details.push(format!("  concurrent: {c}"));
            }
            if v.concurrent.len() > 4 {
                details.push(format!(
                    "  ... {} concurrent ops in all",
                    v.concurrent.len()
                ));
            }
        } else {
            details.push(format!(
                "extent {}: search bound reached, but anomalies prove a violation",
                k.key
            ));
        }
        for a in &k.anomalies {
            details.push(format!("  {}: {}", a.kind, a.explanation));
        }
    }
    let warnings = r.warnings.iter().map(|w| format!("warning: {w}"));
    if !details.is_empty() {
        details.extend(warnings);
        return CheckResult::fail(NAME, details);
    }
    let unknown: Vec<u64> = r.unknown_keys().map(|k| k.key).collect();
    if r.keys.is_empty() {
        return CheckResult::skipped(NAME, "no read or cas in the history".into());
    }
    if !unknown.is_empty() {
        let mut d = vec![format!(
            "{} of {} keys not decided within the search bound: {:?}; the others are linearizable",
            unknown.len(),
            r.keys.len(),
            &unknown[..unknown.len().min(10)]
        )];
        d.extend(warnings);
        return CheckResult {
            name: NAME.into(),
            status: Status::Skipped,
            details: super::cap(d),
        };
    }
    let mut d = vec![format!(
        "{} keys, {ops} operations linearizable",
        r.keys.len()
    )];
    d.extend(warnings);
    CheckResult::pass(NAME, d)
}

#[cfg(test)]
mod tests {
    use super::super::replay::tests::{finish, issue, rec, small_log};
    use super::super::replay::{replay, AppliedCmd};
    use super::*;
    use crate::history::{FinalExtent, FinalMember, LogRecord};

    fn vol_event(index: u64, kind: Type, vid: Option<u64>, first_pid: Option<u64>) -> Event {
        Event {
            index,
            time_ns: index,
            process: 1,
            kind,
            op: Op::CreateVolume {
                name: "v1".into(),
                extents: 2,
                volume_id: vid,
                first_pid,
            },
            error: None,
        }
    }

    fn extent(pid: u64, loc: &[u32], alive: &[u32]) -> FinalExtent {
        FinalExtent {
            pid,
            volume_id: 1,
            replicas: 2,
            loc: loc.to_vec(),
            alive_loc: alive.to_vec(),
            generation: 1,
            owner: 0,
        }
    }

    #[test]
    fn acknowledged_volumes_exist_with_every_extent() {
        let events = vec![
            vol_event(0, Type::Invoke, None, None),
            vol_event(1, Type::Ok, Some(1), Some(10)),
            // a failed create promises nothing
            vol_event(2, Type::Fail, None, None),
        ];
        let mut fin = Final {
            volumes: vec![(1, "v1".into())],
            extents: vec![extent(10, &[1, 2], &[1, 2]), extent(11, &[1, 2], &[1, 2])],
            ..Final::default()
        };
        assert_eq!(
            acknowledged_volumes_exist(&events, Some(&fin)).status,
            Status::Pass
        );
        fin.extents.pop();
        let r = acknowledged_volumes_exist(&events, Some(&fin));
        assert_eq!(r.status, Status::Fail);
        assert!(r.details[1].contains("[11]"), "{r:?}");
        fin.volumes.clear();
        assert_eq!(
            acknowledged_volumes_exist(&events, Some(&fin)).status,
            Status::Fail
        );
        assert_eq!(
            acknowledged_volumes_exist(&events, None).status,
            Status::Skipped
        );
    }

    fn member(node_id: u64, applied_index: u64, digest: u64) -> FinalMember {
        FinalMember {
            node_id,
            term: 1,
            applied_index,
            digest,
        }
    }

    #[test]
    fn digests_agree_with_each_other_and_with_the_replayed_log() {
        let log = small_log();
        let good = replay(&log, Some(1), Some(5)).unwrap().digest.unwrap().1;
        let fin = Final {
            converged: true,
            members: vec![member(1, 5, good), member(2, 5, good), member(3, 5, good)],
            log_first_index: 1,
            ..Final::default()
        };
        let r = replay(&log, Some(1), Some(5));
        assert_eq!(digests_agree(Some(&fin), Some(&r)).status, Status::Pass);
        assert_eq!(digests_agree(Some(&fin), None).status, Status::Pass);
        // a member that disagrees
        let mut split = fin.clone();
        split.members[2].digest ^= 1;
        assert_eq!(digests_agree(Some(&split), None).status, Status::Fail);
        // members that agree on a state the log does not give
        let mut forged = fin.clone();
        for m in &mut forged.members {
            m.digest ^= 1;
        }
        assert_eq!(digests_agree(Some(&forged), Some(&r)).status, Status::Fail);
        // not converged
        let mut slow = fin.clone();
        slow.converged = false;
        assert_eq!(digests_agree(Some(&slow), Some(&r)).status, Status::Fail);
        // a purged log cannot prove anything
        let purged = replay(&log[2..], Some(3), Some(5));
        let p = digests_agree(Some(&fin), Some(&purged));
        assert_eq!(p.status, Status::Skipped);
        assert!(p.details[0].contains("purged"), "{p:?}");
    }

    fn obs(node_id: u64, term: u64, leader_id: u64) -> Observation {
        Observation {
            time_ns: node_id * 1000,
            node_id,
            term,
            leader_id,
        }
    }

    #[test]
    fn leaders_never_go_back_per_member_and_in_the_log() {
        // successive leaders in one term (openraft's (term, node) leader ids)
        let ok = vec![
            obs(1, 1, 1),
            obs(2, 1, 1),
            obs(3, 2, 0),
            obs(2, 2, 3),
            obs(3, 2, 3),
        ];
        let r = leaders_never_go_back(Some(&ok), None);
        assert_eq!(r.status, Status::Pass, "{r:?}");
        let mut shared = ok.clone();
        shared.push(obs(1, 2, 2)); // member 1 saw leader 2 of term 2, a lagging view
        shared.push(obs(1, 2, 3)); // then 3: upward
        let r = leaders_never_go_back(Some(&shared), None);
        assert_eq!(r.status, Status::Pass, "{r:?}");
        assert!(r.details[0].contains("1 with successive leaders"), "{r:?}");
        // a member going back to an older leader id is a violation
        let mut back = ok.clone();
        back.push(obs(2, 2, 2));
        let r = leaders_never_go_back(Some(&back), None);
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.details[1].contains("member 2 followed leader 2 of term 2"),
            "{r:?}"
        );
        assert_eq!(leaders_never_go_back(None, None).status, Status::Skipped);

        // in the committed log, leader ids only go up
        let blank = |index, term, leader| LogRecord {
            index,
            term,
            leader,
            payload: "blank".into(),
            leader_time_ms: 0,
            cmds: vec![],
        };
        let good = [
            blank(1, 1, 1),
            blank(2, 2, 2),
            blank(3, 2, 3),
            blank(4, 3, 1),
        ];
        let r = leaders_never_go_back(
            Some(&ok),
            Some(&crate::check::replay::replay(&good, None, None)),
        );
        assert_eq!(r.status, Status::Pass, "{r:?}");
        let split = [blank(1, 1, 1), blank(2, 2, 3), blank(3, 2, 2)];
        let r = leaders_never_go_back(
            Some(&ok),
            Some(&crate::check::replay::replay(&split, None, None)),
        );
        assert_eq!(r.status, Status::Fail, "{r:?}");
        assert!(
            r.details[1].contains("log entry 3 of leader 2 (term 2)"),
            "{r:?}"
        );
    }

    #[test]
    fn a_stale_terms_copy_decision_taking_effect_is_a_violation() {
        // given a copy issued in term 1 and a new leader's entry of term 3
        let mut log = small_log();
        log.push(rec(6, 3, vec![]));
        // when the old term's FinishCopy is applied Ok (nobody adopted the copy)
        log.push(rec(7, 3, vec![finish(1)]));
        let r = replay(&log, Some(1), None);
        let applied = &r.as_ref().unwrap().entries[6].cmds[0];
        assert!(applied.result.is_ok(), "{applied:?}");
        // then
        let c = no_stale_term_effects(Some(&r));
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.details[0], "1 violation");
        assert!(c.details[1].contains("entry 7"), "{c:?}");
        // and with the copies adopted first, the old FinishCopy is refused
        let mut adopted = small_log();
        adopted.push(rec(6, 3, vec![Cmd::AdoptCopies { term: 3 }]));
        adopted.push(rec(7, 3, vec![finish(1)]));
        let r = replay(&adopted, Some(1), None);
        assert_eq!(no_stale_term_effects(Some(&r)).status, Status::Pass);
        assert!(r.unwrap().entries[6].cmds[0].result.is_err());
        // a purged log is skipped
        assert_eq!(
            no_stale_term_effects(Some(&replay(&log[3..], None, None))).status,
            Status::Skipped
        );
    }

    #[test]
    fn stale_term_rule_on_constructed_entries() {
        let entry = |index, term, cmd: Cmd, ok: bool| AppliedEntry {
            index,
            term,
            leader: 1,
            cmds: vec![AppliedCmd {
                cmd,
                result: if ok { Ok(()) } else { Err("refused".into()) },
            }],
        };
        let blank = |index, term| AppliedEntry {
            index,
            term,
            leader: 1,
            cmds: vec![],
        };
        // an IssueCopy of term 2 applied after an entry of term 3
        let v = stale_term_violations(&[blank(1, 3), entry(2, 3, issue(2), true)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("deposed"), "{v:?}");
        // the same refused by apply is fine
        assert!(stale_term_violations(&[blank(1, 3), entry(2, 3, issue(2), false)]).is_empty());
        // an AdoptCopies stamped with another term than its entry's
        let v = stale_term_violations(&[entry(1, 2, Cmd::AdoptCopies { term: 1 }, true)]);
        assert_eq!(v.len(), 1, "{v:?}");
        // while the current term's decisions are fine
        assert!(stale_term_violations(&[
            blank(1, 2),
            entry(2, 2, issue(2), true),
            entry(3, 3, Cmd::AdoptCopies { term: 3 }, true),
            entry(4, 3, finish(3), true),
        ])
        .is_empty());
    }

    fn chunk(wall_ms: u64, cid: u32, event: &str, last_ack_ms: u64) -> ChunkEvent {
        ChunkEvent {
            wall_ms,
            cid,
            event: event.into(),
            session_id: 1,
            last_ack_ms,
        }
    }

    #[test]
    fn kept_sessions_never_expired_from_fleet_events_and_the_log() {
        let campaign = Campaign {
            lease_ms: 7_000,
            faulty_cids: vec![3],
            ..Campaign::default()
        };
        // chunk 3 is stopped, then loses its session late: fine
        let fine = vec![
            chunk(0, 1, "opened", 0),
            chunk(0, 3, "opened", 0),
            chunk(1_000, 3, "stopped", 0),
            chunk(9_000, 3, "lost", 900),
            chunk(9_500, 3, "started", 0),
        ];
        let r = kept_sessions_never_expired(&campaign, Some(&fine), None);
        assert_eq!(r.status, Status::Pass, "{r:?}");
        // chunk 1 was never stopped
        let mut lost_kept = fine.clone();
        lost_kept.push(chunk(10_000, 1, "lost", 9_000));
        assert_eq!(
            kept_sessions_never_expired(&campaign, Some(&lost_kept), None).status,
            Status::Fail
        );
        // chunk 3 lost its session while running, 1 s after an ack
        let early = vec![chunk(0, 3, "opened", 0), chunk(5_000, 3, "lost", 4_000)];
        assert_eq!(
            kept_sessions_never_expired(&campaign, Some(&early), None).status,
            Status::Fail
        );
        // the log expired chunk 2, which no nemesis touches
        let mut log = small_log();
        log.push(rec(
            6,
            1,
            vec![Cmd::ExpireSession {
                cid: 2,
                session_id: 2,
            }],
        ));
        let r = replay(&log, Some(1), None);
        assert!(r.as_ref().unwrap().entries[5].cmds[0].result.is_ok());
        let c = kept_sessions_never_expired(&campaign, None, Some(&r));
        assert_eq!(c.status, Status::Fail, "{c:?}");
        // while expiring chunk 3 is allowed
        let mut log = small_log();
        log.push(rec(
            6,
            1,
            vec![Cmd::ExpireSession {
                cid: 3,
                session_id: 3,
            }],
        ));
        let r = replay(&log, Some(1), None);
        assert_eq!(
            kept_sessions_never_expired(&campaign, Some(&fine), Some(&r)).status,
            Status::Pass
        );
        assert_eq!(
            kept_sessions_never_expired(&campaign, None, None).status,
            Status::Skipped
        );
    }

    #[test]
    fn replicas_restored_lists_the_short_extents() {
        let mut fin = Final {
            extents: vec![extent(1, &[1, 2], &[1, 2]), extent(2, &[2, 3], &[2, 3])],
            ..Final::default()
        };
        assert_eq!(replicas_restored(Some(&fin)).status, Status::Pass);
        fin.extents[1].alive_loc = vec![2];
        let r = replicas_restored(Some(&fin));
        assert_eq!(r.status, Status::Fail);
        assert!(r.details[1].starts_with("extent 2"), "{r:?}");
        assert_eq!(replicas_restored(None).status, Status::Skipped);
    }
}
