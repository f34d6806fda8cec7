//! SNMP message and PDU layer: v1/v2c community messages and v3 messages
//! (header, USM security parameters, plain or encrypted scoped PDU), their
//! encoding and their panic-free decoding. Also records where the USM
//! authentication parameters sit in the encoded bytes so `usm` can sign and
//! verify in place.

use std::fmt;
use std::ops::Range;

use super::ber::{self, Reader};
use super::error::SnmpError;
use super::value::VarBind;
use super::SnmpVersion;

type Result<T> = std::result::Result<T, SnmpError>;

/// msgFlags bits (RFC 3412).
pub const FLAG_AUTH: u8 = 0x01;
pub const FLAG_PRIV: u8 = 0x02;
pub const FLAG_REPORTABLE: u8 = 0x04;

/// USM is security model 3.
pub(crate) const SECURITY_MODEL_USM: i32 = 3;

/// PDU kinds we encode and decode (the v1 Trap-PDU has a different layout and
/// is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduType {
    Get,
    GetNext,
    Response,
    Set,
    GetBulk,
    Inform,
    TrapV2,
    Report,
}

impl PduType {
    fn tag(self) -> u8 {
        match self {
            PduType::Get => 0xa0,
            PduType::GetNext => 0xa1,
            PduType::Response => 0xa2,
            PduType::Set => 0xa3,
            PduType::GetBulk => 0xa5,
            PduType::Inform => 0xa6,
            PduType::TrapV2 => 0xa7,
            PduType::Report => 0xa8,
        }
    }

    fn from_tag(tag: u8) -> Result<PduType> {
        Ok(match tag {
            0xa0 => PduType::Get,
            0xa1 => PduType::GetNext,
            0xa2 => PduType::Response,
            0xa3 => PduType::Set,
            0xa5 => PduType::GetBulk,
            0xa6 => PduType::Inform,
            0xa7 => PduType::TrapV2,
            0xa8 => PduType::Report,
            _ => return Err(SnmpError::Malformed("unsupported PDU type")),
        })
    }
}

/// A PDU. For GetBulk, `error_status` carries non-repeaters and
/// `error_index` max-repetitions (same wire positions, RFC 3416).
#[derive(Debug, Clone, PartialEq)]
pub struct Pdu {
    pub pdu_type: PduType,
    pub request_id: i32,
    pub error_status: i32,
    pub error_index: i32,
    pub varbinds: Vec<VarBind>,
}

impl Pdu {
    pub fn new(pdu_type: PduType, request_id: i32, varbinds: Vec<VarBind>) -> Pdu {
        Pdu {
            pdu_type,
            request_id,
            error_status: 0,
            error_index: 0,
            varbinds,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut content = Vec::with_capacity(64 + self.varbinds.len() * 32);
        ber::write_i64(&mut content, ber::TAG_INTEGER, i64::from(self.request_id));
        ber::write_i64(&mut content, ber::TAG_INTEGER, i64::from(self.error_status));
        ber::write_i64(&mut content, ber::TAG_INTEGER, i64::from(self.error_index));
        let mut list = Vec::with_capacity(self.varbinds.len() * 32);
        for vb in &self.varbinds {
            vb.encode(&mut list);
        }
        ber::write_tlv(&mut content, ber::TAG_SEQUENCE, &list);
        ber::write_tlv(out, self.pdu_type.tag(), &content);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Pdu> {
        let tlv = r.read_tlv()?;
        let pdu_type = PduType::from_tag(tlv.tag)?;
        let mut p = r.enter(tlv)?;
        let request_id = p.read_i32("request-id")?;
        let error_status = p.read_i32("error-status")?;
        let error_index = p.read_i32("error-index")?;
        let mut list = p.sequence(ber::TAG_SEQUENCE, "varbind list")?;
        // Each varbind consumes input bytes, so this grows with input size only.
        let mut varbinds = Vec::new();
        while !list.is_empty() {
            varbinds.push(VarBind::decode(&mut list)?);
        }
        Ok(Pdu {
            pdu_type,
            request_id,
            error_status,
            error_index,
            varbinds,
        })
    }
}

/// v1 / v2c message. `Debug` redacts the community.
#[derive(Clone, PartialEq)]
pub struct CommunityMessage {
    pub version: SnmpVersion,
    pub community: Vec<u8>,
    pub pdu: Pdu,
}

impl fmt::Debug for CommunityMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommunityMessage")
            .field("version", &self.version)
            .field("community", &"<redacted>")
            .field("pdu", &self.pdu)
            .finish()
    }
}

