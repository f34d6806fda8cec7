//! The `netconf` module: NETCONF operations (RFC 6241) on a device of proxytype
//! `netconf`. Replies come back as dicts converted from XML by the documented,
//! lossless convention of `drivers::netconf::xml`, with the raw XML alongside:
//! - `netconf.capabilities` → `{"session_id", "base": "1.1", "capabilities": [...]}`
//! - `netconf.get [filter=<xml>|xpath=<expr>]` and
//!   `netconf.get_config [source=running] [filter=|xpath=]` →
//!   `{"data": {<top container>: ...}, "xml": "<inside of <data>>"}`
//! - `netconf.edit_config config=<xml> [target=candidate] [default_operation=]
//!   [test_option=] [error_option=]`, `netconf.lock`/`netconf.unlock [target=candidate]`,
//!   `netconf.commit [confirmed=False] [confirm_timeout=<s>] [persist=] [persist_id=]`,
//!   `netconf.discard_changes`, `netconf.validate [source=candidate]` →
//!   `{"ok": true, "xml": "<rpc-reply ...>", ["warnings": [...]]}`
//! - `netconf.rpc <xml>` (any operation, the XML inside `<rpc>`) →
//!   `{"reply": <rpc-reply as JSON>, "xml": "<inside of rpc-reply>"}`
//! - `netconf.managed config=<xml> [target=candidate] [test=False]
//!   [default_operation=merge]`: state semantics (lock, edit the candidate, diff
//!   running against candidate, commit or discard under `test=True`, unlock), a
//!   state-shaped `{"result", "changes": {"diff": {<path>: {"old", "new"}}},
//!   "comment"}`. The state system (issue 16) will call it as the `netconf.managed`
//!   state.
//!
//! A device's `<rpc-error>` (lock held by another session, invalid value) is an
//! error return naming its error-tag and message; a refused `managed` is
//! `result: False`.

use serde_json::Value;

use super::{as_text, ArgReader, Call, FunctionError};
use crate::drivers::netconf::ops::{CommitOptions, EditOptions, Filter};
use crate::drivers::DriverError;

pub(super) async fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let dev = call.driver.netconf()?;
    let a = ArgReader::new(call);
    let fun = format!("netconf.{name}");
    let r = match name {
        "capabilities" => dev.capabilities().await,
        "get" => dev.get(&filter(&a, 0)?).await,
        "get_config" => {
            let source = a
                .opt_string(0, "source")?
                .unwrap_or_else(|| "running".into());
            dev.get_config(&source, &filter(&a, 1)?).await
        }
        "edit_config" => {
            let config = a.string(0, "config")?;
            let target = a
                .opt_string(1, "target")?
                .unwrap_or_else(|| "candidate".into());
            dev.edit_config(&target, &config, &edit_options(&a, 2)?)
                .await
        }
        "lock" | "unlock" => {
            let target = a
                .opt_string(0, "target")?
                .unwrap_or_else(|| "candidate".into());
            if name == "lock" {
                dev.lock(&target).await
            } else {
                dev.unlock(&target).await
            }
        }
        "commit" => {
            let o = CommitOptions {
                confirmed: a.flag(0, "confirmed", false)?,
                confirm_timeout: match a.opt(1, "confirm_timeout") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        as_text(v)
                            .and_then(|t| t.trim().parse::<u32>().ok())
                            .ok_or_else(|| bad(&fun, "confirm_timeout", "a number of seconds"))?,
                    ),
                },
                persist: a.opt_string(2, "persist")?,
                persist_id: a.opt_string(3, "persist_id")?,
            };
            dev.commit(&o).await
        }
        "discard_changes" => dev.discard_changes().await,
        "validate" => {
            let source = a
                .opt_string(0, "source")?
                .unwrap_or_else(|| "candidate".into());
            dev.validate(&source).await
        }
        "rpc" => {
            let body = a.string(0, "rpc")?;
            dev.rpc(&body).await
        }
        "managed" => {
            let config = a.string(0, "config")?;
            let target = a
                .opt_string(1, "target")?
                .unwrap_or_else(|| "candidate".into());
            let test = a.flag(2, "test", false)?;
            let mut edit = edit_options(&a, 3)?;
            edit.test_option = None;
            edit.error_option = None;
            dev.managed(&config, &target, test, &edit).await
        }
        _ => return Err(FunctionError::NotAvailable(fun)),
    };
    r.map_err(|e| FunctionError::Driver(DriverError::from(e)))
}

fn filter(a: &ArgReader<'_>, pos: usize) -> Result<Filter, FunctionError> {
    match (
        a.opt_string(pos, "filter")?,
        a.opt_string(pos + 1, "xpath")?,
    ) {
        (Some(_), Some(_)) => Err(FunctionError::InvalidArgs(
            "give either filter (subtree XML) or xpath, not both".into(),
        )),
        (Some(f), None) => Ok(Filter::Subtree(f)),
        (None, Some(x)) => Ok(Filter::XPath(x)),
        (None, None) => Ok(Filter::None),
    }
}

fn edit_options(a: &ArgReader<'_>, pos: usize) -> Result<EditOptions, FunctionError> {
    Ok(EditOptions {
        default_operation: a.opt_string(pos, "default_operation")?,
        test_option: a.opt_string(pos + 1, "test_option")?,
        error_option: a.opt_string(pos + 2, "error_option")?,
    })
}

fn bad(fun: &str, name: &str, what: &str) -> FunctionError {
    FunctionError::InvalidArgs(format!("{fun}(): '{name}' must be {what}"))
}
