//! A small HTTP/1.1 `GET` client for `http://` devices: one keep-alive connection per
//! device, held between requests as nothing but the socket.
//!
//! Why not the fleet's `reqwest` client for these: a pooled hyper connection keeps a
//! dispatch task, a channel and its read and write buffers alive while idle, about
//! 27 KiB per device (35 KiB per device measured at 10,000 with `drover bench`). The
//! fleet either paid that (370 MiB at 10,000 devices) or closed connections after
//! every health check and paid a TCP handshake per device on the next fan-out (a
//! cold `test.ping` to 10,000 devices took 1.2-1.7 s instead of 0.5 s). Here an
//! idle device holds a `TcpStream` only; buffers live for one request. `https://`
//! devices still go through `reqwest` (TLS, private CAs).
//!
//! Scope: what a device API needs from a client. `GET` with a `Host` header; replies
//! framed by `Content-Length`, chunked encoding or connection close; `1xx` interim
//! replies skipped. Everything the device sends is untrusted: the head and the body
//! are capped, and anything malformed is an error, never a panic.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{DriverError, MAX_DEVICE_BODY};

/// A reply head larger than this is refused (device APIs send a few hundred bytes).
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
/// An idle connection older than this is closed rather than reused: the device has
/// likely dropped it, and a fresh handshake beats a failed write and a retry.
const IDLE_REUSE: Duration = Duration::from_secs(60);
const READ_CHUNK: usize = 4 * 1024;

/// Where to connect: an address, or a name resolved at each connect (so a device
/// that moves is followed).
#[derive(Debug, Clone)]
enum Target {
    Addr(SocketAddr),
    Name(String, u16),
}

/// One device's HTTP endpoint and its idle connection, shared by the device's job and
/// background drivers (they never run at once: the device actor runs one operation
/// at a time, and a second caller simply opens a second connection).
#[derive(Debug)]
pub struct Http1Endpoint {
    target: Target,
    /// `Host:` header value (with the port when it is not 80).
    host: Box<str>,
    idle: Mutex<Option<(TcpStream, Instant)>>,
}

/// A reply: status and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why one exchange failed, and whether it may be retried on a new connection.
enum Failure {
    /// The reused connection turned out to be closed before any reply byte: the
    /// request never reached the device's application, so a retry is safe.
    Stale,
    Error(DriverError),
}

impl From<DriverError> for Failure {
    fn from(e: DriverError) -> Self {
        Failure::Error(e)
    }
}

impl Http1Endpoint {
    /// For an `http://` URL; `None` for any other scheme.
    pub fn new(url: &url::Url) -> Option<Http1Endpoint> {
        if url.scheme() != "http" {
            return None;
        }
        let port = url.port_or_known_default()?;
        let (target, name) = match url.host()? {
            url::Host::Ipv4(ip) => (Target::Addr(SocketAddr::from((ip, port))), ip.to_string()),
            url::Host::Ipv6(ip) => (
                Target::Addr(SocketAddr::from((ip, port))),
                format!("[{ip}]"),
            ),
            url::Host::Domain(d) => (Target::Name(d.to_string(), port), d.to_string()),
        };
        let host = if port == 80 {
            name
        } else {
            format!("{name}:{port}")
        };
        Some(Http1Endpoint {
            target,
            host: host.into(),
            idle: Mutex::new(None),
        })
    }

    /// `GET path` (path and query, already encoded), reusing the idle connection when
    /// there is one. The caller bounds the time.
    pub async fn get(&self, path: &str) -> Result<Reply, DriverError> {
        let request = self.request(path);
        if let Some(stream) = self.take_idle() {
            match exchange(stream, &request).await {
                Ok((reply, keep)) => {
                    self.put_idle(keep);
                    return Ok(reply);
                }
                Err(Failure::Stale) => {}
                Err(Failure::Error(e)) => return Err(e),
            }
        }
        let stream = self.connect().await?;
        match exchange(stream, &request).await {
            Ok((reply, keep)) => {
                self.put_idle(keep);
                Ok(reply)
            }
            Err(Failure::Stale) => Err(DriverError::Closed(
                "connection closed by the device before it answered",
            )),
            Err(Failure::Error(e)) => Err(e),
        }
    }

    /// Closes the idle connection, if any (a device being stopped).
    pub fn close_idle(&self) {
        drop(self.lock().take());
    }

