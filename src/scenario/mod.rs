//! Scenario files: parse (strict serde mirror) → validate → `Plan`.
//!
//! ```text
//! file ─► raw::parse ─► validate ─► Plan (pure data; `loadgen plan` prints it)
//! ```
//! Every error of a file is collected and reported at once with `file:line:col`.

mod checks;
mod data;
pub(crate) mod describe;
mod faults;
mod journeys;
mod lenient;
mod output;
mod policy_check;
mod prometheus;
mod raw;
mod record;
pub(crate) mod secrets;
mod slos;
mod target;
mod validate;
mod verify;

use std::path::Path;

pub use crate::plan::Plan;
pub(crate) use crate::util::diag::Diagnostics;
pub(crate) use output::parse_listen;

use crate::policy::Policy;

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
    load_with(path, None)
}

/// Reads and validates a scenario file within the operator's `policy`.
pub fn load_with(path: &Path, policy: Option<&Policy>) -> Result<Plan, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let source = String::from_utf8(bytes).map_err(|e| ScenarioError::Invalid(not_utf8(path, e)))?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    from_source_with(&source, path, base_dir, policy).map_err(ScenarioError::Invalid)
}

/// A file that is not UTF-8: one error at its first invalid byte (shown as U+FFFD).
fn not_utf8(path: &Path, error: std::string::FromUtf8Error) -> Diagnostics {
    let at = error.utf8_error().valid_up_to();
    let byte = error.as_bytes()[at];
    // Up to `at` the lossy text is the file's; the invalid byte(s) became one U+FFFD.
    let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
    let mut diagnostics = Diagnostics::new(path.display().to_string(), text);
    diagnostics.push(
        at..at + '\u{fffd}'.len_utf8(),
        format!("a scenario is UTF-8 text: byte 0x{byte:02x} here is not UTF-8"),
    );
    diagnostics
}

/// Validates scenario text; `path` names it in diagnostics, `base_dir` anchors feeder files.
pub fn from_source(source: &str, path: &Path, base_dir: &Path) -> Result<Plan, Diagnostics> {
    from_source_with(source, path, base_dir, None)
}

/// `from_source` within `policy`: what lies outside it is an error too, and the plan
/// carries what the policy limits at run time (hosts, targets, the Kubernetes pin).
pub(crate) fn from_source_with(
    source: &str,
    path: &Path,
    base_dir: &Path,
    policy: Option<&Policy>,
) -> Result<Plan, Diagnostics> {
    let mut diagnostics = Diagnostics::new(path.display().to_string(), source);
    let Some(raw) = raw::parse(source, &mut diagnostics) else {
        return Err(diagnostics);
    };
    if let Some(policy) = policy {
        policy_check::check(&raw, base_dir, policy, &mut diagnostics);
    }
    let plan = validate::validate(raw, path, base_dir, &mut diagnostics);
    match plan {
        Some(mut plan) if diagnostics.is_empty() => {
            if let Some(policy) = policy {
                plan.apply_policy(policy);
            }
            Ok(plan)
        }
        _ => Err(diagnostics),
    }
}
