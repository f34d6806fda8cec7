//! What can go wrong in the SSH transport, authentication and channel layers.

use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("I/O: {0}")]
    Io(#[source] Arc<std::io::Error>),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("message authentication failed (corrupted or forged packet)")]
    Mac,
    #[error("no common {what}: server offers {server:?}")]
    NoCommonAlgorithm { what: &'static str, server: String },
    #[error("host key signature does not verify")]
    BadSignature,
    #[error("host key refused")]
    HostKeyRefused,
    #[error("server disconnected: {description} (reason {reason})")]
    Disconnect { reason: u32, description: String },
    #[error("the server refused every authentication method tried (it allows {allowed:?})")]
    AuthRefused { allowed: String },
    #[error("cannot sign with the key: {0}")]
    Sign(String),
    #[error("server refused the session channel: {0}")]
    ChannelRefused(String),
    #[error("server refused the subsystem")]
    SubsystemRefused,
    #[error("no answer to {0} keepalives")]
    KeepaliveTimeout(u32),
    #[error("connection closed")]
    Closed,
}

impl From<std::io::Error> for SshError {
    fn from(e: std::io::Error) -> Self {
        SshError::Io(Arc::new(e))
    }
}
