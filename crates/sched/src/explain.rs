//! `cairn sched explain <pid>` (DOMAIN.md §5: "every decision must be
//! visible"): what the scheduler would do with one extent now, and why.
//!
//! The explanation is not a second copy of the rules. The planners
//! ([`crate::recover`], [`crate::migrate`]) report every decision they take
//! to an [`Observe`]r as they take it: each candidate chunk with the check
//! that rejected it (in the order the checks run) or the very key they rank
//! it by, each rule they try and what it gave. The scheduler's rounds pass
//! [`NoObserve`], whose methods are empty and whose [`Observe::ENABLED`] is
//! false, so the reports compile away (no allocation, no extra work on the
//! planning path); [`Scheduler::explain`] passes a recorder to the same
//! functions, so what it prints is what a round would issue.

use std::fmt;

use cairn_state::{Cid, LoadMode, LoadRatio, Pid, State, VolumeId};
use thiserror::Error;

use crate::cmd::{DstReject, Kind, NoPlan, OwnerSource, SchedCmd, Why};
use crate::migrate::{
    plan_migrate_extent_observed, volume_replica_counts, Balance, CapacityDstKey,
    CapacityReplaceKey, EvenDstKey, EvenReplaceKey, GatherDstKey, GatherReplaceKey,
    LocalityReplaceKey, MigrateCtx, ReplaceReject, SafetyDstKey,
};
use crate::queue::Band;
use crate::recover::{
    needs_recover, plan_recover_extent_observed, RecoverDstKey, RecoverSrcKey, SrcReject,
};
use crate::rules::cluster_load_mode;
use crate::scheduler::{revalidate_fixed, Scheduler};

// ---- the observer ----------------------------------------------------------

/// Receives the planners' decisions as they are taken. Calls come in this
/// shape: `rule` opens a rule (recover, or one migrate rule); inside it,
/// `src` (recover), `expected` and `replace` lines, then zero or more
/// destination searches (`dst_search`, one `dst` per chunk in cid order,
/// `dst_best`, maybe `dst_dropped`); `rule_end` closes it; `owner` comes
/// once the command's owner is decided.
pub trait Observe {
    /// False: the planner skips the work done only to report.
    const ENABLED: bool;
    /// A rule starts; `owner_replaceable`: the lease owner may be the replica dropped.
    fn rule(&mut self, why: Why, owner_replaceable: bool);
    /// Recover: an alive replica as copy source, with its rank or why not.
    fn src(&mut self, cid: Cid, verdict: Result<RecoverSrcKey, SrcReject>);
    /// The expected distribution the rule measures the replicas against.
    fn expected(&mut self, cids: &[Cid]);
    /// An alive replica as the one to drop, with its rank or why not.
    fn replace(&mut self, cid: Cid, verdict: Result<ReplaceScore, ReplaceReject>);
    /// A destination search starts (for a move away from `replace`).
    fn dst_search(&mut self, replace: Option<Cid>);
    /// One chunk as destination: the check that rejected it or its rank.
    fn dst(&mut self, cid: Cid, verdict: Result<Score, DstReject>);
    /// The search's best candidate (None: every chunk was rejected).
    fn dst_best(&mut self, best: Option<Cid>);
    /// The search's best candidate was then refused as a whole.
    fn dst_dropped(&mut self, why: DstReject);
    /// The owner decision: `src` as chosen, the owner (None: no chunk can
    /// own the lease), and `final_src` after the owner rule.
    fn owner(&mut self, src: Cid, dst: Cid, owner: Option<(Cid, OwnerSource)>, final_src: Cid);
    /// The rule ends.
    fn rule_end(&mut self, outcome: RuleOutcome);
}

/// The planners' observer in the scheduler's rounds: nothing is reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserve;

