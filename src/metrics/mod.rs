//! Measurement: per-worker recorders (no shared state on the request path), the aggregator
//! that merges them once per second, and the mergeable statistics both use.

pub(crate) mod ack;
pub(crate) mod aggregate;
pub(crate) mod error_class;
pub(crate) mod host;
pub(crate) mod interval;
pub(crate) mod not_started;
pub(crate) mod recorder;
pub(crate) mod samples;
pub(crate) mod stats;

pub(crate) use aggregate::Aggregator;
pub use aggregate::Second;
pub use error_class::ErrorClass;
pub(crate) use error_class::ErrorCounts;
pub(crate) use not_started::{NotStarted, NotStartedCounts};
pub(crate) use recorder::{Recorder, WorkerReport};
pub(crate) use samples::FailureSample;
pub(crate) use stats::{Percentiles, Snapshot};
