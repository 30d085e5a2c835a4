//! loadgen: a load-and-chaos drill harness. See ARCHITECTURE.md for the map.
//!
//! ```text
//! scenario ─► Plan ─► engine (workers) ─► metrics (recorders → aggregator) ─► output
//! ```

pub mod analysis;
pub mod chaos;
pub mod cli;
pub mod compare;
pub mod data_dirs;
pub mod engine;
pub mod exit;
pub mod glob;
pub mod metrics;
pub mod output;
pub mod platform;
pub mod policy;
pub mod report;
pub mod run;
pub mod safety;
pub mod scenario;
pub mod slo;
pub mod verify;
