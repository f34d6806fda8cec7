//! `drover bench --master salt`: the fleet behind a real, unmodified salt-master.
//!
//! Starts a salt-master from `--salt-bin-dir` (or `$SALT_BIN_DIR`) with a private
//! config, the device simulator, and `drover run` pointed at that master, then
//! measures what a Salt user waits for: how long until every id answers `test.ping`
//! through the `salt` CLI, the CLI's wall time for `test.ping` and `grains.items` to
//! every id, the CPU the master (its whole process group) and Drover spend per
//! return, Drover's RSS, and the warnings Drover logged (a clean run logs none).

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::bench::{free_port, proc_stats, start_sim, BenchArgs, Proc, SaltMode, WorkDir};

/// The id the fleet authenticates as in syndic mode; never counted as a device.
const SYNDIC_ID: &str = "drover-bench-syndic";

/// The master options syndic mode needs: publications go out although the master
/// knows no device, and the CLI waits 1 s (Salt's default is 5 s) for more
/// expected-minion lists once every known id answered.
const SYNDIC_MASTER_OPTS: [&str; 2] = ["order_masters: True", "syndic_wait: 1"];

/// Salt's own default `-t` is 5 s; a fan-out to thousands of ids takes longer
/// through the master, so the CLI waits this long plus a second per 500 ids.
const CLI_TIMEOUT_BASE_S: u64 = 15;

/// One fleet size's figures.
#[derive(Debug, Serialize)]
pub struct SaltRun {
    pub mode: SaltMode,
    pub ids: usize,
    /// Ids that answered the last `test.ping`.
    pub answering: usize,
    /// `drover run` start until a `salt '*' test.ping` in which every id answered.
    pub time_to_all_answer_s: Option<f64>,
    pub ping: Vec<CliRound>,
    pub grains: Vec<CliRound>,
    pub drover_rss_bytes: u64,
    /// Cores' worth of CPU with no job running.
    pub master_idle_cpu: f64,
    pub drover_idle_cpu: f64,
    /// Lines at WARN or ERROR in Drover's log during the whole run.
    pub drover_warnings: usize,
    /// The first few of those lines.
    pub drover_warning_sample: Vec<String>,
    /// The master options added with `--salt-opt`.
    pub master_opts: Vec<String>,
    /// Requests Drover sent the master until every id answered, by kind (`auth`,
    /// `pillar`, `return`, ...), from its `/metrics`.
    pub start_requests: std::collections::BTreeMap<String, f64>,
}

/// One `salt '*' <fun>` through the real CLI.
#[derive(Debug, Serialize)]
pub struct CliRound {
    pub fun: &'static str,
    pub returns: usize,
    pub wall_s: f64,
    pub master_cpu_s: f64,
    pub drover_cpu_s: f64,
    pub master_ms_per_return: Option<f64>,
    pub drover_us_per_return: Option<f64>,
    /// The same, less what Drover spends idle over the round's wall time.
    pub drover_us_per_return_over_idle: Option<f64>,
}

/// How long idle CPU is sampled.
const IDLE_SAMPLE: Duration = Duration::from_secs(5);

/// Runs every `--devices` size; prints the table and returns the runs.
pub(super) fn run(a: &BenchArgs, exe: &Path, work: &WorkDir) -> Result<Vec<SaltRun>> {
    let bin = a
        .salt_bin_dir
        .clone()
        .or_else(|| std::env::var_os("SALT_BIN_DIR").map(PathBuf::from))
        .ok_or_else(|| anyhow!("--master salt needs --salt-bin-dir or $SALT_BIN_DIR"))?;
    if !bin.join("salt-master").exists() {
        bail!("no salt-master in {}", bin.display());
    }
    let kind = a
        .kind
        .first()
        .copied()
        .unwrap_or(super::bench::BenchKind::Rest);
    let mut runs = Vec::new();
    for &n in &a.devices {
        let mode = a.salt_mode.name();
        eprintln!("== salt master, {kind}: {n} ids, {mode} mode");
        let dir = work.path.join(format!("salt-{kind}-{n}-{mode}"));
        std::fs::create_dir_all(&dir)?;
        runs.push(measure(a, exe, &bin, &dir, kind, n)?);
    }
    outln!("{}", table(&runs));
    Ok(runs)
}

/// A run in which some id never answered fails (after its figures are printed and
/// written), so CI notices a harness or a Salt path that stopped working.
pub(super) fn check(runs: &[SaltRun]) -> Result<()> {
    if let Some(r) = runs.iter().find(|r| r.answering < r.ids) {
        bail!(
            "only {} of {} ids answered through the master",
            r.answering,
            r.ids
        );
    }
    Ok(())
}

