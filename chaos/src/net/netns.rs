//! Members in network namespaces, faulted per packet (needs root).
//!
//! Layout for run tag `<run>` and subnet `A.B.C.0/24`:
//!
//! * bridge `ccb<run>` in the root namespace, address `A.B.C.1`;
//! * member `i` in namespace `cc<run>-<i>`, its `eth0` at `A.B.C.(10+i)`,
//!   wired by a veth pair whose root end is also named `cc<run>-<i>`
//!   (links and namespaces have separate name spaces) and sits on the bridge;
//! * in every member's namespace an nftables table `inet cairn_chaos` with an
//!   `input` chain: blocking `from → to` drops, in `to`'s namespace, packets
//!   whose source is `from`'s address; healing flushes the chain;
//! * delays with `tc netem` on `from`'s `eth0`, one band per destination,
//!   when the kernel has netem.
//!
//! Everything made is removed by [`NetNs::cleanup`] and on drop, and
//! [`NetNs::cleanup_stale`] removes what killed runs left behind. All names
//! start with `cc` and fit Linux's 15-character limit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Link, MemberId, NetError, Result};

const TABLE: &str = "cairn_chaos";
/// IFNAMSIZ - 1.
const MAX_NAME: usize = 15;
/// Members sit at .(10+i).
const HOST_OFFSET: u64 = 10;
/// prio's band limit (TCQ_PRIO_BANDS) minus the three default bands.
const MAX_DELAYED_PEERS: usize = 13;

/// A set of member namespaces on one bridge.
pub struct NetNs {
    run: String,
    subnet: [u8; 3],
    members: Vec<MemberId>,
    /// What exists, so cleanup removes exactly that.
    bridge_created: bool,
    namespaces: Vec<MemberId>,
    /// `Err(reason)` when `tc netem` cannot be used here.
    netem: std::result::Result<(), String>,
    /// Applied state, so only namespaces whose rules change are touched.
    blocks: BTreeMap<MemberId, BTreeSet<MemberId>>,
    delays: BTreeMap<MemberId, BTreeMap<MemberId, Duration>>,
}

