//! The grains setters: `grains.setval`, `setvals`, `append`, `remove`, `set`,
//! `delval` and `delkey`, with the arguments, returns and error strings of Salt's
//! `salt/modules/grains.py`. What they set is saved per device (Salt's grains file,
//! here [`crate::minion_state`]) and composed over the device's own grains.

use serde_json::{Map, Value};

use super::{grains::traverse, ArgReader, Call, FunctionError, Output};
use crate::minion_state::Doc;
use crate::pyrepr::py_str;

pub(super) fn run(name: &str, call: &Call) -> Result<Output, FunctionError> {
    let args = ArgReader::new(call);
    match name {
        "setval" => {
            let key = args.string(0, "key")?;
            let val = args.opt(1, "val").cloned().unwrap_or(Value::Null);
            let destructive = args.flag(2, "destructive", false)?;
            let mut one = Map::new();
            one.insert(key, val);
            setvals(call, one, destructive)
        }
        "setvals" => {
            let Some(Value::Object(grains)) = args.opt(0, "grains") else {
                return Err(FunctionError::Raised {
                    class: "SaltException",
                    message: "setvals grains must be a dictionary.".into(),
                });
            };
            let destructive = args.flag(1, "destructive", false)?;
            setvals(call, grains.clone(), destructive)
        }
        "append" | "remove" => {
            let key = args.string(0, "key")?;
            let val = args.required(1, "val")?.clone();
            let (convert, delim_pos) = if name == "append" {
                (args.flag(2, "convert", false)?, 3)
            } else {
                (false, 2)
            };
            let delim = args
                .opt_string(delim_pos, "delimiter")?
                .unwrap_or_else(|| ":".into());
            let grains = call.grains.as_object().cloned().unwrap_or_default();
            let mut list = match traverse(&grains, &key, &delim).cloned() {
                None => Value::Array(Vec::new()),
                Some(v) => v,
            };
            if convert && !list.is_array() {
                list = match list {
                    Value::Null => Value::Array(Vec::new()),
                    v => Value::Array(vec![v]),
                };
            }
            let Value::Array(mut items) = list else {
                return Ok(Value::String(format!("The key {key} is not a valid list")).into());
            };
            if name == "append" {
                if items.contains(&val) {
                    return Ok(Value::String(format!(
                        "The val {} was already in the list {key}",
                        py_str(&val)
                    ))
                    .into());
                }
                match val {
                    Value::Array(more) => items.extend(more),
                    v => items.push(v),
                }
            } else {
                let Some(at) = items.iter().position(|i| *i == val) else {
                    return Ok(Value::String(format!(
                        "The val {} was not in the list {key}",
                        py_str(&val)
                    ))
                    .into());
                };
                items.remove(at);
            }
            let (top, value) = rebuild(&grains, &key, &delim, Value::Array(items));
            let mut one = Map::new();
            one.insert(top, value);
            setvals(call, one, false)
        }
        "set" => {
            let key = args.string(0, "key")?;
            let val = args
                .opt(1, "val")
                .cloned()
                .unwrap_or(Value::String(String::new()));
            let force = args.flag(2, "force", false)?;
            let destructive = args.flag(3, "destructive", false)?;
            let delim = args
                .opt_string(4, "delimiter")?
                .unwrap_or_else(|| ":".into());
            set(call, &key, val, force, destructive, &delim)
        }
        "delval" | "delkey" => {
            let key = args.string(0, "key")?;
            let (destructive, force) = if name == "delval" {
                (
                    args.flag(1, "destructive", false)?,
                    args.flag(2, "force", false)?,
                )
            } else {
                (true, args.flag(1, "force", false)?)
            };
            set(call, &key, Value::Null, force, destructive, ":")
        }
        _ => Err(FunctionError::NotAvailable(format!("grains.{name}"))),
    }
}

/// Salt's `setvals`: each key saved (a `None` with `destructive` deletes it); the
/// return is the dict given.
fn setvals(
    call: &Call,
    grains: Map<String, Value>,
    destructive: bool,
) -> Result<Output, FunctionError> {
    let mut saved = (*call.minions.get(&call.id, Doc::Grains)).clone();
    for (k, v) in &grains {
        if k == "id" {
            // The id is the minion's identity (and the state file's name).
            continue;
        }
        if v.is_null() && destructive {
            saved.remove(k);
        } else {
            saved.insert(k.clone(), v.clone());
        }
    }
    call.minions
        .set(&call.id, Doc::Grains, saved)
        .map_err(|e| FunctionError::Raised {
            class: "CommandExecutionError",
            message: e.to_string(),
        })?;
    Ok(Output {
        grains_changed: true,
        ..Output::from(Value::Object(grains))
    })
}

/// The top-level key and its new value after `value` is placed at `a:b:c` (parents
/// that are not dicts become dicts, as Salt's rebuild does).
fn rebuild(grains: &Map<String, Value>, key: &str, delim: &str, value: Value) -> (String, Value) {
    let mut key = key.to_owned();
    let mut value = value;
    while !delim.is_empty() && key.contains(delim) {
        let Some((parent, rest)) = key.rsplit_once(delim) else {
            break;
        };
        let mut p = match traverse(grains, parent, delim) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        p.insert(rest.to_owned(), value);
        value = Value::Object(p);
        key = parent.to_owned();
    }
    (key, value)
}

/// Salt's `grains.set`, which `delval` and `delkey` go through.
fn set(
    call: &Call,
    key: &str,
    val: Value,
    force: bool,
    destructive: bool,
    delim: &str,
) -> Result<Output, FunctionError> {
    let result = |comment: String, changes: Value, ok: bool| -> Output {
        let mut m = Map::new();
        m.insert("comment".into(), Value::String(comment));
        m.insert("changes".into(), changes);
        m.insert("result".into(), Value::Bool(ok));
        let mut out = Output::from(Value::Object(m));
        if !ok {
            out.retcode = 1;
        }
        out
    };
    let grains = call.grains.as_object().cloned().unwrap_or_default();
    let existing = traverse(&grains, key, delim);
    if existing == Some(&val) && !(val.is_null() && destructive) {
        return Ok(result(
            "Grain is already set".into(),
            Value::Object(Map::new()),
            true,
        ));
    }
    if let Some(e) = existing.filter(|e| !e.is_null()) {
        if !force {
            if e.is_object() || e.is_array() {
                return Ok(result(
                    format!("The key '{key}' exists but is a dict or a list. Use 'force=True' to overwrite."),
                    Value::Object(Map::new()),
                    false,
                ));
            }
            if val.is_object() || val.is_array() {
                return Ok(result(
                    format!("The key '{key}' exists and the given value is a dict or a list. Use 'force=True' to overwrite."),
                    Value::Object(Map::new()),
                    false,
                ));
            }
        }
    }
    let (top, value) = if !delim.is_empty() && key.contains(delim) {
        if val.is_null() && destructive {
            // Pop the child from its parent dict.
            let Some((parent, rest)) = key.rsplit_once(delim) else {
                return Err(FunctionError::InvalidArgs("grains.set(): bad key".into()));
            };
            let mut p = match traverse(&grains, parent, delim) {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            p.remove(rest);
            rebuild(&grains, parent, delim, Value::Object(p))
        } else {
            rebuild(&grains, key, delim, val)
        }
    } else {
        (key.to_owned(), val)
    };
    let mut one = Map::new();
    one.insert(top, value);
    let out = setvals(call, one, destructive)?;
    let mut wrapped = result(String::new(), out.ret, true);
    wrapped.grains_changed = true;
    Ok(wrapped)
}
