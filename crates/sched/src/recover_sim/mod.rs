//! `cairn sim recover`: a discrete-event simulation of re-replication after
//! chunk loss (issue 9, item 3), with Cairn's real planners and emulated
//! peer policies on the same cluster, network and detection time.
//!
//! Pure and deterministic like the rest of the crate: no I/O, no clock
//! reads, no randomness but seeded streams ([`rng`]). A run is a function
//! of its [`SimConfig`]. docs/recovery-sim.md describes the model.
//!
//! One concept per module:
//! - [`config`]: what a run simulates, and what it refuses;
//! - [`cluster`]: the topology, the rack-safe seeded placement, the
//!   `State` built through commands, the failure, the shared rack rule;
//! - [`network`]: links and max-min fair sharing;
//! - [`engine`]: the event loop, and the checks every copy must pass;
//! - [`cairn`]: the real `Scheduler` driven as the leader's runner does;
//! - [`pd`], [`hdfs`], [`ceph`]: the peers with their documented defaults;
//! - [`bound`] (with [`maxflow`]): the lower bound T_LB;
//! - [`report`], [`svg`]: the table and the plot.

pub mod bound;
pub mod cairn;
pub mod ceph;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod hdfs;
pub mod maxflow;
pub mod network;
pub mod pd;
pub mod report;
pub mod rng;
pub mod svg;

use thiserror::Error;

pub use bound::{lower_bound, Bound};
pub use cluster::{build, Cluster};
pub use config::{CairnTiming, SimConfig};
pub use report::{sweep_table, Goal, PolicyName, PolicyResult, Report};
pub use svg::SweepPoint;

use engine::Policy;

#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    #[error("a cluster needs at least one chunk")]
    NoChunks,
    #[error("--fail {fail} must be below --chunks {chunks}")]
    FailTooMany { fail: u32, chunks: u32 },
    #[error("{live} live chunks after the failure; at least 4 are needed")]
    TooFewLive { live: u32 },
    #[error("--extents must be at least 1")]
    NoExtents,
    #[error("--bandwidth must be at least 1 MB/s")]
    NoBandwidth,
    #[error("--slow-disk {slow} exceeds the {live} live chunks")]
    SlowTooMany { slow: u32, live: u32 },
    #[error("--slow-factor must be at least 1")]
    BadSlowFactor,
    #[error("{racks} racks for {chunks} chunks: 3 replicas need 3 to {chunks} racks")]
    BadRacks { racks: u32, chunks: u32 },
    #[error("{what} {value} is above the simulator's limit {max}")]
    TooLarge {
        what: &'static str,
        value: u64,
        max: u64,
    },
    #[error("--recover-slots {slots} out of range 1..=1024")]
    BadSlots { slots: u32 },
    #[error("the lease and the time limit must be above zero")]
    Zero,
    #[error("building the cluster failed: {0}")]
    Setup(String),
    #[error("{policy}: impossible copy: {reason}")]
    Invalid { policy: String, reason: String },
    #[error("{policy}: nothing left to happen at {at_ms} ms with {missing} replicas missing")]
    Stuck {
        policy: String,
        at_ms: u64,
        missing: u64,
    },
    #[error("{policy}: {missing} replicas still missing after {limit_s} simulated seconds")]
    TimeLimit {
        policy: String,
        limit_s: u64,
        missing: u64,
    },
}

