//! What a campaign (or a simulation) records, and the files it leaves in its
//! output directory. The checker reads only these files, so a campaign's
//! directory can be checked again later, on another machine, by a newer
//! binary: every type here is plain JSON and only ever gains optional fields.
//!
//! | file | one line / document per | written by |
//! |---|---|---|
//! | `campaign.json` | the run's parameters ([`Campaign`]) | runner |
//! | `history.jsonl` | client operation event and nemesis action ([`Event`]) | workload, nemesis |
//! | `monitor.jsonl` | (member, term, leader) observation ([`Observation`]) | monitor |
//! | `fleet.jsonl` | chunk session event ([`ChunkEvent`]) | `cairn fleet --events` |
//! | `log.jsonl` | committed Raft entry of one member ([`LogRecord`]) | `cairn debug dump-log` |
//! | `final.json` | the healed cluster as every member reports it ([`Final`]) | runner |
//! | `verdict.json`, `timeline.svg` | the checker's findings | checker |

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const CAMPAIGN: &str = "campaign.json";
pub const HISTORY: &str = "history.jsonl";
pub const MONITOR: &str = "monitor.jsonl";
pub const FLEET: &str = "fleet.jsonl";
pub const LOG: &str = "log.jsonl";
pub const FINAL: &str = "final.json";
pub const VERDICT: &str = "verdict.json";
pub const TIMELINE: &str = "timeline.svg";

/// Jepsen's four event types. An operation is an `Invoke` followed by one
/// completion from the same process: `Ok` (it took effect), `Fail` (it
/// certainly did not) or `Info` (unknown: a timeout, a lost connection; it
/// may take effect at any later time, or never). A process waits for its
/// completion before it invokes again.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Type {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// An extent as a client sees it: the generation and the lease owner (the
/// field the workload writes; see [`Op::Cas`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExtentValue {
    pub generation: u64,
    pub owner: u32,
}

/// One operation, as invoked and (with its result fields filled) as completed.
///
/// The workload's register is the `lease_owner` of an extent, written with
/// `UpdateExtent` compare-and-set on `generation`. The schedulers and
/// session expiry run underneath and may bump the generation at any time
/// (a finished copy, a replica marked dead); they change the owner only when
/// the owner's session ends, which the workload avoids by choosing owners
/// among chunks no nemesis touches. The checker's model says exactly this.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Op {
    /// Linearizable read of one extent. `Ok` carries `value`.
    Read {
        pid: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<ExtentValue>,
    },
    /// `UpdateExtent { pid, expected_generation, lease_owner: Some(owner) }`.
    /// `Ok` carries the extent's generation after the update (equal to
    /// `expected_generation` when the owner already was `owner`: a no-op);
    /// `Fail` because the generation moved carries the generation the state
    /// machine saw in `generation`.
    Cas {
        pid: u64,
        expected_generation: u64,
        owner: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
    },
    /// `CreateVolume`. `Ok` carries the first pid; acknowledged volumes must
    /// exist at the end with every extent.
    CreateVolume {
        name: String,
        extents: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        volume_id: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_pid: Option<u64>,
    },
    /// A fault injected or healed. `Invoke` when it starts, `Info` when it
    /// is in place (or failed to be, with `error`), with what was done in
    /// `detail`. `action` is the nemesis's name (`kill`, `partition`, ...)
    /// and its heal is `heal-<name>`; `heal-all` heals everything at the
    /// end. `targets` are member ids (cids for `chunk`).
    Nemesis {
        action: String,
        #[serde(default)]
        targets: Vec<u64>,
        #[serde(default)]
        detail: String,
    },
}

