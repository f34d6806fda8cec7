//! Poll modules: which columns a module walks and how each becomes a Prometheus
//! metric (name, type, help, index label, lookups), built from the built-in
//! definitions (`builtin`) and the `[poll.modules]` config.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{MetricConfig, ModuleConfig, PollConfig};
use crate::drivers::snmp::Oid;

/// How a value becomes a sample, with snmp_exporter's names for the types.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Gauge,
    Counter,
    /// The value as a label of a 1-valued gauge.
    DisplayString,
    /// Bytes as `0x`-hex (an OID value as dotted text) in a label.
    OctetString,
    /// A MAC address (`00:11:22:AA:BB:CC`) in a label.
    PhysAddress48,
    /// `<name>_info{<name>="<enum name>"} 1`.
    EnumAsInfo(&'static [(i64, &'static str)]),
}

impl Kind {
    fn parse(s: &str, enums: &'static [(i64, &'static str)]) -> Option<Kind> {
        Some(match s {
            "gauge" => Kind::Gauge,
            "counter" => Kind::Counter,
            "DisplayString" => Kind::DisplayString,
            "OctetString" => Kind::OctetString,
            "PhysAddress48" => Kind::PhysAddress48,
            "EnumAsInfo" => Kind::EnumAsInfo(enums),
            _ => return None,
        })
    }
}

/// One metric of a module.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    /// A column, or a scalar without its `.0`.
    pub oid: Oid,
    pub kind: Kind,
    pub help: String,
    /// Label of the row's single integer index; `None` for a scalar.
    pub index: Option<String>,
    /// Labels looked up at the same index: (label, column).
    pub lookups: Vec<(String, Oid)>,
}

/// What a module reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// SNMP walks.
    Snmp,
    /// The OVSDB monitor replica of an `ovs` device.
    OvsReplica,
    /// A ping of any device.
    Ping,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub name: String,
    pub source: Source,
    pub interval: Duration,
    pub max_repetitions: Option<u32>,
    pub metrics: Vec<Metric>,
    /// Asked as GETBULK non-repeaters with the first request: when their values
    /// change (an interface added, the agent restarted) the lookups are walked again.
    pub guards: Vec<Oid>,
}

impl Module {
    /// Every column the module walks for its metrics.
    pub fn metric_columns(&self) -> Vec<Oid> {
        let mut cols: Vec<Oid> = self.metrics.iter().map(|m| m.oid.clone()).collect();
        cols.dedup();
        cols
    }

