//! `mcp-policy check`: replay a JSON-lines call log, one decision per line, in constant memory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use mcp_policy::{Decision, DecisionKind, Policy, Timestamp, ToolCall};
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
    let mut state = State {
        replay: Replay::new(policy, wall),
        fast: FastLine::default(),
        tally: summary.then(Tally::default),
        scratch: Vec::with_capacity(256),
        line_no: 0,
        malformed: 0,
    };
    let mut input = BufReader::with_capacity(1 << 18, input);
    // Lines are decided where they lie in the reader's buffer; only a line cut by the buffer's
    // end is copied (into `pending`).
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Usage(format!("cannot read the calls: {e}"))),
        };
        if chunk.is_empty() {
            if !pending.is_empty() {
                state.line(&pending, out)?;
            }
            break;
        }
        let used = chunk.len();
        let mut rest = chunk;
        if !pending.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let (head, tail) = rest.split_at(i + 1);
                    pending.extend_from_slice(head);
                    state.line(&pending, out)?;
                    pending.clear();
                    rest = tail;
                }
                None => {
                    pending.extend_from_slice(rest);
                    input.consume(used);
                    continue;
                }
            }
        }
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(i + 1);
            state.line(line, out)?;
            rest = tail;
        }
        pending.extend_from_slice(rest);
        input.consume(used);
    }
    let State { tally, malformed, .. } = state;
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

/// A replay's state from line to line.
struct State {
    replay: Replay,
    fast: FastLine,
    tally: Option<Tally>,
    scratch: Vec<u8>,
    line_no: usize,
    malformed: usize,
}

impl State {
    /// Decides one input line (with its newline, if any) and writes its decision or its error.
    fn line(&mut self, bytes: &[u8], out: &mut Out<'_>) -> Result<()> {
        self.line_no += 1;
        let line_no = self.line_no;
        let result = match std::str::from_utf8(bytes) {
            Ok(line) => match trim(line) {
                "" => return Ok(()),
                line => one(self, line, out),
            },
            Err(_) => Err(Line::Malformed("the line is not UTF-8".to_owned())),
        };
        match result {
            Ok(()) => Ok(()),
            Err(Line::Malformed(message)) => {
                self.malformed += 1;
                let v = serde_json::json!({ "line": line_no, "error": message });
                writeln!(out, "{v}")?;
                Ok(())
            }
            Err(Line::Output(e)) => Err(Failure::Output(e)),
        }
    }
}

enum Line {
    Malformed(String),
    Output(std::io::Error),
}

/// A decision as `check` prints it: the decision JSON with the input line's number first
/// (what [`print_into`] writes without serde).
#[cfg(test)]
#[derive(serde::Serialize)]
struct Printed<'a, 'd> {
    line: usize,
    #[serde(flatten)]
    decision: &'a Decision<'d>,
}

/// `line` without the whitespace around it, as `str::trim` removes it (Unicode's), the common
/// case (ASCII at both ends) without decoding characters.
fn trim(line: &str) -> &str {
    let inner = line.trim_ascii();
    match (inner.as_bytes().first(), inner.as_bytes().last()) {
        // `trim_ascii` leaves the vertical tab, which `trim` removes.
        (Some(a), Some(z)) if a.is_ascii() && z.is_ascii() && *a != 0x0b && *z != 0x0b => inner,
        _ => inner.trim(),
    }
}

