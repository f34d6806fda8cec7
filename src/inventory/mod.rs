//! The device inventory: which devices exist, how to reach each, and their static
//! grains. Read from TOML files with `include`s, single `[[device]]` tables and
//! `[[device_range]]` tables that declare thousands of devices at once.
//!
//! ```toml
//! include = ["more-devices.toml"]
//!
//! [[device]]
//! id = "core-router"
//! proxytype = "rest_sample"          # or "rest"
//! url = "https://10.0.0.1/api/"
//! timeout = "5s"
//! grains = { site = "ams1" }
//!
//! [[device_range]]
//! id = "rest-{n:04}"                  # {n} is the index, {n:04} zero-padded
//! start = 1
//! count = 1000
//! proxytype = "rest"
//! url = "http://127.0.0.1:{port}/"   # {port} = port_start + (n - start)
//! port_start = 20001
//! ```
//!
//! Reading goes in two steps: ranges and templates are expanded into one table per
//! device, then the keys every device has (`id`, `proxytype`, `timeout`, `grains`)
//! are taken here and the rest of the table goes to the driver's own settings type
//! ([`DriverConfig::from_table`]), once, so each key is checked by the driver that
//! owns it and every problem names the file, the device and the key.

mod pillar_devices;
mod template;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{ConfigError, Problem};
use crate::drivers::DriverConfig;
pub use crate::shard::Shard;
pub use pillar_devices::{ListChange, PillarDevices};

/// Everything Drover needs to manage one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub id: String,
    pub driver: DriverConfig,
    /// Static grains from the inventory, merged over what the device reports.
    pub grains: Map<String, Value>,
    /// Per-request timeout; the fleet default when unset.
    pub timeout: Option<Duration>,
}

impl DeviceSpec {
    /// The device's IP address when its address is an IP literal (for `ipcidr`).
    pub fn address(&self) -> Option<IpAddr> {
        self.driver.address()
    }

    pub fn proxytype(&self) -> &'static str {
        self.driver.proxytype()
    }
}

/// The devices of one inventory, in file order, ids unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub devices: Vec<Arc<DeviceSpec>>,
}

/// Where an inventory comes from, so it can be read again on reload.
#[derive(Clone, Default)]
pub struct InventorySource {
    pub paths: Vec<PathBuf>,
    pub shard: Option<Shard>,
    /// Devices declared in Salt pillar (`[master] pillar_inventory`), after the
    /// files' own.
    pub pillar: Option<Arc<PillarDevices>>,
}

impl std::fmt::Debug for InventorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InventorySource")
            .field("paths", &self.paths)
            .field("shard", &self.shard)
            .field("pillar", &self.pillar.as_ref().map(|p| p.control_id()))
            .finish()
    }
}

impl InventorySource {
    /// The inventory files of a daemon config (relative to its folder) and its shard.
    pub fn from_config(cfg: &crate::config::Config) -> InventorySource {
        let pillar = match (&cfg.master.kind, &cfg.master.pillar_inventory) {
            (crate::config::MasterKind::Salt, Some(control)) => {
                Some(PillarDevices::new(control.clone(), cfg.base_dir.clone()))
            }
            _ => None,
        };
        InventorySource {
            paths: cfg.inventory_paths(),
            shard: cfg.shard,
            pillar,
        }
    }

