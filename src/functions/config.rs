//! `config.get` with Salt's lookup order: the minion's options (for a Drover device:
//! its `id`), then its grains, then its pillar (where `master:` holds what a master
//! shares of its config); `default` when none has the key.

use serde_json::{Map, Value};

use super::grains::traverse;
use super::{ArgReader, Call, FunctionError};

pub(super) fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    if name != "get" {
        return Err(FunctionError::NotAvailable(format!("config.{name}")));
    }
    let args = ArgReader::new(call);
    let (key, default, delim) = args.key_default_delimiter(2)?;
    let mut opts = Map::new();
    opts.insert("id".into(), Value::from(&*call.id));
    let empty = Map::new();
    let grains = call.grains.as_object().unwrap_or(&empty);
    let pillar = call.pillar.as_object().unwrap_or(&empty);
    let master = pillar.get("master").and_then(Value::as_object);
    let found = traverse(&opts, &key, &delim)
        .or_else(|| traverse(grains, &key, &delim))
        .or_else(|| traverse(pillar, &key, &delim))
        .or_else(|| master.and_then(|m| traverse(m, &key, &delim)));
    Ok(found.cloned().unwrap_or(default))
}
