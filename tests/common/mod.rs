//! Harness for end-to-end tests: real `cairn server` processes on 127.0.0.1
//! ephemeral ports, each with its own temporary data dir. Everything started
//! is killed and removed on drop, also when a test fails.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use cairn_node::client::MetaClient;
use cairn_node::fleet::{FleetConfig, FleetTls};
use cairn_node::tls::{certs, Ca, Role};
use cairn_node::transport::Transport;
use cairn_node::types::pb::StatusResponse;

pub const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// A free port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

pub struct Member {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    /// Where the member serves Prometheus metrics (`--metrics-addr`), if
    /// the cluster was started with them (a second port per member is a
    /// second chance of a port race, so only tests that scrape ask).
    pub metrics: String,
    pub child: Option<Child>,
}

/// A test cluster's certificates (docs/security.md): a CA of its own, an
/// identity per member, and one per role a test talks as.
pub struct Certs {
    pub ca: PathBuf,
    pub root: PathBuf,
}

impl Certs {
    fn new(root: &std::path::Path) -> Certs {
        let c = Certs {
            ca: root.join("ca"),
            root: root.to_path_buf(),
        };
        let (from, until) = certs::validity(30);
        Ca::generate("test", from, until)
            .and_then(|ca| ca.save(&c.ca))
            .expect("a test CA");
        c
    }

    /// The identity directory of `role` (`admin:test`, `member:3`, ...),
    /// issued on first use.
    pub fn identity(&self, role: &str) -> PathBuf {
        let dir = self.root.join(role.replace(':', "-"));
        if !dir.join(certs::CERT).exists() {
            let role: Role = role.parse().expect("a role");
            let (from, until) = certs::validity(30);
            Ca::load(&self.ca)
                .and_then(|ca| ca.issue_into(&role, from, until, &dir))
                .expect("issue a test identity");
        }
        dir
    }

    pub fn transport(&self, role: &str) -> Transport {
        Transport::load(&self.identity(role)).expect("load a test identity")
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    /// None: the members run `--insecure`.
    pub certs: Option<Certs>,
    _root: tempfile::TempDir,
    /// Extra `cairn server` arguments every member runs with.
    extra: Vec<String>,
    /// Members serve `/metrics` on `Member::metrics`.
    with_metrics: bool,
}

impl Cluster {
    /// Starts `n` members with mutual TLS, all given the same `--init` list.
    pub fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// As `start`, members running plain TCP (`--insecure`): for tests of
    /// what lies under TLS (the session wire's framing, a chunk
    /// registering itself as new).
    pub fn start_insecure(n: u64) -> Cluster {
        Cluster::start_opts(n, &[], false, false)
    }

    /// As `start`, with extra `cairn server` arguments for every member.
    pub fn start_with(n: u64, extra: &[&str]) -> Cluster {
        Cluster::start_opts(n, extra, false, true)
    }

    /// As `start_insecure`, with extra `cairn server` arguments.
    pub fn start_insecure_with(n: u64, extra: &[&str]) -> Cluster {
        Cluster::start_opts(n, extra, false, false)
    }

    /// As `start`, every member serving Prometheus metrics.
    pub fn start_with_metrics(n: u64) -> Cluster {
        Cluster::start_opts(n, &[], true, true)
    }

    /// As `start_insecure`, every member serving metrics and the console.
    pub fn start_insecure_with_metrics(n: u64) -> Cluster {
        Cluster::start_opts(n, &[], true, false)
    }

    fn start_opts(n: u64, extra: &[&str], with_metrics: bool, tls: bool) -> Cluster {
        let root = tempfile::tempdir().expect("temp dir");
        let certs = tls.then(|| Certs::new(&root.path().join("tls")));
        let members: Vec<Member> = (1..=n)
            .map(|id| Member {
                id,
                addr: format!("127.0.0.1:{}", free_port()),
                metrics: format!("127.0.0.1:{}", free_port()),
                dir: root.path().join(format!("n{id}")),
                child: None,
            })
            .collect();
        let init = members
            .iter()
            .map(|m| format!("{}={}", m.id, m.addr))
            .collect::<Vec<_>>()
            .join(",");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut c = Cluster {
            members,
            certs,
            _root: root,
            extra: extra.clone(),
            with_metrics,
        };
        for i in 0..c.members.len() {
            let mut args = extra.clone();
            args.extend(["--init".to_string(), init.clone()]);
            c.spawn(i, &args);
        }
        c
    }

