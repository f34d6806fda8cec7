//! The chaos scenario shared by the chaos integration test and `drover soak`: a mixed
//! REST and SNMP simulated fleet with seeded faults, a deterministic plan of mixed jobs
//! run some at a time and some batched while devices are flipped down and up, and the
//! invariants every job must keep (one return per targeted device, every failure an
//! error naming its cause). It reports violations instead of panicking, so the test
//! asserts on them and the soak command prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{BackoffConfig, FleetConfig};
use crate::devsim::rest::{Fault, FaultRates, RestSim, RestSimConfig};
use crate::devsim::snmp::{SnmpFault, SnmpFaultRates, SnmpSim, SnmpSimConfig};
use crate::devsim::OnThread;
use crate::fleet::registry::{DeviceState, Registry};
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
    /// REST devices listen on `rest_base_port + i`, or on free ports of the
    /// ephemeral range when 0 (the default: reruns never meet a previous run's
    /// TIME_WAIT sockets). A device that is down keeps its port bound without
    /// listening, so no other socket can take it meanwhile.
    pub rest_base_port: u16,
    /// Jobs in flight at once (a group: the next starts when the whole group is
    /// done). 16 rather than 8: a group lasts as long as its batched jobs, about a
    /// second per batch while slow devices time out, so larger groups cut the wall
    /// time of the chaos test's storm (2,000 devices, 200 jobs: 123 s -> 99 s).
    pub concurrency: usize,
    pub seed: u64,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            rest: 1300,
            snmp: 700,
            rest_base_port: 0,
            concurrency: 16,
            seed: 7,
        }
    }
}

/// Device timeout of the scenario's fleet; the slow devices answer after twice this.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(1);
/// Health-check interval of the scenario's fleet.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

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
                // Down long enough for two failed health checks, so a flapping device
                // does go down (and is restarted) in most of its cycles.
                flap_period: HEALTH_INTERVAL * 5 / 2,
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

    /// Failure and recovery within a second or two, so restarts happen within a short
    /// run. Not faster: in a debug build 2,000 devices checked every 250 ms, and the
    /// faulty ones restarted every 300 ms, kept both cores busy on their own and
    /// made the jobs wait for CPU.
    pub fn fleet(&self) -> FleetConfig {
        FleetConfig {
            job_timeout: Duration::from_secs(8),
            device_timeout: DEVICE_TIMEOUT,
            health_interval: HEALTH_INTERVAL,
            max_consecutive_failures: 2,
            arbiters: 2,
            backoff: BackoffConfig {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
                jitter: 0.1,
                restart_limit: 100_000,
                restart_window: Duration::from_secs(60),
                failed_retry: Duration::from_secs(1),
            },
            ..FleetConfig::default()
        }
    }
}

/// Both simulators of the scenario.
pub struct Sims {
    pub rest: RestSim,
    pub snmp: SnmpSim,
}

/// Both simulators on one thread and runtime of their own, as real devices would be
/// separate machines; stopped when dropped.
pub struct ChaosSims(OnThread<Sims>);

impl ChaosSims {
    pub fn start(cfg: &ChaosConfig) -> std::io::Result<ChaosSims> {
        let (rest_cfg, snmp_cfg) = (cfg.rest_sim(), cfg.snmp_sim());
        OnThread::start(move || async move {
            Ok(Sims {
                rest: RestSim::start(rest_cfg).await?,
                snmp: SnmpSim::start(snmp_cfg).await?,
            })
        })
        .map(ChaosSims)
    }

    pub fn rest(&self) -> &RestSim {
        &self.0.sim.rest
    }

    pub fn snmp(&self) -> &SnmpSim {
        &self.0.sim.snmp
    }

    /// Alive tasks of the simulators' runtime (one per device and open connection).
    pub fn tasks(&self) -> usize {
        self.0.handle().metrics().num_alive_tasks()
    }

    /// One inventory for both simulators (SNMP v2c).
    pub fn inventory(&self) -> Result<Inventory, crate::config::ConfigError> {
        let text = self.rest().inventory_toml() + &self.snmp().inventory_toml("2c");
        Inventory::parse(&text, Path::new("<chaos>"))
    }

