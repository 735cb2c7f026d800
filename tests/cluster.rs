//! A real 3-member cluster on 127.0.0.1: separate `cairn server` processes,
//! real RocksDB fsync, real gRPC.

mod common;

use std::time::Duration;

use cairn_node::client::MetaClient;
use cairn_state::{Cmd, Reply};
use common::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_member_succeed_and_all_members_converge() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;

    // Given a client that knows only one member, for each member in turn,
    let mut last_index = 0;
    let mut cids = vec![];
    for m in &cluster.members {
        let client = MetaClient::new(vec![m.addr.clone()]).expect("client");
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
