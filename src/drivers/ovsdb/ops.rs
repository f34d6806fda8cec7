//! What the `openvswitch.*` functions do to one OVS host. Reads are served from
//! the monitor replica. Writes are planned against the replica, checked against
//! the server's schema ([`Schema::require`]), and sent as one atomic `transact`
//! shaped like `ovs-vsctl`'s: new rows are linked by `uuid-name` (a bridge, its
//! local port and its interface in one transaction), and a `wait` on the column
//! the plan read (the bridge list, a bridge's ports) turns a concurrent change by
//! someone else into a retry against a fresh replica rather than a lost update.
//! After a commit, an `echo` round trip makes sure the replica holds the change
//! before the function returns, so a read right after a write sees it.
//!
//! Refusals that `ovs-vsctl` reports with exit status 1 (bridge exists, no such
//! port) come back as [`OvsdbError::NotFound`], [`OvsdbError::Invalid`] or
//! [`OvsdbError::Transaction`] with `ovs-vsctl`'s wording; see [`is_refusal`].

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::datum::{datum_from_user, is_uuid, Atom, Datum};
use super::device::OvsDevice;
use super::replica::{self, default_datum, Replica, Row, MONITORED};
use super::schema::{need, AtomicType, Need, Schema};
use super::OvsdbError;
use crate::telemetry;

use AtomicType::{Boolean, Integer, String as Str, Uuid};

/// Columns every bridge and port write uses.
const CORE: &[Need] = &[
    need("Open_vSwitch", "bridges", Uuid),
    need("Bridge", "name", Str),
    need("Bridge", "ports", Uuid),
    need("Port", "name", Str),
    need("Port", "interfaces", Uuid),
    need("Interface", "name", Str),
    need("Interface", "type", Str),
];
/// Fake (VLAN) bridges.
const FAKE: &[Need] = &[
    need("Port", "tag", Integer),
    need("Port", "fake_bridge", Boolean),
];
const TAG: &[Need] = &[need("Port", "tag", Integer)];
const OPTIONS: &[Need] = &[need("Interface", "options", Str)];

/// Attempts at a write whose `wait` found the replica stale.
const WRITE_TRIES: usize = 3;

/// Whether `e` is the operation being refused (Salt's `False`), as opposed to the
/// device failing or the schema not fitting.
pub fn is_refusal(e: &OvsdbError) -> bool {
    matches!(
        e,
        OvsdbError::NotFound(_) | OvsdbError::Invalid(_) | OvsdbError::Transaction(_)
    )
}

/// Settings of a port and its interface, for `port_add` and `port_create_*`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortSettings {
    pub tag: Option<i64>,
    pub iface_type: Option<String>,
    /// Interface options to set (other keys are kept).
    pub options: Vec<(String, String)>,
}

enum Plan {
    /// Nothing to change (`may_exist` and it exists, `if_exists` and it does not).
    Done,
    Txn(Txn),
}

#[derive(Default)]
struct Txn {
    ops: Vec<Value>,
}

fn by_uuid(u: &str) -> Value {
    json!([["_uuid", "==", ["uuid", u]]])
}

impl Txn {
    /// Fails the transaction (as stale) unless `table[uuid].column` is still `value`.
    fn wait(&mut self, table: &str, uuid: &str, column: &str, value: &Datum) {
        self.ops.push(json!({
            "op": "wait", "table": table, "where": by_uuid(uuid), "columns": [column],
            "until": "==", "rows": [{column: value.to_json()}], "timeout": 0
        }));
    }

    fn insert(&mut self, table: &str, row: Value, name: &str) {
        self.ops
            .push(json!({"op": "insert", "table": table, "row": row, "uuid-name": name}));
    }

    fn mutate(&mut self, table: &str, uuid: &str, mutations: Value) {
        self.ops.push(json!({
            "op": "mutate", "table": table, "where": by_uuid(uuid), "mutations": mutations
        }));
    }

    fn update(&mut self, table: &str, uuid: &str, row: Value) {
        self.ops
            .push(json!({"op": "update", "table": table, "where": by_uuid(uuid), "row": row}));
    }

    fn delete(&mut self, table: &str, uuid: &str) {
        self.ops
            .push(json!({"op": "delete", "table": table, "where": by_uuid(uuid)}));
    }
}

