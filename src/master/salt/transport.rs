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
    max_message: usize,
}

/// Largest message accepted from the master. libzmq refuses a bigger frame while
/// reading it (`ZMQ_MAXMSGSIZE`: the connection is dropped and re-made, nothing is
/// allocated); a multi-frame message whose frames add up to more is dropped here
/// and counted in `drover_limit_hits_total{limit="master_message_size"}`. Salt's
/// publications and replies are far smaller; a large pillar fits.
pub const MAX_MASTER_MESSAGE: usize = 64 * 1024 * 1024;

impl Default for ZmqTransport {
    fn default() -> Self {
        Self::with_max_message(MAX_MASTER_MESSAGE)
    }
}

impl ZmqTransport {
    /// A transport that accepts messages up to `max_message` bytes.
    pub fn with_max_message(max_message: usize) -> Self {
        Self {
            ctx: zmq::Context::new(),
            max_message: max_message.max(1),
        }
    }
}

/// Drops (and counts) a message over the cap; `true` when it may pass.
fn within_cap(frames: &[Vec<u8>], max: usize) -> bool {
    let size: usize = frames.iter().map(Vec::len).sum();
    if size > max {
        crate::telemetry::Limit::MasterMessage.hit();
        tracing::warn!(
            size,
            max,
            "Message from the master over the size cap dropped."
        );
        return false;
    }
    true
}

const HWM: i32 = 1_000_000;
static MONITOR_SEQ: AtomicU64 = AtomicU64::new(0);

fn common_options(
    s: &zmq::Socket,
    recon_max_ms: i32,
    max_message: usize,
) -> Result<(), zmq::Error> {
    s.set_maxmsgsize(i64::try_from(max_message).unwrap_or(i64::MAX))?;
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
        common_options(&sub, 10_000, self.max_message)?;
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
        let max = self.max_message;
        spawn("salt-sub", move |stop| {
            sub_loop(&sub, &mon, &events, &stop, max);
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
        common_options(&sock, 5_000, self.max_message)?;
        sock.set_linger(500)?;
        sock.connect(&endpoint)?;
        let max = self.max_message;
        spawn("salt-req", move |stop| {
            dealer_loop(&sock, outbound, &inbound, &stop, max);
        })
    }
}

fn sub_loop(
    sub: &zmq::Socket,
    mon: &zmq::Socket,
    events: &mpsc::Sender<SubEvent>,
    stop: &AtomicBool,
    max: usize,
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
                if !within_cap(&frames, max) {
                    continue;
                }
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
    max: usize,
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
                    if !within_cap(&frames, max) {
                        continue;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake master's PUB socket on loopback: a message over the cap never reaches
    /// the link. Two frames that add up to more are dropped and counted; one frame
    /// over the cap is refused by libzmq while reading (the connection drops).
    async fn next(rx: &mut mpsc::Receiver<SubEvent>) -> SubEvent {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10s")
            .expect("open")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_over_the_cap_are_dropped() {
        let max = 1024;
        let ctx = zmq::Context::new();
        let publ = ctx.socket(zmq::PUB).unwrap();
        publ.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = publ.get_last_endpoint().unwrap().unwrap();
        let transport = ZmqTransport::with_max_message(max);
        let (tx, mut rx) = mpsc::channel(64);
        let worker = transport.subscribe(endpoint, tx).unwrap();
        assert!(matches!(next(&mut rx).await, SubEvent::Connected(true)));
        // PUB drops messages until the subscription has arrived: probe until one
        // is delivered.
        let mut delivered = false;
        for _ in 0..100 {
            publ.send(&b"probe"[..], 0).unwrap();
            if let Ok(Some(SubEvent::Message(_))) =
                tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
            {
                delivered = true;
                break;
            }
        }
        assert!(delivered, "subscription never became active");
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {}

        let hits = || {
            crate::telemetry::metrics_handle()
                .render()
                .lines()
                .find(|l| l.starts_with("drover_limit_hits_total{limit=\"master_message_size\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let before = hits();
        let half = vec![b'x'; max / 2 + 10];
        publ.send_multipart([&half[..], &half[..]], 0).unwrap();
        publ.send(&b"after"[..], 0).unwrap();
        match next(&mut rx).await {
            SubEvent::Message(f) => assert_eq!(f, vec![b"after".to_vec()]),
            other => panic!("expected the small message, got {other:?}"),
        }
        assert!(hits() >= before + 1.0, "limit hit not counted");

        publ.send(&vec![b'y'; max + 1][..], 0).unwrap();
        match next(&mut rx).await {
            SubEvent::Connected(false) => {}
            other => panic!("expected libzmq to drop the connection, got {other:?}"),
        }
        tokio::task::spawn_blocking(move || worker.stop())
            .await
            .unwrap();
    }
}
