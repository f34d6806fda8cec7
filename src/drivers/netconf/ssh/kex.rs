//! Key exchange (RFC 4253 §7–8): our KEXINIT, negotiation against the server's,
//! the ephemeral Diffie-Hellman of curve25519-sha256 (RFC 8731) or
//! ecdh-sha2-nistp256 (RFC 5656), the exchange hash, the host key's signature
//! over it, and key derivation. OpenSSH's strict key exchange (the Terrapin fix,
//! `kex-strict-c-v00@openssh.com`) is offered on the first exchange.

use curve25519_dalek::montgomery::MontgomeryPoint;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use russh::keys::signature::Verifier;
use russh::keys::ssh_key::Signature;
use russh::keys::PublicKey;
use sha2::{Digest, Sha256};

use super::cipher::{self, CIPHERS, MACS};
use super::error::SshError;
use super::wire::{put_bool, put_mpint, put_string, put_u32, Reader};

pub const MSG_KEXINIT: u8 = 20;
pub const MSG_NEWKEYS: u8 = 21;
pub const MSG_KEX_ECDH_INIT: u8 = 30;
pub const MSG_KEX_ECDH_REPLY: u8 = 31;

pub const KEX: &[&str] = &[
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
];
pub const HOST_KEYS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];
const STRICT_C: &str = "kex-strict-c-v00@openssh.com";
const STRICT_S: &str = "kex-strict-s-v00@openssh.com";
const EXT_INFO_C: &str = "ext-info-c";

/// What both sides agreed on.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub kex: &'static str,
    pub host_key: &'static str,
    pub cipher_c2s: &'static str,
    pub cipher_s2c: &'static str,
    pub mac_c2s: &'static str,
    pub mac_s2c: &'static str,
    /// Strict key exchange: sequence numbers restart at each NEWKEYS and nothing
    /// but key exchange may arrive during the first one.
    pub strict: bool,
    /// The server sent a guessed first kex packet that guessed wrong: skip it.
    pub skip_guess: bool,
}

/// Our KEXINIT payload. The strict-kex and ext-info markers go only in the first.
pub fn client_kexinit(first: bool) -> Vec<u8> {
    let mut p = vec![MSG_KEXINIT];
    let cookie: [u8; 16] = rand::random();
    p.extend_from_slice(&cookie);
    let mut kex = KEX.join(",");
    if first {
        kex.push(',');
        kex.push_str(EXT_INFO_C);
        kex.push(',');
        kex.push_str(STRICT_C);
    }
    let ciphers = CIPHERS.join(",");
    let macs = MACS.join(",");
    for list in [
        kex.as_str(),
        &HOST_KEYS.join(","),
        &ciphers,
        &ciphers,
        &macs,
        &macs,
        "none",
        "none",
        "",
        "",
    ] {
        put_string(&mut p, list.as_bytes());
    }
    put_bool(&mut p, false);
    put_u32(&mut p, 0);
    p
}

fn pick(ours: &[&'static str], theirs: &str, what: &'static str) -> Result<&'static str, SshError> {
    ours.iter()
        .find(|o| theirs.split(',').any(|t| t == **o))
        .copied()
        .ok_or_else(|| SshError::NoCommonAlgorithm {
            what,
            server: theirs.chars().take(512).collect(),
        })
}

/// Negotiates against the server's KEXINIT payload (RFC 4253 §7.1).
pub fn negotiate(server: &[u8], first: bool) -> Result<Negotiated, SshError> {
    let mut r = Reader::new(server);
    if r.u8()? != MSG_KEXINIT {
        return Err(SshError::Protocol("expected KEXINIT".into()));
    }
    r.bytes(16)?;
    let kex_s = r.text()?;
    let keys_s = r.text()?;
    let enc_c2s = r.text()?;
    let enc_s2c = r.text()?;
    let mac_c2s = r.text()?;
    let mac_s2c = r.text()?;
    let comp_c2s = r.text()?;
    let comp_s2c = r.text()?;
    r.text()?;
    r.text()?;
    let guess_follows = r.bool()?;
    let kex = pick(KEX, kex_s, "key exchange")?;
    let host_key = pick(HOST_KEYS, keys_s, "host key algorithm")?;
    let cipher_c2s = pick(CIPHERS, enc_c2s, "cipher")?;
    let cipher_s2c = pick(CIPHERS, enc_s2c, "cipher")?;
    let mac = |c: &str, list: &str| -> Result<&'static str, SshError> {
        if cipher::is_aead(c) {
            Ok("")
        } else {
            pick(MACS, list, "MAC")
        }
    };
    let mac_c2s = mac(cipher_c2s, mac_c2s)?;
    let mac_s2c = mac(cipher_s2c, mac_s2c)?;
    pick(&["none"], comp_c2s, "compression")?;
    pick(&["none"], comp_s2c, "compression")?;
    let first_kex = kex_s.split(',').next().unwrap_or("");
    let first_key = keys_s.split(',').next().unwrap_or("");
    Ok(Negotiated {
        kex,
        host_key,
        cipher_c2s,
        cipher_s2c,
        mac_c2s,
        mac_s2c,
        strict: first && kex_s.split(',').any(|k| k == STRICT_S),
        skip_guess: guess_follows && (first_kex != kex || first_key != host_key),
    })
}

