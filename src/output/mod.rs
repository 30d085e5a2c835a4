//! What a run shows on the terminal: the live progress line, the final table and the
//! verdict lines, all rendered from the record.

pub(crate) mod progress;
pub(crate) mod table;
pub(crate) mod verdict_lines;
