//! The campaign's view of the network between members: cut, slow and heal
//! directed links. Implemented over `crate::net` (network namespaces and
//! nftables as root, a fault-injecting TCP proxy otherwise).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

use super::NetMode;

pub trait Links: Send + Sync {
    /// Packets from `from` to `to` are dropped (one way).
    fn block(&mut self, from: u64, to: u64) -> Result<()>;
    /// No packet crosses between groups, either way.
    fn partition(&mut self, groups: &[Vec<u64>]) -> Result<()>;
    /// Packets from `from` to `to` are delayed.
    fn delay(&mut self, from: u64, to: u64, by: Duration) -> Result<()>;
    /// Every link passes again.
    fn heal(&mut self) -> Result<()>;
    /// The faults in place now, for the history.
    fn describe(&self) -> String;
}

impl Links for crate::net::Faults {
    fn block(&mut self, from: u64, to: u64) -> Result<()> {
        Ok(crate::net::Faults::block(self, from, to)?)
    }
    fn partition(&mut self, groups: &[Vec<u64>]) -> Result<()> {
        Ok(crate::net::Faults::partition(self, groups)?)
    }
    fn delay(&mut self, from: u64, to: u64, by: Duration) -> Result<()> {
        Ok(crate::net::Faults::delay(self, from, to, by)?)
    }
    fn heal(&mut self) -> Result<()> {
        Ok(crate::net::Faults::heal(self)?)
    }
    fn describe(&self) -> String {
        crate::net::Faults::describe(self)
    }
}

/// How the members of a campaign are wired.
pub struct Network {
    /// `proxy` or `netns`.
    pub mode: String,
    /// Each member's listen address (the one the others know it by).
    pub addrs: BTreeMap<u64, String>,
    /// Command prefix per member (`ip netns exec ...`).
    pub prefixes: BTreeMap<u64, Vec<String>>,
    /// `--routes` per member: its peers through their link's proxy.
    pub routes: BTreeMap<u64, BTreeMap<u64, String>>,
    pub links: Box<dyn Links>,
    /// Held for the run: the subnet lock (netns).
    pub _lock: Option<std::fs::File>,
}

/// A free port on 127.0.0.1 (bound, then released for a member to take).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Sets up the network for members `ids`: namespaces when `mode` allows and
/// this process may (root, `ip` and `nft` present), else proxies.
pub async fn setup(mode: NetMode, ids: &[u64], seed: u64) -> Result<Network> {
    if mode != NetMode::Proxy {
        match netns(ids, seed) {
            Ok(n) => return Ok(n),
            Err(e) if mode == NetMode::Auto => {
                tracing::warn!("network namespaces unavailable ({e:#}); using the TCP proxy");
            }
            Err(e) => return Err(e),
        }
    }
    let mut upstreams = BTreeMap::new();
    for id in ids {
        upstreams.insert(*id, SocketAddr::from(([127, 0, 0, 1], free_port()?)));
    }
    let net = crate::net::proxy::ProxyNet::start(&upstreams).await?;
    let routes = ids
        .iter()
        .map(|id| {
            let r = net
                .routes_for(*id)
                .into_iter()
                .map(|(to, a)| (to, a.to_string()))
                .collect();
            (*id, r)
        })
        .collect();
    Ok(Network {
        mode: "proxy".into(),
        addrs: upstreams
            .into_iter()
            .map(|(id, a)| (id, a.to_string()))
            .collect(),
        prefixes: BTreeMap::new(),
        routes,
        links: Box::new(crate::net::Faults::proxy(net)),
        _lock: None,
    })
}

/// Port every member listens on inside its own namespace.
const NETNS_PORT: u16 = 7400;

fn netns(ids: &[u64], seed: u64) -> Result<Network> {
    use crate::net::netns::NetNs;
    NetNs::check_prerequisites()?;
    remove_dead_runs();
    // A tag and a /24 of this run's own, so concurrent campaigns (parallel
    // tests) never share a namespace name or an address. The tag carries
    // the pid (`<pid>p<attempt>`), so a later run can tell a dead run's
    // leftovers; the subnet is held by an exclusive lock for the run,
    // because `create`'s "in use?" check and its `ip addr add` are not one
    // step.
    let pid = std::process::id();
    let mut last = None;
    for attempt in 0..16u64 {
        let tag = format!("{pid}p{attempt:x}");
        let third = (u64::from(pid) + seed + attempt * 37) % 250 + 1;
        let Some(lock) = lock_subnet(third) else {
            continue;
        };
        let subnet = format!("10.201.{third}.0/24");
        match NetNs::create(&tag, &subnet, ids) {
            Ok(ns) => {
                let mut addrs = BTreeMap::new();
                let mut prefixes = BTreeMap::new();
                for id in ids {
                    addrs.insert(*id, format!("{}:{NETNS_PORT}", ns.addr_of(*id)?));
                    prefixes.insert(*id, ns.command_prefix(*id)?);
                }
                return Ok(Network {
                    mode: "netns".into(),
                    addrs,
                    prefixes,
                    routes: BTreeMap::new(),
                    links: Box::new(crate::net::Faults::netns(ns)),
                    _lock: Some(lock),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || anyhow::anyhow!("no free subnet in 10.201.0.0/16"),
        anyhow::Error::from,
    ))
}

/// An exclusive lock on subnet 10.201.`third`.0/24 among campaigns on this
/// machine (released when the file is closed, also if the process dies).
fn lock_subnet(third: u64) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join(format!("cairn-chaos-10.201.{third}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    // SAFETY: flock on a descriptor we own; LOCK_NB never blocks.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (rc == 0).then_some(f)
}

/// Namespaces and links of campaigns whose process is gone (killed with
/// -9: nothing could clean up) are removed before a new run starts.
fn remove_dead_runs() {
    let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut dead = std::collections::BTreeSet::new();
    for name in text.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix("cc") else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('p') else {
            continue;
        };
        if pid.chars().all(|c| c.is_ascii_digit())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            dead.insert(format!("{pid}p"));
        }
    }
    for prefix in dead {
        match crate::net::netns::NetNs::cleanup_stale(&prefix) {
            Ok(gone) if !gone.is_empty() => {
                tracing::warn!("removed leftovers of a dead campaign: {}", gone.join(" "))
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not remove leftovers {prefix}*: {e}"),
        }
    }
}