    /// Starts a new member with `cairn server ... --join <member 1>`; it
    /// becomes a learner once it has caught up. Returns its index.
    pub fn add_member(&mut self, id: u64) -> usize {
        let dir = self.members[0].dir.with_file_name(format!("n{id}"));
        self.members.push(Member {
            id,
            addr: format!("127.0.0.1:{}", free_port()),
            metrics: format!("127.0.0.1:{}", free_port()),
            dir,
            child: None,
        });
        let i = self.members.len() - 1;
        let mut args = self.extra.clone();
        args.extend(["--join".to_string(), self.members[0].addr.clone()]);
        self.spawn(i, &args);
        i
    }

    /// Runs the `cairn` CLI against this cluster; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        run(Command::new(BIN)
            .args(args)
            .arg("--endpoints")
            .arg(self.addrs().join(","))
            .args(self.client_flags("admin:test")))
    }

    /// The CLI's flags to talk as `role`: `--tls DIR`, or `--insecure`.
    pub fn client_flags(&self, role: &str) -> Vec<String> {
        match &self.certs {
            // --ca: a simulated fleet (`cairn bench write`) issues its
            // chunks' certificates.
            Some(c) => vec![
                "--tls".into(),
                c.identity(role).display().to_string(),
                "--ca".into(),
                c.ca.display().to_string(),
            ],
            None => vec!["--insecure".into()],
        }
    }

    /// How a client reaches the members as `role`.
    pub fn transport_as(&self, role: &str) -> Transport {
        match &self.certs {
            Some(c) => c.transport(role),
            None => Transport::Insecure,
        }
    }

    /// How the tests' admin client reaches the members.
    pub fn transport(&self) -> Transport {
        self.transport_as("admin:test")
    }

    /// A fleet of `n` simulated chunks for this cluster (with TLS, each
    /// chunk gets the certificate of its cid).
    pub fn fleet_config(&self, n: usize) -> FleetConfig {
        let mut cfg = FleetConfig::new(self.addrs(), n);
        if let Some(c) = &self.certs {
            cfg.tls = Some(Arc::new(FleetTls {
                admin: self.transport(),
                ca: Ca::load(&c.ca).expect("the test CA"),
                dir: c.root.join("chunks"),
            }));
        }
        cfg
    }

    /// kill -9 of member `i` (index, not id).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts member `i` from its data dir: only id, listen and data dir.
    pub fn restart(&mut self, i: usize) {
        let extra = self.extra.clone();
        self.spawn(i, &extra);
    }

    /// Sends a signal (e.g. "STOP", "CONT") to member `i`'s process.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.members[i]
            .child
            .as_ref()
            .expect("member is running")
            .id();
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Waits until the running members other than `except` agree on a
    /// leader that is not `except`'s id; returns it.
    pub async fn wait_for_leader_except(&self, except: usize, within: Duration) -> u64 {
        let client = self.client();
        let gone = self.members[except].id;
        wait_until(within, "a new leader among the other members", || async {
            let mut leaders = vec![];
            for (k, m) in self.members.iter().enumerate() {
                if k != except && m.child.is_some() {
                    leaders.push(client.status_of(&m.addr, true).await.ok()?.leader_id);
                }
            }
            let first = *leaders.first()?;
            (first != 0 && first != gone && leaders.iter().all(|l| *l == first)).then_some(first)
        })
        .await
    }

    /// Waits for member `i` to exit by itself; returns its exit status.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> std::process::ExitStatus {
        let child = self.members[i].child.as_mut().expect("member is running");
        wait_until(within, "the member to exit", || {
            let r = child.try_wait().ok().flatten();
            async move { r }
        })
        .await
    }

    /// Stops member `i` cleanly (SIGINT, as Ctrl-C) and waits until it has
    /// exited; returns its exit status.
    pub async fn stop(&mut self, i: usize, within: Duration) -> std::process::ExitStatus {
        self.signal(i, "INT");
        let status = self.wait_exit(i, within).await;
        self.members[i].child = None;
        status
    }

    /// Stops member `i` cleanly and starts it again from its data dir with
    /// `extra` instead of the cluster's extra arguments: same id, listen
    /// address and data dir, another binary's flags (an upgrade restart).
    pub async fn restart_with(&mut self, i: usize, extra: &[&str]) {
        self.stop(i, Duration::from_secs(20)).await;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        self.spawn(i, &extra);
    }

    /// The log of member `i` (every run of it, appended).
    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(format!("{}.log", self.members[i].dir.display()))
            .unwrap_or_default()
    }

    pub fn index_of(&self, id: u64) -> usize {
        self.members
            .iter()
            .position(|m| m.id == id)
            .expect("member id")
    }

    /// A linearizable status from whichever member is leader.
    pub async fn leader_status(&self, within: Duration) -> StatusResponse {
        let client = self.client();
        wait_until(within, "a linearizable status from the leader", || async {
            for m in self.members.iter().filter(|m| m.child.is_some()) {
                if let Ok(s) = client.status_of(&m.addr, false).await {
                    return Some(s);
                }
            }
            None
        })
        .await
    }

    pub fn spawn(&mut self, i: usize, extra: &[String]) {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{}.log", m.dir.display()))
            .expect("log file");
        let tls = match &self.certs {
            Some(c) => vec![
                "--tls".to_string(),
                c.identity(&format!("member:{}", m.id))
                    .display()
                    .to_string(),
            ],
            None => vec!["--insecure".to_string()],
        };
        let child = Command::new(BIN)
            .args(["server", "--id", &m.id.to_string(), "--listen", &m.addr])
            .args(tls)
            .env_remove("CAIRN_TLS")
            .args(if self.with_metrics {
                vec!["--metrics-addr", m.metrics.as_str()]
            } else {
                vec![]
            })
            .arg("--data-dir")
            .arg(&m.dir)
            .args(extra)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn cairn server");
        m.child = Some(child);
    }

    pub fn addrs(&self) -> Vec<String> {
        self.members.iter().map(|m| m.addr.clone()).collect()
    }

    pub fn client(&self) -> MetaClient {
        MetaClient::new(self.addrs(), self.transport()).expect("client")
    }

    /// Stale status of every running member (None: not running or no answer).
    pub async fn statuses(&self) -> Vec<Option<StatusResponse>> {
        let client = self.client();
        let mut out = vec![];
        for m in &self.members {
            out.push(match m.child {
                Some(_) => client.status_of(&m.addr, true).await.ok(),
                None => None,
            });
        }
        out
    }

    /// Waits until every running member knows the same leader; returns its id.
    pub async fn wait_for_leader(&self, within: Duration) -> u64 {
        wait_until(within, "a leader known to every running member", || async {
            let leaders: Vec<u64> = self
                .running_statuses()
                .await
                .iter()
                .map(|s| s.as_ref().map_or(0, |s| s.leader_id))
                .collect();
            (!leaders.is_empty() && leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]))
                .then_some(leaders[0])
        })
        .await
    }

    /// Stale status of each running member (None: it did not answer).
    async fn running_statuses(&self) -> Vec<Option<StatusResponse>> {
        let st = self.statuses().await;
        self.members
            .iter()
            .zip(st)
            .filter(|(m, _)| m.child.is_some())
            .map(|(_, s)| s)
            .collect()
    }

    /// Waits until every member has advertised its version and the upgrade
    /// gate has nothing left to activate: from then on only the test's own
    /// writes change the state (under load a cluster may still be
    /// advertising when its first writes are acknowledged).
    pub async fn wait_settled(&self, within: Duration) {
        let client = self.client();
        wait_until(
            within,
            "every member advertised and no capability left to activate",
            || async {
                let r = client
                    .upgrade_status(cairn_node::types::pb::UpgradeStatusRequest {})
                    .await
                    .ok()?;
                let v: serde_json::Value = serde_json::from_str(&r.json).ok()?;
                let advertised = v["members"]
                    .as_array()?
                    .iter()
                    .all(|m| !m["version"].is_null());
                let idle =
                    v["pending"].as_array()?.is_empty() && v["activating"].as_array()?.is_empty();
                (advertised && idle).then_some(())
            },
        )
        .await
    }

    /// Waits until every running member has applied the same index, at least
    /// `index`, with the same digest; returns (applied index, digest).
    pub async fn wait_converged(&self, index: u64, within: Duration) -> (u64, u64) {
        wait_for(
            self,
            within,
            "every running member at the same applied index and digest",
            || async {
                let st = self.running_statuses().await;
                let seen: Vec<String> = st
                    .iter()
                    .map(|s| match s {
                        Some(s) => {
                            format!("applied {} digest {:x}", s.applied_index, s.state_digest)
                        }
                        None => "no answer".into(),
                    })
                    .collect();
                let seen = || format!("{seen:?}, wanted index {index}");
                let all: Vec<&StatusResponse> = st
                    .iter()
                    .map(|s| s.as_ref())
                    .collect::<Option<_>>()
                    .ok_or_else(seen)?;
                let first = *all.first().ok_or_else(seen)?;
                let same = all.iter().all(|s| {
                    s.applied_index == first.applied_index && s.state_digest == first.state_digest
                });
                (same && first.applied_index >= index)
                    .then_some((first.applied_index, first.state_digest))
                    .ok_or_else(seen)
            },
        )
        .await
    }

    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log =
                    std::fs::read_to_string(format!("{}.log", m.dir.display())).unwrap_or_default();
                format!("--- member {} ---\n{}", m.id, log)
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Registration of chunk `host-{n}` with this binary's own advert: a chunk
/// lacking an active capability (lease_7s activates at once in a new
/// cluster) loses its session.
pub fn register(n: usize) -> cairn_state::Cmd {
    cairn_state::Cmd::RegisterChunk {
        hostname: format!("host-{n}"),
        data_addr: "127.0.0.1:10200".into(),
        brick: None,
        version: cairn_capability::CURRENT_VERSION.into(),
        capabilities: cairn_capability::Advert::current()
            .capabilities
            .into_iter()
            .collect(),
    }
}

