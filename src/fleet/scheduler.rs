//! Runs every device's Salt schedule ([`crate::schedule`]): each job on its own
//! interval (plus its splay), through the dispatcher like any other job, so the
//! fleet's limits and allowed functions apply; at most `maxrunning` runs of one job
//! at once. Each return goes on the fleet's bus as a
//! [`FleetEvent::ScheduledReturn`], which the Salt link sends to the master as a
//! scheduled minion job's `_return` (unless the item says `return_job: False`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::dispatcher::{DispatcherActor, SubmitJob};
use super::registry::Registry;
use crate::events::{FleetEvent, ScheduledReturn};
use crate::job::{JobRequest, Tgt};
use crate::minion_state::Doc;
use crate::schedule::{self, Item};

/// How often schedules are looked at; the finest interval Salt users write is 1 s.
const TICK: Duration = Duration::from_secs(1);

/// Per device and job name: when it runs next and how many runs are in flight.
#[derive(Default)]
struct JobState {
    next: Option<Instant>,
    running: Arc<std::sync::atomic::AtomicU64>,
}

/// Runs until the dispatcher is gone.
pub async fn run(registry: Arc<Registry>, dispatcher: Addr<DispatcherActor>) {
    let mut states: HashMap<(Arc<str>, String), JobState> = HashMap::new();
    let mut bus = registry.events().subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned: HashSet<(Arc<str>, String)> = HashSet::new();
    loop {
        let mut now_runs: Vec<(Arc<str>, String)> = Vec::new();
        tokio::select! {
            _ = tick.tick() => {}
            e = bus.recv() => match e {
                Ok(FleetEvent::RunSchedule { id, name }) => now_runs.push((id, name)),
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        }
        if !dispatcher.connected() {
            return;
        }
        let now = Instant::now();
        let mut seen: HashSet<(Arc<str>, String)> = HashSet::with_capacity(states.len());
        let ids: Vec<Arc<str>> = registry.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            let pillar = registry.pillar(&id);
            let saved = registry.minions().get(&id, Doc::Schedule);
            if saved.is_empty()
                && pillar.get("schedule").is_none()
                && pillar.get("mine_functions").is_none()
            {
                continue;
            }
            let off = schedule::globally_disabled(&pillar);
            for (name, raw) in schedule::jobs(&pillar, &saved) {
                let key = (id.clone(), name.clone());
                let forced = now_runs.contains(&key);
                let item = match Item::parse(&raw) {
                    Ok(i) => i,
                    Err(why) => {
                        if warned.insert(key.clone()) {
                            tracing::warn!(id = %id, job = %name, problem = %why, "Schedule item not run.");
                        }
                        continue;
                    }
                };
                seen.insert(key.clone());
                let st = states.entry(key).or_default();
                let next = *st.next.get_or_insert_with(|| {
                    if item.run_on_start {
                        now
                    } else {
                        now + item.every + splay(item.splay)
                    }
                });
                let due = forced || (now >= next && item.enabled && !off);
                if !due {
                    continue;
                }
                if !forced {
                    st.next = Some(now + item.every + splay(item.splay));
                }
                let running = st.running.clone();
                if running.load(std::sync::atomic::Ordering::Relaxed) >= item.maxrunning {
                    tracing::debug!(id = %id, job = %name, "Scheduled job still running; this run skipped.");
                    continue;
                }
                running.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let registry = registry.clone();
                let dispatcher = dispatcher.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    run_one(&registry, &dispatcher, id, name, item).await;
                    running.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        }
        // Jobs that left a schedule (or a device that left) forget their timing.
        states.retain(|k, _| seen.contains(k));
    }
}

fn splay(max: u64) -> Duration {
    if max == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs(rand::random_range(1..=max))
    }
}

async fn run_one(
    registry: &Registry,
    dispatcher: &Addr<DispatcherActor>,
    id: Arc<str>,
    name: String,
    item: Item,
) {
    let req = JobRequest {
        tgt: Tgt::List(vec![id.to_string()]),
        tgt_type: crate::job::TargetType::List,
        fun: item.function.clone(),
        arg: item.args.clone(),
        kwarg: item.kwargs.clone(),
        batch: None,
        timeout: None,
        jid: None,
    };
    let mut handle = match dispatcher.send(SubmitJob(req)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::debug!(id = %id, job = %name, error = %e, "Scheduled job not run.");
            return;
        }
        Err(_) => return,
    };
    let Some(r) = handle.returns.recv().await else {
        return;
    };
    if !item.return_job {
        return;
    }
    let mut fun_args = item.args;
    if !item.kwargs.is_empty() {
        fun_args.push(Value::Object(item.kwargs));
    }
    registry
        .events()
        .send(FleetEvent::ScheduledReturn(Arc::new(ScheduledReturn {
            id,
            schedule: name,
            fun: item.function,
            fun_args,
            ret: r.ret,
            retcode: r.retcode,
            success: r.success,
        })));
}
