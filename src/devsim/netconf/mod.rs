//! NETCONF device simulator: N devices, each an SSH server on its own port serving
//! the `netconf` subsystem (RFC 6241 over RFC 6242), with a small candidate-based
//! datastore per device, for tests and the fleet bench.
//!
//! All devices of one simulator share one Ed25519 host key (generated at start; its
//! OpenSSH `SHA256:` fingerprint goes into the inventory as `host_key`) and one
//! username and password (optionally also an authorized public key). Ports are laid
//! out as the REST simulator's: `base_port + i`, or ephemeral ports when 0.
//!
//! Per device, the configuration (`running`, `candidate`, locks) is created on the
//! first session, so idle devices cost a listener and a task. Faults ([`NetconfFault`])
//! are assigned at start to seeded, disjoint shares ([`NetconfFaultRates`]) or set at
//! runtime with [`NetconfSim::set_fault`]: `down` refuses connections; the others
//! change how RPC replies (not the hello) are sent.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use drover::devsim::netconf::{NetconfSim, NetconfSimConfig};
//! let sim = NetconfSim::start(NetconfSimConfig { count: 10, ..Default::default() }).await?;
//! std::fs::write("inventory.toml", sim.inventory_toml())?;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod datastore;
mod session;
mod ssh;
#[cfg(test)]
mod tests;
mod xml;

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::rest::{bind_listener, PortPicker};
use super::shares::{assign_shares, toml_string};
pub use datastore::Store;
use session::DeviceState;
use ssh::{Device, Shared};

/// A misbehaviour of one simulated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetconfFault {
    None,
    /// Connections refused (and open ones closed).
    Down,
    /// Every RPC reply after this delay.
    Slow(Duration),
    /// The first RPC reply is cut in half and never finished; the session then
    /// stays open and silent.
    NeverEnding,
    /// RPC replies start with a malformed chunk header (`\n#0x1f\n`).
    BadChunk,
    /// RPC replies are a well-formed `<data>` of about this many bytes.
    Huge(usize),
}

/// Start-time fault shares (each 0..=1, disjoint, over a seeded shuffle).
#[derive(Debug, Clone, PartialEq)]
pub struct NetconfFaultRates {
    pub down: f64,
    pub slow: f64,
    pub never_ending: f64,
    pub bad_chunk: f64,
    pub huge: f64,
    pub slow_latency: Duration,
    pub huge_bytes: usize,
    pub seed: u64,
}

impl Default for NetconfFaultRates {
    fn default() -> Self {
        NetconfFaultRates {
            down: 0.0,
            slow: 0.0,
            never_ending: 0.0,
            bad_chunk: 0.0,
            huge: 0.0,
            slow_latency: Duration::from_secs(2),
            huge_bytes: 16 << 20,
            seed: 1,
        }
    }
}

#[derive(Clone)]
pub struct NetconfSimConfig {
    pub count: usize,
    /// Ids are `id_prefix` + index zero-padded to `id_width` digits.
    pub id_prefix: String,
    pub id_width: usize,
    pub first_index: usize,
    pub bind: IpAddr,
    /// 0: ephemeral ports; otherwise device `i` (0-based) listens on `base_port + i`.
    pub base_port: u16,
    pub username: String,
    pub password: String,
    /// A public key also accepted for `username`.
    pub authorized_key: Option<PublicKey>,
    /// Largest incoming NETCONF message accepted; a larger one ends the session.
    pub max_message: usize,
    /// How long a failed authentication takes (russh's constant-time rejection).
    pub auth_rejection_time: Duration,
    pub faults: NetconfFaultRates,
}

