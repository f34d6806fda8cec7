//! Task counts of the runtimes the fleet runs on, so a task leak shows in `drover soak`
//! and in `drover_runtime_tasks`. Each runtime (a device arbiter, the control arbiter,
//! the SNMP receive thread) registers its handle while it lives; the guard removes it.
//!
//! tokio counts only tasks on a runtime's own scheduler. actix runs actors and
//! `spawn_local` work on a `LocalSet` inside each arbiter, which tokio's metrics do not
//! see, so device actors are counted separately ([`LiveActor`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::runtime::Handle;

/// The fleet's runtimes, by role: the bounded `runtime` label of the gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuntimeKind {
    /// An arbiter running device actors.
    Device,
    /// The arbiter of the supervisor and dispatcher.
    Control,
    /// The SNMP transport's receive thread.
    Snmp,
}

impl RuntimeKind {
    pub const ALL: [RuntimeKind; 3] =
        [RuntimeKind::Device, RuntimeKind::Control, RuntimeKind::Snmp];

    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Device => "device",
            RuntimeKind::Control => "control",
            RuntimeKind::Snmp => "snmp",
        }
    }
}

struct Registered {
    key: u64,
    kind: RuntimeKind,
    handle: Handle,
}

static RUNTIMES: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);
static DEVICE_ACTORS: AtomicUsize = AtomicUsize::new(0);

/// Keeps a runtime in the count; dropping it takes the runtime out.
#[must_use = "the runtime is counted only while this guard lives"]
#[derive(Debug)]
pub struct RuntimeGuard(u64);

/// Counts `handle`'s tasks under `kind` until the guard is dropped.
pub fn register_runtime(kind: RuntimeKind, handle: Handle) -> RuntimeGuard {
    let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut r) = RUNTIMES.lock() {
        r.push(Registered { key, kind, handle });
    }
    RuntimeGuard(key)
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Ok(mut r) = RUNTIMES.lock() {
            r.retain(|x| x.key != self.0);
        }
    }
}

/// Alive tokio tasks per kind of runtime, summed over the registered runtimes of that
/// kind; every kind is present (0 when none is registered).
pub fn runtime_tasks() -> BTreeMap<RuntimeKind, usize> {
    let mut out: BTreeMap<RuntimeKind, usize> = RuntimeKind::ALL.iter().map(|k| (*k, 0)).collect();
    if let Ok(r) = RUNTIMES.lock() {
        for x in r.iter() {
            *out.entry(x.kind).or_default() += x.handle.metrics().num_alive_tasks();
        }
    }
    out
}

/// How many runtimes of each kind are registered.
pub fn runtimes_registered() -> BTreeMap<RuntimeKind, usize> {
    let mut out = BTreeMap::new();
    if let Ok(r) = RUNTIMES.lock() {
        for x in r.iter() {
            *out.entry(x.kind).or_default() += 1;
        }
    }
    out
}

/// Device actors alive in this process (each one a task on an arbiter's `LocalSet`).
pub fn device_actors() -> usize {
    DEVICE_ACTORS.load(Ordering::Relaxed)
}

/// Held by each device actor: counted from creation until dropped, so an actor that
/// stops but is never freed still counts.
#[derive(Debug)]
pub struct LiveActor(());

impl LiveActor {
    pub fn new() -> LiveActor {
        DEVICE_ACTORS.fetch_add(1, Ordering::Relaxed);
        LiveActor(())
    }
}

impl Default for LiveActor {
    fn default() -> Self {
        LiveActor::new()
    }
}

impl Drop for LiveActor {
    fn drop(&mut self) {
        DEVICE_ACTORS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_counts_its_tasks_while_registered() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(async move {
            let _ = rx.await;
        });
        // Other unit tests may start fleets in parallel, so this looks at its own
        // registration only.
        let guard = register_runtime(RuntimeKind::Control, rt.handle().clone());
        let mine = || {
            RUNTIMES
                .lock()
                .unwrap()
                .iter()
                .find(|x| x.key == guard.0)
                .map(|x| x.handle.metrics().num_alive_tasks())
        };
        assert_eq!(mine(), Some(1));
        let _ = tx.send(());
        rt.block_on(task).unwrap();
        assert_eq!(mine(), Some(0));
        let key = guard.0;
        drop(guard);
        assert!(RUNTIMES.lock().unwrap().iter().all(|x| x.key != key));
    }
}
