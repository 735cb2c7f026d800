//! `cairn-chaos`: fault campaigns against Cairn. Real-process campaigns
//! (`campaign`), a deterministic simulator (`sim`), and the checker that
//! proves or refutes a run (`check`). See docs/chaos.md.

pub mod campaign;
pub mod check;
pub mod fuzz;
pub mod history;
pub mod net;
pub mod report;
pub mod rng;
pub mod sim;
pub mod simcheck;
pub mod soak;
