//! `cairn sim`: pure simulations that use the real planners of cairn-sched.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use cairn_sched::recover_sim::{
    self, svg, sweep_table, PolicyName, PolicyResult, Report, SimConfig, SWEEP_CHUNKS,
};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum SimCmd {
    /// Recovery makespan after chunk loss: Cairn's real scheduler against
    /// emulated TiKV PD, HDFS and Ceph defaults, and the lower bound.
    ///
    /// A discrete-event simulation (no cluster, no clock, deterministic
    /// for a seed): chunks in racks (chunks / 4, at least 3), extents of
    /// 256 MiB with 3 replicas in 3 racks, `--fail` chunks silent at t = 0
    /// and detected when their 7 s lease runs out. Every chunk's link
    /// carries `--bandwidth` MB/s in and out, shared max-min fairly by the
    /// copies in flight. Cairn runs `cairn_sched::Scheduler` the way the
    /// leader's runner does (rounds, Raft commits, commands on keepalives);
    /// docs/recovery-sim.md describes the model and each peer's emulation.
    ///
    /// Prints, per policy, the makespan (every extent back at 3 replicas in
    /// 3 racks), its ratio to the lower bound T_LB and to Cairn, the copies
    /// issued and the most copies at once.
    ///
    ///   cairn sim recover
    ///   cairn sim recover --chunks 32 --extents 100000 --fail 1 --slow-disk 1
    ///   cairn sim recover --sweep --plot docs/recovery-sim.svg
    #[command(verbatim_doc_comment)]
    Recover(RecoverArgs),
}

#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// Chunks in the cluster.
    #[arg(long, default_value_t = 32)]
    pub chunks: u32,
    /// Extents (3 replicas of 256 MiB each).
    #[arg(long, default_value_t = 100_000)]
    pub extents: u64,
    /// Chunks that go silent at t = 0: cids 1..=N. Chunk i sits in rack
    /// (i - 1) mod racks, so they are in different racks when N <= racks
    /// (beyond that, some racks lose more than one chunk).
    #[arg(long, default_value_t = 1)]
    pub fail: u32,
    /// Live chunks with a slow disk (the highest cids).
    #[arg(long = "slow-disk", default_value_t = 0)]
    pub slow_disk: u32,
    /// A slow disk runs at the bandwidth divided by this.
    #[arg(long, default_value_t = 4)]
    pub slow_factor: u32,
    /// Inbound and outbound bandwidth of every chunk, MB/s (2^20 bytes).
    #[arg(long, default_value_t = 1_000)]
    pub bandwidth: u64,
    /// Seed of the placement and of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Racks (default: chunks / 4, at least 3). The sweep always uses the
    /// default at each size.
    #[arg(long)]
    pub racks: Option<u32>,
    /// Cairn's recover slots per chunk as source and destination, set in
    /// the cluster config as an operator would (default: the config's 8).
    #[arg(long)]
    pub recover_slots: Option<u32>,
    /// Also run 8, 16, 32, 64 and 128 chunks (extents scaled so each chunk
    /// holds the same data, chunks / 4 racks, the same --fail) and write
    /// the plot. Every size is checked before anything runs.
    #[arg(long)]
    pub sweep: bool,
    /// Where the sweep's plot goes (an SVG; implies --sweep; default
    /// recovery-sim.svg in the current directory).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Per-chunk link use of each policy: which link idled, which finished last.
    #[arg(long)]
    pub links: bool,
}

pub fn run(cmd: SimCmd, json_out: bool) -> Result<()> {
    match cmd {
        SimCmd::Recover(a) => recover(a, json_out),
    }
}

