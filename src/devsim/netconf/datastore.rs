//! One simulated device's configuration: `running` and `candidate` trees, their locks,
//! edit-config (merge, replace, create, delete, remove; default-operation), subtree
//! filters, commit (optionally confirmed), discard-changes, and the RFC 6241 errors.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::xml::{Element, Node, NC_NS};

pub const SYSTEM_NS: &str = "urn:ietf:params:xml:ns:yang:ietf-system";
pub const IF_NS: &str = "urn:ietf:params:xml:ns:yang:ietf-interfaces";

/// Largest configuration a datastore accepts (rough heap bytes, see `Element::weight`).
pub const MAX_DATASTORE_BYTES: usize = 4 << 20;
/// `confirm-timeout` when a confirmed commit gives none (RFC 6241 8.4.5.1).
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(600);

/// The `error-type` of an `rpc-error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Protocol,
    Application,
    Rpc,
}

/// An `rpc-error` (RFC 6241 4.3), as the simulator reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub kind: ErrorType,
    /// The `error-tag`, e.g. "lock-denied", "data-missing".
    pub tag: &'static str,
    pub message: String,
    /// `error-info/session-id`: the lock holder.
    pub session_id: Option<u32>,
    /// `error-info/bad-element`.
    pub bad_element: Option<String>,
}

impl RpcError {
    pub fn new(kind: ErrorType, tag: &'static str, message: impl Into<String>) -> RpcError {
        RpcError {
            kind,
            tag,
            message: message.into(),
            session_id: None,
            bad_element: None,
        }
    }

    pub fn held_by(mut self, session: u32) -> RpcError {
        self.session_id = Some(session);
        self
    }

    pub fn element(mut self, name: &str) -> RpcError {
        self.bad_element = Some(name.to_owned());
        self
    }

    /// The `<rpc-error>` element's XML.
    pub fn write(&self, out: &mut String) {
        let kind = match self.kind {
            ErrorType::Protocol => "protocol",
            ErrorType::Application => "application",
            ErrorType::Rpc => "rpc",
        };
        let _ = write!(
            out,
            "<rpc-error><error-type>{kind}</error-type><error-tag>{}</error-tag>\
             <error-severity>error</error-severity><error-message xml:lang=\"en\">{}</error-message>",
            self.tag,
            quick_xml::escape::escape(self.message.as_str())
        );
        if self.session_id.is_some() || self.bad_element.is_some() {
            out.push_str("<error-info>");
            if let Some(s) = self.session_id {
                let _ = write!(out, "<session-id>{s}</session-id>");
            }
            if let Some(b) = &self.bad_element {
                let _ = write!(
                    out,
                    "<bad-element>{}</bad-element>",
                    quick_xml::escape::escape(b.as_str())
                );
            }
            out.push_str("</error-info>");
        }
        out.push_str("</rpc-error>");
    }
}

fn bad(tag: &'static str, message: impl Into<String>) -> RpcError {
    RpcError::new(ErrorType::Protocol, tag, message)
}

fn app(tag: &'static str, message: impl Into<String>) -> RpcError {
    RpcError::new(ErrorType::Application, tag, message)
}

/// A configuration datastore the simulator has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Running,
    Candidate,
}

impl Store {
    /// From the element naming it inside `<source>`/`<target>`.
    pub fn from_param(param: Option<&Element>) -> Result<Store, RpcError> {
        let Some(p) = param else {
            return Err(bad("missing-element", "source or target missing"));
        };
        match p.elements().next().map(|e| &*e.name) {
            Some("running") => Ok(Store::Running),
            Some("candidate") => Ok(Store::Candidate),
            Some(other) => {
                Err(bad("invalid-value", format!("no datastore {other}")).element(other))
            }
            None => Err(bad("missing-element", "no datastore named")),
        }
    }

    fn index(self) -> usize {
        match self {
            Store::Running => 0,
            Store::Candidate => 1,
        }
    }
}

/// edit-config operations (RFC 6241 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Merge,
    Replace,
    Create,
    Delete,
    Remove,
    /// Only as a default-operation: nothing unless an element says otherwise.
    None,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "merge" => Op::Merge,
            "replace" => Op::Replace,
            "create" => Op::Create,
            "delete" => Op::Delete,
            "remove" => Op::Remove,
            "none" => Op::None,
            _ => return None,
        })
    }
}

#[derive(Clone)]
struct Confirmed {
    rollback: Element,
    deadline: Instant,
    session: u32,
}

/// `running` and `candidate` of one device, with their locks.
#[derive(Clone)]
pub struct Datastore {
    running: Element,
    candidate: Element,
    /// The candidate differs from running since the last commit or discard.
    dirty: bool,
    locks: [Option<u32>; 2],
    confirmed: Option<Confirmed>,
}

