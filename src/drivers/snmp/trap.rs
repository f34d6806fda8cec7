//! The receiving side of SNMP notifications: v1 Trap-PDUs (turned into v2 form as
//! RFC 3584 says), v2c traps and informs, and v3 USM traps and informs checked
//! against a device's own community or user. For v3 informs Drover is the
//! authoritative engine: it answers engine discovery and acknowledges informs with
//! a Response secured like the inform. Every input is untrusted: anything that does
//! not decode or authenticate is an error, never a panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::ber::{self, Reader};
use super::pdu::{
    decode_message, encode_message, CommunityMessage, Message, Pdu, PduType, ScopedPdu,
    ScopedPduData, UsmSecurityParameters, V3Message, FLAG_AUTH, FLAG_PRIV,
};
use super::usm::{self, LocalizedKeys};
use super::value::{Oid, SnmpValue, VarBind};
use super::{SnmpError, SnmpVersion, UsmUser};

type Result<T> = std::result::Result<T, SnmpError>;

const TAG_V1_TRAP: u8 = 0xa4;
/// RFC 3414's time window for messages to an authoritative engine.
const TIME_WINDOW: u32 = 150;
const SYS_UPTIME_0: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];
const SNMP_TRAP_OID_0: [u32; 11] = [1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
const SNMP_TRAPS: [u32; 9] = [1, 3, 6, 1, 6, 3, 1, 1, 5];

/// Names of the well-known notifications; others go by their OID.
const NAMES: [(&str, &[u32]); 9] = [
    ("coldStart", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 1]),
    ("warmStart", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 2]),
    ("linkDown", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 3]),
    ("linkUp", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 4]),
    ("authenticationFailure", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 5]),
    ("egpNeighborLoss", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 6]),
    ("nsNotifyStart", &[1, 3, 6, 1, 4, 1, 8072, 4, 0, 1]),
    ("nsNotifyShutdown", &[1, 3, 6, 1, 4, 1, 8072, 4, 0, 2]),
    ("nsNotifyRestart", &[1, 3, 6, 1, 4, 1, 8072, 4, 0, 3]),
];

/// The name of a well-known notification (a bounded set, fit for a metric label).
pub fn known_name(oid: &Oid) -> Option<&'static str> {
    NAMES
        .iter()
        .find(|(_, arcs)| oid.arcs() == *arcs)
        .map(|(n, _)| *n)
}

/// One notification, in v2 form.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub version: SnmpVersion,
    pub inform: bool,
    pub trap_oid: Oid,
    /// The sender's sysUpTime.0, in hundredths of a second.
    pub uptime: Option<u32>,
    /// The varbinds after sysUpTime.0 and snmpTrapOID.0.
    pub varbinds: Vec<VarBind>,
}

/// Who a message says it is from, read before anything is verified, to pick the
/// device whose credentials to check it with.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    Community {
        version: SnmpVersion,
        community: Vec<u8>,
    },
    /// An SNMPv3 message from `user` (empty for engine discovery).
    V3 { user: Vec<u8>, discovery: bool },
}

/// A device's credentials, as its inventory gives them.
#[derive(Clone)]
pub struct Credentials {
    pub version: SnmpVersion,
    pub community: String,
    pub user: Option<UsmUser>,
}

/// What to do with a message that passed the checks.
#[derive(Debug, Default)]
pub struct Accepted {
    /// None for engine discovery, which carries no notification.
    pub notification: Option<Notification>,
    /// Bytes to send back: an inform's acknowledgement or a discovery report.
    pub reply: Option<Vec<u8>>,
}

/// (user name, engine id).
type KeyId = (Vec<u8>, Vec<u8>);

/// Drover's engine as a notification receiver. Cheap to share.
pub struct Receiver {
    engine_id: Vec<u8>,
    boots: u32,
    started: Instant,
    /// Localized keys by (user, engine id): deriving them costs a million hash
    /// rounds, so it happens once per sender engine.
    keys: Mutex<HashMap<KeyId, Arc<LocalizedKeys>>>,
    salt: AtomicU64,
}

impl Default for Receiver {
    fn default() -> Receiver {
        Receiver::new()
    }
}

