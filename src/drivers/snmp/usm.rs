//! SNMPv3 User-based Security Model: password-to-key and key localization
//! (RFC 3414 A.2, RFC 7860 for SHA-2), HMAC authentication (MD5-96, SHA-96,
//! SHA-256-192, SHA-512-384), privacy (DES-CBC RFC 3414 8, AES-128-CFB
//! RFC 3826, AES-256-CFB with the Blumenthal key extension Net-SNMP uses),
//! and USM report decoding.
//!
//! Both sides use this module: the client to secure requests and open
//! replies, the device simulator to open requests and secure responses
//! (`open` / `encode_secured` are symmetric). Keys are never logged and are
//! redacted from `Debug`.

use std::fmt;
use std::sync::OnceLock;

use aes::{Aes128, Aes256};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use dashmap::DashMap;
use des::Des;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::error::SnmpError;
use super::pdu::{self, ScopedPdu, ScopedPduData, V3Message, FLAG_AUTH, FLAG_PRIV};
use super::value::{Oid, VarBind};
use super::{AuthProtocol, PrivProtocol, UsmUser};

type Result<T> = std::result::Result<T, SnmpError>;

/// RFC 3414 A.2: the password is repeated to fill 1 MiB before hashing.
const EXPANDED_PASSWORD_LEN: usize = 1_048_576;

fn hash(proto: &AuthProtocol, parts: &[&[u8]]) -> Vec<u8> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut h = D::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().to_vec()
    }
    match proto {
        AuthProtocol::Md5 => run::<Md5>(parts),
        AuthProtocol::Sha1 => run::<Sha1>(parts),
        AuthProtocol::Sha256 => run::<Sha256>(parts),
        AuthProtocol::Sha512 => run::<Sha512>(parts),
    }
}

/// Full-length HMAC of `data`.
fn hmac(proto: &AuthProtocol, key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    macro_rules! mac {
        ($h:ty) => {{
            let mut m = <Hmac<$h> as KeyInit>::new_from_slice(key)
                .map_err(|_| SnmpError::Security("bad HMAC key"))?;
            Mac::update(&mut m, data);
            m.finalize().into_bytes().to_vec()
        }};
    }
    Ok(match proto {
        AuthProtocol::Md5 => mac!(Md5),
        AuthProtocol::Sha1 => mac!(Sha1),
        AuthProtocol::Sha256 => mac!(Sha256),
        AuthProtocol::Sha512 => mac!(Sha512),
    })
}

/// Length of msgAuthenticationParameters (truncated MAC) per protocol.
pub fn auth_param_len(proto: &AuthProtocol) -> usize {
    match proto {
        AuthProtocol::Md5 | AuthProtocol::Sha1 => 12,
        AuthProtocol::Sha256 => 24,
        AuthProtocol::Sha512 => 48,
    }
}

/// RFC 3414 A.2.1/A.2.2 password-to-key (Ku). Net-SNMP refuses passwords
/// shorter than 8 characters; so do we, which also rules out the empty one.
pub fn password_to_key(proto: &AuthProtocol, password: &[u8]) -> Result<Vec<u8>> {
    if password.len() < 8 {
        return Err(SnmpError::Config("USM password shorter than 8 characters"));
    }
    fn run<D: Digest>(password: &[u8]) -> Vec<u8> {
        let mut h = D::new();
        let mut block = [0u8; 64];
        let mut idx = 0usize;
        for _ in 0..EXPANDED_PASSWORD_LEN / 64 {
            for b in block.iter_mut() {
                *b = password[idx % password.len()];
                idx += 1;
            }
            h.update(block);
        }
        h.finalize().to_vec()
    }
    Ok(match proto {
        AuthProtocol::Md5 => run::<Md5>(password),
        AuthProtocol::Sha1 => run::<Sha1>(password),
        AuthProtocol::Sha256 => run::<Sha256>(password),
        AuthProtocol::Sha512 => run::<Sha512>(password),
    })
}

/// RFC 3414 A.2 localization: Kul = H(Ku || engineID || Ku).
pub fn localize_key(proto: &AuthProtocol, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
    hash(proto, &[ku, engine_id, ku])
}

