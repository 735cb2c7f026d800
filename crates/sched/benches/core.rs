//! Core benchmark: prints the figures the README's performance section quotes.
//!
//!   cargo bench -p cairn-sched --bench core            # 1M extents (the target size)
//!   cargo bench -p cairn-sched --bench core -- --extents 100000
//!
//! Figures (targets from the core issue):
//! - applies/s of extent-location CAS updates on one core  (>= 1,000,000)
//! - bytes of state per extent at 1M extents, measured     (<= 100 B)
//! - placement time for one extent on 1,000 chunks         (< 50 µs)
//!
//! Each figure is printed beside a baseline measured in the same run: a naive
//! layout for memory (`BTreeMap<pid, record with Vec locs>`), and decode+apply
//! for the apply path, so the ratio is visible rather than claimed.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use cairn_sched::{place, PlaceRequest, View};
use cairn_state::{
    ChunkSpaceInfo, Cid, Cmd, CreateVolume, EntryMeta, Provisioning, Reply, State, TopoKind,
    UpdateExtent, EXTENT_SIZE_BYTES, ROOT_ID,
};

mod common;
use common::{live_bytes, Builder, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

const CHUNKS: u32 = 1_000;
const EXTENTS_PER_VOLUME: u64 = 1_000;

/// 1,000 chunks in 1 zone x 10 racks x 10 bricks, all with sessions and space.
fn cluster() -> Builder {
    let mut b = Builder::new();
    let mut bricks = vec![];
    for z in 0..1 {
        let zone = b.id(Cmd::AddTopo {
            kind: TopoKind::Zone,
            parent: ROOT_ID,
            name: format!("z{z}"),
        });
        for r in 0..10 {
            let rack = b.id(Cmd::AddTopo {
                kind: TopoKind::Rack,
                parent: zone,
                name: format!("z{z}r{r}"),
            });
            for k in 0..10 {
                let brick = b.id(Cmd::AddTopo {
                    kind: TopoKind::Brick,
                    parent: rack,
                    name: format!("z{z}r{r}b{k}"),
                });
                bricks.push(brick);
            }
        }
    }
    for i in 0..CHUNKS {
        let Reply::Cid(cid) = b.apply(&Cmd::RegisterChunk {
            hostname: format!("host{i}"),
            data_addr: format!("10.0.{}.{}:10200", i / 250, i % 250),
            brick: Some(bricks[i as usize % bricks.len()]),
            version: "0.1.0".into(),
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
                provisioned_data_space: u64::from(i % 97) * tib / 4,
                ..Default::default()
            },
        });
        b.apply(&Cmd::OpenSession {
            cid,
            lease_ms: 14_000,
        });
    }
    b
}

fn loc_for(pid: u64) -> Vec<Cid> {
    let first = (pid * 7) % u64::from(CHUNKS);
    (0..3)
        .map(|k| ((first + k * 333) % u64::from(CHUNKS)) as Cid + 1)
        .collect()
}

/// Creates `extents` extents in volumes of 1,000 and returns the heap bytes they added.
fn fill(b: &mut Builder, extents: u64) -> usize {
    let before = live_bytes();
    let mut pid = 0;
    let mut v = 0;
    while pid < extents {
        let n = EXTENTS_PER_VOLUME.min(extents - pid);
        let cmd = Cmd::CreateVolume(CreateVolume {
            name: format!("vol{v}"),
            size_bytes: n * EXTENT_SIZE_BYTES,
            provisioning: Provisioning::Thin,
            replicas: 3,
            prefer_cid: 0,
            even: false,
            preferred_zone: 0,
            locs: (pid + 1..=pid + n).map(loc_for).collect(), // pids start at 1
        });
        b.apply(&cmd);
        drop(cmd);
        pid += n;
        v += 1;
    }
    live_bytes() - before
}

/// The naive layout the compact one is measured against.
#[allow(dead_code)]
struct NaiveExtent {
    volume: u64,
    loc: Vec<Cid>,
    alive_loc: Vec<Cid>,
    lease_owner: Cid,
    prefer_cid: Cid,
    generation: u64,
    expected_replicas: u8,
}

fn naive_bytes(extents: u64) -> usize {
    let before = live_bytes();
    let mut m = BTreeMap::new();
    for pid in 1..=extents {
        let loc = loc_for(pid);
        m.insert(
            pid,
            NaiveExtent {
                volume: pid / EXTENTS_PER_VOLUME,
                alive_loc: loc.clone(),
                loc,
                lease_owner: 0,
                prefer_cid: 0,
                generation: 1,
                expected_replicas: 3,
            },
        );
    }
    let bytes = live_bytes() - before;
    black_box(&m);
    bytes
}

/// CAS updates that alternately drop and restore the last replica from alive_loc.
fn cas_cmds(state: &State, extents: u64, count: u64) -> Vec<Cmd> {
    let mut generation: Vec<u64> = (1..=extents)
        .map(|pid| state.extent(pid).map_or(0, |e| e.generation()))
        .collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pid = x % extents + 1;
            let g = &mut generation[(pid - 1) as usize];
            let loc = loc_for(pid);
            let alive = if *g % 2 == 1 { loc[..2].to_vec() } else { loc };
            let cmd = Cmd::UpdateExtent(UpdateExtent {
                pid,
                expected_generation: *g,
                loc: None,
                alive_loc: Some(alive),
                lease_owner: None,
            });
            *g += 1;
            cmd
        })
        .collect()
}