fn uuid_set(uuids: &[&str]) -> Value {
    Datum::Set(uuids.iter().map(|u| Atom::Uuid((*u).to_owned())).collect()).to_json()
}

fn col(row: &Row, schema: &Schema, table: &str, column: &str) -> Datum {
    match row.get(column) {
        Some(d) => d.clone(),
        None => schema
            .column(table, column)
            .map(default_datum)
            .unwrap_or_default(),
    }
}

fn refuse(msg: String) -> OvsdbError {
    OvsdbError::Invalid(msg)
}

fn nonempty(what: &str, v: &str) -> Result<(), OvsdbError> {
    if v.is_empty() {
        Err(refuse(format!("{what} name must not be empty")))
    } else {
        Ok(())
    }
}

/// Where a port lives: its row, and the real bridge row whose `ports` hold it.
fn port_home<'a>(r: &'a Replica, port: &str) -> Option<(&'a String, &'a Row, Option<&'a String>)> {
    let (pu, prow) = r.by_name("Port", port)?;
    let home = r
        .table("Bridge")
        .find(|(_, b)| replica::uuids(b, "ports").contains(&pu.as_str()))
        .map(|(u, _)| u);
    Some((pu, prow, home))
}

/// A monitored row by `ovs-vsctl` record id: `.` for the one `Open_vSwitch` row,
/// a UUID, or the `name` column.
fn lookup<'a>(r: &'a Replica, table: &str, record: &str) -> Option<(&'a String, &'a Row)> {
    if table == "Open_vSwitch" && record == "." {
        return r.root();
    }
    if is_uuid(record) {
        let rec = record.to_ascii_lowercase();
        return r.tables.get(table)?.get_key_value(&rec);
    }
    r.by_name(table, record)
}

/// `ovs-vsctl`'s table matching: exact, then case-insensitive, then a unique
/// case-insensitive prefix.
pub fn resolve_table<'a>(schema: &'a Schema, name: &str) -> Result<&'a str, OvsdbError> {
    if let Some((k, _)) = schema.tables.get_key_value(name) {
        return Ok(k);
    }
    let lower = name.to_ascii_lowercase();
    if let Some(k) = schema
        .tables
        .keys()
        .find(|k| k.to_ascii_lowercase() == lower)
    {
        return Ok(k);
    }
    let mut hits = schema
        .tables
        .keys()
        .filter(|k| !lower.is_empty() && k.to_ascii_lowercase().starts_with(&lower));
    match (hits.next(), hits.next()) {
        (Some(k), None) => Ok(k),
        (Some(_), Some(_)) => Err(refuse(format!("multiple table names match \"{name}\""))),
        _ => Err(refuse(format!("unknown table \"{name}\""))),
    }
}

fn resolve_column<'a>(schema: &'a Schema, table: &str, name: &str) -> Result<&'a str, OvsdbError> {
    let cols = &schema.tables[table].columns;
    if let Some((k, _)) = cols.get_key_value(name) {
        return Ok(k);
    }
    cols.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .map(String::as_str)
        .ok_or_else(|| {
            refuse(format!(
                "{table} does not contain a column whose name matches \"{name}\""
            ))
        })
}

fn no_row(table: &str, record: &str) -> OvsdbError {
    OvsdbError::NotFound(format!("no row \"{record}\" in table {table}"))
}

impl OvsDevice {
    // ----- reads -------------------------------------------------------------

    /// Real and fake bridges, sorted (`ovs-vsctl list-br`).
    pub async fn bridge_list(&self) -> Result<Vec<String>, OvsdbError> {
        self.conn
            .read(|r, _| r.view().bridges.into_keys().collect())
            .await
    }

    pub async fn bridge_exists(&self, br: &str) -> Result<bool, OvsdbError> {
        self.conn
            .read(|r, _| r.view().bridges.contains_key(br))
            .await
    }

    /// The parent of a fake bridge, the bridge itself for a real one.
    pub async fn bridge_to_parent(&self, br: &str) -> Result<Option<String>, OvsdbError> {
        self.conn
            .read(|r, _| {
                r.view()
                    .bridges
                    .get(br)
                    .map(|b| b.parent.clone().unwrap_or_else(|| b.name.clone()))
            })
            .await
    }