/// Decides one line and writes its decision.
fn one(state: &mut State, line: &str, out: &mut Out<'_>) -> std::result::Result<(), Line> {
    let State { replay, fast, tally, scratch, line_no, .. } = state;
    // The common line (known fields, plain strings) is read without building a map; anything
    // else takes the general path, which gives every error message.
    if let Some(fast) = fast.parse(line) {
        let (call, at, approved) = fast.call();
        return decide(replay, &call, at, approved, *line_no, tally.as_mut(), scratch, out);
    }
    let v: Value =
        serde_json::from_str(line).map_err(|e| Line::Malformed(format!("not JSON: {e}")))?;
    let Value::Object(map) = &v else {
        return Err(Line::Malformed(format!("a call is a JSON object, found {}", type_name(&v))));
    };
    let (call, at, approved) = call_of(map).map_err(Line::Malformed)?;
    decide(replay, &call, at, approved, *line_no, tally.as_mut(), scratch, out)
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
/// decision's own fields, byte for byte what serde_json writes for `Printed` (a flattened
/// map), without serde: each string is copied as it is unless it holds a byte JSON escapes.
fn print_into(scratch: &mut Vec<u8>, line_no: usize, d: &Decision<'_>) -> serde_json::Result<()> {
    scratch.clear();
    scratch.extend_from_slice(b"{\"line\":");
    scratch.extend_from_slice(itoa_usize(line_no, &mut [0u8; 20]));
    // The fields and their order are those of `Decision`'s `Serialize`.
    // The kind is one of four plain words: nothing to escape.
    scratch.extend_from_slice(b",\"decision\":\"");
    scratch.extend_from_slice(d.kind().as_str().as_bytes());
    scratch.push(b'"');
    scratch.extend_from_slice(b",\"tool\":");
    json_str(scratch, d.tool())?;
    scratch.extend_from_slice(b",\"rule\":");
    json_str(scratch, &d.rule())?;
    scratch.extend_from_slice(b",\"message\":");
    json_str(scratch, d.message())?;
    if let Some(r) = d.retry_after() {
        // As `Decision` writes it: whole milliseconds, rounded up.
        let millis = (r.as_secs_f64() * 1000.0).ceil();
        scratch.extend_from_slice(b",\"retry_after\":");
        write_seconds(scratch, millis)?;
    }
    if let Some(k) = d.approval_key() {
        scratch.extend_from_slice(b",\"approval_key\":");
        json_str(scratch, k)?;
    }
    if d.is_monitored() {
        scratch.extend_from_slice(b",\"monitor\":true");
    }
    scratch.extend_from_slice(b"}\n");
    Ok(())
}

/// `millis / 1000` as serde_json writes that `f64` (its shortest decimal, with `.0` for a whole
/// number): below 10^12 ms the shortest decimal of the nearest `f64` to `k / 1000` is `k / 1000`
/// itself (any other decimal with at most three decimals is 0.001 away, far more than half the
/// gap between two `f64`s there), so it is written from the integer; any other value by
/// serde_json.
fn write_seconds(scratch: &mut Vec<u8>, millis: f64) -> serde_json::Result<()> {
    if !(0.0..1e12).contains(&millis) || millis.fract() != 0.0 {
        return serde_json::to_writer(&mut *scratch, &(millis / 1000.0));
    }
    // A whole number under 10^12: exact as an integer. Written into a buffer, copied once.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let k = millis as u64;
    let (whole, frac) = (k / 1000, k % 1000);
    let mut buf = [0u8; 24];
    let mut int = [0u8; 20];
    let digits = itoa_usize(usize::try_from(whole).unwrap_or(0), &mut int);
    let n = digits.len();
    let mut len = n + 2;
    if let Some(head) = buf.get_mut(..n) {
        head.copy_from_slice(digits);
    }
    // `.0` for a whole number, else up to three digits with trailing zeros dropped.
    #[allow(clippy::cast_possible_truncation)]
    let tail =
        [b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8];
    if let Some(t) = buf.get_mut(n..n + 4) {
        t.copy_from_slice(&tail);
    }
    if frac != 0 {
        len = n + if frac.is_multiple_of(100) {
            2
        } else if frac.is_multiple_of(10) {
            3
        } else {
            4
        };
    }
    scratch.extend_from_slice(buf.get(..len).unwrap_or_default());
    Ok(())
}

/// `s` as a JSON string, as serde_json writes it: copied between quotes when no byte needs an
/// escape (a quote, a backslash or a control character), else written by serde_json.
fn json_str(scratch: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    if has_special(s.as_bytes()) {
        return serde_json::to_writer(&mut *scratch, s);
    }
    scratch.reserve(s.len() + 2);
    scratch.push(b'"');
    scratch.extend_from_slice(s.as_bytes());
    scratch.push(b'"');
    Ok(())
}

/// Whether JSON writes `b` escaped in a string, or ends a string without escapes: a quote, a
/// backslash or a control character.
fn is_special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `bytes` [`is_special`]: every byte is looked at (no early exit), which
/// the compiler turns into a vector loop.
fn has_special(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, b| found | is_special(*b))
}

