//! One OVS host as the fleet sees it: built from the inventory's [`OvsConfig`],
//! alive when the server answers an `echo`, with grains from the replica's
//! `Open_vSwitch` row and bridges. The functions' reads and writes are in
//! [`super::ops`].

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::connection::Connection;
use super::datum::{Atom, Datum};
use super::{OvsConfig, OvsdbError};
use crate::drivers::{DeviceDriver, DriverContext, DriverError};

#[derive(Clone)]
pub struct OvsDevice {
    pub(super) conn: Connection,
}

impl OvsDevice {
    pub fn new(cfg: &OvsConfig, timeout: Duration) -> OvsDevice {
        OvsDevice {
            conn: Connection::new(cfg.endpoint.clone(), timeout, cfg.max_message),
        }
    }

    /// True when the server echoes our `echo` back.
    pub async fn ping(&self) -> Result<bool, OvsdbError> {
        let token = json!(["drover-ping"]);
        let back = self.conn.call("echo", token.clone()).await?;
        Ok(back == token)
    }

    /// Whether a session is up now (no round trip).
    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    pub async fn grains(&self) -> Result<Map<String, Value>, OvsdbError> {
        self.conn
            .read(|r, schema| {
                let mut g = Map::new();
                let root = r.root().map(|(_, row)| row);
                let text = |col: &str| -> Value {
                    root.and_then(|row| row.get(col))
                        .and_then(Datum::str)
                        .map_or(Value::Null, |s| json!(s))
                };
                let list = |col: &str| -> Value {
                    let items: Vec<Value> = root
                        .and_then(|row| row.get(col))
                        .map(|d| {
                            d.atoms()
                                .into_iter()
                                .filter_map(Atom::as_str)
                                .map(|s| json!(s))
                                .collect()
                        })
                        .unwrap_or_default();
                    Value::Array(items)
                };
                let external = |key: &str| -> Value {
                    root.and_then(|row| row.get("external_ids"))
                        .and_then(|d| d.get(key))
                        .and_then(Atom::as_str)
                        .map_or(Value::Null, |s| json!(s))
                };
                for col in ["ovs_version", "db_version", "system_type", "system_version"] {
                    g.insert(col.into(), text(col));
                }
                g.insert(
                    "ovsdb_schema_version".into(),
                    json!(schema.version.to_string()),
                );
                g.insert("system_id".into(), external("system-id"));
                g.insert("hostname".into(), external("hostname"));
                g.insert("datapath_types".into(), list("datapath_types"));
                g.insert("iface_types".into(), list("iface_types"));
                let bridges: Vec<Value> = r.view().bridges.keys().map(|b| json!(b)).collect();
                g.insert("bridges".into(), Value::Array(bridges));
                g.insert("os".into(), json!("OpenvSwitch"));
                g.insert("kernel".into(), json!("ovsdb"));
                if let Some(h) = g.get("hostname").and_then(Value::as_str).map(str::to_owned) {
                    let short = h.split('.').next().unwrap_or(&h).to_owned();
                    g.insert("fqdn".into(), json!(h));
                    g.insert("host".into(), json!(short));
                    g.insert("nodename".into(), json!(short));
                }
                g
            })
            .await
    }
}

impl DeviceDriver for OvsDevice {
    type Settings = OvsConfig;

    fn build(
        settings: &OvsConfig,
        timeout: Duration,
        _ctx: &DriverContext,
    ) -> Result<OvsDevice, DriverError> {
        Ok(OvsDevice::new(settings, timeout))
    }

    async fn ping(&self) -> Result<bool, DriverError> {
        Ok(OvsDevice::ping(self).await?)
    }

    async fn grains(&self) -> Result<Map<String, Value>, DriverError> {
        Ok(OvsDevice::grains(self).await?)
    }
}

impl crate::drivers::Capabilities for OvsDevice {
    fn ovs(&self) -> Option<&OvsDevice> {
        Some(self)
    }
}
