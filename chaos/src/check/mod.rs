//! The checker: proves or refutes a campaign from the files it left
//! (`history.rs` names them), or from the same pieces in memory (the
//! simulator). Per-key linearizability of the extent register
//! ([`linear`], with [`anomaly`] naming what went wrong) and the domain's
//! invariants ([`invariants`], some on a replay of the Raft log: [`replay`]).
//!
//! A check that lacks an input is `Skipped`, never `Pass`; the verdict is
//! valid when no check failed.

pub mod anomaly;
pub mod invariants;
pub mod linear;
pub mod replay;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::history::{
    self, Campaign, ChunkEvent, Event, FileError, Final, LogRecord, Observation, Op, Type,
    NEMESIS_PROCESS,
};
use anomaly::Anomaly;
use linear::{KeyOutcome, LinearResult, Violation};

/// Most detail lines a check keeps (the rest are counted).
pub const MAX_DETAILS: usize = 20;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    Skipped,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub status: Status,
    /// For people; at most [`MAX_DETAILS`] lines plus one saying how many
    /// there were.
    pub details: Vec<String>,
}

/// Keeps the first [`MAX_DETAILS`] lines and says how many there were.
fn cap(mut d: Vec<String>) -> Vec<String> {
    if d.len() > MAX_DETAILS {
        let n = d.len();
        d.truncate(MAX_DETAILS);
        d.push(format!("... {} more ({n} lines in all)", n - MAX_DETAILS));
    }
    d
}

impl CheckResult {
    pub fn pass(name: &str, details: Vec<String>) -> CheckResult {
        CheckResult {
            name: name.into(),
            status: Status::Pass,
            details: cap(details),
        }
    }

    pub fn fail(name: &str, details: Vec<String>) -> CheckResult {
        CheckResult {
            name: name.into(),
            status: Status::Fail,
            details: cap(details),
        }
    }

    pub fn skipped(name: &str, reason: String) -> CheckResult {
        CheckResult {
            name: name.into(),
            status: Status::Skipped,
            details: vec![reason],
        }
    }

    /// Fail listing `violations` (with their count first), or Pass saying
    /// `ok` (omitted when empty).
    pub fn from_violations(name: &str, violations: Vec<String>, ok: String) -> CheckResult {
        if violations.is_empty() {
            let details = if ok.is_empty() { vec![] } else { vec![ok] };
            return CheckResult::pass(name, details);
        }
        let n = violations.len();
        let mut d = vec![format!("{n} violation{}", if n == 1 { "" } else { "s" })];
        d.extend(violations);
        CheckResult::fail(name, d)
    }
}

/// Counts for the verdict and the summary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client events by `f` (read, cas, create_volume) then type (invoke,
    /// ok, fail, info).
    pub operations: BTreeMap<String, BTreeMap<String, u64>>,
    pub keys_checked: usize,
    /// Nemesis invoke events.
    pub faults_injected: u64,
    pub events: usize,
    /// From the first event to the last.
    pub history_ms: u64,
    /// How long the campaign was asked to run.
    pub campaign_ms: u64,
    /// How long the check took.
    pub check_ms: u64,
}

/// What the per-key linearizability search found, kept in the verdict.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct LinearSummary {
    pub keys: usize,
    pub valid_keys: usize,
    pub unknown_keys: Vec<u64>,
    pub violations: Vec<KeyViolation>,
    pub anomalies: Vec<Anomaly>,
    pub warnings: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KeyViolation {
    pub key: u64,
    pub violation: Violation,
}

impl LinearSummary {
    fn of(r: &LinearResult) -> LinearSummary {
        let mut s = LinearSummary {
            keys: r.keys.len(),
            warnings: r.warnings.clone(),
            ..LinearSummary::default()
        };
        for k in &r.keys {
            match &k.result.outcome {
                KeyOutcome::Valid => s.valid_keys += 1,
                KeyOutcome::Unknown => s.unknown_keys.push(k.key),
                KeyOutcome::Invalid(v) => s.violations.push(KeyViolation {
                    key: k.key,
                    violation: (**v).clone(),
                }),
            }
            s.anomalies.extend(k.anomalies.iter().cloned());
        }
        s
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// No check failed (skipped ones allowed).
    pub valid: bool,
    pub checks: Vec<CheckResult>,
    pub stats: Stats,
    pub linear: LinearSummary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Bound on the linearizability search per key (see
    /// [`linear::DEFAULT_MAX_STATES`]); past it a key is unknown.
    pub max_states_per_key: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_states_per_key: linear::DEFAULT_MAX_STATES,
        }
    }
}

/// A campaign's pieces in memory. `None` = the file was absent.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub campaign: &'a Campaign,
    pub events: &'a [Event],
    pub observations: Option<&'a [Observation]>,
    pub chunk_events: Option<&'a [ChunkEvent]>,
    pub log: Option<&'a [LogRecord]>,
    pub fin: Option<&'a Final>,
}