    fn request(&self, path: &str) -> Vec<u8> {
        let mut r = Vec::with_capacity(96 + path.len() + self.host.len());
        r.extend_from_slice(b"GET ");
        r.extend_from_slice(path.as_bytes());
        r.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        r.extend_from_slice(self.host.as_bytes());
        r.extend_from_slice(
            concat!(
                "\r\nUser-Agent: drover/",
                env!("CARGO_PKG_VERSION"),
                "\r\nAccept: application/json\r\n\r\n"
            )
            .as_bytes(),
        );
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(TcpStream, Instant)>> {
        // The slot holds no invariant a panic could break.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take_idle(&self) -> Option<TcpStream> {
        let (stream, since) = self.lock().take()?;
        if since.elapsed() > IDLE_REUSE {
            return None;
        }
        // A device that closed the connection while it idled has made it readable
        // (EOF); finding that now saves a write into a dead socket.
        let mut probe = [0u8; 1];
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(stream),
            // EOF, an error, or bytes nobody asked for: not reusable.
            _ => None,
        }
    }

    fn put_idle(&self, keep: Option<TcpStream>) {
        if let Some(stream) = keep {
            *self.lock() = Some((stream, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<TcpStream, DriverError> {
        let stream = match &self.target {
            Target::Addr(a) => TcpStream::connect(a).await,
            Target::Name(n, p) => TcpStream::connect((n.as_str(), *p)).await,
        }
        .map_err(DriverError::Connect)?;
        // Requests are one small write; waiting for Nagle only adds latency.
        stream.set_nodelay(true).map_err(DriverError::Connect)?;
        Ok(stream)
    }
}

/// Sends one request and reads its reply. Returns the stream back when the
/// connection may carry another request. Generic so the fuzz harness can drive it
/// over an in-memory stream.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<(Reply, Option<S>), Failure> {
    if stream.write_all(request).await.is_err() {
        return Err(Failure::Stale);
    }
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let head = loop {
        match parse_head(&buf)? {
            Some(h) if (100..200).contains(&h.status) => {
                // An interim reply (100 Continue, 103 Early Hints): the real one follows.
                buf.drain(..h.len);
                continue;
            }
            Some(h) => break h,
            None => {}
        }
        if buf.len() > MAX_HEAD {
            return Err(DriverError::Decode("reply head over 64 KiB".into()).into());
        }
        match read_more(&mut stream, &mut buf).await {
            Ok(0) if buf.is_empty() => return Err(Failure::Stale),
            Ok(0) => {
                return Err(
                    DriverError::Decode("connection closed in the reply head".into()).into(),
                )
            }
            Ok(_) => {}
            // Reset before any reply byte on a reused connection is the same stale case.
            Err(e) if buf.is_empty() && is_reset(&e) => return Err(Failure::Stale),
            Err(e) => return Err(DriverError::Connect(e).into()),
        }
    };
    buf.drain(..head.len);
    let (body, reusable) = match head.framing {
        Framing::Empty => (Vec::new(), buf.is_empty()),
        Framing::Length(n) => {
            if n > MAX_DEVICE_BODY as u64 {
                crate::telemetry::Limit::DeviceReply.hit();
                return Err(DriverError::TooLarge.into());
            }
            let n = n as usize;
            buf.reserve(n.saturating_sub(buf.len()));
            while buf.len() < n {
                if read_more(&mut stream, &mut buf).await.map_err(io_err)? == 0 {
                    return Err(DriverError::Decode(format!(
                        "connection closed after {} of {n} body bytes",
                        buf.len()
                    ))
                    .into());
                }
            }
            // Bytes past the body are a reply nobody asked for: do not reuse.
            let extra = buf.len() > n;
            buf.truncate(n);
            (buf, !extra)
        }
        Framing::Chunked => {
            let mut dec = Chunked::default();
            loop {
                if let Some(extra) = dec.feed(&buf)? {
                    break (dec.body, !extra);
                }
                buf.drain(..dec.consumed);
                dec.consumed = 0;
                if read_more(&mut stream, &mut buf).await.map_err(io_err)? == 0 {
                    return Err(
                        DriverError::Decode("connection closed in a chunked body".into()).into(),
                    );
                }
            }
        }
        Framing::UntilClose => {
            while read_more(&mut stream, &mut buf).await.map_err(io_err)? > 0 {
                if buf.len() > MAX_DEVICE_BODY {
                    crate::telemetry::Limit::DeviceReply.hit();
                    return Err(DriverError::TooLarge.into());
                }
            }
            (buf, false)
        }
    };
    let keep = (head.keep_alive && reusable).then_some(stream);
    Ok((
        Reply {
            status: head.status,
            body,
        },
        keep,
    ))
}

async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    stream.read_buf(buf).await
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted
    )
}

fn io_err(e: std::io::Error) -> Failure {
    Failure::Error(DriverError::Connect(e))
}

/// Fuzz entry: one reply read from `stream` as a device would send it. Returns the
/// reply and whether the connection would be kept. Not part of the supported API.
#[doc(hidden)]
pub async fn exchange_for_fuzzing<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
) -> Result<(Reply, bool), DriverError> {
    match exchange(stream, b"GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n").await {
        Ok((reply, keep)) => Ok((reply, keep.is_some())),
        Err(Failure::Stale) => Err(DriverError::Closed("closed before any answer")),
        Err(Failure::Error(e)) => Err(e),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
struct Head {
    len: usize,
    status: u16,
    framing: Framing,
    keep_alive: bool,
}

/// Parses a reply head from the start of `buf`; `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, DriverError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(DriverError::Decode(format!("not an HTTP reply: {e}"))),
    };
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| DriverError::Decode("invalid Content-Length".into()))?;
            // Differing lengths are a request-smuggling shape: refuse, do not guess.
            if length.is_some_and(|l| l != v) {
                return Err(DriverError::Decode("conflicting Content-Length".into()));
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value);
            let last = v.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(DriverError::Decode(format!(
                    "unsupported Transfer-Encoding {v:?}"
                )));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in String::from_utf8_lossy(h.value).split(',') {
                let t = token.trim();
                close |= t.eq_ignore_ascii_case("close");
                keep_alive_token |= t.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        // RFC 9112 §6.3: chunked wins over Content-Length; such a message must not
        // share its connection afterwards.
        if length.is_some() {
            close = true;
        }
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let keep_alive = !close && (!http10 || keep_alive_token);
    Ok(Some(Head {
        len,
        status,
        framing,
        keep_alive,
    }))
}

