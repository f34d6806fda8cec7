//! Device drivers: the closed set of protocols Drover speaks to devices, as one enum
//! that delegates with `match` (mini-redis's `Command`), its error type, and the
//! shared resources drivers are built from ([`DriverContext`]).

pub mod dummy;
pub mod http1;
pub mod ovsdb;
pub mod rest;
pub mod snmp;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::inventory::{DeviceSpec, DriverConfig};

/// Largest body accepted from a device; more is an error, not an allocation.
pub const MAX_DEVICE_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("device answered HTTP {0}")]
    Status(u16),
    #[error("device sent a malformed reply: {0}")]
    Decode(String),
    #[error("device reply over the {MAX_DEVICE_BODY}-byte limit")]
    TooLarge,
    #[error("{0} is not supported by this device")]
    Unsupported(&'static str),
    #[error("driver set-up failed: {0}")]
    Setup(String),
    #[error("{0}")]
    Snmp(#[from] snmp::SnmpError),
    #[error("{0}")]
    Ovsdb(#[from] ovsdb::OvsdbError),
}

impl DriverError {
    /// Bounded label for `drover_device_op_errors_total{error_kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            DriverError::Connect(_) => "connect",
            DriverError::Timeout(_) => "timeout",
            DriverError::Status(_) => "http_status",
            DriverError::Decode(_) => "decode",
            DriverError::TooLarge => "too_large",
            DriverError::Unsupported(_) => "unsupported",
            DriverError::Setup(_) => "setup",
            DriverError::Snmp(e) => e.kind(),
            DriverError::Ovsdb(e) => e.kind(),
        }
    }

    /// Whether this error says the device is unhealthy (counts towards `down`), as
    /// opposed to a request the device cannot serve.
    pub fn is_device_failure(&self) -> bool {
        match self {
            DriverError::Status(code) => *code >= 500,
            DriverError::Unsupported(_) => false,
            DriverError::Snmp(e) => e.is_device_failure(),
            DriverError::Ovsdb(e) => e.is_device_failure(),
            _ => true,
        }
    }
}

/// What a device can do beyond ping and grains; gates function availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Service,
    Pkg,
    Snmp,
    Ovs,
}

/// Shared, cheap-to-clone resources every driver is built from: one pooled HTTP client
/// for the whole fleet (and one that skips certificate checks, for devices that ask).
#[derive(Clone)]
pub struct DriverContext {
    http: reqwest::Client,
    http_insecure: reqwest::Client,
    /// Shared by every SNMP device; opened on first use so REST-only fleets do not
    /// start its thread.
    snmp: std::sync::Arc<std::sync::OnceLock<snmp::SnmpTransport>>,
}

/// UDP sockets shared by all SNMP devices of the fleet.
const SNMP_SOCKETS: usize = 4;

impl DriverContext {
    pub fn new() -> Result<DriverContext, DriverError> {
        Ok(DriverContext {
            http: rest::client_builder()
                .build()
                .map_err(|e| DriverError::Setup(e.to_string()))?,
            http_insecure: rest::client_builder()
                .danger_accept_invalid_certs(true)
                .build()
                .map_err(|e| DriverError::Setup(e.to_string()))?,
            snmp: Default::default(),
        })
    }

    fn snmp_transport(&self) -> Result<snmp::SnmpTransport, DriverError> {
        if let Some(t) = self.snmp.get() {
            return Ok(t.clone());
        }
        let t = snmp::SnmpTransport::new(SNMP_SOCKETS)
            .map_err(|e| DriverError::Setup(format!("SNMP sockets: {e}")))?;
        // Two devices built at once may both open one; the loser's is dropped.
        Ok(self.snmp.get_or_init(|| t).clone())
    }
}

/// A connected driver for one device.
#[derive(Clone)]
pub enum Driver {
    Rest(rest::RestDriver),
    Dummy(dummy::DummyDriver),
    Snmp(snmp::device::SnmpDevice),
    Ovs(ovsdb::OvsDevice),
}

impl Driver {
    pub fn build(
        spec: &DeviceSpec,
        default_timeout: Duration,
        ctx: &DriverContext,
    ) -> Result<Driver, DriverError> {
        let timeout = spec.timeout.unwrap_or(default_timeout);
        match &spec.driver {
            DriverConfig::Rest(cfg) => Ok(Driver::Rest(rest::RestDriver::new(cfg, timeout, ctx)?)),
            DriverConfig::Dummy(b) => Ok(Driver::Dummy(dummy::DummyDriver::new(*b))),
            DriverConfig::Snmp(cfg) => Ok(Driver::Snmp(snmp::device::SnmpDevice::new(
                cfg,
                timeout,
                ctx.snmp_transport()?,
            ))),
            DriverConfig::Ovs(cfg) => Ok(Driver::Ovs(ovsdb::OvsDevice::new(cfg, timeout))),
        }
    }

