//! Per-key linearizability of the extent register (pid -> generation, owner).
//!
//! The search is Wing & Gong's, with Lowe's memoisation of (set of
//! linearized operations, model state) as in porcupine ("WGL"). It is
//! written here rather than taken from a crate because the model is ours
//! (a register whose generation the environment may raise at any moment, an
//! owner that is unknown until first seen, a CAS whose no-op does not bump)
//! and the search itself is a few hundred lines; a generic checker would
//! need the same model code plus an adapter, and none in Rust supports
//! nondeterministic models with optional (unknown-outcome) operations.
//!
//! Real-time order is history order: an operation precedes another when its
//! completion event comes before the other's invoke event (Jepsen's rule;
//! the recorder appends events in the order they happened).
//!
//! The model, per extent:
//! - state (generation, owner); initially (0, unknown): the history does not
//!   say what the extent held before the first operation;
//! - the environment (schedulers, session expiry) may raise the generation at
//!   any moment, never lowers it and never changes the owner;
//! - read ok (g', o'): legal iff o' is the owner (or the owner is unknown)
//!   and g' >= g; then (g', o');
//! - cas (e, n) ok g': legal iff e >= g and (g' = e + 1, or g' = e when the
//!   owner already was n: a no-op); then (g', n);
//! - cas (e, n) failed with the actual generation a: legal iff a != e and
//!   a >= g; then (a, owner);
//! - cas with an unknown outcome: may take effect at any time after its
//!   invoke, or never (its return is at +infinity and it may be left out).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{Event, Op, Type, NEMESIS_PROCESS};

use super::anomaly::{classify, Anomaly};

/// Default bound on the (linearized set, state) pairs explored per key. A
/// pair costs 16 bytes in the memo, so the default stays under ~100 MB.
pub const DEFAULT_MAX_STATES: u64 = 4_000_000;

/// What an operation did, as the model needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum OpKind {
    /// An acknowledged read.
    Read { generation: u64, owner: u32 },
    Cas {
        expected_generation: u64,
        owner: u32,
        result: CasResult,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CasResult {
    /// Acknowledged; the generation after the update.
    Ok { generation: u64 },
    /// Certainly not applied: the generation was `actual`.
    Failed { actual: u64 },
    /// Unknown (info): applied at some time after the invoke, or never.
    Unknown,
}

/// One operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub process: u64,
    /// `Event::index` of the invoke.
    pub invoke_index: u64,
    /// `Event::index` of the completion; None for an unknown outcome.
    pub complete_index: Option<u64>,
    /// Position of the invoke in history order (the real-time order).
    pub call: u64,
    /// Position of the completion; None = +infinity: the operation may take
    /// effect at any later time, or never (it may be left out).
    pub ret: Option<u64>,
    pub kind: OpKind,
}

impl Operation {
    /// Whether the operation's interval overlaps `other`'s.
    pub fn concurrent_with(&self, other: &Operation) -> bool {
        let ends_before = |a: &Operation, b: &Operation| a.ret.is_some_and(|r| r < b.call);
        !ends_before(self, other) && !ends_before(other, self)
    }

    /// Whether this one completed before `other` was invoked.
    pub fn precedes(&self, other: &Operation) -> bool {
        self.ret.is_some_and(|r| r < other.call)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{} ", self.process)?;
        match self.kind {
            OpKind::Read { generation, owner } => {
                write!(f, "read -> (gen {generation}, owner {owner})")?
            }
            OpKind::Cas {
                expected_generation,
                owner,
                result,
            } => {
                write!(
                    f,
                    "cas(expect gen {expected_generation}, owner := {owner}) "
                )?;
                match result {
                    CasResult::Ok { generation } => write!(f, "ok gen {generation}")?,
                    CasResult::Failed { actual } => write!(f, "failed, gen was {actual}")?,
                    CasResult::Unknown => write!(f, "unknown outcome")?,
                }
            }
        }
        match self.complete_index {
            Some(c) => write!(f, " [#{}..#{}]", self.invoke_index, c),
            None => write!(f, " [#{}..]", self.invoke_index),
        }
    }
}

/// The model's state of one extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelState {
    pub generation: u64,
    /// None until the first read or applied cas fixes it.
    pub owner: Option<u32>,
    /// The environment raised the generation since the owner was last
    /// fixed, so it may also have cleared the owner: a finished copy whose
    /// new replicas leave out the owner drops it to 0 (cairn_sched's
    /// completion rule), as does the end of the owner's session. The
    /// workload never writes owner 0, so a 0 is always the environment's.
    pub maybe_dropped: bool,
}

impl ModelState {
    pub const UNKNOWN: ModelState = ModelState {
        generation: 0,
        owner: None,
        maybe_dropped: false,
    };

