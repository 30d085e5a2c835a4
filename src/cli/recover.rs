//! `loadgen recover [RUN_DIR]`: undo the faults a run's ledger does not show as recovered.

use std::path::PathBuf;
use std::time::Duration;

use super::small_runtime;
use crate::chaos::registry::Registry;
use crate::judge::exit::ExitCode;
use crate::util::text::{say, warn};

/// `loadgen recover [RUN_DIR]`: exit 0 when everything is recovered (or nothing was left),
/// 4 when anything may still be applied: an undo failed, or a ledger or the run registry
/// could not be read or written.
pub(super) fn recover_command(
    run_dir: Option<PathBuf>,
    deadline: Duration,
    policy: Option<&std::path::Path>,
    registry: &Registry,
) -> ExitCode {
    use crate::chaos::recover::{find_runs, recover_run};
    // The policy bounds which stack script a ledger's restart may run.
    let dirs = match crate::policy::find(policy) {
        Ok(policy) => policy.and_then(|p| p.dirs()),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::BadInput;
        }
    };
    // One code for the whole command: a registry that could not be read is a 4 even when
    // the runs found elsewhere recover cleanly.
    let mut code = ExitCode::Ok;
    let runs = match run_dir {
        Some(run_dir) => vec![run_dir],
        None => {
            let found = find_runs(std::path::Path::new("reports"), registry);
            if let Some(e) = &found.registry_error {
                eprintln!(
                    "error: {e}; runs elsewhere may still have faults applied (then run `loadgen recover RUN_DIR`)"
                );
                code = code.max(ExitCode::FaultNotRecovered);
            }
            for gone in &found.gone {
                println!(
                    "registered run {} no longer exists: removed from the registry",
                    gone.display()
                );
            }
            if found.runs.is_empty() {
                println!(
                    "nothing to recover: no registered run (state directory {}) and none under reports/ has unrecovered faults",
                    registry
                        .state_dir()
                        .map_or_else(|| "unset".to_string(), |d| d.display().to_string())
                );
                return code;
            }
            found.runs
        }
    };
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(failed) => return failed.max(code),
    };
    for run_dir in &runs {
        println!("recovering {}", run_dir.display());
        let recovery =
            crate::chaos::backends::Recovery::new(crate::platform::for_recovery(), dirs.clone());
        match runtime.block_on(recover_run(run_dir, deadline, &recovery, registry)) {
            Err(message) => {
                eprintln!("error: {message}");
                code = code.max(ExitCode::FaultNotRecovered);
            }
            Ok(report) => {
                for line in &report.recovered {
                    say(&format!("recovered: {line}\n"));
                }
                for line in &report.failed {
                    warn(&format!("NOT recovered: {line}\n"));
                }
                if report.recovered.is_empty() && report.failed.is_empty() {
                    println!("nothing to recover in {}", run_dir.display());
                }
                if !report.failed.is_empty() {
                    code = code.max(ExitCode::FaultNotRecovered);
                }
            }
        }
    }
    code
}
