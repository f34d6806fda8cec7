//! Devices declared in Salt pillar, the way deltaproxy reads them: a control id
//! whose pillar says `proxy: {proxytype: deltaproxy, ids: [...]}`, and each listed
//! id's own `proxy:` block (or, in the 2014 layout, `proxy: {<name>: {proxytype, id,
//! ...}}` in the control id's pillar). The Salt link feeds in pillars as the master
//! answers `_pillar`; the inventory reads the devices out on every reload
//! ([`super::InventorySource::load`]), so a pillar change goes through the same diff
//! as SIGHUP.
//!
//! A block that does not make a valid device is reported (id and key, never a
//! value: pillars hold passwords) and the id keeps its last good block, so a typo in
//! pillar never takes a working device away.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::Inventory;
use crate::config::ConfigError;

/// The pillar-declared devices of one control id.
pub struct PillarDevices {
    control: String,
    /// Relative paths in blocks (a `ca_file`) resolve against the config's folder.
    base: PathBuf,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// The control id's list, in its order; `None` until its pillar arrived.
    listed: Option<Vec<String>>,
    /// Last good device table of each id whose pillar declared one.
    tables: HashMap<String, Map<String, Value>>,
}

/// What one pillar changed in the list of ids the control id declares.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PillarDevices {
    pub fn new(control: impl Into<String>, base: impl Into<PathBuf>) -> Arc<PillarDevices> {
        Arc::new(PillarDevices {
            control: control.into(),
            base: base.into(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        })
    }

    pub fn control_id(&self) -> &str {
        &self.control
    }

    /// The ids the control id lists (empty until its pillar arrived).
    pub fn listed(&self) -> Vec<String> {
        lock(&self.state).listed.clone().unwrap_or_default()
    }

    /// Takes the pillar the master answered for `id`. For the control id, returns
    /// the ids that joined and left its list (the link authenticates the new ones to
    /// fetch their pillars); for any other id, records its `proxy:` block.
    pub fn observe(&self, id: &str, pillar: &Value) -> ListChange {
        let proxy = pillar.get("proxy").and_then(Value::as_object);
        if id == self.control {
            return self.observe_control(proxy);
        }
        let Some(proxy) = proxy else {
            if lock(&self.state).tables.contains_key(id) {
                tracing::warn!(id = %id, "Pillar has no proxy: block any more; the device keeps its last one.");
            }
            return ListChange::default();
        };
        if let Some(table) = self.checked_table(id, proxy) {
            self.store(vec![(id.to_owned(), table)]);
        }
        ListChange::default()
    }

    fn observe_control(&self, proxy: Option<&Map<String, Value>>) -> ListChange {
        let Some(proxy) = proxy else {
            tracing::warn!(id = %self.control, "The pillar_inventory control id's pillar has no proxy: block; no devices from pillar.");
            return ListChange::default();
        };
        let mut declared = Vec::new();
        let ids: Vec<String> = match proxy.get("proxytype").and_then(Value::as_str) {
            Some("deltaproxy") => {
                let mut seen = std::collections::HashSet::new();
                proxy
                    .get("ids")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|s| seen.insert(*s))
                    .map(str::to_owned)
                    .collect()
            }
            // The 2014 layout: every device declared in the control id's own pillar.
            None if !proxy.is_empty() && proxy.values().all(Value::is_object) => {
                let mut ids = Vec::new();
                for (name, block) in proxy {
                    let Value::Object(block) = block else {
                        continue;
                    };
                    let sub = block.get("id").and_then(Value::as_str).unwrap_or(name);
                    let mut block = block.clone();
                    block.remove("id");
                    if let Some(t) = self.checked_table(sub, &block) {
                        declared.push((sub.to_owned(), t));
                    }
                    ids.push(sub.to_owned());
                }
                ids
            }
            _ => {
                tracing::warn!(id = %self.control, "The pillar_inventory control id's proxy: block is neither deltaproxy's (proxytype: deltaproxy, ids: [...]) nor the 2014 layout; no devices from pillar.");
                return ListChange::default();
            }
        };
        let change = {
            let mut st = lock(&self.state);
            let before = st.listed.take().unwrap_or_default();
            let change = ListChange {
                added: ids
                    .iter()
                    .filter(|i| !before.contains(i))
                    .cloned()
                    .collect(),
                removed: before
                    .iter()
                    .filter(|i| !ids.contains(i))
                    .cloned()
                    .collect(),
            };
            for gone in &change.removed {
                st.tables.remove(gone);
            }
            st.listed = Some(ids);
            change
        };
        if !change.added.is_empty() || !change.removed.is_empty() {
            tracing::info!(
                control = %self.control,
                added = change.added.len(),
                removed = change.removed.len(),
                "Pillar inventory list changed."
            );
            self.changed.notify_one();
        }
        self.store(declared);
        change
    }

    /// `proxy` as a device table, or `None` with the reason logged when it would
    /// not make a valid device.
    fn checked_table(&self, id: &str, proxy: &Map<String, Value>) -> Option<Map<String, Value>> {
        let mut warnings = Vec::new();
        let table = match crate::pillar::device_table(id, proxy, &mut warnings) {
            Ok(t) => t,
            Err(why) => {
                metrics::counter!(crate::telemetry::PILLAR_INVENTORY_REJECTED).increment(1);
                tracing::warn!(id = %id, problem = %why, "Pillar proxy: block not used.");
                return None;
            }
        };
        for w in warnings {
            tracing::info!(id = %id, note = %w, "Pillar proxy: block.");
        }
        if let Err(e) = Inventory::from_tables(vec![(label(id), table.clone())], &self.base) {
            metrics::counter!(crate::telemetry::PILLAR_INVENTORY_REJECTED).increment(1);
            tracing::warn!(id = %id, problem = %e, "Pillar proxy: block not used; the device keeps its last good one.");
            return None;
        }
        Some(table)
    }

    fn store(&self, tables: Vec<(String, Map<String, Value>)>) {
        let mut changed = false;
        {
            let mut st = lock(&self.state);
            for (id, t) in tables {
                if st.tables.get(&id) != Some(&t) {
                    st.tables.insert(id, t);
                    changed = true;
                }
            }
        }
        if changed {
            self.changed.notify_one();
        }
    }

    /// The devices declared now: every listed id with a good block, in list order.
    pub fn devices(&self) -> Result<Inventory, ConfigError> {
        let tables: Vec<(PathBuf, Map<String, Value>)> = {
            let st = lock(&self.state);
            let order: BTreeMap<usize, &String> = st.listed.iter().flatten().enumerate().collect();
            order
                .values()
                .filter_map(|id| Some((label(id), st.tables.get(*id)?.clone())))
                .collect()
        };
        Inventory::from_tables(tables, &self.base)
    }

    /// Resolves when the declared devices may have changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

