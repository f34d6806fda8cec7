//! Request channel to the master's ret port: requests are pipelined over a few DEALER
//! sockets and replies (which may come back out of order) are matched to their request
//! by nonce: the signed nonce of clear `_auth` replies, a trial HMAC with each pending
//! request's session key for AES replies, and the signed inner nonce of `send_private`
//! (`_pillar`) replies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmpv::Value;
use rsa::PublicKey;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::crypto::{self, Crypticle};
use super::envelope::{as_bytes, as_text, get, unpack};
use super::events;
use super::keys::MinionKey;
use super::SaltError;

/// How a pending request's reply is recognised and opened.
pub enum Expect {
    /// Clear (`_auth`) reply whose signed load echoes the nonce.
    Clear,
    /// AES reply under this id's session key, prefixed by the nonce.
    Aes(Crypticle),
    /// `send_private` reply, opened with this minion key.
    Private(Arc<MinionKey>),
}

/// A matched reply.
#[derive(Debug)]
pub enum Reply {
    /// The whole clear envelope.
    Clear(Value),
    /// The decrypted AES payload.
    Aes(Value),
    /// The private payload (`pillar`) after signature/nonce checks.
    Private(Value),
    /// An unencrypted error answer (`"bad load"` and friends).
    Error(String),
}

struct Entry {
    expect: Expect,
    tx: oneshot::Sender<Reply>,
    /// Send order: the master answers roughly in the order it was asked.
    seq: u64,
}

/// Orders pending requests across the channel's sockets.
static SEQ: AtomicU64 = AtomicU64::new(0);

type Pending = Arc<Mutex<HashMap<String, Entry>>>;

/// Per socket: the outbound receiver and inbound sender handed to the transport.
pub type SocketEnds = (mpsc::Receiver<Vec<u8>>, mpsc::Sender<Vec<u8>>);

struct Socket {
    tx: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    permits: Arc<Semaphore>,
}

/// The multiplexed request channel.
pub struct ReqChannel {
    sockets: Vec<Socket>,
    next: AtomicUsize,
    timeout: Duration,
}

/// Requests in flight per socket (bounds trial-HMAC work per reply).
const IN_FLIGHT: usize = 256;

impl ReqChannel {
    /// Wires `n` socket channel pairs. Returns the channel plus, per socket, the outbound
    /// receiver and inbound sender to hand to the transport, and spawns the reply readers.
    pub fn new(
        n: usize,
        timeout: Duration,
        master_pub: Arc<std::sync::RwLock<Option<(PublicKey, String)>>>,
    ) -> (Self, Vec<SocketEnds>, Vec<tokio::task::JoinHandle<()>>) {
        let mut sockets = Vec::new();
        let mut ends = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n.max(1) {
            let (out_tx, out_rx) = mpsc::channel(4096);
            let (in_tx, in_rx) = mpsc::channel(4096);
            let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
            tasks.push(tokio::spawn(reader(
                in_rx,
                pending.clone(),
                master_pub.clone(),
            )));
            sockets.push(Socket {
                tx: out_tx,
                pending,
                permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            });
            ends.push((out_rx, in_tx));
        }
        (
            Self {
                sockets,
                next: AtomicUsize::new(0),
                timeout,
            },
            ends,
            tasks,
        )
    }

    /// Sends `body` and waits (bounded by the channel's timeout) for the reply
    /// matched by `nonce`.
    pub async fn request(
        &self,
        body: Vec<u8>,
        nonce: &str,
        expect: Expect,
        kind: &'static str,
    ) -> Result<Reply, SaltError> {
        self.request_within(body, nonce, expect, kind, self.timeout)
            .await
    }

