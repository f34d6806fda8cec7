//! `DeviceActor`: one per proxied device. It owns the device's driver, runs one
//! operation at a time (every handler is an `AtomicResponse`), checks health on a
//! timer, keeps grains fresh, and reports its state to the registry.
//!
//! State machine (the supervisor drives the arrows out of `down`):
//!
//! ```text
//!            grains fetched                max_consecutive_failures
//! starting ─────────────────► up ─────────────────────────────────► down
//!    │                                  (or a panic in the driver)   │
//!    │ first contact fails                                           │ actor stopped;
//!    └──────────────────────────────────────────────────────────────►│ supervisor
//!                                                                    ▼ schedules
//! starting ◄──────────────── backoff ◄────────────────────────────── restart
//!           delay elapsed      (1 s, doubling, capped, jittered)
//!                                 │ restart_limit within restart_window
//!                                 ▼
//!                               failed (parked; retried after failed_retry)
//! ```
//!
//! A failed call is a failed return, not a crash: only repeated device failures
//! (connection refused, timeouts, 5xx, garbage) take a device down. A panic inside a
//! driver or function is caught here, counted, returned as an error, and stops the
//! actor so the supervisor restarts it with a fresh driver.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::FutureExt;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::registry::{DeviceState, Registry};
use crate::config::FleetConfig;
use crate::drivers::{Driver, DriverError};
use crate::functions::{self, Call, FunctionError};
use crate::inventory::DeviceSpec;
use crate::job::{Job, Outcome, Return};
use crate::telemetry;

/// Why a device actor stopped (kameo's vocabulary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// Stopped by the supervisor (reload, shutdown): no restart.
    Cancelled,
    /// The device failed `max_consecutive_failures` times, or never answered.
    Failed(String),
    /// A driver or function panicked.
    Panicked(String),
}

impl ExitReason {
    /// Bounded label for `drover_device_restarts_total{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            ExitReason::Cancelled => "cancelled",
            ExitReason::Failed(_) => "failed",
            ExitReason::Panicked(_) => "panic",
        }
    }
}

/// Sent to the supervisor when a device actor has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeviceExited {
    pub id: Arc<str>,
    pub generation: u64,
    pub reason: ExitReason,
    /// Whether the device reached `up` before it stopped (resets the backoff).
    pub was_up: bool,
}

/// Run one job's function on this device.
#[derive(Message)]
#[rtype(result = "Return")]
pub struct Execute {
    pub job: Arc<Job>,
    /// When the dispatcher admitted the operation (durations start here).
    pub admitted: Instant,
}

/// The device's driver, for background polls (`poll`), which then read the device
/// without queueing in this mailbox behind its jobs.
#[derive(Message)]
#[rtype(result = "Driver")]
pub struct GetDriver;

/// Stop without restart (reload removed or changed the device, or shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

#[derive(Message)]
#[rtype(result = "()")]
struct HealthCheck;

pub struct DeviceActor {
    id: Arc<str>,
    spec: Arc<DeviceSpec>,
    generation: u64,
    driver: Driver,
    grains: Arc<Value>,
    registry: Arc<Registry>,
    supervisor: Recipient<DeviceExited>,
    cfg: Arc<FleetConfig>,
    background: Arc<Semaphore>,
    failures: u32,
    exit: Option<ExitReason>,
    up: bool,
    last_ok: Option<Instant>,
    last_grains: Instant,
    /// The device's last grains report, under the saved grains.
    reported: Map<String, Value>,
    /// Counts this actor in `drover_device_actors` until it is freed.
    _live: telemetry::LiveActor,
}

impl DeviceActor {
    pub fn new(
        spec: Arc<DeviceSpec>,
        generation: u64,
        driver: Driver,
        registry: Arc<Registry>,
        supervisor: Recipient<DeviceExited>,
        cfg: Arc<FleetConfig>,
        background: Arc<Semaphore>,
    ) -> DeviceActor {
        DeviceActor {
            id: Arc::from(spec.id.as_str()),
            grains: Arc::new(Value::Object(registry.grains_for(&spec, None))),
            spec,
            generation,
            driver,
            registry,
            supervisor,
            cfg,
            background,
            failures: 0,
            exit: None,
            up: false,
            last_ok: None,
            last_grains: Instant::now(),
            reported: Map::new(),
            _live: telemetry::LiveActor::new(),
        }
    }