impl NetNs {
    /// Root, `ip` and `nft`: what [`NetNs::create`] needs before it tries.
    pub fn check_prerequisites() -> Result<()> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(NetError::Prerequisite(format!(
                "not root (euid {euid}); network namespaces need root"
            )));
        }
        let mut missing = Vec::new();
        if run(&["ip", "-V"]).is_err() {
            missing.push("`ip` (apt-get install iproute2)");
        }
        if run(&["nft", "--version"]).is_err() {
            missing.push("`nft` (apt-get install nftables)");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(NetError::Prerequisite(format!(
                "missing {}",
                missing.join(", ")
            )))
        }
    }

    /// Builds the bridge and one namespace per member. `run` is a short tag
    /// (lowercase letters and digits) unique among concurrent runs;
    /// `subnet` is a `/24` in CIDR form (`"10.201.7.0/24"`) not in use on
    /// this machine. On error everything made so far is removed.
    pub fn create(run: &str, subnet: &str, members: &[MemberId]) -> Result<NetNs> {
        Self::check_prerequisites()?;
        let subnet = parse_subnet(subnet)?;
        validate_run(run, members)?;
        check_subnet_free(subnet)?;
        let mut net = NetNs {
            run: run.to_string(),
            subnet,
            members: members.to_vec(),
            bridge_created: false,
            namespaces: Vec::new(),
            netem: Err("not probed".into()),
            blocks: BTreeMap::new(),
            delays: BTreeMap::new(),
        };
        // On error, `net` drops here and Drop removes what exists.
        net.build()?;
        Ok(net)
    }

    fn build(&mut self) -> Result<()> {
        let br = self.bridge_name();
        let cidr = format!("{}/24", self.bridge_addr());
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        self.bridge_created = true;
        run(&["ip", "addr", "add", &cidr, "dev", &br])?;
        run(&["ip", "link", "set", &br, "up"])?;

        for id in self.members.clone() {
            let ns = self.ns_name(id);
            run(&["ip", "netns", "add", &ns]).map_err(|e| {
                NetError::Prerequisite(format!("`ip netns add {ns}` does not work here: {e}"))
            })?;
            self.namespaces.push(id);
            // The root end shares the namespace's name; the inner end is
            // created in the namespace directly as eth0.
            run(&[
                "ip", "link", "add", &ns, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            run(&["ip", "link", "set", &ns, "master", &br])?;
            run(&["ip", "link", "set", &ns, "up"])?;
            let addr = format!("{}/24", self.addr_of(id)?);
            run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            // Members may listen on localhost too.
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            let table = format!(
                "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n  }}\n}}\n"
            );
            self.nft(id, &table).map_err(|e| {
                NetError::Prerequisite(format!("nftables refused in namespace {ns}: {e}"))
            })?;
        }
        self.netem = match self.members.first() {
            Some(&id) => self.probe_netem(id),
            None => Err("no members".into()),
        };
        if let Err(reason) = &self.netem {
            tracing::info!(%reason, "netns: delays unsupported");
        }
        Ok(())
    }

    /// Adds and removes a netem qdisc on the namespace's loopback.
    /// Builds (and removes) the exact qdisc tree delays use, on the
    /// namespace's loopback: a kernel may lack netem, prio or u32.
    fn probe_netem(&self, id: MemberId) -> std::result::Result<(), String> {
        if run(&["tc", "-V"]).is_err() {
            return Err("`tc` not found (apt-get install iproute2)".into());
        }
        let ns = self.ns_name(id);
        let probe = [(Ipv4Addr::new(127, 0, 0, 2), Duration::from_millis(1))];
        let res = netem_tree(&ns, "lo", &probe);
        let _ = tc_in(&ns, &["qdisc", "del", "dev", "lo", "root"]);
        res.map_err(|e| {
            format!("tc netem unavailable (kernel without sch_netem/sch_prio/cls_u32?): {e}")
        })
    }

    pub fn run_tag(&self) -> &str {
        &self.run
    }

    pub fn members(&self) -> Vec<MemberId> {
        self.members.clone()
    }

    /// `cc<run>-<id>`: the namespace, and the root end of its veth.
    pub fn ns_name(&self, id: MemberId) -> String {
        format!("cc{}-{id}", self.run)
    }

    pub fn bridge_name(&self) -> String {
        format!("ccb{}", self.run)
    }

    /// The root namespace's address on the bridge (`.1`): where a client in
    /// the root namespace appears to come from.
    pub fn bridge_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Member `id`'s address (`.(10+id)`).
    pub fn addr_of(&self, id: MemberId) -> Result<Ipv4Addr> {
        if !self.members.contains(&id) {
            return Err(NetError::UnknownMember(id));
        }
        let [a, b, c] = self.subnet;
        // validate_run checked that every member fits in the last octet.
        let host = u8::try_from(HOST_OFFSET + id).map_err(|_| NetError::UnknownMember(id))?;
        Ok(Ipv4Addr::new(a, b, c, host))
    }

    /// `["ip", "netns", "exec", <ns>]`: prepend to run a program inside
    /// member `id`'s namespace.
    pub fn command_prefix(&self, id: MemberId) -> Result<Vec<String>> {
        if !self.members.contains(&id) {
            return Err(NetError::UnknownMember(id));
        }
        Ok(vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.ns_name(id),
        ])
    }

    /// Whether [`NetNs::apply_delays`] can do anything, and if not why.
    pub fn delay_support(&self) -> std::result::Result<(), &str> {
        self.netem.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// Makes the nftables rules match `blocked` exactly (an empty set heals).
    /// Each namespace's chain is rewritten in one `nft -f`, so it changes
    /// atomically; unchanged namespaces are not touched.
    pub fn apply_blocks(&mut self, blocked: &BTreeSet<Link>) -> Result<()> {
        let mut want: BTreeMap<MemberId, BTreeSet<MemberId>> = BTreeMap::new();
        for link in blocked {
            self.addr_of(link.from)?;
            self.addr_of(link.to)?;
            want.entry(link.to).or_default().insert(link.from);
        }
        for id in self.members.clone() {
            let now = self.blocks.get(&id).cloned().unwrap_or_default();
            let next = want.remove(&id).unwrap_or_default();
            if now == next {
                continue;
            }
            let mut script = format!("flush chain inet {TABLE} input\n");
            if !next.is_empty() {
                let addrs = next
                    .iter()
                    .map(|&from| self.addr_of(from).map(|a| a.to_string()))
                    .collect::<Result<Vec<_>>>()?;
                script.push_str(&format!(
                    "add rule inet {TABLE} input ip saddr {{ {} }} drop\n",
                    addrs.join(", ")
                ));
            }
            self.nft(id, &script)?;
            if next.is_empty() {
                self.blocks.remove(&id);
            } else {
                self.blocks.insert(id, next);
            }
        }
        Ok(())
    }

    /// Makes the netem delays match `delays` exactly (packets `from → to`
    /// delayed on `from`'s eth0). Empty always succeeds; anything else is
    /// `Unsupported` where netem is missing.
    pub fn apply_delays(&mut self, delays: &BTreeMap<Link, Duration>) -> Result<()> {
        let mut want: BTreeMap<MemberId, BTreeMap<MemberId, Duration>> = BTreeMap::new();
        for (link, d) in delays {
            self.addr_of(link.from)?;
            self.addr_of(link.to)?;
            want.entry(link.from).or_default().insert(link.to, *d);
        }
        if !want.is_empty() {
            if let Err(reason) = &self.netem {
                return Err(NetError::Unsupported {
                    backend: "netns",
                    what: format!("delay: {reason}"),
                });
            }
        }
        for (from, targets) in &want {
            if targets.len() > MAX_DELAYED_PEERS {
                return Err(NetError::InvalidSpec(format!(
                    "member {from}: at most {MAX_DELAYED_PEERS} delayed peers"
                )));
            }
        }
        for id in self.members.clone() {
            let now = self.delays.get(&id).cloned().unwrap_or_default();
            let next = want.remove(&id).unwrap_or_default();
            if now == next {
                continue;
            }
            let ns = self.ns_name(id);
            if !now.is_empty() {
                tc_in(&ns, &["qdisc", "del", "dev", "eth0", "root"])?;
                self.delays.remove(&id);
            }
            if next.is_empty() {
                continue;
            }
            let targets = next
                .iter()
                .map(|(to, d)| self.addr_of(*to).map(|a| (a, *d)))
                .collect::<Result<Vec<_>>>()?;
            if let Err(e) = netem_tree(&ns, "eth0", &targets) {
                // Leave no half-built tree behind: back to the default qdisc.
                let _ = tc_in(&ns, &["qdisc", "del", "dev", "eth0", "root"]);
                return Err(e);
            }
            self.delays.insert(id, next);
        }
        Ok(())
    }

    /// Removes the namespaces and the bridge. Safe to call twice.
    pub fn cleanup(&mut self) -> Result<()> {
        let mut first_err = None;
        for id in std::mem::take(&mut self.namespaces) {
            let ns = self.ns_name(id);
            // The veth first: if a member still runs inside, the namespace
            // outlives its name, and its veth pair would stay behind.
            for res in [delete_link(&ns), delete_netns(&ns)] {
                if let Err(e) = res {
                    first_err.get_or_insert(e);
                }
            }
        }
        if std::mem::take(&mut self.bridge_created) {
            if let Err(e) = delete_link(&self.bridge_name()) {
                first_err.get_or_insert(e);
            }
        }
        self.blocks.clear();
        self.delays.clear();
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Removes namespaces and links named `cc<run_prefix>*` (and bridges
    /// `ccb<run_prefix>*`) left by runs that were killed. Returns what it
    /// removed. An empty prefix removes every `cc*`, which is only right
    /// when no other campaign runs on the machine.
    pub fn cleanup_stale(run_prefix: &str) -> Result<Vec<String>> {
        let prefix = format!("cc{run_prefix}");
        let bridge_prefix = format!("ccb{run_prefix}");
        let mut removed = Vec::new();
        for link in list_links()? {
            if link.starts_with(&prefix) || link.starts_with(&bridge_prefix) {
                delete_link(&link)?;
                removed.push(link);
            }
        }
        for ns in list_netns()? {
            if ns.starts_with(&prefix) {
                delete_netns(&ns)?;
                removed.push(format!("netns {ns}"));
            }
        }
        Ok(removed)
    }

    /// Runs an nft script inside member `id`'s namespace.
    fn nft(&self, id: MemberId, script: &str) -> Result<String> {
        let ns = self.ns_name(id);
        run_with_stdin(&["ip", "netns", "exec", &ns, "nft", "-f", "-"], script)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::warn!(error = %e, run = %self.run, "netns: cleanup on drop failed");
        }
    }
}

fn parse_subnet(cidr: &str) -> Result<[u8; 3]> {
    let bad = || NetError::InvalidSpec(format!("subnet {cidr:?} is not of the form A.B.C.0/24"));
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let [a, b, c, d] = addr.octets();
    if len != "24" || d != 0 {
        return Err(bad());
    }
    Ok([a, b, c])
}

fn validate_run(run: &str, members: &[MemberId]) -> Result<()> {
    if run.is_empty()
        || !run
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(NetError::InvalidSpec(format!(
            "run tag {run:?}: use lowercase letters and digits"
        )));
    }
    if members.is_empty() {
        return Err(NetError::InvalidSpec("no members".into()));
    }
    for &id in members {
        if id == 0 || HOST_OFFSET + id > 254 {
            return Err(NetError::InvalidSpec(format!(
                "member id {id} does not fit the /24 (1..={})",
                254 - HOST_OFFSET
            )));
        }
        let name = format!("cc{run}-{id}");
        if name.len() > MAX_NAME {
            return Err(NetError::InvalidSpec(format!(
                "run tag {run:?} too long: {name} exceeds {MAX_NAME} characters"
            )));
        }
    }
    Ok(())
}

/// Refuses a subnet that an interface or route here already uses: its
/// traffic would go to the wrong place.
fn check_subnet_free(subnet: [u8; 3]) -> Result<()> {
    let [a, b, c] = subnet;
    let prefix = format!("{a}.{b}.{c}.");
    let addrs = run(&["ip", "-o", "-4", "addr", "show"])?;
    let routes = run(&["ip", "-4", "route", "show"])?;
    let used = addrs
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .chain(routes.lines().filter_map(|l| l.split_whitespace().next()))
        .find(|s| s.starts_with(&prefix));
    match used {
        Some(s) => Err(NetError::InvalidSpec(format!(
            "subnet {a}.{b}.{c}.0/24 already in use here ({s})"
        ))),
        None => Ok(()),
    }
}

fn tc_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut cmd = vec!["ip", "netns", "exec", ns, "tc"];
    cmd.extend_from_slice(args);
    run(&cmd)
}

