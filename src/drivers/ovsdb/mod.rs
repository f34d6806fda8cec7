//! Open vSwitch over the OVSDB management protocol (RFC 7047), with no agent on the
//! host: one persistent JSON-RPC session per device to its `ovsdb-server`, a local
//! replica of the `Open_vSwitch`, `Bridge`, `Port` and `Interface` tables kept
//! current by a monitor, and writes as atomic transactions in the shape
//! `ovs-vsctl` makes them.
//!
//! # Why our own codec
//! The one OVSDB crate on crates.io (`ovsdb` 0.0.6) splits the stream by counting
//! braces but does not skip escaped quotes inside strings, prints every message to
//! stdout, has no size cap, and has no monitor or `update2` support. JSON-RPC
//! crates (`jsonrpsee`, `jsonrpc-core`) speak JSON-RPC 2.0 over HTTP or WebSocket
//! framing, not OVSDB's 1.0 dialect of bare JSON objects back to back on a socket
//! with requests in both directions. What is needed is small: a byte splitter that
//! tracks depth and strings under a hard size and depth cap ([`codec`]), and
//! `serde_json` for the rest. Owning it lets us fuzz it and guarantee that a
//! hostile server costs one reset connection, never a panic or an unbounded
//! allocation.
//!
//! Modules, one job each: [`codec`] (framing, messages), [`connection`] (session
//! task: connect, handshake, echo both ways, reconnect with backoff), [`replica`]
//! (monitor replica and `ovs-vsctl`'s view of bridges), [`schema`] (column types,
//! the write check), [`datum`] (OVSDB values and their text and Salt forms),
//! [`ops`] (the read functions and the write transactions), [`device`] (the
//! driver the fleet holds: ping and grains).

pub mod codec;
pub mod connection;
pub mod datum;
pub mod device;
mod error;
pub mod ops;
pub mod replica;
pub mod schema;

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use super::{DriverSettings, FieldError};

pub use connection::Endpoint;
pub use device::OvsDevice;
pub use error::OvsdbError;

/// An OVS host in the inventory: `url = "tcp:HOST:PORT"` or `"unix:PATH"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvsConfig {
    #[serde(rename = "url", deserialize_with = "de_endpoint")]
    pub endpoint: Endpoint,
    /// Largest message accepted from the server.
    #[serde(skip, default = "default_max_message")]
    pub max_message: usize,
}

fn default_max_message() -> usize {
    codec::MAX_MESSAGE
}

fn de_endpoint<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
    let raw = String::deserialize(d)?;
    parse_url(&raw, Path::new("")).map_err(serde::de::Error::custom)
}

impl DriverSettings for OvsConfig {
    fn check(&mut self, base: &Path) -> Result<(), FieldError> {
        if let Endpoint::Unix(p) = &self.endpoint {
            if p.is_relative() {
                self.endpoint = Endpoint::Unix(base.join(p));
            }
        }
        Ok(())
    }

    fn address(&self) -> Option<IpAddr> {
        match &self.endpoint {
            Endpoint::Tcp { host, .. } => host.parse().ok(),
            Endpoint::Unix(_) => None,
        }
    }
}

/// The OVSDB default port (IANA).
pub const DEFAULT_PORT: u16 = 6640;

/// Parses an OVS connection method: `tcp:HOST[:PORT]`, `tcp:[IPv6][:PORT]` or
/// `unix:PATH` (relative to `dir`). `ssl:` is refused for now.
pub fn parse_url(raw: &str, dir: &Path) -> Result<Endpoint, String> {
    if let Some(path) = raw.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("{raw:?}: unix: needs a socket path"));
        }
        return Ok(Endpoint::Unix(dir.join(path)));
    }
    if raw.starts_with("ssl:") {
        return Err(format!(
            "{raw:?}: ssl: is not supported yet; use tcp: (over a tunnel) or unix:"
        ));
    }
    let Some(rest) = raw.strip_prefix("tcp:") else {
        return Err(format!(
            "{raw:?}: use tcp:HOST:PORT or unix:PATH (ssl: is not supported yet)"
        ));
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{raw:?}: unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("{raw:?}: expected ':' after ']'")),
        };
        (h.to_owned(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!("{raw:?}: bad host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{raw:?}: bad port {p:?}"))?,
    };
    Ok(Endpoint::Tcp { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let d = Path::new("/etc/drover");
        assert_eq!(
            parse_url("tcp:10.1.2.3:6641", d).unwrap(),
            Endpoint::Tcp {
                host: "10.1.2.3".into(),
                port: 6641
            }
        );
        assert_eq!(
            parse_url("tcp:[::1]", d).unwrap(),
            Endpoint::Tcp {
                host: "::1".into(),
                port: 6640
            }
        );
        assert_eq!(
            parse_url("unix:/run/openvswitch/db.sock", d).unwrap(),
            Endpoint::Unix("/run/openvswitch/db.sock".into())
        );
        assert_eq!(
            parse_url("unix:db.sock", d).unwrap(),
            Endpoint::Unix("/etc/drover/db.sock".into())
        );
        let e = parse_url("ssl:10.0.0.1:6640", d).unwrap_err();
        assert!(e.contains("not supported yet"), "{e}");
        for bad in [
            "tcp:",
            "tcp:h:0",
            "tcp:h:x",
            "http://h/",
            "tcp:[::1",
            "unix:",
        ] {
            assert!(parse_url(bad, d).is_err(), "{bad}");
        }
        assert_eq!(
            parse_url("tcp:[::1]:7", d).unwrap().to_string(),
            "tcp:[::1]:7"
        );
    }
}