/// Runs one policy on `cluster`.
pub fn run_policy(
    cluster: &Cluster,
    cfg: &SimConfig,
    name: PolicyName,
) -> Result<PolicyResult, SimError> {
    let detection_us = cfg.lease_ms * 1000;
    let max_us = cfg.max_sim_s.saturating_mul(1_000_000);
    let mut cairn_policy;
    let mut pd_policy;
    let mut hdfs_policy;
    let mut ceph_policy;
    let policy: &mut dyn Policy = match name {
        PolicyName::Cairn => {
            cairn_policy = cairn::CairnPolicy::new(cluster, cfg)?;
            &mut cairn_policy
        }
        PolicyName::Pd => {
            pd_policy = pd::PdPolicy::new(cluster, detection_us, pd::PdParams::default());
            &mut pd_policy
        }
        PolicyName::Hdfs => {
            hdfs_policy =
                hdfs::HdfsPolicy::new(cluster, detection_us, cfg.seed, hdfs::HdfsParams::default());
            &mut hdfs_policy
        }
        PolicyName::Ceph => {
            ceph_policy = ceph::CephPolicy::new(cluster, detection_us, ceph::CephParams::default());
            &mut ceph_policy
        }
    };
    let outcome = engine::run(cluster, policy, name.label(), max_us)?;
    let in_bps: Vec<f64> = cluster.chunks.iter().map(|c| c.in_bps).collect();
    let out_bps: Vec<f64> = cluster.chunks.iter().map(|c| c.out_bps).collect();
    Ok(PolicyResult::from_outcome(
        name,
        outcome,
        &in_bps,
        &out_bps,
        &cluster.slow_cids(),
        detection_us,
    ))
}

/// Runs `policies` on an already built cluster (each on its own thread:
/// they share nothing but the read-only cluster, so the result does not
/// depend on the interleaving).
pub fn run_on(
    cluster: &Cluster,
    cfg: &SimConfig,
    policies: &[PolicyName],
) -> Result<Report, SimError> {
    cfg.validate()?;
    let bound = lower_bound(cluster, cfg.lease_ms * 1000);
    let results: Vec<Result<PolicyResult, SimError>> = std::thread::scope(|s| {
        let handles: Vec<_> = policies
            .iter()
            .map(|&p| s.spawn(move || run_policy(cluster, cfg, p)))
            .collect();
        handles
            .into_iter()
            .zip(policies)
            .map(|(h, p)| {
                h.join().unwrap_or_else(|_| {
                    Err(SimError::Invalid {
                        policy: p.label().to_string(),
                        reason: "the simulation thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Report {
        cfg: cfg.clone(),
        racks: cluster.racks,
        failed: cluster.failed_cids(),
        slow: cluster.slow_cids(),
        lost_extents: cluster.lost.len() as u64,
        missing_replicas: cluster.missing_replicas(),
        unrecoverable: cluster.unrecoverable,
        bound,
        results,
    })
}

/// Builds the cluster of `cfg` and runs every policy on it.
pub fn run(cfg: &SimConfig) -> Result<Report, SimError> {
    cfg.validate()?;
    let cluster = build(cfg)?;
    run_on(&cluster, cfg, &PolicyName::ALL)
}

/// The sweep's cluster sizes.
pub const SWEEP_CHUNKS: [u32; 5] = [8, 16, 32, 64, 128];

/// Runs `base` at each cluster size with the extents scaled so every chunk
/// holds the same data as in `base` (extents × size / base chunks): the
/// bound stays comparable and the plot shows how each policy uses a larger
/// cluster's parallelism.
pub fn sweep(base: &SimConfig, sizes: &[u32]) -> Result<Vec<Report>, SimError> {
    base.validate()?;
    sizes
        .iter()
        .map(|&n| {
            let cfg = SimConfig {
                chunks: n,
                extents: (base.extents * u64::from(n) / u64::from(base.chunks)).max(1),
                racks: 0,
                ..base.clone()
            };
            run(&cfg)
        })
        .collect()
}

/// The plot's points of a sweep.
pub fn sweep_points(reports: &[Report]) -> Vec<SweepPoint> {
    reports
        .iter()
        .map(|r| SweepPoint {
            chunks: r.cfg.chunks,
            racks: r.racks,
            extents: r.cfg.extents,
            t_lb_us: r.bound.t_lb_us,
            makespans: r
                .results
                .iter()
                .filter_map(|x| x.makespan_us.map(|m| (x.policy, m)))
                .collect(),
        })
        .collect()
}