    fn owner_is(&self, o: u32) -> bool {
        self.owner.is_none_or(|x| x == o) || (o == 0 && self.maybe_dropped)
    }
}

impl fmt::Display for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.owner {
            Some(o) => write!(f, "(gen >= {}, owner {o})", self.generation),
            None => write!(f, "(gen >= {}, owner unknown)", self.generation),
        }
    }
}

/// The model's transition: writes the possible next states into `out` and
/// returns how many there are (0 = illegal here). Two only for an unknown
/// cas whose owner may already be its target (it bumps, or is a no-op).
pub fn step(s: ModelState, op: &OpKind, out: &mut [ModelState; 2]) -> usize {
    match *op {
        OpKind::Read { generation, owner } => {
            // A higher generation than the state's means the environment
            // bumped it meanwhile, and may have cleared the owner with it.
            let dropped = owner == 0 && generation > s.generation;
            if (s.owner_is(owner) || dropped) && generation >= s.generation {
                out[0] = ModelState {
                    generation,
                    owner: Some(owner),
                    maybe_dropped: false,
                };
                return 1;
            }
            0
        }
        OpKind::Cas {
            expected_generation: e,
            owner: n,
            result,
        } => {
            if e < s.generation {
                // Only `Failed` can see a generation other than e, and it
                // must not see one below the current one.
                if let CasResult::Failed { actual } = result {
                    if actual != e && actual >= s.generation {
                        out[0] = ModelState {
                            generation: actual,
                            owner: s.owner,
                            maybe_dropped: s.maybe_dropped || actual > s.generation,
                        };
                        return 1;
                    }
                }
                return 0;
            }
            match result {
                CasResult::Ok { generation } => {
                    let bumped = e.checked_add(1) == Some(generation);
                    let noop = generation == e && s.owner_is(n);
                    if bumped || noop {
                        out[0] = ModelState {
                            generation,
                            owner: Some(n),
                            maybe_dropped: false,
                        };
                        return 1;
                    }
                    0
                }
                CasResult::Failed { actual } => {
                    if actual != e && actual >= s.generation {
                        out[0] = ModelState {
                            generation: actual,
                            owner: s.owner,
                            maybe_dropped: s.maybe_dropped || actual > s.generation,
                        };
                        return 1;
                    }
                    0
                }
                CasResult::Unknown => {
                    let mut k = 0;
                    if let Some(g) = e.checked_add(1) {
                        out[k] = ModelState {
                            generation: g,
                            owner: Some(n),
                            maybe_dropped: false,
                        };
                        k += 1;
                    }
                    if s.owner_is(n) {
                        out[k] = ModelState {
                            generation: e,
                            owner: Some(n),
                            maybe_dropped: false,
                        };
                        k += 1;
                    }
                    k
                }
            }
        }
    }
}

/// Why `op` is illegal in `s`, for people (empty if it is legal).
fn why_illegal(s: ModelState, op: &OpKind) -> String {
    if step(s, op, &mut [ModelState::UNKNOWN; 2]) > 0 {
        return String::new();
    }
    match *op {
        OpKind::Read { generation, owner } => {
            if !s.owner_is(owner) {
                format!(
                    "it read owner {owner}, but the owner was {}",
                    s.owner.unwrap_or_default()
                )
            } else {
                format!(
                    "it read generation {generation}, below {} already reached",
                    s.generation
                )
            }
        }
        OpKind::Cas {
            expected_generation: e,
            result,
            ..
        } => match result {
            CasResult::Failed { actual } if actual == e => {
                format!("it failed although the generation was the expected {e}")
            }
            CasResult::Failed { actual } => {
                format!(
                    "it saw generation {actual}, below {} already reached",
                    s.generation
                )
            }
            _ if e < s.generation => format!(
                "it applied at expected generation {e}, but the generation was already {}",
                s.generation
            ),
            CasResult::Ok { generation } => format!(
                "it answered generation {generation}: neither {e} + 1 nor a no-op on its own owner"
            ),
            CasResult::Unknown => "it cannot apply here".into(),
        },
    }
}

/// Why a key's history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The operation that could not be linearized before it returned, at the
    /// deepest point the search reached: the history cut at its completion
    /// is already not linearizable.
    pub op: Operation,
    /// How many operations had been linearized there, of how many acknowledged.
    pub linearized: usize,
    pub required: usize,
    /// Model states the search was in at that point (a few).
    pub states: Vec<ModelState>,
    /// The operations concurrent with `op`.
    pub concurrent: Vec<Operation>,
    /// One line for people.
    pub explanation: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum KeyOutcome {
    Valid,
    Invalid(Box<Violation>),
    /// The search bound was reached: neither valid nor a violation.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyResult {
    pub outcome: KeyOutcome,
    pub ops: usize,
    /// (linearized set, state) pairs explored.
    pub explored: u64,
}

