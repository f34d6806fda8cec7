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

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{ConfigError, Problem};

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
        match &self.driver {
            DriverConfig::Rest(r) => match r.url.host() {
                Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
                Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
                _ => None,
            },
            DriverConfig::Dummy(_) => None,
        }
    }

    pub fn proxytype(&self) -> &'static str {
        self.driver.proxytype()
    }
}

/// The closed set of device kinds, each with its own connection settings.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverConfig {
    Rest(RestConfig),
    /// An in-process device for tests and overhead measurements.
    Dummy(DummyBehaviour),
}

/// What a dummy device does on every call after start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DummyBehaviour {
    #[default]
    Ok,
    Fail,
    Hang,
    Panic,
}

impl DriverConfig {
    /// The `proxytype` grain and the `driver` metric label.
    pub fn proxytype(&self) -> &'static str {
        match self {
            DriverConfig::Rest(_) => "rest_sample",
            DriverConfig::Dummy(_) => "dummy",
        }
    }
}

/// A device speaking the REST API of Salt's `rest_sample` proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct RestConfig {
    /// Base URL; always ends with `/`.
    pub url: url::Url,
    /// Skip TLS certificate verification (self-signed device certificates).
    pub insecure: bool,
    /// Extra CA certificate (PEM) to trust for this device.
    pub ca_file: Option<PathBuf>,
}

/// The devices of one inventory, in file order, ids unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub devices: Vec<Arc<DeviceSpec>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    include: Vec<PathBuf>,
    #[serde(default)]
    device: Vec<RawDevice>,
    #[serde(default)]
    device_range: Vec<RawRange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: String,
    proxytype: String,
    url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default)]
    grains: Map<String, Value>,
    #[serde(default)]
    insecure: bool,
    ca_file: Option<PathBuf>,
    behaviour: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    id: String,
    #[serde(default = "one")]
    start: u64,
    count: u64,
    proxytype: String,
    url: Option<String>,
    port_start: Option<u16>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default)]
    grains: Map<String, Value>,
    #[serde(default)]
    insecure: bool,
    ca_file: Option<PathBuf>,
    behaviour: Option<String>,
}

