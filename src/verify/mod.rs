//! Nothing acknowledged is lost: steps record what the platform acknowledged
//! (`acks.jsonl`, written as the workers' per-second reports arrive); after the load and
//! every fault have ended and the platform has settled, each recorded write is read back
//! (`verify.jsonl`), and the platform's own totals and invariants are compared with what
//! was acknowledged (`verify.json`). Judged from those files alone, so `loadgen report`
//! re-judges without the target.
//!
//! ```text
//! scenario::verify ─► plan (kinds, counts, invariants)
//! engine (record on an acknowledged response) ─► WorkerReport.acks ─► acks::AckLog
//! run::baseline (pre-flight) ─► run::run (read back, probe again) ─► judge ─► summary.verify
//! ```

pub(crate) mod acks;
pub(crate) mod check;
pub(crate) mod run;
