//! Cryptographic primitives of Salt's wire protocol: RSA-OAEP (SHA-1), PKCS#1 v1.5
//! signatures (SHA-1/SHA-224), ANSI X9.31 raw private-key "encryption", and the
//! Crypticle (AES-192-CBC + HMAC-SHA256) symmetric envelope.

use aes::Aes192;
use base64::Engine as _;
use cbc::cipher::{block_padding::NoPadding, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt as _;
use rsa::hazmat::{rsa_decrypt, rsa_encrypt};
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PrivateKey, PublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256};

/// Errors of the cryptographic layer. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key string is not valid base64 of 56 bytes")]
    BadKeyString,
    #[error("ciphertext too short or not block aligned")]
    Truncated,
    #[error("HMAC verification failed")]
    Hmac,
    #[error("bad padding")]
    Padding,
    #[error("plaintext lacks the pickle:: marker")]
    NoMarker,
    #[error("reply nonce mismatch")]
    Nonce,
    #[error("RSA operation failed: {0}")]
    Rsa(#[source] rsa::Error),
    #[error("RSA integer encoding failed: {0}")]
    Integer(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("X9.31 data too long for the key")]
    X931TooLong,
    #[error("X9.31 encoding invalid")]
    X931Invalid,
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
}

const MARKER: &[u8] = b"pickle::";
const AES_KEY_LEN: usize = 24;
const HMAC_KEY_LEN: usize = 32;
const SIG_LEN: usize = 32;
const BLOCK: usize = 16;

/// A fresh Crypticle key string: base64 of 56 random bytes (76 ASCII characters).
pub fn generate_key_string() -> String {
    let mut raw = [0u8; AES_KEY_LEN + HMAC_KEY_LEN];
    rand::rng().fill(&mut raw[..]);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Length of a [`new_nonce`].
pub const NONCE_LEN: usize = 32;

/// A request nonce: 32 lowercase hex characters, like `uuid4().hex`.
pub fn new_nonce() -> String {
    let mut raw = [0u8; 16];
    rand::rng().fill(&mut raw[..]);
    hex(&raw)
}

/// Lowercase hex of `data`.
pub fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Salt's symmetric envelope keyed by a 76-character key string.
#[derive(Clone)]
pub struct Crypticle {
    aes_key: [u8; AES_KEY_LEN],
    hmac_key: [u8; HMAC_KEY_LEN],
    key_string: String,
}

impl std::fmt::Debug for Crypticle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypticle(<redacted>)")
    }
}

impl PartialEq for Crypticle {
    fn eq(&self, other: &Self) -> bool {
        self.key_string == other.key_string
    }
}

