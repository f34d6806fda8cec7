//! The simulator's XML tree: parsed with quick-xml (namespaces resolved, sizes and depth
//! capped) and written back with default-namespace declarations.

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The NETCONF base namespace (RFC 6241), also that of the `operation` attribute.
pub const NC_NS: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 100_000;

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML")]
    Syntax(#[source] quick_xml::Error),
    #[error("malformed XML attribute")]
    Attr(#[source] quick_xml::events::attributes::AttrError),
    #[error("unknown entity &{0};")]
    Entity(String),
    #[error("unbound namespace prefix {0:?}")]
    Prefix(String),
    #[error("XML nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("XML has more than {MAX_ELEMENTS} elements")]
    TooMany,
    #[error("the document has no root element")]
    Empty,
    #[error("XML text after the root element")]
    Trailing,
}

/// One attribute: namespace (None if unqualified), local name, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ns: Option<Box<str>>,
    pub name: Box<str>,
    pub value: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(Box<str>),
}

/// An element: local name, namespace URI, attributes, children. Whitespace-only text is
/// dropped and text is trimmed (configuration data, not documents).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: Box<str>,
    pub ns: Option<Box<str>>,
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: &str, ns: Option<&str>) -> Element {
        Element {
            name: name.into(),
            ns: ns.map(Into::into),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// A leaf with text (in the parent's namespace when `ns` is None on output).
    pub fn leaf(name: &str, ns: Option<&str>, text: &str) -> Element {
        let mut e = Element::new(name, ns);
        e.children.push(Node::Text(text.into()));
        e
    }

    pub fn with(mut self, child: Element) -> Element {
        self.children.push(Node::Element(child));
        self
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        &*self.name == name && self.ns.as_deref() == Some(ns)
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this local name (any namespace).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| &*e.name == name)
    }

    /// The element's own text (concatenated text children), None if it has none.
    pub fn text(&self) -> Option<String> {
        let mut out: Option<String> = None;
        for n in &self.children {
            if let Node::Text(t) = n {
                out.get_or_insert_with(String::new).push_str(t);
            }
        }
        out
    }

    pub fn has_elements(&self) -> bool {
        self.elements().next().is_some()
    }

    /// An attribute's value by local name and namespace (None: unqualified).
    pub fn attr(&self, name: &str, ns: Option<&str>) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| &*a.name == name && a.ns.as_deref() == ns)
            .map(|a| &*a.value)
    }

    /// Serialises the element; `parent_ns` is the default namespace in scope.
    pub fn write(&self, out: &mut String, parent_ns: Option<&str>) {
        let _ = write!(out, "<{}", self.name);
        let ns = self.ns.as_deref();
        if ns != parent_ns {
            let _ = write!(out, " xmlns=\"{}\"", escape(ns.unwrap_or("")));
        }
        for a in &self.attrs {
            match a.ns.as_deref() {
                None => {
                    let _ = write!(out, " {}=\"{}\"", a.name, escape(&*a.value));
                }
                Some(NC_NS) => {
                    let _ = write!(
                        out,
                        " xmlns:nc=\"{NC_NS}\" nc:{}=\"{}\"",
                        a.name,
                        escape(&*a.value)
                    );
                }
                // Other qualified attributes are not kept by the simulator.
                Some(_) => {}
            }
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Element(e) => e.write(out, ns),
                Node::Text(t) => out.push_str(&escape(&**t)),
            }
        }
        let _ = write!(out, "</{}>", self.name);
    }

    pub fn to_xml(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, None);
        s
    }

    /// Rough heap size, for the size cap of the datastore.
    pub fn weight(&self) -> usize {
        let own = self.name.len()
            + self.ns.as_deref().map_or(0, str::len)
            + self
                .attrs
                .iter()
                .map(|a| a.name.len() + a.value.len() + 16)
                .sum::<usize>()
            + 48;
        own + self
            .children
            .iter()
            .map(|c| match c {
                Node::Element(e) => e.weight(),
                Node::Text(t) => t.len() + 16,
            })
            .sum::<usize>()
    }
}

fn resolved(r: ResolveResult<'_>) -> Result<Option<Box<str>>, XmlError> {
    match r {
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Bound(ns) => Ok(Some(ns.as_ref().into())),
        ResolveResult::Unknown(p) => Err(XmlError::Prefix(p)),
    }
}

