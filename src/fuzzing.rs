//! Fuzzing entry points: one function per decoder that takes bytes from outside the
//! process. `fuzz/` (cargo-fuzz, nightly) and the stable harness in `tests/it/fuzz.rs`
//! (seed corpus plus seeded mutations, run by CI) both call these, so a crash found by
//! either reproduces in the other. Each function must return for every input: a panic
//! is a bug. Where a cheap property holds (decode → encode → decode is the identity),
//! it is asserted too, so the fuzzer finds wrong answers as well as crashes.
//!
//! Not part of the supported API; hidden from the docs.

use std::path::Path;
use std::sync::OnceLock;

use crate::drivers::snmp::{self, usm, AuthProtocol, PrivProtocol, UsmUser};
use crate::fleet::target::{Candidate, Target, TargetType};
use crate::master::salt::crypto::Crypticle;
use crate::master::salt::envelope::{self, PublishEnvelope};

/// One fuzz entry point: takes any bytes, must return.
pub type Entry = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/` call them.
pub const TARGETS: [(&str, Entry); 10] = [
    ("snmp_decode", snmp_decode),
    ("http_reply", http_reply),
    ("salt_envelope", salt_envelope),
    ("config_parse", config_parse),
    ("inventory_parse", inventory_parse),
    ("target_parse", target_parse),
    ("netconf_framing", netconf_framing),
    ("netconf_xml", netconf_xml),
    ("ssh_transport", ssh_transport),
    ("sls_pipeline", sls_pipeline),
];

/// Inputs larger than this are cut: the decoders' caps are far below it, and longer
/// inputs only slow the fuzzer down.
const MAX_INPUT: usize = 64 * 1024;

fn cap(data: &[u8]) -> &[u8] {
    &data[..data.len().min(MAX_INPUT)]
}

fn snmp_keys() -> &'static [usm::LocalizedKeys] {
    static KEYS: OnceLock<Vec<usm::LocalizedKeys>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let users = [
            (AuthProtocol::Md5, PrivProtocol::Des),
            (AuthProtocol::Sha1, PrivProtocol::Aes128),
            (AuthProtocol::Sha256, PrivProtocol::Aes256),
            (AuthProtocol::Sha512, PrivProtocol::Aes128),
        ];
        users
            .into_iter()
            .filter_map(|(a, p)| {
                let user = UsmUser {
                    name: "fuzz".into(),
                    auth: Some((a, "fuzz-auth-password".into())),
                    privacy: Some((p, "fuzz-priv-password".into())),
                };
                usm::LocalizedKeys::derive(&user, b"\x80\x00\x1f\x88\x04fuzz").ok()
            })
            .collect()
    })
}

/// The SNMP message decoder (BER, v1/v2c/v3 PDUs) and v3 USM opening (digest check,
/// decryption of the scoped PDU) as a reply from a device reaches them.
pub fn snmp_decode(data: &[u8]) {
    let data = cap(data);
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match snmp::decode_message(rest) {
        Ok(m) => {
            // Whatever decodes must survive its own encoding unchanged.
            let again = snmp::encode_message(&m);
            match snmp::decode_message(&again) {
                Ok(m2) => assert_eq!(m, m2, "SNMP decode/encode round trip changed the message"),
                Err(e) => panic!("SNMP message re-encoded from a decoded one fails: {e}"),
            }
        }
        Err(e) => {
            let _ = (e.kind(), e.is_device_failure(), e.to_string());
        }
    }
    let keys = snmp_keys();
    if let Some(k) = keys.get(usize::from(selector) % keys.len().max(1)) {
        if let Ok(m) = usm::open(rest, k) {
            if let Some(s) = usm::scoped(&m) {
                let _ = usm::report_kind(&s.pdu.varbinds);
                for vb in &s.pdu.varbinds {
                    let _ = vb.to_json();
                }
            }
        }
    }
}

fn salt_key() -> &'static Crypticle {
    static KEY: OnceLock<Crypticle> = OnceLock::new();
    KEY.get_or_init(|| {
        // A fixed key: the fuzzer must be able to replay an input exactly.
        let key = "ZHJvdmVyLWZ1enotZml4ZWQta2V5LWRyb3Zlci1mdXp6LWZpeGVkLWtleS1kcm92ZXItZnV6ei0=";
        match Crypticle::from_key_string(key.as_bytes()) {
            Ok(c) => c,
            Err(e) => panic!("fixed fuzz key is invalid: {e}"),
        }
    })
}

/// The Salt master envelope decoder: publication frames (msgpack envelope, signature
/// fields), the AES framing (HMAC, CBC, padding, `pickle::` marker), the decrypted
/// job load (msgpack, serial, required fields) and the msgpack ↔ JSON conversion.
/// The first byte picks the layer, so the fuzzer does not have to forge an HMAC to
/// reach the inner ones.
pub fn salt_envelope(data: &[u8]) {
    let data = cap(data);
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let aes = salt_key();
    match selector % 4 {
        0 => {
            // One frame, then the same bytes split as [topic, payload].
            let mid = rest.len() / 2;
            for frames in [
                vec![rest.to_vec()],
                vec![rest[..mid].to_vec(), rest[mid..].to_vec()],
            ] {
                if let Ok(env) = envelope::parse_publish_frames(&frames) {
                    let _ = env.verify_signature(None, false);
                    if let Ok(v) = env.open(aes, Some(0)) {
                        job_fields(&v.load);
                    }
                }
            }
        }
        1 => {
            // The load as it would be after a good HMAC: reaches the inner checks.
            let env = PublishEnvelope {
                load: aes.dumps(rest, None),
                sig: None,
            };
            match env.open(aes, None) {
                Ok(v) => job_fields(&v.load),
                Err(e) => {
                    let _ = e.label();
                }
            }
        }
        2 => {
            let _ = aes.loads(rest, None);
            let _ = aes.loads(rest, Some("0123456789abcdef0123456789abcdef"));
            let _ = aes.hmac_matches(rest);
        }
        _ => {
            if let Ok(v) = envelope::unpack(rest) {
                let j = envelope::to_json(&v);
                // JSON → msgpack → JSON is the identity on what to_json produces.
                let back = envelope::to_json(&envelope::from_json(&j));
                assert_eq!(j, back, "msgpack/JSON conversion is not stable");
                let packed = envelope::pack(&v);
                if envelope::unpack(&packed).is_err() {
                    panic!("msgpack re-encoded from a decoded value does not decode");
                }
            }
        }
    }
}

/// What the link does with a verified load: text fields, args split into kwargs.
fn job_fields(load: &rmpv::Value) {
    for field in ["tgt", "jid", "fun", "tgt_type", "user"] {
        if let Some(v) = envelope::get(load, field) {
            let _ = envelope::as_text(v);
            let _ = envelope::to_json(v);
        }
    }
    if let Some(serde_json::Value::Array(args)) = envelope::get(load, "arg").map(envelope::to_json)
    {
        let _ = envelope::split_args(&args);
    }
}

/// A REST device's HTTP/1.1 reply as the `http://` client reads it: head, framing
/// (length, chunked, until close), caps. The first byte sets how many bytes each read
/// returns (1 to 256), so replies split at every point are tried.
pub fn http_reply(data: &[u8]) {
    let data = cap(data);
    let Some((&step, reply)) = data.split_first() else {
        return;
    };
    let stream = tokio::io::join(
        Trickle {
            data: reply,
            step: usize::from(step) + 1,
        },
        tokio::io::sink(),
    );
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    match rt.block_on(crate::drivers::http1::exchange_for_fuzzing(stream)) {
        Ok((r, _keep)) => {
            assert!(r.body.len() <= crate::drivers::MAX_DEVICE_BODY);
            assert!(r.body.len() <= reply.len(), "a body longer than the input");
        }
        Err(e) => {
            let _ = (e.kind(), e.to_string());
        }
    }
}

