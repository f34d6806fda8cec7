//! The SSH side of a simulated NETCONF device: a russh server handler per connection
//! (password or public-key auth, one session channel, the `netconf` subsystem), the
//! per-device listener task (down and up again on fault changes), and the reply faults.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::keys::PublicKey;
use russh::server::{Auth, Msg, Session as SshSession};
use russh::{Channel, ChannelId, CryptoVec};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, trace, warn};

use super::session::{DeviceState, Session};
use super::NetconfFault;
use crate::devsim::rest::{bind_listener, reserve_port};
use crate::drivers::netconf::framing::{encode, Framing, FramingError, EOM};

/// Listen backlog per device.
const BACKLOG: u32 = 1024;
/// Wait before retrying a failed rebind after a device comes back up.
const REBIND_RETRY: Duration = Duration::from_millis(200);
/// Pause after a failed accept (e.g. out of descriptors) instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Piece size of the `huge` fault's reply.
const HUGE_PIECE: usize = 32 * 1024;

/// One simulated device.
pub(super) struct Device {
    pub state: Arc<DeviceState>,
    pub fault: watch::Sender<NetconfFault>,
}

/// What every device of one simulator shares.
pub(super) struct Shared {
    pub username: String,
    pub password: String,
    pub authorized_key: Option<PublicKey>,
    pub max_message: usize,
    pub next_session: AtomicU32,
    pub ssh: Arc<russh::server::Config>,
}

/// The russh handler of one connection.
struct Conn {
    dev: Arc<Device>,
    shared: Arc<Shared>,
    channel: Option<ChannelId>,
    session: Option<Session>,
    /// Nothing more is read or answered (a `never_ending` reply was sent, or the
    /// session ended on a protocol error).
    stalled: bool,
}

