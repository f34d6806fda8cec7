//! The SNMP error type: one enum for codec, security, transport and protocol
//! failures, with a bounded `kind()` label for metrics and a classification of
//! which errors mean "the device is unhealthy" versus "the request was wrong".

/// Everything that can go wrong talking SNMP.
#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    /// No (valid) reply within timeout × (retries + 1).
    #[error("request timed out")]
    Timeout,
    /// Socket level failure (unreachable network, bind failure, ...).
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes that are not a well-formed SNMP message.
    #[error("malformed SNMP data: {0}")]
    Malformed(&'static str),
    /// A well-formed reply that does not fit the request (wrong PDU type,
    /// request id, missing varbinds).
    #[error("unexpected response: {0}")]
    UnexpectedResponse(&'static str),
    /// The agent answered with a non-zero error-status.
    #[error("agent returned {} (error-index {index})", status_name(*status))]
    Protocol { status: i32, index: i32 },
    /// The agent answered with a USM report (RFC 3414 usmStats*).
    #[error("SNMPv3 report: {0}")]
    Report(&'static str),
    /// A reply failed authentication or decryption on our side.
    #[error("SNMPv3 security failure: {0}")]
    Security(&'static str),
    /// The OID text is neither numeric nor a known MIB name.
    #[error("invalid OID: {0}")]
    InvalidOid(String),
    /// A SET value could not be built from (type, text).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// Target configuration is unusable (missing user, short password, ...).
    #[error("invalid SNMP configuration: {0}")]
    Config(&'static str),
    /// The operation does not exist for this protocol version.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// RFC 3416 error-status names; index = status value.
const STATUS_NAMES: [&str; 19] = [
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
];

/// Name of an error-status value, "unknownError" outside the RFC range.
pub fn status_name(status: i32) -> &'static str {
    usize::try_from(status)
        .ok()
        .and_then(|i| STATUS_NAMES.get(i))
        .copied()
        .unwrap_or("unknownError")
}

impl SnmpError {
    /// A short label from a fixed set, safe to use as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            SnmpError::Timeout => "timeout",
            SnmpError::Io(_) => "io",
            SnmpError::Malformed(_) => "malformed",
            SnmpError::UnexpectedResponse(_) => "unexpected_response",
            SnmpError::Protocol { status, .. } => status_name(*status),
            SnmpError::Report(r) => r,
            SnmpError::Security(_) => "security",
            SnmpError::InvalidOid(_) => "invalid_oid",
            SnmpError::InvalidValue(_) => "invalid_value",
            SnmpError::Config(_) => "config",
            SnmpError::Unsupported(_) => "unsupported",
        }
    }

    /// True when the failure says something about the device's health
    /// (no answer, unreachable, garbage), false when the device answered
    /// properly but refused or did not understand the request.
    pub fn is_device_failure(&self) -> bool {
        match self {
            SnmpError::Timeout
            | SnmpError::Io(_)
            | SnmpError::Malformed(_)
            | SnmpError::UnexpectedResponse(_)
            | SnmpError::Security(_) => true,
            // genErr / resourceUnavailable are the agent saying it is broken.
            SnmpError::Protocol { status, .. } => matches!(*status, 5 | 13),
            SnmpError::Report(_)
            | SnmpError::InvalidOid(_)
            | SnmpError::InvalidValue(_)
            | SnmpError::Config(_)
            | SnmpError::Unsupported(_) => false,
        }
    }
}

impl crate::drivers::DeviceError for SnmpError {
    fn kind(&self) -> &'static str {
        SnmpError::kind(self)
    }

    fn is_device_failure(&self) -> bool {
        SnmpError::is_device_failure(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_classification() {
        assert_eq!(SnmpError::Timeout.kind(), "timeout");
        assert!(SnmpError::Timeout.is_device_failure());
        assert!(SnmpError::Malformed("x").is_device_failure());
        let e = SnmpError::Protocol {
            status: 2,
            index: 1,
        };
        assert_eq!(e.kind(), "noSuchName");
        assert!(!e.is_device_failure());
        let e = SnmpError::Protocol {
            status: 17,
            index: 1,
        };
        assert_eq!(e.kind(), "notWritable");
        assert!(!e.is_device_failure());
        assert_eq!(
            SnmpError::Protocol {
                status: 99,
                index: 0
            }
            .kind(),
            "unknownError"
        );
        assert_eq!(
            SnmpError::Protocol {
                status: -1,
                index: 0
            }
            .kind(),
            "unknownError"
        );
    }
}
