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
        let v: Value = serde_json::from_slice(frame).map_err(OvsdbError::json("invalid JSON"))?;
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
        s.extend(&[b'['; 10]);
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
            assert!(
                Message::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
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

/// Decoder robustness: arbitrary and mutated byte streams through the splitter,
/// the message parser and the replica must give frames or errors, never a panic,
/// and never buffer more than the cap plus one read.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::drivers::ovsdb::replica::Replica;
    use crate::drivers::ovsdb::schema::Schema;

    const CAP: usize = 4096;

    /// Real traffic: a monitor reply, updates, an echo, a transact reply.
    fn samples() -> Vec<Vec<u8>> {
        [
            json!({"id": 3, "error": null, "result": {"Bridge": {"8741227b-0d1b-40c5-b49d-45fefeb21f32": {"initial": {"name": "br0", "ports": ["set", [["uuid", "0451c1e7-bf51-418a-9754-a87ab77034a1"]]]}}}, "Port": {"0451c1e7-bf51-418a-9754-a87ab77034a1": {"initial": {"name": "br0", "tag": 5, "other_config": ["map", [["a", "b"]]]}}}}}),
            json!({"id": null, "method": "update2", "params": ["drover", {"Port": {"0451c1e7-bf51-418a-9754-a87ab77034a1": {"modify": {"tag": 7, "trunks": ["set", [1, 2]], "other_config": ["map", [["a", "c"]]]}}}}]}),
            json!({"id": null, "method": "update", "params": ["drover", {"Bridge": {"8741227b-0d1b-40c5-b49d-45fefeb21f32": {"old": {}, "new": {"name": "br\"1\\"}}}}]}),
            json!({"id": "echo", "method": "echo", "params": []}),
            json!({"id": 9, "result": [{"uuid": ["uuid", "d75821d9-4f95-42c6-9800-788568f8b422"]}, {"error": "timed out", "details": "\"where\" clause test failed"}], "error": null}),
        ]
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap())
        .collect()
    }

    fn schema() -> Schema {
        Schema::parse(&json!({"name": "Open_vSwitch", "version": "8.3.1", "tables": {
            "Bridge": {"columns": {"name": {"type": "string"}, "ports": {"type": {"key": {"type": "uuid", "refTable": "Port"}, "min": 0, "max": "unlimited"}}}},
            "Port": {"columns": {"name": {"type": "string"}, "tag": {"type": {"key": "integer", "min": 0, "max": 1}},
                     "trunks": {"type": {"key": "integer", "min": 0, "max": 4096}},
                     "other_config": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}}}
        }}))
        .unwrap()
    }

    /// Everything the session does with incoming bytes, minus the socket.
    fn consume(stream: &[u8], chunks: &[usize]) -> Result<usize, OvsdbError> {
        let schema = schema();
        let mut replica = Replica::default();
        let mut s = FrameSplitter::new(CAP);
        let mut frames = 0;
        let mut at = 0;
        let mut sizes = chunks.iter().cycle();
        while at < stream.len() {
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, stream.len() - at);
            s.extend(&stream[at..at + n]);
            at += n;
            assert!(s.buffered() <= CAP + n + 1, "buffer grew past the cap");
            while let Some(frame) = s.next_frame()? {
                assert!(frame.len() <= CAP + 1);
                frames += 1;
                match Message::parse(&frame)? {
                    Message::Notification { params, .. } => {
                        if let Some(u) = params.get(1) {
                            let _ = replica.apply(u, &schema, true);
                            let _ = replica.apply(u, &schema, false);
                        }
                    }
                    Message::Response { result, .. } => {
                        let _ = replica.apply(&result, &schema, true);
                        let _ = error_text(&result);
                    }
                    Message::Request { .. } => {}
                }
                let _ = replica.view();
                let _ = replica.counts();
            }
        }
        Ok(frames)
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            "[a-z\"\\\\{}\\[\\] ]{0,8}".prop_map(Value::String),
            Just(json!(["uuid", "0451c1e7-bf51-418a-9754-a87ab77034a1"])),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,6}", inner.clone(), 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                (Just("set"), prop::collection::vec(inner.clone(), 0..3))
                    .prop_map(|(t, v)| json!([t, v])),
                (
                    Just("map"),
                    prop::collection::vec((inner.clone(), inner), 0..3)
                )
                    .prop_map(|(t, v)| json!([
                        t,
                        v.into_iter()
                            .map(|(a, b)| json!([a, b]))
                            .collect::<Vec<_>>()
                    ])),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..2048),
            chunks in prop::collection::vec(1usize..300, 1..8),
        ) {
            let _ = consume(&bytes, &chunks);
        }

        #[test]
        fn arbitrary_messages_split_exactly(
            msgs in prop::collection::vec(prop::collection::btree_map("[a-z]{1,5}", json_value(), 0..4), 1..6),
            chunks in prop::collection::vec(1usize..64, 1..8),
        ) {
            let objects: Vec<Vec<u8>> = msgs
                .iter()
                .map(|m| serde_json::to_vec(&Value::Object(m.clone().into_iter().collect())).unwrap())
                .filter(|b| b.len() <= CAP)
                .collect();
            let stream = objects.join(&b" \n"[..]);
            let mut s = FrameSplitter::new(CAP);
            let mut got = Vec::new();
            let mut at = 0;
            let mut sizes = chunks.iter().cycle();
            while at < stream.len() {
                let n = (*sizes.next().unwrap()).min(stream.len() - at);
                s.extend(&stream[at..at + n]);
                at += n;
                while let Some(f) = s.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, objects);
        }

        #[test]
        fn mutated_traffic_never_panics(
            which in prop::collection::vec(0usize..5, 1..6),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..12),
            chunks in prop::collection::vec(1usize..200, 1..8),
        ) {
            let samples = samples();
            let mut stream: Vec<u8> = which.iter().flat_map(|i| samples[*i].clone()).collect();
            for (at, byte, op) in edits {
                if stream.is_empty() {
                    break;
                }
                let i = at.index(stream.len());
                match op {
                    0 => stream[i] = byte,
                    1 => stream.insert(i, byte),
                    _ => {
                        stream.remove(i);
                    }
                }
            }
            let _ = consume(&stream, &chunks);
        }

        #[test]
        fn arbitrary_json_into_replica_and_datums_never_panics(v in json_value()) {
            let schema = schema();
            let mut r = Replica::default();
            let _ = r.apply(&v, &schema, true);
            let _ = r.apply(&v, &schema, false);
            let _ = r.apply(&json!({"Port": {"0451c1e7-bf51-418a-9754-a87ab77034a1": {"modify": {"tag": v.clone(), "other_config": v.clone(), "trunks": v.clone()}}}}), &schema, true);
            let _ = r.view();
            if let Ok(d) = crate::drivers::ovsdb::datum::Datum::from_json(&v) {
                for col in ["tag", "trunks", "other_config", "name"] {
                    let ty = schema.column("Port", col).unwrap();
                    let _ = d.to_text(ty);
                    let _ = d.to_salt(ty);
                    let _ = crate::drivers::ovsdb::datum::datum_from_user(&v, ty);
                }
            }
        }
    }

    #[test]
    fn clean_samples_decode() {
        let stream: Vec<u8> = samples().concat();
        assert_eq!(consume(&stream, &[7, 100, 3]).unwrap(), 5);
    }
}
