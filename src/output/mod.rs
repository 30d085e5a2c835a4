//! What a run shows on the terminal: the live progress line, the final table and the
//! verdict lines, all rendered from the record.

pub mod progress;
pub mod table;
pub mod verdict_lines;