#[derive(thiserror::Error, Debug)]
pub enum CheckError {
    #[error("{file} is required but absent from {}", dir.display())]
    Missing { dir: PathBuf, file: &'static str },
    #[error(transparent)]
    File(#[from] FileError),
}

/// Runs every check on in-memory pieces.
pub fn check_events(input: &Inputs<'_>, opts: &Options) -> Verdict {
    let started = Instant::now();
    let lin = linear::check_history(input.events, opts.max_states_per_key);
    let digest_at = input
        .fin
        .and_then(|f| f.members.first())
        .map(|m| m.applied_index);
    let rep = input.log.map(|log| {
        replay::replay(
            log,
            input.fin.map(|f| f.log_first_index).filter(|i| *i > 0),
            digest_at,
        )
    });
    let checks = vec![
        invariants::linearizable(&lin),
        invariants::acknowledged_volumes_exist(input.events, input.fin),
        invariants::digests_agree(input.fin, rep.as_ref()),
        invariants::leaders_never_go_back(input.observations, rep.as_ref()),
        invariants::no_stale_term_effects(rep.as_ref()),
        invariants::kept_sessions_never_expired(input.campaign, input.chunk_events, rep.as_ref()),
        invariants::replicas_restored(input.fin),
    ];
    let mut stats = stats(input.campaign, input.events);
    stats.keys_checked = lin.keys.len();
    stats.check_ms = started.elapsed().as_millis() as u64;
    Verdict {
        valid: checks.iter().all(|c| c.status != Status::Fail),
        checks,
        stats,
        linear: LinearSummary::of(&lin),
    }
}

fn f_name(op: &Op) -> &'static str {
    match op {
        Op::Read { .. } => "read",
        Op::Cas { .. } => "cas",
        Op::CreateVolume { .. } => "create_volume",
        Op::Nemesis { .. } => "nemesis",
    }
}

fn type_name(t: Type) -> &'static str {
    match t {
        Type::Invoke => "invoke",
        Type::Ok => "ok",
        Type::Fail => "fail",
        Type::Info => "info",
    }
}

fn stats(campaign: &Campaign, events: &[Event]) -> Stats {
    let mut s = Stats {
        events: events.len(),
        campaign_ms: campaign.duration_ms,
        ..Stats::default()
    };
    for e in events {
        if let Op::Nemesis { action, .. } = &e.op {
            // A fault counts once it is in place: its `info` without error
            // (one that could not be injected says why in `error`).
            if e.kind == Type::Info
                && e.error.is_none()
                && !crate::report::is_heal(action)
                && action != "crash"
            {
                s.faults_injected += 1;
            }
            continue;
        }
        if e.process == NEMESIS_PROCESS {
            continue;
        }
        *s.operations
            .entry(f_name(&e.op).into())
            .or_default()
            .entry(type_name(e.kind).into())
            .or_default() += 1;
    }
    let first = events.iter().map(|e| e.time_ns).min().unwrap_or(0);
    let last = events.iter().map(|e| e.time_ns).max().unwrap_or(0);
    s.history_ms = (last - first) / 1_000_000;
    s
}

/// Reads an optional file: None when it does not exist.
fn optional<T>(
    dir: &Path,
    file: &str,
    read: impl FnOnce(&Path) -> Result<T, FileError>,
) -> Result<Option<T>, CheckError> {
    let p = dir.join(file);
    if !p.exists() {
        return Ok(None);
    }
    Ok(Some(read(&p)?))
}

/// Checks a campaign's directory with the default options.
pub fn check_dir(dir: &Path) -> Result<Verdict, CheckError> {
    check_dir_with(dir, &Options::default())
}

