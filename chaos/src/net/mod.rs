//! Network faults between the members of a real-process campaign.
//!
//! Two backends sit behind one interface, [`Faults`]:
//!
//! * [`proxy`]: an in-process fault-injecting TCP proxy per directed link
//!   (member `i` reaches member `j` through the proxy of link `i→j`). Needs
//!   no privileges; faults are applied per TCP connection.
//! * [`netns`]: every member in its own network namespace on a bridge, with
//!   nftables rules for partitions and `tc netem` for delays. Needs root;
//!   faults are applied per packet, like a real network.
//!
//! The runner describes faults as blocked directed pairs ([`Link`]s); the
//! pure function [`blocked_links`] turns a [`PartitionSpec`] into that set,
//! so what a nemesis did can be recorded and tested without a network.
//!
//! All fault calls are cumulative (a `block` after a `partition` adds to
//! it); [`Faults::heal`] removes every fault.

pub mod netns;
pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use netns::NetNs;
use proxy::{Mode, ProxyNet};

/// A member id, as in `cairn server` (1..=N).
pub type MemberId = u64;

/// A directed pair: traffic *from* `from` *to* `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    pub from: MemberId,
    pub to: MemberId,
}

impl Link {
    pub fn new(from: MemberId, to: MemberId) -> Self {
        Link { from, to }
    }

    /// The same pair, the other way round.
    pub fn reversed(self) -> Self {
        Link {
            from: self.to,
            to: self.from,
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}", self.from, self.to)
    }
}

/// Everything that can go wrong in this module.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// The netns backend cannot run here (not root, a tool missing, ...).
    /// The runner falls back to the proxy.
    #[error("network namespaces unavailable: {0}")]
    Prerequisite(String),
    /// The backend cannot express this fault. The runner skips or falls back.
    #[error("unsupported by the {backend} backend: {what}")]
    Unsupported { backend: &'static str, what: String },
    #[error("unknown member {0}")]
    UnknownMember(MemberId),
    #[error("invalid fault: {0}")]
    InvalidSpec(String),
}

impl NetError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NetError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// A partition, in the terms a nemesis uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionSpec {
    /// One way: packets `from → to` are dropped.
    Block { from: MemberId, to: MemberId },
    /// Every pair across two different groups is blocked, both ways.
    /// Members in no group keep talking to everyone.
    Groups(Vec<Vec<MemberId>>),
    /// The member alone against all the others.
    Isolate(MemberId),
    /// Jepsen's bridge: `a_side` and `b_side` cannot talk to each other,
    /// `bridge` talks to both (so both halves may see a majority).
    Bridge {
        a_side: Vec<MemberId>,
        bridge: MemberId,
        b_side: Vec<MemberId>,
    },
    /// No fault.
    Heal,
}

impl fmt::Display for PartitionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn group(g: &[MemberId]) -> String {
            let ids: Vec<String> = g.iter().map(|m| m.to_string()).collect();
            format!("[{}]", ids.join(","))
        }
        match self {
            PartitionSpec::Block { from, to } => write!(f, "block {from}->{to}"),
            PartitionSpec::Groups(groups) => {
                let gs: Vec<String> = groups.iter().map(|g| group(g)).collect();
                write!(f, "partition {}", gs.join(" | "))
            }
            PartitionSpec::Isolate(id) => write!(f, "isolate {id}"),
            PartitionSpec::Bridge {
                a_side,
                bridge,
                b_side,
            } => write!(f, "bridge {} <{bridge}> {}", group(a_side), group(b_side)),
            PartitionSpec::Heal => write!(f, "heal"),
        }
    }
}

fn check_member(members: &[MemberId], id: MemberId) -> Result<()> {
    if members.contains(&id) {
        Ok(())
    } else {
        Err(NetError::UnknownMember(id))
    }
}

/// Blocks every pair across different groups, both ways. Groups must be
/// disjoint and made of known members.
fn across_groups(groups: &[Vec<MemberId>], members: &[MemberId]) -> Result<BTreeSet<Link>> {
    let mut seen = BTreeSet::new();
    for id in groups.iter().flatten() {
        check_member(members, *id)?;
        if !seen.insert(*id) {
            return Err(NetError::InvalidSpec(format!(
                "member {id} is in more than one group"
            )));
        }
    }
    let mut out = BTreeSet::new();
    for (gi, a) in groups.iter().enumerate() {
        for (gj, b) in groups.iter().enumerate() {
            if gi == gj {
                continue;
            }
            for &from in a {
                for &to in b {
                    out.insert(Link::new(from, to));
                }
            }
        }
    }
    Ok(out)
}