/// Whether any byte of `bytes` is a control character (as [`has_special`]).
fn has_control(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, b| found | (*b < 0x20))
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

/// A call line in its common form, read in place by [`FastLine::parse`]: the plain strings
/// borrowed from the line, no map, no copy of the keys.
struct FastCall<'a> {
    tool: &'a str,
    arguments: Option<&'a Value>,
    grant: Option<&'a str>,
    session: Option<&'a str>,
    context: Option<Value>,
    at: Option<Timestamp>,
    approved: bool,
}

/// What the fast path keeps from line to line: the last line's `arguments`, whose map (its keys
/// and strings) is overwritten in place when the next line's `arguments` have the same keys in
/// the same order and plain values, so that such a line allocates nothing.
pub(crate) struct FastLine {
    arguments: Value,
}

impl Default for FastLine {
    fn default() -> Self {
        FastLine { arguments: Value::Object(Map::new()) }
    }
}

impl FastLine {
    /// The line's call when it is an object of known fields, each once, with a plain string
    /// (no escape) for `tool` and `grant` (and `session` unless null), an object for
    /// `arguments`, a plain number or a string for `at` and a boolean `approved`; else `None`,
    /// and the general path decides the line (and words any error). What it reads is what the
    /// general path reads.
    fn parse<'a>(&'a mut self, line: &'a str) -> Option<FastCall<'a>> {
        let mut c = Cursor { bytes: line.as_bytes(), text: line, pos: 0 };
        let mut tool = None;
        let mut grant = None;
        let mut session = None;
        let mut arguments = false;
        let mut context = None;
        let mut at = None;
        let mut approved = None;
        c.ws();
        c.eat(b'{')?;
        c.ws();
        if c.peek() != Some(b'}') {
            loop {
                c.ws();
                let key = c.plain_string()?;
                c.ws();
                c.eat(b':')?;
                c.ws();
                match key {
                    "tool" if tool.is_none() => tool = Some(c.plain_string()?),
                    "grant" if grant.is_none() => grant = Some(c.plain_string()?),
                    "session" if session.is_none() => {
                        session =
                            Some(if c.literal("null") { None } else { Some(c.plain_string()?) })
                    }
                    "arguments" if !arguments => {
                        arguments = true;
                        if c.peek() != Some(b'{') {
                            return None;
                        }
                        let start = c.pos;
                        if update_in_place(&mut self.arguments, &mut c).is_none() {
                            c.pos = start;
                            let raw = c.raw_value()?;
                            self.arguments = serde_json::from_str(raw.get()).ok()?;
                        }
                    }
                    "context" if context.is_none() => {
                        context = Some(serde_json::from_str(c.raw_value()?.get()).ok()?)
                    }
                    "at" if at.is_none() => {
                        at = Some(if c.peek() == Some(b'"') {
                            let raw = c.raw_value()?;
                            parse_at(&serde_json::from_str(raw.get()).ok()?).ok()?
                        } else {
                            plain_seconds(c.number()?)?
                        })
                    }
                    "approved" if approved.is_none() => {
                        approved = Some(if c.literal("true") {
                            true
                        } else if c.literal("false") {
                            false
                        } else {
                            return None;
                        })
                    }
                    // An unknown or repeated field: the general path.
                    _ => return None,
                }
                c.ws();
                match c.next()? {
                    b',' => {}
                    b'}' => break,
                    _ => return None,
                }
            }
        } else {
            c.pos += 1;
        }
        c.ws();
        if c.pos != line.len() {
            return None;
        }
        Some(FastCall {
            tool: tool?,
            arguments: arguments.then_some(&self.arguments),
            grant,
            session: session.flatten(),
            context,
            at,
            approved: approved.unwrap_or(false),
        })
    }
}

