//! `cairn-chaos`: run fault campaigns against Cairn and check their histories.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use cairn_chaos::campaign::{self, nemesis::Nemesis, NetMode, RunConfig};
use cairn_chaos::sim::{SimBug, SimConfig};
use cairn_chaos::simcheck;
use cairn_chaos::soak::SoakConfig;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn-chaos",
    version,
    about = "Fault campaigns against Cairn: real-process nemeses, a deterministic simulator, and a history checker (docs/chaos.md)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a campaign against real `cairn server` processes, then check it.
    ///
    /// Starts --nodes members and a fleet of --chunks simulated chunks, runs
    /// concurrent clients (linearizable reads and compare-and-set writes of
    /// extents, volume creations) while the nemeses inject faults on a
    /// schedule drawn from --seed, heals everything, waits for the cluster
    /// to converge, and checks the history. Everything lands in --out:
    /// history.jsonl, monitor.jsonl, fleet.jsonl, log.jsonl, final.json,
    /// verdict.json, timeline.svg, and each member's log under logs/.
    /// Exit status 1 when a check fails.
    ///
    ///   cairn-chaos run --nodes 3 --nemesis kill,pause,partition --duration 60s --seed 7 --out /tmp/c7
    ///
    /// Every process and network namespace it starts is removed when it
    /// ends, also on Ctrl-C.
    Run(RunArgs),
    /// Check a campaign's directory (again): linearizability per extent and
    /// the domain invariants. Writes verdict.json and timeline.svg into it
    /// and prints a summary. Exit status 1 when a check fails.
    ///
    ///   cairn-chaos check /tmp/c7
    Check { dir: PathBuf },
    /// Run the deterministic simulator: the same openraft + state machine +
    /// session tracker, in memory, over a simulated network and clock, with
    /// faults drawn from the seed. One seed runs twice and must give the
    /// same event trace (its hash is printed); --seeds runs many and lists
    /// the failing ones. Exit status 1 on any violation.
    ///
    ///   cairn-chaos sim --seed 42 --steps 400
    ///   cairn-chaos sim --seeds 1..1000
    ///   cairn-chaos sim --seed 42 --out /tmp/s42   # history.jsonl etc., for `check`
    Sim(SimArgs),
    /// The release check: campaigns with every nemesis, 3 and 5 members, a
    /// new seed each, for --duration; then --sim-seeds simulator seeds.
    /// Prints and writes (DIR/soak.json) the totals: runs, faults injected,
    /// operations checked, violations (must be 0). Keeps the directories
    /// of failing runs.
    ///
    ///   cairn-chaos soak --duration 30m --out /var/tmp/soak
    Soak(SoakArgs),
    /// Hostile input: seeded property-based fuzz targets for every decoder
    /// of bytes from a disk or a peer (log entry, snapshot file and body,
    /// state, Raft messages, proposals, the session wire) and for every RPC
    /// handler of a live member started in this process. Prints per target
    /// the cases run, what decoded, panics and hangs (must be 0). Exit
    /// status 1 on a failure, which names the seed and the case.
    ///
    ///   cairn-chaos fuzz                                   # every target, 10,000 cases
    ///   cairn-chaos fuzz --target rpc --cases 1000000      # a soak
    ///   cairn-chaos fuzz --target log-entry,raft-vote --seed 7
    #[command(verbatim_doc_comment)]
    Fuzz(FuzzArgs),
    /// Serve campaign reports in a browser: the web console's Chaos page
    /// over DIR, which is one campaign's --out directory or a directory of
    /// them (a soak's). Lists every run with its verdict and failed checks;
    /// a run shows its checks, operations and timeline. Read-only; runs
    /// until Ctrl-C. Bind a non-loopback --addr only on a trusted network:
    /// reports hold member logs and nothing asks who is reading.
    ///
    ///   cairn-chaos serve /var/tmp/soak                  # http://127.0.0.1:8900/
    ///   cairn-chaos serve /tmp/c7 --addr 127.0.0.1:0     # any free port (printed)
    #[command(verbatim_doc_comment)]
    Serve {
        /// A campaign's --out directory, or a directory holding several.
        dir: PathBuf,
        /// Address to listen on (HTTP).
        #[arg(long, default_value = "127.0.0.1:8900")]
        addr: std::net::SocketAddr,
    },
}

