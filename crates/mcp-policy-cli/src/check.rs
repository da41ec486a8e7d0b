//! `mcp-policy check`: replay a JSON-lines call log, one decision per line, in constant memory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use mcp_policy::{Decision, DecisionKind, Policy, Timestamp, ToolCall};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::replay::Replay;
use crate::time::{parse_at, type_name};
use crate::{Failure, Out, Result};

/// The fields of a call line; any other is an error, so a typo (`grnat`) cannot replay the call
/// as someone else's.
pub(crate) const CALL_FIELDS: &[&str] =
    &["tool", "arguments", "grant", "session", "context", "at", "approved"];

pub(crate) fn run(
    policy_path: &Path,
    calls: Option<&Path>,
    summary: bool,
    out: &mut Out<'_>,
) -> Result<u8> {
    let policy = load_policy(policy_path)?;
    let input: Box<dyn Read> = match calls {
        Some(path) => Box::new(
            std::fs::File::open(path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdin().lock()),
    };
    let wall = Timestamp::from_system_time(std::time::SystemTime::now());
    let mut replay = Replay::new(policy, wall);
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut tally = summary.then(Tally::default);
    let mut buf = Vec::new();
    let mut scratch = Vec::with_capacity(256);
    let mut line_no = 0usize;
    let mut malformed = 0usize;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| Failure::Usage(format!("cannot read the calls: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let result = match std::str::from_utf8(&buf) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => one(&mut replay, line.trim(), line_no, tally.as_mut(), &mut scratch, out),
            Err(_) => Err(Line::Malformed("the line is not UTF-8".to_owned())),
        };
        match result {
            Ok(()) => {}
            Err(Line::Malformed(message)) => {
                malformed += 1;
                let v = serde_json::json!({ "line": line_no, "error": message });
                writeln!(out, "{v}")?;
            }
            Err(Line::Output(e)) => return Err(Failure::Output(e)),
        }
    }
    if let Some(tally) = &tally {
        // The decisions are all out before the summary comes.
        out.flush()?;
        tally.print(malformed);
    }
    if malformed > 0 {
        crate::report::note_line(&format!(
            "{malformed} malformed line{} skipped",
            if malformed == 1 { "" } else { "s" }
        ));
        return Ok(1);
    }
    Ok(0)
}

/// Loads the policy a replay runs under; an invalid one is a usage error.
pub(crate) fn load_policy(path: &Path) -> Result<Policy> {
    Policy::from_path(path).map_err(|e| {
        Failure::Usage(match e {
            mcp_policy::PolicyError::Invalid(_) => format!(
                "`{}` is not a valid policy (run `mcp-policy validate {}`): {e}",
                path.display(),
                path.display()
            ),
            other => other.to_string(),
        })
    })
}

enum Line {
    Malformed(String),
    Output(std::io::Error),
}

/// A decision as `check` prints it: the decision JSON with the input line's number first.
#[derive(Serialize)]
struct Printed<'a, 'd> {
    line: usize,
    #[serde(flatten)]
    decision: &'a Decision<'d>,
}

/// Decides one line and writes its decision.
fn one(
    replay: &mut Replay,
    line: &str,
    line_no: usize,
    tally: Option<&mut Tally>,
    scratch: &mut Vec<u8>,
    out: &mut Out<'_>,
) -> std::result::Result<(), Line> {
    // The common line (known fields, plain strings) is read without building a map; anything
    // else takes the general path, which gives every error message.
    if let Some(fast) = FastLine::parse(line) {
        let (call, at, approved) = fast.call();
        return decide(replay, &call, at, approved, line_no, tally, scratch, out);
    }
    let v: Value =
        serde_json::from_str(line).map_err(|e| Line::Malformed(format!("not JSON: {e}")))?;
    let Value::Object(map) = &v else {
        return Err(Line::Malformed(format!("a call is a JSON object, found {}", type_name(&v))));
    };
    let (call, at, approved) = call_of(map).map_err(Line::Malformed)?;
    decide(replay, &call, at, approved, line_no, tally, scratch, out)
}

/// Decides `call` and writes its decision, in one write.
#[allow(clippy::too_many_arguments)]
fn decide(
    replay: &mut Replay,
    call: &ToolCall<'_>,
    at: Option<Timestamp>,
    approved: bool,
    line_no: usize,
    tally: Option<&mut Tally>,
    scratch: &mut Vec<u8>,
    out: &mut Out<'_>,
) -> std::result::Result<(), Line> {
    replay.decide(call, at, approved, |d| {
        if let Some(t) = tally {
            t.add(d);
        }
        // One write per line: serde_json writes in small pieces, each a dynamic call on `out`.
        print_into(scratch, line_no, d).map_err(|e| Line::Output(e.into()))?;
        out.write_all(scratch).map_err(Line::Output)
    })
}

/// The output line of a decision, with its newline, into `scratch`: `{"line":N,` then the
/// decision's own fields, which is what [`Printed`] (a flattened map) gives, without serde's
/// buffering of flattened fields.
fn print_into(scratch: &mut Vec<u8>, line_no: usize, d: &Decision<'_>) -> serde_json::Result<()> {
    scratch.clear();
    scratch.extend_from_slice(b"{\"line\":");
    scratch.extend_from_slice(itoa_usize(line_no, &mut [0u8; 20]));
    let at = scratch.len();
    serde_json::to_writer(&mut *scratch, d)?;
    match (scratch.get(at), scratch.get(at + 1)) {
        // A non-empty map: its `{` becomes the `,` after the line number.
        (Some(b'{'), Some(b)) if *b != b'}' => {
            if let Some(b) = scratch.get_mut(at) {
                *b = b',';
            }
        }
        _ => {
            scratch.clear();
            serde_json::to_writer(&mut *scratch, &Printed { line: line_no, decision: d })?;
        }
    }
    scratch.push(b'\n');
    Ok(())
}

/// The decimal digits of `n`, written at the end of `buf`.
fn itoa_usize(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            // `n % 10` is a digit.
            #[allow(clippy::cast_possible_truncation)]
            let digit = (n % 10) as u8;
            *b = b'0' + digit;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}

/// A call line in its common form, read in place: each field's JSON text borrowed from the line
/// (no map, no copy of the keys or of the plain strings).
#[derive(Default)]
struct FastLine<'a> {
    tool: Option<&'a RawValue>,
    arguments: Option<&'a RawValue>,
    grant: Option<&'a RawValue>,
    session: Option<&'a RawValue>,
    context: Option<&'a RawValue>,
    at: Option<&'a RawValue>,
    approved: Option<&'a RawValue>,
}

