//! Scenario files: parse (strict serde mirror) → validate → `Plan`.
//!
//! ```text
//! file ─► raw::parse ─► validate ─► Plan (pure data; `loadgen plan` prints it)
//! ```
//! Every error of a file is collected and reported at once with `file:line:col`.

mod data;
pub mod describe;
pub mod diag;
mod faults;
mod journeys;
pub mod plan;
mod raw;
pub mod secrets;
mod slos;
pub mod template;
pub mod units;
mod validate;

use std::path::Path;

pub use diag::Diagnostics;
pub use plan::Plan;

/// Why a scenario could not become a plan.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Plan, ScenarioError> {
    let source = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    from_source(&source, path, base_dir).map_err(ScenarioError::Invalid)
}

/// Validates scenario text; `path` names it in diagnostics, `base_dir` anchors feeder files.
pub fn from_source(source: &str, path: &Path, base_dir: &Path) -> Result<Plan, Diagnostics> {
    let mut diagnostics = Diagnostics::new(path.display().to_string(), source);
    let Some(raw) = raw::parse(source, &mut diagnostics) else {
        return Err(diagnostics);
    };
    let plan = validate::validate(raw, path, base_dir, &mut diagnostics);
    match plan {
        Some(plan) if diagnostics.is_empty() => Ok(plan),
        _ => Err(diagnostics),
    }
}
