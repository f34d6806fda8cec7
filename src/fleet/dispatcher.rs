//! `DispatcherActor`: turns one job into exactly one return per targeted device.
//!
//! It resolves the target against the registry, then admits device operations one at
//! a time: first a slot in the job's batch window, then a permit from the global
//! in-flight semaphore (`fleet.max_in_flight`). Because each job holds at most one
//! waiter on the FIFO semaphore, concurrent jobs take permits in turn and a big job
//! cannot starve a small one. Devices that are down answer at once with an error;
//! a full per-device queue is an explicit, counted rejection; whatever has not
//! answered by the job's deadline gets a timeout return.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::FutureExt;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::device::{DeviceActor, Execute};
use super::registry::Registry;
use super::running::{RunningGuard, RunningJobs};
use super::target::{Candidate, Target, TargetError, TargetType, NO_PILLAR};
use crate::config::FleetConfig;
use crate::functions;
use crate::job::{Args, Jid, Job, JobRequest, Outcome, Return, Tgt};
use crate::telemetry;

/// The error a device's part of a job gets when shutdown cuts it short.
pub const SHUTDOWN_MESSAGE: &str = "not finished: the fleet is shutting down";

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("bad target: {0}")]
    Target(#[from] TargetError),
    #[error("the fleet is shutting down")]
    ShuttingDown,
    #[error("bad job: {0}")]
    BadJob(String),
    /// Refused by the function allow-list (`fleet.allowed_functions`, like Salt's
    /// publisher ACL). Carries the targeted devices, so a master that expects one
    /// return per device can be given one.
    #[error("function {fun:?} is not allowed by fleet.allowed_functions")]
    FunctionNotAllowed { fun: String, minions: Vec<String> },
    /// Refused because `fleet.max_jobs` jobs are already running.
    #[error("too many jobs running (fleet.max_jobs = {limit}); retry when one has finished")]
    TooManyJobs { limit: usize, minions: Vec<String> },
}

impl DispatchError {
    pub fn kind(&self) -> &'static str {
        match self {
            DispatchError::Target(_) => "bad_target",
            DispatchError::ShuttingDown => "shutting_down",
            DispatchError::BadJob(_) => "bad_job",
            DispatchError::FunctionNotAllowed { .. } => "function_not_allowed",
            DispatchError::TooManyJobs { .. } => "too_many_jobs",
        }
    }

    /// The devices a refused job targeted (empty for errors found before the target
    /// was resolved): each is owed an error return by a master that expects one.
    pub fn refused_minions(&self) -> &[String] {
        match self {
            DispatchError::FunctionNotAllowed { minions, .. }
            | DispatchError::TooManyJobs { minions, .. } => minions,
            _ => &[],
        }
    }
}

/// Whether `fun` matches one of the allow-list's globs.
pub fn function_allowed(allowed: &[String], fun: &str) -> bool {
    allowed
        .iter()
        .any(|pattern| super::target::glob_matches(pattern, fun))
}

/// A job accepted by the dispatcher: its id, the devices it targets, and the stream
/// of their returns (exactly one each; the stream ends after the last).
pub struct JobHandle {
    pub jid: Jid,
    pub fun: String,
    pub minions: Vec<String>,
    pub returns: mpsc::Receiver<Return>,
}

#[derive(Message)]
#[rtype(result = "Result<JobHandle, DispatchError>")]
pub struct SubmitJob(pub JobRequest);

/// Stop accepting jobs (shutdown). Answers with the tracker of running jobs (to wait
/// for them) and the token that cuts them short with error returns.
#[derive(Message)]
#[rtype(result = "(TaskTracker, CancellationToken)")]
pub struct StopAccepting;

pub struct DispatcherActor {
    registry: Arc<Registry>,
    running: Arc<RunningJobs>,
    cfg: Arc<FleetConfig>,
    in_flight: Arc<Semaphore>,
    accepting: bool,
    jobs: TaskTracker,
    cancel: CancellationToken,
}

