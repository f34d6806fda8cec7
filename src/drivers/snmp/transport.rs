//! Shared asynchronous UDP transport for thousands of SNMP targets.
//!
//! A few UDP sockets (IPv4 and, where available, IPv6) are owned by a
//! dedicated thread running its own current-thread tokio runtime, which runs
//! one receive task per socket. Requests register a oneshot sender in a
//! `DashMap` keyed by (agent address, request-id / msgID) and send from the
//! caller's runtime; the receive task routes each datagram to its waiter.
//! That keeps the transport usable from many single-threaded runtimes (actix
//! arbiters) at once: no caller runtime has to poll the sockets.
//!
//! Datagrams that match nothing or do not parse are counted in
//! `drover_snmp_dropped_total{reason}` and dropped.

use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::error::SnmpError;
use super::pdu;

type Pending = DashMap<(SocketAddr, i32), oneshot::Sender<Vec<u8>>>;

/// Largest datagram we accept (UDP maximum).
const RECV_BUF: usize = 65_536;

fn dropped(reason: &'static str) {
    metrics::counter!(crate::telemetry::SNMP_DROPPED, "reason" => reason).increment(1);
}

/// Cheap to clone; all clones share sockets, pending map and receive thread.
/// The thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct SnmpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    v4: Vec<Arc<UdpSocket>>,
    v6: Vec<Arc<UdpSocket>>,
    pending: Arc<Pending>,
    next_id: AtomicU32,
    rr: AtomicUsize,
    /// Dropping this sender ends the receive thread's runtime.
    _shutdown: oneshot::Sender<()>,
    /// Counts the receive runtime's tasks in `drover_runtime_tasks` while it lives.
    _tasks: crate::telemetry::RuntimeGuard,
}

/// Removes a pending entry when the request finishes or its future is
/// dropped (caller timeout, cancelled job), so the map never leaks.
struct PendingGuard {
    pending: Arc<Pending>,
    key: (SocketAddr, i32),
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.remove(&self.key);
    }
}

impl SnmpTransport {
    /// Bind `sockets` ephemeral IPv4 sockets on 0.0.0.0 (and as many IPv6
    /// ones on `[::]` when the host has IPv6) and start the receive thread.
    pub fn new(sockets: usize) -> io::Result<SnmpTransport> {
        let n = sockets.clamp(1, 64);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (v4, v6) = {
            let _guard = rt.enter();
            let mut v4 = Vec::with_capacity(n);
            let mut v6 = Vec::with_capacity(n);
            for _ in 0..n {
                let s = StdUdpSocket::bind("0.0.0.0:0")?;
                s.set_nonblocking(true)?;
                v4.push(Arc::new(UdpSocket::from_std(s)?));
                // IPv6 is optional: hosts without it still serve IPv4.
                if let Ok(s) = StdUdpSocket::bind("[::]:0") {
                    if s.set_nonblocking(true).is_ok() {
                        if let Ok(s) = UdpSocket::from_std(s) {
                            v6.push(Arc::new(s));
                        }
                    }
                }
            }
            (v4, v6)
        };
        let pending: Arc<Pending> = Arc::new(DashMap::new());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let socks: Vec<Arc<UdpSocket>> = v4.iter().chain(v6.iter()).cloned().collect();
        let p = pending.clone();
        let tasks = crate::telemetry::register_runtime(
            crate::telemetry::RuntimeKind::Snmp,
            rt.handle().clone(),
        );
        std::thread::Builder::new()
            .name("drover-snmp-rx".into())
            .spawn(move || {
                rt.block_on(async move {
                    for s in socks {
                        tokio::spawn(recv_loop(s, p.clone()));
                    }
                    let _ = shutdown_rx.await;
                });
            })?;
        Ok(SnmpTransport {
            inner: Arc::new(Inner {
                v4,
                v6,
                pending,
                next_id: AtomicU32::new(rand::random::<u32>()),
                rr: AtomicUsize::new(0),
                _shutdown: shutdown_tx,
                _tasks: tasks,
            }),
        })
    }

    /// A fresh request-id / msgID in 1..=i32::MAX.
    pub(crate) fn next_id(&self) -> i32 {
        loop {
            let v = (self.inner.next_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff) as i32;
            if v != 0 {
                return v;
            }
        }
    }

    /// Number of requests currently waiting for a reply.
    pub fn in_flight(&self) -> usize {
        self.inner.pending.len()
    }

    fn socket_for(&self, addr: &SocketAddr) -> Result<Arc<UdpSocket>, SnmpError> {
        let pool = if addr.is_ipv4() {
            &self.inner.v4
        } else {
            &self.inner.v6
        };
        if pool.is_empty() {
            return Err(SnmpError::Io(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no socket for this address family",
            )));
        }
        let i = self.inner.rr.fetch_add(1, Ordering::Relaxed) % pool.len();
        Ok(pool[i].clone())
    }

    /// Send `bytes` to `addr` and wait for a datagram from `addr` carrying
    /// `id`, resending on each `timeout` up to `retries` times. `accept`
    /// decodes/validates a reply; a reply it rejects is counted, dropped, and
    /// the wait goes on (a spoofed or corrupt datagram must not fail the
    /// request). Retries reuse the same id so a late reply still counts.
    pub(crate) async fn roundtrip<T>(
        &self,
        addr: SocketAddr,
        id: i32,
        bytes: &[u8],
        timeout: Duration,
        retries: u32,
        mut accept: impl FnMut(&[u8]) -> Result<T, SnmpError>,
    ) -> Result<T, SnmpError> {
        let sock = self.socket_for(&addr)?;
        let key = (addr, id);
        let _guard = PendingGuard {
            pending: self.inner.pending.clone(),
            key,
        };
        let mut last_err: Option<SnmpError> = None;
        for attempt in 0..=retries {
            if attempt > 0 {
                metrics::counter!(crate::telemetry::SNMP_RETRIES).increment(1);
            }
            let (tx, mut rx) = oneshot::channel();
            self.inner.pending.insert(key, tx);
            sock.send_to(bytes, addr).await?;
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                match tokio::time::timeout_at(deadline, &mut rx).await {
                    Ok(Ok(reply)) => match accept(&reply) {
                        Ok(v) => return Ok(v),
                        Err(e) => {
                            dropped(e.kind());
                            tracing::debug!(agent = %addr, error = %e, "dropping invalid SNMP reply");
                            last_err = Some(e);
                            let (tx, new_rx) = oneshot::channel();
                            self.inner.pending.insert(key, tx);
                            rx = new_rx;
                        }
                    },
                    Ok(Err(_)) => {
                        return Err(SnmpError::Io(io::Error::other("SNMP transport closed")));
                    }
                    Err(_) => break,
                }
            }
        }
        if last_err.is_none() {
            metrics::counter!(crate::telemetry::SNMP_TIMEOUTS).increment(1);
        }
        Err(last_err.unwrap_or(SnmpError::Timeout))
    }
}

