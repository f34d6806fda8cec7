//! Rendering returns for a terminal: Salt's `nested` layout, or one JSON / YAML object
//! id → return (like `salt --out json --static`).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Map, Value};

use drover::job::Return;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Nested,
    Txt,
    Json,
    Yaml,
}

pub fn render(returns: &BTreeMap<String, Return>, fmt: OutputFormat) -> String {
    let map: Map<String, Value> = returns
        .iter()
        .map(|(id, r)| (id.clone(), r.ret.clone()))
        .collect();
    match fmt {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_default();
            s.push('\n');
            s
        }
        OutputFormat::Yaml => yaml_serde::to_string(&Value::Object(map)).unwrap_or_default(),
        OutputFormat::Txt => {
            let mut out = String::new();
            for (id, v) in &map {
                let _ = writeln!(out, "{id}: {}", scalar(v));
            }
            out
        }
        OutputFormat::Nested => {
            let mut out = String::new();
            for (id, v) in &map {
                // State runs print as Salt's `highstate` outputter prints them.
                let highstate = returns
                    .get(id)
                    .and_then(|r| drover::functions::outputter(&r.fun))
                    == Some("highstate");
                match v {
                    Value::Object(m) if highstate => super::highstate::render(&mut out, id, m),
                    _ => {
                        let _ = writeln!(out, "{id}:");
                        nested(&mut out, v, 4);
                    }
                }
            }
            out
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// Salt's nested outputter: dicts open with a `----------` rule, keys sorted, values
/// indented four spaces; lists as `- item`.
pub(super) fn nested(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            let _ = writeln!(out, "{pad}----------");
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                let child = &m[k];
                if is_scalar(child) {
                    let _ = writeln!(out, "{pad}{k}:");
                    let _ = writeln!(out, "{pad}    {}", scalar(child));
                } else {
                    let _ = writeln!(out, "{pad}{k}:");
                    nested(out, child, indent + 4);
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                if is_scalar(item) {
                    let _ = writeln!(out, "{pad}- {}", scalar(item));
                } else {
                    nested(out, item, indent + 4);
                }
            }
        }
        other => {
            for line in scalar(other).lines() {
                let _ = writeln!(out, "{pad}{line}");
            }
        }
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover::job::{Jid, Outcome};

    fn ret(id: &str, v: Value) -> (String, Return) {
        (
            id.into(),
            Return {
                id: id.into(),
                jid: Jid("1".into()),
                fun: "f".into(),
                ret: v,
                retcode: 0,
                success: true,
                outcome: Outcome::Success,
                duration_ms: 1,
            },
        )
    }

    #[test]
    fn nested_matches_salt_layout() {
        let m: BTreeMap<_, _> = [
            ret(
                "b",
                serde_json::json!({"postgresql": "stopped", "apache": "running"}),
            ),
            ret("a", Value::Bool(true)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            render(&m, OutputFormat::Nested),
            "a:\n    True\nb:\n    ----------\n    apache:\n        running\n    postgresql:\n        stopped\n"
        );
    }

    #[test]
    fn json_is_static_object() {
        let m: BTreeMap<_, _> = [ret("a", Value::Bool(true))].into_iter().collect();
        let v: Value = serde_json::from_str(&render(&m, OutputFormat::Json)).unwrap();
        assert_eq!(v, serde_json::json!({"a": true}));
        assert_eq!(render(&m, OutputFormat::Yaml), "a: true\n");
    }
}
