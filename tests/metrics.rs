//! `/metrics` of real members (`cairn server --metrics-addr`): the named
//! series exist and follow what the cluster does (writes, a chunk's session
//! expiring, the recovery that follows, the lease capability).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_node::fleet::Fleet;
use cairn_node::types::pb;
use common::{dump_logs, wait_for, Cluster};

const EXTENT: u64 = 256 << 20;

/// `name{labels}` -> value, for every sample line.
type Samples = BTreeMap<String, f64>;

fn parse(body: &str) -> Result<Samples, String> {
    let mut out = Samples::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("bad sample line {line:?}"))?;
        let v: f64 = value
            .parse()
            .map_err(|e| format!("bad value in {line:?}: {e}"))?;
        out.insert(key.to_string(), v);
    }
    Ok(out)
}

/// The samples of `addr`, with a chunked-encoding-free body (axum sends a
/// Content-Length for a String body).
async fn scrape(addr: &str) -> Result<Samples, String> {
    let (status, _, body) = common::http_get(addr, "/metrics").await?;
    if !status.contains(" 200 ") {
        return Err(format!("{status}: {body}"));
    }
    parse(&body)
}

fn val(s: &Samples, key: &str) -> Result<f64, String> {
    s.get(key)
        .copied()
        .ok_or_else(|| format!("no series {key} in {s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_writes_sessions_recovery_and_capabilities() {
    let cluster = Cluster::start_with_metrics(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    client
        .set_config(pb::SetConfigRequest {
            key: "lease_ms".into(),
            value: "3000".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("set lease: {e}\n{}", cluster.logs()));

    // The exposition itself: status, content type, the EOF marker, and a
    // 404 elsewhere.
    let m0 = cluster.members[0].metrics.clone();
    let (status, headers, body) = wait_for(&cluster, Duration::from_secs(10), "a scrape", || {
        let m0 = m0.clone();
        async move { common::http_get(&m0, "/metrics").await }
    })
    .await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: application/openmetrics-text"),
        "{headers}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert!(
        body.contains("# TYPE cairn_raft_append_seconds histogram"),
        "{body}"
    );
    let (status, _, _) = common::http_get(&m0, "/nope").await.expect("GET /nope");
    assert!(status.contains(" 404 "), "{status}");

    // Five unracked chunks and a volume on them, then writes.
    let mut cfg = cluster.fleet_config(5);
    cfg.zones = 0;
    cfg.bandwidth_mb_s = 4_096;
    let fleet = Fleet::start(cfg).await.expect("fleet starts");
    assert!(
        fleet.wait_registered(Duration::from_secs(30)).await,
        "every chunk registered\n{}",
        cluster.logs()
    );
    let v = client
        .create_volume(pb::CreateVolumeRequest {
            name: "m".into(),
            size_bytes: 8 * EXTENT,
            replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create volume: {e}\n{}", cluster.logs()));
    let (_, index) = client
        .propose(&[cairn_state::Cmd::RenameTopo {
            id: cairn_state::ROOT_ID,
            name: "root-renamed".into(),
        }])
        .await
        .unwrap_or_else(|e| panic!("write: {e}\n{}", cluster.logs()));

    // Raft: every member reaches the write's index, agrees on the term and
    // the leader; exactly one says it leads; appends were timed.
    let (all, li) = wait_for(
        &cluster,
        Duration::from_secs(20),
        "every member's figures at the write's index",
        || {
            let addrs: Vec<String> = cluster.members.iter().map(|m| m.metrics.clone()).collect();
            async move {
                let mut all = vec![];
                for a in &addrs {
                    let s = scrape(a).await?;
                    let applied = val(&s, "cairn_raft_applied_index")?;
                    if applied < index as f64 || val(&s, "cairn_raft_commit_index")? < index as f64
                    {
                        return Err(format!("{a}: applied {applied} < {index}"));
                    }
                    all.push(s);
                }
                // One term, one leader, known to all (an election on a
                // loaded machine just means another try).
                let terms: Vec<f64> = all
                    .iter()
                    .map(|s| val(s, "cairn_raft_term").unwrap_or(-1.0))
                    .collect();
                if !terms.iter().all(|t| *t >= 1.0 && *t == terms[0]) {
                    return Err(format!("terms {terms:?}"));
                }
                let leading: Vec<usize> = (0..all.len())
                    .filter(|i| val(&all[*i], "cairn_raft_is_leader") == Ok(1.0))
                    .collect();
                let [li] = leading[..] else {
                    return Err(format!("members saying they lead: {leading:?}"));
                };
                let id = (li + 1) as f64;
                if !all.iter().all(|s| val(s, "cairn_raft_leader_id") == Ok(id)) {
                    return Err(format!("not every member names member {id} leader"));
                }
                Ok((all, li))
            }
        },
    )
    .await;
    for s in &all {
        assert!(val(s, "cairn_raft_last_log_index").unwrap() >= index as f64);
        assert_eq!(val(s, "cairn_raft_members{role=\"voter\"}").unwrap(), 3.0);
        assert!(
            val(s, "cairn_raft_append_seconds_count").unwrap() >= 1.0,
            "appends timed on every member"
        );
        assert!(val(s, "cairn_raft_log_syncs_total").unwrap() >= 1.0);
        assert_eq!(val(s, "cairn_sessions_live").unwrap(), 5.0);
        assert_eq!(val(s, "cairn_sessions_expired_total").unwrap(), 0.0);
        for kind in ["recover", "migrate"] {
            assert!(
                s.contains_key(&format!("cairn_sched_queued{{kind=\"{kind}\"}}")),
                "{s:?}"
            );
            assert!(s.contains_key(&format!("cairn_sched_running{{kind=\"{kind}\"}}")));
            assert!(s.contains_key(&format!("cairn_sched_completed_total{{kind=\"{kind}\"}}")));
            assert!(s.contains_key(&format!("cairn_sched_failed_total{{kind=\"{kind}\"}}")));
        }
    }
    assert!(
        val(&all[li], "cairn_raft_cmds_per_entry_count").unwrap() >= 1.0,
        "the leader's batcher proposed"
    );
    // Every member and chunk runs this binary: the capabilities activate
    // (the lease's and the copies' one, after which the leader's scheduler
    // takes office).
    let addrs: Vec<String> = cluster.members.iter().map(|m| m.metrics.clone()).collect();
    wait_for(
        &cluster,
        Duration::from_secs(30),
        "capabilities active, scheduler leading",
        || {
            let addrs = addrs.clone();
            async move {
                let mut leading = vec![];
                for a in &addrs {
                    let s = scrape(a).await?;
                    for cap in ["lease_7s", "copy_commands"] {
                        let active = val(
                            &s,
                            &format!(
                                "cairn_capability_state{{capability=\"{cap}\",state=\"active\"}}"
                            ),
                        )?;
                        let blocked = val(
                            &s,
                            &format!(
                                "cairn_capability_state{{capability=\"{cap}\",state=\"blocked\"}}"
                            ),
                        )?;
                        if active != 1.0 || blocked != 0.0 {
                            return Err(format!("{a}: {cap} active {active} blocked {blocked}"));
                        }
                    }
                    if val(&s, "cairn_sched_leading")? == 1.0 {
                        if val(&s, "cairn_raft_is_leader")? != 1.0 {
                            return Err(format!("{a} schedules but does not lead"));
                        }
                        leading.push(a.clone());
                    }
                }
                match leading.len() {
                    1 => Ok(()),
                    n => Err(format!("{n} members run the scheduler")),
                }
            }
        },
    )
    .await;

    // Stop the chunk holding the most replicas: its session expires (on
    // every member's counter: each applies the expiry) and the leader's
    // recoveries finish.
    let vol = client
        .read(&format!("volume {}", v.volume_id), false)
        .await
        .expect("read volume");
    let mut held: BTreeMap<u64, usize> = BTreeMap::new();
    for e in vol["extents"].as_array().expect("extents") {
        for c in e["loc"].as_array().expect("loc") {
            *held.entry(c.as_u64().unwrap_or(0)).or_default() += 1;
        }
    }
    let (&victim, &lost) = held.iter().max_by_key(|(_, n)| **n).expect("a replica");
    assert!(fleet.stop_chunk(victim as u32), "stop chunk {victim}");
    wait_for(
        &cluster,
        Duration::from_secs(60),
        "the expiry and the recoveries in the metrics",
        || {
            let addrs = addrs.clone();
            async move {
                // Completions counted by whichever member led when they
                // ended; the queue is the scheduling member's.
                let (mut done, mut queued) = (0.0, 0.0);
                let mut running = 0.0;
                for a in &addrs {
                    let s = scrape(a).await?;
                    let expired = val(&s, "cairn_sessions_expired_total")?;
                    let live = val(&s, "cairn_sessions_live")?;
                    if expired < 1.0 || live != 4.0 {
                        return Err(format!("{a}: expired {expired}, live {live}"));
                    }
                    done += val(&s, "cairn_sched_completed_total{kind=\"recover\"}")?;
                    queued += val(&s, "cairn_sched_queued{kind=\"recover\"}")?;
                    running = val(&s, "cairn_sched_running{kind=\"recover\"}")?;
                }
                if done < lost as f64 || queued != 0.0 || running != 0.0 {
                    return Err(format!(
                        "recover: completed {done} of {lost}, queued {queued}, running {running}"
                    ));
                }
                Ok(())
            }
        },
    )
    .await;
    dump_logs(&cluster, "metrics");
}