async fn recv_loop(sock: Arc<UdpSocket>, pending: Arc<Pending>) {
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let data = buf.get(..n).unwrap_or(&[]);
                match pdu::peek_id(data) {
                    Ok(id) => match pending.remove(&(from, id)) {
                        Some((_, tx)) => {
                            // The waiter may have just given up; that is fine.
                            let _ = tx.send(data.to_vec());
                        }
                        None => dropped("unmatched"),
                    },
                    Err(_) => dropped("malformed"),
                }
            }
            Err(e) => {
                // Transient (e.g. ICMP-induced errors); avoid a hot loop.
                tracing::debug!(error = %e, "SNMP socket receive error");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::snmp::pdu::{encode_message, CommunityMessage, Message, Pdu, PduType};
    use crate::drivers::snmp::SnmpVersion;

    /// A fake agent on its own thread: answers every request twice (once with
    /// garbage, once with an unmatched id) before the real reply, so the
    /// drop paths are exercised; requests are served from two independent
    /// current-thread runtimes at once.
    #[test]
    fn shared_transport_from_two_runtimes_and_garbage() {
        let agent = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let agent_addr = agent.local_addr().unwrap();
        let served = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut count = 0;
            while count < 20 {
                let Ok((n, from)) = agent.recv_from(&mut buf) else {
                    break;
                };
                let id = pdu::peek_id(&buf[..n]).unwrap();
                agent.send_to(&[0x30, 0x03, 0xff, 0xff], from).unwrap();
                let reply = |rid: i32| {
                    encode_message(&Message::Community(CommunityMessage {
                        version: SnmpVersion::V2c,
                        community: b"public".to_vec(),
                        pdu: Pdu::new(PduType::Response, rid, vec![]),
                    }))
                };
                agent.send_to(&reply(id.wrapping_add(1000)), from).unwrap();
                agent.send_to(&reply(id), from).unwrap();
                count += 1;
            }
            count
        });
        let transport = SnmpTransport::new(2).unwrap();
        let mut handles = Vec::new();
        for _ in 0..2 {
            let t = transport.clone();
            handles.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    for _ in 0..10 {
                        let id = t.next_id();
                        let req = encode_message(&Message::Community(CommunityMessage {
                            version: SnmpVersion::V2c,
                            community: b"public".to_vec(),
                            pdu: Pdu::new(PduType::Get, id, vec![]),
                        }));
                        let got = t
                            .roundtrip(agent_addr, id, &req, Duration::from_secs(2), 0, |b| {
                                pdu::decode_message(b)
                            })
                            .await
                            .unwrap();
                        assert_eq!(got.pdu().unwrap().request_id, id);
                    }
                });
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(served.join().unwrap(), 20);
        assert_eq!(transport.in_flight(), 0);
    }

    #[test]
    fn ipv6_target() {
        let Ok(agent) = StdUdpSocket::bind("[::1]:0") else {
            eprintln!("!!! SKIPPING ipv6_target: no IPv6 loopback on this host !!!");
            return;
        };
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let addr = agent.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let (n, from) = agent.recv_from(&mut buf).unwrap();
            agent.send_to(&buf[..n], from).unwrap();
        });
        let transport = SnmpTransport::new(1).unwrap();
        let id = transport.next_id();
        let req = encode_message(&Message::Community(CommunityMessage {
            version: SnmpVersion::V2c,
            community: b"public".to_vec(),
            pdu: Pdu::new(PduType::Get, id, vec![]),
        }));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt
            .block_on(
                transport.roundtrip(
                    addr,
                    id,
                    &req,
                    Duration::from_secs(2),
                    0,
                    |b| Ok(b.to_vec()),
                ),
            )
            .unwrap();
        assert_eq!(got, req);
        echo.join().unwrap();
    }

    #[test]
    fn timeout_with_retries() {
        // Bound but silent socket.
        let silent = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let transport = SnmpTransport::new(1).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let start = std::time::Instant::now();
        let r = rt.block_on(transport.roundtrip(
            addr,
            transport.next_id(),
            b"\x30\x00",
            Duration::from_millis(100),
            2,
            |_| Ok(()),
        ));
        assert!(matches!(r, Err(SnmpError::Timeout)));
        assert!(start.elapsed() >= Duration::from_millis(300));
        let mut buf = [0u8; 16];
        silent.set_nonblocking(true).unwrap();
        let mut got = 0;
        while silent.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        assert_eq!(got, 3, "1 try + 2 retries");
        assert_eq!(transport.in_flight(), 0);
    }
}