impl DispatcherActor {
    pub fn new(
        registry: Arc<Registry>,
        running: Arc<RunningJobs>,
        cfg: Arc<FleetConfig>,
        in_flight: Arc<Semaphore>,
    ) -> DispatcherActor {
        DispatcherActor {
            registry,
            running,
            cfg,
            in_flight,
            accepting: true,
            jobs: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    fn resolve(&self, req: &JobRequest) -> Result<Vec<String>, DispatchError> {
        Ok(resolve(&self.registry, &req.tgt, req.tgt_type)?)
    }
}

/// The devices of `registry` that a target selects, sorted and without duplicates.
/// The dispatcher's own resolution, so a master that asks who a target means gets
/// the devices a job would run on.
pub fn resolve(
    registry: &Registry,
    tgt: &Tgt,
    tgt_type: TargetType,
) -> Result<Vec<String>, TargetError> {
    let target = match tgt {
        Tgt::Expr(e) => Target::parse(e, tgt_type)?,
        Tgt::List(ids) => Target::parse_list(ids),
    };
    let mut ids: Vec<String> = if let Some(list) = target.as_list() {
        list.iter()
            .filter(|id| registry.get(id).is_some())
            .cloned()
            .collect()
    } else {
        let uses_pillar = target.uses_pillar();
        registry
            .iter()
            .filter(|e| {
                let pillar = uses_pillar.then(|| registry.pillar(e.key()));
                target.matches(&Candidate {
                    id: e.key(),
                    grains: &e.grains,
                    pillar: pillar.as_deref().unwrap_or(&NO_PILLAR),
                    address: e.address,
                })
            })
            .map(|e| e.key().to_string())
            .collect()
    };
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

impl Actor for DispatcherActor {
    type Context = Context<Self>;
}

impl Handler<SubmitJob> for DispatcherActor {
    type Result = Result<JobHandle, DispatchError>;

    fn handle(&mut self, msg: SubmitJob, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.accepting {
            metrics::counter!(telemetry::DISPATCH_REJECTED, "reason" => "shutting_down")
                .increment(1);
            return Err(DispatchError::ShuttingDown);
        }
        let req = msg.0;
        if req.fun.is_empty() || req.fun.len() > 256 {
            return Err(DispatchError::BadJob(
                "fun must be 1 to 256 characters".into(),
            ));
        }
        let minions = self.resolve(&req)?;
        if !function_allowed(&self.cfg.allowed_functions, &req.fun) {
            metrics::counter!(telemetry::JOBS_DENIED, "reason" => "function_not_allowed")
                .increment(1);
            warn!(fun = %req.fun, targets = minions.len(), "Job refused: function not in fleet.allowed_functions.");
            return Err(DispatchError::FunctionNotAllowed {
                fun: req.fun,
                minions,
            });
        }
        // Jobs still running, counted by the tracker that shutdown waits on.
        if self.jobs.len() >= self.cfg.max_jobs {
            telemetry::Limit::Jobs.hit();
            return Err(DispatchError::TooManyJobs {
                limit: self.cfg.max_jobs,
                minions,
            });
        }
        let jid = req.jid.clone().unwrap_or_else(Jid::generate);
        let job = Arc::new(Job {
            jid: jid.clone(),
            fun: req.fun.clone(),
            args: Args {
                arg: req.arg,
                kwarg: req.kwarg,
            },
        });
        let timeout = req.timeout.unwrap_or(self.cfg.job_timeout);
        let window = req
            .batch
            .map(|b| b.window(minions.len()))
            .unwrap_or(minions.len())
            .max(1);
        let (tx, rx) = mpsc::channel(256.min(minions.len().max(1)));
        debug!(jid = %jid, fun = %job.fun, targets = minions.len(), "Job accepted.");
        let targets: Arc<[String]> = minions.clone().into();
        let running = self
            .running
            .start(job.clone(), req.tgt, req.tgt_type, targets.clone());
        let run = JobRun {
            job,
            targets,
            running,
            registry: self.registry.clone(),
            in_flight: self.in_flight.clone(),
            window,
            deadline: TokioInstant::now() + timeout,
            max_queued: self.cfg.max_queued_per_device,
            cancel: self.cancel.clone(),
            tx,
        };
        actix::spawn(self.jobs.track_future(run.run()));
        Ok(JobHandle {
            jid,
            fun: req.fun,
            minions,
            returns: rx,
        })
    }
}

impl Handler<StopAccepting> for DispatcherActor {
    type Result = MessageResult<StopAccepting>;

    fn handle(&mut self, _: StopAccepting, _ctx: &mut Context<Self>) -> Self::Result {
        self.accepting = false;
        self.jobs.close();
        MessageResult((self.jobs.clone(), self.cancel.clone()))
    }
}

/// One job in progress.
struct JobRun {
    job: Arc<Job>,
    targets: Arc<[String]>,
    /// This job's entry among the running jobs; a device leaves it with its return.
    running: RunningGuard,
    registry: Arc<Registry>,
    in_flight: Arc<Semaphore>,
    window: usize,
    deadline: TokioInstant,
    max_queued: usize,
    /// Cancelled when shutdown's grace period is over: what has not finished
    /// answers with an error at once.
    cancel: CancellationToken,
    tx: mpsc::Sender<Return>,
}

impl JobRun {
    async fn run(self) {
        let started = Instant::now();
        let batch = Arc::new(Semaphore::new(self.window));
        let mut tasks = tokio::task::JoinSet::new();
        let mut owners: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut outcomes = Outcomes::default();
        let mut pending = self.targets.iter();
        let fun_label = functions::metric_label(&self.job.fun);
        let deliver = |r: Return, outcomes: &mut Outcomes| {
            outcomes.add(r.outcome);
            self.running.answered(&r.id);
            metrics::counter!(telemetry::DEVICE_RETURNS, "outcome" => r.outcome.as_str())
                .increment(1);
            let tx = self.tx.clone();
            async move {
                // A consumer that went away (client disconnected) does not stop the
                // job: its devices still run and are counted.
                let _ = tx.send(r).await;
            }
        };

        let kills = self.running.info();
        'admit: for id in pending.by_ref() {
            if let Some(answer) = super::job_control::answer(&self.job, id, self.running.all()) {
                let r = match answer {
                    Ok(v) => Return::ok(id, &self.job, v, Duration::ZERO),
                    Err(e) => Return::error(id, &self.job, Outcome::Failed, e, Duration::ZERO),
                };
                deliver(r, &mut outcomes).await;
                continue;
            }
            // Devices known to be unreachable answer now, without taking a permit.
            let (actor, queued) = match self.registry.get(id) {
                Some(e) if e.state.is_unreachable() => {
                    let msg = format!(
                        "device unreachable: {} ({})",
                        e.state.as_str(),
                        e.last_error.as_deref().unwrap_or("no answer")
                    );
                    drop(e);
                    deliver(
                        Return::error(id, &self.job, Outcome::Unreachable, msg, Duration::ZERO),
                        &mut outcomes,
                    )
                    .await;
                    continue;
                }
                Some(e) => (e.actor.clone(), e.queued.clone()),
                None => (None, Arc::new(AtomicUsize::new(0))),
            };
            let Some(actor) = actor else {
                let r = Return::error(
                    id,
                    &self.job,
                    Outcome::Unreachable,
                    "device unreachable: no running actor",
                    Duration::ZERO,
                );
                deliver(r, &mut outcomes).await;
                continue;
            };
            // Admission: the job's batch slot, then a global permit. Both are waited
            // for only until the job's deadline.
            let admitted = tokio::time::timeout_at(self.deadline, async {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => None,
                    p = async {
                        let slot = batch.clone().acquire_owned().await.ok()?;
                        let permit = self.in_flight.clone().acquire_owned().await.ok()?;
                        Some((slot, permit))
                    } => p,
                }
            })
            .await;
            if self.cancel.is_cancelled() {
                let r = Return::error(
                    id,
                    &self.job,
                    Outcome::Rejected,
                    SHUTDOWN_MESSAGE,
                    Duration::ZERO,
                );
                deliver(r, &mut outcomes).await;
                break 'admit;
            }
            let Ok(Some((slot, permit))) = admitted else {
                // Deadline passed while waiting: this and every remaining device time out.
                let r = Return::error(
                    id,
                    &self.job,
                    Outcome::Timeout,
                    "timed out waiting for a free slot",
                    Duration::ZERO,
                );
                deliver(r, &mut outcomes).await;
                break 'admit;
            };
            if queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
                queued.fetch_sub(1, Ordering::AcqRel);
                metrics::counter!(telemetry::DISPATCH_REJECTED, "reason" => "device_queue_full")
                    .increment(1);
                telemetry::Limit::DeviceQueue.hit();
                let r = Return::error(
                    id,
                    &self.job,
                    Outcome::Rejected,
                    format!(
                        "device busy: more than {} operations queued",
                        self.max_queued
                    ),
                    Duration::ZERO,
                );
                deliver(r, &mut outcomes).await;
                continue;
            }
            metrics::counter!(telemetry::DISPATCH_ADMITTED).increment(1);
            let job = self.job.clone();
            let id = id.clone();
            let deadline = self.deadline;
            let registry = self.registry.clone();
            let cancel = self.cancel.clone();
            let task_id = id.clone();
            let kills = kills.clone();
            let handle = tasks.spawn_local(async move {
                let r = match AssertUnwindSafe(operate(
                    &actor,
                    &registry,
                    &cancel,
                    kills.as_deref(),
                    job.clone(),
                    &id,
                    deadline,
                ))
                .catch_unwind()
                .await
                {
                    Ok(r) => r,
                    Err(_) => Return::error(
                        &id,
                        &job,
                        Outcome::Failed,
                        "internal error: dispatch panicked",
                        Duration::ZERO,
                    ),
                };
                queued.fetch_sub(1, Ordering::AcqRel);
                metrics::counter!(telemetry::DISPATCH_COMPLETED).increment(1);
                drop(permit);
                drop(slot);
                r
            });
            owners.insert(handle.id(), task_id);
            // Deliver returns as they finish while admission continues.
            while let Some(done) = tasks.try_join_next_with_id() {
                let r = done_return(done, &mut owners, &self.job);
                deliver(r, &mut outcomes).await;
            }
        }
        for id in pending {
            let (outcome, msg) = if self.cancel.is_cancelled() {
                (Outcome::Rejected, SHUTDOWN_MESSAGE)
            } else {
                (Outcome::Timeout, "timed out before the device was reached")
            };
            let r = Return::error(id, &self.job, outcome, msg, Duration::ZERO);
            deliver(r, &mut outcomes).await;
        }
        while let Some(done) = tasks.join_next_with_id().await {
            let r = done_return(done, &mut owners, &self.job);
            deliver(r, &mut outcomes).await;
        }
        let outcome = if outcomes.all_ok() {
            "success"
        } else {
            "partial"
        };
        metrics::counter!(telemetry::JOBS, "function" => fun_label, "outcome" => outcome)
            .increment(1);
        metrics::histogram!(telemetry::JOB_DURATION).record(started.elapsed().as_secs_f64());
        debug!(jid = %self.job.jid, returns = outcomes.total, "Job finished.");
    }
}

