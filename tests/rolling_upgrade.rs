//! Rolling upgrade from 1.0 to 2.0 against a real 3-member cluster
//! (docs/upgrades.md, DOMAIN.md §6): members started with
//! `--emulate-version 1.0` are restarted one by one on 2.0 (followers, then
//! the leader), then a fleet of simulated 1.0 chunks is restarted as 2.0 in
//! batches. The leader's gate must activate `copy_commands` once every
//! member runs 2.0 and `lease_7s` once the last live chunk does, each with
//! exactly one `ActivateFeature` entry, and the lease must stay 14 s until
//! then and become 7 s after, with no session expiring on the way.
//!
//! The lease is the default 14 s on purpose (the switch is 14 s -> 7 s).
//! Every wait is on a condition with a deadline; the one "must not happen
//! within a window" check (nothing activates while the upgrade is held) is
//! kept to 3 s. The tests run one at a time (SERIAL): a cluster per test.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_capability::{capabilities_of, COPY_COMMANDS, LEASE_7S};
use cairn_node::client::MetaClient;
use cairn_node::fleet::Fleet;
use cairn_node::types::pb;
use cairn_state::Cmd;
use common::{dump_logs, wait_for, Cluster};
use serde_json::Value;
use tonic::Code;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const OLD: &str = "1.0";
const NEW: &str = "2.0";
/// The default lease (the tests never change `lease_ms`).
const LEASE_14S: u64 = 14_000;
/// The lease once `lease_7s` is active.
const LEASE_7S_MS: u64 = 7_000;
/// The leader's log line for each capability it activates.
const ACTIVATING: &str = "activating feature: every member and live chunk supports it";
const EMULATE_OLD: &[&str] = &["--emulate-version", "1.0"];

fn caps(version: &str) -> Vec<String> {
    capabilities_of(version)
        .expect("a known version")
        .into_iter()
        .collect()
}

/// A fleet of `n` chunks registered as `version` (unracked), with host
/// names `<prefix>-<i>`.
async fn start_fleet(cluster: &Cluster, n: usize, version: &str, prefix: &str) -> Fleet {
    let mut cfg = cluster.fleet_config(n);
    cfg.zones = 0;
    cfg.version = version.to_string();
    cfg.capabilities = caps(version);
    cfg.host_prefix = prefix.to_string();
    Fleet::start(cfg).await.expect("fleet starts")
}

/// What `cairn upgrade status` says, reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Gate {
    hold: bool,
    lease_ms: u64,
    active: Vec<String>,
    /// What the leader's gate would propose right now (empty once settled).
    activating: Vec<String>,
    /// name -> (held, blockers as "member 3 (version 1.0)" / "chunk 5 (version 1.0)").
    pending: BTreeMap<String, (bool, Vec<String>)>,
    /// Every member's advertised version (None: not advertised yet).
    members: BTreeMap<u64, Option<String>>,
    /// Every chunk with a live session, and its version.
    chunks: BTreeMap<u32, String>,
    /// The operator text, one line per capability.
    text: String,
}

