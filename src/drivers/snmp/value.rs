//! SNMP data model: `Oid`, `SnmpValue`, `VarBind`, their BER encoding, their
//! JSON form for returns, and parsing SET values from Net-SNMP style
//! (type, text) pairs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde_json::{json, Value as Json};

use super::ber::{self, Reader, Tlv};
use super::error::SnmpError;
use super::mib;

/// An object identifier: at least two arcs, first arc 0..=2, second arc < 40
/// under 0 and 1, at most 128 arcs (so it always BER-encodes faithfully).
/// Ordering is SNMP's lexicographic order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid(Vec<u32>);

impl Oid {
    /// Validate arcs into an `Oid`.
    pub fn from_arcs(arcs: Vec<u32>) -> Result<Oid, SnmpError> {
        let valid = arcs.len() >= 2
            && arcs.len() <= ber::MAX_OID_ARCS
            && arcs[0] <= 2
            && (arcs[0] == 2 || arcs[1] < 40)
            && (u64::from(arcs[0]) * 40 + u64::from(arcs[1]) <= u64::from(u32::MAX) + 80);
        if valid {
            Ok(Oid(arcs))
        } else {
            Err(SnmpError::InvalidOid(format!("{arcs:?}")))
        }
    }

    pub fn arcs(&self) -> &[u32] {
        &self.0
    }

