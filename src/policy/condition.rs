//! Compiled conditions: the data a `deny_if`, `require` or `approve_if` condition compiles to.
//!
//! The loader's compile stage (`load/condition.rs`) builds these from the document; the evaluator
//! (`src/eval/condition.rs`) evaluates them against a call, three-valued. They live in the policy
//! layer because they are part of the compiled policy, which the evaluation layer reads.

use std::fmt;
use std::sync::{Arc, OnceLock};

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
    Regex(RegexTest),
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

/// The test of a `regex` condition: the (shared) regex, compiled at its first use.
#[derive(Debug)]
pub(crate) struct RegexTest {
    regex: Arc<LazyRegex>,
}

impl RegexTest {
    pub(crate) fn new(regex: Arc<LazyRegex>) -> RegexTest {
        RegexTest { regex }
    }

    /// Whether the regex matches anywhere in `haystack`, compiling it at the first call; `None`
    /// when it could not be compiled (the loader's checks make that impossible), which the
    /// evaluator reads as an unknown truth value: a `require` is not met, a `deny_if` or
    /// `approve_if` fires, as for any value a condition cannot judge.
    pub(crate) fn is_match(&self, haystack: &str) -> Option<bool> {
        self.regex.compiled().ok().map(|re| re.is_match(haystack))
    }

    /// Why the regex could not be compiled at its first use, if it could not.
    #[cfg(test)]
    fn failure(&self) -> Option<&str> {
        self.regex.compiled().err()
    }
}

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
/// that compilation cannot fail; if it ever did, [`RegexTest::is_match`] fails closed and never
/// panics.
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

    /// Whether the regex has been compiled (by a first match, or at load when the NFA check
    /// could not decide).
    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    /// The compiled regex (compiled now, at its first use), or why it could not be.
    pub(crate) fn compiled(&self) -> Result<&Regex, &str> {
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

    /// The message the regex crate gives for `pattern`, as the loader has always reported it.
    fn regex_crate_error(pattern: &str) -> String {
        build(pattern).unwrap_err().to_string()
    }

    #[test]
    fn a_regex_is_compiled_at_its_first_use_only() {
        let re = Arc::new(LazyRegex::new(r"(?i)\b(drop|truncate)\b").unwrap());
        assert!(!re.is_compiled());
        let test = RegexTest::new(re.clone());
        assert_eq!(test.is_match("please DROP it"), Some(true));
        assert!(re.is_compiled());
        assert_eq!(test.is_match("dropped"), Some(false));
        assert_eq!(test.failure(), None);
    }

    #[test]
    fn load_errors_are_the_regex_crate_s_own() {
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        for bad in ["(unclosed", "a{2,1}", r"\p{Nope}", "[z-a]", r"(?-u:\xFF)", &deep] {
            assert_eq!(LazyRegex::new(bad).err(), Some(regex_crate_error(bad)), "{bad}");
        }
        // Over the size limit: caught at load, by the NFA check, with the same message.
        for big in [r"\w{5000}", r"(\pL{50}){50}", r"[\p{L}\p{N}]{2000}"] {
            let expected = regex_crate_error(big);
            assert!(expected.contains("size limit"), "{big}: {expected}");
            assert_eq!(LazyRegex::new(big).err(), Some(expected), "{big}");
        }
        // Within the limit: not compiled at load.
        let ok = LazyRegex::new(r"\w{20}").unwrap();
        assert!(!ok.is_compiled());
        assert!(build(r"\w{20}").is_ok());
    }

    #[test]
    fn a_long_literal_alternation_loads_as_the_regex_crate_decides() {
        // Many literals: the NFA check may find it over the limit, while the regex crate builds
        // it as a literal search; the loader then compiles it at load, as the crate does.
        let words: Vec<String> = (0..20_000).map(|i| format!("word{i:05}x")).collect();
        let pattern = words.join("|");
        let hir = regex_syntax::ParserBuilder::new().build().parse(&pattern).unwrap();
        assert!(!nfa_fits(&hir), "the case this test is about: over the limit by the NFA check");
        match (LazyRegex::new(&pattern), build(&pattern)) {
            (Ok(re), Ok(_)) => {
                // Decided (and so compiled) at load.
                assert!(re.is_compiled());
                let test = RegexTest::new(Arc::new(re));
                assert_eq!(test.is_match("a word01234x here"), Some(true));
                assert_eq!(test.is_match("word1x"), Some(false));
            }
            (Err(a), Err(b)) => assert_eq!(a, b.to_string()),
            (a, b) => panic!("loader {:?} but regex crate {:?}", a.err(), b.err()),
        }
    }

    #[test]
    fn a_compile_failure_at_first_use_fails_closed_and_says_why() {
        let failed = || {
            let re = LazyRegex { pattern: "x".into(), compiled: OnceLock::new() };
            let _ = re.compiled.set(Err("regex `x` could not be compiled at its first use".into()));
            Arc::new(re)
        };
        // In `deny_if` and `approve_if` the check fires; in `require` it is not met.
        let test = RegexTest::new(failed());
        assert_eq!(test.is_match("anything"), None);
        assert!(test.failure().unwrap().contains("could not be compiled"));
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize("/a/./b/../c//d/"), vec!["a", "c", "d"]);
        assert_eq!(normalize("/../../etc"), vec!["etc"]);
        assert_eq!(normalize("/"), Vec::<&str>::new());
        assert_eq!(normalize("/a\\..\\b"), vec!["a\\..\\b"]);
    }
}
