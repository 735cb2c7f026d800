//! The checker applied to a simulation: the same linearizability search and
//! invariants as for a real campaign, on the simulator's in-memory history.

use crate::check::{self, Inputs, Options, Verdict};
use crate::history::{Campaign, Final, FinalExtent};
use crate::sim::SimOutcome;

/// A simulation's parameters as a campaign's `campaign.json` has them.
pub fn campaign_of(o: &SimOutcome) -> Campaign {
    Campaign {
        mode: "sim".into(),
        seed: o.seed,
        nodes: o.nodes as u32,
        ..Campaign::default()
    }
}

/// A simulation's end state as a campaign's `final.json` has it.
pub fn final_of(o: &SimOutcome) -> Final {
    Final {
        // The simulator's own check reports a cluster that did not converge.
        converged: true,
        members: o.finals.clone(),
        volumes: o.final_volumes.clone(),
        extents: o.final_extents.clone(),
        ..Final::default()
    }
}

/// Checks a simulation's history and final states.
pub fn verdict(o: &SimOutcome) -> Verdict {
    let campaign = campaign_of(o);
    let fin = final_of(o);
    check::check_events(
        &Inputs {
            campaign: &campaign,
            events: &o.history,
            observations: Some(&o.observations),
            chunk_events: None,
            log: None,
            fin: Some(&fin),
        },
        &Options::default(),
    )
}

/// Every volume and extent of a state, as a campaign's `final.json` has them.
pub fn final_volumes(state: &cairn_state::State) -> (Vec<(u64, String)>, Vec<FinalExtent>) {
    let mut volumes = vec![];
    let mut extents = vec![];
    for v in state.volumes() {
        volumes.push((v.id, v.name.clone()));
        for pid in v.pids() {
            if let Some(e) = state.extent(pid) {
                extents.push(FinalExtent {
                    pid,
                    volume_id: v.id,
                    replicas: u32::from(v.replicas),
                    loc: e.loc().to_vec(),
                    alive_loc: e.alive_loc(),
                    generation: e.generation(),
                    owner: e.lease_owner(),
                });
            }
        }
    }
    (volumes, extents)
}