impl Observe for NoObserve {
    const ENABLED: bool = false;
    #[inline(always)]
    fn rule(&mut self, _: Why, _: bool) {}
    #[inline(always)]
    fn src(&mut self, _: Cid, _: Result<RecoverSrcKey, SrcReject>) {}
    #[inline(always)]
    fn expected(&mut self, _: &[Cid]) {}
    #[inline(always)]
    fn replace(&mut self, _: Cid, _: Result<ReplaceScore, ReplaceReject>) {}
    #[inline(always)]
    fn dst_search(&mut self, _: Option<Cid>) {}
    #[inline(always)]
    fn dst(&mut self, _: Cid, _: Result<Score, DstReject>) {}
    #[inline(always)]
    fn dst_best(&mut self, _: Option<Cid>) {}
    #[inline(always)]
    fn dst_dropped(&mut self, _: DstReject) {}
    #[inline(always)]
    fn owner(&mut self, _: Cid, _: Cid, _: Option<(Cid, OwnerSource)>, _: Cid) {}
    #[inline(always)]
    fn rule_end(&mut self, _: RuleOutcome) {}
}

/// A destination candidate's rank: the key its rule sorts by, smaller is
/// better. Scores of different rules do not compare (`partial_cmp` is None).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    Recover(RecoverDstKey),
    /// Locality: the prefer-local chunk, the only candidate.
    PreferLocal {
        load_bp: Option<u64>,
    },
    Safety(SafetyDstKey),
    Gather(GatherDstKey),
    Capacity(CapacityDstKey),
    Even(EvenDstKey),
}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Score) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Score::Recover(a), Score::Recover(b)) => Some(a.cmp(b)),
            (Score::PreferLocal { load_bp: a }, Score::PreferLocal { load_bp: b }) => {
                Some(a.cmp(b))
            }
            (Score::Safety(a), Score::Safety(b)) => Some(a.cmp(b)),
            (Score::Gather(a), Score::Gather(b)) => Some(a.cmp(b)),
            (Score::Capacity(a), Score::Capacity(b)) => Some(a.cmp(b)),
            (Score::Even(a), Score::Even(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

impl From<RecoverDstKey> for Score {
    fn from(k: RecoverDstKey) -> Score {
        Score::Recover(k)
    }
}
impl From<SafetyDstKey> for Score {
    fn from(k: SafetyDstKey) -> Score {
        Score::Safety(k)
    }
}
impl From<GatherDstKey> for Score {
    fn from(k: GatherDstKey) -> Score {
        Score::Gather(k)
    }
}
impl From<CapacityDstKey> for Score {
    fn from(k: CapacityDstKey) -> Score {
        Score::Capacity(k)
    }
}
impl From<EvenDstKey> for Score {
    fn from(k: EvenDstKey) -> Score {
        Score::Even(k)
    }
}

/// A replica's rank as the one to drop (its rule's key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaceScore {
    /// Topology safety: every eligible replica gets its own destination search.
    Eligible,
    Locality(LocalityReplaceKey),
    Gather(GatherReplaceKey),
    Capacity(CapacityReplaceKey),
    /// The largest key is dropped.
    Even(EvenReplaceKey),
}

/// What a rule gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleOutcome {
    Chosen {
        dst: Cid,
        replace: Option<Cid>,
    },
    /// The rule does not apply to this extent.
    NotApplicable(&'static str),
    /// No alive replica may be dropped (see the replace lines).
    NoReplace,
    /// No destination passed every check (see the destination lines).
    NoDst,
    Failed(NoPlan),
}

// ---- the explanation ---------------------------------------------------------

#[derive(Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExplainError {
    #[error("extent {0} not found")]
    ExtentNotFound(Pid),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SrcLine {
    pub cid: Cid,
    pub verdict: Result<RecoverSrcKey, SrcReject>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplaceLine {
    pub cid: Cid,
    pub verdict: Result<ReplaceScore, ReplaceReject>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DstLine {
    pub cid: Cid,
    pub verdict: Result<Score, DstReject>,
}

/// One pass of a rule over every chunk of the cluster as destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstSearch {
    /// The replica the move drops (migrate).
    pub replace: Option<Cid>,
    /// Every chunk, in cid order.
    pub candidates: Vec<DstLine>,
    /// The best-ranked kept candidate.
    pub best: Option<Cid>,
    /// Why the best candidate was then refused, if it was.
    pub dropped: Option<DstReject>,
}

impl DstSearch {
    pub fn line(&self, cid: Cid) -> Option<&DstLine> {
        self.candidates.iter().find(|l| l.cid == cid)
    }

    /// The search's pick, if it was not refused.
    pub fn chosen(&self) -> Option<Cid> {
        self.best.filter(|_| self.dropped.is_none())
    }
}

/// One rule as the planner tried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTrace {
    pub why: Why,
    /// Topology safety's second pass (medium/high load): the owner may be dropped.
    pub owner_replaceable: bool,
    pub expected: Option<Vec<Cid>>,
    pub replace: Vec<ReplaceLine>,
    pub searches: Vec<DstSearch>,
    /// None only if the planner stopped inside the rule (never, today).
    pub outcome: Option<RuleOutcome>,
}

impl RuleTrace {
    fn new(why: Why, owner_replaceable: bool) -> RuleTrace {
        RuleTrace {
            why,
            owner_replaceable,
            expected: None,
            replace: Vec::new(),
            searches: Vec::new(),
            outcome: None,
        }
    }

    fn chosen(&self) -> Option<(Cid, Option<Cid>)> {
        match self.outcome {
            Some(RuleOutcome::Chosen { dst, replace }) => Some((dst, replace)),
            _ => None,
        }
    }
}

/// The command's source and lease owner (§5.2 priority and owner rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerLine {
    /// The source as its rule chose it.
    pub src: Cid,
    pub dst: Cid,
    /// None: no chunk can own the lease, so no command.
    pub owner: Option<(Cid, OwnerSource)>,
    /// The source after the owner rule (the owner, when it holds an alive replica).
    pub final_src: Cid,
}

