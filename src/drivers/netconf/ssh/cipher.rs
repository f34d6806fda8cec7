//! The binary packet protocol (RFC 4253 §6): sealing outgoing payloads and opening
//! incoming packets with the negotiated cipher and MAC. The ciphers are
//! `chacha20-poly1305@openssh.com`, `aes{128,256}-gcm@openssh.com` (RFC 5647) and
//! `aes{128,256}-ctr` with `hmac-sha2-{256,512}[-etm@openssh.com]`; the primitives
//! are RustCrypto's. Before the first NEWKEYS packets are plain.

use std::ops::Range;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aes::{Aes128, Aes256};
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit as _};
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20Legacy;
use hmac::{Hmac, KeyInit};
use poly1305::Poly1305;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::error::SshError;

/// The largest `packet_length` accepted (OpenSSH's limit).
pub const MAX_PACKET: usize = 256 * 1024;

pub const CIPHERS: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes128-ctr",
];

pub const MACS: &[&str] = &[
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
];

/// Key material one direction needs: (iv length, key length).
pub fn cipher_sizes(name: &str) -> (usize, usize) {
    match name {
        "chacha20-poly1305@openssh.com" => (0, 64),
        "aes256-gcm@openssh.com" => (12, 32),
        "aes128-gcm@openssh.com" => (12, 16),
        "aes256-ctr" => (16, 32),
        _ => (16, 16),
    }
}

/// Whether the cipher authenticates itself (then no MAC is negotiated).
pub fn is_aead(name: &str) -> bool {
    name.starts_with("chacha20") || name.ends_with("-gcm@openssh.com")
}

pub fn mac_key_len(name: &str) -> usize {
    if name.starts_with("hmac-sha2-512") {
        64
    } else {
        32
    }
}

enum Gcm {
    A128(Box<Aes128Gcm>),
    A256(Box<Aes256Gcm>),
}

enum Ctr {
    A128(Box<ctr::Ctr128BE<Aes128>>),
    A256(Box<ctr::Ctr128BE<Aes256>>),
}

impl Ctr {
    fn apply(&mut self, b: &mut [u8]) {
        match self {
            Ctr::A128(c) => c.apply_keystream(b),
            Ctr::A256(c) => c.apply_keystream(b),
        }
    }

    /// Decrypts the first block without advancing the stream.
    fn peek(&self, b: &mut [u8]) {
        match self {
            Ctr::A128(c) => c.as_ref().clone().apply_keystream(b),
            Ctr::A256(c) => c.as_ref().clone().apply_keystream(b),
        }
    }
}

struct MacKey {
    sha512: bool,
    etm: bool,
    key: Vec<u8>,
}

impl MacKey {
    fn len(&self) -> usize {
        if self.sha512 {
            64
        } else {
            32
        }
    }

    fn compute(&self, seq: u32, data: &[u8]) -> Vec<u8> {
        fn run<M: hmac::Mac + KeyInit>(key: &[u8], seq: u32, data: &[u8]) -> Vec<u8> {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(&seq.to_be_bytes());
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                // HMAC takes keys of any length.
                Err(_) => Vec::new(),
            }
        }
        if self.sha512 {
            run::<Hmac<Sha512>>(&self.key, seq, data)
        } else {
            run::<Hmac<Sha256>>(&self.key, seq, data)
        }
    }

    fn verify(&self, seq: u32, data: &[u8], tag: &[u8]) -> Result<(), SshError> {
        if bool::from(self.compute(seq, data).ct_eq(tag)) {
            Ok(())
        } else {
            Err(SshError::Mac)
        }
    }
}

enum Keys {
    Plain,
    ChaCha { main: [u8; 32], header: [u8; 32] },
    Gcm { cipher: Gcm, iv: [u8; 12] },
    Ctr { cipher: Ctr, mac: MacKey },
}

/// One direction's cipher state.
pub struct Direction {
    keys: Keys,
}

fn poly_key(main: &[u8; 32], nonce: &[u8; 8]) -> (ChaCha20Legacy, [u8; 32]) {
    let mut c = ChaCha20Legacy::new(main.into(), nonce.into());
    let mut k = [0u8; 32];
    c.apply_keystream(&mut k);
    c.seek(64u64);
    (c, k)
}

