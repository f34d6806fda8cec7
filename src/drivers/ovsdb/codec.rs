//! OVSDB framing and JSON-RPC 1.0 messages. OVSDB (RFC 7047) streams JSON objects
//! back to back with no delimiter or length prefix, so [`FrameSplitter`] finds where
//! each one ends by tracking nesting depth and strings (escapes included), with a
//! hard cap on the size of one message and on its depth: a hostile or broken server
//! gets an error, never an unbounded allocation or a deep recursion. Each complete
//! frame is then parsed by `serde_json` into a [`Message`].

use serde_json::{json, Map, Value};

use super::OvsdbError;

/// Largest message accepted by default. The initial monitor reply of a host with
/// thousands of interfaces (each with its statistics) is a few MiB.
pub const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// Deepest nesting accepted; OVSDB messages nest about 8 deep, and serde_json
/// refuses more than 128.
pub const MAX_DEPTH: u32 = 100;

/// Splits a byte stream into complete top-level JSON objects.
#[derive(Debug)]
pub struct FrameSplitter {
    buf: Vec<u8>,
    /// How far into `buf` the scan has got.
    pos: usize,
    /// Nesting depth at `pos`; 0 between frames.
    depth: u32,
    in_string: bool,
    escaped: bool,
    max: usize,
}

impl FrameSplitter {
    pub fn new(max: usize) -> FrameSplitter {
        FrameSplitter {
            buf: Vec::new(),
            pos: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            max: max.max(2),
        }
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `None` when more bytes are needed. An error leaves
    /// the splitter unusable: the stream has lost its framing and must be reset.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, OvsdbError> {
        if self.depth == 0 {
            // Skip whitespace between frames.
            let skip = self.buf[self.pos..]
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .count();
            self.pos += skip;
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            match self.buf.first() {
                None => return Ok(None),
                Some(b'{') => {}
                Some(b) => {
                    return Err(OvsdbError::Malformed(format!(
                        "expected a JSON object, found byte 0x{b:02x}"
                    )))
                }
            }
        }
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            self.pos += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => {
                        self.depth += 1;
                        if self.depth > MAX_DEPTH {
                            return Err(OvsdbError::Malformed(format!(
                                "nested deeper than {MAX_DEPTH}"
                            )));
                        }
                    }
                    b'}' | b']' => {
                        // depth >= 1 here: a frame starts with '{'.
                        self.depth -= 1;
                        if self.depth == 0 {
                            let rest = self.buf.split_off(self.pos);
                            let frame = std::mem::replace(&mut self.buf, rest);
                            self.pos = 0;
                            return Ok(Some(frame));
                        }
                    }
                    _ => {}
                }
            }
            if self.pos > self.max {
                return Err(OvsdbError::TooLarge(self.max));
            }
        }
        if self.buf.len() > self.max {
            return Err(OvsdbError::TooLarge(self.max));
        }
        Ok(None)
    }
}

/// One JSON-RPC 1.0 message as OVSDB uses it.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request that expects an answer (`id` is not null).
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A request without an id (`update`, `update2`, `locked`, ...).
    Notification { method: String, params: Value },
    /// An answer to one of our requests: `error` null means success.
    Response {
        id: Value,
        result: Value,
        error: Value,
    },
}

impl Message {
    /// Parses one frame. Anything that is not a JSON object shaped like a request,
    /// notification or response is an error.
    pub fn parse(frame: &[u8]) -> Result<Message, OvsdbError> {
        let v: Value = serde_json::from_slice(frame)
            .map_err(|e| OvsdbError::Malformed(format!("invalid JSON: {e}")))?;
        let Value::Object(mut o) = v else {
            return Err(OvsdbError::Malformed("message is not an object".into()));
        };
        let id = o.remove("id").unwrap_or(Value::Null);
        if let Some(method) = o.remove("method") {
            let Value::String(method) = method else {
                return Err(OvsdbError::Malformed("\"method\" is not a string".into()));
            };
            let params = o.remove("params").unwrap_or(Value::Array(Vec::new()));
            if !params.is_array() {
                return Err(OvsdbError::Malformed(format!(
                    "{method}: \"params\" is not an array"
                )));
            }
            return Ok(if id.is_null() {
                Message::Notification { method, params }
            } else {
                Message::Request { id, method, params }
            });
        }
        if o.contains_key("result") || o.contains_key("error") {
            if id.is_null() {
                return Err(OvsdbError::Malformed("response without an id".into()));
            }
            return Ok(Message::Response {
                id,
                result: o.remove("result").unwrap_or(Value::Null),
                error: o.remove("error").unwrap_or(Value::Null),
            });
        }
        Err(OvsdbError::Malformed(
            "neither a request nor a response".into(),
        ))
    }

