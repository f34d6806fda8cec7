//! Simulated `rest_sample` devices: many small HTTP/1.1 servers, one per
//! loopback port, each with its own services/packages state and an injectable
//! [`Fault`].
//!
//! Task layout per device: one *supervisor* task owns the listener and applies
//! fault changes (closing and rebinding the port for [`Fault::Down`] and
//! [`Fault::Flapping`]); every accepted connection gets its own task. All
//! tasks are tracked so [`RestSim::shutdown`] can wait for them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, trace, warn};

use super::shares::{assign_shares, toml_string};

use super::http::{self, ConnHeader, Method, RequestHead};

/// A misbehaviour injected into one simulated device. Change it at runtime
/// with [`RestSim::set_fault`].
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Healthy.
    None,
    /// Connection refused: the listening socket is closed and open
    /// connections are dropped. Clearing the fault rebinds the same port.
    Down,
    /// Every response is delayed by this long (the request counts as in
    /// flight while it waits).
    Slow(Duration),
    /// Alternates between up and [`Fault::Down`] every `period`, starting up.
    Flapping { period: Duration },
    /// Every request gets HTTP 500 with a JSON error body; state is untouched.
    Http500,
    /// Every request is carried out, but the 200 reply body is not JSON
    /// (random bytes, or the real reply cut in half) while still claiming
    /// `application/json`.
    Garbage,
    /// The request is read, then the connection is reset (RST) instead of
    /// answered; state is untouched.
    Reset,
}

/// Share of the fleet (0.0..=1.0 each) that starts with each fault.
///
/// The sets are disjoint: devices are shuffled with `seed`, the first
/// `round(down * count)` get [`Fault::Down`], the next `round(slow * count)`
/// get [`Fault::Slow`], then flapping, http500, garbage, reset. Shares that
/// add up to more than 1 are cut off at the end of the fleet; NaN or negative
/// shares count as 0.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRates {
    pub down: f64,
    pub slow: f64,
    pub flapping: f64,
    pub http500: f64,
    pub garbage: f64,
    pub reset: f64,
    /// Latency of the `slow` devices.
    pub slow_latency: Duration,
    /// Half-cycle of the `flapping` devices.
    pub flap_period: Duration,
    pub seed: u64,
}

impl Default for FaultRates {
    fn default() -> Self {
        FaultRates {
            down: 0.0,
            slow: 0.0,
            flapping: 0.0,
            http500: 0.0,
            garbage: 0.0,
            reset: 0.0,
            slow_latency: Duration::from_secs(2),
            flap_period: Duration::from_secs(5),
            seed: 1,
        }
    }
}

/// How many devices to simulate and where.
#[derive(Debug, Clone, PartialEq)]
pub struct RestSimConfig {
    pub count: usize,
    /// Device ids are `id_prefix` + index zero-padded to `id_width` digits.
    pub id_prefix: String,
    pub id_width: usize,
    /// Index of the first device (so ids start at `rest-0001` by default).
    pub first_index: usize,
    pub bind: IpAddr,
    /// 0: each device takes a free port of the kernel's ephemeral range;
    /// otherwise device `i` (0-based) listens on `base_port + i`.
    ///
    /// While a device is down its port is free, and with ephemeral ports
    /// another process may take it (the device then logs a warning and keeps
    /// retrying the rebind), and a client connecting to it can, rarely, be
    /// given that same port as its source and connect to itself. Use fixed
    /// ports (outside the ephemeral range) where that matters.
    pub base_port: u16,
    pub faults: FaultRates,
}

impl Default for RestSimConfig {
    fn default() -> Self {
        RestSimConfig {
            count: 1000,
            id_prefix: "rest-".to_owned(),
            id_width: 4,
            first_index: 1,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 0,
            faults: FaultRates::default(),
        }
    }
}

/// Where one simulated device can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDeviceInfo {
    pub id: String,
    /// `http://127.0.0.1:PORT/`, with the trailing slash `rest_sample` wants.
    pub url: String,
    pub addr: SocketAddr,
}

/// Accept backlog per device; generous because a proxy may open many
/// connections to one device at once while the supervisor is busy.
const BACKLOG: u32 = 1024;
/// Initial read buffer per connection: one typical request head fits.
const READ_CHUNK: usize = 1024;
/// Flapping faster than this would just burn CPU rebinding sockets.
const MIN_FLAP_PERIOD: Duration = Duration::from_millis(10);
/// How long to wait before retrying a rebind that failed (port taken).
const REBIND_RETRY: Duration = Duration::from_millis(200);
/// Pause after a failed accept (e.g. out of file descriptors) so the
/// supervisor does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

type Table = BTreeMap<String, String>;

/// A device's mutable state. Both maps start as clones of one shared `Arc`
/// and are only copied on a device's first write to them, so an untouched
/// device costs two pointers rather than two maps.
#[derive(Clone)]
struct Tables {
    services: Arc<Table>,
    packages: Arc<Table>,
}

