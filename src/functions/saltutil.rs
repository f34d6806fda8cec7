//! The `saltutil` functions a device answers itself: the `sync_*` family, which
//! Salt users (and highstate, reactors and bootstrap runbooks) call before anything
//! else, `refresh_pillar` and `refresh_grains` (which asks the device now). Drover loads no custom modules from the master, so
//! every sync succeeds with nothing synced, in Salt's shapes: a list per
//! `sync_<kind>`, and for `sync_all` a dict of every kind to its list (and, as in
//! Salt, a pillar refresh unless `refresh=False`).

use serde_json::{Map, Value};

use super::{ArgReader, Call, FunctionError, Output};
use crate::events::FleetEvent;

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

pub(super) async fn run(name: &str, call: &Call) -> Result<Output, FunctionError> {
    let args = ArgReader::new(call);
    let refresh = || {
        call.events.send(FleetEvent::RefreshPillar {
            id: call.id.clone(),
        });
    };
    if name == "refresh_pillar" {
        refresh();
        return Ok(Value::Bool(true).into());
    }
    if name == "refresh_grains" {
        // Asks the device now; as in Salt, the pillar follows (and with it the
        // master's grains cache) unless refresh_pillar=False.
        let grains = call.driver.grains().await?;
        if args.opt(usize::MAX, "refresh_pillar").is_none_or(truthy) {
            refresh();
        }
        return Ok(Output {
            fresh_grains: Some(grains),
            grains_changed: false,
            ..Output::from(Value::Bool(true))
        });
    }
    if name == "sync_all" {
        if args.opt(1, "refresh").is_none_or(truthy) {
            refresh();
        }
        let all: Map<String, Value> = SYNC_KINDS
            .iter()
            .map(|k| ((*k).to_owned(), Value::Array(Vec::new())))
            .collect();
        return Ok(Value::Object(all).into());
    }
    match name.strip_prefix("sync_") {
        Some(kind) if SYNC_KINDS.contains(&kind) => Ok(Value::Array(Vec::new()).into()),
        _ => Err(FunctionError::NotAvailable(format!("saltutil.{name}"))),
    }
}

/// Python truthiness of a YAML-typed argument (`refresh=False`, `refresh=0`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}
