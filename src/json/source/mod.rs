//! A strict JSON reader that remembers where every value came from.
//!
//! `serde_json` keeps the last of two duplicate keys without a word and forgets positions once a
//! value is built. A policy loader needs both: a second `"cancel_run"` entry must be an error, and
//! every error must point at a line and column. This reader builds a [`serde_json::Value`] while
//!
//! - reporting every duplicate key (the first occurrence is kept, so nothing is silently replaced),
//! - optionally recording the byte offset of every value and every object key by JSON Pointer, and
//! - refusing documents nested deeper than [`MAX_DEPTH`], so hostile input cannot exhaust the stack.
//!
//! Positions are only recorded when asked for: the loader reads a document once without them and
//! reads it again with them only when it has something to report.

use hashbrown::{HashMap, HashSet};

mod reader;

use serde_json::Value;

use reader::Reader;

/// The deepest nesting of arrays and objects accepted in a policy document.
pub(crate) const MAX_DEPTH: usize = 128;

/// A problem found while reading, located by byte offset.
#[derive(Debug, Clone)]
pub(crate) struct SourceProblem {
    pub(crate) offset: usize,
    pub(crate) pointer: String,
    pub(crate) message: String,
    pub(crate) kind: SourceProblemKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceProblemKind {
    Syntax,
    DuplicateKey,
    TooDeep,
}

/// Byte offsets of the values (and object keys) of a document, by JSON Pointer.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    pub(super) values: HashMap<String, usize>,
    pub(super) keys: HashMap<String, usize>,
}

