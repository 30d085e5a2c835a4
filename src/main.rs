//! The `loadgen` binary: everything happens in the library; this maps it to an exit code.

// Every request allocates a few small buffers (headers, body frames, templates) on each
// worker thread; mimalloc's thread-local free lists serve those faster than glibc's malloc
// (bench/run.sh measures the difference).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    loadgen::api::cli::main_with_args(std::env::args_os()).into()
}