/// Our half of the ephemeral exchange.
pub enum Ephemeral {
    X25519([u8; 32]),
    P256(Box<p256::SecretKey>),
}

impl Ephemeral {
    /// A fresh secret for `kex` and the public value (Q_C) to send.
    pub fn new(kex: &str) -> Result<(Ephemeral, Vec<u8>), SshError> {
        if kex == "ecdh-sha2-nistp256" {
            // Rejection sampling: a random 32-byte string is a valid scalar
            // except with negligible probability.
            for _ in 0..8 {
                let bytes: [u8; 32] = rand::random();
                if let Ok(sk) = p256::SecretKey::from_slice(&bytes) {
                    let q = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
                    return Ok((Ephemeral::P256(Box::new(sk)), q));
                }
            }
            return Err(SshError::Protocol("cannot draw a P-256 scalar".into()));
        }
        let secret: [u8; 32] = rand::random();
        let q = MontgomeryPoint::mul_base_clamped(secret)
            .to_bytes()
            .to_vec();
        Ok((Ephemeral::X25519(secret), q))
    }

    /// The shared secret K as big-endian bytes (to be sent through `put_mpint`).
    pub fn shared(&self, q_s: &[u8]) -> Result<Vec<u8>, SshError> {
        match self {
            Ephemeral::X25519(secret) => {
                let q: [u8; 32] = q_s.try_into().map_err(|_| {
                    SshError::Protocol("curve25519 public key is not 32 bytes".into())
                })?;
                let k = MontgomeryPoint(q).mul_clamped(*secret).to_bytes();
                // RFC 8731 §3: an all-zero result means a low-order point.
                if k.iter().all(|&b| b == 0) {
                    return Err(SshError::Protocol(
                        "curve25519 shared secret is zero".into(),
                    ));
                }
                Ok(k.to_vec())
            }
            Ephemeral::P256(sk) => {
                let peer = p256::PublicKey::from_sec1_bytes(q_s)
                    .map_err(|_| SshError::Protocol("bad P-256 public key".into()))?;
                let k = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), peer.as_affine());
                Ok(k.raw_secret_bytes().to_vec())
            }
        }
    }
}

/// The exchange hash H (SHA-256 for every kex offered).
#[allow(clippy::too_many_arguments)]
pub fn exchange_hash(
    v_c: &[u8],
    v_s: &[u8],
    i_c: &[u8],
    i_s: &[u8],
    k_s: &[u8],
    q_c: &[u8],
    q_s: &[u8],
    k: &[u8],
) -> [u8; 32] {
    let mut b = Vec::with_capacity(1024);
    for s in [v_c, v_s, i_c, i_s, k_s, q_c, q_s] {
        put_string(&mut b, s);
    }
    put_mpint(&mut b, k);
    Sha256::digest(&b).into()
}

/// Checks the server's signature over H with the key it sent; returns that key.
pub fn verify_host_key(
    k_s: &[u8],
    sig: &[u8],
    h: &[u8],
    host_key_alg: &str,
) -> Result<PublicKey, SshError> {
    let key = PublicKey::from_bytes(k_s)
        .map_err(|e| SshError::Protocol(format!("cannot parse the host key: {e}")))?;
    let sig = Signature::try_from(sig)
        .map_err(|e| SshError::Protocol(format!("cannot parse the host key signature: {e}")))?;
    if sig.algorithm().as_str() != host_key_alg {
        return Err(SshError::Protocol(format!(
            "host key signed with {}, negotiated {host_key_alg}",
            sig.algorithm().as_str()
        )));
    }
    Verifier::verify(&key, h, &sig).map_err(|_| SshError::BadSignature)?;
    Ok(key)
}

/// RFC 4253 §7.2: HASH(K || H || letter || session_id), extended to `len`.
pub fn derive(k: &[u8], h: &[u8; 32], letter: u8, session_id: &[u8], len: usize) -> Vec<u8> {
    let mut kb = Vec::with_capacity(40);
    put_mpint(&mut kb, k);
    let mut out = {
        let mut d = Sha256::new();
        d.update(&kb);
        d.update(h);
        d.update([letter]);
        d.update(session_id);
        d.finalize().to_vec()
    };
    while out.len() < len {
        let mut d = Sha256::new();
        d.update(&kb);
        d.update(h);
        d.update(&out);
        let more = d.finalize();
        out.extend_from_slice(&more);
    }
    out.truncate(len);
    out
}

