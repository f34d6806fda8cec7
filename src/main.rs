//! The `drover` binary: parses the command line, sets up tracing, loads config, runs,
//! and maps errors to exit codes (64 for a bad config).

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc over glibc malloc: the fleet's hot paths allocate and free many small,
/// short-lived buffers from several runtime threads, where glibc's arena locking
/// and chunk coalescing showed at the top of `perf` (see the bench note in README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let code = cli::dispatch(args);
    ExitCode::from(code.clamp(0, 255) as u8)
}
