//! The shared registry of devices: id → state, grains, address and actor address, in a
//! `DashMap` written by the supervisor and device actors and read by the dispatcher,
//! the HTTP API and metrics. It also keeps per-driver state counts (the
//! `drover_devices` gauge) and wakes anyone waiting for the fleet to change.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use actix::Addr;
use dashmap::DashMap;
use serde::Serialize;
use serde_json::{Map, Value};

use super::device::DeviceActor;
use crate::events::{EventSink, FleetEvent};
use crate::inventory::DeviceSpec;
use crate::telemetry;

/// Where a device is in its life cycle (see `fleet::device` for the state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Starting,
    Up,
    Down,
    Backoff,
    Failed,
}

impl DeviceState {
    pub const ALL: [DeviceState; 5] = [
        DeviceState::Starting,
        DeviceState::Up,
        DeviceState::Down,
        DeviceState::Backoff,
        DeviceState::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceState::Starting => "starting",
            DeviceState::Up => "up",
            DeviceState::Down => "down",
            DeviceState::Backoff => "backoff",
            DeviceState::Failed => "failed",
        }
    }

    /// Jobs to a device in this state get an error at once instead of waiting.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DeviceState::Down | DeviceState::Backoff | DeviceState::Failed
        )
    }
}

/// One device as the rest of the process sees it.
pub struct DeviceEntry {
    pub spec: Arc<DeviceSpec>,
    pub state: DeviceState,
    /// Always a JSON object; kept as a `Value` so targeting reads it without copying.
    pub grains: Arc<Value>,
    pub address: Option<IpAddr>,
    pub actor: Option<Addr<DeviceActor>>,
    pub generation: u64,
    /// Restarts the supervisor made after the device went down.
    pub restarts: u64,
    /// Times the device went `down` (a failure or a panic, not a reload or shutdown).
    /// Every one is followed by a restart, so `restarts` equals this while the device
    /// is up and trails it by one while a restart is pending.
    pub downs: u64,
    pub last_error: Option<String>,
    pub since: SystemTime,
    /// Operations admitted for this device and not finished (bounded by the
    /// dispatcher).
    pub queued: Arc<AtomicUsize>,
}

/// What `/v1/devices` shows of a device (no secrets: the spec is summarised).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub proxytype: &'static str,
    pub state: DeviceState,
    pub address: Option<IpAddr>,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub since_unix: u64,
}

