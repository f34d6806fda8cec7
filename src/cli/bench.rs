//! `drover bench`: the fleet-scale benchmark. For each fleet size it starts the device
//! simulator and a Drover fleet over it as separate processes (this same binary, as
//! `drover devsim` and `drover run`), so memory and CPU are read honestly from
//! `/proc/<pid>`, then drives jobs through the daemon's HTTP API and reports: time
//! until every device is up, idle RSS (in all and per device), `test.ping` fan-out wall
//! time and per-device latency, operation throughput for a fixed duration, and CPU
//! seconds per 1,000 operations. It reports; it asserts no speed goal.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use drover::telemetry::ProcessStats;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Fleet sizes to measure, comma-separated or repeated (`--devices 1000,10000`).
    #[arg(short = 'n', long = "devices", value_delimiter = ',', default_values_t = [1000usize, 10000])]
    pub devices: Vec<usize>,
    /// What the simulated devices speak: rest, snmp, mix (half REST, half SNMP), or
    /// netconf; a list runs each.
    #[arg(long, value_delimiter = ',', default_values_t = [BenchKind::Mix])]
    pub kind: Vec<BenchKind>,
    /// `test.ping` fan-out rounds to all devices.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// How long the throughput load (`snmp.get` on SNMP devices, `netconf.get_config`
    /// on NETCONF devices, else `test.ping`) runs.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Jobs kept in flight at once during the throughput load.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// The small fleet whose idle RSS is subtracted for the per-device figure (0: none).
    #[arg(long, default_value_t = 100)]
    pub baseline: usize,
    /// Give up waiting for every device to be up after this long (the run continues
    /// with the devices that are up, and says so).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub up_timeout: Duration,
    /// Write the figures here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the work directory (configs, inventories, the daemon's log) and print it.
    #[arg(long)]
    pub keep: bool,
    /// Run the fleet from this drover binary instead of this one, to compare two
    /// builds under the same harness and simulator.
    #[arg(long)]
    pub daemon: Option<PathBuf>,
    /// Also time `state.apply` of a ten-state SLS on the REST devices (test=True,
    /// for real, then again with nothing to change) through the local API.
    #[arg(long)]
    pub states: bool,
    /// Which master feeds the jobs: `local` (the HTTP API) or `salt` (a real
    /// salt-master from `--salt-bin-dir`, driven through the `salt` CLI).
    #[arg(long, default_value = "local")]
    pub master: BenchMaster,
    /// Where `salt-master` and `salt` live (default: `$SALT_BIN_DIR`).
    #[arg(long)]
    pub salt_bin_dir: Option<PathBuf>,
    /// A line of YAML added to the salt-master's config (`--salt-opt
    /// 'worker_threads: 8'`); may be repeated.
    #[arg(long)]
    pub salt_opt: Vec<String>,
    /// How the fleet appears to the salt-master: `minion` (one id per device) or
    /// `syndic` (one syndic id; the master gets `order_masters: True` and
    /// `syndic_wait: 1`).
    #[arg(long, default_value = "minion")]
    pub salt_mode: SaltMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SaltMode {
    Minion,
    Syndic,
}

impl SaltMode {
    /// The name `--salt-mode` takes and the tables print.
    pub fn name(self) -> &'static str {
        match self {
            SaltMode::Minion => "minion",
            SaltMode::Syndic => "syndic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMaster {
    Local,
    Salt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchKind {
    Rest,
    Snmp,
    Mix,
    /// NETCONF over SSH (`drover devsim --kind netconf`). Needs the NETCONF driver
    /// (`proxytype = "netconf"`) in the daemon under test.
    Netconf,
}

impl std::fmt::Display for BenchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BenchKind::Rest => "rest",
            BenchKind::Snmp => "snmp",
            BenchKind::Mix => "mix",
            BenchKind::Netconf => "netconf",
        })
    }
}

