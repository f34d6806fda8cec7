//! The `state` functions (`state.apply`, `state.sls`, `state.highstate`,
//! `state.single`, `state.test`, `state.show_sls`, `state.show_lowstate`,
//! `state.show_top`): this device as the state system's [`Host`], and Salt's return
//! shapes and retcodes around `crate::states`.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::{as_text, ArgReader, Call, FunctionError, Output};
use crate::fileserver::FileSource;
use crate::states::{self, Host, Opts, StateError};

/// Functions whose return the Salt CLI prints with the `highstate` outputter (Salt's
/// `modules/state.py: __outputter__`).
pub(crate) fn outputter(fun: &str) -> Option<&'static str> {
    matches!(
        fun,
        "state.apply" | "state.sls" | "state.highstate" | "state.single" | "state.test"
    )
    .then_some("highstate")
}

struct DeviceHost<'a> {
    call: &'a Call,
}

impl Host for DeviceHost<'_> {
    fn id(&self) -> &str {
        &self.call.id
    }

    fn grains(&self) -> Arc<Value> {
        self.call.grains.clone()
    }

    fn pillar(&self) -> Arc<Value> {
        self.call.pillar.clone()
    }

    fn files(&self) -> Option<&dyn FileSource> {
        self.call.files.as_deref()
    }

    fn call<'a>(
        &'a self,
        fun: &'a str,
        arg: Vec<Value>,
        kwarg: Map<String, Value>,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            // A state run that starts another would recurse without end.
            if fun.starts_with("state.") {
                return Err(format!("'{fun}' cannot be called from inside a state run"));
            }
            let c = self.call;
            let sub = c.sub(fun, arg, kwarg);
            super::execute(sub)
                .await
                .map(|o| o.ret)
                .map_err(|e| e.to_string())
        })
    }
}

/// `mods`: `a,b` or a list.
fn mods(args: &ArgReader<'_>) -> Vec<String> {
    match args.opt(0, "mods") {
        Some(Value::Array(a)) => a.iter().filter_map(as_text).collect(),
        Some(v) => as_text(v)
            .map(|s| {
                s.split(',')
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

fn opts(call: &Call, args: &ArgReader<'_>, test: bool) -> Result<Opts, FunctionError> {
    if call.job.args.kwarg.contains_key("pillar") {
        return Err(FunctionError::InvalidArgs(
            "pillar= overrides are not supported by Drover's state runs".into(),
        ));
    }
    Ok(Opts {
        test: test || args.flag(usize::MAX, "test", false)?,
        saltenv: args
            .opt_string(usize::MAX, "saltenv")?
            .unwrap_or_else(|| "base".into()),
        failhard: args.flag(usize::MAX, "failhard", false)?,
    })
}

fn failed(e: &StateError) -> Output {
    Output {
        ret: e.to_return(),
        retcode: 1,
        fresh_grains: None,
        grains_changed: false,
    }
}

fn outcome(o: states::Outcome) -> Output {
    Output {
        ret: o.ret,
        retcode: o.retcode,
        fresh_grains: None,
        grains_changed: false,
    }
}

async fn apply(host: &DeviceHost<'_>, mods: &[String], opts: &Opts) -> Output {
    match states::compile(host, mods, opts).await {
        Ok(c) if c.chunks.is_empty() && mods.is_empty() => outcome(states::no_top_match()),
        Ok(c) => outcome(states::execute(host, &c, opts).await),
        Err(e) => failed(&e),
    }
}

pub(super) async fn run(name: &str, call: &Call) -> Result<Output, FunctionError> {
    let args = ArgReader::new(call);
    let host = DeviceHost { call };
    Ok(match name {
        "apply" | "test" => {
            let o = opts(call, &args, name == "test")?;
            apply(&host, &mods(&args), &o).await
        }
        "highstate" => apply(&host, &[], &opts(call, &args, false)?).await,
        "sls" => {
            let m = mods(&args);
            if m.is_empty() {
                return Err(FunctionError::InvalidArgs(
                    "state.sls() missing 1 required positional argument: 'mods'".into(),
                ));
            }
            apply(&host, &m, &opts(call, &args, false)?).await
        }
        "show_top" => match states::show_top(&host, &opts(call, &args, false)?).await {
            Ok(v) => v.into(),
            Err(e) => failed(&e),
        },
        "show_sls" | "show_lowstate" => {
            let m = mods(&args);
            if name == "show_sls" && m.is_empty() {
                return Err(FunctionError::InvalidArgs(
                    "state.show_sls() missing 1 required positional argument: 'mods'".into(),
                ));
            }
            let o = opts(call, &args, false)?;
            let m = if name == "show_lowstate" {
                Vec::new()
            } else {
                m
            };
            match states::compile(&host, &m, &o).await {
                Ok(c) if name == "show_sls" => Value::Object(c.high).into(),
                Ok(c) => serde_json::to_value(&c.chunks)
                    .unwrap_or(Value::Null)
                    .into(),
                Err(e) => failed(&e),
            }
        }
        "single" => {
            let fun = args.string(0, "fun")?;
            let mut kw: Map<String, Value> = call
                .job
                .args
                .kwarg
                .iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "test" | "saltenv" | "failhard") && !k.starts_with("__")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(n) = call.job.args.arg.get(1) {
                kw.insert("name".into(), n.clone());
            }
            match states::single(&host, &fun, kw, &opts(call, &args, false)?).await {
                Ok(o) => outcome(o),
                Err(e) => failed(&e),
            }
        }
        _ => return Err(FunctionError::NotAvailable(format!("state.{name}"))),
    })
}
