//! An acknowledged write as a worker reports it: the verification after the load reads each
//! one back (`verify`); the workers only carry them, in their per-second reports.

/// One acknowledged write as a worker hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    /// Index into the plan's verification kinds.
    pub kind: u16,
    /// The recording step's global index.
    pub step: u32,
    /// When the acknowledging response arrived, in ms since the run's start.
    pub at_ms: u64,
    /// The record rendered: `{"fields": {…}, "id": …}`.
    pub body: Vec<u8>,
}
