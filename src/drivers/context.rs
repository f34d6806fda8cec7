//! The shared, cheap-to-clone resources every driver is built from: one pooled HTTP
//! client for the whole fleet (and one that skips certificate checks, for devices
//! that ask), and the fleet's SNMP sockets.

use std::sync::{Arc, OnceLock};

use super::{rest, snmp, DriverError};

/// UDP sockets shared by all SNMP devices of the fleet.
const SNMP_SOCKETS: usize = 4;

#[derive(Clone)]
pub struct DriverContext {
    pub(super) http: reqwest::Client,
    pub(super) http_insecure: reqwest::Client,
    /// Shared by every SNMP device; opened on first use so REST-only fleets do not
    /// start its thread.
    snmp: Arc<OnceLock<snmp::SnmpTransport>>,
}

impl DriverContext {
    pub fn new() -> Result<DriverContext, DriverError> {
        Ok(DriverContext {
            http: rest::client_builder()
                .build()
                .map_err(DriverError::HttpClient)?,
            http_insecure: rest::client_builder()
                .danger_accept_invalid_certs(true)
                .build()
                .map_err(DriverError::HttpClient)?,
            snmp: Default::default(),
        })
    }

    pub(super) fn snmp_transport(&self) -> Result<snmp::SnmpTransport, DriverError> {
        if let Some(t) = self.snmp.get() {
            return Ok(t.clone());
        }
        let t = snmp::SnmpTransport::new(SNMP_SOCKETS).map_err(DriverError::SnmpSockets)?;
        // Two devices built at once may both open one; the loser's is dropped.
        Ok(self.snmp.get_or_init(|| t).clone())
    }
}
