//! SNMP agent simulator: N agents, each on its own UDP port, answering
//! SNMPv1, SNMPv2c (a read and a write community) and SNMPv3 (one USM user)
//! for a small switch-like MIB view: the system group, `ifNumber`, `ifTable`
//! and `ifXTable`.
//!
//! The SNMP codec and USM security are the client's own
//! (`crate::drivers::snmp`): the simulator only decides what to answer. The
//! MIB view (sorted OIDs) is built once and shared by all agents; per-agent
//! state is only what a SET changed. Counters are computed from the elapsed
//! time and a per-interface rate, so no timers run.
//!
//! Faults ([`SnmpFault`]) are assigned at start to a seeded, disjoint share of
//! the agents ([`SnmpFaultRates`]) and can be changed at runtime with
//! [`SnmpSim::set_fault`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use drover::devsim::snmp::{SnmpFault, SnmpSim, SnmpSimConfig};
//! let sim = SnmpSim::start(SnmpSimConfig { count: 10, ..Default::default() }).await?;
//! let first = sim.devices()[0].id.clone(); // "sw-0001"
//! sim.set_fault(&first, SnmpFault::Down);
//! std::fs::write("inventory.toml", sim.inventory_toml("2c"))?;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Communities and passwords are never logged; `SnmpV3User`'s `Debug`
//! redacts them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::net::UdpSocket;
use tokio::task::{JoinHandle, JoinSet};

use super::shares::{assign_shares, toml_string};
use crate::drivers::snmp::usm::{self, LocalizedKeys};
use crate::drivers::snmp::{
    decode_message, encode_message, AuthProtocol, CommunityMessage, Message, Oid, Pdu, PduType,
    PrivProtocol, ScopedPdu, ScopedPduData, SnmpError, SnmpValue, SnmpVersion,
    UsmSecurityParameters, UsmUser, V3Message, VarBind, FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE,
};

/// A misbehaviour injected into one simulated agent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SnmpFault {
    None,
    /// Never answer.
    Down,
    /// Answer after this delay.
    Slow(Duration),
    /// Drop this share (0..=1) of the requests.
    Drop(f64),
    /// Answer with bytes that do not decode (a corrupted tail that still
    /// carries the request id, or the reply cut in half).
    Malformed,
}

/// Start-time fault shares (each 0..=1, disjoint, assigned over a seeded
/// shuffle of the agents).
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpFaultRates {
    pub down: f64,
    pub slow: f64,
    pub drop: f64,
    pub malformed: f64,
    /// Delay of the `Slow` agents.
    pub slow_latency: Duration,
    /// Share of requests the `Drop` agents drop.
    pub drop_share: f64,
    pub seed: u64,
}

impl Default for SnmpFaultRates {
    fn default() -> Self {
        SnmpFaultRates {
            down: 0.0,
            slow: 0.0,
            drop: 0.0,
            malformed: 0.0,
            slow_latency: Duration::from_secs(2),
            drop_share: 0.5,
            seed: 1,
        }
    }
}

/// The SNMPv3 USM user every agent knows (authPriv when `privacy` is set).
#[derive(Clone, PartialEq)]
pub struct SnmpV3User {
    pub name: String,
    pub auth: (AuthProtocol, String),
    pub privacy: Option<(PrivProtocol, String)>,
}

impl fmt::Debug for SnmpV3User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnmpV3User")
            .field("name", &self.name)
            .field("auth", &(&self.auth.0, "<redacted>"))
            .field(
                "privacy",
                &self.privacy.as_ref().map(|(p, _)| (p, "<redacted>")),
            )
            .finish()
    }
}

#[derive(Clone, PartialEq)]
pub struct SnmpSimConfig {
    pub count: usize,
    pub id_prefix: String,
    /// Zero-padded width of the numeric part of the id.
    pub id_width: usize,
    pub first_index: usize,
    pub bind: IpAddr,
    /// 0: ephemeral ports; otherwise agent i listens on base_port + i.
    pub base_port: u16,
    pub interfaces: usize,
    pub community: String,
    pub write_community: String,
    pub v3_user: Option<SnmpV3User>,
    pub faults: SnmpFaultRates,
}

impl fmt::Debug for SnmpSimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnmpSimConfig")
            .field("count", &self.count)
            .field("id_prefix", &self.id_prefix)
            .field("id_width", &self.id_width)
            .field("first_index", &self.first_index)
            .field("bind", &self.bind)
            .field("base_port", &self.base_port)
            .field("interfaces", &self.interfaces)
            .field("community", &"<redacted>")
            .field("write_community", &"<redacted>")
            .field("v3_user", &self.v3_user)
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for SnmpSimConfig {
    fn default() -> Self {
        SnmpSimConfig {
            count: 100,
            id_prefix: "sw-".into(),
            id_width: 4,
            first_index: 1,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 0,
            interfaces: 8,
            community: "public".into(),
            write_community: "private".into(),
            v3_user: Some(SnmpV3User {
                name: "drover".into(),
                auth: (AuthProtocol::Sha1, "drover-auth-pass".into()),
                privacy: Some((PrivProtocol::Aes128, "drover-priv-pass".into())),
            }),
            faults: SnmpFaultRates::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnmpSimDeviceInfo {
    pub id: String,
    pub addr: SocketAddr,
}

// RFC 3416 error-status values.
const NO_SUCH_NAME: i32 = 2;
const BAD_VALUE: i32 = 3;
const NO_ACCESS: i32 = 6;
const WRONG_TYPE: i32 = 7;
const WRONG_LENGTH: i32 = 8;
const WRONG_VALUE: i32 = 10;
const NOT_WRITABLE: i32 = 17;

const ENGINE_BOOTS: u32 = 1;
/// RFC 3414 3.2.7: 150 s time window.
const TIME_WINDOW: u32 = 150;
const MAX_MSG_SIZE: i32 = 1472;
/// Budget for the varbinds of a GETBULK answer (the whole message stays
/// under ~1400 bytes with v3 headers).
const BULK_BUDGET: usize = 1200;
const MAX_REPETITIONS: usize = 256;

const SYSTEM: [u32; 7] = [1, 3, 6, 1, 2, 1, 1];
const IF_NUMBER: [u32; 8] = [1, 3, 6, 1, 2, 1, 2, 1];
const IF_ENTRY: [u32; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: [u32; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
const IF_COLUMNS: [u32; 13] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 16, 20];
const IFX_COLUMNS: [u32; 5] = [1, 6, 10, 15, 18];
const SYS_OBJECT_ID: [u32; 10] = [1, 3, 6, 1, 4, 1, 8072, 3, 2, 10];

/// Names understood by [`SnmpSim::get_text`]: (name, object OID).
const NAMES: [(&str, &[u32]); 13] = [
    ("sysDescr", &[1, 3, 6, 1, 2, 1, 1, 1]),
    ("sysContact", &[1, 3, 6, 1, 2, 1, 1, 4]),
    ("sysName", &[1, 3, 6, 1, 2, 1, 1, 5]),
    ("sysLocation", &[1, 3, 6, 1, 2, 1, 1, 6]),
    ("sysServices", &[1, 3, 6, 1, 2, 1, 1, 7]),
    ("ifNumber", &IF_NUMBER),
    ("ifDescr", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2]),
    ("ifAdminStatus", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 7]),
    ("ifOperStatus", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8]),
    ("ifInOctets", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 10]),
    ("ifOutOctets", &[1, 3, 6, 1, 2, 1, 2, 2, 1, 16]),
    ("ifName", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1]),
    ("ifAlias", &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18]),
];

