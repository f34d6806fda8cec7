//! Minimal HTTP/1.1 request-head parser and response encoder for the device
//! simulators.
//!
//! Only what a `rest_sample` client sends is supported: a request line, header
//! fields, and an optional `Content-Length` body that is read and thrown away.
//! Everything here is pure (no I/O) so it can be fuzzed cheaply; the socket
//! handling lives in `rest.rs`.
//!
//! Every function must tolerate arbitrary bytes from the network: malformed
//! input becomes a [`HeadError`] carrying the status to answer with, never a
//! panic.

/// Largest request head accepted. Real clients send a few hundred bytes; the
/// cap stops a misbehaving client from growing a connection's buffer forever.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// Largest request body accepted (and discarded). `rest_sample` only issues
/// GETs, so anything big is a client bug, not something to buffer.
pub(super) const MAX_BODY: u64 = 1024 * 1024;

/// Request method, reduced to what routing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Head,
    Other,
}

/// The parts of a request head the simulator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RequestHead {
    pub method: Method,
    pub target: String,
    /// HTTP/1.0 request: the reply must say `Connection: keep-alive` when the
    /// connection stays open, because 1.0 clients assume close otherwise.
    pub http10: bool,
    pub keep_alive: bool,
    pub content_length: u64,
}

/// Why a request head was rejected, and which status to answer with before
/// closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HeadError {
    pub status: u16,
    pub message: &'static str,
}

fn bad(message: &'static str) -> HeadError {
    HeadError {
        status: 400,
        message,
    }
}

