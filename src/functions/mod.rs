//! Execution functions with Salt's names and return shapes (`test.ping`,
//! `grains.items`, `service.status`, ...). A device actor hands one [`Call`] here;
//! this module picks the function, checks its arguments and drives the device's
//! driver. Unknown names answer as Salt does: `'x.y' is not available.`

mod grains;
mod netconf;
mod openvswitch;
mod pkg;
mod service;
mod snmp;
mod sys;
mod test;

use std::sync::Arc;

use serde_json::Value;

use crate::drivers::{Capability, Driver, DriverError};
use crate::job::Job;

pub use grains::traverse;

/// One function call on one device: everything the function may look at.
pub struct Call {
    pub id: Arc<str>,
    pub driver: Driver,
    /// The device's grains, always a JSON object.
    pub grains: Arc<Value>,
    pub job: Arc<Job>,
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("'{0}' is not available.")]
    NotAvailable(String),
    /// A known function this device's driver lacks the capability for.
    #[error("'{fun}' is not available: {source}.")]
    NotSupported {
        fun: String,
        #[source]
        source: DriverError,
    },
    #[error("Passed invalid arguments: {0}")]
    InvalidArgs(String),
    #[error("{0}")]
    Driver(#[from] DriverError),
}

impl FunctionError {
    /// Bounded label for `drover_device_op_errors_total{error_kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            FunctionError::NotAvailable(_) => "not_available",
            FunctionError::NotSupported { .. } => "unsupported",
            FunctionError::InvalidArgs(_) => "invalid_args",
            FunctionError::Driver(e) => e.kind(),
        }
    }

    /// Whether the device itself failed (as opposed to the request being wrong).
    pub fn is_device_failure(&self) -> bool {
        matches!(self, FunctionError::Driver(e) if e.is_device_failure())
    }
}

/// Every function name, with what the device must support for it to exist.
const FUNCTIONS: &[(&str, Option<Capability>)] = &[
    ("grains.get", None),
    ("grains.item", None),
    ("grains.items", None),
    ("grains.ls", None),
    ("netconf.capabilities", Some(Capability::Netconf)),
    ("netconf.commit", Some(Capability::Netconf)),
    ("netconf.discard_changes", Some(Capability::Netconf)),
    ("netconf.edit_config", Some(Capability::Netconf)),
    ("netconf.get", Some(Capability::Netconf)),
    ("netconf.get_config", Some(Capability::Netconf)),
    ("netconf.lock", Some(Capability::Netconf)),
    ("netconf.managed", Some(Capability::Netconf)),
    ("netconf.rpc", Some(Capability::Netconf)),
    ("netconf.unlock", Some(Capability::Netconf)),
    ("netconf.validate", Some(Capability::Netconf)),
    ("openvswitch.bridge_create", Some(Capability::Ovs)),
    ("openvswitch.bridge_delete", Some(Capability::Ovs)),
    ("openvswitch.bridge_exists", Some(Capability::Ovs)),
    ("openvswitch.bridge_list", Some(Capability::Ovs)),
    ("openvswitch.bridge_to_parent", Some(Capability::Ovs)),
    ("openvswitch.bridge_to_vlan", Some(Capability::Ovs)),
    ("openvswitch.db_get", Some(Capability::Ovs)),
    ("openvswitch.db_set", Some(Capability::Ovs)),
    ("openvswitch.interface_get_options", Some(Capability::Ovs)),
    ("openvswitch.interface_get_type", Some(Capability::Ovs)),
    ("openvswitch.interface_stats", Some(Capability::Ovs)),
    ("openvswitch.port_add", Some(Capability::Ovs)),
    ("openvswitch.port_create_gre", Some(Capability::Ovs)),
    ("openvswitch.port_create_vlan", Some(Capability::Ovs)),
    ("openvswitch.port_create_vxlan", Some(Capability::Ovs)),
    ("openvswitch.port_get_tag", Some(Capability::Ovs)),
    ("openvswitch.port_list", Some(Capability::Ovs)),
    ("openvswitch.port_remove", Some(Capability::Ovs)),
    ("pkg.install", Some(Capability::Pkg)),
    ("pkg.list_pkgs", Some(Capability::Pkg)),
    ("pkg.remove", Some(Capability::Pkg)),
    ("pkg.version", Some(Capability::Pkg)),
    ("service.list", Some(Capability::Service)),
    ("service.restart", Some(Capability::Service)),
    ("service.start", Some(Capability::Service)),
    ("service.status", Some(Capability::Service)),
    ("service.stop", Some(Capability::Service)),
    ("snmp.bulkwalk", Some(Capability::Snmp)),
    ("snmp.get", Some(Capability::Snmp)),
    ("snmp.get_next", Some(Capability::Snmp)),
    ("snmp.interfaces", Some(Capability::Snmp)),
    ("snmp.set", Some(Capability::Snmp)),
    ("snmp.walk", Some(Capability::Snmp)),
    ("sys.list_functions", None),
    ("test.echo", None),
    ("test.ping", None),
    ("test.sleep", None),
    ("test.version", None),
];

