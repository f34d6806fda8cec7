//! The SNMP codec on the hot path of every SNMP operation: encoding a GetRequest and
//! decoding its Response, for a v2c community message and for a v3 USM message with
//! authentication and privacy (SHA-256 + AES-128: sign, encrypt, verify, decrypt). Run
//! with `cargo bench --bench snmp_codec`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use drover::drivers::snmp::usm::{encode_secured, open, LocalizedKeys};
use drover::drivers::snmp::{
    decode_message, encode_message, AuthProtocol, CommunityMessage, Message, Oid, Pdu, PduType,
    PrivProtocol, ScopedPdu, ScopedPduData, SnmpValue, SnmpVersion, UsmSecurityParameters, UsmUser,
    V3Message, VarBind, FLAG_REPORTABLE,
};

const ENGINE: &[u8] = b"\x80\x00\x1f\x88\x04drover-bench";

fn oid(s: &str) -> Oid {
    s.parse().expect("valid OID")
}

/// What the fleet sends most: a GET of sysUpTime.0 (the health check, `snmp.get`).
fn get_pdu(id: i32) -> Pdu {
    Pdu::new(
        PduType::Get,
        id,
        vec![VarBind::null(oid("1.3.6.1.2.1.1.3.0"))],
    )
}

/// A grains-sized answer: the system group.
fn response_pdu(id: i32) -> Pdu {
    Pdu::new(
        PduType::Response,
        id,
        vec![
            VarBind::new(
                oid("1.3.6.1.2.1.1.1.0"),
                SnmpValue::OctetString(b"Linux sw-00001 6.1.0 #1 SMP x86_64".to_vec()),
            ),
            VarBind::new(
                oid("1.3.6.1.2.1.1.2.0"),
                SnmpValue::ObjectId(oid("1.3.6.1.4.1.8072.3.2.10")),
            ),
            VarBind::new(oid("1.3.6.1.2.1.1.3.0"), SnmpValue::TimeTicks(123_456)),
            VarBind::new(
                oid("1.3.6.1.2.1.1.5.0"),
                SnmpValue::OctetString(b"sw-00001".to_vec()),
            ),
        ],
    )
}

fn v2c(pdu: Pdu) -> Message {
    Message::Community(CommunityMessage {
        version: SnmpVersion::V2c,
        community: b"public".to_vec(),
        pdu,
    })
}

fn v3(keys: &LocalizedKeys, pdu: Pdu) -> V3Message {
    V3Message {
        msg_id: pdu.request_id,
        max_size: 65_507,
        flags: keys.level_flags() | FLAG_REPORTABLE,
        security_model: 3,
        usm: UsmSecurityParameters {
            engine_id: ENGINE.to_vec(),
            engine_boots: 3,
            engine_time: 4_000,
            user_name: b"drover".to_vec(),
            auth_params: vec![],
            priv_params: vec![],
        },
        data: ScopedPduData::Plain(ScopedPdu {
            context_engine_id: ENGINE.to_vec(),
            context_name: vec![],
            pdu,
        }),
    }
}

fn bench(c: &mut Criterion) {
    let get = v2c(get_pdu(42));
    let response = encode_message(&v2c(response_pdu(42)));
    c.bench_function("v2c/encode_get", |b| {
        b.iter(|| encode_message(black_box(&get)))
    });
    c.bench_function("v2c/decode_response", |b| {
        b.iter(|| decode_message(black_box(&response)).expect("decodes"))
    });

    let user = UsmUser {
        name: "drover".into(),
        auth: Some((AuthProtocol::Sha256, "authpassword".into())),
        privacy: Some((PrivProtocol::Aes128, "privpassword".into())),
    };
    // Localizing keys (1 MiB of hashing per password) happens once per agent, not
    // per message: outside the measured loop.
    let keys = LocalizedKeys::derive(&user, ENGINE).expect("keys");
    let get = v3(&keys, get_pdu(43));
    let response = encode_secured(&v3(&keys, response_pdu(43)), &keys, 7).expect("secured");
    let mut salt = 0u64;
    c.bench_function("v3_authpriv/encode_get", |b| {
        b.iter(|| {
            salt += 1;
            encode_secured(black_box(&get), &keys, salt).expect("secured")
        })
    });
    c.bench_function("v3_authpriv/decode_response", |b| {
        b.iter(|| open(black_box(&response), &keys).expect("opens"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
