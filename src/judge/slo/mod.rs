//! Measuring service-level objectives (their specs are `plan::slo`): a condition observed
//! over a window's histogram and counts, a drift between a window's thirds, and the live
//! watch that aborts a run early.

pub(crate) mod live;
mod measure;

pub(crate) use measure::{Drift, Observed, drift};
