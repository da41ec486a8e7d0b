//! Compiled conditions: the data a `deny_if`, `require` or `approve_if` condition compiles to.
//!
//! The loader (`load.rs`) builds these from the document; the evaluator
//! (`src/eval/condition.rs`) evaluates them against a call, three-valued. They live in the policy
//! layer because they are part of the compiled policy, which the evaluation layer reads.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use serde_json::{Number, Value};

use super::path::Path;

/// A compiled condition.
#[derive(Debug)]
pub(crate) struct Condition {
    pub(crate) path: Path,
    pub(crate) test: Test,
}

/// What a compiled condition checks.
#[derive(Debug)]
pub(crate) enum Test {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Compare(Comparison, Number),
    Contains(Value),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Regex(std::sync::Arc<LazyRegex>),
    Exists(bool),
    Within(Vec<Vec<Box<str>>>),
}

/// The numeric comparisons.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Comparison {
    Lt,
    Lte,
    Gt,
    Gte,
}

/// The largest compiled regex the loader accepts, in bytes (the regex crate's `size_limit`).
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How deeply a regex may nest. Well below the regex crate's default, it keeps the parser's
/// recursion shallow on any thread's stack (`a***...` nests one level per `*`).
pub(crate) const REGEX_NEST_LIMIT: u32 = 64;

/// A `regex` operand: checked in full at load, compiled on its first use.
///
/// Compiling with the `regex` crate builds its automata eagerly and costs 45 to 150 µs for a
/// typical case-insensitive pattern; a policy with a thousand distinct regexes would spend most
/// of its load time there, for tools that may never be called. So the loader
///
/// 1. parses the pattern (and translates it, which checks Unicode classes) with the same
///    settings as the regex crate, so a syntax error is a load error with the crate's message;
/// 2. builds the forward and reverse Thompson NFAs that the regex crate's engine builds, with the
///    same size limit, so a pattern over the limit is a load error too (and when that check
///    fails, compiles the regex in full at load to report exactly what the regex crate says);
///
/// and the regex itself is compiled at its first match ([`LazyRegex::is_match`]), once, shared
/// by every thread and every condition with the same pattern. With both checks passed at load,
/// that compilation cannot fail; if it ever did, [`LazyRegex::is_match`] answers per
/// [`LazyRegex::failure`] and never panics.
pub(crate) struct LazyRegex {
    pattern: Box<str>,
    compiled: OnceLock<Result<Regex, Box<str>>>,
}

impl fmt::Debug for LazyRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyRegex")
            .field("pattern", &self.pattern)
            .field("compiled", &matches!(self.compiled.get(), Some(Ok(_))))
            .finish()
    }
}

impl LazyRegex {
    /// Checks `pattern` at load; the error is the regex crate's own message for it.
    pub(crate) fn new(pattern: &str) -> Result<LazyRegex, String> {
        let hir = regex_syntax::ParserBuilder::new()
            .nest_limit(REGEX_NEST_LIMIT)
            .build()
            .parse(pattern)
            .map_err(|e| e.to_string())?;
        let lazy = LazyRegex { pattern: pattern.into(), compiled: OnceLock::new() };
        if !nfa_fits(&hir) {
            // Over the limit by the NFA check: the regex crate may still build it without an
            // NFA (a plain literal search). Decide as it decides, at load.
            let re = build(pattern).map_err(|e| e.to_string())?;
            let _ = lazy.compiled.set(Ok(re));
        }
        Ok(lazy)
    }

    /// The pattern as written in the policy.
    pub(crate) fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern matches anywhere in `haystack`, compiling it at the first call.
    ///
    /// Should compiling fail at first use (the loader's checks make it impossible), the answer
    /// is `true`, and [`failure`](LazyRegex::failure) says why.
    pub(crate) fn is_match(&self, haystack: &str) -> bool {
        match self.compiled() {
            Ok(re) => re.is_match(haystack),
            Err(_) => true,
        }
    }

    /// Why the regex could not be compiled at its first use, if it could not (it is compiled
    /// now when it was not yet).
    pub(crate) fn failure(&self) -> Option<&str> {
        self.compiled().err()
    }

    /// Whether the regex has been compiled (by a first match, or at load when the NFA check
    /// could not decide).
    pub(crate) fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    fn compiled(&self) -> Result<&Regex, &str> {
        match self.compiled.get_or_init(|| {
            build(&self.pattern).map_err(|e| {
                format!("regex `{}` could not be compiled at its first use: {e}", self.pattern)
                    .into()
            })
        }) {
            Ok(re) => Ok(re),
            Err(e) => Err(e),
        }
    }
}

/// The regex as the loader has always built it.
fn build(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
}

/// Whether the NFAs the regex crate builds for `hir` (forward with captures, and reverse
/// without, as its meta engine does) stay within [`REGEX_SIZE_LIMIT`].
fn nfa_fits(hir: &regex_syntax::hir::Hir) -> bool {
    let forward = thompson::Config::new()
        .utf8(true)
        .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
        .shrink(false)
        .which_captures(WhichCaptures::All);
    let reverse = forward.clone().which_captures(WhichCaptures::None).reverse(true);
    thompson::Compiler::new().configure(forward).build_from_hir(hir).is_ok()
        && thompson::Compiler::new().configure(reverse).build_from_hir(hir).is_ok()
}

/// Lexical normalisation of an absolute path into its components: `.` dropped, `..` removing the
/// component before it (staying at the root), repeated and trailing `/` ignored. A backslash is
/// an ordinary character. No file-system access.
pub(crate) fn normalize(path: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize("/a/./b/../c//d/"), vec!["a", "c", "d"]);
        assert_eq!(normalize("/../../etc"), vec!["etc"]);
        assert_eq!(normalize("/"), Vec::<&str>::new());
        assert_eq!(normalize("/a\\..\\b"), vec!["a\\..\\b"]);
    }
}