/// The root that holds a datastore's top-level nodes.
fn root() -> Element {
    Element::new("data", Some(NC_NS))
}

impl Datastore {
    /// The seed configuration: ietf-system hostname and a few ietf-interfaces.
    pub fn seeded(hostname: &str, interfaces: usize) -> Datastore {
        let system = Element::new("system", Some(SYSTEM_NS))
            .with(Element::leaf("hostname", Some(SYSTEM_NS), hostname))
            .with(Element::leaf(
                "location",
                Some(SYSTEM_NS),
                "Drover simulated lab",
            ));
        let mut ifs = Element::new("interfaces", Some(IF_NS));
        for i in 0..interfaces {
            ifs = ifs.with(
                Element::new("interface", Some(IF_NS))
                    .with(Element::leaf("name", Some(IF_NS), &format!("ge-0/0/{i}")))
                    .with(Element::leaf(
                        "description",
                        Some(IF_NS),
                        &format!("port {i}"),
                    ))
                    .with(Element::leaf("type", Some(IF_NS), "ethernetCsmacd"))
                    .with(Element::leaf("enabled", Some(IF_NS), "true")),
            );
        }
        let running = root().with(system).with(ifs);
        Datastore {
            candidate: running.clone(),
            running,
            dirty: false,
            locks: [None, None],
            confirmed: None,
        }
    }

    pub fn running(&self) -> &Element {
        &self.running
    }

    pub fn candidate(&self) -> &Element {
        &self.candidate
    }

    fn store(&self, s: Store) -> &Element {
        match s {
            Store::Running => &self.running,
            Store::Candidate => &self.candidate,
        }
    }

    /// Rolls back a confirmed commit whose time is up (checked lazily, no timers).
    pub fn expire(&mut self, now: Instant) {
        if self.confirmed.as_ref().is_some_and(|c| now >= c.deadline) {
            self.rollback();
        }
    }

    fn rollback(&mut self) {
        if let Some(c) = self.confirmed.take() {
            tracing::debug!(session = c.session, "confirmed commit rolled back");
            self.running = c.rollback;
            if !self.dirty {
                self.candidate = self.running.clone();
            }
        }
    }

    #[cfg(test)]
    pub fn lock_holder(&self, s: Store) -> Option<u32> {
        self.locks[s.index()]
    }

    /// Errors unless `session` may change `s` (unlocked or locked by itself).
    fn may_write(&self, session: u32, s: Store) -> Result<(), RpcError> {
        match self.locks[s.index()] {
            Some(holder) if holder != session => Err(bad(
                "in-use",
                format!("the {s:?} datastore is locked by session {holder}").to_lowercase(),
            )
            .held_by(holder)),
            _ => Ok(()),
        }
    }

    /// `<get-config>`: the datastore through an optional subtree filter, as the children
    /// of `<data>`.
    pub fn get_config(&self, source: Store, filter: Option<&Element>) -> Result<Element, RpcError> {
        apply_filter(self.store(source), filter)
    }

    /// `<get>`: running plus the state data (`system-state`).
    pub fn get(&self, filter: Option<&Element>, state: &Element) -> Result<Element, RpcError> {
        let mut all = self.running.clone();
        all.children.push(Node::Element(state.clone()));
        apply_filter(&all, filter)
    }

    pub fn edit_config(
        &mut self,
        session: u32,
        target: Store,
        default: Op,
        config: &Element,
    ) -> Result<(), RpcError> {
        if target == Store::Running {
            return Err(bad(
                "operation-not-supported",
                "running is not writable: edit the candidate and commit",
            ));
        }
        self.may_write(session, target)?;
        let mut next = self.candidate.clone();
        if default == Op::Replace {
            next = root();
            for c in config.elements() {
                if let Some(m) = materialize(c)? {
                    next.children.push(Node::Element(m));
                }
            }
        } else {
            edit(&mut next, config, default)?;
        }
        if next.weight() > MAX_DATASTORE_BYTES {
            return Err(app("resource-denied", "the configuration is too large"));
        }
        if next != self.candidate {
            self.candidate = next;
            self.dirty = self.candidate != self.running;
        }
        Ok(())
    }

    pub fn lock(&mut self, session: u32, s: Store) -> Result<(), RpcError> {
        if let Some(holder) = self.locks[s.index()] {
            return Err(bad(
                "lock-denied",
                format!("lock failed, lock is already held by session {holder}"),
            )
            .held_by(holder));
        }
        if s == Store::Candidate && self.dirty {
            return Err(bad("lock-denied", "the candidate has uncommitted changes").held_by(0));
        }
        self.locks[s.index()] = Some(session);
        Ok(())
    }

