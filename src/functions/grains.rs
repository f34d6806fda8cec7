//! The `grains` module: `grains.items`, `grains.get`, `grains.item`, `grains.ls`,
//! `grains.has_value` and `grains.filter_by`, served from the grains the device actor
//! keeps fresh (no device round trip).

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
            let (key, default, delim) = args.key_default_delimiter(2)?;
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
        "has_value" => {
            let key = args.string(0, "key")?;
            Ok(Value::Bool(traverse(grains, &key, ":").is_some()))
        }
        "filter_by" => {
            let lookup = match args.required(0, "lookup_dict")? {
                Value::Object(m) => m,
                _ => {
                    return Err(FunctionError::InvalidArgs(
                        "grains.filter_by(): lookup_dict must be a dictionary".into(),
                    ))
                }
            };
            let grain = args
                .opt_string(1, "grain")?
                .unwrap_or_else(|| "os_family".into());
            let merge = args.opt(2, "merge").filter(|v| !v.is_null());
            let default = args
                .opt_string(3, "default")?
                .unwrap_or_else(|| "default".into());
            let base = args.opt_string(4, "base")?;
            filter_by(
                lookup,
                traverse(grains, &grain, ":"),
                merge,
                &default,
                base.as_deref(),
            )
        }
        _ => Err(FunctionError::NotAvailable(format!("grains.{name}"))),
    }
}

/// Salt's `utils.data.filter_by`: the first lookup key that the grain's value (or one
/// of its values, for a list) matches as a glob, else `default`; then `base` merged
/// under it and `merge` over it. Keys are tried in sorted order where Salt tries them
/// in the order written.
fn filter_by(
    lookup: &Map<String, Value>,
    value: Option<&Value>,
    merge: Option<&Value>,
    default: &str,
    base: Option<&str>,
) -> Result<Value, FunctionError> {
    let values: Vec<&Value> = match value {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    let mut ret = values.iter().find_map(|v| {
        let text = crate::pyrepr::py_str(v);
        lookup
            .iter()
            .find(|(k, _)| crate::fnmatch::fnmatch(k, &text))
            .map(|(_, v)| v.clone())
    });
    if ret.is_none() {
        ret = lookup.get(default).cloned();
    }
    if let Some(base_values) = base.and_then(|b| lookup.get(b)) {
        ret = Some(match ret {
            None => base_values.clone(),
            Some(r) => match (base_values, r) {
                (Value::Object(b), Value::Object(r)) => {
                    let mut merged = b.clone();
                    deep_update(&mut merged, &r);
                    Value::Object(merged)
                }
                (Value::Object(_), _) => {
                    return Err(FunctionError::InvalidArgs(
                        "filter_by default and look-up values must both be dictionaries.".into(),
                    ))
                }
                (_, r) => r,
            },
        });
    }
    if let Some(merge) = merge {
        let Value::Object(m) = merge else {
            return Err(FunctionError::InvalidArgs(
                "filter_by merge argument must be a dictionary.".into(),
            ));
        };
        ret = Some(match ret {
            Some(Value::Object(mut r)) => {
                deep_update(&mut r, m);
                Value::Object(r)
            }
            _ => merge.clone(),
        });
    }
    Ok(ret.unwrap_or(Value::Null))
}

/// Salt's `dictupdate.update`: nested dicts merge, anything else is replaced.
fn deep_update(dest: &mut Map<String, Value>, upd: &Map<String, Value>) {
    for (k, v) in upd {
        match (dest.get_mut(k), v) {
            (Some(Value::Object(d)), Value::Object(u)) => deep_update(d, u),
            _ => {
                dest.insert(k.clone(), v.clone());
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn filter_by_matches_globs_then_default_base_and_merge() {
        let lookup = obj(json!({
            "Debian": {"pkg": "apache2", "conf": {"a": 1}},
            "Red*": {"pkg": "httpd"},
            "default": {"pkg": "web"},
            "common": {"user": "www", "conf": {"b": 2}},
        }));
        let f = |v: Option<Value>, merge: Option<Value>, base: Option<&str>| {
            filter_by(&lookup, v.as_ref(), merge.as_ref(), "default", base).unwrap()
        };
        assert_eq!(
            f(Some(json!("RedHat")), None, None),
            json!({"pkg": "httpd"})
        );
        assert_eq!(
            f(Some(json!(["x", "Debian"])), None, None)["pkg"],
            json!("apache2")
        );
        assert_eq!(f(Some(json!("Arch")), None, None), json!({"pkg": "web"}));
        assert_eq!(f(None, None, None), json!({"pkg": "web"}));
        assert_eq!(
            f(
                Some(json!("Debian")),
                Some(json!({"pkg": "nginx"})),
                Some("common")
            ),
            json!({"pkg": "nginx", "user": "www", "conf": {"a": 1, "b": 2}})
        );
        assert!(filter_by(&lookup, None, Some(&json!(3)), "default", None).is_err());
    }
}
