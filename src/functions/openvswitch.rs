//! The `openvswitch` module, with the names, arguments and return shapes of Salt's
//! `salt.modules.openvswitch`, served over OVSDB instead of `ovs-vsctl` on the box:
//! `bridge_list`, `bridge_exists`, `bridge_create`, `bridge_delete`,
//! `bridge_to_parent`, `bridge_to_vlan`, `port_list`, `port_add`, `port_remove`,
//! `port_get_tag`, `port_create_vlan`, `port_create_gre`, `port_create_vxlan`,
//! `interface_get_type`, `interface_get_options`, `db_get`, `db_set`; plus
//! `interface_stats`, which Salt lacks.
//!
//! As in Salt, a refused change (the bridge exists, no such port) is `False`, the
//! `get` functions return `ovs-vsctl get`'s text as a one-line list, and `db_set`
//! returns `None` or the error message. A device that cannot be reached, or whose
//! schema cannot take the write, is an error return. Two deliberate differences:
//! an empty bridge or port list is `[]` (Salt's split of empty output gives
//! `['']`), and `port_create_vlan` cannot check the host's own network interfaces,
//! which only a local minion can see.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::{as_text, ArgReader, Call, FunctionError};
use crate::drivers::ovsdb::ops::{is_refusal, PortSettings};
use crate::drivers::ovsdb::OvsdbError;
use crate::drivers::DriverError;

pub(super) async fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let dev = call.driver.ovs()?;
    let a = ArgReader::new(call);
    let fun = format!("openvswitch.{name}");
    match name {
        "bridge_list" => Ok(json!(dev.bridge_list().await.map_err(de)?)),
        "bridge_exists" => {
            let br = a.string(0, "br")?;
            Ok(json!(dev.bridge_exists(&br).await.map_err(de)?))
        }
        "bridge_create" => {
            let br = a.string(0, "br")?;
            let may_exist = a.flag(1, "may_exist", true)?;
            let parent = a.opt_string(2, "parent")?;
            let vlan = opt_int(&a, &fun, 3, "vlan")?;
            let parent = match (parent, vlan) {
                (None, None) => None,
                (Some(p), Some(v)) => Some((p, v)),
                (Some(_), None) => {
                    return Err(FunctionError::InvalidArgs(
                        "If parent is specified, vlan must also be specified.".into(),
                    ))
                }
                (None, Some(_)) => {
                    return Err(FunctionError::InvalidArgs(
                        "If vlan is specified, parent must also be specified.".into(),
                    ))
                }
            };
            let p = parent.as_ref().map(|(p, v)| (p.as_str(), *v));
            done(dev.bridge_create(&br, may_exist, p).await)
        }
        "bridge_delete" => {
            let br = a.string(0, "br")?;
            let if_exists = a.flag(1, "if_exists", true)?;
            done(dev.bridge_delete(&br, if_exists).await)
        }
        "bridge_to_parent" => {
            let br = a.string(0, "br")?;
            Ok(dev
                .bridge_to_parent(&br)
                .await
                .map_err(de)?
                .map_or(json!(false), |p| json!(p)))
        }
        "bridge_to_vlan" => {
            let br = a.string(0, "br")?;
            Ok(dev
                .bridge_to_vlan(&br)
                .await
                .map_err(de)?
                .map_or(json!(false), |v| json!(v)))
        }
        "port_list" => {
            let br = a.string(0, "br")?;
            Ok(dev
                .port_list(&br)
                .await
                .map_err(de)?
                .map_or(json!(false), |p| json!(p)))
        }
        "port_add" => {
            let br = a.string(0, "br")?;
            let port = a.string(1, "port")?;
            let may_exist = a.flag(2, "may_exist", false)?;
            let internal = a.flag(3, "internal", false)?;
            let settings = PortSettings {
                iface_type: internal.then(|| "internal".to_owned()),
                ..PortSettings::default()
            };
            done(dev.port_add(&br, &port, may_exist, &settings).await)
        }
        "port_remove" => {
            let br = a.opt_string(0, "br")?.filter(|b| !b.is_empty());
            let port = a.string(1, "port")?;
            let if_exists = a.flag(2, "if_exists", true)?;
            done(dev.port_remove(br.as_deref(), &port, if_exists).await)
        }
        "port_get_tag" => get_text(dev, "Port", &a.string(0, "port")?, "tag").await,
        "interface_get_options" => {
            get_text(dev, "Interface", &a.string(0, "port")?, "options").await
        }
        "interface_get_type" => get_text(dev, "Interface", &a.string(0, "port")?, "type").await,
        "port_create_vlan" => {
            let br = a.string(0, "br")?;
            let port = a.string(1, "port")?;
            let id = int(&a, &fun, 2, "id")?;
            let internal = a.flag(3, "internal", false)?;
            if !(0..=4095).contains(&id) {
                return Ok(json!(false));
            }
            let settings = PortSettings {
                tag: Some(id),
                iface_type: internal.then(|| "internal".to_owned()),
                ..PortSettings::default()
            };
            done(dev.port_create(&br, &port, &settings).await)
        }
        "port_create_gre" | "port_create_vxlan" => {
            let br = a.string(0, "br")?;
            let port = a.string(1, "port")?;
            let id = key(&a, &fun, 2)?;
            let remote = a.string(3, "remote")?;
            let limit: i128 = if name == "port_create_gre" {
                1 << 32
            } else {
                1 << 64
            };
            if !(0..limit).contains(&id) || remote.parse::<IpAddr>().is_err() {
                return Ok(json!(false));
            }
            let mut options = vec![
                ("key".to_owned(), id.to_string()),
                ("remote_ip".to_owned(), remote),
            ];
            let kind = if name == "port_create_gre" {
                "gre"
            } else {
                if let Some(dp) = opt_int(&a, &fun, 4, "dst_port")? {
                    if (1..=65535).contains(&dp) {
                        options.push(("dst_port".to_owned(), dp.to_string()));
                    }
                }
                "vxlan"
            };
            let settings = PortSettings {
                iface_type: Some(kind.to_owned()),
                options,
                ..PortSettings::default()
            };
            done(dev.port_create(&br, &port, &settings).await)
        }
        "db_get" => {
            let table = a.string(0, "table")?;
            let record = a.string(1, "record")?;
            let column = a.string(2, "column")?;
            let if_exists = a.flag(3, "if_exists", false)?;
            Ok(dev
                .db_get(&table, &record, &column, if_exists)
                .await
                .map_err(de)?)
        }
        "db_set" => {
            let table = a.string(0, "table")?;
            let record = a.string(1, "record")?;
            let column = a.string(2, "column")?;
            let value = a.required(3, "value")?;
            let if_exists = a.flag(4, "if_exists", false)?;
            Ok(dev
                .db_set(&table, &record, &column, value, if_exists)
                .await
                .map_err(de)?
                .map_or(Value::Null, Value::String))
        }
        "interface_stats" => {
            let iface = a.opt_string(0, "iface")?;
            Ok(dev.interface_stats(iface.as_deref()).await.map_err(de)?)
        }
        _ => Err(FunctionError::NotAvailable(fun)),
    }
}

