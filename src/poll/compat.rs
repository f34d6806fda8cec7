//! snmp_exporter's own config (0.21's layout: `auth` inside the module) for the
//! built-in `if_mib` and `system` modules, so snmp_exporter can be run over the same
//! agents and columns as Drover: by `drover health-bench`, and by the test that
//! compares the two outputs.

use serde_json::{json, Value};

use super::module::{Kind, ModuleError, Modules};
use crate::config::PollConfig;

#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("no built-in module {0}")]
    NoModule(&'static str),
    #[error("cannot write the config: {0}")]
    Json(#[from] serde_json::Error),
}

/// Stands for an `enum_values` map until the text is written: JSON keys are
/// strings, and snmp_exporter wants integer keys.
const ENUMS: &str = "@enum_values@";

/// The config as YAML text: JSON, which YAML parsers read, with the enum maps as
/// YAML flow mappings with integer keys.
pub fn snmp_exporter_yml() -> Result<String, CompatError> {
    let text = serde_json::to_string_pretty(&exporter_config()?)?;
    let mods = Modules::from_config(&PollConfig::default())?;
    let enums = mods
        .get("if_mib")
        .and_then(|m| {
            m.metrics.iter().find_map(|x| match &x.kind {
                Kind::EnumAsInfo(e) => Some(*e),
                _ => None,
            })
        })
        .unwrap_or(&[]);
    let flow: Vec<String> = enums.iter().map(|(n, s)| format!("{n}: {s:?}")).collect();
    Ok(text.replace(&format!("{ENUMS:?}"), &format!("{{{}}}", flow.join(", "))))
}

/// snmp_exporter 0.21's config (auth inside the module) for Drover's built-in
/// `if_mib` and `system` modules.
fn exporter_config() -> Result<Value, CompatError> {
    let mods = Modules::from_config(&PollConfig::default())?;
    let mut out = serde_json::Map::new();
    for (name, walk) in [
        ("if_mib", vec!["1.3.6.1.2.1.2", "1.3.6.1.2.1.31.1.1"]),
        ("system", vec!["1.3.6.1.2.1.1"]),
    ] {
        let Some(m) = mods.get(name) else {
            return Err(CompatError::NoModule(name));
        };
        let metrics: Vec<Value> = m
            .metrics
            .iter()
            .map(|x| {
                let (ty, enums) = match &x.kind {
                    Kind::Gauge => ("gauge", None),
                    Kind::Counter => ("counter", None),
                    Kind::DisplayString => ("DisplayString", None),
                    Kind::OctetString => ("OctetString", None),
                    Kind::PhysAddress48 => ("PhysAddress48", None),
                    Kind::EnumAsInfo(e) => ("EnumAsInfo", Some(e)),
                };
                let mut v = json!({"name": x.name, "oid": x.oid.to_string(), "type": ty, "help": x.help});
                if let Some(i) = &x.index {
                    v["indexes"] = json!([{"labelname": i, "type": "gauge"}]);
                    v["lookups"] = Value::Array(
                        x.lookups
                            .iter()
                            .map(|(l, o)| json!({"labels": [i], "labelname": l, "oid": o.to_string(), "type": "DisplayString"}))
                            .collect(),
                    );
                }
                if enums.is_some() {
                    v["enum_values"] = json!(ENUMS);
                }
                v
            })
            .collect();
        out.insert(
            name.into(),
            json!({"walk": walk, "version": 2, "max_repetitions": 25, "retries": 3,
                   "timeout": "5s", "auth": {"community": "public"}, "metrics": metrics}),
        );
    }
    Ok(Value::Object(out))
}
