//! The compile stage of conditions and paths: the operand of each op checked and compiled
//! (regexes checked in full and compiled on first use, directories normalised).

use std::sync::Arc;

use serde_json::Value;

use super::super::condition::{self as cond, Comparison, LazyRegex, RegexTest, Test};
use super::super::model::{Condition, Op};
use super::super::path;
use super::DiagnosticKind;
use super::compile::Compiler;
use super::messages::wrong_type;
use crate::json::pointer::join;

impl Compiler<'_> {
    /// Compiles a condition of a check.
    pub(super) fn condition(&mut self, c: &Condition, ptr: &str) -> Option<cond::Condition> {
        let path = self.path(&c.path, ptr, "path");
        let test = self.test(c.op, c.value.as_ref(), ptr);
        Some(cond::Condition { path: path?, test: test? })
    }

    /// Parses a path (a condition's, or a limit's `increment_from`): the value of `key` in the
    /// object at `parent`.
    pub(super) fn path(&mut self, text: &str, parent: &str, key: &str) -> Option<path::Path> {
        match path::parse(text) {
            Ok(p) => Some(p),
            Err(message) => {
                // A bare argument name (`amount`): the path most likely meant.
                let args = format!("args.{text}");
                let message = if !text.contains('.') && path::parse(&args).is_ok() {
                    format!("{message}; did you mean `{args}`?")
                } else {
                    message
                };
                self.problem(join(parent, key), DiagnosticKind::InvalidPath, message);
                None
            }
        }
    }

    /// Compiles the operand of `op`, checking its type.
    fn test(&mut self, op: Op, value: Option<&Value>, ptr: &str) -> Option<Test> {
        let name = op.as_str();
        // The operand's pointer, built only for a message.
        let vptr = || join(ptr, "value");
        let Some(value) = value else {
            if op == Op::Exists {
                return Some(Test::Exists(true));
            }
            self.problem(
                ptr,
                DiagnosticKind::MissingKey,
                format!("missing required key `value`: op `{name}` compares with a value"),
            );
            return None;
        };
        let test = match (op, value) {
            (Op::Eq, v) => Test::Eq(v.clone()),
            (Op::Neq, v) => Test::Neq(v.clone()),
            (Op::In, Value::Array(vs)) => Test::In(vs.clone()),
            (Op::NotIn, Value::Array(vs)) => Test::NotIn(vs.clone()),
            (Op::Lt | Op::Lte | Op::Gt | Op::Gte, Value::Number(n)) => {
                let c = match op {
                    Op::Lt => Comparison::Lt,
                    Op::Lte => Comparison::Lte,
                    Op::Gt => Comparison::Gt,
                    _ => Comparison::Gte,
                };
                Test::Compare(c, n.clone())
            }
            (Op::Contains, v) => Test::Contains(v.clone()),
            (Op::StartsWith, Value::String(s)) => Test::StartsWith(s.as_str().into()),
            (Op::EndsWith, Value::String(s)) => Test::EndsWith(s.as_str().into()),
            // Should the regex fail to compile at first use, the condition is unknown: a
            // `require` is not met, a `deny_if` or `approve_if` fires.
            (Op::Regex, Value::String(s)) => Test::Regex(RegexTest::new(self.regex(s, ptr)?)),
            (Op::Exists, Value::Bool(b)) => Test::Exists(*b),
            (Op::Within, Value::String(s)) => Test::Within(vec![self.directory(s, vptr)?]),
            (Op::Within, Value::Array(items)) if !items.is_empty() => {
                let mut dirs = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let iptr = || format!("{}/{i}", vptr());
                    match item {
                        Value::String(s) => {
                            if let Some(d) = self.directory(s, iptr) {
                                dirs.push(d);
                            }
                        }
                        other => self.problems.push(wrong_type(
                            &iptr(),
                            "an absolute directory path",
                            other,
                        )),
                    }
                }
                if dirs.len() != items.len() {
                    return None;
                }
                Test::Within(dirs)
            }
            (Op::Within, Value::Array(_)) => {
                self.problem(
                    vptr(),
                    DiagnosticKind::InvalidValue,
                    "op `within` needs at least one directory".to_owned(),
                );
                return None;
            }
            (_, v) => {
                let expected = match op {
                    Op::In | Op::NotIn => "an array of values",
                    Op::Lt | Op::Lte | Op::Gt | Op::Gte => "a number",
                    Op::StartsWith | Op::EndsWith => "a string",
                    Op::Regex => "a regex (a string)",
                    Op::Exists => "a boolean",
                    _ => "an absolute path or an array of them",
                };
                self.problems.push(wrong_type(&vptr(), &format!("{expected} for op `{name}`"), v));
                return None;
            }
        };
        Some(test)
    }

    /// A regex, checked now and compiled on first use (one per distinct pattern).
    /// The regex `s`, the operand of the condition at `ptr`.
    fn regex(&mut self, s: &str, ptr: &str) -> Option<Arc<LazyRegex>> {
        if let Some(re) = self.regexes.get(s) {
            return Some(re.clone());
        }
        match LazyRegex::new(s) {
            Ok(re) => {
                let re = Arc::new(re);
                self.regexes.insert(s.to_owned(), re.clone());
                Some(re)
            }
            Err(e) => {
                self.problem(
                    join(ptr, "value"),
                    DiagnosticKind::InvalidRegex,
                    format!("invalid regex `{s}`: {e}"),
                );
                None
            }
        }
    }

    fn directory(&mut self, s: &str, ptr: impl FnOnce() -> String) -> Option<Vec<Box<str>>> {
        if !s.starts_with('/') {
            self.problem(
                ptr(),
                DiagnosticKind::InvalidValue,
                format!("`within` needs absolute directories, and `{s}` does not start with `/`"),
            );
            return None;
        }
        Some(cond::normalize(s).into_iter().map(Into::into).collect())
    }
}
