//! One NETCONF session on a simulated device, without the SSH around it: the hello
//! exchange (and the switch to chunked framing when both sides speak base:1.1), RPC
//! dispatch to the device's [`Datastore`], `<rpc-reply>` and `<rpc-error>` text.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::datastore::{system_state, Datastore, ErrorType, Op, RpcError, Store};
use super::xml::{parse, Element, XmlError, NC_NS};
use crate::drivers::netconf::framing::{Decoder, Framing, FramingError};

pub const BASE_10: &str = "urn:ietf:params:netconf:base:1.0";
pub const BASE_11: &str = "urn:ietf:params:netconf:base:1.1";

/// What the simulated devices advertise (candidate-based, like Junos).
pub const CAPABILITIES: &[&str] = &[
    BASE_10,
    BASE_11,
    "urn:ietf:params:netconf:capability:candidate:1.0",
    "urn:ietf:params:netconf:capability:confirmed-commit:1.1",
    "urn:ietf:params:netconf:capability:validate:1.1",
    "urn:ietf:params:xml:ns:yang:ietf-system?module=ietf-system&revision=2014-08-06",
    "urn:ietf:params:xml:ns:yang:ietf-interfaces?module=ietf-interfaces&revision=2018-02-20",
];

pub const OS_NAME: &str = "Drover-sim";

/// Interfaces in each device's seed configuration.
pub const SEED_INTERFACES: usize = 4;

/// One simulated device's configuration, created on the first operation that changes
/// it (locks included): until then reads are answered from the seed, so a fleet that
/// is only read keeps no datastore at all.
pub struct DeviceState {
    pub id: Box<str>,
    store: Mutex<Option<Datastore>>,
}

impl DeviceState {
    pub fn new(id: &str) -> DeviceState {
        DeviceState {
            id: id.into(),
            store: Mutex::new(None),
        }
    }

    /// The device's datastore, seeded on first use and with an expired confirmed
    /// commit rolled back.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Datastore) -> T) -> T {
        let mut g: MutexGuard<'_, Option<Datastore>> =
            self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let ds = g.get_or_insert_with(|| Datastore::seeded(&self.id, SEED_INTERFACES));
        ds.expire(Instant::now());
        f(ds)
    }

    /// Reads the datastore, or the seed while the device has none.
    pub fn read<T>(&self, f: impl FnOnce(&Datastore) -> T) -> T {
        let mut g = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        match g.as_mut() {
            Some(ds) => {
                ds.expire(Instant::now());
                f(ds)
            }
            None => {
                drop(g);
                f(&Datastore::seeded(&self.id, SEED_INTERFACES))
            }
        }
    }

    #[cfg(test)]
    pub fn materialized(&self) -> bool {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// A session ended: releases what it held, if the datastore exists.
    fn release(&self, session: u32) {
        let mut g = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ds) = g.as_mut() {
            ds.release(session);
        }
    }
}

