//! `cairn dev`: a local quorum of real `cairn server` child processes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_node::client::MetaClient;
use cairn_node::fleet::{Fleet, FleetConfig, FleetTls};
use cairn_node::tls::{certs, Ca, Role};
use cairn_node::transport::Transport;

/// `$CAIRN_HOME`, else `~/.cairn`: where `cairn dev` and `cairn fleet`
/// record what the CLI finds by default.
pub fn home() -> PathBuf {
    std::env::var_os("CAIRN_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cairn")))
        .unwrap_or_else(|| PathBuf::from(".cairn"))
}

/// Where `cairn dev` records its endpoints and the CLI looks for them.
pub fn state_file() -> PathBuf {
    home().join("dev-endpoints")
}

/// Where `cairn dev` records how to reach its members: the admin identity
/// and the CA (absent: it runs `--insecure`).
pub fn tls_file() -> PathBuf {
    home().join("dev-tls")
}

/// What a running `cairn dev` recorded for the CLI.
pub struct Recorded {
    pub endpoints: Vec<String>,
    /// The admin identity (None: the cluster runs without TLS).
    pub tls: Option<PathBuf>,
    /// The CA, for simulated fleets.
    pub ca: Option<PathBuf>,
}

/// What a running `cairn dev` recorded, if anything.
pub fn recorded() -> Option<Recorded> {
    let text = std::fs::read_to_string(state_file()).ok()?;
    let endpoints: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if endpoints.is_empty() {
        return None;
    }
    let mut r = Recorded {
        endpoints,
        tls: None,
        ca: None,
    };
    if let Ok(text) = std::fs::read_to_string(tls_file()) {
        for line in text.lines() {
            match line.split_once('=') {
                Some(("identity", dir)) => r.tls = Some(PathBuf::from(dir)),
                Some(("ca", dir)) => r.ca = Some(PathBuf::from(dir)),
                _ => {}
            }
        }
    }
    Some(r)
}

/// The directories of `cairn dev`'s certificates under its data dir.
struct DevTls {
    ca: PathBuf,
    admin: PathBuf,
    members: PathBuf,
}

impl DevTls {
    fn member(&self, id: u64) -> PathBuf {
        self.members.join(format!("member-{id}"))
    }

    /// The CA and every identity the cluster needs, issued once: a
    /// restarted `cairn dev --dir D` reuses them.
    fn issue(dir: &Path, nodes: u64) -> Result<DevTls> {
        let tls = dir.join("tls");
        let t = DevTls {
            ca: tls.join("ca"),
            admin: tls.join("admin"),
            members: tls.clone(),
        };
        if !t.ca.join(certs::CA_KEY).exists() {
            let (from, until) = certs::validity(365);
            Ca::generate("dev", from, until)?.save(&t.ca)?;
        }
        let ca = Ca::load(&t.ca)?;
        let mut want: Vec<(Role, PathBuf)> = (1..=nodes)
            .map(|id| (Role::Member(id), t.member(id)))
            .collect();
        want.push((Role::Admin("dev".into()), t.admin.clone()));
        for (role, dir) in want {
            if !dir.join(certs::CERT).exists() {
                let (from, until) = certs::validity(365);
                ca.issue_into(&role, from, until, &dir)?;
            }
        }
        Ok(t)
    }
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(state_file());
        let _ = std::fs::remove_file(tls_file());
    }
}

/// A free 127.0.0.1 port (bound, then released for a child to take).
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("binding an ephemeral 127.0.0.1 port")?
        .local_addr()?
        .port())
}

