//! The daemon configuration: its TOML schema (every table `deny_unknown_fields`,
//! humantime durations), defaults, and validation that reports every problem at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One problem found in a config or inventory file, naming the file and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A config built in code (tests, embedders) has no file to name.
        if self.file.as_os_str().is_empty() {
            if self.field.is_empty() {
                write!(f, "{}", self.message)
            } else {
                write!(f, "{}: {}", self.field, self.message)
            }
        } else if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            )
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that is not valid TOML, or does not fit the schema.
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A file that parses but cannot be used as it is (no underlying error).
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{} problem(s):\n  {}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Process exit code: 64 (EX_USAGE), as linkerd2-proxy exits on a bad config.
    pub fn exit_code(&self) -> i32 {
        64
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Toml { .. } | ConfigError::Parse { .. } => "parse",
            ConfigError::Invalid(_) => "invalid",
        }
    }
}

/// The whole daemon configuration (`drover.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Inventory files, relative to the config file's directory.
    #[serde(default)]
    pub inventory: Vec<PathBuf>,
    /// Serve only this shard of the inventory (`"I/N"`); `--shard` overrides it.
    #[serde(default)]
    pub shard: Option<crate::shard::Shard>,
    #[serde(default)]
    pub fleet: FleetConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub master: MasterConfig,
    /// Background polling of device health for `/snmp` (`[poll]`).
    #[serde(default)]
    pub poll: PollConfig,
    /// The SNMP trap and inform listener (`[traps]`), off by default.
    #[serde(default)]
    pub traps: TrapConfig,
    /// Directory the config was read from; inventory paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where the config came from, for error messages.
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Global cap on device operations in flight, all jobs together.
    pub max_in_flight: usize,
    /// Deadline of a job that does not set its own.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// Timeout of one request to a device, unless the device sets its own.
    #[serde(with = "humantime_serde")]
    pub device_timeout: Duration,
    /// How often an idle device is pinged.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// How often grains are fetched again from the device.
    #[serde(with = "humantime_serde")]
    pub grains_refresh: Duration,
    /// Start-up contacts and health checks in flight, all devices together; kept
    /// apart from `max_in_flight` so background work never waits behind jobs.
    pub max_background: usize,
    /// Failed health checks or calls in a row before a device is marked down.
    pub max_consecutive_failures: u32,
    /// Operations that may wait for one device; more are rejected with an error.
    pub max_queued_per_device: usize,
    /// Arbiter threads for device actors; 0 means one per core.
    pub arbiters: usize,
    /// Jobs kept for `GET /v1/jobs/<jid>`.
    pub job_history: usize,
    /// Bytes of returns (approximately) the kept jobs may hold together; the
    /// oldest jobs leave first, and a job that alone would pass it keeps no more
    /// returns (they still stream to the caller; its record says `truncated`).
    pub job_history_bytes: usize,
    /// Jobs running at once, from every master together; a new job beyond it is
    /// refused with an error (HTTP 429 from the API).
    pub max_jobs: usize,
    /// Functions jobs may call, as Salt globs (`"test.*"`), from every master, like
    /// Salt's publisher ACL. A job for any other function is refused.
    pub allowed_functions: Vec<String>,
    /// On SIGTERM, how long running jobs may take to finish before they are cut
    /// short with error returns.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub backoff: BackoffConfig,
    /// Where each device's saved grains (`grains.setval`) and schedule
    /// (`schedule.add`) are kept, relative to the config file; none keeps them in
    /// memory only.
    pub state_dir: Option<PathBuf>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            max_in_flight: 512,
            job_timeout: Duration::from_secs(30),
            device_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(30),
            grains_refresh: Duration::from_secs(600),
            max_background: 256,
            max_consecutive_failures: 3,
            max_queued_per_device: 32,
            arbiters: 0,
            job_history: 256,
            job_history_bytes: 256 << 20,
            max_jobs: 1024,
            allowed_functions: vec!["*".to_owned()],
            shutdown_grace: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            state_dir: None,
        }
    }
}

