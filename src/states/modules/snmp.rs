//! Drover's SNMP state, `snmp.value`: one scalar set to a value, idempotently. Salt
//! has no SNMP state for devices; this one follows Salt's conventions (a `None`
//! result under test when a change is pending, the previous value in `changes`).
//!
//! ```yaml
//! contact:
//!   snmp.value:
//!     - name: SNMPv2-MIB::sysContact.0   # or 1.3.6.1.2.1.1.4.0
//!     - value: noc@example.net
//!     - type: s                          # Net-SNMP type letter, default s
//! ```

use serde_json::{json, Value};

use super::{Args, Ctx, StateRet};
use crate::functions::as_text;

pub(super) async fn run(
    ctx: &Ctx<'_>,
    fun: &str,
    args: &Args<'_>,
) -> Option<Result<StateRet, String>> {
    match fun {
        "value" => Some(value(ctx, args).await),
        _ => None,
    }
}

async fn current(ctx: &Ctx<'_>, oid: &str) -> Result<Value, String> {
    let rows = ctx.call("snmp.get", vec![json!(oid)]).await?;
    Ok(rows
        .as_array()
        .and_then(|r| r.first())
        .and_then(|r| r.get("value"))
        .cloned()
        .unwrap_or(Value::Null))
}

async fn value(ctx: &Ctx<'_>, args: &Args<'_>) -> Result<StateRet, String> {
    let oid = args.name();
    let want = args.required("value")?;
    let ty = args.text("type").unwrap_or_else(|| "s".into());
    let mut r = StateRet::new(oid);
    let have = current(ctx, oid).await?;
    if as_text(&have).as_deref() == Some(want.as_str()) {
        r.comment = format!("{oid} is already {want}");
        return Ok(r);
    }
    let changes = json!({"old": have, "new": want});
    if ctx.test {
        r.result = None;
        r.comment = format!("{oid} would be set to {want}");
        r.changes.insert(oid.to_owned(), changes);
        return Ok(r);
    }
    ctx.call("snmp.set", vec![json!(oid), json!(ty), json!(want)])
        .await?;
    let now = current(ctx, oid).await?;
    if as_text(&now).as_deref() == Some(want.as_str()) {
        r.comment = format!("{oid} set to {want}");
        r.changes.insert(oid.to_owned(), changes);
    } else {
        r.result = Some(false);
        r.comment = format!(
            "{oid} is {} after setting it to {want}",
            as_text(&now).unwrap_or_default()
        );
    }
    Ok(r)
}