    /// This driver for background traffic (first contact, health checks), which
    /// should not hold connections open between checks; see [`rest::RestDriver::background`].
    pub fn background(&self) -> Driver {
        match self {
            Driver::Rest(d) => Driver::Rest(d.background()),
            other => other.clone(),
        }
    }

    pub fn proxytype(&self) -> &'static str {
        match self {
            Driver::Rest(_) => "rest_sample",
            Driver::Dummy(_) => "dummy",
            Driver::Snmp(_) => "snmp",
            Driver::Ovs(_) => "ovs",
        }
    }

    pub fn supports(&self, cap: Capability) -> bool {
        match self {
            Driver::Rest(_) => matches!(cap, Capability::Service | Capability::Pkg),
            Driver::Dummy(_) => cap == Capability::Service,
            Driver::Snmp(_) => cap == Capability::Snmp,
            Driver::Ovs(_) => cap == Capability::Ovs,
        }
    }

    /// Is the device answering? `Ok(false)` is a device that answered "no".
    pub async fn ping(&self) -> Result<bool, DriverError> {
        match self {
            Driver::Rest(d) => d.ping().await,
            Driver::Dummy(d) => d.ping().await,
            Driver::Snmp(d) => Ok(d.ping().await?),
            Driver::Ovs(d) => Ok(d.ping().await?),
        }
    }

    /// Grains the device reports about itself.
    pub async fn grains(&self) -> Result<Map<String, Value>, DriverError> {
        match self {
            Driver::Rest(d) => d.info().await,
            Driver::Dummy(d) => Ok(d.info()),
            Driver::Snmp(d) => Ok(d.grains().await?),
            Driver::Ovs(d) => Ok(d.grains().await?),
        }
    }

    pub async fn service_list(&self) -> Result<Value, DriverError> {
        match self {
            Driver::Rest(d) => d.get(&["service", "list"]).await,
            Driver::Dummy(d) => d.service("list", None).await,
            Driver::Snmp(_) | Driver::Ovs(_) => Err(DriverError::Unsupported("service")),
        }
    }

    /// `action` is one of start, stop, restart, status.
    pub async fn service_action(&self, action: &str, name: &str) -> Result<Value, DriverError> {
        match self {
            Driver::Rest(d) => d.get(&["service", action, name]).await,
            Driver::Dummy(d) => d.service(action, Some(name)).await,
            Driver::Snmp(_) | Driver::Ovs(_) => Err(DriverError::Unsupported("service")),
        }
    }

    pub async fn package_list(&self) -> Result<Value, DriverError> {
        match self {
            Driver::Rest(d) => d.get(&["package", "list"]).await,
            Driver::Dummy(_) | Driver::Snmp(_) | Driver::Ovs(_) => {
                Err(DriverError::Unsupported("pkg"))
            }
        }
    }

    pub async fn package_install(&self, name: &str, version: &str) -> Result<Value, DriverError> {
        match self {
            Driver::Rest(d) => d.get(&["package", "install", name, version]).await,
            Driver::Dummy(_) | Driver::Snmp(_) | Driver::Ovs(_) => {
                Err(DriverError::Unsupported("pkg"))
            }
        }
    }

    pub async fn package_remove(&self, name: &str) -> Result<Value, DriverError> {
        match self {
            Driver::Rest(d) => d.get(&["package", "remove", name]).await,
            Driver::Dummy(_) | Driver::Snmp(_) | Driver::Ovs(_) => {
                Err(DriverError::Unsupported("pkg"))
            }
        }
    }

    pub async fn package_status(&self, name: &str) -> Result<Value, DriverError> {
        match self {
            Driver::Rest(d) => d.get(&["package", "status", name]).await,
            Driver::Dummy(_) | Driver::Snmp(_) | Driver::Ovs(_) => {
                Err(DriverError::Unsupported("pkg"))
            }
        }
    }
}

impl Driver {
    /// The SNMP side of a device, for the `snmp.*` functions.
    pub fn snmp(&self) -> Result<&snmp::device::SnmpDevice, DriverError> {
        match self {
            Driver::Snmp(d) => Ok(d),
            _ => Err(DriverError::Unsupported("snmp")),
        }
    }
}

impl Driver {
    /// The Open vSwitch side of a device, for the `openvswitch.*` functions.
    pub fn ovs(&self) -> Result<&ovsdb::OvsDevice, DriverError> {
        match self {
            Driver::Ovs(d) => Ok(d),
            _ => Err(DriverError::Unsupported("openvswitch")),
        }
    }
}