/// Restart policy of a failed device (kameo's vocabulary, linkerd2-proxy's jitter).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Share of the delay randomised, 0.0 to 1.0.
    pub jitter: f64,
    /// Restarts allowed within `restart_window` before a device is parked as `failed`.
    pub restart_limit: u32,
    #[serde(with = "humantime_serde")]
    pub restart_window: Duration,
    /// How long a `failed` device stays parked before one more attempt.
    #[serde(with = "humantime_serde")]
    pub failed_retry: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: 0.2,
            restart_limit: 20,
            restart_window: Duration::from_secs(600),
            failed_retry: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address of the HTTP API and `/metrics`. Loopback by default.
    pub listen: SocketAddr,
    /// File holding the bearer token required on `/v1/*`. Required when `listen` is
    /// not loopback.
    pub token_file: Option<PathBuf>,
    /// HTTP worker threads.
    pub workers: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: None,
            workers: 1,
        }
    }
}

/// Background polling: each device's modules are polled every `interval` (a module
/// may set its own), spread by `jitter`, into the cache `/snmp` answers from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Share of the interval randomised per poll, 0.0 to 1.0.
    pub jitter: f64,
    /// Polls in flight at once, all devices together. Polls also take a permit of
    /// `fleet.max_in_flight`, but only a free one: they never queue before a job.
    pub max_concurrent: usize,
    /// The modules polled on every SNMP device.
    pub snmp_modules: Vec<String>,
    /// Settings of the built-in modules (`if_mib`, `system`, `ovs_interfaces`,
    /// `rest_health`) and modules of your own, by name.
    pub modules: std::collections::BTreeMap<String, ModuleConfig>,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            enabled: true,
            interval: Duration::from_secs(60),
            jitter: 0.1,
            max_concurrent: 64,
            snmp_modules: vec!["if_mib".into(), "system".into()],
            modules: Default::default(),
        }
    }
}

/// One module: its own interval and GETBULK size, extra metrics (for a module of
/// your own), and overrides of a metric's type or whether it is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModuleConfig {
    #[serde(with = "humantime_serde::option")]
    pub interval: Option<Duration>,
    /// Max-repetitions of this module's GETBULKs (else the device's, else 25).
    pub max_repetitions: Option<u32>,
    pub metrics: Vec<MetricConfig>,
    pub overrides: std::collections::BTreeMap<String, OverrideConfig>,
}

/// A metric of a module of your own, as snmp_exporter's generator writes one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    pub name: String,
    /// The column (or scalar without its `.0`), numeric.
    pub oid: String,
    /// `gauge`, `counter`, `DisplayString`, `OctetString`, `PhysAddress48` or
    /// `EnumAsInfo`.
    #[serde(rename = "type", default = "default_metric_type")]
    pub kind: String,
    #[serde(default)]
    pub help: String,
    /// The label of the table's single integer index (`ifIndex`); none for a scalar.
    #[serde(default)]
    pub index: Option<String>,
    /// Labels looked up by the same index: label name to column OID.
    #[serde(default)]
    pub lookups: std::collections::BTreeMap<String, String>,
}