/// The functions this driver offers, sorted.
pub fn available(driver: &Driver) -> Vec<&'static str> {
    FUNCTIONS
        .iter()
        .filter(|(_, cap)| cap.is_none_or(|c| driver.supports(c)))
        .map(|(name, _)| *name)
        .collect()
}

/// Runs the call. Device errors come back as `Err`, never as a panic.
pub async fn execute(call: Call) -> Result<Value, FunctionError> {
    let fun = call.job.fun.as_str();
    let Some((_, need)) = FUNCTIONS.iter().find(|(name, _)| *name == fun) else {
        return Err(FunctionError::NotAvailable(fun.to_owned()));
    };
    if let Some(cap) = need {
        if let Err(source) = call.driver.require(*cap) {
            return Err(FunctionError::NotSupported {
                fun: fun.to_owned(),
                source,
            });
        }
    }
    let (module, name) = fun.split_once('.').unwrap_or((fun, ""));
    match module {
        "test" => test::run(name, &call).await,
        "grains" => grains::run(name, &call),
        "service" => service::run(name, &call).await,
        "pkg" => pkg::run(name, &call).await,
        "sys" => sys::run(name, &call),
        "snmp" => snmp::run(name, &call).await,
        "openvswitch" => openvswitch::run(name, &call).await,
        "netconf" => netconf::run(name, &call).await,
        _ => Err(FunctionError::NotAvailable(fun.to_owned())),
    }
}

/// Positional-or-keyword argument access, as Python binds `def f(name, ...)`.
pub(crate) struct ArgReader<'a> {
    fun: &'a str,
    call: &'a Call,
}

impl<'a> ArgReader<'a> {
    pub(crate) fn new(call: &'a Call) -> Self {
        ArgReader {
            fun: &call.job.fun,
            call,
        }
    }

    pub(crate) fn opt(&self, pos: usize, name: &str) -> Option<&'a Value> {
        self.call
            .job
            .args
            .arg
            .get(pos)
            .or_else(|| self.call.job.args.kwarg.get(name))
    }

    pub(crate) fn required(&self, pos: usize, name: &str) -> Result<&'a Value, FunctionError> {
        self.opt(pos, name).ok_or_else(|| {
            FunctionError::InvalidArgs(format!(
                "{}() missing 1 required positional argument: '{name}'",
                self.fun
            ))
        })
    }

    /// A string argument; numbers and booleans arrive YAML-typed, so take their text.
    pub(crate) fn string(&self, pos: usize, name: &str) -> Result<String, FunctionError> {
        as_text(self.required(pos, name)?).ok_or_else(|| {
            FunctionError::InvalidArgs(format!("{}(): '{name}' must be a string", self.fun))
        })
    }

    pub(crate) fn opt_string(
        &self,
        pos: usize,
        name: &str,
    ) -> Result<Option<String>, FunctionError> {
        match self.opt(pos, name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => as_text(v).map(Some).ok_or_else(|| {
                FunctionError::InvalidArgs(format!("{}(): '{name}' must be a string", self.fun))
            }),
        }
    }
}

pub(crate) fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True".into() } else { "False".into() }),
        _ => None,
    }
}

/// The function name as a bounded metric label: known names as they are, anything a
/// master made up as `other`.
pub fn metric_label(fun: &str) -> &'static str {
    FUNCTIONS
        .iter()
        .find(|(name, _)| *name == fun)
        .map(|(name, _)| *name)
        .unwrap_or("other")
}
