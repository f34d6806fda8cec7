//! Salt's Open vSwitch states: `openvswitch_bridge.present/absent`
//! (`salt/states/openvswitch_bridge.py`), `openvswitch_port.present/absent` for
//! plain and internal ports (`openvswitch_port.py`; tunnel types are refused by
//! name) and `openvswitch_db.managed` (`openvswitch_db.py`, 3006+).

use serde_json::{json, Map, Value};

use super::{Args, Ctx, StateRet};

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

pub(super) async fn run(
    ctx: &Ctx<'_>,
    module: &str,
    fun: &str,
    args: &Args<'_>,
) -> Option<Result<StateRet, String>> {
    let res = match (module, fun) {
        ("openvswitch_bridge", "present") => bridge(ctx, args, true).await,
        ("openvswitch_bridge", "absent") => bridge(ctx, args, false).await,
        ("openvswitch_port", "present") => port_present(ctx, args).await,
        ("openvswitch_port", "absent") => port_absent(ctx, args).await,
        ("openvswitch_db", "managed") => db_managed(ctx, args).await,
        _ => return None,
    };
    Some(res)
}

async fn bridge(ctx: &Ctx<'_>, args: &Args<'_>, present: bool) -> Result<StateRet, String> {
    let name = args.name();
    let mut r = StateRet::new(name);
    let exists = truthy(
        &ctx.call("openvswitch.bridge_exists", vec![json!(name)])
            .await?,
    );
    let (done, failed, already, old, new) = if present {
        (
            format!("Bridge {name} created."),
            format!("Unable to create bridge: {name}."),
            format!("Bridge {name} already exists."),
            format!("Bridge {name} does not exist."),
            format!("Bridge {name} created"),
        )
    } else {
        (
            format!("Bridge {name} deleted."),
            format!("Unable to delete bridge: {name}."),
            format!("Bridge {name} does not exist."),
            format!("Bridge {name} exists."),
            format!("Bridge {name} deleted."),
        )
    };
    if exists == present {
        r.comment = already;
        return Ok(r);
    }
    let changes = Map::from_iter([(name.to_owned(), json!({"old": old, "new": new}))]);
    if ctx.test {
        r.result = None;
        r.comment = done;
        r.changes = changes;
        return Ok(r);
    }
    let fun = if present {
        "openvswitch.bridge_create"
    } else {
        "openvswitch.bridge_delete"
    };
    if truthy(&ctx.call(fun, vec![json!(name)]).await?) {
        r.comment = done;
        r.changes = changes;
    } else {
        r.result = Some(false);
        r.comment = failed;
    }
    Ok(r)
}

