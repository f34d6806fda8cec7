//! `drover demo`: the whole product on one machine with nothing installed: a simulator
//! with N REST devices on its own thread, a fleet managing them, a bulk `test.ping`
//! and `service.status apache`, a summary of each, then `/metrics` until Ctrl-C.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use drover::config::Config;
use drover::devsim::{OnThread, RestSim, RestSimConfig};
use drover::inventory::Inventory;
use drover::job::{JobRequest, Outcome, Return, Tgt};
use drover::run::Daemon;

use super::devsim::FaultArgs;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of simulated devices.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub count: usize,
    /// Where the HTTP API and /metrics listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Exit after the summary instead of serving /metrics until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    #[command(flatten)]
    pub faults: FaultArgs,
}

pub fn main(a: DemoArgs) -> i32 {
    let sim_cfg = RestSimConfig {
        count: a.count,
        faults: a.faults.rates(),
        ..RestSimConfig::default()
    };
    // The simulator stands apart from the fleet: its own thread and runtime, as the
    // devices would be separate machines. It serves until this function returns.
    let sim = match OnThread::start(move || RestSim::start(sim_cfg)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("drover demo: simulator failed: {e}");
            return 69;
        }
    };
    let inventory_text = sim.sim.inventory_toml();
    let inventory = match Inventory::parse(&inventory_text, Path::new("<devsim>")) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("drover demo: {e}");
            return 70;
        }
    };
    let mut cfg = Config::default();
    cfg.http.listen = a.listen;
    cfg.fleet.job_timeout = Duration::from_secs(30);
    let sys = actix_rt::System::new();
    sys.block_on(async move {
        let started = Instant::now();
        outln!(
            "Starting {} simulated REST devices and a fleet over them...",
            inventory.len()
        );
        let daemon = match Daemon::start(&cfg, inventory, None).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("drover demo: {e}");
                return e.exit_code();
            }
        };
        daemon.fleet.settled().await;
        let reg = &daemon.fleet.registry;
        outln!(
            "Fleet settled in {:.2?}: {} up, {} down or backing off.",
            started.elapsed(),
            reg.count_in(drover::fleet::registry::DeviceState::Up),
            reg.len() - reg.count_in(drover::fleet::registry::DeviceState::Up)
        );
        for (fun, arg) in [
            ("test.ping", vec![]),
            ("service.status", vec![serde_json::Value::from("apache")]),
        ] {
            let req = JobRequest {
                tgt: Tgt::Expr("*".into()),
                tgt_type: Default::default(),
                fun: fun.into(),
                arg,
                kwarg: Default::default(),
                batch: None,
                timeout: None,
                jid: None,
            };
            let t0 = Instant::now();
            match daemon.master.submit(req).await {
                Ok((record, mut rx)) => {
                    let mut returns = Vec::with_capacity(record.minions.len());
                    while let Some(r) = rx.recv().await {
                        returns.push(r);
                    }
                    summary(fun, record.minions.len(), &returns, t0.elapsed());
                }
                Err(e) => eprintln!("{fun}: {e}"),
            }
        }
        outln!(
            "\nMetrics: http://{}/metrics   Devices: http://{}/v1/devices",
            daemon.http_addr,
            daemon.http_addr
        );
        outln!(
            "Try: drover cmd --url http://{} 'rest-000*' test.ping",
            daemon.http_addr
        );
        if a.exit {
            daemon.stop().await;
        } else {
            outln!("Serving until Ctrl-C.");
            daemon.run_until(drover::run::shutdown_signal()).await;
        }
        0
    })
}

fn summary(fun: &str, targeted: usize, returns: &[Arc<Return>], wall: Duration) {
    let trues = returns
        .iter()
        .filter(|r| r.ret == serde_json::Value::Bool(true))
        .count();
    let failed = returns.iter().filter(|r| !r.success).count();
    let timeouts = returns
        .iter()
        .filter(|r| r.outcome == Outcome::Timeout)
        .count();
    let slowest = returns
        .iter()
        .filter(|r| r.success)
        .max_by_key(|r| r.duration_ms);
    outln!(
        "\n{fun}: {}/{} returned, {} True, {} failed ({} timed out), wall time {:.3?}",
        returns.len(),
        targeted,
        trues,
        failed,
        timeouts,
        wall
    );
    if let Some(s) = slowest {
        outln!("  slowest device: {} ({} ms)", s.id, s.duration_ms);
    }
}