#[derive(Args)]
struct FuzzArgs {
    /// Targets, comma-separated, or `all`.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    target: Vec<String>,
    /// Cases per target.
    #[arg(long, default_value_t = 10_000)]
    cases: u64,
    /// Seed of the generator (a failure names it with its case).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SimArgs {
    /// One seed (run twice: the traces must be identical).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// A range of seeds, e.g. 1..1000 (end excluded).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<std::ops::Range<u64>>,
    /// Client operations plus faults per run.
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// Members (3 to 5).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// With --seed: write the run's history, monitor and campaign files here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Simulate a deliberate bug (ack-before-fsync, stale-read, read-index-from-hint).
    #[arg(long, hide = true)]
    bug: Option<String>,
}

#[derive(Args)]
struct SoakArgs {
    /// How long to keep starting campaigns, e.g. 30m.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    duration: Duration,
    /// Each campaign's length.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    campaign: Duration,
    /// Seed of the first campaign (the next ones count up).
    #[arg(long, default_value_t = 1000)]
    first_seed: u64,
    /// Simulator seeds to run after the campaigns.
    #[arg(long, default_value_t = 1000)]
    sim_seeds: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "auto")]
    net: NetMode,
    #[arg(long)]
    cairn_bin: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// Members (3 or 5; 4 works too). The membership nemesis adds one more.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Simulated chunks (at least 6).
    #[arg(long, default_value_t = 8)]
    chunks: u32,
    /// Faults to inject, comma-separated: kill, pause, partition,
    /// leader-churn, clock, member, chunk (or `all`; `none` for a calm run).
    #[arg(long, value_delimiter = ',', default_value = "kill,pause,partition")]
    nemesis: Vec<String>,
    /// How long the workload and the faults run, e.g. 60s or 5m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed of the fault schedule and the workload's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (created; must not hold an earlier campaign).
    #[arg(long)]
    out: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5)]
    clients: u32,
    /// Extents the clients read and write (fewer keys: more contention).
    #[arg(long, default_value_t = 12)]
    keys: u32,
    /// How members are connected: `netns` (network namespaces and
    /// nftables; root only), `proxy` (a fault-injecting TCP proxy on
    /// every link; also delays), or `auto` (netns when possible).
    #[arg(long, default_value = "auto")]
    net: NetMode,
    /// The `cairn` binary (default: the one beside this binary).
    #[arg(long)]
    cairn_bin: Option<PathBuf>,
    /// Members snapshot after this many entries (the default keeps the
    /// whole log, so the checker can replay it).
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_every: u64,
    /// Run members with a deliberate bug (tests of the harness itself).
    #[arg(long, hide = true)]
    bug: Option<String>,
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?}: expected a range like 1..1000"))?;
    let a: u64 = a.parse().map_err(|_| format!("{a:?} is not a seed"))?;
    let b: u64 = b.parse().map_err(|_| format!("{b:?} is not a seed"))?;
    if b <= a {
        return Err(format!("{s:?} is empty"));
    }
    Ok(a..b)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 60s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unit must be ms, s, m or h")),
    }
}

fn parse_nemeses(names: &[String]) -> Result<BTreeSet<Nemesis>> {
    let mut out = BTreeSet::new();
    for n in names {
        match n.as_str() {
            "all" => out.extend(Nemesis::ALL),
            "none" => {}
            other => {
                out.insert(other.parse::<Nemesis>().map_err(anyhow::Error::msg)?);
            }
        }
    }
    Ok(out)
}

async fn run(a: RunArgs) -> Result<bool> {
    let bin = match a.cairn_bin {
        Some(b) => b,
        None => campaign::default_bin()?,
    };
    let cfg = RunConfig {
        nodes: a.nodes,
        chunks: a.chunks,
        nemeses: parse_nemeses(&a.nemesis)?,
        duration: a.duration,
        seed: a.seed,
        out: a.out.clone(),
        bin,
        clients: a.clients.max(1),
        keys: a.keys.max(1),
        net: a.net,
        bug: a.bug,
        snapshot_every: a.snapshot_every,
    };
    let report = campaign::run(cfg).await?;
    let valid = check(&a.out)?;
    println!(
        "campaign done: {} faults planned, {} events recorded, network {}, converged: {}",
        report.faults, report.operations, report.net_mode, report.converged
    );
    for p in &report.problems {
        println!("problem: {p}");
    }
    for (id, status) in &report.crashed {
        println!(
            "member {id} exited on its own: {status} (see {}/logs/n{id}.log)",
            a.out.display()
        );
    }
    Ok(valid && report.crashed.is_empty() && report.problems.is_empty())
}

