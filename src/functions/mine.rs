//! The `mine` module: `mine.send`, `mine.update`, `mine.get`, `mine.delete`,
//! `mine.flush` and `mine.valid`, as Salt's `salt/modules/mine.py` has them. Data is
//! gathered by running Drover's own functions on the device and stored on the Salt
//! master with `_mine`; `mine.get` asks the master (`_mine_get`), so one device sees
//! what others sent, whichever process manages them.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{execute, ArgReader, Call, FunctionError};

/// Longest wait for the master's answer; the job's own deadline is usually shorter.
const MASTER_WAIT: Duration = Duration::from_secs(30);

/// Salt's wrapper around mine data with a minion-side ACL.
const ACL_ID: &str = "__saltmine_acl__";

pub(super) async fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let args = ArgReader::new(call);
    match name {
        "send" => {
            let fname = args.string(0, "name")?;
            let mut kwargs = public_kwargs(&call.job.args.kwarg);
            let function = match kwargs.remove("mine_function") {
                Some(Value::String(f)) => f,
                _ => fname.clone(),
            };
            let acl = take_acl(&mut kwargs);
            let positional = call.job.args.arg.iter().skip(1).cloned().collect();
            let Some(res) = run_function(call, &function, positional, kwargs).await else {
                tracing::debug!(id = %call.id, function = %function, "Function in mine.send failed to execute.");
                return Ok(Value::Bool(false));
            };
            let mut data = Map::new();
            data.insert(fname, wrap(res, acl));
            Ok(Value::Bool(store(call, data, false).await))
        }
        "update" => {
            let clear = args.flag(0, "clear", false)?;
            let defs = match args.opt(1, "mine_functions").filter(|v| !v.is_null()) {
                Some(v) => v.clone(),
                None => configured(call),
            };
            let defs: Map<String, Value> = match defs {
                Value::Object(m) if !m.is_empty() => m,
                Value::Array(a) if !a.is_empty() => a
                    .iter()
                    .filter_map(|f| Some((f.as_str()?.to_owned(), Value::Object(Map::new()))))
                    .collect(),
                _ => return Ok(Value::Null),
            };
            let mut data = Map::new();
            for (alias, def) in defs {
                let (function, positional, kwargs, acl) = parse_definition(&def);
                let function = function.unwrap_or_else(|| alias.clone());
                match run_function(call, &function, positional, kwargs).await {
                    Some(res) => {
                        data.insert(alias, wrap(res, acl));
                    }
                    None => {
                        tracing::debug!(id = %call.id, function = %function, "Function in mine.update failed to execute.");
                    }
                }
            }
            Ok(Value::Bool(store(call, data, clear).await))
        }
        "get" => {
            let tgt = args.required(0, "tgt")?.clone();
            let fun = args.required(1, "fun")?.clone();
            let tgt_type = args
                .opt_string(2, "tgt_type")?
                .unwrap_or_else(|| "glob".into());
            let exclude_minion = args.flag(3, "exclude_minion", false)?;
            let mut load = Map::new();
            load.insert("tgt".into(), tgt);
            load.insert("fun".into(), fun);
            load.insert("tgt_type".into(), Value::String(tgt_type));
            let mut ret = ask(call, "_mine_get", load).await?;
            if exclude_minion {
                if let Value::Object(m) = &mut ret {
                    m.remove(&*call.id);
                }
            }
            Ok(ret)
        }
        "delete" => {
            let fun = args.string(0, "fun")?;
            let mut load = Map::new();
            load.insert("fun".into(), Value::String(fun));
            let answer = ask(call, "_mine_delete", load).await;
            Ok(Value::Bool(matches!(answer, Ok(Value::Bool(true)))))
        }
        "flush" => Ok(Value::Bool(
            ask(call, "_mine_flush", Map::new()).await.is_ok(),
        )),
        "valid" => {
            let Value::Object(defs) = configured(call) else {
                return Ok(Value::Null);
            };
            if defs.is_empty() {
                return Ok(Value::Null);
            }
            let mut out = Map::new();
            for (alias, def) in defs {
                let (function, positional, kwargs, _) = parse_definition(&def);
                let entry = match function {
                    Some(f) => {
                        let mut list = positional;
                        list.extend(kwargs.into_iter().map(|(k, v)| {
                            let mut one = Map::new();
                            one.insert(k, v);
                            Value::Object(one)
                        }));
                        let mut m = Map::new();
                        m.insert(f, Value::Array(list));
                        Value::Object(m)
                    }
                    None => def,
                };
                out.insert(alias, entry);
            }
            Ok(Value::Object(out))
        }
        _ => Err(FunctionError::NotAvailable(format!("mine.{name}"))),
    }
}

