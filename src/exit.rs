//! Exit codes: a documented contract (README, "Exit codes").

/// 0: the run completed (and, once SLOs exist, met them).
pub const OK: u8 = 0;
/// 1: an SLO or the baseline gate failed (reserved until SLOs land).
pub const SLO_FAILED: u8 = 1;
/// 2: bad input — scenario or flags. Nothing was sent.
pub const BAD_INPUT: u8 = 2;
/// 3: the run could not complete — target unreachable at start, interrupted, harness failure.
pub const COULD_NOT_RUN: u8 = 3;
/// 4: a fault could not be recovered; a human must act (the message says what to undo).
pub const FAULT_NOT_RECOVERED: u8 = 4;
