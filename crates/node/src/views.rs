//! JSON views of the state for the `Read` RPC: what the CLI prints, computed
//! in one place so every client sees the same figures.

use cairn_state::{ChunkState, State};
use serde_json::{json, Value};

use crate::types::pb;

fn pct(ratio: Option<cairn_state::LoadRatio>) -> Value {
    ratio.map_or(Value::Null, |r| json!(r.basis_points() as f64 / 100.0))
}

fn mode(state: &State, ratio: Option<cairn_state::LoadRatio>) -> Value {
    ratio.map_or(Value::Null, |r| {
        json!(format!("{:?}", state.load_mode(r)).to_lowercase())
    })
}

/// `what`: "chunks" | "topology" | "volumes" | "volume <id>" | "extent <pid>"
/// | "copies" | "config".
pub fn read(state: &State, what: &str) -> Result<Value, String> {
    let mut words = what.split_whitespace();
    let (kind, arg) = (words.next().unwrap_or(""), words.next());
    let number = |what: &str| -> Result<u64, String> {
        arg.and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("{what} needs a numeric id, e.g. \"{what} 1\""))
    };
    Ok(match kind {
        "chunks" => {
            let cluster = state.cluster_load();
            json!({
                "cluster_load_pct": pct(cluster),
                "cluster_load_mode": mode(state, cluster),
                "chunks": state.chunks().filter(|c| c.state != ChunkState::Removed).map(|c| {
                    let load = state.chunk_load(c);
                    json!({
                        "cid": c.cid, "name": c.name, "hostname": c.hostname, "data_addr": c.data_addr,
                        "brick": c.brick, "zone": state.zone_of(c.cid),
                        "state": format!("{:?}", c.state).to_lowercase(), "failslow": c.failslow,
                        "session": state.session(c.cid).map(|s| s.session_id),
                        "alive": if state.has_session(c.cid) { "alive" } else { "expired" },
                        "load_pct": pct(load), "load_mode": mode(state, load),
                        "version": c.version, "capabilities": c.capabilities, "space": c.space,
                    })
                }).collect::<Vec<_>>(),
            })
        }
        "topology" => json!(state.topo_nodes().map(|n| json!({
            "id": n.id, "kind": format!("{:?}", n.kind).to_lowercase(), "parent": n.parent, "name": n.name,
        })).collect::<Vec<_>>()),
        "volumes" => json!(state.volumes().map(|v| json!({
            "id": v.id, "name": v.name, "size_bytes": v.size_bytes, "replicas": v.replicas,
            "provisioning": format!("{:?}", v.provisioning).to_lowercase(), "prefer_cid": v.prefer_cid,
            "even": v.even, "first_pid": v.first_pid, "extents": v.extents.len(),
        })).collect::<Vec<_>>()),
        "volume" => {
            let id = number("volume")?;
            let v = state.volume(id).ok_or_else(|| format!("volume {id} not found"))?;
            json!({
                "id": v.id, "name": v.name, "size_bytes": v.size_bytes, "replicas": v.replicas,
                "first_pid": v.first_pid,
                "extents": v.pids().filter_map(|pid| state.extent(pid)).map(|e| extent(&e)).collect::<Vec<_>>(),
            })
        }
        "extent" => {
            let pid = number("extent")?;
            extent(&state.extent(pid).ok_or_else(|| format!("extent {pid} not found"))?)
        }
        "copies" => json!({
            "copy_term": state.copy_term(),
            "copies": state.copies().map(|c| json!({
                "copy_id": c.copy_id, "term": c.term,
                "kind": format!("{:?}", c.kind).to_lowercase(), "pid": c.pid,
                "src": c.src, "dst": c.dst, "replace": c.replace, "owner": c.owner,
                "manual": c.manual, "issued_ms": c.issued_ms,
            })).collect::<Vec<_>>(),
        }),
        "config" => {
            let c = state.config();
            let mut m = serde_json::Map::new();
            for key in cairn_state::ClusterConfig::KEYS {
                if let Ok(v) = c.get(key) {
                    m.insert(key.to_string(), json!(v));
                }
            }
            Value::Object(m)
        }
        other => return Err(format!("unknown read {other:?}: chunks, topology, volumes, volume <id>, extent <pid>, copies, config")),
    })
}

fn extent(e: &cairn_state::ExtentRef<'_>) -> Value {
    json!({
        "pid": e.pid, "volume": e.volume.id, "loc": e.loc(), "alive_loc": e.alive_loc(),
        "lease_owner": e.lease_owner(), "prefer_cid": e.prefer_cid(), "generation": e.generation(),
        "expected_replicas": e.expected_replicas(),
    })
}

/// The CLI's name of a copy kind on the wire.
pub fn kind_name(k: i32) -> &'static str {
    match crate::types::pb::CopyKind::try_from(k) {
        Ok(crate::types::pb::CopyKind::Recover) => "recover",
        Ok(crate::types::pb::CopyKind::Migrate) => "migrate",
        _ => "?",
    }
}

