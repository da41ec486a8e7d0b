//! The two messages of a tool call, read from their lines without building them as JSON values,
//! and passed on as the peer wrote them, but for what the gateway must change.
//!
//! Over stdio, the time between reading a message and writing it on often weighs on a call's
//! latency more than its own length: on a virtual machine, a few microseconds more may put the
//! process woken next on a halted vCPU (see round eight of [`docs/performance.md`]). So for the two
//! messages of an allowed call, the relay reads only what it decides on and what it rewrites,
//! writes the line on, and does its bookkeeping afterwards:
//!
//! - a [`ToolCall`] request: its `id` (replaced by the gateway's own), `params.name`, and
//!   `params.arguments`, which the policy decides on; the request is written again from what
//!   was read, so that the upstream receives the arguments the policy saw (duplicate keys, or
//!   numbers a parser reads otherwise, cannot show it others);
//! - an [`Answer`] with a `result`: its `id` (replaced by the client's), and the result's
//!   `isError`, `resultType` and `requestState`, which the relay logs and binds; every other
//!   member of the result is checked as the JSON-value path reads it, and kept as written.
//!
//! Anything else about a line (another key, a duplicate key of the envelope or of those three
//! members of a result, an `error`, an escape in `jsonrpc` or `method`, an answer's id no `u64`
//! holds, a line the JSON-value path does not read) makes these functions return `None`: the
//! relay then parses the line as a JSON value and handles it as any other message.
//!
//! [`docs/performance.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/performance.md

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// A `tools/call` request the relay handles from its line: nothing else at its top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request<'a> {
    #[serde(borrow)]
    jsonrpc: &'a str,
    id: Value,
    #[serde(borrow)]
    method: &'a str,
    #[serde(borrow, deserialize_with = "object")]
    params: CallParams<'a>,
}

/// Its `params`: a name, arguments and `_meta`, nothing else (no `requestState`, no
/// `inputResponses`, no task).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, deserialize_with = "present")]
    arguments: Option<Value>,
    /// Read as a JSON value where it lies in the line (so that it nests no deeper than the
    /// JSON-value path reads), and written again from it: a key written twice reaches the
    /// upstream once, as that path sends it.
    #[serde(default, rename = "_meta", deserialize_with = "present")]
    meta: Option<Value>,
}

/// A member that is there, `null` included (`None` is for a member that is not).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A response's envelope with a `result`, with nothing else at its top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultEnvelope<'a> {
    #[serde(borrow)]
    jsonrpc: &'a RawValue,
    #[serde(borrow)]
    id: &'a RawValue,
    result: Scanned,
}

/// `T` read from a JSON object only: serde reads a struct from an array too (its fields in
/// order), which the JSON-value path does not read as a message, nor as `params`.
fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Object<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Object(std::marker::PhantomData))
}

/// `line` as a `T`, read from a JSON object only (see [`object`]).
fn from_object<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Option<T> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let t = object(&mut de).ok()?;
    de.end().ok()?;
    Some(t)
}

/// A JSON value read as [`Value`] reads it (the same numbers, strings and nesting), keeping
/// nothing of it.
struct Valid;

impl<'de> Deserialize<'de> for Valid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Valid, D::Error> {
        d.deserialize_any(Valid)
    }
}

impl<'de> serde::de::Visitor<'de> for Valid {
    type Value = Valid;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_str<E>(self, _: &str) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E>(self) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Valid, A::Error> {
        while map.next_key::<Valid>()?.is_some() {
            map.next_value::<Valid>()?;
        }
        Ok(Valid)
    }
}

/// Where `part` (a slice of `line`) lies in `line`.
fn span(line: &[u8], part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (line.get(start..end) == Some(part.as_bytes())).then_some(start..end)
}