/// USM security parameters (RFC 3414 2.4).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsmSecurityParameters {
    pub engine_id: Vec<u8>,
    pub engine_boots: u32,
    pub engine_time: u32,
    pub user_name: Vec<u8>,
    pub auth_params: Vec<u8>,
    pub priv_params: Vec<u8>,
}

/// contextEngineID, contextName and the PDU.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedPdu {
    pub context_engine_id: Vec<u8>,
    pub context_name: Vec<u8>,
    pub pdu: Pdu,
}

/// The msgData CHOICE: plaintext or privacy-encrypted scoped PDU.
#[derive(Debug, Clone, PartialEq)]
pub enum ScopedPduData {
    Plain(ScopedPdu),
    Encrypted(Vec<u8>),
}

/// An SNMPv3 message (USM security model).
#[derive(Debug, Clone, PartialEq)]
pub struct V3Message {
    pub msg_id: i32,
    pub max_size: i32,
    pub flags: u8,
    pub security_model: i32,
    pub usm: UsmSecurityParameters,
    pub data: ScopedPduData,
}

/// Any SNMP message we speak.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Community(CommunityMessage),
    V3(V3Message),
}

impl Message {
    /// The PDU when it is readable (not encrypted).
    pub fn pdu(&self) -> Option<&Pdu> {
        match self {
            Message::Community(m) => Some(&m.pdu),
            Message::V3(V3Message {
                data: ScopedPduData::Plain(s),
                ..
            }) => Some(&s.pdu),
            Message::V3(_) => None,
        }
    }
}

pub(crate) fn encode_scoped_pdu(s: &ScopedPdu) -> Vec<u8> {
    let mut content = Vec::with_capacity(128);
    ber::write_tlv(&mut content, ber::TAG_OCTET_STRING, &s.context_engine_id);
    ber::write_tlv(&mut content, ber::TAG_OCTET_STRING, &s.context_name);
    s.pdu.encode(&mut content);
    let mut out = Vec::with_capacity(content.len() + 6);
    ber::write_tlv(&mut out, ber::TAG_SEQUENCE, &content);
    out
}

/// Decode a (decrypted) scoped PDU. Trailing bytes after the SEQUENCE are
/// allowed because DES-CBC pads the plaintext to the block size.
pub(crate) fn decode_scoped_pdu(bytes: &[u8]) -> Result<ScopedPdu> {
    decode_scoped(&mut Reader::new(bytes))
}

fn decode_scoped(r: &mut Reader<'_>) -> Result<ScopedPdu> {
    let mut s = r.sequence(ber::TAG_SEQUENCE, "scoped PDU")?;
    let context_engine_id = s.read_octets("contextEngineID")?.to_vec();
    let context_name = s.read_octets("contextName")?.to_vec();
    let pdu = Pdu::decode(&mut s)?;
    Ok(ScopedPdu {
        context_engine_id,
        context_name,
        pdu,
    })
}

