//! The Prometheus text format as snmp_exporter writes it: one family per metric
//! (`# HELP`, `# TYPE`), string values as labels of a 1-valued gauge, enums as
//! `_info`, and integers written exactly (a Counter64 near 2^64 is not rounded to a
//! float on our side).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use super::module::{Kind, Metric, Module};
use crate::drivers::snmp::{Oid, SnmpValue, VarBind};

/// Labels looked up by index: column → row index → text.
pub type Labels = HashMap<Oid, BTreeMap<u32, String>>;

/// One module's rows as text: `columns[i]` holds the rows of `module.metric_columns()[i]`.
pub fn module(module: &Module, columns: &[(Oid, Vec<VarBind>)], labels: &Labels) -> String {
    let mut out = String::new();
    for m in &module.metrics {
        let Some((_, rows)) = columns.iter().find(|(c, _)| *c == m.oid) else {
            continue;
        };
        let depth = m.oid.arcs().len();
        let mut family = Family::new(m);
        for vb in rows {
            let suffix = &vb.oid.arcs()[depth.min(vb.oid.arcs().len())..];
            let mut l = BTreeMap::new();
            match (&m.index, suffix) {
                // A scalar's only instance is `.0`.
                (None, [0]) => {}
                (Some(name), [i]) => {
                    l.insert(name.clone(), i.to_string());
                    for (label, col) in &m.lookups {
                        let v = labels.get(col).and_then(|r| r.get(i)).cloned();
                        l.insert(label.clone(), v.unwrap_or_default());
                    }
                }
                // Not the shape the module declares (a multi-arc index): skipped
                // rather than guessed at.
                _ => continue,
            }
            family.sample(m, l, &vb.value);
        }
        family.write(&mut out);
    }
    out
}

struct Family {
    name: String,
    help: String,
    kind: &'static str,
    lines: Vec<String>,
}

impl Family {
    fn new(m: &Metric) -> Family {
        let (name, help, kind) = match &m.kind {
            Kind::Counter => (m.name.clone(), m.help.clone(), "counter"),
            Kind::EnumAsInfo(_) => (
                format!("{}_info", m.name),
                format!("{} (EnumAsInfo)", m.help),
                "gauge",
            ),
            _ => (m.name.clone(), m.help.clone(), "gauge"),
        };
        Family {
            name,
            help,
            kind,
            lines: Vec::new(),
        }
    }

    fn sample(&mut self, m: &Metric, mut labels: BTreeMap<String, String>, v: &SnmpValue) {
        let value = match &m.kind {
            Kind::Gauge | Kind::Counter => match number(v) {
                Some(n) => n,
                None => return,
            },
            Kind::EnumAsInfo(names) => {
                let Some(SnmpValue::Integer(i)) = Some(v) else {
                    return;
                };
                let name = names
                    .iter()
                    .find(|(n, _)| *n == i64::from(*i))
                    .map(|(_, s)| (*s).to_owned())
                    .unwrap_or_else(|| i.to_string());
                labels.insert(m.name.clone(), name);
                "1".into()
            }
            Kind::DisplayString | Kind::OctetString | Kind::PhysAddress48 => {
                if v.is_exception() {
                    return;
                }
                labels.insert(m.name.clone(), text(&m.kind, v));
                "1".into()
            }
        };
        let mut line = self.name.clone();
        if !labels.is_empty() {
            line.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{k}=\"{}\"", escape_label(val));
            }
            line.push('}');
        }
        let _ = write!(line, " {value}");
        self.lines.push(line);
    }

    fn write(self, out: &mut String) {
        if self.lines.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(&self.help));
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for l in self.lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
}

/// An integer value, exactly; strings and exceptions are not numbers.
pub fn number(v: &SnmpValue) -> Option<String> {
    Some(match v {
        SnmpValue::Integer(i) => i.to_string(),
        SnmpValue::Counter32(n) | SnmpValue::Gauge32(n) | SnmpValue::TimeTicks(n) => n.to_string(),
        SnmpValue::Counter64(n) => n.to_string(),
        _ => return None,
    })
}