/// What [`FastLine::parse`] reads once its fields are checked.
struct FastCall<'a> {
    tool: &'a str,
    arguments: Option<Value>,
    grant: Option<&'a str>,
    session: Option<&'a str>,
    context: Option<Value>,
    at: Option<Timestamp>,
    approved: bool,
}

impl<'a> FastLine<'a> {
    /// The line's call when it is an object of known fields, each once, with a plain string
    /// for `tool` and `grant` (and `session` unless null), an object for `arguments`, a valid
    /// `at` and a boolean `approved`; else `None`, and the general path decides the line (and
    /// words any error).
    fn parse(line: &'a str) -> Option<FastCall<'a>> {
        let fields: FastLine<'a> = serde_json::from_str(line).ok()?;
        let tool = plain_str(fields.tool?)?;
        let arguments = match fields.arguments {
            Some(raw) => match serde_json::from_str(raw.get()).ok()? {
                v @ Value::Object(_) => Some(v),
                _ => return None,
            },
            None => None,
        };
        let grant = match fields.grant {
            Some(raw) => Some(plain_str(raw)?),
            None => None,
        };
        let session = match fields.session {
            Some(raw) if raw.get() == "null" => None,
            Some(raw) => Some(plain_str(raw)?),
            None => None,
        };
        let context = match fields.context {
            Some(raw) => Some(serde_json::from_str(raw.get()).ok()?),
            None => None,
        };
        let at = match fields.at {
            Some(raw) => match plain_seconds(raw.get()) {
                Some(t) => Some(t),
                None => Some(parse_at(&serde_json::from_str(raw.get()).ok()?).ok()?),
            },
            None => None,
        };
        let approved = match fields.approved.map(RawValue::get) {
            Some("true") => true,
            Some("false") | None => false,
            Some(_) => return None,
        };
        Some(FastCall { tool, arguments, grant, session, context, at, approved })
    }
}

impl FastCall<'_> {
    fn call(&self) -> (ToolCall<'_>, Option<Timestamp>, bool) {
        let mut call = ToolCall::new(self.tool).with_optional_session(self.session);
        if let Some(a) = &self.arguments {
            call = call.with_arguments(a);
        }
        if let Some(g) = self.grant {
            call = call.with_grant(g);
        }
        if let Some(c) = &self.context {
            call = call.with_context(c);
        }
        (call, self.at, self.approved)
    }
}

