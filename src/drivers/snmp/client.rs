//! Per-target SNMP client: builds requests for the target's version, sends
//! them over the shared transport, validates replies, keeps the SNMPv3
//! engine state (engine id, boots/time, localized keys) and implements the
//! walk operations with their stop conditions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::error::SnmpError;
use super::pdu::{
    decode_message, encode_message, CommunityMessage, Message, Pdu, PduType, ScopedPdu,
    ScopedPduData, UsmSecurityParameters, V3Message, FLAG_AUTH, FLAG_REPORTABLE,
    SECURITY_MODEL_USM,
};
use super::transport::SnmpTransport;
use super::usm::{self, LocalizedKeys};
use super::value::{Oid, SnmpValue, VarBind};
use super::{SnmpTarget, SnmpVersion, UsmUser};

type Result<T> = std::result::Result<T, SnmpError>;

/// Hard cap on rows returned by one walk, whatever the agent does.
pub const MAX_WALK_ROWS: usize = 100_000;
/// Varbinds asked for in one GETBULK of a multi-column walk (columns times
/// max-repetitions): about what fits a 64 KiB reply without `tooBig`.
const MAX_BULK_VARBINDS: u32 = 500;
/// msgMaxSize we advertise (largest UDP payload over IPv4).
const MAX_MESSAGE_SIZE: i32 = 65_507;
/// Report-driven resynchronisations per request before giving up.
const V3_RESYNC_ATTEMPTS: usize = 3;

/// SNMPv3 state learnt from the agent (RFC 3414 non-authoritative side).
#[derive(Clone)]
struct EngineState {
    engine_id: Vec<u8>,
    boots: u32,
    time: u32,
    synced_at: Instant,
    keys: Arc<LocalizedKeys>,
}

impl EngineState {
    /// Our estimate of the agent's snmpEngineTime now.
    fn time_now(&self) -> u32 {
        let elapsed = u32::try_from(self.synced_at.elapsed().as_secs()).unwrap_or(u32::MAX);
        self.time.saturating_add(elapsed)
    }
}

struct ClientInner {
    target: SnmpTarget,
    transport: SnmpTransport,
    engine: Mutex<Option<EngineState>>,
    salt: AtomicU64,
}

/// Client for one agent. Cheap to clone; clones share v3 engine state.
#[derive(Clone)]
pub struct SnmpClient {
    inner: Arc<ClientInner>,
}

impl SnmpClient {
    pub fn new(target: SnmpTarget, transport: SnmpTransport) -> SnmpClient {
        SnmpClient {
            inner: Arc::new(ClientInner {
                target,
                transport,
                engine: Mutex::new(None),
                salt: AtomicU64::new(rand::random::<u64>()),
            }),
        }
    }

    pub fn target(&self) -> &SnmpTarget {
        &self.inner.target
    }

    /// GET the given OIDs; exceptions come back as values.
    pub async fn get(&self, oids: &[Oid]) -> Result<Vec<VarBind>> {
        let pdu = self.request(PduType::Get, nulls(oids), 0, 0).await?;
        Ok(pdu.varbinds)
    }

    /// GETNEXT for each OID.
    pub async fn get_next(&self, oids: &[Oid]) -> Result<Vec<VarBind>> {
        let pdu = self.request(PduType::GetNext, nulls(oids), 0, 0).await?;
        Ok(pdu.varbinds)
    }

    /// GETBULK (v2c/v3 only).
    pub async fn get_bulk(
        &self,
        oids: &[Oid],
        non_repeaters: u32,
        max_repetitions: u32,
    ) -> Result<Vec<VarBind>> {
        if self.inner.target.version == SnmpVersion::V1 {
            return Err(SnmpError::Unsupported("GETBULK needs SNMPv2c or SNMPv3"));
        }
        let nr = i32::try_from(non_repeaters).unwrap_or(i32::MAX);
        let mr = i32::try_from(max_repetitions).unwrap_or(i32::MAX);
        let pdu = self.request(PduType::GetBulk, nulls(oids), nr, mr).await?;
        Ok(pdu.varbinds)
    }

    /// SET the given varbinds; returns the agent's echo.
    pub async fn set(&self, vbs: &[VarBind]) -> Result<Vec<VarBind>> {
        let pdu = self.request(PduType::Set, vbs.to_vec(), 0, 0).await?;
        Ok(pdu.varbinds)
    }

