//! `drover health-bench`: Drover's background polls side by side with Prometheus's
//! snmp_exporter over the same real Net-SNMP agents, both walking the `if_mib` and
//! `system` modules (the exporter's config is generated from Drover's built-in
//! module definitions, so both read the same columns). It reports each side's own
//! CPU per agent walk and the agents' CPU, both read from `/proc/<pid>`, the
//! latency of a scrape, and, with `--simulated N`, the latency of a scrape answered
//! from the cache while N simulated agents are polled. It reports; it asserts no
//! goal.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use super::bench::{
    free_port, percentile_ms, proc_stats, sim_address, start_sim, Proc, Sim, WorkDir,
};
use drover::drivers::snmp::{
    decode_message, encode_message, CommunityMessage, Message, Pdu, PduType, SnmpVersion, VarBind,
};

#[derive(Args, Debug)]
pub struct HealthBenchArgs {
    /// Real Net-SNMP agents (`snmpd`) polled by both sides.
    #[arg(long, default_value_t = 20)]
    pub agents: usize,
    /// Poll interval of Drover, and scrape interval driven at snmp_exporter.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Intervals measured on each side.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// The snmp_exporter binary (Debian's `prometheus-snmp-exporter`); its side is
    /// skipped when it is missing.
    #[arg(long, default_value = "/usr/bin/prometheus-snmp-exporter")]
    pub exporter: PathBuf,
    /// Simulated SNMP agents polled every `--sim-interval` while scrape latency is
    /// measured (0: skip).
    #[arg(long, default_value_t = 10_000)]
    pub simulated: usize,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub sim_interval: Duration,
    /// Scrapes timed in each latency measurement.
    #[arg(long, default_value_t = 2000)]
    pub scrapes: usize,
    /// Write the figures here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the work directory and print it.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Serialize, Default)]
pub struct Side {
    /// Agent walks (both modules) in the measured window.
    pub walks: usize,
    /// The poller's (or exporter's) own CPU seconds per agent walk, in milliseconds.
    pub cpu_ms_per_walk: f64,
    /// The agents' CPU seconds per walk, in milliseconds.
    pub agent_cpu_ms_per_walk: f64,
    pub scrape_p50_ms: f64,
    pub scrape_p99_ms: f64,
}

#[derive(Debug, Serialize, Default)]
pub struct HealthReport {
    pub agents: usize,
    pub interval_s: f64,
    pub drover: Side,
    pub snmp_exporter: Option<Side>,
    /// (simulated agents, p50 ms, p99 ms) of cached scrapes under polling load.
    pub cached_scrape_under_load: Option<(usize, f64, f64)>,
}

pub fn main(a: HealthBenchArgs) -> i32 {
    match run(&a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("drover health-bench: {e:#}");
            1
        }
    }
}

fn run(a: &HealthBenchArgs) -> Result<()> {
    let dir = WorkDir::create(a.keep)?;
    let exe = std::env::current_exe().context("cannot find this drover binary")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let mut agents = Vec::with_capacity(a.agents);
    for i in 0..a.agents {
        agents.push(start_agent(&dir.path, i)?);
    }
    let mut report = HealthReport {
        agents: a.agents,
        interval_s: a.interval.as_secs_f64(),
        ..Default::default()
    };
    report.drover = rt.block_on(drover_side(a, &exe, &dir.path, &agents, &client))?;
    if a.exporter.exists() {
        report.snmp_exporter = Some(rt.block_on(exporter_side(a, &dir.path, &agents, &client))?);
    } else {
        eprintln!(
            "{} not found: snmp_exporter side skipped",
            a.exporter.display()
        );
    }
    drop(agents);
    if a.simulated > 0 {
        report.cached_scrape_under_load =
            Some(rt.block_on(under_load(a, &exe, &dir.path, &client))?);
    }
    println!("{}", table(&report));
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    if a.keep {
        eprintln!("work directory: {}", dir.path.display());
    }
    Ok(())
}

struct Agent {
    proc: Proc,
    port: u16,
}

fn start_agent(dir: &Path, i: usize) -> Result<Agent> {
    let d = dir.join(format!("snmpd-{i}"));
    std::fs::create_dir_all(d.join("persist"))?;
    std::fs::write(d.join("snmpd.conf"), "rocommunity public 127.0.0.1\n")?;
    let port = free_udp_port()?;
    let log = d.join("snmpd.log");
    let child = Command::new("/usr/sbin/snmpd")
        .args(["-f", "-Lo", "-C", "-c"])
        .arg(d.join("snmpd.conf"))
        .arg("-p")
        .arg(d.join("pid"))
        .arg(format!("udp:127.0.0.1:{port}"))
        .env("SNMP_PERSISTENT_DIR", d.join("persist"))
        .env("MIBDIRS", d.join("persist"))
        .env("MIBS", "")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start /usr/sbin/snmpd")?;
    let mut proc = Proc::new("snmpd", child, log);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answers(port) {
        proc.check_alive()?;
        if Instant::now() > deadline {
            bail!("snmpd on port {port} did not answer");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Agent { proc, port })
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A v2c GET of sysUpTime.0 answered.
fn answers(port: u16) -> bool {
    let Ok(sock) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(300)));
    let Ok(oid) = "1.3.6.1.2.1.1.3.0".parse() else {
        return false;
    };
    let req = encode_message(&Message::Community(CommunityMessage {
        version: SnmpVersion::V2c,
        community: b"public".to_vec(),
        pdu: Pdu::new(PduType::Get, 1, vec![VarBind::null(oid)]),
    }));
    if sock.send_to(&req, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 2048];
    match sock.recv(&mut buf) {
        Ok(n) => decode_message(&buf[..n]).is_ok(),
        Err(_) => false,
    }
}

