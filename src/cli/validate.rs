//! `loadgen validate FILE`: check a scenario and report every error; sends nothing.

use crate::judge::exit::ExitCode;
use crate::scenario::{self, ScenarioError};

pub(super) fn validate(file: &std::path::Path, policy: Option<&std::path::Path>) -> ExitCode {
    let policy = match crate::policy::find(policy) {
        Ok(policy) => policy,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::BadInput;
        }
    };
    match scenario::load_with(file, policy.as_ref()) {
        Ok(plan) => {
            println!(
                "{}: ok ({} journeys, {} steps)",
                file.display(),
                plan.journeys.len(),
                plan.step_count()
            );
            ExitCode::Ok
        }
        Err(ScenarioError::Invalid(diagnostics)) => {
            eprintln!("{diagnostics}");
            ExitCode::BadInput
        }
        Err(other) => {
            eprintln!("error: {other}");
            ExitCode::BadInput
        }
    }
}
