//! Chunk sessions against a real 3-member cluster: a fleet of simulated
//! chunks (in this process) keeps sessions alive through the `Chunk` service
//! while members are killed, paused and restarted.
//!
//! The tests assert time bounds (expiry within a lease and an interval), so
//! they run one at a time: a cluster per test, never two sharing the cores.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_node::client::MetaClient;
use cairn_node::fleet::Fleet;
use cairn_node::types::pb;
use cairn_sched::keepalive_interval_ms;
use common::Cluster;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn fleet(cluster: &Cluster, chunks: usize) -> Fleet {
    let mut cfg = cluster.fleet_config(chunks);
    cfg.zones = 0;
    let fleet = Fleet::start(cfg).await.expect("fleet starts");
    assert!(
        fleet.wait_registered(Duration::from_secs(30)).await,
        "every chunk registered\n{}",
        cluster.logs()
    );
    fleet
}

async fn set_lease(client: &MetaClient, ms: u64) {
    client
        .set_config(pb::SetConfigRequest {
            key: "lease_ms".into(),
            value: ms.to_string(),
        })
        .await
        .expect("set lease_ms");
}

/// cid -> live session id, from a linearizable read of the replicated state.
async fn sessions(client: &MetaClient) -> BTreeMap<u32, Option<u64>> {
    let v = client.read("chunks", false).await.expect("read chunks");
    v["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| (c["cid"].as_u64().unwrap() as u32, c["session"].as_u64()))
        .collect()
}

fn fleet_sessions(fleet: &Fleet) -> BTreeMap<u32, Option<u64>> {
    fleet
        .chunks()
        .iter()
        .map(|c| (c.cid(), Some(c.session_id())))
        .collect()
}

/// kill -9 the leader, wait for another one, restart the old one.
async fn change_leader(cluster: &mut Cluster) -> u64 {
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let i = cluster.index_of(leader);
    cluster.kill(i);
    let new = cluster
        .wait_for_leader_except(i, Duration::from_secs(30))
        .await;
    cluster.restart(i);
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_chunk_expires_within_a_lease_and_an_interval_and_a_restart_replaces_its_session()
{
    let _one = SERIAL.lock().await;
    // Given a 3 s lease and three chunks holding a 3-replica extent,
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    let lease = 3_000;
    set_lease(&client, lease).await;
    let fleet = fleet(&cluster, 3).await;
    let v = client
        .create_volume(pb::CreateVolumeRequest {
            name: "v".into(),
            size_bytes: 1,
            replicas: 3,
            ..Default::default()
        })
        .await
        .expect("volume");
    let pid = v.first_pid;
    let victim = fleet.chunks()[0].cid();

    // when one chunk stops keeping alive,
    assert!(fleet.stop_chunk(victim));
    let stopped = Instant::now();
    common::wait_until(
        Duration::from_secs(20),
        "the silent chunk to expire",
        || async { sessions(&client).await[&victim].is_none().then_some(()) },
    )
    .await;
    let took = stopped.elapsed();

    // then it expires after its lease, within a lease and one keepalive interval,
    let bound = Duration::from_millis(lease + keepalive_interval_ms(lease));
    assert!(took <= bound, "expired after {took:?}, bound {bound:?}");
    assert!(
        took >= Duration::from_millis(lease - keepalive_interval_ms(lease)),
        "expired after only {took:?}"
    );
    // and its replica leaves alive_loc; the others stay alive.
    let e = client.read(&format!("extent {pid}"), false).await.unwrap();
    let alive: Vec<u64> = e["alive_loc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(alive.len(), 2, "{e}");
    assert!(!alive.contains(&u64::from(victim)), "{e}");
    // The other chunks kept theirs.
    let live = sessions(&client).await;
    assert_eq!(live.values().filter(|s| s.is_some()).count(), 2);

    // When it comes back, it registers again with its cid and a new session.
    let before = live.values().flatten().max().copied().unwrap();
    assert!(fleet.start_chunk(victim));
    let back = common::wait_until(Duration::from_secs(10), "the chunk back", || async {
        sessions(&client).await[&victim]
    })
    .await;
    assert!(back > before);

    // A restart before expiry (stop, start at once) replaces the live
    // session in one entry: a new id, never two sessions for one cid.
    let other = fleet.chunks()[1].cid();
    let old = sessions(&client).await[&other].unwrap();
    fleet.stop_chunk(other);
    fleet.start_chunk(other);
    let new = common::wait_until(Duration::from_secs(10), "a new session", || async {
        sessions(&client).await[&other].filter(|s| *s != old)
    })
    .await;
    assert!(new > old);
    let listed = client.list_sessions().await.unwrap();
    let mine: Vec<_> = listed.sessions.iter().filter(|s| s.cid == other).collect();
    assert_eq!(mine.len(), 1, "{listed:?}");
    assert_eq!(mine[0].session_id, new);
    assert_eq!(listed.sessions.len(), 3, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_expires_while_the_leader_is_killed_20_times() {
    let _one = SERIAL.lock().await;
    // Given 8 chunks keeping their sessions alive (14 s lease),
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    let fleet = fleet(&cluster, 8).await;
    let before = sessions(&client).await;
    assert_eq!(before, fleet_sessions(&fleet));

    // when the leader is killed 20 times in a row (each time a new one is
    // elected and the old one restarts from its disk),
    for _ in 0..20 {
        change_leader(&mut cluster).await;
    }

    // then not one session expired: every chunk has the session it opened
    // first, and registered exactly once.
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    assert_eq!(sessions(&client).await, before, "{}", cluster.logs());
    for c in fleet.chunks() {
        assert_eq!(c.session_id(), before[&c.cid()].unwrap());
    }
    assert!(
        !cluster.logs().contains("session expired"),
        "no member expired a session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_chunk_expires_within_two_leases_while_the_leader_changes_every_5_s() {
    let _one = SERIAL.lock().await;
    // Given four chunks with the default 14 s lease (members of the first
    // release: lease_7s cannot activate),
    let mut cluster = Cluster::start_with(3, &["--emulate-version", "1.0"]);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    let lease = Duration::from_millis(14_000);
    let fleet = fleet(&cluster, 4).await;
    let victim = fleet.chunks()[0].cid();

    // when one of them dies and the leader changes every 5 s,
    fleet.stop_chunk(victim);
    let died = Instant::now();
    let mut changes = 0;
    let mut last_change = Instant::now();
    loop {
        if sessions(&client).await[&victim].is_none() {
            break;
        }
        assert!(
            died.elapsed() < 2 * lease,
            "the dead chunk was still not expired after {:?} and {changes} leader changes\n{}",
            died.elapsed(),
            cluster.logs()
        );
        if last_change.elapsed() >= Duration::from_secs(5) {
            last_change = Instant::now();
            change_leader(&mut cluster).await;
            changes += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // then it still expired within two leases, the leader changing meanwhile,
    let took = died.elapsed();
    assert!(took < 2 * lease, "{took:?}");
    assert!(changes >= 2, "only {changes} leader changes in {took:?}");
    // and the live chunks kept their sessions.
    let live = sessions(&client).await;
    assert_eq!(live.values().filter(|s| s.is_some()).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_that_wakes_up_gets_no_expiry_applied() {
    let _one = SERIAL.lock().await;
    // Given a 3 s lease and four chunks keeping alive,
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    let lease = 3_000u64;
    set_lease(&client, lease).await;
    let fleet = fleet(&cluster, 4).await;
    let before = sessions(&client).await;

    // when the leader is paused (SIGSTOP) long enough for a new leader to be
    // elected and to serve the chunks for two leases, then resumed, so that
    // the old leader's clock says no chunk was heard from for many leases,
    let i = cluster.index_of(leader);
    cluster.signal(i, "STOP");
    let paused = Instant::now();
    let new = cluster
        .wait_for_leader_except(i, Duration::from_secs(30))
        .await;
    assert_ne!(new, leader);
    let others: Vec<String> = cluster
        .members
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != i)
        .map(|(_, m)| m.addr.clone())
        .collect();
    let others = MetaClient::new(others, cluster.transport()).unwrap();
    common::wait_until(
        Duration::from_secs(30),
        "the new leader to track sessions for two leases",
        || async {
            let l = others.list_sessions().await.ok()?;
            (l.leader_id == new && l.tracking_ms >= 2 * lease).then_some(())
        },
    )
    .await;
    assert!(paused.elapsed() >= Duration::from_millis(2 * lease));
    cluster.signal(i, "CONT");

    // then the old leader steps down and no expiry takes effect: every
    // member converges on a state where each chunk keeps its first session.
    let index = cluster
        .leader_status(Duration::from_secs(30))
        .await
        .applied_index;
    cluster.wait_converged(index, Duration::from_secs(30)).await;
    let statuses = cluster.statuses().await;
    assert!(statuses.iter().flatten().all(|s| s.leader_id == new));
    assert_eq!(sessions(&client).await, before, "{}", cluster.logs());
    for c in fleet.chunks() {
        assert_eq!(c.session_id(), before[&c.cid()].unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_chunk_registering_twice_at_once_gets_one_cid() {
    let _one = SERIAL.lock().await;
    // Given a chunk whose first registration is retried while still running
    // (its answer was late), both sent to the leader at once (plain TCP: a
    // chunk certificate may not register as new, tests/security.rs),
    let cluster = Cluster::start_insecure(3);
    let leader = cluster.leader_status(Duration::from_secs(30)).await;
    let addr = cluster.members[cluster.index_of(leader.leader_id)]
        .addr
        .clone();
    let register = || {
        let addr = addr.clone();
        async move {
            let c = pb::chunk_client::ChunkClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
            let req = pb::RegisterRequest {
                cid: 0,
                hostname: "twice".into(),
                data_addr: "127.0.0.1:7999".into(),
                version: cairn_capability::CURRENT_VERSION.into(),
                capabilities: cairn_capability::Advert::current()
                    .capabilities
                    .into_iter()
                    .collect(),
                ..Default::default()
            };
            common::wait_until(Duration::from_secs(20), "a registration", || {
                let (mut c, req) = (c.clone(), req.clone());
                async move { c.register(req).await.ok().map(|r| r.into_inner()) }
            })
            .await
        }
    };
    let (a, b) = tokio::join!(register(), register());

    // then both answers name the same chunk, and the cluster has one chunk.
    assert_eq!(a.cid, b.cid);
    let client = cluster.client();
    assert_eq!(sessions(&client).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_wire_renews_on_the_leader_redirects_from_followers_and_drops_garbage() {
    use cairn_node::meta_service::LEADER_KEY;
    use cairn_node::session_wire::{WireClient, MAGIC};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tonic::Code;

    let _one = SERIAL.lock().await;
    // Plain TCP: the wire's own framing is under test (the fleets of the
    // other tests keep alive on it over TLS).
    let cluster = Cluster::start_insecure(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let leader_addr = cluster.addrs()[cluster.index_of(leader)].clone();
    let follower_addr = cluster
        .addrs()
        .into_iter()
        .find(|a| *a != leader_addr)
        .expect("a follower");
    // Given a new cluster, where lease_7s activates at once (7 s lease),
    let client = cluster.client();
    common::wait_until(Duration::from_secs(30), "lease_7s active", || {
        let client = &client;
        async move {
            let r = client
                .upgrade_status(pb::UpgradeStatusRequest {})
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&r.json).ok()?;
            (v["lease_ms"] == 7_000).then_some(())
        }
    })
    .await;
    // and a chunk with a session (the fleet keeps alive on the wire),
    let fleet = fleet(&cluster, 1).await;
    let (cid, session_id) = (fleet.chunks()[0].cid(), fleet.chunks()[0].session_id());
    let wire = WireClient::new(cluster.transport());
    let ka = |session_id| pb::KeepAliveRequest {
        cid,
        session_id,
        space: None,
        results: vec![],
        progress: vec![],
    };
    let wait = Duration::from_secs(5);

    // the leader renews it and answers with the lease,
    let ok = wire
        .keepalive(&leader_addr, ka(session_id), wait)
        .await
        .expect("the leader renews the session");
    assert_eq!(ok.lease_ms, 7_000);
    assert_eq!(ok.keepalive_ms, keepalive_interval_ms(7_000));
    // an unknown session is told to register again,
    let gone = wire
        .keepalive(&leader_addr, ka(session_id + 1000), wait)
        .await
        .expect_err("an unknown session");
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    // and a follower names the leader.
    let redirect = wire
        .keepalive(&follower_addr, ka(session_id), wait)
        .await
        .expect_err("a follower does not serve sessions");
    assert_eq!(redirect.code(), Code::Unavailable, "{redirect:?}");
    assert_eq!(
        redirect
            .metadata()
            .get(LEADER_KEY)
            .and_then(|v| v.to_str().ok()),
        Some(leader_addr.as_str())
    );

    // A connection that starts like the wire but is not, and one that
    // announces an oversized frame, are closed; the member keeps serving.
    let closed = |hello: Vec<u8>| {
        let addr = leader_addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            s.write_all(&hello).await.expect("write");
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
                .await
                .expect("the member closes the connection in time");
            assert!(matches!(n, Ok(0) | Err(_)), "expected EOF, got {n:?}");
        }
    };
    closed(b"CAIRNXX1".to_vec()).await;
    let mut big = MAGIC.to_vec();
    big.extend_from_slice(&u32::MAX.to_be_bytes());
    closed(big).await;
    let before = fleet.chunks()[0].keepalives();
    let status = cluster
        .client()
        .status_of(&leader_addr, true)
        .await
        .expect("gRPC on the same port still answers");
    assert_eq!(status.node_id, leader);
    common::wait_until(Duration::from_secs(10), "the chunk keeps alive", || async {
        (fleet.chunks()[0].keepalives() > before).then_some(())
    })
    .await;
    drop(fleet);
}