/// `mine_functions` as Salt's `config.merge` finds it: the pillar's `master:` copy,
/// then the pillar itself (Drover has no minion config of its own to look in first).
fn configured(call: &Call) -> Value {
    let from_master = call
        .pillar
        .get("master")
        .and_then(|m| m.get("mine_functions"))
        .cloned();
    let from_pillar = call.pillar.get("mine_functions").cloned();
    match (from_master, from_pillar) {
        (Some(Value::Object(mut a)), Some(Value::Object(b))) => {
            for (k, v) in b {
                a.entry(k).or_insert(v);
            }
            Value::Object(a)
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => Value::Null,
    }
}

/// A `mine_functions` entry: function, args, kwargs, ACL.
type Definition = (
    Option<String>,
    Vec<Value>,
    Map<String, Value>,
    Map<String, Value>,
);

/// Salt's `parse_function_definition`: `(function, args, kwargs, acl)` from a dict
/// (`mine_function` + kwargs) or a list (args, with dict items merged into kwargs).
fn parse_definition(def: &Value) -> Definition {
    let mut positional = Vec::new();
    let mut kwargs = Map::new();
    match def {
        Value::Object(m) => kwargs.extend(m.clone()),
        Value::Array(items) => {
            for i in items {
                match i {
                    Value::Object(m) => kwargs.extend(m.clone()),
                    v => positional.push(v.clone()),
                }
            }
        }
        _ => return (None, Vec::new(), Map::new(), Map::new()),
    }
    let function = match kwargs.remove("mine_function") {
        Some(Value::String(f)) => Some(f),
        _ => None,
    };
    let acl = take_acl(&mut kwargs);
    (function, positional, kwargs, acl)
}

fn take_acl(kwargs: &mut Map<String, Value>) -> Map<String, Value> {
    let mut acl = Map::new();
    for k in ["allow_tgt", "allow_tgt_type"] {
        if let Some(v) = kwargs.remove(k) {
            if truthy(&v) {
                acl.insert(k.into(), v);
            }
        }
    }
    acl
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
    }
}

/// Salt's `wrap_acl_structure`, applied only when the definition allows a target.
fn wrap(res: Value, acl: Map<String, Value>) -> Value {
    if !acl.contains_key("allow_tgt") {
        return res;
    }
    let mut m = Map::new();
    m.insert("__data__".into(), res);
    m.insert(ACL_ID.into(), Value::from(1));
    m.extend(acl);
    Value::Object(m)
}

fn public_kwargs(kwarg: &Map<String, Value>) -> Map<String, Value> {
    kwarg
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Runs another function on the same device; `None` when it fails. Mine functions
/// themselves are refused, so a definition cannot recurse.
async fn run_function(
    call: &Call,
    fun: &str,
    arg: Vec<Value>,
    kwarg: Map<String, Value>,
) -> Option<Value> {
    if fun.starts_with("mine.") {
        return None;
    }
    let sub = call.sub(fun, arg, kwarg);
    Box::pin(execute(sub)).await.ok().map(|o| o.ret)
}

/// `_mine` with `data`; whether the master took it.
async fn store(call: &Call, data: Map<String, Value>, clear: bool) -> bool {
    let mut load = Map::new();
    load.insert("data".into(), Value::Object(data));
    load.insert("clear".into(), Value::Bool(clear));
    matches!(ask(call, "_mine", load).await, Ok(Value::Bool(true)))
}

/// One request to the master as this device, answered within [`MASTER_WAIT`].
async fn ask(
    call: &Call,
    cmd: &'static str,
    load: Map<String, Value>,
) -> Result<Value, FunctionError> {
    let unavailable = |why: String| FunctionError::Raised {
        class: "CommandExecutionError",
        message: format!("{cmd}: {why}"),
    };
    let Some(rx) = call.events.request(call.id.clone(), cmd, load) else {
        return Err(unavailable(
            "no Salt master link; the mine lives on the master".into(),
        ));
    };
    match tokio::time::timeout(MASTER_WAIT, rx).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(unavailable(e)),
        Ok(Err(_)) => Err(unavailable("the master link closed".into())),
        Err(_) => Err(unavailable("no answer from the master".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_parse_as_salt_does() {
        let (f, a, k, acl) = parse_definition(
            &json!({"mine_function": "grains.get", "key": "os", "allow_tgt": "r*"}),
        );
        assert_eq!(f.as_deref(), Some("grains.get"));
        assert!(a.is_empty());
        assert_eq!(Value::Object(k), json!({"key": "os"}));
        assert_eq!(Value::Object(acl.clone()), json!({"allow_tgt": "r*"}));
        assert_eq!(
            wrap(json!(1), acl),
            json!({"__data__": 1, "__saltmine_acl__": 1, "allow_tgt": "r*"})
        );
        let (f, a, k, _) =
            parse_definition(&json!(["os", {"default": "x"}, {"mine_function": "grains.get"}]));
        assert_eq!(f.as_deref(), Some("grains.get"));
        assert_eq!(a, vec![json!("os")]);
        assert_eq!(Value::Object(k), json!({"default": "x"}));
        assert_eq!(parse_definition(&json!([])).0, None);
        assert_eq!(wrap(json!(2), Map::new()), json!(2));
    }
}