/// Checks one key's operations (any order; they are sorted by position).
pub fn check_key(ops: &[Operation], max_states: u64) -> KeyResult {
    Search::new(ops).run(max_states)
}

/// The WGL search over a doubly linked list of call and return entries.
struct Search<'a> {
    ops: &'a [Operation],
    /// Entry i (1-based; 0 is the head sentinel): its op and whether it is
    /// the call (else the return).
    op_of: Vec<usize>,
    is_call: Vec<bool>,
    /// The return entry of a call entry (NIL for optional operations).
    ret_of: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
    required: usize,
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

struct Frame {
    entry: usize,
    before: ModelState,
    succ: usize,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [Operation]) -> Search<'a> {
        // (position, calls before returns at equal positions, op, is_call)
        let mut ev: Vec<(u64, u8, usize, bool)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            ev.push((op.call, 0, i, true));
            if let Some(r) = op.ret {
                // A completion never precedes its own invoke.
                ev.push((r.max(op.call), 1, i, false));
            }
        }
        ev.sort_unstable();
        let m = ev.len();
        let mut op_of = vec![NIL; m + 1];
        let mut is_call = vec![false; m + 1];
        let mut ret_of = vec![NIL; m + 1];
        let mut call_entry = vec![NIL; ops.len()];
        for (k, &(_, _, op, call)) in ev.iter().enumerate() {
            let e = k + 1;
            op_of[e] = op;
            is_call[e] = call;
            if call {
                call_entry[op] = e;
            } else {
                ret_of[call_entry[op]] = e;
            }
        }
        let next = (0..=m).map(|i| if i == m { NIL } else { i + 1 }).collect();
        let prev = (0..=m).map(|i| if i == 0 { NIL } else { i - 1 }).collect();
        Search {
            ops,
            op_of,
            is_call,
            ret_of,
            next,
            prev,
            required: ops.iter().filter(|o| o.ret.is_some()).count(),
        }
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    /// Removes a call entry and its return (dancing links: relinking in the
    /// reverse order restores the list exactly).
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if self.ret_of[call] != NIL {
            self.unlink(self.ret_of[call]);
        }
    }

    fn unlift(&mut self, call: usize) {
        if self.ret_of[call] != NIL {
            self.relink(self.ret_of[call]);
        }
        self.relink(call);
    }

    fn run(mut self, max_states: u64) -> KeyResult {
        let n = self.ops.len();
        let mut linearized = vec![0u64; n.div_ceil(64).max(1)];
        // The memo holds a 128-bit hash of (linearized set, state): exact
        // sets would cost n/8 bytes each; a collision (odds ~2^-100 at our
        // sizes) could only prune a branch, never accept a bad history.
        let mut memo: HashSet<u128> = HashSet::new();
        let mut buf: Vec<u8> = Vec::with_capacity(linearized.len() * 8 + 17);
        let mut stack: Vec<Frame> = Vec::new();
        let mut state = ModelState::UNKNOWN;
        let mut done_required = 0usize;
        let mut explored = 0u64;
        let mut succ = [ModelState::UNKNOWN; 2];
        // The deepest point where an op returned before being linearized.
        let mut best: Option<(usize, usize, Vec<ModelState>)> = None;
        let mut entry = self.next[HEAD];
        let mut first_succ = 0usize;
        loop {
            if done_required == self.required || entry == NIL {
                // Every acknowledged op is linearized; unknown ones left
                // out never took effect.
                return KeyResult {
                    outcome: KeyOutcome::Valid,
                    ops: n,
                    explored,
                };
            }
            let op = self.op_of[entry];
            if self.is_call[entry] {
                let k = step(state, &self.ops[op].kind, &mut succ);
                let mut taken = false;
                for (i, next_state) in succ.iter().enumerate().take(k).skip(first_succ) {
                    explored += 1;
                    if explored > max_states {
                        return KeyResult {
                            outcome: KeyOutcome::Unknown,
                            ops: n,
                            explored,
                        };
                    }
                    linearized[op / 64] |= 1 << (op % 64);
                    if memo.insert(memo_key(&mut buf, &linearized, next_state)) {
                        stack.push(Frame {
                            entry,
                            before: state,
                            succ: i,
                        });
                        state = *next_state;
                        if self.ops[op].ret.is_some() {
                            done_required += 1;
                        }
                        self.lift(entry);
                        taken = true;
                        break;
                    }
                    linearized[op / 64] &= !(1 << (op % 64));
                }
                first_succ = 0;
                entry = if taken {
                    self.next[HEAD]
                } else {
                    self.next[entry]
                };
            } else {
                // `op` returned and is not linearized: undo the last choice.
                let depth = stack.len();
                match &mut best {
                    Some((d, o, states)) if *d == depth && *o == op => {
                        if states.len() < 4 && !states.contains(&state) {
                            states.push(state);
                        }
                    }
                    Some((d, _, _)) if *d >= depth => {}
                    _ => best = Some((depth, op, vec![state])),
                }
                let Some(f) = stack.pop() else {
                    return KeyResult {
                        outcome: KeyOutcome::Invalid(Box::new(self.violation(best))),
                        ops: n,
                        explored,
                    };
                };
                let fop = self.op_of[f.entry];
                linearized[fop / 64] &= !(1 << (fop % 64));
                if self.ops[fop].ret.is_some() {
                    done_required -= 1;
                }
                state = f.before;
                self.unlift(f.entry);
                entry = f.entry;
                first_succ = f.succ + 1;
            }
        }
    }

    fn violation(&self, best: Option<(usize, usize, Vec<ModelState>)>) -> Violation {
        // The search fails only at a return entry, so `best` is set.
        let (depth, op, states) = best.unwrap_or((0, 0, vec![ModelState::UNKNOWN]));
        let the_op = self.ops[op].clone();
        let mut concurrent: Vec<Operation> = self
            .ops
            .iter()
            .enumerate()
            .filter(|(i, o)| *i != op && o.concurrent_with(&the_op))
            .map(|(_, o)| o.clone())
            .collect();
        concurrent.sort_by_key(|o| o.call);
        let reasons: Vec<String> = states
            .iter()
            .map(|s| {
                let why = why_illegal(*s, &the_op.kind);
                if why.is_empty() {
                    format!("in {s} (legal, but every order after it fails)")
                } else {
                    format!("in {s} {why}")
                }
            })
            .collect();
        let explanation = format!(
            "{the_op} cannot be linearized (deepest point: {depth} ops linearized, {} acknowledged in all): {}",
            self.required,
            reasons.join("; ")
        );
        Violation {
            op: the_op,
            linearized: depth,
            required: self.required,
            states,
            concurrent,
            explanation,
        }
    }
}

