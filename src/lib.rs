//! loadgen: a load-and-chaos drill harness. See ARCHITECTURE.md for the map.
//!
//! ```text
//! scenario ─► Plan ─► engine (workers) ─► metrics (recorders → aggregator) ─► output
//! ```

pub mod analysis;
pub mod chaos;
pub mod charts;
pub mod cli;
pub mod compare;
pub mod engine;
pub mod exit;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod platform;
pub mod policy;
pub mod report;
pub mod run;
pub mod scenario;
pub mod slo;
pub mod util;
pub mod verify;
