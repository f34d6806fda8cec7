//! XML for NETCONF: replies parsed with quick-xml into a small element tree, that tree
//! converted to JSON for Salt, and user-supplied XML (filters, config, RPCs) checked
//! before it goes on the wire. Never regex.
//!
//! # The JSON shape
//! Every function returns the JSON below *and* the raw XML it came from, so nothing
//! is lost for a caller that needs the exact document.
//! - An element becomes a value under its **local name** (no prefix) in its parent's
//!   object. A document is `{"<root local name>": <value>}`.
//! - An element with no attributes, no namespace change and no child elements is its
//!   **text** as a string (kept as is, whitespace included), or `null` when empty:
//!   `<mtu>1500</mtu>` → `"mtu": "1500"`, `<enabled/>` → `"enabled": null`. Values
//!   stay strings: XML has no types and YANG's are not known here.
//! - Otherwise it is an **object**: child elements by local name; attributes under
//!   `"@<name as written>"` (`"@nc:operation"`); namespace declarations likewise
//!   (`"@xmlns"`, `"@xmlns:if"`) because identityref values such as
//!   `"if:ethernetCsmacd"` need them; the element's text, when it is not only
//!   whitespace, under `"#text"`.
//! - **Namespaces:** when an element's namespace differs from its parent's and it
//!   does not declare it itself (it uses a prefix bound higher up), its object gets
//!   `"@xmlns": "<namespace URI>"`, so every element's namespace can be recovered.
//! - **Repeated siblings** (YANG lists and leaf-lists) become an array in document
//!   order; a list with one entry is a single value, not an array (as xmltodict).
//!   Siblings with the same local name in different namespaces share the key and
//!   each carries its `"@xmlns"`.
//! - **Mixed content** (text between child elements, which YANG data never has): the
//!   text pieces are concatenated under `"#text"`, and their order relative to the
//!   elements is only in the raw XML. Comments and processing instructions are
//!   dropped; CDATA is text; entity and character references are resolved.
//!
//! # Limits
//! Input size is bounded by the framing cap; nesting deeper than [`MAX_DEPTH`]
//! elements is refused (no deep recursion on hostile input), and undeclared prefixes,
//! unknown entities, mismatched end tags and more than one root are errors.

use std::ops::Range;
use std::sync::Arc;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use serde_json::{Map, Value};

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 128;

/// The NETCONF base namespace.
pub const NC_NS: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";

#[derive(Debug, Clone, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML at byte {position}: {source}")]
    Syntax {
        position: u64,
        #[source]
        source: Arc<quick_xml::Error>,
    },
    #[error("malformed XML: {0}")]
    Structure(String),
    #[error("XML nested deeper than {0} elements")]
    TooDeep(usize),
}

/// One element of a parsed document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    /// Local name, without prefix.
    pub name: String,
    pub prefix: Option<String>,
    /// The resolved namespace URI, `None` when unqualified.
    pub ns: Option<String>,
    /// Attributes and namespace declarations as written (`xmlns:if`), values unescaped.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// Character data directly inside, concatenated.
    pub text: String,
    /// Byte range of the element's content in the source text.
    pub inner: Range<usize>,
    /// Byte range of the whole element in the source text.
    pub outer: Range<usize>,
}

impl Element {
    /// The first child called `name` (local name).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text of the child `name`, trimmed.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// The element's JSON value (see the module doc), as a child of `parent_ns`.
    pub fn to_json(&self, parent_ns: Option<&str>) -> Value {
        let ns_change = self.ns.as_deref() != parent_ns && self.attr("xmlns").is_none();
        if self.attrs.is_empty() && self.children.is_empty() && !ns_change {
            return if self.text.is_empty() {
                Value::Null
            } else {
                Value::String(self.text.clone())
            };
        }
        let mut m = Map::new();
        for (k, v) in &self.attrs {
            m.insert(format!("@{k}"), Value::String(v.clone()));
        }
        if ns_change {
            m.insert(
                "@xmlns".into(),
                Value::String(self.ns.clone().unwrap_or_default()),
            );
        }
        let ns = self.ns.as_deref();
        for c in &self.children {
            let v = c.to_json(ns);
            match m.get_mut(&c.name) {
                None => {
                    m.insert(c.name.clone(), v);
                }
                // An element's own value is never an array: this one is siblings.
                Some(Value::Array(a)) => a.push(v),
                Some(prev) => {
                    let first = prev.take();
                    *prev = Value::Array(vec![first, v]);
                }
            }
        }
        if !self.text.trim().is_empty() {
            m.insert("#text".into(), Value::String(self.text.clone()));
        }
        Value::Object(m)
    }

