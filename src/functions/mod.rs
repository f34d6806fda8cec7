//! Execution functions with Salt's names and return shapes (`test.ping`,
//! `grains.items`, `service.status`, ...). A device actor hands one [`Call`] here;
//! this module picks the function, checks its arguments and drives the device's
//! driver. Unknown names answer as Salt does: `'x.y' is not available.`

mod config;
mod event;
mod grains;
mod grains_set;
mod mine;
mod netconf;
mod openvswitch;
mod pillar;
mod pkg;
mod rest_sample;
mod saltutil;
mod schedule;
mod service;
mod snmp;
mod state;
mod sys;
mod table;
mod test;

use std::sync::Arc;

use serde_json::Value;

use crate::drivers::{Driver, DriverError};
use crate::events::EventSink;
use crate::fileserver::FileSource;
use crate::job::Job;
pub use table::{ArgSpec, Spec, FUNCTIONS};

pub use grains::traverse;

/// One function call on one device: everything the function may look at.
pub struct Call {
    pub id: Arc<str>,
    pub driver: Driver,
    /// The device's grains, always a JSON object.
    pub grains: Arc<Value>,
    /// The device's pillar from its master, always a JSON object (empty without one).
    pub pillar: Arc<Value>,
    /// Where events and requests for the master go (`event.send`,
    /// `saltutil.refresh_pillar`).
    pub events: EventSink,
    /// Saved grains and schedules of every device (`grains.setval`, `schedule.add`).
    pub minions: Arc<crate::minion_state::MinionState>,
    /// Where SLS files come from (`state.*`): the master's file server, if any.
    pub files: Option<Arc<dyn FileSource>>,
    pub job: Arc<Job>,
}

impl Call {
    /// Another function on the same device, in the same job (a mine function, a
    /// state's `module.run` or `salt[...]` call).
    pub fn sub(&self, fun: &str, arg: Vec<Value>, kwarg: serde_json::Map<String, Value>) -> Call {
        Call {
            id: self.id.clone(),
            driver: self.driver.clone(),
            grains: self.grains.clone(),
            pillar: self.pillar.clone(),
            events: self.events.clone(),
            minions: self.minions.clone(),
            files: self.files.clone(),
            job: Arc::new(Job {
                jid: self.job.jid.clone(),
                fun: fun.to_owned(),
                args: crate::job::Args { arg, kwarg },
            }),
        }
    }
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
    /// What a Salt minion answers when a function raises (`test.exception`,
    /// `pillar.keys` of a missing key): the Python exception's class and message.
    #[error("The minion function caused an exception: {class}: {message}")]
    Raised {
        class: &'static str,
        message: String,
    },
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
            FunctionError::Raised { .. } => "exception",
            FunctionError::Driver(e) => e.kind(),
        }
    }

    /// Whether the device itself failed (as opposed to the request being wrong).
    pub fn is_device_failure(&self) -> bool {
        matches!(self, FunctionError::Driver(e) if e.is_device_failure())
    }
}

/// What a function gives back: its return and Salt's retcode for it (0 unless the
/// function sets one, as `test.retcode` does, or its dict says `result: False`).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub ret: Value,
    pub retcode: i32,
    /// Grains the device just reported (`saltutil.refresh_grains`), for the device
    /// actor to apply.
    pub fresh_grains: Option<serde_json::Map<String, Value>>,
    /// The device's saved grains changed (`grains.setval`): its grains are composed
    /// again.
    pub grains_changed: bool,
}

impl From<Value> for Output {
    fn from(ret: Value) -> Output {
        Output {
            ret,
            retcode: 0,
            fresh_grains: None,
            grains_changed: false,
        }
    }
}

/// The functions this driver offers, sorted.
pub fn available(driver: &Driver) -> impl Iterator<Item = &'static Spec> + '_ {
    FUNCTIONS
        .iter()
        .filter(|s| s.needs.is_none_or(|c| driver.supports(c)))
}