fn cpu(pid: u32) -> f64 {
    proc_stats(pid).map(|s| s.cpu_seconds).unwrap_or(0.0)
}

fn agents_cpu(agents: &[Agent]) -> f64 {
    agents.iter().map(|a| cpu(a.proc.pid())).sum()
}

async fn get_ok(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// Times `n` scrapes of the URLs in turn; (p50, p99) in ms of the answered ones
/// (HTTP 200): a target not polled yet answers 503 faster and would flatter the
/// figures.
async fn latency(client: &reqwest::Client, urls: &[String], n: usize) -> (f64, f64) {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let Some(url) = urls.get(i % urls.len().max(1)) else {
            break;
        };
        let t = Instant::now();
        if get_ok(client, url).await {
            took.push(t.elapsed());
        }
    }
    if took.len() < n {
        eprintln!(
            "{} of {n} scrapes were not answered with 200",
            n - took.len()
        );
    }
    took.sort();
    (percentile_ms(&took, 0.5), percentile_ms(&took, 0.99))
}

fn start_drover(
    exe: &Path,
    dir: &Path,
    name: &str,
    inventory: &str,
    interval: Duration,
) -> Result<(Proc, String)> {
    let port = free_port()?;
    std::fs::write(dir.join(format!("{name}-inv.toml")), inventory)?;
    let secs = interval.as_secs().max(1);
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "inventory = [\"{name}-inv.toml\"]\n[http]\nlisten = \"127.0.0.1:{port}\"\n[poll]\ninterval = \"{secs}s\"\n"
        ),
    )?;
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(exe)
        .args(["run", "--config"])
        .arg(dir.join(format!("{name}.toml")))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("cannot start drover run")?;
    Ok((
        Proc::new("drover run", child, log),
        format!("http://127.0.0.1:{port}"),
    ))
}

