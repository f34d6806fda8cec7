//! Salt envelopes on the wire: msgpack packing as Salt does it (text and bytes both as
//! msgpack str), conversion to and from JSON, and verified decoding of publications
//! (signature, HMAC, decryption, serial replay protection, required fields).

use rmpv::Value;
use rsa::PublicKey;

use super::crypto::{self, Crypticle, CryptoError};

/// Maximum nesting accepted when decoding untrusted msgpack.
const MAX_DEPTH: usize = 64;

/// Why a message from the master was rejected. `label()` is a bounded metric label.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not valid msgpack")]
    Msgpack,
    #[error("envelope is not a map or lacks a field: {0}")]
    Malformed(&'static str),
    #[error("ignored envelope encoding {0:?}")]
    NotAes(String),
    #[error("publication signature missing")]
    SignatureMissing,
    #[error("publication signature invalid")]
    Signature,
    #[error("decryption failed: {0}")]
    Crypto(#[source] CryptoError),
    #[error("serial {got} not above {last}")]
    Replay { got: i64, last: i64 },
    #[error("multi-frame message with {0} frames")]
    Frames(usize),
}

impl EnvelopeError {
    /// Bounded label for `drover_master_rejected_total{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Msgpack => "garbage",
            Self::Malformed(_) => "malformed",
            Self::NotAes(_) => "not_aes",
            Self::SignatureMissing => "unsigned",
            Self::Signature => "bad_signature",
            Self::Crypto(CryptoError::Hmac) => "bad_hmac",
            Self::Crypto(CryptoError::Truncated) => "truncated",
            Self::Crypto(_) => "decrypt",
            Self::Replay { .. } => "replay",
            Self::Frames(_) => "framing",
        }
    }
}

/// Decodes untrusted msgpack bytes into an owned value (bounded depth, no preallocation
/// from attacker-controlled lengths).
pub fn unpack(data: &[u8]) -> Result<Value, EnvelopeError> {
    let mut rd = data;
    rmpv::decode::read_value_ref_with_max_depth(&mut rd, MAX_DEPTH)
        .map(|v| v.to_owned())
        .map_err(|_| EnvelopeError::Msgpack)
}

/// Encodes a value (infallible for in-memory buffers).
pub fn pack(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

/// Looks up a string key in a msgpack map.
pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| as_bytes(k) == Some(key.as_bytes()))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Bytes of a msgpack str or bin.
pub fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

/// Text of a msgpack str/bin that is valid UTF-8.
pub fn as_text(v: &Value) -> Option<&str> {
    as_bytes(v).and_then(|b| std::str::from_utf8(b).ok())
}

/// Builds a msgpack map from string keys.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// msgpack → JSON the way Salt's `decode_embedded_strs` sees it (invalid UTF-8 is
/// rendered lossily).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                J::from(u)
            } else if let Some(s) = i.as_i64() {
                J::from(s)
            } else {
                J::Null
            }
        }
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(_) | Value::Binary(_) => {
                            String::from_utf8_lossy(as_bytes(k).unwrap_or_default()).into_owned()
                        }
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        // Ext 78 (datetime) is ASCII text; other ext types have no JSON meaning.
        Value::Ext(78, data) => J::String(String::from_utf8_lossy(data).into_owned()),
        Value::Ext(_, _) => J::Null,
    }
}

/// JSON → msgpack.
pub fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        J::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// A publication that passed every check, still as msgpack.
#[derive(Debug, Clone)]
pub struct VerifiedPublish {
    pub load: Value,
    pub serial: Option<i64>,
}

/// Outer publication envelope, split out so a failed HMAC can be retried with a new key.
#[derive(Debug, Clone)]
pub struct PublishEnvelope {
    pub load: Vec<u8>,
    pub sig: Option<(Vec<u8>, String)>,
}

/// Parses the frames of one SUB message: one frame, or `[topic, payload]`.
pub fn parse_publish_frames(frames: &[Vec<u8>]) -> Result<PublishEnvelope, EnvelopeError> {
    let payload = match frames {
        [one] => one,
        [_topic, payload] => payload,
        other => return Err(EnvelopeError::Frames(other.len())),
    };
    let env = unpack(payload)?;
    if !matches!(env, Value::Map(_)) {
        return Err(EnvelopeError::Malformed("envelope"));
    }
    let enc = get(&env, "enc")
        .and_then(as_text)
        .ok_or(EnvelopeError::Malformed("enc"))?;
    if enc != "aes" {
        return Err(EnvelopeError::NotAes(enc.chars().take(16).collect()));
    }
    let load = get(&env, "load")
        .and_then(as_bytes)
        .ok_or(EnvelopeError::Malformed("load"))?
        .to_vec();
    let sig = match get(&env, "sig") {
        None | Some(Value::Nil) => None,
        Some(s) => {
            let sig = as_bytes(s).ok_or(EnvelopeError::Malformed("sig"))?.to_vec();
            let algo = get(&env, "sig_algo")
                .and_then(as_text)
                .unwrap_or("PKCS1v15-SHA1")
                .to_owned();
            Some((sig, algo))
        }
    };
    Ok(PublishEnvelope { load, sig })
}

