//! `cairn sched ...` and the operator commands of `cairn extent`: the
//! leader's recover / migrate schedulers, seen and steered from the CLI.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cairn_node::client::MetaClient;
use cairn_node::types::pb;
use cairn_node::views;
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use crate::cli::table;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Which {
    Recover,
    Migrate,
}

impl Which {
    fn key(self) -> &'static str {
        match self {
            Which::Recover => "recover_paused",
            Which::Migrate => "migrate_paused",
        }
    }
}

#[derive(Subcommand)]
pub enum SchedCmd {
    /// Queues, running copies with progress and ETA, slot use per chunk, and
    /// how many extents lack replicas.
    Status,
    /// A live progress bar of the copies until nothing is left to do.
    ///
    ///   cairn sched watch
    ///   cairn sched watch --wait 60s   # first wait up to 60 s for work to start
    Watch {
        /// Wait this long for work to appear before deciding there is none
        /// (e.g. while a stopped chunk's lease runs out).
        #[arg(long, default_value = "0s", value_parser = crate::parse_duration)]
        wait: Duration,
    },
    /// Stop issuing new recover or migrate copies (running ones finish).
    /// Replicated: every future leader stays paused until `resume`.
    Pause { which: Which },
    /// Issue recover or migrate copies again.
    Resume { which: Which },
    /// For one extent: the command it would get now (src, dst, owner,
    /// replace) and, for every candidate chunk, the filter that kept or
    /// rejected it and its score.
    ///
    ///   cairn sched explain 42
    Explain { pid: u64 },
}

fn on_off(paused: bool) -> &'static str {
    if paused {
        "PAUSED"
    } else {
        "on"
    }
}

fn print_status(s: &pb::SchedStatusResponse) {
    println!(
        "leader {} (term {}): recover {}, migrate {}",
        s.leader_id,
        s.term,
        on_off(s.recover_paused),
        on_off(s.migrate_paused)
    );
    println!(
        "extents {}: {} missing a replica, {} with none alive",
        s.extents, s.degraded, s.lost
    );
    println!(
        "queued: recover {}, migrate {}; parked (no dst or owner yet) {}; since this leader took office: {} finished, {} failed",
        s.recover_queued, s.migrate_queued, s.parked, s.finished, s.failed
    );
    println!();
    if s.running.is_empty() {
        println!("no copies running");
    } else {
        println!("running copies ({}):", s.running.len());
        table(
            &views::sched_running_rows(s),
            &[
                "id", "kind", "pid", "src", "dst", "replace", "owner", "mode", "elapsed",
                "progress", "eta",
            ],
        );
    }
    let recent = views::sched_recent_rows(s);
    if !recent.is_empty() {
        println!();
        println!("last ended (newest first):");
        table(
            &recent.into_iter().take(5).collect::<Vec<_>>(),
            &["id", "kind", "pid", "src", "dst", "mode", "result", "took"],
        );
    }
    println!();
    let slots = views::sched_slot_rows(s);
    let idle = s.slots.len() - slots.len();
    if slots.is_empty() {
        println!("slots: all {} chunks idle", s.slots.len());
    } else {
        println!("slots in use (used/limit; {idle} other chunks idle):");
        table(
            &slots,
            &[
                "cid",
                "recover_src",
                "recover_dst",
                "migrate_src",
                "migrate_dst",
            ],
        );
    }
}

/// Work left: extents missing a replica, plus queued or running migrations.
fn remaining(s: &pb::SchedStatusResponse) -> u64 {
    let migrating = s
        .running
        .iter()
        .filter(|r| r.kind == pb::CopyKind::Migrate as i32)
        .count() as u64;
    s.degraded + s.migrate_queued + migrating
}

fn idle(s: &pb::SchedStatusResponse) -> bool {
    remaining(s) == 0 && s.running.is_empty() && s.recover_queued == 0
}