/// Reads out a byte slice `step` bytes at a time.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl tokio::io::AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        std::task::Poll::Ready(Ok(()))
    }
}

/// The daemon config parser and its validation.
pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(cap(data)) else {
        return;
    };
    match crate::config::Config::parse(text, Path::new("fuzz.toml")) {
        Ok(c) => {
            let _ = c.problems();
            let _ = c.inventory_paths();
        }
        Err(e) => {
            let _ = (e.kind(), e.to_string());
        }
    }
}

/// The inventory parser: devices, ranges with templates, driver settings, grains.
/// Documents with `include` are skipped: includes read files, which a fuzzer must
/// not steer (`/dev/zero`); the include logic has its own unit tests.
pub fn inventory_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(cap(data)) else {
        return;
    };
    if let Ok(table) = text.parse::<toml::Table>() {
        if table.contains_key("include") {
            return;
        }
    }
    match crate::inventory::Inventory::parse(text, Path::new("/nonexistent/fuzz/inventory.toml")) {
        Ok(inv) => {
            for d in &inv.devices {
                let _ = (d.address(), d.proxytype());
            }
        }
        Err(e) => {
            let _ = (e.kind(), e.to_string());
        }
    }
}

/// The target expression parser (every target type) and matching against a few
/// devices. The first byte picks the type.
pub fn target_parse(data: &[u8]) {
    let data = cap(data);
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(expr) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = TargetType::ALL[usize::from(selector) % TargetType::ALL.len()];
    let _ = expr.parse::<TargetType>();
    let target = match Target::parse(expr, kind) {
        Ok(t) => t,
        Err(e) => {
            let _ = (e.kind(), e.to_string());
            return;
        }
    };
    let grains = serde_json::json!({
        "os": "RestExampleOS",
        "role": ["core", "edge"],
        "site": {"name": "lab", "rack": 7},
        "n": 3,
        "empty": null,
    });
    let candidates = [
        Candidate {
            id: "rest-0001",
            grains: &grains,
            pillar: &grains,
            address: "127.0.0.1".parse().ok(),
        },
        Candidate {
            id: "sw-core-1",
            grains: &serde_json::Value::Null,
            pillar: &serde_json::Value::Null,
            address: "2001:db8::1".parse().ok(),
        },
    ];
    for c in &candidates {
        let _ = target.matches(c);
    }
    let _ = target.as_list();
}

