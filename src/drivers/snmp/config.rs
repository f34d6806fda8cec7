//! An SNMP device's inventory settings: where the agent is and how to authenticate,
//! with protocol names parsed once, here, into the types the client uses (an unknown
//! name is refused, never mapped to a default).

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use super::{AuthProtocol, PrivProtocol, SnmpVersion};
use crate::drivers::{DriverSettings, FieldError};
use crate::secrets::Secret;

/// An SNMP agent: where it is and how to authenticate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpConfig {
    #[serde(deserialize_with = "de_host")]
    pub host: IpAddr,
    #[serde(default = "default_port")]
    pub port: u16,
    /// "1", "2c" or "3" (2 and integers accepted too).
    #[serde(default = "default_version", deserialize_with = "de_version")]
    pub version: SnmpVersion,
    #[serde(default = "default_community")]
    pub community: Secret,
    /// The USM user name, for version 3.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "de_auth")]
    pub auth_protocol: Option<AuthProtocol>,
    #[serde(default)]
    pub auth_password: Option<Secret>,
    #[serde(default, deserialize_with = "de_priv")]
    pub priv_protocol: Option<PrivProtocol>,
    #[serde(default)]
    pub priv_password: Option<Secret>,
    /// Retransmissions after a timeout, at most 10.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// GETBULK max-repetitions for `snmp.bulkwalk` and background polls, 1 to 1000.
    #[serde(default = "default_max_repetitions")]
    pub max_repetitions: u32,
}

/// snmp_exporter's default: about half the round trips of Net-SNMP's 10.
pub const DEFAULT_MAX_REPETITIONS: u32 = 25;

fn default_max_repetitions() -> u32 {
    DEFAULT_MAX_REPETITIONS
}

fn default_port() -> u16 {
    161
}

fn default_version() -> SnmpVersion {
    SnmpVersion::V2c
}

fn default_community() -> Secret {
    Secret::new("public")
}

fn default_retries() -> u32 {
    1
}

impl DriverSettings for SnmpConfig {
    fn check(&mut self, _base: &Path) -> Result<(), FieldError> {
        self.retries = self.retries.min(10);
        if !(1..=1000).contains(&self.max_repetitions) {
            return Err(FieldError::new("max_repetitions", "must be 1 to 1000"));
        }
        if self.version != SnmpVersion::V3 {
            return Ok(());
        }
        if self.user.is_none() {
            return Err(FieldError::new("user", "required for SNMP version 3"));
        }
        if self.auth_protocol.is_some() && !long_enough(&self.auth_password) {
            return Err(FieldError::new(
                "auth_password",
                "required, at least 8 characters",
            ));
        }
        if self.priv_protocol.is_some() {
            if self.auth_protocol.is_none() {
                return Err(FieldError::new(
                    "priv_protocol",
                    "privacy needs an auth_protocol too",
                ));
            }
            if !long_enough(&self.priv_password) {
                return Err(FieldError::new(
                    "priv_password",
                    "required, at least 8 characters",
                ));
            }
        }
        Ok(())
    }

    fn address(&self) -> Option<IpAddr> {
        Some(self.host)
    }
}

/// RFC 3414's password-to-key needs at least 8 characters.
fn long_enough(p: &Option<Secret>) -> bool {
    p.as_ref().is_some_and(|p| p.expose().len() >= 8)
}

fn de_host<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let host = String::deserialize(d)?;
    host.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{host:?} is not an IP address (host names are not resolved yet)"
        ))
    })
}

/// A string or an integer: TOML and YAML users write both `"3"` and `3`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    S(String),
    N(i64),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::S(s) => s,
            Text::N(n) => n.to_string(),
        }
    }
}

fn de_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SnmpVersion, D::Error> {
    let v = Text::deserialize(d)?.into_string();
    match v.as_str() {
        "1" => Ok(SnmpVersion::V1),
        "2c" | "2" => Ok(SnmpVersion::V2c),
        "3" => Ok(SnmpVersion::V3),
        other => Err(serde::de::Error::custom(format!(
            "{other:?}: use \"1\", \"2c\" or \"3\""
        ))),
    }
}

fn de_auth<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AuthProtocol>, D::Error> {
    let p = String::deserialize(d)?;
    p.parse().map(Some).map_err(serde::de::Error::custom)
}

fn de_priv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PrivProtocol>, D::Error> {
    let p = String::deserialize(d)?;
    p.parse().map(Some).map_err(serde::de::Error::custom)
}
