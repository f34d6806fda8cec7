//! RFC 6242 message framing for NETCONF over SSH: end-of-message (`]]>]]>`, base:1.0)
//! and chunked (`\n#<len>\n<data>...\n##\n`, base:1.1), as an incremental decoder
//! over a byte buffer plus encoders. It holds no session state, so the driver and
//! the simulator share it.
//!
//! Hostile input costs an error, never unbounded memory: a message (and so the
//! bytes buffered while waiting for its end) is capped at [`Decoder::max_message`];
//! a chunk header is parsed strictly (`\n#`, a size without leading zeros of at
//! most 4294967295, `\n`) and anything else is an error at once. After an error the
//! stream is out of step and the session must be closed.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Default cap on one message: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The NETCONF 1.0 end-of-message marker.
pub const EOM: &[u8] = b"]]>]]>";

/// Largest chunk size RFC 6242 allows.
const MAX_CHUNK: u64 = 4_294_967_295;

/// `\n#` + 10 digits + `\n`: a header longer than this is malformed.
const MAX_HEADER: usize = 13;

/// Which framing a session uses: end-of-message until both hellos say base:1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// NETCONF 1.0: the message, then `]]>]]>`.
    EndOfMessage,
    /// NETCONF 1.1: chunks `\n#<len>\n<data>`, then `\n##\n`.
    Chunked,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("message larger than the {limit}-byte cap")]
    TooLarge { limit: usize },
    #[error("malformed chunk header: {0}")]
    BadChunkHeader(String),
    #[error("message contains the end-of-message marker ]]>]]>")]
    MarkerInMessage,
    #[error("connection closed in the middle of a message ({0} bytes unread)")]
    Truncated(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting `\n#<size>\n` or `\n##\n`.
    Header,
    /// Inside a chunk, this many data bytes still to come.
    Data(usize),
}

/// Incremental decoder: push bytes with [`Decoder::extend`], then take whole
/// messages with [`Decoder::next_message`] until it answers `None`.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    max: usize,
    /// Raw input not yet consumed; `buf[start..]` is live.
    buf: Vec<u8>,
    start: usize,
    /// End-of-message: where the marker search resumes (relative to `start`).
    scan: usize,
    /// Chunked: the message so far, and where we are in the chunk grammar.
    msg: Vec<u8>,
    state: ChunkState,
}

impl Decoder {
    pub fn new(framing: Framing, max_message: usize) -> Decoder {
        Decoder {
            framing,
            max: max_message.max(1),
            buf: Vec::new(),
            start: 0,
            scan: 0,
            msg: Vec::new(),
            state: ChunkState::Header,
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    pub fn max_message(&self) -> usize {
        self.max
    }

    /// Switch framing (after the hello exchange). Bytes already buffered are
    /// decoded with the new framing.
    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
        self.scan = 0;
        self.msg.clear();
        self.state = ChunkState::Header;
    }

    /// Bytes received and not yet returned as a message (raw and decoded).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start + self.msg.len()
    }