fn gate_of(v: &Value) -> Result<Gate, String> {
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let pending = v["pending"]
        .as_array()
        .ok_or_else(|| format!("no pending list in {v}"))?
        .iter()
        .map(|p| {
            let blockers = p["blockers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    format!(
                        "{} (version {})",
                        b["who"].as_str().unwrap_or("?"),
                        b["version"].as_str().unwrap_or("not advertised")
                    )
                })
                .collect();
            (
                p["name"].as_str().unwrap_or("?").to_string(),
                (p["held"].as_bool() == Some(true), blockers),
            )
        })
        .collect();
    let members = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["id"].as_u64().unwrap_or(0),
                m["version"].as_str().map(str::to_string),
            )
        })
        .collect();
    let chunks = v["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["cid"].as_u64().unwrap_or(0) as u32,
                c["version"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    Ok(Gate {
        hold: v["hold"].as_bool() == Some(true),
        lease_ms: v["lease_ms"]
            .as_u64()
            .ok_or_else(|| format!("no lease_ms in {v}"))?,
        active: strs(&v["active"]),
        activating: strs(&v["activating"]),
        pending,
        members,
        chunks,
        text: v["text"].as_str().unwrap_or("").to_string(),
    })
}

/// The status the gate should report, settled, when `old_members` and
/// `old_chunks` still run 1.0 and every other member (1 to 3) and chunk of
/// `all_chunks` (each with a live session) runs 2.0, with `hold`.
fn expected(hold: bool, old_members: &[u64], old_chunks: &[u32], all_chunks: &[u32]) -> Gate {
    let version = |old: bool| if old { OLD } else { NEW }.to_string();
    let members: Vec<String> = old_members
        .iter()
        .map(|id| format!("member {id} (version {OLD})"))
        .collect();
    let chunks: Vec<String> = old_chunks
        .iter()
        .map(|cid| format!("chunk {cid} (version {OLD})"))
        .collect();
    let lease_blockers: Vec<String> = members.iter().chain(&chunks).cloned().collect();
    let mut pending = BTreeMap::new();
    let mut active = vec![];
    let mut lines = vec![];
    // Registry order: lease_7s, copy_commands.
    for (name, blockers) in [(LEASE_7S, lease_blockers), (COPY_COMMANDS, members)] {
        if blockers.is_empty() && !hold {
            active.push(name.to_string());
            lines.push(format!("{name}: active"));
        } else {
            let mut line = format!("{name}: pending");
            if hold {
                line.push_str(" (held)");
            }
            if !blockers.is_empty() {
                line.push_str(", blocked by ");
                line.push_str(&blockers.join(", "));
            }
            lines.push(line);
            pending.insert(name.to_string(), (hold, blockers));
        }
    }
    active.sort();
    let lease_ms = if active.iter().any(|a| a == LEASE_7S) {
        LEASE_7S_MS
    } else {
        LEASE_14S
    };
    Gate {
        hold,
        lease_ms,
        active,
        activating: vec![],
        pending,
        members: (1..=3)
            .map(|id| (id, Some(version(old_members.contains(&id)))))
            .collect(),
        chunks: all_chunks
            .iter()
            .map(|cid| (*cid, version(old_chunks.contains(cid))))
            .collect(),
        text: lines.join("\n"),
    }
}

async fn gate(client: &MetaClient) -> Result<Gate, String> {
    let r = client
        .upgrade_status(pb::UpgradeStatusRequest {})
        .await
        .map_err(|e| format!("upgrade status: {e}"))?;
    let v: Value = serde_json::from_str(&r.json).map_err(|e| e.to_string())?;
    gate_of(&v)
}

/// Waits until `cairn upgrade status` reports exactly `want`.
async fn expect_gate(cluster: &Cluster, client: &MetaClient, want: &Gate, step: &str) {
    wait_for(
        cluster,
        Duration::from_secs(30),
        &format!("upgrade status after {step}: {want:#?}"),
        || async {
            let got = gate(client).await?;
            if got == *want {
                Ok(())
            } else {
                Err(format!("{got:#?}"))
            }
        },
    )
    .await
}

/// Every chunk of `fleet` has exactly one session, the one it holds, with
/// `lease_ms` as the leader's tracker sees it (what its next keepalive reply
/// tells it), and no other session exists.
async fn expect_sessions(cluster: &Cluster, client: &MetaClient, fleet: &Fleet, lease_ms: u64) {
    wait_for(
        cluster,
        Duration::from_secs(30),
        &format!("every chunk's own session, each with a {lease_ms} ms lease"),
        || async {
            let listed = client
                .list_sessions()
                .await
                .map_err(|e| format!("session list: {e}"))?;
            let rows: BTreeMap<u32, (u64, u64)> = listed
                .sessions
                .iter()
                .map(|s| (s.cid, (s.session_id, s.lease_ms)))
                .collect();
            let want: BTreeMap<u32, (u64, u64)> = fleet
                .chunks()
                .iter()
                .map(|c| (c.cid(), (c.session_id(), lease_ms)))
                .collect();
            if rows == want && listed.sessions.len() == rows.len() {
                Ok(())
            } else {
                Err(format!("listed {:?}\nwanted {want:?}", listed.sessions))
            }
        },
    )
    .await
}

/// The leader's "activating feature" lines for `name` in every member's log
/// (every run of every member).
fn activations(cluster: &Cluster, name: &str) -> Vec<String> {
    cluster
        .logs()
        .lines()
        .filter(|l| l.contains(ACTIVATING) && l.contains(name))
        .map(str::to_string)
        .collect()
}

fn no_expiry(cluster: &Cluster, when: &str) {
    let logs = cluster.logs();
    let expired: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("session expired"))
        .collect();
    assert!(
        expired.is_empty(),
        "no session may expire in a rolling upgrade ({when}); expired:\n{}\n{logs}",
        expired.join("\n")
    );
}