    /// Devices that start with a flapping fault.
    pub fn flapping(&self) -> Vec<String> {
        self.rest()
            .devices()
            .iter()
            .filter(|d| matches!(self.rest().fault(&d.id), Some(Fault::Flapping { .. })))
            .map(|d| d.id.clone())
            .collect()
    }

    /// Ends the flapping: those devices stay up from now on.
    pub fn stop_flapping(&self) {
        for id in self.flapping() {
            self.rest().set_fault(&id, Fault::None);
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
                sims.snmp().set_fault(id, SnmpFault::None);
            } else {
                sims.rest().set_fault(id, Fault::None);
            }
        }
        tally.flipped.extend(flips);
        n = end;
    }
    tally
}

/// Takes down a few devices that have no fault of their own (about one for every two
/// jobs of the group, two thirds of them REST), chosen by the job number; returns
/// their ids.
fn flip_down(sims: &ChaosSims, cfg: &ChaosConfig, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let (rest_flips, snmp_flips) = (cfg.concurrency.div_ceil(3), cfg.concurrency.div_ceil(6));
    let rest = sims.rest().devices();
    for k in 0..rest_flips {
        if rest.is_empty() {
            break;
        }
        let id = &rest[(n * 31 + k * 97 + cfg.seed as usize) % rest.len()].id;
        if sims.rest().fault(id) == Some(Fault::None) && sims.rest().set_fault(id, Fault::Down) {
            out.push(id.clone());
        }
    }
    let snmp = sims.snmp().devices();
    for k in 0..snmp_flips {
        if snmp.is_empty() {
            break;
        }
        let id = &snmp[(n * 17 + k * 53 + cfg.seed as usize) % snmp.len()].id;
        if sims.snmp().fault(id) == Some(SnmpFault::None)
            && sims.snmp().set_fault(id, SnmpFault::Down)
        {
            out.push(id.clone());
        }
    }
    out
}

/// Checks restarts were counted per device: every time a device went `down` the
/// supervisor restarts it, so its restart count equals its down count while it is up
/// or starting again, and trails by one while the restart is pending (down, backoff,
/// failed; in backoff it may already have been counted). Holds at any moment, so the
/// soak checks it while devices keep failing.
pub fn check_restarts(registry: &Registry) -> Vec<String> {
    let mut out = Vec::new();
    for e in registry.iter() {
        let (downs, restarts) = (e.downs, e.restarts);
        let ok = match e.state {
            DeviceState::Up | DeviceState::Starting => restarts == downs,
            DeviceState::Backoff => restarts + 1 == downs || restarts == downs,
            DeviceState::Down | DeviceState::Failed => restarts + 1 == downs,
        };
        if !ok {
            out.push(format!(
                "{}: {restarts} restarts for {downs} downs while {}",
                e.key(),
                e.state.as_str()
            ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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

    #[test]
    fn restarts_must_follow_downs_device_by_device() {
        use crate::drivers::{dummy::DummyConfig, DriverConfig};
        use crate::inventory::DeviceSpec;
        let spec = |id: &str| {
            Arc::new(DeviceSpec {
                id: id.into(),
                driver: DriverConfig::Dummy(DummyConfig::default()),
                grains: Default::default(),
                timeout: None,
            })
        };
        let r = Registry::new();
        for id in ["a", "b"] {
            r.upsert(spec(id), 1, None);
            r.set_state(id, 1, DeviceState::Up, None);
            r.set_state(id, 1, DeviceState::Down, Some("refused".into()));
        }
        // Down with its restart pending is fine.
        assert!(check_restarts(&r).is_empty());
        // "a" is restarted and up again; "b" comes back up with no restart counted.
        r.add_restart("a");
        r.upsert(spec("a"), 2, None);
        r.set_state("a", 2, DeviceState::Up, None);
        r.upsert(spec("b"), 2, None);
        r.set_state("b", 2, DeviceState::Up, None);
        let v = check_restarts(&r);
        assert_eq!(v, ["b: 0 restarts for 1 downs while up"]);
    }
}
