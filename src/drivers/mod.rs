//! Device drivers: the closed set of protocols Drover speaks to devices. Each driver
//! is one module that owns its inventory settings, their validation, its session and
//! what it can do; the `drivers!` list below is the one place that names them all,
//! and it generates the two enums ([`DriverConfig`], [`Driver`]) that delegate to
//! them with `match` (mini-redis's `Command`).
//!
//! Adding a driver: a module implementing [`DeviceDriver`] (and [`DriverSettings`]
//! for its config type), one line in the `drivers!` list, and rows in the function
//! table for the functions it brings. See ARCHITECTURE.md, "Adding a driver".

pub mod capability;
mod context;
pub mod dummy;
mod error;
pub mod http1;
pub mod netconf;
pub mod ovsdb;
pub mod rest;
pub mod snmp;

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use capability::{Capabilities, Capability, Packages, Services};
pub use context::DriverContext;
pub use error::{DeviceError, DriverError};

/// Largest body accepted from a device; more is an error, not an allocation.
pub const MAX_DEVICE_BODY: usize = 4 * 1024 * 1024;

/// A device's settings that serde cannot check alone: which key is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The inventory key, as the user wrote it (`auth_password`).
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// A driver's inventory settings: the keys of one device table other than `id`,
/// `proxytype`, `timeout` and `grains`, deserialised with `deny_unknown_fields` so a
/// key meant for another driver is refused by name.
pub trait DriverSettings: DeserializeOwned + std::fmt::Debug + Clone + PartialEq {
    /// Rules across keys, and paths relative to the inventory file's folder `base`.
    fn check(&mut self, base: &Path) -> Result<(), FieldError>;

    /// The device's IP address when its address is an IP literal (for `ipcidr`).
    fn address(&self) -> Option<IpAddr> {
        None
    }
}

/// One connected device of one driver: health, grains, and the capabilities it has.
/// Capability accessors default to "none", so a driver names only what it offers.
pub trait DeviceDriver: Capabilities + Clone + Send + Sync + Sized + 'static {
    type Settings: DriverSettings;

    fn build(
        settings: &Self::Settings,
        timeout: Duration,
        ctx: &DriverContext,
    ) -> Result<Self, DriverError>;

    /// Is the device answering? `Ok(false)` is a device that answered "no".
    fn ping(&self) -> impl Future<Output = Result<bool, DriverError>> + Send;

    /// Grains the device reports about itself.
    fn grains(&self) -> impl Future<Output = Result<Map<String, Value>, DriverError>> + Send;

    /// This driver for background traffic (first contact, health checks), which
    /// should not hold connections open between checks.
    fn background(&self) -> Self {
        self.clone()
    }
}

