//! `SupervisorActor`: owns every device actor. It applies an inventory as a diff
//! against the running set (start-up is the diff from nothing, reload the diff from
//! the old inventory), spreads device actors over the device arbiters round-robin,
//! and restarts a device actor that stopped with exponential backoff and jitter,
//! parking it as `failed` when it restarts too often within a window.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rand::RngExt;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::device::{DeviceActor, DeviceExited, ExitReason, Stop};
use super::registry::{DeviceState, Registry};
use crate::config::FleetConfig;
use crate::drivers::DriverContext;
use crate::inventory::{DeviceSpec, Inventory};
use crate::telemetry;

/// What applying an inventory changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// Computes the change from the running specs to a new inventory.
pub fn diff(old: &HashMap<Arc<str>, Arc<DeviceSpec>>, new: &Inventory) -> Diff {
    let mut d = Diff::default();
    let mut seen = std::collections::HashSet::with_capacity(new.devices.len());
    for spec in &new.devices {
        seen.insert(spec.id.as_str());
        match old.get(spec.id.as_str()) {
            None => d.added.push(spec.id.clone()),
            Some(o) if **o != **spec => d.changed.push(spec.id.clone()),
            Some(_) => {}
        }
    }
    for id in old.keys() {
        if !seen.contains(&**id) {
            d.removed.push(id.to_string());
        }
    }
    d.removed.sort();
    d
}

/// Replace the running inventory with this one.
#[derive(Message)]
#[rtype(result = "Diff")]
pub struct ApplyInventory(pub Inventory);

/// Stop every device actor (no restarts); answers when all have been told.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

struct Supervised {
    spec: Arc<DeviceSpec>,
    generation: u64,
    /// Restart times within the current window.
    restarts: VecDeque<Instant>,
    /// Consecutive failed starts, for the exponential part of the backoff.
    attempt: u32,
}

pub struct SupervisorActor {
    registry: Arc<Registry>,
    cfg: Arc<FleetConfig>,
    drivers: DriverContext,
    background: Arc<Semaphore>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    devices: HashMap<Arc<str>, Supervised>,
    next_generation: u64,
    stopping: bool,
}

impl SupervisorActor {
    pub fn new(
        registry: Arc<Registry>,
        cfg: Arc<FleetConfig>,
        drivers: DriverContext,
        arbiters: Vec<ArbiterHandle>,
    ) -> SupervisorActor {
        SupervisorActor {
            background: Arc::new(Semaphore::new(cfg.max_background.max(1))),
            registry,
            cfg,
            drivers,
            arbiters,
            next_arbiter: 0,
            devices: HashMap::new(),
            next_generation: 1,
            stopping: false,
        }
    }

    /// Starts (or restarts) the actor for `id` under a fresh generation.
    fn spawn(&mut self, id: &Arc<str>, ctx: &mut Context<Self>) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let Some(sup) = self.devices.get_mut(id) else {
            return;
        };
        sup.generation = generation;
        let spec = sup.spec.clone();
        self.registry.upsert(spec.clone(), generation, None);
        let driver = match spec.driver.build(
            spec.timeout.unwrap_or(self.cfg.device_timeout),
            &self.drivers,
        ) {
            Ok(d) => d,
            Err(e) => {
                // A device that cannot even be set up (unreadable CA file) will not
                // get better by retrying; park it until the inventory changes.
                warn!(device = %id, error = %e, "Device driver set-up failed.");
                self.registry
                    .set_state(id, generation, DeviceState::Failed, Some(e.to_string()));
                return;
            }
        };
        let registry = self.registry.clone();
        let cfg = self.cfg.clone();
        let me = ctx.address().recipient();
        let background = self.background.clone();
        let addr = if self.arbiters.is_empty() {
            DeviceActor::new(spec, generation, driver, registry, me, cfg, background).start()
        } else {
            let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
            self.next_arbiter = self.next_arbiter.wrapping_add(1);
            DeviceActor::start_in_arbiter(arbiter, move |_| {
                DeviceActor::new(spec, generation, driver, registry, me, cfg, background)
            })
        };
        self.registry.set_actor(id, generation, Some(addr));
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let b = &self.cfg.backoff;
        let exp = b.initial.saturating_mul(1u32 << attempt.min(20));
        let base = exp.min(b.max);
        let jitter = b.jitter.clamp(0.0, 1.0);
        // Symmetric jitter: thousands of devices that failed together must not all
        // come back in the same instant.
        let factor = 1.0 + jitter * (rand::rng().random::<f64>() * 2.0 - 1.0);
        base.mul_f64(factor.max(0.0))
    }
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;
}