    pub fn unlock(&mut self, session: u32, s: Store) -> Result<(), RpcError> {
        match self.locks[s.index()] {
            Some(holder) if holder == session => {
                self.locks[s.index()] = None;
                Ok(())
            }
            Some(holder) => Err(bad(
                "lock-denied",
                format!("the lock is held by session {holder}"),
            )
            .held_by(holder)),
            None => Err(bad("operation-failed", "the datastore is not locked")),
        }
    }

    /// `<commit>`: candidate becomes running; with `confirmed`, running goes back after
    /// the timeout unless a later commit confirms it.
    pub fn commit(
        &mut self,
        session: u32,
        confirmed: Option<Duration>,
        now: Instant,
    ) -> Result<(), RpcError> {
        self.may_write(session, Store::Running)?;
        self.may_write(session, Store::Candidate)?;
        match confirmed {
            Some(timeout) => {
                let rollback = match self.confirmed.take() {
                    // A follow-up confirmed commit keeps the first rollback point.
                    Some(c) => c.rollback,
                    None => self.running.clone(),
                };
                self.confirmed = Some(Confirmed {
                    rollback,
                    deadline: now + timeout,
                    session,
                });
            }
            None => self.confirmed = None,
        }
        self.running = self.candidate.clone();
        self.dirty = false;
        Ok(())
    }

    pub fn cancel_commit(&mut self, session: u32) -> Result<(), RpcError> {
        self.may_write(session, Store::Running)?;
        if self.confirmed.is_none() {
            return Err(bad("operation-failed", "no confirmed commit is pending"));
        }
        self.rollback();
        Ok(())
    }

    pub fn discard_changes(&mut self, session: u32) -> Result<(), RpcError> {
        self.may_write(session, Store::Candidate)?;
        self.candidate = self.running.clone();
        self.dirty = false;
        Ok(())
    }

    /// A session ended: its locks go; a candidate it held locked is discarded, and a
    /// confirmed commit it issued rolls back (RFC 6241 7.5, 8.4.1).
    pub fn release(&mut self, session: u32) {
        if self.locks[Store::Candidate.index()] == Some(session) {
            self.candidate = self.running.clone();
            self.dirty = false;
        }
        for l in &mut self.locks {
            if *l == Some(session) {
                *l = None;
            }
        }
        if self
            .confirmed
            .as_ref()
            .is_some_and(|c| c.session == session)
        {
            self.rollback();
        }
    }
}

/// Whether data element `d` is the one edit element `e` addresses: same name and
/// namespace and, for list entries, the same `name` key leaf.
fn addresses(d: &Element, e: &Element) -> bool {
    if d.name != e.name || (e.ns.is_some() && d.ns != e.ns) {
        return false;
    }
    match e.child("name").and_then(Element::text) {
        Some(key) if e.has_elements() => d.child("name").and_then(Element::text) == Some(key),
        _ => true,
    }
}

fn operation(e: &Element, inherited: Op) -> Result<Op, RpcError> {
    match e.attr("operation", Some(NC_NS)) {
        None => Ok(inherited),
        Some(s) => match Op::parse(s) {
            Some(Op::None) | None => {
                Err(bad("bad-attribute", format!("unknown operation {s:?}")).element(&e.name))
            }
            Some(op) => Ok(op),
        },
    }
}

/// A copy of a new subtree without operation attributes (`remove`d parts dropped, a
/// `delete` of something absent is data-missing).
fn materialize(e: &Element) -> Result<Option<Element>, RpcError> {
    match operation(e, Op::Merge)? {
        Op::Remove => return Ok(None),
        Op::Delete => {
            return Err(app("data-missing", format!("{} does not exist", e.name)).element(&e.name))
        }
        _ => {}
    }
    let mut out = Element {
        name: e.name.clone(),
        ns: e.ns.clone(),
        attrs: e.attrs.iter().filter(|a| a.ns.is_none()).cloned().collect(),
        children: Vec::with_capacity(e.children.len()),
    };
    for c in &e.children {
        match c {
            Node::Text(t) => out.children.push(Node::Text(t.clone())),
            Node::Element(ce) => {
                if let Some(m) = materialize(ce)? {
                    out.children.push(Node::Element(m));
                }
            }
        }
    }
    Ok(Some(out))
}

