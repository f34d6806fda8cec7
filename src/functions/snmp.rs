//! The `snmp` module: `snmp.get`, `snmp.get_next`, `snmp.walk`, `snmp.bulkwalk`,
//! `snmp.set`, `snmp.interfaces` and `snmp.traps`. OIDs are numeric or MIB names (`sysDescr.0`,
//! `ifHCInOctets`); every value comes back typed (`{"oid", "name", "type",
//! "value"}`), exceptions such as `noSuchObject` included rather than hidden.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{as_text, Call, FunctionError};
use crate::drivers::snmp::{Oid, SnmpValue, VarBind};
use crate::drivers::DriverError;

const IF_TABLE: &str = "1.3.6.1.2.1.2.2.1";
const IF_X_TABLE: &str = "1.3.6.1.2.1.31.1.1.1";

pub(super) async fn run(name: &str, call: &Call) -> Result<Value, FunctionError> {
    let dev = call.driver.snmp()?;
    let args = &call.job.args.arg;
    match name {
        "get" => {
            let oids = oids(name, args)?;
            Ok(rows(&dev.get(&oids).await.map_err(DriverError::from)?))
        }
        "get_next" => {
            let oids = oids(name, args)?;
            Ok(rows(&dev.get_next(&oids).await.map_err(DriverError::from)?))
        }
        "walk" | "bulkwalk" => {
            let oids = oids(name, args)?;
            if oids.len() != 1 {
                return Err(FunctionError::InvalidArgs(format!(
                    "snmp.{name}(): give exactly one root OID"
                )));
            }
            let vbs = if name == "walk" {
                dev.walk(&oids[0]).await
            } else {
                dev.bulkwalk(&oids[0]).await
            }
            .map_err(DriverError::from)?;
            Ok(rows(&vbs))
        }
        "set" => {
            let texts: Vec<String> = args.iter().filter_map(as_text).collect();
            if texts.is_empty() || !texts.len().is_multiple_of(3) || texts.len() != args.len() {
                return Err(FunctionError::InvalidArgs(
                    "snmp.set(): give OID TYPE VALUE triples, e.g. sysContact.0 s noc@example.net"
                        .into(),
                ));
            }
            let mut vbs = Vec::with_capacity(texts.len() / 3);
            for t in texts.chunks(3) {
                let oid: Oid = t[0].parse().map_err(|e| bad_arg(name, &e))?;
                let value = SnmpValue::parse_typed(&t[1], &t[2]).map_err(|e| bad_arg(name, &e))?;
                vbs.push(VarBind::new(oid, value));
            }
            Ok(rows(&dev.set(&vbs).await.map_err(DriverError::from)?))
        }
        "interfaces" => {
            let table: Oid = IF_TABLE.parse().map_err(|e| bad_arg(name, &e))?;
            let xtable: Oid = IF_X_TABLE.parse().map_err(|e| bad_arg(name, &e))?;
            let base = dev.bulkwalk(&table).await.map_err(DriverError::from)?;
            // v1 agents have no ifXTable worth asking (no Counter64); others may
            // lack it too, which only leaves the 64-bit fields out.
            let ext = if dev.is_v1() {
                Vec::new()
            } else {
                dev.bulkwalk(&xtable).await.unwrap_or_default()
            };
            Ok(interfaces(&table, &base, &xtable, &ext))
        }
        // Kept by the trap listener; the device's agent is not asked.
        "traps" => Ok(Value::Array(call.events.recent(&call.id))),
        _ => Err(FunctionError::NotAvailable(format!("snmp.{name}"))),
    }
}

fn bad_arg(fun: &str, e: &dyn std::fmt::Display) -> FunctionError {
    FunctionError::InvalidArgs(format!("snmp.{fun}(): {e}"))
}

fn oids(fun: &str, args: &[Value]) -> Result<Vec<Oid>, FunctionError> {
    if args.is_empty() {
        return Err(FunctionError::InvalidArgs(format!(
            "snmp.{fun}() missing 1 required positional argument: 'oid'"
        )));
    }
    args.iter()
        .map(|a| {
            let text = as_text(a).ok_or_else(|| bad_arg(fun, &"OIDs must be strings"))?;
            text.parse::<Oid>().map_err(|e| bad_arg(fun, &e))
        })
        .collect()
}

