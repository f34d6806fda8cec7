//! Command-line interface: the subcommands and their wiring. Each subcommand lives in
//! its own module; this one only parses and dispatches.

/// `println!` for command output: a closed pipe (`drover devices | head`) ends the
/// process quietly instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::write_out(format_args!($($t)*), true) };
}

/// `print!` with the same closed-pipe rule.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::write_out(format_args!($($t)*), false) };
}

mod bench;
mod cmd;
mod demo;
mod devices;
mod devsim;
mod health_bench;
mod highstate;
mod output;
mod salt_bench;
mod soak;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use drover::config::Config;
use drover::inventory::Inventory;
use drover::telemetry;

/// Exit code for a bad config or bad usage (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "drover",
    version,
    about = "One process that proxies thousands of agentless network devices as minions of a master."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon from a config file.
    Run {
        #[arg(short, long, default_value = "config/drover.toml")]
        config: PathBuf,
        /// Serve only shard I of N (rendezvous hashing of device ids).
        #[arg(long, env = "DROVER_SHARD")]
        shard: Option<drover::inventory::Shard>,
    },
    /// Validate a config file and its inventory without starting anything.
    CheckConfig {
        #[arg(short, long, default_value = "config/drover.toml")]
        config: PathBuf,
    },
    /// Run a function on the devices a target matches (like `salt`).
    Cmd(cmd::CmdArgs),
    /// List the devices of a running daemon and their state.
    Devices(devices::DevicesArgs),
    /// Serve simulated REST devices on loopback until Ctrl-C.
    Devsim(devsim::DevsimArgs),
    /// Simulated devices + a fleet over them + a bulk job, then serve /metrics.
    Demo(demo::DemoArgs),
    /// Fleet-scale benchmark: simulator and fleet as separate processes, N devices.
    Bench(bench::BenchArgs),
    /// Device health side by side: Drover's polls and snmp_exporter over the same
    /// real snmpd agents; CPU per walk, agents' CPU, scrape latency.
    HealthBench(health_bench::HealthBenchArgs),
    /// The chaos scenario for N minutes, printing RSS, fds, tasks and device states (leak
    /// hunt).
    Soak(soak::SoakArgs),
    /// Write a Drover inventory from a Salt pillar tree's `proxy:` blocks.
    ImportPillar {
        /// The pillar root (holding top.sls).
        dir: PathBuf,
        /// Write the inventory here instead of standard output.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Minion ids to expand glob targets of top.sls against (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
    },
}

pub fn dispatch(cli: Cli) -> i32 {
    raise_fd_limit();
    match cli.command {
        Command::Run { config, shard } => {
            telemetry::init_tracing("info");
            disable_huge_pages();
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("drover: {e}");
                    return EXIT_CONFIG;
                }
            };
            let cfg = Config {
                shard: shard.or(cfg.shard),
                ..cfg
            };
            let sys = actix_rt::System::new();
            match sys.block_on(drover::run::run(cfg, drover::run::shutdown_signal())) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("drover: {e}");
                    e.exit_code()
                }
            }
        }
        Command::CheckConfig { config } => check_config(&config),
        Command::Cmd(a) => cmd::main(a),
        Command::Devices(a) => devices::main(a),
        Command::Devsim(a) => {
            telemetry::init_tracing("info");
            devsim::main(a)
        }
        Command::ImportPillar { dir, out, ids } => import_pillar(&dir, out.as_deref(), &ids),
        Command::Demo(a) => {
            telemetry::init_tracing("warn");
            demo::main(a)
        }
        Command::Soak(a) => {
            // The faults are on purpose: their warnings would bury the table. RUST_LOG
            // brings them back.
            telemetry::init_tracing("error");
            soak::main(a)
        }
        Command::Bench(a) => {
            telemetry::init_tracing("warn");
            bench::main(a)
        }
        Command::HealthBench(a) => {
            telemetry::init_tracing("warn");
            health_bench::main(a)
        }
    }
}

fn check_config(path: &std::path::Path) -> i32 {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drover: {e}");
            return EXIT_CONFIG;
        }
    };
    match Inventory::load(&cfg.inventory_paths()) {
        Ok(inv) => {
            outln!(
                "{}: ok, {} device(s) from {} inventory file(s)",
                path.display(),
                inv.len(),
                cfg.inventory.len()
            );
            0
        }
        Err(e) => {
            eprintln!("drover: {e}");
            EXIT_CONFIG
        }
    }
}

pub fn write_out(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let res = stdout
        .write_fmt(args)
        .and_then(|_| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|_| stdout.flush());
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

fn import_pillar(dir: &std::path::Path, out: Option<&std::path::Path>, ids: &[String]) -> i32 {
    let report = match drover::pillar::import_pillar(dir, ids) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("drover import-pillar: {e}");
            return EXIT_CONFIG;
        }
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &report.inventory_toml) {
                eprintln!("drover import-pillar: {}: {e}", path.display());
                return 73;
            }
            eprintln!("{} device(s) written to {}", report.devices, path.display());
        }
        None => out!("{}", report.inventory_toml),
    }
    0
}

/// No transparent huge pages for the daemon. mimalloc asks for them on its arenas
/// (`madvise(MADV_HUGEPAGE)`), and where the kernel grants them a 2 MiB page stays
/// resident when only a few KiB of it are in use; thousands of long-lived sessions
/// scatter across many. `drover bench --kind netconf` at 1,000 devices: 111.5 KiB
/// per idle device with them, 85.4 KiB without (`MIMALLOC_ALLOW_THP=0`), for the
/// same `get_config` rate. The flag is per process and inherited by children.
fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    match rustix::thread::disable_transparent_huge_pages(true) {
        Ok(()) => tracing::debug!("Transparent huge pages disabled."),
        Err(e) => tracing::warn!(error = %e, "Could not disable transparent huge pages."),
    }
}

/// Thousands of devices need thousands of sockets; the usual soft limit is 1,024.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "Open-file limit raised."),
        Err(e) => tracing::warn!(error = %e, "Could not raise the open-file limit."),
    }
}
