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
            DriverConfig::Snmp(s) => Some(s.host),
            DriverConfig::Ovs(o) => match &o.endpoint {
                crate::drivers::ovsdb::Endpoint::Tcp { host, .. } => host.parse().ok(),
                crate::drivers::ovsdb::Endpoint::Unix(_) => None,
            },
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
    Snmp(SnmpConfig),
    /// An Open vSwitch host's ovsdb-server.
    Ovs(crate::drivers::ovsdb::OvsConfig),
}

/// A string that must never reach logs, metrics or the API: communities, passwords.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An SNMP agent: where it is and how to authenticate.
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpConfig {
    pub host: IpAddr,
    pub port: u16,
    /// "1", "2c" or "3".
    pub version: SnmpVersionConfig,
    pub community: Secret,
    pub user: Option<SnmpUserConfig>,
    pub retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnmpVersionConfig {
    V1,
    V2c,
    V3,
}

/// An SNMPv3 USM user; protocols are checked when the inventory is read.
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpUserConfig {
    pub name: String,
    /// MD5, SHA, SHA-256 or SHA-512.
    pub auth_protocol: Option<String>,
    pub auth_password: Secret,
    /// DES, AES or AES-256.
    pub priv_protocol: Option<String>,
    pub priv_password: Secret,
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
            DriverConfig::Snmp(_) => "snmp",
            DriverConfig::Ovs(_) => "ovs",
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

/// One shard of a fleet split over several processes: `index` of `count`, `I/N` on
/// the command line. A device belongs to the shard with the highest rendezvous
/// score for its id, so going from N to N+1 shards moves only the devices the new
/// shard wins (about 1/(N+1) of them) and no others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Which of `count` shards owns `id`.
    pub fn owner(id: &str, count: u32) -> u32 {
        let h = fnv1a(id.as_bytes());
        (0..count.max(1))
            .max_by_key(|j| mix(h ^ (u64::from(*j) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .unwrap_or(0)
    }

    pub fn owns(&self, id: &str) -> bool {
        Shard::owner(id, self.count) == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("shard {s:?}: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl serde::Serialize for Shard {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Stable across processes, versions and platforms, unlike std's `DefaultHasher`:
/// every shard must compute the same owner.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where an inventory comes from, so it can be read again on reload.
#[derive(Debug, Clone, Default)]
pub struct InventorySource {
    pub paths: Vec<PathBuf>,
    pub shard: Option<Shard>,
}

impl InventorySource {
    /// Reads every file; any problem rejects the whole inventory.
    pub fn load(&self) -> Result<Inventory, ConfigError> {
        let inv = Inventory::load(&self.paths)?;
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
    host: Option<String>,
    port: Option<u16>,
    version: Option<String>,
    community: Option<String>,
    user: Option<String>,
    auth_protocol: Option<String>,
    auth_password: Option<String>,
    priv_protocol: Option<String>,
    priv_password: Option<String>,
    retries: Option<u32>,
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
    host: Option<String>,
    port: Option<u16>,
    version: Option<String>,
    community: Option<String>,
    user: Option<String>,
    auth_protocol: Option<String>,
    auth_password: Option<String>,
    priv_protocol: Option<String>,
    priv_password: Option<String>,
    retries: Option<u32>,
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

    /// Keeps only the devices `shard` owns.
    pub fn shard(mut self, shard: Shard) -> Inventory {
        self.devices.retain(|d| shard.owns(&d.id));
        self
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
                host: d.host,
                port: d.port,
                version: d.version,
                community: d.community,
                user: d.user,
                auth_protocol: d.auth_protocol,
                auth_password: d.auth_password,
                priv_protocol: d.priv_protocol,
                priv_password: d.priv_password,
                retries: d.retries,
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
                host: r
                    .host
                    .as_deref()
                    .map(|h| expand(h, n, port))
                    .transpose()
                    .unwrap_or(None),
                port: port.and_then(|p| u16::try_from(p).ok()).or(r.port),
                version: r.version.clone(),
                community: r.community.clone(),
                user: r.user.clone(),
                auth_protocol: r.auth_protocol.clone(),
                auth_password: r.auth_password.clone(),
                priv_protocol: r.priv_protocol.clone(),
                priv_password: r.priv_password.clone(),
                retries: r.retries,
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
            "snmp" => match snmp_config(c) {
                Ok(cfg) => DriverConfig::Snmp(cfg),
                Err((key, m)) => {
                    self.problem(path, &format!("{field}.{key}"), m);
                    return;
                }
            },
            "ovs" => {
                let Some(raw) = c.url.as_deref() else {
                    self.problem(
                        path,
                        &format!("{field}.url"),
                        "required for proxytype ovs (tcp:HOST:PORT or unix:PATH)".into(),
                    );
                    return;
                };
                let dir = path.parent().unwrap_or(Path::new(""));
                match crate::drivers::ovsdb::parse_url(raw, dir) {
                    Ok(endpoint) => DriverConfig::Ovs(crate::drivers::ovsdb::OvsConfig {
                        endpoint,
                        max_message: crate::drivers::ovsdb::codec::MAX_MESSAGE,
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
                    format!(
                        "unknown proxytype {other:?} (known: rest, rest_sample, snmp, ovs, dummy)"
                    ),
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
    host: Option<String>,
    port: Option<u16>,
    version: Option<String>,
    community: Option<String>,
    user: Option<String>,
    auth_protocol: Option<String>,
    auth_password: Option<String>,
    priv_protocol: Option<String>,
    priv_password: Option<String>,
    retries: Option<u32>,
}

/// The SNMP settings of one device, or the key that is wrong and why.
fn snmp_config(c: &Common) -> Result<SnmpConfig, (&'static str, String)> {
    let host = c
        .host
        .as_deref()
        .ok_or(("host", "required for proxytype snmp".to_owned()))?;
    let host: IpAddr = host.parse().map_err(|_| {
        (
            "host",
            format!("{host:?} is not an IP address (host names are not resolved yet)"),
        )
    })?;
    let version = match c.version.as_deref().unwrap_or("2c") {
        "1" => SnmpVersionConfig::V1,
        "2c" | "2" => SnmpVersionConfig::V2c,
        "3" => SnmpVersionConfig::V3,
        other => return Err(("version", format!("{other:?}: use \"1\", \"2c\" or \"3\""))),
    };
    let user = if version == SnmpVersionConfig::V3 {
        let name = c
            .user
            .clone()
            .ok_or(("user", "required for SNMP version 3".to_owned()))?;
        let auth_protocol = c.auth_protocol.clone();
        if let Some(p) = &auth_protocol {
            if !matches!(
                p.to_ascii_uppercase().as_str(),
                "MD5" | "SHA" | "SHA1" | "SHA-1" | "SHA-256" | "SHA256" | "SHA-512" | "SHA512"
            ) {
                return Err((
                    "auth_protocol",
                    format!("{p:?}: use MD5, SHA, SHA-256 or SHA-512"),
                ));
            }
            if c.auth_password.as_deref().is_none_or(|p| p.len() < 8) {
                return Err(("auth_password", "required, at least 8 characters".into()));
            }
        }
        let priv_protocol = c.priv_protocol.clone();
        if let Some(p) = &priv_protocol {
            if auth_protocol.is_none() {
                return Err(("priv_protocol", "privacy needs an auth_protocol too".into()));
            }
            if !matches!(
                p.to_ascii_uppercase().as_str(),
                "DES" | "AES" | "AES128" | "AES-128" | "AES256" | "AES-256"
            ) {
                return Err(("priv_protocol", format!("{p:?}: use DES, AES or AES-256")));
            }
            if c.priv_password.as_deref().is_none_or(|p| p.len() < 8) {
                return Err(("priv_password", "required, at least 8 characters".into()));
            }
        }
        Some(SnmpUserConfig {
            name,
            auth_protocol,
            auth_password: Secret::new(c.auth_password.clone().unwrap_or_default()),
            priv_protocol,
            priv_password: Secret::new(c.priv_password.clone().unwrap_or_default()),
        })
    } else {
        None
    };
    Ok(SnmpConfig {
        host,
        port: c.port.unwrap_or(161),
        version,
        community: Secret::new(c.community.clone().unwrap_or_else(|| "public".into())),
        user,
        retries: c.retries.unwrap_or(1).min(10),
    })
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
    fn shards_partition_evenly_and_move_little_when_one_is_added() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("dev-{i:05}")).collect();
        let before: Vec<u32> = ids.iter().map(|id| Shard::owner(id, 4)).collect();
        for s in 0..4 {
            let n = before.iter().filter(|o| **o == s).count();
            assert!((2200..2800).contains(&n), "shard {s} has {n} of 10000");
        }
        let after: Vec<u32> = ids.iter().map(|id| Shard::owner(id, 5)).collect();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(
            (1700..2300).contains(&moved),
            "{moved} moved, expected about 1/5"
        );
        assert!(
            before.iter().zip(&after).all(|(b, a)| b == a || *a == 4),
            "devices move only to the new shard"
        );
        let s: Shard = "1/4".parse().unwrap();
        assert!(s.owns(ids.iter().zip(&before).find(|(_, o)| **o == 1).unwrap().0));
        for bad in ["4/4", "1", "a/b", "0/0", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        // Pinned: shards running different builds must agree on every owner, so
        // the hash may never change silently.
        let pinned = [
            ("rest-0001", 0),
            ("rest-0002", 0),
            ("rest-0003", 1),
            ("rest-0007", 1),
            ("rest-0008", 2),
            ("rest-0019", 2),
        ];
        for (id, owner) in pinned {
            assert_eq!(Shard::owner(id, 3), owner, "{id}");
        }
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