impl BenchKind {
    /// The simulator processes for `n` devices: (kind, id prefix, count) each.
    pub(super) fn sims(self, n: usize) -> Vec<Sim> {
        let (rest, snmp, netconf) = match self {
            BenchKind::Rest => (n, 0, 0),
            BenchKind::Snmp => (0, n, 0),
            BenchKind::Mix => (n.div_ceil(2), n / 2, 0),
            BenchKind::Netconf => (0, 0, n),
        };
        let mut out = Vec::new();
        let kinds = [
            ("rest", "rest", rest),
            ("snmp", "sw", snmp),
            ("netconf", "rtr", netconf),
        ];
        for (kind, prefix, count) in kinds {
            let mut left = count;
            while left > 0 {
                let c = left.min(SIM_CHUNK);
                out.push(Sim {
                    kind,
                    prefix: format!(
                        "{prefix}{}-",
                        out.iter().filter(|s: &&Sim| s.kind == kind).count()
                    ),
                    count: c,
                    bind: sim_address(out.len()),
                });
                left -= c;
            }
        }
        out
    }
}

/// One simulator process to start.
#[derive(Debug, PartialEq)]
pub(super) struct Sim {
    pub(super) kind: &'static str,
    pub(super) prefix: String,
    pub(super) count: usize,
    /// Its own loopback address: the kernel's ephemeral port range (about 28,000
    /// ports) is per address, so 50,000 agents on one address would run out of ports.
    pub(super) bind: std::net::Ipv4Addr,
}

/// 127.0.0.1 for the first simulator, 127.0.0.2 for the second, ... (all of
/// 127.0.0.0/8 is loopback on Linux).
pub(super) fn sim_address(index: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, (index % 254 + 1) as u8)
}

/// Devices per simulator process. A REST device holds two descriptors there (its
/// listener and Drover's connection), so one process of 10,000 would overrun a hard
/// open-file limit of 20,000, which an unprivileged container cannot raise.
const SIM_CHUNK: usize = 5_000;

/// The whole report, as written by `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub drover_version: &'static str,
    pub machine: Machine,
    pub settings: Settings,
    pub runs: Vec<Run>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub mem_total_bytes: Option<u64>,
    pub build: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub rounds: usize,
    pub duration_s: f64,
    pub concurrency: usize,
    pub baseline_devices: usize,
    pub max_in_flight: usize,
}

/// One fleet size of one kind.
#[derive(Debug, Serialize)]
pub struct Run {
    pub kind: BenchKind,
    pub devices: usize,
    /// Devices up when the wait ended (`devices` unless some never came up).
    pub up: usize,
    /// From spawning `drover run` until every device was up; null if some never were.
    pub time_to_up_s: Option<f64>,
    /// 1-, 5- and 15-minute load averages when the run started and ended.
    pub load_start: [f64; 3],
    pub load_end: [f64; 3],
    pub rss_idle_bytes: u64,
    /// (idle RSS at N - idle RSS at the baseline) / (N - baseline).
    pub rss_per_device_bytes: Option<f64>,
    pub baseline_rss_idle_bytes: Option<u64>,
    /// Peak RSS of the whole run (VmHWM).
    pub rss_peak_bytes: u64,
    pub ping: Ping,
    pub throughput: Throughput,
    pub cpu: Cpu,
    /// `state.apply` rounds (with `--states`).
    pub states: Vec<StateRound>,
}

/// One `state.apply` of [`BENCH_SLS`] to every REST device.
#[derive(Debug, Serialize)]
pub struct StateRound {
    pub label: &'static str,
    pub job: JobStats,
    /// The daemon's CPU for the round, divided by the returns.
    pub cpu_ms_per_device: Option<f64>,
}

/// The SLS `--states` applies: ten states over Jinja, grains, packages, services and
/// requisites, five of which ask the device (one HTTP request each).
pub const BENCH_SLS: &str = r#"{% set pkgs = ['coreutils', 'apache', 'tinc'] %}
{% for p in pkgs %}
pkg-{{ p }}:
  pkg.installed:
    - name: {{ p }}
{% endfor %}
apache:
  service.running:
    - watch:
      - pkg: pkg-apache