/// The most significant digits a plain `at` may have: a double holds every decimal of 15
/// significant digits exactly enough that the general path (a double, then its shortest
/// decimal) reads back the same decimal, so reading the text directly gives the same time.
const PLAIN_DIGITS: usize = 15;

/// Unix seconds written as `digits` or `digits.digits` (at most 9 decimals and
/// [`PLAIN_DIGITS`] significant digits, inside the replayable range), read straight from the
/// text; `None` for anything else (the general path reads it, or words the error).
fn plain_seconds(text: &str) -> Option<Timestamp> {
    const NANOS: u64 = 1_000_000_000;
    /// Unix seconds of 2501-01-01T00:00:00Z, as in `time`.
    const END_SECONDS: u64 = 16_756_761_600;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || (text.contains('.') && fraction.is_empty())
        || fraction.len() > 9
        || whole.trim_start_matches('0').len() + fraction.len() > PLAIN_DIGITS
    {
        return None;
    }
    let seconds: u64 = whole.parse().ok()?;
    if seconds >= END_SECONDS {
        return None;
    }
    let mut nanos: u64 = 0;
    for i in 0..9 {
        let d = fraction.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        nanos = nanos * 10 + d;
    }
    Some(Timestamp::from_unix_nanos(seconds * NANOS + nanos))
}

/// The text of a JSON string without escapes, borrowed; `None` for anything else.
fn plain_str(raw: &RawValue) -> Option<&str> {
    let inner = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for FastLine<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Fields<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Fields<'a> {
            type Value = FastLine<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a call object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> std::result::Result<FastLine<'a>, M::Error> {
                use serde::de::Error;
                let mut line = FastLine::default();
                // A key with an escape, an unknown key or a repeated one: the general path.
                while let Some(key) = map.next_key::<&'de str>()? {
                    let slot = match key {
                        "tool" => &mut line.tool,
                        "arguments" => &mut line.arguments,
                        "grant" => &mut line.grant,
                        "session" => &mut line.session,
                        "context" => &mut line.context,
                        "at" => &mut line.at,
                        "approved" => &mut line.approved,
                        _ => return Err(M::Error::custom("not a plain call")),
                    };
                    if slot.replace(map.next_value::<&'de RawValue>()?).is_some() {
                        return Err(M::Error::custom("a repeated field"));
                    }
                }
                Ok(line)
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// The call a JSON object describes, with its `at` and `approved`.
pub(crate) fn call_of(
    map: &Map<String, Value>,
) -> std::result::Result<(ToolCall<'_>, Option<Timestamp>, bool), String> {
    if let Some(unknown) = map.keys().find(|k| !CALL_FIELDS.contains(&k.as_str())) {
        return Err(unknown_field(unknown, CALL_FIELDS));
    }
    let tool = match map.get("tool") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => return Err(format!("`tool` must be a string, found {}", type_name(other))),
        None => return Err("`tool` is missing".to_owned()),
    };
    let mut call = ToolCall::new(tool);
    match map.get("arguments") {
        Some(a @ Value::Object(_)) => call = call.with_arguments(a),
        Some(other) => {
            return Err(format!("`arguments` must be an object, found {}", type_name(other)));
        }
        None => {}
    }
    match map.get("grant") {
        Some(Value::String(g)) => call = call.with_grant(g),
        Some(other) => return Err(format!("`grant` must be a string, found {}", type_name(other))),
        None => {}
    }
    match map.get("session") {
        Some(Value::String(s)) => call = call.with_session(s),
        Some(Value::Null) | None => {}
        Some(other) => {
            return Err(format!("`session` must be a string or null, found {}", type_name(other)));
        }
    }
    if let Some(c) = map.get("context") {
        call = call.with_context(c);
    }
    let at = map.get("at").map(parse_at).transpose()?;
    let approved = match map.get("approved") {
        Some(Value::Bool(b)) => *b,
        None => false,
        Some(other) => {
            return Err(format!("`approved` must be true or false, found {}", type_name(other)));
        }
    };
    Ok((call, at, approved))
}

