//! Certificates and (as issue 10 lands) the refusals of mutual TLS, through
//! the `cairn` binary as an operator runs it.

use std::path::Path;
use std::process::Command;

fn cairn(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("run cairn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn an_operator_creates_a_ca_and_issues_identities_that_are_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, m1, alice) = (
        tmp.path().join("ca"),
        tmp.path().join("member-1"),
        tmp.path().join("alice"),
    );
    let (ok, out, err) = cairn(&["cert", "init", "--dir", p(&ca)]);
    assert!(ok, "{err}");
    assert!(out.contains("keep it offline"), "{out}");
    for (role, dir) in [("member:1", &m1), ("admin:alice", &alice)] {
        let (ok, _, err) = cairn(&[
            "cert",
            "issue",
            "--ca",
            p(&ca),
            "--role",
            role,
            "--out",
            p(dir),
        ]);
        assert!(ok, "{err}");
        let (ok, out, err) = cairn(&["--json", "cert", "show", p(dir)]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["role"], role);
        assert_eq!(v["check"], "valid: chains to ca.pem");
    }
    // Issuing again into the same directory changes nothing.
    let key = std::fs::read(m1.join("key.pem")).unwrap();
    let (ok, _, err) = cairn(&[
        "cert",
        "issue",
        "--ca",
        p(&ca),
        "--role",
        "member:1",
        "--out",
        p(&m1),
    ]);
    assert!(!ok);
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(std::fs::read(m1.join("key.pem")).unwrap(), key);
    // So does a second init.
    let (ok, _, err) = cairn(&["cert", "init", "--dir", p(&ca)]);
    assert!(!ok && err.contains("exists already"), "{err}");
    // A role that is not one is refused before anything is written.
    let (ok, _, err) = cairn(&[
        "cert",
        "issue",
        "--ca",
        p(&ca),
        "--role",
        "root:1",
        "--out",
        p(&tmp.path().join("x")),
    ]);
    assert!(!ok && err.contains("is not a role"), "{err}");
    assert!(!tmp.path().join("x").exists());
    // An identity of another CA does not chain to this one's ca.pem.
    let other = tmp.path().join("other-ca");
    assert!(cairn(&["cert", "init", "--dir", p(&other)]).0);
    let mixed = tmp.path().join("mixed");
    assert!(
        cairn(&[
            "cert",
            "issue",
            "--ca",
            p(&other),
            "--role",
            "reader:r",
            "--out",
            p(&mixed)
        ])
        .0
    );
    std::fs::copy(ca.join("ca.pem"), mixed.join("ca.pem")).unwrap();
    let (ok, out, err) = cairn(&["--json", "cert", "show", p(&mixed)]);
    assert!(ok, "{err}");
    assert!(out.contains("not issued by this cluster's CA"), "{out}");
}

// ------------------------------------------------------------ refusals
//
// One cluster with mutual TLS, and a caller for every way of being refused:
// each gets the status and the message the operator needs, the member logs
// it, and the cluster keeps serving.

mod common;

use std::time::Duration;

use cairn_node::client::MetaClient;
use cairn_node::session_wire::WireClient;
use cairn_node::tls::{certs, Ca, Role};
use cairn_node::transport::Transport;
use cairn_node::types::pb;
use cairn_state::Cmd;
use common::Cluster;
use tonic::transport::Channel;
use tonic::Code;

fn channel(t: &Transport, addr: &str) -> Channel {
    t.channel(addr, |e| e.timeout(Duration::from_secs(5)))
        .expect("a channel")
}

fn meta(t: &Transport, addr: &str) -> pb::meta_client::MetaClient<Channel> {
    pb::meta_client::MetaClient::new(channel(t, addr))
}

fn chunk_api(t: &Transport, addr: &str) -> pb::chunk_client::ChunkClient<Channel> {
    pb::chunk_client::ChunkClient::new(channel(t, addr))
}

/// `role`'s identity issued by `ca` with validity `[from, until]`, into `dir`.
fn issue(
    ca: &Ca,
    role: &str,
    from: time::OffsetDateTime,
    until: time::OffsetDateTime,
    dir: &Path,
) -> Transport {
    let role: Role = role.parse().unwrap();
    ca.issue_into(&role, from, until, dir).unwrap();
    Transport::load(dir).unwrap()
}

