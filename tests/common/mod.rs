//! Harness for end-to-end tests: real `cairn server` processes on 127.0.0.1
//! ephemeral ports, each with its own temporary data dir. Everything started
//! is killed and removed on drop, also when a test fails.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_node::client::MetaClient;
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
    pub child: Option<Child>,
}

pub struct Cluster {
    pub members: Vec<Member>,
    _root: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members; member 1 initializes the cluster with all of them.
    pub fn start(n: u64) -> Cluster {
        let root = tempfile::tempdir().expect("temp dir");
        let members: Vec<Member> = (1..=n)
            .map(|id| Member {
                id,
                addr: format!("127.0.0.1:{}", free_port()),
                dir: root.path().join(format!("n{id}")),
                child: None,
            })
            .collect();
        let init = members
            .iter()
            .map(|m| format!("{}={}", m.id, m.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            members,
            _root: root,
        };
        for i in 0..c.members.len() {
            let extra = if i == 0 {
                vec!["--init".to_string(), init.clone()]
            } else {
                vec![]
            };
            c.spawn(i, &extra);
        }
        c
    }

    pub fn spawn(&mut self, i: usize, extra: &[String]) {
        let m = &mut self.members[i];
        let log = std::fs::File::create(format!("{}.log", m.dir.display())).expect("log file");
        let child = Command::new(BIN)
            .args(["server", "--id", &m.id.to_string(), "--listen", &m.addr])
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
        MetaClient::new(self.addrs()).expect("client")
    }

    /// Stale status of every member that answers.
    pub async fn statuses(&self) -> Vec<Option<StatusResponse>> {
        let client = self.client();
        let mut out = vec![];
        for m in &self.members {
            out.push(client.status_of(&m.addr, true).await.ok());
        }
        out
    }

    /// Waits until every member knows the same leader; returns its id.
    pub async fn wait_for_leader(&self, within: Duration) -> u64 {
        let s = wait_until(within, "a leader known to every member", || async {
            let st = self.statuses().await;
            let leaders: Vec<u64> = st
                .iter()
                .map(|s| s.as_ref().map_or(0, |s| s.leader_id))
                .collect();
            (leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0])).then_some(leaders[0])
        })
        .await;
        s
    }

    /// Waits until every member has applied the same index, at least `index`,
    /// with the same digest; returns (applied index, digest).
    pub async fn wait_converged(&self, index: u64, within: Duration) -> (u64, u64) {
        wait_until(
            within,
            "every member at the same applied index and digest",
            || async {
                let st = self.statuses().await;
                let all: Option<Vec<&StatusResponse>> = st.iter().map(|s| s.as_ref()).collect();
                let all = all?;
                let first = all[0];
                let same = all.iter().all(|s| {
                    s.applied_index == first.applied_index && s.state_digest == first.state_digest
                });
                (same && first.applied_index >= index)
                    .then_some((first.applied_index, first.state_digest))
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