fn sim_bug(name: Option<&str>) -> Result<Option<SimBug>> {
    Ok(match name {
        None => None,
        Some("ack-before-fsync") => Some(SimBug::AckBeforeFsync),
        Some("stale-read") => Some(SimBug::StaleRead),
        Some("read-index-from-hint") => Some(SimBug::ReadIndexFromHint),
        Some(other) => anyhow::bail!(
            "unknown --bug {other:?}: ack-before-fsync, stale-read or read-index-from-hint"
        ),
    })
}

fn sim(a: SimArgs) -> Result<bool> {
    if !(3..=5).contains(&a.nodes) {
        anyhow::bail!("--nodes must be 3, 4 or 5");
    }
    let base = SimConfig {
        steps: a.steps,
        nodes: a.nodes,
        bug: sim_bug(a.bug.as_deref())?,
        ..SimConfig::new(0)
    };
    if let Some(range) = a.seeds {
        let started = std::time::Instant::now();
        let (mut failing, mut ops, mut faults, mut n) = (vec![], 0u64, 0u64, 0u64);
        for seed in range.clone() {
            let o = cairn_chaos::sim::run(&SimConfig {
                seed,
                ..base.clone()
            });
            let v = simcheck::verdict(&o);
            n += 1;
            ops += o.stats.ops;
            faults += o.stats.faults;
            if !o.violations.is_empty() || !v.valid {
                let why = o
                    .violations
                    .first()
                    .cloned()
                    .unwrap_or_else(|| first_failure(&v));
                println!("seed {seed}: FAIL: {why}");
                failing.push(seed);
            }
        }
        println!(
            "{n} seeds ({}..{}), {ops} operations, {faults} faults, {:.1} s: {} failing{}",
            range.start,
            range.end,
            started.elapsed().as_secs_f64(),
            failing.len(),
            if failing.is_empty() {
                String::new()
            } else {
                format!(" {failing:?} (replay one with --seed)")
            }
        );
        return Ok(failing.is_empty());
    }
    let seed = a.seed.unwrap_or(1);
    let cfg = SimConfig { seed, ..base };
    let o = cairn_chaos::sim::run(&cfg);
    let again = cairn_chaos::sim::run(&cfg);
    let same = o.trace_hash == again.trace_hash;
    let v = simcheck::verdict(&o);
    println!(
        "seed {seed}: {} operations ({} ok, {} fail, {} unknown), {} faults, {} trace events, {} ms virtual in {} ms",
        o.stats.ops, o.stats.ok, o.stats.fail, o.stats.info, o.stats.faults, o.stats.trace_events, o.stats.virtual_ms, o.stats.real_ms
    );
    println!(
        "trace hash {:016x}, replayed: {:016x} ({})",
        o.trace_hash,
        again.trace_hash,
        if same {
            "identical"
        } else {
            "DIFFERENT: the simulation is not deterministic"
        }
    );
    for viol in &o.violations {
        println!("violation: {viol}");
    }
    println!("{}", cairn_chaos::report::summary(&v));
    if let Some(dir) = a.out {
        write_sim(&dir, &o)?;
        println!(
            "history written to {} (cairn-chaos check {} re-checks it)",
            dir.display(),
            dir.display()
        );
    }
    Ok(same && o.violations.is_empty() && v.valid)
}

