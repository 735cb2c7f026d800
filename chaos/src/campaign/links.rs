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
    })
}

/// Port every member listens on inside its own namespace.
const NETNS_PORT: u16 = 7400;

fn netns(ids: &[u64], seed: u64) -> Result<Network> {
    use crate::net::netns::NetNs;
    NetNs::check_prerequisites()?;
    // A tag and a /24 of this run's own, so concurrent campaigns (parallel
    // tests) never share a namespace name or an address. A subnet in use
    // is refused by `create`: try a few.
    let pid = std::process::id();
    let mut last = None;
    for attempt in 0..8u32 {
        let tag = format!("{:x}", (pid ^ (attempt << 20)) & 0xf_ffff);
        let third = (u64::from(pid) + seed + u64::from(attempt) * 37) % 250 + 1;
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
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no subnet free"), anyhow::Error::from))
}
