//! The loader, in two stages, and the location of its problems in the text.
//!
//! 1. **Read** (`document.rs`, with the typed readers of `reader.rs`): text to a
//!    [`PolicyDocument`]. [`source::read`] turns the text into a JSON value (syntax errors,
//!    duplicate keys, excessive nesting); a structural walk then checks every key and JSON type
//!    against the language and builds the model. A piece of the wrong shape is reported and
//!    left out (or stood in for, so that the indexes in pointers stay those of the text), so that
//!    one bad tool does not hide the problems of the next.
//! 2. **Compile** (`compile.rs`, `condition.rs`, `limit.rs`, `schema.rs`): a [`PolicyDocument`]
//!    to the compiled form. Every value is checked against the language (the version, ranges,
//!    paths, regexes, argument schemas, ambiguous patterns, counters with conflicting settings)
//!    and compiled. This stage is all that [`Policy::try_from`](crate::Policy) runs on a
//!    document built in a program.
//!
//! Problems are recorded by JSON Pointer; when the document came from text and there are some,
//! the text is read again to turn pointers into lines and columns (`locate`). A document built
//! in a program has no text: its diagnostics have line and column 0.

mod compile;
mod condition;
mod document;
mod limit;
mod messages;
mod reader;
mod schema;

use hashbrown::HashSet;

use super::compiled::Compiled;
use super::diagnostics::{Diagnostic, DiagnosticKind, InvalidPolicy};
use super::lint;
use super::model::PolicyDocument;
use crate::json::source::{self, SourceProblemKind};

/// A problem located by pointer; turned into a [`Diagnostic`] once positions are known.
pub(super) struct Problem {
    pointer: String,
    message: String,
    kind: DiagnosticKind,
    /// Point at the object key rather than its value (unknown and duplicate keys).
    at_key: bool,
}

impl Problem {
    fn new(pointer: impl Into<String>, kind: DiagnosticKind, message: String) -> Problem {
        Problem { pointer: pointer.into(), message, kind, at_key: false }
    }

    fn at_key(pointer: impl Into<String>, kind: DiagnosticKind, message: String) -> Problem {
        Problem { pointer: pointer.into(), message, kind, at_key: true }
    }
}

/// What the read stage leaves out of the compile stage: pieces it stood in for and rules in
/// which it found problems (those take no part in the ambiguity check, as before).
#[derive(Default)]
pub(super) struct Skip {
    /// Pointers of stand-ins (a condition, check, limit or `hide` entry of the wrong shape).
    pieces: HashSet<String>,
    /// `tools` keys whose rule had a problem.
    rules: HashSet<String>,
}

impl Skip {
    fn piece(&self, pointer: &str) -> bool {
        !self.pieces.is_empty() && self.pieces.contains(pointer)
    }

    fn rule(&self, key: &str) -> bool {
        !self.rules.is_empty() && self.rules.contains(key)
    }
}

/// Loads and compiles a policy document from text: both stages, every problem located.
pub(crate) fn load(text: &str) -> Result<Compiled, InvalidPolicy> {
    let read = source::read(text, false);
    let mut problems: Vec<Problem> = read
        .problems
        .iter()
        .map(|p| Problem {
            pointer: p.pointer.clone(),
            message: p.message.clone(),
            kind: match p.kind {
                SourceProblemKind::Syntax => DiagnosticKind::Syntax,
                SourceProblemKind::DuplicateKey => DiagnosticKind::DuplicateKey,
                SourceProblemKind::TooDeep => DiagnosticKind::TooDeep,
            },
            at_key: p.kind == SourceProblemKind::DuplicateKey,
        })
        .collect();
    // Problems of the reader carry their own offsets (a duplicate key's is its second
    // occurrence, which a pointer cannot tell from the first).
    let mut offsets: Vec<Option<usize>> = read.problems.iter().map(|p| Some(p.offset)).collect();

    let compiled = match read.value {
        Some(value) => {
            let (document, skip, found) = document::read(value);
            problems.extend(found);
            let compiled = document.and_then(|document| {
                let (compiled, found) = compile::compile(document, &skip);
                problems.extend(found);
                compiled
            });
            offsets.resize(problems.len(), None);
            compiled
        }
        None => None,
    };
    match compiled {
        Some(mut c) if problems.is_empty() => {
            c.places = lint::Places::scan(text);
            let found = lint_problems(&c.document);
            if !found.is_empty() {
                let offsets = vec![None; found.len()];
                c.warnings = locate(text, found, offsets).diagnostics().to_vec();
            }
            Ok(c)
        }
        _ => Err(locate(text, problems, offsets)),
    }
}

/// Compiles a document built in a program (stage two only): diagnostics without positions
/// (line and column 0), in the order found.
pub(crate) fn compile_document(document: PolicyDocument) -> Result<Compiled, InvalidPolicy> {
    let (compiled, problems) = compile::compile(document, &Skip::default());
    match compiled {
        Some(mut c) if problems.is_empty() => {
            c.warnings = unlocated(lint_problems(&c.document)).diagnostics().to_vec();
            Ok(c)
        }
        _ => Err(unlocated(problems)),
    }
}

/// The lint's warnings of a document that compiled.
fn lint_problems(document: &PolicyDocument) -> Vec<Problem> {
    lint::document(document)
        .into_iter()
        .map(|f| Problem::new(f.pointer, f.kind, f.message))
        .collect()
}

/// Diagnostics without a source text: line and column 0.
fn unlocated(problems: Vec<Problem>) -> InvalidPolicy {
    InvalidPolicy::new(
        problems.into_iter().map(|p| Diagnostic::new(0, 0, p.pointer, p.message, p.kind)).collect(),
    )
}

/// Turns pointer-located problems into diagnostics with lines and columns, in document order.
fn locate(text: &str, problems: Vec<Problem>, offsets: Vec<Option<usize>>) -> InvalidPolicy {
    let spans = source::spans_of(text, problems.iter().map(|p| p.pointer.as_str()));
    let mut at: Vec<(usize, Problem)> = problems
        .into_iter()
        .zip(offsets)
        .map(|(p, offset)| {
            let offset = offset.unwrap_or_else(|| {
                if p.at_key { spans.key_offset(&p.pointer) } else { spans.value_offset(&p.pointer) }
            });
            (offset.min(text.len()), p)
        })
        .collect();
    at.sort_by_key(|(offset, _)| *offset);
    // One sweep over the text for all problems (in offset order), so that thousands of
    // diagnostics in a large document cost one pass, not one pass each.
    let (mut pos, mut line, mut column) = (0usize, 1usize, 1usize);
    let located = at
        .into_iter()
        .map(|(offset, p)| {
            for c in text.get(pos..offset).unwrap_or("").chars() {
                if c == '\n' {
                    line += 1;
                    column = 1;
                } else {
                    column += 1;
                }
            }
            pos = pos.max(offset);
            Diagnostic::new(line, column, p.pointer, p.message, p.kind)
        })
        .collect();
    InvalidPolicy::new(located)
}