/// Where the extent is in the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A command runs; `timed_out`: the next round drops and re-plans it.
    Running {
        cmd: SchedCmd,
        issued_ms: u64,
        timed_out: bool,
    },
    /// Waiting in a queue: `position` 0 is the front. `operator`: the
    /// operator's fixed command (manual or gather).
    Queued {
        kind: Kind,
        band: Band,
        position: usize,
        len: usize,
        operator: Option<SchedCmd>,
    },
    /// No destination or owner was found; waits for the cluster to change.
    Parked,
    /// In no queue: the next recover rescan or migrate scan looks at it.
    Unqueued,
}

/// Everything `cairn sched explain <pid>` prints (see [`Scheduler::explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub pid: Pid,
    pub volume: VolumeId,
    pub volume_name: String,
    pub generation: u64,
    pub loc: Vec<Cid>,
    pub alive: Vec<Cid>,
    pub expected_replicas: u8,
    pub prefer_cid: Cid,
    pub lease_owner: Cid,
    pub load_mode: LoadMode,
    pub now_ms: u64,
    pub status: Status,
    /// The command the extent would get now: recover, migrate or none.
    pub kind: Option<Kind>,
    /// Rounds of `kind` are paused by configuration.
    pub paused: bool,
    /// What the planner returns for the extent now (the command's id is
    /// 0: the scheduler numbers it when it issues it), or why nothing.
    pub plan: Result<SchedCmd, NoPlan>,
    /// Recover: every alive replica as copy source.
    pub src: Vec<SrcLine>,
    pub owner: Option<OwnerLine>,
    /// The rules tried, in order.
    pub rules: Vec<RuleTrace>,
}

impl Explanation {
    pub fn chosen(&self) -> Option<&SchedCmd> {
        self.plan.as_ref().ok()
    }

    /// The rule and destination search that decide: the ones that produced
    /// the planned command, else the last search tried.
    pub fn deciding(&self) -> Option<(&RuleTrace, &DstSearch)> {
        let planned = self.chosen().filter(|c| c.mode == crate::cmd::Mode::Auto);
        if let Some(cmd) = planned {
            let hit = self
                .rules
                .iter()
                .rev()
                .filter(|r| r.chosen() == Some((cmd.dst, cmd.replace)))
                .find_map(|r| {
                    r.searches
                        .iter()
                        .rev()
                        .find(|s| {
                            s.chosen() == Some(cmd.dst)
                                && (s.replace.is_none() || s.replace == cmd.replace)
                        })
                        .map(|s| (r, s))
                });
            if hit.is_some() {
                return hit;
            }
        }
        self.rules
            .iter()
            .rev()
            .find_map(|r| r.searches.last().map(|s| (r, s)))
    }

    /// Every chunk of the cluster as destination, in the deciding search.
    pub fn dst_candidates(&self) -> &[DstLine] {
        self.deciding()
            .map_or(&[], |(_, s)| s.candidates.as_slice())
    }