    /// Reads every file, then adds the devices pillar declares; any problem in a file
    /// rejects the whole inventory. A pillar device whose id a file already declares
    /// is left out (the file wins), with a warning.
    pub fn load(&self) -> Result<Inventory, ConfigError> {
        let mut inv = Inventory::load(&self.paths)?;
        if let Some(p) = &self.pillar {
            let known: HashSet<String> = inv.devices.iter().map(|d| d.id.clone()).collect();
            for d in p.devices()?.devices {
                if known.contains(&d.id) {
                    tracing::warn!(id = %d.id, "Declared in pillar and in an inventory file; the file's declaration is used.");
                } else {
                    inv.devices.push(d);
                }
            }
        }
        Ok(match self.shard {
            Some(s) => inv.shard(s),
            None => inv,
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    include: Vec<PathBuf>,
    #[serde(default)]
    device: Vec<toml::Table>,
    #[serde(default)]
    device_range: Vec<toml::Table>,
}

/// Largest range accepted, to keep a typo from allocating millions of devices.
const MAX_RANGE: u64 = 1_000_000;

impl Inventory {
    /// Reads the given files (and their includes); any problem in any file fails the
    /// whole inventory, so a bad reload never half-applies.
    pub fn load(paths: &[PathBuf]) -> Result<Inventory, ConfigError> {
        let mut loader = Loader::default();
        for p in paths {
            loader.file(p, 0)?;
        }
        loader.finish()
    }

    /// Devices given as tables (`id`, `proxytype`, the driver's keys), each labelled
    /// for problems (`"pillar of r1"`), with relative paths resolving against `dir`.
    /// Any problem fails them all, as in a file.
    pub fn from_tables(
        tables: Vec<(PathBuf, Map<String, Value>)>,
        dir: &Path,
    ) -> Result<Inventory, ConfigError> {
        let mut loader = Loader::default();
        for (label, t) in tables {
            let origin = Origin {
                file: &label,
                at: "proxy".into(),
            };
            loader.device(&origin, dir, t);
        }
        loader.finish()
    }

    /// Parses one inventory document given as text (includes resolve against `path`).
    pub fn parse(text: &str, path: &Path) -> Result<Inventory, ConfigError> {
        let mut loader = Loader::default();
        loader.text(text, path, 0)?;
        loader.finish()
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Keeps only the devices `shard` owns.
    pub fn shard(mut self, shard: Shard) -> Inventory {
        self.devices.retain(|d| shard.owns(&d.id));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

/// Where a device was declared, for problems: the file and `device[3]` or
/// `device_range[0] (id rest-0007)`.
struct Origin<'a> {
    file: &'a Path,
    at: String,
}

#[derive(Default)]
struct Loader {
    devices: Vec<Arc<DeviceSpec>>,
    seen: HashMap<String, (PathBuf, String)>,
    problems: Vec<Problem>,
    visited: HashSet<PathBuf>,
}

impl Loader {
    fn file(&mut self, path: &Path, depth: usize) -> Result<(), ConfigError> {
        let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if !self.visited.insert(canon) {
            // Included twice (or a cycle): the first read already has its devices.
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.text(&text, path, depth)
    }

    fn text(&mut self, text: &str, path: &Path, depth: usize) -> Result<(), ConfigError> {
        if depth > 16 {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                message: "includes nested deeper than 16 levels".into(),
            });
        }
        let raw: RawInventory = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        for (i, d) in raw.device.into_iter().enumerate() {
            let origin = Origin {
                file: path,
                at: format!("device[{i}]"),
            };
            self.device(&origin, &dir, json_table(d));
        }
        for (i, r) in raw.device_range.into_iter().enumerate() {
            self.range(path, &dir, i, json_table(r));
        }
        for inc in raw.include {
            let p = if inc.is_absolute() {
                inc
            } else {
                dir.join(inc)
            };
            self.file(&p, depth + 1)?;
        }
        Ok(())
    }

    /// Expands one `[[device_range]]` into device tables, each checked as if it had
    /// been written out as a `[[device]]`.
    fn range(&mut self, path: &Path, dir: &Path, i: usize, mut r: Map<String, Value>) {
        let field = format!("device_range[{i}]");
        let problem = |this: &mut Loader, key: &str, msg: String| {
            this.problem(path, &format!("{field}.{key}"), msg)
        };
        let start = match take_u64(&mut r, "start") {
            Ok(v) => v.unwrap_or(1),
            Err(m) => return problem(self, "start", m),
        };
        let count = match take_u64(&mut r, "count") {
            Ok(Some(c)) if (1..=MAX_RANGE).contains(&c) => c,
            Ok(None) => return problem(self, "count", "required".into()),
            Ok(Some(_)) | Err(_) => {
                return problem(self, "count", format!("must be 1 to {MAX_RANGE}"));
            }
        };
        let port_start = match take_u64(&mut r, "port_start") {
            Ok(None) => None,
            Ok(Some(p)) if p <= u64::from(u16::MAX) => Some(p),
            Ok(Some(_)) | Err(_) => {
                return problem(self, "port_start", "must be a port, 0 to 65535".into());
            }
        };
        if !r
            .get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.contains("{n"))
        {
            return problem(
                self,
                "id",
                "must contain {n} (or {n:04}) so each device gets its own id".into(),
            );
        }
        if let Some(ps) = port_start {
            if ps + count - 1 > u64::from(u16::MAX) {
                return problem(
                    self,
                    "port_start",
                    format!("{ps} + count {count} runs past port 65535"),
                );
            }
        }
        let uses_port = r
            .iter()
            .any(|(k, v)| is_template(k) && v.as_str().is_some_and(|s| s.contains("{port}")));
        if uses_port && port_start.is_none() {
            return problem(
                self,
                "port_start",
                "required when a value contains {port}".into(),
            );
        }
        // Without a {port} placeholder, port_start numbers the devices' `port` key.
        let sets_port = port_start.is_some() && !uses_port;
        if sets_port && r.contains_key("port") {
            return problem(
                self,
                "port",
                "give port or port_start, not both (port_start numbers each device's port)".into(),
            );
        }
        for k in 0..count {
            let n = start + k;
            let port = port_start.map(|p| p + k);
            let mut table = r.clone();
            for (key, v) in table.iter_mut() {
                if !is_template(key) {
                    continue;
                }
                if let Value::String(s) = v {
                    match template::expand(s, n, port) {
                        Ok(e) => *s = e,
                        Err(m) => return problem(self, key, m),
                    }
                }
            }
            if let (true, Some(p)) = (sets_port, port) {
                table.insert("port".into(), Value::from(p));
            }
            let id = table.get("id").and_then(Value::as_str).unwrap_or_default();
            let origin = Origin {
                file: path,
                at: format!("{field} (id {id})"),
            };
            let before = self.problems.len();
            self.device(&origin, dir, table);
            if self.problems.len() > before {
                // One bad template would repeat the same problem count times.
                return;
            }
        }
    }

    /// One device's table: the keys every device has, then the driver's settings.
    fn device(&mut self, origin: &Origin, dir: &Path, mut t: Map<String, Value>) {
        let problem = |this: &mut Loader, key: &str, msg: String| {
            this.problem(origin.file, &format!("{}.{key}", origin.at), msg)
        };
        let id = match t.remove("id") {
            Some(Value::String(id)) => id,
            Some(_) => return problem(self, "id", "must be a string".into()),
            None => return problem(self, "id", "required".into()),
        };
        if let Err(m) = check_id(&id) {
            return problem(self, "id", m);
        }
        // Record the id before checking the rest, so a duplicate is reported even
        // when its first declaration has other problems.
        if let Some((first_file, first_field)) = self.seen.get(&id) {
            let msg = format!(
                "duplicate device id {id:?}, first declared in {} at {first_field}",
                first_file.display()
            );
            return problem(self, "id", msg);
        }
        self.seen
            .insert(id.clone(), (origin.file.to_owned(), origin.at.clone()));
        let proxytype = match t.remove("proxytype") {
            Some(Value::String(p)) => p,
            Some(_) => return problem(self, "proxytype", "must be a string".into()),
            None => return problem(self, "proxytype", "required".into()),
        };
        let timeout = match t.remove("timeout") {
            None => None,
            Some(Value::String(s)) => match humantime::parse_duration(&s) {
                Ok(d) => Some(d),
                Err(e) => return problem(self, "timeout", format!("{s:?}: {e}")),
            },
            Some(_) => {
                return problem(self, "timeout", "must be a duration such as \"5s\"".into());
            }
        };
        let grains = match t.remove("grains") {
            None => Map::new(),
            Some(Value::Object(g)) => g,
            Some(_) => return problem(self, "grains", "must be a table".into()),
        };
        let driver = match DriverConfig::from_table(&proxytype, t, dir) {
            Ok(d) => d,
            Err(e) => {
                let key = e.field().unwrap_or_default();
                let key = if key.is_empty() {
                    "proxytype".into()
                } else {
                    key
                };
                return problem(self, &key, e.to_string());
            }
        };
        self.devices.push(Arc::new(DeviceSpec {
            id,
            driver,
            grains,
            timeout,
        }));
    }

    fn problem(&mut self, path: &Path, field: &str, message: String) {
        self.problems.push(Problem {
            file: path.to_owned(),
            field: field.to_owned(),
            message,
        });
    }

    fn finish(self) -> Result<Inventory, ConfigError> {
        if self.problems.is_empty() {
            Ok(Inventory {
                devices: self.devices,
            })
        } else {
            Err(ConfigError::Invalid(self.problems))
        }
    }
}

/// The range keys whose values are templates. Only addresses and ids: passwords and
/// communities may hold braces, and a template error quotes its template.
fn is_template(key: &str) -> bool {
    matches!(key, "id" | "url" | "host")
}

/// A TOML table as JSON, the one shape driver settings are read from (pillar gives
/// the same tables as YAML).
fn json_table(t: toml::Table) -> Map<String, Value> {
    t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(json_table(t)),
    }
}

fn take_u64(t: &mut Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match t.remove(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("must be a non-negative integer, not {v}")),
    }
}

/// Minion ids become file names on a Salt master and topics on the wire: keep them to
/// a safe, printable set.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
    {
        return Err(format!(
            "{id:?} contains {c:?}; use letters, digits, - _ . @"
        ));
    }
    if id.starts_with('.') || id.contains("..") {
        return Err(format!("{id:?} must not start with '.' or contain '..'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Inventory, ConfigError> {
        Inventory::parse(s, Path::new("inv.toml"))
    }

    fn problems(s: &str) -> Vec<Problem> {
        match parse(s) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn single_device() {
        let inv = parse(
            "[[device]]\nid = \"r1\"\nproxytype = \"rest_sample\"\nurl = \"http://10.0.0.1:8000\"\ntimeout = \"2s\"\ngrains = { site = \"lab\" }\n",
        )
        .unwrap();
        let d = &inv.devices[0];
        assert_eq!(d.id, "r1");
        assert_eq!(d.timeout, Some(Duration::from_secs(2)));
        assert_eq!(d.grains["site"], "lab");
        assert_eq!(d.address(), Some("10.0.0.1".parse().unwrap()));
        let DriverConfig::Rest(r) = &d.driver else {
            panic!("not rest")
        };
        assert_eq!(r.url.as_str(), "http://10.0.0.1:8000/");
    }

    #[test]
    fn range_expands_ids_and_ports() {
        let inv = parse(
            "[[device_range]]\nid = \"rest-{n:04}\"\nstart = 9\ncount = 3\nproxytype = \"rest\"\nurl = \"http://127.0.0.1:{port}/dev{n}/\"\nport_start = 20000\n",
        )
        .unwrap();
        let ids: Vec<_> = inv.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["rest-0009", "rest-0010", "rest-0011"]);
        let DriverConfig::Rest(r) = &inv.devices[2].driver else {
            panic!("not rest")
        };
        assert_eq!(r.url.as_str(), "http://127.0.0.1:20002/dev11/");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = parse(
            "[[device]]\nid = \"a\"\nproxytype = \"rest\"\nurl = \"http://h/\"\ncolour = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("inv.toml") && e.contains("colour"), "{e}");
    }

    #[test]
    fn duplicate_ids_and_bad_urls_are_named() {
        let p = problems(
            "[[device]]\nid = \"a\"\nproxytype = \"rest\"\nurl = \"http://h/\"\n\
             [[device]]\nid = \"a\"\nproxytype = \"rest\"\nurl = \"http://h/\"\n\
             [[device]]\nid = \"b\"\nproxytype = \"rest\"\nurl = \"not a url\"\n\
             [[device]]\nid = \"c\"\nproxytype = \"telnet\"\n\
             [[device]]\nid = \"bad id\"\nproxytype = \"rest\"\nurl = \"http://h/\"\n",
        );
        let fields: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "device[1].id",
                "device[2].url",
                "device[3].proxytype",
                "device[4].id"
            ]
        );
        assert!(p[0].message.contains("duplicate device id \"a\""));
    }

    #[test]
    fn range_problems() {
        let p = problems(
            "[[device_range]]\nid = \"x\"\ncount = 2\nproxytype = \"rest\"\nurl = \"http://h/\"\n\
             [[device_range]]\nid = \"y{n}\"\ncount = 2\nproxytype = \"rest\"\nurl = \"http://h:{port}/\"\n\
             [[device_range]]\nid = \"z{n}\"\ncount = 10\nport_start = 65530\nproxytype = \"rest\"\nurl = \"http://h:{port}/\"\n\
             [[device_range]]\nid = \"w{q}\"\ncount = 1\nproxytype = \"rest\"\nurl = \"http://h/\"\n",
        );
        let fields: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "device_range[0].id",
                "device_range[1].port_start",
                "device_range[2].port_start",
                "device_range[3].id"
            ]
        );
    }

    #[test]
    fn includes_resolve_relative_and_tolerate_cycles() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(
            &a,
            "include = [\"b.toml\"]\n[[device]]\nid = \"a\"\nproxytype = \"rest\"\nurl = \"http://h/\"\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "include = [\"a.toml\"]\n[[device]]\nid = \"b\"\nproxytype = \"rest\"\nurl = \"http://h/\"\n",
        )
        .unwrap();
        let inv = Inventory::load(&[a]).unwrap();
        assert_eq!(inv.len(), 2);
        let missing = Inventory::load(&[dir.path().join("nope.toml")]).unwrap_err();
        assert!(missing.to_string().contains("nope.toml"));
    }

    #[test]
    fn url_credentials_refused() {
        let p = problems(
            "[[device]]\nid = \"a\"\nproxytype = \"rest\"\nurl = \"http://u:secret@h/\"\n",
        );
        assert_eq!(p[0].field, "device[0].url");
        assert!(!p[0].message.contains("secret"));
    }

    #[test]
    fn range_ca_file_resolves_against_the_inventory_folder_like_a_device() {
        let inv = Inventory::parse(
            "[[device]]\nid = \"one\"\nproxytype = \"rest\"\nurl = \"https://h/\"\nca_file = \"ca.pem\"\n\
             [[device_range]]\nid = \"r{n}\"\ncount = 1\nproxytype = \"rest\"\nurl = \"https://h/\"\nca_file = \"ca.pem\"\n",
            Path::new("/etc/drover/inv.toml"),
        )
        .unwrap();
        for d in &inv.devices {
            let DriverConfig::Rest(r) = &d.driver else {
                panic!("not rest")
            };
            assert_eq!(
                r.ca_file.as_deref(),
                Some(Path::new("/etc/drover/ca.pem")),
                "{}",
                d.id
            );
        }
    }

    #[test]
    fn range_host_template_error_is_reported_on_host() {
        let p = problems(
            "[[device_range]]\nid = \"sw{n}\"\ncount = 2\nproxytype = \"snmp\"\nhost = \"10.0.0.{x}\"\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "device_range[0].host");
        assert!(p[0].message.contains("unknown placeholder {x}"), "{p:?}");
    }

    #[test]
    fn a_key_of_another_driver_is_refused_by_name() {
        let p = problems(
            "[[device]]\nid = \"r1\"\nproxytype = \"rest\"\nurl = \"http://h/\"\ncommunity = \"private\"\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "device[0].community");
        assert!(p[0].message.contains("unknown field `community`"), "{p:?}");
        assert!(p[0].to_string().contains("inv.toml"), "{}", p[0]);
        // The secret's value never appears in the message.
        assert!(!p[0].message.contains("private"), "{p:?}");
        // And in a range, the device is named.
        let p = problems(
            "[[device_range]]\nid = \"r{n}\"\ncount = 3\nproxytype = \"rest\"\nurl = \"http://h/\"\nport = 161\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "device_range[0] (id r1).port");
    }

    #[test]
    fn unknown_snmp_protocols_are_refused_not_defaulted() {
        let v3 = |auth: &str, privacy: &str| {
            format!(
                "[[device]]\nid = \"s\"\nproxytype = \"snmp\"\nhost = \"10.0.0.1\"\nversion = \"3\"\n\
                 user = \"u\"\nauth_protocol = \"{auth}\"\nauth_password = \"authpass1\"\n\
                 priv_protocol = \"{privacy}\"\npriv_password = \"privpass1\"\n"
            )
        };
        let p = problems(&v3("SHA-3", "AES"));
        assert_eq!(p[0].field, "device[0].auth_protocol");
        assert!(p[0].message.contains("\"SHA-3\": use MD5, SHA"), "{p:?}");
        let p = problems(&v3("SHA", "AES-192"));
        assert_eq!(p[0].field, "device[0].priv_protocol");
        let inv = parse(&v3("sha-256", "aes-256")).unwrap();
        let DriverConfig::Snmp(s) = &inv.devices[0].driver else {
            panic!("not snmp")
        };
        assert_eq!(
            s.auth_protocol,
            Some(crate::drivers::snmp::AuthProtocol::Sha256)
        );
        assert_eq!(
            s.priv_protocol,
            Some(crate::drivers::snmp::PrivProtocol::Aes256)
        );
        let p = problems(
            "[[device]]\nid = \"s\"\nproxytype = \"snmp\"\nhost = \"10.0.0.1\"\nversion = \"3\"\n",
        );
        assert_eq!(p[0].field, "device[0].user");
    }

    #[test]
    fn secrets_in_a_range_are_not_templates() {
        let inv = parse(
            "[[device_range]]\nid = \"sw{n}\"\ncount = 2\nproxytype = \"snmp\"\nhost = \"10.0.0.{n}\"\ncommunity = \"pa{ss\"\n",
        )
        .unwrap();
        let DriverConfig::Snmp(s) = &inv.devices[1].driver else {
            panic!("not snmp")
        };
        assert_eq!(s.community.expose(), "pa{ss");
        assert_eq!(s.host.to_string(), "10.0.0.2");
    }

    #[test]
    fn snmp_range_ports_and_hosts_are_numbered() {
        let inv = parse(
            "[[device_range]]\nid = \"sw-{n:02}\"\ncount = 2\nproxytype = \"snmp\"\nhost = \"10.0.0.{n}\"\nport_start = 16100\n",
        )
        .unwrap();
        let got: Vec<_> = inv
            .devices
            .iter()
            .map(|d| match &d.driver {
                DriverConfig::Snmp(s) => (d.id.clone(), s.host.to_string(), s.port),
                _ => panic!("not snmp"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("sw-01".to_owned(), "10.0.0.1".to_owned(), 16100),
                ("sw-02".to_owned(), "10.0.0.2".to_owned(), 16101)
            ]
        );
    }
}