fn memo_key(buf: &mut Vec<u8>, set: &[u64], s: &ModelState) -> u128 {
    buf.clear();
    for w in set {
        buf.extend_from_slice(&w.to_le_bytes());
    }
    buf.extend_from_slice(&s.generation.to_le_bytes());
    match s.owner {
        Some(o) => {
            buf.push(1);
            buf.extend_from_slice(&o.to_le_bytes());
        }
        None => buf.push(0),
    }
    // Part of the state: a state that may have been dropped accepts more.
    buf.push(u8::from(s.maybe_dropped));
    xxhash_rust::xxh3::xxh3_128(buf)
}

/// One key's result with the anomalies the classifier named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReport {
    pub key: u64,
    pub result: KeyResult,
    pub anomalies: Vec<Anomaly>,
}

/// The whole history's result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearResult {
    pub keys: Vec<KeyReport>,
    /// Malformed history the pairing had to work around.
    pub warnings: Vec<String>,
}

impl LinearResult {
    pub fn invalid_keys(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys.iter().filter(|k| {
            matches!(k.result.outcome, KeyOutcome::Invalid(_)) || !k.anomalies.is_empty()
        })
    }

    pub fn unknown_keys(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys
            .iter()
            .filter(|k| k.result.outcome == KeyOutcome::Unknown && k.anomalies.is_empty())
    }

    /// No key is invalid (unknown keys are not violations).
    pub fn is_valid(&self) -> bool {
        self.invalid_keys().next().is_none()
    }
}

