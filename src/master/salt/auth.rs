//! The `_auth` handshake for one id: building the clear request and verifying the
//! master's signed answer (nonce, signature, master key pinning, AES-key X9.31 signature,
//! token echo) before taking the shared AES key and the id's session key.

use rmpv::Value;
use rsa::pkcs8::DecodePublicKey;
use rsa::PublicKey;

use super::crypto::{self, Crypticle};
use super::envelope::{as_bytes, as_text, get, map, pack, unpack};
use super::keys::{clean_key, MinionKey};
use super::SaltError;

pub const ENC_ALGO: &str = "OAEP-SHA1";
pub const SIG_ALGO: &str = "PKCS1v15-SHA1";

/// A prepared `_auth` request.
pub struct AuthRequest {
    pub body: Vec<u8>,
    pub nonce: String,
    /// Our secret `T` when a token was sent (requires a known master key).
    pub token: Option<String>,
}

/// Builds the clear `_auth` envelope (protocol version 3).
pub fn build_request(
    id: &str,
    key: &MinionKey,
    master: Option<&PublicKey>,
) -> Result<AuthRequest, SaltError> {
    let nonce = crypto::new_nonce();
    let mut load = vec![
        ("cmd", Value::from("_auth")),
        ("id", Value::from(id)),
        ("nonce", Value::from(nonce.as_str())),
        ("enc_algo", Value::from(ENC_ALGO)),
        ("sig_algo", Value::from(SIG_ALGO)),
        ("pub", Value::from(key.pub_pem.as_str())),
    ];
    let token = match master {
        Some(mk) => {
            let t = crypto::generate_key_string();
            load.push((
                "token",
                Value::Binary(crypto::oaep_encrypt(mk, t.as_bytes())?),
            ));
            Some(t)
        }
        None => None,
    };
    let env = map(vec![
        ("enc", Value::from("clear")),
        ("load", map(load)),
        ("version", Value::from(3)),
    ]);
    Ok(AuthRequest {
        body: pack(&env),
        nonce,
        token,
    })
}

/// Outcome of a verified `_auth` answer.
#[derive(Debug)]
pub enum AuthOutcome {
    Accepted {
        aes: Crypticle,
        session: Crypticle,
        /// Set when the master key was learnt from this answer (trust on first use).
        new_master_pem: Option<String>,
    },
    Pending,
    Rejected,
    Full,
}