fn start(
    reader: &mut NsReader<&[u8]>,
    ns: Option<Box<str>>,
    e: &BytesStart<'_>,
) -> Result<Element, XmlError> {
    let name: Box<str> = e.local_name().as_ref().into();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(XmlError::Attr)?;
        let key = a.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(XmlError::Syntax)?;
        let (ans, local) = reader.resolver_mut().resolve_attribute(key);
        attrs.push(Attr {
            ns: resolved(ans)?,
            name: local.as_ref().into(),
            value: value.as_ref().into(),
        });
    }
    Ok(Element {
        name,
        ns,
        attrs,
        children: Vec::new(),
    })
}

/// Parses one document (an XML declaration and comments are allowed around the root).
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_reader(input);
    let mut stack: Vec<(Element, String)> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, ev) = reader.read_resolved_event().map_err(XmlError::Syntax)?;
        let ns = resolved(ns);
        match ev {
            Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                return Err(XmlError::Trailing);
            }
            Event::Start(e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooMany);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let el = start(&mut reader, ns?, &e)?;
                stack.push((el, String::new()));
            }
            Event::Empty(e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooMany);
                }
                let el = start(&mut reader, ns?, &e)?;
                match stack.last_mut() {
                    Some((parent, text)) => {
                        flush_text(parent, text);
                        parent.children.push(Node::Element(el));
                    }
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let Some((mut el, mut text)) = stack.pop() else {
                    return Err(XmlError::Trailing);
                };
                flush_text(&mut el, &mut text);
                match stack.last_mut() {
                    Some((parent, ptext)) => {
                        flush_text(parent, ptext);
                        parent.children.push(Node::Element(el));
                    }
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                match stack.last_mut() {
                    Some((_, text)) => text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(XmlError::Trailing),
                }
            }
            Event::CData(t) => {
                if let Some((_, text)) = stack.last_mut() {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let s: Cow<'_, str> = if r.is_char_ref() {
                    match r.resolve_char_ref().map_err(XmlError::Syntax)? {
                        Some(c) => Cow::Owned(c.to_string()),
                        None => return Err(XmlError::Entity(r.xml10_content().into_owned())),
                    }
                } else {
                    let name = r.xml10_content();
                    match resolve_predefined_entity(&name) {
                        Some(v) => Cow::Borrowed(v),
                        None => return Err(XmlError::Entity(name.into_owned())),
                    }
                };
                match stack.last_mut() {
                    Some((_, text)) => text.push_str(&s),
                    None => return Err(XmlError::Trailing),
                }
            }
            Event::Eof => {
                if !stack.is_empty() {
                    return Err(XmlError::Syntax(quick_xml::Error::Syntax(
                        quick_xml::errors::SyntaxError::UnclosedTag,
                    )));
                }
                return root.ok_or(XmlError::Empty);
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Text collected since the last child becomes a trimmed text node unless it is blank.
fn flush_text(el: &mut Element, text: &mut String) {
    let t = text.trim();
    if !t.is_empty() {
        el.children.push(Node::Text(t.into()));
    }
    text.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_entities_and_writes_back() {
        let doc = br#"<?xml version="1.0"?>
<nc:rpc xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7">
  <nc:edit-config><nc:config>
    <system xmlns="urn:ietf:params:xml:ns:yang:ietf-system" nc:operation="replace">
      <hostname>a&amp;b&#65;</hostname><contact/>
    </system>
  </nc:config></nc:edit-config>
</nc:rpc>"#;
        let rpc = parse(doc).unwrap();
        assert!(rpc.is("rpc", NC_NS));
        assert_eq!(rpc.attr("message-id", None), Some("7"));
        let sys = rpc
            .child("edit-config")
            .and_then(|e| e.child("config"))
            .and_then(|c| c.child("system"))
            .unwrap();
        assert_eq!(
            sys.ns.as_deref(),
            Some("urn:ietf:params:xml:ns:yang:ietf-system")
        );
        assert_eq!(sys.attr("operation", Some(NC_NS)), Some("replace"));
        assert_eq!(
            sys.child("hostname").and_then(Element::text).as_deref(),
            Some("a&bA")
        );
        let out = sys.to_xml();
        assert!(
            out.contains("<hostname>a&amp;bA</hostname><contact/>"),
            "{out}"
        );
        assert_eq!(parse(out.as_bytes()).unwrap(), *sys);
    }

    #[test]
    fn refuses_bad_input() {
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"<a/><b/>").is_err());
        assert!(parse(b"<p:a/>").is_err());
        assert!(parse(b"<a>&nope;</a>").is_err());
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(parse(deep.as_bytes()), Err(XmlError::TooDeep)));
    }
}