impl fmt::Debug for NetconfSimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetconfSimConfig")
            .field("count", &self.count)
            .field("id_prefix", &self.id_prefix)
            .field("bind", &self.bind)
            .field("base_port", &self.base_port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("authorized_key", &self.authorized_key.is_some())
            .field("max_message", &self.max_message)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl Default for NetconfSimConfig {
    fn default() -> Self {
        NetconfSimConfig {
            count: 100,
            id_prefix: "rtr-".into(),
            id_width: 4,
            first_index: 1,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 0,
            username: "admin".into(),
            password: "admin-pass".into(),
            authorized_key: None,
            max_message: 4 << 20,
            auth_rejection_time: Duration::from_millis(200),
            faults: NetconfFaultRates::default(),
        }
    }
}

/// Where one simulated device listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetconfDeviceInfo {
    pub id: String,
    pub addr: SocketAddr,
}

/// A running NETCONF simulator.
pub struct NetconfSim {
    infos: Vec<NetconfDeviceInfo>,
    devices: Vec<Arc<Device>>,
    by_id: HashMap<String, usize>,
    host_key: PublicKey,
    username: String,
    password: String,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl fmt::Debug for NetconfSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetconfSim")
            .field("devices", &self.infos.len())
            .field("host_key", &self.host_key_fingerprint())
            .finish_non_exhaustive()
    }
}

fn assign_faults(count: usize, r: &NetconfFaultRates) -> Vec<NetconfFault> {
    let mut rng = StdRng::seed_from_u64(r.seed);
    let kinds = [
        (r.down, NetconfFault::Down),
        (r.slow, NetconfFault::Slow(r.slow_latency)),
        (r.never_ending, NetconfFault::NeverEnding),
        (r.bad_chunk, NetconfFault::BadChunk),
        (r.huge, NetconfFault::Huge(r.huge_bytes)),
    ];
    assign_shares(count, &mut rng, &kinds, NetconfFault::None, |_, _, _| {})
}