/// The directed pairs whose packets a spec drops, for the given members.
pub fn blocked_links(spec: &PartitionSpec, members: &[MemberId]) -> Result<BTreeSet<Link>> {
    match spec {
        PartitionSpec::Block { from, to } => {
            check_member(members, *from)?;
            check_member(members, *to)?;
            if from == to {
                return Err(NetError::InvalidSpec(format!(
                    "cannot block member {from} from itself"
                )));
            }
            Ok(BTreeSet::from([Link::new(*from, *to)]))
        }
        PartitionSpec::Groups(groups) => across_groups(groups, members),
        PartitionSpec::Isolate(id) => {
            check_member(members, *id)?;
            let rest: Vec<MemberId> = members.iter().copied().filter(|m| m != id).collect();
            across_groups(&[vec![*id], rest], members)
        }
        PartitionSpec::Bridge {
            a_side,
            bridge,
            b_side,
        } => {
            check_member(members, *bridge)?;
            if a_side.contains(bridge) || b_side.contains(bridge) {
                return Err(NetError::InvalidSpec(format!(
                    "bridge member {bridge} is also on a side"
                )));
            }
            // The bridge is in no group, so it keeps both sides.
            across_groups(&[a_side.clone(), b_side.clone()], members)
        }
        PartitionSpec::Heal => Ok(BTreeSet::new()),
    }
}

/// What is currently faulted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultState {
    /// Packets `from → to` dropped.
    pub blocked: BTreeSet<Link>,
    /// Traffic of link `from → to` delayed.
    pub delayed: BTreeMap<Link, Duration>,
    /// Connections `from → to`: requests arrive, replies are lost.
    pub drop_replies: BTreeSet<Link>,
    /// The operations since the last heal, for the history.
    pub ops: Vec<String>,
}

impl FaultState {
    pub fn is_healthy(&self) -> bool {
        self.blocked.is_empty() && self.delayed.is_empty() && self.drop_replies.is_empty()
    }

    /// The proxy mode of link `i→j` (connections member `i` opens to `j`).
    /// A block wins over everything: a one-way block `j→i` leaves `i`'s
    /// requests arriving at `j` and loses `j`'s answers.
    pub fn proxy_mode(&self, link: Link) -> Mode {
        if self.blocked.contains(&link) {
            Mode::Blackhole
        } else if self.blocked.contains(&link.reversed()) || self.drop_replies.contains(&link) {
            Mode::DropReplies
        } else if let Some(d) = self.delayed.get(&link) {
            Mode::Delay(*d)
        } else {
            Mode::Pass
        }
    }
}

impl fmt::Display for FaultState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_healthy() {
            return write!(f, "healthy");
        }
        let mut parts = Vec::new();
        if !self.ops.is_empty() {
            parts.push(self.ops.join("; "));
        }
        if !self.blocked.is_empty() {
            let l: Vec<String> = self.blocked.iter().map(|l| l.to_string()).collect();
            parts.push(format!("blocked {}", l.join(" ")));
        }
        if !self.delayed.is_empty() {
            let l: Vec<String> = self
                .delayed
                .iter()
                .map(|(l, d)| format!("{l}+{}ms", d.as_millis()))
                .collect();
            parts.push(format!("delayed {}", l.join(" ")));
        }
        if !self.drop_replies.is_empty() {
            let l: Vec<String> = self.drop_replies.iter().map(|l| l.to_string()).collect();
            parts.push(format!("drop-replies {}", l.join(" ")));
        }
        write!(f, "{}", parts.join(" :: "))
    }
}

enum Backend {
    Proxy(ProxyNet),
    NetNs(NetNs),
}

/// The interface a campaign runner uses to fault the network, whatever the
/// backend. Calls are synchronous: the proxy only flips watch channels, the
/// netns backend runs `nft`/`tc` (a few milliseconds each; call it from
/// `spawn_blocking` if that matters).
///
/// On error the recorded state is left as it was before the call, but the
/// network may be partly changed: call [`Faults::heal`].
pub struct Faults {
    backend: Backend,
    members: Vec<MemberId>,
    state: FaultState,
}

