//! A real 3-member cluster on 127.0.0.1: separate `cairn server` processes,
//! real RocksDB fsync, real gRPC.

mod common;

use std::time::Duration;

use cairn_node::client::MetaClient;
use cairn_node::types::pb;
use cairn_state::{Cmd, Reply};
use common::{register, write_chunks, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_member_succeed_and_all_members_converge() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;

    // Given a client that knows only one member, for each member in turn,
    let mut last_index = 0;
    let mut cids = vec![];
    for m in &cluster.members {
        let client = MetaClient::new(vec![m.addr.clone()], cluster.transport()).expect("client");
        for k in 0..5 {
            // when it proposes, the write is forwarded to the leader and applied.
            let cmd = Cmd::RegisterChunk {
                hostname: format!("host-{}-{k}", m.id),
                data_addr: "127.0.0.1:10200".into(),
                brick: None,
                version: "0.1.0".into(),
                capabilities: vec![],
            };
            let (results, index) = client
                .propose(&[cmd])
                .await
                .unwrap_or_else(|e| panic!("write via member {}: {e}\n{}", m.id, cluster.logs()));
            match results.as_slice() {
                [Ok(Reply::Cid(cid))] => cids.push(*cid),
                other => panic!("unexpected results {other:?}"),
            }
            assert!(index > last_index, "log index grows");
            last_index = index;
        }
    }
    // Then cids were assigned 1..=15 in order, once each,
    assert_eq!(cids, (1..=15).collect::<Vec<u32>>());
    // and every member reports the same digest at the same applied index.
    let (applied, _) = cluster
        .wait_converged(last_index, Duration::from_secs(15))
        .await;
    assert!(applied >= last_index);
    let st = cluster.statuses().await;
    for s in st.iter().flatten() {
        assert_eq!(s.chunks, 15);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_write_load_loses_no_acknowledged_write() {
    use std::sync::{Arc, Mutex};
    let mut cluster = Cluster::start(3);
    let old_leader = cluster.wait_for_leader(Duration::from_secs(30)).await;

    // Given a writer that records every acknowledged registration (cids are dense),
    let client = Arc::new(cluster.client());
    let acked: Arc<Mutex<Vec<u32>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                k += 1;
                if let Ok((results, _)) = client.propose(&[register(k)]).await {
                    if let [Ok(Reply::Cid(cid))] = results.as_slice() {
                        acked.lock().unwrap().push(*cid);
                    }
                }
            }
        })
    };
    let count = || acked.lock().unwrap().len();
    common::wait_until(Duration::from_secs(20), "20 acknowledged writes", || {
        let n = count();
        async move { (n >= 20).then_some(()) }
    })
    .await;

    // when the leader is killed with SIGKILL,
    let i = cluster.index_of(old_leader);
    cluster.kill(i);
    let before = count();
    // then writes go on under a new leader,
    common::wait_until(
        Duration::from_secs(30),
        "20 more writes under a new leader",
        || {
            let n = count();
            async move { (n >= before + 20).then_some(()) }
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let new_leader = cluster.leader_status(Duration::from_secs(20)).await;
    assert_ne!(new_leader.leader_id, old_leader);

    // and every acknowledged write is there (cids are assigned 1, 2, 3, ...).
    let acked = acked.lock().unwrap().clone();
    let max = *acked.iter().max().unwrap();
    assert!(
        new_leader.chunks >= u64::from(max),
        "{} chunks, acked up to cid {max}",
        new_leader.chunks
    );

    // The old leader restarts from its disk, catches up, and agrees.
    cluster.restart(i);
    cluster
        .wait_converged(new_leader.applied_index, Duration::from_secs(30))
        .await;
    for s in cluster.statuses().await.iter().flatten() {
        assert!(s.chunks >= u64::from(max));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_from_disk_keeps_the_state() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.wait_settled(Duration::from_secs(30)).await;
    let index = write_chunks(&cluster, 0, 20).await;
    let (_, digest) = cluster.wait_converged(index, Duration::from_secs(15)).await;

    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    // A restarted leader may keep its committed vote and term, or a new term's
    // blank entry may move the applied index: either way the state is the same.
    let (applied, after) = cluster.wait_converged(index, Duration::from_secs(30)).await;
    assert!(applied >= index);
    assert_eq!(after, digest, "same state after a restart from disk");
    assert_eq!(
        cluster.leader_status(Duration::from_secs(10)).await.chunks,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_member_or_cluster_or_none_is_refused() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.kill(2);
    // Member 3's data dir started as member 9.
    let m = &cluster.members[2];
    let err = refused_start(&["--id", "9", "--listen", &m.addr], &m.dir);
    assert!(err.contains("belongs to node 3, not node 9"), "{err}");

    // The same data dir given to member 3 of another cluster (another
    // --init list) is refused too, naming the dir, and left as it was.
    let before = dir_contents(&m.dir);
    let other = format!("1=127.0.0.1:{},3={}", common::free_port(), m.addr);
    let err = refused_start(
        &["--id", "3", "--listen", &m.addr, "--init", &other],
        &m.dir,
    );
    assert!(err.contains("belongs to cluster"), "{err}");
    assert!(err.contains(&m.dir.display().to_string()), "{err}");
    assert_eq!(dir_contents(&m.dir), before, "nothing on disk changed");

    // A restart that finds no data (a wrong or lost --data-dir) does not
    // start an empty member: it refuses and creates nothing.
    let missing = m.dir.with_file_name("never-created");
    let err = refused_start(&["--id", "3", "--listen", &m.addr], &missing);
    assert!(err.contains("holds no cluster"), "{err}");
    assert!(!missing.exists(), "nothing was created");

    // A Raft message from another cluster, or from no cluster, is refused.
    let leader = cluster.leader_status(Duration::from_secs(10)).await;
    // (sent with a member's certificate: anyone else is refused before
    // the cluster id is even looked at, tests/security.rs)
    let channel = cluster
        .transport_as("member:2")
        .channel(&cluster.members[0].addr, |e| e)
        .unwrap();
    let mut raft = pb::raft_client::RaftClient::new(channel);
    for cluster_id in [Some(leader.cluster_id ^ 1), None] {
        let mut req = tonic::Request::new(pb::RaftPayload { data: vec![] });
        if let Some(c) = cluster_id {
            req.metadata_mut().insert("cairn-cluster", c.into());
        }
        let e = raft.vote(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("cluster"), "{e:?}");
    }

    // And the real member 3 still starts from its untouched dir and agrees.
    cluster.restart(2);
    let index = write_chunks(&cluster, 0, 3).await;
    cluster.wait_converged(index, Duration::from_secs(15)).await;
}

/// Runs `cairn server ARGS --data-dir DIR`, which must refuse to start
/// (non-zero exit); returns its stderr.
fn refused_start(args: &[&str], dir: &std::path::Path) -> String {
    let out = std::process::Command::new(common::BIN)
        .arg("server")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .arg("--insecure")
        .output()
        .unwrap();
    assert!(!out.status.success(), "cairn server {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` with its bytes, except RocksDB's own info logs
/// (LOG, LOG.old.*), which any open of the database may rotate.
fn dir_contents(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().unwrap().to_string_lossy().starts_with("LOG") {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn bad_arguments_are_one_clear_line_and_a_non_zero_exit() {
    for args in [
        vec![
            "server",
            "--id",
            "1",
            "--listen",
            "nowhere",
            "--data-dir",
            "/tmp/x",
        ],
        vec![
            "server",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:1",
            "--data-dir",
            "/tmp/x",
            "--init",
            "1=bad",
        ],
        vec![
            "cluster",
            "status",
            "--endpoints",
            "not-an-endpoint",
            "--insecure",
        ],
        vec![
            "cluster",
            "add-learner",
            "4",
            "not-an-address",
            "--insecure",
        ],
    ] {
        let out = std::process::Command::new(common::BIN)
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_catches_up_by_snapshot_and_membership_goes_3_5_3_under_load() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    // Given a cluster that snapshots every 20 entries and purges the log behind,
    let mut cluster = Cluster::start_with(3, &["--snapshot-every", "20"]);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let index = write_chunks(&cluster, 0, 60).await;
    cluster.wait_converged(index, Duration::from_secs(15)).await;

    // and a writer running all along,
    let client = Arc::new(cluster.client());
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let writer = {
        let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut k = 1000;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                if client.propose(&[register(k)]).await.is_ok() {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // when members 4 and 5 start with `--join` (the log they need is purged:
    // they must get a snapshot), become learners and are promoted through the CLI,
    for id in [4, 5] {
        cluster.add_member(id);
        common::wait_until(
            Duration::from_secs(30),
            "the new member to be a learner",
            || async {
                let s = cluster
                    .client()
                    .status_of(&cluster.members[0].addr, true)
                    .await
                    .ok()?;
                s.members
                    .iter()
                    .any(|m| m.node_id == id && !m.voter)
                    .then_some(())
            },
        )
        .await;
        let (ok, out, err) = cluster.cli(&["cluster", "promote", &id.to_string()]);
        assert!(ok, "promote {id}: {out}{err}");
        assert!(out.contains("promoted"), "{out}");
    }
    let snapshot = cluster.members[3].dir.join("sm").join("snapshot");
    assert!(
        snapshot.exists(),
        "member 4 caught up by installing a snapshot"
    );
    let five = cluster.leader_status(Duration::from_secs(10)).await;
    assert_eq!(five.members.iter().filter(|m| m.voter).count(), 5);

    // then back to 3 voters,
    for id in [4, 5] {
        let (ok, out, err) = cluster.cli(&["cluster", "remove", &id.to_string()]);
        assert!(ok, "remove {id}: {out}{err}");
    }
    let three = cluster.leader_status(Duration::from_secs(10)).await;
    let voters: Vec<u64> = three
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    assert_eq!(voters, vec![1, 2, 3]);
    assert_eq!(
        three.members.len(),
        3,
        "removed members are gone, not learners"
    );

    // and writes kept succeeding throughout; members 1-3 agree.
    let before = acked.load(Ordering::Relaxed);
    common::wait_until(
        Duration::from_secs(20),
        "more writes after the changes",
        || {
            let n = acked.load(Ordering::Relaxed);
            async move { (n > before + 5).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    cluster.kill(3);
    cluster.kill(4);
    let last = cluster.leader_status(Duration::from_secs(10)).await;
    cluster
        .wait_converged(last.applied_index, Duration::from_secs(20))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_prints_a_table_and_json() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let index = write_chunks(&cluster, 0, 3).await;
    cluster.wait_converged(index, Duration::from_secs(15)).await;

    let (ok, out, err) = cluster.cli(&["cluster", "status"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0]
        .split_whitespace()
        .eq(["ENDPOINT", "ID", "ROLE", "TERM", "LAST_LOG", "APPLIED", "LAG", "DIGEST"]));
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        lines.iter().filter(|l| l.contains(" leader ")).count(),
        1,
        "{out}"
    );

    let (ok, out, err) = cluster.cli(&["cluster", "status", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert_eq!(r["leader"], leader);
        assert_eq!(r["chunks"], 3);
        assert_eq!(r["lag"], 0, "{r}");
    }
    let digests: std::collections::BTreeSet<_> =
        rows.iter().map(|r| r["digest"].to_string()).collect();
    assert_eq!(digests.len(), 1);
    let clusters: std::collections::BTreeSet<_> =
        rows.iter().map(|r| r["cluster"].to_string()).collect();
    assert_eq!(clusters.len(), 1, "one cluster id: {clusters:?}");
    assert_ne!(rows[0]["cluster"], format!("{:016x}", 0), "{}", rows[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_write_reports_figures_and_batched_replies_reach_their_own_clients() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    // 8 clients each CAS their own extent: a reply routed to the wrong
    // client would carry the wrong generation and count as an error.
    let (ok, out, err) = cluster.cli(&["bench", "write", "--clients", "8", "--duration", "2s"]);
    assert!(ok, "{out}{err}");
    let fields: Vec<&str> = out.split_whitespace().collect();
    let value = |name: &str| -> f64 {
        let i = fields
            .iter()
            .position(|f| *f == name)
            .unwrap_or_else(|| panic!("{name} in {out}"));
        fields[i + 1]
            .parse()
            .unwrap_or_else(|_| panic!("{name} value in {out}"))
    };
    assert_eq!(value("clients"), 8.0);
    assert!(value("writes") > 0.0, "{out}");
    assert!(value("writes/s") > 0.0, "{out}");
    assert!(
        value("p50") <= value("p99") && value("p99") <= value("p999"),
        "{out}"
    );
    assert_eq!(value("errors"), 0.0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topo_chunk_volume_extent_and_config_commands_print_tables_and_json() {
    use cairn_state::ChunkSpaceInfo;
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let ok = |args: &[&str]| -> String {
        let (ok, out, err) = cluster.cli(args);
        assert!(ok, "cairn {args:?} failed: {out}{err}");
        out
    };
    let fails = |args: &[&str], expect: &str| {
        let (ok, out, err) = cluster.cli(args);
        assert!(!ok, "cairn {args:?} should fail: {out}");
        // One line says what is wrong (clap adds a hint line for usage errors).
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ") && first.contains(expect),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    };

    // Topology through the CLI.
    assert_eq!(
        ok(&["topo", "add", "zone", "z1"]).trim(),
        "created topology node 2"
    );
    ok(&["topo", "add", "rack", "r1", "--parent", "2"]);
    ok(&["topo", "add", "brick", "b1", "--parent", "3"]);
    let list = ok(&["topo", "list"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().eq(["4", "brick", "3", "b1"])),
        "{list}"
    );
    fails(
        &["topo", "add", "rack", "r2", "--parent", "99"],
        "topology node 99 not found",
    );

    // Three chunks with sessions and space (what a chunk's register does).
    let client = cluster.client();
    for k in 0..3u64 {
        let (r, _) = client.propose(&[register(k as usize)]).await.unwrap();
        let Ok(Reply::Cid(cid)) = r[0] else {
            panic!("{r:?}")
        };
        let space = ChunkSpaceInfo {
            valid_data_space: 1 << 40,
            total_data_capacity: 1 << 40,
            provisioned_data_space: (k + 1) << 38,
            ..Default::default()
        };
        let cmds = [
            Cmd::MoveChunk {
                cid,
                brick: Some(4),
            },
            Cmd::ReportSpace { cid, space },
            Cmd::OpenSession {
                cid,
                lease_ms: 14_000,
            },
        ];
        let (r, _) = client.propose(&cmds).await.unwrap();
        assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
    }
    let chunks = ok(&["chunk", "list"]);
    assert!(chunks.starts_with("cluster load 50.0% (low)"), "{chunks}");
    assert!(
        chunks
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["1", "chunk1"]) && l.contains("25")),
        "{chunks}"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&["chunk", "list", "--json"])).unwrap();
    assert_eq!(v["chunks"].as_array().unwrap().len(), 3);
    assert_eq!(v["chunks"][2]["load_pct"], 75.0);
    assert_eq!(v["chunks"][2]["load_mode"], "medium");
    fails(&["chunk", "show", "42"], "chunk 42 not found");

    // A volume placed by the leader.
    let out = ok(&[
        "volume",
        "create",
        "vm1",
        "--size",
        "1GiB",
        "--replicas",
        "3",
        "--prefer-cid",
        "2",
    ]);
    assert!(out.contains("4 extents"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["volume", "show", "1", "--json"])).unwrap();
    let extents = v["extents"].as_array().unwrap();
    assert_eq!(extents.len(), 4);
    for e in extents {
        assert_eq!(e["loc"][0], 2, "prefer-local chunk holds replica 1: {e}");
        assert_eq!(e["loc"].as_array().unwrap().len(), 3);
    }
    let first = extents[0]["pid"].as_u64().unwrap();
    let shown = ok(&["extent", "show", &first.to_string()]);
    assert!(shown.lines().next().unwrap().starts_with("PID"), "{shown}");
    assert_eq!(ok(&["extent", "list", "--volume", "1"]).lines().count(), 5);
    assert!(ok(&["volume", "list"]).contains("vm1"));
    fails(
        &[
            "volume",
            "create",
            "vm2",
            "--size",
            "1GiB",
            "--prefer-cid",
            "77",
        ],
        "chunk 77 not found",
    );
    fails(
        &["volume", "create", "vm3", "--size", "lots"],
        "expected e.g. 100GiB",
    );

    // Config.
    ok(&["config", "set", "load_high_pct", "90"]);
    assert!(ok(&["config", "get", "load_high_pct"]).contains("90"));
    fails(&["config", "set", "load_high_pct", "101"], "invalid value");
    fails(&["config", "set", "no_such_key", "1"], "unknown config key");

    // Chunk administration.
    ok(&["chunk", "rename", "3", "edge-3"]);
    ok(&["chunk", "failslow", "3"]);
    ok(&["chunk", "drain", "3"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&["chunk", "show", "3"])).unwrap();
    assert_eq!(v["name"], "edge-3", "{v}");
    assert_eq!(v["failslow"], true, "{v}");
    assert_eq!(v["state"], "removing", "{v}");
    fails(&["chunk", "remove", "3"], "still");
    fails(&["chunk", "drain", "42"], "chunk 42 not found");

    // The typed write RPCs: a compare-and-set on the extent's generation
    // succeeds once, and a second writer holding the old generation is
    // told ABORTED; unknown ids are NOT_FOUND.
    let gen = extents[0]["generation"].as_u64().unwrap();
    let cas = |expected_generation| pb::UpdateExtentRequest {
        pid: first,
        expected_generation,
        lease_owner: Some(1),
        ..Default::default()
    };
    let r = client.update_extent(cas(gen)).await.unwrap();
    assert_eq!(r.generation, gen + 1);
    let e = client.update_extent(cas(gen)).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Aborted), "{e}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["extent", "show", &first.to_string(), "--json"])).unwrap();
    assert_eq!(v["lease_owner"], 1, "{v}");
    assert_eq!(v["generation"], gen + 1, "{v}");
    let e = client
        .set_failslow(pb::SetFailslowRequest {
            cid: 42,
            failslow: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound), "{e}");
    let e = client
        .add_topo(pb::AddTopoRequest {
            kind: 0,
            parent: 1,
            name: "z".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");

    // Commands only the leader's runners decide are refused from clients.
    for cmd in [
        Cmd::ExpireSession {
            cid: 1,
            session_id: 1,
        },
        Cmd::SessionCheckpoint { silent: vec![] },
        Cmd::ActivateFeature {
            name: "lease_7s".into(),
        },
    ] {
        let e = client.propose(&[cmd]).await.unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::PermissionDenied), "{e}");
    }

    // Deleting the volume forgets its extents.
    ok(&["volume", "delete", "1"]);
    fails(&["volume", "show", "1"], "volume 1 not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_dev_runs_a_quorum_and_8_live_chunks_the_cli_finds_by_default() {
    // Given `cairn dev` started in the background (its own CAIRN_HOME),
    let mut dev = common::Dev::start(&[]);

    // when the CLI runs without --endpoints, it finds the quorum, and within
    // seconds sees 8 live chunks with sessions on 2 racks,
    let chunks = common::wait_until(
        Duration::from_secs(60),
        "8 live chunks in `cairn chunk list`",
        || {
            let (ok, out, _) = dev.cli(&["chunk", "list", "--json"]);
            async move {
                let v: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
                let chunks = v["chunks"].as_array()?.clone();
                (chunks.len() == 8 && chunks.iter().all(|c| c["alive"] == "alive"))
                    .then_some(chunks)
            }
        },
    )
    .await;
    let bricks: std::collections::BTreeSet<u64> =
        chunks.iter().filter_map(|c| c["brick"].as_u64()).collect();
    assert_eq!(bricks.len(), 2, "two racks, one brick each: {chunks:?}");
    let (ok, out, err) = dev.cli(&["session", "list"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2 + 8, "{out}");
    // TLS is on by default: the CLI talked as the admin `cairn dev` issued
    // and recorded (tests/security.rs proves a client without it is refused).
    let recorded = std::fs::read_to_string(dev.home.path().join("dev-tls")).unwrap();
    assert!(
        recorded.contains("identity=") && recorded.contains("ca="),
        "{recorded}"
    );
    let (ok, out, err) = dev.cli(&["cluster", "status"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains("127.0.0.1")).count(),
        3,
        "{out}"
    );
    assert_eq!(out.matches("leader").count(), 1, "{out}");
    // and the fleet's control answers: a stopped chunk shows as not running.
    let cid = chunks[0]["cid"].to_string();
    let (ok, out, err) = dev.cli(&["fleet", "stop", &cid]);
    assert!(ok && out.contains("false"), "{out}{err}");
    let endpoints: Vec<String> = std::fs::read_to_string(dev.home.path().join("dev-endpoints"))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();

    // Then Ctrl-C stops every member it started.
    let status = dev.stop().expect("cairn dev exits on Ctrl-C");
    assert!(status.success(), "{status:?}");
    for e in endpoints {
        assert!(
            std::net::TcpStream::connect(&e).is_err(),
            "member {e} still listening"
        );
    }
    assert!(!dev.home.path().join("dev-endpoints").exists());
    assert!(!dev.home.path().join("dev-tls").exists());
}
