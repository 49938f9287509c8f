//! The grid: leader election, the replicated grid log and membership changes as a
//! two-phase commit (design §5).

pub mod core;
pub mod driver;
pub mod fault;
pub mod gam;
pub mod membership;
pub mod peer;
pub mod placement;
pub mod sim;
pub mod store;
pub mod types;