    /// One chunk's verdict in the deciding search.
    pub fn dst_verdict(&self, cid: Cid) -> Option<Result<Score, DstReject>> {
        self.deciding()
            .and_then(|(_, s)| s.line(cid))
            .map(|l| l.verdict)
    }

    /// The replace candidates of the deciding rule (else of the last rule
    /// that weighed any).
    pub fn replace_candidates(&self) -> &[ReplaceLine] {
        if let Some((r, _)) = self.deciding() {
            if !r.replace.is_empty() {
                return &r.replace;
            }
        }
        self.rules
            .iter()
            .rev()
            .find(|r| !r.replace.is_empty())
            .map_or(&[], |r| r.replace.as_slice())
    }
}

// ---- the recorder ----------------------------------------------------------

#[derive(Default)]
struct Recorder {
    src: Vec<SrcLine>,
    owner: Option<OwnerLine>,
    rules: Vec<RuleTrace>,
}

impl Recorder {
    fn rule_mut(&mut self) -> &mut RuleTrace {
        if self.rules.is_empty() {
            self.rules.push(RuleTrace::new(Why::MissingReplica, false));
        }
        let last = self.rules.len() - 1;
        &mut self.rules[last]
    }

    fn search_mut(&mut self) -> &mut DstSearch {
        let rule = self.rule_mut();
        if rule.searches.is_empty() {
            rule.searches.push(DstSearch {
                replace: None,
                candidates: Vec::new(),
                best: None,
                dropped: None,
            });
        }
        let last = rule.searches.len() - 1;
        &mut rule.searches[last]
    }
}

impl Observe for Recorder {
    const ENABLED: bool = true;
    fn rule(&mut self, why: Why, owner_replaceable: bool) {
        self.rules.push(RuleTrace::new(why, owner_replaceable));
    }
    fn src(&mut self, cid: Cid, verdict: Result<RecoverSrcKey, SrcReject>) {
        self.src.push(SrcLine { cid, verdict });
    }
    fn expected(&mut self, cids: &[Cid]) {
        self.rule_mut().expected = Some(cids.to_vec());
    }
    fn replace(&mut self, cid: Cid, verdict: Result<ReplaceScore, ReplaceReject>) {
        self.rule_mut().replace.push(ReplaceLine { cid, verdict });
    }
    fn dst_search(&mut self, replace: Option<Cid>) {
        self.rule_mut().searches.push(DstSearch {
            replace,
            candidates: Vec::new(),
            best: None,
            dropped: None,
        });
    }
    fn dst(&mut self, cid: Cid, verdict: Result<Score, DstReject>) {
        self.search_mut().candidates.push(DstLine { cid, verdict });
    }
    fn dst_best(&mut self, best: Option<Cid>) {
        self.search_mut().best = best;
    }
    fn dst_dropped(&mut self, why: DstReject) {
        self.search_mut().dropped = Some(why);
    }
    fn owner(&mut self, src: Cid, dst: Cid, owner: Option<(Cid, OwnerSource)>, final_src: Cid) {
        self.owner = Some(OwnerLine {
            src,
            dst,
            owner,
            final_src,
        });
    }
    fn rule_end(&mut self, outcome: RuleOutcome) {
        self.rule_mut().outcome = Some(outcome);
    }
}

// ---- Scheduler::explain --------------------------------------------------