    /// True if `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Parse dotted numeric form, with or without a leading dot.
    pub fn parse_numeric(s: &str) -> Result<Oid, SnmpError> {
        let t = s.trim();
        let t = t.strip_prefix('.').unwrap_or(t);
        if t.is_empty() {
            return Err(SnmpError::InvalidOid(s.to_string()));
        }
        let arcs = t
            .split('.')
            .map(|p| p.parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| SnmpError::InvalidOid(s.to_string()))?;
        Oid::from_arcs(arcs)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl FromStr for Oid {
    type Err = SnmpError;

    /// Numeric (`1.3.6.1.2.1.1.5.0`, `.1.3.6...`) or MIB name with optional
    /// numeric suffix and optional module prefix (`IF-MIB::ifHCInOctets.3`).
    fn from_str(s: &str) -> Result<Oid, SnmpError> {
        let t = s.trim();
        if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Oid::parse_numeric(t);
        }
        mib::lookup_name(t).ok_or_else(|| SnmpError::InvalidOid(s.to_string()))
    }
}

/// A typed SNMP value, including the v2 exception values.
#[derive(Debug, Clone, PartialEq)]
pub enum SnmpValue {
    Integer(i32),
    OctetString(Vec<u8>),
    Null,
    ObjectId(Oid),
    IpAddress([u8; 4]),
    Counter32(u32),
    /// Gauge32 and Unsigned32 share a tag.
    Gauge32(u32),
    TimeTicks(u32),
    Opaque(Vec<u8>),
    Counter64(u64),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

pub(crate) const TAG_IPADDRESS: u8 = 0x40;
pub(crate) const TAG_COUNTER32: u8 = 0x41;
pub(crate) const TAG_GAUGE32: u8 = 0x42;
pub(crate) const TAG_TIMETICKS: u8 = 0x43;
pub(crate) const TAG_OPAQUE: u8 = 0x44;
pub(crate) const TAG_COUNTER64: u8 = 0x46;
pub(crate) const TAG_NO_SUCH_OBJECT: u8 = 0x80;
pub(crate) const TAG_NO_SUCH_INSTANCE: u8 = 0x81;
pub(crate) const TAG_END_OF_MIB_VIEW: u8 = 0x82;

fn u32_of(c: &[u8]) -> Result<u32, SnmpError> {
    u32::try_from(ber::decode_u64(c)?).map_err(|_| SnmpError::Malformed("32-bit value too large"))
}

/// Hex form "0a:1b:ff" used for binary strings.
pub fn hex_colon(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Printable text (what a person would call a string) versus binary.
fn is_printable(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(s) => s
            .chars()
            .all(|c| !c.is_control() || c == '\n' || c == '\r' || c == '\t'),
        Err(_) => false,
    }
}

impl SnmpValue {
    /// Decode the value of a varbind from its TLV.
    pub(crate) fn decode(tag: u8, c: &[u8]) -> Result<SnmpValue, SnmpError> {
        Ok(match tag {
            ber::TAG_INTEGER => SnmpValue::Integer(
                i32::try_from(ber::decode_i64(c)?)
                    .map_err(|_| SnmpError::Malformed("INTEGER out of range"))?,
            ),
            ber::TAG_OCTET_STRING => SnmpValue::OctetString(c.to_vec()),
            ber::TAG_NULL => SnmpValue::Null,
            ber::TAG_OID => SnmpValue::ObjectId(Oid(ber::decode_oid(c)?)),
            TAG_IPADDRESS => SnmpValue::IpAddress(
                <[u8; 4]>::try_from(c).map_err(|_| SnmpError::Malformed("IpAddress length"))?,
            ),
            TAG_COUNTER32 => SnmpValue::Counter32(u32_of(c)?),
            TAG_GAUGE32 => SnmpValue::Gauge32(u32_of(c)?),
            TAG_TIMETICKS => SnmpValue::TimeTicks(u32_of(c)?),
            TAG_OPAQUE => SnmpValue::Opaque(c.to_vec()),
            TAG_COUNTER64 => SnmpValue::Counter64(ber::decode_u64(c)?),
            TAG_NO_SUCH_OBJECT => SnmpValue::NoSuchObject,
            TAG_NO_SUCH_INSTANCE => SnmpValue::NoSuchInstance,
            TAG_END_OF_MIB_VIEW => SnmpValue::EndOfMibView,
            _ => return Err(SnmpError::Malformed("unknown value type")),
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SnmpValue::Integer(v) => ber::write_i64(out, ber::TAG_INTEGER, i64::from(*v)),
            SnmpValue::OctetString(b) => ber::write_tlv(out, ber::TAG_OCTET_STRING, b),
            SnmpValue::Null => ber::write_tlv(out, ber::TAG_NULL, &[]),
            SnmpValue::ObjectId(o) => ber::write_oid(out, &o.0),
            SnmpValue::IpAddress(a) => ber::write_tlv(out, TAG_IPADDRESS, a),
            SnmpValue::Counter32(v) => ber::write_u64(out, TAG_COUNTER32, u64::from(*v)),
            SnmpValue::Gauge32(v) => ber::write_u64(out, TAG_GAUGE32, u64::from(*v)),
            SnmpValue::TimeTicks(v) => ber::write_u64(out, TAG_TIMETICKS, u64::from(*v)),
            SnmpValue::Opaque(b) => ber::write_tlv(out, TAG_OPAQUE, b),
            SnmpValue::Counter64(v) => ber::write_u64(out, TAG_COUNTER64, *v),
            SnmpValue::NoSuchObject => ber::write_tlv(out, TAG_NO_SUCH_OBJECT, &[]),
            SnmpValue::NoSuchInstance => ber::write_tlv(out, TAG_NO_SUCH_INSTANCE, &[]),
            SnmpValue::EndOfMibView => ber::write_tlv(out, TAG_END_OF_MIB_VIEW, &[]),
        }
    }

    /// True for noSuchObject / noSuchInstance / endOfMibView.
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            SnmpValue::NoSuchObject | SnmpValue::NoSuchInstance | SnmpValue::EndOfMibView
        )
    }

    /// The JSON type label used in returns.
    pub fn type_name(&self) -> &'static str {
        match self {
            SnmpValue::Integer(_) => "integer",
            SnmpValue::OctetString(b) if is_printable(b) => "string",
            SnmpValue::OctetString(_) => "hex-string",
            SnmpValue::Null => "null",
            SnmpValue::ObjectId(_) => "oid",
            SnmpValue::IpAddress(_) => "ipaddress",
            SnmpValue::Counter32(_) => "counter32",
            SnmpValue::Gauge32(_) => "gauge32",
            SnmpValue::TimeTicks(_) => "timeticks",
            SnmpValue::Opaque(_) => "opaque",
            SnmpValue::Counter64(_) => "counter64",
            SnmpValue::NoSuchObject => "noSuchObject",
            SnmpValue::NoSuchInstance => "noSuchInstance",
            SnmpValue::EndOfMibView => "endOfMibView",
        }
    }