    /// [`Self::request`] with its own bound (authentication retries sooner).
    pub async fn request_within(
        &self,
        body: Vec<u8>,
        nonce: &str,
        expect: Expect,
        kind: &'static str,
        timeout: Duration,
    ) -> Result<Reply, SaltError> {
        let idx = self.next.fetch_add(1, Ordering::Relaxed) % self.sockets.len();
        let sock = &self.sockets[idx];
        let _permit = sock
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SaltError::Closed)?;
        let (tx, rx) = oneshot::channel();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        lock(&sock.pending).insert(nonce.to_owned(), Entry { expect, tx, seq });
        events::sent(kind);
        if sock.tx.send(body).await.is_err() {
            lock(&sock.pending).remove(nonce);
            return Err(SaltError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(SaltError::Closed),
            Err(_) => {
                lock(&sock.pending).remove(nonce);
                Err(SaltError::Timeout)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn reject(reason: &'static str) {
    events::Rejected { reason }.emit();
}

async fn reader(
    mut rx: mpsc::Receiver<Vec<u8>>,
    pending: Pending,
    master_pub: Arc<std::sync::RwLock<Option<(PublicKey, String)>>>,
) {
    while let Some(body) = rx.recv().await {
        let Ok(v) = unpack(&body) else {
            reject("garbage");
            continue;
        };
        let matched = match &v {
            Value::Map(_) if get(&v, "enc").and_then(as_text) == Some("clear") => {
                match_clear(&pending, v.clone())
            }
            Value::Map(_) if get(&v, "key").is_some() && get(&v, "pillar").is_some() => {
                let pending = pending.clone();
                let mp = lock_read(&master_pub);
                let v2 = v.clone();
                tokio::task::spawn_blocking(move || match_private(&pending, &v2, mp.as_ref()))
                    .await
                    .unwrap_or(false)
            }
            Value::String(_) | Value::Binary(_) => match_aes(&pending, &body, &v),
            _ => false,
        };
        if !matched {
            // Plain error answers ("bad load") are bare strings with no nonce: hand one
            // over when its owner is unambiguous. An unmatched map is a late or foreign
            // reply (a pillar answer whose request gave up), never another request's error.
            let text = match &v {
                Value::String(s) => s.as_str().map(str::to_owned),
                _ => None,
            };
            let mut p = lock(&pending);
            if let (Some(text), 1) = (text, p.len()) {
                if let Some(key) = p.keys().next().cloned() {
                    if let Some(e) = p.remove(&key) {
                        events::received("error");
                        let _ = e.tx.send(Reply::Error(text));
                        continue;
                    }
                }
            }
            drop(p);
            tracing::debug!("Uncorrelated reply from the master dropped.");
            reject("uncorrelated");
        }
    }
}

fn lock_read(m: &std::sync::RwLock<Option<(PublicKey, String)>>) -> Option<PublicKey> {
    m.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map(|(k, _)| k.clone())
}

fn match_clear(pending: &Pending, env: Value) -> bool {
    let nonce = match get(&env, "load") {
        Some(Value::Map(_)) => None,
        Some(l) => as_bytes(l)
            .and_then(|b| unpack(b).ok())
            .and_then(|inner| get(&inner, "nonce").and_then(as_text).map(str::to_owned)),
        None => None,
    };
    let mut p = lock(pending);
    let key = match nonce {
        Some(n) => Some(n),
        // Unsigned clear errors ("bad enc algo"): only an unambiguous single `_auth`.
        None => {
            let clear: Vec<&String> = p
                .iter()
                .filter(|(_, e)| matches!(e.expect, Expect::Clear))
                .map(|(k, _)| k)
                .collect();
            (clear.len() == 1).then(|| clear[0].clone())
        }
    };
    let Some(key) = key else { return false };
    match p.remove(&key) {
        Some(e) if matches!(e.expect, Expect::Clear) => {
            events::received("auth_reply");
            let _ = e.tx.send(Reply::Clear(env));
            true
        }
        Some(e) => {
            p.insert(key, e);
            false
        }
        None => false,
    }
}

/// An AES reply is `pickle::` + the request's nonce + the payload, under the session
/// key of the id that asked; every id has its own, so the reply's HMAC is tried with
/// each pending request's key until one verifies, and the nonce inside must then be
/// that request's. The master answers roughly in the order it was asked (a few
/// workers take requests first come, first served), so the oldest requests are tried
/// first: a reply costs a few HMACs instead of one per request in flight (with 500 ids
/// returning at once, trying them in hash order cost about 0.2 ms of CPU per reply).
fn match_aes(pending: &Pending, _body: &[u8], v: &Value) -> bool {
    let Some(data) = as_bytes(v) else {
        return false;
    };
    let mut p = lock(pending);
    let mut candidates: Vec<(u64, &String, &Crypticle)> = p
        .iter()
        .filter_map(|(nonce, e)| match &e.expect {
            Expect::Aes(c) => Some((e.seq, nonce, c)),
            _ => None,
        })
        .collect();
    candidates.sort_unstable_by_key(|(seq, _, _)| *seq);
    let mut hit = None;
    let mut tried: Vec<&Crypticle> = Vec::new();
    for (_, nonce, key) in candidates {
        // Requests of one id share its key: a key that failed fails again.
        if tried.iter().any(|k| std::ptr::eq(*k, key) || *k == key) {
            continue;
        }
        if !key.hmac_matches(data) {
            tried.push(key);
            continue;
        }
        let Ok(plain) = key.loads(data, None) else {
            break;
        };
        match split_nonce(&plain) {
            Some((n, payload)) if n == nonce.as_str() => {
                hit = Some((nonce.clone(), payload.to_vec()));
            }
            // The id's key, another of its requests: that one's nonce is inside.
            Some((n, payload)) => {
                let owner = p
                    .get(n)
                    .is_some_and(|e| matches!(&e.expect, Expect::Aes(c) if c == key));
                if owner {
                    hit = Some((n.to_owned(), payload.to_vec()));
                }
            }
            None => {}
        }
        break;
    }
    let Some((nonce, payload)) = hit else {
        return false;
    };
    let Some(e) = p.remove(&nonce) else {
        return false;
    };
    drop(p);
    match unpack(&payload) {
        Ok(val) => {
            events::received("aes_reply");
            let _ = e.tx.send(Reply::Aes(val));
        }
        Err(_) => {
            reject("garbage");
            let _ = e.tx.send(Reply::Error("undecodable reply".into()));
        }
    }
    true
}

/// The nonce (as [`crypto::new_nonce`] makes them: 32 hex characters) at the start of
/// a decrypted reply, and what follows it.
fn split_nonce(plain: &[u8]) -> Option<(&str, &[u8])> {
    let head = plain.get(..crypto::NONCE_LEN)?;
    let nonce = std::str::from_utf8(head).ok()?;
    Some((nonce, plain.get(crypto::NONCE_LEN..)?))
}

/// Opens a `send_private` reply: decrypt the one-time key, the signed data, check the
/// signature, then find the pending request by the inner nonce.
fn match_private(pending: &Pending, v: &Value, master: Option<&PublicKey>) -> bool {
    let (Some(enc_key), Some(blob)) = (
        get(v, "key").and_then(as_bytes),
        get(v, "pillar").and_then(as_bytes),
    ) else {
        return false;
    };
    let keys: Vec<Arc<MinionKey>> = {
        let p = lock(pending);
        let mut ks: Vec<Arc<MinionKey>> = Vec::new();
        for e in p.values() {
            if let Expect::Private(k) = &e.expect {
                if !ks.iter().any(|x| Arc::ptr_eq(x, k)) {
                    ks.push(k.clone());
                }
            }
        }
        ks
    };
    for k in keys {
        let Ok(onetime) = crypto::oaep_decrypt(&k.private, "OAEP-SHA1", enc_key) else {
            continue;
        };
        let Ok(c) = Crypticle::from_key_string(&onetime) else {
            continue;
        };
        let Ok(signed) = c
            .loads(blob, None)
            .and_then(|b| unpack(&b).map_err(|_| crypto::CryptoError::NoMarker))
        else {
            continue;
        };
        let (Some(data), Some(sig)) = (
            get(&signed, "data").and_then(as_bytes),
            get(&signed, "sig").and_then(as_bytes),
        ) else {
            continue;
        };
        if let Some(mk) = master {
            if crypto::verify(mk, "PKCS1v15-SHA1", data, sig).is_err() {
                reject("bad_signature");
                return true;
            }
        }
        let Ok(inner) = unpack(data) else { continue };
        if get(&inner, "key").and_then(as_bytes) != Some(enc_key) {
            reject("malformed");
            return true;
        }
        let Some(nonce) = get(&inner, "nonce").and_then(as_text) else {
            continue;
        };
        let mut p = lock(pending);
        if let Some(e) = p.remove(nonce) {
            events::received("private_reply");
            let pillar = get(&inner, "pillar").cloned().unwrap_or(Value::Nil);
            let _ = e.tx.send(Reply::Private(pillar));
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request the master never answers gives up at its own bound (shorter than
    /// the channel's, as `_auth` does) and leaves nothing pending. Paused clock: the
    /// ten seconds pass at once.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_request_times_out_at_its_bound() {
        let master_pub = Arc::new(std::sync::RwLock::new(None));
        let (chan, mut ends, _readers) = ReqChannel::new(1, Duration::from_secs(60), master_pub);
        let (mut out_rx, _in_tx) = ends.remove(0);
        let t0 = tokio::time::Instant::now();
        let r = chan
            .request_within(
                b"body".to_vec(),
                "n1",
                Expect::Clear,
                "auth",
                Duration::from_secs(10),
            )
            .await;
        assert!(matches!(r, Err(SaltError::Timeout)), "{r:?}");
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        assert_eq!(out_rx.recv().await.as_deref(), Some(&b"body"[..]));
        assert!(lock(&chan.sockets[0].pending).is_empty());
        // Without its own bound, a request waits for the channel's.
        let t0 = tokio::time::Instant::now();
        let r = chan
            .request(b"body".to_vec(), "n2", Expect::Clear, "auth")
            .await;
        assert!(matches!(r, Err(SaltError::Timeout)), "{r:?}");
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
    }

    /// Replies come back in any order: each finds its request by the nonce inside,
    /// under the key that request used, and a reply naming a request of another key
    /// (or none) reaches nobody.
    #[tokio::test]
    async fn aes_replies_find_their_request_by_nonce_in_any_order() {
        let master_pub = Arc::new(std::sync::RwLock::new(None));
        let (chan, mut ends, _readers) = ReqChannel::new(1, Duration::from_secs(10), master_pub);
        let (mut out_rx, in_tx) = ends.remove(0);
        let chan = Arc::new(chan);
        let shared = Crypticle::from_key_string(crypto::generate_key_string().as_bytes()).unwrap();
        let other = Crypticle::from_key_string(crypto::generate_key_string().as_bytes()).unwrap();
        let mut waiting = Vec::new();
        let mut nonces = Vec::new();
        for i in 0..20 {
            let nonce = crypto::new_nonce();
            let key = if i == 7 {
                other.clone()
            } else {
                shared.clone()
            };
            let (chan, n) = (chan.clone(), nonce.clone());
            waiting.push(tokio::spawn(async move {
                chan.request(vec![], &n, Expect::Aes(key), "return").await
            }));
            assert!(out_rx.recv().await.is_some());
            nonces.push(nonce);
        }
        let reply = |key: &Crypticle, nonce: &str, i: i64| {
            let body = crate::master::salt::envelope::pack(&Value::from(i));
            crate::master::salt::envelope::pack(&Value::Binary(key.dumps(&body, Some(nonce))))
        };
        // Request 7's nonce under the shared key: not its key, so not its reply.
        in_tx.send(reply(&shared, &nonces[7], -1)).await.unwrap();
        in_tx
            .send(reply(&shared, &crypto::new_nonce(), -2))
            .await
            .unwrap();
        for i in (0..20).rev() {
            let key = if i == 7 { &other } else { &shared };
            in_tx.send(reply(key, &nonces[i], i as i64)).await.unwrap();
        }
        for (i, w) in waiting.into_iter().enumerate() {
            match w.await.unwrap() {
                Ok(Reply::Aes(v)) => assert_eq!(v.as_i64(), Some(i as i64)),
                other => panic!("request {i}: {other:?}"),
            }
        }
        assert!(lock(&chan.sockets[0].pending).is_empty());
    }
}