    /// The VLAN of a fake bridge, 0 for a real one.
    pub async fn bridge_to_vlan(&self, br: &str) -> Result<Option<i64>, OvsdbError> {
        self.conn
            .read(|r, _| r.view().bridges.get(br).map(|b| b.vlan))
            .await
    }

    /// The ports of a bridge except its local port, sorted (`ovs-vsctl
    /// list-ports`); `None` when there is no such bridge.
    pub async fn port_list(&self, br: &str) -> Result<Option<Vec<String>>, OvsdbError> {
        self.conn
            .read(|r, _| {
                r.view().bridges.get(br).map(|b| {
                    b.ports
                        .iter()
                        .filter(|p| p.as_str() != br)
                        .cloned()
                        .collect()
                })
            })
            .await
    }

    /// One column of one record as `ovs-vsctl get` prints it; `None` when there is
    /// no such record.
    pub async fn get_text(
        &self,
        table: &str,
        record: &str,
        column: &str,
    ) -> Result<Option<String>, OvsdbError> {
        let schema = self.conn.ready().await?;
        let table = resolve_table(&schema, table)?.to_owned();
        let column = resolve_column(&schema, &table, column)?.to_owned();
        let Some((_, row)) = self.fetch_row(&schema, &table, record).await? else {
            return Ok(None);
        };
        let ty = &schema.tables[&table].columns[&column];
        Ok(Some(col(&row, &schema, &table, &column).to_text(ty)))
    }

    /// Salt's `db_get`: the column's value, sets as lists and maps as objects;
    /// `null` for a missing record with `if_exists`.
    pub async fn db_get(
        &self,
        table: &str,
        record: &str,
        column: &str,
        if_exists: bool,
    ) -> Result<Value, OvsdbError> {
        let schema = self.conn.ready().await?;
        let table = resolve_table(&schema, table)?.to_owned();
        let column = resolve_column(&schema, &table, column)?.to_owned();
        match self.fetch_row(&schema, &table, record).await? {
            Some((uuid, row)) => {
                let ty = &schema.tables[&table].columns[&column];
                if column == "_uuid" {
                    return Ok(json!(["uuid", uuid]));
                }
                Ok(col(&row, &schema, &table, &column).to_salt(ty))
            }
            None if if_exists => Ok(Value::Null),
            None => Err(no_row(&table, record)),
        }
    }

    /// A record from the replica for monitored tables, by `select` otherwise.
    async fn fetch_row(
        &self,
        schema: &Schema,
        table: &str,
        record: &str,
    ) -> Result<Option<(String, Row)>, OvsdbError> {
        if MONITORED.contains(&table) {
            return self
                .conn
                .read(|r, _| lookup(r, table, record).map(|(u, row)| (u.clone(), row.clone())))
                .await;
        }
        let cols = &schema.tables[table].columns;
        let cond = if table == "Open_vSwitch" && record == "." {
            json!([])
        } else if is_uuid(record) {
            by_uuid(&record.to_ascii_lowercase())
        } else if cols.contains_key("name") {
            json!([["name", "==", record]])
        } else {
            return Ok(None);
        };
        let res = self
            .conn
            .call(
                "transact",
                json!(["Open_vSwitch", {"op": "select", "table": table, "where": cond}]),
            )
            .await?;
        let rows = res
            .get(0)
            .and_then(|o| {
                if let Some(e) = o.get("error") {
                    return Some(Err(OvsdbError::Server(super::codec::error_text(
                        &json!({"error": e, "details": o.get("details")}),
                    ))));
                }
                o.get("rows").and_then(Value::as_array).map(Ok)
            })
            .ok_or_else(|| OvsdbError::Malformed("select: no rows".into()))??;
        let Some(first) = rows.first().and_then(Value::as_object) else {
            return Ok(None);
        };
        let mut row = Row::new();
        for (k, v) in first {
            let d =
                Datum::from_json(v).map_err(|e| OvsdbError::Malformed(format!("select: {e}")))?;
            row.insert(k.clone(), d);
        }
        let uuid = row
            .get("_uuid")
            .and_then(Datum::first)
            .and_then(Atom::as_uuid)
            .unwrap_or_default()
            .to_owned();
        Ok(Some((uuid, row)))
    }