    /// `{"type": ..., "value": ...}`; binary strings as colon hex.
    pub fn to_json(&self) -> Json {
        let value = match self {
            SnmpValue::Integer(v) => json!(v),
            SnmpValue::OctetString(b) if is_printable(b) => {
                json!(String::from_utf8_lossy(b).into_owned())
            }
            SnmpValue::OctetString(b) | SnmpValue::Opaque(b) => json!(hex_colon(b)),
            SnmpValue::ObjectId(o) => json!(o.to_string()),
            SnmpValue::IpAddress(a) => json!(Ipv4Addr::from(*a).to_string()),
            SnmpValue::Counter32(v) | SnmpValue::Gauge32(v) | SnmpValue::TimeTicks(v) => {
                json!(v)
            }
            SnmpValue::Counter64(v) => json!(v),
            SnmpValue::Null
            | SnmpValue::NoSuchObject
            | SnmpValue::NoSuchInstance
            | SnmpValue::EndOfMibView => Json::Null,
        };
        json!({"type": self.type_name(), "value": value})
    }

    /// Build a SET value from Net-SNMP style type letters (`i s x o a u t c C`)
    /// or long names (integer, string, hex, oid, ipaddress, unsigned/gauge,
    /// timeticks, counter32, counter64).
    pub fn parse_typed(ty: &str, text: &str) -> Result<SnmpValue, SnmpError> {
        let bad = |why: &str| SnmpError::InvalidValue(format!("{ty} {text:?}: {why}"));
        let t = text.trim();
        let long = ty.trim().to_ascii_lowercase();
        // Single letters are case sensitive (c vs C), long names are not.
        let key = if ty.trim().len() == 1 {
            ty.trim()
        } else {
            long.as_str()
        };
        Ok(match key {
            "i" | "integer" | "int" | "integer32" => {
                SnmpValue::Integer(t.parse().map_err(|_| bad("not a 32-bit integer"))?)
            }
            "s" | "string" | "octetstring" | "octet-string" => {
                SnmpValue::OctetString(text.as_bytes().to_vec())
            }
            "x" | "hex" | "hex-string" | "hexstring" => {
                SnmpValue::OctetString(parse_hex(t).ok_or_else(|| bad("bad hex"))?)
            }
            "o" | "oid" | "objectid" | "object-identifier" => SnmpValue::ObjectId(t.parse()?),
            "a" | "ipaddress" | "ip" => SnmpValue::IpAddress(
                t.parse::<Ipv4Addr>()
                    .map_err(|_| bad("not an IPv4 address"))?
                    .octets(),
            ),
            "u" | "unsigned" | "unsigned32" | "gauge" | "gauge32" => {
                SnmpValue::Gauge32(t.parse().map_err(|_| bad("not an unsigned 32-bit"))?)
            }
            "t" | "timeticks" => {
                SnmpValue::TimeTicks(t.parse().map_err(|_| bad("not an unsigned 32-bit"))?)
            }
            "c" | "counter" | "counter32" => {
                SnmpValue::Counter32(t.parse().map_err(|_| bad("not an unsigned 32-bit"))?)
            }
            "C" | "counter64" => {
                SnmpValue::Counter64(t.parse().map_err(|_| bad("not an unsigned 64-bit"))?)
            }
            "n" | "null" => SnmpValue::Null,
            _ => return Err(bad("unknown type")),
        })
    }
}

