//! The bottom layer: vocabulary every other layer shares and that depends on nothing else
//! in the crate — units, positioned diagnostics, glob matching, atomic file writes, text
//! for the terminal, the network allow-list and the allowed data directories.

pub(crate) mod atomic;
pub(crate) mod data_dirs;
pub(crate) mod diag;
pub(crate) mod glob;
pub(crate) mod safety;
pub(crate) mod text;
pub(crate) mod units;
