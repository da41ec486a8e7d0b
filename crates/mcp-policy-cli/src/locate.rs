//! Locating JSON Pointers in a policy's text in one pass: the positions of `validate --tools`
//! warnings, however many there are.
//!
//! The core's `locate` re-reads the whole text for every pointer, which made `validate --tools`
//! quadratic in the number of rules (issue 11). Here the text is scanned once into a table of
//! value offsets (down to a chosen depth) and a table of line starts; each lookup is then a hash
//! lookup and a binary search.

use std::collections::HashMap;

/// The starts of the lines of a text: line and column of a byte offset, and the text of a line.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the first character of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// The 1-based line and column (in characters) of the byte `offset`.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // The number of line starts at or before `offset` is the 1-based line number.
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self.text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// The text of the 1-based line `n`, without its line ending.
    pub(crate) fn line(&self, n: usize) -> Option<&'a str> {
        let start = *self.starts.get(n.checked_sub(1)?)?;
        let end = self.starts.get(n).map_or(self.text.len(), |next| next - 1);
        let line = self.text.get(start..end)?;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

/// Byte offsets of the values of a JSON text by JSON Pointer, down to a depth.
pub(crate) struct Spans {
    values: HashMap<String, usize>,
}

impl Spans {
    /// Scans `text` once, recording the offset of every value at most `max_depth` levels deep
    /// (the document is depth 0, `/tools` 1, `/tools/x` 2). Text that is not JSON gives the
    /// offsets read before the problem.
    pub(crate) fn new(text: &str, max_depth: usize) -> Self {
        let mut s = Scanner { bytes: text.as_bytes(), pos: 0, values: HashMap::new(), max_depth };
        let mut pointer = String::new();
        let _ = s.value(&mut pointer, 0);
        Spans { values: s.values }
    }

    /// The offset of the value at `pointer`, or of its nearest recorded ancestor.
    pub(crate) fn offset(&self, pointer: &str) -> usize {
        let mut p = pointer;
        loop {
            if let Some(o) = self.values.get(p) {
                return *o;
            }
            match p.rfind('/') {
                Some(i) => p = p.get(..i).unwrap_or(""),
                None => return 0,
            }
        }
    }
}

/// `base` followed by the JSON Pointer token of `key` (`~` as `~0`, `/` as `~1`).
///
/// The core has the same helper (`policy::pointer::join`), but not in its public API.
pub(crate) fn join(base: &str, key: &str) -> String {
    let mut p = String::with_capacity(base.len() + key.len() + 1);
    p.push_str(base);
    push_token(&mut p, key);
    p
}

fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    values: HashMap<String, usize>,
    max_depth: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(b)).then(|| self.pos += 1)
    }

    fn value(&mut self, pointer: &mut String, depth: usize) -> Option<()> {
        self.ws();
        self.values.insert(pointer.clone(), self.pos);
        match self.peek()? {
            b'{' | b'[' if depth >= self.max_depth => self.skip_container(),
            b'{' => {
                self.pos += 1;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    let len = pointer.len();
                    push_token(pointer, &key);
                    self.value(pointer, depth + 1)?;
                    pointer.truncate(len);
                    if self.eat(b',').is_none() {
                        return self.eat(b'}');
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                let mut i = 0usize;
                loop {
                    let len = pointer.len();
                    push_token(pointer, &i.to_string());
                    self.value(pointer, depth + 1)?;
                    pointer.truncate(len);
                    i += 1;
                    if self.eat(b',').is_none() {
                        return self.eat(b']');
                    }
                }
            }
            b'"' => self.string().map(drop),
            _ => {
                while self.peek().is_some_and(|b| !b",}] \t\r\n".contains(&b)) {
                    self.pos += 1;
                }
                Some(())
            }
        }
    }

    /// A string at the current position, unescaped.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        let raw = std::str::from_utf8(self.bytes.get(start..self.pos)?).ok()?;
        if escaped {
            serde_json::from_str(raw).ok()
        } else {
            raw.get(1..raw.len() - 1).map(str::to_owned)
        }
    }

    /// Skips an object or array without recording anything inside it.
    fn skip_container(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        self.pos += 1;
                        return Some(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "{\n  \"version\": \"1\",\n  \"tools\": { \"a\": {\"limits\": [1, {\"x\": 2}]},\n\t\"é/~\\\"\": [] },\n  \"hide\": [\"x\", \"y\"]\n}";

    fn at(pointer: &str) -> (usize, usize) {
        let index = LineIndex::new(TEXT);
        index.line_column(Spans::new(TEXT, 2).offset(pointer))
    }

    #[test]
    fn finds_values_by_pointer_and_falls_back_to_the_nearest_ancestor() {
        assert_eq!(at(""), (1, 1));
        assert_eq!(at("/version"), (2, 14));
        assert_eq!(at("/tools"), (3, 12));
        assert_eq!(at("/tools/a"), (3, 19));
        // Deeper than the scan: the nearest recorded ancestor.
        assert_eq!(at("/tools/a/limits/1"), (3, 19));
        assert_eq!(at(&join("/tools", "é/~\"")), (4, 11));
        assert_eq!(at("/hide/1"), (5, 17));
        assert_eq!(at("/nope"), (1, 1));
    }

    #[test]
    fn lines_without_their_endings() {
        let index = LineIndex::new("a\r\nbc\n\nd");
        assert_eq!(index.line(1), Some("a"));
        assert_eq!(index.line(2), Some("bc"));
        assert_eq!(index.line(3), Some(""));
        assert_eq!(index.line(4), Some("d"));
        assert_eq!(index.line(5), None);
        assert_eq!(index.line(0), None);
        assert_eq!(index.line_column(4), (2, 2));
    }

    #[test]
    fn survives_text_that_is_not_json() {
        for bad in ["", "{", "{\"a\": [1, ", "\"abc", "[}", "{\"a\"}", "]]]]"] {
            let _ = Spans::new(bad, 4).offset("/a/0");
        }
    }
}