/// `drover_polls_total{outcome="ok"}` summed over modules.
async fn polls_ok(client: &reqwest::Client, base: &str) -> f64 {
    let Ok(r) = client.get(format!("{base}/metrics")).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("drover_polls_total{") && l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn drover_side(
    a: &HealthBenchArgs,
    exe: &Path,
    dir: &Path,
    agents: &[Agent],
    client: &reqwest::Client,
) -> Result<Side> {
    let inventory: String = agents
        .iter()
        .enumerate()
        .map(|(i, ag)| {
            format!(
                "[[device]]\nid = \"a{i:03}\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\nport = {}\n",
                ag.port
            )
        })
        .collect();
    let (mut proc, base) = start_drover(exe, dir, "drover", &inventory, a.interval)?;
    let urls: Vec<String> = (0..agents.len())
        .map(|i| format!("{base}/snmp?target=a{i:03}&module=if_mib,system"))
        .collect();
    // Every agent polled once (the first polls spread over one interval).
    let deadline = Instant::now() + a.interval * 3 + Duration::from_secs(30);
    for u in &urls {
        while !get_ok(client, u).await {
            proc.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "drover did not poll every agent in time (see {})",
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (c0, g0, p0) = (
        cpu(proc.pid()),
        agents_cpu(agents),
        polls_ok(client, &base).await,
    );
    tokio::time::sleep(a.interval * a.rounds as u32).await;
    let (c1, g1, p1) = (
        cpu(proc.pid()),
        agents_cpu(agents),
        polls_ok(client, &base).await,
    );
    // Two modules make one agent walk.
    let walks = ((p1 - p0) / 2.0).round() as usize;
    let (p50, p99) = latency(client, &urls, a.scrapes).await;
    proc.stop();
    Ok(Side {
        walks,
        cpu_ms_per_walk: per_walk(c1 - c0, walks),
        agent_cpu_ms_per_walk: per_walk(g1 - g0, walks),
        scrape_p50_ms: p50,
        scrape_p99_ms: p99,
    })
}

fn per_walk(cpu_s: f64, walks: usize) -> f64 {
    if walks == 0 {
        0.0
    } else {
        cpu_s * 1000.0 / walks as f64
    }
}

async fn exporter_side(
    a: &HealthBenchArgs,
    dir: &Path,
    agents: &[Agent],
    client: &reqwest::Client,
) -> Result<Side> {
    let conf = dir.join("snmp.yml");
    std::fs::write(&conf, drover::poll::compat::snmp_exporter_yml()?)?;
    let port = free_port()?;
    let log = dir.join("snmp_exporter.log");
    let child = Command::new(&a.exporter)
        .arg(format!("--config.file={}", conf.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("cannot start snmp_exporter")?;
    let mut proc = Proc::new("snmp_exporter", child, log);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get_ok(client, &format!("{base}/metrics")).await {
        proc.check_alive()?;
        if Instant::now() > deadline {
            bail!("snmp_exporter did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 0.21 takes one module a request, as Prometheus would scrape it twice.
    let urls: Vec<(String, String)> = agents
        .iter()
        .map(|ag| {
            let t = format!("{base}/snmp?target=127.0.0.1:{}", ag.port);
            (format!("{t}&module=if_mib"), format!("{t}&module=system"))
        })
        .collect();
    let (c0, g0) = (cpu(proc.pid()), agents_cpu(agents));
    let mut took = Vec::new();
    let mut walks = 0;
    for _ in 0..a.rounds {
        let round = Instant::now();
        // Spread over the interval, as Prometheus spreads its targets.
        let gap = a.interval / (urls.len().max(1) as u32);
        for (ifmib, system) in &urls {
            let t = Instant::now();
            let ok = get_ok(client, ifmib).await && get_ok(client, system).await;
            took.push(t.elapsed());
            walks += usize::from(ok);
            tokio::time::sleep(gap.saturating_sub(t.elapsed())).await;
        }
        tokio::time::sleep(a.interval.saturating_sub(round.elapsed())).await;
    }
    let (c1, g1) = (cpu(proc.pid()), agents_cpu(agents));
    took.sort();
    proc.stop();
    Ok(Side {
        walks,
        cpu_ms_per_walk: per_walk(c1 - c0, walks),
        agent_cpu_ms_per_walk: per_walk(g1 - g0, walks),
        scrape_p50_ms: percentile_ms(&took, 0.5),
        scrape_p99_ms: percentile_ms(&took, 0.99),
    })
}

/// Cached scrapes while `--simulated` agents are polled every `--sim-interval`.
async fn under_load(
    a: &HealthBenchArgs,
    exe: &Path,
    dir: &Path,
    client: &reqwest::Client,
) -> Result<(usize, f64, f64)> {
    let chunk = 5_000;
    let mut sims = Vec::new();
    let mut inventory = String::new();
    let mut left = a.simulated;
    let mut i = 0;
    while left > 0 {
        let count = left.min(chunk);
        let sim = Sim {
            kind: "snmp",
            prefix: format!("s{i}-"),
            count,
            bind: sim_address(i),
        };
        let inv = dir.join(format!("sim-{i}.toml"));
        sims.push(start_sim(exe, &sim, &inv, dir)?);
        inventory += &std::fs::read_to_string(&inv)?;
        left -= count;
        i += 1;
    }
    let ids: Vec<String> = inventory
        .lines()
        .filter_map(|l| l.strip_prefix("id = \""))
        .map(|l| l.trim_end_matches('"').to_owned())
        .collect();
    let (mut proc, base) = start_drover(exe, dir, "drover-load", &inventory, a.sim_interval)?;
    let urls: Vec<String> = ids
        .iter()
        .step_by((ids.len() / a.scrapes.max(1)).max(1))
        .map(|id| format!("{base}/snmp?target={id}&module=if_mib,system"))
        .collect();
    // Measure once (nearly) every sampled agent has had its first polls: they
    // are spread over one interval after the fleet is up.
    let deadline = Instant::now() + a.sim_interval * 3;
    loop {
        proc.check_alive()?;
        let mut polled = 0;
        for u in &urls {
            polled += usize::from(get_ok(client, u).await);
        }
        if polled * 100 >= urls.len() * 99 {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("only {polled} of {} sampled agents polled", urls.len());
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let (p50, p99) = latency(client, &urls, a.scrapes).await;
    proc.stop();
    drop(sims);
    Ok((a.simulated, p50, p99))
}

fn table(r: &HealthReport) -> String {
    let mut s = format!(
        "{} Net-SNMP agents, if_mib + system, every {}s\n{:<16} {:>8} {:>14} {:>18} {:>12} {:>12}\n",
        r.agents, r.interval_s, "", "walks", "CPU ms/walk", "agents CPU ms/walk", "scrape p50", "scrape p99"
    );
    let mut row = |name: &str, x: &Side| {
        s += &format!(
            "{name:<16} {:>8} {:>14.3} {:>18.3} {:>10.2}ms {:>10.2}ms\n",
            x.walks, x.cpu_ms_per_walk, x.agent_cpu_ms_per_walk, x.scrape_p50_ms, x.scrape_p99_ms
        );
    };
    row("drover", &r.drover);
    if let Some(e) = &r.snmp_exporter {
        row("snmp_exporter", e);
    }
    if let Some((n, p50, p99)) = r.cached_scrape_under_load {
        s += &format!("cached scrape while {n} simulated agents are polled: p50 {p50:.2} ms, p99 {p99:.2} ms\n");
    }
    s
}
