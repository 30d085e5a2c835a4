//! `loadgen plan FILE`: print the resolved plan; sends nothing.

use std::path::PathBuf;

use super::{Overrides, report_error};
use crate::judge::exit::ExitCode;
use crate::run::{self, RunOptions};
use crate::scenario::describe::describe;

pub(super) fn plan(file: PathBuf, overrides: Overrides, policy: Option<PathBuf>) -> ExitCode {
    let options = RunOptions {
        policy,
        scenario: file,
        target: overrides.target,
        seed: overrides.seed,
        duration: overrides.duration,
        ..RunOptions::default()
    };
    match run::prepare(&options) {
        Ok(prepared) => {
            print!("{}", describe(&prepared.plan, prepared.seed));
            ExitCode::Ok
        }
        Err(error) => report_error(error),
    }
}
