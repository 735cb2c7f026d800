//! The workload: setup (chunks with sessions, one volume), concurrent
//! clients doing reads and compare-and-set writes of extents' lease owners,
//! and the final sequential read of every extent. Every operation is
//! recorded as history events (see [`crate::history`]).
//!
//! Process ids follow Jepsen: after an `Info` completion the client's
//! process is considered hung forever, so the client continues under a new
//! process id (`client + k * clients`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_state::{Cmd, CmdError, CreateVolume, Provisioning, Reply, UpdateExtent};

use super::client::{Client, ReadOutcome, Reads, WriteOutcome};
use super::runtime::{sleep, SimInstant};
use super::world::World;
use crate::history::{Op, Type};

/// Chunks registered at setup; all get a session, so all may own leases.
pub const CHUNKS: u32 = 6;
/// The sessions' lease: the node's `effective_lease_ms` once `lease_7s` is
/// active (the setup activates it, with `copy_commands`, as the upgrade
/// gate of a cluster of current members and chunks would).
pub const LEASE_MS: u64 = cairn_node::upgrade::SHORT_LEASE_MS;
/// Extents of the workload's volume.
pub const EXTENTS: u64 = 24;
/// The extents the clients write (the rest are only read at the end).
pub const HOT_KEYS: u64 = 8;
pub const SETUP_PROCESS: u64 = 1_000_000;
pub const FINAL_PROCESS: u64 = 2_000_000;
/// How long one client operation may take before it ends as Info.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// The volume the setup created.
#[derive(Clone, Copy, Debug)]
pub struct Volume {
    pub first_pid: u64,
    pub extents: u64,
}

/// Activates the current capabilities, registers the chunks with sessions,
/// then creates the volume (a history operation). Retries until done or
/// `deadline`; Err names what failed. Returns the volume and each chunk's
/// session (cid, session id).
pub async fn setup(
    world: &Arc<World>,
    client: &mut Client,
    deadline: SimInstant,
) -> Result<(Volume, Vec<(u32, u64)>), String> {
    let mut cmds: Vec<Cmd> = [cairn_capability::LEASE_7S, cairn_capability::COPY_COMMANDS]
        .into_iter()
        .map(|name| Cmd::ActivateFeature { name: name.into() })
        .collect();
    cmds.extend((0..CHUNKS).map(|i| Cmd::RegisterChunk {
        hostname: format!("host{}", i + 1),
        data_addr: String::new(),
        brick: None,
        version: "1".into(),
        capabilities: vec![],
    }));
    // As each chunk's registration would: its space, then its session.
    for cid in 1..=CHUNKS {
        cmds.push(Cmd::ReportSpace {
            cid,
            space: super::chunk::space(),
        });
        cmds.push(Cmd::OpenSession {
            cid,
            lease_ms: LEASE_MS,
        });
    }
    let sessions = loop {
        match client.write(cmds.clone(), deadline).await {
            WriteOutcome::Applied(results) => {
                if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                    return Err(format!("setup rejected: {e}"));
                }
                let opened: Vec<u64> = results
                    .iter()
                    .filter_map(|r| match r {
                        Ok(Reply::Session { session_id, .. }) => Some(*session_id),
                        _ => None,
                    })
                    .collect();
                break (1..=CHUNKS).zip(opened).collect::<Vec<(u32, u64)>>();
            }
            // Registering twice would make cids 7..: the setup runs before
            // any fault, so an unknown outcome here is itself a failure.
            WriteOutcome::Unknown(why) => return Err(format!("setup unknown: {why}")),
            WriteOutcome::NotApplied(why) if SimInstant::now() >= deadline => {
                return Err(format!("setup not applied: {why}"))
            }
            WriteOutcome::NotApplied(_) => {}
        }
    };
    let name = "vol-sim".to_string();
    let locs: Vec<Vec<u32>> = (0..EXTENTS as u32)
        .map(|i| (0..3).map(|k| (i + k) % CHUNKS + 1).collect())
        .collect();
    let create = Cmd::CreateVolume(CreateVolume {
        name: name.clone(),
        size_bytes: EXTENTS * cairn_state::EXTENT_SIZE_BYTES,
        provisioning: Provisioning::Thin,
        replicas: 3,
        prefer_cid: 0,
        even: false,
        preferred_zone: 0,
        locs,
    });
    let op = |volume_id, first_pid| Op::CreateVolume {
        name: name.clone(),
        extents: EXTENTS,
        volume_id,
        first_pid,
    };
    world.record(SETUP_PROCESS, Type::Invoke, op(None, None), None);
    match client.write(vec![create], deadline).await {
        WriteOutcome::Applied(results) => match results.first() {
            Some(Ok(Reply::Volume {
                volume_id,
                first_pid,
                extents,
            })) => {
                world.record(
                    SETUP_PROCESS,
                    Type::Ok,
                    op(Some(*volume_id), Some(*first_pid)),
                    None,
                );
                Ok((
                    Volume {
                        first_pid: *first_pid,
                        extents: *extents,
                    },
                    sessions,
                ))
            }
            other => {
                let e = format!("{other:?}");
                world.record(SETUP_PROCESS, Type::Fail, op(None, None), Some(e.clone()));
                Err(format!("create volume: {e}"))
            }
        },
        WriteOutcome::NotApplied(why) => {
            world.record(SETUP_PROCESS, Type::Fail, op(None, None), Some(why.clone()));
            Err(format!("create volume: {why}"))
        }
        WriteOutcome::Unknown(why) => {
            world.record(SETUP_PROCESS, Type::Info, op(None, None), Some(why.clone()));
            Err(format!("create volume: {why}"))
        }
    }
}

