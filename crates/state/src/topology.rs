//! The topology tree: cluster > zone > rack > brick > chunk (DOMAIN.md §2).
//!
//! Chunks hang off bricks by `Chunk::brick`; this module holds the other
//! levels and the distance table. Distance is asked on every placement
//! decision, so it is precomputed on each topology change into a per-chunk
//! position table: a lookup is two array reads and a few compares, with no
//! lock and no tree walk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Cid, TopoId};

/// The root cluster node; created with the state, never removed.
pub const ROOT_ID: TopoId = 1;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopoKind {
    Cluster,
    Zone,
    Rack,
    Brick,
}

impl TopoKind {
    /// The kind a node of this kind must hang off.
    pub fn parent_kind(self) -> Option<TopoKind> {
        match self {
            TopoKind::Cluster => None,
            TopoKind::Zone => Some(TopoKind::Cluster),
            TopoKind::Rack => Some(TopoKind::Zone),
            TopoKind::Brick => Some(TopoKind::Rack),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopoNode {
    pub id: TopoId,
    pub kind: TopoKind,
    /// 0 for the root.
    pub parent: TopoId,
    pub name: String,
}

/// Topology distance between two chunks, increasing with separation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Distance {
    SameChunk = 0,
    SameBrick = 1,
    SameRack = 2,
    SameZone = 3,
    OtherZone = 4,
}

/// Where a chunk sits, as ids of its brick, rack and zone. Unracked chunks
/// (no brick) all get `UNRACKED`: DOMAIN.md treats them as one brick of one
/// extra rack. That extra rack belongs to no zone and is never counted as
/// zone-diverse from anything (the conservative choice for spreading).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChunkPos {
    pub brick: TopoId,
    pub rack: TopoId,
    pub zone: TopoId,
}

pub(crate) const UNRACKED: TopoId = 0;

impl ChunkPos {
    pub(crate) const UNRACKED: ChunkPos = ChunkPos {
        brick: UNRACKED,
        rack: UNRACKED,
        zone: UNRACKED,
    };

    pub(crate) fn distance(self, other: ChunkPos, same_chunk: bool) -> Distance {
        if same_chunk {
            Distance::SameChunk
        } else if self.brick == other.brick {
            Distance::SameBrick
        } else if self.rack == other.rack {
            Distance::SameRack
        } else if self.zone == other.zone || self.zone == UNRACKED || other.zone == UNRACKED {
            Distance::SameZone
        } else {
            Distance::OtherZone
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Topology {
    pub nodes: BTreeMap<TopoId, TopoNode>,
    pub next_id: TopoId,
}

impl Topology {
    pub fn new() -> Topology {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ROOT_ID,
            TopoNode {
                id: ROOT_ID,
                kind: TopoKind::Cluster,
                parent: 0,
                name: "cluster".to_string(),
            },
        );
        Topology {
            nodes,
            next_id: ROOT_ID + 1,
        }
    }

    /// Position of a chunk placed in `brick` (None = unracked). A brick that
    /// is missing or mis-parented yields the unracked position; `apply`
    /// refuses to create such trees, so this only guards restored snapshots.
    pub fn pos_of(&self, brick: Option<TopoId>) -> ChunkPos {
        let Some(brick) = brick else {
            return ChunkPos::UNRACKED;
        };
        let up = |id: TopoId, kind: TopoKind| {
            self.nodes
                .get(&id)
                .filter(|n| n.kind == kind)
                .map(|n| n.parent)
        };
        match up(brick, TopoKind::Brick).and_then(|rack| Some((rack, up(rack, TopoKind::Rack)?))) {
            Some((rack, zone)) => ChunkPos { brick, rack, zone },
            None => ChunkPos::UNRACKED,
        }
    }

    pub fn has_children(&self, id: TopoId) -> usize {
        self.nodes.values().filter(|n| n.parent == id).count()
    }

    pub fn name_taken(&self, kind: TopoKind, name: &str, except: TopoId) -> bool {
        self.nodes
            .values()
            .any(|n| n.kind == kind && n.name == name && n.id != except)
    }

    /// Zone ids in id order.
    pub fn zones(&self) -> impl Iterator<Item = &TopoNode> {
        self.nodes.values().filter(|n| n.kind == TopoKind::Zone)
    }
}

/// Precomputed chunk positions, indexed by `cid - 1`.
#[derive(Clone, Debug, Default)]
pub(crate) struct DistanceTable {
    pos: Vec<ChunkPos>,
}

impl DistanceTable {
    pub fn build(topo: &Topology, bricks: impl Iterator<Item = Option<TopoId>>) -> DistanceTable {
        DistanceTable {
            pos: bricks.map(|b| topo.pos_of(b)).collect(),
        }
    }

    pub fn pos(&self, cid: Cid) -> Option<ChunkPos> {
        (cid as usize)
            .checked_sub(1)
            .and_then(|i| self.pos.get(i))
            .copied()
    }

    /// `None` if either cid is unknown.
    pub fn distance(&self, a: Cid, b: Cid) -> Option<Distance> {
        Some(self.pos(a)?.distance(self.pos(b)?, a == b))
    }
}