#[derive(Default)]
pub struct Registry {
    devices: DashMap<Arc<str>, DeviceEntry>,
    /// Each id's pillar from its master; kept across device restarts, dropped with
    /// the device.
    pillars: DashMap<Arc<str>, Arc<Value>>,
    events: EventSink,
    /// Grains set with `grains.setval`, schedules added with `schedule.add`.
    minions: Arc<crate::minion_state::MinionState>,
    /// The file server state runs read SLS files from (set by the master).
    files: std::sync::RwLock<Option<Arc<dyn crate::fileserver::FileSource>>>,
    counts: Mutex<BTreeMap<(&'static str, DeviceState), i64>>,
    changed: tokio::sync::Notify,
    version: std::sync::atomic::AtomicU64,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// A registry whose minion state (set grains, added schedules) is kept under
    /// `state_dir`.
    pub fn with_state_dir(state_dir: Option<std::path::PathBuf>) -> Arc<Registry> {
        let mut r = Registry::default();
        r.minions = crate::minion_state::MinionState::new(state_dir);
        Arc::new(r)
    }

    pub fn minions(&self) -> &Arc<crate::minion_state::MinionState> {
        &self.minions
    }

    /// A device's grains: [`base_grains`], then the grains set on it with
    /// `grains.setval` (Salt's grains file wins over core grains too).
    pub fn grains_for(
        &self,
        spec: &DeviceSpec,
        reported: Option<&Map<String, Value>>,
    ) -> Map<String, Value> {
        let mut g = base_grains(spec, reported);
        for (k, v) in self
            .minions
            .get(&spec.id, crate::minion_state::Doc::Grains)
            .iter()
        {
            if k != "id" {
                g.insert(k.clone(), v.clone());
            }
        }
        g
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Inserts or replaces a device (as `Starting`), keeping its restart and down counts.
    pub fn upsert(&self, spec: Arc<DeviceSpec>, generation: u64, actor: Option<Addr<DeviceActor>>) {
        let id: Arc<str> = Arc::from(spec.id.as_str());
        let driver = spec.proxytype();
        let address = spec.address();
        let old = self.devices.insert(
            id.clone(),
            DeviceEntry {
                grains: Arc::new(Value::Object(self.grains_for(&spec, None))),
                spec,
                state: DeviceState::Starting,
                address,
                actor,
                generation,
                restarts: 0,
                downs: 0,
                last_error: None,
                since: SystemTime::now(),
                queued: Arc::new(AtomicUsize::new(0)),
            },
        );
        if let Some(old) = old {
            if let Some(mut e) = self.devices.get_mut(&id) {
                e.restarts = old.restarts;
                e.downs = old.downs;
            }
            self.count(old.spec.proxytype(), old.state, -1);
        }
        self.count(driver, DeviceState::Starting, 1);
        self.publish_up(&id, driver, DeviceState::Starting);
        self.notify();
    }

    pub fn remove(&self, id: &str) {
        self.pillars.remove(id);
        if let Some((_, old)) = self.devices.remove(id) {
            self.count(old.spec.proxytype(), old.state, -1);
            metrics::gauge!(telemetry::DEVICE_UP, "device" => id.to_owned(), "driver" => old.spec.proxytype()).set(0.0);
            self.notify();
        }
    }

    /// Moves a device to `state` if `generation` is still current; stale actors from
    /// before a reload cannot overwrite their successor.
    pub fn set_state(&self, id: &str, generation: u64, state: DeviceState, error: Option<String>) {
        let driver;
        let error_for_event;
        {
            let Some(mut e) = self.devices.get_mut(id) else {
                return;
            };
            if e.generation != generation {
                return;
            }
            if e.state == state && error.is_none() {
                return;
            }
            driver = e.spec.proxytype();
            let old = e.state;
            error_for_event = if old == state {
                None
            } else {
                Some(error.clone())
            };
            if state == DeviceState::Down && old != DeviceState::Down {
                e.downs += 1;
            }
            e.state = state;
            e.since = SystemTime::now();
            if error.is_some() || state == DeviceState::Up {
                e.last_error = error;
            }
            drop(e);
            self.count(driver, old, -1);
            self.count(driver, state, 1);
        }
        self.publish_up(id, driver, state);
        if let Some(error) = error_for_event {
            self.announce(id, state, error);
        }
        self.notify();
    }

    /// `drover/device/<id>/up` and `.../down` (with the cause) on the fleet's bus.
    fn announce(&self, id: &str, state: DeviceState, error: Option<String>) {
        let what = match state {
            DeviceState::Up => "up",
            DeviceState::Down => "down",
            _ => return,
        };
        if !self.events.has_subscribers() {
            return;
        }
        let mut data = serde_json::Map::new();
        data.insert("id".into(), Value::from(id));
        if let Some(e) = error {
            data.insert("error".into(), Value::from(e));
        }
        self.events.send(FleetEvent::Fire {
            id: Arc::from(id),
            tag: format!("drover/device/{id}/{what}"),
            data: Value::Object(data),
        });
    }

    /// The fleet's event bus.
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// Sets the file server state runs read from (the local `file_roots`, or the Salt
    /// master's file client).
    pub fn set_files(&self, files: Option<Arc<dyn crate::fileserver::FileSource>>) {
        if let Ok(mut f) = self.files.write() {
            *f = files;
        }
    }

    /// The file server for state runs, if a master provides one.
    pub fn files(&self) -> Option<Arc<dyn crate::fileserver::FileSource>> {
        self.files.read().ok().and_then(|f| f.clone())
    }

    /// Replaces `id`'s pillar (the master's answer to `_pillar`).
    pub fn set_pillar(&self, id: &str, pillar: Value) {
        self.pillars.insert(Arc::from(id), Arc::new(pillar));
    }

    /// `id`'s pillar; an empty dict until its master has sent one.
    pub fn pillar(&self, id: &str) -> Arc<Value> {
        self.pillars
            .get(id)
            .map(|p| p.clone())
            .unwrap_or_else(|| Arc::new(Value::Object(serde_json::Map::new())))
    }

    pub fn set_actor(&self, id: &str, generation: u64, actor: Option<Addr<DeviceActor>>) {
        if let Some(mut e) = self.devices.get_mut(id) {
            if e.generation == generation {
                e.actor = actor;
            }
        }
    }

    /// Replaces a device's grains; a change is a registry change, so the master
    /// link reports the new grains (its grain targeting sees `grains.setval`).
    pub fn set_grains(&self, id: &str, generation: u64, grains: Arc<Value>) {
        let changed = match self.devices.get_mut(id) {
            Some(mut e) if e.generation == generation => {
                let changed = e.grains != grains;
                e.grains = grains;
                changed
            }
            _ => false,
        };
        if changed {
            self.notify();
        }
    }

    pub fn add_restart(&self, id: &str) {
        if let Some(mut e) = self.devices.get_mut(id) {
            e.restarts += 1;
        }
    }

    pub fn get(&self, id: &str) -> Option<dashmap::mapref::one::Ref<'_, Arc<str>, DeviceEntry>> {
        self.devices.get(id)
    }

    pub fn iter(&self) -> dashmap::iter::Iter<'_, Arc<str>, DeviceEntry> {
        self.devices.iter()
    }