/// Reads the campaign's files (campaign.json and history.jsonl required),
/// runs every check, and writes verdict.json and timeline.svg beside them.
pub fn check_dir_with(dir: &Path, opts: &Options) -> Result<Verdict, CheckError> {
    for file in [history::CAMPAIGN, history::HISTORY] {
        if !dir.join(file).exists() {
            return Err(CheckError::Missing {
                dir: dir.to_path_buf(),
                file,
            });
        }
    }
    let campaign: Campaign = history::read_json(&dir.join(history::CAMPAIGN))?;
    let events: Vec<Event> = history::read_jsonl(&dir.join(history::HISTORY))?;
    let observations: Option<Vec<Observation>> =
        optional(dir, history::MONITOR, history::read_jsonl)?;
    let chunk_events: Option<Vec<ChunkEvent>> = optional(dir, history::FLEET, history::read_jsonl)?;
    let log: Option<Vec<LogRecord>> = optional(dir, history::LOG, history::read_jsonl)?;
    let fin: Option<Final> = optional(dir, history::FINAL, history::read_json)?;
    let verdict = check_events(
        &Inputs {
            campaign: &campaign,
            events: &events,
            observations: observations.as_deref(),
            chunk_events: chunk_events.as_deref(),
            log: log.as_deref(),
            fin: fin.as_ref(),
        },
        opts,
    );
    history::write_json(&dir.join(history::VERDICT), &verdict)?;
    let svg =
        crate::report::timeline_svg(&campaign, &events, observations.as_deref().unwrap_or(&[]));
    let p = dir.join(history::TIMELINE);
    std::fs::write(&p, svg).map_err(|source| FileError::Io {
        path: p.display().to_string(),
        source,
    })?;
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ExtentValue, JsonlWriter};

    fn ev(index: u64, process: u64, kind: Type, op: Op) -> Event {
        Event {
            index,
            time_ns: index * 50_000_000,
            process,
            kind,
            op,
            error: None,
        }
    }

    fn read(pid: u64, v: Option<(u64, u32)>) -> Op {
        Op::Read {
            pid,
            value: v.map(|(generation, owner)| ExtentValue { generation, owner }),
        }
    }

    fn history(last_owner: u32) -> Vec<Event> {
        let nemesis = |action: &str| Op::Nemesis {
            action: action.into(),
            targets: vec![2],
            detail: String::new(),
        };
        vec![
            ev(0, 1, Type::Invoke, read(7, None)),
            ev(1, NEMESIS_PROCESS, Type::Invoke, nemesis("partition")),
            ev(2, 1, Type::Ok, read(7, Some((3, 1)))),
            ev(3, NEMESIS_PROCESS, Type::Info, nemesis("partition")),
            ev(
                4,
                2,
                Type::Invoke,
                Op::Cas {
                    pid: 7,
                    expected_generation: 3,
                    owner: 2,
                    generation: None,
                },
            ),
            ev(
                5,
                2,
                Type::Ok,
                Op::Cas {
                    pid: 7,
                    expected_generation: 3,
                    owner: 2,
                    generation: Some(4),
                },
            ),
            ev(6, NEMESIS_PROCESS, Type::Invoke, nemesis("heal")),
            ev(7, 1, Type::Invoke, read(7, None)),
            ev(8, 1, Type::Ok, read(7, Some((4, last_owner)))),
            ev(9, 3, Type::Invoke, read(8, None)),
        ]
    }

    fn write_dir(dir: &Path, events: &[Event]) {
        let campaign = Campaign {
            mode: "sim".into(),
            duration_ms: 500,
            lease_ms: 7_000,
            ..Campaign::default()
        };
        history::write_json(&dir.join(history::CAMPAIGN), &campaign).unwrap();
        let mut w = JsonlWriter::create(&dir.join(history::HISTORY)).unwrap();
        for e in events {
            w.write(e).unwrap();
        }
        let mut w = JsonlWriter::create(&dir.join(history::MONITOR)).unwrap();
        for (t, term, leader) in [(0, 1, 1), (200_000_000, 2, 3)] {
            w.write(&Observation {
                time_ns: t,
                node_id: 1,
                term,
                leader_id: leader,
            })
            .unwrap();
        }
    }

    #[test]
    fn check_dir_writes_the_verdict_and_the_timeline() {
        let dir = tempfile::tempdir().unwrap();
        write_dir(dir.path(), &history(2));
        let v = check_dir(dir.path()).unwrap();
        assert!(v.valid, "{v:#?}");
        let status =
            |v: &Verdict, name: &str| v.checks.iter().find(|c| c.name == name).unwrap().status;
        assert_eq!(status(&v, "linearizable"), Status::Pass);
        assert_eq!(status(&v, "leaders_never_go_back"), Status::Pass);
        // final.json, fleet.jsonl and log.jsonl are absent
        assert_eq!(status(&v, "replicas_restored"), Status::Skipped);
        assert!(v
            .checks
            .iter()
            .find(|c| c.name == "replicas_restored")
            .unwrap()
            .details[0]
            .contains("final.json absent"));
        assert_eq!(v.stats.faults_injected, 1); // the heal is not a fault
        assert_eq!(v.stats.keys_checked, 1); // the pending read of 8 is dropped
        assert_eq!(v.stats.operations["read"]["invoke"], 3);
        assert_eq!(v.stats.operations["cas"]["ok"], 1);
        let back: Verdict = history::read_json(&dir.path().join(history::VERDICT)).unwrap();
        assert_eq!(back.checks, v.checks);
        let svg = std::fs::read_to_string(dir.path().join(history::TIMELINE)).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("partition"));
    }

    #[test]
    fn check_dir_finds_a_violation_and_needs_its_required_files() {
        let dir = tempfile::tempdir().unwrap();
        write_dir(dir.path(), &history(1)); // the read sees the overwritten owner
        let v = check_dir(dir.path()).unwrap();
        assert!(!v.valid);
        assert_eq!(v.linear.violations.len(), 1);
        assert_eq!(v.linear.violations[0].key, 7);
        assert_eq!(v.linear.anomalies[0].kind, anomaly::AnomalyKind::LostWrite);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            check_dir(empty.path()),
            Err(CheckError::Missing {
                file: "campaign.json",
                ..
            })
        ));
    }
}
