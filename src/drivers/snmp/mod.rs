//! SNMP client library for Drover: owns the public SNMP API (targets, users,
//! errors) and wires together the codec, USM security, shared transport, MIB
//! name table and the per-target client.
//!
//! # Why our own codec
//! We looked at the existing crates before writing a BER codec:
//! * `snmp2` (fork of the old `snmp` crate): v1/v2c/v3 and a tokio session,
//!   but one socket per session (no shared sockets matched by request id for
//!   thousands of agents), v3 crypto either through OpenSSL or its own pick of
//!   RustCrypto versions, and a hand-rolled parser inherited from `snmp` whose
//!   malformed-input behaviour is not fuzzed or documented.
//! * `rasn-snmp`: good typed ASN.1 definitions of the v1/v2c/v3 messages, but
//!   only data types: no USM (keys, HMAC, privacy), no transport, and v3
//!   authentication needs the exact byte offset of `msgAuthenticationParameters`
//!   in the encoded message, which a generic ASN.1 encoder does not expose.
//! * `async-snmp`: full featured, but a large dependency with its own
//!   transport model and crypto generation choices.
//!
//! SNMP needs only a small, fixed subset of BER, and the drover requirements
//! (never panic on hostile bytes, bounded allocation, one crypto generation,
//! shared sockets across many single-threaded runtimes, agent-side reuse by the
//! device simulator) are easiest to guarantee in ~1k lines we own and test with
//! proptest. So: `ber` + `pdu` + `value` are the codec, `usm` the RFC 3414 /
//! 3826 / 7860 security, `transport` the shared UDP sockets, `client` the
//! operations.
//!
//! Secrets: communities, passwords and keys are never logged, and the `Debug`
//! implementations of the types that carry them redact them.

mod ber;
mod client;
mod config;
pub mod device;
mod error;
mod mib;
mod pdu;
mod transport;
pub mod trap;
pub mod usm;
mod value;

use std::fmt;

pub use client::{ColumnWalk, SnmpClient};
pub use config::{SnmpConfig, DEFAULT_MAX_REPETITIONS};
pub use error::SnmpError;
pub use mib::oid_name;
pub use pdu::{
    decode_message, encode_message, CommunityMessage, Message, Pdu, PduType, ScopedPdu,
    ScopedPduData, UsmSecurityParameters, V3Message, FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE,
};
pub use transport::SnmpTransport;
pub use value::{Oid, SnmpValue, VarBind};

/// Protocol version spoken to a target.
#[derive(Debug, Clone, PartialEq)]
pub enum SnmpVersion {
    V1,
    V2c,
    V3,
}

/// USM authentication protocols (RFC 3414 and RFC 7860).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthProtocol {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl std::str::FromStr for AuthProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Ok(AuthProtocol::Md5),
            "SHA" | "SHA1" | "SHA-1" => Ok(AuthProtocol::Sha1),
            "SHA-256" | "SHA256" => Ok(AuthProtocol::Sha256),
            "SHA-512" | "SHA512" => Ok(AuthProtocol::Sha512),
            _ => Err(format!("{s:?}: use MD5, SHA, SHA-256 or SHA-512")),
        }
    }
}

/// USM privacy protocols (RFC 3414 DES, RFC 3826 AES-128, Blumenthal AES-256).
#[derive(Debug, Clone, PartialEq)]
pub enum PrivProtocol {
    Des,
    Aes128,
    Aes256,
}

impl std::str::FromStr for PrivProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "DES" => Ok(PrivProtocol::Des),
            "AES" | "AES128" | "AES-128" => Ok(PrivProtocol::Aes128),
            "AES256" | "AES-256" => Ok(PrivProtocol::Aes256),
            _ => Err(format!("{s:?}: use DES, AES or AES-256")),
        }
    }
}

/// An SNMPv3 USM user. Passwords are redacted from `Debug`.
#[derive(Clone, PartialEq)]
pub struct UsmUser {
    pub name: String,
    pub auth: Option<(AuthProtocol, String)>,
    pub privacy: Option<(PrivProtocol, String)>,
}

impl fmt::Debug for UsmUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsmUser")
            .field("name", &self.name)
            .field("auth", &self.auth.as_ref().map(|(p, _)| (p, "<redacted>")))
            .field(
                "privacy",
                &self.privacy.as_ref().map(|(p, _)| (p, "<redacted>")),
            )
            .finish()
    }
}

/// One agent to talk to. The community is redacted from `Debug`.
#[derive(Clone, PartialEq)]
pub struct SnmpTarget {
    pub addr: std::net::SocketAddr,
    pub version: SnmpVersion,
    pub community: String,
    pub user: Option<UsmUser>,
    pub timeout: std::time::Duration,
    pub retries: u32,
}

impl fmt::Debug for SnmpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnmpTarget")
            .field("addr", &self.addr)
            .field("version", &self.version)
            .field("community", &"<redacted>")
            .field("user", &self.user)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let t = SnmpTarget {
            addr: "127.0.0.1:161".parse().unwrap(),
            version: SnmpVersion::V3,
            community: "s3cretcomm".into(),
            user: Some(UsmUser {
                name: "ops".into(),
                auth: Some((AuthProtocol::Sha256, "authpassword1".into())),
                privacy: Some((PrivProtocol::Aes256, "privpassword1".into())),
            }),
            timeout: std::time::Duration::from_secs(1),
            retries: 1,
        };
        let s = format!("{t:?}");
        assert!(!s.contains("s3cretcomm"), "{s}");
        assert!(!s.contains("authpassword1"), "{s}");
        assert!(!s.contains("privpassword1"), "{s}");
        assert!(s.contains("ops"));
    }
}