impl Crypticle {
    /// Builds a Crypticle from the base64 key string sent by the master.
    pub fn from_key_string(key: &[u8]) -> Result<Self, CryptoError> {
        let text = std::str::from_utf8(key).map_err(|_| CryptoError::BadKeyString)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::BadKeyString)?;
        if raw.len() != AES_KEY_LEN + HMAC_KEY_LEN {
            return Err(CryptoError::BadKeyString);
        }
        let mut aes_key = [0u8; AES_KEY_LEN];
        let mut hmac_key = [0u8; HMAC_KEY_LEN];
        aes_key.copy_from_slice(&raw[..AES_KEY_LEN]);
        hmac_key.copy_from_slice(&raw[AES_KEY_LEN..]);
        Ok(Self {
            aes_key,
            hmac_key,
            key_string: text.trim().to_owned(),
        })
    }

    /// The key string exactly as received (needed for the AES-key signature check).
    pub fn key_string(&self) -> &str {
        &self.key_string
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; the error branch is unreachable in practice.
        match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.hmac_key) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        }
    }

    /// `IV ‖ AES-192-CBC(PKCS#7(plain)) ‖ HMAC-SHA256(IV ‖ CT)`.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let mut iv = [0u8; BLOCK];
        rand::rng().fill(&mut iv[..]);
        let pad = BLOCK - plain.len() % BLOCK;
        let mut padded = Vec::with_capacity(plain.len() + pad);
        padded.extend_from_slice(plain);
        padded.extend(std::iter::repeat_n(pad as u8, pad));
        let mut out = Vec::with_capacity(BLOCK + padded.len() + SIG_LEN);
        out.extend_from_slice(&iv);
        match cbc::Encryptor::<Aes192>::new_from_slices(&self.aes_key, &iv) {
            Ok(enc) => out.extend_from_slice(&enc.encrypt_padded_vec::<NoPadding>(&padded)),
            Err(_) => unreachable_hmac(),
        }
        let mut mac = self.mac();
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// Checks only the HMAC (cheap; used to find which pending request a reply belongs to).
    pub fn hmac_matches(&self, data: &[u8]) -> bool {
        if data.len() < BLOCK * 2 + SIG_LEN {
            return false;
        }
        let (body, tag) = data.split_at(data.len() - SIG_LEN);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }

    /// Verifies the HMAC, then decrypts and strips the padding.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if data.len() < BLOCK * 2 + SIG_LEN || !(data.len() - SIG_LEN).is_multiple_of(BLOCK) {
            return Err(CryptoError::Truncated);
        }
        if !self.hmac_matches(data) {
            return Err(CryptoError::Hmac);
        }
        let body = &data[..data.len() - SIG_LEN];
        let (iv, ct) = body.split_at(BLOCK);
        let dec = cbc::Decryptor::<Aes192>::new_from_slices(&self.aes_key, iv)
            .map_err(|_| CryptoError::Truncated)?;
        let plain = dec
            .decrypt_padded_vec::<NoPadding>(ct)
            .map_err(|_| CryptoError::Padding)?;
        let pad = usize::from(*plain.last().ok_or(CryptoError::Padding)?);
        if pad == 0 || pad > BLOCK || pad > plain.len() {
            return Err(CryptoError::Padding);
        }
        Ok(plain[..plain.len() - pad].to_vec())
    }

    /// Encrypts `pickle::` (+ nonce) + `payload`.
    pub fn dumps(&self, payload: &[u8], nonce: Option<&str>) -> Vec<u8> {
        let mut plain = Vec::with_capacity(MARKER.len() + 32 + payload.len());
        plain.extend_from_slice(MARKER);
        if let Some(n) = nonce {
            plain.extend_from_slice(n.as_bytes());
        }
        plain.extend_from_slice(payload);
        self.encrypt(&plain)
    }

    /// Decrypts and strips `pickle::` (and the expected nonce); returns the msgpack bytes.
    pub fn loads(&self, data: &[u8], nonce: Option<&str>) -> Result<Vec<u8>, CryptoError> {
        let plain = self.decrypt(data)?;
        let rest = plain.strip_prefix(MARKER).ok_or(CryptoError::NoMarker)?;
        let rest = match nonce {
            Some(n) => rest.strip_prefix(n.as_bytes()).ok_or(CryptoError::Nonce)?,
            None => rest,
        };
        Ok(rest.to_vec())
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // Key and IV lengths are fixed constants checked at construction.
    unreachable!("fixed-size key/iv rejected by cipher")
}

/// OAEP encryption with MGF1-SHA-1 and no label.
pub fn oaep_encrypt(key: &PublicKey, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    key.oaep_encrypt::<Sha1>(plain).map_err(CryptoError::Rsa)
}

/// OAEP decryption (`OAEP-SHA1` or `OAEP-SHA224`).
pub fn oaep_decrypt(key: &PrivateKey, algo: &str, ct: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match algo {
        "OAEP-SHA1" => key.oaep_decrypt::<Sha1>(ct),
        "OAEP-SHA224" => key.oaep_decrypt::<Sha224>(ct),
        other => return Err(CryptoError::Algorithm(other.to_owned())),
    }
    .map_err(CryptoError::Rsa)
}

/// RSASSA-PKCS1-v1_5 signature with SHA-1.
pub fn sign_sha1(key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    key.pkcs1v15_sign::<Sha1>(msg).map_err(CryptoError::Rsa)
}