impl Receiver {
    pub fn new() -> Receiver {
        // RFC 3411 format 5 (octets), Net-SNMP's enterprise, random per process.
        let mut engine_id = vec![0x80, 0x00, 0x1f, 0x88, 0x05];
        engine_id.extend_from_slice(b"drover");
        engine_id.extend_from_slice(&rand::random::<[u8; 6]>());
        Receiver {
            engine_id,
            boots: 1,
            started: Instant::now(),
            keys: Mutex::new(HashMap::new()),
            salt: AtomicU64::new(rand::random::<u64>()),
        }
    }

    pub fn engine_id(&self) -> &[u8] {
        &self.engine_id
    }

    fn time(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Who the message claims to be from (nothing verified yet).
    pub fn claim(bytes: &[u8]) -> Result<Claim> {
        let mut top = Reader::new(bytes);
        let mut r = top.sequence(ber::TAG_SEQUENCE, "message")?;
        match r.read_i64("version")? {
            v @ (0 | 1) => Ok(Claim::Community {
                version: if v == 0 {
                    SnmpVersion::V1
                } else {
                    SnmpVersion::V2c
                },
                community: r.read_octets("community")?.to_vec(),
            }),
            3 => match decode_message(bytes)? {
                Message::V3(m) => Ok(Claim::V3 {
                    discovery: m.usm.engine_id.is_empty() && m.flags & FLAG_AUTH == 0,
                    user: m.usm.user_name,
                }),
                Message::Community(_) => Err(SnmpError::Malformed("version")),
            },
            _ => Err(SnmpError::Malformed("unsupported SNMP version")),
        }
    }

    /// Checks a message against `creds` and decodes it. A message these
    /// credentials do not authenticate is a `Security` error.
    pub fn accept(&self, bytes: &[u8], creds: &Credentials) -> Result<Accepted> {
        match Receiver::claim(bytes)? {
            Claim::Community { version, community } => {
                if creds.version == SnmpVersion::V3 || version != creds.version {
                    return Err(SnmpError::Security("version mismatch"));
                }
                if !ct_eq(&community, creds.community.as_bytes()) {
                    return Err(SnmpError::Security("community mismatch"));
                }
                if version == SnmpVersion::V1 {
                    return Ok(Accepted {
                        notification: Some(decode_v1_trap(bytes)?),
                        reply: None,
                    });
                }
                let Message::Community(m) = decode_message(bytes)? else {
                    return Err(SnmpError::Malformed("version"));
                };
                let n = notification(SnmpVersion::V2c, &m.pdu)?;
                let reply = n.inform.then(|| {
                    encode_message(&Message::Community(CommunityMessage {
                        version: SnmpVersion::V2c,
                        community: m.community.clone(),
                        pdu: response_to(&m.pdu),
                    }))
                });
                Ok(Accepted {
                    notification: Some(n),
                    reply,
                })
            }
            Claim::V3 {
                discovery: true, ..
            } if creds.version == SnmpVersion::V3 => self.discovery_report(bytes),
            Claim::V3 {
                discovery: true, ..
            } => Err(SnmpError::Security("version mismatch")),
            Claim::V3 { user, .. } => {
                let Some(u) = creds.user.as_ref().filter(|u| u.name.as_bytes() == user) else {
                    return Err(SnmpError::Security("unknown user"));
                };
                self.accept_v3(bytes, u)
            }
        }
    }

    fn keys_for(&self, user: &UsmUser, engine_id: &[u8]) -> Result<Arc<LocalizedKeys>> {
        let key = (user.name.as_bytes().to_vec(), engine_id.to_vec());
        if let Some(k) = self.keys.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(k);
        }
        let k = Arc::new(LocalizedKeys::derive(user, engine_id)?);
        if let Ok(mut m) = self.keys.lock() {
            // Bounded: senders pick engine ids, so an attacker could pick many.
            if m.len() >= 4096 {
                m.clear();
            }
            m.insert(key, k.clone());
        }
        Ok(k)
    }