    fn set_state(&self, state: DeviceState, error: Option<String>) {
        self.registry
            .set_state(&self.id, self.generation, state, error);
    }

    fn record_success(&mut self) {
        self.failures = 0;
        self.last_ok = Some(Instant::now());
    }

    /// Counts a device failure; at the limit the device goes down and the actor stops.
    fn record_failure(&mut self, ctx: &mut Context<Self>, error: &str) {
        self.failures += 1;
        if self.failures >= self.cfg.max_consecutive_failures {
            warn!(device = %self.id, failures = self.failures, error, "Device marked down.");
            self.go_down(ctx, ExitReason::Failed(error.to_owned()));
        } else {
            debug!(device = %self.id, failures = self.failures, error, "Device operation failed.");
        }
    }

    fn go_down(&mut self, ctx: &mut Context<Self>, reason: ExitReason) {
        if self.exit.is_none() {
            let msg = match &reason {
                ExitReason::Failed(e) => e.clone(),
                ExitReason::Panicked(e) => format!("panic: {e}"),
                ExitReason::Cancelled => "stopped".into(),
            };
            if reason != ExitReason::Cancelled {
                self.set_state(DeviceState::Down, Some(msg));
            }
            self.exit = Some(reason);
        }
        ctx.stop();
    }

    fn apply_grains(&mut self, reported: &Map<String, Value>) {
        self.reported = reported.clone();
        self.recompose_grains();
    }

    /// Grains again from the last report, after `grains.setval` changed the saved ones.
    fn recompose_grains(&mut self) {
        let g = self.registry.grains_for(&self.spec, Some(&self.reported));
        self.grains = Arc::new(Value::Object(g));
        self.last_grains = Instant::now();
        self.registry
            .set_grains(&self.id, self.generation, self.grains.clone());
    }

    fn schedule_health_checks(&self, ctx: &mut Context<Self>) {
        let every = self.cfg.health_interval;
        // The device just answered, so the first check waits at least half an
        // interval; the rest of the delay is random so thousands of devices started
        // together do not all check in the same tick.
        let first = every.mul_f64(0.5 + 0.5 * rand::random::<f64>());
        ctx.run_later(first, move |_, ctx| {
            ctx.notify(HealthCheck);
            ctx.run_interval(every, |_, ctx| ctx.notify(HealthCheck));
        });
    }
}

impl Actor for DeviceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Bounded mailbox: the dispatcher also bounds queued operations per device.
        ctx.set_mailbox_capacity(self.cfg.max_queued_per_device.max(1));
        let driver = self.driver.background();
        let background = self.background.clone();
        // `wait` holds the mailbox until first contact is done, so jobs sent while
        // the device is starting run once it is up (or fail once it is down).
        ctx.wait(
            async move {
                // Bounded like health checks: 10,000 devices starting together must
                // not open 10,000 connections at once.
                let _permit = background.acquire_owned().await.ok();
                AssertUnwindSafe(driver.grains()).catch_unwind().await
            }
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(Ok(reported)) => {
                        act.apply_grains(&reported);
                        act.record_success();
                        act.up = true;
                        act.set_state(DeviceState::Up, None);
                        debug!(device = %act.id, "Device up.");
                        act.schedule_health_checks(ctx);
                    }
                    Ok(Err(e)) => {
                        debug!(device = %act.id, error = %e, "First contact failed.");
                        metrics::counter!(telemetry::DEVICE_OP_ERRORS, "driver" => act.driver.proxytype(), "error_kind" => e.kind()).increment(1);
                        act.go_down(ctx, ExitReason::Failed(e.to_string()));
                    }
                    Err(panic) => {
                        let msg = panic_message(&panic);
                        metrics::counter!(telemetry::DEVICE_PANICS, "driver" => act.driver.proxytype()).increment(1);
                        warn!(device = %act.id, panic = %msg, "Driver panicked during start.");
                        act.go_down(ctx, ExitReason::Panicked(msg));
                    }
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let reason = self
            .exit
            .take()
            .unwrap_or_else(|| ExitReason::Failed("actor stopped".into()));
        self.registry.set_actor(&self.id, self.generation, None);
        self.supervisor.do_send(DeviceExited {
            id: self.id.clone(),
            generation: self.generation,
            reason,
            was_up: self.up,
        });
    }
}

impl Handler<Execute> for DeviceActor {
    type Result = AtomicResponse<Self, Return>;

