//! Test support: the REST simulator on its own thread and runtime (as real devices
//! would be separate machines), fast fleet settings, and bounded waits on events.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use drover::config::{BackoffConfig, FleetConfig};
use drover::devsim::{RestSim, RestSimConfig};
use drover::fleet::Fleet;
use drover::inventory::Inventory;
use drover::job::{JobRequest, Return, Tgt};

pub use drover::devsim::OnThread;

/// The REST simulator on its own thread.
pub type SimThread = OnThread<RestSim>;

/// What the tests need of a REST simulator on its own thread.
pub trait RestThread {
    fn rest(cfg: RestSimConfig) -> Self;
    fn inventory(&self) -> Inventory;
    fn ids(&self) -> Vec<String>;
}

impl RestThread for SimThread {
    fn rest(cfg: RestSimConfig) -> SimThread {
        OnThread::start(move || RestSim::start(cfg)).expect("simulator starts")
    }

    fn inventory(&self) -> Inventory {
        Inventory::parse(&self.sim.inventory_toml(), Path::new("<devsim>")).expect("inventory")
    }

    fn ids(&self) -> Vec<String> {
        self.sim.devices().iter().map(|d| d.id.clone()).collect()
    }
}

/// Simulated devices on fixed ports below the kernel's ephemeral range. Tests that
/// take devices down use this: a down device's ephemeral port is free for another
/// simulator of this process to pick, which would then answer in its place.
pub fn sim_at(count: usize, base_port: u16) -> SimThread {
    SimThread::rest(RestSimConfig {
        count,
        base_port,
        ..RestSimConfig::default()
    })
}

pub fn sim(count: usize) -> SimThread {
    SimThread::rest(RestSimConfig {
        count,
        ..RestSimConfig::default()
    })
}

/// Settings that make failure and recovery happen in milliseconds.
pub fn fast_fleet() -> FleetConfig {
    FleetConfig {
        job_timeout: Duration::from_secs(10),
        device_timeout: Duration::from_secs(2),
        health_interval: Duration::from_millis(200),
        max_consecutive_failures: 2,
        arbiters: 2,
        backoff: BackoffConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            jitter: 0.1,
            restart_limit: 1000,
            restart_window: Duration::from_secs(60),
            failed_retry: Duration::from_secs(1),
        },
        ..FleetConfig::default()
    }
}

/// Bounds a wait for an event; a test that would hang fails instead.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

pub fn request(tgt: &str, fun: &str, arg: Vec<serde_json::Value>) -> JobRequest {
    JobRequest {
        tgt: Tgt::Expr(tgt.into()),
        tgt_type: Default::default(),
        fun: fun.into(),
        arg,
        kwarg: Default::default(),
        batch: None,
        timeout: None,
        jid: None,
    }
}

/// Runs a job to the end; returns (targeted ids, returns in arrival order).
pub async fn run_job(fleet: &Fleet, req: JobRequest) -> (Vec<String>, Vec<Return>) {
    let mut h = fleet.submit(req).await.expect("job accepted");
    let mut out = Vec::new();
    within(60, "job returns", async {
        while let Some(r) = h.returns.recv().await {
            out.push(r);
        }
    })
    .await;
    (h.minions, out)
}

/// Runs a job on one device and gives its single return.
pub async fn one(fleet: &Fleet, id: &str, fun: &str, arg: Vec<serde_json::Value>) -> Return {
    let mut req = request(id, fun, arg);
    req.tgt_type = drover::fleet::target::TargetType::List;
    let (minions, mut rets) = run_job(fleet, req).await;
    assert_eq!(minions, [id]);
    assert_eq!(rets.len(), 1, "{fun} on {id}: {rets:?}");
    rets.remove(0)
}

/// Asserts the promise the dispatcher owns: exactly one return per targeted device.
pub fn assert_exactly_one_each(minions: &[String], returns: &[Return]) {
    let mut ids: Vec<&str> = returns.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = minions.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(
        ids, want,
        "one return per targeted device, no more, no less"
    );
}

pub async fn start_fleet(cfg: FleetConfig, inv: Inventory) -> Fleet {
    let fleet = Fleet::start(cfg, inv).await.expect("fleet starts");
    within(30, "fleet to settle", fleet.settled()).await;
    fleet
}

/// Logs to the test's output when `RUST_LOG` is set.
pub fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        drover::telemetry::init_tracing("info");
    }
}