pub async fn sched(client: &MetaClient, cmd: SchedCmd, json: bool) -> Result<()> {
    match cmd {
        SchedCmd::Status => {
            let s = client.sched_status(pb::SchedStatusRequest {}).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&views::sched_status(&s))?
                );
            } else {
                print_status(&s);
            }
            Ok(())
        }
        SchedCmd::Watch { wait } => watch(client, wait).await,
        SchedCmd::Pause { which } | SchedCmd::Resume { which } => {
            let pause = matches!(cmd, SchedCmd::Pause { .. });
            client
                .set_config(pb::SetConfigRequest {
                    key: which.key().into(),
                    value: pause.to_string(),
                })
                .await?;
            let what = format!("{which:?}").to_lowercase();
            if pause {
                println!("{what} paused: no new {what} copies (running ones finish); `cairn sched resume {what}` undoes it");
            } else {
                println!("{what} resumed");
            }
            Ok(())
        }
        SchedCmd::Explain { pid } => {
            let r = client
                .sched_explain(pb::SchedExplainRequest { pid })
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "pid": pid, "text": r.text }))?
                );
            } else {
                print!("{}", r.text);
                if !r.text.ends_with('\n') {
                    println!();
                }
            }
            Ok(())
        }
    }
}

/// How long work may sit without anything able to run before `watch`
/// gives up and says why (a round or two, plus a keepalive).
const STUCK_AFTER: Duration = Duration::from_secs(5);

/// Why nothing can progress, if so: recovery paused, or every degraded
/// extent parked (no destination or owner until the cluster changes).
fn stuck(s: &pb::SchedStatusResponse) -> Option<String> {
    if !s.running.is_empty() || s.degraded == 0 {
        return None;
    }
    if s.recover_paused {
        return Some(format!(
            "{} extents miss a replica but recover is paused: `cairn sched resume recover`",
            s.degraded
        ));
    }
    (s.recover_queued == 0 && s.migrate_queued == 0).then(|| {
        format!(
            "{} extents miss a replica and none can be copied now (no destination or owner qualifies; {} parked): `cairn sched explain <pid>` says why",
            s.degraded, s.parked
        )
    })
}