/// `line` with the bytes of `range` replaced by `bytes`, and a newline.
fn replaced(line: &[u8], range: &Range<usize>, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + bytes.len() + 1);
    out.extend_from_slice(line.get(..range.start).unwrap_or_default());
    out.extend_from_slice(bytes);
    out.extend_from_slice(line.get(range.end..).unwrap_or_default());
    out.push(b'\n');
    out
}

/// A `tools/call` request read from its line.
#[derive(Debug)]
pub struct ToolCall<'a> {
    /// The request's id (a string or a number).
    pub id: Value,
    /// `params.name`.
    pub name: Cow<'a, str>,
    /// `params.arguments` (an empty object when absent or `null`).
    pub arguments: Value,
    /// How `params.arguments` was written: absent, `null`, or the object.
    arguments_given: Given,
    /// `params._meta` (an object).
    meta: Option<Value>,
}

/// How `params.arguments` was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Given {
    Absent,
    Null,
    Object,
}

impl ToolCall<'_> {
    /// Whether `params` has `_meta`.
    pub fn has_meta(&self) -> bool {
        self.meta.is_some()
    }
}

/// `line` as a `tools/call` request the relay can decide from its line: `None` when it is
/// anything else, or has anything the relay must look at as a JSON value.
pub fn tool_call(line: &[u8]) -> Option<ToolCall<'_>> {
    let request: Request<'_> = from_object(line)?;
    if request.jsonrpc != "2.0"
        || request.method != "tools/call"
        || !crate::jsonrpc::valid_id(&request.id)
    {
        return None;
    }
    let params = request.params;
    let (arguments, arguments_given) = match params.arguments {
        None => (Value::Object(serde_json::Map::new()), Given::Absent),
        Some(Value::Null) => (Value::Object(serde_json::Map::new()), Given::Null),
        Some(object @ Value::Object(_)) => (object, Given::Object),
        Some(_) => return None,
    };
    // `_meta` must be an object, as the relay reads it.
    if params.meta.as_ref().is_some_and(|m| !m.is_object()) {
        return None;
    }
    Some(ToolCall {
        id: request.id,
        name: params.name,
        arguments,
        arguments_given,
        meta: params.meta,
    })
}

impl ToolCall<'_> {
    /// The line to send the upstream: the request with `id` as its id, written again from what
    /// was read: the upstream gets the arguments the policy decided on.
    pub fn with_id(&self, id: &Value) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        let _ = serde_json::to_writer(&mut out, id);
        out.extend_from_slice(br#","method":"tools/call","params":{"name":"#);
        let _ = serde_json::to_writer(&mut out, &*self.name);
        match self.arguments_given {
            Given::Absent => {}
            Given::Null => out.extend_from_slice(br#","arguments":null"#),
            Given::Object => {
                out.extend_from_slice(br#","arguments":"#);
                let _ = serde_json::to_writer(&mut out, &self.arguments);
            }
        }
        if let Some(meta) = &self.meta {
            out.extend_from_slice(br#","_meta":"#);
            let _ = serde_json::to_writer(&mut out, meta);
        }
        out.extend_from_slice(b"}}\n");
        out
    }
}

/// A response with a `result`, read from its line, to a request the gateway sent (whose ids are
/// whole numbers).
#[derive(Debug)]
pub struct Answer<'a> {
    line: &'a [u8],
    id: &'a str,
    id_span: Range<usize>,
    says: ResultSays,
}

/// `line` as a response with a `result` whose id is a whole number: `None` for anything else.
pub fn answer(line: &[u8]) -> Option<Answer<'_>> {
    // A carriage return can only be whitespace between tokens here (a string holds none as
    // written), which the line would keep: a client reading with universal newlines (Node's
    // `readline`, Python's text mode) would end a line there, and read a message the upstream
    // wrote inside its result as one of its own, past the relay (a `tools/list` answer without
    // the gateway's filter, a request whose id the gateway never mapped). The JSON-value path
    // writes the message again without it.
    if line.contains(&b'\r') {
        return None;
    }
    let envelope: ResultEnvelope<'_> = from_object(line)?;
    let id = envelope.id.get();
    // Digits only, and no more than a `u64` holds: the JSON-value path reads a longer number
    // as a float, whose key is another (`1.8446744073709552e+19`).
    if envelope.jsonrpc.get() != r#""2.0""#
        || !id.bytes().all(|b| b.is_ascii_digit())
        || id.parse::<u64>().is_err()
    {
        return None;
    }
    let id_span = span(line, id)?;
    Some(Answer { line, id, id_span, says: envelope.result.0 })
}

