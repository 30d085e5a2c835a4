//! `loadgen validate FILE`: check a scenario and report every error; sends nothing.

use crate::exit;
use crate::scenario::{self, ScenarioError};

pub(super) fn validate(file: &std::path::Path, policy: Option<&std::path::Path>) -> u8 {
    let policy = match crate::policy::find(policy) {
        Ok(policy) => policy,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::BAD_INPUT;
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
            exit::OK
        }
        Err(ScenarioError::Invalid(diagnostics)) => {
            eprintln!("{diagnostics}");
            exit::BAD_INPUT
        }
        Err(other) => {
            eprintln!("error: {other}");
            exit::BAD_INPUT
        }
    }
}
