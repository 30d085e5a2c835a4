//! The bottom layer: vocabulary every other layer shares and that depends on nothing else
//! in the crate — units, positioned diagnostics, glob matching, atomic file writes, text
//! for the terminal, the network allow-list and the allowed data directories.

pub mod atomic;
pub mod data_dirs;
pub mod diag;
pub mod glob;
pub mod safety;
pub mod text;
pub mod units;
