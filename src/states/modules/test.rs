//! Salt's `test` states (`salt/states/test.py`): nop, succeed/fail with or without
//! changes, configurable_test_state, show_notification and mod_watch.

use serde_json::{json, Map, Value};

use super::{Args, Ctx, StateRet};

fn pretend() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "testing".into(),
        json!({"old": "Unchanged", "new": "Something pretended to change"}),
    );
    m
}

/// `True`, `False` or `"Random"` (any case), as the Python function reads it.
fn tri(args: &Args<'_>, key: &str, fun: &str) -> Result<bool, String> {
    match args.get(key) {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("random") => Ok(rand::random()),
        Some(_) => Err(format!(
            "You have specified the state option '{key}' with invalid arguments. It must be either True, False, or 'Random' ({fun})"
        )),
    }
}

pub(super) fn run(ctx: &Ctx<'_>, fun: &str, args: &Args<'_>) -> Option<Result<StateRet, String>> {
    let name = args.name();
    let comment = |default: &str| args.text("comment").unwrap_or_else(|| default.to_owned());
    let mut r = StateRet::new(name);
    match fun {
        "nop" => r.comment = "Success!".into(),
        "succeed_without_changes" => r.comment = comment("Success!"),
        "fail_without_changes" => {
            r.result = Some(false);
            r.comment = comment("Failure!");
            if ctx.test {
                r.comment = "If we weren't testing, this would be a failure!".into();
            }
        }
        "succeed_with_changes" => {
            r.comment = comment("Success!");
            r.changes = pretend();
            if ctx.test {
                r.result = None;
                r.comment = "If we weren't testing, this would be successful with changes".into();
            }
        }
        "fail_with_changes" => {
            r.result = Some(false);
            r.comment = comment("Failure!");
            r.changes = pretend();
            if ctx.test {
                r.result = None;
                r.comment = "If we weren't testing, this would be failed with changes".into();
            }
        }
        "configurable_test_state" => {
            let changes = match tri(args, "changes", fun) {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            };
            let result = match tri(args, "result", fun) {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            };
            r.comment = comment("");
            if changes {
                r.changes = pretend();
            }
            r.result = Some(result);
            match args.get("warnings") {
                Some(Value::String(w)) => {
                    r.extra.insert("warnings".into(), json!([w]));
                }
                Some(Value::Array(w)) => {
                    r.extra.insert("warnings".into(), Value::Array(w.clone()));
                }
                _ => {}
            }
            if ctx.test {
                r.result = if changes { None } else { Some(true) };
                if r.comment.is_empty() {
                    r.comment = "This is a test".into();
                }
            }
        }
        "show_notification" => match args.text("text") {
            Some(t) if !t.is_empty() => r.comment = t,
            _ => return Some(Err("Missing required argument text.".into())),
        },
        _ => return None,
    }
    Some(Ok(r))
}

pub(super) fn mod_watch(args: &Args<'_>) -> StateRet {
    let mut r = StateRet::new(args.name());
    r.result = Some(args.get("result").and_then(Value::as_bool).unwrap_or(true));
    r.comment = args
        .text("comment")
        .unwrap_or_else(|| "Watch statement fired.".into());
    r.changes = match args.get("changes") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::from_iter([("Requisites with changes".to_owned(), json!([]))]),
    };
    r
}