/// The return of a device whose part of a job `saltutil.kill_job` ended.
const KILLED_MESSAGE: &str = "job killed by saltutil.kill_job";

/// Resolves when the job is killed on `id`; never without a record.
async fn killed(running: Option<&super::running::RunningJob>, id: &str) {
    match running {
        Some(r) => r.kills.killed(id).await,
        None => std::future::pending().await,
    }
}

async fn operate(
    actor: &Addr<DeviceActor>,
    registry: &Registry,
    cancel: &CancellationToken,
    running: Option<&super::running::RunningJob>,
    job: Arc<Job>,
    id: &str,
    deadline: TokioInstant,
) -> Return {
    let admitted = Instant::now();
    let send = actor.send(Execute {
        job: job.clone(),
        admitted,
    });
    let res = tokio::select! {
        biased;
        _ = cancel.cancelled() => {
            return Return::error(id, &job, Outcome::Rejected, SHUTDOWN_MESSAGE, admitted.elapsed());
        }
        _ = killed(running, id) => {
            return Return::error(id, &job, Outcome::Failed, KILLED_MESSAGE, admitted.elapsed());
        }
        r = tokio::time::timeout_at(deadline, send) => r,
    };
    match res {
        Ok(Ok(r)) => r,
        Ok(Err(MailboxError::Closed)) => {
            // The actor stopped with this operation queued; name why it stopped.
            let cause = registry
                .get(id)
                .and_then(|e| e.last_error.clone())
                .unwrap_or_else(|| "device went down".into());
            Return::error(
                id,
                &job,
                Outcome::Unreachable,
                format!("device unreachable: {cause}"),
                admitted.elapsed(),
            )
        }
        Ok(Err(MailboxError::Timeout)) | Err(_) => Return::error(
            id,
            &job,
            Outcome::Timeout,
            "timed out: no answer before the job's deadline",
            admitted.elapsed(),
        ),
    }
}

/// Every task yields its own return; a task that died anyway (runtime shutting down)
/// still owes one, attributed through the task id.
fn done_return(
    done: Result<(tokio::task::Id, Return), tokio::task::JoinError>,
    owners: &mut HashMap<tokio::task::Id, String>,
    job: &Job,
) -> Return {
    match done {
        Ok((tid, r)) => {
            owners.remove(&tid);
            r
        }
        Err(e) => {
            let id = owners.remove(&e.id()).unwrap_or_default();
            Return::error(
                &id,
                job,
                Outcome::Failed,
                format!("internal error: {e}"),
                Duration::ZERO,
            )
        }
    }
}

#[derive(Default)]
struct Outcomes {
    total: usize,
    failed: usize,
}

impl Outcomes {
    fn add(&mut self, o: Outcome) {
        self.total += 1;
        if o != Outcome::Success {
            self.failed += 1;
        }
    }
    fn all_ok(&self) -> bool {
        self.failed == 0
    }
}