fn first_failure(v: &cairn_chaos::check::Verdict) -> String {
    v.checks
        .iter()
        .find(|c| c.status == cairn_chaos::check::Status::Fail)
        .map(|c| {
            format!(
                "{}: {}",
                c.name,
                c.details.first().cloned().unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

fn write_sim(dir: &std::path::Path, o: &cairn_chaos::sim::SimOutcome) -> Result<()> {
    use cairn_chaos::history::{self, JsonlWriter};
    std::fs::create_dir_all(dir)?;
    history::write_json(&dir.join(history::CAMPAIGN), &simcheck::campaign_of(o))?;
    let mut w = JsonlWriter::create(&dir.join(history::HISTORY))?;
    for e in &o.history {
        w.write(e)?;
    }
    let mut w = JsonlWriter::create(&dir.join(history::MONITOR))?;
    for ob in &o.observations {
        w.write(ob)?;
    }
    history::write_json(&dir.join(history::FINAL), &simcheck::final_of(o))?;
    Ok(())
}

fn soak(a: SoakArgs) -> Result<bool> {
    let bin = match a.cairn_bin {
        Some(b) => b,
        None => campaign::default_bin()?,
    };
    let cfg = SoakConfig {
        duration: a.duration,
        campaign: a.campaign,
        first_seed: a.first_seed,
        out: a.out.clone(),
        bin,
        net: a.net,
    };
    let mut r = on_runtime(cairn_chaos::soak::campaigns(&cfg))?;
    cairn_chaos::soak::sim_seeds(&mut r, a.sim_seeds);
    cairn_chaos::soak::finish(&cfg, &mut r)?;
    println!("{}", serde_json::to_string_pretty(&r)?);
    Ok(r.violations == 0 && r.errors == 0 && r.sim_violations == 0)
}

/// Runs the fuzz targets and prints what each did; true when all passed.
fn fuzz(a: FuzzArgs) -> Result<bool> {
    let outcomes = on_runtime(cairn_chaos::fuzz::run(&a.target, a.cases, a.seed))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        println!(
            "{:<24} {:>9} {:>9} {:>7} {:>6} {:>8}  result",
            "target", "cases", "accepted", "panics", "hangs", "secs"
        );
        for o in &outcomes {
            println!(
                "{:<24} {:>9} {:>9} {:>7} {:>6} {:>8.1}  {}",
                o.target,
                o.cases,
                o.accepted,
                o.panics,
                o.hangs,
                o.secs,
                o.failure.as_deref().unwrap_or("ok")
            );
        }
        for o in outcomes.iter().filter(|o| !o.answers.is_empty()) {
            let answers: Vec<String> = o.answers.iter().map(|(c, n)| format!("{c} {n}")).collect();
            println!("{} answers: {}", o.target, answers.join(", "));
        }
        println!("seed {}", a.seed);
    }
    Ok(outcomes.iter().all(|o| o.passed()))
}

/// `cairn-chaos serve`: until Ctrl-C (exit status 0).
async fn serve(dir: PathBuf, addr: std::net::SocketAddr) -> Result<bool> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: not a directory (give a campaign's --out directory, or one holding them)",
            dir.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    println!("chaos reports of {}: http://{bound}/", dir.display());
    let app = cairn_node::console::reports_router(dir);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| anyhow::anyhow!("serving on {bound}: {e}"))?;
    Ok(true)
}

/// Checks `dir`, prints the summary; true when valid.
fn check(dir: &std::path::Path) -> Result<bool> {
    let verdict = cairn_chaos::check::check_dir(dir)?;
    println!("{}", cairn_chaos::report::summary(&verdict));
    println!(
        "verdict: {}, timeline: {}",
        dir.join(cairn_chaos::history::VERDICT).display(),
        dir.join(cairn_chaos::history::TIMELINE).display()
    );
    Ok(verdict.valid)
}

fn main() {
    let cli = Cli::parse();
    // The fuzzer's member logs every refusal at warn: a line per case.
    let quiet = if matches!(cli.cmd, Command::Fuzz(_)) {
        "error,openraft=off"
    } else {
        "warn,openraft=off"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| quiet.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // The simulator runs its own executor on this thread with its own
    // clock: never inside tokio's runtime, whose timers run on real time.
    let r = match cli.cmd {
        Command::Sim(a) => sim(a),
        Command::Check { dir } => check(&dir),
        Command::Run(a) => on_runtime(run(a)),
        Command::Soak(a) => soak(a),
        Command::Fuzz(a) => fuzz(a),
        Command::Serve { dir, addr } => tokio::runtime::Runtime::new()
            .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
            .and_then(|rt| rt.block_on(serve(dir, addr))),
    };
    exit(r)
}

/// Runs `work` on a tokio runtime until it ends or Ctrl-C. Either way the
/// runtime is dropped before returning, which drops every task and with
/// them the members (killed) and the namespaces (deleted): nothing a
/// campaign started outlives it.
fn on_runtime<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let r = rt.block_on(async {
        tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; every process and namespace the campaign started was removed")),
        }
    });
    drop(rt);
    r
}

fn exit(r: Result<bool>) -> ! {
    match r {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
