//! JSON views of the state for the `Read` RPC: what the CLI prints, computed
//! in one place so every client sees the same figures.

use cairn_state::{ChunkState, State};
use serde_json::{json, Value};

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
