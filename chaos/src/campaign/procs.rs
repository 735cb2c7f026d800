//! The members' processes: start, kill -9, SIGSTOP / SIGCONT, restart (also
//! with a skewed wall clock), and the guarantee that every process a
//! campaign started is gone when it ends, however it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// How a member is started.
#[derive(Clone, Debug)]
pub enum Start {
    /// First start of an initial member: `--init LIST`.
    Init(String),
    /// A new member: `--join ADDR` (it becomes a learner).
    Join(String),
    /// A restart from its data dir.
    Restart,
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub id: u64,
    /// The address it listens on and the others know it by.
    pub addr: String,
    pub data_dir: PathBuf,
    /// Prepended to the command (`ip netns exec <ns>`), empty on loopback.
    pub prefix: Vec<String>,
    /// `--routes`: peers dialled through a fault proxy.
    pub routes: BTreeMap<u64, String>,
}

/// libfaketime's preload library (Debian's `faketime` package), wherever
/// the architecture puts it.
pub fn faketime_lib() -> Option<PathBuf> {
    let dirs = std::fs::read_dir("/usr/lib").ok()?;
    dirs.filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
}

pub struct Members {
    bin: PathBuf,
    logs: PathBuf,
    extra: Vec<String>,
    /// Extra environment of every member.
    pub env: Vec<(String, String)>,
    pub specs: BTreeMap<u64, Spec>,
    children: BTreeMap<u64, Child>,
    paused: BTreeSet<u64>,
    /// Members running with a skewed clock, and the skew.
    pub skewed: BTreeMap<u64, String>,
    /// Members that exited on their own (a crash is a finding): id, status.
    pub crashed: Vec<(u64, String)>,
}

impl Members {
    pub fn new(bin: PathBuf, logs: PathBuf, extra: Vec<String>) -> Members {
        Members {
            bin,
            logs,
            extra,
            env: vec![],
            specs: BTreeMap::new(),
            children: BTreeMap::new(),
            paused: BTreeSet::new(),
            skewed: BTreeMap::new(),
            crashed: vec![],
        }
    }

    pub fn running(&self, id: u64) -> bool {
        self.children.contains_key(&id)
    }

    pub fn running_ids(&self) -> Vec<u64> {
        self.children.keys().copied().collect()
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.paused.contains(&id)
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children.get(&id).map(Child::id)
    }

    /// Starts member `id` (already in `specs`). `skew`: a libfaketime offset
    /// such as "+120s" for its wall clock (monotonic time is left alone).
    pub fn start(&mut self, id: u64, how: &Start, skew: Option<&str>) -> Result<()> {
        if self.children.contains_key(&id) {
            bail!("member {id} is already running");
        }
        let spec = self
            .specs
            .get(&id)
            .with_context(|| format!("no member {id} planned"))?
            .clone();
        std::fs::create_dir_all(&self.logs)?;
        let log_path = self.logs.join(format!("n{id}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = match spec.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("server")
            .args(["--id", &id.to_string(), "--listen", &spec.addr])
            .arg("--data-dir")
            .arg(&spec.data_dir)
            // Campaigns run plain TCP (docs/chaos.md): the faults are the
            // network's and the processes', not the certificates'.
            .arg("--insecure")
            .env_remove("CAIRN_TLS")
            .args(&self.extra);
        if !spec.routes.is_empty() {
            let routes: Vec<String> = spec
                .routes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            cmd.args(["--routes", &routes.join(",")]);
        }
        match how {
            Start::Init(list) => {
                cmd.args(["--init", list]);
            }
            Start::Join(addr) => {
                cmd.args(["--join", addr]);
            }
            Start::Restart => {}
        }
        match skew {
            Some(s) => {
                let Some(lib) = faketime_lib() else {
                    bail!("the clock nemesis needs libfaketime: apt-get install faketime (scripts/setup.sh does)");
                };
                cmd.env("LD_PRELOAD", lib)
                    .env("FAKETIME", s)
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                    .env("FAKETIME_DONT_RESET", "1");
                self.skewed.insert(id, s.to_string());
            }
            None => {
                self.skewed.remove(&id);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.env(
            "RUST_LOG",
            std::env::var("CAIRN_CHAOS_MEMBER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        // The member dies with this process, even on kill -9 of the
        // campaign (Drop then never runs). PDEATHSIG fires when the spawning
        // *thread* ends: members are spawned from runtime threads that live
        // as long as the campaign.
        // SAFETY: prctl and getppid are async-signal-safe; nothing else
        // runs in the child between fork and exec.
        let parent = std::process::id();
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The campaign died between fork and prctl: no signal will come.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("the campaign exited"));
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} for member {id}", self.bin.display()))?;
        self.children.insert(id, child);
        Ok(())
    }

    fn signal(&self, id: u64, sig: i32) -> Result<()> {
        let pid = self
            .pid(id)
            .with_context(|| format!("member {id} is not running"))?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        // SAFETY: kill(2) with a pid of a child we spawned and still own
        // (not yet reaped, so the pid cannot have been reused).
        let rc = unsafe { libc::kill(pid, sig) };
        if rc != 0 {
            bail!(
                "kill({pid}, {sig}) for member {id}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// kill -9 and reap. A member that had already exited on its own is
    /// recorded as crashed, not silently reaped.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        let mut child = self
            .children
            .remove(&id)
            .with_context(|| format!("member {id} is not running"))?;
        self.paused.remove(&id);
        if let Ok(Some(status)) = child.try_wait() {
            self.crashed.push((id, status.to_string()));
            return Ok(());
        }
        // A stopped process dies of SIGKILL too; reap it either way.
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    pub fn pause(&mut self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGSTOP)?;
        self.paused.insert(id);
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGCONT)?;
        self.paused.remove(&id);
        Ok(())
    }

    /// The last `n` lines of member `id`'s log.
    pub fn log_tail(&self, id: u64, n: usize) -> String {
        let text =
            std::fs::read_to_string(self.logs.join(format!("n{id}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Members that exited on their own since the last call (a crash is a
    /// finding): id and status. They are also kept in `crashed`.
    pub fn exited(&mut self) -> Vec<(u64, String)> {
        let mut out = vec![];
        for (id, c) in self.children.iter_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                out.push((*id, status.to_string()));
            }
        }
        for (id, _) in &out {
            self.children.remove(id);
            self.paused.remove(id);
        }
        self.crashed.extend(out.iter().cloned());
        out
    }

    /// Resumes every paused member and kills every member.
    pub fn stop_all(&mut self) {
        let paused: Vec<u64> = self.paused.iter().copied().collect();
        for id in paused {
            let _ = self.resume(id);
        }
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            let _ = self.kill(id);
        }
    }

    /// Graceful stop (SIGINT: the member shuts down cleanly), then kill
    /// whatever is still running after `within`.
    pub fn shutdown_all(&mut self, within: std::time::Duration) {
        let paused: Vec<u64> = self.paused.iter().copied().collect();
        for id in paused {
            let _ = self.resume(id);
        }
        for id in self.children.keys() {
            let _ = self.signal(*id, libc::SIGINT);
        }
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self
                .children
                .values_mut()
                .all(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Those that stopped as asked did not crash: reap them quietly.
        self.children
            .retain(|_, c| !matches!(c.try_wait(), Ok(Some(_))));
        self.stop_all();
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.stop_all();
    }
}
