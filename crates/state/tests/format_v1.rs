//! A log and a snapshot written by the first release format (v1: snapshot
//! version 1, the `Cmd` variants up to `FinishCopy`) must load under every
//! later binary: an upgraded member replays the log its predecessor wrote
//! and restores the snapshot it left. The files in `tests/data/` were
//! written once by `write_v1_golden_files` (ignored) at that format and are
//! never regenerated: if this test fails, the change broke compatibility.

use std::path::PathBuf;

use cairn_state::{
    ChunkSpaceInfo, Cmd, CopyKind, CreateVolume, EntryMeta, FinishCopy, IssueCopy, Provisioning,
    State, UpdateExtent,
};
use serde::{Deserialize, Serialize};

/// One committed entry as the golden log holds it.
#[derive(Serialize, Deserialize, Debug)]
struct GoldenEntry {
    index: u64,
    term: u64,
    leader_time_ms: u64,
    cmds: Vec<Cmd>,
}

fn data(name: &str) -> PathBuf {
    // Read at run time, not `env!`: the target directory is shared between
    // checkouts, and a test binary built in another (since removed) clone
    // would look for the golden files there.
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../tests/data")
    .join(name)
}

fn entries() -> Vec<GoldenEntry> {
    let register = |h: &str| Cmd::RegisterChunk {
        hostname: h.into(),
        data_addr: format!("{h}:7000"),
        brick: None,
        version: "1.0".into(),
        capabilities: vec![],
    };
    let mut cmds: Vec<Vec<Cmd>> = vec![
        (1..=4).map(|i| register(&format!("c{i}"))).collect(),
        (1..=4)
            .map(|cid| Cmd::OpenSession {
                cid,
                lease_ms: 14_000,
            })
            .collect(),
        vec![Cmd::ReportSpace {
            cid: 1,
            space: ChunkSpaceInfo {
                valid_data_space: 1 << 40,
                total_data_capacity: 1 << 40,
                used_data_space: 1 << 30,
                ..Default::default()
            },
        }],
        vec![Cmd::CreateVolume(CreateVolume {
            name: "v1".into(),
            size_bytes: 2 << 28,
            provisioning: Provisioning::Thin,
            replicas: 2,
            prefer_cid: 0,
            even: false,
            preferred_zone: 0,
            locs: vec![vec![1, 2], vec![2, 3]],
        })],
        vec![Cmd::UpdateExtent(UpdateExtent {
            pid: 1,
            expected_generation: 1,
            loc: None,
            alive_loc: None,
            lease_owner: Some(1),
        })],
        vec![Cmd::SetConfig {
            key: "lease_ms".into(),
            value: "14000".into(),
        }],
        vec![Cmd::ExpireSession {
            cid: 3,
            session_id: 3,
        }],
    ];
    // A copy issued and finished, another left running.
    cmds.push(vec![Cmd::IssueCopy(IssueCopy {
        term: 2,
        kind: CopyKind::Recover,
        pid: 2,
        generation: 2,
        src: 2,
        dst: 4,
        replace: 0,
        owner: 2,
        manual: false,
    })]);
    cmds.push(vec![Cmd::FinishCopy(FinishCopy {
        term: 2,
        copy_id: 1,
        update: Some(UpdateExtent {
            pid: 2,
            expected_generation: 2,
            loc: Some(vec![2, 4]),
            alive_loc: Some(vec![2, 4]),
            lease_owner: None,
        }),
    })]);
    cmds.push(vec![Cmd::IssueCopy(IssueCopy {
        term: 2,
        kind: CopyKind::Migrate,
        pid: 1,
        generation: 2,
        src: 1,
        dst: 4,
        replace: 2,
        owner: 1,
        manual: true,
    })]);
    cmds.into_iter()
        .enumerate()
        .map(|(i, cmds)| GoldenEntry {
            index: i as u64 + 1,
            term: if i < 7 { 1 } else { 2 },
            leader_time_ms: 1_700_000_000_000 + 1_000 * i as u64,
            cmds,
        })
        .collect()
}

fn replay(entries: &[GoldenEntry]) -> State {
    let mut s = State::new();
    for e in entries {
        let meta = EntryMeta {
            index: e.index,
            term: e.term,
            leader_time_ms: e.leader_time_ms,
        };
        for r in s.apply_batch(meta, &e.cmds) {
            r.unwrap_or_else(|err| panic!("entry {} rejected: {err}", e.index));
        }
    }
    s
}

#[test]
#[ignore = "writes the v1 golden files; run once, at the v1 format, never again"]
fn write_v1_golden_files() {
    let entries = entries();
    let state = replay(&entries);
    let log = bincode::serde::encode_to_vec(&entries, bincode::config::standard()).unwrap();
    std::fs::create_dir_all(data("")).unwrap();
    std::fs::write(data("v1-log.bin"), log).unwrap();
    std::fs::write(data("v1-snapshot.bin"), state.snapshot().unwrap()).unwrap();
}

#[test]
fn a_v1_log_and_snapshot_load_and_agree_under_this_binary() {
    let log = std::fs::read(data("v1-log.bin")).expect("tests/data/v1-log.bin");
    let (golden, _): (Vec<GoldenEntry>, usize) =
        bincode::serde::decode_from_slice(&log, bincode::config::standard())
            .expect("the v1 log decodes");
    // Every command decodes to what v1 wrote and re-encodes to the same bytes.
    let expected = entries();
    assert_eq!(golden.len(), expected.len());
    for (g, e) in golden.iter().zip(&expected) {
        assert_eq!(g.cmds, e.cmds, "entry {}", g.index);
    }
    let again = bincode::serde::encode_to_vec(&golden, bincode::config::standard()).unwrap();
    assert_eq!(again, log, "the v1 log re-encodes byte for byte");
    // Replaying the v1 log gives the state the v1 snapshot holds.
    let replayed = replay(&golden);
    let snap = std::fs::read(data("v1-snapshot.bin")).expect("tests/data/v1-snapshot.bin");
    let restored = State::restore(&snap).expect("the v1 snapshot restores");
    assert_eq!(restored.digest(), replayed.digest());
    restored.check_invariants().expect("invariants");
    // Spot checks of what v1 recorded.
    assert_eq!(restored.chunks().count(), 4);
    assert!(!restored.has_session(3), "chunk 3's session expired");
    let e2 = restored.extent(2).expect("extent 2");
    assert_eq!(e2.loc(), &[2, 4]);
    assert_eq!(restored.copies().count(), 1, "the migrate still runs");
    assert_eq!(restored.copy_term(), 2);
    assert_eq!(restored.last_applied().0, expected.len() as u64);
}