fn label(id: &str) -> PathBuf {
    Path::new("pillar of").join(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(inv: &Inventory) -> Vec<&str> {
        inv.devices.iter().map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn deltaproxy_layout_lists_ids_and_each_declares_itself() {
        let p = PillarDevices::new("ctl", "/tmp");
        let change = p.observe(
            "ctl",
            &json!({"proxy": {"proxytype": "deltaproxy", "ids": ["r1", "s1", "r1"]}}),
        );
        assert_eq!(change.added, vec!["r1", "s1"]);
        assert!(
            p.devices().unwrap().is_empty(),
            "no device before its own pillar"
        );
        p.observe(
            "r1",
            &json!({"proxy": {"proxytype": "rest_sample", "url": "http://127.0.0.1:1/", "extra": 1}}),
        );
        p.observe(
            "s1",
            &json!({"proxy": {"proxytype": "snmp", "host": "127.0.0.1", "version": 2, "community": 1234}}),
        );
        // An id nobody listed is not a device.
        p.observe(
            "stray",
            &json!({"proxy": {"proxytype": "rest_sample", "url": "http://127.0.0.1:2/"}}),
        );
        let inv = p.devices().unwrap();
        assert_eq!(ids(&inv), vec!["r1", "s1"]);
        assert_eq!(inv.devices[1].proxytype(), "snmp");

        let change = p.observe(
            "ctl",
            &json!({"proxy": {"proxytype": "deltaproxy", "ids": ["s1", "r2"]}}),
        );
        assert_eq!(change.added, vec!["r2"]);
        assert_eq!(change.removed, vec!["r1"]);
        assert_eq!(ids(&p.devices().unwrap()), vec!["s1"]);
    }

    #[test]
    fn a_bad_block_keeps_the_last_good_one_and_never_quotes_values() {
        let p = PillarDevices::new("ctl", "/tmp");
        p.observe(
            "ctl",
            &json!({"proxy": {"proxytype": "deltaproxy", "ids": ["o1"]}}),
        );
        p.observe(
            "o1",
            &json!({"proxy": {"proxytype": "ovs", "url": "tcp:127.0.0.1:6640"}}),
        );
        assert_eq!(ids(&p.devices().unwrap()), vec!["o1"]);
        // An unknown key for the OVS driver: refused, the previous block stays.
        p.observe(
            "o1",
            &json!({"proxy": {"proxytype": "ovs", "url": "tcp:127.0.0.2:6640", "password": "hunter2"}}),
        );
        let inv = p.devices().unwrap();
        assert_eq!(ids(&inv), vec!["o1"]);
        assert_eq!(
            inv.devices[0].driver.address().map(|a| a.to_string()),
            Some("127.0.0.1".into())
        );
    }

    #[test]
    fn the_2014_layout_declares_devices_in_the_control_pillar() {
        let p = PillarDevices::new("proxy_docker", "/tmp");
        let change = p.observe(
            "proxy_docker",
            &json!({"proxy": {"rest_sample": {"proxytype": "rest_sample", "url": "http://127.0.0.1:8080/", "id": "proxy_docker_1"}}}),
        );
        assert_eq!(change.added, vec!["proxy_docker_1"]);
        assert_eq!(ids(&p.devices().unwrap()), vec!["proxy_docker_1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_device_wakes_the_reloader() {
        let p = PillarDevices::new("ctl", "/tmp");
        p.observe(
            "ctl",
            &json!({"proxy": {"proxytype": "deltaproxy", "ids": ["r1"]}}),
        );
        p.changed().await;
        p.observe(
            "r1",
            &json!({"proxy": {"proxytype": "rest_sample", "url": "http://127.0.0.1:1/"}}),
        );
        p.changed().await;
        // The same block again changes nothing.
        p.observe(
            "r1",
            &json!({"proxy": {"proxytype": "rest_sample", "url": "http://127.0.0.1:1/"}}),
        );
        let woke = tokio::time::timeout(std::time::Duration::from_millis(50), p.changed()).await;
        assert!(woke.is_err());
    }
}
