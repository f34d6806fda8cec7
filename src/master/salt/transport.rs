//! ZeroMQ sockets towards the master, behind a small trait. libzmq sockets are blocking
//! and not `Sync`, so each socket lives on its own OS thread and talks to async code
//! through bounded tokio channels. libzmq answers the master's ZMTP PINGs itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rand::RngExt as _;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// Errors of the socket layer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("could not start socket thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What the publish socket reports.
#[derive(Debug)]
pub enum SubEvent {
    /// One multipart message (1 frame, or `[topic, payload]`).
    Message(Vec<Vec<u8>>),
    /// TCP connection to the publisher established (`true`) or lost (`false`).
    Connected(bool),
}

/// A running socket thread; `stop()` asks it to exit and waits for it (blocking).
#[derive(Debug)]
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Requests the thread to stop and joins it. Blocking: use from `spawn_blocking`.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::warn!("Salt socket thread panicked.");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The swappable socket layer.
pub trait Transport: Send + Sync + 'static {
    /// Subscribes to everything on `endpoint` and forwards messages to `events`.
    fn subscribe(
        &self,
        endpoint: String,
        events: mpsc::Sender<SubEvent>,
    ) -> Result<Worker, TransportError>;
    /// A request socket: bodies from `outbound` go out as `[b"", body]`; reply bodies go
    /// to `inbound` (possibly out of order).
    fn dealer(
        &self,
        endpoint: String,
        outbound: mpsc::Receiver<Vec<u8>>,
        inbound: mpsc::Sender<Vec<u8>>,
    ) -> Result<Worker, TransportError>;
}

/// libzmq implementation (the engine Salt itself runs).
#[derive(Clone)]
pub struct ZmqTransport {
    ctx: zmq::Context,
}

impl Default for ZmqTransport {
    fn default() -> Self {
        Self {
            ctx: zmq::Context::new(),
        }
    }
}

const HWM: i32 = 1_000_000;
static MONITOR_SEQ: AtomicU64 = AtomicU64::new(0);

fn common_options(s: &zmq::Socket, recon_max_ms: i32) -> Result<(), zmq::Error> {
    s.set_sndhwm(HWM)?;
    s.set_rcvhwm(HWM)?;
    s.set_ipv6(true)?;
    s.set_tcp_keepalive(1)?;
    s.set_tcp_keepalive_idle(300)?;
    // Salt: random reconnect interval in [recon_default, recon_default + recon_max].
    let ivl = rand::rng().random_range(1000..=11_000);
    s.set_reconnect_ivl(ivl)?;
    s.set_reconnect_ivl_max(recon_max_ms)?;
    // Send PINGs ourselves and drop a silent peer; libzmq answers the master's PINGs.
    s.set_heartbeat_ivl(10_000)?;
    s.set_heartbeat_timeout(30_000)?;
    s.set_heartbeat_ttl(60_000)?;
    Ok(())
}

fn spawn(
    name: &str,
    f: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
) -> Result<Worker, TransportError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || f(flag))
        .map_err(TransportError::Thread)?;
    Ok(Worker {
        stop,
        thread: Some(thread),
    })
}

impl Transport for ZmqTransport {
    fn subscribe(
        &self,
        endpoint: String,
        events: mpsc::Sender<SubEvent>,
    ) -> Result<Worker, TransportError> {
        let sub = self.ctx.socket(zmq::SUB)?;
        common_options(&sub, 10_000)?;
        sub.set_linger(1)?;
        sub.set_subscribe(b"")?;
        let mon_ep = format!(
            "inproc://drover-salt-sub-mon-{}",
            MONITOR_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        sub.monitor(
            &mon_ep,
            (zmq::SocketEvent::CONNECTED as i32) | (zmq::SocketEvent::DISCONNECTED as i32),
        )?;
        let mon = self.ctx.socket(zmq::PAIR)?;
        mon.connect(&mon_ep)?;
        sub.connect(&endpoint)?;
        spawn("salt-sub", move |stop| {
            sub_loop(&sub, &mon, &events, &stop);
            let _ = sub.disconnect(&endpoint);
        })
    }

    fn dealer(
        &self,
        endpoint: String,
        outbound: mpsc::Receiver<Vec<u8>>,
        inbound: mpsc::Sender<Vec<u8>>,
    ) -> Result<Worker, TransportError> {
        let sock = self.ctx.socket(zmq::DEALER)?;
        common_options(&sock, 5_000)?;
        sock.set_linger(500)?;
        sock.connect(&endpoint)?;
        spawn("salt-req", move |stop| {
            dealer_loop(&sock, outbound, &inbound, &stop);
        })
    }
}

fn sub_loop(
    sub: &zmq::Socket,
    mon: &zmq::Socket,
    events: &mpsc::Sender<SubEvent>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut items = [sub.as_poll_item(zmq::POLLIN), mon.as_poll_item(zmq::POLLIN)];
        if let Err(e) = zmq::poll(&mut items, 200) {
            tracing::warn!(error = %e, "SUB poll failed.");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let (sub_ready, mon_ready) = (items[0].is_readable(), items[1].is_readable());
        if mon_ready {
            while let Ok(frames) = mon.recv_multipart(zmq::DONTWAIT) {
                let Some(ev) = frames.first().filter(|f| f.len() >= 2) else {
                    continue;
                };
                let code = u16::from_le_bytes([ev[0], ev[1]]);
                let up = if code == zmq::SocketEvent::CONNECTED as u16 {
                    true
                } else if code == zmq::SocketEvent::DISCONNECTED as u16 {
                    false
                } else {
                    continue;
                };
                if events.blocking_send(SubEvent::Connected(up)).is_err() {
                    return;
                }
            }
        }
        if sub_ready {
            while let Ok(frames) = sub.recv_multipart(zmq::DONTWAIT) {
                // Blocking here is the back-pressure path: libzmq buffers up to the HWM.
                if events.blocking_send(SubEvent::Message(frames)).is_err() {
                    return;
                }
            }
        }
    }
}

fn dealer_loop(
    sock: &zmq::Socket,
    mut outbound: mpsc::Receiver<Vec<u8>>,
    inbound: &mpsc::Sender<Vec<u8>>,
    stop: &AtomicBool,
) {
    let mut backlog: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let mut closed = false;
    while !stop.load(Ordering::SeqCst) {
        // Outgoing: drain the channel into libzmq without blocking.
        loop {
            if backlog.is_empty() {
                match outbound.try_recv() {
                    Ok(b) => backlog.push_back(b),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let Some(body) = backlog.front() else { break };
            match sock.send_multipart([&b""[..], &body[..]], zmq::DONTWAIT) {
                Ok(()) => {
                    backlog.pop_front();
                }
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "Request send failed; dropping it.");
                    backlog.pop_front();
                }
            }
        }
        if closed && backlog.is_empty() {
            return;
        }
        let timeout = if backlog.is_empty() { 5 } else { 20 };
        match sock.poll(zmq::POLLIN, timeout) {
            Ok(n) if n > 0 => {
                while let Ok(mut frames) = sock.recv_multipart(zmq::DONTWAIT) {
                    let Some(body) = frames.pop() else { continue };
                    if inbound.blocking_send(body).is_err() {
                        return;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Request poll failed.");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// `tcp://host:port`, bracketing IPv6 literals.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("tcp://[{host}]:{port}")
    } else {
        format!("tcp://{host}:{port}")
    }
}
