//! Stretched clusters (two zones, DOMAIN.md §5.4): extents keep two
//! replicas in the zone of the consumer's current access point and one in
//! the other (1 + 1 for two replicas); written extents gather there over time.

use cairn_state::{ChunkState, Cid, Extent, Provisioning, State, TopoId, Volume};

/// The two zones of a stretched cluster, lowest id first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zones {
    pub a: TopoId,
    pub b: TopoId,
}

impl Zones {
    pub fn other(&self, z: TopoId) -> TopoId {
        if z == self.a {
            self.b
        } else {
            self.a
        }
    }
}

/// Exactly two zones hold registered chunks (as in initial placement).
pub fn stretched_zones(state: &State) -> Option<Zones> {
    let (mut a, mut b) = (0, 0);
    for z in state
        .chunks()
        .filter(|c| c.state == ChunkState::Registered)
        .filter_map(|c| state.zone_of(c.cid))
    {
        if a == 0 || a == z {
            a = z;
        } else if b == 0 || b == z {
            b = z;
        } else {
            return None;
        }
    }
    (b != 0).then(|| Zones {
        a: a.min(b),
        b: a.max(b),
    })
}

/// Rule §5.4: the zone that should hold the majority. Written extents
/// follow the consumer's current access point (its chunk, else the chunk
/// serving I/O, the lease owner); never-written thick extents go to the
/// cluster's default preferred zone, others to the volume's preferred zone;
/// the lowest zone id ends the chain.
pub fn access_zone(state: &State, zones: Zones, volume: &Volume, ext: &Extent) -> TopoId {
    let in_cluster = |z: TopoId| z == zones.a || z == zones.b;
    let of = |cid: Cid| state.zone_of(cid).filter(|&z| in_cluster(z));
    if let Some(z) = of(ext.prefer_cid).or_else(|| of(ext.lease_owner)) {
        return z;
    }
    let default = state.config().default_zone;
    let chain = match volume.provisioning {
        Provisioning::Thick => [default, volume.preferred_zone],
        Provisioning::Thin => [volume.preferred_zone, default],
    };
    chain
        .into_iter()
        .find(|&z| in_cluster(z))
        .unwrap_or(zones.a)
}

/// Replicas each zone should hold: (access zone, its count), (other, its count).
pub fn zone_targets(zones: Zones, access: TopoId, replicas: u8) -> [(TopoId, u8); 2] {
    let local = replicas.saturating_sub(1).max(1);
    [
        (access, local),
        (zones.other(access), replicas.saturating_sub(local)),
    ]
}

/// Alive replicas per zone, in the order of `targets`.
pub fn zone_counts(state: &State, targets: &[(TopoId, u8); 2], cids: &[Cid]) -> [u8; 2] {
    let mut n = [0u8; 2];
    for &c in cids {
        let z = state.zone_of(c);
        for (i, t) in targets.iter().enumerate() {
            if z == Some(t.0) {
                n[i] = n[i].saturating_add(1);
            }
        }
    }
    n
}

/// How far a replica set is from the 2:1 targets (0 = exact).
pub fn zone_ratio_error(state: &State, targets: &[(TopoId, u8); 2], cids: &[Cid]) -> u32 {
    let n = zone_counts(state, targets, cids);
    targets
        .iter()
        .zip(n)
        .map(|(t, have)| u32::from(t.1.abs_diff(have)))
        .sum()
}

/// Rule §5.4 for recover: the zone a new replica should go to (the first,
/// in target order, holding fewer alive replicas than its target).
pub fn zone_short_of_replicas(
    state: &State,
    zones: Zones,
    volume: &Volume,
    ext: &Extent,
) -> Option<TopoId> {
    let targets = zone_targets(
        zones,
        access_zone(state, zones, volume, ext),
        ext.expected_replicas,
    );
    let alive: Vec<Cid> = ext.loc.alive_loc().collect();
    let n = zone_counts(state, &targets, &alive);
    targets
        .iter()
        .zip(n)
        .find(|(t, have)| *have < t.1)
        .map(|(t, _)| t.0)
}

/// Rule §5.4 for every automatic migration: a move may not take the replica
/// set further from the 2:1 ratio.
pub fn keeps_stretched_ratio(
    state: &State,
    zones: Option<Zones>,
    volume: &Volume,
    ext: &Extent,
    before: &[Cid],
    after: &[Cid],
) -> bool {
    let Some(zones) = zones else {
        return true;
    };
    let targets = zone_targets(
        zones,
        access_zone(state, zones, volume, ext),
        ext.expected_replicas,
    );
    zone_ratio_error(state, &targets, after) <= zone_ratio_error(state, &targets, before)
}
