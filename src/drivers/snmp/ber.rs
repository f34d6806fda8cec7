//! Minimal BER (X.690) primitives for SNMP: a bounds-checked reader that works
//! on absolute offsets into the original datagram (USM needs the offset of the
//! authentication parameters), and TLV writers.
//!
//! Hostile input rules: every length is checked against the bytes that remain
//! in the enclosing TLV before anything is sliced or allocated, indefinite and
//! multi-byte tags are rejected, and nesting depth is capped.

use super::error::SnmpError;

/// Deepest TLV nesting SNMP needs is message > pdu > varbind list > varbind
/// (> scoped pdu for v3); anything much deeper is garbage.
pub(crate) const MAX_DEPTH: usize = 12;
/// RFC 2578 limits an OID to 128 sub-identifiers.
pub(crate) const MAX_OID_ARCS: usize = 128;

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_NULL: u8 = 0x05;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

type Result<T> = std::result::Result<T, SnmpError>;

/// Cursor over `data[pos..end]`; child readers share `data` so positions are
/// always absolute.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    depth: usize,
}

/// One decoded TLV: its tag and the absolute range of its contents.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv {
    pub tag: u8,
    pub start: usize,
    pub end: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader {
            data,
            pos: 0,
            end: data.len(),
            depth: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    pub fn peek_tag(&self) -> Option<u8> {
        if self.pos < self.end {
            self.data.get(self.pos).copied()
        } else {
            None
        }
    }

    fn byte(&mut self) -> Result<u8> {
        if self.pos >= self.end {
            return Err(SnmpError::Malformed("truncated"));
        }
        let b = self
            .data
            .get(self.pos)
            .copied()
            .ok_or(SnmpError::Malformed("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Read one TLV header and skip over its contents.
    pub fn read_tlv(&mut self) -> Result<Tlv> {
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            return Err(SnmpError::Malformed("multi-byte tag"));
        }
        let first = self.byte()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else if first == 0x80 {
            return Err(SnmpError::Malformed("indefinite length"));
        } else {
            let n = first & 0x7f;
            if n > 4 {
                return Err(SnmpError::Malformed("length field too long"));
            }
            let mut len = 0usize;
            for _ in 0..n {
                len = (len << 8) | usize::from(self.byte()?);
            }
            len
        };
        if len > self.end - self.pos {
            return Err(SnmpError::Malformed("length exceeds buffer"));
        }
        let start = self.pos;
        self.pos += len;
        Ok(Tlv {
            tag,
            start,
            end: start + len,
        })
    }

    /// Read a TLV that must carry `tag`.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv> {
        let tlv = self.read_tlv()?;
        if tlv.tag != tag {
            return Err(SnmpError::Malformed(what));
        }
        Ok(tlv)
    }

    /// Reader over a TLV's contents, one level deeper.
    pub fn enter(&self, tlv: Tlv) -> Result<Reader<'a>> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(SnmpError::Malformed("nesting too deep"));
        }
        Ok(Reader {
            data: self.data,
            pos: tlv.start,
            end: tlv.end,
            depth: self.depth + 1,
        })
    }

    /// Read a constructed TLV with `tag` and return a reader over it.
    pub fn sequence(&mut self, tag: u8, what: &'static str) -> Result<Reader<'a>> {
        let tlv = self.expect(tag, what)?;
        self.enter(tlv)
    }

    pub fn bytes(&self, tlv: Tlv) -> &'a [u8] {
        self.data.get(tlv.start..tlv.end).unwrap_or(&[])
    }

    pub fn read_i64(&mut self, what: &'static str) -> Result<i64> {
        let tlv = self.expect(TAG_INTEGER, what)?;
        decode_i64(self.bytes(tlv))
    }

    /// INTEGER that must fit an i32 (request ids, error status, msgID ...).
    pub fn read_i32(&mut self, what: &'static str) -> Result<i32> {
        i32::try_from(self.read_i64(what)?).map_err(|_| SnmpError::Malformed(what))
    }

    pub fn read_octets(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let tlv = self.expect(TAG_OCTET_STRING, what)?;
        Ok(self.bytes(tlv))
    }
}

/// Two's complement big-endian integer of 1..=8 bytes.
pub(crate) fn decode_i64(c: &[u8]) -> Result<i64> {
    if c.is_empty() {
        return Err(SnmpError::Malformed("empty integer"));
    }
    if c.len() > 8 {
        return Err(SnmpError::Malformed("integer too large"));
    }
    let mut v: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
    for &b in c {
        v = (v << 8) | i64::from(b);
    }
    Ok(v)
}