/// Returns the length of the request head (terminating blank line included)
/// if `buf` holds a complete one. Searching starts at `from` so a slowly
/// arriving head is not rescanned from the beginning on every read.
///
/// A bare `\n\n` terminator is accepted as well as `\r\n\r\n`, as RFC 9112
/// §2.2 recommends for robustness.
pub(super) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\n'), _) => return Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// `tchar` from RFC 9110 §5.6.2: what a method or header name may contain.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a complete request head as found by [`find_head_end`].
pub(super) fn parse_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));

    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ').filter(|p| !p.is_empty());
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(bad("malformed request line")),
    };
    if !is_token(method) {
        return Err(bad("malformed method"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => {
            return Err(HeadError {
                status: 505,
                message: "HTTP version not supported",
            })
        }
        _ => return Err(bad("malformed HTTP version")),
    };
    let origin_form = target.starts_with('/');
    let absolute_form = target.starts_with("http://") || target.starts_with("https://");
    if !(origin_form || absolute_form) || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(bad("malformed request target"));
    }

    let mut content_length: Option<u64> = None;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    for line in lines {
        if line.is_empty() {
            // Only the terminating blank line(s) can be empty here.
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Obsolete line folding: RFC 9112 §5.2 lets a server reject it.
            return Err(bad("obsolete header line folding"));
        }
        let (name, value) = line.split_once(':').ok_or(bad("header without colon"))?;
        if !is_token(name) {
            return Err(bad("malformed header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("malformed Content-Length"));
            }
            let n: u64 = value.parse().map_err(|_| bad("malformed Content-Length"))?;
            // Differing duplicates are a request-smuggling signal (RFC 9112 §6.3).
            if content_length.is_some_and(|prev| prev != n) {
                return Err(bad("conflicting Content-Length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // No rest_sample client sends chunked requests; refusing is allowed
            // (RFC 9112 §6.1) and keeps this parser small.
            return Err(HeadError {
                status: 501,
                message: "Transfer-Encoding is not supported",
            });
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    conn_close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    conn_keep_alive = true;
                }
            }
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(HeadError {
            status: 413,
            message: "request body too large",
        });
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok(RequestHead {
        method,
        target: target.to_owned(),
        http10,
        keep_alive: if http10 {
            conn_keep_alive && !conn_close
        } else {
            !conn_close
        },
        content_length,
    })
}

/// Splits a request target into percent-decoded path segments. Empty segments
/// are dropped, which is what makes `//ping` (a device URL with a trailing
/// slash plus a path with a leading one) route like `/ping`.
pub(super) fn path_segments(target: &str) -> Vec<String> {
    let path = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        // Absolute form: drop the authority.
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes; malformed escapes are kept literally and invalid
/// UTF-8 is replaced, because a name that cannot match anything simply routes
/// to "not present".
fn percent_decode(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_owned();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex_val(h).zip(hex_val(l)).map(|(h, l)| (h << 4) | l),
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What to put in the `Connection` header of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnHeader {
    /// HTTP/1.1 keep-alive is the default: say nothing.
    Omit,
    KeepAlive,
    Close,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Encodes a complete response (head and body) into one buffer so it goes out
/// in a single write. `head_only` is for HEAD requests: the length of the body
/// that a GET would get is still announced, as RFC 9110 §9.3.2 asks.
pub(super) fn encode_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    conn: ConnHeader,
) -> Vec<u8> {
    let conn_line = match conn {
        ConnHeader::Omit => "",
        ConnHeader::KeepAlive => "Connection: keep-alive\r\n",
        ConnHeader::Close => "Connection: close\r\n",
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nServer: drover-devsim\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{conn_line}\r\n",
        reason(status),
        body.len(),
    );
    let mut out = Vec::with_capacity(head.len() + if head_only { 0 } else { body.len() });
    out.extend_from_slice(head.as_bytes());
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn parse(s: &str) -> Result<RequestHead, HeadError> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn head_end_is_found_for_both_terminators() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nrest", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r", 0), None);
        // Resuming a scan two bytes before the end still finds a terminator
        // that straddles two reads.
        let full = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(find_head_end(full, full.len() - 4), Some(full.len()));
    }

    #[test]
    fn parses_a_normal_request() {
        let r = parse("GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/ping");
        assert!(r.keep_alive);
        assert!(!r.http10);
        assert_eq!(r.content_length, 3);
    }

    #[test]
    fn connection_semantics_follow_the_version() {
        assert!(
            !parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        let r = parse("HEAD / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(r.keep_alive && r.http10);
        assert_eq!(r.method, Method::Head);
    }

    #[test]
    fn rejects_malformed_heads_with_the_right_status() {
        let status = |s: &str| parse(s).map(|_| 0).unwrap_or_else(|e| e.status);
        assert_eq!(status("GET /\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status("GET / FOO\r\n\r\n"), 400);
        assert_eq!(status("GET ping HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("G(T / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n"),
            413
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            parse_head(b"GET /\xff HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // A cheap deterministic fuzz: random bytes, and random mutations of a
        // valid head, through every pure entry point.
        let mut rng = StdRng::seed_from_u64(7);
        let valid =
            b"GET /service/start/apache?x=%41 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
        for round in 0..20_000 {
            let mut buf: Vec<u8> = if round % 2 == 0 {
                let len = rng.random_range(0..200);
                let mut b = vec![0u8; len];
                rng.fill(b.as_mut_slice());
                b
            } else {
                valid.to_vec()
            };
            for _ in 0..rng.random_range(0..6) {
                if buf.is_empty() {
                    break;
                }
                let at = rng.random_range(0..buf.len());
                buf[at] = rng.random();
            }
            let _ = find_head_end(&buf, rng.random_range(0..buf.len() + 2));
            if let Ok(head) = parse_head(&buf) {
                let _ = path_segments(&head.target);
            }
            let _ = path_segments(&String::from_utf8_lossy(&buf));
        }
    }

    #[test]
    fn path_segments_tolerate_doubled_slashes_and_queries() {
        assert_eq!(path_segments("//ping"), vec!["ping"]);
        assert_eq!(
            path_segments("/service//start/apache/?a=b#frag"),
            vec!["service", "start", "apache"]
        );
        assert_eq!(path_segments("http://h:1//id"), vec!["id"]);
        assert_eq!(path_segments("http://h:1"), Vec::<String>::new());
        assert_eq!(
            path_segments("/package/status/a%20b"),
            vec!["package", "status", "a b"]
        );
        assert_eq!(path_segments("/x%2"), vec!["x%2"]);
        assert_eq!(path_segments("/x%zz%"), vec!["x%zz%"]);
    }

    #[test]
    fn encodes_heads_and_bodies() {
        let r = encode_response(200, "application/json", b"{}", false, ConnHeader::Close);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
        let h = encode_response(404, "application/json", b"{}", true, ConnHeader::Omit);
        let text = String::from_utf8(h).unwrap();
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(!text.contains("Connection"));
    }
}