async fn ports(ctx: &Ctx<'_>, bridge: &str) -> Result<Option<Vec<String>>, String> {
    if !truthy(
        &ctx.call("openvswitch.bridge_exists", vec![json!(bridge)])
            .await?,
    ) {
        return Ok(None);
    }
    let list = ctx
        .call("openvswitch.port_list", vec![json!(bridge)])
        .await?;
    Ok(Some(
        list.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}

async fn port_present(ctx: &Ctx<'_>, args: &Args<'_>) -> Result<StateRet, String> {
    let name = args.name();
    let bridge = args.required("bridge")?;
    if let Some(t) = args.text("tunnel_type") {
        return Ok(StateRet::failed(
            name,
            format!("tunnel_type {t} is not supported by Drover's openvswitch_port.present yet"),
        ));
    }
    let internal = args.flag("internal", false);
    let mut r = StateRet::new(name);
    let Some(list) = ports(ctx, &bridge).await? else {
        r.result = if ctx.test { None } else { Some(false) };
        r.comment = format!("Bridge {bridge} does not exist.");
        return Ok(r);
    };
    if list.iter().any(|p| p == name) {
        let ty = ctx
            .call("openvswitch.interface_get_type", vec![json!(name)])
            .await?;
        let is_internal = ty == json!(["internal"]) || ty == json!("internal");
        if !internal || is_internal {
            r.comment = format!("Port {name} already exists.");
            return Ok(r);
        }
        r.comment =
            format!("Port {name} already exists, but interface type has been changed to internal.");
        if ctx.test {
            return Ok(r);
        }
        let mut kw = Map::new();
        kw.insert("may_exist".into(), json!(true));
        kw.insert("internal".into(), json!(true));
        if truthy(
            &ctx.call_kw("openvswitch.port_add", vec![json!(bridge), json!(name)], kw)
                .await?,
        ) {
            r.changes
                .insert("internal".into(), json!({"old": false, "new": true}));
        } else {
            r.result = Some(false);
            r.comment = format!("Port {name} already exists, but the interface type could not be changed to internal.");
        }
        return Ok(r);
    }
    r.comment = format!("Port {name} created on bridge {bridge}.");
    if ctx.test {
        r.result = None;
        return Ok(r);
    }
    let mut kw = Map::new();
    kw.insert("internal".into(), json!(internal));
    if truthy(
        &ctx.call_kw("openvswitch.port_add", vec![json!(bridge), json!(name)], kw)
            .await?,
    ) {
        r.changes.insert(
            name.to_owned(),
            json!({"old": format!("No port named {name} present."), "new": format!("Created port {name} on bridge {bridge}.")}),
        );
    } else {
        r.result = Some(false);
        r.comment = format!("Unable to create port {name} on bridge {bridge}.");
    }
    Ok(r)
}

async fn port_absent(ctx: &Ctx<'_>, args: &Args<'_>) -> Result<StateRet, String> {
    let name = args.name();
    let bridge = args.text("bridge");
    let mut r = StateRet::new(name);
    let shown = bridge.clone().unwrap_or_else(|| "None".into());
    let list = match &bridge {
        Some(b) => match ports(ctx, b).await? {
            Some(l) => l,
            None => {
                r.result = if ctx.test { None } else { Some(false) };
                r.comment = format!("Bridge {b} does not exist.");
                return Ok(r);
            }
        },
        None => vec![name.to_owned()],
    };
    if !list.iter().any(|p| p == name) {
        r.comment = format!("Port {name} does not exist on bridge {shown}.");
        return Ok(r);
    }
    r.comment = format!("Port {name} deleted.");
    if ctx.test {
        r.result = None;
        return Ok(r);
    }
    let mut kw = Map::new();
    kw.insert("br".into(), bridge.map_or(Value::Null, Value::from));
    kw.insert("port".into(), json!(name));
    if truthy(
        &ctx.call_kw("openvswitch.port_remove", Vec::new(), kw)
            .await?,
    ) {
        r.changes.insert(
            name.to_owned(),
            json!({"old": format!("Port named {name} may exist."), "new": format!("Deleted port {name}.")}),
        );
    } else {
        r.result = Some(false);
        r.comment = format!("Unable to delete port {name}.");
    }
    Ok(r)
}

async fn db_managed(ctx: &Ctx<'_>, args: &Args<'_>) -> Result<StateRet, String> {
    let name = args.name();
    let table = args.required("table")?;
    let record = args.text("record").unwrap_or_else(|| name.to_owned());
    let Some(Value::Object(data)) = args.get("data") else {
        return Err("Missing parameter data for state openvswitch_db.managed".into());
    };
    let mut r = StateRet::new(name);
    let mut pending = Vec::new();
    for (column, want) in data {
        let mut kw = Map::new();
        kw.insert("if_exists".into(), json!(true));
        let have = ctx
            .call_kw(
                "openvswitch.db_get",
                vec![json!(table), json!(record), json!(column)],
                kw,
            )
            .await?;
        if &have != want {
            pending.push((column.clone(), have, want.clone()));
        }
    }
    if ctx.test {
        for (c, old, new) in &pending {
            r.changes.insert(c.clone(), json!({"old": old, "new": new}));
        }
        if r.changes.is_empty() {
            r.comment = "All columns are already up to date.".into();
        } else {
            r.result = None;
            r.comment = "Columns have been updated.".into();
        }
        return Ok(r);
    }
    for (column, old, new) in pending {
        let res = ctx
            .call(
                "openvswitch.db_set",
                vec![json!(table), json!(record), json!(column), new.clone()],
            )
            .await?;
        if !res.is_null() {
            r.result = Some(false);
            r.comment = format!(
                "Error while updating column {column}: {}",
                crate::functions::as_text(&res).unwrap_or_else(|| res.to_string())
            );
            return Ok(r);
        }
        r.changes.insert(column, json!({"old": old, "new": new}));
    }
    r.comment = "All columns are already up to date.".into();
    Ok(r)
}
