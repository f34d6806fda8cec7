//! The `pillar` module with the shapes of Salt's `modules/pillar.py`, served from the
//! pillar the master last sent for this id (no round trip): `pillar.items`,
//! `pillar.get` (nested `a:b:c` keys, `default`, `delimiter`), `pillar.item`,
//! `pillar.raw` and `pillar.keys`. `saltutil.refresh_pillar` asks for a fresh one.

use serde_json::{Map, Value};

use super::grains::traverse;
use super::{as_text, ArgReader, Call, FunctionError};

pub(super) fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let args = ArgReader::new(call);
    let empty = Map::new();
    let pillar = call.pillar.as_object().unwrap_or(&empty);
    let kwarg = |k: &str| call.job.args.kwarg.get(k);
    match name {
        "items" | "data" => Ok(Value::Object(pillar.clone())),
        "raw" => match args.opt_string(0, "key")? {
            None => Ok(Value::Object(pillar.clone())),
            Some(k) => Ok(pillar
                .get(&k)
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()))),
        },
        "get" => {
            let (key, default, delim) = args.key_default_delimiter(4)?;
            Ok(traverse(pillar, &key, &delim).cloned().unwrap_or(default))
        }
        "item" => {
            let default = kwarg("default")
                .cloned()
                .unwrap_or(Value::String(String::new()));
            let delim = kwarg("delimiter")
                .and_then(as_text)
                .unwrap_or_else(|| ":".into());
            let mut out = Map::new();
            for key in &call.job.args.arg {
                let key = as_text(key).ok_or_else(|| {
                    FunctionError::InvalidArgs("pillar.item(): keys must be strings".into())
                })?;
                let v = traverse(pillar, &key, &delim)
                    .cloned()
                    .unwrap_or_else(|| default.clone());
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
        "keys" => {
            let key = args.string(0, "key")?;
            let delim = args
                .opt_string(1, "delimiter")?
                .unwrap_or_else(|| ":".into());
            match traverse(pillar, &key, &delim) {
                None => Err(FunctionError::Raised {
                    class: "KeyError",
                    message: format!("'Pillar key not found: {key}'"),
                }),
                Some(Value::Object(m)) => Ok(Value::Array(
                    m.keys().map(|k| Value::String(k.clone())).collect(),
                )),
                Some(_) => Err(FunctionError::Raised {
                    class: "ValueError",
                    message: format!("Pillar value in key {key} is not a dict"),
                }),
            }
        }
        _ => Err(FunctionError::NotAvailable(format!("pillar.{name}"))),
    }
}
