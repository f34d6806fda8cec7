//! OVSDB values: atoms and datums (sets and maps), read from and written to the
//! wire's JSON notation (`["set", [...]]`, `["map", [[k, v], ...]]`,
//! `["uuid", "..."]`), printed as `ovs-vsctl get` prints them, shaped as Salt's
//! `openvswitch.db_get` returns them, and built from a user's JSON value for a
//! column of a known type (`db_set`).

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::schema::{AtomicType, BaseType, ColumnType};

#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    Integer(i64),
    Real(f64),
    Boolean(bool),
    String(String),
    Uuid(String),
    /// A row inserted earlier in the same transaction (`uuid-name`).
    NamedUuid(String),
}

impl Atom {
    pub fn from_json(v: &Value) -> Result<Atom, String> {
        match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Atom::Integer(i)),
                None => n
                    .as_f64()
                    .map(Atom::Real)
                    .ok_or_else(|| format!("number {n} out of range")),
            },
            Value::Bool(b) => Ok(Atom::Boolean(*b)),
            Value::String(s) => Ok(Atom::String(s.clone())),
            Value::Array(a) => match (a.first().and_then(Value::as_str), a.get(1), a.len()) {
                (Some("uuid"), Some(Value::String(u)), 2) if is_uuid(u) => {
                    Ok(Atom::Uuid(u.clone()))
                }
                (Some("named-uuid"), Some(Value::String(u)), 2) => Ok(Atom::NamedUuid(u.clone())),
                _ => Err(format!("{v} is not an atom")),
            },
            _ => Err(format!("{v} is not an atom")),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u]),
            Atom::NamedUuid(u) => json!(["named-uuid", u]),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_uuid(&self) -> Option<&str> {
        match self {
            Atom::Uuid(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// As `ovs-vsctl` prints it: strings bare when they read back unambiguously,
    /// JSON-quoted otherwise.
    pub fn to_text(&self) -> String {
        match self {
            Atom::Integer(i) => i.to_string(),
            Atom::Real(r) => format_real(*r),
            Atom::Boolean(b) => b.to_string(),
            Atom::String(s) => {
                if needs_quotes(s) {
                    Value::String(s.clone()).to_string()
                } else {
                    s.clone()
                }
            }
            Atom::Uuid(u) | Atom::NamedUuid(u) => u.clone(),
        }
    }

    /// The atom's JSON as `ovs-vsctl --format=json` prints it inside a map key
    /// position, turned into an object key the way Python's `json` would.
    fn key_text(&self) -> String {
        match self {
            Atom::String(s) => s.clone(),
            other => other.to_text(),
        }
    }
}

/// OVSDB's total order on atoms of one type (sets and maps are kept sorted).
pub fn atom_cmp(a: &Atom, b: &Atom) -> Ordering {
    match (a, b) {
        (Atom::Integer(x), Atom::Integer(y)) => x.cmp(y),
        (Atom::Real(x), Atom::Real(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Atom::Boolean(x), Atom::Boolean(y)) => x.cmp(y),
        (Atom::String(x), Atom::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Atom::Uuid(x), Atom::Uuid(y)) | (Atom::NamedUuid(x), Atom::NamedUuid(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn rank(a: &Atom) -> u8 {
    match a {
        Atom::Integer(_) => 0,
        Atom::Real(_) => 1,
        Atom::Boolean(_) => 2,
        Atom::String(_) => 3,
        Atom::Uuid(_) => 4,
        Atom::NamedUuid(_) => 5,
    }
}

/// A column's value: a set (a scalar is a set of one) or a map.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Set(Vec<Atom>),
    Map(Vec<(Atom, Atom)>),
}

impl Default for Datum {
    fn default() -> Datum {
        Datum::Set(Vec::new())
    }
}

impl Datum {
    pub fn atom(a: Atom) -> Datum {
        Datum::Set(vec![a])
    }

    pub fn from_json(v: &Value) -> Result<Datum, String> {
        if let Value::Array(a) = v {
            match (a.first().and_then(Value::as_str), a.get(1), a.len()) {
                (Some("set"), Some(Value::Array(items)), 2) => {
                    let atoms = items
                        .iter()
                        .map(Atom::from_json)
                        .collect::<Result<Vec<_>, _>>()?;
                    return Ok(Datum::Set(atoms).normalised());
                }
                (Some("map"), Some(Value::Array(pairs)), 2) => {
                    let mut out = Vec::with_capacity(pairs.len());
                    for p in pairs {
                        match p.as_array().map(Vec::as_slice) {
                            Some([k, v]) => out.push((Atom::from_json(k)?, Atom::from_json(v)?)),
                            _ => return Err(format!("map element {p} is not a pair")),
                        }
                    }
                    return Ok(Datum::Map(out).normalised());
                }
                _ => {}
            }
        }
        Ok(Datum::Set(vec![Atom::from_json(v)?]))
    }

    /// Wire notation: a set of one is the bare atom.
    pub fn to_json(&self) -> Value {
        match self {
            Datum::Set(a) if a.len() == 1 => a[0].to_json(),
            Datum::Set(a) => json!(["set", a.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Datum::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// Sorted, duplicates removed (maps keep the first value of a key).
    pub fn normalised(self) -> Datum {
        match self {
            Datum::Set(mut a) => {
                a.sort_by(atom_cmp);
                a.dedup_by(|x, y| atom_cmp(x, y) == Ordering::Equal);
                Datum::Set(a)
            }
            Datum::Map(mut m) => {
                m.sort_by(|x, y| atom_cmp(&x.0, &y.0));
                m.dedup_by(|x, y| atom_cmp(&x.0, &y.0) == Ordering::Equal);
                Datum::Map(m)
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Datum::Set(a) => a.len(),
            Datum::Map(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements of a set (the keys of a map).
    pub fn atoms(&self) -> Vec<&Atom> {
        match self {
            Datum::Set(a) => a.iter().collect(),
            Datum::Map(m) => m.iter().map(|(k, _)| k).collect(),
        }
    }

    pub fn first(&self) -> Option<&Atom> {
        self.atoms().into_iter().next()
    }

    pub fn str(&self) -> Option<&str> {
        self.first().and_then(Atom::as_str)
    }

    pub fn i64(&self) -> Option<i64> {
        self.first().and_then(Atom::as_i64)
    }

    pub fn bool(&self) -> Option<bool> {
        match self.first() {
            Some(Atom::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn uuids(&self) -> Vec<&str> {
        self.atoms().into_iter().filter_map(Atom::as_uuid).collect()
    }

    /// A string-to-string map's value for `key`.
    pub fn get(&self, key: &str) -> Option<&Atom> {
        match self {
            Datum::Map(m) => m
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            Datum::Set(_) => None,
        }
    }

    /// As `ovs-vsctl get` prints it for a column of type `ty`.
    pub fn to_text(&self, ty: &ColumnType) -> String {
        let bracket = ty.max > 1 || self.is_empty();
        let (open, close) = if ty.is_map() { ('{', '}') } else { ('[', ']') };
        let mut out = String::new();
        if bracket {
            out.push(open);
        }
        match self {
            Datum::Set(a) => {
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&x.to_text());
                }
            }
            Datum::Map(m) => {
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&k.to_text());
                    out.push('=');
                    out.push_str(&v.to_text());
                }
            }
        }
        if bracket {
            out.push(close);
        }
        out
    }

    /// As Salt's `db_get` returns it: `ovs-vsctl --format=json` output with sets
    /// turned into lists and maps into objects; a set of one is its atom, UUIDs
    /// stay `["uuid", "..."]`.
    pub fn to_salt(&self, ty: &ColumnType) -> Value {
        match self {
            Datum::Map(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.key_text(), v.to_json()))
                    .collect::<Map<_, _>>(),
            ),
            Datum::Set(a) if a.len() == 1 => a[0].to_json(),
            Datum::Set(_) if ty.is_map() => Value::Object(Map::new()),
            Datum::Set(a) => Value::Array(a.iter().map(Atom::to_json).collect()),
        }
    }

    /// Applies an `update2` "modify" diff for a column of type `ty`: a column of at
    /// most one element (scalar or optional) gets the new value; set elements in
    /// the diff are toggled; map keys in the diff are removed when the value
    /// matches, replaced when it differs, added when new (OVS's `ovsdb_datum_diff`).
    pub fn apply_diff(&mut self, diff: Datum, ty: &ColumnType) -> Result<(), String> {
        if ty.max <= 1 {
            *self = diff;
            return Ok(());
        }
        let old = std::mem::take(self);
        if ty.is_map() {
            let (mut old, d) = match (old, diff) {
                (Datum::Map(o), Datum::Map(d)) => (o, d),
                // An empty map may arrive as an empty set.
                (Datum::Set(o), Datum::Map(d)) if o.is_empty() => (Vec::new(), d),
                (Datum::Map(o), Datum::Set(d)) if d.is_empty() => (o, Vec::new()),
                (old, d) => {
                    *self = old;
                    return Err(format!("diff {} does not fit a map column", d.to_json()));
                }
            };
            for (k, v) in d {
                match old
                    .iter()
                    .position(|(o, _)| atom_cmp(o, &k) == Ordering::Equal)
                {
                    Some(i) if old[i].1 == v => {
                        old.remove(i);
                    }
                    Some(i) => old[i].1 = v,
                    None => old.push((k, v)),
                }
            }
            *self = Datum::Map(old).normalised();
        } else {
            let (mut old, d) = match (old, diff) {
                (Datum::Set(o), Datum::Set(d)) => (o, d),
                (old, d) => {
                    *self = old;
                    return Err(format!("diff {} does not fit a set column", d.to_json()));
                }
            };
            for x in d {
                match old.iter().position(|o| atom_cmp(o, &x) == Ordering::Equal) {
                    Some(i) => {
                        old.remove(i);
                    }
                    None => old.push(x),
                }
            }
            *self = Datum::Set(old).normalised();
        }
        Ok(())
    }
}

/// Whether `ovs-vsctl` would quote this string (OVS's `string_needs_quotes`).
fn needs_quotes(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
        _ => return true,
    }
    if !bytes.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')) {
        return true;
    }
    s == "true" || s == "false" || is_uuid(s)
}

/// `%.15g`, as OVS prints reals.
fn format_real(r: f64) -> String {
    if r.is_finite() && r == r.trunc() && r.abs() < 1e15 {
        return format!("{}", r as i64);
    }
    let s = format!("{r:.14e}");
    // Prefer the plain form when it is as short and exact.
    let plain = format!("{r}");
    if plain.len() <= 16 {
        plain
    } else {
        s
    }
}

pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Builds a datum for a column of type `ty` from a user's JSON value, as
/// `ovs-vsctl set` reads its argument: a list is a set, an object a map, null the
/// empty value, anything else one element.
pub fn datum_from_user(v: &Value, ty: &ColumnType) -> Result<Datum, String> {
    let d = match (v, &ty.value) {
        (Value::Null, None) => Datum::Set(Vec::new()),
        (Value::Null, Some(_)) => Datum::Map(Vec::new()),
        (Value::Object(o), Some(vt)) => {
            let mut m = Vec::with_capacity(o.len());
            for (k, val) in o {
                m.push((
                    atom_from_user(&Value::String(k.clone()), &ty.key)?,
                    atom_from_user(val, vt)?,
                ));
            }
            Datum::Map(m).normalised()
        }
        (Value::Object(_), None) => {
            return Err("a map was given for a column that is not a map".into())
        }
        (_, Some(_)) => return Err("the column is a map: give an object".into()),
        (Value::Array(a), None) if !is_uuid_pair(v) => Datum::Set(
            a.iter()
                .map(|x| atom_from_user(x, &ty.key))
                .collect::<Result<_, _>>()?,
        )
        .normalised(),
        (x, None) => Datum::Set(vec![atom_from_user(x, &ty.key)?]),
    };
    let n = d.len() as u64;
    if n < ty.min || n > ty.max {
        let max = if ty.max == u64::MAX {
            "unlimited".to_owned()
        } else {
            ty.max.to_string()
        };
        return Err(format!(
            "{n} value(s) given where the column takes {} to {max}",
            ty.min
        ));
    }
    Ok(d)
}

fn is_uuid_pair(v: &Value) -> bool {
    matches!(v.as_array().map(Vec::as_slice), Some([Value::String(t), Value::String(_)]) if t == "uuid")
}

fn atom_from_user(v: &Value, base: &BaseType) -> Result<Atom, String> {
    let text = match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let bad = || format!("{v} is not a valid {}", base.atomic.name());
    match base.atomic {
        AtomicType::String => text.map(Atom::String).ok_or_else(bad),
        AtomicType::Integer => match v {
            Value::Number(n) => n.as_i64().map(Atom::Integer).ok_or_else(bad),
            Value::String(s) => s.trim().parse().map(Atom::Integer).map_err(|_| bad()),
            _ => Err(bad()),
        },
        AtomicType::Real => match v {
            Value::Number(n) => n.as_f64().map(Atom::Real).ok_or_else(bad),
            Value::String(s) => s.trim().parse().map(Atom::Real).map_err(|_| bad()),
            _ => Err(bad()),
        },
        AtomicType::Boolean => match v {
            Value::Bool(b) => Ok(Atom::Boolean(*b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Atom::Boolean(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Atom::Boolean(false)),
            _ => Err(bad()),
        },
        AtomicType::Uuid => match v {
            Value::String(s) if is_uuid(s) => Ok(Atom::Uuid(s.to_ascii_lowercase())),
            Value::Array(_) => match Atom::from_json(v) {
                Ok(a @ Atom::Uuid(_)) => Ok(a),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::ovsdb::schema::BaseType;

    fn ty(atomic: AtomicType, value: Option<AtomicType>, min: u64, max: u64) -> ColumnType {
        ColumnType {
            key: BaseType {
                atomic,
                ref_table: None,
            },
            value: value.map(|atomic| BaseType {
                atomic,
                ref_table: None,
            }),
            min,
            max,
        }
    }

    #[test]
    fn text_matches_ovs_vsctl() {
        let tag = ty(AtomicType::Integer, None, 0, 1);
        assert_eq!(Datum::default().to_text(&tag), "[]");
        assert_eq!(Datum::atom(Atom::Integer(7)).to_text(&tag), "7");
        let opts = ty(AtomicType::String, Some(AtomicType::String), 0, u64::MAX);
        let d =
            Datum::from_json(&json!(["map", [["remote_ip", "1.2.3.4"], ["key", "5001"]]])).unwrap();
        assert_eq!(d.to_text(&opts), r#"{key="5001", remote_ip="1.2.3.4"}"#);
        assert_eq!(Datum::Map(vec![]).to_text(&opts), "{}");
        let s = ty(AtomicType::String, None, 1, 1);
        for (v, want) in [
            ("", r#""""#),
            ("br0", "br0"),
            ("vxlan", "vxlan"),
            ("a b", r#""a b""#),
            ("true", r#""true""#),
            ("x-y.z_1", "x-y.z_1"),
            ("1abc", r#""1abc""#),
            ("q\"", r#""q\"""#),
        ] {
            assert_eq!(Datum::atom(Atom::String(v.into())).to_text(&s), want, "{v}");
        }
        let set = ty(AtomicType::Integer, None, 0, 4096);
        assert_eq!(
            Datum::from_json(&json!(["set", [3, 1]]))
                .unwrap()
                .to_text(&set),
            "[1, 3]"
        );
        assert_eq!(Datum::atom(Atom::Integer(5)).to_text(&set), "[5]");
    }

    #[test]
    fn salt_shape() {
        let tag = ty(AtomicType::Integer, None, 0, 1);
        assert_eq!(Datum::atom(Atom::Integer(7)).to_salt(&tag), json!(7));
        assert_eq!(Datum::default().to_salt(&tag), json!([]));
        let opts = ty(AtomicType::String, Some(AtomicType::String), 0, u64::MAX);
        let d = Datum::from_json(&json!(["map", [["key", "5001"]]])).unwrap();
        assert_eq!(d.to_salt(&opts), json!({"key": "5001"}));
        let u = Datum::from_json(&json!(["uuid", "0451c1e7-bf51-418a-9754-a87ab77034a1"])).unwrap();
        assert_eq!(
            u.to_salt(&ty(AtomicType::Uuid, None, 1, 1)),
            json!(["uuid", "0451c1e7-bf51-418a-9754-a87ab77034a1"])
        );
    }

    #[test]
    fn update2_diffs() {
        let set = ty(AtomicType::Integer, None, 0, u64::MAX);
        let mut d = Datum::from_json(&json!(["set", [1, 2]])).unwrap();
        d.apply_diff(Datum::from_json(&json!(["set", [2, 3]])).unwrap(), &set)
            .unwrap();
        assert_eq!(d, Datum::Set(vec![Atom::Integer(1), Atom::Integer(3)]));
        // At most one element (optional scalar): the new value, not a difference.
        let opt = ty(AtomicType::Integer, None, 0, 1);
        let mut t = Datum::atom(Atom::Integer(5));
        t.apply_diff(Datum::from_json(&json!(7)).unwrap(), &opt)
            .unwrap();
        assert_eq!(t, Datum::atom(Atom::Integer(7)));
        t.apply_diff(Datum::from_json(&json!(["set", []])).unwrap(), &opt)
            .unwrap();
        assert_eq!(t, Datum::default());
        let map = ty(AtomicType::String, Some(AtomicType::String), 0, u64::MAX);
        let mut m = Datum::from_json(&json!(["map", [["a", "1"], ["b", "2"]]])).unwrap();
        m.apply_diff(
            Datum::from_json(&json!(["map", [["a", "1"], ["b", "3"], ["c", "4"]]])).unwrap(),
            &map,
        )
        .unwrap();
        assert_eq!(m.to_text(&map), r#"{b="3", c="4"}"#);
        let scalar = ty(AtomicType::String, None, 1, 1);
        let mut s = Datum::atom(Atom::String("x".into()));
        s.apply_diff(Datum::atom(Atom::String("y".into())), &scalar)
            .unwrap();
        assert_eq!(s.str(), Some("y"));
    }

    #[test]
    fn user_values_take_the_column_type() {
        let tag = ty(AtomicType::Integer, None, 0, 1);
        assert_eq!(
            datum_from_user(&json!(5), &tag).unwrap(),
            Datum::atom(Atom::Integer(5))
        );
        assert_eq!(
            datum_from_user(&json!("5"), &tag).unwrap(),
            Datum::atom(Atom::Integer(5))
        );
        assert_eq!(datum_from_user(&json!([]), &tag).unwrap(), Datum::default());
        assert!(datum_from_user(&json!([1, 2]), &tag).is_err());
        assert!(datum_from_user(&json!("x"), &tag).is_err());
        let map = ty(AtomicType::String, Some(AtomicType::String), 0, u64::MAX);
        let d = datum_from_user(&json!({"b": "2", "a": 1}), &map).unwrap();
        assert_eq!(d.to_text(&map), r#"{a="1", b="2"}"#);
        let s = ty(AtomicType::String, None, 1, 1);
        assert_eq!(datum_from_user(&json!(42), &s).unwrap().str(), Some("42"));
        let b = ty(AtomicType::Boolean, None, 1, 1);
        assert_eq!(
            datum_from_user(&json!("true"), &b).unwrap().bool(),
            Some(true)
        );
    }
}