/// What a tool's result says of itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResultSays {
    /// `isError` is `true`.
    pub is_error: bool,
    /// The `requestState` of a `resultType` `input_required` (a string).
    pub input_required: Option<String>,
}

impl ResultSays {
    /// What `result` (a tool's result as a JSON value) says.
    pub fn of(result: &Value) -> ResultSays {
        ResultSays::of_members(
            result.get("isError"),
            result.get("resultType"),
            result.get("requestState"),
        )
    }

    /// What a result with these members says.
    fn of_members(
        is_error: Option<&Value>,
        result_type: Option<&Value>,
        request_state: Option<&Value>,
    ) -> ResultSays {
        let input_required = (result_type.and_then(Value::as_str) == Some("input_required"))
            .then(|| request_state.and_then(Value::as_str).map(str::to_owned))
            .flatten();
        ResultSays { is_error: is_error.and_then(Value::as_bool) == Some(true), input_required }
    }
}

impl Answer<'_> {
    /// The key of the answered request's id (as [`crate::jsonrpc::id_key`] gives it).
    pub fn id_key(&self) -> &str {
        self.id
    }

    /// The line to send the client: the answer with `id` as its id.
    pub fn with_id(&self, id: &Value) -> Vec<u8> {
        let bytes = serde_json::to_vec(id).unwrap_or_default();
        replaced(self.line, &self.id_span, &bytes)
    }

    /// What the result says of itself, as [`ResultSays::of`] reads it from the result as a
    /// JSON value.
    pub fn says(&self) -> ResultSays {
        self.says.clone()
    }
}

/// A tool's result, read in the same pass as its envelope: what it says of itself (as
/// [`ResultSays::of`] reads it from the result as a JSON value), and nothing else kept.
///
/// The result is sent on as it is written, so it must be what the JSON-value path reads (no
/// lone surrogate, no number out of range, no deeper nesting than it takes: a line that path
/// drops must not reach the client here), and the members the relay reads (`isError`,
/// `resultType`, `requestState`) must each be there once at most: otherwise the line is left to
/// the JSON-value path, which sends the client the one the relay read (a client whose parser
/// keeps the first would read another: an error the log calls a success, another state).
struct Scanned(ResultSays);

impl<'de> Deserialize<'de> for Scanned {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scanned, D::Error> {
        // Only an object: a tool's result is one; anything else is left to the JSON-value path.
        d.deserialize_map(ScannedVisitor)
    }
}

struct ScannedVisitor;