/// Runs the call. Device errors come back as `Err`, never as a panic.
pub async fn execute(call: Call) -> Result<Output, FunctionError> {
    let fun = call.job.fun.as_str();
    let Some(spec) = table::spec(fun) else {
        return Err(FunctionError::NotAvailable(fun.to_owned()));
    };
    if let Some(cap) = spec.needs {
        if let Err(source) = call.driver.require(cap) {
            return Err(FunctionError::NotSupported {
                fun: fun.to_owned(),
                source,
            });
        }
    }
    let (module, name) = fun.split_once('.').unwrap_or((fun, ""));
    let out: Output = match module {
        "test" => return test::run(name, &call).await,
        "grains" => match name {
            "setval" | "setvals" | "append" | "remove" | "set" | "delval" | "delkey" => {
                grains_set::run(name, &call)?
            }
            _ => grains::run(name, &call)?.into(),
        },
        "service" => service::run(name, &call).await?.into(),
        "pkg" => pkg::run(name, &call).await?.into(),
        "sys" => sys::run(name, &call)?.into(),
        "mine" => mine::run(name, &call).await?.into(),
        "schedule" => schedule::run(name, &call)?,
        "snmp" => snmp::run(name, &call).await?.into(),
        "openvswitch" => openvswitch::run(name, &call).await?.into(),
        "rest_sample" => rest_sample::run(name, &call).await?.into(),
        "saltutil" => saltutil::run(name, &call).await?,
        "pillar" => pillar::run(name, &call)?.into(),
        "config" => config::run(name, &call)?.into(),
        "event" => event::run(name, &call)?.into(),
        "netconf" => netconf::run(name, &call).await?.into(),
        "state" => state::run(name, &call).await?,
        _ => return Err(FunctionError::NotAvailable(fun.to_owned())),
    };
    Ok(with_result_retcode(out))
}

/// As a Salt minion does: a dict return whose `result` or `success` is false makes
/// retcode 1 when the function set none.
fn with_result_retcode(mut out: Output) -> Output {
    if out.retcode == 0 {
        if let Value::Object(m) = &out.ret {
            let falsy = |k: &str| matches!(m.get(k), Some(Value::Bool(false)));
            if falsy("result") || falsy("success") {
                out.retcode = 1;
            }
        }
    }
    out
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

impl ArgReader<'_> {
    /// Salt's `get(key, default='', ..., delimiter=':')`: the key, the default (`''`)
    /// and the delimiter at `delim_pos`, for `grains.get`, `pillar.get`, `config.get`.
    pub(crate) fn key_default_delimiter(
        &self,
        delim_pos: usize,
    ) -> Result<(String, Value, String), FunctionError> {
        let key = self.string(0, "key")?;
        let default = self
            .opt(1, "default")
            .cloned()
            .unwrap_or(Value::String(String::new()));
        let delim = self
            .opt_string(delim_pos, "delimiter")?
            .unwrap_or_else(|| ":".into());
        Ok((key, default, delim))
    }

    /// A boolean argument; YAML gives real booleans, other clients may send text.
    pub(crate) fn flag(
        &self,
        pos: usize,
        name: &str,
        default: bool,
    ) -> Result<bool, FunctionError> {
        let bad =
            || FunctionError::InvalidArgs(format!("{}(): '{name}' must be a boolean", self.fun));
        match self.opt(pos, name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Number(n)) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(true),
                "false" | "no" | "off" | "0" | "" => Ok(false),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
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

/// The Salt outputter for a function's return (`highstate` for state runs), which a
/// Salt master's CLI reads from the return's `out`.
pub fn outputter(fun: &str) -> Option<&'static str> {
    state::outputter(fun)
}

/// The function name as a bounded metric label: known names as they are, anything a
/// master made up as `other`.
pub fn metric_label(fun: &str) -> &'static str {
    table::spec(fun).map_or("other", |s| s.name)
}