/// Encode a v3 message; returns the bytes and the absolute range of the
/// authentication parameters inside them (for HMAC placement).
pub(crate) fn encode_v3(m: &V3Message) -> (Vec<u8>, Range<usize>) {
    let mut header = Vec::with_capacity(24);
    ber::write_i64(&mut header, ber::TAG_INTEGER, i64::from(m.msg_id));
    ber::write_i64(&mut header, ber::TAG_INTEGER, i64::from(m.max_size));
    ber::write_tlv(&mut header, ber::TAG_OCTET_STRING, &[m.flags]);
    ber::write_i64(&mut header, ber::TAG_INTEGER, i64::from(m.security_model));

    let u = &m.usm;
    let mut usm = Vec::with_capacity(96);
    ber::write_tlv(&mut usm, ber::TAG_OCTET_STRING, &u.engine_id);
    ber::write_i64(&mut usm, ber::TAG_INTEGER, i64::from(u.engine_boots));
    ber::write_i64(&mut usm, ber::TAG_INTEGER, i64::from(u.engine_time));
    ber::write_tlv(&mut usm, ber::TAG_OCTET_STRING, &u.user_name);
    let auth_in_usm = usm.len() + ber::header_len(u.auth_params.len());
    ber::write_tlv(&mut usm, ber::TAG_OCTET_STRING, &u.auth_params);
    ber::write_tlv(&mut usm, ber::TAG_OCTET_STRING, &u.priv_params);
    let mut usm_seq = Vec::with_capacity(usm.len() + 4);
    ber::write_tlv(&mut usm_seq, ber::TAG_SEQUENCE, &usm);
    let auth_in_usm_seq = ber::header_len(usm.len()) + auth_in_usm;

    let data = match &m.data {
        ScopedPduData::Plain(s) => encode_scoped_pdu(s),
        ScopedPduData::Encrypted(e) => {
            let mut v = Vec::with_capacity(e.len() + 4);
            ber::write_tlv(&mut v, ber::TAG_OCTET_STRING, e);
            v
        }
    };

    let mut content = Vec::with_capacity(header.len() + usm_seq.len() + data.len() + 16);
    ber::write_i64(&mut content, ber::TAG_INTEGER, 3);
    ber::write_tlv(&mut content, ber::TAG_SEQUENCE, &header);
    let auth_in_content = content.len() + ber::header_len(usm_seq.len()) + auth_in_usm_seq;
    ber::write_tlv(&mut content, ber::TAG_OCTET_STRING, &usm_seq);
    content.extend_from_slice(&data);

    let mut out = Vec::with_capacity(content.len() + 6);
    ber::write_tlv(&mut out, ber::TAG_SEQUENCE, &content);
    let start = ber::header_len(content.len()) + auth_in_content;
    (out, start..start + u.auth_params.len())
}

/// Encode any message. v3 messages are encoded as given (no signing or
/// encryption: use `usm::encode_secured` for that).
pub fn encode_message(m: &Message) -> Vec<u8> {
    match m {
        Message::Community(c) => {
            let version = match c.version {
                SnmpVersion::V1 => 0,
                _ => 1,
            };
            let mut content = Vec::with_capacity(64 + c.community.len());
            ber::write_i64(&mut content, ber::TAG_INTEGER, version);
            ber::write_tlv(&mut content, ber::TAG_OCTET_STRING, &c.community);
            c.pdu.encode(&mut content);
            let mut out = Vec::with_capacity(content.len() + 6);
            ber::write_tlv(&mut out, ber::TAG_SEQUENCE, &content);
            out
        }
        Message::V3(v) => encode_v3(v).0,
    }
}

/// Decode any message from untrusted bytes. v3 messages with the privacy
/// flag come back with `ScopedPduData::Encrypted`.
pub fn decode_message(bytes: &[u8]) -> Result<Message> {
    decode_with_auth_range(bytes).map(|(m, _)| m)
}

fn u32_field(v: i64, what: &'static str) -> Result<u32> {
    if (0..=i64::from(i32::MAX)).contains(&v) {
        Ok(v as u32)
    } else {
        Err(SnmpError::Malformed(what))
    }
}