impl PublishEnvelope {
    /// Verifies the signature (mandatory when `require_sig`, or whenever present and a key
    /// is known).
    pub fn verify_signature(
        &self,
        master: Option<&PublicKey>,
        require_sig: bool,
    ) -> Result<bool, EnvelopeError> {
        match (&self.sig, master) {
            (Some((sig, algo)), Some(key)) => {
                crypto::verify(key, algo, &self.load, sig).map_err(|_| EnvelopeError::Signature)?;
                Ok(true)
            }
            (None, _) if require_sig => Err(EnvelopeError::SignatureMissing),
            _ => Ok(false),
        }
    }

    /// Decrypts with the master AES key and enforces the serial (`serial > last`).
    pub fn open(
        &self,
        aes: &Crypticle,
        last_serial: Option<i64>,
    ) -> Result<VerifiedPublish, EnvelopeError> {
        let plain = aes.loads(&self.load, None).map_err(EnvelopeError::Crypto)?;
        let mut load = unpack(&plain)?;
        let mut serial = None;
        if let Value::Map(entries) = &mut load {
            if let Some(pos) = entries
                .iter()
                .position(|(k, _)| as_bytes(k) == Some(b"serial"))
            {
                let (_, v) = entries.remove(pos);
                serial = v.as_i64();
            }
        } else {
            return Err(EnvelopeError::Malformed("load"));
        }
        if let (Some(got), Some(last)) = (serial, last_serial) {
            if got <= last {
                return Err(EnvelopeError::Replay { got, last });
            }
        }
        for field in ["tgt", "jid", "fun", "arg"] {
            if get(&load, field).is_none() {
                return Err(EnvelopeError::Malformed("job field"));
            }
        }
        Ok(VerifiedPublish { load, serial })
    }
}

/// Splits Salt's `arg` list into positional args and the merged `__kwarg__` dicts.
pub fn split_args(
    arg: &[serde_json::Value],
) -> (
    Vec<serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
) {
    let mut positional = Vec::new();
    let mut kwarg = serde_json::Map::new();
    for a in arg {
        match a {
            serde_json::Value::Object(o)
                if o.get("__kwarg__") == Some(&serde_json::Value::Bool(true)) =>
            {
                for (k, v) in o {
                    if k != "__kwarg__" {
                        kwarg.insert(k.clone(), v.clone());
                    }
                }
            }
            other => positional.push(other.clone()),
        }
    }
    (positional, kwarg)
}

