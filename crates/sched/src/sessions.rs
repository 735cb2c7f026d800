//! The leader's session tracker: who kept alive when, who expires, and the
//! freshness checkpoint that carries silence across leader changes.
//!
//! Pure: the caller passes monotonic milliseconds (`now`) and the replicated
//! sessions; the tracker answers keepalives from memory and returns the
//! commands to propose. Keepalives are never Raft writes; only expiries,
//! checkpoints and (rate-limited) space reports are.
//!
//! Rules (docs/sessions.md):
//! - a session whose silence reaches its lease is expired (`ExpireSession`
//!   naming the session, so an expiry of an older session is rejected);
//! - a new leader gives every session a full lease from the moment it took
//!   over, minus the silence the last checkpoint recorded for it, but never
//!   less than `min_grace_ms`: a fresh session gets a full lease, a dead one
//!   keeps the silence it had accumulated under the previous leaders;
//! - a session is listed in the freshness checkpoint when it is silent for
//!   `silent_after_ms`, or when it has not reached this leader within
//!   `min_grace_ms` of its taking office (a live chunk finds a new leader at
//!   once; without this rule a dead chunk whose silence no single leader saw
//!   reach `silent_after_ms` would get a full lease from every new leader and
//!   never expire while leaders change quickly), or when its expiry has been
//!   proposed (should that proposal be lost with its leader, the next one
//!   still knows the silence);
//! - while some session is listed, the leader replicates a checkpoint every
//!   `checkpoint_every_ms`; when a listed session renews, at once (so a new
//!   leader never inherits a stale silence for a session that is back); with
//!   every session fresh, nothing at all;
//! - a listed session's keepalive is acknowledged only once a checkpoint
//!   clearing it is applied (`KeepAliveError::Renewing` until then): a chunk
//!   is never promised a lease that a new leader, going by the recorded
//!   silence, would cut short.

use std::collections::{BTreeMap, HashMap};

use cairn_state::{ChunkSpaceInfo, Cid, Cmd, Session, SessionId, SilentSession, MAX_SILENT_MS};

/// How often a chunk keeps alive for a given lease: seven times per lease,
/// so a chunk misses six keepalives in a row before it expires.
pub fn keepalive_interval_ms(lease_ms: u64) -> u64 {
    (lease_ms / 7).max(100)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// A session silent this long is listed in the freshness checkpoint.
    pub silent_after_ms: u64,
    /// How often a checkpoint is replicated while some session is listed
    /// (silent, not heard since this leader took office, or expiring).
    pub checkpoint_every_ms: u64,
    /// Least time a new leader gives any inherited session to reach it.
    pub min_grace_ms: u64,
    /// An expiry that has not taken effect after this long is proposed again.
    pub retry_ms: u64,
    /// A chunk's space report becomes a Raft write at most this often...
    pub space_every_ms: u64,
    /// ...unless a figure moved by this many basis points of its capacity.
    pub space_big_change_bp: u64,
}

impl TrackerConfig {
    /// Defaults for a lease: silent after two keepalive intervals, a minimum
    /// grace of one interval, checkpoints every 500 ms while any is due.
    pub fn for_lease(lease_ms: u64) -> TrackerConfig {
        let interval = keepalive_interval_ms(lease_ms);
        TrackerConfig {
            silent_after_ms: 2 * interval,
            checkpoint_every_ms: 500,
            min_grace_ms: interval,
            retry_ms: 3_000,
            space_every_ms: 5_000,
            space_big_change_bp: 500,
        }
    }
}

/// Why a keepalive was refused: the chunk must register again.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum KeepAliveError {
    #[error("chunk {cid} has no live session {session_id} (live: {live:?}); register again")]
    NoSession {
        cid: Cid,
        session_id: SessionId,
        live: Option<SessionId>,
    },
    #[error("session {session_id} of chunk {cid} has expired; register again")]
    Expired { cid: Cid, session_id: SessionId },
    /// Renewed in the tracker, but not acknowledged yet: a checkpoint that
    /// records silence for it is replicated (or on its way), and a leader
    /// taking over from it would cut the chunk's lease short. The chunk
    /// retries shortly, once a checkpoint clearing it is applied.
    #[error("session {session_id} of chunk {cid} was checkpointed as silent; its renewal is being replicated, retry")]
    Renewing { cid: Cid, session_id: SessionId },
}

