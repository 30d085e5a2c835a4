//! `loadgen proxy`: a TCP fault proxy in front of a service.

use super::small_runtime;
use crate::chaos::proxy::daemon::{self, DaemonOptions};
use crate::exit::ExitCode;

pub(super) fn proxy_command(options: DaemonOptions) -> ExitCode {
    let upstream = match daemon::check(&options) {
        Ok(upstream) => upstream,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::BadInput;
        }
    };
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(daemon::serve(options, upstream)) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("error: proxy: {e}");
            ExitCode::CouldNotRun
        }
    }
}
