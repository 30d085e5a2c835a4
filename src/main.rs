//! The `loadgen` binary: everything happens in the library; this maps it to an exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(loadgen::cli::main_with_args(std::env::args_os()))
}