/// One object instance of the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    /// system group scalar `1.3.6.1.2.1.1.<n>.0`.
    Sys(u32),
    IfNumber,
    /// ifTable (column, ifIndex).
    If(u32, u32),
    /// ifXTable (column, ifIndex).
    IfX(u32, u32),
}

fn oid(arcs: &[u32]) -> io::Result<Oid> {
    Oid::from_arcs(arcs.to_vec()).map_err(|e| io::Error::other(e.to_string()))
}

fn with(prefix: &[u32], tail: &[u32]) -> Vec<u32> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(tail);
    v
}

/// The sorted MIB view shared by all agents.
struct View {
    entries: Vec<(Oid, Obj)>,
    /// Object (not instance) OIDs, for noSuchInstance vs noSuchObject.
    objects: Vec<Oid>,
}

impl View {
    fn build(interfaces: usize) -> io::Result<View> {
        let n = u32::try_from(interfaces)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many interfaces"))?;
        let mut entries = Vec::new();
        let mut objects = Vec::new();
        for k in 1..=7 {
            entries.push((oid(&with(&SYSTEM, &[k, 0]))?, Obj::Sys(k)));
            objects.push(oid(&with(&SYSTEM, &[k]))?);
        }
        entries.push((oid(&with(&IF_NUMBER, &[0]))?, Obj::IfNumber));
        objects.push(oid(&IF_NUMBER)?);
        for c in IF_COLUMNS {
            objects.push(oid(&with(&IF_ENTRY, &[c]))?);
            for i in 1..=n {
                entries.push((oid(&with(&IF_ENTRY, &[c, i]))?, Obj::If(c, i)));
            }
        }
        for c in IFX_COLUMNS {
            objects.push(oid(&with(&IFX_ENTRY, &[c]))?);
            for i in 1..=n {
                entries.push((oid(&with(&IFX_ENTRY, &[c, i]))?, Obj::IfX(c, i)));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(View { entries, objects })
    }

    fn find(&self, o: &Oid) -> Option<Obj> {
        self.entries
            .binary_search_by(|(e, _)| e.cmp(o))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|(_, obj)| *obj)
    }

    fn next(&self, o: &Oid) -> Option<&(Oid, Obj)> {
        self.entries
            .get(self.entries.partition_point(|(e, _)| e <= o))
    }

    fn missing(&self, o: &Oid) -> SnmpValue {
        if self.objects.iter().any(|p| o.starts_with(p)) {
            SnmpValue::NoSuchInstance
        } else {
            SnmpValue::NoSuchObject
        }
    }
}

/// What a SET changed on one agent (empty by default).
#[derive(Default)]
struct AgentState {
    contact: Option<String>,
    location: Option<String>,
    admin_down: BTreeMap<u32, bool>,
    alias: BTreeMap<u32, String>,
}

struct Agent {
    index: usize,
    id: String,
    engine_id: Vec<u8>,
    keys: Option<LocalizedKeys>,
    fault: Mutex<SnmpFault>,
    state: Mutex<AgentState>,
    rng: Mutex<StdRng>,
    salt: AtomicU64,
    answered: AtomicU64,
    reports: AtomicU32,
}

struct Shared {
    view: View,
    sys_object_id: Oid,
    interfaces: usize,
    community: Vec<u8>,
    write_community: Vec<u8>,
    start: Instant,
    requests: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn engine_time(&self) -> u32 {
        u32::try_from(self.start.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn value(&self, agent: &Agent, st: &AgentState, obj: Obj) -> SnmpValue {
        let secs = self.start.elapsed().as_secs_f64();
        let text = |s: &str| SnmpValue::OctetString(s.as_bytes().to_vec());
        match obj {
            Obj::Sys(1) => text(&format!("Drover simulated switch {}", agent.id)),
            Obj::Sys(2) => SnmpValue::ObjectId(self.sys_object_id.clone()),
            Obj::Sys(3) => {
                let ticks = self.start.elapsed().as_millis() / 10;
                SnmpValue::TimeTicks((ticks % (1u128 << 32)) as u32)
            }
            Obj::Sys(4) => text(st.contact.as_deref().unwrap_or("noc@drover.invalid")),
            Obj::Sys(5) => text(&agent.id),
            Obj::Sys(6) => text(st.location.as_deref().unwrap_or("Drover simulated lab")),
            Obj::Sys(_) => SnmpValue::Integer(6),
            Obj::IfNumber => SnmpValue::Integer(i32::try_from(self.interfaces).unwrap_or(0)),
            Obj::If(c, i) => {
                let down = st.admin_down.get(&i).copied().unwrap_or(false);
                let status = if down { 2 } else { 1 };
                let (inb, outb) = octets(agent.index, i, secs);
                let errors = (secs / f64::from(600 + 10 * i)) as u32;
                match c {
                    1 => SnmpValue::Integer(i as i32),
                    2 => text(&format!("GigabitEthernet0/{i}")),
                    3 => SnmpValue::Integer(6),
                    4 => SnmpValue::Integer(1500),
                    5 => SnmpValue::Gauge32(1_000_000_000),
                    6 => {
                        let x = (agent.index as u32).to_be_bytes();
                        SnmpValue::OctetString(vec![0x02, x[1], x[2], x[3], 0, i as u8])
                    }
                    7 | 8 => SnmpValue::Integer(status),
                    9 => SnmpValue::TimeTicks(0),
                    10 => SnmpValue::Counter32(inb as u32),
                    16 => SnmpValue::Counter32(outb as u32),
                    _ => SnmpValue::Counter32(errors),
                }
            }
            Obj::IfX(c, i) => {
                let (inb, outb) = octets(agent.index, i, secs);
                match c {
                    1 => text(&format!("Gi0/{i}")),
                    6 => SnmpValue::Counter64(inb),
                    10 => SnmpValue::Counter64(outb),
                    15 => SnmpValue::Gauge32(1000),
                    _ => text(st.alias.get(&i).map(String::as_str).unwrap_or("")),
                }
            }
        }
    }
}

/// In/out octets of one interface after `secs` seconds (per-interface rate).
fn octets(agent: usize, ifindex: u32, secs: f64) -> (u64, u64) {
    let rate = 1_000 + ((agent as u64 * 31 + u64::from(ifindex) * 17) % 97) * 1_000;
    let inb = (secs * rate as f64) as u64;
    (inb, inb / 2 + (secs * 500.0) as u64)
}

/// A rough upper bound of a varbind's encoded size (for GETBULK budgets).
fn vb_size(vb: &VarBind) -> usize {
    let oid_len = vb.oid.arcs().len() * 2 + 4;
    let val = match &vb.value {
        SnmpValue::OctetString(b) | SnmpValue::Opaque(b) => b.len(),
        SnmpValue::ObjectId(o) => o.arcs().len() * 2,
        SnmpValue::Counter64(_) => 9,
        _ => 5,
    };
    oid_len + val + 8
}

enum Change {
    Contact(String),
    Location(String),
    Admin(u32, bool),
    Alias(u32, String),
}

fn text_value(v: &SnmpValue, max: usize) -> Result<String, i32> {
    match v {
        SnmpValue::OctetString(b) if b.len() > max => Err(WRONG_LENGTH),
        SnmpValue::OctetString(b) => String::from_utf8(b.clone()).map_err(|_| WRONG_VALUE),
        _ => Err(WRONG_TYPE),
    }
}

/// Validate one SET varbind; the error is the SNMPv2 error-status.
fn check_set(obj: Option<Obj>, v: &SnmpValue) -> Result<Change, i32> {
    match obj {
        Some(Obj::Sys(4)) => text_value(v, 255).map(Change::Contact),
        Some(Obj::Sys(6)) => text_value(v, 255).map(Change::Location),
        Some(Obj::IfX(18, i)) => text_value(v, 64).map(|s| Change::Alias(i, s)),
        Some(Obj::If(7, i)) => match v {
            SnmpValue::Integer(1) => Ok(Change::Admin(i, false)),
            SnmpValue::Integer(2) => Ok(Change::Admin(i, true)),
            SnmpValue::Integer(_) => Err(WRONG_VALUE),
            _ => Err(WRONG_TYPE),
        },
        _ => Err(NOT_WRITABLE),
    }
}

fn v1_status(status: i32) -> i32 {
    match status {
        NOT_WRITABLE | NO_ACCESS => NO_SUCH_NAME,
        WRONG_TYPE | WRONG_LENGTH | WRONG_VALUE => BAD_VALUE,
        s => s,
    }
}

fn response(req: &Pdu, status: i32, index: usize, varbinds: Vec<VarBind>) -> Pdu {
    Pdu {
        pdu_type: PduType::Response,
        request_id: req.request_id,
        error_status: status,
        error_index: i32::try_from(index).unwrap_or(0),
        varbinds,
    }
}

fn error(req: &Pdu, status: i32, index: usize) -> Pdu {
    response(req, status, index, req.varbinds.clone())
}

/// Answer one PDU (None: not a request we answer).
fn process(shared: &Shared, agent: &Agent, req: &Pdu, v1: bool, can_write: bool) -> Option<Pdu> {
    let view = &shared.view;
    let mut st = lock(&agent.state);
    let mut out = Vec::with_capacity(req.varbinds.len());
    match req.pdu_type {
        PduType::Get => {
            for (i, vb) in req.varbinds.iter().enumerate() {
                let value = match view.find(&vb.oid) {
                    Some(obj) => shared.value(agent, &st, obj),
                    None if v1 => return Some(error(req, NO_SUCH_NAME, i + 1)),
                    None => view.missing(&vb.oid),
                };
                out.push(VarBind::new(vb.oid.clone(), value));
            }
        }
        PduType::GetNext => {
            for (i, vb) in req.varbinds.iter().enumerate() {
                match view.next(&vb.oid) {
                    Some((o, obj)) => {
                        out.push(VarBind::new(o.clone(), shared.value(agent, &st, *obj)))
                    }
                    None if v1 => return Some(error(req, NO_SUCH_NAME, i + 1)),
                    None => out.push(VarBind::new(vb.oid.clone(), SnmpValue::EndOfMibView)),
                }
            }
        }
        PduType::GetBulk if !v1 => {
            let n = req.varbinds.len();
            let nr = usize::try_from(req.error_status).unwrap_or(0).min(n);
            let mr = usize::try_from(req.error_index)
                .unwrap_or(0)
                .min(MAX_REPETITIONS);
            let (fixed, repeat) = req.varbinds.split_at(nr);
            let step = |o: &Oid| match view.next(o) {
                Some((o, obj)) => VarBind::new(o.clone(), shared.value(agent, &st, *obj)),
                None => VarBind::new(o.clone(), SnmpValue::EndOfMibView),
            };
            for vb in fixed {
                out.push(step(&vb.oid));
            }
            let mut size: usize = out.iter().map(vb_size).sum();
            let mut cur: Vec<Oid> = repeat.iter().map(|vb| vb.oid.clone()).collect();
            for _ in 0..mr {
                if cur.is_empty() {
                    break;
                }
                let row: Vec<VarBind> = cur.iter().map(&step).collect();
                let row_size: usize = row.iter().map(vb_size).sum();
                if size + row_size > BULK_BUDGET && !out.is_empty() {
                    break;
                }
                size += row_size;
                let done = row.iter().all(|vb| vb.value == SnmpValue::EndOfMibView);
                cur = row.iter().map(|vb| vb.oid.clone()).collect();
                out.extend(row);
                if done {
                    break;
                }
            }
        }
        PduType::Set => {
            if !can_write {
                let s = if v1 { NO_SUCH_NAME } else { NO_ACCESS };
                return Some(error(req, s, 1));
            }
            let mut changes = Vec::with_capacity(req.varbinds.len());
            for (i, vb) in req.varbinds.iter().enumerate() {
                match check_set(view.find(&vb.oid), &vb.value) {
                    Ok(c) => changes.push(c),
                    Err(s) => return Some(error(req, if v1 { v1_status(s) } else { s }, i + 1)),
                }
            }
            for c in changes {
                match c {
                    Change::Contact(s) => st.contact = Some(s),
                    Change::Location(s) => st.location = Some(s),
                    Change::Admin(i, down) => {
                        st.admin_down.insert(i, down);
                    }
                    Change::Alias(i, s) => {
                        st.alias.insert(i, s);
                    }
                }
            }
            out = req.varbinds.clone();
        }
        _ => return None,
    }
    Some(response(req, 0, 0, out))
}

/// Turn an encoded reply (built with no varbinds) into bytes that do not
/// decode: every other reply keeps its header (so the client matches it by
/// id and sees a malformed message), the others are cut in half.
fn mangle(mut bytes: Vec<u8>, n: u64) -> Vec<u8> {
    if n.is_multiple_of(2) {
        let len = bytes.len();
        for b in bytes.iter_mut().skip(len.saturating_sub(2)) {
            *b = 0xff;
        }
    } else {
        bytes.truncate(bytes.len() / 2);
    }
    bytes
}

fn handle(shared: &Shared, agent: &Agent, data: &[u8], malformed: bool) -> Option<Vec<u8>> {
    match decode_message(data).ok()? {
        Message::Community(c) => {
            let can_write = c.community == shared.write_community;
            if !can_write && c.community != shared.community {
                return None;
            }
            let v1 = c.version == SnmpVersion::V1;
            let mut pdu = process(shared, agent, &c.pdu, v1, can_write)?;
            if malformed {
                pdu.varbinds.clear();
            }
            Some(encode_message(&Message::Community(CommunityMessage {
                version: c.version,
                community: c.community,
                pdu,
            })))
        }
        Message::V3(m) => handle_v3(shared, agent, data, &m, malformed),
    }
}

fn handle_v3(
    shared: &Shared,
    agent: &Agent,
    data: &[u8],
    m: &V3Message,
    malformed: bool,
) -> Option<Vec<u8>> {
    let keys = agent.keys.as_ref()?;
    let request_id = match &m.data {
        ScopedPduData::Plain(s) => s.pdu.request_id,
        ScopedPduData::Encrypted(_) => 0,
    };
    let report = |kind: &str, signed: bool| {
        if m.flags & FLAG_REPORTABLE == 0 {
            return None;
        }
        report(shared, agent, m, request_id, kind, signed, malformed)
    };
    if m.usm.engine_id != agent.engine_id {
        return report("unknownEngineID", false);
    }
    if m.usm.user_name != keys.user_name {
        return report("unknownUserName", false);
    }
    if m.flags & (FLAG_AUTH | FLAG_PRIV) != keys.level_flags() {
        return report("unsupportedSecLevel", false);
    }
    let opened = match usm::open(data, keys) {
        Ok(o) => o,
        Err(SnmpError::Security("decryption failed")) | Err(SnmpError::Malformed(_)) => {
            return report("decryptionError", false)
        }
        Err(SnmpError::Security(_)) => return report("wrongDigest", false),
        Err(_) => return None,
    };
    let now = shared.engine_time();
    if opened.usm.engine_boots != ENGINE_BOOTS || opened.usm.engine_time.abs_diff(now) > TIME_WINDOW
    {
        return report("notInTimeWindow", true);
    }
    let scoped = usm::scoped(&opened)?;
    let mut pdu = process(shared, agent, &scoped.pdu, false, true)?;
    if malformed {
        pdu.varbinds.clear();
    }
    let reply = V3Message {
        msg_id: m.msg_id,
        max_size: MAX_MSG_SIZE,
        flags: keys.level_flags(),
        security_model: m.security_model,
        usm: UsmSecurityParameters {
            engine_id: agent.engine_id.clone(),
            engine_boots: ENGINE_BOOTS,
            engine_time: now,
            user_name: keys.user_name.clone(),
            auth_params: Vec::new(),
            priv_params: Vec::new(),
        },
        data: ScopedPduData::Plain(ScopedPdu {
            context_engine_id: agent.engine_id.clone(),
            context_name: scoped.context_name.clone(),
            pdu,
        }),
    };
    let salt = agent.salt.fetch_add(1, Ordering::Relaxed);
    usm::encode_secured(&reply, keys, salt).ok()
}

/// A usmStats Report (RFC 3414 3.2); `signed` ones (notInTimeWindow) are
/// authenticated so the client can trust the clock they carry.
fn report(
    shared: &Shared,
    agent: &Agent,
    m: &V3Message,
    request_id: i32,
    kind: &str,
    signed: bool,
    malformed: bool,
) -> Option<Vec<u8>> {
    let count = agent
        .reports
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(1);
    let mut varbinds = vec![usm::report_varbind(kind, count)?];
    if malformed {
        varbinds.clear();
    }
    let msg = V3Message {
        msg_id: m.msg_id,
        max_size: MAX_MSG_SIZE,
        flags: if signed { FLAG_AUTH } else { 0 },
        security_model: m.security_model,
        usm: UsmSecurityParameters {
            engine_id: agent.engine_id.clone(),
            engine_boots: ENGINE_BOOTS,
            engine_time: shared.engine_time(),
            user_name: m.usm.user_name.clone(),
            auth_params: Vec::new(),
            priv_params: Vec::new(),
        },
        data: ScopedPduData::Plain(ScopedPdu {
            context_engine_id: agent.engine_id.clone(),
            context_name: Vec::new(),
            pdu: Pdu {
                pdu_type: PduType::Report,
                request_id,
                error_status: 0,
                error_index: 0,
                varbinds,
            },
        }),
    };
    match (signed, agent.keys.as_ref()) {
        (true, Some(k)) => usm::encode_secured(&msg, k, 0).ok(),
        _ => Some(encode_message(&Message::V3(msg))),
    }
}

async fn run_agent(sock: Arc<UdpSocket>, shared: Arc<Shared>, agent: Arc<Agent>) {
    let mut buf = vec![0u8; 65535];
    // Delayed answers of a Slow agent; aborted with the agent task.
    let mut delayed = JoinSet::new();
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(agent = %agent.id, error = %e, "SNMP sim receive error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while delayed.try_join_next().is_some() {}
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let fault = *lock(&agent.fault);
        let drop = match fault {
            SnmpFault::Down => true,
            SnmpFault::Drop(p) if p.is_nan() || p <= 0.0 => false,
            SnmpFault::Drop(p) if p >= 1.0 => true,
            SnmpFault::Drop(p) => lock(&agent.rng).random_bool(p),
            _ => false,
        };
        if drop {
            continue;
        }
        let malformed = fault == SnmpFault::Malformed;
        let Some(data) = buf.get(..n) else { continue };
        let Some(mut reply) = handle(&shared, &agent, data, malformed) else {
            continue;
        };
        if malformed {
            reply = mangle(reply, agent.answered.fetch_add(1, Ordering::Relaxed));
        }
        match fault {
            SnmpFault::Slow(d) => {
                let s = sock.clone();
                delayed.spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = s.send_to(&reply, from).await;
                });
            }
            _ => {
                let _ = sock.send_to(&reply, from).await;
            }
        }
    }
}

/// Start faults: disjoint shares over a seeded shuffle of the agents.
fn assign_faults(count: usize, rates: &SnmpFaultRates) -> Vec<SnmpFault> {
    let kinds = [
        (rates.down, SnmpFault::Down),
        (rates.slow, SnmpFault::Slow(rates.slow_latency)),
        (rates.drop, SnmpFault::Drop(rates.drop_share)),
        (rates.malformed, SnmpFault::Malformed),
    ];
    let mut rng = StdRng::seed_from_u64(rates.seed);
    assign_shares(count, &mut rng, &kinds, SnmpFault::None, |_, _, _| {})
}

/// Engine id: enterprise 8072 (Net-SNMP) format octet 0x80 + 4-byte index.
fn engine_id(index: usize) -> Vec<u8> {
    let mut e = vec![0x80, 0x00, 0x1f, 0x88, 0x80];
    e.extend_from_slice(&(index as u32).to_be_bytes());
    e
}

fn auth_name(p: &AuthProtocol) -> &'static str {
    match p {
        AuthProtocol::Md5 => "MD5",
        AuthProtocol::Sha1 => "SHA",
        AuthProtocol::Sha256 => "SHA-256",
        AuthProtocol::Sha512 => "SHA-512",
    }
}

