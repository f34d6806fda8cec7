//! The `saltutil` functions a device can answer itself: the `sync_*` family, which
//! Salt users (and highstate, reactors and bootstrap runbooks) call before anything
//! else. Drover loads no custom modules from the master, so every sync succeeds with
//! nothing synced, in Salt's shapes: a list per `sync_<kind>`, and for `sync_all` a
//! dict of every kind to its list.

use serde_json::{Map, Value};

use super::FunctionError;

/// The kinds `saltutil.sync_all` reports, in Salt's order (3006–3008; `pillar` only
/// with a local file client, which a master-connected minion is not).
pub(super) const SYNC_KINDS: &[&str] = &[
    "clouds",
    "beacons",
    "modules",
    "states",
    "sdb",
    "grains",
    "renderers",
    "returners",
    "output",
    "utils",
    "log_handlers",
    "executors",
    "proxymodules",
    "engines",
    "thorium",
    "serializers",
    "matchers",
];

pub(super) fn run(name: &str) -> Result<Value, FunctionError> {
    if name == "sync_all" {
        let all: Map<String, Value> = SYNC_KINDS
            .iter()
            .map(|k| ((*k).to_owned(), Value::Array(Vec::new())))
            .collect();
        return Ok(Value::Object(all));
    }
    match name.strip_prefix("sync_") {
        Some(kind) if SYNC_KINDS.contains(&kind) => Ok(Value::Array(Vec::new())),
        _ => Err(FunctionError::NotAvailable(format!("saltutil.{name}"))),
    }
}