/// The NETCONF SSH client's engine fed what a server might send: the first byte
/// picks how the rest is split into reads. It must return an error or wait for
/// more, never panic; after an error it refuses more input.
pub fn ssh_transport(data: &[u8]) {
    use crate::drivers::netconf::ssh::{Credentials, Engine};
    let Some((&mode, rest)) = cap(data).split_first() else {
        return;
    };
    let step = usize::from(mode) + 1;
    let mut e = Engine::new(
        "u".into(),
        Credentials::Password(crate::secrets::Secret::new("p")),
        Box::new(|_| true),
        "netconf",
    );
    let mut failed = false;
    for piece in rest.chunks(step) {
        if e.feed(piece).is_err() {
            failed = true;
            break;
        }
    }
    if failed {
        assert!(e.feed(b"more").is_err(), "accepted input after an error");
    }
    let n = e.outgoing().len();
    e.written(n);
    assert!(e.outgoing().is_empty());
}

/// NETCONF framing: the first byte picks the framing and how the rest is split into
/// reads; every message decoded must fit the cap, and a chunked re-encoding of the
/// decoded messages must decode to the same messages.
pub fn netconf_framing(data: &[u8]) {
    use crate::drivers::netconf::framing::{encode_chunked, Decoder, Framing};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framing = if mode & 1 == 0 {
        Framing::EndOfMessage
    } else {
        Framing::Chunked
    };
    let step = usize::from(mode >> 1) + 1;
    const CAP: usize = 4096;
    let mut d = Decoder::new(framing, CAP);
    let mut msgs = Vec::new();
    'feed: for part in rest.chunks(step) {
        if d.extend(part).is_err() {
            break;
        }
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    assert!(m.len() <= CAP);
                    msgs.push(m);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
        assert!(d.pending() <= 2 * CAP + 1024 + step);
    }
    let mut wire = Vec::new();
    for m in msgs.iter().filter(|m| !m.is_empty()) {
        encode_chunked(m, 7, &mut wire);
    }
    let mut d = Decoder::new(Framing::Chunked, CAP);
    d.extend(&wire).expect("re-encoded within the cap");
    let mut again = Vec::new();
    while let Some(m) = d.next_message().expect("re-encoded decodes") {
        again.push(m);
    }
    let want: Vec<_> = msgs.into_iter().filter(|m| !m.is_empty()).collect();
    assert_eq!(again, want);
}