fn priv_name(p: &PrivProtocol) -> &'static str {
    match p {
        PrivProtocol::Des => "DES",
        PrivProtocol::Aes128 => "AES",
        PrivProtocol::Aes256 => "AES-256",
    }
}

/// The running simulator. Dropping it stops all agents.
pub struct SnmpSim {
    shared: Arc<Shared>,
    agents: Vec<Arc<Agent>>,
    devices: Vec<SnmpSimDeviceInfo>,
    by_id: HashMap<String, usize>,
    handles: Vec<JoinHandle<()>>,
    community: String,
    write_community: String,
    v3_user: Option<SnmpV3User>,
}

impl fmt::Debug for SnmpSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnmpSim")
            .field("agents", &self.devices.len())
            .finish_non_exhaustive()
    }
}

impl SnmpSim {
    /// Bind every agent's socket and start one task per agent.
    pub async fn start(cfg: SnmpSimConfig) -> io::Result<SnmpSim> {
        let view = View::build(cfg.interfaces)?;
        let faults = assign_faults(cfg.count, &cfg.faults);
        let user = cfg.v3_user.as_ref().map(|u| UsmUser {
            name: u.name.clone(),
            auth: Some(u.auth.clone()),
            privacy: u.privacy.clone(),
        });
        let shared = Arc::new(Shared {
            view,
            sys_object_id: oid(&SYS_OBJECT_ID)?,
            interfaces: cfg.interfaces,
            community: cfg.community.as_bytes().to_vec(),
            write_community: cfg.write_community.as_bytes().to_vec(),
            start: Instant::now(),
            requests: AtomicU64::new(0),
        });
        // Built incrementally so a failure part-way stops what started.
        let mut sim = SnmpSim {
            shared: shared.clone(),
            agents: Vec::with_capacity(cfg.count),
            devices: Vec::with_capacity(cfg.count),
            by_id: HashMap::with_capacity(cfg.count),
            handles: Vec::with_capacity(cfg.count),
            community: cfg.community.clone(),
            write_community: cfg.write_community.clone(),
            v3_user: cfg.v3_user.clone(),
        };
        for (i, fault) in faults.into_iter().enumerate() {
            let index = cfg.first_index + i;
            let id = format!("{}{:0w$}", cfg.id_prefix, index, w = cfg.id_width);
            let port = if cfg.base_port == 0 {
                0
            } else {
                u16::try_from(usize::from(cfg.base_port) + i).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "agent port beyond 65535")
                })?
            };
            let sock = Arc::new(UdpSocket::bind(SocketAddr::new(cfg.bind, port)).await?);
            let addr = sock.local_addr()?;
            let engine_id = engine_id(index);
            let keys = match &user {
                Some(u) => Some(
                    LocalizedKeys::derive(u, &engine_id)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?,
                ),
                None => None,
            };
            let agent = Arc::new(Agent {
                index,
                id: id.clone(),
                engine_id,
                keys,
                fault: Mutex::new(fault),
                state: Mutex::new(AgentState::default()),
                rng: Mutex::new(StdRng::seed_from_u64(
                    cfg.faults.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                )),
                salt: AtomicU64::new(rand::random::<u64>()),
                answered: AtomicU64::new(0),
                reports: AtomicU32::new(0),
            });
            sim.handles
                .push(tokio::spawn(run_agent(sock, shared.clone(), agent.clone())));
            sim.by_id.insert(id.clone(), i);
            sim.agents.push(agent);
            sim.devices.push(SnmpSimDeviceInfo { id, addr });
        }
        tracing::info!(agents = cfg.count, "SNMP simulator started");
        Ok(sim)
    }

    pub fn devices(&self) -> &[SnmpSimDeviceInfo] {
        &self.devices
    }

    fn agent(&self, id: &str) -> Option<&Agent> {
        self.by_id
            .get(id)
            .and_then(|&i| self.agents.get(i))
            .map(|a| a.as_ref())
    }

    pub fn fault(&self, id: &str) -> Option<SnmpFault> {
        self.agent(id).map(|a| *lock(&a.fault))
    }

    pub fn set_fault(&self, id: &str, f: SnmpFault) -> bool {
        match self.agent(id) {
            Some(a) => {
                *lock(&a.fault) = f;
                true
            }
            None => false,
        }
    }

    /// Current value of a named object instance as text, e.g.
    /// "sysContact.0", "sysLocation.0", "ifAlias.3" (strings and numbers).
    pub fn get_text(&self, id: &str, name: &str) -> Option<String> {
        let agent = self.agent(id)?;
        let (object, instance) = name.split_once('.')?;
        let (_, base) = NAMES.iter().find(|(n, _)| *n == object)?;
        let mut arcs = base.to_vec();
        for a in instance.split('.') {
            arcs.push(a.parse().ok()?);
        }
        let o = Oid::from_arcs(arcs).ok()?;
        let obj = self.shared.view.find(&o)?;
        let st = lock(&agent.state);
        match self.shared.value(agent, &st, obj) {
            SnmpValue::OctetString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            SnmpValue::Integer(v) => Some(v.to_string()),
            SnmpValue::Counter32(v) | SnmpValue::Gauge32(v) | SnmpValue::TimeTicks(v) => {
                Some(v.to_string())
            }
            SnmpValue::Counter64(v) => Some(v.to_string()),
            _ => None,
        }
    }

    /// Datagrams received by all agents (including dropped ones).
    pub fn requests_total(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// One `[[device]]` table per agent for `version` "1", "2c" or "3".
    /// SNMPv1/v2c tables carry the write community (it can read too), so the
    /// proxy can exercise SET.
    pub fn inventory_toml(&self, version: &str) -> String {
        let mut out = String::new();
        for d in &self.devices {
            let _ = writeln!(out, "[[device]]");
            let _ = writeln!(out, "id = {}", toml_string(&d.id));
            let _ = writeln!(out, "proxytype = \"snmp\"");
            let _ = writeln!(out, "host = {}", toml_string(&d.addr.ip().to_string()));
            let _ = writeln!(out, "port = {}", d.addr.port());
            let _ = writeln!(out, "version = {}", toml_string(version));
            if version == "3" {
                if let Some(u) = &self.v3_user {
                    let _ = writeln!(out, "user = {}", toml_string(&u.name));
                    let _ = writeln!(out, "auth_protocol = \"{}\"", auth_name(&u.auth.0));
                    let _ = writeln!(out, "auth_password = {}", toml_string(&u.auth.1));
                    if let Some((p, pw)) = &u.privacy {
                        let _ = writeln!(out, "priv_protocol = \"{}\"", priv_name(p));
                        let _ = writeln!(out, "priv_password = {}", toml_string(pw));
                    }
                }
            } else {
                let _ = writeln!(out, "community = {}", toml_string(&self.write_community));
            }
            out.push('\n');
        }
        out
    }

    /// The read-only community (for tests and tools).
    pub fn read_community(&self) -> &str {
        &self.community
    }

    /// Stop every agent and wait until its socket is closed.
    pub async fn shutdown(mut self) {
        let handles = std::mem::take(&mut self.handles);
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
    }
}

