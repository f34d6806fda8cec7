//! Device health: background polling (per device and module a jittered schedule,
//! run through the fleet's admission: a poll takes only a free in-flight permit, so
//! jobs never queue behind it) into a cache that `/snmp` answers from in the
//! snmp_exporter text format, `/sd` for Prometheus's http_sd, and the SNMP trap
//! listener.

pub mod builtin;
pub mod cache;
pub mod compat;
pub mod module;
mod ovs;
pub mod render;
pub mod scheduler;
pub mod scrape;
pub mod sd;
mod snmp;
pub mod traps;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::PollConfig;
use crate::drivers::Driver;
use crate::fleet::device::{DeviceActor, GetDriver};
use crate::fleet::registry::DeviceState;
use crate::fleet::Fleet;
use crate::telemetry;
use cache::{PollCache, Sample};
pub use module::{Module, ModuleError, Modules, Source};
use scheduler::Schedule;

/// How soon a poll looks again for a free in-flight permit while jobs hold them all.
const ADMISSION_RETRY: Duration = Duration::from_millis(10);

/// Longest wait for a device actor to hand over its driver.
const DRIVER_WAIT: Duration = Duration::from_secs(5);

/// The running poller: its cache and modules for the HTTP server, and its thread.
#[derive(Clone)]
pub struct PollHandle {
    pub cache: Arc<PollCache>,
    pub modules: Arc<Modules>,
    pub fleet: Fleet,
    cancel: CancellationToken,
    _thread: Option<Arc<Thread>>,
}

struct Thread(Arbiter);

impl Drop for Thread {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

impl PollHandle {
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

struct Shared {
    fleet: Fleet,
    cache: Arc<PollCache>,
    modules: Arc<Modules>,
    schedule: Mutex<Schedule>,
    /// Each device's driver, by actor generation.
    drivers: Mutex<HashMap<Arc<str>, (u64, Driver)>>,
    limit: Arc<tokio::sync::Semaphore>,
}

/// Builds the modules and, when polling is enabled, starts the poller on a thread
/// of its own. Call inside an actix `System`.
pub fn start(cfg: &PollConfig, fleet: &Fleet) -> Result<PollHandle, ModuleError> {
    let modules = Arc::new(Modules::from_config(cfg)?);
    let cache = PollCache::new();
    let cancel = CancellationToken::new();
    let thread = if cfg.enabled {
        let shared = Arc::new(Shared {
            fleet: fleet.clone(),
            cache: cache.clone(),
            modules: modules.clone(),
            schedule: Mutex::new(Schedule::new(cfg.jitter)),
            drivers: Mutex::new(HashMap::new()),
            limit: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent.max(1))),
        });
        let shortest = modules_shortest(&modules, cfg.interval);
        let arbiter = Arbiter::new();
        let token = cancel.clone();
        arbiter.spawn(run(shared, shortest, token));
        Some(Arc::new(Thread(arbiter)))
    } else {
        None
    };
    Ok(PollHandle {
        cache,
        modules,
        fleet: fleet.clone(),
        cancel,
        _thread: thread,
    })
}

fn modules_shortest(m: &Modules, default: Duration) -> Duration {
    ["if_mib", "system", "ovs_interfaces", "rest_health"]
        .iter()
        .filter_map(|n| m.get(n).map(|x| x.interval))
        .fold(default, Duration::min)
}

async fn run(shared: Arc<Shared>, shortest: Duration, cancel: CancellationToken) {
    let tick = (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sweeps = 0u32;
    info!(tick = ?tick, "Poller started.");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        for work in due(&shared) {
            if !admit(&shared, work, &cancel).await {
                break;
            }
        }
        sweeps = sweeps.wrapping_add(1);
        if sweeps.is_multiple_of(64) {
            let reg = &shared.fleet.registry;
            shared.cache.retain(|id| reg.get(id).is_some());
            if let Ok(mut s) = shared.schedule.lock() {
                s.retain(|id| reg.get(id).is_some());
            }
            if let Ok(mut d) = shared.drivers.lock() {
                d.retain(|id, _| reg.get(id).is_some());
            }
            reg.events().forget_recent(|id| reg.get(id).is_some());
        }
    }
    debug!("Poller stopped.");
}

struct Work {
    id: Arc<str>,
    generation: u64,
    actor: Addr<DeviceActor>,
    module: Arc<Module>,
    key: Arc<str>,
}

/// The polls due now; devices that are not up have their values marked stale.
fn due(shared: &Shared) -> Vec<Work> {
    let now = tokio::time::Instant::now();
    let mut out = Vec::new();
    let Ok(mut sched) = shared.schedule.lock() else {
        return out;
    };
    for e in shared.fleet.registry.iter() {
        if e.state.is_unreachable() {
            shared.cache.mark_stale(e.key(), "device is down");
            continue;
        }
        if e.state != DeviceState::Up {
            continue;
        }
        let Some(actor) = e.actor.clone() else {
            continue;
        };
        for m in shared.modules.for_proxytype(e.spec.proxytype()) {
            let key: Arc<str> = Arc::from(m.name.as_str());
            if sched.is_due(e.key(), &key, m.interval, now) {
                out.push(Work {
                    id: e.key().clone(),
                    generation: e.generation,
                    actor: actor.clone(),
                    module: m,
                    key,
                });
            }
        }
    }
    out
}