/// Ku is independent of the engine, and thousands of targets typically share
/// a handful of credentials, so the 1 MiB hashing is done once per
/// (protocol, password) for the process.
fn cached_ku(proto: &AuthProtocol, password: &str) -> Result<Vec<u8>> {
    static CACHE: OnceLock<DashMap<(u8, String), Vec<u8>>> = OnceLock::new();
    let cache = CACHE.get_or_init(DashMap::new);
    let tag = match proto {
        AuthProtocol::Md5 => 0,
        AuthProtocol::Sha1 => 1,
        AuthProtocol::Sha256 => 2,
        AuthProtocol::Sha512 => 3,
    };
    let key = (tag, password.to_string());
    if let Some(k) = cache.get(&key) {
        return Ok(k.clone());
    }
    let ku = password_to_key(proto, password.as_bytes())?;
    cache.insert(key, ku.clone());
    Ok(ku)
}

/// Keys of one user localized to one engine. `Debug` shows only protocols.
#[derive(Clone)]
pub struct LocalizedKeys {
    pub user_name: Vec<u8>,
    auth: Option<(AuthProtocol, Vec<u8>)>,
    privacy: Option<(PrivProtocol, Vec<u8>)>,
}

impl fmt::Debug for LocalizedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalizedKeys")
            .field("user_name", &String::from_utf8_lossy(&self.user_name))
            .field("auth", &self.auth.as_ref().map(|(p, _)| p))
            .field("privacy", &self.privacy.as_ref().map(|(p, _)| p))
            .finish()
    }
}

impl LocalizedKeys {
    /// Derive and localize the user's keys for `engine_id`.
    pub fn derive(user: &UsmUser, engine_id: &[u8]) -> Result<LocalizedKeys> {
        let auth = match &user.auth {
            Some((p, pw)) => Some((p.clone(), localize_key(p, &cached_ku(p, pw)?, engine_id))),
            None => None,
        };
        let privacy = match (&user.privacy, &user.auth) {
            (None, _) => None,
            (Some(_), None) => return Err(SnmpError::Config("privacy requires authentication")),
            (Some((pp, pw)), Some((ap, _))) => {
                // The privacy key is derived with the authentication hash.
                let mut k = localize_key(ap, &cached_ku(ap, pw)?, engine_id);
                let need = priv_key_len(pp);
                // Blumenthal extension (draft-blumenthal-aes-usm, Net-SNMP's
                // default for AES-256): Kul' = Kul || H(Kul) || ...
                while k.len() < need {
                    let ext = hash(ap, &[&k]);
                    k.extend_from_slice(&ext);
                }
                Some((pp.clone(), k))
            }
        };
        Ok(LocalizedKeys {
            user_name: user.name.as_bytes().to_vec(),
            auth,
            privacy,
        })
    }

    /// msgFlags security bits this user's level implies.
    pub fn level_flags(&self) -> u8 {
        let mut f = 0;
        if self.auth.is_some() {
            f |= FLAG_AUTH;
        }
        if self.privacy.is_some() {
            f |= FLAG_PRIV;
        }
        f
    }

    pub fn auth_protocol(&self) -> Option<&AuthProtocol> {
        self.auth.as_ref().map(|(p, _)| p)
    }
}

fn priv_key_len(p: &PrivProtocol) -> usize {
    match p {
        // 8 bytes DES key + 8 bytes pre-IV.
        PrivProtocol::Des => 16,
        PrivProtocol::Aes128 => 16,
        PrivProtocol::Aes256 => 32,
    }
}

fn key_prefix(k: &[u8], n: usize) -> Result<&[u8]> {
    k.get(..n)
        .ok_or(SnmpError::Security("privacy key too short"))
}