fn de(e: OvsdbError) -> FunctionError {
    FunctionError::Driver(DriverError::from(e))
}

/// Salt's `_retcode_to_bool`: success is `True`, a refusal `False`; a device or
/// schema failure is an error.
fn done(r: Result<(), OvsdbError>) -> Result<Value, FunctionError> {
    match r {
        Ok(()) => Ok(json!(true)),
        Err(e) if is_refusal(&e) => {
            tracing::debug!(error = %e, "openvswitch change refused");
            Ok(json!(false))
        }
        Err(e) => Err(de(e)),
    }
}

/// `ovs-vsctl get TABLE RECORD COLUMN` as Salt returns it: its output lines, or
/// `False` when there is no such record.
async fn get_text(
    dev: &crate::drivers::ovsdb::OvsDevice,
    table: &str,
    record: &str,
    column: &str,
) -> Result<Value, FunctionError> {
    match dev.get_text(table, record, column).await {
        Ok(Some(text)) => Ok(json!(text.split('\n').collect::<Vec<_>>())),
        Ok(None) => Ok(json!(false)),
        Err(e) if is_refusal(&e) => Ok(json!(false)),
        Err(e) => Err(de(e)),
    }
}

fn bad(fun: &str, name: &str, what: &str) -> FunctionError {
    FunctionError::InvalidArgs(format!("{fun}(): '{name}' must be {what}"))
}

fn opt_int(
    a: &ArgReader<'_>,
    fun: &str,
    pos: usize,
    name: &str,
) -> Result<Option<i64>, FunctionError> {
    match a.opt(pos, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_text(v)
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| bad(fun, name, "an integer")),
    }
}

fn int(a: &ArgReader<'_>, fun: &str, pos: usize, name: &str) -> Result<i64, FunctionError> {
    a.required(pos, name)?;
    opt_int(a, fun, pos, name)?.ok_or_else(|| bad(fun, name, "an integer"))
}

/// A tunnel key, range-checked by the caller (out of range is Salt's `False`).
fn key(a: &ArgReader<'_>, fun: &str, pos: usize) -> Result<i128, FunctionError> {
    let v = a.required(pos, "id")?;
    as_text(v)
        .and_then(|t| t.trim().parse::<i128>().ok())
        .ok_or_else(|| bad(fun, "id", "an integer"))
}
