//! The log format outlives binaries: a committed entry written by this
//! version must decode, byte for byte, under every later one. These golden
//! encodings freeze the bincode shape of every `Cmd` variant (its index and
//! its fields' order and types). If one fails, the change broke the log
//! format: append a new variant or struct instead (docs/state-machine.md).

use cairn_state::{
    ChunkSpaceInfo, ChunkState, Cmd, CreateVolume, Provisioning, TopoKind, UpdateExtent,
};

fn encode(cmd: &Cmd) -> String {
    let bytes = bincode::serde::encode_to_vec(cmd, bincode::config::standard()).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn samples() -> Vec<(Cmd, &'static str)> {
    vec![
        (
            Cmd::AddTopo {
                kind: TopoKind::Rack,
                parent: 2,
                name: "r1".into(),
            },
            "000202027231",
        ),
        (Cmd::MoveTopo { id: 3, parent: 4 }, "010304"),
        (
            Cmd::RenameTopo {
                id: 3,
                name: "x".into(),
            },
            "02030178",
        ),
        (Cmd::RemoveTopo { id: 300 }, "03fb2c01"),
        (
            Cmd::RegisterChunk {
                hostname: "h".into(),
                data_addr: "a:1".into(),
                brick: Some(5),
                version: "1.0".into(),
                capabilities: vec!["lease_7s".into()],
            },
            "04016803613a31010503312e3001086c656173655f3773",
        ),
        (
            Cmd::MoveChunk {
                cid: 7,
                brick: None,
            },
            "050700",
        ),
        (
            Cmd::RenameChunk {
                cid: 7,
                name: "c".into(),
            },
            "06070163",
        ),
        (
            Cmd::SetChunkState {
                cid: 7,
                state: ChunkState::Removing,
            },
            "070701",
        ),
        (
            Cmd::SetFailslow {
                cid: 7,
                failslow: true,
            },
            "080701",
        ),
        (
            Cmd::ReportSpace {
                cid: 7,
                space: ChunkSpaceInfo {
                    valid_data_space: 1,
                    used_data_space: 2,
                    provisioned_data_space: 3,
                    allocated_data_space: 4,
                    total_data_capacity: 5,
                    failure_data_space: 6,
                    valid_cache_space: 7,
                    used_cache_space: 8,
                    dirty_cache_space: 9,
                    failure_cache_space: 10,
                    total_cache_capacity: 11,
                    temporary_replica_space: 12,
                    num_rx_pids: 13,
                    num_tx_pids: 14,
                    num_reserved_pids: 1 << 40,
                },
            },
            "09070102030405060708090a0b0c0d0efd0000000000010000",
        ),
        (
            Cmd::OpenSession {
                cid: 7,
                lease_ms: 14_000,
            },
            "0a07fbb036",
        ),
        (
            Cmd::CloseSession {
                cid: 7,
                session_id: 9,
            },
            "0b0709",
        ),
        (
            Cmd::ExpireSession {
                cid: 7,
                session_id: 9,
            },
            "0c0709",
        ),
        (
            Cmd::CreateVolume(CreateVolume {
                name: "v".into(),
                size_bytes: 1 << 28,
                provisioning: Provisioning::Thick,
                replicas: 2,
                prefer_cid: 1,
                even: true,
                preferred_zone: 2,
                locs: vec![vec![1, 2]],
            }),
            "0d0176fc00000010010201010201020102",
        ),
        (Cmd::DeleteVolume { volume_id: 4 }, "0e04"),
        (
            Cmd::UpdateExtent(UpdateExtent {
                pid: 10,
                expected_generation: 3,
                loc: Some(vec![1, 2, 3]),
                alive_loc: None,
                lease_owner: Some(0),
            }),
            "0f0a030103010203000100",
        ),
        (
            Cmd::SetConfig {
                key: "lease_ms".into(),
                value: "7000".into(),
            },
            "10086c656173655f6d730437303030",
        ),
        (
            Cmd::ActivateFeature {
                name: "lease_7s".into(),
            },
            "11086c656173655f3773",
        ),
        (
            Cmd::SessionCheckpoint {
                silent: vec![cairn_state::SilentSession {
                    cid: 3,
                    session_id: 9,
                    silent_ms: 7000,
                }],
            },
            "12010309fb581b",
        ),
        (
            Cmd::IssueCopy(cairn_state::IssueCopy {
                term: 2,
                kind: cairn_state::CopyKind::Migrate,
                pid: 300,
                generation: 4,
                src: 1,
                dst: 3,
                replace: 2,
                owner: 1,
                manual: true,
            }),
            "130201fb2c01040103020101",
        ),
        (Cmd::AdoptCopies { term: 3 }, "1403"),
        (
            Cmd::FinishCopy(cairn_state::FinishCopy {
                term: 3,
                copy_id: 7,
                update: Some(UpdateExtent {
                    pid: 300,
                    expected_generation: 4,
                    loc: Some(vec![1, 3]),
                    alive_loc: None,
                    lease_owner: Some(1),
                }),
            }),
            "15030701fb2c010401020103000101",
        ),
        (
            Cmd::AdvertiseMember {
                node_id: 2,
                version: "2.0".into(),
                capabilities: vec!["lease_7s".into()],
            },
            "160203322e3001086c656173655f3773",
        ),
        (Cmd::HoldUpgrade { hold: true }, "1701"),
        (
            Cmd::AdvertiseChunk {
                cid: 5,
                version: "2.0".into(),
                capabilities: vec![],
            },
            "180503322e3000",
        ),
    ]
}

#[test]
fn every_cmd_variant_keeps_its_encoding() {
    let mut broken = vec![];
    for (cmd, golden) in samples() {
        let actual = encode(&cmd);
        if actual != golden {
            broken.push(format!("{cmd:?}\n  golden {golden}\n  actual {actual}"));
        }
    }
    assert!(
        broken.is_empty(),
        "log format changed:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_golden_encoding_decodes_back_to_its_command() {
    for (cmd, golden) in samples() {
        let bytes: Vec<u8> = (0..golden.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&golden[i..i + 2], 16).unwrap())
            .collect();
        let (decoded, used): (Cmd, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(decoded, cmd);
    }
}
