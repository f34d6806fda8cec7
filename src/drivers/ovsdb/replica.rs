//! The local replica of the monitored tables (`Open_vSwitch`, `Bridge`, `Port`,
//! `Interface`), built from the `monitor_cond` (or `monitor`) reply and kept
//! current by `update2` (or `update`) notifications, so reads need no round trip.
//! [`Replica::view`] derives what `ovs-vsctl` calls bridges from it: real bridges,
//! and fake (VLAN) bridges, which are ports with `fake_bridge=true` and a tag.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::datum::{Atom, Datum};
use super::schema::{AtomicType, ColumnType, Schema};

/// The tables the replica monitors, every column of each.
pub const MONITORED: [&str; 4] = ["Open_vSwitch", "Bridge", "Port", "Interface"];

/// One row: column name to value. A column missing from the row has its default
/// value (the server leaves defaults out of `update2` inserts).
pub type Row = HashMap<String, Datum>;

#[derive(Debug, Clone, Default)]
pub struct Replica {
    pub tables: HashMap<String, BTreeMap<String, Row>>,
}

/// The default value of a column type: empty, or 0 / "" / false for scalars.
pub fn default_datum(ty: &ColumnType) -> Datum {
    if ty.min == 0 {
        return if ty.is_map() {
            Datum::Map(Vec::new())
        } else {
            Datum::Set(Vec::new())
        };
    }
    Datum::atom(match ty.key.atomic {
        AtomicType::Integer => Atom::Integer(0),
        AtomicType::Real => Atom::Real(0.0),
        AtomicType::Boolean => Atom::Boolean(false),
        AtomicType::String => Atom::String(String::new()),
        AtomicType::Uuid => Atom::Uuid("00000000-0000-0000-0000-000000000000".into()),
    })
}

/// A bridge as `ovs-vsctl` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VBridge {
    pub name: String,
    /// The real bridge's row (the parent's, for a fake bridge).
    pub row: String,
    pub parent: Option<String>,
    pub vlan: i64,
    /// Names of the ports that belong to this bridge, its own port included.
    pub ports: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct View {
    pub bridges: BTreeMap<String, VBridge>,
    /// Port name to the name of the bridge it belongs to.
    pub port_bridge: HashMap<String, String>,
}

