//! Fuzz targets for every decoder of bytes that come from a disk or a
//! peer: a log entry, a snapshot file (and the body behind its checksum),
//! the state inside it, each Raft message, a proposal's commands, and the
//! session wire's frames. Property: an error or a value, never a panic;
//! what decodes is applied where it would be (commands to a state), and
//! that must not panic either.

use std::collections::BTreeMap;

use cairn_node::store::{log, sm};
use cairn_node::types::{self, pb, Entry, NodeId, Request, SnapshotMeta, TypeConfig};
use cairn_state::{
    ChunkSpaceInfo, Cmd, CreateVolume, EntryMeta, Provisioning, State, TopoKind, UpdateExtent,
    ROOT_ID,
};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, Vote};

use super::mutate;
use crate::rng::Rng;

/// A decoder target: its valid inputs, and what it does with one input
/// (true: decoded and used; false: refused with an error).
pub struct Decoder {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    pub max_len: usize,
    pub run: fn(&[u8]) -> bool,
}

fn meta(index: u64) -> EntryMeta {
    EntryMeta {
        index,
        term: 1,
        leader_time_ms: 1_700_000_000_000,
    }
}

/// Commands that build a small cluster from nothing: topology, chunks
/// with sessions, a volume, an extent update, configuration.
fn scenario() -> Vec<Cmd> {
    let mut cmds = vec![
        Cmd::AddTopo {
            kind: TopoKind::Zone,
            parent: ROOT_ID,
            name: "z1".into(),
        },
        Cmd::SetConfig {
            key: "recover_paused".into(),
            value: "true".into(),
        },
    ];
    for i in 1..=4u32 {
        cmds.push(Cmd::RegisterChunk {
            hostname: format!("cs-{i}"),
            data_addr: format!("10.0.0.{i}:7600"),
            brick: None,
            version: cairn_capability::CURRENT_VERSION.into(),
            capabilities: vec![],
        });
        cmds.push(Cmd::OpenSession {
            cid: i,
            lease_ms: 7_000,
        });
        cmds.push(Cmd::ReportSpace {
            cid: i,
            space: ChunkSpaceInfo {
                valid_data_space: 1 << 40,
                total_data_capacity: 1 << 40,
                ..Default::default()
            },
        });
    }
    cmds.push(Cmd::CreateVolume(CreateVolume {
        name: "v1".into(),
        size_bytes: 3 * cairn_state::EXTENT_SIZE_BYTES,
        provisioning: Provisioning::Thin,
        replicas: 3,
        prefer_cid: 0,
        even: false,
        preferred_zone: 0,
        locs: vec![vec![1, 2, 3], vec![2, 3, 4], vec![1, 3, 4]],
    }));
    cmds.push(Cmd::UpdateExtent(UpdateExtent {
        pid: 1,
        expected_generation: 0,
        loc: Some(vec![1, 2, 4]),
        alive_loc: None,
        lease_owner: Some(1),
    }));
    cmds.push(Cmd::DeleteVolume { volume_id: 9 });
    cmds
}

/// The scenario's state.
fn scenario_state() -> State {
    let mut s = State::new();
    s.apply_batch(meta(1), &scenario());
    s
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload,
    }
}

fn membership() -> Membership<NodeId, BasicNode> {
    let nodes: BTreeMap<NodeId, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("127.0.0.1:740{id}"))))
        .collect();
    Membership::new(vec![nodes.keys().copied().collect()], nodes)
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    types::encode(v).unwrap_or_default()
}

fn entries() -> Vec<Entry> {
    vec![
        entry(1, EntryPayload::Blank),
        entry(2, EntryPayload::Membership(membership())),
        entry(
            3,
            EntryPayload::Normal(Request {
                leader_time_ms: 1_700_000_000_000,
                cmds: scenario(),
            }),
        ),
    ]
}

/// Applies what a decoded entry carries to a state that has the scenario
/// (the commands' validation is part of what is fuzzed).
fn apply_entry(e: &Entry) {
    if let EntryPayload::Normal(r) = &e.payload {
        let mut s = scenario_state();
        s.apply_batch(meta(e.log_id.index.max(2)), &r.cmds);
    }
}

fn snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(1, 3)),
        last_membership: openraft::StoredMembership::new(Some(log_id(1, 2)), membership()),
        snapshot_id: "1-3".into(),
    }
}

