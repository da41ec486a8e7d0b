//! Load errors: every problem of a document, each with its line, column and JSON Pointer.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of problem a [`Diagnostic`] reports.
///
/// Serialises as a stable snake_case name (`unknown_key`, `dollar_anchor`), the same as
/// [`as_str`](DiagnosticKind::as_str): tools may match on it.
///
/// ```
/// use mcp_policy::DiagnosticKind;
/// assert_eq!(serde_json::to_value(DiagnosticKind::UnknownKey).unwrap(), "unknown_key");
/// assert_eq!(DiagnosticKind::DollarAnchor.as_str(), "dollar_anchor");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
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
    /// Warning: `exists` on `grant` or `session`, which always exist (a call without a session
    /// reads `null`).
    ExistsAlwaysTrue,
    /// Warning: `in: []` (never true) or `not_in: []` (never false).
    EmptyList,
    /// Warning: a `regex` anchored with `$`, which also matches before a final newline.
    DollarAnchor,
    /// Warning: `\d` or `\w` (or `\D`, `\W`) in a `regex`, which match non-ASCII digits and
    /// letters.
    UnicodeClass,
    /// Warning: a `deny_if` condition on an argument that no `arguments` schema gives a type.
    UntypedArgument,
    /// Warning ([`lint`](crate::lint)): a `tools` key that governs no tool of the server.
    UnusedRule,
    /// Warning ([`lint`](crate::lint)): a `hide` entry that matches no tool of the server.
    UnusedHide,
    /// Warning ([`lint`](crate::lint)): a risky tool that `default: allow` leaves without a rule.
    Unguarded,
    /// Warning ([`lint`](crate::lint)): a `tools` key or `hide` entry that is not a tool's name
    /// but looks like one (`dеlete_job` with a Cyrillic `е`).
    ConfusableName,
    /// Warning ([`lint`](crate::lint)): a character that looks like an ASCII one (Cyrillic `е`,
    /// fullwidth `ｄ`) in a `tools` key or `hide` entry.
    ConfusableCharacter,
    /// Warning ([`lint`](crate::lint)): letters of several scripts in one `tools` key or `hide`
    /// entry.
    MixedScript,
    /// Warning ([`lint`](crate::lint)): a bidirectional control character in a `tools` key or
    /// `hide` entry.
    BidiControl,
    /// Warning ([`lint`](crate::lint)): a zero-width or other invisible character in a `tools`
    /// key or `hide` entry.
    InvisibleCharacter,
}

impl DiagnosticKind {
    /// The stable snake_case name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosticKind::Syntax => "syntax",
            DiagnosticKind::TooDeep => "too_deep",
            DiagnosticKind::DuplicateKey => "duplicate_key",
            DiagnosticKind::UnknownKey => "unknown_key",
            DiagnosticKind::MissingKey => "missing_key",
            DiagnosticKind::WrongType => "wrong_type",
            DiagnosticKind::InvalidValue => "invalid_value",
            DiagnosticKind::UnsupportedVersion => "unsupported_version",
            DiagnosticKind::InvalidRegex => "invalid_regex",
            DiagnosticKind::InvalidSchema => "invalid_schema",
            DiagnosticKind::UnknownFormat => "unknown_format",
            DiagnosticKind::InvalidPath => "invalid_path",
            DiagnosticKind::AmbiguousPattern => "ambiguous_pattern",
            DiagnosticKind::ConflictingCounter => "conflicting_counter",
            DiagnosticKind::ExistsAlwaysTrue => "exists_always_true",
            DiagnosticKind::EmptyList => "empty_list",
            DiagnosticKind::DollarAnchor => "dollar_anchor",
            DiagnosticKind::UnicodeClass => "unicode_class",
            DiagnosticKind::UntypedArgument => "untyped_argument",
            DiagnosticKind::UnusedRule => "unused_rule",
            DiagnosticKind::UnusedHide => "unused_hide",
            DiagnosticKind::Unguarded => "unguarded",
            DiagnosticKind::ConfusableName => "confusable_name",
            DiagnosticKind::ConfusableCharacter => "confusable_character",
            DiagnosticKind::MixedScript => "mixed_script",
            DiagnosticKind::BidiControl => "bidi_control",
            DiagnosticKind::InvisibleCharacter => "invisible_character",
        }
    }

    /// The severity of a diagnostic of this kind: the warnings are the lint's kinds.
    pub fn severity(self) -> Severity {
        match self {
            DiagnosticKind::ExistsAlwaysTrue
            | DiagnosticKind::EmptyList
            | DiagnosticKind::DollarAnchor
            | DiagnosticKind::UnicodeClass
            | DiagnosticKind::UntypedArgument
            | DiagnosticKind::UnusedRule
            | DiagnosticKind::UnusedHide
            | DiagnosticKind::Unguarded
            | DiagnosticKind::ConfusableName
            | DiagnosticKind::ConfusableCharacter
            | DiagnosticKind::MixedScript
            | DiagnosticKind::BidiControl
            | DiagnosticKind::InvisibleCharacter => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

impl std::fmt::Display for DiagnosticKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// The policy loads, but the construct rarely means what it says
    /// ([`Policy::warnings`](crate::Policy::warnings)).
    Warning,
    /// The document does not load.
    Error,
}

/// One problem in a policy document: an error (the document does not load) or a warning.
///
/// Serialises as `{"line", "column", "pointer", "message", "kind", "severity"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    line: usize,
    column: usize,
    pointer: String,
    message: String,
    kind: DiagnosticKind,
    #[serde(rename = "severity")]
    severity: Severity,
}

impl Diagnostic {
    pub(crate) fn new(
        line: usize,
        column: usize,
        pointer: String,
        message: String,
        kind: DiagnosticKind,
    ) -> Self {
        Diagnostic { line, column, pointer, message, kind, severity: kind.severity() }
    }

    /// The 1-based line of the offending text; 0 when there is no text (a policy compiled
    /// from a [`PolicyDocument`](crate::model::PolicyDocument) built in a program).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column (in characters) of the offending text; 0 when there is no text.
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

    /// Whether this is an error or a warning (the severity of its kind).
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // No position: a document built in a program.
            let warning = if self.severity == Severity::Warning { "warning: " } else { "" };
            write!(f, "{warning}{}", self.message)?;
        } else if self.severity == Severity::Warning {
            write!(f, "{}:{}: warning: {}", self.line, self.column, self.message)?;
        } else {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        }
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