/// Polls the leader's status and draws a progress bar until nothing is left
/// to do (after waiting up to `wait` for work to show up). Fails when the
/// work cannot progress (paused, or nothing qualifies) or extents are lost.
pub async fn watch(client: &MetaClient, wait: Duration) -> Result<()> {
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let mut first: Option<Instant> = None; // when work was first seen
                                           // Copies finished since the watch began: the leader counts since it
                                           // took office, so a failover starts a new count.
    let (mut term, mut base, mut at_base, mut this_term) = (0u64, 0u64, 0u64, 0u64);
    let mut total = 0u64;
    let mut stuck_since: Option<Instant> = None;
    let mut last_line = String::new();
    let mut last_print = Instant::now() - Duration::from_secs(10);
    loop {
        let s = client.sched_status(pb::SchedStatusRequest {}).await?;
        if s.term != term {
            // A new leader counts from when it took office: during the
            // watch, all of its count is ours.
            base += this_term;
            term = s.term;
            at_base = if first.is_none() { s.finished } else { 0 };
        }
        this_term = s.finished.saturating_sub(at_base);
        if idle(&s) && first.is_none() {
            if start.elapsed() < wait {
                if !tty && last_print.elapsed() >= Duration::from_secs(5) {
                    println!("waiting for work ({} s)", start.elapsed().as_secs());
                    last_print = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            return finish(&s, 0, 0.0);
        }
        let t0 = *first.get_or_insert_with(Instant::now);
        let done = base + this_term;
        total = total
            .max(done + remaining(&s))
            .max(done + s.running.len() as u64);
        let elapsed = t0.elapsed().as_secs_f64();
        let rate = if elapsed > 0.5 {
            done as f64 / elapsed
        } else {
            0.0
        };
        let left = total.saturating_sub(done);
        let eta = if rate > 0.0 && left > 0 {
            format!("ETA {:.0}s", left as f64 / rate)
        } else {
            String::new()
        };
        let width = 30usize;
        let filled = if total == 0 {
            width
        } else {
            (done as usize * width) / total as usize
        };
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            "-".repeat(width - filled.min(width))
        );
        let line = format!(
            "[{bar}] {done}/{total} copies, {} running, {} queued, {} extents missing a replica {eta}",
            s.running.len(),
            s.recover_queued + s.migrate_queued,
            s.degraded
        );
        if tty {
            print!("\r{line:<110}");
            let _ = std::io::stdout().flush();
        } else if line != last_line && last_print.elapsed() >= Duration::from_secs(1) {
            println!("{line}");
            last_print = Instant::now();
        }
        last_line = line;
        if idle(&s) {
            if tty {
                println!();
            }
            return finish(&s, done, elapsed);
        }
        match stuck(&s) {
            Some(why) if stuck_since.is_some_and(|t| t.elapsed() >= STUCK_AFTER) => {
                if tty {
                    println!();
                }
                bail!("{why}");
            }
            Some(_) => {
                stuck_since.get_or_insert_with(Instant::now);
            }
            None => stuck_since = None,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn finish(s: &pb::SchedStatusResponse, done: u64, elapsed: f64) -> Result<()> {
    if s.lost > 0 {
        bail!(
            "{done} copies in {elapsed:.1} s; {} extents have no alive replica left: they need one of their chunks back",
            s.lost
        );
    }
    if done == 0 {
        println!("nothing to do: every extent has its replicas and no copy runs");
    } else {
        println!(
            "done: {done} copies in {elapsed:.1} s; every extent has its replicas ({} failed copies were re-planned)",
            s.failed
        );
    }
    Ok(())
}

fn parse_copy(r: &pb::ManualCopyResponse, json: bool) -> Result<()> {
    let v = json!({
        "pid": r.pid, "loc": r.loc, "alive_loc": r.alive_loc, "src": r.src, "dst": r.dst,
        "replace": r.replace, "owner": r.owner, "mode": r.mode,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        table(
            &[v],
            &[
                "pid",
                "loc",
                "alive_loc",
                "src",
                "dst",
                "replace",
                "owner",
                "mode",
            ],
        );
        println!("queued at the front; `cairn sched watch` follows it");
    }
    Ok(())
}

pub async fn manual(
    client: &MetaClient,
    kind: pb::CopyKind,
    pid: u64,
    src: u32,
    dst: u32,
    replace: u32,
    json: bool,
) -> Result<()> {
    let r = client
        .manual_copy(pb::ManualCopyRequest {
            kind: kind as i32,
            pid,
            src,
            dst,
            replace,
        })
        .await
        .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
    parse_copy(&r, json)
}

pub async fn gather(
    client: &MetaClient,
    volume: Option<u64>,
    pid: Option<u64>,
    cid: u32,
    json: bool,
) -> Result<()> {
    let (volume_id, pid) = match (volume, pid) {
        (Some(v), None) => (v, 0),
        (None, Some(p)) => (0, p),
        _ => bail!("give exactly one of --volume and --pid"),
    };
    let r = client
        .gather(pb::GatherRequest {
            volume_id,
            pid,
            cid,
        })
        .await
        .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "queued": r.queued, "already_there": r.already_there, "busy": r.busy,
                "impossible": r.impossible, "left_for_capacity": r.left_for_capacity,
            }))?
        );
    } else {
        println!(
            "gather onto chunk {cid}: {} copies queued at the front, {} extents already there, {} busy (a command runs or is queued), {} impossible (no alive source or owner), {} left out so the chunk stays below ultra-high load",
            r.queued, r.already_there, r.busy, r.impossible, r.left_for_capacity
        );
    }
    Ok(())
}