    /// Walk `root` with GETNEXT.
    pub async fn walk(&self, root: &Oid) -> Result<Vec<VarBind>> {
        let mut rows: Vec<VarBind> = Vec::new();
        let mut current = root.clone();
        while rows.len() < MAX_WALK_ROWS {
            let vbs = match self.get_next(std::slice::from_ref(&current)).await {
                Ok(v) => v,
                // SNMPv1 signals the end of the MIB view with noSuchName.
                Err(SnmpError::Protocol { status: 2, .. })
                    if self.inner.target.version == SnmpVersion::V1 =>
                {
                    break
                }
                Err(e) => return Err(e),
            };
            let Some(vb) = vbs.into_iter().next() else {
                break;
            };
            match self.walk_step(root, &current, vb) {
                Some(vb) => {
                    current = vb.oid.clone();
                    rows.push(vb);
                }
                None => break,
            }
        }
        self.finish_walk(root, rows).await
    }

    /// Walk `root` with GETBULK of snmp_exporter's default size (GETNEXT for SNMPv1).
    pub async fn bulkwalk(&self, root: &Oid) -> Result<Vec<VarBind>> {
        self.bulkwalk_with(root, super::config::DEFAULT_MAX_REPETITIONS)
            .await
    }

    /// Walk `root` with GETBULK of `max_repetitions` (GETNEXT for SNMPv1).
    pub async fn bulkwalk_with(&self, root: &Oid, max_repetitions: u32) -> Result<Vec<VarBind>> {
        if self.inner.target.version == SnmpVersion::V1 {
            return self.walk(root).await;
        }
        let mut rows: Vec<VarBind> = Vec::new();
        let mut current = root.clone();
        'outer: while rows.len() < MAX_WALK_ROWS {
            let vbs = self
                .get_bulk(std::slice::from_ref(&current), 0, max_repetitions.max(1))
                .await?;
            if vbs.is_empty() {
                break;
            }
            for vb in vbs {
                match self.walk_step(root, &current, vb) {
                    Some(vb) => {
                        current = vb.oid.clone();
                        rows.push(vb);
                        if rows.len() >= MAX_WALK_ROWS {
                            break 'outer;
                        }
                    }
                    None => break 'outer,
                }
            }
        }
        self.finish_walk(root, rows).await
    }

    /// Walks several columns side by side, each GETBULK carrying every unfinished
    /// column (up to 500 varbinds a request), and answers the
    /// `non_repeaters` (GETNEXT of each, e.g. `sysUpTime` for `sysUpTime.0`) in the
    /// first request. SNMPv1 walks each column with GETNEXT instead.
    pub async fn walk_columns(
        &self,
        non_repeaters: &[Oid],
        columns: &[Oid],
        max_repetitions: u32,
    ) -> Result<ColumnWalk> {
        let mut out = ColumnWalk {
            scalars: Vec::new(),
            columns: vec![Vec::new(); columns.len()],
            requests: 0,
        };
        if self.inner.target.version == SnmpVersion::V1 {
            if !non_repeaters.is_empty() {
                out.scalars = self.get_next(non_repeaters).await?;
                out.requests += 1;
            }
            for (i, c) in columns.iter().enumerate() {
                out.columns[i] = self.walk(c).await?;
                out.requests += out.columns[i].len() + 1;
            }
            return Ok(out);
        }
        let reps = max_repetitions.clamp(1, MAX_BULK_VARBINDS);
        let per_request = (MAX_BULK_VARBINDS / reps).max(1) as usize;
        // (column, where it has got to); a column leaves when it ends.
        let mut active: Vec<(usize, Oid)> = columns.iter().cloned().enumerate().collect();
        let mut scalars = non_repeaters.to_vec();
        let mut rows = 0usize;
        while !active.is_empty() && rows < MAX_WALK_ROWS {
            let batch: Vec<(usize, Oid)> = active.iter().take(per_request).cloned().collect();
            let nr = scalars.len();
            let mut ask = std::mem::take(&mut scalars);
            ask.extend(batch.iter().map(|(_, o)| o.clone()));
            let vbs = self.get_bulk(&ask, nr as u32, reps).await?;
            out.requests += 1;
            let mut vbs = vbs.into_iter();
            out.scalars.extend(vbs.by_ref().take(nr));
            let rest: Vec<VarBind> = vbs.collect();
            if rest.is_empty() {
                // An agent that answers nothing for live columns would loop us.
                break;
            }
            let mut ended = vec![false; batch.len()];
            let mut current: Vec<Oid> = batch.iter().map(|(_, o)| o.clone()).collect();
            // Repetitions come interleaved: row r holds one varbind per column.
            for (n, vb) in rest.into_iter().enumerate() {
                let slot = n % batch.len();
                if ended[slot] {
                    continue;
                }
                let (col, _) = &batch[slot];
                match self.walk_step(&columns[*col], &current[slot], vb) {
                    Some(vb) => {
                        current[slot] = vb.oid.clone();
                        out.columns[*col].push(vb);
                        rows += 1;
                    }
                    None => ended[slot] = true,
                }
            }
            for (slot, (col, _)) in batch.iter().enumerate() {
                let pos = active.iter().position(|(c, _)| c == col);
                if let Some(pos) = pos {
                    if ended[slot] {
                        active.remove(pos);
                    } else {
                        active[pos].1 = current[slot].clone();
                    }
                }
            }
        }
        Ok(out)
    }

    /// Apply the walk stop rules to one returned varbind: None ends the walk.
    fn walk_step(&self, root: &Oid, previous: &Oid, vb: VarBind) -> Option<VarBind> {
        if matches!(
            vb.value,
            SnmpValue::EndOfMibView | SnmpValue::NoSuchObject | SnmpValue::NoSuchInstance
        ) {
            return None;
        }
        if !vb.oid.starts_with(root) || vb.oid == *root {
            return None;
        }
        if vb.oid <= *previous {
            // Broken agents loop; never follow them.
            tracing::warn!(agent = %self.inner.target.addr, oid = %vb.oid, "SNMP walk: OID not increasing, stopping");
            return None;
        }
        Some(vb)
    }

    /// Like snmpwalk: a walk of a leaf that has no subtree returns the leaf.
    async fn finish_walk(&self, root: &Oid, rows: Vec<VarBind>) -> Result<Vec<VarBind>> {
        if rows.len() >= MAX_WALK_ROWS {
            tracing::warn!(agent = %self.inner.target.addr, root = %root, "SNMP walk hit row cap");
        }
        if !rows.is_empty() {
            return Ok(rows);
        }
        match self.get(std::slice::from_ref(root)).await {
            Ok(v) => Ok(v
                .into_iter()
                .filter(|vb| !vb.value.is_exception())
                .collect()),
            // v1 noSuchName for the leaf: simply nothing there.
            Err(SnmpError::Protocol { status: 2, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn request(
        &self,
        pdu_type: PduType,
        varbinds: Vec<VarBind>,
        nr: i32,
        mr: i32,
    ) -> Result<Pdu> {
        let pdu = match self.inner.target.version {
            SnmpVersion::V1 | SnmpVersion::V2c => {
                self.request_community(pdu_type, varbinds, nr, mr).await?
            }
            SnmpVersion::V3 => self.request_v3(pdu_type, varbinds, nr, mr).await?,
        };
        if pdu.error_status != 0 {
            return Err(SnmpError::Protocol {
                status: pdu.error_status,
                index: pdu.error_index,
            });
        }
        Ok(pdu)
    }

    async fn request_community(
        &self,
        pdu_type: PduType,
        varbinds: Vec<VarBind>,
        nr: i32,
        mr: i32,
    ) -> Result<Pdu> {
        let t = &self.inner.target;
        let id = self.inner.transport.next_id();
        let bytes = encode_message(&Message::Community(CommunityMessage {
            version: t.version.clone(),
            community: t.community.as_bytes().to_vec(),
            pdu: Pdu {
                pdu_type,
                request_id: id,
                error_status: nr,
                error_index: mr,
                varbinds,
            },
        }));
        let community = t.community.as_bytes();
        self.inner
            .transport
            .roundtrip(
                t.addr,
                id,
                &bytes,
                t.timeout,
                t.retries,
                |reply| match decode_message(reply)? {
                    Message::Community(c) => {
                        if c.community != community {
                            return Err(SnmpError::Security("community mismatch"));
                        }
                        if c.pdu.pdu_type != PduType::Response || c.pdu.request_id != id {
                            return Err(SnmpError::UnexpectedResponse("not our response"));
                        }
                        Ok(c.pdu)
                    }
                    Message::V3(_) => Err(SnmpError::UnexpectedResponse("version mismatch")),
                },
            )
            .await
    }

    fn user(&self) -> Result<&UsmUser> {
        self.inner
            .target
            .user
            .as_ref()
            .ok_or(SnmpError::Config("SNMPv3 target without a USM user"))
    }

    fn engine(&self) -> Option<EngineState> {
        self.inner.engine.lock().ok().and_then(|g| g.clone())
    }

    fn set_engine(&self, e: Option<EngineState>) {
        if let Ok(mut g) = self.inner.engine.lock() {
            *g = e;
        }
    }

    /// RFC 3414 4: unauthenticated probe to learn the engine id (and, from
    /// Net-SNMP style agents, boots/time), then localize keys once.
    async fn discover(&self) -> Result<EngineState> {
        let user = self.user()?;
        let t = &self.inner.target;
        let id = self.inner.transport.next_id();
        let bytes = encode_message(&Message::V3(V3Message {
            msg_id: id,
            max_size: MAX_MESSAGE_SIZE,
            flags: FLAG_REPORTABLE,
            security_model: SECURITY_MODEL_USM,
            usm: UsmSecurityParameters::default(),
            data: ScopedPduData::Plain(ScopedPdu {
                context_engine_id: Vec::new(),
                context_name: Vec::new(),
                pdu: Pdu::new(PduType::Get, id, Vec::new()),
            }),
        }));
        let reply = self
            .inner
            .transport
            .roundtrip(
                t.addr,
                id,
                &bytes,
                t.timeout,
                t.retries,
                |reply| match decode_message(reply)? {
                    Message::V3(m) if !m.usm.engine_id.is_empty() => Ok(m),
                    _ => Err(SnmpError::UnexpectedResponse(
                        "discovery reply without engine id",
                    )),
                },
            )
            .await?;
        let keys = LocalizedKeys::derive(user, &reply.usm.engine_id)?;
        let state = EngineState {
            engine_id: reply.usm.engine_id,
            boots: reply.usm.engine_boots,
            time: reply.usm.engine_time,
            synced_at: Instant::now(),
            keys: Arc::new(keys),
        };
        self.set_engine(Some(state.clone()));
        Ok(state)
    }

    async fn request_v3(
        &self,
        pdu_type: PduType,
        varbinds: Vec<VarBind>,
        nr: i32,
        mr: i32,
    ) -> Result<Pdu> {
        let t = &self.inner.target;
        let mut last = SnmpError::Report("notInTimeWindow");
        for _ in 0..V3_RESYNC_ATTEMPTS {
            let engine = match self.engine() {
                Some(e) => e,
                None => self.discover().await?,
            };
            let keys = engine.keys.clone();
            let id = self.inner.transport.next_id();
            let msg = V3Message {
                msg_id: id,
                max_size: MAX_MESSAGE_SIZE,
                flags: keys.level_flags() | FLAG_REPORTABLE,
                security_model: SECURITY_MODEL_USM,
                usm: UsmSecurityParameters {
                    engine_id: engine.engine_id.clone(),
                    engine_boots: engine.boots,
                    engine_time: engine.time_now(),
                    user_name: keys.user_name.clone(),
                    auth_params: Vec::new(),
                    priv_params: Vec::new(),
                },
                data: ScopedPduData::Plain(ScopedPdu {
                    context_engine_id: engine.engine_id.clone(),
                    context_name: Vec::new(),
                    pdu: Pdu {
                        pdu_type,
                        request_id: id,
                        error_status: nr,
                        error_index: mr,
                        varbinds: varbinds.clone(),
                    },
                }),
            };
            let salt = self.inner.salt.fetch_add(1, Ordering::Relaxed);
            let bytes = usm::encode_secured(&msg, &keys, salt)?;
            let want_auth = keys.level_flags() & FLAG_AUTH != 0;
            let reply = self
                .inner
                .transport
                .roundtrip(t.addr, id, &bytes, t.timeout, t.retries, |reply| {
                    let m = usm::open(reply, &keys)?;
                    let Some(s) = usm::scoped(&m) else {
                        return Err(SnmpError::Malformed("undecrypted scoped PDU"));
                    };
                    match s.pdu.pdu_type {
                        PduType::Response => {
                            if want_auth && m.flags & FLAG_AUTH == 0 {
                                return Err(SnmpError::Security("unauthenticated response"));
                            }
                            if s.pdu.request_id != id {
                                return Err(SnmpError::UnexpectedResponse("request id mismatch"));
                            }
                        }
                        PduType::Report => {}
                        _ => return Err(SnmpError::UnexpectedResponse("not a response")),
                    }
                    Ok(m)
                })
                .await?;
            let authenticated = reply.flags & FLAG_AUTH != 0;
            if authenticated {
                // RFC 3414 3.2.7: track the authoritative engine's clock.
                let mut e = engine.clone();
                e.boots = reply.usm.engine_boots;
                e.time = reply.usm.engine_time;
                e.synced_at = Instant::now();
                self.set_engine(Some(e));
            }
            let Some(scoped) = usm::scoped(&reply) else {
                return Err(SnmpError::Malformed("undecrypted scoped PDU"));
            };
            match scoped.pdu.pdu_type {
                PduType::Response => return Ok(scoped.pdu.clone()),
                _ => {
                    let kind = usm::report_kind(&scoped.pdu.varbinds);
                    match kind {
                        // Clock updated above when authenticated; otherwise
                        // rediscover to learn boots/time again.
                        "notInTimeWindow" => {
                            if !authenticated {
                                self.set_engine(None);
                            }
                        }
                        "unknownEngineID" => self.set_engine(None),
                        _ => return Err(SnmpError::Report(kind)),
                    }
                    last = SnmpError::Report(kind);
                }
            }
        }
        Err(last)
    }
}

/// What [`SnmpClient::walk_columns`] found: the non-repeaters' answers in order,
/// each column's rows in order, and how many requests it took.
#[derive(Debug, Clone, Default)]
pub struct ColumnWalk {
    pub scalars: Vec<VarBind>,
    pub columns: Vec<Vec<VarBind>>,
    pub requests: usize,
}

impl ColumnWalk {
    /// Varbinds returned, as snmp_exporter's `snmp_scrape_pdus_returned` counts them.
    pub fn varbinds(&self) -> usize {
        self.scalars.len() + self.columns.iter().map(Vec::len).sum::<usize>()
    }
}

fn nulls(oids: &[Oid]) -> Vec<VarBind> {
    oids.iter().cloned().map(VarBind::null).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::snmp::pdu::FLAG_PRIV;
    use crate::drivers::snmp::{AuthProtocol, PrivProtocol};
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    /// Run a fake agent on a thread: `handle` maps request bytes to reply
    /// bytes (None = stay silent). Stops after `max` requests or 5 s idle.
    fn fake_agent(
        max: usize,
        mut handle: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> (SocketAddr, std::thread::JoinHandle<usize>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let addr = sock.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            let mut n = 0;
            while n < max {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    break;
                };
                n += 1;
                if let Some(reply) = handle(&buf[..len]) {
                    sock.send_to(&reply, from).unwrap();
                }
            }
            n
        });
        (addr, h)
    }

    fn target(addr: SocketAddr, version: SnmpVersion, user: Option<UsmUser>) -> SnmpTarget {
        SnmpTarget {
            addr,
            version,
            community: "public".into(),
            user,
            timeout: Duration::from_millis(500),
            retries: 0,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The agent's clock is far from what discovery reported: the client
    /// must take boots/time from the authenticated notInTimeWindow report
    /// and retry once. The agent is built with the same USM code.
    #[test]
    fn v3_time_window_resync_with_fake_agent() {
        let engine_id = b"\x80\x00\x1f\x88\x04fake".to_vec();
        let user = UsmUser {
            name: "ops".into(),
            auth: Some((AuthProtocol::Sha256, "authpass1".into())),
            privacy: Some((PrivProtocol::Aes128, "privpass1".into())),
        };
        let keys = LocalizedKeys::derive(&user, &engine_id).unwrap();
        let eid = engine_id.clone();
        let (addr, agent) = fake_agent(3, move |req| {
            let Message::V3(m) = decode_message(req).ok()? else {
                return None;
            };
            let mut usm_params = UsmSecurityParameters {
                engine_id: eid.clone(),
                engine_boots: 5,
                engine_time: 100,
                user_name: m.usm.user_name.clone(),
                ..Default::default()
            };
            let reply = |flags: u8, usm: UsmSecurityParameters, pdu: Pdu| V3Message {
                msg_id: m.msg_id,
                max_size: 65507,
                flags,
                security_model: 3,
                usm,
                data: ScopedPduData::Plain(ScopedPdu {
                    context_engine_id: eid.clone(),
                    context_name: vec![],
                    pdu,
                }),
            };
            if m.usm.engine_id.is_empty() {
                // Discovery: unauthenticated report with a stale clock.
                let vb = usm::report_varbind("unknownEngineID", 1)?;
                let r = reply(0, usm_params, Pdu::new(PduType::Report, 0, vec![vb]));
                return Some(encode_message(&Message::V3(r)));
            }
            let opened = usm::open(req, &keys).ok()?;
            let req_pdu = usm::scoped(&opened)?.pdu.clone();
            usm_params.engine_time = 1000;
            if opened.usm.engine_time < 1000 {
                let vb = usm::report_varbind("notInTimeWindow", 1)?;
                let r = reply(
                    FLAG_AUTH,
                    usm_params,
                    Pdu::new(PduType::Report, req_pdu.request_id, vec![vb]),
                );
                return usm::encode_secured(&r, &keys, 1).ok();
            }
            let vbs = vec![VarBind::new(
                "1.3.6.1.2.1.1.5.0".parse().unwrap(),
                SnmpValue::OctetString(b"fake".to_vec()),
            )];
            let r = reply(
                FLAG_AUTH | FLAG_PRIV,
                usm_params,
                Pdu::new(PduType::Response, req_pdu.request_id, vbs),
            );
            usm::encode_secured(&r, &keys, 2).ok()
        });
        let transport = SnmpTransport::new(1).unwrap();
        let c = SnmpClient::new(target(addr, SnmpVersion::V3, Some(user)), transport);
        let got = rt()
            .block_on(c.get(&["sysName.0".parse().unwrap()]))
            .unwrap();
        assert_eq!(got[0].value, SnmpValue::OctetString(b"fake".to_vec()));
        // discovery + stale request + resynced request
        assert_eq!(agent.join().unwrap(), 3);
    }

    /// An agent whose GETNEXT goes backwards must not trap the walk.
    #[test]
    fn walk_stops_on_non_increasing_oid() {
        let (addr, agent) = fake_agent(10, |req| {
            let Message::Community(mut m) = decode_message(req).ok()? else {
                return None;
            };
            let asked = m.pdu.varbinds.first()?.oid.clone();
            // First answer goes forward, then always the same OID again.
            let next: Oid = if asked.to_string() == "1.3.6.1.2.1.1" {
                "1.3.6.1.2.1.1.5.0".parse().ok()?
            } else {
                "1.3.6.1.2.1.1.4.0".parse().ok()?
            };
            m.pdu.pdu_type = PduType::Response;
            m.pdu.varbinds = vec![VarBind::new(next, SnmpValue::Integer(1))];
            Some(encode_message(&Message::Community(m)))
        });
        let transport = SnmpTransport::new(1).unwrap();
        let c = SnmpClient::new(target(addr, SnmpVersion::V2c, None), transport);
        let rows = rt()
            .block_on(c.walk(&"1.3.6.1.2.1.1".parse().unwrap()))
            .unwrap();
        assert_eq!(rows.len(), 1);
        drop(c);
        assert_eq!(agent.join().unwrap(), 2);
    }

    /// Columns walked side by side: the first request carries the non-repeaters,
    /// replies cut short (as agents cut GETBULK replies to fit) resume where each
    /// column got to, and each column stops at its own end.
    #[test]
    fn walk_columns_interleaves_and_resumes_cut_replies() {
        let mib: Vec<(Oid, SnmpValue)> = [
            ("1.3.6.1.2.1.1.3.0", SnmpValue::TimeTicks(500)),
            ("1.3.6.1.2.1.2.1.0", SnmpValue::Integer(3)),
            (
                "1.3.6.1.2.1.2.2.1.2.1",
                SnmpValue::OctetString(b"lo".to_vec()),
            ),
            (
                "1.3.6.1.2.1.2.2.1.2.2",
                SnmpValue::OctetString(b"eth0".to_vec()),
            ),
            (
                "1.3.6.1.2.1.2.2.1.2.3",
                SnmpValue::OctetString(b"eth1".to_vec()),
            ),
            ("1.3.6.1.2.1.2.2.1.8.1", SnmpValue::Integer(1)),
            ("1.3.6.1.2.1.2.2.1.8.2", SnmpValue::Integer(2)),
            ("1.3.6.1.2.1.2.2.1.8.3", SnmpValue::Integer(1)),
            ("1.3.6.1.2.1.2.2.1.9.1", SnmpValue::TimeTicks(0)),
        ]
        .into_iter()
        .map(|(o, v)| (o.parse().unwrap(), v))
        .collect();
        let (addr, agent) = fake_agent(2, move |req| {
            let Message::Community(mut m) = decode_message(req).ok()? else {
                return None;
            };
            let next = |o: &Oid| {
                mib.iter()
                    .find(|(k, _)| k > o)
                    .map(|(k, v)| VarBind::new(k.clone(), v.clone()))
                    .unwrap_or_else(|| VarBind::new(o.clone(), SnmpValue::EndOfMibView))
            };
            let nr = m.pdu.error_status as usize;
            let reps = m.pdu.error_index as usize;
            let (fixed, repeat) = m.pdu.varbinds.split_at(nr);
            let mut out: Vec<VarBind> = fixed.iter().map(|vb| next(&vb.oid)).collect();
            let mut cur: Vec<Oid> = repeat.iter().map(|vb| vb.oid.clone()).collect();
            for _ in 0..reps {
                let row: Vec<VarBind> = cur.iter().map(&next).collect();
                cur = row.iter().map(|vb| vb.oid.clone()).collect();
                out.extend(row);
            }
            // Cut to 5 varbinds, mid-row, as a size limit would.
            out.truncate(nr + 5);
            m.pdu.pdu_type = PduType::Response;
            m.pdu.error_status = 0;
            m.pdu.error_index = 0;
            m.pdu.varbinds = out;
            Some(encode_message(&Message::Community(m)))
        });
        let transport = SnmpTransport::new(1).unwrap();
        let c = SnmpClient::new(target(addr, SnmpVersion::V2c, None), transport);
        let o = |s: &str| -> Oid { s.parse().unwrap() };
        let w = rt()
            .block_on(c.walk_columns(
                &[o("1.3.6.1.2.1.1.3"), o("1.3.6.1.2.1.2.1")],
                &[o("1.3.6.1.2.1.2.2.1.2"), o("1.3.6.1.2.1.2.2.1.8")],
                25,
            ))
            .unwrap();
        assert_eq!(w.scalars.len(), 2);
        assert_eq!(w.scalars[1].value, SnmpValue::Integer(3));
        let idx = |col: &[VarBind]| -> Vec<u32> {
            col.iter()
                .map(|vb| *vb.oid.arcs().last().unwrap())
                .collect()
        };
        assert_eq!(idx(&w.columns[0]), [1, 2, 3]);
        assert_eq!(idx(&w.columns[1]), [1, 2, 3]);
        assert_eq!(w.columns[1][1].value, SnmpValue::Integer(2));
        assert_eq!(w.varbinds(), 8);
        // The first reply is cut after eth1's ifDescr; the second resumes each
        // column from its own place and runs both past their ends.
        assert_eq!(w.requests, 2);
        drop(c);
        assert_eq!(agent.join().unwrap(), 2);
    }

    /// Garbage and wrong-community replies are dropped; the real reply that
    /// follows still completes the request.
    #[test]
    fn bad_replies_are_dropped_not_fatal() {
        let (addr, _agent) = fake_agent(1, |req| {
            let Message::Community(mut m) = decode_message(req).ok()? else {
                return None;
            };
            m.pdu.pdu_type = PduType::Response;
            m.community = b"other".to_vec();
            Some(encode_message(&Message::Community(m)))
        });
        let transport = SnmpTransport::new(1).unwrap();
        let c = SnmpClient::new(target(addr, SnmpVersion::V2c, None), transport);
        let err = rt()
            .block_on(c.get(&["sysName.0".parse().unwrap()]))
            .unwrap_err();
        // Only an invalid reply arrived: reported as such, a device failure.
        assert_eq!(err.kind(), "security");
        assert!(err.is_device_failure());
    }
}