impl NetconfSim {
    /// Generates the host key, binds every device's port, then spawns one listener
    /// task per device on the current runtime. Fails, leaving nothing running, if a
    /// port cannot be bound.
    pub async fn start(cfg: NetconfSimConfig) -> io::Result<NetconfSim> {
        let port_overflow = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "base_port {} + {} devices exceeds port 65535",
                    cfg.base_port, cfg.count
                ),
            )
        };
        if cfg.base_port != 0 && usize::from(cfg.base_port).saturating_add(cfg.count) > 65_536 {
            return Err(port_overflow());
        }
        let key = PrivateKey::random(
            &mut russh::keys::ssh_key::rand_core::OsRng,
            Algorithm::Ed25519,
        )
        .map_err(|e| io::Error::other(format!("cannot generate the host key: {e}")))?;
        let host_key = key.public_key().clone();
        let ssh = russh::server::Config {
            keys: vec![key],
            methods: russh::MethodSet::from(
                &[russh::MethodKind::Password, russh::MethodKind::PublicKey][..],
            ),
            auth_rejection_time: cfg.auth_rejection_time,
            auth_rejection_time_initial: Some(Duration::ZERO),
            // Sessions stay open while idle, as a proxy keeps them.
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            authorized_key: cfg.authorized_key.clone(),
            max_message: cfg.max_message,
            next_session: AtomicU32::new(1),
            ssh: Arc::new(ssh),
        });

        let mut ports = PortPicker::new();
        let mut listeners = Vec::with_capacity(cfg.count);
        let mut infos = Vec::with_capacity(cfg.count);
        for i in 0..cfg.count {
            let id = format!(
                "{}{:0width$}",
                cfg.id_prefix,
                cfg.first_index + i,
                width = cfg.id_width
            );
            let port = if cfg.base_port == 0 {
                0
            } else {
                u16::try_from(i)
                    .ok()
                    .and_then(|i| cfg.base_port.checked_add(i))
                    .ok_or_else(port_overflow)?
            };
            let want = SocketAddr::new(cfg.bind, port);
            let bound = if port == 0 {
                ports.bind(cfg.bind)
            } else {
                bind_listener(want)
            };
            let listener = bound.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("binding simulated device {id} on {want}: {e}"),
                )
            })?;
            let addr = listener.local_addr()?;
            infos.push(NetconfDeviceInfo { id, addr });
            listeners.push(listener);
        }

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let faults = assign_faults(cfg.count, &cfg.faults);
        let mut devices = Vec::with_capacity(cfg.count);
        let mut by_id = HashMap::with_capacity(cfg.count);
        for (i, (listener, fault)) in listeners.into_iter().zip(faults).enumerate() {
            let info = &infos[i];
            let down = fault == NetconfFault::Down;
            let dev = Arc::new(Device {
                state: Arc::new(DeviceState::new(&info.id)),
                fault: watch::Sender::new(fault),
            });
            by_id.insert(info.id.clone(), i);
            // A device that starts down already refuses connections when start returns.
            let listener = (!down).then_some(listener);
            tracker.spawn(ssh::supervise(
                Arc::clone(&dev),
                Arc::clone(&shared),
                info.addr,
                listener,
                tracker.clone(),
                shutdown.clone(),
            ));
            devices.push(dev);
        }
        debug!(devices = cfg.count, "NETCONF device simulator started");
        Ok(NetconfSim {
            infos,
            devices,
            by_id,
            host_key,
            username: cfg.username,
            password: cfg.password,
            shutdown,
            tracker,
        })
    }

    /// All devices, in index order.
    pub fn devices(&self) -> &[NetconfDeviceInfo] {
        &self.infos
    }

    /// The host key every device presents.
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The host key's OpenSSH fingerprint, `SHA256:<base64 without padding>`.
    pub fn host_key_fingerprint(&self) -> String {
        self.host_key.fingerprint(HashAlg::Sha256).to_string()
    }

    fn device(&self, id: &str) -> Option<&Arc<Device>> {
        self.by_id.get(id).and_then(|&i| self.devices.get(i))
    }

    pub fn fault(&self, id: &str) -> Option<NetconfFault> {
        self.device(id).map(|d| d.fault.borrow().clone())
    }

    /// Changes a device's fault; `false` for an unknown id. Reply faults apply to the
    /// next reply; `Down` and back up are applied by the device's task right after.
    pub fn set_fault(&self, id: &str, fault: NetconfFault) -> bool {
        match self.device(id) {
            Some(d) => {
                debug!(device = id, ?fault, "fault set");
                d.fault.send_replace(fault);
                true
            }
            None => false,
        }
    }

    /// A device's datastore as XML (the children of `<data>`), for tests.
    pub fn config_xml(&self, id: &str, store: Store) -> Option<String> {
        self.device(id).map(|d| {
            d.state.with_store(|ds| {
                let root = match store {
                    Store::Running => ds.running(),
                    Store::Candidate => ds.candidate(),
                };
                let mut s = String::new();
                for e in root.elements() {
                    e.write(&mut s, None);
                }
                s
            })
        })
    }

    /// The fleet as a drover inventory: one `[[device]]` per device with `id`,
    /// `proxytype = "netconf"`, `host`, `port`, `username`, `password`, `host_key`.
    pub fn inventory_toml(&self) -> String {
        let fp = toml_string(&self.host_key_fingerprint());
        let user = toml_string(&self.username);
        let pass = toml_string(&self.password);
        let mut out = String::with_capacity(self.infos.len() * 200);
        for d in &self.infos {
            let _ = write!(
                out,
                "[[device]]\nid = {}\nproxytype = \"netconf\"\nhost = {}\nport = {}\n\
                 username = {user}\npassword = {pass}\nhost_key = {fp}\n\n",
                toml_string(&d.id),
                toml_string(&d.addr.ip().to_string()),
                d.addr.port(),
            );
        }
        out
    }

    /// Stops every listener and session and waits for their tasks.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        debug!(
            devices = self.infos.len(),
            "NETCONF device simulator stopped"
        );
    }
}

impl Drop for NetconfSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.tracker.close();
    }
}