impl Faults {
    pub fn proxy(net: ProxyNet) -> Self {
        let members = net.members();
        Faults {
            backend: Backend::Proxy(net),
            members,
            state: FaultState::default(),
        }
    }

    pub fn netns(net: NetNs) -> Self {
        let members = net.members();
        Faults {
            backend: Backend::NetNs(net),
            members,
            state: FaultState::default(),
        }
    }

    /// `"proxy"` or `"netns"`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Proxy(_) => "proxy",
            Backend::NetNs(_) => "netns",
        }
    }

    pub fn members(&self) -> &[MemberId] {
        &self.members
    }

    pub fn state(&self) -> &FaultState {
        &self.state
    }

    pub fn as_proxy(&self) -> Option<&ProxyNet> {
        match &self.backend {
            Backend::Proxy(p) => Some(p),
            Backend::NetNs(_) => None,
        }
    }

    pub fn as_netns(&self) -> Option<&NetNs> {
        match &self.backend {
            Backend::NetNs(n) => Some(n),
            Backend::Proxy(_) => None,
        }
    }

    /// One way: packets `from → to` dropped.
    pub fn block(&mut self, from: MemberId, to: MemberId) -> Result<()> {
        self.apply_spec(PartitionSpec::Block { from, to })
    }

    /// Blocks every pair across groups, both ways.
    pub fn partition(&mut self, groups: &[Vec<MemberId>]) -> Result<()> {
        self.apply_spec(PartitionSpec::Groups(groups.to_vec()))
    }

    pub fn isolate(&mut self, id: MemberId) -> Result<()> {
        self.apply_spec(PartitionSpec::Isolate(id))
    }

    /// Jepsen's bridge: `a_side` and `b_side` are cut from each other, both
    /// see `bridge_node`.
    pub fn bridge(
        &mut self,
        a_side: &[MemberId],
        bridge_node: MemberId,
        b_side: &[MemberId],
    ) -> Result<()> {
        self.apply_spec(PartitionSpec::Bridge {
            a_side: a_side.to_vec(),
            bridge: bridge_node,
            b_side: b_side.to_vec(),
        })
    }

    /// Applies any spec (`Heal` heals everything).
    pub fn apply_spec(&mut self, spec: PartitionSpec) -> Result<()> {
        if spec == PartitionSpec::Heal {
            return self.heal();
        }
        let links = blocked_links(&spec, &self.members)?;
        let mut next = self.state.clone();
        next.blocked.extend(links);
        next.ops.push(spec.to_string());
        self.commit(next)
    }

    /// Delays traffic `from → to` by `d`. Proxy: both directions of the
    /// connections `from` opens to `to`. Netns: packets `from → to` only.
    pub fn delay(&mut self, from: MemberId, to: MemberId, d: Duration) -> Result<()> {
        self.check_link(from, to)?;
        let mut next = self.state.clone();
        next.delayed.insert(Link::new(from, to), d);
        next.ops
            .push(format!("delay {from}->{to} {}ms", d.as_millis()));
        self.commit(next)
    }

    /// Connections `from → to`: requests arrive, answers are lost. Proxy only.
    pub fn drop_replies(&mut self, from: MemberId, to: MemberId) -> Result<()> {
        self.check_link(from, to)?;
        if let Backend::NetNs(_) = self.backend {
            return Err(NetError::Unsupported {
                backend: "netns",
                what: "drop_replies needs to see requests and replies (use the proxy)".into(),
            });
        }
        let mut next = self.state.clone();
        next.drop_replies.insert(Link::new(from, to));
        next.ops.push(format!("drop-replies {from}->{to}"));
        self.commit(next)
    }

    /// Removes every fault.
    pub fn heal(&mut self) -> Result<()> {
        self.commit(FaultState::default())
    }

    /// The current faults, one line, for the history.
    pub fn describe(&self) -> String {
        self.state.to_string()
    }

    fn check_link(&self, from: MemberId, to: MemberId) -> Result<()> {
        check_member(&self.members, from)?;
        check_member(&self.members, to)?;
        if from == to {
            return Err(NetError::InvalidSpec(format!(
                "link {from}->{to} goes nowhere"
            )));
        }
        Ok(())
    }

    /// Makes the network match `next`, then records it.
    fn commit(&mut self, next: FaultState) -> Result<()> {
        match &mut self.backend {
            Backend::Proxy(net) => {
                // set_mode is a no-op on unchanged links, so connections on
                // links this change does not touch stay open.
                for link in net.links() {
                    net.set_mode(link, next.proxy_mode(link))?;
                }
            }
            Backend::NetNs(net) => {
                net.apply_blocks(&next.blocked)?;
                net.apply_delays(&next.delayed)?;
            }
        }
        tracing::info!(faults = %next, backend = self.kind(), "network faults changed");
        self.state = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(from: MemberId, to: MemberId) -> Link {
        Link::new(from, to)
    }

    fn set(pairs: &[(MemberId, MemberId)]) -> BTreeSet<Link> {
        pairs.iter().map(|&(a, b)| l(a, b)).collect()
    }

    /// Both directions of every pair in `a × b`.
    fn cut(a: &[MemberId], b: &[MemberId]) -> BTreeSet<Link> {
        let mut out = BTreeSet::new();
        for &x in a {
            for &y in b {
                out.insert(l(x, y));
                out.insert(l(y, x));
            }
        }
        out
    }

    const THREE: [MemberId; 3] = [1, 2, 3];
    const FIVE: [MemberId; 5] = [1, 2, 3, 4, 5];

    #[test]
    fn spec_block_is_one_way() {
        let got = blocked_links(&PartitionSpec::Block { from: 1, to: 2 }, &THREE).unwrap();
        assert_eq!(got, set(&[(1, 2)]));
        assert!(matches!(
            blocked_links(&PartitionSpec::Block { from: 2, to: 2 }, &THREE),
            Err(NetError::InvalidSpec(_))
        ));
        assert!(matches!(
            blocked_links(&PartitionSpec::Block { from: 1, to: 9 }, &THREE),
            Err(NetError::UnknownMember(9))
        ));
    }

    #[test]
    fn spec_majority_minority_three() {
        // Every 2|1 split of three members.
        for minority in THREE {
            let majority: Vec<MemberId> =
                THREE.iter().copied().filter(|&m| m != minority).collect();
            let spec = PartitionSpec::Groups(vec![majority.clone(), vec![minority]]);
            let got = blocked_links(&spec, &THREE).unwrap();
            assert_eq!(got, cut(&majority, &[minority]), "{spec}");
            assert_eq!(got.len(), 4);
            // Within the majority nothing is blocked.
            assert!(!got.contains(&l(majority[0], majority[1])));
        }
    }

    #[test]
    fn spec_majority_minority_five() {
        let spec = PartitionSpec::Groups(vec![vec![1, 2, 3], vec![4, 5]]);
        let got = blocked_links(&spec, &FIVE).unwrap();
        assert_eq!(got, cut(&[1, 2, 3], &[4, 5]));
        assert_eq!(got.len(), 12);
        for (a, b) in [(1, 2), (1, 3), (2, 3), (4, 5)] {
            assert!(!got.contains(&l(a, b)) && !got.contains(&l(b, a)));
        }
        // Three groups: every cross pair, both ways.
        let spec = PartitionSpec::Groups(vec![vec![1, 2], vec![3, 4], vec![5]]);
        let got = blocked_links(&spec, &FIVE).unwrap();
        let mut want = cut(&[1, 2], &[3, 4]);
        want.extend(cut(&[1, 2], &[5]));
        want.extend(cut(&[3, 4], &[5]));
        assert_eq!(got, want);
        assert_eq!(got.len(), 16);
    }

    #[test]
    fn spec_groups_leave_unlisted_members_connected() {
        let spec = PartitionSpec::Groups(vec![vec![1], vec![2]]);
        let got = blocked_links(&spec, &FIVE).unwrap();
        assert_eq!(got, set(&[(1, 2), (2, 1)]));
    }

    #[test]
    fn spec_groups_reject_overlap_and_strangers() {
        let spec = PartitionSpec::Groups(vec![vec![1, 2], vec![2, 3]]);
        assert!(matches!(
            blocked_links(&spec, &THREE),
            Err(NetError::InvalidSpec(_))
        ));
        let spec = PartitionSpec::Groups(vec![vec![1, 2], vec![7]]);
        assert!(matches!(
            blocked_links(&spec, &THREE),
            Err(NetError::UnknownMember(7))
        ));
    }

    #[test]
    fn spec_isolate_three_and_five() {
        for id in THREE {
            let rest: Vec<MemberId> = THREE.iter().copied().filter(|&m| m != id).collect();
            let got = blocked_links(&PartitionSpec::Isolate(id), &THREE).unwrap();
            assert_eq!(got, cut(&[id], &rest));
            assert_eq!(got.len(), 4);
        }
        for id in FIVE {
            let rest: Vec<MemberId> = FIVE.iter().copied().filter(|&m| m != id).collect();
            let got = blocked_links(&PartitionSpec::Isolate(id), &FIVE).unwrap();
            assert_eq!(got, cut(&[id], &rest));
            assert_eq!(got.len(), 8);
        }
        assert!(matches!(
            blocked_links(&PartitionSpec::Isolate(6), &FIVE),
            Err(NetError::UnknownMember(6))
        ));
    }

    #[test]
    fn spec_bridge_three_and_five() {
        // Three: 1 and 3 cut from each other, 2 sees both.
        let spec = PartitionSpec::Bridge {
            a_side: vec![1],
            bridge: 2,
            b_side: vec![3],
        };
        assert_eq!(
            blocked_links(&spec, &THREE).unwrap(),
            set(&[(1, 3), (3, 1)])
        );

        // Five: {1,2} and {4,5} cut, 3 sees all; both halves plus the
        // bridge are a majority of three.
        let spec = PartitionSpec::Bridge {
            a_side: vec![1, 2],
            bridge: 3,
            b_side: vec![4, 5],
        };
        let got = blocked_links(&spec, &FIVE).unwrap();
        assert_eq!(got, cut(&[1, 2], &[4, 5]));
        assert_eq!(got.len(), 8);
        for other in [1, 2, 4, 5] {
            assert!(!got.contains(&l(3, other)) && !got.contains(&l(other, 3)));
        }

        let bad = PartitionSpec::Bridge {
            a_side: vec![1, 3],
            bridge: 3,
            b_side: vec![4, 5],
        };
        assert!(matches!(
            blocked_links(&bad, &FIVE),
            Err(NetError::InvalidSpec(_))
        ));
    }

    #[test]
    fn spec_heal_is_empty() {
        assert!(blocked_links(&PartitionSpec::Heal, &THREE)
            .unwrap()
            .is_empty());
        assert!(blocked_links(&PartitionSpec::Heal, &FIVE)
            .unwrap()
            .is_empty());
        // A single group cuts nothing either.
        let spec = PartitionSpec::Groups(vec![FIVE.to_vec()]);
        assert!(blocked_links(&spec, &FIVE).unwrap().is_empty());
    }

    #[test]
    fn proxy_mode_from_state() {
        let mut s = FaultState::default();
        s.blocked.insert(l(1, 2));
        s.delayed.insert(l(2, 3), Duration::from_millis(5));
        s.drop_replies.insert(l(3, 1));
        assert_eq!(s.proxy_mode(l(1, 2)), Mode::Blackhole);
        // Block 1→2 also loses 1's answers on the connections 2 opens to 1.
        assert_eq!(s.proxy_mode(l(2, 1)), Mode::DropReplies);
        assert_eq!(s.proxy_mode(l(2, 3)), Mode::Delay(Duration::from_millis(5)));
        assert_eq!(s.proxy_mode(l(3, 1)), Mode::DropReplies);
        assert_eq!(s.proxy_mode(l(1, 3)), Mode::Pass);
        // Both ways blocked: both links are black holes.
        s.blocked.insert(l(2, 1));
        assert_eq!(s.proxy_mode(l(2, 1)), Mode::Blackhole);
    }

    #[test]
    fn faults_can_be_shared_across_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Faults>();
        send_sync::<NetError>();
    }

    #[test]
    fn describe_lists_faults() {
        let mut s = FaultState::default();
        assert_eq!(s.to_string(), "healthy");
        s.ops.push(PartitionSpec::Isolate(3).to_string());
        s.blocked = cut(&[3], &[1, 2]);
        s.delayed.insert(l(1, 2), Duration::from_millis(40));
        assert_eq!(
            s.to_string(),
            "isolate 3 :: blocked 1->3 2->3 3->1 3->2 :: delayed 1->2+40ms"
        );
    }
}
