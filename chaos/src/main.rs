//! `cairn-chaos`: run fault campaigns against Cairn and check their histories.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use cairn_chaos::campaign::{self, nemesis::Nemesis, NetMode, RunConfig};
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
    for (id, status) in &report.crashed {
        println!(
            "member {id} exited on its own: {status} (see {}/logs/n{id}.log)",
            a.out.display()
        );
    }
    Ok(valid && report.crashed.is_empty())
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

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Command::Run(a) => run(a).await,
        Command::Check { dir } => check(&dir),
    };
    match r {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