/// Decode and also report the absolute range of msgAuthenticationParameters
/// (None for v1/v2c).
pub(crate) fn decode_with_auth_range(bytes: &[u8]) -> Result<(Message, Option<Range<usize>>)> {
    let mut top = Reader::new(bytes);
    let mut r = top.sequence(ber::TAG_SEQUENCE, "message")?;
    let version = r.read_i64("version")?;
    let msg = match version {
        0 | 1 => {
            let community = r.read_octets("community")?.to_vec();
            let pdu = Pdu::decode(&mut r)?;
            let version = if version == 0 {
                SnmpVersion::V1
            } else {
                SnmpVersion::V2c
            };
            (
                Message::Community(CommunityMessage {
                    version,
                    community,
                    pdu,
                }),
                None,
            )
        }
        3 => {
            let mut h = r.sequence(ber::TAG_SEQUENCE, "msgGlobalData")?;
            let msg_id = h.read_i32("msgID")?;
            let max_size = h.read_i32("msgMaxSize")?;
            let flags = match h.read_octets("msgFlags")? {
                [f] => *f,
                _ => return Err(SnmpError::Malformed("msgFlags length")),
            };
            let security_model = h.read_i32("msgSecurityModel")?;
            if security_model != SECURITY_MODEL_USM {
                return Err(SnmpError::Malformed("unsupported security model"));
            }
            let sp = r.expect(ber::TAG_OCTET_STRING, "msgSecurityParameters")?;
            let mut sp = r.enter(sp)?;
            let mut u = sp.sequence(ber::TAG_SEQUENCE, "UsmSecurityParameters")?;
            let engine_id = u.read_octets("msgAuthoritativeEngineID")?.to_vec();
            let engine_boots = u32_field(u.read_i64("engineBoots")?, "engineBoots")?;
            let engine_time = u32_field(u.read_i64("engineTime")?, "engineTime")?;
            let user_name = u.read_octets("msgUserName")?.to_vec();
            let auth_tlv = u.expect(ber::TAG_OCTET_STRING, "msgAuthenticationParameters")?;
            let auth_params = u.bytes(auth_tlv).to_vec();
            let priv_params = u.read_octets("msgPrivacyParameters")?.to_vec();
            let data = match r.peek_tag() {
                Some(ber::TAG_SEQUENCE) => ScopedPduData::Plain(decode_scoped(&mut r)?),
                Some(ber::TAG_OCTET_STRING) => {
                    ScopedPduData::Encrypted(r.read_octets("encryptedPDU")?.to_vec())
                }
                _ => return Err(SnmpError::Malformed("msgData")),
            };
            (
                Message::V3(V3Message {
                    msg_id,
                    max_size,
                    flags,
                    security_model,
                    usm: UsmSecurityParameters {
                        engine_id,
                        engine_boots,
                        engine_time,
                        user_name,
                        auth_params,
                        priv_params,
                    },
                    data,
                }),
                Some(auth_tlv.start..auth_tlv.end),
            )
        }
        _ => return Err(SnmpError::Malformed("unsupported SNMP version")),
    };
    Ok(msg)
}

