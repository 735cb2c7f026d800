//! The clients: concurrent processes doing linearizable reads and
//! compare-and-set writes of extents' lease owners, and now and then a
//! volume creation, each operation recorded as invoke and completion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::client::{Client, Outcome};
use super::record::Recorder;
use crate::history::{ExtentValue, Op, Type};
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub endpoints: Vec<String>,
    /// The extents the clients read and write.
    pub keys: Vec<u64>,
    /// Owners the clients may write: chunks no nemesis stops (an owner's
    /// session ending would clear it behind the clients' backs).
    pub owners: Vec<u32>,
    pub op_timeout: Duration,
    /// Pause between a client's operations, drawn in `0..=think`.
    pub think: Duration,
}

/// What a client remembers of each key from its last look.
#[derive(Clone, Copy, Default)]
struct Seen {
    generation: u64,
}

/// Runs one client until `stop` turns true; each operation is recorded.
pub async fn client(
    process: u64,
    mut rng: Rng,
    cfg: WorkloadConfig,
    rec: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) {
    let mut c = Client::new(cfg.endpoints.clone(), process as usize);
    let mut seen: BTreeMap<u64, Seen> = BTreeMap::new();
    let mut volumes = 0u64;
    while !*stop.borrow() {
        let Some(&pid) = rng.pick(&cfg.keys) else {
            return;
        };
        let deadline = Instant::now() + cfg.op_timeout;
        let roll = rng.below(100);
        if roll < 50 {
            read(&mut c, &rec, process, pid, deadline, &mut seen).await;
        } else if roll < 97 {
            let expected = match seen.get(&pid) {
                // Now and then a guess one behind: a CAS that must fail.
                Some(s) if rng.chance(0.1) => s.generation.saturating_sub(1),
                Some(s) => s.generation,
                None => 0,
            };
            let Some(&owner) = rng.pick(&cfg.owners) else {
                return;
            };
            cas(
                &mut c, &rec, process, pid, expected, owner, deadline, &mut seen,
            )
            .await;
        } else {
            volumes += 1;
            let name = format!("chaos-{process}-{volumes}");
            create_volume(&mut c, &rec, process, name, 2, deadline).await;
        }
        let think = Duration::from_millis(rng.below(cfg.think.as_millis() as u64 + 1));
        let _ = tokio::time::timeout(think, stop.changed()).await;
    }
}

async fn read(
    c: &mut Client,
    rec: &Recorder,
    process: u64,
    pid: u64,
    deadline: Instant,
    seen: &mut BTreeMap<u64, Seen>,
) -> Option<ExtentValue> {
    rec.record(process, Type::Invoke, Op::Read { pid, value: None }, None);
    match c.read(pid, deadline).await {
        Outcome::Ok(v) => {
            seen.insert(
                pid,
                Seen {
                    generation: v.generation,
                },
            );
            rec.record(
                process,
                Type::Ok,
                Op::Read {
                    pid,
                    value: Some(v),
                },
                None,
            );
            Some(v)
        }
        // A read changes nothing: any failure is a plain `fail`.
        Outcome::Fail { why, .. } | Outcome::Info(why) => {
            rec.record(
                process,
                Type::Fail,
                Op::Read { pid, value: None },
                Some(why),
            );
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn cas(
    c: &mut Client,
    rec: &Recorder,
    process: u64,
    pid: u64,
    expected_generation: u64,
    owner: u32,
    deadline: Instant,
    seen: &mut BTreeMap<u64, Seen>,
) {
    let op = |generation| Op::Cas {
        pid,
        expected_generation,
        owner,
        generation,
    };
    rec.record(process, Type::Invoke, op(None), None);
    match c.cas(pid, expected_generation, owner, deadline).await {
        Outcome::Ok(g) => {
            seen.insert(pid, Seen { generation: g });
            rec.record(process, Type::Ok, op(Some(g)), None);
        }
        Outcome::Fail { why, generation } => {
            if let Some(g) = generation {
                seen.insert(pid, Seen { generation: g });
            }
            rec.record(process, Type::Fail, op(generation), Some(why));
        }
        Outcome::Info(why) => {
            seen.remove(&pid);
            rec.record(process, Type::Info, op(None), Some(why));
        }
    }
}

async fn create_volume(
    c: &mut Client,
    rec: &Recorder,
    process: u64,
    name: String,
    extents: u64,
    deadline: Instant,
) {
    let op = |volume_id, first_pid| Op::CreateVolume {
        name: name.clone(),
        extents,
        volume_id,
        first_pid,
    };
    rec.record(process, Type::Invoke, op(None, None), None);
    match c.create_volume(&name, extents, deadline).await {
        Outcome::Ok((v, p)) => rec.record(process, Type::Ok, op(Some(v), Some(p)), None),
        Outcome::Fail { why, .. } => rec.record(process, Type::Fail, op(None, None), Some(why)),
        Outcome::Info(why) => rec.record(process, Type::Info, op(None, None), Some(why)),
    }
}

/// After healing: one linearizable read of every key, recorded like any
/// other (they pin what the cluster ended with). Retries a failed read.
pub async fn final_reads(
    process: u64,
    endpoints: Vec<String>,
    keys: &[u64],
    rec: &Recorder,
    within: Duration,
) -> Result<(), String> {
    let mut c = Client::new(endpoints, process as usize);
    let mut seen = BTreeMap::new();
    let end = Instant::now() + within;
    for &pid in keys {
        loop {
            let deadline = (Instant::now() + Duration::from_secs(3)).min(end);
            if read(&mut c, rec, process, pid, deadline, &mut seen)
                .await
                .is_some()
            {
                break;
            }
            if Instant::now() >= end {
                return Err(format!(
                    "no final read of extent {pid} succeeded within {within:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
