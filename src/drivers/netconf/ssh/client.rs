//! The client's state machine, free of I/O: bytes from the server go in through
//! [`Engine::feed`], bytes for the server come out of [`Engine::outgoing`], and
//! the one session channel's data comes out of [`Engine::take_received`]. It runs
//! the version exchange, key exchange (and any later re-exchange, either side's),
//! user authentication, the session channel with its windows, the subsystem
//! request, keepalives, and answers what the server may send unasked.

use std::sync::Arc;

use russh::keys::signature::Signer;
use russh::keys::ssh_key::private::KeypairData;
use russh::keys::ssh_key::Signature;
use russh::keys::{HashAlg, PrivateKey, PublicKey};

use super::cipher::Direction;
use super::error::SshError;
use super::kex::{self, Ephemeral, Negotiated};
use super::wire::{put_bool, put_string, put_u32, Reader};
use crate::secrets::Secret;

const MSG_DISCONNECT: u8 = 1;
const MSG_IGNORE: u8 = 2;
const MSG_UNIMPLEMENTED: u8 = 3;
const MSG_DEBUG: u8 = 4;
const MSG_SERVICE_REQUEST: u8 = 5;
const MSG_SERVICE_ACCEPT: u8 = 6;
const MSG_EXT_INFO: u8 = 7;
const MSG_USERAUTH_REQUEST: u8 = 50;
const MSG_USERAUTH_FAILURE: u8 = 51;
const MSG_USERAUTH_SUCCESS: u8 = 52;
const MSG_USERAUTH_BANNER: u8 = 53;
const MSG_USERAUTH_60: u8 = 60;
const MSG_GLOBAL_REQUEST: u8 = 80;
const MSG_REQUEST_SUCCESS: u8 = 81;
const MSG_REQUEST_FAILURE: u8 = 82;
const MSG_CHANNEL_OPEN: u8 = 90;
const MSG_CHANNEL_OPEN_CONFIRMATION: u8 = 91;
const MSG_CHANNEL_OPEN_FAILURE: u8 = 92;
const MSG_CHANNEL_WINDOW_ADJUST: u8 = 93;
const MSG_CHANNEL_DATA: u8 = 94;
const MSG_CHANNEL_EXTENDED_DATA: u8 = 95;
const MSG_CHANNEL_EOF: u8 = 96;
const MSG_CHANNEL_CLOSE: u8 = 97;
const MSG_CHANNEL_REQUEST: u8 = 98;
const MSG_CHANNEL_SUCCESS: u8 = 99;
const MSG_CHANNEL_FAILURE: u8 = 100;

pub const CLIENT_VERSION: &str = concat!("SSH-2.0-Drover_", env!("CARGO_PKG_VERSION"));
/// Our receive window; topped up when half is used.
const WINDOW: u32 = 2 * 1024 * 1024;
/// Largest channel data packet we accept.
const MAX_DATA_PACKET: u32 = 32 * 1024;
/// Largest channel data chunk we send in one packet.
const SEND_CHUNK: usize = 32 * 1024;
/// Lines a server may send before its version (RFC 4253 §4.2 allows some).
const MAX_BANNER: usize = 8 * 1024;
/// Unanswered keepalives before the connection counts as dead.
const KEEPALIVE_MAX: u32 = 3;
/// Re-key after this much traffic either way (RFC 4253 §9 suggests 1 GB).
const REKEY_BYTES: u64 = 1 << 30;

/// How the client proves who it is.
#[derive(Clone)]
pub enum Credentials {
    Password(Secret),
    Key(Arc<PrivateKey>),
}

impl Credentials {
    pub fn method(&self) -> &'static str {
        match self {
            Credentials::Password(_) => "password",
            Credentials::Key(_) => "publickey",
        }
    }
}

/// Judges the server's host key on the first exchange; `false` refuses it.
pub type HostKeyCheck = Box<dyn FnOnce(&PublicKey) -> bool + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Kex,
    Service,
    Auth,
    ChannelOpen,
    Subsystem,
    Open,
}

/// A key exchange in progress; boxed, so an idle session does not carry it.
struct KexState {
    i_c: Vec<u8>,
    neg: Option<Negotiated>,
    i_s: Vec<u8>,
    eph: Option<(Ephemeral, Vec<u8>)>,
    next_rx: Option<Direction>,
    sent_newkeys: bool,
}

