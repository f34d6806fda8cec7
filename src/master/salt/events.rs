//! The link's notable occurrences as small types that log and count together, as
//! vector's internal events do; the metric names are `telemetry`'s.

use crate::telemetry;

/// A message sent to the master, by kind (`auth`, `return`, ...).
pub fn sent(kind: &'static str) {
    metrics::counter!(telemetry::MASTER_MESSAGES, "direction" => "out", "kind" => kind)
        .increment(1);
}

/// A message received from the master, by kind (`publish`, `aes_reply`, ...).
pub fn received(kind: &'static str) {
    metrics::counter!(telemetry::MASTER_MESSAGES, "direction" => "in", "kind" => kind).increment(1);
}

/// A message from the master refused before it was acted on. Logged at debug: a
/// flood of garbage must not flood the log; the counter is what to alert on.
pub struct Rejected {
    pub reason: &'static str,
}

impl Rejected {
    pub fn emit(self) {
        metrics::counter!(telemetry::MASTER_REJECTED, "reason" => self.reason).increment(1);
        tracing::debug!(reason = self.reason, "Master message rejected.");
    }
}

/// The publish connection came up or went down (or the link is starting or stopped:
/// `up = false`).
pub struct Connection<'a> {
    pub master: &'a str,
    pub up: bool,
}

impl Connection<'_> {
    pub fn emit(self) {
        metrics::gauge!(telemetry::MASTER_CONNECTED, "master" => self.master.to_owned())
            .set(if self.up { 1.0 } else { 0.0 });
        tracing::info!(master = %self.master, connected = self.up, "Publish connection state.");
    }
}

/// The master's AES key changed since the last authentication.
pub struct AesRotated<'a> {
    pub master: &'a str,
}

impl AesRotated<'_> {
    pub fn emit(self) {
        metrics::counter!(telemetry::MASTER_AES_ROTATIONS).increment(1);
        tracing::info!(master = %self.master, "Master AES key rotated.");
    }
}

/// A return given up after its retries: the master will not see it.
pub struct ReturnDropped<'a> {
    pub id: &'a str,
    pub jid: &'a str,
}

impl ReturnDropped<'_> {
    pub fn emit(self) {
        metrics::counter!(telemetry::MASTER_MESSAGES, "direction" => "out", "kind" => "return_dropped")
            .increment(1);
        tracing::error!(id = %self.id, jid = %self.jid, "Return dropped after retries.");
    }
}