impl Drop for SnmpSim {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::snmp::{SnmpClient, SnmpTarget, SnmpTransport};

    fn cfg(count: usize, interfaces: usize) -> SnmpSimConfig {
        SnmpSimConfig {
            count,
            interfaces,
            ..Default::default()
        }
    }

    fn o(s: &str) -> Oid {
        s.parse().unwrap()
    }

    fn client(
        t: &SnmpTransport,
        addr: SocketAddr,
        version: SnmpVersion,
        community: &str,
        user: Option<UsmUser>,
        timeout_ms: u64,
    ) -> SnmpClient {
        SnmpClient::new(
            SnmpTarget {
                addr,
                version,
                community: community.into(),
                user,
                timeout: Duration::from_millis(timeout_ms),
                retries: 1,
            },
            t.clone(),
        )
    }

    fn v3_user(auth: &str) -> UsmUser {
        UsmUser {
            name: "drover".into(),
            auth: Some((AuthProtocol::Sha1, auth.into())),
            privacy: Some((PrivProtocol::Aes128, "drover-priv-pass".into())),
        }
    }

    fn bytes(vb: &VarBind) -> Vec<u8> {
        match &vb.value {
            SnmpValue::OctetString(b) => b.clone(),
            v => panic!("not a string: {v:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn v2c_get_and_exceptions() {
        let sim = SnmpSim::start(cfg(3, 4)).await.unwrap();
        let t = SnmpTransport::new(1).unwrap();
        let d = &sim.devices()[1];
        assert_eq!(d.id, "sw-0002");
        let c = client(&t, d.addr, SnmpVersion::V2c, "public", None, 1000);
        let vbs = c
            .get(&[o("1.3.6.1.2.1.1.5.0"), o("1.3.6.1.2.1.1.5.1"), o("1.3.9")])
            .await
            .unwrap();
        assert_eq!(bytes(&vbs[0]), b"sw-0002");
        assert_eq!(vbs[1].value, SnmpValue::NoSuchInstance);
        assert_eq!(vbs[2].value, SnmpValue::NoSuchObject);
        let next = c.get_next(&[o("1.3.6.1.2.1.31.1.1.1.18.4")]).await.unwrap();
        assert_eq!(next[0].value, SnmpValue::EndOfMibView);
        // Unknown community: no answer.
        let bad = client(&t, d.addr, SnmpVersion::V2c, "nope", None, 200);
        assert!(matches!(
            bad.get(&[o("1.3.6.1.2.1.1.5.0")]).await,
            Err(SnmpError::Timeout)
        ));
        assert!(sim.requests_total() >= 4);
        sim.shutdown().await;
    }

    fn is_counter(v: &SnmpValue) -> bool {
        matches!(
            v,
            SnmpValue::Counter32(_) | SnmpValue::Counter64(_) | SnmpValue::TimeTicks(_)
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn walk_and_bulkwalk_agree() {
        let sim = SnmpSim::start(cfg(1, 24)).await.unwrap();
        let t = SnmpTransport::new(1).unwrap();
        let c = client(
            &t,
            sim.devices()[0].addr,
            SnmpVersion::V2c,
            "public",
            None,
            1000,
        );
        let root = o("1.3.6.1.2.1");
        let walk = c.walk(&root).await.unwrap();
        assert_eq!(walk.len(), 7 + 1 + 13 * 24 + 5 * 24);
        for w in walk.windows(2) {
            assert!(w[0].oid < w[1].oid, "{} !< {}", w[0].oid, w[1].oid);
        }
        for prefix in ["1.3.6.1.2.1.1", "1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1"] {
            assert!(
                walk.iter().any(|vb| vb.oid.starts_with(&o(prefix))),
                "{prefix}"
            );
        }
        let bulk = c.bulkwalk(&root).await.unwrap();
        assert_eq!(bulk.len(), walk.len());
        for (a, b) in walk.iter().zip(&bulk) {
            assert_eq!(a.oid, b.oid);
            if is_counter(&a.value) {
                assert_eq!(a.value.type_name(), b.value.type_name());
            } else {
                assert_eq!(a.value, b.value, "{}", a.oid);
            }
        }
        // GETBULK answers stay under ~1400 bytes.
        let vbs = c
            .get_bulk(std::slice::from_ref(&root), 0, 500)
            .await
            .unwrap();
        assert!(vbs.len() > 10);
        let size = encode_message(&Message::Community(CommunityMessage {
            version: SnmpVersion::V2c,
            community: b"public".to_vec(),
            pdu: Pdu::new(PduType::Response, 1, vbs),
        }))
        .len();
        assert!(size < 1400, "{size}");
        sim.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn set_semantics() {
        let sim = SnmpSim::start(cfg(2, 4)).await.unwrap();
        let t = SnmpTransport::new(1).unwrap();
        let d = sim.devices()[0].clone();
        let w = client(&t, d.addr, SnmpVersion::V2c, "private", None, 1000);
        let s = |x: &str| SnmpValue::OctetString(x.as_bytes().to_vec());
        w.set(&[VarBind::new(o("1.3.6.1.2.1.1.4.0"), s("ops@example.net"))])
            .await
            .unwrap();
        assert_eq!(
            sim.get_text(&d.id, "sysContact.0").as_deref(),
            Some("ops@example.net")
        );
        w.set(&[
            VarBind::new(o("1.3.6.1.2.1.31.1.1.1.18.3"), s("uplink")),
            VarBind::new(o("1.3.6.1.2.1.2.2.1.7.2"), SnmpValue::Integer(2)),
        ])
        .await
        .unwrap();
        assert_eq!(sim.get_text(&d.id, "ifAlias.3").as_deref(), Some("uplink"));
        assert_eq!(sim.get_text(&d.id, "ifOperStatus.2").as_deref(), Some("2"));
        assert_eq!(sim.get_text(&d.id, "ifOperStatus.1").as_deref(), Some("1"));
        // The other agent is untouched.
        assert_ne!(
            sim.get_text(&sim.devices()[1].id, "sysContact.0")
                .as_deref(),
            Some("ops@example.net")
        );
        // Read-only object: notWritable, not a device failure.
        let e = w
            .set(&[VarBind::new(o("1.3.6.1.2.1.1.1.0"), s("x"))])
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                SnmpError::Protocol {
                    status: 17,
                    index: 1
                }
            ),
            "{e}"
        );
        assert!(!e.is_device_failure());
        // Wrong type, and all-or-nothing.
        let e = w
            .set(&[
                VarBind::new(o("1.3.6.1.2.1.1.6.0"), s("moved")),
                VarBind::new(o("1.3.6.1.2.1.2.2.1.7.1"), s("down")),
            ])
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                SnmpError::Protocol {
                    status: 7,
                    index: 2
                }
            ),
            "{e}"
        );
        assert_ne!(
            sim.get_text(&d.id, "sysLocation.0").as_deref(),
            Some("moved")
        );
        let e = w
            .set(&[VarBind::new(
                o("1.3.6.1.2.1.2.2.1.7.1"),
                SnmpValue::Integer(3),
            )])
            .await
            .unwrap_err();
        assert!(matches!(e, SnmpError::Protocol { status: 10, .. }), "{e}");
        // Read community may not SET.
        let r = client(&t, d.addr, SnmpVersion::V2c, "public", None, 1000);
        let e = r
            .set(&[VarBind::new(o("1.3.6.1.2.1.1.4.0"), s("x"))])
            .await
            .unwrap_err();
        assert!(matches!(e, SnmpError::Protocol { status: 6, .. }), "{e}");
        // v1 maps the errors.
        let v1 = client(&t, d.addr, SnmpVersion::V1, "private", None, 1000);
        let e = v1
            .set(&[VarBind::new(o("1.3.6.1.2.1.1.1.0"), s("x"))])
            .await
            .unwrap_err();
        assert!(matches!(e, SnmpError::Protocol { status: 2, .. }), "{e}");
        let e = v1
            .set(&[VarBind::new(o("1.3.6.1.2.1.1.4.0"), SnmpValue::Integer(1))])
            .await
            .unwrap_err();
        assert!(matches!(e, SnmpError::Protocol { status: 3, .. }), "{e}");
        sim.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn v1_get_walk_and_missing() {
        let sim = SnmpSim::start(cfg(1, 2)).await.unwrap();
        let t = SnmpTransport::new(1).unwrap();
        let c = client(
            &t,
            sim.devices()[0].addr,
            SnmpVersion::V1,
            "public",
            None,
            1000,
        );
        let vbs = c.get(&[o("1.3.6.1.2.1.1.5.0")]).await.unwrap();
        assert_eq!(bytes(&vbs[0]), b"sw-0001");
        let e = c
            .get(&[o("1.3.6.1.2.1.1.5.0"), o("1.3.6.1.2.1.1.99.0")])
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                SnmpError::Protocol {
                    status: 2,
                    index: 2
                }
            ),
            "{e}"
        );
        let all = c.walk(&o("1.3.6.1")).await.unwrap();
        assert_eq!(all.len(), 8 + 13 * 2 + 5 * 2);
        sim.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn v3_auth_priv() {
        let sim = SnmpSim::start(cfg(2, 2)).await.unwrap();
        let t = SnmpTransport::new(1).unwrap();
        let d = sim.devices()[1].clone();
        let c = client(
            &t,
            d.addr,
            SnmpVersion::V3,
            "",
            Some(v3_user("drover-auth-pass")),
            1000,
        );
        let vbs = c.get(&[o("1.3.6.1.2.1.1.5.0")]).await.unwrap();
        assert_eq!(bytes(&vbs[0]), d.id.as_bytes());
        let s = SnmpValue::OctetString(b"v3 was here".to_vec());
        c.set(&[VarBind::new(o("1.3.6.1.2.1.1.6.0"), s)])
            .await
            .unwrap();
        assert_eq!(
            sim.get_text(&d.id, "sysLocation.0").as_deref(),
            Some("v3 was here")
        );
        assert_eq!(c.bulkwalk(&o("1.3.6.1.2.1.1")).await.unwrap().len(), 7);
        let bad = client(
            &t,
            d.addr,
            SnmpVersion::V3,
            "",
            Some(v3_user("wrong-password")),
            500,
        );
        let e = bad.get(&[o("1.3.6.1.2.1.1.5.0")]).await.unwrap_err();
        assert!(matches!(e, SnmpError::Report("wrongDigest")), "{e}");
        sim.shutdown().await;
    }

    /// A raw request with a stale engine time gets a signed notInTimeWindow
    /// report; an empty engine id gets unknownEngineID with ours.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn v3_reports() {
        let sim = SnmpSim::start(cfg(1, 1)).await.unwrap();
        let addr = sim.devices()[0].addr;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ask = |bytes: Vec<u8>| {
            let sock = &sock;
            async move {
                sock.send_to(&bytes, addr).await.unwrap();
                let mut buf = vec![0u8; 4096];
                let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                buf.truncate(n);
                buf
            }
        };
        let msg = |engine: Vec<u8>, time: u32, flags: u8| V3Message {
            msg_id: 77,
            max_size: 1472,
            flags: flags | FLAG_REPORTABLE,
            security_model: 3,
            usm: UsmSecurityParameters {
                engine_id: engine.clone(),
                engine_boots: 1,
                engine_time: time,
                user_name: b"drover".to_vec(),
                auth_params: Vec::new(),
                priv_params: Vec::new(),
            },
            data: ScopedPduData::Plain(ScopedPdu {
                context_engine_id: engine,
                context_name: Vec::new(),
                pdu: Pdu::new(PduType::Get, 5, vec![VarBind::null(o("1.3.6.1.2.1.1.5.0"))]),
            }),
        };
        let reply = ask(encode_message(&Message::V3(msg(Vec::new(), 0, 0)))).await;
        let Ok(Message::V3(r)) = decode_message(&reply) else {
            panic!("not v3")
        };
        assert_eq!(r.usm.engine_id, engine_id(1));
        assert_eq!(r.msg_id, 77);
        let p = usm::scoped(&r).unwrap();
        assert_eq!(usm::report_kind(&p.pdu.varbinds), "unknownEngineID");

        let keys = LocalizedKeys::derive(&v3_user("drover-auth-pass"), &engine_id(1)).unwrap();
        let stale = msg(engine_id(1), 100_000, FLAG_AUTH | FLAG_PRIV);
        let reply = ask(usm::encode_secured(&stale, &keys, 9).unwrap()).await;
        let r = usm::open(&reply, &keys).unwrap();
        assert_ne!(r.flags & FLAG_AUTH, 0);
        let p = usm::scoped(&r).unwrap();
        assert_eq!(usm::report_kind(&p.pdu.varbinds), "notInTimeWindow");
        assert_eq!(p.pdu.request_id, 0);
        sim.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faults() {
        let sim = SnmpSim::start(cfg(4, 2)).await.unwrap();
        let t = SnmpTransport::new(1).unwrap();
        let ids: Vec<String> = sim.devices().iter().map(|d| d.id.clone()).collect();
        assert_eq!(sim.fault(&ids[0]), Some(SnmpFault::None));
        assert!(sim.set_fault(&ids[0], SnmpFault::Down));
        assert!(sim.set_fault(&ids[1], SnmpFault::Drop(1.0)));
        assert!(sim.set_fault(&ids[2], SnmpFault::Malformed));
        assert!(sim.set_fault(&ids[3], SnmpFault::Slow(Duration::from_millis(300))));
        assert!(!sim.set_fault("nope", SnmpFault::Down));
        assert_eq!(sim.fault("nope"), None);
        let sys_name = [o("1.3.6.1.2.1.1.5.0")];
        let c = |i: usize, ms: u64| {
            client(
                &t,
                sim.devices()[i].addr,
                SnmpVersion::V2c,
                "public",
                None,
                ms,
            )
        };
        assert!(matches!(
            c(0, 200).get(&sys_name).await,
            Err(SnmpError::Timeout)
        ));
        assert!(matches!(
            c(1, 200).get(&sys_name).await,
            Err(SnmpError::Timeout)
        ));
        let e = c(2, 300).get(&sys_name).await.unwrap_err();
        assert!(e.is_device_failure(), "{e}");
        let v3 = client(
            &t,
            sim.devices()[2].addr,
            SnmpVersion::V3,
            "",
            Some(v3_user("drover-auth-pass")),
            300,
        );
        assert!(v3.get(&sys_name).await.is_err());
        let start = std::time::Instant::now();
        c(3, 2000).get(&sys_name).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        // Recovery.
        assert!(sim.set_fault(&ids[2], SnmpFault::None));
        let vbs = c(2, 1000).get(&sys_name).await.unwrap();
        assert_eq!(bytes(&vbs[0]), ids[2].as_bytes());
        sim.shutdown().await;
    }

    #[test]
    fn fault_assignment_is_seeded_and_disjoint() {
        let rates = SnmpFaultRates {
            down: 0.1,
            slow: 0.2,
            drop: 0.1,
            malformed: 0.05,
            seed: 42,
            ..Default::default()
        };
        let a = assign_faults(100, &rates);
        assert_eq!(a, assign_faults(100, &rates));
        let count = |f: fn(&SnmpFault) -> bool| a.iter().filter(|x| f(x)).count();
        assert_eq!(count(|f| *f == SnmpFault::Down), 10);
        assert_eq!(count(|f| matches!(f, SnmpFault::Slow(_))), 20);
        assert_eq!(count(|f| *f == SnmpFault::Drop(0.5)), 10);
        assert_eq!(count(|f| *f == SnmpFault::Malformed), 5);
        assert_eq!(count(|f| *f == SnmpFault::None), 55);
        let other = assign_faults(100, &SnmpFaultRates { seed: 7, ..rates });
        assert_ne!(a, other);
        let all = assign_faults(
            10,
            &SnmpFaultRates {
                down: 0.8,
                slow: 0.8,
                ..Default::default()
            },
        );
        assert_eq!(all.iter().filter(|f| **f == SnmpFault::Down).count(), 8);
        assert_eq!(
            all.iter()
                .filter(|f| matches!(f, SnmpFault::Slow(_)))
                .count(),
            2
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_agents() {
        let sim = SnmpSim::start(cfg(1000, 8)).await.unwrap();
        let mut ports: Vec<u16> = sim.devices().iter().map(|d| d.addr.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 1000);
        assert_eq!(sim.devices()[999].id, "sw-1000");
        let t = SnmpTransport::new(2).unwrap();
        for i in [0, 499, 999] {
            let d = &sim.devices()[i];
            let c = client(&t, d.addr, SnmpVersion::V2c, "public", None, 1000);
            let vbs = c.get(&[o("1.3.6.1.2.1.1.5.0")]).await.unwrap();
            assert_eq!(bytes(&vbs[0]), d.id.as_bytes());
        }
        let first = sim.devices()[0].addr;
        sim.shutdown().await;
        // The sockets are closed: the port can be bound again.
        std::net::UdpSocket::bind(first).unwrap();
    }

    #[test]
    fn inventory_and_debug() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let sim = SnmpSim::start(cfg(2, 1)).await.unwrap();
            let v2 = sim.inventory_toml("2c");
            assert_eq!(v2.matches("[[device]]").count(), 2);
            assert!(v2.contains("id = \"sw-0002\""));
            assert!(v2.contains("proxytype = \"snmp\""));
            assert!(v2.contains("host = \"127.0.0.1\""));
            assert!(v2.contains(&format!("port = {}", sim.devices()[0].addr.port())));
            assert!(v2.contains("version = \"2c\""));
            assert!(v2.contains("community = \"private\""));
            let v3 = sim.inventory_toml("3");
            for line in [
                "user = \"drover\"",
                "auth_protocol = \"SHA\"",
                "auth_password = \"drover-auth-pass\"",
                "priv_protocol = \"AES\"",
                "priv_password = \"drover-priv-pass\"",
            ] {
                assert!(v3.contains(line), "{line}");
            }
            assert!(!v3.contains("community"));
            sim.shutdown().await;
        });
        let dbg = format!("{:?}", SnmpSimConfig::default());
        assert!(!dbg.contains("drover-auth-pass") && !dbg.contains("drover-priv-pass"));
        assert!(!dbg.contains("public") && !dbg.contains("private"));
    }

