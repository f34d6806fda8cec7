//! State modules: Salt's state functions for what Drover manages, with Salt's names,
//! arguments, comments and `changes` shapes. Each one drives the device through its
//! execution functions ([`Host::call`]), as Salt's states call `__salt__`, so a
//! device without the capability answers with the function's own "not available".

mod module;
mod ovs;
mod pkg;
mod service;
mod snmp;
mod test;

use serde_json::{Map, Value};

use super::compile::Chunk;
use super::Host;
use crate::functions::as_text;

/// What a state function hands back before the executor adds `__id__` and friends.
#[derive(Debug, Clone, Default)]
pub(crate) struct StateRet {
    pub name: String,
    /// `None`: test mode, a change is pending.
    pub result: Option<bool>,
    pub changes: Map<String, Value>,
    pub comment: String,
    /// Extra keys (`warnings`, `__state_ran__`).
    pub extra: Map<String, Value>,
}

impl StateRet {
    fn new(name: &str) -> StateRet {
        StateRet {
            name: name.to_owned(),
            result: Some(true),
            ..StateRet::default()
        }
    }

    fn failed(name: &str, comment: impl Into<String>) -> StateRet {
        StateRet {
            name: name.to_owned(),
            result: Some(false),
            comment: comment.into(),
            ..StateRet::default()
        }
    }
}

/// The device and the mode a state runs in.
pub(crate) struct Ctx<'a> {
    pub host: &'a dyn Host,
    pub test: bool,
}

impl Ctx<'_> {
    /// An execution function with positional arguments.
    async fn call(&self, fun: &str, arg: Vec<Value>) -> Result<Value, String> {
        self.host.call(fun, arg, Map::new()).await
    }

    async fn call_kw(
        &self,
        fun: &str,
        arg: Vec<Value>,
        kw: Map<String, Value>,
    ) -> Result<Value, String> {
        self.host.call(fun, arg, kw).await
    }
}

/// A chunk's arguments, read as a Python state function binds them.
pub(crate) struct Args<'a> {
    chunk: &'a Chunk,
}

impl<'a> Args<'a> {
    fn name(&self) -> &'a str {
        &self.chunk.name
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.chunk.args.get(key).filter(|v| !v.is_null())
    }

    fn text(&self, key: &str) -> Option<String> {
        self.get(key).and_then(as_text)
    }

    fn required(&self, key: &str) -> Result<String, String> {
        self.text(key).ok_or_else(|| {
            format!(
                "Missing parameter {key} for state {}.{}",
                self.chunk.state, self.chunk.fun
            )
        })
    }

    fn flag(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => {
                matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1")
            }
            Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            _ => default,
        }
    }
}

/// Runs one chunk's state function.
pub(crate) async fn call(ctx: &Ctx<'_>, chunk: &Chunk) -> StateRet {
    let args = Args { chunk };
    let res = match chunk.state.as_str() {
        "test" => test::run(ctx, &chunk.fun, &args),
        "service" => service::run(ctx, &chunk.fun, &args).await,
        "pkg" => pkg::run(ctx, &chunk.fun, &args).await,
        "openvswitch_bridge" | "openvswitch_port" | "openvswitch_db" => {
            ovs::run(ctx, &chunk.state, &chunk.fun, &args).await
        }
        "snmp" => snmp::run(ctx, &chunk.fun, &args).await,
        "module" => module::run(ctx, &chunk.fun, &args).await,
        "netconf" => module::netconf(ctx, &chunk.fun, &args).await,
        _ => None,
    };
    match res {
        Some(Ok(r)) => r,
        Some(Err(e)) => StateRet::failed(
            &chunk.name,
            format!("An exception occurred in this state: {e}"),
        ),
        None => StateRet::failed(
            &chunk.name,
            format!(
                "State '{}.{}' was not found in SLS '{}'\nReason: '{}.{}' is not available.\n",
                chunk.state, chunk.fun, chunk.sls, chunk.state, chunk.fun
            ),
        ),
    }
}

/// Whether `watch` on this module calls `mod_watch` (otherwise it acts as `require`).
pub(crate) fn has_mod_watch(state: &str) -> bool {
    matches!(state, "service" | "test")
}

/// `<module>.mod_watch` with `sfun` = the chunk's function.
pub(crate) async fn mod_watch(ctx: &Ctx<'_>, chunk: &Chunk) -> StateRet {
    let args = Args { chunk };
    let res = match chunk.state.as_str() {
        "service" => service::mod_watch(ctx, &chunk.fun, &args).await,
        "test" => Ok(test::mod_watch(&args)),
        _ => return call(ctx, chunk).await,
    };
    res.unwrap_or_else(|e| {
        StateRet::failed(
            &chunk.name,
            format!("An exception occurred in this state: {e}"),
        )
    })
}
