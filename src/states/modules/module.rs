//! `module.run` (Salt's 3005+ syntax: a list of `mod.fun:` entries with their
//! arguments) and `netconf.managed`, whose execution function already answers in a
//! state's shape.

use serde_json::{Map, Value};

use super::{Args, Ctx, StateRet};

/// One `- mod.fun:` entry's arguments: a list of values and single-key dicts.
fn split(args: &Value) -> (Vec<Value>, Map<String, Value>) {
    let mut pos = Vec::new();
    let mut kw = Map::new();
    if let Value::Array(items) = args {
        for i in items {
            match i {
                Value::Object(m) if m.len() == 1 => kw.extend(m.clone()),
                other => pos.push(other.clone()),
            }
        }
    }
    (pos, kw)
}

pub(super) async fn run(
    ctx: &Ctx<'_>,
    fun: &str,
    args: &Args<'_>,
) -> Option<Result<StateRet, String>> {
    if fun != "run" {
        return None;
    }
    let mut r = StateRet::new(args.name());
    let funs: Vec<(&String, &Value)> = args
        .chunk
        .args
        .iter()
        .filter(|(k, _)| k.contains('.') && k.as_str() != "name")
        .collect();
    if funs.is_empty() {
        return Some(Err(
            "module.run: no function given (write `- test.ping:` under it)".into(),
        ));
    }
    if ctx.test {
        r.result = None;
        let names: Vec<&str> = funs.iter().map(|(k, _)| k.as_str()).collect();
        r.comment = format!("Function {} to be executed.", names.join(", "));
        return Some(Ok(r));
    }
    let mut failures = Vec::new();
    let mut done = Vec::new();
    for (name, a) in funs {
        let (pos, kw) = split(a);
        match ctx.call_kw(name, pos, kw).await {
            Ok(v) => {
                if matches!(&v, Value::Object(m) if m.get("result") == Some(&Value::Bool(false))) {
                    failures.push(format!("{name}: {v}"));
                }
                r.changes.insert(name.clone(), v);
                done.push(name.as_str());
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    if failures.is_empty() {
        r.comment = done
            .iter()
            .map(|n| format!("{n}: Success"))
            .collect::<Vec<_>>()
            .join(", ");
    } else {
        r.result = Some(false);
        r.comment = format!("Run failed on minion: {}", failures.join(", "));
    }
    Some(Ok(r))
}

pub(super) async fn netconf(
    ctx: &Ctx<'_>,
    fun: &str,
    args: &Args<'_>,
) -> Option<Result<StateRet, String>> {
    if fun != "managed" {
        return None;
    }
    let run = async {
        let mut kw = Map::new();
        for k in ["config", "target", "default_operation"] {
            if let Some(v) = args.get(k) {
                kw.insert(k.into(), v.clone());
            }
        }
        kw.insert("test".into(), Value::Bool(ctx.test));
        let v = ctx.call_kw("netconf.managed", Vec::new(), kw).await?;
        let m = v.as_object().cloned().unwrap_or_default();
        Ok(StateRet {
            name: args.name().to_owned(),
            result: match m.get("result") {
                Some(Value::Bool(b)) => Some(*b),
                _ => None,
            },
            changes: m
                .get("changes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            comment: m
                .get("comment")
                .and_then(crate::functions::as_text)
                .unwrap_or_default(),
            extra: Map::new(),
        })
    };
    Some(run.await)
}