/// Starts one poll once a poll slot and a free in-flight permit are there. The
/// poll slot is waited for; the fleet's permit is only ever taken when free (never
/// queued for, so no job waits behind a poll), retried shortly while jobs hold them
/// all. False when the poller is stopping.
async fn admit(shared: &Arc<Shared>, w: Work, cancel: &CancellationToken) -> bool {
    let own = tokio::select! {
        _ = cancel.cancelled() => return false,
        p = shared.limit.clone().acquire_owned() => match p {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    let mut deferred = false;
    let permit = loop {
        match shared.fleet.admission.clone().try_acquire_owned() {
            Ok(p) => break p,
            Err(_) => {
                if !deferred {
                    metrics::counter!(telemetry::POLLS_DEFERRED).increment(1);
                    deferred = true;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return false,
                    _ = tokio::time::sleep(ADMISSION_RETRY) => {}
                }
            }
        }
    };
    if let Ok(mut s) = shared.schedule.lock() {
        s.started(
            &w.id,
            &w.key,
            w.module.interval,
            tokio::time::Instant::now(),
        );
    }
    let shared = shared.clone();
    actix_rt::spawn(async move {
        poll_one(&shared, &w).await;
        drop((own, permit));
        if let Ok(mut s) = shared.schedule.lock() {
            s.finished(&w.id, &w.key);
        }
    });
    true
}

async fn driver_for(shared: &Shared, w: &Work) -> Option<Driver> {
    if let Ok(d) = shared.drivers.lock() {
        if let Some((g, d)) = d.get(&w.id) {
            if *g == w.generation {
                return Some(d.clone());
            }
        }
    }
    let d = tokio::time::timeout(DRIVER_WAIT, w.actor.send(GetDriver))
        .await
        .ok()?
        .ok()?;
    if let Ok(mut m) = shared.drivers.lock() {
        m.insert(w.id.clone(), (w.generation, d.clone()));
    }
    Some(d)
}

async fn poll_one(shared: &Shared, w: &Work) {
    let started = Instant::now();
    let name = w.module.name.as_str();
    let outcome = match driver_for(shared, w).await {
        None => Err("the device actor did not answer".to_owned()),
        Some(driver) => {
            // A poll never outlives its interval: the next one would overlap it.
            match tokio::time::timeout(w.module.interval, poll_module(shared, w, &driver)).await {
                Ok(r) => r,
                Err(_) => Err(format!("poll took longer than {:?}", w.module.interval)),
            }
        }
    };
    let label = match &outcome {
        Ok(sample) => {
            shared.cache.store(&w.id, name, sample.clone());
            "ok"
        }
        Err(e) => {
            debug!(device = %w.id, module = name, error = %e, "Poll failed.");
            shared.cache.fail(&w.id, name, e.clone());
            "error"
        }
    };
    metrics::counter!(telemetry::POLLS, "module" => w.module.name.clone(), "outcome" => label)
        .increment(1);
    metrics::histogram!(telemetry::POLL_DURATION, "module" => w.module.name.clone())
        .record(started.elapsed().as_secs_f64());
}

async fn poll_module(shared: &Shared, w: &Work, driver: &Driver) -> Result<Sample, String> {
    match w.module.source {
        Source::Snmp => {
            let dev = driver.snmp().map_err(|e| e.to_string())?;
            let cached = shared.cache.lookups(&w.id, &w.module.name);
            let (sample, fresh) = snmp::poll(dev, &w.module, cached.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            if let Some(l) = fresh {
                shared.cache.set_lookups(&w.id, &w.module.name, l);
            }
            Ok(sample)
        }
        Source::Ping => Ok(rest_health(driver).await),
        Source::OvsReplica => {
            let started = Instant::now();
            let dev = driver.ovs().map_err(|e| e.to_string())?;
            let stats = dev.interface_stats(None).await.map_err(|e| e.to_string())?;
            let walked = started.elapsed();
            let rows = stats.as_object().map_or(0, |m| m.len());
            Ok(Sample {
                body: ovs::render(&stats),
                polled_at: std::time::SystemTime::now(),
                walk: walked,
                total: started.elapsed(),
                pdus: rows,
                requests: 0,
            })
        }
    }
}

/// `rest_health`: whether the device answers its health check, and how fast. A
/// device that does not answer is a sample too (`drover_rest_up 0`), not a failure.
async fn rest_health(driver: &Driver) -> Sample {
    let started = Instant::now();
    let up = matches!(driver.ping().await, Ok(true));
    let took = started.elapsed();
    let body = format!(
        "# HELP drover_rest_up 1 if the device answered its health check, else 0.\n\
         # TYPE drover_rest_up gauge\n\
         drover_rest_up {}\n\
         # HELP drover_rest_ping_duration_seconds Time the device's health check took.\n\
         # TYPE drover_rest_ping_duration_seconds gauge\n\
         drover_rest_ping_duration_seconds {}\n",
        u8::from(up),
        took.as_secs_f64()
    );
    Sample {
        body,
        polled_at: std::time::SystemTime::now(),
        walk: took,
        total: started.elapsed(),
        pdus: 1,
        requests: 1,
    }
}