impl Spans {
    /// The offset of the value at `pointer`, or of its nearest recorded ancestor.
    pub(crate) fn value_offset(&self, pointer: &str) -> usize {
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

    /// The offset of the key of the object member at `pointer`, falling back to its value.
    pub(crate) fn key_offset(&self, pointer: &str) -> usize {
        match self.keys.get(pointer) {
            Some(o) => *o,
            None => self.value_offset(pointer),
        }
    }
}

/// The result of reading a document: the value (absent after a syntax error), the problems found,
/// and the spans when they were asked for.
pub(crate) struct Read {
    pub(crate) value: Option<Value>,
    pub(crate) problems: Vec<SourceProblem>,
    pub(crate) spans: Spans,
}

/// Reads `text` as one JSON document.
pub(crate) fn read(text: &str, record_spans: bool) -> Read {
    let mut r = Reader {
        bytes: text.as_bytes(),
        text,
        pos: 0,
        record_spans,
        wanted: None,
        spans: Spans::default(),
        problems: Vec::new(),
        pointer: String::new(),
        building: true,
    };
    let value = r.document();
    Read { value, problems: r.problems, spans: r.spans }
}

/// The spans of `text`, recording only the pointers in `wanted` and their ancestors (the
/// fallbacks of [`Spans::value_offset`]): locating a few diagnostics in a large document then
/// allocates nothing per value.
pub(crate) fn spans_of<'w>(text: &str, wanted: impl IntoIterator<Item = &'w str>) -> Spans {
    let mut set: HashSet<String> = HashSet::new();
    for p in wanted {
        let mut p = p;
        loop {
            if !set.insert(p.to_owned()) {
                break;
            }
            match p.rfind('/') {
                Some(i) => p = p.get(..i).unwrap_or(""),
                None => break,
            }
        }
    }
    let mut r = Reader {
        bytes: text.as_bytes(),
        text,
        pos: 0,
        record_spans: true,
        wanted: Some(set),
        spans: Spans::default(),
        problems: Vec::new(),
        pointer: String::new(),
        building: true,
    };
    let _ = r.document();
    r.spans
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_serde_json() {
        let text =
            r#"{"a": [1, -2, 3.5, 1e2, true, false, null, "x\u00e9\ud83d\ude00\n"], "b": {}}"#;
        let read = read(text, false);
        assert!(read.problems.is_empty());
        assert_eq!(read.value.unwrap(), serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn duplicate_keys_are_reported_and_first_wins() {
        let read = read("{\"a\": 1,\n \"a\": 2}", true);
        assert_eq!(read.problems.len(), 1);
        assert_eq!(read.problems[0].kind, SourceProblemKind::DuplicateKey);
        assert_eq!(read.problems[0].pointer, "/a");
        assert_eq!(line_column("{\"a\": 1,\n \"a\": 2}", read.problems[0].offset), (2, 2));
        assert_eq!(read.value.unwrap()["a"], 1);
    }

    #[test]
    fn depth_is_bounded() {
        let text = "[".repeat(100_000);
        let read = read(&text, false);
        assert_eq!(read.problems[0].kind, SourceProblemKind::TooDeep);
    }

    #[test]
    fn syntax_errors_have_positions() {
        for (text, line, col) in [
            ("{\n  \"a\": tru\n}", 2, 8),
            ("{\"a\" 1}", 1, 6),
            ("[1,]", 1, 4),
            ("\"abc", 1, 5),
            ("{} x", 1, 4),
            ("1e999", 1, 1),
            ("\"\\ud800\"", 1, 8),
        ] {
            let read = read(text, false);
            assert_eq!(read.problems.len(), 1, "{text}");
            let (l, c) = line_column(text, read.problems[0].offset);
            assert_eq!((l, c), (line, col), "{text}: {}", read.problems[0].message);
        }
    }

    #[test]
    fn spans_by_pointer() {
        let text = "{\n  \"tools\": {\n    \"a/b\": {\"limits\": [1]}\n  }\n}";
        let read = read(text, true);
        let off = read.spans.value_offset("/tools/a~1b/limits/0");
        assert_eq!(line_column(text, off), (3, 24));
        let off = read.spans.key_offset("/tools/a~1b");
        assert_eq!(line_column(text, off), (3, 5));
        // An absent member falls back to its parent.
        let off = read.spans.value_offset("/tools/a~1b/nope");
        assert_eq!(line_column(text, off), (3, 12));
    }

    #[test]
    fn spans_of_a_few_pointers_are_those_of_a_full_read() {
        let text = "{\n \"a\": {\"b\": [1, {\"c\\u00e9\": \"x\\ny\"}, [2.5e3, null]], \"d\": true},\n \
                    \"e\": [{}, [], \"\\ud83d\\ude00\"], \"a\": {\"dup\": 1}, \"f~/g\": {\"h\": -0}\n}";
        let full = read(text, true);
        assert_eq!(full.problems.len(), 1, "one duplicate key");
        let pointers: Vec<&str> = full.spans.values.keys().map(String::as_str).collect();
        assert!(pointers.len() > 12, "{pointers:?}");
        // Each pointer alone, and all of them at once, and pointers that are not in the text.
        let mut sets: Vec<Vec<&str>> = pointers.iter().map(|p| vec![*p]).collect();
        sets.push(pointers.clone());
        sets.push(vec!["/a/b/1/c\u{e9}", "/nope/deeper", "/e/2", "/a/dup"]);
        for wanted in sets {
            let spans = spans_of(text, wanted.iter().copied());
            for p in &wanted {
                assert_eq!(spans.value_offset(p), full.spans.value_offset(p), "{p}");
                assert_eq!(spans.key_offset(p), full.spans.key_offset(p), "{p}");
            }
        }
        // A syntax error after the wanted pointers, inside a subtree that is only checked:
        // found as a full read finds it (the reader stops there in both).
        for bad in
            ["{\"a\": 1, \"b\": [1, 2,], \"c\": 3}", "{\"a\": 1, \"b\": {\"x\": 1e999}, \"c\": 3}"]
        {
            let full = read(bad, true);
            let spans = spans_of(bad, ["/a", "/c"]);
            assert_eq!(spans.value_offset("/c"), full.spans.value_offset("/c"), "{bad}");
            assert_eq!(spans.value_offset("/a"), full.spans.value_offset("/a"), "{bad}");
        }
    }
}