/// Pairs every invoke with its process's next completion and converts the
/// pairs into per-key [`Operation`]s. History order is taken from
/// `Event::index` (ties keep file order). Reads that did not complete ok and
/// cas that certainly failed without saying the generation carry no
/// information and are dropped.
pub fn operations_by_key(events: &[Event]) -> (BTreeMap<u64, Vec<Operation>>, Vec<String>) {
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by_key(|e| e.index);
    let mut warnings = Vec::new();
    let mut pending: BTreeMap<u64, (u64, &Event)> = BTreeMap::new();
    let mut by_key: BTreeMap<u64, Vec<Operation>> = BTreeMap::new();
    let mut add = |inv: &Event, call: u64, done: Option<(u64, &Event)>, w: &mut Vec<String>| {
        let Some(key) = inv.op.key() else { return };
        let (kind, ret, complete) = match (&inv.op, done) {
            (Op::Read { .. }, Some((pos, c))) if c.kind == Type::Ok => match c.op {
                Op::Read { value: Some(v), .. } => (
                    OpKind::Read {
                        generation: v.generation,
                        owner: v.owner,
                    },
                    Some(pos),
                    Some(c.index),
                ),
                _ => {
                    w.push(format!("event #{}: ok read without a value", c.index));
                    return;
                }
            },
            (Op::Read { .. }, _) => return,
            (
                Op::Cas {
                    expected_generation,
                    owner,
                    ..
                },
                done,
            ) => {
                let cas = |result| OpKind::Cas {
                    expected_generation: *expected_generation,
                    owner: *owner,
                    result,
                };
                let generation = match done.map(|(_, c)| &c.op) {
                    Some(Op::Cas { generation, .. }) => *generation,
                    _ => None,
                };
                match (done, generation) {
                    (Some((pos, c)), Some(generation)) if c.kind == Type::Ok => {
                        (cas(CasResult::Ok { generation }), Some(pos), Some(c.index))
                    }
                    (Some((pos, c)), Some(actual)) if c.kind == Type::Fail => {
                        (cas(CasResult::Failed { actual }), Some(pos), Some(c.index))
                    }
                    (Some((_, c)), None) if c.kind == Type::Fail => return,
                    (Some((_, c)), None) if c.kind == Type::Ok => {
                        w.push(format!(
                            "event #{}: ok cas without a generation: treated as unknown",
                            c.index
                        ));
                        (cas(CasResult::Unknown), None, None)
                    }
                    _ => (cas(CasResult::Unknown), None, None),
                }
            }
            _ => return,
        };
        by_key.entry(key).or_default().push(Operation {
            process: inv.process,
            invoke_index: inv.index,
            complete_index: complete,
            call,
            ret,
            kind,
        });
    };
    for (pos, e) in order.iter().enumerate() {
        let pos = pos as u64;
        if e.process == NEMESIS_PROCESS || e.op.key().is_none() {
            continue;
        }
        match e.kind {
            Type::Invoke => {
                if let Some((call, inv)) = pending.insert(e.process, (pos, e)) {
                    warnings.push(format!(
                        "process {} invoked #{} while #{} was outstanding: the earlier one is unknown",
                        e.process, e.index, inv.index
                    ));
                    add(inv, call, None, &mut warnings);
                }
            }
            _ => match pending.remove(&e.process) {
                Some((call, inv)) => {
                    if inv.op.key() != e.op.key() {
                        warnings.push(format!(
                            "event #{} completes #{} of another key",
                            e.index, inv.index
                        ));
                    }
                    add(inv, call, Some((pos, e)), &mut warnings)
                }
                None => warnings.push(format!(
                    "event #{}: a completion without an invoke (ignored)",
                    e.index
                )),
            },
        }
    }
    for (call, inv) in pending.into_values() {
        add(inv, call, None, &mut warnings);
    }
    (by_key, warnings)
}