/// Delays packets to each target address on `dev`: a prio root whose
/// default priomap uses bands 1..3 only, so bands 4+ get traffic solely
/// through the per-destination u32 filters, each band a netem.
fn netem_tree(ns: &str, dev: &str, targets: &[(Ipv4Addr, Duration)]) -> Result<()> {
    tc_in(
        ns,
        &[
            "qdisc", "add", "dev", dev, "root", "handle", "1:", "prio", "bands", "16", "priomap",
            "1", "2", "2", "2", "1", "2", "0", "0", "1", "1", "1", "1", "1", "1", "1", "1",
        ],
    )?;
    for (k, (addr, d)) in targets.iter().enumerate() {
        let band = 4 + k;
        let class = format!("1:{band:x}");
        let handle = format!("{:x}:", 0x10 + band);
        let delay = format!("{}us", d.as_micros());
        let dst = format!("{addr}/32");
        tc_in(
            ns,
            &[
                "qdisc", "add", "dev", dev, "parent", &class, "handle", &handle, "netem", "delay",
                &delay,
            ],
        )?;
        tc_in(
            ns,
            &[
                "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                "match", "ip", "dst", &dst, "flowid", &class,
            ],
        )?;
    }
    Ok(())
}

fn list_netns() -> Result<Vec<String>> {
    // Lines look like "ccab-1 (id: 3)" or just "ccab-1".
    Ok(run(&["ip", "netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

fn list_links() -> Result<Vec<String>> {
    // Lines look like "8: ccab-1@if2: <BROADCAST,...".
    Ok(run(&["ip", "-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect())
}

fn delete_link(name: &str) -> Result<()> {
    if !list_links()?.iter().any(|l| l == name) {
        return Ok(());
    }
    run(&["ip", "link", "del", name]).map(|_| ())
}

fn delete_netns(name: &str) -> Result<()> {
    if !list_netns()?.iter().any(|n| n == name) {
        return Ok(());
    }
    run(&["ip", "netns", "del", name]).map(|_| ())
}

fn command_error(args: &[&str], status: String, stderr: &[u8]) -> NetError {
    NetError::Command {
        command: args.join(" "),
        status,
        stderr: String::from_utf8_lossy(stderr).trim().to_string(),
    }
}

/// Runs a command, returning its stdout; a failure carries its stderr.
fn run(args: &[&str]) -> Result<String> {
    let (prog, rest) = args
        .split_first()
        .ok_or_else(|| NetError::InvalidSpec("empty command".into()))?;
    let out = Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetError::io(format!("running `{}`", args.join(" ")), e))?;
    if !out.status.success() {
        return Err(command_error(args, out.status.to_string(), &out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_with_stdin(args: &[&str], input: &str) -> Result<String> {
    let (prog, rest) = args
        .split_first()
        .ok_or_else(|| NetError::InvalidSpec("empty command".into()))?;
    let ctx = || format!("running `{}`", args.join(" "));
    let mut child = Command::new(prog)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::io(ctx(), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Dropping stdin at the end of this block sends EOF.
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| NetError::io(ctx(), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::io(ctx(), e))?;
    if !out.status.success() {
        return Err(command_error(
            args,
            format!("{}; input:\n{input}", out.status),
            &out.stderr,
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Faults;
    use std::io::{ErrorKind, Read};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Instant;

    const CONNECT: Duration = Duration::from_secs(2);
    /// A blocked connect must not succeed within this: the expected outcome.
    const BLOCKED: Duration = Duration::from_millis(600);

    /// None (with the reason printed) when this machine cannot run them.
    fn skip_reason() -> Option<String> {
        NetNs::check_prerequisites().err().map(|e| e.to_string())
    }

    /// A run tag and subnet unlikely to collide with a parallel test run.
    fn tag(test: u8) -> (String, String) {
        let pid = std::process::id();
        (
            format!("t{}{}", pid % 10_000, (b'a' + test) as char),
            format!("10.201.{}.0/24", 100 + (pid % 50) * 3 + u32::from(test)),
        )
    }

    /// Runs `f` on a thread that joined namespace `ns`. Sockets made there
    /// stay in that namespace wherever they are used afterwards.
    fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: a valid namespace fd; CLONE_NEWNET only moves this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    struct EchoServer {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl EchoServer {
        /// Echo server listening inside `ns` on `ip`.
        fn start(ns: &str, ip: Ipv4Addr) -> EchoServer {
            let listener = in_netns(ns, move || TcpListener::bind((ip, 0)).unwrap());
            let addr = listener.local_addr().unwrap();
            listener.set_nonblocking(true).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let thread = std::thread::spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut conn, _)) => {
                            conn.set_nonblocking(false).unwrap();
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 1024];
                                while let Ok(n) = conn.read(&mut buf) {
                                    if n == 0
                                        || std::io::Write::write_all(&mut conn, &buf[..n]).is_err()
                                    {
                                        return;
                                    }
                                }
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            });
            EchoServer {
                addr,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for EchoServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Connects from `ns` (or the root namespace) with a deadline.
    fn connect(
        ns: Option<&str>,
        addr: SocketAddr,
        deadline: Duration,
    ) -> std::io::Result<TcpStream> {
        match ns {
            Some(ns) => in_netns(ns, move || TcpStream::connect_timeout(&addr, deadline)),
            None => TcpStream::connect_timeout(&addr, deadline),
        }
    }

    fn echo(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.set_read_timeout(Some(CONNECT))?;
        std::io::Write::write_all(stream, msg)?;
        let mut got = vec![0u8; msg.len()];
        stream.read_exact(&mut got)?;
        Ok(got)
    }

    fn assert_reaches(ns: Option<&str>, addr: SocketAddr) {
        let mut c = connect(ns, addr, CONNECT)
            .unwrap_or_else(|e| panic!("{ns:?} cannot reach {addr}: {e}"));
        assert_eq!(echo(&mut c, b"hi").unwrap(), b"hi");
    }

    fn assert_blocked(ns: Option<&str>, addr: SocketAddr) {
        match connect(ns, addr, BLOCKED) {
            // A DROP looks like a timeout, never a refusal.
            Err(e) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{ns:?} -> {addr}: {e}"),
            Ok(_) => panic!("{ns:?} reached {addr} through a block"),
        }
    }

    fn assert_gone(names: &[String], bridge: &str) {
        let ns = list_netns().unwrap();
        let links = list_links().unwrap();
        for n in names {
            assert!(!ns.contains(n), "namespace {n} left behind");
            assert!(!links.contains(n), "veth {n} left behind");
        }
        assert!(
            !links.iter().any(|l| l == bridge),
            "bridge {bridge} left behind"
        );
    }

    #[test]
    fn netns_rejects_bad_arguments() {
        assert!(parse_subnet("10.201.7.0/24").is_ok());
        assert!(parse_subnet("10.201.7.0/16").is_err());
        assert!(parse_subnet("10.201.7.5/24").is_err());
        assert!(parse_subnet("nonsense").is_err());
        assert!(validate_run("ab1", &[1, 2, 3]).is_ok());
        assert!(validate_run("AB", &[1]).is_err());
        assert!(validate_run("a-b", &[1]).is_err());
        assert!(validate_run("abcdefghijk", &[1]).is_ok());
        assert!(validate_run("abcdefghijk", &[10]).is_err());
        assert!(validate_run("ab", &[0]).is_err());
        assert!(validate_run("ab", &[245]).is_err());
    }

    #[test]
    fn netns_block_heal_and_cleanup_on_drop() {
        if let Some(reason) = skip_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
        let (run_tag, subnet) = tag(0);
        let net = NetNs::create(&run_tag, &subnet, &[1, 2, 3]).unwrap();
        let names: Vec<String> = (1..=3).map(|i| net.ns_name(i)).collect();
        let bridge = net.bridge_name();
        assert!(list_netns().unwrap().contains(&names[0]));

        // command_prefix runs inside the namespace.
        let mut cmd = net.command_prefix(1).unwrap();
        cmd.extend(["ip", "-o", "-4", "addr", "show", "dev", "eth0"].map(String::from));
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = run(&args).unwrap();
        assert!(out.contains(&net.addr_of(1).unwrap().to_string()), "{out}");

        let ns = |i: usize| Some(names[i - 1].clone());
        let srv = EchoServer::start(&names[1], net.addr_of(2).unwrap());
        assert_reaches(None, srv.addr);
        assert_reaches(ns(1).as_deref(), srv.addr);
        assert_reaches(ns(3).as_deref(), srv.addr);
        let mut open = connect(ns(1).as_deref(), srv.addr, CONNECT).unwrap();
        assert_eq!(echo(&mut open, b"before").unwrap(), b"before");

        let mut faults = Faults::netns(net);
        assert_eq!(faults.kind(), "netns");
        faults.block(1, 2).unwrap();
        assert_blocked(ns(1).as_deref(), srv.addr);
        // An open connection stalls rather than breaks.
        open.set_read_timeout(Some(BLOCKED)).unwrap();
        std::io::Write::write_all(&mut open, b"stuck").unwrap();
        let mut buf = [0u8; 8];
        let err = open.read(&mut buf).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        // Others are untouched.
        assert_reaches(None, srv.addr);
        assert_reaches(ns(3).as_deref(), srv.addr);

        faults.heal().unwrap();
        assert_eq!(faults.describe(), "healthy");
        assert_reaches(ns(1).as_deref(), srv.addr);
        // The stalled connection resumes: TCP retransmits "stuck".
        open.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = [0u8; 5];
        open.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"stuck");

        // Isolate 2: nobody else reaches it, the root namespace still does.
        faults.isolate(2).unwrap();
        assert_blocked(ns(1).as_deref(), srv.addr);
        assert_blocked(ns(3).as_deref(), srv.addr);
        assert_reaches(None, srv.addr);
        faults.heal().unwrap();
        assert_reaches(ns(3).as_deref(), srv.addr);

        // Delays: netem if the kernel has it, a clear Unsupported if not.
        let netem = faults
            .as_netns()
            .unwrap()
            .delay_support()
            .map_err(String::from);
        let d = Duration::from_millis(100);
        match (netem, faults.delay(1, 2, d)) {
            (Ok(()), Ok(())) => {
                let mut c = connect(ns(1).as_deref(), srv.addr, CONNECT).unwrap();
                let t0 = Instant::now();
                assert_eq!(echo(&mut c, b"slow").unwrap(), b"slow");
                assert!(t0.elapsed() >= d, "took {:?}", t0.elapsed());
                faults.heal().unwrap();
            }
            (Err(reason), Err(NetError::Unsupported { backend, what })) => {
                eprintln!("netem unsupported here: {reason}");
                assert_eq!(backend, "netns");
                assert!(what.contains(&reason), "{what}");
                assert_eq!(faults.describe(), "healthy");
            }
            (netem, res) => panic!("netem probe {netem:?} but delay gave {res:?}"),
        }
        assert!(matches!(
            faults.drop_replies(1, 2),
            Err(NetError::Unsupported { .. })
        ));

        drop(open);
        drop(srv);
        drop(faults);
        assert_gone(&names, &bridge);
    }

    #[test]
    fn netns_cleanup_and_stale_cleanup() {
        if let Some(reason) = skip_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
        let (run_a, subnet_a) = tag(1);
        let (run_b, subnet_b) = tag(2);

        // Explicit cleanup, twice.
        let mut net = NetNs::create(&run_a, &subnet_a, &[1, 2]).unwrap();
        let names: Vec<String> = (1..=2).map(|i| net.ns_name(i)).collect();
        let bridge = net.bridge_name();
        // The same subnet cannot be used twice.
        assert!(matches!(
            NetNs::create(&run_b, &subnet_a, &[1]),
            Err(NetError::InvalidSpec(_))
        ));
        let mut faults = Faults::netns(net);
        faults.partition(&[vec![1], vec![2]]).unwrap();
        assert!(faults.describe().starts_with("partition [1] | [2]"));
        drop(faults);
        assert_gone(&names, &bridge);
        net = NetNs::create(&run_a, &subnet_a, &[1, 2]).unwrap();
        net.cleanup().unwrap();
        net.cleanup().unwrap();
        assert_gone(&names, &bridge);

        // A "killed" run: forgotten, so its Drop never runs.
        let stale = NetNs::create(&run_b, &subnet_b, &[1, 2, 3]).unwrap();
        let names: Vec<String> = (1..=3).map(|i| stale.ns_name(i)).collect();
        let bridge = stale.bridge_name();
        std::mem::forget(stale);
        let removed = NetNs::cleanup_stale(&run_b).unwrap();
        assert!(removed.contains(&bridge), "{removed:?}");
        assert_gone(&names, &bridge);
        assert!(NetNs::cleanup_stale(&run_b).unwrap().is_empty());
    }
}