impl<'de> serde::de::Visitor<'de> for ScannedVisitor {
    type Value = Scanned;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Scanned, A::Error> {
        use serde::de::Error;
        let (mut is_error, mut result_type, mut request_state) = (None, None, None);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match &*key {
                "isError" => &mut is_error,
                "resultType" => &mut result_type,
                "requestState" => &mut request_state,
                _ => {
                    map.next_value::<Valid>()?;
                    continue;
                }
            };
            if slot.replace(map.next_value::<Value>()?).is_some() {
                return Err(A::Error::custom("a member the relay reads is there twice"));
            }
        }
        Ok(Scanned(ResultSays::of_members(
            is_error.as_ref(),
            result_type.as_ref(),
            request_state.as_ref(),
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use serde_json::json;

    use super::*;

    fn line(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn parsed(bytes: &[u8]) -> Value {
        assert_eq!(bytes.last(), Some(&b'\n'));
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn a_call_is_read_and_sent_on_with_the_gateways_id() {
        let text = br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo","arguments":{"run_id":42},"_meta":{"progressToken":7}}}"#;
        let call = tool_call(text).unwrap();
        assert_eq!(call.id, json!("a-1"));
        assert_eq!(call.name, "echo");
        assert_eq!(call.arguments, json!({"run_id": 42}));
        assert!(call.has_meta());
        let sent = parsed(&call.with_id(&json!(17)));
        let mut expected: Value = serde_json::from_slice(text).unwrap();
        expected["id"] = json!(17);
        assert_eq!(sent, expected);
    }

    #[test]
    fn the_upstream_gets_the_arguments_the_policy_decided_on() {
        // A duplicate key: the policy saw the last value, and so must the upstream, whatever
        // its parser keeps of a duplicate.
        let text = br#"{"params":{"arguments":{"path":"/safe","path":"/etc/passwd","n":1.0e0},"name":"read"},"id":3,"method":"tools/call","jsonrpc":"2.0"}"#;
        let call = tool_call(text).unwrap();
        assert_eq!(call.arguments, json!({"path": "/etc/passwd", "n": 1.0}));
        let sent = call.with_id(&json!(9));
        let s = std::str::from_utf8(&sent).unwrap();
        assert!(!s.contains("/safe"), "{s}");
        assert!(!s.contains("e0"), "{s}");
        assert_eq!(parsed(&sent)["params"]["arguments"], call.arguments);
        assert_eq!(parsed(&sent)["id"], json!(9));
    }

    #[test]
    fn absent_or_null_arguments_are_decided_as_empty_and_sent_unchanged() {
        for params in [json!({"name": "t"}), json!({"name": "t", "arguments": null})] {
            let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
            let bytes = line(&msg);
            let call = tool_call(&bytes).unwrap();
            assert_eq!(call.arguments, json!({}));
            let mut expected = msg.clone();
            expected["id"] = json!(2);
            assert_eq!(parsed(&call.with_id(&json!(2))), expected);
        }
    }

    #[test]
    fn anything_else_is_left_to_the_json_value_path() {
        let base = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "arguments": {}, "_meta": {}}});
        assert!(tool_call(&line(&base)).is_some());
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for (pointer, value) in [
            ("/jsonrpc", json!("1.0")),
            ("/method", json!("tools/list")),
            ("/id", json!(null)),
            ("/id", json!(true)),
            ("/params/name", json!(5)),
            ("/params/arguments", json!([1])),
            ("/params/arguments", json!("x")),
            ("/params/_meta", json!(5)),
        ] {
            let mut m = base.clone();
            *m.pointer_mut(pointer).unwrap() = value;
            cases.push(line(&m));
        }
        for key in ["requestState", "inputResponses", "task"] {
            let mut m = base.clone();
            m["params"][key] = json!({});
            cases.push(line(&m));
        }
        let mut m = base.clone();
        m["extra"] = json!(1);
        cases.push(line(&m));
        let mut m = base.clone();
        m.as_object_mut().unwrap().remove("params");
        cases.push(line(&m));
        // A duplicate key of the envelope, an escape where the relay compares bytes, garbage.
        cases.push(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#
                .to_vec(),
        );
        cases.push(
            br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"a"}}"#
                .to_vec(),
        );
        cases.push(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"a"}}"#.to_vec(),
        );
        cases.push(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}} x"#.to_vec(),
        );
        // A number no JSON value holds, where the relay does not parse values.
        cases.push(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"n":1e400}}}"#
                .to_vec(),
        );
        cases.push(b"[]".to_vec());
        // Arrays, which serde reads a struct from (its fields in order) and the JSON-value path
        // refuses (a batch; `params` without a name): never a call here.
        cases.push(br#"["2.0",1,"tools/call",{"name":"a","arguments":{}}]"#.to_vec());
        cases.push(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a",{}]}"#.to_vec());
        cases.push(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a"]}"#.to_vec());
        for case in cases {
            assert!(tool_call(&case).is_none(), "{}", String::from_utf8_lossy(&case));
        }
    }

    #[test]
    fn an_answer_is_sent_on_with_the_clients_id() {
        let text =
            br#"{"result":{"content":[{"type":"text","text":"id: 12"}]},"id":12,"jsonrpc":"2.0"}"#;
        let answer = answer(text).unwrap();
        assert_eq!(answer.id_key(), crate::jsonrpc::id_key(&json!(12)));
        let sent = parsed(&answer.with_id(&json!("client-7")));
        let mut expected: Value = serde_json::from_slice(text).unwrap();
        expected["id"] = json!("client-7");
        assert_eq!(sent, expected);
        assert_eq!(answer.says(), ResultSays::default());
    }

    #[test]
    fn answers_the_relay_must_look_into_are_left_to_the_json_value_path() {
        for text in [
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#.as_slice(),
            br#"{"jsonrpc":"2.0","id":1,"result":{},"extra":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"id":2,"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":"1","result":{}}"#,
            br#"{"jsonrpc":"2.0","id":1.0,"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":-1,"result":{}}"#,
            // More than a `u64` holds: a float as a JSON value, whose key is another.
            br#"{"jsonrpc":"2.0","id":18446744073709551616,"result":{}}"#,
            br#"{"jsonrpc":"1.0","id":1,"result":{}}"#,
            br#"{"jsonrpc":"2.0","method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{}"#,
            // An array, which serde reads a struct from, and the JSON-value path drops.
            br#"["2.0",1,{}]"#,
            // A carriage return between tokens: a message of its own to a client that ends a
            // line there.
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":\r{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\r}}",
        ] {
            assert!(answer(text).is_none(), "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn a_result_says_what_its_json_value_says() {
        for result in [
            json!({}),
            json!({"isError": true}),
            json!({"isError": false}),
            json!({"isError": "true"}),
            json!({"isError": null}),
            json!({"resultType": "input_required", "requestState": "s1"}),
            json!({"resultType": "input_required", "requestState": "a\"b\\c\u{e9}"}),
            json!({"resultType": "input_required"}),
            json!({"resultType": "input_required", "requestState": 5}),
            json!({"resultType": "complete", "requestState": "s"}),
            json!({"resultType": 3}),
            json!({"resultType": "input\u{5f}required", "requestState": "s"}),
            json!({"isError": true, "resultType": "input_required", "requestState": "s"}),
        ] {
            let msg = json!({"jsonrpc": "2.0", "id": 1, "result": result});
            let bytes = line(&msg);
            assert_eq!(answer(&bytes).unwrap().says(), ResultSays::of(&result), "{result}");
        }
        // Not an object (a struct is also read from an array, its fields in order): left to
        // the JSON-value path.
        for result in [
            json!([true, "input_required", "s"]),
            json!([false, "input_required", "s"]),
            json!([true]),
            json!("text"),
            json!(null),
            json!(3),
        ] {
            let msg = json!({"jsonrpc": "2.0", "id": 1, "result": result});
            assert!(answer(&line(&msg)).is_none(), "{result}");
        }
        // A member the relay reads given twice: left to the JSON-value path, which sends the
        // client the one it read (sent on as written, a client keeping the first would read
        // a success the log calls an error, or another state than the one bound).
        for text in [
            br#"{"jsonrpc":"2.0","id":1,"result":{"isError":false,"isError":true}}"#.as_slice(),
            br#"{"jsonrpc":"2.0","id":1,"result":{"isError":false,"is\u0045rror":true}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","requestState":"a","requestState":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","resultType":"input_required","requestState":"a"}}"#,
        ] {
            assert!(answer(text).is_none(), "{}", String::from_utf8_lossy(text));
        }
        // Another member given twice is the client's to read, as from the upstream itself.
        let text =
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"content":[],"isError":true}}"#;
        assert!(answer(text).unwrap().says().is_error);
        // An escape in `resultType`: decoded.
        let text = br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input\u005frequired","requestState":"s"}}"#;
        assert_eq!(answer(text).unwrap().says().input_required.as_deref(), Some("s"));
    }
}

#[cfg(test)]
mod differential {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use serde_json::Value;

    use super::*;

    fn is_value(line: &str) -> bool {
        serde_json::from_str::<Value>(line).is_ok()
    }

    /// `n` arrays nested in one another.
    fn deep(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    /// The relay reads a line here only when the JSON-value path would have read it: otherwise
    /// a line that path refuses (a parse error for a call; a dropped line for an answer) would
    /// go through, to the upstream or to the client.
    #[test]
    fn a_call_is_read_here_only_when_its_line_is_a_json_value() {
        let mut lines = Vec::new();
        for n in 110..140 {
            lines.push(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","_meta":{{"d":{}}}}}}}"#,
                deep(n)
            ));
            lines.push(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{"d":{}}}}}}}"#,
                deep(n)
            ));
        }
        for bad in [r#""\ud800""#, "1e400", r#""\udc00x""#, "-1e999"] {
            lines.push(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","_meta":{{"x":{bad}}}}}}}"#
            ));
            lines.push(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{"x":{bad}}}}}}}"#
            ));
        }
        for line in &lines {
            if tool_call(line.as_bytes()).is_some() {
                assert!(is_value(line), "read here, but not a JSON value: {line}");
            }
        }
    }

    /// `_meta` reaches the upstream as the JSON-value path sends it: a key written twice, once
    /// (the last, which is what the relay read), and escapes and numbers written again.
    #[test]
    fn meta_is_sent_on_as_the_json_value_path_sends_it() {
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":"p1","progressToken":"p2","n":1.0e0,"\u0061":"\u0062"}}}"#;
        let call = tool_call(line).unwrap();
        let sent = call.with_id(&serde_json::json!(5));
        let text = std::str::from_utf8(&sent).unwrap();
        assert!(!text.contains("p1"), "{text}");
        assert_eq!(text.matches("progressToken").count(), 1, "{text}");
        let mut expected: Value = serde_json::from_slice(line).unwrap();
        expected["id"] = serde_json::json!(5);
        let expected = format!("{}\n", serde_json::to_string(&expected).unwrap());
        let sent: Value = serde_json::from_str(text).unwrap();
        assert_eq!(sent, serde_json::from_str::<Value>(&expected).unwrap());
        assert!(text.contains(r#""_meta":{"a":"b","n":1.0,"progressToken":"p2"}"#), "{text}");
    }

    #[test]
    fn an_answer_is_read_here_only_when_its_line_is_a_json_value() {
        let mut lines = Vec::new();
        for n in 110..140 {
            lines.push(format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"d":{}}}}}"#, deep(n)));
        }
        for bad in [r#""\ud800""#, "1e400", r#""\udc00x""#, "-1e999", r#""\ud800\u0041""#] {
            lines.push(format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"x":{bad}}}}}"#));
            lines.push(format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{{bad}:1}}}}"#));
        }
        for bad in [r#""\ud800""#, "1e400"] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"x":{bad}}}}}"#);
            assert!(answer(line.as_bytes()).is_none(), "{line}");
        }
        for line in &lines {
            if answer(line.as_bytes()).is_some() {
                assert!(is_value(line), "read here, but not a JSON value: {line}");
            }
        }
    }
}