#[derive(Clone, Debug)]
struct Tracked {
    session_id: SessionId,
    lease_ms: u64,
    /// After a lease was shortened: not expired before this time, the end
    /// of the longer lease it had been promised (0 = no such promise).
    not_before_ms: u64,
    /// When this leader last heard from the session (or took office).
    last_seen_ms: u64,
    /// Silence inherited from earlier leaders, counted before `last_seen_ms`.
    inherited_ms: u64,
    /// Heard from since this leader took office (or opened under it).
    heard: bool,
    /// The last checkpoint that listed it: 0 the one this leader inherited
    /// (the applied state recorded silence for it), k this leader's k-th.
    /// Until a later checkpoint of this leader is applied, a leader taking
    /// over may go by that silence.
    listed_in: Option<u64>,
    expiry_proposed_ms: Option<u64>,
    /// The latest space report not yet replicated.
    /// (Boxed, like `space_written`: keepalives touch only the fields
    /// above, and 10,000 small entries stay in cache where 300-byte ones
    /// did not.)
    space: Option<Box<ChunkSpaceInfo>>,
    /// The last space report replicated by this leader, and when.
    space_written: Option<Box<(ChunkSpaceInfo, u64)>>,
}

impl Tracked {
    fn silence(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_seen_ms)
            .saturating_add(self.inherited_ms)
    }
}

/// One row of `cairn session list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    pub cid: Cid,
    pub session_id: SessionId,
    pub lease_ms: u64,
    /// Milliseconds since the last keepalive this leader saw (inherited
    /// silence included).
    pub silent_ms: u64,
    pub expiring: bool,
}

#[derive(Clone, Debug)]
pub struct SessionTracker {
    cfg: TrackerConfig,
    /// A hash map, not a BTreeMap: a keepalive is one lookup, and with
    /// 10,000 sessions each level of a B-tree was a cache miss (a third of
    /// the leader's keepalive cost). Whatever leaves the tracker is sorted
    /// by cid, so its output stays deterministic.
    sessions: HashMap<Cid, Tracked>,
    /// What the last replicated checkpoint listed (cid -> session).
    listed: BTreeMap<Cid, SessionId>,
    last_checkpoint_ms: Option<u64>,
    /// A listed session renewed: replicate a checkpoint at the next tick.
    listed_renewed: bool,
    /// Checkpoints this leader proposed, and the last of them known applied
    /// (`checkpoint_applied`): they are applied in the order proposed.
    checkpoints_proposed: u64,
    checkpoints_applied: u64,
    /// When this leader took office.
    office_ms: u64,
    /// Nothing can fall due before this instant: `tick` skips its scan of
    /// every session until then (keepalives only push deadlines later).
    next_scan_ms: u64,
    /// Something changed that may bring a deadline forward: scan next tick.
    dirty: bool,
}