/// A stale read of the configuration from the member at `addr`, as `t`.
async fn read_config(
    t: &Transport,
    addr: &str,
) -> Result<tonic::Response<pb::ReadResponse>, tonic::Status> {
    meta(t, addr)
        .read(pb::ReadRequest {
            stale: true,
            what: "config".into(),
        })
        .await
}

/// The admin's registration of a new chunk (its cid comes back).
fn new_chunk(hostname: &str, data_addr: &str) -> pb::RegisterChunkRequest {
    pb::RegisterChunkRequest {
        hostname: hostname.into(),
        data_addr: data_addr.into(),
        brick: None,
        version: cairn_capability::CURRENT_VERSION.into(),
        capabilities: cairn_capability::Advert::current()
            .capabilities
            .into_iter()
            .collect(),
    }
}

fn keepalive(cid: u32) -> pb::KeepAliveRequest {
    pb::KeepAliveRequest {
        cid,
        session_id: 1,
        space: None,
        results: vec![],
        progress: vec![],
    }
}

fn register(cid: u32) -> pb::RegisterRequest {
    pb::RegisterRequest {
        cid,
        hostname: format!("host-{cid}"),
        data_addr: "127.0.0.1:29000".into(),
        version: cairn_capability::CURRENT_VERSION.into(),
        capabilities: cairn_capability::Advert::current()
            .capabilities
            .into_iter()
            .collect(),
        space: None,
        brick: None,
    }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, says: &str) {
    let e = r.expect_err("refused");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(
        e.message().contains(says),
        "{:?} should say {says:?}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_beyond_its_certificate_is_refused_with_the_right_status() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let certs = cluster.certs.as_ref().expect("a TLS cluster");
    let addr = cluster.members[0].addr.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (from, until) = certs::validity(1);

    // Two chunks registered by the admin: cids to speak for.
    let admin = cluster.client();
    let mut cids = vec![];
    for i in 0..2 {
        let r = admin
            .register_chunk(new_chunk(
                &format!("sec-{i}"),
                &format!("127.0.0.1:{}", 29100 + i),
            ))
            .await
            .expect("the admin registers a chunk");
        cids.push(r.cid);
    }
    let (own, other) = (cids[0], cids[1]);
    // (The member under test answers its admin: what follows is refused
    // for who is asking, not because the member is down.)
    read_config(&cluster.transport(), &addr)
        .await
        .expect("the admin reads");

    // A certificate of another CA (its holder trusts the cluster's CA, so
    // the handshake completes): UNAUTHENTICATED, naming why.
    let other_ca = Ca::generate("mallory", from, until).unwrap();
    let stranger_dir = tmp.path().join("stranger");
    issue(&other_ca, "admin:mallory", from, until, &stranger_dir);
    std::fs::copy(certs.ca.join("ca.pem"), stranger_dir.join("ca.pem")).unwrap();
    let stranger = Transport::load(&stranger_dir).unwrap();
    refused(
        read_config(&stranger, &addr).await,
        Code::Unauthenticated,
        "not issued by this cluster's CA",
    );
    refused(
        chunk_api(&stranger, &addr).register(register(own)).await,
        Code::Unauthenticated,
        "not issued by this cluster's CA",
    );

    // An expired certificate of the right CA: UNAUTHENTICATED, "expired".
    let ca = Ca::load(&certs.ca).unwrap();
    let day = time::Duration::days(1);
    let expired = issue(
        &ca,
        "admin:old",
        from - 10 * day,
        from - day,
        &tmp.path().join("old"),
    );
    refused(
        read_config(&expired, &addr).await,
        Code::Unauthenticated,
        "expired",
    );

    // A client that trusts another CA does not talk to the members at all
    // (it could be talking to an impostor).
    let wrong_trust = issue(
        &other_ca,
        "admin:lost",
        from,
        until,
        &tmp.path().join("lost"),
    );
    let e = read_config(&wrong_trust, &addr)
        .await
        .expect_err("the member's certificate is not trusted");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    // A chunk speaks only for its cid: registering, keeping alive (gRPC and
    // the session wire) as another cid, or as a new chunk, is PERMISSION_DENIED.
    let chunk = certs.transport(&format!("chunk:{own}"));
    let mut c = chunk_api(&chunk, &addr);
    refused(
        c.register(register(other)).await,
        Code::PermissionDenied,
        &format!("cid {other}"),
    );
    refused(
        c.register(register(0)).await,
        Code::PermissionDenied,
        "not as a new chunk",
    );
    refused(
        c.keep_alive(keepalive(other)).await,
        Code::PermissionDenied,
        &format!("cid {other}"),
    );
    let wire = WireClient::new(chunk.clone());
    refused(
        wire.keepalive(&addr, keepalive(other), Duration::from_secs(5))
            .await,
        Code::PermissionDenied,
        &format!("cid {other}"),
    );
    // The stream (opened on the leader: a follower names the leader) is
    // checked message by message.
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let leader_addr = cluster.members[cluster.index_of(leader)].addr.clone();
    let (mut tx, rx) = futures::channel::mpsc::channel(1);
    futures::SinkExt::send(&mut tx, keepalive(other))
        .await
        .unwrap();
    let replies = chunk_api(&chunk, &leader_addr).keep_alive_stream(rx).await;
    let first = match replies {
        Ok(r) => r.into_inner().message().await.map(|_| ()),
        Err(e) => Err(e),
    };
    refused(first, Code::PermissionDenied, &format!("cid {other}"));
    // The session wire is for chunks only.
    let admin_wire = WireClient::new(cluster.transport());
    refused(
        admin_wire
            .keepalive(&addr, keepalive(own), Duration::from_secs(5))
            .await,
        Code::PermissionDenied,
        "for chunks only",
    );
    // (its own cid passes the check: the follower then names the leader,
    // or the leader says the session is unknown)
    let own_ka = wire
        .keepalive(&addr, keepalive(own), Duration::from_secs(5))
        .await;
    assert!(
        matches!(&own_ka, Err(s) if s.code() == Code::NotFound || s.code() == Code::Unavailable),
        "{own_ka:?}"
    );
    // and a chunk reads nothing of the cluster.
    refused(
        read_config(&chunk, &addr).await,
        Code::PermissionDenied,
        "chunk",
    );

    // A request over --max-message-bytes (16 MiB) is not even decoded.
    refused(
        meta(&cluster.transport(), &addr)
            .propose(pb::ProposeRequest {
                cmds: vec![0; 17 << 20],
            })
            .await,
        Code::OutOfRange,
        "too large",
    );

    // A read-only admin reads, and may not write.
    let reader = MetaClient::new(cluster.addrs(), certs.transport("reader:ro")).unwrap();
    reader.read("config", false).await.expect("a reader reads");
    let e = reader
        .set_config(pb::SetConfigRequest {
            key: "recover_paused".into(),
            value: "true".into(),
        })
        .await
        .expect_err("a reader may not write");
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    assert!(e.to_string().contains("reader:ro"), "{e}");
    let e = reader
        .create_volume(pb::CreateVolumeRequest {
            name: "nope".into(),
            size_bytes: 1 << 30,
            replicas: 3,
            ..Default::default()
        })
        .await
        .expect_err("a reader may not create volumes");
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    // The CLI says so too, as the operator sees it.
    let reader_dir = certs.identity("reader:ro");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["config", "set", "recover_paused", "true", "--endpoints"])
        .arg(cluster.addrs().join(","))
        .arg("--tls")
        .arg(&reader_dir)
        .env_remove("CAIRN_TLS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("may not call"),
        "{err}"
    );

    // Only members call Raft: an admin and a chunk are refused.
    for who in [cluster.transport(), chunk.clone()] {
        let mut raft = pb::raft_client::RaftClient::new(channel(&who, &addr));
        refused(
            raft.vote(pb::RaftPayload { data: vec![] }).await,
            Code::PermissionDenied,
            "members only",
        );
    }

    // A Raft message speaks for the member of the certificate: member 2
    // may not vote as candidate 3 (nor append as leader 3), while its own
    // stale vote request is heard (and turned down by Raft itself).
    let status = cluster.leader_status(Duration::from_secs(10)).await;
    let vote_as = |candidate: u64| {
        let rpc = openraft::raft::VoteRequest::<u64> {
            vote: openraft::Vote::new(0, candidate),
            last_log_id: None,
        };
        let mut req = tonic::Request::new(pb::RaftPayload {
            data: cairn_node::types::encode(&rpc).unwrap(),
        });
        req.metadata_mut()
            .insert("cairn-cluster", status.cluster_id.into());
        req
    };
    let mut raft2 = pb::raft_client::RaftClient::new(channel(&certs.transport("member:2"), &addr));
    refused(
        raft2.vote(vote_as(3)).await,
        Code::PermissionDenied,
        "as member 3",
    );
    raft2
        .vote(vote_as(2))
        .await
        .expect("member 2 speaks for itself");

    // A snapshot that does not decode never reaches openraft (which would
    // stop Raft for good): it is refused, and the member keeps serving.
    let snapshot = openraft::raft::InstallSnapshotRequest::<cairn_node::types::TypeConfig> {
        // (a term ahead: openraft would take it, and fail to install it)
        vote: openraft::Vote::new_committed(status.term + 1, 2),
        meta: openraft::SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(status.term, 2),
                1_000_000,
            )),
            last_membership: Default::default(),
            snapshot_id: "forged".into(),
        },
        offset: 0,
        data: vec![0xde, 0xad, 0xbe, 0xef],
        done: true,
    };
    let mut req = tonic::Request::new(pb::RaftPayload {
        data: cairn_node::types::encode(&snapshot).unwrap(),
    });
    req.metadata_mut()
        .insert("cairn-cluster", status.cluster_id.into());
    refused(
        raft2.install_snapshot(req).await,
        Code::InvalidArgument,
        "snapshot forged refused",
    );
    cluster
        .client()
        .set_config(pb::SetConfigRequest {
            key: "migrate_paused".into(),
            value: "false".into(),
        })
        .await
        .expect("the member still takes writes");

    // A member advertises only itself, and proposes nothing else.
    let member2 = certs.transport("member:2");
    let advert = |node_id| Cmd::AdvertiseMember {
        node_id,
        version: cairn_capability::CURRENT_VERSION.into(),
        capabilities: vec![],
    };
    let propose = |cmd: Cmd| pb::ProposeRequest {
        cmds: cairn_node::types::encode(&vec![cmd]).unwrap(),
    };
    refused(
        meta(&member2, &addr).propose(propose(advert(3))).await,
        Code::PermissionDenied,
        "member 3",
    );
    refused(
        meta(&member2, &addr)
            .propose(propose(Cmd::DeleteVolume { volume_id: 1 }))
            .await,
        Code::PermissionDenied,
        "only its own advertisement",
    );
    // It joins as itself only, and changes no membership.
    refused(
        meta(&member2, &addr)
            .add_learner(pb::AddLearnerRequest {
                node_id: 9,
                addr: "127.0.0.1:1".into(),
                advertised: true,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "member 9",
    );
    refused(
        meta(&member2, &addr)
            .change_membership(pb::ChangeMembershipRequest::default())
            .await,
        Code::PermissionDenied,
        "admins only",
    );
    // A reader proposes nothing.
    refused(
        meta(&certs.transport("reader:ro"), &addr)
            .propose(propose(Cmd::DeleteVolume { volume_id: 1 }))
            .await,
        Code::PermissionDenied,
        "reader:ro",
    );
    // and the admin does not advertise a member either.
    let e = cluster
        .client()
        .propose(&[advert(2)])
        .await
        .expect_err("an admin may not advertise a member");
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");

    // Every refusal was logged, and the cluster still serves its admin.
    let logs = cluster.logs();
    for says in [
        "unauthenticated",
        "beyond the caller's role",
        "speaking for another chunk",
    ] {
        assert!(logs.contains(says), "no {says:?} in the logs");
    }
    cluster
        .client()
        .read("config", false)
        .await
        .expect("the cluster still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_gets_nothing_from_a_tls_member_and_a_server_needs_a_choice() {
    let cluster = Cluster::start(1);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster
        .client()
        .read("config", true)
        .await
        .expect("the member serves its admin");
    let mut plain = MetaClient::new(cluster.addrs(), Transport::Insecure).unwrap();
    plain.deadline = Duration::from_secs(2);
    plain
        .read("config", true)
        .await
        .expect_err("plain TCP is not served by a TLS member");

    // `cairn server` with neither --tls nor --insecure refuses to start,
    // and so does a member given another member's identity.
    let certs = cluster.certs.as_ref().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let base = [
        "server",
        "--id",
        "7",
        "--listen",
        "127.0.0.1:1",
        "--init",
        "7=127.0.0.1:1",
        "--data-dir",
    ];
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(base)
            .arg(tmp.path().join("d"))
            .args(extra)
            .env_remove("CAIRN_TLS")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--tls DIR") && err.contains("--insecure"),
        "{err}"
    );
    let m1 = certs.identity("member:1");
    let out = run(&["--tls", p(&m1)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("member:1") && err.contains("member 7"),
        "{err}"
    );
}

// ------------------------------------------------------------ limits

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_chunk_and_a_flooding_client_slow_only_themselves() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    // Given a cluster whose connections may send 200 keepalives a second
    // and hold 32 streams each,
    const RATE: u64 = 200;
    const FLOOD: Duration = Duration::from_secs(8);
    let cluster = Cluster::start_with(
        3,
        &[
            "--max-keepalives-per-sec",
            "200",
            "--max-streams-per-conn",
            "32",
        ],
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let leader_addr = cluster.members[cluster.index_of(leader)].addr.clone();
    // with three well-behaved chunks keeping their sessions,
    let mut cfg = cluster.fleet_config(3);
    cfg.zones = 0;
    let fleet = cairn_node::fleet::Fleet::start(cfg)
        .await
        .expect("fleet starts");
    assert!(
        fleet.wait_registered(Duration::from_secs(30)).await,
        "{}",
        cluster.logs()
    );
    let registrations: Vec<u64> = fleet.chunks().iter().map(|c| c.registrations()).collect();
    let term = cluster.leader_status(Duration::from_secs(10)).await.term;

    // when for 8 s one chunk floods the leader with keepalives (64 in
    // flight on its session wire) and one client floods it with writes
    // (256 at once on one connection),
    let admin = cluster.client();
    let cid = admin
        .register_chunk(new_chunk("flood", "127.0.0.1:29500"))
        .await
        .expect("register the flooding chunk")
        .cid;
    let certs = cluster.certs.as_ref().unwrap();
    let wire = Arc::new(WireClient::new(certs.transport(&format!("chunk:{cid}"))));
    let writer = Arc::new(MetaClient::new(cluster.addrs(), cluster.transport()).unwrap());
    let (keepalives, writes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = tokio::time::Instant::now() + FLOOD;
    let mut tasks = vec![];
    for _ in 0..64 {
        let (wire, n, addr) = (wire.clone(), keepalives.clone(), leader_addr.clone());
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < until {
                // NOT_FOUND (no session): still a keepalive served.
                let r = wire
                    .keepalive(&addr, keepalive(cid), Duration::from_secs(5))
                    .await;
                if !matches!(&r, Err(s) if s.code() == Code::DeadlineExceeded) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for k in 0..256 {
        let (writer, n) = (writer.clone(), writes.clone());
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < until {
                let cmd = Cmd::SetConfig {
                    key: "migrate_paused".into(),
                    value: if k % 2 == 0 { "false" } else { "true" }.into(),
                };
                if writer.propose(&[cmd]).await.is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // (watching the leader's status every 100 ms, on a connection of its own)
    let watcher = MetaClient::new(cluster.addrs(), cluster.transport()).unwrap();
    let mut worst_ack_ms = 0;
    let mut seen = vec![];
    while tokio::time::Instant::now() < until {
        if let Ok(s) = watcher.status_of(&leader_addr, true).await {
            worst_ack_ms = worst_ack_ms.max(s.quorum_ack_age_ms.unwrap_or(u64::MAX));
            seen.push((s.term, s.leader_id));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }

    // then the leader kept its term and heard its quorum within 500 ms
    // throughout (followers campaign only after 600 ms of silence at the
    // earliest; a leader stops renewing sessions after 500 ms),
    assert!(
        seen.len() >= 40,
        "the watcher saw the leader {} times",
        seen.len()
    );
    assert!(
        seen.iter().all(|s| *s == (term, leader)),
        "an election happened during the flood: {seen:?}\n{}",
        cluster.logs()
    );
    assert!(
        worst_ack_ms < 500,
        "the leader went {worst_ack_ms} ms without a quorum"
    );
    // the flooding chunk got its rate and no more (a second's burst, a
    // second of scheduling slack, 64 in flight at the end; unlimited, one
    // connection gets tens of thousands through in 8 s),
    let served = keepalives.load(Ordering::Relaxed);
    let most = RATE * (FLOOD.as_secs() + 2) + 64;
    assert!(served <= most, "{served} keepalives served, at most {most}");
    assert!(
        served >= RATE * FLOOD.as_secs() / 2,
        "only {served} keepalives served"
    );
    // the writes went through, slowed, not stopped,
    let written = writes.load(Ordering::Relaxed);
    assert!(written >= 1000, "only {written} writes in {FLOOD:?}");
    // and the well-behaved chunks never lost their sessions.
    let after: Vec<u64> = fleet.chunks().iter().map(|c| c.registrations()).collect();
    assert_eq!(
        after, registrations,
        "a chunk registered again: its session expired"
    );
    println!("flood: {served} keepalives, {written} writes, worst quorum ack {worst_ack_ms} ms");
}
