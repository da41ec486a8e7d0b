//! Load errors: every problem of a document, each with its line, column and JSON Pointer.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of problem a [`Diagnostic`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// The text is not JSON.
    Syntax,
    /// The document is nested too deeply.
    TooDeep,
    /// An object names a key twice.
    DuplicateKey,
    /// A key the language does not have (often a typo).
    UnknownKey,
    /// A required key is missing.
    MissingKey,
    /// A value of the wrong JSON type.
    WrongType,
    /// A value of the right type that is not allowed (out of range, empty, not one of the choices).
    InvalidValue,
    /// A `version` other than `"1"`.
    UnsupportedVersion,
    /// A `regex` value that does not compile.
    InvalidRegex,
    /// An `arguments` value that is not a valid JSON Schema.
    InvalidSchema,
    /// A `format` in an `arguments` schema that the validator does not know.
    UnknownFormat,
    /// A condition or `increment_from` path that is not valid.
    InvalidPath,
    /// Two equally specific `tools` patterns that can match one tool name.
    AmbiguousPattern,
    /// Limits on one counter that disagree on `window`, `scope` or `sliding`.
    ConflictingCounter,
}

/// One problem in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    line: usize,
    column: usize,
    pointer: String,
    message: String,
    kind: DiagnosticKind,
}

impl Diagnostic {
    pub(crate) fn new(
        line: usize,
        column: usize,
        pointer: String,
        message: String,
        kind: DiagnosticKind,
    ) -> Self {
        Diagnostic { line, column, pointer, message, kind }
    }

    /// The 1-based line of the offending text.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column (in characters) of the offending text.
    pub fn column(&self) -> usize {
        self.column
    }

    /// The JSON Pointer (RFC 6901) of the offending value or key; `""` for the whole document.
    pub fn pointer(&self) -> &str {
        &self.pointer
    }

    /// What is wrong, in plain words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind of problem.
    pub fn kind(&self) -> DiagnosticKind {
        self.kind
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if !self.pointer.is_empty() {
            write!(f, " (at {})", self.pointer)?;
        }
        Ok(())
    }
}

/// A policy document that failed to load, with every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPolicy {
    diagnostics: Vec<Diagnostic>,
}

impl InvalidPolicy {
    pub(crate) fn new(diagnostics: Vec<Diagnostic>) -> Self {
        InvalidPolicy { diagnostics }
    }

    /// Every problem, in document order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        write!(f, "invalid policy: {n} problem{}", if n == 1 { "" } else { "s" })?;
        for d in &self.diagnostics {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidPolicy {}

/// A policy file that could not be read.
#[derive(Debug)]
pub struct ReadError {
    path: PathBuf,
    source: std::io::Error,
}

impl ReadError {
    pub(crate) fn new(path: &Path, source: std::io::Error) -> Self {
        ReadError { path: path.to_owned(), source }
    }

    /// The file that could not be read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read policy file `{}`: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The document has problems; every one is listed.
    #[error(transparent)]
    Invalid(#[from] InvalidPolicy),
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl PolicyError {
    /// The problems of the document; empty for a file that could not be read.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Invalid(e) => e.diagnostics(),
            PolicyError::Read(_) => &[],
        }
    }
}