    fn accept_v3(&self, bytes: &[u8], user: &UsmUser) -> Result<Accepted> {
        let Message::V3(raw) = decode_message(bytes)? else {
            return Err(SnmpError::Malformed("version"));
        };
        let keys = self.keys_for(user, &raw.usm.engine_id)?;
        let m = usm::open(bytes, &keys)?;
        // The device's configured security level is the least a message must have.
        let need = keys.level_flags();
        if m.flags & need != need {
            return Err(SnmpError::Security("security level below the device's"));
        }
        let Some(scoped) = usm::scoped(&m) else {
            return Err(SnmpError::Malformed("undecrypted scoped PDU"));
        };
        let n = notification(SnmpVersion::V3, &scoped.pdu)?;
        if !n.inform {
            return Ok(Accepted {
                notification: Some(n),
                reply: None,
            });
        }
        // An inform is sent to us as the authoritative engine: our engine id and
        // a time within the window, or it may be a replay.
        if m.usm.engine_id != self.engine_id {
            return Err(SnmpError::Security("inform for another engine"));
        }
        let now = self.time();
        if m.usm.engine_boots != self.boots || m.usm.engine_time.abs_diff(now) > TIME_WINDOW {
            return Err(SnmpError::Security("not in time window"));
        }
        let reply = V3Message {
            msg_id: m.msg_id,
            max_size: 65_507,
            flags: m.flags & (FLAG_AUTH | FLAG_PRIV),
            security_model: m.security_model,
            usm: UsmSecurityParameters {
                engine_id: self.engine_id.clone(),
                engine_boots: self.boots,
                engine_time: now,
                user_name: m.usm.user_name.clone(),
                auth_params: Vec::new(),
                priv_params: Vec::new(),
            },
            data: ScopedPduData::Plain(ScopedPdu {
                context_engine_id: scoped.context_engine_id.clone(),
                context_name: scoped.context_name.clone(),
                pdu: response_to(&scoped.pdu),
            }),
        };
        let salt = self.salt.fetch_add(1, Ordering::Relaxed);
        Ok(Accepted {
            notification: Some(n),
            reply: Some(usm::encode_secured(&reply, &keys, salt)?),
        })
    }

