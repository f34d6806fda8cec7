//! The server's database schema as far as Drover needs it: tables, column types
//! and the version, parsed from `get_schema`; and the check every write makes
//! before it is sent ([`Schema::require`]): the columns it uses must exist with the
//! types it was written for, in a schema of the major version it was written
//! against.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use super::OvsdbError;

/// The `Open_vSwitch` schema the writes were written and tested against
/// (Open vSwitch 3.1). Schema versions are `major.minor.patch`; a new major version
/// may change meanings, so writes refuse it instead of guessing.
pub const WRITTEN_AGAINST: Version = Version(8, 3, 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Version, String> {
        let mut it = s.split('.').map(|p| p.parse::<u32>());
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Ok(Version(a, b, c)),
            _ => Err(format!("schema version {s:?} is not x.y.z")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicType {
    Integer,
    Real,
    Boolean,
    String,
    Uuid,
}

impl AtomicType {
    fn parse(s: &str) -> Option<AtomicType> {
        Some(match s {
            "integer" => AtomicType::Integer,
            "real" => AtomicType::Real,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            "uuid" => AtomicType::Uuid,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AtomicType::Integer => "integer",
            AtomicType::Real => "real",
            AtomicType::Boolean => "boolean",
            AtomicType::String => "string",
            AtomicType::Uuid => "uuid",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BaseType {
    pub atomic: AtomicType,
    pub ref_table: Option<String>,
}

/// A column's type: a key type, an optional value type (a map), and how many
/// elements it holds (`max` is `u64::MAX` for "unlimited").
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    pub key: BaseType,
    pub value: Option<BaseType>,
    pub min: u64,
    pub max: u64,
}

impl ColumnType {
    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }

    /// Exactly one value (not optional, not a set).
    pub fn is_scalar(&self) -> bool {
        self.min == 1 && self.max == 1 && self.value.is_none()
    }

    fn atomic(atomic: AtomicType) -> ColumnType {
        ColumnType {
            key: BaseType {
                atomic,
                ref_table: None,
            },
            value: None,
            min: 1,
            max: 1,
        }
    }

    fn parse(v: &Value) -> Result<ColumnType, String> {
        match v {
            Value::String(s) => AtomicType::parse(s)
                .map(ColumnType::atomic)
                .ok_or_else(|| format!("unknown type {s:?}")),
            Value::Object(o) => {
                let key = base_type(o.get("key").ok_or("type without \"key\"")?)?;
                let value = o.get("value").map(base_type).transpose()?;
                let min = match o.get("min") {
                    None => 1,
                    Some(m) => m.as_u64().ok_or("bad \"min\"")?,
                };
                let max = match o.get("max") {
                    None => 1,
                    Some(Value::String(s)) if s == "unlimited" => u64::MAX,
                    Some(m) => m.as_u64().ok_or("bad \"max\"")?,
                };
                Ok(ColumnType {
                    key,
                    value,
                    min,
                    max,
                })
            }
            _ => Err("type is neither a string nor an object".into()),
        }
    }
}

fn base_type(v: &Value) -> Result<BaseType, String> {
    match v {
        Value::String(s) => Ok(BaseType {
            atomic: AtomicType::parse(s).ok_or_else(|| format!("unknown type {s:?}"))?,
            ref_table: None,
        }),
        Value::Object(o) => {
            let t = o.get("type").and_then(Value::as_str).ok_or("no \"type\"")?;
            Ok(BaseType {
                atomic: AtomicType::parse(t).ok_or_else(|| format!("unknown type {t:?}"))?,
                ref_table: o.get("refTable").and_then(Value::as_str).map(str::to_owned),
            })
        }
        _ => Err("base type is neither a string nor an object".into()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub columns: HashMap<String, ColumnType>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub name: String,
    pub version: Version,
    pub tables: HashMap<String, TableSchema>,
}

/// One column a write uses, with the key type it writes.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    pub table: &'static str,
    pub column: &'static str,
    pub atomic: AtomicType,
}

pub const fn need(table: &'static str, column: &'static str, atomic: AtomicType) -> Need {
    Need {
        table,
        column,
        atomic,
    }
}

impl Schema {
    pub fn parse(v: &Value) -> Result<Schema, OvsdbError> {
        let bad = |m: String| OvsdbError::Malformed(format!("get_schema: {m}"));
        let o = v.as_object().ok_or_else(|| bad("not an object".into()))?;
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no name".into()))?
            .to_owned();
        let version = o
            .get("version")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no version".into()))?
            .parse()
            .map_err(bad)?;
        let mut tables = HashMap::new();
        let raw = o
            .get("tables")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no tables".into()))?;
        for (tname, t) in raw {
            let cols = t
                .get("columns")
                .and_then(Value::as_object)
                .ok_or_else(|| bad(format!("table {tname} has no columns")))?;
            let mut columns = HashMap::with_capacity(cols.len() + 2);
            for (cname, c) in cols {
                let ty = c
                    .get("type")
                    .ok_or_else(|| bad(format!("{tname}.{cname} has no type")))
                    .and_then(|t| {
                        ColumnType::parse(t).map_err(|e| bad(format!("{tname}.{cname}: {e}")))
                    })?;
                columns.insert(cname.clone(), ty);
            }
            // Every table has these two, though the schema does not list them.
            columns.insert("_uuid".into(), ColumnType::atomic(AtomicType::Uuid));
            columns.insert("_version".into(), ColumnType::atomic(AtomicType::Uuid));
            tables.insert(tname.clone(), TableSchema { columns });
        }
        Ok(Schema {
            name,
            version,
            tables,
        })
    }

    pub fn column(&self, table: &str, column: &str) -> Option<&ColumnType> {
        self.tables.get(table)?.columns.get(column)
    }

    /// Checks that this schema can take the write `op`, which uses `needs`.
    pub fn require(&self, op: &str, needs: &[Need]) -> Result<(), OvsdbError> {
        if self.version.0 != WRITTEN_AGAINST.0 {
            return Err(OvsdbError::Schema(format!(
                "{op} was written against {} schema {} (major version {}); the server's is {}, \
                 whose meaning may differ, so Drover does not write to it",
                self.name, WRITTEN_AGAINST, WRITTEN_AGAINST.0, self.version
            )));
        }
        for n in needs {
            match self.column(n.table, n.column) {
                None => {
                    return Err(OvsdbError::Schema(format!(
                        "{op} needs column {}.{}, which the server's {} schema {} lacks \
                         (Drover's writes were written against schema {})",
                        n.table, n.column, self.name, self.version, WRITTEN_AGAINST
                    )))
                }
                Some(t) if t.key.atomic != n.atomic => {
                    return Err(OvsdbError::Schema(format!(
                    "{op} writes column {}.{} as {}, but the server's {} schema {} has it as {}",
                    n.table,
                    n.column,
                    n.atomic.name(),
                    self.name,
                    self.version,
                    t.key.atomic.name()
                )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(version: &str) -> Schema {
        Schema::parse(&json!({
            "name": "Open_vSwitch",
            "version": version,
            "tables": {
                "Port": {"columns": {
                    "name": {"type": "string"},
                    "tag": {"type": {"key": {"type": "integer", "minInteger": 0, "maxInteger": 4095}, "min": 0, "max": 1}},
                    "interfaces": {"type": {"key": {"type": "uuid", "refTable": "Interface"}, "min": 1, "max": "unlimited"}},
                    "other_config": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}
                }}
            }
        }))
        .unwrap()
    }

    #[test]
    fn parses_column_types() {
        let s = schema("8.3.1");
        assert_eq!(s.version, Version(8, 3, 1));
        let tag = s.column("Port", "tag").unwrap();
        assert_eq!((tag.min, tag.max, tag.is_map()), (0, 1, false));
        let ifs = s.column("Port", "interfaces").unwrap();
        assert_eq!(ifs.max, u64::MAX);
        assert_eq!(ifs.key.ref_table.as_deref(), Some("Interface"));
        assert!(s.column("Port", "other_config").unwrap().is_map());
        assert!(s.column("Port", "name").unwrap().is_scalar());
        assert!(s.column("Port", "_uuid").is_some());
    }

    #[test]
    fn require_names_the_missing_column_and_versions() {
        let s = schema("8.3.1");
        s.require("x", &[need("Port", "tag", AtomicType::Integer)])
            .unwrap();
        let e = s
            .require(
                "bridge_create",
                &[need("Port", "fake_bridge", AtomicType::Boolean)],
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("Port.fake_bridge") && e.contains("8.3.1"), "{e}");
        let e = s
            .require("x", &[need("Port", "tag", AtomicType::String)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("as string"), "{e}");
        let e = schema("9.0.0").require("x", &[]).unwrap_err().to_string();
        assert!(e.contains("9.0.0"), "{e}");
        assert!(Schema::parse(&json!({"name": "x", "version": "1.2", "tables": {}})).is_err());
    }
}