    fn handle(&mut self, msg: Execute, _ctx: &mut Context<Self>) -> Self::Result {
        let call = Call {
            id: self.id.clone(),
            driver: self.driver.clone(),
            grains: self.grains.clone(),
            pillar: self.registry.pillar(&self.id),
            minions: self.registry.minions().clone(),
            events: self.registry.events().clone(),
            files: self.registry.files(),
            job: msg.job.clone(),
        };
        let started = Instant::now();
        let fut = AssertUnwindSafe(functions::execute(call)).catch_unwind();
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(
            move |res, act, ctx| {
                let driver = act.driver.proxytype();
                let elapsed = started.elapsed();
                let function = functions::metric_label(&msg.job.fun);
                metrics::histogram!(telemetry::DEVICE_OP_DURATION, "driver" => driver, "function" => function)
                    .record(elapsed.as_secs_f64());
                let total = msg.admitted.elapsed();
                match res {
                    Ok(Ok(out)) => {
                        act.record_success();
                        if let Some(g) = &out.fresh_grains {
                            act.apply_grains(g);
                        } else if out.grains_changed {
                            act.recompose_grains();
                        }
                        Return::ok(&act.id, &msg.job, out.ret, total).with_retcode(out.retcode)
                    }
                    Ok(Err(e)) => {
                        metrics::counter!(telemetry::DEVICE_OP_ERRORS, "driver" => driver, "error_kind" => e.kind()).increment(1);
                        if e.is_device_failure() {
                            act.record_failure(ctx, &e.to_string());
                        }
                        Return::error(&act.id, &msg.job, Outcome::Failed, error_text(&e), total)
                    }
                    Err(panic) => {
                        let text = panic_message(&panic);
                        metrics::counter!(telemetry::DEVICE_PANICS, "driver" => driver).increment(1);
                        warn!(device = %act.id, function = %msg.job.fun, panic = %text, "Device call panicked; restarting the device.");
                        act.go_down(ctx, ExitReason::Panicked(text.clone()));
                        Return::error(
                            &act.id,
                            &msg.job,
                            Outcome::Failed,
                            format!("internal error: {}() panicked: {text}", msg.job.fun),
                            total,
                        )
                    }
                }
            },
        )))
    }
}

impl Handler<HealthCheck> for DeviceActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: HealthCheck, _ctx: &mut Context<Self>) -> Self::Result {
        let recent = self
            .last_ok
            .is_some_and(|t| t.elapsed() < self.cfg.health_interval / 2);
        let refresh = self.last_grains.elapsed() >= self.cfg.grains_refresh;
        if recent && !refresh {
            // A job just proved the device alive; skip the extra round trip.
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        let driver = self.driver.background();
        let background = self.background.clone();
        let fut = async move {
            let _permit = background.acquire_owned().await.ok();
            if refresh {
                driver.grains().await.map(Some)
            } else {
                match driver.ping().await {
                    Ok(true) => Ok(None),
                    Ok(false) => Err(DriverError::Decode("ping answered false".into())),
                    Err(e) => Err(e),
                }
            }
        };
        AtomicResponse::new(Box::pin(
            AssertUnwindSafe(fut)
                .catch_unwind()
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(Ok(grains)) => {
                        if let Some(g) = grains {
                            act.apply_grains(&g);
                        }
                        act.record_success();
                    }
                    Ok(Err(e)) => {
                        metrics::counter!(telemetry::DEVICE_OP_ERRORS, "driver" => act.driver.proxytype(), "error_kind" => e.kind()).increment(1);
                        act.record_failure(ctx, &format!("health check: {e}"));
                    }
                    Err(panic) => {
                        metrics::counter!(telemetry::DEVICE_PANICS, "driver" => act.driver.proxytype()).increment(1);
                        act.go_down(ctx, ExitReason::Panicked(panic_message(&panic)));
                    }
                }),
        ))
    }
}

impl Handler<GetDriver> for DeviceActor {
    type Result = MessageResult<GetDriver>;

    fn handle(&mut self, _: GetDriver, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.driver.background())
    }
}

impl Handler<Stop> for DeviceActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        info!(device = %self.id, "Device stopping.");
        self.exit = Some(ExitReason::Cancelled);
        ctx.stop();
    }
}

fn error_text(e: &FunctionError) -> String {
    match e {
        FunctionError::Driver(d) => format!("device error ({}): {d}", d.kind()),
        other => other.to_string(),
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