    pub fn state(&self, id: &str) -> Option<DeviceState> {
        self.devices.get(id).map(|e| e.state)
    }

    /// Devices per state, all drivers together.
    pub fn state_counts(&self) -> BTreeMap<DeviceState, i64> {
        let mut out = BTreeMap::new();
        if let Ok(c) = self.counts.lock() {
            for ((_, s), n) in c.iter() {
                *out.entry(*s).or_insert(0) += n;
            }
        }
        out
    }

    pub fn count_in(&self, state: DeviceState) -> usize {
        self.state_counts().get(&state).copied().unwrap_or(0).max(0) as usize
    }

    pub fn views(&self) -> Vec<DeviceView> {
        let mut v: Vec<DeviceView> = self
            .devices
            .iter()
            .map(|e| DeviceView {
                id: e.key().to_string(),
                proxytype: e.spec.proxytype(),
                state: e.state,
                address: e.address,
                restarts: e.restarts,
                last_error: e.last_error.clone(),
                since_unix: e
                    .since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Waits until `pred` holds for the registry; woken by every change, so callers
    /// (tests, the demo, readiness) await an event instead of polling on a timer.
    pub async fn wait_for(&self, mut pred: impl FnMut(&Registry) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if pred(self) {
                return;
            }
            notified.await;
        }
    }

    /// How many changes the registry has seen; cheap change detection.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn notify(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Moves this registry's own count and the process-wide gauge by `delta`. The gauge
    /// is moved, never set, so several registries in one process (shards side by side
    /// in tests, a fleet being replaced) add up instead of overwriting each other.
    fn count(&self, driver: &'static str, state: DeviceState, delta: i64) {
        {
            let Ok(mut c) = self.counts.lock() else {
                return;
            };
            *c.entry((driver, state)).or_insert(0) += delta;
        }
        metrics::gauge!(telemetry::DEVICES, "driver" => driver, "state" => state.as_str())
            .increment(delta as f64);
    }

    fn publish_up(&self, id: &str, driver: &'static str, state: DeviceState) {
        let up = if state == DeviceState::Up { 1.0 } else { 0.0 };
        metrics::gauge!(telemetry::DEVICE_UP, "device" => id.to_owned(), "driver" => driver)
            .set(up);
    }
}

/// A registry that goes away takes its devices out of the process-wide gauge.
impl Drop for Registry {
    fn drop(&mut self) {
        let counts = match self.counts.get_mut() {
            Ok(c) => std::mem::take(c),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        for ((driver, state), n) in counts {
            if n != 0 {
                metrics::gauge!(telemetry::DEVICES, "driver" => driver, "state" => state.as_str())
                    .decrement(n as f64);
            }
        }
    }
}

/// Grains every device has, then what the device reported, then the inventory's
/// static grains (which win, so an operator can correct a device).
pub fn base_grains(spec: &DeviceSpec, reported: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut g = Map::new();
    g.insert("id".into(), Value::String(spec.id.clone()));
    g.insert("proxytype".into(), Value::String(spec.proxytype().into()));
    g.insert("os_family".into(), Value::String("proxy".into()));
    g.insert("kernel".into(), Value::String("proxy".into()));
    g.insert("os".into(), Value::String(spec.proxytype().into()));
    g.insert(
        "drover_version".into(),
        Value::String(env!("CARGO_PKG_VERSION").into()),
    );
    if let Some(a) = spec.address() {
        let key = if a.is_ipv4() { "ipv4" } else { "ipv6" };
        g.insert(key.into(), Value::Array(vec![Value::String(a.to_string())]));
        g.insert("host".into(), Value::String(a.to_string()));
    }
    if let Some(r) = reported {
        for (k, v) in r {
            g.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &spec.grains {
        g.insert(k.clone(), v.clone());
    }
    // The id is the minion's identity; a device cannot rename itself.
    g.insert("id".into(), Value::String(spec.id.clone()));
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::{dummy::DummyConfig, DriverConfig};

    fn dummy(id: &str) -> Arc<DeviceSpec> {
        Arc::new(DeviceSpec {
            id: id.into(),
            driver: DriverConfig::Dummy(DummyConfig::default()),
            grains: Map::new(),
            timeout: None,
        })
    }

    fn gauge_line(rendered: &str, state: &str) -> Option<String> {
        let prefix = format!("drover_devices{{driver=\"dummy\",state=\"{state}\"}} ");
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }

    /// Two registries in one process add up in `drover_devices`, and one that is
    /// dropped takes its devices with it; a set-per-registry gauge would show 2 here.
    #[test]
    fn device_gauge_sums_registries_and_forgets_dropped_ones() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let a = Registry::new();
            let b = Registry::new();
            for i in 0..3 {
                a.upsert(dummy(&format!("a{i}")), 1, None);
                a.set_state(&format!("a{i}"), 1, DeviceState::Up, None);
            }
            for i in 0..2 {
                b.upsert(dummy(&format!("b{i}")), 1, None);
                b.set_state(&format!("b{i}"), 1, DeviceState::Up, None);
            }
            b.upsert(dummy("b-starting"), 1, None);
            assert_eq!(gauge_line(&handle.render(), "up").as_deref(), Some("5"));
            assert_eq!(
                gauge_line(&handle.render(), "starting").as_deref(),
                Some("1")
            );
            a.remove("a0");
            assert_eq!(gauge_line(&handle.render(), "up").as_deref(), Some("4"));
            drop(b);
            assert_eq!(gauge_line(&handle.render(), "up").as_deref(), Some("2"));
            assert_eq!(
                gauge_line(&handle.render(), "starting").as_deref(),
                Some("0")
            );
            assert_eq!(a.count_in(DeviceState::Up), 2);
        });
    }

    #[test]
    fn downs_are_counted_and_survive_a_restart() {
        let r = Registry::new();
        r.upsert(dummy("d"), 1, None);
        r.set_state("d", 1, DeviceState::Up, None);
        r.set_state("d", 1, DeviceState::Down, Some("refused".into()));
        r.set_state("d", 1, DeviceState::Backoff, Some("refused".into()));
        r.add_restart("d");
        r.upsert(dummy("d"), 2, None);
        // A stale actor of the old generation cannot count another.
        r.set_state("d", 1, DeviceState::Down, Some("late".into()));
        let e = r.get("d").unwrap();
        assert_eq!(
            (e.downs, e.restarts, e.state),
            (1, 1, DeviceState::Starting)
        );
    }
}
