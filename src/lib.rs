//! loadgen: a load-and-chaos drill harness. See ARCHITECTURE.md for the map.
//!
//! ```text
//! scenario ─► Plan ─► engine (workers) ─► metrics (recorders → aggregator) ─► output
//! ```
//!
//! Every module is private: what a program or test outside the crate may use is the facade,
//! `api`. An item another module does not need is private; one the crate needs is
//! `pub(crate)`; `unreachable_pub` keeps a `pub` from saying more than that.

#![warn(unreachable_pub)]

pub mod api;
mod chaos;
mod charts;
mod cli;
mod compare;
mod engine;
mod exporter;
mod judge;
mod metrics;
mod output;
mod plan;
mod platform;
mod policy;
mod puller;
mod record;
mod report;
mod run;
mod scenario;
mod util;
mod verify;