    /// RFC 3414 4: an unauthenticated probe learns our engine id, boots and time
    /// from an `unknownEngineID` report.
    fn discovery_report(&self, bytes: &[u8]) -> Result<Accepted> {
        let Message::V3(m) = decode_message(bytes)? else {
            return Err(SnmpError::Malformed("version"));
        };
        let request_id = usm::scoped(&m).map(|s| s.pdu.request_id).unwrap_or(0);
        let vb = usm::report_varbind("unknownEngineID", 1).ok_or(SnmpError::Malformed("report"))?;
        let reply = V3Message {
            msg_id: m.msg_id,
            max_size: 65_507,
            flags: 0,
            security_model: m.security_model,
            usm: UsmSecurityParameters {
                engine_id: self.engine_id.clone(),
                engine_boots: self.boots,
                engine_time: self.time(),
                user_name: m.usm.user_name.clone(),
                auth_params: Vec::new(),
                priv_params: Vec::new(),
            },
            data: ScopedPduData::Plain(ScopedPdu {
                context_engine_id: self.engine_id.clone(),
                context_name: Vec::new(),
                pdu: Pdu::new(PduType::Report, request_id, vec![vb]),
            }),
        };
        Ok(Accepted {
            notification: None,
            reply: Some(encode_message(&Message::V3(reply))),
        })
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn response_to(p: &Pdu) -> Pdu {
    Pdu::new(PduType::Response, p.request_id, p.varbinds.clone())
}

/// A v2 trap or inform's PDU: sysUpTime.0 and snmpTrapOID.0 first (RFC 3416 4.2.6).
fn notification(version: SnmpVersion, pdu: &Pdu) -> Result<Notification> {
    let inform = match pdu.pdu_type {
        PduType::TrapV2 => false,
        PduType::Inform => true,
        _ => return Err(SnmpError::Malformed("not a notification")),
    };
    let mut vbs = pdu.varbinds.iter();
    let uptime = match vbs.next() {
        Some(VarBind {
            oid,
            value: SnmpValue::TimeTicks(t),
        }) if oid.arcs() == SYS_UPTIME_0 => Some(*t),
        _ => return Err(SnmpError::Malformed("notification without sysUpTime.0")),
    };
    let trap_oid = match vbs.next() {
        Some(VarBind {
            oid,
            value: SnmpValue::ObjectId(t),
        }) if oid.arcs() == SNMP_TRAP_OID_0 => t.clone(),
        _ => return Err(SnmpError::Malformed("notification without snmpTrapOID.0")),
    };
    Ok(Notification {
        version,
        inform,
        trap_oid,
        uptime,
        varbinds: vbs.cloned().collect(),
    })
}

/// RFC 1157's Trap-PDU, as RFC 3584 3.1 maps it to a v2 notification.
fn decode_v1_trap(bytes: &[u8]) -> Result<Notification> {
    let mut top = Reader::new(bytes);
    let mut r = top.sequence(ber::TAG_SEQUENCE, "message")?;
    let _version = r.read_i64("version")?;
    let _community = r.read_octets("community")?;
    let mut p = r.sequence(TAG_V1_TRAP, "Trap-PDU")?;
    let ent = p.expect(ber::TAG_OID, "enterprise")?;
    let enterprise = Oid::from_arcs(ber::decode_oid(p.bytes(ent))?)?;
    let addr = p.read_tlv()?;
    if addr.tag != 0x40 || p.bytes(addr).len() != 4 {
        return Err(SnmpError::Malformed("agent-addr"));
    }
    let generic = p.read_i64("generic-trap")?;
    let specific = p.read_i64("specific-trap")?;
    let ts = p.read_tlv()?;
    let uptime = match SnmpValue::decode(ts.tag, p.bytes(ts))? {
        SnmpValue::TimeTicks(t) => Some(t),
        _ => return Err(SnmpError::Malformed("time-stamp")),
    };
    let mut list = p.sequence(ber::TAG_SEQUENCE, "varbind list")?;
    let mut varbinds = Vec::new();
    while !list.is_empty() {
        varbinds.push(VarBind::decode(&mut list)?);
    }
    let trap_oid = match generic {
        0..=5 => {
            let mut arcs = SNMP_TRAPS.to_vec();
            arcs.push(generic as u32 + 1);
            Oid::from_arcs(arcs)?
        }
        6 => {
            let specific =
                u32::try_from(specific).map_err(|_| SnmpError::Malformed("specific-trap"))?;
            let mut arcs = enterprise.arcs().to_vec();
            arcs.extend([0, specific]);
            Oid::from_arcs(arcs)?
        }
        _ => return Err(SnmpError::Malformed("generic-trap")),
    };
    Ok(Notification {
        version: SnmpVersion::V1,
        inform: false,
        trap_oid,
        uptime,
        varbinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::snmp::{AuthProtocol, PrivProtocol};
    use proptest::prelude::*;

    fn v2_trap(pdu_type: PduType, community: &str) -> Vec<u8> {
        let vbs = vec![
            VarBind::new(
                Oid::from_arcs(SYS_UPTIME_0.to_vec()).unwrap(),
                SnmpValue::TimeTicks(42),
            ),
            VarBind::new(
                Oid::from_arcs(SNMP_TRAP_OID_0.to_vec()).unwrap(),
                SnmpValue::ObjectId("1.3.6.1.6.3.1.1.5.3".parse().unwrap()),
            ),
            VarBind::new(
                "1.3.6.1.2.1.2.2.1.1.2".parse().unwrap(),
                SnmpValue::Integer(2),
            ),
        ];
        encode_message(&Message::Community(CommunityMessage {
            version: SnmpVersion::V2c,
            community: community.as_bytes().to_vec(),
            pdu: Pdu::new(pdu_type, 7, vbs),
        }))
    }

    fn creds(community: &str) -> Credentials {
        Credentials {
            version: SnmpVersion::V2c,
            community: community.into(),
            user: None,
        }
    }

    #[test]
    fn v2c_trap_and_inform_with_the_right_community_only() {
        let r = Receiver::new();
        let a = r
            .accept(&v2_trap(PduType::TrapV2, "tc"), &creds("tc"))
            .unwrap();
        let n = a.notification.unwrap();
        assert_eq!(known_name(&n.trap_oid), Some("linkDown"));
        assert_eq!(n.uptime, Some(42));
        assert_eq!(n.varbinds.len(), 1);
        assert!(a.reply.is_none());
        let e = r
            .accept(&v2_trap(PduType::TrapV2, "tc"), &creds("other"))
            .unwrap_err();
        assert_eq!(e.kind(), "security");
        let a = r
            .accept(&v2_trap(PduType::Inform, "tc"), &creds("tc"))
            .unwrap();
        let Message::Community(reply) = decode_message(&a.reply.unwrap()).unwrap() else {
            panic!("community reply");
        };
        assert_eq!(reply.pdu.pdu_type, PduType::Response);
        assert_eq!(reply.pdu.request_id, 7);
        // A GET is not a notification.
        assert!(r
            .accept(&v2_trap(PduType::Get, "tc"), &creds("tc"))
            .is_err());
    }

    #[test]
    fn v1_trap_maps_to_v2_form() {
        // A linkDown (generic 2) from enterprise 1.3.6.1.4.1.8072, with ifIndex.
        let mut pdu = Vec::new();
        ber::write_oid(&mut pdu, &[1, 3, 6, 1, 4, 1, 8072]);
        ber::write_tlv(&mut pdu, 0x40, &[127, 0, 0, 1]);
        ber::write_i64(&mut pdu, ber::TAG_INTEGER, 2);
        ber::write_i64(&mut pdu, ber::TAG_INTEGER, 0);
        ber::write_i64(&mut pdu, 0x43, 1234);
        let mut list = Vec::new();
        VarBind::new(
            "1.3.6.1.2.1.2.2.1.1.3".parse().unwrap(),
            SnmpValue::Integer(3),
        )
        .encode(&mut list);
        ber::write_tlv(&mut pdu, ber::TAG_SEQUENCE, &list);
        let mut msg = Vec::new();
        ber::write_i64(&mut msg, ber::TAG_INTEGER, 0);
        ber::write_tlv(&mut msg, ber::TAG_OCTET_STRING, b"tc");
        ber::write_tlv(&mut msg, TAG_V1_TRAP, &pdu);
        let mut bytes = Vec::new();
        ber::write_tlv(&mut bytes, ber::TAG_SEQUENCE, &msg);
        let c = Credentials {
            version: SnmpVersion::V1,
            community: "tc".into(),
            user: None,
        };
        let n = Receiver::new()
            .accept(&bytes, &c)
            .unwrap()
            .notification
            .unwrap();
        assert_eq!(n.trap_oid.to_string(), "1.3.6.1.6.3.1.1.5.3");
        assert_eq!(n.uptime, Some(1234));
        assert_eq!(n.varbinds.len(), 1);
    }

    #[test]
    fn v3_inform_is_answered_only_with_the_users_keys() {
        let r = Receiver::new();
        let user = UsmUser {
            name: "ops".into(),
            auth: Some((AuthProtocol::Sha256, "authpass1".into())),
            privacy: Some((PrivProtocol::Aes128, "privpass1".into())),
        };
        let c = Credentials {
            version: SnmpVersion::V3,
            community: String::new(),
            user: Some(user.clone()),
        };
        let keys = LocalizedKeys::derive(&user, r.engine_id()).unwrap();
        let Message::Community(plain) = decode_message(&v2_trap(PduType::Inform, "x")).unwrap()
        else {
            panic!()
        };
        let msg = V3Message {
            msg_id: 9,
            max_size: 65_507,
            flags: FLAG_AUTH | FLAG_PRIV | 0x04,
            security_model: 3,
            usm: UsmSecurityParameters {
                engine_id: r.engine_id().to_vec(),
                engine_boots: 1,
                engine_time: 0,
                user_name: b"ops".to_vec(),
                auth_params: Vec::new(),
                priv_params: Vec::new(),
            },
            data: ScopedPduData::Plain(ScopedPdu {
                context_engine_id: r.engine_id().to_vec(),
                context_name: Vec::new(),
                pdu: plain.pdu,
            }),
        };
        let bytes = usm::encode_secured(&msg, &keys, 1).unwrap();
        let a = r.accept(&bytes, &c).unwrap();
        assert!(a.notification.unwrap().inform);
        let reply = usm::open(&a.reply.unwrap(), &keys).unwrap();
        assert_eq!(usm::scoped(&reply).unwrap().pdu.pdu_type, PduType::Response);

        // Tampered: one flipped byte fails the digest.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(r.accept(&bad, &c).is_err());
        // Below the device's level (no privacy): refused.
        let mut weak = msg.clone();
        weak.flags = FLAG_AUTH;
        let bytes = usm::encode_secured(&weak, &keys, 2).unwrap();
        assert_eq!(r.accept(&bytes, &c).unwrap_err().kind(), "security");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let r = Receiver::new();
            let _ = Receiver::claim(&bytes);
            let _ = r.accept(&bytes, &creds("public"));
        }
    }
}
