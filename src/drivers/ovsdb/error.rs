//! The OVSDB error type: connection, framing, protocol, schema and transaction
//! failures, with a bounded `kind()` label for metrics and a split between "the
//! device is unhealthy" and "the request cannot be served".

/// Everything that can go wrong talking OVSDB to one server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OvsdbError {
    /// Connecting, or the connection broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No answer within the device's timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// Bytes or JSON that are not a well-formed OVSDB message, or a message
    /// that does not fit the protocol (the connection is reset).
    #[error("malformed OVSDB message: {0}")]
    Malformed(String),
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
    /// Bounded label for `drover_device_op_errors_total{error_kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            OvsdbError::Connect(_) => "connect",
            OvsdbError::Timeout(_) => "timeout",
            OvsdbError::Malformed(_) => "decode",
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
                | OvsdbError::Timeout(_)
                | OvsdbError::Malformed(_)
                | OvsdbError::TooLarge(_)
        )
    }
}