impl Conn {
    fn key_allowed(&self, user: &str, key: &PublicKey) -> bool {
        let user_ok = bool::from(user.as_bytes().ct_eq(self.shared.username.as_bytes()));
        user_ok
            && self
                .shared
                .authorized_key
                .as_ref()
                .is_some_and(|k| k.key_data() == key.key_data())
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let user_ok = user.as_bytes().ct_eq(self.shared.username.as_bytes());
        let pass_ok = password.as_bytes().ct_eq(self.shared.password.as_bytes());
        if bool::from(user_ok & pass_ok) {
            Ok(Auth::Accept)
        } else {
            debug!(device = %self.dev.state.id, "password rejected");
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        if self.key_allowed(user, key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        if self.key_allowed(user, key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        // One NETCONF session per connection. The channel object is dropped: data
        // arrives through `data` below, and an unread channel would only queue it.
        if self.channel.is_some() {
            return Ok(false);
        }
        self.channel = Some(channel.id());
        Ok(true)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if name != "netconf" || self.channel != Some(channel) || self.session.is_some() {
            debug!(device = %self.dev.state.id, subsystem = name, "subsystem refused");
            return session.channel_failure(channel);
        }
        session.channel_success(channel)?;
        let id = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        let s = Session::new(id, Arc::clone(&self.dev.state), self.shared.max_message);
        match framed(Framing::EndOfMessage, s.hello().as_bytes()) {
            Ok(hello) => session.data(channel, CryptoVec::from(hello))?,
            Err(e) => {
                warn!(device = %self.dev.state.id, error = %e, "cannot frame the hello");
                return session.close(channel);
            }
        }
        trace!(device = %self.dev.state.id, session = id, "NETCONF session started");
        self.session = Some(s);
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if self.stalled || self.channel != Some(channel) {
            return Ok(());
        }
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        if let Err(e) = s.push(data) {
            debug!(device = %self.dev.state.id, error = %e, "NETCONF session ended on a framing error");
            self.session = None;
            self.stalled = true;
            return session.close(channel);
        }
        loop {
            let Some(s) = self.session.as_mut() else {
                return Ok(());
            };
            let framing = s.framing();
            match s.next() {
                Ok(None) => return Ok(()),
                Ok(Some(out)) => {
                    if let Some(reply) = out.reply {
                        let fault = self.dev.fault.borrow().clone();
                        let id = out.message_id.as_deref().unwrap_or("");
                        if send(session, channel, framing, &fault, &reply, id).await? {
                            debug!(device = %self.dev.state.id, "reply left unfinished (never_ending)");
                            self.stalled = true;
                            return Ok(());
                        }
                    }
                    if out.close {
                        // The session's locks are released when it is dropped.
                        self.session = None;
                        self.stalled = true;
                        session.eof(channel)?;
                        return session.close(channel);
                    }
                }
                Err(e) => {
                    debug!(device = %self.dev.state.id, error = %e, "NETCONF session ended on a protocol error");
                    self.session = None;
                    self.stalled = true;
                    return session.close(channel);
                }
            }
        }
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if self.channel == Some(channel) {
            self.session = None;
        }
        Ok(())
    }
}

/// One message framed (an error only for a 1.0 message containing `]]>]]>`, which
/// escaped XML text cannot).
fn framed(framing: Framing, msg: &[u8]) -> Result<Vec<u8>, FramingError> {
    let mut out = Vec::with_capacity(msg.len() + 32);
    encode(framing, msg, &mut out)?;
    Ok(out)
}

fn frame_error(e: FramingError) -> russh::Error {
    russh::Error::IO(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Sends one reply as the device's fault dictates; true when the reply was left
/// unfinished on purpose and the session must stay silent from now on.
async fn send(
    session: &mut SshSession,
    channel: ChannelId,
    framing: Framing,
    fault: &NetconfFault,
    reply: &str,
    message_id: &str,
) -> Result<bool, russh::Error> {
    match fault {
        NetconfFault::None | NetconfFault::Down => {
            session.data(
                channel,
                CryptoVec::from(framed(framing, reply.as_bytes()).map_err(frame_error)?),
            )?;
        }
        NetconfFault::Slow(d) => {
            tokio::time::sleep(*d).await;
            session.data(
                channel,
                CryptoVec::from(framed(framing, reply.as_bytes()).map_err(frame_error)?),
            )?;
        }
        NetconfFault::NeverEnding => {
            let whole = framed(framing, reply.as_bytes()).map_err(frame_error)?;
            // The first half: a chunk header promising more than comes, or a 1.0
            // message without its end marker.
            let half = whole.len() / 2;
            session.data(channel, CryptoVec::from_slice(&whole[..half]))?;
            return Ok(true);
        }
        NetconfFault::BadChunk => {
            let mut out = b"\n#0x1f\n".to_vec();
            out.extend_from_slice(reply.as_bytes());
            out.extend_from_slice(b"\n##\n");
            session.data(channel, CryptoVec::from(out))?;
        }
        NetconfFault::Huge(size) => {
            let head = format!(
                "<rpc-reply xmlns=\"{}\" message-id=\"{}\"><data><filler xmlns=\"urn:drover:devsim\">",
                super::xml::NC_NS,
                quick_xml::escape::escape(message_id)
            );
            let tail = "</filler></data></rpc-reply>";
            let piece = Bytes::from(vec![b'x'; HUGE_PIECE]);
            let mut left = size.saturating_sub(head.len() + tail.len());
            let frame = |session: &mut SshSession, b: Bytes| -> Result<(), russh::Error> {
                if framing == Framing::Chunked {
                    session.data(channel, CryptoVec::from(format!("\n#{}\n", b.len())))?;
                }
                session.data(channel, CryptoVec::from_slice(&b))
            };
            frame(session, Bytes::from(head))?;
            while left > 0 {
                let n = left.min(HUGE_PIECE);
                frame(session, piece.slice(..n))?;
                left -= n;
            }
            frame(session, Bytes::from_static(tail.as_bytes()))?;
            match framing {
                Framing::Chunked => session.data(channel, CryptoVec::from_slice(b"\n##\n"))?,
                Framing::EndOfMessage => session.data(channel, CryptoVec::from_slice(EOM))?,
            }
        }
    }
    Ok(false)
}

/// Accepts connections for one device until shutdown; goes down (port reserved, so
/// connections are refused and open ones closed) and up again as its fault changes.
pub(super) async fn supervise(
    dev: Arc<Device>,
    shared: Arc<Shared>,
    addr: SocketAddr,
    mut listener: Option<TcpListener>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut faults = dev.fault.subscribe();
    let mut conns = shutdown.child_token();
    let mut reserved: Option<TcpSocket> = if listener.is_none() {
        reserve_port(addr).ok()
    } else {
        None
    };
    loop {
        let down = *faults.borrow_and_update() == NetconfFault::Down;
        let mut rebind_failed = false;
        if !down && listener.is_none() {
            let bound = match reserved.take() {
                Some(s) => s.set_reuseaddr(true).and_then(|()| s.listen(BACKLOG)),
                None => bind_listener(addr),
            };
            match bound {
                Ok(l) => {
                    debug!(device = %dev.state.id, %addr, "device up");
                    listener = Some(l);
                    conns = shutdown.child_token();
                }
                Err(e) => {
                    warn!(device = %dev.state.id, %addr, error = %e, "cannot rebind simulated device; retrying");
                    rebind_failed = true;
                }
            }
        } else if down && listener.is_some() {
            debug!(device = %dev.state.id, %addr, "device down");
            listener = None;
            reserved = reserve_port(addr).ok();
            conns.cancel();
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = faults.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(REBIND_RETRY), if rebind_failed => {}
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    trace!(device = %dev.state.id, %peer, "connection accepted");
                    let _ = stream.set_nodelay(true);
                    tracker.spawn(connection(stream, Arc::clone(&dev), Arc::clone(&shared), conns.clone()));
                }
                Err(e) => {
                    warn!(device = %dev.state.id, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    conns.cancel();
}

async fn accept(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Runs one SSH connection until it ends or the device goes down.
async fn connection(
    stream: TcpStream,
    dev: Arc<Device>,
    shared: Arc<Shared>,
    close: CancellationToken,
) {
    let id = dev.state.id.clone();
    let handler = Conn {
        dev,
        shared: Arc::clone(&shared),
        channel: None,
        session: None,
        stalled: false,
    };
    let running = tokio::select! {
        biased;
        _ = close.cancelled() => return,
        r = russh::server::run_stream(Arc::clone(&shared.ssh), stream, handler) => match r {
            Ok(r) => r,
            Err(e) => {
                debug!(device = %id, error = %e, "SSH handshake failed");
                return;
            }
        },
    };
    let handle = running.handle();
    tokio::select! {
        biased;
        _ = close.cancelled() => {
            trace!(device = %id, "connection closed: device down");
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "device down".into(), "en".into())
                .await;
        }
        r = running => if let Err(e) = r {
            trace!(device = %id, error = %e, "SSH session ended");
        },
    }
}