impl Handler<ApplyInventory> for SupervisorActor {
    type Result = MessageResult<ApplyInventory>;

    fn handle(&mut self, msg: ApplyInventory, ctx: &mut Context<Self>) -> Self::Result {
        let current: HashMap<Arc<str>, Arc<DeviceSpec>> = self
            .devices
            .iter()
            .map(|(k, v)| (k.clone(), v.spec.clone()))
            .collect();
        let d = diff(&current, &msg.0);
        let by_id: HashMap<&str, &Arc<DeviceSpec>> =
            msg.0.devices.iter().map(|s| (s.id.as_str(), s)).collect();
        for id in &d.removed {
            if let Some(sup) = self.devices.remove(id.as_str()) {
                if let Some(e) = self.registry.get(id) {
                    if let Some(a) = &e.actor {
                        a.do_send(Stop);
                    }
                }
                drop(sup);
                self.registry.remove(id);
            }
        }
        for id in &d.changed {
            if let Some(e) = self.registry.get(id) {
                if let Some(a) = &e.actor {
                    a.do_send(Stop);
                }
            }
        }
        for id in d.added.iter().chain(d.changed.iter()) {
            let Some(spec) = by_id.get(id.as_str()) else {
                continue;
            };
            let key: Arc<str> = Arc::from(id.as_str());
            self.devices.insert(
                key.clone(),
                Supervised {
                    spec: (*spec).clone(),
                    generation: 0,
                    restarts: VecDeque::new(),
                    attempt: 0,
                },
            );
            self.spawn(&key, ctx);
        }
        info!(
            added = d.added.len(),
            removed = d.removed.len(),
            changed = d.changed.len(),
            "Inventory applied."
        );
        MessageResult(d)
    }
}

impl Handler<DeviceExited> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: DeviceExited, ctx: &mut Context<Self>) {
        if self.stopping || msg.reason == ExitReason::Cancelled {
            return;
        }
        let backoff_cfg = self.cfg.backoff.clone();
        let Some(sup) = self.devices.get_mut(&msg.id) else {
            return;
        };
        if sup.generation != msg.generation {
            return;
        }
        let now = Instant::now();
        while sup
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > backoff_cfg.restart_window)
        {
            sup.restarts.pop_front();
        }
        sup.attempt = if msg.was_up { 0 } else { sup.attempt + 1 };
        let parked = sup.restarts.len() as u32 >= backoff_cfg.restart_limit;
        let attempt = sup.attempt;
        let generation = sup.generation;
        let (state, delay) = if parked {
            (DeviceState::Failed, backoff_cfg.failed_retry)
        } else {
            (
                DeviceState::Backoff,
                self.backoff(attempt.saturating_sub(1)),
            )
        };
        if parked {
            warn!(device = %msg.id, restarts = backoff_cfg.restart_limit, "Device restarting too often; parked as failed.");
        } else {
            debug!(device = %msg.id, delay_ms = delay.as_millis() as u64, "Device restart scheduled.");
        }
        let error = match &msg.reason {
            ExitReason::Failed(e) => Some(e.clone()),
            ExitReason::Panicked(p) => Some(format!("panic: {p}")),
            ExitReason::Cancelled => None,
        };
        self.registry.set_state(&msg.id, generation, state, error);
        let reason = msg.reason.label();
        let id = msg.id.clone();
        ctx.run_later(delay, move |act, ctx| {
            if act.stopping {
                return;
            }
            let Some(sup) = act.devices.get_mut(&id) else {
                return;
            };
            if sup.generation != generation {
                return;
            }
            sup.restarts.push_back(Instant::now());
            let driver = sup.spec.proxytype();
            metrics::counter!(telemetry::DEVICE_RESTARTS, "driver" => driver, "reason" => reason)
                .increment(1);
            act.registry.add_restart(&id);
            act.spawn(&id, ctx);
        });
    }
}