/// Verifies an RSASSA-PKCS1-v1_5 signature (`PKCS1v15-SHA1` or `PKCS1v15-SHA224`).
pub fn verify(key: &PublicKey, algo: &str, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    match algo {
        "PKCS1v15-SHA1" => key.pkcs1v15_verify::<Sha1>(msg, sig),
        "PKCS1v15-SHA224" => key.pkcs1v15_verify::<Sha224>(msg, sig),
        other => return Err(CryptoError::Algorithm(other.to_owned())),
    }
    .map_err(CryptoError::Rsa)
}

/// SHA-256 hex digest.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// SHA-1 hex digest (zmq_filtering topics).
pub fn sha1_hex(data: &[u8]) -> String {
    hex(&Sha1::digest(data))
}

fn to_fixed(v: &BoxedUint, k: usize) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    if bytes.len() >= k {
        bytes[bytes.len() - k..].to_vec()
    } else {
        let mut out = vec![0u8; k - bytes.len()];
        out.extend_from_slice(&bytes);
        out
    }
}

/// ANSI X9.31 "private encrypt" (OpenSSL `RSA_private_encrypt` with `RSA_X931_PADDING`).
pub fn x931_sign(key: &PrivateKey, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let k = key.size();
    if data.len() + 2 > k {
        return Err(CryptoError::X931TooLong);
    }
    let j = k - data.len() - 2;
    let mut em = Vec::with_capacity(k);
    if j == 0 {
        em.push(0x6a);
    } else {
        em.push(0x6b);
        em.extend(std::iter::repeat_n(0xbb, j - 1));
        em.push(0xba);
    }
    em.extend_from_slice(data);
    em.push(0xcc);
    let n = key.n().as_ref();
    let precision = n.bits_precision();
    let m =
        BoxedUint::from_be_slice(&em, precision).map_err(|e| CryptoError::Integer(Box::new(e)))?;
    let mut rng = rand::rng();
    let s = rsa_decrypt(Some(&mut rng), key, &m).map_err(CryptoError::Rsa)?;
    let alt = n.wrapping_sub(&s);
    let s_bytes = to_fixed(&s, k);
    let alt_bytes = to_fixed(&alt, k);
    // Same length, big-endian: lexicographic order equals numeric order.
    Ok(if alt_bytes < s_bytes {
        alt_bytes
    } else {
        s_bytes
    })
}

