//! Findings (errors and warnings) and how they are printed.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::locate::LineIndex;

pub(crate) const RED: &str = "1;31";
pub(crate) const YELLOW: &str = "1;33";
pub(crate) const BLUE: &str = "1;34";

/// Whether to colour standard error: a terminal, and `NO_COLOR` unset.
pub(crate) fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `text` in the ANSI colour `code` when `on`.
pub(crate) fn paint(text: &str, code: &str, on: bool) -> String {
    if on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
}

/// Writes `error: MESSAGE` to standard error. A closed standard error is ignored: there is
/// nowhere left to say anything.
pub(crate) fn error_line(message: &str) {
    let label = paint("error", RED, stderr_is_terminal());
    let _ = writeln!(std::io::stderr().lock(), "{label}: {message}");
}

/// Writes `warning: MESSAGE` to standard error (ignoring a closed standard error).
pub(crate) fn warning_line(message: &str) {
    let label = paint("warning", YELLOW, stderr_is_terminal());
    let _ = writeln!(std::io::stderr().lock(), "{label}: {message}");
}

/// Writes one line to standard error (ignoring a closed standard error).
pub(crate) fn note_line(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// The candidate closest to `word` (optimal string alignment distance, `strsim::osa_distance`:
/// an adjacent swap is one edit), when it is close enough to be a likely typo: 1 edit for words
/// of up to 2 characters, 2 up to 5, 3 beyond. The first of equally close candidates wins.
///
/// `validate --tools` asks this for every rule that matches no tool, against every tool name:
/// a cheap lower bound (the characters one string has and the other lacks, counted as a
/// multiset) skips most candidates before the distance is computed.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut bound = match word.chars().count() {
        0..=2 => 1,
        3..=5 => 2,
        _ => 3,
    };
    let mut bag = CharBag::new(word);
    let mut best = None;
    for c in candidates {
        if bag.lower_bound(c) > bound {
            continue;
        }
        let d = strsim::osa_distance(word, c);
        if d <= bound {
            best = Some(c);
            if d == 0 {
                break;
            }
            // Only a strictly closer candidate can replace this one.
            bound = d - 1;
        }
    }
    best
}

/// Counts of a word's characters (folded into 64 buckets, which only lowers the bound).
struct CharBag {
    counts: [i32; 64],
    len: usize,
}

impl CharBag {
    fn new(word: &str) -> Self {
        let mut counts = [0; 64];
        let mut len = 0;
        for c in word.chars() {
            if let Some(n) = counts.get_mut(bucket(c)) {
                *n += 1;
            }
            len += 1;
        }
        CharBag { counts, len }
    }

    /// A lower bound of the edit distance between the word and `other`: an edit adds, removes
    /// or replaces at most one character on each side, so the distance is at least the larger of
    /// the characters only the word has and the characters only `other` has.
    fn lower_bound(&mut self, other: &str) -> usize {
        let (mut only_other, mut other_len) = (0usize, 0usize);
        for c in other.chars() {
            if let Some(n) = self.counts.get_mut(bucket(c)) {
                *n -= 1;
                if *n < 0 {
                    only_other += 1;
                }
            }
            other_len += 1;
        }
        for c in other.chars() {
            if let Some(n) = self.counts.get_mut(bucket(c)) {
                *n += 1;
            }
        }
        let shared = other_len - only_other;
        let only_word = self.len - shared;
        only_word.max(only_other)
    }
}

fn bucket(c: char) -> usize {
    (u32::from(c) & 63) as usize
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Severity {
    Error,
    Warning,
}

/// One problem found in a policy file.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) pointer: String,
    pub(crate) severity: Severity,
    pub(crate) kind: String,
    pub(crate) message: String,
}