impl Op {
    /// The key a per-key checker groups by: the extent's pid.
    pub fn key(&self) -> Option<u64> {
        match self {
            Op::Read { pid, .. } | Op::Cas { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

/// The process id every nemesis event uses.
pub const NEMESIS_PROCESS: u64 = u64::MAX;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the history (0, 1, 2, ...).
    pub index: u64,
    /// Nanoseconds since the campaign started, on one monotonic clock.
    pub time_ns: u64,
    /// The client (or [`NEMESIS_PROCESS`]).
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: Type,
    #[serde(flatten)]
    pub op: Op,
    /// Why a `Fail` or `Info` completion ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A member's view at one moment: its term and the leader it knows (0 =
/// none). Two members naming different leaders for one term is a violation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub time_ns: u64,
    pub node_id: u64,
    pub term: u64,
    pub leader_id: u64,
}

/// A chunk session event as the fleet saw it (`cairn fleet --events`).
/// `lost` means the leader answered that the session is over (NOT_FOUND):
/// for a chunk the nemesis never stopped, that is a violation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChunkEvent {
    /// Wall-clock milliseconds (the fleet's own clock, never skewed).
    pub wall_ms: u64,
    pub cid: u32,
    /// `opened` | `lost` | `stopped` | `started`.
    pub event: String,
    #[serde(default)]
    pub session_id: u64,
    /// Wall-clock ms of the session's last acknowledged keepalive, on `lost`.
    #[serde(default)]
    pub last_ack_ms: u64,
}

/// One committed entry of a member's Raft log, dumped after the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub index: u64,
    pub term: u64,
    /// The node id in the entry's leader id (openraft identifies a leader
    /// by term and node id).
    #[serde(default)]
    pub leader: u64,
    /// `blank` | `membership` | `normal`.
    pub payload: String,
    #[serde(default)]
    pub leader_time_ms: u64,
    /// The entry's commands (`normal` only), as `cairn_state::Cmd` in JSON.
    #[serde(default)]
    pub cmds: Vec<cairn_state::Cmd>,
}

/// The healed cluster, read after the last fault was repaired and the
/// cluster converged (or the deadline for it passed).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Final {
    /// Whether every member reached the same applied index in time.
    pub converged: bool,
    pub members: Vec<FinalMember>,
    /// Every extent as the leader reports it.
    pub extents: Vec<FinalExtent>,
    /// Every volume (id, name) as the leader reports it.
    pub volumes: Vec<(u64, String)>,
    /// The first log index the dumped log holds (1 when nothing was purged).
    pub log_first_index: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FinalMember {
    pub node_id: u64,
    pub term: u64,
    pub applied_index: u64,
    pub digest: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FinalExtent {
    pub pid: u64,
    pub volume_id: u64,
    /// The volume's replica count.
    pub replicas: u32,
    pub loc: Vec<u32>,
    pub alive_loc: Vec<u32>,
    pub generation: u64,
    pub owner: u32,
}

/// The parameters of a run: enough to repeat it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Campaign {
    /// `run` (real processes) or `sim`.
    pub mode: String,
    pub seed: u64,
    pub nodes: u32,
    pub chunks: u32,
    pub nemeses: Vec<String>,
    pub duration_ms: u64,
    /// The session lease the cluster ran with.
    pub lease_ms: u64,
    /// Chunks the nemeses may stop: every other chunk must keep its session.
    #[serde(default)]
    pub faulty_cids: Vec<u32>,
    /// A deliberately broken build (`--bug`), for the harness's own tests.
    #[serde(default)]
    pub bug: Option<String>,
    #[serde(default)]
    pub started_wall_ms: u64,
}

#[derive(thiserror::Error, Debug)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Appends JSON lines to a file, flushing each (a campaign killed midway
/// leaves every line it recorded).
pub struct JsonlWriter {
    path: String,
    out: BufWriter<std::fs::File>,
}

impl JsonlWriter {
    pub fn create(path: &Path) -> Result<JsonlWriter, FileError> {
        let f = std::fs::File::create(path).map_err(|source| FileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(JsonlWriter {
            path: path.display().to_string(),
            out: BufWriter::new(f),
        })
    }

    pub fn write<T: Serialize>(&mut self, v: &T) -> Result<(), FileError> {
        let io = |source| FileError::Io {
            path: self.path.clone(),
            source,
        };
        let line = serde_json::to_string(v).map_err(|e| io(std::io::Error::other(e)))?;
        self.out.write_all(line.as_bytes()).map_err(io)?;
        self.out.write_all(b"\n").map_err(io)?;
        self.out.flush().map_err(io)
    }
}

/// Reads a JSON-lines file. A missing file is an error; blank lines are skipped.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, FileError> {
    let name = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| FileError::Io {
        path: name.clone(),
        source,
    })?;
    let mut out = vec![];
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| FileError::Io {
            path: name.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| FileError::Parse {
            path: name.clone(),
            line: i + 1,
            reason: e.to_string(),
        })?);
    }
    Ok(out)
}

/// Reads a JSON document.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, FileError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| FileError::Io {
        path: name.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| FileError::Parse {
        path: name,
        line: 0,
        reason: e.to_string(),
    })
}

/// Writes a JSON document (pretty, for people).
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), FileError> {
    let io = |source| FileError::Io {
        path: path.display().to_string(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| io(std::io::Error::other(e)))?;
    std::fs::write(path, bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_flat_jepsen_style_json() {
        let e = Event {
            index: 7,
            time_ns: 1_000,
            process: 3,
            kind: Type::Ok,
            op: Op::Cas {
                pid: 42,
                expected_generation: 5,
                owner: 2,
                generation: Some(6),
            },
            error: None,
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"index":7,"time_ns":1000,"process":3,"type":"ok","f":"cas","pid":42,"expected_generation":5,"owner":2,"generation":6}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), e);
    }

    #[test]
    fn jsonl_files_round_trip_and_name_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        let mut w = JsonlWriter::create(&p).unwrap();
        let o = Observation {
            time_ns: 1,
            node_id: 2,
            term: 3,
            leader_id: 2,
        };
        w.write(&o).unwrap();
        drop(w);
        assert_eq!(read_jsonl::<Observation>(&p).unwrap(), vec![o]);
        std::fs::write(&p, "{\"time_ns\":1}\n\nnot json\n").unwrap();
        let err = read_jsonl::<Observation>(&p).unwrap_err().to_string();
        assert!(err.contains("h.jsonl:1:"), "{err}");
    }
}