    /// Append received bytes; call [`Decoder::next_message`] until `None` after
    /// each append. As a backstop for a caller that does not, raw input beyond twice
    /// the cap is refused.
    pub fn extend(&mut self, data: &[u8]) -> Result<(), FramingError> {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let raw = self.buf.len() - self.start;
        if raw.saturating_add(data.len()) > self.max.saturating_mul(2).saturating_add(1024) {
            return Err(FramingError::TooLarge { limit: self.max });
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next whole message, `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let r = match self.framing {
            Framing::EndOfMessage => self.next_eom(),
            Framing::Chunked => self.next_chunked(),
        };
        if self.start == self.buf.len() {
            // Thousands of idle sessions: none keeps an input buffer between reads
            // (a reply's last one was up to 4 KiB each), as `drivers::http1` does for
            // REST. The next read allocates its own.
            self.buf = Vec::new();
            self.start = 0;
        }
        r
    }

    /// Call at end of stream: an error when a message was left unfinished.
    pub fn finish(&self) -> Result<(), FramingError> {
        match self.pending() {
            0 => Ok(()),
            n => Err(FramingError::Truncated(n)),
        }
    }

    fn next_eom(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let live = &self.buf[self.start..];
        let from = self.scan.min(live.len());
        if let Some(i) = find(&live[from..], EOM) {
            let end = from + i;
            if end > self.max {
                return Err(FramingError::TooLarge { limit: self.max });
            }
            let msg = live[..end].to_vec();
            self.start += end + EOM.len();
            self.scan = 0;
            return Ok(Some(msg));
        }
        // The marker may straddle this read and the next.
        self.scan = live.len().saturating_sub(EOM.len() - 1);
        if live.len() > self.max + EOM.len() {
            return Err(FramingError::TooLarge { limit: self.max });
        }
        Ok(None)
    }

    fn next_chunked(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        loop {
            let live = &self.buf[self.start..];
            match self.state {
                ChunkState::Data(left) => {
                    if live.is_empty() {
                        return Ok(None);
                    }
                    let n = left.min(live.len());
                    self.msg.extend_from_slice(&live[..n]);
                    self.start += n;
                    self.state = if n == left {
                        ChunkState::Header
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::Header => match parse_header(live)? {
                    None => return Ok(None),
                    Some((used, Header::End)) => {
                        if self.msg.is_empty() {
                            return Err(FramingError::BadChunkHeader(
                                "end of chunks before any chunk".into(),
                            ));
                        }
                        self.start += used;
                        return Ok(Some(std::mem::take(&mut self.msg)));
                    }
                    Some((used, Header::Chunk(size))) => {
                        if self.msg.len().saturating_add(size) > self.max {
                            return Err(FramingError::TooLarge { limit: self.max });
                        }
                        self.start += used;
                        self.state = ChunkState::Data(size);
                    }
                },
            }
        }
    }
}

enum Header {
    Chunk(usize),
    End,
}

/// Parse `\n#<size>\n` or `\n##\n` at the front of `b`: `None` when incomplete.
fn parse_header(b: &[u8]) -> Result<Option<(usize, Header)>, FramingError> {
    let bad = |what: &str, b: &[u8]| {
        let shown = String::from_utf8_lossy(&b[..b.len().min(MAX_HEADER)]).into_owned();
        FramingError::BadChunkHeader(format!("{what} in {shown:?}"))
    };
    if let Some(&c) = b.first() {
        if c != b'\n' {
            return Err(bad("expected a newline", b));
        }
    }
    if let Some(&c) = b.get(1) {
        if c != b'#' {
            return Err(bad("expected '#'", b));
        }
    }
    match b.get(2) {
        None => return Ok(None),
        Some(b'#') => {
            return match b.get(3) {
                None => Ok(None),
                Some(b'\n') => Ok(Some((4, Header::End))),
                Some(_) => Err(bad("expected a newline after '##'", b)),
            };
        }
        Some(b'1'..=b'9') => {}
        Some(_) => return Err(bad("expected a chunk size 1-4294967295", b)),
    }
    let mut size: u64 = 0;
    for (i, &c) in b.iter().enumerate().skip(2) {
        match c {
            b'0'..=b'9' => {
                size = size * 10 + u64::from(c - b'0');
                if size > MAX_CHUNK {
                    return Err(bad("chunk size over 4294967295", b));
                }
            }
            b'\n' => {
                let size = usize::try_from(size).map_err(|_| bad("chunk size too big", b))?;
                return Ok(Some((i + 1, Header::Chunk(size))));
            }
            _ => return Err(bad("expected a digit or a newline", b)),
        }
    }
    Ok(None)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Append `msg` framed as `framing` to `out`.
pub fn encode(framing: Framing, msg: &[u8], out: &mut Vec<u8>) -> Result<(), FramingError> {
    match framing {
        Framing::EndOfMessage => {
            if find(msg, EOM).is_some() {
                return Err(FramingError::MarkerInMessage);
            }
            out.reserve(msg.len() + EOM.len());
            out.extend_from_slice(msg);
            out.extend_from_slice(EOM);
        }
        Framing::Chunked => encode_chunked(msg, usize::MAX, out),
    }
    Ok(())
}

/// Append `msg` in chunks of at most `max_chunk` bytes, then the end of chunks. An
/// empty message, which the grammar cannot express, is sent as one space.
pub fn encode_chunked(msg: &[u8], max_chunk: usize, out: &mut Vec<u8>) {
    let max_chunk = max_chunk.clamp(1, MAX_CHUNK as usize);
    let msg: &[u8] = if msg.is_empty() { b" " } else { msg };
    out.reserve(msg.len() + 32);
    for part in msg.chunks(max_chunk) {
        out.extend_from_slice(format!("\n#{}\n", part.len()).as_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\n##\n");
}

/// Read from `reader` until `decoder` yields a message. `Ok(None)` is a clean end of
/// stream between messages.
pub async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    decoder: &mut Decoder,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(m) = decoder.next_message().map_err(invalid)? {
            return Ok(Some(m));
        }
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            decoder.finish().map_err(invalid)?;
            return Ok(None);
        }
        decoder.extend(&buf[..n]).map_err(invalid)?;
    }
}

fn invalid(e: FramingError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut Decoder) -> Result<Vec<Vec<u8>>, FramingError> {
        let mut v = Vec::new();
        while let Some(m) = d.next_message()? {
            v.push(m);
        }
        Ok(v)
    }

    #[test]
    fn end_of_message_byte_by_byte() {
        let mut wire = Vec::new();
        encode(Framing::EndOfMessage, b"<hello/>", &mut wire).unwrap();
        encode(Framing::EndOfMessage, b"<rpc/>", &mut wire).unwrap();
        let mut d = Decoder::new(Framing::EndOfMessage, 1024);
        let mut got = Vec::new();
        for b in &wire {
            d.extend(std::slice::from_ref(b)).unwrap();
            got.extend(all(&mut d).unwrap());
        }
        assert_eq!(got, vec![b"<hello/>".to_vec(), b"<rpc/>".to_vec()]);
        d.finish().unwrap();
    }

    #[test]
    fn chunked_byte_by_byte_and_many_chunks() {
        let mut wire = Vec::new();
        encode_chunked(b"<rpc-reply>abc</rpc-reply>", 3, &mut wire);
        encode(Framing::Chunked, b"<x/>", &mut wire).unwrap();
        let mut d = Decoder::new(Framing::Chunked, 1024);
        let mut got = Vec::new();
        for b in &wire {
            d.extend(std::slice::from_ref(b)).unwrap();
            got.extend(all(&mut d).unwrap());
        }
        assert_eq!(
            got,
            vec![b"<rpc-reply>abc</rpc-reply>".to_vec(), b"<x/>".to_vec()]
        );
        d.finish().unwrap();
    }

    #[test]
    fn rfc6242_example() {
        let wire = b"\n#4\n<rpc\n#18\n message-id=\"102\"\n\n#79\n     xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">\n  <close-session/>\n</rpc>\n##\n";
        let mut d = Decoder::new(Framing::Chunked, 1024);
        d.extend(wire).unwrap();
        let m = all(&mut d).unwrap();
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with(b"<rpc message-id=\"102\"\n"));
        assert!(m[0].ends_with(b"</rpc>"));
    }

    #[test]
    fn switch_to_chunked_after_hello_keeps_buffered_bytes() {
        let mut wire = b"<hello/>]]>]]>".to_vec();
        encode(Framing::Chunked, b"<rpc-reply/>", &mut wire).unwrap();
        let mut d = Decoder::new(Framing::EndOfMessage, 1024);
        d.extend(&wire).unwrap();
        assert_eq!(d.next_message().unwrap().unwrap(), b"<hello/>");
        d.set_framing(Framing::Chunked);
        assert_eq!(d.next_message().unwrap().unwrap(), b"<rpc-reply/>");
        assert_eq!(d.next_message().unwrap(), None);
    }

    #[test]
    fn malformed_chunk_headers_are_errors() {
        for wire in [
            &b"#4\nabcd\n##\n"[..],
            b"\n#04\nabcd\n##\n",
            b"\n#0\n\n##\n",
            b"\n#-1\n",
            b"\n#4x\nabcd",
            b"\n#4 \nabcd",
            b"\n#99999999999\n",
            b"\n#4294967296\n",
            b"\n##\n",
            b"\n#4\nabcd\n#\n",
            b"\n#4\nabcdX##\n",
            b"\n#4\nabcd\n##x",
            b"\n+4\nabcd",
        ] {
            let mut d = Decoder::new(Framing::Chunked, 1 << 20);
            d.extend(wire).unwrap();
            let r = all(&mut d);
            assert!(
                matches!(r, Err(FramingError::BadChunkHeader(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn never_ending_message_hits_the_cap() {
        for framing in [Framing::EndOfMessage, Framing::Chunked] {
            let mut d = Decoder::new(framing, 64 * 1024);
            if framing == Framing::Chunked {
                d.extend(b"\n#1000\n").unwrap();
            }
            let junk = vec![b'a'; 1000];
            let mut err = None;
            for _ in 0..1000 {
                if framing == Framing::Chunked {
                    d.extend(&junk).unwrap();
                    if let Err(e) = d.next_message() {
                        err = Some(e);
                        break;
                    }
                    d.extend(b"\n#1000\n").unwrap();
                } else {
                    d.extend(&junk).unwrap();
                    if let Err(e) = d.next_message() {
                        err = Some(e);
                        break;
                    }
                }
                assert!(
                    d.pending() < 70 * 1024,
                    "{framing:?} buffered {}",
                    d.pending()
                );
            }
            assert_eq!(err, Some(FramingError::TooLarge { limit: 64 * 1024 }));
        }
    }

    #[test]
    fn a_reply_bigger_than_the_cap_is_refused_at_its_header() {
        let mut d = Decoder::new(Framing::Chunked, 1024);
        d.extend(b"\n#2000\n").unwrap();
        assert_eq!(
            d.next_message(),
            Err(FramingError::TooLarge { limit: 1024 })
        );
        let mut d = Decoder::new(Framing::EndOfMessage, 1024);
        let mut wire = vec![b'x'; 1025];
        wire.extend_from_slice(EOM);
        d.extend(&wire).unwrap();
        assert_eq!(
            d.next_message(),
            Err(FramingError::TooLarge { limit: 1024 })
        );
        // Exactly at the cap is fine.
        let mut d = Decoder::new(Framing::EndOfMessage, 1024);
        let mut wire = vec![b'x'; 1024];
        wire.extend_from_slice(EOM);
        d.extend(&wire).unwrap();
        assert_eq!(d.next_message().unwrap().unwrap().len(), 1024);
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut d = Decoder::new(Framing::EndOfMessage, 1024);
        d.extend(b"<rpc").unwrap();
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.finish(), Err(FramingError::Truncated(4)));
    }

    #[test]
    fn marker_inside_a_1_0_message_is_refused() {
        let mut out = Vec::new();
        assert_eq!(
            encode(Framing::EndOfMessage, b"a]]>]]>b", &mut out),
            Err(FramingError::MarkerInMessage)
        );
    }

    #[tokio::test]
    async fn read_message_over_an_in_memory_stream() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut wire = Vec::new();
            encode(Framing::Chunked, &vec![b'z'; 5000], &mut wire).unwrap();
            a.write_all(&wire).await.unwrap();
            // A never-ending message.
            a.write_all(b"\n#100000\n").await.unwrap();
            let _ = a.write_all(&vec![b'q'; 100_000]).await;
        });
        let mut d = Decoder::new(Framing::Chunked, 8192);
        let m = read_message(&mut b, &mut d).await.unwrap().unwrap();
        assert_eq!(m.len(), 5000);
        let e = read_message(&mut b, &mut d).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("8192-byte cap"), "{e}");
        drop(b);
        writer.await.unwrap();
    }

    proptest::proptest! {
        #[test]
        fn round_trip(msgs in proptest::collection::vec(proptest::collection::vec(0u8..=255, 1..300), 1..5),
                      split in 1usize..50, chunk in 1usize..100) {
            let mut wire = Vec::new();
            for m in &msgs {
                encode_chunked(m, chunk, &mut wire);
            }
            let mut d = Decoder::new(Framing::Chunked, 1024);
            let mut got = Vec::new();
            for part in wire.chunks(split) {
                d.extend(part).unwrap();
                got.extend(all(&mut d).unwrap());
            }
            proptest::prop_assert_eq!(got, msgs);
        }
    }
}
