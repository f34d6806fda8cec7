//! One NETCONF device as the fleet sees it: built from the inventory's
//! [`NetconfConfig`], alive while its session is up, with grains from the hello's
//! capabilities and, where the server has them, ietf-system and ietf-hardware.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use russh::keys::PublicKey;
use serde_json::{json, Map, Value};

use super::session::{Auth, Connection, Hello, HostKeyPolicy, Target, BASE_1_1};
use super::{NetconfConfig, NetconfError};
use crate::drivers::{DeviceDriver, DriverContext, DriverError};

/// Keys trusted on first use, by `host:port`, kept across driver rebuilds (a device
/// restarted by the supervisor must present the same key again).
type Seen = Arc<Mutex<Option<PublicKey>>>;
static FIRST_USE: LazyLock<Mutex<HashMap<String, Seen>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

#[derive(Clone)]
pub struct NetconfDevice {
    pub(super) conn: Connection,
}

impl NetconfDevice {
    pub fn new(cfg: &NetconfConfig, timeout: Duration) -> NetconfDevice {
        let host_key = if let Some(p) = &cfg.known_hosts {
            HostKeyPolicy::KnownHosts(p.clone())
        } else if let Some(fp) = &cfg.host_key {
            HostKeyPolicy::Pinned(fp.clone())
        } else {
            let key = format!("{}:{}", cfg.host, cfg.port);
            let mut map = FIRST_USE.lock().unwrap_or_else(|p| p.into_inner());
            HostKeyPolicy::FirstUse(map.entry(key).or_default().clone())
        };
        let auth = match (&cfg.password, &cfg.key_file) {
            (_, Some(k)) => Auth::Key(k.clone()),
            (Some(p), None) => Auth::Password(p.clone()),
            (None, None) => Auth::Password(Default::default()),
        };
        NetconfDevice {
            conn: Connection::new(Target {
                host: cfg.host.clone(),
                port: cfg.port,
                username: cfg.username.clone(),
                auth,
                host_key,
                timeout,
                max_message: cfg.max_message,
            }),
        }
    }

    /// The session handle, for the operations in [`super::ops`].
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Up when a session is established (SSH keepalives watch it).
    pub async fn ping(&self) -> Result<bool, NetconfError> {
        self.conn.ready().await.map(|_| true)
    }

    pub async fn grains(&self) -> Result<Map<String, Value>, NetconfError> {
        let hello = self.conn.ready().await?;
        let mut g = hello_grains(&hello);
        g.insert("os".into(), json!("NETCONF"));
        g.insert("kernel".into(), json!("netconf"));
        if hello.capabilities.iter().any(|c| c.contains("ietf-system")) {
            let filter = r#"<system-state xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><platform/></system-state><system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><hostname/></system>"#;
            match self.get_data(filter).await {
                Ok(d) => {
                    let p = &d["system-state"]["platform"];
                    if let Some(os) = p["os-name"].as_str() {
                        g.insert("os".into(), json!(os));
                    }
                    if let Some(v) = p["os-release"].as_str() {
                        g.insert("osrelease".into(), json!(v));
                    }
                    if let Some(v) = p["os-version"].as_str() {
                        g.insert("version".into(), json!(v));
                    }
                    if let Some(v) = p["machine"].as_str() {
                        g.insert("cpuarch".into(), json!(v));
                    }
                    if let Some(name) = d["system"]["hostname"].as_str() {
                        let short = name.split('.').next().unwrap_or(name);
                        g.insert("fqdn".into(), json!(name));
                        g.insert("host".into(), json!(short));
                        g.insert("nodename".into(), json!(short));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "ietf-system grains unavailable."),
            }
        }
        if hello
            .capabilities
            .iter()
            .any(|c| c.contains("ietf-hardware"))
        {
            let filter = r#"<hardware xmlns="urn:ietf:params:xml:ns:yang:ietf-hardware"><component><serial-num/></component></hardware>"#;
            if let Ok(d) = self.get_data(filter).await {
                let comps = &d["hardware"]["component"];
                let first = match comps {
                    Value::Array(a) => a.iter().find_map(|c| c["serial-num"].as_str()),
                    c => c["serial-num"].as_str(),
                };
                if let Some(s) = first {
                    g.insert("serialnumber".into(), json!(s));
                }
            }
        }
        Ok(g)
    }

    async fn get_data(&self, filter: &str) -> Result<Value, NetconfError> {
        let reply = self
            .conn
            .rpc(format!(
                "<get><filter type=\"subtree\">{filter}</filter></get>"
            ))
            .await?;
        Ok(reply
            .root
            .child("data")
            .map(|d| d.children_json())
            .unwrap_or(Value::Null))
    }
}

/// Grains from the hello alone: base version, capabilities, YANG modules.
pub fn hello_grains(hello: &Hello) -> Map<String, Value> {
    let mut g = Map::new();
    let mut caps = Vec::new();
    let mut modules = Vec::new();
    for c in &hello.capabilities {
        if let Some((_, q)) = c.split_once('?') {
            if let Some(m) = q.split('&').find_map(|kv| kv.strip_prefix("module=")) {
                modules.push(json!(m));
                continue;
            }
        }
        caps.push(json!(c));
    }
    g.insert(
        "netconf_base".into(),
        json!(if hello.has(BASE_1_1) { "1.1" } else { "1.0" }),
    );
    g.insert("netconf_capabilities".into(), Value::Array(caps));
    g.insert("netconf_modules".into(), Value::Array(modules));
    g
}

impl DeviceDriver for NetconfDevice {
    type Settings = NetconfConfig;

    fn build(
        settings: &NetconfConfig,
        timeout: Duration,
        _ctx: &DriverContext,
    ) -> Result<Self, DriverError> {
        Ok(NetconfDevice::new(settings, timeout))
    }

    async fn ping(&self) -> Result<bool, DriverError> {
        Ok(NetconfDevice::ping(self).await?)
    }

    async fn grains(&self) -> Result<Map<String, Value>, DriverError> {
        Ok(NetconfDevice::grains(self).await?)
    }

    fn netconf(&self) -> Option<&NetconfDevice> {
        Some(self)
    }
}