impl Scheduler {
    /// `cairn sched explain <pid>`: what this (leader's) scheduler would do
    /// with the extent now, computed by the planners of its rounds over its
    /// queues, running commands, slots and pins, with every candidate they
    /// weigh. Read-only: nothing is queued, issued or pinned.
    pub fn explain(
        &self,
        state: &State,
        pid: Pid,
        now_ms: u64,
    ) -> Result<Explanation, ExplainError> {
        let e = state.extent(pid).ok_or(ExplainError::ExtentNotFound(pid))?;
        let (volume, ext) = (e.volume, e.extent);
        let cfg = self.config();
        let ctx = self.ctx(state);
        let status = self.status_of(pid, now_ms);
        let mut rec = Recorder::default();
        let (kind, plan) = match status {
            Status::Running { cmd, .. } => (Some(cmd.kind), Err(NoPlan::Running)),
            Status::Queued {
                kind,
                operator: Some(cmd),
                ..
            } => (Some(kind), revalidate_fixed(&ctx, self.slots(), cmd, ext)),
            _ if needs_recover(ext) || ext.loc.alive_count() == 0 => (
                needs_recover(ext).then_some(Kind::Recover),
                plan_recover_extent_observed(&ctx, self.slots(), pid, volume, ext, &mut rec),
            ),
            _ => {
                // As the migrate scan builds it (rule §5.3 bounded rebalance).
                let balance = Balance::new(&ctx, cfg.balance_gap_bp, cfg.max_moves_per_round);
                let counts = volume.even.then(|| volume_replica_counts(state, volume));
                let m = MigrateCtx {
                    ctx: &ctx,
                    slots: self.slots(),
                    pins: self.pins(),
                    now_ms,
                    balance: &balance,
                };
                let plan =
                    plan_migrate_extent_observed(&m, counts.as_deref(), pid, volume, ext, &mut rec);
                (plan.is_ok().then_some(Kind::Migrate), plan)
            }
        };
        let paused = match kind {
            Some(Kind::Recover) => cfg.recover_paused,
            Some(Kind::Migrate) => cfg.migrate_paused,
            None => false,
        };
        Ok(Explanation {
            pid,
            volume: volume.id,
            volume_name: volume.name.clone(),
            generation: ext.generation,
            loc: ext.loc.cids().to_vec(),
            alive: ext.loc.alive_loc().collect(),
            expected_replicas: ext.expected_replicas,
            prefer_cid: ext.prefer_cid,
            lease_owner: ext.lease_owner,
            load_mode: cluster_load_mode(state),
            now_ms,
            status,
            kind,
            paused,
            plan,
            src: rec.src,
            owner: rec.owner,
            rules: rec.rules,
        })
    }

    fn status_of(&self, pid: Pid, now_ms: u64) -> Status {
        if let Some(r) = self.running().find(|r| r.cmd.pid == pid) {
            let timeout = match r.cmd.kind {
                Kind::Recover => self.config().recover_timeout_ms,
                Kind::Migrate => self.config().migrate_timeout_ms,
            };
            return Status::Running {
                cmd: r.cmd,
                issued_ms: r.issued_ms,
                timed_out: now_ms.saturating_sub(r.issued_ms) >= timeout,
            };
        }
        for kind in [Kind::Recover, Kind::Migrate] {
            let q = self.queue(kind);
            if let Some(entry) = q.get(pid) {
                return Status::Queued {
                    kind,
                    band: entry.band,
                    position: q.iter().position(|e| e.pid == pid).unwrap_or(0),
                    len: q.len(),
                    operator: entry.fixed,
                };
            }
        }
        if self.parked().any(|p| p == pid) {
            Status::Parked
        } else {
            Status::Unqueued
        }
    }
}

// ---- display -----------------------------------------------------------------

struct Pct(Option<u64>);

impl fmt::Display for Pct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bp) => write!(f, "{}.{:02}%", bp / 100, bp % 100),
            None => f.write_str("unknown"),
        }
    }
}

fn ratio_bp(r: Option<LoadRatio>) -> Option<u64> {
    r.map(LoadRatio::basis_points)
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Score::Recover(key) => {
                if key.outside_zone {
                    f.write_str("outside the zone short of replicas, ")?;
                }
                write!(
                    f,
                    "prefer-local {}, {}, {:?} from the nearest replica, load {}",
                    yes(!key.not_prefer_local),
                    if key.unracked { "unracked" } else { "racked" },
                    key.distance.0,
                    Pct(ratio_bp(key.load))
                )
            }
            Score::PreferLocal { load_bp } => {
                write!(f, "the prefer-local chunk, load {}", Pct(load_bp))
            }
            Score::Safety(k) => write!(
                f,
                "replica distances after the move {:?}, load {}",
                k.safety.0.pairs(),
                Pct(k.load_bp)
            ),
            Score::Gather(k) => write!(
                f,
                "{:?} from the remaining replicas, load {}",
                k.distance.0,
                Pct(k.load_bp)
            ),
            Score::Capacity(k) => write!(f, "load {}", Pct(k.load_bp)),
            Score::Even(k) => write!(
                f,
                "{} replicas of the volume, load {}",
                k.count,
                Pct(k.load_bp)
            ),
        }
    }
}

