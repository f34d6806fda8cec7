//! The poll cache: each device's last good sample of each module (rendered once,
//! when polled), whether the latest poll failed (stale) and when, and the lookup
//! labels kept between polls. Written by the poller, read by `/snmp`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use super::render::Labels;
use crate::drivers::snmp::SnmpValue;

/// One successful poll of one module.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The module's families in the text format.
    pub body: String,
    pub polled_at: SystemTime,
    /// Time spent talking to the device.
    pub walk: Duration,
    /// Walk and rendering.
    pub total: Duration,
    /// Varbinds returned (snmp_exporter's `snmp_scrape_pdus_returned`).
    pub pdus: usize,
    /// Requests sent.
    pub requests: usize,
}

/// What the cache knows of one device's module.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub last_ok: Option<Arc<Sample>>,
    /// The latest poll failed, or the device is down: its values are stale.
    pub stale: bool,
    pub last_error: Option<(SystemTime, String)>,
}

/// Labels looked up by index, and the guard values (sysUpTime, ifNumber) they were
/// read under.
#[derive(Debug, Clone, Default)]
pub struct LookupState {
    pub guards: Vec<SnmpValue>,
    pub labels: Labels,
}

#[derive(Default)]
struct DeviceCache {
    modules: BTreeMap<String, Entry>,
    lookups: BTreeMap<String, Arc<LookupState>>,
}

#[derive(Default)]
pub struct PollCache {
    devices: DashMap<Arc<str>, DeviceCache>,
}

impl PollCache {
    pub fn new() -> Arc<PollCache> {
        Arc::new(PollCache::default())
    }

    pub fn store(&self, id: &Arc<str>, module: &str, sample: Sample) {
        let mut d = self.devices.entry(id.clone()).or_default();
        let e = d.modules.entry(module.to_owned()).or_default();
        e.last_ok = Some(Arc::new(sample));
        e.stale = false;
    }

    /// Keeps the last values, marked stale, with the failure and its time.
    pub fn fail(&self, id: &Arc<str>, module: &str, error: String) {
        let mut d = self.devices.entry(id.clone()).or_default();
        let e = d.modules.entry(module.to_owned()).or_default();
        e.stale = true;
        e.last_error = Some((SystemTime::now(), error));
    }

    /// A device that went down: whatever it had is stale from now on.
    pub fn mark_stale(&self, id: &str, why: &str) {
        if let Some(mut d) = self.devices.get_mut(id) {
            for e in d.modules.values_mut() {
                if !e.stale {
                    e.stale = true;
                    e.last_error = Some((SystemTime::now(), why.to_owned()));
                }
            }
        }
    }

    pub fn get(&self, id: &str, module: &str) -> Option<Entry> {
        self.devices.get(id)?.modules.get(module).cloned()
    }

    pub fn lookups(&self, id: &str, module: &str) -> Option<Arc<LookupState>> {
        self.devices.get(id)?.lookups.get(module).cloned()
    }

    pub fn set_lookups(&self, id: &Arc<str>, module: &str, l: LookupState) {
        let mut d = self.devices.entry(id.clone()).or_default();
        d.lookups.insert(module.to_owned(), Arc::new(l));
    }

    /// Drops devices no longer in the fleet.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.devices.retain(|id, _| keep(id));
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_poll_keeps_the_last_values_marked_stale() {
        let c = PollCache::new();
        let id: Arc<str> = "r1".into();
        c.store(
            &id,
            "if_mib",
            Sample {
                body: "ifNumber 2\n".into(),
                polled_at: SystemTime::now(),
                walk: Duration::ZERO,
                total: Duration::ZERO,
                pdus: 1,
                requests: 1,
            },
        );
        c.fail(&id, "if_mib", "timeout".into());
        let e = c.get("r1", "if_mib").unwrap();
        assert!(e.stale);
        assert_eq!(e.last_ok.unwrap().body, "ifNumber 2\n");
        assert_eq!(e.last_error.unwrap().1, "timeout");
        c.retain(|_| false);
        assert!(c.get("r1", "if_mib").is_none());
    }
}