/// Overwrites the values of `cached` (an object) with those of the object at `c` when it has
/// the same keys in the same order (as `cached` iterates them: then `cached` is exactly what
/// serde_json reads) and only plain values: strings without escapes, whole numbers, booleans
/// and null. `None` when it cannot (then `cached` is to be read afresh).
fn update_in_place(cached: &mut Value, c: &mut Cursor<'_>) -> Option<()> {
    let Value::Object(map) = cached else { return None };
    c.eat(b'{')?;
    c.ws();
    let mut entries = map.iter_mut();
    if c.peek() == Some(b'}') {
        c.pos += 1;
        return entries.next().is_none().then_some(());
    }
    loop {
        c.ws();
        let key = c.plain_string()?;
        let (k, v) = entries.next()?;
        if k != key {
            return None;
        }
        c.ws();
        c.eat(b':')?;
        c.ws();
        match c.peek()? {
            b'"' => {
                let s = c.plain_string()?;
                match v {
                    Value::String(old) => {
                        old.clear();
                        old.push_str(s);
                    }
                    v => *v = Value::String(s.to_owned()),
                }
            }
            b't' if c.literal("true") => *v = Value::Bool(true),
            b'f' if c.literal("false") => *v = Value::Bool(false),
            b'n' if c.literal("null") => *v = Value::Null,
            _ => *v = Value::Number(c.integer()?),
        }
        c.ws();
        match c.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    entries.next().is_none().then_some(())
}

/// A position in a line being read by the fast path.
struct Cursor<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// Skips JSON whitespace.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// Reads `word` (`true`, `false`, `null`) if it comes next.
    fn literal(&mut self, word: &str) -> bool {
        let found = self.bytes.get(self.pos..self.pos + word.len()) == Some(word.as_bytes());
        if found {
            self.pos += word.len();
        }
        found
    }

    /// A JSON string with no escape, its text borrowed; `None` for anything else (an escape, a
    /// control character, no closing quote).
    fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = start + memchr::memchr2(b'"', b'\\', self.bytes.get(start..)?)?;
        if self.bytes.get(end) != Some(&b'"') || has_control(self.bytes.get(start..end)?) {
            return None;
        }
        self.pos = end + 1;
        // The quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..end)
    }

    /// The text of a JSON number (`-`, digits, `.`, exponent), unchecked beyond a first digit
    /// that is not a leading zero of a longer whole part; the caller reads it strictly.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E')) {
            self.pos += 1;
        }
        let bytes = self.bytes.get(start..self.pos)?;
        let digits = match bytes {
            [b'-', rest @ ..] => rest,
            _ => bytes,
        };
        match digits {
            [b'0', b'0'..=b'9', ..] => None,
            [b'0'..=b'9', ..] => self.text.get(start..self.pos),
            _ => None,
        }
    }

    /// A whole number as serde_json reads it: `0`, or up to 19 digits without a leading zero
    /// (a `u64`), or `-` and up to 18 (an `i64` below zero); anything else (a fraction, an
    /// exponent, `-0`, more digits) is `None`.
    fn integer(&mut self) -> Option<serde_json::Number> {
        let text = self.number()?;
        let (negative, digits) = match text.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, text),
        };
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.len() > if negative { 18 } else { 19 }
            || (negative && digits.starts_with('0'))
        {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        Some(if negative {
            serde_json::Number::from(-i64::try_from(n).ok()?)
        } else {
            serde_json::Number::from(n)
        })
    }

    /// The JSON value that comes next, checked and borrowed whole.
    fn raw_value(&mut self) -> Option<&'a RawValue> {
        let rest = self.text.get(self.pos..)?;
        let mut de = serde_json::Deserializer::from_str(rest);
        let raw: &'a RawValue = serde::Deserialize::deserialize(&mut de).ok()?;
        // The raw text starts here (no whitespace was left before it).
        self.pos += raw.get().len();
        Some(raw)
    }
}

