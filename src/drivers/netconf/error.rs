//! What can go wrong talking NETCONF: transport, host key, authentication, framing,
//! XML, and the server's own `<rpc-error>`s, with a bounded `kind` label and whether
//! the error says the device is unhealthy.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::framing::FramingError;
use super::xml::{Element, XmlError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum NetconfError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("SSH: {0}")]
    Ssh(#[source] Arc<super::ssh::SshError>),
    #[error(
        "host key of {host} is not the pinned one: expected {expected}, server offered {offered}"
    )]
    HostKeyMismatch {
        host: String,
        expected: String,
        offered: String,
    },
    #[error("host key of {host} ({offered}) is not in known_hosts {}", path.display())]
    HostKeyUnknown {
        host: String,
        offered: String,
        path: PathBuf,
    },
    #[error("host key of {host} CHANGED: known_hosts {} line {line} has another {algorithm} key; server offered {offered}", path.display())]
    HostKeyChanged {
        host: String,
        offered: String,
        algorithm: String,
        path: PathBuf,
        line: usize,
    },
    #[error("known_hosts {}: {source}", path.display())]
    KnownHosts {
        path: PathBuf,
        #[source]
        source: Arc<russh::keys::Error>,
    },
    #[error("key_file {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: Arc<russh::keys::Error>,
    },
    #[error("SSH authentication failed for user {user:?} ({method})")]
    Auth { user: String, method: &'static str },
    #[error("server refused the netconf subsystem")]
    Subsystem,
    #[error("session closed: {0}")]
    Closed(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("device sent a malformed message: {0}")]
    Framing(#[from] FramingError),
    #[error("device sent malformed XML: {0}")]
    Xml(#[source] XmlError),
    #[error("device sent a malformed reply: {0}")]
    Protocol(String),
    /// The device answered with `<rpc-error>`s of severity error.
    #[error("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Rpc { errors: Vec<RpcError> },
    #[error("invalid argument: {0}")]
    Argument(String),
    #[error("invalid XML argument {arg}: {source}")]
    XmlArgument {
        arg: &'static str,
        #[source]
        source: XmlError,
    },
    #[error("{what} needs the server capability {capability}, which it does not advertise")]
    NotSupported {
        what: &'static str,
        capability: &'static str,
    },
}

impl NetconfError {
    /// Bounded label for `drover_device_op_errors_total{error_kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            NetconfError::Connect { .. } | NetconfError::Ssh(_) | NetconfError::Closed(_) => {
                "connect"
            }
            NetconfError::HostKeyMismatch { .. }
            | NetconfError::HostKeyUnknown { .. }
            | NetconfError::HostKeyChanged { .. }
            | NetconfError::KnownHosts { .. } => "host_key",
            NetconfError::KeyFile { .. } | NetconfError::Auth { .. } => "auth",
            NetconfError::Subsystem => "connect",
            NetconfError::Timeout(_) => "timeout",
            NetconfError::Framing(FramingError::TooLarge { .. }) => "too_large",
            NetconfError::Framing(_) | NetconfError::Xml(_) | NetconfError::Protocol(_) => "decode",
            NetconfError::Rpc { .. } => "rpc_error",
            NetconfError::Argument(_) | NetconfError::XmlArgument { .. } => "argument",
            NetconfError::NotSupported { .. } => "unsupported",
        }
    }

    /// Whether this says the device is unhealthy (counts towards `down`), rather
    /// than a request it refused.
    pub fn is_device_failure(&self) -> bool {
        !matches!(
            self,
            NetconfError::Rpc { .. }
                | NetconfError::Argument(_)
                | NetconfError::XmlArgument { .. }
                | NetconfError::NotSupported { .. }
        )
    }

    /// The first rpc-error's tag, when the device refused the request.
    pub fn rpc_error_tag(&self) -> Option<&str> {
        match self {
            NetconfError::Rpc { errors } => errors.first().map(|e| e.tag.as_str()),
            _ => None,
        }
    }
}

/// One `<rpc-error>` (RFC 6241 section 4.3).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub error_type: String,
    pub tag: String,
    pub severity: String,
    pub app_tag: Option<String>,
    pub path: Option<String>,
    pub message: Option<String>,
    /// `<error-info>` as JSON (the module's convention), e.g. the `session-id`
    /// holding a lock.
    pub info: Value,
}

impl RpcError {
    pub fn from_element(e: &Element) -> RpcError {
        let opt = |n: &str| e.child_text(n).filter(|s| !s.is_empty()).map(str::to_owned);
        RpcError {
            error_type: opt("error-type").unwrap_or_default(),
            tag: opt("error-tag").unwrap_or_default(),
            severity: opt("error-severity").unwrap_or_else(|| "error".into()),
            app_tag: opt("error-app-tag"),
            path: opt("error-path"),
            message: opt("error-message"),
            info: e
                .child("error-info")
                .map(|i| i.children_json())
                .unwrap_or(Value::Null),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "error-type": self.error_type,
            "error-tag": self.tag,
            "error-severity": self.severity,
            "error-app-tag": self.app_tag,
            "error-path": self.path,
            "error-message": self.message,
            "error-info": self.info,
        })
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rpc-error {}", self.tag)?;
        if let Some(m) = &self.message {
            write!(f, ": {}", m.trim())?;
        }
        write!(f, " (type {}, severity {}", self.error_type, self.severity)?;
        if let Some(p) = &self.path {
            write!(f, ", path {}", p.trim())?;
        }
        if let Some(sid) = self.info.get("session-id").and_then(Value::as_str) {
            write!(f, ", held by session {sid}")?;
        }
        f.write_str(")")
    }
}

impl crate::drivers::DeviceError for NetconfError {
    fn kind(&self) -> &'static str {
        NetconfError::kind(self)
    }

    fn is_device_failure(&self) -> bool {
        NetconfError::is_device_failure(self)
    }
}
