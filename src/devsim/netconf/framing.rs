//! RFC 6242 framing for the simulator's side of a session: end-of-message (`]]>]]>`)
//! for the hellos and NETCONF 1.0, chunked (`\n#<len>\n...\n##\n`) after both sides
//! said base:1.1; incoming messages are capped.
//!
//! Stand-in until the driver's codec (`drivers::netconf::framing`) is merged; the
//! simulator only uses [`Decoder`], [`encode`] and [`Framing`].

/// End-of-message marker of NETCONF 1.0.
pub const EOM: &[u8] = b"]]>]]>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    EndOfMessage,
    Chunked,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("message larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("malformed chunk header")]
    BadChunk,
}

/// Splits a byte stream into messages.
#[derive(Debug)]
pub struct Decoder {
    mode: Framing,
    max: usize,
    buf: Vec<u8>,
    /// Chunked: the message so far.
    msg: Vec<u8>,
    /// End-of-message: bytes of `buf` already searched for the marker.
    scanned: usize,
}

impl Decoder {
    pub fn new(max: usize) -> Decoder {
        Decoder {
            mode: Framing::EndOfMessage,
            max,
            buf: Vec::new(),
            msg: Vec::new(),
            scanned: 0,
        }
    }

    pub fn set_mode(&mut self, mode: Framing) {
        self.mode = mode;
        self.scanned = 0;
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if the buffer holds one.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        match self.mode {
            Framing::EndOfMessage => self.next_eom(),
            Framing::Chunked => self.next_chunked(),
        }
    }

    fn next_eom(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let from = self.scanned.saturating_sub(EOM.len() - 1);
        let hit = self
            .buf
            .get(from..)
            .and_then(|tail| tail.windows(EOM.len()).position(|w| w == EOM))
            .map(|p| p + from);
        match hit {
            Some(end) => {
                let msg: Vec<u8> = self.buf.drain(..end + EOM.len()).take(end).collect();
                self.scanned = 0;
                self.shrink();
                Ok(Some(msg))
            }
            None if self.buf.len() > self.max + EOM.len() => {
                Err(FramingError::TooLarge { max: self.max })
            }
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }

    fn next_chunked(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        loop {
            // "\n#" then "#\n" (end) or 1-10 digits and "\n".
            let Some(head) = self.buf.get(..2) else {
                return self.partial_header();
            };
            if head != b"\n#" {
                return Err(FramingError::BadChunk);
            }
            if self.buf.get(2) == Some(&b'#') {
                match self.buf.get(3) {
                    None => return Ok(None),
                    Some(b'\n') => {
                        self.buf.drain(..4);
                        self.shrink();
                        if self.msg.is_empty() {
                            return Err(FramingError::BadChunk);
                        }
                        return Ok(Some(std::mem::take(&mut self.msg)));
                    }
                    Some(_) => return Err(FramingError::BadChunk),
                }
            }
            let digits = self.buf[2..]
                .iter()
                .take(11)
                .position(|b| !b.is_ascii_digit());
            let Some(n) = digits else {
                if self.buf.len() - 2 > 10 {
                    return Err(FramingError::BadChunk);
                }
                return Ok(None);
            };
            if n == 0 || n > 10 || self.buf.get(2 + n) != Some(&b'\n') || self.buf[2] == b'0' {
                return Err(FramingError::BadChunk);
            }
            let len: usize = std::str::from_utf8(&self.buf[2..2 + n])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&l| (1..=u64::from(u32::MAX)).contains(&l))
                .and_then(|l| usize::try_from(l).ok())
                .ok_or(FramingError::BadChunk)?;
            if self.msg.len().saturating_add(len) > self.max {
                return Err(FramingError::TooLarge { max: self.max });
            }
            let start = 3 + n;
            if self.buf.len() < start + len {
                return Ok(None);
            }
            self.msg.extend_from_slice(&self.buf[start..start + len]);
            self.buf.drain(..start + len);
        }
    }

    fn partial_header(&self) -> Result<Option<Vec<u8>>, FramingError> {
        match self.buf.first() {
            None | Some(b'\n') => Ok(None),
            Some(_) => Err(FramingError::BadChunk),
        }
    }

    /// Gives back a large buffer once it is empty, so idle sessions stay small.
    fn shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 4096 {
            self.buf = Vec::new();
        }
        if self.msg.capacity() > 4096 && self.msg.is_empty() {
            self.msg = Vec::new();
        }
    }
}

/// One message, framed.
pub fn encode(mode: Framing, msg: &[u8]) -> Vec<u8> {
    match mode {
        Framing::EndOfMessage => {
            let mut out = Vec::with_capacity(msg.len() + EOM.len());
            out.extend_from_slice(msg);
            out.extend_from_slice(EOM);
            out
        }
        Framing::Chunked => {
            let mut out = Vec::with_capacity(msg.len() + 20);
            if !msg.is_empty() {
                out.extend_from_slice(format!("\n#{}\n", msg.len()).as_bytes());
                out.extend_from_slice(msg);
            }
            out.extend_from_slice(b"\n##\n");
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eom_split_across_pushes() {
        let mut d = Decoder::new(100);
        d.push(b"<a/>]]>");
        assert_eq!(d.next_message(), Ok(None));
        d.push(b"]]><b/>]]>]]>");
        assert_eq!(d.next_message(), Ok(Some(b"<a/>".to_vec())));
        assert_eq!(d.next_message(), Ok(Some(b"<b/>".to_vec())));
        assert_eq!(d.next_message(), Ok(None));
    }

    #[test]
    fn chunked_round_trip_and_errors() {
        let mut d = Decoder::new(100);
        d.set_mode(Framing::Chunked);
        d.push(b"\n#3\nabc\n#2\nde");
        assert_eq!(d.next_message(), Ok(None));
        d.push(b"\n##\n");
        assert_eq!(d.next_message(), Ok(Some(b"abcde".to_vec())));
        d.push(&encode(Framing::Chunked, b"xyz"));
        assert_eq!(d.next_message(), Ok(Some(b"xyz".to_vec())));
        d.push(b"\n#x\n");
        assert_eq!(d.next_message(), Err(FramingError::BadChunk));
        let mut d = Decoder::new(4);
        d.set_mode(Framing::Chunked);
        d.push(b"\n#5\n");
        assert_eq!(d.next_message(), Err(FramingError::TooLarge { max: 4 }));
        let mut d = Decoder::new(4);
        d.push(b"0123456789");
        assert_eq!(d.next_message(), Err(FramingError::TooLarge { max: 4 }));
    }
}