/// Unsigned big-endian integer (Counter32, Counter64, ...). Accepts the
/// leading 0x00 that BER requires for values with the top bit set and, like
/// Net-SNMP, also tolerates agents that forget it.
pub(crate) fn decode_u64(c: &[u8]) -> Result<u64> {
    if c.is_empty() {
        return Err(SnmpError::Malformed("empty integer"));
    }
    let mut digits = c;
    while digits.len() > 1 && digits[0] == 0 {
        digits = &digits[1..];
    }
    if digits.len() > 8 {
        return Err(SnmpError::Malformed("unsigned integer too large"));
    }
    Ok(digits.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

/// OID contents to arcs; the first sub-identifier packs two arcs.
pub(crate) fn decode_oid(c: &[u8]) -> Result<Vec<u32>> {
    if c.is_empty() {
        return Err(SnmpError::Malformed("empty OID"));
    }
    // Each sub-identifier needs at least one byte, so this bounds the Vec.
    let mut arcs = Vec::with_capacity((c.len() + 1).min(MAX_OID_ARCS));
    let mut acc: u64 = 0;
    let mut in_subid = false;
    for &b in c {
        if !in_subid && b == 0x80 {
            return Err(SnmpError::Malformed("non-minimal OID sub-identifier"));
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if acc > u64::from(u32::MAX) + 80 {
            return Err(SnmpError::Malformed("OID sub-identifier too large"));
        }
        in_subid = b & 0x80 != 0;
        if !in_subid {
            if arcs.is_empty() {
                let (a, b) = match acc {
                    0..=39 => (0, acc),
                    40..=79 => (1, acc - 40),
                    _ => (2, acc - 80),
                };
                arcs.push(a);
                arcs.push(u32::try_from(b).map_err(|_| SnmpError::Malformed("OID arc"))?);
            } else {
                arcs.push(u32::try_from(acc).map_err(|_| SnmpError::Malformed("OID arc"))?);
            }
            if arcs.len() > MAX_OID_ARCS {
                return Err(SnmpError::Malformed("OID too long"));
            }
            acc = 0;
        }
    }
    if in_subid {
        return Err(SnmpError::Malformed("truncated OID"));
    }
    Ok(arcs)
}

pub(crate) fn write_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Append tag, length and contents.
pub(crate) fn write_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    write_length(out, content.len());
    out.extend_from_slice(content);
}

/// Length of the tag + length header for a TLV with `len` content bytes.
pub(crate) fn header_len(len: usize) -> usize {
    let mut v = Vec::with_capacity(6);
    write_length(&mut v, len);
    1 + v.len()
}

pub(crate) fn write_i64(out: &mut Vec<u8>, tag: u8, v: i64) {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    // Drop redundant sign bytes while keeping the sign bit correct.
    while start < 7 {
        let b = bytes[start];
        let next_top = bytes[start + 1] & 0x80;
        if (b == 0x00 && next_top == 0) || (b == 0xff && next_top != 0) {
            start += 1;
        } else {
            break;
        }
    }
    write_tlv(out, tag, &bytes[start..]);
}

pub(crate) fn write_u64(out: &mut Vec<u8>, tag: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    let mut content = Vec::with_capacity(9);
    if bytes[skip] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(&bytes[skip..]);
    write_tlv(out, tag, &content);
}

fn push_base128(out: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 10];
    let mut n = 0;
    let mut v = v;
    loop {
        tmp[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(if i == 0 { tmp[i] } else { tmp[i] | 0x80 });
    }
}

/// Encode OID arcs; fewer than two arcs are padded with zeros so the
/// encoder is total (validated `Oid`s always have two or more).
pub(crate) fn write_oid(out: &mut Vec<u8>, arcs: &[u32]) {
    let a0 = u64::from(arcs.first().copied().unwrap_or(0));
    let a1 = u64::from(arcs.get(1).copied().unwrap_or(0));
    let mut content = Vec::with_capacity(arcs.len() + 4);
    push_base128(&mut content, a0 * 40 + a1);
    for &a in arcs.iter().skip(2) {
        push_base128(&mut content, u64::from(a));
    }
    write_tlv(out, TAG_OID, &content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_encoding_is_minimal() {
        let cases: [(i64, &[u8]); 6] = [
            (0, &[0x02, 0x01, 0x00]),
            (127, &[0x02, 0x01, 0x7f]),
            (128, &[0x02, 0x02, 0x00, 0x80]),
            (-1, &[0x02, 0x01, 0xff]),
            (-129, &[0x02, 0x02, 0xff, 0x7f]),
            (256, &[0x02, 0x02, 0x01, 0x00]),
        ];
        for (v, enc) in cases {
            let mut out = Vec::new();
            write_i64(&mut out, TAG_INTEGER, v);
            assert_eq!(out, enc, "{v}");
            assert_eq!(decode_i64(&enc[2..]).unwrap(), v);
        }
    }

    #[test]
    fn unsigned_and_long_lengths() {
        let mut out = Vec::new();
        write_u64(&mut out, 0x41, u64::from(u32::MAX));
        assert_eq!(out, [0x41, 0x05, 0x00, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_u64(&out[2..]).unwrap(), u64::from(u32::MAX));
        // Agents that omit the leading zero are tolerated.
        assert_eq!(decode_u64(&[0xff, 0xff]).unwrap(), 0xffff);
        let mut out = Vec::new();
        write_tlv(&mut out, TAG_OCTET_STRING, &[7u8; 300]);
        assert_eq!(&out[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let mut r = Reader::new(&out);
        let t = r.read_tlv().unwrap();
        assert_eq!(t.end - t.start, 300);
        assert!(r.is_empty());
    }

    #[test]
    fn oid_known_encoding() {
        let mut out = Vec::new();
        write_oid(&mut out, &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 200]);
        assert_eq!(
            out,
            [0x06, 0x0c, 0x2b, 6, 1, 2, 1, 31, 1, 1, 1, 6, 0x81, 0x48]
        );
        assert_eq!(
            decode_oid(&out[2..]).unwrap(),
            vec![1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 200]
        );
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(Reader::new(&[0x30, 0x05, 0x01]).read_tlv().is_err());
        assert!(Reader::new(&[0x30, 0x80, 0x00, 0x00]).read_tlv().is_err());
        assert!(Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1])
            .read_tlv()
            .is_err());
        assert!(Reader::new(&[0x1f, 0x01, 0x00]).read_tlv().is_err());
        assert!(Reader::new(&[0x30]).read_tlv().is_err());
        assert!(decode_oid(&[0x2b, 0x86]).is_err());
        assert!(decode_oid(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }
}