fn one() -> u64 {
    1
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

    /// Parses one inventory document given as text (includes resolve against `path`).
    pub fn parse(text: &str, path: &Path) -> Result<Inventory, ConfigError> {
        let mut loader = Loader::default();
        loader.text(text, path, 0)?;
        loader.finish()
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
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
        let raw: RawInventory = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        for (i, d) in raw.device.into_iter().enumerate() {
            let field = format!("device[{i}]");
            let common = Common {
                proxytype: d.proxytype,
                url: d.url,
                timeout: d.timeout,
                grains: d.grains,
                insecure: d.insecure,
                ca_file: d.ca_file.map(|p| dir.join(p)),
                behaviour: d.behaviour,
            };
            self.add(path, &field, d.id, &common);
        }
        for (i, r) in raw.device_range.into_iter().enumerate() {
            self.range(path, i, r);
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

    fn range(&mut self, path: &Path, i: usize, r: RawRange) {
        let field = format!("device_range[{i}]");
        if r.count == 0 || r.count > MAX_RANGE {
            self.problem(
                path,
                &format!("{field}.count"),
                format!("must be 1 to {MAX_RANGE}"),
            );
            return;
        }
        if !r.id.contains("{n") {
            self.problem(
                path,
                &format!("{field}.id"),
                "must contain {n} (or {n:04}) so each device gets its own id".into(),
            );
            return;
        }
        if let Some(ps) = r.port_start {
            if u64::from(ps) + r.count - 1 > u64::from(u16::MAX) {
                self.problem(
                    path,
                    &format!("{field}.port_start"),
                    format!("{ps} + count {} runs past port 65535", r.count),
                );
                return;
            }
        }
        if r.url.as_deref().is_some_and(|u| u.contains("{port}")) && r.port_start.is_none() {
            self.problem(
                path,
                &format!("{field}.port_start"),
                "required when url contains {port}".into(),
            );
            return;
        }
        for k in 0..r.count {
            let n = r.start + k;
            let port = r.port_start.map(|p| u64::from(p) + k);
            let id = match expand(&r.id, n, port) {
                Ok(id) => id,
                Err(m) => {
                    self.problem(path, &format!("{field}.id"), m);
                    return;
                }
            };
            let url = match r.url.as_deref().map(|u| expand(u, n, port)).transpose() {
                Ok(u) => u,
                Err(m) => {
                    self.problem(path, &format!("{field}.url"), m);
                    return;
                }
            };
            let common = Common {
                proxytype: r.proxytype.clone(),
                url,
                timeout: r.timeout,
                grains: r.grains.clone(),
                insecure: r.insecure,
                ca_file: r.ca_file.clone(),
                behaviour: r.behaviour.clone(),
            };
            let before = self.problems.len();
            self.add(path, &format!("{field} (id {id})"), id, &common);
            if self.problems.len() > before {
                // One bad template would repeat the same problem count times.
                return;
            }
        }
    }

    fn add(&mut self, path: &Path, field: &str, id: String, c: &Common) {
        if let Err(m) = check_id(&id) {
            self.problem(path, &format!("{field}.id"), m);
            return;
        }
        // Record the id before checking the rest, so a duplicate is reported even
        // when its first declaration has other problems.
        if let Some((first_file, first_field)) = self.seen.get(&id) {
            let msg = format!(
                "duplicate device id {id:?}, first declared in {} at {first_field}",
                first_file.display()
            );
            self.problem(path, &format!("{field}.id"), msg);
            return;
        }
        self.seen
            .insert(id.clone(), (path.to_owned(), field.to_owned()));
        let driver = match c.proxytype.as_str() {
            "rest" | "rest_sample" => {
                let Some(raw_url) = c.url.as_deref() else {
                    self.problem(
                        path,
                        &format!("{field}.url"),
                        "required for proxytype rest".into(),
                    );
                    return;
                };
                match parse_url(raw_url) {
                    Ok(url) => DriverConfig::Rest(RestConfig {
                        url,
                        insecure: c.insecure,
                        ca_file: c.ca_file.clone(),
                    }),
                    Err(m) => {
                        self.problem(path, &format!("{field}.url"), m);
                        return;
                    }
                }
            }
            "dummy" => match c.behaviour.as_deref().unwrap_or("ok") {
                "ok" => DriverConfig::Dummy(DummyBehaviour::Ok),
                "fail" => DriverConfig::Dummy(DummyBehaviour::Fail),
                "hang" => DriverConfig::Dummy(DummyBehaviour::Hang),
                "panic" => DriverConfig::Dummy(DummyBehaviour::Panic),
                other => {
                    self.problem(
                        path,
                        &format!("{field}.behaviour"),
                        format!("unknown behaviour {other:?} (known: ok, fail, hang, panic)"),
                    );
                    return;
                }
            },
            other => {
                self.problem(
                    path,
                    &format!("{field}.proxytype"),
                    format!("unknown proxytype {other:?} (known: rest, rest_sample, dummy)"),
                );
                return;
            }
        };
        self.devices.push(Arc::new(DeviceSpec {
            id,
            driver,
            grains: c.grains.clone(),
            timeout: c.timeout,
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

struct Common {
    proxytype: String,
    url: Option<String>,
    timeout: Option<Duration>,
    grains: Map<String, Value>,
    insecure: bool,
    ca_file: Option<PathBuf>,
    behaviour: Option<String>,
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

fn parse_url(raw: &str) -> Result<url::Url, String> {
    let mut url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?}: scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(format!("{raw:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in logs and error messages.
        return Err("must not carry credentials; they would leak into logs".into());
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// Expands `{n}`, `{n:0W}` and `{port}` in a range template.
fn expand(template: &str, n: u64, port: Option<u64>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("{template:?}: unclosed '{{'"))?;
        let spec = &after[..close];
        match spec {
            "n" => out.push_str(&n.to_string()),
            "port" => match port {
                Some(p) => out.push_str(&p.to_string()),
                None => return Err(format!("{template:?}: {{port}} needs port_start")),
            },
            s if s.starts_with("n:0") => {
                let width: usize = s[3..]
                    .parse()
                    .map_err(|_| format!("{template:?}: bad width in {{{s}}}"))?;
                if width > 20 {
                    return Err(format!("{template:?}: width in {{{s}}} is over 20"));
                }
                out.push_str(&format!("{n:0width$}"));
            }
            other => {
                return Err(format!(
                "{template:?}: unknown placeholder {{{other}}} (known: {{n}}, {{n:04}}, {{port}})"
            ))
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
}