/// Encrypt a serialized scoped PDU. Returns (ciphertext, msgPrivacyParameters).
pub fn encrypt_scoped(
    proto: &PrivProtocol,
    key: &[u8],
    boots: u32,
    time: u32,
    salt: u64,
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>)> {
    match proto {
        PrivProtocol::Des => {
            let k = key_prefix(key, 16)?;
            let mut salt_bytes = [0u8; 8];
            salt_bytes[..4].copy_from_slice(&boots.to_be_bytes());
            salt_bytes[4..].copy_from_slice(&(salt as u32).to_be_bytes());
            let mut iv = [0u8; 8];
            for i in 0..8 {
                iv[i] = k[8 + i] ^ salt_bytes[i];
            }
            // RFC 3414 8.1.1.2: pad to a multiple of 8; the BER length
            // inside tells the receiver where the real data ends.
            let mut buf = plaintext.to_vec();
            buf.resize(plaintext.len().div_ceil(8) * 8, 0);
            let n = buf.len();
            let enc = cbc::Encryptor::<Des>::new_from_slices(&k[..8], &iv)
                .map_err(|_| SnmpError::Security("DES key"))?;
            enc.encrypt_padded::<NoPadding>(&mut buf, n)
                .map_err(|_| SnmpError::Security("DES padding"))?;
            Ok((buf, salt_bytes.to_vec()))
        }
        PrivProtocol::Aes128 | PrivProtocol::Aes256 => {
            let salt_bytes = salt.to_be_bytes();
            let iv = aes_iv(boots, time, &salt_bytes);
            let mut buf = plaintext.to_vec();
            aes_cfb(proto, key, &iv, &mut buf, true)?;
            Ok((buf, salt_bytes.to_vec()))
        }
    }
}

/// Decrypt an encryptedPDU with the message's engine boots/time and salt.
pub fn decrypt_scoped(
    proto: &PrivProtocol,
    key: &[u8],
    boots: u32,
    time: u32,
    priv_params: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>> {
    let salt: [u8; 8] = priv_params
        .try_into()
        .map_err(|_| SnmpError::Security("privacy parameters length"))?;
    match proto {
        PrivProtocol::Des => {
            let k = key_prefix(key, 16)?;
            if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(8) {
                return Err(SnmpError::Security("DES ciphertext length"));
            }
            let mut iv = [0u8; 8];
            for i in 0..8 {
                iv[i] = k[8 + i] ^ salt[i];
            }
            let mut buf = ciphertext.to_vec();
            let dec = cbc::Decryptor::<Des>::new_from_slices(&k[..8], &iv)
                .map_err(|_| SnmpError::Security("DES key"))?;
            let n = dec
                .decrypt_padded::<NoPadding>(&mut buf)
                .map_err(|_| SnmpError::Security("DES decrypt"))?
                .len();
            buf.truncate(n);
            Ok(buf)
        }
        PrivProtocol::Aes128 | PrivProtocol::Aes256 => {
            let iv = aes_iv(boots, time, &salt);
            let mut buf = ciphertext.to_vec();
            aes_cfb(proto, key, &iv, &mut buf, false)?;
            Ok(buf)
        }
    }
}

/// RFC 3826 3.1.2.1: IV = engineBoots || engineTime || salt.
fn aes_iv(boots: u32, time: u32, salt: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt);
    iv
}

fn aes_cfb(proto: &PrivProtocol, key: &[u8], iv: &[u8], buf: &mut [u8], enc: bool) -> Result<()> {
    let bad = |_| SnmpError::Security("AES key");
    match (proto, enc) {
        (PrivProtocol::Aes256, true) => {
            cfb_mode::Encryptor::<Aes256>::new_from_slices(key_prefix(key, 32)?, iv)
                .map_err(bad)?
                .encrypt(buf)
        }
        (PrivProtocol::Aes256, false) => {
            cfb_mode::Decryptor::<Aes256>::new_from_slices(key_prefix(key, 32)?, iv)
                .map_err(bad)?
                .decrypt(buf)
        }
        (_, true) => cfb_mode::Encryptor::<Aes128>::new_from_slices(key_prefix(key, 16)?, iv)
            .map_err(bad)?
            .encrypt(buf),
        (_, false) => cfb_mode::Decryptor::<Aes128>::new_from_slices(key_prefix(key, 16)?, iv)
            .map_err(bad)?
            .decrypt(buf),
    }
    Ok(())
}