/// Applies the children of `edit` to the children of `target`.
fn edit(target: &mut Element, edit_parent: &Element, inherited: Op) -> Result<(), RpcError> {
    for e in edit_parent.elements() {
        let op = operation(e, inherited)?;
        let found = target.children.iter().position(|n| match n {
            Node::Element(d) => addresses(d, e),
            Node::Text(_) => false,
        });
        match (op, found) {
            (Op::Create, Some(_)) => {
                return Err(
                    app("data-exists", format!("{} already exists", e.name)).element(&e.name)
                )
            }
            (Op::Delete, None) => {
                return Err(
                    app("data-missing", format!("{} does not exist", e.name)).element(&e.name)
                )
            }
            (Op::Delete | Op::Remove, Some(i)) => {
                target.children.remove(i);
            }
            (Op::Remove, None) => {}
            (Op::Merge | Op::Create | Op::Replace, None) => {
                if let Some(m) = materialize(e)? {
                    target.children.push(Node::Element(m));
                }
            }
            (Op::Replace, Some(i)) => match materialize(e)? {
                Some(m) => target.children[i] = Node::Element(m),
                None => {
                    target.children.remove(i);
                }
            },
            (Op::Merge | Op::None, Some(i)) => {
                let Some(Node::Element(d)) = target.children.get_mut(i) else {
                    continue;
                };
                if e.has_elements() {
                    edit(d, e, op)?;
                } else if op == Op::Merge {
                    // A leaf: its value is replaced.
                    d.children = e
                        .children
                        .iter()
                        .filter(|c| matches!(c, Node::Text(_)))
                        .cloned()
                        .collect();
                }
            }
            (Op::None, None) => {
                if has_operation(e) {
                    return Err(app(
                        "data-missing",
                        format!("{} does not exist (default-operation none)", e.name),
                    )
                    .element(&e.name));
                }
            }
        }
    }
    Ok(())
}

fn has_operation(e: &Element) -> bool {
    e.attr("operation", Some(NC_NS)).is_some() || e.elements().any(has_operation)
}

/// Whether data element `d` matches filter element `f` by name and namespace (a filter
/// element without a namespace matches any).
fn names_match(d: &Element, f: &Element) -> bool {
    d.name == f.name && (f.ns.is_none() || d.ns == f.ns)
}

fn is_content_match(f: &Element) -> bool {
    !f.has_elements() && f.text().is_some_and(|t| !t.is_empty())
}

/// Subtree filtering (RFC 6241 6.2): `data`'s children selected by `filter`'s children.
/// No filter: everything; an empty filter: nothing.
fn apply_filter(data: &Element, filter: Option<&Element>) -> Result<Element, RpcError> {
    let Some(f) = filter else {
        return Ok(data.clone());
    };
    match f.attr("type", None) {
        None | Some("subtree") => {}
        Some("xpath") => {
            return Err(bad(
                "operation-not-supported",
                "xpath filters are not supported (no :xpath capability)",
            ))
        }
        Some(other) => {
            return Err(
                bad("bad-attribute", format!("unknown filter type {other:?}")).element("filter"),
            )
        }
    }
    let mut out = root();
    if f.has_elements() {
        out.children = select_children(data, f).unwrap_or_default();
    }
    Ok(out)
}

/// The children of data node `d` that filter node `f`'s children select; None when a
/// content match node does not match (then `d` itself is not selected).
fn select_children(d: &Element, f: &Element) -> Option<Vec<Node>> {
    let fkids: Vec<&Element> = f.elements().collect();
    for cm in fkids.iter().filter(|k| is_content_match(k)) {
        let want = cm.text();
        let hit = d.elements().any(|c| names_match(c, cm) && c.text() == want);
        if !hit {
            return None;
        }
    }
    let others: Vec<&&Element> = fkids.iter().filter(|k| !is_content_match(k)).collect();
    if others.is_empty() {
        // Only content match nodes, all true: the whole node.
        return Some(d.children.clone());
    }
    let mut out = Vec::new();
    for c in d.elements() {
        if fkids
            .iter()
            .any(|k| is_content_match(k) && names_match(c, k))
        {
            out.push(Node::Element(c.clone()));
            continue;
        }
        for k in &others {
            if !names_match(c, k) {
                continue;
            }
            if !k.has_elements() {
                out.push(Node::Element(c.clone()));
                break;
            }
            if let Some(kids) = select_children(c, k) {
                if !kids.is_empty() {
                    out.push(Node::Element(Element {
                        name: c.name.clone(),
                        ns: c.ns.clone(),
                        attrs: c.attrs.clone(),
                        children: kids,
                    }));
                    break;
                }
            }
        }
    }
    Some(out)
}

/// The `ietf-system` state data every simulated device reports in `<get>`.
pub fn system_state(os_name: &str, os_version: &str, machine: &str) -> Element {
    Element::new("system-state", Some(SYSTEM_NS)).with(
        Element::new("platform", Some(SYSTEM_NS))
            .with(Element::leaf("os-name", Some(SYSTEM_NS), os_name))
            .with(Element::leaf("os-release", Some(SYSTEM_NS), os_version))
            .with(Element::leaf("os-version", Some(SYSTEM_NS), os_version))
            .with(Element::leaf("machine", Some(SYSTEM_NS), machine)),
    )
}