impl fmt::Display for ReplaceScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReplaceScore::Eligible => f.write_str("may be replaced"),
            ReplaceScore::Locality(k) => write!(
                f,
                "failslow {}, {}, load {}",
                yes(!k.not_failslow),
                if k.in_service {
                    "in service"
                } else {
                    "draining"
                },
                Pct(k.load_bp.0)
            ),
            ReplaceScore::Gather(k) => write!(
                f,
                "failslow {}, distances of the rest {:?}",
                yes(!k.not_failslow),
                k.rest_safety.0.pairs()
            ),
            ReplaceScore::Capacity(k) => write!(f, "load {}", Pct(k.load_bp.0)),
            ReplaceScore::Even(k) => write!(f, "{} replicas of the volume on it", k.count),
        }
    }
}

impl fmt::Display for RuleOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RuleOutcome::Chosen { dst, replace } => {
                write!(f, "chosen dst {dst}")?;
                if let Some(r) = replace {
                    write!(f, " replacing {r}")?;
                }
                Ok(())
            }
            RuleOutcome::NotApplicable(why) => write!(f, "not applicable: {why}"),
            RuleOutcome::NoReplace => f.write_str("no alive replica may be replaced"),
            RuleOutcome::NoDst => f.write_str("no destination passed every check"),
            RuleOutcome::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

fn reject_name(r: DstReject) -> String {
    match r {
        DstReject::Filter(f) => format!("{f:?}"),
        other => format!("{other:?}"),
    }
}

const TABLE_HEAD: &str = "    cid       verdict                score";