fn poly_tag(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    use poly1305::universal_hash::KeyInit as _;
    Poly1305::new(key.into()).compute_unpadded(data).into()
}

fn gcm_next(iv: &mut [u8; 12]) {
    let mut ctr = [0u8; 8];
    ctr.copy_from_slice(&iv[4..]);
    iv[4..].copy_from_slice(&u64::from_be_bytes(ctr).wrapping_add(1).to_be_bytes());
}

impl Direction {
    pub fn plain() -> Direction {
        Direction { keys: Keys::Plain }
    }

    /// A direction of the negotiated `cipher` (and `mac` unless AEAD) from the
    /// derived iv, key and MAC key.
    pub fn new(cipher: &str, mac: &str, iv: &[u8], key: &[u8], mac_key: &[u8]) -> Direction {
        let keys = match cipher {
            "chacha20-poly1305@openssh.com" => {
                let mut main = [0u8; 32];
                let mut header = [0u8; 32];
                main.copy_from_slice(&key[..32]);
                header.copy_from_slice(&key[32..64]);
                Keys::ChaCha { main, header }
            }
            "aes256-gcm@openssh.com" | "aes128-gcm@openssh.com" => {
                let mut n = [0u8; 12];
                n.copy_from_slice(&iv[..12]);
                let cipher = if key.len() == 32 {
                    Gcm::A256(Box::new(Aes256Gcm::new(key.into())))
                } else {
                    Gcm::A128(Box::new(Aes128Gcm::new(key.into())))
                };
                Keys::Gcm { cipher, iv: n }
            }
            _ => {
                let cipher = if key.len() == 32 {
                    Ctr::A256(Box::new(ctr::Ctr128BE::<Aes256>::new(
                        key.into(),
                        iv.into(),
                    )))
                } else {
                    Ctr::A128(Box::new(ctr::Ctr128BE::<Aes128>::new(
                        key.into(),
                        iv.into(),
                    )))
                };
                Keys::Ctr {
                    cipher,
                    mac: MacKey {
                        sha512: mac.starts_with("hmac-sha2-512"),
                        etm: mac.ends_with("-etm@openssh.com"),
                        key: mac_key.to_vec(),
                    },
                }
            }
        };
        Direction { keys }
    }

    /// (block size, whether the length field is outside the padded body).
    fn shape(&self) -> (usize, bool) {
        match &self.keys {
            Keys::Plain => (8, false),
            Keys::ChaCha { .. } => (8, true),
            Keys::Gcm { .. } => (16, true),
            Keys::Ctr { mac, .. } => (16, mac.etm),
        }
    }