impl Tables {
    fn defaults() -> Tables {
        let table = |pairs: &[(&str, &str)]| -> Arc<Table> {
            Arc::new(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        Tables {
            services: table(&[
                ("apache", "running"),
                ("postgresql", "stopped"),
                ("redbull", "running"),
            ]),
            packages: table(&[
                ("coreutils", "1.0"),
                ("apache", "2.4"),
                ("tinc", "1.4"),
                ("redbull", "999.99"),
            ]),
        }
    }
}

/// The current fault plus a version that counts changes, so
/// [`RestSim::set_fault_and_wait`] can tell when its change was applied.
struct FaultCell {
    version: u64,
    fault: Fault,
}

/// Everything shared between a device's supervisor, its connections and the
/// [`RestSim`] handle.
struct Device {
    id: Box<str>,
    /// Position in the fleet; the serial number is derived from it.
    ordinal: u64,
    fault: watch::Sender<FaultCell>,
    /// Highest fault version the supervisor has acted on.
    applied: watch::Sender<u64>,
    tables: Mutex<Tables>,
}

impl Device {
    fn current_fault(&self) -> Fault {
        self.fault.borrow().fault.clone()
    }

    /// Stores a new fault and returns its version.
    fn set_fault(&self, fault: Fault) -> u64 {
        let mut version = 0;
        // send_modify notifies the supervisor even if the value is unchanged,
        // which is harmless and keeps versions strictly increasing.
        self.fault.send_modify(|cell| {
            cell.version += 1;
            cell.fault = fault;
            version = cell.version;
        });
        version
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding this lock cannot leave the maps half-written
        // (every update is a single insert/remove), so poisoning is ignored.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serial(&self) -> String {
        // splitmix64 is a bijection on u64, so distinct ordinals give
        // distinct serials that still look like serial numbers, not counters.
        let mut z = self.ordinal.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("SIM{:016X}", z ^ (z >> 31))
    }
}

/// Request counters shared by all devices.
#[derive(Default)]
struct Stats {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicU64,
}

impl Stats {
    fn begin(&self) -> InFlight<'_> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }
}

/// Decrements `in_flight` on drop, so a request cut short (device went down
/// mid-sleep, client vanished, shutdown) is still accounted for.
struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running fleet of simulated `rest_sample` devices.
///
/// Dropping it stops every device too (without waiting); prefer
/// [`RestSim::shutdown`], which waits until all sockets are closed.
pub struct RestSim {
    infos: Vec<SimDeviceInfo>,
    devices: Vec<Arc<Device>>,
    by_id: HashMap<String, usize>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for RestSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestSim")
            .field("devices", &self.infos.len())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl RestSim {
    /// Binds every device's port, then spawns their tasks on the current
    /// tokio runtime. Fails without leaving anything running if any port
    /// cannot be bound.
    ///
    /// Each device holds one file descriptor for its listener plus one per
    /// open connection: 10,000 devices need `RLIMIT_NOFILE` well above
    /// 10,000 (and, with `base_port == 0`, as many free ephemeral ports).
    pub async fn start(cfg: RestSimConfig) -> io::Result<RestSim> {
        let port_overflow = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "base_port {} + {} devices exceeds port 65535",
                    cfg.base_port, cfg.count
                ),
            )
        };
        // Checked before binding anything, so a bad range fails fast.
        if cfg.base_port != 0 && usize::from(cfg.base_port).saturating_add(cfg.count) > 65_536 {
            return Err(port_overflow());
        }
        let (faults, first_flap) = assign_faults(cfg.count, &cfg.faults);
        let defaults = Tables::defaults();

        // Bind everything before spawning anything, so an error here leaves
        // no half-started fleet behind.
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
            infos.push(SimDeviceInfo {
                url: format!("http://{addr}/"),
                id,
                addr,
            });
            listeners.push(listener);
        }

        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut devices = Vec::with_capacity(cfg.count);
        let mut by_id = HashMap::with_capacity(cfg.count);
        let starts = listeners.into_iter().zip(faults).zip(first_flap);
        for (i, ((listener, fault), first_flap)) in starts.enumerate() {
            let info = &infos[i];
            let dev = Arc::new(Device {
                id: info.id.clone().into_boxed_str(),
                ordinal: i as u64,
                fault: watch::Sender::new(FaultCell { version: 0, fault }),
                applied: watch::Sender::new(0),
                tables: Mutex::new(defaults.clone()),
            });
            by_id.insert(info.id.clone(), i);
            // A device that starts down must already refuse connections
            // when start() returns, so its listener is not even handed over.
            let listener = (dev.current_fault() != Fault::Down).then_some(listener);
            let supervisor = Supervisor {
                dev: Arc::clone(&dev),
                addr: info.addr,
                stats: Arc::clone(&stats),
                tracker: tracker.clone(),
                shutdown: shutdown.clone(),
            };
            tracker.spawn(supervisor.run(listener, first_flap));
            devices.push(dev);
        }
        debug!(devices = cfg.count, "REST device simulator started");
        Ok(RestSim {
            infos,
            devices,
            by_id,
            stats,
            shutdown,
            tracker,
        })
    }

    /// All devices, in index order.
    pub fn devices(&self) -> &[SimDeviceInfo] {
        &self.infos
    }

    fn device(&self, id: &str) -> Option<&Arc<Device>> {
        self.by_id.get(id).and_then(|&i| self.devices.get(i))
    }

    /// The device's current fault, `None` for an unknown id.
    pub fn fault(&self, id: &str) -> Option<Fault> {
        self.device(id).map(|d| d.current_fault())
    }

    /// Changes a device's fault; `false` if the id is unknown.
    ///
    /// Request-level faults (slow, 500, garbage, reset) apply to the next
    /// request read. Listener changes (down, flapping, back up) are applied
    /// by the device's task shortly after this returns; use
    /// [`RestSim::set_fault_and_wait`] when a test must not race that.
    pub fn set_fault(&self, id: &str, fault: Fault) -> bool {
        match self.device(id) {
            Some(dev) => {
                debug!(device = %dev.id, ?fault, "fault set");
                dev.set_fault(fault);
                true
            }
            None => false,
        }
    }

    /// Like [`RestSim::set_fault`], then waits until the device's task has
    /// acted on it: after `Down` the port refuses connections, after
    /// clearing it the port has been rebound (or one rebind attempt failed
    /// and was logged; it keeps retrying). Open connections are closed
    /// asynchronously right after.
    pub async fn set_fault_and_wait(&self, id: &str, fault: Fault) -> bool {
        let Some(dev) = self.device(id) else {
            return false;
        };
        debug!(device = %dev.id, ?fault, "fault set (waiting)");
        let mut applied = dev.applied.subscribe();
        let version = dev.set_fault(fault);
        // The sender lives in `dev`, which outlives this call, so an error
        // here is impossible; either way there is nothing left to wait for.
        let _ = applied.wait_for(|&v| v >= version).await;
        true
    }

    /// State ("running"/"stopped") of a service on a device, for tests.
    pub fn service_state(&self, id: &str, service: &str) -> Option<String> {
        self.device(id)
            .and_then(|d| d.tables().services.get(service).cloned())
    }

    /// Installed version of a package on a device, for tests.
    pub fn package_version(&self, id: &str, package: &str) -> Option<String> {
        self.device(id)
            .and_then(|d| d.tables().packages.get(package).cloned())
    }

    /// Requests being handled right now, across all devices: from when a
    /// request head has been read until its response is written (slow
    /// devices count while they sleep).
    pub fn in_flight(&self) -> usize {
        self.stats.in_flight.load(Ordering::SeqCst)
    }

    /// Highest [`RestSim::in_flight`] seen since start or the last
    /// [`RestSim::reset_peak`].
    pub fn peak_in_flight(&self) -> usize {
        self.stats.peak.load(Ordering::SeqCst)
    }

    /// Restarts peak tracking from the current in-flight count (not 0, so
    /// the peak can never be below what is in flight).
    pub fn reset_peak(&self) {
        self.stats.peak.store(
            self.stats.in_flight.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
    }

    /// Well-formed requests received since start, whatever their fault.
    pub fn requests_total(&self) -> u64 {
        self.stats.total.load(Ordering::Relaxed)
    }

    /// The fleet as a drover inventory: one `[[device]]` table per device
    /// with `id`, `proxytype = "rest_sample"` and `url`.
    pub fn inventory_toml(&self) -> String {
        let mut out = String::with_capacity(self.infos.len() * 96);
        for d in &self.infos {
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "[[device]]\nid = {}\nproxytype = \"rest_sample\"\nurl = {}\n\n",
                toml_string(&d.id),
                toml_string(&d.url)
            );
        }
        out
    }

    /// Stops every listener and connection and waits until all device tasks
    /// have exited (so every port is closed when this returns).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        debug!(devices = self.infos.len(), "REST device simulator stopped");
    }
}

impl Drop for RestSim {
    fn drop(&mut self) {
        // Without this, forgetting shutdown() would leave thousands of
        // listeners running until the runtime ends.
        self.shutdown.cancel();
        self.tracker.close();
    }
}

/// Initial fault of every device, plus the length of the first "up" phase of
/// flapping devices (staggered so the flapping set does not go down in
/// lockstep). Deterministic for a given seed.
fn assign_faults(count: usize, rates: &FaultRates) -> (Vec<Fault>, Vec<Option<Duration>>) {
    let mut rng = StdRng::seed_from_u64(rates.seed);
    let mut first_flap = vec![None; count];
    let flap_period = rates.flap_period.max(MIN_FLAP_PERIOD);
    let kinds = [
        (rates.down, Fault::Down),
        (rates.slow, Fault::Slow(rates.slow_latency)),
        (
            rates.flapping,
            Fault::Flapping {
                period: rates.flap_period,
            },
        ),
        (rates.http500, Fault::Http500),
        (rates.garbage, Fault::Garbage),
        (rates.reset, Fault::Reset),
    ];
    let faults = assign_shares(count, &mut rng, &kinds, Fault::None, |dev, fault, rng| {
        if matches!(fault, Fault::Flapping { .. }) {
            let nanos = u64::try_from(flap_period.as_nanos()).unwrap_or(u64::MAX);
            if let Some(slot) = first_flap.get_mut(dev) {
                *slot = Some(Duration::from_nanos(rng.random_range(1..=nanos)));
            }
        }
    });
    (faults, first_flap)
}

