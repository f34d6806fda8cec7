//! What a device can do beyond ping and grains, as interfaces the functions ask a
//! driver for: a driver that has a capability returns itself from the matching
//! accessor of [`super::DeviceDriver`], and one that lacks it needs no code at all.

use futures::future::BoxFuture;
use serde_json::Value;

use super::DriverError;

/// A capability's name, for function availability and for "not supported by" errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Service,
    Pkg,
    Snmp,
    Ovs,
    Netconf,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::Service => "service",
            Capability::Pkg => "pkg",
            Capability::Snmp => "snmp",
            Capability::Ovs => "openvswitch",
            Capability::Netconf => "netconf",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Services on the device, in the shapes of Salt's `rest_sample` proxy answers.
pub trait Services: Send + Sync {
    fn service_list(&self) -> BoxFuture<'_, Result<Value, DriverError>>;

    /// `action` is one of start, stop, restart, status.
    fn service_action<'a>(
        &'a self,
        action: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, DriverError>>;
}

/// Packages on the device, in the shapes of Salt's `rest_sample` proxy answers.
pub trait Packages: Send + Sync {
    fn package_list(&self) -> BoxFuture<'_, Result<Value, DriverError>>;

    fn package_install<'a>(
        &'a self,
        name: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Value, DriverError>>;

    fn package_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, DriverError>>;

    fn package_status<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, DriverError>>;
}
