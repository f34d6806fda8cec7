//! The `drover` binary: parses the command line, sets up tracing, loads config, runs,
//! and maps errors to exit codes (64 for a bad config).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let code = cli::dispatch(args);
    ExitCode::from(code.clamp(0, 255) as u8)
}
