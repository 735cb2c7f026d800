//! The benches' local clusters: 3 `etcd` or 3 `cairn server` child
//! processes on free 127.0.0.1 ports, each member with its own data dir
//! under one directory (so on the same disk) and its log in a file there.
//!
//! Every child is killed (SIGKILL) and reaped when its [`Proc`] is dropped,
//! which happens on success, on error and on Ctrl-C / SIGTERM (the benches
//! drop their clusters before returning); and each child also gets
//! `PR_SET_PDEATHSIG(SIGKILL)`, so even a `kill -9` of the bench itself
//! leaves no member running. The directory goes when [`BenchDir`] drops.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The directory holding every member's data dir and log; removed on drop
/// unless kept.
pub struct BenchDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl BenchDir {
    /// A new directory `cairn-bench-<what>-<pid>-<ms>` under `base`
    /// (default: the system's temporary directory).
    pub fn create(base: Option<&Path>, what: &str, keep: bool) -> Result<BenchDir> {
        let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path = base.join(format!("cairn-bench-{what}-{}-{ms}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the bench directory {}", path.display()))?;
        Ok(BenchDir { path, keep })
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("bench: kept data and logs in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// One member process: how to start it the first time and how to restart
/// it (same data dir), and the running child if any.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    first_args: Vec<OsString>,
    restart_args: Vec<OsString>,
    pub log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    pub fn new(
        name: String,
        program: PathBuf,
        first_args: Vec<OsString>,
        restart_args: Vec<OsString>,
        log: PathBuf,
    ) -> Proc {
        Proc {
            name,
            program,
            first_args,
            restart_args,
            log,
            child: None,
            starts: 0,
        }
    }

    /// Starts the process (first start, or a restart from its data dir);
    /// stdout and stderr are appended to its log.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.name);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let args = if self.starts == 0 {
            &self.first_args
        } else {
            &self.restart_args
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process exited on its own (e.g. refused to start).
    pub fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// kill -9. Returns the child to reap (the caller decides where to wait).
    pub fn kill9(&mut self) -> Option<Child> {
        let mut c = self.child.take()?;
        let _ = c.kill();
        Some(c)
    }

    /// The last `n` lines of the log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(n);
        lines[from..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reaps a killed child off the async worker threads.
pub async fn reap(child: Option<Child>) {
    if let Some(mut c) = child {
        let _ = tokio::task::spawn_blocking(move || c.wait()).await;
    }
}

/// The child gets SIGKILL when the thread that spawned it exits. The benches
/// spawn from the runtime's worker or main threads, which live as long as
/// the bench (never from `spawn_blocking`, whose threads come and go).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, getppid, kill) between
    // fork and exec, and no allocation.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between fork and prctl: follow it.
            if libc::getppid() as u32 != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// `program` as given if it has a slash, else the first match on PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The first line `program --version` prints (e.g. "etcd Version: 3.4.23").
pub fn version_of(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown version".into())
}

/// How the bench runs etcd.
#[derive(Clone, Debug)]
pub struct EtcdFlags {
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub snapshot_count: u64,
    pub quota_backend_bytes: u64,
}

impl EtcdFlags {
    /// The flags every member gets besides its name, URLs and data dir.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--heartbeat-interval".into(),
            self.heartbeat_ms.to_string(),
            "--election-timeout".into(),
            self.election_ms.to_string(),
            "--snapshot-count".into(),
            self.snapshot_count.to_string(),
            "--quota-backend-bytes".into(),
            self.quota_backend_bytes.to_string(),
            "--logger".into(),
            "zap".into(),
            "--log-outputs".into(),
            "stderr".into(),
            "--log-level".into(),
            "warn".into(),
        ]
    }

    pub fn describe(&self) -> String {
        self.args().join(" ")
    }
}

/// A local cluster of 3 members of one system.
pub struct LocalCluster {
    pub procs: Vec<Proc>,
    /// Client endpoints (host:port), one per member, in member order.
    pub endpoints: Vec<String>,
    /// Where each member serves /metrics (host:port), in member order.
    pub metrics: Vec<String>,
}

impl LocalCluster {
    /// 3 etcd members `e1..e3` with data dirs `dir/etcd-eN`.
    pub fn etcd(dir: &Path, etcd: &Path, flags: &EtcdFlags, token: &str) -> Result<LocalCluster> {
        let n = 3;
        let client: Vec<u16> = (0..n)
            .map(|_| crate::dev::free_port())
            .collect::<Result<_>>()?;
        let peer: Vec<u16> = (0..n)
            .map(|_| crate::dev::free_port())
            .collect::<Result<_>>()?;
        let initial = (0..n)
            .map(|i| format!("e{}=http://127.0.0.1:{}", i + 1, peer[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs = vec![];
        for i in 0..n {
            let name = format!("e{}", i + 1);
            let mut args: Vec<OsString> = vec![
                "--name".into(),
                name.clone().into(),
                "--data-dir".into(),
                dir.join(format!("etcd-{name}")).into(),
                "--listen-client-urls".into(),
                format!("http://127.0.0.1:{}", client[i]).into(),
                "--advertise-client-urls".into(),
                format!("http://127.0.0.1:{}", client[i]).into(),
                "--listen-peer-urls".into(),
                format!("http://127.0.0.1:{}", peer[i]).into(),
                "--initial-advertise-peer-urls".into(),
                format!("http://127.0.0.1:{}", peer[i]).into(),
                "--initial-cluster".into(),
                initial.clone().into(),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                token.into(),
            ];
            args.extend(flags.args().into_iter().map(OsString::from));
            // A restart from the same data dir: etcd ignores the initial
            // cluster flags once its data dir holds a member.
            procs.push(Proc::new(
                format!("etcd {name}"),
                etcd.to_path_buf(),
                args.clone(),
                args,
                dir.join(format!("etcd-{name}.log")),
            ));
        }
        let endpoints: Vec<String> = client.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut c = LocalCluster {
            procs,
            // etcd serves /metrics on its client URLs.
            metrics: endpoints.clone(),
            endpoints,
        };
        for p in &mut c.procs {
            p.start()?;
        }
        Ok(c)
    }

    /// 3 `cairn server` members (ids 1..3) with data dirs `dir/cairn-nN`,
    /// started as `cairn dev` starts them, each serving /metrics
    /// (`--metrics-addr`) on a port of its own.
    pub fn cairn(dir: &Path, exe: &Path) -> Result<LocalCluster> {
        let n = 3;
        let addrs: Vec<String> = (0..n)
            .map(|_| crate::dev::free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Result<_>>()?;
        let metrics: Vec<String> = (0..n)
            .map(|_| crate::dev::free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Result<_>>()?;
        let init = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs = vec![];
        for (i, addr) in addrs.iter().enumerate() {
            let id = i + 1;
            // Restart: only --id, --listen, --data-dir and --metrics-addr.
            let restart: Vec<OsString> = vec![
                "server".into(),
                "--id".into(),
                id.to_string().into(),
                "--listen".into(),
                addr.into(),
                "--data-dir".into(),
                dir.join(format!("cairn-n{id}")).into(),
                "--metrics-addr".into(),
                metrics[i].clone().into(),
                // etcd runs plain HTTP beside it: both without TLS.
                "--insecure".into(),
            ];
            let mut first = restart.clone();
            first.extend(["--init".into(), init.clone().into()]);
            procs.push(Proc::new(
                format!("cairn member {id}"),
                exe.to_path_buf(),
                first,
                restart,
                dir.join(format!("cairn-n{id}.log")),
            ));
        }
        let mut c = LocalCluster {
            procs,
            endpoints: addrs,
            metrics,
        };
        for p in &mut c.procs {
            p.start()?;
        }
        Ok(c)
    }

    /// Errors out if a member exited on its own, with its log's tail.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.exited() {
                bail!(
                    "{} exited ({status}); its log ({}) ends with:\n{}",
                    p.name,
                    p.log.display(),
                    p.log_tail(20)
                );
            }
        }
        Ok(())
    }

    /// Every member's log tail, for error messages.
    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("--- {} ({}):\n{}", p.name, p.log.display(), p.log_tail(15)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// CPU seconds (user + system) the running members have used so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.procs
            .iter()
            .filter_map(Proc::pid)
            .filter_map(|pid| crate::bench::cpu_seconds(pid).ok())
            .sum()
    }

    /// How many times the members' logs say "session expired" (Cairn's
    /// leader logs each expiry it commits).
    pub fn logged_session_expiries(&self) -> usize {
        self.procs
            .iter()
            .map(|p| {
                std::fs::read_to_string(&p.log)
                    .map(|t| t.lines().filter(|l| l.contains("session expired")).count())
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// CPU seconds this process has used.
pub fn own_cpu_seconds() -> f64 {
    crate::bench::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// A GET of `http://addr/metrics` (Prometheus text), or None.
pub async fn scrape_metrics(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.lines().next()?;
        (status.starts_with("HTTP/1.") && status.contains(" 200")).then(|| body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()
        .flatten()
}

/// The sum of a Prometheus series' samples (any labels) in `text`.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // "name value [ts]" or "name{labels} value [ts]".
        let rest = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((_, v)) => v,
                None => continue,
            },
            None if rest.starts_with(' ') => rest,
            None => continue,
        };
        let value = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}
