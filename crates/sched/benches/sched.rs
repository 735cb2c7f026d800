//! Recover planning benchmark (issue 6): 1M extents on 32 chunks, one chunk lost.
//!
//!   cargo bench -p cairn-sched --bench sched
//!   cargo bench -p cairn-sched --bench sched -- --extents 100000
//!
//! Prints the full planning round after the loss (target < 1 s) and an
//! incremental round after a few extents changed, which looks only at the
//! changed pids and the queue front, with the scheduler's heap bytes.

use std::time::Instant;

use cairn_sched::{Kind, SchedConfig, Scheduler};
use cairn_state::{
    ChunkSpaceInfo, Cid, Cmd, CreateVolume, Provisioning, Reply, TopoKind, EXTENT_SIZE_BYTES,
    ROOT_ID,
};

mod common;
use common::{live_bytes, Builder, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

const CHUNKS: u32 = 32;
const RACKS: u32 = 8;
const PER_VOLUME: u64 = 1_000;

/// Three chunks in three different racks, pseudo-random per pid (so the
/// replicas of a lost chunk's extents are spread over every other chunk).
fn loc_for(pid: u64) -> Vec<Cid> {
    let mut x = pid.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let per_rack = u64::from(CHUNKS / RACKS);
    let mut racks: Vec<u64> = vec![];
    while racks.len() < 3 {
        let r = next() % u64::from(RACKS);
        if !racks.contains(&r) {
            racks.push(r);
        }
    }
    racks
        .into_iter()
        .map(|r| (r * per_rack + next() % per_rack) as Cid + 1)
        .collect()
}

fn build(extents: u64) -> Builder {
    let mut b = Builder::new();
    let zone = b.id(Cmd::AddTopo {
        kind: TopoKind::Zone,
        parent: ROOT_ID,
        name: "z".into(),
    });
    let per_rack = CHUNKS / RACKS;
    for r in 0..RACKS {
        let rack = b.id(Cmd::AddTopo {
            kind: TopoKind::Rack,
            parent: zone,
            name: format!("r{r}"),
        });
        for k in 0..per_rack {
            let brick = b.id(Cmd::AddTopo {
                kind: TopoKind::Brick,
                parent: rack,
                name: format!("r{r}b{k}"),
            });
            let Reply::Cid(cid) = b.apply(&Cmd::RegisterChunk {
                hostname: format!("h{r}-{k}"),
                data_addr: String::new(),
                brick: Some(brick),
                version: "1".into(),
                capabilities: vec![],
            }) else {
                unreachable!()
            };
            let tib = 1u64 << 40;
            b.apply(&Cmd::ReportSpace {
                cid,
                space: ChunkSpaceInfo {
                    valid_data_space: 100 * tib,
                    total_data_capacity: 100 * tib,
                    provisioned_data_space: extents * 3 * EXTENT_SIZE_BYTES / u64::from(CHUNKS),
                    ..Default::default()
                },
            });
            b.apply(&Cmd::OpenSession {
                cid,
                lease_ms: 14_000,
            });
        }
    }
    let mut pid = 1;
    let mut v = 0;
    while pid <= extents {
        let n = PER_VOLUME.min(extents - pid + 1);
        b.apply(&Cmd::CreateVolume(CreateVolume {
            name: format!("v{v}"),
            size_bytes: n * EXTENT_SIZE_BYTES,
            provisioning: Provisioning::Thin,
            replicas: 3,
            prefer_cid: 0,
            even: false,
            preferred_zone: 0,
            locs: (pid..pid + n).map(loc_for).collect(),
        }));
        pid += n;
        v += 1;
    }
    b
}

fn main() {
    let mut extents = 1_000_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--extents" => extents = args.next().and_then(|v| v.parse().ok()).unwrap_or(extents),
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    println!("cairn sched benchmark: {CHUNKS} chunks in {RACKS} racks, {extents} extents x 3 replicas, 1 thread");
    let mut b = build(extents);
    let lost = 1;
    let session_id = b.state.session(lost).map(|s| s.session_id).unwrap_or(0);
    let expire = Cmd::ExpireSession {
        cid: lost,
        session_id,
    };
    b.apply(&expire);
    let degraded = b
        .state
        .extents()
        .filter(|e| e.extent.loc.alive_count() < 3)
        .count();

    let before = live_bytes();
    let mut s = match Scheduler::new(SchedConfig::default()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    s.observe(&expire);
    let t = Instant::now();
    let full = s.plan_recover(&b.state, 0);
    let full_s = t.elapsed().as_secs_f64();
    let sched_bytes = live_bytes().saturating_sub(before);
    println!(
        "full recover plan {:>10.1} ms   {} degraded extents scanned and queued, {} commands issued (slots), queue {}   target < 1000 ms: {}",
        full_s * 1e3,
        degraded,
        full.issued.len(),
        s.queue(Kind::Recover).len(),
        if full_s < 1.0 { "meets target" } else { "MISSES target" }
    );
    println!(
        "scheduler memory  {:>10.1} B per queued extent ({} bytes)",
        sched_bytes as f64 / degraded.max(1) as f64,
        sched_bytes
    );

    // A few commands finish: their extents change and their slots free up.
    let mut times = vec![];
    let mut examined = 0;
    let mut issued = 0;
    let mut pending = full.issued.clone();
    for round in 1..=20u64 {
        let done: Vec<_> = pending.drain(..pending.len().min(8)).collect();
        for cmd in &done {
            let Some(e) = b.state.extent(cmd.pid) else {
                continue;
            };
            let Ok(u) = cmd.completion(e.extent) else {
                continue;
            };
            let c = Cmd::UpdateExtent(u);
            b.apply(&c);
            s.observe(&c);
            let _ = s.complete(cmd.pid, cmd.id, round);
        }
        let t = Instant::now();
        let r = s.plan_recover(&b.state, round);
        times.push(t.elapsed().as_secs_f64());
        examined += r.examined + r.walked;
        issued += r.issued.len();
        pending.extend(r.issued);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "incremental plan  {:>10.3} ms median over 20 rounds (8 completions each): {:.1} extents looked at and {:.1} issued per round, vs {} in the full plan",
        median * 1e3,
        examined as f64 / 20.0,
        issued as f64 / 20.0,
        full.examined
    );
}