/// Incremental chunked-body decoder: `feed` the unread bytes each time more arrive.
#[derive(Default)]
struct Chunked {
    body: Vec<u8>,
    /// Bytes of the fed buffer fully decoded (the caller drops them).
    consumed: usize,
    state: ChunkState,
}

#[derive(Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to the empty line.
    Trailers,
}

impl Chunked {
    /// Decodes as far as `buf` allows. `Some(extra)` once the body is complete,
    /// `extra` saying whether bytes followed it.
    fn feed(&mut self, buf: &[u8]) -> Result<Option<bool>, DriverError> {
        let bad = |what: &str| DriverError::Decode(format!("malformed chunked body: {what}"));
        loop {
            let rest = &buf[self.consumed..];
            match self.state {
                ChunkState::Size => {
                    let Some(eol) = find_crlf(rest) else {
                        if rest.len() > 1024 {
                            return Err(bad("chunk size line too long"));
                        }
                        return Ok(None);
                    };
                    let line = std::str::from_utf8(&rest[..eol]).map_err(|_| bad("size line"))?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16).map_err(|_| bad("chunk size"))?;
                    self.consumed += eol + 2;
                    if size == 0 {
                        self.state = ChunkState::Trailers;
                    } else {
                        if self.body.len().saturating_add(size) > MAX_DEVICE_BODY {
                            crate::telemetry::Limit::DeviceReply.hit();
                            return Err(DriverError::TooLarge);
                        }
                        self.state = ChunkState::Data(size);
                    }
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    let take = left.min(rest.len());
                    self.body.extend_from_slice(&rest[..take]);
                    self.consumed += take;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(None);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(bad("no CRLF after chunk data"));
                    }
                    self.consumed += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(eol) = find_crlf(rest) else {
                        if rest.len() > MAX_HEAD {
                            return Err(bad("trailers too long"));
                        }
                        return Ok(None);
                    };
                    self.consumed += eol + 2;
                    if eol == 0 {
                        return Ok(Some(self.consumed < buf.len()));
                    }
                }
            }
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::TcpListener;

