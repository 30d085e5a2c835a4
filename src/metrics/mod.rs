//! Measurement: per-worker recorders (no shared state on the request path), the aggregator
//! that merges them once per second, and the mergeable statistics both use.

pub mod ack;
pub mod aggregate;
pub mod error_class;
pub mod host;
pub mod interval;
pub mod not_started;
pub mod recorder;
pub mod samples;
pub mod stats;

pub use aggregate::{Aggregator, Second};
pub use error_class::{ErrorClass, ErrorCounts};
pub use not_started::{NotStarted, NotStartedCounts};
pub use recorder::{Recorder, WorkerReport};
pub use samples::{FailureSample, Samples};
pub use stats::{Percentiles, Snapshot};