fn config(a: &RecoverArgs) -> SimConfig {
    SimConfig {
        chunks: a.chunks,
        extents: a.extents,
        fail: a.fail,
        slow_disks: a.slow_disk,
        slow_factor: a.slow_factor,
        bandwidth_mib_s: a.bandwidth,
        seed: a.seed,
        racks: a.racks.unwrap_or(0),
        recover_slots: a.recover_slots,
        ..SimConfig::default()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// "one chunk", "2 chunks".
fn chunks_text(n: u32) -> String {
    if n == 1 {
        "one chunk".into()
    } else {
        format!("{n} chunks")
    }
}

fn recover(a: RecoverArgs, json_out: bool) -> Result<()> {
    let cfg = config(&a);
    // Checked before anything is built: a clear message, no panic.
    cfg.validate()?;
    let sweep = a.sweep || a.plot.is_some();
    if sweep {
        // Every size of the sweep too (`--fail` must leave 4 live chunks
        // at 8 chunks): refused now, not after the run above.
        for n in SWEEP_CHUNKS {
            let c = cfg.sweep_at(n);
            c.validate().with_context(|| {
                format!(
                    "--sweep runs {n} chunks ({} racks, {} extents, --fail {})",
                    c.racks(),
                    c.extents,
                    c.fail
                )
            })?;
        }
    }
    let t = Instant::now();
    let report = recover_sim::run(&cfg)?;
    let took = t.elapsed().as_secs_f64();
    let mut sweep_reports = Vec::new();
    let mut plot_path = None;
    let mut sweep_took = 0.0;
    if sweep {
        let t = Instant::now();
        sweep_reports = recover_sim::sweep(&cfg, &SWEEP_CHUNKS)?;
        sweep_took = t.elapsed().as_secs_f64();
        let path = a
            .plot
            .clone()
            .unwrap_or_else(|| PathBuf::from("recovery-sim.svg"));
        let svg = svg::plot(
            &recover_sim::sweep_points(&sweep_reports),
            &format!("Recovery makespan after losing {}", chunks_text(cfg.fail)),
            &format!(
                "{} extents per {} (same data per chunk), {}{} MB/s links, {} ms lease",
                cfg.extents,
                chunks_text(cfg.chunks),
                if cfg.slow_disks > 0 {
                    format!(
                        "{} at 1/{} speed, ",
                        chunks_text(cfg.slow_disks),
                        cfg.slow_factor
                    )
                } else {
                    String::new()
                },
                cfg.bandwidth_mib_s,
                cfg.lease_ms
            ),
        );
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        plot_path = Some(path);
    }
    if json_out {
        let out = json!({
            "run": report_json(&report),
            "wall_s": took,
            "cores": cores(),
            "sweep": sweep_reports.iter().map(report_json).collect::<Vec<_>>(),
            "sweep_wall_s": sweep.then_some(sweep_took),
            "plot": plot_path.as_ref().map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print!("{}", report.table());
    if a.links {
        for p in PolicyName::ALL {
            println!();
            print!("{}", report.links_table(p));
        }
    }
    println!(
        "\nsimulated in {took:.1} s (wall) on {} cores, {} build",
        cores(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    if sweep {
        println!(
            "\nsweep (extents scaled: every chunk holds the data of the run above; racks = chunks / 4, at least 3{}; --fail {}; makespan and ratio to T_LB):",
            if a.racks.is_some() {
                ", not --racks (it applies to the run above only)"
            } else {
                ""
            },
            cfg.fail
        );
        print!("{}", sweep_table(&sweep_reports));
        for r in &sweep_reports {
            if let Some(g) = r.goal() {
                if !g.within_limit || !g.beats_peers {
                    let cairn = r.result(PolicyName::Cairn);
                    println!(
                        "  {} chunks: Cairn {:.3} x T_LB (goal {:.2}){}{}",
                        r.cfg.chunks,
                        g.ratio,
                        g.limit,
                        if g.beats_peers { "" } else { ", not better than every peer" },
                        cairn
                            .filter(|c| c.unsafe_copies > 0)
                            .map(|c| format!(
                                "; {} of its recover copies went to a rack already holding a replica and had to be migrated",
                                c.unsafe_copies
                            ))
                            .unwrap_or_default()
                    );
                }
            }
        }
        if let Some(p) = &plot_path {
            println!(
                "plot: {} (sweep simulated in {sweep_took:.1} s)",
                p.display()
            );
        }
    }
    Ok(())
}

fn policy_json(r: &Report, p: &PolicyResult) -> Value {
    json!({
        "policy": p.policy.label(),
        "settings": p.policy.settings(),
        "makespan_s": p.makespan_us.map(|m| m as f64 / 1e6),
        "ratio_to_t_lb": r.ratio_to_bound(p),
        "ratio_to_cairn": match (p.makespan_us, r.result(PolicyName::Cairn).and_then(|c| c.makespan_us)) {
            (Some(m), Some(c)) => Some(m as f64 / c.max(1) as f64),
            _ => None,
        },
        "restored_s": p.restored_us as f64 / 1e6,
        "copies_issued": p.copies_started,
        "migrations": p.migrations,
        "peak_concurrent_copies": p.peak_concurrent,
        "copies_to_less_spread_racks": p.unsafe_copies,
        "extents_left_less_spread": p.left_unsafe,
        "copies_into_slow_disks": p.copies_into_slow,
        "first_copy_s": p.first_start_us as f64 / 1e6,
        "mean_copies_in_flight": p.mean_in_flight,
        "sending_links_busy": p.send_busy,
        "last_copy_start_s": p.last_start_us as f64 / 1e6,
        "counters": p.counters.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "chunks": p.links.iter().map(|l| json!({
            "cid": l.cid,
            "slow": l.slow,
            "copies_in": l.copies_in,
            "inbound_utilisation": l.util_in,
            "outbound_utilisation": l.util_out,
            "peak_in": l.peak_in,
            "peak_out": l.peak_out,
            "last_in_s": l.last_in_us as f64 / 1e6,
        })).collect::<Vec<_>>(),
    })
}

fn report_json(r: &Report) -> Value {
    let c = &r.cfg;
    let b = &r.bound;
    let goal = r.goal();
    json!({
        "chunks": c.chunks,
        "racks": r.racks,
        "extents": c.extents,
        "failed": r.failed,
        "slow_disks": r.slow,
        "slow_factor": c.slow_factor,
        "bandwidth_mib_s": c.bandwidth_mib_s,
        "seed": c.seed,
        "lost_extents": r.lost_extents,
        "missing_replicas": r.missing_replicas,
        "unrecoverable_extents": r.unrecoverable,
        "lost_bytes": b.lost_bytes,
        "detection_s": b.detection_us as f64 / 1e6,
        "t_lb_s": b.t_lb_us as f64 / 1e6,
        "t_lb_transfer_s": b.transfer_us as f64 / 1e6,
        "spread_bound_s": b.spread_us as f64 / 1e6,
        "tight_inbound": b.tight_in,
        "tight_outbound": b.tight_out,
        "goal": goal.map(|g| json!({
            "ratio": g.ratio,
            "limit": g.limit,
            "within_limit": g.within_limit,
            "beats_peers": g.beats_peers,
        })),
        "policies": r.results.iter().map(|p| policy_json(r, p)).collect::<Vec<_>>(),
    })
}