    /// A device that answers each connection's requests with the scripted replies in
    /// turn (one per request head it reads), then closes; counts connections.
    async fn scripted(replies: Vec<&'static [u8]>) -> (url::Url, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let replies = replies.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for reply in replies {
                        while find_head_end(&buf).is_none() {
                            let mut chunk = [0u8; 512];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = find_head_end(&buf).unwrap();
                        buf.drain(..end);
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/").parse().unwrap(), accepted)
    }

    fn find_head_end(b: &[u8]) -> Option<usize> {
        b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"ret\": true}";

    #[tokio::test]
    async fn keep_alive_reuses_one_connection() {
        let (url, accepted) = scripted(vec![OK, OK, OK]).await;
        let ep = Http1Endpoint::new(&url).unwrap();
        for _ in 0..3 {
            let r = ep.get("/ping").await.unwrap();
            assert_eq!(
                (r.status, r.body.as_slice()),
                (200, &b"{\"ret\": true}"[..])
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_device_dropped_is_replaced() {
        // One reply per connection, then the device closes it.
        let (url, accepted) = scripted(vec![OK]).await;
        let ep = Http1Endpoint::new(&url).unwrap();
        for _ in 0..3 {
            assert_eq!(ep.get("/ping").await.unwrap().status, 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connection_close_and_http10_are_not_reused() {
        let (url, accepted) = scripted(vec![
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
            OK,
        ])
        .await;
        let ep = Http1Endpoint::new(&url).unwrap();
        ep.get("/").await.unwrap();
        ep.get("/").await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let (url, accepted) =
            scripted(vec![b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", OK]).await;
        let ep = Http1Endpoint::new(&url).unwrap();
        ep.get("/").await.unwrap();
        ep.get("/").await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn chunked_and_close_delimited_bodies_are_read_whole() {
        let (url, _) = scripted(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n5\r\n: 12}\r\n0\r\nX-Trailer: y\r\n\r\n",
        ])
        .await;
        let ep = Http1Endpoint::new(&url).unwrap();
        assert_eq!(ep.get("/").await.unwrap().body, b"{\"a\": 12}");
        let (url, _) = scripted(vec![b"HTTP/1.1 200 OK\r\n\r\n{\"until\": \"close\"}"]).await;
        let ep = Http1Endpoint::new(&url).unwrap();
        assert_eq!(ep.get("/").await.unwrap().body, b"{\"until\": \"close\"}");
        // 204 has no body even without a length.
        let (url, _) = scripted(vec![b"HTTP/1.1 204 No Content\r\n\r\n"]).await;
        let ep = Http1Endpoint::new(&url).unwrap();
        let r = ep.get("/").await.unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
    }

    #[tokio::test]
    async fn hostile_replies_are_errors() {
        let cases: Vec<(&'static [u8], &str)> = vec![
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP reply"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"short\"",
                "connection closed after",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                "limit",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
                "conflicting",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "Transfer-Encoding",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX",
                "CRLF",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}",
                "closed in a chunked",
            ),
            (b"HTTP/1.1 200 OK\r\nContent-", "closed in the reply head"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFF\r\n",
                "limit",
            ),
        ];
        for (reply, want) in cases {
            let (url, _) = scripted(vec![reply]).await;
            let ep = Http1Endpoint::new(&url).unwrap();
            let err = ep.get("/").await.unwrap_err().to_string();
            assert!(err.contains(want), "{reply:?}: {err}");
        }
    }

    #[tokio::test]
    async fn an_endless_head_is_cut_off() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            while s.write_all(line).await.is_ok() {}
        });
        let ep = Http1Endpoint::new(&format!("http://{addr}/").parse().unwrap()).unwrap();
        let err = ep.get("/").await.unwrap_err().to_string();
        assert!(
            err.contains("64 KiB") || err.contains("not an HTTP reply"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn refused_and_reset_are_connection_errors() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let ep = Http1Endpoint::new(&format!("http://{addr}/").parse().unwrap()).unwrap();
        assert!(matches!(ep.get("/").await, Err(DriverError::Connect(_))));
        // Accepts, reads, closes without a word: no reply is a connection failure.
        let (url, _) = scripted(vec![]).await;
        let ep = Http1Endpoint::new(&url).unwrap();
        let err = ep.get("/").await.unwrap_err();
        assert_eq!(err.kind(), "connect", "{err}");
    }

    #[test]
    fn host_header_and_schemes() {
        let ep = Http1Endpoint::new(&"http://[::1]:8080/api".parse().unwrap()).unwrap();
        assert_eq!(&*ep.host, "[::1]:8080");
        let ep = Http1Endpoint::new(&"http://dev.example:80/".parse().unwrap()).unwrap();
        assert_eq!(&*ep.host, "dev.example");
        assert!(Http1Endpoint::new(&"https://dev.example/".parse().unwrap()).is_none());
    }

    #[test]
    fn chunked_decoder_takes_any_split() {
        let wire = b"3\r\nabc\r\n1;x\r\nd\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut dec = Chunked::default();
            let mut buf = wire[..split].to_vec();
            let done = dec.feed(&buf).unwrap();
            if done.is_none() {
                buf.drain(..dec.consumed);
                dec.consumed = 0;
                buf.extend_from_slice(&wire[split..]);
                assert_eq!(dec.feed(&buf).unwrap(), Some(false), "split {split}");
            }
            assert_eq!(dec.body, b"abcd", "split {split}");
        }
    }
}
