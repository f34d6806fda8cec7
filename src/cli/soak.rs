//! `drover soak`: the chaos scenario of the integration test (`drover::devsim::chaos`)
//! run for minutes to hours, printing RSS, open file descriptors, task counts, devices
//! by state and jobs run every interval, so a leak shows as a slope. Not run in CI.
//!
//! Task columns: `tasks` is alive tokio tasks on the fleet's runtimes (device and
//! control arbiters, SNMP receive thread: connection pools, timers); `actors` is
//! device actors alive (actix runs them on each arbiter's `LocalSet`, which tokio's
//! count does not see); `sim_tasks` is the simulators' runtime, for comparison.

use std::time::{Duration, Instant};

use clap::Args;

use drover::devsim::chaos::{self, ChaosConfig, ChaosSims};

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Simulated REST devices.
    #[arg(long, default_value_t = 1300)]
    pub rest: usize,
    /// Simulated SNMP agents.
    #[arg(long, default_value_t = 700)]
    pub snmp: usize,
    /// Seconds between reports.
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = ChaosConfig::default().concurrency)]
    pub concurrency: usize,
    /// First port of the REST devices (device i on port + i); 0 picks free ephemeral
    /// ports.
    #[arg(long, default_value_t = 0)]
    pub rest_base_port: u16,
}

pub fn main(a: SoakArgs) -> i32 {
    let cfg = ChaosConfig {
        rest: a.rest,
        snmp: a.snmp,
        concurrency: a.concurrency,
        rest_base_port: a.rest_base_port,
        ..ChaosConfig::default()
    };
    let sims = match ChaosSims::start(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("drover soak: simulators: {e}");
            return 69;
        }
    };
    let inventory = match sims.inventory() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("drover soak: {e}");
            return 70;
        }
    };
    let sys = actix_rt::System::new();
    sys.block_on(async move {
        let fleet = match drover::fleet::Fleet::start(cfg.fleet(), inventory).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("drover soak: {e}");
                return 70;
            }
        };
        let started = Instant::now();
        let end = started + Duration::from_secs(a.minutes * 60);
        let interval = Duration::from_secs(a.interval.max(1));
        outln!(
            "elapsed_s\trss_mib\tfds\ttasks\tactors\tsim_tasks\tjobs\treturns\tfailures\tviolations\tdevices_by_state"
        );
        let mut total = chaos::Tally::default();
        let mut violations = 0;
        let mut next_report = Instant::now();
        let mut n = 0;
        while Instant::now() < end {
            let mut t = chaos::storm(&fleet, &sims, &cfg, n, cfg.concurrency).await;
            n += cfg.concurrency;
            t.violations.extend(chaos::check_restarts(&fleet.registry));
            for v in t.violations.iter().take(5) {
                eprintln!("violation: {v}");
            }
            total.jobs += t.jobs;
            total.returns += t.returns;
            total.failures += t.failures;
            // Counted, not kept: a soak that breaks invariants for hours must not
            // grow its own memory doing so.
            violations += t.violations.len();
            if Instant::now() >= next_report {
                next_report += interval;
                report(started, &fleet, &sims, &total, violations);
            }
        }
        report(started, &fleet, &sims, &total, violations);
        fleet.shutdown(Duration::from_secs(5)).await;
        if violations == 0 {
            0
        } else {
            eprintln!("drover soak: {violations} invariant violations");
            1
        }
    })
}

/// One line of the table.
fn report(
    started: Instant,
    fleet: &drover::fleet::Fleet,
    sims: &ChaosSims,
    total: &chaos::Tally,
    violations: usize,
) {
    let states: Vec<String> = fleet
        .registry
        .state_counts()
        .iter()
        .map(|(s, c)| format!("{}={c}", s.as_str()))
        .collect();
    let stats = drover::telemetry::ProcessStats::read();
    let tasks: usize = drover::telemetry::runtime_tasks().values().sum();
    outln!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        started.elapsed().as_secs(),
        stats.map_or(0, |s| s.rss_bytes >> 20),
        stats.map_or(0, |s| s.open_fds),
        tasks,
        drover::telemetry::device_actors(),
        sims.tasks(),
        total.jobs,
        total.returns,
        total.failures,
        violations,
        states.join(",")
    );
}
