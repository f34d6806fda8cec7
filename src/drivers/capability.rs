//! What a device can do beyond ping and grains, as interfaces the functions ask a
//! driver for: a driver that has a capability returns itself from the matching
//! accessor of [`Capabilities`], and one that lacks it needs no code at all. Adding a
//! capability is one line in the `capabilities!` list.

use futures::future::BoxFuture;
use serde_json::Value;

use super::DriverError;

/// The one list of capabilities: variant, name (in "not supported by" errors), the
/// accessor, and what it gives. It generates [`Capability`], the [`Capabilities`]
/// accessors (each `None` unless a driver overrides it) and, on
/// [`super::Driver`], one method per capability that answers the capability or a
/// clear "not supported by proxytype X".
macro_rules! capabilities {
    ($( $(#[$doc:meta])* $variant:ident: $name:literal, $accessor:ident -> $ty:ty ),+ $(,)?) => {
        /// A capability's name, for function availability and for errors.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Capability {
            $( $(#[$doc])* $variant, )+
        }

        impl Capability {
            pub fn name(self) -> &'static str {
                match self { $( Capability::$variant => $name, )+ }
            }
        }

        /// What a device can do beyond ping and grains. A driver overrides the
        /// accessors of what it has, returning itself; the rest stay `None`.
        pub trait Capabilities {
            $( $(#[$doc])* fn $accessor(&self) -> Option<&$ty> { None } )+
        }

        impl super::Driver {
            $(
                $(#[$doc])*
                pub fn $accessor(&self) -> Result<&$ty, DriverError> {
                    self.capabilities()
                        .$accessor()
                        .ok_or_else(|| self.unsupported(Capability::$variant))
                }
            )+

            /// Whether this device has `cap`: asked of the driver, never listed.
            pub fn supports(&self, cap: Capability) -> bool {
                match cap { $( Capability::$variant => self.capabilities().$accessor().is_some(), )+ }
            }
        }
    };
}

capabilities! {
    /// Services on the device (`service.*`).
    Service: "service", services -> dyn Services,
    /// Packages on the device (`pkg.*`).
    Pkg: "pkg", packages -> dyn Packages,
    /// An SNMP agent's operations (`snmp.*`).
    Snmp: "snmp", snmp -> super::snmp::device::SnmpDevice,
    /// An OVSDB session (`openvswitch.*`).
    Ovs: "openvswitch", ovs -> super::ovsdb::OvsDevice,
    /// Salt's `rest_sample` API itself (`rest_sample.*`).
    RestSample: "rest_sample", rest_sample -> super::rest::RestDriver,
    /// A NETCONF session (`netconf.*`).
    Netconf: "netconf", netconf -> super::netconf::NetconfDevice,
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