pub struct Engine {
    v_s: Option<Box<[u8]>>,
    tx: Direction,
    rx: Direction,
    send_seq: u32,
    recv_seq: u32,
    session_id: Option<[u8; 32]>,
    host_key: Option<Box<[u8]>>,
    kex: Option<Box<KexState>>,
    strict: bool,
    first_kex: bool,
    /// Payloads held while a key exchange runs.
    deferred: Vec<Vec<u8>>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    phase: Phase,
    username: String,
    creds: Option<Credentials>,
    check: Option<HostKeyCheck>,
    subsystem: &'static str,
    rsa_hash: Option<HashAlg>,
    remote_id: u32,
    remote_window: u32,
    remote_max: u32,
    local_window: u32,
    pending: Vec<u8>,
    received: Vec<u8>,
    keepalives: u32,
    traffic: u64,
    rekey_after: u64,
    exchanges: u32,
    closed: bool,
}

impl Engine {
    /// A client that will log in as `username` and open `subsystem`. The version
    /// line and our KEXINIT are queued at once.
    pub fn new(
        username: String,
        creds: Credentials,
        check: HostKeyCheck,
        subsystem: &'static str,
    ) -> Engine {
        let mut e = Engine {
            v_s: None,
            tx: Direction::plain(),
            rx: Direction::plain(),
            send_seq: 0,
            recv_seq: 0,
            session_id: None,
            host_key: None,
            kex: None,
            strict: false,
            first_kex: true,
            deferred: Vec::new(),
            inbuf: Vec::new(),
            out: Vec::new(),
            phase: Phase::Kex,
            username,
            creds: Some(creds),
            check: Some(check),
            subsystem,
            rsa_hash: None,
            remote_id: 0,
            remote_window: 0,
            remote_max: 0,
            local_window: WINDOW,
            pending: Vec::new(),
            received: Vec::new(),
            keepalives: 0,
            traffic: 0,
            rekey_after: REKEY_BYTES,
            exchanges: 0,
            closed: false,
        };
        e.out.extend_from_slice(CLIENT_VERSION.as_bytes());
        e.out.extend_from_slice(b"\r\n");
        e.begin_kex();
        e
    }

    /// Whether the subsystem is open and data can flow.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Bytes waiting to go to the server.
    pub fn outgoing(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`outgoing`](Self::outgoing) were written.
    pub fn written(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
        if self.out.is_empty() {
            // An idle session keeps no buffer.
            self.out = Vec::new();
        }
    }