fn rows(vbs: &[VarBind]) -> Value {
    Value::Array(vbs.iter().map(VarBind::to_json).collect())
}

/// One interface's row of a table: column number → value.
type Columns<'a> = BTreeMap<u32, &'a SnmpValue>;

/// Joins ifTable and ifXTable rows by ifIndex into one record per interface, keyed
/// by ifName (or ifDescr, or the index).
fn interfaces(table: &Oid, base: &[VarBind], xtable: &Oid, ext: &[VarBind]) -> Value {
    let mut by_index: BTreeMap<u32, (Columns<'_>, Columns<'_>)> = BTreeMap::new();
    for (root, vbs, second) in [(table, base, false), (xtable, ext, true)] {
        let depth = root.arcs().len();
        for vb in vbs {
            let arcs = vb.oid.arcs();
            if !vb.oid.starts_with(root) || arcs.len() != depth + 2 {
                continue;
            }
            let (column, index) = (arcs[depth], arcs[depth + 1]);
            let entry = by_index.entry(index).or_default();
            if second {
                entry.1.insert(column, &vb.value);
            } else {
                entry.0.insert(column, &vb.value);
            }
        }
    }
    let mut out = Map::new();
    for (index, (t, x)) in by_index {
        let text = |v: Option<&&SnmpValue>| v.map(|v| plain(v)).unwrap_or(Value::Null);
        let num = |v: Option<&&SnmpValue>| match v {
            Some(SnmpValue::Integer(i)) => json!(i),
            Some(SnmpValue::Counter32(n) | SnmpValue::Gauge32(n) | SnmpValue::TimeTicks(n)) => {
                json!(n)
            }
            Some(SnmpValue::Counter64(n)) => json!(n),
            _ => Value::Null,
        };
        let status = |v: Option<&&SnmpValue>| match v {
            Some(SnmpValue::Integer(1)) => json!("up"),
            Some(SnmpValue::Integer(2)) => json!("down"),
            Some(SnmpValue::Integer(3)) => json!("testing"),
            Some(SnmpValue::Integer(5)) => json!("dormant"),
            Some(SnmpValue::Integer(6)) => json!("notPresent"),
            Some(SnmpValue::Integer(7)) => json!("lowerLayerDown"),
            Some(SnmpValue::Integer(n)) => json!(format!("unknown({n})")),
            _ => Value::Null,
        };
        // Prefer the 64-bit counters and ifHighSpeed (Mbit/s) where the agent has them.
        let speed = match x.get(&15) {
            Some(SnmpValue::Gauge32(mbps)) if *mbps > 0 => json!(u64::from(*mbps) * 1_000_000),
            _ => num(t.get(&5)),
        };
        let in_octets = x
            .get(&6)
            .map(|v| num(Some(v)))
            .unwrap_or_else(|| num(t.get(&10)));
        let out_octets = x
            .get(&10)
            .map(|v| num(Some(v)))
            .unwrap_or_else(|| num(t.get(&16)));
        let name = text(x.get(&1));
        let descr = text(t.get(&2));
        let key = [&name, &descr]
            .iter()
            .find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .unwrap_or_else(|| index.to_string());
        out.insert(
            key,
            json!({
                "index": index,
                "name": name,
                "descr": descr,
                "alias": text(x.get(&18)),
                "type": num(t.get(&3)),
                "mtu": num(t.get(&4)),
                "speed": speed,
                "phys_address": text(t.get(&6)),
                "admin_status": status(t.get(&7)),
                "oper_status": status(t.get(&8)),
                "in_octets": in_octets,
                "out_octets": out_octets,
                "in_errors": num(t.get(&14)),
                "out_errors": num(t.get(&20)),
            }),
        );
    }
    Value::Object(out)
}

fn plain(v: &SnmpValue) -> Value {
    v.to_json().get("value").cloned().unwrap_or(Value::Null)
}