/// The one list of drivers: variant, proxytype name (then aliases), driver type.
macro_rules! drivers {
    ($( $(#[$doc:meta])* $variant:ident: $name:literal $(| $alias:literal)* => $driver:ty ),+ $(,)?) => {
        /// One device's driver settings, checked by the driver that owns them.
        #[derive(Debug, Clone, PartialEq)]
        pub enum DriverConfig {
            $( $(#[$doc])* $variant(<$driver as DeviceDriver>::Settings), )+
        }

        /// A connected driver for one device.
        #[derive(Clone)]
        pub enum Driver {
            $( $(#[$doc])* $variant($driver), )+
        }

        /// Every proxytype Drover knows, by its canonical name.
        pub const PROXYTYPES: &[&str] = &[$( $name ),+];

        /// Whether `name` is a proxytype Drover knows, canonical or alias.
        pub fn is_proxytype(name: &str) -> bool {
            matches!(name, $( $name $(| $alias)* )|+)
        }

        impl DriverConfig {
            /// The settings of a device declared with `proxytype`, from the rest of
            /// its table. Unknown keys, wrong types and failed checks name the key.
            pub fn from_table(
                proxytype: &str,
                table: Map<String, Value>,
                base: &Path,
            ) -> Result<DriverConfig, SettingsError> {
                match proxytype {
                    $( $name $(| $alias)* => Ok(DriverConfig::$variant(settings(table, base)?)), )+
                    other => Err(SettingsError::UnknownProxytype(other.to_owned())),
                }
            }

            /// The `proxytype` grain and the `driver` metric label.
            pub fn proxytype(&self) -> &'static str {
                match self { $( DriverConfig::$variant(_) => $name, )+ }
            }

            /// The device's IP address when it is an IP literal (for `ipcidr`).
            pub fn address(&self) -> Option<IpAddr> {
                match self { $( DriverConfig::$variant(s) => s.address(), )+ }
            }

            pub fn build(&self, timeout: Duration, ctx: &DriverContext) -> Result<Driver, DriverError> {
                match self {
                    $( DriverConfig::$variant(s) =>
                        Ok(Driver::$variant(<$driver as DeviceDriver>::build(s, timeout, ctx)?)), )+
                }
            }
        }

        impl Driver {
            pub fn proxytype(&self) -> &'static str {
                match self { $( Driver::$variant(_) => $name, )+ }
            }

            /// This driver for background traffic (first contact, health checks).
            pub fn background(&self) -> Driver {
                match self { $( Driver::$variant(d) => Driver::$variant(DeviceDriver::background(d)), )+ }
            }

            /// Is the device answering? `Ok(false)` is a device that answered "no".
            pub async fn ping(&self) -> Result<bool, DriverError> {
                match self { $( Driver::$variant(d) => DeviceDriver::ping(d).await, )+ }
            }

            /// Grains the device reports about itself.
            pub async fn grains(&self) -> Result<Map<String, Value>, DriverError> {
                match self { $( Driver::$variant(d) => DeviceDriver::grains(d).await, )+ }
            }

            /// What this device can do; asked by the capability accessors.
            fn capabilities(&self) -> &dyn Capabilities {
                match self { $( Driver::$variant(d) => d, )+ }
            }
        }
    };
}

drivers! {
    /// Salt's `rest_sample` REST API.
    Rest: "rest_sample" | "rest" => rest::RestDriver,
    /// An SNMP agent (v1, v2c, v3 USM).
    Snmp: "snmp" => snmp::device::SnmpDevice,
    /// An Open vSwitch host's ovsdb-server.
    Ovs: "ovs" => ovsdb::OvsDevice,
    /// A NETCONF server over SSH (RFC 6241, RFC 6242).
    Netconf: "netconf" => netconf::NetconfDevice,
    /// An in-process device for tests and overhead measurements.
    Dummy: "dummy" => dummy::DummyDriver,
}

/// Why a device table does not make driver settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown proxytype {0:?} (known: {known})", known = PROXYTYPES.join(", "))]
    UnknownProxytype(String),
    /// serde's message names the key (`unknown field `community``) and `path` where
    /// the key sits (`user` in a nested table), empty at the top.
    #[error("{source}")]
    Invalid {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}", .0.message)]
    Check(FieldError),
}

impl SettingsError {
    /// The key the problem is in, when one can be named.
    pub fn field(&self) -> Option<String> {
        match self {
            SettingsError::UnknownProxytype(_) => Some("proxytype".into()),
            SettingsError::Invalid { path, source } => {
                if !path.is_empty() && path != "." {
                    return Some(path.clone());
                }
                // serde reports an unknown or missing key at the table itself;
                // its message quotes the key in backticks.
                let msg = source.to_string();
                let start = msg.find('`')? + 1;
                let len = msg[start..].find('`')?;
                Some(msg[start..start + len].to_owned())
            }
            SettingsError::Check(e) => Some(e.field.to_owned()),
        }
    }
}

fn settings<S: DriverSettings>(table: Map<String, Value>, base: &Path) -> Result<S, SettingsError> {
    let mut s: S = serde_path_to_error::deserialize(Value::Object(table)).map_err(|e| {
        SettingsError::Invalid {
            path: e.path().to_string(),
            source: e.into_inner(),
        }
    })?;
    s.check(base).map_err(SettingsError::Check)?;
    Ok(s)
}

impl Driver {
    /// `Ok` when this device has `cap`, else the "not supported by" error.
    pub fn require(&self, cap: Capability) -> Result<(), DriverError> {
        if self.supports(cap) {
            Ok(())
        } else {
            Err(self.unsupported(cap))
        }
    }

    pub(super) fn unsupported(&self, capability: Capability) -> DriverError {
        DriverError::Unsupported {
            capability,
            proxytype: self.proxytype(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn every_proxytype_and_alias_builds_its_own_settings() {
        let rest = DriverConfig::from_table(
            "rest",
            table(json!({"url": "http://10.0.0.1/"})),
            Path::new(""),
        )
        .unwrap();
        assert_eq!(rest.proxytype(), "rest_sample");
        for name in PROXYTYPES {
            let e = DriverConfig::from_table(name, table(json!({"colour": 1})), Path::new(""))
                .unwrap_err();
            assert_eq!(e.field().as_deref(), Some("colour"), "{name}: {e}");
        }
        let e = DriverConfig::from_table("no-such-driver", Map::new(), Path::new("")).unwrap_err();
        for name in PROXYTYPES {
            assert!(e.to_string().contains(name), "{e}");
        }
        assert!(PROXYTYPES.contains(&"rest_sample") && PROXYTYPES.len() >= 5);
    }

    #[test]
    fn missing_capability_names_the_proxytype() {
        let cfg = DriverConfig::from_table("dummy", Map::new(), Path::new("")).unwrap();
        let ctx = DriverContext::new().unwrap();
        let d = cfg.build(Duration::from_secs(1), &ctx).unwrap();
        assert!(d.supports(Capability::Service));
        assert!(!d.supports(Capability::Pkg));
        let e = d.packages().err().unwrap();
        assert_eq!(e.to_string(), "pkg is not supported by proxytype dummy");
        assert!(!e.is_device_failure());
        assert_eq!(e.kind(), "unsupported");
    }
}
