//! SSH wire encoding (RFC 4251 §5): a bounds-checked reader over a received payload
//! and writers that append to a payload being built.

use super::error::SshError;

/// Reads fields off a payload; every read is checked, none panics.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SshError> {
        if self.buf.len() < n {
            return Err(SshError::Protocol("truncated message".into()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, SshError> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, SshError> {
        Ok(self.u8()? != 0)
    }

    pub fn u32(&mut self) -> Result<u32, SshError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], SshError> {
        self.take(n)
    }

    pub fn string(&mut self) -> Result<&'a [u8], SshError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A string that must be UTF-8 (names, name-lists, messages).
    pub fn text(&mut self) -> Result<&'a str, SshError> {
        std::str::from_utf8(self.string()?)
            .map_err(|_| SshError::Protocol("a name is not UTF-8".into()))
    }
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    // Every string we send is far below 4 GiB (packets are capped well before).
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// An unsigned big-endian integer as an mpint: no leading zero bytes, and one zero
/// byte in front when the top bit is set.
pub fn put_mpint(out: &mut Vec<u8>, be: &[u8]) {
    let start = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    let v = &be[start..];
    let pad = v.first().is_some_and(|&b| b & 0x80 != 0);
    put_u32(out, (v.len() + usize::from(pad)) as u32);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpints_follow_rfc_4251() {
        let enc = |b: &[u8]| {
            let mut v = Vec::new();
            put_mpint(&mut v, b);
            v
        };
        assert_eq!(enc(&[0, 0]), vec![0, 0, 0, 0]);
        assert_eq!(
            enc(&[0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]),
            vec![0, 0, 0, 8, 0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]
        );
        assert_eq!(enc(&[0x80]), vec![0, 0, 0, 2, 0, 0x80]);
        assert_eq!(enc(&[0, 0, 0x7f]), vec![0, 0, 0, 1, 0x7f]);
    }

    #[test]
    fn reads_are_bounds_checked() {
        let mut r = Reader::new(&[0, 0, 0, 9, 1, 2]);
        assert!(r.string().is_err());
        let mut r = Reader::new(&[0, 0, 0, 2, b'o', b'k', 1]);
        assert_eq!(r.text().unwrap(), "ok");
        assert!(r.bool().unwrap());
        assert!(r.u32().is_err());
    }
}