    async fn snmpwalk(args: &[&str]) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let out = tokio::process::Command::new("snmpwalk")
            .args(args)
            .env("SNMP_PERSISTENT_DIR", dir.path())
            .env("HOME", dir.path())
            .env("SNMPCONFPATH", dir.path())
            .output()
            .await
            .ok()?;
        Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn net_snmp_snmpwalk() {
        let sim = SnmpSim::start(cfg(2, 2)).await.unwrap();
        let d = sim.devices()[1].clone();
        let target = format!("127.0.0.1:{}", d.addr.port());
        let v2 = ["-v2c", "-c", "public", "-On", "-t", "2", "-r", "1"];
        let v3 = [
            "-v3",
            "-l",
            "authPriv",
            "-u",
            "drover",
            "-a",
            "SHA",
            "-A",
            "drover-auth-pass",
            "-x",
            "AES",
            "-X",
            "drover-priv-pass",
            "-On",
            "-t",
            "2",
            "-r",
            "1",
        ];
        for args in [&v2[..], &v3[..]] {
            let mut a = args.to_vec();
            a.push(&target);
            a.push("1.3.6.1.2.1.1");
            let Some(out) = snmpwalk(&a).await else {
                eprintln!("snmpwalk not installed; skipping");
                return;
            };
            let line = out
                .lines()
                .find(|l| l.starts_with(".1.3.6.1.2.1.1.5.0 = "))
                .unwrap_or_else(|| panic!("no sysName line in:\n{out}"));
            assert!(line.contains("STRING") && line.contains(&d.id), "{line}");
            assert_eq!(
                out.lines()
                    .filter(|l| l.starts_with(".1.3.6.1.2.1.1."))
                    .count(),
                7,
                "{out}"
            );
        }
        sim.shutdown().await;
    }
}