pub(super) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // SO_REUSEADDR is needed to rebind the same port after Down while
    // connections the device closed are still in TIME_WAIT on it; accepted
    // sockets inherit the flag from the listener, and the kernel only lets
    // the rebind through if those TIME_WAIT sockets carry it too.
    if addr.port() == 0 {
        // Setting it only after an ephemeral bind: with the flag set, Linux
        // searches for a free ephemeral port so much harder that binding
        // 10,000 devices takes tens of seconds instead of a fraction of one.
        socket.bind(addr)?;
        socket.set_reuseaddr(true)?;
    } else {
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
    }
    socket.listen(BACKLOG)
}

/// Holds a down device's port: bound but not listening, so connections are
/// refused while no other socket (another simulator, a client's source port) can
/// take the port and answer in the device's place.
pub(super) fn reserve_port(addr: SocketAddr) -> io::Result<TcpSocket> {
    let new = || {
        if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
    };
    // Without SO_REUSEADDR first: Linux lets two sockets share a port when both
    // set it and neither listens, so a reserving socket with the flag would not
    // keep another simulator's (flagged) bind out. With it only as a fallback,
    // when the device's own closed connections still sit in TIME_WAIT.
    let socket = new()?;
    if socket.bind(addr).is_ok() {
        return Ok(socket);
    }
    let socket = new()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Picks ephemeral ports for `base_port == 0`.
///
/// Letting the kernel choose (`bind` to port 0) is what "ephemeral" means,
/// but Linux hands out ports in contiguous runs and searches linearly from a
/// random start, so once a previous fleet's TIME_WAIT sockets occupy a long
/// run, every bind scans thousands of ports: binding 10,000 devices went from
/// 0.3 s to 36 s on the second run of the same test. Probing random ports of
/// the kernel's own ephemeral range (minus reserved ports) costs a few failed
/// binds at worst, and clients' outgoing connections still avoid ports that
/// have a listener. Falls back to port 0 when the range is unknown (not
/// Linux) or probing keeps hitting used ports.
pub(super) struct PortPicker {
    range: Option<(u16, u16)>,
    reserved: Vec<(u16, u16)>,
    rng: StdRng,
}

/// Random probes per device before leaving the choice to the kernel.
const PORT_PROBES: usize = 64;

impl PortPicker {
    pub(super) fn new() -> PortPicker {
        let read = |name: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"));
        PortPicker {
            range: read("ip_local_port_range")
                .ok()
                .and_then(|s| parse_port_range(&s)),
            reserved: read("ip_local_reserved_ports")
                .map(|s| parse_port_list(&s))
                .unwrap_or_default(),
            rng: StdRng::from_rng(&mut rand::rng()),
        }
    }

    pub(super) fn bind(&mut self, ip: IpAddr) -> io::Result<TcpListener> {
        if let Some((lo, hi)) = self.range {
            for _ in 0..PORT_PROBES {
                let port = self.rng.random_range(lo..=hi);
                if self.reserved.iter().any(|&(a, b)| (a..=b).contains(&port)) {
                    continue;
                }
                match bind_listener(SocketAddr::new(ip, port)) {
                    Ok(listener) => return Ok(listener),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        bind_listener(SocketAddr::new(ip, 0))
    }
}

/// Parses `ip_local_port_range` ("32768\t60999").
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo > 0 && lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

/// Parses `ip_local_reserved_ports` ("8080,9000-9100"); bad items are skipped.
fn parse_port_list(text: &str) -> Vec<(u16, u16)> {
    text.trim()
        .split(',')
        .filter_map(|item| {
            let item = item.trim();
            match item.split_once('-') {
                Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                None => item.parse().ok().map(|p| (p, p)),
            }
        })
        .collect()
}

/// Where a flapping device is in its cycle.
#[derive(Debug, Clone, Copy)]
struct FlapPhase {
    period: Duration,
    up: bool,
    until: Instant,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn accept_opt(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Owns one device's listener and turns its fault into listener state.
struct Supervisor {
    dev: Arc<Device>,
    addr: SocketAddr,
    stats: Arc<Stats>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Supervisor {
    async fn run(self, mut listener: Option<TcpListener>, mut first_flap: Option<Duration>) {
        let mut faults = self.dev.fault.subscribe();
        // Warn once per outage of the port, not on every retry.
        let mut rebind_warned = false;
        // Cancelled whenever the device goes down, closing its connections;
        // replaced by a fresh token when it comes back up.
        let mut conns = self.shutdown.child_token();
        let mut flap: Option<FlapPhase> = None;
        let mut reserved: Option<TcpSocket> = if listener.is_none() {
            reserve_port(self.addr).ok()
        } else {
            None
        };
        loop {
            let (version, fault) = {
                let cell = faults.borrow_and_update();
                (cell.version, cell.fault.clone())
            };
            match fault {
                Fault::Flapping { period } => {
                    let period = period.max(MIN_FLAP_PERIOD);
                    // Keep the phase across unrelated wake-ups; restart the
                    // cycle (up first) when flapping is newly set.
                    if flap.is_none_or(|f| f.period != period) {
                        let first = first_flap.take().unwrap_or(period);
                        flap = Some(FlapPhase {
                            period,
                            up: true,
                            until: Instant::now() + first,
                        });
                    }
                }
                _ => flap = None,
            }
            // The staggered first phase only applies to the initial fault.
            first_flap = None;
            let want_up = match fault {
                Fault::Down => false,
                Fault::Flapping { .. } => flap.is_none_or(|f| f.up),
                _ => true,
            };

            let mut rebind_failed = false;
            if want_up && listener.is_none() {
                let bound = match reserved.take() {
                    // The flag before listening, whichever way the port was
                    // reserved: accepted sockets inherit it, and without it the
                    // TIME_WAIT they leave at the next outage would refuse the
                    // rebind after it for a minute.
                    Some(s) => s.set_reuseaddr(true).and_then(|()| s.listen(BACKLOG)),
                    None => bind_listener(self.addr),
                };
                match bound {
                    Ok(l) => {
                        debug!(device = %self.dev.id, addr = %self.addr, "device up");
                        listener = Some(l);
                        conns = self.shutdown.child_token();
                        rebind_warned = false;
                    }
                    Err(e) => {
                        if rebind_warned {
                            debug!(device = %self.dev.id, addr = %self.addr, error = %e,
                                "rebind failed again");
                        } else {
                            warn!(device = %self.dev.id, addr = %self.addr, error = %e,
                                "cannot rebind simulated device; retrying");
                            rebind_warned = true;
                        }
                        rebind_failed = true;
                    }
                }
            } else if !want_up && listener.is_some() {
                debug!(device = %self.dev.id, addr = %self.addr, "device down");
                listener = None;
                reserved = reserve_port(self.addr).ok();
                conns.cancel();
            }
            self.dev.applied.send_if_modified(|v| {
                let newer = *v < version;
                if newer {
                    *v = version;
                }
                newer
            });

            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                changed = faults.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = sleep_until_opt(flap.map(|f| f.until)) => {
                    if let Some(f) = flap.as_mut() {
                        f.up = !f.up;
                        // Keep the cadence, but never schedule in the past
                        // (a stalled runtime would otherwise flip rapidly).
                        f.until = (f.until + f.period).max(Instant::now());
                    }
                }
                _ = tokio::time::sleep(REBIND_RETRY), if rebind_failed => {}
                accepted = accept_opt(listener.as_ref()) => match accepted {
                    Ok((stream, peer)) => {
                        trace!(device = %self.dev.id, %peer, "connection accepted");
                        // Small replies on keep-alive connections: Nagle
                        // would only add delayed-ACK latency.
                        let _ = stream.set_nodelay(true);
                        self.tracker.spawn(run_connection(
                            stream,
                            Arc::clone(&self.dev),
                            Arc::clone(&self.stats),
                            conns.clone(),
                        ));
                    }
                    Err(e) => {
                        warn!(device = %self.dev.id, error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
            }
        }
        conns.cancel();
    }
}

async fn run_connection(
    stream: TcpStream,
    dev: Arc<Device>,
    stats: Arc<Stats>,
    close: CancellationToken,
) {
    tokio::select! {
        biased;
        // Dropping the serve future drops the stream: that is the close.
        _ = close.cancelled() => trace!(device = %dev.id, "connection closed: device down"),
        res = serve_connection(stream, &dev, &stats) => {
            if let Err(e) = res {
                trace!(device = %dev.id, error = %e, "connection ended");
            }
        }
    }
}

/// Outcome of waiting for a request head.
enum HeadRead {
    /// A complete head of this many bytes is at the start of the buffer.
    Complete(usize),
    /// The peer closed before sending a full head.
    Eof,
    TooLarge,
}

async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<HeadRead> {
    let mut scanned = 0;
    loop {
        // Empty lines before a request line must be ignored (RFC 9112 §2.2);
        // some clients send a stray CRLF after a body.
        let blank = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 {
            buf.advance(blank);
            scanned = 0;
        }
        if let Some(len) = http::find_head_end(buf, scanned) {
            return Ok(HeadRead::Complete(len));
        }
        if buf.len() > http::MAX_HEAD {
            return Ok(HeadRead::TooLarge);
        }
        // A terminator may straddle this read and the next one.
        scanned = buf.len().saturating_sub(2);
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await? == 0 {
            return Ok(HeadRead::Eof);
        }
    }
}

/// Reads and throws away a request body; what follows it (a pipelined
/// request) stays in `buf`.
async fn discard_body(stream: &mut TcpStream, buf: &mut BytesMut, len: u64) -> io::Result<()> {
    let mut left = len;
    loop {
        let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        buf.advance(take);
        left -= take as u64;
        if left == 0 {
            return Ok(());
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

async fn write_error(stream: &mut TcpStream, status: u16, message: &str) -> io::Result<()> {
    let body = json_body(&ErrorReply { error: message });
    let bytes = http::encode_response(status, "application/json", &body, false, ConnHeader::Close);
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}

async fn serve_connection(mut stream: TcpStream, dev: &Device, stats: &Stats) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let head_len = match read_head(&mut stream, &mut buf).await? {
            HeadRead::Complete(len) => len,
            HeadRead::Eof => return Ok(()),
            HeadRead::TooLarge => {
                return write_error(&mut stream, 431, "request head too large").await;
            }
        };
        let parsed = http::parse_head(&buf[..head_len]);
        buf.advance(head_len);
        let req = match parsed {
            Ok(req) => req,
            Err(e) => {
                trace!(device = %dev.id, status = e.status, reason = e.message, "bad request");
                // The framing is unknown after a bad head, so the connection
                // cannot be reused.
                return write_error(&mut stream, e.status, e.message).await;
            }
        };
        discard_body(&mut stream, &mut buf, req.content_length).await?;

        let _in_flight = stats.begin();
        let reply = match dev.current_fault() {
            Fault::Reset => {
                // SO_LINGER 0 makes the close send RST instead of FIN.
                if let Err(e) = stream.set_zero_linger() {
                    warn!(device = %dev.id, error = %e, "cannot set SO_LINGER; closing normally");
                }
                return Ok(());
            }
            // Only reachable in the moment before the supervisor closes this
            // connection; behave as if it already had.
            Fault::Down => return Ok(()),
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                handle(dev, &req)
            }
            Fault::Http500 => Reply::error(500, "simulated internal server error"),
            Fault::Garbage => {
                let mut reply = handle(dev, &req);
                reply.body = garbage(&reply.body);
                reply
            }
            Fault::None | Fault::Flapping { .. } => handle(dev, &req),
        };
        let conn = match (req.keep_alive, req.http10) {
            (false, _) => ConnHeader::Close,
            (true, true) => ConnHeader::KeepAlive,
            (true, false) => ConnHeader::Omit,
        };
        let bytes = http::encode_response(
            reply.status,
            "application/json",
            &reply.body,
            req.method == Method::Head,
            conn,
        );
        stream.write_all(&bytes).await?;
        drop(_in_flight);
        if !req.keep_alive {
            return stream.shutdown().await;
        }
    }
}

/// A response before encoding.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn ok<T: Serialize>(value: &T) -> Reply {
        Reply {
            status: 200,
            body: json_body(value),
        }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            body: json_body(&ErrorReply { error: message }),
        }
    }

    fn outcome(comment: &str, ret: bool) -> Reply {
        Reply::ok(&Outcome { comment, ret })
    }

    fn not_present() -> Reply {
        Reply::outcome("not present", false)
    }
}

fn json_body<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs and string maps cannot fail; an empty
    // object is still a sane reply if it somehow did.
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    error: &'a str,
}

#[derive(Serialize)]
struct Outcome<'a> {
    comment: &'a str,
    ret: bool,
}

#[derive(Serialize)]
struct Ret {
    ret: bool,
}

#[derive(Serialize)]
struct IdReply<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct InfoReply<'a> {
    os: &'a str,
    kernel: &'a str,
    housecat: &'a str,
    serial: String,
    model: &'a str,
}

/// Turns a healthy reply body into something that is not JSON: either random
/// bytes starting with 0xFF (never valid UTF-8, so never valid JSON) or the
/// first half of the real body (every body is an object, so cutting off its
/// closing brace always breaks it).
fn garbage(real: &[u8]) -> Vec<u8> {
    let mut rng = rand::rng();
    if real.len() >= 2 && rng.random_bool(0.5) {
        real[..real.len() / 2].to_vec()
    } else {
        let mut bytes = vec![0u8; rng.random_range(8..64)];
        rng.fill(bytes.as_mut_slice());
        bytes[0] = 0xFF;
        bytes
    }
}

fn handle(dev: &Device, req: &RequestHead) -> Reply {
    if !matches!(req.method, Method::Get | Method::Head) {
        // The bottle server only routes GET (and HEAD through it).
        return Reply::error(405, "method not allowed");
    }
    let segments = http::path_segments(&req.target);
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    route(dev, &path)
}

fn route(dev: &Device, path: &[&str]) -> Reply {
    match path {
        ["ping"] => Reply::ok(&Ret { ret: true }),
        // The sample server's outage switch; the simulator's faults are set by its
        // owner, so fixing an outage here only acknowledges.
        ["fix_outage"] => Reply::ok(&Ret { ret: true }),
        ["id"] => Reply::ok(&IdReply { id: &dev.id }),
        ["info"] => Reply::ok(&InfoReply {
            os: "RestExampleOS",
            kernel: "0.0000001",
            housecat: "Are you kidding?",
            serial: dev.serial(),
            model: "sim-rest",
        }),
        ["service", "list"] => Reply::ok(&*dev.tables().services),
        ["service", action, name] => service_action(dev, action, name),
        ["package", "list"] => Reply::ok(&*dev.tables().packages),
        ["package", "install", name, version] => {
            let mut tables = dev.tables();
            // Skip the write (and the copy-on-write clone) when nothing
            // changes, so read-mostly fleets keep sharing the defaults.
            if tables.packages.get(*name).map(String::as_str) != Some(*version) {
                Arc::make_mut(&mut tables.packages)
                    .insert((*name).to_owned(), (*version).to_owned());
            }
            Reply::outcome(version, true)
        }
        ["package", "remove", name] => {
            let mut tables = dev.tables();
            if tables.packages.contains_key(*name) {
                Arc::make_mut(&mut tables.packages).remove(*name);
                Reply::outcome("removed", true)
            } else {
                Reply::not_present()
            }
        }
        ["package", "status", name] => match dev.tables().packages.get(*name) {
            Some(version) => Reply::outcome(version, true),
            None => Reply::not_present(),
        },
        _ => Reply::error(404, "not found"),
    }
}

fn service_action(dev: &Device, action: &str, name: &str) -> Reply {
    let (new_state, comment) = match action {
        "start" => ("running", "running"),
        "stop" => ("stopped", "stopped"),
        "restart" => ("running", "restarted"),
        "status" => {
            return match dev.tables().services.get(name) {
                Some(state) => Reply::outcome(state, true),
                None => Reply::not_present(),
            }
        }
        _ => return Reply::error(404, "not found"),
    };
    let mut tables = dev.tables();
    match tables.services.get(name) {
        // Like start, stop and restart only act on services the device has.
        None => Reply::not_present(),
        Some(state) if state == new_state => Reply::outcome(comment, true),
        Some(_) => {
            Arc::make_mut(&mut tables.services).insert(name.to_owned(), new_state.to_owned());
            Reply::outcome(comment, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use tokio::time::timeout;

    /// Upper bound for anything that should happen "soon"; generous because
    /// the test machine is small and shared.
    const WAIT: Duration = Duration::from_secs(10);

    fn cfg(count: usize) -> RestSimConfig {
        RestSimConfig {
            count,
            ..Default::default()
        }
    }

    /// A config whose ids no other test process uses, so a freed port that
    /// someone else has taken since cannot be mistaken for ours.
    fn unique_cfg(count: usize) -> RestSimConfig {
        RestSimConfig {
            id_prefix: format!("t{:08x}-", rand::random::<u32>()),
            ..cfg(count)
        }
    }

    /// Whether this very device still answers on its address.
    async fn still_serving(dev: &SimDeviceInfo) -> bool {
        let Ok(mut stream) = TcpStream::connect(dev.addr).await else {
            return false;
        };
        if send_get(&mut stream, "/id").await.is_err() {
            return false;
        }
        // Whatever else may be listening there now need not answer at all.
        let mut buf = Vec::new();
        let reply = timeout(Duration::from_secs(2), read_response(&mut stream, &mut buf));
        match reply.await {
            Ok(Ok((200, body))) => {
                serde_json::from_slice::<Value>(&body).ok() == Some(json!({"id": dev.id}))
            }
            _ => false,
        }
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// Reads one response (status, body) from a connection that may carry
    /// more; leftover bytes stay in `buf`.
    async fn read_response(
        stream: &mut TcpStream,
        buf: &mut Vec<u8>,
    ) -> io::Result<(u16, Vec<u8>)> {
        loop {
            if let Some(end) = find(buf, b"\r\n\r\n").map(|p| p + 4) {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let status: u16 = head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| io::Error::other(format!("bad status line: {head}")))?;
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| io::Error::other("no Content-Length"))?;
                while buf.len() < end + len {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[end..end + len].to_vec();
                buf.drain(..end + len);
                return Ok((status, body));
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send_get(stream: &mut TcpStream, path: &str) -> io::Result<()> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: sim\r\n\r\n");
        stream.write_all(req.as_bytes()).await
    }

    /// One GET on a fresh raw connection.
    async fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(addr).await?;
        send_get(&mut stream, path).await?;
        timeout(WAIT, read_response(&mut stream, &mut Vec::new()))
            .await
            .map_err(|_| io::Error::other("response timed out"))?
    }

    async fn get_json(addr: SocketAddr, path: &str) -> Value {
        let (status, body) = get(addr, path).await.unwrap();
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    /// Sends raw bytes, half-closes, and returns everything the device sent
    /// back before closing.
    async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let _ = stream.shutdown().await;
        let mut out = Vec::new();
        let res = timeout(WAIT, stream.read_to_end(&mut out)).await;
        assert!(res.is_ok(), "device did not close the connection");
        out
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_refused(addr: SocketAddr) {
        let deadline = Instant::now() + WAIT;
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "{addr} still accepts connections"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_serving(addr: SocketAddr) {
        let deadline = Instant::now() + WAIT;
        while !matches!(get(addr, "/ping").await, Ok((200, _))) {
            assert!(Instant::now() < deadline, "{addr} did not come back up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn rq(client: &reqwest::Client, url: String) -> (u16, Value) {
        let resp = client.get(&url).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    #[tokio::test]
    async fn routes_and_state_changes() {
        let sim = RestSim::start(cfg(3)).await.unwrap();
        let (a, b) = (sim.devices()[0].clone(), sim.devices()[1].clone());
        assert_eq!(a.id, "rest-0001");
        assert_eq!(b.id, "rest-0002");
        assert_eq!(a.url, format!("http://127.0.0.1:{}/", a.addr.port()));
        let c = reqwest::Client::new();
        let ok = |path: &str| rq(&c, format!("{}{path}", a.url));

        assert_eq!(ok("ping").await, (200, json!({"ret": true})));
        // rest_sample appends "ping" to a URL that may already end in "/".
        assert_eq!(
            rq(&c, format!("{}/ping", a.url)).await,
            (200, json!({"ret": true}))
        );
        assert_eq!(ok("id").await, (200, json!({"id": "rest-0001"})));
        let (_, info) = ok("info").await;
        assert_eq!(info["os"], "RestExampleOS");
        assert_eq!(info["kernel"], "0.0000001");
        assert_eq!(info["housecat"], "Are you kidding?");
        assert_eq!(info["model"], "sim-rest");
        let (_, info_b) = rq(&c, format!("{}info", b.url)).await;
        assert!(info["serial"].is_string());
        assert_ne!(info["serial"], info_b["serial"]);

        let defaults = json!({"apache": "running", "postgresql": "stopped", "redbull": "running"});
        assert_eq!(ok("service/list").await, (200, defaults.clone()));
        assert_eq!(
            ok("service/stop/apache").await,
            (200, json!({"comment": "stopped", "ret": true}))
        );
        assert_eq!(
            sim.service_state(&a.id, "apache").as_deref(),
            Some("stopped")
        );
        // State is per device.
        assert_eq!(
            sim.service_state(&b.id, "apache").as_deref(),
            Some("running")
        );
        assert_eq!(
            ok("service/status/apache").await,
            (200, json!({"comment": "stopped", "ret": true}))
        );
        assert_eq!(
            ok("service/start/apache").await,
            (200, json!({"comment": "running", "ret": true}))
        );
        assert_eq!(
            ok("service/restart/postgresql").await,
            (200, json!({"comment": "restarted", "ret": true}))
        );
        assert_eq!(
            sim.service_state(&a.id, "postgresql").as_deref(),
            Some("running")
        );
        let absent = json!({"comment": "not present", "ret": false});
        for action in ["start", "stop", "restart", "status"] {
            assert_eq!(
                ok(&format!("service/{action}/nginx")).await,
                (200, absent.clone())
            );
        }
        assert_eq!(sim.service_state(&a.id, "nginx"), None);

        assert_eq!(
            ok("package/list").await,
            (
                200,
                json!({"coreutils": "1.0", "apache": "2.4", "tinc": "1.4", "redbull": "999.99"})
            )
        );
        assert_eq!(
            ok("package/install/nginx/1.2").await,
            (200, json!({"comment": "1.2", "ret": true}))
        );
        assert_eq!(
            ok("package/status/nginx").await,
            (200, json!({"comment": "1.2", "ret": true}))
        );
        assert_eq!(sim.package_version(&a.id, "nginx").as_deref(), Some("1.2"));
        assert_eq!(
            ok("package/remove/tinc").await,
            (200, json!({"comment": "removed", "ret": true}))
        );
        assert_eq!(ok("package/remove/tinc").await, (200, absent.clone()));
        assert_eq!(ok("package/status/tinc").await, (200, absent.clone()));
        assert_eq!(
            ok("package/status/coreutils").await,
            (200, json!({"comment": "1.0", "ret": true}))
        );
        assert_eq!(ok("package/list").await.1["nginx"], "1.2");

        let not_found = json!({"error": "not found"});
        for path in [
            "nope",
            "",
            "ping/extra",
            "service/frob/apache",
            "package/install/x",
        ] {
            assert_eq!(ok(path).await, (404, not_found.clone()), "path {path:?}");
        }
        let resp = c.post(format!("{}ping", a.url)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405);

        // Untouched devices still share the default maps; a device that
        // wrote has its own copy.
        let shared = |i: usize, j: usize| {
            let (x, y) = (sim.devices[i].tables(), sim.devices[j].tables());
            Arc::ptr_eq(&x.services, &y.services) && Arc::ptr_eq(&x.packages, &y.packages)
        };
        assert!(shared(1, 2));
        assert!(!shared(0, 1));
        assert_eq!(sim.in_flight(), 0);
        assert!(sim.requests_total() >= 25);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn keep_alive_pipelining_and_connection_close() {
        let sim = RestSim::start(cfg(1)).await.unwrap();
        let addr = sim.devices()[0].addr;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        // Two pipelined requests in one write, the first with a body that
        // must be skipped, plus a stray CRLF between them.
        stream
            .write_all(
                b"GET /ping HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\r\nGET //id HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await
            .unwrap();
        let (s1, b1) = read_response(&mut stream, &mut buf).await.unwrap();
        let (s2, b2) = read_response(&mut stream, &mut buf).await.unwrap();
        assert_eq!((s1, &b1[..]), (200, &br#"{"ret":true}"#[..]));
        assert_eq!((s2, &b2[..]), (200, &br#"{"id":"rest-0001"}"#[..]));
        // The same connection keeps working afterwards.
        send_get(&mut stream, "/service/status/redbull")
            .await
            .unwrap();
        let (s3, _) = read_response(&mut stream, &mut buf).await.unwrap();
        assert_eq!(s3, 200);
        assert_eq!(sim.requests_total(), 3);

        // HTTP/1.0 without keep-alive, and explicit close: the device closes.
        let out = raw_exchange(addr, b"GET /ping HTTP/1.0\r\n\r\n").await;
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(out.ends_with(br#"{"ret":true}"#));
        let out = raw_exchange(addr, b"HEAD /ping HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Content-Length: 12\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n"),
            "HEAD must not carry a body: {text}"
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn malformed_requests_are_rejected_without_harm() {
        let sim = RestSim::start(cfg(1)).await.unwrap();
        let addr = sim.devices()[0].addr;
        let out = raw_exchange(addr, b"\x00\x01\xfe garbage\r\n\r\n").await;
        assert!(
            out.starts_with(b"HTTP/1.1 400 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let out = raw_exchange(
            addr,
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await;
        assert!(out.starts_with(b"HTTP/1.1 501 "));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(20_000));
        let out = raw_exchange(addr, huge.as_bytes()).await;
        assert!(out.starts_with(b"HTTP/1.1 431 "));
        // Random bytes without a head terminator, then EOF: just a close.
        let noise: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = raw_exchange(addr, &noise).await;
        // Body announced but never sent.
        let _ = raw_exchange(addr, b"GET /ping HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc").await;
        assert_eq!(
            sim.requests_total(),
            0,
            "malformed requests are not counted"
        );
        assert_eq!(get_json(addr, "/ping").await, json!({"ret": true}));
        assert_eq!(sim.in_flight(), 0);
        sim.shutdown().await;
    }

    /// Down with no connection open reserves the port with a socket that has no
    /// SO_REUSEADDR; coming back listens on that socket. Its accepted connections
    /// must still carry the flag, or the TIME_WAIT they leave at the next outage
    /// keeps the port from being bound again for a minute (found by the chaos
    /// test: flipped devices that stayed refused after their fault was cleared).
    #[tokio::test]
    async fn comes_back_at_once_after_an_outage_that_followed_an_outage() {
        let sim = RestSim::start(unique_cfg(1)).await.unwrap();
        let dev = sim.devices()[0].clone();
        for round in 0..3 {
            assert!(sim.set_fault_and_wait(&dev.id, Fault::Down).await);
            assert!(sim.set_fault_and_wait(&dev.id, Fault::None).await);
            // A connection open when the device goes down: the device closes it,
            // leaving a TIME_WAIT socket on its port.
            let mut open = TcpStream::connect(dev.addr).await.unwrap();
            send_get(&mut open, "/ping").await.unwrap();
            read_response(&mut open, &mut Vec::new()).await.unwrap();
            assert!(sim.set_fault_and_wait(&dev.id, Fault::Down).await);
            let mut byte = [0u8; 1];
            let _ = timeout(WAIT, open.read(&mut byte)).await;
            assert!(sim.set_fault_and_wait(&dev.id, Fault::None).await);
            assert!(still_serving(&dev).await, "round {round}: not back");
        }
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn down_refuses_connections_then_rebinds_same_port() {
        let sim = RestSim::start(cfg(2)).await.unwrap();
        let dev = sim.devices()[0].clone();
        let other = sim.devices()[1].addr;
        get_json(dev.addr, "/service/stop/apache").await;
        // A connection the device closes first leaves a TIME_WAIT socket on
        // its port, which the rebind below must get past.
        let out = raw_exchange(dev.addr, b"GET /ping HTTP/1.0\r\n\r\n").await;
        assert!(out.starts_with(b"HTTP/1.1 200 OK"));

        let mut open = TcpStream::connect(dev.addr).await.unwrap();
        send_get(&mut open, "/ping").await.unwrap();
        read_response(&mut open, &mut Vec::new()).await.unwrap();

        assert!(sim.set_fault_and_wait(&dev.id, Fault::Down).await);
        assert_eq!(sim.fault(&dev.id), Some(Fault::Down));
        let err = TcpStream::connect(dev.addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // The already open connection is closed too.
        let mut byte = [0u8; 1];
        let res = timeout(WAIT, open.read(&mut byte)).await;
        assert!(
            matches!(res, Ok(Ok(0) | Err(_))),
            "open connection not closed: {res:?}"
        );
        // Other devices are unaffected.
        assert_eq!(get_json(other, "/ping").await, json!({"ret": true}));

        assert!(sim.set_fault_and_wait(&dev.id, Fault::None).await);
        assert_eq!(get_json(dev.addr, "/ping").await, json!({"ret": true}));
        // Same device, same state after the outage.
        assert_eq!(
            get_json(dev.addr, "/service/status/apache").await["comment"],
            "stopped"
        );

        // The non-waiting setter gets there too.
        assert!(sim.set_fault(&dev.id, Fault::Down));
        wait_refused(dev.addr).await;
        assert!(sim.set_fault(&dev.id, Fault::None));
        wait_serving(dev.addr).await;

        assert!(!sim.set_fault("no-such-device", Fault::Down));
        assert!(!sim.set_fault_and_wait("no-such-device", Fault::Down).await);
        assert_eq!(sim.fault("no-such-device"), None);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn reset_fault_resets_the_connection() {
        let sim = RestSim::start(cfg(1)).await.unwrap();
        let dev = sim.devices()[0].clone();
        assert!(sim.set_fault(&dev.id, Fault::Reset));
        let mut stream = TcpStream::connect(dev.addr).await.unwrap();
        send_get(&mut stream, "/service/stop/apache").await.unwrap();
        let mut buf = [0u8; 64];
        let res = timeout(WAIT, stream.read(&mut buf)).await.unwrap();
        assert_eq!(
            res.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset),
            "expected a reset"
        );
        assert_eq!(
            sim.service_state(&dev.id, "apache").as_deref(),
            Some("running")
        );
        let client = reqwest::Client::new();
        assert!(client.get(format!("{}ping", dev.url)).send().await.is_err());

        sim.set_fault(&dev.id, Fault::None);
        assert_eq!(get_json(dev.addr, "/ping").await, json!({"ret": true}));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn garbage_fault_returns_non_json_bodies() {
        let sim = RestSim::start(cfg(1)).await.unwrap();
        let dev = sim.devices()[0].clone();
        sim.set_fault(&dev.id, Fault::Garbage);
        let (mut truncated, mut random) = (0, 0);
        for _ in 0..40 {
            let (status, body) = get(dev.addr, "/service/list").await.unwrap();
            assert_eq!(status, 200);
            assert!(
                serde_json::from_slice::<Value>(&body).is_err(),
                "{body:?} parsed"
            );
            match body.first() {
                Some(b'{') => truncated += 1,
                Some(0xFF) => random += 1,
                other => panic!("unexpected garbage start {other:?}"),
            }
        }
        assert!(
            truncated > 0 && random > 0,
            "{truncated} truncated, {random} random"
        );
        // The device still did the work; only the reply was mangled.
        let (status, _) = get(dev.addr, "/service/stop/apache").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            sim.service_state(&dev.id, "apache").as_deref(),
            Some("stopped")
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn http500_fault_returns_json_errors() {
        let sim = RestSim::start(cfg(1)).await.unwrap();
        let dev = sim.devices()[0].clone();
        sim.set_fault(&dev.id, Fault::Http500);
        assert_eq!(sim.fault(&dev.id), Some(Fault::Http500));
        let (status, body) = get(dev.addr, "/service/stop/apache").await.unwrap();
        assert_eq!(status, 500);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert!(body["error"].is_string());
        assert_eq!(
            sim.service_state(&dev.id, "apache").as_deref(),
            Some("running")
        );
        sim.set_fault(&dev.id, Fault::None);
        assert_eq!(get(dev.addr, "/ping").await.unwrap().0, 200);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn slow_fault_delays_and_counts_in_flight() {
        let sim = RestSim::start(cfg(1)).await.unwrap();
        let dev = sim.devices()[0].clone();
        let delay = Duration::from_millis(300);
        sim.set_fault(&dev.id, Fault::Slow(delay));
        let started = std::time::Instant::now();
        let mut stream = TcpStream::connect(dev.addr).await.unwrap();
        send_get(&mut stream, "/ping").await.unwrap();
        let pending =
            tokio::spawn(async move { read_response(&mut stream, &mut Vec::new()).await });
        // The request counts as in flight while the device sleeps.
        wait_until("slow request in flight", || sim.in_flight() == 1).await;
        let (status, body) = pending.await.unwrap().unwrap();
        // The device only starts sleeping after reading the request, which
        // is after `started`, so this bound cannot be met by accident.
        assert!(
            started.elapsed() >= delay,
            "answered after {:?}",
            started.elapsed()
        );
        assert_eq!((status, &body[..]), (200, &br#"{"ret":true}"#[..]));
        wait_until("slow request done", || sim.in_flight() == 0).await;
        assert_eq!(sim.peak_in_flight(), 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn flapping_alternates_down_and_up() {
        let sim = RestSim::start(cfg(1)).await.unwrap();
        let dev = sim.devices()[0].clone();
        let period = Duration::from_millis(150);
        assert!(
            sim.set_fault_and_wait(&dev.id, Fault::Flapping { period })
                .await
        );
        // Record up/down transitions until we have seen up -> down -> up.
        let mut seen: Vec<bool> = Vec::new();
        let deadline = Instant::now() + WAIT;
        while seen.len() < 3 {
            assert!(
                Instant::now() < deadline,
                "no full flap cycle seen: {seen:?}"
            );
            let up = match TcpStream::connect(dev.addr).await {
                Ok(_) => true,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => false,
                // A connect racing the listener's close is reset instead of
                // refused; it says nothing about the phase, so skip it.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                Err(e) => panic!("unexpected connect error {e}"),
            };
            if seen.last() != Some(&up) {
                seen.push(up);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen, [true, false, true]);

        // Clearing the fault leaves it up for good (longer than a period).
        assert!(sim.set_fault_and_wait(&dev.id, Fault::None).await);
        let until = Instant::now() + period * 3;
        while Instant::now() < until {
            assert!(TcpStream::connect(dev.addr).await.is_ok());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn peak_in_flight_counts_concurrent_requests() {
        let sim = RestSim::start(cfg(2)).await.unwrap();
        let devs = sim.devices().to_vec();
        for d in &devs {
            // Long enough that nothing completes during the test.
            sim.set_fault(&d.id, Fault::Slow(Duration::from_secs(300)));
        }
        let mut clients = Vec::new();
        for i in 0..6 {
            let addr = devs[i % 2].addr;
            clients.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await?;
                send_get(&mut s, "/ping").await?;
                read_response(&mut s, &mut Vec::new()).await
            }));
        }
        wait_until("6 requests in flight", || sim.in_flight() == 6).await;
        assert_eq!(sim.peak_in_flight(), 6);
        assert_eq!(sim.requests_total(), 6);

        // Taking the devices down aborts the sleeping requests.
        for d in &devs {
            sim.set_fault_and_wait(&d.id, Fault::Down).await;
        }
        wait_until("in-flight back to 0", || sim.in_flight() == 0).await;
        for c in clients {
            assert!(
                c.await.unwrap().is_err(),
                "request should have been cut off"
            );
        }
        assert_eq!(sim.peak_in_flight(), 6);
        sim.reset_peak();
        assert_eq!(sim.peak_in_flight(), 0);
        sim.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_devices_start_and_shut_down() {
        let sim = RestSim::start(unique_cfg(1000)).await.unwrap();
        let devs = sim.devices().to_vec();
        assert_eq!(devs.len(), 1000);
        assert!(devs[0].id.ends_with("-0001"));
        assert!(devs[999].id.ends_with("-1000"));
        let ports: std::collections::HashSet<u16> = devs.iter().map(|d| d.addr.port()).collect();
        assert_eq!(ports.len(), 1000);
        let sample: Vec<&SimDeviceInfo> = devs.iter().step_by(37).chain(devs.last()).collect();
        for d in &sample {
            assert_eq!(get_json(d.addr, "/id").await, json!({"id": d.id}));
        }
        // Keep a connection open so shutdown has one to close.
        let mut open = TcpStream::connect(devs[500].addr).await.unwrap();
        timeout(WAIT * 3, sim.shutdown())
            .await
            .expect("shutdown hung");
        // No device answers any more. (Not "every port refuses": another
        // test process may already have been given some of the freed ports.)
        for d in &devs {
            assert!(!still_serving(d).await, "{} still serving", d.id);
        }
        let mut byte = [0u8; 1];
        let res = timeout(WAIT, open.read(&mut byte)).await;
        assert!(matches!(res, Ok(Ok(0) | Err(_))));
    }

    #[tokio::test]
    async fn dropping_the_sim_stops_devices() {
        let sim = RestSim::start(unique_cfg(2)).await.unwrap();
        let dev = sim.devices()[1].clone();
        assert!(still_serving(&dev).await);
        drop(sim);
        let deadline = Instant::now() + WAIT;
        while still_serving(&dev).await {
            assert!(Instant::now() < deadline, "device still serving after drop");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn fault_assignment_is_disjoint_and_deterministic() {
        let rates = FaultRates {
            down: 0.1,
            slow: 0.2,
            flapping: 0.05,
            http500: 0.05,
            garbage: 0.1,
            reset: 0.1,
            ..Default::default()
        };
        let (faults, first_flap) = assign_faults(200, &rates);
        let count = |f: &Fault| faults.iter().filter(|x| *x == f).count();
        assert_eq!(count(&Fault::Down), 20);
        assert_eq!(count(&Fault::Slow(Duration::from_secs(2))), 40);
        assert_eq!(
            count(&Fault::Flapping {
                period: Duration::from_secs(5)
            }),
            10
        );
        assert_eq!(count(&Fault::Http500), 10);
        assert_eq!(count(&Fault::Garbage), 20);
        assert_eq!(count(&Fault::Reset), 20);
        assert_eq!(count(&Fault::None), 80);
        for (f, first) in faults.iter().zip(&first_flap) {
            match f {
                Fault::Flapping { period } => {
                    assert!(first.is_some_and(|d| d > Duration::ZERO && d <= *period))
                }
                _ => assert!(first.is_none()),
            }
        }
        assert_eq!(assign_faults(200, &rates), (faults.clone(), first_flap));
        let other_seed = FaultRates {
            seed: 2,
            ..rates.clone()
        };
        assert_ne!(assign_faults(200, &other_seed).0, faults);

        let over = FaultRates {
            down: 0.8,
            slow: 0.8,
            reset: f64::NAN,
            garbage: -1.0,
            ..Default::default()
        };
        let (faults, _) = assign_faults(10, &over);
        assert_eq!(faults.iter().filter(|f| **f == Fault::Down).count(), 8);
        assert_eq!(
            faults
                .iter()
                .filter(|f| matches!(f, Fault::Slow(_)))
                .count(),
            2
        );
        assert_eq!(assign_faults(0, &over).0, Vec::<Fault>::new());
    }

    #[tokio::test]
    async fn start_applies_assigned_faults() {
        let rates = FaultRates {
            down: 0.25,
            http500: 0.25,
            seed: 9,
            ..Default::default()
        };
        let (expected, _) = assign_faults(8, &rates);
        let sim = RestSim::start(RestSimConfig {
            count: 8,
            faults: rates,
            ..Default::default()
        })
        .await
        .unwrap();
        for (d, f) in sim.devices().iter().zip(&expected) {
            assert_eq!(sim.fault(&d.id).as_ref(), Some(f));
            match f {
                // Refused as soon as start() returns, not eventually.
                Fault::Down => assert_eq!(
                    TcpStream::connect(d.addr).await.unwrap_err().kind(),
                    io::ErrorKind::ConnectionRefused
                ),
                Fault::Http500 => assert_eq!(get(d.addr, "/ping").await.unwrap().0, 500),
                _ => assert_eq!(get(d.addr, "/ping").await.unwrap().0, 200),
            }
        }
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn inventory_lists_every_device() {
        let sim = RestSim::start(RestSimConfig {
            count: 3,
            id_prefix: "we\"ird\\".to_owned(),
            id_width: 2,
            first_index: 98,
            ..Default::default()
        })
        .await
        .unwrap();
        let ids: Vec<&str> = sim.devices().iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["we\"ird\\98", "we\"ird\\99", "we\"ird\\100"]);
        let doc: toml::Table = toml::from_str(&sim.inventory_toml()).unwrap();
        let tables = doc["device"].as_array().unwrap();
        assert_eq!(tables.len(), 3);
        for (t, d) in tables.iter().zip(sim.devices()) {
            assert_eq!(t["id"].as_str(), Some(d.id.as_str()));
            assert_eq!(t["proxytype"].as_str(), Some("rest_sample"));
            assert_eq!(t["url"].as_str(), Some(d.url.as_str()));
        }
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn base_port_assigns_consecutive_ports() {
        // Below the usual ephemeral range, so client sockets do not collide;
        // retry elsewhere if something else holds one of the ports.
        let mut last_err = None;
        for attempt in 0..20u16 {
            let base = 20_000 + attempt * 397;
            match RestSim::start(RestSimConfig {
                count: 3,
                base_port: base,
                ..Default::default()
            })
            .await
            {
                Ok(sim) => {
                    for (i, d) in sim.devices().iter().enumerate() {
                        assert_eq!(d.addr.port(), base + i as u16);
                        assert_eq!(d.url, format!("http://127.0.0.1:{}/", base + i as u16));
                    }
                    assert_eq!(get(sim.devices()[2].addr, "/ping").await.unwrap().0, 200);
                    sim.shutdown().await;
                    return;
                }
                Err(e) => last_err = Some(e),
            }
        }
        panic!("no free port range found: {last_err:?}");
    }

    #[test]
    fn handle_and_start_future_are_send() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        send(&RestSim::start(cfg(0)));
        send(&async {
            let sim = RestSim::start(cfg(0)).await.unwrap();
            send_sync(&sim);
            sim.set_fault_and_wait("x", Fault::None).await;
            sim.shutdown().await;
        });
    }

    #[test]
    fn parses_kernel_port_settings() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("garbage"), None);
        assert_eq!(parse_port_list("\n"), vec![]);
        assert_eq!(
            parse_port_list("8080,9000-9100, x,70000\n"),
            vec![(8080, 8080), (9000, 9100)]
        );
    }

    #[tokio::test]
    async fn base_port_overflow_is_an_error() {
        let err = RestSim::start(RestSimConfig {
            count: 2,
            base_port: 65_535,
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // The last port itself is fine.
        let sim = RestSim::start(RestSimConfig {
            count: 0,
            base_port: 65_535,
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(sim.devices().is_empty());
        assert_eq!(sim.inventory_toml(), "");
        sim.shutdown().await;
    }
}