/// Hostile lines, made by mutating well-formed ones at random (a fixed seed, so that a failure
/// is reproduced): whatever `answer` or `tool_call` reads must be read the same by the JSON-value
/// path (the same message, the same id, the same result members), and what they send on must
/// read the same to a peer whether its parser keeps the first or the last of a duplicate key.
#[cfg(test)]
mod mutated {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::jsonrpc::{self, Kind};

    /// A JSON value as a parser that keeps the first of a duplicate key reads it.
    struct FirstWins(Value);

    impl<'de> Deserialize<'de> for FirstWins {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FirstWins, D::Error> {
            d.deserialize_any(FirstWinsVisitor)
        }
    }

    struct FirstWinsVisitor;

    impl<'de> serde::de::Visitor<'de> for FirstWinsVisitor {
        type Value = FirstWins;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<FirstWins, E> {
            Ok(FirstWins(Value::Bool(v)))
        }
        fn visit_i64<E>(self, v: i64) -> Result<FirstWins, E> {
            Ok(FirstWins(Value::from(v)))
        }
        fn visit_u64<E>(self, v: u64) -> Result<FirstWins, E> {
            Ok(FirstWins(Value::from(v)))
        }
        fn visit_f64<E>(self, v: f64) -> Result<FirstWins, E> {
            Ok(FirstWins(Value::from(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<FirstWins, E> {
            Ok(FirstWins(Value::from(v)))
        }
        fn visit_unit<E>(self) -> Result<FirstWins, E> {
            Ok(FirstWins(Value::Null))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<FirstWins, A::Error> {
            let mut out = Vec::new();
            while let Some(FirstWins(v)) = seq.next_element()? {
                out.push(v);
            }
            Ok(FirstWins(Value::Array(out)))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<FirstWins, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let FirstWins(v) = map.next_value()?;
                out.entry(key).or_insert(v);
            }
            Ok(FirstWins(Value::Object(out)))
        }
    }

    fn first_wins(bytes: &[u8]) -> Value {
        serde_json::from_slice::<FirstWins>(bytes).unwrap().0
    }

    /// xorshift64*: the same lines on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// What a hostile peer splices into a line.
    const PIECES: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b" ",
        b"0",
        b"7",
        b"-",
        b".",
        b"e",
        b"null",
        b"true",
        b"false",
        b"1e400",
        b"-1e999",
        b"18446744073709551616",
        b"\\ud800",
        b"\\udc00",
        b"\\ud83d\\ude00",
        b"\\u0045",
        b"\\u0000",
        b"\\u005f",
        b"\\/",
        b"\xff",
        b"\xc3",
        b"\xed\xa0\x80",
        b"\t",
        b"\r",
        b"\n",
        b"\x01",
        b"\"isError\":true,",
        b"\"is\\u0045rror\":false,",
        b"\"isError\":",
        b"\"resultType\":\"input_required\",",
        b"\"requestState\":\"evil\",",
        b"\"req\\u0075estState\":\"x\",",
        b"\"id\":2,",
        b"\"i\\u0064\":3,",
        b"\"jsonrpc\":\"2.0\",",
        b"\"error\":{\"code\":1,\"message\":\"m\"},",
        b"\"result\":{},",
        b"\"method\":\"tools/call\",",
        b"\"name\":\"b\",",
        b"\"arguments\":{\"path\":\"/etc\"},",
        b"\"_meta\":{},",
        b"\"params\":{\"name\":\"c\"},",
        b"\"mcp-policy-gateway/relatedRequest\":1,",
        b"[[[[[[[[[[",
        b"]]]]]]]]]]",
    ];

    fn mutate(rng: &mut Rng, line: &mut Vec<u8>) {
        for _ in 0..=rng.below(3) {
            let at = rng.below(line.len() + 1);
            match rng.below(4) {
                0 if at < line.len() => {
                    line.remove(at);
                }
                1 if at < line.len() => {
                    let piece = PIECES[rng.below(PIECES.len())];
                    line.splice(at..(at + 1).min(line.len()), piece.iter().copied());
                }
                _ => {
                    let piece = PIECES[rng.below(PIECES.len())];
                    line.splice(at..at, piece.iter().copied());
                }
            }
        }
    }

    fn check_answer(line: &[u8]) -> bool {
        let Some(a) = answer(line) else { return false };
        let shown = String::from_utf8_lossy(line);
        let v: Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("read here, not a JSON value ({e}): {shown}"));
        let Kind::Response { id } = jsonrpc::classify(&v) else {
            panic!("read here, not a response: {shown}")
        };
        assert_eq!(jsonrpc::id_key(id), a.id_key(), "{shown}");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "jsonrpc", "result"], "{shown}");
        assert_eq!(a.says(), ResultSays::of(&v["result"]), "{shown}");
        // What the client gets: what the JSON-value path would send, to either parser.
        let client_id = json!("c-1");
        let mut expected = v.clone();
        jsonrpc::set_id(&mut expected, client_id.clone());
        let sent = a.with_id(&client_id);
        assert!(!sent.contains(&b'\r'), "{shown}");
        assert_eq!(serde_json::from_slice::<Value>(&sent).unwrap(), expected, "{shown}");
        let first = first_wins(&sent);
        assert_eq!(first["id"], client_id, "{shown}");
        assert_eq!(first["jsonrpc"], json!("2.0"), "{shown}");
        assert_eq!(ResultSays::of(&first["result"]), a.says(), "{shown}");
        true
    }