    /// Channel data received since the last call.
    pub fn take_received(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.received)
    }

    /// Queues data for the channel; it goes out as the server's window allows.
    pub fn send_data(&mut self, data: &[u8]) -> Result<(), SshError> {
        if self.closed {
            return Err(SshError::Closed);
        }
        self.pending.extend_from_slice(data);
        self.pump()
    }

    /// Sends a keepalive; fails when too many went unanswered.
    pub fn keepalive(&mut self) -> Result<(), SshError> {
        if self.keepalives >= KEEPALIVE_MAX {
            return Err(SshError::KeepaliveTimeout(self.keepalives));
        }
        self.keepalives += 1;
        let mut p = vec![MSG_GLOBAL_REQUEST];
        put_string(&mut p, b"keepalive@openssh.com");
        put_bool(&mut p, true);
        self.send(p)
    }

    /// Takes bytes from the server and acts on every whole packet in them.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), SshError> {
        if self.closed {
            return Err(SshError::Closed);
        }
        self.inbuf.extend_from_slice(data);
        let mut buf = std::mem::take(&mut self.inbuf);
        let r = self.process(&mut buf);
        if buf.is_empty() {
            buf = Vec::new();
        }
        self.inbuf = buf;
        if r.is_err() {
            self.closed = true;
        }
        r
    }

    fn process(&mut self, buf: &mut Vec<u8>) -> Result<(), SshError> {
        if self.v_s.is_none() && !self.read_version(buf)? {
            return Ok(());
        }
        loop {
            let seq = self.recv_seq;
            let Some((range, used)) = self.rx.open(seq, buf)? else {
                return Ok(());
            };
            self.recv_seq = self.recv_seq.wrapping_add(1);
            self.traffic += used as u64;
            let r = self.handle(seq, &buf[range]);
            buf.drain(..used);
            r?;
            self.maybe_rekey();
        }
    }

    /// Reads the server's version line; `false` until it is whole.
    fn read_version(&mut self, buf: &mut Vec<u8>) -> Result<bool, SshError> {
        loop {
            let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > MAX_BANNER {
                    return Err(SshError::Protocol("no SSH version line".into()));
                }
                return Ok(false);
            };
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b"SSH-") {
                if !(line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-")) {
                    return Err(SshError::Protocol(format!(
                        "unsupported protocol version {:?}",
                        String::from_utf8_lossy(line)
                    )));
                }
                self.v_s = Some(line.into());
                return Ok(true);
            }
        }
    }

    fn begin_kex(&mut self) {
        let i_c = kex::client_kexinit(self.first_kex);
        self.seal(&i_c);
        self.kex = Some(Box::new(KexState {
            i_c,
            neg: None,
            i_s: Vec::new(),
            eph: None,
            next_rx: None,
            sent_newkeys: false,
        }));
    }

    /// Seals one payload into the outgoing bytes.
    fn seal(&mut self, payload: &[u8]) {
        let before = self.out.len();
        if self.tx.seal(self.send_seq, payload, &mut self.out).is_err() {
            // Only an oversized payload fails; none of ours are.
            self.out.truncate(before);
            self.closed = true;
            return;
        }
        self.traffic += (self.out.len() - before) as u64;
        self.send_seq = self.send_seq.wrapping_add(1);
    }

    /// Sends a payload now, or after the running key exchange.
    fn send(&mut self, payload: Vec<u8>) -> Result<(), SshError> {
        if self.kex.is_some() {
            self.deferred.push(payload);
        } else {
            self.seal(&payload);
            self.maybe_rekey();
        }
        Ok(())
    }

    /// Re-keys after `bytes` of traffic instead of [`REKEY_BYTES`] (tests).
    #[cfg(test)]
    pub fn rekey_after(&mut self, bytes: u64) {
        self.rekey_after = bytes;
    }

    /// Key exchanges completed, the first included.
    pub fn exchanges(&self) -> u32 {
        self.exchanges
    }

    /// Starts a key exchange of our own after [`REKEY_BYTES`] of traffic.
    fn maybe_rekey(&mut self) {
        if self.kex.is_none() && self.phase == Phase::Open && self.traffic > self.rekey_after {
            self.traffic = 0;
            self.begin_kex();
        }
    }

    fn handle(&mut self, seq: u32, p: &[u8]) -> Result<(), SshError> {
        let mut r = Reader::new(p);
        let msg = r.u8()?;
        self.keepalives = 0;
        self.check_first_kex(msg)?;
        match msg {
            MSG_DISCONNECT => {
                let reason = r.u32()?;
                let description = String::from_utf8_lossy(r.string()?).into_owned();
                Err(SshError::Disconnect {
                    reason,
                    description: description.chars().take(256).collect(),
                })
            }
            MSG_IGNORE | MSG_DEBUG | MSG_UNIMPLEMENTED => Ok(()),
            kex::MSG_KEXINIT => self.on_kexinit(p),
            kex::MSG_KEX_ECDH_REPLY => self.on_ecdh_reply(&mut r),
            kex::MSG_NEWKEYS => self.on_newkeys(),
            _ if self.kex.is_some() && (30..=49).contains(&msg) => Err(SshError::Protocol(
                format!("unexpected key exchange message {msg}"),
            )),
            MSG_EXT_INFO => self.on_ext_info(&mut r),
            MSG_SERVICE_ACCEPT if self.phase == Phase::Service => self.authenticate(),
            MSG_USERAUTH_BANNER => Ok(()),
            MSG_USERAUTH_SUCCESS if self.phase == Phase::Auth => {
                self.creds = None;
                self.phase = Phase::ChannelOpen;
                let mut p = vec![MSG_CHANNEL_OPEN];
                put_string(&mut p, b"session");
                put_u32(&mut p, 0);
                put_u32(&mut p, WINDOW);
                put_u32(&mut p, MAX_DATA_PACKET);
                self.send(p)
            }
            MSG_USERAUTH_FAILURE | MSG_USERAUTH_60 if self.phase == Phase::Auth => {
                let allowed = if msg == MSG_USERAUTH_FAILURE {
                    r.text()?.to_owned()
                } else {
                    "(password change requested)".to_owned()
                };
                Err(SshError::AuthRefused { allowed })
            }
            MSG_GLOBAL_REQUEST => {
                r.string()?;
                if r.bool()? {
                    self.send(vec![MSG_REQUEST_FAILURE])?;
                }
                Ok(())
            }
            MSG_REQUEST_SUCCESS | MSG_REQUEST_FAILURE => Ok(()),
            MSG_CHANNEL_OPEN => {
                r.string()?;
                let sender = r.u32()?;
                let mut p = vec![MSG_CHANNEL_OPEN_FAILURE];
                put_u32(&mut p, sender);
                put_u32(&mut p, 1);
                put_string(&mut p, b"no channels accepted");
                put_string(&mut p, b"");
                self.send(p)
            }
            MSG_CHANNEL_OPEN_CONFIRMATION if self.phase == Phase::ChannelOpen => {
                r.u32()?;
                self.remote_id = r.u32()?;
                self.remote_window = r.u32()?;
                self.remote_max = r.u32()?.max(1);
                self.phase = Phase::Subsystem;
                let mut p = vec![MSG_CHANNEL_REQUEST];
                put_u32(&mut p, self.remote_id);
                put_string(&mut p, b"subsystem");
                put_bool(&mut p, true);
                put_string(&mut p, self.subsystem.as_bytes());
                self.send(p)
            }
            MSG_CHANNEL_OPEN_FAILURE if self.phase == Phase::ChannelOpen => {
                r.u32()?;
                let code = r.u32()?;
                let why = String::from_utf8_lossy(r.string()?).into_owned();
                Err(SshError::ChannelRefused(format!("{why} (code {code})")))
            }
            MSG_CHANNEL_SUCCESS if self.phase == Phase::Subsystem => {
                self.phase = Phase::Open;
                self.pump()
            }
            MSG_CHANNEL_FAILURE if self.phase == Phase::Subsystem => {
                Err(SshError::SubsystemRefused)
            }
            MSG_CHANNEL_SUCCESS | MSG_CHANNEL_FAILURE => Ok(()),
            MSG_CHANNEL_WINDOW_ADJUST if self.phase >= Phase::Subsystem => {
                r.u32()?;
                self.remote_window = self.remote_window.saturating_add(r.u32()?);
                self.pump()
            }
            MSG_CHANNEL_DATA | MSG_CHANNEL_EXTENDED_DATA if self.phase >= Phase::Subsystem => {
                r.u32()?;
                if msg == MSG_CHANNEL_EXTENDED_DATA {
                    r.u32()?;
                }
                let data = r.string()?;
                let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                if n > self.local_window {
                    return Err(SshError::Protocol(
                        "server overran the channel window".into(),
                    ));
                }
                self.local_window -= n;
                if msg == MSG_CHANNEL_DATA {
                    self.received.extend_from_slice(data);
                }
                if self.local_window < WINDOW / 2 {
                    let mut p = vec![MSG_CHANNEL_WINDOW_ADJUST];
                    put_u32(&mut p, self.remote_id);
                    put_u32(&mut p, WINDOW - self.local_window);
                    self.local_window = WINDOW;
                    self.send(p)?;
                }
                Ok(())
            }
            MSG_CHANNEL_EOF | MSG_CHANNEL_CLOSE if self.phase >= Phase::Subsystem => {
                Err(SshError::Closed)
            }
            MSG_CHANNEL_REQUEST if self.phase >= Phase::Subsystem => {
                r.u32()?;
                r.string()?;
                if r.bool()? {
                    let mut p = vec![MSG_CHANNEL_FAILURE];
                    put_u32(&mut p, self.remote_id);
                    self.send(p)?;
                }
                Ok(())
            }
            _ => {
                let mut p = vec![MSG_UNIMPLEMENTED];
                put_u32(&mut p, seq);
                self.send(p)
            }
        }
    }

    /// During the first key exchange only its own messages may arrive; with
    /// strict key exchange not even IGNORE or DEBUG once the server is known to
    /// be strict (and its KEXINIT must have been its first packet, see
    /// `on_kexinit`).
    fn check_first_kex(&self, msg: u8) -> Result<(), SshError> {
        let Some(k) = self.kex.as_ref().filter(|_| self.first_kex) else {
            return Ok(());
        };
        let ok = msg == MSG_DISCONNECT
            || match &k.neg {
                None => matches!(msg, kex::MSG_KEXINIT | MSG_IGNORE | MSG_DEBUG),
                Some(n) if n.strict => {
                    matches!(msg, kex::MSG_KEX_ECDH_REPLY | kex::MSG_NEWKEYS)
                }
                Some(_) => matches!(
                    msg,
                    kex::MSG_KEX_ECDH_REPLY | kex::MSG_NEWKEYS | MSG_IGNORE | MSG_DEBUG
                ),
            };
        if ok {
            Ok(())
        } else {
            Err(SshError::Protocol(format!(
                "message {msg} during the first key exchange"
            )))
        }
    }

    fn on_kexinit(&mut self, p: &[u8]) -> Result<(), SshError> {
        if self.kex.as_ref().is_some_and(|k| k.neg.is_some()) {
            return Err(SshError::Protocol(
                "second KEXINIT during a key exchange".into(),
            ));
        }
        if self.kex.is_none() {
            self.begin_kex();
        }
        let first = self.first_kex;
        let neg = kex::negotiate(p, first)?;
        if neg.strict && self.recv_seq != 1 {
            return Err(SshError::Protocol(
                "strict key exchange: KEXINIT was not the server's first packet".into(),
            ));
        }
        if neg.skip_guess {
            return Err(SshError::Protocol(
                "server sent a wrong kex guess (first_kex_packet_follows)".into(),
            ));
        }
        let (eph, q_c) = Ephemeral::new(neg.kex)?;
        let mut init = vec![kex::MSG_KEX_ECDH_INIT];
        put_string(&mut init, &q_c);
        self.seal(&init);
        if let Some(k) = self.kex.as_mut() {
            k.i_s = p.to_vec();
            k.neg = Some(neg);
            k.eph = Some((eph, q_c));
        }
        Ok(())
    }

    fn on_ecdh_reply(&mut self, r: &mut Reader<'_>) -> Result<(), SshError> {
        let Some(mut k) = self.kex.take() else {
            return Err(SshError::Protocol(
                "ECDH reply outside a key exchange".into(),
            ));
        };
        let eph = k.eph.take();
        let (Some(neg), Some((eph, q_c))) = (k.neg.clone(), eph) else {
            return Err(SshError::Protocol("ECDH reply before KEXINIT".into()));
        };
        let k_s = r.string()?;
        let q_s = r.string()?;
        let sig = r.string()?;
        let shared = eph.shared(q_s)?;
        let v_s = self.v_s.as_deref().unwrap_or_default();
        let h = kex::exchange_hash(
            CLIENT_VERSION.as_bytes(),
            v_s,
            &k.i_c,
            &k.i_s,
            k_s,
            &q_c,
            q_s,
            &shared,
        );
        let key = kex::verify_host_key(k_s, sig, &h, neg.host_key)?;
        match &self.host_key {
            Some(known) if **known != *k_s => {
                return Err(SshError::Protocol("host key changed during re-key".into()));
            }
            Some(_) => {}
            None => {
                let ok = self.check.take().is_some_and(|check| check(&key));
                if !ok {
                    return Err(SshError::HostKeyRefused);
                }
                self.host_key = Some(k_s.into());
            }
        }
        let session_id = *self.session_id.get_or_insert(h);
        let (tx, rx) = kex::directions(&neg, &shared, &h, &session_id);
        self.strict |= neg.strict;
        self.seal(&[kex::MSG_NEWKEYS]);
        self.tx = tx;
        if self.strict {
            self.send_seq = 0;
        }
        k.next_rx = Some(rx);
        k.sent_newkeys = true;
        self.kex = Some(k);
        Ok(())
    }

    fn on_newkeys(&mut self) -> Result<(), SshError> {
        let Some(k) = self.kex.take() else {
            return Err(SshError::Protocol("NEWKEYS outside a key exchange".into()));
        };
        let (true, Some(rx)) = (k.sent_newkeys, k.next_rx) else {
            return Err(SshError::Protocol(
                "NEWKEYS before the exchange finished".into(),
            ));
        };
        self.rx = rx;
        if self.strict {
            self.recv_seq = 0;
        }
        self.traffic = 0;
        self.exchanges += 1;
        let was_first = self.first_kex;
        self.first_kex = false;
        for p in std::mem::take(&mut self.deferred) {
            self.seal(&p);
        }
        if was_first {
            self.phase = Phase::Service;
            let mut p = vec![MSG_SERVICE_REQUEST];
            put_string(&mut p, b"ssh-userauth");
            self.seal(&p);
        }
        self.pump()
    }

    fn on_ext_info(&mut self, r: &mut Reader<'_>) -> Result<(), SshError> {
        let n = r.u32()?;
        for _ in 0..n.min(64) {
            let name = r.text()?;
            let value = r.string()?;
            if name == "server-sig-algs" {
                let algs = String::from_utf8_lossy(value);
                let has = |a: &str| algs.split(',').any(|x| x == a);
                self.rsa_hash = if has("rsa-sha2-512") {
                    Some(HashAlg::Sha512)
                } else if has("rsa-sha2-256") {
                    Some(HashAlg::Sha256)
                } else {
                    None
                };
            }
        }
        Ok(())
    }

    fn authenticate(&mut self) -> Result<(), SshError> {
        let Some(creds) = self.creds.clone() else {
            return Err(SshError::Protocol("authentication asked twice".into()));
        };
        self.phase = Phase::Auth;
        let mut p = vec![MSG_USERAUTH_REQUEST];
        put_string(&mut p, self.username.as_bytes());
        put_string(&mut p, b"ssh-connection");
        match &creds {
            Credentials::Password(secret) => {
                put_string(&mut p, b"password");
                put_bool(&mut p, false);
                put_string(&mut p, secret.expose().as_bytes());
            }
            Credentials::Key(key) => {
                let Some(session_id) = self.session_id else {
                    return Err(SshError::Protocol("no session id".into()));
                };
                let blob = key
                    .public_key()
                    .to_bytes()
                    .map_err(|e| SshError::Sign(e.to_string()))?;
                let alg = match key.key_data() {
                    KeypairData::Rsa(_) => match self.rsa_hash.unwrap_or(HashAlg::Sha256) {
                        HashAlg::Sha512 => "rsa-sha2-512".to_owned(),
                        _ => "rsa-sha2-256".to_owned(),
                    },
                    _ => key.algorithm().as_str().to_owned(),
                };
                put_string(&mut p, b"publickey");
                put_bool(&mut p, true);
                put_string(&mut p, alg.as_bytes());
                put_string(&mut p, &blob);
                let mut signed = Vec::with_capacity(p.len() + 40);
                put_string(&mut signed, &session_id);
                signed.extend_from_slice(&p);
                let sig: Signature = match key.key_data() {
                    KeypairData::Rsa(kp) => {
                        let hash = if alg == "rsa-sha2-512" {
                            HashAlg::Sha512
                        } else {
                            HashAlg::Sha256
                        };
                        (kp, Some(hash)).try_sign(&signed)
                    }
                    _ => key.try_sign(&signed),
                }
                .map_err(|e| SshError::Sign(e.to_string()))?;
                let mut enc = Vec::new();
                russh::keys::ssh_encoding::Encode::encode(&sig, &mut enc)
                    .map_err(|e| SshError::Sign(e.to_string()))?;
                put_string(&mut p, &enc);
            }
        }
        self.send(p)
    }

    /// Sends queued channel data as far as the server's window and packet size go.
    fn pump(&mut self) -> Result<(), SshError> {
        if self.phase != Phase::Open || self.kex.is_some() {
            return Ok(());
        }
        while !self.pending.is_empty() && self.remote_window > 0 {
            let n = self
                .pending
                .len()
                .min(self.remote_window as usize)
                .min(self.remote_max as usize)
                .min(SEND_CHUNK);
            let mut p = Vec::with_capacity(n + 9);
            p.push(MSG_CHANNEL_DATA);
            put_u32(&mut p, self.remote_id);
            put_string(&mut p, &self.pending[..n]);
            self.remote_window -= n as u32;
            self.pending.drain(..n);
            self.send(p)?;
        }
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
        Ok(())
    }
}