    /// Per interface: link and admin state, MTU, speed and the `statistics`
    /// counters, with the port and bridge it belongs to; only `name` if given.
    pub async fn interface_stats(&self, name: Option<&str>) -> Result<Value, OvsdbError> {
        self.conn
            .read(|r, schema| {
                let view = r.view();
                let mut port_of: HashMap<&str, &str> = HashMap::new();
                for (_, p) in r.table("Port") {
                    for i in replica::uuids(p, "interfaces") {
                        port_of.insert(i, replica::name(p));
                    }
                }
                let mut out = BTreeMap::new();
                for (uuid, row) in r.table("Interface") {
                    let iname = replica::name(row);
                    if name.is_some_and(|n| n != iname) {
                        continue;
                    }
                    let text = |c: &str| {
                        row.get(c)
                            .and_then(Datum::str)
                            .map_or(Value::Null, |s| json!(s))
                    };
                    let int = |c: &str| {
                        row.get(c)
                            .and_then(Datum::i64)
                            .map_or(Value::Null, |i| json!(i))
                    };
                    let stats: Map<String, Value> = match row.get("statistics") {
                        Some(Datum::Map(m)) => m
                            .iter()
                            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.to_json())))
                            .collect(),
                        _ => Map::new(),
                    };
                    let port = port_of.get(uuid.as_str()).copied();
                    let bridge = port.and_then(|p| view.port_bridge.get(p));
                    out.insert(
                        iname.to_owned(),
                        json!({
                            "type": col(row, schema, "Interface", "type").str().unwrap_or(""),
                            "port": port,
                            "bridge": bridge,
                            "admin_state": text("admin_state"),
                            "link_state": text("link_state"),
                            "mtu": int("mtu"),
                            "link_speed": int("link_speed"),
                            "duplex": text("duplex"),
                            "ofport": int("ofport"),
                            "mac_in_use": text("mac_in_use"),
                            "error": text("error"),
                            "statistics": stats,
                        }),
                    );
                }
                Value::Object(out.into_iter().collect())
            })
            .await
    }

    // ----- writes ------------------------------------------------------------

    /// Plans against the replica, commits, retries when the replica was stale.
    async fn write<F>(&self, comment: String, plan: F) -> Result<(), OvsdbError>
    where
        F: Fn(&Replica, &Schema) -> Result<Plan, OvsdbError>,
    {
        for _ in 0..WRITE_TRIES {
            let Plan::Txn(mut txn) = self.conn.read(&plan).await?? else {
                return Ok(());
            };
            let n = txn.ops.len();
            txn.ops
                .push(json!({"op": "comment", "comment": format!("drover: {comment}")}));
            let mut params = vec![json!("Open_vSwitch")];
            params.append(&mut txn.ops.clone());
            let res = self.conn.call("transact", Value::Array(params)).await?;
            let results = res
                .as_array()
                .ok_or_else(|| OvsdbError::Malformed("transact result is not an array".into()))?;
            let failed = results
                .iter()
                .enumerate()
                .find(|(_, r)| r.get("error").is_some_and(|e| !e.is_null()));
            match failed {
                None => {
                    metrics::counter!(telemetry::OVS_TRANSACTIONS, "outcome" => "committed")
                        .increment(1);
                    self.conn.sync().await?;
                    return Ok(());
                }
                Some((i, r))
                    if i < n && txn.ops[i]["op"] == "wait" && r["error"] == "timed out" =>
                {
                    metrics::counter!(telemetry::OVS_TRANSACTIONS, "outcome" => "retried")
                        .increment(1);
                    self.conn.sync().await?;
                }
                Some((_, r)) => {
                    metrics::counter!(telemetry::OVS_TRANSACTIONS, "outcome" => "failed")
                        .increment(1);
                    return Err(OvsdbError::Transaction(super::codec::error_text(r)));
                }
            }
        }
        Err(OvsdbError::Transaction(
            "the database kept changing under the transaction; try again".into(),
        ))
    }

    /// `ovs-vsctl [--may-exist] add-br BR [PARENT VLAN]`.
    pub async fn bridge_create(
        &self,
        br: &str,
        may_exist: bool,
        parent: Option<(&str, i64)>,
    ) -> Result<(), OvsdbError> {
        let comment = match parent {
            Some((p, v)) => format!("add-br {br} {p} {v}"),
            None => format!("add-br {br}"),
        };
        self.write(comment, |r, s| plan_add_br(r, s, br, may_exist, parent))
            .await
    }

    /// `ovs-vsctl [--if-exists] del-br BR`: the bridge, its ports and their
    /// interfaces; a real bridge's fake bridges too.
    pub async fn bridge_delete(&self, br: &str, if_exists: bool) -> Result<(), OvsdbError> {
        self.write(format!("del-br {br}"), |r, s| {
            plan_del_br(r, s, br, if_exists)
        })
        .await
    }

    /// `ovs-vsctl [--may-exist] add-port BR PORT` with the port's settings.
    pub async fn port_add(
        &self,
        br: &str,
        port: &str,
        may_exist: bool,
        settings: &PortSettings,
    ) -> Result<(), OvsdbError> {
        self.write(format!("add-port {br} {port}"), |r, s| {
            plan_add_port(r, s, br, port, may_exist, settings)
        })
        .await
    }

    /// `ovs-vsctl [--if-exists] del-port [BR] PORT`.
    pub async fn port_remove(
        &self,
        br: Option<&str>,
        port: &str,
        if_exists: bool,
    ) -> Result<(), OvsdbError> {
        self.write(format!("del-port {} {port}", br.unwrap_or("")), |r, s| {
            plan_del_port(r, s, br, port, if_exists)
        })
        .await
    }

    /// Salt's `port_create_*`: reconfigures the port when `br` already lists it,
    /// adds it with these settings otherwise; one transaction either way.
    pub async fn port_create(
        &self,
        br: &str,
        port: &str,
        settings: &PortSettings,
    ) -> Result<(), OvsdbError> {
        self.write(format!("create port {br} {port}"), |r, s| {
            let view = r.view();
            let Some(b) = view.bridges.get(br) else {
                return Err(OvsdbError::NotFound(format!("no bridge named {br}")));
            };
            if port != br && b.ports.contains(port) {
                plan_set_port(r, s, port, settings)
            } else {
                plan_add_port(r, s, br, port, false, settings)
            }
        })
        .await
    }

    /// Salt's `db_set`: `Ok(None)` on success, `Ok(Some(message))` when the server or
    /// the arguments refuse it.
    pub async fn db_set(
        &self,
        table: &str,
        record: &str,
        column: &str,
        value: &Value,
        if_exists: bool,
    ) -> Result<Option<String>, OvsdbError> {
        let schema = self.conn.ready().await?;
        let res = async {
            schema.require("openvswitch.db_set", &[])?;
            let table = resolve_table(&schema, table)?.to_owned();
            let column = resolve_column(&schema, &table, column)?.to_owned();
            if column.starts_with('_') {
                return Err(refuse(format!(
                    "cannot modify read-only column {column} in table {table}"
                )));
            }
            let ty = &schema.tables[&table].columns[&column];
            let datum =
                datum_from_user(value, ty).map_err(|e| refuse(format!("{table}.{column}: {e}")))?;
            if MONITORED.contains(&table.as_str()) {
                return self
                    .write(
                        format!("set {table} {record} {column}"),
                        |r, _| match lookup(r, &table, record) {
                            Some((u, _)) => {
                                let mut t = Txn::default();
                                t.update(&table, u, json!({ &column: datum.to_json() }));
                                Ok(Plan::Txn(t))
                            }
                            None if if_exists => Ok(Plan::Done),
                            None => Err(no_row(&table, record)),
                        },
                    )
                    .await;
            }
            let uuid = match self.fetch_row(&schema, &table, record).await? {
                Some((u, _)) => u,
                None if if_exists => return Ok(()),
                None => return Err(no_row(&table, record)),
            };
            self.write(format!("set {table} {record} {column}"), |_, _| {
                let mut t = Txn::default();
                t.update(&table, &uuid, json!({ &column: datum.to_json() }));
                Ok(Plan::Txn(t))
            })
            .await
        }
        .await;
        match res {
            Ok(()) => Ok(None),
            Err(e) if is_refusal(&e) => Ok(Some(e.to_string())),
            Err(e) => Err(e),
        }
    }
}