/// "unknown field `grnat`; did you mean `grant`?" (or the list of fields when nothing is close).
pub(crate) fn unknown_field(field: &str, fields: &[&str]) -> String {
    match crate::report::closest(field, fields.iter().copied()) {
        Some(f) => format!("unknown field `{field}`; did you mean `{f}`?"),
        None => format!(
            "unknown field `{field}`; a call has {}",
            fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The order kinds are listed in a summary.
const KINDS: [DecisionKind; 4] =
    [DecisionKind::Allow, DecisionKind::Deny, DecisionKind::Limit, DecisionKind::Approve];

/// Decisions counted per kind.
#[derive(Default)]
struct Counts([u64; KINDS.len()]);

impl Counts {
    fn add(&mut self, kind: DecisionKind) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind)
            && let Some(c) = self.0.get_mut(i)
        {
            *c += 1;
        }
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = KINDS
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{n} {}", k.as_str()))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// `check --summary`: decisions per tool and per rule.
#[derive(Default)]
struct Tally {
    all: Counts,
    tools: HashMap<String, Counts>,
    rules: HashMap<String, Counts>,
}

impl Tally {
    fn add(&mut self, d: &Decision<'_>) {
        self.all.add(d.kind());
        bump(&mut self.tools, d.tool(), d.kind());
        bump(&mut self.rules, &d.rule(), d.kind());
    }

    fn print(&self, malformed: usize) {
        let mut text = format!("summary: {} calls", self.all.total());
        if self.all.total() > 0 {
            text.push_str(&format!(": {}", self.all));
        }
        if malformed > 0 {
            text.push_str(&format!(
                "; {malformed} malformed line{}",
                if malformed == 1 { "" } else { "s" }
            ));
        }
        text.push('\n');
        for (title, map) in [("by tool", &self.tools), ("by rule", &self.rules)] {
            let mut rows: Vec<(&String, &Counts)> = map.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
            text.push_str(&format!("{title}:\n"));
            for (key, counts) in rows {
                text.push_str(&format!("  {key:width$}  {counts}\n"));
            }
        }
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

fn bump(map: &mut HashMap<String, Counts>, key: &str, kind: DecisionKind) {
    match map.get_mut(key) {
        Some(c) => c.add(kind),
        None => map.entry(key.to_owned()).or_default().add(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_lines_are_the_flattened_decision() {
        let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {
            "t": {"limits": [{"counter": "c", "window": "minute", "max": 1}]},
            "a": {"approve_if": [{"conditions": []}]}}}"#
            .parse()
            .unwrap();
        let mut replay = Replay::new(policy, Timestamp::from_unix_seconds(1_767_225_600.0));
        let args = serde_json::json!({"x": "q\"uote"});
        let mut scratch = Vec::new();
        for (i, tool) in ["t", "t", "a", "unknown \u{e9}\"", "t"].into_iter().enumerate() {
            let call = ToolCall::new(tool).with_arguments(&args).with_grant("g");
            let line_no = [0, 1, 9, 10, usize::MAX][i];
            replay.decide(&call, None, false, |d| {
                let mut expected =
                    serde_json::to_vec(&Printed { line: line_no, decision: d }).unwrap();
                expected.push(b'\n');
                print_into(&mut scratch, line_no, d).unwrap();
                assert_eq!(String::from_utf8_lossy(&scratch), String::from_utf8_lossy(&expected));
            });
        }
    }

    #[test]
    fn plain_seconds_read_what_parse_at_reads() {
        let mut texts: Vec<String> = [
            "0",
            "0.5",
            "1",
            "1767225600",
            "1767225600.0",
            "1767225600.001",
            "1767225600.1",
            "1767225600.12345",
            "16756761599",
            "16756761599.9999",
            "16756761600",
            "0.000000001",
            "1767225600.123456789",
            "1767225600.1234567",
            "99999999999.9999",
            "123.456",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every form the generator of the benchmark writes, and more.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = x % 20_000_000_000;
            let decimals = (x >> 40) % 10;
            let frac = (x >> 20) % 10u64.pow(decimals as u32);
            texts.push(if decimals == 0 {
                secs.to_string()
            } else {
                format!("{secs}.{frac:0width$}", width = decimals as usize)
            });
        }
        let mut fast = 0;
        for text in &texts {
            let general = parse_at(&serde_json::from_str(text).unwrap()).ok();
            if let Some(t) = plain_seconds(text) {
                fast += 1;
                assert_eq!(Some(t), general, "{text}");
            }
        }
        // Most texts of 15 significant digits or fewer, inside the range, take the fast path.
        assert!(fast > texts.len() / 4, "{fast} of {}", texts.len());
        for text in ["-1", "1e9", "1.", ".5", "1.0000000001", "16756761600.5", "1,5", ""] {
            assert!(plain_seconds(text).is_none(), "{text}: the general path reads it");
        }
    }

    #[test]
    fn the_fast_path_reads_what_the_general_path_reads() {
        let lines = [
            r#"{"tool":"cancel_run","arguments":{"run_id":1},"grant":"agent-1","at":1767225600.5}"#,
            r#"{"at":"2026-01-01T00:00:00Z","session":null,"tool":"t","approved":true}"#,
            r#"{ "tool" : "t" , "session" : "s", "context": {"env": "prod"}, "approved": false }"#,
        ];
        for line in lines {
            let fast = FastLine::parse(line).unwrap_or_else(|| panic!("{line}"));
            let (call, at, approved) = fast.call();
            let v: Value = serde_json::from_str(line).unwrap();
            let (general, general_at, general_approved) = call_of(v.as_object().unwrap()).unwrap();
            assert_eq!(format!("{call:?}"), format!("{general:?}"), "{line}");
            assert_eq!((at, approved), (general_at, general_approved), "{line}");
        }
        // Everything else goes to the general path, which words the errors.
        for line in [
            r#"{"tool":"t","tool":"u"}"#,
            r#"{"tool":"t\u0041"}"#,
            r#"{"tool":1}"#,
            r#"{"tool":"t","grnat":"g"}"#,
            r#"{"tool":"t","arguments":[]}"#,
            r#"{"tool":"t","grant":null}"#,
            r#"{"tool":"t","at":-1}"#,
            r#"{"tool":"t","approved":1}"#,
            r#"{"tool":"t"} x"#,
            r#"[]"#,
            r#"{"arguments":{}}"#,
            r#"{"t\u006fol":"t"}"#,
        ] {
            assert!(FastLine::parse(line).is_none(), "{line}");
        }
    }
}