/// `chosen`: the planned command's destination, when `s` decided it.
fn dst_table(f: &mut fmt::Formatter<'_>, s: &DstSearch, chosen: Option<Cid>) -> fmt::Result {
    writeln!(f, "{TABLE_HEAD}")?;
    for l in &s.candidates {
        let (verdict, score) = match l.verdict {
            Ok(score) if s.best == Some(l.cid) => match s.dropped {
                None if chosen == Some(l.cid) => ("chosen".to_string(), score.to_string()),
                None => ("best".to_string(), score.to_string()),
                Some(d) => (
                    format!("dropped: {}", reject_name(d)),
                    format!("{score}; {}", d.describe()),
                ),
            },
            Ok(score) => ("kept".to_string(), score.to_string()),
            Err(r) => (reject_name(r), r.describe().to_string()),
        };
        writeln!(f, "    {:<9} {:<22} {score}", l.cid, verdict)?;
    }
    Ok(())
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Status::Running {
                cmd,
                issued_ms,
                timed_out,
            } => {
                write!(f, "running {cmd}, issued at {issued_ms} ms")?;
                if timed_out {
                    f.write_str(" (timed out: the next round re-plans it)")?;
                }
                Ok(())
            }
            Status::Queued {
                kind,
                band,
                position,
                len,
                operator,
            } => {
                write!(
                    f,
                    "queued for {kind:?}, band {band:?}, position {} of {len}",
                    position + 1
                )?;
                if let Some(cmd) = operator {
                    write!(f, ", operator command {cmd}")?;
                }
                Ok(())
            }
            Status::Parked => f.write_str(
                "parked: no destination or owner was found; waits for the cluster to change",
            ),
            Status::Unqueued => f.write_str("in no queue"),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "extent {} of volume {} ({:?}), generation {}, at {} ms",
            self.pid, self.volume, self.volume_name, self.generation, self.now_ms
        )?;
        writeln!(
            f,
            "  loc {:?}  alive {:?}  expected replicas {}  prefer-local {}  lease owner {}  cluster load {:?}",
            self.loc,
            self.alive,
            self.expected_replicas,
            self.prefer_cid,
            self.lease_owner,
            self.load_mode
        )?;
        writeln!(f, "status: {}", self.status)?;
        match self.kind {
            Some(k) => writeln!(
                f,
                "would get: {k:?}{}",
                if self.paused { " (paused)" } else { "" }
            )?,
            None => writeln!(f, "would get: nothing")?,
        }
        match &self.plan {
            Ok(cmd) => {
                write!(f, "plan: {:?} {} -> {}", cmd.kind, cmd.src, cmd.dst)?;
                if let Some(r) = cmd.replace {
                    write!(f, " replace {r}")?;
                }
                writeln!(
                    f,
                    ", owner {} ({:?}), {:?}/{:?}",
                    cmd.owner, cmd.owner_from, cmd.mode, cmd.why
                )?;
            }
            Err(e) => writeln!(f, "plan: none: {e}")?,
        }
        if !self.src.is_empty() {
            // The planner's pick: the smallest key (before the owner rule).
            let best = self
                .src
                .iter()
                .filter_map(|l| l.verdict.ok().map(|k| (k, l.cid)))
                .min()
                .map(|(_, c)| c);
            writeln!(f, "src candidates (alive replicas):")?;
            writeln!(f, "{TABLE_HEAD}")?;
            for l in &self.src {
                match l.verdict {
                    Ok(k) => {
                        writeln!(
                        f,
                        "    {:<9} {:<22} failslow {}, free slot {}, {} slots used, loc order {}",
                        l.cid,
                        if best == Some(l.cid) { "chosen" } else { "kept" },
                        yes(k.failslow),
                        yes(!k.no_free_slot),
                        k.used_slots,
                        k.order
                    )?
                    }
                    Err(r) => writeln!(
                        f,
                        "    {:<9} {:<22} {}",
                        l.cid,
                        format!("{r:?}"),
                        r.describe()
                    )?,
                }
            }
        }
        let deciding = self.deciding().map(|(_, s)| s);
        for rule in &self.rules {
            write!(f, "rule {:?}", rule.why)?;
            if rule.owner_replaceable {
                f.write_str(" (owner may be replaced)")?;
            }
            match rule.outcome {
                Some(o) => writeln!(f, ": {o}")?,
                None => writeln!(f)?,
            }
            if let Some(e) = &rule.expected {
                writeln!(f, "  expected distribution {e:?}")?;
            }
            if !rule.replace.is_empty() {
                let chosen = rule.chosen().and_then(|(_, r)| r);
                writeln!(f, "  replace candidates (alive replicas):")?;
                writeln!(f, "{TABLE_HEAD}")?;
                for l in &rule.replace {
                    match l.verdict {
                        Ok(score) => writeln!(
                            f,
                            "    {:<9} {:<22} {score}",
                            l.cid,
                            if chosen == Some(l.cid) {
                                "chosen"
                            } else {
                                "kept"
                            }
                        )?,
                        Err(r) => writeln!(
                            f,
                            "    {:<9} {:<22} {}",
                            l.cid,
                            format!("{r:?}"),
                            r.describe()
                        )?,
                    }
                }
            }
            for s in &rule.searches {
                let what = match s.replace {
                    Some(r) => format!("  dst candidates replacing {r}"),
                    None => "  dst candidates".to_string(),
                };
                let full = deciding.is_some_and(|d| std::ptr::eq(d, s));
                if full {
                    writeln!(f, "{what}:")?;
                    dst_table(f, s, self.chosen().map(|c| c.dst))?;
                } else {
                    let kept = s.candidates.iter().filter(|l| l.verdict.is_ok()).count();
                    write!(
                        f,
                        "{what}: {kept} kept of {}, best {}",
                        s.candidates.len(),
                        s.best.map_or("none".to_string(), |c| c.to_string())
                    )?;
                    if let Some(d) = s.dropped {
                        write!(f, " (dropped: {})", d.describe())?;
                    }
                    writeln!(f)?;
                }
            }
        }
        if let Some(o) = self.owner {
            match o.owner {
                Some((owner, from)) => {
                    write!(f, "owner: {owner} ({from:?})")?;
                    if o.final_src != o.src {
                        write!(
                            f,
                            "; src {} -> {} (the owner holds an alive replica: copy from it)",
                            o.src, o.final_src
                        )?;
                    }
                    writeln!(f)?;
                }
                None => writeln!(
                    f,
                    "owner: no chunk can own the lease (src {}, dst {})",
                    o.src, o.dst
                )?,
            }
        }
        Ok(())
    }
}