impl Replica {
    /// Applies the monitor reply or an update notification's table updates: the
    /// `update2` form when `v2`, RFC 7047's `update` form otherwise.
    pub fn apply(&mut self, updates: &Value, schema: &Schema, v2: bool) -> Result<(), String> {
        let tables = updates
            .as_object()
            .ok_or("table updates are not an object")?;
        for (tname, rows) in tables {
            let rows = rows
                .as_object()
                .ok_or_else(|| format!("updates of {tname} are not an object"))?;
            let tschema = schema
                .tables
                .get(tname)
                .ok_or_else(|| format!("update for unknown table {tname}"))?;
            let table = self.tables.entry(tname.clone()).or_default();
            for (uuid, change) in rows {
                if !super::datum::is_uuid(uuid) {
                    return Err(format!("{tname}: row id {uuid:?} is not a UUID"));
                }
                let change = change
                    .as_object()
                    .ok_or_else(|| format!("{tname} {uuid}: change is not an object"))?;
                if v2 {
                    if let Some(row) = change.get("initial").or_else(|| change.get("insert")) {
                        table.insert(uuid.clone(), parse_row(row)?);
                    } else if let Some(diff) = change.get("modify") {
                        let row = table.entry(uuid.clone()).or_default();
                        let diff = diff
                            .as_object()
                            .ok_or_else(|| format!("{tname} {uuid}: modify is not an object"))?;
                        for (col, d) in diff {
                            let ty = tschema
                                .columns
                                .get(col)
                                .ok_or_else(|| format!("{tname}: unknown column {col}"))?;
                            let d = Datum::from_json(d)?;
                            let cur = row.entry(col.clone()).or_insert_with(|| default_datum(ty));
                            cur.apply_diff(d, ty)
                                .map_err(|e| format!("{tname}.{col}: {e}"))?;
                        }
                    } else if change.contains_key("delete") {
                        table.remove(uuid);
                    } else {
                        return Err(format!("{tname} {uuid}: unknown change"));
                    }
                } else {
                    match change.get("new") {
                        Some(new) => {
                            let new = parse_row(new)?;
                            table.entry(uuid.clone()).or_default().extend(new);
                        }
                        None => {
                            table.remove(uuid);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub fn table(&self, name: &str) -> impl Iterator<Item = (&String, &Row)> {
        self.tables.get(name).into_iter().flatten()
    }

    pub fn row(&self, table: &str, uuid: &str) -> Option<&Row> {
        self.tables.get(table)?.get(uuid)
    }

    /// The row of `table` whose `name` column is `name`.
    pub fn by_name(&self, table: &str, name: &str) -> Option<(&String, &Row)> {
        self.table(table)
            .find(|(_, r)| r.get("name").and_then(Datum::str) == Some(name))
    }

    /// The `Open_vSwitch` table's one row.
    pub fn root(&self) -> Option<(&String, &Row)> {
        self.table("Open_vSwitch").next()
    }

    /// Bridges and their ports as `ovs-vsctl` computes them.
    pub fn view(&self) -> View {
        let mut v = View::default();
        let Some((_, root)) = self.root() else {
            return v;
        };
        let mut real: Vec<(&str, &Row)> = uuids(root, "bridges")
            .into_iter()
            .filter_map(|u| self.row("Bridge", u).map(|r| (u, r)))
            .collect();
        real.sort_by(|a, b| name(a.1).cmp(name(b.1)));
        for (uuid, br) in &real {
            let n = name(br).to_owned();
            v.bridges.entry(n.clone()).or_insert(VBridge {
                name: n,
                row: (*uuid).to_owned(),
                parent: None,
                vlan: 0,
                ports: BTreeSet::new(),
            });
        }
        for (uuid, br) in &real {
            for p in uuids(br, "ports") {
                let Some(port) = self.row("Port", p) else {
                    continue;
                };
                let fake = port.get("fake_bridge").and_then(Datum::bool) == Some(true);
                if let (true, Some(tag)) = (fake, vlan_tag(port)) {
                    let pn = name(port).to_owned();
                    v.bridges.entry(pn.clone()).or_insert(VBridge {
                        name: pn,
                        row: (*uuid).to_owned(),
                        parent: Some(name(br).to_owned()),
                        vlan: tag,
                        ports: BTreeSet::new(),
                    });
                }
            }
        }
        for (_, br) in &real {
            let bname = name(br);
            for p in uuids(br, "ports") {
                let Some(port) = self.row("Port", p) else {
                    continue;
                };
                let pn = name(port);
                if v.port_bridge.contains_key(pn) {
                    continue;
                }
                let target = vlan_tag(port)
                    .and_then(|tag| {
                        v.bridges
                            .values()
                            .find(|b| b.parent.as_deref() == Some(bname) && b.vlan == tag)
                            .map(|b| b.name.clone())
                    })
                    .unwrap_or_else(|| bname.to_owned());
                if let Some(b) = v.bridges.get_mut(&target) {
                    b.ports.insert(pn.to_owned());
                    v.port_bridge.insert(pn.to_owned(), target);
                }
            }
        }
        v
    }

    /// (Bridge rows, interfaces whose link is down), for the fleet-wide gauges.
    pub fn counts(&self) -> (i64, i64) {
        let bridges = self.table("Bridge").count() as i64;
        let down = self
            .table("Interface")
            .filter(|(_, r)| r.get("link_state").and_then(Datum::str) == Some("down"))
            .count() as i64;
        (bridges, down)
    }
}

fn parse_row(v: &Value) -> Result<Row, String> {
    let o = v.as_object().ok_or("row is not an object")?;
    o.iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                Datum::from_json(v).map_err(|e| format!("{k}: {e}"))?,
            ))
        })
        .collect()
}

pub fn name(r: &Row) -> &str {
    r.get("name").and_then(Datum::str).unwrap_or("")
}

pub fn uuids<'a>(r: &'a Row, col: &str) -> Vec<&'a str> {
    r.get(col).map(Datum::uuids).unwrap_or_default()
}