fn plan_add_br(
    r: &Replica,
    s: &Schema,
    br: &str,
    may_exist: bool,
    parent: Option<(&str, i64)>,
) -> Result<Plan, OvsdbError> {
    s.require("openvswitch.bridge_create", CORE)?;
    if parent.is_some() {
        s.require("openvswitch.bridge_create with a parent", FAKE)?;
    }
    nonempty("bridge", br)?;
    if let Some((_, vlan)) = parent {
        if !(0..=4095).contains(&vlan) {
            return Err(refuse(format!(
                "vlan must be between 0 and 4095 (got {vlan})"
            )));
        }
    }
    let view = r.view();
    if let Some(b) = view.bridges.get(br) {
        if !may_exist {
            return Err(refuse(format!(
                "cannot create a bridge named {br} because a bridge named {br} already exists"
            )));
        }
        let cmd = match parent {
            Some((p, v)) => format!("\"--may-exist add-br {br} {p} {v}\""),
            None => format!("\"--may-exist add-br {br}\""),
        };
        return match (parent, &b.parent) {
            (None, None) => Ok(Plan::Done),
            (None, Some(_)) => Err(refuse(format!(
                "{cmd} but {br} is a VLAN bridge for VLAN {}",
                b.vlan
            ))),
            (Some(_), None) => Err(refuse(format!("{cmd} but {br} is not a VLAN bridge"))),
            (Some((p, _)), Some(bp)) if bp != p => {
                Err(refuse(format!("{cmd} but {br} has the wrong parent {bp}")))
            }
            (Some((_, v)), Some(_)) if b.vlan != v => Err(refuse(format!(
                "{cmd} but {br} is a VLAN bridge for the wrong VLAN {}",
                b.vlan
            ))),
            _ => Ok(Plan::Done),
        };
    }
    if r.by_name("Port", br).is_some() {
        let on = view.port_bridge.get(br).map(String::as_str).unwrap_or("?");
        return Err(refuse(format!(
            "cannot create a bridge named {br} because a port named {br} already exists on bridge {on}"
        )));
    }
    if r.by_name("Interface", br).is_some() {
        return Err(refuse(format!(
            "cannot create a bridge named {br} because an interface named {br} already exists"
        )));
    }
    let mut t = Txn::default();
    t.insert(
        "Interface",
        json!({"name": br, "type": "internal"}),
        "iface",
    );
    match parent {
        None => {
            let (root, row) = r.root().ok_or_else(|| {
                OvsdbError::NotFound("the Open_vSwitch table is empty (run ovs-vsctl init)".into())
            })?;
            t.wait(
                "Open_vSwitch",
                root,
                "bridges",
                &col(row, s, "Open_vSwitch", "bridges"),
            );
            t.insert(
                "Port",
                json!({"name": br, "interfaces": ["named-uuid", "iface"]}),
                "port",
            );
            t.insert(
                "Bridge",
                json!({"name": br, "ports": ["named-uuid", "port"]}),
                "bridge",
            );
            t.mutate(
                "Open_vSwitch",
                root,
                json!([["bridges", "insert", ["named-uuid", "bridge"]]]),
            );
        }
        Some((p, vlan)) => {
            let Some(pb) = view.bridges.get(p) else {
                return Err(OvsdbError::NotFound(format!("no bridge named {p}")));
            };
            if pb.parent.is_some() {
                return Err(refuse(
                    "cannot create bridge with fake bridge as parent".into(),
                ));
            }
            let row = r
                .row("Bridge", &pb.row)
                .ok_or_else(|| OvsdbError::NotFound(format!("no bridge named {p}")))?;
            t.wait("Bridge", &pb.row, "ports", &col(row, s, "Bridge", "ports"));
            t.insert(
                "Port",
                json!({"name": br, "interfaces": ["named-uuid", "iface"], "tag": vlan, "fake_bridge": true}),
                "port",
            );
            t.mutate(
                "Bridge",
                &pb.row,
                json!([["ports", "insert", ["named-uuid", "port"]]]),
            );
        }
    }
    Ok(Plan::Txn(t))
}