/// A value as label text, in snmp_exporter's spelling for each type.
pub fn text(kind: &Kind, v: &SnmpValue) -> String {
    match (kind, v) {
        (_, SnmpValue::ObjectId(o)) => o.to_string(),
        // Always six octets, zero-padded, as snmp_exporter writes an empty one.
        (Kind::PhysAddress48, SnmpValue::OctetString(b)) => (0..6)
            .map(|i| format!("{:02X}", b.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(":"),
        (Kind::OctetString, SnmpValue::OctetString(b)) => {
            let mut s = String::from("0x");
            for x in b {
                let _ = write!(s, "{x:02X}");
            }
            s
        }
        (_, SnmpValue::OctetString(b)) => String::from_utf8_lossy(b).into_owned(),
        (_, SnmpValue::IpAddress(a)) => std::net::Ipv4Addr::from(*a).to_string(),
        (_, other) => number(other).unwrap_or_default(),
    }
}

pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::builtin;

    fn vb(oid: &str, v: SnmpValue) -> VarBind {
        VarBind::new(oid.parse().unwrap(), v)
    }

    #[test]
    fn if_mib_rows_render_like_snmp_exporter() {
        let m = builtin::all().remove(0);
        let hc: Oid = "1.3.6.1.2.1.31.1.1.1.6".parse().unwrap();
        let ty: Oid = "1.3.6.1.2.1.2.2.1.3".parse().unwrap();
        let mac: Oid = "1.3.6.1.2.1.2.2.1.6".parse().unwrap();
        let num: Oid = "1.3.6.1.2.1.2.1".parse().unwrap();
        let cols = vec![
            (
                hc.clone(),
                vec![vb(
                    "1.3.6.1.2.1.31.1.1.1.6.2",
                    SnmpValue::Counter64(u64::MAX),
                )],
            ),
            (ty, vec![vb("1.3.6.1.2.1.2.2.1.3.2", SnmpValue::Integer(6))]),
            (
                mac,
                vec![vb(
                    "1.3.6.1.2.1.2.2.1.6.2",
                    SnmpValue::OctetString(vec![0, 0x1b, 0x21, 0xaa, 0xbb, 0xcc]),
                )],
            ),
            (num, vec![vb("1.3.6.1.2.1.2.1.0", SnmpValue::Integer(2))]),
        ];
        let mut labels = Labels::new();
        labels.insert(
            "1.3.6.1.2.1.31.1.1.1.1".parse().unwrap(),
            [(2, "eth0".to_owned())].into(),
        );
        labels.insert(
            "1.3.6.1.2.1.31.1.1.1.18".parse().unwrap(),
            [(2, "uplink \"a\"".to_owned())].into(),
        );
        let out = module(&m, &cols, &labels);
        assert!(out.contains("# TYPE ifHCInOctets counter\n"), "{out}");
        assert!(out.contains(
            "ifHCInOctets{ifAlias=\"uplink \\\"a\\\"\",ifDescr=\"\",ifIndex=\"2\",ifName=\"eth0\"} 18446744073709551615\n"
        ), "{out}");
        assert!(
            out.contains(
                "# HELP ifType_info The type of interface - 1.3.6.1.2.1.2.2.1.3 (EnumAsInfo)\n"
            ),
            "{out}"
        );
        assert!(out.contains(",ifType=\"ethernetCsmacd\"} 1\n"), "{out}");
        assert!(
            out.contains("ifPhysAddress=\"00:1B:21:AA:BB:CC\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("\nifNumber 2\n"), "{out}");
        // Families without samples are left out.
        assert!(!out.contains("ifOutOctets"), "{out}");
    }

    #[test]
    fn octet_strings_and_oids_as_snmp_exporter_spells_them() {
        assert_eq!(
            text(
                &Kind::OctetString,
                &SnmpValue::OctetString(vec![0x0a, 0xff])
            ),
            "0x0AFF"
        );
        assert_eq!(
            text(
                &Kind::OctetString,
                &SnmpValue::ObjectId("1.3.6.1.4.1.8072".parse().unwrap())
            ),
            "1.3.6.1.4.1.8072"
        );
        assert_eq!(escape_label("a\\b\nc"), "a\\\\b\\nc");
        assert_eq!(
            text(&Kind::PhysAddress48, &SnmpValue::OctetString(Vec::new())),
            "00:00:00:00:00:00"
        );
    }
}
