//! Findings (errors and warnings) and how they are printed.

use std::io::IsTerminal;

use serde::Serialize;

pub(crate) const RED: &str = "1;31";
pub(crate) const YELLOW: &str = "1;33";
pub(crate) const BLUE: &str = "1;34";

/// Whether to colour standard output: a terminal, and `NO_COLOR` unset.
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Whether to colour standard error.
pub(crate) fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `text` in the ANSI colour `code` when `on`.
pub(crate) fn paint(text: &str, code: &str, on: bool) -> String {
    if on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
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
pub(crate) fn text(f: &Finding, source: Option<&str>, color: bool) -> String {
    let (label, code) = match f.severity {
        Severity::Error => ("error", RED),
        Severity::Warning => ("warning", YELLOW),
    };
    let mut out =
        format!("{}:{}:{}: {}: {}", f.file, f.line, f.column, paint(label, code, color), f.message);
    if !f.pointer.is_empty() {
        out.push_str(&format!(" (at {})", f.pointer));
    }
    out.push('\n');
    if let Some(line) = source.and_then(|s| s.lines().nth(f.line.saturating_sub(1))) {
        let number = f.line.to_string();
        let gutter = " ".repeat(number.len());
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