fn default_metric_type() -> String {
    "gauge".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OverrideConfig {
    pub ignore: bool,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// The SNMP trap and inform receiver. Off by default; traps are matched to devices
/// by source address and checked against the device's own community or USM user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrapConfig {
    pub enabled: bool,
    /// UDP address to listen on (`0.0.0.0:162` needs privileges).
    pub listen: SocketAddr,
    /// Traps kept per device for `snmp.traps`.
    pub keep: usize,
}

impl Default for TrapConfig {
    fn default() -> Self {
        TrapConfig {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 162)),
            keep: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MasterKind {
    /// Jobs come only from the local HTTP API and `drover cmd`.
    #[default]
    Local,
    /// Every device is a minion of a Salt master (the local API stays available).
    Salt,
}

/// Where jobs come from. For `kind = "salt"`, the keys below describe the master
/// (they are ignored for `local`). The Salt link takes this type as it is: there is
/// one master config and one validation ([`MasterConfig::salt_problems`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MasterConfig {
    pub kind: MasterKind,
    /// The Salt master's address.
    pub host: Option<String>,
    pub publish_port: u16,
    pub ret_port: u16,
    /// Minion keys (`minion.pem`/`minion.pub`) and the cached master key; relative
    /// to the config file.
    pub pki_dir: PathBuf,
    /// One key pair per device id under `pki_dir/<id>/` instead of one shared pair.
    pub per_device_keys: bool,
    /// `_auth` requests in flight at once.
    pub auth_concurrency: usize,
    /// Retry interval while a key waits for acceptance on the master.
    #[serde(with = "humantime_serde")]
    pub auth_retry: Duration,
    /// Bound on every request to the master.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Extra attempts for a `_return` before it is dropped.
    pub return_retries: u32,
    /// How often each id's pillar is fetched again; 0 for never (it is still fetched
    /// after authentication and on `saltutil.refresh_pillar`).
    #[serde(with = "humantime_serde")]
    pub pillar_refresh: Duration,
    /// A deltaproxy-style control id: Drover authenticates it, reads the ids its
    /// pillar lists (`proxy: {proxytype: deltaproxy, ids: [...]}`) and manages each
    /// listed id whose own pillar has a `proxy:` block, besides the inventory files.
    pub pillar_inventory: Option<String>,
    /// Syndic mode: the fleet appears to the master as one syndic with this id (one
    /// `_auth`, returns batched in `_syndic_return`), and the master needs
    /// `order_masters: True`. Unset: every device is its own minion id.
    pub syndic_id: Option<String>,
    /// Salt's `file_roots` for state runs under the local master: `{saltenv = [dirs]}`,
    /// relative to the config file (a Salt master serves its own instead).
    pub file_roots: std::collections::BTreeMap<String, Vec<PathBuf>>,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            kind: MasterKind::Local,
            host: None,
            publish_port: 4505,
            ret_port: 4506,
            pki_dir: PathBuf::from("pki"),
            per_device_keys: false,
            auth_concurrency: 32,
            auth_retry: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            return_retries: 5,
            pillar_refresh: Duration::ZERO,
            pillar_inventory: None,
            syndic_id: None,
            file_roots: std::collections::BTreeMap::new(),
        }
    }
}