    pub fn request(id: u64, method: &str, params: Value) -> Vec<u8> {
        Message::Request {
            id: json!(id),
            method: method.to_owned(),
            params,
        }
        .to_bytes()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut o = Map::new();
        match self {
            Message::Request { id, method, params } => {
                o.insert("method".into(), json!(method));
                o.insert("params".into(), params.clone());
                o.insert("id".into(), id.clone());
            }
            Message::Notification { method, params } => {
                o.insert("method".into(), json!(method));
                o.insert("params".into(), params.clone());
                o.insert("id".into(), Value::Null);
            }
            Message::Response { id, result, error } => {
                o.insert("result".into(), result.clone());
                o.insert("error".into(), error.clone());
                o.insert("id".into(), id.clone());
            }
        }
        // Serialising a Value cannot fail.
        serde_json::to_vec(&Value::Object(o)).unwrap_or_default()
    }
}

/// Text of an OVSDB error value: `{"error": "...", "details": "..."}` or a string.
pub fn error_text(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let err = o.get("error").and_then(Value::as_str).unwrap_or("error");
            match o.get("details").and_then(Value::as_str) {
                Some(d) if !d.is_empty() => format!("{err}: {d}"),
                _ => err.to_owned(),
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(s: &mut FrameSplitter) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = s.next_frame().unwrap() {
            out.push(String::from_utf8(f).unwrap());
        }
        out
    }

    #[test]
    fn splits_back_to_back_objects_with_tricky_strings() {
        let mut s = FrameSplitter::new(1024);
        let stream = r#"{"a":"}{\"\\"} {"b":[1,{"c":"]"}]}
{"id":null}"#;
        // Byte by byte: every split point must work.
        let mut got = Vec::new();
        for b in stream.as_bytes() {
            s.extend(&[*b]);
            got.extend(split_all(&mut s));
        }
        assert_eq!(
            got,
            [
                r#"{"a":"}{\"\\"}"#,
                r#"{"b":[1,{"c":"]"}]}"#,
                r#"{"id":null}"#
            ]
        );
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn caps_size_and_depth_and_refuses_non_objects() {
        let mut s = FrameSplitter::new(16);
        s.extend(br#"{"a":"0123456789012345"}"#);
        assert!(matches!(s.next_frame(), Err(OvsdbError::TooLarge(16))));

        // An unterminated frame is refused as soon as it passes the cap.
        let mut s = FrameSplitter::new(16);
        s.extend(b"{\"aaaaaaaaaaaaaaaaaaaaaa");
        assert!(matches!(s.next_frame(), Err(OvsdbError::TooLarge(16))));

        let mut s = FrameSplitter::new(1 << 20);
        s.extend(&vec![b'['; 10]);
        let mut deep = b"{".to_vec();
        deep.extend(vec![b'['; 200]);
        let mut s2 = FrameSplitter::new(1 << 20);
        s2.extend(&deep);
        assert!(matches!(s2.next_frame(), Err(OvsdbError::Malformed(_))));
        assert!(matches!(s.next_frame(), Err(OvsdbError::Malformed(_))));
    }

    #[test]
    fn parses_the_three_kinds() {
        let m = Message::parse(br#"{"id":"echo","method":"echo","params":[]}"#).unwrap();
        assert_eq!(
            m,
            Message::Request {
                id: json!("echo"),
                method: "echo".into(),
                params: json!([])
            }
        );
        let m = Message::parse(br#"{"id":null,"method":"update2","params":["m",{}]}"#).unwrap();
        assert!(matches!(m, Message::Notification { .. }));
        let m = Message::parse(br#"{"id":3,"result":["Open_vSwitch"],"error":null}"#).unwrap();
        assert!(matches!(m, Message::Response { .. }));
        for bad in [
            &b"[1]"[..],
            br#"{"x":1}"#,
            br#"{"method":1}"#,
            br#"{"result":1}"#,
            br#"{"method":"m","params":{}}"#,
            b"{not json}",
        ] {
            assert!(Message::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn round_trips_requests() {
        let bytes = Message::request(7, "transact", json!(["Open_vSwitch", {"op": "comment"}]));
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(
            m,
            Message::Request {
                id: json!(7),
                method: "transact".into(),
                params: json!(["Open_vSwitch", {"op": "comment"}])
            }
        );
        assert_eq!(
            error_text(&json!({"error": "constraint violation", "details": "dup"})),
            "constraint violation: dup"
        );
    }
}