impl FastCall<'_> {
    fn call(&self) -> (ToolCall<'_>, Option<Timestamp>, bool) {
        let mut call = ToolCall::new(self.tool).with_optional_session(self.session);
        if let Some(a) = self.arguments {
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
    let bytes = text.as_bytes();
    let (whole, fraction) = match memchr::memchr(b'.', bytes) {
        Some(i) => (bytes.get(..i)?, bytes.get(i + 1..)?),
        None => (bytes, &[][..]),
    };
    let dot = whole.len() < bytes.len();
    if whole.is_empty() || (dot && fraction.is_empty()) || fraction.len() > 9 {
        return None;
    }
    let mut seconds: u64 = 0;
    let mut significant = 0;
    for &b in whole {
        if !b.is_ascii_digit() {
            return None;
        }
        if seconds > 0 || b != b'0' {
            significant += 1;
        }
        seconds = seconds.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    if significant + fraction.len() > PLAIN_DIGITS || seconds >= END_SECONDS {
        return None;
    }
    let mut nanos: u64 = 0;
    for i in 0..9 {
        let d = match fraction.get(i) {
            Some(b) if b.is_ascii_digit() => u64::from(b - b'0'),
            Some(_) => return None,
            None => 0,
        };
        nanos = nanos * 10 + d;
    }
    Some(Timestamp::from_unix_nanos(seconds * NANOS + nanos))
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
        let text = r#"{"version": "1", "default": "deny", "tools": {
            "t": {"limits": [{"counter": "c", "window": "minute", "max": 1}]},
            "q\"\\": {"deny_if": [{"conditions": [], "on_deny": "no \"quotes\"\n\u0001 \\ here"}]},
            "a": {"approve_if": [{"conditions": []}]}}}"#;
        let policy: Policy = text.parse().unwrap();
        let mut replay = Replay::new(policy, Timestamp::from_unix_seconds(1_767_225_600.0));
        let args = serde_json::json!({"x": "q\"uote"});
        let mut scratch = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let check = |d: &Decision<'_>, line_no: usize, scratch: &mut Vec<u8>| {
            let mut expected = serde_json::to_vec(&Printed { line: line_no, decision: d }).unwrap();
            expected.push(b'\n');
            print_into(scratch, line_no, d).unwrap();
            assert_eq!(String::from_utf8_lossy(scratch), String::from_utf8_lossy(&expected));
        };
        let tools = ["t", "t", "a", "unknown \u{e9}\"", "t", "q\"\\", "\u{1}\u{7f}\t\r\u{8}\u{c}/"];
        for (i, tool) in tools.into_iter().enumerate() {
            let call = ToolCall::new(tool).with_arguments(&args).with_grant("g");
            let line_no = [0, 1, 9, 10, usize::MAX, 12_345, 7][i];
            replay.decide(&call, None, false, |d| {
                seen.insert(d.kind());
                if d.retry_after().is_some() {
                    seen.insert(DecisionKind::Limit);
                }
                check(d, line_no, &mut scratch);
            });
        }
        // Every kind, a retry_after (a limit) and an approval key were written.
        assert_eq!(seen.len(), 4, "{seen:?}");
        // Monitor mode adds `monitor`.
        let policy: Policy = text.parse().unwrap();
        let monitored = mcp_policy::Evaluator::new(policy).with_mode(mcp_policy::Mode::Monitor);
        for tool in ["t", "t", "a", "nope"] {
            let d = monitored.evaluate(&ToolCall::new(tool).with_grant("g"));
            assert!(d.is_monitored());
            check(&d, 3, &mut scratch);
        }
    }

    #[test]
    fn write_seconds_writes_what_serde_json_writes() {
        let mut ks: Vec<u64> = (0..3000).collect();
        ks.extend([59_999, 60_000, 86_400_000, 3_600_001, 999_999_999_999, 123_456_789_012]);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ks.push(x % 1_000_000_000_000);
        }
        for k in ks {
            #[allow(clippy::cast_precision_loss)]
            let millis = k as f64;
            let mut ours = Vec::new();
            write_seconds(&mut ours, millis).unwrap();
            let theirs = serde_json::to_vec(&(millis / 1000.0)).unwrap();
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{k}");
        }
        // Outside the integer range: serde_json's own text.
        for millis in [1e12, 1e15, 0.5, f64::MAX] {
            let mut ours = Vec::new();
            write_seconds(&mut ours, millis).unwrap();
            assert_eq!(ours, serde_json::to_vec(&(millis / 1000.0)).unwrap(), "{millis}");
        }
    }

    #[test]
    fn has_special_finds_what_a_byte_scan_finds() {
        // Every length up to 3 words, every position, every kind of byte (specials, their
        // neighbours, high bytes that borrow in the word arithmetic).
        let kinds = [0u8, 0x1f, 0x20, b'"', b'!', b'#', b'\\', b'[', b']', 0x7f, 0x80, 0xff, b'a'];
        for len in 0..26 {
            for at in 0..len {
                for k in kinds {
                    for fill in [b'a', 0xe9, 0x21] {
                        let mut bytes = vec![fill; len];
                        bytes[at] = k;
                        if at + 1 < len {
                            bytes[at + 1] = b'"';
                        }
                        let expected = bytes.iter().position(|b| is_special(*b));
                        assert_eq!(has_special(&bytes), expected.is_some(), "{bytes:?}");
                        let control = bytes.iter().any(|b| *b < 0x20);
                        assert_eq!(has_control(&bytes), control, "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn trim_is_str_trim() {
        for line in [
            "",
            " ",
            "\n",
            "\r\n",
            " {} \n",
            "\u{b}{}\u{b}",
            "{}\u{b}",
            "\u{a0}{}",
            "{}\u{a0}",
            "\u{85}x",
            "x\u{2028}",
            "\t x \u{c}",
            "\u{1c}x\u{1f}",
            "é",
            " é ",
            "\u{3000}",
        ] {
            assert_eq!(trim(line), line.trim(), "{line:?}");
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

    /// What the general path reads of `line`: the call (as its Debug text), `at`, `approved`;
    /// `None` when it reports an error.
    fn general(line: &str) -> Option<(String, Option<Timestamp>, bool)> {
        let v: Value = serde_json::from_str(line).ok()?;
        let (call, at, approved) = call_of(v.as_object()?).ok()?;
        Some((format!("{call:?}"), at, approved))
    }

    /// Reads `line` with the fast path (with the state `fast` left by earlier lines).
    fn fast_read(fast: &mut FastLine, line: &str) -> Option<(String, Option<Timestamp>, bool)> {
        let read = fast.parse(line)?;
        let (call, at, approved) = read.call();
        Some((format!("{call:?}"), at, approved))
    }

    #[test]
    fn the_fast_path_reads_what_the_general_path_reads() {
        let lines = [
            r#"{"tool":"cancel_run","arguments":{"run_id":1},"grant":"agent-1","at":1767225600.5}"#,
            r#"{"tool":"cancel_run","arguments":{"run_id":2},"grant":"agent-2","at":1767225600.501}"#,
            r#"{"tool":"cancel_run","arguments":{"run_id":-3},"grant":"agent-2","at":1767225601}"#,
            r#"{"tool":"cancel_run","arguments":{"run_id":"x"},"grant":"agent-2"}"#,
            r#"{"tool":"cancel_run","arguments":{"run_id":"y\u00e9"},"grant":"agent-2"}"#,
            r#"{"tool":"cancel_run","arguments":{"run_id":true}}"#,
            r#"{"tool":"cancel_run","arguments":{"run_id":null, "a": false}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":1,"run_id":2}}"#,
            r#"{"tool":"cancel_run","arguments":{"run_id":2,"a":1}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":1,"a":2}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":1.5}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":-0}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":18446744073709551615}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":18446744073709551616}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":-9223372036854775808}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":9999999999999999999}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":1e3}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":{"b":[1,2]}}}"#,
            r#"{"tool":"cancel_run","arguments":{"a":"é ☃"}}"#,
            r#"{"tool":"cancel_run","arguments":{}}"#,
            r#"{"tool":"cancel_run","arguments":{ "a" : 7 }}"#,
            r#"{"tool":"cancel_run","arguments":{"a":7}}"#,
            r#"{"at":"2026-01-01T00:00:00Z","session":null,"tool":"t","approved":true}"#,
            r#"{ "tool" : "t" , "session" : "s", "context": {"env": "prod"}, "approved": false }"#,
            "{\t\"tool\"\r:\n\"t\"}",
            r#"{"tool":"é☃","grant":"g h","session":"s"}"#,
            r#"{"tool":"t","at":0}"#,
        ];
        let mut fast = FastLine::default();
        for line in lines {
            let read = fast_read(&mut fast, line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(Some(read), general(line), "{line}");
        }
        // Everything else goes to the general path, which words the errors.
        for line in [
            r#"{"tool":"t","tool":"u"}"#,
            r#"{"tool":"t\u0041"}"#,
            r#"{"tool":1}"#,
            r#"{"tool":"t","grnat":"g"}"#,
            r#"{"tool":"t","arguments":[]}"#,
            r#"{"tool":"t","arguments":{"a":1},"arguments":{"a":1}}"#,
            r#"{"tool":"t","grant":null}"#,
            r#"{"tool":"t","at":-1}"#,
            r#"{"tool":"t","at":01}"#,
            r#"{"tool":"t","at":1e9}"#,
            // More than 15 significant digits: read through a double by the general path.
            r#"{"tool":"t","at":1767225600.123456789}"#,
            r#"{"tool":"t","at":null}"#,
            r#"{"tool":"t","approved":1}"#,
            r#"{"tool":"t","approved":truex}"#,
            r#"{"tool":"t"} x"#,
            r#"{"tool":"t",}"#,
            r#"{"tool":"t""grant":"g"}"#,
            r#"{"tool":"t" "#,
            r#"{"tool":"t"#,
            "{\"tool\":\"t\u{1}\"}",
            r#"[]"#,
            r#"{}"#,
            r#"{"arguments":{}}"#,
            r#"{"t\u006fol":"t"}"#,
        ] {
            assert!(fast_read(&mut fast, line).is_none(), "{line}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_path_on_mixed_lines() {
        // Lines put together from pieces, valid and not, read one after another by one state
        // (so that arguments are overwritten in place from line to line): whatever the fast
        // path accepts, the general path reads the same; what the general path refuses, the
        // fast path never accepts.
        let pieces = [
            r#""tool":"t""#,
            r#""tool":"u v""#,
            r#""grant":"g""#,
            r#""session":null"#,
            r#""session":"s""#,
            r#""at":1767225600.25"#,
            r#""at":"2026-01-01T00:00:01Z""#,
            r#""approved":true"#,
            r#""arguments":{"run_id":1}"#,
            r#""arguments":{"run_id":22,"b":"x"}"#,
            r#""arguments":{"b":"y","run_id":-5}"#,
            r#""arguments":{"run_id":"q\"q"}"#,
            r#""arguments":{"run_id":3.25}"#,
            r#""arguments":{"run_id":[1]}"#,
            r#""arguments":{"run_id":1,}"#,
            r#""arguments":{"run_id":01}"#,
            r#""arguments":{"run_id":1"#,
            r#""context":{"env":"prod"}"#,
            r#""context":[1"#,
            r#""grnat":"g""#,
            r#""at":-"#,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut fast = FastLine::default();
        let (mut accepted, mut total) = (0, 0);
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 5) as usize;
            let mut parts = Vec::new();
            let mut y = x;
            for _ in 0..n {
                y = y.rotate_left(11).wrapping_mul(0x2545_f491_4f6c_dd1d);
                parts.push(pieces[(y >> 33) as usize % pieces.len()]);
            }
            let sep = if x & 1 == 0 { "," } else { " , " };
            let line = format!("{{{}}}", parts.join(sep));
            total += 1;
            let general = general(&line);
            if let Some(read) = fast_read(&mut fast, &line) {
                accepted += 1;
                assert_eq!(Some(read), general, "{line}");
            }
        }
        assert!(accepted > total / 20, "{accepted} of {total} took the fast path");
    }
}
