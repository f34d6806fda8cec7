//! The chaos scenario shared by the chaos integration test and `drover soak`: a mixed
//! REST and SNMP simulated fleet with seeded faults, a deterministic plan of mixed jobs
//! run some at a time and some batched while devices are flipped down and up, and the
//! invariants every job must keep (one return per targeted device, every failure an
//! error naming its cause). It reports violations instead of panicking, so the test
//! asserts on them and the soak command prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{BackoffConfig, FleetConfig};
use crate::devsim::rest::{Fault, FaultRates, RestSim, RestSimConfig};
use crate::devsim::snmp::{SnmpFault, SnmpFaultRates, SnmpSim, SnmpSimConfig};
use crate::fleet::target::TargetType;
use crate::fleet::Fleet;
use crate::inventory::Inventory;
use crate::job::{Batch, JobRequest, Outcome, Return, Tgt};

/// REST device ids start with this, SNMP agent ids with [`SNMP_PREFIX`].
pub const REST_PREFIX: &str = "chaos-";
pub const SNMP_PREFIX: &str = "csw-";

/// The scenario's size and seed.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub rest: usize,
    pub snmp: usize,
    /// REST devices listen on `rest_base_port + i`: fixed ports below the ephemeral
    /// range, because a device taken down frees its port, and an ephemeral one could
    /// then be handed to one of Drover's own outgoing connections.
    pub rest_base_port: u16,
    /// Jobs in flight at once.
    pub concurrency: usize,
    pub seed: u64,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            rest: 1500,
            snmp: 500,
            rest_base_port: 24000,
            concurrency: 8,
            seed: 7,
        }
    }
}

/// Device timeout of the scenario's fleet; the slow devices answer after twice this.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(1);

impl ChaosConfig {
    pub fn rest_sim(&self) -> RestSimConfig {
        RestSimConfig {
            count: self.rest,
            id_prefix: REST_PREFIX.into(),
            base_port: self.rest_base_port,
            faults: FaultRates {
                down: 0.03,
                slow: 0.03,
                flapping: 0.03,
                http500: 0.03,
                garbage: 0.03,
                reset: 0.03,
                slow_latency: DEVICE_TIMEOUT * 2,
                flap_period: Duration::from_millis(700),
                seed: self.seed,
            },
            ..RestSimConfig::default()
        }
    }

    pub fn snmp_sim(&self) -> SnmpSimConfig {
        SnmpSimConfig {
            count: self.snmp,
            id_prefix: SNMP_PREFIX.into(),
            interfaces: 2,
            faults: SnmpFaultRates {
                down: 0.03,
                slow: 0.03,
                drop: 0.03,
                malformed: 0.03,
                slow_latency: DEVICE_TIMEOUT * 2,
                drop_share: 0.5,
                seed: self.seed,
            },
            ..SnmpSimConfig::default()
        }
    }

    /// Failure and recovery in milliseconds, so restarts happen within a short run.
    pub fn fleet(&self) -> FleetConfig {
        FleetConfig {
            job_timeout: Duration::from_secs(8),
            device_timeout: DEVICE_TIMEOUT,
            health_interval: Duration::from_millis(250),
            max_consecutive_failures: 2,
            arbiters: 2,
            backoff: BackoffConfig {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(300),
                jitter: 0.1,
                restart_limit: 100_000,
                restart_window: Duration::from_secs(60),
                failed_retry: Duration::from_secs(1),
            },
            ..FleetConfig::default()
        }
    }
}

