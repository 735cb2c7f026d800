//! A cluster built through `apply`, as a Raft member would build it, for
//! the scheduling tests.
#![allow(dead_code)]

use cairn_sched::SchedCmd;
use cairn_state::{
    ChunkSpaceInfo, Cid, Cmd, CreateVolume, EntryMeta, Pid, Provisioning, Reply, State, TopoId,
    TopoKind, UpdateExtent, VolumeId, EXTENT_SIZE_BYTES, ROOT_ID,
};

pub const GIB: u64 = 1 << 30;

pub struct Fixture {
    pub state: State,
    pub index: u64,
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            state: State::new(),
            index: 0,
        }
    }

    pub fn try_apply(&mut self, cmd: &Cmd) -> Result<Reply, cairn_state::CmdError> {
        self.index += 1;
        let meta = EntryMeta {
            index: self.index,
            term: 1,
            leader_time_ms: 1_000 * self.index,
        };
        self.state.apply(meta, cmd)
    }

    pub fn apply(&mut self, cmd: Cmd) -> Reply {
        self.try_apply(&cmd)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    fn topo(&mut self, kind: TopoKind, parent: TopoId, name: &str) -> TopoId {
        match self.apply(Cmd::AddTopo {
            kind,
            parent,
            name: name.into(),
        }) {
            Reply::TopoId(id) => id,
            r => panic!("{r:?}"),
        }
    }

    /// Zone `z`, rack `z/r`, brick `z/r/b`, created as needed.
    pub fn brick(&mut self, zone: &str, rack: &str, brick: &str) -> TopoId {
        let find = |s: &State, kind, name: &str| {
            s.topo_nodes()
                .find(|n| n.kind == kind && n.name == name)
                .map(|n| n.id)
        };
        let z = find(&self.state, TopoKind::Zone, zone)
            .unwrap_or_else(|| self.topo(TopoKind::Zone, ROOT_ID, zone));
        let rn = format!("{zone}/{rack}");
        let r = find(&self.state, TopoKind::Rack, &rn)
            .unwrap_or_else(|| self.topo(TopoKind::Rack, z, &rn));
        let bn = format!("{rn}/{brick}");
        find(&self.state, TopoKind::Brick, &bn)
            .unwrap_or_else(|| self.topo(TopoKind::Brick, r, &bn))
    }

    /// A live chunk with a session and `used_gib` provisioned of 1000 GiB valid.
    pub fn chunk(&mut self, brick: Option<TopoId>, used_gib: u64) -> Cid {
        let cid = match self.apply(Cmd::RegisterChunk {
            hostname: format!("host-{}", self.index),
            data_addr: "127.0.0.1:0".into(),
            brick,
            version: "0.1.0".into(),
            capabilities: vec![],
        }) {
            Reply::Cid(c) => c,
            r => panic!("{r:?}"),
        };
        self.space(cid, used_gib);
        self.open(cid);
        cid
    }

    /// `n` chunks, each in its own rack of zone "z", with `used_gib` each.
    pub fn racks(&mut self, n: usize, used_gib: u64) -> Vec<Cid> {
        (0..n)
            .map(|i| {
                let b = self.brick("z", &format!("r{i}"), "b");
                self.chunk(Some(b), used_gib)
            })
            .collect()
    }

    pub fn space(&mut self, cid: Cid, used_gib: u64) {
        self.space_bytes(cid, used_gib * GIB);
    }

    pub fn space_bytes(&mut self, cid: Cid, used: u64) {
        self.apply(Cmd::ReportSpace {
            cid,
            space: ChunkSpaceInfo {
                valid_data_space: 1000 * GIB,
                total_data_capacity: 1000 * GIB,
                provisioned_data_space: used,
                allocated_data_space: used,
                ..Default::default()
            },
        });
    }

    pub fn open(&mut self, cid: Cid) {
        self.apply(Cmd::OpenSession {
            cid,
            lease_ms: 14_000,
        });
    }

    /// The chunk's session expires: its replicas stop being alive.
    pub fn stop(&mut self, cid: Cid) {
        let session_id = self.state.session(cid).expect("live session").session_id;
        self.apply(Cmd::ExpireSession { cid, session_id });
    }

    pub fn failslow(&mut self, cid: Cid) {
        self.apply(Cmd::SetFailslow {
            cid,
            failslow: true,
        });
    }

    /// A volume with the given locs; returns (volume id, first pid).
    pub fn volume_with(
        &mut self,
        name: &str,
        locs: Vec<Vec<Cid>>,
        prefer_cid: Cid,
        even: bool,
        provisioning: Provisioning,
    ) -> (VolumeId, Pid) {
        let replicas = locs[0].len() as u8;
        match self.apply(Cmd::CreateVolume(CreateVolume {
            name: name.into(),
            size_bytes: locs.len() as u64 * EXTENT_SIZE_BYTES,
            provisioning,
            replicas,
            prefer_cid,
            even,
            preferred_zone: 0,
            locs,
        })) {
            Reply::Volume {
                volume_id,
                first_pid,
                ..
            } => (volume_id, first_pid),
            r => panic!("{r:?}"),
        }
    }

    pub fn volume(&mut self, name: &str, locs: Vec<Vec<Cid>>, prefer_cid: Cid) -> Pid {
        self.volume_with(name, locs, prefer_cid, false, Provisioning::Thin)
            .1
    }

    pub fn set_owner(&mut self, pid: Pid, owner: Cid) {
        let g = self.state.extent(pid).unwrap().generation();
        self.apply(Cmd::UpdateExtent(UpdateExtent {
            pid,
            expected_generation: g,
            loc: None,
            alive_loc: None,
            lease_owner: Some(owner),
        }));
    }

    /// Records a finished command as the runner would; returns the applied command.
    pub fn finish(&mut self, cmd: &SchedCmd) -> Cmd {
        let ext = *self.state.extent(cmd.pid).unwrap().extent;
        let c = Cmd::UpdateExtent(cmd.completion(&ext).unwrap());
        self.apply(c.clone());
        c
    }

    pub fn loc(&self, pid: Pid) -> Vec<Cid> {
        self.state.extent(pid).unwrap().loc().to_vec()
    }

    pub fn alive(&self, pid: Pid) -> Vec<Cid> {
        self.state.extent(pid).unwrap().alive_loc()
    }
}