/// Counters the clients share.
#[derive(Default)]
pub struct Budget {
    pub remaining: AtomicU64,
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
}

impl Budget {
    fn take(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// One client's loop: operations until the shared budget is spent.
pub async fn client_loop(
    world: Arc<World>,
    mut client: Client,
    index: u64,
    clients: u64,
    volume: Volume,
    budget: Arc<Budget>,
) {
    let mut process = index;
    // The generation this client last saw per key (1 = a new extent's).
    let mut known = std::collections::BTreeMap::<u64, u64>::new();
    let hot = HOT_KEYS.min(volume.extents);
    while budget.take() {
        // Paced so that the nemesis's faults spread over the whole run.
        let think = client.rng().range(0, 1000);
        sleep(Duration::from_millis(think)).await;
        let pid = volume.first_pid + client.rng().below(hot);
        let deadline = SimInstant::now() + OP_TIMEOUT;
        let kind = if client.rng().chance(0.4) {
            let op = Op::Read { pid, value: None };
            world.record(process, Type::Invoke, op, None);
            match client.read(pid, deadline).await {
                ReadOutcome::Value(Some(v)) => {
                    known.insert(pid, v.generation);
                    let op = Op::Read {
                        pid,
                        value: Some(v),
                    };
                    world.record(process, Type::Ok, op, None);
                    Type::Ok
                }
                ReadOutcome::Value(None) => {
                    let op = Op::Read { pid, value: None };
                    world.record(process, Type::Fail, op, Some("no such extent".into()));
                    Type::Fail
                }
                ReadOutcome::Failed(why) => {
                    world.record(
                        process,
                        Type::Fail,
                        Op::Read { pid, value: None },
                        Some(why),
                    );
                    Type::Fail
                }
            }
        } else {
            let mut expected = known.get(&pid).copied().unwrap_or(1);
            if client.rng().chance(0.1) {
                expected += 1; // a CAS bound to fail (or to guess right)
            }
            let owner = client.rng().range(1, u64::from(CHUNKS)) as u32;
            let op = |generation| Op::Cas {
                pid,
                expected_generation: expected,
                owner,
                generation,
            };
            world.record(process, Type::Invoke, op(None), None);
            let cmd = Cmd::UpdateExtent(UpdateExtent {
                pid,
                expected_generation: expected,
                loc: None,
                alive_loc: None,
                lease_owner: Some(owner),
            });
            match client.write(vec![cmd], deadline).await {
                WriteOutcome::Applied(results) => match results.into_iter().next() {
                    Some(Ok(Reply::Generation(g))) => {
                        known.insert(pid, g);
                        world.record(process, Type::Ok, op(Some(g)), None);
                        world.acks.notify();
                        Type::Ok
                    }
                    Some(Err(CmdError::GenerationMismatch { actual, .. })) => {
                        known.insert(pid, actual);
                        let e = Some("generation mismatch".to_string());
                        world.record(process, Type::Fail, op(Some(actual)), e);
                        Type::Fail
                    }
                    other => {
                        let e = match other {
                            Some(Err(e)) => e.to_string(),
                            other => format!("unexpected reply {other:?}"),
                        };
                        world.record(process, Type::Fail, op(None), Some(e));
                        Type::Fail
                    }
                },
                WriteOutcome::NotApplied(why) => {
                    world.record(process, Type::Fail, op(None), Some(why));
                    Type::Fail
                }
                WriteOutcome::Unknown(why) => {
                    world.record(process, Type::Info, op(None), Some(why));
                    Type::Info
                }
            }
        };
        let counter = match kind {
            Type::Ok => &budget.ok,
            Type::Fail => &budget.fail,
            _ => &budget.info,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        if kind == Type::Info {
            process += clients;
        }
    }
}

/// Reads every extent of the volume once, in order, linearizably (retrying
/// each up to `per_key`), as history operations of [`FINAL_PROCESS`].
pub async fn final_reads(
    world: &Arc<World>,
    client: &mut Client,
    volume: Volume,
    per_key: Duration,
) {
    for pid in volume.first_pid..volume.first_pid + volume.extents {
        let deadline = SimInstant::now() + per_key;
        // A read refused while leadership settles says nothing: ask again
        // (each attempt is its own operation in the history) until one
        // answers or the key's time is up.
        loop {
            world.record(
                FINAL_PROCESS,
                Type::Invoke,
                Op::Read { pid, value: None },
                None,
            );
            match client.read_with(pid, deadline, Reads::Linearizable).await {
                ReadOutcome::Value(Some(v)) => {
                    world.record(
                        FINAL_PROCESS,
                        Type::Ok,
                        Op::Read {
                            pid,
                            value: Some(v),
                        },
                        None,
                    );
                    break;
                }
                ReadOutcome::Value(None) => {
                    world.record(
                        FINAL_PROCESS,
                        Type::Fail,
                        Op::Read { pid, value: None },
                        Some("no such extent".into()),
                    );
                    break;
                }
                ReadOutcome::Failed(why) => {
                    world.record(
                        FINAL_PROCESS,
                        Type::Fail,
                        Op::Read { pid, value: None },
                        Some(why),
                    );
                    if SimInstant::now() >= deadline {
                        break;
                    }
                    sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}