/// Serialize a v3 message with USM protection according to its flags:
/// encrypts a `Plain` scoped PDU when FLAG_PRIV is set (salt is the caller's
/// per-message counter/random value), then signs when FLAG_AUTH is set. The
/// message's user name is used as given; boots/time are the authoritative
/// engine's (the agent's).
pub fn encode_secured(msg: &V3Message, keys: &LocalizedKeys, salt: u64) -> Result<Vec<u8>> {
    let mut m = msg.clone();
    if m.flags & FLAG_PRIV != 0 {
        let (pp, key) = keys
            .privacy
            .as_ref()
            .ok_or(SnmpError::Config("privacy flag without privacy key"))?;
        if let ScopedPduData::Plain(s) = &m.data {
            let plain = pdu::encode_scoped_pdu(s);
            let (ct, params) =
                encrypt_scoped(pp, key, m.usm.engine_boots, m.usm.engine_time, salt, &plain)?;
            m.data = ScopedPduData::Encrypted(ct);
            m.usm.priv_params = params;
        }
    } else {
        m.usm.priv_params.clear();
    }
    if m.flags & FLAG_AUTH != 0 {
        let (ap, key) = keys
            .auth
            .as_ref()
            .ok_or(SnmpError::Config("auth flag without auth key"))?;
        let n = auth_param_len(ap);
        m.usm.auth_params = vec![0; n];
        let (mut bytes, range) = pdu::encode_v3(&m);
        let mac = hmac(ap, key, &bytes)?;
        let dst = bytes
            .get_mut(range)
            .ok_or(SnmpError::Security("auth parameters placement"))?;
        dst.copy_from_slice(mac.get(..n).ok_or(SnmpError::Security("short MAC"))?);
        Ok(bytes)
    } else {
        m.usm.auth_params.clear();
        Ok(pdu::encode_v3(&m).0)
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decode untrusted bytes as a v3 message, verify its MAC when FLAG_AUTH is
/// set and decrypt when FLAG_PRIV is set. The returned message always has a
/// `Plain` scoped PDU. Messages without FLAG_AUTH are returned unverified:
/// the caller decides whether the security level is acceptable (discovery
/// reports are legitimately unauthenticated).
pub fn open(bytes: &[u8], keys: &LocalizedKeys) -> Result<V3Message> {
    let (msg, range) = pdu::decode_with_auth_range(bytes)?;
    let mut m = match msg {
        pdu::Message::V3(m) => m,
        pdu::Message::Community(_) => return Err(SnmpError::UnexpectedResponse("not SNMPv3")),
    };
    if m.flags & FLAG_AUTH != 0 {
        let (ap, key) = keys.auth.as_ref().ok_or(SnmpError::Security(
            "authenticated message without auth key",
        ))?;
        let range = range.ok_or(SnmpError::Malformed("no auth parameters"))?;
        if range.len() != auth_param_len(ap) {
            return Err(SnmpError::Security("auth parameters length"));
        }
        let mut copy = bytes.to_vec();
        let received = bytes.get(range.clone()).unwrap_or(&[]).to_vec();
        if let Some(dst) = copy.get_mut(range.clone()) {
            dst.fill(0);
        }
        let mac = hmac(ap, key, &copy)?;
        if !ct_eq(mac.get(..range.len()).unwrap_or(&[]), &received) {
            return Err(SnmpError::Security("wrong digest"));
        }
    }
    if let ScopedPduData::Encrypted(ct) = &m.data {
        if m.flags & FLAG_PRIV == 0 {
            return Err(SnmpError::Malformed("encrypted data without privacy flag"));
        }
        let (pp, key) = keys
            .privacy
            .as_ref()
            .ok_or(SnmpError::Security("encrypted message without privacy key"))?;
        let plain = decrypt_scoped(
            pp,
            key,
            m.usm.engine_boots,
            m.usm.engine_time,
            &m.usm.priv_params,
            ct,
        )?;
        // A wrong key yields garbage, which the decoder rejects.
        let s =
            pdu::decode_scoped_pdu(&plain).map_err(|_| SnmpError::Security("decryption failed"))?;
        m.data = ScopedPduData::Plain(s);
    }
    Ok(m)
}

/// usmStats report OIDs (RFC 3414 5) and their labels.
const REPORTS: [(&str, &[u32]); 6] = [
    ("unsupportedSecLevel", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 1, 0]),
    ("notInTimeWindow", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0]),
    ("unknownUserName", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0]),
    ("unknownEngineID", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0]),
    ("wrongDigest", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0]),
    ("decryptionError", &[1, 3, 6, 1, 6, 3, 15, 1, 1, 6, 0]),
];