/// Hex with optional `0x` prefix and `:`/space/`-` separators.
fn parse_hex(t: &str) -> Option<Vec<u8>> {
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: Vec<u8> = t
        .bytes()
        .filter(|b| !matches!(b, b':' | b' ' | b'-' | b'\t'))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// One (OID, value) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct VarBind {
    pub oid: Oid,
    pub value: SnmpValue,
}

impl VarBind {
    pub fn new(oid: Oid, value: SnmpValue) -> VarBind {
        VarBind { oid, value }
    }

    /// A request varbind (value NULL).
    pub fn null(oid: Oid) -> VarBind {
        VarBind {
            oid,
            value: SnmpValue::Null,
        }
    }

    /// `{"oid", "name", "type", "value"}`; name is null when unknown.
    pub fn to_json(&self) -> Json {
        let v = self.value.to_json();
        json!({
            "oid": self.oid.to_string(),
            "name": mib::oid_name(&self.oid),
            "type": v["type"],
            "value": v["value"],
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut content = Vec::with_capacity(32);
        ber::write_oid(&mut content, &self.oid.0);
        self.value.encode(&mut content);
        ber::write_tlv(out, ber::TAG_SEQUENCE, &content);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<VarBind, SnmpError> {
        let mut vb = r.sequence(ber::TAG_SEQUENCE, "varbind")?;
        let oid_tlv = vb.expect(ber::TAG_OID, "varbind name")?;
        let oid = Oid(ber::decode_oid(vb.bytes(oid_tlv))?);
        let v: Tlv = vb.read_tlv()?;
        let value = SnmpValue::decode(v.tag, vb.bytes(v))?;
        if !vb.is_empty() {
            return Err(SnmpError::Malformed("trailing data in varbind"));
        }
        Ok(VarBind { oid, value })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_oid() -> impl Strategy<Value = Oid> {
        (
            0u32..=2,
            0u32..40,
            prop::collection::vec(any::<u32>(), 0..20),
        )
            .prop_map(|(a, b, rest)| {
                let mut v = vec![a, b];
                v.extend(rest);
                Oid::from_arcs(v).unwrap()
            })
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = SnmpValue> {
        prop_oneof![
            any::<i32>().prop_map(SnmpValue::Integer),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(SnmpValue::OctetString),
            Just(SnmpValue::Null),
            arb_oid().prop_map(SnmpValue::ObjectId),
            any::<[u8; 4]>().prop_map(SnmpValue::IpAddress),
            any::<u32>().prop_map(SnmpValue::Counter32),
            any::<u32>().prop_map(SnmpValue::Gauge32),
            any::<u32>().prop_map(SnmpValue::TimeTicks),
            prop::collection::vec(any::<u8>(), 0..16).prop_map(SnmpValue::Opaque),
            any::<u64>().prop_map(SnmpValue::Counter64),
            Just(SnmpValue::NoSuchObject),
            Just(SnmpValue::NoSuchInstance),
            Just(SnmpValue::EndOfMibView),
        ]
    }

    proptest! {
        #[test]
        fn value_roundtrip(v in arb_value()) {
            let mut out = Vec::new();
            v.encode(&mut out);
            let mut r = Reader::new(&out);
            let tlv = r.read_tlv().unwrap();
            prop_assert!(r.is_empty());
            prop_assert_eq!(SnmpValue::decode(tlv.tag, r.bytes(tlv)).unwrap(), v);
        }

        #[test]
        fn oid_roundtrip_text_and_ber(o in arb_oid()) {
            prop_assert_eq!(&o.to_string().parse::<Oid>().unwrap(), &o);
            prop_assert_eq!(&format!(".{o}").parse::<Oid>().unwrap(), &o);
            let mut out = Vec::new();
            ber::write_oid(&mut out, o.arcs());
            prop_assert_eq!(ber::decode_oid(&out[2..]).unwrap(), o.arcs().to_vec());
        }

        #[test]
        fn value_decode_never_panics(tag in any::<u8>(), c in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = SnmpValue::decode(tag, &c);
        }
    }

    #[test]
    fn json_forms() {
        let vb = VarBind::new(
            "1.3.6.1.2.1.1.5.0".parse().unwrap(),
            SnmpValue::OctetString(b"sw1".to_vec()),
        );
        assert_eq!(
            vb.to_json(),
            json!({"oid": "1.3.6.1.2.1.1.5.0", "name": "sysName.0", "type": "string", "value": "sw1"})
        );
        let v = SnmpValue::OctetString(vec![0x0a, 0x1b, 0x00]);
        assert_eq!(
            v.to_json(),
            json!({"type": "hex-string", "value": "0a:1b:00"})
        );
        assert_eq!(
            SnmpValue::NoSuchInstance.to_json(),
            json!({"type": "noSuchInstance", "value": null})
        );
        assert_eq!(
            SnmpValue::IpAddress([10, 0, 0, 1]).to_json()["value"],
            json!("10.0.0.1")
        );
    }

    #[test]
    fn parse_typed_letters_and_names() {
        assert_eq!(
            SnmpValue::parse_typed("i", "-5").unwrap(),
            SnmpValue::Integer(-5)
        );
        assert_eq!(
            SnmpValue::parse_typed("integer", "7").unwrap(),
            SnmpValue::Integer(7)
        );
        assert_eq!(
            SnmpValue::parse_typed("s", "hello world").unwrap(),
            SnmpValue::OctetString(b"hello world".to_vec())
        );
        assert_eq!(
            SnmpValue::parse_typed("x", "0a:1B ff").unwrap(),
            SnmpValue::OctetString(vec![0x0a, 0x1b, 0xff])
        );
        assert_eq!(
            SnmpValue::parse_typed("o", "sysName.0").unwrap(),
            SnmpValue::ObjectId("1.3.6.1.2.1.1.5.0".parse().unwrap())
        );
        assert_eq!(
            SnmpValue::parse_typed("a", "192.0.2.1").unwrap(),
            SnmpValue::IpAddress([192, 0, 2, 1])
        );
        assert_eq!(
            SnmpValue::parse_typed("u", "4294967295").unwrap(),
            SnmpValue::Gauge32(u32::MAX)
        );
        assert_eq!(
            SnmpValue::parse_typed("gauge", "1").unwrap(),
            SnmpValue::Gauge32(1)
        );
        assert_eq!(
            SnmpValue::parse_typed("t", "100").unwrap(),
            SnmpValue::TimeTicks(100)
        );
        assert_eq!(
            SnmpValue::parse_typed("c", "3").unwrap(),
            SnmpValue::Counter32(3)
        );
        assert_eq!(
            SnmpValue::parse_typed("C", "18446744073709551615").unwrap(),
            SnmpValue::Counter64(u64::MAX)
        );
        assert_eq!(
            SnmpValue::parse_typed("counter64", "5").unwrap(),
            SnmpValue::Counter64(5)
        );
        assert!(SnmpValue::parse_typed("i", "abc").is_err());
        assert!(SnmpValue::parse_typed("x", "abc").is_err());
        assert!(SnmpValue::parse_typed("a", "300.1.1.1").is_err());
        assert!(SnmpValue::parse_typed("q", "1").is_err());
    }

    #[test]
    fn oid_parsing() {
        assert_eq!(
            ".1.3.6.1.2.1.1.1.0".parse::<Oid>().unwrap().to_string(),
            "1.3.6.1.2.1.1.1.0"
        );
        assert!("1".parse::<Oid>().is_err());
        assert!("3.1".parse::<Oid>().is_err());
        assert!("1.3..6".parse::<Oid>().is_err());
        assert!("".parse::<Oid>().is_err());
        assert!("1.3.99999999999".parse::<Oid>().is_err());
        assert!("noSuchMibName.0".parse::<Oid>().is_err());
        let a: Oid = "1.3.6.1.2.1.2".parse().unwrap();
        let b: Oid = "1.3.6.1.2.1.10".parse().unwrap();
        assert!(a < b, "numeric not string ordering");
    }
}
