//! The cluster-wide activation decision.

use std::collections::BTreeSet;
use std::fmt;

use crate::registry::REGISTRY;

/// Who a blocker or a join refers to. Members sort before chunks (variant
/// order), each by id, which is the order blockers are reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Party {
    /// A meta (Raft) member, voter or learner, by node id.
    Member(u64),
    /// A chunk server, by cid.
    Chunk(u32),
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Member(id) => write!(f, "member {id}"),
            Party::Chunk(cid) => write!(f, "chunk {cid}"),
        }
    }
}

/// What a member or chunk says it speaks. Adverts carry the capability set
/// itself (not only the version) so that a newer binary's names reach an
/// older leader intact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Advert {
    /// Product version, e.g. "2.0" (reported to operators as is).
    pub version: String,
    /// Capability names it supports.
    pub capabilities: BTreeSet<String>,
}

impl Advert {
    /// The advert this binary sends: [`crate::CURRENT_VERSION`] and every
    /// registry capability (the registry never lists anything newer than the
    /// binary that contains it).
    pub fn current() -> Advert {
        Advert {
            version: crate::CURRENT_VERSION.to_string(),
            capabilities: REGISTRY.iter().map(|c| c.name.to_string()).collect(),
        }
    }

    /// Whether it advertises `name`.
    pub fn has(&self, name: &str) -> bool {
        self.capabilities.contains(name)
    }
}

/// Everything [`decide`] looks at; the caller assembles it from replicated
/// state, so every node computes the same answer.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The CURRENT Raft membership, voters and learners (a learner will vote
    /// soon and must decode the log too). Removed members are simply not
    /// listed. `None` = the member has not advertised yet: it blocks, since
    /// nothing proves it supports anything.
    pub members: &'a [(u64, Option<&'a Advert>)],
    /// Chunks with a LIVE session only (the caller filters): an expired chunk
    /// renews nothing and must re-join, where [`crate::check_join`] checks it.
    pub chunks: &'a [(u32, &'a Advert)],
    /// Capabilities already switched on (replicated). May hold names this
    /// binary does not know: a newer version activated them.
    pub active: &'a BTreeSet<String>,
    /// Operator hold: nothing new activates while it is set (e.g. to finish
    /// upgrading before changing behaviour).
    pub hold: bool,
}

/// One member or chunk that keeps a capability off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// Who.
    pub who: Party,
    /// Its advertised version; `None` if it has not advertised yet.
    pub version: Option<String>,
    /// The capability it lacks.
    pub lacks: &'static str,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} (version {v})", self.who),
            None => write!(f, "{} (not advertised yet)", self.who),
        }
    }
}

/// A registry capability that is not active and does not activate now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its name.
    pub name: &'static str,
    /// The operator hold is on: even with no blockers it would not activate.
    pub held: bool,
    /// Who lacks it: members first by id, then chunks by cid. Empty only if
    /// `held` (nothing else keeps it off).
    pub blockers: Vec<Blocker>,
}

/// The result of [`decide`]: what to propose and what to tell operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Capabilities to switch on now, in registry order (one replicated
    /// proposal for all of them).
    pub activate: Vec<&'static str>,
    /// Registry capabilities still off, in registry order.
    pub pending: Vec<Pending>,
    /// The capabilities that were already active, sorted, unknown names
    /// included as they are.
    pub active: Vec<String>,
}

/// Decides which registry capabilities to switch on.
///
/// A capability not yet active activates iff the membership is non-empty,
/// every listed member advertises it, every listed chunk advertises it (only
/// if it `needs_chunks`), and there is no hold. Otherwise it is [`Pending`]
/// with its blockers (and `held` if the hold is on). An empty membership
/// decides nothing: with no member there is nobody whose support counts, and
/// "everyone agrees" must not be satisfied vacuously. Names in `active` this
/// binary does not know never block and are passed through.
pub fn decide(inputs: &Inputs) -> Decision {
    let mut decision = Decision {
        activate: Vec::new(),
        pending: Vec::new(),
        active: inputs.active.iter().cloned().collect(),
    };
    if inputs.members.is_empty() {
        return decision;
    }

    let mut members: Vec<&(u64, Option<&Advert>)> = inputs.members.iter().collect();
    members.sort_by_key(|(id, _)| *id);
    let mut chunks: Vec<&(u32, &Advert)> = inputs.chunks.iter().collect();
    chunks.sort_by_key(|(cid, _)| *cid);

    for cap in REGISTRY {
        if inputs.active.contains(cap.name) {
            continue;
        }
        let mut blockers = Vec::new();
        for (id, advert) in &members {
            match advert {
                None => blockers.push(Blocker {
                    who: Party::Member(*id),
                    version: None,
                    lacks: cap.name,
                }),
                Some(a) if !a.has(cap.name) => blockers.push(Blocker {
                    who: Party::Member(*id),
                    version: Some(a.version.clone()),
                    lacks: cap.name,
                }),
                Some(_) => {}
            }
        }
        if cap.needs_chunks {
            for (cid, advert) in &chunks {
                if !advert.has(cap.name) {
                    blockers.push(Blocker {
                        who: Party::Chunk(*cid),
                        version: Some(advert.version.clone()),
                        lacks: cap.name,
                    });
                }
            }
        }
        if blockers.is_empty() && !inputs.hold {
            decision.activate.push(cap.name);
        } else {
            decision.pending.push(Pending {
                name: cap.name,
                held: inputs.hold,
                blockers,
            });
        }
    }
    decision
}

/// Operator text, one line per capability in registry order, then names
/// unknown to this binary:
///
/// ```text
/// lease_7s: pending, blocked by member 2 (version 1.0), chunk 5 (version 1.0)
/// copy_commands: activating now
/// ```
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        for cap in REGISTRY {
            let state = if self.active.iter().any(|a| a == cap.name) {
                "active".to_string()
            } else if self.activate.contains(&cap.name) {
                "activating now".to_string()
            } else if let Some(p) = self.pending.iter().find(|p| p.name == cap.name) {
                let mut s = String::from("pending");
                if p.held {
                    s.push_str(" (held)");
                }
                if !p.blockers.is_empty() {
                    let who: Vec<String> = p.blockers.iter().map(|b| b.to_string()).collect();
                    s.push_str(", blocked by ");
                    s.push_str(&who.join(", "));
                }
                s
            } else {
                "inactive (no members)".to_string()
            };
            lines.push(format!("{}: {state}", cap.name));
        }
        for name in &self.active {
            if crate::capability(name).is_none() {
                lines.push(format!(
                    "{name}: active (unknown to version {})",
                    crate::CURRENT_VERSION
                ));
            }
        }
        f.write_str(&lines.join("\n"))
    }
}
