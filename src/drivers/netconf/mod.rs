//! NETCONF devices (RFC 6241) over SSH (RFC 6242): routers and switches of large
//! networks, and Linux hosts running netopeer2 or yuma123.
//!
//! Modules, one job each: [`framing`] (end-of-message and chunked framing, shared
//! with the simulator), [`xml`] (quick-xml parsing and the documented JSON shape),
//! [`ssh`] (the SSH client: transport, key exchange, authentication, the one
//! channel), [`session`] (host-key checks, hello, message-id'd RPCs, one kept-open
//! session per device re-established with backoff), [`ops`] (the operations the
//! `netconf.*` functions call), [`device`] (the driver the fleet holds: ping and
//! grains), [`error`] (what can go wrong, classified).

pub mod device;
pub mod error;
pub mod framing;
pub mod ops;
pub mod session;
pub mod ssh;
pub mod xml;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::{DriverSettings, FieldError};
use crate::secrets::Secret;

pub use device::NetconfDevice;
pub use error::{NetconfError, RpcError};

/// A NETCONF device in the inventory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetconfConfig {
    /// IP address or name.
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub username: String,
    /// Password authentication; or `key_file`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// An OpenSSH private key (unencrypted), relative to the inventory's folder.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// An OpenSSH `known_hosts` file, relative to the inventory's folder; or
    /// `host_key`, or `trust_on_first_use`.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// The server's pinned host-key fingerprint, `SHA256:<base64>` (`ssh-keygen -lf`).
    #[serde(default)]
    pub host_key: Option<String>,
    /// Accept the first host key seen, then require it for the life of the process.
    #[serde(default)]
    pub trust_on_first_use: bool,
    /// Largest message accepted from the device, in bytes.
    #[serde(default = "default_max_message")]
    pub max_message: usize,
}

fn default_port() -> u16 {
    830
}

fn default_max_message() -> usize {
    framing::DEFAULT_MAX_MESSAGE
}

impl DriverSettings for NetconfConfig {
    fn check(&mut self, base: &Path) -> Result<(), FieldError> {
        if self.host.trim().is_empty() {
            return Err(FieldError::new("host", "host must not be empty"));
        }
        match (&self.password, &self.key_file) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "key_file",
                    "give either password or key_file, not both",
                ))
            }
            (None, None) => {
                return Err(FieldError::new(
                    "password",
                    "one of password or key_file is required",
                ))
            }
            _ => {}
        }
        let n = usize::from(self.known_hosts.is_some())
            + usize::from(self.host_key.is_some())
            + usize::from(self.trust_on_first_use);
        if n != 1 {
            return Err(FieldError::new(
                "known_hosts",
                "exactly one of known_hosts, host_key or trust_on_first_use = true is required \
                 to check the device's SSH host key",
            ));
        }
        if let Some(fp) = &self.host_key {
            let ok = fp
                .strip_prefix("SHA256:")
                .and_then(|b| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(b.trim_end_matches('='))
                        .ok()
                })
                .is_some_and(|d| d.len() == 32);
            if !ok {
                return Err(FieldError::new(
                    "host_key",
                    format!(
                        "{fp:?} is not a SHA256:<base64> fingerprint as ssh-keygen -l prints it"
                    ),
                ));
            }
        }
        if self.max_message < 4096 {
            return Err(FieldError::new(
                "max_message",
                "max_message must be at least 4096 bytes",
            ));
        }
        for p in [&mut self.key_file, &mut self.known_hosts]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(())
    }

    fn address(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::DriverConfig;
    use serde_json::{json, Map, Value};

    fn table(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn settings_are_checked() {
        let fp = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
        let cfg = DriverConfig::from_table(
            "netconf",
            table(
                json!({"host": "10.0.0.1", "username": "admin", "key_file": "k",
                         "known_hosts": "kh"}),
            ),
            Path::new("/inv"),
        )
        .unwrap();
        let DriverConfig::Netconf(c) = &cfg else {
            panic!("{cfg:?}")
        };
        assert_eq!(c.port, 830);
        assert_eq!(c.key_file.as_deref(), Some(Path::new("/inv/k")));
        assert_eq!(c.known_hosts.as_deref(), Some(Path::new("/inv/kh")));
        assert_eq!(cfg.address(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(cfg.proxytype(), "netconf");
        DriverConfig::from_table(
            "netconf",
            table(
                json!({"host": "r1", "port": 2022, "username": "a", "password": "p",
                         "host_key": fp, "max_message": 100000}),
            ),
            Path::new(""),
        )
        .unwrap();
        for (t, field) in [
            (
                json!({"host": "r1", "username": "a", "password": "p"}),
                "known_hosts",
            ),
            (
                json!({"host": "r1", "username": "a", "password": "p", "host_key": fp,
                    "trust_on_first_use": true}),
                "known_hosts",
            ),
            (
                json!({"host": "r1", "username": "a", "trust_on_first_use": true}),
                "password",
            ),
            (
                json!({"host": "r1", "username": "a", "password": "p", "key_file": "k",
                    "trust_on_first_use": true}),
                "key_file",
            ),
            (
                json!({"host": "r1", "username": "a", "password": "p", "host_key": "MD5:aa"}),
                "host_key",
            ),
            (
                json!({"host": "r1", "password": "p", "trust_on_first_use": true}),
                "username",
            ),
            (
                json!({"host": "r1", "username": "a", "password": "p", "trust_on_first_use": true,
                    "community": "x"}),
                "community",
            ),
        ] {
            let e =
                DriverConfig::from_table("netconf", table(t.clone()), Path::new("")).unwrap_err();
            assert_eq!(e.field().as_deref(), Some(field), "{t}: {e}");
        }
        let e = DriverConfig::from_table(
            "netconf",
            table(json!({"host": "r1", "username": "a", "password": "hunter2",
                         "trust_on_first_use": true})),
            Path::new(""),
        )
        .unwrap();
        assert!(!format!("{e:?}").contains("hunter2"));
    }
}