fn snapshot_file() -> Vec<u8> {
    sm::encode_snapshot_file(&snapshot_meta(), &scenario_state()).unwrap_or_default()
}

/// Every decoder target, with its seeds.
pub fn decoders() -> Vec<Decoder> {
    let entries = entries();
    let file = snapshot_file();
    // The body behind the file's 28-byte header.
    let body = file.get(28..).unwrap_or_default().to_vec();
    let state = scenario_state().snapshot().unwrap_or_default();
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(1, 1),
        prev_log_id: Some(log_id(1, 1)),
        entries: entries.clone(),
        leader_commit: Some(log_id(1, 2)),
    };
    let vote = VoteRequest::<NodeId> {
        vote: Vote::new(2, 3),
        last_log_id: Some(log_id(1, 3)),
    };
    let install = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(1, 1),
        meta: snapshot_meta(),
        offset: 0,
        data: body.clone(),
        done: true,
    };
    let mut frames = vec![];
    for cid in 1..=3 {
        cairn_node::session_wire::encode_frame(
            &pb::WireKeepAlive {
                seq: u64::from(cid),
                keepalive: Some(pb::KeepAliveRequest {
                    cid,
                    session_id: 7,
                    space: Some(pb::SpaceInfo {
                        valid_data_space: 1 << 40,
                        total_data_capacity: 1 << 40,
                        ..Default::default()
                    }),
                    results: vec![],
                    progress: vec![],
                }),
            },
            &mut frames,
        );
    }
    vec![
        Decoder {
            name: "log-entry",
            seeds: entries.iter().map(enc).collect(),
            max_len: 4096,
            run: |b| match log::decode_entry(3, b) {
                Ok(e) => {
                    apply_entry(&e);
                    true
                }
                Err(_) => false,
            },
        },
        Decoder {
            name: "snapshot-file",
            seeds: vec![file.clone()],
            max_len: 4096,
            run: |b| sm::decode_snapshot_file(b).is_ok(),
        },
        Decoder {
            // Behind a good checksum: what a bug (not a bit flip) could write.
            name: "snapshot-body",
            seeds: vec![body],
            max_len: 4096,
            run: |b| sm::decode_snapshot_file(&sm::seal_snapshot_body(b)).is_ok(),
        },
        Decoder {
            name: "state-snapshot",
            seeds: vec![state],
            max_len: 4096,
            run: |b| State::restore(b).is_ok(),
        },
        Decoder {
            name: "raft-append-entries",
            seeds: vec![enc(&append)],
            max_len: 4096,
            run: |b| match types::decode::<AppendEntriesRequest<TypeConfig>>(b) {
                Ok(r) => {
                    r.entries.iter().for_each(apply_entry);
                    true
                }
                Err(_) => false,
            },
        },
        Decoder {
            name: "raft-vote",
            seeds: vec![enc(&vote)],
            max_len: 256,
            run: |b| types::decode::<VoteRequest<NodeId>>(b).is_ok(),
        },
        Decoder {
            name: "raft-install-snapshot",
            seeds: vec![enc(&install)],
            max_len: 4096,
            run: |b| match types::decode::<InstallSnapshotRequest<TypeConfig>>(b) {
                Ok(r) => {
                    let _ = sm::decode_snapshot_body(&r.data);
                    true
                }
                Err(_) => false,
            },
        },
        Decoder {
            name: "propose-cmds",
            seeds: vec![enc(&scenario())],
            max_len: 4096,
            run: |b| match types::decode::<Vec<Cmd>>(b) {
                Ok(cmds) => {
                    scenario_state().apply_batch(meta(2), &cmds);
                    true
                }
                Err(_) => false,
            },
        },
        Decoder {
            name: "session-wire",
            seeds: vec![frames],
            max_len: 2048,
            run: |b| {
                let mut buf = bytes::BytesMut::from(b);
                let mut any = false;
                while let Ok(Some(m)) =
                    cairn_node::session_wire::take_frame::<pb::WireKeepAlive>(&mut buf)
                {
                    any |= m.keepalive.is_some();
                }
                any
            },
        },
    ]
}

/// One input for `d`.
pub fn input(rng: &mut Rng, d: &Decoder) -> Vec<u8> {
    mutate::input(rng, &d.seeds, d.max_len)
}
