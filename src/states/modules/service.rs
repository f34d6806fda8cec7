//! Salt's `service` states (`salt/states/service.py`): running, dead, and mod_watch
//! (restart a running service, start a stopped one). `enable`/`enabled`/`disabled`
//! need `service.enabled`, which no Drover driver offers yet, so they fail naming it.

use serde_json::{Map, Value};

use super::{Args, Ctx, StateRet};

fn started(name: &str) -> Map<String, Value> {
    Map::from_iter([(name.to_owned(), Value::Bool(true))])
}

async fn status(ctx: &Ctx<'_>, name: &str) -> Result<bool, String> {
    Ok(ctx.call("service.status", vec![Value::from(name)]).await? == Value::Bool(true))
}

pub(super) async fn run(
    ctx: &Ctx<'_>,
    fun: &str,
    args: &Args<'_>,
) -> Option<Result<StateRet, String>> {
    let name = args.name();
    let res = match fun {
        "running" | "dead" => toggle(ctx, fun == "running", name, args).await,
        "enabled" | "disabled" => Ok(StateRet::failed(
            name,
            format!("'service.{}' is not available: this device's driver cannot enable or disable services.", if fun == "enabled" { "enable" } else { "disable" }),
        )),
        _ => return None,
    };
    Some(res)
}

async fn toggle(
    ctx: &Ctx<'_>,
    want_running: bool,
    name: &str,
    args: &Args<'_>,
) -> Result<StateRet, String> {
    if args.get("enable").is_some_and(|v| !v.is_null()) {
        return Ok(StateRet::failed(name, "'service.enable' is not available: this device's driver cannot enable or disable services."));
    }
    let mut r = StateRet::new(name);
    let running = status(ctx, name).await?;
    if running == want_running {
        r.comment = if want_running {
            format!("The service {name} is already running")
        } else {
            format!("The service {name} is already dead")
        };
        return Ok(r);
    }
    if ctx.test {
        r.result = None;
        r.comment = if want_running {
            format!("Service {name} is set to start")
        } else {
            format!("Service {name} is set to be killed")
        };
        return Ok(r);
    }
    let action = if want_running {
        "service.start"
    } else {
        "service.stop"
    };
    ctx.call(action, vec![Value::from(name)]).await?;
    let now = status(ctx, name).await?;
    if now == want_running {
        r.changes = started(name);
        r.comment = if want_running {
            format!("Started service {name}")
        } else {
            format!("Service {name} was killed")
        };
    } else {
        r.result = Some(false);
        r.comment = if want_running {
            format!("Service {name} failed to start")
        } else {
            format!("Service {name} failed to die")
        };
    }
    Ok(r)
}

/// `service.mod_watch`: for `running`, restart (or start if stopped); for `dead`,
/// stop if running.
pub(super) async fn mod_watch(
    ctx: &Ctx<'_>,
    sfun: &str,
    args: &Args<'_>,
) -> Result<StateRet, String> {
    let name = args.name();
    let mut r = StateRet::new(name);
    let running = status(ctx, name).await?;
    let (verb, fun, done) = match (sfun, running) {
        ("dead", true) => ("stopped", "service.stop", "Service stopped"),
        ("dead", false) => {
            r.comment = format!("Service {name} is already stopped");
            return Ok(r);
        }
        (_, true) => ("restarted", "service.restart", "Service restarted"),
        (_, false) => ("started", "service.start", "Service started"),
    };
    if ctx.test {
        r.result = None;
        r.comment = format!("Service is set to be {verb}");
        return Ok(r);
    }
    ctx.call(fun, vec![Value::from(name)]).await?;
    r.changes = started(name);
    r.comment = done.into();
    Ok(r)
}