fn plan_del_br(r: &Replica, s: &Schema, br: &str, if_exists: bool) -> Result<Plan, OvsdbError> {
    s.require("openvswitch.bridge_delete", CORE)?;
    let view = r.view();
    let Some(b) = view.bridges.get(br) else {
        return if if_exists {
            Ok(Plan::Done)
        } else {
            Err(OvsdbError::NotFound(format!("no bridge named {br}")))
        };
    };
    let brow = r
        .row("Bridge", &b.row)
        .ok_or_else(|| OvsdbError::NotFound(format!("no bridge named {br}")))?;
    let all_ports = replica::uuids(brow, "ports");
    let ports: Vec<&str> = match &b.parent {
        None => all_ports,
        Some(_) => all_ports
            .into_iter()
            .filter(|u| {
                r.row("Port", u)
                    .is_some_and(|p| b.ports.contains(replica::name(p)))
            })
            .collect(),
    };
    let mut t = Txn::default();
    match &b.parent {
        None => {
            let (root, row) = r
                .root()
                .ok_or_else(|| OvsdbError::NotFound("the Open_vSwitch table is empty".into()))?;
            t.wait(
                "Open_vSwitch",
                root,
                "bridges",
                &col(row, s, "Open_vSwitch", "bridges"),
            );
            t.mutate(
                "Open_vSwitch",
                root,
                json!([["bridges", "delete", ["uuid", &b.row]]]),
            );
            t.delete("Bridge", &b.row);
        }
        Some(_) => {
            t.wait("Bridge", &b.row, "ports", &col(brow, s, "Bridge", "ports"));
            t.mutate(
                "Bridge",
                &b.row,
                json!([["ports", "delete", uuid_set(&ports)]]),
            );
        }
    }
    for p in &ports {
        if let Some(prow) = r.row("Port", p) {
            t.delete("Port", p);
            for i in replica::uuids(prow, "interfaces") {
                t.delete("Interface", i);
            }
        }
    }
    Ok(Plan::Txn(t))
}