/// Both simulators on one thread and runtime of their own, as real devices would be
/// separate machines; stopped when dropped.
pub struct ChaosSims {
    pub rest: Arc<RestSim>,
    pub snmp: Arc<SnmpSim>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChaosSims {
    pub fn start(cfg: &ChaosConfig) -> std::io::Result<ChaosSims> {
        let (rest_cfg, snmp_cfg) = (cfg.rest_sim(), cfg.snmp_sim());
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("chaos-sims".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let started = async {
                        let rest = Arc::new(RestSim::start(rest_cfg).await?);
                        let snmp = Arc::new(SnmpSim::start(snmp_cfg).await?);
                        Ok::<_, std::io::Error>((rest, snmp))
                    };
                    match started.await {
                        Ok(sims) => {
                            let _ = tx.send(Ok(sims.clone()));
                            let _ = stop_rx.await;
                            drop(sims);
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        match rx.recv() {
            Ok(Ok((rest, snmp))) => Ok(ChaosSims {
                rest,
                snmp,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("simulator thread died")),
        }
    }

    /// One inventory for both simulators (SNMP v2c).
    pub fn inventory(&self) -> Result<Inventory, crate::config::ConfigError> {
        let text = self.rest.inventory_toml() + &self.snmp.inventory_toml("2c");
        Inventory::parse(&text, Path::new("<chaos>"))
    }

    /// Devices that start with a flapping fault.
    pub fn flapping(&self) -> Vec<String> {
        self.rest
            .devices()
            .iter()
            .filter(|d| matches!(self.rest.fault(&d.id), Some(Fault::Flapping { .. })))
            .map(|d| d.id.clone())
            .collect()
    }
}

impl Drop for ChaosSims {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a storm did and every invariant it saw broken.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub jobs: usize,
    pub returns: usize,
    pub failures: usize,
    /// Failed returns by outcome.
    pub by_outcome: BTreeMap<&'static str, usize>,
    /// Devices flipped down and up during jobs.
    pub flipped: BTreeSet<String>,
    pub violations: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.jobs += other.jobs;
        self.returns += other.returns;
        self.failures += other.failures;
        for (k, v) in other.by_outcome {
            *self.by_outcome.entry(k).or_default() += v;
        }
        self.flipped.extend(other.flipped);
        self.violations.extend(other.violations);
    }
}

/// Words one of which every failed return's text must hold, so an operator can tell
/// why a device failed. Lower case; matched against the lower-cased text.
const CAUSES: &[&str] = &[
    "timeout",
    "timed out",
    "connect",
    "refused",
    "reset",
    "unreachable",
    "down",
    "backing off",
    "malformed",
    "decode",
    "invalid",
    "parse",
    "json",
    "http",
    "status",
    "500",
    "not available",
    "not supported",
    "unsupported",
    "closed",
    "eof",
    "rejected",
    "failed",
];

/// Whether an error text names a recognisable cause.
pub fn names_cause(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    !t.trim().is_empty() && CAUSES.iter().any(|c| t.contains(c))
}

/// Checks one finished job's returns against what it targeted.
pub fn check_job(what: &str, minions: &[String], returns: &[Return], tally: &mut Tally) {
    tally.jobs += 1;
    tally.returns += returns.len();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for r in returns {
        *seen.entry(r.id.as_str()).or_default() += 1;
    }
    let targeted: BTreeSet<&str> = minions.iter().map(String::as_str).collect();
    if targeted.len() != minions.len() {
        tally
            .violations
            .push(format!("{what}: a device targeted twice"));
    }
    for id in &targeted {
        match seen.get(id) {
            Some(1) => {}
            Some(n) => tally
                .violations
                .push(format!("{what}: {n} returns from {id}")),
            None => tally
                .violations
                .push(format!("{what}: no return from {id}")),
        }
    }
    for id in seen.keys() {
        if !targeted.contains(id) {
            tally
                .violations
                .push(format!("{what}: return from untargeted {id}"));
        }
    }
    for r in returns.iter().filter(|r| !r.success) {
        tally.failures += 1;
        *tally.by_outcome.entry(r.outcome.as_str()).or_default() += 1;
        let text = r.ret.as_str().unwrap_or_default();
        if r.outcome == Outcome::Success || !names_cause(text) {
            tally.violations.push(format!(
                "{what}: failure from {} names no cause: {:?} {}",
                r.id, r.outcome, r.ret
            ));
        }
    }
}

/// The `n`th job of the plan: functions and target kinds in rotation, every fifth
/// job batched. Deterministic, so a failure can be replayed.
pub fn job(cfg: &ChaosConfig, n: usize) -> JobRequest {
    let rest_id = |i: usize| format!("{REST_PREFIX}{:04}", 1 + i % cfg.rest.max(1));
    let snmp_id = |i: usize| format!("{SNMP_PREFIX}{:04}", 1 + i % cfg.snmp.max(1));
    let (tgt, tgt_type) = match n % 5 {
        0 => (format!("{REST_PREFIX}0{}*", n % 10), TargetType::Glob),
        1 => {
            let ids: Vec<String> = (0..40)
                .map(|k| {
                    if k % 4 == 0 {
                        snmp_id(n * 7 + k)
                    } else {
                        rest_id(n * 13 + k)
                    }
                })
                .collect();
            (ids.join(","), TargetType::List)
        }
        2 => ("proxytype:snmp".to_owned(), TargetType::Grain),
        3 => (
            format!("G@proxytype:rest and {REST_PREFIX}1*"),
            TargetType::Compound,
        ),
        _ => (
            format!("{SNMP_PREFIX}0{}* or {REST_PREFIX}00*", n % 5),
            TargetType::Compound,
        ),
    };
    let (fun, arg): (&str, Vec<Value>) = match n % 6 {
        0 => ("test.ping", vec![]),
        1 => ("grains.items", vec![]),
        2 => ("service.status", vec![json!("apache")]),
        3 => ("pkg.list_pkgs", vec![]),
        4 => ("snmp.get", vec![json!("sysName.0")]),
        _ => ("sys.list_functions", vec![]),
    };
    JobRequest {
        tgt: Tgt::Expr(tgt),
        tgt_type,
        fun: fun.into(),
        arg,
        kwarg: Default::default(),
        batch: (n % 5 == 4).then_some(if n.is_multiple_of(2) {
            Batch::Percent(25)
        } else {
            Batch::Count(50)
        }),
        timeout: Some(Duration::from_secs(8)),
        jid: None,
    }
}

/// Runs one job to the end (bounded: the job's own deadline, plus slack).
async fn run_one(fleet: &Fleet, n: usize, req: JobRequest) -> Tally {
    let mut tally = Tally::default();
    let what = format!("job {n} ({} {:?})", req.fun, req.tgt);
    let mut h = match fleet.submit(req).await {
        Ok(h) => h,
        Err(e) => {
            tally.violations.push(format!("{what}: not accepted: {e}"));
            return tally;
        }
    };
    let mut out = Vec::with_capacity(h.minions.len());
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(r) = h.returns.recv().await {
            out.push(r);
        }
    })
    .await;
    if drained.is_err() {
        tally
            .violations
            .push(format!("{what}: returns still open after 30 s"));
    }
    check_job(&what, &h.minions, &out, &mut tally);
    tally
}

/// Runs jobs `first..first + count` of the plan, `concurrency` at a time; while each
/// group runs, a few healthy devices of each kind are taken down, then brought back
/// once the group ends.
pub async fn storm(
    fleet: &Fleet,
    sims: &ChaosSims,
    cfg: &ChaosConfig,
    first: usize,
    count: usize,
) -> Tally {
    let mut tally = Tally::default();
    let group = cfg.concurrency.max(1);
    let mut n = first;
    while n < first + count {
        let end = (n + group).min(first + count);
        let flips = flip_down(sims, cfg, n);
        let jobs = (n..end).map(|k| run_one(fleet, k, job(cfg, k)));
        for t in futures::future::join_all(jobs).await {
            tally.add(t);
        }
        for id in &flips {
            if id.starts_with(SNMP_PREFIX) {
                sims.snmp.set_fault(id, SnmpFault::None);
            } else {
                sims.rest.set_fault(id, Fault::None);
            }
        }
        tally.flipped.extend(flips);
        n = end;
    }
    tally
}

/// Takes down a few devices that have no fault of their own, chosen by the job
/// number; returns their ids.
fn flip_down(sims: &ChaosSims, cfg: &ChaosConfig, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let rest = sims.rest.devices();
    for k in 0..4 {
        if rest.is_empty() {
            break;
        }
        let id = &rest[(n * 31 + k * 97 + cfg.seed as usize) % rest.len()].id;
        if sims.rest.fault(id) == Some(Fault::None) && sims.rest.set_fault(id, Fault::Down) {
            out.push(id.clone());
        }
    }
    let snmp = sims.snmp.devices();
    for k in 0..2 {
        if snmp.is_empty() {
            break;
        }
        let id = &snmp[(n * 17 + k * 53 + cfg.seed as usize) % snmp.len()].id;
        if sims.snmp.fault(id) == Some(SnmpFault::None) && sims.snmp.set_fault(id, SnmpFault::Down)
        {
            out.push(id.clone());
        }
    }
    out
}

/// The value of a counter summed over the label sets that start with `prefix`
/// (e.g. `drover_device_panics_total{driver="rest"`) in a Prometheus rendering.
pub fn counter_sum(rendered: &str, prefix: &str) -> f64 {
    rendered
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// This process's resident set size in bytes (`VmRSS` of /proc/self/status).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Open file descriptors of this process.
pub fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_recognised_and_blank_is_not() {
        assert!(names_cause("device timeout after 1s"));
        assert!(names_cause("Connection refused (os error 111)"));
        assert!(!names_cause(""));
        assert!(!names_cause("something"));
    }

    #[test]
    fn counter_sum_adds_matching_series() {
        let text = "a_total{driver=\"rest\",reason=\"x\"} 2\na_total{driver=\"rest\",reason=\"y\"} 3\na_total{driver=\"dummy\"} 9\n";
        assert_eq!(counter_sum(text, "a_total{driver=\"rest\""), 5.0);
    }
}
