//! `drover devsim`: serve N simulated REST, SNMP or NETCONF devices on loopback until
//! Ctrl-C, with fault shares, and optionally write the matching inventory file.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use drover::devsim::netconf::{NetconfFaultRates, NetconfSim, NetconfSimConfig};
use drover::devsim::snmp::{SnmpFaultRates, SnmpSim, SnmpSimConfig};
use drover::devsim::{FaultRates, RestSim, RestSimConfig};

#[derive(Args, Debug, Clone)]
pub struct DevsimArgs {
    /// Number of devices.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub count: usize,
    /// First port (device i listens on base_port + i); 0 takes ephemeral ports.
    #[arg(long, default_value_t = 0)]
    pub base_port: u16,
    /// Address the devices listen on (any of 127.0.0.0/8 is loopback on Linux).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Id prefix (ids are prefix + zero-padded index); "rest-", "sw-" or "rtr-" by kind.
    #[arg(long)]
    pub prefix: Option<String>,
    /// What the devices speak: rest (rest_sample API), snmp (v1/v2c/v3 agents) or
    /// netconf (NETCONF over SSH).
    #[arg(long, default_value = "rest")]
    pub kind: SimKind,
    /// For --kind snmp: the SNMP version written into the inventory (1, 2c or 3).
    #[arg(long, default_value = "2c")]
    pub snmp_version: String,
    /// Write the inventory for these devices here.
    #[arg(long)]
    pub write_inventory: Option<PathBuf>,
    #[command(flatten)]
    pub netconf: NetconfArgs,
    #[command(flatten)]
    pub faults: FaultArgs,
}

/// Settings of `--kind netconf`.
#[derive(Args, Debug, Clone)]
pub struct NetconfArgs {
    /// The SSH user every NETCONF device accepts.
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// Its password (written into the inventory).
    #[arg(long, default_value = "admin-pass", env = "DROVER_DEVSIM_PASSWORD")]
    pub password: String,
    /// An OpenSSH public key file (`ssh-ed25519 AAAA...`) also accepted for the user.
    #[arg(long)]
    pub authorized_key: Option<PathBuf>,
    /// Share of NETCONF devices whose first reply never ends.
    #[arg(long, default_value_t = 0.0)]
    pub never_ending: f64,
    /// Share of NETCONF devices whose replies start with a malformed chunk header.
    #[arg(long, default_value_t = 0.0)]
    pub bad_chunk: f64,
    /// Share of NETCONF devices whose replies are --huge-bytes long.
    #[arg(long, default_value_t = 0.0)]
    pub huge: f64,
    #[arg(long, default_value_t = 16 << 20)]
    pub huge_bytes: usize,
}

/// Shares of devices (0.0 to 1.0) that start with each fault.
#[derive(Args, Debug, Clone)]
pub struct FaultArgs {
    #[arg(long, default_value_t = 0.0)]
    pub down: f64,
    #[arg(long, default_value_t = 0.0)]
    pub slow: f64,
    #[arg(long, default_value_t = 0.0)]
    pub flapping: f64,
    #[arg(long, default_value_t = 0.0)]
    pub http500: f64,
    #[arg(long, default_value_t = 0.0)]
    pub garbage: f64,
    #[arg(long, default_value_t = 0.0)]
    pub reset: f64,
    /// Added latency of slow devices.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub slow_latency: Duration,
    /// Half-cycle of flapping devices.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub flap_period: Duration,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl FaultArgs {
    pub fn rates(&self) -> FaultRates {
        FaultRates {
            down: self.down,
            slow: self.slow,
            flapping: self.flapping,
            http500: self.http500,
            garbage: self.garbage,
            reset: self.reset,
            slow_latency: self.slow_latency,
            flap_period: self.flap_period,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimKind {
    Rest,
    Snmp,
    Netconf,
}

impl DevsimArgs {
    pub fn sim_config(&self) -> RestSimConfig {
        RestSimConfig {
            count: self.count,
            id_prefix: self.prefix.clone().unwrap_or_else(|| "rest-".into()),
            base_port: self.base_port,
            bind: self.bind,
            faults: self.faults.rates(),
            ..RestSimConfig::default()
        }
    }
}

pub fn main(a: DevsimArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drover devsim: {e}");
            return 70;
        }
    };
    match a.kind {
        SimKind::Snmp => return rt.block_on(snmp(&a)),
        SimKind::Netconf => return rt.block_on(netconf(&a)),
        SimKind::Rest => {}
    }
    rt.block_on(async {
        let sim = match RestSim::start(a.sim_config()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("drover devsim: cannot start devices: {e}");
                return 69;
            }
        };
        let first = sim.devices().first().map(|d| d.url.to_string());
        let what = format!("{} simulated REST devices", sim.devices().len());
        if let Err(code) = announce(&a, &sim.inventory_toml(), &what, first) {
            return code;
        }
        drover::run::shutdown_signal().await;
        sim.shutdown().await;
        0
    })
}