    /// `{"<name>": <value>}`: a whole document or subtree.
    pub fn to_json_document(&self) -> Value {
        let mut m = Map::new();
        m.insert(self.name.clone(), self.to_json(None));
        Value::Object(m)
    }

    /// The children's values as one object (for `<data>`: the datastore's top
    /// containers, each under its name).
    pub fn children_json(&self) -> Value {
        let mut wrapper = self.clone();
        wrapper.attrs.clear();
        wrapper.text.clear();
        match wrapper.to_json(self.ns.as_deref()) {
            Value::Null => Value::Object(Map::new()),
            v => v,
        }
    }
}

fn syntax(reader: &NsReader<&[u8]>, e: quick_xml::Error) -> XmlError {
    XmlError::Syntax {
        position: reader.error_position(),
        source: Arc::new(e),
    }
}

fn utf8(s: &str) -> Result<String, XmlError> {
    Ok(s.to_owned())
}

/// Parse `xml` into its top-level elements. `single` requires exactly one.
fn parse(xml: &str, single: bool) -> Result<Vec<Element>, XmlError> {
    let mut reader = NsReader::from_reader(xml.as_bytes());
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut roots: Vec<Element> = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        let read = match reader.read_resolved_event() {
            Ok((res, ev)) => Ok((
                match res {
                    ResolveResult::Bound(n) => Ok(Some(utf8(n.as_ref())?)),
                    ResolveResult::Unbound => Ok(None),
                    ResolveResult::Unknown(p) => Err(p),
                },
                ev,
            )),
            Err(e) => Err(e),
        };
        let (ns, ev) = match read {
            Ok((Ok(ns), ev)) => (ns, ev),
            Ok((Err(p), _)) => return Err(XmlError::Structure(format!("undeclared prefix {p:?}"))),
            Err(e) => return Err(syntax(&reader, e)),
        };
        let after = reader.buffer_position() as usize;
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep(MAX_DEPTH));
                }
                let qn = s.name();
                let mut el = Element {
                    name: utf8(qn.local_name().as_ref())?,
                    prefix: qn.prefix().map(|p| utf8(p.as_ref())).transpose()?,
                    ns,
                    inner: after..after,
                    outer: before..after,
                    ..Element::default()
                };
                for a in s.attributes() {
                    let a = a.map_err(|e| syntax(&reader, e.into()))?;
                    let k = utf8(a.key.as_ref())?;
                    let v = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| syntax(&reader, e))?;
                    el.attrs.push((k, v.into_owned()));
                }
                if matches!(ev, Event::Empty(_)) {
                    close(el, &mut stack, &mut roots);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let Some(mut el) = stack.pop() else {
                    return Err(XmlError::Structure("unmatched end tag".into()));
                };
                el.inner.end = before;
                el.outer.end = after;
                close(el, &mut stack, &mut roots);
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                push_text(&mut stack, &s)?;
            }
            Event::CData(c) => {
                let s = c.into_inner().into_owned();
                push_text(&mut stack, &s)?;
            }
            Event::GeneralRef(r) => {
                let s = if r.is_char_ref() {
                    match r.resolve_char_ref().map_err(|e| syntax(&reader, e))? {
                        Some(c) => c.to_string(),
                        None => return Err(XmlError::Structure("bad character reference".into())),
                    }
                } else {
                    let name = r.into_inner();
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => s.to_owned(),
                        None => {
                            return Err(XmlError::Structure(format!("unknown entity &{name};")))
                        }
                    }
                };
                push_text(&mut stack, &s)?;
            }
            Event::DocType(_) => {
                return Err(XmlError::Structure("DOCTYPE is not allowed".into()));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Structure(
            "unclosed element at end of input".into(),
        ));
    }
    if single && roots.len() != 1 {
        return Err(XmlError::Structure(format!(
            "expected one root element, found {}",
            roots.len()
        )));
    }
    Ok(roots)
}

fn close(el: Element, stack: &mut [Element], roots: &mut Vec<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => roots.push(el),
    }
}

fn push_text(stack: &mut [Element], s: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(XmlError::Structure("text outside the root element".into())),
    }
}

/// Parse a whole document (one root element).
pub fn parse_document(xml: &str) -> Result<Element, XmlError> {
    let mut v = parse(xml, true)?;
    v.pop()
        .ok_or_else(|| XmlError::Structure("no root element".into()))
}

/// Parse user XML that may hold several top-level elements (a filter, config
/// content). Prefixes must be declared in the text itself.
pub fn parse_fragment(xml: &str) -> Result<Vec<Element>, XmlError> {
    parse(xml, false)
}