redbull:
  service.running:
    - require:
      - pkg: pkg-tinc
hello:
  test.succeed_without_changes:
    - name: hello {{ grains['id'] }}
pretend:
  test.configurable_test_state:
    - changes: False
    - require:
      - hello
nop-1:
  test.nop: []
nop-2:
  test.nop:
    - onchanges:
      - pkg: pkg-coreutils
last:
  test.succeed_without_changes:
    - order: last
"#;

#[derive(Debug, Serialize, Default)]
pub struct Ping {
    pub rounds: Vec<JobStats>,
    /// Slowest round's wall time.
    pub wall_s_max: f64,
    /// Per-device latency over all rounds together.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize, Default)]
pub struct JobStats {
    pub targeted: usize,
    pub returned: usize,
    pub ok: usize,
    /// Submit until the last return arrived.
    pub wall_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize, Default)]
pub struct Throughput {
    pub fun: String,
    pub targets: usize,
    pub jobs: usize,
    pub ops: usize,
    pub errors: usize,
    pub seconds: f64,
    pub ops_per_sec: f64,
}

/// CPU seconds (user + system) of the Drover process.
#[derive(Debug, Serialize, Default)]
pub struct Cpu {
    /// Start-up until every device was up.
    pub start_s: f64,
    pub ping_per_1000_ops_s: Option<f64>,
    pub throughput_per_1000_ops_s: Option<f64>,
    /// The simulator's CPU over the throughput load, for context (it shares the cores).
    pub sim_throughput_s: f64,
}

/// Default of `fleet.max_in_flight`, which the bench leaves alone.
const MAX_IN_FLIGHT: usize = 512;
/// The GET that the SNMP throughput load sends: `sysUpTime.0`.
const SNMP_GET_OID: &str = "1.3.6.1.2.1.1.3.0";

pub fn main(a: BenchArgs) -> i32 {
    match run(&a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("drover bench: {e:#}");
            1
        }
    }
}

fn run(a: &BenchArgs) -> Result<()> {
    if a.devices.is_empty() || a.devices.contains(&0) {
        bail!("--devices needs sizes above 0");
    }
    let exe = std::env::current_exe().context("cannot find this binary to start it again")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let work = WorkDir::create(a.keep)?;
    if a.master == BenchMaster::Salt {
        let runs = super::salt_bench::run(a, &exe, &work)?;
        finish(a, &work, &runs)?;
        return super::salt_bench::check(&runs);
    }
    let mut runs = Vec::new();
    for &kind in &a.kind {
        let baseline = if a.baseline > 0 && a.devices.iter().any(|&n| n > a.baseline) {
            eprintln!("== {kind}: baseline fleet of {} devices", a.baseline);
            let b = measure(&rt, &exe, a, &work, kind, a.baseline, false)?;
            Some(b.rss_idle_bytes)
        } else {
            None
        };
        for &n in &a.devices {
            eprintln!("== {kind}: {n} devices");
            let mut r = measure(&rt, &exe, a, &work, kind, n, true)?;
            if let Some(base) = baseline.filter(|_| n > a.baseline) {
                r.baseline_rss_idle_bytes = Some(base);
                r.rss_per_device_bytes =
                    Some((r.rss_idle_bytes as f64 - base as f64) / (n - a.baseline) as f64);
            }
            runs.push(r);
        }
    }
    let report = Report {
        drover_version: env!("CARGO_PKG_VERSION"),
        machine: Machine {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            mem_total_bytes: meminfo_total(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        },
        settings: Settings {
            rounds: a.rounds,
            duration_s: a.duration.as_secs_f64(),
            concurrency: a.concurrency,
            baseline_devices: a.baseline,
            max_in_flight: MAX_IN_FLIGHT,
        },
        runs,
    };
    outln!("{}", table(&report));
    finish(a, &work, &report)
}

/// Writes the figures with `--json` and names the work directory with `--keep`.
fn finish(a: &BenchArgs, work: &WorkDir, figures: &impl Serialize) -> Result<()> {
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(figures)?;
        std::fs::write(path, text + "\n").with_context(|| format!("{}", path.display()))?;
        eprintln!("figures written to {}", path.display());
    }
    if a.keep {
        eprintln!("work directory kept: {}", work.path.display());
    }
    Ok(())
}