/// Label of the first varbind of a Report PDU (bounded set).
pub fn report_kind(varbinds: &[VarBind]) -> &'static str {
    varbinds
        .first()
        .and_then(|vb| {
            REPORTS
                .iter()
                .find(|(_, o)| vb.oid.arcs() == *o)
                .map(|(n, _)| *n)
        })
        .unwrap_or("unknownReport")
}

/// The varbind an agent puts in a usmStats report (for the simulator).
pub fn report_varbind(kind: &str, count: u32) -> Option<VarBind> {
    let (_, arcs) = REPORTS.iter().find(|(n, _)| *n == kind)?;
    let oid = Oid::from_arcs(arcs.to_vec()).ok()?;
    Some(VarBind::new(oid, super::value::SnmpValue::Counter32(count)))
}

/// The scoped PDU of an opened message.
pub fn scoped(m: &V3Message) -> Option<&ScopedPdu> {
    match &m.data {
        ScopedPduData::Plain(s) => Some(s),
        ScopedPduData::Encrypted(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::snmp::pdu::{Pdu, PduType, UsmSecurityParameters, FLAG_REPORTABLE};
    use crate::drivers::snmp::value::SnmpValue;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const ENGINE: &str = "000000000000000000000002";

    #[test]
    fn rfc3414_a3_1_md5() {
        let ku = password_to_key(&AuthProtocol::Md5, b"maplesyrup").unwrap();
        assert_eq!(ku, hex("9faf3283884e92834ebc9847d8edd963"));
        let kul = localize_key(&AuthProtocol::Md5, &ku, &hex(ENGINE));
        assert_eq!(kul, hex("526f5eed9fcce26f8964c2930787d82b"));
    }

    #[test]
    fn rfc3414_a3_2_sha() {
        let ku = password_to_key(&AuthProtocol::Sha1, b"maplesyrup").unwrap();
        assert_eq!(ku, hex("9fb5cc0381497b3793528939ff788d5d79145211"));
        let kul = localize_key(&AuthProtocol::Sha1, &ku, &hex(ENGINE));
        assert_eq!(kul, hex("6695febc9288e36282235fc7151f128497b38f3f"));
    }

    #[test]
    fn sha2_key_lengths_and_short_password() {
        let ku = password_to_key(&AuthProtocol::Sha256, b"maplesyrup").unwrap();
        assert_eq!(ku.len(), 32);
        assert_eq!(
            localize_key(&AuthProtocol::Sha512, &ku, &hex(ENGINE)).len(),
            64
        );
        assert!(password_to_key(&AuthProtocol::Md5, b"short").is_err());
        assert!(password_to_key(&AuthProtocol::Md5, b"").is_err());
    }

    #[test]
    fn blumenthal_extension_for_aes256_with_short_hash() {
        let user = UsmUser {
            name: "u".into(),
            auth: Some((AuthProtocol::Sha1, "maplesyrup".into())),
            privacy: Some((PrivProtocol::Aes256, "maplesyrup".into())),
        };
        let k = LocalizedKeys::derive(&user, &hex(ENGINE)).unwrap();
        let (_, key) = k.privacy.as_ref().unwrap();
        let kul = hex("6695febc9288e36282235fc7151f128497b38f3f");
        let ext = hash(&AuthProtocol::Sha1, &[&kul]);
        assert_eq!(&key[..20], &kul[..]);
        assert_eq!(&key[20..40], &ext[..]);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("maplesyrup"));
    }

    #[test]
    fn privacy_roundtrips() {
        let plain: Vec<u8> = (0u8..=200).collect();
        for (proto, klen) in [
            (PrivProtocol::Des, 16),
            (PrivProtocol::Aes128, 16),
            (PrivProtocol::Aes256, 32),
        ] {
            let key: Vec<u8> = (0..klen as u8).map(|i| i.wrapping_mul(37)).collect();
            let (ct, params) =
                encrypt_scoped(&proto, &key, 7, 12345, 0xdead_beef_0102, &plain).unwrap();
            assert_ne!(&ct[..plain.len()], &plain[..], "{proto:?} did not encrypt");
            assert_eq!(params.len(), 8);
            let pt = decrypt_scoped(&proto, &key, 7, 12345, &params, &ct).unwrap();
            assert_eq!(&pt[..plain.len()], &plain[..], "{proto:?}");
            if proto == PrivProtocol::Des {
                assert_eq!(ct.len() % 8, 0);
            } else {
                assert_eq!(ct.len(), plain.len());
                // Wrong engine time gives a different IV, so different text.
                let bad = decrypt_scoped(&proto, &key, 7, 12346, &params, &ct).unwrap();
                assert_ne!(bad, plain);
            }
            assert!(decrypt_scoped(&proto, &key, 7, 1, &params[..4], &ct).is_err());
        }
        // AES-128-CFB known answer (IV = boots||time||salt, RFC 3826).
        let key = [0x42u8; 16];
        let iv = aes_iv(0x2424_2424, 0x2424_2424, &[0x24; 8]);
        assert_eq!(iv, [0x24; 16]);
        let mut buf = b"hello world! this is my plaintext.".to_vec();
        aes_cfb(&PrivProtocol::Aes128, &key, &iv, &mut buf, true).unwrap();
        assert_eq!(
            buf,
            hex("3357121ebb5a29468bd861467596ce3d6f99e251cc2d9f0a598032ae386d0ab995b3")
        );
    }

    #[test]
    fn secured_message_roundtrip_and_tamper() {
        for (a, p) in [
            (AuthProtocol::Md5, Some(PrivProtocol::Des)),
            (AuthProtocol::Sha1, Some(PrivProtocol::Aes128)),
            (AuthProtocol::Sha256, Some(PrivProtocol::Aes256)),
            (AuthProtocol::Sha512, None),
        ] {
            let user = UsmUser {
                name: "ops".into(),
                auth: Some((a.clone(), "authpass1".into())),
                privacy: p.clone().map(|p| (p, "privpass1".to_string())),
            };
            let keys = LocalizedKeys::derive(&user, b"\x80\x00\x1f\x88\x04test").unwrap();
            let m = V3Message {
                msg_id: 9,
                max_size: 65507,
                flags: keys.level_flags() | FLAG_REPORTABLE,
                security_model: 3,
                usm: UsmSecurityParameters {
                    engine_id: b"\x80\x00\x1f\x88\x04test".to_vec(),
                    engine_boots: 2,
                    engine_time: 300,
                    user_name: b"ops".to_vec(),
                    auth_params: vec![],
                    priv_params: vec![],
                },
                data: ScopedPduData::Plain(ScopedPdu {
                    context_engine_id: b"\x80\x00\x1f\x88\x04test".to_vec(),
                    context_name: vec![],
                    pdu: Pdu::new(
                        PduType::Get,
                        5,
                        vec![VarBind::new(
                            "1.3.6.1.2.1.1.5.0".parse().unwrap(),
                            SnmpValue::OctetString(b"sw1".to_vec()),
                        )],
                    ),
                }),
            };
            let bytes = encode_secured(&m, &keys, 42).unwrap();
            let opened = open(&bytes, &keys).unwrap();
            assert_eq!(opened.data, m.data, "{a:?}/{p:?}");
            assert_eq!(opened.usm.auth_params.len(), auth_param_len(&a));
            // Flip one byte anywhere after the header: must not verify.
            let mut t = bytes.clone();
            let last = t.len() - 1;
            t[last] ^= 1;
            assert!(open(&t, &keys).is_err());
            // Keys for another engine must not verify.
            let other = LocalizedKeys::derive(&user, b"other-engine").unwrap();
            assert!(matches!(open(&bytes, &other), Err(SnmpError::Security(_))));
        }
    }

    #[test]
    fn reports() {
        let vb = report_varbind("notInTimeWindow", 3).unwrap();
        assert_eq!(report_kind(&[vb]), "notInTimeWindow");
        assert_eq!(report_kind(&[]), "unknownReport");
    }
}