/// Checks every key of a history.
pub fn check_history(events: &[Event], max_states: u64) -> LinearResult {
    let (by_key, warnings) = operations_by_key(events);
    let keys = by_key
        .into_iter()
        .map(|(key, ops)| {
            let result = check_key(&ops, max_states);
            // The classifier only names what went wrong; it is cubic in
            // the key's operations, so it runs only where something did.
            let anomalies = if result.outcome == KeyOutcome::Valid {
                vec![]
            } else {
                classify(key, &ops)
            };
            KeyReport {
                key,
                result,
                anomalies,
            }
        })
        .collect();
    LinearResult { keys, warnings }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::history::ExtentValue;

    /// Builds a history event by event; `at` positions are given by order.
    #[derive(Default)]
    pub(crate) struct H {
        pub events: Vec<Event>,
    }

    impl H {
        fn push(&mut self, process: u64, kind: Type, op: Op) -> &mut Self {
            let index = self.events.len() as u64;
            self.events.push(Event {
                index,
                time_ns: index * 1_000_000,
                process,
                kind,
                op,
                error: None,
            });
            self
        }
        pub fn read(&mut self, p: u64) -> &mut Self {
            self.push(
                p,
                Type::Invoke,
                Op::Read {
                    pid: 1,
                    value: None,
                },
            )
        }
        pub fn read_ok(&mut self, p: u64, generation: u64, owner: u32) -> &mut Self {
            self.push(
                p,
                Type::Ok,
                Op::Read {
                    pid: 1,
                    value: Some(ExtentValue { generation, owner }),
                },
            )
        }
        pub fn cas(&mut self, p: u64, e: u64, owner: u32) -> &mut Self {
            self.push(
                p,
                Type::Invoke,
                Op::Cas {
                    pid: 1,
                    expected_generation: e,
                    owner,
                    generation: None,
                },
            )
        }
        pub fn cas_done(
            &mut self,
            p: u64,
            kind: Type,
            e: u64,
            owner: u32,
            g: Option<u64>,
        ) -> &mut Self {
            self.push(
                p,
                kind,
                Op::Cas {
                    pid: 1,
                    expected_generation: e,
                    owner,
                    generation: g,
                },
            )
        }
        pub fn cas_ok(&mut self, p: u64, e: u64, owner: u32, g: u64) -> &mut Self {
            self.cas_done(p, Type::Ok, e, owner, Some(g))
        }
    }

    fn outcome(h: &H) -> KeyOutcome {
        let r = check_history(&h.events, DEFAULT_MAX_STATES);
        assert_eq!(r.keys.len(), 1, "{r:?}");
        r.keys[0].result.outcome.clone()
    }

    fn anomalies(h: &H) -> Vec<Anomaly> {
        check_history(&h.events, DEFAULT_MAX_STATES).keys[0]
            .anomalies
            .clone()
    }

    #[test]
    fn a_sequential_history_that_follows_the_model_is_valid() {
        let mut h = H::default();
        h.read(1).read_ok(1, 5, 2);
        h.cas(1, 5, 3).cas_ok(1, 5, 3, 6);
        h.read(2).read_ok(2, 6, 3);
        h.cas(2, 6, 3).cas_ok(2, 6, 3, 6); // a no-op on its own owner
        h.cas(1, 5, 4).cas_done(1, Type::Fail, 5, 4, Some(6));
        h.read(1).read_ok(1, 6, 3);
        assert_eq!(outcome(&h), KeyOutcome::Valid);
        assert!(anomalies(&h).is_empty());
    }

    #[test]
    fn a_sequential_read_of_an_overwritten_owner_is_invalid() {
        let mut h = H::default();
        h.read(1).read_ok(1, 5, 2);
        h.cas(1, 5, 3).cas_ok(1, 5, 3, 6);
        h.read(1).read_ok(1, 6, 2);
        let KeyOutcome::Invalid(v) = outcome(&h) else {
            panic!("expected a violation")
        };
        assert_eq!(v.op.invoke_index, 4, "{}", v.explanation);
        assert!(v.explanation.contains("owner 2"), "{}", v.explanation);
    }

    #[test]
    fn a_concurrent_history_is_valid_when_one_order_works() {
        // p1's cas and p2's cas overlap; only "p2 first, then p1" explains
        // the generations (p2 expects 1, p1 expects 2).
        let mut h = H::default();
        h.read(3).read_ok(3, 1, 7);
        h.cas(1, 2, 10); // invoked first
        h.cas(2, 1, 20);
        h.cas_ok(1, 2, 10, 3);
        h.cas_ok(2, 1, 20, 2);
        h.read(3).read_ok(3, 3, 10);
        assert_eq!(outcome(&h), KeyOutcome::Valid);
        assert!(anomalies(&h).is_empty());
        // and the same with the final read naming p2's owner is not
        let mut bad = H::default();
        bad.read(3).read_ok(3, 1, 7);
        bad.cas(1, 2, 10).cas(2, 1, 20);
        bad.cas_ok(1, 2, 10, 3).cas_ok(2, 1, 20, 2);
        bad.read(3).read_ok(3, 3, 20);
        assert!(matches!(outcome(&bad), KeyOutcome::Invalid(_)));
    }

    #[test]
    fn an_unknown_cas_that_took_effect_is_valid() {
        let mut h = H::default();
        h.read(1).read_ok(1, 4, 1);
        h.cas(2, 4, 9).cas_done(2, Type::Info, 4, 9, None);
        h.read(1).read_ok(1, 5, 9);
        assert_eq!(outcome(&h), KeyOutcome::Valid);
        assert!(anomalies(&h).is_empty());
    }

    #[test]
    fn an_unknown_cas_that_took_effect_late_is_valid() {
        // p2's cas timed out, yet took effect after a later read.
        let mut h = H::default();
        h.read(1).read_ok(1, 4, 1);
        h.cas(2, 4, 9).cas_done(2, Type::Info, 4, 9, None);
        h.read(1).read_ok(1, 4, 1);
        h.read(1).read_ok(1, 5, 9);
        assert_eq!(outcome(&h), KeyOutcome::Valid);
    }

    #[test]
    fn an_unknown_cas_that_never_took_effect_is_valid() {
        let mut h = H::default();
        h.read(1).read_ok(1, 4, 1);
        h.cas(2, 4, 9).cas_done(2, Type::Info, 4, 9, None);
        h.read(1).read_ok(1, 4, 1);
        h.cas(1, 4, 3).cas_ok(1, 4, 3, 5);
        h.read(1).read_ok(1, 5, 3);
        // and a cas left without any completion is unknown too
        h.cas(3, 5, 8);
        assert_eq!(outcome(&h), KeyOutcome::Valid);
        assert!(anomalies(&h).is_empty());
    }

    #[test]
    fn environment_generation_bumps_are_valid_but_never_write_an_owner() {
        let mut h = H::default();
        h.read(1).read_ok(1, 2, 1);
        h.read(1).read_ok(1, 7, 1); // a scheduler finished two copies
        h.cas(2, 9, 4).cas_ok(2, 9, 4, 10); // and bumped twice more before
        h.cas(1, 7, 5).cas_done(1, Type::Fail, 7, 5, Some(10));
        h.read(1).read_ok(1, 12, 4);
        assert_eq!(outcome(&h), KeyOutcome::Valid);
        // a generation going backwards is not
        let mut back = H::default();
        back.read(1).read_ok(1, 7, 1).read(1).read_ok(1, 6, 1);
        assert!(matches!(outcome(&back), KeyOutcome::Invalid(_)));
    }

    #[test]
    fn the_environment_may_drop_the_owner_to_zero_only_with_a_generation_bump() {
        // given owner 4 read at generation 10
        let mut h = H::default();
        h.read(1).read_ok(1, 10, 4);
        // a finished copy that left owner 4 out dropped it: generation 11, owner 0
        h.read(2).read_ok(2, 11, 0);
        // a client writes owner 5 over it, a later read sees it
        h.cas(1, 11, 5).cas_ok(1, 11, 5, 12);
        h.read(2).read_ok(2, 12, 5);
        assert_eq!(outcome(&h), KeyOutcome::Valid);
        assert!(check_history(&h.events, 1_000)
            .keys
            .iter()
            .all(|k| k.anomalies.is_empty()));

        // but owner 0 at the very generation a read saw owner 4 is invalid
        let mut same = H::default();
        same.read(1).read_ok(1, 10, 4).read(2).read_ok(2, 10, 0);
        assert!(matches!(outcome(&same), KeyOutcome::Invalid(_)));

        // a failed cas that saw a bump lets a later read see 0 at that generation
        let mut failed = H::default();
        failed.read(1).read_ok(1, 10, 4);
        failed
            .cas(1, 10, 6)
            .cas_done(1, Type::Fail, 10, 6, Some(11));
        failed.read(2).read_ok(2, 11, 0);
        assert_eq!(outcome(&failed), KeyOutcome::Valid);

        // and once 0 is seen, the old owner cannot come back without a write
        let mut back = H::default();
        back.read(1)
            .read_ok(1, 10, 4)
            .read(2)
            .read_ok(2, 11, 0)
            .read(1)
            .read_ok(1, 12, 4);
        assert!(matches!(outcome(&back), KeyOutcome::Invalid(_)));
    }

    #[test]
    fn a_failed_cas_that_saw_its_expected_generation_is_invalid() {
        let mut h = H::default();
        h.cas(1, 3, 2).cas_done(1, Type::Fail, 3, 2, Some(3));
        assert!(matches!(outcome(&h), KeyOutcome::Invalid(_)));
        // while one without a generation is dropped
        let mut none = H::default();
        none.cas(1, 3, 2).cas_done(1, Type::Fail, 3, 2, None);
        assert!(check_history(&none.events, 10).keys.is_empty());
    }

    #[test]
    fn a_violation_names_the_op_and_its_concurrent_ops() {
        let mut h = H::default();
        h.read(1).read_ok(1, 5, 2);
        h.cas(2, 5, 3).cas_ok(2, 5, 3, 6); // p2 writes 3 and is acknowledged
        h.read(3).read_ok(3, 6, 3);
        h.read(1); // #6: p1 reads
        h.read(3); // #7: concurrently with p3
        h.read_ok(1, 6, 2); // p1 sees the old owner
        h.read_ok(3, 6, 3);
        let KeyOutcome::Invalid(v) = outcome(&h) else {
            panic!("expected a violation")
        };
        assert_eq!(v.op.process, 1);
        assert_eq!(v.op.invoke_index, 6, "{}", v.explanation);
        let concurrent: Vec<u64> = v.concurrent.iter().map(|o| o.invoke_index).collect();
        assert_eq!(concurrent, vec![7]);
        assert_eq!(v.required, 5);
        assert_eq!(v.linearized, 4);
    }

    #[test]
    fn the_search_bound_gives_unknown_not_a_verdict() {
        let mut h = H::default();
        for p in 0..6 {
            h.cas(p, 1, p as u32);
        }
        for p in 0..6 {
            h.cas_done(p, Type::Info, 1, p as u32, None);
        }
        h.read(9).read_ok(9, 3, 77);
        let r = check_history(&h.events, 5);
        assert_eq!(r.keys[0].result.outcome, KeyOutcome::Unknown);
        assert!(r.is_valid());
        assert_eq!(r.unknown_keys().count(), 1);
    }

    /// A valid history of `total` ops from 5 concurrent processes,
    /// generated from a simulated register: each round all 5 invoke, the
    /// effects happen in a random order (with environment bumps), then all
    /// complete in another order. One cas in `info_every` ends unknown
    /// (applied or not, at random) and its process is replaced by a new one.
    fn simulated(total: usize, info_every: u64, seed: u64) -> H {
        let mut h = H::default();
        let (mut generation, mut owner) = (1u64, 1u32);
        let mut seed = seed | 1;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut procs: Vec<u64> = (0..5).collect();
        let mut next_proc = 5;
        let mut ops = 0;
        while ops < total {
            let mut invoked = vec![];
            for (slot, &p) in procs.iter().enumerate() {
                let is_cas = rnd(2) == 0;
                let e = generation + rnd(2);
                let n = 1 + rnd(4) as u32;
                if is_cas {
                    h.cas(p, e, n);
                } else {
                    h.read(p);
                }
                invoked.push((slot, p, is_cas, e, n));
            }
            let mut results = vec![];
            while !invoked.is_empty() {
                let (slot, p, is_cas, e, n) = invoked.remove(rnd(invoked.len() as u64) as usize);
                if rnd(5) == 0 {
                    generation += 1; // the environment
                }
                let info = is_cas && info_every > 0 && rnd(info_every) == 0;
                if !is_cas {
                    results.push((slot, p, None, Type::Ok, generation, owner));
                } else if info {
                    if rnd(2) == 0 && e == generation {
                        if owner != n {
                            generation += 1;
                        }
                        owner = n;
                    }
                    results.push((slot, p, Some((e, n)), Type::Info, generation, owner));
                } else if e == generation {
                    if owner != n {
                        generation += 1;
                    }
                    owner = n;
                    results.push((slot, p, Some((e, n)), Type::Ok, generation, owner));
                } else {
                    results.push((slot, p, Some((e, n)), Type::Fail, generation, owner));
                }
            }
            while !results.is_empty() {
                let (slot, p, cas, kind, g, o) = results.remove(rnd(results.len() as u64) as usize);
                match (cas, kind) {
                    (None, _) => {
                        h.read_ok(p, g, o);
                    }
                    (Some((e, n)), Type::Info) => {
                        h.cas_done(p, Type::Info, e, n, None);
                        procs[slot] = next_proc;
                        next_proc += 1;
                    }
                    (Some((e, n)), kind) => {
                        h.cas_done(p, kind, e, n, Some(g));
                    }
                }
                ops += 1;
            }
        }
        h
    }

    fn corrupt_last_read(events: &[Event]) -> Vec<Event> {
        let mut bad = events.to_vec();
        let last_read = bad
            .iter_mut()
            .rev()
            .find(|e| e.kind == Type::Ok && matches!(e.op, Op::Read { .. }))
            .unwrap();
        if let Op::Read { value: Some(v), .. } = &mut last_read.op {
            v.owner = 99; // an owner nobody wrote
        }
        bad
    }

    #[test]
    fn three_hundred_concurrent_ops_from_five_processes_check_quickly() {
        let h = simulated(300, 0, 0x9e37_79b9_7f4a_7c15);
        let r = check_history(&h.events, DEFAULT_MAX_STATES);
        assert_eq!(r.keys[0].result.ops, 300);
        assert_eq!(
            r.keys[0].result.outcome,
            KeyOutcome::Valid,
            "{:?}",
            r.keys[0].result
        );
        assert!(r.keys[0].anomalies.is_empty(), "{:?}", r.keys[0].anomalies);
        // Quick in work done, not in seconds (a loaded machine is slow).
        assert!(
            r.keys[0].result.explored < 100_000,
            "{:?}",
            r.keys[0].result
        );
        let r = check_history(&corrupt_last_read(&h.events), DEFAULT_MAX_STATES);
        assert!(!r.is_valid());
    }

    #[test]
    fn histories_with_unknown_outcomes_check_quickly() {
        for seed in 1..=5u64 {
            let h = simulated(300, 8, seed * 0x2545_f491_4f6c_dd1d);
            let unknown = h.events.iter().filter(|e| e.kind == Type::Info).count();
            assert!(unknown >= 3, "seed {seed}: {unknown} unknown");
            let r = check_history(&h.events, DEFAULT_MAX_STATES);
            let k = &r.keys[0];
            assert_eq!(
                k.result.outcome,
                KeyOutcome::Valid,
                "seed {seed}: {:?}",
                k.result
            );
            assert!(k.anomalies.is_empty(), "seed {seed}: {:?}", k.anomalies);
            assert!(
                k.result.explored < 1_000_000,
                "seed {seed}: {} states",
                k.result.explored
            );
            let r = check_history(&corrupt_last_read(&h.events), DEFAULT_MAX_STATES);
            assert!(!r.is_valid(), "seed {seed}");
        }
    }
}