/// NETCONF XML to JSON: must return for any text, and the JSON of a parsed
/// document must serialise.
pub fn netconf_xml(data: &[u8]) {
    use crate::drivers::netconf::xml;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(root) = xml::parse_document(text) {
        let j = root.to_json_document();
        let _ = serde_json::to_string(&j).expect("JSON serialises");
        assert!(text.get(root.outer.clone()).is_some());
        assert!(text.get(root.inner.clone()).is_some());
    }
    let _ = xml::to_json(text);
}

/// The SLS pipeline on hostile text: Jinja (minijinja, fuel-bounded), the YAML
/// stage and the compiler (requisites, order, extend), with no device behind it.
pub fn sls_pipeline(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(cap(data)) else {
        return;
    };
    crate::states::fuzz_pipeline(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::snmp::{
        CommunityMessage, Message, Oid, Pdu, PduType, ScopedPdu, ScopedPduData, SnmpValue,
        SnmpVersion, UsmSecurityParameters, V3Message, VarBind, FLAG_AUTH, FLAG_PRIV,
        FLAG_REPORTABLE,
    };
    use rmpv::Value;

    fn oid(s: &str) -> Oid {
        Oid::parse_numeric(s).unwrap()
    }

    fn snmp_seeds() -> Vec<Vec<u8>> {
        let varbinds = vec![
            VarBind::new(
                oid("1.3.6.1.2.1.1.1.0"),
                SnmpValue::OctetString(b"Linux sw1".to_vec()),
            ),
            VarBind::new(
                oid("1.3.6.1.2.1.1.2.0"),
                SnmpValue::ObjectId(oid("1.3.6.1.4.1.8072")),
            ),
            VarBind::new(oid("1.3.6.1.2.1.1.3.0"), SnmpValue::TimeTicks(123_456)),
            VarBind::new(
                oid("1.3.6.1.2.1.2.2.1.5.1"),
                SnmpValue::Gauge32(1_000_000_000),
            ),
            VarBind::new(
                oid("1.3.6.1.2.1.31.1.1.1.6.1"),
                SnmpValue::Counter64(u64::MAX),
            ),
            VarBind::new(
                oid("1.3.6.1.2.1.4.20.1.1.10.0.0.1"),
                SnmpValue::IpAddress([10, 0, 0, 1]),
            ),
            VarBind::new(oid("1.3.6.1.2.1.2.2.1.10.1"), SnmpValue::Counter32(7)),
            VarBind::new(oid("1.3.6.1.2.1.2.2.1.8.1"), SnmpValue::Integer(-1)),
            VarBind::new(oid("1.3.6.1.2.1.99.0"), SnmpValue::NoSuchObject),
            VarBind::new(oid("1.3.6.1.2.1.99.1"), SnmpValue::EndOfMibView),
            VarBind::null(oid("1.3.6.1.2.1.1.5.0")),
        ];
        let mut out = Vec::new();
        for (version, ty) in [
            (SnmpVersion::V1, PduType::Get),
            (SnmpVersion::V2c, PduType::Response),
            (SnmpVersion::V2c, PduType::GetBulk),
        ] {
            let m = Message::Community(CommunityMessage {
                version,
                community: b"public".to_vec(),
                pdu: Pdu::new(ty, 42, varbinds.clone()),
            });
            out.push([&[0u8][..], &snmp::encode_message(&m)].concat());
        }
        for (k, keys) in snmp_keys().iter().enumerate() {
            for flags in [0, FLAG_AUTH, FLAG_AUTH | FLAG_PRIV] {
                let m = V3Message {
                    msg_id: 7,
                    max_size: 65507,
                    flags: flags | FLAG_REPORTABLE,
                    security_model: 3,
                    usm: UsmSecurityParameters {
                        engine_id: b"\x80\x00\x1f\x88\x04fuzz".to_vec(),
                        engine_boots: 3,
                        engine_time: 1000,
                        user_name: b"fuzz".to_vec(),
                        auth_params: Vec::new(),
                        priv_params: Vec::new(),
                    },
                    data: ScopedPduData::Plain(ScopedPdu {
                        context_engine_id: b"\x80\x00\x1f\x88\x04fuzz".to_vec(),
                        context_name: Vec::new(),
                        pdu: Pdu::new(PduType::Response, 9, varbinds[..4].to_vec()),
                    }),
                };
                let bytes = usm::encode_secured(&m, keys, 0x1122_3344_5566_7788).unwrap();
                // The selector picks the same keys the message was sealed with.
                out.push([&[k as u8][..], &bytes].concat());
            }
        }
        out
    }

    fn salt_seeds() -> Vec<Vec<u8>> {
        let job = envelope::pack(&envelope::map(vec![
            ("fun", Value::from("test.ping")),
            (
                "arg",
                Value::Array(vec![
                    Value::from("x"),
                    envelope::map(vec![
                        ("__kwarg__", Value::from(true)),
                        ("k", Value::from(1)),
                    ]),
                ]),
            ),
            ("tgt", Value::from("rest-*")),
            ("tgt_type", Value::from("glob")),
            ("jid", Value::from("20261124210538862140")),
            ("user", Value::from("root")),
            ("serial", Value::from(5)),
        ]));
        let aes = salt_key();
        let sealed = aes.dumps(&job, None);
        let outer = envelope::pack(&envelope::map(vec![
            ("enc", Value::from("aes")),
            ("load", Value::Binary(sealed.clone())),
            ("sig", Value::Binary(vec![0; 256])),
            ("sig_algo", Value::from("PKCS1v15-SHA1")),
        ]));
        vec![
            [&[0u8][..], &outer].concat(),
            [&[1u8][..], &job].concat(),
            [&[2u8][..], &sealed].concat(),
            [
                &[2u8][..],
                &aes.dumps(b"reply", Some("0123456789abcdef0123456789abcdef")),
            ]
            .concat(),
            [&[3u8][..], &job].concat(),
        ]
    }

    fn text_seeds(texts: &[&str], selectors: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for t in texts {
            if selectors.is_empty() {
                out.push(t.as_bytes().to_vec());
            }
            for s in selectors {
                out.push([&[*s][..], t.as_bytes()].concat());
            }
        }
        out
    }

    /// Writes `fuzz/corpus/<target>/seed-*` from the encoders and the shipped configs:
    /// `cargo test --lib fuzzing::tests::write_seed_corpus -- --ignored`.
    #[test]
    #[ignore = "writes the checked-in seed corpus; run by hand after a format change"]
    fn write_seed_corpus() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        let config = read("config/drover.toml");
        let core = read("config/inventory/core.toml");
        let lab = read("config/inventory/lab.toml");
        let sets: Vec<(&str, Vec<Vec<u8>>)> = vec![
            ("snmp_decode", snmp_seeds()),
            ("salt_envelope", salt_seeds()),
            (
                "config_parse",
                text_seeds(
                    &[
                        &config,
                        "[fleet]\nmax_in_flight = 4\njob_timeout = \"1m 30s\"\n[http]\nlisten = \"0.0.0.0:80\"\n",
                        "[master]\nkind = \"salt\"\nhost = \"salt\"\n",
                    ],
                    &[],
                ),
            ),
            (
                "inventory_parse",
                text_seeds(
                    &[
                        &core,
                        &lab,
                        "[[device_range]]\nid = \"sw-{n:04}\"\nstart = 1\ncount = 3\nproxytype = \"snmp\"\nhost = \"10.0.0.{n}\"\nversion = \"3\"\nuser = \"u\"\nauth_protocol = \"SHA\"\nauth_password = \"authpass1\"\npriv_protocol = \"AES\"\npriv_password = \"privpass1\"\n",
                    ],
                    &[],
                ),
            ),
            (
                "target_parse",
                text_seeds(
                    &[
                        "rest-0*",
                        "rest-000[1-3]",
                        "^sw-(core|edge)-\\d+$",
                        "rest-0001,sw-core-1",
                        "os:RestExampleOS",
                        "site:name:l*",
                        "role:c.*",
                        "10.0.0.0/8",
                        "2001:db8::/32",
                        "G@role:core or rest-000[1-3]",
                        "not ( L@a,b and E@^x ) or S@127.0.0.1 and P@os:R.*",
                    ],
                    &[0, 1, 2, 3, 4, 5, 6],
                ),
            ),
        ];
        for (target, seeds) in sets {
            let dir = root.join("fuzz/corpus").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:03}")), s).unwrap();
            }
        }
    }

    #[test]
    fn every_target_accepts_empty_and_tiny_inputs() {
        for (_, f) in TARGETS {
            for input in [&b""[..], b"\0", b"\xff", b"\x30\x00", b"\x03[[device]]"] {
                f(input);
            }
        }
    }
}
