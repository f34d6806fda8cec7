//! The OVSDB error type: connection, framing, protocol, schema and transaction
//! failures, with a bounded `kind()` label for metrics and a split between "the
//! device is unhealthy" and "the request cannot be served".

/// Everything that can go wrong talking OVSDB to one server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OvsdbError {
    /// Connecting, or the connection broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// An I/O error connecting or on the connection, kept as the source.
    #[error("connection failed: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// No answer within the device's timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// Bytes or JSON that are not a well-formed OVSDB message, or a message
    /// that does not fit the protocol (the connection is reset).
    #[error("malformed OVSDB message: {0}")]
    Malformed(String),
    /// Bytes that are not JSON, or JSON that does not fit the type it must be.
    #[error("malformed OVSDB message: {context}: {source}")]
    Json {
        context: String,
        #[source]
        source: std::sync::Arc<serde_json::Error>,
    },
    /// A message over the size cap (the connection is reset).
    #[error("OVSDB message over the {0}-byte limit")]
    TooLarge(usize),
    /// The server answered a request with an error.
    #[error("OVSDB server error: {0}")]
    Server(String),
    /// The server's schema cannot serve this operation (missing column, other
    /// major version, no Open_vSwitch database).
    #[error("schema: {0}")]
    Schema(String),
    /// The server rejected a transaction (constraint violation, ...).
    #[error("transaction failed: {0}")]
    Transaction(String),
    /// A record the operation names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Arguments that do not fit the column or the operation.
    #[error("{0}")]
    Invalid(String),
}

impl OvsdbError {
    pub(super) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> OvsdbError {
        let context = context.into();
        move |e| OvsdbError::Io {
            context,
            source: std::sync::Arc::new(e),
        }
    }

    pub(super) fn json(context: impl Into<String>) -> impl FnOnce(serde_json::Error) -> OvsdbError {
        let context = context.into();
        move |e| OvsdbError::Json {
            context,
            source: std::sync::Arc::new(e),
        }
    }

    /// Bounded label for `drover_device_op_errors_total{error_kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            OvsdbError::Connect(_) | OvsdbError::Io { .. } => "connect",
            OvsdbError::Timeout(_) => "timeout",
            OvsdbError::Malformed(_) | OvsdbError::Json { .. } => "decode",
            OvsdbError::TooLarge(_) => "too_large",
            OvsdbError::Server(_) => "ovsdb_error",
            OvsdbError::Schema(_) => "schema",
            OvsdbError::Transaction(_) => "transaction",
            OvsdbError::NotFound(_) => "not_found",
            OvsdbError::Invalid(_) => "invalid_args",
        }
    }

    /// Whether the device itself is unhealthy (counts towards `down`).
    pub fn is_device_failure(&self) -> bool {
        matches!(
            self,
            OvsdbError::Connect(_)
                | OvsdbError::Io { .. }
                | OvsdbError::Timeout(_)
                | OvsdbError::Malformed(_)
                | OvsdbError::Json { .. }
                | OvsdbError::TooLarge(_)
        )
    }
}

impl crate::drivers::DeviceError for OvsdbError {
    fn kind(&self) -> &'static str {
        OvsdbError::kind(self)
    }

    fn is_device_failure(&self) -> bool {
        OvsdbError::is_device_failure(self)
    }
}