/// Check user XML before it goes inside an RPC: well-formed, at least one element,
/// no DOCTYPE, within the depth limit.
pub fn check_fragment(xml: &str) -> Result<(), XmlError> {
    if parse_fragment(xml)?.is_empty() {
        return Err(XmlError::Structure("no element".into()));
    }
    Ok(())
}

/// `xml` (a whole document or fragment) as JSON: `{"<name>": value, ...}`, with
/// repeated top-level names as arrays.
pub fn to_json(xml: &str) -> Result<Value, XmlError> {
    let roots = parse_fragment(xml)?;
    let wrapper = Element {
        children: roots,
        ..Element::default()
    };
    Ok(wrapper.children_json())
}

/// Escape text for element content or attribute values.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// Differences between two JSON values as `{"<path>": {"old": .., "new": ..}}`,
/// paths `/`-separated by key (no `old` when added, no `new` when removed);
/// arrays and leaves compare whole.
pub fn diff(old: &Value, new: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    diff_at(String::new(), old, new, &mut out);
    out
}

fn diff_at(path: String, old: &Value, new: &Value, out: &mut Map<String, Value>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = format!("{path}/{k}");
                match b.get(k) {
                    Some(vb) => diff_at(p, va, vb, out),
                    None => {
                        out.insert(p, serde_json::json!({"old": va}));
                    }
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    out.insert(format!("{path}/{k}"), serde_json::json!({"new": vb}));
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => {
            let p = if path.is_empty() { "/".into() } else { path };
            out.insert(p, serde_json::json!({"old": a, "new": b}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IF: &str = r#"<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces" xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">
    <interface><name>eth0</name><type>ianaift:ethernetCsmacd</type><enabled>true</enabled></interface>
    <interface><name>eth1</name><description>a &amp; b &#x41;<![CDATA[<x>]]></description><enabled/></interface>
  </interfaces>
  <nc:system xmlns:nc="urn:x" nc:operation="merge"><hostname>r1</hostname></nc:system>
</data>"#;

    #[test]
    fn the_documented_shape() {
        let root = parse_document(IF).unwrap();
        assert_eq!(root.name, "data");
        assert_eq!(root.ns.as_deref(), Some(NC_NS));
        let j = root.to_json_document();
        assert_eq!(
            j,
            json!({"data": {
                "@xmlns": NC_NS,
                "interfaces": {
                    "@xmlns": "urn:ietf:params:xml:ns:yang:ietf-interfaces",
                    "@xmlns:ianaift": "urn:ietf:params:xml:ns:yang:iana-if-type",
                    "interface": [
                        {"name": "eth0", "type": "ianaift:ethernetCsmacd", "enabled": "true"},
                        {"name": "eth1", "description": "a & b A<x>", "enabled": null}
                    ]
                },
                "system": {"@xmlns:nc": "urn:x", "@nc:operation": "merge", "@xmlns": "urn:x",
                           "hostname": {"@xmlns": NC_NS, "#text": "r1"}}
            }})
        );
        // Raw XML of a subtree is a slice of the source.
        let ifs = root.child("interfaces").unwrap();
        assert!(IF[ifs.outer.clone()].starts_with("<interfaces"));
        assert!(IF[ifs.inner.clone()].trim().starts_with("<interface>"));
        assert_eq!(
            root.children_json()["interfaces"]["interface"][0]["name"],
            "eth0"
        );
    }

    #[test]
    fn hostile_and_malformed_input_is_refused() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(parse_document(&deep), Err(XmlError::TooDeep(_))));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        parse_document(&ok).unwrap();
        for bad in [
            "<a>",
            "<a></b>",
            "</a>",
            "<a/><b/>",
            "text",
            "<a>&bogus;</a>",
            "<p:a/>",
            "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
            "<a b=\"1\" b=\"2\"/>",
            "",
        ] {
            assert!(parse_document(bad).is_err(), "{bad}");
        }
        check_fragment("<a/><b xmlns=\"urn:x\">1</b>").unwrap();
        assert!(check_fragment("  ").is_err());
        assert!(check_fragment("<a>").is_err());
    }

    #[test]
    fn fragment_to_json_and_diff() {
        let a = to_json("<x>1</x><y>2</y><y>3</y>").unwrap();
        assert_eq!(a, json!({"x": "1", "y": ["2", "3"]}));
        let b = to_json("<x>2</x><y>2</y><y>3</y><z/>").unwrap();
        let d = diff(&a, &b);
        assert_eq!(
            Value::Object(d),
            json!({"/x": {"old": "1", "new": "2"}, "/z": {"new": null}})
        );
        assert!(diff(&a, &a).is_empty());
    }
}
