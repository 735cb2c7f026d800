//! Starting a member: open its stores, check the data dir is its own, start
//! openraft and serve gRPC.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::{BasicNode, Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;

use crate::meta_service::MetaService;
use crate::network::Network;
use crate::raft_service::RaftService;
use crate::store::log::{Identity, LogStore};
use crate::store::sm::{SmHandle, StateMachineStore};
use crate::types::{NodeId, Raft};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Initial members (id -> address) for a brand-new cluster.
    pub init: Option<BTreeMap<NodeId, String>>,
    /// Snapshot after this many applied entries, then purge the log behind it.
    pub snapshot_every: u64,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl NodeConfig {
    pub fn new(id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            id,
            listen,
            data_dir,
            init: None,
            snapshot_every: 10_000,
            heartbeat_ms: 100,
            election_min_ms: 600,
            election_max_ms: 1200,
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum NodeError {
    #[error("node id must be at least 1")]
    BadId,
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] crate::store::log::OpenError),
    #[error(transparent)]
    Sm(#[from] crate::store::sm::SmOpenError),
    #[error("data directory {path} belongs to node {found}, not node {wanted}: refusing to start")]
    WrongNode {
        path: PathBuf,
        found: NodeId,
        wanted: NodeId,
    },
    #[error("cannot write the identity of data directory {path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("cluster initialization failed: {0}")]
    Init(String),
}

pub struct Node {
    pub id: NodeId,
    pub raft: Raft,
    pub sm: SmHandle,
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Node {
    /// Opens the data dir, starts Raft and the gRPC server.
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        if cfg.id == 0 {
            return Err(NodeError::BadId);
        }
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| NodeError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
        let log_dir = cfg.data_dir.join("raft");
        let log = LogStore::open(&log_dir)?;
        match log.read_identity() {
            Ok(Some(found)) if found.node_id != cfg.id => {
                return Err(NodeError::WrongNode {
                    path: cfg.data_dir.clone(),
                    found: found.node_id,
                    wanted: cfg.id,
                })
            }
            Ok(Some(_)) => {}
            Ok(None) => log
                .write_identity(&Identity {
                    node_id: cfg.id,
                    cluster_id: 0,
                })
                .map_err(|e| NodeError::Identity {
                    path: log_dir.clone(),
                    reason: e.to_string(),
                })?,
            Err(e) => {
                return Err(NodeError::Identity {
                    path: log_dir.clone(),
                    reason: e.to_string(),
                })
            }
        }
        let sm = StateMachineStore::open(&cfg.data_dir.join("sm"))?;
        let sm_handle = sm.handle();

        let config = Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_min_ms,
            election_timeout_max: cfg.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))?;

        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| NodeError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Listen {
            addr: cfg.listen,
            source,
        })?;

        let raft = Raft::new(cfg.id, Arc::new(config), Network::default(), log, sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<crate::types::pb::meta_server::MetaServer<MetaService>>()
            .await;
        let (shutdown, mut stop) = watch::channel(false);
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(RaftService::new(raft.clone()).into_server())
            .add_service(MetaService::new(raft.clone(), sm_handle.clone()).into_server());
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));

        if let Some(members) = &cfg.init {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| NodeError::Init(e.to_string()))?;
            if !initialized {
                let members: BTreeMap<NodeId, BasicNode> = members
                    .iter()
                    .map(|(id, a)| (*id, BasicNode { addr: a.clone() }))
                    .collect();
                raft.initialize(members)
                    .await
                    .map_err(|e| NodeError::Init(e.to_string()))?;
                tracing::info!(id = cfg.id, "cluster initialized");
            }
        }
        tracing::info!(id = cfg.id, %addr, data_dir = %cfg.data_dir.display(), "member started");
        Ok(Node {
            id: cfg.id,
            raft,
            sm: sm_handle,
            addr,
            shutdown,
            server,
        })
    }

    /// Stops serving and shuts Raft down.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
