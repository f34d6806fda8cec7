//! The YAML stage of the renderer: rendered text → an ordered mapping of state ids,
//! with Salt's rules (the document must be a dict, an empty one is `{}`, a dict used
//! as a key is the "double curly-brace" mistake) and JSON values for the arguments.

use indexmap::IndexMap;
use serde_json::Value;
use yaml_serde::Value as Yaml;

use super::limits::MAX_YAML_DEPTH;

/// An SLS's top level, in file order.
pub(crate) type Ordered = IndexMap<String, Yaml>;

/// Parses rendered text. Errors carry the line (1-based) where the YAML parser has one.
pub(crate) fn parse(text: &str) -> Result<Ordered, (String, Option<usize>)> {
    if text.trim().is_empty() {
        return Ok(Ordered::new());
    }
    let doc: Yaml = yaml_serde::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        (e.to_string(), line)
    })?;
    match doc {
        Yaml::Null => Ok(Ordered::new()),
        Yaml::Mapping(m) => {
            let mut out = Ordered::with_capacity(m.len());
            for (k, v) in m {
                let key = key_text(&k).map_err(|e| (e, None))?;
                if out.insert(key.clone(), v).is_some() {
                    return Err((format!("found conflicting ID '{key}'"), None));
                }
            }
            Ok(out)
        }
        _ => Err(("does not render to a dictionary".into(), None)),
    }
}

/// A mapping key as Salt's loader would make it a string.
pub(crate) fn key_text(k: &Yaml) -> Result<String, String> {
    match k {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(if *b { "True".into() } else { "False".into() }),
        Yaml::Null => Ok("None".into()),
        Yaml::Tagged(t) => key_text(&t.value),
        Yaml::Mapping(_) | Yaml::Sequence(_) => {
            Err("a dict or list used as a key (possible double curly-brace in the template)".into())
        }
    }
}

/// A YAML value as JSON for a state's arguments; depth-bounded.
pub(crate) fn to_json(v: &Yaml) -> Result<Value, String> {
    to_json_at(v, 0)
}

fn to_json_at(v: &Yaml, depth: usize) -> Result<Value, String> {
    if depth > MAX_YAML_DEPTH {
        return Err(format!("data nested deeper than {MAX_YAML_DEPTH} levels"));
    }
    Ok(match v {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Sequence(s) => Value::Array(
            s.iter()
                .map(|x| to_json_at(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                out.insert(key_text(k)?, to_json_at(x, depth + 1)?);
            }
            Value::Object(out)
        }
        Yaml::Tagged(t) => to_json_at(&t.value, depth + 1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_file_order_and_rejects_non_dicts() {
        let m = parse("zeta: 1\nalpha: 2\nmid: 3\n").unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["zeta", "alpha", "mid"]);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("- a\n- b\n").is_err());
        let (msg, line) = parse("a: 1\nb: [\n").unwrap_err();
        assert!(!msg.is_empty());
        assert!(line.is_some());
    }

    #[test]
    fn duplicate_ids_and_dict_keys_are_errors() {
        assert!(parse("a: 1\na: 2\n").is_err());
        let (msg, _) = parse("{a: 1}: x\n").unwrap_err();
        assert!(msg.contains("double curly-brace"), "{msg}");
    }
}