/// Recovers the data of an X9.31 "private encrypt" with the public key.
pub fn x931_recover(key: &PublicKey, sig: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let k = key.size();
    if sig.len() != k {
        return Err(CryptoError::X931Invalid);
    }
    let n = key.n().as_ref();
    let precision = n.bits_precision();
    let s = BoxedUint::from_be_slice(sig, precision).map_err(|_| CryptoError::X931Invalid)?;
    if s >= *n {
        return Err(CryptoError::X931Invalid);
    }
    let m = rsa_encrypt(key, &s).map_err(CryptoError::Rsa)?;
    let mut em = to_fixed(&m, k);
    if em.last().map(|b| b & 0x0f) != Some(12) {
        em = to_fixed(&n.wrapping_sub(&m), k);
    }
    if em.last() != Some(&0xcc) {
        return Err(CryptoError::X931Invalid);
    }
    let body = &em[..k - 1];
    match body.first() {
        Some(0x6a) => Ok(body[1..].to_vec()),
        Some(0x6b) => {
            let rest = &body[1..];
            let pos = rest
                .iter()
                .position(|b| *b != 0xbb)
                .ok_or(CryptoError::X931Invalid)?;
            if rest[pos] != 0xba {
                return Err(CryptoError::X931Invalid);
            }
            Ok(rest[pos + 1..].to_vec())
        }
        _ => Err(CryptoError::X931Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePublicKey;

    use crate::master::salt::fixtures::*;

    fn key() -> PrivateKey {
        PrivateKey::from_pkcs1_pem(FIX_PRIV_PEM).expect("fixture key")
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn x931_matches_openssl_fixture() {
        let k = key();
        let sig = x931_sign(&k, b"salt").expect("sign");
        assert_eq!(hex(&sig), FIX_X931_SALT_HEX);
        let pubk = PublicKey::from_public_key_pem(FIX_PUB_PEM).expect("pub");
        assert_eq!(x931_recover(&pubk, &sig).expect("recover"), b"salt");
        // The 64-byte digest form used for the AES key signature.
        let digest = sha256_hex(FIX_AES_KEY.as_bytes());
        let sig2 = unhex(FIX_X931_DIGEST_HEX);
        assert_eq!(
            x931_recover(&pubk, &sig2).expect("recover"),
            digest.as_bytes()
        );
        assert_eq!(
            hex(&x931_sign(&k, digest.as_bytes()).expect("sign")),
            FIX_X931_DIGEST_HEX
        );
    }

    #[test]
    fn x931_rejects_garbage() {
        let pubk = PublicKey::from_public_key_pem(FIX_PUB_PEM).expect("pub");
        assert!(x931_recover(&pubk, &[0u8; 10]).is_err());
        assert!(x931_recover(&pubk, &[0x55u8; 256]).is_err());
        assert!(x931_recover(&pubk, &[0xffu8; 256]).is_err());
    }

    #[test]
    fn oaep_decrypts_python_fixture_and_round_trips() {
        let k = key();
        let ct = unhex(FIX_OAEP_CT_HEX);
        assert_eq!(
            oaep_decrypt(&k, "OAEP-SHA1", &ct).expect("dec"),
            FIX_AES_KEY.as_bytes()
        );
        let ct2 = oaep_encrypt(k.as_public_key(), b"hello").expect("enc");
        assert_eq!(oaep_decrypt(&k, "OAEP-SHA1", &ct2).expect("dec"), b"hello");
        assert!(oaep_decrypt(&k, "OAEP-SHA1", &ct2[..100]).is_err());
        assert!(oaep_decrypt(&k, "OAEP-MD5", &ct2).is_err());
    }

    #[test]
    fn pkcs1v15_verifies_python_fixture() {
        let pubk = PublicKey::from_public_key_pem(FIX_PUB_PEM).expect("pub");
        let sig = unhex(FIX_SIG_HEX);
        verify(&pubk, "PKCS1v15-SHA1", FIX_SIGNED_MSG, &sig).expect("verify");
        assert!(verify(&pubk, "PKCS1v15-SHA1", b"other", &sig).is_err());
        let mine = sign_sha1(&key(), FIX_SIGNED_MSG).expect("sign");
        assert_eq!(mine, sig, "PKCS#1 v1.5 is deterministic");
    }

    #[test]
    fn crypticle_decrypts_python_fixture() {
        let c = Crypticle::from_key_string(FIX_AES_KEY.as_bytes()).expect("key");
        let ct = unhex(FIX_CRYPTICLE_CT_HEX);
        let out = c.loads(&ct, Some(FIX_CRYPTICLE_NONCE)).expect("loads");
        assert_eq!(out, FIX_CRYPTICLE_PAYLOAD);
        assert!(matches!(
            c.loads(&ct, Some(&"0".repeat(32))),
            Err(CryptoError::Nonce)
        ));
    }

    #[test]
    fn crypticle_round_trip_and_tamper() {
        let c = Crypticle::from_key_string(generate_key_string().as_bytes()).expect("key");
        for len in [0usize, 1, 15, 16, 17, 1000] {
            let payload = vec![7u8; len];
            let ct = c.dumps(&payload, None);
            assert_eq!(c.loads(&ct, None).expect("rt"), payload);
            let mut bad = ct.clone();
            bad[20] ^= 1;
            assert!(matches!(c.loads(&bad, None), Err(CryptoError::Hmac)));
            assert!(c.loads(&ct[..ct.len() - 1], None).is_err());
        }
        let other = Crypticle::from_key_string(generate_key_string().as_bytes()).expect("key");
        assert!(matches!(
            other.loads(&c.dumps(b"x", None), None),
            Err(CryptoError::Hmac)
        ));
        assert!(c.loads(&[], None).is_err());
        assert!(Crypticle::from_key_string(b"not base64!").is_err());
        assert!(Crypticle::from_key_string(b"AAAA").is_err());
        assert_eq!(new_nonce().len(), 32);
    }
}