impl MasterConfig {
    /// Every problem of the Salt settings, whatever `kind` says: [`Config::problems`]
    /// asks when `kind = "salt"`, and the link asks again for a config built in code.
    pub fn salt_problems(&self, file: &Path) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: &str| {
            out.push(Problem {
                file: file.to_owned(),
                field: field.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
            bad("master.host", "required when master.kind is \"salt\"");
        }
        if self.publish_port == 0 {
            bad("master.publish_port", "must be at least 1");
        }
        if self.ret_port == 0 {
            bad("master.ret_port", "must be at least 1");
        }
        if self.auth_concurrency == 0 {
            bad("master.auth_concurrency", "must be at least 1");
        }
        if self.request_timeout.is_zero() {
            bad("master.request_timeout", "must be longer than 0s");
        }
        if let Some(c) = &self.pillar_inventory {
            if c.trim().is_empty() || c.len() > 256 || c.contains(['/', '\\', '\0']) {
                bad(
                    "master.pillar_inventory",
                    "must be a minion id (1 to 256 characters, no slashes)",
                );
            }
        }
        if let Some(s) = &self.syndic_id {
            if s.trim().is_empty() || s.len() > 256 || s.contains(['/', '\\', '\0']) {
                bad(
                    "master.syndic_id",
                    "must be a minion id (1 to 256 characters, no slashes)",
                );
            }
            if self.pillar_inventory.is_some() {
                bad(
                    "master.syndic_id",
                    "cannot be combined with pillar_inventory: a syndic has no pillar per device",
                );
            }
        }
        out
    }

    /// This config with `pki_dir` resolved against `base_dir` (the config file's
    /// directory) when it is relative.
    pub fn resolved(&self, base_dir: &Path) -> MasterConfig {
        let mut m = self.clone();
        if m.pki_dir.is_relative() {
            m.pki_dir = base_dir.join(&m.pki_dir);
        }
        for dirs in m.file_roots.values_mut() {
            for d in dirs.iter_mut() {
                if d.is_relative() {
                    *d = base_dir.join(&*d);
                }
            }
        }
        m
    }
}

impl Config {
    /// Reads, parses and validates a config file. Inventory files are not read here.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Config::parse(&text, path)?;
        cfg.base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        if let Some(d) = &cfg.fleet.state_dir {
            if d.is_relative() {
                cfg.fleet.state_dir = Some(cfg.base_dir.join(d));
            }
        }
        Ok(cfg)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        })?;
        cfg.source = path.to_owned();
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Inventory paths resolved against the config's directory.
    pub fn inventory_paths(&self) -> Vec<PathBuf> {
        self.inventory
            .iter()
            .map(|p| {
                if p.is_absolute() {
                    p.clone()
                } else {
                    self.base_dir.join(p)
                }
            })
            .collect()
    }

    /// Every problem at once, so a user fixes a file in one pass.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(Problem {
                file: self.source.clone(),
                field: field.to_owned(),
                message,
            })
        };
        let f = &self.fleet;
        if f.max_in_flight == 0 {
            bad("fleet.max_in_flight", "must be at least 1".into());
        }
        if f.job_timeout.is_zero() {
            bad("fleet.job_timeout", "must be longer than 0s".into());
        }
        if f.device_timeout.is_zero() {
            bad("fleet.device_timeout", "must be longer than 0s".into());
        }
        if f.health_interval < Duration::from_millis(100) {
            bad("fleet.health_interval", "must be at least 100ms".into());
        }
        if f.max_background == 0 {
            bad("fleet.max_background", "must be at least 1".into());
        }
        if f.max_consecutive_failures == 0 {
            bad(
                "fleet.max_consecutive_failures",
                "must be at least 1".into(),
            );
        }
        if f.max_queued_per_device == 0 {
            bad("fleet.max_queued_per_device", "must be at least 1".into());
        }
        if f.max_jobs == 0 {
            bad("fleet.max_jobs", "must be at least 1".into());
        }
        for (i, p) in f.allowed_functions.iter().enumerate() {
            if p.trim().is_empty() || p.len() > 256 {
                bad(
                    &format!("fleet.allowed_functions[{i}]"),
                    "must be a function name or glob of 1 to 256 characters".into(),
                );
            }
        }
        let b = &f.backoff;
        if b.initial.is_zero() {
            bad("fleet.backoff.initial", "must be longer than 0s".into());
        }
        if b.max < b.initial {
            bad(
                "fleet.backoff.max",
                "must not be shorter than fleet.backoff.initial".into(),
            );
        }
        if !(0.0..=1.0).contains(&b.jitter) {
            bad("fleet.backoff.jitter", "must be between 0.0 and 1.0".into());
        }
        if b.restart_limit == 0 {
            bad("fleet.backoff.restart_limit", "must be at least 1".into());
        }
        if self.http.workers == 0 {
            bad("http.workers", "must be at least 1".into());
        }
        let p = &self.poll;
        if p.interval < Duration::from_secs(1) {
            bad("poll.interval", "must be at least 1s".into());
        }
        if !(0.0..=1.0).contains(&p.jitter) {
            bad("poll.jitter", "must be between 0.0 and 1.0".into());
        }
        if p.max_concurrent == 0 {
            bad("poll.max_concurrent", "must be at least 1".into());
        }
        for (name, m) in &p.modules {
            if m.interval.is_some_and(|i| i < Duration::from_secs(1)) {
                bad(
                    &format!("poll.modules.{name}.interval"),
                    "must be at least 1s".into(),
                );
            }
            if m.max_repetitions.is_some_and(|r| r == 0 || r > 1000) {
                bad(
                    &format!("poll.modules.{name}.max_repetitions"),
                    "must be 1 to 1000".into(),
                );
            }
        }
        if self.traps.keep == 0 || self.traps.keep > 10_000 {
            bad("traps.keep", "must be 1 to 10000".into());
        }
        if self.master.kind == MasterKind::Salt {
            out.extend(self.master.salt_problems(&self.source));
        }
        if !self.http.listen.ip().is_loopback() && self.http.token_file.is_none() {
            out.push(Problem {
                file: self.source.clone(),
                field: "http.token_file".into(),
                message: format!(
                    "required when http.listen ({}) is not a loopback address",
                    self.http.listen
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn empty_config_is_valid_with_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.fleet.max_in_flight, 512);
        assert!(c.http.listen.ip().is_loopback());
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_file_and_key() {
        let e = parse("[fleet]\nmax_inflight = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("test.toml"), "{e}");
        assert!(e.contains("max_inflight"), "{e}");
    }

    #[test]
    fn all_problems_reported_at_once() {
        let e = parse(
            "[fleet]\nmax_in_flight = 0\nmax_consecutive_failures = 0\n[fleet.backoff]\njitter = 2.0\n[http]\nlisten = \"0.0.0.0:80\"\n",
        )
        .unwrap_err();
        match e {
            ConfigError::Invalid(p) => {
                let fields: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
                assert_eq!(
                    fields,
                    [
                        "fleet.max_in_flight",
                        "fleet.max_consecutive_failures",
                        "fleet.backoff.jitter",
                        "http.token_file"
                    ]
                );
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn job_limits_and_the_allow_list_are_validated() {
        let c = parse("").unwrap();
        assert_eq!(c.fleet.max_jobs, 1024);
        assert_eq!(c.fleet.allowed_functions, ["*"]);
        let c = parse("[fleet]\nallowed_functions = [\"test.*\", \"grains.items\"]\n").unwrap();
        assert_eq!(c.fleet.allowed_functions.len(), 2);
        match parse("[fleet]\nmax_jobs = 0\nallowed_functions = [\"test.*\", \" \"]\n") {
            Err(ConfigError::Invalid(p)) => {
                let fields: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
                assert_eq!(fields, ["fleet.max_jobs", "fleet.allowed_functions[1]"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn durations_are_humantime() {
        let c = parse("[fleet]\njob_timeout = \"1m 30s\"\n").unwrap();
        assert_eq!(c.fleet.job_timeout, Duration::from_secs(90));
        assert!(parse("[fleet]\njob_timeout = \"soon\"\n").is_err());
    }

    /// The one master config: Salt defaults, unknown keys refused, and one validation
    /// that the config file and the link both use.
    #[test]
    fn master_config_defaults_unknown_keys_and_validation() {
        let c = parse(
            "[master]\nkind = \"salt\"\nhost = \"m\"\npki_dir = \"/tmp/p\"\nauth_retry = \"3s\"\n",
        )
        .unwrap()
        .master;
        assert_eq!(c.publish_port, 4505);
        assert_eq!(c.ret_port, 4506);
        assert_eq!(c.auth_concurrency, 32);
        assert_eq!(c.auth_retry, Duration::from_secs(3));
        assert_eq!(c.request_timeout, Duration::from_secs(60));
        assert_eq!(c.return_retries, 5);
        assert!(c.salt_problems(Path::new("")).is_empty());
        let e = parse("[master]\nhost = \"m\"\nx = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains('x'), "{e}");
        let bad = MasterConfig {
            host: Some(String::new()),
            auth_concurrency: 0,
            request_timeout: Duration::ZERO,
            ..c.clone()
        };
        let fields: Vec<_> = bad
            .salt_problems(Path::new(""))
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "master.host",
                "master.auth_concurrency",
                "master.request_timeout"
            ]
        );
        match parse("[master]\nkind = \"salt\"\nauth_concurrency = 0\n") {
            Err(ConfigError::Invalid(p)) => {
                let fields: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
                assert_eq!(fields, ["master.host", "master.auth_concurrency"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Settings for a Salt master are not checked while the master is local.
        assert!(parse("[master]\nauth_concurrency = 0\n").is_ok());
        let rel = MasterConfig {
            pki_dir: "pki".into(),
            ..c
        };
        assert_eq!(
            rel.resolved(Path::new("/etc/drover")).pki_dir,
            Path::new("/etc/drover/pki")
        );
        assert_eq!(
            MasterConfig {
                pki_dir: "/abs".into(),
                ..rel
            }
            .resolved(Path::new("/etc/drover"))
            .pki_dir,
            Path::new("/abs")
        );
    }
}
