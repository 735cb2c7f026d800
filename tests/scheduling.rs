//! The leader's recover scheduler against a real 3-member cluster: a fleet of
//! simulated chunks (in this process) runs the copies meta sends in its
//! keepalive replies, while chunks stop and the leader is killed.
//!
//! Each test starts its own cluster and fleet; they run one at a time (the
//! SERIAL lock) so copy timings and lease expiries are not skewed by another
//! cluster sharing the cores. A 3 s lease keeps the expiry of a stopped chunk
//! (which starts recovery) short.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cairn_node::client::{ClientError, MetaClient};
use cairn_node::fleet::Fleet;
use cairn_node::types::pb;
use cairn_state::{Cmd, CmdError, CopyKind, FinishCopy, IssueCopy, Reply};
use common::{dump_logs, wait_for, Cluster};
use tonic::Code;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LEASE_MS: u64 = 3_000;
const EXTENT: u64 = 256 << 20;

/// A 3-member cluster with a leader and `config` applied (before any chunk
/// registers, so the chunks get the short lease from their first session).
async fn cluster_with(config: &[(&str, &str)]) -> Cluster {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    for (key, value) in config {
        client
            .set_config(pb::SetConfigRequest {
                key: key.to_string(),
                value: value.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("set {key}={value}: {e}\n{}", cluster.logs()));
    }
    cluster
}

async fn set(cluster: &Cluster, key: &str, value: &str) {
    cluster
        .client()
        .set_config(pb::SetConfigRequest {
            key: key.into(),
            value: value.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("set {key}={value}: {e}\n{}", cluster.logs()));
}

/// `chunks` unracked simulated chunks copying at `bandwidth_mb_s`, all
/// registered.
async fn fleet(cluster: &Cluster, chunks: usize, bandwidth_mb_s: u64) -> Fleet {
    let mut cfg = cluster.fleet_config(chunks);
    cfg.zones = 0;
    cfg.bandwidth_mb_s = bandwidth_mb_s;
    let fleet = Fleet::start(cfg).await.expect("fleet starts");
    assert!(
        fleet.wait_registered(Duration::from_secs(30)).await,
        "every chunk registered\n{}",
        cluster.logs()
    );
    fleet
}

/// A thin 3-replica volume of `extents` extents; returns its id.
async fn volume(cluster: &Cluster, extents: u64) -> u64 {
    let v = cluster
        .client()
        .create_volume(pb::CreateVolumeRequest {
            name: "v".into(),
            size_bytes: extents * EXTENT,
            replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create volume: {e}\n{}", cluster.logs()));
    assert_eq!(v.extents, extents, "{v:?}");
    v.volume_id
}

#[derive(Clone, Debug)]
struct Ext {
    pid: u64,
    loc: Vec<u32>,
    alive: Vec<u32>,
    expected: usize,
    owner: u32,
}

fn cids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_u64())
                .map(|c| c as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// Every extent of volume `id` (linearizable read).
async fn extents(client: &MetaClient, id: u64) -> Result<Vec<Ext>, String> {
    let v = client
        .read(&format!("volume {id}"), false)
        .await
        .map_err(|e| format!("read volume {id}: {e}"))?;
    let list = v["extents"]
        .as_array()
        .ok_or_else(|| format!("no extents in {v}"))?;
    Ok(list
        .iter()
        .map(|e| Ext {
            pid: e["pid"].as_u64().unwrap_or(0),
            loc: cids(&e["loc"]),
            alive: cids(&e["alive_loc"]),
            expected: e["expected_replicas"].as_u64().unwrap_or(0) as usize,
            owner: e["lease_owner"].as_u64().unwrap_or(0) as u32,
        })
        .collect())
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct CopyRow {
    copy_id: u64,
    term: u64,
    kind: String,
    pid: u64,
    src: u32,
    dst: u32,
    owner: u32,
    manual: bool,
}

/// (copy_term, running copies) from the replicated state (linearizable).
async fn copies(client: &MetaClient) -> Result<(u64, Vec<CopyRow>), String> {
    let v = client
        .read("copies", false)
        .await
        .map_err(|e| format!("read copies: {e}"))?;
    let rows = v["copies"]
        .as_array()
        .ok_or_else(|| format!("no copies in {v}"))?
        .iter()
        .map(|c| CopyRow {
            copy_id: c["copy_id"].as_u64().unwrap_or(0),
            term: c["term"].as_u64().unwrap_or(0),
            kind: c["kind"].as_str().unwrap_or("").to_string(),
            pid: c["pid"].as_u64().unwrap_or(0),
            src: c["src"].as_u64().unwrap_or(0) as u32,
            dst: c["dst"].as_u64().unwrap_or(0) as u32,
            owner: c["owner"].as_u64().unwrap_or(0) as u32,
            manual: c["manual"].as_bool().unwrap_or(false),
        })
        .collect();
    Ok((v["copy_term"].as_u64().unwrap_or(0), rows))
}

async fn status(client: &MetaClient) -> Result<pb::SchedStatusResponse, String> {
    client
        .sched_status(pb::SchedStatusRequest {})
        .await
        .map_err(|e| format!("sched status: {e}"))
}

/// One line of a status, for assertion messages.
fn brief(s: &pb::SchedStatusResponse) -> String {
    format!(
        "leader {} term {}: degraded {} lost {} recover_queued {} parked {} running {} finished {} failed {}",
        s.leader_id,
        s.term,
        s.degraded,
        s.lost,
        s.recover_queued,
        s.parked,
        s.running.len(),
        s.finished,
        s.failed
    )
}

/// Problems of an extent that should be fully recovered without `gone`:
/// None when it has exactly its expected replicas, all alive, none twice,
/// none on `gone`.
fn unhealthy(e: &Ext, gone: u32) -> Option<String> {
    let distinct: BTreeSet<u32> = e.loc.iter().copied().collect();
    let ok = e.expected == 3
        && e.loc.len() == 3
        && e.alive.len() == 3
        && distinct.len() == 3
        && e.alive.iter().all(|c| distinct.contains(c))
        && !distinct.contains(&gone);
    (!ok).then(|| format!("{e:?}"))
}

/// Waits until every extent of volume `id` is whole again without `gone`;
/// returns them.
async fn wait_recovered(cluster: &Cluster, id: u64, gone: u32, within: Duration) -> Vec<Ext> {
    let client = cluster.client();
    wait_for(
        cluster,
        within,
        &format!("every extent with 3 alive replicas, none on chunk {gone}"),
        || async {
            let ex = extents(&client, id).await?;
            let bad: Vec<String> = ex.iter().filter_map(|e| unhealthy(e, gone)).collect();
            if bad.is_empty() {
                Ok(ex)
            } else {
                let st = status(&client).await.map(|s| brief(&s)).unwrap_or_default();
                Err(format!(
                    "{} of {} extents not whole, e.g. {:?}; {st}",
                    bad.len(),
                    ex.len(),
                    &bad[..bad.len().min(5)]
                ))
            }
        },
    )
    .await
}

/// Waits for a scheduler with nothing left to do: nothing degraded, lost,
/// queued or running.
async fn wait_idle(cluster: &Cluster, within: Duration) -> pb::SchedStatusResponse {
    let client = cluster.client();
    wait_for(cluster, within, "an idle scheduler", || async {
        let s = status(&client).await?;
        if s.degraded == 0 && s.lost == 0 && s.running.is_empty() && s.recover_queued == 0 {
            Ok(s)
        } else {
            Err(format!("{} running {:?}", brief(&s), s.running))
        }
    })
    .await
}

/// Stops `victim` and waits until its session expired (its replicas are no
/// longer alive); returns the scheduler's status at that moment.
async fn stop_and_expire(
    cluster: &Cluster,
    fleet: &Fleet,
    id: u64,
    victim: u32,
) -> pb::SchedStatusResponse {
    assert!(fleet.stop_chunk(victim), "chunk {victim} is in the fleet");
    let client = cluster.client();
    wait_for(
        cluster,
        Duration::from_millis(LEASE_MS * 4),
        &format!("chunk {victim}'s session to expire"),
        || async {
            let ex = extents(&client, id).await?;
            let still = ex.iter().filter(|e| e.alive.contains(&victim)).count();
            if still > 0 {
                return Err(format!("{still} extents still list {victim} alive"));
            }
            let s = status(&client).await?;
            if s.degraded == 0 && s.finished == 0 {
                return Err(format!("expired but no extent degraded yet: {}", brief(&s)));
            }
            Ok(s)
        },
    )
    .await
}

/// kill -9 the leader, wait for another one, restart the old one; returns
/// (old leader id, new leader id).
async fn change_leader(cluster: &mut Cluster) -> (u64, u64) {
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let i = cluster.index_of(leader);
    cluster.kill(i);
    let new = cluster
        .wait_for_leader_except(i, Duration::from_secs(30))
        .await;
    cluster.restart(i);
    (leader, new)
}

fn holders(ex: &[Ext], cid: u32) -> usize {
    ex.iter().filter(|e| e.loc.contains(&cid)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_chunk_is_recovered_within_the_slot_limits() {
    let _one = SERIAL.lock().await;
    // Given 8 chunks holding a 200-extent 3-replica volume, a 3 s lease and
    // recover slots of 2 per chunk (as source and as destination), well
    // below the chunks' own limit (16), so meta's limit is the one that binds,
    let (src_slots, dst_slots) = (2u32, 2u32);
    let lease = LEASE_MS.to_string();
    let cluster = cluster_with(&[
        ("lease_ms", &lease),
        ("recover_src_slots", &src_slots.to_string()),
        ("recover_dst_slots", &dst_slots.to_string()),
    ])
    .await;
    let client = cluster.client();
    let fleet = fleet(&cluster, 8, 200).await;
    let id = volume(&cluster, 200).await;
    let before = extents(&client, id).await.expect("extents");
    let victim = fleet.chunks()[0].cid();
    let to_recover = holders(&before, victim);
    assert!(
        to_recover > 0,
        "chunk {victim} holds no replica: {before:?}"
    );

    // when one chunk stops and its session expires,
    let started = Instant::now();
    stop_and_expire(&cluster, &fleet, id, victim).await;

    // then recovery makes visible progress while extents are still degraded,
    let during = wait_for(
        &cluster,
        Duration::from_secs(30),
        "running or finished copies while extents are degraded",
        || async {
            let s = status(&client).await?;
            if s.degraded > 0 && (!s.running.is_empty() || s.finished > 0) {
                Ok(s)
            } else {
                Err(brief(&s))
            }
        },
    )
    .await;
    assert!(
        during
            .running
            .iter()
            .all(|r| r.dst != victim && r.src != victim),
        "a copy touches the stopped chunk {victim}: {:?}",
        during.running
    );
    let meta_limits: Vec<u32> = during
        .slots
        .iter()
        .find(|r| r.cid != victim)
        .map(|r| r.limit.clone())
        .unwrap_or_default();
    assert_eq!(
        meta_limits.iter().take(2).copied().collect::<Vec<u32>>(),
        vec![src_slots, dst_slots],
        "meta's recover slot limits are the configured ones: {:?}",
        during.slots
    );

    // every extent ends with exactly 3 alive replicas, none on the stopped chunk,
    let after = wait_recovered(&cluster, id, victim, Duration::from_secs(90)).await;
    let took = started.elapsed();
    assert_eq!(after.len(), 200);
    // and the scheduler has nothing left to do.
    let idle = wait_idle(&cluster, Duration::from_secs(30)).await;
    assert_eq!(idle.degraded, 0, "{}", brief(&idle));
    assert!(idle.running.is_empty(), "{:?}", idle.running);

    // No chunk ever ran more copies at once than meta's slots allow, and the
    // limit did bind somewhere (else the check proves nothing).
    let limits = [src_slots, dst_slots, 4, 4]; // migrate slots: the defaults
    let peaks: BTreeMap<u32, [u32; 4]> = fleet
        .chunks()
        .iter()
        .map(|c| (c.cid(), fleet.disks().peak(c.cid())))
        .collect();
    for (cid, peak) in &peaks {
        for k in 0..4 {
            assert!(
                peak[k] <= limits[k],
                "chunk {cid} ran {} copies at once of slot kind {k} \
                 ([recover src, recover dst, migrate src, migrate dst]), meta's limit is {}; \
                 peaks {peaks:?}\n{}",
                peak[k],
                limits[k],
                cluster.logs()
            );
        }
    }
    assert!(
        peaks
            .values()
            .any(|p| p[0] == src_slots || p[1] == dst_slots),
        "no chunk ever reached the recover slot limit ({src_slots}/{dst_slots}): \
         the limit never bound, peaks {peaks:?}"
    );
    // Each missing replica was copied once: no copy started twice, none
    // refused by a chunk's own limit, none made in vain.
    let n = fleet.disks().counters();
    assert_eq!(
        n.duplicates,
        0,
        "copies started twice: {n:?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        n.refused_slots, 0,
        "chunks refused copies beyond their own slot limit (16) although meta's is 2: {n:?}"
    );
    assert_eq!(
        n.done, to_recover as u64,
        "copies done by the chunks vs extents that had a replica on chunk {victim}: {n:?}"
    );
    // Lease owners decide the source (§5.2): they bound how many copies run.
    let mut owners: BTreeMap<u32, usize> = BTreeMap::new();
    for e in before.iter().filter(|e| e.loc.contains(&victim)) {
        *owners.entry(e.owner).or_default() += 1;
    }
    println!(
        "recovered {to_recover} extents of chunk {victim} in {took:?}; lease owners of those \
         extents (cid: count) {owners:?}; peaks {peaks:?}; counters {n:?}; during: {}",
        brief(&during)
    );
    dump_logs(
        &cluster,
        "a_stopped_chunk_is_recovered_within_the_slot_limits",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_completes_without_a_duplicate_copy_when_the_leader_is_killed_midway() {
    let _one = SERIAL.lock().await;
    // Given 8 chunks, a 200-extent 3-replica volume and copies of ~1.3 s
    // (256 MiB at 200 MB/s) with 2 recover slots per chunk, so recovery
    // takes several seconds,
    let lease = LEASE_MS.to_string();
    let mut cluster = cluster_with(&[
        ("lease_ms", &lease),
        ("recover_src_slots", "2"),
        ("recover_dst_slots", "2"),
    ])
    .await;
    let client = cluster.client();
    let fleet = fleet(&cluster, 8, 200).await;
    let id = volume(&cluster, 200).await;
    let before = extents(&client, id).await.expect("extents");
    let victim = fleet.chunks()[0].cid();
    let to_recover = holders(&before, victim);

    // when a chunk stops, and the leader is killed (-9) once some copies
    // finished while others run and extents still lack replicas,
    stop_and_expire(&cluster, &fleet, id, victim).await;
    let midway = wait_for(
        &cluster,
        Duration::from_secs(30),
        "some copies finished, some running, extents still degraded",
        || async {
            let s = status(&client).await?;
            if s.finished > 0 && !s.running.is_empty() && s.degraded >= 10 {
                Ok(s)
            } else {
                Err(brief(&s))
            }
        },
    )
    .await;
    let (term_before, running_before) = copies(&client).await.expect("copies");
    let (old, new) = change_leader(&mut cluster).await;
    assert_ne!(old, new);

    // then the new leader adopts the running copies (re-stamped with its term),
    let (term_after, _) = wait_for(
        &cluster,
        Duration::from_secs(30),
        "the new leader to adopt the running copies",
        || async {
            let (t, rows) = copies(&client).await?;
            if t > term_before {
                Ok((t, rows))
            } else {
                Err(format!("copy term still {t} (was {term_before})"))
            }
        },
    )
    .await;
    // recovery completes: every extent has exactly its 3 replicas, all alive,
    let after = wait_recovered(&cluster, id, victim, Duration::from_secs(90)).await;
    assert_eq!(after.len(), 200);
    let idle = wait_idle(&cluster, Duration::from_secs(30)).await;
    assert!(
        idle.running.is_empty(),
        "{}: {:?}",
        brief(&idle),
        idle.running
    );

    // and no copy was made twice: no command started twice on a chunk, and
    // one copy per missing replica (the ones running at the kill finished
    // once, under the new term).
    let n = fleet.disks().counters();
    assert_eq!(
        n.duplicates,
        0,
        "copies started twice across the failover: {n:?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        n.done,
        to_recover as u64,
        "copies done by the chunks vs extents that had a replica on chunk {victim} \
         (more = a copy made again after the failover): {n:?}; {} copies ran at the kill: \
         {running_before:?}\n{}",
        running_before.len(),
        cluster.logs()
    );
    println!(
        "killed leader {old} at {}; new leader {new}, copy term {term_before} -> {term_after}; \
         {} copies running at the kill; counters {n:?}; leader at the end {}",
        brief(&midway),
        running_before.len(),
        idle.leader_id
    );
    dump_logs(
        &cluster,
        "recovery_completes_without_a_duplicate_copy_when_the_leader_is_killed_midway",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_stamped_with_a_deposed_leaders_term_is_rejected() {
    let _one = SERIAL.lock().await;
    // Given copies so slow (256 MiB at 1 MB/s: minutes) that one still runs
    // across a leader change,
    let lease = LEASE_MS.to_string();
    let mut cluster = cluster_with(&[("lease_ms", &lease)]).await;
    let client = cluster.client();
    let fleet = fleet(&cluster, 5, 1).await;
    let id = volume(&cluster, 4).await;
    let victim = extents(&client, id).await.expect("extents")[0].loc[0];
    stop_and_expire(&cluster, &fleet, id, victim).await;
    let copy = wait_for(
        &cluster,
        Duration::from_secs(20),
        "a running recover copy",
        || async {
            let (_, rows) = copies(&client).await?;
            rows.iter()
                .find(|c| c.kind == "recover")
                .cloned()
                .ok_or_else(|| format!("no recover copy yet: {rows:?}"))
        },
    )
    .await;
    let t1 = copy.term;

    // when the leader is killed and the new one adopts the copy (term T2 > T1),
    let (_, new) = change_leader(&mut cluster).await;
    let t2 = wait_for(
        &cluster,
        Duration::from_secs(30),
        "the new leader to adopt the copy",
        || async {
            let (_, rows) = copies(&client).await?;
            match rows.iter().find(|c| c.copy_id == copy.copy_id) {
                Some(c) if c.term > t1 => Ok(c.term),
                Some(c) => Err(format!("copy {} still has term {}", c.copy_id, c.term)),
                None => Err(format!(
                    "copy {} is gone (it must still run): {rows:?}",
                    copy.copy_id
                )),
            }
        },
    )
    .await;

    // then a completion stamped with the old term T1 is rejected,
    let stale = Cmd::FinishCopy(FinishCopy {
        term: t1,
        copy_id: copy.copy_id,
        update: None,
    });
    let (results, _) = client
        .propose(&[stale])
        .await
        .unwrap_or_else(|e| panic!("propose: {e}\n{}", cluster.logs()));
    match results.as_slice() {
        [Err(CmdError::CopyTermMismatch {
            copy_id,
            term,
            current,
        })] => {
            assert_eq!((*copy_id, *term, *current), (copy.copy_id, t1, t2));
        }
        other => panic!(
            "a FinishCopy with the deposed term {t1} (copy carries {t2}) gave {other:?}, \
             expected CopyTermMismatch\n{}",
            cluster.logs()
        ),
    }
    // and the copy still runs, unchanged.
    let (_, rows) = copies(&client).await.expect("copies");
    let still = rows.iter().find(|c| c.copy_id == copy.copy_id);
    assert_eq!(
        still.map(|c| (c.term, c.pid, c.src, c.dst)),
        Some((t2, copy.pid, copy.src, copy.dst)),
        "the copy keeps running after the rejected completion: {rows:?}"
    );

    // The same with the current term T2 (an operator abandoning the copy)
    // succeeds, and the copy is no longer running.
    let abandon = Cmd::FinishCopy(FinishCopy {
        term: t2,
        copy_id: copy.copy_id,
        update: None,
    });
    let (results, _) = client.propose(&[abandon]).await.expect("propose");
    assert!(
        matches!(results.as_slice(), [Ok(Reply::Done)]),
        "abandoning copy {} with its term {t2}: {results:?}",
        copy.copy_id
    );
    let (_, rows) = copies(&client).await.expect("copies");
    assert!(
        rows.iter().all(|c| c.copy_id != copy.copy_id),
        "copy {} still listed after it was abandoned: {rows:?}",
        copy.copy_id
    );
    // The abandoned extent is still missing a replica: the leader plans it
    // again, as a new copy.
    let again = wait_for(
        &cluster,
        Duration::from_secs(20),
        &format!("a new copy of extent {} after the abandoned one", copy.pid),
        || async {
            let (_, rows) = copies(&client).await?;
            rows.iter()
                .find(|c| c.pid == copy.pid && c.copy_id > copy.copy_id)
                .cloned()
                .ok_or_else(|| format!("{rows:?}"))
        },
    )
    .await;
    assert_eq!(again.term, t2, "{again:?}");
    println!(
        "copy {} of extent {}: term {t1} -> {t2} (new leader {new}); stale completion \
         rejected; abandoned and re-planned as copy {}",
        copy.copy_id, copy.pid, again.copy_id
    );
    dump_logs(
        &cluster,
        "a_completion_stamped_with_a_deposed_leaders_term_is_rejected",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_recover_and_migrate_jump_the_queue() {
    let _one = SERIAL.lock().await;
    // Given recover paused, slow copies (nothing finishes during the test)
    // and a stopped chunk, so many extents wait in the recover queue,
    let lease = LEASE_MS.to_string();
    let cluster = cluster_with(&[("lease_ms", &lease), ("recover_paused", "true")]).await;
    let client = cluster.client();
    let fleet = fleet(&cluster, 6, 1).await;
    let id = volume(&cluster, 40).await;
    let victim = fleet.chunks()[0].cid();
    stop_and_expire(&cluster, &fleet, id, victim).await;
    let queued = wait_for(
        &cluster,
        Duration::from_secs(20),
        "every degraded extent queued, none running",
        || async {
            let s = status(&client).await?;
            if s.recover_paused && s.degraded >= 5 && s.recover_queued == s.degraded {
                Ok(s)
            } else {
                Err(brief(&s))
            }
        },
    )
    .await;
    let (_, running) = copies(&client).await.expect("copies");
    assert!(
        running.iter().all(|c| c.kind != "recover"),
        "recover copies issued while recover is paused: {running:?}"
    );
    let ex = extents(&client, id).await.expect("extents");
    let waiting: Vec<&Ext> = ex.iter().filter(|e| e.alive.len() < e.expected).collect();
    assert_eq!(waiting.len() as u64, queued.degraded, "{}", brief(&queued));
    // the extent that would come last: the highest pid among them.
    let last = *waiting
        .iter()
        .max_by_key(|e| e.pid)
        .expect("an extent to recover");
    let live: Vec<u32> = fleet
        .chunks()
        .iter()
        .map(|c| c.cid())
        .filter(|c| *c != victim)
        .collect();
    let src = last.alive[0];
    let dst = *live
        .iter()
        .find(|c| !last.loc.contains(c))
        .expect("a live chunk without a replica of the extent");

    // A manual command whose dst already holds a replica is refused, clearly.
    let holder = last.alive[1];
    let refused = client
        .manual_copy(pb::ManualCopyRequest {
            kind: pb::CopyKind::Recover as i32,
            pid: last.pid,
            src,
            dst: holder,
            replace: 0,
        })
        .await
        .expect_err("a dst that already holds a replica is refused");
    match &refused {
        ClientError::Rejected { code, message } => {
            assert_eq!(*code, Code::FailedPrecondition, "{refused:?}");
            assert!(
                message.contains("already holds a replica")
                    && message.contains(&holder.to_string())
                    && message.contains(&last.pid.to_string()),
                "the refusal names the extent, the chunk and why: {message:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // When the operator asks to recover that last extent by hand,
    let resp = client
        .manual_copy(pb::ManualCopyRequest {
            kind: pb::CopyKind::Recover as i32,
            pid: last.pid,
            src,
            dst,
            replace: 0,
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "manual recover of {last:?} {src}->{dst}: {e}\n{}",
                cluster.logs()
            )
        });
    // the answer shows the extent as it is and the command as queued,
    assert_eq!(resp.pid, last.pid, "{resp:?}");
    assert_eq!(resp.loc, last.loc, "current loc: {resp:?} vs {last:?}");
    assert_eq!(
        resp.alive_loc, last.alive,
        "alive loc: {resp:?} vs {last:?}"
    );
    assert_eq!(resp.dst, dst, "{resp:?}");
    assert_eq!(resp.mode, "manual", "{resp:?}");
    assert!(
        last.alive.contains(&resp.src),
        "src {} holds an alive replica of {last:?}",
        resp.src
    );
    assert!(
        resp.owner != 0 && (last.alive.contains(&resp.owner) || resp.owner == dst),
        "owner {} holds an alive replica or is dst: {resp:?}",
        resp.owner
    );
    assert_eq!(resp.replace, 0, "{resp:?}");

    // and once recover resumes, it is the first recover copy issued: the
    // smallest copy id among them, ahead of every extent queued before it.
    set(&cluster, "recover_paused", "false").await;
    let issued = wait_for(
        &cluster,
        Duration::from_secs(20),
        "the manual command to be issued",
        || async {
            let (_, rows) = copies(&client).await?;
            if rows.iter().any(|c| c.pid == last.pid) {
                Ok(rows)
            } else {
                Err(format!("not issued yet: {rows:?}"))
            }
        },
    )
    .await;
    let recover: Vec<&CopyRow> = issued.iter().filter(|c| c.kind == "recover").collect();
    let manual = recover
        .iter()
        .find(|c| c.pid == last.pid)
        .expect("the manual copy");
    assert!(manual.manual, "the copy is marked manual: {manual:?}");
    assert_eq!(
        (manual.src, manual.dst),
        (resp.src, dst),
        "the copy runs as accepted: {manual:?} vs {resp:?}"
    );
    let first = recover.iter().map(|c| c.copy_id).min().unwrap();
    assert_eq!(
        manual.copy_id,
        first,
        "the manual command (extent {}, the highest pid) was not issued first; \
         recover copies in issue order: {:?}\n{}",
        last.pid,
        {
            let mut r = recover.clone();
            r.sort_by_key(|c| c.copy_id);
            r.iter()
                .map(|c| (c.copy_id, c.pid, c.manual))
                .collect::<Vec<_>>()
        },
        cluster.logs()
    );
    assert!(
        recover.len() > 1,
        "other recover copies were issued after it in the same round: {recover:?}"
    );
    // The leader's status shows it running as an operator's command.
    let st = status(&client).await.expect("status");
    let shown = st.running.iter().find(|r| r.command_id == manual.copy_id);
    assert_eq!(
        shown.map(|r| (r.pid, r.dst, r.mode.as_str())),
        Some((last.pid, dst, "manual")),
        "sched status lists the manual copy: {:?}",
        st.running
    );
    println!(
        "manual recover of extent {} ({} -> {dst}, owner {}) issued first (copy {}) of {} recover copies",
        last.pid,
        resp.src,
        resp.owner,
        manual.copy_id,
        recover.len()
    );

    // A manual migrate through the CLI goes to the front of the migrate
    // queue and runs at the next round while recovery is busy; the CLI
    // prints pid, current loc, alive loc, dst, owner and mode.
    let (_, busy) = copies(&client).await.expect("copies");
    let healthy = ex
        .iter()
        .find(|e| {
            e.alive.len() == e.expected
                && !e.loc.contains(&victim)
                && !busy.iter().any(|c| c.pid == e.pid)
        })
        .expect("a healthy extent");
    let from = healthy.alive[0];
    let to = *live
        .iter()
        .find(|c| !healthy.loc.contains(c))
        .expect("a chunk without a replica of it");
    let args = [
        "extent".to_string(),
        "migrate".into(),
        "--pid".into(),
        healthy.pid.to_string(),
        "--src".into(),
        from.to_string(),
        "--dst".into(),
        to.to_string(),
        "--replace".into(),
        from.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = cluster.cli(&args);
    assert!(ok, "cairn extent migrate: {out}{err}");
    for column in ["PID", "LOC", "ALIVE_LOC", "DST", "OWNER", "MODE", "manual"] {
        assert!(out.contains(column), "{column} missing from:\n{out}");
    }
    let migrating = wait_for(
        &cluster,
        Duration::from_secs(20),
        "the manual migrate to be issued",
        || async {
            let (_, rows) = copies(&client).await?;
            rows.into_iter()
                .find(|c| c.pid == healthy.pid)
                .ok_or_else(|| "not issued yet".to_string())
        },
    )
    .await;
    assert_eq!(
        (migrating.kind.as_str(), migrating.dst, migrating.manual),
        ("migrate", to, true),
        "{migrating:?}"
    );
    // The same command again conflicts with the running one, and says so.
    let (ok, out, err) = cluster.cli(&args);
    assert!(!ok, "a second command for a busy extent is refused: {out}");
    assert!(err.contains("refused") && err.contains("running"), "{err}");
    // `cairn sched status` shows both kinds running, the manual one as such.
    let (ok, out, err) = cluster.cli(&["sched", "status"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("running copies") && out.contains("migrate") && out.contains("manual"),
        "{out}"
    );
    // and `cairn sched explain` names the running command of the extent.
    let pid = healthy.pid.to_string();
    let (ok, out, err) = cluster.cli(&["sched", "explain", &pid]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("extent {pid}")), "{out}");
    assert!(out.to_lowercase().contains("running"), "{out}");
    dump_logs(&cluster, "manual_recover_and_migrate_jump_the_queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_propose_the_schedulers_own_commands() {
    let _one = SERIAL.lock().await;
    // Given a cluster (with a chunk and an extent a copy could name),
    let cluster = cluster_with(&[]).await;
    let client = cluster.client();
    let _fleet = fleet(&cluster, 3, 200).await;
    let id = volume(&cluster, 1).await;
    let e = extents(&client, id).await.expect("extents")[0].clone();
    let (term, _) = copies(&client).await.expect("copies");
    let issue = Cmd::IssueCopy(IssueCopy {
        term,
        kind: CopyKind::Recover,
        pid: e.pid,
        generation: 0,
        src: e.loc[0],
        dst: e.loc[1],
        replace: 0,
        owner: 0,
        manual: false,
    });
    let adopt = Cmd::AdoptCopies { term: term + 100 };
    let config = Cmd::SetConfig {
        key: "recover_paused".into(),
        value: "true".into(),
    };
    // IssueCopy and AdoptCopies proposed by a client are refused, alone or
    // in a batch with an allowed command (which then does not apply either).
    for cmds in [
        vec![issue.clone()],
        vec![adopt.clone()],
        vec![config, adopt],
    ] {
        match client.propose(&cmds).await {
            Err(ClientError::Rejected { code, message }) => {
                assert_eq!(code, Code::PermissionDenied, "{cmds:?}: {message}");
                assert!(
                    message.contains("leader"),
                    "the refusal says why: {message:?}"
                );
            }
            other => panic!(
                "{cmds:?} proposed by a client gave {other:?}\n{}",
                cluster.logs()
            ),
        }
    }
    let (after, rows) = copies(&client).await.expect("copies");
    assert_eq!(after, term, "the copy term did not move");
    assert!(rows.is_empty(), "no copy recorded: {rows:?}");
    let cfg = client.read("config", false).await.expect("config");
    assert_eq!(cfg["recover_paused"], "false", "{cfg}");
    // Nor can it speak for a chunk or for a node outside the membership
    // (adverts decide what the upgrade gate activates).
    let chunk_advert = Cmd::AdvertiseChunk {
        cid: e.loc[0],
        version: "9.0".into(),
        capabilities: vec![],
    };
    let stranger = Cmd::AdvertiseMember {
        node_id: 9,
        version: "2.0".into(),
        capabilities: vec!["lease_7s".into()],
    };
    // (Under TLS an admin may not advertise any member, docs/security.md;
    // without it, apply refuses a node outside the membership.)
    let stranger_refused = if cluster.certs.is_some() {
        Code::PermissionDenied
    } else {
        Code::FailedPrecondition
    };
    for (cmd, want) in [
        (chunk_advert, Code::PermissionDenied),
        (stranger, stranger_refused),
    ] {
        match client.propose(std::slice::from_ref(&cmd)).await {
            Err(ClientError::Rejected { code, .. }) => assert_eq!(code, want, "{cmd:?}"),
            other => panic!("{cmd:?} proposed by a client gave {other:?}"),
        }
    }
    dump_logs(
        &cluster,
        "a_client_cannot_propose_the_schedulers_own_commands",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_restarting_mid_copy_ends_its_copies_and_none_runs_twice() {
    let _one = SERIAL.lock().await;
    // Given slow copies (several seconds each) recovering a stopped chunk,
    let lease = LEASE_MS.to_string();
    let cluster = cluster_with(&[("lease_ms", &lease)]).await;
    let client = cluster.client();
    let fleet = fleet(&cluster, 6, 40).await;
    let id = volume(&cluster, 30).await;
    let victim = fleet.chunks()[0].cid();
    stop_and_expire(&cluster, &fleet, id, victim).await;
    let (_, running) = wait_for(
        &cluster,
        Duration::from_secs(20),
        "recover copies running",
        || async {
            let (t, rows) = copies(&client).await?;
            if rows.is_empty() {
                Err("no copy yet".into())
            } else {
                Ok((t, rows))
            }
        },
    )
    .await;
    // when the chunk running one of them restarts within its lease (its
    // session is replaced, not expired),
    let busy = running[0].owner;
    let ended: Vec<u64> = running
        .iter()
        .filter(|c| [c.src, c.dst, c.owner].contains(&busy))
        .map(|c| c.copy_id)
        .collect();
    let registrations = fleet
        .chunks()
        .iter()
        .find(|c| c.cid() == busy)
        .map(|c| c.registrations())
        .expect("the executor is in the fleet");
    assert!(fleet.stop_chunk(busy));
    assert!(fleet.start_chunk(busy));
    wait_for(
        &cluster,
        Duration::from_secs(10),
        "the restarted chunk to register again",
        || async {
            let again = fleet
                .chunks()
                .iter()
                .find(|c| c.cid() == busy)
                .map(|c| c.registrations());
            match again {
                Some(n) if n > registrations => Ok(()),
                n => Err(format!("registrations {n:?}")),
            }
        },
    )
    .await;
    // then every copy it took part in ended with its old session (none can
    // be finished by a late report),
    let (_, now) = copies(&client).await.expect("copies");
    let survivors: Vec<&CopyRow> = now.iter().filter(|c| ended.contains(&c.copy_id)).collect();
    assert!(
        survivors.is_empty(),
        "copies of restarted chunk {busy} still running: {survivors:?}"
    );
    // and recovery still completes, no copy started twice.
    wait_recovered(&cluster, id, victim, Duration::from_secs(90)).await;
    wait_idle(&cluster, Duration::from_secs(30)).await;
    let n = fleet.disks().counters();
    assert_eq!(n.duplicates, 0, "a copy ran twice: {n:?}");
    dump_logs(
        &cluster,
        "a_chunk_restarting_mid_copy_ends_its_copies_and_none_runs_twice",
    );
}
