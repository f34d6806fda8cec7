//! The `grains` module: `grains.items`, `grains.get`, `grains.item`, `grains.ls`,
//! served from the grains the device actor keeps fresh (no device round trip).

use serde_json::{Map, Value};

use super::{as_text, ArgReader, Call, FunctionError};

pub(super) fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let args = ArgReader::new(call);
    let empty = Map::new();
    let grains = call.grains.as_object().unwrap_or(&empty);
    match name {
        "items" => Ok(Value::Object(grains.clone())),
        "ls" => {
            let mut keys: Vec<&String> = grains.keys().collect();
            keys.sort();
            Ok(Value::Array(
                keys.into_iter().map(|k| Value::String(k.clone())).collect(),
            ))
        }
        "get" => {
            let key = args.string(0, "key")?;
            let default = args
                .opt(1, "default")
                .cloned()
                .unwrap_or(Value::String(String::new()));
            let delim = args
                .opt_string(2, "delimiter")?
                .unwrap_or_else(|| ":".into());
            Ok(traverse(grains, &key, &delim).cloned().unwrap_or(default))
        }
        "item" => {
            let default = call
                .job
                .args
                .kwarg
                .get("default")
                .cloned()
                .unwrap_or(Value::String(String::new()));
            let mut out = Map::new();
            for key in &call.job.args.arg {
                let Some(key) = as_text(key) else {
                    return Err(FunctionError::InvalidArgs(
                        "grains.item(): keys must be strings".into(),
                    ));
                };
                let v = traverse(grains, &key, ":")
                    .cloned()
                    .unwrap_or_else(|| default.clone());
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
        _ => Err(FunctionError::NotAvailable(format!("grains.{name}"))),
    }
}

/// Follows `a:b:0:c` through nested objects and lists, as Salt's
/// `traverse_dict_and_list` does (list elements by index).
pub fn traverse<'a>(root: &'a Map<String, Value>, key: &str, delim: &str) -> Option<&'a Value> {
    if delim.is_empty() {
        return root.get(key);
    }
    let mut parts = key.split(delim);
    let mut cur = root.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}