/// Cheap header peek used by the transport to route a datagram: the
/// request-id (v1/v2c) or msgID (v3). Does not decode varbinds.
pub(crate) fn peek_id(bytes: &[u8]) -> Result<i32> {
    let mut top = Reader::new(bytes);
    let mut r = top.sequence(ber::TAG_SEQUENCE, "message")?;
    match r.read_i64("version")? {
        0 | 1 => {
            r.read_octets("community")?;
            let tlv = r.read_tlv()?;
            PduType::from_tag(tlv.tag)?;
            r.enter(tlv)?.read_i32("request-id")
        }
        3 => r
            .sequence(ber::TAG_SEQUENCE, "msgGlobalData")?
            .read_i32("msgID"),
        _ => Err(SnmpError::Malformed("unsupported SNMP version")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::snmp::value::{Oid, SnmpValue};
    use proptest::prelude::*;

    fn sample_pdu(t: PduType) -> Pdu {
        Pdu {
            pdu_type: t,
            request_id: 0x1234_5678,
            error_status: 0,
            error_index: 0,
            varbinds: vec![
                VarBind::new(
                    "1.3.6.1.2.1.1.5.0".parse().unwrap(),
                    SnmpValue::OctetString(b"sw1".to_vec()),
                ),
                VarBind::new(
                    "1.3.6.1.2.1.31.1.1.1.6.1".parse().unwrap(),
                    SnmpValue::Counter64(u64::MAX),
                ),
            ],
        }
    }

    #[test]
    fn community_roundtrip_and_known_bytes() {
        let m = Message::Community(CommunityMessage {
            version: SnmpVersion::V2c,
            community: b"public".to_vec(),
            pdu: Pdu::new(
                PduType::Get,
                1,
                vec![VarBind::null("1.3.6.1.2.1.1.1.0".parse().unwrap())],
            ),
        });
        let b = encode_message(&m);
        // Reference bytes as Net-SNMP's snmpget -v2c -c public sends them.
        let expected: &[u8] = &[
            0x30, 0x26, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0,
            0x19, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c,
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
        ];
        assert_eq!(b, expected);
        assert_eq!(decode_message(&b).unwrap(), m);
        assert_eq!(peek_id(&b).unwrap(), 1);
    }

    #[test]
    fn v3_roundtrip_and_auth_range() {
        let m = V3Message {
            msg_id: 77,
            max_size: 65507,
            flags: FLAG_AUTH | FLAG_REPORTABLE,
            security_model: 3,
            usm: UsmSecurityParameters {
                engine_id: vec![0x80, 0, 0x1f, 0x88, 4, 1, 2, 3],
                engine_boots: 3,
                engine_time: 1000,
                user_name: b"ops".to_vec(),
                auth_params: vec![0xaa; 12],
                priv_params: vec![],
            },
            data: ScopedPduData::Plain(ScopedPdu {
                context_engine_id: vec![1, 2],
                context_name: vec![],
                pdu: sample_pdu(PduType::Get),
            }),
        };
        let (b, range) = encode_v3(&m);
        assert_eq!(&b[range.clone()], &[0xaa; 12]);
        let (d, r2) = decode_with_auth_range(&b).unwrap();
        assert_eq!(d, Message::V3(m.clone()));
        assert_eq!(r2, Some(range));
        assert_eq!(peek_id(&b).unwrap(), 77);
        let mut m2 = m;
        m2.data = ScopedPduData::Encrypted(vec![9; 40]);
        let b = encode_message(&Message::V3(m2.clone()));
        assert_eq!(decode_message(&b).unwrap(), Message::V3(m2));
    }

    fn arb_pdu() -> impl Strategy<Value = Pdu> {
        let types = prop_oneof![
            Just(PduType::Get),
            Just(PduType::GetNext),
            Just(PduType::Response),
            Just(PduType::Set),
            Just(PduType::GetBulk),
            Just(PduType::Inform),
            Just(PduType::TrapV2),
            Just(PduType::Report),
        ];
        let vb = (
            crate::drivers::snmp::value::tests::arb_oid(),
            crate::drivers::snmp::value::tests::arb_value(),
        )
            .prop_map(|(oid, value): (Oid, SnmpValue)| VarBind { oid, value });
        (
            types,
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
            prop::collection::vec(vb, 0..8),
        )
            .prop_map(
                |(pdu_type, request_id, error_status, error_index, varbinds)| Pdu {
                    pdu_type,
                    request_id,
                    error_status,
                    error_index,
                    varbinds,
                },
            )
    }

    proptest! {
        #[test]
        fn message_roundtrip(pdu in arb_pdu(), community in prop::collection::vec(any::<u8>(), 0..300), v1 in any::<bool>()) {
            let m = Message::Community(CommunityMessage {
                version: if v1 { SnmpVersion::V1 } else { SnmpVersion::V2c },
                community,
                pdu,
            });
            let b = encode_message(&m);
            prop_assert_eq!(decode_message(&b).unwrap(), m);
        }

        #[test]
        fn decode_arbitrary_bytes_never_panics(b in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_message(&b);
            let _ = peek_id(&b);
            let _ = decode_scoped_pdu(&b);
        }

        #[test]
        fn decode_mutated_messages_never_panics(pdu in arb_pdu(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
            let mut b = encode_message(&Message::Community(CommunityMessage {
                version: SnmpVersion::V2c, community: b"public".to_vec(), pdu,
            }));
            for (i, x) in flips {
                let n = b.len();
                b[i % n] = x;
            }
            let cut = cut % (b.len() + 1);
            let _ = decode_message(&b[..cut]);
            let _ = decode_message(&b);
            let _ = peek_id(&b);
        }
    }

    #[test]
    fn deep_nesting_rejected() {
        // 200 nested SEQUENCEs: must be an error, not a stack overflow.
        let mut b = vec![0x05, 0x00];
        for _ in 0..200 {
            let mut o = Vec::new();
            ber::write_tlv(&mut o, 0x30, &b);
            b = o;
        }
        assert!(decode_message(&b).is_err());
    }
}