    fn check_call(line: &[u8]) -> bool {
        let Some(c) = tool_call(line) else { return false };
        let shown = String::from_utf8_lossy(line);
        let v: Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("read here, not a JSON value ({e}): {shown}"));
        let Kind::Request { id, method: "tools/call" } = jsonrpc::classify(&v) else {
            panic!("read here, not a `tools/call`: {shown}")
        };
        assert_eq!(&c.id, id, "{shown}");
        let params = v["params"].as_object().unwrap();
        assert_eq!(params.get("name").and_then(Value::as_str), Some(&*c.name), "{shown}");
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(a) => a.clone(),
        };
        assert_eq!(c.arguments, arguments, "{shown}");
        // The upstream gets what the policy decided on, whichever duplicate its parser keeps.
        let up_id = json!(41);
        let mut expected = v.clone();
        jsonrpc::set_id(&mut expected, up_id.clone());
        let sent = c.with_id(&up_id);
        assert_eq!(serde_json::from_slice::<Value>(&sent).unwrap(), expected, "{shown}");
        assert_eq!(first_wins(&sent), expected, "{shown}");
        true
    }

    #[test]
    fn mutated_lines_are_read_here_only_as_the_json_value_path_reads_them() {
        let answers = [
            r#"{"jsonrpc":"2.0","id":12,"result":{"content":[{"type":"text","text":"ok \u00e9"}],"isError":false}}"#,
            r#"{"result":{"resultType":"input_required","requestState":"s1","inputRequests":{}},"id":3,"jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"isError":true,"structuredContent":{"n":[1,2.5,-3e2]}}}"#,
            r#"{"jsonrpc":"2.0","id":0,"result":[]}"#,
        ];
        let calls = [
            r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo","arguments":{"run_id":42,"p":"\u00e9"},"_meta":{"progressToken":7}}}"#,
            r#"{"params":{"arguments":{"path":"/safe"},"name":"read"},"id":3,"method":"tools/call","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","arguments":null}}"#,
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut read_answers, mut read_calls) = (0, 0);
        for round in 0..40_000 {
            let mut line = answers[round % answers.len()].as_bytes().to_vec();
            mutate(&mut rng, &mut line);
            read_answers += usize::from(check_answer(&line));
            let mut line = calls[round % calls.len()].as_bytes().to_vec();
            mutate(&mut rng, &mut line);
            read_calls += usize::from(check_call(&line));
        }
        // The mutations leave many lines readable here: the checks above did run.
        assert!(read_answers > 1_000, "{read_answers}");
        assert!(read_calls > 1_000, "{read_calls}");
    }
}