impl Handler<StopAll> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, _: StopAll, _ctx: &mut Context<Self>) {
        self.stopping = true;
        for e in self.registry.iter() {
            if let Some(a) = &e.actor {
                a.do_send(Stop);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn inv(s: &str) -> Inventory {
        Inventory::parse(s, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn diff_finds_added_removed_changed() {
        let old = inv(
            "[[device]]\nid=\"a\"\nproxytype=\"rest\"\nurl=\"http://h:1/\"\n[[device]]\nid=\"b\"\nproxytype=\"rest\"\nurl=\"http://h:2/\"\n[[device]]\nid=\"c\"\nproxytype=\"rest\"\nurl=\"http://h:3/\"\n",
        );
        let running: HashMap<Arc<str>, Arc<DeviceSpec>> = old
            .devices
            .iter()
            .map(|s| (Arc::from(s.id.as_str()), s.clone()))
            .collect();
        let new = inv(
            "[[device]]\nid=\"a\"\nproxytype=\"rest\"\nurl=\"http://h:1/\"\n[[device]]\nid=\"b\"\nproxytype=\"rest\"\nurl=\"http://h:9/\"\n[[device]]\nid=\"d\"\nproxytype=\"rest\"\nurl=\"http://h:4/\"\n",
        );
        let d = diff(&running, &new);
        assert_eq!(d.added, ["d"]);
        assert_eq!(d.changed, ["b"]);
        assert_eq!(d.removed, ["c"]);
        let from_empty = diff(&HashMap::new(), &new);
        assert_eq!(from_empty.added.len(), 3);
    }

    /// Restarts of a device that never comes up back off 1 s, 2 s, 4 s, then stay
    /// at the cap; on tokio's paused clock, so the test takes no real time.
    #[actix_rt::test]
    async fn restarts_back_off_doubling_up_to_the_cap() {
        tokio::time::pause();
        let cfg = FleetConfig {
            backoff: crate::config::BackoffConfig {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(4),
                jitter: 0.0,
                restart_limit: 100,
                ..Default::default()
            },
            ..Default::default()
        };
        let registry = Registry::new();
        let drivers = DriverContext::new().unwrap();
        let sup =
            SupervisorActor::new(registry.clone(), Arc::new(cfg), drivers, Vec::new()).start();
        let spec = inv("[[device]]\nid = \"d\"\nproxytype = \"dummy\"\nbehaviour = \"down\"\n");
        let start = tokio::time::Instant::now();
        sup.send(ApplyInventory(spec)).await.unwrap();
        let mut at = Vec::new();
        for n in 1..=5 {
            registry
                .wait_for(|r| r.get("d").is_some_and(|e| e.restarts >= n))
                .await;
            at.push(start.elapsed());
        }
        let gaps: Vec<u64> = at
            .iter()
            .zip(std::iter::once(&Duration::ZERO).chain(&at))
            .map(|(t, prev)| (*t - *prev).as_millis() as u64)
            .collect();
        // Each gap is the backoff plus the (instant) failed first contact.
        let want = [1000, 2000, 4000, 4000, 4000];
        for (got, want) in gaps.iter().zip(want) {
            assert!(
                (want..want + 50).contains(got),
                "gaps {gaps:?}, want about {want} ms"
            );
        }
        assert!(registry.state("d").is_some_and(|s| s.is_unreachable()));
    }
}