/// Proposes registrations `host-{from}` .. `host-{from + n - 1}` one by one;
/// returns the last log index.
pub async fn write_chunks(cluster: &Cluster, from: usize, n: usize) -> u64 {
    let client = cluster.client();
    let mut index = 0;
    for k in from..from + n {
        let (results, i) = client
            .propose(&[register(k)])
            .await
            .unwrap_or_else(|e| panic!("write {k}: {e}\n{}", cluster.logs()));
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        index = i;
    }
    index
}

/// Polls `f` until it yields a value or `within` passes (then panics with `what`).
pub async fn wait_until<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` until it returns `Ok`; on timeout panics with `what`, the last
/// `Err` it returned (what was seen instead) and the members' logs.
pub async fn wait_for<T, F, Fut>(cluster: &Cluster, within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match f().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if start.elapsed() >= within {
            panic!(
                "timed out after {within:?} waiting for {what}\nlast seen: {last}\n{}",
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With CAIRN_TEST_LOGS set, prints the members' logs of a passing test too
/// (to look for warnings a test does not assert on).
pub fn dump_logs(cluster: &Cluster, test: &str) {
    if std::env::var_os("CAIRN_TEST_LOGS").is_some() {
        println!("===== logs of {test} =====\n{}", cluster.logs());
    }
}

/// One HTTP/1.1 request to `addr` (`headers`: extra `name: value` lines);
/// returns (status line, lower-cased headers, body).
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
) -> Result<(String, String, String), String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    exchange(&mut s, addr, method, path, headers).await
}

/// One HTTP/1.1 request over `s` (plain or TLS) to `addr`; returns
/// (status line, lower-cased headers, body).
pub async fn exchange<S>(
    s: &mut S,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
) -> Result<(String, String, String), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    // Read to the end of the body: by Content-Length when given (some
    // servers, chromedriver among them, keep the connection open despite
    // `Connection: close`), else to the end of the stream.
    let mut raw = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            let n = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Ok::<(), String>(());
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if length.is_some_and(|len| raw.len() >= end + 4 + len) {
                    return Ok(());
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| "no reply within 10 s".to_string())??;
    let text = String::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Ok((status.to_string(), headers.to_lowercase(), body.to_string()))
}

/// Runs `cairn` (without a CAIRN_TLS from the environment); returns
/// (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.env_remove("CAIRN_TLS").output().expect("run cairn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One HTTP/1.1 GET.
pub async fn http_get(addr: &str, path: &str) -> Result<(String, String, String), String> {
    http(addr, "GET", path, &[]).await
}

/// `cairn dev` in the background with its own CAIRN_HOME (its stdout in
/// `stdout.txt` there), stopped with Ctrl-C (SIGINT) on drop.
pub struct Dev {
    child: Child,
    pub home: tempfile::TempDir,
}

impl Dev {
    /// `cairn dev --dir <home>/dev <extra>`.
    pub fn start(extra: &[&str]) -> Dev {
        let home = tempfile::tempdir().expect("temp dir");
        let out = std::fs::File::create(home.path().join("stdout.txt")).expect("stdout file");
        let child = Command::new(BIN)
            .args(["dev", "--dir"])
            .arg(home.path().join("dev"))
            .args(extra)
            .env("CAIRN_HOME", home.path())
            .env_remove("CAIRN_TLS")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("start cairn dev");
        Dev { child, home }
    }

    /// What `cairn dev` printed so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.home.path().join("stdout.txt")).unwrap_or_default()
    }

    /// The members' logs.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for id in 1..=5 {
            let path = self.home.path().join(format!("dev/node{id}.log"));
            if let Ok(log) = std::fs::read_to_string(&path) {
                out.push_str(&format!("===== {} =====\n{log}\n", path.display()));
            }
        }
        out
    }

    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        run(Command::new(BIN)
            .args(args)
            .env("CAIRN_HOME", self.home.path()))
    }

    /// SIGINT, then wait for the exit; SIGKILL if it does not come.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}
