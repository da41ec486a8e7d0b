//! Compiled conditions: the data a `deny_if`, `require` or `approve_if` condition compiles to.
//!
//! The loader (`load.rs`) builds these from the document; the evaluator
//! (`src/eval/condition.rs`) evaluates them against a call, three-valued. They live in the policy
//! layer because they are part of the compiled policy, which the evaluation layer reads.

use regex::Regex;
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
    Regex(Regex),
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
