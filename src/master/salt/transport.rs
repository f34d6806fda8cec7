//! ZeroMQ sockets towards the master, behind a small trait. libzmq answers the master's
//! ZMTP PINGs itself.
//!
//! The request (DEALER) sockets live in a tokio task on the link's own runtime and
//! wait on libzmq's notification descriptor (`ZMQ_FD`) through `AsyncFd`: a return
//! goes from the link to libzmq's I/O thread and its reply comes back without a
//! thread of ours in between. They used to run on one OS thread each, polling every
//! few milliseconds and handing bodies over channels: at 500 ids behind a 3006.30
//! master that cost two context switches per message, and `perf` put those threads
//! and the scheduler at over 40% of Drover's CPU per Salt return. The SUB socket keeps
//! its thread: publications are few, and its monitor socket is polled with it.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rand::RngExt as _;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Errors of the socket layer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("could not start socket thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("could not register the socket's descriptor with the runtime: {0}")]
    Register(#[source] std::io::Error),
}

/// What the publish socket reports.
#[derive(Debug)]
pub enum SubEvent {
    /// One multipart message (1 frame, or `[topic, payload]`).
    Message(Vec<Vec<u8>>),
    /// TCP connection to the publisher established (`true`) or lost (`false`).
    Connected(bool),
}

/// A running socket thread or task; `stop()` asks it to exit and waits for a thread
/// (blocking); a task ends at its next wake-up.
#[derive(Debug)]
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    task: Option<CancellationToken>,
}

impl Worker {
    /// Requests the thread to stop and joins it. Blocking: use from `spawn_blocking`.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = &self.task {
            c.cancel();
        }
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
        if let Some(c) = &self.task {
            c.cancel();
        }
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
        task: None,
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
        let sock = register(sock)?;
        let cancel = CancellationToken::new();
        let max = self.max_message;
        tokio::spawn(dealer_task(sock, outbound, inbound, cancel.clone(), max));
        Ok(Worker {
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
            task: Some(cancel),
        })
    }
}

/// A socket with libzmq's notification descriptor (`ZMQ_FD`): readable when the
/// socket's `ZMQ_EVENTS` may have changed (edge-triggered). The descriptor belongs to
/// the socket, so the two travel together.
struct ZmqSocket {
    sock: zmq::Socket,
    fd: RawFd,
}

impl AsRawFd for ZmqSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

/// Hands `sock` to tokio's reactor, waiting on its `ZMQ_FD`. The crate's one `unsafe`
/// (allowed here, denied everywhere else): tokio cannot check that a raw descriptor
/// outlives its registration.
#[allow(unsafe_code)]
fn register(sock: zmq::Socket) -> Result<AsyncFd<ZmqSocket>, TransportError> {
    let fd = sock.get_fd()?;
    // SAFETY: `fd` is owned by libzmq for as long as `sock` is open, and `sock` lives
    // inside the `AsyncFd` (as `ZmqSocket`), which deregisters the descriptor before
    // it drops the socket; `as_raw_fd` always returns this same descriptor.
    unsafe { AsyncFd::register_with_interest(ZmqSocket { sock, fd }, Interest::READABLE) }
        .map_err(|e| TransportError::Register(e.into_parts().1))
}

/// Bodies taken from the link but not yet accepted by libzmq (its queue is at the
/// high-water mark): while this many wait, the link's channel holds the rest.
const DEALER_BACKLOG: usize = 1024;

async fn dealer_task(
    mut fd: AsyncFd<ZmqSocket>,
    mut outbound: mpsc::Receiver<Vec<u8>>,
    inbound: mpsc::Sender<Vec<u8>>,
    cancel: CancellationToken,
    max: usize,
) {
    let mut backlog: VecDeque<Vec<u8>> = VecDeque::new();
    let mut received: Vec<Vec<u8>> = Vec::new();
    let mut closed = false;
    loop {
        let more = match pump(&fd.get_ref().sock, &mut backlog, &mut received, max) {
            Ok(more) => more,
            Err(e) => {
                tracing::warn!(error = %e, "Request socket failed; its requests time out.");
                return;
            }
        };
        for body in received.drain(..) {
            if inbound.send(body).await.is_err() {
                return;
            }
        }
        if more {
            continue;
        }
        if closed && backlog.is_empty() {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            ready = fd.readable_mut() => match ready {
                Ok(mut guard) => guard.clear_ready(),
                Err(e) => {
                    tracing::warn!(error = %e, "Request socket cannot be waited on.");
                    return;
                }
            },
            body = outbound.recv(), if !closed && backlog.len() < DEALER_BACKLOG => match body {
                Some(b) => backlog.push_back(b),
                None => closed = true,
            },
        }
    }
}

/// Replies read per turn before they are handed on (so a flood cannot starve sends).
const RECV_BATCH: usize = 256;

/// Does everything `ZMQ_EVENTS` allows now: the descriptor only signals changes, and
/// every send or receive may consume a signal, so the events are read again after
/// each operation until neither direction can move. `Ok(true)`: a batch of replies
/// is full and more may be waiting.
fn pump(
    sock: &zmq::Socket,
    backlog: &mut VecDeque<Vec<u8>>,
    received: &mut Vec<Vec<u8>>,
    max: usize,
) -> Result<bool, zmq::Error> {
    loop {
        let events = sock.get_events()?;
        let mut moved = false;
        if events.contains(zmq::POLLIN) {
            match sock.recv_multipart(zmq::DONTWAIT) {
                Ok(mut frames) => {
                    moved = true;
                    if within_cap(&frames, max) {
                        if let Some(body) = frames.pop() {
                            received.push(body);
                        }
                    }
                }
                Err(zmq::Error::EAGAIN) => {}
                Err(e) => tracing::warn!(error = %e, "Request receive failed."),
            }
        }
        if events.contains(zmq::POLLOUT) {
            if let Some(body) = backlog.front() {
                match sock.send_multipart([&b""[..], &body[..]], zmq::DONTWAIT) {
                    Ok(()) => {
                        moved = true;
                        backlog.pop_front();
                    }
                    Err(zmq::Error::EAGAIN) => {}
                    Err(e) => {
                        moved = true;
                        tracing::warn!(error = %e, "Request send failed; dropping it.");
                        backlog.pop_front();
                    }
                }
            }
        }
        if !moved {
            return Ok(false);
        }
        if received.len() >= RECV_BATCH {
            return Ok(true);
        }
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
