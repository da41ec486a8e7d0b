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
        // Most patterns are far below the limit, which a walk of `hir` shows without building
        // the NFAs.
        if nfa_bound(&hir) > REGEX_SIZE_LIMIT && !nfa_fits(&hir) {
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

/// An upper bound, in the units of the NFA builder's size limit (bytes of states, sparse
/// transitions and union alternates), of what either of the NFAs that [`nfa_fits`] builds
/// for `hir` takes: `nfa_bound(hir) <= REGEX_SIZE_LIMIT` implies `nfa_fits(hir)`, so the
/// build is skipped for such patterns (most: a case-insensitive `\b(drop|truncate)\b` is
/// bounded by a few KiB). Each term over-counts what `regex-automata`'s Thompson compiler
/// adds for the node (a builder state is 32 bytes, a sparse transition 8, an alternate 4);
/// the compiler's own states around the pattern (unanchored prefix, the implicit capture,
/// the match state) are in [`NFA_OVERHEAD`]. Saturating: a huge count only means "build it".
fn nfa_bound(hir: &regex_syntax::hir::Hir) -> usize {
    NFA_OVERHEAD.saturating_add(hir_bound(hir))
}

/// A bound of the compiler's states around any pattern.
const NFA_OVERHEAD: usize = 4096;

/// A bound of one builder state with its heap part, for a state with at most one transition
/// or alternate.
const STATE: usize = 64;

fn hir_bound(hir: &regex_syntax::hir::Hir) -> usize {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => STATE,
        // One byte-range state per byte (in a trie of literals, a sparse state, its union and
        // alternates: within 2 states per byte).
        HirKind::Literal(lit) => {
            STATE.saturating_mul(2).saturating_mul(lit.0.len().saturating_add(1))
        }
        // One sparse state and its end.
        HirKind::Class(Class::Bytes(c)) => {
            STATE.saturating_mul(2).saturating_add(c.ranges().len().saturating_mul(8))
        }
        HirKind::Class(Class::Unicode(c)) if c.is_ascii() => {
            STATE.saturating_mul(2).saturating_add(c.ranges().len().saturating_mul(8))
        }
        // A UTF-8 automaton: forward, at most one sparse state per byte range of the class's
        // UTF-8 sequences (plus a root and an end); reverse, one state per byte range, one
        // alternate per sequence, a union and an end.
        HirKind::Class(Class::Unicode(c)) => {
            let (mut sequences, mut byte_ranges) = (0usize, 0usize);
            for r in c.iter() {
                for seq in regex_syntax::utf8::Utf8Sequences::new(r.start(), r.end()) {
                    sequences += 1;
                    byte_ranges += seq.as_slice().len();
                }
            }
            STATE
                .saturating_mul(4)
                .saturating_add(byte_ranges.saturating_mul(STATE))
                .saturating_add(sequences.saturating_mul(8))
        }
        // A capture's two states.
        HirKind::Capture(c) => STATE.saturating_mul(2).saturating_add(hir_bound(&c.sub)),
        HirKind::Concat(subs) => {
            subs.iter().fold(STATE, |total, sub| total.saturating_add(hir_bound(sub)))
        }
        // A union, an end and an alternate per branch.
        HirKind::Alternation(subs) => subs.iter().fold(STATE.saturating_mul(2), |total, sub| {
            total.saturating_add(hir_bound(sub)).saturating_add(STATE)
        }),
        // The sub-expression compiled `max` times (`min` times, at least once, when unbounded),
        // with a union and an empty state around each copy.
        HirKind::Repetition(rep) => {
            let copies = rep.max.unwrap_or(rep.min).max(rep.min).max(1);
            let copies = usize::try_from(copies).unwrap_or(usize::MAX);
            hir_bound(&rep.sub)
                .saturating_add(STATE.saturating_mul(3))
                .saturating_mul(copies.saturating_add(1))
        }
    }
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

    /// Whether both NFAs of `hir` (as [`nfa_fits`] builds them) fit in `limit` bytes.
    fn both_fit_in(hir: &regex_syntax::hir::Hir, limit: usize) -> bool {
        let forward = thompson::Config::new()
            .utf8(true)
            .nfa_size_limit(Some(limit))
            .shrink(false)
            .which_captures(WhichCaptures::All);
        let reverse = forward.clone().which_captures(WhichCaptures::None).reverse(true);
        thompson::Compiler::new().configure(forward).build_from_hir(hir).is_ok()
            && thompson::Compiler::new().configure(reverse).build_from_hir(hir).is_ok()
    }

    #[test]
    fn the_nfa_bound_is_an_upper_bound() {
        // For every pattern, both NFAs fit within the bound (so a pattern whose bound is under
        // the limit needs no NFA build at load), of every kind of node.
        let mut patterns: Vec<String> = [
            r"(?i)\b(drop|truncate|t999)\b",
            r"(?i)\b(drop|truncate)\b",
            r"^[a-z0-9_-]{1,64}$",
            r"\w{20}",
            r"\w+@\w+\.com",
            r"(?s).*",
            r"a*",
            r"(a*)*",
            r"(a|)*",
            r"(?:ab|cd|ef|gh|ijkl)",
            r"foo|foobar|fo|f|bar|baz|quux",
            r"(?i)foo|foobar|straße",
            r"[\p{L}\p{N}]{3}",
            r"\pL{3,7}?",
            r"[^a]",
            r"(?-u:[a-z\d])",
            r"(?-u:\x00|a\w)",
            r"é{2,}",
            r"(é|ü|ß){0,3}",
            r"\d{4}-\d{2}-\d{2}",
            r"[\u{10000}-\u{10FFFF}]",
            r"[\u{80}-\u{10FFFF}]+",
            r"(?m)^\s*$",
            r"\bword\B",
            r"(?<name>x)(?:y)(z)",
            r"",
            r"(?:)",
            r"a{0}",
            r"a{0,1}",
            r"(\pL{5}){5}",
            r"(?i)\p{Greek}+",
            r"\W\S\D",
        ]
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
        let words: Vec<String> = (0..300).map(|i| format!("w{i}x")).collect();
        patterns.push(words.join("|"));
        patterns.push(format!("(?i){}", words.join("|")));
        // Random nestings of pieces.
        let pieces = [r"a", r"(?i)k", r"\w", r"é", r"[α-ω]", r"\b", r"(?:x|yz)", r"\d", r"."];
        let ops = ["*", "+", "?", "{2}", "{1,3}", "{2,}", "", "*?"];
        let mut x: u64 = 0x853c_49e6_748f_ea9b;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let mut p = String::new();
            for _ in 0..(next() % 4 + 1) {
                let piece = pieces[(next() % pieces.len() as u64) as usize];
                let op = ops[(next() % ops.len() as u64) as usize];
                let alt = if next() % 3 == 0 { "|" } else { "" };
                p = format!("(?:{p}{alt}{piece}){op}");
            }
            patterns.push(p);
        }
        for p in &patterns {
            let hir = regex_syntax::ParserBuilder::new().build().parse(p).unwrap();
            let bound = nfa_bound(&hir);
            assert!(both_fit_in(&hir, bound), "{p}: bound {bound} too small");
        }
        // The patterns of the load benchmark are bounded far below the limit (no NFA built).
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(r"(?i)\b(drop|truncate|t999)\b")
            .unwrap();
        assert!(nfa_bound(&hir) < REGEX_SIZE_LIMIT / 10, "{}", nfa_bound(&hir));
        // And a pattern over the limit is bounded over it (then the NFAs are built).
        let hir = regex_syntax::ParserBuilder::new().build().parse(r"\w{5000}").unwrap();
        assert!(nfa_bound(&hir) > REGEX_SIZE_LIMIT);
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