/// Restarts chunks `batch` as 2.0 and waits until each has registered again
/// (once: an upgrade restart is one registration) with a new session.
async fn upgrade_chunks(cluster: &Cluster, fleet: &Fleet, batch: &[u32]) {
    let before: BTreeMap<u32, (u64, u64)> = fleet
        .chunks()
        .iter()
        .map(|c| (c.cid(), (c.registrations(), c.session_id())))
        .collect();
    for cid in batch {
        assert!(fleet.restart_as(*cid, NEW, &caps(NEW)), "chunk {cid}");
    }
    wait_for(
        cluster,
        Duration::from_secs(30),
        &format!("chunks {batch:?} registered again as {NEW}"),
        || async {
            let lagging: Vec<String> = fleet
                .chunks()
                .iter()
                .filter(|c| batch.contains(&c.cid()))
                .filter(|c| {
                    let (regs, sid) = before[&c.cid()];
                    !(c.registrations() == regs + 1 && c.session_id() != 0 && c.session_id() != sid)
                })
                .map(|c| {
                    format!(
                        "chunk {}: {} registrations, session {}",
                        c.cid(),
                        c.registrations(),
                        c.session_id()
                    )
                })
                .collect();
            if lagging.is_empty() {
                Ok(())
            } else {
                Err(lagging.join("; "))
            }
        },
    )
    .await;
    // No other chunk registered again meanwhile (it would have lost its
    // session) and none of the batch registered twice.
    for c in fleet.chunks() {
        let (regs, _) = before[&c.cid()];
        let want = regs + u64::from(batch.contains(&c.cid()));
        assert_eq!(
            c.registrations(),
            want,
            "chunk {} registrations\n{}",
            c.cid(),
            cluster.logs()
        );
    }
}

/// Restarts member `i` on 2.0 (same id, listen address, data dir; no
/// --emulate-version) and waits until every running member follows one
/// leader again.
async fn upgrade_member(cluster: &mut Cluster, i: usize) {
    cluster.restart_with(i, &[]).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    // Caught up: same applied index and digest everywhere (its lag back to
    // 0) before the next member goes down.
    cluster.wait_converged(0, Duration::from_secs(30)).await;
}

/// A 1.0 cluster (3 members on `--emulate-version 1.0`) with a leader.
async fn old_cluster() -> (Cluster, u64) {
    // Plain TCP: a 1.0 chunk registers itself as new below, which a chunk
    // certificate (bound to a cid) may not (tests/security.rs).
    let cluster = Cluster::start_insecure_with(3, EMULATE_OLD);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    (cluster, leader)
}

fn cids(fleet: &Fleet) -> Vec<u32> {
    let mut v: Vec<u32> = fleet.chunks().iter().map(|c| c.cid()).collect();
    v.sort();
    v
}

async fn wait_registered(cluster: &Cluster, fleet: &Fleet) {
    assert!(
        fleet.wait_registered(Duration::from_secs(30)).await,
        "every chunk registered\n{}",
        cluster.logs()
    );
}

