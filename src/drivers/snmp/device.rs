//! One SNMP device as the fleet sees it: built from its [`SnmpConfig`],
//! health checked with `sysUpTime.0`, grains from the system group (`sysDescr`,
//! `sysObjectID`, `sysName`, ...) plus the Salt-style `os`, `host`, `fqdn` derived
//! from them, and the operations the `snmp.*` functions need.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{
    Oid, SnmpClient, SnmpConfig, SnmpError, SnmpTarget, SnmpTransport, SnmpValue, SnmpVersion,
    UsmUser, VarBind,
};
use crate::drivers::{DeviceDriver, DriverContext, DriverError};

/// The system group, in the order grains are built from it.
const SYSTEM: [(&str, &str); 6] = [
    ("sysDescr", "1.3.6.1.2.1.1.1.0"),
    ("sysObjectID", "1.3.6.1.2.1.1.2.0"),
    ("sysUpTime", "1.3.6.1.2.1.1.3.0"),
    ("sysContact", "1.3.6.1.2.1.1.4.0"),
    ("sysName", "1.3.6.1.2.1.1.5.0"),
    ("sysLocation", "1.3.6.1.2.1.1.6.0"),
];

#[derive(Clone)]
pub struct SnmpDevice {
    client: SnmpClient,
    max_repetitions: u32,
}

impl SnmpDevice {
    pub fn new(cfg: &SnmpConfig, timeout: Duration, transport: SnmpTransport) -> SnmpDevice {
        let user = match (&cfg.version, &cfg.user) {
            (SnmpVersion::V3, Some(name)) => Some(UsmUser {
                name: name.clone(),
                auth: cfg.auth_protocol.clone().map(|p| {
                    let pw = cfg.auth_password.as_ref().map(|s| s.expose().to_owned());
                    (p, pw.unwrap_or_default())
                }),
                privacy: cfg.priv_protocol.clone().map(|p| {
                    let pw = cfg.priv_password.as_ref().map(|s| s.expose().to_owned());
                    (p, pw.unwrap_or_default())
                }),
            }),
            _ => None,
        };
        let target = SnmpTarget {
            addr: SocketAddr::new(cfg.host, cfg.port),
            version: cfg.version.clone(),
            community: cfg.community.expose().to_owned(),
            user,
            timeout,
            retries: cfg.retries,
        };
        SnmpDevice {
            client: SnmpClient::new(target, transport),
            max_repetitions: cfg.max_repetitions,
        }
    }

    /// Up when the agent answers `sysUpTime.0` with a value.
    pub async fn ping(&self) -> Result<bool, SnmpError> {
        let oid = parse(SYSTEM[2].1)?;
        let vbs = self.client.get(&[oid]).await?;
        Ok(vbs.first().is_some_and(|vb| !vb.value.is_exception()))
    }

    pub async fn grains(&self) -> Result<Map<String, Value>, SnmpError> {
        let oids = SYSTEM
            .iter()
            .map(|(_, o)| parse(o))
            .collect::<Result<Vec<_>, _>>()?;
        let vbs = self.client.get(&oids).await?;
        let mut g = Map::new();
        for ((name, _), vb) in SYSTEM.iter().zip(&vbs) {
            if vb.value.is_exception() {
                continue;
            }
            g.insert((*name).to_owned(), plain(&vb.value));
        }
        let descr = g.get("sysDescr").and_then(Value::as_str).unwrap_or("");
        // Net-SNMP says "Linux host 6.1 ...", Cisco "Cisco IOS Software, ...": the
        // first word is the closest thing to Salt's `os`.
        let os = descr
            .split_whitespace()
            .next()
            .unwrap_or("SNMP")
            .trim_end_matches(',');
        g.insert("os".into(), json!(os));
        g.insert("kernel".into(), json!("snmp"));
        if let Some(name) = g.get("sysName").and_then(Value::as_str).map(str::to_owned) {
            let short = name.split('.').next().unwrap_or(&name).to_owned();
            g.insert("fqdn".into(), json!(name));
            g.insert("host".into(), json!(short));
            g.insert("nodename".into(), json!(short));
        }
        Ok(g)
    }

    pub async fn get(&self, oids: &[Oid]) -> Result<Vec<VarBind>, SnmpError> {
        self.client.get(oids).await
    }

    pub async fn get_next(&self, oids: &[Oid]) -> Result<Vec<VarBind>, SnmpError> {
        self.client.get_next(oids).await
    }

    pub async fn walk(&self, root: &Oid) -> Result<Vec<VarBind>, SnmpError> {
        self.client.walk(root).await
    }

    /// GETBULK walk; v1 has no GETBULK, so it walks with GETNEXT instead.
    pub async fn bulkwalk(&self, root: &Oid) -> Result<Vec<VarBind>, SnmpError> {
        if self.client.target().version == SnmpVersion::V1 {
            self.client.walk(root).await
        } else {
            self.client.bulkwalk_with(root, self.max_repetitions).await
        }
    }

    /// Several columns walked side by side (see [`SnmpClient::walk_columns`]), with
    /// this device's max-repetitions unless `max_repetitions` says otherwise.
    pub async fn walk_columns(
        &self,
        non_repeaters: &[Oid],
        columns: &[Oid],
        max_repetitions: Option<u32>,
    ) -> Result<super::ColumnWalk, SnmpError> {
        let reps = max_repetitions.unwrap_or(self.max_repetitions);
        self.client.walk_columns(non_repeaters, columns, reps).await
    }

    /// The agent's address, to match traps from it.
    pub fn addr(&self) -> SocketAddr {
        self.client.target().addr
    }

    /// The agent's address, version, community and user, to check its traps.
    pub fn target(&self) -> &SnmpTarget {
        self.client.target()
    }

    pub fn is_v1(&self) -> bool {
        self.client.target().version == SnmpVersion::V1
    }

    pub async fn set(&self, vbs: &[VarBind]) -> Result<Vec<VarBind>, SnmpError> {
        self.client.set(vbs).await
    }
}

fn parse(oid: &str) -> Result<Oid, SnmpError> {
    oid.parse()
}

/// A value without its type, for grains.
fn plain(v: &SnmpValue) -> Value {
    let j = v.to_json();
    j.get("value").cloned().unwrap_or(Value::Null)
}

impl DeviceDriver for SnmpDevice {
    type Settings = SnmpConfig;

    fn build(
        settings: &SnmpConfig,
        timeout: Duration,
        ctx: &DriverContext,
    ) -> Result<SnmpDevice, DriverError> {
        Ok(SnmpDevice::new(settings, timeout, ctx.snmp_transport()?))
    }

    async fn ping(&self) -> Result<bool, DriverError> {
        Ok(SnmpDevice::ping(self).await?)
    }

    async fn grains(&self) -> Result<Map<String, Value>, DriverError> {
        Ok(SnmpDevice::grains(self).await?)
    }
}

impl crate::drivers::Capabilities for SnmpDevice {
    fn snmp(&self) -> Option<&SnmpDevice> {
        Some(self)
    }
}