fn plan_add_port(
    r: &Replica,
    s: &Schema,
    br: &str,
    port: &str,
    may_exist: bool,
    settings: &PortSettings,
) -> Result<Plan, OvsdbError> {
    s.require("openvswitch.port_add", CORE)?;
    if settings.tag.is_some() {
        s.require("openvswitch.port_add with a VLAN tag", TAG)?;
    }
    if !settings.options.is_empty() {
        s.require("openvswitch.port_add with interface options", OPTIONS)?;
    }
    nonempty("port", port)?;
    let view = r.view();
    if r.by_name("Port", port).is_some() {
        let on = view
            .port_bridge
            .get(port)
            .map(String::as_str)
            .unwrap_or("?");
        if !may_exist {
            return Err(refuse(format!(
                "cannot create a port named {port} because a port named {port} already exists on bridge {on}"
            )));
        }
        if on != br {
            return Err(refuse(format!(
                "\"--may-exist add-port {br} {port}\" but {port} is actually attached to bridge {on}"
            )));
        }
        return Ok(Plan::Done);
    }
    if view.bridges.contains_key(port) {
        return Err(refuse(format!(
            "cannot create a port named {port} because a bridge named {port} already exists"
        )));
    }
    let Some(b) = view.bridges.get(br) else {
        return Err(OvsdbError::NotFound(format!("no bridge named {br}")));
    };
    if r.by_name("Interface", port).is_some() {
        return Err(refuse(format!(
            "cannot create an interface named {port} because an interface named {port} already exists"
        )));
    }
    let brow = r
        .row("Bridge", &b.row)
        .ok_or_else(|| OvsdbError::NotFound(format!("no bridge named {br}")))?;
    let mut iface = Map::new();
    iface.insert("name".into(), json!(port));
    if let Some(ty) = &settings.iface_type {
        iface.insert("type".into(), json!(ty));
    }
    if !settings.options.is_empty() {
        iface.insert("options".into(), options_map(&settings.options));
    }
    let mut prow = Map::new();
    prow.insert("name".into(), json!(port));
    prow.insert("interfaces".into(), json!(["named-uuid", "iface"]));
    // A port added to a fake bridge carries its VLAN, as with ovs-vsctl.
    let tag = settings.tag.or(b.parent.as_ref().map(|_| b.vlan));
    if let Some(tag) = tag {
        if !(0..=4095).contains(&tag) {
            return Err(refuse(format!(
                "tag must be between 0 and 4095 (got {tag})"
            )));
        }
        s.require("openvswitch.port_add with a VLAN tag", TAG)?;
        prow.insert("tag".into(), json!(tag));
    }
    let mut t = Txn::default();
    t.wait("Bridge", &b.row, "ports", &col(brow, s, "Bridge", "ports"));
    t.insert("Interface", Value::Object(iface), "iface");
    t.insert("Port", Value::Object(prow), "port");
    t.mutate(
        "Bridge",
        &b.row,
        json!([["ports", "insert", ["named-uuid", "port"]]]),
    );
    Ok(Plan::Txn(t))
}

