//! The reader itself: one pass over the text, building the value, recording spans and
//! problems.

use serde_json::{Map, Number, Value};

use super::super::pointer::push_token;
use super::{MAX_DEPTH, SourceProblem, SourceProblemKind, Spans};

/// The reader's state over one text.
pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) text: &'a str,
    pub(super) pos: usize,
    pub(super) record_spans: bool,
    /// When set, only these pointers are recorded.
    pub(super) wanted: Option<hashbrown::HashSet<String>>,
    pub(super) spans: Spans,
    pub(super) problems: Vec<SourceProblem>,
    pub(super) pointer: String,
    /// Whether values are built. Reading spans for a few pointers, a subtree with none of them
    /// is only checked (the same syntax, the same errors), without building its values or its
    /// pointers: no allocation.
    pub(super) building: bool,
}

/// A syntax error stops the reader; it has already been pushed to `problems`.
struct Stop;

impl Reader<'_> {
    pub(super) fn document(&mut self) -> Option<Value> {
        self.skip_ws();
        if self.pos == 0 && self.text.starts_with('\u{feff}') {
            self.pos = 3;
            self.skip_ws();
        }
        let value = self.value(0).ok()?;
        self.skip_ws();
        if self.pos < self.bytes.len() {
            self.syntax("unexpected text after the end of the document");
            return None;
        }
        Some(value)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn syntax(&mut self, message: &str) -> Stop {
        self.problems.push(SourceProblem {
            offset: self.pos,
            pointer: self.pointer.clone(),
            message: message.to_owned(),
            kind: SourceProblemKind::Syntax,
        });
        Stop
    }

    fn unexpected(&mut self, expected: &str) -> Stop {
        let message = match self.text.get(self.pos..).and_then(|s| s.chars().next()) {
            None => format!("unexpected end of the document: expected {expected}"),
            Some(c) => format!("unexpected `{}`: expected {expected}", c.escape_default()),
        };
        self.syntax(&message)
    }

    /// Whether the current pointer is to be recorded.
    fn wants(&self) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.contains(self.pointer.as_str()))
    }

    fn value(&mut self, depth: usize) -> Result<Value, Stop> {
        if !self.building {
            return self.value_inner(depth);
        }
        if self.wants() {
            if self.record_spans {
                self.spans.values.insert(self.pointer.clone(), self.pos);
            }
        } else {
            // Nothing under an unwanted pointer is wanted: its ancestors are all in the set.
            self.building = false;
            let value = self.value_inner(depth);
            self.building = true;
            return value;
        }
        self.value_inner(depth)
    }

    fn value_inner(&mut self, depth: usize) -> Result<Value, Stop> {
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.unexpected("a value")),
        }
    }

    fn enter(&mut self, depth: usize) -> Result<(), Stop> {
        if depth >= MAX_DEPTH {
            self.problems.push(SourceProblem {
                offset: self.pos,
                pointer: self.pointer.clone(),
                message: format!("the document is nested more than {MAX_DEPTH} levels deep"),
                kind: SourceProblemKind::TooDeep,
            });
            return Err(Stop);
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Value, Stop> {
        self.enter(depth)?;
        let mut map = Map::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("a key in double quotes"));
            }
            let key_offset = self.pos;
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.unexpected("`:` after the key"));
            }
            self.pos += 1;
            self.skip_ws();
            if !self.building {
                // Checked only: no key, no pointer, no map (the subtree records nothing).
                self.value(depth + 1)?;
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        continue;
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        return Ok(Value::Null);
                    }
                    _ => return Err(self.unexpected("`,` or `}`")),
                }
            }
            let parent_len = self.pointer.len();
            push_token(&mut self.pointer, &key);
            // Reading spans only (`wanted`), the values are not kept: a duplicate is a key
            // already recorded (an unwanted one records nothing either way).
            let spans_only = self.wanted.is_some();
            let duplicate = if spans_only {
                self.wants() && self.spans.keys.contains_key(self.pointer.as_str())
            } else {
                map.contains_key(&key)
            };
            if duplicate {
                self.problems.push(SourceProblem {
                    offset: key_offset,
                    pointer: self.pointer.clone(),
                    message: format!(
                        "duplicate key `{key}`: a JSON object may name a key only once, and the \
                         first one is used"
                    ),
                    kind: SourceProblemKind::DuplicateKey,
                });
            } else if self.record_spans && self.wants() {
                self.spans.keys.insert(self.pointer.clone(), key_offset);
            }
            // The value of a duplicate must not overwrite the spans of the first one.
            let record = self.record_spans;
            self.record_spans = record && !duplicate;
            let value = self.value(depth + 1);
            self.record_spans = record;
            self.pointer.truncate(parent_len);
            let value = value?;
            if !duplicate && !spans_only {
                map.insert(key, value);
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.unexpected("`,` or `}`")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Stop> {
        self.enter(depth)?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            if self.building {
                let parent_len = self.pointer.len();
                self.pointer.push('/');
                self.pointer.push_str(&items.len().to_string());
                let value = self.value(depth + 1);
                self.pointer.truncate(parent_len);
                items.push(value?);
            } else {
                self.value(depth + 1)?;
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.unexpected("`,` or `]`")),
            }
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, Stop> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.unexpected("a value"))
        }
    }

    fn number(&mut self) -> Result<Value, Stop> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.unexpected("a digit")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit after the decimal point"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit in the exponent"));
            }
            self.digits();
        }
        let text = self.text.get(start..self.pos).unwrap_or("");
        if integer {
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Value::Number(u.into()));
            }
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Number(i.into()));
            }
        }
        match text.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(Value::Number(n)),
            None => {
                self.pos = start;
                Err(self.syntax("number out of range: it does not fit in a 64-bit float"))
            }
        }
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Result<String, Stop> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            if self.building {
                out.push_str(self.text.get(run_start..self.pos).unwrap_or(""));
            }
            match self.peek() {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    if self.building {
                        out.push(c);
                    }
                }
                Some(_) => {
                    return Err(
                        self.syntax("control character in a string: write it as an escape (`\\n`)")
                    );
                }
            }
        }
    }

    fn escape(&mut self) -> Result<char, Stop> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let first = self.hex4()?;
                return match first {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(self.syntax("lone surrogate in a `\\u` escape"));
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(self.syntax("lone surrogate in a `\\u` escape"));
                        }
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(code).ok_or_else(|| self.syntax("invalid `\\u` escape"))
                    }
                    0xDC00..=0xDFFF => Err(self.syntax("lone surrogate in a `\\u` escape")),
                    _ => char::from_u32(first).ok_or_else(|| self.syntax("invalid `\\u` escape")),
                };
            }
            _ => return Err(self.unexpected("an escape (`\\n`, `\\\"`, `\\u0041`, ...)")),
        };
        self.pos += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, Stop> {
        let digits = self.text.get(self.pos..self.pos + 4);
        match digits.and_then(|d| {
            d.bytes().all(|b| b.is_ascii_hexdigit()).then(|| u32::from_str_radix(d, 16).ok())?
        }) {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => Err(self.syntax("expected four hex digits after `\\u`")),
        }
    }
}
