//! The `event` module's ways to the master's bus: `event.send` and
//! `event.fire_master`. The master fires what a minion's `_minion_event` load
//! carries, so the data a reactor sees is the same dict (`id`, `tag`, `data`, `cmd`,
//! `pretag`) as from a salt-minion; Drover batches these loads, bounded, on the way.

use serde_json::{json, Map, Value};

use super::{ArgReader, Call, FunctionError};
use crate::events::FleetEvent;

pub(super) fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let args = ArgReader::new(call);
    let (tag, data) = match name {
        // fire_master(data, tag, preload=None)
        "fire_master" => (args.string(1, "tag")?, args.required(0, "data")?.clone()),
        // send(tag, data=None, preload=None, with_env=False, with_grains=False,
        //      with_pillar=False, with_env_opts=False, **kwargs)
        "send" => {
            let tag = args.string(0, "tag")?;
            let mut data = Map::new();
            let flag = |k: &str| call.job.args.kwarg.get(k).is_some_and(truthy);
            if flag("with_grains") {
                data.insert("grains".into(), (*call.grains).clone());
            }
            if flag("with_pillar") {
                data.insert("pillar".into(), (*call.pillar).clone());
            }
            for (k, v) in &call.job.args.kwarg {
                if !matches!(
                    k.as_str(),
                    "tag"
                        | "data"
                        | "preload"
                        | "with_env"
                        | "with_grains"
                        | "with_pillar"
                        | "with_env_opts"
                        | "timeout"
                ) && !k.starts_with("__")
                {
                    data.insert(k.clone(), v.clone());
                }
            }
            if let Some(Value::Object(given)) = args.opt(1, "data") {
                data.extend(given.clone());
            }
            (tag, Value::Object(data))
        }
        _ => return Err(FunctionError::NotAvailable(format!("event.{name}"))),
    };
    if tag.is_empty() {
        return Err(FunctionError::InvalidArgs(
            "event: 'tag' is required".into(),
        ));
    }
    let load = json!({
        "id": &*call.id,
        "tag": tag,
        "data": data,
        "cmd": "_minion_event",
        "pretag": null,
    });
    let seen = call.events.send(FleetEvent::Fire {
        id: call.id.clone(),
        tag,
        data: load,
    });
    // As Salt's: True once handed to the channel; False when there is no master.
    Ok(Value::Bool(seen))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "False" && s != "false",
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}