/// Verifies the master's answer. Blocking (RSA private-key operations).
pub fn process_reply(
    env: &Value,
    req: &AuthRequest,
    key: &MinionKey,
    master: Option<(&PublicKey, &str)>,
) -> Result<AuthOutcome, SaltError> {
    let load =
        get(env, "load").ok_or_else(|| SaltError::Protocol("auth reply without load".into()))?;
    if let Value::Map(_) = load {
        // Unsigned error such as "bad enc algo".
        let ret = get(load, "ret")
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(SaltError::MasterError(ret));
    }
    let load_bytes = as_bytes(load).ok_or_else(|| SaltError::Protocol("auth load type".into()))?;
    let inner = unpack(load_bytes).map_err(|_| SaltError::Protocol("auth load msgpack".into()))?;
    if get(&inner, "nonce").and_then(as_text) != Some(req.nonce.as_str()) {
        return Err(SaltError::Protocol("auth nonce mismatch".into()));
    }
    let sig = get(env, "sig").and_then(as_bytes);
    let check_sig = |k: &PublicKey| -> Result<(), SaltError> {
        let sig = sig.ok_or(SaltError::BadSignature)?;
        crypto::verify(k, SIG_ALGO, load_bytes, sig).map_err(|_| SaltError::BadSignature)
    };
    if let Some((mk, _)) = master {
        check_sig(mk)?;
    }
    if let Some(pub_key) = get(&inner, "pub_key").and_then(as_text) {
        let offered = clean_key(pub_key);
        let (mk, new_pem) = match master {
            Some((mk, pem)) => {
                if clean_key(pem) != offered {
                    return Err(SaltError::MasterKeyChanged);
                }
                (mk.clone(), None)
            }
            None => {
                let k = PublicKey::from_public_key_pem(&offered)
                    .map_err(|_| SaltError::Protocol("master pub_key unparsable".into()))?;
                check_sig(&k)?;
                (k, Some(offered))
            }
        };
        let field = |name: &str| {
            get(&inner, name)
                .and_then(as_bytes)
                .ok_or_else(|| SaltError::Protocol(format!("auth reply lacks {name}")))
        };
        let aes_str = crypto::oaep_decrypt(&key.private, ENC_ALGO, field("aes")?)?;
        let digest = crypto::x931_recover(&mk, field("sig")?)?;
        if digest != crypto::sha256_hex(&aes_str).as_bytes() {
            return Err(SaltError::BadSignature);
        }
        if let Some(t) = &req.token {
            let echoed = crypto::oaep_decrypt(&key.private, ENC_ALGO, field("token")?)?;
            if echoed != t.as_bytes() {
                return Err(SaltError::Protocol("token echo mismatch".into()));
            }
        }
        let session = crypto::oaep_decrypt(&key.private, ENC_ALGO, field("session")?)?;
        return Ok(AuthOutcome::Accepted {
            aes: Crypticle::from_key_string(&aes_str)?,
            session: Crypticle::from_key_string(&session)?,
            new_master_pem: new_pem,
        });
    }
    match get(&inner, "ret") {
        Some(Value::Boolean(true)) => Ok(AuthOutcome::Pending),
        Some(Value::Boolean(false)) => Ok(AuthOutcome::Rejected),
        Some(v) if as_text(v) == Some("full") => Ok(AuthOutcome::Full),
        other => Err(SaltError::Protocol(format!(
            "auth answer: {}",
            other.map(ToString::to_string).unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::PrivateKey;

    use crate::master::salt::fixtures::*;

    fn minion() -> MinionKey {
        let private = PrivateKey::from_pkcs1_pem(FIX_PRIV_PEM).expect("key");
        let tok = crypto::x931_sign(&private, b"salt").expect("tok");
        MinionKey {
            private,
            pub_pem: clean_key(FIX_PUB_PEM),
            tok,
        }
    }

    /// A fake master answer signed by the fixture key (the test plays both sides).
    fn answer(req: &AuthRequest, k: &MinionKey, tamper_sig: bool) -> Value {
        let aes = crypto::generate_key_string();
        let session = crypto::generate_key_string();
        let pubk = k.private.as_public_key();
        let mut digest_sig =
            crypto::x931_sign(&k.private, crypto::sha256_hex(aes.as_bytes()).as_bytes())
                .expect("x931");
        if tamper_sig {
            digest_sig[5] ^= 1;
        }
        let inner = map(vec![
            ("enc", Value::from("pub")),
            ("pub_key", Value::from(FIX_PUB_PEM)),
            ("publish_port", Value::from(4505)),
            (
                "aes",
                Value::Binary(crypto::oaep_encrypt(pubk, aes.as_bytes()).expect("e")),
            ),
            (
                "session",
                Value::Binary(crypto::oaep_encrypt(pubk, session.as_bytes()).expect("e")),
            ),
            ("sig", Value::Binary(digest_sig)),
            ("nonce", Value::from(req.nonce.as_str())),
        ]);
        let load = pack(&inner);
        let sig = crypto::sign_sha1(&k.private, &load).expect("sign");
        map(vec![
            ("enc", Value::from("clear")),
            ("load", Value::Binary(load)),
            ("sig", Value::Binary(sig)),
        ])
    }

    #[test]
    fn accepts_valid_answer_and_rejects_tampering() {
        let k = minion();
        let req = build_request("dev-1", &k, None).expect("req");
        let env = answer(&req, &k, false);
        match process_reply(&env, &req, &k, None).expect("ok") {
            AuthOutcome::Accepted { new_master_pem, .. } => assert!(new_master_pem.is_some()),
            other => panic!("unexpected {other:?}"),
        }
        let bad = answer(&req, &k, true);
        assert!(matches!(
            process_reply(&bad, &req, &k, None),
            Err(SaltError::BadSignature) | Err(SaltError::Crypto(_))
        ));
        // Wrong nonce.
        let other = build_request("dev-1", &k, None).expect("req");
        assert!(process_reply(&env, &other, &k, None).is_err());
        // A different pinned master key is refused.
        let pinned = PublicKey::from_public_key_pem(FIX_PUB_PEM).expect("pub");
        let r = process_reply(
            &env,
            &req,
            &k,
            Some((
                &pinned,
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            )),
        );
        assert!(matches!(r, Err(SaltError::MasterKeyChanged)));
        // Garbage envelope.
        assert!(process_reply(&Value::from(1), &req, &k, None).is_err());
    }

    #[test]
    fn pending_answer() {
        let k = minion();
        let req = build_request("dev-1", &k, None).expect("req");
        let load = pack(&map(vec![
            ("ret", Value::Boolean(true)),
            ("nonce", Value::from(req.nonce.as_str())),
        ]));
        let env = map(vec![
            ("enc", Value::from("clear")),
            ("load", Value::Binary(load)),
        ]);
        assert!(matches!(
            process_reply(&env, &req, &k, None),
            Ok(AuthOutcome::Pending)
        ));
    }
}