    /// Appends `payload` as one packet, sequence number `seq`, to `out`.
    pub fn seal(&mut self, seq: u32, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SshError> {
        let (block, aad) = self.shape();
        let counted = 1 + payload.len() + if aad { 0 } else { 4 };
        let mut pad = block - counted % block;
        if pad < 4 {
            pad += block;
        }
        let len = 1 + payload.len() + pad;
        if len > MAX_PACKET {
            return Err(SshError::Protocol("outgoing packet too large".into()));
        }
        let start = out.len();
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.push(pad as u8);
        out.extend_from_slice(payload);
        let filler: [u8; 32] = rand::random();
        out.extend_from_slice(&filler[..pad]);
        let packet = &mut out[start..];
        match &mut self.keys {
            Keys::Plain => {}
            Keys::ChaCha { main, header } => {
                let nonce = u64::from(seq).to_be_bytes();
                ChaCha20Legacy::new((&*header).into(), (&nonce).into())
                    .apply_keystream(&mut packet[..4]);
                let (mut c, key) = poly_key(main, &nonce);
                c.apply_keystream(&mut packet[4..]);
                let tag = poly_tag(&key, packet);
                out.extend_from_slice(&tag);
            }
            Keys::Gcm { cipher, iv } => {
                let (head, body) = packet.split_at_mut(4);
                let tag = match cipher {
                    Gcm::A128(c) => c.encrypt_in_place_detached((&*iv).into(), head, body),
                    Gcm::A256(c) => c.encrypt_in_place_detached((&*iv).into(), head, body),
                }
                .map_err(|_| SshError::Protocol("AES-GCM refused to seal".into()))?;
                gcm_next(iv);
                out.extend_from_slice(&tag);
            }
            Keys::Ctr { cipher, mac } => {
                if mac.etm {
                    cipher.apply(&mut packet[4..]);
                    let tag = mac.compute(seq, packet);
                    out.extend_from_slice(&tag);
                } else {
                    let tag = mac.compute(seq, packet);
                    cipher.apply(packet);
                    out.extend_from_slice(&tag);
                }
            }
        }
        Ok(())
    }

    fn check_len(len: usize, block: usize, aad: bool) -> Result<(), SshError> {
        let counted = if aad { len } else { len + 4 };
        if !(5..=MAX_PACKET).contains(&len) || counted % block != 0 {
            return Err(SshError::Protocol(format!("bad packet length {len}")));
        }
        Ok(())
    }

    /// Opens the packet at the front of `buf` (decrypting in place). `Ok(None)`: not
    /// all of it has arrived. Otherwise the payload's range in `buf` and the bytes
    /// the packet took.
    pub fn open(
        &mut self,
        seq: u32,
        buf: &mut [u8],
    ) -> Result<Option<(Range<usize>, usize)>, SshError> {
        if buf.len() < 16 {
            // Every packet is at least 16 bytes; the CTR length peek needs a block.
            return Ok(None);
        }
        let (block, aad) = self.shape();
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let (len, total) = match &mut self.keys {
            Keys::Plain => {
                let len = be(buf);
                Self::check_len(len, block, aad)?;
                if buf.len() < 4 + len {
                    return Ok(None);
                }
                (len, 4 + len)
            }
            Keys::ChaCha { main, header } => {
                let nonce = u64::from(seq).to_be_bytes();
                let mut lb = [buf[0], buf[1], buf[2], buf[3]];
                ChaCha20Legacy::new((&*header).into(), (&nonce).into()).apply_keystream(&mut lb);
                let len = be(&lb);
                Self::check_len(len, block, aad)?;
                if buf.len() < 4 + len + 16 {
                    return Ok(None);
                }
                let (mut c, key) = poly_key(main, &nonce);
                let tag = poly_tag(&key, &buf[..4 + len]);
                if !bool::from(tag.ct_eq(&buf[4 + len..4 + len + 16])) {
                    return Err(SshError::Mac);
                }
                c.apply_keystream(&mut buf[4..4 + len]);
                buf[..4].copy_from_slice(&lb);
                (len, 4 + len + 16)
            }
            Keys::Gcm { cipher, iv } => {
                let len = be(buf);
                Self::check_len(len, block, aad)?;
                if buf.len() < 4 + len + 16 {
                    return Ok(None);
                }
                let (head, rest) = buf.split_at_mut(4);
                let (body, tag) = rest.split_at_mut(len);
                let tag = aes_gcm::Tag::from_slice(&tag[..16]);
                match cipher {
                    Gcm::A128(c) => c.decrypt_in_place_detached((&*iv).into(), head, body, tag),
                    Gcm::A256(c) => c.decrypt_in_place_detached((&*iv).into(), head, body, tag),
                }
                .map_err(|_| SshError::Mac)?;
                gcm_next(iv);
                (len, 4 + len + 16)
            }
            Keys::Ctr { cipher, mac } => {
                let ml = mac.len();
                if mac.etm {
                    let len = be(buf);
                    Self::check_len(len, block, aad)?;
                    if buf.len() < 4 + len + ml {
                        return Ok(None);
                    }
                    mac.verify(seq, &buf[..4 + len], &buf[4 + len..4 + len + ml])?;
                    cipher.apply(&mut buf[4..4 + len]);
                    (len, 4 + len + ml)
                } else {
                    let mut first = [0u8; 16];
                    first.copy_from_slice(&buf[..16]);
                    cipher.peek(&mut first);
                    let len = be(&first);
                    Self::check_len(len, block, aad)?;
                    if buf.len() < 4 + len + ml {
                        return Ok(None);
                    }
                    cipher.apply(&mut buf[..4 + len]);
                    mac.verify(seq, &buf[..4 + len], &buf[4 + len..4 + len + ml])?;
                    (len, 4 + len + ml)
                }
            }
        };
        let pad = usize::from(buf[4]);
        if pad < 4 || pad + 1 > len {
            return Err(SshError::Protocol(format!("bad padding length {pad}")));
        }
        Ok(Some((5..4 + len - pad, total)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cipher: &str, mac: &str) -> (Direction, Direction) {
        let (ivl, kl) = cipher_sizes(cipher);
        let iv: Vec<u8> = (0..ivl as u8).collect();
        let key: Vec<u8> = (0..kl as u8).map(|b| b.wrapping_mul(7)).collect();
        let mk: Vec<u8> = (0..mac_key_len(mac) as u8).collect();
        (
            Direction::new(cipher, mac, &iv, &key, &mk),
            Direction::new(cipher, mac, &iv, &key, &mk),
        )
    }

    fn combos() -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<(&str, &str)> = vec![("none", "")];
        for c in CIPHERS {
            if is_aead(c) {
                v.push((c, ""));
            } else {
                for m in MACS {
                    v.push((c, m));
                }
            }
        }
        v
    }

    fn directions(c: &str, m: &str) -> (Direction, Direction) {
        if c == "none" {
            (Direction::plain(), Direction::plain())
        } else {
            pair(c, m)
        }
    }

    #[test]
    fn every_cipher_opens_what_it_sealed_only_once_whole() {
        for (c, m) in combos() {
            let (mut tx, mut rx) = directions(c, m);
            let payloads: [&[u8]; 3] = [b"first", &[7u8; 3000], b""];
            let mut wire = Vec::new();
            for (seq, p) in payloads.iter().enumerate() {
                tx.seal(seq as u32 + 5, p, &mut wire).unwrap();
            }
            for (seq, p) in payloads.iter().enumerate() {
                let seq = seq as u32 + 5;
                let mut n = 0;
                let (range, used) = loop {
                    let mut probe = wire[..n].to_vec();
                    if let Some((range, used)) = rx.open(seq, &mut probe).unwrap() {
                        assert_eq!(&probe[range.clone()], *p, "{c}/{m}");
                        break (range, used);
                    }
                    n += 1;
                    assert!(n <= wire.len(), "{c}/{m}: never complete");
                };
                assert_eq!(used, n, "{c}/{m}: opened before the packet was whole");
                assert_eq!(range.len(), p.len());
                wire.drain(..used);
            }
            assert!(wire.is_empty());
        }
    }

    #[test]
    fn a_flipped_bit_or_a_wrong_sequence_number_is_refused() {
        for (c, m) in combos().into_iter().skip(1) {
            for flip in [6usize, 20, usize::MAX] {
                if flip == usize::MAX && c.ends_with("-gcm@openssh.com") {
                    // GCM's nonce counter, not the sequence number, orders packets.
                    continue;
                }
                let (mut tx, mut rx) = directions(c, m);
                let mut wire = Vec::new();
                tx.seal(1, &[9u8; 40], &mut wire).unwrap();
                let seq = if flip == usize::MAX { 2 } else { 1 };
                if flip != usize::MAX {
                    wire[flip] ^= 0x10;
                }
                assert!(rx.open(seq, &mut wire).is_err(), "{c}/{m} flip {flip}");
            }
        }
    }

    #[test]
    fn lengths_out_of_bounds_are_refused_before_waiting_for_them() {
        let mut rx = Direction::plain();
        let mut huge = vec![0u8; 16];
        huge[..4].copy_from_slice(&((MAX_PACKET + 8) as u32).to_be_bytes());
        assert!(rx.open(0, &mut huge).is_err());
        let mut tiny = vec![0u8; 16];
        tiny[3] = 4;
        assert!(rx.open(0, &mut tiny).is_err());
    }
}
