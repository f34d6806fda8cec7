//! The error every driver call returns, with the underlying error kept as its
//! source, a bounded `kind` label for metrics, and whether it says the device is
//! unhealthy.

use std::path::PathBuf;
use std::time::Duration;

use super::{netconf, ovsdb, snmp, Capability, MAX_DEVICE_BODY};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("connection failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The device closed or refused the exchange without an I/O error to show.
    #[error("connection failed: {0}")]
    Closed(&'static str),
    /// From the pooled HTTPS client; reqwest's own message is generic, so the
    /// message shows its source chain too.
    #[error("{}: {}", if .0.is_body() || .0.is_decode() { "device sent a malformed reply" } else { "connection failed" }, chain(.0))]
    Http(#[source] reqwest::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("device answered HTTP {0}")]
    Status(u16),
    #[error("device sent a malformed reply: {0}")]
    Decode(String),
    #[error("device sent a malformed reply: {0}")]
    Json(#[source] serde_json::Error),
    #[error("device reply over the {MAX_DEVICE_BODY}-byte limit")]
    TooLarge,
    #[error("{capability} is not supported by proxytype {proxytype}")]
    Unsupported {
        capability: Capability,
        proxytype: &'static str,
    },
    #[error("driver set-up failed: ca_file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("driver set-up failed: ca_file {}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("driver set-up failed: HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("driver set-up failed: SNMP sockets: {0}")]
    SnmpSockets(#[source] std::io::Error),
    #[error("driver set-up failed: {0}")]
    Setup(&'static str),
    #[error("{0}")]
    Snmp(#[from] snmp::SnmpError),
    #[error("{0}")]
    Ovsdb(#[from] ovsdb::OvsdbError),
    /// Boxed: NETCONF errors carry host-key details and would make every
    /// `DriverError` large.
    #[error("{0}")]
    Netconf(#[source] Box<netconf::NetconfError>),
}

impl From<netconf::NetconfError> for DriverError {
    fn from(e: netconf::NetconfError) -> DriverError {
        DriverError::Netconf(Box::new(e))
    }
}

impl DriverError {
    /// Bounded label for `drover_device_op_errors_total{error_kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            DriverError::Connect(_) | DriverError::Closed(_) => "connect",
            DriverError::Http(e) if e.is_body() || e.is_decode() => "decode",
            DriverError::Http(_) => "connect",
            DriverError::Timeout(_) => "timeout",
            DriverError::Status(_) => "http_status",
            DriverError::Decode(_) | DriverError::Json(_) => "decode",
            DriverError::TooLarge => "too_large",
            DriverError::Unsupported { .. } => "unsupported",
            DriverError::CaFile { .. }
            | DriverError::Certificate { .. }
            | DriverError::HttpClient(_)
            | DriverError::SnmpSockets(_)
            | DriverError::Setup(_) => "setup",
            DriverError::Snmp(e) => e.kind(),
            DriverError::Ovsdb(e) => e.kind(),
            DriverError::Netconf(e) => e.kind(),
        }
    }

    /// Whether this error says the device is unhealthy (counts towards `down`), as
    /// opposed to a request the device cannot serve.
    pub fn is_device_failure(&self) -> bool {
        match self {
            DriverError::Status(code) => *code >= 500,
            DriverError::Unsupported { .. } => false,
            DriverError::Snmp(e) => e.is_device_failure(),
            DriverError::Ovsdb(e) => e.is_device_failure(),
            DriverError::Netconf(e) => e.is_device_failure(),
            _ => true,
        }
    }
}

/// reqwest's top-level message is generic ("error sending request"); the cause is in
/// the source chain. URLs never carry credentials (the inventory refuses them).
fn chain(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