/// `FILE:LINE:COL: error: MESSAGE (at POINTER)`, then the source line and a caret under the
/// column.
///
/// A message of several lines (a regex error shows the pattern with its own caret under the
/// problem) keeps its lines: the first goes on the heading, the others follow it under a `|`
/// gutter, unchanged, before the source line.
pub(crate) fn text(f: &Finding, source: Option<&LineIndex<'_>>, color: bool) -> String {
    let (label, code) = match f.severity {
        Severity::Error => ("error", RED),
        Severity::Warning => ("warning", YELLOW),
    };
    let mut lines = f.message.lines();
    let first = lines.next().unwrap_or_default();
    let mut out =
        format!("{}:{}:{}: {}: {}", f.file, f.line, f.column, paint(label, code, color), first);
    if !f.pointer.is_empty() {
        out.push_str(&format!(" (at {})", f.pointer));
    }
    out.push('\n');
    let source_line = source.and_then(|s| s.line(f.line));
    let number = f.line.to_string();
    let gutter = " ".repeat(if source_line.is_some() { number.len() } else { 1 });
    for rest in lines {
        out.push_str(&format!("{gutter} {} {rest}\n", paint("|", BLUE, color)));
    }
    if let Some(line) = source_line {
        // Keep tabs under tabs so the caret lines up however the terminal shows them.
        let pad: String = line
            .chars()
            .take(f.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("{} {}\n", paint(&number, BLUE, color), line));
        out.push_str(&format!("{gutter} {pad}{}\n", paint("^", code, color)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(message: &str) -> Finding {
        Finding {
            file: "p.json".into(),
            line: 2,
            column: 12,
            pointer: "/tools/t/deny_if/0/regex".into(),
            severity: Severity::Error,
            kind: "InvalidRegex".into(),
            message: message.into(),
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("grnat", ["tool", "grant", "at"]), Some("grant"));
        assert_eq!(closest("cancle_run", ["cancel_run", "list_jobs"]), Some("cancel_run"));
        assert_eq!(closest("zzzzzz", ["cancel_run"]), None);
        assert_eq!(closest("ab", ["abcd"]), None);
        // The closest wins, and the first of equals.
        assert_eq!(
            closest("tool_0001", ["tool_0012", "tool_0002", "tool_0003"]),
            Some("tool_0002")
        );
        assert_eq!(closest("délete_job", ["delete_job"]), Some("delete_job"));
    }

    #[test]
    fn the_lower_bound_never_exceeds_the_distance() {
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "grant",
            "grnat",
            "tool_00020",
            "gone_00020",
            "délete",
            "delete",
            "ĀĀĀ",
            "ĀĀA",
            "cancel_run",
            "cancle_run",
            "xyz",
            "zyx",
            "list_jobs",
            "list_job",
        ];
        for a in words {
            let mut bag = CharBag::new(a);
            for b in words {
                let d = strsim::osa_distance(a, b);
                assert!(bag.lower_bound(b) <= d, "{a} {b}");
            }
        }
    }

    #[test]
    fn a_one_line_message_has_the_source_line_and_one_caret() {
        let source = "{\n  \"regex\": \"(a\"\n}";
        let index = LineIndex::new(source);
        let out = text(&finding("invalid regex"), Some(&index), false);
        assert_eq!(
            out,
            "p.json:2:12: error: invalid regex (at /tools/t/deny_if/0/regex)\n\
             2   \"regex\": \"(a\"\n\
             \x20            ^\n"
        );
    }

    #[test]
    fn a_message_of_several_lines_keeps_them_under_a_gutter() {
        let source = "{\n  \"regex\": \"(a\"\n}";
        let index = LineIndex::new(source);
        let message =
            "invalid regex `(a`: regex parse error:\n    (a\n    ^\nerror: unclosed group";
        let out = text(&finding(message), Some(&index), false);
        assert_eq!(
            out,
            "p.json:2:12: error: invalid regex `(a`: regex parse error: (at /tools/t/deny_if/0/regex)\n\
             \x20 |     (a\n\
             \x20 |     ^\n\
             \x20 | error: unclosed group\n\
             2   \"regex\": \"(a\"\n\
             \x20            ^\n"
        );
        // Exactly one caret outside the message's own lines: the one under the source column.
        let carets = out.lines().filter(|l| l.trim() == "^").count();
        assert_eq!(carets, 1, "{out}");
    }
}