/// Both directions' cipher states from a finished exchange.
pub fn directions(
    neg: &Negotiated,
    k: &[u8],
    h: &[u8; 32],
    session_id: &[u8],
) -> (cipher::Direction, cipher::Direction) {
    let one = |c: &str, m: &str, iv: u8, key: u8, mac: u8| {
        let (ivl, kl) = cipher::cipher_sizes(c);
        let ml = if m.is_empty() {
            0
        } else {
            cipher::mac_key_len(m)
        };
        cipher::Direction::new(
            c,
            m,
            &derive(k, h, iv, session_id, ivl),
            &derive(k, h, key, session_id, kl),
            &derive(k, h, mac, session_id, ml),
        )
    };
    (
        one(neg.cipher_c2s, neg.mac_c2s, b'A', b'C', b'E'),
        one(neg.cipher_s2c, neg.mac_s2c, b'B', b'D', b'F'),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_kexinit(kex: &str, keys: &str, ciphers: &str, macs: &str) -> Vec<u8> {
        let mut p = vec![MSG_KEXINIT];
        p.extend_from_slice(&[0u8; 16]);
        for l in [
            kex,
            keys,
            ciphers,
            ciphers,
            macs,
            macs,
            "none,zlib",
            "none",
            "",
            "",
        ] {
            put_string(&mut p, l.as_bytes());
        }
        put_bool(&mut p, false);
        put_u32(&mut p, 0);
        p
    }

    #[test]
    fn the_client_order_wins_and_strictness_needs_the_server_marker() {
        let s = server_kexinit(
            "ecdh-sha2-nistp256,curve25519-sha256,kex-strict-s-v00@openssh.com",
            "rsa-sha2-256,ssh-ed25519",
            "aes128-ctr,aes256-gcm@openssh.com",
            "hmac-sha2-512",
        );
        let n = negotiate(&s, true).unwrap();
        assert_eq!(n.kex, "curve25519-sha256");
        assert_eq!(n.host_key, "ssh-ed25519");
        assert_eq!(n.cipher_c2s, "aes256-gcm@openssh.com");
        assert_eq!(n.mac_c2s, "");
        assert!(n.strict);
        assert!(!negotiate(&s, false).unwrap().strict);
        let s = server_kexinit(
            "curve25519-sha256",
            "ssh-ed25519",
            "aes128-ctr",
            "hmac-sha2-512",
        );
        let n = negotiate(&s, true).unwrap();
        assert_eq!(
            (n.cipher_s2c, n.mac_s2c, n.strict),
            ("aes128-ctr", "hmac-sha2-512", false)
        );
    }

    #[test]
    fn nothing_in_common_names_what_and_the_offer() {
        let s = server_kexinit(
            "diffie-hellman-group1-sha1",
            "ssh-ed25519",
            "aes128-ctr",
            "hmac-sha2-256",
        );
        match negotiate(&s, true) {
            Err(SshError::NoCommonAlgorithm { what, server }) => {
                assert_eq!(what, "key exchange");
                assert_eq!(server, "diffie-hellman-group1-sha1");
            }
            other => panic!("{other:?}"),
        }
        assert!(negotiate(&s[..20], true).is_err());
    }

    #[test]
    fn both_sides_of_each_exchange_agree() {
        for kex in ["curve25519-sha256", "ecdh-sha2-nistp256"] {
            let (a, qa) = Ephemeral::new(kex).unwrap();
            let (b, qb) = Ephemeral::new(kex).unwrap();
            assert_eq!(a.shared(&qb).unwrap(), b.shared(&qa).unwrap(), "{kex}");
            assert!(a.shared(&qb[..10]).is_err());
        }
        let (a, _) = Ephemeral::new("curve25519-sha256").unwrap();
        assert!(a.shared(&[0u8; 32]).is_err(), "low-order point");
    }

    #[test]
    fn derivation_extends_by_rehashing() {
        let h = [3u8; 32];
        let long = derive(&[1, 2, 3], &h, b'C', &[9u8; 32], 64);
        assert_eq!(long.len(), 64);
        assert_eq!(
            &long[..32],
            &derive(&[1, 2, 3], &h, b'C', &[9u8; 32], 32)[..]
        );
        assert_ne!(long, derive(&[1, 2, 3], &h, b'D', &[9u8; 32], 64));
    }
}