/// Reconfigures an existing port and its interface of the same name.
fn plan_set_port(
    r: &Replica,
    s: &Schema,
    port: &str,
    settings: &PortSettings,
) -> Result<Plan, OvsdbError> {
    s.require("openvswitch.port_create", CORE)?;
    let (pu, _) = r
        .by_name("Port", port)
        .ok_or_else(|| OvsdbError::NotFound(format!("no port named {port}")))?;
    let mut t = Txn::default();
    if let Some(tag) = settings.tag {
        s.require("openvswitch.port_create_vlan", TAG)?;
        t.update("Port", pu, json!({"tag": tag}));
    }
    if settings.iface_type.is_some() || !settings.options.is_empty() {
        let (iu, _) = r
            .by_name("Interface", port)
            .ok_or_else(|| OvsdbError::NotFound(format!("no row \"{port}\" in table Interface")))?;
        if let Some(ty) = &settings.iface_type {
            t.update("Interface", iu, json!({"type": ty}));
        }
        if !settings.options.is_empty() {
            s.require("openvswitch.port_create", OPTIONS)?;
            let keys: Vec<Value> = settings.options.iter().map(|(k, _)| json!(k)).collect();
            t.mutate(
                "Interface",
                iu,
                json!([
                    ["options", "delete", ["set", keys]],
                    ["options", "insert", options_map(&settings.options)]
                ]),
            );
        }
    }
    if t.ops.is_empty() {
        return Ok(Plan::Done);
    }
    Ok(Plan::Txn(t))
}

fn plan_del_port(
    r: &Replica,
    s: &Schema,
    br: Option<&str>,
    port: &str,
    if_exists: bool,
) -> Result<Plan, OvsdbError> {
    s.require("openvswitch.port_remove", CORE)?;
    let view = r.view();
    if let Some(b) = br {
        if !view.bridges.contains_key(b) {
            return Err(OvsdbError::NotFound(format!("no bridge named {b}")));
        }
    }
    let Some((pu, prow, home)) = port_home(r, port) else {
        return if if_exists {
            Ok(Plan::Done)
        } else {
            Err(OvsdbError::NotFound(format!("no port named {port}")))
        };
    };
    let on = view.port_bridge.get(port).cloned().unwrap_or_default();
    if let Some(b) = br {
        if on != b {
            let child = view
                .bridges
                .get(&on)
                .and_then(|x| x.parent.as_deref())
                .is_some_and(|p| p == b);
            return Err(refuse(if child {
                format!(
                    "bridge {b} does not have a port {port} (although its child bridge {on} does)"
                )
            } else {
                format!("bridge {b} does not have a port {port}")
            }));
        }
    }
    if on == port {
        return Err(refuse(format!(
            "cannot delete port {port} because it is the local port for bridge {on} \
             (deleting this port requires deleting the entire bridge)"
        )));
    }
    let Some(home) = home else {
        return Err(OvsdbError::NotFound(format!("no port named {port}")));
    };
    let brow = r
        .row("Bridge", home)
        .ok_or_else(|| OvsdbError::NotFound(format!("no port named {port}")))?;
    let mut t = Txn::default();
    t.wait("Bridge", home, "ports", &col(brow, s, "Bridge", "ports"));
    t.mutate("Bridge", home, json!([["ports", "delete", ["uuid", pu]]]));
    t.delete("Port", pu);
    for i in replica::uuids(prow, "interfaces") {
        t.delete("Interface", i);
    }
    Ok(Plan::Txn(t))
}

fn options_map(options: &[(String, String)]) -> Value {
    json!([
        "map",
        options
            .iter()
            .map(|(k, v)| json!([k, v]))
            .collect::<Vec<_>>()
    ])
}