/// Starts simulator(s) and a fleet of `n` devices, measures, and stops them. A
/// baseline run (`full == false`) stops after the idle RSS.
fn measure(
    rt: &tokio::runtime::Runtime,
    exe: &Path,
    a: &BenchArgs,
    work: &WorkDir,
    kind: BenchKind,
    n: usize,
    full: bool,
) -> Result<Run> {
    let load_start = loadavg();
    let dir = work.path.join(format!("{kind}-{n}"));
    std::fs::create_dir_all(&dir)?;
    let mut sims = Vec::new();
    let mut inventories = Vec::new();
    for sim in kind.sims(n) {
        let inv = dir.join(format!("{}.toml", sim.prefix.trim_end_matches('-')));
        sims.push(start_sim(exe, &sim, &inv, &dir)?);
        inventories.push(inv);
    }
    let port = free_port()?;
    let config = dir.join("drover.toml");
    write_config(&config, &inventories, port)?;
    std::fs::create_dir_all(dir.join("states"))?;
    std::fs::write(dir.join("states/bench.sls"), BENCH_SLS)?;
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("drover.log"))?;
    let started = Instant::now();
    let child = Command::new(a.daemon.as_deref().unwrap_or(exe))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start drover run")?;
    let mut daemon = Proc::new("drover run", child, dir.join("drover.log"));
    let pid = daemon.pid();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency + 2)
        // A job ends by its own deadline (30 s by default); this only bounds a hung daemon.
        .timeout(Duration::from_secs(300))
        .build()?;

    let (up, all_up_at) = rt.block_on(wait_up(&client, &url, n, a.up_timeout, &mut daemon))?;
    let time_to_up = all_up_at.map(|t| t.duration_since(started).as_secs_f64());
    let cpu_start = proc_stats(pid)?.cpu_seconds;
    match time_to_up {
        Some(t) => eprintln!("   {n} devices up in {t:.2} s"),
        None => eprintln!("   only {up} of {n} devices up after {:?}", a.up_timeout),
    }
    // Idle: let start-up's transient allocations (first contacts, grains) settle.
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = proc_stats(pid)?.rss_bytes;
    let mut r = Run {
        kind,
        devices: n,
        up,
        time_to_up_s: time_to_up,
        load_start,
        load_end: [0.0; 3],
        rss_idle_bytes: rss_idle,
        rss_per_device_bytes: None,
        baseline_rss_idle_bytes: None,
        rss_peak_bytes: 0,
        ping: Ping::default(),
        throughput: Throughput::default(),
        cpu: Cpu {
            start_s: cpu_start,
            ..Cpu::default()
        },
        states: Vec::new(),
    };
    if full {
        let before = proc_stats(pid)?.cpu_seconds;
        let mut all = Vec::new();
        let mut ops = 0;
        for round in 0..a.rounds {
            let body = json!({"tgt": "*", "fun": "test.ping"});
            let t = rt.block_on(run_job(&client, &url, &body))?;
            let mut lat = t.latencies.clone();
            let stats = job_stats(&t, &mut lat);
            eprintln!(
                "   test.ping round {}: {}/{} ok, wall {:.3} s, p50 {:.1} ms, p99 {:.1} ms",
                round + 1,
                stats.ok,
                stats.targeted,
                stats.wall_s,
                stats.p50_ms,
                stats.p99_ms
            );
            ops += stats.returned;
            all.extend(lat);
            r.ping.wall_s_max = r.ping.wall_s_max.max(stats.wall_s);
            r.ping.rounds.push(stats);
        }
        all.sort_unstable();
        r.ping.p50_ms = percentile_ms(&all, 0.50);
        r.ping.p99_ms = percentile_ms(&all, 0.99);
        r.ping.max_ms = all.last().map(|d| ms(*d)).unwrap_or(0.0);
        r.cpu.ping_per_1000_ops_s = per_1000(proc_stats(pid)?.cpu_seconds - before, ops);

        let (fun, tgt, arg) = match kind {
            BenchKind::Rest => ("test.ping", "*", json!([])),
            BenchKind::Snmp | BenchKind::Mix => ("snmp.get", "sw*", json!([SNMP_GET_OID])),
            // The fan-out of get-config over every session (the simulator's whole
            // running datastore, about 1 KiB of XML per device). The argument shape
            // is the driver's: no arguments means `source = running`.
            BenchKind::Netconf => ("netconf.get_config", "rtr*", json!([])),
        };
        let body = json!({"tgt": tgt, "fun": fun, "arg": arg});
        let before = proc_stats(pid)?.cpu_seconds;
        let sim_before: f64 = sims
            .iter()
            .filter_map(|s| ProcessStats::read_pid(&s.pid().to_string()))
            .map(|s| s.cpu_seconds)
            .sum();
        let mut t = rt.block_on(throughput(
            &client,
            &url,
            &body,
            a.duration,
            a.concurrency.max(1),
        ))?;
        t.fun = fun.into();
        let sim_after: f64 = sims
            .iter()
            .filter_map(|s| ProcessStats::read_pid(&s.pid().to_string()))
            .map(|s| s.cpu_seconds)
            .sum();
        r.cpu.throughput_per_1000_ops_s =
            per_1000(proc_stats(pid)?.cpu_seconds - before, t.ops + t.errors);
        r.cpu.sim_throughput_s = sim_after - sim_before;
        eprintln!(
            "   {fun}: {} ok, {} errors in {:.2} s: {:.0} ops/s",
            t.ops, t.errors, t.seconds, t.ops_per_sec
        );
        r.throughput = t;
    }
    if full && a.states && kind != BenchKind::Snmp && kind != BenchKind::Netconf {
        for (label, kwarg) in [
            ("test=True", json!({"test": true})),
            ("apply", json!({})),
            ("apply again", json!({})),
        ] {
            let body =
                json!({"tgt": "rest*", "fun": "state.apply", "arg": ["bench"], "kwarg": kwarg});
            let before = proc_stats(pid)?.cpu_seconds;
            let t = rt.block_on(run_job(&client, &url, &body))?;
            let cpu = proc_stats(pid)?.cpu_seconds - before;
            let mut lat = t.latencies.clone();
            let job = job_stats(&t, &mut lat);
            let cpu_ms_per_device = (job.returned > 0).then(|| cpu * 1000.0 / job.returned as f64);
            eprintln!(
                "   state.apply ({label}): {}/{} ok, wall {:.3} s, p99 {:.1} ms, cpu {:.3} ms/device",
                job.ok,
                job.targeted,
                job.wall_s,
                job.p99_ms,
                cpu_ms_per_device.unwrap_or(0.0)
            );
            r.states.push(StateRound {
                label,
                job,
                cpu_ms_per_device,
            });
        }
    }
    r.rss_peak_bytes = peak_rss(pid).unwrap_or(0);
    r.load_end = loadavg();
    daemon.stop();
    for mut s in sims {
        s.stop();
    }
    Ok(r)
}