/// Why a session ends abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("framing error")]
    Framing(#[source] FramingError),
    #[error("unparseable hello")]
    Hello(#[source] XmlError),
    #[error("bad hello: {0}")]
    BadHello(&'static str),
}

/// What the session layer asks the transport to do with one incoming message.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The reply document (unframed), if any.
    pub reply: Option<String>,
    /// The `message-id` of the RPC answered (for faults that forge a reply).
    pub message_id: Option<String>,
    /// The client asked to close the session (the reply is sent first).
    pub close: bool,
}

/// The protocol state of one session.
pub struct Session {
    pub id: u32,
    dev: Arc<DeviceState>,
    decoder: Decoder,
    framing: Framing,
    hello_seen: bool,
}

impl Session {
    pub fn new(id: u32, dev: Arc<DeviceState>, max_message: usize) -> Session {
        Session {
            id,
            dev,
            decoder: Decoder::new(Framing::EndOfMessage, max_message),
            framing: Framing::EndOfMessage,
            hello_seen: false,
        }
    }

    /// The framing of the messages this session sends now.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The server's `<hello>` (unframed; always end-of-message framed on the wire).
    pub fn hello(&self) -> String {
        let mut s = String::with_capacity(768);
        let _ = write!(s, "<hello xmlns=\"{NC_NS}\"><capabilities>");
        for c in CAPABILITIES {
            let _ = write!(
                s,
                "<capability>{}</capability>",
                quick_xml::escape::escape(*c)
            );
        }
        let _ = write!(
            s,
            "</capabilities><session-id>{}</session-id></hello>",
            self.id
        );
        s
    }

    pub fn push(&mut self, data: &[u8]) -> Result<(), SessionError> {
        self.decoder.extend(data).map_err(SessionError::Framing)
    }

    /// Handles the next complete message in the buffer; None when none is complete.
    pub fn next(&mut self) -> Result<Option<Outcome>, SessionError> {
        let Some(msg) = self.decoder.next_message().map_err(SessionError::Framing)? else {
            return Ok(None);
        };
        if !self.hello_seen {
            self.client_hello(&msg)?;
            return Ok(Some(Outcome {
                reply: None,
                message_id: None,
                close: false,
            }));
        }
        Ok(Some(self.rpc(&msg)))
    }

    fn client_hello(&mut self, msg: &[u8]) -> Result<(), SessionError> {
        let hello = parse(msg).map_err(SessionError::Hello)?;
        if !hello.is("hello", NC_NS) {
            return Err(SessionError::BadHello("the first message is not a hello"));
        }
        if hello.child("session-id").is_some() {
            return Err(SessionError::BadHello("a client hello has no session-id"));
        }
        let caps: Vec<String> = hello
            .child("capabilities")
            .map(|c| c.elements().filter_map(Element::text).collect())
            .unwrap_or_default();
        let has = |c: &str| caps.iter().any(|x| x.trim() == c);
        if has(BASE_11) {
            self.framing = Framing::Chunked;
            self.decoder.set_framing(Framing::Chunked);
        } else if !has(BASE_10) {
            return Err(SessionError::BadHello("no common base capability"));
        }
        self.hello_seen = true;
        tracing::debug!(device = %self.dev.id, session = self.id, framing = ?self.framing, "NETCONF hello");
        Ok(())
    }

    fn rpc(&mut self, msg: &[u8]) -> Outcome {
        let rpc = match parse(msg) {
            Ok(r) => r,
            Err(e) => {
                return Outcome {
                    reply: Some(error_reply(
                        None,
                        &[RpcError::new(
                            ErrorType::Rpc,
                            "malformed-message",
                            e.to_string(),
                        )],
                    )),
                    message_id: None,
                    close: false,
                }
            }
        };
        let message_id = rpc.attr("message-id", None).map(str::to_owned);
        if !rpc.is("rpc", NC_NS) {
            let e = RpcError::new(ErrorType::Rpc, "unknown-element", "expected <rpc>")
                .element(&rpc.name);
            return Outcome {
                reply: Some(error_reply(None, &[e])),
                message_id,
                close: false,
            };
        }
        let Some(id) = message_id.as_deref() else {
            let e = RpcError::new(
                ErrorType::Rpc,
                "missing-attribute",
                "rpc without message-id",
            )
            .element("rpc");
            return Outcome {
                reply: Some(error_reply(None, &[e])),
                message_id,
                close: false,
            };
        };
        let mut close = false;
        let result = match rpc.elements().next() {
            None => Err(RpcError::new(
                ErrorType::Rpc,
                "missing-element",
                "empty rpc",
            )),
            Some(op) => self.dispatch(op, &mut close),
        };
        let reply = match result {
            Ok(Body::Ok) => ok_reply(id),
            Ok(Body::Data(d)) => data_reply(id, &d),
            Err(e) => {
                tracing::debug!(device = %self.dev.id, session = self.id, tag = e.tag, "rpc-error");
                error_reply(Some(id), &[e])
            }
        };
        Outcome {
            reply: Some(reply),
            message_id,
            close,
        }
    }

    fn dispatch(&mut self, op: &Element, close: &mut bool) -> Result<Body, RpcError> {
        if op.ns.as_deref() != Some(NC_NS) {
            return Err(RpcError::new(
                ErrorType::Protocol,
                "operation-not-supported",
                format!("unknown operation {}", op.name),
            )
            .element(&op.name));
        }
        let sid = self.id;
        let filter = op.child("filter");
        match &*op.name {
            "get" => {
                let state = system_state(OS_NAME, env!("CARGO_PKG_VERSION"), &self.dev.id);
                self.dev.read(|ds| ds.get(filter, &state)).map(Body::Data)
            }
            "get-config" => {
                let source = Store::from_param(op.child("source"))?;
                self.dev
                    .read(|ds| ds.get_config(source, filter))
                    .map(Body::Data)
            }
            "edit-config" => {
                let target = Store::from_param(op.child("target"))?;
                let default = match op.child("default-operation").and_then(Element::text) {
                    None => Op::Merge,
                    Some(s) => match Op::parse(&s) {
                        Some(o @ (Op::Merge | Op::Replace | Op::None)) => o,
                        _ => {
                            return Err(RpcError::new(
                                ErrorType::Protocol,
                                "invalid-value",
                                format!("bad default-operation {s:?}"),
                            )
                            .element("default-operation"))
                        }
                    },
                };
                let test_only = match op.child("test-option").and_then(Element::text).as_deref() {
                    None | Some("test-then-set") | Some("set") => false,
                    Some("test-only") => true,
                    Some(other) => {
                        return Err(RpcError::new(
                            ErrorType::Protocol,
                            "invalid-value",
                            format!("bad test-option {other:?}"),
                        )
                        .element("test-option"))
                    }
                };
                let Some(config) = op.child("config") else {
                    return Err(RpcError::new(
                        ErrorType::Protocol,
                        "missing-element",
                        "edit-config needs <config> (url is not supported)",
                    )
                    .element("config"));
                };
                self.dev.with_store(|ds| {
                    if test_only {
                        // Validated on a throwaway copy of the candidate.
                        ds.clone().edit_config(sid, target, default, config)
                    } else {
                        ds.edit_config(sid, target, default, config)
                    }
                })?;
                Ok(Body::Ok)
            }
            "lock" | "unlock" => {
                let target = Store::from_param(op.child("target"))?;
                self.dev.with_store(|ds| {
                    if &*op.name == "lock" {
                        ds.lock(sid, target)
                    } else {
                        ds.unlock(sid, target)
                    }
                })?;
                Ok(Body::Ok)
            }
            "commit" => {
                let confirmed = if op.child("confirmed").is_some() {
                    let t = match op.child("confirm-timeout").and_then(Element::text) {
                        None => super::datastore::DEFAULT_CONFIRM_TIMEOUT,
                        Some(s) => match s.trim().parse::<u32>() {
                            Ok(n) if n > 0 => Duration::from_secs(u64::from(n)),
                            _ => {
                                return Err(RpcError::new(
                                    ErrorType::Protocol,
                                    "invalid-value",
                                    format!("bad confirm-timeout {s:?}"),
                                )
                                .element("confirm-timeout"))
                            }
                        },
                    };
                    Some(t)
                } else {
                    None
                };
                self.dev
                    .with_store(|ds| ds.commit(sid, confirmed, Instant::now()))?;
                Ok(Body::Ok)
            }
            "cancel-commit" => {
                self.dev.with_store(|ds| ds.cancel_commit(sid))?;
                Ok(Body::Ok)
            }
            "discard-changes" => {
                self.dev.with_store(|ds| ds.discard_changes(sid))?;
                Ok(Body::Ok)
            }
            "validate" => {
                let Some(source) = op.child("source") else {
                    return Err(RpcError::new(
                        ErrorType::Protocol,
                        "missing-element",
                        "validate needs <source>",
                    )
                    .element("source"));
                };
                if source.child("config").is_none() {
                    Store::from_param(Some(source))?;
                }
                Ok(Body::Ok)
            }
            "close-session" => {
                *close = true;
                Ok(Body::Ok)
            }
            other => Err(RpcError::new(
                ErrorType::Protocol,
                "operation-not-supported",
                format!("{other} is not supported by the simulator"),
            )
            .element(other)),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.dev.release(self.id);
    }
}

enum Body {
    Ok,
    Data(Element),
}

fn reply_open(out: &mut String, message_id: Option<&str>) {
    let _ = write!(out, "<rpc-reply xmlns=\"{NC_NS}\"");
    if let Some(id) = message_id {
        let _ = write!(out, " message-id=\"{}\"", quick_xml::escape::escape(id));
    }
    out.push('>');
}

pub fn ok_reply(message_id: &str) -> String {
    let mut s = String::with_capacity(128);
    reply_open(&mut s, Some(message_id));
    s.push_str("<ok/></rpc-reply>");
    s
}

pub fn data_reply(message_id: &str, data: &Element) -> String {
    let mut s = String::with_capacity(1024);
    reply_open(&mut s, Some(message_id));
    s.push_str("<data>");
    for c in data.elements() {
        c.write(&mut s, Some(NC_NS));
    }
    s.push_str("</data></rpc-reply>");
    s
}

pub fn error_reply(message_id: Option<&str>, errors: &[RpcError]) -> String {
    let mut s = String::with_capacity(512);
    reply_open(&mut s, message_id);
    for e in errors {
        e.write(&mut s);
    }
    s.push_str("</rpc-reply>");
    s
}
