//! loadgen: a load-and-chaos drill harness. See ARCHITECTURE.md for the map.
//!
//! ```text
//! scenario ─► Plan ─► engine (workers) ─► metrics (recorders → aggregator) ─► output
//! ```

pub mod chaos;
pub mod charts;
pub mod cli;
pub mod compare;
pub mod engine;
pub mod judge;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod platform;
pub mod policy;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod util;
pub mod verify;