fn run_cas(b: &mut Builder, cmds: &[Cmd]) -> f64 {
    let start = Instant::now();
    for cmd in cmds {
        b.index += 1;
        let meta = EntryMeta {
            index: b.index,
            term: 1,
            leader_time_ms: b.index,
        };
        if let Err(e) = b.state.apply(meta, cmd) {
            panic!("CAS rejected: {e}");
        }
    }
    cmds.len() as f64 / start.elapsed().as_secs_f64()
}

fn run_decode_cas(b: &mut Builder, entries: &[Vec<u8>]) -> f64 {
    let cfg = bincode::config::standard();
    let start = Instant::now();
    for bytes in entries {
        let (cmd, _): (Cmd, usize) = match bincode::serde::decode_from_slice(bytes, cfg) {
            Ok(x) => x,
            Err(e) => panic!("decode: {e}"),
        };
        b.index += 1;
        let meta = EntryMeta {
            index: b.index,
            term: 1,
            leader_time_ms: b.index,
        };
        if let Err(e) = b.state.apply(meta, &cmd) {
            panic!("CAS rejected: {e}");
        }
    }
    entries.len() as f64 / start.elapsed().as_secs_f64()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets target"
    } else {
        "MISSES target"
    }
}

fn main() {
    let mut extents = 1_000_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--extents" => extents = args.next().and_then(|v| v.parse().ok()).unwrap_or(extents),
            "--bench" => {} // passed by `cargo bench`
            other => eprintln!("ignoring argument {other}"),
        }
    }
    println!("cairn core benchmark: {CHUNKS} chunks, {extents} extents, 1 thread");

    let mut b = cluster();
    let t = Instant::now();
    let bytes = fill(&mut b, extents);
    let fill_s = t.elapsed().as_secs_f64();
    let per_extent = bytes as f64 / extents as f64;
    let naive = naive_bytes(extents) as f64 / extents as f64;
    println!(
        "state memory      {per_extent:>12.1} B/extent   naive BTreeMap+Vec layout {naive:.1} B/extent (ratio {:.2}x)   target <= 100 B: {}",
        naive / per_extent,
        verdict(per_extent <= 100.0)
    );
    println!(
        "create volumes    {:>12.0} extents/s (apply of CreateVolume, 1,000 extents each)",
        extents as f64 / fill_s
    );

    let n = extents.clamp(100_000, 2_000_000);
    let cmds = cas_cmds(&b.state, extents, n);
    let cas = run_cas(&mut b, &cmds);
    let entries: Vec<Vec<u8>> = cas_cmds(&b.state, extents, n)
        .iter()
        .map(
            |c| match bincode::serde::encode_to_vec(c, bincode::config::standard()) {
                Ok(v) => v,
                Err(e) => panic!("encode: {e}"),
            },
        )
        .collect();
    let decode_cas = run_decode_cas(&mut b, &entries);
    println!(
        "extent CAS apply  {cas:>12.0} applies/s    with bincode decode of each entry {decode_cas:.0}/s (ratio {:.2}x)   target >= 1,000,000/s: {}",
        cas / decode_cas,
        verdict(cas >= 1_000_000.0)
    );

    let req = PlaceRequest::new(3);
    let iters = 20_000u32;
    let view = View::new(&b.state);
    let t = Instant::now();
    for _ in 0..iters {
        black_box(place(&view, black_box(&req)).ok());
    }
    let place_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
    let t = Instant::now();
    for _ in 0..iters {
        black_box(place(&View::new(&b.state), black_box(&req)).ok());
    }
    let place_fresh_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
    let stretched = b.state.zones().count() == 2;
    println!(
        "placement         {place_us:>12.1} µs/extent   with a fresh View per call {place_fresh_us:.1} µs ({CHUNKS} chunks, 3 replicas{})   target < 50 µs: {}",
        if stretched { ", stretched" } else { "" },
        verdict(place_us.max(place_fresh_us) < 50.0)
    );

    let t = Instant::now();
    let snap = match b.state.snapshot() {
        Ok(s) => s,
        Err(e) => panic!("snapshot: {e}"),
    };
    let snap_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let restored = match State::restore(&snap) {
        Ok(s) => s,
        Err(e) => panic!("restore: {e}"),
    };
    let restore_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let same = restored.digest() == b.state.digest();
    let digest_s = t.elapsed().as_secs_f64() / 2.0;
    println!(
        "snapshot          {:>12.1} B/extent   write {:.0} ms, restore+check {:.0} ms, digest {:.0} ms, digest equal after restore: {same}",
        snap.len() as f64 / extents as f64,
        snap_s * 1e3,
        restore_s * 1e3,
        digest_s * 1e3
    );
}
