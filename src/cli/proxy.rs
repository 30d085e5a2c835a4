//! `loadgen proxy`: a TCP fault proxy in front of a service.

use super::small_runtime;
use crate::chaos::proxy::daemon::{self, DaemonOptions};
use crate::exit;

pub(super) fn proxy_command(options: DaemonOptions) -> u8 {
    let upstream = match daemon::check(&options) {
        Ok(upstream) => upstream,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return exit::BAD_INPUT;
        }
    };
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(daemon::serve(options, upstream)) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: proxy: {e}");
            exit::COULD_NOT_RUN
        }
    }
}