/// The inverse of [`split_args`]: Salt's packed argument list, keyword arguments in
/// a trailing `{"__kwarg__": true, ...}` map (none when there are none).
pub fn join_args(
    arg: &[serde_json::Value],
    kwarg: &serde_json::Map<String, serde_json::Value>,
) -> Vec<serde_json::Value> {
    let mut out = arg.to_vec();
    if !kwarg.is_empty() {
        let mut packed = kwarg.clone();
        packed.insert("__kwarg__".to_owned(), serde_json::Value::Bool(true));
        out.push(serde_json::Value::Object(packed));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::salt::crypto::generate_key_string;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::PrivateKey;

    use crate::master::salt::fixtures::*;

    fn job(serial: Option<i64>) -> Vec<u8> {
        let mut e = vec![
            ("fun", Value::from("test.ping")),
            ("arg", Value::Array(vec![])),
            ("tgt", Value::from("*")),
            ("jid", Value::from("20261124210538862140")),
            ("tgt_type", Value::from("glob")),
        ];
        if let Some(s) = serial {
            e.push(("serial", Value::from(s)));
        }
        pack(&map(e))
    }

    fn envelope(aes: &Crypticle, key: Option<&PrivateKey>, payload: &[u8]) -> Vec<u8> {
        let load = aes.dumps(payload, None);
        let mut e = vec![("enc", Value::from("aes"))];
        if let Some(k) = key {
            let sig = crypto::sign_sha1(k, &load).expect("sign");
            e.push(("sig", Value::Binary(sig)));
            e.push(("sig_algo", Value::from("PKCS1v15-SHA1")));
        }
        e.push(("load", Value::Binary(load)));
        pack(&map(e))
    }

    fn aes() -> Crypticle {
        Crypticle::from_key_string(generate_key_string().as_bytes()).expect("key")
    }

    #[test]
    fn accepts_signed_publication_and_strips_serial() {
        let key = PrivateKey::from_pkcs1_pem(FIX_PRIV_PEM).expect("key");
        let a = aes();
        let frame = envelope(&a, Some(&key), &job(Some(4)));
        let env = parse_publish_frames(&[frame]).expect("parse");
        assert!(env
            .verify_signature(Some(key.as_public_key()), true)
            .expect("sig"));
        let v = env.open(&a, Some(3)).expect("open");
        assert_eq!(v.serial, Some(4));
        assert!(get(&v.load, "serial").is_none());
        // Two-frame (zmq_filtering) form.
        let frame = envelope(&a, Some(&key), &job(Some(5)));
        assert!(parse_publish_frames(&[b"broadcast".to_vec(), frame]).is_ok());
    }

    #[test]
    fn rejects_replayed_serial() {
        let a = aes();
        let env = parse_publish_frames(&[envelope(&a, None, &job(Some(7)))]).expect("parse");
        assert!(matches!(
            env.open(&a, Some(7)),
            Err(EnvelopeError::Replay { .. })
        ));
        assert!(matches!(
            env.open(&a, Some(9)),
            Err(EnvelopeError::Replay { .. })
        ));
        assert!(env.open(&a, Some(6)).is_ok());
        assert!(env.open(&a, None).is_ok());
    }

    #[test]
    fn rejects_forged_signature_and_missing_signature() {
        let key = PrivateKey::from_pkcs1_pem(FIX_PRIV_PEM).expect("key");
        let a = aes();
        let good = parse_publish_frames(&[envelope(&a, Some(&key), &job(None))]).expect("parse");
        let mut forged = good.clone();
        if let Some((sig, _)) = forged.sig.as_mut() {
            sig[10] ^= 0x40;
        }
        let err = forged
            .verify_signature(Some(key.as_public_key()), true)
            .expect_err("forged");
        assert_eq!(err.label(), "bad_signature");
        let unsigned = parse_publish_frames(&[envelope(&a, None, &job(None))]).expect("parse");
        let err = unsigned
            .verify_signature(Some(key.as_public_key()), true)
            .expect_err("unsigned");
        assert_eq!(err.label(), "unsigned");
        // Signed load swapped for another ciphertext: signature no longer matches.
        let mut swapped = good.clone();
        swapped.load = a.dumps(&job(None), None);
        assert!(swapped
            .verify_signature(Some(key.as_public_key()), true)
            .is_err());
    }

    #[test]
    fn rejects_garbage_truncated_and_wrong_key_without_panicking() {
        let a = aes();
        let frame = envelope(&a, None, &job(Some(1)));
        for cut in 0..frame.len() {
            let r = parse_publish_frames(&[frame[..cut].to_vec()]).and_then(|e| e.open(&a, None));
            assert!(r.is_err(), "truncated at {cut} accepted");
        }
        let mut seed: u32 = 12345;
        for len in [0usize, 1, 5, 64, 300] {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            assert!(parse_publish_frames(&[junk]).is_err());
        }
        // Deep nesting must not overflow the stack.
        let deep = vec![0x91u8; 100_000];
        assert!(matches!(unpack(&deep), Err(EnvelopeError::Msgpack)));
        // Huge declared length with no data.
        assert!(unpack(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        let env = parse_publish_frames(&[frame]).expect("parse");
        let err = env.open(&aes(), None).expect_err("wrong key");
        assert_eq!(err.label(), "bad_hmac");
        assert_eq!(
            parse_publish_frames(&[vec![], vec![], vec![]])
                .expect_err("frames")
                .label(),
            "framing"
        );
        // Encrypted but not a job.
        let env = parse_publish_frames(&[envelope(&a, None, &pack(&Value::from(3)))]).expect("p");
        assert_eq!(
            env.open(&a, None).expect_err("not map").label(),
            "malformed"
        );
        let clear = pack(&map(vec![
            ("enc", Value::from("clear")),
            ("load", Value::from("x")),
        ]));
        assert_eq!(
            parse_publish_frames(&[clear]).expect_err("clear").label(),
            "not_aes"
        );
    }

    #[test]
    fn splits_kwargs() {
        let arg: Vec<serde_json::Value> =
            serde_json::from_str(r#"[1, "two", {"__kwarg__": true, "k": "v"}]"#).expect("json");
        let (pos, kw) = split_args(&arg);
        assert_eq!(pos, vec![serde_json::json!(1), serde_json::json!("two")]);
        assert_eq!(kw.get("k"), Some(&serde_json::json!("v")));
        assert_eq!(kw.len(), 1);
    }

    #[test]
    fn json_round_trip() {
        let j = serde_json::json!({"a": [1, -2, 2.5, null, true, "x"], "b": {"c": "d"}});
        assert_eq!(to_json(&from_json(&j)), j);
    }

    #[test]
    fn packed_arguments_round_trip() {
        let packed = vec![
            serde_json::json!("a"),
            serde_json::json!(8),
            serde_json::json!({"__kwarg__": true, "name": "x"}),
        ];
        let (arg, kwarg) = split_args(&packed);
        assert_eq!(arg, [serde_json::json!("a"), serde_json::json!(8)]);
        assert_eq!(join_args(&arg, &kwarg), packed);
        assert_eq!(join_args(&arg, &serde_json::Map::new()), arg);
    }
}
