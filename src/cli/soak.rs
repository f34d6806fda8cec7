//! `drover soak`: the chaos scenario of the integration test (`drover::devsim::chaos`)
//! run for minutes to hours, printing RSS, open file descriptors, devices by state and
//! jobs run every interval, so a leak shows as a slope. Not run in CI.

use std::time::{Duration, Instant};

use clap::Args;

use drover::devsim::chaos::{self, ChaosConfig, ChaosSims};

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Simulated REST devices.
    #[arg(long, default_value_t = 1500)]
    pub rest: usize,
    /// Simulated SNMP agents.
    #[arg(long, default_value_t = 500)]
    pub snmp: usize,
    /// Seconds between reports.
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

pub fn main(a: SoakArgs) -> i32 {
    let cfg = ChaosConfig {
        rest: a.rest,
        snmp: a.snmp,
        concurrency: a.concurrency,
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
        outln!("elapsed_s\trss_mib\tfds\tjobs\treturns\tfailures\tviolations\tdevices_by_state");
        let mut total = chaos::Tally::default();
        let mut next_report = Instant::now();
        let mut n = 0;
        while Instant::now() < end {
            let t = chaos::storm(&fleet, &sims, &cfg, n, cfg.concurrency).await;
            n += cfg.concurrency;
            for v in t.violations.iter().take(5) {
                eprintln!("violation: {v}");
            }
            total.jobs += t.jobs;
            total.returns += t.returns;
            total.failures += t.failures;
            total.violations.extend(t.violations);
            if Instant::now() >= next_report {
                next_report += interval;
                let states: Vec<String> = fleet
                    .registry
                    .state_counts()
                    .iter()
                    .map(|(s, c)| format!("{}={c}", s.as_str()))
                    .collect();
                outln!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    started.elapsed().as_secs(),
                    chaos::rss_bytes().unwrap_or(0) >> 20,
                    chaos::open_fds().unwrap_or(0),
                    total.jobs,
                    total.returns,
                    total.failures,
                    total.violations.len(),
                    states.join(",")
                );
            }
        }
        fleet.shutdown(Duration::from_secs(5)).await;
        if total.violations.is_empty() {
            0
        } else {
            eprintln!(
                "drover soak: {} invariant violations",
                total.violations.len()
            );
            1
        }
    })
}