/// A duration as the CLI prints it: `4.2s`, `3m07s`.
pub fn secs(ms: u64) -> String {
    if ms >= 60_000 {
        format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

fn progress_pct(done: u64, total: u64) -> Option<u64> {
    done.saturating_mul(100).checked_div(total)
}

/// Running copies of `sched status`: the CLI's columns (strings) and the
/// raw figures the console draws from.
pub fn sched_running_rows(s: &pb::SchedStatusResponse) -> Vec<Value> {
    s.running
        .iter()
        .map(|r| {
            let pct = progress_pct(r.done_bytes, r.total_bytes);
            json!({
                "id": r.command_id, "kind": kind_name(r.kind), "pid": r.pid,
                "src": r.src, "dst": r.dst,
                "replace": if r.replace == 0 { "-".to_string() } else { r.replace.to_string() },
                "owner": r.owner, "mode": r.mode, "term": r.term,
                "elapsed": secs(r.elapsed_ms),
                "progress": pct.map_or_else(|| "-".into(), |p| format!("{p}%")),
                "eta": if r.eta_ms == 0 { "-".to_string() } else { secs(r.eta_ms) },
                "elapsed_ms": r.elapsed_ms, "done_bytes": r.done_bytes,
                "total_bytes": r.total_bytes, "progress_pct": pct,
                "eta_ms": (r.eta_ms > 0).then_some(r.eta_ms),
            })
        })
        .collect()
}

/// Chunks with a slot in use, `used/limit` per slot kind.
pub fn sched_slot_rows(s: &pb::SchedStatusResponse) -> Vec<Value> {
    s.slots
        .iter()
        .filter(|r| r.used.iter().any(|u| *u > 0))
        .map(|r| {
            let cell = |i: usize| {
                format!(
                    "{}/{}",
                    r.used.get(i).copied().unwrap_or(0),
                    r.limit.get(i).copied().unwrap_or(0)
                )
            };
            json!({
                "cid": r.cid, "recover_src": cell(0), "recover_dst": cell(1),
                "migrate_src": cell(2), "migrate_dst": cell(3),
            })
        })
        .collect()
}

/// The last copies the leader saw end, newest first.
pub fn sched_recent_rows(s: &pb::SchedStatusResponse) -> Vec<Value> {
    s.recent
        .iter()
        .rev()
        .map(|e| {
            json!({
                "id": e.command_id, "kind": kind_name(e.kind), "pid": e.pid,
                "src": e.src, "dst": e.dst,
                "replace": if e.replace == 0 { "-".to_string() } else { e.replace.to_string() },
                "mode": e.mode, "result": if e.ok { "finished" } else { "failed" },
                "took": secs(e.ended_ms.saturating_sub(e.issued_ms)),
                "issued_ms": e.issued_ms, "ended_ms": e.ended_ms,
            })
        })
        .collect()
}

/// `cairn sched status --json`, also the console's Repairs page.
pub fn sched_status(s: &pb::SchedStatusResponse) -> Value {
    json!({
        "leader": s.leader_id, "term": s.term,
        "recover_paused": s.recover_paused, "migrate_paused": s.migrate_paused,
        "extents": s.extents, "degraded": s.degraded, "lost": s.lost,
        "recover_queued": s.recover_queued, "migrate_queued": s.migrate_queued,
        "parked": s.parked, "finished": s.finished, "failed": s.failed,
        "running": sched_running_rows(s),
        "recent": sched_recent_rows(s),
        "slots": s.slots.iter().map(|r| json!({"cid": r.cid, "used": r.used, "limit": r.limit})).collect::<Vec<_>>(),
    })
}

/// Each member's own status (`Err`: why it did not answer), by the
/// endpoint it was asked at: `cairn cluster status --json`, also the
/// console's Cluster page. Lag is the leader's view of each member.
pub fn cluster_status(rows: &[(String, Result<pb::StatusResponse, String>)]) -> Vec<Value> {
    let leader = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|s| s.leader_id == s.node_id);
    let lag = |id: u64| -> Option<u64> {
        let l = leader?;
        let m = l
            .members
            .iter()
            .find(|m| m.node_id == id && m.matched_known)?;
        Some(l.last_log_index.saturating_sub(m.matched_index))
    };
    rows.iter()
        .map(|(addr, r)| match r {
            Ok(s) => json!({
                "endpoint": addr, "cluster": format!("{:016x}", s.cluster_id),
                "id": s.node_id, "role": member_role(s), "term": s.term,
                "leader": s.leader_id, "last_log": s.last_log_index, "applied": s.applied_index,
                "lag": lag(s.node_id), "digest": format!("{:016x}", s.state_digest),
                "chunks": s.chunks, "volumes": s.volumes, "extents": s.extents,
            }),
            Err(e) => json!({ "endpoint": addr, "error": e }),
        })
        .collect()
}

/// leader | follower | learner | joining, as a member sees itself.
pub fn member_role(s: &pb::StatusResponse) -> &'static str {
    let me = s.members.iter().find(|m| m.node_id == s.node_id);
    match me {
        _ if s.leader_id == s.node_id && s.leader_id != 0 => "leader",
        Some(m) if m.voter => "follower",
        Some(_) => "learner",
        None => "joining",
    }
}