    /// Lookup columns that are not metrics of their own (walked only when the
    /// cached labels are missing or out of date).
    pub fn lookup_only_columns(&self) -> Vec<Oid> {
        let mut cols: Vec<Oid> = Vec::new();
        for m in &self.metrics {
            for (_, c) in &m.lookups {
                if !cols.contains(c) && !self.metrics.iter().any(|x| &x.oid == c) {
                    cols.push(c.clone());
                }
            }
        }
        cols
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModuleError {
    #[error("poll.modules.{module}: {metric}: {message}")]
    Metric {
        module: String,
        metric: String,
        message: String,
    },
    #[error("poll.snmp_modules: unknown module {0:?}")]
    Unknown(String),
    #[error("poll.modules.{0}: an override of the built-in module names no metric of it: {1:?}")]
    NoSuchMetric(String, String),
    #[error("poll.modules.{0}: a module of your own needs metrics")]
    Empty(String),
}

/// Every module by name, built once from the config.
#[derive(Debug, Clone, Default)]
pub struct Modules {
    by_name: BTreeMap<String, std::sync::Arc<Module>>,
    snmp_default: Vec<String>,
}

impl Modules {
    pub fn from_config(cfg: &PollConfig) -> Result<Modules, ModuleError> {
        let mut by_name = BTreeMap::new();
        for mut m in super::builtin::all() {
            m.interval = cfg.interval;
            if let Some(c) = cfg.modules.get(&m.name) {
                apply(&mut m, c)?;
            }
            by_name.insert(m.name.clone(), std::sync::Arc::new(m));
        }
        for (name, c) in &cfg.modules {
            if by_name.contains_key(name) {
                continue;
            }
            if c.metrics.is_empty() {
                return Err(ModuleError::Empty(name.clone()));
            }
            let mut m = Module {
                name: name.clone(),
                source: Source::Snmp,
                interval: cfg.interval,
                max_repetitions: None,
                metrics: c
                    .metrics
                    .iter()
                    .map(|mc| metric(name, mc))
                    .collect::<Result<_, _>>()?,
                guards: Vec::new(),
            };
            let own = ModuleConfig {
                metrics: Vec::new(),
                ..c.clone()
            };
            apply(&mut m, &own)?;
            by_name.insert(name.clone(), std::sync::Arc::new(m));
        }
        for n in &cfg.snmp_modules {
            match by_name.get(n) {
                Some(m) if m.source == Source::Snmp => {}
                _ => return Err(ModuleError::Unknown(n.clone())),
            }
        }
        Ok(Modules {
            by_name,
            snmp_default: cfg.snmp_modules.clone(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<Module>> {
        self.by_name.get(name)
    }

    /// The modules polled on a device of this proxytype.
    pub fn for_proxytype(&self, proxytype: &str) -> Vec<std::sync::Arc<Module>> {
        let names: Vec<&str> = match proxytype {
            "snmp" => self.snmp_default.iter().map(String::as_str).collect(),
            "ovs" => vec!["ovs_interfaces"],
            "rest_sample" => vec!["rest_health"],
            _ => Vec::new(),
        };
        names.iter().filter_map(|n| self.get(n).cloned()).collect()
    }

    /// The modules `/sd` suggests for a device of this proxytype (`__param_module`).
    pub fn names_for(&self, proxytype: &str) -> String {
        let names: Vec<String> = self
            .for_proxytype(proxytype)
            .iter()
            .map(|m| m.name.clone())
            .collect();
        names.join(",")
    }
}

fn apply(m: &mut Module, c: &ModuleConfig) -> Result<(), ModuleError> {
    if let Some(i) = c.interval {
        m.interval = i;
    }
    if c.max_repetitions.is_some() {
        m.max_repetitions = c.max_repetitions;
    }
    for (name, o) in &c.overrides {
        let Some(pos) = m.metrics.iter().position(|x| &x.name == name) else {
            return Err(ModuleError::NoSuchMetric(m.name.clone(), name.clone()));
        };
        if o.ignore {
            m.metrics.remove(pos);
            continue;
        }
        if let Some(t) = &o.kind {
            let enums = match &m.metrics[pos].kind {
                Kind::EnumAsInfo(e) => e,
                _ => &[][..],
            };
            m.metrics[pos].kind = Kind::parse(t, enums).ok_or_else(|| ModuleError::Metric {
                module: m.name.clone(),
                metric: name.clone(),
                message: format!("unknown type {t:?}"),
            })?;
        }
    }
    Ok(())
}

fn metric(module: &str, c: &MetricConfig) -> Result<Metric, ModuleError> {
    let bad = |message: String| ModuleError::Metric {
        module: module.to_owned(),
        metric: c.name.clone(),
        message,
    };
    if !valid_name(&c.name) {
        return Err(bad("not a Prometheus metric name".into()));
    }
    let oid = Oid::parse_numeric(&c.oid).map_err(|e| bad(format!("oid: {e}")))?;
    let kind =
        Kind::parse(&c.kind, &[]).ok_or_else(|| bad(format!("unknown type {:?}", c.kind)))?;
    let mut lookups = Vec::new();
    for (label, col) in &c.lookups {
        if !valid_name(label) {
            return Err(bad(format!("lookup label {label:?} is not a label name")));
        }
        let col = Oid::parse_numeric(col).map_err(|e| bad(format!("lookup {label}: {e}")))?;
        lookups.push((label.clone(), col));
    }
    if let Some(i) = &c.index {
        if !valid_name(i) {
            return Err(bad(format!("index {i:?} is not a label name")));
        }
    } else if !lookups.is_empty() {
        return Err(bad("lookups need an index".into()));
    }
    Ok(Metric {
        name: c.name.clone(),
        oid,
        kind,
        help: c.help.clone(),
        index: c.index.clone(),
        lookups,
    })
}

/// Prometheus's `[a-zA-Z_][a-zA-Z0-9_]*` (no colons: those are for recording rules).
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OverrideConfig;

    #[test]
    fn builtins_take_overrides_and_own_modules_are_checked() {
        let mut cfg = PollConfig::default();
        cfg.modules.insert(
            "if_mib".into(),
            ModuleConfig {
                interval: Some(Duration::from_secs(30)),
                overrides: [(
                    "ifSpecific".to_owned(),
                    OverrideConfig {
                        ignore: true,
                        kind: None,
                    },
                )]
                .into(),
                ..Default::default()
            },
        );
        let mods = Modules::from_config(&cfg).unwrap();
        let ifmib = mods.get("if_mib").unwrap();
        assert_eq!(ifmib.interval, Duration::from_secs(30));
        assert!(!ifmib.metrics.iter().any(|m| m.name == "ifSpecific"));
        assert!(ifmib.metrics.iter().any(|m| m.name == "ifHCInOctets"));
        assert_eq!(
            mods.get("system").unwrap().interval,
            Duration::from_secs(60)
        );
        assert_eq!(mods.names_for("snmp"), "if_mib,system");
        // ifName, ifAlias, ifDescr are labels only.
        assert_eq!(ifmib.lookup_only_columns().len(), 3);

        cfg.modules.insert(
            "mine".into(),
            ModuleConfig {
                metrics: vec![MetricConfig {
                    name: "bad-name".into(),
                    oid: "1.3.6.1.4.1.1".into(),
                    kind: "gauge".into(),
                    help: String::new(),
                    index: None,
                    lookups: Default::default(),
                }],
                ..Default::default()
            },
        );
        let e = Modules::from_config(&cfg).unwrap_err();
        assert!(e.to_string().contains("poll.modules.mine: bad-name"), "{e}");

        cfg.modules.remove("mine");
        cfg.snmp_modules.push("nope".into());
        assert_eq!(
            Modules::from_config(&cfg).unwrap_err(),
            ModuleError::Unknown("nope".into())
        );
    }
}