/// A child process that is killed (and reaped) when dropped, on every path out.
pub(super) struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub(super) fn new(name: &'static str, child: Child, log: PathBuf) -> Proc {
        Proc {
            name,
            child: Some(child),
            log,
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// An error naming the process if it has exited, with the end of its log.
    pub(super) fn check_alive(&mut self) -> Result<()> {
        let Some(c) = self.child.as_mut() else {
            bail!("{} is not running", self.name);
        };
        if let Some(status) = c.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{} exited ({status}):\n{}", self.name, tail.join("\n"));
        }
        Ok(())
    }

    pub(super) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The work directory: removed at the end unless `--keep`.
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
    keep: bool,
}

impl WorkDir {
    pub(super) fn create(keep: bool) -> Result<WorkDir> {
        let path = std::env::temp_dir().join(format!(
            "drover-bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("{}", path.display()))?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Starts `drover devsim` and waits for its "... up" line (the devices listen then).
pub(super) fn start_sim(exe: &Path, sim: &Sim, inventory: &Path, dir: &Path) -> Result<Proc> {
    let Sim {
        kind,
        prefix,
        count,
        bind,
    } = sim;
    let log_path = dir.join(format!("devsim-{prefix}log"));
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(exe)
        .args(["devsim", "--kind", kind, "-n", &count.to_string()])
        .args(["--prefix", prefix])
        .args(["--bind", &bind.to_string()])
        .arg("--write-inventory")
        .arg(inventory)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("cannot start drover devsim")?;
    let stdout = child.stdout.take();
    let mut proc = Proc::new("drover devsim", child, log_path);
    let Some(stdout) = stdout else {
        bail!("drover devsim has no stdout");
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads until the child closes stdout; the thread ends with the child.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(" up ") {
                let _ = tx.send(());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(*count as u64);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => return Ok(proc),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                proc.check_alive()?;
                if Instant::now() > deadline {
                    bail!("drover devsim --kind {kind} -n {count} did not start in time");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                proc.check_alive()?;
                bail!("drover devsim closed its output before its devices were up");
            }
        }
    }
}

/// A loopback port free now (the daemon binds it a moment later).
pub(super) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Every fleet setting at its default: the bench measures what operators get.
fn write_config(path: &Path, inventories: &[PathBuf], port: u16) -> Result<()> {
    let names: Vec<String> = inventories
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| format!("{:?}", n.to_string_lossy()))
        .collect();
    let text = format!(
        "inventory = [{}]\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[master]\nkind = \"local\"\nfile_roots = {{ base = [\"states\"] }}\n",
        names.join(", ")
    );
    let mut f = std::fs::File::create(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[derive(Deserialize)]
struct Ready {
    up: usize,
}

/// Polls `/ready` until `n` devices are up; returns how many are up and, when all
/// are, the moment the poll saw it.
async fn wait_up(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    timeout: Duration,
    daemon: &mut Proc,
) -> Result<(usize, Option<Instant>)> {
    let deadline = Instant::now() + timeout;
    let mut up = 0;
    loop {
        daemon.check_alive()?;
        // Errors while the daemon is still binding its port are expected.
        if let Ok(resp) = client.get(format!("{url}/ready")).send().await {
            if let Ok(r) = resp.json::<Ready>().await {
                up = r.up;
                if up >= n {
                    return Ok((up, Some(Instant::now())));
                }
            }
        }
        if Instant::now() > deadline {
            return Ok((up, None));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One NDJSON line of `POST /v1/jobs`, reading only what the bench needs.
#[derive(Deserialize)]
struct Line {
    minions: Option<Vec<serde::de::IgnoredAny>>,
    done: Option<bool>,
    success: Option<bool>,
}

struct JobTiming {
    targeted: usize,
    ok: usize,
    /// Submit to each return's line arriving.
    latencies: Vec<Duration>,
    /// Submit to the last return.
    wall: Duration,
}

async fn run_job(client: &reqwest::Client, url: &str, body: &Value) -> Result<JobTiming> {
    let t0 = Instant::now();
    let mut resp = client
        .post(format!("{url}/v1/jobs"))
        .json(body)
        .send()
        .await
        .context("POST /v1/jobs")?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(anyhow!("POST /v1/jobs: {status}: {text}"));
    }
    let mut t = JobTiming {
        targeted: 0,
        ok: 0,
        latencies: Vec::new(),
        wall: Duration::ZERO,
    };
    let mut buf: Vec<u8> = Vec::new();
    'read: while let Some(chunk) = resp.chunk().await.context("reading the job stream")? {
        let now = t0.elapsed();
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            let line: Line = serde_json::from_slice(&buf[start..start + pos])
                .context("bad NDJSON line from the daemon")?;
            start += pos + 1;
            if let Some(m) = line.minions {
                t.targeted = m.len();
                t.latencies.reserve(m.len());
            } else if line.done.is_some() {
                break 'read;
            } else {
                if line.success == Some(true) {
                    t.ok += 1;
                }
                t.latencies.push(now);
                t.wall = now;
            }
        }
        buf.drain(..start);
    }
    Ok(t)
}

/// Keeps `concurrency` jobs running back to back until `duration` is over; the jobs
/// running at the end finish and count.
async fn throughput(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    duration: Duration,
    concurrency: usize,
) -> Result<Throughput> {
    let t0 = Instant::now();
    let end = t0 + duration;
    let workers = (0..concurrency).map(|_| async move {
        let mut out = Throughput::default();
        while Instant::now() < end {
            let t = run_job(client, url, body).await?;
            out.jobs += 1;
            out.targets = t.targeted;
            out.ops += t.ok;
            out.errors += t.latencies.len() - t.ok;
        }
        Ok::<_, anyhow::Error>(out)
    });
    let results = futures::future::join_all(workers).await;
    let seconds = t0.elapsed().as_secs_f64();
    let mut total = Throughput {
        seconds,
        ..Throughput::default()
    };
    for r in results {
        let r = r?;
        total.jobs += r.jobs;
        total.targets = total.targets.max(r.targets);
        total.ops += r.ops;
        total.errors += r.errors;
    }
    total.ops_per_sec = total.ops as f64 / seconds.max(1e-9);
    Ok(total)
}

fn job_stats(t: &JobTiming, sorted: &mut [Duration]) -> JobStats {
    sorted.sort_unstable();
    JobStats {
        targeted: t.targeted,
        returned: t.latencies.len(),
        ok: t.ok,
        wall_s: t.wall.as_secs_f64(),
        p50_ms: percentile_ms(sorted, 0.50),
        p99_ms: percentile_ms(sorted, 0.99),
    }
}

/// Nearest-rank percentile of sorted durations, in milliseconds.
pub(super) fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    ms(sorted[rank - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn per_1000(cpu_s: f64, ops: usize) -> Option<f64> {
    (ops > 0).then(|| cpu_s / ops as f64 * 1000.0)
}

pub(super) fn proc_stats(pid: u32) -> Result<ProcessStats> {
    ProcessStats::read_pid(&pid.to_string()).ok_or_else(|| anyhow!("cannot read /proc/{pid}"))
}

/// VmHWM from /proc/<pid>/status: the peak resident set.
fn peak_rss(pid: u32) -> Option<u64> {
    status_kib(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmHWM:",
    )
}

fn status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

fn meminfo_total() -> Option<u64> {
    status_kib(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")
}

fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// The short human table printed after the runs.
fn table(r: &Report) -> String {
    let mut rows: Vec<BTreeMap<&str, String>> = Vec::new();
    for run in &r.runs {
        let opt = |v: Option<f64>, prec: usize| {
            v.map(|x| format!("{x:.prec$}"))
                .unwrap_or_else(|| "-".into())
        };
        let mut row = BTreeMap::new();
        row.insert("kind", run.kind.to_string());
        row.insert("devices", run.devices.to_string());
        row.insert("up_s", opt(run.time_to_up_s, 2));
        row.insert(
            "rss_mib",
            format!("{:.1}", run.rss_idle_bytes as f64 / 1048576.0),
        );
        row.insert(
            "kib_dev",
            opt(run.rss_per_device_bytes.map(|b| b / 1024.0), 1),
        );
        row.insert("ping_wall_s", format!("{:.3}", run.ping.wall_s_max));
        row.insert("p50_ms", format!("{:.1}", run.ping.p50_ms));
        row.insert("p99_ms", format!("{:.1}", run.ping.p99_ms));
        row.insert("ops_s", format!("{:.0}", run.throughput.ops_per_sec));
        row.insert("cpu_s_1k", opt(run.cpu.throughput_per_1000_ops_s, 3));
        row.insert("load1", format!("{:.2}", run.load_start[0]));
        rows.push(row);
    }
    let cols = [
        ("kind", "kind"),
        ("devices", "devices"),
        ("up_s", "up (s)"),
        ("rss_mib", "RSS idle (MiB)"),
        ("kib_dev", "KiB/device"),
        ("ping_wall_s", "ping wall (s)"),
        ("p50_ms", "p50 (ms)"),
        ("p99_ms", "p99 (ms)"),
        ("ops_s", "ops/s"),
        ("cpu_s_1k", "CPU s/1k ops"),
        ("load1", "load"),
    ];
    let widths: Vec<usize> = cols
        .iter()
        .map(|(k, h)| {
            rows.iter()
                .map(|r| r.get(k).map(String::len).unwrap_or(0))
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    out.push_str(&line(cols.iter().map(|(_, h)| *h).collect()));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(
            cols.iter()
                .map(|(k, _)| row.get(k).map(String::as_str).unwrap_or(""))
                .collect(),
        ));
        out.push('\n');
    }
    out.push_str(&format!(
        "({} build, {} CPUs; ops/s is {} for {:.0} s with {} jobs in flight; CPU is Drover's per 1,000 of those ops)",
        r.machine.build,
        r.machine.cpus,
        r.runs
            .first()
            .map(|x| x.throughput.fun.as_str())
            .unwrap_or("-"),
        r.settings.duration_s,
        r.settings.concurrency
    ));
    for run in &r.runs {
        for st in &run.states {
            out.push_str(&format!(
                "\nstate.apply of a ten-state SLS ({}) to {} devices: {}/{} ok, wall {:.3} s, Drover CPU {:.3} ms/device",
                st.label,
                st.job.targeted,
                st.job.ok,
                st.job.targeted,
                st.job.wall_s,
                st.cpu_ms_per_device.unwrap_or(0.0)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&d, 0.50), 50.0);
        assert_eq!(percentile_ms(&d, 0.99), 99.0);
        assert_eq!(percentile_ms(&d[..1], 0.99), 1.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn devices_are_split_over_simulators() {
        let sim = |kind, prefix: &str, count, last: u8| Sim {
            kind,
            prefix: prefix.into(),
            count,
            bind: std::net::Ipv4Addr::new(127, 0, 0, last),
        };
        assert_eq!(
            BenchKind::Mix.sims(5),
            [sim("rest", "rest0-", 3, 1), sim("snmp", "sw0-", 2, 2)]
        );
        assert_eq!(BenchKind::Mix.sims(1), [sim("rest", "rest0-", 1, 1)]);
        assert_eq!(BenchKind::Snmp.sims(7), [sim("snmp", "sw0-", 7, 1)]);
        assert_eq!(
            BenchKind::Netconf.sims(6_000),
            [
                sim("netconf", "rtr0-", 5_000, 1),
                sim("netconf", "rtr1-", 1_000, 2)
            ]
        );
        // Large fleets are spread over processes, each under the descriptor limit
        // and on its own address.
        assert_eq!(
            BenchKind::Rest.sims(12_000),
            [
                sim("rest", "rest0-", 5_000, 1),
                sim("rest", "rest1-", 5_000, 2),
                sim("rest", "rest2-", 2_000, 3)
            ]
        );
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tdrover\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(s, "VmHWM:"), Some(2 * 1024 * 1024));
        assert_eq!(status_kib(s, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(status_kib(s, "VmSwap:"), None);
    }
}