async fn snmp(a: &DevsimArgs) -> i32 {
    let cfg = SnmpSimConfig {
        count: a.count,
        id_prefix: a.prefix.clone().unwrap_or_else(|| "sw-".into()),
        base_port: a.base_port,
        bind: a.bind,
        faults: SnmpFaultRates {
            down: a.faults.down,
            slow: a.faults.slow,
            slow_latency: a.faults.slow_latency,
            seed: a.faults.seed,
            ..SnmpFaultRates::default()
        },
        ..SnmpSimConfig::default()
    };
    let sim = match SnmpSim::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("drover devsim: cannot start agents: {e}");
            return 69;
        }
    };
    let first = sim.devices().first().map(|d| format!("udp:{}", d.addr));
    let what = format!("{} simulated SNMP agents", sim.devices().len());
    if let Err(code) = announce(a, &sim.inventory_toml(&a.snmp_version), &what, first) {
        return code;
    }
    drover::run::shutdown_signal().await;
    sim.shutdown().await;
    0
}

async fn netconf(a: &DevsimArgs) -> i32 {
    let authorized_key = match &a.netconf.authorized_key {
        None => None,
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| russh::keys::PublicKey::from_openssh(t.trim()).map_err(|e| e.to_string()))
        {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("drover devsim: {}: {e}", path.display());
                return 66;
            }
        },
    };
    let cfg = NetconfSimConfig {
        count: a.count,
        id_prefix: a.prefix.clone().unwrap_or_else(|| "rtr-".into()),
        base_port: a.base_port,
        bind: a.bind,
        username: a.netconf.username.clone(),
        password: a.netconf.password.clone(),
        authorized_key,
        faults: NetconfFaultRates {
            down: a.faults.down,
            slow: a.faults.slow,
            never_ending: a.netconf.never_ending,
            bad_chunk: a.netconf.bad_chunk,
            huge: a.netconf.huge,
            slow_latency: a.faults.slow_latency,
            huge_bytes: a.netconf.huge_bytes,
            seed: a.faults.seed,
        },
        ..NetconfSimConfig::default()
    };
    let sim = match NetconfSim::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("drover devsim: cannot start devices: {e}");
            return 69;
        }
    };
    let first = sim.devices().first().map(|d| format!("ssh://{}", d.addr));
    let what = format!(
        "{} simulated NETCONF devices (host key {})",
        sim.devices().len(),
        sim.host_key_fingerprint()
    );
    if let Err(code) = announce(a, &sim.inventory_toml(), &what, first) {
        return code;
    }
    drover::run::shutdown_signal().await;
    sim.shutdown().await;
    0
}

/// Writes the inventory when asked and says what is up; `Err` is the exit code.
fn announce(a: &DevsimArgs, inventory: &str, what: &str, first: Option<String>) -> Result<(), i32> {
    if let Some(path) = &a.write_inventory {
        if let Err(e) = std::fs::write(path, inventory) {
            eprintln!("drover devsim: {}: {e}", path.display());
            return Err(73);
        }
        outln!("inventory written to {}", path.display());
    }
    outln!(
        "{what} up (first at {}); Ctrl-C to stop",
        first.unwrap_or_default()
    );
    Ok(())
}