/// A port's VLAN tag when it has exactly one in 0..=4095.
pub fn vlan_tag(port: &Row) -> Option<i64> {
    match port.get("tag") {
        Some(Datum::Set(a)) if a.len() == 1 => a[0].as_i64().filter(|t| (0..=4095).contains(t)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OVS: &str = "00000000-0000-0000-0000-000000000001";
    const BR0: &str = "00000000-0000-0000-0000-0000000000b0";
    const P0: &str = "00000000-0000-0000-0000-0000000000c0";
    const P1: &str = "00000000-0000-0000-0000-0000000000c1";
    const F5: &str = "00000000-0000-0000-0000-0000000000c5";
    const Q1: &str = "00000000-0000-0000-0000-0000000000d1";

    fn schema() -> Schema {
        let text = std::fs::read_to_string("/usr/share/openvswitch/vswitch.ovsschema")
            .unwrap_or_else(|_| TEST_SCHEMA.to_owned());
        Schema::parse(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    /// Enough of vswitch.ovsschema for these tests on machines without OVS.
    const TEST_SCHEMA: &str = r#"{"name": "Open_vSwitch", "version": "8.3.1", "tables": {
        "Open_vSwitch": {"columns": {"bridges": {"type": {"key": {"type": "uuid", "refTable": "Bridge"}, "min": 0, "max": "unlimited"}}}},
        "Bridge": {"columns": {"name": {"type": "string"}, "ports": {"type": {"key": {"type": "uuid", "refTable": "Port"}, "min": 0, "max": "unlimited"}}}},
        "Port": {"columns": {"name": {"type": "string"}, "tag": {"type": {"key": {"type": "integer"}, "min": 0, "max": 1}},
                 "fake_bridge": {"type": "boolean"}, "interfaces": {"type": {"key": {"type": "uuid", "refTable": "Interface"}, "min": 1, "max": "unlimited"}}}},
        "Interface": {"columns": {"name": {"type": "string"}, "link_state": {"type": {"key": {"type": "string"}, "min": 0, "max": 1}}}}
    }}"#;

    fn sample() -> Replica {
        let mut r = Replica::default();
        r.apply(
            &json!({
                "Open_vSwitch": {OVS: {"initial": {"bridges": ["uuid", BR0]}}},
                "Bridge": {BR0: {"initial": {"name": "br0", "ports": ["set", [["uuid", P0], ["uuid", P1], ["uuid", F5], ["uuid", Q1]]]}}},
                "Port": {
                    P0: {"initial": {"name": "br0"}},
                    P1: {"initial": {"name": "p1", "tag": 7}},
                    F5: {"initial": {"name": "fake5", "tag": 5, "fake_bridge": true}},
                    Q1: {"initial": {"name": "q1", "tag": 5}}
                }
            }),
            &schema(),
            true,
        )
        .unwrap();
        r
    }

    #[test]
    fn view_has_real_and_fake_bridges_like_ovs_vsctl() {
        let v = sample().view();
        assert_eq!(v.bridges.keys().collect::<Vec<_>>(), ["br0", "fake5"]);
        let f = &v.bridges["fake5"];
        assert_eq!((f.parent.as_deref(), f.vlan), (Some("br0"), 5));
        assert_eq!(
            v.bridges["br0"].ports.iter().collect::<Vec<_>>(),
            ["br0", "p1"]
        );
        assert_eq!(f.ports.iter().collect::<Vec<_>>(), ["fake5", "q1"]);
        assert_eq!(v.port_bridge["q1"], "fake5");
    }

    #[test]
    fn updates_modify_and_delete() {
        let s = schema();
        let mut r = sample();
        r.apply(
            &json!({"Port": {P1: {"modify": {"tag": 9}}, Q1: {"delete": null}},
                    "Bridge": {BR0: {"modify": {"ports": ["uuid", Q1]}}}}),
            &s,
            true,
        )
        .unwrap();
        assert_eq!(vlan_tag(r.row("Port", P1).unwrap()), Some(9));
        assert!(r.row("Port", Q1).is_none());
        assert_eq!(uuids(r.row("Bridge", BR0).unwrap(), "ports").len(), 3);
        // RFC 7047 "update": new rows replace, a missing "new" deletes.
        r.apply(
            &json!({"Port": {P1: {"old": {"tag": 9}, "new": {"name": "p1", "tag": ["set", []]}}, P0: {"old": {}}}}),
            &s,
            false,
        )
        .unwrap();
        assert_eq!(vlan_tag(r.row("Port", P1).unwrap()), None);
        assert!(r.row("Port", P0).is_none());
        for bad in [
            json!([]),
            json!({"Nope": {}}),
            json!({"Port": {"not-a-uuid": {"insert": {}}}}),
            json!({"Port": {P1: {"modify": {"nosuch": 1}}}}),
            json!({"Port": {P1: {"modify": {"interfaces": ["map", [[1, 2]]]}}}}),
            json!({"Port": {P1: {"what": {}}}}),
        ] {
            assert!(r.apply(&bad, &s, true).is_err(), "{bad}");
        }
    }
}