impl SessionTracker {
    /// The tracker of a leader that took office at `now`, over the live
    /// sessions of its (fully applied) state.
    pub fn new<'a>(
        cfg: TrackerConfig,
        now: u64,
        live: impl IntoIterator<Item = &'a Session>,
    ) -> SessionTracker {
        let mut t = SessionTracker {
            cfg,
            sessions: HashMap::new(),
            listed: BTreeMap::new(),
            last_checkpoint_ms: None,
            listed_renewed: false,
            checkpoints_proposed: 0,
            checkpoints_applied: 0,
            office_ms: now,
            next_scan_ms: 0,
            dirty: true,
        };
        for s in live {
            // A full lease from now, minus the silence the last checkpoint
            // recorded, but at least the minimum grace.
            let inherited = s.silent_ms.min(s.lease_ms.saturating_sub(cfg.min_grace_ms));
            let mut tracked = t.fresh(s, now, inherited);
            tracked.heard = false;
            tracked.listed_in = (s.silent_ms > 0).then_some(0);
            t.sessions.insert(s.cid, tracked);
            if s.silent_ms > 0 {
                t.listed.insert(s.cid, s.session_id);
            }
        }
        t
    }

    fn fresh(&self, s: &Session, now: u64, inherited_ms: u64) -> Tracked {
        Tracked {
            session_id: s.session_id,
            lease_ms: s.lease_ms,
            not_before_ms: 0,
            last_seen_ms: now,
            inherited_ms,
            heard: true,
            listed_in: None,
            expiry_proposed_ms: None,
            space: None,
            space_written: None,
        }
    }

    /// Follows the replicated sessions: a session opened since is fresh (its
    /// chunk just registered), one that ended is forgotten.
    pub fn sync<'a>(&mut self, now: u64, live: impl IntoIterator<Item = &'a Session>) {
        let mut seen = std::collections::HashSet::new();
        for s in live {
            seen.insert(s.cid);
            self.opened(now, s);
        }
        self.sessions.retain(|cid, _| seen.contains(cid));
    }

    /// A session just opened through this leader (a chunk registered): fresh
    /// and heard. Same as `sync` for that one session, without a full scan.
    pub fn opened(&mut self, now: u64, s: &Session) {
        let known = self
            .sessions
            .get(&s.cid)
            .is_some_and(|t| t.session_id == s.session_id);
        if !known {
            let t = self.fresh(s, now, 0);
            self.sessions.insert(s.cid, t);
            self.dirty = true;
        }
    }

    /// A keepalive from `cid` for `session_id`: renews it, or tells the chunk
    /// to register again. Returns the session's lease.
    ///
    /// A session that a checkpoint lists (the inherited one, or any this
    /// leader proposed, applied or not) is renewed here but not
    /// acknowledged (`Renewing`) until a later checkpoint of this leader is
    /// applied (`checkpoint_applied`): a leader taking over would give it
    /// only its lease less the recorded silence, and could expire it before
    /// the end of the lease the chunk was just promised.
    pub fn keepalive(
        &mut self,
        now: u64,
        cid: Cid,
        session_id: SessionId,
    ) -> Result<u64, KeepAliveError> {
        let t = match self.sessions.get_mut(&cid) {
            Some(t) if t.session_id == session_id => t,
            other => {
                return Err(KeepAliveError::NoSession {
                    cid,
                    session_id,
                    live: other.map(|t| t.session_id),
                })
            }
        };
        // Once the leader decided to expire it, the session is over, even if
        // the chunk is back a moment later: it registers again.
        if t.expiry_proposed_ms.is_some() {
            return Err(KeepAliveError::Expired { cid, session_id });
        }
        t.last_seen_ms = now;
        t.inherited_ms = 0;
        t.heard = true;
        if t.listed_in.is_some_and(|k| k >= self.checkpoints_applied) {
            self.listed_renewed = true;
            return Err(KeepAliveError::Renewing { cid, session_id });
        }
        Ok(t.lease_ms)
    }

    /// What the replicated state already holds for a chunk's space: a report
    /// equal to it is not written again (a new leader seeds every session's).
    pub fn seed_space(&mut self, now: u64, cid: Cid, space: ChunkSpaceInfo) {
        if let Some(t) = self.sessions.get_mut(&cid) {
            t.space_written = Some(Box::new((space, now)));
        }
    }

    /// Records a space report sent with a keepalive; `tick` decides when it
    /// becomes a Raft write.
    pub fn report_space(&mut self, cid: Cid, session_id: SessionId, space: ChunkSpaceInfo) {
        if let Some(t) = self.sessions.get_mut(&cid) {
            if t.session_id == session_id {
                // The latest report wins; one equal to what is replicated
                // leaves nothing to write (and nothing to scan for).
                let unchanged = t.space_written.as_deref().is_some_and(|(w, _)| *w == space);
                let pending = if unchanged { None } else { Some(space) };
                if pending.as_ref() != t.space.as_deref() {
                    t.space = pending.map(Box::new);
                    self.dirty = true;
                }
            }
        }
    }

    /// The commands this leader should propose now: expiries, a checkpoint
    /// when one is due, and the space reports that are due.
    pub fn tick(&mut self, now: u64) -> Vec<Cmd> {
        let cfg = self.cfg;
        let periodic = self
            .last_checkpoint_ms
            .is_none_or(|at| now.saturating_sub(at) >= cfg.checkpoint_every_ms);
        let checkpoint_due = self.listed_renewed || (periodic && !self.listed.is_empty());
        if !self.dirty && !checkpoint_due && now < self.next_scan_ms {
            return vec![];
        }
        self.dirty = false;
        let mut next = u64::MAX;
        let mut cmds = vec![];
        let mut silent = vec![];
        let in_office = now.saturating_sub(self.office_ms);
        for (&cid, t) in self.sessions.iter_mut() {
            let silence = t.silence(now);
            let retry = t
                .expiry_proposed_ms
                .is_none_or(|at| now.saturating_sub(at) >= cfg.retry_ms);
            if silence >= t.lease_ms && now >= t.not_before_ms && retry {
                t.expiry_proposed_ms = Some(now);
                cmds.push(Cmd::ExpireSession {
                    cid,
                    session_id: t.session_id,
                });
            }
            // Not heard by this leader: listed once it has had min_grace to
            // come, and at once if earlier leaders recorded silence for it
            // (listing it later would clear that record in the meantime).
            let unheard = !t.heard && (in_office >= cfg.min_grace_ms || t.inherited_ms > 0);
            if silence >= cfg.silent_after_ms || unheard || t.expiry_proposed_ms.is_some() {
                silent.push(SilentSession {
                    cid,
                    session_id: t.session_id,
                    silent_ms: silence.min(MAX_SILENT_MS),
                });
            }
            if let Some(at) = t.expiry_proposed_ms {
                next = next.min(at.saturating_add(cfg.retry_ms));
                continue;
            }
            // When this session's silence reaches a threshold (it only moves
            // later when the chunk keeps alive).
            let reach = |x: u64| {
                t.last_seen_ms
                    .saturating_add(x)
                    .saturating_sub(t.inherited_ms)
            };
            next = next
                .min(reach(cfg.silent_after_ms))
                .min(reach(t.lease_ms).max(t.not_before_ms));
            if !t.heard {
                next = next.min(self.office_ms.saturating_add(cfg.min_grace_ms));
            }
            if let Some(space) = t.space.as_deref().copied() {
                let due = match t.space_written.as_deref() {
                    None => true,
                    Some(&(old, at)) => {
                        now.saturating_sub(at) >= cfg.space_every_ms
                            || big_change(&old, &space, cfg.space_big_change_bp)
                    }
                };
                if due {
                    t.space = None;
                    if t.space_written
                        .as_deref()
                        .is_none_or(|(old, _)| *old != space)
                    {
                        cmds.push(Cmd::ReportSpace { cid, space });
                    }
                    t.space_written = Some(Box::new((space, now)));
                } else if let Some(&(_, at)) = t.space_written.as_deref() {
                    next = next.min(at.saturating_add(cfg.space_every_ms));
                }
            }
        }
        // In cid order, as if the scan had gone through the sessions sorted
        // (stable: a chunk's expiry stays before its space report).
        cmds.sort_by_key(|c| match c {
            Cmd::ExpireSession { cid, .. } | Cmd::ReportSpace { cid, .. } => *cid,
            _ => 0,
        });
        silent.sort_by_key(|s| s.cid);
        // A session that should be listed and is not yet (an expiring one
        // whose lease is shorter than silent_after, say) waits at most one
        // checkpoint period, not until its next own deadline.
        let unlisted = silent
            .iter()
            .any(|s| self.listed.get(&s.cid) != Some(&s.session_id));
        if unlisted {
            let due = self
                .last_checkpoint_ms
                .map_or(now, |at| at.saturating_add(cfg.checkpoint_every_ms));
            next = next.min(due);
        }
        self.next_scan_ms = next;
        let something_to_say = !silent.is_empty() || !self.listed.is_empty();
        if self.listed_renewed || (periodic && something_to_say) {
            self.listed = silent.iter().map(|s| (s.cid, s.session_id)).collect();
            self.last_checkpoint_ms = Some(now);
            self.listed_renewed = false;
            self.checkpoints_proposed += 1;
            for l in &silent {
                if let Some(t) = self.sessions.get_mut(&l.cid) {
                    if t.session_id == l.session_id {
                        t.listed_in = Some(self.checkpoints_proposed);
                    }
                }
            }
            cmds.push(Cmd::SessionCheckpoint { silent });
        }
        cmds
    }

    /// How many checkpoints this leader has proposed: the number of the last
    /// one `tick` returned, to report with [`Self::checkpoint_applied`].
    pub fn checkpoints_proposed(&self) -> u64 {
        self.checkpoints_proposed
    }

    /// This leader's `seq`-th checkpoint is applied (so is every earlier
    /// one that will ever be: they were proposed in order). A session it
    /// did not list may have its keepalives acknowledged again.
    pub fn checkpoint_applied(&mut self, seq: u64) {
        self.checkpoints_applied = self.checkpoints_applied.max(seq);
    }

    /// Commands `tick` returned were not committed (the proposal failed or
    /// was dropped): say them again. An expiry is proposed again at the next
    /// tick, a checkpoint is written again at once with the current
    /// silences, a space report is written again.
    pub fn proposal_failed(&mut self, cmds: &[Cmd]) {
        for cmd in cmds {
            match cmd {
                Cmd::ExpireSession { cid, session_id } => {
                    if let Some(t) = self.sessions.get_mut(cid) {
                        if t.session_id == *session_id {
                            t.expiry_proposed_ms = None;
                        }
                    }
                }
                Cmd::SessionCheckpoint { .. } => self.listed_renewed = true,
                Cmd::ReportSpace { cid, space } => {
                    if let Some(t) = self.sessions.get_mut(cid) {
                        t.space_written = None;
                        t.space.get_or_insert_with(|| Box::new(*space));
                    }
                }
                _ => {}
            }
        }
        self.dirty = true;
    }

    /// The cluster's lease became shorter (`lease_7s` activated): every
    /// session with a longer lease gets `lease_ms` at once (its chunk learns
    /// it from its next keepalive reply and keeps alive more often), but is
    /// not expired before the end of the lease it had been promised, counted
    /// from when it was last heard of: one full old lease at most, so no
    /// chunk that kept the old promise expires in the switch.
    pub fn shorten_leases(&mut self, now: u64, lease_ms: u64) {
        for t in self.sessions.values_mut() {
            if lease_ms < t.lease_ms {
                let promised = now
                    .saturating_sub(t.silence(now))
                    .saturating_add(t.lease_ms);
                t.not_before_ms = t.not_before_ms.max(promised);
                t.lease_ms = lease_ms;
            }
        }
        self.dirty = true;
    }

    /// New thresholds (the cluster's lease was changed); sessions keep
    /// their own lease until they register again (or, shorter, see
    /// [`SessionTracker::shorten_leases`]).
    pub fn set_config(&mut self, cfg: TrackerConfig) {
        self.cfg = cfg;
        self.dirty = true;
    }

    pub fn config(&self) -> TrackerConfig {
        self.cfg
    }

    /// Every tracked session as this leader sees it, by cid.
    pub fn view(&self, now: u64) -> Vec<SessionView> {
        let mut v: Vec<SessionView> = self
            .sessions
            .iter()
            .map(|(&cid, t)| SessionView {
                cid,
                session_id: t.session_id,
                lease_ms: t.lease_ms,
                silent_ms: t.silence(now),
                expiring: t.expiry_proposed_ms.is_some(),
            })
            .collect();
        v.sort_by_key(|s| s.cid);
        v
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// Did any space figure move by more than `bp` basis points of its capacity?
fn big_change(old: &ChunkSpaceInfo, new: &ChunkSpaceInfo, bp: u64) -> bool {
    let moved = |a: u64, b: u64, cap: u64| -> bool {
        let delta = u128::from(a.abs_diff(b)) * 10_000;
        delta > u128::from(cap.max(1)) * u128::from(bp)
    };
    let cap = new.total_data_capacity.max(old.total_data_capacity);
    new.total_data_capacity != old.total_data_capacity
        || moved(old.valid_data_space, new.valid_data_space, cap)
        || moved(old.used_data_space, new.used_data_space, cap)
        || moved(old.provisioned_data_space, new.provisioned_data_space, cap)
        || moved(old.allocated_data_space, new.allocated_data_space, cap)
        || moved(old.failure_data_space, new.failure_data_space, cap)
}