/// Once `lease_7s` is active: every session shows 7 s, and every chunk has
/// had two keepalive replies since (the first one carries 7 s and the 1 s
/// interval, so the second already comes at the new pace).
async fn expect_short_leases(cluster: &Cluster, client: &MetaClient, fleet: &Fleet) {
    let seen: BTreeMap<u32, u64> = fleet
        .chunks()
        .iter()
        .map(|c| (c.cid(), c.keepalives()))
        .collect();
    expect_sessions(cluster, client, fleet, LEASE_7S_MS).await;
    wait_for(
        cluster,
        Duration::from_secs(10),
        "two keepalive replies to every chunk since the activation",
        || async {
            let behind: Vec<String> = fleet
                .chunks()
                .iter()
                .filter(|c| c.keepalives() < seen[&c.cid()] + 2)
                .map(|c| format!("chunk {}: {} keepalives", c.cid(), c.keepalives()))
                .collect();
            if behind.is_empty() {
                Ok(())
            } else {
                Err(behind.join("; "))
            }
        },
    )
    .await;
    expect_sessions(cluster, client, fleet, LEASE_7S_MS).await;
}

fn assert_one_activation(cluster: &Cluster, name: &str) {
    let lines = activations(cluster, name);
    assert_eq!(
        lines.len(),
        1,
        "exactly one activation of {name} across every member's log, got:\n{}\n{}",
        lines.join("\n"),
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_activates_lease_7s_once_after_the_last_chunk() {
    let _one = SERIAL.lock().await;
    // Given three 1.0 members and eight 1.0 chunks (14 s lease, keepalive
    // every 2 s),
    let (mut cluster, leader) = old_cluster().await;
    let client = cluster.client();
    let fleet = start_fleet(&cluster, 8, OLD, "sim").await;
    wait_registered(&cluster, &fleet).await;
    let all_chunks = cids(&fleet);
    let mut old_members: Vec<u64> = vec![1, 2, 3];
    expect_gate(
        &cluster,
        &client,
        &expected(false, &old_members, &all_chunks, &all_chunks),
        "start",
    )
    .await;
    expect_sessions(&cluster, &client, &fleet, LEASE_14S).await;

    // when the followers are restarted on 2.0 one at a time,
    for id in [1u64, 2, 3].into_iter().filter(|id| *id != leader) {
        let i = cluster.index_of(id);
        upgrade_member(&mut cluster, i).await;
        old_members.retain(|m| *m != id);
        // then each one stops blocking once its advert is committed, and the
        // old leader and every chunk still block lease_7s,
        expect_gate(
            &cluster,
            &client,
            &expected(false, &old_members, &all_chunks, &all_chunks),
            &format!("follower {id} on 2.0"),
        )
        .await;
        expect_sessions(&cluster, &client, &fleet, LEASE_14S).await;
    }
    assert_eq!(old_members, vec![leader]);

    // when the leader is stopped, a 2.0 follower elected, and the old
    // leader restarted on 2.0,
    let li = cluster.index_of(leader);
    let exit = cluster.stop(li, Duration::from_secs(20)).await;
    assert!(exit.success(), "a clean stop: {exit:?}\n{}", cluster.logs());
    let new_leader = cluster
        .wait_for_leader_except(li, Duration::from_secs(30))
        .await;
    assert_ne!(new_leader, leader);
    // (while it is down, it is still a member with a 1.0 advert: it blocks)
    expect_gate(
        &cluster,
        &client,
        &expected(false, &[leader], &all_chunks, &all_chunks),
        "the 1.0 leader stopped",
    )
    .await;
    cluster.spawn(li, &[]);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    old_members.clear();
    // then copy_commands activates (chunks do not block it), lease_7s is
    // blocked by the chunks alone, and the lease is still 14 s.
    let want = expected(false, &old_members, &all_chunks, &all_chunks);
    assert_eq!(want.active, vec![COPY_COMMANDS.to_string()]);
    expect_gate(&cluster, &client, &want, "every member on 2.0").await;
    expect_sessions(&cluster, &client, &fleet, LEASE_14S).await;
    assert_one_activation(&cluster, COPY_COMMANDS);
    assert!(activations(&cluster, LEASE_7S).is_empty());

    // When the chunks are restarted on 2.0 in batches,
    let mut old_chunks = all_chunks.clone();
    for batch in [&all_chunks[0..3], &all_chunks[3..6], &all_chunks[6..8]] {
        upgrade_chunks(&cluster, &fleet, batch).await;
        old_chunks.retain(|c| !batch.contains(c));
        let want = expected(false, &[], &old_chunks, &all_chunks);
        expect_gate(
            &cluster,
            &client,
            &want,
            &format!("chunks {batch:?} on 2.0"),
        )
        .await;
        if old_chunks.is_empty() {
            break;
        }
        // the lease stays 14 s while any live chunk runs 1.0.
        assert_eq!(want.lease_ms, LEASE_14S);
        expect_sessions(&cluster, &client, &fleet, LEASE_14S).await;
        assert!(
            activations(&cluster, LEASE_7S).is_empty(),
            "{}",
            cluster.logs()
        );
    }

    // Then, after the last chunk, lease_7s is active, the lease is 7 s in
    // the status and in every session (the chunks learn it from their next
    // keepalive reply),
    let done = expected(false, &[], &[], &all_chunks);
    assert_eq!(
        done.active,
        vec![COPY_COMMANDS.to_string(), LEASE_7S.to_string()]
    );
    assert_eq!(done.lease_ms, LEASE_7S_MS);
    expect_gate(&cluster, &client, &done, "every chunk on 2.0").await;
    expect_short_leases(&cluster, &client, &fleet).await;
    // each capability was activated by exactly one entry, and no session
    // expired during the whole upgrade.
    assert_one_activation(&cluster, LEASE_7S);
    assert_one_activation(&cluster, COPY_COMMANDS);
    no_expiry(&cluster, "after the last chunk");

    // A new 1.0 chunk is refused at Register with the operator's message.
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let leader_addr = cluster.members[cluster.index_of(leader)].addr.clone();
    let mut chunk_api = pb::chunk_client::ChunkClient::connect(format!("http://{leader_addr}"))
        .await
        .expect("connect to the leader's Chunk service");
    let refused = chunk_api
        .register(pb::RegisterRequest {
            cid: 0,
            hostname: "old-direct".into(),
            data_addr: "127.0.0.1:29999".into(),
            version: OLD.into(),
            capabilities: vec![],
            space: None,
            brick: None,
        })
        .await
        .expect_err("a 1.0 chunk must be refused once lease_7s is active");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        refused.message(),
        "capability lease_7s is active; new chunk old-direct (version 1.0) lacks it; upgrade it before it joins"
    );
    // So is a 1.0 fleet's chunk: it never gets a session.
    let old_fleet = start_fleet(&cluster, 1, OLD, "old").await;
    let refusal = "capability lease_7s is active; new chunk old-0 (version 1.0) lacks it; upgrade it before it joins";
    wait_for(
        &cluster,
        Duration::from_secs(20),
        "the 1.0 fleet's chunk refused in the leader's log",
        || async {
            if cluster.logs().contains(refusal) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await;
    let c = &old_fleet.chunks()[0];
    assert_eq!(
        (c.registrations(), c.session_id(), c.cid()),
        (0, 0, 0),
        "the refused chunk has no cid and no session"
    );
    drop(old_fleet);
    expect_gate(&cluster, &client, &done, "the 1.0 chunks refused").await;
    expect_sessions(&cluster, &client, &fleet, LEASE_7S_MS).await;

    // A member restarted on 1.0 after activation exits at start, non-zero,
    // with the refusal message.
    let fi = (0..3)
        .find(|i| cluster.members[*i].id != leader)
        .expect("a follower");
    let fid = cluster.members[fi].id;
    let logged_before = cluster.log_of(fi).len();
    cluster.restart_with(fi, EMULATE_OLD).await;
    let exit = cluster.wait_exit(fi, Duration::from_secs(30)).await;
    let log = cluster.log_of(fi);
    let last_run = log.get(logged_before..).unwrap_or("");
    assert!(
        !exit.success(),
        "a 1.0 member must not run: {exit:?}\n{log}"
    );
    // It names the first capability it lacks in registry order (lease_7s),
    // exactly as `cairn server --join` or a chunk's Register would.
    let said = format!(
        "capability {LEASE_7S} is active; member {fid} (version 1.0) lacks it; upgrade it before it joins"
    );
    assert!(
        last_run.contains(&format!("error: {said}")),
        "the 1.0 member's exit says {said:?}\n{log}"
    );
    // Its refused start changed nothing: the state still has its 2.0
    // advert (checked by `done`: every member on 2.0).
    expect_gate(&cluster, &client, &done, "a 1.0 member refused").await;
    // Back on 2.0 it runs, and the cluster is unchanged.
    cluster.spawn(fi, &[]);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    expect_gate(&cluster, &client, &done, "the member back on 2.0").await;
    expect_sessions(&cluster, &client, &fleet, LEASE_7S_MS).await;
    assert_one_activation(&cluster, LEASE_7S);
    assert_one_activation(&cluster, COPY_COMMANDS);
    no_expiry(&cluster, "at the end");
    dump_logs(
        &cluster,
        "a_rolling_upgrade_activates_lease_7s_once_after_the_last_chunk",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_upgrade_keeps_the_gate_consistent() {
    let _one = SERIAL.lock().await;
    // Given three 1.0 members and eight 1.0 chunks,
    let (mut cluster, leader) = old_cluster().await;
    let client = cluster.client();
    let fleet = start_fleet(&cluster, 8, OLD, "sim").await;
    wait_registered(&cluster, &fleet).await;
    let all_chunks = cids(&fleet);
    expect_gate(
        &cluster,
        &client,
        &expected(false, &[1, 2, 3], &all_chunks, &all_chunks),
        "start",
    )
    .await;
    // and the followers upgraded to 2.0,
    for id in [1u64, 2, 3].into_iter().filter(|id| *id != leader) {
        let i = cluster.index_of(id);
        upgrade_member(&mut cluster, i).await;
    }
    expect_gate(
        &cluster,
        &client,
        &expected(false, &[leader], &all_chunks, &all_chunks),
        "the followers on 2.0",
    )
    .await;

    // when the 1.0 leader is killed (-9) and a 2.0 follower takes over,
    let li = cluster.index_of(leader);
    cluster.kill(li);
    let new_leader = cluster
        .wait_for_leader_except(li, Duration::from_secs(30))
        .await;
    assert_ne!(new_leader, leader);
    // then the new leader sees the same blockers (the dead member's 1.0
    // advert still counts: it is still a member) and activates nothing,
    expect_gate(
        &cluster,
        &client,
        &expected(false, &[leader], &all_chunks, &all_chunks),
        "the 1.0 leader killed",
    )
    .await;
    expect_sessions(&cluster, &client, &fleet, LEASE_14S).await;
    assert!(
        cluster.logs().lines().all(|l| !l.contains(ACTIVATING)),
        "{}",
        cluster.logs()
    );

    // when the old leader comes back on 2.0,
    cluster.spawn(li, &[]);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    // then copy_commands activates and lease_7s waits for the chunks,
    expect_gate(
        &cluster,
        &client,
        &expected(false, &[], &all_chunks, &all_chunks),
        "the old leader back on 2.0",
    )
    .await;
    expect_sessions(&cluster, &client, &fleet, LEASE_14S).await;
    assert_one_activation(&cluster, COPY_COMMANDS);

    // and when every chunk is upgraded,
    upgrade_chunks(&cluster, &fleet, &all_chunks[0..4]).await;
    expect_gate(
        &cluster,
        &client,
        &expected(false, &[], &all_chunks[4..], &all_chunks),
        "half the chunks on 2.0",
    )
    .await;
    expect_sessions(&cluster, &client, &fleet, LEASE_14S).await;
    upgrade_chunks(&cluster, &fleet, &all_chunks[4..]).await;

    // then lease_7s activates exactly once, the lease is 7 s, and no session
    // expired.
    expect_gate(
        &cluster,
        &client,
        &expected(false, &[], &[], &all_chunks),
        "every chunk on 2.0",
    )
    .await;
    expect_short_leases(&cluster, &client, &fleet).await;
    assert_one_activation(&cluster, LEASE_7S);
    assert_one_activation(&cluster, COPY_COMMANDS);
    no_expiry(&cluster, "at the end");
    dump_logs(
        &cluster,
        "killing_the_leader_mid_upgrade_keeps_the_gate_consistent",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_hold_keeps_the_old_behaviour_until_release() {
    let _one = SERIAL.lock().await;
    // Given three 1.0 members and the upgrade held before any chunk
    // registers,
    let (mut cluster, leader) = old_cluster().await;
    let client = cluster.client();
    let (mut results, _) = client
        .propose(&[Cmd::HoldUpgrade { hold: true }])
        .await
        .expect("hold");
    assert!(matches!(results.pop(), Some(Ok(_))), "the hold is applied");
    let fleet = start_fleet(&cluster, 4, OLD, "sim").await;
    wait_registered(&cluster, &fleet).await;
    let all_chunks = cids(&fleet);
    expect_gate(
        &cluster,
        &client,
        &expected(true, &[1, 2, 3], &all_chunks, &all_chunks),
        "start, held",
    )
    .await;

    // when every member (followers, then the leader) and every chunk is
    // upgraded to 2.0,
    for id in [1u64, 2, 3].into_iter().filter(|id| *id != leader) {
        let i = cluster.index_of(id);
        upgrade_member(&mut cluster, i).await;
    }
    let li = cluster.index_of(leader);
    cluster.stop(li, Duration::from_secs(20)).await;
    cluster
        .wait_for_leader_except(li, Duration::from_secs(30))
        .await;
    cluster.spawn(li, &[]);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    upgrade_chunks(&cluster, &fleet, &all_chunks).await;

    // then both capabilities are pending (held) with no blockers, the lease
    // is still 14 s,
    let held = expected(true, &[], &[], &all_chunks);
    assert!(held.active.is_empty());
    assert_eq!(held.lease_ms, LEASE_14S);
    expect_gate(&cluster, &client, &held, "everything on 2.0, held").await;
    expect_sessions(&cluster, &client, &fleet, LEASE_14S).await;
    // and nothing activates while the hold is on (the one window check: 3 s).
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        let g = gate(&client).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            g,
            held,
            "nothing may activate while held\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        cluster.logs().lines().all(|l| !l.contains(ACTIVATING)),
        "{}",
        cluster.logs()
    );
    let (ok, out, err) = cluster.cli(&["upgrade", "status"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("lease_7s: pending (held)") && out.contains("copy_commands: pending (held)"),
        "{out}"
    );

    // When the operator releases the hold,
    let (ok, out, err) = cluster.cli(&["upgrade", "release"]);
    assert!(ok, "{out}{err}");

    // then both activate at once, each with one entry, and the lease is 7 s,
    expect_gate(
        &cluster,
        &client,
        &expected(false, &[], &[], &all_chunks),
        "release",
    )
    .await;
    expect_short_leases(&cluster, &client, &fleet).await;
    assert_one_activation(&cluster, LEASE_7S);
    assert_one_activation(&cluster, COPY_COMMANDS);
    // with no session expired on the way.
    no_expiry(&cluster, "at the end");
    dump_logs(
        &cluster,
        "upgrade_hold_keeps_the_old_behaviour_until_release",
    );
}
