//! The fleet: supervisor, device actors, dispatcher and the shared registry, started
//! together on their arbiters by [`Fleet::start`].

pub mod device;
pub mod dispatcher;
pub mod job_control;
pub mod registry;
pub mod running;
pub mod scheduler;
pub mod supervisor;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::config::FleetConfig;
use crate::drivers::{DriverContext, DriverError};
use crate::inventory::Inventory;
use crate::telemetry::{RuntimeGuard, RuntimeKind};
use dispatcher::{DispatchError, DispatcherActor, JobHandle, StopAccepting, SubmitJob};
use registry::{DeviceState, Registry};
use running::RunningJobs;
use supervisor::{ApplyInventory, Diff, StopAll, SupervisorActor};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("driver set-up: {0}")]
    Driver(#[from] DriverError),
    #[error("{0}")]
    Dispatch(#[from] DispatchError),
    #[error("fleet actor is gone: {0}")]
    Mailbox(#[from] MailboxError),
}

/// Handles to a running fleet. Cheap to clone; every clone talks to the same actors.
#[derive(Clone)]
pub struct Fleet {
    pub registry: Arc<Registry>,
    /// Jobs in progress and the devices that still owe each a return.
    pub running: Arc<RunningJobs>,
    pub supervisor: Addr<SupervisorActor>,
    pub dispatcher: Addr<DispatcherActor>,
    /// The in-flight permits of `fleet.max_in_flight`, FIFO for jobs. Background
    /// polls only ever take a free one (`try_acquire`), so no job queues behind them.
    pub admission: Arc<tokio::sync::Semaphore>,
    arbiters: Arc<Arbiters>,
}

/// The fleet's threads; stopped when the last handle to the fleet is dropped, so a
/// fleet that is forgotten (a failed test, an aborted start) does not keep
/// health-checking devices from threads nobody owns. Their runtimes are counted in
/// `drover_runtime_tasks` while they live.
struct Arbiters {
    arbiters: Vec<Arbiter>,
    _tasks: Vec<RuntimeGuard>,
}

impl Arbiters {
    fn stop(&self) {
        for a in &self.arbiters {
            let _ = a.stop();
        }
    }
}

impl Drop for Arbiters {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Registers an arbiter's runtime for the task count; the handle can only be taken
/// on the arbiter's own thread. `None` if the arbiter is already gone.
async fn count_tasks(a: &Arbiter, kind: RuntimeKind) -> Option<RuntimeGuard> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    a.spawn(async move {
        let _ = tx.send(tokio::runtime::Handle::current());
    });
    rx.await
        .ok()
        .map(|h| crate::telemetry::register_runtime(kind, h))
}

impl Fleet {
    /// Starts the fleet's actors and applies `inventory` (the diff from nothing). Must
    /// be called inside an actix `System`.
    pub async fn start(cfg: FleetConfig, inventory: Inventory) -> Result<Fleet, FleetError> {
        // Install the recorder before the first device reports: metrics recorded
        // before it exists are lost.
        let _ = crate::telemetry::metrics_handle();
        let cfg = Arc::new(cfg);
        let registry = Registry::with_state_dir(cfg.state_dir.clone());
        let drivers = DriverContext::new()?;
        let n = if cfg.arbiters == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            cfg.arbiters
        };
        let device_arbiters: Vec<Arbiter> = (0..n).map(|_| Arbiter::new()).collect();
        let handles = device_arbiters.iter().map(|a| a.handle()).collect();
        // Supervisor and dispatcher share an arbiter of their own, so a busy device
        // thread never delays admission or restarts.
        let control = Arbiter::new();
        let sup_registry = registry.clone();
        let sup_cfg = cfg.clone();
        let supervisor = SupervisorActor::start_in_arbiter(&control.handle(), move |_| {
            SupervisorActor::new(sup_registry, sup_cfg, drivers, handles)
        });
        let disp_registry = registry.clone();
        let running = RunningJobs::new();
        let disp_running = running.clone();
        let disp_cfg = cfg.clone();
        let admission = Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight.max(1)));
        let disp_admission = admission.clone();
        let dispatcher = DispatcherActor::start_in_arbiter(&control.handle(), move |_| {
            DispatcherActor::new(disp_registry, disp_running, disp_cfg, disp_admission)
        });
        let mut guards = Vec::with_capacity(n + 1);
        for a in &device_arbiters {
            guards.extend(count_tasks(a, RuntimeKind::Device).await);
        }
        guards.extend(count_tasks(&control, RuntimeKind::Control).await);
        // On the control thread: it stops with the fleet's threads.
        control.spawn(scheduler::run(registry.clone(), dispatcher.clone()));
        let mut arbiters = device_arbiters;
        arbiters.push(control);
        let fleet = Fleet {
            registry,
            running,
            supervisor,
            dispatcher,
            admission,
            arbiters: Arc::new(Arbiters {
                arbiters,
                _tasks: guards,
            }),
        };
        fleet.apply(inventory).await?;
        Ok(fleet)
    }

    /// Replaces the inventory: starts new devices, stops removed ones, restarts
    /// changed ones. Devices that did not change are not touched.
    pub async fn apply(&self, inventory: Inventory) -> Result<Diff, FleetError> {
        Ok(self.supervisor.send(ApplyInventory(inventory)).await?)
    }

    pub async fn submit(&self, req: crate::job::JobRequest) -> Result<JobHandle, FleetError> {
        match self.dispatcher.send(SubmitJob(req)).await {
            Ok(r) => Ok(r?),
            // The dispatcher's thread is gone only after shutdown.
            Err(_) => Err(DispatchError::ShuttingDown.into()),
        }
    }

    /// Waits until no device is still starting.
    pub async fn settled(&self) {
        self.registry
            .wait_for(|r| r.count_in(DeviceState::Starting) == 0)
            .await
    }

    /// Graceful shutdown: stop taking jobs, let running ones finish for up to
    /// `grace`, then cut the rest short with error returns (every return that is due
    /// is still delivered), stop the device actors and the fleet's threads.
    pub async fn shutdown(&self, grace: Duration) {
        if let Ok((jobs, cancel)) = self.dispatcher.send(StopAccepting).await {
            if tokio::time::timeout(grace, jobs.wait()).await.is_err() {
                tracing::warn!(
                    running = jobs.len(),
                    "Grace period over; cutting running jobs short."
                );
                cancel.cancel();
                // Cancelled jobs answer at once; the bound only guards against a bug.
                let _ = tokio::time::timeout(Duration::from_secs(5), jobs.wait()).await;
            }
        }
        let _ = self.supervisor.send(StopAll).await;
        self.arbiters.stop();
    }
}
