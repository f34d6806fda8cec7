//! The trap and inform listener: one UDP socket (off by default), each datagram
//! matched to an SNMP device by source address and checked with that device's
//! community or USM user, then counted (`drover_snmp_traps_total{trap}`), kept in
//! the device's ring (`snmp.traps`) and fired on the event bus as
//! `drover/trap/<id>/<trap name>`, which the Salt link forwards to the master.
//! Anything malformed, from an unknown source or failing authentication is
//! dropped and counted by reason.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Arbiter;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::cache::PollCache;
use crate::config::TrapConfig;
use crate::drivers::snmp::trap::{known_name, Credentials, Notification, Receiver};
use crate::drivers::snmp::{Oid, SnmpValue, SnmpVersion, UsmUser};
use crate::drivers::DriverConfig;
use crate::events::FleetEvent;
use crate::fleet::registry::Registry;
use crate::telemetry;

/// Largest datagram read; longer ones are cut and fail to decode.
const MAX_DATAGRAM: usize = 65_535;
const IF_INDEX: [u32; 10] = [1, 3, 6, 1, 2, 1, 2, 2, 1, 1];
const IF_NAME: &str = "1.3.6.1.2.1.31.1.1.1.1";

#[derive(Debug, thiserror::Error)]
pub enum TrapError {
    #[error("cannot listen for traps on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running listener; stops when stopped or dropped.
pub struct TrapListener {
    pub addr: SocketAddr,
    cancel: CancellationToken,
    thread: Arbiter,
}

impl TrapListener {
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for TrapListener {
    fn drop(&mut self) {
        self.cancel.cancel();
        let _ = self.thread.stop();
    }
}

/// Binds the socket now (so a bad address fails start-up) and serves it on a
/// thread of its own.
pub fn start(
    cfg: &TrapConfig,
    registry: Arc<Registry>,
    cache: Arc<PollCache>,
) -> Result<TrapListener, TrapError> {
    let bind = |source| TrapError::Bind {
        addr: cfg.listen,
        source,
    };
    let sock = std::net::UdpSocket::bind(cfg.listen).map_err(bind)?;
    sock.set_nonblocking(true).map_err(bind)?;
    let addr = sock.local_addr().map_err(bind)?;
    let cancel = CancellationToken::new();
    let thread = Arbiter::new();
    let token = cancel.clone();
    let keep = cfg.keep;
    thread.spawn(async move {
        let sock = match tokio::net::UdpSocket::from_std(sock) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "Trap socket unusable.");
                return;
            }
        };
        info!(%addr, "Listening for SNMP traps.");
        let listener = Listener {
            receiver: Receiver::new(),
            registry,
            cache,
            keep,
        };
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = tokio::select! {
                _ = token.cancelled() => break,
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(error = %e, "Trap socket read failed.");
                        continue;
                    }
                },
            };
            if let Some(reply) = listener.handle(&buf[..n], from) {
                if let Err(e) = sock.send_to(&reply, from).await {
                    debug!(error = %e, %from, "Inform acknowledgement not sent.");
                }
            }
        }
    });
    Ok(TrapListener {
        addr,
        cancel,
        thread,
    })
}

struct Listener {
    receiver: Receiver,
    registry: Arc<Registry>,
    cache: Arc<PollCache>,
    keep: usize,
}

fn dropped(reason: &'static str) {
    metrics::counter!(telemetry::SNMP_TRAPS_DROPPED, "reason" => reason).increment(1);
}

impl Listener {
    /// Handles one datagram; returns the reply to send, if any.
    fn handle(&self, bytes: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        if Receiver::claim(bytes).is_err() {
            dropped("malformed");
            return None;
        }
        let candidates = self.candidates(from);
        if candidates.is_empty() {
            dropped("unknown_source");
            debug!(%from, "Trap from an address no device has.");
            return None;
        }
        for (id, creds) in candidates {
            match self.receiver.accept(bytes, &creds) {
                Ok(a) => {
                    if let Some(n) = a.notification {
                        self.deliver(&id, from, n);
                    }
                    return a.reply;
                }
                // Another device at the same address may own these credentials.
                Err(e) if e.kind() == "security" => continue,
                Err(e) => {
                    debug!(device = %id, %from, error = %e, "Malformed trap dropped.");
                    dropped("malformed");
                    return None;
                }
            }
        }
        dropped("auth");
        None
    }

    /// SNMP devices whose host is the sender's address, by id.
    fn candidates(&self, from: SocketAddr) -> Vec<(Arc<str>, Credentials)> {
        let mut out: Vec<(Arc<str>, Credentials)> = self
            .registry
            .iter()
            .filter_map(|e| match &e.spec.driver {
                DriverConfig::Snmp(c) if c.host == from.ip() => {
                    Some((e.key().clone(), credentials(c)))
                }
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn deliver(&self, id: &Arc<str>, from: SocketAddr, n: Notification) {
        let known = known_name(&n.trap_oid);
        metrics::counter!(telemetry::SNMP_TRAPS, "trap" => known.unwrap_or("other")).increment(1);
        let name = known
            .map(str::to_owned)
            .unwrap_or_else(|| n.trap_oid.to_string());
        let mut data = json!({
            "trap": name,
            "oid": n.trap_oid.to_string(),
            "inform": n.inform,
            "version": match n.version {
                SnmpVersion::V1 => "1",
                SnmpVersion::V2c => "2c",
                SnmpVersion::V3 => "3",
            },
            "uptime": n.uptime,
            "source": from.to_string(),
            "received": std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
            "varbinds": n.varbinds.iter().map(|vb| vb.to_json()).collect::<Vec<_>>(),
        });
        if let Some(i) = if_index(&n.varbinds) {
            data["ifIndex"] = json!(i);
            if let Some(name) = self.if_name(id, i) {
                data["ifName"] = json!(name);
            }
        }
        debug!(device = %id, trap = %name, "Trap received.");
        let events = self.registry.events();
        events.remember(id, data.clone(), self.keep);
        events.send(FleetEvent::Fire {
            id: id.clone(),
            tag: format!("drover/trap/{id}/{name}"),
            data,
        });
    }

    /// The interface's name from the last `if_mib` poll's labels.
    fn if_name(&self, id: &str, index: u32) -> Option<String> {
        let l = self.cache.lookups(id, "if_mib")?;
        let col: Oid = IF_NAME.parse().ok()?;
        l.labels.get(&col)?.get(&index).cloned()
    }
}

/// linkDown/linkUp carry `ifIndex.<n> = <n>`.
fn if_index(vbs: &[crate::drivers::snmp::VarBind]) -> Option<u32> {
    vbs.iter().find_map(|vb| match (vb.oid.arcs(), &vb.value) {
        (arcs, SnmpValue::Integer(i)) if arcs.len() == 11 && arcs[..10] == IF_INDEX => {
            u32::try_from(*i).ok()
        }
        _ => None,
    })
}

fn credentials(c: &crate::drivers::snmp::SnmpConfig) -> Credentials {
    let user = c.user.as_ref().map(|name| UsmUser {
        name: name.clone(),
        auth: c.auth_protocol.clone().map(|p| {
            let pw = c.auth_password.as_ref().map(|s| s.expose().to_owned());
            (p, pw.unwrap_or_default())
        }),
        privacy: c.priv_protocol.clone().map(|p| {
            let pw = c.priv_password.as_ref().map(|s| s.expose().to_owned());
            (p, pw.unwrap_or_default())
        }),
    });
    Credentials {
        version: c.version.clone(),
        community: c.community.expose().to_owned(),
        user,
    }
}