pub async fn run(
    nodes: u64,
    dir: Option<PathBuf>,
    chunks: usize,
    racks: usize,
    demo: bool,
    insecure: bool,
) -> Result<()> {
    if !(1..=7).contains(&nodes) {
        bail!("--nodes must be between 1 and 7");
    }
    if demo && chunks < 4 {
        bail!("--demo needs at least 4 chunks (3 replicas and one to stop)");
    }
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("cairn-dev-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tls = if insecure {
        eprintln!("warning: --insecure: the members run plain TCP; anyone who reaches their ports may rewrite the cluster");
        None
    } else {
        Some(DevTls::issue(&dir, nodes).context("issuing the cluster's certificates")?)
    };
    let transport = match &tls {
        Some(t) => Transport::load(&t.admin)?,
        None => Transport::Insecure,
    };
    let exe = std::env::current_exe().context("locating the cairn binary")?;
    let addrs: Vec<String> = (0..nodes)
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_>>()?;
    let metrics: Vec<String> = (0..nodes)
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_>>()?;
    let init = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Children(vec![]);
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let data = dir.join(format!("node{id}"));
        let log = std::fs::File::create(dir.join(format!("node{id}.log")))?;
        let mut cmd = Command::new(&exe);
        cmd.args(["server", "--id", &id.to_string(), "--listen", addr])
            .args(["--metrics-addr", &metrics[i]])
            .arg("--data-dir")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .args(["--init", &init])
            // Its own flags, whatever the caller's environment says.
            .env_remove("CAIRN_TLS");
        match &tls {
            Some(t) => cmd.arg("--tls").arg(t.member(id)),
            None => cmd.arg("--insecure"),
        };
        children.0.push(
            cmd.spawn()
                .with_context(|| format!("starting member {id}"))?,
        );
    }
    wait_for_leader(&addrs, &transport, &dir).await?;
    let file = state_file();
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&file, addrs.join("\n"))?;
    match &tls {
        Some(t) => std::fs::write(
            tls_file(),
            format!("identity={}\nca={}\n", t.admin.display(), t.ca.display()),
        )?,
        None => {
            let _ = std::fs::remove_file(tls_file());
        }
    }
    // The simulated chunk fleet, in this process.
    let fleet = if chunks > 0 {
        let mut cfg = FleetConfig::new(addrs.clone(), chunks);
        cfg.racks = racks.max(1);
        if let Some(t) = &tls {
            cfg.tls = Some(std::sync::Arc::new(FleetTls {
                admin: transport.clone(),
                ca: Ca::load(&t.ca)?,
                dir: t.ca.join("chunks"),
            }));
        }
        cfg.state_file = Some(dir.join("fleet-cids"));
        if demo {
            // Slow enough disks that a recovery takes a few seconds to watch.
            cfg.bandwidth_mb_s = DEMO_BANDWIDTH_MB_S;
        }
        let mut fleet = Fleet::start(cfg).await?;
        let control = fleet.serve_control("127.0.0.1:0".parse()?).await?;
        crate::fleet_cli::record_control(control)?;
        if !fleet.wait_registered(Duration::from_secs(30)).await {
            bail!(
                "the simulated chunks did not all register within 30 s; see the member logs in {}",
                dir.display()
            );
        }
        Some(fleet)
    } else {
        None
    };
    println!("cairn dev: {nodes} members on {}", addrs.join(", "));
    if let Some(f) = &fleet {
        let cids: Vec<String> = f.chunks().iter().map(|c| c.cid().to_string()).collect();
        println!(
            "{chunks} simulated chunks (cids {}) on {} racks, keeping their sessions alive",
            cids.join(" "),
            racks.max(1)
        );
    }
    println!(
        "web console: http://{}/ (every member serves it; also {})",
        metrics[0],
        metrics[1..]
            .iter()
            .map(|m| format!("http://{m}/"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "Prometheus metrics: {}",
        metrics
            .iter()
            .map(|m| format!("http://{m}/metrics"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(t) = &tls {
        println!(
            "  (read-only over http://; to act, open https://{}/ with the admin identity in {}: a browser imports it as PKCS#12, `openssl pkcs12 -export -in cert.pem -inkey key.pem -out admin.p12`)",
            metrics[0],
            t.admin.display()
        );
    }
    println!("data and logs in {}", dir.display());
    match &tls {
        Some(t) => println!(
            "mutual TLS: CA in {}, the CLI's admin identity in {} (other clients: --tls DIR; `cairn cert issue` makes more)",
            t.ca.display(),
            t.admin.display()
        ),
        None => println!("TLS is OFF (--insecure)"),
    }
    println!(
        "endpoints recorded in {} (the CLI uses them by default)",
        file.display()
    );
    println!();
    println!("try:   cairn cluster status           (members, roles, lag)");
    println!("       cairn chunk list               (load, alive / expired)");
    println!("       cairn session list             (leases, last keepalive seen)");
    println!(
        "       cairn fleet stop 3             (chunk 3 goes silent and expires; `fleet start 3`)"
    );
    println!("       cairn volume create vm1 --size 10GiB --replicas 3");
    println!("       cairn topo add zone z1         (zones > racks > bricks)");
    println!("       cairn config get");
    println!("       cairn bench write --clients 64 --duration 10s");
    println!("       cairn --help");
    println!();
    println!("Ctrl-C stops every member.");
    if let (true, Some(f)) = (demo, &fleet) {
        tokio::select! {
            r = run_demo(&addrs, &transport, f) => {
                if let Err(e) = r {
                    println!("demo stopped: {e:#}");
                }
            }
            _ = stop_signal() => {
                println!("stopping {nodes} members");
                let _ = std::fs::remove_file(crate::fleet_cli::control_file());
                return Ok(());
            }
        }
        println!();
        println!("the cluster keeps running; Ctrl-C stops every member.");
    }
    stop_signal().await?;
    println!("stopping {nodes} members");
    drop(fleet);
    let _ = std::fs::remove_file(crate::fleet_cli::control_file());
    drop(children);
    Ok(())
}

/// Ctrl-C or SIGTERM: either way the members are stopped and the recorded
/// endpoints removed (a `kill` of `cairn dev` must not orphan its members).
async fn stop_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

/// Disk bandwidth of the demo's simulated chunks.
const DEMO_BANDWIDTH_MB_S: u64 = 100;
/// Recover slots per chunk in the demo: low, so the copies come in waves.
const DEMO_RECOVER_SLOTS: u32 = 2;

/// `cairn dev --demo`: a volume, then one chunk stops; its lease runs out
/// and the recovery runs under a progress bar.
async fn run_demo(addrs: &[String], transport: &Transport, fleet: &Fleet) -> Result<()> {
    use cairn_node::types::pb;
    let client = MetaClient::new(addrs.to_vec(), transport.clone())?;
    let config = client.read("config", false).await?;
    // The lease in force (7 s once lease_7s is active), not just the setting.
    let upgrade: serde_json::Value = serde_json::from_str(
        &client
            .upgrade_status(pb::UpgradeStatusRequest {})
            .await?
            .json,
    )?;
    let lease_ms = upgrade["lease_ms"].as_u64().unwrap_or(14_000);
    let keys = ["recover_src_slots", "recover_dst_slots"];
    let before: Vec<String> = keys
        .iter()
        .map(|k| config[*k].as_str().unwrap_or("8").to_string())
        .collect();
    for key in keys {
        client
            .set_config(pb::SetConfigRequest {
                key: key.into(),
                value: DEMO_RECOVER_SLOTS.to_string(),
            })
            .await?;
    }
    let v = client
        .create_volume(pb::CreateVolumeRequest {
            name: format!("demo-{}", std::process::id()),
            size_bytes: 200 * cairn_state::EXTENT_SIZE_BYTES,
            replicas: 3,
            ..Default::default()
        })
        .await?;
    println!();
    println!(
        "demo: volume {} with {} extents, 3 replicas each, on chunks with {DEMO_BANDWIDTH_MB_S} MiB/s disks and {DEMO_RECOVER_SLOTS} recover slots each",
        v.volume_id, v.extents
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The chunk holding the most replicas of the volume.
    let vol = client
        .read(&format!("volume {}", v.volume_id), false)
        .await?;
    let mut held: std::collections::BTreeMap<u64, u64> = Default::default();
    for e in vol["extents"].as_array().into_iter().flatten() {
        for c in e["loc"].as_array().into_iter().flatten() {
            *held.entry(c.as_u64().unwrap_or(0)).or_default() += 1;
        }
    }
    let (cid, n) = held
        .iter()
        .max_by_key(|(cid, n)| (**n, std::cmp::Reverse(**cid)))
        .map(|(c, n)| (*c as u32, *n))
        .context("the volume has no replicas")?;
    fleet.stop_chunk(cid);
    println!(
        "demo: stopped chunk {cid} ({n} replicas); its session expires within {:.0} s, then every extent it held gets its replica back",
        lease_ms as f64 / 1000.0
    );
    println!("      (in another shell: cairn sched status, cairn sched explain <pid>, cairn fleet start {cid})");
    let watched = crate::sched_cli::watch(&client, Duration::from_millis(lease_ms + 10_000)).await;
    // The demo's slot limits were for show: back to what they were.
    for (key, value) in keys.iter().zip(before) {
        client
            .set_config(pb::SetConfigRequest {
                key: key.to_string(),
                value,
            })
            .await?;
    }
    watched
}

async fn wait_for_leader(addrs: &[String], transport: &Transport, dir: &Path) -> Result<()> {
    let client = MetaClient::new(addrs.to_vec(), transport.clone())?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        for a in addrs {
            if let Ok(s) = client.status_of(a, true).await {
                if s.leader_id != 0 {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "no leader within 30 s; see the member logs in {}",
        dir.display()
    )
}