fn measure(
    a: &BenchArgs,
    exe: &Path,
    bin: &Path,
    dir: &Path,
    kind: super::bench::BenchKind,
    n: usize,
) -> Result<SaltRun> {
    let mut sims = Vec::new();
    let mut inventories = Vec::new();
    for sim in kind.sims(n) {
        let inv = dir.join(format!("{}.toml", sim.prefix.trim_end_matches('-')));
        sims.push(start_sim(exe, &sim, &inv, dir)?);
        inventories.push(inv);
    }
    let mut master_opts = a.salt_opt.clone();
    if a.salt_mode == SaltMode::Syndic {
        master_opts.extend(SYNDIC_MASTER_OPTS.iter().map(|o| (*o).to_owned()));
    }
    let master = Master::start(bin, dir, &master_opts)?;
    let http_port = free_port()?;
    let config = dir.join("drover.toml");
    write_config(&config, &inventories, http_port, &master, a.salt_mode)?;
    let log_path = dir.join("drover.log");
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let child = Command::new(a.daemon.as_deref().unwrap_or(exe))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start drover run")?;
    let mut daemon = Proc::new("drover run", child, log_path.clone());
    let pid = daemon.pid();
    let cli_timeout = CLI_TIMEOUT_BASE_S + (n as u64).div_ceil(500);

    // Every id answering through the master, polled with the real CLI once Drover
    // counts every id authenticated: pinging thousands of ids while they start would
    // load the master with returns faster than it stores them, and slow the start
    // it measures.
    let deadline = started + a.up_timeout;
    let to_auth = match a.salt_mode {
        SaltMode::Minion => n as f64,
        SaltMode::Syndic => 1.0,
    };
    while Instant::now() < deadline && accepted_auths(&metrics_text(http_port)) < to_auth {
        daemon.check_alive()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut answering = 0;
    let mut all_at = None;
    while Instant::now() < deadline {
        daemon.check_alive()?;
        let (v, _) = master.salt(&["*", "test.ping"], cli_timeout)?;
        answering = trues(&v);
        if answering >= n {
            all_at = Some(started.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    match all_at {
        Some(t) => eprintln!("   all {n} ids answer test.ping after {t:.1} s"),
        None => eprintln!(
            "   only {answering} of {n} ids answered after {:?}",
            a.up_timeout
        ),
    }

    let start_requests = sent_requests(&metrics_text(http_port));
    let per_id = |kind: &str| start_requests.get(kind).copied().unwrap_or(0.0) / n as f64;
    eprintln!(
        "   requests to the master until then, per id: _auth {:.2}, _pillar {:.2}",
        per_id("auth"),
        per_id("pillar")
    );

    // What both spend with no job running (health checks, timers, ZeroMQ heartbeats),
    // to tell the cost of a return from the cost of the seconds it takes.
    let (m0, d0) = (master.cpu_seconds(), proc_stats(pid)?.cpu_seconds);
    std::thread::sleep(IDLE_SAMPLE);
    let idle_s = IDLE_SAMPLE.as_secs_f64();
    let master_idle_cpu = (master.cpu_seconds() - m0) / idle_s;
    let drover_idle_cpu = (proc_stats(pid)?.cpu_seconds - d0) / idle_s;
    eprintln!(
        "   idle: master {:.1}% of a core, drover {:.1}%",
        master_idle_cpu * 100.0,
        drover_idle_cpu * 100.0
    );
    let idle = drover_idle_cpu;

    let mut ping = Vec::new();
    let mut grains = Vec::new();
    for round in 0..a.rounds.max(1) {
        let r = cli_round(&master, pid, "test.ping", cli_timeout, idle)?;
        eprintln!(
            "   test.ping round {}: {} returns, wall {:.2} s, master {:.1} ms/return, drover {:.0} µs/return ({:.0} over idle)",
            round + 1,
            r.returns,
            r.wall_s,
            r.master_ms_per_return.unwrap_or(0.0),
            r.drover_us_per_return.unwrap_or(0.0),
            r.drover_us_per_return_over_idle.unwrap_or(0.0)
        );
        answering = r.returns;
        ping.push(r);
    }
    let r = cli_round(&master, pid, "grains.items", cli_timeout, idle)?;
    eprintln!(
        "   grains.items: {} returns, wall {:.2} s, master {:.1} ms/return, drover {:.0} µs/return ({:.0} over idle)",
        r.returns,
        r.wall_s,
        r.master_ms_per_return.unwrap_or(0.0),
        r.drover_us_per_return.unwrap_or(0.0),
        r.drover_us_per_return_over_idle.unwrap_or(0.0)
    );
    grains.push(r);
    let drover_rss_bytes = proc_stats(pid)?.rss_bytes;
    daemon.stop();
    drop(master);
    for mut s in sims {
        s.stop();
    }
    let (drover_warnings, drover_warning_sample) = warnings(&log_path);
    Ok(SaltRun {
        mode: a.salt_mode,
        ids: n,
        answering,
        time_to_all_answer_s: all_at,
        ping,
        grains,
        drover_rss_bytes,
        master_idle_cpu,
        drover_idle_cpu,
        drover_warnings,
        drover_warning_sample,
        master_opts,
        start_requests,
    })
}

fn cli_round(
    master: &Master,
    pid: u32,
    fun: &'static str,
    timeout: u64,
    drover_idle: f64,
) -> Result<CliRound> {
    let m0 = master.cpu_seconds();
    let d0 = proc_stats(pid)?.cpu_seconds;
    let t0 = Instant::now();
    let (v, _) = master.salt(&["*", fun], timeout)?;
    let wall_s = t0.elapsed().as_secs_f64();
    let returns = v.as_object().map_or(0, |m| {
        m.iter()
            .filter(|(id, r)| {
                id.as_str() != SYNDIC_ID
                    && !matches!(r, Value::String(s) if s.starts_with("Minion did not return"))
            })
            .count()
    });
    let master_cpu_s = master.cpu_seconds() - m0;
    let drover_cpu_s = proc_stats(pid)?.cpu_seconds - d0;
    let per = |cpu: f64, scale: f64| (returns > 0).then(|| cpu * scale / returns as f64);
    Ok(CliRound {
        fun,
        returns,
        wall_s,
        master_cpu_s,
        drover_cpu_s,
        master_ms_per_return: per(master_cpu_s, 1e3),
        drover_us_per_return: per(drover_cpu_s, 1e6),
        drover_us_per_return_over_idle: per(drover_cpu_s - drover_idle * wall_s, 1e6),
    })
}

/// The daemon's `/metrics`, read with a plain HTTP/1.0 GET (empty when it cannot be
/// read).
fn metrics_text(http_port: u16) -> String {
    use std::io::Read as _;
    let mut text = String::new();
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", http_port)) else {
        return text;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    if conn
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return text;
    }
    let _ = conn.read_to_string(&mut text);
    text
}

/// `drover_master_auth_total{outcome="accepted"}`.
fn accepted_auths(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("drover_master_auth_total{") && l.contains("outcome=\"accepted\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `drover_master_messages_total{direction="out"}` by kind.
fn sent_requests(metrics: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in metrics.lines() {
        let Some(labels) = line.strip_prefix("drover_master_messages_total{") else {
            continue;
        };
        if !labels.contains("direction=\"out\"") {
            continue;
        }
        let kind = labels
            .split("kind=\"")
            .nth(1)
            .and_then(|k| k.split('"').next());
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(kind), Some(value)) = (kind, value) {
            *out.entry(kind.to_owned()).or_insert(0.0) += value;
        }
    }
    out
}

/// Devices that answered `true` (the syndic id's own answer is not a device's).
fn trues(v: &Value) -> usize {
    v.as_object().map_or(0, |m| {
        m.iter()
            .filter(|(id, r)| id.as_str() != SYNDIC_ID && **r == Value::Bool(true))
            .count()
    })
}

/// WARN and ERROR lines of Drover's log (tracing's plain format puts the level
/// after the timestamp).
fn warnings(log: &Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    let sample = lines.iter().take(5).map(|l| (*l).to_owned()).collect();
    (lines.len(), sample)
}

fn write_config(
    path: &Path,
    inventories: &[PathBuf],
    port: u16,
    m: &Master,
    mode: SaltMode,
) -> Result<()> {
    let names: Vec<String> = inventories
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| format!("{:?}", n.to_string_lossy()))
        .collect();
    let text = format!(
        "inventory = [{}]\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[master]\nkind = \"salt\"\nhost = \"127.0.0.1\"\npublish_port = {}\nret_port = {}\npki_dir = \"pki\"\n{}",
        names.join(", "),
        m.pub_port,
        m.ret_port,
        match mode {
            SaltMode::Minion => String::new(),
            SaltMode::Syndic => format!("syndic_id = \"{SYNDIC_ID}\"\n"),
        }
    );
    let mut f = std::fs::File::create(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// A private salt-master in its own process group (it forks workers), stopped with
/// the whole group when dropped.
struct Master {
    bin: PathBuf,
    cfg_dir: PathBuf,
    pub_port: u16,
    ret_port: u16,
    pgid: u32,
    child: std::process::Child,
}

impl Master {
    fn start(bin: &Path, dir: &Path, extra: &[String]) -> Result<Master> {
        let cfg_dir = dir.join("master-conf");
        let root = dir.join("master-root");
        for sub in [
            "pki",
            "cache",
            "sock",
            "log",
            "run",
            "srv/salt",
            "srv/pillar",
        ] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        std::fs::create_dir_all(&cfg_dir)?;
        let (pub_port, ret_port) = (free_port()?, free_port()?);
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let r = root.display();
        let extra: String = extra.iter().map(|l| format!("{l}\n")).collect();
        let cfg = format!(
            "root_dir: {r}\npki_dir: {r}/pki\ncachedir: {r}/cache\nsock_dir: {r}/sock\n\
             log_file: {r}/log/master.log\npidfile: {r}/run/salt-master.pid\nuser: {user}\n\
             interface: 127.0.0.1\npublish_port: {pub_port}\nret_port: {ret_port}\n\
             auto_accept: True\nlog_level_logfile: warning\n\
             file_roots: {{base: [{r}/srv/salt]}}\npillar_roots: {{base: [{r}/srv/pillar]}}\n\
             {extra}"
        );
        std::fs::write(cfg_dir.join("master"), cfg)?;
        let child = Command::new(bin.join("salt-master"))
            .arg("-c")
            .arg(&cfg_dir)
            .args(["-l", "warning"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start salt-master")?;
        let m = Master {
            bin: bin.to_owned(),
            cfg_dir,
            pub_port,
            ret_port,
            pgid: child.id(),
            child,
        };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", ret_port)).is_err() {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("salt-master did not open its ret port within 60 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(m)
    }

    /// `salt <args> --out json --static -t <timeout>`; the JSON and the raw text.
    fn salt(&self, args: &[&str], timeout: u64) -> Result<(Value, String)> {
        let out = Command::new(self.bin.join("salt"))
            .arg("-c")
            .arg(&self.cfg_dir)
            .args(args)
            .args(["--out", "json", "--static", "-t", &timeout.to_string()])
            .stdin(Stdio::null())
            .output()
            .context("cannot run salt")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((v, text))
    }

    /// CPU seconds of every process in the master's group, from /proc.
    fn cpu_seconds(&self) -> f64 {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return 0.0;
        };
        let mut total = 0.0;
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command name (which may hold spaces), closed by ')'.
            let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(self.pgid) {
                continue;
            }
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            total += (ticks(11) + ticks(12)) / 100.0;
        }
        total
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &format!("-{}", self.pgid)])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal("-KILL");
        let _ = self.child.wait();
    }
}

fn table(runs: &[SaltRun]) -> String {
    let mut out = String::from(
        "| mode | ids | all answer after | test.ping wall (min–max) | grains.items wall | master ms / return | Drover µs / return (over idle) | idle CPU master / Drover | Drover RSS | _auth / _pillar per id at start | warnings |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let walls: Vec<f64> = r.ping.iter().map(|p| p.wall_s).collect();
        let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
        let max = walls.iter().copied().fold(0.0, f64::max);
        let avg = |f: fn(&CliRound) -> Option<f64>| {
            let v: Vec<f64> = r.ping.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let opt = |v: Option<f64>, prec: usize| {
            v.map(|x| format!("{x:.prec$}"))
                .unwrap_or_else(|| "-".into())
        };
        out.push_str(&format!(
            "| {} | {} | {} s | {:.2}–{:.2} s | {} s | {} | {} ({}) | {:.0}% / {:.1}% | {:.1} MiB | {:.2} / {:.2} | {} |\n",
            r.mode.name(),
            r.ids,
            opt(r.time_to_all_answer_s, 1),
            min,
            max,
            opt(r.grains.first().map(|g| g.wall_s), 2),
            opt(avg(|p| p.master_ms_per_return), 2),
            opt(avg(|p| p.drover_us_per_return), 0),
            opt(avg(|p| p.drover_us_per_return_over_idle), 0),
            r.master_idle_cpu * 100.0,
            r.drover_idle_cpu * 100.0,
            r.drover_rss_bytes as f64 / (1024.0 * 1024.0),
            r.start_requests.get("auth").copied().unwrap_or(0.0) / r.ids as f64,
            r.start_requests.get("pillar").copied().unwrap_or(0.0) / r.ids as f64,
            r.drover_warnings
        ));
    }
    out
}
